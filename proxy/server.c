/*
 * The HTTP side: libmicrohttpd, routing, auth, validation, and qk_proxy_start/stop.
 *
 * Threading mode: MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL with a fixed pool of
 * cfg->threads threads and MHD_ALLOW_SUSPEND_RESUME. A model list fresh in the cache is
 * answered on the server thread that read the request (dispatch). Any other request that
 * needs the upstream is suspended and posted to the single upstream loop thread (loop.c,
 * forward.c); the loop fills the response and resumes the connection, and the next
 * access-handler call queues it. No server thread ever waits for the upstream.
 */
#include "qwenkit/proxy.h"

#include <curl/curl.h>
#include <limits.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "admission.h"
#include "apierror.h"
#include "bearer.h"
#include "dialect.h"
#include "decoder.h"
#include "docpage.h"
#include "forward.h"
#include "headers.h"
#include "key.h"
#include "log.h"
#include "metrics.h"
#include "models.h"
#include "loop.h"
#include "mutant.h"
#include "request.h"
#include "routes.h"
#include "stream.h"
#include "validate.h"

struct qk_proxy {
    struct qk_proxy_config cfg; /* strings point at the copies below */
    char *listen_host;
    char *upstream;
    char *cors_origins;
    struct MHD_Daemon *daemon;
    struct qp_admission *adm;
    struct qp_loop *loop;
    struct qp_forwarder *fw;
    const struct qp_dialect *dialect; /* the upstream's API (--upstream-dialect) */
    struct curl_slist *extra_headers; /* --upstream-header lines but Cookie, owned */
    char *extra_cookie;               /* their Cookie values joined by "; " (NULL: none) */
    uint16_t port;
    atomic_bool draining;
    atomic_bool unready; /* /readyz answers 503: set before a drain (--drain-delay) and by it */
    struct qp_metrics *metrics; /* owned */
    MHD_socket quiesced_fd;     /* the listening socket once a drain took it from the daemon */
};

/* ---- routing ---------------------------------------------------------------------- */

QP_MUTANT_EDITABLE struct qp_intake_policy qp_intake_policy = {.route_on_raw_path = true,
                                                               .validate_chat = true};

/* HEAD goes with GET (RFC 9110 9.3.2). */
QP_MUTANT_EDITABLE struct qp_route_row qp_routes[QP_ROUTE_ROWS] = {
    {"/", QP_ROUTE_INDEX, false, "GET", true},
    {"/healthz", QP_ROUTE_HEALTH, false, "GET", true},
    {"/readyz", QP_ROUTE_READY, false, "GET", true},
    {"/metrics", QP_ROUTE_METRICS, false, "GET", true},
    {"/api/models", QP_ROUTE_MODELS, false, "GET", true},
    {"/v1/models", QP_ROUTE_MODELS, true, "GET", true},
    {"/api/chat/completions", QP_ROUTE_CHAT, false, "POST", false},
    {"/v1/chat/completions", QP_ROUTE_CHAT, true, "POST", false},
};

/* The Allow value of a route (INPUT-4). */
static void
allow_of(const struct qp_route_row *rt, char *out, size_t len)
{
    snprintf(out, len, "%s%s, OPTIONS", rt->method, rt->head ? ", HEAD" : "");
}

static bool
method_allowed(const struct qp_route_row *rt, const char *method)
{
    if (strcmp(method, rt->method) == 0)
        return true;
    return strcmp(method, "HEAD") == 0 && rt->head;
}

/* GET /v1/models/{id} (models.retrieve): the list's route, then one model picked from it. */
static const struct qp_route_row model_route = {"/v1/models/{id}", QP_ROUTE_MODELS, true, "GET",
                                                true};

/* Copies the {id} of a /v1/models/{id} path (raw, one segment, not empty) to @p out.
 * @return false for any other path. */
static bool
model_id_of(const char *path, char *out, size_t len)
{
    static const char prefix[] = "/v1/models/";
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
        return false;
    const char *id = path + sizeof(prefix) - 1;
    size_t n = strlen(id);
    if (n == 0 || n >= len || strchr(id, '/'))
        return false;
    memcpy(out, id, n + 1);
    return true;
}

/* Answers a /v1/models/{id} request from the OpenAI list in req->resp: the model, or a 404
 * that names it. */
static void
pick_model(struct qp_request *req)
{
    struct qp_response *resp = &req->resp;
    const char *list = resp->shared ? resp->shared->data : resp->body;
    size_t len = 0;
    bool nomem = false;
    char *model = list ? qp_models_pick(list, resp->len, req->model_id, &len, &nomem) : NULL;
    if (model) {
        qp_response_take_body(resp, 200, model, len, "application/json");
        return;
    }
    if (nomem) {
        qp_response_error(resp, 500, "Out of memory.", NULL, "internal_error");
        return;
    }
    char msg[192];
    snprintf(msg, sizeof(msg), "The model '%.128s' does not exist.", req->model_id);
    qp_response_error(resp, 404, msg, "model", "model_not_found");
}

static const struct qp_route_row *
route_of(const char *url)
{
    for (size_t i = 0; i < QP_ROUTE_ROWS; i++) {
        if (strcmp(qp_routes[i].path, url) == 0)
            return &qp_routes[i];
    }
    return NULL;
}

/* ---- responses -------------------------------------------------------------------- */

static const char *
lookup(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* Adds one "Name: value" line to an MHD response. */
static void
add_header_line(struct MHD_Response *r, const char *line)
{
    const char *colon = strchr(line, ':');
    if (!colon || colon == line || (size_t)(colon - line) >= 128)
        return;
    char name[128];
    memcpy(name, line, (size_t)(colon - line));
    name[colon - line] = '\0';
    const char *value = colon + 1;
    while (*value == ' ' || *value == '\t')
        value++;
    MHD_add_response_header(r, name, value);
}

static void
add_cors(struct qk_proxy *px, struct qp_request *req, struct MHD_Response *r)
{
    const char *origin = lookup(req->conn, "Origin");
    if (!origin || !qp_cors_origin_allowed(px->cfg.cors_origins, origin))
        return;
    bool any = strcmp(px->cfg.cors_origins, "*") == 0;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", any ? "*" : origin);
    MHD_add_response_header(r, "Vary", "Origin");
    MHD_add_response_header(r, "Access-Control-Expose-Headers",
                            "X-Request-Id, X-Cache, Retry-After");
}

static const char *
cache_mark_name(enum qp_cache_mark m)
{
    switch (m) {
    case QP_MARK_HIT:
        return "HIT";
    case QP_MARK_MISS:
        return "MISS";
    case QP_MARK_STALE:
        return "STALE";
    case QP_MARK_NONE:
        break;
    }
    return "-";
}

/* ---- streamed answers (SSE-*) ------------------------------------------------------ */

/*
 * libmicrohttpd's content reader of a 200 event stream: the relay (stream.c) copies what
 * the loop produced, or suspends the connection until the loop has more. Runs on a server
 * thread with the response's mutex held (see stream.c for the lock order).
 */
static ssize_t
stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos; /* the buffer tracks its own position */
    struct qp_request *req = cls;
    return qp_stream_read(&req->st, buf, max);
}

