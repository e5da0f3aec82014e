/* Unit tests: command line and environment parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "dialect.h"
#include "qwenkit/proxy.h"

static const char *const *fake_env;

static const char *
env(const char *name)
{
    for (const char *const *e = fake_env; e && *e; e += 2) {
        if (strcmp(e[0], name) == 0)
            return e[1];
    }
    return NULL;
}

static enum qk_err
parse(struct qk_proxy_config *cfg, int argc, char **argv, enum qk_proxy_cli_action *action,
      char *err)
{
    qk_proxy_config_init(cfg);
    return qk_proxy_config_from_args(cfg, argc, argv, env, action, err, 256);
}

static void
defaults_match_the_issue(void **state)
{
    (void)state;
    struct qk_proxy_config cfg;
    qk_proxy_config_init(&cfg);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.port, 8000);
    assert_null(cfg.upstream); /* the dialect's own (upstream_dialect_and_its_default) */
    assert_string_equal(cfg.upstream_dialect, "v2"); /* today's service */
    assert_string_equal(cfg.reasoning, "separate");
    assert_false(cfg.token_cookie);
    assert_int_equal(cfg.n_upstream_headers, 0);
    assert_int_equal(cfg.cache_ttl_ms, 3600000);
    assert_int_equal(cfg.max_retries, 3);
    assert_int_equal(cfg.log_format, QK_PROXY_LOG_TEXT);
    assert_int_equal(cfg.log_level, QK_PROXY_LOG_LEVEL_INFO);
}

static void
flags_set_every_field(void **state)
{
    (void)state;
    char *argv[] = {"qwen-proxy",
                    "--listen",
                    "0.0.0.0",
                    "--port=0",
                    "--upstream",
                    "http://127.0.0.1:9100/",
                    "--cache-ttl",
                    "1.5",
                    "--max-retries",
                    "5",
                    "--retry-base-ms",
                    "10",
                    "--upstream-timeout",
                    "2",
                    "--max-body",
                    "2048",
                    "--cors-origins",
                    "https://a.example",
                    "--log-format",
                    "json",
                    "--log-level",
                    "warn",
                    "--cache-max-entries",
                    "7",
                    "--deadline-ms",
                    "9000",
                    "--retry-after-cap",
                    "4",
                    "--stale-grace",
                    "0"};
    struct qk_proxy_config cfg;
    enum qk_proxy_cli_action action;
    char err[256];
    fake_env = NULL;
    assert_int_equal(parse(&cfg, (int)(sizeof(argv) / sizeof(argv[0])), argv, &action, err), QK_OK);
    assert_int_equal(action, QK_PROXY_CLI_RUN);
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_int_equal(cfg.port, 0);
    assert_string_equal(cfg.upstream, "http://127.0.0.1:9100/");
    assert_int_equal(cfg.cache_ttl_ms, 1500);
    assert_int_equal(cfg.max_retries, 5);
    assert_int_equal(cfg.retry_base_ms, 10);
    assert_int_equal(cfg.upstream_timeout_ms, 2000);
    assert_int_equal(cfg.max_body, 2048);
    assert_string_equal(cfg.cors_origins, "https://a.example");
    assert_int_equal(cfg.log_format, QK_PROXY_LOG_JSON);
    assert_int_equal(cfg.log_level, QK_PROXY_LOG_LEVEL_WARN);
    assert_int_equal(cfg.cache_max_entries, 7);
    assert_int_equal(cfg.deadline_ms, 9000);
    assert_int_equal(cfg.retry_after_cap_ms, 4000);
    assert_int_equal(cfg.stale_grace_ms, 0);
}

static void
flags_win_over_environment(void **state)
{
    (void)state;
    static const char *const e[] = {"QWEN_PROXY_PORT", "9001", "QWEN_PROXY_MAX_RETRIES", "1", NULL};
    fake_env = e;
    char *argv[] = {"qwen-proxy", "--port", "9002"};
    struct qk_proxy_config cfg;
    enum qk_proxy_cli_action action;
    char err[256];
    assert_int_equal(parse(&cfg, 3, argv, &action, err), QK_OK);
    assert_int_equal(cfg.port, 9002);
    assert_int_equal(cfg.max_retries, 1);
    fake_env = NULL;
}

