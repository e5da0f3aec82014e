/*
 * The upstream exchange, on the loop thread: cache, single flight, attempts, retries.
 *
 * Flow of one request: on_post -> (models: cache hit? join a flight?) -> start_attempt ->
 * start_transfer (one per step of the dialect's plan, dialect.h) -> libcurl ->
 * on_attempt_done -> classify_transfer -> advance_plan (next step) | conclude_attempt ->
 * qp_retry_decide -> success | timer -> start_attempt | final answer -> conclude (the one
 * way back: the complete callback resumes the caller's connection).
 * A streamed answer, once committed, is relayed by stream.c; this file decides when it
 * starts and how it ends.
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
#include "assemble.h"
#include "cache.h"
#include "completion.h"
#include "flight.h"
#include "headers.h"
#include "log.h"
#include "metrics.h"
#include "models.h"
#include "mutant.h"
#include "sse_norm.h"
#include "stream.h"

/** Largest upstream answer kept in memory (a model list is ~10 KB, a completion less). */
#define QP_LIMIT_UPSTREAM_BODY (16u * 1024u * 1024u)
/** Room for the query a plan step adds to its URL (dialect.h, add_query). */
#define QP_LIMIT_STEP_QUERY 1024u
/** Transfers in flight from which a new stream opens an upstream connection of its own,
 *  closed at its end (start_transfer). */
#define QP_REUSE_SCAN_MAX 512u
/** Idle easy handles kept for the next transfers (each holds its buffers, some KiB);
 *  more are cleaned up when they end. */
#define QP_IDLE_EASY_MAX 64u

struct qp_forwarder {
    struct qp_forward_config cfg;
    char *upstream; /* cfg.upstream points here */
    struct qp_loop *loop;
    struct qp_cache *cache;
    struct qp_flights *flights;
    struct qp_request *active; /* open exchanges, so a stop can answer them all */
    /* Easy handles of ended transfers, reset, owned here (loop thread): a new transfer takes
     * one instead of allocating and initialising a handle. */
    CURL *idle_easy[QP_IDLE_EASY_MAX];
    size_t n_idle_easy;
    size_t n_transfers; /* in the multi handle (req->in_transfer) */
};

static void start_attempt(struct qp_forwarder *fw, struct qp_request *req);

/* The route a request is counted under in the metrics. */
static enum qp_metric_route
metric_route(const struct qp_request *req)
{
    return req->route == QP_ROUTE_CHAT ? QP_METRIC_ROUTE_CHAT : QP_METRIC_ROUTE_MODELS;
}
static void assemble_answer(struct qp_forwarder *fw, struct qp_request *req);
static void fail_answer(struct qp_request *req);

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

/* A handle for a new transfer: an idle one, or a new one (NULL when out of memory). */
static CURL *
easy_take(struct qp_forwarder *fw)
{
    if (fw->n_idle_easy > 0)
        return fw->idle_easy[--fw->n_idle_easy];
    return curl_easy_init();
}

/* Takes back the handle of an ended (or removed) transfer. curl_easy_reset() drops every
 * option, so nothing points at the request any more; the multi handle keeps the connection
 * and the DNS cache either way. */
static void
easy_give(struct qp_forwarder *fw, CURL *easy)
{
    if (!easy)
        return;
    if (fw->n_idle_easy == QP_IDLE_EASY_MAX) {
        curl_easy_cleanup(easy);
        return;
    }
    curl_easy_reset(easy);
    fw->idle_easy[fw->n_idle_easy++] = easy;
}

unsigned long
qp_forwarder_stream_pauses(struct qp_forwarder *fw)
{
    return (unsigned long)qp_metrics_stream_pauses(fw->cfg.metrics);
}
static void on_attempt_done(struct qp_loop_transfer *t, CURLcode rc);

/* ---- bookkeeping ---------------------------------------------------------------- */

/* A streamed chat request: its answer goes through the relay (stream.h). */
static bool
is_streamed(const struct qp_request *req)
{
    return req->stream && req->route == QP_ROUTE_CHAT;
}

/* The plan of @p req's route (dialect.h). */
static const struct qp_dialect_plan *
plan_of(const struct qp_forwarder *fw, const struct qp_request *req)
{
    return req->route == QP_ROUTE_MODELS ? &fw->cfg.dialect->models : &fw->cfg.dialect->chat;
}

/* Whether the transfer running (or just ended) is its plan's last: only its answer is the
 * attempt's, and only it may feed a stream. */
static bool
is_last_step(const struct qp_forwarder *fw, const struct qp_request *req)
{
    return req->plan_step + 1 >= plan_of(fw, req)->len;
}

/* Names the plan step the attempt is at, "step 1 of 2 (POST /path): ", into @p out; ""
 * for a plan of one step, whose failures need no name. */
static void
step_label(const struct qp_forwarder *fw, const struct qp_request *req, char *out, size_t cap)
{
    const struct qp_dialect_plan *plan = plan_of(fw, req);
    const struct qp_dialect_step *st = &plan->steps[req->plan_step];
    if (plan->len < 2)
        out[0] = '\0';
    else
        snprintf(out, cap, "step %u of %zu (%s %s): ", req->plan_step + 1, plan->len, st->method,
                 st->path);
}

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
    qp_loop_timer_cancel(fw->loop, &req->st.timer); /* a plan step's failure leaves it armed */
    if (is_streamed(req) && !qp_stream_started(&req->st))
        qp_stream_unwatch(&req->st); /* before the resume: the socket is MHD's again */
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

/* Serves the model list @p body, already in @p req's route shape (its reference taken;
 * NULL: none). */
static void
respond_models(struct qp_request *req, struct qp_blob *body, enum qp_cache_mark mark)
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
    qp_response_share_body(&req->resp, 200, body, "application/json");
    QP_MUTANT_REWRITE(models, &req->resp, v1);
}

