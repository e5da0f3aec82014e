#include "sse_norm.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mutant.h"

/* The longest event the relay accepts. A cumulative upstream repeats the whole text in
 * every event, so one line can be as long as the answer: a cumulative answer is capped
 * here, an incremental one only per piece. It sits well above what kernel socket buffers
 * hold (4 MiB by default on Linux), so SSE-11 can be checked with a stream the kernel
 * cannot hide. */
#define ANSWER_CAP (16 * 1024 * 1024)

/* Buffers that grew past this for one event are given back after it, so a stream holds
 * its largest event only while it reads it. */
#define KEEP_BYTES (64 * 1024)

/* What dedup needs of the text sent so far (SSE-4), in bounded memory: its length, a hash
 * of all but its last TAIL_BYTES, and those bytes. "Begins with the whole text so far" is
 * then a length check, the hash of the chunk's head and a comparison of the tail: exact
 * but for a 64-bit hash collision of two different heads of the same length. */
#define TAIL_BYTES 4096
#define FNV_OFFSET 0xcbf29ce484222325ULL

struct sent_text {
    size_t len;         /* bytes of text so far */
    uint64_t head_hash; /* FNV-1a of its first len - tail_len bytes */
    size_t tail_len;
    char tail[TAIL_BYTES]; /* its last tail_len bytes */
};

static uint64_t
fnv1a(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void
sent_reset(struct sent_text *t)
{
    t->len = 0;
    t->head_hash = FNV_OFFSET;
    t->tail_len = 0;
}

/* The text grew by @p p: bytes leaving the tail go into the head's hash. */
static void
sent_append(struct sent_text *t, const char *p, size_t n)
{
    t->len += n;
    if (n >= TAIL_BYTES) {
        t->head_hash = fnv1a(t->head_hash, t->tail, t->tail_len);
        t->head_hash = fnv1a(t->head_hash, p, n - TAIL_BYTES);
        memcpy(t->tail, p + n - TAIL_BYTES, TAIL_BYTES);
        t->tail_len = TAIL_BYTES;
        return;
    }
    size_t over = t->tail_len + n > TAIL_BYTES ? t->tail_len + n - TAIL_BYTES : 0;
    t->head_hash = fnv1a(t->head_hash, t->tail, over);
    memmove(t->tail, t->tail + over, t->tail_len - over);
    t->tail_len -= over;
    memcpy(t->tail + t->tail_len, p, n);
    t->tail_len += n;
}

struct qp_sse_norm {
    bool cumulative; /* current interpretation of delta.content */
    bool done;       /* [DONE] seen */
    bool finish_sent;
    bool role_sent;
    size_t pieces; /* content-bearing chunks seen */
    size_t events_in;  /* upstream events that parsed (a JSON chunk or [DONE]) */
    size_t progress;   /* complete events and comment lines (SSE-10's sign of life) */
    size_t events_out;
    struct sent_text text; /* the text so far, as dedup needs it */
    struct qk_buf line; /* the line being read */
    struct qk_buf data; /* data lines of the event being read, from data_off on */
    size_t data_off;    /* the line moved into data kept its "data: " prefix */
    struct qk_buf prev; /* mutant naive_prefix_dedup: the previous chunk's raw content */
    bool data_seen;
    bool after_cr;
    char *model, *id;
    long long created;
    char inband[256];
};

static struct qk_buf *line_buffer(struct qp_sse_norm *n);

struct qp_sse_norm *
qp_sse_norm_new(bool incremental_requested, const char *model, const char *id, long long now_s)
{
    struct qp_sse_norm *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->cumulative = !incremental_requested;
    sent_reset(&n->text);
    qk_buf_init(&n->line, ANSWER_CAP);
    qk_buf_init(&n->data, ANSWER_CAP);
    qk_buf_init(&n->prev, ANSWER_CAP);
    n->model = strdup(model ? model : "");
    n->id = strdup(id ? id : "chatcmpl-0");
    n->created = now_s;
    if (!n->model || !n->id) {
        qp_sse_norm_free(n);
        return NULL;
    }
    if (QP_MUTANT(shared_line_buffer))
        qk_buf_reset(line_buffer(n)); /* shared, but fresh for each stream: only streams at
                                         once mix (SSE-14), not one cut stream and the next */
    return n;
}

void
qp_sse_norm_free(struct qp_sse_norm *n)
{
    if (!n)
        return;
    qk_buf_free(&n->line);
    qk_buf_free(&n->data);
    qk_buf_free(&n->prev);
    free(n->model);
    free(n->id);
    free(n);
}

size_t
qp_sse_norm_events(const struct qp_sse_norm *n)
{
    return n->events_out;
}

const char *
qp_sse_norm_inband_message(const struct qp_sse_norm *n)
{
    return n->inband;
}

size_t
qp_sse_norm_progress(const struct qp_sse_norm *n)
{
    return n->progress;
}

enum qp_sse_end
qp_sse_norm_end(const struct qp_sse_norm *n)
{
    if (n->done || QP_MUTANT(done_on_junk_stream))
        return QP_SSE_END_CLEAN;
    /* Data lines read but not yet dispatched, or a data line cut short: WHATWG discards
     * such an event at the end, and so would the caller's SDK; it is a truncation. */
    const struct qk_buf *lb = line_buffer((struct qp_sse_norm *)n);
    size_t ll = qk_buf_len(lb);
    bool partial_data = ll > 0 && strncmp(qk_buf_ptr(lb), "data", ll < 4 ? ll : 4) == 0;
    if (n->data_seen || partial_data)
        return QP_SSE_END_CUT;
    return n->events_in == 0 ? QP_SSE_END_NO_EVENT : QP_SSE_END_CLEAN;
}

/* The service's in-band failures: {"ret":["FAIL_..."]}, {"success":false,...},
 * {"error":...}. */
static bool
is_inband_failure(const cJSON *o, char *msg, size_t len)
{
    const cJSON *ret = cJSON_GetObjectItemCaseSensitive(o, "ret");
    const cJSON *success = cJSON_GetObjectItemCaseSensitive(o, "success");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (cJSON_IsArray(ret)) {
        const cJSON *first = cJSON_GetArrayItem(ret, 0);
        if (cJSON_IsString(first) && strncmp(first->valuestring, "SUCCESS", 7) != 0) {
            snprintf(msg, len, "upstream refused the request: %s", first->valuestring);
            return true;
        }
    }
    if (cJSON_IsFalse(success)) {
        const cJSON *code =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "data"), "code");
        snprintf(msg, len, "upstream failure: %s",
                 cJSON_IsString(code) ? code->valuestring : "success=false");
        return true;
    }
    if (error && !cJSON_IsNull(error)) {
        const cJSON *m =
            cJSON_IsObject(error) ? cJSON_GetObjectItemCaseSensitive(error, "message") : error;
        snprintf(msg, len, "upstream error: %s", cJSON_IsString(m) ? m->valuestring : "unknown");
        return true;
    }
    return false;
}

