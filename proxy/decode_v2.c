#include "decode_v2.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json_arena.h"
#include "qwenkit/buf.h"
#include "sse_frame.h"
#include "sse_mutant.h"

#define FNV_OFFSET 0xcbf29ce484222325ULL
/* Reasoning elements tracked per stream; later ones are dropped (a hostile array of
 * millions of empty strings must not cost a record each). */
#define MAX_ELEMENTS 65536
/* Created frames of other responses remembered, so their frames are dropped even while
 * no response is locked yet. */
#define MAX_OTHERS 8
/* The longest failure message: one log line, one error event. */
#define FAILURE_MAX 200
/* A delta's reasoning buffer is given back after an event that grew it past this. */
#define KEEP_BYTES (64 * 1024)

/* What was sent of one summary_thought element: enough to tell that it grew. */
struct sent_element {
    size_t len;
    uint64_t hash; /* FNV-1a of its first len bytes */
};

struct decode_v2 {
    struct qp_decoder_opts opts;
    char *locked;     /* the response_id that reaches the caller, NULL while none */
    bool locked_by_0; /* taken from a created frame with index "0" */
    char *others[MAX_OTHERS];
    size_t n_others;
    struct sent_element *sent;
    size_t n_sent, cap_sent;
    /* The last usage seen (cumulative upstream, so the last wins). */
    bool has_usage, has_reasoning_tokens;
    double prompt_tokens, completion_tokens, reasoning_tokens;
    struct qk_buf reasoning; /* the last event's reasoning, until release */
    /* The last event's tree, until release: the delta's strings. In the arena, unless
     * the arena could not take it (tree_malloced: cJSON_Delete'd). */
    cJSON *tree;
    bool tree_malloced;
    struct qp_json_arena arena;
    char failure[FAILURE_MAX + 56];
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

static void *
v2_new(const struct qp_decoder_opts *opts)
{
    struct decode_v2 *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->opts = *opts;
    qk_buf_init(&v->reasoning, 2 * (size_t)QP_SSE_EVENT_CAP);
    return v;
}

static void
v2_release(void *state)
{
    struct decode_v2 *v = state;
    if (v->tree_malloced)
        cJSON_Delete(v->tree);
    v->tree = NULL;
    v->tree_malloced = false;
    qp_json_arena_reset(&v->arena, 0); /* a stream waits for its next event holding none */
    if (qk_buf_len(&v->reasoning) > KEEP_BYTES)
        qk_buf_free(&v->reasoning);
    qk_buf_reset(&v->reasoning);
}

static void
v2_free(void *state)
{
    struct decode_v2 *v = state;
    if (!v)
        return;
    v2_release(v);
    qk_buf_free(&v->reasoning);
    qp_json_arena_free(&v->arena);
    free(v->locked);
    for (size_t i = 0; i < v->n_others; i++)
        free(v->others[i]);
    free(v->sent);
    free(v);
}

/* ---- in-band failures ---- */

/* A one-line message: control bytes as spaces, at most FAILURE_MAX bytes, never half a
 * UTF-8 character. */
struct line {
    char *p;
    size_t len, cap; /* cap includes the NUL */
};

static void
line_add(struct line *l, const char *s)
{
    for (; *s && l->len + 1 < l->cap; s++) {
        unsigned char c = (unsigned char)*s;
        l->p[l->len++] = c < 0x20 || c == 0x7F ? ' ' : (char)c;
    }
    if (((unsigned char)*s & 0xC0) == 0x80) { /* cut inside a character: drop its start */
        while (l->len > 0 && ((unsigned char)l->p[l->len - 1] & 0xC0) == 0x80)
            l->len--;
        if (l->len > 0 && ((unsigned char)l->p[l->len - 1] & 0xC0) == 0xC0)
            l->len--;
    }
    l->p[l->len] = '\0';
}

static bool
starts_with_nocase(const char *s, const char *prefix)
{
    return s && strncasecmp(s, prefix, strlen(prefix)) == 0;
}

unsigned
qp_v2_failure_status(const char *code, const char *details)
{
    if ((code && strcasecmp(code, "unauthorized") == 0) ||
        (details && strstr(details, "Token has expired")))
        return 401;
    if (!code)
        return 0;
    if (strcasecmp(code, "Bad_Request") == 0)
        /* The service's own trouble under the caller's code: a chat still answering, a
         * missing cookie or a refused body shape ("Internal error..."). */
        return starts_with_nocase(details, "The chat is in progress") ||
                       starts_with_nocase(details, "Internal error")
                   ? 0
                   : 400;
    return strcmp(code, "RequestValidationError") == 0 || strcmp(code, "invalid_input") == 0 ? 400
                                                                                             : 0;
}

/* The service's failure payloads: {"ret":["FAIL_..."]}, {"success":false,"data":{"code",
 * "details"}}, {"error":{"code","details"|"message"}}. */
static bool
classify(const cJSON *o, char *msg, size_t cap, unsigned *status)
{
    const cJSON *ret = cJSON_GetObjectItemCaseSensitive(o, "ret");
    const cJSON *success = cJSON_GetObjectItemCaseSensitive(o, "success");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(o, "error");
    const char *what = NULL, *code = NULL, *details = NULL;
    char *printed = NULL; /* details that are not a string */
    if (cJSON_IsArray(ret)) {
        const cJSON *first = cJSON_GetArrayItem(ret, 0);
        const cJSON *second = cJSON_GetArrayItem(ret, 1);
        if (cJSON_IsString(first) && strncmp(first->valuestring, "SUCCESS", 7) != 0) {
            what = "upstream refused the request";
            code = first->valuestring;
            details = cJSON_IsString(second) ? second->valuestring : NULL;
        }
    }
    const cJSON *body = NULL;
    if (!what && cJSON_IsFalse(success)) {
        what = "upstream failure";
        body = cJSON_GetObjectItemCaseSensitive(o, "data");
    } else if (!what && error && !cJSON_IsNull(error)) {
        what = "upstream error";
        body = error;
    }
    if (!what)
        return false;
    if (cJSON_IsString(body)) {
        details = body->valuestring;
    } else if (cJSON_IsObject(body)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(body, "code");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(body, "details");
        if (!d || cJSON_IsNull(d))
            d = cJSON_GetObjectItemCaseSensitive(body, "message");
        code = cJSON_IsString(c) ? c->valuestring : NULL;
        if (cJSON_IsString(d))
            details = d->valuestring;
        else if (d && !cJSON_IsNull(d))
            details = printed = cJSON_PrintUnformatted(d);
    }
    char tmp[FAILURE_MAX + 1];
    struct line l = {.p = tmp, .cap = sizeof tmp};
    line_add(&l, what);
    line_add(&l, ": ");
    if (!code && !details)
        line_add(&l, success ? "success=false" : "unknown");
    if (code)
        line_add(&l, code);
    if (code && details)
        line_add(&l, ": ");
    if (details)
        line_add(&l, details);
    if (status)
        *status = qp_v2_failure_status(code, details);
    if (cap > 0)
        snprintf(msg, cap, "%s", tmp);
    cJSON_free(printed);
    return true;
}

/* ---- the response lock ---- */

static bool
set_locked(struct decode_v2 *v, const char *rid, bool by_0)
{
    char *copy = strdup(rid);
    if (!copy)
        return false;
    free(v->locked);
    v->locked = copy;
    v->locked_by_0 = by_0;
    return true;
}

static bool
is_other(const struct decode_v2 *v, const char *rid)
{
    for (size_t i = 0; i < v->n_others; i++)
        if (strcmp(v->others[i], rid) == 0)
            return true;
    return false;
}

/* `{"response.created":{...,"response_id","response_index"}}`. @return false when out of
 * memory. */
static bool
on_created(struct decode_v2 *v, const cJSON *created)
{
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(created, "response_id");
    const cJSON *index = cJSON_GetObjectItemCaseSensitive(created, "response_index");
    if (!cJSON_IsString(rid) || !rid->valuestring[0])
        return true;
    bool zero = (cJSON_IsString(index) && strcmp(index->valuestring, "0") == 0) ||
                (cJSON_IsNumber(index) && index->valuedouble == 0);
    if (zero)
        return v->locked_by_0 || set_locked(v, rid->valuestring, true);
    if (!index || cJSON_IsNull(index))
        return v->locked || set_locked(v, rid->valuestring, false);
    /* Another candidate: its frames are never the caller's. */
    if (v->n_others < MAX_OTHERS && !is_other(v, rid->valuestring)) {
        char *copy = strdup(rid->valuestring);
        if (!copy)
            return false;
        v->others[v->n_others++] = copy;
    }
    return true;
}

/* @return whether a frame with @p rid (NULL: none) belongs to the caller's response; *nomem
 * when locking on it failed. */
static bool
ours(struct decode_v2 *v, const cJSON *rid, bool *nomem)
{
    if (!cJSON_IsString(rid) || !rid->valuestring[0])
        return true;
    if (v->locked)
        return strcmp(v->locked, rid->valuestring) == 0;
    if (is_other(v, rid->valuestring))
        return false;
    *nomem = !set_locked(v, rid->valuestring, false); /* the first one seen */
    return !*nomem;
}

/* ---- reasoning and usage ---- */

/* The new part of a cumulative summary_thought array (see the rule in decode_v2.h). */
static enum qk_err
take_thoughts(struct decode_v2 *v, const cJSON *arr)
{
    size_t i = 0;
    for (const cJSON *el = arr->child; el && i < MAX_ELEMENTS; el = el->next, i++) {
        const char *s = cJSON_IsString(el) ? el->valuestring : "";
        size_t n = strlen(s);
        if (i < v->n_sent) {
            struct sent_element *e = &v->sent[i];
            if (n > e->len && fnv1a(FNV_OFFSET, s, e->len) == e->hash) {
                if (qk_buf_append(&v->reasoning, s + e->len, n - e->len) != QK_OK)
                    return QK_NOMEM;
                e->hash = fnv1a(e->hash, s + e->len, n - e->len);
                e->len = n;
            }
            continue; /* the same, or changed otherwise: nothing, never a duplicate */
        }
        if (v->n_sent == v->cap_sent) {
            size_t cap = v->cap_sent ? 2 * v->cap_sent : 8;
            struct sent_element *grown = realloc(v->sent, cap * sizeof *grown);
            if (!grown)
                return QK_NOMEM;
            v->sent = grown;
            v->cap_sent = cap;
        }
        if ((i > 0 && qk_buf_append(&v->reasoning, "\n", 1) != QK_OK) ||
            qk_buf_append(&v->reasoning, s, n) != QK_OK)
            return QK_NOMEM;
        v->sent[v->n_sent++] = (struct sent_element){.len = n, .hash = fnv1a(FNV_OFFSET, s, n)};
    }
    return QK_OK;
}

/* A token count the caller can use: a finite, non-negative number below 2^53. */
static bool
token_count(const cJSON *t)
{
    return cJSON_IsNumber(t) && isfinite(t->valuedouble) && t->valuedouble >= 0 &&
           t->valuedouble < 9007199254740992.0;
}

static void
take_usage(struct decode_v2 *v, const cJSON *usage, struct qp_delta *d)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(usage, "input_tokens");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(usage, "output_tokens");
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(usage, "output_tokens_details"), "reasoning_tokens");
    if (token_count(in) && token_count(out)) {
        v->has_usage = true;
        v->prompt_tokens = in->valuedouble;
        v->completion_tokens = out->valuedouble;
        /* Answer frames leave reasoning_tokens out: the thinking's count is kept. */
        if (token_count(rt)) {
            v->has_reasoning_tokens = true;
            v->reasoning_tokens = rt->valuedouble;
        }
    }
    if (!usage && !d->finish_reason)
        return;
    d->has_usage = v->has_usage;
    d->prompt_tokens = v->prompt_tokens;
    d->completion_tokens = v->completion_tokens;
    d->has_reasoning_tokens = v->has_usage && v->has_reasoning_tokens;
    d->reasoning_tokens = v->reasoning_tokens;
}