/* Relays a successful chat completion with the upstream's end-to-end headers. */
static void
respond_chat_success(struct qp_request *req)
{
    const char *ctype = header_value(req->attempt_headers, "Content-Type");
    size_t len = 0;
    char *body = qk_buf_take(&req->attempt_body, &len);
    size_t openai_len = 0;
    /* An answer assembled from an event stream is in OpenAI's terms already (assemble.h):
     * the rewrite would parse and print it again to change nothing. */
    bool assembled = req->fw->cfg.dialect->chat_answer == QP_ANSWER_SSE;
    char *openai = body && !assembled ? qp_completion_openai(body, len, &openai_len) : NULL;
    QP_MUTANT_REWRITE(completion, &openai, &openai_len);
    if (openai) {
        free(body);
        body = openai;
        len = openai_len;
    }
    /* An answer assembled from an event stream (dialect.h, QP_ANSWER_SSE) is JSON now. */
    if (req->fw->cfg.dialect->chat_answer == QP_ANSWER_SSE || !ctype)
        ctype = "application/json";
    qp_response_take_body(&req->resp, 200, body, len, ctype);
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
    long s = f->status;
    if (req->plan.final_status == 401) {
        /* The upstream refused the credential inside a 2xx (v2: `unauthorized`, an
         * expired token): the caller's 401, not retried. */
        snprintf(msg, sizeof(msg), "Upstream refused the credential: %s", req->plan.why);
        qp_response_error(&req->resp, 401, msg, NULL, "upstream_error");
        return;
    }
    if (req->plan.final_status) {
        /* The upstream rejected the caller's request inside a 2xx (v2: `Bad_Request`, an
         * unknown model): that status, naming its code and details, not retried. */
        snprintf(msg, sizeof(msg), "Upstream rejected the request: %s", req->plan.why);
        qp_response_error(&req->resp, req->plan.final_status, msg, NULL, "upstream_rejected");
        return;
    }
    if ((s >= 400 && s <= 499) || (s == 503 && f->retry_after_ms >= 0)) {
        /* Client errors keep the upstream's status and message (ERR-2, AUTH-4). */
        char *text =
            qp_upstream_message(qk_buf_ptr(&req->attempt_body), qk_buf_len(&req->attempt_body), s);
        QP_MUTANT_REWRITE(upstream_message, &text, s);
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

QP_MUTANT_EDITABLE struct qp_give_up_statuses qp_give_up_statuses = {
    .deadline = 504,
    .timeout = 504,
    .unreachable = 502,
    .other = 502,
};

QP_MUTANT_EDITABLE struct qp_resend_policy qp_resend_policy = {.one_send_per_attempt = true};
QP_MUTANT_EDITABLE struct qp_exchange_policy qp_exchange_policy = {
    .close_upstream_when_caller_leaves = true,
    .non_sse_200_fails = true,
    .watch_caller_before_start = true,
};

/* Retryable failures that ran out of attempts (EXHAUSTED) or time (DEADLINE). */
static void
respond_gave_up(struct qp_forwarder *fw, struct qp_request *req, bool deadline)
{
    const struct qp_attempt_facts *f = &req->last;
    char msg[640];
    char last[360];
    step_label(fw, req, last, sizeof(last));
    size_t off = strlen(last);
    char *tail = last + off;
    size_t cap = sizeof(last) - off;
    if (req->plan.why[0])
        snprintf(tail, cap, "last upstream answer: %.160s", req->plan.why);
    else if (req->stream && req->st.inband)
        snprintf(tail, cap, "last upstream answer: %.120s", req->st.inband_msg);
    else if (req->stream && req->st.bad_event)
        snprintf(tail, cap, "last upstream event stream was malformed");
    else if (req->stream && req->st.unusable[0])
        snprintf(tail, cap, "%s", req->st.unusable);
    else if (f->transport == QP_TRANSPORT_OK)
        snprintf(tail, cap, "last upstream status %ld%s", f->status,
                 f->html            ? " (HTML page)"
                 : f->body_unusable ? " (unusable body)"
                                    : "");
    else
        snprintf(tail, cap, "last error: %.120s",
                 req->last_error[0] ? req->last_error : "connection failed");

    if (deadline) {
        snprintf(msg, sizeof(msg), "Request deadline of %lld ms reached after %u attempt(s); %s.",
                 (long long)fw->cfg.deadline_ms, req->attempts, last);
        qp_response_error(&req->resp, qp_give_up_statuses.deadline, msg, NULL, "deadline_exceeded");
        return;
    }
    switch (f->transport) {
    case QP_TRANSPORT_TIMEOUT:
        snprintf(msg, sizeof(msg), "Upstream timed out after %u attempt(s); %s.", req->attempts,
                 last);
        qp_response_error(&req->resp, qp_give_up_statuses.timeout, msg, NULL, "upstream_timeout");
        return;
    case QP_TRANSPORT_CONNECT:
        snprintf(msg, sizeof(msg), "Upstream unreachable after %u attempt(s); %s.", req->attempts,
                 last);
        qp_response_error(&req->resp, qp_give_up_statuses.unreachable, msg, NULL,
                          "upstream_unreachable");
        return;
    default:
        break;
    }
    snprintf(msg, sizeof(msg), "Upstream failed after %u attempt(s); %s.", req->attempts, last);
    qp_response_error(&req->resp, qp_give_up_statuses.other, msg, NULL,
                      f->transport == QP_TRANSPORT_OK ? "upstream_error"
                                                      : "upstream_connection_error");
}

/* ---- model list: cache and single flight ------------------------------------------ */

static struct qp_key
models_key(const struct qp_request *req)
{
    struct qp_key key = req->cred_key;
    QP_MUTANT_REWRITE(models_key, &key);
    return key;
}

/* One landing's list; each shape is looked up or made at most once for all its callers,
 * who share it. */
struct models_landing {
    const char *raw;
    size_t len;
    struct qp_blob *form[2]; /* by enum qp_cache_form */
    bool tried[2];
};

/* Serves @p req the landing's list in its shape. Both shapes come from the cache, which
 * made the /v1 one once when it stored the list: the entry of the key IS this list here
 * (it was just stored, or it is the stale one being served; only this thread stores). A
 * list too large to cache is copied, and converted, here, once per landing. */
static void
respond_landing(struct qp_forwarder *fw, struct qp_request *req, struct models_landing *l,
                enum qp_cache_mark mark)
{
    enum qp_cache_form form = wants_v1_shape(req) ? QP_CACHE_DERIVED : QP_CACHE_BODY;
    if (!l->tried[form]) {
        l->tried[form] = true;
        if (qp_cache_fallback_shared(fw->cache, req->flight_key, qk_now_ms(), form,
                                     &l->form[form]) == QP_CACHE_MISS) {
            if (form == QP_CACHE_BODY) {
                l->form[form] = qp_blob_new(l->raw, l->len);
            } else {
                size_t n = 0;
                char *v1 = qp_models_openai(l->raw, l->len, &n);
                l->form[form] = v1 ? qp_blob_new(v1, n) : NULL;
                free(v1);
            }
        }
    }
    respond_models(req, l->form[form] ? qp_blob_ref(l->form[form]) : NULL, mark);
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
    qp_blob_unref(landing.form[QP_CACHE_BODY]);
    qp_blob_unref(landing.form[QP_CACHE_DERIVED]);
    free(waiters);
    finish(fw, leader);
}

/* Ends the exchange with the final answer in req->resp: the one way a request that
 * failed goes back (a model list's flight waiters get a copy of it). */
static void
conclude(struct qp_forwarder *fw, struct qp_request *req)
{
    if (req->route == QP_ROUTE_MODELS)
        models_land(fw, req, NULL, 0, QP_MARK_MISS);
    else
        finish(fw, req);
}

/* A failed refresh may fall back to the last good list (CACHE-6). */
static bool
serve_stale(struct qp_forwarder *fw, struct qp_request *req)
{
    struct qp_blob *body = NULL;
    if (qp_cache_fallback_shared(fw->cache, req->flight_key, qk_now_ms(), QP_CACHE_BODY, &body) ==
        QP_CACHE_MISS)
        return false;
    models_land(fw, req, body->data, body->len, QP_MARK_STALE);
    qp_blob_unref(body);
    return true;
}

/* ---- streaming: the exchange side of the relay (SSE-*) ----------------------------- */

/*
 * A streamed chat request runs attempts like any other until its first normalized event
 * exists (SSE-7, SSE-13); then stream_start() commits the 200 and from there on the
 * upstream's bytes go through the normalizer into the relay (stream.h), which the
 * connection's content reader drains. Nothing is retried after the start (SSE-8); the end
 * is either the normalizer's closing chunk + [DONE] or one error event (stream_close()).
 */

/* Logs the failure of a started stream's upstream (its one attempt, now unrecoverable). */
static void
note_stream_cut(const struct qp_forwarder *fw, const struct qp_request *req, const char *why)
{
    qp_log_note(fw->cfg.log, QP_LOG_WARN, "upstream",
                "request %s attempt %u failed after the stream started: %s", req->request_id,
                req->attempts, why);
}

/* Removes the upstream transfer before it ended (closing its connection). */
static void
drop_transfer(struct qp_forwarder *fw, struct qp_request *req)
{
    if (!req->in_transfer)
        return;
    qp_loop_remove(fw->loop, &req->xfer);
    easy_give(fw, req->xfer.easy);
    req->xfer.easy = NULL;
    req->in_transfer = false;
    fw->n_transfers--;
}

static void
stream_arm_timer(struct qp_forwarder *fw, struct qp_request *req)
{
    struct qp_stream *s = &req->st;
    int64_t idle_due = s->last_upstream_ms + fw->cfg.stream_idle_timeout_ms;
    int64_t ka_due = s->last_out_ms + fw->cfg.keepalive_interval_ms + s->keepalive_lag_ms;
    qp_loop_timer_arm(fw->loop, &s->timer, idle_due < ka_due ? idle_due : ka_due);
}

/* The loop lets go of a stream it relayed: no timer, off the list, its reference dropped
 * (req may be gone after this). */
static void
stream_release(struct qp_forwarder *fw, struct qp_request *req)
{
    qp_metrics_stream_ended(fw->cfg.metrics);
    qp_loop_timer_cancel(fw->loop, &req->st.timer);
    qp_loop_timer_cancel(fw->loop, &req->retry_timer);
    active_remove(fw, req);
    qp_request_unref(req);
}

/*
 * Ends a started stream (the upstream transfer is already gone): the normalizer's clean
 * end (finish_reason, [DONE]) when @p ok, else one error event carrying @p message and no
 * [DONE] (SSE-8). Drops the loop's reference.
 */
static void
stream_close(struct qp_forwarder *fw, struct qp_request *req, bool ok, const char *message,
             const struct qp_log_failure *cut)
{
    qp_stream_finish(&req->st, ok, message, cut);
    stream_release(fw, req);
}

/* The caller left mid-stream (SSE-9): close the upstream at once and let MHD finish. */
static void
stream_client_gone(struct qp_forwarder *fw, struct qp_request *req)
{
    struct qp_stream *s = &req->st;
    if (s->phase != QP_STREAM_LIVE || s->orphaned)
        return; /* already acted upon */
    qp_metrics_caller_gone(fw->cfg.metrics);
    bool keep = !qp_exchange_policy.close_upstream_when_caller_leaves;
    bool paused = qp_stream_caller_left(s, keep);
    if (keep) {
        if (paused && req->in_transfer)
            curl_easy_pause(req->xfer.easy, CURLPAUSE_CONT);
        return;
    }
    drop_transfer(fw, req);
    stream_release(fw, req);
}

/* The caller left before its stream started (SSE-18): no further attempt, and the open one
 * is closed at once. The answer goes nowhere; the status is for the log line. */
static void
stream_gone_before_start(struct qp_forwarder *fw, struct qp_request *req)
{
    qp_metrics_caller_gone(fw->cfg.metrics);
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
    if (!qp_stream_started(&req->st))
        stream_gone_before_start(req->fw, req);
    else
        stream_client_gone(req->fw, req);
}

/* Commits the 200 event stream with the bytes normalized so far (SSE-1, SSE-7). */
static void
stream_start(struct qp_forwarder *fw, struct qp_request *req)
{
    req->streaming = true;
    qp_loop_timer_cancel(fw->loop, &req->st.timer);
    qp_response_clear(&req->resp);
    req->resp.status = 200;
    snprintf(req->resp.content_type, sizeof(req->resp.content_type), "text/event-stream");
    qp_stream_commit(&req->st);
    qp_metrics_stream_started(fw->cfg.metrics);
    qp_metrics_first_event(fw->cfg.metrics, (uint64_t)(qk_now_ms() - req->started_ms) * 1000u);
    stream_arm_timer(fw, req);
    req->state = QP_REQ_READY;
    fw->cfg.stream_start(req);
}

/* Whether the current transfer answers a 2xx event stream (decided at its first byte, or
 * at its end when no byte came). */
static bool
stream_attempt_is_sse(struct qp_request *req, long status)
{
    struct qp_stream *s = &req->st;
    if (!s->sse_known) {
        const char *ctype = header_value(req->attempt_headers, "Content-Type");
        s->sse = status >= 200 && status <= 299 && ctype &&
                 strncasecmp(ctype, "text/event-stream", 17) == 0;
        s->sse_known = true;
    }
    return s->sse;
}

/* The body callback of a 2xx event-stream transfer (loop thread, inside libcurl). */
static size_t
stream_on_body(struct qp_request *req, char *ptr, size_t n)
{
    struct qp_stream *s = &req->st;
    if (!qp_stream_started(s)) {
        if (!qp_stream_feed(s, ptr, n, &s->pending))
            return 0; /* a failed attempt; on_attempt_done judges it */
        if (qk_buf_len(&s->pending) > 0)
            stream_start(req->fw, req);
        return n;
    }
    enum qp_stream_room room = qp_stream_reserve(s);
    if (room == QP_STREAM_FULL) {
        qp_metrics_stream_paused(req->fw->cfg.metrics);
        return CURL_WRITEFUNC_PAUSE; /* SSE-11: the reader's drain posts a notice */
    }
    return qp_stream_relay(s, ptr, n, room == QP_STREAM_GONE) ? n : 0;
}

/* A started stream's upstream transfer ended (the handle is cleaned up). */
static void
stream_upstream_done(struct qp_forwarder *fw, struct qp_request *req, CURLcode rc, long status)
{
    struct qp_stream *s = &req->st;
    bool ok = rc == CURLE_OK && s->sse && !s->inband && !s->bad_event;
    enum qp_sse_end end = ok ? qp_sse_norm_end(s->norm) : QP_SSE_END_CLEAN;
    char msg[512];
    struct qp_log_failure cut = {.cause = QP_METRIC_CAUSE_INVALID, .after_start = true};
    if (end != QP_SSE_END_CLEAN) {
        ok = false; /* SSE-17: a clean close inside an event is a truncation */
        snprintf(msg, sizeof(msg), "Upstream stream ended %s.",
                 end == QP_SSE_END_CUT ? "inside an event" : "without an event");
    } else if (!s->sse)
        snprintf(msg, sizeof(msg), "Upstream answered HTTP %ld instead of an event stream.",
                 status);
    else if (s->inband) {
        snprintf(msg, sizeof(msg), "Upstream failed mid-stream: %s.", s->inband_msg);
        cut.cause = QP_METRIC_CAUSE_INBAND;
    } else if (s->bad_event) {
        snprintf(msg, sizeof(msg), "Upstream sent an event that is not a JSON chunk.");
    } else {
        snprintf(msg, sizeof(msg), "Upstream stream interrupted: %.200s.",
                 req->last_error[0] ? req->last_error : curl_easy_strerror(rc));
        cut.cause =
            rc == CURLE_OPERATION_TIMEDOUT ? QP_METRIC_CAUSE_TIMEOUT : QP_METRIC_CAUSE_CONNECT;
    }
    cut.status = (uint16_t)(status > 0 && status < 1000 ? status : 0);
    if (!ok && !s->orphaned)
        note_stream_cut(fw, req, msg);
    if (s->orphaned) {
        ok = false; /* mutant keep_upstream_on_disconnect: nobody is listening */
    } else if (!ok && QP_MUTANT(replay_after_drop) && s->sse &&
               req->attempts <= fw->cfg.policy.max_retries) {
        start_attempt(fw, req); /* the new attempt's text goes out again from the start */
        return;
    }
    QP_MUTANT_REWRITE(stream_drop, &ok, s->sse);
    stream_close(fw, req, ok, msg, ok || s->orphaned ? NULL : &cut);
}

static void
on_stream_timer(struct qp_loop_timer *t)
{
    struct qp_request *req = QP_CONTAINER_OF(t, struct qp_request, st.timer);
    struct qp_forwarder *fw = req->fw;
    struct qp_stream *s = &req->st;
    if (!qp_stream_started(s)) {
        /* The attempt produced no event in time: a timeout like any other (SSE-7). */
        if (req->in_transfer) {
            snprintf(req->last_error, sizeof(req->last_error), "no event within the time limit");
            qp_loop_remove(fw->loop, &req->xfer);
            on_attempt_done(&req->xfer, CURLE_OPERATION_TIMEDOUT);
        }
        return;
    }
    int64_t now = qk_now_ms();
    if (qp_stream_paused(s))
        s->last_upstream_ms = now; /* a slow caller is not an idle upstream */
    if (req->in_transfer && now - s->last_upstream_ms >= fw->cfg.stream_idle_timeout_ms) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "Upstream sent no complete event for %lld ms; stream ended (SSE-10).",
                 (long long)fw->cfg.stream_idle_timeout_ms);
        note_stream_cut(fw, req, msg);
        drop_transfer(fw, req);
        bool ok = false;
        QP_MUTANT_REWRITE(stream_drop, &ok, s->sse);
        struct qp_log_failure cut = {.cause = QP_METRIC_CAUSE_TIMEOUT, .after_start = true};
        stream_close(fw, req, ok, msg, ok ? NULL : &cut);
        return;
    }
    if (now - s->last_out_ms >= fw->cfg.keepalive_interval_ms + s->keepalive_lag_ms) {
        qp_stream_keepalive(s);
        s->last_out_ms = now;
    }
    stream_arm_timer(fw, req);
}

