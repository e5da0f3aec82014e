#include "assemble.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode_v1.h"
#include "qwenkit/buf.h"
#include "sse_frame.h"

/* What the events said, gathered. */
struct gathered {
    struct qk_buf content, reasoning;
    char finish[64]; /* "" until a delta finished the answer */
    bool done;       /* [DONE] */
    size_t events;   /* events the dialect could read */
    struct qp_delta usage;
    char *model, *id; /* the upstream's envelope, when it gave one */
    bool has_created;
    long long created_s;
};

static void
note(char *msg, size_t cap, const char *s)
{
    if (msg && cap > 0)
        snprintf(msg, cap, "%s", s);
}

static enum qk_err
adopt(char **slot, const char *s)
{
    if (!s || *slot)
        return QK_OK;
    *slot = strdup(s);
    return *slot ? QK_OK : QK_NOMEM;
}

/* One chunk's delta into @p g. */
static enum qk_err
gather(struct gathered *g, const struct qp_delta *d)
{
    if (adopt(&g->model, d->model) != QK_OK || adopt(&g->id, d->id) != QK_OK)
        return QK_NOMEM;
    if (d->has_created && !g->has_created) {
        g->has_created = true;
        g->created_s = d->created_s;
    }
    if (d->has_usage)
        g->usage = *d; /* the last one wins (the dialect keeps what rides along) */
    if (d->finish_reason)
        snprintf(g->finish, sizeof g->finish, "%s", d->finish_reason);
    if (qk_buf_append(&g->content, d->text, d->text_len) != QK_OK ||
        qk_buf_append(&g->reasoning, d->reasoning ? d->reasoning : "", d->reasoning_len) != QK_OK)
        return QK_NOMEM;
    return QK_OK;
}

/* Reads the body's events until the answer finished, [DONE], or a failure. */
static enum qp_assemble_status
read_events(const struct qp_decoder_ops *dialect, const char *body, size_t len, struct gathered *g,
            enum qp_sse_end *end, char *msg, size_t cap, unsigned *final_status)
{
    struct qp_sse_frame_opts fo = {.max_bytes = QP_SSE_EVENT_CAP};
    struct qp_decoder_opts dopts = {.incremental_requested = true}; /* v2 always asks */
    struct qp_sse_frame *f = qp_sse_frame_new(&fo);
    void *dec = f ? dialect->new (&dopts) : NULL;
    enum qp_assemble_status st = QP_ASSEMBLE_OK;
    if (!dec)
        st = QP_ASSEMBLE_NOMEM;
    while (st == QP_ASSEMBLE_OK && !g->finish[0] && !g->done) {
        struct qp_sse_event ev;
        enum qp_sse_frame_step step = qp_sse_frame_next(f, &body, &len, &ev);
        if (step == QP_SSE_FRAME_MORE)
            break;
        if (step == QP_SSE_FRAME_NOMEM) {
            st = QP_ASSEMBLE_NOMEM;
            break;
        }
        struct qp_delta d;
        enum qp_decode_status ds = dialect->event(dec, ev.data, ev.len, &d);
        if (ds != QP_DECODE_BAD && ds != QP_DECODE_NOMEM)
            g->events++;
        switch (ds) {
        case QP_DECODE_CHUNK:
            if (gather(g, &d) != QK_OK)
                st = QP_ASSEMBLE_NOMEM;
            break;
        case QP_DECODE_DONE:
            g->done = true;
            break;
        case QP_DECODE_FAILURE:
            note(msg, cap, d.failure);
            if (final_status)
                *final_status = d.failure_status;
            st = QP_ASSEMBLE_FAILURE;
            break;
        case QP_DECODE_BAD:
            note(msg, cap, "upstream sent an event that is not a JSON chunk");
            st = QP_ASSEMBLE_BAD;
            break;
        case QP_DECODE_NOMEM:
            st = QP_ASSEMBLE_NOMEM;
            break;
        }
        dialect->release(dec);
    }
    if (f)
        *end = qp_sse_frame_end(f);
    if (dec)
        dialect->free(dec);
    qp_sse_frame_free(f);
    return st;
}

/* Below this, "%1.15g" (how cJSON prints every number) writes an integer's plain digits. */
#define PLAIN_INTEGER_LIMIT 1e15

/* Adds the number @p v as cJSON would print it: an integer below PLAIN_INTEGER_LIMIT as
 * a raw item of its digits (the same bytes, without cJSON's sprintf and sscanf check, a
 * few thousand instructions a number). @return false when out of memory. */
