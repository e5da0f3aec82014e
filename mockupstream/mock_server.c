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
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mock_check.h"
#include "mock_fixtures.h"
#include "mock_scenario.h"
#include "mock_state.h"
#include "mock_stream.h"
#include "mock_timer.h"
#include "qwenkit/buf.h"
#include "qwenkit/mock.h"

struct qk_mock {
    struct qk_mock_config cfg;
    struct MHD_Daemon *daemon;
    struct mock_timer *timer;
    struct mock_state *state;
    struct mock_stream_opts stream_defaults;
    uint16_t port;
    atomic_int connections;
    atomic_int streams;
    atomic_int suspended;
    atomic_bool stopping;
    atomic_ulong seq;
};

enum req_phase { PHASE_NEW = 0, PHASE_DELAYED, PHASE_ANSWERED };

struct mock_req {
    struct qk_mock *mock;
    struct MHD_Connection *conn;
    unsigned long seq;
    int64_t received_ms;
    char method[16];
    char *path;
    bool control;          /* /__mock/... : not journaled */
    enum mock_route route; /* MOCK_ROUTE_COUNT when no API route */
    char *key;             /* journal key: bearer token, raw Authorization, or "" */
    cJSON *headers;        /* [{name,value}] as received */
    struct qk_buf auth;    /* every Authorization value, each ended by a NUL */
    struct mock_flight flight; /* borrows key and auth while in flight */
    struct qk_buf query;
    struct qk_buf body;
    bool body_too_big;
    struct mock_step *step;
    enum req_phase phase;
    unsigned status;
    size_t bytes_sent;
    bool client_gone;
    bool deliberate_close;
    /* streaming */
    struct mock_plan plan;
    bool streaming;
    size_t write_idx, write_off;
    int64_t next_due_ms;
    int64_t stall_until_ms;
    struct qk_buf event_ms; /* JSON array body: "12,15,..." */
    size_t events_sent;
};

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
}

uint16_t
qk_mock_port(const struct qk_mock *mock)
{
    return mock->port;
}

/* ---------- suspend / resume ---------- */

static void
resume_cb(void *arg)
{
    struct mock_req *r = arg;
    atomic_fetch_sub(&r->mock->suspended, 1);
    MHD_resume_connection(r->conn);
}

/* Suspends the connection until @p due_ms; the timer resumes it. */
static void
suspend_until(struct mock_req *r, int64_t due_ms)
{
    atomic_fetch_add(&r->mock->suspended, 1);
    MHD_suspend_connection(r->conn);
    if (mock_timer_at(r->mock->timer, due_ms, resume_cb, r) != QK_OK)
        resume_cb(r); /* no memory for a timer: retry at once rather than hang */
}

/* True when the client has closed its side (a FIN is waiting to be read). */
static bool
peer_gone(struct mock_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return false;
    char c;
    ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* ---------- the log ---------- */

/* Writes "qwen-mock: " and @p fmt to stderr in one write, each %s an argument escaped by
 * mock_log_escape(): what a request sends cannot start a line of its own. @p fmt holds
 * only %s conversions, one per argument. */
static void
log_line(const char *fmt, ...)
{
    struct qk_buf line;
    qk_buf_init(&line, (size_t)16 * 1024);
    va_list ap;
    va_start(ap, fmt);
    enum qk_err rc = qk_buf_append_str(&line, "qwen-mock: ");
    for (const char *p = fmt; *p && rc == QK_OK; p++) {
        if (p[0] == '%' && p[1] == 's') {
            mock_log_escape(&line, va_arg(ap, const char *));
            p++;
        } else {
            rc = qk_buf_append(&line, p, 1);
        }
    }
    va_end(ap);
    fprintf(stderr, "%s\n", qk_buf_ptr(&line));
    qk_buf_free(&line);
}

/* ---------- responses ---------- */

/* The step's extra headers, added to any response it shapes. */
static void
add_step_headers(struct mock_req *r, struct MHD_Response *resp)
{
    const cJSON *h;
    if (!r->step || !r->step->headers)
        return;
    cJSON_ArrayForEach(h, r->step->headers)
    {
        if (MHD_add_response_header(resp, h->string, h->valuestring) != MHD_YES && r->mock->cfg.log_requests)
            log_line("header %s refused by the HTTP library", h->string);
    }
}

static enum MHD_Result
send_buffer(struct mock_req *r, unsigned status, const char *ctype, const char *body,
            size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (status == 405) {
        const char *allow = r->route == MOCK_ROUTE_MODELS ? "GET"
                            : r->route == MOCK_ROUTE_CHAT ? "POST"
                                                          : NULL;
        if (allow)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    }
    if (r->step && r->step->retry_after >= 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", r->step->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (r->step && r->step->html == MOCK_HTML_WAF) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SERVER, "Tengine");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SET_COOKIE,
                                "acw_tc=0b00000000000000000000;path=/;HttpOnly;Max-Age=1800");
    }
    add_step_headers(r, resp);
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->bytes_sent = len;
    r->phase = PHASE_ANSWERED;
    return ret;
}

