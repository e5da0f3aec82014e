/*
 * qwen-bench-load: opens N concurrent slow streams against qwen-mock and
 * reports how many the server held at once.
 *
 * One thread, one epoll set, non-blocking raw sockets: the client needs one
 * descriptor and ~100 bytes per stream, so it is never the bottleneck.
 *
 * Before connecting it queues, through POST /__mock/scenarios, one slow-stream
 * step per bench token (`{"stream":{"chunks":C,"chunk_delay_ms":D}}`), so every
 * stream lasts about C*D ms and all N overlap. Then each connection sends
 * `POST /api/chat/completions` with `Authorization: Bearer <prefix><i>` and
 * `"stream": true`, de-chunks the reply and counts SSE `data:` lines.
 *
 * With --control-port it loads a server in front of the mock (qwen-proxy): the
 * steps go to the mock on that port, the streams to --port.
 *
 * Timing of events: for every `data:` event but the first and `[DONE]`, its
 * excess is the time since the stream's previous event minus D (the added delay
 * of that event; early counts as 0), and its lag is how much later than index * D
 * after the stream's first event it came (early counts as 0; this one also adds up
 * the mock's own drift). The gap is the longest time between two events.
 *
 * Output: progress lines on stderr (--progress) and one result line on stdout:
 *   requested=N opened=.. responded=.. held_peak=.. completed=.. events=.. errors=..
 *   err_connect=.. err_status=.. err_closed=.. err_timeout=.. ramp_ms=.. elapsed_ms=..
 *   excess_p50_us=.. excess_p99_us=.. lag_p50_us=.. lag_p99_us=.. lag_max_us=..
 *   gap_max_us=.. first_p50_us=.. first_p99_us=.. steady_excess_p99_us=..
 *   steady_gap_max_us=..
 * (first_*: from the request sent to the first event; steady_*: the same as excess and gap
 * for the gaps that began after the ramp-up, once every stream had its response headers.)
 * Exit status: 0 when every stream completed with `data: [DONE]`, 1 when some
 * failed, 2 on a usage or setup error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "Usage: qwen-bench-load --port PORT [options]\n"
    "Opens N concurrent slow streams against qwen-mock and reports how many it held.\n"
    "\n"
    "  --host ADDR            IPv4 address of the mock (default 127.0.0.1)\n"
    "  --port N               port of the server the streams go to (required unless\n"
    "                         --write-scenario)\n"
    "  --control-port N       port of qwen-mock for POST /__mock/scenarios when --port\n"
    "                         is a proxy in front of it (default: --port)\n"
    "  -n, --streams N        concurrent streams to open (default 10000)\n"
    "  --chunks N             events per stream (default 10)\n"
    "  --chunk-delay-ms N     pause between events (default 1000)\n"
    "  --window N             connections allowed to wait for their response headers\n"
    "                         at once while ramping up (default 1000)\n"
    "  --timeout-s N          give up on streams still open after N s (default 120)\n"
    "  --token-prefix S       bench tokens are S0 .. S(N-1) (default bench-)\n"
    "  --model ID             model asked for (default qwen-max-latest)\n"
    "  --no-queue             do not POST the slow-stream steps (the mock was started\n"
    "                         with --scenario FILE from --write-scenario)\n"
    "  --write-scenario FILE  write the scenario JSON for qwen-mock --scenario and exit\n"
    "  --progress             one status line per second on stderr\n"
    "  --help                 this text\n";

enum conn_state {
    ST_IDLE = 0,   /* not started */
    ST_CONNECTING, /* connect() in progress, request not fully sent */
    ST_HEADERS,    /* request sent, reading the status line and headers */
    ST_BODY,       /* reading the body */
    ST_FINISHED,   /* closed; counted */
};

enum chunk_state { CH_SIZE = 0, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF };

#define HDR_MAX 2048
#define LINE_KEEP 16

struct conn {
    int fd;
    uint8_t state;
    uint8_t cstate;
    bool chunked;
    bool got_event;
    bool got_done;
    uint16_t sent; /* request bytes sent */
    uint32_t chunk_left;
    uint32_t line_len; /* length of the current SSE line */
    uint32_t events;
    int64_t sent_us;  /* request sent */
    int64_t first_us; /* first data: event */
    int64_t last_us;  /* latest data: event */
    char *hdr;        /* header bytes, only while ST_HEADERS */
    uint16_t hdr_len;
    char line[LINE_KEEP]; /* first bytes of the current SSE line */
};

