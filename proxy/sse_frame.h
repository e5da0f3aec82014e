/**
 * @file sse_frame.h
 * @brief Server-sent events framing: upstream bytes in, one event's data out (no dialect).
 *
 * Reads the event-stream format (WHATWG HTML, "Server-sent events"): LF, CRLF and CR line
 * endings, a CRLF split across reads, comment lines, `data:` with or without its space,
 * several data lines joined by LF, other fields (event:, id:, retry:) dropped, events split
 * or coalesced across reads. What the data means belongs to a decoder (decoder.h).
 *
 * It also keeps what the relay needs to know about the bytes themselves: progress (SSE-10)
 * and how they would end (SSE-17).
 *
 * Memory: the line being read and the data of the event being read, each capped at
 * `max_bytes`; both are given back after an event that made them grow past 64 KiB. The
 * event's first data line is moved into the event, not copied (a cumulative upstream's
 * line is as long as the answer).
 *
 * Pure: no I/O, no global. Ownership: qp_sse_frame_new() returns an object the caller
 * frees with qp_sse_frame_free(); an event's data is borrowed from it (see next()).
 */
#ifndef QP_SSE_FRAME_H
#define QP_SSE_FRAME_H

#include <stdbool.h>
#include <stddef.h>

#include "qwenkit/buf.h"
#include "mutant.h"

/** The longest line, and the longest event, the relay accepts (see QP_SSE_NOMEM). */
#define QP_SSE_EVENT_CAP (16 * 1024 * 1024)

struct qp_sse_frame;

struct qp_sse_frame_opts {
    size_t max_bytes; /**< cap on the line being read and on one event's data */
#ifdef QK_MUTANTS
    enum qp_mutant mutant; /**< lf_only_framing: a CR alone ends no line */
    /** shared_line_buffer: the partial-line buffer to use instead of the stream's own
     *  (borrowed; NULL for the stream's own). */
    struct qk_buf *shared_line;
#endif
};

/** How the bytes fed so far would end if the transfer ended now (SSE-17). */
enum qp_sse_end {
    QP_SSE_END_CLEAN = 0, /**< complete events and no event cut */
    QP_SSE_END_NO_EVENT,  /**< not one event: gzip bytes, an HTML page, junk lines */
    QP_SSE_END_CUT,       /**< the last event has no blank line before the end (truncated) */
};

/** What one call of qp_sse_frame_next() found. */
enum qp_sse_frame_step {
    QP_SSE_FRAME_MORE = 0, /**< every byte was read and no event completed */
    QP_SSE_FRAME_EVENT,    /**< an event completed; the bytes after its blank line remain */
    QP_SSE_FRAME_NOMEM,    /**< a line or an event went over max_bytes (or malloc failed) */
};

/** One event's data: its data lines joined by LF, without the last line's LF. */
struct qp_sse_event {
    const char *data; /**< borrowed from the frame; not NUL-terminated */
    size_t len;
};

/** @return a new framer (copies @p opts), or NULL when out of memory. */
struct qp_sse_frame *qp_sse_frame_new(const struct qp_sse_frame_opts *opts);
/** NULL-safe. */
void qp_sse_frame_free(struct qp_sse_frame *f);

/**
 * Reads @p *bytes (@p *len of them) up to the end of the first event they complete, and
 * advances both past what it read. Call again with what remains until MORE.
 * @param[out] ev on QP_SSE_FRAME_EVENT, the event's data: valid until the next call of
 *             qp_sse_frame_next() or qp_sse_frame_release_event(), or qp_sse_frame_free()
 */
enum qp_sse_frame_step qp_sse_frame_next(struct qp_sse_frame *f, const char **bytes, size_t *len,
                                         struct qp_sse_event *ev);

/** Gives back the last event's data early (once it is parsed); the next call would. */
void qp_sse_frame_release_event(struct qp_sse_frame *f);

/** @return how the bytes read so far would end if the transfer ended now (SSE-17). */
enum qp_sse_end qp_sse_frame_end(const struct qp_sse_frame *f);

/**
 * @return complete events and comment lines read so far: what shows that the upstream is
 * alive (SSE-10). Bytes that complete neither (a trickle) do not count.
 */
size_t qp_sse_frame_progress(const struct qp_sse_frame *f);

#ifdef QK_MUTANTS
/**
 * Mutant done_on_junk_stream: ends the event being read as if its blank line had come
 * after its last complete data line.
 * @return whether there was one; @p ev as for qp_sse_frame_next()
 */
bool qp_sse_frame_flush(struct qp_sse_frame *f, struct qp_sse_event *ev);
#endif

#endif
