#include "mock_fixtures.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mock_chats.h"

/* Ids, names and nested info as the 2025 service listed them (see
 * docs/upstream-v1.md §3); numbers are illustrative. */
#define MODEL(id, name, desc, vision, ctx, types)                                                  \
    "{\"id\":\"" id "\",\"name\":\"" name "\",\"object\":\"model\",\"created\":1737936000,"        \
    "\"owned_by\":\"qwen\",\"info\":{\"id\":\"" id "\",\"name\":\"" name "\","                     \
    "\"is_active\":true,\"meta\":{\"short_description\":\"" desc "\","                             \
    "\"capabilities\":{\"vision\":" vision ",\"document\":true,\"citations\":true},"               \
    "\"max_context_length\":" ctx ",\"max_generation_length\":8192,"                               \
    "\"chat_type\":" types "}}}"

static const char *const model_ids[] = {
    "qwen-max-latest",         "qwen-plus-latest",
    "qwen-turbo-latest",       "qwq-32b",
    "qvq-72b-preview",         "qwen2.5-coder-32b-instruct",
    "qwen2.5-vl-72b-instruct", "qwen2.5-14b-instruct-1m",
};

static const char models_json[] =
    "{\"data\":[" MODEL("qwen-max-latest", "Qwen2.5-Max", "Flagship chat model.", "false", "32768", "[\"t2t\",\"search\",\"artifacts\"]") "," MODEL("qwen-plus-latest", "Qwen2.5-Plus", "Balanced chat model.", "false", "131072", "[\"t2t\",\"search\",\"artifacts\"]") "," MODEL(
        "qwen-turbo-latest", "Qwen2.5-Turbo", "Fast chat model with a long context.", "false",
        "1000000",
        "[\"t2t\",\"search\"]") "," MODEL("qwq-32b", "QwQ-32B", "Reasoning model.", "false",
                                          "131072",
                                          "[\"t2t\"]") "," MODEL("qvq-72b-preview",
                                                                 "QVQ-72B-Preview",
                                                                 "Visual reasoning model.", "true",
                                                                 "32768",
                                                                 "[\"t2t\"]") "," MODEL("qwen2.5-"
                                                                                        "coder-32b-"
                                                                                        "instruct",
                                                                                        "Qwen2.5-"
                                                                                        "Coder-32B-"
                                                                                        "Instruct",
                                                                                        "Coding "
                                                                                        "model.",
                                                                                        "false",
                                                                                        "131072",
                                                                                        "[\"t2t\","
                                                                                        "\"artifact"
                                                                                        "s\",\"web_"
                                                                                        "dev\"]") "," MODEL("qwen2.5-vl-72b-instruct",
                                                                                                            "Qwen2.5-VL-72B-Instruct",
                                                                                                            "Smart large vision-language model",
                                                                                                            "true",
                                                                                                            "131072",
                                                                                                            "[\"t2t\"]") "," MODEL("qwen2.5-14b-instruct-1m",
                                                                                                                                   "Qwen2.5-14B-Instruct-1M",
                                                                                                                                   "Open model with a 1M context.",
                                                                                                                                   "false",
                                                                                                                                   "1000000",
                                                                                                                                   "[\"t2t\"]") "]}";

const char *
mock_models_json(void)
{
    return models_json;
}

char *
mock_models_v2_json(void)
{
    char rid[MOCK_UUID_LEN];
    mock_uuid(rid);
    size_t len = sizeof models_json + 128;
    char *s = malloc(len);
    if (s)
        snprintf(s, len, "{\"success\":true,\"request_id\":\"%s\",\"data\":%s}", rid, models_json);
    return s;
}

bool
mock_model_exists(const char *id)
{
    for (size_t i = 0; i < sizeof model_ids / sizeof model_ids[0]; i++)
        if (strcmp(id, model_ids[i]) == 0)
            return true;
    return false;
}

static const char captcha_page[] =
    "<!DOCTYPE html>\n<html lang=\"zh-cn\">\n<head><meta charset=\"utf-8\">"
    "<title>验证码拦截</title></head>\n<body>\n"
    "<div id=\"nocaptcha\" class=\"nc-container\"></div>\n"
    "<p>请完成验证后继续访问 / Please complete the verification to continue.</p>\n"
    "<script>var x5secdata=\"mock\";</script>\n</body>\n</html>\n";

