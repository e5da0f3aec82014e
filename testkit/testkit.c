/* The tests' client and plumbing; see testkit.h. */
#include "testkit.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "qwenkit/common.h"

/* ---------- transfer state ---------- */

struct xfer {
    const struct mc_req *req;
    struct mc_resp *resp;
    size_t body_alloc, chunks_alloc, headers_alloc;
    char prev; /* last body byte, to find "\n\n" across chunks */
    bool oom;
    CURL *h;                 /* owned; xfer_cleanup() releases it */
    struct curl_slist *hdrs; /* owned */
    char url[2048], auth[1024];
};

static bool
grow(void **ptr, size_t *alloc, size_t need, size_t elem)
{
    if (need <= *alloc)
        return true;
    size_t n = *alloc ? *alloc : 16;
    while (n < need)
        n *= 2;
    void *p = realloc(*ptr, n * elem);
    if (!p)
        return false;
    *ptr = p;
    *alloc = n;
    return true;
}

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    struct mc_resp *r = x->resp;
    size_t n = size * nmemb;
    int64_t now = qk_now_ms();
    if (!grow((void **)&r->body, &x->body_alloc, r->body_len + n + 1, 1) ||
        !grow((void **)&r->chunks, &x->chunks_alloc, r->n_chunks + 1, sizeof *r->chunks)) {
        x->oom = true;
        return 0;
    }
    char *copy = malloc(n + 1);
    if (!copy) {
        x->oom = true;
        return 0;
    }
    memcpy(copy, ptr, n);
    copy[n] = '\0';
    r->chunks[r->n_chunks++] = (struct mc_chunk){copy, n, now};
    memcpy(r->body + r->body_len, ptr, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (ptr[i] == '\n' && x->prev == '\n')
            r->events_seen++;
        x->prev = ptr[i];
    }
    const struct mc_req *q = x->req;
    if ((q->abort_after_bytes && r->body_len >= q->abort_after_bytes) ||
        (q->abort_after_events && r->events_seen >= q->abort_after_events)) {
        r->aborted = true;
        return 0; /* CURLE_WRITE_ERROR: curl closes the connection */
    }
    return n;
}

/* Adds the header line @p line (@p n bytes, line end included or not) to @p r; a line
 * without a colon (the blank line ending the headers) adds nothing. */
static bool
add_header(struct mc_resp *r, size_t *alloc, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n);
    if (!colon)
        return true;
    size_t nlen = (size_t)(colon - line);
    const char *v = colon + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    if (!grow((void **)&r->headers, alloc, r->n_headers + 1, sizeof *r->headers))
        return false;
    char *name = strndup(line, nlen);
    char *value = strndup(v, (size_t)(end - v));
    if (!name || !value) {
        free(name);
        free(value);
        return false;
    }
    r->headers[r->n_headers++] = (struct mc_header){name, value};
    return true;
}

static size_t
on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    struct mc_resp *r = x->resp;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        /* A new response (e.g. after 100 Continue): forget earlier headers. */
        for (size_t i = 0; i < r->n_headers; i++) {
            free(r->headers[i].name);
            free(r->headers[i].value);
        }
        r->n_headers = 0;
        return n;
    }
    if (!add_header(r, &x->headers_alloc, ptr, n)) {
        x->oom = true;
        return 0;
    }
    return n;
}

void
mc_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void
mc_global_cleanup(void)
{
    curl_global_cleanup();
}

/* Prepares @p x to perform @p req into @p resp (zeroed first). @return false on OOM. */
/* Appends @p line to @p list; on failure the list is kept whole (for its owner to free). */
static bool
append_request_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *grown = curl_slist_append(*list, line);
    if (!grown)
        return false;
    *list = grown;
    return true;
}

static bool
xfer_setup(struct xfer *x, const struct mc_req *req, struct mc_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    *x = (struct xfer){.req = req, .resp = resp, .body_alloc = 1};
    resp->body = calloc(1, 1);
    x->h = curl_easy_init();
    if (!resp->body || !x->h)
        return false;
    CURL *h = x->h;
    const char *method = req->method ? req->method : req->body ? "POST" : "GET";
    snprintf(x->url, sizeof x->url, "http://127.0.0.1:%u%s", (unsigned)req->port, req->path);
    curl_easy_setopt(h, CURLOPT_URL, x->url);
    curl_easy_setopt(h, CURLOPT_PRIVATE, x);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                     req->timeout_ms ? req->timeout_ms : (long)MC_DEFAULT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, resp->err);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    /* Hand every received piece over as it comes: no decoding of the body. */
    curl_easy_setopt(h, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    bool ok = true;
    if (req->token) {
        snprintf(x->auth, sizeof x->auth, "Authorization: Bearer %s", req->token);
        ok = append_request_header(&x->hdrs, x->auth);
    }
    for (int i = 0; ok && i < MC_MAX_HEADERS && req->headers[i]; i++)
        ok = append_request_header(&x->hdrs, req->headers[i]);
    /* No "Expect: 100-continue" round trip: the journal should see the headers the
     * test chose. */
    ok = ok && append_request_header(&x->hdrs, "Expect:");
    if (ok && req->chunked_upload)
        ok = append_request_header(&x->hdrs, "Transfer-Encoding: chunked");
    if (!ok)
        return false;
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->hdrs);
    if (req->body) {
        size_t len = req->body_len ? req->body_len : strlen(req->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        if (req->chunked_upload)
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    }
    if (strcmp(method, "GET") != 0 && !(req->body && strcmp(method, "POST") == 0))
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    return true;
}

