#include "mock_check.h"

#include <cjson/cJSON.h>

enum mock_int_check
mock_json_int_in_range(const cJSON *item, long long lo, long long hi, long long *out)
{
    if (!cJSON_IsNumber(item))
        return MOCK_INT_NOT_NUMBER;
    double v = item->valuedouble;
    if (v != v) /* NaN: no JSON text gives one, but a hook could */
        return MOCK_INT_NOT_INTEGER;
    if (v < (double)lo)
        return MOCK_INT_BELOW;
    if (v > (double)hi)
        return MOCK_INT_ABOVE;
    long long n = (long long)v; /* defined: lo <= v <= hi, all within 2^53 */
    if ((double)n != v)
        return MOCK_INT_NOT_INTEGER;
    *out = n;
    return MOCK_INT_OK;
}

/* Bytes of the well-formed UTF-8 sequence at @p p (not a control character), or 0. */
static size_t
utf8_printable(const unsigned char *p)
{
    unsigned c = p[0];
    if (c < 0x80)
        return c >= 0x20 && c != 0x7f && c != '\\';
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        if (c == 0xC2 && p[1] < 0xA0)
            return 0; /* U+0080..U+009F: the C1 controls */
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlong forms */
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

void
mock_log_escape(struct qk_buf *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        size_t n = utf8_printable(p);
        enum qk_err rc = n ? qk_buf_append(out, (const char *)p, n)
                           : qk_buf_appendf(out, "\\x%02x", (unsigned)*p);
        if (rc != QK_OK)
            return;
        p += n ? n : 1;
    }
}

void
mock_content_text(const struct cJSON *content, struct qk_buf *out)
{
    if (cJSON_IsString(content)) {
        if (qk_buf_append_str(out, content->valuestring) != QK_OK)
            qk_buf_reset(out); /* over the cap: answer as for an empty message */
        return;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, content)
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "text");
        if (cJSON_IsString(t) && qk_buf_append_str(out, t->valuestring) != QK_OK)
            return;
    }
}
