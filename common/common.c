#include "qwenkit/common.h"

#include <stdio.h>
#include <time.h>

const char *
qk_strerror(enum qk_err err)
{
    switch (err) {
#define QK_ERR_TEXT(name, code, text)                                                              \
    case QK_##name:                                                                                \
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
#define QK_ERR_NAME(name, code, text)                                                              \
    case QK_##name:                                                                                \
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
    /* "t:%08x" by hand: this runs once per request. */
    static const char hex[] = "0123456789abcdef";
    out[0] = 't';
    out[1] = ':';
    for (int i = 0; i < 8; i++)
        out[2 + i] = hex[(h >> (28 - 4 * i)) & 15];
    out[10] = '\0';
}
