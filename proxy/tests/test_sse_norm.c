/* Unit tests: the stream normalizer (sse_norm.c): cumulative and incremental
 * upstream text, repeats, UTF-8 cut at every byte, every line ending. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "sse_norm.h"

/* Upstream chunk event with content @p c (and optional finish_reason). */
static void
up_event(struct qk_buf *b, const char *c, const char *finish, const char *eol, bool envelope)
{
    cJSON *o = cJSON_CreateObject();
    if (envelope) {
        cJSON_AddStringToObject(o, "id", "up-1");
        cJSON_AddStringToObject(o, "object", "chat.completion.chunk");
        cJSON_AddNumberToObject(o, "created", 1738000000123.0); /* milliseconds */
        cJSON_AddStringToObject(o, "model", "qwen-max-latest");
    }
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), ch);
    cJSON *d = cJSON_AddObjectToObject(ch, "delta");
    cJSON_AddStringToObject(d, "role", "assistant");
    cJSON_AddStringToObject(d, "content", c);
    if (finish) {
        cJSON_AddStringToObject(ch, "finish_reason", finish);
        cJSON *u = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(u, "input_tokens", 3);
        cJSON_AddNumberToObject(u, "output_tokens", 4);
    }
    char *s = cJSON_PrintUnformatted(o);
    assert_int_equal(qk_buf_appendf(b, "data: %s%s%s", s, eol, eol), QK_OK);
    cJSON_free(s);
    cJSON_Delete(o);
}

/* What the caller got: concatenated deltas plus shape facts. */
struct result {
    char text[1024];
    int chunks, finishes, done, errors, roles;
    bool last_has_finish, shapes_ok, only_data_lines;
    long long created;
};

static void
read_output(const char *out, struct result *r)
{
    memset(r, 0, sizeof *r);
    r->shapes_ok = r->only_data_lines = true;
    const char *p = out;
    while (*p) {
        const char *end = strstr(p, "\n\n");
        assert_non_null(end);
        if (strncmp(p, "data: ", 6) != 0 || memchr(p, '\n', (size_t)(end - p)))
            r->only_data_lines = false;
        char *data = strndup(p + 6, (size_t)(end - p - 6));
        if (strcmp(data, "[DONE]") == 0) {
            r->done++;
        } else {
            cJSON *o = cJSON_Parse(data);
            assert_non_null(o);
            if (cJSON_GetObjectItem(o, "error")) {
                r->errors++;
            } else {
                r->chunks++;
                cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
                cJSON *d = cJSON_GetObjectItem(ch, "delta");
                cJSON *fin = cJSON_GetObjectItem(ch, "finish_reason");
                r->shapes_ok &= cJSON_IsString(cJSON_GetObjectItem(o, "id")) &&
                                cJSON_IsString(cJSON_GetObjectItem(o, "model")) &&
                                cJSON_IsNumber(cJSON_GetObjectItem(o, "created")) &&
                                cJSON_IsNumber(cJSON_GetObjectItem(ch, "index")) && fin &&
                                strcmp(cJSON_GetObjectItem(o, "object")->valuestring,
                                       "chat.completion.chunk") == 0;
                r->created = (long long)cJSON_GetObjectItem(o, "created")->valuedouble;
                r->roles += cJSON_GetObjectItem(d, "role") != NULL;
                strcat(r->text, cJSON_GetObjectItem(d, "content")->valuestring);
                r->last_has_finish = cJSON_IsString(fin);
                r->finishes += cJSON_IsString(fin);
            }
            cJSON_Delete(o);
        }
        free(data);
        p = end + 2;
    }
}

