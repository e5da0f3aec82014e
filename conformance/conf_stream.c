/*
 * SSE-1..18: streamed completions, end to end.
 *
 * The caller's stream is read with libcurl and parsed only by the suite's own WHATWG
 * parser (conf_sse.c), which stamps every event with its receive time (qk_now_ms(), the
 * clock of the mock's journal). The judge is the parsed events plus the mock's journal:
 * attempts, the body the proxy sent upstream (did it ask for incremental_output?), the
 * send time of every upstream event (event_ms), client_gone and finished_ms.
 *
 * Text oracle: the mock's answer depends only on the model and the last message, so the
 * expected text is the mock's own non-stream answer to the same body, asked for directly.
 *
 * Only SSE-4 judges the cumulative-to-incremental conversion. The other tests ask for
 * "incremental_output": true and re-split the text into a few long pieces (stream.chunks),
 * none of which repeats the one before it, so that an SSE-4 defect (cumulative text relayed
 * as is, repeated pieces swallowed) does not fail them as well.
 */
#include "conf_groups.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "conf_sse.h"

enum {
    PACE_MS = 300,            /* SSE-2: upstream events this far apart */
    PACE_SLACK_MS = 150,      /* SSE-2: an event may arrive this long after the next is sent */
    GONE_LIMIT_MS = 1000,     /* SSE-9: upstream closed within this after the caller left */
    IDLE_EARLY_MS = 50,       /* SSE-10: a stall may end this much before the idle timeout */
    IDLE_LATE_MS = 1000,      /* SSE-10: ... and this much after it */
    STALL_TESTABLE_MS = 5000, /* longest idle timeout the stall tests wait for */
    CAP_TESTABLE_MS = 4000,   /* SSE-10: longest total cap the flowing-stream test outlasts */
    LARGE_STREAM_TIMEOUT_MS = 60000, /* SSE-11: reading its 6 MB stream, fast or slowly */
    DAY_S = 86400,                   /* SSE-12: `created` must be within a day of now (seconds) */
};

static const struct conf_profile *
profile(struct conf_ctx *ctx)
{
    return &conf_target(ctx)->profile;
}

/* ---- bodies and the text oracle ---- */

enum incremental { INC_ABSENT = -1, INC_FALSE = 0, INC_TRUE = 1 };

/* A chat body for @p message; @p stream and incremental_output as asked. */
static const char *
body_for(struct conf_ctx *ctx, const char *message, bool stream, enum incremental inc)
{
    static const char *const incremental_member[] = {
        [INC_FALSE] = "\"incremental_output\":false",
        [INC_TRUE] = "\"incremental_output\":true",
    };
    return conf_chat_body_of(ctx,
                             &(struct conf_chat){
                                 .text = message,
                                 .stream = stream ? CONF_CHAT_STREAM_TRUE : CONF_CHAT_STREAM_FALSE,
                                 .extra_json = inc == INC_ABSENT ? NULL : incremental_member[inc],
                             });
}

/* The upstream's full answer text for @p message, from the mock itself (either dialect). */
static const char *
expected_text(struct conf_ctx *ctx, const char *message)
{
    return conf_oracle_text(ctx, body_for(ctx, message, false, INC_ABSENT));
}

/* ---- reading the caller's stream ---- */

struct stream {
    struct conf_response resp;
    struct conf_sse_parser sse;
    size_t stop_after;      /* hang up once this many events arrived; 0: read to the end */
    int64_t pause_ms;       /* sleep after every piece of body (a slow reader) */
    int64_t first_pause_ms; /* sleep once after the first piece (a reader that stalls) */
    int64_t stopped_ms;     /* when the suite hung up; -1 when it did not */
    bool parser_failed;
};

static void
release_json(void *ptr)
{
    cJSON_Delete(ptr);
}

static void
release_stream(void *ptr)
{
    struct stream *st = ptr;
    conf_response_clear(&st->resp);
    conf_sse_free(&st->sse);
    free(st);
}

static bool
on_stream_bytes(void *arg, const char *bytes, size_t len)
{
    struct stream *st = arg;
    if (!conf_sse_feed(&st->sse, bytes, len, qk_now_ms())) {
        st->parser_failed = true;
        return false;
    }
    if (st->stop_after > 0 && st->sse.n_events >= st->stop_after) {
        st->stopped_ms = qk_now_ms();
        return false;
    }
    if (st->first_pause_ms > 0) {
        conf_sleep_ms(st->first_pause_ms);
        st->first_pause_ms = 0;
    }
    if (st->pause_ms > 0)
        conf_sleep_ms(st->pause_ms);
    return true;
}

struct stream_opts {
    size_t stop_after;
    int64_t pause_ms;
    int64_t first_pause_ms;
    long recv_buffer;
    int socket_rcvbuf;
    long timeout_ms;
};

/* POSTs @p body (a stream request) to the proxy and reads the answer to its end. */
static const struct stream *
open_stream_ex(struct conf_ctx *ctx, const char *token, const char *body,
               const struct stream_opts *o)
{
    struct stream *st = conf_keep(ctx, calloc(1, sizeof(*st)), release_stream);
    conf_sse_init(&st->sse);
    st->stop_after = o->stop_after;
    st->pause_ms = o->pause_ms;
    st->first_pause_ms = o->first_pause_ms;
    st->stopped_ms = -1;
    const char *headers[] = {conf_bearer(ctx, token), "Content-Type: application/json",
                             "Accept: text/event-stream", NULL};
    struct conf_request req = {
        .method = "POST",
        .url =
            conf_str(ctx, "%s%s", conf_target(ctx)->proxy_url, conf_api(ctx, "/chat/completions")),
        .headers = headers,
        .body = body,
        .body_len = strlen(body),
        .timeout_ms = o->timeout_ms,
        .on_body = on_stream_bytes,
        .on_body_arg = st,
        .recv_buffer = o->recv_buffer,
        .socket_rcvbuf = o->socket_rcvbuf,
    };
    conf_note_token(ctx, token);
    conf_note_request(ctx, "POST", conf_api(ctx, "/chat/completions"), body, strlen(body));
    enum qk_err rc = conf_http(&req, &st->resp);
    /* A stream the suite hung up on has no whole answer. */
    conf_note_answered(ctx, &st->resp, rc == QK_OK && st->stopped_ms < 0);
    conf_check(ctx, NULL, rc == QK_OK, "could not make the stream request: %s", qk_strerror(rc));
    conf_check(ctx, &st->resp, !st->parser_failed, "harness: the SSE parser ran out of memory");
    if (st->stopped_ms < 0)
        conf_sse_finish(&st->sse);
    return st;
}

static const struct stream *
open_stream(struct conf_ctx *ctx, const char *token, const char *body)
{
    struct stream_opts o = {0};
    return open_stream_ex(ctx, token, body, &o);
}

/* What the caller got, event by event. Indexes are event numbers, -1 when absent. */
struct relay {
    const struct stream *st;
    const cJSON *json;     /* one item per event: the parsed data, or null */
    const char *text;      /* every delta.content, concatenated */
    size_t chunks;         /* JSON objects that are not error events */
    size_t content_chunks; /* ... with a non-empty delta.content */
    size_t dones, errors, bad;
    long first_done, first_error, first_bad, last_chunk;
};

static bool
is_done(const struct conf_sse_event *ev)
{
    return ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0;
}

static const char *
chunk_content(const cJSON *chunk)
{
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(chunk, "choices"), 0);
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(choice, "delta");
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(delta, "content"));
}

static struct relay
analyse(struct conf_ctx *ctx, const struct stream *st)
{
    struct relay r = {
        .st = st, .first_done = -1, .first_error = -1, .first_bad = -1, .last_chunk = -1};
    cJSON *all = conf_keep(ctx, cJSON_CreateArray(), release_json);
    struct qk_buf text;
    qk_buf_init(&text, CONF_CLIENT_BODY_MAX);
    bool ok = true;
    for (size_t i = 0; i < st->sse.n_events; i++) {
        const struct conf_sse_event *ev = &st->sse.events[i];
        cJSON *item = NULL;
        if (is_done(ev)) {
            r.dones++;
            if (r.first_done < 0)
                r.first_done = (long)i;
        } else {
            item = cJSON_ParseWithLength(ev->data, ev->data_len);
            if (!cJSON_IsObject(item)) {
                cJSON_Delete(item);
                item = NULL;
                r.bad++;
                if (r.first_bad < 0)
                    r.first_bad = (long)i;
            } else if (cJSON_HasObjectItem(item, "error")) {
                r.errors++;
                if (r.first_error < 0)
                    r.first_error = (long)i;
            } else {
                const char *c = chunk_content(item);
                r.chunks++;
                r.last_chunk = (long)i;
                if (c && c[0]) {
                    r.content_chunks++;
                    ok = ok && qk_buf_append_str(&text, c) == QK_OK;
                }
            }
        }
        cJSON_AddItemToArray(all, item ? item : cJSON_CreateNull());
    }
    size_t len = 0;
    char *t = qk_buf_take(&text, &len);
    r.text = conf_keep(ctx, ok ? t : NULL, free);
    r.json = all;
    return r;
}

/* Prints the caller's events (evidence for a failure). */
static void
print_events(const struct stream *st)
{
    size_t n = st->sse.n_events;
    print_error(
        "    caller's stream: HTTP %ld, %zu event(s), %zu comment(s), %zu other field(s)%s\n",
        st->resp.status, n, st->sse.comments, st->sse.other_fields,
        st->sse.ended_inside_event ? ", ended inside an event" : "");
    for (size_t i = 0; i < n && i < 40; i++)
        print_error("      [%zu] +%lld ms %s: %.300s\n", i,
                    (long long)(st->sse.events[i].at_ms - st->resp.sent_ms), st->sse.events[i].type,
                    st->sse.events[i].data);
}

/* Fails the test, showing the caller's events, unless @p ok. */
#define stream_check(ctx, st, ok, ...)                                                             \
    do {                                                                                           \
        if (!(ok))                                                                                 \
            print_events(st);                                                                      \
        conf_check((ctx), &(st)->resp, (ok), __VA_ARGS__);                                         \
    } while (0)

