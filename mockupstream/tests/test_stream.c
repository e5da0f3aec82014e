/* Unit tests: stream plans (mock_stream.c) — the bytes and timing a streamed
 * answer is made of. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "mock_fixtures.h"
#include "mock_stream.h"
#include "qwenkit/buf.h"
#include "testkit.h"

static const char *const pieces[] = {"Hi", " ", "哈", "哈", "哈", " 🎉", "é!"};
static const struct mock_answer answer = {
    .pieces = pieces,
    .n_pieces = sizeof pieces / sizeof pieces[0],
    .model = "qwen-plus-latest",
    .id = "chatcmpl-test",
    .created = 1738000000,
    .input_tokens = 5,
    .finish = "stop",
};
static const char full_text[] = "Hi 哈哈哈 🎉é!";

/* What a reader of the stream sees, parsed from the plan's bytes. */
struct seen {
    char *contents[64];
    size_t n_chunks;
    size_t n_done;
    int finish_count; /* chunks with a non-null finish_reason */
    int last_has_finish;
    int usage_count;
    int envelope_count;
    int comments;
};

static char *
concat(const struct mock_plan *plan)
{
    struct qk_buf b;
    qk_buf_init(&b, 1 << 20);
    for (size_t i = 0; i < plan->count; i++)
        assert_int_equal(qk_buf_append(&b, plan->writes[i].data, plan->writes[i].len), QK_OK);
    return qk_buf_take(&b, NULL);
}

/* A deliberately simple reader for one known line ending. */
static void
read_events(const char *body, const char *eol, struct seen *s)
{
    memset(s, 0, sizeof *s);
    size_t eol_len = strlen(eol);
    const char *p = body;
    while (*p) {
        const char *end = strstr(p, eol);
        assert_non_null(end);
        size_t len = (size_t)(end - p);
        if (len >= 6 && strncmp(p, "data: ", 6) == 0) {
            char *data = strndup(p + 6, len - 6);
            if (strcmp(data, "[DONE]") == 0) {
                s->n_done++;
            } else {
                cJSON *o = cJSON_Parse(data);
                assert_non_null(o);
                cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
                cJSON *content =
                    cJSON_GetObjectItem(cJSON_GetObjectItem(choice, "delta"), "content");
                assert_true(cJSON_IsString(content));
                s->contents[s->n_chunks++] = strdup(content->valuestring);
                cJSON *fin = cJSON_GetObjectItem(choice, "finish_reason");
                s->last_has_finish = cJSON_IsString(fin);
                s->finish_count += cJSON_IsString(fin);
                s->usage_count += cJSON_GetObjectItem(o, "usage") != NULL;
                s->envelope_count +=
                    cJSON_GetObjectItem(o, "id") && cJSON_GetObjectItem(o, "created");
                cJSON_Delete(o);
            }
            free(data);
        } else if (len > 0 && p[0] == ':') {
            s->comments++;
        } else {
            assert_int_equal(len, 0); /* only data lines, comments and blank lines */
        }
        p = end + eol_len;
    }
}

static void
seen_free(struct seen *s)
{
    for (size_t i = 0; i < s->n_chunks; i++)
        free(s->contents[i]);
}

static struct mock_plan
build(const struct mock_stream_opts *o, bool cumulative)
{
    struct mock_plan plan;
    assert_int_equal(mock_plan_build(&answer, o, cumulative, &plan), QK_OK);
    return plan;
}

