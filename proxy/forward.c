/*
 * The upstream exchange, on the loop thread: cache, single flight, attempts, retries.
 *
 * Flow of one request: on_post -> (models: cache hit? join a flight?) -> start_attempt ->
 * libcurl -> on_attempt_done -> qp_retry_decide -> success | timer -> start_attempt |
 * final answer -> finish (complete callback resumes the caller's connection).
 */
#include "forward.h"

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "apierror.h"
#include "cache.h"
#include "completion.h"
#include "flight.h"
#include "headers.h"
#include "models.h"
#include "mutant.h"
#include "sse_norm.h"

/** Largest upstream answer kept in memory (a model list is ~10 KB, a completion less). */
#define QP_LIMIT_UPSTREAM_BODY (16u * 1024u * 1024u)

struct qp_forwarder {
    struct qp_forward_config cfg;
    char *models_url;
    char *chat_url;
    struct qp_loop *loop;
    struct qp_cache *cache;
    struct qp_flights *flights;
    struct qp_request *active; /* open exchanges, so a stop can answer them all */
    atomic_ulong stream_pauses; /* SSE-11: times a full stream buffer paused upstream */
};

static void start_attempt(struct qp_forwarder *fw, struct qp_request *req);
static void stream_unwatch(struct qp_forwarder *fw, struct qp_request *req);

/* libcurl read callback: the chat body of the current attempt. */
static size_t
read_body(char *buf, size_t size, size_t n, void *arg)
{
    struct qp_request *req = arg;
    size_t left = qk_buf_len(&req->body) - req->upload_off;
    size_t take = size * n < left ? size * n : left;
    memcpy(buf, qk_buf_ptr(&req->body) + req->upload_off, take);
    req->upload_off += take;
    return take;
}

/*
 * libcurl pre-request callback, called before every request libcurl sends on a connection,
 * including the one it sends again by itself when a reused connection dies before an answer
 * (it does so for a GET, or a body it can rewind). That request would reach the upstream as
 * an attempt the retry policy never counted (RETRY-3), so an attempt sends one request: a
 * second one fails the attempt, and the policy decides what follows. Connection reuse
 * itself stays on (no CURLOPT_FRESH_CONNECT): it saves a TCP and TLS handshake per request.
 */