/* A `created` at or above this is milliseconds: seconds reach it in the year 5138. */
#define SECONDS_CEILING 1e11

/* Seconds, whatever unit the upstream used (some send milliseconds); @p fallback for a
 * value that is neither (negative, huge, inf): never a cast out of range. */
static long long
seconds(double v, long long fallback)
{
    if (!isfinite(v) || v <= 0)
        return fallback;
    if (v >= SECONDS_CEILING)
        v /= 1000.0;
    return v < SECONDS_CEILING ? (long long)v : fallback;
}

/* A token count the caller can use: a finite, non-negative number below 2^53 (exact in a
 * double). */
static bool
token_count(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0 &&
           v->valuedouble < 9007199254740992.0;
}

static enum qp_sse_status
emit_chunk(struct qp_sse_norm *n, const char *delta, size_t delta_len, const char *finish,
           const cJSON *usage, struct qk_buf *out)
{
    enum qp_sse_status st = QP_SSE_NOMEM;
    cJSON *o = cJSON_CreateObject();
    cJSON *choice = cJSON_CreateObject();
    cJSON *d = cJSON_CreateObject();
    char *content = strndup(delta, delta_len);
    if (!o || !choice || !d || !content) {
        cJSON_Delete(o);
        cJSON_Delete(choice);
        cJSON_Delete(d);
        free(content);
        return QP_SSE_NOMEM;
    }
    cJSON_AddStringToObject(o, "id", n->id);
    cJSON_AddStringToObject(o, "object", "chat.completion.chunk");
    /* Mutant raw_chunks: milliseconds, as some proxies send (SSE-12). */
    cJSON_AddNumberToObject(o, "created",
                            (double)n->created * (QP_MUTANT(raw_chunks) ? 1000.0 : 1.0));
    cJSON_AddStringToObject(o, "model", n->model);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
    cJSON_AddNumberToObject(choice, "index", 0);
    cJSON_AddItemToObject(choice, "delta", d);
    if (!n->role_sent)
        cJSON_AddStringToObject(d, "role", "assistant");
    cJSON_AddStringToObject(d, "content", content);
    if (finish)
        cJSON_AddStringToObject(choice, "finish_reason", finish);
    else
        cJSON_AddNullToObject(choice, "finish_reason");
    if (usage) {
        /* The upstream's DashScope names, mapped to OpenAI's. */
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(usage, "input_tokens");
        const cJSON *outt = cJSON_GetObjectItemCaseSensitive(usage, "output_tokens");
        if (token_count(in) && token_count(outt)) { /* else no usage: never inf or NaN */
            cJSON *u = cJSON_AddObjectToObject(o, "usage");
            cJSON_AddNumberToObject(u, "prompt_tokens", in->valuedouble);
            cJSON_AddNumberToObject(u, "completion_tokens", outt->valuedouble);
            cJSON_AddNumberToObject(u, "total_tokens", in->valuedouble + outt->valuedouble);
        }
    }
    char *s = cJSON_PrintUnformatted(o);
    if (s && QP_MUTANT(sse_extra_fields) &&
        qk_buf_appendf(out, "event: message\nid: %zu\n", n->events_out + 1) != QK_OK) {
        cJSON_free(s);
        s = NULL;
    }
    if (s && qk_buf_appendf(out, "data: %s\n\n", s) == QK_OK) {
        st = QP_SSE_OK;
        n->role_sent = true;
        n->events_out++;
        if (finish)
            n->finish_sent = true;
    }
    cJSON_free(s);
    cJSON_Delete(o);
    free(content);
    return st;
}

