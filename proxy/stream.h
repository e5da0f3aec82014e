/**
 * @file stream.h
 * @brief The relay of one streamed completion (SSE-*): the bytes and the lock shared by
 * the upstream loop (producer) and libmicrohttpd's content reader (consumer).
 *
 * A struct qp_stream lives inside its struct qp_request (field `st`) and shares its
 * lifetime: qp_stream_init() on creation, qp_stream_release() when the last reference goes.
 * It owns `out`, `pending`, `scratch` and the normalizer `norm`. It borrows the caller's
 * connection and the loop (qp_stream_bind()); a notice it posts to the loop is its
 * request, with a reference of its own that the loop drops (forward.h).
 *
 * Phase (enum qp_stream_phase), moved forward only by the loop thread:
 *   ATTEMPTING -> LIVE (qp_stream_commit) -> CLOSING (qp_stream_finish)
 *                                         -> CLOSED  (qp_stream_caller_left)
 *
 * Every lock and unlock of the stream's lock is in stream.c; see the lock order there.
 */
#ifndef QP_STREAM_H
#define QP_STREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "decoder.h"
#include "log.h"
#include "loop.h"
#include "mutant.h"
#include "qwenkit/buf.h"
#include "qwenkit/common.h"
#include "qwenkit/proxy.h"

struct MHD_Connection;
struct qp_sse_norm;
struct qp_decoder_ops;

/** The block libmicrohttpd allocates, zeroed, with each stream's response. 16 KiB of it
 *  cost each held stream about 14 KiB resident (bench figures); an event is far smaller,
 *  and more bytes than a block take one more read. */
#define QP_STREAM_RESPONSE_BLOCK (2u * 1024u)

/**
 * Soft bound of a stream's caller-ready bytes (SSE-11): at or above it the upstream
 * transfer is paused (CURL_WRITEFUNC_PAUSE) until the caller has read it down to half.
 * One upstream write (at most CURL_MAX_WRITE_SIZE, 16 KiB, normalized) may land on top,
 * so a stream never holds much more than 64 KiB + what 16 KiB of upstream bytes become.
 */
#ifndef QP_STREAM_BUFFER /* overridable only to exercise the pause path in tests */
#define QP_STREAM_BUFFER (64u * 1024u)
#endif
/** Hard cap of the same buffer, a safety net far above what the pause allows. It is
 *  twice the longest answer the normalizer accepts (16 MiB), so even a relay that held a
 *  whole answer back (the buffer_stream and unbounded_stream_buffer mutants) fits. */
#define QP_STREAM_BUFFER_CAP (32u * 1024u * 1024u)

/** How a stream bounds what waits for a slow caller. */
struct qp_stream_policy {
    bool pause_when_full;    /**< the upstream pauses at QP_STREAM_BUFFER (SSE-11) */
    bool idle_counts_events; /**< only whole events reset the idle timer, not bytes (SSE-10) */
};

/** The one policy (const but in mutant builds, whose qp_mutant_apply() may edit it). */
extern QP_MUTANT_EDITABLE struct qp_stream_policy qp_stream_policy;

/** Where a stream is. Written by the loop thread only, under the lock. */
enum qp_stream_phase {
    QP_STREAM_ATTEMPTING = 0, /**< attempts run; nothing was sent to the caller */
    QP_STREAM_LIVE,           /**< the 200 is committed; the loop appends upstream bytes */
    QP_STREAM_CLOSING,        /**< the loop appended its last bytes; the reader drains out */
    QP_STREAM_CLOSED,         /**< the caller left; the loop let go, nothing more is read */
};

/**
 * The relay state. Use the functions below; the fields are listed so the struct can be
 * embedded, grouped by who may touch them.
 */
