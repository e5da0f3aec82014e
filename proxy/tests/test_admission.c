/*
 * Admission control, end to end with raw sockets on 127.0.0.1 (and 127.0.0.2 as a second
 * client address): slow senders are cut at the receive deadline, half-closed partial
 * requests are freed at once, over the limit a caller gets a 503 at once, per-client
 * limits leave other clients served, idle keep-alive connections close in seconds, and
 * none of it cuts a legitimate request.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "qwenkit/mock.h"
#include "qwenkit/proxy.h"
#include "testkit.h"

static struct qk_proxy *
start_proxy(void (*tune)(struct qk_proxy_config *), const char *upstream)
{
    struct qk_proxy_config pc;
    qk_proxy_config_init(&pc);
    pc.port = 0;
    pc.upstream = upstream ? upstream : "http://127.0.0.1:9";
    pc.log_format = QK_PROXY_LOG_OFF;
    if (tune)
        tune(&pc);
    struct qk_proxy *p = NULL;
    char err[256] = "";
    assert_int_equal(qk_proxy_start(&pc, &p, err, sizeof(err)), QK_OK);
    return p;
}

/* A TCP connection to the proxy from source address @p from ("127.0.0.1", "127.0.0.2"). */
static int
connect_from(struct qk_proxy *p, const char *from)
{
    int fd = mc_connect(qk_proxy_port(p), from);
    assert_true(fd >= 0);
    return fd;
}

static void
send_all(int fd, const char *s)
{
    assert_true(mc_send_all(fd, s, strlen(s)));
}

/* One whole request on a fresh connection from @p from; returns the status, 0 if none. */
static int
status_of(struct qk_proxy *p, const char *from, const char *request, char *got, size_t cap)
{
    int fd = connect_from(p, from);
    send_all(fd, request);
    mc_read_until_closed(fd, 5000, got, cap);
    close(fd);
    int status = 0;
    if (sscanf(got, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    return status;
}

/* Sockets of the proxy's port in CLOSE-WAIT: the peer closed, the proxy did not. */
static int
close_wait_count(struct qk_proxy *p)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    assert_non_null(f);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned port = 0, st = 0;
        if (sscanf(line, " %*d: %*x:%x %*x:%*x %x", &port, &st) == 2 && port == qk_proxy_port(p) &&
            st == 0x08)
            n++;
    }
    fclose(f);
    return n;
}

#define HEALTH "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

static void
short_receive(struct qk_proxy_config *pc)
{
    pc->receive_timeout_ms = 1000;
}

/* Bytes do not extend the receive deadline: a head sent one byte every 150 ms is cut. */
static void
trickled_head_is_cut_at_the_receive_deadline(void **state)
{
    (void)state;
    struct qk_proxy *p = start_proxy(short_receive, NULL);
    int fd = connect_from(p, "127.0.0.1");
    const char *head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaa";
    int64_t start = qk_now_ms();
    int64_t closed_after = -1;
    for (const char *c = head; *c && closed_after < 0; c++) {
        if (send(fd, c, 1, MSG_NOSIGNAL) != 1)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 150) == 1) {
            char b[64];
            if (recv(fd, b, sizeof(b), 0) <= 0)
                closed_after = qk_now_ms() - start;
        }
    }
    close(fd);
    assert_true(closed_after >= 0); /* cut before the head was complete */
    assert_true(closed_after >= 900 && closed_after <= 2500);

    /* A request that arrives in time is answered as usual. */
    char got[4096];
    assert_int_equal(status_of(p, "127.0.0.1", HEALTH, got, sizeof(got)), 200);
    qk_proxy_stop(p);
}

static void
small_limit(struct qk_proxy_config *pc)
{
    pc->max_connections = 4;
    pc->max_connections_per_client = 100;
}

/* A caller that sends part of a request and closes frees its connection at once, even
 * when its FIN came with the data (libmicrohttpd misses that one on its own). */