static bool
is(const cJSON *s, const char *want)
{
    return cJSON_IsString(s) && strcmp(s->valuestring, want) == 0;
}

/* A `choices` frame of the caller's response. */
static enum qp_decode_status
on_choice(struct decode_v2 *v, const cJSON *o, struct qp_delta *d)
{
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(choice, "delta");
    const cJSON *phase = cJSON_GetObjectItemCaseSensitive(delta, "phase");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(delta, "status");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(delta, "content");
    const char *text = cJSON_IsString(content) ? content->valuestring : "";
    if (is(phase, "thinking_summary")) {
        const cJSON *thought = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(delta, "extra"), "summary_thought");
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(thought, "content");
        if (cJSON_IsArray(arr) && take_thoughts(v, arr) != QK_OK)
            return QP_DECODE_NOMEM;
    } else if (is(phase, "think")) {
        if (qk_buf_append_str(&v->reasoning, text) != QK_OK)
            return QP_DECODE_NOMEM;
    } else if (!phase || cJSON_IsNull(phase) || is(phase, "answer")) {
        const cJSON *finish = cJSON_GetObjectItemCaseSensitive(choice, "finish_reason");
        d->text = text;
        d->text_len = strlen(text);
        if (cJSON_IsString(finish) && finish->valuestring[0])
            d->finish_reason = finish->valuestring;
        else if (is(status, "finished"))
            d->finish_reason = "stop";
    } /* other phases (image_gen, tools): not the answer */
    if (qk_buf_len(&v->reasoning) > 0) {
        d->reasoning = qk_buf_ptr(&v->reasoning);
        d->reasoning_len = qk_buf_len(&v->reasoning);
    }
    take_usage(v, cJSON_GetObjectItemCaseSensitive(o, "usage"), d);
    return QP_DECODE_CHUNK;
}

