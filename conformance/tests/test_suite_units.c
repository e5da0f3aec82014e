/* Unit tests of the suite's own machinery: test selection and order (conf_plan.c), the
 * folding of test outcomes into verdicts (conf_report.c), profile parsing
 * (conf_profile.c), the cleaning of target bytes for reports (conf_text.c), the chat-body
 * builder (conf_harness.c) and which upstream requests are attempts (conf_dialect.c,
 * conf_harness.c). */
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

#include "conf_dialect.h"
#include "conf_harness.h"
#include "conf_mockctl.h"
#include "conf_plan.h"
#include "conf_profile.h"
#include "conf_report.h"
#include "conf_text.h"

static void
noop(struct conf_ctx *ctx)
{
    (void)ctx;
}

#define CASE(req_sym, label)                                                                       \
    {                                                                                              \
#label, conf_case_run, conf_case_setup, conf_case_teardown,                                \
            &(struct conf_case){.name = #label, .req = CONF_REQ_##req_sym, .fn = noop },           \
    }

static const struct CMUnitTest fake_tests[] = {
    CASE(AUTH_1, AUTH_1_first),   CASE(AUTH_1, AUTH_1_second),     CASE(RETRY_1, RETRY_1_models),
    CASE(RETRY_3, RETRY_3_count), CASE(SSE_1, SSE_1_headers),      CASE(SSE_10, SSE_10_keepalive),
    CASE(SSE_12, SSE_12_chunks),  CASE(ROBUST_1, ROBUST_1_inputs),
};
static const struct conf_group fake_group = {"fake", fake_tests,
                                             sizeof(fake_tests) / sizeof(fake_tests[0])};
static const struct conf_group *const fake_groups[] = {&fake_group};

static struct conf_case *
fake_case(size_t i)
{
    return conf_case_of(&fake_tests[i]);
}

/* The names a plan runs, joined by spaces. */
static void
plan_names(const struct conf_plan *plan, char *out, size_t len)
{
    out[0] = '\0';
    for (size_t i = 0; i < plan->count; i++) {
        strncat(out, plan->tests[i].name, len - strlen(out) - 1);
        if (i + 1 < plan->count)
            strncat(out, " ", len - strlen(out) - 1);
    }
}

static void
select_names(const char *only, const char *exclude, char *names, size_t len)
{
    struct conf_plan plan;
    char err[256];
    assert_int_equal(
        conf_plan_build(fake_groups, 1, only, exclude, false, 0, &plan, err, sizeof(err)), QK_OK);
    plan_names(&plan, names, len);
    conf_plan_free(&plan);
}

static void
only_takes_ids_globs_and_test_names(void **state)
{
    (void)state;
    char names[512];
    select_names("RETRY-1", NULL, names, sizeof(names));
    assert_string_equal(names, "RETRY_1_models");
    /* SSE-1 is not a prefix match: SSE-10 and SSE-12 stay out. */
    select_names("SSE-1", NULL, names, sizeof(names));
    assert_string_equal(names, "SSE_1_headers");
    select_names("sse-*", NULL, names, sizeof(names));
    assert_string_equal(names, "SSE_1_headers SSE_10_keepalive SSE_12_chunks");
    select_names("AUTH_1_s*,ROBUST-1", NULL, names, sizeof(names));
    assert_string_equal(names, "AUTH_1_second ROBUST_1_inputs");
    select_names(NULL, "SSE-*, AUTH-1", names, sizeof(names));
    assert_string_equal(names, "RETRY_1_models RETRY_3_count ROBUST_1_inputs");
}

static void
a_pattern_naming_nothing_is_an_error(void **state)
{
    (void)state;
    struct conf_plan plan;
    char err[256] = "";
    assert_int_equal(conf_plan_build(fake_groups, 1, "RETRY-1,RETRY-99", NULL, false, 0, &plan, err,
                                     sizeof(err)),
                     QK_INVALID);
    assert_non_null(strstr(err, "RETRY-99"));
    assert_int_equal(
        conf_plan_build(fake_groups, 1, "AUTH-*", "AUTH-1", false, 0, &plan, err, sizeof(err)),
        QK_INVALID);
    assert_non_null(strstr(err, "no test is left"));
}

static void
shuffle_is_a_permutation_fixed_by_the_seed(void **state)
{
    (void)state;
    char a[512], b[512], c[512], unshuffled[512];
    char err[256];
    struct conf_plan plan;
    select_names(NULL, NULL, unshuffled, sizeof(unshuffled));
    assert_int_equal(conf_plan_build(fake_groups, 1, NULL, NULL, true, 42, &plan, err, sizeof(err)),
                     QK_OK);
    assert_int_equal(plan.count, fake_group.count);
    for (size_t i = 0; i < fake_group.count; i++) {
        int seen = 0;
        for (size_t k = 0; k < plan.count; k++)
            seen += strcmp(plan.tests[k].name, fake_tests[i].name) == 0;
        assert_int_equal(seen, 1);
    }
    plan_names(&plan, a, sizeof(a));
    conf_plan_free(&plan);
    assert_int_equal(conf_plan_build(fake_groups, 1, NULL, NULL, true, 42, &plan, err, sizeof(err)),
                     QK_OK);
    plan_names(&plan, b, sizeof(b));
    conf_plan_free(&plan);
    assert_int_equal(conf_plan_build(fake_groups, 1, NULL, NULL, true, 7, &plan, err, sizeof(err)),
                     QK_OK);
    plan_names(&plan, c, sizeof(c));
    conf_plan_free(&plan);
    assert_string_equal(a, b);
    assert_string_not_equal(a, unshuffled);
    assert_string_not_equal(a, c);
}

/* Sets the outcome of every fake case: a string of P F S U C - (not run), one per case. */
static void
outcomes(const char *codes)
{
    for (size_t i = 0; i < fake_group.count; i++) {
        struct conf_case *c = fake_case(i);
        c->excused = false;
        switch (codes[i]) {
        case 'P':
            c->status = CONF_PASS;
            break;
        case 'F':
            c->status = CONF_FAIL;
            break;
        case 'S':
            c->status = CONF_SKIP;
            break;
        case 'X': /* skipped as declared absent or as the other dialect's */
            c->status = CONF_SKIP;
            c->excused = true;
            break;
        case 'U':
            c->status = CONF_UNCHECKED;
            break;
        case 'C':
            c->status = CONF_CANNOT_JUDGE;
            break;
        default:
            c->status = CONF_NOT_RUN;
            break;
        }
        snprintf(c->reason, sizeof(c->reason), "reason %zu", i);
    }
}

static void
verdicts_fold_tests_into_requirements(void **state)
{
    (void)state;
    struct conf_results res;
    /* AUTH-1: a pass and an unchecked test is not a pass. */
    outcomes("PUPPPPPP");
    conf_results_collect(fake_groups, 1, &res);
    assert_int_equal(res.req[CONF_REQ_AUTH_1].status, CONF_UNCHECKED);
    assert_ptr_equal(res.req[CONF_REQ_AUTH_1].evidence, fake_case(1));
    assert_int_equal(conf_results_verdict(&res), CONF_VERDICT_NOT_ESTABLISHED);
    /* A failure outweighs everything; a skip alone is not a pass either. */
    outcomes("CFSPPPPP");
    conf_results_collect(fake_groups, 1, &res);
    assert_int_equal(res.req[CONF_REQ_AUTH_1].status, CONF_FAIL);
    assert_int_equal(res.req[CONF_REQ_RETRY_1].status, CONF_SKIP);
    assert_int_equal(conf_results_verdict(&res), CONF_VERDICT_NONCONFORMING);
    /* Cannot-judge outweighs a pass. */
    outcomes("PCPPPPPP");
    conf_results_collect(fake_groups, 1, &res);
    assert_int_equal(res.req[CONF_REQ_AUTH_1].status, CONF_CANNOT_JUDGE);
    assert_int_equal(res.cannot_judge, 1);
    /* A SHOULD requirement (SSE-10) left unchecked does not stop a MUST run from conforming;
     * requirements with no test run are left out. */
    outcomes("PPPPPUP-");
    conf_results_collect(fake_groups, 1, &res);
    assert_int_equal(res.req[CONF_REQ_SSE_10].status, CONF_UNCHECKED);
    assert_int_equal(res.req[CONF_REQ_ROBUST_1].status, CONF_NOT_RUN);
    assert_int_equal(conf_results_verdict(&res), CONF_VERDICT_CONFORMS);
    assert_int_equal(res.passed, 5);
    /* A MUST requirement (AUTH-1) whose second test skipped on a precondition is not a
     * pass: one of its tests did not run. */
    outcomes("PSPPPPPP");
    conf_results_collect(fake_groups, 1, &res);
    assert_int_equal(res.req[CONF_REQ_AUTH_1].status, CONF_SKIP);
    assert_ptr_equal(res.req[CONF_REQ_AUTH_1].evidence, fake_case(1));
    assert_int_equal(conf_results_verdict(&res), CONF_VERDICT_NOT_ESTABLISHED);
    /* ... unless it skipped as not applicable (the other dialect's, or declared absent). */
    outcomes("PXPPPPPP");
    conf_results_collect(fake_groups, 1, &res);
    assert_int_equal(res.req[CONF_REQ_AUTH_1].status, CONF_PASS);
    assert_int_equal(conf_results_verdict(&res), CONF_VERDICT_CONFORMS);
    /* A SHOULD requirement (SSE-10) with a pass and a skip still passes. */
    outcomes("PPPPPSP-");
    fake_case(5)->status = CONF_PASS;
    conf_results_collect(fake_groups, 1, &res);
    assert_int_equal(conf_results_verdict(&res), CONF_VERDICT_CONFORMS);
    outcomes("--------");
}

static const char *
write_profile(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/conf-profile-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static enum qk_err
load(const char *text, struct conf_profile *p, char *err, size_t errlen)
{
    conf_profile_defaults(p);
    const char *path = write_profile(text);
    enum qk_err rc = conf_profile_load(p, path, err, errlen);
    unlink(path);
    return rc;
}

static void
profile_refuses_unknown_keys_naming_the_nearest(void **state)
{
    (void)state;
    struct conf_profile p;
    char err[512] = "";
    assert_int_equal(load("{\"max_retry\": 2}", &p, err, sizeof(err)), QK_INVALID);
    assert_non_null(strstr(err, "\"max_retry\""));
    assert_non_null(strstr(err, "did you mean \"max_retries\""));
    assert_int_equal(load("{\"cache_tll_ms\": 2}", &p, err, sizeof(err)), QK_INVALID);
    assert_non_null(strstr(err, "cache_ttl_ms"));
    assert_int_equal(load("{\"max_body\": -1}", &p, err, sizeof(err)), QK_INVALID);
    assert_non_null(strstr(err, "\"max_body\""));
    /* "none" only where the key allows it. */
    assert_int_equal(load("{\"max_retries\": \"none\"}", &p, err, sizeof(err)), QK_INVALID);
    assert_int_equal(load("{\"absent\": [\"RETRY-1\"]}", &p, err, sizeof(err)), QK_INVALID);
    assert_non_null(strstr(err, "MUST"));
}

static void
profile_none_declares_a_feature_absent(void **state)
{
    (void)state;
    struct conf_profile p;
    char err[512] = "";
    assert_int_equal(load("{\"profile_version\":1,\"description\":\"x\",\"max_body\":\"none\","
                          "\"cache_ttl_ms\":\"none\",\"upstream_timeout_ms\":900}",
                          &p, err, sizeof(err)),
                     QK_OK);
    assert_true(conf_profile_none(&p, CONF_NONE_BODY_LIMIT));
    assert_true(conf_profile_none(&p, CONF_NONE_CACHE));
    assert_false(conf_profile_none(&p, CONF_NONE_ATTEMPT_TIMEOUT));
    assert_int_equal(p.upstream_timeout_ms, 900);
    cJSON *json = conf_profile_to_json(&p);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(json, "max_body")), "none");
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(json, "upstream_timeout_ms")),
                     900);
    assert_null(cJSON_GetObjectItem(json, "description"));
    cJSON_Delete(json);
}

