#include "apierror.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *
qp_error_json(const char *message, const char *type, const char *param, const char *code)
{
    char *out = NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    if (!err)
        goto done;
    if (!cJSON_AddStringToObject(err, "message", message) ||
        !cJSON_AddStringToObject(err, "type", type))
        goto done;
    if (!(param ? cJSON_AddStringToObject(err, "param", param)
                : cJSON_AddNullToObject(err, "param")))
        goto done;
    if (!(code ? cJSON_AddStringToObject(err, "code", code) : cJSON_AddNullToObject(err, "code")))
        goto done;
    out = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(root);
    return out;
}

const char *
qp_error_type(unsigned status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 429:
        return "rate_limit_error";
    default:
        break;
    }
    if (status >= 400 && status < 500)
        return "invalid_request_error";
    return "api_error";
}

static char *
dup_cut(const char *s, size_t len, size_t max)
{
    if (len > max)
        len = max;
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    out[len] = '\0';
    return out;
}

static char *
string_or_print(const cJSON *v)
{
    if (cJSON_IsString(v))
        return strdup(v->valuestring);
    return cJSON_PrintUnformatted(v);
}

char *
qp_upstream_message(const char *body, size_t len, long status)
{
    char *msg = NULL;
    cJSON *root = body && len ? cJSON_ParseWithLength(body, len) : NULL;
    if (cJSON_IsObject(root)) {
        const cJSON *detail = cJSON_GetObjectItemCaseSensitive(root, "detail");
        const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
        const cJSON *message = cJSON_GetObjectItemCaseSensitive(root, "message");
        /* Qwen v2's envelope: {"success":false,"data":{"code","details"}}. */
        const cJSON *details = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(root, "data"), "details");
        if (detail) {
            msg = string_or_print(detail);
        } else if (cJSON_IsObject(error)) {
            const cJSON *em = cJSON_GetObjectItemCaseSensitive(error, "message");
            msg = em ? string_or_print(em) : cJSON_PrintUnformatted(error);
        } else if (cJSON_IsString(error)) {
            msg = strdup(error->valuestring);
        } else if (cJSON_IsString(message)) {
            msg = strdup(message->valuestring);
        } else if (cJSON_IsString(details)) {
            msg = strdup(details->valuestring);
        }
    }
    cJSON_Delete(root);
    if (msg)
        return msg;
    if (body && len)
        return dup_cut(body, len, 512);
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "Upstream answered HTTP %ld.", status);
    return strdup(tmp);
}