struct opts {
    const char *host;
    unsigned port;
    unsigned control_port;
    unsigned long n;
    unsigned long chunks;
    unsigned long chunk_delay_ms;
    unsigned long window;
    unsigned long timeout_s;
    const char *prefix;
    const char *model;
    bool queue;
    const char *write_scenario;
    bool progress;
};

struct stats {
    unsigned long started, opened, responded, held_now, held_peak, completed, events;
    unsigned long err_connect, err_status, err_closed, err_timeout;
    unsigned long pending; /* started but no response headers yet */
    unsigned long open_now;
};

static struct opts opt;
static struct stats st;
static struct conn *conns;
static struct sockaddr_in server;
static struct sockaddr_in control; /* the mock's control API */

/* Histograms of event timing, 100 us buckets up to 120 s (the last bucket holds
 * everything beyond). Static: about 5 MB of zero pages, touched only where used. */
#define HIST_BUCKETS 1200000u
#define HIST_UNIT_US 100
struct hist {
    uint32_t b[HIST_BUCKETS];
    unsigned long n;
    int64_t max_us;
};
static struct hist excess_hist, lag_hist, first_hist, steady_excess_hist;
static int64_t gap_max_us, steady_gap_max_us;
static int64_t ramp_end_us = INT64_MAX; /* when every stream had its response headers */

static void
hist_add(struct hist *h, int64_t us)
{
    if (us < 0)
        us = 0;
    uint64_t k = (uint64_t)us / HIST_UNIT_US;
    h->b[k < HIST_BUCKETS ? k : HIST_BUCKETS - 1]++;
    h->n++;
    if (us > h->max_us)
        h->max_us = us;
}

/* The upper edge of the bucket that holds quantile q (0 < q <= 1), in us. */
static long long
hist_quantile(const struct hist *h, double q)
{
    if (h->n == 0)
        return -1;
    unsigned long want = (unsigned long)((double)h->n * q + 0.999999), seen = 0;
    if (want == 0)
        want = 1;
    for (uint32_t k = 0; k < HIST_BUCKETS; k++) {
        seen += h->b[k];
        if (seen >= want) {
            long long edge = (long long)(k + 1) * HIST_UNIT_US;
            return edge < h->max_us ? edge : (long long)h->max_us;
        }
    }
    return (long long)h->max_us;
}
static int epfd = -1;
static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int
parse_ulong(const char *flag, const char *v, unsigned long min, unsigned long max,
            unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long n = v ? strtoul(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || v[0] == '-' || n < min || n > max) {
        fprintf(stderr, "qwen-bench-load: %s needs an integer between %lu and %lu (got '%s')\n",
                flag, min, max, v ? v : "");
        return -1;
    }
    *out = n;
    return 0;
}

/* ---------- request and scenario text ---------- */