static void
text_cleaning_leaves_valid_utf8_only(void **state)
{
    (void)state;
    char out[128];
    const char in[] =
        "ok \xE5\x93\x88 \xFF bad \xC3 cut\x01\x1B[31m\tend\n\xED\xA0\x80 \xEF\xBF\xBF";
    conf_text_clean(out, sizeof(out), in, sizeof(in) - 1);
    assert_string_equal(out, "ok \xE5\x93\x88 \\xFF bad \\xC3 cut\\x01\\x1B[31m\tend\n"
                             "\\xED\\xA0\\x80 \\xEF\\xBF\\xBF");
    /* Truncation keeps whole characters. */
    char small[6];
    conf_text_clean(small, sizeof(small), "ab\xE5\x93\x88", 5);
    assert_string_equal(small, "ab\xE5\x93\x88");
    char smaller[5];
    conf_text_clean(smaller, sizeof(smaller), "ab\xE5\x93\x88", 5);
    assert_string_equal(smaller, "ab");
}

/* The think phase's pieces start with "\n" after the first: whitespace at an element's ends
 * never decides a reasoning comparison, on either side. */
static void
reasoning_elements_compare_without_surrounding_whitespace(void **state)
{
    (void)state;
    cJSON *raw = cJSON_Parse("[\"First.\",\"Second one.\"]");
    cJSON *pieces = cJSON_Parse("[\"First.\",\"\\nSecond one.\"]");
    assert_true(conf_text_same_elements("First.\nSecond one.", raw));
    assert_true(conf_text_same_elements("First.Second one.", raw));
    assert_true(conf_text_same_elements("First.\n\nSecond one.\n", pieces));
    assert_true(conf_text_same_elements("First.Second one.", pieces));
    assert_false(conf_text_same_elements("First.\nSecond", raw));
    assert_false(conf_text_same_elements("First.\nSecondone.", pieces));
    assert_false(conf_text_same_elements("First.\nSecond one. Title", pieces));
    cJSON_Delete(raw);
    cJSON_Delete(pieces);
}

