/* Unit tests: per-token queues, revocation, the bounded journal and its searches
 * (mock_state.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "mock_state.h"

static void
queue(struct mock_state *st, const char *json)
{
    struct mock_stream_opts d;
    mock_stream_opts_init(&d);
    struct mock_scenario *list = NULL;
    char field[128], msg[128];
    assert_int_equal(
        mock_scenario_parse(json, strlen(json), &d, &list, field, sizeof field, msg, sizeof msg),
        QK_OK);
    mock_state_queue(st, list);
    mock_scenario_free(list);
}

static unsigned
take_status(struct mock_state *st, const char *token, enum mock_route route)
{
    struct mock_step *s = mock_state_take_step(st, token, route);
    unsigned status = s ? (s->status ? s->status : 1) : 0;
    mock_step_free(s);
    return status;
}

static void
steps_come_in_order_per_token_and_route(void **state)
{
    (void)state;
    struct mock_state *st = mock_state_new(8, 64);
    queue(st, "{\"token\":\"a\",\"route\":\"chat\",\"steps\":[{\"status\":500},{\"status\":502}]}");
    queue(st, "{\"token\":\"a\",\"route\":\"models\",\"steps\":[{\"status\":503}]}");
    queue(st, "{\"token\":\"a\",\"route\":\"any\",\"steps\":[{\"status\":504}]}");
    queue(st, "{\"token\":\"b\",\"route\":\"chat\",\"steps\":[{\"status\":429}]}");
    assert_int_equal(take_status(st, "b", MOCK_ROUTE_MODELS), 0);
    assert_int_equal(take_status(st, "a", MOCK_ROUTE_CHAT), 500);
    assert_int_equal(take_status(st, "a", MOCK_ROUTE_MODELS), 503);
    assert_int_equal(take_status(st, "a", MOCK_ROUTE_CHAT), 502);
    /* The route's own queue is empty: the "any" queue serves next. */
    assert_int_equal(take_status(st, "a", MOCK_ROUTE_MODELS), 504);
    assert_int_equal(take_status(st, "a", MOCK_ROUTE_CHAT), 0);
    assert_int_equal(take_status(st, "b", MOCK_ROUTE_CHAT), 429);
    assert_int_equal(take_status(st, "b", MOCK_ROUTE_CHAT), 0);
    assert_int_equal(take_status(st, "nobody", MOCK_ROUTE_CHAT), 0);
    mock_state_free(st);
}

/* A step with times N answers N requests of its route, then the next step serves. */
static void
step_with_times_answers_that_many_requests(void **state)
{
    (void)state;
    struct mock_state *st = mock_state_new(8, 64);
    queue(st, "{\"token\":\"a\",\"route\":\"chats_new\",\"steps\":[{\"status\":500,"
              "\"times\":3,\"headers\":{\"X-A\":\"1\"}},{\"status\":502}]}");
    for (int i = 0; i < 3; i++) {
        struct mock_step *s = mock_state_take_step(st, "a", MOCK_ROUTE_CHATS_NEW);
        assert_non_null(s);
        assert_int_equal(s->status, 500);
        assert_non_null(cJSON_GetObjectItemCaseSensitive(s->headers, "X-A"));
        assert_non_null(strstr(s->json, "\"times\":3"));
        mock_step_free(s);
    }
    assert_int_equal(take_status(st, "a", MOCK_ROUTE_CHATS_NEW), 502);
    assert_int_equal(take_status(st, "a", MOCK_ROUTE_CHATS_NEW), 0);
    mock_state_free(st);
}

