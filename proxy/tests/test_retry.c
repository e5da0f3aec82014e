/* Unit tests: the retry policy (RETRY-1..8). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "retry.h"

static const struct qp_retry_policy policy = {3, 100, 5000, NULL};

static struct qp_attempt_facts
answer(long status, bool html, int64_t retry_after_ms)
{
    struct qp_attempt_facts f = {QP_TRANSPORT_OK, status, html, false, retry_after_ms};
    return f;
}

static struct qp_attempt_facts
transport(enum qp_transport t)
{
    struct qp_attempt_facts f = {t, 0, false, false, -1};
    return f;
}

static void
success_is_2xx_without_html(void **state)
{
    (void)state;
    struct qp_attempt_facts f = answer(200, false, -1);
    assert_true(qp_retry_is_success(&policy, &f));
    f = answer(200, true, -1); /* captcha page */
    assert_false(qp_retry_is_success(&policy, &f));
    assert_true(qp_retry_is_retryable(&policy, &f));
    f = answer(200, false, -1);
    f.body_unusable = true;
    assert_false(qp_retry_is_success(&policy, &f));
    assert_true(qp_retry_is_retryable(&policy, &f));
}

static void
retryable_statuses_and_transport_errors(void **state)
{
    (void)state;
    long retry[] = {500, 502, 503, 504};
    for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++) {
        struct qp_attempt_facts f = answer(retry[i], false, -1);
        assert_true(qp_retry_is_retryable(&policy, &f));
    }
    struct qp_attempt_facts waf = answer(405, true, -1);
    assert_true(qp_retry_is_retryable(&policy, &waf));
    enum qp_transport t[] = {QP_TRANSPORT_CONNECT, QP_TRANSPORT_TIMEOUT, QP_TRANSPORT_BROKEN};
    for (size_t i = 0; i < 3; i++) {
        struct qp_attempt_facts f = transport(t[i]);
        assert_true(qp_retry_is_retryable(&policy, &f));
    }
    struct qp_attempt_facts big = transport(QP_TRANSPORT_TOO_BIG);
    assert_false(qp_retry_is_retryable(&policy, &big));
}

static void
client_errors_are_never_retried(void **state)
{
    (void)state;
    long never[] = {400, 401, 403, 404, 413, 422, 501};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
        struct qp_attempt_facts f = answer(never[i], false, -1);
        assert_false(qp_retry_is_retryable(&policy, &f));
        struct qp_decision d = qp_retry_decide(&policy, &f, 1, 0, 100000, 0);
        assert_int_equal(d.next, QP_NEXT_RELAY);
    }
}

static void
retry_after_is_honoured_up_to_the_cap(void **state)
{
    (void)state;
    struct qp_attempt_facts f = answer(429, false, 2000);
    struct qp_decision d = qp_retry_decide(&policy, &f, 1, 0, 100000, 0);
    assert_int_equal(d.next, QP_NEXT_RETRY);
    assert_int_equal(d.delay_ms, 2000);
    f = answer(503, false, 6000); /* over the 5 s cap: relayed with its Retry-After */
    d = qp_retry_decide(&policy, &f, 1, 0, 100000, 0);
    assert_int_equal(d.next, QP_NEXT_RELAY);
    f = answer(429, false, -1); /* no Retry-After: relayed */
    d = qp_retry_decide(&policy, &f, 1, 0, 100000, 0);
    assert_int_equal(d.next, QP_NEXT_RELAY);
    f = answer(503, false, -1); /* plain 503: ordinary backoff */
    d = qp_retry_decide(&policy, &f, 1, 0, 100000, 0);
    assert_int_equal(d.next, QP_NEXT_RETRY);
}

static void
four_attempts_then_exhausted(void **state)
{
    (void)state;
    struct qp_attempt_facts f = answer(500, false, -1);
    for (unsigned attempt = 1; attempt <= 3; attempt++) {
        struct qp_decision d = qp_retry_decide(&policy, &f, attempt, 0, 100000, 0);
        assert_int_equal(d.next, QP_NEXT_RETRY);
    }
    struct qp_decision d = qp_retry_decide(&policy, &f, 4, 0, 100000, 0);
    assert_int_equal(d.next, QP_NEXT_EXHAUSTED);
    struct qp_retry_policy none = {0, 100, 5000, NULL};
    d = qp_retry_decide(&none, &f, 1, 0, 100000, 0);
    assert_int_equal(d.next, QP_NEXT_EXHAUSTED);
}

