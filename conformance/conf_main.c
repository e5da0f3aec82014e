/*
 * qwen-conformance: checks a Qwen web-chat proxy against conformance/SPEC.md, end to end,
 * with the fault-injecting mock upstream as the oracle.
 *
 * Single-threaded: the tests run one after another (cmocka), each with its own tokens.
 * With --spawn the mock runs in this process on its own threads.
 */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf_groups.h"
#include "conf_html.h"
#include "conf_launch.h"
#include "conf_plan.h"
#include "conf_preflight.h"
#include "conf_report.h"

/*
 * The reference proxy --spawn starts by default: the qwen-proxy beside this program (an
 * installed kit: both in the same bin directory), else the one of the build tree beside
 * it (build/conformance/ and build/proxy/). Found from the program's own path, so that no
 * build-tree path is compiled in. @return @p buf, or NULL when neither exists.
 */
static const char *
default_proxy_bin(char *buf, size_t len)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return NULL;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    static const char *const beside[] = {"qwen-proxy", "../proxy/qwen-proxy"};
    for (size_t i = 0; i < sizeof(beside) / sizeof(beside[0]); i++) {
        snprintf(buf, len, "%s/%s", self, beside[i]);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    return NULL;
}

enum exit_code {
    EXIT_CONFORMS = 0,        /* every MUST passed (or the expected failures happened exactly) */
    EXIT_NONCONFORMING = 1,   /* a MUST failed */
    EXIT_USAGE = 2,           /* bad arguments, or the target could not be reached */
    EXIT_NOT_ESTABLISHED = 3, /* none failed, but a MUST is unchecked, unjudged or skipped */
};

static const struct conf_group *const groups[] = {
#define CONF_GROUP_REF(area) &conf_group_##area,
    CONF_GROUP_MAP(CONF_GROUP_REF)
#undef CONF_GROUP_REF
};
enum { GROUP_COUNT = sizeof(groups) / sizeof(groups[0]) };

struct options {
    const char *proxy_url, *mock_url, *unreachable_url;
    const char *profile_path, *only, *exclude, *junit, *json, *html;
    const char *from_json, *matrix; /* render saved reports instead of running */
    const char *expect_fail;        /* comma-separated IDs, or NULL */
    const char *restart_cmd;
    const char *proxy_log;
    int spawn, keep_logs, list, print_profile;
    bool shuffle;
    unsigned long long seed;
    struct conf_launch_options launch;
};

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: qwen-conformance --proxy URL --mock URL [options]\n"
            "       qwen-conformance --spawn [--proxy-bin PATH] [--proxy-arg ARG]... [options]\n"
            "\n"
            "Checks a proxy against conformance/SPEC.md %s, with qwen-mock as its upstream.\n"
            "\n"
            "  --proxy URL            the proxy under test (started with --upstream MOCK)\n"
            "  --mock URL             the mock upstream the proxy uses\n"
            "  --unreachable-proxy URL  the same proxy with an upstream that refuses (ERR-5)\n"
            "  --profile FILE         what the suite cannot discover (default with --spawn:\n"
            "                         the reference profile, built in)\n"
            "  --spawn                start the mock in-process and the reference proxy\n"
            "  --proxy-bin PATH       the proxy binary for --spawn (default: the qwen-proxy\n"
            "                         beside this program, else the build tree's)\n"
            "  --proxy-arg ARG        one more argument for the spawned proxy (repeatable)\n"
            "  --only PATTERNS        run only these: requirement IDs or test names, globs\n"
            "                         allowed, comma-separated (RETRY-1,SSE-*,'AUTH_3_*')\n"
            "  --exclude PATTERNS     leave these out (same form as --only)\n"
            "  --shuffle SEED         run the tests in an order drawn from SEED (a number)\n"
            "  --restart-cmd CMD      when the proxy stops answering, run CMD (sh -c) to\n"
            "                         restart it and go on (--spawn restarts its own proxy)\n"
            "  --proxy-log FILE       the proxy's log, where HTTP-2 looks for request ids\n"
            "                         (--spawn knows it)\n"
            "  --list                 print the requirements, levels and tests; run nothing\n"
            "  --print-profile        check the profile (--profile) and print every key with\n"
            "                         its effective value as JSON; run nothing\n"
            "  --junit FILE           write JUnit XML\n"
            "  --html FILE            write an HTML report (evidence folded under each test)\n"
            "  --from-json REPORT --html FILE\n"
            "                         render a saved JSON report as HTML; run nothing\n"
            "  --matrix FILE REPORT...  an HTML matrix of saved JSON reports, one column\n"
            "                         per report, one row per requirement; run nothing\n"
            "  --json FILE            write a JSON report\n"
            "  --expect-fail IDS      suite self-test: exit 0 only if exactly these\n"
            "                         requirements fail (comma-separated, e.g. RETRY-1,RETRY-3;\n"
            "                         SSE-8/should: only the SHOULD part of SSE-8)\n"
            "  --keep-logs            keep the spawned proxies' logs\n"
            "  --version              print the version and the SPEC version\n"
            "\n"
            "Exit status: 0 when every MUST requirement passed (\"conforms\"), 1 when one\n"
            "failed, 3 when none failed but one is UNCHECKED, CANNOT-JUDGE or skipped (\"not\n"
            "established\"), 2 on usage or setup errors.\n",
            CONF_SPEC_VERSION);
}

