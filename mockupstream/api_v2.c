/*
 * The Qwen v2 web-chat API (chat.qwen.ai, Sept 2025 on) as the mock serves it: the model
 * list in the v2 envelope, chat creation, and completions streamed into a chat. Business
 * errors are HTTP 200 `{"success":false,"request_id","data":{"code","details"}}`, as the
 * service sends them. The v1 API (api_v1.c) is served beside it.
 */
#include "mock_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mock_check.h"
#include "mock_fixtures.h"
#include "mock_stream_v2.h"

/* The service's hidden system prompt counts in every input_tokens. */
#define HIDDEN_PROMPT_TOKENS 1000

/* HTTP 200 business error. */
static enum MHD_Result
send_error(struct mock_req *r, const char *code, const char *details)
{
    char *s = mock_v2_error_json(code, details);
    enum MHD_Result ret = s ? mock_send_json(r, 200, s) : MHD_NO;
    free(s);
    return ret;
}

static enum MHD_Result
bad_request(struct mock_req *r, const char *details)
{
    return send_error(r, "Bad_Request", details);
}

static cJSON *
parse_body(struct mock_req *r)
{
    const char *end = NULL;
    cJSON *root =
        cJSON_ParseWithLengthOpts(qk_buf_ptr(&r->body), qk_buf_len(&r->body), &end, false);
    if (root && !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* GET /api/v2/models/ (and without the slash) */
static enum MHD_Result
models_list(struct mock_req *r)
{
    enum MHD_Result ret;
    if (mock_apply_step(r, &ret))
        return ret;
    char *s = mock_models_v2_json();
    ret = s ? mock_send_json(r, 200, s) : MHD_NO;
    free(s);
    return ret;
}

/* What is wrong with a chats/new body, or NULL. Both shapes the service took (the
 * browser's, and the older one with `title`), a timestamp in ms or s or none. */
static const char *
chats_new_problem(const cJSON *root)
{
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(root, "models");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "timestamp");
    /* Optional keys of either shape that must be strings when given. */
    static const char *const strings[][2] = {
        {"title", "title: must be a string"},
        {"chat_type", "chat_type: must be a string"},
        {"chat_mode", "chat_mode: must be a string"},
        {"chatId", "chatId: must be a string"},
        {"project_id", "project_id: must be a string"},
    };
    if (!root)
        return "Invalid JSON body";
    if (!models)
        return "models: Field required";
    if (!cJSON_IsArray(models) || cJSON_GetArraySize(models) == 0)
        return "models: must be a non-empty array of model ids";
    const cJSON *m;
    cJSON_ArrayForEach(m, models)
    {
        if (!cJSON_IsString(m))
            return "models: must be a non-empty array of model ids";
        if (!mock_model_exists(m->valuestring))
            return "Model not found";
    }
    if (ts && !cJSON_IsNull(ts) && !cJSON_IsNumber(ts))
        return "timestamp: must be an integer";
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, strings[i][0]);
        if (v && !cJSON_IsString(v) && !cJSON_IsNull(v))
            return strings[i][1];
    }
    return NULL;
}

/* POST /api/v2/chats/new */
static enum MHD_Result
chats_new(struct mock_req *r)
{
    enum MHD_Result ret;
    if (mock_apply_step(r, &ret))
        return ret;
    cJSON *root = parse_body(r);
    const char *problem = chats_new_problem(root);
    if (problem) {
        cJSON_Delete(root);
        return bad_request(r, problem);
    }
    const char *model =
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "models"), 0)->valuestring;
    char id[MOCK_UUID_LEN], rid[MOCK_UUID_LEN], body[160];
    enum qk_err rc = mock_chats_create(r->mock->chats, r->key, model, id);
    cJSON_Delete(root);
    if (rc != QK_OK)
        return MHD_NO;
    mock_uuid(rid);
    snprintf(body, sizeof body, "{\"success\":true,\"request_id\":\"%s\",\"data\":{\"id\":\"%s\"}}",
             rid, id);
    return mock_send_json(r, 200, body);
}

/* What is wrong with the messages of a completion body, into @p detail; false if nothing. */
static bool
messages_problem(const cJSON *messages, char *detail, size_t len)
{
    if (!messages)
        snprintf(detail, len, "messages: Field required");
    else if (!cJSON_IsArray(messages))
        snprintf(detail, len, "messages: must be an array");
    else if (cJSON_GetArraySize(messages) == 0)
        snprintf(detail, len, "messages: must not be empty");
    else {
        int i = 0;
        const cJSON *msg;
        cJSON_ArrayForEach(msg, messages)
        {
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
            if (!cJSON_IsObject(msg))
                snprintf(detail, len, "messages[%d]: must be an object", i);
            else if (!cJSON_IsString(content) && !cJSON_IsArray(content))
                snprintf(detail, len, "messages[%d].content: must be a string or an array", i);
            else {
                i++;
                continue;
            }
            return true;
        }
        return false;
    }
    return true;
}