static void
stream_response_free(void *cls)
{
    qp_request_unref(cls); /* the response's reference */
}

static struct MHD_Response *
stream_response(struct qp_request *req)
{
    struct MHD_Response *r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, QP_STREAM_RESPONSE_BLOCK, stream_reader, req, stream_response_free);
    if (!r)
        return NULL;
    qp_request_ref(req);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    return r;
}

static void
blob_response_free(void *cls)
{
    qp_blob_unref(cls); /* the response's reference */
}

/* An MHD response of @p resp's body, which it hands over rather than copies: a shared
 * body gets a reference of its own, a malloc'd one is given away (resp->body is NULL
 * afterwards; the status and length stay for the log). */
static struct MHD_Response *
response_of_body(struct qp_response *resp)
{
    struct MHD_Response *r = NULL;
    if (resp->shared) {
        r = MHD_create_response_from_buffer_with_free_callback_cls(
            resp->len, resp->shared->data, blob_response_free, resp->shared);
        if (r)
            qp_blob_ref(resp->shared);
    } else if (resp->body) {
        r = MHD_create_response_from_buffer(resp->len, resp->body, MHD_RESPMEM_MUST_FREE);
        if (r)
            resp->body = NULL;
    } else {
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    return r;
}

/* Queues req->resp on the connection. */
static enum MHD_Result
send_response(struct qp_request *req)
{
    struct qk_proxy *px = req->proxy;
    struct qp_response *resp = &req->resp;
    if (req->streaming) {
        struct MHD_Response *r = stream_response(req);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, "X-Request-Id", req->request_id);
        add_cors(px, req, r);
        if (atomic_load(&px->draining))
            MHD_add_response_header(r, "Connection", "close");
        QP_MUTANT_REWRITE(response, r, 200, true);
        req->state = QP_REQ_SENT;
        enum MHD_Result ret = MHD_queue_response(req->conn, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (req->model_id[0] && resp->status == 200)
        pick_model(req);
    struct MHD_Response *r = response_of_body(resp);
    if (!r)
        return MHD_NO;
    if (resp->content_type[0])
        MHD_add_response_header(r, "Content-Type", resp->content_type);
    for (const struct curl_slist *h = resp->headers; h; h = h->next)
        add_header_line(r, h->data);
    MHD_add_response_header(r, "X-Request-Id", req->request_id);
    if (req->cache != QP_MARK_NONE)
        MHD_add_response_header(r, "X-Cache", cache_mark_name(req->cache));
    add_cors(px, req, r);
    if (atomic_load(&px->draining) && !MHD_get_response_header(r, "Connection"))
        MHD_add_response_header(r, "Connection", "close");
    QP_MUTANT_REWRITE(response, r, resp->status, false);
    QP_MUTANT_REWRITE(refusal, req->conn, req->attempts ? 0 : resp->status, px->cfg.upstream,
                      px->dialect->models.steps[0].path);
    req->state = QP_REQ_SENT;
    enum MHD_Result ret = MHD_queue_response(req->conn, resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

/*
 * Answers decided from the headers alone wait for the handler call that follows the
 * whole request: queueing on the first call would make libmicrohttpd close the
 * connection (it cannot know the request was complete). Any body is read and dropped.
 */
static enum MHD_Result
answer_later(struct qp_request *req)
{
    req->state = QP_REQ_READY;
    return MHD_YES;
}

static enum MHD_Result
reply_error(struct qp_request *req, unsigned status, const char *message, const char *param,
            const char *code)
{
    qp_response_error(&req->resp, status, message, param, code);
    return answer_later(req);
}

static enum MHD_Result
reply_static(struct qp_request *req, unsigned status, const char *body, const char *ctype)
{
    char *copy = strdup(body);
    if (!copy)
        return MHD_NO;
    qp_response_take_body(&req->resp, status, copy, strlen(copy), ctype);
    return answer_later(req);
}

/* ---- request start: everything decidable from the headers ------------------------ */

static bool
valid_request_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == ':';
        if (!ok || n >= 64)
            return false;
    }
    return n > 0;
}

/* The state of this thread's request-id generator (xoshiro128++ would do as well; ids
 * need to be unique, not secret). Seeded once per thread from the system's random source,
 * so ids of two threads or two processes do not follow one sequence. */
static _Thread_local uint64_t rid_state[2];
static _Thread_local bool rid_seeded;

static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* 128 fresh bits: the generator's counter (never repeats within a thread) mixed with the
 * thread's random seed. */
static void
next_request_bits(const struct qp_request *req, unsigned char out[16])
{
    if (!rid_seeded) {
        if (getrandom(rid_state, sizeof(rid_state), 0) != (ssize_t)sizeof(rid_state)) {
            rid_state[0] = (uint64_t)qk_now_ms() ^ (uint64_t)(uintptr_t)req;
            rid_state[1] = (uint64_t)(uintptr_t)&rid_state ^ (rid_state[0] << 17);
        }
        rid_seeded = true;
    }
    uint64_t a = splitmix64(&rid_state[0]);
    uint64_t t = a ^ rid_state[1];
    uint64_t b = splitmix64(&t);
    memcpy(out, &a, 8);
    memcpy(out + 8, &b, 8);
}

static void
choose_request_id(struct qp_request *req)
{
    const char *given = lookup(req->conn, "X-Request-Id");
    if (given && valid_request_id(given)) {
        snprintf(req->request_id, sizeof(req->request_id), "%s", given);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[16];
    next_request_bits(req, rnd);
    for (size_t i = 0; i < sizeof(rnd); i++) {
        req->request_id[2 * i] = hex[rnd[i] >> 4];
        req->request_id[2 * i + 1] = hex[rnd[i] & 15];
    }
    req->request_id[2 * sizeof(rnd)] = '\0';
}

static enum MHD_Result
reply_preflight(struct qk_proxy *px, struct qp_request *req, const struct qp_route_row *rt)
{
    char allow[32];
    allow_of(rt, allow, sizeof(allow));
    const char *origin = lookup(req->conn, "Origin");
    if (origin && !qp_cors_origin_allowed(px->cfg.cors_origins, origin)) {
        qp_response_error(&req->resp, 403, "Origin not allowed by --cors-origins.", NULL,
                          "cors_origin_not_allowed");
        QP_MUTANT_REWRITE(preflight, &req->resp, rt->method);
        return answer_later(req);
    }
    qp_response_take_body(&req->resp, 204, NULL, 0, NULL);
    qp_response_add_header(&req->resp, "Allow", allow);
    if (origin) {
        const char *asked = lookup(req->conn, "Access-Control-Request-Headers");
        char headers[512];
        snprintf(headers, sizeof(headers), "%s",
                 asked && strlen(asked) < sizeof(headers) && !strpbrk(asked, "\r\n")
                     ? asked
                     : "Authorization, Content-Type, X-Request-Id");
        qp_response_add_header(&req->resp, "Access-Control-Allow-Methods", allow);
        qp_response_add_header(&req->resp, "Access-Control-Allow-Headers", headers);
        qp_response_add_header(&req->resp, "Access-Control-Max-Age", "600");
    }
    QP_MUTANT_REWRITE(preflight, &req->resp, rt->method);
    return answer_later(req);
}

QP_MUTANT_EDITABLE struct qp_auth_policy qp_auth_policy = {
    .require_authorization = true,
    .require_bearer_token = true,
};

/* AUTH-1/2: a Bearer token must be present before anything goes upstream. */
static bool
check_auth(struct qp_request *req, const char **why, const char **code)
{
    if (!req->authorization) {
        *why = "Missing Authorization header; send 'Authorization: Bearer <token>'.";
        *code = "missing_authorization";
        return !qp_auth_policy.require_authorization;
    }
    size_t len = 0;
    if (!qp_bearer_token(req->authorization, &len)) {
        *why = "Authorization must be 'Bearer <token>' with a non-empty token.";
        *code = "invalid_authorization";
        return !qp_auth_policy.require_bearer_token;
    }
    return true;
}

/* ---- admission (admission.h) ------------------------------------------------------ */

static struct qp_conn *
conn_record(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

/* MHD_OPTION_NOTIFY_CONNECTION: the record lives from accept to close. */
static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
              enum MHD_ConnectionNotificationCode code)
{
    struct qk_proxy *px = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = fd ? qp_admission_opened(px->adm, fd->connect_fd) : NULL;
    } else {
        qp_admission_closed(px->adm, *socket_context);
        *socket_context = NULL;
    }
}

static enum MHD_Result
reply_over_limit(struct qp_request *req)
{
    qp_response_error(&req->resp, 503, "Too many open connections; retry shortly.", NULL,
                      "too_many_connections");
    qp_response_add_header(&req->resp, "Retry-After", "1");
    qp_response_add_header(&req->resp, "Connection", "close");
    return answer_later(req);
}

/* ---- input the proxy refuses (INPUT-1, INPUT-2) ---------------------------------- */

/* Headers that take one value: a second line is an ambiguity two parsers resolve
 * differently (the cache keyed on the first Authorization, the upstream honouring the
 * last), or a framing error (RFC 9112 6.3). */
static const char *const singleton_headers[] = {"Authorization", "Host", "Content-Length"};
enum { SINGLETONS = sizeof(singleton_headers) / sizeof(singleton_headers[0]), HOST_ROW = 1 };

struct header_scan {
    size_t bytes; /* of the header lines, as "Name: value\r\n" */
    unsigned seen[SINGLETONS];
    const char *duplicate;    /* the first singleton seen twice, or NULL */
    const char *control_char; /* the first header whose value holds a control character */
    const char *bad_name;     /* the first header whose name is not a token */
};

/* RFC 9110 5.1: a field name is a token; "Bad Name: x" or "Name : x" is no header. */
static bool
is_tchar(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

/* is_tchar() of every byte, made once: the scan runs on every header of every request. */
static bool tchar_table[256];
static pthread_once_t tchar_once = PTHREAD_ONCE_INIT;

static void
tchar_table_init(void)
{
    for (unsigned c = 0; c < 256; c++)
        tchar_table[c] = is_tchar((unsigned char)c);
}

static bool
is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        if (!tchar_table[(unsigned char)*s])
            return false;
    }
    return true;
}

/* RFC 9110 5.5: field values hold no CTL but HTAB; RFC 9112 2.2: no bare CR is sent. */
static bool
has_control_char(const char *value)
{
    for (const unsigned char *p = (const unsigned char *)value; p && *p; p++) {
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return true;
    }
    return false;
}

static enum MHD_Result
scan_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct header_scan *scan = cls;
    scan->bytes += strlen(key) + (value ? strlen(value) : 0) + 4;
    for (size_t i = 0; i < SINGLETONS; i++) {
        /* The first letter first: most headers are none of these. */
        if ((key[0] | 0x20) == (singleton_headers[i][0] | 0x20) &&
            strcasecmp(key, singleton_headers[i]) == 0 && ++scan->seen[i] == 2 && !scan->duplicate)
            scan->duplicate = singleton_headers[i];
    }
    if (!scan->control_char && has_control_char(value))
        scan->control_char = key;
    if (!scan->bad_name && !is_token(key))
        scan->bad_name = key;
    return MHD_YES;
}

