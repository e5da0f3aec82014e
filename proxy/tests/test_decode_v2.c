/* Unit tests: the Qwen v2 stream decoder (decode_v2.c), alone and behind the normalizer
 * (sse_norm.c) at every byte split, with the frames as the service sends them: LF only,
 * Python-style spacing, response.created without choices, cumulative summary_thought
 * arrays, two interleaved responses, no phase keys, in-band failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "chunk_emit.h"
#include "decode_v2.h"
#include "sse_norm.h"

/* ---- the frames (data only, as the service writes them) ---- */

#define CREATED(rid, index)                                                                        \
    "{\"response.created\":{\"chat_id\": \"c-1\", \"parent_id\": \"p-1\", \"response_id\":\"" rid  \
    "\", \"response_index\": \"" index "\"}}"
#define CREATED_NO_INDEX(rid)                                                                      \
    "{\"response.created\":{\"chat_id\": \"c-1\", \"parent_id\": \"p-1\", \"response_id\":\"" rid  \
    "\"}}"
#define THOUGHT(rid, arr)                                                                          \
    "{\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"\", \"phase\": "          \
    "\"thinking_summary\", \"extra\": {\"summary_title\": {\"content\": [\"Title\"]}, "            \
    "\"summary_thought\": {\"content\": " arr "}}, \"status\": \"typing\"}}], "                    \
    "\"response_id\": \"" rid "\", \"usage\": {\"input_tokens\": 1438, \"output_tokens\": 104, "   \
    "\"total_tokens\": 1542, \"output_tokens_details\": {\"reasoning_tokens\": 102, "              \
    "\"text_tokens\": 104}}, \"timestamp\": 1780468837}"
#define THOUGHT_END(rid)                                                                           \
    "{\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"\", \"phase\": "          \
    "\"thinking_summary\", \"status\": \"finished\"}}], \"response_id\": \"" rid                   \
    "\", \"timestamp\": 1780468838}"
#define THINK(rid, c)                                                                              \
    "{\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"" c "\", \"phase\": "     \
    "\"think\", \"status\": \"typing\"}}], \"response_id\": \"" rid "\"}"
#define ANSWER(rid, c, k)                                                                          \
    "{\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"" c "\", \"phase\": "     \
    "\"answer\", \"status\": \"typing\"}}], \"response_id\": \"" rid "\", \"usage\": "             \
    "{\"input_tokens\": 1049, \"output_tokens\": " k ", \"characters\": 0, \"total_tokens\": "     \
    "1050, \"input_tokens_details\": {\"text_tokens\": 1049}, \"output_tokens_details\": "         \
    "{\"text_tokens\": " k "}, \"prompt_tokens_details\": {\"cached_tokens\": 0}}, "               \
    "\"timestamp\": 1780468951}"
#define ANSWER_END(rid)                                                                            \
    "{\"choices\": [{\"delta\": {\"content\": \"\", \"role\": \"assistant\", \"status\": "         \
    "\"finished\", \"phase\": \"answer\"}}], \"response_id\": \"" rid "\"}"
#define PLAIN(rid, c) /* no phase keys: the request did not ask for them */                        \
    "{\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"" c                       \
    "\", \"status\": \"typing\"}}], \"response_id\": \"" rid "\"}"
#define PLAIN_END(rid)                                                                             \
    "{\"choices\": [{\"delta\": {\"content\": \"\", \"role\": \"assistant\", \"status\": "         \
    "\"finished\"}}], \"response_id\": \"" rid "\"}"
#define EV(x) "data: " x "\n\n"

#define WAF                                                                                               \
    "{\"ret\":[\"FAIL_SYS_USER_VALIDATE\",\"RGV587_ERROR::SM::哎哟喂,被挤爆啦,请稍后重试\"]," \
    "\"data\":"                                                                                           \
    "{\"url\":\"https://chat.qwen.ai:443//api/v2/chat/completions/_____tmd_____/punish?x5secdata="        \
    "xg__bx__chat.qwen.ai:443/api/v2/chat/completions&x5step=2&action=captcha&pureCaptcha=\"}}"
#define EXPIRED                                                                                    \
    "{\"success\":false,\"request_id\":\"9f0e\",\"data\":{\"code\":\"unauthorized\","              \
    "\"details\":\"Token has expired, please log in again.\"}}"
#define QUOTA                                                                                      \
    "{\"success\":false,\"request_id\":\"9f0e\",\"data\":{\"code\":\"RateLimited\","               \
    "\"details\":\"You've reached the upper limit for today's usage.\",\"num\": 1}}"