static void
assert_stream_200(struct conf_ctx *ctx, const struct stream *st)
{
    stream_check(ctx, st, st->resp.status == 200, "expected a 200 stream, got HTTP %ld%s%s",
                 st->resp.status, st->resp.curl_code ? ": " : "", st->resp.error);
}

/* A completed stream: 200, read to its end, no error event. How it ends ([DONE] once,
 * last) is SSE-3's and SSE-12's business, checked there only. */
static void
assert_clean_end(struct conf_ctx *ctx, const struct relay *r)
{
    const struct stream *st = r->st;
    assert_stream_200(ctx, st);
    stream_check(ctx, st, st->resp.curl_code == 0, "the stream did not end cleanly: %s",
                 st->resp.error);
    stream_check(ctx, st, r->errors == 0, "a clean upstream stream gave an error event");
}

static void
assert_text(struct conf_ctx *ctx, const struct relay *r, const char *expected, const char *mode)
{
    expected = conf_expected_text(ctx, expected);
    bool same = r->text && strcmp(r->text, expected) == 0;
    if (!same) {
        print_error("    expected text: %s\n    caller's text: %s\n", expected,
                    r->text ? r->text : "(none)");
    }
    stream_check(ctx, r->st, same, "the caller's text differs from the upstream's (%s)", mode);
}

/* ---- the journal ---- */

/* @return entry @p i of @p token's journal, waiting for up to @p n entries to settle. */
static const cJSON *
journal_entry(struct conf_ctx *ctx, const char *token, size_t n, size_t i)
{
    size_t got = conf_attempts(ctx, token, n);
    conf_check(ctx, NULL, got > i, "the journal shows %zu upstream request(s)", got);
    return cJSON_GetArrayItem(conf_attempt_entries(ctx, conf_journal(ctx, token)), (int)i);
}

static bool
entry_asked_incremental(struct conf_ctx *ctx, const cJSON *entry)
{
    cJSON *json = cJSON_Parse(conf_entry_body(entry));
    conf_keep(ctx, json ? json : cJSON_CreateNull(), release_json);
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "incremental_output"));
}

/* The mode the upstream streamed in, as the journal shows it. */
static const char *
upstream_mode(struct conf_ctx *ctx, const char *token, bool forced_cumulative)
{
    const cJSON *e = journal_entry(ctx, token, 1, 0);
    if (forced_cumulative)
        return "upstream forced to cumulative deltas";
    return entry_asked_incremental(ctx, e)
               ? "the proxy asked for incremental_output: incremental upstream"
               : "the proxy did not ask for incremental_output: cumulative upstream";
}

/* ---- a relay of a plain scripted stream ---- */

/* Streams @p message with @p steps queued, incremental asked; @return the relay, checked
 * for a clean end and the exact text. */
static struct relay
exact_stream(struct conf_ctx *ctx, const char *message, const char *steps)
{
    const char *token = conf_token(ctx);
    const char *expected = expected_text(ctx, message);
    conf_queue(ctx, token, "chat", steps);
    const struct stream *st = open_stream(ctx, token, body_for(ctx, message, true, INC_TRUE));
    struct relay r = analyse(ctx, st);
    assert_clean_end(ctx, &r);
    /* The mode for the reason comes from the journal, and only a failure needs it. */
    expected = conf_expected_text_of(ctx, token, expected);
    bool same = r.text && strcmp(r.text, expected) == 0;
    assert_text(ctx, &r, expected, same ? "" : upstream_mode(ctx, token, false));
    return r;
}

/* ---- SSE-1 ---- */

static const struct stream *
short_stream(struct conf_ctx *ctx, const char *message)
{
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", "[{\"stream\":{\"chunks\":3}}]");
    const struct stream *st = open_stream(ctx, token, body_for(ctx, message, true, INC_TRUE));
    assert_stream_200(ctx, st);
    return st;
}

/* SSE-1: a streamed completion answers 200 text/event-stream with Cache-Control: no-cache. */
static void
SSE_1_stream_answers_event_stream_no_cache(struct conf_ctx *ctx)
{
    const struct stream *st = short_stream(ctx, "stream headers");
    const char *ct = conf_response_header(&st->resp, "Content-Type");
    bool sse = ct && strncasecmp(ct, "text/event-stream", 17) == 0 &&
               (ct[17] == '\0' || ct[17] == ';' || ct[17] == ' ');
    conf_check(ctx, &st->resp, sse, "Content-Type is %s, not text/event-stream",
               ct ? ct : "absent");
    const char *cc = conf_response_header(&st->resp, "Cache-Control");
    conf_check(ctx, &st->resp, conf_contains_nocase(cc, "no-cache"),
               "Cache-Control is %s, not no-cache", cc ? cc : "absent");
}

/* SSE-1 (SHOULD part): the stream also carries X-Accel-Buffering: no. */
static void
SSE_1_stream_sends_x_accel_buffering_no(struct conf_ctx *ctx)
{
    const struct stream *st = short_stream(ctx, "stream proxy buffering");
    const char *v = conf_response_header(&st->resp, "X-Accel-Buffering");
    conf_check(ctx, &st->resp, v && strcasecmp(v, "no") == 0, "X-Accel-Buffering is %s, not no",
               v ? v : "absent");
}

/* ---- SSE-2 ---- */

/* SSE-2: with upstream events 300 ms apart, each event reaches the caller before the next
 * one is sent upstream (plus 150 ms slack). */
static void
SSE_2_events_relayed_as_they_arrive(struct conf_ctx *ctx)
{
    enum { PIECES = 4 };
    const char *token = conf_token(ctx);
    /* v2: no thinking frames, and the upstream's first event is response.created, so its
     * k-th piece is event k + 1. */
    bool v2 = conf_dialect_v2(ctx);
    size_t first = v2 ? 1 : 0;
    conf_queue(ctx, token, "chat",
               conf_str(ctx, "[{\"stream\":{\"chunks\":%d,\"chunk_delay_ms\":%d%s}}]", PIECES,
                        PACE_MS, v2 ? ",\"thinking\":false" : ""));
    const struct stream *st = open_stream(ctx, token, body_for(ctx, "pace me", true, INC_TRUE));
    struct relay r = analyse(ctx, st);
    assert_stream_200(ctx, st);
    const cJSON *e = journal_entry(ctx, token, 1, 0);
    size_t up = conf_entry_event_count(e);
    conf_check(ctx, NULL, up > PIECES + first,
               "harness: the mock sent %zu events, not %d and their end", up, PIECES);
    stream_check(ctx, st, r.content_chunks >= PIECES,
                 "the caller got %zu content events for the upstream's %d", r.content_chunks,
                 PIECES);
    /* The caller's k-th content event carries the upstream's k-th piece. */
    size_t k = 0;
    for (size_t i = 0; i < st->sse.n_events && k < PIECES; i++) {
        const cJSON *chunk = cJSON_GetArrayItem(r.json, (int)i);
        const char *c = chunk_content(chunk);
        if (!c || !c[0] || cJSON_HasObjectItem(chunk, "error"))
            continue;
        int64_t sent = conf_entry_event_ms(e, first + k);
        int64_t next = conf_entry_event_ms(e, first + k + 1);
        int64_t got = st->sse.events[i].at_ms;
        stream_check(ctx, st, got <= next + PACE_SLACK_MS,
                     "upstream event %zu (sent at +%lld ms) reached the caller at +%lld ms, "
                     "after the next one was sent (+%lld ms, %d ms slack)",
                     k + 1, (long long)(sent - st->resp.sent_ms),
                     (long long)(got - st->resp.sent_ms), (long long)(next - st->resp.sent_ms),
                     PACE_SLACK_MS);
        k++;
    }
}

/* ---- SSE-3 ---- */

/* SSE-3: the caller receives `data: <chat.completion.chunk>` events, each ended by a blank
 * line, and exactly one final `data: [DONE]`. */
static void
SSE_3_events_are_chunks_ending_with_one_done(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const struct stream *st =
        open_stream(ctx, token, body_for(ctx, "well formed", true, INC_ABSENT));
    struct relay r = analyse(ctx, st);
    assert_stream_200(ctx, st);
    stream_check(ctx, st, !st->sse.ended_inside_event,
                 "the stream ends inside an event (no blank line after the last data)");
    stream_check(ctx, st, r.bad == 0, "event %ld is neither [DONE] nor a JSON object",
                 r.first_bad + 1);
    for (size_t i = 0; i < st->sse.n_events; i++) {
        const cJSON *chunk = cJSON_GetArrayItem(r.json, (int)i);
        if (cJSON_IsNull(chunk))
            continue;
        const char *object =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(chunk, "object"));
        stream_check(ctx, st, object && strcmp(object, "chat.completion.chunk") == 0,
                     "event %zu is not a chat.completion.chunk", i + 1);
    }
    stream_check(ctx, st, r.chunks > 0, "the stream carries no chunk");
    stream_check(ctx, st, r.dones == 1, "expected exactly one data: [DONE], got %zu", r.dones);
    stream_check(ctx, st, (size_t)r.first_done + 1 == st->sse.n_events,
                 "data: [DONE] is event %ld of %zu, not the last", r.first_done + 1,
                 st->sse.n_events);
}

/* ---- SSE-4 ---- */

/* Streams @p message as asked; checks the text is the upstream's, and names the mode. */
static void
check_exact_relay(struct conf_ctx *ctx, const char *message, enum incremental inc,
                  const char *steps, bool forced_cumulative)
{
    const char *token = conf_token(ctx);
    const char *expected = expected_text(ctx, message);
    if (steps)
        conf_queue(ctx, token, "chat", steps);
    const struct stream *st = open_stream(ctx, token, body_for(ctx, message, true, inc));
    struct relay r = analyse(ctx, st);
    assert_clean_end(ctx, &r);
    assert_text(ctx, &r, expected, upstream_mode(ctx, token, forced_cumulative));
}

