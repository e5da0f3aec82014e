#include "chunk_emit.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sse_frame.h"
#include "sse_mutant.h"

/* The inline reasoning block's two ends. */
#define THINK_OPEN "<think>\n"
#define THINK_CLOSE "\n</think>\n\n"

/* The mode's names: defined here, since the emitter is what the mode changes. */
static const char *const reasoning_names[] = {
    [QP_REASONING_SEPARATE] = "separate",
    [QP_REASONING_INLINE] = "inline",
    [QP_REASONING_DROP] = "drop",
};

bool
qp_reasoning_mode_parse(const char *s, enum qp_reasoning_mode *out)
{
    for (size_t i = 0; s && i < sizeof reasoning_names / sizeof reasoning_names[0]; i++)
        if (strcmp(s, reasoning_names[i]) == 0) {
            *out = (enum qp_reasoning_mode)i;
            return true;
        }
    return false;
}

const char *
qp_reasoning_mode_name(enum qp_reasoning_mode m)
{
    return (size_t)m < sizeof reasoning_names / sizeof reasoning_names[0] ? reasoning_names[m]
                                                                          : "separate";
}

/* Token counts, as a delta gives them. */
struct chunk_usage {
    bool known;
    double prompt, completion;
    bool has_reasoning;
    double reasoning;
};

struct qp_chunk_emitter {
    char *model, *id;
    long long created;
    /* `created` as cJSON prints the number, printed once: cJSON's number printing
     * (sprintf, then sscanf to check it) was the costliest part of a chunk. */
    char created_text[64];
    enum qp_reasoning_mode reasoning;
    bool include_usage;       /* the caller's stream_options.include_usage */
    struct chunk_usage usage; /* the latest counts the upstream gave */
    bool think_open;          /* INLINE: "<think>\n" went out, its end not yet */
    bool role_sent;
    bool finish_sent;
    size_t events; /* chunk events written */
#ifdef QK_MUTANTS
    enum qp_mutant mutant;
#endif
};

/* Prints `created` into created_text the way cJSON prints a number item. */
static enum qk_err
print_created(struct qp_chunk_emitter *e)
{
    /* Mutant raw_chunks: milliseconds, as some proxies send (SSE-12). */
    double created = (double)e->created * (QP_SSE_MUTANT(e, raw_chunks) ? 1000.0 : 1.0);
    cJSON *n = cJSON_CreateNumber(created);
    char *text = n ? cJSON_PrintUnformatted(n) : NULL;
    cJSON_Delete(n);
    if (!text)
        return QK_NOMEM;
    size_t len = strlen(text);
    enum qk_err rc = len < sizeof e->created_text ? QK_OK : QK_TOO_BIG;
    if (rc == QK_OK)
        memcpy(e->created_text, text, len + 1);
    cJSON_free(text);
    return rc;
}

struct qp_chunk_emitter *
qp_chunk_emitter_new(const struct qp_chunk_emit_opts *opts)
{
    struct qp_chunk_emitter *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
#ifdef QK_MUTANTS
    e->mutant = opts->mutant;
#endif
    e->model = strdup(opts->model ? opts->model : "");
    e->id = strdup(opts->id ? opts->id : "chatcmpl-0");
    e->created = opts->created;
    e->reasoning = opts->reasoning;
    e->include_usage = opts->include_usage;
    if (!e->model || !e->id || print_created(e) != QK_OK) {
        qp_chunk_emitter_free(e);
        return NULL;
    }
    return e;
}

void
qp_chunk_emitter_free(struct qp_chunk_emitter *e)
{
    if (!e)
        return;
    free(e->model);
    free(e->id);
    free(e);
}

size_t
qp_chunk_emit_count(const struct qp_chunk_emitter *e)
{
    return e->events;
}

/* Keeps the upstream's envelope when it has one, for the whole stream. */
static enum qk_err
adopt_envelope(struct qp_chunk_emitter *e, const struct qp_delta *d)
{
    if (d->model) {
        free(e->model);
        e->model = strdup(d->model);
    }
    if (d->id) {
        free(e->id);
        e->id = strdup(d->id);
    }
    if (d->has_created) {
        e->created = d->created_s;
        if (print_created(e) != QK_OK)
            return QK_NOMEM;
    }
    return e->model && e->id ? QK_OK : QK_NOMEM;
}

