/*
 * The v2 stream's frames, byte for byte as the captures show them: Python-style JSON
 * spacing (", " and ": ") in choices frames, the mixed spacing of `response.created`,
 * LF line ends. Strings go through cJSON for their escaping.
 */
#include "mock_stream_v2.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "mock_fixtures.h"

/* The frames of one response, each a JSON text (owned). */
struct frames {
    char **v;
    size_t n, cap;
};

static void
frames_free(struct frames *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i]);
    free(f->v);
    memset(f, 0, sizeof *f);
}

/* Takes @p b's bytes as the next frame. */
static enum qk_err
frames_push(struct frames *f, struct qk_buf *b)
{
    if (f->n == f->cap) {
        size_t n = f->cap ? f->cap * 2 : 16;
        char **v = realloc(f->v, n * sizeof *v);
        if (!v)
            return QK_NOMEM;
        f->v = v;
        f->cap = n;
    }
    char *s = qk_buf_take(b, NULL);
    if (!s)
        return QK_NOMEM;
    f->v[f->n++] = s;
    return QK_OK;
}

/* @p s as a JSON string, quotes included. */
static enum qk_err
put_str(struct qk_buf *b, const char *s)
{
    cJSON *item = cJSON_CreateString(s);
    char *json = item ? cJSON_PrintUnformatted(item) : NULL;
    cJSON_Delete(item);
    if (!json)
        return QK_NOMEM;
    enum qk_err rc = qk_buf_append_str(b, json);
    cJSON_free(json);
    return rc;
}

/* ["a", "b"] of the first @p n of @p v; element @p n - 1 cut to @p last_len bytes when
 * @p last_len is not (size_t)-1. */
static enum qk_err
put_array(struct qk_buf *b, const char *const *v, size_t n, size_t last_len)
{
    enum qk_err rc = qk_buf_append_str(b, "[");
    for (size_t i = 0; i < n && rc == QK_OK; i++) {
        if (i)
            rc = qk_buf_append_str(b, ", ");
        if (rc != QK_OK)
            break;
        if (i + 1 == n && last_len != (size_t)-1) {
            char *cut = strndup(v[i], last_len);
            rc = cut ? put_str(b, cut) : QK_NOMEM;
            free(cut);
        } else {
            rc = put_str(b, v[i]);
        }
    }
    return rc == QK_OK ? qk_buf_append_str(b, "]") : rc;
}

/* The state of one response's usage while its frames are built. */
struct counts {
    int input;
    int reasoning; /* thinking frames so far */
    int text;      /* answer frames so far */
};

static enum qk_err
put_usage(struct qk_buf *b, const struct mock_v2_answer *a, const struct counts *c)
{
    int out = c->reasoning + c->text;
    enum qk_err rc = qk_buf_appendf(b,
                                    ", \"usage\": {\"input_tokens\": %d, \"output_tokens\": %d, "
                                    "\"characters\": 0, \"total_tokens\": %d, "
                                    "\"input_tokens_details\": {\"text_tokens\": %d}, "
                                    "\"output_tokens_details\": {",
                                    c->input, out, c->input + out, c->input);
    if (rc == QK_OK && a->thinking)
        rc = qk_buf_appendf(b, "\"reasoning_tokens\": %d, ", c->reasoning);
    if (rc == QK_OK)
        rc = qk_buf_appendf(b,
                            "\"text_tokens\": %d}, \"prompt_tokens_details\": "
                            "{\"cached_tokens\": 0}}",
                            out);
    return rc;
}

/* `, "phase": "X"` when the request asked for phases. */
static enum qk_err
put_phase(struct qk_buf *b, const struct mock_v2_answer *a, const char *phase)
{
    return a->phase_keys ? qk_buf_appendf(b, ", \"phase\": \"%s\"", phase) : QK_OK;
}

