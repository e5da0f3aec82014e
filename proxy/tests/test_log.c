/* Unit tests: the request line (log.c): the failures it names, its level, both formats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "metrics.h"

/* Runs qp_log_request(@p log, @p e) and returns what it wrote on stderr (caller frees). */
static char *
logged(struct qp_log log, const struct qp_log_entry *e)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    qp_log_request(log, e);
    fflush(stderr);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    fseek(tmp, 0, SEEK_END);
    long n = ftell(tmp);
    rewind(tmp);
    char *text = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(text, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return text;
}

static struct qp_log_entry
entry(unsigned status)
{
    struct qp_log_entry e = {.request_id = "rid",
                             .method = "POST",
                             .path = "/api/chat/completions",
                             .status = status,
                             .attempts = 1,
                             .cache = "-",
                             .latency_ms = 5,
                             .token = "t:00000000"};
    return e;
}

/* Nine failed attempts name the first eight and "+1"; a stream's cut after them is still
 * named, and makes the line a warning that --log-level warn keeps. */
static void
failures_beyond_the_list_and_a_cut_are_named(void **state)
{
    (void)state;
    struct qp_log_failure f[QP_LOG_FAILURES];
    for (unsigned i = 0; i < QP_LOG_FAILURES; i++)
        f[i] = (struct qp_log_failure){.cause = QP_METRIC_CAUSE_STATUS, .status = 500};
    f[1] = (struct qp_log_failure){.cause = QP_METRIC_CAUSE_HTML, .status = 200};
    f[2] = (struct qp_log_failure){.cause = QP_METRIC_CAUSE_TIMEOUT};
    struct qp_log_failure cut = {.cause = QP_METRIC_CAUSE_INBAND, .after_start = true};
    struct qp_log_entry e = entry(200);
    e.failures = f;
    e.n_failures = QP_LOG_FAILURES + 1;
    e.cut = &cut;
    struct qp_log warn = {.format = QK_PROXY_LOG_TEXT, .level = QK_PROXY_LOG_LEVEL_WARN};
    char *text = logged(warn, &e);
    assert_non_null(strstr(text, " status=200 "));
    assert_non_null(strstr(text, " failures=status_500,html_200,timeout,status_500,status_500,"
                                 "status_500,status_500,status_500,+1,cut_inband\n"));
    free(text);

    struct qp_log json = {.format = QK_PROXY_LOG_JSON, .level = QK_PROXY_LOG_LEVEL_WARN};
    text = logged(json, &e);
    cJSON *o = cJSON_Parse(text);
    assert_non_null(o);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "level")), "warn");
    const cJSON *list = cJSON_GetObjectItem(o, "failures");
    assert_int_equal(cJSON_GetArraySize(list), QP_LOG_FAILURES + 1);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(list, QP_LOG_FAILURES)),
                        "cut_inband");
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "failures_not_listed")), 1);
    cJSON_Delete(o);
    free(text);

    /* Without the cut, a 200 is an info line: warn drops it, info keeps it. */
    e.cut = NULL;
    text = logged(warn, &e);
    assert_string_equal(text, "");
    free(text);
    struct qp_log info = {.format = QK_PROXY_LOG_TEXT, .level = QK_PROXY_LOG_LEVEL_INFO};
    text = logged(info, &e);
    assert_non_null(strstr(text, ",+1\n"));
    free(text);
}

/* A 5xx is a warning whatever its failures; error keeps no request line at all. */
static void
levels_of_request_lines(void **state)
{
    (void)state;
    struct qp_log_entry e = entry(502);
    struct qp_log warn = {.format = QK_PROXY_LOG_TEXT, .level = QK_PROXY_LOG_LEVEL_WARN};
    char *text = logged(warn, &e);
    assert_non_null(strstr(text, " status=502 "));
    assert_non_null(strstr(text, " failures=-\n"));
    free(text);
    struct qp_log error = {.format = QK_PROXY_LOG_TEXT, .level = QK_PROXY_LOG_LEVEL_ERROR};
    text = logged(error, &e);
    assert_string_equal(text, "");
    free(text);
    enum qk_proxy_log_level l;
    assert_true(qp_log_level_parse("warn", &l));
    assert_int_equal(l, QK_PROXY_LOG_LEVEL_WARN);
    assert_false(qp_log_level_parse("debug", &l));
    assert_string_equal(qp_log_level_name(QK_PROXY_LOG_LEVEL_ERROR), "error");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failures_beyond_the_list_and_a_cut_are_named),
        cmocka_unit_test(levels_of_request_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
