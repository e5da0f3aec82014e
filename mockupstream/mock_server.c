/*
 * qwen-mock's HTTP server.
 *
 * Threading: libmicrohttpd in epoll mode with a fixed pool of threads
 * (MHD_USE_EPOLL_INTERNAL_THREAD + MHD_OPTION_THREAD_POOL_SIZE), plus the timer
 * thread of mock_timer.c. A delay or a paced stream never parks a thread: the
 * connection is suspended and the timer resumes it when the next write is due.
 *
 * Ownership: per-request state (struct mock_req) is allocated on the access
 * handler's first call and freed only in on_completed(); every suspend is paired
 * with exactly one timer, so a suspended request always has a pending timer and
 * can never complete (and be freed) while the timer holds it.
 */
#include "mock_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "mock_auth.h"

/* The upstream dialects served, in the order their routes are looked up. */
static const struct mock_route_table *const dialects[] = {&mock_api_v1, &mock_api_v2};

/* Most v2 chats remembered at once (the oldest are forgotten first). */
#define MOCK_CHATS_MAX 100000

void
qk_mock_config_init(struct qk_mock_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->host = "127.0.0.1";
    cfg->threads = 2;
    cfg->max_connections = 20000;
    cfg->max_body = QK_LIMIT_BODY_DEFAULT;
    cfg->journal_per_token = 256;
    cfg->journal_total = 8192;
    cfg->missing_auth_status = 401;
    cfg->send_done = true;
    cfg->send_finish_reason = true;
    cfg->send_usage = true;
    cfg->send_envelope = true;
    cfg->idle_check_ms = 200;
    cfg->v2_messages = QK_MOCK_V2_FIRST;
}

uint16_t
qk_mock_port(const struct qk_mock *mock)
{
    return mock->port;
}

const struct mock_route_row *
mock_route_find(const struct mock_route_table *table, const char *path, const char *method,
                char *allow, size_t allow_len)
{
    const struct mock_route_row *found = NULL;
    size_t used = 0;
    allow[0] = '\0';
    for (size_t i = 0; i < table->count; i++) {
        const struct mock_route_row *row = &table->rows[i];
        if (strcmp(row->path, path) != 0)
            continue;
        if (!found && strcmp(row->method, method) == 0)
            found = row;
        int n = snprintf(allow + used, allow_len - used, "%s%s", used ? ", " : "", row->method);
        if (n > 0 && (size_t)n < allow_len - used)
            used += (size_t)n;
    }
    return found;
}

/* The API route of @p r's path and method, in the first dialect that knows the path. */
static void
find_api_route(struct mock_req *r)
{
    for (size_t i = 0; i < sizeof dialects / sizeof dialects[0] && !r->allow[0]; i++) {
        r->row = mock_route_find(dialects[i], r->path, r->method, r->allow, sizeof r->allow);
        r->dialect = dialects[i]->dialect;
    }
}

/* A refused credential in the dialect's words: v1's {"detail"}, v2's business envelope. */
static enum MHD_Result
send_unauthorized(struct mock_req *r, unsigned status, const char *details)
{
    if (r->dialect != MOCK_DIALECT_V2)
        return mock_send_detail(r, status, details);
    char *s = mock_v2_error_json("Unauthorized", details);
    enum MHD_Result ret = s ? mock_send_json(r, status, s) : MHD_NO;
    free(s);
    return ret;
}

static enum MHD_Result
send_revoked(struct mock_req *r)
{
    return send_unauthorized(r, 401,
                             "Your session has expired or the token is invalid. "
                             "Please sign in again.");
}

/* What every upstream route shares, before its handler: the route exists and takes the
 * method, the body fits, the credential is a live token (Bearer, or the `token` cookie
 * when there is no Authorization); then the step it takes
 * (waiting out its delay_ms, suspended). */