static enum MHD_Result
send_json(struct mock_req *r, unsigned status, const char *json)
{
    return send_buffer(r, status, "application/json", json, strlen(json));
}

/* Upstream-style error: {"detail": "..."} */
static enum MHD_Result
send_detail(struct mock_req *r, unsigned status, const char *detail)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "detail", detail);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        return MHD_NO;
    enum MHD_Result ret = send_json(r, status, s);
    cJSON_free(s);
    return ret;
}

/* Control-API error: {"error": "...", "field": "..."} */
static enum MHD_Result
send_control_error(struct mock_req *r, const char *field, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    cJSON_AddStringToObject(o, "field", field);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        return MHD_NO;
    enum MHD_Result ret = send_json(r, 400, s);
    cJSON_free(s);
    return ret;
}

static ssize_t
stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos; /* the plan tracks its own position */
    struct mock_req *r = cls;
    struct qk_mock *m = r->mock;
    if (atomic_load(&m->stopping)) {
        r->deliberate_close = true;
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (peer_gone(r)) {
        r->client_gone = true;
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    int64_t now = qk_now_ms();
    if (r->write_idx >= r->plan.count) {
        if (r->plan.end == MOCK_END_CLOSE) {
            r->deliberate_close = true;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (r->plan.end == MOCK_END_NORMAL)
            return MHD_CONTENT_READER_END_OF_STREAM;
        /* Stall: hold the connection, looking for the client leaving. */
        if (r->stall_until_ms == 0)
            r->stall_until_ms = now + r->plan.stall_ms;
        if (now >= r->stall_until_ms) {
            r->deliberate_close = true;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        int64_t due = now + (int64_t)m->cfg.idle_check_ms;
        suspend_until(r, due < r->stall_until_ms ? due : r->stall_until_ms);
        return 0;
    }
    if (r->write_off == 0 && now < r->next_due_ms) {
        /* Wake at the due time, or earlier to notice a client that left. */
        int64_t check = now + (int64_t)m->cfg.idle_check_ms;
        suspend_until(r, check < r->next_due_ms ? check : r->next_due_ms);
        return 0;
    }
    const struct mock_write *w = &r->plan.writes[r->write_idx];
    size_t n = w->len - r->write_off;
    if (n > max)
        n = max;
    memcpy(buf, w->data + r->write_off, n);
    r->write_off += n;
    r->bytes_sent += n;
    if (r->write_off == w->len) {
        for (int e = 0; e < w->events; e++) {
            if (qk_buf_appendf(&r->event_ms, "%s%lld", r->events_sent ? "," : "",
                               (long long)now) != QK_OK)
                break;
            r->events_sent++;
        }
        r->write_idx++;
        r->write_off = 0;
        if (r->write_idx < r->plan.count)
            r->next_due_ms = now + r->plan.writes[r->write_idx].delay_ms;
    }
    return (ssize_t)n;
}

static enum MHD_Result
send_plan(struct mock_req *r)
{
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, r, NULL);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    add_step_headers(r, resp);
    r->streaming = true;
    r->status = 200;
    r->phase = PHASE_ANSWERED;
    atomic_fetch_add(&r->mock->streams, 1);
    enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---------- the upstream API ---------- */

/* Text of a message's content: a string, or the text items of an array. */
static void
content_text(const cJSON *content, struct qk_buf *out)
{
    if (cJSON_IsString(content)) {
        if (qk_buf_append_str(out, content->valuestring) != QK_OK)
            qk_buf_reset(out); /* over the cap: answer as for an empty message */
        return;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, content)
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "text");
        if (cJSON_IsString(t) && qk_buf_append_str(out, t->valuestring) != QK_OK)
            return;
    }
}

/* max_tokens is a positive integer; one beyond any integer type is no limit at all. */
static bool
max_tokens_valid(const cJSON *max_tokens)
{
    long long v = 0;
    enum mock_int_check c = mock_json_int_in_range(max_tokens, 1, INT_MAX, &v);
    return c == MOCK_INT_OK || c == MOCK_INT_ABOVE;
}

/* Validates a completion body the way the upstream did; on error writes the
 * detail message into @p detail and returns false. */
static bool
validate_chat(const cJSON *root, char *detail, size_t len)
{
    if (!cJSON_IsObject(root)) {
        snprintf(detail, len, "Invalid JSON body");
        return false;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(root, "stream");
    const cJSON *incr = cJSON_GetObjectItemCaseSensitive(root, "incremental_output");
    const cJSON *max_tokens = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
    if (!model)
        snprintf(detail, len, "Field required: model");
    else if (!cJSON_IsString(model))
        snprintf(detail, len, "model: must be a string");
    else if (!mock_model_exists(model->valuestring))
        snprintf(detail, len, "Model not found");
    else if (!messages)
        snprintf(detail, len, "Field required: messages");
    else if (!cJSON_IsArray(messages))
        snprintf(detail, len, "messages: must be an array");
    else if (cJSON_GetArraySize(messages) == 0)
        snprintf(detail, len, "messages: must not be empty");
    else if (stream && !cJSON_IsBool(stream))
        snprintf(detail, len, "stream: must be a boolean");
    else if (incr && !cJSON_IsBool(incr))
        snprintf(detail, len, "incremental_output: must be a boolean");
    else if (max_tokens && !max_tokens_valid(max_tokens))
        snprintf(detail, len, "max_tokens: must be a positive integer");
    else {
        int i = 0;
        const cJSON *msg;
        cJSON_ArrayForEach(msg, messages)
        {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
            if (!cJSON_IsObject(msg))
                snprintf(detail, len, "messages[%d]: must be an object", i);
            else if (!cJSON_IsString(role))
                snprintf(detail, len, "messages[%d].role: must be a string", i);
            else if (!cJSON_IsString(content) && !cJSON_IsArray(content))
                snprintf(detail, len, "messages[%d].content: must be a string or an array", i);
            else {
                i++;
                continue;
            }
            return false;
        }
        return true;
    }
    return false;
}

static enum MHD_Result
answer_chat(struct mock_req *r)
{
    struct qk_mock *m = r->mock;
    char detail[128];
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(qk_buf_ptr(&r->body), qk_buf_len(&r->body), &end,
                                            false);
    if (!validate_chat(root, detail, sizeof detail)) {
        cJSON_Delete(root);
        return send_detail(r, 400, detail);
    }
    const char *model = cJSON_GetObjectItemCaseSensitive(root, "model")->valuestring;
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    bool stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "stream"));
    bool incremental = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "incremental_output"));
    const cJSON *max_tokens = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");

    struct qk_buf last, all;
    qk_buf_init(&last, QK_LIMIT_BODY_DEFAULT * 4);
    qk_buf_init(&all, QK_LIMIT_BODY_DEFAULT * 4);
    const cJSON *msg;
    cJSON_ArrayForEach(msg, messages)
    {
        qk_buf_reset(&last);
        content_text(cJSON_GetObjectItemCaseSensitive(msg, "content"), &last);
        if (qk_buf_append(&all, qk_buf_ptr(&last), qk_buf_len(&last)) != QK_OK)
            break; /* only feeds the usage estimate */
    }
    char storage[64];
    const char *pieces[MOCK_ANSWER_MAX_PIECES];
    size_t n = mock_answer_pieces(model, qk_buf_ptr(&last), storage, sizeof storage, pieces);
    const char *finish = "stop";
    long long limit = 0;
    if (max_tokens &&
        mock_json_int_in_range(max_tokens, 1, MOCK_ANSWER_MAX_PIECES, &limit) == MOCK_INT_OK &&
        (size_t)limit < n) {
        n = (size_t)limit;
        finish = "length";
    }
    char id[48];
    snprintf(id, sizeof id, "chatcmpl-mock-%06lu", r->seq);
    struct mock_answer ans = {
        .pieces = pieces,
        .n_pieces = n,
        .model = model,
        .id = id,
        .created = (long long)time(NULL),
        .input_tokens = (int)(qk_buf_len(&all) / 3 + 1),
        .finish = finish,
    };
    enum MHD_Result ret = MHD_NO;
    if (stream) {
        const struct mock_stream_opts *o =
            r->step && r->step->has_stream ? &r->step->stream : &m->stream_defaults;
        bool cumulative = o->cumulative >= 0 ? o->cumulative == 1 : !incremental;
        enum qk_err rc = mock_plan_build(&ans, o, cumulative, &r->plan);
        if (rc == QK_OK)
            ret = send_plan(r);
        else if (rc == QK_TOO_BIG) {
            /* The script's fault, not the caller's: say so rather than stream gigabytes. */
            char d[256];
            snprintf(d, sizeof d,
                     "qwen-mock: the scripted stream would carry over %zu MiB of text in its "
                     "events (%s deltas); script a smaller piece_bytes or fewer chunks%s",
                     MOCK_STREAM_MAX_BYTES >> 20, cumulative ? "cumulative" : "incremental",
                     cumulative ? ", or ask with incremental_output: true" : "");
            ret = send_detail(r, 500, d);
        }
    } else {
        char *text = mock_answer_text(&ans);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "object", "chat.completion");
        cJSON_AddNumberToObject(o, "created", (double)ans.created);
        cJSON_AddStringToObject(o, "model", model);
        cJSON *choice = cJSON_CreateObject();
        cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
        cJSON_AddNumberToObject(choice, "index", 0);
        cJSON *message = cJSON_AddObjectToObject(choice, "message");
        cJSON_AddStringToObject(message, "role", "assistant");
        cJSON_AddStringToObject(message, "content", text ? text : "");
        cJSON_AddStringToObject(choice, "finish_reason", finish);
        cJSON *usage = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddNumberToObject(usage, "input_tokens", ans.input_tokens);
        cJSON_AddNumberToObject(usage, "output_tokens", (double)n);
        cJSON_AddNumberToObject(usage, "total_tokens", (double)ans.input_tokens + (double)n);
        char *s = cJSON_PrintUnformatted(o);
        if (s)
            ret = send_json(r, 200, s);
        cJSON_free(s);
        cJSON_Delete(o);
        free(text);
    }
    qk_buf_free(&last);
    qk_buf_free(&all);
    cJSON_Delete(root);
    return ret;
}

