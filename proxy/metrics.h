/**
 * @file metrics.h
 * @brief The proxy's counters and histograms, and their Prometheus text exposition.
 *
 * Every update is a relaxed atomic add, safe from any thread (server threads, the loop
 * thread) without a lock; a scrape reads each value once, so a scrape taken while requests
 * run sees each series consistent with itself (a histogram's count may trail its buckets
 * by the requests in flight, as in any Prometheus client). One struct per proxy instance,
 * owned by it (qp_metrics_new / qp_metrics_free).
 */
#ifndef QP_METRICS_H
#define QP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qwenkit/buf.h"
#include "qwenkit/common.h"

/** The routes requests are counted under (label `route`). */
enum qp_metric_route {
    QP_METRIC_ROUTE_MODELS, /**< GET /api/models, /v1/models */
    QP_METRIC_ROUTE_MODEL,  /**< GET /v1/models/{id} */
    QP_METRIC_ROUTE_CHAT,   /**< POST /api/chat/completions, /v1/chat/completions */
    QP_METRIC_ROUTE_OPS,    /**< /, /healthz, /readyz, /metrics */
    QP_METRIC_ROUTE_OTHER,  /**< anything else (404, 405) */
    QP_METRIC_ROUTE_COUNT
};

/** Why an upstream attempt failed (label `cause`); also why it was retried. */
enum qp_metric_cause {
    QP_METRIC_CAUSE_STATUS,  /**< a 5xx or 429 status */
    QP_METRIC_CAUSE_HTML,    /**< an HTML page where JSON or SSE was expected */
    QP_METRIC_CAUSE_TIMEOUT, /**< the attempt's time limit */
    QP_METRIC_CAUSE_CONNECT, /**< no connection, or it broke */
    QP_METRIC_CAUSE_INBAND,  /**< a failure inside a 2xx answer (v2) */
    QP_METRIC_CAUSE_INVALID, /**< an answer that could not be read */
    QP_METRIC_CAUSE_REFUSED, /**< 400/401/403: final, never retried */
    QP_METRIC_CAUSE_COUNT
};

/** What the model-list cache did for a request (label `result`). */
enum qp_metric_cache {
    QP_METRIC_CACHE_HIT,
    QP_METRIC_CACHE_MISS,
    QP_METRIC_CACHE_STALE,
    QP_METRIC_CACHE_COUNT
};

struct qp_metrics;

/** @return the cause's label value ("status", "html", ...), also the log's name for it. */
const char *qp_metric_cause_name(enum qp_metric_cause cause);

/** @return a zeroed set of metrics (the caller owns it), or NULL without memory. */
struct qp_metrics *qp_metrics_new(void);
/** Frees @p m. NULL-safe. */
void qp_metrics_free(struct qp_metrics *m);

/** One answered request: its route and status. */
void qp_metrics_request(struct qp_metrics *m, enum qp_metric_route route, unsigned status);
/** One upstream attempt of a request on @p route began. */
void qp_metrics_attempt(struct qp_metrics *m, enum qp_metric_route route);
/** An attempt failed for @p cause; @p retried: another attempt follows. */
void qp_metrics_attempt_failed(struct qp_metrics *m, enum qp_metric_cause cause, bool retried);
/** An upstream attempt took @p us microseconds (request sent to answer complete, or to
 *  the stream's end). */
void qp_metrics_upstream_duration(struct qp_metrics *m, enum qp_metric_route route, uint64_t us);
/** A stream's first event reached the caller @p us microseconds after the request came. */
void qp_metrics_first_event(struct qp_metrics *m, uint64_t us);
/** What the cache did for a model-list request. */
void qp_metrics_cache(struct qp_metrics *m, enum qp_metric_cache result);
/** A stream started (+1 active, +1 total) or ended (-1 active). */
void qp_metrics_stream_started(struct qp_metrics *m);
void qp_metrics_stream_ended(struct qp_metrics *m);
/** The upstream of a stream was paused for a slow caller. */
void qp_metrics_stream_paused(struct qp_metrics *m);
/** A caller went away before its answer was complete. */
void qp_metrics_caller_gone(struct qp_metrics *m);

/** An upstream attempt got an answer the proxy could use (any 2xx, or a final 4xx): the
 *  upstream is reachable and answering, at @p now_ms (monotonic). */
void qp_metrics_upstream_answered(struct qp_metrics *m, int64_t now_ms);
/** An upstream attempt failed in a way that says the upstream is down (qp_metrics_attempt_
 *  failed() with a cause other than QP_METRIC_CAUSE_REFUSED), at @p now_ms. */
void qp_metrics_upstream_failed(struct qp_metrics *m, int64_t now_ms);
/**
 * Readiness as /readyz reports it: false when, within the last @p window_ms before
 * @p now_ms, an upstream attempt failed and none got an answer since. A proxy that has not
 * tried the upstream lately is ready. @p failed_ago_ms: how long ago the last failure was
 * (-1: none in the window).
 */
bool qp_metrics_upstream_ready(const struct qp_metrics *m, int64_t now_ms, int64_t window_ms,
                               int64_t *failed_ago_ms);

/** @return the streams running now. */
uint64_t qp_metrics_streams_active(const struct qp_metrics *m);
/** @return the pauses so far (what /healthz has always reported as stream_pauses). */
uint64_t qp_metrics_stream_pauses(const struct qp_metrics *m);

/** Appends every metric in the Prometheus text format (version 0.0.4) to @p out. */
QK_WUR enum qk_err qp_metrics_render(const struct qp_metrics *m, struct qk_buf *out);

/** The Content-Type of that format. */
#define QP_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
