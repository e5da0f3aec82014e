/**
 * @file forward.h
 * @brief The upstream exchange of one request, run on the loop thread.
 *
 * For each posted request the forwarder consults the model-list cache and the
 * single-flight registry, runs attempts through libcurl, applies the retry policy with
 * timers, turns the outcome into the caller's response, and hands the request back with
 * the `complete` callback (which resumes the libmicrohttpd connection).
 */
#ifndef QP_FORWARD_H
#define QP_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "decoder.h"
#include "dialect.h"
#include "log.h"
#include "loop.h"
#include "mutant.h"
#include "qwenkit/common.h"
#include "qwenkit/proxy.h"
#include "request.h"
#include "retry.h"

struct qp_forwarder;

/**
 * The status of the answer to a request whose retryable failures ran out of attempts or
 * time, by the last failure's cause (ERR-5, RETRY-8). Data, so that a mutant build can
 * edit it once at start-up (mutant.h) while the answering code has no mutant branch.
 */
struct qp_give_up_statuses {
    unsigned deadline;    /**< the request's deadline ended it: 504 */
    unsigned timeout;     /**< the last attempt timed out: 504 */
    unsigned unreachable; /**< the upstream could not be reached: 502 */
    unsigned other;       /**< any other failure (a status, a dropped connection): 502 */
};

/** The statuses (const but in mutant builds, whose qp_mutant_apply() may edit them). */
extern QP_MUTANT_EDITABLE struct qp_give_up_statuses qp_give_up_statuses;

/** Whether libcurl may send an attempt's request twice by itself (RETRY-3). */
struct qp_resend_policy {
    bool one_send_per_attempt; /**< a re-send on a dead pooled connection is refused (libcurl's
                                    pre-request callback) */
};

/** The policy (const but in mutant builds, whose qp_mutant_apply() may edit it). */
extern QP_MUTANT_EDITABLE struct qp_resend_policy qp_resend_policy;

/** What an exchange does where the caller and the upstream stream meet. */
struct qp_exchange_policy {
    bool close_upstream_when_caller_leaves; /**< SSE-9: a caller gone mid-stream */
    bool non_sse_200_fails;                 /**< SSE-16: a stream asked, no event stream came */
    bool watch_caller_before_start;         /**< SSE-18: a caller gone before the first byte
                                                 ends the exchange, retries included */
};

/** The policy (const but in mutant builds, whose qp_mutant_apply() may edit it). */
extern QP_MUTANT_EDITABLE struct qp_exchange_policy qp_exchange_policy;

/**
 * Hands a finished request back to the server side: the callee resumes the connection
 * and drops the loop's reference. Called on the loop thread with req->resp filled.
 */
typedef void (*qp_forward_complete_fn)(struct qp_request *req);

/**
 * Commits a streamed answer (SSE-*): req->streaming is set and the callee resumes the
 * connection so the next handler call queues the 200 event stream. Unlike `complete`,
 * the loop keeps its reference: it keeps feeding req->st until the stream ends.
 */
typedef void (*qp_forward_stream_fn)(struct qp_request *req);

/** Settings of a forwarder; strings are copied. */
struct qp_forward_config {
    const char *upstream;             /**< base URL; the dialect's paths are appended */
    const struct qp_dialect *dialect; /**< the upstream API (dialect.h), borrowed: static */
    enum qp_reasoning_mode reasoning; /**< what callers get of the reasoning (decoder.h) */
    struct qp_retry_policy policy;
    int64_t cache_ttl_ms;
    size_t cache_max_entries;
    size_t cache_max_bytes; /**< bodies held by the model-list cache, both shapes */
    int64_t stale_grace_ms;
    int64_t upstream_timeout_ms;
    int64_t deadline_ms;
    int64_t stream_idle_timeout_ms; /**< started stream, upstream silent: error event */
    int64_t keepalive_interval_ms;  /**< started stream, caller idle: `: keep-alive` */
    struct qp_log log;              /**< diagnostics: failed attempts, cache (log.h) */
    struct qp_metrics *metrics;     /**< counted into (metrics.h), borrowed; NULL: none */
    qp_forward_complete_fn complete;
    qp_forward_stream_fn stream_start;
};

/** @return a new forwarder in @p out (free with qp_forwarder_free()). */
QK_WUR enum qk_err qp_forwarder_new(const struct qp_forward_config *cfg, struct qp_forwarder **out);

/** Gives the forwarder the loop it runs on (before any request is posted). */
void qp_forwarder_set_loop(struct qp_forwarder *fw, struct qp_loop *loop);

/** Frees the forwarder; call after the loop stopped. NULL-safe. */
void qp_forwarder_free(struct qp_forwarder *fw);

/**
 * A model-list request's cache lookup, on the server thread that read it (thread-safe):
 * sets its cache key, and on a fresh entry fills req->resp with the list in the route's
 * shape (HIT) and returns true; the caller sends it, and the loop never sees the request.
 * On false (a miss or a stale entry) the request goes to the loop as any other, which
 * looks again and joins or leads the credential's single flight (CACHE-4).
 */
bool qp_forward_models_hit(struct qp_forwarder *fw, struct qp_request *req);

/** @return how many times a full per-stream buffer paused an upstream transfer (SSE-11),
 *  reported by /healthz so the bound can be observed from outside. Thread-safe. */
unsigned long qp_forwarder_stream_pauses(struct qp_forwarder *fw);

/**
 * qp_loop_post_fn: @p item is a struct qp_request holding a reference for the loop. The
 * first post of a request starts its exchange; a later post of a streaming request is a
 * notice (the caller left, or read the buffer down so the transfer may resume) whose
 * reference the loop drops after acting on req->st.
 */
void qp_forward_on_post(void *fw, void *item);

/** qp_loop_stop_fn: answers every open exchange with 503 and completes it. */
void qp_forward_on_stop(void *fw);

#endif