static int
build_request(unsigned long i, char *buf, size_t size)
{
    char body[256];
    int blen = snprintf(body, sizeof body,
                        "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":"
                        "\"bench stream %lu\"}],\"stream\":true}",
                        opt.model, i);
    if (blen < 0 || (size_t)blen >= sizeof body)
        return -1;
    int n = snprintf(buf, size,
                     "POST /api/chat/completions HTTP/1.1\r\n"
                     "Host: %s:%u\r\n"
                     "Authorization: Bearer %s%lu\r\n"
                     "Content-Type: application/json\r\n"
                     "Accept: text/event-stream\r\n"
                     "Connection: close\r\n"
                     "Content-Length: %d\r\n"
                     "\r\n"
                     "%s",
                     opt.host, opt.port, opt.prefix, i, blen, body);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

/* Appends the scenario objects for tokens [from, to) as a JSON array to a new string. */
static char *
scenario_json(unsigned long from, unsigned long to)
{
    size_t cap = (to - from) * (strlen(opt.prefix) + 128) + 16, len = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[len++] = '[';
    for (unsigned long i = from; i < to; i++) {
        int n = snprintf(s + len, cap - len,
                         "%s{\"token\":\"%s%lu\",\"route\":\"chat\",\"steps\":[{\"stream\":"
                         "{\"chunks\":%lu,\"chunk_delay_ms\":%lu}}]}",
                         i > from ? "," : "", opt.prefix, i, opt.chunks, opt.chunk_delay_ms);
        if (n < 0 || (size_t)n >= cap - len) {
            free(s);
            return NULL;
        }
        len += (size_t)n;
    }
    if (len + 2 > cap) {
        free(s);
        return NULL;
    }
    s[len++] = ']';
    s[len] = '\0';
    return s;
}

/* A blocking POST over a fresh connection; returns the HTTP status (or -1) and
 * copies the start of the response body into @p out. */
static int
http_post(const char *path, const char *body, char *out, size_t outlen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&control, sizeof control) != 0) {
        close(fd);
        return -1;
    }
    char head[256];
    size_t blen = strlen(body);
    int hn = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: %s:%u\r\nContent-Type: application/json\r\n"
                      "Connection: close\r\nContent-Length: %zu\r\n\r\n",
                      path, opt.host, opt.control_port, blen);
    const char *parts[2] = {head, body};
    size_t lens[2] = {(size_t)hn, blen};
    for (int p = 0; p < 2; p++) {
        size_t off = 0;
        while (off < lens[p]) {
            ssize_t w = send(fd, parts[p] + off, lens[p] - off, MSG_NOSIGNAL);
            if (w <= 0) {
                close(fd);
                return -1;
            }
            off += (size_t)w;
        }
    }
    char resp[4096];
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got == sizeof resp - 1)
            break;
    }
    close(fd);
    resp[got] = '\0';
    int status = -1;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    const char *b = strstr(resp, "\r\n\r\n");
    snprintf(out, outlen, "%s", b ? b + 4 : "");
    return status;
}

/* Queues one slow-stream step per bench token, in batches that stay well under
 * the mock's default 1 MiB body limit. */
static int
queue_steps(void)
{
    const unsigned long batch = 2000;
    for (unsigned long from = 0; from < opt.n; from += batch) {
        unsigned long to = from + batch < opt.n ? from + batch : opt.n;
        char *json = scenario_json(from, to);
        if (!json) {
            fprintf(stderr, "qwen-bench-load: out of memory building the scenario\n");
            return -1;
        }
        char out[256];
        int status = http_post("/__mock/scenarios", json, out, sizeof out);
        free(json);
        unsigned long queued = 0;
        if (status < 0) {
            fprintf(stderr, "qwen-bench-load: cannot reach qwen-mock at %s:%u\n", opt.host,
                    opt.control_port);
            return -1;
        }
        if (status != 200 || sscanf(out, "{\"queued\":%lu", &queued) != 1 || queued != to - from) {
            fprintf(stderr,
                    "qwen-bench-load: POST /__mock/scenarios failed (status %d, body '%s')\n",
                    status, out);
            return -1;
        }
    }
    return 0;
}

static int
write_scenario_file(const char *path)
{
    char *json = scenario_json(0, opt.n);
    if (!json) {
        fprintf(stderr, "qwen-bench-load: out of memory building the scenario\n");
        return 2;
    }
    FILE *f = fopen(path, "w");
    if (!f || fputs(json, f) == EOF || fputc('\n', f) == EOF) {
        fprintf(stderr, "qwen-bench-load: cannot write %s: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        free(json);
        return 2;
    }
    free(json);
    if (fclose(f) != 0) {
        fprintf(stderr, "qwen-bench-load: cannot write %s: %s\n", path, strerror(errno));
        return 2;
    }
    return 0;
}

/* ---------- connections ---------- */

enum outcome { OUT_COMPLETED, OUT_CONNECT, OUT_STATUS, OUT_CLOSED, OUT_TIMEOUT };

static void
finish(struct conn *c, enum outcome o)
{
    if (c->state == ST_FINISHED || c->state == ST_IDLE)
        return;
    if (c->state == ST_CONNECTING || c->state == ST_HEADERS)
        st.pending--;
    if (c->got_event)
        st.held_now--;
    st.open_now--;
    switch (o) {
    case OUT_COMPLETED:
        st.completed++;
        break;
    case OUT_CONNECT:
        st.err_connect++;
        break;
    case OUT_STATUS:
        st.err_status++;
        break;
    case OUT_CLOSED:
        st.err_closed++;
        break;
    case OUT_TIMEOUT:
        st.err_timeout++;
        break;
    }
    if (c->fd >= 0)
        close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    free(c->hdr);
    c->hdr = NULL;
    c->state = ST_FINISHED;
}

static void
start_conn(unsigned long i)
{
    struct conn *c = &conns[i];
    st.started++;
    st.open_now++;
    st.pending++;
    c->state = ST_CONNECTING;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        if (st.err_connect == 0)
            fprintf(stderr, "qwen-bench-load: socket: %s\n", strerror(errno));
        finish(c, OUT_CONNECT);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&server, sizeof server) != 0 && errno != EINPROGRESS) {
        if (st.err_connect == 0)
            fprintf(stderr, "qwen-bench-load: connect: %s\n", strerror(errno));
        finish(c, OUT_CONNECT);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = i};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        if (st.err_connect == 0)
            fprintf(stderr, "qwen-bench-load: epoll_ctl: %s\n", strerror(errno));
        finish(c, OUT_CONNECT);
    }
}