/* Works out the new text a chunk carries (see the rule in the header). */
/* @return whether @p c begins with the whole text so far. */
static bool
new_text(struct qp_sse_norm *n, const char *c, size_t clen, size_t *off)
{
    const struct sent_text *t = &n->text;
    size_t tlen = t->len;
    if (QP_MUTANT(cumulative_passthrough)) {
        *off = 0; /* every delta relayed as it came */
        n->cumulative = false;
        return false;
    }
    if (QP_MUTANT(naive_prefix_dedup)) {
        /* "if the new text starts with the previous one, send the suffix" */
        const char *p = qk_buf_ptr(&n->prev);
        size_t plen = qk_buf_len(&n->prev);
        *off = plen > 0 && clen >= plen && memcmp(c, p, plen) == 0 ? plen : 0;
        n->cumulative = false;
        qk_buf_reset(&n->prev);
        if (qk_buf_append(&n->prev, c, clen) != QK_OK)
            qk_buf_reset(&n->prev);
        return false;
    }
    size_t head = tlen - t->tail_len;
    bool head_same = clen >= head && fnv1a(FNV_OFFSET, c, head) == t->head_hash;
    bool extends = head_same && clen >= tlen && memcmp(c + head, t->tail, t->tail_len) == 0;
    if (n->cumulative) {
        if (extends) {
            *off = tlen;
        } else {
            /* Not an extension (the upstream rewrote earlier text): relay what follows
             * the common prefix, since sent text cannot be taken back. A rewrite before
             * the kept tail relays only what goes past the text already sent. */
            size_t k = clen < tlen ? clen : tlen;
            if (head_same)
                for (k = head; k < clen && k < tlen && c[k] == t->tail[k - head];)
                    k++;
            while (k > 0 && k < clen && ((unsigned char)c[k] & 0xC0) == 0x80)
                k--; /* stay on a character boundary */
            *off = k;
        }
        return extends;
    }
    /* Longer and starting with all the text so far: cumulative. Exactly equal:
     * a repeat of everything, but only trusted after two pieces, so that a
     * genuine second "哈" after a first "哈" is kept. */
    if (tlen > 0 && extends && (clen > tlen || n->pieces >= 2)) {
        n->cumulative = true; /* the upstream ignored incremental_output */
        *off = tlen;
        return true;
    }
    *off = 0;
    return extends;
}