static int
parse_options(int argc, char **argv, struct options *o)
{
    enum {
        OPT_PROXY = 1000,
        OPT_MOCK,
        OPT_UNREACHABLE,
        OPT_PROFILE,
        OPT_ONLY,
        OPT_JUNIT,
        OPT_JSON,
        OPT_SPAWN,
        OPT_PROXY_BIN,
        OPT_PROXY_ARG,
        OPT_EXPECT,
        OPT_KEEP,
        OPT_HELP,
        OPT_EXCLUDE,
        OPT_SHUFFLE,
        OPT_RESTART,
        OPT_LIST,
        OPT_VERSION,
        OPT_PROXY_LOG,
        OPT_PRINT_PROFILE,
        OPT_HTML,
        OPT_FROM_JSON,
        OPT_MATRIX,
    };
    static const struct option longopts[] = {
        {"proxy", required_argument, NULL, OPT_PROXY},
        {"mock", required_argument, NULL, OPT_MOCK},
        {"unreachable-proxy", required_argument, NULL, OPT_UNREACHABLE},
        {"profile", required_argument, NULL, OPT_PROFILE},
        {"only", required_argument, NULL, OPT_ONLY},
        {"junit", required_argument, NULL, OPT_JUNIT},
        {"json", required_argument, NULL, OPT_JSON},
        {"spawn", no_argument, NULL, OPT_SPAWN},
        {"proxy-bin", required_argument, NULL, OPT_PROXY_BIN},
        {"proxy-arg", required_argument, NULL, OPT_PROXY_ARG},
        {"expect-fail", required_argument, NULL, OPT_EXPECT},
        {"keep-logs", no_argument, NULL, OPT_KEEP},
        {"help", no_argument, NULL, OPT_HELP},
        {"exclude", required_argument, NULL, OPT_EXCLUDE},
        {"shuffle", required_argument, NULL, OPT_SHUFFLE},
        {"restart-cmd", required_argument, NULL, OPT_RESTART},
        {"list", no_argument, NULL, OPT_LIST},
        {"version", no_argument, NULL, OPT_VERSION},
        {"proxy-log", required_argument, NULL, OPT_PROXY_LOG},
        {"print-profile", no_argument, NULL, OPT_PRINT_PROFILE},
        {"html", required_argument, NULL, OPT_HTML},
        {"from-json", required_argument, NULL, OPT_FROM_JSON},
        {"matrix", required_argument, NULL, OPT_MATRIX},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    static char proxy_bin[PATH_MAX + 32];
    o->launch.proxy_bin = default_proxy_bin(proxy_bin, sizeof(proxy_bin));
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_PROXY:
            o->proxy_url = optarg;
            break;
        case OPT_MOCK:
            o->mock_url = optarg;
            break;
        case OPT_UNREACHABLE:
            o->unreachable_url = optarg;
            break;
        case OPT_PROFILE:
            o->profile_path = optarg;
            break;
        case OPT_ONLY:
            o->only = optarg;
            break;
        case OPT_JUNIT:
            o->junit = optarg;
            break;
        case OPT_JSON:
            o->json = optarg;
            break;
        case OPT_SPAWN:
            o->spawn = 1;
            break;
        case OPT_PROXY_BIN:
            o->launch.proxy_bin = optarg;
            break;
        case OPT_EXPECT:
            o->expect_fail = optarg;
            break;
        case OPT_KEEP:
            o->keep_logs = 1;
            break;
        case OPT_PROXY_ARG:
            if (o->launch.extra_count == CONF_LAUNCH_MAX_EXTRA) {
                fprintf(stderr, "qwen-conformance: too many --proxy-arg\n");
                return -1;
            }
            o->launch.extra_args[o->launch.extra_count++] = optarg;
            break;
        case OPT_HELP:
            usage(stdout);
            exit(EXIT_CONFORMS);
        case OPT_VERSION:
            printf("qwen-conformance %s (SPEC %s)\n", QK_VERSION, CONF_SPEC_VERSION);
            exit(EXIT_CONFORMS);
        case OPT_EXCLUDE:
            o->exclude = optarg;
            break;
        case OPT_RESTART:
            o->restart_cmd = optarg;
            break;
        case OPT_PROXY_LOG:
            o->proxy_log = optarg;
            break;
        case OPT_LIST:
            o->list = 1;
            break;
        case OPT_PRINT_PROFILE:
            o->print_profile = 1;
            break;
        case OPT_HTML:
            o->html = optarg;
            break;
        case OPT_FROM_JSON:
            o->from_json = optarg;
            break;
        case OPT_MATRIX:
            o->matrix = optarg;
            break;
        case OPT_SHUFFLE: {
            char *end = NULL;
            errno = 0;
            o->seed = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-') {
                fprintf(stderr, "qwen-conformance: --shuffle: '%s' is not a seed (a number)\n",
                        optarg);
                return -1;
            }
            o->shuffle = true;
            break;
        }
        default:
            usage(stderr);
            return -1;
        }
    }
    if (o->matrix) {
        if (optind < argc)
            return 0; /* the reports to put side by side */
        fprintf(stderr, "qwen-conformance: --matrix FILE needs JSON reports after it\n");
        return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "qwen-conformance: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    if (o->from_json && !o->html) {
        fprintf(stderr, "qwen-conformance: --from-json REPORT needs --html FILE\n");
        return -1;
    }
    if (o->list || o->print_profile || o->from_json)
        return 0;
    if (!o->spawn && (!o->proxy_url || !o->mock_url)) {
        fprintf(stderr, "qwen-conformance: give --proxy and --mock, or --spawn\n");
        return -1;
    }
    if (o->spawn && !o->launch.proxy_bin) {
        fprintf(stderr, "qwen-conformance: no qwen-proxy beside this program: give --proxy-bin\n");
        return -1;
    }
    if (o->spawn && (o->proxy_url || o->mock_url)) {
        fprintf(stderr, "qwen-conformance: --spawn starts its own proxy and mock\n");
        return -1;
    }
    return 0;
}