static void
half_closed_partial_requests_are_freed(void **state)
{
    (void)state;
    struct qk_proxy *p = start_proxy(small_limit, NULL);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 4; i++) {
            int fd = connect_from(p, "127.0.0.1");
            send_all(fd, "GET /heal");
            close(fd);
        }
    }
    mc_sleep_ms(800); /* well under the 10 s receive deadline */
    assert_int_equal(close_wait_count(p), 0);
    char got[4096];
    assert_int_equal(status_of(p, "127.0.0.1", HEALTH, got, sizeof(got)), 200);
    qk_proxy_stop(p);
}

static struct qk_mock *
start_mock(char url[64], const char *scenario)
{
    struct qk_mock_config mc;
    qk_mock_config_init(&mc);
    mc.port = 0;
    struct qk_mock *mock = NULL;
    char err[256] = "";
    assert_int_equal(qk_mock_start(&mc, &mock, err, sizeof(err)), QK_OK);
    snprintf(url, 64, "http://127.0.0.1:%u", qk_mock_port(mock));
    assert_int_equal(qk_mock_load_scenarios(mock, scenario, strlen(scenario), err, sizeof(err)),
                     QK_OK);
    return mock;
}

#define SLOW_MODELS "GET /api/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer slow-tok\r\n\r\n"

/* At the limit, with every connection busy with a request, the next caller gets a JSON
 * 503 at once, not a wait in the backlog. */
static void
over_the_limit_gets_a_503_at_once(void **state)
{
    (void)state;
    char mock_url[64];
    struct qk_mock *mock = start_mock(mock_url, "{\"token\":\"slow-tok\",\"route\":\"models\","
                                                "\"steps\":[{\"delay_ms\":1500}]}");
    struct qk_proxy *p = start_proxy(small_limit, mock_url);
    int busy[4];
    for (int i = 0; i < 4; i++) {
        busy[i] = connect_from(p, "127.0.0.1");
        send_all(busy[i], SLOW_MODELS); /* one flight upstream; the others wait for it */
    }
    mc_sleep_ms(200);
    char got[4096];
    int64_t start = qk_now_ms();
    assert_int_equal(status_of(p, "127.0.0.1", HEALTH, got, sizeof(got)), 503);
    assert_true(qk_now_ms() - start < 1000);
    assert_non_null(strstr(got, "application/json"));
    assert_non_null(strstr(got, "\"too_many_connections\""));
    for (int i = 0; i < 4; i++)
        close(busy[i]);
    mc_sleep_ms(1800); /* a request waiting on the upstream notices its caller left then */
    assert_int_equal(status_of(p, "127.0.0.1", HEALTH, got, sizeof(got)), 200);
    qk_proxy_stop(p);
    qk_mock_stop(mock);
}

/* At the limit, a new caller takes the place of the oldest connection that has not sent
 * a whole request head (an idle or slow one): a flood of idle connections from many
 * addresses cannot lock callers out. */
static void
at_the_limit_the_oldest_idle_connection_is_shed(void **state)
{
    (void)state;
    struct qk_proxy *p = start_proxy(small_limit, NULL);
    int idle[4];
    for (int i = 0; i < 4; i++) {
        idle[i] = connect_from(p, "127.0.0.1");
        mc_sleep_ms(20); /* idle[0] is the oldest */
    }
    send_all(idle[0], "GET /healthz HTTP/1.1\r\n"); /* a slow sender is no safer */
    mc_sleep_ms(100);
    char got[4096];
    assert_int_equal(status_of(p, "127.0.0.1", HEALTH, got, sizeof(got)), 200);
    /* That caller shed the oldest one, and only that one. */
    assert_true(mc_read_until_closed(idle[0], 500, got, sizeof(got)) >= 0);
    assert_true(mc_read_until_closed(idle[1], 300, got, sizeof(got)) < 0);
    for (int round = 0; round < 3; round++)
        assert_int_equal(status_of(p, "127.0.0.1", HEALTH, got, sizeof(got)), 200);
    for (int i = 0; i < 4; i++)
        close(idle[i]);
    qk_proxy_stop(p);
}

