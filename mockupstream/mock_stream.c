#include "mock_stream.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "mock_fixtures.h"
#include "mock_knobs.h"
#include "qwenkit/buf.h"

void
mock_stream_opts_init(struct mock_stream_opts *o)
{
    memset(o, 0, sizeof *o);
    o->truncate_after = -1;
    o->stall_after = -1;
    o->stall_ms = 60000;
    o->cumulative = -1;
    o->done = true;
    o->finish_reason = true;
    o->usage = true;
    o->envelope = true;
    o->error_after = -1;
}

bool
mock_stream_given(const struct mock_stream_opts *o, const char *key)
{
    for (size_t i = 0; i < mock_stream_knobs.count && i < 64; i++)
        if (strcmp(mock_stream_knobs.rows[i].key, key) == 0)
            return (o->given >> i) & 1u;
    return false;
}

char *
mock_answer_text(const struct mock_answer *ans)
{
    struct qk_buf b;
    qk_buf_init(&b, SIZE_MAX / 2);
    for (size_t i = 0; i < ans->n_pieces; i++)
        if (qk_buf_append_str(&b, ans->pieces[i]) != QK_OK) {
            qk_buf_free(&b);
            return NULL;
        }
    return qk_buf_take(&b, NULL);
}

/* Bytes of the UTF-8 sequence starting with lead byte @p c (1 for ASCII). */
static size_t
utf8_len(unsigned char c)
{
    if (c >= 0xF0)
        return 4;
    if (c >= 0xE0)
        return 3;
    if (c >= 0xC0)
        return 2;
    return 1;
}

/* Re-splits @p text into @p n pieces of about equal character count. Writes piece
 * boundaries (byte offsets, n+1 of them) into @p cuts. */
static size_t
split_chars(const char *text, size_t n, size_t *cuts)
{
    size_t len = strlen(text), chars = 0;
    for (size_t i = 0; i < len; i += utf8_len((unsigned char)text[i]))
        chars++;
    if (n > chars)
        n = chars ? chars : 1;
    size_t piece = 0, seen = 0, i = 0;
    cuts[0] = 0;
    while (i < len && piece + 1 < n) {
        i += utf8_len((unsigned char)text[i]);
        seen++;
        if (seen * n >= (piece + 1) * chars)
            cuts[++piece] = i;
    }
    cuts[n] = len;
    return n;
}

static const char *
eol_str(enum mock_eol eol)
{
    return eol == MOCK_EOL_CRLF ? "\r\n" : eol == MOCK_EOL_CR ? "\r" : "\n";
}

/* What one chunk event carries. Text chunks carry role and content; the extra chunks of
 * the stream shapes carry less. finish/usage apply when the options allow them. */
struct chunk {
    const char *content; /* NULL: a delta without content */
    bool role;           /* the delta says role "assistant" */
    bool no_choices;     /* "choices": [] (no delta at all) */
    bool finish;         /* carries finish_reason */
    bool usage;          /* carries usage */
};

/* One `data:` event for a chunk. */
static enum qk_err
append_chunk_event(struct qk_buf *ev, const struct mock_answer *ans,
                   const struct mock_stream_opts *o, const struct chunk *c)
{
    enum qk_err rc = QK_NOMEM;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return QK_NOMEM;
    if (o->envelope) {
        cJSON_AddStringToObject(root, "id", ans->id);
        cJSON_AddStringToObject(root, "object", "chat.completion.chunk");
        cJSON_AddNumberToObject(root, "created", (double)ans->created);
        cJSON_AddStringToObject(root, "model", ans->model);
    }
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    if (!c->no_choices) {
        cJSON *choice = cJSON_CreateObject();
        cJSON_AddItemToArray(choices, choice);
        cJSON_AddNumberToObject(choice, "index", 0);
        cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
        if (c->role)
            cJSON_AddStringToObject(delta, "role", "assistant");
        if (c->content)
            cJSON_AddStringToObject(delta, "content", c->content);
        if (c->finish && o->finish_reason)
            cJSON_AddStringToObject(choice, "finish_reason", ans->finish);
        else
            cJSON_AddNullToObject(choice, "finish_reason");
    }
    if (c->usage && o->usage) {
        int out_tokens = (int)ans->n_pieces;
        cJSON *usage = cJSON_AddObjectToObject(root, "usage");
        cJSON_AddNumberToObject(usage, "input_tokens", ans->input_tokens);
        cJSON_AddNumberToObject(usage, "output_tokens", out_tokens);
        cJSON_AddNumberToObject(usage, "total_tokens", ans->input_tokens + out_tokens);
    }
    char *json = cJSON_PrintUnformatted(root);
    if (json) {
        const char *eol = eol_str(o->eol);
        rc = qk_buf_appendf(ev, "data: %s%s%s", json, eol, eol);
        cJSON_free(json);
    }
    cJSON_Delete(root);
    return rc;
}