static int
on_prereq(void *arg, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    struct qp_request *req = arg;
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    req->attempt_requests++;
    return req->attempt_requests == 1 ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

unsigned long
qp_forwarder_stream_pauses(struct qp_forwarder *fw)
{
    return atomic_load(&fw->stream_pauses);
}
static void on_attempt_done(struct qp_loop_transfer *t, CURLcode rc);

/* ---- bookkeeping ---------------------------------------------------------------- */

static void
active_add(struct qp_forwarder *fw, struct qp_request *req)
{
    req->active_prev = NULL;
    req->active_next = fw->active;
    if (fw->active)
        fw->active->active_prev = req;
    fw->active = req;
}

static void
active_remove(struct qp_forwarder *fw, struct qp_request *req)
{
    if (req->active_prev)
        req->active_prev->active_next = req->active_next;
    else
        fw->active = req->active_next;
    if (req->active_next)
        req->active_next->active_prev = req->active_prev;
    req->active_prev = req->active_next = NULL;
}

/* Hands @p req back; it must not be touched afterwards (the server may free it). */
static void
finish(struct qp_forwarder *fw, struct qp_request *req)
{
    active_remove(fw, req);
    if (req->stream && req->route == QP_ROUTE_CHAT && !req->st.started)
        stream_unwatch(fw, req); /* before the resume: the socket is MHD's again */
    if (req->resp.status == 0)
        qp_response_error(&req->resp, 500, "The proxy produced no answer.", NULL, "internal_error");
    fw->cfg.complete(req);
}

/* Finds "Name: value" in a header list; returns the value (borrowed) or NULL. */
static const char *
header_value(const struct curl_slist *list, const char *name)
{
    size_t n = strlen(name);
    const char *found = NULL;
    for (; list; list = list->next) {
        if (strncasecmp(list->data, name, n) == 0 && list->data[n] == ':') {
            found = list->data + n + 1;
            while (*found == ' ' || *found == '\t')
                found++;
        }
    }
    return found;
}

/* ---- responses ------------------------------------------------------------------- */

/* True when @p req gets the OpenAI shape of the list (HTTP-4). */
static bool
wants_v1_shape(const struct qp_request *req)
{
    return req->openai_alias;
}

/* Serves the model list @p body, already in @p req's route shape (taken; NULL: none). */
static void
respond_models(struct qp_request *req, char *body, size_t len, enum qp_cache_mark mark)
{
    req->cache = mark;
    bool v1 = wants_v1_shape(req);
    if (!body && v1) {
        qp_response_error(&req->resp, 502, "Upstream model list is not usable.", NULL,
                          "upstream_bad_body");
        return;
    }
    if (!body) {
        qp_response_error(&req->resp, 500, "Out of memory.", NULL, "internal_error");
        return;
    }
    qp_response_take_body(&req->resp, 200, body, len,
                          !v1 && QP_MUTANT(models_as_text) ? "text/plain" : "application/json");
}

/* Relays a successful chat completion with the upstream's end-to-end headers. */
static void
respond_chat_success(struct qp_request *req)
{
    const char *ctype = header_value(req->attempt_headers, "Content-Type");
    size_t len = 0;
    char *body = qk_buf_take(&req->attempt_body, &len);
    size_t openai_len = 0;
    char *openai = QP_MUTANT(usage_raw) || !body ? NULL : qp_completion_openai(body, len, &openai_len);
    if (openai) {
        free(body);
        body = openai;
        len = openai_len;
    }
    if (QP_MUTANT(rewrite_completion)) {
        free(body);
        body = strdup("{\"id\":\"chatcmpl-rewritten\",\"object\":\"chat.completion\","
                      "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                      "\"content\":\"rewritten\"},\"finish_reason\":\"stop\"}]}");
        len = body ? strlen(body) : 0;
    }
    qp_response_take_body(&req->resp, 200, body, len, ctype ? ctype : "application/json");
    for (const struct curl_slist *h = req->attempt_headers; h; h = h->next) {
        const char *colon = strchr(h->data, ':');
        if (!colon || colon == h->data || (size_t)(colon - h->data) >= 128)
            continue;
        char name[128];
        memcpy(name, h->data, (size_t)(colon - h->data));
        name[colon - h->data] = '\0';
        if (!qp_header_forward_response_of(name, req->attempt_headers))
            continue;
        struct curl_slist *l = curl_slist_append(req->resp.headers, h->data);
        if (l)
            req->resp.headers = l;
    }
}

static void
add_retry_after(struct qp_request *req)
{
    if (req->last.retry_after_ms < 0)
        return;
    char v[32];
    snprintf(v, sizeof(v), "%lld", (long long)((req->last.retry_after_ms + 999) / 1000));
    qp_response_add_header(&req->resp, "Retry-After", v);
}

/* A final, non-retryable upstream answer (RELAY). */
static void
respond_relay(struct qp_request *req)
{
    const struct qp_attempt_facts *f = &req->last;
    char msg[256];
    if (f->transport == QP_TRANSPORT_TOO_BIG) {
        snprintf(msg, sizeof(msg), "Upstream answer exceeds %u bytes.", QP_LIMIT_UPSTREAM_BODY);
        qp_response_error(&req->resp, 502, msg, NULL, "upstream_too_large");
        return;
    }
    if (QP_MUTANT(relay_html) && f->html) {
        size_t len = 0;
        char *body = qk_buf_take(&req->attempt_body, &len);
        qp_response_take_body(&req->resp, (unsigned)f->status, body, len,
                              "text/html; charset=utf-8");
        return;
    }
    long s = f->status;
    if ((s >= 400 && s <= 499) || (s == 503 && f->retry_after_ms >= 0)) {
        /* Client errors keep the upstream's status and message (ERR-2, AUTH-4). */
        char *text =
            qp_upstream_message(qk_buf_ptr(&req->attempt_body), qk_buf_len(&req->attempt_body), s);
        if (QP_MUTANT(rewrite_400) && s == 400) {
            free(text);
            text = strdup("Bad request.");
        }
        qp_response_error(&req->resp, (unsigned)s, text ? text : "Upstream error.", NULL,
                          "upstream_error");
        free(text);
        if (s == 429 || s == 503)
            add_retry_after(req);
        return;
    }
    snprintf(msg, sizeof(msg), "Upstream answered HTTP %ld, which the proxy cannot relay.", s);
    qp_response_error(&req->resp, 502, msg, NULL, "upstream_bad_status");
}

/* Retryable failures that ran out of attempts (EXHAUSTED) or time (DEADLINE). */
static void
respond_gave_up(struct qp_forwarder *fw, struct qp_request *req, bool deadline)
{
    const struct qp_attempt_facts *f = &req->last;
    char msg[512];
    char last[160];
    if (req->stream && req->st.inband)
        snprintf(last, sizeof(last), "last upstream answer: %.120s", req->st.inband_msg);
    else if (req->stream && req->st.bad_event)
        snprintf(last, sizeof(last), "last upstream event stream was malformed");
    else if (req->stream && req->st.unusable[0])
        snprintf(last, sizeof(last), "%s", req->st.unusable);
    else if (f->transport == QP_TRANSPORT_OK)
        snprintf(last, sizeof(last), "last upstream status %ld%s", f->status,
                 f->html            ? " (HTML page)"
                 : f->body_unusable ? " (unusable body)"
                                    : "");
    else
        snprintf(last, sizeof(last), "last error: %.120s",
                 req->last_error[0] ? req->last_error : "connection failed");

    if (deadline) {
        snprintf(msg, sizeof(msg), "Request deadline of %lld ms reached after %u attempt(s); %s.",
                 (long long)fw->cfg.deadline_ms, req->attempts, last);
        qp_response_error(&req->resp, 504, msg, NULL, "deadline_exceeded");
        return;
    }
    switch (f->transport) {
    case QP_TRANSPORT_TIMEOUT:
        snprintf(msg, sizeof(msg), "Upstream timed out after %u attempt(s); %s.", req->attempts,
                 last);
        qp_response_error(&req->resp, QP_MUTANT(timeout_502) ? 502 : 504, msg, NULL,
                          "upstream_timeout");
        return;
    case QP_TRANSPORT_CONNECT:
        snprintf(msg, sizeof(msg), "Upstream unreachable after %u attempt(s); %s.", req->attempts,
                 last);
        qp_response_error(&req->resp, QP_MUTANT(unreachable_500) ? 500 : 502, msg, NULL,
                          "upstream_unreachable");
        return;
    default:
        break;
    }
    snprintf(msg, sizeof(msg), "Upstream failed after %u attempt(s); %s.", req->attempts, last);
    qp_response_error(&req->resp, 502, msg, NULL,
                      f->transport == QP_TRANSPORT_OK ? "upstream_error"
                                                      : "upstream_connection_error");
}

/* ---- model list: cache and single flight ------------------------------------------ */

static struct qp_key
models_key(const struct qp_request *req)
{
    if (QP_MUTANT(global_cache))
        return qp_key_of("global", 6);
    return req->cred_key;
}

/* One landing's list; its /v1 shape is looked up or made at most once for all callers. */
struct models_landing {
    const char *raw;
    size_t len;
    char *v1;
    size_t v1_len;
    bool v1_tried;
};

/* Serves @p req the landing's list in its shape. The /v1 shape comes from the cache, which
 * made it once when it stored the list: the entry of the key IS this list here (it was
 * just stored, or it is the stale one being served). A list too large to cache is
 * converted here, once per landing. */
static void
respond_landing(struct qp_forwarder *fw, struct qp_request *req, struct models_landing *l,
                enum qp_cache_mark mark)
{
    const char *src = l->raw;
    size_t n = l->len;
    if (wants_v1_shape(req)) {
        if (!l->v1_tried) {
            l->v1_tried = true;
            if (qp_cache_get_fallback(fw->cache, req->flight_key, qk_now_ms(), QP_CACHE_DERIVED,
                                      &l->v1, &l->v1_len) == QP_CACHE_MISS)
                l->v1 = qp_models_openai(l->raw, l->len, &l->v1_len);
        }
        src = l->v1;
        n = l->v1_len;
    }
    char *copy = src ? malloc(n + 1) : NULL;
    if (copy) {
        memcpy(copy, src, n);
        copy[n] = '\0';
    }
    respond_models(req, copy, n, mark);
}

/* Ends a model-list exchange: the leader's answer goes to every waiter of its flight. */
static void
models_land(struct qp_forwarder *fw, struct qp_request *leader, const char *raw, size_t len,
            enum qp_cache_mark mark)
{
    struct models_landing landing = {.raw = raw, .len = len};
    void **waiters = NULL;
    size_t n = 0;
    if (leader->leads_flight)
        n = qp_flight_land(fw->flights, leader->flight_key, &waiters);
    if (raw)
        respond_landing(fw, leader, &landing, mark);
    for (size_t i = 0; i < n; i++) {
        struct qp_request *w = waiters[i];
        if (raw) {
            respond_landing(fw, w, &landing, mark);
        } else if (!qp_response_copy(&w->resp, &leader->resp)) {
            qp_response_clear(&w->resp);
            qp_response_error(&w->resp, 500, "Out of memory.", NULL, "internal_error");
        }
        if (!raw)
            w->cache = leader->cache;
        finish(fw, w);
    }
    free(landing.v1);
    free(waiters);
    finish(fw, leader);
}

/* A failed refresh may fall back to the last good list (CACHE-6). */
static bool
serve_stale(struct qp_forwarder *fw, struct qp_request *req)
{
    char *body = NULL;
    size_t len = 0;
    if (qp_cache_get_fallback(fw->cache, req->flight_key, qk_now_ms(), QP_CACHE_BODY, &body,
                              &len) == QP_CACHE_MISS)
        return false;
    models_land(fw, req, body, len, QP_MARK_STALE);
    free(body);
    return true;
}

/* ---- streaming relay (SSE-*) ------------------------------------------------------ */

/*
 * A streamed chat request runs attempts like any other until its first normalized event
 * exists (SSE-7, SSE-13); then stream_start() commits the 200 and from there on the
 * upstream's bytes go through the normalizer into req->st.out, which the connection's
 * content reader drains. Nothing is retried after the start (SSE-8); the end is either
 * the normalizer's closing chunk + [DONE] or one error event (stream_close()).
 */

/* Resumes the caller's connection if the reader suspended it. Call with st.lock held. */
static void
stream_wake_locked(struct qp_request *req)
{
    if (req->st.suspended) {
        req->st.suspended = false;
        MHD_resume_connection(req->conn);
    }
}

/* Hands @p bytes to the caller (loop thread). */
static void
stream_push(struct qp_request *req, const struct qk_buf *bytes)
{
    struct qp_stream *s = &req->st;
    if (qk_buf_len(bytes) == 0)
        return;
    pthread_mutex_lock(&s->lock);
    if (!s->client_gone && qk_buf_append(&s->out, qk_buf_ptr(bytes), qk_buf_len(bytes)) != QK_OK)
        fprintf(stderr, "qwen-proxy: stream buffer over its cap; bytes dropped\n");
    s->last_out_ms = qk_now_ms();
    stream_wake_locked(req);
    pthread_mutex_unlock(&s->lock);
}

/* Takes the caller's socket out of the loop's epoll set. Call with st.lock held. */
static void
stream_disarm_locked(struct qp_forwarder *fw, struct qp_request *req)
{
    if (req->st.fd_armed) {
        qp_loop_watch_disarm(fw->loop, req->st.fd);
        req->st.fd_armed = false;
    }
}

/* Watches the caller's socket for hang-up, from the first attempt on (SSE-9, SSE-18). */
static void
stream_watch_caller(struct qp_forwarder *fw, struct qp_request *req)
{
    struct qp_stream *s = &req->st;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    pthread_mutex_lock(&s->lock);
    if (!s->fd_armed && ci && qp_loop_watch_add(fw->loop, &s->watch, ci->connect_fd) == QK_OK) {
        s->fd = ci->connect_fd;
        s->fd_armed = true;
    }
    pthread_mutex_unlock(&s->lock);
}

/* Ends the watch of a stream that never started (loop thread, before the resume). */
static void
stream_unwatch(struct qp_forwarder *fw, struct qp_request *req)
{
    qp_loop_watch_forget(fw->loop, &req->st.watch);
    pthread_mutex_lock(&req->st.lock);
    stream_disarm_locked(fw, req);
    pthread_mutex_unlock(&req->st.lock);
}

/* Removes the upstream transfer before it ended (closing its connection). */
static void
drop_transfer(struct qp_forwarder *fw, struct qp_request *req)
{
    if (!req->in_transfer)
        return;
    qp_loop_remove(fw->loop, &req->xfer);
    curl_easy_cleanup(req->xfer.easy);
    req->xfer.easy = NULL;
    req->in_transfer = false;
}

static void
stream_arm_timer(struct qp_forwarder *fw, struct qp_request *req)
{
    struct qp_stream *s = &req->st;
    int64_t idle_due = s->last_upstream_ms + fw->cfg.stream_idle_timeout_ms;
    int64_t ka_due = s->last_out_ms + fw->cfg.keepalive_interval_ms;
    qp_loop_timer_arm(fw->loop, &s->timer, idle_due < ka_due ? idle_due : ka_due);
}

/*
 * Ends a started stream (loop thread; the upstream transfer is already gone): the
 * normalizer's clean end (finish_reason, [DONE]) when @p ok, else one error event carrying
 * @p message and no [DONE] (SSE-8). Drops the loop's reference.
 */
static void
stream_close(struct qp_forwarder *fw, struct qp_request *req, bool ok, const char *message)
{
    struct qp_stream *s = &req->st;
    qk_buf_reset(&s->scratch);
    if (!s->norm_finished && s->norm &&
        qp_sse_norm_finish(s->norm, ok, message, &s->scratch) != QK_OK)
        fprintf(stderr, "qwen-proxy: stream end: out of memory\n");
    if (QP_MUTANT(done_twice) && ok && qk_buf_append_str(&s->scratch, "data: [DONE]\n\n") != QK_OK)
        fprintf(stderr, "qwen-proxy: stream end: out of memory\n");
    s->norm_finished = true;
    qp_loop_timer_cancel(fw->loop, &s->timer);
    qp_loop_timer_cancel(fw->loop, &req->retry_timer);
    qp_loop_watch_forget(fw->loop, &s->watch);
    stream_push(req, &s->scratch);
    pthread_mutex_lock(&s->lock);
    s->finished = true;
    s->loop_active = false;
    stream_disarm_locked(fw, req);
    stream_wake_locked(req);
    pthread_mutex_unlock(&s->lock);
    active_remove(fw, req);
    qp_request_unref(req); /* the loop's reference; req may be gone after this */
}

/* The caller left mid-stream (SSE-9): close the upstream at once and let MHD finish. */
static void
stream_client_gone(struct qp_forwarder *fw, struct qp_request *req)
{
    struct qp_stream *s = &req->st;
    if (s->gone_handled)
        return;
    s->gone_handled = true;
    qp_loop_watch_forget(fw->loop, &s->watch);
    pthread_mutex_lock(&s->lock);
    s->client_gone = true;
    stream_disarm_locked(fw, req);
    stream_wake_locked(req); /* the reader then ends the response with an error */
    bool keep = QP_MUTANT(keep_upstream_on_disconnect);
    bool paused = s->paused;
    if (keep) {
        s->paused = false; /* relay into the void until the upstream ends by itself */
    } else {
        s->finished = true;
        s->loop_active = false;
    }
    pthread_mutex_unlock(&s->lock);
    if (keep) {
        if (paused && req->in_transfer)
            curl_easy_pause(req->xfer.easy, CURLPAUSE_CONT);
        return;
    }
    drop_transfer(fw, req);
    qp_loop_timer_cancel(fw->loop, &s->timer);
    qp_loop_timer_cancel(fw->loop, &req->retry_timer);
    active_remove(fw, req);
    qp_request_unref(req); /* the loop's reference */
}

/* The caller left before its stream started (SSE-18): no further attempt, and the open one
 * is closed at once. The answer goes nowhere; the status is for the log line. */
static void
stream_gone_before_start(struct qp_forwarder *fw, struct qp_request *req)
{
    qp_loop_timer_cancel(fw->loop, &req->retry_timer);
    qp_loop_timer_cancel(fw->loop, &req->st.timer);
    drop_transfer(fw, req);
    qp_response_clear(&req->resp);
    qp_response_error(&req->resp, 499, "The caller left before the stream started.", NULL,
                      "client_closed_request");
    finish(fw, req);
}

static void
on_stream_watch(struct qp_loop_watch *w)
{
    struct qp_request *req = QP_CONTAINER_OF(w, struct qp_request, st.watch);
    if (!req->st.started)
        stream_gone_before_start(req->fw, req);
    else
        stream_client_gone(req->fw, req);
}

/* Commits the 200 event stream with the bytes normalized so far (SSE-1, SSE-7). */
static void
stream_start(struct qp_forwarder *fw, struct qp_request *req)
{
    struct qp_stream *s = &req->st;
    s->started = true;
    req->streaming = true;
    qp_loop_timer_cancel(fw->loop, &s->timer);
    qp_response_clear(&req->resp);
    req->resp.status = 200;
    snprintf(req->resp.content_type, sizeof(req->resp.content_type), "text/event-stream");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);

    pthread_mutex_lock(&s->lock);
    if (qk_buf_append(&s->out, qk_buf_ptr(&s->pending), qk_buf_len(&s->pending)) != QK_OK)
        fprintf(stderr, "qwen-proxy: stream buffer over its cap; bytes dropped\n");
    s->loop_active = true;
    if (!s->fd_armed && ci && qp_loop_watch_add(fw->loop, &s->watch, ci->connect_fd) == QK_OK) {
        s->fd = ci->connect_fd;
        s->fd_armed = true;
    }
    pthread_mutex_unlock(&s->lock);
    qk_buf_reset(&s->pending);

    s->last_upstream_ms = s->last_out_ms = qk_now_ms();
    stream_arm_timer(fw, req);
    req->state = QP_REQ_READY;
    fw->cfg.stream_start(req);
}

