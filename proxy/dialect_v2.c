/*
 * Qwen's chat API v2 (chat.qwen.ai since 2025-09): a chat attempt is two transfers, create a
 * chat (`POST /api/v2/chats/new`), then ask for the completion in it
 * (`POST /api/v2/chat/completions?chat_id=ID`), whose answer is always an event stream. The
 * caller's OpenAI history goes up as one message (prompt.h). The model list is
 * `GET /api/v2/models/`, wrapped in the service's `{success, data}` envelope (models.h).
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "decode_v2.h"
#include "dialect.h"
#include "models.h"
#include "mutant.h"
#include "prompt.h"

/* Writes @p root into @p out and frees it. */
static enum qk_err
emit(cJSON *root, struct qk_buf *out)
{
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return QK_NOMEM;
    enum qk_err rc = qk_buf_append_str(out, text);
    cJSON_free(text);
    return rc;
}

/* The caller's model (validated: a non-empty string) in the parsed body @p root. */
static const char *
model_of(const cJSON *root)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    return cJSON_IsString(m) ? m->valuestring : "";
}

/*
 * The bodies are built from borrowed strings: every name is a literal (added as a
 * constant key) and every value a reference (to a literal, the plan state, the caller's
 * parsed body or the prompt, all alive until the body is printed), so that building
 * copies nothing and deleting frees only the nodes. The bytes printed are the same.
 */

/* Adds @p item (NULL: out of memory) as member @p name. @return @p item, or NULL. */
static cJSON *
put(cJSON *obj, const char *name, cJSON *item)
{
    if (!item || !obj || !cJSON_AddItemToObjectCS(obj, name, item)) {
        cJSON_Delete(item);
        return NULL;
    }
    return item;
}

/* Adds the string @p value (borrowed until the body is printed). */
static bool
put_str(cJSON *obj, const char *name, const char *value)
{
    return put(obj, name, cJSON_CreateStringReference(value)) != NULL;
}

/* Adds `"<name>":["<model>"]` (@p model borrowed). */
static bool
add_models(cJSON *obj, const char *name, const char *model)
{
    cJSON *list = put(obj, name, cJSON_CreateArray());
    cJSON *m = cJSON_CreateStringReference(model);
    if (!list || !m) {
        cJSON_Delete(m);
        return false;
    }
    cJSON_AddItemToArray(list, m);
    return true;
}

/* Adds the non-negative integer @p v as its digits, the bytes cJSON would print for it
 * (below 1e15), without its sprintf and sscanf check. */
static bool
put_integer(cJSON *obj, const char *name, long long v)
{
    if (v < 0 || v >= 1000000000000000LL)
        return put(obj, name, cJSON_CreateNumber((double)v)) != NULL;
    char digits[24];
    size_t i = sizeof digits - 1;
    digits[i] = '\0';
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return put(obj, name, cJSON_CreateRaw(digits + i)) != NULL;
}

/* ---- step 1: create a chat --------------------------------------------------------- */

static enum qk_err
chats_new_body(const struct qk_buf *chat, const struct qp_plan_state *plan, struct qk_buf *out)
{
    cJSON *caller = cJSON_ParseWithLength(qk_buf_ptr(chat), qk_buf_len(chat));
    cJSON *root = cJSON_CreateObject();
    bool ok = root && put_str(root, "chatId", "") && add_models(root, "models", model_of(caller)) &&
              put_str(root, "project_id", "") && put_integer(root, "timestamp", plan->now_ms) &&
              put_str(root, "chat_type", "t2t") && put_str(root, "chat_mode", "normal");
    if (!ok) {
        cJSON_Delete(root);
        root = NULL;
    }
    enum qk_err rc = emit(root, out); /* before the caller's tree goes: the model is its */
    cJSON_Delete(caller);
    return rc;
}

/* Describes an in-band failure envelope `{"success":false,"data":{"code","details"}}` in
 * @p why; sets *@p status to its final status by the decoder's rule (0: worth a retry). */
static void
describe_failure(const cJSON *root, char *why, size_t cap, unsigned *status)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(data, "code");
    const cJSON *details = cJSON_GetObjectItemCaseSensitive(data, "details");
    const char *c = cJSON_IsString(code) ? code->valuestring : "no code";
    *status = qp_v2_failure_status(cJSON_IsString(code) ? code->valuestring : NULL,
                                   cJSON_IsString(details) ? details->valuestring : NULL);
    snprintf(why, cap, "in-band failure: %.40s: %.100s", c,
             cJSON_IsString(details) ? details->valuestring : "no details");
}

/* The chat id of a 2xx chats/new answer: `success:true` and a string `data.id`. */
static bool
take_chat_id(struct qp_plan_state *plan, const char *body, size_t len)
{
    char *why = plan->why;
    size_t cap = sizeof(plan->why);
    unsigned *status = &plan->final_status;
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(data, "id");
    bool ok = false;
    if (!cJSON_IsObject(root))
        snprintf(why, cap, "chat not created: the answer is not JSON");
    else if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "ret")))
        snprintf(why, cap, "in-band failure: the service's firewall refused the request");
    else if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "success")))
        describe_failure(root, why, cap, status);
    else if (!cJSON_IsString(id) || !id->valuestring[0] ||
             strlen(id->valuestring) >= sizeof(plan->chat_id))
        snprintf(why, cap, "chat not created: the answer has no usable data.id");
    else {
        snprintf(plan->chat_id, sizeof(plan->chat_id), "%s", id->valuestring);
        ok = true;
    }
    cJSON_Delete(root);
    return ok;
}