/* The serialised events of a plan and where each one ends. */
struct event_list {
    struct qk_buf bytes;
    size_t ends[MOCK_ANSWER_MAX + 8];
    size_t n;
};

/* Appends one chunk event, after its keep-alive comment when asked. */
static enum qk_err
push_chunk(struct event_list *el, const struct mock_answer *ans, const struct mock_stream_opts *o,
           const struct chunk *c)
{
    enum qk_err rc = QK_OK;
    if (o->comments)
        rc = qk_buf_appendf(&el->bytes, ": keep-alive%s", eol_str(o->eol));
    if (rc == QK_OK)
        rc = append_chunk_event(&el->bytes, ans, o, c);
    if (rc == QK_OK)
        el->ends[el->n++] = qk_buf_len(&el->bytes);
    return rc;
}

/* Appends a write of @p len bytes at @p data, which points into the plan's bytes. */
static enum qk_err
plan_push(struct mock_plan *p, size_t *alloc, const char *data, size_t len, int delay, int events)
{
    if (p->count == *alloc) {
        size_t n = *alloc ? *alloc * 2 : 16;
        struct mock_write *w = realloc(p->writes, n * sizeof *w);
        if (!w)
            return QK_NOMEM;
        p->writes = w;
        *alloc = n;
    }
    p->writes[p->count++] = (struct mock_write){data, len, delay, events};
    return QK_OK;
}

/* Pushes one group of events (@p len bytes at @p d) as one write, or as several writes
 * cut inside multi-byte characters when split_utf8 asks for it. */
static enum qk_err
push_group(struct mock_plan *p, size_t *alloc, const char *d, size_t len, int events, int delay,
           bool split_utf8)
{
    if (!split_utf8)
        return plan_push(p, alloc, d, len, delay, events);
    /* Cut one byte into every multi-byte character (up to 6 cuts per group), so
     * each write after the first starts inside a character. */
    size_t start = 0, cuts = 0;
    enum qk_err rc = QK_OK;
    for (size_t i = 0; i < len && cuts < 6; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c >= 0xC0 && i + 1 < len) {
            size_t cut = i + 1;
            rc = plan_push(p, alloc, d + start, cut - start,
                           start ? MOCK_SPLIT_WRITE_DELAY_MS : delay, 0);
            if (rc != QK_OK)
                return rc;
            start = cut;
            cuts++;
            i += utf8_len(c) - 1;
        }
    }
    return plan_push(p, alloc, d + start, len - start, start ? MOCK_SPLIT_WRITE_DELAY_MS : delay,
                     events);
}

uint64_t
mock_stream_worst_bytes(const struct mock_stream_opts *o, bool cumulative)
{
    /* A piece repeated until it is at least piece_bytes long ends shorter than
     * piece_bytes plus one copy of itself. */
    uint64_t piece =
        (uint64_t)(o->piece_bytes > 0 ? o->piece_bytes : 0) + MOCK_ANSWER_PIECE_MAX_BYTES;
    uint64_t text = MOCK_ANSWER_MAX_PIECES * piece;
    uint64_t events = o->chunks <= 0                ? MOCK_ANSWER_MAX_PIECES
                      : o->chunks < MOCK_ANSWER_MAX ? (uint64_t)o->chunks
                                                    : MOCK_ANSWER_MAX;
    return (cumulative ? events * text : text) + (o->final_repeat ? text : 0);
}