/* Copies @p url without trailing slashes (paths are appended to it). */
static void
set_url(char *dst, size_t len, const char *url)
{
    snprintf(dst, len, "%s", url ? url : "");
    for (size_t n = strlen(dst); n > 0 && dst[n - 1] == '/'; n--)
        dst[n - 1] = '\0';
}

/* Asks the upstream for its models and keeps the first id, for valid chat bodies. */
static enum qk_err
discover_model(struct conf_env *env, char *err, size_t errlen)
{
    char url[CONF_URL_MAX + 32];
    const char *headers[] = {"Authorization: Bearer conf-discovery", NULL};
    struct conf_request req = {.method = "GET", .url = url, .headers = headers};
    struct conf_response resp;
    snprintf(url, sizeof(url), "%s%s", env->mock_url, env->dialect->models_path);
    enum qk_err rc = conf_http(&req, &resp);
    cJSON *json = rc == QK_OK ? cJSON_ParseWithLength(resp.body, resp.body_len) : NULL;
    const cJSON *first = cJSON_GetArrayItem(conf_model_array(json), 0);
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(first, "id"));
    if (id && strlen(id) < sizeof(env->model)) {
        snprintf(env->model, sizeof(env->model), "%s", id);
    } else {
        snprintf(err, errlen, "the mock at %.200s did not list its models (HTTP %ld %.200s)",
                 env->mock_url, rc == QK_OK ? resp.status : 0L,
                 rc == QK_OK ? resp.error : qk_strerror(rc));
        rc = QK_IO;
    }
    cJSON_Delete(json);
    conf_response_clear(&resp);
    return rc;
}

static enum qk_err
check_proxy_answers(const struct conf_env *env, char *err, size_t errlen)
{
    char url[CONF_URL_MAX + 8];
    struct conf_request req = {.method = "GET", .url = url, .timeout_ms = 5000};
    struct conf_response resp;
    snprintf(url, sizeof(url), "%s/", env->proxy_url);
    enum qk_err rc = conf_http(&req, &resp);
    if (rc == QK_OK && resp.status == 0) {
        snprintf(err, errlen, "the proxy at %.200s does not answer: %.200s", env->proxy_url,
                 resp.error);
        rc = QK_IO;
    }
    conf_response_clear(&resp);
    return rc;
}