static void
cumulative_and_incremental_give_the_same_text(void **state)
{
    (void)state;
    struct mock_stream_opts o;
    mock_stream_opts_init(&o);
    struct mock_plan cum = build(&o, true), inc = build(&o, false);
    char *cb = concat(&cum), *ib = concat(&inc);
    struct seen c, i;
    read_events(cb, "\n", &c);
    read_events(ib, "\n", &i);
    assert_int_equal(c.n_chunks, answer.n_pieces);
    assert_int_equal(i.n_chunks, answer.n_pieces);
    /* Cumulative: every content extends the previous one; the last is the text. */
    for (size_t k = 1; k < c.n_chunks; k++)
        assert_memory_equal(c.contents[k], c.contents[k - 1], strlen(c.contents[k - 1]));
    assert_string_equal(c.contents[c.n_chunks - 1], full_text);
    /* Incremental: the pieces, repeats included, concatenate to the text. */
    struct qk_buf joined;
    qk_buf_init(&joined, 4096);
    for (size_t k = 0; k < i.n_chunks; k++)
        assert_int_equal(qk_buf_append_str(&joined, i.contents[k]), QK_OK);
    assert_string_equal(qk_buf_ptr(&joined), full_text);
    assert_string_equal(i.contents[3], "哈");
    assert_string_equal(i.contents[4], "哈");
    /* Defaults: finish_reason and usage on the last chunk only, then one [DONE]. */
    assert_int_equal(c.finish_count, 1);
    assert_true(c.last_has_finish);
    assert_int_equal(c.usage_count, 1);
    assert_int_equal(c.envelope_count, (int)c.n_chunks);
    assert_int_equal(c.n_done, 1);
    assert_int_equal(cum.end, MOCK_END_NORMAL);
    assert_int_equal(cum.count, answer.n_pieces + 1); /* one write per event */
    qk_buf_free(&joined);
    seen_free(&c);
    seen_free(&i);
    free(cb);
    free(ib);
    mock_plan_free(&cum);
    mock_plan_free(&inc);
}

static bool
valid_utf8(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = s[i] < 0x80 ? 1 : s[i] >= 0xF0 ? 4 : s[i] >= 0xE0 ? 3 : s[i] >= 0xC0 ? 2 : 0;
        if (n == 0 || i + n > len)
            return false;
        for (size_t k = 1; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += n;
    }
    return true;
}

static void
split_utf8_cuts_inside_characters_and_reassembles_exactly(void **state)
{
    (void)state;
    struct mock_stream_opts o;
    mock_stream_opts_init(&o);
    struct mock_plan whole = build(&o, false);
    o.split_utf8 = true;
    o.chunk_delay_ms = 7;
    struct mock_plan split = build(&o, false);
    assert_true(split.count > whole.count);
    int starts_inside = 0, events = 0;
    for (size_t i = 0; i < split.count; i++) {
        const struct mock_write *w = &split.writes[i];
        if ((unsigned char)w->data[0] >= 0x80 && ((unsigned char)w->data[0] & 0xC0) == 0x80) {
            starts_inside++;
            assert_int_equal(w->delay_ms, MOCK_SPLIT_WRITE_DELAY_MS);
        }
        events += w->events;
    }
    assert_true(starts_inside > 0);
    assert_int_equal(events, (int)answer.n_pieces + 1);
    char *a = concat(&whole), *b = concat(&split);
    assert_string_equal(a, b);
    assert_true(valid_utf8((const unsigned char *)b, strlen(b)));
    free(a);
    free(b);
    mock_plan_free(&whole);
    mock_plan_free(&split);
}

static void
line_endings_and_comments_follow_the_options(void **state)
{
    (void)state;
    static const struct {
        enum mock_eol eol;
        const char *str;
    } cases[] = {{MOCK_EOL_LF, "\n"}, {MOCK_EOL_CRLF, "\r\n"}, {MOCK_EOL_CR, "\r"}};
    for (size_t k = 0; k < 3; k++) {
        struct mock_stream_opts o;
        mock_stream_opts_init(&o);
        o.eol = cases[k].eol;
        o.comments = true;
        struct mock_plan plan = build(&o, true);
        char *body = concat(&plan);
        if (cases[k].eol != MOCK_EOL_CRLF)
            assert_null(strstr(body, "\r\n"));
        if (cases[k].eol == MOCK_EOL_CR)
            assert_null(strchr(body, '\n'));
        if (cases[k].eol == MOCK_EOL_LF)
            assert_null(strchr(body, '\r'));
        struct seen s;
        read_events(body, cases[k].str, &s);
        assert_int_equal(s.n_chunks, answer.n_pieces);
        assert_int_equal(s.comments, (int)answer.n_pieces);
        assert_int_equal(s.n_done, 1);
        seen_free(&s);
        free(body);
        mock_plan_free(&plan);
    }
}

static void
coalesce_groups_events_and_delays_fall_between_writes(void **state)
{
    (void)state;
    struct mock_stream_opts o;
    mock_stream_opts_init(&o);
    o.coalesce = 3;
    o.chunk_delay_ms = 40;
    struct mock_plan plan = build(&o, true); /* 7 chunks + [DONE] = 8 events */
    assert_int_equal(plan.count, 3);
    assert_int_equal(plan.writes[0].events, 3);
    assert_int_equal(plan.writes[2].events, 2);
    assert_int_equal(plan.writes[0].delay_ms, 0);
    assert_int_equal(plan.writes[1].delay_ms, 40);
    mock_plan_free(&plan);
    o.coalesce = -1;
    plan = build(&o, true);
    assert_int_equal(plan.count, 1);
    assert_int_equal(plan.writes[0].events, 8);
    mock_plan_free(&plan);
}

