/* Unit tests: the proxy's metrics and their Prometheus text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static char *
render(const struct qp_metrics *m)
{
    struct qk_buf out;
    qk_buf_init(&out, 1 << 20);
    assert_int_equal(qp_metrics_render(m, &out), QK_OK);
    return qk_buf_take(&out, NULL);
}

/* @return the value of the sample line that starts with @p series (name and labels). */
static double
sample(const char *text, const char *series)
{
    size_t len = strlen(series);
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        if (strncmp(line, series, len) == 0 && line[len] == ' ')
            return strtod(line + len + 1, NULL);
        if (!strchr(line, '\n'))
            break;
    }
    fail_msg("no sample %s in:\n%s", series, text);
    return -1;
}

static void
counters_by_label(void **state)
{
    (void)state;
    struct qp_metrics *m = qp_metrics_new();
    qp_metrics_request(m, QP_METRIC_ROUTE_CHAT, 200);
    qp_metrics_request(m, QP_METRIC_ROUTE_CHAT, 502);
    qp_metrics_request(m, QP_METRIC_ROUTE_CHAT, 502);
    qp_metrics_request(m, QP_METRIC_ROUTE_MODELS, 401);
    qp_metrics_request(m, QP_METRIC_ROUTE_MODELS, 99);  /* not a status: ignored */
    qp_metrics_request(m, QP_METRIC_ROUTE_MODELS, 600); /* not a status: ignored */
    qp_metrics_attempt(m, QP_METRIC_ROUTE_CHAT);
    qp_metrics_attempt(m, QP_METRIC_ROUTE_CHAT);
    qp_metrics_attempt_failed(m, QP_METRIC_CAUSE_HTML, true);
    qp_metrics_attempt_failed(m, QP_METRIC_CAUSE_REFUSED, false);
    qp_metrics_cache(m, QP_METRIC_CACHE_HIT);
    qp_metrics_cache(m, QP_METRIC_CACHE_HIT);
    qp_metrics_cache(m, QP_METRIC_CACHE_STALE);
    qp_metrics_stream_started(m);
    qp_metrics_stream_started(m);
    qp_metrics_stream_ended(m);
    qp_metrics_stream_paused(m);
    qp_metrics_caller_gone(m);
    char *text = render(m);
    assert_int_equal(sample(text, "qwen_proxy_requests_total{route=\"chat\",status=\"200\"}"), 1);
    assert_int_equal(sample(text, "qwen_proxy_requests_total{route=\"chat\",status=\"502\"}"), 2);
    assert_int_equal(sample(text, "qwen_proxy_requests_total{route=\"models\",status=\"401\"}"), 1);
    /* Each route's 200 is shown even at 0; other statuses only once seen. */
    assert_int_equal(sample(text, "qwen_proxy_requests_total{route=\"models\",status=\"200\"}"), 0);
    assert_null(strstr(text, "status=\"404\""));
    assert_null(strstr(text, "status=\"600\""));
    assert_int_equal(sample(text, "qwen_proxy_upstream_attempts_total{route=\"chat\"}"), 2);
    assert_int_equal(sample(text, "qwen_proxy_upstream_failures_total{cause=\"html\"}"), 1);
    assert_int_equal(sample(text, "qwen_proxy_upstream_failures_total{cause=\"refused\"}"), 1);
    assert_int_equal(sample(text, "qwen_proxy_upstream_retries_total{cause=\"html\"}"), 1);
    assert_int_equal(sample(text, "qwen_proxy_upstream_retries_total{cause=\"refused\"}"), 0);
    assert_int_equal(sample(text, "qwen_proxy_cache_requests_total{result=\"hit\"}"), 2);
    assert_int_equal(sample(text, "qwen_proxy_cache_requests_total{result=\"stale\"}"), 1);
    assert_int_equal(sample(text, "qwen_proxy_streams_active"), 1);
    assert_int_equal(sample(text, "qwen_proxy_streams_total"), 2);
    assert_int_equal(sample(text, "qwen_proxy_stream_pauses_total"), 1);
    assert_int_equal(sample(text, "qwen_proxy_callers_gone_total"), 1);
    assert_int_equal(qp_metrics_streams_active(m), 1);
    assert_int_equal(qp_metrics_stream_pauses(m), 1);
    assert_non_null(strstr(text, "# TYPE qwen_proxy_streams_active gauge\n"));
    assert_non_null(strstr(text, "# TYPE qwen_proxy_requests_total counter\n"));
    free(text);
    qp_metrics_free(m);
}

