/**
 * @file admission.h
 * @brief Who may hold a connection, and how long a request may take to arrive.
 *
 * libmicrohttpd bounds connections globally and resets its idle timeout on every byte, so
 * on its own a slow sender (one byte every few seconds) holds a connection for as long as it
 * likes, and a few hundred of them lock everyone else out. This module adds what it lacks:
 *  - a receive deadline: a request's head and body must arrive within receive_timeout_ms of
 *    the moment the connection starts waiting for them; bytes do not extend it;
 *  - a soft connection limit: a connection accepted at max_connections takes the place of
 *    the oldest connection that has not sent a whole request head (idle, slow or
 *    half-closed: what a flood of connections holds), which is shut down; when every
 *    connection has a request in progress, the new one is marked over the limit and the
 *    server answers its request 503 at once (libmicrohttpd's own hard limit, set higher,
 *    would leave callers waiting silently in the kernel backlog);
 *  - the missed FIN: libmicrohttpd 0.9.75 (epoll, edge-triggered) misses a FIN that arrives
 *    together with data, so a caller that sent part of a request and closed stays in
 *    CLOSE-WAIT until the idle timeout. A watchdog thread watches every connection that
 *    is still receiving for EPOLLRDHUP and shuts it down.
 * The deadline and the FIN are acted on with shutdown(2) on the socket: libmicrohttpd's next
 * read then sees the end and closes the connection itself, so the socket keeps one owner.
 *
 * Threading: qp_admission_opened/closed run on libmicrohttpd's threads (connection
 * notifications), the request calls on the server threads, the checks on the watchdog
 * thread; one mutex guards the table.
 */
#ifndef QP_ADMISSION_H
#define QP_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>

#include "mutant.h"
#include "qwenkit/common.h"

struct qp_admission;

/** What admission watches besides each request's deadline. */
struct qp_admission_policy {
    bool half_close_watch; /**< a partial request whose caller half-closed is cut (ROBUST-3) */
};

/** The one policy (const but in mutant builds, whose qp_mutant_apply() may edit it). */
extern QP_MUTANT_EDITABLE struct qp_admission_policy qp_admission_policy;
/** One accepted connection, from qp_admission_opened() to qp_admission_closed(). */
struct qp_conn;

struct qp_admission_config {
    unsigned max_connections;   /**< soft limit; at or above it requests are answered 503 */
    int64_t receive_timeout_ms; /**< a request's head and body must arrive within this */
    int64_t idle_timeout_ms;    /**< a kept-alive connection may wait this long for a request */
};

/**
 * Starts the watchdog thread.
 * @param[out] out a new admission, owned by the caller (qp_admission_stop()).
 */
QK_WUR enum qk_err qp_admission_start(const struct qp_admission_config *cfg,
                                      struct qp_admission **out);

/** Stops the watchdog and frees everything, connections included. Call after the server
 *  has closed every connection. NULL-safe. */
void qp_admission_stop(struct qp_admission *adm);

/**
 * A connection was accepted on socket @p fd (borrowed: libmicrohttpd owns and closes it).
 * @return its record, owned by @p adm until qp_admission_closed(), or NULL when out of
 *         memory (treat as over the limit).
 */
struct qp_conn *qp_admission_opened(struct qp_admission *adm, int fd);

/** The connection is about to be closed by libmicrohttpd. NULL-safe. */
void qp_admission_closed(struct qp_admission *adm, struct qp_conn *conn);

/** @return true when the connection was accepted at the soft limit with no idle one to
 *  shed (or has no record), so its request gets a 503 and the connection is closed. */
bool qp_conn_over_limit(const struct qp_conn *conn);

/** A request's head arrived: the connection is no longer idle (a drain keeps it). */
void qp_admission_request_begun(struct qp_admission *adm, struct qp_conn *conn);

/** The whole request (head and body) arrived: its receive deadline no longer applies. */
void qp_admission_request_received(struct qp_admission *adm, struct qp_conn *conn);

/** A response ended and the connection is kept alive: the next request must start within
 *  the idle timeout and arrive within the receive deadline after that. */
void qp_admission_awaiting_request(struct qp_admission *adm, struct qp_conn *conn);

/** A graceful stop: idle connections are shut down now, and each other one as soon as its
 *  answer has ended. */
void qp_admission_drain(struct qp_admission *adm);

/** @return connections currently open (tests, /healthz). */
unsigned qp_admission_open_count(struct qp_admission *adm);

/** @return connections shut down so far for a missed receive deadline or a half-close. */
unsigned long qp_admission_cut_count(struct qp_admission *adm);

/** @return the watchdog's walks over the open connections so far: one per check interval,
 *  however many callers hang up meanwhile. */
unsigned long qp_admission_round_count(struct qp_admission *adm);

#endif