/* Mutant split_utf8: each write decoded on its own, as `TextDecoder` without
 * {stream:true} does: a character cut at either edge becomes U+FFFD. */
static char *
mangle_edges(const char *p, size_t n, size_t *out_len)
{
    static const char repl[] = "\xEF\xBF\xBD";
    size_t head = 0;
    while (head < n && ((unsigned char)p[head] & 0xC0) == 0x80)
        head++;
    size_t tail = 0;
    for (size_t k = 1; k <= 3 && k <= n - head; k++) {
        unsigned char c = (unsigned char)p[n - k];
        if ((c & 0xC0) == 0x80)
            continue;
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (need > k)
            tail = k;
        break;
    }
    char *out = malloc(head * 3 + (n - head - tail) + 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t k = 0; k < head; k++, o += 3)
        memcpy(out + o, repl, 3);
    memcpy(out + o, p + head, n - head - tail);
    o += n - head - tail;
    if (tail) {
        memcpy(out + o, repl, 3);
        o += 3;
    }
    *out_len = o;
    return out;
}

/* Whether the current attempt answers a 2xx event stream (decided at its first byte). */
static bool
stream_attempt_is_sse(struct qp_request *req)
{
    struct qp_stream *s = &req->st;
    if (!s->sse_known) {
        long status = 0;
        curl_easy_getinfo(req->xfer.easy, CURLINFO_RESPONSE_CODE, &status);
        const char *ctype = header_value(req->attempt_headers, "Content-Type");
        s->sse = status >= 200 && status <= 299 && ctype &&
                 strncasecmp(ctype, "text/event-stream", 17) == 0;
        s->sse_known = true;
    }
    return s->sse;
}

