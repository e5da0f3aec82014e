/*
 * qwen-mock: command-line front end of the mock upstream (mock_server.c).
 * Threading: see mock_server.c (MHD epoll thread pool + one timer thread);
 * main() only parses flags, starts the server and waits for a signal.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "mock_knobs.h"
#include "qwenkit/buf.h"
#include "qwenkit/mock.h"

/* The project version, defined by the build for every target that links qk_warnings. */
#ifndef QK_VERSION
#error "QK_VERSION is not defined: build through CMake (qk_warnings)"
#endif

static volatile sig_atomic_t stop_requested;

static void
on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
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

/* What qwen-mock is started with: the server's settings and the scenario file. */
struct mock_cli {
    struct qk_mock_config cfg;
    const char *scenario; /* --scenario FILE, borrowed from argv; NULL when not given */
};

enum opt_kind {
    OPT_HELP,    /* print the usage, exit 0 */
    OPT_VERSION, /* print the version, exit 0 */
    OPT_KEYS,    /* print the scenario keys' table, exit 0 */
    OPT_STRING,  /* const char *, not empty */
    OPT_PORT,    /* uint16_t in [lo, hi] */
    OPT_UINT,    /* unsigned in [lo, hi] */
    OPT_SIZE,    /* size_t in [lo, hi] */
    OPT_SET,     /* takes no value: the unsigned field becomes lo */
    OPT_OFF,     /* takes no value: the bool field becomes false */
    OPT_V2MSG,   /* enum qk_mock_v2_messages by name: first, last or empty */
};

/*
 * Every option is one row: name, value name (NULL when it takes none), kind, field of
 * struct mock_cli, bounds, help. The rows drive getopt_long(), the value checks and
 * --help, as QP_OPTION_MAP does for qwen-proxy (proxy/config.c). --help, --version and
 * --fault-keys set no field (their `scenario` is only a placeholder for the column).
 */
#define MOCK_OPTION_MAP(XX)                                                                        \
    XX("host", "ADDR", OPT_STRING, cfg.host, 0, 0, "address to bind (default 127.0.0.1)")          \
    XX("port", "N", OPT_PORT, cfg.port, 0, 65535, "port, 0 picks a free one (default 9100)")       \
    XX("threads", "N", OPT_UINT, cfg.threads, 1, 64, "server threads (default 2)")                 \
    XX("max-connections", "N", OPT_UINT, cfg.max_connections, 1, 1000000,                          \
       "connection limit (default 20000)")                                                         \
    XX("max-body", "BYTES", OPT_SIZE, cfg.max_body, 1, 1UL << 30,                                  \
       "request body limit, 413 above (default 1048576)")                                          \
    XX("journal-per-token", "N", OPT_SIZE, cfg.journal_per_token, 1, 1000000,                      \
       "journal entries kept per token (default 256)")                                             \
    XX("journal-total", "N", OPT_SIZE, cfg.journal_total, 1, 100000000,                            \
       "journal entries kept in all (default 8192)")                                               \
    XX("idle-check-ms", "N", OPT_UINT, cfg.idle_check_ms, 1, 60000,                                \
       "how often waiting streams look for a departed client (200)")                               \
    XX("missing-auth-403", NULL, OPT_SET, cfg.missing_auth_status, 403, 0,                         \
       "answer a missing Authorization with 403 Not authenticated")                                \
    XX("no-done", NULL, OPT_OFF, cfg.send_done, 0, 0, "streams end without data: [DONE]")          \
    XX("no-finish-reason", NULL, OPT_OFF, cfg.send_finish_reason, 0, 0,                            \
       "the last chunk has no finish_reason")                                                      \
    XX("no-usage", NULL, OPT_OFF, cfg.send_usage, 0, 0, "the last chunk has no usage")             \
    XX("no-envelope", NULL, OPT_OFF, cfg.send_envelope, 0, 0,                                      \
       "chunks carry no id/object/created/model")                                                  \
    XX("v2-messages", "WHICH", OPT_V2MSG, cfg.v2_messages, 0, 0,                                   \
       "first, last or empty: what a v2 completion with 2+ messages answers (default first)")      \
    XX("scenario", "FILE", OPT_STRING, scenario, 0, 0, "queue the scenario JSON in FILE at start") \
    XX("quiet", NULL, OPT_OFF, cfg.log_requests, 0, 0, "no per-request log lines")                 \
    XX("help", NULL, OPT_HELP, scenario, 0, 0, "this text")                                        \
    XX("version", NULL, OPT_VERSION, scenario, 0, 0, "print the version")                          \
    XX("fault-keys", NULL, OPT_KEYS, scenario, 0, 0,                                               \
       "print the table of scenario step keys (Markdown, as in the README)")