/* SSE-4: cumulative upstream deltas (the v1 default) reach the caller as exact increments. */
static void
SSE_4_cumulative_upstream_relayed_as_exact_deltas(struct conf_ctx *ctx)
{
    conf_v1_only(ctx, "the v2 upstream always streams incremental deltas and has no cumulative "
                      "mode nor a final repeat; SSE_4_incremental_upstream_keeps_repeated_pieces "
                      "runs");
    check_exact_relay(ctx, "cumulative deltas", INC_ABSENT, NULL, false);
}

/* SSE-4: incremental upstream pieces are relayed as they are, repeated pieces included. */
static void
SSE_4_incremental_upstream_keeps_repeated_pieces(struct conf_ctx *ctx)
{
    check_exact_relay(ctx, "incremental deltas", INC_TRUE, NULL, false);
}

/* SSE-4: a final chunk repeating the whole text (with finish_reason) adds nothing. */
static void
SSE_4_final_repeat_adds_nothing_cumulative(struct conf_ctx *ctx)
{
    conf_v1_only(ctx, "the v2 upstream always streams incremental deltas and has no cumulative "
                      "mode nor a final repeat; SSE_4_incremental_upstream_keeps_repeated_pieces "
                      "runs");
    check_exact_relay(ctx, "final repeat, cumulative", INC_ABSENT,
                      "[{\"stream\":{\"final_repeat\":true}}]", false);
}

/* SSE-4: the same in incremental mode. */
static void
SSE_4_final_repeat_adds_nothing_incremental(struct conf_ctx *ctx)
{
    conf_v1_only(ctx, "the v2 upstream always streams incremental deltas and has no cumulative "
                      "mode nor a final repeat; SSE_4_incremental_upstream_keeps_repeated_pieces "
                      "runs");
    check_exact_relay(ctx, "final repeat, incremental", INC_TRUE,
                      "[{\"stream\":{\"final_repeat\":true}}]", false);
}

/* SSE-4 (SHOULD part): an upstream that ignores incremental_output and streams cumulative
 * text anyway is still relayed exactly. */
static void
SSE_4_upstream_ignoring_incremental_flag_relayed_exactly(struct conf_ctx *ctx)
{
    conf_v1_only(ctx, "the v2 upstream always streams incremental deltas and has no cumulative "
                      "mode nor a final repeat; SSE_4_incremental_upstream_keeps_repeated_pieces "
                      "runs");
    const char *message = "flag ignored";
    const char *token = conf_token(ctx);
    const char *expected = expected_text(ctx, message);
    conf_queue(ctx, token, "chat", "[{\"stream\":{\"cumulative\":true}}]");
    const struct stream *st = open_stream(ctx, token, body_for(ctx, message, true, INC_TRUE));
    struct relay r = analyse(ctx, st);
    conf_assume(ctx, entry_asked_incremental(ctx, journal_entry(ctx, token, 1, 0)),
                "the proxy did not ask the upstream for incremental_output, so no flag was "
                "ignored");
    assert_clean_end(ctx, &r);
    assert_text(ctx, &r, expected, "incremental asked, upstream streamed cumulative text");
}

/* ---- SSE-5 ---- */

/* SSE-5: multi-byte UTF-8 characters cut across upstream writes arrive intact. */
static void
SSE_5_utf8_split_across_writes_arrives_intact(struct conf_ctx *ctx)
{
    const char *message = "split characters";
    const char *expected = expected_text(ctx, message);
    bool multibyte = false;
    for (const char *p = expected; *p; p++)
        multibyte = multibyte || (unsigned char)*p >= 0x80;
    conf_assume(ctx, multibyte, "harness: the mock's answer has no multi-byte character");
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", "[{\"stream\":{\"chunks\":4,\"split_utf8\":true}}]");
    const struct stream *st = open_stream(ctx, token, body_for(ctx, message, true, INC_TRUE));
    struct relay r = analyse(ctx, st);
    assert_stream_200(ctx, st);
    for (size_t i = 0; i < st->sse.n_events; i++)
        stream_check(ctx, st, conf_utf8_valid(st->sse.events[i].data, st->sse.events[i].data_len),
                     "event %zu is not valid UTF-8", i + 1);
    assert_clean_end(ctx, &r);
    assert_text(ctx, &r, expected, "characters cut across upstream writes");
}

/* ---- SSE-6 ---- */

/* @p step on every attempt: a proxy that takes a framing it cannot parse for a failed
 * attempt (SSE-17) cannot retry its way to the mock's default framing. */
static const char *
framing_steps(struct conf_ctx *ctx, const char *step)
{
    return conf_repeat_steps(ctx, step, conf_max_attempts(ctx));
}

/* SSE-6: CRLF line endings. */
static void
SSE_6_crlf_line_endings(struct conf_ctx *ctx)
{
    exact_stream(ctx, "crlf framing",
                 framing_steps(ctx, "{\"stream\":{\"chunks\":4,\"crlf\":true}}"));
}

/* SSE-6: lone CR line endings. */
static void
SSE_6_cr_line_endings(struct conf_ctx *ctx)
{
    exact_stream(ctx, "cr framing", framing_steps(ctx, "{\"stream\":{\"chunks\":4,\"cr\":true}}"));
}

/* SSE-6: comment lines between events. */
static void
SSE_6_comment_lines(struct conf_ctx *ctx)
{
    exact_stream(ctx, "comment framing",
                 framing_steps(ctx, "{\"stream\":{\"chunks\":4,\"comments\":true}}"));
}

/* SSE-6: every event in one write. */
static void
SSE_6_all_events_in_one_write(struct conf_ctx *ctx)
{
    exact_stream(ctx, "one write",
                 framing_steps(ctx, "{\"stream\":{\"chunks\":4,\"coalesce\":true}}"));
}

/* SSE-6: two events per write. */
static void
SSE_6_two_events_per_write(struct conf_ctx *ctx)
{
    exact_stream(ctx, "two per write",
                 framing_steps(ctx, "{\"stream\":{\"chunks\":5,\"coalesce\":2}}"));
}

/* SSE-6: one event spread over several writes. The mock's only way to spread an event is
 * to cut it inside characters; keeping those intact is SSE-5's, so a replacement character
 * the upstream did not send skips this test. */
static void
SSE_6_event_spread_over_many_writes(struct conf_ctx *ctx)
{
    const char *message = "spread events";
    const char *token = conf_token(ctx);
    const char *expected = expected_text(ctx, message);
    conf_queue(ctx, token, "chat",
               framing_steps(ctx, "{\"stream\":{\"chunks\":3,\"split_utf8\":true}}"));
    const struct stream *st = open_stream(ctx, token, body_for(ctx, message, true, INC_TRUE));
    struct relay r = analyse(ctx, st);
    conf_assume(ctx,
                !(r.text && strstr(r.text, "\xEF\xBF\xBD") && !strstr(expected, "\xEF\xBF\xBD")),
                "characters cut across writes were replaced by U+FFFD (see SSE-5)");
    assert_clean_end(ctx, &r);
    assert_text(ctx, &r, expected, "events spread over several writes");
}

/* ---- SSE-7 ---- */

/* The same failing steps on a non-stream request: @return its attempts and answer. */
static size_t
non_stream_probe(struct conf_ctx *ctx, const char *steps, const struct conf_response **out)
{
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", steps);
    *out = conf_post_chat(ctx, token, body_for(ctx, "probe", false, INC_ABSENT));
    return conf_attempts(ctx, token, 1);
}

static bool
is_json_error(struct conf_ctx *ctx, const struct conf_response *r)
{
    const char *ct = conf_response_header(r, "Content-Type");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(conf_json(ctx, r), "error");
    return r->status >= 400 && ct && strncasecmp(ct, "application/json", 16) == 0 &&
           cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "message"));
}

/* SSE-7 core: every attempt fails with @p step before any event: the stream request gets
 * the same JSON error status as a non-stream one, not a 200, and (when @p count) makes as
 * many attempts. */
static void
check_failed_start(struct conf_ctx *ctx, const char *step, bool count)
{
    const char *steps = conf_repeat_steps(ctx, step, conf_max_attempts(ctx) + 1);
    const struct conf_response *probe = NULL;
    size_t expect = non_stream_probe(ctx, steps, &probe);
    conf_assume(ctx, is_json_error(ctx, probe),
                "a non-stream request with the same failures got HTTP %ld without a JSON error "
                "body (see RETRY-2, RETRY-3, ERR-3)",
                probe->status);
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", steps);
    const struct stream *st =
        open_stream(ctx, token, body_for(ctx, "failed start", true, INC_TRUE));
    stream_check(ctx, st, st->resp.status != 200,
                 "every attempt failed before the first event, yet the caller got a 200 stream");
    conf_check(ctx, &st->resp, st->resp.status == probe->status,
               "the stream request got HTTP %ld; the same failures without stream give %ld",
               st->resp.status, probe->status);
    conf_assert_json_error(ctx, &st->resp);
    if (!count)
        return;
    size_t n = conf_attempts(ctx, token, expect);
    conf_check(ctx, &st->resp, n == expect,
               "the stream request made %zu attempt(s); the same failures without stream make "
               "%zu",
               n, expect);
}

/* SSE-7: upstream 500s until the attempts run out: the JSON error status, not 200. */
static void
SSE_7_upstream_500s_give_json_error_not_200(struct conf_ctx *ctx)
{
    check_failed_start(ctx, "{\"status\":500}", true);
}

/* SSE-7: HTML gateway pages on every attempt. */
static void
SSE_7_html_pages_give_json_error_not_200(struct conf_ctx *ctx)
{
    check_failed_start(ctx, "{\"html\":\"gateway\"}", true);
}

/* SSE-7: connections dropped without an answer on every attempt. Attempts are not
 * compared: libcurl re-sends, unasked, a request whose reused connection closed without an
 * answer, so the journal may show more requests than the proxy made attempts. */
static void
SSE_7_dropped_connections_give_json_error_not_200(struct conf_ctx *ctx)
{
    check_failed_start(ctx, "{\"drop\":true}", false);
}

/* SSE-7: a failure before the first event, then a good stream: the caller sees only the
 * good stream. */
