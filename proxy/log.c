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

#include "metrics.h"

static const char *const LEVEL_NAMES[] = {
    [QK_PROXY_LOG_LEVEL_ERROR] = "error",
    [QK_PROXY_LOG_LEVEL_WARN] = "warn",
    [QK_PROXY_LOG_LEVEL_INFO] = "info",
};

bool
qp_log_level_parse(const char *s, enum qk_proxy_log_level *out)
{
    for (size_t i = 0; s && i < sizeof LEVEL_NAMES / sizeof LEVEL_NAMES[0]; i++)
        if (strcmp(s, LEVEL_NAMES[i]) == 0) {
            *out = (enum qk_proxy_log_level)i;
            return true;
        }
    return false;
}

const char *
qp_log_level_name(enum qk_proxy_log_level level)
{
    return (size_t)level < sizeof LEVEL_NAMES / sizeof LEVEL_NAMES[0] ? LEVEL_NAMES[level] : "info";
}

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

/* One failure's name ("status_502", "cut_inband") in @p out. */
static void
failure_name(const struct qp_log_failure *f, char *out, size_t len)
{
    enum qp_metric_cause c = (enum qp_metric_cause)f->cause;
    bool with_status =
        c == QP_METRIC_CAUSE_STATUS || c == QP_METRIC_CAUSE_HTML || c == QP_METRIC_CAUSE_REFUSED;
    if (with_status)
        snprintf(out, len, "%s%s_%u", f->after_start ? "cut_" : "", qp_metric_cause_name(c),
                 (unsigned)f->status);
    else
        snprintf(out, len, "%s%s", f->after_start ? "cut_" : "", qp_metric_cause_name(c));
}

/* A request line's level: warn for an answer that failed the caller. */
static enum qp_log_level
request_level(const struct qp_log_entry *e)
{
    return e->status >= 500 || e->cut ? QP_LOG_WARN : QP_LOG_INFO;
}

static void
put_failures(struct line *l, const struct qp_log_entry *e)
{
    if (e->n_failures == 0 && !e->cut) {
        put_str(l, "-");
        return;
    }
    unsigned shown = e->n_failures < QP_LOG_FAILURES ? e->n_failures : QP_LOG_FAILURES;
    for (unsigned i = 0; i < shown; i++) {
        char name[32];
        failure_name(&e->failures[i], name, sizeof name);
        if (i > 0)
            put_str(l, ",");
        put_str(l, name);
    }
    if (e->n_failures > shown) {
        put_str(l, ",+");
        put_int(l, e->n_failures - shown);
    }
    if (e->cut) {
        char name[32];
        failure_name(e->cut, name, sizeof name);
        if (e->n_failures)
            put_str(l, ",");
        put_str(l, name);
    }
}

static void
log_request_json(const char *ts, enum qp_log_level level, const struct qp_log_entry *e)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ts", ts);
    cJSON_AddStringToObject(o, "level", qp_log_level_name((enum qk_proxy_log_level)level));
    cJSON_AddStringToObject(o, "id", e->request_id);
    cJSON_AddStringToObject(o, "method", e->method);
    cJSON_AddStringToObject(o, "path", e->path);
    cJSON_AddNumberToObject(o, "status", e->status);
    cJSON_AddNumberToObject(o, "attempts", e->attempts);
    cJSON_AddStringToObject(o, "cache", e->cache);
    cJSON_AddNumberToObject(o, "latency_ms", (double)e->latency_ms);
    cJSON_AddStringToObject(o, "token", e->token);
    cJSON *failures = cJSON_AddArrayToObject(o, "failures");
    char name[32];
    for (unsigned i = 0; failures && i < e->n_failures && i < QP_LOG_FAILURES; i++) {
        failure_name(&e->failures[i], name, sizeof name);
        cJSON_AddItemToArray(failures, cJSON_CreateString(name));
    }
    if (failures && e->cut) {
        failure_name(e->cut, name, sizeof name);
        cJSON_AddItemToArray(failures, cJSON_CreateString(name));
    }
    if (e->n_failures > QP_LOG_FAILURES)
        cJSON_AddNumberToObject(o, "failures_not_listed", e->n_failures - QP_LOG_FAILURES);
    char *line = cJSON_PrintUnformatted(o);
    if (line)
        fprintf(stderr, "%s\n", line);
    free(line);
    cJSON_Delete(o);
}

void
qp_log_request(struct qp_log log, const struct qp_log_entry *e)
{
    enum qp_log_level level = request_level(e);
    if (log.format == QK_PROXY_LOG_OFF || (int)level > (int)log.level)
        return;
    const char *ts = timestamp();

    if (log.format == QK_PROXY_LOG_JSON) {
        log_request_json(ts, level, e);
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
    put_str(&l, " failures=");
    put_failures(&l, e);
    if (l.n == sizeof(l.buf))
        l.n--; /* room for the newline; the fields above never fill it */
    l.buf[l.n++] = '\n';
    write_line(l.buf, l.n);
}

void
qp_log_note(struct qp_log log, enum qp_log_level level, const char *module, const char *fmt, ...)
{
    if (log.format == QK_PROXY_LOG_OFF || (int)level > (int)log.level)
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
    if (log.format == QK_PROXY_LOG_TEXT) {
        fprintf(stderr, "qwen-proxy: %s: %s\n", module, msg);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    char *line = NULL;
    if (o &&
        cJSON_AddStringToObject(o, "level", qp_log_level_name((enum qk_proxy_log_level)level)) &&
        cJSON_AddStringToObject(o, "module", module) && cJSON_AddStringToObject(o, "msg", msg))
        line = cJSON_PrintUnformatted(o);
    if (line)
        fprintf(stderr, "%s\n", line);
    cJSON_free(line);
    cJSON_Delete(o);
}