/* Feeds @p up to a new normalizer cut at @p cut, then finishes. */
static void
run(const char *up, size_t cut, bool incremental, bool upstream_ok, struct result *r,
    enum qp_sse_status *first_status)
{
    struct qp_sse_norm *n = qp_sse_norm_new(incremental, "req-model", "chatcmpl-req", 1700000000);
    assert_non_null(n);
    struct qk_buf out;
    qk_buf_init(&out, 1 << 20);
    size_t len = strlen(up);
    enum qp_sse_status s1 = qp_sse_norm_feed(n, up, cut, &out);
    enum qp_sse_status s2 = s1 == QP_SSE_OK ? qp_sse_norm_feed(n, up + cut, len - cut, &out) : s1;
    if (first_status)
        *first_status = s1 != QP_SSE_OK ? s1 : s2;
    if (s2 == QP_SSE_OK || s2 == QP_SSE_DONE)
        assert_int_equal(qp_sse_norm_finish(n, upstream_ok, "cut", &out), QK_OK);
    read_output(qk_buf_ptr(&out), r);
    qk_buf_free(&out);
    qp_sse_norm_free(n);
}

static const char *const pieces[] = {"Hi", " ", "哈", "哈", "哈", " 🎉", "é!"};
#define N_PIECES (sizeof pieces / sizeof pieces[0])
static const char full[] = "Hi 哈哈哈 🎉é!";

static char *
upstream(bool cumulative, bool final_repeat, const char *eol, bool done, bool finish, bool envelope,
         bool comments)
{
    struct qk_buf b, text;
    qk_buf_init(&b, 1 << 20);
    qk_buf_init(&text, 4096);
    for (size_t i = 0; i < N_PIECES; i++) {
        assert_int_equal(qk_buf_append_str(&text, pieces[i]), QK_OK);
        if (comments)
            assert_int_equal(qk_buf_appendf(&b, ": keep-alive%s", eol), QK_OK);
        bool last = i + 1 == N_PIECES && !final_repeat;
        up_event(&b, cumulative ? qk_buf_ptr(&text) : pieces[i], last && finish ? "stop" : NULL,
                 eol, envelope);
    }
    if (final_repeat)
        up_event(&b, full, finish ? "stop" : NULL, eol, envelope);
    if (done)
        assert_int_equal(qk_buf_appendf(&b, "data: [DONE]%s%s", eol, eol), QK_OK);
    qk_buf_free(&text);
    return qk_buf_take(&b, NULL);
}

static void
exact_text_in_every_mode_framing_and_split(void **state)
{
    (void)state;
    static const char *const eols[] = {"\n", "\r\n", "\r"};
    for (int cum = 0; cum < 2; cum++)
        for (int rep = 0; rep < 2; rep++)
            for (int e = 0; e < 3; e++) {
                char *up = upstream(cum, rep, eols[e], true, true, true, e == 1);
                size_t len = strlen(up);
                /* Every byte offset: cuts inside multi-byte characters, inside
                 * CRLF pairs, inside "data:" and inside JSON. */
                for (size_t cut = 0; cut <= len; cut++) {
                    struct result r;
                    run(up, cut, !cum, true, &r, NULL);
                    if (strcmp(r.text, full) != 0)
                        fail_msg("cum=%d rep=%d eol=%d cut=%zu: got '%s'", cum, rep, e, cut,
                                 r.text);
                    assert_int_equal(r.done, 1);
                    assert_int_equal(r.finishes, 1);
                    assert_true(r.last_has_finish);
                    assert_true(r.shapes_ok);
                    assert_true(r.only_data_lines);
                    assert_int_equal(r.roles, 1);
                    assert_int_equal(r.created, 1738000000); /* ms turned into seconds */
                }
                free(up);
            }
}

static void
upstream_ignoring_incremental_flag_is_relayed_exactly(void **state)
{
    (void)state;
    char *up = upstream(true, false, "\n", true, true, true, false);
    struct result r;
    run(up, 0, true /* asked for incremental */, true, &r, NULL);
    assert_string_equal(r.text, full);
    free(up);
    /* Genuine repeated incremental pieces stay repeated. */
    static const char rep[] = "data: {\"choices\":[{\"delta\":{\"content\":\"哈\"}}]}\n\n"
                              "data: {\"choices\":[{\"delta\":{\"content\":\"哈\"}}]}\n\n"
                              "data: {\"choices\":[{\"delta\":{\"content\":\"哈\"}}]}\n\n";
    run(rep, 0, true, true, &r, NULL);
    assert_string_equal(r.text, "哈哈哈");
}