static enum MHD_Result
handle_api(struct mock_req *r)
{
    struct qk_mock *m = r->mock;
    if (r->phase == MOCK_PHASE_DELAYED) {
        if (atomic_load(&m->stopping) || mock_peer_gone(r)) {
            r->client_gone = !atomic_load(&m->stopping);
            r->deliberate_close = !r->client_gone;
            return MHD_NO;
        }
        return r->revoked ? send_revoked(r) : r->row->handler(r);
    }
    if (!r->row && !r->allow[0])
        return mock_send_detail(r, 404, "Not Found");
    if (!r->row)
        return mock_send_detail(r, 405, "Method Not Allowed");
    if (r->body_too_big)
        return mock_send_detail(r, 413, "Request body too large");

    const char *auth =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *cookie = MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, "token");
    const char *tok = NULL;
    size_t tlen = 0;
    switch (mock_auth_credential(auth, cookie, &tok, &tlen)) {
    case MOCK_AUTH_MISSING:
        return send_unauthorized(r, m->cfg.missing_auth_status, "Not authenticated");
    case MOCK_AUTH_BAD:
        return send_unauthorized(r, 401, "401 Unauthorized");
    case MOCK_AUTH_OK:
        break;
    }
    int revoked_delay = 0;
    if (mock_state_is_revoked(m->state, r->key, &revoked_delay)) {
        if (revoked_delay <= 0)
            return send_revoked(r);
        /* A slow refusal: the requests a proxy sends at once are seen in flight together. */
        r->revoked = true;
        r->phase = MOCK_PHASE_DELAYED;
        mock_suspend_until(r, qk_now_ms() + revoked_delay);
        return MHD_YES;
    }

    r->step = mock_state_take_step(m->state, r->key, r->row->route);
    if (r->step && r->step->delay_ms > 0) {
        r->phase = MOCK_PHASE_DELAYED;
        mock_suspend_until(r, qk_now_ms() + r->step->delay_ms);
        return MHD_YES;
    }
    return r->row->handler(r);
}

static enum MHD_Result
handle_control(struct mock_req *r)
{
    char allow[32];
    const struct mock_route_row *row = mock_route_find(
        &mock_control_api, r->path + strlen("/__mock"), r->method, allow, sizeof allow);
    if (row)
        return row->handler(r);
    if (allow[0])
        return mock_send_json(r, 405, "{\"error\":\"method not allowed\",\"field\":\"method\"}");
    return mock_send_json(r, 404, "{\"error\":\"unknown control path\",\"field\":\"path\"}");
}

/* ---------- MHD callbacks ---------- */

static enum MHD_Result
collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct mock_req *r = cls;
    cJSON *h = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "name", key);
    cJSON_AddStringToObject(h, "value", value ? value : "");
    cJSON_AddItemToArray(r->headers, h);
    /* Every Authorization, whatever its case, however many: what the searches look at. */
    if (strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0 &&
        qk_buf_append(&r->auth, value ? value : "", (value ? strlen(value) : 0) + 1) != QK_OK)
        return MHD_NO; /* over the cap: keep the values that fit */
    return MHD_YES;
}

static enum MHD_Result
collect_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct qk_buf *q = cls;
    enum qk_err rc = qk_buf_appendf(q, "%s%s%s%s", qk_buf_len(q) ? "&" : "", key, value ? "=" : "",
                                    value ? value : "");
    return rc == QK_OK ? MHD_YES : MHD_NO; /* over the cap: keep what fits */
}

static struct mock_req *
req_new(struct qk_mock *m, struct MHD_Connection *conn, const char *url, const char *method)
{
    struct mock_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->mock = m;
    r->conn = conn;
    r->seq = atomic_fetch_add(&m->seq, 1) + 1;
    r->received_ms = qk_now_ms();
    snprintf(r->method, sizeof r->method, "%s", method);
    r->path = strdup(url);
    r->headers = cJSON_CreateArray();
    qk_buf_init(&r->auth, (size_t)64 * 1024); /* more than MHD keeps of all headers */
    qk_buf_init(&r->query, QK_LIMIT_HEADER_VALUE);
    qk_buf_init(&r->body, m->cfg.max_body);
    qk_buf_init(&r->event_ms, SIZE_MAX / 2);
    r->control = strncmp(url, "/__mock/", 8) == 0;
    r->key = mock_auth_key(
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, "token"));
    if (!r->path || !r->headers || !r->key) {
        free(r->path);
        free(r->key);
        cJSON_Delete(r->headers);
        free(r);
        return NULL;
    }
    if (!r->control)
        find_api_route(r);
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, r);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_query, &r->query);
    /* In flight from now until on_completed() journals it: a caller may see the answer
     * before that, and the journal must not look settled meanwhile. */
    r->flight = (struct mock_flight){.key = r->key,
                                     .received_ms = r->received_ms,
                                     .auth = qk_buf_len(&r->auth) ? qk_buf_ptr(&r->auth) : NULL,
                                     .auth_len = qk_buf_len(&r->auth)};
    if (!r->control)
        mock_state_request_begin(m->state, &r->flight);
    return r;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct qk_mock *m = cls;
    struct mock_req *r = *con_cls;
    if (!r) {
        r = req_new(m, conn, url, method);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > m->cfg.max_body)
            r->body_too_big = true;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!r->body_too_big && qk_buf_append(&r->body, upload_data, *upload_data_size) != QK_OK)
            r->body_too_big = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->phase == MOCK_PHASE_ANSWERED)
        return MHD_YES;
    if (r->control) {
        if (r->body_too_big)
            return mock_send_control_error(r, "body", "request body too large");
        return handle_control(r);
    }
    return handle_api(r);
}

