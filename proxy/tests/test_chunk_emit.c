/* Unit tests: the OpenAI chunk emitter (chunk_emit.c), and the dialect seam: a second
 * decoder behind qp_sse_norm_new_for() reaches the caller through the same framing and
 * emitter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "chunk_emit.h"
#include "sse_norm.h"

static struct qp_chunk_emitter *
emitter(void)
{
    struct qp_chunk_emit_opts o = {.model = "req-model", .id = "chatcmpl-req", .created = 17};
    struct qp_chunk_emitter *e = qp_chunk_emitter_new(&o);
    assert_non_null(e);
    return e;
}

static struct qp_delta
text_delta(const char *text)
{
    struct qp_delta d = {.text = text, .text_len = strlen(text)};
    return d;
}

/* The @p i-th `data:` event of @p out, parsed (caller deletes), or NULL for [DONE]. */
static cJSON *
event_at(const char *out, int i)
{
    const char *p = out;
    for (; i > 0; i--)
        p = strstr(p, "\n\n") + 2;
    assert_memory_equal(p, "data: ", 6);
    const char *end = strstr(p, "\n\n");
    if (end - p == 12 && memcmp(p + 6, "[DONE]", 6) == 0)
        return NULL;
    cJSON *o = cJSON_ParseWithLength(p + 6, (size_t)(end - p - 6));
    assert_non_null(o);
    return o;
}

static int
events_in(const char *out)
{
    int n = 0;
    for (const char *p = out; (p = strstr(p, "\n\n")); p += 2)
        n++;
    return n;
}

static const cJSON *
path(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItem(o, a);
    if (cJSON_IsArray(x))
        x = cJSON_GetArrayItem(x, 0);
    return b ? cJSON_GetObjectItem(x, b) : x;
}

/* The role on the first chunk only; the stream's first envelope on every chunk; nothing
 * for a delta without text or finish; usage on the finishing chunk; nothing after it. */
static void
chunks_carry_role_envelope_usage_and_one_finish(void **state)
{
    (void)state;
    struct qp_chunk_emitter *e = emitter();
    struct qk_buf out;
    qk_buf_init(&out, 1 << 16);
    struct qp_delta d = text_delta("");
    d.model = "up-model";
    d.id = "up-1";
    d.has_created = true;
    d.created_s = 1738000000;
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK); /* envelope, no chunk */
    assert_int_equal(qk_buf_len(&out), 0);
    d = text_delta("Hi");
    d.has_usage = true; /* not on a chunk that does not finish */
    d.prompt_tokens = 1;
    d.completion_tokens = 1;
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    d = text_delta(" there");
    d.model = "other"; /* the first chunk's envelope holds */
    d.finish_reason = "length";
    d.has_usage = true;
    d.prompt_tokens = 3;
    d.completion_tokens = 4;
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    d = text_delta("late");
    d.finish_reason = "stop";
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK); /* after the finish: dropped */
    assert_int_equal(qp_chunk_emit_count(e), 2);
    assert_int_equal(events_in(qk_buf_ptr(&out)), 2);
    for (int i = 0; i < 2; i++) {
        cJSON *o = event_at(qk_buf_ptr(&out), i);
        assert_string_equal(path(o, "id", NULL)->valuestring, "up-1");
        assert_string_equal(path(o, "model", NULL)->valuestring, "up-model");
        assert_string_equal(path(o, "object", NULL)->valuestring, "chat.completion.chunk");
        assert_int_equal(path(o, "created", NULL)->valuedouble, 1738000000);
        assert_int_equal(path(o, "choices", "index")->valuedouble, 0);
        const cJSON *delta = path(o, "choices", "delta");
        assert_string_equal(cJSON_GetObjectItem(delta, "content")->valuestring,
                            i == 0 ? "Hi" : " there");
        assert_int_equal(cJSON_GetObjectItem(delta, "role") != NULL, i == 0);
        const cJSON *fin = path(o, "choices", "finish_reason");
        const cJSON *usage = cJSON_GetObjectItem(o, "usage");
        if (i == 0) {
            assert_true(cJSON_IsNull(fin));
            assert_null(usage);
        } else {
            assert_string_equal(fin->valuestring, "length");
            assert_int_equal(cJSON_GetObjectItem(usage, "prompt_tokens")->valuedouble, 3);
            assert_int_equal(cJSON_GetObjectItem(usage, "completion_tokens")->valuedouble, 4);
            assert_int_equal(cJSON_GetObjectItem(usage, "total_tokens")->valuedouble, 7);
        }
        cJSON_Delete(o);
    }
    /* Closing after a finish: only [DONE]. */
    qk_buf_reset(&out);
    assert_int_equal(qp_chunk_emit_close(e, &out), QK_OK);
    assert_string_equal(qk_buf_ptr(&out), "data: [DONE]\n\n");
    qk_buf_free(&out);
    qp_chunk_emitter_free(e);
}