enum qk_err
mock_text_build(const char *const *pieces, size_t n_pieces, const struct mock_stream_opts *o,
                char **text_out, size_t *cuts, size_t *n_out)
{
    size_t reps[MOCK_ANSWER_MAX];
    /* The text and its natural piece boundaries; piece_bytes repeats each piece
     * whole (so characters stay intact) until it is at least that long. Sized before
     * it is built, so a text too large to stream costs nothing. */
    size_t n = n_pieces > MOCK_ANSWER_MAX ? MOCK_ANSWER_MAX : n_pieces;
    size_t want_bytes = o->piece_bytes > 0 ? (size_t)o->piece_bytes : 0, len = 0;
    cuts[0] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t plen = strlen(pieces[i]);
        reps[i] = plen == 0 || plen >= want_bytes ? 1 : (want_bytes + plen - 1) / plen;
        len += reps[i] * plen;
        cuts[i + 1] = len;
        if (len > MOCK_STREAM_MAX_BYTES)
            return QK_TOO_BIG;
    }
    char *text = malloc(len + 1);
    if (!text)
        return QK_NOMEM;
    for (size_t i = 0, off = 0; i < n; i++) {
        size_t plen = strlen(pieces[i]);
        for (size_t k = 0; k < reps[i]; k++, off += plen)
            memcpy(text + off, pieces[i], plen);
    }
    text[len] = '\0';
    if (o->chunks > 0) {
        size_t want = (size_t)o->chunks > MOCK_ANSWER_MAX ? MOCK_ANSWER_MAX : (size_t)o->chunks;
        n = split_chars(text, want, cuts);
    }
    *text_out = text;
    *n_out = n;
    return QK_OK;
}

const char *
mock_eol_str(enum mock_eol eol)
{
    return eol_str(eol);
}

enum qk_err
mock_plan_assemble(struct qk_buf *bytes, size_t *ends, size_t n_events,
                   const struct mock_stream_opts *o, struct mock_plan *out)
{
    enum qk_err rc = QK_OK;
    struct mock_plan plan = {0};
    size_t alloc = 0;
    if (o->cut_last_event && n_events > 0)
        ends[n_events - 1] -= 2 * strlen(eol_str(o->eol)); /* its blank line is never sent */

    /* Faults that end the stream early cut the event list. */
    size_t keep = n_events;
    if (o->truncate_after >= 0 && (size_t)o->truncate_after < keep) {
        keep = (size_t)o->truncate_after;
        plan.end = MOCK_END_CLOSE;
    }
    if (o->stall_after >= 0 && (size_t)o->stall_after < keep) {
        keep = (size_t)o->stall_after;
        plan.end = MOCK_END_STALL;
        plan.stall_ms = o->stall_ms;
    }

    /* Group events into writes, which point into the one copy of the bytes. */
    plan._bytes = qk_buf_take(bytes, NULL);
    if (!plan._bytes) {
        rc = QK_NOMEM;
        goto out;
    }
    size_t per_write = o->coalesce < 0 ? keep : o->coalesce > 1 ? (size_t)o->coalesce : 1;
    if (per_write == 0)
        per_write = 1;
    size_t start = 0;
    for (size_t e = 0; e < keep; e += per_write) {
        size_t last = e + per_write < keep ? e + per_write : keep;
        rc = push_group(&plan, &alloc, plan._bytes + start, ends[last - 1] - start, (int)(last - e),
                        e ? o->chunk_delay_ms : 0, o->split_utf8);
        if (rc != QK_OK)
            goto out;
        start = ends[last - 1];
    }
    if (plan.end == MOCK_END_STALL && o->trickle_ms > 0) {
        /* Bytes that never complete a line, let alone an event: what a stuck upstream or a
         * slowloris sends. The stall then lasts as long as the trickle, and closes. */
        static const char head[] = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"";
        int count = o->stall_ms / o->trickle_ms;
        if (count > 100000)
            count = 100000; /* a bound on the plan's size; the stall just ends sooner */
        for (int i = 0; i < count && rc == QK_OK; i++) {
            const char *byte = (size_t)i < sizeof head - 1 ? head + i : "x";
            rc = plan_push(&plan, &alloc, byte, 1, o->trickle_ms, 0);
        }
        if (rc != QK_OK)
            goto out;
        plan.stall_ms = 0;
    }
out:
    qk_buf_free(bytes);
    if (rc != QK_OK)
        mock_plan_free(&plan);
    else
        *out = plan;
    return rc;
}