static const char waf_page[] =
    "<!doctype html>\n<html lang=\"zh-cn\">\n<head><meta charset=\"utf-8\"><title>405</title>\n"
    "<style>body{font-family:sans-serif}.header{background:url(//errors.aliyun.com/images/"
    "TB1TpamHpXXXXaJXXXXeB7nYVXX-104-162.png) no-repeat}</style></head>\n<body>\n"
    "  <div class=\"header\"><div class=\"message\"><div id=\"block_message\">\n"
    "    Sorry, your request has been blocked as it may cause potential threats to the "
    "server's security.\n  </div></div></div>\n"
    "  <div class=\"main\"><div id=\"block_url_tips\">很抱歉，由于您访问的URL有可能对网站造成"
    "安全威胁，您的访问被阻断。</div>\n  <div>trace id: 0b00000000000000000000000000000000</div>"
    "</div>\n</body>\n</html>\n";

/* The v2 service's WAF answer at 200 (no space in `doctypehtml`). */
static const char waf200_page[] =
    "<!doctypehtml><meta charset=\"UTF-8\"><meta name=\"aliyun_waf_aa\" "
    "content=\"0b00000000000000000000000000000000\"><meta name=\"aliyun_waf_bb\" "
    "content=\"mock\"><title></title><script>var x5secdata=\"mock\";location.reload()</script>";

char *
mock_html_page(enum mock_html kind, unsigned status, unsigned *status_out)
{
    char *page = NULL;
    switch (kind) {
    case MOCK_HTML_CAPTCHA:
        *status_out = status ? status : 200;
        page = strdup(captcha_page);
        break;
    case MOCK_HTML_WAF:
        *status_out = status ? status : 405;
        page = strdup(waf_page);
        break;
    case MOCK_HTML_GATEWAY: {
        /* The nginx-style page, CRLF lines, as the service's gateway sent it. */
        unsigned st = status ? status : 502;
        const char *title = st == 504   ? "504 Gateway Time-out"
                            : st == 503 ? "503 Service Temporarily Unavailable"
                                        : "502 Bad Gateway";
        char tmp[512];
        snprintf(tmp, sizeof tmp,
                 "<html>\r\n<head><title>%s</title></head>\r\n<body bgcolor=\"white\">\r\n"
                 "<center><h1>%s</h1></center>\r\n<hr><center>alibaba-ga</center>\r\n"
                 "</body>\r\n</html>\r\n",
                 title, title);
        *status_out = st;
        page = strdup(tmp);
        break;
    }
    case MOCK_HTML_WAF200:
        *status_out = status ? status : 200;
        page = strdup(waf200_page);
        break;
    case MOCK_HTML_NONE:
        break;
    }
    return page;
}

/* The v2 service's business-error envelope; @p num < 0: no `num`. */
static char *
business_error(const char *code, const char *details, int num)
{
    char rid[MOCK_UUID_LEN];
    mock_uuid(rid);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddFalseToObject(o, "success");
    cJSON_AddStringToObject(o, "request_id", rid);
    cJSON *d = cJSON_AddObjectToObject(o, "data");
    cJSON_AddStringToObject(d, "code", code);
    cJSON_AddStringToObject(d, "details", details);
    if (num >= 0)
        cJSON_AddNumberToObject(d, "num", num);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s; /* cJSON's allocator is malloc: the caller frees */
}

char *
mock_v2_error_json(const char *code, const char *details)
{
    return business_error(code, details, -1);
}

