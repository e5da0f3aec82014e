/*
 * qwen-mock: command-line front end of the mock upstream (mock_server.c).
 * Threading: see mock_server.c (MHD epoll thread pool + one timer thread);
 * main() only parses flags, starts the server and waits for a signal.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "qwenkit/buf.h"
#include "qwenkit/mock.h"

/* The project version, defined by the build for every target that links qk_warnings. */
#ifndef QK_VERSION
#error "QK_VERSION is not defined: build through CMake (qk_warnings)"
#endif

static const char usage[] =
    "Usage: qwen-mock [options]\n"
    "A fault-injecting mock of the Qwen web-chat upstream (chat.qwenlm.ai v1 API).\n"
    "Options that take a value accept both '--opt VALUE' and '--opt=VALUE'.\n"
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
    "  --help, -h               this text\n"
    "  --version                print the version\n"
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
    /* Digits only: strtoul() would also take blanks, a sign, and wrap "-1" around. */
    bool digits = v && v[0] >= '0' && v[0] <= '9';
    unsigned long n = digits ? strtoul(v, &end, 10) : 0;
    if (!digits || *end || errno || n < min || n > max) {
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

/* Ids of the long options; -h and --help share 'h'. */
enum mock_opt {
    OPT_HELP = 'h',
    OPT_HOST = 1000,
    OPT_PORT,
    OPT_THREADS,
    OPT_MAX_CONNECTIONS,
    OPT_MAX_BODY,
    OPT_JOURNAL_PER_TOKEN,
    OPT_JOURNAL_TOTAL,
    OPT_IDLE_CHECK_MS,
    OPT_MISSING_AUTH_403,
    OPT_NO_DONE,
    OPT_NO_FINISH_REASON,
    OPT_NO_USAGE,
    OPT_NO_ENVELOPE,
    OPT_SCENARIO,
    OPT_QUIET,
    OPT_VERSION,
};

static const struct option longopts[] = {
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"max-body", required_argument, NULL, OPT_MAX_BODY},
    {"journal-per-token", required_argument, NULL, OPT_JOURNAL_PER_TOKEN},
    {"journal-total", required_argument, NULL, OPT_JOURNAL_TOTAL},
    {"idle-check-ms", required_argument, NULL, OPT_IDLE_CHECK_MS},
    {"missing-auth-403", no_argument, NULL, OPT_MISSING_AUTH_403},
    {"no-done", no_argument, NULL, OPT_NO_DONE},
    {"no-finish-reason", no_argument, NULL, OPT_NO_FINISH_REASON},
    {"no-usage", no_argument, NULL, OPT_NO_USAGE},
    {"no-envelope", no_argument, NULL, OPT_NO_ENVELOPE},
    {"scenario", required_argument, NULL, OPT_SCENARIO},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* The long name of the option whose id is @p val, or NULL. */
static const char *
option_name(int val)
{
    for (const struct option *o = longopts; o->name; o++) {
        if (o->val == val)
            return o->name;
    }
    return NULL;
}

/* A string value must not be empty (`--host=` is a mistake, not "any address"). */
static int
parse_string(const char *flag, const char *v, const char **out)
{
    if (!*v) {
        fprintf(stderr, "qwen-mock: %s needs a non-empty value (see --help)\n", flag);
        return -1;
    }
    *out = v;
    return 0;
}

/*
 * Explains the getopt_long() failure @p c (':' or '?') for argv[optind - 1]. With
 * opterr = 0 getopt_long() prints nothing: optopt is the id of a known option given
 * without its value (':') or with a value it does not take ('?'), the letter of an
 * unknown short option, or 0 for an unknown or ambiguous long one.
 */
static void
report_bad_option(int c, char **argv)
{
    const char *name = option_name(optopt);
    if (c == ':')
        fprintf(stderr, "qwen-mock: --%s needs a value (see --help)\n", name ? name : "?");
    else if (name)
        fprintf(stderr, "qwen-mock: --%s takes no value (see --help)\n", name);
    else if (optopt)
        fprintf(stderr, "qwen-mock: unknown flag '-%c' (see --help)\n", optopt);
    else
        fprintf(stderr, "qwen-mock: unknown or ambiguous flag '%.64s' (see --help)\n",
                argv[optind - 1]);
}

/*
 * Applies argv to @p cfg and @p scenario, as qwen-conformance does: getopt_long(), so
 * `--flag value` and `--flag=value` both work. Returns -1 to run, else the exit status
 * (0 after --help or --version, 2 after a message on stderr).
 */
static int
parse_args(int argc, char **argv, struct qk_mock_config *cfg, const char **scenario)
{
    int c, idx = -1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, &idx)) != -1) {
        /* The canonical name, also when the flag was abbreviated. */
        char flag[32];
        snprintf(flag, sizeof flag, "--%s", idx >= 0 ? longopts[idx].name : "?");
        idx = -1;
        unsigned long n = 0;
        int bad = 0;
        switch (c) {
        case OPT_HELP:
            fputs(usage, stdout);
            return 0;
        case OPT_VERSION:
            printf("qwen-mock %s\n", QK_VERSION);
            return 0;
        case OPT_HOST:
            bad = parse_string(flag, optarg, &cfg->host);
            break;
        case OPT_PORT:
            bad = parse_uint(flag, optarg, 65535, &n);
            cfg->port = (uint16_t)n;
            break;
        case OPT_THREADS:
            bad = parse_pos(flag, optarg, 64, &n);
            cfg->threads = (unsigned)n;
            break;
        case OPT_MAX_CONNECTIONS:
            bad = parse_pos(flag, optarg, 1000000, &n);
            cfg->max_connections = (unsigned)n;
            break;
        case OPT_MAX_BODY:
            bad = parse_pos(flag, optarg, 1UL << 30, &n);
            cfg->max_body = n;
            break;
        case OPT_JOURNAL_PER_TOKEN:
            bad = parse_pos(flag, optarg, 1000000, &n);
            cfg->journal_per_token = n;
            break;
        case OPT_JOURNAL_TOTAL:
            bad = parse_pos(flag, optarg, 100000000, &n);
            cfg->journal_total = n;
            break;
        case OPT_IDLE_CHECK_MS:
            bad = parse_pos(flag, optarg, 60000, &n);
            cfg->idle_check_ms = (unsigned)n;
            break;
        case OPT_MISSING_AUTH_403:
            cfg->missing_auth_status = 403;
            break;
        case OPT_NO_DONE:
            cfg->send_done = false;
            break;
        case OPT_NO_FINISH_REASON:
            cfg->send_finish_reason = false;
            break;
        case OPT_NO_USAGE:
            cfg->send_usage = false;
            break;
        case OPT_NO_ENVELOPE:
            cfg->send_envelope = false;
            break;
        case OPT_SCENARIO:
            bad = parse_string(flag, optarg, scenario);
            break;
        case OPT_QUIET:
            cfg->log_requests = false;
            break;
        default:
            report_bad_option(c, argv);
            return 2;
        }
        /* A bad value leaves a field half-set: harmless, main() exits without using cfg. */
        if (bad)
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "qwen-mock: unexpected argument '%.64s' (see --help)\n", argv[optind]);
        return 2;
    }
    return -1;
}

int
main(int argc, char **argv)
{
    struct qk_mock_config cfg;
    qk_mock_config_init(&cfg);
    cfg.port = 9100;
    cfg.log_requests = true;
    const char *scenario = NULL;
    int status = parse_args(argc, argv, &cfg, &scenario);
    if (status >= 0)
        return status;

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