struct opt_row {
    const char *name;
    const char *metavar;
    enum opt_kind kind;
    size_t offset;
    unsigned long lo, hi;
    const char *help;
};

static const struct opt_row options[] = {
#define OPT_ROW(name, metavar, kind, field, lo, hi, help)                                          \
    {name, metavar, kind, offsetof(struct mock_cli, field), lo, hi, help},
    MOCK_OPTION_MAP(OPT_ROW)
#undef OPT_ROW
};

#define OPT_COUNT (sizeof options / sizeof options[0])

/* Each row's field has the size its kind writes (the parser stores through the offset). */
#define OPT_FIELD_SIZE(field) sizeof(((struct mock_cli *)0)->field)
#define OPT_KIND_SIZE(kind, field)                                                                 \
    ((kind) == OPT_STRING                      ? sizeof(const char *)                              \
     : (kind) == OPT_PORT                      ? sizeof(uint16_t)                                  \
     : (kind) == OPT_UINT || (kind) == OPT_SET ? sizeof(unsigned)                                  \
     : (kind) == OPT_SIZE                      ? sizeof(size_t)                                    \
     : (kind) == OPT_OFF                       ? sizeof(bool)                                      \
     : (kind) == OPT_V2MSG                     ? sizeof(enum qk_mock_v2_messages)                  \
                                               : OPT_FIELD_SIZE(field))
#define OPT_CHECK(name, metavar, kind, field, lo, hi, help)                                        \
    _Static_assert(OPT_FIELD_SIZE(field) == OPT_KIND_SIZE(kind, field),                            \
                   "option --" name ": its field's type does not fit its kind");
MOCK_OPTION_MAP(OPT_CHECK)
#undef OPT_CHECK

/* getopt_long() ids: the row's index plus this; -h and --help share 'h'. */
#define OPT_ID_BASE 1000

static int
option_id(const struct opt_row *o)
{
    return o->kind == OPT_HELP ? 'h' : OPT_ID_BASE + (int)(o - options);
}

/* The row whose getopt_long() id is @p id, or NULL. */
static const struct opt_row *
option_of_id(int id)
{
    for (size_t i = 0; i < OPT_COUNT; i++) {
        if (option_id(&options[i]) == id)
            return &options[i];
    }
    return NULL;
}

static void
print_usage(void)
{
    fputs("Usage: qwen-mock [options]\n"
          "A fault-injecting mock of the Qwen web-chat upstream: the v2 API of chat.qwen.ai\n"
          "(/api/v2/...) and the older v1 API of chat.qwenlm.ai, side by side.\n"
          "Options that take a value accept both '--opt VALUE' and '--opt=VALUE'.\n"
          "\n",
          stdout);
    for (size_t i = 0; i < OPT_COUNT; i++) {
        const struct opt_row *o = &options[i];
        char left[48];
        snprintf(left, sizeof left, "--%s%s%s%s", o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "", o->kind == OPT_HELP ? ", -h" : "");
        printf("  %-24s %s\n", left, o->help);
    }
    fputs("\n", stdout);
    mock_knobs_print_help(stdout);
    fputs("\n"
          "Prints 'listening on http://HOST:PORT' once ready. Control API under /__mock/\n"
          "(scenarios, journal, tokens/revoke, reset, health); see mockupstream/README.md.\n",
          stdout);
}

/* An integer of plain decimal digits in [lo, hi]. */
static bool
parse_range(const char *v, unsigned long lo, unsigned long hi, unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    /* Digits only: strtoul() would also take blanks, a sign, and wrap "-1" around. */
    bool digits = v && v[0] >= '0' && v[0] <= '9';
    unsigned long n = digits ? strtoul(v, &end, 10) : 0;
    if (!digits || *end || errno || n < lo || n > hi)
        return false;
    *out = n;
    return true;
}

/*
 * Applies the value @p v of option @p o to @p cli. @return 0, or 2 after a message
 * on stderr. A bad value leaves nothing set.
 */
