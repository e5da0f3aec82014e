/*
 * qwen-proxy: the reference proxy, as a program.
 *
 * Threading: SIGINT, SIGTERM and SIGHUP are blocked before any thread starts, so every
 * thread (libmicrohttpd's epoll pool, the upstream loop, the connection watchdog) inherits
 * the mask and the main thread alone takes them with sigwait().
 *
 * Stopping: the first SIGTERM or SIGINT drains (no new connections, requests in progress
 * finish) for up to --drain-timeout; a second one, or the timeout, stops at once, ending
 * the streams still running with an error event. SIGHUP is logged and ignored: there is
 * nothing to reload, and a closed terminal must not take the service down.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "qwenkit/proxy.h"

/* Lifecycle notes go to stderr with the request log, only in its text format. */
static bool say_notes = true;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
note(const char *fmt, ...)
{
    if (!say_notes)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("qwen-proxy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static const char *
env_lookup(const char *name)
{
    return getenv(name);
}

/* A warning goes out in the log's format, JSON included (the notes are text only);
 * nothing with --log-format off or --log-level error. */
static void
warn(const struct qk_proxy_config *cfg, const char *msg)
{
    enum qk_proxy_log_format format = cfg->log_format;
    if (cfg->log_level < QK_PROXY_LOG_LEVEL_WARN)
        return;
    if (format == QK_PROXY_LOG_TEXT)
        fprintf(stderr, "qwen-proxy: warning: %s\n", msg);
    else if (format == QK_PROXY_LOG_JSON) /* msg holds no quote or backslash */
        fprintf(stderr, "{\"level\":\"warn\",\"module\":\"limits\",\"msg\":\"%s\"}\n", msg);
}

/*
 * Every stream holds two descriptors (the caller's socket and its upstream transfer), so
 * the soft descriptor limit (often 1,024) is raised to the hard one first. Without
 * --max-connections the limit is what fits; a larger --max-connections is kept as asked,
 * with a warning, since the streams beyond what fits would fail with 502.
 */
static void
fit_descriptor_limit(struct qk_proxy_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit raised = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    unsigned long long limit = rl.rlim_cur == RLIM_INFINITY ? ULLONG_MAX : rl.rlim_cur;
    unsigned fit = qk_proxy_connections_for_descriptors(limit, cfg->threads);
    if (cfg->max_connections == 0) {
        cfg->max_connections = fit;
        note("max connections %u (descriptor limit %llu)", fit, limit);
        return;
    }
    unsigned long long need = qk_proxy_descriptors_needed(cfg->max_connections, cfg->threads);
    if (need <= limit)
        return;
    char msg[256];
    snprintf(msg, sizeof(msg),
             "--max-connections %u needs %llu descriptors, the limit is %llu: beyond %u "
             "connections, streams fail (raise ulimit -n, or lower --max-connections)",
             cfg->max_connections, need, limit, fit);
    warn(cfg, msg);
}

/* One line at start with every setting in effect, none secret (qk_proxy_config_describe):
 * what a service's log needs to tell how it ran. */
static void
log_config(const struct qk_proxy_config *cfg, unsigned port)
{
    if (cfg->log_format == QK_PROXY_LOG_OFF || cfg->log_level < QK_PROXY_LOG_LEVEL_INFO)
        return;
    static char described[8192];
    qk_proxy_config_describe(cfg, described, sizeof(described));
    if (cfg->log_format == QK_PROXY_LOG_TEXT) {
        fprintf(stderr, "qwen-proxy: config: %s (listening on port %u)\n", described, port);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    char *line = NULL;
    if (o && cJSON_AddStringToObject(o, "level", "info") &&
        cJSON_AddStringToObject(o, "module", "config") &&
        cJSON_AddStringToObject(o, "msg", "started") && cJSON_AddNumberToObject(o, "port", port) &&
        cJSON_AddStringToObject(o, "config", described))
        line = cJSON_PrintUnformatted(o);
    if (line)
        fprintf(stderr, "%s\n", line);
    cJSON_free(line);
    cJSON_Delete(o);
}

/* Waits for SIGTERM or SIGINT; SIGHUP is ignored on the way. */
static void
wait_for_stop(const sigset_t *signals)
{
    for (;;) {
        int sig = 0;
        if (sigwait(signals, &sig) != 0 || sig != SIGHUP)
            return;
        note("SIGHUP ignored (nothing to reload)");
    }
}

/* Waits up to @p ms (at most 100) for a signal: @return true for a second stop signal
 * (stop now); SIGHUP is noted and ignored. */
static bool
stop_signal_within(const sigset_t *signals, int64_t ms)
{
    if (ms > 100)
        ms = 100;
    struct timespec tick = {0, (long)ms * 1000000L};
    int sig = sigtimedwait(signals, NULL, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
        note("second signal: stopping now");
        return true;
    }
    if (sig == SIGHUP)
        note("SIGHUP ignored (nothing to reload)");
    return false;
}

/* Answers /readyz 503 for @p delay_ms while serving everything else (--drain-delay), so
 * that load balancers stop sending new requests before the drain. @return false when a
 * second stop signal came meanwhile: stop now. */
static bool
unready_for(struct qk_proxy *proxy, const sigset_t *signals, int64_t delay_ms)
{
    if (delay_ms <= 0)
        return true;
    qk_proxy_set_unready(proxy);
    note("not ready: serving %lld ms more before the drain (signal again to stop now)",
         (long long)delay_ms);
    int64_t until = qk_now_ms() + delay_ms;
    for (int64_t left; (left = until - qk_now_ms()) > 0;) {
        if (stop_signal_within(signals, left))
            return false;
    }
    return true;
}

/* Drains until no connection is left, @p timeout_ms passes, or a second stop signal. */
static void
drain(struct qk_proxy *proxy, const sigset_t *signals, int64_t timeout_ms)
{
    note("draining: %u connections, up to %lld ms (signal again to stop now)",
         qk_proxy_open_connections(proxy), (long long)timeout_ms);
    qk_proxy_drain(proxy);
    int64_t until = qk_now_ms() + timeout_ms;
    while (qk_proxy_open_connections(proxy) > 0) {
        int64_t left = until - qk_now_ms();
        if (left <= 0) {
            note("drain timeout: ending %u connections", qk_proxy_open_connections(proxy));
            return;
        }
        if (stop_signal_within(signals, left))
            return;
    }
}

int
main(int argc, char **argv)
{
    struct qk_proxy_config cfg;
    enum qk_proxy_cli_action action = QK_PROXY_CLI_RUN;
    char err[512];

    qk_proxy_config_init(&cfg);
    if (qk_proxy_config_from_args(&cfg, argc, argv, env_lookup, &action, err, sizeof(err)) !=
        QK_OK) {
        fprintf(stderr, "qwen-proxy: %s\n", err);
        qk_proxy_config_release(&cfg);
        return 2;
    }
    if (action == QK_PROXY_CLI_HELP) {
        fputs(qk_proxy_usage(), stdout);
        qk_proxy_config_release(&cfg);
        return 0;
    }
    if (action == QK_PROXY_CLI_VERSION) {
        printf("qwen-proxy %s%s\n", qk_proxy_version(),
               qk_proxy_mutants_available() ? " (mutants built in)" : "");
        qk_proxy_config_release(&cfg);
        return 0;
    }

    say_notes = cfg.log_format == QK_PROXY_LOG_TEXT && cfg.log_level >= QK_PROXY_LOG_LEVEL_INFO;
    fit_descriptor_limit(&cfg);
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "qwen-proxy: curl_global_init failed\n");
        qk_proxy_config_release(&cfg);
        return 1;
    }
    struct qk_proxy *proxy = NULL;
    if (qk_proxy_start(&cfg, &proxy, err, sizeof(err)) != QK_OK) {
        fprintf(stderr, "qwen-proxy: %s\n", err);
        curl_global_cleanup();
        qk_proxy_config_release(&cfg);
        return 1;
    }
    bool v6 = strchr(cfg.listen_host, ':') != NULL;
    printf("listening on http://%s%s%s:%u\n", v6 ? "[" : "", cfg.listen_host, v6 ? "]" : "",
           (unsigned)qk_proxy_port(proxy));
    fflush(stdout);
    log_config(&cfg, qk_proxy_port(proxy));

    wait_for_stop(&signals);
    if (unready_for(proxy, &signals, cfg.drain_delay_ms))
        drain(proxy, &signals, cfg.drain_timeout_ms);
    qk_proxy_stop(proxy);
    curl_global_cleanup();
    qk_proxy_config_release(&cfg);
    return 0;
}