/* The body callback of a 2xx event-stream attempt (loop thread, inside libcurl). */
static size_t
stream_on_body(struct qp_request *req, char *ptr, size_t n)
{
    struct qp_forwarder *fw = req->fw;
    struct qp_stream *s = &req->st;
    size_t ret = n;
    char *mangled = NULL;
    const char *bytes = ptr;
    size_t len = n;
    if (QP_MUTANT(split_utf8)) {
        mangled = mangle_edges(ptr, n, &len);
        if (!mangled)
            return 0;
        bytes = mangled;
    }

    if (!s->started) {
        enum qp_sse_status st = qp_sse_norm_feed(s->norm, bytes, len, &s->pending);
        if (st == QP_SSE_INBAND_ERROR) {
            s->inband = true; /* SSE-13: a failure before anything reached the caller */
            snprintf(s->inband_msg, sizeof(s->inband_msg), "%s",
                     qp_sse_norm_inband_message(s->norm));
            ret = 0;
        } else if (st == QP_SSE_BAD_EVENT || st == QP_SSE_NOMEM) {
            s->bad_event = true;
            ret = 0;
        } else if (qk_buf_len(&s->pending) > 0) {
            stream_start(fw, req);
        }
        goto out;
    }

    pthread_mutex_lock(&s->lock);
    bool gone = s->client_gone;
    bool full = !gone && !QP_MUTANT(buffer_stream) && !QP_MUTANT(unbounded_stream_buffer) &&
                qk_buf_len(&s->out) >= QP_STREAM_BUFFER;
    if (full) {
        s->paused = true; /* SSE-11: the reader's drain posts a notice to resume */
        atomic_fetch_add(&fw->stream_pauses, 1);
    }
    pthread_mutex_unlock(&s->lock);
    if (full) {
        ret = CURL_WRITEFUNC_PAUSE;
        goto out;
    }
    size_t progress = qp_sse_norm_progress(s->norm);
    qk_buf_reset(&s->scratch);
    enum qp_sse_status st = qp_sse_norm_feed(s->norm, bytes, len, &s->scratch);
    /* Only a complete event or comment shows the upstream alive (SSE-10): a trickle of
     * bytes that never completes one must not hold the stream open. */
    if (QP_MUTANT(bytes_reset_idle) || qp_sse_norm_progress(s->norm) != progress)
        s->last_upstream_ms = qk_now_ms();
    if (st == QP_SSE_INBAND_ERROR) {
        s->inband = true;
        snprintf(s->inband_msg, sizeof(s->inband_msg), "%s", qp_sse_norm_inband_message(s->norm));
        ret = 0;
    } else if (st == QP_SSE_BAD_EVENT || st == QP_SSE_NOMEM) {
        s->bad_event = true;
        ret = 0;
    }
    if (!gone)
        stream_push(req, &s->scratch); /* SSE-2: at once, whatever the write held */
out:
    free(mangled);
    return ret;
}