/* A notice from a server thread about a stream the loop relays (see forward.h). */
static void
stream_notice(struct qp_forwarder *fw, struct qp_request *req)
{
    struct qp_stream_notice n = qp_stream_take_notice(&req->st);
    if (n.live && n.gone) {
        stream_client_gone(fw, req);
    } else if (n.live && n.resume && req->in_transfer) {
        req->st.last_upstream_ms = qk_now_ms();
        curl_easy_pause(req->xfer.easy, CURLPAUSE_CONT);
    }
    qp_request_unref(req); /* the notice's reference */
}

/* Readies the relay of a streamed chat request (its first post). */
static void
stream_prepare(struct qp_forwarder *fw, struct qp_request *req)
{
    struct qp_stream *s = &req->st;
    s->timer.fire = on_stream_timer;
    s->watch.fire = on_stream_watch;
    /* Thousands of streams started in one burst and then silent would all send their
     * keep-alive in the same loop pass, stalling every other event behind 10k writes and
     * resumes: each is late by up to a quarter of the interval (at most 5 s), never early. */
    int64_t spread = fw->cfg.keepalive_interval_ms / 4;
    if (spread > 5000)
        spread = 5000;
    s->keepalive_lag_ms = spread > 0 ? (int64_t)(qp_loop_random(fw->loop) % (uint64_t)spread) : 0;
    qp_stream_bind(s, req->conn, fw->loop, fw->cfg.log, qk_buf_ptr(&req->body),
                   qk_buf_len(&req->body));
}

