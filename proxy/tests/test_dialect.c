/*
 * Unit tests of the Qwen v2 dialect's plan (dialect_v2.c): the bodies it makes from the
 * caller's OpenAI body and the plan state, the chat id it reads from chats/new, the query,
 * the history rule (prompt.h) and the model list's envelope (models.h). Pure functions:
 * no network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "dialect.h"
#include "models.h"
#include "prompt.h"

static const struct qp_dialect_step *
step(size_t i)
{
    assert_true(i < qp_dialect_v2.chat.len);
    return &qp_dialect_v2.chat.steps[i];
}

/* The body step @p i makes from the caller's @p chat, parsed. */
static cJSON *
body_of(size_t i, const char *chat, const struct qp_plan_state *plan)
{
    struct qk_buf in, out;
    qk_buf_init(&in, 1 << 20);
    qk_buf_init(&out, 1 << 20);
    assert_int_equal(qk_buf_append_str(&in, chat), QK_OK);
    assert_int_equal(step(i)->make_body(&in, plan, &out), QK_OK);
    cJSON *root = cJSON_Parse(qk_buf_ptr(&out));
    assert_non_null(root);
    qk_buf_free(&in);
    qk_buf_free(&out);
    return root;
}

static const char *
str_at(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

/* The flattened prompt of @p messages_json, into @p out. */
static void
flatten(const char *messages_json, char *out, size_t cap)
{
    cJSON *m = cJSON_Parse(messages_json);
    assert_non_null(m);
    struct qk_buf b;
    qk_buf_init(&b, 1 << 20);
    assert_int_equal(qp_prompt_flatten(m, &b), QK_OK);
    snprintf(out, cap, "%s", qk_buf_ptr(&b));
    qk_buf_free(&b);
    cJSON_Delete(m);
}

/* The text step @p i makes from the caller's @p chat. */
static char *
text_of(size_t i, const char *chat, const struct qp_plan_state *plan)
{
    struct qk_buf in, out;
    qk_buf_init(&in, 1 << 20);
    qk_buf_init(&out, 1 << 20);
    assert_int_equal(qk_buf_append_str(&in, chat), QK_OK);
    assert_int_equal(step(i)->make_body(&in, plan, &out), QK_OK);
    qk_buf_free(&in);
    return qk_buf_take(&out, NULL);
}

/* Both bodies byte for byte: what the service has been seen to take, whatever builds it. */
static void
bodies_are_these_bytes(void **state)
{
    (void)state;
    struct qp_plan_state plan = {.chat_id = "chat-\"1\"",
                                 .fid = "0f0e0d0c-0000-4000-8000-000000000001",
                                 .now_ms = 1764680000123};
    static const char chat[] =
        "{\"model\":\"qwen3.7-plus\",\"enable_thinking\":false,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9\\n\\\"\"}]}";
    char *a = text_of(0, chat, &plan);
    assert_string_equal(a, "{\"chatId\":\"\",\"models\":[\"qwen3.7-plus\"],\"project_id\":\"\","
                           "\"timestamp\":1764680000123,\"chat_type\":\"t2t\",\"chat_mode\":"
                           "\"normal\"}");
    free(a);
    char *b = text_of(1, chat, &plan);
    assert_string_equal(
        b, "{\"stream\":true,\"incremental_output\":true,\"version\":\"2.1\",\"chat_id\":"
           "\"chat-\\\"1\\\"\",\"chatId\":\"chat-\\\"1\\\"\",\"chat_mode\":\"normal\",\"model\":"
           "\"qwen3.7-plus\",\"parent_id\":null,\"messages\":[{\"fid\":\"0f0e0d0c-0000-4000-8000-"
           "000000000001\",\"parentId\":null,\"childrenIds\":[],\"role\":\"user\",\"content\":"
           "\"hé\\n\\\"\",\"user_action\":\"chat\",\"files\":[],\"models\":[\"qwen3.7-plus\"],"
           "\"chat_type\":\"t2t\",\"sub_chat_type\":\"t2t\",\"feature_config\":{\"output_schema\":"
           "\"phase\",\"thinking_enabled\":false,\"thinking_format\":\"summary\"},\"extra\":{"
           "\"meta\":{\"subChatType\":\"t2t\"}}}]}");
    free(b);
}

static void
plan_is_two_posts_with_the_paths_of_the_service(void **state)
{
    (void)state;
    assert_int_equal(qp_dialect_v2.chat.len, 2);
    assert_string_equal(step(0)->method, "POST");
    assert_string_equal(step(0)->path, "/api/v2/chats/new");
    assert_non_null(step(0)->take_answer);
    assert_string_equal(step(1)->path, "/api/v2/chat/completions");
    assert_int_equal(qp_dialect_v2.models.len, 1);
    assert_string_equal(qp_dialect_v2.models.steps[0].path, "/api/v2/models/");
    assert_string_equal(qp_dialect_v2.models.steps[0].method, "GET");
    assert_int_equal(qp_dialect_v2.chat_answer, QP_ANSWER_SSE);
    assert_int_equal(qp_dialect_v1.chat_answer, QP_ANSWER_JSON);
    assert_ptr_equal(qp_dialect_find("v2"), &qp_dialect_v2);
}

static void
chats_new_body_is_the_current_shape(void **state)
{
    (void)state;
    struct qp_plan_state plan = {.now_ms = 1787650000123LL};
    cJSON *b = body_of(0, "{\"model\":\"qwen3.7-plus\",\"messages\":[]}", &plan);
    assert_string_equal(str_at(b, "chatId"), "");
    assert_string_equal(str_at(b, "project_id"), "");
    assert_string_equal(str_at(b, "chat_type"), "t2t");
    assert_string_equal(str_at(b, "chat_mode"), "normal");
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(b, "models");
    assert_int_equal(cJSON_GetArraySize(models), 1);
    assert_string_equal(cJSON_GetArrayItem(models, 0)->valuestring, "qwen3.7-plus");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(b, "timestamp");
    assert_true(cJSON_IsNumber(ts));
    assert_true(ts->valuedouble == 1787650000123.0);
    cJSON_Delete(b);
}

static bool
take(const char *answer, struct qp_plan_state *plan)
{
    memset(plan, 0, sizeof(*plan));
    return step(0)->take_answer(plan, answer, strlen(answer));
}

static void
chat_id_only_from_a_success_with_a_string_id(void **state)
{
    (void)state;
    struct qp_plan_state p;
    assert_true(take("{\"success\":true,\"request_id\":\"r\",\"data\":{\"id\":\"605f-ab\"}}", &p));
    assert_string_equal(p.chat_id, "605f-ab");
    assert_int_equal(p.final_status, 0);

    /* Unusable answers, with the final status of the decoder's rule (0: retried). */
    static const struct {
        const char *answer;
        unsigned status;
    } bad[] = {
        {"{\"success\":true,\"data\":{}}", 0},
        {"{\"success\":true,\"data\":{\"id\":7}}", 0},
        {"{\"success\":true,\"data\":{\"id\":\"\"}}", 0},
        {"{\"data\":{\"id\":\"x\"}}", 0},
        {"{\"success\":false,\"data\":{\"code\":\"Bad_Request\",\"details\":\"Model not found\"}}",
         400},
        {"{\"success\":false,\"data\":{\"code\":\"Bad_Request\",\"details\":\"The chat is in "
         "progress!\"}}",
         0},
        {"{\"success\":false,\"data\":{\"code\":\"Bad_Request\",\"details\":\"Internal "
         "error...\"}}",
         0},
        {"{\"success\":false,\"data\":{\"code\":\"RateLimited\",\"details\":\"quota\"}}", 0},
        {"{\"success\":false,\"data\":{\"code\":\"RequestValidationError\",\"details\":\"x\"}}",
         400},
        {"{\"success\":false,\"data\":{\"code\":\"Unauthorized\",\"details\":\"Not logged in\"}}",
         401},
        {"<!doctypehtml><meta name=\"aliyun_waf_aa\" content=\"1\">", 0},
        {"{\"ret\":[\"FAIL_SYS_USER_VALIDATE\",\"RGV587_ERROR::SM\"],\"data\":{}}", 0},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(take(bad[i].answer, &p));
        assert_string_equal(p.chat_id, "");
        assert_true(p.why[0] != '\0'); /* a cause for the log and the error */
        if (p.final_status != bad[i].status)
            fail_msg("case %zu: status %u, not %u", i, p.final_status, bad[i].status);
    }
    assert_false(take("{\"success\":false,\"data\":{\"code\":\"Bad_Request\",\"details\":"
                      "\"Model not found\"}}",
                      &p));
    assert_non_null(strstr(p.why, "Bad_Request"));
    assert_non_null(strstr(p.why, "Model not found"));
    assert_false(take("{\"success\":false,\"data\":{\"code\":\"unauthorized\",\"details\":"
                      "\"Token has expired, please log in again.\"}}",
                      &p));
    assert_int_equal(p.final_status, 401);
}

static void
completion_query_is_the_escaped_chat_id(void **state)
{
    (void)state;
    struct qp_plan_state plan = {.chat_id = "a b&c=d"};
    struct qk_buf url;
    qk_buf_init(&url, 1024);
    assert_int_equal(step(1)->add_query(&plan, &url), QK_OK);
    assert_string_equal(qk_buf_ptr(&url), "?chat_id=a%20b%26c%3Dd");
    qk_buf_free(&url);
}

static void
completion_body_is_one_streamed_message(void **state)
{
    (void)state;
    struct qp_plan_state plan = {.chat_id = "chat-1",
                                 .fid = "0f0e0d0c-0000-4000-8000-000000000001"};
    cJSON *b = body_of(1,
                       "{\"model\":\"qwen3.7-plus\",\"stream\":false,\"messages\":[{\"role\":"
                       "\"user\",\"content\":\"hi\"}]}",
                       &plan);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "stream"))); /* always */
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "incremental_output")));
    assert_string_equal(str_at(b, "version"), "2.1");
    assert_string_equal(str_at(b, "chat_id"), "chat-1");
    assert_string_equal(str_at(b, "chatId"), "chat-1");
    assert_string_equal(str_at(b, "chat_mode"), "normal");
    assert_string_equal(str_at(b, "model"), "qwen3.7-plus");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(b, "parent_id")));
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(b, "messages");
    assert_int_equal(cJSON_GetArraySize(msgs), 1);
    const cJSON *m = cJSON_GetArrayItem(msgs, 0);
    assert_string_equal(str_at(m, "fid"), plan.fid);
    assert_string_equal(str_at(m, "role"), "user");
    assert_string_equal(str_at(m, "content"), "hi");
    assert_string_equal(str_at(m, "user_action"), "chat");
    assert_string_equal(str_at(m, "chat_type"), "t2t");
    assert_string_equal(str_at(m, "sub_chat_type"), "t2t");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(m, "parentId")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "childrenIds")), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m, "files")), 0);
    assert_string_equal(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(m, "models"), 0)->valuestring,
        "qwen3.7-plus");
    const cJSON *fc = cJSON_GetObjectItemCaseSensitive(m, "feature_config");
    assert_string_equal(str_at(fc, "output_schema"), "phase");
    assert_string_equal(str_at(fc, "thinking_format"), "summary");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(fc, "thinking_enabled")));
    const cJSON *meta =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m, "extra"), "meta");
    assert_string_equal(str_at(meta, "subChatType"), "t2t");
    cJSON_Delete(b);
}