/* ---- step 2: the completion in that chat ------------------------------------------- */

static enum qk_err
completion_query(const struct qp_plan_state *plan, struct qk_buf *url)
{
    char *id = curl_easy_escape(NULL, plan->chat_id, 0);
    if (!id)
        return QK_NOMEM;
    enum qk_err rc = qk_buf_appendf(url, "?chat_id=%s", id);
    curl_free(id);
    return rc;
}

/* Thinking is on unless the caller turns it off (`enable_thinking: false`, or
 * `reasoning_effort: "none"`). */
static bool
thinking_of(const cJSON *caller)
{
    const cJSON *on = cJSON_GetObjectItemCaseSensitive(caller, "enable_thinking");
    const cJSON *effort = cJSON_GetObjectItemCaseSensitive(caller, "reasoning_effort");
    if (cJSON_IsFalse(on))
        return false;
    return !(cJSON_IsString(effort) && strcmp(effort->valuestring, "none") == 0);
}

/* The one message: the caller's history flattened (prompt.h) into @p prompt, which the
 * message borrows. */
static cJSON *
make_message(const cJSON *caller, const struct qp_plan_state *plan, const char *model,
             struct qk_buf *prompt)
{
    bool ok =
        qp_prompt_flatten(cJSON_GetObjectItemCaseSensitive(caller, "messages"), prompt) == QK_OK;
    cJSON *m = ok ? cJSON_CreateObject() : NULL;
    cJSON *fc = NULL, *extra = NULL, *meta = NULL;
    ok = m && put_str(m, "fid", plan->fid) && put(m, "parentId", cJSON_CreateNull()) &&
         put(m, "childrenIds", cJSON_CreateArray()) && put_str(m, "role", "user") &&
         put_str(m, "content", qk_buf_ptr(prompt)) && put_str(m, "user_action", "chat") &&
         put(m, "files", cJSON_CreateArray()) && add_models(m, "models", model) &&
         put_str(m, "chat_type", "t2t") && put_str(m, "sub_chat_type", "t2t") &&
         (fc = put(m, "feature_config", cJSON_CreateObject())) != NULL &&
         put_str(fc, "output_schema", "phase") &&
         put(fc, "thinking_enabled", cJSON_CreateBool(thinking_of(caller))) &&
         put_str(fc, "thinking_format", "summary") &&
         (extra = put(m, "extra", cJSON_CreateObject())) != NULL &&
         (meta = put(extra, "meta", cJSON_CreateObject())) != NULL &&
         put_str(meta, "subChatType", "t2t");
    if (!ok) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

/* `stream` is always true: the service refuses anything else (since about Nov 2025), so a
 * non-stream caller's answer is assembled from the stream (dialect.h, QP_ANSWER_SSE). */
static enum qk_err
completion_body(const struct qk_buf *chat, const struct qp_plan_state *plan, struct qk_buf *out)
{
    cJSON *caller = cJSON_ParseWithLength(qk_buf_ptr(chat), qk_buf_len(chat));
    if (!caller)
        return QK_INVALID; /* validated before; only memory can fail here */
    const char *model = model_of(caller);
    struct qk_buf prompt;
    qk_buf_init(&prompt, 64u * 1024u * 1024u);
    cJSON *root = cJSON_CreateObject();
    cJSON *messages = NULL;
    cJSON *m = NULL;
    bool ok = root && put(root, "stream", cJSON_CreateTrue()) &&
              put(root, "incremental_output", cJSON_CreateTrue()) &&
              put_str(root, "version", "2.1") && put_str(root, "chat_id", plan->chat_id) &&
              put_str(root, "chatId", plan->chat_id) && put_str(root, "chat_mode", "normal") &&
              put_str(root, "model", model) && put(root, "parent_id", cJSON_CreateNull()) &&
              (messages = put(root, "messages", cJSON_CreateArray())) != NULL &&
              (m = make_message(caller, plan, model, &prompt)) != NULL;
    if (m)
        cJSON_AddItemToArray(messages, m);
    if (!ok) {
        cJSON_Delete(root);
        root = NULL;
    }
    /* Printed before what it borrows goes: the caller's tree and the prompt. */
    enum qk_err rc = emit(root, out);
    cJSON_Delete(caller);
    qk_buf_free(&prompt);
    return rc;
}

static const struct qp_dialect_step v2_models_steps[] = {
    {.method = "GET", .path = "/api/v2/models/"},
};

/* Editable in a mutant build: v2_unchecked_chat_id replaces the chats/new reader. */
static QP_MUTANT_EDITABLE struct qp_dialect_step v2_chat_steps[] = {
    {.method = "POST",
     .path = "/api/v2/chats/new",
     .make_body = chats_new_body,
     .take_answer = take_chat_id},
    {.method = "POST",
     .path = "/api/v2/chat/completions",
     .add_query = completion_query,
     .make_body = completion_body},
};

const struct qp_dialect qp_dialect_v2 = {
    .name = "v2",
    .default_upstream = "https://chat.qwen.ai",
    .models_unwrap = qp_models_unwrap,
    .models = {v2_models_steps, sizeof(v2_models_steps) / sizeof(v2_models_steps[0])},
    .chat = {v2_chat_steps, sizeof(v2_chat_steps) / sizeof(v2_chat_steps[0])},
    .chat_answer = QP_ANSWER_SSE,
    .stream_decoder = &qp_decoder_v2,
};