/* ---- one upstream transfer ---------------------------------------------------------- */

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct qp_request *req = userdata;
    size_t n = size * nmemb;
    if (is_streamed(req) && is_last_step(req->fw, req)) {
        long status = 0;
        if (!req->st.sse_known)
            curl_easy_getinfo(req->xfer.easy, CURLINFO_RESPONSE_CODE, &status);
        if (stream_attempt_is_sse(req, status))
            return stream_on_body(req, ptr, n);
    }
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

/* The full URL of the plan step @p st (join of the base, the path and its query) into
 * @p url. */
static enum qk_err
step_url(const struct qp_forwarder *fw, const struct qp_request *req,
         const struct qp_dialect_step *st, struct qk_buf *url)
{
    size_t n = strlen(fw->upstream);
    while (n && fw->upstream[n - 1] == '/')
        n--;
    enum qk_err rc = qk_buf_appendf(url, "%.*s%s", (int)n, fw->upstream, st->path);
    if (rc == QK_OK && st->add_query)
        rc = st->add_query(&req->plan, url);
    return rc;
}

/* Sets what the step @p st sends: the caller's body, or the one the step makes. */
static enum qk_err
step_upload(struct qp_request *req, const struct qp_dialect_step *st)
{
    req->upload = &req->body;
    if (!st->make_body)
        return QK_OK;
    qk_buf_free(&req->step_body);
    qk_buf_init(&req->step_body, QP_LIMIT_UPSTREAM_BODY);
    req->upload = &req->step_body;
    return st->make_body(&req->body, &req->plan, &req->step_body);
}

/* @return how long a transfer starting at @p now may take: what is left of the attempt's
 * upstream timeout (which bounds all its steps, dialect.h), or of the request's deadline. */
static int64_t
transfer_limit(const struct qp_request *req, int64_t now)
{
    int64_t limit = req->attempt_due_ms - now;
    if (req->deadline_ms - now < limit)
        limit = req->deadline_ms - now;
    return limit;
}

/* Sets the options of the transfer of plan step @p st on @p easy. */
static void
transfer_options(struct qp_request *req, CURL *easy, const struct qp_dialect_step *st,
                 const char *url, int64_t limit)
{
    curl_easy_setopt(easy, CURLOPT_URL, url); /* libcurl copies it */
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->upstream_headers);
    if (qp_resend_policy.one_send_per_attempt) {
        curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, on_prereq);
        curl_easy_setopt(easy, CURLOPT_PREREQDATA, req);
    }
    if (strcmp(st->method, "POST") == 0) {
        /* The body from memory, not a read callback: libcurl then sends a small body in
         * the same segment as the head, where a callback's body went in a second send, and
         * the upstream woke twice per request (two segments). on_prereq alone keeps
         * libcurl from re-sending it (RETRY-3). req->upload lives until the transfer ends. */
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, qk_buf_ptr(req->upload));
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)qk_buf_len(req->upload));
    } else {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    if (!is_streamed(req))
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
}