/* A started stream's upstream transfer ended (loop thread; the handle is cleaned up). */
static void
stream_upstream_done(struct qp_forwarder *fw, struct qp_request *req, CURLcode rc, long status)
{
    struct qp_stream *s = &req->st;
    bool ok = rc == CURLE_OK && s->sse && !s->inband && !s->bad_event;
    enum qp_sse_end end = ok ? qp_sse_norm_end(s->norm) : QP_SSE_END_CLEAN;
    char msg[512];
    if (end != QP_SSE_END_CLEAN) {
        ok = false; /* SSE-17: a clean close inside an event is a truncation */
        snprintf(msg, sizeof(msg), "Upstream stream ended %s.",
                 end == QP_SSE_END_CUT ? "inside an event" : "without an event");
    } else if (!s->sse)
        snprintf(msg, sizeof(msg), "Upstream answered HTTP %ld instead of an event stream.",
                 status);
    else if (s->inband)
        snprintf(msg, sizeof(msg), "Upstream failed mid-stream: %s.", s->inband_msg);
    else if (s->bad_event)
        snprintf(msg, sizeof(msg), "Upstream sent an event that is not a JSON chunk.");
    else
        snprintf(msg, sizeof(msg), "Upstream stream interrupted: %.200s.",
                 req->last_error[0] ? req->last_error : curl_easy_strerror(rc));
    if (s->gone_handled) {
        ok = false; /* mutant keep_upstream_on_disconnect: nobody is listening */
    } else if (!ok && QP_MUTANT(replay_after_drop) && s->sse &&
               req->attempts <= fw->cfg.policy.max_retries) {
        start_attempt(fw, req); /* the new attempt's text goes out again from the start */
        return;
    } else if (!ok && s->sse && QP_MUTANT(bare_done_on_drop)) {
        ok = true;
    }
    stream_close(fw, req, ok, msg);
}

static void
on_stream_timer(struct qp_loop_timer *t)
{
    struct qp_request *req = QP_CONTAINER_OF(t, struct qp_request, st.timer);
    struct qp_forwarder *fw = req->fw;
    struct qp_stream *s = &req->st;
    if (!s->started) {
        /* The attempt produced no event in time: a timeout like any other (SSE-7). */
        if (req->in_transfer) {
            snprintf(req->last_error, sizeof(req->last_error), "no event within the time limit");
            qp_loop_remove(fw->loop, &req->xfer);
            on_attempt_done(&req->xfer, CURLE_OPERATION_TIMEDOUT);
        }
        return;
    }
    int64_t now = qk_now_ms();
    pthread_mutex_lock(&s->lock);
    bool paused = s->paused;
    pthread_mutex_unlock(&s->lock);
    if (paused)
        s->last_upstream_ms = now; /* a slow caller is not an idle upstream */
    if (req->in_transfer && now - s->last_upstream_ms >= fw->cfg.stream_idle_timeout_ms) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "Upstream sent no complete event for %lld ms; stream ended (SSE-10).",
                 (long long)fw->cfg.stream_idle_timeout_ms);
        drop_transfer(fw, req);
        stream_close(fw, req, QP_MUTANT(bare_done_on_drop), msg);
        return;
    }
    if (now - s->last_out_ms >= fw->cfg.keepalive_interval_ms) {
        qk_buf_reset(&s->scratch);
        if (qk_buf_append_str(&s->scratch, ": keep-alive\n\n") == QK_OK)
            stream_push(req, &s->scratch);
        s->last_out_ms = now;
    }
    stream_arm_timer(fw, req);
}

/* A notice from a server thread about a stream the loop relays (see forward.h). */
static void
stream_notice(struct qp_forwarder *fw, struct qp_request *req)
{
    struct qp_stream *s = &req->st;
    pthread_mutex_lock(&s->lock);
    s->notice_posted = false;
    bool active = s->loop_active;
    bool gone = s->client_gone;
    bool resume = s->paused && qk_buf_len(&s->out) <= QP_STREAM_BUFFER / 2;
    if (resume && !gone)
        s->paused = false;
    pthread_mutex_unlock(&s->lock);
    if (active && gone) {
        stream_client_gone(fw, req);
    } else if (active && resume && req->in_transfer) {
        s->last_upstream_ms = qk_now_ms();
        curl_easy_pause(req->xfer.easy, CURLPAUSE_CONT);
    }
    qp_request_unref(req); /* the notice's reference */
}

/* Reads what the normalizer needs from the caller's body. */
static void
stream_prepare(struct qp_request *req)
{
    struct qp_stream *s = &req->st;
    s->timer.fire = on_stream_timer;
    s->watch.fire = on_stream_watch;
    cJSON *root = cJSON_ParseWithLength(qk_buf_ptr(&req->body), qk_buf_len(&req->body));
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    s->incremental = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "incremental_output"));
    snprintf(s->model, sizeof(s->model), "%s", cJSON_IsString(model) ? model->valuestring : "");
    cJSON_Delete(root);
}

/* Fresh per-attempt stream state; false when out of memory. */
static bool
stream_new_attempt(struct qp_request *req)
{
    struct qp_stream *s = &req->st;
    char id[96];
    snprintf(id, sizeof(id), "chatcmpl-%s", req->request_id);
    qp_sse_norm_free(s->norm);
    s->norm = qp_sse_norm_new(s->incremental, s->model, id, (long long)time(NULL));
    s->sse_known = s->sse = s->inband = s->bad_event = s->norm_finished = false;
    s->inband_msg[0] = '\0';
    s->unusable[0] = '\0';
    qk_buf_reset(&s->pending);
    return s->norm != NULL;
}

