/*
 * The relay of one streamed completion: its shared buffer, its phase and its lock.
 *
 * LOCK ORDER of s->lock (every lock and unlock of it is in this file):
 *  - Taken by the loop thread in the loop functions below, with no other lock held.
 *  - Taken by a server thread in qp_stream_read(), where libmicrohttpd holds the
 *    response's mutex (so: response mutex -> s->lock), and in qp_stream_connection_done()
 *    with no other lock held.
 *  - While holding it, this file takes only locks that come after it: libmicrohttpd's
 *    internal mutex (MHD_suspend_connection in the reader, MHD_get_connection_info in
 *    arm_locked; the loop resumes in its batch, with no lock of ours held), the loop's
 *    post-queue lock (qp_loop_post) and,
 *    when the buffer overflows its cap, stdio's lock (qp_log_note in append_locked). It
 *    also calls epoll_ctl (qp_loop_watch_add/_disarm), which takes no lock of ours.
 *  - Done outside it: libcurl calls (pause, remove), the normalizer (qp_sse_norm_*),
 *    timers, the forwarder's bookkeeping and every qp_request_unref() that may be the
 *    last (post_notice_locked drops, under the lock, only the reference it took, never
 *    the last). No function here waits for anything while holding it.
 */
#include "stream.h"

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mutant.h"
#include "request.h"
#include "sse_norm.h"

void
qp_stream_init(struct qp_stream *s)
{
    pthread_mutex_init(&s->lock, NULL);
    s->phase = QP_STREAM_ATTEMPTING;
    qk_buf_init(&s->out, QP_STREAM_BUFFER_CAP);
    qk_buf_init(&s->pending, QP_STREAM_BUFFER_CAP);
    qk_buf_init(&s->scratch, QP_STREAM_BUFFER_CAP);
    s->fd = -1;
    s->watch.fd = -1;
}

void
qp_stream_release(struct qp_stream *s)
{
    qp_sse_norm_free(s->norm);
    s->norm = NULL;
    qk_buf_free(&s->out);
    qk_buf_free(&s->pending);
    qk_buf_free(&s->scratch);
    pthread_mutex_destroy(&s->lock);
}

/* ---- under the lock ---------------------------------------------------------------- */

/* Resumes the caller's connection if the reader suspended it, in the loop's next batch
 * (loop.h): the reader cannot run before, as the connection stays suspended till then. */
static void
wake_locked(struct qp_stream *s)
{
    if (s->suspended) {
        s->suspended = false;
        qp_request_resume_later(QP_CONTAINER_OF(s, struct qp_request, st), s->loop);
    }
}

/* Takes the caller's socket out of the loop's epoll set. */
static void
disarm_locked(struct qp_stream *s)
{
    if (s->fd_armed) {
        qp_loop_watch_disarm(s->loop, s->fd);
        s->fd_armed = false;
    }
}

/* Puts the caller's socket in the loop's epoll set (loop thread). */
static void
arm_locked(struct qp_stream *s)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!s->fd_armed && ci && qp_loop_watch_add(s->loop, &s->watch, ci->connect_fd) == QK_OK) {
        s->fd = ci->connect_fd;
        s->fd_armed = true;
    }
}

/* Asks the loop to look at the stream (unpause, client gone); the notice is the request,
 * with a reference of its own. */
static void
post_notice_locked(struct qp_stream *s)
{
    if (s->phase != QP_STREAM_LIVE || s->notice_posted)
        return;
    struct qp_request *req = QP_CONTAINER_OF(s, struct qp_request, st);
    s->notice_posted = true;
    qp_request_ref(req);
    if (!qp_loop_post(s->loop, req)) {
        s->notice_posted = false;
        qp_request_unref(req); /* never the last: the caller holds one */
    }
}

static void
append_locked(struct qp_stream *s, const struct qk_buf *bytes)
{
    if (qk_buf_append(&s->out, qk_buf_ptr(bytes), qk_buf_len(bytes)) != QK_OK)
        qp_log_note(s->log, QP_LOG_ERROR, "stream", "buffer over its cap; bytes dropped");
}

/* ---- loop thread ------------------------------------------------------------------- */

void
qp_stream_bind(struct qp_stream *s, struct MHD_Connection *conn, struct qp_loop *loop,
               struct qp_log log, const char *body, size_t len)
{
    s->conn = conn;
    s->loop = loop;
    s->log = log;
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    s->incremental = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "incremental_output"));
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    s->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(opts, "include_usage"));
    snprintf(s->model, sizeof(s->model), "%s", cJSON_IsString(model) ? model->valuestring : "");
    cJSON_Delete(root);
}