enum qk_err
mock_plan_build(const struct mock_answer *ans, const struct mock_stream_opts *o, bool cumulative,
                struct mock_plan *out)
{
    size_t cuts[MOCK_ANSWER_MAX + 2];
    struct event_list el;
    qk_buf_init(&el.bytes, SIZE_MAX / 2);
    el.n = 0;
    char *text = NULL;
    size_t n = 0;
    enum qk_err rc = mock_text_build(ans->pieces, ans->n_pieces, o, &text, cuts, &n);
    if (rc != QK_OK)
        return rc;
    size_t len = cuts[n];

    /* What the events carry in all, before any is built: cumulative deltas re-send the
     * text so far in each one, which grows with the square of the chunks. */
    uint64_t carried = o->final_repeat ? len : 0;
    for (size_t i = 0; i < n; i++)
        carried += cuts[i + 1] - (cumulative ? 0 : cuts[i]);
    if (carried > MOCK_STREAM_MAX_BYTES) {
        free(text);
        return QK_TOO_BIG;
    }

    /* Serialise every event first; offsets mark where each one ends. The chunk that
     * finishes is the last one with a choice: the empty-delta one, else the repeat,
     * else the last piece. Usage goes with it, unless empty_choices sends it apart. */
    bool usage_apart = o->empty_choices && o->usage;
    bool extra_last = o->final_repeat || o->final_empty_delta;
    if (o->empty_choices)
        rc = push_chunk(&el, ans, o, &(struct chunk){.no_choices = true});
    if (rc == QK_OK && o->no_content_delta)
        rc = push_chunk(&el, ans, o, &(struct chunk){.role = true});
    for (size_t i = 0; i < n && rc == QK_OK; i++) {
        if (o->no_content_delta && i == n / 2)
            rc = push_chunk(&el, ans, o, &(struct chunk){0});
        if (rc != QK_OK)
            break;
        size_t from = cumulative ? 0 : cuts[i];
        size_t to = cuts[i + 1];
        char saved = text[to];
        text[to] = '\0';
        bool last = i + 1 == n && !extra_last;
        rc = push_chunk(&el, ans, o,
                        &(struct chunk){.content = text + from,
                                        .role = true,
                                        .finish = last,
                                        .usage = last && !usage_apart});
        text[to] = saved;
    }
    if (rc == QK_OK && o->final_repeat)
        rc = push_chunk(&el, ans, o,
                        &(struct chunk){.content = text,
                                        .role = true,
                                        .finish = !o->final_empty_delta,
                                        .usage = !o->final_empty_delta && !usage_apart});
    if (rc == QK_OK && o->final_empty_delta)
        rc = push_chunk(&el, ans, o, &(struct chunk){.finish = true, .usage = !usage_apart});
    if (rc == QK_OK && usage_apart)
        rc = push_chunk(&el, ans, o, &(struct chunk){.no_choices = true, .usage = true});
    if (rc == QK_OK && o->done && !o->cut_last_event) {
        const char *eol = eol_str(o->eol);
        rc = qk_buf_appendf(&el.bytes, "data: [DONE]%s%s", eol, eol);
        if (rc == QK_OK)
            el.ends[el.n++] = qk_buf_len(&el.bytes);
    }
    free(text);
    if (rc != QK_OK) {
        qk_buf_free(&el.bytes);
        return rc;
    }
    return mock_plan_assemble(&el.bytes, el.ends, el.n, o, out);
}

enum qk_err
mock_plan_single_event(const char *json, struct mock_plan *out)
{
    struct mock_plan plan = {0};
    size_t alloc = 0;
    struct qk_buf ev;
    qk_buf_init(&ev, SIZE_MAX / 2);
    enum qk_err rc = qk_buf_appendf(&ev, "data: %s\n\n", json);
    size_t len = qk_buf_len(&ev);
    if (rc == QK_OK)
        rc = (plan._bytes = qk_buf_take(&ev, NULL)) ? QK_OK : QK_NOMEM;
    if (rc == QK_OK)
        rc = plan_push(&plan, &alloc, plan._bytes, len, 0, 1);
    qk_buf_free(&ev);
    if (rc != QK_OK)
        mock_plan_free(&plan);
    else
        *out = plan;
    return rc;
}

void
mock_plan_free(struct mock_plan *plan)
{
    if (!plan)
        return;
    free(plan->writes);
    free(plan->_bytes);
    memset(plan, 0, sizeof *plan);
}