static struct chunk_usage
usage_of(const struct qp_delta *d)
{
    struct chunk_usage u = {.known = d->has_usage,
                            .prompt = d->prompt_tokens,
                            .completion = d->completion_tokens,
                            .has_reasoning = d->has_reasoning_tokens,
                            .reasoning = d->reasoning_tokens};
    return u;
}

/* `usage` in OpenAI's names; null when @p u is NULL or unknown. */
static void
add_usage(cJSON *o, const struct chunk_usage *u)
{
    if (!u || !u->known) {
        cJSON_AddNullToObject(o, "usage");
        return;
    }
    cJSON *j = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(j, "prompt_tokens", u->prompt);
    cJSON_AddNumberToObject(j, "completion_tokens", u->completion);
    cJSON_AddNumberToObject(j, "total_tokens", u->prompt + u->completion);
    if (u->has_reasoning)
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(j, "completion_tokens_details"),
                                "reasoning_tokens", u->reasoning);
}

static void
add_envelope(const struct qp_chunk_emitter *e, cJSON *o)
{
    cJSON_AddStringToObject(o, "id", e->id);
    cJSON_AddStringToObject(o, "object", "chat.completion.chunk");
    cJSON_AddRawToObject(o, "created", e->created_text);
    cJSON_AddStringToObject(o, "model", e->model);
}

/* Prints @p o as one `data:` event and deletes it. */
static enum qk_err
emit_event(struct qp_chunk_emitter *e, cJSON *o, struct qk_buf *out)
{
    enum qk_err rc = QK_NOMEM;
    size_t before = qk_buf_len(out);
    char *s = cJSON_PrintUnformatted(o);
    if (s && QP_SSE_MUTANT(e, sse_extra_fields) &&
        qk_buf_appendf(out, "event: message\nid: %zu\n", e->events + 1) != QK_OK) {
        cJSON_free(s);
        s = NULL;
    }
    if (s && qk_buf_append_str(out, "data: ") == QK_OK && qk_buf_append_str(out, s) == QK_OK &&
        qk_buf_append_str(out, "\n\n") == QK_OK) {
        rc = QK_OK;
        e->events++;
    } else {
        qk_buf_truncate(out, before); /* an event goes out whole or not at all */
    }
    cJSON_free(s);
    cJSON_Delete(o);
    return rc;
}

/* One chunk. @p reasoning (may be NULL) goes in `reasoning_content`; `content` is left
 * out of a chunk that carries only reasoning, as DeepSeek-style servers do. @p usage, when
 * not NULL, rides on it (the finishing chunk, unless the caller asked for a usage chunk:
 * then every chunk has `usage: null`, as OpenAI's do). */
static enum qk_err
emit_chunk(struct qp_chunk_emitter *e, const char *text, size_t text_len, const char *reasoning,
           size_t reasoning_len, const char *finish, const struct chunk_usage *usage,
           struct qk_buf *out)
{
    enum qk_err rc = QK_NOMEM;
    cJSON *o = cJSON_CreateObject();
    cJSON *choice = cJSON_CreateObject();
    cJSON *d = cJSON_CreateObject();
    char *content = strndup(text, text_len);
    char *thought = reasoning_len > 0 ? strndup(reasoning, reasoning_len) : NULL;
    if (!o || !choice || !d || !content || (reasoning_len > 0 && !thought)) {
        cJSON_Delete(o);
        cJSON_Delete(choice);
        cJSON_Delete(d);
        free(content);
        free(thought);
        return QK_NOMEM;
    }
    add_envelope(e, o);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
    cJSON_AddRawToObject(choice, "index", "0"); /* what cJSON prints for 0, unprinted */
    cJSON_AddItemToObject(choice, "delta", d);
    if (!e->role_sent)
        cJSON_AddStringToObject(d, "role", "assistant");
    if (text_len > 0 || !thought)
        cJSON_AddStringToObject(d, "content", content);
    if (thought)
        cJSON_AddStringToObject(d, "reasoning_content", thought);
    if (finish)
        cJSON_AddStringToObject(choice, "finish_reason", finish);
    else
        cJSON_AddNullToObject(choice, "finish_reason");
    if (e->include_usage)
        add_usage(o, NULL);
    else if (usage && usage->known)
        add_usage(o, usage);
    free(content);
    free(thought);
    rc = emit_event(e, o, out);
    if (rc == QK_OK) {
        e->role_sent = true;
        if (finish)
            e->finish_sent = true;
    }
    return rc;
}