static void
missing_envelope_finish_and_done_are_filled_in(void **state)
{
    (void)state;
    char *up = upstream(true, false, "\n", false, false, false, false);
    struct result r;
    run(up, 5, false, true, &r, NULL);
    assert_string_equal(r.text, full);
    assert_true(r.shapes_ok);
    assert_true(r.last_has_finish);
    assert_int_equal(r.finishes, 1);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.created, 1700000000);
    free(up);
}

static void
interrupted_stream_ends_with_one_error_and_no_done(void **state)
{
    (void)state;
    char *up = upstream(true, false, "\n", false, false, true, false);
    struct result r;
    run(up, 3, false, false /* transfer failed */, &r, NULL);
    assert_int_equal(r.errors, 1);
    assert_int_equal(r.done, 0);
    assert_int_equal(r.finishes, 0);
    free(up);
}

static void
inband_failure_payload_is_reported_before_output(void **state)
{
    (void)state;
    static const char *const payloads[] = {
        "data: {\"ret\":[\"FAIL_SYS_USER_VALIDATE\",\"RGV587_ERROR::SM\"],\"data\":{}}\n\n",
        "data: {\"success\":false,\"data\":{\"code\":\"RateLimited\",\"details\":\"x\"}}\n\n",
    };
    for (int i = 0; i < 2; i++) {
        struct qp_sse_norm *n = qp_sse_norm_new(false, "m", "id", 1);
        struct qk_buf out;
        qk_buf_init(&out, 4096);
        assert_int_equal(qp_sse_norm_feed(n, payloads[i], strlen(payloads[i]), &out),
                         QP_SSE_INBAND_ERROR);
        assert_int_equal(qk_buf_len(&out), 0);
        assert_int_equal(qp_sse_norm_events(n), 0);
        assert_true(strlen(qp_sse_norm_inband_message(n)) > 0);
        qk_buf_free(&out);
        qp_sse_norm_free(n);
    }
}

static void
garbage_event_is_reported(void **state)
{
    (void)state;
    struct qp_sse_norm *n = qp_sse_norm_new(false, "m", "id", 1);
    struct qk_buf out;
    qk_buf_init(&out, 4096);
    assert_int_equal(qp_sse_norm_feed(n, "data: <html>\n\n", 14, &out), QP_SSE_BAD_EVENT);
    qk_buf_free(&out);
    qp_sse_norm_free(n);
}

/* An answer is not capped as a whole: incremental pieces flow past 16 MiB (the normalizer
 * keeps a bounded view of the text), while one event over 16 MiB is refused rather than
 * held without bound. */
static void
event_over_the_cap_is_refused_but_long_answers_flow(void **state)
{
    (void)state;
    const size_t piece = 1024 * 1024;
    char *content = malloc(17 * piece + 1);
    assert_non_null(content);
    struct qp_sse_norm *n = qp_sse_norm_new(true, "m", "id", 1);
    struct qk_buf in, out;
    qk_buf_init(&in, SIZE_MAX / 2);
    qk_buf_init(&out, SIZE_MAX / 2);
    for (int i = 0; i < 20; i++) {
        /* A different letter per piece, so no piece looks cumulative. */
        memset(content, 'a' + i, piece);
        content[piece] = '\0';
        qk_buf_reset(&in);
        up_event(&in, content, NULL, "\n", true);
        qk_buf_reset(&out);
        assert_int_equal(qp_sse_norm_feed(n, qk_buf_ptr(&in), qk_buf_len(&in), &out), QP_SSE_OK);
        assert_true(qk_buf_len(&out) > piece);
    }
    memset(content, 'z', 17 * piece);
    content[17 * piece] = '\0';
    qk_buf_reset(&in);
    up_event(&in, content, NULL, "\n", true);
    assert_int_equal(qp_sse_norm_feed(n, qk_buf_ptr(&in), qk_buf_len(&in), &out), QP_SSE_NOMEM);
    qk_buf_free(&in);
    qk_buf_free(&out);
    qp_sse_norm_free(n);
    free(content);
}

