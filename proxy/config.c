/*
 * Configuration: defaults, environment variables and command-line flags.
 *
 * Every option is one row of QP_OPTION_MAP (flag, environment variable, value kind,
 * field, help text), so the parser, the environment lookup and --help cannot drift.
 */
#include "qwenkit/proxy.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qwenkit/buf.h"

#include "decoder.h"
#include "dialect.h"
#include "headers.h"
#include "log.h"
#include "mutant.h"

enum opt_kind {
    OPT_STRING,  /* const char * */
    OPT_URL,     /* const char *, http:// or https:// */
    OPT_PORT,    /* uint16_t */
    OPT_SECONDS, /* int64_t milliseconds, given as decimal seconds */
    OPT_MS,      /* int64_t milliseconds */
    OPT_UINT,    /* unsigned */
    OPT_SIZE,    /* size_t */
    OPT_LOGFMT,  /* enum qk_proxy_log_format */
    OPT_LOGLVL,  /* enum qk_proxy_log_level */
    OPT_MUTANT,  /* const char *, checked against the mutant table */
    OPT_DIALECT, /* const char *, a name qp_dialect_find() knows */
    OPT_REASON,  /* const char *, separate|inline|drop */
    OPT_BOOL,    /* bool; the flag alone means true, --flag=false turns it off */
    OPT_HEADER,  /* const char *[]: repeatable, each value "Name: value" (lines) */
    OPT_CONFIG,  /* const char *, the settings file; read before everything else */
};