/* ---- one attempt ------------------------------------------------------------------ */

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct qp_request *req = userdata;
    size_t n = size * nmemb;
    if (req->stream && req->route == QP_ROUTE_CHAT && stream_attempt_is_sse(req))
        return stream_on_body(req, ptr, n);
    if (qk_buf_append(&req->attempt_body, ptr, n) != QK_OK) {
        req->attempt_too_big = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    return n;
}

static size_t
on_header(char *ptr, size_t size, size_t nitems, void *userdata)
{
    struct qp_request *req = userdata;
    size_t n = size * nitems;
    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
        /* A new header block (after a 100 Continue, say): forget the previous one. */
        curl_slist_free_all(req->attempt_headers);
        req->attempt_headers = NULL;
        return n;
    }
    size_t len = n;
    while (len && (ptr[len - 1] == '\r' || ptr[len - 1] == '\n'))
        len--;
    if (len == 0 || len >= QK_LIMIT_HEADER_VALUE)
        return n;
    char line[QK_LIMIT_HEADER_VALUE];
    memcpy(line, ptr, len);
    line[len] = '\0';
    struct curl_slist *l = curl_slist_append(req->attempt_headers, line);
    if (l)
        req->attempt_headers = l;
    return n;
}

static enum qp_transport
transport_of(CURLcode rc, bool too_big)
{
    switch (rc) {
    case CURLE_OK:
        return QP_TRANSPORT_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return QP_TRANSPORT_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return QP_TRANSPORT_TIMEOUT;
    case CURLE_WRITE_ERROR:
        return too_big ? QP_TRANSPORT_TOO_BIG : QP_TRANSPORT_BROKEN;
    default:
        return QP_TRANSPORT_BROKEN;
    }
}

static void
on_attempt_done(struct qp_loop_transfer *t, CURLcode rc)
{
    struct qp_request *req = QP_CONTAINER_OF(t, struct qp_request, xfer);
    struct qp_forwarder *fw = req->fw;
    struct qp_attempt_facts *f = &req->last;
    long status = 0;

    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(t->easy);
    t->easy = NULL;
    req->in_transfer = false;

    struct qp_stream *s = &req->st;
    bool streamed = req->stream && req->route == QP_ROUTE_CHAT;
    if (streamed && s->started) {
        stream_upstream_done(fw, req, rc, status);
        return;
    }
    if (streamed)
        qp_loop_timer_cancel(fw->loop, &s->timer);

    memset(f, 0, sizeof(*f));
    f->transport = transport_of(rc, req->attempt_too_big);
    /* libcurl wanted to send the request again (on_prereq refused, or read_body cannot
     * rewind); its own message would not say why the attempt failed. */
    if ((rc == CURLE_ABORTED_BY_CALLBACK && req->attempt_requests > 1) ||
        rc == CURLE_SEND_FAIL_REWIND)
        snprintf(req->last_error, sizeof(req->last_error),
                 "reused connection lost before an answer (request not re-sent)");
    f->status = f->transport == QP_TRANSPORT_OK ? status : 0;
    const char *ctype = header_value(req->attempt_headers, "Content-Type");
    f->html = f->transport == QP_TRANSPORT_OK && ctype && strncasecmp(ctype, "text/html", 9) == 0;
    f->retry_after_ms =
        f->transport == QP_TRANSPORT_OK
            ? qp_retry_after_parse(header_value(req->attempt_headers, "Retry-After"), time(NULL))
            : -1;
    if (req->route == QP_ROUTE_MODELS && f->transport == QP_TRANSPORT_OK && status >= 200 &&
        status <= 299 && !f->html)
        f->body_unusable =
            !qp_models_usable(qk_buf_ptr(&req->attempt_body), qk_buf_len(&req->attempt_body));
    if (streamed && !s->sse_known && f->transport == QP_TRANSPORT_OK) {
        /* No body byte came, so the kind of answer was never looked at. */
        s->sse = status >= 200 && status <= 299 && ctype &&
                 strncasecmp(ctype, "text/event-stream", 17) == 0;
        s->sse_known = true;
    }
    if (streamed && !s->sse && f->transport == QP_TRANSPORT_OK && status >= 200 &&
        status <= 299 && !f->html && !QP_MUTANT(relay_non_sse_200)) {
        /* SSE-16: a stream was asked for; a JSON completion, text or an in-band failure
         * payload instead is a failed attempt, retried like a 500. */
        snprintf(s->unusable, sizeof(s->unusable),
                 "last upstream answer was HTTP %ld %.60s, not an event stream", status,
                 ctype ? ctype : "without a Content-Type");
        f->body_unusable = true;
    }
    if (streamed && s->sse_known && s->sse) {
        if (s->inband || s->bad_event) {
            /* An event stream that failed before its first chunk: a retryable glitch
             * (SSE-13), however libcurl ended after we stopped reading. */
            f->transport = QP_TRANSPORT_OK;
            f->status = status;
            f->body_unusable = true;
        } else if (f->transport == QP_TRANSPORT_OK &&
                   qp_sse_norm_end(s->norm) != QP_SSE_END_CLEAN) {
            /* SSE-17: no event at all (gzip, HTML, junk), or the only events cut short:
             * nothing reached the caller, so it is a failed attempt, retried like a 500. */
            snprintf(s->unusable, sizeof(s->unusable), "last upstream event stream %s",
                     qp_sse_norm_end(s->norm) == QP_SSE_END_CUT ? "ended inside an event"
                                                                : "carried no event");
            f->transport = QP_TRANSPORT_OK;
            f->status = status;
            f->body_unusable = true;
        } else if (f->transport == QP_TRANSPORT_OK) {
            /* A clean end whose events (if any) only completed now. */
            if (qp_sse_norm_finish(s->norm, true, NULL, &s->pending) == QK_OK) {
                s->norm_finished = true;
                stream_start(fw, req);
                stream_close(fw, req, true, NULL);
                return;
            }
            f->body_unusable = true;
        }
    }

    int64_t now = qk_now_ms();
    struct qp_decision d = qp_retry_decide(&fw->cfg.policy, f, req->attempts, now, req->deadline_ms,
                                           qp_loop_random(fw->loop));
    bool models = req->route == QP_ROUTE_MODELS;

    if (d.next == QP_NEXT_RETRY) {
        qp_loop_timer_arm(fw->loop, &req->retry_timer, now + d.delay_ms);
        return;
    }
    if (d.next == QP_NEXT_SUCCESS) {
        if (models) {
            const char *raw = qk_buf_ptr(&req->attempt_body);
            size_t len = qk_buf_len(&req->attempt_body);
            if (qp_cache_put(fw->cache, req->flight_key, raw, len, now) != QK_OK)
                fprintf(stderr, "qwen-proxy: model-list cache: out of memory\n");
            models_land(fw, req, raw, len, QP_MARK_MISS);
            return;
        }
        if (QP_MUTANT(cache_chat) && req->has_cache_key) {
            if (qp_cache_put(fw->cache, req->flight_key, qk_buf_ptr(&req->attempt_body),
                             qk_buf_len(&req->attempt_body), now) != QK_OK)
                fprintf(stderr, "qwen-proxy: cache: out of memory\n");
        }
        respond_chat_success(req);
        finish(fw, req);
        return;
    }

    /* A final failure. Failures are never cached (CACHE-3). */
    if (models && QP_MUTANT(cache_errors)) {
        if (qp_cache_put(fw->cache, req->flight_key, qk_buf_ptr(&req->attempt_body),
                         qk_buf_len(&req->attempt_body), now) != QK_OK)
            fprintf(stderr, "qwen-proxy: cache: out of memory\n");
    }
    if (d.next == QP_NEXT_RELAY) {
        if (models && f->transport == QP_TRANSPORT_OK && f->status == 401)
            qp_cache_evict(fw->cache, req->flight_key); /* revoked: forget its list */
        respond_relay(req);
    } else {
        if (models && serve_stale(fw, req))
            return;
        respond_gave_up(fw, req, d.next == QP_NEXT_DEADLINE);
    }
    if (models)
        models_land(fw, req, NULL, 0, QP_MARK_MISS);
    else
        finish(fw, req);
}