static void
histograms_are_cumulative(void **state)
{
    (void)state;
    struct qp_metrics *m = qp_metrics_new();
    qp_metrics_upstream_duration(m, QP_METRIC_ROUTE_CHAT, 800);      /* under 1 ms */
    qp_metrics_upstream_duration(m, QP_METRIC_ROUTE_CHAT, 1000);     /* exactly 1 ms */
    qp_metrics_upstream_duration(m, QP_METRIC_ROUTE_CHAT, 300000);   /* 0.3 s */
    qp_metrics_upstream_duration(m, QP_METRIC_ROUTE_CHAT, 90000000); /* 90 s: +Inf only */
    qp_metrics_first_event(m, 20000);
    char *text = render(m);
    const char *h = "qwen_proxy_upstream_duration_seconds";
    char series[160];
    snprintf(series, sizeof(series), "%s_bucket{route=\"chat\",le=\"0.001\"}", h);
    assert_int_equal(sample(text, series), 2); /* le is inclusive */
    snprintf(series, sizeof(series), "%s_bucket{route=\"chat\",le=\"0.25\"}", h);
    assert_int_equal(sample(text, series), 2);
    snprintf(series, sizeof(series), "%s_bucket{route=\"chat\",le=\"0.5\"}", h);
    assert_int_equal(sample(text, series), 3);
    snprintf(series, sizeof(series), "%s_bucket{route=\"chat\",le=\"60\"}", h);
    assert_int_equal(sample(text, series), 3);
    snprintf(series, sizeof(series), "%s_bucket{route=\"chat\",le=\"+Inf\"}", h);
    assert_int_equal(sample(text, series), 4);
    snprintf(series, sizeof(series), "%s_count{route=\"chat\"}", h);
    assert_int_equal(sample(text, series), 4);
    snprintf(series, sizeof(series), "%s_sum{route=\"chat\"}", h);
    assert_float_equal(sample(text, series), 90.3018, 1e-6);
    snprintf(series, sizeof(series), "%s_count{route=\"models\"}", h);
    assert_int_equal(sample(text, series), 0);
    assert_int_equal(sample(text, "qwen_proxy_stream_first_event_seconds_bucket{le=\"0.025\"}"), 1);
    assert_int_equal(sample(text, "qwen_proxy_stream_first_event_seconds_bucket{le=\"0.01\"}"), 0);
    assert_int_equal(sample(text, "qwen_proxy_stream_first_event_seconds_count"), 1);
    free(text);
    qp_metrics_free(m);
}

static void
readiness_follows_the_last_upstream_outcome(void **state)
{
    (void)state;
    struct qp_metrics *m = qp_metrics_new();
    int64_t ago = 0;
    assert_true(qp_metrics_upstream_ready(m, 1000, 30000, &ago)); /* never tried: ready */
    assert_int_equal(ago, -1);
    qp_metrics_upstream_answered(m, 2000);
    assert_true(qp_metrics_upstream_ready(m, 2500, 30000, &ago));
    qp_metrics_upstream_failed(m, 3000);
    assert_false(qp_metrics_upstream_ready(m, 3500, 30000, &ago)); /* failed since */
    assert_int_equal(ago, 500);
    qp_metrics_upstream_failed(m, 2800); /* an older failure reported late changes nothing */
    assert_false(qp_metrics_upstream_ready(m, 3500, 30000, &ago));
    assert_int_equal(ago, 500);
    assert_true(qp_metrics_upstream_ready(m, 3000 + 30001, 30000, &ago)); /* out of window */
    qp_metrics_upstream_answered(m, 4000);
    assert_true(qp_metrics_upstream_ready(m, 4100, 30000, &ago)); /* answered again */
    qp_metrics_free(m);
}

enum { THREADS = 4, PER_THREAD = 20000 };

static void *
hammer(void *arg)
{
    struct qp_metrics *m = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        qp_metrics_request(m, QP_METRIC_ROUTE_MODELS, 200);
        qp_metrics_upstream_duration(m, QP_METRIC_ROUTE_MODELS, (uint64_t)i);
        qp_metrics_stream_started(m);
        qp_metrics_stream_ended(m);
        qp_metrics_attempt_failed(m, QP_METRIC_CAUSE_HTML, true);
        if (i % 2)
            qp_metrics_upstream_answered(m, 1000 + i);
        else
            qp_metrics_upstream_failed(m, 1000 + i);
        int64_t ago = 0;
        (void)qp_metrics_upstream_ready(m, 1000 + i, 30000, &ago);
    }
    return NULL;
}

static void
updates_from_many_threads_are_all_counted(void **state)
{
    (void)state;
    struct qp_metrics *m = qp_metrics_new();
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, m), 0);
    /* Scrapes while they count (under ThreadSanitizer in CI): each sees a count no lower
     * than the last one's. */
    double seen = 0;
    for (int i = 0; i < 20; i++) {
        char *during = render(m);
        double now = sample(during, "qwen_proxy_requests_total{route=\"models\",status=\"200\"}");
        assert_true(now >= seen);
        seen = now;
        free(during);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    char *text = render(m);
    assert_int_equal(sample(text, "qwen_proxy_requests_total{route=\"models\",status=\"200\"}"),
                     THREADS * PER_THREAD);
    assert_int_equal(sample(text, "qwen_proxy_upstream_duration_seconds_count{route=\"models\"}"),
                     THREADS * PER_THREAD);
    assert_int_equal(sample(text, "qwen_proxy_streams_active"), 0);
    assert_int_equal(sample(text, "qwen_proxy_streams_total"), THREADS * PER_THREAD);
    assert_int_equal(sample(text, "qwen_proxy_upstream_failures_total{cause=\"html\"}"),
                     THREADS * PER_THREAD);
    assert_int_equal(sample(text, "qwen_proxy_upstream_retries_total{cause=\"html\"}"),
                     THREADS * PER_THREAD);
    free(text);
    qp_metrics_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counters_by_label),
        cmocka_unit_test(histograms_are_cumulative),
        cmocka_unit_test(readiness_follows_the_last_upstream_outcome),
        cmocka_unit_test(updates_from_many_threads_are_all_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