/* Relays @p up (fed in writes of @p step bytes) and @return the caller's text (static). */
static const char *
relay_text(const char *up, size_t step, bool incremental)
{
    static char text[64 * 1024];
    struct qp_sse_norm *n = qp_sse_norm_new(incremental, "m", "id", 1);
    struct qk_buf out;
    qk_buf_init(&out, SIZE_MAX / 2);
    size_t len = strlen(up);
    for (size_t i = 0; i < len; i += step)
        assert_int_equal(qp_sse_norm_feed(n, up + i, len - i < step ? len - i : step, &out),
                         QP_SSE_OK);
    assert_int_equal(qp_sse_norm_finish(n, true, NULL, &out), QK_OK);
    text[0] = '\0';
    const char *p = qk_buf_ptr(&out);
    while ((p = strstr(p, "data: {"))) {
        const char *end = strstr(p, "\n\n");
        cJSON *o = cJSON_ParseWithLength(p + 6, (size_t)(end - p - 6));
        const cJSON *c = cJSON_GetObjectItem(
            cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0), "delta"),
            "content");
        if (cJSON_IsString(c))
            strcat(text, c->valuestring);
        cJSON_Delete(o);
        p = end;
    }
    qk_buf_free(&out);
    qp_sse_norm_free(n);
    return text;
}

/* SSE-4 past the kept tail (4 KiB): a 20 KB answer streamed cumulative, incremental, and
 * cumulative although incremental was asked, is exact at several write sizes; a rewrite
 * inside the tail relays what follows the common prefix; one before it relays only what
 * goes past the text already sent. */
static void
dedup_is_exact_past_the_kept_tail(void **state)
{
    (void)state;
    enum { PIECES = 40, PIECE = 500 };
    static char pieces_[PIECES][PIECE + 1], whole[PIECES * PIECE + 1];
    struct qk_buf cum, inc;
    qk_buf_init(&cum, SIZE_MAX / 2);
    qk_buf_init(&inc, SIZE_MAX / 2);
    whole[0] = '\0';
    for (int i = 0; i < PIECES; i++) {
        for (int k = 0; k < PIECE; k++)
            pieces_[i][k] = (char)('a' + (i * 7 + k * 3) % 26);
        pieces_[i][PIECE] = '\0';
        strcat(whole, pieces_[i]);
        up_event(&cum, whole, NULL, "\n", true);
        up_event(&inc, pieces_[i], NULL, "\n", true);
    }
    up_event(&cum, whole, "stop", "\n", true); /* a final repeat adds nothing */
    static const size_t steps[] = {1, 7, 4096, 1 << 20};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        assert_string_equal(relay_text(qk_buf_ptr(&cum), steps[s], false), whole);
        assert_string_equal(relay_text(qk_buf_ptr(&inc), steps[s], true), whole);
        assert_string_equal(relay_text(qk_buf_ptr(&cum), steps[s], true), whole);
    }
    /* Rewrites: the last 10 bytes (inside the tail), then byte 100 (before it). */
    static char rewritten[PIECES * PIECE + 32];
    struct qk_buf up;
    qk_buf_init(&up, SIZE_MAX / 2);
    up_event(&up, whole, NULL, "\n", true);
    snprintf(rewritten, sizeof rewritten, "%.*sXXXXXXXXXXmore", PIECES * PIECE - 10, whole);
    up_event(&up, rewritten, NULL, "\n", true);
    char expect[PIECES * PIECE + 64];
    snprintf(expect, sizeof expect, "%sXXXXXXXXXXmore", whole);
    assert_string_equal(relay_text(qk_buf_ptr(&up), 1 << 20, false), expect);
    qk_buf_reset(&up);
    up_event(&up, whole, NULL, "\n", true);
    snprintf(rewritten, sizeof rewritten, "%s!", whole);
    rewritten[100] = '#';
    up_event(&up, rewritten, NULL, "\n", true);
    snprintf(expect, sizeof expect, "%s!", whole);
    assert_string_equal(relay_text(qk_buf_ptr(&up), 1 << 20, false), expect);
    qk_buf_free(&up);
    qk_buf_free(&cum);
    qk_buf_free(&inc);
}