/* Records how the transfer of @p x ended with @p rc. */
static void
xfer_done(struct xfer *x, CURLcode rc)
{
    x->resp->rc = rc;
    x->resp->end_ms = qk_now_ms();
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->resp->status);
}

static void
xfer_cleanup(struct xfer *x)
{
    curl_slist_free_all(x->hdrs);
    if (x->h)
        curl_easy_cleanup(x->h);
}

int
mc_request(const struct mc_req *req, struct mc_resp *resp)
{
    struct xfer x;
    int ret = -1;
    if (xfer_setup(&x, req, resp)) {
        resp->start_ms = qk_now_ms();
        xfer_done(&x, curl_easy_perform(x.h));
        ret = x.oom ? -1 : 0;
    }
    xfer_cleanup(&x);
    return ret;
}

int
mc_request_all(const struct mc_req *reqs, struct mc_resp *resps, size_t n)
{
    memset(resps, 0, n * sizeof *resps);
    struct xfer *xs = calloc(n, sizeof *xs);
    CURLM *multi = curl_multi_init();
    size_t ready = 0;
    int ret = -1;
    if (!xs || !multi)
        goto out;
    for (; ready < n; ready++) {
        if (!xfer_setup(&xs[ready], &reqs[ready], &resps[ready])) {
            ready++; /* its handle and headers are to be released too */
            goto out;
        }
    }
    int64_t start = qk_now_ms();
    for (size_t i = 0; i < n; i++) {
        resps[i].start_ms = start;
        curl_multi_add_handle(multi, xs[i].h);
    }
    int running = 1;
    CURLMcode mrc = CURLM_OK;
    while (running && mrc == CURLM_OK) {
        mrc = curl_multi_perform(multi, &running);
        int left;
        for (CURLMsg *m; (m = curl_multi_info_read(multi, &left));) {
            struct xfer *x = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            if (m->msg == CURLMSG_DONE && x)
                xfer_done(x, m->data.result);
        }
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    ret = mrc == CURLM_OK ? 0 : -1;
    for (size_t i = 0; i < n; i++) {
        curl_multi_remove_handle(multi, xs[i].h);
        if (xs[i].oom)
            ret = -1;
    }
out:
    for (size_t i = 0; i < ready; i++)
        xfer_cleanup(&xs[i]);
    if (multi)
        curl_multi_cleanup(multi);
    free(xs);
    return ret;
}

int
mc_resp_parse_raw(const char *raw, size_t len, struct mc_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    const char *end = raw + len;
    const char *head_end = NULL;
    for (const char *p = raw; p + 4 <= end && !head_end; p++)
        if (memcmp(p, "\r\n\r\n", 4) == 0)
            head_end = p + 2; /* past the last header line's CRLF */
    if (len >= 5 && strncmp(raw, "HTTP/", 5) == 0) {
        const char *sp = memchr(raw, ' ', len);
        if (sp)
            resp->status = strtol(sp + 1, NULL, 10);
    }
    size_t alloc = 0;
    const char *line = head_end ? memchr(raw, '\n', (size_t)(head_end - raw)) : NULL;
    while (line && ++line < head_end) {
        const char *eol = memchr(line, '\n', (size_t)(head_end - line));
        size_t n = eol ? (size_t)(eol - line) : (size_t)(head_end - line);
        if (!add_header(resp, &alloc, line, n))
            return -1;
        line = eol;
    }
    const char *body = head_end ? head_end + 2 : end;
    resp->body_len = (size_t)(end - body);
    resp->body = malloc(resp->body_len + 1);
    if (!resp->body)
        return -1;
    memcpy(resp->body, body, resp->body_len);
    resp->body[resp->body_len] = '\0';
    return 0;
}

void
mc_resp_free(struct mc_resp *resp)
{
    if (!resp)
        return;
    for (size_t i = 0; i < resp->n_headers; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    for (size_t i = 0; i < resp->n_chunks; i++)
        free(resp->chunks[i].data);
    free(resp->headers);
    free(resp->chunks);
    free(resp->body);
    memset(resp, 0, sizeof *resp);
}

int
mc_get(uint16_t port, const char *path, const char *token, struct mc_resp *resp)
{
    struct mc_req q = {.port = port, .path = path, .token = token};
    return mc_request(&q, resp);
}

int
mc_post(uint16_t port, const char *path, const char *token, const char *body, struct mc_resp *resp)
{
    struct mc_req q = {.port = port,
                       .path = path,
                       .token = token,
                       .body = body,
                       .headers = {"Content-Type: application/json"}};
    return mc_request(&q, resp);
}

const char *
mc_header(const struct mc_resp *resp, const char *name)
{
    const char *v = NULL;
    for (size_t i = 0; i < resp->n_headers; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            v = resp->headers[i].value;
    return v;
}

cJSON *
mc_json(const struct mc_resp *resp)
{
    if (!resp->body)
        return NULL;
    return cJSON_ParseWithLength(resp->body, resp->body_len);
}

char *
mc_json_string(const struct mc_resp *resp, const char *key)
{
    cJSON *root = mc_json(resp);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    char *s = cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
    cJSON_Delete(root);
    return s;
}

/* ---------- event streams ---------- */

void
mc_sse_parse(const char *body, size_t len, struct mc_events *out)
{
    memset(out, 0, sizeof *out);
    size_t alloc = 0;
    char *data = NULL; /* the event being built; NULL when it has no data line */
    size_t dlen = 0;
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && body[i] != '\n' && body[i] != '\r')
            i++;
        if (i == len)
            break; /* an unterminated line: the stream was cut */
        size_t llen = i - start;
        if (body[i] == '\r' && i + 1 < len && body[i + 1] == '\n')
            i++;
        i++;
        const char *line = body + start;
        if (llen == 0) {
            if (data) {
                if (grow((void **)&out->data, &alloc, out->n + 1, sizeof *out->data))
                    out->data[out->n++] = data;
                else
                    free(data);
                data = NULL;
                dlen = 0;
            }
        } else if (line[0] == ':') {
            out->comments++;
        } else if (llen >= 5 && strncmp(line, "data:", 5) == 0) {
            const char *v = line + 5;
            size_t vlen = llen - 5;
            if (vlen && *v == ' ') {
                v++;
                vlen--;
            }
            char *nd = realloc(data, dlen + vlen + 2);
            if (!nd)
                continue;
            if (data)
                nd[dlen++] = '\n';
            memcpy(nd + dlen, v, vlen);
            dlen += vlen;
            nd[dlen] = '\0';
            data = nd;
        }
    }
    free(data);
}

void
mc_events_free(struct mc_events *ev)
{
    for (size_t i = 0; i < ev->n; i++)
        free(ev->data[i]);
    free(ev->data);
    memset(ev, 0, sizeof *ev);
}

size_t
mc_event_times(const struct mc_resp *resp, int64_t *out, size_t max)
{
    size_t n = 0;
    char prev = 0;
    for (size_t c = 0; c < resp->n_chunks; c++)
        for (size_t i = 0; i < resp->chunks[c].len; i++) {
            char ch = resp->chunks[c].data[i];
            if (ch == '\n' && prev == '\n' && n < max)
                out[n++] = resp->chunks[c].ms;
            prev = ch;
        }
    return n;
}

bool
mc_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= len)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