static void
revocation_is_per_token_and_reset_clears_everything(void **state)
{
    (void)state;
    struct mock_state *st = mock_state_new(8, 64);
    mock_state_revoke(st, "bad", 0);
    mock_state_revoke(st, "slow", 40);
    int delay = -1;
    assert_true(mock_state_is_revoked(st, "bad", &delay));
    assert_int_equal(delay, 0);
    assert_true(mock_state_is_revoked(st, "slow", &delay));
    assert_int_equal(delay, 40);
    assert_false(mock_state_is_revoked(st, "good", &delay));
    assert_int_equal(delay, 0);
    queue(st, "{\"token\":\"good\",\"steps\":[{\"status\":500}]}");
    mock_state_journal_add(st, "good", strdup("{\"n\":1}"));
    mock_state_reset(st);
    assert_false(mock_state_is_revoked(st, "bad", NULL));
    assert_int_equal(take_status(st, "good", MOCK_ROUTE_CHAT), 0);
    assert_int_equal(mock_state_journal_total(st), 0);
    mock_state_free(st);
}

static int
journal_ns(struct mock_state *st, const char *key, int *out, int max)
{
    char *json = mock_state_journal_json(st, key);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    const cJSON *e;
    int n = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(root, "entries"))
    {
        if (n < max)
            out[n] = cJSON_GetObjectItem(e, "n")->valueint;
        n++;
    }
    /* The journal names the token only by its fingerprint. */
    assert_null(strstr(cJSON_GetObjectItem(root, "token")->valuestring, key));
    cJSON_Delete(root);
    free(json);
    return n;
}

static void
journal_keeps_order_and_drops_oldest_beyond_bounds(void **state)
{
    (void)state;
    struct mock_state *st = mock_state_new(3, 5);
    char buf[32];
    for (int i = 1; i <= 5; i++) {
        snprintf(buf, sizeof buf, "{\"n\":%d}", i);
        mock_state_journal_add(st, "tok-a", strdup(buf));
    }
    int ns[8];
    /* Per-token bound 3: entries 3,4,5 remain, oldest first. */
    assert_int_equal(journal_ns(st, "tok-a", ns, 8), 3);
    assert_int_equal(ns[0], 3);
    assert_int_equal(ns[2], 5);
    for (int i = 10; i < 13; i++) {
        snprintf(buf, sizeof buf, "{\"n\":%d}", i);
        mock_state_journal_add(st, "tok-b", strdup(buf));
    }
    /* Total bound 5: the globally oldest (tok-a's 3) went first. */
    assert_int_equal(mock_state_journal_total(st), 5);
    assert_int_equal(journal_ns(st, "tok-a", ns, 8), 2);
    assert_int_equal(ns[0], 4);
    assert_int_equal(journal_ns(st, "tok-b", ns, 8), 3);
    assert_int_equal(journal_ns(st, "unknown", ns, 8), 0);
    /* A flood of one-shot tokens stays within the total bound. */
    for (int i = 0; i < 1000; i++) {
        snprintf(buf, sizeof buf, "flood-%d", i);
        mock_state_journal_add(st, buf, strdup("{\"n\":0}"));
    }
    assert_int_equal(mock_state_journal_total(st), 5);
    assert_int_equal(journal_ns(st, "tok-b", ns, 8), 0);
    mock_state_free(st);
}

/* Requests may finish out of order (two server threads). Both bounds must
 * evict by arrival: here request 3 finishes before request 2. */
static void
journal_evicts_by_arrival_when_requests_finish_out_of_order(void **state)
{
    (void)state;
    struct mock_state *st = mock_state_new(3, 5);
    const int finish_order[] = {0, 1, 3, 2, 4};
    char buf[32];
    for (size_t i = 0; i < 5; i++) {
        snprintf(buf, sizeof buf, "{\"n\":%d}", finish_order[i]);
        mock_state_journal_add_seq(st, "tok-a", (unsigned long)finish_order[i], strdup(buf));
    }
    int ns[8];
    assert_int_equal(journal_ns(st, "tok-a", ns, 8), 3);
    assert_int_equal(ns[0], 2);
    assert_int_equal(ns[1], 3);
    assert_int_equal(ns[2], 4);
    for (int i = 10; i < 13; i++) {
        snprintf(buf, sizeof buf, "{\"n\":%d}", i);
        mock_state_journal_add_seq(st, "tok-b", (unsigned long)i, strdup(buf));
    }
    /* Six entries over a total of five: request 2, the first to arrive, goes. */
    assert_int_equal(journal_ns(st, "tok-a", ns, 8), 2);
    assert_int_equal(ns[0], 3);
    assert_int_equal(ns[1], 4);
    mock_state_free(st);
}