#define MID_ERROR                                                                                  \
    "{\"error\":{\"code\":\"internal_error\",\"details\":\"Allocated quota "                       \
    "exceeded, please increase your quota limit.\"}}"
#define MODEL_NOT_FOUND                                                                            \
    "{\"success\":false,\"request_id\":\"9f0e\",\"data\":{\"code\":\"Bad_Request\","               \
    "\"details\":\"Model not found\"}}"
#define IN_PROGRESS                                                                                \
    "{\"success\":false,\"request_id\":\"9f0e\",\"data\":{\"code\":\"Bad_Request\","               \
    "\"details\":\"The chat is in progress!\"}}"

/* ---- the decoder alone ---- */

struct dec {
    void *st;
    struct qp_delta d;
};

static void
dec_open(struct dec *x)
{
    struct qp_decoder_opts o = {.incremental_requested = true};
    x->st = qp_decoder_v2.new(&o);
    assert_non_null(x->st);
}

static enum qp_decode_status
dec_feed(struct dec *x, const char *data)
{
    qp_decoder_v2.release(x->st);
    return qp_decoder_v2.event(x->st, data, strlen(data), &x->d);
}

/* The event's reasoning and text as strings (static, for one assert). */
static const char *
reasoning_of(const struct dec *x)
{
    static char s[512];
    snprintf(s, sizeof s, "%.*s", (int)x->d.reasoning_len, x->d.reasoning);
    return s;
}

static const char *
text_of(const struct dec *x)
{
    static char s[512];
    snprintf(s, sizeof s, "%.*s", (int)x->d.text_len, x->d.text);
    return s;
}

static void
dec_close(struct dec *x)
{
    qp_decoder_v2.free(x->st);
}