static void
bad_values_are_refused_with_a_message(void **state)
{
    (void)state;
    const char *bad[][2] = {
        {"--port", "65536"},         {"--port", "-1"},
        {"--port", "80x"},           {"--port", ""},
        {"--max-retries", "-3"},     {"--max-retries", "1e3"},
        {"--cache-ttl", "-1"},       {"--cache-ttl", "abc"},
        {"--upstream", "ftp://x"},   {"--upstream", "chat.qwenlm.ai"},
        {"--log-format", "xml"},     {"--max-body", "0"},
        {"--log-level", "debug"},    {"--log-level", "WARN"},
        {"--upstream-timeout", "0"}, {"--cache-max-entries", "0"},
    };
    fake_env = NULL;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *argv[] = {"qwen-proxy", (char *)bad[i][0], (char *)bad[i][1]};
        struct qk_proxy_config cfg;
        enum qk_proxy_cli_action action;
        char err[256] = "";
        assert_int_equal(parse(&cfg, 3, argv, &action, err), QK_INVALID);
        assert_non_null(strstr(err, bad[i][0]));
    }
    char *unknown[] = {"qwen-proxy", "--frobnicate", "1"};
    char *missing[] = {"qwen-proxy", "--port"};
    char *positional[] = {"qwen-proxy", "8000"};
    struct qk_proxy_config cfg;
    enum qk_proxy_cli_action action;
    char err[256];
    assert_int_equal(parse(&cfg, 3, unknown, &action, err), QK_INVALID);
    assert_non_null(strstr(err, "--frobnicate"));
    assert_int_equal(parse(&cfg, 2, missing, &action, err), QK_INVALID);
    assert_int_equal(parse(&cfg, 2, positional, &action, err), QK_INVALID);

    static const char *const e[] = {"QWEN_PROXY_PORT", "http", NULL};
    fake_env = e;
    char *none[] = {"qwen-proxy"};
    assert_int_equal(parse(&cfg, 1, none, &action, err), QK_INVALID);
    assert_non_null(strstr(err, "QWEN_PROXY_PORT"));
    fake_env = NULL;
}

/* The model-list cache is bounded in bytes too: default 64 MiB, flag and environment. */
static void
cache_max_bytes_option(void **state)
{
    (void)state;
    struct qk_proxy_config cfg;
    qk_proxy_config_init(&cfg);
    assert_int_equal(cfg.cache_max_bytes, 64 * 1024 * 1024);
    enum qk_proxy_cli_action action;
    char err[256];
    char *flag[] = {"qwen-proxy", "--cache-max-bytes", "1000"};
    fake_env = NULL;
    assert_int_equal(parse(&cfg, 3, flag, &action, err), QK_OK);
    assert_int_equal(cfg.cache_max_bytes, 1000);
    static const char *const e[] = {"QWEN_PROXY_CACHE_MAX_BYTES", "4096", NULL};
    fake_env = e;
    char *none[] = {"qwen-proxy"};
    assert_int_equal(parse(&cfg, 1, none, &action, err), QK_OK);
    assert_int_equal(cfg.cache_max_bytes, 4096);
    fake_env = NULL;
    char *zero[] = {"qwen-proxy", "--cache-max-bytes", "0"};
    assert_int_equal(parse(&cfg, 3, zero, &action, err), QK_INVALID);
    assert_non_null(strstr(err, "--cache-max-bytes"));
    assert_non_null(strstr(qk_proxy_usage(), "--cache-max-bytes"));
    assert_non_null(strstr(qk_proxy_usage(), "QWEN_PROXY_CACHE_MAX_BYTES"));
}

/* --upstream-dialect takes v1 or v2 (flag or environment); --upstream follows the dialect
 * when not given (qk_proxy_start picks the dialect's base URL, dialect.h). */
