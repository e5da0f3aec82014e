#include "decode_v1.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qwenkit/buf.h"
#include "sse_frame.h"
#include "sse_mutant.h"

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

struct decode_v1 {
    struct qp_decoder_opts opts;
    bool cumulative;       /* current interpretation of delta.content */
    size_t pieces;         /* content-bearing chunks seen */
    struct sent_text text; /* the text so far, as dedup needs it */
    cJSON *tree;           /* the last event's, until release: the delta's strings */
    struct qk_buf prev;    /* mutant naive_prefix_dedup: the previous chunk's raw content */
    char failure[256];
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

static void *
v1_new(const struct qp_decoder_opts *opts)
{
    struct decode_v1 *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->opts = *opts;
    v->cumulative = !opts->incremental_requested;
    sent_reset(&v->text);
    qk_buf_init(&v->prev, QP_SSE_EVENT_CAP);
    return v;
}

static void
v1_release(void *state)
{
    struct decode_v1 *v = state;
    cJSON_Delete(v->tree);
    v->tree = NULL;
}

static void
v1_free(void *state)
{
    struct decode_v1 *v = state;
    if (!v)
        return;
    v1_release(v);
    qk_buf_free(&v->prev);
    free(v);
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

/* Seconds, whatever unit the upstream used (some send milliseconds); false for a value
 * that is neither (negative, huge, inf): never a cast out of range. */
static bool
seconds(double v, long long *out)
{
    if (!isfinite(v) || v <= 0)
        return false;
    if (v >= SECONDS_CEILING)
        v /= 1000.0;
    if (v >= SECONDS_CEILING)
        return false;
    *out = (long long)v;
    return true;
}

/* A token count the caller can use: a finite, non-negative number below 2^53 (exact in a
 * double). */
static bool
token_count(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0 &&
           v->valuedouble < 9007199254740992.0;
}

/* Works out the new text a chunk carries (see the rule in the header): @p *off is where it
 * starts in @p c. @return whether @p c begins with the whole text so far. */
static bool
new_text(struct decode_v1 *v, const char *c, size_t clen, size_t *off)
{
    const struct sent_text *t = &v->text;
    size_t tlen = t->len;
    if (QP_SSE_MUTANT(&v->opts, cumulative_passthrough)) {
        *off = 0; /* every delta relayed as it came */
        v->cumulative = false;
        return false;
    }
    if (QP_SSE_MUTANT(&v->opts, naive_prefix_dedup)) {
        /* "if the new text starts with the previous one, send the suffix" */
        const char *p = qk_buf_ptr(&v->prev);
        size_t plen = qk_buf_len(&v->prev);
        *off = plen > 0 && clen >= plen && memcmp(c, p, plen) == 0 ? plen : 0;
        v->cumulative = false;
        qk_buf_reset(&v->prev);
        if (qk_buf_append(&v->prev, c, clen) != QK_OK)
            qk_buf_reset(&v->prev);
        return false;
    }
    size_t head = tlen - t->tail_len;
    bool head_same = clen >= head && fnv1a(FNV_OFFSET, c, head) == t->head_hash;
    bool extends = head_same && clen >= tlen && memcmp(c + head, t->tail, t->tail_len) == 0;
    if (v->cumulative) {
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
    if (tlen > 0 && extends && (clen > tlen || v->pieces >= 2)) {
        v->cumulative = true; /* the upstream ignored incremental_output */
        *off = tlen;
        return true;
    }
    *off = 0;
    return extends;
}

/* The chunk's text: the part new to the caller goes into @p d, the text so far grows. */
static void
take_text(struct decode_v1 *v, const char *c, struct qp_delta *d)
{
    size_t clen = strlen(c), off = 0;
    bool extends = clen > 0 && new_text(v, c, clen, &off);
    size_t dlen = clen > off ? clen - off : 0;
    if (dlen > 0) {
        /* Cumulative: the text is now c; an extension only adds its new end. */
        if (v->cumulative && !extends) {
            sent_reset(&v->text);
            sent_append(&v->text, c, clen);
        } else {
            sent_append(&v->text, c + off, dlen);
        }
    }
    if (clen > 0)
        v->pieces++;
    d->text = c + off;
    d->text_len = dlen;
}

/* The chunk's envelope, finish reason and usage (the upstream's DashScope names). */
static void
take_fields(const cJSON *o, const cJSON *choice, struct qp_delta *d)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(o, "model");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(o, "created");
    const cJSON *finish = cJSON_GetObjectItemCaseSensitive(choice, "finish_reason");
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(o, "usage");
    if (cJSON_IsString(model) && model->valuestring[0])
        d->model = model->valuestring;
    if (cJSON_IsString(id) && id->valuestring[0])
        d->id = id->valuestring;
    if (cJSON_IsNumber(created))
        d->has_created = seconds(created->valuedouble, &d->created_s);
    if (cJSON_IsString(finish) && finish->valuestring[0])
        d->finish_reason = finish->valuestring;
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(usage, "input_tokens");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(usage, "output_tokens");
    if (token_count(in) && token_count(out)) { /* else no usage: never inf or NaN */
        d->has_usage = true;
        d->prompt_tokens = in->valuedouble;
        d->completion_tokens = out->valuedouble;
    }
}

static enum qp_decode_status
v1_event(void *state, const char *data, size_t len, struct qp_delta *d)
{
    struct decode_v1 *v = state;
    v1_release(v);
    memset(d, 0, sizeof *d);
    d->text = "";
    d->reasoning = ""; /* v1 has no reasoning */
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return QP_DECODE_DONE;
    v->tree = cJSON_ParseWithLength(data, len);
    const cJSON *o = v->tree;
    if (!cJSON_IsObject(o)) {
        v1_release(v);
        return QP_DECODE_BAD;
    }
    if (is_inband_failure(o, v->failure, sizeof v->failure)) {
        d->failure = v->failure;
        return QP_DECODE_FAILURE;
    }
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(choice, "delta");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(delta, "content");
    take_fields(o, choice, d);
    if (QP_SSE_MUTANT(&v->opts, textless_chunk_bad) && !cJSON_IsString(content) &&
        !d->finish_reason)
        return QP_DECODE_BAD; /* a chunk without text taken for a broken one */
    take_text(v, cJSON_IsString(content) ? content->valuestring : "", d);
    return QP_DECODE_CHUNK;
}

const struct qp_decoder_ops qp_decoder_v1 = {
    .new = v1_new,
    .event = v1_event,
    .release = v1_release,
    .free = v1_free,
};
