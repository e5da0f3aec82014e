#include "sse_norm.h"

#include <stdio.h>
#include <stdlib.h>

#include "chunk_emit.h"
#include "decode_v1.h"
#include "mutant.h"
#include "sse_mutant.h"

struct qp_sse_norm {
    const struct qp_decoder_ops *dialect;
    struct qp_sse_frame *frame;
    void *decoder; /* the dialect's state */
    struct qp_chunk_emitter *emit;
    bool done;          /* [DONE] seen */
    bool finished;      /* a delta with a finish_reason came */
    size_t events_read; /* events the dialect could read (a chunk, [DONE], a failure) */
    char inband[256];
    unsigned inband_status;
#ifdef QK_MUTANTS
    enum qp_mutant mutant; /* qp_mutant_active when the stream began */
#endif
};

#ifdef QK_MUTANTS
/* Mutant shared_line_buffer: one partial-line buffer for every stream, as a decoder kept in
 * a module-level variable is. It is global by nature, so it lives here, the one file that
 * reads the active mutant, and reaches the framing as an option. Reachable until exit, so
 * no leak. */
static struct qk_buf *
shared_line_buffer(void)
{
    static struct qk_buf shared;
    static bool shared_ready;
    if (!shared_ready) {
        qk_buf_init(&shared, QP_SSE_EVENT_CAP);
        shared_ready = true;
    }
    /* Shared, but fresh for each stream: only streams at once mix (SSE-14), not one cut
     * stream and the next. */
    qk_buf_reset(&shared);
    return &shared;
}
#endif

struct qp_sse_norm *
qp_sse_norm_new_opts(const struct qp_sse_norm_opts *o)
{
    struct qp_sse_norm *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    const struct qp_decoder_ops *dialect = o->dialect ? o->dialect : &qp_decoder_v1;
    struct qp_sse_frame_opts fo = {.max_bytes = QP_SSE_EVENT_CAP};
    struct qp_decoder_opts dopts = {.incremental_requested = o->incremental_requested};
    struct qp_chunk_emit_opts eo = {.model = o->model,
                                    .id = o->id,
                                    .created = o->now_s,
                                    .reasoning = o->reasoning,
                                    .include_usage = o->include_usage};
#ifdef QK_MUTANTS
    /* The one place the stream modules learn the mutant: through their options. */
    n->mutant = fo.mutant = dopts.mutant = eo.mutant = qp_mutant_active;
    if (QP_SSE_MUTANT(n, shared_line_buffer))
        fo.shared_line = shared_line_buffer();
#endif
    n->dialect = dialect;
    n->frame = qp_sse_frame_new(&fo);
    n->decoder = dialect->new (&dopts);
    n->emit = qp_chunk_emitter_new(&eo);
    if (!n->frame || !n->decoder || !n->emit) {
        qp_sse_norm_free(n);
        return NULL;
    }
    return n;
}

struct qp_sse_norm *
qp_sse_norm_new_for(const struct qp_decoder_ops *dialect, bool incremental_requested,
                    const char *model, const char *id, long long now_s)
{
    struct qp_sse_norm_opts o = {.dialect = dialect,
                                 .incremental_requested = incremental_requested,
                                 .model = model,
                                 .id = id,
                                 .now_s = now_s};
    return qp_sse_norm_new_opts(&o);
}

struct qp_sse_norm *
qp_sse_norm_new(bool incremental_requested, const char *model, const char *id, long long now_s)
{
    return qp_sse_norm_new_for(&qp_decoder_v1, incremental_requested, model, id, now_s);
}

void
qp_sse_norm_free(struct qp_sse_norm *n)
{
    if (!n)
        return;
    qp_sse_frame_free(n->frame);
    if (n->dialect)
        n->dialect->free(n->decoder);
    qp_chunk_emitter_free(n->emit);
    free(n);
}

size_t
qp_sse_norm_events(const struct qp_sse_norm *n)
{
    return qp_chunk_emit_count(n->emit);
}

const char *
qp_sse_norm_inband_message(const struct qp_sse_norm *n)
{
    return n->inband;
}

unsigned
qp_sse_norm_inband_status(const struct qp_sse_norm *n)
{
    return n->inband_status;
}

bool
qp_sse_norm_unfinished(const struct qp_sse_norm *n)
{
    return n->dialect->finish_required && !n->done && !n->finished;
}

size_t
qp_sse_norm_progress(const struct qp_sse_norm *n)
{
    return qp_sse_frame_progress(n->frame);
}

