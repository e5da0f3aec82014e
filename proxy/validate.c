#include "validate.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#include "mutant.h"

static bool
refuse(struct qp_invalid *why, const char *param, const char *code, const char *message)
{
    why->param = param;
    why->code = code;
    why->message = message;
    return false;
}

bool
qp_validate_chat(const char *body, size_t len, bool *stream, struct qp_invalid *why)
{
    *stream = false;
    const char *end = NULL;
    /* Per-call end pointer: cJSON_GetErrorPtr() is global state, unsafe across threads. */
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root)
        return refuse(why, NULL, "invalid_json", "Request body is not valid JSON.");
    bool ok = false;
    for (const char *p = end; p && p < body + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            refuse(why, NULL, "invalid_json", "Request body has data after the JSON value.");
            goto out;
        }
    }
    if (!cJSON_IsObject(root)) {
        refuse(why, NULL, "invalid_json", "Request body must be a JSON object.");
        goto out;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!model) {
        refuse(why, "model", "missing_required_parameter", "Missing required parameter: 'model'.");
        goto out;
    }
    if (!cJSON_IsString(model) || model->valuestring[0] == '\0') {
        refuse(why, "model", "invalid_type", "'model' must be a non-empty string.");
        goto out;
    }
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!messages) {
        if (QP_MUTANT(crash_on_missing_messages))
            abort();
        refuse(why, "messages", "missing_required_parameter",
               "Missing required parameter: 'messages'.");
        goto out;
    }
    if (!cJSON_IsArray(messages)) {
        refuse(why, "messages", "invalid_type", "'messages' must be an array.");
        goto out;
    }
    if (cJSON_GetArraySize(messages) == 0) {
        refuse(why, "messages", "empty_array", "'messages' must not be empty.");
        goto out;
    }
    const cJSON *m = NULL;
    cJSON_ArrayForEach(m, messages)
    {
        if (!cJSON_IsObject(m)) {
            refuse(why, "messages", "invalid_type", "Every entry of 'messages' must be an object.");
            goto out;
        }
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "stream");
    if (st && !cJSON_IsBool(st) && !cJSON_IsNull(st)) {
        refuse(why, "stream", "invalid_type", "'stream' must be a boolean.");
        goto out;
    }
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsObject(so) && !cJSON_IsNull(so)) {
        refuse(why, "stream_options", "invalid_type", "'stream_options' must be an object.");
        goto out;
    }
    const cJSON *iu = cJSON_GetObjectItemCaseSensitive(so, "include_usage");
    if (iu && !cJSON_IsBool(iu) && !cJSON_IsNull(iu)) {
        refuse(why, "stream_options.include_usage", "invalid_type",
               "'stream_options.include_usage' must be a boolean.");
        goto out;
    }
    *stream = cJSON_IsTrue(st);
    ok = true;
out:
    cJSON_Delete(root);
    return ok;
}