bool
qp_stream_new_attempt(struct qp_stream *s, const struct qp_decoder_ops *decoder,
                      enum qp_reasoning_mode reasoning, const char *request_id)
{
    char id[96];
    snprintf(id, sizeof(id), "chatcmpl-%s", request_id);
    qp_sse_norm_free(s->norm);
    struct qp_sse_norm_opts o = {
        .dialect = decoder,
        .incremental_requested = s->incremental,
        .model = s->model,
        .id = id,
        .now_s = (long long)time(NULL),
        .reasoning = reasoning,
        .include_usage = s->include_usage,
    };
    s->norm = qp_sse_norm_new_opts(&o);
    s->sse_known = s->sse = s->inband = s->bad_event = s->norm_finished = false;
    s->inband_msg[0] = '\0';
    s->unusable[0] = '\0';
    qk_buf_reset(&s->pending);
    return s->norm != NULL;
}

QP_MUTANT_EDITABLE struct qp_stream_policy qp_stream_policy = {.pause_when_full = true,
                                                               .idle_counts_events = true};

bool
qp_stream_feed(struct qp_stream *s, const char *bytes, size_t len, struct qk_buf *into)
{
    char *rewritten = NULL;
    QP_MUTANT_REWRITE(upstream_write, &bytes, &len, &rewritten);
    bool go_on = true;
    enum qp_sse_status st = qp_sse_norm_feed(s->norm, bytes, len, into);
    if (st == QP_SSE_INBAND_ERROR) {
        s->inband = true; /* SSE-13 before the start; a mid-stream failure after it */
        snprintf(s->inband_msg, sizeof(s->inband_msg), "%s", qp_sse_norm_inband_message(s->norm));
        go_on = false;
    } else if (st == QP_SSE_BAD_EVENT || st == QP_SSE_NOMEM) {
        s->bad_event = true;
        go_on = false;
    }
    free(rewritten);
    return go_on;
}

void
qp_stream_watch_caller(struct qp_stream *s)
{
    pthread_mutex_lock(&s->lock);
    arm_locked(s);
    pthread_mutex_unlock(&s->lock);
}

void
qp_stream_unwatch(struct qp_stream *s)
{
    qp_loop_watch_forget(s->loop, &s->watch);
    pthread_mutex_lock(&s->lock);
    disarm_locked(s);
    pthread_mutex_unlock(&s->lock);
}

void
qp_stream_commit(struct qp_stream *s)
{
    pthread_mutex_lock(&s->lock);
    append_locked(s, &s->pending);
    s->phase = QP_STREAM_LIVE;
    arm_locked(s);
    pthread_mutex_unlock(&s->lock);
    qk_buf_reset(&s->pending);
    s->last_upstream_ms = s->last_out_ms = qk_now_ms();
}

void
qp_stream_push(struct qp_stream *s, const struct qk_buf *bytes)
{
    if (qk_buf_len(bytes) == 0)
        return;
    pthread_mutex_lock(&s->lock);
    if (!s->client_gone)
        append_locked(s, bytes);
    s->last_out_ms = qk_now_ms();
    wake_locked(s);
    pthread_mutex_unlock(&s->lock);
}

bool
qp_stream_relay(struct qp_stream *s, const char *bytes, size_t len, bool caller_gone)
{
    size_t progress = qp_sse_norm_progress(s->norm);
    qk_buf_reset(&s->scratch);
    bool go_on = qp_stream_feed(s, bytes, len, &s->scratch);
    /* Only a complete event or comment shows the upstream alive (SSE-10): a trickle of
     * bytes that never completes one must not hold the stream open. */
    if (!qp_stream_policy.idle_counts_events || qp_sse_norm_progress(s->norm) != progress)
        s->last_upstream_ms = qk_now_ms();
    if (!caller_gone)
        qp_stream_push(s, &s->scratch); /* SSE-2: at once, whatever the write held */
    return go_on;
}

void
qp_stream_keepalive(struct qp_stream *s)
{
    qk_buf_reset(&s->scratch);
    if (qk_buf_append_str(&s->scratch, ": keep-alive\n\n") == QK_OK)
        qp_stream_push(s, &s->scratch);
}