/* Feeds @p up whole and finishes a clean transfer; @return what the normalizer made of
 * its end, with the output in @p r. */
static enum qp_sse_end
finish_clean(const char *up, size_t len, struct result *r)
{
    struct qp_sse_norm *n = qp_sse_norm_new(true, "m", "chatcmpl-x", 1700000000);
    assert_non_null(n);
    struct qk_buf out;
    qk_buf_init(&out, 1 << 20);
    assert_int_equal(qp_sse_norm_feed(n, up, len, &out), QP_SSE_OK);
    enum qp_sse_end end = qp_sse_norm_end(n);
    assert_int_equal(qp_sse_norm_finish(n, true, NULL, &out), QK_OK);
    read_output(qk_buf_ptr(&out), r);
    qk_buf_free(&out);
    qp_sse_norm_free(n);
    return end;
}

/* SSE-17: bytes without one event (gzip, an HTML page, junk lines) are not an empty
 * completion: the clean end gives one error event and no [DONE]. */
static void
stream_without_events_is_not_a_success(void **state)
{
    (void)state;
    static const char *const junk[] = {
        "\x1f\x8b\x08\x08\xd2\x9c\x6b\x65\x02\xff\xab\x56\x4a",
        "<!DOCTYPE html>\n<html><body>502 Bad Gateway</body></html>\n",
        "hello\nworld\n\n",
        ": only a comment\n\n",
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        struct result r;
        assert_int_equal(finish_clean(junk[i], strlen(junk[i]), &r), QP_SSE_END_NO_EVENT);
        assert_int_equal(r.errors, 1);
        assert_int_equal(r.done, 0);
        assert_int_equal(r.chunks, 0);
    }
}

/* SSE-17: a last event without its blank line is cut, whatever was before it, at every
 * split of its bytes; complete events before it are relayed. */
static void
cut_last_event_is_not_a_success(void **state)
{
    (void)state;
    static const char good[] = "data: {\"choices\":[{\"delta\":{\"content\":\"one\"}}]}\n\n";
    static const char cut[] = "data: {\"choices\":[{\"delta\":{\"content\":\"two\"}}]}";
    char up[256];
    snprintf(up, sizeof up, "%s%s", good, cut);
    for (size_t end = strlen(good) + 1; end <= strlen(up); end++) {
        struct result r;
        assert_int_equal(finish_clean(up, end, &r), QP_SSE_END_CUT);
        assert_string_equal(r.text, "one");
        assert_int_equal(r.errors, 1);
        assert_int_equal(r.done, 0);
    }
    /* The same with its blank line, or with [DONE] after it, is clean. */
    snprintf(up, sizeof up, "%s%s\n\n", good, cut);
    struct result r;
    assert_int_equal(finish_clean(up, strlen(up), &r), QP_SSE_END_CLEAN);
    assert_string_equal(r.text, "onetwo");
    assert_int_equal(r.done, 1);
    assert_int_equal(r.errors, 0);
}

/* SSE-10: only complete events and comment lines are progress; a trickle of bytes that
 * completes neither is not. */