static void
upstream_dialect_and_its_default(void **state)
{
    (void)state;
    struct qk_proxy_config cfg;
    enum qk_proxy_cli_action action;
    char err[256] = "";
    char *v1_flag[] = {"qwen-proxy", "--upstream-dialect", "v1"};
    fake_env = NULL;
    assert_int_equal(parse(&cfg, 3, v1_flag, &action, err), QK_OK);
    assert_string_equal(cfg.upstream_dialect, "v1");
    assert_null(cfg.upstream);
    assert_string_equal(qp_dialect_find("v2")->default_upstream, "https://chat.qwen.ai");
    assert_string_equal(qp_dialect_find("v1")->default_upstream, "https://chat.qwenlm.ai");
    assert_string_equal(qp_dialect_find(QP_DIALECT_DEFAULT)->name, "v2");
    assert_null(qp_dialect_find("v3"));
    assert_null(qp_dialect_find(NULL));
    /* Every name the registry lists is found, and the help names them. */
    char names[32];
    snprintf(names, sizeof(names), "%s", qp_dialect_names());
    for (char *tok = strtok(names, "|"); tok; tok = strtok(NULL, "|"))
        assert_non_null(qp_dialect_find(tok));
    assert_non_null(strstr(qk_proxy_usage(), "--upstream-dialect v1|v2"));
    assert_non_null(strstr(qk_proxy_usage(), "QWEN_PROXY_UPSTREAM_DIALECT"));

    static const char *const e[] = {"QWEN_PROXY_UPSTREAM_DIALECT", "v1", NULL};
    fake_env = e;
    char *none[] = {"qwen-proxy"};
    assert_int_equal(parse(&cfg, 1, none, &action, err), QK_OK);
    assert_string_equal(cfg.upstream_dialect, "v1");
    char *v2[] = {"qwen-proxy", "--upstream-dialect=v2"};
    assert_int_equal(parse(&cfg, 2, v2, &action, err), QK_OK);
    assert_string_equal(cfg.upstream_dialect, "v2");
    fake_env = NULL;

    char *bad[] = {"qwen-proxy", "--upstream-dialect", "V2"};
    assert_int_equal(parse(&cfg, 3, bad, &action, err), QK_INVALID);
    assert_non_null(strstr(err, "--upstream-dialect"));

    /* An embedder's unknown dialect is refused at start, before anything listens. */
    qk_proxy_config_init(&cfg);
    cfg.port = 0;
    cfg.upstream_dialect = "v9";
    struct qk_proxy *px = NULL;
    assert_int_equal(qk_proxy_start(&cfg, &px, err, sizeof(err)), QK_INVALID);
    assert_null(px);
    assert_non_null(strstr(err, "v9"));
}

static void
reasoning_and_token_cookie(void **state)
{
    (void)state;
    struct qk_proxy_config cfg;
    enum qk_proxy_cli_action action;
    char err[256] = "";
    fake_env = NULL;
    const char *modes[] = {"separate", "inline", "drop"};
    for (size_t i = 0; i < 3; i++) {
        char *argv[] = {"qwen-proxy", "--reasoning", (char *)modes[i]};
        assert_int_equal(parse(&cfg, 3, argv, &action, err), QK_OK);
        assert_string_equal(cfg.reasoning, modes[i]);
    }
    char *bad[] = {"qwen-proxy", "--reasoning", "hide"};
    assert_int_equal(parse(&cfg, 3, bad, &action, err), QK_INVALID);
    assert_non_null(strstr(err, "--reasoning"));

    /* The flag alone turns it on and does not take the next argument. */
    char *on[] = {"qwen-proxy", "--token-cookie", "--port", "9003"};
    assert_int_equal(parse(&cfg, 4, on, &action, err), QK_OK);
    assert_true(cfg.token_cookie);
    assert_int_equal(cfg.port, 9003);
    char *off[] = {"qwen-proxy", "--token-cookie=false"};
    static const char *const e[] = {"QWEN_PROXY_TOKEN_COOKIE", "1", NULL};
    fake_env = e;
    char *none[] = {"qwen-proxy"};
    assert_int_equal(parse(&cfg, 1, none, &action, err), QK_OK);
    assert_true(cfg.token_cookie);
    assert_int_equal(parse(&cfg, 2, off, &action, err), QK_OK);
    assert_false(cfg.token_cookie);
    fake_env = NULL;
    char *junk[] = {"qwen-proxy", "--token-cookie=maybe"};
    assert_int_equal(parse(&cfg, 2, junk, &action, err), QK_INVALID);
    assert_non_null(strstr(err, "--token-cookie"));
}

/* --upstream-header is repeatable; the flags' list replaces the environment's; names the
 * proxy owns and malformed lines are refused. */
