/**
 * @file proxy.h
 * @brief Embedding API of qwen-proxy, the reference proxy in front of the Qwen web-chat API.
 *
 * A program (or a test) fills a struct qk_proxy_config, starts the proxy in-process, reads
 * the bound port and stops it. The proxy runs on its own fixed set of threads: the
 * libmicrohttpd server threads plus one upstream event-loop thread.
 *
 * Ownership: qk_proxy_start() returns a new proxy that the caller releases with
 * qk_proxy_stop(). Strings in struct qk_proxy_config are borrowed for the duration of
 * qk_proxy_start() only (the proxy copies what it keeps).
 */
#ifndef QWENKIT_PROXY_H
#define QWENKIT_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qwenkit/common.h"

struct qk_proxy;

/** Most `--upstream-header` options one proxy takes. */
#define QK_PROXY_MAX_UPSTREAM_HEADERS 32

/** Format of the one log line written per request on stderr. */
enum qk_proxy_log_format {
    QK_PROXY_LOG_TEXT = 0, /**< key=value pairs */
    QK_PROXY_LOG_JSON = 1, /**< one JSON object per line */
    QK_PROXY_LOG_OFF = 2,  /**< no request log (embedding, tests) */
};

/** The least important lines the log keeps (each includes those above it). */
enum qk_proxy_log_level {
    QK_PROXY_LOG_LEVEL_ERROR = 0, /**< the proxy could not do its job */
    QK_PROXY_LOG_LEVEL_WARN = 1,  /**< failed upstream attempts, requests answered 5xx or cut */
    QK_PROXY_LOG_LEVEL_INFO = 2,  /**< every request line, the start-up settings (default) */
};

/** Settings of a proxy; fill with qk_proxy_config_init() then override. */
struct qk_proxy_config {
    const char *listen_host;      /**< address to bind, default "127.0.0.1" */
    uint16_t port;                /**< default 8000; 0 picks a free port */
    const char *upstream;         /**< base URL; NULL (the default): the dialect's own,
                                       "https://chat.qwenlm.ai" for v1, "https://chat.qwen.ai"
                                       for v2 */
    const char *upstream_dialect; /**< the upstream's API: "v1" (the default) or "v2" */
    const char *reasoning;        /**< what callers get of v2's reasoning: "separate" (the default,
                                       `reasoning_content`), "inline" (`<think>` in the content) or
                                       "drop" */
    bool token_cookie;            /**< also send the caller's token as `Cookie: token=<t>` (off) */
    bool forward_client_identity; /**< send the caller's User-Agent and X-Stainless-* headers
                                       upstream (off: they stay with the caller) */
    /** Extra header lines "Name: value" sent on every upstream request (each entry may hold
     *  several lines separated by "\n"); a caller's header of the same name is not sent.
     *  A `Cookie` entry is merged into the one Cookie line. */
    const char *upstream_headers[QK_PROXY_MAX_UPSTREAM_HEADERS];
    size_t n_upstream_headers;
    int64_t cache_ttl_ms;        /**< model-list cache TTL, default 3600 s */
    size_t cache_max_entries;    /**< credentials kept in the cache (LRU), default 1000 */
    size_t cache_max_bytes;      /**< bytes of lists kept in the cache (LRU, both shapes), 64 MiB */
    int64_t stale_grace_ms;      /**< serve an expired list this long when refresh fails, 300 s */
    unsigned max_retries;        /**< retries after the first attempt, default 3 */
    unsigned retry_base_ms;      /**< first backoff step, doubled per retry, default 250 */
    int64_t retry_after_cap_ms;  /**< longest upstream Retry-After honoured, default 10 s */
    int64_t upstream_timeout_ms; /**< one upstream attempt, default 60 s */
    int64_t deadline_ms;         /**< whole request incl. retries, default 120 s */
    int64_t stream_idle_timeout_ms;      /**< a started stream whose upstream sends nothing this
                                              long ends with an error event, default 60 s */
    int64_t keepalive_interval_ms;       /**< `: keep-alive` comment after this much silence on a
                                              started stream, default 15 s */
    size_t max_body;                     /**< request body limit (413 above), default 1 MiB */
    unsigned max_connections;            /**< open connections; above, 503 at once (0, the
                                              default: what the descriptor limit holds,
                                              qk_proxy_connections_for_descriptors()) */
    unsigned max_connections_per_client; /**< open connections per client address (128) */
    int64_t receive_timeout_ms;          /**< a request's head and body must arrive within this
                                              once the connection waits for it; bytes do not
                                              extend it (10 s) */
    int64_t idle_timeout_ms;             /**< a kept-alive connection with no request is closed
                                              after this (5 s) */
    int64_t drain_delay_ms;              /**< qwen-proxy: on SIGTERM/SIGINT, /readyz answers 503
                                              this long while all else is served, before the
                                              drain (0) */
    int64_t drain_timeout_ms;            /**< qwen-proxy: on SIGTERM/SIGINT, requests in progress
                                              may finish this long before the rest are ended
                                              (20 s); not used by the embedding API */
    int64_t ready_window_ms;             /**< /readyz is 503 while an upstream failure this
                                              recent has had no answer since (30 s) */
    const char *cors_origins;            /**< comma-separated allowed origins or "*", default "*" */
    enum qk_proxy_log_format log_format; /**< default text */
    enum qk_proxy_log_level log_level;   /**< default info */
    unsigned threads;                    /**< server threads, default 2 */
    const char *mutant;      /**< suite self-test: a behaviour to break (QK_MUTANTS builds) */
    const char *config_path; /**< the settings file read (--config), or NULL */
    char *_config_text;      /**< owned: that file's text, which string fields borrow from;
                                  qk_proxy_config_release() frees it */
};