static void
SSE_7_failure_then_success_streams_exact_text(struct conf_ctx *ctx)
{
    const struct conf_response *probe = NULL;
    size_t n = non_stream_probe(ctx, "[{\"status\":500},{\"ok\":true}]", &probe);
    conf_assume(ctx, n == 2 && probe->status == 200,
                "a non-stream request is not retried after a 500 (see RETRY-1)");
    const char *message = "second time lucky";
    const char *token = conf_token(ctx);
    const char *expected = expected_text(ctx, message);
    conf_queue(ctx, token, "chat", "[{\"status\":500},{\"stream\":{\"chunks\":3}}]");
    const struct stream *st = open_stream(ctx, token, body_for(ctx, message, true, INC_TRUE));
    struct relay r = analyse(ctx, st);
    assert_clean_end(ctx, &r);
    assert_text(ctx, &r, expected, "after a failed first attempt");
    conf_assert_attempts(ctx, token, 2);
}

/* ---- SSE-8 ---- */

/* A stream the upstream ended badly after some events: one error event ends it, nothing
 * is replayed. @return the relay. */
static struct relay
check_broken_stream(struct conf_ctx *ctx, const char *message, const char *token,
                    const struct stream *st)
{
    const char *expected = expected_text(ctx, message);
    struct relay r = analyse(ctx, st);
    assert_stream_200(ctx, st);
    stream_check(ctx, st, r.errors > 0 || r.dones == 0,
                 "the broken stream ended with data: [DONE] and no error event: it looks like "
                 "a success");
    stream_check(ctx, st, r.errors == 1, "expected one error event, got %zu", r.errors);
    const cJSON *err =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(r.json, (int)r.first_error), "error");
    stream_check(ctx, st, cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "message")),
                 "the error event has no error.message string");
    for (size_t i = (size_t)r.first_error + 1; i < st->sse.n_events; i++)
        stream_check(ctx, st, is_done(&st->sse.events[i]), "event %zu follows the error event",
                     i + 1);
    stream_check(ctx, st, r.first_done < 0 || r.first_done > r.first_error,
                 "data: [DONE] came before the error event");
    expected = conf_expected_text_of(ctx, token, expected);
    bool prefix = r.text && strncmp(expected, r.text, strlen(r.text)) == 0;
    if (!prefix)
        print_error("    upstream text: %s\n    caller's text: %s\n", expected,
                    r.text ? r.text : "(none)");
    stream_check(ctx, st, prefix,
                 "the caller's text is not a prefix of the upstream's: text was replayed or "
                 "altered");
    conf_assert_attempts(ctx, token, 1);
    return r;
}

static const struct stream *
truncated_stream(struct conf_ctx *ctx, const char *message, const char *token)
{
    conf_queue(ctx, token, "chat", "[{\"stream\":{\"chunks\":6,\"truncate_after\":3}}]");
    return open_stream(ctx, token, body_for(ctx, message, true, INC_TRUE));
}

/* SSE-8: an upstream that drops mid-stream gives one error event, and no retry. */
static void
SSE_8_drop_mid_stream_gives_one_error_event(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const struct stream *st = truncated_stream(ctx, "dropped mid-way", token);
    check_broken_stream(ctx, "dropped mid-way", token, st);
}

/* A stream that stalls after two events for longer than the proxy's idle timeout. */
static const struct stream *
stalled_stream(struct conf_ctx *ctx, const char *message, const char *token)
{
    int64_t idle = profile(ctx)->stream_idle_timeout_ms;
    conf_assume(ctx, !conf_profile_none(profile(ctx), CONF_NONE_IDLE_TIMEOUT),
                "the profile declares no stream idle timeout, so a stalled stream is never "
                "ended (see SSE-10)");
    conf_runnable(ctx, idle <= STALL_TESTABLE_MS,
                  "the profile's stream idle timeout (%lld ms) is too long to wait for: run the "
                  "proxy with one of at most %d ms and set \"stream_idle_timeout_ms\"",
                  (long long)idle, STALL_TESTABLE_MS);
    conf_queue(ctx, token, "chat",
               conf_str(ctx, "[{\"stream\":{\"chunks\":6,\"stall_after\":2,\"stall_ms\":%lld}}]",
                        (long long)(idle + 4000)));
    struct stream_opts o = {.timeout_ms = (long)(idle + 3000)};
    const struct stream *st =
        open_stream_ex(ctx, token, body_for(ctx, message, true, INC_TRUE), &o);
    conf_assume(ctx, st->resp.curl_code != CURLE_OPERATION_TIMEDOUT,
                "the proxy did not end a stream stalled for %lld ms (see SSE-10)",
                (long long)(idle + 3000));
    return st;
}

/* SSE-8: an upstream that stalls mid-stream (past the idle timeout) gives one error event. */
static void
SSE_8_stall_mid_stream_gives_one_error_event(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const struct stream *st = stalled_stream(ctx, "stalled mid-way", token);
    check_broken_stream(ctx, "stalled mid-way", token, st);
}

/* SSE-8 (SHOULD part): no data: [DONE] after the error event. */
static void
SSE_8_no_done_after_the_error_event(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const struct stream *st = truncated_stream(ctx, "no done after error", token);
    struct relay r = analyse(ctx, st);
    conf_assume(ctx, st->resp.status == 200 && r.errors > 0,
                "the dropped stream has no error event (the MUST part of SSE-8)");
    for (size_t i = (size_t)r.first_error + 1; i < st->sse.n_events; i++)
        stream_check(ctx, st, !is_done(&st->sse.events[i]),
                     "data: [DONE] follows the error event (event %zu)", i + 1);
}

/* ---- SSE-9 ---- */

/* SSE-9: when the caller disconnects mid-stream, the upstream connection is closed within
 * 1 s (the mock's journal shows the client went away). */
static void
SSE_9_caller_disconnect_closes_upstream(struct conf_ctx *ctx)
{
    enum { PIECES = 12, DELAY_MS = 250 };
    const char *token = conf_token(ctx);
    conf_queue(
        ctx, token, "chat",
        conf_str(ctx, "[{\"stream\":{\"chunks\":%d,\"chunk_delay_ms\":%d}}]", PIECES, DELAY_MS));
    struct stream_opts o = {.stop_after = 2};
    const struct stream *st =
        open_stream_ex(ctx, token, body_for(ctx, "leaving early", true, INC_TRUE), &o);
    assert_stream_200(ctx, st);
    stream_check(ctx, st, st->stopped_ms >= 0, "the stream ended before its second event");
    /* The stream runs PIECES * DELAY_MS if nobody stops it: wait that long for the entry. */
    const cJSON *e = NULL;
    int64_t until = st->stopped_ms + PIECES * DELAY_MS + 2000;
    while (!(e = cJSON_GetArrayItem(conf_attempt_entries(ctx, conf_journal(ctx, token)), 0)) &&
           qk_now_ms() < until)
        conf_sleep_ms(50);
    conf_check(ctx, NULL, e != NULL,
               "the upstream request was still open %lld ms after the "
               "caller left",
               (long long)(qk_now_ms() - st->stopped_ms));
    int64_t finished = conf_entry_finished_ms(e);
    bool gone = conf_entry_client_gone(e);
    conf_assume(ctx, gone || finished > st->stopped_ms,
                "the upstream had finished before the caller got its first events (see SSE-2)");
    conf_check(ctx, NULL, gone,
               "the upstream stream ran to its end (%lld ms after the caller left): the proxy "
               "did not close it",
               (long long)(finished - st->stopped_ms));
    conf_check(ctx, NULL, finished - st->stopped_ms <= GONE_LIMIT_MS,
               "the upstream connection closed %lld ms after the caller left (limit %d ms)",
               (long long)(finished - st->stopped_ms), GONE_LIMIT_MS);
}

/* ---- SSE-10 ---- */

/* SSE-10: during an upstream silence longer than the keep-alive interval but under the
 * idle timeout, the proxy sends comments, and does not end the stream. */
static void
SSE_10_keepalive_comments_during_silences(struct conf_ctx *ctx)
{
    int64_t ka = profile(ctx)->keepalive_interval_ms;
    int64_t idle = profile(ctx)->stream_idle_timeout_ms;
    int64_t delay = 2 * ka + 100;
    conf_assume(ctx, ka > 0, "the profile declares no keep-alive comments");
    conf_runnable(ctx, delay < idle && delay <= 3000,
                  "the profile's keep-alive interval (%lld ms) and idle timeout (%lld ms) leave "
                  "no testable silence: set \"keepalive_interval_ms\" to at most 1400 and "
                  "under half the idle timeout",
                  (long long)ka, (long long)idle);
    const struct relay r = exact_stream(
        ctx, "quiet upstream",
        conf_str(ctx, "[{\"stream\":{\"chunks\":2,\"chunk_delay_ms\":%lld}}]", (long long)delay));
    stream_check(ctx, r.st, r.st->sse.comments > 0,
                 "no comment during %lld ms silences (keep-alive interval %lld ms)",
                 (long long)delay, (long long)ka);
}

/* SSE-10: a stream that keeps flowing for longer than the attempt timeout (and the request
 * deadline) is not cut. */
static void
SSE_10_flowing_stream_is_not_cut(struct conf_ctx *ctx)
{
    int64_t cap = profile(ctx)->upstream_timeout_ms;
    if (profile(ctx)->deadline_ms > cap)
        cap = profile(ctx)->deadline_ms;
    conf_runnable(ctx, cap <= CAP_TESTABLE_MS,
                  "the profile's attempt timeout or deadline (%lld ms) is too long to outlast: "
                  "set \"upstream_timeout_ms\" and \"deadline_ms\" to at most %d ms",
                  (long long)cap, CAP_TESTABLE_MS);
    conf_runnable(ctx, PACE_MS < profile(ctx)->stream_idle_timeout_ms,
                  "the profile's idle timeout is under %d ms: a paced stream cannot flow", PACE_MS);
    long pieces = (long)(cap / PACE_MS) + 1; /* pieces + [DONE] arrive PACE_MS apart */
    const struct relay r = exact_stream(
        ctx, "long answer",
        conf_str(ctx, "[{\"stream\":{\"chunks\":%ld,\"chunk_delay_ms\":%d}}]", pieces, PACE_MS));
    int64_t took = r.st->resp.done_ms - r.st->resp.sent_ms;
    conf_check(ctx, NULL, took > cap, "harness: the stream lasted %lld ms, not over %lld ms",
               (long long)took, (long long)cap);
}