/* Applies the step (if any) or answers normally. */
static enum MHD_Result
answer_api(struct mock_req *r)
{
    struct mock_step *s = r->step;
    if (s && s->drop) {
        r->deliberate_close = true;
        r->phase = PHASE_ANSWERED;
        return MHD_NO;
    }
    if (s && s->html) {
        unsigned status = 0;
        char *page = mock_html_page(s->html, s->status, &status);
        if (!page)
            return MHD_NO;
        enum MHD_Result ret = send_buffer(r, status, "text/html; charset=utf-8", page, strlen(page));
        free(page);
        return ret;
    }
    if (s && s->status) {
        if (s->body)
            return send_buffer(r, s->status, s->content_type ? s->content_type : "application/json",
                               s->body, strlen(s->body));
        char detail[48];
        snprintf(detail, sizeof detail, "Mock error %u", s->status);
        return send_detail(r, s->status, detail);
    }
    if (s && s->inband) {
        if (mock_plan_single_event(mock_inband_payload(s->inband), &r->plan) != QK_OK)
            return MHD_NO;
        return send_plan(r);
    }
    if (r->route == MOCK_ROUTE_MODELS)
        return send_json(r, 200, mock_models_json());
    return answer_chat(r);
}

static enum MHD_Result
handle_api(struct mock_req *r)
{
    struct qk_mock *m = r->mock;
    if (r->phase == PHASE_DELAYED) {
        if (atomic_load(&m->stopping) || peer_gone(r)) {
            r->client_gone = !atomic_load(&m->stopping);
            r->deliberate_close = !r->client_gone;
            return MHD_NO;
        }
        return answer_api(r);
    }
    if (r->route == MOCK_ROUTE_COUNT)
        return send_detail(r, 404, "Not Found");
    const char *want = r->route == MOCK_ROUTE_MODELS ? "GET" : "POST";
    if (strcmp(r->method, want) != 0)
        return send_detail(r, 405, "Method Not Allowed");
    if (r->body_too_big)
        return send_detail(r, 413, "Request body too large");

    const char *auth =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    size_t tlen = 0;
    const char *tok = qk_bearer_token(auth, &tlen);
    if (!auth)
        return send_detail(r, m->cfg.missing_auth_status, "Not authenticated");
    if (!tok)
        return send_detail(r, 401, "401 Unauthorized");
    if (mock_state_is_revoked(m->state, r->key))
        return send_detail(r, 401, "Your session has expired or the token is invalid. Please "
                                   "sign in again.");

    r->step = mock_state_take_step(m->state, r->key, r->route);
    if (r->step && r->step->delay_ms > 0) {
        r->phase = PHASE_DELAYED;
        suspend_until(r, qk_now_ms() + r->step->delay_ms);
        return MHD_YES;
    }
    return answer_api(r);
}

