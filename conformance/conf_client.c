#include "conf_client.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <strings.h>

#include "qwenkit/buf.h"

/* One transfer in flight: the handle, its header list and where the answer goes. */
struct transfer {
    CURL *easy;
    struct curl_slist *headers;
    struct qk_buf body;
    struct conf_response *out;
    bool (*on_body)(void *arg, const char *bytes, size_t len);
    void *on_body_arg;
};

enum qk_err
conf_client_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? QK_OK : QK_START;
}

void
conf_client_global_cleanup(void)
{
    curl_global_cleanup();
}

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct transfer *t = userdata;
    size_t n = size * nmemb;
    /* Past the cap we keep reading (the server must not block) but keep nothing more;
     * the body then ends early, which the checks report as a mismatch. */
    if (qk_buf_append(&t->body, ptr, n) != QK_OK)
        t->out->body_truncated = 1;
    if (t->on_body && !t->on_body(t->on_body_arg, ptr, n))
        return 0; /* the caller hangs up */
    return n;
}

static char *
dup_trimmed(const char *p, size_t len)
{
    while (len && (p[0] == ' ' || p[0] == '\t')) {
        p++;
        len--;
    }
    while (len && (p[len - 1] == '\r' || p[len - 1] == '\n' || p[len - 1] == ' '))
        len--;
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

static void
clear_headers(struct conf_response *r)
{
    for (size_t i = 0; i < r->header_count; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    r->header_count = 0;
}

static size_t
on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct transfer *t = userdata;
    struct conf_response *r = t->out;
    size_t n = size * nmemb;
    /* A status line starts a new header block (after a 100 Continue, say). */
    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        clear_headers(r);
        return n;
    }
    const char *colon = memchr(ptr, ':', n);
    if (!colon || r->header_count == CONF_CLIENT_HEADERS_MAX)
        return n;
    struct conf_header *h = &r->headers[r->header_count];
    h->name = dup_trimmed(ptr, (size_t)(colon - ptr));
    h->value = dup_trimmed(colon + 1, n - (size_t)(colon - ptr) - 1);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        return n;
    }
    r->header_count++;
    return n;
}

static void
transfer_free(struct transfer *t)
{
    if (t->easy)
        curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    qk_buf_free(&t->body);
}

/* A small fixed receive buffer: the kernel then cannot soak up a whole stream for a slow
 * reader, so the sender really has to wait (SSE-11). */
static int
set_rcvbuf(void *arg, curl_socket_t fd, curlsocktype purpose)
{
    (void)purpose;
    const int *bytes = arg;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, bytes, sizeof(*bytes));
    return CURL_SOCKOPT_OK;
}

static enum qk_err
transfer_prepare(struct transfer *t, const struct conf_request *req, struct conf_response *out)
{
    memset(t, 0, sizeof(*t));
    memset(out, 0, sizeof(*out));
    qk_buf_init(&t->body, CONF_CLIENT_BODY_MAX);
    t->out = out;
    t->on_body = req->on_body;
    t->on_body_arg = req->on_body_arg;
    t->easy = curl_easy_init();
    if (!t->easy)
        return QK_NOMEM;
    /* An empty "Expect:" stops libcurl from adding Expect: 100-continue to big POSTs;
     * a test that wants other headers lists them itself. */
    struct curl_slist *tmp = curl_slist_append(NULL, "Expect:");
    if (!tmp)
        return QK_NOMEM;
    t->headers = tmp;
    for (const char *const *h = req->headers; h && *h; h++) {
        tmp = curl_slist_append(t->headers, *h);
        if (!tmp)
            return QK_NOMEM;
        t->headers = tmp;
    }
    CURL *e = t->easy;
    long timeout = req->timeout_ms > 0 ? req->timeout_ms : CONF_CLIENT_TIMEOUT_MS;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, out->error);
    /* Fresh connection per request: a test must not depend on a previous test's socket. */
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    if (req->recv_buffer > 0)
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, req->recv_buffer);
    if (req->socket_rcvbuf > 0) {
        curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, set_rcvbuf);
        curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, (void *)&req->socket_rcvbuf);
    }
    if (req->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    if (strcmp(req->method, "GET") == 0)
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    else if (strcmp(req->method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (!(strcmp(req->method, "POST") == 0 && req->body))
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    out->sent_ms = qk_now_ms();
    return QK_OK;
}

static void
transfer_finish(struct transfer *t, CURLcode code)
{
    struct conf_response *r = t->out;
    r->done_ms = qk_now_ms();
    r->curl_code = (int)code;
    if (code != CURLE_OK && r->error[0] == '\0')
        snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(code));
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &r->status);
    r->body = qk_buf_take(&t->body, &r->body_len);
}

enum qk_err
conf_http(const struct conf_request *req, struct conf_response *out)
{
    struct transfer t;
    enum qk_err rc = transfer_prepare(&t, req, out);
    if (rc == QK_OK)
        transfer_finish(&t, curl_easy_perform(t.easy));
    transfer_free(&t);
    if (rc == QK_OK && !out->body)
        rc = QK_NOMEM;
    return rc;
}

enum qk_err
conf_http_many(const struct conf_request *reqs, size_t n, struct conf_response *out)
{
    enum qk_err rc = QK_OK;
    CURLM *multi = curl_multi_init();
    struct transfer *ts = calloc(n ? n : 1, sizeof(*ts));
    size_t prepared = 0;

    memset(out, 0, n * sizeof(*out));
    if (!multi || !ts) {
        rc = QK_NOMEM;
        goto out;
    }
    for (; prepared < n; prepared++) {
        rc = transfer_prepare(&ts[prepared], &reqs[prepared], &out[prepared]);
        if (rc != QK_OK) {
            prepared++;
            goto out;
        }
        curl_easy_setopt(ts[prepared].easy, CURLOPT_PRIVATE, &ts[prepared]);
        curl_multi_add_handle(multi, ts[prepared].easy);
    }
    int running = 1;
    while (running) {
        if (curl_multi_perform(multi, &running) != CURLM_OK)
            break;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct transfer *t = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
            transfer_finish(t, msg->data.result);
        }
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
out:
    for (size_t i = 0; i < prepared; i++) {
        if (multi && ts[i].easy)
            curl_multi_remove_handle(multi, ts[i].easy);
        /* A transfer the loop never finished still needs a body for the caller. */
        if (rc == QK_OK && !out[i].body)
            transfer_finish(&ts[i], CURLE_ABORTED_BY_CALLBACK);
        transfer_free(&ts[i]);
    }
    free(ts);
    if (multi)
        curl_multi_cleanup(multi);
    return rc;
}

const char *
conf_response_header(const struct conf_response *r, const char *name)
{
    for (size_t i = 0; i < r->header_count; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    }
    return NULL;
}

size_t
conf_response_header_count(const struct conf_response *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->header_count; i++)
        n += strcasecmp(r->headers[i].name, name) == 0;
    return n;
}

void
conf_response_clear(struct conf_response *r)
{
    clear_headers(r);
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}