/* The end of a choices frame: response_id, usage (when on) and timestamp. */
static enum qk_err
put_tail(struct qk_buf *b, const struct mock_v2_answer *a, const struct mock_v2_response *r,
         const struct mock_stream_opts *o, const struct counts *c, bool usage)
{
    enum qk_err rc = qk_buf_append_str(b, "}], \"response_id\": ");
    if (rc == QK_OK)
        rc = put_str(b, r->response_id);
    if (rc == QK_OK && usage && o->usage)
        rc = put_usage(b, a, c);
    if (rc == QK_OK)
        rc = qk_buf_appendf(b, ", \"timestamp\": %lld}", a->timestamp);
    return rc;
}

/* A typing frame: `content` @p content (or "" with summary arrays) in phase @p phase. */
static enum qk_err
typing_frame(struct frames *f, const struct mock_v2_answer *a, const struct mock_v2_response *r,
             const struct mock_stream_opts *o, const struct counts *c, const char *phase,
             const char *content, size_t n_thought, size_t cut)
{
    struct qk_buf b;
    qk_buf_init(&b, SIZE_MAX / 2);
    enum qk_err rc =
        qk_buf_append_str(&b, "{\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": ");
    if (rc == QK_OK)
        rc = put_str(&b, content);
    if (rc == QK_OK)
        rc = put_phase(&b, a, phase);
    if (rc == QK_OK && n_thought) {
        size_t n_titles = n_thought < r->n_titles ? n_thought : r->n_titles;
        rc = qk_buf_append_str(&b, ", \"extra\": {\"summary_title\": {\"content\": ");
        if (rc == QK_OK)
            rc = put_array(&b, r->titles, n_titles, (size_t)-1);
        if (rc == QK_OK)
            rc = qk_buf_append_str(&b, "}, \"summary_thought\": {\"content\": ");
        if (rc == QK_OK)
            rc = put_array(&b, r->reasoning, n_thought, cut);
        if (rc == QK_OK)
            rc = qk_buf_append_str(&b, "}}");
    }
    if (rc == QK_OK)
        rc = qk_buf_append_str(&b, ", \"status\": \"typing\"}");
    if (rc == QK_OK)
        rc = put_tail(&b, a, r, o, c, true);
    if (rc == QK_OK)
        rc = frames_push(f, &b);
    qk_buf_free(&b);
    return rc;
}

/* The frame that ends a thinking phase (no extra, no usage). */
static enum qk_err
thinking_finished(struct frames *f, const struct mock_v2_answer *a,
                  const struct mock_v2_response *r, const struct mock_stream_opts *o,
                  const char *phase)
{
    struct qk_buf b;
    qk_buf_init(&b, SIZE_MAX / 2);
    enum qk_err rc = qk_buf_append_str(
        &b, "{\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"\"");
    if (rc == QK_OK)
        rc = put_phase(&b, a, phase);
    if (rc == QK_OK)
        rc = qk_buf_append_str(&b, ", \"status\": \"finished\"}");
    if (rc == QK_OK)
        rc = put_tail(&b, a, r, o, NULL, false);
    if (rc == QK_OK)
        rc = frames_push(f, &b);
    qk_buf_free(&b);
    return rc;
}

/* The answer's last frame: key order content, role, status, phase; no usage, no timestamp. */
static enum qk_err
answer_finished(struct frames *f, const struct mock_v2_answer *a, const struct mock_v2_response *r)
{
    struct qk_buf b;
    qk_buf_init(&b, SIZE_MAX / 2);
    enum qk_err rc = qk_buf_append_str(&b, "{\"choices\": [{\"delta\": {\"content\": \"\", "
                                           "\"role\": \"assistant\", \"status\": \"finished\"");
    if (rc == QK_OK)
        rc = put_phase(&b, a, "answer");
    if (rc == QK_OK)
        rc = qk_buf_append_str(&b, "}}], \"response_id\": ");
    if (rc == QK_OK)
        rc = put_str(&b, r->response_id);
    if (rc == QK_OK)
        rc = qk_buf_append_str(&b, "}");
    if (rc == QK_OK)
        rc = frames_push(f, &b);
    qk_buf_free(&b);
    return rc;
}

/* Where a half-written summary element is cut: before the last blank of its first half,
 * so the part sent has no blank at its end. */
static size_t
half_cut(const char *s)
{
    size_t half = strlen(s) / 2, i = half;
    while (i > 0 && s[i] != ' ')
        i--;
    while (i > 0 && s[i - 1] == ' ')
        i--;
    return i > 0 ? i : half;
}

static enum qk_err
reasoning_frames(struct frames *f, const struct mock_v2_answer *a, const struct mock_v2_response *r,
                 const struct mock_stream_opts *o, struct counts *c)
{
    enum qk_err rc = QK_OK;
    if (a->think_phase) {
        for (size_t i = 0; i < r->n_reasoning && rc == QK_OK; i++) {
            c->reasoning++;
            rc = typing_frame(f, a, r, o, c, "think", r->reasoning[i], 0, 0);
        }
        return rc == QK_OK ? thinking_finished(f, a, r, o, "think") : rc;
    }
    for (size_t i = 0; i < r->n_reasoning && rc == QK_OK; i++) {
        if (o->summary_grow) {
            c->reasoning++;
            rc = typing_frame(f, a, r, o, c, "thinking_summary", "", i + 1,
                              half_cut(r->reasoning[i]));
            if (rc != QK_OK)
                break;
        }
        c->reasoning++;
        rc = typing_frame(f, a, r, o, c, "thinking_summary", "", i + 1, (size_t)-1);
    }
    return rc == QK_OK ? thinking_finished(f, a, r, o, "thinking_summary") : rc;
}

/* Every frame of response @p r but its created frame; its streamed text to @p text. */
static enum qk_err
response_frames(struct frames *f, const struct mock_v2_answer *a, const struct mock_v2_response *r,
                const struct mock_stream_opts *o, char **text)
{
    struct counts c = {.input = a->input_tokens};
    size_t cuts[MOCK_ANSWER_MAX + 2], n = 0;
    enum qk_err rc = QK_OK;
    if (o->empty_answer) {
        *text = strdup("");
        if (!*text)
            return QK_NOMEM;
    } else {
        rc = mock_text_build(r->pieces, r->n_pieces, o, text, cuts, &n);
        if (rc != QK_OK)
            return rc;
        bool cumulative = o->cumulative == 1;
        uint64_t carried = 0;
        for (size_t i = 0; i < n; i++)
            carried += cuts[i + 1] - (cumulative ? 0 : cuts[i]);
        if (carried > MOCK_STREAM_MAX_BYTES)
            return QK_TOO_BIG;
    }
    if (a->thinking && r->n_reasoning)
        rc = reasoning_frames(f, a, r, o, &c);
    for (size_t i = 0; i < n && rc == QK_OK; i++) {
        size_t from = o->cumulative == 1 ? 0 : cuts[i], to = cuts[i + 1];
        char saved = (*text)[to];
        (*text)[to] = '\0';
        c.text++;
        rc = typing_frame(f, a, r, o, &c, "answer", *text + from, 0, 0);
        (*text)[to] = saved;
    }
    /* The empty typing frame the service sends before it finishes. */
    if (rc == QK_OK && !o->empty_answer)
        rc = typing_frame(f, a, r, o, &c, "answer", "", 0, 0);
    if (rc == QK_OK)
        rc = answer_finished(f, a, r);
    return rc;
}

/* One `data:` event: its keep-alive comment when asked, the JSON, a blank line. */
static enum qk_err
push_event(struct qk_buf *bytes, size_t **ends, size_t *n, size_t *cap,
           const struct mock_stream_opts *o, const char *json)
{
    const char *eol = mock_eol_str(o->eol);
    enum qk_err rc = o->comments ? qk_buf_appendf(bytes, ": keep-alive%s", eol) : QK_OK;
    if (rc == QK_OK)
        rc = qk_buf_appendf(bytes, "data: %s%s%s", json, eol, eol);
    if (rc != QK_OK)
        return rc;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        size_t *e = realloc(*ends, c * sizeof *e);
        if (!e)
            return QK_NOMEM;
        *ends = e;
        *cap = c;
    }
    (*ends)[(*n)++] = qk_buf_len(bytes);
    return QK_OK;
}

