#include "log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The UTC timestamp of the current second, formatted once per second per thread (gmtime_r
 * and strftime cost more than the rest of a request line). */
static const char *
timestamp(void)
{
    static _Thread_local time_t sec = (time_t)-1;
    static _Thread_local char text[32];
    time_t now = time(NULL);
    if (now != sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
        sec = now;
    }
    return text;
}

/* A request line being built: text appended in place, cut (never overrun) at its end. */
struct line {
    char buf[640];
    size_t n;
};

static void
put_str(struct line *l, const char *s)
{
    size_t len = strlen(s);
    if (len > sizeof(l->buf) - l->n)
        len = sizeof(l->buf) - l->n;
    memcpy(l->buf + l->n, s, len);
    l->n += len;
}

/* Appends at most @p max bytes of @p s, anything that could break a log line as '?'. */
static void
put_clean(struct line *l, const char *s, size_t max)
{
    for (size_t i = 0; s && s[i] && i < max && l->n < sizeof(l->buf); i++) {
        unsigned char c = (unsigned char)s[i];
        l->buf[l->n++] = (c <= ' ' || c == '"' || c == '\\' || c >= 0x7f) ? '?' : (char)c;
    }
}

static void
put_int(struct line *l, long long v)
{
    char digits[24];
    size_t i = sizeof(digits);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        digits[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        digits[--i] = '-';
    size_t len = sizeof(digits) - i;
    if (len > sizeof(l->buf) - l->n)
        len = sizeof(l->buf) - l->n;
    memcpy(l->buf + l->n, digits + i, len);
    l->n += len;
}

/* One write(2) per line: stderr is unbuffered, so nothing of stdio's is pending, and lines
 * of two threads never interleave. */
static void
write_line(const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere to report it */
        p += w;
        n -= (size_t)w;
    }
}

void
qp_log_request(enum qk_proxy_log_format format, const struct qp_log_entry *e)
{
    if (format == QK_PROXY_LOG_OFF)
        return;
    const char *ts = timestamp();

    if (format == QK_PROXY_LOG_JSON) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "ts", ts);
        cJSON_AddStringToObject(o, "id", e->request_id);
        cJSON_AddStringToObject(o, "method", e->method);
        cJSON_AddStringToObject(o, "path", e->path);
        cJSON_AddNumberToObject(o, "status", e->status);
        cJSON_AddNumberToObject(o, "attempts", e->attempts);
        cJSON_AddStringToObject(o, "cache", e->cache);
        cJSON_AddNumberToObject(o, "latency_ms", (double)e->latency_ms);
        cJSON_AddStringToObject(o, "token", e->token);
        char *line = cJSON_PrintUnformatted(o);
        if (line)
            fprintf(stderr, "%s\n", line);
        free(line);
        cJSON_Delete(o);
        return;
    }
    /* By hand rather than fprintf: this runs once per request. The field widths are those
     * the request struct holds (id 79, method 19, path 135 bytes at most). */
    struct line l;
    l.n = 0;
    put_str(&l, ts);
    put_str(&l, " qwen-proxy id=");
    put_clean(&l, e->request_id, 79);
    put_str(&l, " method=");
    put_clean(&l, e->method, 19);
    put_str(&l, " path=");
    put_clean(&l, e->path, 135);
    put_str(&l, " status=");
    put_int(&l, e->status);
    put_str(&l, " attempts=");
    put_int(&l, e->attempts);
    put_str(&l, " cache=");
    put_str(&l, e->cache);
    put_str(&l, " latency_ms=");
    put_int(&l, e->latency_ms);
    put_str(&l, " token=");
    put_str(&l, e->token);
    if (l.n == sizeof(l.buf))
        l.n--; /* room for the newline; the fields above never fill it */
    l.buf[l.n++] = '\n';
    write_line(l.buf, l.n);
}

void
qp_log_note(enum qk_proxy_log_format format, enum qp_log_level level, const char *module,
            const char *fmt, ...)
{
    if (format == QK_PROXY_LOG_OFF)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    for (char *p = msg; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < ' ' || c >= 0x7f)
            *p = '?';
    }
    if (format == QK_PROXY_LOG_TEXT) {
        fprintf(stderr, "qwen-proxy: %s: %s\n", module, msg);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    char *line = NULL;
    if (o &&
        cJSON_AddStringToObject(o, "level",
                                level == QP_LOG_ERROR  ? "error"
                                : level == QP_LOG_INFO ? "info"
                                                       : "warn") &&
        cJSON_AddStringToObject(o, "module", module) && cJSON_AddStringToObject(o, "msg", msg))
        line = cJSON_PrintUnformatted(o);
    if (line)
        fprintf(stderr, "%s\n", line);
    cJSON_free(line);
    cJSON_Delete(o);
}
