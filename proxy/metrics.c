/* The proxy's metrics and their Prometheus text exposition (metrics.h). */
#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

enum { STATUS_LOW = 100, STATUS_HIGH = 599, STATUS_SLOTS = STATUS_HIGH - STATUS_LOW + 1 };

/* Upper bounds in microseconds: a cached answer takes well under a millisecond, a chat's
 * attempt seconds, a long stream minutes. */
static const uint64_t BUCKET_US[] = {1000,    2500,    5000,     10000,    25000,
                                     50000,   100000,  250000,   500000,   1000000,
                                     2500000, 5000000, 10000000, 30000000, 60000000};
enum { BUCKETS = sizeof(BUCKET_US) / sizeof(BUCKET_US[0]) };

struct histogram {
    atomic_uint_fast64_t bucket[BUCKETS + 1]; /* the last: above every bound */
    atomic_uint_fast64_t sum_us;
    atomic_uint_fast64_t count;
};

struct qp_metrics {
    atomic_uint_fast64_t requests[QP_METRIC_ROUTE_COUNT][STATUS_SLOTS];
    atomic_uint_fast64_t attempts[QP_METRIC_ROUTE_COUNT];
    atomic_uint_fast64_t failures[QP_METRIC_CAUSE_COUNT];
    atomic_uint_fast64_t retries[QP_METRIC_CAUSE_COUNT];
    atomic_uint_fast64_t cache[QP_METRIC_CACHE_COUNT];
    atomic_uint_fast64_t streams_active, streams_total, stream_pauses, callers_gone;
    struct histogram upstream[QP_METRIC_ROUTE_COUNT];
    struct histogram first_event;
    atomic_int_fast64_t last_answer_ms, last_failure_ms; /* monotonic; 0: never */
};

static const char *const ROUTE_NAMES[QP_METRIC_ROUTE_COUNT] = {"models", "model", "chat", "ops",
                                                               "other"};
static const char *const CAUSE_NAMES[QP_METRIC_CAUSE_COUNT] = {
    "status", "html", "timeout", "connect", "inband", "invalid", "refused"};
static const char *const CACHE_NAMES[QP_METRIC_CACHE_COUNT] = {"hit", "miss", "stale"};

const char *
qp_metric_cause_name(enum qp_metric_cause cause)
{
    return (unsigned)cause < QP_METRIC_CAUSE_COUNT ? CAUSE_NAMES[cause] : "invalid";
}