/*
 * Creates and starts the transfer of the current plan step, limited to @p limit ms (the
 * first step of an attempt counts the attempt). @return false with req->resp set to the
 * cause when it could not.
 */
static bool
start_transfer(struct qp_forwarder *fw, struct qp_request *req, int64_t limit)
{
    const struct qp_dialect_step *st = &plan_of(fw, req)->steps[req->plan_step];
    struct qk_buf url;
    qk_buf_init(&url, strlen(fw->upstream) + strlen(st->path) + QP_LIMIT_STEP_QUERY);
    /* libcurl finds a connection to reuse by walking every connection it holds to the
     * host, in use or not, and curl_multi_remove_handle() walks them all again for a
     * handle whose last connection went back to its pool (7.88: to close a connect-only
     * one). With thousands of streams open both walks cost more than a new connection:
     * ten thousand of them took seconds of the loop. A stream keeps its connection for
     * seconds or minutes, so past QP_REUSE_SCAN_MAX transfers it opens its own and closes
     * it at its end, on a new handle that never had a pooled connection. */
    bool own_connection = is_streamed(req) && fw->n_transfers >= QP_REUSE_SCAN_MAX;
    CURL *easy = own_connection ? curl_easy_init() : easy_take(fw);
    if (!easy || step_url(fw, req, st, &url) != QK_OK || step_upload(req, st) != QK_OK) {
        easy_give(fw, easy);
        qk_buf_free(&url);
        qp_response_error(&req->resp, 502, "Could not create an upstream transfer.", NULL,
                          "internal_error");
        return false;
    }
    curl_slist_free_all(req->attempt_headers);
    req->attempt_headers = NULL;
    qk_buf_free(&req->attempt_body);
    qk_buf_init(&req->attempt_body, QP_LIMIT_UPSTREAM_BODY);
    req->attempt_too_big = false;
    req->attempt_requests = 0;
    req->last_error[0] = '\0';
    req->st.sse_known = req->st.sse = false;
    transfer_options(req, easy, st, qk_buf_ptr(&url), limit);
    qk_buf_free(&url);
    if (own_connection) {
        curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
    }

    req->xfer.easy = easy;
    req->xfer.done = on_attempt_done;
    if (req->plan_step == 0) {
        req->attempts++;
        qp_metrics_attempt(fw->cfg.metrics, metric_route(req));
    }
    if (qp_loop_add(fw->loop, &req->xfer) != QK_OK) {
        easy_give(fw, easy);
        req->xfer.easy = NULL;
        qp_response_error(&req->resp, 502, "Could not start an upstream transfer.", NULL,
                          "internal_error");
        return false;
    }
    req->in_transfer = true;
    fw->n_transfers++;
    return true;
}

/* ---- one attempt: classify, conclude ------------------------------------------------ */

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

/* The facts of the transfer that just ended, for the retry policy (req->last). */
static void
classify_transfer(struct qp_forwarder *fw, struct qp_request *req, CURLcode rc, long status)
{
    struct qp_attempt_facts *f = &req->last;
    memset(f, 0, sizeof(*f));
    f->transport = transport_of(rc, req->attempt_too_big);
    /* libcurl wanted to send the request again (on_prereq refused, or it could not rewind
     * the body); its own message would not say why the attempt failed. */
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
    bool answer = is_last_step(fw, req) && f->transport == QP_TRANSPORT_OK && status >= 200 &&
                  status <= 299 && !f->html;
    if (answer && req->route == QP_ROUTE_MODELS && fw->cfg.dialect->models_unwrap) {
        /* The dialect's envelope off: the cache and the callers get the v1 shape. */
        size_t n = 0;
        const char *body = qk_buf_ptr(&req->attempt_body);
        size_t len = qk_buf_len(&req->attempt_body);
        char *list = fw->cfg.dialect->models_unwrap(body, len, &n);
        const struct qp_decoder_ops *dec = fw->cfg.dialect->stream_decoder;
        char msg[160];
        if (!list && dec->body_failure && dec->body_failure(body, len, msg, sizeof(msg))) {
            /* Refused inside the 2xx: final when it names the credential or the request. */
            snprintf(req->plan.why, sizeof(req->plan.why), "in-band failure: %s", msg);
            req->plan.final_status =
                dec->body_failure_status ? dec->body_failure_status(body, len) : 0;
        }
        qk_buf_reset(&req->attempt_body);
        if (req->plan.final_status) {
            free(list);
            fail_answer(req);
            return;
        }
        if (!list || qk_buf_append(&req->attempt_body, list, n) != QK_OK)
            qk_buf_reset(&req->attempt_body); /* unusable below */
        free(list);
    }
    if (answer && req->route == QP_ROUTE_MODELS)
        f->body_unusable =
            !qp_models_usable(qk_buf_ptr(&req->attempt_body), qk_buf_len(&req->attempt_body));
    if (answer && req->route == QP_ROUTE_CHAT && !is_streamed(req) &&
        fw->cfg.dialect->chat_answer == QP_ANSWER_SSE)
        assemble_answer(fw, req);
}

/* The attempt's answer in req->last was a 2xx its reader found unusable (plan.why says
 * why): a failed attempt, retried like a 500, unless the answer called for a final status
 * (plan.final_status: the credential refused, the request rejected), final like the
 * upstream's own 401 or 400. */
static void
fail_answer(struct qp_request *req)
{
    if (req->plan.final_status)
        req->last.status = req->plan.final_status;
    else
        req->last.body_unusable = true;
}

/* A non-stream caller's answer on a dialect whose completion is always an event stream
 * (QP_ANSWER_SSE): the whole body, read like a stream, becomes one chat.completion in
 * attempt_body, or the attempt failed. */
