/*
 * qwen-proxy: the reference proxy, as a program.
 *
 * Threading: SIGINT/SIGTERM are blocked before any thread starts, so every thread
 * (libmicrohttpd's epoll pool, the upstream loop) inherits the mask and the main thread
 * alone waits for them with sigwait(), then stops the proxy cleanly.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qwenkit/proxy.h"

static const char *
env_lookup(const char *name)
{
    return getenv(name);
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
        return 2;
    }
    if (action == QK_PROXY_CLI_HELP) {
        fputs(qk_proxy_usage(), stdout);
        return 0;
    }
    if (action == QK_PROXY_CLI_VERSION) {
        printf("qwen-proxy %s%s\n", qk_proxy_version(),
               qk_proxy_mutants_available() ? " (mutants built in)" : "");
        return 0;
    }

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "qwen-proxy: curl_global_init failed\n");
        return 1;
    }
    struct qk_proxy *proxy = NULL;
    if (qk_proxy_start(&cfg, &proxy, err, sizeof(err)) != QK_OK) {
        fprintf(stderr, "qwen-proxy: %s\n", err);
        curl_global_cleanup();
        return 1;
    }
    bool v6 = strchr(cfg.listen_host, ':') != NULL;
    printf("listening on http://%s%s%s:%u\n", v6 ? "[" : "", cfg.listen_host, v6 ? "]" : "",
           (unsigned)qk_proxy_port(proxy));
    fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    qk_proxy_stop(proxy);
    curl_global_cleanup();
    return 0;
}