/* SSE-10: an upstream silent for longer than the idle timeout ends the stream (with an
 * error event, which is SSE-8's) about when the timeout expires. */
static void
SSE_10_stall_past_idle_timeout_ends_stream(struct conf_ctx *ctx)
{
    int64_t idle = profile(ctx)->stream_idle_timeout_ms;
    const char *token = conf_token(ctx);
    const struct stream *st = stalled_stream(ctx, "silent upstream", token);
    struct relay r = analyse(ctx, st);
    assert_stream_200(ctx, st);
    const cJSON *e = journal_entry(ctx, token, 1, 0);
    int64_t last = conf_entry_event_ms(e, conf_entry_event_count(e) - 1);
    int64_t ended = st->resp.done_ms - last;
    stream_check(ctx, st, ended >= idle - IDLE_EARLY_MS,
                 "the stream ended %lld ms after the upstream's last event, before the idle "
                 "timeout (%lld ms)",
                 (long long)ended, (long long)idle);
    stream_check(ctx, st, ended <= idle + IDLE_LATE_MS,
                 "the stream ended %lld ms after the upstream's last event; idle timeout %lld ms",
                 (long long)ended, (long long)idle);
    conf_assume(ctx, r.errors > 0, "the stalled stream ended without an error event (see SSE-8)");
}

/* SSE-10: an upstream that keeps sending bytes, one at a time, without ever completing an
 * event is as idle as a silent one: only complete events (and comments) show it is alive,
 * so the stream ends about the idle timeout after its last complete event. */
static void
SSE_10_trickle_does_not_hold_the_stream(struct conf_ctx *ctx)
{
    int64_t idle = profile(ctx)->stream_idle_timeout_ms;
    conf_assume(ctx, !conf_profile_none(profile(ctx), CONF_NONE_IDLE_TIMEOUT),
                "the profile declares no stream idle timeout, so nothing ends a trickle");
    conf_runnable(ctx, idle <= STALL_TESTABLE_MS,
                  "the profile's stream idle timeout (%lld ms) is too long to wait for: run the "
                  "proxy with one of at most %d ms and set \"stream_idle_timeout_ms\"",
                  (long long)idle, STALL_TESTABLE_MS);
    int64_t trickle = idle / 10 < 20 ? 20 : idle / 10 > 200 ? 200 : idle / 10;
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat",
               conf_str(ctx,
                        "[{\"stream\":{\"chunks\":6,\"stall_after\":2,\"stall_ms\":%lld,"
                        "\"trickle_ms\":%lld}}]",
                        (long long)(idle + 4000), (long long)trickle));
    struct stream_opts o = {.timeout_ms = (long)(idle + 3000)};
    const struct stream *st =
        open_stream_ex(ctx, token, body_for(ctx, "trickling upstream", true, INC_TRUE), &o);
    assert_stream_200(ctx, st);
    stream_check(ctx, st, st->resp.curl_code != CURLE_OPERATION_TIMEDOUT,
                 "an upstream sending one byte every %lld ms and no complete event held the "
                 "stream open for %lld ms (idle timeout %lld ms): bytes, not events, reset the "
                 "idle clock",
                 (long long)trickle, (long long)(idle + 3000), (long long)idle);
    const cJSON *e = journal_entry(ctx, token, 1, 0);
    size_t events = conf_entry_event_count(e);
    conf_check(ctx, NULL, events >= 2, "harness: the journal shows %zu upstream event(s)", events);
    int64_t ended = st->resp.done_ms - conf_entry_event_ms(e, 1);
    stream_check(ctx, st, ended <= idle + IDLE_LATE_MS,
                 "the stream ended %lld ms after the upstream's last complete event, while "
                 "bytes kept trickling; idle timeout %lld ms",
                 (long long)ended, (long long)idle);
}

/* ---- SSE-11 ---- */

/* The proxy's count of upstream pauses (SSE-11), or -1 when the profile names none. */
static long long
stream_pauses(struct conf_ctx *ctx)
{
    const struct conf_profile *p = profile(ctx);
    if (!p->stream_pauses_path[0] || !p->stream_pauses_field[0])
        return -1;
    const struct conf_response *r = conf_send(ctx, "GET", p->stream_pauses_path, NULL, NULL);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(conf_json(ctx, r), p->stream_pauses_field);
    conf_check(ctx, r, r->status == 200 && cJSON_IsNumber(n),
               "GET %s gave no numeric \"%s\" (profile stream_pauses_path/field)",
               p->stream_pauses_path, p->stream_pauses_field);
    return (long long)n->valuedouble;
}

/* The text of a stream shaped by @p step, read from the mock itself. */
static const char *
expected_stream_text(struct conf_ctx *ctx, const char *message, const char *step)
{
    /* The v2 frames are not OpenAI chunks: the journal says what the mock produced. */
    if (conf_dialect_v2(ctx))
        return conf_direct_stream_text(ctx, step, body_for(ctx, message, true, INC_TRUE));
    const char *token = conf_token(ctx);
    conf_queue_direct(ctx, token, "chat", conf_str(ctx, "[%s]", step));
    const struct conf_response *r =
        conf_mock_direct_chat(ctx, token, body_for(ctx, message, true, INC_TRUE));
    conf_check(ctx, r, r->status == 200 && !r->body_truncated,
               "harness: the mock did not stream the oracle answer");
    struct stream *st = conf_keep(ctx, calloc(1, sizeof(*st)), release_stream);
    conf_sse_init(&st->sse);
    conf_check(ctx, r, conf_sse_feed(&st->sse, r->body, r->body_len, 0),
               "harness: cannot parse the mock's stream");
    conf_sse_finish(&st->sse);
    struct relay rel = analyse(ctx, st);
    conf_check(ctx, r, rel.text != NULL, "harness: the mock's stream has no text");
    return rel.text;
}

/* SSE-11: a slow caller still gets the exact stream, and the proxy pauses its upstream
 * transfer rather than buffering the answer; the pause is observed through the counter the
 * profile names. The stream (about 6 MB) must outgrow what the kernel holds for the proxy
 * (a socket send buffer autotunes up to 4 MiB on Linux): a smaller one can sit entirely in
 * the proxy's socket, and the proxy never needs to pause. */
static void
SSE_11_slow_reader_gets_the_whole_stream(struct conf_ctx *ctx)
{
    static const char step[] = "{\"stream\":{\"piece_bytes\":560000}}";
    const char *message = "slow reader";
    const char *expected = expected_stream_text(ctx, message, step);
    /* One token per read, each with a step for every attempt it may take: a 6 MB answer
     * can be slow to start on a busy machine, and a retried attempt must get the same. */
    const char *fast_token = conf_token(ctx), *token = conf_token(ctx);
    const char *steps = conf_repeat_steps(ctx, step, conf_max_attempts(ctx));
    conf_queue(ctx, fast_token, "chat", steps);
    conf_queue(ctx, token, "chat", steps);
    /* Read at full speed first: text the proxy gets wrong either way is SSE-4/SSE-5's. */
    /* 6 MB through a proxy in a slower runtime on a busy machine takes its time. */
    struct stream_opts full_speed = {.timeout_ms = LARGE_STREAM_TIMEOUT_MS};
    const struct stream *fast =
        open_stream_ex(ctx, fast_token, body_for(ctx, message, true, INC_TRUE), &full_speed);
    struct relay rf = analyse(ctx, fast);
    bool exact = fast->resp.status == 200 && rf.text &&
                 strcmp(rf.text, conf_expected_text_of(ctx, fast_token, expected)) == 0;
    if (!exact) {
        /* Once more: on a busy machine one 6 MB stream can miss an idle timeout. */
        const char *again = conf_token(ctx);
        conf_queue(ctx, again, "chat", steps);
        fast = open_stream_ex(ctx, again, body_for(ctx, message, true, INC_TRUE), &full_speed);
        rf = analyse(ctx, fast);
        exact = fast->resp.status == 200 && rf.text &&
                strcmp(rf.text, conf_expected_text_of(ctx, again, expected)) == 0;
    }
    conf_assume(ctx, exact,
                "the stream is not exact even when read at full speed, twice (SSE-4/SSE-5, or "
                "the proxy does not relay answers of this size)");
    long long before = stream_pauses(ctx);
    /* Stall first, so the proxy fills whatever it has, then read slowly. */
    struct stream_opts o = {.first_pause_ms = 1000,
                            .pause_ms = 4,
                            .recv_buffer = 16384,
                            .socket_rcvbuf = 8192,
                            .timeout_ms = LARGE_STREAM_TIMEOUT_MS};
    const struct stream *st =
        open_stream_ex(ctx, token, body_for(ctx, message, true, INC_TRUE), &o);
    struct relay r = analyse(ctx, st);
    assert_clean_end(ctx, &r);
    assert_text(ctx, &r, expected, "read slowly");
    conf_observable(ctx, before >= 0,
                    "a slow reader got the exact stream, but the bound is not observable: the "
                    "profile names no \"stream_pauses_path\"");
    long long after = stream_pauses(ctx);
    stream_check(ctx, st, after > before,
                 "the proxy never paused its upstream transfer for a slow reader of a %zu-byte "
                 "stream (pauses %lld -> %lld): it buffered the answer",
                 st->resp.body_len, before, after);
}

/* ---- SSE-12 ---- */

/* Every chunk is a complete chat.completion.chunk; the last has a finish_reason; [DONE]
 * ends the stream; only data: lines and comments. */