/* ---------- the control API ---------- */

/* The query parameters of a journal read, as a search query. */
struct journal_args {
    struct mock_journal_query q;
    const char *token; /* the per-key read; NULL when not given */
    bool token_twice;
    const char *other; /* the first parameter other than token */
    enum qk_err rc;
    char field[80], msg[160];
};

static enum MHD_Result
collect_journal_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct journal_args *a = cls;
    if (strcmp(key, "token") == 0) {
        a->token_twice = a->token != NULL;
        a->token = value ? value : "";
        return MHD_YES;
    }
    if (!a->other)
        a->other = key;
    if (a->rc == QK_OK)
        a->rc = mock_journal_query_set(&a->q, key, value, a->field, sizeof a->field, a->msg,
                                       sizeof a->msg);
    return MHD_YES;
}

/* GET /__mock/journal: one key's journal (token=T), or a search over every entry. */
static enum MHD_Result
handle_journal(struct mock_req *r)
{
    struct qk_mock *m = r->mock;
    struct journal_args a = {.rc = QK_OK};
    mock_journal_query_init(&a.q);
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_journal_arg, &a);
    char *s = NULL;
    if (a.token && a.other)
        return send_control_error(r, a.other, "a search cannot be combined with token");
    if (a.token_twice)
        return send_control_error(r, "token", "given more than once");
    if (a.token) {
        s = mock_state_journal_json(m->state, a.token);
    } else {
        if (a.rc == QK_OK)
            a.rc = mock_journal_query_check(&a.q, a.field, sizeof a.field, a.msg, sizeof a.msg);
        if (a.rc != QK_OK)
            return send_control_error(r, a.field, a.msg);
        s = mock_state_journal_search(m->state, &a.q);
    }
    if (!s)
        return MHD_NO;
    enum MHD_Result ret = send_json(r, 200, s);
    free(s);
    return ret;
}