static enum qk_err
created_frame(struct qk_buf *b, const struct mock_v2_answer *a, const struct mock_v2_response *r,
              size_t index)
{
    /* The capture's spacing: a blank after every colon but response_id's. */
    enum qk_err rc = qk_buf_append_str(b, "{\"response.created\":{\"chat_id\": ");
    if (rc == QK_OK)
        rc = put_str(b, a->chat_id);
    if (rc == QK_OK)
        rc = qk_buf_append_str(b, ", \"parent_id\": ");
    if (rc == QK_OK)
        rc = put_str(b, a->parent_id);
    if (rc == QK_OK)
        rc = qk_buf_append_str(b, ", \"response_id\":");
    if (rc == QK_OK)
        rc = put_str(b, r->response_id);
    if (rc == QK_OK)
        rc = qk_buf_appendf(b, ", \"response_index\": \"%zu\"}}", index);
    return rc;
}

enum qk_err
mock_plan_build_v2(const struct mock_v2_answer *a, const struct mock_stream_opts *o,
                   struct mock_plan *out, char **text0)
{
    struct frames f[2] = {{0}};
    char *texts[2] = {NULL, NULL};
    struct qk_buf bytes, one;
    qk_buf_init(&bytes, SIZE_MAX / 2);
    qk_buf_init(&one, SIZE_MAX / 2);
    size_t *ends = NULL, n = 0, cap = 0;
    size_t n_resp = a->n_resp == 2 ? 2 : 1;
    enum qk_err rc = QK_OK;