/* @return true when the request was refused (the answer is set up). */
static bool
refuse_bad_headers(struct qp_request *req, bool http11, enum MHD_Result *ret)
{
    struct header_scan scan = {0, {0}, NULL, NULL, NULL};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, scan_header, &scan);
    char msg[160];
    /* Sizes first, answered as JSON while libmicrohttpd still has room for the request
     * (QK_LIMIT_CONNECTION_MEMORY); beyond that it answers with its own page. */
    if (req->target_len > QK_LIMIT_REQUEST_TARGET) {
        snprintf(msg, sizeof(msg), "The request target exceeds %d bytes.", QK_LIMIT_REQUEST_TARGET);
        qp_response_error(&req->resp, 414, msg, NULL, "uri_too_long");
        *ret = answer_later(req);
        return true;
    }
    if (scan.bytes > QK_LIMIT_REQUEST_HEADERS) {
        snprintf(msg, sizeof(msg), "The request headers exceed %d bytes.",
                 QK_LIMIT_REQUEST_HEADERS);
        qp_response_error(&req->resp, 431, msg, NULL, "headers_too_large");
        *ret = answer_later(req);
        return true;
    }
    if (!qp_header_policy.refuse_duplicates)
        scan.duplicate = NULL;
    if (!qp_header_policy.refuse_control_chars)
        scan.control_char = NULL;
    if (scan.duplicate) {
        snprintf(msg, sizeof(msg), "The %s header appears more than once; send it once.",
                 scan.duplicate);
        qp_response_error(&req->resp, 400, msg, scan.duplicate, "duplicate_header");
        /* Two Content-Length lines leave the body's end in doubt: answer now and let
         * libmicrohttpd close rather than read a body whose length we do not know. */
        *ret = strcasecmp(scan.duplicate, "Content-Length") == 0 ? send_response(req)
                                                                 : answer_later(req);
        return true;
    }
    if (scan.bad_name) {
        snprintf(msg, sizeof(msg), "A header name is not a token (RFC 9110 5.1).");
        qp_response_error(&req->resp, 400, msg, NULL, "invalid_header_name");
        *ret = answer_later(req);
        return true;
    }
    /* RFC 9112 3.2: an HTTP/1.1 request without Host gets 400 (libmicrohttpd serves it). */
    if (!scan.seen[HOST_ROW] && http11) {
        qp_response_error(&req->resp, 400, "HTTP/1.1 requests need a Host header.", "Host",
                          "missing_host");
        *ret = answer_later(req);
        return true;
    }
    if (scan.control_char) {
        snprintf(msg, sizeof(msg), "The value of the %.64s header holds a control character.",
                 scan.control_char);
        qp_response_error(&req->resp, 400, msg, scan.control_char, "invalid_header_value");
        *ret = answer_later(req);
        return true;
    }
    return false;
}

