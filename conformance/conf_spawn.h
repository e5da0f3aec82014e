/**
 * @file conf_spawn.h
 * @brief Runs a server program as a child process on port 0 and learns its URL.
 *
 * The child must print one line `listening on http://HOST:PORT` on stdout once ready
 * (qwen-proxy and qwen-mock both do). Its stderr goes to a file of the caller's choice.
 */
#ifndef CONF_SPAWN_H
#define CONF_SPAWN_H

#include <stddef.h>

#include "qwenkit/common.h"

struct conf_child;

/**
 * Starts @p argv (argv[0] is the program path) and waits up to @p timeout_ms for its
 * `listening on URL` line.
 * @param log_path file receiving the child's stderr (created or truncated), or NULL to
 *                 inherit ours.
 * @param[out] out the child, released with conf_child_stop().
 * @param[out] url the URL the child printed.
 */
QK_WUR enum qk_err conf_child_start(const char *const *argv, const char *log_path, int timeout_ms,
                                    struct conf_child **out, char *url, size_t urllen, char *err,
                                    size_t errlen);

/**
 * Stops the child (SIGTERM, then SIGKILL after a grace period) and frees it. NULL-safe.
 * @return the child's exit status as waitpid() reports it, or -1.
 */
int conf_child_stop(struct conf_child *child);

/**
 * Reserves a local TCP port that refuses connections (bound, never listening), for an
 * "unreachable upstream". @return the socket (close it at the end) or -1; port in @p port.
 */
int conf_reserve_refusing_port(unsigned *port);

#endif
