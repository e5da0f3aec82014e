/*
 * qwen-mock: command-line front end of the mock upstream (mock_server.c).
 * Threading: see mock_server.c (MHD epoll thread pool + one timer thread);
 * main() only parses flags, starts the server and waits for a signal.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "qwenkit/buf.h"
#include "qwenkit/mock.h"

static const char usage[] =
    "Usage: qwen-mock [options]\n"
    "A fault-injecting mock of the Qwen web-chat upstream (chat.qwenlm.ai v1 API).\n"
    "\n"
    "  --host ADDR              address to bind (default 127.0.0.1)\n"
    "  --port N                 port, 0 picks a free one (default 9100)\n"
    "  --threads N              server threads (default 2)\n"
    "  --max-connections N      connection limit (default 20000)\n"
    "  --max-body BYTES         request body limit, 413 above (default 1048576)\n"
    "  --journal-per-token N    journal entries kept per token (default 256)\n"
    "  --journal-total N        journal entries kept in all (default 8192)\n"
    "  --idle-check-ms N        how often waiting streams look for a departed client (200)\n"
    "  --missing-auth-403       answer a missing Authorization with 403 Not authenticated\n"
    "  --no-done                streams end without data: [DONE]\n"
    "  --no-finish-reason       the last chunk has no finish_reason\n"
    "  --no-usage               the last chunk has no usage\n"
    "  --no-envelope            chunks carry no id/object/created/model\n"
    "  --scenario FILE          queue the scenario JSON in FILE at start\n"
    "  --quiet                  no per-request log lines\n"
    "  --help                   this text\n"
    "\n"
    "Prints 'listening on http://HOST:PORT' once ready. Control API under /__mock/\n"
    "(scenarios, journal, tokens/revoke, reset, health); see mockupstream/README.md.\n";

static volatile sig_atomic_t stop_requested;

static void
on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int
parse_range(const char *flag, const char *v, unsigned long min, unsigned long max,
            unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long n = v ? strtoul(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || n < min || n > max || v[0] == '-') {
        fprintf(stderr, "qwen-mock: %s needs an integer between %lu and %lu (got '%s')\n", flag,
                min, max, v ? v : "");
        return -1;
    }
    *out = n;
    return 0;
}

static int
parse_uint(const char *flag, const char *v, unsigned long max, unsigned long *out)
{
    return parse_range(flag, v, 0, max, out);
}

/* Like parse_uint() for options where 0 makes no sense. */
static int
parse_pos(const char *flag, const char *v, unsigned long max, unsigned long *out)
{
    return parse_range(flag, v, 1, max, out);
}

static char *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct qk_buf b;
    qk_buf_init(&b, QK_LIMIT_SCENARIO_FILE);
    char chunk[4096];
    size_t n;
    enum qk_err rc = QK_OK;
    while (rc == QK_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = qk_buf_append(&b, chunk, n);
    fclose(f);
    if (rc != QK_OK) {
        qk_buf_free(&b);
        errno = EFBIG;
        return NULL;
    }
    return qk_buf_take(&b, len);
}

/* Many slow streams need many descriptors: lift the soft limit to the hard one. */
static void
raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int
main(int argc, char **argv)
{
    struct qk_mock_config cfg;
    qk_mock_config_init(&cfg);
    cfg.port = 9100;
    cfg.log_requests = true;
    const char *scenario = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long n = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--host") == 0 && v) {
            cfg.host = v;
            i++;
        } else if (strcmp(a, "--port") == 0) {
            if (parse_uint(a, v, 65535, &n))
                return 2;
            cfg.port = (uint16_t)n;
            i++;
        } else if (strcmp(a, "--threads") == 0) {
            if (parse_pos(a, v, 64, &n))
                return 2;
            cfg.threads = (unsigned)n;
            i++;
        } else if (strcmp(a, "--max-connections") == 0) {
            if (parse_pos(a, v, 1000000, &n))
                return 2;
            cfg.max_connections = (unsigned)n;
            i++;
        } else if (strcmp(a, "--max-body") == 0) {
            if (parse_pos(a, v, 1UL << 30, &n))
                return 2;
            cfg.max_body = n;
            i++;
        } else if (strcmp(a, "--journal-per-token") == 0) {
            if (parse_pos(a, v, 1000000, &n))
                return 2;
            cfg.journal_per_token = n;
            i++;
        } else if (strcmp(a, "--journal-total") == 0) {
            if (parse_pos(a, v, 100000000, &n))
                return 2;
            cfg.journal_total = n;
            i++;
        } else if (strcmp(a, "--idle-check-ms") == 0) {
            if (parse_pos(a, v, 60000, &n))
                return 2;
            cfg.idle_check_ms = (unsigned)n;
            i++;
        } else if (strcmp(a, "--missing-auth-403") == 0) {
            cfg.missing_auth_status = 403;
        } else if (strcmp(a, "--no-done") == 0) {
            cfg.send_done = false;
        } else if (strcmp(a, "--no-finish-reason") == 0) {
            cfg.send_finish_reason = false;
        } else if (strcmp(a, "--no-usage") == 0) {
            cfg.send_usage = false;
        } else if (strcmp(a, "--no-envelope") == 0) {
            cfg.send_envelope = false;
        } else if (strcmp(a, "--scenario") == 0 && v) {
            scenario = v;
            i++;
        } else if (strcmp(a, "--quiet") == 0) {
            cfg.log_requests = false;
        } else {
            fprintf(stderr, "qwen-mock: unknown or incomplete option '%s' (see --help)\n", a);
            return 2;
        }
    }

    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    struct qk_mock *mock = NULL;
    char err[256];
    if (qk_mock_start(&cfg, &mock, err, sizeof err) != QK_OK) {
        fprintf(stderr, "qwen-mock: %s\n", err);
        return 1;
    }
    if (scenario) {
        size_t len = 0;
        char *json = read_file(scenario, &len);
        if (!json) {
            fprintf(stderr, "qwen-mock: --scenario %s: %s\n", scenario, strerror(errno));
            qk_mock_stop(mock);
            return 2;
        }
        enum qk_err rc = qk_mock_load_scenarios(mock, json, len, err, sizeof err);
        free(json);
        if (rc != QK_OK) {
            fprintf(stderr, "qwen-mock: --scenario %s: %s\n", scenario, err);
            qk_mock_stop(mock);
            return 2;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    printf("listening on http://%s:%u\n", strchr(cfg.host, ':') ? "[::1]" : cfg.host,
           (unsigned)qk_mock_port(mock));
    fflush(stdout);
    while (!stop_requested)
        pause();
    qk_mock_stop(mock);
    fprintf(stderr, "qwen-mock: stopped\n");
    return 0;
}
