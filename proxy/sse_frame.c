#include "sse_frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sse_mutant.h"

/* Buffers that grew past this for one event are given back after it, so a stream holds
 * its largest event only while it reads it. */
#define KEEP_BYTES (64 * 1024)

struct qp_sse_frame {
    struct qp_sse_frame_opts opts;
    struct qk_buf own_line; /* the line being read */
    struct qk_buf *line;    /* &own_line, or the shared_line_buffer mutant's buffer */
    struct qk_buf data;     /* data lines of the event being read, from data_off on */
    size_t data_off;        /* the line moved into data kept its "data: " prefix */
    size_t events;          /* complete events */
    size_t progress;        /* complete events and comment lines (SSE-10's sign of life) */
    bool data_seen;         /* the event being read has a data line */
    bool after_cr;          /* the last byte read ended a line with CR */
    bool event_held;        /* data holds the event last returned */
    bool cr_ends;           /* a CR alone ends a line (all but the lf_only_framing mutant) */
};

struct qp_sse_frame *
qp_sse_frame_new(const struct qp_sse_frame_opts *opts)
{
    struct qp_sse_frame *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->opts = *opts;
    qk_buf_init(&f->own_line, opts->max_bytes);
    qk_buf_init(&f->data, opts->max_bytes);
    f->line = &f->own_line;
#ifdef QK_MUTANTS
    if (opts->shared_line)
        f->line = opts->shared_line;
#endif
    f->cr_ends = !QP_SSE_MUTANT(opts, lf_only_framing);
    return f;
}

void
qp_sse_frame_free(struct qp_sse_frame *f)
{
    if (!f)
        return;
    qk_buf_free(&f->own_line);
    qk_buf_free(&f->data);
    free(f);
}

/* Empties @p b, giving its memory back when it held more than KEEP_BYTES. */
static void
release(struct qk_buf *b, size_t used, size_t cap)
{
    if (used <= KEEP_BYTES) {
        qk_buf_reset(b);
        return;
    }
    qk_buf_free(b);
    qk_buf_init(b, cap);
}

void
qp_sse_frame_release_event(struct qp_sse_frame *f)
{
    if (!f->event_held)
        return;
    release(&f->data, qk_buf_len(&f->data), f->opts.max_bytes);
    f->data_off = 0;
    f->event_held = false;
}

/* The event being read is complete: hand its data out and start the next one. */
static void
take_event(struct qp_sse_frame *f, struct qp_sse_event *ev)
{
    ev->data = qk_buf_ptr(&f->data) + f->data_off;
    ev->len = qk_buf_len(&f->data) - f->data_off;
    if (ev->len > 0 && ev->data[ev->len - 1] == '\n')
        ev->len--; /* every data line ends in LF; the event's last does not */
    f->events++;
    f->data_seen = false;
    f->event_held = true;
}

/* A data line (field "data", its value after the colon and one optional space). */
static bool
add_data_line(struct qp_sse_frame *f, const char *line, size_t ll, bool *moved)
{
    size_t skip = ll == 4 ? 4 : (ll > 5 && line[5] == ' ') ? 6 : 5;
    f->data_seen = true;
    if (qk_buf_len(&f->data) == 0 && f->line == &f->own_line) {
        /* The event's first data line is moved, not copied: a cumulative line is as long
         * as the answer. */
        struct qk_buf empty = f->data;
        f->data = f->own_line;
        f->own_line = empty;
        f->data_off = skip;
        *moved = true;
        return qk_buf_append(&f->data, "\n", 1) == QK_OK;
    }
    return qk_buf_append(&f->data, line + skip, ll - skip) == QK_OK &&
           qk_buf_append(&f->data, "\n", 1) == QK_OK;
}

/* The first @p c in p[i..n) (n when none), given @p at, the one found before: still
 * ahead (or n, none), passed (below i), or SIZE_MAX (not looked for yet). */
static size_t
next_of(const char *p, size_t n, size_t i, size_t at, char c)
{
    if (at != SIZE_MAX && at >= i)
        return at;
    const char *hit = memchr(p + i, c, n - i);
    return hit ? (size_t)(hit - p) : n;
}

enum qp_sse_frame_step
qp_sse_frame_next(struct qp_sse_frame *f, const char **bytes, size_t *len, struct qp_sse_event *ev)
{
    qp_sse_frame_release_event(f);
    struct qk_buf *lb = f->line;
    const char *p = *bytes;
    size_t n = *len;
    enum qp_sse_frame_step step = QP_SSE_FRAME_MORE;
    size_t i = 0;
    /* The next LF and CR at or after i (n: none; SIZE_MAX: not looked for yet), found by
     * memchr and looked for again only once passed: each byte is searched once a kind. */
    size_t lf = SIZE_MAX, cr = f->cr_ends ? SIZE_MAX : n;
    while (i < n && step == QP_SSE_FRAME_MORE) {
        char ch = p[i];
        if (f->after_cr) {
            f->after_cr = false;
            if (ch == '\n') {
                i++;
                continue; /* CRLF split across reads */
            }
        }
        if (ch != '\n' && (ch != '\r' || !f->cr_ends)) {
            /* The run up to the next line end, in one append. */
            lf = next_of(p, n, i, lf, '\n');
            if (f->cr_ends)
                cr = next_of(p, n, i, cr, '\r');
            size_t j = lf < cr ? lf : cr;
            if (qk_buf_append(lb, p + i, j - i) != QK_OK) {
                step = QP_SSE_FRAME_NOMEM;
                break;
            }
            i = j;
            continue;
        }
        i++;
        f->after_cr = ch == '\r';
        const char *line = qk_buf_ptr(lb);
        size_t ll = qk_buf_len(lb);
        bool moved = false;
        if (ll == 0) {
            if (f->data_seen) {
                f->progress++;
                take_event(f, ev);
                step = QP_SSE_FRAME_EVENT;
            }
        } else if (ll >= 4 && memcmp(line, "data", 4) == 0 && (ll == 4 || line[4] == ':')) {
            if (!add_data_line(f, line, ll, &moved))
                step = QP_SSE_FRAME_NOMEM;
        } else if (line[0] == ':') {
            f->progress++; /* a comment: dropped, but the upstream is alive */
        }
        /* other fields (event:, id:, retry:) and lines without a colon are dropped */
        if (moved)
            qk_buf_reset(lb);
        else
            release(lb, ll, f->opts.max_bytes);
    }
    *bytes = p + i;
    *len = n - i;
    return step;
}

enum qp_sse_end
qp_sse_frame_end(const struct qp_sse_frame *f)
{
    /* Data lines read but not yet dispatched, or a data line cut short: WHATWG discards
     * such an event at the end, and so would the caller's SDK; it is a truncation. */
    const struct qk_buf *lb = f->line;
    size_t ll = qk_buf_len(lb);
    bool partial_data = ll > 0 && strncmp(qk_buf_ptr(lb), "data", ll < 4 ? ll : 4) == 0;
    if (f->data_seen || partial_data)
        return QP_SSE_END_CUT;
    return f->events == 0 ? QP_SSE_END_NO_EVENT : QP_SSE_END_CLEAN;
}

size_t
qp_sse_frame_progress(const struct qp_sse_frame *f)
{
    return f->progress;
}

#ifdef QK_MUTANTS
bool
qp_sse_frame_flush(struct qp_sse_frame *f, struct qp_sse_event *ev)
{
    qp_sse_frame_release_event(f);
    if (!f->data_seen)
        return false;
    take_event(f, ev);
    return true;
}
#endif