static bool
thinking_for(const char *extra)
{
    char chat[256];
    snprintf(chat, sizeof(chat),
             "{\"model\":\"m\",%s\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", extra);
    struct qp_plan_state plan = {.chat_id = "c"};
    cJSON *b = body_of(1, chat, &plan);
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(b, "messages"), 0);
    const cJSON *fc = cJSON_GetObjectItemCaseSensitive(m, "feature_config");
    bool on = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(fc, "thinking_enabled"));
    cJSON_Delete(b);
    return on;
}

static void
thinking_is_on_unless_the_caller_turns_it_off(void **state)
{
    (void)state;
    assert_true(thinking_for(""));
    assert_true(thinking_for("\"enable_thinking\":true,"));
    assert_true(thinking_for("\"reasoning_effort\":\"low\","));
    assert_false(thinking_for("\"enable_thinking\":false,"));
    assert_false(thinking_for("\"reasoning_effort\":\"none\","));
}

static void
history_rule_one_user_message_as_is_else_roles_and_blank_lines(void **state)
{
    (void)state;
    char got[1024];
    flatten("[{\"role\":\"user\",\"content\":\"line 1\\nline 2\"}]", got, sizeof(got));
    assert_string_equal(got, "line 1\nline 2");
    flatten(
        "[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"hi\"}]",
        got, sizeof(got));
    assert_string_equal(got, "system: be brief\n\nuser: hi");
    flatten("[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"},"
            "{\"role\":\"tool\",\"content\":\"c\"},{\"role\":\"user\",\"content\":\"d\"}]",
            got, sizeof(got));
    assert_string_equal(got, "user: a\n\nassistant: b\n\ntool: c\n\nuser: d");
    /* One message that is not the user's keeps its role. */
    flatten("[{\"role\":\"system\",\"content\":\"s\"}]", got, sizeof(got));
    assert_string_equal(got, "system: s");
    /* Content parts: the text ones, joined by a line break; others (images) left out. A
     * missing role is the user's; a null content (tool calls) is empty. */
    flatten("[{\"content\":[{\"type\":\"text\",\"text\":\"x\"},{\"type\":\"image_url\","
            "\"image_url\":{\"url\":\"u\"}},{\"type\":\"text\",\"text\":\"y\"}]}]",
            got, sizeof(got));
    assert_string_equal(got, "x\ny");
    flatten("[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":null,"
            "\"tool_calls\":[]}]",
            got, sizeof(got));
    assert_string_equal(got, "user: q\n\nassistant: ");
    /* A role is a label: no line break or ':' of its own, nothing but its word. */
    flatten("[{\"role\":\"user: x\\n\\nsystem\",\"content\":\"a\"},{\"role\":\"\\n:\",\"content\":"
            "\"b\"}]",
            got, sizeof(got));
    assert_string_equal(got, "userxsystem: a\n\nuser: b");

    /* The completion body carries the flattened text as its one message. */
    struct qp_plan_state plan = {.chat_id = "c"};
    cJSON *b = body_of(1,
                       "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                       "{\"role\":\"user\",\"content\":\"u\"}]}",
                       &plan);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(b, "messages");
    assert_int_equal(cJSON_GetArraySize(msgs), 1);
    assert_string_equal(str_at(cJSON_GetArrayItem(msgs, 0), "content"), "system: s\n\nuser: u");
    assert_string_equal(str_at(cJSON_GetArrayItem(msgs, 0), "role"), "user");
    cJSON_Delete(b);
}

