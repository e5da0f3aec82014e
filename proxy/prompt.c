#include "prompt.h"

#include <ctype.h>

#include <stdbool.h>
#include <string.h>

/* Appends the text of one message's `content` (string, or array of parts). */
static enum qk_err
append_text(const cJSON *content, struct qk_buf *out)
{
    if (cJSON_IsString(content))
        return qk_buf_append_str(out, content->valuestring);
    if (!cJSON_IsArray(content))
        return QK_OK; /* null or absent (an assistant turn of tool calls): no text */
    bool first = true;
    const cJSON *part = NULL;
    cJSON_ArrayForEach(part, content)
    {
        const char *text = NULL;
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (cJSON_IsString(part))
            text = part->valuestring;
        else if (cJSON_IsString(t) &&
                 (!type || (cJSON_IsString(type) && strcmp(type->valuestring, "text") == 0)))
            text = t->valuestring;
        if (!text)
            continue;
        enum qk_err rc = first ? QK_OK : qk_buf_append(out, "\n", 1);
        if (rc == QK_OK)
            rc = qk_buf_append_str(out, text);
        if (rc != QK_OK)
            return rc;
        first = false;
    }
    return QK_OK;
}

/* The role as a label: its letters, digits, '_' and '-' (at most 32), "user" when none,
 * so that a role cannot bring line breaks or a ':' of its own into the transcript. */
static const char *
role_of(const cJSON *m, char label[static 33])
{
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    size_t n = 0;
    for (const char *c = cJSON_IsString(role) ? role->valuestring : ""; *c && n < 32; c++) {
        if (isalnum((unsigned char)*c) || *c == '_' || *c == '-')
            label[n++] = *c;
    }
    label[n] = '\0';
    return n ? label : "user";
}

enum qk_err
qp_prompt_flatten(const cJSON *messages, struct qk_buf *out)
{
    if (!cJSON_IsArray(messages))
        return QK_INVALID;
    int n = cJSON_GetArraySize(messages);
    char label[33];
    if (n == 1 && strcmp(role_of(messages->child, label), "user") == 0)
        return append_text(cJSON_GetObjectItemCaseSensitive(messages->child, "content"), out);
    int i = 0;
    const cJSON *m = NULL;
    cJSON_ArrayForEach(m, messages)
    {
        enum qk_err rc = i++ ? qk_buf_append(out, "\n\n", 2) : QK_OK;
        if (rc == QK_OK)
            rc = qk_buf_appendf(out, "%s: ", role_of(m, label));
        if (rc == QK_OK)
            rc = append_text(cJSON_GetObjectItemCaseSensitive(m, "content"), out);
        if (rc != QK_OK)
            return rc;
    }
    return QK_OK;
}
