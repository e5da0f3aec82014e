#include "conf_launch.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conf_spawn.h"
#include "qwenkit/mock.h"

enum { ARGV_MAX = 48, ARG_TEXT = 64, START_TIMEOUT_MS = 15000 };

struct conf_launch {
    struct qk_mock *mock;
    struct conf_child *proxy;
    struct conf_child *unreachable_proxy;
    int refusing_fd;
    char proxy_log[256];
    char unreachable_log[256];
    /* What a restart needs (borrowed from conf_launch_start()'s caller). */
    const struct conf_launch_options *opts;
    const struct conf_profile *profile;
    const struct conf_env *env;
    unsigned restarts;
};

/* The proxy's command line for @p upstream, from the profile and the extra arguments. */
struct argv_builder {
    const char *argv[ARGV_MAX + 1];
    char text[ARGV_MAX][ARG_TEXT];
    size_t n;
};

static void
add(struct argv_builder *b, const char *arg)
{
    if (b->n < ARGV_MAX)
        b->argv[b->n++] = arg;
    b->argv[b->n] = NULL;
}

static void
add_int(struct argv_builder *b, long long v)
{
    if (b->n >= ARGV_MAX)
        return;
    snprintf(b->text[b->n], ARG_TEXT, "%lld", v);
    add(b, b->text[b->n]);
}

/* The proxy takes decimal seconds; the profile has milliseconds. */
static void
add_seconds(struct argv_builder *b, long long ms)
{
    if (b->n >= ARGV_MAX)
        return;
    snprintf(b->text[b->n], ARG_TEXT, "%lld.%03lld", ms / 1000, ms % 1000);
    add(b, b->text[b->n]);
}

static void
build_argv(struct argv_builder *b, const struct conf_launch_options *opts,
           const struct conf_profile *p, const char *upstream, unsigned port)
{
    b->n = 0;
    add(b, opts->proxy_bin);
    add(b, "--listen");
    add(b, "127.0.0.1");
    add(b, "--port");
    add_int(b, port);
    add(b, "--upstream");
    add(b, upstream);
    add(b, "--cache-ttl");
    add_seconds(b, p->cache_ttl_ms);
    add(b, "--max-retries");
    add_int(b, p->max_retries);
    add(b, "--retry-base-ms");
    add_int(b, p->retry_base_ms);
    add(b, "--retry-after-cap");
    add_seconds(b, p->retry_after_cap_ms);
    add(b, "--upstream-timeout");
    add_seconds(b, p->upstream_timeout_ms);
    add(b, "--max-body");
    add_int(b, (long long)p->max_body);
    add(b, "--stale-grace");
    add_seconds(b, p->stale_grace_ms);
    if (p->cache_max_entries > 0) {
        add(b, "--cache-max-entries");
        add_int(b, (long long)p->cache_max_entries);
    }
    if (p->deadline_ms > 0) {
        add(b, "--deadline-ms");
        add_int(b, p->deadline_ms);
    }
    add(b, "--stream-idle-timeout");
    add_seconds(b, p->stream_idle_timeout_ms);
    if (p->keepalive_interval_ms > 0) {
        add(b, "--keepalive-interval");
        add_seconds(b, p->keepalive_interval_ms);
    }
    if (p->receive_timeout_ms > 0) {
        add(b, "--receive-timeout");
        add_seconds(b, p->receive_timeout_ms);
    }
    add(b, "--cors-origins");
    add(b, p->cors_origins);
    /* The profile's dialect, always said: the proxy's default need not be the profile's. */
    add(b, "--upstream-dialect");
    add(b, conf_dialect_is_v2(conf_profile_dialect(p)) ? "v2" : "v1");
    for (size_t i = 0; i < opts->extra_count; i++)
        add(b, opts->extra_args[i]);
}

static enum qk_err
make_log_path(char *path, size_t len, const char *what)
{
    snprintf(path, len, "/tmp/qwen-conformance-%s-XXXXXX", what);
    int fd = mkstemp(path);
    if (fd < 0) {
        path[0] = '\0';
        return QK_IO;
    }
    close(fd);
    return QK_OK;
}