static void
assemble_answer(struct qp_forwarder *fw, struct qp_request *req)
{
    struct qp_attempt_facts *f = &req->last;
    const struct qp_decoder_ops *dec = fw->cfg.dialect->stream_decoder;
    const char *body = qk_buf_ptr(&req->attempt_body);
    size_t len = qk_buf_len(&req->attempt_body);
    const char *ctype = header_value(req->attempt_headers, "Content-Type");
    char msg[160] = "";
    if (!ctype || strncasecmp(ctype, "text/event-stream", 17) != 0) {
        /* The service's failures come as whole JSON or HTML bodies (SSE-16's rule). */
        if (dec->body_failure && dec->body_failure(body, len, msg, sizeof(msg))) {
            req->plan.final_status =
                dec->body_failure_status ? dec->body_failure_status(body, len) : 0;
            snprintf(req->plan.why, sizeof(req->plan.why), "in-band failure: %s", msg);
        } else {
            snprintf(req->plan.why, sizeof(req->plan.why),
                     "unusable answer: HTTP %ld %.60s, not an event stream", f->status,
                     ctype ? ctype : "without a Content-Type");
        }
        fail_answer(req);
        return;
    }
    char model[128] = "";
    cJSON *root = cJSON_ParseWithLength(qk_buf_ptr(&req->body), qk_buf_len(&req->body));
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    snprintf(model, sizeof(model), "%s", cJSON_IsString(m) ? m->valuestring : "");
    cJSON_Delete(root);
    char id[96];
    snprintf(id, sizeof(id), "chatcmpl-%s", req->request_id);
    struct qp_assemble_opts o = {
        .dialect = dec,
        .model = model,
        .id = id,
        .created_s = (long long)time(NULL),
        .reasoning = fw->cfg.reasoning,
    };
    char *out = NULL;
    size_t out_len = 0;
    unsigned final_status = 0;
    switch (
        qp_assemble_completion(&o, body, len, &out, &out_len, msg, sizeof(msg), &final_status)) {
    case QP_ASSEMBLE_OK:
        qk_buf_reset(&req->attempt_body);
        if (qk_buf_append(&req->attempt_body, out, out_len) != QK_OK) {
            snprintf(req->plan.why, sizeof(req->plan.why), "assembled answer over the limit");
            fail_answer(req);
        }
        free(out);
        return;
    case QP_ASSEMBLE_FAILURE:
        req->plan.final_status = final_status;
        snprintf(req->plan.why, sizeof(req->plan.why), "in-band failure: %s", msg);
        break;
    case QP_ASSEMBLE_INCOMPLETE:
    case QP_ASSEMBLE_BAD:
        snprintf(req->plan.why, sizeof(req->plan.why), "unusable stream: %s", msg);
        break;
    case QP_ASSEMBLE_NOMEM:
        snprintf(req->plan.why, sizeof(req->plan.why), "out of memory assembling the answer");
        break;
    }
    free(out);
    fail_answer(req);
}

/* The facts of a plan step that never ran: it failed the attempt for @p why. */
static void
fail_unstarted_step(struct qp_request *req, enum qp_transport transport, const char *why)
{
    memset(&req->last, 0, sizeof(req->last));
    req->last.transport = transport;
    req->last.retry_after_ms = -1;
    snprintf(req->last_error, sizeof(req->last_error), "%s", why);
}

/*
 * A step that is not its plan's last ended: when it succeeded, its answer feeds the next
 * step, whose transfer starts. @return true when it runs; false when the attempt's outcome
 * is the facts in req->last (a failed step, or a next step that could not start).
 */
static bool
advance_plan(struct qp_forwarder *fw, struct qp_request *req)
{
    if (is_last_step(fw, req))
        return false;
    struct qp_attempt_facts *f = &req->last;
    if (f->transport != QP_TRANSPORT_OK || f->status < 200 || f->status > 299 || f->html)
        return false; /* the step's failure is the attempt's */
    const struct qp_dialect_step *st = &plan_of(fw, req)->steps[req->plan_step];
    if (!st->take_answer(&req->plan, qk_buf_ptr(&req->attempt_body),
                         qk_buf_len(&req->attempt_body))) {
        fail_answer(req);
        return false;
    }
    QP_MUTANT_REWRITE(plan, req);
    req->plan_step++;
    /* The next step that cannot run is the attempt's failure, judged by the policy and
     * logged like any other. */
    int64_t limit = transfer_limit(req, qk_now_ms());
    if (limit <= 0) {
        fail_unstarted_step(req, QP_TRANSPORT_TIMEOUT, "no time left in the attempt for it");
        return false;
    }
    if (!start_transfer(fw, req, limit)) {
        qp_response_clear(&req->resp);
        fail_unstarted_step(req, QP_TRANSPORT_BROKEN, "could not start its transfer");
        return false;
    }
    return true;
}

/*
 * The stream facts of a streamed attempt that ended before the start (SSE-13, SSE-16,
 * SSE-17). @return true when the attempt turned out to be a whole, clean stream, which
 * was committed and closed here.
 */
static bool
classify_stream_attempt(struct qp_forwarder *fw, struct qp_request *req, long status)
{
    struct qp_stream *s = &req->st;
    struct qp_attempt_facts *f = &req->last;
    const char *ctype = header_value(req->attempt_headers, "Content-Type");
    if (f->transport == QP_TRANSPORT_OK)
        (void)stream_attempt_is_sse(req, status); /* no body byte came: look now */
    if (!s->sse && f->transport == QP_TRANSPORT_OK && status >= 200 && status <= 299 && !f->html &&
        qp_exchange_policy.non_sse_200_fails) {
        /* SSE-16: a stream was asked for; a JSON completion, text or an in-band failure
         * payload instead is a failed attempt, retried like a 500 unless the failure's
         * status is final (plan.final_status). */
        const struct qp_decoder_ops *dec = fw->cfg.dialect->stream_decoder;
        const char *body = qk_buf_ptr(&req->attempt_body);
        size_t len = qk_buf_len(&req->attempt_body);
        char msg[160];
        if (dec->body_failure && dec->body_failure(body, len, msg, sizeof(msg))) {
            /* The dialect's failure as a whole body (v2: JSON or a firewall's page). */
            req->plan.final_status =
                dec->body_failure_status ? dec->body_failure_status(body, len) : 0;
            snprintf(req->plan.why, sizeof(req->plan.why), "in-band failure: %s", msg);
        } else {
            snprintf(s->unusable, sizeof(s->unusable),
                     "last upstream answer was HTTP %ld %.60s, not an event stream", status,
                     ctype ? ctype : "without a Content-Type");
        }
        fail_answer(req);
    }
    if (!s->sse_known || !s->sse)
        return false;
    if (s->inband && qp_sse_norm_inband_status(s->norm)) {
        /* The stream's first event refused the credential or the request: that status,
         * not retried. */
        f->transport = QP_TRANSPORT_OK;
        snprintf(req->plan.why, sizeof(req->plan.why), "in-band failure: %.160s", s->inband_msg);
        req->plan.final_status = qp_sse_norm_inband_status(s->norm);
        fail_answer(req);
    } else if (s->inband || s->bad_event) {
        /* An event stream that failed before its first chunk: a retryable glitch
         * (SSE-13), however libcurl ended after we stopped reading. */
        f->transport = QP_TRANSPORT_OK;
        f->status = status;
        f->body_unusable = true;
    } else if (f->transport == QP_TRANSPORT_OK && qp_sse_norm_end(s->norm) != QP_SSE_END_CLEAN) {
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
            stream_close(fw, req, true, NULL, NULL);
            return true;
        }
        f->body_unusable = true;
    }
    return false;
}

/* The attempt succeeded: the answer goes to the caller (and a model list to the cache). */
static void
conclude_success(struct qp_forwarder *fw, struct qp_request *req, int64_t now)
{
    if (req->route == QP_ROUTE_MODELS) {
        const char *raw = qk_buf_ptr(&req->attempt_body);
        size_t len = qk_buf_len(&req->attempt_body);
        if (qp_cache_put(fw->cache, req->flight_key, raw, len, now) != QK_OK)
            qp_log_note(fw->cfg.log, QP_LOG_ERROR, "cache", "model list not stored: out of memory");
        models_land(fw, req, raw, len, QP_MARK_MISS);
        return;
    }
    if (QP_MUTANT(cache_chat) && req->has_cache_key)
        (void)QP_MUTANT_HELPER(cache_put, fw->cache, req, now, fw->cfg.log);
    respond_chat_success(req);
    finish(fw, req);
}