static int
apply(struct mock_cli *cli, const struct opt_row *o, const char *v)
{
    char *field = (char *)cli + o->offset;
    unsigned long n = 0;
    switch (o->kind) {
    case OPT_STRING:
        /* `--host=` is a mistake, not "any address". */
        if (!*v) {
            fprintf(stderr, "qwen-mock: --%s needs a non-empty value (see --help)\n", o->name);
            return 2;
        }
        *(const char **)(void *)field = v;
        return 0;
    case OPT_V2MSG: {
        static const char *const names[] = {
            [QK_MOCK_V2_FIRST] = "first", [QK_MOCK_V2_LAST] = "last", [QK_MOCK_V2_EMPTY] = "empty"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            if (v && strcmp(v, names[i]) == 0) {
                *(enum qk_mock_v2_messages *)(void *)field = (enum qk_mock_v2_messages)i;
                return 0;
            }
        }
        fprintf(stderr, "qwen-mock: --%s needs first, last or empty (got '%.64s')\n", o->name,
                v ? v : "");
        return 2;
    }
    case OPT_PORT:
    case OPT_UINT:
    case OPT_SIZE:
        if (!parse_range(v, o->lo, o->hi, &n)) {
            fprintf(stderr, "qwen-mock: --%s needs an integer between %lu and %lu (got '%s')\n",
                    o->name, o->lo, o->hi, v ? v : "");
            return 2;
        }
        if (o->kind == OPT_PORT)
            *(uint16_t *)(void *)field = (uint16_t)n;
        else if (o->kind == OPT_UINT)
            *(unsigned *)(void *)field = (unsigned)n;
        else
            *(size_t *)(void *)field = n;
        return 0;
    case OPT_SET:
        *(unsigned *)(void *)field = (unsigned)o->lo;
        return 0;
    case OPT_OFF:
        *(bool *)(void *)field = false;
        return 0;
    case OPT_HELP:
    case OPT_VERSION:
    case OPT_KEYS:
        break;
    }
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
    const struct opt_row *o = option_of_id(optopt);
    if (c == ':')
        fprintf(stderr, "qwen-mock: --%s needs a value (see --help)\n", o ? o->name : "?");
    else if (o)
        fprintf(stderr, "qwen-mock: --%s takes no value (see --help)\n", o->name);
    else if (optopt)
        fprintf(stderr, "qwen-mock: unknown flag '-%c' (see --help)\n", optopt);
    else
        fprintf(stderr, "qwen-mock: unknown or ambiguous flag '%.64s' (see --help)\n",
                argv[optind - 1]);
}

/*
 * Applies argv to @p cli with getopt_long(), as qwen-conformance does: `--flag value`
 * and `--flag=value` both work, and so does an unambiguous prefix of a flag. Returns -1
 * to run, else the exit status (0 after --help or --version, 2 after a message on stderr).
 */
static int
parse_args(int argc, char **argv, struct mock_cli *cli)
{
    struct option longopts[OPT_COUNT + 1];
    for (size_t i = 0; i < OPT_COUNT; i++) {
        const struct opt_row *o = &options[i];
        longopts[i] = (struct option){o->name, o->metavar ? required_argument : no_argument, NULL,
                                      option_id(o)};
    }
    longopts[OPT_COUNT] = (struct option){NULL, 0, NULL, 0};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        const struct opt_row *o = c == ':' || c == '?' ? NULL : option_of_id(c);
        if (!o) {
            report_bad_option(c, argv);
            return 2;
        }
        if (o->kind == OPT_HELP) {
            print_usage();
            return 0;
        }
        if (o->kind == OPT_VERSION) {
            printf("qwen-mock %s\n", QK_VERSION);
            return 0;
        }
        if (o->kind == OPT_KEYS) {
            mock_knobs_print_markdown(stdout);
            return 0;
        }
        /* A bad value: main() exits without using cli. */
        if (apply(cli, o, optarg) != 0)
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
    struct mock_cli cli = {.scenario = NULL};
    qk_mock_config_init(&cli.cfg);
    cli.cfg.port = 9100;
    cli.cfg.log_requests = true;
    int status = parse_args(argc, argv, &cli);
    if (status >= 0)
        return status;
    const struct qk_mock_config cfg = cli.cfg;
    const char *scenario = cli.scenario;

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