static enum MHD_Result
handle_control(struct mock_req *r)
{
    struct qk_mock *m = r->mock;
    const char *p = r->path + strlen("/__mock");
    bool get = strcmp(r->method, "GET") == 0, post = strcmp(r->method, "POST") == 0;
    if (strcmp(p, "/health") == 0 && get) {
        char s[128];
        snprintf(s, sizeof s, "{\"status\":\"ok\",\"connections\":%d,\"streams\":%d}",
                 atomic_load(&m->connections), atomic_load(&m->streams));
        return send_json(r, 200, s);
    }
    if (strcmp(p, "/journal") == 0 && get)
        return handle_journal(r);
    if (strcmp(p, "/scenarios") == 0 && post) {
        char field[256] = "", msg[160] = "";
        struct mock_scenario *list = NULL;
        enum qk_err rc = mock_scenario_parse(qk_buf_ptr(&r->body), qk_buf_len(&r->body),
                                             &m->stream_defaults, &list, field, sizeof field,
                                             msg, sizeof msg);
        if (rc == QK_INVALID)
            return send_control_error(r, field, msg);
        if (rc != QK_OK)
            return MHD_NO;
        char s[64];
        snprintf(s, sizeof s, "{\"queued\":%zu}", mock_state_queue(m->state, list));
        mock_scenario_free(list);
        return send_json(r, 200, s);
    }
    if (strcmp(p, "/tokens/revoke") == 0 && post) {
        cJSON *root = cJSON_ParseWithLength(qk_buf_ptr(&r->body), qk_buf_len(&r->body));
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "token");
        enum MHD_Result ret;
        bool twice = false;
        for (const cJSON *o = t ? t->next : NULL; o && !twice; o = o->next)
            twice = o->string && strcmp(o->string, "token") == 0;
        if (twice)
            ret = send_control_error(r, "token", "given more than once");
        else if (!cJSON_IsString(t) || !t->valuestring[0])
            ret = send_control_error(r, "token", "must be a non-empty string");
        else {
            mock_state_revoke(m->state, t->valuestring);
            ret = send_json(r, 200, "{\"revoked\":true}");
        }
        cJSON_Delete(root);
        return ret;
    }
    if (strcmp(p, "/reset") == 0 && post) {
        mock_state_reset(m->state);
        return send_json(r, 200, "{\"reset\":true}");
    }
    bool known = strcmp(p, "/health") == 0 || strcmp(p, "/journal") == 0 ||
                 strcmp(p, "/scenarios") == 0 || strcmp(p, "/tokens/revoke") == 0 ||
                 strcmp(p, "/reset") == 0;
    if (known)
        return send_json(r, 405, "{\"error\":\"method not allowed\",\"field\":\"method\"}");
    return send_json(r, 404, "{\"error\":\"unknown control path\",\"field\":\"path\"}");
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
    enum qk_err rc = qk_buf_appendf(q, "%s%s%s%s", qk_buf_len(q) ? "&" : "", key,
                                    value ? "=" : "", value ? value : "");
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
    r->route = strcmp(url, "/api/models") == 0             ? MOCK_ROUTE_MODELS
               : strcmp(url, "/api/chat/completions") == 0 ? MOCK_ROUTE_CHAT
                                                           : MOCK_ROUTE_COUNT;
    const char *auth =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    size_t tlen = 0;
    const char *tok = qk_bearer_token(auth, &tlen);
    r->key = tok ? strndup(tok, tlen) : strdup(auth ? auth : "");
    if (!r->path || !r->headers || !r->key) {
        free(r->path);
        free(r->key);
        cJSON_Delete(r->headers);
        free(r);
        return NULL;
    }
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
           const char *version, const char *upload_data, size_t *upload_data_size,
           void **con_cls)
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
        if (!r->body_too_big &&
            qk_buf_append(&r->body, upload_data, *upload_data_size) != QK_OK)
            r->body_too_big = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->phase == PHASE_ANSWERED)
        return MHD_YES;
    if (r->control) {
        if (r->body_too_big)
            return send_control_error(r, "body", "request body too large");
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
    log_line("%s %s %s step=%s -> %s", r->method, r->path, fp, r->step ? r->step->json : "-",
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
    if (!r->control)
        mock_state_request_end(m->state, &r->flight, r->seq, journal_entry(r, finished));
    if (m->cfg.log_requests)
        log_request(r, finished);
    mock_step_free(r->step);
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
    log_line("libmicrohttpd: %s", msg);
}

/* ---------- lifecycle ---------- */

enum qk_err
qk_mock_start(const struct qk_mock_config *cfg, struct qk_mock **out, char *err, size_t errlen)
{
    char dummy[8];
    if (!err) {
        err = dummy;
        errlen = sizeof dummy;
    }
    struct qk_mock *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return QK_NOMEM;
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
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, m->cfg.host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(cfg->port);
    } else if (inet_pton(AF_INET6, m->cfg.host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, errlen, "--host: '%s' is not an IPv4 or IPv6 address", m->cfg.host);
        free(m);
        return QK_INVALID;
    }
    m->state = mock_state_new(cfg->journal_per_token, cfg->journal_total);
    if (!m->state || mock_timer_start(&m->timer) != QK_OK) {
        snprintf(err, errlen, "cannot allocate mock state");
        mock_state_free(m->state);
        free(m);
        return QK_NOMEM;
    }
    unsigned threads = cfg->threads ? cfg->threads : 1;
    m->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, m, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, m, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, m, MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections ? cfg->max_connections : 20000,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)32 * 1024, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096,
        threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, threads, MHD_OPTION_END);
    if (!m->daemon) {
        snprintf(err, errlen, "cannot listen on %s:%u (%s)", m->cfg.host, (unsigned)cfg->port,
                 strerror(errno));
        mock_timer_stop(m->timer);
        mock_state_free(m->state);
        free(m);
        return QK_START;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
    m->port = di ? di->port : cfg->port;
    *out = m;
    return QK_OK;
}

enum qk_err
qk_mock_load_scenarios(struct qk_mock *m, const char *json, size_t len, char *err, size_t errlen)
{
    char field[256] = "", msg[160] = "";
    struct mock_scenario *list = NULL;
    enum qk_err rc = mock_scenario_parse(json, len, &m->stream_defaults, &list, field,
                                         sizeof field, msg, sizeof msg);
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
    free(m);
}
