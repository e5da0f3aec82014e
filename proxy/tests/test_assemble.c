/* Unit tests: the non-stream answer assembled from a whole upstream stream (assemble.c):
 * content, reasoning in each mode, usage, finish, and the failures, cuts and junk that are
 * not an answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "assemble.h"
#include "completion.h"
#include "decode_v1.h"
#include "decode_v2.h"

#define CREATED(rid, index)                                                                        \
    "{\"response.created\":{\"chat_id\": \"c-1\", \"parent_id\": \"p-1\", \"response_id\":\"" rid  \
    "\", \"response_index\": \"" index "\"}}"
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
#define ANSWER(rid, c, k)                                                                          \
    "{\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"" c "\", \"phase\": "     \
    "\"answer\", \"status\": \"typing\"}}], \"response_id\": \"" rid "\", \"usage\": "             \
    "{\"input_tokens\": 1049, \"output_tokens\": " k ", \"characters\": 0, \"total_tokens\": "     \
    "1050, \"output_tokens_details\": {\"text_tokens\": " k "}}, \"timestamp\": 1780468951}"
#define PLAIN(c) "{\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"" c "\"}}]}"
#define ANSWER_END(rid)                                                                            \
    "{\"choices\": [{\"delta\": {\"content\": \"\", \"role\": \"assistant\", \"status\": "         \
    "\"finished\", \"phase\": \"answer\"}}], \"response_id\": \"" rid "\"}"
#define EV(x) "data: " x "\n\n"
#define EXPIRED                                                                                    \
    "{\"success\":false,\"request_id\":\"9f0e\",\"data\":{\"code\":\"unauthorized\","              \
    "\"details\":\"Token has expired, please log in again.\"}}"
#define MODEL_NOT_FOUND                                                                            \
    "{\"success\":false,\"request_id\":\"9f0e\",\"data\":{\"code\":\"Bad_Request\","               \
    "\"details\":\"Model not found\"}}"
#define MID_ERROR                                                                                  \
    "{\"error\":{\"code\":\"internal_error\",\"details\":\"Allocated quota "                       \
    "exceeded, please increase your quota limit.\"}}"

static const char *const thinking_frames[] = {
    EV(CREATED("r0", "0")),
    EV(CREATED("r1", "1")),
    EV(THOUGHT("r0", "[\"The user asks\"]")),
    EV(THOUGHT("r1", "[\"other\"]")),
    EV(THOUGHT("r0", "[\"The user asks about France\", \"Answer: 巴黎\"]")),
    EV(THOUGHT_END("r0")),
    EV(ANSWER("r0", "Pa", "1")),
    EV(ANSWER("r1", "Ro", "1")),
    EV(ANSWER("r0", "rïs", "2")),
    EV(ANSWER_END("r1")),
    EV(ANSWER("r0", "", "3")),
    EV(ANSWER_END("r0")),
};

static char *
join(const char *const *frames, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(frames[i]);
    char *s = calloc(1, len);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        strcat(s, frames[i]);
    return s;
}

struct result {
    enum qp_assemble_status st;
    char msg[256];
    unsigned final_status;
    cJSON *json; /* OK only */
};

static void
assemble(const struct qp_decoder_ops *dialect, enum qp_reasoning_mode mode, const char *body,
         struct result *r)
{
    struct qp_assemble_opts o = {.dialect = dialect,
                                 .model = "qwen3-max",
                                 .id = "chatcmpl-req",
                                 .created_s = 1700000000,
                                 .reasoning = mode};
    char *out = (char *)1;
    size_t out_len = 99;
    memset(r, 0, sizeof *r);
    r->final_status = 999;
    r->st = qp_assemble_completion(&o, body, strlen(body), &out, &out_len, r->msg, sizeof r->msg,
                                   &r->final_status);
    if (r->st == QP_ASSEMBLE_OK) {
        assert_non_null(out);
        assert_int_equal(out_len, strlen(out));
        r->json = cJSON_Parse(out);
        assert_non_null(r->json);
        free(out);
        assert_int_equal(r->final_status, 0);
    } else {
        assert_null(out);
        assert_int_equal(out_len, 0);
        assert_true(r->msg[0] != '\0');
        assert_null(strchr(r->msg, '\n'));
    }
}

static const cJSON *
at(const cJSON *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *k = strtok(buf, "."); k && o; k = strtok(NULL, "."))
        o = k[0] >= '0' && k[0] <= '9' ? cJSON_GetArrayItem(o, atoi(k))
                                       : cJSON_GetObjectItemCaseSensitive(o, k);
    return o;
}