static char *
journal_entry(struct mock_req *r, int64_t finished)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "seq", (double)r->seq);
    cJSON_AddNumberToObject(o, "received_ms", (double)r->received_ms);
    cJSON_AddNumberToObject(o, "finished_ms", (double)finished);
    cJSON_AddStringToObject(o, "method", r->method);
    cJSON_AddStringToObject(o, "path", r->path);
    cJSON_AddStringToObject(o, "query", qk_buf_ptr(&r->query));
    char fp[QK_LIMIT_FINGERPRINT];
    qk_token_fingerprint(r->key, strlen(r->key), fp);
    cJSON_AddStringToObject(o, "token", fp);
    cJSON_AddItemReferenceToObject(o, "headers", r->headers);
    cJSON *auth = cJSON_AddArrayToObject(o, "authorization");
    for (size_t off = 0; auth && off < qk_buf_len(&r->auth);
         off += strlen(qk_buf_ptr(&r->auth) + off) + 1)
        cJSON_AddItemToArray(auth, cJSON_CreateString(qk_buf_ptr(&r->auth) + off));
    cJSON_AddStringToObject(o, "body", qk_buf_ptr(&r->body));
    if (r->answer)
        cJSON_AddItemReferenceToObject(o, "answer", r->answer);
    if (r->step)
        cJSON_AddRawToObject(o, "step", r->step->json);
    else
        cJSON_AddNullToObject(o, "step");
    cJSON_AddNumberToObject(o, "status", r->status);
    cJSON_AddNumberToObject(o, "bytes_sent", (double)r->bytes_sent);
    cJSON_AddNumberToObject(o, "events_sent", (double)r->events_sent);
    char *raw = malloc(qk_buf_len(&r->event_ms) + 3);
    if (raw) {
        sprintf(raw, "[%s]", qk_buf_ptr(&r->event_ms));
        cJSON_AddRawToObject(o, "event_ms", raw);
        free(raw);
    }
    cJSON_AddBoolToObject(o, "client_gone", r->client_gone);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    /* cJSON_free and free are the same allocator unless hooks are installed. */
    return s;
}

static void
log_request(struct mock_req *r, int64_t finished)
{
    char fp[QK_LIMIT_FINGERPRINT], tail[96];
    qk_token_fingerprint(r->key, strlen(r->key), fp);
    snprintf(tail, sizeof tail, "%u %lldms %zuB%s", r->status,
             (long long)(finished - r->received_ms), r->bytes_sent,
             r->client_gone ? " client-gone" : "");
    mock_log_line("%s %s %s step=%s -> %s", r->method, r->path, fp, r->step ? r->step->json : "-",
                  tail);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct qk_mock *m = cls;
    struct mock_req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    int64_t finished = qk_now_ms();
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !r->deliberate_close &&
        toe != MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN)
        r->client_gone = true;
    if (r->streaming)
        atomic_fetch_sub(&m->streams, 1);
    if (r->chat_begun) /* the chat takes a new completion from now on */
        mock_chats_end(m->chats, r->chat_id);
    if (!r->control)
        mock_state_request_end(m->state, &r->flight, r->seq, journal_entry(r, finished));
    if (m->cfg.log_requests)
        log_request(r, finished);
    mock_step_free(r->step);
    cJSON_Delete(r->answer);
    mock_plan_free(&r->plan);
    cJSON_Delete(r->headers);
    qk_buf_free(&r->auth);
    qk_buf_free(&r->query);
    qk_buf_free(&r->body);
    qk_buf_free(&r->event_ms);
    free(r->path);
    free(r->key);
    free(r);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
              enum MHD_ConnectionNotificationCode toe)
{
    (void)conn;
    (void)socket_context;
    struct qk_mock *m = cls;
    atomic_fetch_add(&m->connections, toe == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
}

/* libmicrohttpd's own messages, minus the one every deliberate `drop` causes. */
__attribute__((format(printf, 2, 0))) static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (strstr(msg, "Application reported internal error") ||
        strstr(msg, "application error generating response"))
        return;
    /* Its messages may quote what a client sent; its own line end is ours to add. */
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    mock_log_line("libmicrohttpd: %s", msg);
}