struct qp_stream {
    /* Set by qp_stream_bind() on the loop thread before the first attempt; read-only
     * afterwards (server threads read them only once the phase is LIVE). */
    struct MHD_Connection *conn; /**< borrowed: the caller's connection */
    struct qp_loop *loop;        /**< borrowed: where notices go */
    bool incremental;            /**< the request asked for incremental_output */
    bool include_usage;          /**< the request asked for stream_options.include_usage */
    char model[128];
    struct qp_log log; /**< where diagnostics go (log.h) */

    pthread_mutex_t lock; /**< private to stream.c */
    /* Under lock. `phase` is written by the loop thread only, so that thread reads it
     * without the lock (qp_stream_started()). */
    enum qp_stream_phase phase;
    struct qk_buf out;  /**< caller-ready bytes not yet handed to libmicrohttpd */
    bool suspended;     /**< the reader suspended the connection; resume on new bytes */
    bool client_gone;   /**< the caller left: the reader ends with an error */
    bool paused;        /**< the upstream transfer is paused (out was full) */
    bool notice_posted; /**< a notice (unpause, client gone) is queued to the loop */
    bool cut;           /**< the upstream failed after the start: why is in `cut_as` */
    struct qp_log_failure cut_as;
    bool fd_armed; /**< the caller's socket is in the loop's epoll set */
    int fd;        /**< the caller's socket */

    /* Loop thread only. */
    bool orphaned;       /**< mutant keep_upstream_on_disconnect: relaying into the void */
    bool sse_known, sse; /**< the current attempt answers 2xx text/event-stream */
    bool inband;         /**< the attempt opened with an in-band failure (SSE-13) */
    bool bad_event;      /**< the attempt sent an event that is not a JSON chunk */
    bool norm_finished;  /**< qp_sse_norm_finish() already ran for this attempt */
    char inband_msg[256];
    char unusable[160];         /**< why the attempt's 2xx was no usable stream (SSE-16, SSE-17) */
    struct qp_sse_norm *norm;   /**< the current attempt's normalizer, owned */
    struct qk_buf pending;      /**< normalized bytes of an attempt not yet committed */
    struct qk_buf scratch;      /**< normalized bytes on their way to out */
    int64_t last_upstream_ms;   /**< last complete upstream event (idle timeout, SSE-10) */
    int64_t last_out_ms;        /**< last bytes given to the caller (keep-alive) */
    int64_t keepalive_lag_ms;   /**< added to the keep-alive interval, random per stream, so
                                     the comments of streams started together spread out */
    struct qp_loop_timer timer; /**< attempt limit, then idle timeout and keep-alive */
    struct qp_loop_watch watch; /**< hang-up of the caller's socket (SSE-9); the owner sets
                                     `timer.fire` and `watch.fire` */
};

/** Readies an embedded, zeroed stream (any thread, before it is shared). */
void qp_stream_init(struct qp_stream *s);

/** Frees what the stream owns; call once no thread can use it. */
void qp_stream_release(struct qp_stream *s);

/* ---- loop thread ------------------------------------------------------------------- */

/** Records the caller's connection and the loop (borrowed) and the proxy's log format,
 *  and reads what the normalizer needs from the caller's chat body @p body (borrowed for
 *  the call). */
void qp_stream_bind(struct qp_stream *s, struct MHD_Connection *conn, struct qp_loop *loop,
                    struct qp_log log, const char *body, size_t len);

/** @return true once the 200 was committed (nothing is retried any more). Loop thread. */
static inline bool
qp_stream_started(const struct qp_stream *s)
{
    return s->phase != QP_STREAM_ATTEMPTING;
}

/** Fresh per-attempt state and a normalizer reading the upstream with @p decoder (the
 *  dialect's, borrowed), giving the caller the reasoning as @p reasoning says, chunk ids
 *  "chatcmpl-<request_id>". @return false when out of memory. */
QK_WUR bool qp_stream_new_attempt(struct qp_stream *s, const struct qp_decoder_ops *decoder,
                                  enum qp_reasoning_mode reasoning, const char *request_id);

/**
 * Feeds one upstream write of a 2xx event stream to the normalizer, appending caller-ready
 * bytes to @p into. Sets `inband` (with `inband_msg`) or `bad_event` when the attempt's
 * stream failed. @return false when the transfer must stop (a failure, or out of memory).
 */