static enum qp_decode_status
v2_event(void *state, const char *data, size_t len, struct qp_delta *d)
{
    struct decode_v2 *v = state;
    v2_release(v);
    memset(d, 0, sizeof *d);
    d->text = d->reasoning = "";
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return QP_DECODE_DONE;
    /* One parse per event: into the arena, given back whole by release. */
    v->tree = qp_json_arena_parse(&v->arena, data, len);
    v->tree_malloced = v->tree && !v->arena.hooked;
    const cJSON *o = v->tree;
    if (!cJSON_IsObject(o)) {
        v2_release(v);
        return QP_DECODE_BAD;
    }
    if (classify(o, v->failure, sizeof v->failure, &d->failure_status)) {
        d->failure = v->failure;
        return QP_DECODE_FAILURE;
    }
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(o, "response.created");
    if (created)
        return on_created(v, created) ? QP_DECODE_CHUNK : QP_DECODE_NOMEM;
    bool nomem = false;
    if (!QP_SSE_MUTANT(&v->opts, v2_no_response_lock) && /* V2-4: every candidate relayed */
        !ours(v, cJSON_GetObjectItemCaseSensitive(o, "response_id"), &nomem))
        return nomem ? QP_DECODE_NOMEM : QP_DECODE_CHUNK; /* another candidate's frame */
    return on_choice(v, o, d);
}