/* The stream keys that ask for a v1 chunk shape the v2 stream has not: refused when
 * given as true (false is what v2 does anyway). */
static const char *const v1_only_keys[] = {"final_repeat",     "final_empty_delta", "empty_choices",
                                           "no_content_delta", "finish_reason",     "envelope"};

static const char *
v1_only_key(const struct mock_stream_opts *o)
{
    const bool values[] = {o->final_repeat,     o->final_empty_delta, o->empty_choices,
                           o->no_content_delta, o->finish_reason,     o->envelope};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        if (values[i] && mock_stream_given(o, v1_only_keys[i]))
            return v1_only_keys[i];
    return NULL;
}

/* The answer of a completion, its ids and its reasoning: what the stream carries. */
struct v2_answer_parts {
    char storage[2][64];
    const char *pieces[2][MOCK_ANSWER_MAX_PIECES];
    const char *reasoning[2][MOCK_REASONING_MAX];
    char think[2][MOCK_REASONING_MAX][64]; /* the think phase's pieces */
    const char *think_ptr[2][MOCK_REASONING_MAX];
    const char *titles[2][MOCK_REASONING_MAX];
    char rid[2][MOCK_UUID_LEN];
    char parent[MOCK_UUID_LEN];
};

/* Fills @p a (pointing into @p p) for @p text asked of @p model. */
static void
make_answer(struct v2_answer_parts *p, struct mock_v2_answer *a, const char *model,
            const char *text, bool empty, size_t n_resp)
{
    mock_uuid(p->parent);
    a->parent_id = p->parent;
    a->n_resp = n_resp;
    for (size_t i = 0; i < n_resp; i++) {
        struct mock_v2_response *r = &a->resp[i];
        mock_uuid(p->rid[i]);
        r->response_id = p->rid[i];
        r->n_pieces = empty ? 0
                            : mock_answer_pieces_salted(model, text, (unsigned)i, p->storage[i],
                                                        sizeof p->storage[i], p->pieces[i]);
        r->pieces = p->pieces[i];
        r->n_reasoning = mock_reasoning(model, text, (unsigned)i, p->reasoning[i]);
        r->n_titles = mock_reasoning_titles(r->n_reasoning, p->titles[i]);
        r->titles = p->titles[i];
        r->reasoning = p->reasoning[i];
        if (a->think_phase) {
            /* Incremental text: each element after the first starts a new line. */
            for (size_t k = 0; k < r->n_reasoning; k++) {
                snprintf(p->think[i][k], sizeof p->think[i][k], "%s%s", k ? "\n" : "",
                         p->reasoning[i][k]);
                p->think_ptr[i][k] = p->think[i][k];
            }
            r->reasoning = p->think_ptr[i];
        }
    }
}

/* The journal's record of what the completion produced for response 0: the reasoning as
 * its raw elements (@p p), without the think phase's line breaks between pieces. */
static cJSON *
answer_record(const struct mock_v2_answer *a, const struct v2_answer_parts *p, const char *text)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "text", text ? text : "");
    cJSON *list = cJSON_AddArrayToObject(o, "reasoning");
    for (size_t i = 0; a->thinking && list && i < a->resp[0].n_reasoning; i++)
        cJSON_AddItemToArray(list, cJSON_CreateString(p->reasoning[0][i]));
    cJSON_AddStringToObject(o, "response_id", a->resp[0].response_id);
    cJSON_AddStringToObject(o, "chat_id", a->chat_id);
    return o;
}