/* Empties @p b, giving its memory back when it held more than KEEP_BYTES. */
static void
release(struct qk_buf *b, size_t used)
{
    if (used <= KEEP_BYTES) {
        qk_buf_reset(b);
        return;
    }
    qk_buf_free(b);
    qk_buf_init(b, ANSWER_CAP);
}

static enum qp_sse_status
handle_event(struct qp_sse_norm *n, struct qk_buf *out)
{
    const char *data = qk_buf_ptr(&n->data) + n->data_off;
    size_t len = qk_buf_len(&n->data) - n->data_off;
    if (len > 0 && data[len - 1] == '\n')
        len--;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        n->done = true;
        n->events_in++;
        return QP_SSE_DONE;
    }
    cJSON *o = cJSON_ParseWithLength(data, len);
    release(&n->data, qk_buf_len(&n->data)); /* the tree holds what is needed of it */
    n->data_off = 0;
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return QP_SSE_BAD_EVENT;
    }
    n->events_in++;
    enum qp_sse_status st = QP_SSE_OK;
    if (is_inband_failure(o, n->inband, sizeof n->inband)) {
        st = QP_SSE_INBAND_ERROR;
        goto out;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(o, "created");
    if (n->events_out == 0) {
        /* Keep the upstream's envelope when it has one, for the whole stream. */
        if (cJSON_IsString(model) && model->valuestring[0]) {
            free(n->model);
            n->model = strdup(model->valuestring);
        }
        if (cJSON_IsString(id) && id->valuestring[0]) {
            free(n->id);
            n->id = strdup(id->valuestring);
        }
        if (cJSON_IsNumber(created))
            n->created = seconds(created->valuedouble, n->created);
        if (!n->model || !n->id) {
            st = QP_SSE_NOMEM;
            goto out;
        }
    }
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(choice, "delta");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(delta, "content");
    const cJSON *finish = cJSON_GetObjectItemCaseSensitive(choice, "finish_reason");
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(o, "usage");
    const char *fin = cJSON_IsString(finish) && finish->valuestring[0] ? finish->valuestring : NULL;
    if (QP_MUTANT(textless_chunk_bad) && !cJSON_IsString(content) && !fin) {
        st = QP_SSE_BAD_EVENT; /* a chunk without text taken for a broken one */
        goto out;
    }
    const char *c = cJSON_IsString(content) ? content->valuestring : "";
    size_t clen = strlen(c), off = 0;
    bool extends = clen > 0 && new_text(n, c, clen, &off);
    size_t dlen = clen > off ? clen - off : 0;
    if (dlen > 0) {
        /* Cumulative: the text is now c; an extension only adds its new end. */
        if (n->cumulative && !extends) {
            sent_reset(&n->text);
            sent_append(&n->text, c, clen);
        } else {
            sent_append(&n->text, c + off, dlen);
        }
    }
    if (clen > 0)
        n->pieces++;
    if (n->finish_sent)
        goto out; /* nothing may follow the finishing chunk */
    if (dlen > 0 || fin)
        st = emit_chunk(n, c + off, dlen, fin, fin ? usage : NULL, out);
out:
    cJSON_Delete(o);
    return st;
}

/* Mutant shared_line_buffer: one partial-line buffer for every stream, as a decoder kept
 * in a module-level variable is. Reachable until exit, so no leak. */
static struct qk_buf *
line_buffer(struct qp_sse_norm *n)
{
    static struct qk_buf shared;
    static bool shared_ready;
    if (!QP_MUTANT(shared_line_buffer))
        return &n->line;
    if (!shared_ready) {
        qk_buf_init(&shared, ANSWER_CAP);
        shared_ready = true;
    }
    return &shared;
}