/* A stream that never finished gets a "stop" chunk before [DONE]; a failed one an error
 * event alone. */
static void
close_fills_in_the_finish_and_error_is_one_event(void **state)
{
    (void)state;
    struct qp_chunk_emitter *e = emitter();
    struct qk_buf out;
    qk_buf_init(&out, 1 << 16);
    assert_int_equal(qp_chunk_emit_close(e, &out), QK_OK);
    assert_int_equal(events_in(qk_buf_ptr(&out)), 2);
    cJSON *o = event_at(qk_buf_ptr(&out), 0);
    assert_string_equal(path(o, "choices", "finish_reason")->valuestring, "stop");
    assert_string_equal(cJSON_GetObjectItem(path(o, "choices", "delta"), "content")->valuestring,
                        "");
    assert_string_equal(path(o, "model", NULL)->valuestring, "req-model");
    assert_string_equal(path(o, "id", NULL)->valuestring, "chatcmpl-req");
    assert_int_equal(path(o, "created", NULL)->valuedouble, 17);
    cJSON_Delete(o);
    assert_null(event_at(qk_buf_ptr(&out), 1));
    qk_buf_reset(&out);
    assert_int_equal(qp_chunk_emit_error("upstream went away", &out), QK_OK);
    assert_string_equal(qk_buf_ptr(&out),
                        "data: {\"error\":{\"message\":\"upstream went away\",\"type\":"
                        "\"upstream_error\",\"param\":null,\"code\":\"stream_interrupted\"}}\n\n");
    qk_buf_free(&out);
    qp_chunk_emitter_free(e);
}

/* stream_options.include_usage: `usage: null` on every chunk, then one chunk with no
 * choices and the latest counts (even counts sent after the finish) just before [DONE];
 * no usage chunk when the upstream gave no counts. Without it, the finishing chunk carries
 * the counts given so far. */