enum qp_sse_end
qp_sse_norm_end(const struct qp_sse_norm *n)
{
    if (n->done || QP_SSE_MUTANT(n, done_on_junk_stream))
        return QP_SSE_END_CLEAN;
    enum qp_sse_end end = qp_sse_frame_end(n->frame);
    /* Events that are not the dialect's (`data: <html>`) are not events either. */
    if (end == QP_SSE_END_CLEAN && n->events_read == 0)
        return QP_SSE_END_NO_EVENT;
    /* A dialect that ends its answer explicitly (v2): a clean end before that is a cut. */
    return end == QP_SSE_END_CLEAN && qp_sse_norm_unfinished(n) ? QP_SSE_END_CUT : end;
}

/* One event: decoded, its bytes given back, then written for the caller. */
static enum qp_sse_status
on_event(struct qp_sse_norm *n, const struct qp_sse_event *ev, struct qk_buf *out)
{
    struct qp_delta d;
    enum qp_decode_status ds = n->dialect->event(n->decoder, ev->data, ev->len, &d);
    qp_sse_frame_release_event(n->frame); /* the decoder keeps what it needs of it */
    enum qp_sse_status st = QP_SSE_OK;
    if (ds != QP_DECODE_BAD && ds != QP_DECODE_NOMEM)
        n->events_read++;
    switch (ds) {
    case QP_DECODE_CHUNK:
        if (d.finish_reason)
            n->finished = true;
        if (qp_chunk_emit_delta(n->emit, &d, out) != QK_OK)
            st = QP_SSE_NOMEM;
        break;
    case QP_DECODE_DONE:
        n->done = true;
        st = QP_SSE_DONE;
        /* Mutant v2_upstream_done_relayed: the upstream's [DONE] goes out too (V2-5). */
        if (QP_SSE_MUTANT(n, v2_upstream_done_relayed) &&
            qk_buf_append_str(out, "data: [DONE]\n\n") != QK_OK)
            st = QP_SSE_NOMEM;
        break;
    case QP_DECODE_FAILURE:
        snprintf(n->inband, sizeof n->inband, "%s", d.failure);
        n->inband_status = d.failure_status;
        st = QP_SSE_INBAND_ERROR;
        break;
    case QP_DECODE_BAD:
        st = QP_SSE_BAD_EVENT;
        break;
    case QP_DECODE_NOMEM:
        st = QP_SSE_NOMEM;
        break;
    }
    n->dialect->release(n->decoder);
    return st;
}

enum qp_sse_status
qp_sse_norm_feed(struct qp_sse_norm *n, const char *bytes, size_t len, struct qk_buf *out)
{
    if (n->done)
        return QP_SSE_DONE;
    for (;;) {
        struct qp_sse_event ev;
        switch (qp_sse_frame_next(n->frame, &bytes, &len, &ev)) {
        case QP_SSE_FRAME_MORE:
            return QP_SSE_OK;
        case QP_SSE_FRAME_NOMEM:
            return QP_SSE_NOMEM;
        case QP_SSE_FRAME_EVENT:
            break;
        }
        enum qp_sse_status st = on_event(n, &ev, out);
        if (st != QP_SSE_OK)
            return st;
    }
}

enum qk_err
qp_sse_norm_finish(struct qp_sse_norm *n, bool upstream_ok, const char *error_message,
                   struct qk_buf *out)
{
#ifdef QK_MUTANTS
    struct qp_sse_event ev;
    if (QP_SSE_MUTANT(n, done_on_junk_stream) && upstream_ok && !n->done &&
        qp_sse_frame_flush(n->frame, &ev) && on_event(n, &ev, out) == QP_SSE_NOMEM)
        return QK_NOMEM; /* a clean end right after an event's last data line: the event
                            taken as if its blank line had come */
#endif
    enum qp_sse_end end = qp_sse_norm_end(n);
    if (n->done || (upstream_ok && end == QP_SSE_END_CLEAN))
        return qp_chunk_emit_close(n->emit, out);
    if (upstream_ok || !error_message)
        error_message = end == QP_SSE_END_NO_EVENT ? "upstream stream carried no event"
                        : end == QP_SSE_END_CUT && qp_sse_frame_end(n->frame) == QP_SSE_END_CLEAN
                            ? "upstream stream ended before the answer finished"
                        : end == QP_SSE_END_CUT ? "upstream stream ended inside an event"
                                                : "upstream stream interrupted";
    enum qk_err rc = qp_chunk_emit_error(error_message, out);
    /* Mutant v2_done_after_inband_error: [DONE] after an in-band failure's error (V2-6). */
    if (rc == QK_OK && n->inband[0] && QP_SSE_MUTANT(n, v2_done_after_inband_error))
        rc = qk_buf_append_str(out, "data: [DONE]\n\n");
    return rc;
}
