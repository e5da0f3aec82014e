#include "conf_client.h"

#include <curl/curl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <strings.h>
#include <unistd.h>

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
    qk_buf_init(&t->body, req->body_max ? req->body_max : CONF_CLIENT_BODY_MAX);
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

/* ---- raw exchanges ---- */

/* Splits "http://HOST:PORT[/...]" (HOST may be "[v6]"). */
static bool
split_base_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *p = strncmp(url, "http://", 7) == 0 ? url + 7 : NULL;
    if (!p)
        return false;
    const char *end = p + strcspn(p, "/");
    const char *colon = NULL;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close)
            return false;
        colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
        p++;
        if ((size_t)(close - p) >= hostlen)
            return false;
        memcpy(host, p, (size_t)(close - p));
        host[close - p] = '\0';
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        const char *hend = colon ? colon : end;
        if ((size_t)(hend - p) >= hostlen)
            return false;
        memcpy(host, p, (size_t)(hend - p));
        host[hend - p] = '\0';
    }
    const char *pstart = colon ? colon + 1 : "80";
    size_t plen = colon ? (size_t)(end - pstart) : 2;
    if (plen == 0 || plen >= portlen)
        return false;
    memcpy(port, pstart, plen);
    port[plen] = '\0';
    return true;
}

static int
connect_to(const char *host, const char *port)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd;
}

/* Decodes a chunked body; a malformed one is left as it came. */
static void
dechunk(struct conf_response *out)
{
    const char *p = out->body, *end = out->body + out->body_len;
    char *dst = malloc(out->body_len + 1);
    size_t n = 0;
    while (dst && p < end) {
        char *after = NULL;
        unsigned long long size = strtoull(p, &after, 16);
        const char *eol = memchr(after, '\n', (size_t)(end - after));
        if (after == p || !eol)
            break;
        p = eol + 1;
        if (size == 0) {
            dst[n] = '\0';
            free(out->body);
            out->body = dst;
            out->body_len = n;
            return;
        }
        if (size > (unsigned long long)(end - p))
            break;
        memcpy(dst + n, p, (size_t)size);
        n += (size_t)size;
        p += size;
        if (p < end && *p == '\r')
            p++;
        if (p < end && *p == '\n')
            p++;
    }
    free(dst);
}

/* Fills @p out from the raw answer in @p b: first status line, its headers, the rest. */
static enum qk_err
parse_raw_answer(const char *b, size_t n, struct conf_response *out,
                 struct conf_raw_outcome *outcome)
{
    for (size_t i = 0; i + 5 <= n; i++) {
        if ((i == 0 || b[i - 1] == '\n') && memcmp(b + i, "HTTP/", 5) == 0)
            outcome->status_lines++;
    }
    if (n < 12 || memcmp(b, "HTTP/", 5) != 0) {
        snprintf(out->error, sizeof(out->error), "no status line in %zu bytes received", n);
        return QK_OK;
    }
    const char *sp = memchr(b, ' ', n);
    out->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    const char *line = memchr(b, '\n', n);
    const char *end = b + n;
    while (line && ++line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        size_t llen = eol ? (size_t)(eol - line) : (size_t)(end - line);
        if (llen == 0 || (llen == 1 && line[0] == '\r')) {
            line += llen + (eol ? 1 : 0);
            break;
        }
        const char *colon = memchr(line, ':', llen);
        if (colon && out->header_count < CONF_CLIENT_HEADERS_MAX) {
            struct conf_header *h = &out->headers[out->header_count];
            h->name = dup_trimmed(line, (size_t)(colon - line));
            h->value = dup_trimmed(colon + 1, llen - (size_t)(colon - line) - 1);
            if (!h->name || !h->value) {
                free(h->name);
                free(h->value);
                return QK_NOMEM;
            }
            out->header_count++;
        }
        line = eol;
    }
    size_t body_len = line && line < end ? (size_t)(end - line) : 0;
    out->body = malloc(body_len + 1);
    if (!out->body)
        return QK_NOMEM;
    memcpy(out->body, body_len ? line : "", body_len);
    out->body[body_len] = '\0';
    out->body_len = body_len;
    const char *te = conf_response_header(out, "Transfer-Encoding");
    const char *cl = conf_response_header(out, "Content-Length");
    if (te && strstr(te, "chunked"))
        dechunk(out);
    else if (cl && strtoull(cl, NULL, 10) < out->body_len)
        out->body[out->body_len = (size_t)strtoull(cl, NULL, 10)] = '\0'; /* more follows */
    return QK_OK;
}

enum qk_err
conf_http_raw(const char *base_url, const char *bytes, size_t len, long timeout_ms,
              struct conf_response *out, struct conf_raw_outcome *outcome)
{
    memset(outcome, 0, sizeof(*outcome));
    out->status = 0;
    out->error[0] = '\0';
    out->sent_ms = qk_now_ms();
    char host[128], port[16];
    if (!split_base_url(base_url, host, sizeof(host), port, sizeof(port)))
        return QK_INVALID;
    if (timeout_ms <= 0)
        timeout_ms = CONF_CLIENT_TIMEOUT_MS;
    int fd = connect_to(host, port);
    if (fd < 0) {
        snprintf(out->error, sizeof(out->error), "cannot connect to %s", base_url);
        out->body = calloc(1, 1);
        return out->body ? QK_OK : QK_NOMEM;
    }
    struct qk_buf got;
    qk_buf_init(&got, CONF_CLIENT_BODY_MAX);
    enum qk_err rc = QK_OK;
    int64_t deadline = out->sent_ms + timeout_ms;
    size_t sent = 0;
    while (sent < len) {
        ssize_t w = send(fd, bytes + sent, len - sent, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the target may answer and close before it read everything */
        sent += (size_t)w;
    }
    char chunk[16384];
    for (;;) {
        int64_t left = deadline - qk_now_ms();
        if (left <= 0)
            break;
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        ssize_t r = recv(fd, chunk, sizeof(chunk), 0);
        if (r <= 0) {
            outcome->closed = true; /* EOF, or a reset after the answer */
            break;
        }
        outcome->bytes += (size_t)r;
        if (qk_buf_append(&got, chunk, (size_t)r) != QK_OK)
            out->body_truncated = 1;
    }
    close(fd);
    out->done_ms = qk_now_ms();
    rc = parse_raw_answer(qk_buf_ptr(&got), qk_buf_len(&got), out, outcome);
    if (rc == QK_OK && !out->body) {
        out->body = calloc(1, 1);
        if (!out->body)
            rc = QK_NOMEM;
    }
    if (rc == QK_OK && out->status == 0 && !outcome->closed)
        snprintf(out->error, sizeof(out->error), "no answer within %ld ms", timeout_ms);
    qk_buf_free(&got);
    return rc;
}