static void
backoff_grows_with_jitter_in_half_to_full(void **state)
{
    (void)state;
    for (unsigned retry = 1; retry <= 4; retry++) {
        int64_t full = 100LL << (retry - 1);
        assert_int_equal(qp_retry_backoff_ms(100, retry, 0), full / 2);
        assert_int_equal(qp_retry_backoff_ms(100, retry, (uint32_t)(full - full / 2)), full);
        for (uint32_t r = 0; r < 1000; r += 37) {
            int64_t d = qp_retry_backoff_ms(100, retry, r);
            assert_true(d >= full / 2 && d <= full);
        }
    }
    assert_int_equal(qp_retry_backoff_ms(0, 3, 12345), 0);
    assert_true(qp_retry_backoff_ms(1000, 30, UINT32_MAX) <= 30000);
}

static void
deadline_stops_retries(void **state)
{
    (void)state;
    struct qp_attempt_facts f = answer(502, false, -1);
    /* Next attempt would start at >= 1000 + 50: past a deadline at 1040. */
    struct qp_decision d = qp_retry_decide(&policy, &f, 1, 1000, 1040, 0);
    assert_int_equal(d.next, QP_NEXT_DEADLINE);
    d = qp_retry_decide(&policy, &f, 1, 1000, 5000, 0);
    assert_int_equal(d.next, QP_NEXT_RETRY);
}

/* The rules are the policy's data: another table retries other failures. */
static void
rules_come_with_the_policy(void **state)
{
    (void)state;
    struct qp_retry_rules rules = qp_retry_rules_default;
    rules.transport = QP_RULE_FINAL;
    rules.html_fails = false;
    rules.retry_after_waits = false;
    for (size_t i = 0; i < QP_RETRY_STATUS_ROWS; i++) {
        if (rules.statuses[i].status == 401)
            rules.statuses[i].rule = QP_RULE_RETRY;
    }
    struct qp_retry_policy edited = {3, 100, 5000, &rules};
    struct qp_attempt_facts unauthorized = answer(401, false, -1);
    struct qp_attempt_facts refused = transport(QP_TRANSPORT_CONNECT);
    struct qp_attempt_facts page = answer(200, true, -1);
    assert_false(qp_retry_is_retryable(&policy, &unauthorized));
    assert_true(qp_retry_is_retryable(&edited, &unauthorized));
    assert_true(qp_retry_is_retryable(&policy, &refused));
    assert_false(qp_retry_is_retryable(&edited, &refused));
    assert_false(qp_retry_is_success(&policy, &page));
    assert_true(qp_retry_is_success(&edited, &page));
    struct qp_attempt_facts busy = answer(503, false, 2000);
    assert_int_equal(qp_retry_decide(&policy, &busy, 1, 0, 100000, 0).delay_ms, 2000);
    assert_int_equal(qp_retry_decide(&edited, &busy, 1, 0, 100000, 0).delay_ms, 50);
}

static void
retry_after_values_parse(void **state)
{
    (void)state;
    assert_int_equal(qp_retry_after_parse("3", 0), 3000);
    assert_int_equal(qp_retry_after_parse(" 0 ", 0), 0);
    assert_int_equal(qp_retry_after_parse("-1", 0), -1);
    assert_int_equal(qp_retry_after_parse("3s", 0), -1);
    assert_int_equal(qp_retry_after_parse("", 0), -1);
    assert_int_equal(qp_retry_after_parse(NULL, 0), -1);
    assert_int_equal(qp_retry_after_parse("99999999999999999999", 0), -1);
    /* Sun, 06 Nov 1994 08:49:37 GMT is 784111777. */
    assert_int_equal(qp_retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", 784111770), 7000);
    assert_int_equal(qp_retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", 784111790), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(success_is_2xx_without_html),
        cmocka_unit_test(retryable_statuses_and_transport_errors),
        cmocka_unit_test(client_errors_are_never_retried),
        cmocka_unit_test(retry_after_is_honoured_up_to_the_cap),
        cmocka_unit_test(four_attempts_then_exhausted),
        cmocka_unit_test(backoff_grows_with_jitter_in_half_to_full),
        cmocka_unit_test(deadline_stops_retries),
        cmocka_unit_test(rules_come_with_the_policy),
        cmocka_unit_test(retry_after_values_parse),
    };
    return cmocka_run_group_tests_name("unit_proxy_retry", tests, NULL, NULL);
}