/* v2: the caller's token as the one cookie `token` is the caller's credential (AUTH-3). */
static void
a_token_cookie_is_the_callers_credential_under_v2(void **state)
{
    (void)state;
    cJSON *bearer = cJSON_Parse("{\"headers\":[{\"name\":\"Authorization\","
                                "\"value\":\"Bearer T1\"}]}");
    cJSON *cookie = cJSON_Parse("{\"headers\":[{\"name\":\"Cookie\","
                                "\"value\":\"acw_tc=x; token=T1; ssxmod=y\"}]}");
    cJSON *two = cJSON_Parse("{\"headers\":[{\"name\":\"Cookie\",\"value\":\"token=T1\"},"
                             "{\"name\":\"cookie\",\"value\":\"token=T1\"}]}");
    cJSON *other = cJSON_Parse("{\"headers\":[{\"name\":\"Cookie\",\"value\":\"token=T12\"}]}");
    assert_true(conf_entry_credential_is(bearer, "T1", false));
    assert_true(conf_entry_credential_is(bearer, "T1", true));
    assert_false(conf_entry_credential_is(cookie, "T1", false));
    assert_true(conf_entry_credential_is(cookie, "T1", true));
    assert_false(conf_entry_credential_is(two, "T1", true));
    assert_false(conf_entry_credential_is(other, "T1", true));
    bool callers = true;
    assert_int_equal(conf_entry_token_cookies(bearer, "T1", &callers), 0);
    assert_false(callers);
    cJSON_Delete(bearer);
    cJSON_Delete(cookie);
    cJSON_Delete(two);
    cJSON_Delete(other);
}