static long
in_flight(struct mock_state *st, const char *key)
{
    char *json = mock_state_journal_json(st, key);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    const cJSON *n = cJSON_GetObjectItem(root, "in_flight");
    assert_true(cJSON_IsNumber(n));
    long v = (long)n->valuedouble;
    cJSON_Delete(root);
    free(json);
    return v;
}

/* A request shows as in flight from its start until it is journaled, atomically. */
static void
requests_in_flight_until_journaled(void **state)
{
    (void)state;
    struct mock_state *st = mock_state_new(8, 64);
    int ns[4];
    struct mock_flight f1 = {.key = "tok"}, f2 = {.key = "tok"}, f3 = {.key = "tok"};
    mock_state_request_begin(st, &f1);
    mock_state_request_begin(st, &f2);
    assert_int_equal(in_flight(st, "tok"), 2);
    assert_int_equal(journal_ns(st, "tok", ns, 4), 0);
    assert_int_equal(in_flight(st, "other"), 0);
    mock_state_request_end(st, &f2, 2, strdup("{\"n\":2}"));
    assert_int_equal(in_flight(st, "tok"), 1);
    assert_int_equal(journal_ns(st, "tok", ns, 4), 1);
    /* An entry that could not be built still ends the request. */
    mock_state_request_end(st, &f1, 1, NULL);
    assert_int_equal(in_flight(st, "tok"), 0);
    assert_int_equal(journal_ns(st, "tok", ns, 4), 1);
    /* A reset in between forgets the count rather than going below zero. */
    mock_state_request_begin(st, &f3);
    mock_state_reset(st);
    mock_state_request_end(st, &f3, 3, strdup("{\"n\":3}"));
    assert_int_equal(in_flight(st, "tok"), 0);
    assert_int_equal(journal_ns(st, "tok", ns, 4), 1);
    assert_int_equal(ns[0], 3);
    mock_state_free(st);
}

/* ---------- searches over the whole journal ---------- */

#define T "tok-9f3a"

/* The requests a proxy might send for the caller's token T, one per entry `n`. */
static const struct {
    const char *key;  /* as the server derives it */
    const char *auth; /* Authorization values, NUL-separated */
    size_t auth_len;  /* 0: no Authorization */
} sent[] = {
#define AUTH(s) s, sizeof s
    {T, AUTH("Bearer " T)},                             /* 0: verbatim */
    {"Bearer Bearer " T, AUTH("Bearer Bearer " T)},     /* 1: doubled prefix */
    {T, AUTH("bearer " T)},                             /* 2: re-cased scheme */
    {T, AUTH("Bearer  \"" T "\" ")},                    /* 3: wrapped and padded */
    {"proxy-own", AUTH("Bearer proxy-own\0Bearer " T)}, /* 4: two headers */
    {"", NULL, 0},                                      /* 5: none */
    {"other", AUTH("Bearer other")},                    /* 6: another token */
    {"undefined", AUTH("Bearer undefined")},            /* 7: empty token made a word */
    {T, AUTH("Bearer " T "\0Bearer " T)},               /* 8: the credential twice */
#undef AUTH
};
#define N_SENT (sizeof sent / sizeof sent[0])

/* Journals sent[i] as received at 1000 + 100 * i ms. */
static struct mock_state *
journal_of_sent(void)
{
    struct mock_state *st = mock_state_new(64, 256);
    char buf[32];
    for (size_t i = 0; i < N_SENT; i++) {
        struct mock_flight f = {.key = sent[i].key,
                                .received_ms = 1000 + 100 * (int64_t)i,
                                .auth = sent[i].auth,
                                .auth_len = sent[i].auth_len};
        snprintf(buf, sizeof buf, "{\"n\":%zu}", i);
        mock_state_request_begin(st, &f);
        mock_state_request_end(st, &f, (unsigned long)i + 1, strdup(buf));
    }
    return st;
}