static void
check_complete_chunks(struct conf_ctx *ctx, const char *steps)
{
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", steps);
    const struct stream *st =
        open_stream(ctx, token, body_for(ctx, "complete chunks", true, INC_TRUE));
    struct relay r = analyse(ctx, st);
    assert_stream_200(ctx, st);
    stream_check(ctx, st, st->sse.other_fields == 0,
                 "the stream has %zu event:/id:/retry: (or other) field lines",
                 st->sse.other_fields);
    stream_check(ctx, st, r.chunks > 0 && r.bad == 0 && r.errors == 0,
                 "the stream is not made of chunks only");
    const char *model = conf_target(ctx)->model;
    const char *id0 = NULL;
    double now = (double)time(NULL);
    for (size_t i = 0; i < st->sse.n_events; i++) {
        const cJSON *c = cJSON_GetArrayItem(r.json, (int)i);
        if (cJSON_IsNull(c))
            continue;
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "id"));
        const char *object = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "object"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "model"));
        const cJSON *created = cJSON_GetObjectItemCaseSensitive(c, "created");
        const cJSON *choices = cJSON_GetObjectItemCaseSensitive(c, "choices");
        stream_check(ctx, st, id && id[0], "chunk %zu has no id", i + 1);
        if (!id0)
            id0 = id;
        stream_check(ctx, st, strcmp(id, id0) == 0, "chunk %zu has id %s, the first had %s", i + 1,
                     id, id0);
        stream_check(ctx, st, object && strcmp(object, "chat.completion.chunk") == 0,
                     "chunk %zu: object is not chat.completion.chunk", i + 1);
        stream_check(ctx, st, cJSON_IsNumber(created), "chunk %zu has no numeric created", i + 1);
        stream_check(ctx, st,
                     created->valuedouble > now - DAY_S && created->valuedouble < now + DAY_S,
                     "chunk %zu: created %.0f is not now in seconds (%.0f)", i + 1,
                     created->valuedouble, now);
        stream_check(ctx, st, m && strcmp(m, model) == 0, "chunk %zu: model is %s, not %s", i + 1,
                     m ? m : "absent", model);
        stream_check(ctx, st, cJSON_GetArraySize(choices) > 0, "chunk %zu has no choices", i + 1);
        const cJSON *ch;
        cJSON_ArrayForEach(ch, choices)
        {
            const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
            stream_check(ctx, st, cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(ch, "index")),
                         "chunk %zu: a choice has no index", i + 1);
            stream_check(ctx, st, cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(ch, "delta")),
                         "chunk %zu: a choice has no delta object", i + 1);
            stream_check(ctx, st, cJSON_IsNull(fr) || cJSON_IsString(fr),
                         "chunk %zu: a choice has no finish_reason (null or a string)", i + 1);
        }
    }
    const cJSON *last = cJSON_GetArrayItem(r.json, (int)r.last_chunk);
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(last, "choices"), 0), "finish_reason");
    stream_check(ctx, st, cJSON_IsString(fr) && fr->valuestring[0],
                 "the last chunk has no finish_reason");
    /* That it is the only one is SSE-3's business. */
    stream_check(ctx, st, st->sse.n_events > 0 && is_done(&st->sse.events[st->sse.n_events - 1]),
                 "the stream does not end with data: [DONE]");
}

/* SSE-12: chunks of a complete upstream stream. */
static void
SSE_12_chunks_are_complete(struct conf_ctx *ctx)
{
    check_complete_chunks(ctx, "[{\"stream\":{\"chunks\":3}}]");
}

/* SSE-12: the upstream's chunks carry no id/object/created/model: the proxy fills them in. */
static void
SSE_12_envelope_filled_in(struct conf_ctx *ctx)
{
    conf_v1_only(ctx, "the v2 frames never carry the v1 chunk envelope (id, object, created, "
                      "model); SSE_12_chunks_are_complete judges the chunks");
    check_complete_chunks(ctx, "[{\"stream\":{\"chunks\":3,\"envelope\":false}}]");
}

/* SSE-12: the upstream sends no finish_reason: the last chunk still has one. */
static void
SSE_12_finish_reason_filled_in(struct conf_ctx *ctx)
{
    conf_v1_only(ctx, "the v2 frames never carry finish_reason (the answer ends with a finished "
                      "frame); SSE_12_chunks_are_complete judges the last chunk");
    check_complete_chunks(ctx, "[{\"stream\":{\"chunks\":3,\"finish_reason\":false}}]");
}

/* SSE-12: the upstream sends no [DONE]: the caller's stream still ends with one. */
static void
SSE_12_done_added(struct conf_ctx *ctx)
{
    check_complete_chunks(ctx, "[{\"stream\":{\"chunks\":3,\"done\":false}}]");
}

/* ---- SSE-13 ---- */

/* SSE-13: 200 streams whose first event is the in-band failure payload (firewall, quota)
 * are retried like an upstream 500, then reported with an error status. */
static void
SSE_13_inband_failures_retried_then_error_status(struct conf_ctx *ctx)
{
    unsigned n = conf_max_attempts(ctx) + 1;
    const struct conf_response *probe = NULL;
    size_t expect = non_stream_probe(ctx, conf_repeat_steps(ctx, "{\"status\":500}", n), &probe);
    const char *steps = "[";
    for (unsigned i = 0; i < n; i++)
        steps = conf_str(ctx, "%s%s{\"inband_error\":\"%s\"}", steps, i ? "," : "",
                         i % 2 ? "quota" : "waf");
    steps = conf_str(ctx, "%s]", steps);
    /* A stream whose start fails with plain 500s must get an error status first: that
     * property is SSE-7's, and a proxy that answers 200 at once breaks both alike. */
    const char *plain = conf_token(ctx);
    conf_queue(ctx, plain, "chat", conf_repeat_steps(ctx, "{\"status\":500}", n));
    const struct stream *st_plain =
        open_stream(ctx, plain, body_for(ctx, "blocked plainly", true, INC_TRUE));
    conf_assume(ctx, st_plain->resp.status >= 400,
                "a stream whose every attempt fails with 500 got HTTP %ld (see SSE-7), so "
                "in-band failures cannot be told apart",
                st_plain->resp.status);
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", steps);
    const struct stream *st = open_stream(ctx, token, body_for(ctx, "blocked", true, INC_TRUE));
    stream_check(ctx, st, st->resp.status >= 400,
                 "in-band failures on every attempt gave HTTP %ld, not an error status",
                 st->resp.status);
    size_t got = conf_attempts(ctx, token, expect);
    conf_check(ctx, &st->resp, got == expect,
               "in-band failures caused %zu attempt(s); upstream 500s cause %zu", got, expect);
}

/* SSE-13: an in-band failure, then a good stream: the caller sees only the good stream. */
static void
SSE_13_inband_failure_then_success_streams_exact_text(struct conf_ctx *ctx)
{
    const struct conf_response *probe = NULL;
    size_t n = non_stream_probe(ctx, "[{\"status\":500},{\"ok\":true}]", &probe);
    conf_assume(ctx, n == 2 && probe->status == 200,
                "a non-stream request is not retried after a 500 (see RETRY-1)");
    const char *message = "quota then fine";
    const char *token = conf_token(ctx);
    const char *expected = expected_text(ctx, message);
    conf_queue(ctx, token, "chat", "[{\"inband_error\":\"quota\"},{\"stream\":{\"chunks\":3}}]");
    const struct stream *st = open_stream(ctx, token, body_for(ctx, message, true, INC_TRUE));
    struct relay r = analyse(ctx, st);
    assert_clean_end(ctx, &r);
    assert_text(ctx, &r, expected, "after an in-band failure");
    conf_assert_attempts(ctx, token, 2);
}

/* ---- SSE-14 ---- */

/* A stream whose body was read whole by conf_send_many(), parsed after the fact (no event
 * times: only what it says is judged). Owns a copy of nothing but the status. */
static const struct stream *
stream_from_response(struct conf_ctx *ctx, const struct conf_response *resp)
{
    struct stream *st = conf_keep(ctx, calloc(1, sizeof(*st)), release_stream);
    conf_sse_init(&st->sse);
    st->stopped_ms = -1;
    st->resp.status = resp->status;
    st->resp.curl_code = resp->curl_code;
    st->resp.sent_ms = resp->sent_ms;
    st->resp.done_ms = resp->done_ms;
    snprintf(st->resp.error, sizeof(st->resp.error), "%s", resp->error);
    conf_check(ctx, NULL, conf_sse_feed(&st->sse, resp->body, resp->body_len, resp->done_ms),
               "harness: the SSE parser ran out of memory");
    conf_sse_finish(&st->sse);
    return st;
}

/* SSE-14: several streams at once, each with multi-byte characters cut across upstream
 * writes, all arrive exact: nothing (a UTF-8 decoder, a text buffer) is shared between
 * them. */
static void
SSE_14_concurrent_streams_are_each_exact(struct conf_ctx *ctx)
{
    enum { STREAMS = 4 };
    /* One such stream alone must be exact first: that is SSE-5's property. */
    const char *alone = conf_token(ctx);
    const char *alone_msg = conf_str(ctx, "one stream alone, %s", alone);
    const char *alone_text = expected_text(ctx, alone_msg);
    conf_queue(ctx, alone, "chat", "[{\"stream\":{\"chunks\":5,\"split_utf8\":true}}]");
    struct relay single =
        analyse(ctx, open_stream(ctx, alone, body_for(ctx, alone_msg, true, INC_TRUE)));
    alone_text = conf_expected_text_of(ctx, alone, alone_text);
    conf_assume(
        ctx, single.st->resp.status == 200 && single.text && strcmp(single.text, alone_text) == 0,
        "a single stream with characters cut across writes is not exact (see SSE-5)");
    struct conf_request reqs[STREAMS];
    const char *expected[STREAMS];
    const char *tokens[STREAMS];
    const char *url =
        conf_str(ctx, "%s%s", conf_target(ctx)->proxy_url, conf_api(ctx, "/chat/completions"));
    for (int i = 0; i < STREAMS; i++) {
        const char *token = conf_token(ctx);
        tokens[i] = token;
        const char *message = conf_str(ctx, "concurrent stream %d of %s", i, token);
        expected[i] = expected_text(ctx, message);
        conf_queue(ctx, token, "chat",
                   "[{\"stream\":{\"chunks\":5,\"split_utf8\":true,\"chunk_delay_ms\":40}}]");
        const char *body = body_for(ctx, message, true, INC_TRUE);
        const char **headers = conf_keep(ctx, calloc(4, sizeof(char *)), free);
        headers[0] = conf_bearer(ctx, token);
        headers[1] = "Content-Type: application/json";
        headers[2] = "Accept: text/event-stream";
        reqs[i] = (struct conf_request){.method = "POST",
                                        .url = url,
                                        .headers = headers,
                                        .body = body,
                                        .body_len = strlen(body),
                                        .timeout_ms = 15000};
    }
    const struct conf_response *rs = conf_send_many(ctx, reqs, STREAMS);
    for (int i = 0; i < STREAMS; i++) {
        struct relay r = analyse(ctx, stream_from_response(ctx, &rs[i]));
        assert_clean_end(ctx, &r);
        expected[i] = conf_expected_text_of(ctx, tokens[i], expected[i]);
        bool same = r.text && strcmp(r.text, expected[i]) == 0;
        if (!same)
            print_error("    stream %d: expected %s\n    got %s\n", i + 1, expected[i],
                        r.text ? r.text : "(none)");
        stream_check(ctx, r.st, same,
                     "stream %d of %d running at once differs from the upstream's text", i + 1,
                     STREAMS);
    }
}