static void
truncate_and_stall_cut_the_stream_before_done(void **state)
{
    (void)state;
    struct mock_stream_opts o;
    mock_stream_opts_init(&o);
    o.truncate_after = 3;
    struct mock_plan plan = build(&o, true);
    assert_int_equal(plan.count, 3);
    assert_int_equal(plan.end, MOCK_END_CLOSE);
    char *body = concat(&plan);
    assert_null(strstr(body, "[DONE]"));
    free(body);
    mock_plan_free(&plan);

    mock_stream_opts_init(&o);
    o.stall_after = 2;
    o.stall_ms = 1234;
    plan = build(&o, true);
    assert_int_equal(plan.count, 2);
    assert_int_equal(plan.end, MOCK_END_STALL);
    assert_int_equal(plan.stall_ms, 1234);
    mock_plan_free(&plan);
}

static void
final_repeat_and_switches_shape_the_last_chunk(void **state)
{
    (void)state;
    struct mock_stream_opts o;
    mock_stream_opts_init(&o);
    o.final_repeat = true;
    struct mock_plan plan = build(&o, false);
    char *body = concat(&plan);
    struct seen s;
    read_events(body, "\n", &s);
    assert_int_equal(s.n_chunks, answer.n_pieces + 1);
    assert_string_equal(s.contents[s.n_chunks - 1], full_text);
    assert_int_equal(s.finish_count, 1);
    assert_true(s.last_has_finish);
    seen_free(&s);
    free(body);
    mock_plan_free(&plan);

    mock_stream_opts_init(&o);
    o.done = false;
    o.finish_reason = false;
    o.usage = false;
    o.envelope = false;
    plan = build(&o, true);
    body = concat(&plan);
    read_events(body, "\n", &s);
    assert_int_equal(s.n_done, 0);
    assert_int_equal(s.finish_count, 0);
    assert_int_equal(s.usage_count, 0);
    assert_int_equal(s.envelope_count, 0);
    assert_null(strstr(body, "\"object\""));
    seen_free(&s);
    free(body);
    mock_plan_free(&plan);
}

static void
chunks_option_resplits_at_character_boundaries(void **state)
{
    (void)state;
    for (int n = 1; n <= 12; n++) {
        struct mock_stream_opts o;
        mock_stream_opts_init(&o);
        o.chunks = n;
        struct mock_plan plan = build(&o, false);
        char *body = concat(&plan);
        struct seen s;
        read_events(body, "\n", &s);
        /* 10 characters in the text: never more pieces than characters. */
        assert_int_equal(s.n_chunks, (size_t)(n < 10 ? n : 10));
        struct qk_buf joined;
        qk_buf_init(&joined, 4096);
        for (size_t k = 0; k < s.n_chunks; k++) {
            assert_true(valid_utf8((const unsigned char *)s.contents[k], strlen(s.contents[k])));
            assert_true(strlen(s.contents[k]) > 0);
            assert_int_equal(qk_buf_append_str(&joined, s.contents[k]), QK_OK);
        }
        assert_string_equal(qk_buf_ptr(&joined), full_text);
        qk_buf_free(&joined);
        seen_free(&s);
        free(body);
        mock_plan_free(&plan);
    }
}

static void
piece_bytes_repeats_pieces_whole(void **state)
{
    (void)state;
    struct mock_stream_opts o;
    mock_stream_opts_init(&o);
    o.piece_bytes = 100;
    struct mock_plan plan = build(&o, false);
    char *body = concat(&plan);
    struct seen s;
    read_events(body, "\n", &s);
    assert_int_equal(s.n_chunks, answer.n_pieces);
    for (size_t k = 0; k < s.n_chunks; k++) {
        size_t len = strlen(s.contents[k]), plen = strlen(pieces[k]);
        assert_true(len >= 100 && len < 100 + plen);
        assert_int_equal(len % plen, 0);
        for (size_t off = 0; off < len; off += plen)
            assert_memory_equal(s.contents[k] + off, pieces[k], plen);
        assert_true(valid_utf8((const unsigned char *)s.contents[k], len));
    }
    seen_free(&s);
    free(body);
    mock_plan_free(&plan);
}