struct found {
    int n[64];
    int count;
    long in_flight, matched;
    bool truncated;
};

/* Runs the search given as query text "a=1&b=2" (no URL escapes). */
static struct found
search(struct mock_state *st, const char *query)
{
    struct mock_journal_query q;
    mock_journal_query_init(&q);
    char copy[256], field[80], msg[160];
    snprintf(copy, sizeof copy, "%s", query);
    for (char *save = NULL, *kv = strtok_r(copy, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq)
            *eq++ = '\0';
        if (mock_journal_query_set(&q, kv, eq, field, sizeof field, msg, sizeof msg) != QK_OK)
            fail_msg("%s: %s: %s", query, field, msg);
    }
    if (mock_journal_query_check(&q, field, sizeof field, msg, sizeof msg) != QK_OK)
        fail_msg("%s: %s: %s", query, field, msg);
    char *json = mock_state_journal_search(st, &q);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    struct found f = {.count = 0};
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(root, "entries"))
    {
        assert_true(f.count < 64);
        f.n[f.count++] = cJSON_GetObjectItem(e, "n")->valueint;
    }
    f.in_flight = (long)cJSON_GetObjectItem(root, "in_flight")->valuedouble;
    f.matched = (long)cJSON_GetObjectItem(root, "matched")->valuedouble;
    f.truncated = cJSON_IsTrue(cJSON_GetObjectItem(root, "truncated"));
    cJSON_Delete(root);
    free(json);
    return f;
}

static void
assert_found(const struct found *f, const int *want, int n)
{
    if (f->count != n) {
        for (int i = 0; i < f->count; i++)
            print_message("found n=%d\n", f->n[i]);
    }
    assert_int_equal(f->count, n);
    for (int i = 0; i < n; i++)
        assert_int_equal(f->n[i], want[i]);
}

/* contains= finds the token in every form a proxy may have sent it, and nothing else. */
static void
search_contains_finds_every_form_of_the_token(void **state)
{
    (void)state;
    struct mock_state *st = journal_of_sent();
    struct found f = search(st, "contains=" T);
    assert_found(&f, (const int[]){0, 1, 2, 3, 4, 8}, 6);
    assert_int_equal(f.matched, 6);
    assert_false(f.truncated);
    assert_int_equal(f.in_flight, 0);
    /* Any part of any value, case-sensitive. */
    f = search(st, "contains=undefined");
    assert_found(&f, (const int[]){7}, 1);
    f = search(st, "contains=proxy-own");
    assert_found(&f, (const int[]){4}, 1);
    f = search(st, "contains=bearer");
    assert_found(&f, (const int[]){2}, 1);
    f = search(st, "contains=TOK-9F3A");
    assert_found(&f, NULL, 0);
    mock_state_free(st);
}

/* since_ms/until_ms bound received_ms inclusively; not_token keeps every request that
 * did not carry exactly one `Authorization: Bearer T`. */
static void
search_window_and_other_credentials(void **state)
{
    (void)state;
    struct mock_state *st = journal_of_sent(); /* entry i received at 1000 + 100 i */
    struct found f = search(st, "since_ms=1100&until_ms=1300");
    assert_found(&f, (const int[]){1, 2, 3}, 3);
    f = search(st, "since_ms=1101&until_ms=1299");
    assert_found(&f, (const int[]){2}, 1);
    f = search(st, "since_ms=1800");
    assert_found(&f, (const int[]){8}, 1);
    f = search(st, "until_ms=1000");
    assert_found(&f, (const int[]){0}, 1);
    f = search(st, "since_ms=1300&until_ms=1300");
    assert_found(&f, (const int[]){3}, 1);
    f = search(st, "since_ms=5000");
    assert_found(&f, NULL, 0);
    f = search(st, "since_ms=0&not_token=" T);
    assert_found(&f, (const int[]){1, 2, 3, 4, 5, 6, 7, 8}, 8);
    f = search(st, "not_token=other&since_ms=1500&until_ms=1700");
    assert_found(&f, (const int[]){5, 7}, 2);
    /* Conditions combine. */
    f = search(st, "contains=" T "&not_token=" T);
    assert_found(&f, (const int[]){1, 2, 3, 4, 8}, 5);
    mock_state_free(st);
}