static void
include_usage_adds_a_usage_chunk_before_done(void **state)
{
    (void)state;
    struct qp_chunk_emit_opts o = {
        .model = "m", .id = "chatcmpl-u", .created = 9, .include_usage = true};
    struct qp_chunk_emitter *e = qp_chunk_emitter_new(&o);
    assert_non_null(e);
    struct qk_buf out;
    qk_buf_init(&out, 1 << 16);
    struct qp_delta d = text_delta("Hi");
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    d = text_delta("");
    d.finish_reason = "stop";
    d.has_usage = true;
    d.prompt_tokens = 2;
    d.completion_tokens = 5;
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    d = text_delta(""); /* a usage-only chunk after the finish: the counts still count */
    d.has_usage = true;
    d.prompt_tokens = 3;
    d.completion_tokens = 6;
    d.has_reasoning_tokens = true;
    d.reasoning_tokens = 1;
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    assert_int_equal(qp_chunk_emit_close(e, &out), QK_OK);
    assert_int_equal(events_in(qk_buf_ptr(&out)), 4);
    for (int i = 0; i < 2; i++) {
        cJSON *c = event_at(qk_buf_ptr(&out), i);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(c, "usage")));
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(c, "choices")), 1);
        cJSON_Delete(c);
    }
    cJSON *u = event_at(qk_buf_ptr(&out), 2);
    assert_string_equal(path(u, "id", NULL)->valuestring, "chatcmpl-u");
    assert_string_equal(path(u, "object", NULL)->valuestring, "chat.completion.chunk");
    assert_int_equal(path(u, "created", NULL)->valuedouble, 9);
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(u, "choices")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(u, "choices")), 0);
    const cJSON *usage = cJSON_GetObjectItem(u, "usage");
    assert_int_equal(cJSON_GetObjectItem(usage, "prompt_tokens")->valuedouble, 3);
    assert_int_equal(cJSON_GetObjectItem(usage, "completion_tokens")->valuedouble, 6);
    assert_int_equal(cJSON_GetObjectItem(usage, "total_tokens")->valuedouble, 9);
    assert_int_equal(path(usage, "completion_tokens_details", "reasoning_tokens")->valuedouble, 1);
    cJSON_Delete(u);
    assert_null(event_at(qk_buf_ptr(&out), 3));
    assert_int_equal(qp_chunk_emit_count(e), 3);
    qp_chunk_emitter_free(e);

    /* No counts from the upstream: the finish filled in, no usage chunk. */
    e = qp_chunk_emitter_new(&o);
    qk_buf_reset(&out);
    d = text_delta("x");
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    assert_int_equal(qp_chunk_emit_close(e, &out), QK_OK);
    assert_int_equal(events_in(qk_buf_ptr(&out)), 3);
    assert_null(event_at(qk_buf_ptr(&out), 2));
    qp_chunk_emitter_free(e);

    /* Not asked: counts given before the finish ride on the finishing chunk. */
    o.include_usage = false;
    e = qp_chunk_emitter_new(&o);
    qk_buf_reset(&out);
    d = text_delta("x");
    d.has_usage = true;
    d.prompt_tokens = 1;
    d.completion_tokens = 1;
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    d = text_delta("");
    d.finish_reason = "stop";
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    assert_int_equal(qp_chunk_emit_close(e, &out), QK_OK);
    assert_int_equal(events_in(qk_buf_ptr(&out)), 3);
    cJSON *first = event_at(qk_buf_ptr(&out), 0);
    assert_null(cJSON_GetObjectItem(first, "usage"));
    cJSON_Delete(first);
    cJSON *fin = event_at(qk_buf_ptr(&out), 1);
    assert_int_equal(path(fin, "usage", "total_tokens")->valuedouble, 2);
    cJSON_Delete(fin);
    qp_chunk_emitter_free(e);

    /* Not asked, and no finish from the upstream: the "stop" filled in carries the counts. */
    e = qp_chunk_emitter_new(&o);
    qk_buf_reset(&out);
    d = text_delta("x");
    d.has_usage = true;
    d.prompt_tokens = 4;
    d.completion_tokens = 1;
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    assert_int_equal(qp_chunk_emit_close(e, &out), QK_OK);
    assert_int_equal(events_in(qk_buf_ptr(&out)), 3);
    fin = event_at(qk_buf_ptr(&out), 1);
    assert_string_equal(path(fin, "choices", "finish_reason")->valuestring, "stop");
    assert_int_equal(path(fin, "usage", "total_tokens")->valuedouble, 5);
    cJSON_Delete(fin);
    qp_chunk_emitter_free(e);
    qk_buf_free(&out);
}

