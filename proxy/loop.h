/**
 * @file loop.h
 * @brief The upstream event loop: one thread, epoll, libcurl multi, timers, a post queue.
 *
 * Everything that talks to the upstream runs on this one thread, so the cache, the
 * single-flight registry and every curl handle have a single owner and need no lock.
 * Server threads hand work over with qp_loop_post() (thread-safe, wakes the loop through an
 * eventfd). libcurl is driven with curl_multi_socket_action(): its sockets are watched by
 * the loop's epoll set (CURLMOPT_SOCKETFUNCTION) and its timeout by the loop's wait
 * (CURLMOPT_TIMERFUNCTION). Retry backoff uses qp_loop_timer_arm(), never a sleep.
 */
#ifndef QP_LOOP_H
#define QP_LOOP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qwenkit/common.h"

struct qp_loop;

/**
 * Posted items a pass takes at most; the rest wait for the next pass, which comes at once.
 * An item may start a transfer (libcurl's set-up and a connect: 0.1 to 0.2 ms, more on a
 * busy machine), so a backlog taken whole (hundreds of requests while thousands of
 * streams ramp up) kept the sockets of the streams already relaying waiting for over
 * 100 ms. Streams in progress come before new ones; a new one waits a few passes more.
 */
#define QP_LOOP_POSTS_PER_PASS 8u

/**
 * A curl transfer run by the loop. Embed it, set `done`, and pass the easy handle with
 * CURLOPT_PRIVATE pointing at this struct to qp_loop_add().
 */
struct qp_loop_transfer {
    /** Called on the loop thread once the transfer ended; the handle is already removed
     *  from the multi handle and belongs to the callee (to clean up, or reset and reuse). */
    void (*done)(struct qp_loop_transfer *t, CURLcode result);
    CURL *easy;
};

/** A one-shot timer; embed it and set `fire`. Loop thread only. Timers due at the same
 *  millisecond fire in the order they were armed. */
struct qp_loop_timer {
    void (*fire)(struct qp_loop_timer *t); /**< called on the loop thread when due */
    int64_t due_ms;                        /**< private */
    uint64_t seq;                          /**< private: arming order, for equal due times */
    size_t slot;                           /**< private: index in the loop's heap */
    bool armed;                            /**< private */
};

/**
 * A watched socket that the loop does not own (a caller's connection): `fire` runs on the
 * loop thread when the peer hangs up or the socket fails (EPOLLRDHUP, EPOLLHUP, EPOLLERR).
 * Embed it and set `fire`; the other fields are private.
 */
struct qp_loop_watch {
    void (*fire)(struct qp_loop_watch *w);
    int fd; /**< private: -1 when not in the loop's table */
};

/**
 * A call batched with others (loop thread only): embed it and set `run`; the other fields
 * are private. qp_loop_batch() queues it; the loop runs the whole batch once per pass,
 * after the pass's sockets, timers and posts, and always before its thread ends.
 * libmicrohttpd 0.9.75 walks every suspended connection of a server thread on the pass
 * that follows any resume, so resuming the connections of a pass together lets one walk
 * serve them all. (Holding the batch back for a few milliseconds to make it larger made
 * the events later, not fewer walks: bench/README.md.)
 */
struct qp_loop_batched {
    void (*run)(struct qp_loop_batched *b); /**< called once per qp_loop_batch() */
    struct qp_loop_batched *next;           /**< private */
    bool queued;                            /**< private */
};

/** Called on the loop thread with each item given to qp_loop_post(), in the order posted,
 *  at most QP_LOOP_POSTS_PER_PASS a pass (all that are left once the loop is stopping). */
typedef void (*qp_loop_post_fn)(void *ctx, void *item);
/** Called on the loop thread when it stops, so the owner can finish what is in flight. */
typedef void (*qp_loop_stop_fn)(void *ctx);

/**
 * Starts the loop thread.
 * @param on_post receives posted items; @p on_stop runs last, on the loop thread.
 * @param max_connects upstream connections libcurl keeps open, in use or idle
 *        (CURLMOPT_MAXCONNECTS); 0 leaves libcurl's default.
 * @param[out] out the new loop, freed by qp_loop_stop().
 */
QK_WUR enum qk_err qp_loop_start(qp_loop_post_fn on_post, qp_loop_stop_fn on_stop, void *ctx,
                                 unsigned max_connects, struct qp_loop **out, char *err,
                                 size_t errlen);

/**
 * Queues @p item (borrowed) for on_post; any thread.
 * @return false when the loop is stopping or out of memory (the item was not queued).
 */
bool qp_loop_post(struct qp_loop *loop, void *item);

/**
 * Stops the loop: later posts are refused, items already queued go to on_post, then
 * on_stop runs on the loop thread and the thread is joined. NULL-safe.
 */
void qp_loop_stop(struct qp_loop *loop);

/** Frees a stopped loop, once no thread can call qp_loop_post() any more. NULL-safe. */
void qp_loop_free(struct qp_loop *loop);

/** Adds a transfer (loop thread only). On failure the handle is still the caller's. */
QK_WUR enum qk_err qp_loop_add(struct qp_loop *loop, struct qp_loop_transfer *t);

/** Removes a transfer before it ended (loop thread only); `done` is not called. */
void qp_loop_remove(struct qp_loop *loop, struct qp_loop_transfer *t);

/** Arms (or re-arms) @p t to fire at @p due_ms on the qk_now_ms() clock (loop thread). */
void qp_loop_timer_arm(struct qp_loop *loop, struct qp_loop_timer *t, int64_t due_ms);

/** Disarms @p t if armed (loop thread). */
void qp_loop_timer_cancel(struct qp_loop *loop, struct qp_loop_timer *t);

/**
 * Starts watching @p fd for hang-up (loop thread). The fd stays owned by its owner, who
 * must call qp_loop_watch_disarm() before closing it.
 */
QK_WUR enum qk_err qp_loop_watch_add(struct qp_loop *loop, struct qp_loop_watch *w, int fd);

/**
 * Takes @p fd out of the loop's epoll set; any thread, while @p fd is still open (its owner
 * calls this before closing it). Events already collected may still reach the table
 * lookup; qp_loop_watch_forget() ends those.
 */
void qp_loop_watch_disarm(struct qp_loop *loop, int fd);

/** Removes @p w from the loop's table so it never fires again (loop thread). Idempotent. */
void qp_loop_watch_forget(struct qp_loop *loop, struct qp_loop_watch *w);

/**
 * Queues @p b for the next batch (loop thread). @return false when it was already queued
 * (it will run once, not twice).
 */
bool qp_loop_batch(struct qp_loop *loop, struct qp_loop_batched *b);

/** @return a random number from the loop's generator (loop thread). */
uint32_t qp_loop_random(struct qp_loop *loop);

#endif