enum qp_sse_status
qp_sse_norm_feed(struct qp_sse_norm *n, const char *bytes, size_t len, struct qk_buf *out)
{
    if (n->done)
        return QP_SSE_DONE;
    struct qk_buf *lb = line_buffer(n);
    bool cr_ends = !QP_MUTANT(lf_only_framing);
    for (size_t i = 0; i < len;) {
        char ch = bytes[i];
        if (n->after_cr) {
            n->after_cr = false;
            if (ch == '\n') {
                i++;
                continue; /* CRLF split across reads */
            }
        }
        if (ch != '\n' && (ch != '\r' || !cr_ends)) {
            /* The run up to the next line end, in one append. */
            size_t j = i + 1;
            while (j < len && bytes[j] != '\n' && (bytes[j] != '\r' || !cr_ends))
                j++;
            if (qk_buf_append(lb, bytes + i, j - i) != QK_OK)
                return QP_SSE_NOMEM;
            i = j;
            continue;
        }
        i++;
        n->after_cr = ch == '\r';
        const char *line = qk_buf_ptr(lb);
        size_t ll = qk_buf_len(lb);
        bool moved = false;
        enum qp_sse_status st = QP_SSE_OK;
        if (ll == 0) {
            if (n->data_seen) {
                n->progress++;
                st = handle_event(n, out);
            }
            release(&n->data, qk_buf_len(&n->data));
            n->data_off = 0;
            n->data_seen = false;
        } else if (ll >= 4 && memcmp(line, "data", 4) == 0 && (ll == 4 || line[4] == ':')) {
            size_t skip = ll == 4 ? 4 : (ll > 5 && line[5] == ' ') ? 6 : 5;
            if (qk_buf_len(&n->data) == 0 && lb == &n->line) {
                /* The event's first data line is moved, not copied: a cumulative line is
                 * as long as the answer. */
                struct qk_buf empty = n->data;
                n->data = n->line;
                n->line = empty;
                n->data_off = skip;
                moved = true;
                if (qk_buf_append(&n->data, "\n", 1) != QK_OK)
                    st = QP_SSE_NOMEM;
            } else if (qk_buf_append(&n->data, line + skip, ll - skip) != QK_OK ||
                       qk_buf_append(&n->data, "\n", 1) != QK_OK) {
                st = QP_SSE_NOMEM;
            }
            n->data_seen = true;
        } else if (line[0] == ':') {
            n->progress++; /* a comment: dropped, but the upstream is alive */
        }
        /* comments (":...") and other fields (event:, id:, retry:) are dropped */
        if (moved)
            qk_buf_reset(lb);
        else
            release(lb, ll);
        if (st != QP_SSE_OK)
            return st;
    }
    return QP_SSE_OK;
}

enum qk_err
qp_sse_norm_finish(struct qp_sse_norm *n, bool upstream_ok, const char *error_message,
                   struct qk_buf *out)
{
    if (QP_MUTANT(done_on_junk_stream) && upstream_ok && !n->done && n->data_seen) {
        /* A clean end right after an event's last data line: the event taken as if its
         * blank line had come. */
        enum qp_sse_status st = handle_event(n, out);
        if (st == QP_SSE_NOMEM)
            return QK_NOMEM;
    }
    enum qp_sse_end end = qp_sse_norm_end(n);
    if (n->done || (upstream_ok && end == QP_SSE_END_CLEAN)) {
        if (!n->finish_sent && !QP_MUTANT(raw_chunks) &&
            emit_chunk(n, "", 0, "stop", NULL, out) != QP_SSE_OK)
            return QK_NOMEM;
        return qk_buf_append_str(out, "data: [DONE]\n\n");
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    if (upstream_ok || !error_message)
        error_message = end == QP_SSE_END_NO_EVENT ? "upstream stream carried no event"
                        : end == QP_SSE_END_CUT    ? "upstream stream ended inside an event"
                                                   : "upstream stream interrupted";
    cJSON_AddStringToObject(e, "message", error_message);
    cJSON_AddStringToObject(e, "type", "upstream_error");
    cJSON_AddNullToObject(e, "param");
    cJSON_AddStringToObject(e, "code", "stream_interrupted");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        return QK_NOMEM;
    enum qk_err rc = qk_buf_appendf(out, "data: %s\n\n", s);
    cJSON_free(s);
    return rc;
}