static void
progress_counts_events_and_comments_not_bytes(void **state)
{
    (void)state;
    static const char ev[] = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";
    struct qp_sse_norm *n = qp_sse_norm_new(true, "m", "id", 1);
    struct qk_buf out;
    qk_buf_init(&out, 4096);
    for (size_t i = 0; i + 1 < strlen(ev); i++) {
        assert_int_equal(qp_sse_norm_feed(n, ev + i, 1, &out), QP_SSE_OK);
        assert_int_equal(qp_sse_norm_progress(n), 0);
    }
    assert_int_equal(qp_sse_norm_feed(n, "\n", 1, &out), QP_SSE_OK);
    assert_int_equal(qp_sse_norm_progress(n), 1);
    assert_int_equal(qp_sse_norm_feed(n, ": ping", 6, &out), QP_SSE_OK);
    assert_int_equal(qp_sse_norm_progress(n), 1);
    assert_int_equal(qp_sse_norm_feed(n, "\n", 1, &out), QP_SSE_OK);
    assert_int_equal(qp_sse_norm_progress(n), 2);
    assert_int_equal(qp_sse_norm_feed(n, "\n\n\nevent: x\n", 11, &out), QP_SSE_OK);
    assert_int_equal(qp_sse_norm_progress(n), 2);
    qk_buf_free(&out);
    qp_sse_norm_free(n);
}

/* ROBUST-1: out-of-range numbers from the upstream (created 1e999, a huge index, token
 * counts that overflow) are replaced, never cast: the output is valid JSON with finite
 * numbers, created is the fallback. Under UBSan a cast of inf or NaN aborts. */
static void
out_of_range_numbers_are_replaced(void **state)
{
    (void)state;
    static const char *const ups[] = {
        "data: {\"created\":1e999,\"choices\":[{\"index\":1e999,\"delta\":{\"content\":\"a\"},"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"input_tokens\":1e999,"
        "\"output_tokens\":-1e999}}\n\n",
        "data: {\"created\":-1e999,\"choices\":[{\"index\":-1e999,\"delta\":{\"content\":\"a\"},"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"input_tokens\":-5,\"output_tokens\":1e300}}\n\n",
        "data: {\"created\":1e300,\"choices\":[{\"delta\":{\"content\":\"a\"},"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}\n\n",
    };
    for (size_t i = 0; i < sizeof ups / sizeof ups[0]; i++) {
        struct result r;
        struct qp_sse_norm *n = qp_sse_norm_new(true, "m", "chatcmpl-x", 1700000000);
        struct qk_buf out;
        qk_buf_init(&out, 1 << 20);
        assert_int_equal(qp_sse_norm_feed(n, ups[i], strlen(ups[i]), &out), QP_SSE_OK);
        assert_int_equal(qp_sse_norm_finish(n, true, NULL, &out), QK_OK);
        assert_null(strstr(qk_buf_ptr(&out), "_tokens\":null"));
        read_output(qk_buf_ptr(&out), &r);
        assert_string_equal(r.text, "a");
        assert_int_equal(r.created, 1700000000);
        assert_true(r.shapes_ok);
        if (i == 2) /* sane counts are kept */
            assert_non_null(strstr(qk_buf_ptr(&out), "\"total_tokens\":7"));
        qk_buf_free(&out);
        qp_sse_norm_free(n);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_text_in_every_mode_framing_and_split),
        cmocka_unit_test(upstream_ignoring_incremental_flag_is_relayed_exactly),
        cmocka_unit_test(missing_envelope_finish_and_done_are_filled_in),
        cmocka_unit_test(interrupted_stream_ends_with_one_error_and_no_done),
        cmocka_unit_test(inband_failure_payload_is_reported_before_output),
        cmocka_unit_test(garbage_event_is_reported),
        cmocka_unit_test(event_over_the_cap_is_refused_but_long_answers_flow),
        cmocka_unit_test(dedup_is_exact_past_the_kept_tail),
        cmocka_unit_test(stream_without_events_is_not_a_success),
        cmocka_unit_test(cut_last_event_is_not_a_success),
        cmocka_unit_test(progress_counts_events_and_comments_not_bytes),
        cmocka_unit_test(out_of_range_numbers_are_replaced),
    };
    return cmocka_run_group_tests_name("proxy_sse_norm", tests, NULL, NULL);
}