int
mc_connect(uint16_t port, const char *from)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in src = {.sin_family = AF_INET};
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    if ((from && (inet_pton(AF_INET, from, &src.sin_addr) != 1 ||
                  bind(fd, (struct sockaddr *)&src, sizeof src) != 0)) ||
        connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool
mc_send_all(int fd, const void *p, size_t len)
{
    for (size_t sent = 0; sent < len;) {
        ssize_t w = send(fd, (const char *)p + sent, len - sent, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        sent += (size_t)w;
    }
    return true;
}

int64_t
mc_read_until_closed(int fd, int limit_ms, char *got, size_t cap)
{
    int64_t start = qk_now_ms();
    size_t len = 0;
    if (got && cap)
        got[0] = '\0';
    for (;;) {
        int64_t left = start + limit_ms - qk_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            return qk_now_ms() - start;
        if (!got || !cap)
            continue;
        size_t take = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
        memcpy(got + len, buf, take);
        len += take;
        got[len] = '\0';
    }
}

void
mc_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

size_t
mc_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    long page = sysconf(_SC_PAGESIZE);
    return (size_t)resident * (size_t)(page > 0 ? page : 4096);
}

void
mc_new_token(char *out, size_t len)
{
    static unsigned counter;
    unsigned char rnd[12] = {0};
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, rnd, sizeof rnd) != (ssize_t)sizeof rnd)
            memset(rnd, 0, sizeof rnd);
        close(fd);
    }
    char hex[2 * sizeof rnd + 1];
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    unsigned n = __atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST);
    snprintf(out, len, "e2e-%s-%u-%lld", hex, n, (long long)qk_now_ms());
}