/*
 * MHD_OPTION_URI_LOG_CALLBACK: sees the request target as sent, before libmicrohttpd
 * splits off the query and percent-decodes the path (which turns "/api%2Fmodels" into a
 * route, and "%00" into the end of the string). Its result is the request's first con_cls.
 */
static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct qp_request *req = qp_request_new();
    if (!req)
        return NULL; /* begin() then closes the connection */
    req->proxy = cls;
    req->conn = conn;
    if (!uri)
        uri = "";
    size_t n = strcspn(uri, "?");
    req->target_len = n + strlen(uri + n);
    size_t keep = n < sizeof(req->path) ? n : sizeof(req->path) - 1;
    memcpy(req->path, uri, keep);
    req->path[keep] = '\0';
    /* No route reads the query. libmicrohttpd 0.9.75 stores each argument in the
     * connection's memory pool once this returns, and when a few hundred exhaust it, it
     * neither answers nor closes. It parses the bytes after the '?' in its own read
     * buffer, which `uri` points into: ending them here leaves it no argument to store. */
    if (uri[n] == '?')
        ((char *)uri)[n + 1] = '\0';
    return req;
}

/* ---- operations: liveness, readiness, metrics ------------------------------------ */

static bool
is_ops_route(enum qp_route route)
{
    return route == QP_ROUTE_HEALTH || route == QP_ROUTE_READY || route == QP_ROUTE_METRICS;
}

static enum MHD_Result
reply_ops(struct qk_proxy *px, struct qp_request *req, enum qp_route route)
{
    char text[256];
    if (route == QP_ROUTE_HEALTH) {
        /* Liveness: the process serves, draining or not. */
        snprintf(text, sizeof(text), "{\"status\":\"ok\",\"streams\":%llu,\"stream_pauses\":%lu}",
                 (unsigned long long)qp_metrics_streams_active(px->metrics),
                 qp_forwarder_stream_pauses(px->fw));
        return reply_static(req, 200, text, "application/json");
    }
    if (route == QP_ROUTE_READY) {
        int64_t failed_ago = -1;
        bool upstream_ok = qp_metrics_upstream_ready(px->metrics, qk_now_ms(),
                                                     px->cfg.ready_window_ms, &failed_ago);
        bool draining = atomic_load(&px->unready) || atomic_load(&px->draining);
        if (draining)
            snprintf(text, sizeof(text), "{\"status\":\"not ready\",\"reason\":\"draining\"}");
        else if (!upstream_ok)
            snprintf(text, sizeof(text),
                     "{\"status\":\"not ready\",\"reason\":\"upstream failing: the last "
                     "attempt failed %lld ms ago and none has succeeded since\"}",
                     (long long)failed_ago);
        else
            snprintf(text, sizeof(text), "{\"status\":\"ready\"}");
        bool ready = upstream_ok && !draining;
        return reply_static(req, ready ? 200 : 503, text, "application/json");
    }
    struct qk_buf out;
    qk_buf_init(&out, (size_t)4 << 20);
    if (qp_metrics_render(px->metrics, &out) != QK_OK) {
        qk_buf_free(&out);
        return reply_error(req, 500, "Out of memory.", NULL, "internal_error");
    }
    size_t len = qk_buf_len(&out);
    char *body = qk_buf_take(&out, NULL);
    if (!body)
        return MHD_NO;
    qp_response_take_body(&req->resp, 200, body, len, QP_METRICS_CONTENT_TYPE);
    return answer_later(req);
}

static enum qp_metric_route
metric_route_of(const struct qp_request *req)
{
    switch (req->route) {
    case QP_ROUTE_MODELS:
        return req->model_id[0] ? QP_METRIC_ROUTE_MODEL : QP_METRIC_ROUTE_MODELS;
    case QP_ROUTE_CHAT:
        return QP_METRIC_ROUTE_CHAT;
    case QP_ROUTE_INDEX:
    case QP_ROUTE_HEALTH:
    case QP_ROUTE_READY:
    case QP_ROUTE_METRICS:
        return QP_METRIC_ROUTE_OPS;
    case QP_ROUTE_NONE:
        break;
    }
    return QP_METRIC_ROUTE_OTHER;
}

/* Counts a finished request (its status 0 when no answer went out) and its cache result. */
static void
count_request(struct qk_proxy *px, const struct qp_request *req, unsigned status)
{
    if (status)
        qp_metrics_request(px->metrics, metric_route_of(req), status);
    if (req->route != QP_ROUTE_MODELS)
        return;
    if (req->cache == QP_MARK_HIT)
        qp_metrics_cache(px->metrics, QP_METRIC_CACHE_HIT);
    else if (req->cache == QP_MARK_MISS)
        qp_metrics_cache(px->metrics, QP_METRIC_CACHE_MISS);
    else if (req->cache == QP_MARK_STALE)
        qp_metrics_cache(px->metrics, QP_METRIC_CACHE_STALE);
}