static void
upstream_headers_are_repeatable_and_checked(void **state)
{
    (void)state;
    struct qk_proxy_config cfg;
    enum qk_proxy_cli_action action;
    char err[256] = "";
    static const char *const e[] = {"QWEN_PROXY_UPSTREAM_HEADER", "source: web\nversion: 0.2.87",
                                    NULL};
    fake_env = e;
    char *none[] = {"qwen-proxy"};
    assert_int_equal(parse(&cfg, 1, none, &action, err), QK_OK);
    assert_int_equal(cfg.n_upstream_headers, 1);
    assert_string_equal(cfg.upstream_headers[0], "source: web\nversion: 0.2.87");
    char *two[] = {"qwen-proxy", "--upstream-header", "X-A: 1", "--upstream-header=Cookie: a=b"};
    assert_int_equal(parse(&cfg, 4, two, &action, err), QK_OK);
    assert_int_equal(cfg.n_upstream_headers, 2);
    assert_string_equal(cfg.upstream_headers[0], "X-A: 1");
    assert_string_equal(cfg.upstream_headers[1], "Cookie: a=b");
    fake_env = NULL;

    const char *bad[] = {"X-A 1",
                         ": v",
                         "Bad Name: v",
                         "X-A: a\rb",
                         "Authorization: Bearer x",
                         "Host: h",
                         "Content-Length: 3",
                         "Connection: close",
                         "X-Request-Id: 1",
                         "Content-Type: text/plain",
                         "X-A: 1\n",
                         "Transfer-Encoding: chunked"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *argv[] = {"qwen-proxy", "--upstream-header", (char *)bad[i]};
        err[0] = '\0';
        assert_int_equal(parse(&cfg, 3, argv, &action, err), QK_INVALID);
        assert_non_null(strstr(err, "--upstream-header"));
    }
    /* A refused line is named by its header name, never its value (a secret, maybe). */
    char *secret[] = {"qwen-proxy", "--upstream-header", "Authorization: Bearer sk-secret-1"};
    assert_int_equal(parse(&cfg, 3, secret, &action, err), QK_INVALID);
    assert_non_null(strstr(err, "'Authorization'"));
    assert_null(strstr(err, "sk-secret"));
    char *many[2 * QK_PROXY_MAX_UPSTREAM_HEADERS + 3];
    int n = 0;
    many[n++] = "qwen-proxy";
    for (int i = 0; i <= QK_PROXY_MAX_UPSTREAM_HEADERS; i++) {
        many[n++] = "--upstream-header";
        many[n++] = "X-A: 1";
    }
    assert_int_equal(parse(&cfg, n, many, &action, err), QK_INVALID);
    assert_non_null(strstr(err, "more than"));
}

static void
help_version_and_mutant_flag(void **state)
{
    (void)state;
    struct qk_proxy_config cfg;
    enum qk_proxy_cli_action action;
    char err[256];
    char *help[] = {"qwen-proxy", "--help"};
    assert_int_equal(parse(&cfg, 2, help, &action, err), QK_OK);
    assert_int_equal(action, QK_PROXY_CLI_HELP);
    assert_non_null(strstr(qk_proxy_usage(), "--cache-ttl"));
    assert_non_null(strstr(qk_proxy_usage(), "QWEN_PROXY_CACHE_TTL"));
    char *version[] = {"qwen-proxy", "--version"};
    assert_int_equal(parse(&cfg, 2, version, &action, err), QK_OK);
    assert_int_equal(action, QK_PROXY_CLI_VERSION);

    char *mutant[] = {"qwen-proxy", "--mutant", "no_auth_check"};
    char *bad_mutant[] = {"qwen-proxy", "--mutant", "no_such_mutant"};
    assert_int_equal(parse(&cfg, 3, bad_mutant, &action, err), QK_INVALID);
    if (qk_proxy_mutants_available()) {
        assert_int_equal(parse(&cfg, 3, mutant, &action, err), QK_OK);
        assert_string_equal(cfg.mutant, "no_auth_check");
    } else {
        assert_int_equal(parse(&cfg, 3, mutant, &action, err), QK_INVALID);
    }
}