/* ---------- control API ---------- */

long
mc_scenarios(uint16_t port, const char *json, cJSON **reply)
{
    struct mc_resp r;
    long status = 0;
    if (reply)
        *reply = NULL;
    if (mc_post(port, "/__mock/scenarios", NULL, json, &r) == 0 && r.rc == CURLE_OK) {
        status = r.status;
        if (reply)
            *reply = mc_json(&r);
    }
    mc_resp_free(&r);
    return status;
}

long
mc_queue(uint16_t port, const char *token, const char *route, const char *steps_json)
{
    size_t len = strlen(token) + strlen(route) + strlen(steps_json) + 64;
    char *json = malloc(len);
    if (!json)
        return 0;
    snprintf(json, len, "{\"token\":\"%s\",\"route\":\"%s\",\"steps\":%s}", token, route,
             steps_json);
    long status = mc_scenarios(port, json, NULL);
    free(json);
    return status;
}

cJSON *
mc_journal(uint16_t port, const char *token)
{
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    char *esc = curl_easy_escape(h, token, 0);
    curl_easy_cleanup(h);
    if (!esc)
        return NULL;
    size_t plen = strlen(esc) + 32;
    char *path = malloc(plen);
    cJSON *root = NULL;
    if (path) {
        snprintf(path, plen, "/__mock/journal?token=%s", esc);
        struct mc_resp r;
        if (mc_get(port, path, NULL, &r) == 0 && r.rc == CURLE_OK && r.status == 200)
            root = mc_json(&r);
        mc_resp_free(&r);
        free(path);
    }
    curl_free(esc);
    return root;
}

cJSON *
mc_journal_wait(uint16_t port, const char *token, int n, long timeout_ms)
{
    int64_t deadline = qk_now_ms() + timeout_ms;
    for (;;) {
        cJSON *j = mc_journal(port, token);
        int have = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries"));
        if (have >= n || qk_now_ms() >= deadline)
            return j;
        cJSON_Delete(j);
        mc_sleep_ms(20);
    }
}

cJSON *
mc_journal_search(uint16_t port, const char *query, long *status)
{
    size_t plen = strlen(query) + 32;
    char *path = malloc(plen);
    cJSON *root = NULL;
    long st = 0;
    if (path) {
        snprintf(path, plen, "/__mock/journal?%s", query);
        struct mc_resp r;
        if (mc_get(port, path, NULL, &r) == 0 && r.rc == CURLE_OK) {
            st = r.status;
            root = mc_json(&r);
        }
        mc_resp_free(&r);
        free(path);
    }
    if (status)
        *status = st;
    return root;
}

cJSON *
mc_journal_search_wait(uint16_t port, const char *query, int n, long timeout_ms)
{
    int64_t deadline = qk_now_ms() + timeout_ms;
    for (;;) {
        cJSON *j = mc_journal_search(port, query, NULL);
        int have = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries"));
        const cJSON *fl = cJSON_GetObjectItemCaseSensitive(j, "in_flight");
        bool settled = cJSON_IsNumber(fl) && fl->valuedouble == 0;
        if ((settled && have >= n) || qk_now_ms() >= deadline)
            return j;
        cJSON_Delete(j);
        mc_sleep_ms(20);
    }
}

cJSON *
mc_journal_settled(uint16_t port, const char *token, int n, long timeout_ms)
{
    CURL *h = curl_easy_init();
    char *esc = h ? curl_easy_escape(h, token, 0) : NULL;
    if (h)
        curl_easy_cleanup(h);
    if (!esc)
        return NULL;
    size_t qlen = strlen(esc) + 8;
    char *query = malloc(qlen);
    cJSON *j = NULL;
    if (query) {
        snprintf(query, qlen, "token=%s", esc);
        j = mc_journal_search_wait(port, query, n, timeout_ms);
        free(query);
    }
    curl_free(esc);
    return j;
}

long
mc_revoke(uint16_t port, const char *token)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "token", token);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    long status = 0;
    struct mc_resp r;
    if (json && mc_post(port, "/__mock/tokens/revoke", NULL, json, &r) == 0) {
        if (r.rc == CURLE_OK)
            status = r.status;
    }
    if (json)
        mc_resp_free(&r);
    cJSON_free(json);
    return status;
}

long
mc_reset(uint16_t port)
{
    struct mc_resp r;
    long status = 0;
    if (mc_post(port, "/__mock/reset", NULL, "", &r) == 0 && r.rc == CURLE_OK)
        status = r.status;
    mc_resp_free(&r);
    return status;
}