/* --list: every requirement with its level and tests, in SPEC order. */
static void
print_list(void)
{
    printf("SPEC %s\n", CONF_SPEC_VERSION);
    for (int i = 0; i < CONF_REQ_COUNT; i++) {
        const struct conf_requirement *req = conf_requirement((enum conf_req)i);
        printf("%-9s %-6s %s\n", req->id, conf_level_name(req->level), req->summary);
        for (size_t g = 0; g < GROUP_COUNT; g++) {
            for (size_t k = 0; k < groups[g]->count; k++) {
                const struct conf_case *c = conf_case_of(&groups[g]->tests[k]);
                if ((int)c->req == i)
                    printf("          %s%s\n", c->name,
                           c->should_part && req->level == CONF_MUST ? " (SHOULD part)" : "");
            }
        }
    }
}

/*
 * --expect-fail: @return true when the failed requirements are exactly @p list. "ID" expects
 * the requirement to fail (its SHOULD part, if any, is then not judged); "ID/should" expects
 * only the SHOULD part of the MUST requirement ID to fail. Every other requirement must not
 * fail, nor its SHOULD part.
 */
static bool
failures_as_expected(const struct conf_results *res, const char *list)
{
    bool expected[CONF_REQ_COUNT] = {false};
    bool expected_part[CONF_REQ_COUNT] = {false};
    bool ok = true;
    char *copy = strdup(list);
    char *save = NULL;
    for (char *id = copy ? strtok_r(copy, ",", &save) : NULL; id; id = strtok_r(NULL, ",", &save)) {
        enum conf_req req;
        char *slash = strchr(id, '/');
        bool part = slash && strcasecmp(slash, "/should") == 0;
        if (part)
            *slash = '\0';
        if ((slash && !part) || !conf_requirement_find(id, &req)) {
            fprintf(stderr, "qwen-conformance: --expect-fail: unknown requirement %s\n", id);
            ok = false;
            continue;
        }
        if (part)
            expected_part[req] = true;
        else
            expected[req] = true;
    }
    free(copy);
    for (int i = 0; i < CONF_REQ_COUNT; i++) {
        const char *id = conf_requirement((enum conf_req)i)->id;
        bool failed = res->req[i].status == CONF_FAIL;
        bool part_failed = res->req[i].should_status == CONF_FAIL;
        if (failed != expected[i]) {
            ok = false;
            printf("expectation: %s %s\n", id,
                   expected[i] ? "was expected to FAIL but did not" : "FAILED unexpectedly");
        }
        if (!expected[i] && part_failed != expected_part[i]) {
            ok = false;
            printf("expectation: %s SHOULD part %s\n", id,
                   expected_part[i] ? "was expected to FAIL but did not" : "FAILED unexpectedly");
        }
    }
    printf("expectation: %s (expected to fail: %s)\n", ok ? "met" : "NOT met", list);
    return ok;
}