/* Why the attempt in req->last failed, for the log: a status, libcurl's message for the
 * transfer that ended with @p rc, or what was wrong with its stream. Never a credential. */
static void
attempt_cause(const struct qp_request *req, CURLcode rc, char *out, size_t cap)
{
    step_label(req->fw, req, out, cap);
    size_t off = strlen(out);
    out += off;
    cap -= off;
    const struct qp_attempt_facts *f = &req->last;
    const struct qp_stream *s = &req->st;
    const char *curl_msg = req->last_error[0] ? req->last_error : curl_easy_strerror(rc);
    switch (f->transport) {
    case QP_TRANSPORT_TIMEOUT:
        snprintf(out, cap, "timeout: %s", curl_msg);
        return;
    case QP_TRANSPORT_CONNECT:
    case QP_TRANSPORT_BROKEN:
        snprintf(out, cap, "connection error: %s", curl_msg);
        return;
    case QP_TRANSPORT_TOO_BIG:
        snprintf(out, cap, "answer over %u bytes", QP_LIMIT_UPSTREAM_BODY);
        return;
    case QP_TRANSPORT_OK:
        break;
    }
    if (req->plan.why[0])
        snprintf(out, cap, "%s", req->plan.why);
    else if (is_streamed(req) && s->inband)
        snprintf(out, cap, "in-band failure: %s", s->inband_msg);
    else if (is_streamed(req) && s->bad_event)
        snprintf(out, cap, "unusable stream: an event that is not a JSON chunk");
    else if (is_streamed(req) && s->unusable[0])
        snprintf(out, cap, "unusable stream: %s", s->unusable);
    else if (f->html)
        snprintf(out, cap, "HTML page (HTTP %ld)", f->status);
    else if (f->body_unusable)
        snprintf(out, cap, "unusable answer (HTTP %ld)", f->status);
    else
        snprintf(out, cap, "HTTP %ld", f->status);
}

/* Logs the failed attempt in req->last once, with what follows it (@p d). */
static void
note_failed_attempt(const struct qp_forwarder *fw, const struct qp_request *req, CURLcode rc,
                    const struct qp_decision *d)
{
    if (fw->cfg.log.format == QK_PROXY_LOG_OFF || fw->cfg.log.level < QK_PROXY_LOG_LEVEL_WARN)
        return;
    char cause[512];
    attempt_cause(req, rc, cause, sizeof(cause));
    char next[48];
    switch (d->next) {
    case QP_NEXT_RETRY:
        snprintf(next, sizeof(next), "retry in %lld ms", (long long)d->delay_ms);
        break;
    case QP_NEXT_RELAY:
        snprintf(next, sizeof(next), "relayed");
        break;
    case QP_NEXT_DEADLINE:
        snprintf(next, sizeof(next), "deadline reached");
        break;
    default:
        snprintf(next, sizeof(next), "no attempt left");
        break;
    }
    qp_log_note(fw->cfg.log, QP_LOG_WARN, "upstream", "request %s attempt %u failed: %s (%s)",
                req->request_id, req->attempts, cause, next);
}

/* What failed in the attempt in req->last, for the metrics (metrics.h). */
static enum qp_metric_cause
metric_cause(const struct qp_request *req, const struct qp_decision *d)
{
    const struct qp_attempt_facts *f = &req->last;
    const struct qp_stream *s = &req->st;
    switch (f->transport) {
    case QP_TRANSPORT_TIMEOUT:
        return QP_METRIC_CAUSE_TIMEOUT;
    case QP_TRANSPORT_CONNECT:
    case QP_TRANSPORT_BROKEN:
        return QP_METRIC_CAUSE_CONNECT;
    case QP_TRANSPORT_TOO_BIG:
        return QP_METRIC_CAUSE_INVALID;
    case QP_TRANSPORT_OK:
        break;
    }
    if (d->next == QP_NEXT_RELAY)
        return QP_METRIC_CAUSE_REFUSED;
    /* In-band failures are named so where they are found (classify_transfer and others). */
    if ((is_streamed(req) && s->inband) || strncmp(req->plan.why, "in-band failure", 15) == 0)
        return QP_METRIC_CAUSE_INBAND;
    if (f->html)
        return QP_METRIC_CAUSE_HTML;
    if (f->status >= 400)
        return QP_METRIC_CAUSE_STATUS;
    return QP_METRIC_CAUSE_INVALID;
}

/* Counts the attempt's outcome: a failure by cause (and whether it is retried), and what it
 * says of the upstream's health (/readyz). */
static void
count_outcome(struct qp_forwarder *fw, struct qp_request *req, const struct qp_decision *d,
              int64_t now)
{
    if (d->next == QP_NEXT_SUCCESS) {
        qp_metrics_upstream_answered(fw->cfg.metrics, now);
        return;
    }
    enum qp_metric_cause cause = metric_cause(req, d);
    qp_metrics_attempt_failed(fw->cfg.metrics, cause, d->next == QP_NEXT_RETRY);
    if (req->n_failures < QP_LOG_FAILURES) {
        const struct qp_attempt_facts *f = &req->last;
        req->failures[req->n_failures] = (struct qp_log_failure){
            .cause = (uint8_t)cause,
            .status =
                (uint16_t)(f->transport == QP_TRANSPORT_OK && f->status < 1000 ? f->status : 0)};
    }
    req->n_failures++;
    if (cause == QP_METRIC_CAUSE_REFUSED)
        qp_metrics_upstream_answered(fw->cfg.metrics, now); /* it answered: the caller's fault */
    else
        qp_metrics_upstream_failed(fw->cfg.metrics, now);
}

/* The policy's verdict on the attempt in req->last, whose transfer ended with @p rc: retry
 * later, or the final answer. */
static void
conclude_attempt(struct qp_forwarder *fw, struct qp_request *req, CURLcode rc)
{
    const struct qp_attempt_facts *f = &req->last;
    int64_t now = qk_now_ms();
    struct qp_decision d = qp_retry_decide(&fw->cfg.policy, f, req->attempts, now, req->deadline_ms,
                                           qp_loop_random(fw->loop));
    bool models = req->route == QP_ROUTE_MODELS;
    if (d.next != QP_NEXT_SUCCESS)
        note_failed_attempt(fw, req, rc, &d);
    count_outcome(fw, req, &d, now);
    if (d.next == QP_NEXT_RETRY) {
        qp_loop_timer_arm(fw->loop, &req->retry_timer, now + d.delay_ms);
        return;
    }
    if (d.next == QP_NEXT_SUCCESS) {
        conclude_success(fw, req, now);
        return;
    }
    /* A final failure. Failures are never cached (CACHE-3). */
    if (models && QP_MUTANT(cache_errors))
        (void)QP_MUTANT_HELPER(cache_put, fw->cache, req, now, fw->cfg.log);
    if (d.next == QP_NEXT_RELAY) {
        if (models && f->transport == QP_TRANSPORT_OK && f->status == 401)
            qp_cache_evict(fw->cache, req->flight_key); /* revoked: forget its list */
        respond_relay(req);
        QP_MUTANT_REWRITE(relay, req);
    } else {
        if (models && serve_stale(fw, req))
            return;
        respond_gave_up(fw, req, d.next == QP_NEXT_DEADLINE);
    }
    conclude(fw, req);
}