/* ---- SSE-15 ---- */

/* An exact stream whose upstream sends chunks without text as @p shape says: the text is
 * the upstream's, no error event, every event a JSON chunk. */
static void
check_textless_chunks(struct conf_ctx *ctx, const char *shape, const char *what)
{
    /* Every attempt meets the shape: a proxy that takes it for a failure cannot retry its
     * way past it. */
    const char *step = conf_str(ctx, "{\"stream\":{\"chunks\":4,%s}}", shape);
    const struct relay r = exact_stream(ctx, conf_str(ctx, "chunks without text: %s", what),
                                        conf_repeat_steps(ctx, step, conf_max_attempts(ctx)));
    /* How it ends ([DONE] once, last) is SSE-3's; here, nothing broken in between. */
    stream_check(ctx, r.st, r.bad == 0, "with %s, %zu event(s) were not JSON objects", what, r.bad);
}

/* SSE-15: a separate last chunk with an empty delta and the finish_reason. */
static void
SSE_15_final_empty_delta_chunk(struct conf_ctx *ctx)
{
    conf_v1_only(ctx, "the mock shapes these textless chunks in the v1 chunk format only; "
                      "v2 textless frames (thinking, empty typing frames) are in every v2 stream");
    check_textless_chunks(ctx, "\"final_empty_delta\":true", "a last chunk with an empty delta");
}

/* SSE-15: chunks with "choices": [] (before the text, and a usage-only one at the end). */
static void
SSE_15_empty_choices_chunks(struct conf_ctx *ctx)
{
    conf_v1_only(ctx, "the mock shapes these textless chunks in the v1 chunk format only; "
                      "v2 textless frames (thinking, empty typing frames) are in every v2 stream");
    check_textless_chunks(ctx, "\"empty_choices\":true", "chunks with an empty choices array");
}

/* SSE-15: deltas without content (a role-only first delta, an empty one mid-stream). */
static void
SSE_15_deltas_without_content(struct conf_ctx *ctx)
{
    conf_v1_only(ctx, "the mock shapes these textless chunks in the v1 chunk format only; "
                      "v2 textless frames (thinking, empty typing frames) are in every v2 stream");
    check_textless_chunks(ctx, "\"no_content_delta\":true", "deltas without content");
}

/* ---- SSE-16..18 ---- */

/* The attempts a non-stream request makes when every one meets a 500; skips when those do
 * not end in a JSON error (RETRY-2, ERR-3 judge that), or when a stream meeting the same
 * 500s does not get an error status (SSE-7 owns that: a proxy that answers 200 at once
 * breaks every failed start alike). */
static size_t
attempts_for_500s(struct conf_ctx *ctx)
{
    const char *steps = conf_repeat_steps(ctx, "{\"status\":500}", conf_max_attempts(ctx) + 1);
    const struct conf_response *probe = NULL;
    size_t n = non_stream_probe(ctx, steps, &probe);
    conf_assume(ctx, is_json_error(ctx, probe),
                "a non-stream request meeting 500s got HTTP %ld without a JSON error body (see "
                "RETRY-2, ERR-3)",
                probe->status);
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", steps);
    const struct stream *st =
        open_stream(ctx, token, body_for(ctx, "failed start", true, INC_TRUE));
    conf_assume(ctx, st->resp.status >= 400,
                "a stream whose every attempt fails with 500 got HTTP %ld (see SSE-7)",
                st->resp.status);
    return n;
}

/* A 200 step answering @p body as @p content_type (plus @p extra, a JSON member list). */
static const char *
raw_200_step(struct conf_ctx *ctx, const char *content_type, const char *body, const char *extra)
{
    cJSON *step = cJSON_CreateObject();
    cJSON_AddNumberToObject(step, "status", 200);
    cJSON_AddStringToObject(step, "content_type", content_type);
    cJSON_AddStringToObject(step, "body", body);
    char *text = cJSON_PrintUnformatted(step);
    cJSON_Delete(step);
    conf_keep(ctx, text, free);
    if (extra && text && strlen(text) > 1)
        return conf_str(ctx, "%.*s,%s}", (int)(strlen(text) - 1), text, extra);
    return text;
}

/* Every attempt of a stream request meets @p step: the caller gets a JSON error status,
 * after as many attempts as upstream 500s cause (@p expect). */
static void
check_failure_each_attempt(struct conf_ctx *ctx, const char *what, const char *step, size_t expect)
{
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", conf_repeat_steps(ctx, step, conf_max_attempts(ctx) + 1));
    const struct stream *st =
        open_stream(ctx, token, body_for(ctx, "not a stream", true, INC_TRUE));
    stream_check(ctx, st, st->resp.status >= 400,
                 "%s on every attempt gave HTTP %ld, not an error status: a failure was "
                 "relayed as success",
                 what, st->resp.status);
    conf_assert_json_error(ctx, &st->resp);
    size_t got = conf_attempts(ctx, token, expect);
    conf_check(ctx, &st->resp, got == expect, "%s caused %zu attempt(s); upstream 500s cause %zu",
               what, got, expect);
}

/* SSE-16: a stream request answered 200 with a JSON completion, the in-band failure payload
 * as JSON, or plain text (no event stream) is a failure: retried like a 500, then an error
 * status. */
static void
SSE_16_non_event_stream_200_is_a_failure(struct conf_ctx *ctx)
{
    size_t expect = attempts_for_500s(ctx);
    const struct {
        const char *what, *content_type, *body;
    } answers[] = {
        {"a JSON completion", "application/json",
         "{\"id\":\"chatcmpl-json\",\"object\":\"chat.completion\",\"created\":1700000000,"
         "\"model\":\"qwen-max\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
         "\"content\":\"not streamed\"},\"finish_reason\":\"stop\"}]}"},
        {"the in-band failure payload as JSON", "application/json",
         "{\"ret\":[\"FAIL_SYS_USER_VALIDATE\",\"RGV587_ERROR::SM\"],\"data\":{}}"},
        {"plain text", "text/plain", "not an event stream\n"},
    };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++)
        check_failure_each_attempt(
            ctx, conf_str(ctx, "a 200 carrying %s", answers[i].what),
            raw_200_step(ctx, answers[i].content_type, answers[i].body, NULL), expect);
}

/* SSE-16: a 200 JSON completion, then a good stream: the caller sees only the good stream. */
static void
SSE_16_non_event_stream_then_stream_gives_exact_text(struct conf_ctx *ctx)
{
    const struct conf_response *probe = NULL;
    size_t n = non_stream_probe(ctx, "[{\"status\":500},{\"ok\":true}]", &probe);
    conf_assume(ctx, n == 2 && probe->status == 200,
                "a non-stream request is not retried after a 500 (see RETRY-1)");
    /* A failed start, then a good stream, is SSE-7's; here the failure is a 200. */
    const char *plain = conf_token(ctx);
    conf_queue(ctx, plain, "chat", "[{\"status\":500},{\"stream\":{\"chunks\":3}}]");
    struct relay pr = analyse(
        ctx, open_stream(ctx, plain, body_for(ctx, "500 first, then a stream", true, INC_TRUE)));
    conf_assume(ctx, pr.st->resp.status == 200 && pr.errors == 0 && pr.content_chunks > 0,
                "a 500 and then a good stream did not give a clean 200 stream (see SSE-7)");
    const char *message = "json first, then a stream";
    const char *token = conf_token(ctx);
    const char *expected = expected_text(ctx, message);
    conf_queue(ctx, token, "chat",
               conf_str(ctx, "[%s,{\"stream\":{\"chunks\":3}}]",
                        raw_200_step(ctx, "application/json",
                                     "{\"choices\":[{\"index\":0,\"message\":{\"role\":"
                                     "\"assistant\",\"content\":\"wrong\"}}]}",
                                     NULL)));
    const struct stream *st = open_stream(ctx, token, body_for(ctx, message, true, INC_TRUE));
    struct relay r = analyse(ctx, st);
    assert_clean_end(ctx, &r);
    assert_text(ctx, &r, expected, "after a 200 that was not an event stream");
    conf_assert_attempts(ctx, token, 2);
}

/* SSE-17: a text/event-stream 200 with no parseable event (gzip-encoded bytes, an HTML
 * page, lines that are no SSE field) is a failure: retried like a 500, then an error
 * status; never an empty completion. */
static void
SSE_17_event_stream_without_events_is_a_failure(struct conf_ctx *ctx)
{
    size_t expect = attempts_for_500s(ctx);
    const char *sse = "text/event-stream";
    check_failure_each_attempt(
        ctx, "an event stream of gzip-encoded bytes",
        raw_200_step(ctx, sse,
                     "\x1f\x8b\x08\x08\xd2\x9c\x6b\x65\x02\xff\xab\x56\x4a\x49\x2c\x49\x54\xb2",
                     "\"headers\":{\"Content-Encoding\":\"gzip\"}"),
        expect);
    check_failure_each_attempt(
        ctx, "an event stream that is an HTML page",
        raw_200_step(ctx, sse,
                     "<!DOCTYPE html>\n<html><body><h1>502 Bad Gateway</h1></body></html>\n", NULL),
        expect);
    check_failure_each_attempt(ctx, "an event stream of junk lines",
                               raw_200_step(ctx, sse, "hello\nworld\n\n", NULL), expect);
}