/* Mutant drop_unknown_fields: the body sent upstream keeps only the fields the proxy
 * knows. */
static void
drop_unknown_fields(struct qp_request *req)
{
    static const char *const known[] = {"model", "messages", "stream", "incremental_output"};
    cJSON *root = cJSON_ParseWithLength(qk_buf_ptr(&req->body), qk_buf_len(&req->body));
    cJSON *kept = cJSON_CreateObject();
    for (size_t i = 0; cJSON_IsObject(root) && kept && i < sizeof(known) / sizeof(known[0]); i++) {
        cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(root, known[i]);
        if (v)
            cJSON_AddItemToObject(kept, known[i], v);
    }
    char *text = cJSON_IsObject(root) && kept ? cJSON_PrintUnformatted(kept) : NULL;
    if (text) {
        qk_buf_reset(&req->body);
        if (qk_buf_append_str(&req->body, text) != QK_OK)
            qk_buf_reset(&req->body);
        free(text);
    }
    cJSON_Delete(kept);
    cJSON_Delete(root);
}

/* Mutant retry_changes_body: later attempts carry an extra field. */
static void
mutate_body(struct qp_request *req)
{
    cJSON *root = cJSON_ParseWithLength(qk_buf_ptr(&req->body), qk_buf_len(&req->body));
    if (cJSON_IsObject(root) && cJSON_AddNumberToObject(root, "retry_attempt", req->attempts)) {
        char *text = cJSON_PrintUnformatted(root);
        if (text) {
            qk_buf_reset(&req->body);
            if (qk_buf_append_str(&req->body, text) != QK_OK)
                qk_buf_reset(&req->body);
            free(text);
        }
    }
    cJSON_Delete(root);
}

static void
on_retry_timer(struct qp_loop_timer *t)
{
    struct qp_request *req = QP_CONTAINER_OF(t, struct qp_request, retry_timer);
    start_attempt(req->fw, req);
}

/* Mutant one_caller_at_a_time: @return true while another caller's stream is being
 * relayed (its upstream transfer is running). */
static bool
another_stream_open(const struct qp_forwarder *fw, const struct qp_request *req)
{
    for (const struct qp_request *r = fw->active; r; r = r->active_next) {
        if (r != req && r->stream && r->route == QP_ROUTE_CHAT && r->in_transfer)
            return true;
    }
    return false;
}

static void
start_attempt(struct qp_forwarder *fw, struct qp_request *req)
{
    int64_t now = qk_now_ms();
    if (QP_MUTANT(one_caller_at_a_time) && another_stream_open(fw, req)) {
        qp_loop_timer_arm(fw->loop, &req->retry_timer, now + 20);
        return;
    }
    int64_t limit = fw->cfg.upstream_timeout_ms;
    if (req->deadline_ms - now < limit)
        limit = req->deadline_ms - now;
    if (limit <= 0 && !req->st.started) {
        respond_gave_up(fw, req, true);
        if (req->route == QP_ROUTE_MODELS)
            models_land(fw, req, NULL, 0, QP_MARK_MISS);
        else
            finish(fw, req);
        return;
    }

    CURL *easy = curl_easy_init();
    if (!easy) {
        qp_response_error(&req->resp, 502, "Could not create an upstream transfer.", NULL,
                          "internal_error");
        goto fail;
    }
    if (QP_MUTANT(retry_changes_body) && req->attempts > 0 && req->route == QP_ROUTE_CHAT)
        mutate_body(req);

    bool streamed = req->stream && req->route == QP_ROUTE_CHAT;
    if (streamed && !stream_new_attempt(req)) {
        curl_easy_cleanup(easy);
        qp_response_error(&req->resp, 500, "Out of memory.", NULL, "internal_error");
        goto fail;
    }
    curl_slist_free_all(req->attempt_headers);
    req->attempt_headers = NULL;
    qk_buf_free(&req->attempt_body);
    qk_buf_init(&req->attempt_body, QP_LIMIT_UPSTREAM_BODY);
    req->attempt_too_big = false;
    req->attempt_requests = 0;
    req->last_error[0] = '\0';

    curl_easy_setopt(easy, CURLOPT_URL,
                     req->route == QP_ROUTE_MODELS ? fw->models_url : fw->chat_url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->upstream_headers);
    if (!QP_MUTANT(client_resends)) {
        curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, on_prereq);
        curl_easy_setopt(easy, CURLOPT_PREREQDATA, req);
    }
    if (req->route == QP_ROUTE_CHAT) {
        /* The body comes from a read callback that cannot rewind, so libcurl could not
         * re-send it by itself even without on_prereq. */
        req->upload_off = 0;
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        if (QP_MUTANT(client_resends))
            curl_easy_setopt(easy, CURLOPT_POSTFIELDS, qk_buf_ptr(&req->body));
        else {
            curl_easy_setopt(easy, CURLOPT_READFUNCTION, read_body);
            curl_easy_setopt(easy, CURLOPT_READDATA, req);
        }
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)qk_buf_len(&req->body));
    } else {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    if (!streamed)
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)limit);
    /* A stream has no total cap (SSE-10): the attempt limit runs until its first event
     * (st.timer), then the idle timeout does. */
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(limit < 10000 ? limit : 10000));
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->last_error);

    req->xfer.easy = easy;
    req->xfer.done = on_attempt_done;
    req->attempts++;
    if (qp_loop_add(fw->loop, &req->xfer) != QK_OK) {
        curl_easy_cleanup(easy);
        req->xfer.easy = NULL;
        qp_response_error(&req->resp, 502, "Could not start an upstream transfer.", NULL,
                          "internal_error");
        goto fail;
    }
    req->in_transfer = true;
    if (streamed && !req->st.started) {
        if (QP_MUTANT(stream_200_on_failure))
            stream_start(fw, req); /* commits the 200 before anything came back */
        else
            qp_loop_timer_arm(fw->loop, &req->st.timer, now + limit);
    }
    return;