static void
chat_bodies_hold_their_members_in_order(void **state)
{
    (void)state;
    static const struct {
        struct conf_chat chat;
        const char *want;
    } cases[] = {
        {{.model = "m", .text = "hi"},
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"},
        {{.model = "m\"q", .text = "a\"b\\c\n", .stream = CONF_CHAT_STREAM_FALSE},
         "{\"model\":\"m\\\"q\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\\"b\\\\c\\n\"}],"
         "\"stream\":false}"},
        {{.model = "m",
          .messages_json = "[]",
          .stream = CONF_CHAT_STREAM_TRUE,
          .extra_json = "\"incremental_output\":true,\"n\":1"},
         "{\"model\":\"m\",\"messages\":[],\"stream\":true,\"incremental_output\":true,\"n\":1}"},
        {{.model = "m", .messages_json = "\"\\u00e9\"", .extra_json = ""},
         "{\"model\":\"m\",\"messages\":\"\\u00e9\"}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *got = conf_chat_json(&cases[i].chat);
        assert_non_null(got);
        assert_string_equal(got, cases[i].want);
        free(got);
    }
}

static void
attempts_are_requests_to_the_dialect_paths(void **state)
{
    (void)state;
    const struct conf_dialect *v1 = &conf_dialect_qwen_v1;
    assert_true(conf_dialect_is_attempt(v1, "/api/models"));
    assert_true(conf_dialect_is_attempt(v1, "/api/chat/completions"));
    assert_true(conf_dialect_is_attempt(v1, "/api/chat/completions?chat_id=1"));
    assert_false(conf_dialect_is_attempt(v1, "/api/chat/completions/x"));
    assert_false(conf_dialect_is_attempt(v1, "/api/chat"));
    assert_false(conf_dialect_is_attempt(v1, "/api/v2/chats/new"));
    assert_false(conf_dialect_is_attempt(v1, ""));
    assert_false(conf_dialect_is_attempt(v1, NULL));
    /* v2 has two requests per attempt: the path counts only its completion (a failed
     * chat creation counts by its journal entry, in the harness). */
    const struct conf_dialect *v2 = &conf_dialect_qwen_v2;
    assert_false(conf_dialect_is_attempt(v2, "/api/v2/chats/new"));
    assert_true(conf_dialect_is_chat_new(v2, "/api/v2/chats/new"));
    assert_false(conf_dialect_is_chat_new(v1, "/api/v2/chats/new"));
    assert_true(conf_dialect_is_attempt(v2, "/api/v2/chat/completions?chat_id=ID"));
    assert_true(conf_dialect_is_completion(v2, "/api/v2/chat/completions?chat_id=ID"));
    assert_true(conf_dialect_is_attempt(v2, "/api/v2/models/"));
    assert_true(conf_dialect_is_attempt(v2, "/api/v2/models"));
    assert_false(conf_dialect_is_attempt(v2, "/api/models"));
    assert_false(conf_dialect_is_attempt(v2, "/api/chat/completions"));
    assert_true(conf_dialect_is_v2(v2));
    assert_false(conf_dialect_is_v2(v1));
    assert_ptr_equal(conf_dialect_find("qwen-v2"), v2);
    assert_null(conf_dialect_find("v2"));
}

static void
profile_names_the_dialect_v1_by_default(void **state)
{
    (void)state;
    struct conf_profile p;
    char err[512] = "";
    assert_int_equal(load("{\"max_retries\": 2}", &p, err, sizeof(err)), QK_OK);
    assert_ptr_equal(conf_profile_dialect(&p), &conf_dialect_qwen_v1);
    assert_int_equal(load("{\"upstream_dialect\": \"qwen-v2\"}", &p, err, sizeof(err)), QK_OK);
    assert_ptr_equal(conf_profile_dialect(&p), &conf_dialect_qwen_v2);
    cJSON *json = conf_profile_to_json(&p);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(json, "upstream_dialect")),
                        "qwen-v2");
    cJSON_Delete(json);
    const char *bad[] = {"{\"upstream_dialect\": \"v3\"}", "{\"upstream_dialect\": 2}"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(load(bad[i], &p, err, sizeof(err)), QK_INVALID);
        assert_non_null(strstr(err, "\"upstream_dialect\""));
        assert_non_null(strstr(err, "\"qwen-v2\""));
    }
}