/* ---------- stream shapes with chunks that carry no text ---------- */

/* One chunk as a reader sees it, whatever its shape. */
struct any_chunk {
    int n_choices;    /* -1: no "choices" array */
    bool delta_empty; /* delta is {} */
    bool role;        /* delta.role is "assistant" */
    char *content;    /* delta.content, NULL when absent */
    char *finish;     /* finish_reason, NULL when null or absent */
    bool usage, envelope;
};

struct any_stream {
    struct any_chunk c[MOCK_ANSWER_MAX + 8];
    size_t n, n_done;
    int comments;
};

/* Parses @p body (events of one data line, ended by @p eol twice) chunk by chunk. */
static void
read_any(const char *body, const char *eol, struct any_stream *s)
{
    memset(s, 0, sizeof *s);
    size_t eol_len = strlen(eol);
    for (const char *p = body; *p;) {
        const char *end = strstr(p, eol);
        assert_non_null(end);
        size_t len = (size_t)(end - p);
        if (len >= 6 && strncmp(p, "data: ", 6) == 0) {
            char *data = strndup(p + 6, len - 6);
            assert_int_equal(s->n_done, 0); /* nothing after [DONE] */
            if (strcmp(data, "[DONE]") == 0) {
                s->n_done++;
            } else {
                cJSON *o = cJSON_Parse(data);
                assert_non_null(o);
                struct any_chunk *c = &s->c[s->n++];
                const cJSON *choices = cJSON_GetObjectItem(o, "choices");
                c->n_choices = cJSON_IsArray(choices) ? cJSON_GetArraySize(choices) : -1;
                const cJSON *ch = cJSON_GetArrayItem(choices, 0);
                const cJSON *delta = cJSON_GetObjectItem(ch, "delta");
                const cJSON *role = cJSON_GetObjectItem(delta, "role");
                const cJSON *content = cJSON_GetObjectItem(delta, "content");
                const cJSON *fin = cJSON_GetObjectItem(ch, "finish_reason");
                c->delta_empty = cJSON_IsObject(delta) && !delta->child;
                c->role = cJSON_IsString(role) && strcmp(role->valuestring, "assistant") == 0;
                c->content = cJSON_IsString(content) ? strdup(content->valuestring) : NULL;
                c->finish = cJSON_IsString(fin) ? strdup(fin->valuestring) : NULL;
                c->usage = cJSON_GetObjectItem(o, "usage") != NULL;
                c->envelope = cJSON_GetObjectItem(o, "id") && cJSON_GetObjectItem(o, "model");
                cJSON_Delete(o);
            }
            free(data);
        } else if (len > 0 && p[0] == ':') {
            s->comments++;
        } else {
            assert_int_equal(len, 0);
        }
        p = end + eol_len;
    }
}

static void
any_free(struct any_stream *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->c[i].content);
        free(s->c[i].finish);
    }
}

/* The text a caller ends up with: the pieces joined (incremental) or the last content
 * (cumulative, where every content extends the one before). Chunks without content add
 * nothing. Caller frees. */
static char *
caller_text(const struct any_stream *s, bool cumulative)
{
    struct qk_buf b;
    qk_buf_init(&b, 1 << 20);
    for (size_t i = 0; i < s->n; i++) {
        const char *c = s->c[i].content;
        if (!c)
            continue;
        if (cumulative) {
            assert_memory_equal(c, qk_buf_ptr(&b), qk_buf_len(&b));
            qk_buf_reset(&b);
        }
        assert_int_equal(qk_buf_append_str(&b, c), QK_OK);
    }
    return qk_buf_take(&b, NULL);
}

/* Builds the plan for @p a and reads it back. */
static void
build_any(const struct mock_answer *a, const struct mock_stream_opts *o, bool cumulative,
          struct any_stream *s)
{
    struct mock_plan plan;
    assert_int_equal(mock_plan_build(a, o, cumulative, &plan), QK_OK);
    char *body = concat(&plan);
    int events = 0;
    for (size_t i = 0; i < plan.count; i++)
        events += plan.writes[i].events;
    read_any(body, o->eol == MOCK_EOL_CRLF ? "\r\n" : o->eol == MOCK_EOL_CR ? "\r" : "\n", s);
    assert_int_equal((size_t)events, s->n + s->n_done);
    free(body);
    mock_plan_free(&plan);
}

