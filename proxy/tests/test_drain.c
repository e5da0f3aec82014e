/*
 * Shutdown: a drain lets streams in progress finish while no new connection is accepted
 * and idle ones are closed; a stop ends every remaining stream well-formed, with the
 * shutdown error event and the chunked end, never a cut. In-process proxy and mock on
 * 127.0.0.1, libcurl clients on their own threads.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <curl/curl.h>

#include "qwenkit/buf.h"
#include "qwenkit/mock.h"
#include "qwenkit/proxy.h"
#include "testkit.h"

#define STREAMS 48

struct env {
    struct qk_mock *mock;
    struct qk_proxy *proxy;
    char proxy_url[64];
};

static void
start(struct env *e, int chunks, int chunk_delay_ms)
{
    struct qk_mock_config mc;
    qk_mock_config_init(&mc);
    mc.port = 0;
    char err[256] = "";
    assert_int_equal(qk_mock_start(&mc, &e->mock, err, sizeof(err)), QK_OK);
    /* One step per stream: a step is used by one upstream request. */
    char scenario[STREAMS * 64 + 128];
    size_t n = (size_t)snprintf(scenario, sizeof(scenario),
                                "{\"token\":\"drain-tok\",\"route\":\"chat\",\"steps\":[");
    for (int i = 0; i < STREAMS; i++)
        n += (size_t)snprintf(scenario + n, sizeof(scenario) - n,
                              "%s{\"stream\":{\"chunks\":%d,\"chunk_delay_ms\":%d}}", i ? "," : "",
                              chunks, chunk_delay_ms);
    snprintf(scenario + n, sizeof(scenario) - n, "]}");
    assert_int_equal(qk_mock_load_scenarios(e->mock, scenario, strlen(scenario), err, sizeof(err)),
                     QK_OK);
    char mock_url[64];
    snprintf(mock_url, sizeof(mock_url), "http://127.0.0.1:%u", qk_mock_port(e->mock));
    struct qk_proxy_config pc;
    qk_proxy_config_init(&pc);
    pc.port = 0;
    pc.upstream = mock_url;
    pc.log_format = QK_PROXY_LOG_OFF;
    assert_int_equal(qk_proxy_start(&pc, &e->proxy, err, sizeof(err)), QK_OK);
    snprintf(e->proxy_url, sizeof(e->proxy_url), "http://127.0.0.1:%u", qk_proxy_port(e->proxy));
}

struct stream_run {
    pthread_t thread;
    const char *url;
    CURLcode result;
    long status;
    struct qk_buf body;    /* written by the stream's thread only, read after the join */
    atomic_bool has_event; /* what the main thread may look at while the stream runs */
};

static size_t
sink(char *p, size_t size, size_t n, void *ud)
{
    struct stream_run *r = ud;
    if (qk_buf_append(&r->body, p, size * n) != QK_OK)
        return 0;
    if (!atomic_load(&r->has_event) && strstr(qk_buf_ptr(&r->body), "data: {"))
        atomic_store(&r->has_event, true);
    return size * n;
}

