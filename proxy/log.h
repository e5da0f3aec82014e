/**
 * @file log.h
 * @brief The one log line per request, on stderr, as text or JSON.
 *
 * Tokens never appear: only their fingerprint (qk_token_fingerprint()).
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

#endif
