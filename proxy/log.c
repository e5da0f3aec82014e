#include "log.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Copies @p s with anything that could break a log line replaced by '?'. */
static void
sanitize(const char *s, char *out, size_t cap)
{
    size_t i = 0;
    for (; s && s[i] && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c <= ' ' || c == '"' || c == '\\' || c >= 0x7f) ? '?' : (char)c;
    }
    out[i] = '\0';
}

void
qp_log_request(enum qk_proxy_log_format format, const struct qp_log_entry *e)
{
    if (format == QK_PROXY_LOG_OFF)
        return;
    char ts[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);

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
    char id[80], method[20], path[136];
    sanitize(e->request_id, id, sizeof(id));
    sanitize(e->method, method, sizeof(method));
    sanitize(e->path, path, sizeof(path));
    fprintf(stderr,
            "%s qwen-proxy id=%s method=%s path=%s status=%u attempts=%u cache=%s "
            "latency_ms=%lld token=%s\n",
            ts, id, method, path, e->status, e->attempts, e->cache, (long long)e->latency_ms,
            e->token);
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
    if (o && cJSON_AddStringToObject(o, "level", level == QP_LOG_ERROR ? "error" : "warn") &&
        cJSON_AddStringToObject(o, "module", module) && cJSON_AddStringToObject(o, "msg", msg))
        line = cJSON_PrintUnformatted(o);
    if (line)
        fprintf(stderr, "%s\n", line);
    cJSON_free(line);
    cJSON_Delete(o);
}
