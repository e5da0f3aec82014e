/*
 * The upstream exchange, on the loop thread: cache, single flight, attempts, retries.
 *
 * Flow of one request: on_post -> (models: cache hit? join a flight?) -> start_attempt ->
 * libcurl -> on_attempt_done -> qp_retry_decide -> success | timer -> start_attempt |
 * final answer -> finish (complete callback resumes the caller's connection).
 */
#include "forward.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "apierror.h"
#include "cache.h"
#include "flight.h"
#include "headers.h"
#include "models.h"
#include "mutant.h"

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
};

static void start_attempt(struct qp_forwarder *fw, struct qp_request *req);

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

/* The model list for @p req, in its route's shape. */
static void
respond_models(struct qp_request *req, const char *raw, size_t len, enum qp_cache_mark mark)
{
    req->cache = mark;
    if (req->openai_alias && !QP_MUTANT(v1_models_raw)) {
        size_t out_len = 0;
        char *out = qp_models_openai(raw, len, &out_len);
        if (!out) {
            qp_response_error(&req->resp, 502, "Upstream model list is not usable.", NULL,
                              "upstream_bad_body");
            return;
        }
        qp_response_take_body(&req->resp, 200, out, out_len, "application/json");
        return;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        qp_response_error(&req->resp, 500, "Out of memory.", NULL, "internal_error");
        return;
    }
    memcpy(copy, raw, len);
    copy[len] = '\0';
    qp_response_take_body(&req->resp, 200, copy, len, "application/json");
}

/* Relays a successful chat completion with the upstream's end-to-end headers. */
static void
respond_chat_success(struct qp_request *req)
{
    const char *ctype = header_value(req->attempt_headers, "Content-Type");
    const char *connection = header_value(req->attempt_headers, "Connection");
    size_t len = 0;
    char *body = qk_buf_take(&req->attempt_body, &len);
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
        if (!qp_header_forward_response(name, connection))
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
    if (f->transport == QP_TRANSPORT_OK)
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

/* Ends a model-list exchange: the leader's answer goes to every waiter of its flight. */
static void
models_land(struct qp_forwarder *fw, struct qp_request *leader, const char *raw, size_t len,
            enum qp_cache_mark mark)
{
    void **waiters = NULL;
    size_t n = 0;
    if (leader->leads_flight)
        n = qp_flight_land(fw->flights, leader->flight_key, &waiters);
    if (raw)
        respond_models(leader, raw, len, mark);
    for (size_t i = 0; i < n; i++) {
        struct qp_request *w = waiters[i];
        if (raw) {
            respond_models(w, raw, len, mark);
        } else if (!qp_response_copy(&w->resp, &leader->resp)) {
            qp_response_clear(&w->resp);
            qp_response_error(&w->resp, 500, "Out of memory.", NULL, "internal_error");
        }
        if (!raw)
            w->cache = leader->cache;
        finish(fw, w);
    }
    free(waiters);
    finish(fw, leader);
}

/* A failed refresh may fall back to the last good list (CACHE-6). */
static bool
serve_stale(struct qp_forwarder *fw, struct qp_request *req)
{
    if (QP_MUTANT(no_stale))
        return false;
    char *body = NULL;
    size_t len = 0;
    if (qp_cache_get_fallback(fw->cache, req->flight_key, qk_now_ms(), &body, &len) ==
        QP_CACHE_MISS)
        return false;
    models_land(fw, req, body, len, QP_MARK_STALE);
    free(body);
    return true;
}

/* ---- one attempt ------------------------------------------------------------------ */

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct qp_request *req = userdata;
    size_t n = size * nmemb;
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

    memset(f, 0, sizeof(*f));
    f->transport = transport_of(rc, req->attempt_too_big);
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
            if (!QP_MUTANT(no_cache) &&
                qp_cache_put(fw->cache, req->flight_key, raw, len, now) != QK_OK)
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

static void
start_attempt(struct qp_forwarder *fw, struct qp_request *req)
{
    int64_t now = qk_now_ms();
    int64_t limit = fw->cfg.upstream_timeout_ms;
    if (!QP_MUTANT(no_deadline) && req->deadline_ms - now < limit)
        limit = req->deadline_ms - now;
    if (limit <= 0) {
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

    curl_slist_free_all(req->attempt_headers);
    req->attempt_headers = NULL;
    qk_buf_free(&req->attempt_body);
    qk_buf_init(&req->attempt_body, QP_LIMIT_UPSTREAM_BODY);
    req->attempt_too_big = false;
    req->last_error[0] = '\0';

    curl_easy_setopt(easy, CURLOPT_URL,
                     req->route == QP_ROUTE_MODELS ? fw->models_url : fw->chat_url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->upstream_headers);
    if (req->route == QP_ROUTE_CHAT) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, qk_buf_ptr(&req->body));
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)qk_buf_len(&req->body));
    } else {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)limit);
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
    return;
fail:
    if (req->route == QP_ROUTE_MODELS)
        models_land(fw, req, NULL, 0, QP_MARK_MISS);
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

    req->fw = fw;
    req->deadline_ms = req->started_ms + fw->cfg.deadline_ms;
    req->retry_timer.fire = on_retry_timer;
    active_add(fw, req);

    if (req->route == QP_ROUTE_MODELS) {
        req->flight_key = models_key(req);
        req->has_cache_key = true;
        req->cache = QP_MARK_MISS;
        char *body = NULL;
        size_t len = 0;
        if (!QP_MUTANT(no_cache) &&
            qp_cache_get(fw->cache, req->flight_key, now, &body, &len) == QP_CACHE_FRESH) {
            respond_models(req, body, len, QP_MARK_HIT);
            free(body);
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
        if (req->has_cache_key &&
            qp_cache_get(fw->cache, req->flight_key, now, &body, &len) == QP_CACHE_FRESH) {
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
    int64_t ttl = QP_MUTANT(cache_never_expires) ? INT64_MAX / 4 : cfg->cache_ttl_ms;
    size_t max = QP_MUTANT(unbounded_cache) ? 0 : cfg->cache_max_entries;
    fw->models_url = strdup(cfg->models_url);
    fw->chat_url = strdup(cfg->chat_url);
    fw->cache = qp_cache_new(max, ttl, cfg->stale_grace_ms);
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