static enum MHD_Result
begin(struct qk_proxy *px, struct MHD_Connection *conn, const char *url, const char *method,
      const char *version, void **con_cls)
{
    struct qp_request *req = *con_cls;
    if (!req)
        return MHD_NO; /* on_uri ran out of memory */
    req->begun = true;
    size_t mlen = strnlen(method, sizeof(req->method) - 1);
    memcpy(req->method, method, mlen);
    req->method[mlen] = '\0';
    choose_request_id(req);
    qp_admission_request_begun(px->adm, conn_record(conn));
    enum MHD_Result refused = MHD_YES;
    if (refuse_bad_headers(req, strcmp(version, MHD_HTTP_VERSION_1_1) == 0, &refused))
        return refused;

    const char *auth = lookup(conn, "Authorization");
    if (auth) {
        req->authorization = strdup(auth);
        if (!req->authorization)
            return MHD_NO;
        size_t toklen = 0;
        const char *tok = qp_bearer_token(auth, &toklen);
        if (tok)
            qk_token_fingerprint(tok, toklen, req->fingerprint);
        else
            qk_token_fingerprint(auth, strlen(auth), req->fingerprint);
        req->cred_key = qp_key_of(auth, strlen(auth));
    } else {
        qk_token_fingerprint(NULL, 0, req->fingerprint);
    }

    if (qp_conn_over_limit(conn_record(conn)))
        return reply_over_limit(req);
    /* INPUT-3: route on the path as sent, so an encoded '/' or NUL matches no route. */
    const struct qp_route_row *rt = route_of(qp_intake_policy.route_on_raw_path ? req->path : url);
    if (!rt && model_id_of(req->path, req->model_id, sizeof(req->model_id)))
        rt = &model_route;
    /* While draining, the probes still answer: /healthz that the process serves, /readyz
     * that it is not ready, /metrics the drain's progress. */
    if (atomic_load(&px->draining) && !(rt && is_ops_route(rt->route))) {
        qp_response_error(&req->resp, 503, "The proxy is shutting down.", NULL, "shutting_down");
        return answer_later(req);
    }
    if (!rt)
        return reply_error(req, 404, "Unknown path; see GET / for the endpoints.", NULL,
                           "not_found");
    req->route = rt->route;
    req->openai_alias = rt->openai_alias;
    if (strcmp(method, "OPTIONS") == 0)
        return reply_preflight(px, req, rt);
    if (!method_allowed(rt, method)) {
        char allow[32];
        allow_of(rt, allow, sizeof(allow));
        qp_response_error(&req->resp, 405, "Method not allowed for this path.", NULL,
                          "method_not_allowed");
        qp_response_add_header(&req->resp, "Allow", allow);
        return answer_later(req);
    }
    if (rt->route == QP_ROUTE_INDEX)
        return reply_static(req, 200, qp_doc_page, "text/html; charset=utf-8");
    if (is_ops_route(rt->route))
        return reply_ops(px, req, rt->route);

    const char *why = NULL, *code = NULL;
    if (!check_auth(req, &why, &code)) {
        qp_response_error(&req->resp, 401, why, NULL, code);
        qp_response_add_header(&req->resp, "WWW-Authenticate", "Bearer");
        return answer_later(req);
    }
    size_t cap = px->cfg.max_body;
    const char *clen = lookup(conn, "Content-Length");
    if (clen && strtoull(clen, NULL, 10) > cap) {
        char msg[96];
        snprintf(msg, sizeof(msg), "Request body exceeds %zu bytes.", px->cfg.max_body);
        /* Answer at once and let libmicrohttpd close: we will not read that body. */
        qp_response_error(&req->resp, 413, msg, NULL, "request_too_large");
        return send_response(req);
    }
    qk_buf_init(&req->body, cap);
    req->state = QP_REQ_READING;
    return MHD_YES;
}

/* ---- upstream hand-off ------------------------------------------------------------ */

struct header_walk {
    struct curl_slist *list;
    const char *connection;
    const struct qk_proxy *px;
    struct qk_buf *cookie; /* a caller's Cookie, merged with the configured ones */
    bool chat;
    bool has_content_type;
    bool failed;
};

/* Whether a --upstream-header line names @p key: the configured one replaces it. */
static bool
configured(const struct qk_proxy *px, const char *key)
{
    for (const struct curl_slist *l = px->extra_headers; l; l = l->next) {
        if (qp_header_line_is(l->data, strlen(l->data), key))
            return true;
    }
    return false;
}

static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct header_walk *w = cls;
    if (!qp_header_forward_request(key, w->connection) || configured(w->px, key) ||
        (!w->px->cfg.forward_client_identity && qp_header_is_client_identity(key)))
        return MHD_YES;
    if (strcasecmp(key, "Cookie") == 0) {
        /* One Cookie line upstream (RFC 6265 5.4): the proxy's parts first, then the
         * caller's. */
        if (value && value[0] &&
            ((qk_buf_len(w->cookie) && qk_buf_append(w->cookie, "; ", 2) != QK_OK) ||
             qk_buf_append_str(w->cookie, value) != QK_OK))
            w->failed = true;
        return w->failed ? MHD_NO : MHD_YES;
    }
    if (strcasecmp(key, "Content-Type") == 0) {
        /* A chat body was validated as JSON and goes up as JSON, whatever the caller
         * labelled it (curl -d says form-urlencoded); the models GET keeps the caller's. */
        if (w->chat)
            return MHD_YES;
        w->has_content_type = true;
    }
    if (!value)
        value = "";
    size_t kn = strlen(key), vn = strlen(value);
    char *line = malloc(kn + vn + 3);
    if (!line) {
        w->failed = true;
        return MHD_NO;
    }
    /* "Name;" is libcurl's way to send an empty header ("Name:" would delete one). */
    memcpy(line, key, kn);
    if (vn) {
        memcpy(line + kn, ": ", 2);
        memcpy(line + kn + 2, value, vn + 1);
    } else {
        memcpy(line + kn, ";", 2);
    }
    struct curl_slist *l = curl_slist_append(w->list, line);
    free(line);
    if (!l) {
        w->failed = true;
        return MHD_NO;
    }
    w->list = l;
    return MHD_YES;
}

static bool
append_line(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = curl_slist_append(*list, line);
    if (l)
        *list = l;
    return l != NULL;
}

struct connection_join {
    struct qk_buf joined;
    bool failed;
};