/* flag, env suffix, kind, field, min, max, help */
#define QP_OPTION_MAP(XX)                                                                          \
    XX("listen", "LISTEN", OPT_STRING, listen_host, 0, 0, "ADDR  address to bind (127.0.0.1)")     \
    XX("port", "PORT", OPT_PORT, port, 0, 65535, "N  TCP port, 0 picks a free one (8000)")         \
    XX("upstream-dialect", "UPSTREAM_DIALECT", OPT_DIALECT, upstream_dialect, 0, 0,                \
       "v1|v2  the upstream's API: v2 is chat.qwen.ai's (a chat created, then a completion "       \
       "streamed into it, the history sent as one message), v1 the older chat.qwenlm.ai one "      \
       "(" QP_DIALECT_DEFAULT ")")                                                                 \
    XX("upstream", "UPSTREAM", OPT_URL, upstream, 0, 0,                                            \
       "URL  Qwen web-chat base URL (the dialect's: https://chat.qwen.ai for v2, "                 \
       "https://chat.qwenlm.ai for v1)")                                                           \
    XX("reasoning", "REASONING", OPT_REASON, reasoning, 0, 0,                                      \
       "separate|inline|drop  the model's reasoning (v2): `reasoning_content` beside the "         \
       "content, `<think>...</think>` before it, or not at all (separate)")                        \
    XX("forward-client-identity", "FORWARD_CLIENT_IDENTITY", OPT_BOOL, forward_client_identity, 0, \
       0,                                                                                          \
       "[=true|false]  send the caller's User-Agent and X-Stainless-* headers upstream (false)")   \
    XX("token-cookie", "TOKEN_COOKIE", OPT_BOOL, token_cookie, 0, 0,                               \
       "[=true|false]  also send the caller's token upstream as `Cookie: token=<token>` (false)")  \
    XX("upstream-header", "UPSTREAM_HEADER", OPT_HEADER, upstream_headers, 0, 0,                   \
       "'NAME: VALUE'  a header sent on every upstream request, repeatable (the variable: "        \
       "lines); replaces a caller's header of that name, a Cookie is merged (none)")               \
    XX("cache-ttl", "CACHE_TTL", OPT_SECONDS, cache_ttl_ms, 0, 31536000000LL,                      \
       "SECONDS  model-list cache lifetime (3600)")                                                \
    XX("cache-max-entries", "CACHE_MAX_ENTRIES", OPT_SIZE, cache_max_entries, 1, 10000000,         \
       "N  credentials kept in the model-list cache, LRU (1000)")                                  \
    XX("cache-max-bytes", "CACHE_MAX_BYTES", OPT_SIZE, cache_max_bytes, 1, 1099511627776LL,        \
       "BYTES  model-list cache size (both shapes of each list), LRU; a larger list is served "    \
       "uncached (67108864)")                                                                      \
    XX("stale-grace", "STALE_GRACE", OPT_SECONDS, stale_grace_ms, 0, 31536000000LL,                \
       "SECONDS  serve an expired list this long when a refresh fails (300)")                      \
    XX("max-retries", "MAX_RETRIES", OPT_UINT, max_retries, 0, 20,                                 \
       "N  retries after the first attempt (3)")                                                   \
    XX("retry-base-ms", "RETRY_BASE_MS", OPT_UINT, retry_base_ms, 0, 60000,                        \
       "N  first backoff step in ms, doubled per retry, jittered (250)")                           \
    XX("retry-after-cap", "RETRY_AFTER_CAP", OPT_SECONDS, retry_after_cap_ms, 0, 86400000LL,       \
       "SECONDS  longest upstream Retry-After waited for (10)")                                    \
    XX("upstream-timeout", "UPSTREAM_TIMEOUT", OPT_SECONDS, upstream_timeout_ms, 1, 86400000LL,    \
       "SECONDS  limit for one upstream attempt (60)")                                             \
    XX("deadline-ms", "DEADLINE_MS", OPT_MS, deadline_ms, 1, 86400000LL,                           \
       "N  limit for the whole request incl. retries, 504 after (120000)")                         \
    XX("stream-idle-timeout", "STREAM_IDLE_TIMEOUT", OPT_SECONDS, stream_idle_timeout_ms, 1,       \
       86400000LL, "SECONDS  a started stream silent upstream this long ends with an error (60)")  \
    XX("keepalive-interval", "KEEPALIVE_INTERVAL", OPT_SECONDS, keepalive_interval_ms, 1,          \
       86400000LL, "SECONDS  `: keep-alive` comment to the caller after this much silence (15)")   \
    XX("max-body", "MAX_BODY", OPT_SIZE, max_body, 1, 1073741824LL,                                \
       "BYTES  request body limit, 413 above (1048576)")                                           \
    XX("max-connections", "MAX_CONNECTIONS", OPT_UINT, max_connections, 0, 1000000,                \
       "N  open connections; a request on one more is answered 503 at once (0: what the "          \
       "descriptor limit holds at 2 a connection, 9916 at 20000; a larger N is warned about)")     \
    XX("max-connections-per-client", "MAX_CONNECTIONS_PER_CLIENT", OPT_UINT,                       \
       max_connections_per_client, 1, 1000000,                                                     \
       "N  open connections per client address; more are closed at once (128)")                    \
    XX("receive-timeout", "RECEIVE_TIMEOUT", OPT_SECONDS, receive_timeout_ms, 1, 86400000LL,       \
       "SECONDS  a request's head and body must arrive within this; bytes do not extend it (10)")  \
    XX("idle-timeout", "IDLE_TIMEOUT", OPT_SECONDS, idle_timeout_ms, 1000, 86400000LL,             \
       "SECONDS  a kept-alive connection without a request is closed after this (5)")              \
    XX("drain-delay", "DRAIN_DELAY", OPT_SECONDS, drain_delay_ms, 0, 3600000LL,                    \
       "SECONDS  on SIGTERM, GET /readyz answers 503 this long while all else is served, then "    \
       "the drain begins (0)")                                                                     \
    XX("drain-timeout", "DRAIN_TIMEOUT", OPT_SECONDS, drain_timeout_ms, 0, 86400000LL,             \
       "SECONDS  on SIGTERM, requests in progress may finish this long (20)")                      \
    XX("ready-window", "READY_WINDOW", OPT_SECONDS, ready_window_ms, 1000, 86400000LL,             \
       "SECONDS  GET /readyz answers 503 while an upstream failure this recent has had no "        \
       "answer since (30)")                                                                        \
    XX("cors-origins", "CORS_ORIGINS", OPT_STRING, cors_origins, 0, 0,                             \
       "LIST  comma-separated allowed origins, or * (*)")                                          \
    XX("log-format", "LOG_FORMAT", OPT_LOGFMT, log_format, 0, 0,                                   \
       "text|json|off  request log format on stderr (text)")                                       \
    XX("log-level", "LOG_LEVEL", OPT_LOGLVL, log_level, 0, 0,                                      \
       "error|warn|info  least level logged: warn keeps failed attempts and requests answered "    \
       "5xx or cut, error only the proxy's own failures (info)")                                   \
    XX("threads", "THREADS", OPT_UINT, threads, 1, 64, "N  server threads (2)")                    \
    XX("mutant", "MUTANT", OPT_MUTANT, mutant, 0, 0,                                               \
       "NAME  break one behaviour (suite self-test builds only)")                                  \
    XX("config", "CONFIG", OPT_CONFIG, config_path, 0, 0,                                          \
       "FILE  settings file: one 'name = value' a line, names as the flags', # comment lines; "    \
       "the environment and flags win over it (none)")