enum qp_stream_room
qp_stream_reserve(struct qp_stream *s)
{
    pthread_mutex_lock(&s->lock);
    enum qp_stream_room room = QP_STREAM_ROOM;
    if (s->client_gone) {
        room = QP_STREAM_GONE;
    } else if (qp_stream_policy.pause_when_full && qk_buf_len(&s->out) >= QP_STREAM_BUFFER) {
        s->paused = true; /* SSE-11: the reader's drain posts a notice to resume */
        room = QP_STREAM_FULL;
    }
    pthread_mutex_unlock(&s->lock);
    return room;
}

bool
qp_stream_paused(struct qp_stream *s)
{
    pthread_mutex_lock(&s->lock);
    bool paused = s->paused;
    pthread_mutex_unlock(&s->lock);
    return paused;
}

void
qp_stream_finish(struct qp_stream *s, bool ok, const char *message,
                 const struct qp_log_failure *cut)
{
    qk_buf_reset(&s->scratch);
    if (!s->norm_finished && s->norm &&
        qp_sse_norm_finish(s->norm, ok, message, &s->scratch) != QK_OK)
        qp_log_note(s->log, QP_LOG_ERROR, "stream", "stream end: out of memory");
    QP_MUTANT_REWRITE(stream_end, &s->scratch, ok, s->log);
    s->norm_finished = true;
    qp_loop_watch_forget(s->loop, &s->watch);
    qp_stream_push(s, &s->scratch);
    pthread_mutex_lock(&s->lock);
    s->phase = QP_STREAM_CLOSING;
    if (cut) {
        s->cut = true;
        s->cut_as = *cut;
    }
    disarm_locked(s);
    wake_locked(s);
    pthread_mutex_unlock(&s->lock);
}

bool
qp_stream_caller_left(struct qp_stream *s, bool keep_relaying)
{
    qp_loop_watch_forget(s->loop, &s->watch);
    pthread_mutex_lock(&s->lock);
    s->client_gone = true;
    disarm_locked(s);
    wake_locked(s); /* the reader then ends the response with an error */
    bool paused = s->paused;
    if (keep_relaying) {
        s->paused = false; /* relay into the void until the upstream ends by itself */
        s->orphaned = true;
    } else {
        s->phase = QP_STREAM_CLOSED;
    }
    pthread_mutex_unlock(&s->lock);
    return paused;
}

struct qp_stream_notice
qp_stream_take_notice(struct qp_stream *s)
{
    struct qp_stream_notice n;
    pthread_mutex_lock(&s->lock);
    s->notice_posted = false;
    n.live = s->phase == QP_STREAM_LIVE;
    n.gone = s->client_gone;
    n.resume = s->paused && qk_buf_len(&s->out) <= QP_STREAM_BUFFER / 2;
    if (n.resume && !n.gone)
        s->paused = false;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* ---- server threads ---------------------------------------------------------------- */

ssize_t
qp_stream_read(struct qp_stream *s, char *buf, size_t max)
{
    ssize_t ret = 0;
    pthread_mutex_lock(&s->lock);
    size_t have = qk_buf_len(&s->out);
    bool finished = s->phase >= QP_STREAM_CLOSING;
    bool hold = QP_MUTANT(buffer_stream) && !finished;
    if (s->client_gone) {
        ret = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (have > 0 && !hold) {
        size_t n = have < max ? have : max;
        memcpy(buf, qk_buf_ptr(&s->out), n);
        qk_buf_consume(&s->out, n);
        if (s->paused && qk_buf_len(&s->out) <= QP_STREAM_BUFFER / 2)
            post_notice_locked(s); /* SSE-11: let the upstream flow again */
        ret = (ssize_t)n;
    } else if (finished && !hold) {
        ret = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        s->suspended = true;
        MHD_suspend_connection(s->conn);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

void
qp_stream_connection_done(struct qp_stream *s, bool completed_ok)
{
    pthread_mutex_lock(&s->lock);
    disarm_locked(s);
    if (s->phase == QP_STREAM_LIVE && !completed_ok) {
        s->client_gone = true;
        post_notice_locked(s);
    }
    pthread_mutex_unlock(&s->lock);
}

bool
qp_stream_cut(struct qp_stream *s, struct qp_log_failure *out)
{
    pthread_mutex_lock(&s->lock);
    bool cut = s->cut;
    if (cut)
        *out = s->cut_as;
    pthread_mutex_unlock(&s->lock);
    return cut;
}
