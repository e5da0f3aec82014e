#include "chunk_emit.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sse_mutant.h"

struct qp_chunk_emitter {
    char *model, *id;
    long long created;
    bool role_sent;
    bool finish_sent;
    size_t events; /* chunk events written */
#ifdef QK_MUTANTS
    enum qp_mutant mutant;
#endif
};

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
    if (!e->model || !e->id) {
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
    if (d->has_created)
        e->created = d->created_s;
    return e->model && e->id ? QK_OK : QK_NOMEM;
}

static enum qk_err
emit_chunk(struct qp_chunk_emitter *e, const char *text, size_t text_len, const char *finish,
           const struct qp_delta *usage, struct qk_buf *out)
{
    enum qk_err rc = QK_NOMEM;
    cJSON *o = cJSON_CreateObject();
    cJSON *choice = cJSON_CreateObject();
    cJSON *d = cJSON_CreateObject();
    char *content = strndup(text, text_len);
    if (!o || !choice || !d || !content) {
        cJSON_Delete(o);
        cJSON_Delete(choice);
        cJSON_Delete(d);
        free(content);
        return QK_NOMEM;
    }
    cJSON_AddStringToObject(o, "id", e->id);
    cJSON_AddStringToObject(o, "object", "chat.completion.chunk");
    /* Mutant raw_chunks: milliseconds, as some proxies send (SSE-12). */
    cJSON_AddNumberToObject(o, "created",
                            (double)e->created * (QP_SSE_MUTANT(e, raw_chunks) ? 1000.0 : 1.0));
    cJSON_AddStringToObject(o, "model", e->model);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
    cJSON_AddNumberToObject(choice, "index", 0);
    cJSON_AddItemToObject(choice, "delta", d);
    if (!e->role_sent)
        cJSON_AddStringToObject(d, "role", "assistant");
    cJSON_AddStringToObject(d, "content", content);
    if (finish)
        cJSON_AddStringToObject(choice, "finish_reason", finish);
    else
        cJSON_AddNullToObject(choice, "finish_reason");
    if (usage && usage->has_usage) {
        cJSON *u = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", usage->prompt_tokens);
        cJSON_AddNumberToObject(u, "completion_tokens", usage->completion_tokens);
        cJSON_AddNumberToObject(u, "total_tokens", usage->prompt_tokens + usage->completion_tokens);
    }
    char *s = cJSON_PrintUnformatted(o);
    if (s && QP_SSE_MUTANT(e, sse_extra_fields) &&
        qk_buf_appendf(out, "event: message\nid: %zu\n", e->events + 1) != QK_OK) {
        cJSON_free(s);
        s = NULL;
    }
    if (s && qk_buf_appendf(out, "data: %s\n\n", s) == QK_OK) {
        rc = QK_OK;
        e->role_sent = true;
        e->events++;
        if (finish)
            e->finish_sent = true;
    }
    cJSON_free(s);
    cJSON_Delete(o);
    free(content);
    return rc;
}

enum qk_err
qp_chunk_emit_delta(struct qp_chunk_emitter *e, const struct qp_delta *d, struct qk_buf *out)
{
    if (e->events == 0 && adopt_envelope(e, d) != QK_OK)
        return QK_NOMEM;
    if (e->finish_sent || (d->text_len == 0 && !d->finish_reason))
        return QK_OK;
    /* Usage rides on the finishing chunk. */
    return emit_chunk(e, d->text, d->text_len, d->finish_reason, d->finish_reason ? d : NULL, out);
}

enum qk_err
qp_chunk_emit_close(struct qp_chunk_emitter *e, struct qk_buf *out)
{
    /* Mutant raw_chunks: no finish_reason filled in (SSE-12). */
    if (!e->finish_sent && !QP_SSE_MUTANT(e, raw_chunks) &&
        emit_chunk(e, "", 0, "stop", NULL, out) != QK_OK)
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