#define QP_ENV_PREFIX "QWEN_PROXY_"

enum opt_id {
#define OPT_ID(flag, env, kind, field, lo, hi, help) OPT_ID_##field,
    QP_OPTION_MAP(OPT_ID)
#undef OPT_ID
        OPT_COUNT
};

struct opt_row {
    const char *flag;
    const char *env;
    enum opt_kind kind;
    size_t offset;
    long long lo, hi;
    const char *help;
};

static const struct opt_row options[OPT_COUNT] = {
#define OPT_ROW(flag, env, kind, field, lo, hi, help)                                              \
    [OPT_ID_##field] = {                                                                           \
        flag, QP_ENV_PREFIX env, kind, offsetof(struct qk_proxy_config, field), lo, hi, help},
    QP_OPTION_MAP(OPT_ROW)
#undef OPT_ROW
};

void
qk_proxy_config_init(struct qk_proxy_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen_host = "127.0.0.1";
    cfg->port = 8000;
    cfg->upstream = NULL; /* the dialect's default_upstream */
    cfg->upstream_dialect = QP_DIALECT_DEFAULT;
    cfg->reasoning = "separate";
    cfg->cache_ttl_ms = 3600 * 1000;
    cfg->cache_max_entries = 1000;
    cfg->cache_max_bytes = 64 * 1024 * 1024;
    cfg->stale_grace_ms = 300 * 1000;
    cfg->max_retries = 3;
    cfg->retry_base_ms = 250;
    cfg->retry_after_cap_ms = 10 * 1000;
    cfg->upstream_timeout_ms = 60 * 1000;
    cfg->deadline_ms = 120 * 1000;
    cfg->stream_idle_timeout_ms = 60 * 1000;
    cfg->keepalive_interval_ms = 15 * 1000;
    cfg->max_body = QK_LIMIT_BODY_DEFAULT;
    cfg->max_connections = 0; /* qk_proxy_start() derives it from the descriptor limit */
    cfg->max_connections_per_client = 128;
    cfg->receive_timeout_ms = 10 * 1000;
    cfg->idle_timeout_ms = 5 * 1000;
    cfg->drain_timeout_ms = 20 * 1000;
    cfg->ready_window_ms = 30 * 1000;
    cfg->cors_origins = "*";
    cfg->log_format = QK_PROXY_LOG_TEXT;
    cfg->log_level = QK_PROXY_LOG_LEVEL_INFO;
    cfg->threads = 2;
    cfg->mutant = NULL;
}

/* Appends @p url to @p out without its user and password ("https://chat.qwen.ai"). */
static void
put_url(char *out, size_t len, size_t *used, const char *url)
{
    const char *scheme_end = strstr(url, "://");
    const char *host = scheme_end ? scheme_end + 3 : url;
    const char *at = strchr(host, '@');
    const char *slash = strchr(host, '/');
    if (at && (!slash || at < slash))
        *used +=
            (size_t)snprintf(out + *used, len - *used, "%.*s%s", (int)(host - url), url, at + 1);
    else
        *used += (size_t)snprintf(out + *used, len - *used, "%s", url);
}