static enum MHD_Result
join_connection(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct connection_join *j = cls;
    if (strcasecmp(key, "Connection") != 0 || !value)
        return MHD_YES;
    if ((qk_buf_len(&j->joined) && qk_buf_append(&j->joined, ",", 1) != QK_OK) ||
        qk_buf_append(&j->joined, value, strlen(value)) != QK_OK)
        j->failed = true;
    return MHD_YES;
}

/* The one Cookie line: `token=<caller's token>` with --token-cookie, the configured
 * cookies, the caller's own; none when all are empty. A token that is no cookie value
 * (a space, `;`, ...) is not put in a cookie: it still goes as the Bearer credential. */
static bool
append_cookie(const struct qk_proxy *px, const struct qp_request *req, const struct qk_buf *caller,
              struct curl_slist **list)
{
    size_t toklen = 0;
    const char *tok = px->cfg.token_cookie && req->authorization
                          ? qp_bearer_token(req->authorization, &toklen)
                          : NULL;
    struct qk_buf line;
    qk_buf_init(&line, 128 * 1024);
    enum qk_err rc = QK_OK;
    const char *sep = "Cookie: ";
    if (tok && qp_cookie_value_ok(tok, toklen)) {
        rc = qk_buf_appendf(&line, "%stoken=%.*s", sep, (int)toklen, tok);
        sep = "; ";
    }
    if (rc == QK_OK && px->extra_cookie) {
        rc = qk_buf_appendf(&line, "%s%s", sep, px->extra_cookie);
        sep = "; ";
    }
    if (rc == QK_OK && qk_buf_len(caller))
        rc = qk_buf_appendf(&line, "%s%.*s", sep, (int)qk_buf_len(caller), qk_buf_ptr(caller));
    if (rc == QK_OK && qk_buf_len(&line))
        rc = append_line(list, qk_buf_ptr(&line)) ? QK_OK : QK_NOMEM;
    qk_buf_free(&line);
    return rc == QK_OK;
}

/* The upstream request headers, built once and reused on every attempt (RETRY-7): the
 * caller's end-to-end headers, the configured ones (--upstream-header, which replace a
 * caller's of the same name), one Cookie line, and the proxy's own (X-Request-Id, the
 * chat body's Content-Type, an empty Expect). Nothing else: no header of a browser's. */
static bool
build_upstream_headers(const struct qk_proxy *px, struct qp_request *req)
{
    /* Every Connection line names hop-by-hop headers, as if the lines were one list
     * (RFC 9110 5.3), not only the first line that a lookup returns (AUTH-6). */
    struct connection_join j = {.failed = false};
    qk_buf_init(&j.joined, 64 * 1024); /* more than libmicrohttpd's whole header pool */
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, join_connection, &j);
    struct qk_buf caller_cookie;
    qk_buf_init(&caller_cookie, 64 * 1024);
    struct header_walk w = {NULL,
                            qk_buf_len(&j.joined) ? qk_buf_ptr(&j.joined) : NULL,
                            px,
                            &caller_cookie,
                            req->route == QP_ROUTE_CHAT,
                            false,
                            j.failed};
    if (!w.failed)
        MHD_get_connection_values(req->conn, MHD_HEADER_KIND, collect_header, &w);
    qk_buf_free(&j.joined);
    bool ok = !w.failed;
    for (const struct curl_slist *l = px->extra_headers; ok && l; l = l->next)
        ok = append_line(&w.list, l->data);
    if (ok)
        ok = append_cookie(px, req, &caller_cookie, &w.list);
    qk_buf_free(&caller_cookie);
    if (ok) {
        char line[96];
        snprintf(line, sizeof(line), "X-Request-Id: %s", req->request_id);
        ok = append_line(&w.list, line);
    }
    if (ok && req->route == QP_ROUTE_CHAT && !w.has_content_type)
        ok = append_line(&w.list, "Content-Type: application/json");
    if (ok)
        ok = append_line(&w.list, "Expect:"); /* no 100-continue round trip */
    if (!ok) {
        curl_slist_free_all(w.list);
        return false;
    }
    QP_MUTANT_REWRITE(upstream_headers, &w.list, req->conn);
    req->upstream_headers = w.list;
    return true;
}

static enum MHD_Result
dispatch(struct qk_proxy *px, struct qp_request *req)
{
    if (req->body_too_big) {
        char msg[96];
        snprintf(msg, sizeof(msg), "Request body exceeds %zu bytes.", px->cfg.max_body);
        qp_response_error(&req->resp, 413, msg, NULL, "request_too_large");
        return send_response(req);
    }
    if (req->route == QP_ROUTE_CHAT) {
        struct qp_invalid why;
        bool valid =
            qp_validate_chat(qk_buf_ptr(&req->body), qk_buf_len(&req->body), &req->stream, &why);
        /* Mutant no_validation forwards invalid bodies, yet still learns `stream` from the
         * valid ones, so that it breaks ERR-1 alone. */
        if (!valid && qp_intake_policy.validate_chat) {
            qp_response_error(&req->resp, 400, why.message, why.param, why.code);
            return send_response(req);
        }
    }
    /* A cached model list is answered here, on this thread: no upstream headers to
     * build, no hop to the loop and back. */
    if (req->route == QP_ROUTE_MODELS && qp_forward_models_hit(px->fw, req))
        return send_response(req);
    if (!build_upstream_headers(px, req)) {
        qp_response_error(&req->resp, 500, "Out of memory.", NULL, "internal_error");
        return send_response(req);
    }

    /* Suspend before posting, so the loop can never resume a connection that is not yet
     * suspended. The loop's reference keeps req alive until it has resumed. */
    req->state = QP_REQ_WAITING;
    qp_request_ref(req);
    MHD_suspend_connection(req->conn);
    if (!qp_loop_post(px->loop, req)) {
        qp_request_unref(req);
        qp_response_error(&req->resp, 503, "The proxy is shutting down.", NULL, "shutting_down");
        req->state = QP_REQ_READY;
        MHD_resume_connection(req->conn);
    }
    return MHD_YES;
}

/* qp_forward_stream_fn, on the loop thread: the loop keeps its reference. The resume
 * goes in the loop's batch (loop.h), so that streams starting together cost libmicrohttpd
 * one walk of its suspended connections, not one each. */
static void
on_stream_start(struct qp_request *req)
{
    qp_request_resume_later(req, req->proxy->loop);
}