#ifdef QK_MUTANTS
/* The mutants reach the emitter through its options only. */
static void
mutant_options_change_the_chunks(void **state)
{
    (void)state;
    struct qp_chunk_emit_opts o = {
        .model = "m", .id = "i", .created = 5, .mutant = QP_MUT_raw_chunks};
    struct qp_chunk_emitter *e = qp_chunk_emitter_new(&o);
    struct qk_buf out;
    qk_buf_init(&out, 1 << 16);
    struct qp_delta d = text_delta("x");
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    assert_int_equal(qp_chunk_emit_close(e, &out), QK_OK); /* no finish filled in */
    assert_non_null(strstr(qk_buf_ptr(&out), "\"created\":5000,"));
    assert_null(strstr(qk_buf_ptr(&out), "\"stop\""));
    qp_chunk_emitter_free(e);
    o.mutant = QP_MUT_sse_extra_fields;
    e = qp_chunk_emitter_new(&o);
    qk_buf_reset(&out);
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    assert_memory_equal(qk_buf_ptr(&out), "event: message\nid: 1\ndata: {", 28);
    qp_chunk_emitter_free(e);
    qk_buf_free(&out);
}
#endif

/* A second dialect, for the seam: each event's data is "text:T", "end:stop", "fail:M" or
 * "eof"; anything else is not one of its events. */
struct toy {
    char text[64]; /* the delta's text, kept until the next event */
};

static void *
toy_new(const struct qp_decoder_opts *opts)
{
    (void)opts;
    return calloc(1, sizeof(struct toy));
}

static enum qp_decode_status
toy_event(void *state, const char *data, size_t len, struct qp_delta *d)
{
    struct toy *t = state;
    memset(d, 0, sizeof *d);
    d->text = "";
    if (len > 5 && len - 5 < sizeof t->text && memcmp(data, "text:", 5) == 0) {
        memcpy(t->text, data + 5, len - 5); /* the event's bytes are the framing's */
        d->text = t->text;
        d->text_len = len - 5;
        return QP_DECODE_CHUNK;
    }
    if (len == 8 && memcmp(data, "end:stop", 8) == 0) {
        d->finish_reason = "stop";
        return QP_DECODE_CHUNK;
    }
    if (len > 5 && memcmp(data, "fail:", 5) == 0) {
        d->failure = "toy failure";
        return QP_DECODE_FAILURE;
    }
    return len == 3 && memcmp(data, "eof", 3) == 0 ? QP_DECODE_DONE : QP_DECODE_BAD;
}

static void
toy_release(void *state)
{
    (void)state;
}

static const struct qp_decoder_ops toy_dialect = {
    .new = toy_new, .event = toy_event, .release = toy_release, .free = free};

static void
a_second_dialect_plugs_into_the_same_relay(void **state)
{
    (void)state;
    static const char up[] = ": hi\r\ndata: text:Hel\r\n\r\ndata: text:lo\r\n\r\n"
                             "data: end:stop\r\n\r\ndata: eof\r\n\r\ndata: text:after\n\n";
    struct qk_buf out;
    qk_buf_init(&out, 1 << 16);
    for (size_t cut = 0; cut < sizeof up; cut++) {
        struct qp_sse_norm *n = qp_sse_norm_new_for(&toy_dialect, false, "toy", "chatcmpl-t", 9);
        assert_non_null(n);
        qk_buf_reset(&out);
        enum qp_sse_status st = qp_sse_norm_feed(n, up, cut, &out);
        if (st == QP_SSE_OK)
            st = qp_sse_norm_feed(n, up + cut, sizeof up - 1 - cut, &out);
        assert_int_equal(st, QP_SSE_DONE);
        assert_int_equal(qp_sse_norm_progress(n), 5);
        assert_int_equal(qp_sse_norm_finish(n, true, NULL, &out), QK_OK);
        assert_int_equal(qp_sse_norm_events(n), 3);
        assert_int_equal(events_in(qk_buf_ptr(&out)), 4);
        cJSON *o = event_at(qk_buf_ptr(&out), 1);
        assert_string_equal(
            cJSON_GetObjectItem(path(o, "choices", "delta"), "content")->valuestring, "lo");
        assert_string_equal(path(o, "model", NULL)->valuestring, "toy");
        cJSON_Delete(o);
        assert_null(event_at(qk_buf_ptr(&out), 3));
        qp_sse_norm_free(n);
    }
    struct qp_sse_norm *n = qp_sse_norm_new_for(&toy_dialect, false, "toy", "chatcmpl-t", 9);
    qk_buf_reset(&out);
    assert_int_equal(qp_sse_norm_feed(n, "data: fail:x\n\n", 14, &out), QP_SSE_INBAND_ERROR);
    assert_string_equal(qp_sse_norm_inband_message(n), "toy failure");
    assert_int_equal(qk_buf_len(&out), 0);
    qp_sse_norm_free(n);
    n = qp_sse_norm_new_for(&toy_dialect, false, "toy", "chatcmpl-t", 9);
    assert_int_equal(qp_sse_norm_feed(n, "data: {}\n\n", 10, &out), QP_SSE_BAD_EVENT);
    qp_sse_norm_free(n);
    qk_buf_free(&out);
}