/* The caller's usage chunk: no choices, the stream's counts (none: no chunk, rather than
 * counts the upstream never gave). */
static enum qk_err
emit_usage_chunk(struct qp_chunk_emitter *e, struct qk_buf *out)
{
    if (!e->include_usage || !e->usage.known)
        return QK_OK;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return QK_NOMEM;
    add_envelope(e, o);
    if (!cJSON_AddArrayToObject(o, "choices")) {
        cJSON_Delete(o);
        return QK_NOMEM;
    }
    add_usage(o, &e->usage);
    return emit_event(e, o, out);
}

/* INLINE: the delta's reasoning and text as one content, the think block opened before
 * the first reasoning and closed before the first text or at the finish. */
static enum qk_err
emit_inline(struct qp_chunk_emitter *e, const char *reasoning, size_t reasoning_len,
            const struct qp_delta *d, struct qk_buf *out)
{
    struct qk_buf c;
    qk_buf_init(&c, QP_SSE_EVENT_CAP + 64);
    enum qk_err rc = QK_OK;
    if (reasoning_len > 0) {
        if (!e->think_open)
            rc = qk_buf_append_str(&c, THINK_OPEN);
        e->think_open = true;
        if (rc == QK_OK)
            rc = qk_buf_append(&c, reasoning, reasoning_len);
    }
    if (rc == QK_OK && e->think_open && (d->text_len > 0 || d->finish_reason)) {
        rc = qk_buf_append_str(&c, THINK_CLOSE);
        e->think_open = false;
    }
    if (rc == QK_OK)
        rc = qk_buf_append(&c, d->text, d->text_len);
    if (rc == QK_OK)
        rc = emit_chunk(e, qk_buf_len(&c) ? qk_buf_ptr(&c) : "", qk_buf_len(&c), NULL, 0,
                        d->finish_reason, d->finish_reason ? &e->usage : NULL, out);
    qk_buf_free(&c);
    return rc;
}

enum qk_err
qp_chunk_emit_delta(struct qp_chunk_emitter *e, const struct qp_delta *d, struct qk_buf *out)
{
    if (e->events == 0 && adopt_envelope(e, d) != QK_OK)
        return QK_NOMEM;
    /* Counts may come on a chunk of their own, even after the finish. */
    if (d->has_usage)
        e->usage = usage_of(d);
    const char *reasoning = d->reasoning ? d->reasoning : "";
    size_t reasoning_len = e->reasoning == QP_REASONING_DROP ? 0 : d->reasoning_len;
    /* DROP: the first reasoning still starts the caller's stream (the role, an empty
     * content), so a long think is a live stream (keep-alives, no attempt timeout). */
    bool start = e->reasoning == QP_REASONING_DROP && d->reasoning_len > 0 && !e->role_sent;
    if (e->finish_sent || (d->text_len == 0 && reasoning_len == 0 && !d->finish_reason && !start))
        return QK_OK;
    if (e->reasoning == QP_REASONING_INLINE)
        return emit_inline(e, reasoning, reasoning_len, d, out);
    /* Usage rides on the finishing chunk: the latest counts given so far. */
    return emit_chunk(e, d->text, d->text_len, reasoning, reasoning_len, d->finish_reason,
                      d->finish_reason ? &e->usage : NULL, out);
}

enum qk_err
qp_chunk_emit_close(struct qp_chunk_emitter *e, struct qk_buf *out)
{
    /* Mutant raw_chunks: no finish_reason filled in (SSE-12). */
    const char *end = e->think_open ? THINK_CLOSE : ""; /* INLINE: the block's end */
    if (!e->finish_sent && !QP_SSE_MUTANT(e, raw_chunks) &&
        emit_chunk(e, end, strlen(end), NULL, 0, "stop", &e->usage, out) != QK_OK)
        return QK_NOMEM;
    e->think_open = false;
    if (emit_usage_chunk(e, out) != QK_OK)
        return QK_NOMEM;
    return qk_buf_append_str(out, "data: [DONE]\n\n");
}

enum qk_err
qp_chunk_emit_error(const char *message, struct qk_buf *out)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", message);
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
