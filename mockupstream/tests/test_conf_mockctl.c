/*
 * End-to-end tests of the conformance suite's client of the control API
 * (conformance/conf_mockctl.c) against the real mock, in-process on port 0: what the
 * suite relies on to say what reached the upstream, the journal searches above all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf_client.h"
#include "conf_mockctl.h"
#include "testkit.h"
#include "qwenkit/common.h"
#include "qwenkit/mock.h"

struct fixture {
    struct qk_mock *mock;
    uint16_t port;
    char url[64];
};

static int
group_setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    mc_global_init();
    if (conf_client_global_init() != QK_OK)
        return -1;
    struct fixture *f = calloc(1, sizeof *f);
    struct qk_mock_config cfg;
    qk_mock_config_init(&cfg);
    char err[256] = "";
    if (!f || qk_mock_start(&cfg, &f->mock, err, sizeof err) != QK_OK) {
        fprintf(stderr, "qk_mock_start: %s\n", err);
        free(f);
        return -1;
    }
    f->port = qk_mock_port(f->mock);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%u", (unsigned)f->port);
    *state = f;
    return 0;
}

static int
group_teardown(void **state)
{
    struct fixture *f = *state;
    qk_mock_stop(f->mock);
    free(f);
    conf_client_global_cleanup();
    mc_global_cleanup();
    return 0;
}

/* GET /api/models?n=@p n with the raw header lines @p h1 and @p h2 (either may be NULL). */
static void
send_models(uint16_t port, int n, const char *h1, const char *h2)
{
    char path[32];
    snprintf(path, sizeof path, "/api/models?n=%d", n);
    struct mc_req q = {.port = port, .path = path, .headers = {h1, h2}};
    if (!h1) {
        q.headers[0] = h2;
        q.headers[1] = NULL;
    }
    struct mc_resp r;
    assert_int_equal(mc_request(&q, &r), 0);
    assert_int_equal(r.rc, CURLE_OK);
    mc_resp_free(&r);
    struct timespec ts = {0, 4 * 1000000L};
    nanosleep(&ts, NULL); /* distinct received_ms */
}

static int
entry_n(const cJSON *e)
{
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(e, "query");
    assert_true(cJSON_IsString(q));
    return atoi(q->valuestring + 2);
}