/* qp_forward_complete_fn, on the loop thread. */
static void
on_exchange_complete(struct qp_request *req)
{
    req->state = QP_REQ_READY;
    qp_request_resume_later(req, req->proxy->loop);
    qp_request_unref(req); /* the loop's reference; the batch holds its own */
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    struct qk_proxy *px = cls;
    struct qp_request *req = *con_cls;
    if (!req || !req->begun)
        return begin(px, conn, url, method, version, con_cls);
    if (*upload_data_size) {
        if (req->state == QP_REQ_READING && !req->body_too_big &&
            qk_buf_append(&req->body, upload_data, *upload_data_size) != QK_OK)
            req->body_too_big = true; /* keep reading, answer 413 at the end */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->state == QP_REQ_READING || req->state == QP_REQ_READY)
        qp_admission_request_received(px->adm, conn_record(conn));
    switch (req->state) {
    case QP_REQ_READING:
        return dispatch(px, req);
    case QP_REQ_READY:
        return send_response(req);
    case QP_REQ_WAITING:
    case QP_REQ_SENT:
        break;
    }
    return MHD_YES;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    struct qk_proxy *px = cls;
    struct qp_request *req = *con_cls;
    if (!req)
        return;
    if (req->streaming) {
        /* Before libmicrohttpd closes the socket: out of the loop's epoll set, and if the
         * loop still relays (the caller left, or the send failed), tell it (SSE-9). */
        qp_stream_connection_done(&req->st, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    }
    /* The attempts' failures (the loop wrote them before the handover), and a started
     * stream's cut (read under the stream's lock). */
    struct qp_log_failure cut;
    bool was_cut = req->streaming && qp_stream_cut(&req->st, &cut);
    struct qp_log_entry e = {
        .request_id = req->request_id,
        .method = req->method,
        .path = req->path,
        .status = req->state == QP_REQ_SENT ? req->resp.status : 0,
        .attempts = req->attempts,
        .cache = cache_mark_name(req->cache),
        .latency_ms = qk_now_ms() - req->started_ms,
        .token = req->fingerprint,
        .failures = req->failures,
        .n_failures = req->n_failures,
        .cut = was_cut ? &cut : NULL,
    };
    qp_log_request((struct qp_log){.format = px->cfg.log_format, .level = px->cfg.log_level}, &e);
    count_request(px, req, e.status);
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        qp_admission_awaiting_request(px->adm, conn_record(conn));
    *con_cls = NULL;
    qp_request_unref(req);
}

/* ---- start / stop ----------------------------------------------------------------- */

static void
proxy_free(struct qk_proxy *px)
{
    if (!px)
        return;
    qp_loop_stop(px->loop);
    if (px->daemon)
        MHD_stop_daemon(px->daemon);
    qp_admission_stop(px->adm); /* after the daemon: every connection is closed */
    if (px->quiesced_fd != MHD_INVALID_SOCKET)
        close(px->quiesced_fd); /* only after MHD_stop_daemon, as libmicrohttpd requires */
    qp_loop_free(px->loop);
    qp_forwarder_free(px->fw);
    qp_metrics_free(px->metrics);
    free(px->listen_host);
    free(px->upstream);
    free(px->cors_origins);
    curl_slist_free_all(px->extra_headers);
    free(px->extra_cookie);
    free(px);
}

/* Keeps the --upstream-header lines (checked): a Cookie line's value joins extra_cookie,
 * every other line goes to extra_headers. @return false when out of memory. */
static bool
copy_upstream_headers(struct qk_proxy *px, const struct qk_proxy_config *cfg)
{
    struct qk_buf cookie;
    qk_buf_init(&cookie, 64 * 1024);
    bool ok = true;
    for (size_t i = 0; ok && i < cfg->n_upstream_headers && i < QK_PROXY_MAX_UPSTREAM_HEADERS;
         i++) {
        const char *p = cfg->upstream_headers[i];
        while (ok && p) {
            const char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p);
            char *line = strndup(p, n);
            ok = line != NULL;
            if (ok && qp_header_line_is(line, n, "Cookie")) {
                const char *v = line + 7;
                while (*v == ' ' || *v == '\t')
                    v++;
                if (*v)
                    ok = (qk_buf_len(&cookie) == 0 || qk_buf_append(&cookie, "; ", 2) == QK_OK) &&
                         qk_buf_append_str(&cookie, v) == QK_OK;
            } else if (ok) {
                ok = append_line(&px->extra_headers, line);
            }
            free(line);
            p = nl ? nl + 1 : NULL;
        }
    }
    if (ok && qk_buf_len(&cookie)) {
        size_t len = 0;
        px->extra_cookie = qk_buf_take(&cookie, &len);
        ok = px->extra_cookie != NULL;
    }
    qk_buf_free(&cookie);
    return ok;
}

/* The default connection limit: what the process's descriptor limit holds now. */
static unsigned
connections_for_fd_limit(unsigned threads)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1000;
    unsigned long long limit = rl.rlim_cur == RLIM_INFINITY ? ULLONG_MAX : rl.rlim_cur;
    return qk_proxy_connections_for_descriptors(limit, threads);
}