/* SSE-17: an event stream whose only event is cut (no blank line before the end) delivered
 * nothing: retried like a 500, then an error status. */
static void
SSE_17_cut_only_event_is_a_failure(struct conf_ctx *ctx)
{
    size_t expect = attempts_for_500s(ctx);
    check_failure_each_attempt(
        ctx, "an event stream whose only event has no blank line before the end",
        raw_200_step(ctx, "text/event-stream",
                     "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"cut\"}}]}", NULL),
        expect);
}

/* SSE-17: events reached the caller, then the upstream ended cleanly inside its last event
 * (no blank line, no [DONE]): one error event, never [DONE], nothing retried. */
static void
SSE_17_cut_last_event_gives_one_error_event(struct conf_ctx *ctx)
{
    const char *message = "cut at the end";
    const char *token = conf_token(ctx);
    const char *expected = expected_text(ctx, message);
    /* On every attempt: a proxy that retried could not reach a clean answer that way. */
    conf_queue(ctx, token, "chat",
               conf_repeat_steps(ctx,
                                 conf_str(ctx,
                                          "{\"stream\":{\"chunks\":4,\"chunk_delay_ms\":%d,"
                                          "\"cut_last_event\":true}}",
                                          PACE_MS),
                                 conf_max_attempts(ctx)));
    const struct stream *st = open_stream(ctx, token, body_for(ctx, message, true, INC_TRUE));
    struct relay r = analyse(ctx, st);
    conf_assume(ctx, st->resp.status == 200,
                "events paced %d ms apart did not reach the caller before the cut: HTTP %ld "
                "(see SSE-2)",
                PACE_MS, st->resp.status);
    stream_check(ctx, st, r.dones == 0,
                 "a stream cut inside its last event ended with data: [DONE]: a truncated "
                 "answer looks complete");
    stream_check(ctx, st, r.errors == 1, "expected one error event, got %zu", r.errors);
    /* v1 cuts the last text piece; v2's last event is the answer's finished frame, which
     * holds no text, so there the whole text may have been relayed before the cut. */
    expected = conf_expected_text_of(ctx, token, expected);
    bool prefix = r.text &&
                  (strlen(r.text) < strlen(expected) ||
                   (conf_dialect_v2(ctx) && strlen(r.text) == strlen(expected))) &&
                  strncmp(expected, r.text, strlen(r.text)) == 0;
    if (!prefix)
        print_error("    upstream text: %s\n    caller's text: %s\n", expected,
                    r.text ? r.text : "(none)");
    stream_check(ctx, st, prefix,
                 "the caller's text is not a proper prefix of the upstream's: the cut event "
                 "was relayed, or text was replayed");
    conf_assert_attempts(ctx, token, 1);
}

/* SSE-18: a caller that leaves before the first byte of its stream stops the retries: no
 * upstream attempt starts later than 1 s after it left. Every attempt answers 500 after
 * half the attempt timeout, so the retries would run on for seconds. */
static void
SSE_18_caller_leaving_before_the_first_byte_stops_retries(struct conf_ctx *ctx)
{
    enum { LEAVE_MS = 100, MARGIN_MS = 300 };
    const struct conf_profile *p = profile(ctx);
    int64_t delay = p->upstream_timeout_ms / 2 > 1500 ? 1500 : p->upstream_timeout_ms / 2;
    int64_t budget = p->deadline_ms > 0 ? p->deadline_ms : INT64_MAX;
    int64_t attempts = conf_max_attempts(ctx);
    if (delay > 0 && budget / delay < attempts)
        attempts = budget / delay;
    /* When the retries would be over within 1 s of the caller leaving anyway, a proxy that
     * ignores the caller cannot be told apart. */
    conf_runnable(ctx, (attempts - 1) * delay > LEAVE_MS + GONE_LIMIT_MS + MARGIN_MS,
                  "the profile's retries (%u attempts, upstream timeout %lld ms, deadline "
                  "%lld ms) end within %d ms of the caller leaving: allow more attempts or a "
                  "longer deadline",
                  conf_max_attempts(ctx), (long long)p->upstream_timeout_ms,
                  (long long)p->deadline_ms, LEAVE_MS + GONE_LIMIT_MS + MARGIN_MS);
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat",
               conf_repeat_steps(
                   ctx, conf_str(ctx, "{\"status\":500,\"delay_ms\":%lld}", (long long)delay),
                   conf_max_attempts(ctx) + 1));
    struct stream_opts o = {.timeout_ms = LEAVE_MS};
    const struct stream *st =
        open_stream_ex(ctx, token, body_for(ctx, "leaving before the start", true, INC_TRUE), &o);
    int64_t left = st->resp.done_ms;
    conf_assume(ctx, st->resp.status == 0,
                "the caller got HTTP %ld before any attempt could succeed: the answer started "
                "before its first event (see SSE-7)",
                st->resp.status);
    /* Long enough for the attempts a proxy that ignores the caller would still make to
     * reach the journal (each is recorded when it ends). */
    conf_sleep_ms(attempts * (delay + 100) + 500);
    const cJSON *journal = conf_attempt_entries(ctx, conf_journal(ctx, token));
    size_t n = (size_t)cJSON_GetArraySize(journal);
    conf_check(ctx, NULL, n >= 1, "harness: the journal shows no attempt");
    for (size_t i = 0; i < n; i++) {
        int64_t at = conf_entry_received_ms(cJSON_GetArrayItem(journal, (int)i)) - left;
        conf_check(ctx, NULL, at <= GONE_LIMIT_MS,
                   "attempt %zu of %zu started %lld ms after the caller left (limit %d ms): "
                   "the proxy kept retrying for nobody",
                   i + 1, n, (long long)at, GONE_LIMIT_MS);
    }
}

static const struct CMUnitTest stream_tests[] = {
    CONF_TEST(SSE_1, SSE_1_stream_answers_event_stream_no_cache),
    CONF_TEST_SHOULD(SSE_1, SSE_1_stream_sends_x_accel_buffering_no),
    CONF_TEST(SSE_2, SSE_2_events_relayed_as_they_arrive),
    CONF_TEST(SSE_3, SSE_3_events_are_chunks_ending_with_one_done),
    CONF_TEST(SSE_4, SSE_4_cumulative_upstream_relayed_as_exact_deltas),
    CONF_TEST(SSE_4, SSE_4_incremental_upstream_keeps_repeated_pieces),
    CONF_TEST(SSE_4, SSE_4_final_repeat_adds_nothing_cumulative),
    CONF_TEST(SSE_4, SSE_4_final_repeat_adds_nothing_incremental),
    CONF_TEST_SHOULD(SSE_4, SSE_4_upstream_ignoring_incremental_flag_relayed_exactly),
    CONF_TEST(SSE_5, SSE_5_utf8_split_across_writes_arrives_intact),
    CONF_TEST(SSE_6, SSE_6_crlf_line_endings),
    CONF_TEST(SSE_6, SSE_6_cr_line_endings),
    CONF_TEST(SSE_6, SSE_6_comment_lines),
    CONF_TEST(SSE_6, SSE_6_all_events_in_one_write),
    CONF_TEST(SSE_6, SSE_6_two_events_per_write),
    CONF_TEST(SSE_6, SSE_6_event_spread_over_many_writes),
    CONF_TEST(SSE_7, SSE_7_upstream_500s_give_json_error_not_200),
    CONF_TEST(SSE_7, SSE_7_html_pages_give_json_error_not_200),
    CONF_TEST(SSE_7, SSE_7_dropped_connections_give_json_error_not_200),
    CONF_TEST(SSE_7, SSE_7_failure_then_success_streams_exact_text),
    CONF_TEST(SSE_8, SSE_8_drop_mid_stream_gives_one_error_event),
    CONF_TEST(SSE_8, SSE_8_stall_mid_stream_gives_one_error_event),
    CONF_TEST_SHOULD(SSE_8, SSE_8_no_done_after_the_error_event),
    CONF_TEST(SSE_9, SSE_9_caller_disconnect_closes_upstream),
    CONF_TEST(SSE_10, SSE_10_keepalive_comments_during_silences),
    CONF_TEST(SSE_10, SSE_10_flowing_stream_is_not_cut),
    CONF_TEST(SSE_10, SSE_10_stall_past_idle_timeout_ends_stream),
    CONF_TEST(SSE_10, SSE_10_trickle_does_not_hold_the_stream),
    CONF_TEST(SSE_11, SSE_11_slow_reader_gets_the_whole_stream),
    CONF_TEST(SSE_12, SSE_12_chunks_are_complete),
    CONF_TEST(SSE_12, SSE_12_envelope_filled_in),
    CONF_TEST(SSE_12, SSE_12_finish_reason_filled_in),
    CONF_TEST(SSE_12, SSE_12_done_added),
    CONF_TEST(SSE_13, SSE_13_inband_failures_retried_then_error_status),
    CONF_TEST(SSE_13, SSE_13_inband_failure_then_success_streams_exact_text),
    CONF_TEST(SSE_14, SSE_14_concurrent_streams_are_each_exact),
    CONF_TEST(SSE_15, SSE_15_final_empty_delta_chunk),
    CONF_TEST(SSE_15, SSE_15_empty_choices_chunks),
    CONF_TEST(SSE_15, SSE_15_deltas_without_content),
    CONF_TEST(SSE_16, SSE_16_non_event_stream_200_is_a_failure),
    CONF_TEST(SSE_16, SSE_16_non_event_stream_then_stream_gives_exact_text),
    CONF_TEST(SSE_17, SSE_17_event_stream_without_events_is_a_failure),
    CONF_TEST(SSE_17, SSE_17_cut_only_event_is_a_failure),
    CONF_TEST(SSE_17, SSE_17_cut_last_event_gives_one_error_event),
    CONF_TEST(SSE_18, SSE_18_caller_leaving_before_the_first_byte_stops_retries),
};

CONF_GROUP(stream, stream_tests);