/* limit keeps the latest matches, oldest first, and says the answer is cut. */
static void
search_limit_keeps_the_latest_matches(void **state)
{
    (void)state;
    struct mock_state *st = journal_of_sent();
    struct found f = search(st, "contains=" T "&limit=2");
    assert_found(&f, (const int[]){4, 8}, 2);
    assert_int_equal(f.matched, 6);
    assert_true(f.truncated);
    f = search(st, "contains=" T "&limit=6");
    assert_int_equal(f.count, 6);
    assert_false(f.truncated);
    mock_state_free(st);
}

/* Requests in flight count when they match; a reset forgets them; once ended they are
 * entries, found by what they carried, under whatever key. */
static void
search_counts_matching_requests_in_flight(void **state)
{
    (void)state;
    struct mock_state *st = journal_of_sent();
    static const char doubled[] = "Bearer Bearer " T;
    struct mock_flight f = {
        .key = doubled, .received_ms = 2500, .auth = doubled, .auth_len = sizeof doubled};
    mock_state_request_begin(st, &f);
    struct found r = search(st, "contains=" T);
    assert_int_equal(r.in_flight, 1);
    assert_int_equal(r.count, 6);
    r = search(st, "since_ms=2000&not_token=" T);
    assert_int_equal(r.in_flight, 1);
    assert_int_equal(r.count, 0);
    r = search(st, "until_ms=2499");
    assert_int_equal(r.in_flight, 0);
    r = search(st, "contains=other");
    assert_int_equal(r.in_flight, 0);
    mock_state_request_end(st, &f, 100, strdup("{\"n\":42}"));
    r = search(st, "since_ms=2000&not_token=" T);
    assert_int_equal(r.in_flight, 0);
    assert_found(&r, (const int[]){42}, 1);

    struct mock_flight g = {
        .key = T, .received_ms = 3000, .auth = doubled, .auth_len = sizeof doubled};
    mock_state_request_begin(st, &g);
    mock_state_reset(st);
    r = search(st, "contains=" T);
    assert_int_equal(r.in_flight, 0);
    assert_int_equal(r.count, 0);
    mock_state_request_end(st, &g, 101, strdup("{\"n\":43}"));
    r = search(st, "contains=" T);
    assert_found(&r, (const int[]){43}, 1);
    mock_state_free(st);
}

/* Entries dropped by the journal's bounds are gone from searches too. */
static void
search_sees_only_retained_entries(void **state)
{
    (void)state;
    struct mock_state *st = mock_state_new(2, 3);
    static const char auth[] = "Bearer " T;
    char buf[32];
    for (int i = 0; i < 5; i++) {
        struct mock_flight f = {
            .key = i < 3 ? T : "b", .received_ms = i, .auth = auth, .auth_len = sizeof auth};
        snprintf(buf, sizeof buf, "{\"n\":%d}", i);
        mock_state_request_begin(st, &f);
        mock_state_request_end(st, &f, (unsigned long)i + 1, strdup(buf));
    }
    /* Per key 2 (T keeps 1, 2), in all 3 (so 2, 3, 4 remain). */
    struct found f = search(st, "contains=" T);
    assert_found(&f, (const int[]){2, 3, 4}, 3);
    mock_state_free(st);
}