fail:
    if (req->route == QP_ROUTE_MODELS)
        models_land(fw, req, NULL, 0, QP_MARK_MISS);
    else if (req->st.started)
        stream_close(fw, req, false, "Could not start an upstream transfer.");
    else
        finish(fw, req);
}

/* ---- entry points ----------------------------------------------------------------- */

void
qp_forward_on_post(void *ctx, void *item)
{
    struct qp_forwarder *fw = ctx;
    struct qp_request *req = item;
    int64_t now = qk_now_ms();

    if (req->fw) {
        stream_notice(fw, req); /* a second post is a notice (forward.h) */
        return;
    }
    req->fw = fw;
    if (QP_MUTANT(drop_unknown_fields) && req->route == QP_ROUTE_CHAT)
        drop_unknown_fields(req);
    if (req->stream && req->route == QP_ROUTE_CHAT) {
        stream_prepare(req);
        if (!QP_MUTANT(retry_after_caller_left))
            stream_watch_caller(fw, req); /* a caller gone before the start ends it (SSE-18) */
    }
    req->deadline_ms = req->started_ms + fw->cfg.deadline_ms;
    req->retry_timer.fire = on_retry_timer;
    active_add(fw, req);

    if (req->route == QP_ROUTE_MODELS) {
        req->flight_key = models_key(req);
        req->has_cache_key = true;
        req->cache = QP_MARK_MISS;
        char *body = NULL;
        size_t len = 0;
        enum qp_cache_form form = wants_v1_shape(req) ? QP_CACHE_DERIVED : QP_CACHE_BODY;
        if (qp_cache_get(fw->cache, req->flight_key, now, form, &body, &len) == QP_CACHE_FRESH) {
            respond_models(req, body, len, QP_MARK_HIT);
            finish(fw, req);
            return;
        }
        enum qp_flight_role role = QP_MUTANT(no_single_flight)
                                       ? QP_FLIGHT_ALONE
                                       : qp_flight_join(fw->flights, req->flight_key, req);
        if (role == QP_FLIGHT_JOINED)
            return; /* the leader's answer will complete it */
        req->leads_flight = role == QP_FLIGHT_LEAD;
    } else if (QP_MUTANT(cache_chat)) {
        struct qk_buf k;
        qk_buf_init(&k, SIZE_MAX / 2);
        if (qk_buf_appendf(&k, "%s\n%s", req->authorization ? req->authorization : "",
                           qk_buf_ptr(&req->body)) == QK_OK) {
            req->flight_key = qp_key_of(qk_buf_ptr(&k), qk_buf_len(&k));
            req->has_cache_key = true;
        }
        qk_buf_free(&k);
        char *body = NULL;
        size_t len = 0;
        if (req->has_cache_key && qp_cache_get(fw->cache, req->flight_key, now, QP_CACHE_BODY,
                                               &body, &len) == QP_CACHE_FRESH) {
            qp_response_take_body(&req->resp, 200, body, len, "application/json");
            req->cache = QP_MARK_HIT;
            finish(fw, req);
            return;
        }
    }
    start_attempt(fw, req);
}

void
qp_forward_on_stop(void *ctx)
{
    struct qp_forwarder *fw = ctx;
    while (fw->active) {
        struct qp_request *req = fw->active;
        qp_loop_timer_cancel(fw->loop, &req->retry_timer);
        qp_loop_timer_cancel(fw->loop, &req->st.timer);
        if (req->st.started) {
            drop_transfer(fw, req);
            stream_close(fw, req, false, "The proxy is shutting down.");
            continue;
        }
        if (req->in_transfer) {
            qp_loop_remove(fw->loop, &req->xfer);
            curl_easy_cleanup(req->xfer.easy);
            req->xfer.easy = NULL;
            req->in_transfer = false;
        }
        qp_response_error(&req->resp, 503, "The proxy is shutting down.", NULL, "shutting_down");
        finish(fw, req);
    }
}

enum qk_err
qp_forwarder_new(const struct qp_forward_config *cfg, struct qp_forwarder **out)
{
    *out = NULL;
    struct qp_forwarder *fw = calloc(1, sizeof(*fw));
    if (!fw)
        return QK_NOMEM;
    fw->cfg = *cfg;
    fw->models_url = strdup(cfg->models_url);
    fw->chat_url = strdup(cfg->chat_url);
    fw->cache = qp_cache_new(cfg->cache_max_entries, cfg->cache_max_bytes, cfg->cache_ttl_ms,
                             cfg->stale_grace_ms, qp_models_openai);
    fw->flights = qp_flights_new();
    if (!fw->models_url || !fw->chat_url || !fw->cache || !fw->flights) {
        qp_forwarder_free(fw);
        return QK_NOMEM;
    }
    fw->cfg.models_url = fw->models_url;
    fw->cfg.chat_url = fw->chat_url;
    *out = fw;
    return QK_OK;
}

void
qp_forwarder_set_loop(struct qp_forwarder *fw, struct qp_loop *loop)
{
    fw->loop = loop;
}

void
qp_forwarder_free(struct qp_forwarder *fw)
{
    if (!fw)
        return;
    qp_cache_free(fw->cache);
    qp_flights_free(fw->flights);
    free(fw->models_url);
    free(fw->chat_url);
    free(fw);
}