char *
mock_inband_payload(enum mock_inband kind, bool v2)
{
    /* The challenge URL names the completion path of the dialect, on its host. */
    const char *at = v2 ? "chat.qwen.ai:443//api/v2/chat/completions"
                        : "chat.qwenlm.ai:443//api/chat/completions";
    const char *tail = v2 ? "__bx__chat.qwen.ai:443/api/v2/chat/completions"
                          : "__bx__chat.qwenlm.ai:443/api/chat/completions";
    char buf[640];
    switch (kind) {
    case MOCK_INBAND_QUOTA:
        if (!v2)
            return strdup("{\"success\":false,\"data\":{\"code\":\"RateLimited\",\"details\":"
                          "\"You've reached the upper limit for today's usage.\",\"num\":4}}");
        return business_error("RateLimited", "You've reached the upper limit for today's usage.",
                              1);
    case MOCK_INBAND_IN_PROGRESS:
        return business_error("Bad_Request", "The chat is in progress!", -1);
    case MOCK_INBAND_EXPIRED:
        return business_error("unauthorized", "Token has expired, please log in again.", -1);
    case MOCK_INBAND_ERROR:
        return strdup("{\"error\":{\"code\":\"internal_error\",\"details\":\"" MOCK_V2_QUOTA_ERROR
                      "\"}}");
    case MOCK_INBAND_CAPTCHA:
        snprintf(
            buf, sizeof buf,
            "{\"ret\":[\"FAIL_SYS_USER_VALIDATE\"],\"data\":{\"url\":\"https://%s/_____tmd_____/"
            "punish?x5secdata=xg_mock%s&x5step=2&action=captchaconnect&pureCaptcha=\"}}",
            at, tail);
        return strdup(buf);
    case MOCK_INBAND_WAF:
    case MOCK_INBAND_NONE:
        break;
    }
    if (!v2)
        return strdup(
            "{\"ret\":[\"FAIL_SYS_USER_VALIDATE\",\"RGV587_ERROR::SM::哎哟喂,被挤爆啦,请稍后重试\"]"
            ","
            "\"data\":{\"url\":\"https://chat.qwenlm.ai:443//api/chat/completions/_____tmd_____/"
            "punish?x5secdata=mock&x5step=2&action=captcha&pureCaptcha=\"}}");
    snprintf(
        buf, sizeof buf,
        "{\"ret\":[\"FAIL_SYS_USER_VALIDATE\",\"RGV587_ERROR::SM::哎哟喂,被挤爆啦,请稍后重试\"],"
        "\"data\":{\"url\":\"https://%s/_____tmd_____/punish?x5secdata=xg_mock%s&x5step=2&"
        "action=captcha&pureCaptcha=\"}}",
        at, tail);
    return strdup(buf);
}

/* Answer templates. Repeated pieces ("哈" x3) and multi-byte text are deliberate:
 * a proxy that de-duplicates naively or cuts UTF-8 is caught by them. */
static const char *const template_a[] = {"Hello", "! ", "我是", "通义千问",        "，", "哈",
                                         "哈",    "哈", " 🎉",   " The answer is ", NULL};
static const char *const template_b[] = {"好的", "，",     "here is ", "a list", ": ",
                                         "一、", "苹果 🍎", "; ",       "哈",     "哈",
                                         "哈",   " done",  NULL};
static const char *const template_c[] = {"Sure", ". ",    "Sure",  ". ", "测试", "测试",
                                         " ✅ ",  "Qwen ", "says ", "hi", NULL};

static uint32_t
answer_hash(const char *model, const char *message, unsigned salt)
{
    uint32_t h = 2166136261u;
    for (const char *s = model ? model : ""; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    for (const char *s = message ? message : ""; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h + salt;
}

size_t
mock_answer_pieces_salted(const char *model, const char *last_message, unsigned salt, char *storage,
                          size_t storage_len, const char *pieces[MOCK_ANSWER_MAX_PIECES])
{
    uint32_t h = answer_hash(model, last_message, salt);
    const char *const *tpl = (h % 3 == 0) ? template_a : (h % 3 == 1) ? template_b : template_c;
    size_t n = 0;
    while (tpl[n] && n < MOCK_ANSWER_MAX_PIECES - 1) {
        pieces[n] = tpl[n];
        n++;
    }
    /* A request-specific tail keeps answers to different questions distinct. */
    snprintf(storage, storage_len, "%u.", (unsigned)(h % 100000));
    pieces[n++] = storage;
    return n;
}

size_t
mock_answer_pieces(const char *model, const char *last_message, char *storage, size_t storage_len,
                   const char *pieces[MOCK_ANSWER_MAX_PIECES])
{
    return mock_answer_pieces_salted(model, last_message, 0, storage, storage_len, pieces);
}

/* Summary elements: ASCII words, no blank at either end. */
static const char *const thoughts[] = {
    "The user asks a short question",     "I should answer briefly and clearly",
    "Check the facts before answering",   "A friendly greeting fits here",
    "Keep the answer to a few sentences", "Mention the result at the end",
};
static const char *const titles[] = {"Understanding the request", "Planning the answer"};

size_t
mock_reasoning(const char *model, const char *message, unsigned salt,
               const char *out[MOCK_REASONING_MAX])
{
    uint32_t h = answer_hash(model, message, salt);
    size_t n = 2 + h % 3, first = (h / 3) % (sizeof thoughts / sizeof thoughts[0]);
    for (size_t i = 0; i < n; i++)
        out[i] = thoughts[(first + i) % (sizeof thoughts / sizeof thoughts[0])];
    return n;
}

size_t
mock_reasoning_titles(size_t n_reasoning, const char *out[MOCK_REASONING_MAX])
{
    size_t n = n_reasoning > 2 ? 2 : 1;
    for (size_t i = 0; i < n; i++)
        out[i] = titles[i];
    return n;
}