static void
cumulative_thoughts_give_exact_increments(void **state)
{
    (void)state;
    struct dec x;
    dec_open(&x);
    assert_int_equal(dec_feed(&x, CREATED("r0", "0")), QP_DECODE_CHUNK);
    assert_int_equal(x.d.text_len + x.d.reasoning_len, 0);
    assert_null(x.d.finish_reason);
    static const struct {
        const char *frame, *want;
    } steps[] = {
        {THOUGHT("r0", "[\"I am\"]"), "I am"},
        {THOUGHT("r0", "[\"I am\"]"), ""},                         /* the same array again */
        {THOUGHT("r0", "[\"I am a model\"]"), " a model"},         /* an element that grew */
        {THOUGHT("r0", "[\"I am a model\", \"Next\"]"), "\nNext"}, /* a new element */
        {THOUGHT("r0", "[\"I am a model\", \"Next\", \"A\", \"B\"]"), "\nA\nB"},
        {THOUGHT("r0", "[\"Rewritten\", \"Next step\", \"A\", \"B\"]"), " step"},
        {THOUGHT("r0", "[\"Rewritten more\", \"Next step\", \"A\", \"B\"]"), ""}, /* no dup */
        {THOUGHT("r0", "[\"I am a model!\", \"Next step\", \"A\", \"B\", \"C\"]"), "!\nC"},
        {THOUGHT("r0", "[\"I am a model!\"]"), ""}, /* shorter: nothing, nothing taken back */
        {THOUGHT("r0", "[]"), ""},
        {THOUGHT("r0", "[\"I am a model!\", \"Next step\", \"A\", \"B\", \"C\", \"é\"]"), "\né"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        assert_int_equal(dec_feed(&x, steps[i].frame), QP_DECODE_CHUNK);
        if (strcmp(reasoning_of(&x), steps[i].want) != 0)
            fail_msg("step %zu: reasoning '%s', want '%s'", i, reasoning_of(&x), steps[i].want);
        assert_int_equal(x.d.text_len, 0);
        assert_null(x.d.finish_reason);
        assert_true(x.d.has_usage);
        assert_true(x.d.has_reasoning_tokens);
        assert_int_equal(x.d.reasoning_tokens, 102);
    }
    /* The thinking's finished ends nothing. */
    assert_int_equal(dec_feed(&x, THOUGHT_END("r0")), QP_DECODE_CHUNK);
    assert_null(x.d.finish_reason);
    assert_int_equal(x.d.reasoning_len + x.d.text_len, 0);
    assert_int_equal(dec_feed(&x, ANSWER("r0", "Hi", "1")), QP_DECODE_CHUNK);
    assert_string_equal(text_of(&x), "Hi");
    assert_int_equal(x.d.reasoning_len, 0);
    assert_int_equal(dec_feed(&x, ANSWER("r0", "", "2")), QP_DECODE_CHUNK); /* empty typing */
    assert_int_equal(x.d.text_len + x.d.reasoning_len, 0);
    assert_null(x.d.finish_reason);
    assert_int_equal(dec_feed(&x, ANSWER_END("r0")), QP_DECODE_CHUNK);
    assert_string_equal(x.d.finish_reason, "stop");
    /* The last usage seen rides on the finish (the finished frame has none). */
    assert_true(x.d.has_usage);
    assert_int_equal(x.d.prompt_tokens, 1049);
    assert_int_equal(x.d.completion_tokens, 2);
    assert_true(x.d.has_reasoning_tokens); /* kept from the thinking frames */
    assert_int_equal(x.d.reasoning_tokens, 102);
    assert_int_equal(dec_feed(&x, "[DONE]"), QP_DECODE_DONE);
    dec_close(&x);
}

static void
think_phase_and_phaseless_frames(void **state)
{
    (void)state;
    struct dec x;
    dec_open(&x);
    assert_int_equal(dec_feed(&x, THINK("r0", "step one")), QP_DECODE_CHUNK);
    assert_string_equal(reasoning_of(&x), "step one");
    assert_int_equal(dec_feed(&x, THINK("r0", " and two")), QP_DECODE_CHUNK);
    assert_string_equal(reasoning_of(&x), " and two"); /* incremental, as is */
    assert_int_equal(dec_feed(&x, PLAIN("r0", "Par")), QP_DECODE_CHUNK);
    assert_string_equal(text_of(&x), "Par");
    assert_int_equal(dec_feed(&x, PLAIN("r0", "is")), QP_DECODE_CHUNK);
    assert_string_equal(text_of(&x), "is");
    assert_false(x.d.has_usage);
    assert_int_equal(dec_feed(&x, PLAIN_END("r0")), QP_DECODE_CHUNK);
    assert_string_equal(x.d.finish_reason, "stop");
    assert_false(x.d.has_usage);
    dec_close(&x);
    /* An unknown phase (an image URL, a tool) is not answer text. */
    dec_open(&x);
    assert_int_equal(dec_feed(&x, "{\"choices\": [{\"delta\": {\"content\": \"https://x/y.png\", "
                                  "\"phase\": \"image_gen\", \"status\": \"typing\"}}]}"),
                     QP_DECODE_CHUNK);
    assert_int_equal(x.d.text_len + x.d.reasoning_len, 0);
    /* A synthetic finish_reason is honoured. */
    assert_int_equal(dec_feed(&x, "{\"choices\": [{\"delta\": {\"content\": \"x\", \"phase\": "
                                  "\"answer\"}, \"finish_reason\": \"length\"}]}"),
                     QP_DECODE_CHUNK);
    assert_string_equal(text_of(&x), "x");
    assert_string_equal(x.d.finish_reason, "length");
    dec_close(&x);
}

static void
one_response_reaches_the_caller(void **state)
{
    (void)state;
    struct dec x;
    /* Index "0" then "1", interleaved. */
    dec_open(&x);
    dec_feed(&x, CREATED("r0", "0"));
    dec_feed(&x, CREATED("r1", "1"));
    assert_int_equal(dec_feed(&x, ANSWER("r1", "Ba", "1")), QP_DECODE_CHUNK);
    assert_int_equal(x.d.text_len, 0);
    assert_false(x.d.has_usage); /* the other response's usage is not ours */
    dec_feed(&x, ANSWER("r0", "Pa", "1"));
    assert_string_equal(text_of(&x), "Pa");
    dec_feed(&x, ANSWER_END("r1"));
    assert_null(x.d.finish_reason);
    dec_feed(&x, PLAIN("", "ris")); /* an empty response_id is none: taken */
    assert_string_equal(text_of(&x), "ris");
    dec_feed(&x, "{\"choices\": [{\"delta\": {\"content\": \"!\", \"phase\": \"answer\"}}]}");
    assert_string_equal(text_of(&x), "!"); /* no response_id: taken */
    dec_feed(&x, ANSWER_END("r0"));
    assert_string_equal(x.d.finish_reason, "stop");
    dec_close(&x);
    /* Index "1" first: index "0" still wins. */
    dec_open(&x);
    dec_feed(&x, CREATED("r1", "1"));
    dec_feed(&x, CREATED("r0", "0"));
    dec_feed(&x, ANSWER("r1", "Ba", "1"));
    assert_int_equal(x.d.text_len, 0);
    dec_feed(&x, ANSWER("r0", "Pa", "1"));
    assert_string_equal(text_of(&x), "Pa");
    dec_close(&x);
    /* No index (an older protocol): the first created frame; a numeric 0 is "0". */
    dec_open(&x);
    dec_feed(&x, CREATED_NO_INDEX("rA"));
    dec_feed(&x, CREATED_NO_INDEX("rB"));
    dec_feed(&x, ANSWER("rB", "no", "1"));
    assert_int_equal(x.d.text_len, 0);
    dec_feed(&x, ANSWER("rA", "yes", "1"));
    assert_string_equal(text_of(&x), "yes");
    dec_close(&x);
    dec_open(&x);
    dec_feed(&x, "{\"response.created\":{\"response_id\":\"rN\", \"response_index\": 0}}");
    dec_feed(&x, ANSWER("rM", "no", "1"));
    assert_int_equal(x.d.text_len, 0);
    dec_close(&x);
    /* No created frame at all: the first response_id seen; another one is dropped. */
    dec_open(&x);
    dec_feed(&x, ANSWER("rX", "one", "1"));
    assert_string_equal(text_of(&x), "one");
    dec_feed(&x, ANSWER("rY", "two", "1"));
    assert_int_equal(x.d.text_len, 0);
    dec_feed(&x, ANSWER_END("rY"));
    assert_null(x.d.finish_reason);
    dec_close(&x);
}

static void
in_band_failures_are_one_bounded_line(void **state)
{
    (void)state;
    struct dec x;
    dec_open(&x);
    assert_int_equal(dec_feed(&x, WAF), QP_DECODE_FAILURE);
    assert_non_null(strstr(x.d.failure, "FAIL_SYS_USER_VALIDATE"));
    assert_non_null(strstr(x.d.failure, "RGV587_ERROR::SM::"));
    assert_null(strstr(x.d.failure, "x5secdata")); /* the challenge URL is not the cause */
    assert_int_equal(x.d.failure_status, 0);
    assert_int_equal(dec_feed(&x, EXPIRED), QP_DECODE_FAILURE);
    assert_string_equal(x.d.failure,
                        "upstream failure: unauthorized: Token has expired, please log in again.");
    assert_int_equal(x.d.failure_status, 401);
    assert_int_equal(dec_feed(&x, QUOTA), QP_DECODE_FAILURE);
    assert_string_equal(x.d.failure, "upstream failure: RateLimited: You've reached the upper "
                                     "limit for today's usage.");
    assert_int_equal(x.d.failure_status, 0);
    assert_int_equal(dec_feed(&x, MID_ERROR), QP_DECODE_FAILURE);
    assert_string_equal(x.d.failure, "upstream error: internal_error: Allocated quota exceeded, "
                                     "please increase your quota limit.");
    assert_int_equal(dec_feed(&x, "{\"error\":{\"code\":\"x\",\"message\":\"via message\"}}"),
                     QP_DECODE_FAILURE);
    assert_string_equal(x.d.failure, "upstream error: x: via message");
    /* details not a string; control bytes; a long text cut on a character boundary. */
    assert_int_equal(dec_feed(&x,
                              "{\"success\":false,\"data\":{\"code\":\"RequestValidationError\","
                              "\"details\":[\"a\\nb\"]}}"),
                     QP_DECODE_FAILURE);
    assert_null(strchr(x.d.failure, '\n'));
    assert_non_null(strstr(x.d.failure, "RequestValidationError"));
    char big[2048] = "{\"success\":false,\"data\":{\"code\":\"Bad_Request\",\"details\":\"";
    for (int i = 0; i < 400; i++)
        strcat(big, "é");
    strcat(big, "\"}}");
    assert_int_equal(dec_feed(&x, big), QP_DECODE_FAILURE);
    size_t n = strlen(x.d.failure);
    assert_true(n <= 240);
    assert_true(n > 100);
    assert_int_not_equal((unsigned char)x.d.failure[n - 1], 0xC3); /* no half character */
    assert_int_equal(dec_feed(&x, "{\"success\":false}"), QP_DECODE_FAILURE);
    assert_non_null(strstr(x.d.failure, "success=false"));
    /* A successful ret and a null error are not failures. */
    assert_int_equal(dec_feed(&x, "{\"ret\":[\"SUCCESS::ok\"],\"choices\": []}"), QP_DECODE_CHUNK);
    assert_int_equal(dec_feed(&x, "{\"error\":null,\"choices\": []}"), QP_DECODE_CHUNK);
    /* Not events of this dialect. */
    assert_int_equal(dec_feed(&x, "<html>"), QP_DECODE_BAD);
    assert_int_equal(dec_feed(&x, "[1,2]"), QP_DECODE_BAD);
    assert_int_equal(dec_feed(&x, "{\"choices\": "), QP_DECODE_BAD);
    dec_close(&x);
}

/* The one rule of final statuses (qp_v2_failure_status), each exception pinned; the
 * decoder's envelopes use it. */
static void
failure_statuses_follow_one_table(void **state)
{
    (void)state;
    static const struct {
        const char *code, *details;
        unsigned status;
    } cases[] = {
        /* the credential */
        {"unauthorized", "Token has expired, please log in again.", 401},
        {"Unauthorized", "Not logged in", 401},
        {"UNAUTHORIZED", NULL, 401},
        {"Bad_Request", "Token has expired, please log in again.", 401},
        {NULL, "Token has expired", 401},
        /* the caller's request */
        {"Bad_Request", "Model not found", 400},
        {"bad_request", "Invalid input chat parent_id x is not exist.", 400},
        {"Bad_Request", NULL, 400},
        {"RequestValidationError", "[\"Field 'query -> chat_id': Field required\"]", 400},
        {"invalid_input", "thinking off", 400},
        /* worth another attempt: the exceptions of Bad_Request ... */
        {"Bad_Request", "The chat is in progress!", 0},
        {"Bad_Request", "Internal error...", 0},
        {"Bad_Request", "internal error: missing cookie", 0},
        {"Bad_Request", "INTERNAL ERROR", 0},
        /* ... and everything else */
        {"FAIL_SYS_USER_VALIDATE", "RGV587_ERROR::SM::busy", 0},
        {"RateLimited", "You've reached the upper limit for today's usage.", 0},
        {"internal_error", "Allocated quota exceeded", 0},
        {"Not_Found", "Chat not found", 0},
        {"data_inspection_failed", "content safety", 0},
        {"something_new", "Model not found", 0},
        {NULL, "Model not found", 0},
        {NULL, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned got = qp_v2_failure_status(cases[i].code, cases[i].details);
        if (got != cases[i].status)
            fail_msg("case %zu (%s: %s): %u, not %u", i, cases[i].code ? cases[i].code : "-",
                     cases[i].details ? cases[i].details : "-", got, cases[i].status);
    }
    /* The decoder's envelopes all use it: data, error, ret. */
    struct dec x;
    dec_open(&x);
    assert_int_equal(dec_feed(&x, MODEL_NOT_FOUND), QP_DECODE_FAILURE);
    assert_int_equal(x.d.failure_status, 400);
    assert_int_equal(dec_feed(&x, IN_PROGRESS), QP_DECODE_FAILURE);
    assert_int_equal(x.d.failure_status, 0);
    assert_int_equal(
        dec_feed(&x, "{\"error\":{\"code\":\"invalid_input\",\"message\":\"thinking off\"}}"),
        QP_DECODE_FAILURE);
    assert_int_equal(x.d.failure_status, 400);
    assert_int_equal(dec_feed(&x, WAF), QP_DECODE_FAILURE);
    assert_int_equal(x.d.failure_status, 0);
    dec_close(&x);
}

static void
whole_bodies_are_classified(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        bool failure;
        unsigned status;
        const char *needle;
    } cases[] = {
        {WAF, true, 0, "FAIL_SYS_USER_VALIDATE"},
        {EXPIRED, true, 401, "unauthorized"},
        {"{\"success\":false,\"request_id\":\"u\",\"data\":{\"code\":\"Unauthorized\","
         "\"details\":\"You are not allowed\"}}",
         true, 401, "Unauthorized"},
        {QUOTA, true, 0, "RateLimited"},
        {MID_ERROR, true, 0, "internal_error"},
        {"  \n" QUOTA "\n", true, 0, "RateLimited"},
        {"<!doctypehtml><meta charset=\"UTF-8\"><meta name=\"aliyun_waf_aa\" content=\"x\">"
         "<title></title>",
         true, 0, "firewall"},
        {"<html><head><title>504 Gateway Time-out</title></head></html>", true, 0, "HTML"},
        {"", true, 0, "empty"},
        {" \r\n ", true, 0, "empty"},
        {MODEL_NOT_FOUND, true, 400, "Bad_Request: Model not found"},
        {IN_PROGRESS, true, 0, "The chat is in progress!"},
        {"{\"success\":true,\"data\":{\"id\":\"x\"}}", false, 0, NULL},
        {"data: {}\n\n", false, 0, NULL},
        {"plain text", false, false, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char msg[256] = "";
        const char *b = cases[i].body;
        bool f = qp_decoder_v2.body_failure(b, strlen(b), msg, sizeof msg);
        if (f != cases[i].failure)
            fail_msg("case %zu: failure %d", i, f);
        if (qp_decoder_v2.body_failure_status(b, strlen(b)) != cases[i].status)
            fail_msg("case %zu: status %u", i, qp_decoder_v2.body_failure_status(b, strlen(b)));
        if (cases[i].needle && !strstr(msg, cases[i].needle))
            fail_msg("case %zu: '%s' lacks '%s'", i, msg, cases[i].needle);
        assert_null(strchr(msg, '\n'));
    }
    char small[8];
    assert_true(qp_decoder_v2.body_failure(QUOTA, strlen(QUOTA), small, sizeof small));
    assert_int_equal(strlen(small), sizeof small - 1);
}

/* ---- behind the normalizer, at every byte split ---- */

struct out {
    char content[1024], reasoning[1024];
    int chunks, finishes, done, errors, content_keys;
    char error[256];
    double prompt, completion, reasoning_tokens, total;
};

static void
read_out(const char *s, struct out *r)
{
    memset(r, 0, sizeof *r);
    r->prompt = r->completion = r->reasoning_tokens = r->total = -1;
    for (const char *p = s; *p;) {
        const char *end = strstr(p, "\n\n");
        assert_non_null(end);
        assert_memory_equal(p, "data: ", 6);
        if (end - p == 12 && memcmp(p + 6, "[DONE]", 6) == 0) {
            r->done++;
        } else {
            cJSON *o = cJSON_ParseWithLength(p + 6, (size_t)(end - p - 6));
            assert_non_null(o);
            const cJSON *err = cJSON_GetObjectItem(o, "error");
            if (err) {
                r->errors++;
                snprintf(r->error, sizeof r->error, "%s",
                         cJSON_GetObjectItem(err, "message")->valuestring);
            } else {
                r->chunks++;
                const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
                const cJSON *d = cJSON_GetObjectItem(ch, "delta");
                const cJSON *c = cJSON_GetObjectItem(d, "content");
                const cJSON *rc = cJSON_GetObjectItem(d, "reasoning_content");
                if (c) {
                    r->content_keys++;
                    strcat(r->content, c->valuestring);
                }
                if (rc)
                    strcat(r->reasoning, rc->valuestring);
                r->finishes += cJSON_IsString(cJSON_GetObjectItem(ch, "finish_reason"));
                const cJSON *u = cJSON_GetObjectItem(o, "usage");
                if (u) {
                    r->prompt = cJSON_GetObjectItem(u, "prompt_tokens")->valuedouble;
                    r->completion = cJSON_GetObjectItem(u, "completion_tokens")->valuedouble;
                    r->total = cJSON_GetObjectItem(u, "total_tokens")->valuedouble;
                    const cJSON *rt = cJSON_GetObjectItem(
                        cJSON_GetObjectItem(u, "completion_tokens_details"), "reasoning_tokens");
                    if (rt)
                        r->reasoning_tokens = rt->valuedouble;
                }
            }
            cJSON_Delete(o);
        }
        p = end + 2;
    }
}

/* Feeds @p up cut at @p cut; returns the first status other than OK (or OK). */
static enum qp_sse_status
norm_run(const char *up, size_t cut, enum qp_reasoning_mode mode, struct out *r,
         enum qp_sse_end *end, unsigned *final_status)
{
    struct qp_sse_norm_opts o = {.dialect = &qp_decoder_v2,
                                 .incremental_requested = true,
                                 .model = "qwen3-max",
                                 .id = "chatcmpl-req",
                                 .now_s = 1700000000,
                                 .reasoning = mode};
    struct qp_sse_norm *n = qp_sse_norm_new_opts(&o);
    assert_non_null(n);
    struct qk_buf out;
    qk_buf_init(&out, 1 << 20);
    size_t len = strlen(up);
    enum qp_sse_status st = qp_sse_norm_feed(n, up, cut, &out);
    if (st == QP_SSE_OK)
        st = qp_sse_norm_feed(n, up + cut, len - cut, &out);
    if (end)
        *end = qp_sse_norm_end(n);
    if (final_status)
        *final_status = qp_sse_norm_inband_status(n);
    if (st == QP_SSE_OK || st == QP_SSE_DONE)
        assert_int_equal(qp_sse_norm_finish(n, true, NULL, &out), QK_OK);
    else if (st == QP_SSE_INBAND_ERROR)
        assert_int_equal(qp_chunk_emit_error(qp_sse_norm_inband_message(n), &out), QK_OK);
    read_out(qk_buf_ptr(&out) ? qk_buf_ptr(&out) : "", r);
    qk_buf_free(&out);
    qp_sse_norm_free(n);
    return st;
}

/* The thinking answer with two candidates interleaved (index "0" is "Parïs 🎉", "1" is
 * "Rome"), as frames (joined, it is longer than a C literal may be). */
static const char *const dual_frames[] = {
    EV(CREATED("r0", "0")),
    EV(CREATED("r1", "1")),
    EV(THOUGHT("r1", "[\"other\"]")),
    EV(THOUGHT("r0", "[\"The user asks\"]")),
    EV(THOUGHT("r1", "[\"other\", \"more\"]")),
    EV(THOUGHT("r0", "[\"The user asks about France\", \"Answer: 巴黎\"]")),
    EV(THOUGHT_END("r0")),
    EV(THOUGHT_END("r1")),
    EV(ANSWER("r0", "Pa", "1")),
    EV(ANSWER("r1", "Ro", "1")),
    EV(ANSWER("r0", "rïs", "2")),
    EV(ANSWER("r1", "me", "2")),
    EV(ANSWER("r0", "", "3")),
    EV(ANSWER_END("r1")),
    EV(ANSWER("r0", " 🎉", "4")),
    EV(ANSWER_END("r0")),
};

/* @return the frames joined (static). */
static const char *
dual(void)
{
    static char s[16384];
    if (!s[0])
        for (size_t i = 0; i < sizeof dual_frames / sizeof dual_frames[0]; i++)
            strcat(s, dual_frames[i]);
    return s;
}
static const char dual_reasoning[] = "The user asks about France\nAnswer: 巴黎";

static void
every_split_gives_the_same_answer(void **state)
{
    (void)state;
    const char *dual_thinking = dual();
    size_t len = strlen(dual_thinking);
    for (size_t cut = 0; cut <= len; cut++) {
        struct out r;
        enum qp_sse_end end;
        assert_int_equal(norm_run(dual_thinking, cut, QP_REASONING_SEPARATE, &r, &end, NULL),
                         QP_SSE_OK);
        if (strcmp(r.content, "Parïs 🎉") != 0 || strcmp(r.reasoning, dual_reasoning) != 0)
            fail_msg("cut %zu: content '%s' reasoning '%s'", cut, r.content, r.reasoning);
        assert_int_equal(end, QP_SSE_END_CLEAN);
        assert_int_equal(r.finishes, 1);
        assert_int_equal(r.done, 1);
        assert_int_equal(r.errors, 0);
        assert_int_equal(r.prompt, 1049);
        assert_int_equal(r.completion, 4);
        assert_int_equal(r.total, 1053);
        assert_int_equal(r.reasoning_tokens, 102);
        /* Reasoning-only chunks carry no content key: two of them, then 3 answer chunks
         * and the finishing one. */
        assert_int_equal(r.chunks, 6);
        assert_int_equal(r.content_keys, 4);
    }
}

static void
reasoning_modes_through_the_normalizer(void **state)
{
    (void)state;
    struct out r;
    const char *dual_thinking = dual();
    assert_int_equal(norm_run(dual_thinking, 7, QP_REASONING_INLINE, &r, NULL, NULL), QP_SSE_OK);
    assert_string_equal(r.content, "<think>\nThe user asks about France\nAnswer: 巴黎\n</think>\n\n"
                                   "Parïs 🎉");
    assert_string_equal(r.reasoning, "");
    assert_int_equal(r.finishes, 1);
    assert_int_equal(norm_run(dual_thinking, 7, QP_REASONING_DROP, &r, NULL, NULL), QP_SSE_OK);
    assert_string_equal(r.content, "Parïs 🎉");
    assert_string_equal(r.reasoning, "");
    assert_int_equal(r.chunks, 5); /* the first thought starts the stream, empty */
    /* Inline, thinking then no answer text: the block closes on the finish. */
    static const char empty_answer[] = EV(CREATED("r0", "0")) EV(THOUGHT("r0", "[\"hm\"]"))
        EV(THOUGHT_END("r0")) EV(ANSWER_END("r0"));
    assert_int_equal(norm_run(empty_answer, 0, QP_REASONING_INLINE, &r, NULL, NULL), QP_SSE_OK);
    assert_string_equal(r.content, "<think>\nhm\n</think>\n\n");
    assert_int_equal(r.done, 1);
    /* Think phase, no phase keys for the answer, and [DONE]. */
    static const char think_plain[] = EV(THINK("r0", "a")) EV(THINK("r0", "b")) EV(PLAIN("r0", "x"))
        EV(PLAIN_END("r0")) EV("[DONE]");
    assert_int_equal(norm_run(think_plain, 3, QP_REASONING_SEPARATE, &r, NULL, NULL), QP_SSE_DONE);
    assert_string_equal(r.reasoning, "ab");
    assert_string_equal(r.content, "x");
    assert_int_equal(r.done, 1);
}

static void
an_unfinished_stream_is_a_cut(void **state)
{
    (void)state;
    static const char cut_stream[] = EV(CREATED("r0", "0")) EV(THOUGHT("r0", "[\"a\"]"))
        EV(THOUGHT_END("r0")) EV(ANSWER("r0", "Hel", "1"));
    size_t len = strlen(cut_stream);
    for (size_t cut = 0; cut <= len; cut++) {
        struct out r;
        enum qp_sse_end end;
        assert_int_equal(norm_run(cut_stream, cut, QP_REASONING_SEPARATE, &r, &end, NULL),
                         QP_SSE_OK);
        assert_int_equal(end, QP_SSE_END_CUT);
        assert_int_equal(r.done, 0);
        assert_int_equal(r.errors, 1);
        assert_string_equal(r.error, "upstream stream ended before the answer finished");
        assert_string_equal(r.content, "Hel");
    }
    /* Only the created frame: no bytes for the caller, and not a clean end. */
    struct out r;
    enum qp_sse_end end;
    assert_int_equal(norm_run(EV(CREATED("r0", "0")), 0, QP_REASONING_SEPARATE, &r, &end, NULL),
                     QP_SSE_OK);
    assert_int_equal(end, QP_SSE_END_CUT);
    assert_int_equal(r.chunks, 0);
    /* The other response finishing is not ours. */
    assert_int_equal(norm_run(EV(CREATED("r0", "0")) EV(CREATED("r1", "1")) EV(ANSWER_END("r1")), 0,
                              QP_REASONING_SEPARATE, &r, &end, NULL),
                     QP_SSE_OK);
    assert_int_equal(end, QP_SSE_END_CUT);
}

static void
in_band_failures_behind_the_normalizer(void **state)
{
    (void)state;
    static const char mid[] = EV(CREATED("r0", "0")) EV(THOUGHT("r0", "[\"a\"]"))
        EV(ANSWER("r0", "He", "1")) EV(MID_ERROR);
    size_t len = strlen(mid);
    for (size_t cut = 0; cut <= len; cut++) {
        struct out r;
        unsigned status = 1;
        assert_int_equal(norm_run(mid, cut, QP_REASONING_SEPARATE, &r, NULL, &status),
                         QP_SSE_INBAND_ERROR);
        assert_int_equal(status, 0);
        assert_string_equal(r.content, "He");
        assert_string_equal(r.reasoning, "a");
        assert_int_equal(r.errors, 1);
        assert_non_null(strstr(r.error, "Allocated quota exceeded"));
        assert_int_equal(r.done, 0);
    }
    struct out r;
    unsigned status = 0;
    assert_int_equal(norm_run(EV(EXPIRED), 4, QP_REASONING_SEPARATE, &r, NULL, &status),
                     QP_SSE_INBAND_ERROR);
    assert_int_equal(status, 401);
    assert_int_equal(r.chunks, 0);
    assert_int_equal(norm_run(EV(WAF), 0, QP_REASONING_SEPARATE, &r, NULL, &status),
                     QP_SSE_INBAND_ERROR);
    assert_int_equal(status, 0);
    assert_int_equal(norm_run(EV(MODEL_NOT_FOUND), 3, QP_REASONING_SEPARATE, &r, NULL, &status),
                     QP_SSE_INBAND_ERROR);
    assert_int_equal(status, 400);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cumulative_thoughts_give_exact_increments),
        cmocka_unit_test(think_phase_and_phaseless_frames),
        cmocka_unit_test(one_response_reaches_the_caller),
        cmocka_unit_test(in_band_failures_are_one_bounded_line),
        cmocka_unit_test(failure_statuses_follow_one_table),
        cmocka_unit_test(whole_bodies_are_classified),
        cmocka_unit_test(every_split_gives_the_same_answer),
        cmocka_unit_test(reasoning_modes_through_the_normalizer),
        cmocka_unit_test(an_unfinished_stream_is_a_cut),
        cmocka_unit_test(in_band_failures_behind_the_normalizer),
    };
    return cmocka_run_group_tests_name("proxy_decode_v2", tests, NULL, NULL);
}
