/* Unit tests: SSE framing (sse_frame.c): every line ending, comments, multi-line data and
 * other fields, at every split of the bytes into two or three reads; the end judgement
 * (SSE-17), progress (SSE-10) and the caps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sse_frame.h"

static struct qp_sse_frame *
frame(size_t max_bytes)
{
    struct qp_sse_frame_opts o = {.max_bytes = max_bytes};
    struct qp_sse_frame *f = qp_sse_frame_new(&o);
    assert_non_null(f);
    return f;
}

/* Reads one piece, appending each event's data to @p log as "[data]".
 * @return the last step (MORE, or NOMEM). */
static enum qp_sse_frame_step
read_piece(struct qp_sse_frame *f, const char *p, size_t len, struct qk_buf *log)
{
    for (;;) {
        struct qp_sse_event ev;
        size_t before = len;
        enum qp_sse_frame_step step = qp_sse_frame_next(f, &p, &len, &ev);
        if (step != QP_SSE_FRAME_EVENT)
            return step;
        assert_true(len < before); /* an event consumes at least its blank line */
        assert_int_equal(qk_buf_appendf(log, "[%.*s]", (int)ev.len, ev.data), QK_OK);
    }
}

/* The bytes cut at @p a and @p b (a <= b): what the events were, the progress and end. */
static void
read_split(const char *s, size_t a, size_t b, struct qk_buf *log, size_t *progress,
           enum qp_sse_end *end)
{
    struct qp_sse_frame *f = frame(1 << 20);
    size_t len = strlen(s);
    qk_buf_reset(log);
    assert_int_equal(read_piece(f, s, a, log), QP_SSE_FRAME_MORE);
    assert_int_equal(read_piece(f, s + a, b - a, log), QP_SSE_FRAME_MORE);
    assert_int_equal(read_piece(f, s + b, len - b, log), QP_SSE_FRAME_MORE);
    *progress = qp_sse_frame_progress(f);
    *end = qp_sse_frame_end(f);
    qp_sse_frame_free(f);
}

/* One stream with every framing feature, written with each line ending. */
static char *
stream_with(const char *eol)
{
    static const char *const lines[] = {
        ": comment",
        "data: one",
        "", /* a comment, then an event */
        "data:two",
        "data:  x",
        "", /* no space; two spaces keep one */
        "event: e",
        "id: 7",
        "retry: 10", /* fields that are dropped */
        "data",
        "data: ",
        "", /* empty data lines */
        "junk line",
        "", /* no event: nothing dispatched */
        "data: 哈 🎉",
        "",
        "", /* UTF-8, then a second blank line */
        "data: {\"a\":1}",
        ":ping",
        "data: b",
        "", /* a comment inside an event */
    };
    struct qk_buf b;
    qk_buf_init(&b, 4096);
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        assert_int_equal(qk_buf_appendf(&b, "%s%s", lines[i], eol), QK_OK);
    return qk_buf_take(&b, NULL);
}

static const char expected_events[] = "[one][two\n x][\n][哈 🎉][{\"a\":1}\nb]";

/* WHATWG framing, whatever the line ending and however the bytes are split into reads. */
static void
events_are_the_same_at_every_split_and_line_ending(void **state)
{
    (void)state;
    static const char *const eols[] = {"\n", "\r\n", "\r"};
    struct qk_buf log;
    qk_buf_init(&log, 1 << 16);
    for (size_t e = 0; e < 3; e++) {
        char *s = stream_with(eols[e]);
        size_t len = strlen(s);
        for (size_t a = 0; a <= len; a++)
            for (size_t b = a; b <= len; b++) {
                size_t progress;
                enum qp_sse_end end;
                read_split(s, a, b, &log, &progress, &end);
                if (strcmp(qk_buf_ptr(&log), expected_events) != 0)
                    fail_msg("eol=%zu cuts=%zu,%zu: got %s", e, a, b, qk_buf_ptr(&log));
                assert_int_equal(progress, 5 + 2); /* five events, two comments */
                assert_int_equal(end, QP_SSE_END_CLEAN);
            }
        free(s);
    }
    qk_buf_free(&log);
}

