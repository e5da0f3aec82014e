#include "qwenkit/common.h"

#include <stdio.h>
#include <strings.h>
#include <time.h>

const char *
qk_strerror(enum qk_err err)
{
    switch (err) {
#define QK_ERR_TEXT(name, code, text)                                                  \
    case QK_##name:                                                                    \
        return text;
        QK_ERR_MAP(QK_ERR_TEXT)
#undef QK_ERR_TEXT
    }
    return "unknown error";
}

const char *
qk_err_name(enum qk_err err)
{
    switch (err) {
#define QK_ERR_NAME(name, code, text)                                                  \
    case QK_##name:                                                                    \
        return #name;
        QK_ERR_MAP(QK_ERR_NAME)
#undef QK_ERR_NAME
    }
    return "UNKNOWN";
}

int64_t
qk_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
qk_token_fingerprint(const char *token, size_t len, char out[QK_LIMIT_FINGERPRINT])
{
    if (!token || len == 0) {
        snprintf(out, QK_LIMIT_FINGERPRINT, "-");
        return;
    }
    /* FNV-1a: stable across runs so two log lines about one token match. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)token[i];
        h *= 16777619u;
    }
    snprintf(out, QK_LIMIT_FINGERPRINT, "t:%08x", (unsigned)h);
}

const char *
qk_bearer_token(const char *header, size_t *len)
{
    if (!header)
        return NULL;
    while (*header == ' ' || *header == '\t')
        header++;
    if (strncasecmp(header, "bearer", 6) != 0 || (header[6] != ' ' && header[6] != '\t'))
        return NULL;
    const char *tok = header + 6;
    while (*tok == ' ' || *tok == '\t')
        tok++;
    size_t n = 0;
    while (tok[n] && tok[n] != ' ' && tok[n] != '\t' && tok[n] != '\r' && tok[n] != '\n')
        n++;
    /* A second word after the token means the value is malformed. */
    const char *rest = tok + n;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    if (n == 0 || *rest != '\0')
        return NULL;
    *len = n;
    return tok;
}