    for (size_t i = 0; i < n_resp && rc == QK_OK; i++)
        rc = response_frames(&f[i], a, &a->resp[i], o, &texts[i]);
    for (size_t i = 0; i < n_resp && rc == QK_OK; i++) {
        qk_buf_reset(&one);
        rc = created_frame(&one, a, &a->resp[i], i);
        if (rc == QK_OK)
            rc = push_event(&bytes, &ends, &n, &cap, o, qk_buf_ptr(&one));
    }
    /* The responses' frames interleaved, one of each in turn; error_after cuts them. */
    size_t sent = 0, limit = o->error_after >= 0 ? (size_t)o->error_after : SIZE_MAX;
    bool cut = false;
    for (size_t k = 0; rc == QK_OK && !cut && (k < f[0].n || k < f[1].n); k++) {
        for (size_t i = 0; i < n_resp && rc == QK_OK; i++) {
            if (k >= f[i].n)
                continue;
            if (sent == limit) {
                cut = true;
                break;
            }
            rc = push_event(&bytes, &ends, &n, &cap, o, f[i].v[k]);
            sent++;
        }
    }
    if (rc == QK_OK && cut)
        rc = push_event(&bytes, &ends, &n, &cap, o,
                        "{\"error\":{\"code\":\"internal_error\",\"details\":\"" MOCK_V2_QUOTA_ERROR
                        "\"}}");
    if (rc == QK_OK && !cut && o->done && !o->cut_last_event)
        rc = push_event(&bytes, &ends, &n, &cap, &(struct mock_stream_opts){.eol = o->eol},
                        "[DONE]");
    if (rc == QK_OK)
        rc = mock_plan_assemble(&bytes, ends, n, o, out);
    if (rc == QK_OK && text0) {
        *text0 = texts[0];
        texts[0] = NULL;
    }
    for (size_t i = 0; i < 2; i++) {
        frames_free(&f[i]);
        free(texts[i]);
    }
    free(ends);
    qk_buf_free(&bytes);
    qk_buf_free(&one);
    return rc;
}