enum qk_err
qk_proxy_start(const struct qk_proxy_config *cfg, struct qk_proxy **out, char *err, size_t errlen)
{
    enum qk_err rc = QK_START;
    struct qk_proxy *px = NULL;
    struct addrinfo *ai = NULL;
    char dummy[8];
    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    *out = NULL;

    struct qp_retry_policy policy = {cfg->max_retries, cfg->retry_base_ms, cfg->retry_after_cap_ms,
                                     NULL};
    if (!QP_MUTANT_APPLY(cfg->mutant, &policy)) {
        snprintf(err, errlen, "unknown mutant '%s' (or mutants not built in)", cfg->mutant);
        return QK_INVALID;
    }
    const struct qp_dialect *dialect =
        qp_dialect_find(cfg->upstream_dialect ? cfg->upstream_dialect : QP_DIALECT_DEFAULT);
    enum qp_reasoning_mode reasoning = QP_REASONING_SEPARATE;
    if (!dialect) {
        snprintf(err, errlen, "unknown upstream dialect '%.32s' (%s)", cfg->upstream_dialect,
                 qp_dialect_names());
        return QK_INVALID;
    }
    if (cfg->reasoning && !qp_reasoning_mode_parse(cfg->reasoning, &reasoning)) {
        snprintf(err, errlen, "unknown reasoning mode '%.32s' (separate|inline|drop)",
                 cfg->reasoning);
        return QK_INVALID;
    }
    for (size_t i = 0; i < cfg->n_upstream_headers && i < QK_PROXY_MAX_UPSTREAM_HEADERS; i++) {
        const char *why = qp_upstream_headers_check(cfg->upstream_headers[i]);
        if (why) {
            const char *line = cfg->upstream_headers[i]; /* its name: the value may be secret */
            snprintf(err, errlen, "invalid upstream header '%.*s': %s", (int)strcspn(line, ":"),
                     line, why);
            return QK_INVALID;
        }
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "curl_global_init failed");
        return QK_START;
    }
    qp_key_seed_random();
    pthread_once(&tchar_once, tchar_table_init);

    px = calloc(1, sizeof(*px));
    if (!px)
        goto nomem;
    px->cfg = *cfg;
    if (px->cfg.max_connections == 0)
        px->cfg.max_connections = connections_for_fd_limit(cfg->threads);
    px->quiesced_fd = MHD_INVALID_SOCKET;
    px->listen_host = strdup(cfg->listen_host);
    px->upstream = strdup(cfg->upstream ? cfg->upstream : dialect->default_upstream);
    px->cors_origins = strdup(cfg->cors_origins ? cfg->cors_origins : "");
    px->dialect = dialect;
    px->metrics = qp_metrics_new();
    if (!px->listen_host || !px->upstream || !px->cors_origins || !px->metrics ||
        !copy_upstream_headers(px, cfg))
        goto nomem;
    px->cfg.listen_host = px->listen_host;
    px->cfg.upstream = px->upstream;
    px->cfg.cors_origins = px->cors_origins;
    px->cfg.mutant = NULL;

    struct qp_forward_config fc = {
        .upstream = px->upstream,
        .dialect = px->dialect,
        .reasoning = reasoning,
        .policy = policy,
        .cache_ttl_ms = cfg->cache_ttl_ms,
        .cache_max_entries = cfg->cache_max_entries,
        .cache_max_bytes = cfg->cache_max_bytes,
        .stale_grace_ms = cfg->stale_grace_ms,
        .upstream_timeout_ms = cfg->upstream_timeout_ms,
        .deadline_ms = cfg->deadline_ms,
        .stream_idle_timeout_ms = cfg->stream_idle_timeout_ms,
        .keepalive_interval_ms = cfg->keepalive_interval_ms,
        .log = {.format = cfg->log_format, .level = cfg->log_level},
        .metrics = px->metrics,
        .complete = on_exchange_complete,
        .stream_start = on_stream_start,
    };
    if (qp_forwarder_new(&fc, &px->fw) != QK_OK)
        goto nomem;
    /* Each connection has at most one upstream transfer at a time; the idle rest wait for
     * the next ones (libcurl closes them after two idle minutes). */
    unsigned max_connects = qk_proxy_accept_limit(px->cfg.max_connections);
    rc = qp_loop_start(qp_forward_on_post, qp_forward_on_stop, px->fw, max_connects, &px->loop, err,
                       errlen);
    if (rc != QK_OK)
        goto out;
    qp_forwarder_set_loop(px->fw, px->loop);

    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)cfg->port);
    int gai = getaddrinfo(cfg->listen_host, port, &hints, &ai);
    if (gai != 0 || !ai) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", cfg->listen_host,
                 gai_strerror(gai));
        rc = QK_START;
        goto out;
    }
    struct qp_admission_config ac = {
        .max_connections = px->cfg.max_connections,
        .receive_timeout_ms = cfg->receive_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
    };
    rc = qp_admission_start(&ac, &px->adm);
    if (rc != QK_OK) {
        snprintf(err, errlen, "cannot start the connection watchdog");
        goto out;
    }
    /* libmicrohttpd's own limit sits above ours, so that the connections over ours are
     * still accepted and answered 503 at once rather than left in the kernel backlog. */
    unsigned hard_limit = qk_proxy_accept_limit(px->cfg.max_connections);
    unsigned idle_s = (unsigned)((cfg->idle_timeout_ms + 999) / 1000);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    px->daemon = MHD_start_daemon(
        flags, cfg->port, NULL, NULL, on_request, px, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(cfg->threads ? cfg->threads : 1),
        MHD_OPTION_CONNECTION_LIMIT, hard_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        cfg->max_connections_per_client, MHD_OPTION_CONNECTION_TIMEOUT, idle_s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, px, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        px, MHD_OPTION_URI_LOG_CALLBACK, on_uri, px, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)QK_LIMIT_CONNECTION_MEMORY, MHD_OPTION_END);
    if (!px->daemon) {
        snprintf(err, errlen, "cannot listen on %s port %u (in use, or not allowed?)",
                 cfg->listen_host, (unsigned)cfg->port);
        rc = QK_START;
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(px->daemon, MHD_DAEMON_INFO_BIND_PORT);
    px->port = info ? info->port : cfg->port;
    rc = QK_OK;
    goto out;
nomem:
    snprintf(err, errlen, "out of memory");
    rc = QK_NOMEM;
out:
    if (ai)
        freeaddrinfo(ai);
    if (rc != QK_OK) {
        proxy_free(px);
        px = NULL;
    }
    *out = px;
    return rc;
}

uint16_t
qk_proxy_port(const struct qk_proxy *proxy)
{
    return proxy->port;
}

/* How long a stop lets the final bytes (the shutdown error events) reach the callers. */
#define STOP_FLUSH_MS 2000

void
qk_proxy_stop(struct qk_proxy *proxy)
{
    if (!proxy)
        return;
    qk_proxy_drain(proxy);
    /* The loop answers and resumes every waiting request and ends every stream with an
     * error event, since libmicrohttpd must not be stopped with suspended connections. */
    qp_loop_stop(proxy->loop);
    int64_t until = qk_now_ms() + STOP_FLUSH_MS;
    while (qp_admission_open_count(proxy->adm) > 0 && qk_now_ms() < until) {
        struct timespec tick = {0, 10 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    proxy_free(proxy);
}

void
qk_proxy_drain(struct qk_proxy *proxy)
{
    if (atomic_exchange(&proxy->draining, true))
        return;
    /* Shut down, the listening socket refuses new connections at once, and those already
     * in its backlog are reset rather than left waiting. */
    proxy->quiesced_fd = MHD_quiesce_daemon(proxy->daemon);
    if (proxy->quiesced_fd != MHD_INVALID_SOCKET)
        shutdown(proxy->quiesced_fd, SHUT_RDWR);
    qp_admission_drain(proxy->adm);
}

void
qk_proxy_set_unready(struct qk_proxy *proxy)
{
    atomic_store(&proxy->unready, true);
}

unsigned
qk_proxy_open_connections(struct qk_proxy *proxy)
{
    return qp_admission_open_count(proxy->adm);
}
