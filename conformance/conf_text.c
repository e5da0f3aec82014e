#include "conf_text.h"

#include "conf_sse.h"

#include <cjson/cJSON.h>
#include <ctype.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* @return the length of the character at @p s that a report may hold as it is: well-formed
 * UTF-8, and not U+FFFE or U+FFFF (not allowed in XML); 0 otherwise. */
static size_t
utf8_sequence(const unsigned char *s, size_t len)
{
    size_t n = conf_utf8_sequence((const char *)s, len);
    if (n == 3 && s[0] == 0xEF && s[1] == 0xBF && (s[2] == 0xBE || s[2] == 0xBF))
        return 0;
    return n;
}

size_t
conf_text_clean(char *dst, size_t dstlen, const char *src, size_t len)
{
    if (dstlen == 0)
        return 0;
    const unsigned char *s = (const unsigned char *)src;
    size_t out = 0, i = 0;
    while (i < len) {
        size_t n = utf8_sequence(s + i, len - i);
        bool control = n == 1 && (s[i] < 0x20 || s[i] == 0x7F) && s[i] != '\t' && s[i] != '\n';
        if (n == 0 || control) {
            if (out + 4 >= dstlen)
                break;
            snprintf(dst + out, 5, "\\x%02X", s[i]);
            out += 4;
            i++;
            continue;
        }
        if (out + n >= dstlen)
            break;
        for (size_t k = 0; k < n; k++)
            dst[out++] = (char)s[i + k];
        i += n;
    }
    dst[out] = '\0';
    return out;
}

char *
conf_text_credential(char *dst, size_t dstlen, const char *value, const char *token)
{
    if (dstlen == 0)
        return dst;
    if (!value) {
        snprintf(dst, dstlen, "(no Authorization)");
        return dst;
    }
    size_t tlen = token ? strlen(token) : 0;
    if (tlen == 0 || !strstr(value, token)) {
        size_t word = strcspn(value, " ");
        if (word > 16)
            word = 0; /* not a scheme word: show nothing of it */
        snprintf(dst, dstlen, "%.*s%s<another credential, %zu bytes>", (int)word, value,
                 word ? " " : "", strlen(value) - (word ? word + 1 : 0));
        return dst;
    }
    /* The caller's token is the suite's own random string: the rest may be shown. */
    char raw[512];
    size_t out = 0;
    for (const char *p = value; *p && out + 8 < sizeof(raw);) {
        if (strncmp(p, token, tlen) == 0) {
            memcpy(raw + out, "<token>", 7);
            out += 7;
            p += tlen;
        } else {
            raw[out++] = *p++;
        }
    }
    raw[out] = '\0';
    conf_text_clean(dst, dstlen, raw, out);
    return dst;
}

bool
conf_text_same_elements(const char *got, const cJSON *want)
{
    const char *p = got;
    const cJSON *el;
    cJSON_ArrayForEach(el, want)
    {
        const char *s = cJSON_GetStringValue(el);
        if (!s)
            return false;
        while (isspace((unsigned char)*s))
            s++;
        size_t n = strlen(s);
        while (n > 0 && isspace((unsigned char)s[n - 1]))
            n--;
        while (*p && isspace((unsigned char)*p))
            p++;
        if (strncmp(p, s, n) != 0)
            return false;
        p += n;
    }
    while (*p && isspace((unsigned char)*p))
        p++;
    return *p == '\0';
}

void
conf_text_put_markup(FILE *f, const char *s, bool whitespace_entities)
{
    if (!s)
        return;
    size_t len = strlen(s);
    char *clean = malloc(4 * len + 1);
    if (!clean)
        return;
    conf_text_clean(clean, 4 * len + 1, s, len);
    for (const char *c = clean; *c; c++) {
        switch (*c) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        case '\n':
            fputs(whitespace_entities ? "&#10;" : "\n", f);
            break;
        case '\t':
            fputs(whitespace_entities ? "&#9;" : "\t", f);
            break;
        default:
            fputc(*c, f);
        }
    }
    free(clean);
}