static void
on_attempt_done(struct qp_loop_transfer *t, CURLcode rc)
{
    struct qp_request *req = QP_CONTAINER_OF(t, struct qp_request, xfer);
    struct qp_forwarder *fw = req->fw;
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_off_t took_us = 0;
    if (curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &took_us) == CURLE_OK && took_us >= 0)
        qp_metrics_upstream_duration(fw->cfg.metrics, metric_route(req), (uint64_t)took_us);
    easy_give(fw, t->easy);
    t->easy = NULL;
    req->in_transfer = false;
    fw->n_transfers--;

    bool streamed = is_streamed(req);
    if (streamed && qp_stream_started(&req->st)) {
        stream_upstream_done(fw, req, rc, status);
        return;
    }
    classify_transfer(fw, req, rc, status);
    if (advance_plan(fw, req))
        return;
    if (streamed) {
        qp_loop_timer_cancel(fw->loop, &req->st.timer);
        /* The stream checks judge the last step's answer; an earlier step's failure is
         * its own (classify_transfer). */
        if (is_last_step(fw, req) && classify_stream_attempt(fw, req, status))
            return;
    }
    conclude_attempt(fw, req, rc);
}

static void
on_retry_timer(struct qp_loop_timer *t)
{
    struct qp_request *req = QP_CONTAINER_OF(t, struct qp_request, retry_timer);
    start_attempt(req->fw, req);
}

/* A fresh plan state for an attempt: the wall clock and a random UUID (version 4) for the
 * steps' bodies, which stay pure (dialect.h). */
static void
plan_begin(struct qp_forwarder *fw, struct qp_request *req)
{
    memset(&req->plan, 0, sizeof(req->plan));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    req->plan.now_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    unsigned char b[16];
    for (size_t i = 0; i < sizeof(b); i += 4) {
        uint32_t r = qp_loop_random(fw->loop);
        memcpy(b + i, &r, 4);
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    /* By hand: snprintf with sixteen %02x cost about 6k instructions an attempt. */
    static const char hex[] = "0123456789abcdef";
    char *o = req->plan.fid;
    for (size_t i = 0; i < sizeof(b); i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

/* Starts an attempt: the first transfer of the route's plan (dialect.h). */
static void
start_attempt(struct qp_forwarder *fw, struct qp_request *req)
{
    int64_t now = qk_now_ms();
    if (QP_MUTANT(one_caller_at_a_time) && QP_MUTANT_HELPER(another_stream_open, fw->active, req)) {
        qp_loop_timer_arm(fw->loop, &req->retry_timer, now + 20);
        return;
    }
    req->attempt_due_ms = now + fw->cfg.upstream_timeout_ms;
    int64_t limit = transfer_limit(req, now);
    bool started = qp_stream_started(&req->st);
    if (limit <= 0 && !started) {
        respond_gave_up(fw, req, true);
        conclude(fw, req);
        return;
    }
    QP_MUTANT_REWRITE(upstream_body, req);
    bool streamed = is_streamed(req);
    req->plan_step = 0;
    plan_begin(fw, req);
    if (streamed && !qp_stream_new_attempt(&req->st, fw->cfg.dialect->stream_decoder,
                                           fw->cfg.reasoning, req->request_id)) {
        qp_response_error(&req->resp, 500, "Out of memory.", NULL, "internal_error");
    } else if (start_transfer(fw, req, limit)) {
        if (streamed && !started) {
            if (QP_MUTANT(stream_200_on_failure))
                stream_start(fw, req); /* commits the 200 before anything came back */
            else
                qp_loop_timer_arm(fw->loop, &req->st.timer, now + limit);
        }
        return;
    }
    if (started)
        stream_close(fw, req, false, "Could not start an upstream transfer.", NULL);
    else
        conclude(fw, req);
}

/* ---- entry points ----------------------------------------------------------------- */

bool
qp_forward_models_hit(struct qp_forwarder *fw, struct qp_request *req)
{
    req->flight_key = models_key(req);
    req->has_cache_key = true;
    req->cache = QP_MARK_MISS;
    struct qp_blob *body = NULL;
    enum qp_cache_form form = wants_v1_shape(req) ? QP_CACHE_DERIVED : QP_CACHE_BODY;
    if (qp_cache_get_shared(fw->cache, req->flight_key, qk_now_ms(), form, &body) != QP_CACHE_FRESH)
        return false;
    respond_models(req, body, QP_MARK_HIT);
    return true;
}

/* A model-list request that missed on its server thread: an entry stored since answers it,
 * or it joins the flight of the same credential. @return true when it needs no attempt of
 * its own. */
static bool
models_lookup(struct qp_forwarder *fw, struct qp_request *req)
{
    if (qp_forward_models_hit(fw, req)) {
        finish(fw, req);
        return true;
    }
    enum qp_flight_role role = qp_flight_join(fw->flights, req->flight_key, req);
    if (role == QP_FLIGHT_JOINED)
        return true; /* the leader's answer will complete it */
    req->leads_flight = role == QP_FLIGHT_LEAD;
    return false;
}

void
qp_forward_on_post(void *ctx, void *item)
{
    struct qp_forwarder *fw = ctx;
    struct qp_request *req = item;

    if (req->fw) {
        stream_notice(fw, req); /* a second post is a notice (forward.h) */
        return;
    }
    req->fw = fw;
    if (is_streamed(req)) {
        stream_prepare(fw, req);
        if (qp_exchange_policy.watch_caller_before_start)
            qp_stream_watch_caller(&req->st); /* a caller gone before the start ends it (SSE-18) */
    }
    req->deadline_ms = req->started_ms + fw->cfg.deadline_ms;
    req->retry_timer.fire = on_retry_timer;
    active_add(fw, req);

    if (req->route == QP_ROUTE_MODELS && models_lookup(fw, req))
        return;
    if (req->route != QP_ROUTE_MODELS && QP_MUTANT(cache_chat) &&
        QP_MUTANT_HELPER(chat_lookup, fw->cache, req, qk_now_ms())) {
        finish(fw, req);
        return;
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
        drop_transfer(fw, req);
        if (qp_stream_started(&req->st)) {
            stream_close(fw, req, false, "The proxy is shutting down.", NULL);
            continue;
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
    fw->upstream = strdup(cfg->upstream);
    fw->cache = qp_cache_new(cfg->cache_max_entries, cfg->cache_max_bytes, cfg->cache_ttl_ms,
                             cfg->stale_grace_ms, qp_models_openai);
    fw->flights = qp_flights_new();
    if (!fw->upstream || !fw->cache || !fw->flights) {
        qp_forwarder_free(fw);
        return QK_NOMEM;
    }
    fw->cfg.upstream = fw->upstream;
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
    while (fw->n_idle_easy > 0)
        curl_easy_cleanup(fw->idle_easy[--fw->n_idle_easy]);
    free(fw->upstream);
    free(fw);
}