/* The connection limit's default comes from the descriptor limit, two a stream. */
static void
connection_limit_follows_the_descriptor_limit(void **state)
{
    (void)state;
    struct qk_proxy_config cfg;
    enum qk_proxy_cli_action action;
    char err[256];
    fake_env = NULL;
    qk_proxy_config_init(&cfg);
    assert_int_equal(cfg.max_connections, 0); /* derived at start */
    char *set[] = {"qwen-proxy", "--max-connections", "5000"};
    assert_int_equal(parse(&cfg, 3, set, &action, err), QK_OK);
    assert_int_equal(cfg.max_connections, 5000);
    char *derived[] = {"qwen-proxy", "--max-connections=0"};
    assert_int_equal(parse(&cfg, 2, derived, &action, err), QK_OK);
    assert_int_equal(cfg.max_connections, 0);
    assert_non_null(strstr(qk_proxy_usage(), "descriptor limit"));

    /* This sandbox's 20,000 descriptors hold the issue's 9,900 streams. */
    unsigned n = qk_proxy_connections_for_descriptors(20000, 2);
    assert_true(n >= 9900);
    assert_true(qk_proxy_descriptors_needed(n, 2) <= 20000);
    assert_true(qk_proxy_descriptors_needed(n + 1, 2) > 20000);
    assert_true(qk_proxy_descriptors_needed(n, 2) >= 2ull * n);
    /* The common soft limit: under half of it, the fixed descriptors aside. */
    n = qk_proxy_connections_for_descriptors(1024, 2);
    assert_true(n > 400 && 2 * n < 1024);
    assert_true(qk_proxy_descriptors_needed(n, 2) <= 1024);
    /* More server threads hold more fixed descriptors. */
    assert_true(qk_proxy_descriptors_needed(100, 64) > qk_proxy_descriptors_needed(100, 2));
    assert_int_equal(qk_proxy_connections_for_descriptors(8, 2), 1);
    assert_int_equal(qk_proxy_connections_for_descriptors(~0ull, 2), 1000000);

    /* A quarter more accepted to be answered 503, at most QK_PROXY_ACCEPT_MARGIN more. */
    assert_int_equal(qk_proxy_accept_limit(4), 4 + 1 + 16);
    assert_int_equal(qk_proxy_accept_limit(100), 100 + 25 + 16);
    assert_int_equal(qk_proxy_accept_limit(10000), 10000 + QK_PROXY_ACCEPT_MARGIN);
}

/* The start-up line names every setting and shows no secret. */
static void
description_names_every_setting_and_no_secret(void **state)
{
    (void)state;
    char *argv[] = {"qwen-proxy",
                    "--upstream",
                    "https://user:hunter2@chat.example/",
                    "--upstream-header",
                    "Cookie: session=s3cr3t",
                    "--upstream-header",
                    "X-Key: k3y",
                    "--cache-ttl",
                    "2.5",
                    "--token-cookie"};
    struct qk_proxy_config cfg;
    enum qk_proxy_cli_action action;
    char err[256];
    assert_int_equal(parse(&cfg, 10, argv, &action, err), QK_OK);
    char out[8192];
    qk_proxy_config_describe(&cfg, out, sizeof(out));
    assert_null(strstr(out, "hunter2"));
    assert_null(strstr(out, "user:"));
    assert_null(strstr(out, "s3cr3t"));
    assert_null(strstr(out, "k3y"));
    assert_non_null(strstr(out, "upstream=https://chat.example/"));
    assert_non_null(strstr(out, "upstream-header=Cookie,X-Key"));
    assert_non_null(strstr(out, "cache-ttl=2.500"));
    assert_non_null(strstr(out, "token-cookie=true"));
    assert_null(strstr(out, "mutant=")); /* not a setting outside the self-test */
    /* Every flag of --help but --mutant, --help and --version is there. */
    for (const char *h = strstr(qk_proxy_usage(), "\n  --"); h; h = strstr(h + 1, "\n  --")) {
        char name[64];
        size_t n = strcspn(h + 5, " \n");
        snprintf(name, sizeof(name), "%.*s=", (int)n, h + 5);
        if (strcmp(name, "mutant=") && strcmp(name, "help=") && strcmp(name, "version=") &&
            !strstr(out, name))
            fail_msg("the description lacks %s: %s", name, out);
    }
    char small[32];
    qk_proxy_config_describe(&cfg, small, sizeof(small)); /* cut, still a string */
    assert_true(strlen(small) < sizeof(small));
    qk_proxy_config_release(&cfg);
}