static int
count_finish(const struct any_stream *s)
{
    int n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->c[i].finish != NULL;
    return n;
}

static int
count_usage(const struct any_stream *s)
{
    int n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->c[i].usage;
    return n;
}

static void
assert_text(const struct any_stream *s, bool cumulative)
{
    char *t = caller_text(s, cumulative);
    assert_string_equal(t, full_text);
    free(t);
}

/* final_empty_delta: the pieces carry no finish_reason; one last chunk with delta {}
 * carries it (and usage), then [DONE]. */
static void
final_empty_delta_finishes_on_an_empty_delta(void **state)
{
    (void)state;
    for (int cum = 0; cum < 2; cum++) {
        struct mock_stream_opts o;
        mock_stream_opts_init(&o);
        o.final_empty_delta = true;
        struct any_stream s;
        build_any(&answer, &o, cum, &s);
        assert_int_equal(s.n, answer.n_pieces + 1);
        for (size_t i = 0; i + 1 < s.n; i++) {
            assert_non_null(s.c[i].content);
            assert_null(s.c[i].finish);
            assert_false(s.c[i].usage);
        }
        const struct any_chunk *last = &s.c[s.n - 1];
        assert_int_equal(last->n_choices, 1);
        assert_true(last->delta_empty);
        assert_string_equal(last->finish, "stop");
        assert_true(last->usage);
        assert_true(last->envelope);
        assert_int_equal(s.n_done, 1);
        assert_text(&s, cum);
        any_free(&s);

        /* The answer's own finish reason; usage and [DONE] as configured. */
        struct mock_answer cut = answer;
        cut.finish = "length";
        o.usage = false;
        o.done = false;
        build_any(&cut, &o, cum, &s);
        assert_string_equal(s.c[s.n - 1].finish, "length");
        assert_true(s.c[s.n - 1].delta_empty);
        assert_int_equal(count_usage(&s), 0);
        assert_int_equal(s.n_done, 0);
        any_free(&s);

        /* With final_repeat, the repeat comes first and no longer finishes. */
        mock_stream_opts_init(&o);
        o.final_empty_delta = true;
        o.final_repeat = true;
        build_any(&answer, &o, cum, &s);
        assert_int_equal(s.n, answer.n_pieces + 2);
        assert_string_equal(s.c[s.n - 2].content, full_text);
        assert_null(s.c[s.n - 2].finish);
        assert_true(s.c[s.n - 1].delta_empty);
        assert_int_equal(count_finish(&s), 1);
        assert_int_equal(count_usage(&s), 1);
        any_free(&s);
    }
}

/* empty_choices: a "choices": [] chunk before the first piece, and usage on its own
 * "choices": [] chunk after the finishing one. */
static void
empty_choices_open_and_carry_usage(void **state)
{
    (void)state;
    for (int cum = 0; cum < 2; cum++) {
        struct mock_stream_opts o;
        mock_stream_opts_init(&o);
        o.empty_choices = true;
        struct any_stream s;
        build_any(&answer, &o, cum, &s);
        assert_int_equal(s.n, answer.n_pieces + 2);
        assert_int_equal(s.c[0].n_choices, 0);
        assert_true(s.c[0].envelope);
        assert_false(s.c[0].usage);
        const struct any_chunk *fin = &s.c[s.n - 2], *tail = &s.c[s.n - 1];
        assert_string_equal(fin->finish, "stop");
        assert_false(fin->usage);
        assert_non_null(fin->content);
        assert_int_equal(tail->n_choices, 0);
        assert_true(tail->usage);
        assert_true(tail->envelope);
        for (size_t i = 1; i + 1 < s.n; i++)
            assert_int_equal(s.c[i].n_choices, 1);
        assert_int_equal(count_finish(&s), 1);
        assert_int_equal(s.n_done, 1);
        assert_text(&s, cum);
        any_free(&s);

        /* Without usage there is nothing to send apart: only the opening chunk. */
        o.usage = false;
        o.envelope = false;
        build_any(&answer, &o, cum, &s);
        assert_int_equal(s.n, answer.n_pieces + 1);
        assert_int_equal(s.c[0].n_choices, 0);
        assert_false(s.c[0].envelope);
        assert_string_equal(s.c[s.n - 1].finish, "stop");
        assert_int_equal(count_usage(&s), 0);
        assert_text(&s, cum);
        any_free(&s);
    }
}