/* ---- whole bodies ---- */

static bool
contains(const char *s, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(s + i, needle, n) == 0)
            return true;
    return false;
}

/* @return whether @p body is a failure; *status its final status (0: worth a retry). */
static bool
body_kind(const char *body, size_t len, char *msg, size_t cap, unsigned *status)
{
    *status = 0;
    while (len > 0 && (*body == ' ' || *body == '\t' || *body == '\r' || *body == '\n')) {
        body++;
        len--;
    }
    if (len == 0) {
        snprintf(msg, cap, "upstream answered an empty body");
        return true;
    }
    if (*body == '<') {
        bool waf = contains(body, len, "aliyun_waf") ||
                   (len >= 14 && strncasecmp(body, "<!doctypehtml", 13) == 0);
        if (waf || contains(body, len, "<html") || contains(body, len, "<!doctype")) {
            snprintf(msg, cap, "%s",
                     waf ? "upstream firewall page (aliyun_waf)" : "upstream HTML page");
            return true;
        }
        return false;
    }
    if (*body != '{')
        return false;
    cJSON *o = cJSON_ParseWithLength(body, len);
    bool failure = cJSON_IsObject(o) && classify(o, msg, cap, status);
    cJSON_Delete(o);
    return failure;
}

static bool
v2_body_failure(const char *body, size_t len, char *msg, size_t cap)
{
    unsigned status;
    return body_kind(body, len, msg, cap, &status);
}

static unsigned
v2_body_failure_status(const char *body, size_t len)
{
    char msg[8];
    unsigned status;
    return body_kind(body, len, msg, sizeof msg, &status) ? status : 0;
}

const struct qp_decoder_ops qp_decoder_v2 = {
    .new = v2_new,
    .event = v2_event,
    .release = v2_release,
    .free = v2_free,
    .body_failure = v2_body_failure,
    .body_failure_status = v2_body_failure_status,
    .finish_required = true,
};
