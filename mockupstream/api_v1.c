/*
 * The Qwen v1 web-chat API (chat.qwenlm.ai, 2025) as the mock serves it: its routes,
 * the scripted faults in its error shapes, the model list and chat completions.
 * A second dialect is a second file like this one, listed in mock_server.c.
 */
#include "mock_http.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mock_check.h"
#include "mock_fixtures.h"

/* max_tokens is a positive integer; one beyond any integer type is no limit at all. */
static bool
max_tokens_valid(const cJSON *max_tokens)
{
    long long v = 0;
    enum mock_int_check c = mock_json_int_in_range(max_tokens, 1, INT_MAX, &v);
    return c == MOCK_INT_OK || c == MOCK_INT_ABOVE;
}

/* Validates a completion body the way the upstream did; on error writes the
 * detail message into @p detail and returns false. */
static bool
validate_chat(const cJSON *root, char *detail, size_t len)
{
    if (!cJSON_IsObject(root)) {
        snprintf(detail, len, "Invalid JSON body");
        return false;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(root, "stream");
    const cJSON *incr = cJSON_GetObjectItemCaseSensitive(root, "incremental_output");
    const cJSON *max_tokens = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
    if (!model)
        snprintf(detail, len, "Field required: model");
    else if (!cJSON_IsString(model))
        snprintf(detail, len, "model: must be a string");
    else if (!mock_model_exists(model->valuestring))
        snprintf(detail, len, "Model not found");
    else if (!messages)
        snprintf(detail, len, "Field required: messages");
    else if (!cJSON_IsArray(messages))
        snprintf(detail, len, "messages: must be an array");
    else if (cJSON_GetArraySize(messages) == 0)
        snprintf(detail, len, "messages: must not be empty");
    else if (stream && !cJSON_IsBool(stream))
        snprintf(detail, len, "stream: must be a boolean");
    else if (incr && !cJSON_IsBool(incr))
        snprintf(detail, len, "incremental_output: must be a boolean");
    else if (max_tokens && !max_tokens_valid(max_tokens))
        snprintf(detail, len, "max_tokens: must be a positive integer");
    else {
        int i = 0;
        const cJSON *msg;
        cJSON_ArrayForEach(msg, messages)
        {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
            if (!cJSON_IsObject(msg))
                snprintf(detail, len, "messages[%d]: must be an object", i);
            else if (!cJSON_IsString(role))
                snprintf(detail, len, "messages[%d].role: must be a string", i);
            else if (!cJSON_IsString(content) && !cJSON_IsArray(content))
                snprintf(detail, len, "messages[%d].content: must be a string or an array", i);
            else {
                i++;
                continue;
            }
            return false;
        }
        return true;
    }
    return false;
}

/* The stream keys only the v2 stream has, when given with an effect (false, or the
 * default phase, changes nothing). @return the first such key, or NULL. */
static const char *
v2_only_key(const struct mock_stream_opts *o)
{
    if (o->dual || o->empty_answer || o->summary_grow || o->think_phase == MOCK_THINK_THINK) {
        return o->dual           ? "dual"
               : o->empty_answer ? "empty_answer"
               : o->summary_grow ? "summary_grow"
                                 : "think_phase";
    }
    if (o->error_after >= 0)
        return "error_after";
    if (o->thinking && mock_stream_given(o, "thinking"))
        return "thinking";
    return NULL;
}

static enum MHD_Result
answer_chat(struct mock_req *r)
{
    struct qk_mock *m = r->mock;
    char detail[128];
    const char *end = NULL;
    cJSON *root =
        cJSON_ParseWithLengthOpts(qk_buf_ptr(&r->body), qk_buf_len(&r->body), &end, false);
    if (!validate_chat(root, detail, sizeof detail)) {
        cJSON_Delete(root);
        return mock_send_detail(r, 400, detail);
    }
    const char *model = cJSON_GetObjectItemCaseSensitive(root, "model")->valuestring;
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    bool stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "stream"));
    bool incremental = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "incremental_output"));
    const cJSON *max_tokens = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");

    struct qk_buf last, all;
    qk_buf_init(&last, QK_LIMIT_BODY_DEFAULT * 4);
    qk_buf_init(&all, QK_LIMIT_BODY_DEFAULT * 4);
    const cJSON *msg;
    cJSON_ArrayForEach(msg, messages)
    {
        qk_buf_reset(&last);
        mock_content_text(cJSON_GetObjectItemCaseSensitive(msg, "content"), &last);
        if (qk_buf_append(&all, qk_buf_ptr(&last), qk_buf_len(&last)) != QK_OK)
            break; /* only feeds the usage estimate */
    }
    char storage[64];
    const char *pieces[MOCK_ANSWER_MAX_PIECES];
    size_t n = mock_answer_pieces(model, qk_buf_ptr(&last), storage, sizeof storage, pieces);
    const char *finish = "stop";
    long long limit = 0;
    if (max_tokens &&
        mock_json_int_in_range(max_tokens, 1, MOCK_ANSWER_MAX_PIECES, &limit) == MOCK_INT_OK &&
        (size_t)limit < n) {
        n = (size_t)limit;
        finish = "length";
    }
    char id[48];
    snprintf(id, sizeof id, "chatcmpl-mock-%06lu", r->seq);
    struct mock_answer ans = {
        .pieces = pieces,
        .n_pieces = n,
        .model = model,
        .id = id,
        .created = (long long)time(NULL),
        .input_tokens = (int)(qk_buf_len(&all) / 3 + 1),
        .finish = finish,
    };
    enum MHD_Result ret = MHD_NO;
    const struct mock_stream_opts *so =
        r->step && r->step->has_stream ? &r->step->stream : &m->stream_defaults;
    const char *v2_key = v2_only_key(so);
    if (stream && v2_key) {
        char d[160];
        snprintf(d, sizeof d,
                 "qwen-mock: stream.%s shapes a v2 stream, which the v1 completion stream "
                 "does not have; remove it from the step",
                 v2_key);
        ret = mock_send_detail(r, 400, d);
    } else if (stream) {
        bool cumulative = so->cumulative >= 0 ? so->cumulative == 1 : !incremental;
        enum qk_err rc = mock_plan_build(&ans, so, cumulative, &r->plan);
        if (rc == QK_OK)
            ret = mock_send_plan(r, "text/event-stream");
        else if (rc == QK_TOO_BIG) {
            /* The script's fault, not the caller's: say so rather than stream gigabytes. */
            char d[256];
            snprintf(d, sizeof d,
                     "qwen-mock: the scripted stream would carry over %zu MiB of text in its "
                     "events (%s deltas); script a smaller piece_bytes or fewer chunks%s",
                     MOCK_STREAM_MAX_BYTES >> 20, cumulative ? "cumulative" : "incremental",
                     cumulative ? ", or ask with incremental_output: true" : "");
            ret = mock_send_detail(r, 500, d);
        }
    } else {
        char *text = mock_answer_text(&ans);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "object", "chat.completion");
        cJSON_AddNumberToObject(o, "created", (double)ans.created);
        cJSON_AddStringToObject(o, "model", model);
        cJSON *choice = cJSON_CreateObject();
        cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
        cJSON_AddNumberToObject(choice, "index", 0);
        cJSON *message = cJSON_AddObjectToObject(choice, "message");
        cJSON_AddStringToObject(message, "role", "assistant");
        cJSON_AddStringToObject(message, "content", text ? text : "");
        cJSON_AddStringToObject(choice, "finish_reason", finish);
        cJSON *usage = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(usage, "input_tokens", ans.input_tokens);
        cJSON_AddNumberToObject(usage, "output_tokens", (double)n);
        cJSON_AddNumberToObject(usage, "total_tokens", (double)ans.input_tokens + (double)n);
        char *s = cJSON_PrintUnformatted(o);
        if (s)
            ret = mock_send_json(r, 200, s);
        cJSON_free(s);
        cJSON_Delete(o);
        free(text);
    }
    qk_buf_free(&last);
    qk_buf_free(&all);
    cJSON_Delete(root);
    return ret;
}

/* GET /api/models */
static enum MHD_Result
models_list(struct mock_req *r)
{
    enum MHD_Result ret;
    if (mock_apply_step(r, &ret))
        return ret;
    return mock_send_json(r, 200, mock_models_json());
}

/* POST /api/chat/completions */
static enum MHD_Result
chat_completions(struct mock_req *r)
{
    enum MHD_Result ret;
    if (mock_apply_step(r, &ret))
        return ret;
    return answer_chat(r);
}

static const struct mock_route_row v1_rows[] = {
    {"/api/models", "GET", MOCK_ROUTE_MODELS, models_list},
    {"/api/chat/completions", "POST", MOCK_ROUTE_CHAT, chat_completions},
};

const struct mock_route_table mock_api_v1 = {v1_rows, sizeof v1_rows / sizeof v1_rows[0],
                                             MOCK_DIALECT_V1};