/* Writable: the connect finished; send (the rest of) the request. */
static void
on_writable(unsigned long i)
{
    struct conn *c = &conns[i];
    if (c->sent == 0) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            if (st.err_connect == 0)
                fprintf(stderr, "qwen-bench-load: connect: %s\n", strerror(err ? err : errno));
            finish(c, OUT_CONNECT);
            return;
        }
    }
    char req[768];
    int n = build_request(i, req, sizeof req);
    if (n < 0) {
        finish(c, OUT_CONNECT);
        return;
    }
    ssize_t w = send(c->fd, req + c->sent, (size_t)n - c->sent, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        if (st.err_connect == 0)
            fprintf(stderr, "qwen-bench-load: send: %s\n", strerror(errno));
        finish(c, OUT_CONNECT);
        return;
    }
    c->sent = (uint16_t)(c->sent + w);
    if (c->sent < n)
        return;
    c->hdr = malloc(HDR_MAX);
    if (!c->hdr) {
        finish(c, OUT_CONNECT);
        return;
    }
    c->hdr_len = 0;
    c->sent_us = now_us();
    c->state = ST_HEADERS;
    st.opened++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = i};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        finish(c, OUT_CONNECT);
}

/* One complete SSE line (without its LF). */
static void
sse_line(struct conn *c)
{
    size_t kept = c->line_len < LINE_KEEP ? c->line_len : LINE_KEEP;
    size_t len = c->line_len;
    if (kept == len && len > 0 && c->line[len - 1] == '\r') {
        kept--;
        len--;
    }
    if (kept >= 5 && memcmp(c->line, "data:", 5) == 0) {
        int64_t t = now_us();
        static const char done[] = "data: [DONE]";
        bool is_done = len == sizeof done - 1 && kept == len && memcmp(c->line, done, len) == 0;
        if (!c->got_event) {
            c->got_event = true;
            c->first_us = t;
            hist_add(&first_hist, t - c->sent_us);
            st.held_now++;
            if (st.held_now > st.held_peak)
                st.held_peak = st.held_now;
        } else {
            int64_t delay_us = (int64_t)opt.chunk_delay_ms * 1000;
            if (!is_done) {
                hist_add(&excess_hist, t - c->last_us - delay_us);
                hist_add(&lag_hist, t - c->first_us - (int64_t)c->events * delay_us);
            }
            if (t - c->last_us > gap_max_us)
                gap_max_us = t - c->last_us;
            if (c->last_us >= ramp_end_us) {
                if (!is_done)
                    hist_add(&steady_excess_hist, t - c->last_us - delay_us);
                if (t - c->last_us > steady_gap_max_us)
                    steady_gap_max_us = t - c->last_us;
            }
        }
        c->last_us = t;
        c->events++;
        st.events++;
        if (is_done)
            c->got_done = true;
    }
    c->line_len = 0;
}

static void
sse_feed(struct conn *c, const char *p, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (p[k] == '\n') {
            sse_line(c);
            continue;
        }
        if (c->line_len < LINE_KEEP)
            c->line[c->line_len] = p[k];
        c->line_len++;
    }
}