/* A byte at a time, and bytes left after an event stay with the caller. */
static void
one_byte_reads_and_coalesced_events(void **state)
{
    (void)state;
    static const char s[] = "data: a\r\n\r\ndata: b\n\ndata: c\r\r";
    struct qp_sse_frame *f = frame(1 << 20);
    struct qk_buf log;
    qk_buf_init(&log, 4096);
    for (size_t i = 0; i < sizeof s - 1; i++)
        assert_int_equal(read_piece(f, s + i, 1, &log), QP_SSE_FRAME_MORE);
    assert_string_equal(qk_buf_ptr(&log), "[a][b][c]");
    qp_sse_frame_free(f);

    f = frame(1 << 20);
    const char *p = s;
    size_t len = sizeof s - 1;
    struct qp_sse_event ev;
    assert_int_equal(qp_sse_frame_next(f, &p, &len, &ev), QP_SSE_FRAME_EVENT);
    assert_int_equal(ev.len, 1);
    assert_memory_equal(ev.data, "a", 1);
    /* The event ends at the CR of its blank line; the LF after it is skipped next time. */
    assert_ptr_equal(p, s + strlen("data: a\r\n\r"));
    assert_int_equal(qp_sse_frame_next(f, &p, &len, &ev), QP_SSE_FRAME_EVENT);
    assert_memory_equal(ev.data, "b", 1);
    qp_sse_frame_release_event(f); /* given back early: the next call is still right */
    assert_int_equal(qp_sse_frame_next(f, &p, &len, &ev), QP_SSE_FRAME_EVENT);
    assert_memory_equal(ev.data, "c", 1);
    assert_int_equal(len, 0);
    assert_int_equal(qp_sse_frame_next(f, &p, &len, &ev), QP_SSE_FRAME_MORE);
    qp_sse_frame_free(f);
    qk_buf_free(&log);
}

/* SSE-17: no event at all, or a last event without its blank line, at every end point. */
static void
end_tells_clean_no_event_and_cut(void **state)
{
    (void)state;
    struct qk_buf log;
    qk_buf_init(&log, 4096);
    static const char *const no_event[] = {
        "",
        "\x1f\x8b\x08\x00",
        "<html><body>502</body></html>\n\n",
        ": only a comment\n\n",
        "event: x\nid: 1\n\n",
        "database\n\n",
        "hello\nworld\n\n",
    };
    for (size_t i = 0; i < sizeof no_event / sizeof no_event[0]; i++) {
        size_t progress;
        enum qp_sse_end end;
        read_split(no_event[i], 0, 0, &log, &progress, &end);
        assert_int_equal(end, QP_SSE_END_NO_EVENT);
    }
    /* Cut anywhere inside the second event ("d" alone is the start of a data line). */
    static const char two[] = "data: one\n\ndata: two\n\n";
    const size_t first = strlen("data: one\n\n");
    for (size_t stop = first + 1; stop < sizeof two - 1; stop++) {
        struct qp_sse_frame *f = frame(1 << 20);
        assert_int_equal(read_piece(f, two, stop, &log), QP_SSE_FRAME_MORE);
        assert_int_equal(qp_sse_frame_end(f), QP_SSE_END_CUT);
        qp_sse_frame_free(f);
    }
    /* Ended after the first event, or after a non-data line that follows it: clean. */
    static const char *const clean[] = {"data: one\n\n", "data: one\n\nevent: x", "data: a\n\n: c"};
    for (size_t i = 0; i < sizeof clean / sizeof clean[0]; i++) {
        size_t progress;
        enum qp_sse_end end;
        read_split(clean[i], 0, 0, &log, &progress, &end);
        assert_int_equal(end, QP_SSE_END_CLEAN);
    }
    qk_buf_free(&log);
}