/* Writes @p text to a new temporary file; @return its path (static). */
static const char *
config_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/qwen-proxy-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void
config_file_sets_flags_and_loses_to_env_and_flags(void **state)
{
    (void)state;
    const char *path =
        config_file("# qwen-proxy settings\n"
                    "port = 9001\n"
                    "  cache-ttl=2.5  \n"
                    "\n"
                    "max-retries = 5\n"
                    "upstream-header = X-From-File: 1\n"
                    "token-cookie = true\n"
                    "log-format = json # not a comment: values run to the line's end\n");
    /* log-format's value is not one of text|json|off: named with its line. */
    char *argv0[] = {"qwen-proxy", "--config", (char *)path};
    struct qk_proxy_config cfg;
    enum qk_proxy_cli_action action;
    char err[256];
    assert_int_equal(parse(&cfg, 3, argv0, &action, err), QK_INVALID);
    assert_non_null(strstr(err, ":8: log-format"));
    qk_proxy_config_release(&cfg);
    unlink(path);

    path = config_file("port = 9001\ncache-ttl=2.5\nmax-retries = 5\n"
                       "upstream-header = X-From-File: 1\ntoken-cookie = true\n");
    static const char *const env_vars[] = {"QWEN_PROXY_MAX_RETRIES", "7", NULL};
    fake_env = env_vars;
    char *argv[] = {"qwen-proxy", "--port", "9002", "--config=", NULL};
    char opt[96];
    snprintf(opt, sizeof(opt), "--config=%s", path);
    argv[3] = opt;
    assert_int_equal(parse(&cfg, 4, argv, &action, err), QK_OK);
    assert_int_equal(cfg.port, 9002);         /* the flag wins */
    assert_int_equal(cfg.max_retries, 7);     /* the environment wins */
    assert_int_equal(cfg.cache_ttl_ms, 2500); /* the file's */
    assert_true(cfg.token_cookie);            /* the file's */
    assert_int_equal(cfg.n_upstream_headers, 1);
    assert_string_equal(cfg.upstream_headers[0], "X-From-File: 1");
    qk_proxy_config_release(&cfg);
    fake_env = NULL;
    unlink(path);
}

static void
config_file_errors_name_the_line(void **state)
{
    (void)state;
    static const struct {
        const char *text, *expect;
    } cases[] = {
        {"port = 1\nprot = 2\n", ":2: unknown setting 'prot'"},
        {"port\n", ":1: expected 'name = value'"},
        {"config = /etc/other.conf\n", ":1: config files do not include others"},
        {"port = 70000\n", ":1: port: invalid value '70000'"},
        {"--port = 1\n", ":1: unknown setting '--port'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *path = config_file(cases[i].text);
        char *argv[] = {"qwen-proxy", "--config", (char *)path};
        struct qk_proxy_config cfg;
        enum qk_proxy_cli_action action;
        char err[256];
        assert_int_equal(parse(&cfg, 3, argv, &action, err), QK_INVALID);
        if (!strstr(err, cases[i].expect))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].expect);
        assert_non_null(strstr(err, path));
        qk_proxy_config_release(&cfg);
        unlink(path);
    }
    char *argv[] = {"qwen-proxy", "--config", "/nonexistent/qwen-proxy.conf"};
    struct qk_proxy_config cfg;
    enum qk_proxy_cli_action action;
    char err[256];
    assert_int_equal(parse(&cfg, 3, argv, &action, err), QK_INVALID);
    assert_non_null(strstr(err, "/nonexistent/qwen-proxy.conf: cannot read"));
    qk_proxy_config_release(&cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_match_the_issue),
        cmocka_unit_test(flags_set_every_field),
        cmocka_unit_test(flags_win_over_environment),
        cmocka_unit_test(bad_values_are_refused_with_a_message),
        cmocka_unit_test(cache_max_bytes_option),
        cmocka_unit_test(upstream_dialect_and_its_default),
        cmocka_unit_test(reasoning_and_token_cookie),
        cmocka_unit_test(upstream_headers_are_repeatable_and_checked),
        cmocka_unit_test(help_version_and_mutant_flag),
        cmocka_unit_test(connection_limit_follows_the_descriptor_limit),
        cmocka_unit_test(config_file_sets_flags_and_loses_to_env_and_flags),
        cmocka_unit_test(config_file_errors_name_the_line),
        cmocka_unit_test(description_names_every_setting_and_no_secret),
    };
    return cmocka_run_group_tests_name("unit_proxy_config", tests, NULL, NULL);
}