/* One journal entry: @p path answered @p status, in flight from @p from to @p to (ms). */
static void
add_entry(cJSON *journal, const char *path, long status, int64_t from, int64_t to)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "path", path);
    cJSON_AddNumberToObject(e, "status", (double)status);
    cJSON_AddNumberToObject(e, "received_ms", (double)from);
    cJSON_AddNumberToObject(e, "finished_ms", (double)to);
    cJSON_AddNullToObject(e, "step");
    cJSON_AddItemToArray(journal, e);
}

/* Under v2, failed chat creations in flight together, or beside a completion, are one
 * attempt; one begun while no caller waited is a refill; once a caller left early, any
 * failed creation may be its request's. */
static void
failed_creations_count_as_the_dialects_rule_says(void **state)
{
    (void)state;
    static struct conf_env env = {.proxy_url = "http://127.0.0.1:1",
                                  .mock_url = "http://127.0.0.1:1",
                                  .dialect = &conf_dialect_qwen_v2};
    conf_harness_set_env(&env);
    struct conf_case kase = {.name = "units", .req = CONF_REQ_RETRY_3, .fn = noop};
    void *st = &kase;
    assert_int_equal(conf_case_setup(&st), 0);
    struct conf_ctx *ctx = st;
    conf_note_request(ctx, "GET", "/", NULL, 0);
    int64_t t0 = qk_now_ms(); /* the request was sent at t0 or before */
    conf_note_answered(ctx, &(struct conf_response){.status = 502, .done_ms = t0 + 100}, true);
    cJSON *journal = cJSON_CreateArray();
    const char *create = "/api/v2/chats/new", *complete = "/api/v2/chat/completions";
    add_entry(journal, create, 500, t0 + 10, t0 + 60);   /* the need: an attempt */
    add_entry(journal, create, 500, t0 + 10, t0 + 60);   /* a spare beside it */
    add_entry(journal, create, 200, t0 + 20, t0 + 21);   /* a spare created */
    add_entry(journal, complete, 500, t0 + 65, t0 + 90); /* an attempt */
    add_entry(journal, create, 500, t0 + 70, t0 + 70);   /* beside that completion */
    add_entry(journal, create, 500, t0 + 92, t0 + 93);   /* in flight alone: an attempt */
    add_entry(journal, create, 500, t0 + 150, t0 + 151); /* after the answer: a refill */
    const cJSON *attempts = conf_attempt_entries(ctx, journal);
    assert_int_equal(cJSON_GetArraySize(attempts), 3);
    assert_int_equal(conf_entry_received_ms(cJSON_GetArrayItem(attempts, 2)), t0 + 92);
    /* A caller that hangs up leaves the proxy free to go on: the late one counts too. */
    conf_note_request(ctx, "GET", "/", NULL, 0);
    conf_note_answered(ctx, &(struct conf_response){0}, false);
    assert_int_equal(cJSON_GetArraySize(conf_attempt_entries(ctx, journal)), 4);
    cJSON_Delete(journal);
    assert_int_equal(conf_case_teardown(&st), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(only_takes_ids_globs_and_test_names),
        cmocka_unit_test(a_pattern_naming_nothing_is_an_error),
        cmocka_unit_test(shuffle_is_a_permutation_fixed_by_the_seed),
        cmocka_unit_test(verdicts_fold_tests_into_requirements),
        cmocka_unit_test(profile_refuses_unknown_keys_naming_the_nearest),
        cmocka_unit_test(profile_none_declares_a_feature_absent),
        cmocka_unit_test(text_cleaning_leaves_valid_utf8_only),
        cmocka_unit_test(reasoning_elements_compare_without_surrounding_whitespace),
        cmocka_unit_test(a_token_cookie_is_the_callers_credential_under_v2),
        cmocka_unit_test(chat_bodies_hold_their_members_in_order),
        cmocka_unit_test(attempts_are_requests_to_the_dialect_paths),
        cmocka_unit_test(profile_names_the_dialect_v1_by_default),
        /* Last: its context's teardown probes a target that is not there. */
        cmocka_unit_test(failed_creations_count_as_the_dialects_rule_says),
    };
    return cmocka_run_group_tests_name("conformance_units", tests, NULL, NULL);
}