void
qk_proxy_config_describe(const struct qk_proxy_config *cfg, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < OPT_COUNT && used + 1 < len; i++) {
        const struct opt_row *o = &options[i];
        const char *field = (const char *)cfg + o->offset;
        if (o->kind == OPT_MUTANT && !*(const char *const *)(const void *)field)
            continue; /* not a setting outside the suite's self-test */
        used += (size_t)snprintf(out + used, len - used, "%s%s=", used ? " " : "", o->flag);
        if (used >= len)
            break;
        switch (o->kind) {
        case OPT_STRING:
        case OPT_DIALECT:
        case OPT_REASON:
        case OPT_MUTANT:
        case OPT_CONFIG: {
            const char *v = *(const char *const *)(const void *)field;
            used += (size_t)snprintf(out + used, len - used, "%s", v ? v : "-");
            break;
        }
        case OPT_URL: {
            const char *v = *(const char *const *)(const void *)field;
            if (v)
                put_url(out, len, &used, v);
            else
                used += (size_t)snprintf(out + used, len - used, "(the dialect's)");
            break;
        }
        case OPT_PORT:
            used += (size_t)snprintf(out + used, len - used, "%u",
                                     (unsigned)*(const uint16_t *)(const void *)field);
            break;
        case OPT_SECONDS: {
            long long ms = (long long)*(const int64_t *)(const void *)field;
            used += (size_t)snprintf(out + used, len - used, "%lld.%03lld", ms / 1000, ms % 1000);
            break;
        }
        case OPT_MS:
            used += (size_t)snprintf(out + used, len - used, "%lld",
                                     (long long)*(const int64_t *)(const void *)field);
            break;
        case OPT_UINT:
            used += (size_t)snprintf(out + used, len - used, "%u",
                                     *(const unsigned *)(const void *)field);
            break;
        case OPT_SIZE:
            used += (size_t)snprintf(out + used, len - used, "%zu",
                                     *(const size_t *)(const void *)field);
            break;
        case OPT_LOGFMT: {
            enum qk_proxy_log_format f = *(const enum qk_proxy_log_format *)(const void *)field;
            used += (size_t)snprintf(out + used, len - used, "%s",
                                     f == QK_PROXY_LOG_JSON  ? "json"
                                     : f == QK_PROXY_LOG_OFF ? "off"
                                                             : "text");
            break;
        }
        case OPT_LOGLVL:
            used += (size_t)snprintf(
                out + used, len - used, "%s",
                qp_log_level_name(*(const enum qk_proxy_log_level *)(const void *)field));
            break;
        case OPT_BOOL:
            used += (size_t)snprintf(out + used, len - used, "%s",
                                     *(const bool *)(const void *)field ? "true" : "false");
            break;
        case OPT_HEADER:
            /* Names only: a value may be a cookie or a key. */
            if (cfg->n_upstream_headers == 0)
                used += (size_t)snprintf(out + used, len - used, "-");
            for (size_t h = 0; h < cfg->n_upstream_headers && used < len; h++)
                used += (size_t)snprintf(out + used, len - used, "%s%.*s", h ? "," : "",
                                         (int)strcspn(cfg->upstream_headers[h], ":"),
                                         cfg->upstream_headers[h]);
            break;
        }
    }
    if (used >= len)
        out[len - 1] = '\0';
}

void
qk_proxy_config_release(struct qk_proxy_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->_config_text);
    cfg->_config_text = NULL;
}

const char *
qk_proxy_version(void)
{
    return QK_VERSION; /* the project's version, from CMakeLists.txt */
}

bool
qk_proxy_mutants_available(void)
{
#ifdef QK_MUTANTS
    return true;
#else
    return false;
#endif
}

/* Fixed descriptors besides the connections: listening socket, stdio, the loop's epoll set
 * and eventfd, libcurl's wakeup pair, the watchdog's eventfd, some slack; plus per server
 * thread its epoll set and inter-thread channel. */
#define QP_FD_FIXED 32ull
#define QP_FD_PER_THREAD 4ull

unsigned
qk_proxy_accept_limit(unsigned max_connections)
{
    unsigned margin = max_connections / 4 + 16;
    if (margin > QK_PROXY_ACCEPT_MARGIN)
        margin = QK_PROXY_ACCEPT_MARGIN;
    return max_connections + margin;
}

unsigned long long
qk_proxy_descriptors_needed(unsigned max_connections, unsigned threads)
{
    unsigned long long answered_503 = qk_proxy_accept_limit(max_connections) - max_connections;
    return QP_FD_FIXED + QP_FD_PER_THREAD * (threads ? threads : 1) + 2ull * max_connections +
           answered_503;
}