static bool
add_number(cJSON *obj, const char *name, double v)
{
    if (!(v >= 0 && v < PLAIN_INTEGER_LIMIT) || v != floor(v) || signbit(v))
        return cJSON_AddNumberToObject(obj, name, v) != NULL;
    char digits[24];
    size_t i = sizeof digits - 1;
    digits[i] = '\0';
    unsigned long long u = (unsigned long long)v;
    do {
        digits[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    return cJSON_AddRawToObject(obj, name, digits + i) != NULL;
}

/* A token count the caller can use: finite, non-negative, exact in a double (the rule of
 * completion.c, so that the rewrite there would leave this answer as it is). */
static bool
token_count(double v)
{
    return v >= 0 && v < 9007199254740992.0;
}

/* The chat.completion of what was gathered. */
static char *
completion(const struct qp_assemble_opts *o, const struct gathered *g, size_t *out_len)
{
    const char *answer = qk_buf_len(&g->content) ? qk_buf_ptr(&g->content) : "";
    const char *thought = qk_buf_len(&g->reasoning) ? qk_buf_ptr(&g->reasoning) : "";
    struct qk_buf inl;
    qk_buf_init(&inl, qk_buf_len(&g->content) + qk_buf_len(&g->reasoning) + 32);
    if (o->reasoning == QP_REASONING_INLINE && thought[0]) {
        if (qk_buf_appendf(&inl, "<think>\n%s\n</think>\n\n%s", thought, answer) != QK_OK) {
            qk_buf_free(&inl);
            return NULL;
        }
        answer = qk_buf_ptr(&inl);
    }
    cJSON *root = cJSON_CreateObject();
    cJSON *choice = cJSON_CreateObject();
    cJSON *message = cJSON_CreateObject();
    char *s = NULL;
    if (!root || !choice || !message) {
        cJSON_Delete(choice);
        cJSON_Delete(message);
        goto done;
    }
    cJSON_AddStringToObject(root, "id", g->id ? g->id : o->id ? o->id : "chatcmpl-0");
    cJSON_AddStringToObject(root, "object", "chat.completion");
    add_number(root, "created", (double)(g->has_created ? g->created_s : o->created_s));
    cJSON_AddStringToObject(root, "model", g->model ? g->model : o->model ? o->model : "");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "choices"), choice);
    add_number(choice, "index", 0);
    cJSON_AddItemToObject(choice, "message", message);
    cJSON_AddStringToObject(message, "role", "assistant");
    cJSON_AddStringToObject(message, "content", answer);
    if (o->reasoning == QP_REASONING_SEPARATE && thought[0])
        cJSON_AddStringToObject(message, "reasoning_content", thought);
    cJSON_AddStringToObject(choice, "finish_reason", g->finish[0] ? g->finish : "stop");
    if (g->usage.has_usage) {
        const struct qp_delta *u = &g->usage;
        cJSON *usage = cJSON_AddObjectToObject(root, "usage");
        double total = u->prompt_tokens + u->completion_tokens;
        add_number(usage, "prompt_tokens", u->prompt_tokens);
        add_number(usage, "completion_tokens", u->completion_tokens);
        if (token_count(total)) /* a sum past 2^53 is no exact count: none */
            add_number(usage, "total_tokens", total);
        if (u->has_reasoning_tokens)
            add_number(cJSON_AddObjectToObject(usage, "completion_tokens_details"),
                       "reasoning_tokens", u->reasoning_tokens);
    }
    s = cJSON_PrintUnformatted(root);
    if (s)
        *out_len = strlen(s);
done:
    cJSON_Delete(root);
    qk_buf_free(&inl);
    return s;
}

enum qp_assemble_status
qp_assemble_completion(const struct qp_assemble_opts *o, const char *body, size_t len, char **out,
                       size_t *out_len, char *msg, size_t msg_cap, unsigned *final_status)
{
    const struct qp_decoder_ops *dialect = o->dialect ? o->dialect : &qp_decoder_v1;
    *out = NULL;
    *out_len = 0;
    if (final_status)
        *final_status = 0;
    note(msg, msg_cap, "");
    struct gathered g = {0};
    /* What comes out is never longer than what went in, but for the separators and
     * the think block's tags. */
    qk_buf_init(&g.content, 2 * len + 64);
    qk_buf_init(&g.reasoning, 2 * len + 64);
    enum qp_sse_end end = QP_SSE_END_CLEAN;
    enum qp_assemble_status st =
        read_events(dialect, body, len, &g, &end, msg, msg_cap, final_status);
    bool finished = g.finish[0] || g.done;
    if (st != QP_ASSEMBLE_OK) {
        /* as read_events said */
    } else if (g.events == 0 && dialect->body_failure) {
        /* Not a stream: maybe the dialect's failure as the whole body. */
        char why[256];
        if (dialect->body_failure(body, len, why, sizeof why)) {
            note(msg, msg_cap, why);
            if (final_status && dialect->body_failure_status)
                *final_status = dialect->body_failure_status(body, len);
            st = QP_ASSEMBLE_FAILURE;
        }
    }
    if (st == QP_ASSEMBLE_OK && !finished) {
        if (end == QP_SSE_END_CUT) {
            note(msg, msg_cap, "upstream stream ended inside an event");
            st = QP_ASSEMBLE_INCOMPLETE;
        } else if (g.events == 0) {
            note(msg, msg_cap, "upstream answer carried no event");
            st = QP_ASSEMBLE_BAD;
        } else if (dialect->finish_required) {
            note(msg, msg_cap, "upstream stream ended before the answer finished");
            st = QP_ASSEMBLE_INCOMPLETE;
        }
    }
    if (st == QP_ASSEMBLE_OK && !(*out = completion(o, &g, out_len)))
        st = QP_ASSEMBLE_NOMEM;
    if (st == QP_ASSEMBLE_NOMEM)
        note(msg, msg_cap, "out of memory");
    qk_buf_free(&g.content);
    qk_buf_free(&g.reasoning);
    free(g.model);
    free(g.id);
    return st;
}