/* ---------- lifecycle ---------- */

/* The listening address of @p host:@p port into @p ss; adds MHD_USE_IPv6 to @p flags
 * for an IPv6 one. @return false when @p host is not a numeric address. */
static bool
bind_address(const char *host, uint16_t port, struct sockaddr_storage *ss, unsigned *flags)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        return true;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *flags |= MHD_USE_IPv6;
        return true;
    }
    return false;
}

enum qk_err
qk_mock_start(const struct qk_mock_config *cfg, struct qk_mock **out, char *err, size_t errlen)
{
    enum qk_err rc = QK_OK;
    struct qk_mock *m = NULL;
    char dummy[8];
    if (!err) {
        err = dummy;
        errlen = sizeof dummy;
    }
    m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        rc = QK_NOMEM;
        goto out;
    }
    m->cfg = *cfg;
    if (!m->cfg.host)
        m->cfg.host = "127.0.0.1";
    if (m->cfg.idle_check_ms == 0)
        m->cfg.idle_check_ms = 200;
    mock_stream_opts_init(&m->stream_defaults);
    m->stream_defaults.done = cfg->send_done;
    m->stream_defaults.finish_reason = cfg->send_finish_reason;
    m->stream_defaults.usage = cfg->send_usage;
    m->stream_defaults.envelope = cfg->send_envelope;

    struct sockaddr_storage ss;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (!bind_address(m->cfg.host, cfg->port, &ss, &flags)) {
        snprintf(err, errlen, "--host: '%s' is not an IPv4 or IPv6 address", m->cfg.host);
        rc = QK_INVALID;
        goto out;
    }
    m->state = mock_state_new(cfg->journal_per_token, cfg->journal_total);
    m->chats = mock_chats_new(MOCK_CHATS_MAX);
    if (!m->state || !m->chats || mock_timer_start(&m->timer) != QK_OK) {
        snprintf(err, errlen, "cannot allocate mock state");
        rc = QK_NOMEM;
        goto out;
    }
    unsigned threads = cfg->threads ? cfg->threads : 1;
    m->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, m, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, m,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, m, MHD_OPTION_CONNECTION_LIMIT,
        cfg->max_connections ? cfg->max_connections : 20000, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)300, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32 * 1024,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096,
        threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, threads, MHD_OPTION_END);
    if (!m->daemon) {
        snprintf(err, errlen, "cannot listen on %s:%u (%s)", m->cfg.host, (unsigned)cfg->port,
                 strerror(errno));
        rc = QK_START;
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
    m->port = di ? di->port : cfg->port;
out:
    if (rc != QK_OK && m) {
        mock_timer_stop(m->timer);
        mock_state_free(m->state);
        mock_chats_free(m->chats);
        free(m);
        m = NULL;
    }
    if (rc == QK_OK)
        *out = m;
    return rc;
}

enum qk_err
qk_mock_load_scenarios(struct qk_mock *m, const char *json, size_t len, char *err, size_t errlen)
{
    char field[256] = "", msg[160] = "";
    struct mock_scenario *list = NULL;
    enum qk_err rc = mock_scenario_parse(json, len, &m->stream_defaults, &list, field, sizeof field,
                                         msg, sizeof msg);
    if (rc == QK_INVALID && err)
        snprintf(err, errlen, "%s: %s", field[0] ? field : "(root)", msg);
    if (rc != QK_OK)
        return rc;
    mock_state_queue(m->state, list);
    mock_scenario_free(list);
    return QK_OK;
}

void
qk_mock_stop(struct qk_mock *m)
{
    if (!m)
        return;
    /* MHD must not be stopped with suspended connections: wake them all; each
     * sees `stopping` and ends instead of suspending again. */
    atomic_store(&m->stopping, true);
    for (int i = 0; i < 2000 && atomic_load(&m->suspended) > 0; i++) {
        mock_timer_fire_all(m->timer);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(m->daemon);
    mock_timer_stop(m->timer);
    mock_state_free(m->state);
    mock_chats_free(m->chats);
    free(m);
}