unsigned
qk_proxy_connections_for_descriptors(unsigned long long fd_limit, unsigned threads)
{
    const unsigned most = 1000000;
    unsigned lo = 1, hi = most;
    if (qk_proxy_descriptors_needed(hi, threads) <= fd_limit)
        return hi;
    /* The largest n that fits; needed() grows with n. */
    while (lo < hi) {
        unsigned mid = lo + (hi - lo + 1) / 2;
        if (qk_proxy_descriptors_needed(mid, threads) <= fd_limit)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

const char *
qk_proxy_usage(void)
{
    /* Written once from the option table (one string literal would pass the 4095 bytes
     * C requires compilers to take). */
    static char text[8192];
    if (text[0])
        return text;
    size_t used = (size_t)snprintf(
        text, sizeof(text), "%s",
        "usage: qwen-proxy [options]\n"
        "OpenAI-style proxy for the Qwen web-chat API (GET /api/models,\n"
        "POST /api/chat/completions, /v1/ aliases) with auth checks, a per-credential\n"
        "model-list cache and retries.\n\n"
        "options (each also an environment variable; flags win over the environment,\n"
        "which wins over the --config file):\n");
    for (int i = 0; i < OPT_COUNT && used < sizeof(text); i++)
        used += (size_t)snprintf(text + used, sizeof(text) - used, "  --%s %s\n      env %s\n",
                                 options[i].flag, options[i].help, options[i].env);
    if (used < sizeof(text))
        snprintf(text + used, sizeof(text) - used, "%s",
                 "  --help     this text\n"
                 "  --version  print the version\n\n"
                 "Once listening, one line `listening on http://HOST:PORT` is printed on "
                 "stdout.\n");
    return text;
}

/* Parses an integer that must be whole, in range, with no trailing junk. */
static bool
parse_ll(const char *s, long long lo, long long hi, long long *out)
{
    if (!s || !*s || *s == ' ' || *s == '+' || (*s == '-' && lo >= 0))
        return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Decimal seconds ("2", "0.5") to milliseconds; no exponents, no negatives. */
static bool
parse_seconds_ms(const char *s, long long lo_ms, long long hi_ms, long long *out)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        if (!((*p >= '0' && *p <= '9') || *p == '.'))
            return false;
    }
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (errno || *end != '\0' || !isfinite(v))
        return false;
    double ms = v * 1000.0;
    if (ms < (double)lo_ms || ms > (double)hi_ms)
        return false;
    *out = llround(ms);
    return true;
}

static bool
valid_url(const char *s)
{
    size_t scheme = 0;
    if (strncmp(s, "http://", 7) == 0)
        scheme = 7;
    else if (strncmp(s, "https://", 8) == 0)
        scheme = 8;
    else
        return false;
    if (s[scheme] == '\0' || s[scheme] == '/')
        return false;
    for (const char *p = s; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    }
    return strlen(s) < 2048;
}

/* Appends one `--upstream-header` value (one line, or lines joined by "\n") after checking
 * each line (headers.h). */
static enum qk_err
add_header(struct qk_proxy_config *cfg, const char *value, const char *origin, char *err,
           size_t errlen)
{
    if (cfg->n_upstream_headers >= QK_PROXY_MAX_UPSTREAM_HEADERS) {
        snprintf(err, errlen, "%s: more than %d upstream headers", origin,
                 QK_PROXY_MAX_UPSTREAM_HEADERS);
        return QK_INVALID;
    }
    const char *why = qp_upstream_headers_check(value);
    if (why) {
        /* The name only: a value may be a secret (a cookie, a key). */
        snprintf(err, errlen, "%s: invalid header '%.*s': %s", origin, (int)strcspn(value, ":"),
                 value, why);
        return QK_INVALID;
    }
    cfg->upstream_headers[cfg->n_upstream_headers++] = value;
    return QK_OK;
}

/* Applies one value to the option @p o; writes a message on failure. */
static enum qk_err
apply(struct qk_proxy_config *cfg, const struct opt_row *o, const char *value, const char *origin,
      char *err, size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    long long v = 0;
    bool ok = true;

    switch (o->kind) {
    case OPT_STRING:
        ok = value[0] != '\0' && strlen(value) < 4096;
        if (ok)
            *(const char **)(void *)field = value;
        break;
    case OPT_URL:
        ok = valid_url(value);
        if (ok)
            *(const char **)(void *)field = value;
        break;
    case OPT_PORT:
        ok = parse_ll(value, o->lo, o->hi, &v);
        if (ok)
            *(uint16_t *)(void *)field = (uint16_t)v;
        break;
    case OPT_SECONDS:
        ok = parse_seconds_ms(value, o->lo, o->hi, &v);
        if (ok)
            *(int64_t *)(void *)field = v;
        break;
    case OPT_MS:
        ok = parse_ll(value, o->lo, o->hi, &v);
        if (ok)
            *(int64_t *)(void *)field = v;
        break;
    case OPT_UINT:
        ok = parse_ll(value, o->lo, o->hi, &v);
        if (ok)
            *(unsigned *)(void *)field = (unsigned)v;
        break;
    case OPT_SIZE:
        ok = parse_ll(value, o->lo, o->hi, &v);
        if (ok)
            *(size_t *)(void *)field = (size_t)v;
        break;
    case OPT_LOGFMT:
        if (strcmp(value, "text") == 0)
            *(enum qk_proxy_log_format *)(void *)field = QK_PROXY_LOG_TEXT;
        else if (strcmp(value, "json") == 0)
            *(enum qk_proxy_log_format *)(void *)field = QK_PROXY_LOG_JSON;
        else if (strcmp(value, "off") == 0)
            *(enum qk_proxy_log_format *)(void *)field = QK_PROXY_LOG_OFF;
        else
            ok = false;
        break;
    case OPT_LOGLVL:
        ok = qp_log_level_parse(value, (enum qk_proxy_log_level *)(void *)field);
        break;
    case OPT_DIALECT:
        ok = qp_dialect_find(value) != NULL;
        if (ok)
            *(const char **)(void *)field = value;
        break;
    case OPT_REASON: {
        enum qp_reasoning_mode mode;
        ok = qp_reasoning_mode_parse(value, &mode);
        if (ok)
            *(const char **)(void *)field = value;
        break;
    }
    case OPT_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "yes") == 0 ||
            strcmp(value, "on") == 0)
            *(bool *)(void *)field = true;
        else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 ||
                 strcmp(value, "no") == 0 || strcmp(value, "off") == 0)
            *(bool *)(void *)field = false;
        else
            ok = false;
        break;
    case OPT_HEADER:
        return add_header(cfg, value, origin, err, errlen);
    case OPT_CONFIG:
        *(const char **)(void *)field = value; /* read by read_config_file(), first */
        break;
    case OPT_MUTANT:
        if (!qk_proxy_mutants_available()) {
            snprintf(err, errlen, "%s: mutants are not built in (configure with -DQK_MUTANTS=ON)",
                     origin);
            return QK_INVALID;
        }
        ok = QP_MUTANT_KNOWN(value);
        if (ok)
            *(const char **)(void *)field = value;
        break;
    }
    if (!ok) {
        if (o->kind == OPT_SECONDS || o->kind == OPT_MS || o->kind == OPT_UINT ||
            o->kind == OPT_SIZE || o->kind == OPT_PORT) {
            long long lo = o->lo, hi = o->hi;
            if (o->kind == OPT_SECONDS) {
                lo /= 1000;
                hi /= 1000;
            }
            snprintf(err, errlen, "%s: invalid value '%.64s' (expected %s, %lld..%lld)", origin,
                     value, o->help, lo, hi);
        } else {
            snprintf(err, errlen, "%s: invalid value '%.64s' (expected %s)", origin, value,
                     o->help);
        }
        return QK_INVALID;
    }
    return QK_OK;
}

