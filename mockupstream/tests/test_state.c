/* Unit tests: per-token queues, revocation and the bounded journal (mock_state.c). */
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
    assert_int_equal(mock_scenario_parse(json, strlen(json), &d, &list, field, sizeof field, msg,
                                         sizeof msg),
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

static void
revocation_is_per_token_and_reset_clears_everything(void **state)
{
    (void)state;
    struct mock_state *st = mock_state_new(8, 64);
    mock_state_revoke(st, "bad");
    assert_true(mock_state_is_revoked(st, "bad"));
    assert_false(mock_state_is_revoked(st, "good"));
    queue(st, "{\"token\":\"good\",\"steps\":[{\"status\":500}]}");
    mock_state_journal_add(st, "good", strdup("{\"n\":1}"));
    mock_state_reset(st);
    assert_false(mock_state_is_revoked(st, "bad"));
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
    mock_state_request_begin(st, "tok");
    mock_state_request_begin(st, "tok");
    assert_int_equal(in_flight(st, "tok"), 2);
    assert_int_equal(journal_ns(st, "tok", ns, 4), 0);
    assert_int_equal(in_flight(st, "other"), 0);
    mock_state_request_end(st, "tok", 2, strdup("{\"n\":2}"));
    assert_int_equal(in_flight(st, "tok"), 1);
    assert_int_equal(journal_ns(st, "tok", ns, 4), 1);
    /* An entry that could not be built still ends the request. */
    mock_state_request_end(st, "tok", 1, NULL);
    assert_int_equal(in_flight(st, "tok"), 0);
    assert_int_equal(journal_ns(st, "tok", ns, 4), 1);
    /* A reset in between forgets the count rather than going below zero. */
    mock_state_request_begin(st, "tok");
    mock_state_reset(st);
    mock_state_request_end(st, "tok", 3, strdup("{\"n\":3}"));
    assert_int_equal(in_flight(st, "tok"), 0);
    assert_int_equal(journal_ns(st, "tok", ns, 4), 1);
    assert_int_equal(ns[0], 3);
    mock_state_free(st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(steps_come_in_order_per_token_and_route),
        cmocka_unit_test(revocation_is_per_token_and_reset_clears_everything),
        cmocka_unit_test(journal_keeps_order_and_drops_oldest_beyond_bounds),
        cmocka_unit_test(journal_evicts_by_arrival_when_requests_finish_out_of_order),
        cmocka_unit_test(requests_in_flight_until_journaled),
    };
    return cmocka_run_group_tests_name("mock_state", tests, NULL, NULL);
}
