/**
 * @file conf_launch.h
 * @brief --spawn: the mock in-process and the reference proxy as child processes, each on a
 *        free port, the proxy configured from the profile.
 *
 * Two proxies are started with the same options: one in front of the mock, and one in
 * front of a port that refuses connections (for ERR-5).
 */
#ifndef CONF_LAUNCH_H
#define CONF_LAUNCH_H

#include <stdbool.h>
#include <stddef.h>

#include "conf_harness.h"
#include "conf_profile.h"

enum { CONF_LAUNCH_MAX_EXTRA = 32 };

struct conf_launch_options {
    const char *proxy_bin;                         /**< path of qwen-proxy */
    const char *extra_args[CONF_LAUNCH_MAX_EXTRA]; /**< --proxy-arg values, in order */
    size_t extra_count;
};

struct conf_launch;

/**
 * Starts everything and fills the URLs and log path of @p env.
 * @param[out] out the running set, stopped with conf_launch_stop().
 */
QK_WUR enum qk_err conf_launch_start(const struct conf_launch_options *opts,
                                     const struct conf_profile *profile, struct conf_env *env,
                                     struct conf_launch **out, char *err, size_t errlen);

/**
 * Restarts the proxy in front of the mock on the port it had, after it died (a
 * conf_watch restart hook: @p arg is the struct conf_launch). Its log until then is kept
 * beside the new one. @return true when it answers on the same URL again.
 */
bool conf_launch_restart_proxy(void *arg);

/**
 * Stops the proxies and the mock and frees @p l. NULL-safe.
 * @param keep_logs keep the proxies' log files (and print where they are).
 */
void conf_launch_stop(struct conf_launch *l, int keep_logs);

#endif