static const struct opt_row *
find_option(const char *name, size_t len)
{
    for (int k = 0; k < OPT_COUNT; k++) {
        if (strlen(options[k].flag) == len && strncmp(options[k].flag, name, len) == 0)
            return &options[k];
    }
    return NULL;
}

/* The settings file the command line or the environment names, or NULL. */
static const char *
config_file_path(int argc, char *const argv[], qk_proxy_env_fn env)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
    }
    return path || !env ? path : env(QP_ENV_PREFIX "CONFIG");
}

static char *
trim(char *s, char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    *end = '\0';
    return s;
}

/* Reads the settings file @p path into cfg->_config_text and applies each line. */
static enum qk_err
read_config_file(struct qk_proxy_config *cfg, const char *path, char *err, size_t errlen)
{
    struct qk_buf text;
    qk_buf_init(&text, (size_t)1 << 20);
    enum qk_err rc = qk_buf_append_file(&text, path);
    if (rc != QK_OK) {
        snprintf(err, errlen, "%s: cannot read (%s)", path,
                 rc == QK_IO ? strerror(errno) : "over 1 MiB");
        qk_buf_free(&text);
        return QK_INVALID;
    }
    cfg->_config_text = qk_buf_take(&text, NULL);
    if (!cfg->_config_text)
        return QK_NOMEM;
    char *line = cfg->_config_text;
    for (unsigned number = 1; *line; number++) {
        char *end = line + strcspn(line, "\n");
        char *next = *end ? end + 1 : end;
        char *s = trim(line, end);
        char *eq = strchr(s, '=');
        if (*s == '\0' || *s == '#') {
            line = next;
            continue;
        }
        if (!eq) {
            snprintf(err, errlen, "%s:%u: expected 'name = value'", path, number);
            return QK_INVALID;
        }
        char *name = trim(s, eq);
        char *value = trim(eq + 1, eq + 1 + strlen(eq + 1));
        const struct opt_row *o = find_option(name, strlen(name));
        if (!o) {
            snprintf(err, errlen, "%s:%u: unknown setting '%.64s' (the flags' names, see --help)",
                     path, number, name);
            return QK_INVALID;
        }
        if (o->kind == OPT_CONFIG) {
            snprintf(err, errlen, "%s:%u: config files do not include others", path, number);
            return QK_INVALID;
        }
        char origin[160];
        snprintf(origin, sizeof(origin), "%.120s:%u: %s", path, number, o->flag);
        rc = apply(cfg, o, value, origin, err, errlen);
        if (rc != QK_OK)
            return rc;
        line = next;
    }
    return QK_OK;
}