/* SSE-10: complete events and comment lines are progress; a trickle is not. */
static void
progress_counts_events_and_comments(void **state)
{
    (void)state;
    struct qp_sse_frame *f = frame(1 << 20);
    struct qk_buf log;
    qk_buf_init(&log, 4096);
    static const char ev[] = "data: x\n";
    for (size_t i = 0; i < sizeof ev - 1; i++) {
        assert_int_equal(read_piece(f, ev + i, 1, &log), QP_SSE_FRAME_MORE);
        assert_int_equal(qp_sse_frame_progress(f), 0);
    }
    assert_int_equal(read_piece(f, "\n", 1, &log), QP_SSE_FRAME_MORE);
    assert_int_equal(qp_sse_frame_progress(f), 1);
    assert_int_equal(read_piece(f, ": ping", 6, &log), QP_SSE_FRAME_MORE);
    assert_int_equal(qp_sse_frame_progress(f), 1);
    assert_int_equal(read_piece(f, "\r", 1, &log), QP_SSE_FRAME_MORE);
    assert_int_equal(qp_sse_frame_progress(f), 2);
    assert_int_equal(read_piece(f, "\n\n\nevent: y\nretry: 1\n\n", 22, &log), QP_SSE_FRAME_MORE);
    assert_int_equal(qp_sse_frame_progress(f), 2);
    qp_sse_frame_free(f);
    qk_buf_free(&log);
}

/* A line or an event over max_bytes is refused; one that fits is read. */
static void
lines_and_events_over_the_cap_are_refused(void **state)
{
    (void)state;
    struct qk_buf log;
    qk_buf_init(&log, 4096);
    struct qp_sse_frame *f = frame(16);
    /* The event holds its first line whole, "data: " and LF included: 16 bytes. */
    assert_int_equal(read_piece(f, "data: 012345678\n\n", 17, &log), QP_SSE_FRAME_MORE);
    assert_string_equal(qk_buf_ptr(&log), "[012345678]");
    assert_int_equal(read_piece(f, "data: 0123456789A", 17, &log), QP_SSE_FRAME_NOMEM);
    qp_sse_frame_free(f);
    /* Every line fits, the event's data does not. */
    f = frame(16);
    assert_int_equal(read_piece(f, "data: 01234\ndata: 56789\n", 24, &log), QP_SSE_FRAME_NOMEM);
    qp_sse_frame_free(f);
    qk_buf_free(&log);
}

#ifdef QK_MUTANTS
/* The mutants reach the framing through its options only. */
static void
mutant_options_change_the_framing(void **state)
{
    (void)state;
    struct qk_buf log;
    qk_buf_init(&log, 4096);
    struct qp_sse_frame_opts lf_only = {.max_bytes = 1 << 20, .mutant = QP_MUT_lf_only_framing};
    struct qp_sse_frame *f = qp_sse_frame_new(&lf_only);
    assert_int_equal(read_piece(f, "data: a\r\rdata: b\n\n", 18, &log), QP_SSE_FRAME_MORE);
    assert_string_equal(qk_buf_ptr(&log), "[a\r\rdata: b]");
    qp_sse_frame_free(f);

    struct qk_buf shared;
    qk_buf_init(&shared, 1 << 20);
    struct qp_sse_frame_opts sh = {.max_bytes = 1 << 20, .shared_line = &shared};
    struct qp_sse_frame *a = qp_sse_frame_new(&sh), *b = qp_sse_frame_new(&sh);
    qk_buf_reset(&log);
    assert_int_equal(read_piece(a, "data: fr", 8, &log), QP_SSE_FRAME_MORE);
    assert_int_equal(read_piece(b, "om b\n\n", 6, &log), QP_SSE_FRAME_MORE);
    assert_string_equal(qk_buf_ptr(&log), "[from b]"); /* stream a's line ended in b */
    qp_sse_frame_free(a);
    qp_sse_frame_free(b);
    qk_buf_free(&shared);
    qk_buf_free(&log);
}
#endif

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(events_are_the_same_at_every_split_and_line_ending),
        cmocka_unit_test(one_byte_reads_and_coalesced_events),
        cmocka_unit_test(end_tells_clean_no_event_and_cut),
        cmocka_unit_test(progress_counts_events_and_comments),
        cmocka_unit_test(lines_and_events_over_the_cap_are_refused),
#ifdef QK_MUTANTS
        cmocka_unit_test(mutant_options_change_the_framing),
#endif
    };
    return cmocka_run_group_tests_name("proxy_sse_frame", tests, NULL, NULL);
}