/* Searches until nothing matching is in flight and @p want entries are there. */
static cJSON *
search_settled(const char *url, const struct conf_journal_search *q, int want)
{
    char err[256] = "";
    int64_t deadline = qk_now_ms() + 5000;
    for (;;) {
        cJSON *j = NULL;
        enum qk_err rc = conf_mock_journal_search(url, q, &j, err, sizeof err);
        if (rc != QK_OK)
            fail_msg("search: %s", err);
        int have = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries"));
        if ((conf_journal_in_flight(j) == 0 && have >= want) || qk_now_ms() >= deadline)
            return j;
        cJSON_Delete(j);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void
assert_ns(const cJSON *j, const int *want, int n)
{
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(j, "entries");
    assert_int_equal(cJSON_GetArraySize(entries), n);
    for (int i = 0; i < n; i++)
        assert_int_equal(entry_n(cJSON_GetArrayItem(entries, i)), want[i]);
}

/* The caller's token in every form a proxy may send it, and requests without it. */
static void
searches_find_altered_credentials(void **state)
{
    struct fixture *f = *state;
    char tok[96], other[96], l[8][160], err[256] = "";
    mc_new_token(tok, sizeof tok);
    mc_new_token(other, sizeof other);
    snprintf(l[0], sizeof l[0], "Authorization: Bearer %s", tok);
    snprintf(l[1], sizeof l[1], "Authorization: Bearer Bearer %s", tok);
    snprintf(l[2], sizeof l[2], "Authorization: bearer %s", tok);
    snprintf(l[3], sizeof l[3], "Authorization: Bearer %s", other);
    snprintf(l[4], sizeof l[4], "authorization: Bearer %s", tok);
    int64_t t0 = qk_now_ms();
    send_models(f->port, 0, l[0], NULL); /* verbatim */
    send_models(f->port, 1, l[1], NULL); /* doubled prefix */
    send_models(f->port, 2, l[2], NULL); /* re-cased scheme */
    send_models(f->port, 3, NULL, NULL); /* none */
    send_models(f->port, 4, l[3], l[4]); /* the proxy's own, then the caller's */
    send_models(f->port, 5, "Authorization: Bearer undefined", NULL);
    int64_t t1 = qk_now_ms();

    cJSON *j = NULL;
    struct conf_journal_search by_token = {.contains = tok};
    cJSON *settled = search_settled(f->url, &by_token, 4);
    cJSON_Delete(settled);
    assert_int_equal(conf_mock_journal_containing(f->url, tok, &j, err, sizeof err), QK_OK);
    assert_ns(j, (const int[]){0, 1, 2, 4}, 4);
    assert_int_equal(conf_journal_matched(j), 4);
    assert_false(conf_journal_truncated(j));
    assert_int_equal(conf_journal_in_flight(j), 0);
    const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "entries"), 3);
    assert_int_equal(conf_entry_header_count(e, "Authorization"), 2);
    assert_string_equal(conf_entry_header_nth(e, "authorization", 0), l[3] + 15);
    assert_string_equal(conf_entry_header_nth(e, "AUTHORIZATION", 1), l[4] + 15);
    assert_null(conf_entry_header_nth(e, "Authorization", 2));
    assert_true(strncmp(conf_entry_token_fp(e), "t:", 2) == 0);
    cJSON_Delete(j);

    struct conf_journal_search window = {.since_ms = t0, .until_ms = t1};
    settled = search_settled(f->url, &window, 6);
    cJSON_Delete(settled);
    assert_int_equal(conf_mock_journal_window(f->url, t0, t1, tok, &j, err, sizeof err), QK_OK);
    assert_ns(j, (const int[]){1, 2, 3, 4, 5}, 5);
    const cJSON *none = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "entries"), 2);
    assert_null(conf_entry_header(none, "Authorization"));
    assert_string_equal(conf_entry_token_fp(none), "-");
    cJSON_Delete(j);
    assert_int_equal(conf_mock_journal_window(f->url, t0, t1, NULL, &j, err, sizeof err), QK_OK);
    assert_int_equal(conf_journal_matched(j), 6);
    cJSON_Delete(j);

    /* Combined conditions and a limit. */
    struct conf_journal_search q = {.contains = tok, .not_token = tok, .since_ms = t0, .limit = 2};
    assert_int_equal(conf_mock_journal_search(f->url, &q, &j, err, sizeof err), QK_OK);
    assert_ns(j, (const int[]){2, 4}, 2);
    assert_int_equal(conf_journal_matched(j), 3);
    assert_true(conf_journal_truncated(j));
    cJSON_Delete(j);
}

/* Values with URL-special characters reach the mock intact. */
static void
search_values_are_url_encoded(void **state)
{
    struct fixture *f = *state;
    char tok[96], needle[160], line[200], err[256] = "";
    mc_new_token(tok, sizeof tok);
    snprintf(needle, sizeof needle, "%s+a&b=c %%20", tok);
    snprintf(line, sizeof line, "Authorization: Bearer x%sy", needle);
    send_models(f->port, 7, line, NULL);
    struct conf_journal_search q = {.contains = needle};
    cJSON *j = search_settled(f->url, &q, 1);
    assert_ns(j, (const int[]){7}, 1);
    cJSON_Delete(j);
    snprintf(needle, sizeof needle, "%s a", tok); /* '+' must not have become a space */
    assert_int_equal(conf_mock_journal_containing(f->url, needle, &j, err, sizeof err), QK_OK);
    assert_int_equal(conf_journal_matched(j), 0);
    cJSON_Delete(j);
}

/* Refusals and failures come back as errors that say why; nothing to free. */
static void
search_errors(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    cJSON *j = (cJSON *)&err; /* must be reset to NULL */
    struct conf_journal_search empty = {0};
    assert_int_equal(conf_mock_journal_search(f->url, &empty, &j, err, sizeof err), QK_INVALID);
    assert_null(j);
    assert_int_equal(conf_mock_journal_containing(f->url, "", &j, err, sizeof err), QK_INVALID);
    assert_null(j);
    assert_int_equal(conf_mock_journal_window(f->url, 10, 9, NULL, &j, err, sizeof err),
                     QK_INVALID);
    assert_null(j);
    assert_non_null(strstr(err, "until_ms"));
    assert_int_equal(
        conf_mock_journal_window("http://127.0.0.1:1", 1, 0, NULL, &j, err, sizeof err), QK_IO);
    assert_null(j);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(searches_find_altered_credentials),
        cmocka_unit_test(search_values_are_url_encoded),
        cmocka_unit_test(search_errors),
    };
    return cmocka_run_group_tests_name("e2e_mock_conf_mockctl", tests, group_setup, group_teardown);
}