static void *
stream_main(void *arg)
{
    struct stream_run *r = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer drain-tok");
    h = curl_slist_append(h, "Content-Type: application/json");
    char url[128];
    snprintf(url, sizeof(url), "%s/api/chat/completions", r->url);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS,
                     "{\"model\":\"qwen-max-latest\",\"stream\":true,\"incremental_output\":true,"
                     "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    r->result = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

static void
start_streams(struct env *e, struct stream_run *runs)
{
    for (int i = 0; i < STREAMS; i++) {
        runs[i].url = e->proxy_url;
        qk_buf_init(&runs[i].body, 1 << 20);
        atomic_init(&runs[i].has_event, false);
        assert_int_equal(pthread_create(&runs[i].thread, NULL, stream_main, &runs[i]), 0);
    }
    /* Until every stream has its first event. */
    int64_t deadline = qk_now_ms() + 10000;
    for (int i = 0; i < STREAMS; i++) {
        while (!atomic_load(&runs[i].has_event) && qk_now_ms() < deadline)
            mc_sleep_ms(20);
    }
}

/* Stopping with streams in flight: every one ends with the shutdown error event and a
 * clean chunked end (curl reports CURLE_PARTIAL_FILE for a cut one). */
static void
stop_ends_every_stream_well_formed(void **state)
{
    (void)state;
    struct env e = {0};
    start(&e, 200, 100); /* 20 s each: only the stop ends them */
    struct stream_run runs[STREAMS];
    memset(runs, 0, sizeof(runs));
    start_streams(&e, runs);
    qk_proxy_stop(e.proxy);
    for (int i = 0; i < STREAMS; i++) {
        pthread_join(runs[i].thread, NULL);
        assert_int_equal(runs[i].status, 200);
        assert_int_equal(runs[i].result, CURLE_OK);
        const char *body = qk_buf_ptr(&runs[i].body);
        assert_non_null(strstr(body, "data: {\"error\":"));
        assert_non_null(strstr(body, "shutting down"));
        qk_buf_free(&runs[i].body);
    }
    qk_mock_stop(e.mock);
}

/* A drain refuses new connections, closes idle ones and answers 503 on the rest, while
 * the streams in progress finish whole. */
static void
drain_lets_streams_finish(void **state)
{
    (void)state;
    struct env e = {0};
    start(&e, 15, 100); /* 1.5 s each */
    int idle = mc_connect(qk_proxy_port(e.proxy), NULL);
    assert_true(idle >= 0);
    struct stream_run runs[STREAMS];
    memset(runs, 0, sizeof(runs));
    start_streams(&e, runs);
    int64_t began = qk_now_ms();
    qk_proxy_drain(e.proxy);
    assert_true(mc_read_until_closed(idle, 1000, NULL, 0) >=
                0); /* the idle connection is closed at once */
    close(idle);
    int late = mc_connect(qk_proxy_port(e.proxy), NULL);
    assert_int_equal(late, -1); /* not accepted any more */
    while (qk_proxy_open_connections(e.proxy) > 0 && qk_now_ms() - began < 10000)
        mc_sleep_ms(20);
    assert_int_equal(qk_proxy_open_connections(e.proxy), 0);
    for (int i = 0; i < STREAMS; i++) {
        pthread_join(runs[i].thread, NULL);
        assert_int_equal(runs[i].result, CURLE_OK);
        const char *body = qk_buf_ptr(&runs[i].body);
        assert_null(strstr(body, "\"error\""));
        assert_non_null(strstr(body, "data: [DONE]"));
        qk_buf_free(&runs[i].body);
    }
    qk_proxy_stop(e.proxy);
    qk_mock_stop(e.mock);
}

/* Before a drain, the proxy can go unready and still serve (--drain-delay): /readyz says
 * 503 draining while /healthz, the model list and chats are answered as before; a load
 * balancer stops sending new requests before the drain closes the listener. */
static void
unready_proxy_still_serves_but_readyz_says_draining(void **state)
{
    (void)state;
    struct env e = {0};
    start(&e, 1, 0);
    uint16_t port = qk_proxy_port(e.proxy);
    struct mc_resp r;
    assert_int_equal(mc_get(port, "/readyz", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"status\":\"ready\""));
    mc_resp_free(&r);
    qk_proxy_set_unready(e.proxy);
    assert_int_equal(mc_get(port, "/readyz", NULL, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"reason\":\"draining\""));
    mc_resp_free(&r);
    assert_int_equal(mc_get(port, "/healthz", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    mc_resp_free(&r);
    assert_int_equal(mc_get(port, "/api/models", "drain-tok", &r), 0);
    assert_int_equal(r.status, 200);
    mc_resp_free(&r);
    qk_proxy_drain(e.proxy);
    assert_int_equal(mc_connect(port, NULL), -1); /* then the drain: no new connection */
    qk_proxy_stop(e.proxy);
    qk_mock_stop(e.mock);
}

int
main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stop_ends_every_stream_well_formed),
        cmocka_unit_test(drain_lets_streams_finish),
        cmocka_unit_test(unready_proxy_still_serves_but_readyz_says_draining),
    };
    int rc = cmocka_run_group_tests_name("proxy shutdown", tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