/* no_content_delta: a first chunk delta {"role":"assistant"} and one delta {} before the
 * middle piece; the text is the same. */
static void
no_content_delta_adds_deltas_without_content(void **state)
{
    (void)state;
    for (int cum = 0; cum < 2; cum++) {
        for (int chunks = 0; chunks <= 3; chunks++) {
            struct mock_stream_opts o;
            mock_stream_opts_init(&o);
            o.no_content_delta = true;
            o.chunks = chunks;
            size_t n_text = chunks ? (size_t)chunks : answer.n_pieces;
            struct any_stream s;
            build_any(&answer, &o, cum, &s);
            assert_int_equal(s.n, n_text + 2);
            assert_true(s.c[0].role);
            assert_null(s.c[0].content);
            assert_null(s.c[0].finish);
            size_t mid = 1 + n_text / 2; /* the role chunk, then n_text/2 pieces */
            for (size_t i = 1; i < s.n; i++) {
                assert_int_equal(s.c[i].delta_empty, i == mid);
                assert_int_equal(s.c[i].content == NULL, i == mid);
            }
            assert_string_equal(s.c[s.n - 1].finish, "stop");
            assert_true(s.c[s.n - 1].usage);
            assert_int_equal(count_finish(&s), 1);
            assert_text(&s, cum);
            any_free(&s);
        }
    }
}

/* All three at once, with the keys that cut, pace and frame the stream. */
static void
text_free_shapes_combine_with_the_other_keys(void **state)
{
    (void)state;
    for (int cum = 0; cum < 2; cum++) {
        struct mock_stream_opts o;
        mock_stream_opts_init(&o);
        o.final_empty_delta = o.empty_choices = o.no_content_delta = true;
        o.chunks = 3;
        o.split_utf8 = true;
        o.comments = true;
        o.coalesce = 2;
        o.eol = MOCK_EOL_CRLF;
        o.chunk_delay_ms = 9;
        struct any_stream s;
        build_any(&answer, &o, cum, &s);
        /* [] , role, 1 piece, {}, 2 pieces, {} finishing, [] usage */
        assert_int_equal(s.n, 3 + 5);
        assert_int_equal(s.comments, (int)s.n);
        assert_int_equal(s.c[0].n_choices, 0);
        assert_true(s.c[1].role && !s.c[1].content);
        assert_true(s.c[3].delta_empty);
        assert_true(s.c[6].delta_empty);
        assert_string_equal(s.c[6].finish, "stop");
        assert_int_equal(s.c[7].n_choices, 0);
        assert_true(s.c[7].usage);
        assert_int_equal(count_finish(&s), 1);
        assert_int_equal(count_usage(&s), 1);
        assert_int_equal(s.n_done, 1);
        assert_text(&s, cum);
        any_free(&s);
    }
    /* The extra chunks are events like any other for truncate_after. */
    struct mock_stream_opts o;
    mock_stream_opts_init(&o);
    o.empty_choices = o.no_content_delta = true;
    o.truncate_after = 2;
    struct mock_plan plan;
    assert_int_equal(mock_plan_build(&answer, &o, false, &plan), QK_OK);
    assert_int_equal(plan.end, MOCK_END_CLOSE);
    char *body = concat(&plan);
    struct any_stream s;
    read_any(body, "\n", &s);
    assert_int_equal(s.n, 2);
    assert_null(s.c[0].content);
    assert_null(s.c[1].content);
    any_free(&s);
    free(body);
    mock_plan_free(&plan);
}

static void
answers_are_deterministic_and_mix_scripts(void **state)
{
    (void)state;
    char s1[64], s2[64], s3[64];
    const char *p1[MOCK_ANSWER_MAX_PIECES], *p2[MOCK_ANSWER_MAX_PIECES],
        *p3[MOCK_ANSWER_MAX_PIECES];
    size_t n1 = mock_answer_pieces("qwen-max-latest", "hello", s1, sizeof s1, p1);
    size_t n2 = mock_answer_pieces("qwen-max-latest", "hello", s2, sizeof s2, p2);
    size_t n3 = mock_answer_pieces("qwen-max-latest", "other question", s3, sizeof s3, p3);
    assert_int_equal(n1, n2);
    for (size_t i = 0; i < n1; i++)
        assert_string_equal(p1[i], p2[i]);
    bool differs = n1 != n3;
    for (size_t i = 0; !differs && i < n1; i++)
        differs = strcmp(p1[i], p3[i]) != 0;
    assert_true(differs);
    /* Every template has multi-byte text and a piece that repeats its predecessor. */
    for (int k = 0; k < 40; k++) {
        char q[16], st[64];
        const char *p[MOCK_ANSWER_MAX_PIECES];
        snprintf(q, sizeof q, "q%d", k);
        size_t n = mock_answer_pieces("qwq-32b", q, st, sizeof st, p);
        bool multibyte = false, repeat = false;
        for (size_t i = 0; i < n; i++) {
            for (const char *c = p[i]; *c; c++)
                multibyte |= (unsigned char)*c >= 0x80;
            repeat |= i > 0 && strcmp(p[i], p[i - 1]) == 0;
        }
        assert_true(multibyte);
        assert_true(repeat);
    }
}