static void
a_thinking_answer_in_each_mode(void **state)
{
    (void)state;
    char *body = join(thinking_frames, sizeof thinking_frames / sizeof thinking_frames[0]);
    struct result r;
    assemble(&qp_decoder_v2, QP_REASONING_SEPARATE, body, &r);
    assert_int_equal(r.st, QP_ASSEMBLE_OK);
    assert_string_equal(at(r.json, "id")->valuestring, "chatcmpl-req");
    assert_string_equal(at(r.json, "object")->valuestring, "chat.completion");
    assert_int_equal(at(r.json, "created")->valuedouble, 1700000000);
    assert_string_equal(at(r.json, "model")->valuestring, "qwen3-max");
    assert_int_equal(cJSON_GetArraySize(at(r.json, "choices")), 1);
    assert_int_equal(at(r.json, "choices.0.index")->valuedouble, 0);
    assert_string_equal(at(r.json, "choices.0.message.role")->valuestring, "assistant");
    assert_string_equal(at(r.json, "choices.0.message.content")->valuestring, "Parïs");
    assert_string_equal(at(r.json, "choices.0.message.reasoning_content")->valuestring,
                        "The user asks about France\nAnswer: 巴黎");
    assert_string_equal(at(r.json, "choices.0.finish_reason")->valuestring, "stop");
    assert_int_equal(at(r.json, "usage.prompt_tokens")->valuedouble, 1049);
    assert_int_equal(at(r.json, "usage.completion_tokens")->valuedouble, 3);
    assert_int_equal(at(r.json, "usage.total_tokens")->valuedouble, 1052);
    assert_int_equal(at(r.json, "usage.completion_tokens_details.reasoning_tokens")->valuedouble,
                     102);
    cJSON_Delete(r.json);
    assemble(&qp_decoder_v2, QP_REASONING_INLINE, body, &r);
    assert_int_equal(r.st, QP_ASSEMBLE_OK);
    assert_string_equal(at(r.json, "choices.0.message.content")->valuestring,
                        "<think>\nThe user asks about France\nAnswer: 巴黎\n</think>\n\nParïs");
    assert_null(at(r.json, "choices.0.message.reasoning_content"));
    cJSON_Delete(r.json);
    assemble(&qp_decoder_v2, QP_REASONING_DROP, body, &r);
    assert_int_equal(r.st, QP_ASSEMBLE_OK);
    assert_string_equal(at(r.json, "choices.0.message.content")->valuestring, "Parïs");
    assert_null(at(r.json, "choices.0.message.reasoning_content"));
    cJSON_Delete(r.json);
    free(body);
}

static void
a_plain_answer_has_no_reasoning_key(void **state)
{
    (void)state;
    struct result r;
    /* No phase keys, no usage, ended by [DONE] rather than a finished frame. */
    assemble(&qp_decoder_v2, QP_REASONING_SEPARATE,
             EV(CREATED("r0", "0")) EV(PLAIN("Hello")) EV(PLAIN(" you")) EV("[DONE]"), &r);
    assert_int_equal(r.st, QP_ASSEMBLE_OK);
    assert_string_equal(at(r.json, "choices.0.message.content")->valuestring, "Hello you");
    assert_null(at(r.json, "choices.0.message.reasoning_content"));
    assert_string_equal(at(r.json, "choices.0.finish_reason")->valuestring, "stop");
    assert_null(at(r.json, "usage"));
    cJSON_Delete(r.json);
    /* An empty answer that finished is an answer (empty content). */
    assemble(&qp_decoder_v2, QP_REASONING_INLINE, EV(CREATED("r0", "0")) EV(ANSWER_END("r0")), &r);
    assert_int_equal(r.st, QP_ASSEMBLE_OK);
    assert_string_equal(at(r.json, "choices.0.message.content")->valuestring, "");
    cJSON_Delete(r.json);
    /* A synthetic finish_reason is kept. */
    assemble(
        &qp_decoder_v2, QP_REASONING_SEPARATE,
        EV("{\"choices\": [{\"delta\": {\"content\": \"x\"}, \"finish_reason\": \"length\"}]}"),
        &r);
    assert_int_equal(r.st, QP_ASSEMBLE_OK);
    assert_string_equal(at(r.json, "choices.0.finish_reason")->valuestring, "length");
    cJSON_Delete(r.json);
}