/* Feeds body bytes through the chunked decoder. Returns true once the last
 * (zero-size) chunk was seen. */
static bool
body_feed(struct conn *c, const char *p, size_t n)
{
    if (!c->chunked) {
        sse_feed(c, p, n);
        return false;
    }
    size_t k = 0;
    while (k < n) {
        char ch = p[k];
        switch (c->cstate) {
        case CH_SIZE:
            if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')) {
                unsigned d = ch <= '9' ? (unsigned)(ch - '0') : (unsigned)((ch | 0x20) - 'a' + 10);
                if (c->chunk_left > (UINT32_MAX >> 4))
                    return true; /* absurd size: treat as the end; [DONE] decides */
                c->chunk_left = c->chunk_left * 16 + d;
            } else if (ch == ';' || ch == ' ') {
                c->cstate = CH_EXT;
            } else if (ch == '\r') {
                c->cstate = CH_SIZE_LF;
            } else if (ch == '\n') {
                if (c->chunk_left == 0)
                    return true;
                c->cstate = CH_DATA;
            }
            k++;
            break;
        case CH_EXT:
            if (ch == '\r')
                c->cstate = CH_SIZE_LF;
            else if (ch == '\n') {
                if (c->chunk_left == 0)
                    return true;
                c->cstate = CH_DATA;
            }
            k++;
            break;
        case CH_SIZE_LF:
            k++;
            if (c->chunk_left == 0)
                return true; /* trailers, if any, are not read */
            c->cstate = CH_DATA;
            break;
        case CH_DATA: {
            size_t take = n - k < c->chunk_left ? n - k : c->chunk_left;
            sse_feed(c, p + k, take);
            k += take;
            c->chunk_left -= (uint32_t)take;
            if (c->chunk_left == 0)
                c->cstate = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            c->cstate = ch == '\r' ? CH_DATA_LF : CH_SIZE;
            if (ch == '\r' || ch == '\n')
                k++;
            break;
        case CH_DATA_LF:
            c->cstate = CH_SIZE;
            if (ch == '\n')
                k++;
            break;
        }
    }
    return false;
}

static bool
header_has(const char *hdr, const char *name, const char *value)
{
    size_t nlen = strlen(name);
    for (const char *l = strstr(hdr, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (strncasecmp(h, name, nlen) == 0 && h[nlen] == ':') {
            const char *eol = strstr(h, "\r\n");
            size_t vlen = strlen(value);
            for (const char *v = h + nlen + 1; eol && v + vlen <= eol; v++)
                if (strncasecmp(v, value, vlen) == 0)
                    return true;
        }
    }
    return false;
}

/* Readable: headers, then body. */
static void
on_readable(unsigned long i, char *buf, size_t bufsize)
{
    struct conn *c = &conns[i];
    ssize_t r = recv(c->fd, buf, bufsize, 0);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        finish(c, c->got_done ? OUT_COMPLETED : OUT_CLOSED);
        return;
    }
    if (r == 0) {
        /* EOF: a stream that sent [DONE] completed even if the last chunk was cut. */
        finish(c, c->got_done ? OUT_COMPLETED : OUT_CLOSED);
        return;
    }
    const char *p = buf;
    size_t n = (size_t)r;
    if (c->state == ST_HEADERS) {
        size_t room = HDR_MAX - 1 - c->hdr_len;
        size_t take = n < room ? n : room;
        memcpy(c->hdr + c->hdr_len, p, take);
        c->hdr_len = (uint16_t)(c->hdr_len + take);
        c->hdr[c->hdr_len] = '\0';
        char *end = strstr(c->hdr, "\r\n\r\n");
        if (!end) {
            if (c->hdr_len == HDR_MAX - 1)
                finish(c, OUT_STATUS);
            return;
        }
        size_t hlen = (size_t)(end - c->hdr) + 4;
        int status = 0;
        if (sscanf(c->hdr, "HTTP/1.%*d %d", &status) != 1 || status != 200) {
            if (st.err_status == 0)
                fprintf(stderr, "qwen-bench-load: stream %lu: status %d\n", i, status);
            finish(c, OUT_STATUS);
            return;
        }
        c->chunked = header_has(c->hdr, "Transfer-Encoding", "chunked");
        /* the body bytes of this read start after the headers */
        size_t body_off = hlen - (c->hdr_len - take);
        free(c->hdr);
        c->hdr = NULL;
        c->state = ST_BODY;
        st.pending--;
        st.responded++;
        p += body_off;
        n -= body_off;
    }
    if (n > 0 && body_feed(c, p, n))
        finish(c, c->got_done ? OUT_COMPLETED : OUT_CLOSED);
}