static void
per_client_limit(struct qk_proxy_config *pc)
{
    pc->max_connections_per_client = 3;
}

/* One client address at its limit does not lock out another. */
static void
per_client_limit_leaves_other_clients_served(void **state)
{
    (void)state;
    struct qk_proxy *p = start_proxy(per_client_limit, NULL);
    int held[3];
    for (int i = 0; i < 3; i++) {
        held[i] = connect_from(p, "127.0.0.2");
        send_all(held[i], "GET /healthz HTTP/1.1\r\n"); /* a slow sender */
    }
    mc_sleep_ms(100);
    int extra = connect_from(p, "127.0.0.2");
    char got[4096];
    int64_t closed = mc_read_until_closed(extra, 2000, got, sizeof(got));
    assert_true(closed >= 0 && closed < 1000); /* closed at once, not left waiting */
    close(extra);
    assert_int_equal(status_of(p, "127.0.0.1", HEALTH, got, sizeof(got)), 200);
    for (int i = 0; i < 3; i++)
        close(held[i]);
    qk_proxy_stop(p);
}

static void
short_idle(struct qk_proxy_config *pc)
{
    pc->idle_timeout_ms = 1000;
}

/* A kept-alive connection without a new request is closed in seconds, not minutes. */
static void
idle_keepalive_connection_is_closed(void **state)
{
    (void)state;
    struct qk_proxy *p = start_proxy(short_idle, NULL);
    int fd = connect_from(p, "127.0.0.1");
    send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    char got[4096];
    int64_t closed = mc_read_until_closed(fd, 6000, got, sizeof(got));
    close(fd);
    assert_non_null(strstr(got, "HTTP/1.1 200"));
    assert_true(closed >= 900 && closed <= 3500);
    qk_proxy_stop(p);
}

/* The deadline covers receiving only: a slow upstream answer is not cut, and a request
 * whose sender half-closes right after it (HTTP/1.0 style) is still answered. */
static void
legitimate_requests_are_not_cut(void **state)
{
    (void)state;
    char mock_url[64];
    struct qk_mock *mock = start_mock(mock_url, "{\"token\":\"slow-tok\",\"route\":\"models\","
                                                "\"steps\":[{\"delay_ms\":2000}]}");
    struct qk_proxy *p = start_proxy(short_receive, mock_url);

    char got[8192];
    int64_t start = qk_now_ms();
    assert_int_equal(status_of(p, "127.0.0.1",
                               "GET /api/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                               "Authorization: Bearer slow-tok\r\n\r\n",
                               got, sizeof(got)),
                     200);
    assert_true(qk_now_ms() - start >= 1900);

    int fd = connect_from(p, "127.0.0.1");
    send_all(fd, "GET /healthz HTTP/1.0\r\n\r\n");
    shutdown(fd, SHUT_WR);
    mc_read_until_closed(fd, 3000, got, sizeof(got));
    close(fd);
    assert_non_null(strstr(got, " 200 "));
    qk_proxy_stop(p);
    qk_mock_stop(mock);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trickled_head_is_cut_at_the_receive_deadline),
        cmocka_unit_test(half_closed_partial_requests_are_freed),
        cmocka_unit_test(over_the_limit_gets_a_503_at_once),
        cmocka_unit_test(at_the_limit_the_oldest_idle_connection_is_shed),
        cmocka_unit_test(per_client_limit_leaves_other_clients_served),
        cmocka_unit_test(idle_keepalive_connection_is_closed),
        cmocka_unit_test(legitimate_requests_are_not_cut),
    };
    return cmocka_run_group_tests_name("proxy admission control", tests, NULL, NULL);
}
