/**
 * @file log.h
 * @brief What the proxy writes on stderr: one line per request, and diagnostics, as text
 * or JSON (nothing with QK_PROXY_LOG_OFF).
 *
 * Tokens never appear: the request line carries only their fingerprint
 * (qk_token_fingerprint()), and no diagnostic is given a credential.
 */
#ifndef QP_LOG_H
#define QP_LOG_H

#include <stdint.h>

#include "qwenkit/proxy.h"

/** The facts of one finished request (all strings borrowed). */
struct qp_log_entry {
    const char *request_id;
    const char *method;
    const char *path;
    unsigned status; /**< 0 when the client left before an answer */
    unsigned attempts;
    const char *cache; /**< "HIT", "MISS", "STALE" or "-" */
    int64_t latency_ms;
    const char *token; /**< fingerprint */
};

/** Writes @p e as one line on stderr in @p format (nothing for QK_PROXY_LOG_OFF). */
void qp_log_request(enum qk_proxy_log_format format, const struct qp_log_entry *e);

/** How bad a diagnostic is (the JSON format's "level"). */
enum qp_log_level {
    QP_LOG_WARN = 0,  /**< a failure the proxy handles: an upstream attempt that failed */
    QP_LOG_ERROR = 1, /**< the proxy could not do its job: out of memory, bytes dropped */
    QP_LOG_INFO = 2,  /**< how the proxy runs: the effective configuration at start */
};

/**
 * Writes one diagnostic line on stderr: `qwen-proxy: <module>: <message>` in the text
 * format, `{"level":...,"module":...,"msg":...}` in the JSON one, nothing for
 * QK_PROXY_LOG_OFF. The message is cut at 1 KiB; bytes outside printable ASCII become
 * '?', so a message quoting the upstream cannot break the line. Never pass a credential.
 * @param module a short tag of where it comes from: "upstream", "stream", "cache"...
 */
void qp_log_note(enum qk_proxy_log_format format, enum qp_log_level level, const char *module,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
