#include "mock_fixtures.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    case MOCK_HTML_NONE:
        break;
    }
    return page;
}

const char *
mock_inband_payload(enum mock_inband kind)
{
    if (kind == MOCK_INBAND_QUOTA)
        return "{\"success\":false,\"data\":{\"code\":\"RateLimited\",\"details\":"
               "\"You've reached the upper limit for today's usage.\",\"num\":4}}";
    return "{\"ret\":[\"FAIL_SYS_USER_VALIDATE\",\"RGV587_ERROR::SM::哎哟喂,被挤爆啦,请稍后重试\"],"
           "\"data\":{\"url\":\"https://chat.qwenlm.ai:443//api/chat/completions/_____tmd_____/"
           "punish?x5secdata=mock&x5step=2&action=captcha&pureCaptcha=\"}}";
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

size_t
mock_answer_pieces(const char *model, const char *last_message, char *storage, size_t storage_len,
                   const char *pieces[MOCK_ANSWER_MAX_PIECES])
{
    uint32_t h = 2166136261u;
    for (const char *s = model ? model : ""; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    for (const char *s = last_message ? last_message : ""; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
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
