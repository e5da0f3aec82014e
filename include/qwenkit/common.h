/**
 * @file common.h
 * @brief Error codes, limits and small helpers shared by every program of the kit.
 *
 * Prefix rule: everything declared under include/qwenkit/ is public and starts with
 * `qk_` (functions, types) or `QK_` (macros, enum constants).
 */
#ifndef QWENKIT_COMMON_H
#define QWENKIT_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define QK_WUR __attribute__((warn_unused_result))
#else
#define QK_WUR
#endif

/** One table of errors: expands into the enum, qk_err_name() and qk_strerror(). */
#define QK_ERR_MAP(XX)                                                                             \
    XX(OK, 0, "success")                                                                           \
    XX(NOMEM, -1, "out of memory")                                                                 \
    XX(TOO_BIG, -2, "value exceeds its limit")                                                     \
    XX(INVALID, -3, "invalid input")                                                               \
    XX(IO, -4, "input/output error")                                                               \
    XX(NOT_FOUND, -5, "not found")                                                                 \
    XX(START, -6, "could not start server")

enum qk_err {
#define QK_ERR_ENUM(name, code, text) QK_##name = (code),
    QK_ERR_MAP(QK_ERR_ENUM)
#undef QK_ERR_ENUM
};

/** @return a static English description of @p err. */
const char *qk_strerror(enum qk_err err);
/** @return the static symbolic name of @p err ("TOO_BIG"). */
const char *qk_err_name(enum qk_err err);

/** Every size limit of the kit, in one place. */
enum qk_limits {
    QK_LIMIT_BODY_DEFAULT = 1024 * 1024,      /**< request body, both servers */
    QK_LIMIT_SCENARIO_FILE = 4 * 1024 * 1024, /**< --scenario FILE */
    QK_LIMIT_HEADER_VALUE = 8 * 1024,         /**< one header value we copy */
    QK_LIMIT_FINGERPRINT = 16,                /**< qk_token_fingerprint() output incl. NUL */
    QK_LIMIT_REQUEST_TARGET = 8 * 1024,       /**< the proxy's request target (414 above) */
    QK_LIMIT_REQUEST_HEADERS = 16 * 1024,     /**< the proxy's request header lines (431 above) */
    /** libmicrohttpd's memory per connection: well above the two limits before, so that
     *  the proxy answers (as JSON) requests up to about this size, and only larger ones
     *  meet libmicrohttpd's own HTML error page (proxy/README.md). Each open connection
     *  holds about half of it resident, so it is no larger than the largest accepted
     *  head needs (a full target and header block in a few hundred lines). */
    QK_LIMIT_CONNECTION_MEMORY = 48 * 1024,
};

/** @return CLOCK_MONOTONIC in milliseconds (shared by all processes on the host). */
int64_t qk_now_ms(void);

/**
 * Writes a short, non-reversible fingerprint of a secret token into @p out
 * ("t:1a2b3c4d", or "-" for NULL/empty), so logs can correlate requests without
 * ever holding the token. @p out must hold QK_LIMIT_FINGERPRINT bytes.
 */
void qk_token_fingerprint(const char *token, size_t len, char out[QK_LIMIT_FINGERPRINT]);

#endif