/* Resident memory of this process, in bytes. */
/* A plan whose events would carry more than MOCK_STREAM_MAX_BYTES of text (cumulative
 * deltas of a large text, re-sent in full by every event) is refused before anything is
 * serialised: the refusal costs about the text, not the gigabytes of the events. */
static void
plans_beyond_the_cap_are_refused_before_they_are_built(void **state)
{
    (void)state;
    struct mock_stream_opts o;
    mock_stream_opts_init(&o);
    o.piece_bytes = 2 * 1024 * 1024;
    o.chunks = MOCK_ANSWER_MAX;
    size_t before = mc_rss_bytes();
    struct mock_plan plan = {0};
    assert_int_equal(mock_plan_build(&answer, &o, true, &plan), QK_TOO_BIG);
    assert_int_equal(plan.count, 0);
    size_t after = mc_rss_bytes();
    print_message("refused plan: RSS %zu MB before, %zu MB after\n", before >> 20, after >> 20);
    assert_true(after < before + ((size_t)64 << 20));
    /* Incremental, the same text is within the cap and streams. */
    assert_int_equal(mock_plan_build(&answer, &o, false, &plan), QK_OK);
    size_t bytes = 0;
    for (size_t i = 0; i < plan.count; i++)
        bytes += plan.writes[i].len;
    assert_true(bytes > answer.n_pieces * (size_t)o.piece_bytes);
    assert_true(bytes < MOCK_STREAM_MAX_BYTES);
    mock_plan_free(&plan);
}

/* The scenario parser's bound on a step's text assumes no natural piece is longer than
 * MOCK_ANSWER_PIECE_MAX_BYTES. */
static void
natural_pieces_fit_the_documented_bound(void **state)
{
    (void)state;
    for (int k = 0; k < 300; k++) {
        char q[16], st[64];
        const char *p[MOCK_ANSWER_MAX_PIECES];
        snprintf(q, sizeof q, "m%d", k);
        size_t n = mock_answer_pieces(k % 2 ? "qwen-max-latest" : "qwq-32b", q, st, sizeof st, p);
        assert_true(n <= MOCK_ANSWER_MAX_PIECES);
        for (size_t i = 0; i < n; i++)
            assert_true(strlen(p[i]) <= MOCK_ANSWER_PIECE_MAX_BYTES);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cumulative_and_incremental_give_the_same_text),
        cmocka_unit_test(split_utf8_cuts_inside_characters_and_reassembles_exactly),
        cmocka_unit_test(line_endings_and_comments_follow_the_options),
        cmocka_unit_test(coalesce_groups_events_and_delays_fall_between_writes),
        cmocka_unit_test(truncate_and_stall_cut_the_stream_before_done),
        cmocka_unit_test(final_repeat_and_switches_shape_the_last_chunk),
        cmocka_unit_test(chunks_option_resplits_at_character_boundaries),
        cmocka_unit_test(piece_bytes_repeats_pieces_whole),
        cmocka_unit_test(final_empty_delta_finishes_on_an_empty_delta),
        cmocka_unit_test(empty_choices_open_and_carry_usage),
        cmocka_unit_test(no_content_delta_adds_deltas_without_content),
        cmocka_unit_test(text_free_shapes_combine_with_the_other_keys),
        cmocka_unit_test(answers_are_deterministic_and_mix_scripts),
        cmocka_unit_test(plans_beyond_the_cap_are_refused_before_they_are_built),
        cmocka_unit_test(natural_pieces_fit_the_documented_bound),
    };
    return cmocka_run_group_tests_name("mock_stream", tests, NULL, NULL);
}