/* ---------- main ---------- */

static int
raise_fd_limit(unsigned long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        fprintf(stderr,
                "qwen-bench-load: %lu streams need %lu descriptors but the limit is %llu "
                "(ulimit -Hn)\n",
                opt.n, need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static void
print_progress(int64_t t0)
{
    fprintf(stderr,
            "qwen-bench-load: t=%.1fs started=%lu waiting=%lu open=%lu held=%lu (peak %lu) "
            "completed=%lu errors=%lu\n",
            (double)(now_ms() - t0) / 1000.0, st.started, st.pending, st.open_now, st.held_now,
            st.held_peak, st.completed,
            st.err_connect + st.err_status + st.err_closed + st.err_timeout);
}

int
main(int argc, char **argv)
{
    opt = (struct opts){.host = "127.0.0.1",
                        .n = 10000,
                        .chunks = 10,
                        .chunk_delay_ms = 1000,
                        .window = 1000,
                        .timeout_s = 120,
                        .prefix = "bench-",
                        .model = "qwen-max-latest",
                        .queue = true};
    bool have_port = false;
    for (int a = 1; a < argc; a++) {
        const char *f = argv[a];
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
        unsigned long x = 0;
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(f, "--host") == 0 && v) {
            opt.host = v;
            a++;
        } else if (strcmp(f, "--port") == 0) {
            if (parse_ulong(f, v, 1, 65535, &x))
                return 2;
            opt.port = (unsigned)x;
            have_port = true;
            a++;
        } else if (strcmp(f, "--control-port") == 0) {
            if (parse_ulong(f, v, 1, 65535, &x))
                return 2;
            opt.control_port = (unsigned)x;
            a++;
        } else if (strcmp(f, "-n") == 0 || strcmp(f, "--streams") == 0) {
            if (parse_ulong(f, v, 1, 1000000, &opt.n))
                return 2;
            a++;
        } else if (strcmp(f, "--chunks") == 0) {
            if (parse_ulong(f, v, 1, 256, &opt.chunks))
                return 2;
            a++;
        } else if (strcmp(f, "--chunk-delay-ms") == 0) {
            if (parse_ulong(f, v, 0, 600000, &opt.chunk_delay_ms))
                return 2;
            a++;
        } else if (strcmp(f, "--window") == 0) {
            if (parse_ulong(f, v, 1, 1000000, &opt.window))
                return 2;
            a++;
        } else if (strcmp(f, "--timeout-s") == 0) {
            if (parse_ulong(f, v, 1, 86400, &opt.timeout_s))
                return 2;
            a++;
        } else if (strcmp(f, "--token-prefix") == 0 && v && *v && strlen(v) < 64 &&
                   !strpbrk(v, "\"\\\r\n ")) {
            opt.prefix = v;
            a++;
        } else if (strcmp(f, "--model") == 0 && v && *v && strlen(v) < 64 &&
                   !strpbrk(v, "\"\\\r\n")) {
            opt.model = v;
            a++;
        } else if (strcmp(f, "--no-queue") == 0) {
            opt.queue = false;
        } else if (strcmp(f, "--write-scenario") == 0 && v) {
            opt.write_scenario = v;
            a++;
        } else if (strcmp(f, "--progress") == 0) {
            opt.progress = true;
        } else {
            fprintf(stderr, "qwen-bench-load: unknown or incomplete option '%s' (see --help)\n", f);
            return 2;
        }
    }
    if (opt.write_scenario)
        return write_scenario_file(opt.write_scenario);
    if (!have_port) {
        fprintf(stderr, "qwen-bench-load: --port is required (see --help)\n");
        return 2;
    }
    memset(&server, 0, sizeof server);
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &server.sin_addr) != 1) {
        fprintf(stderr, "qwen-bench-load: --host '%s' is not an IPv4 address\n", opt.host);
        return 2;
    }
    if (opt.control_port == 0)
        opt.control_port = opt.port;
    control = server;
    control.sin_port = htons((uint16_t)opt.control_port);
    if (raise_fd_limit(opt.n + 16) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (opt.queue && queue_steps() != 0)
        return 2;

    conns = calloc(opt.n, sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || epfd < 0) {
        fprintf(stderr, "qwen-bench-load: cannot set up: %s\n", strerror(errno));
        return 2;
    }
    for (unsigned long i = 0; i < opt.n; i++)
        conns[i].fd = -1;

    static char buf[65536];
    struct epoll_event evs[512];
    int64_t t0 = now_ms(), deadline = t0 + (int64_t)opt.timeout_s * 1000;
    int64_t ramp_ms = -1, next_progress = t0 + 1000;
    unsigned long next = 0;
    while (!interrupted) {
        while (next < opt.n && st.pending < opt.window)
            start_conn(next++);
        if (ramp_ms < 0 && next == opt.n && st.pending == 0) {
            ramp_ms = now_ms() - t0; /* every stream has its response headers */
            ramp_end_us = now_us();
        }
        if (next == opt.n && st.open_now == 0)
            break;
        int64_t now = now_ms();
        if (now >= deadline)
            break;
        if (opt.progress && now >= next_progress) {
            print_progress(t0);
            next_progress += 1000;
        }
        int wait = (int)(next_progress - now);
        if (wait < 0)
            wait = 0;
        if (wait > 1000)
            wait = 1000;
        int k = epoll_wait(epfd, evs, (int)(sizeof evs / sizeof evs[0]), wait);
        if (k < 0 && errno != EINTR) {
            fprintf(stderr, "qwen-bench-load: epoll_wait: %s\n", strerror(errno));
            break;
        }
        for (int e = 0; e < k; e++) {
            unsigned long i = (unsigned long)evs[e].data.u64;
            struct conn *c = &conns[i];
            if (c->state == ST_CONNECTING) {
                if (evs[e].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    on_writable(i);
            } else if (c->state == ST_HEADERS || c->state == ST_BODY) {
                on_readable(i, buf, sizeof buf);
            }
        }
    }
    int64_t elapsed = now_ms() - t0;
    if (opt.progress)
        print_progress(t0);
    /* Whatever is still open at the deadline (or on a signal) timed out. */
    for (unsigned long i = 0; i < opt.n; i++)
        if (conns[i].state != ST_IDLE && conns[i].state != ST_FINISHED)
            finish(&conns[i], OUT_TIMEOUT);
    st.err_timeout += opt.n - next; /* never started */
    unsigned long errors = st.err_connect + st.err_status + st.err_closed + st.err_timeout;
    printf("requested=%lu opened=%lu responded=%lu held_peak=%lu completed=%lu events=%lu "
           "errors=%lu err_connect=%lu err_status=%lu err_closed=%lu err_timeout=%lu ramp_ms=%lld "
           "elapsed_ms=%lld excess_p50_us=%lld excess_p99_us=%lld lag_p50_us=%lld lag_p99_us=%lld "
           "lag_max_us=%lld gap_max_us=%lld first_p50_us=%lld first_p99_us=%lld "
           "steady_excess_p99_us=%lld steady_gap_max_us=%lld\n",
           opt.n, st.opened, st.responded, st.held_peak, st.completed, st.events, errors,
           st.err_connect, st.err_status, st.err_closed, st.err_timeout, (long long)ramp_ms,
           (long long)elapsed, hist_quantile(&excess_hist, 0.5), hist_quantile(&excess_hist, 0.99),
           hist_quantile(&lag_hist, 0.5), hist_quantile(&lag_hist, 0.99),
           (long long)lag_hist.max_us, (long long)gap_max_us, hist_quantile(&first_hist, 0.5),
           hist_quantile(&first_hist, 0.99), hist_quantile(&steady_excess_hist, 0.99),
           (long long)steady_gap_max_us);
    fflush(stdout);
    close(epfd);
    free(conns);
    return errors == 0 && st.completed == opt.n ? 0 : 1;
}