static void
failures_are_failures(void **state)
{
    (void)state;
    struct result r;
    assemble(&qp_decoder_v2, QP_REASONING_SEPARATE,
             EV(CREATED("r0", "0")) EV(ANSWER("r0", "He", "1")) EV(MID_ERROR), &r);
    assert_int_equal(r.st, QP_ASSEMBLE_FAILURE);
    assert_string_equal(r.msg, "upstream error: internal_error: Allocated quota exceeded, please "
                               "increase your quota limit.");
    assert_int_equal(r.final_status, 0);
    assemble(&qp_decoder_v2, QP_REASONING_SEPARATE, EV(EXPIRED), &r);
    assert_int_equal(r.st, QP_ASSEMBLE_FAILURE);
    assert_int_equal(r.final_status, 401);
    /* The bare JSON as the whole body, and the firewall's HTML page. */
    assemble(&qp_decoder_v2, QP_REASONING_SEPARATE, EXPIRED, &r);
    assert_int_equal(r.st, QP_ASSEMBLE_FAILURE);
    assert_int_equal(r.final_status, 401);
    assert_non_null(strstr(r.msg, "Token has expired"));
    assemble(&qp_decoder_v2, QP_REASONING_SEPARATE,
             "<!doctypehtml><meta charset=\"UTF-8\"><meta name=\"aliyun_waf_aa\" content=\"1\">",
             &r);
    assert_int_equal(r.st, QP_ASSEMBLE_FAILURE);
    assert_int_equal(r.final_status, 0);
    assemble(&qp_decoder_v2, QP_REASONING_SEPARATE, "", &r);
    assert_int_equal(r.st, QP_ASSEMBLE_FAILURE);
    assert_non_null(strstr(r.msg, "empty"));
    /* The caller's bad request, as the first event and as the whole body: 400. */
    assemble(&qp_decoder_v2, QP_REASONING_SEPARATE, EV(MODEL_NOT_FOUND), &r);
    assert_int_equal(r.st, QP_ASSEMBLE_FAILURE);
    assert_int_equal(r.final_status, 400);
    assemble(&qp_decoder_v2, QP_REASONING_SEPARATE, MODEL_NOT_FOUND, &r);
    assert_int_equal(r.st, QP_ASSEMBLE_FAILURE);
    assert_int_equal(r.final_status, 400);
    assert_non_null(strstr(r.msg, "Model not found"));
}

static void
an_answer_that_did_not_finish_is_incomplete(void **state)
{
    (void)state;
    struct result r;
    static const char *const cut[] = {
        EV(CREATED("r0", "0")) EV(ANSWER("r0", "He", "1")),
        EV(CREATED("r0", "0")),
        EV(CREATED("r0", "0")) EV(CREATED("r1", "1")) EV(ANSWER_END("r1")),
        EV(CREATED("r0", "0")) EV(THOUGHT("r0", "[\"a\"]")) EV(THOUGHT_END("r0")),
        /* The finished frame without its blank line: a cut, as in a stream (SSE-17). */
        EV(CREATED("r0", "0")) EV(ANSWER("r0", "He", "1")) "data: " ANSWER_END("r0") "\n",
    };
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        assemble(&qp_decoder_v2, QP_REASONING_SEPARATE, cut[i], &r);
        if (r.st != QP_ASSEMBLE_INCOMPLETE)
            fail_msg("case %zu: status %d", i, r.st);
    }
    /* v1 needs no finish: a clean end is the end, a cut one is not. */
    assemble(&qp_decoder_v1, QP_REASONING_SEPARATE,
             EV("{\"id\":\"up-1\",\"model\":\"qwen-max\",\"created\":1738000000123,"
                "\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}")
                 EV("{\"choices\":[{\"delta\":{\"content\":\"Hi there\"}}],"
                    "\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}"),
             &r);
    assert_int_equal(r.st, QP_ASSEMBLE_OK);
    assert_string_equal(at(r.json, "choices.0.message.content")->valuestring, "Hi there");
    assert_string_equal(at(r.json, "id")->valuestring, "up-1");
    assert_string_equal(at(r.json, "model")->valuestring, "qwen-max");
    assert_int_equal(at(r.json, "created")->valuedouble, 1738000000);
    assert_int_equal(at(r.json, "usage.total_tokens")->valuedouble, 7);
    assert_null(at(r.json, "usage.completion_tokens_details"));
    cJSON_Delete(r.json);
    assemble(&qp_decoder_v1, QP_REASONING_SEPARATE, "data: {\"choices\":[]}", &r);
    assert_int_equal(r.st, QP_ASSEMBLE_INCOMPLETE);
}

