/*
 * Fuzz target: the proxy's stream normalizer (proxy/sse_norm.c).
 *
 * Oracle: the caller's bytes do not depend on how the upstream's bytes were split into
 * reads. The stream is fed whole, in fuzzer-chosen pieces and one byte at a time (see
 * fuzz_split.h); status, output bytes, event count and in-band message must agree. The
 * whole-feed output must also keep the header's promise: only `data: {json object}`
 * events, then, after a clean end, exactly one final `data: [DONE]`.
 *
 * Flags (byte 0): bit 0 the request asked for incremental_output, bit 1 the upstream
 * transfer ended cleanly.
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_split.h"
#include "sse_norm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
    enum qp_sse_status status; /* the first status other than OK, or OK */
    enum qk_err finish_rc;
    enum qp_sse_end end; /* how the upstream's bytes ended, read before finishing */
    struct qk_buf out;
    size_t events;
    char inband[256];
};

/* Feeds until the first status other than OK, then finishes the way the stream relay
 * (proxy/stream.c) does:
 * only a stream that is fine or ended by [DONE] is finished. */
static void
run(const struct fuzz_split *s, enum fuzz_feed how, struct outcome *r)
{
    bool incremental = s->flags & 1, upstream_ok = s->flags & 2;
    struct qp_sse_norm *n = qp_sse_norm_new(incremental, "req-model", "chatcmpl-req", 1700000000);
    if (!n)
        abort();
    memset(r, 0, sizeof *r);
    qk_buf_init(&r->out, SIZE_MAX / 2);
    r->status = QP_SSE_OK;
    size_t pieces = fuzz_split_pieces(s, how);
    for (size_t i = 0; i < pieces && r->status == QP_SSE_OK; i++) {
        size_t len = 0;
        char *piece = fuzz_split_piece(s, how, i, &len);
        r->status = qp_sse_norm_feed(n, piece, len, &r->out);
        free(piece);
    }
    r->end = qp_sse_norm_end(n);
    if (r->status == QP_SSE_OK || r->status == QP_SSE_DONE)
        r->finish_rc = qp_sse_norm_finish(n, upstream_ok, "cut", &r->out);
    r->events = qp_sse_norm_events(n);
    if (r->status == QP_SSE_INBAND_ERROR)
        snprintf(r->inband, sizeof r->inband, "%s", qp_sse_norm_inband_message(n));
    qp_sse_norm_free(n);
}

static void
differ(const char *how, const struct outcome *a, const struct outcome *b)
{
    fprintf(stderr,
            "fuzz_sse_norm: output depends on the split (%s)\n"
            "whole: status=%d finish=%d events=%zu inband='%s' out(%zu)=\n%s\n"
            "split: status=%d finish=%d events=%zu inband='%s' out(%zu)=\n%s\n",
            how, a->status, a->finish_rc, a->events, a->inband, qk_buf_len(&a->out),
            qk_buf_ptr(&a->out), b->status, b->finish_rc, b->events, b->inband, qk_buf_len(&b->out),
            qk_buf_ptr(&b->out));
    abort();
}

static void
compare(const char *how, const struct outcome *a, const struct outcome *b)
{
    if (a->status != b->status || a->finish_rc != b->finish_rc || a->end != b->end ||
        a->events != b->events || strcmp(a->inband, b->inband) != 0 ||
        qk_buf_len(&a->out) != qk_buf_len(&b->out) ||
        memcmp(qk_buf_ptr(&a->out), qk_buf_ptr(&b->out), qk_buf_len(&a->out)) != 0)
        differ(how, a, b);
}

static void
broken_promise(const char *what, const struct outcome *r)
{
    fprintf(stderr, "fuzz_sse_norm: %s\nstatus=%d out(%zu)=\n%s\n", what, r->status,
            qk_buf_len(&r->out), qk_buf_ptr(&r->out));
    abort();
}

/* The output is a run of `data: X\n\n` events: X a JSON object, or [DONE] last. */
static void
check_shape(const struct outcome *r, bool upstream_ok)
{
    const char *p = qk_buf_ptr(&r->out), *end = p + qk_buf_len(&r->out);
    size_t done = 0, chunks = 0;
    if (memchr(p, '\r', (size_t)(end - p)) || memchr(p, '\0', (size_t)(end - p)))
        broken_promise("CR or NUL in the output", r);
    while (p < end) {
        const char *nl = strstr(p, "\n\n");
        if (!nl || strncmp(p, "data: ", 6) != 0 || memchr(p, '\n', (size_t)(nl - p)))
            broken_promise("output event is not one data line", r);
        if (done)
            broken_promise("event after [DONE]", r);
        const char *d = p + 6;
        size_t dl = (size_t)(nl - d);
        if (dl == 6 && memcmp(d, "[DONE]", 6) == 0) {
            done++;
        } else {
            cJSON *o = cJSON_ParseWithLength(d, dl);
            if (!cJSON_IsObject(o))
                broken_promise("output data is not a JSON object", r);
            cJSON_Delete(o);
            chunks++;
        }
        p = nl + 2;
    }
    if (r->finish_rc != QK_OK)
        return;
    /* SSE-17: bytes that held no event, or a last event cut before its blank line, are a
     * failure even when the transfer itself ended well. */
    bool finished_clean = r->status == QP_SSE_DONE ||
                          (r->status == QP_SSE_OK && upstream_ok && r->end == QP_SSE_END_CLEAN);
    if (finished_clean && done != 1)
        broken_promise("a clean end without exactly one [DONE]", r);
    if (!finished_clean && done != 0)
        broken_promise("[DONE] after a failure", r);
    if (r->status == QP_SSE_OK && !finished_clean && chunks < 1)
        broken_promise("an interrupted stream without its error event", r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_split s;
    if (!fuzz_split_decode(data, size, &s))
        return 0;
    struct outcome whole, cut, bytes;
    run(&s, FUZZ_WHOLE, &whole);
    check_shape(&whole, s.flags & 2);
    run(&s, FUZZ_CUTS, &cut);
    compare("fuzzer's cut points", &whole, &cut);
    run(&s, FUZZ_BYTES, &bytes);
    compare("one byte per read", &whole, &bytes);
    qk_buf_free(&whole.out);
    qk_buf_free(&cut.out);
    qk_buf_free(&bytes.out);
    return 0;
}
