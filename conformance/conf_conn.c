/*
 * ROBUST-2, ROBUST-3: connections that send slowly or hang up half-way are let go, so that a
 * few hundred of them cannot lock other callers out. Raw TCP to the target: an HTTP client
 * library would finish the request at once.
 */
#include "conf_groups.h"

#include <curl/curl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    TRICKLE_STEP_MS = 200,    /* one byte every this long */
    DEADLINE_SLACK_MS = 2000, /* a cut this long after the stated deadline still passes */
    HANGUP_LIMIT_MS = 1000,   /* a half-closed partial request must be let go by then */
    HANGUP_ROUNDS = 5,
    SUITE_PATIENCE_MS = 10000, /* the longest receive deadline the suite waits out */
};

/* A connection to the target's host and port, or -1 (the test then ends CANNOT-JUDGE). */
static int
connect_to_target(struct conf_ctx *ctx)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;
    int fd = -1;
    if (u && curl_url_set(u, CURLUPART_URL, conf_target(ctx)->proxy_url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        size_t n = strlen(host);
        if (n > 2 && host[0] == '[') { /* an IPv6 literal */
            memmove(host, host + 1, n - 2);
            host[n - 2] = '\0';
        }
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
        if (getaddrinfo(host, port, &hints, &ai) == 0) {
            fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
                close(fd);
                fd = -1;
            }
            freeaddrinfo(ai);
        }
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return fd;
}

/* @return true once the peer closed (or reset) within @p wait_ms; answer bytes are read
 *         and dropped (a 408 or 400 before closing is fine). */
static bool
peer_closes_within(int fd, int wait_ms)
{
    int64_t until = qk_now_ms() + wait_ms;
    for (;;) {
        int64_t left = until - qk_now_ms();
        if (left <= 0)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) != 1)
            continue;
        char buf[2048];
        if (recv(fd, buf, sizeof(buf), 0) <= 0)
            return true;
    }
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ROBUST-2: a request head sent one byte at a time is cut once the receive deadline has
 * passed: the bytes do not extend it. */
static void
ROBUST_2_trickled_request_is_cut_at_the_deadline(struct conf_ctx *ctx)
{
    const struct conf_profile *p = &conf_target(ctx)->profile;
    conf_check(ctx, NULL, !conf_profile_none(p, CONF_NONE_RECEIVE_TIMEOUT),
               "the profile declares no receive deadline (receive_timeout_ms: \"none\"): a "
               "sender of one byte every few seconds holds a connection for ever");
    conf_runnable(ctx, p->receive_timeout_ms <= SUITE_PATIENCE_MS,
                  "receive_timeout_ms is %lld ms; the suite waits out at most %d ms (state a "
                  "shorter one in the profile to run this test)",
                  (long long)p->receive_timeout_ms, SUITE_PATIENCE_MS);
    int fd = connect_to_target(ctx);
    conf_observable(ctx, fd >= 0, "cannot open a TCP connection to %s",
                    conf_target(ctx)->proxy_url);
    const char *head =
        conf_str(ctx, "GET %s HTTP/1.1\r\nHost: conformance\r\n", conf_api(ctx, "/models"));
    bool cut = send(fd, head, strlen(head), MSG_NOSIGNAL) != (ssize_t)strlen(head);
    int64_t start = qk_now_ms();
    int64_t limit = p->receive_timeout_ms + DEADLINE_SLACK_MS;
    /* An endless header line, one byte per step, never the blank line that ends a head. */
    static const char pad[] = "X-Trickle: ";
    for (size_t i = 0; !cut && qk_now_ms() - start <= limit; i++) {
        char c = i < sizeof(pad) - 1 ? pad[i] : 'a';
        if (send(fd, &c, 1, MSG_NOSIGNAL) != 1 || peer_closes_within(fd, TRICKLE_STEP_MS))
            cut = true;
    }
    int64_t held = qk_now_ms() - start;
    close(fd);
    conf_check(ctx, NULL, cut,
               "a request head trickled one byte every %d ms was still held after %lld ms "
               "(receive_timeout_ms %lld + %d ms): bytes must not extend the deadline",
               TRICKLE_STEP_MS, (long long)held, (long long)p->receive_timeout_ms,
               DEADLINE_SLACK_MS);
    conf_check(ctx, NULL, conf_still_serving(ctx, "a trickled request head"),
               "the target stopped answering after a trickled request head");
}

/* ROBUST-3: a caller that sends part of a request and closes its side is let go within a
 * second, whether its FIN came with the data or after it. */
static void
ROBUST_3_half_closed_partial_request_is_let_go(struct conf_ctx *ctx)
{
    const char *part =
        conf_str(ctx, "GET %s HTTP/1.1\r\nHost: conformance\r\nAuthoriz", conf_api(ctx, "/models"));
    for (int round = 0; round < HANGUP_ROUNDS; round++) {
        int fd = connect_to_target(ctx);
        conf_observable(ctx, fd >= 0, "cannot open a TCP connection to %s",
                        conf_target(ctx)->proxy_url);
        bool sent = send(fd, part, strlen(part), MSG_NOSIGNAL) == (ssize_t)strlen(part);
        shutdown(fd, SHUT_WR);
        int64_t start = qk_now_ms();
        bool closed = !sent || peer_closes_within(fd, HANGUP_LIMIT_MS + 1000);
        int64_t took = qk_now_ms() - start;
        close(fd);
        conf_check(ctx, NULL, closed && took <= HANGUP_LIMIT_MS,
                   "round %d: after part of a request head and a FIN, the target kept the "
                   "connection open for %s%lld ms (limit %d ms): such half-open connections "
                   "pile up until they lock other callers out",
                   round + 1, closed ? "" : "over ", (long long)took, HANGUP_LIMIT_MS);
        if (round % 2)
            sleep_ms(50); /* vary the timing of the FIN against the data */
    }
    conf_check(ctx, NULL, conf_still_serving(ctx, "half-closed partial requests"),
               "the target stopped answering after half-closed partial requests");
}

static const struct CMUnitTest conn_tests[] = {
    CONF_TEST(ROBUST_2, ROBUST_2_trickled_request_is_cut_at_the_deadline),
    CONF_TEST(ROBUST_3, ROBUST_3_half_closed_partial_request_is_let_go),
};

CONF_GROUP(conn, conn_tests);
