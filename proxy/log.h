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

#include <stdbool.h>
#include <stdint.h>

#include "qwenkit/proxy.h"

/** Where the log goes and what it keeps: a copy travels with each module that logs. */
struct qp_log {
    enum qk_proxy_log_format format;
    enum qk_proxy_log_level level; /**< lines less important than this are not written */
};

/** @return whether @p s names a level (error, warn, info), stored in @p out. */
bool qp_log_level_parse(const char *s, enum qk_proxy_log_level *out);
/** @return the level's name ("info" for an unknown value). */
const char *qp_log_level_name(enum qk_proxy_log_level level);

/** One failed upstream attempt of a request, as its request line names it. */
struct qp_log_failure {
    uint8_t cause;    /**< enum qp_metric_cause (metrics.h) */
    bool after_start; /**< a stream cut after its 200 went out */
    uint16_t status;  /**< the upstream's HTTP status (0 when none came) */
};

/** Most failures one request line names; more are counted as "+N". */
#define QP_LOG_FAILURES 8

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
    /** The failed upstream attempts, in order (the first QP_LOG_FAILURES of n_failures). */
    const struct qp_log_failure *failures;
    unsigned n_failures;
    /** A started stream's cut (after_start), named after them; NULL when none. */
    const struct qp_log_failure *cut;
};

/**
 * Writes @p e as one line on stderr in @p log's format: at level warn when the answer was
 * a 5xx or a stream was cut after its start, else info; nothing below @p log's level.
 * The failures are named `status_502`, `html_200`, `timeout`, `connect`, `inband`,
 * `invalid`, `refused_401` (the metrics' causes), `cut_` before those of a cut stream.
 */
void qp_log_request(struct qp_log log, const struct qp_log_entry *e);

/** How bad a diagnostic is (the JSON format's "level"). */
enum qp_log_level {
    QP_LOG_ERROR = QK_PROXY_LOG_LEVEL_ERROR, /**< the proxy could not do its job: out of
                                                  memory, bytes dropped */
    QP_LOG_WARN = QK_PROXY_LOG_LEVEL_WARN,   /**< a failure the proxy handles: an upstream
                                                  attempt that failed */
    QP_LOG_INFO = QK_PROXY_LOG_LEVEL_INFO,   /**< how the proxy runs: the effective
                                                  configuration at start */
};

/**
 * Writes one diagnostic line on stderr: `qwen-proxy: <module>: <message>` in the text
 * format, `{"level":...,"module":...,"msg":...}` in the JSON one, nothing for
 * QK_PROXY_LOG_OFF or below @p log's level. The message is cut at 1 KiB; bytes outside printable
 * ASCII become
 * '?', so a message quoting the upstream cannot break the line. Never pass a credential.
 * @param module a short tag of where it comes from: "upstream", "stream", "cache"...
 */
void qp_log_note(struct qp_log log, enum qp_log_level level, const char *module, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));

#endif