enum qk_err
qk_proxy_config_from_args(struct qk_proxy_config *cfg, int argc, char *const argv[],
                          qk_proxy_env_fn env, enum qk_proxy_cli_action *action, char *err,
                          size_t errlen)
{
    char dummy[8];
    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    *action = QK_PROXY_CLI_RUN;

    /* The file, then the environment, then the flags: each overrides the one before. */
    const char *config = config_file_path(argc, argv, env);
    if (config) {
        cfg->config_path = config;
        enum qk_err rc = read_config_file(cfg, config, err, errlen);
        if (rc != QK_OK)
            return rc;
    }
    bool headers_from_env = false;
    for (int i = 0; env && i < OPT_COUNT; i++) {
        const char *value = env(options[i].env);
        if (!value)
            continue;
        if (options[i].kind == OPT_HEADER && !headers_from_env) {
            cfg->n_upstream_headers = 0; /* the environment's list replaces the file's */
            headers_from_env = true;
        }
        enum qk_err rc = apply(cfg, &options[i], value, options[i].env, err, errlen);
        if (rc != QK_OK)
            return rc;
    }

    bool headers_from_flags = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *action = QK_PROXY_CLI_HELP;
            return QK_OK;
        }
        if (strcmp(arg, "--version") == 0) {
            *action = QK_PROXY_CLI_VERSION;
            return QK_OK;
        }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%.64s' (see --help)", arg);
            return QK_INVALID;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt_row *o = find_option(name, name_len);
        if (!o) {
            snprintf(err, errlen, "unknown flag '%.64s' (see --help)", arg);
            return QK_INVALID;
        }
        const char *value = NULL;
        if (eq) {
            value = eq + 1;
        } else if (o->kind == OPT_BOOL) {
            value = "true"; /* the flag alone; it never takes the next argument */
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(err, errlen, "--%s needs a value (see --help)", o->flag);
            return QK_INVALID;
        }
        if (o->kind == OPT_HEADER && !headers_from_flags) {
            cfg->n_upstream_headers = 0; /* the flags' list replaces the others' */
            headers_from_flags = true;
        }
        char origin[64];
        snprintf(origin, sizeof(origin), "--%s", o->flag);
        enum qk_err rc = apply(cfg, o, value, origin, err, errlen);
        if (rc != QK_OK)
            return rc;
    }
    return QK_OK;
}