bool qp_stream_feed(struct qp_stream *s, const char *bytes, size_t len, struct qk_buf *into);

/** Starts watching the caller's socket for hang-up (SSE-9, SSE-18); idempotent. */
void qp_stream_watch_caller(struct qp_stream *s);

/** Stops watching the caller's socket (before the connection goes back to libmicrohttpd). */
void qp_stream_unwatch(struct qp_stream *s);

/** ATTEMPTING -> LIVE: `pending` becomes the first bytes of `out`; the socket is watched. */
void qp_stream_commit(struct qp_stream *s);

/** Hands @p bytes (borrowed) to the caller and wakes the reader. */
void qp_stream_push(struct qp_stream *s, const struct qk_buf *bytes);

/**
 * Relays one upstream write of a live stream: normalized at once and handed to the caller
 * (SSE-2) unless @p caller_gone; a complete event or comment resets the idle clock
 * (SSE-10). @return false when the transfer must stop (see qp_stream_feed()).
 */
bool qp_stream_relay(struct qp_stream *s, const char *bytes, size_t len, bool caller_gone);

/** Sends a `: keep-alive` comment. */
void qp_stream_keepalive(struct qp_stream *s);

/** What an upstream write of a live stream may do. */
enum qp_stream_room {
    QP_STREAM_ROOM = 0, /**< append it */
    QP_STREAM_FULL,     /**< `out` is at the bound: the transfer is now marked paused */
    QP_STREAM_GONE,     /**< the caller left: read it, send nothing */
};

/** Checks the room in `out` before an upstream write (SSE-11). */
enum qp_stream_room qp_stream_reserve(struct qp_stream *s);

/** @return whether the upstream transfer is paused for a slow caller. */
bool qp_stream_paused(struct qp_stream *s);

/**
 * LIVE -> CLOSING: appends the normalizer's end (finish_reason and [DONE] when @p ok, else
 * one error event with @p message, no [DONE]: SSE-8) and lets the reader drain what is left.
 * @p cut (may be NULL) is the upstream's failure that ended it, for the request line.
 */
void qp_stream_finish(struct qp_stream *s, bool ok, const char *message,
                      const struct qp_log_failure *cut);

/**
 * The caller left a live stream: the reader ends with an error. LIVE -> CLOSED, or, with
 * @p keep_relaying (mutant keep_upstream_on_disconnect), the stream stays LIVE, orphaned
 * and unpaused. @return whether the transfer was paused.
 */
bool qp_stream_caller_left(struct qp_stream *s, bool keep_relaying);

/** What a notice found (the flags are read and the notice slot freed at once). */
struct qp_stream_notice {
    bool live;   /**< the loop still relays the stream */
    bool gone;   /**< the caller left */
    bool resume; /**< the reader drained `out` to half: the transfer was unpaused */
};

/** Reads the state a notice was posted about. */
struct qp_stream_notice qp_stream_take_notice(struct qp_stream *s);

/* ---- server threads ---------------------------------------------------------------- */

/**
 * libmicrohttpd's content reader: copies up to @p max bytes of `out` into @p buf, or
 * suspends the connection until the loop has more. Posts the unpause notice (SSE-11).
 * @return bytes copied, or MHD_CONTENT_READER_END_OF_STREAM / _END_WITH_ERROR.
 */
ssize_t qp_stream_read(struct qp_stream *s, char *buf, size_t max);

/**
 * The connection is done (NOTIFY_COMPLETED): the socket leaves the loop's epoll set before
 * libmicrohttpd closes it, and a live stream whose caller did not get it all is told so.
 */
void qp_stream_connection_done(struct qp_stream *s, bool completed_ok);

/** @return whether the upstream failed after the stream started; if so, how, in @p out. */
bool qp_stream_cut(struct qp_stream *s, struct qp_log_failure *out);

#endif