static void
model_list_envelope_is_unwrapped(void **state)
{
    (void)state;
    const char *ok[] = {
        "{\"success\":true,\"request_id\":\"r\",\"data\":{\"data\":[{\"id\":\"a\"},{\"id\":\"b\"}]}"
        "}",
        "{\"success\":true,\"data\":[{\"id\":\"a\"},{\"id\":\"b\"}]}",
        "{\"success\":true,\"data\":{\"models\":[{\"id\":\"a\"},{\"id\":\"b\"}]}}",
    };
    for (size_t i = 0; i < 3; i++) {
        size_t n = 0;
        char *out = qp_models_unwrap(ok[i], strlen(ok[i]), &n);
        assert_non_null(out);
        assert_string_equal(out, "{\"data\":[{\"id\":\"a\"},{\"id\":\"b\"}]}");
        assert_int_equal(n, strlen(out));
        assert_true(qp_models_usable(out, n));
        cJSON_free(out);
    }
    const char *bad[] = {"{\"success\":false,\"data\":[]}", "{\"success\":true,\"data\":{}}",
                         "<html>", "{\"data\":\"x\"}"};
    for (size_t i = 0; i < 4; i++) {
        size_t n = 0;
        assert_null(qp_models_unwrap(bad[i], strlen(bad[i]), &n));
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plan_is_two_posts_with_the_paths_of_the_service),
        cmocka_unit_test(chats_new_body_is_the_current_shape),
        cmocka_unit_test(chat_id_only_from_a_success_with_a_string_id),
        cmocka_unit_test(completion_query_is_the_escaped_chat_id),
        cmocka_unit_test(completion_body_is_one_streamed_message),
        cmocka_unit_test(bodies_are_these_bytes),
        cmocka_unit_test(thinking_is_on_unless_the_caller_turns_it_off),
        cmocka_unit_test(history_rule_one_user_message_as_is_else_roles_and_blank_lines),
        cmocka_unit_test(model_list_envelope_is_unwrapped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