int
main(int argc, char **argv)
{
    struct options opts;
    static struct conf_env env;
    struct conf_launch *launch = NULL;
    struct conf_results res;
    static struct conf_facts facts;
    static struct conf_watch watch;
    struct conf_plan plan = {0};
    char err[512] = "";
    int code = EXIT_USAGE;

    if (parse_options(argc, argv, &opts) != 0)
        return EXIT_USAGE;
    if (opts.matrix || opts.from_json) {
        const char *one[] = {opts.from_json};
        const char *const *files = opts.matrix ? (const char *const *)argv + optind : one;
        size_t n = opts.matrix ? (size_t)(argc - optind) : 1;
        if (conf_html_render_files(opts.matrix ? opts.matrix : opts.html, files, n,
                                   opts.matrix != NULL, err, sizeof(err)) != QK_OK) {
            fprintf(stderr, "qwen-conformance: %s\n", err);
            return EXIT_USAGE;
        }
        return EXIT_CONFORMS;
    }
    if (opts.list) {
        print_list();
        return EXIT_CONFORMS;
    }
    if (conf_client_global_init() != QK_OK) {
        fprintf(stderr, "qwen-conformance: libcurl initialisation failed\n");
        return EXIT_USAGE;
    }
    conf_profile_defaults(&env.profile);
    if (opts.profile_path) {
        if (conf_profile_load(&env.profile, opts.profile_path, err, sizeof(err)) != QK_OK)
            goto out;
    } else if (opts.spawn &&
               conf_profile_parse(&env.profile, "the built-in reference profile",
                                  conf_reference_profile_json, strlen(conf_reference_profile_json),
                                  err, sizeof(err)) != QK_OK) {
        goto out;
    }
    if (opts.print_profile) {
        cJSON *effective = conf_profile_to_json(&env.profile);
        char *text = effective ? cJSON_Print(effective) : NULL;
        cJSON_Delete(effective);
        if (!text) {
            snprintf(err, sizeof(err), "out of memory");
            goto out;
        }
        printf("%s\n", text);
        free(text);
        code = EXIT_CONFORMS;
        goto out;
    }
    env.dialect = conf_profile_dialect(&env.profile);
    if (conf_plan_build(groups, GROUP_COUNT, opts.only, opts.exclude, opts.shuffle, opts.seed,
                        &plan, err, sizeof(err)) != QK_OK)
        goto out;
    if (opts.spawn) {
        if (conf_launch_start(&opts.launch, &env.profile, &env, &launch, err, sizeof(err)) != QK_OK)
            goto out;
    } else {
        set_url(env.proxy_url, sizeof(env.proxy_url), opts.proxy_url);
        set_url(env.mock_url, sizeof(env.mock_url), opts.mock_url);
        set_url(env.unreachable_url, sizeof(env.unreachable_url), opts.unreachable_url);
        if (opts.proxy_log)
            snprintf(env.proxy_log, sizeof(env.proxy_log), "%s", opts.proxy_log);
    }
    if (conf_mock_health(env.mock_url, err, sizeof(err)) != QK_OK ||
        discover_model(&env, err, sizeof(err)) != QK_OK ||
        check_proxy_answers(&env, err, sizeof(err)) != QK_OK)
        goto out;
    printf("qwen-conformance %s: SPEC %s, proxy %s, mock %s\n", QK_VERSION, CONF_SPEC_VERSION,
           env.proxy_url, env.mock_url);
    if (opts.spawn)
        printf("spawned: %s\n", opts.launch.proxy_bin);
    conf_profile_print(stdout, &env.profile);
    if (opts.shuffle)
        printf("order: shuffled, seed %llu (repeat with --shuffle %llu)\n", opts.seed, opts.seed);
    else
        printf("order: as registered\n");
    fflush(stdout);

    conf_harness_set_env(&env);
    watch.restart_cmd = opts.restart_cmd;
    if (launch && !opts.restart_cmd) {
        watch.restart = conf_launch_restart_proxy;
        watch.restart_arg = launch;
    }
    conf_harness_set_watch(&watch);
    if (conf_preflight_run(&env, &facts, err, sizeof(err)) != QK_OK)
        goto out;
    conf_preflight_print(stdout, &facts);
    fflush(stdout);
    conf_harness_set_facts(&facts);

    _cmocka_run_group_tests("conformance", plan.tests, plan.count, NULL, NULL);
    conf_results_collect(groups, GROUP_COUNT, &res);
    conf_preflight_print(stdout, &facts);
    conf_report_table(stdout, &res);
    const struct conf_run_info info = {
        .proxy_url = env.proxy_url,
        .profile = &env.profile,
        .shuffled = opts.shuffle,
        .seed = opts.seed,
        .facts = &facts,
    };
    if (opts.junit && conf_report_junit(opts.junit, groups, GROUP_COUNT, &res, &info) != QK_OK)
        fprintf(stderr, "qwen-conformance: cannot write %s\n", opts.junit);
    if (opts.json && conf_report_json(opts.json, groups, GROUP_COUNT, &res, &info) != QK_OK)
        fprintf(stderr, "qwen-conformance: cannot write %s\n", opts.json);
    if (opts.html) {
        cJSON *tree = conf_report_tree(groups, GROUP_COUNT, &res, &info);
        if (!tree || conf_html_write_report(opts.html, tree) != QK_OK)
            fprintf(stderr, "qwen-conformance: cannot write %s\n", opts.html);
        cJSON_Delete(tree);
    }
    if (opts.expect_fail)
        code = failures_as_expected(&res, opts.expect_fail) ? EXIT_CONFORMS : EXIT_NONCONFORMING;
    else if (conf_results_verdict(&res) == CONF_VERDICT_NONCONFORMING)
        code = EXIT_NONCONFORMING;
    else if (conf_results_verdict(&res) == CONF_VERDICT_NOT_ESTABLISHED)
        code = EXIT_NOT_ESTABLISHED;
    else
        code = EXIT_CONFORMS;
out:
    if (code == EXIT_USAGE && err[0])
        fprintf(stderr, "qwen-conformance: %s\n", err);
    conf_launch_stop(launch, opts.keep_logs || (code != EXIT_CONFORMS && !opts.expect_fail));
    conf_plan_free(&plan);
    conf_cases_release(groups, GROUP_COUNT);
    conf_client_global_cleanup();
    return code;
}