/* Each bad parameter is refused with its name. */
static void
search_parameters_are_validated(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value; /* set in order; the last one fails */
        const char *prev_name, *prev_value;
        const char *field;
    } bad[] = {
        {"contains", "", NULL, NULL, "contains"},
        {"contains", NULL, NULL, NULL, "contains"},
        {"not_token", "", NULL, NULL, "not_token"},
        {"since_ms", "-1", NULL, NULL, "since_ms"},
        {"since_ms", "12a", NULL, NULL, "since_ms"},
        {"since_ms", "", NULL, NULL, "since_ms"},
        {"since_ms", " 5", NULL, NULL, "since_ms"},
        {"until_ms", "1e3", NULL, NULL, "until_ms"},
        {"until_ms", "9999999999999999999", NULL, NULL, "until_ms"},
        {"limit", "0", NULL, NULL, "limit"},
        {"limit", "1000001", NULL, NULL, "limit"},
        {"since_ms", "5", "since_ms", "4", "since_ms"},
        {"sinse_ms", "5", NULL, NULL, "sinse_ms"},
    };
    char field[80], msg[160];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct mock_journal_query q;
        mock_journal_query_init(&q);
        if (bad[i].prev_name)
            assert_int_equal(mock_journal_query_set(&q, bad[i].prev_name, bad[i].prev_value, field,
                                                    sizeof field, msg, sizeof msg),
                             QK_OK);
        field[0] = msg[0] = '\0';
        assert_int_equal(mock_journal_query_set(&q, bad[i].name, bad[i].value, field, sizeof field,
                                                msg, sizeof msg),
                         QK_INVALID);
        assert_string_equal(field, bad[i].field);
        assert_true(msg[0] != '\0');
    }
    /* Whole-query checks. */
    struct mock_journal_query q;
    mock_journal_query_init(&q);
    assert_int_equal(mock_journal_query_check(&q, field, sizeof field, msg, sizeof msg),
                     QK_INVALID);
    assert_string_equal(field, "token");
    assert_int_equal(mock_journal_query_set(&q, "limit", "3", field, sizeof field, msg, sizeof msg),
                     QK_OK);
    assert_int_equal(mock_journal_query_check(&q, field, sizeof field, msg, sizeof msg),
                     QK_INVALID);
    assert_string_equal(field, "limit");
    assert_int_equal(
        mock_journal_query_set(&q, "since_ms", "10", field, sizeof field, msg, sizeof msg), QK_OK);
    assert_int_equal(
        mock_journal_query_set(&q, "until_ms", "9", field, sizeof field, msg, sizeof msg), QK_OK);
    assert_int_equal(mock_journal_query_check(&q, field, sizeof field, msg, sizeof msg),
                     QK_INVALID);
    assert_string_equal(field, "until_ms");
    mock_journal_query_init(&q);
    assert_int_equal(
        mock_journal_query_set(&q, "until_ms", "0", field, sizeof field, msg, sizeof msg), QK_OK);
    assert_int_equal(mock_journal_query_check(&q, field, sizeof field, msg, sizeof msg), QK_OK);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(steps_come_in_order_per_token_and_route),
        cmocka_unit_test(step_with_times_answers_that_many_requests),
        cmocka_unit_test(revocation_is_per_token_and_reset_clears_everything),
        cmocka_unit_test(journal_keeps_order_and_drops_oldest_beyond_bounds),
        cmocka_unit_test(journal_evicts_by_arrival_when_requests_finish_out_of_order),
        cmocka_unit_test(requests_in_flight_until_journaled),
        cmocka_unit_test(search_contains_finds_every_form_of_the_token),
        cmocka_unit_test(search_window_and_other_credentials),
        cmocka_unit_test(search_limit_keeps_the_latest_matches),
        cmocka_unit_test(search_counts_matching_requests_in_flight),
        cmocka_unit_test(search_sees_only_retained_entries),
        cmocka_unit_test(search_parameters_are_validated),
    };
    return cmocka_run_group_tests_name("mock_state", tests, NULL, NULL);
}