/* Streams the answer into the chat, unless another answer streams there. */
static enum MHD_Result
stream_answer(struct mock_req *r, const cJSON *root, const char *chat_id, const char *model)
{
    struct qk_mock *m = r->mock;
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    int count = cJSON_GetArraySize(messages);
    enum qk_mock_v2_messages pick = count > 1 ? m->cfg.v2_messages : QK_MOCK_V2_FIRST;
    const cJSON *answered = cJSON_GetArrayItem(messages, pick == QK_MOCK_V2_LAST ? count - 1 : 0);
    const cJSON *fc =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(messages, 0), "feature_config");
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(fc, "output_schema");
    struct mock_stream_opts eff =
        r->step && r->step->has_stream ? r->step->stream : m->stream_defaults;
    const struct mock_stream_opts *o = &eff;
    /* The v2 service sends no [DONE] (--no-done is v1's switch): only the step's key does. */
    eff.done = mock_stream_given(o, "done") && eff.done;
    if (pick == QK_MOCK_V2_EMPTY) /* --v2-messages empty: as an empty answer */
        eff.empty_answer = true;
    const char *v1_key = v1_only_key(o);
    if (v1_key) {
        char d[200];
        snprintf(d, sizeof d,
                 "qwen-mock: stream.%s asks for a v1 chunk shape the v2 completion stream does "
                 "not have; remove it from the step",
                 v1_key);
        return mock_send_detail(r, 400, d);
    }

    struct qk_buf text;
    qk_buf_init(&text, QK_LIMIT_BODY_DEFAULT * 4);
    mock_content_text(cJSON_GetObjectItemCaseSensitive(answered, "content"), &text);
    struct mock_v2_answer a = {
        .chat_id = chat_id,
        .thinking = mock_stream_given(o, "thinking")
                        ? o->thinking
                        : cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(fc, "thinking_enabled")),
        .think_phase = o->think_phase == MOCK_THINK_THINK,
        .phase_keys = cJSON_IsString(schema) && strcmp(schema->valuestring, "phase") == 0,
        .input_tokens = HIDDEN_PROMPT_TOKENS + (int)(qk_buf_len(&text) / 3) + 1,
        .timestamp = (long long)time(NULL),
    };
    struct v2_answer_parts *parts = calloc(1, sizeof *parts);
    if (!parts) {
        qk_buf_free(&text);
        return MHD_NO;
    }
    make_answer(parts, &a, model, qk_buf_ptr(&text), pick == QK_MOCK_V2_EMPTY, o->dual ? 2 : 1);
    qk_buf_free(&text);

    char *text0 = NULL;
    enum MHD_Result ret = MHD_NO;
    enum qk_err rc = mock_plan_build_v2(&a, o, &r->plan, &text0);
    if (rc == QK_TOO_BIG) {
        char d[200];
        snprintf(d, sizeof d,
                 "qwen-mock: the scripted stream would carry over %zu MiB of text in its events; "
                 "script a smaller piece_bytes or fewer chunks",
                 MOCK_STREAM_MAX_BYTES >> 20);
        ret = mock_send_detail(r, 500, d);
    } else if (rc == QK_OK) {
        const char *ids[2] = {a.resp[0].response_id, a.resp[1].response_id};
        switch (mock_chats_begin(m->chats, chat_id, r->key, ids, a.n_resp)) {
        case MOCK_CHAT_STARTED:
            snprintf(r->chat_id, sizeof r->chat_id, "%s", chat_id);
            r->chat_begun = true;
            r->answer = answer_record(&a, parts, text0);
            ret = mock_send_plan(r, "text/event-stream; charset=utf-8");
            break;
        case MOCK_CHAT_BUSY:
            mock_plan_free(&r->plan);
            ret = bad_request(r, "The chat is in progress!");
            break;
        case MOCK_CHAT_NOT_FOUND:
            mock_plan_free(&r->plan);
            ret = send_error(r, "Not_Found", "Chat not found");
            break;
        }
    }
    free(text0);
    free(parts);
    return ret;
}

/* POST /api/v2/chat/completions?chat_id=ID */
static enum MHD_Result
chat_completions(struct mock_req *r)
{
    enum MHD_Result ret;
    if (mock_apply_step(r, &ret))
        return ret;
    const char *chat_id = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "chat_id");
    if (!chat_id)
        return send_error(r, "RequestValidationError",
                          "[\"Field 'query -> chat_id': Field required\"]");
    cJSON *root = parse_body(r);
    struct mock_chat_info chat;
    char detail[96];
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!root)
        ret = bad_request(r, "Invalid JSON body");
    else if (!mock_chats_find(r->mock->chats, chat_id, r->key, &chat))
        ret = send_error(r, "Not_Found", "Chat not found");
    else if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "stream")))
        ret = bad_request(r, "Internal error...");
    else if (model && !cJSON_IsString(model))
        ret = bad_request(r, "model: must be a string");
    else if (model && !mock_model_exists(model->valuestring))
        ret = bad_request(r, "Model not found");
    else if (messages_problem(cJSON_GetObjectItemCaseSensitive(root, "messages"), detail,
                              sizeof detail))
        ret = bad_request(r, detail);
    else /* no model: the chat's */
        ret = stream_answer(r, root, chat_id, model ? model->valuestring : chat.model);
    cJSON_Delete(root);
    return ret;
}

static const struct mock_route_row v2_rows[] = {
    {"/api/v2/models/", "GET", MOCK_ROUTE_MODELS, models_list},
    {"/api/v2/models", "GET", MOCK_ROUTE_MODELS, models_list},
    {"/api/v2/chats/new", "POST", MOCK_ROUTE_CHATS_NEW, chats_new},
    {"/api/v2/chat/completions", "POST", MOCK_ROUTE_CHAT, chat_completions},
};

const struct mock_route_table mock_api_v2 = {v2_rows, sizeof v2_rows / sizeof v2_rows[0],
                                             MOCK_DIALECT_V2};
