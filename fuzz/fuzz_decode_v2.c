/*
 * Fuzz target: the Qwen v2 stream decoder (proxy/decode_v2.c) behind the normalizer
 * (proxy/sse_norm.c), and the non-stream assembler (proxy/assemble.c) on the same bytes.
 *
 * Oracles: (1) split invariance, as fuzz_sse_norm: fed whole, in fuzzer-chosen pieces and
 * one byte at a time, status, end, output bytes, event count, in-band message and its final
 * status agree; (2) a stream that ended cleanly (finished, or [DONE]) and the assembled
 * answer agree: the assembler says OK, and its content and reasoning_content are what the
 * stream's chunks carried (separate and drop modes; inline may open a second think block
 * in a stream whose reasoning comes after its text, which one message cannot show);
 * (3) an assembled answer is a JSON object with a string content; any other status
 * carries a message.
 *
 * Flags (byte 0): bits 0-1 the reasoning mode (3 is separate), bit 2 the upstream
 * transfer ended cleanly.
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assemble.h"
#include "decode_v2.h"
#include "fuzz_split.h"
#include "sse_norm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
    enum qp_sse_status status;
    enum qk_err finish_rc;
    enum qp_sse_end end;
    struct qk_buf out;
    size_t events;
    char inband[256];
    unsigned final_status;
};

static enum qp_reasoning_mode
mode_of(uint8_t flags)
{
    return (flags & 3) == 3 ? QP_REASONING_SEPARATE : (enum qp_reasoning_mode)(flags & 3);
}

static void
run(const struct fuzz_split *s, enum fuzz_feed how, struct outcome *r)
{
    struct qp_sse_norm_opts o = {.dialect = &qp_decoder_v2,
                                 .incremental_requested = true,
                                 .model = "qwen3-max",
                                 .id = "chatcmpl-req",
                                 .now_s = 1700000000,
                                 .reasoning = mode_of(s->flags)};
    struct qp_sse_norm *n = qp_sse_norm_new_opts(&o);
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
        r->finish_rc = qp_sse_norm_finish(n, s->flags & 4, "cut", &r->out);
    r->events = qp_sse_norm_events(n);
    if (r->status == QP_SSE_INBAND_ERROR) {
        snprintf(r->inband, sizeof r->inband, "%s", qp_sse_norm_inband_message(n));
        r->final_status = qp_sse_norm_inband_status(n);
    }
    qp_sse_norm_free(n);
}

static void
compare(const char *how, const struct outcome *a, const struct outcome *b)
{
    if (a->status != b->status || a->finish_rc != b->finish_rc || a->end != b->end ||
        a->events != b->events || strcmp(a->inband, b->inband) != 0 ||
        a->final_status != b->final_status || qk_buf_len(&a->out) != qk_buf_len(&b->out) ||
        memcmp(qk_buf_ptr(&a->out), qk_buf_ptr(&b->out), qk_buf_len(&a->out)) != 0) {
        fprintf(stderr,
                "fuzz_decode_v2: output depends on the split (%s)\nwhole(%zu)=\n%s\n"
                "split(%zu)=\n%s\n",
                how, qk_buf_len(&a->out), qk_buf_ptr(&a->out), qk_buf_len(&b->out),
                qk_buf_ptr(&b->out));
        abort();
    }
}

static void
finding(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_decode_v2: %s\n%s\n", what, detail ? detail : "");
    abort();
}

/* Appends every chunk's delta.content and delta.reasoning_content of @p out. */
static void
stream_texts(const struct qk_buf *out, struct qk_buf *content, struct qk_buf *reasoning)
{
    const char *p = qk_buf_ptr(out), *end = p + qk_buf_len(out);
    while (p && p < end) {
        const char *nl = strstr(p, "\n\n");
        if (!nl || strncmp(p, "data: ", 6) != 0)
            finding("output event is not one data line", p);
        cJSON *o = cJSON_ParseWithLength(p + 6, (size_t)(nl - p - 6));
        const cJSON *d =
            cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0), "delta");
        const cJSON *c = cJSON_GetObjectItem(d, "content");
        const cJSON *r = cJSON_GetObjectItem(d, "reasoning_content");
        if ((cJSON_IsString(c) && qk_buf_append_str(content, c->valuestring) != QK_OK) ||
            (cJSON_IsString(r) && qk_buf_append_str(reasoning, r->valuestring) != QK_OK))
            abort();
        cJSON_Delete(o);
        p = nl + 2;
    }
}

static const char *
or_empty(const struct qk_buf *b)
{
    return qk_buf_len(b) ? qk_buf_ptr(b) : "";
}

static void
check_assembled(const struct fuzz_split *s, const struct outcome *whole)
{
    struct qp_assemble_opts o = {.dialect = &qp_decoder_v2,
                                 .model = "qwen3-max",
                                 .id = "chatcmpl-req",
                                 .created_s = 1700000000,
                                 .reasoning = mode_of(s->flags)};
    char *body = fuzz_split_piece(s, FUZZ_WHOLE, 0, &(size_t){0});
    char *out = NULL, msg[256] = "";
    size_t out_len = 0;
    unsigned final_status = 0;
    enum qp_assemble_status st =
        qp_assemble_completion(&o, body, s->len, &out, &out_len, msg, sizeof msg, &final_status);
    free(body);
    bool clean = (whole->status == QP_SSE_OK || whole->status == QP_SSE_DONE) &&
                 whole->end == QP_SSE_END_CLEAN && whole->finish_rc == QK_OK;
    if (st != QP_ASSEMBLE_OK) {
        if (!msg[0])
            finding("a status other than OK without a message", NULL);
        if (clean && st != QP_ASSEMBLE_NOMEM)
            finding("a stream that ended cleanly is no assembled answer", msg);
        return;
    }
    cJSON *c = cJSON_ParseWithLength(out, out_len);
    const cJSON *m =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "choices"), 0), "message");
    const cJSON *content = cJSON_GetObjectItem(m, "content");
    const cJSON *reasoning = cJSON_GetObjectItem(m, "reasoning_content");
    if (!cJSON_IsObject(c) || !cJSON_IsString(content))
        finding("the assembled answer has no string content", out);
    if (clean && o.reasoning != QP_REASONING_INLINE) {
        struct qk_buf sc, sr;
        qk_buf_init(&sc, SIZE_MAX / 2);
        qk_buf_init(&sr, SIZE_MAX / 2);
        stream_texts(&whole->out, &sc, &sr);
        if (strcmp(or_empty(&sc), content->valuestring) != 0 ||
            strcmp(or_empty(&sr), cJSON_IsString(reasoning) ? reasoning->valuestring : "") != 0)
            finding("the stream and the assembled answer differ", out);
        qk_buf_free(&sc);
        qk_buf_free(&sr);
    }
    cJSON_Delete(c);
    free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_split s;
    if (!fuzz_split_decode(data, size, &s))
        return 0;
    struct outcome whole, cut, bytes;
    run(&s, FUZZ_WHOLE, &whole);
    run(&s, FUZZ_CUTS, &cut);
    compare("fuzzer's cut points", &whole, &cut);
    run(&s, FUZZ_BYTES, &bytes);
    compare("one byte per read", &whole, &bytes);
    check_assembled(&s, &whole);
    qk_buf_free(&whole.out);
    qk_buf_free(&cut.out);
    qk_buf_free(&bytes.out);
    return 0;
}