static void
junk_is_bad(void **state)
{
    (void)state;
    struct result r;
    assemble(&qp_decoder_v2, QP_REASONING_SEPARATE, "plain text", &r);
    assert_int_equal(r.st, QP_ASSEMBLE_BAD);
    assemble(&qp_decoder_v2, QP_REASONING_SEPARATE, "{\"success\":true,\"data\":{}}", &r);
    assert_int_equal(r.st, QP_ASSEMBLE_BAD);
    assemble(&qp_decoder_v2, QP_REASONING_SEPARATE, EV(CREATED("r0", "0")) EV("<html>"), &r);
    assert_int_equal(r.st, QP_ASSEMBLE_BAD);
    /* A NULL msg is allowed. */
    struct qp_assemble_opts o = {.dialect = &qp_decoder_v2, .model = "m", .id = "i"};
    char *out = NULL;
    size_t out_len = 0;
    assert_int_equal(qp_assemble_completion(&o, "x", 1, &out, &out_len, NULL, 0, NULL),
                     QP_ASSEMBLE_BAD);
    assert_null(out);
}

/* Assembles @p body (v2, SEPARATE) into the text the caller gets. */
static char *
assembled_text(const char *body)
{
    struct qp_assemble_opts o = {.dialect = &qp_decoder_v2,
                                 .model = "qwen3-max",
                                 .id = "chatcmpl-req",
                                 .created_s = 1700000000,
                                 .reasoning = QP_REASONING_SEPARATE};
    char *out = NULL;
    size_t out_len = 0;
    char msg[160];
    assert_int_equal(
        qp_assemble_completion(&o, body, strlen(body), &out, &out_len, msg, sizeof msg, NULL),
        QP_ASSEMBLE_OK);
    assert_int_equal(out_len, strlen(out));
    return out;
}

/* The bytes of an assembled answer, and that they are already in OpenAI's terms: the
 * completion rewrite (completion.h, HTTP-9) leaves them as they are, so the proxy sends
 * them without it. Token counts whose sum is no exact count lose the total there, and
 * here. */
static void
an_assembled_answer_is_final(void **state)
{
    (void)state;
    char *body = join(thinking_frames, sizeof thinking_frames / sizeof thinking_frames[0]);
    char *out = assembled_text(body);
    assert_string_equal(
        out, "{\"id\":\"chatcmpl-req\",\"object\":\"chat.completion\",\"created\":1700000000,"
             "\"model\":\"qwen3-max\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
             "\"assistant\",\"content\":\"Parïs\",\"reasoning_content\":\"The user asks about "
             "France\\nAnswer: 巴黎\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":"
             "1049,\"completion_tokens\":3,\"total_tokens\":1052,\"completion_tokens_details\":{"
             "\"reasoning_tokens\":102}}}");
    free(body);
    static const char *const bodies[] = {
        EV(CREATED("r0", "0")) EV(ANSWER("r0", "a\\\"b\\\\c\\u0001\\n", "7")) EV(ANSWER_END("r0")),
        EV(CREATED("r0", "0")) EV(PLAIN("x")) EV("[DONE]"),
        EV("{\"choices\": [{\"delta\": {\"content\": \"x\", \"status\": \"finished\"}}], "
           "\"usage\": {\"input_tokens\": 9007199254740991, \"output_tokens\": 9007199254740991, "
           "\"output_tokens_details\": {\"reasoning_tokens\": 0}}}"),
        EV("{\"choices\": [{\"delta\": {\"content\": \"x\", \"status\": \"finished\"}}], "
           "\"usage\": {\"input_tokens\": 4503599627370496, \"output_tokens\": "
           "4503599627370496}}"),
        EV("{\"choices\": [{\"delta\": {\"content\": \"x\", \"status\": \"finished\"}}], "
           "\"usage\": {\"input_tokens\": 999999999999999, \"output_tokens\": 1}}"),
        EV("{\"choices\": [{\"delta\": {\"content\": \"x\", \"status\": \"finished\"}}], "
           "\"usage\": {\"input_tokens\": -0, \"output_tokens\": 1e3}}"),
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char *a = assembled_text(bodies[i]);
        size_t len = 0;
        char *rewritten = qp_completion_openai(a, strlen(a), &len);
        assert_non_null(rewritten);
        if (strcmp(a, rewritten) != 0)
            fail_msg("case %zu: assembled %s, rewritten %s", i, a, rewritten);
        free(rewritten);
        free(a);
    }
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_thinking_answer_in_each_mode),
        cmocka_unit_test(a_plain_answer_has_no_reasoning_key),
        cmocka_unit_test(failures_are_failures),
        cmocka_unit_test(an_answer_that_did_not_finish_is_incomplete),
        cmocka_unit_test(junk_is_bad),
        cmocka_unit_test(an_assembled_answer_is_final),
    };
    return cmocka_run_group_tests_name("proxy_assemble", tests, NULL, NULL);
}