static void
add(atomic_uint_fast64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

static uint64_t
get(const atomic_uint_fast64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

static void
observe(struct histogram *h, uint64_t us)
{
    size_t i = 0;
    while (i < BUCKETS && us > BUCKET_US[i])
        i++;
    add(&h->bucket[i], 1);
    add(&h->sum_us, us);
    add(&h->count, 1);
}

struct qp_metrics *
qp_metrics_new(void)
{
    return calloc(1, sizeof(struct qp_metrics)); /* all-zero bits are zero atomics */
}

void
qp_metrics_free(struct qp_metrics *m)
{
    free(m);
}

void
qp_metrics_request(struct qp_metrics *m, enum qp_metric_route route, unsigned status)
{
    if (m && route < QP_METRIC_ROUTE_COUNT && status >= STATUS_LOW && status <= STATUS_HIGH)
        add(&m->requests[route][status - STATUS_LOW], 1);
}

void
qp_metrics_attempt(struct qp_metrics *m, enum qp_metric_route route)
{
    if (m && route < QP_METRIC_ROUTE_COUNT)
        add(&m->attempts[route], 1);
}

void
qp_metrics_attempt_failed(struct qp_metrics *m, enum qp_metric_cause cause, bool retried)
{
    if (!m || cause >= QP_METRIC_CAUSE_COUNT)
        return;
    add(&m->failures[cause], 1);
    if (retried)
        add(&m->retries[cause], 1);
}

void
qp_metrics_upstream_duration(struct qp_metrics *m, enum qp_metric_route route, uint64_t us)
{
    if (m && route < QP_METRIC_ROUTE_COUNT)
        observe(&m->upstream[route], us);
}

void
qp_metrics_first_event(struct qp_metrics *m, uint64_t us)
{
    if (m)
        observe(&m->first_event, us);
}

void
qp_metrics_cache(struct qp_metrics *m, enum qp_metric_cache result)
{
    if (m && result < QP_METRIC_CACHE_COUNT)
        add(&m->cache[result], 1);
}

void
qp_metrics_stream_started(struct qp_metrics *m)
{
    if (!m)
        return;
    add(&m->streams_active, 1);
    add(&m->streams_total, 1);
}

void
qp_metrics_stream_ended(struct qp_metrics *m)
{
    if (m)
        atomic_fetch_sub_explicit(&m->streams_active, 1, memory_order_relaxed);
}

void
qp_metrics_stream_paused(struct qp_metrics *m)
{
    if (m)
        add(&m->stream_pauses, 1);
}

void
qp_metrics_caller_gone(struct qp_metrics *m)
{
    if (m)
        add(&m->callers_gone, 1);
}

/* Raises @p slot to @p now_ms; the latest of concurrent writers stays. */
static void
raise_to(atomic_int_fast64_t *slot, int64_t now_ms)
{
    int_fast64_t seen = atomic_load_explicit(slot, memory_order_relaxed);
    while (seen < now_ms && !atomic_compare_exchange_weak_explicit(
                                slot, &seen, now_ms, memory_order_relaxed, memory_order_relaxed)) {
    }
}

void
qp_metrics_upstream_answered(struct qp_metrics *m, int64_t now_ms)
{
    if (m)
        raise_to(&m->last_answer_ms, now_ms);
}

void
qp_metrics_upstream_failed(struct qp_metrics *m, int64_t now_ms)
{
    if (m)
        raise_to(&m->last_failure_ms, now_ms);
}

bool
qp_metrics_upstream_ready(const struct qp_metrics *m, int64_t now_ms, int64_t window_ms,
                          int64_t *failed_ago_ms)
{
    int64_t failure = m ? atomic_load_explicit(&m->last_failure_ms, memory_order_relaxed) : 0;
    int64_t answer = m ? atomic_load_explicit(&m->last_answer_ms, memory_order_relaxed) : 0;
    bool recent = failure > 0 && now_ms - failure <= window_ms;
    if (failed_ago_ms)
        *failed_ago_ms = recent ? now_ms - failure : -1;
    return !recent || answer >= failure;
}

uint64_t
qp_metrics_streams_active(const struct qp_metrics *m)
{
    return m ? get(&m->streams_active) : 0;
}

uint64_t
qp_metrics_stream_pauses(const struct qp_metrics *m)
{
    return m ? get(&m->stream_pauses) : 0;
}

/* ---- exposition ---------------------------------------------------------------------- */

static enum qk_err
family(struct qk_buf *out, const char *name, const char *type, const char *help)
{
    return qk_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static enum qk_err
histogram_series(struct qk_buf *out, const char *name, const char *labels,
                 const struct histogram *h)
{
    /* Read the buckets first: count and sum then include at least what they counted. */
    uint64_t cumulative = 0;
    enum qk_err rc = QK_OK;
    const char *sep = labels[0] ? "," : "";
    for (size_t i = 0; rc == QK_OK && i <= BUCKETS; i++) {
        cumulative += get(&h->bucket[i]);
        if (i < BUCKETS)
            rc = qk_buf_appendf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                                (double)BUCKET_US[i] / 1e6, (unsigned long long)cumulative);
        else
            rc = qk_buf_appendf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                                (unsigned long long)cumulative);
    }
    uint64_t count = get(&h->count);
    if (count < cumulative)
        count = cumulative;
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    if (rc == QK_OK)
        rc = qk_buf_appendf(out, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", name, open, labels,
                            close, (double)get(&h->sum_us) / 1e6, name, open, labels, close,
                            (unsigned long long)count);
    return rc;
}

/* A counter family with one label, one series per name. */
static enum qk_err
labelled_counter(struct qk_buf *out, const char *name, const char *help, const char *label,
                 const char *const *names, const atomic_uint_fast64_t *values, size_t n)
{
    enum qk_err rc = family(out, name, "counter", help);
    for (size_t i = 0; rc == QK_OK && i < n; i++)
        rc = qk_buf_appendf(out, "%s{%s=\"%s\"} %llu\n", name, label, names[i],
                            (unsigned long long)get(&values[i]));
    return rc;
}

static enum qk_err
plain(struct qk_buf *out, const char *name, const char *type, const char *help, uint64_t v)
{
    enum qk_err rc = family(out, name, type, help);
    return rc == QK_OK ? qk_buf_appendf(out, "%s %llu\n", name, (unsigned long long)v) : rc;
}

enum qk_err
qp_metrics_render(const struct qp_metrics *m, struct qk_buf *out)
{
    enum qk_err rc = family(out, "qwen_proxy_requests_total", "counter",
                            "Requests answered, by route and HTTP status.");
    for (int r = 0; rc == QK_OK && r < QP_METRIC_ROUTE_COUNT; r++) {
        for (int s = 0; rc == QK_OK && s < STATUS_SLOTS; s++) {
            uint64_t v = get(&m->requests[r][s]);
            /* Every route's 200 is always there, so that a query finds the series. */
            if (v || s == 200 - STATUS_LOW)
                rc = qk_buf_appendf(out,
                                    "qwen_proxy_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                                    ROUTE_NAMES[r], s + STATUS_LOW, (unsigned long long)v);
        }
    }
    if (rc == QK_OK)
        rc = labelled_counter(out, "qwen_proxy_upstream_attempts_total",
                              "Upstream attempts begun, by route (a v2 attempt is a chat "
                              "created, then the completion).",
                              "route", ROUTE_NAMES, m->attempts, QP_METRIC_ROUTE_COUNT);
    if (rc == QK_OK)
        rc = labelled_counter(out, "qwen_proxy_upstream_failures_total",
                              "Upstream attempts that failed, by cause.", "cause", CAUSE_NAMES,
                              m->failures, QP_METRIC_CAUSE_COUNT);
    if (rc == QK_OK)
        rc = labelled_counter(out, "qwen_proxy_upstream_retries_total",
                              "Failed attempts followed by another, by the failure's cause.",
                              "cause", CAUSE_NAMES, m->retries, QP_METRIC_CAUSE_COUNT);
    if (rc == QK_OK)
        rc = labelled_counter(out, "qwen_proxy_cache_requests_total",
                              "Model-list requests by what the cache did: hit, miss (fetched "
                              "upstream), stale (served expired while the upstream failed).",
                              "result", CACHE_NAMES, m->cache, QP_METRIC_CACHE_COUNT);
    if (rc == QK_OK)
        rc = plain(out, "qwen_proxy_streams_active", "gauge", "Streams being relayed now.",
                   get(&m->streams_active));
    if (rc == QK_OK)
        rc = plain(out, "qwen_proxy_streams_total", "counter", "Streams started.",
                   get(&m->streams_total));
    if (rc == QK_OK)
        rc = plain(out, "qwen_proxy_stream_pauses_total", "counter",
                   "Times a stream's upstream was paused until a slow caller caught up.",
                   get(&m->stream_pauses));
    if (rc == QK_OK)
        rc = plain(out, "qwen_proxy_callers_gone_total", "counter",
                   "Callers who left before their answer was complete.", get(&m->callers_gone));
    if (rc == QK_OK)
        rc = family(out, "qwen_proxy_upstream_duration_seconds", "histogram",
                    "Duration of upstream attempts, by route.");
    for (int r = 0; rc == QK_OK && r < QP_METRIC_ROUTE_COUNT; r++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "route=\"%s\"", ROUTE_NAMES[r]);
        rc = histogram_series(out, "qwen_proxy_upstream_duration_seconds", labels, &m->upstream[r]);
    }
    if (rc == QK_OK)
        rc = family(out, "qwen_proxy_stream_first_event_seconds", "histogram",
                    "Time from a streamed request's arrival to its first event to the caller.");
    if (rc == QK_OK)
        rc = histogram_series(out, "qwen_proxy_stream_first_event_seconds", "", &m->first_event);
    return rc;
}