/* The exact bytes of a stream's chunks, numbers included: `created` as the request gave
 * it, then as the upstream's envelope changed it, printed as cJSON prints numbers. */
static void
chunks_are_byte_exact(void **state)
{
    (void)state;
    struct qp_chunk_emit_opts o = {.model = "m", .id = "chatcmpl-x", .created = 1738000000};
    struct qp_chunk_emitter *e = qp_chunk_emitter_new(&o);
    assert_non_null(e);
    struct qk_buf out;
    qk_buf_init(&out, 1 << 16);
    struct qp_delta d = text_delta("Hi \"you\"");
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    assert_string_equal(qk_buf_ptr(&out),
                        "data: {\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\","
                        "\"created\":1738000000,\"model\":\"m\",\"choices\":[{\"index\":0,"
                        "\"delta\":{\"role\":\"assistant\",\"content\":\"Hi \\\"you\\\"\"},"
                        "\"finish_reason\":null}]}\n\n");
    qp_chunk_emitter_free(e);

    e = qp_chunk_emitter_new(&o);
    assert_non_null(e);
    qk_buf_reset(&out);
    d = text_delta("a");
    d.has_created = true;
    d.created_s = 1738000000123; /* 13 digits: cJSON's %1.15g still prints every one */
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    d = text_delta("b");
    d.finish_reason = "stop";
    assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    assert_string_equal(qk_buf_ptr(&out),
                        "data: {\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\","
                        "\"created\":1738000000123,\"model\":\"m\",\"choices\":[{\"index\":0,"
                        "\"delta\":{\"role\":\"assistant\",\"content\":\"a\"},"
                        "\"finish_reason\":null}]}\n\n"
                        "data: {\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\","
                        "\"created\":1738000000123,\"model\":\"m\",\"choices\":[{\"index\":0,"
                        "\"delta\":{\"content\":\"b\"},\"finish_reason\":\"stop\"}]}\n\n");
    qp_chunk_emitter_free(e);
    qk_buf_free(&out);
}

/* A chunk that does not fit the caller's buffer leaves none of itself there. */
static void
a_chunk_too_big_leaves_the_buffer_as_it_was(void **state)
{
    (void)state;
    struct qp_chunk_emitter *e = emitter();
    struct qk_buf out;
    qk_buf_init(&out, 40); /* room for "data: " and part of the JSON, not the chunk */
    assert_int_equal(qk_buf_append_str(&out, "x"), QK_OK);
    struct qp_delta d = text_delta("hello");
    assert_int_not_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    assert_string_equal(qk_buf_ptr(&out), "x");
    qp_chunk_emitter_free(e);
    qk_buf_free(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chunks_carry_role_envelope_usage_and_one_finish),
        cmocka_unit_test(close_fills_in_the_finish_and_error_is_one_event),
        cmocka_unit_test(include_usage_adds_a_usage_chunk_before_done),
        cmocka_unit_test(chunks_are_byte_exact),
        cmocka_unit_test(a_chunk_too_big_leaves_the_buffer_as_it_was),
#ifdef QK_MUTANTS
        cmocka_unit_test(mutant_options_change_the_chunks),
#endif
        cmocka_unit_test(a_second_dialect_plugs_into_the_same_relay),
    };
    return cmocka_run_group_tests_name("proxy_chunk_emit", tests, NULL, NULL);
}