/** What the command line asked for besides running. */
enum qk_proxy_cli_action {
    QK_PROXY_CLI_RUN = 0,     /**< start the proxy */
    QK_PROXY_CLI_HELP = 1,    /**< print qk_proxy_usage() and exit 0 */
    QK_PROXY_CLI_VERSION = 2, /**< print the version and exit 0 */
};

/** Reads one environment variable; returns NULL when unset. */
typedef const char *(*qk_proxy_env_fn)(const char *name);

/** Fills @p cfg with the defaults documented above. */
void qk_proxy_config_init(struct qk_proxy_config *cfg);

/**
 * Writes every setting of @p cfg as `name=value` pairs (the flags' names, space-separated)
 * into @p out, for the start-up log line: nothing secret, so `upstream-header` shows the
 * header names only and a URL's user and password are left out. Always NUL-terminated.
 */
void qk_proxy_config_describe(const struct qk_proxy_config *cfg, char *out, size_t len);

/** Frees what @p cfg owns (the settings file's text); its string fields are then invalid.
 *  NULL-safe, and safe on a config that read no file. */
void qk_proxy_config_release(struct qk_proxy_config *cfg);

/**
 * Applies a settings file (`--config FILE` or QWEN_PROXY_CONFIG: one `name = value` a line,
 * the names those of the flags, `#` starting a comment line), then environment variables
 * (QWEN_PROXY_PORT, ...), then command-line flags (`--port 8000` or `--port=8000`) to
 * @p cfg: flags win over the environment, which wins over the file. The string fields of
 * @p cfg then borrow from @p argv, the environment or the file's text, which @p cfg owns
 * (qk_proxy_config_release(), also after an error).
 * @param env variable lookup (getenv-like), or NULL to ignore the environment.
 * @param[out] action what to do next.
 * @param[out] err a one-line message naming the bad flag or variable on QK_INVALID.
 * @return QK_OK or QK_INVALID.
 */
QK_WUR enum qk_err qk_proxy_config_from_args(struct qk_proxy_config *cfg, int argc,
                                             char *const argv[], qk_proxy_env_fn env,
                                             enum qk_proxy_cli_action *action, char *err,
                                             size_t errlen);

/**
 * libmicrohttpd's own connection limit for @p max_connections: a few more connections are
 * accepted so that they are answered 503 at once instead of waiting unseen in the kernel
 * backlog (a quarter more, at most QK_PROXY_ACCEPT_MARGIN).
 */
unsigned qk_proxy_accept_limit(unsigned max_connections);

/** Most connections accepted above max_connections (qk_proxy_accept_limit()). */
#define QK_PROXY_ACCEPT_MARGIN 128u

/**
 * @return the file descriptors a proxy may hold at once: two for each of @p max_connections
 * (the caller's socket and its upstream transfer), one for each connection answered 503,
 * and the fixed ones (listening socket, epoll sets, eventfds, stdio) of @p threads server
 * threads.
 */
unsigned long long qk_proxy_descriptors_needed(unsigned max_connections, unsigned threads);

/**
 * @return the largest max_connections whose descriptors fit in @p fd_limit (at least 1, at
 * most 1000000; the descriptor limit RLIM_INFINITY is given as ULLONG_MAX).
 */
unsigned qk_proxy_connections_for_descriptors(unsigned long long fd_limit, unsigned threads);

/** @return the static `--help` text. */
const char *qk_proxy_usage(void);

/** @return the static version string ("0.1.0"). */
const char *qk_proxy_version(void);

/** @return true when this build accepts `--mutant NAME` (built with QK_MUTANTS). */
bool qk_proxy_mutants_available(void);

/**
 * Starts a proxy: the upstream loop thread, then the HTTP server.
 * Calls curl_global_init(), which is not thread-safe: a program that runs other threads
 * using libcurl must call curl_global_init() itself before starting them.
 * @param[out] out the new proxy, owned by the caller (qk_proxy_stop()).
 * @param[out] err a message on failure (may be NULL).
 */
QK_WUR enum qk_err qk_proxy_start(const struct qk_proxy_config *cfg, struct qk_proxy **out,
                                  char *err, size_t errlen);

/** @return the TCP port the proxy listens on. */
uint16_t qk_proxy_port(const struct qk_proxy *proxy);

/**
 * Starts a graceful stop: no new connection is accepted, idle connections are closed, a
 * new request on an open connection is answered 503 (`GET /healthz` too: not ready), and
 * requests in progress, streams included, go on to their end. Returns at once; poll
 * qk_proxy_open_connections() until 0 or a deadline, then call qk_proxy_stop().
 */
void qk_proxy_drain(struct qk_proxy *proxy);

/** From now on GET /readyz answers 503 (draining) while everything else is served as
 *  before: the --drain-delay before a drain, so that load balancers stop sending new
 *  requests first. qk_proxy_drain() implies it. Thread-safe. */
void qk_proxy_set_unready(struct qk_proxy *proxy);

/** @return the connections still open (0 once a drain is complete). */
unsigned qk_proxy_open_connections(struct qk_proxy *proxy);

/**
 * Stops the proxy and frees it: drains first if not yet draining, answers waiting
 * requests 503, ends every stream still running with an error event, lets those final
 * bytes reach their callers (up to 2 s), then closes everything. NULL-safe.
 */
void qk_proxy_stop(struct qk_proxy *proxy);

#endif