static enum qk_err
start_mock(struct conf_launch *l, struct conf_env *env, char *err, size_t errlen)
{
    struct qk_mock_config cfg;
    qk_mock_config_init(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    enum qk_err rc = qk_mock_start(&cfg, &l->mock, err, errlen);
    if (rc == QK_OK)
        snprintf(env->mock_url, sizeof(env->mock_url), "http://127.0.0.1:%u",
                 (unsigned)qk_mock_port(l->mock));
    return rc;
}

static enum qk_err
start_proxy(const struct conf_launch_options *opts, const struct conf_profile *p,
            const char *upstream, unsigned port, const char *log, struct conf_child **child,
            char *url, size_t urllen, char *err, size_t errlen)
{
    struct argv_builder b;
    build_argv(&b, opts, p, upstream, port);
    return conf_child_start(b.argv, log[0] ? log : NULL, START_TIMEOUT_MS, child, url, urllen, err,
                            errlen);
}

enum qk_err
conf_launch_start(const struct conf_launch_options *opts, const struct conf_profile *profile,
                  struct conf_env *env, struct conf_launch **out, char *err, size_t errlen)
{
    enum qk_err rc = QK_OK;
    struct conf_launch *l = calloc(1, sizeof(*l));
    char dead_upstream[64];
    unsigned dead_port = 0;

    *out = NULL;
    if (!l)
        return QK_NOMEM;
    l->refusing_fd = -1;
    /* The suite writes to sockets of children that may have died. */
    signal(SIGPIPE, SIG_IGN);
    rc = start_mock(l, env, err, errlen);
    if (rc != QK_OK)
        goto out;
    if (make_log_path(l->proxy_log, sizeof(l->proxy_log), "proxy") != QK_OK ||
        make_log_path(l->unreachable_log, sizeof(l->unreachable_log), "proxy-unreachable") !=
            QK_OK) {
        snprintf(err, errlen, "cannot create log files in /tmp");
        rc = QK_IO;
        goto out;
    }
    l->opts = opts;
    l->profile = profile;
    l->env = env;
    rc = start_proxy(opts, profile, env->mock_url, 0, l->proxy_log, &l->proxy, env->proxy_url,
                     sizeof(env->proxy_url), err, errlen);
    if (rc != QK_OK)
        goto out;
    snprintf(env->proxy_log, sizeof(env->proxy_log), "%s", l->proxy_log);
    /* A port bound but never listening refuses every connection. */
    l->refusing_fd = conf_reserve_refusing_port(&dead_port);
    if (l->refusing_fd >= 0) {
        snprintf(dead_upstream, sizeof(dead_upstream), "http://127.0.0.1:%u", dead_port);
        rc = start_proxy(opts, profile, dead_upstream, 0, l->unreachable_log, &l->unreachable_proxy,
                         env->unreachable_url, sizeof(env->unreachable_url), err, errlen);
        if (rc != QK_OK)
            goto out;
    }
out:
    if (rc != QK_OK) {
        conf_launch_stop(l, 1);
        l = NULL;
    }
    *out = l;
    return rc;
}

bool
conf_launch_restart_proxy(void *arg)
{
    struct conf_launch *l = arg;
    const char *colon = strrchr(l->env->proxy_url, ':');
    unsigned port = colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
    int status = conf_child_stop(l->proxy);
    l->proxy = NULL;
    /* Keep what the proxy wrote before it died; the new one writes to the same path. */
    char kept[sizeof(l->proxy_log) + 32];
    snprintf(kept, sizeof(kept), "%s.died-%u", l->proxy_log, ++l->restarts);
    if (rename(l->proxy_log, kept) == 0)
        fprintf(stderr, "qwen-conformance: the proxy died (wait status 0x%x); its log: %s\n",
                (unsigned)status, kept);
    char url[CONF_URL_MAX], err[256];
    enum qk_err rc = start_proxy(l->opts, l->profile, l->env->mock_url, port, l->proxy_log,
                                 &l->proxy, url, sizeof(url), err, sizeof(err));
    if (rc != QK_OK) {
        fprintf(stderr, "qwen-conformance: cannot restart the proxy: %s\n", err);
        return false;
    }
    return strcmp(url, l->env->proxy_url) == 0;
}

/* Stops @p c; @return true when it did not exit cleanly. */
static bool
stop_child(struct conf_child *c, const char *what)
{
    if (!c)
        return false;
    int status = conf_child_stop(c);
    /* A clean proxy exits 0 on SIGTERM; anything else (a sanitizer report, a crash) is
     * worth a look even when every test passed. */
    if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return false;
    fprintf(stderr, "warning: %s did not exit cleanly (wait status 0x%x)\n", what,
            (unsigned)status);
    return true;
}

void
conf_launch_stop(struct conf_launch *l, int keep_logs)
{
    if (!l)
        return;
    bool keep[2];
    keep[0] = stop_child(l->proxy, "the proxy") || keep_logs;
    keep[1] = stop_child(l->unreachable_proxy, "the proxy (unreachable upstream)") || keep_logs;
    qk_mock_stop(l->mock);
    if (l->refusing_fd >= 0)
        close(l->refusing_fd);
    const char *logs[] = {l->proxy_log, l->unreachable_log};
    for (size_t i = 0; i < 2; i++) {
        if (!logs[i][0])
            continue;
        if (keep[i])
            fprintf(stderr, "proxy log kept: %s\n", logs[i]);
        else
            unlink(logs[i]);
    }
    free(l);
}
