/*
 * Responses of the mock (mock_http.h): buffers, upstream and control errors, and the
 * paced event stream, whose writes a suspended connection waits for (mock_timer.c).
 */
#include "mock_http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mock_check.h"

static void
resume_cb(void *arg)
{
    struct mock_req *r = arg;
    atomic_fetch_sub(&r->mock->suspended, 1);
    MHD_resume_connection(r->conn);
}

void
mock_suspend_until(struct mock_req *r, int64_t due_ms)
{
    atomic_fetch_add(&r->mock->suspended, 1);
    MHD_suspend_connection(r->conn);
    if (mock_timer_at(r->mock->timer, due_ms, resume_cb, r) != QK_OK)
        resume_cb(r); /* no memory for a timer: retry at once rather than hang */
}

bool
mock_peer_gone(struct mock_req *r)
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

/* Escaped, what a request sends cannot start a line of its own. */
void
mock_log_line(const char *fmt, ...)
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

/* The step's extra headers, added to any response it shapes. */
static void
add_step_headers(struct mock_req *r, struct MHD_Response *resp)
{
    const cJSON *h;
    if (!r->step || !r->step->headers)
        return;
    cJSON_ArrayForEach(h, r->step->headers)
    {
        if (MHD_add_response_header(resp, h->string, h->valuestring) != MHD_YES &&
            r->mock->cfg.log_requests)
            mock_log_line("header %s refused by the HTTP library", h->string);
    }
}

enum MHD_Result
mock_send_buffer(struct mock_req *r, unsigned status, const char *ctype, const char *body,
                 size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (status == 405 && r->allow[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow);
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
    r->phase = MOCK_PHASE_ANSWERED;
    return ret;
}

enum MHD_Result
mock_send_json(struct mock_req *r, unsigned status, const char *json)
{
    return mock_send_buffer(r, status, "application/json", json, strlen(json));
}

/* Upstream-style error: {"detail": "..."} */
enum MHD_Result
mock_send_detail(struct mock_req *r, unsigned status, const char *detail)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "detail", detail);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        return MHD_NO;
    enum MHD_Result ret = mock_send_json(r, status, s);
    cJSON_free(s);
    return ret;
}

/* Control-API error: {"error": "...", "field": "..."} */
enum MHD_Result
mock_send_control_error(struct mock_req *r, const char *field, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    cJSON_AddStringToObject(o, "field", field);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        return MHD_NO;
    enum MHD_Result ret = mock_send_json(r, 400, s);
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
    if (mock_peer_gone(r)) {
        r->client_gone = true;
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    int64_t now = qk_now_ms();
    if (r->write_idx >= r->plan.count) {
        if (r->plan.end == MOCK_END_CLOSE) {
            r->deliberate_close = true;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (r->plan.end == MOCK_END_NORMAL) {
            /* Free the chat before the body's end goes out, not when libmicrohttpd reports
             * the request complete: a client that goes on in the chat the moment it reads
             * the end must never find it still in progress. */
            if (r->chat_begun) {
                mock_chats_end(m->chats, r->chat_id);
                r->chat_begun = false;
            }
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        /* Stall: hold the connection, looking for the client leaving. */
        if (r->stall_until_ms == 0)
            r->stall_until_ms = now + r->plan.stall_ms;
        if (now >= r->stall_until_ms) {
            r->deliberate_close = true;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        int64_t due = now + (int64_t)m->cfg.idle_check_ms;
        mock_suspend_until(r, due < r->stall_until_ms ? due : r->stall_until_ms);
        return 0;
    }
    if (r->write_off == 0 && now < r->next_due_ms) {
        /* Wake at the due time, or earlier to notice a client that left. */
        int64_t check = now + (int64_t)m->cfg.idle_check_ms;
        mock_suspend_until(r, check < r->next_due_ms ? check : r->next_due_ms);
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
            if (qk_buf_appendf(&r->event_ms, "%s%lld", r->events_sent ? "," : "", (long long)now) !=
                QK_OK)
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

enum MHD_Result
mock_send_plan(struct mock_req *r, const char *ctype)
{
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, r, NULL);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    add_step_headers(r, resp);
    r->streaming = true;
    r->status = 200;
    r->phase = MOCK_PHASE_ANSWERED;
    atomic_fetch_add(&r->mock->streams, 1);
    enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

bool
mock_apply_step(struct mock_req *r, enum MHD_Result *ret)
{
    const struct mock_step *s = r->step;
    if (!s)
        return false;
    if (s->drop) {
        r->deliberate_close = true;
        r->phase = MOCK_PHASE_ANSWERED;
        *ret = MHD_NO;
        return true;
    }
    if (s->html) {
        unsigned status = 0;
        char *page = mock_html_page(s->html, s->status, &status);
        *ret = page ? mock_send_buffer(r, status, "text/html; charset=utf-8", page, strlen(page))
                    : MHD_NO;
        free(page);
        return true;
    }
    if (s->status) {
        if (s->body) {
            *ret = mock_send_buffer(r, s->status,
                                    s->content_type ? s->content_type : "application/json", s->body,
                                    strlen(s->body));
        } else {
            char detail[48];
            snprintf(detail, sizeof detail, "Mock error %u", s->status);
            *ret = mock_send_detail(r, s->status, detail);
        }
        return true;
    }
    if (s->inband) {
        bool v2 = r->dialect == MOCK_DIALECT_V2;
        char *payload = mock_inband_payload(s->inband, v2);
        *ret = MHD_NO;
        if (payload && v2 && !s->inband_sse) /* the v2 service's bare body */
            *ret = mock_send_buffer(r, 200, "application/json;charset=utf-8", payload,
                                    strlen(payload));
        else if (payload && mock_plan_single_event(payload, &r->plan) == QK_OK)
            *ret = mock_send_plan(r, v2 ? "text/event-stream; charset=utf-8" : "text/event-stream");
        free(payload);
        return true;
    }
    return false;
}
