/* Unit tests: model-list cache (TTL, per-credential keys, LRU bound, stale grace),
 * single flight, and credential keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cache.h"
#include "flight.h"
#include "key.h"

static struct qp_key
key(const char *auth)
{
    return qp_key_of(auth, strlen(auth));
}

static int
seed(void **state)
{
    (void)state;
    uint8_t s[32];
    for (int i = 0; i < 32; i++)
        s[i] = (uint8_t)(i * 7 + 1);
    qp_key_seed(s);
    return 0;
}

/* The reference vector of the SipHash paper (key 00..0f, message 00..0e). */
static void
siphash_matches_reference_vector(void **state)
{
    (void)state;
    uint8_t k[16], m[15];
    for (int i = 0; i < 16; i++)
        k[i] = (uint8_t)i;
    for (int i = 0; i < 15; i++)
        m[i] = (uint8_t)i;
    assert_true(qp_siphash24(k, m, sizeof(m)) == 0xa129ca6149be45e5ULL);
}

static void
keys_differ_per_full_authorization_value(void **state)
{
    (void)state;
    assert_true(qp_key_equal(key("Bearer a"), key("Bearer a")));
    assert_false(qp_key_equal(key("Bearer a"), key("Bearer b")));
    /* Scheme case is part of the value: two spellings are two credentials. */
    assert_false(qp_key_equal(key("Bearer a"), key("bearer a")));
}

static void
fresh_within_ttl_then_stale_then_gone(void **state)
{
    (void)state;
    struct qp_cache *c = qp_cache_new(10, 1000, 500);
    assert_non_null(c);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(qp_cache_get(c, key("Bearer a"), 0, &body, &len), QP_CACHE_MISS);
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "{\"data\":[]}", 11, 100), QK_OK);

    assert_int_equal(qp_cache_get(c, key("Bearer a"), 1099, &body, &len), QP_CACHE_FRESH);
    assert_string_equal(body, "{\"data\":[]}");
    assert_int_equal(len, 11);
    free(body);

    /* At exactly TTL the entry is expired: refresh, but keep it as fallback. */
    assert_int_equal(qp_cache_get(c, key("Bearer a"), 1100, &body, &len), QP_CACHE_STALE);
    assert_null(body);
    assert_int_equal(qp_cache_get_fallback(c, key("Bearer a"), 1599, &body, &len), QP_CACHE_STALE);
    assert_string_equal(body, "{\"data\":[]}");
    free(body);

    /* Past TTL + grace it is dropped. */
    assert_int_equal(qp_cache_get_fallback(c, key("Bearer a"), 1600, &body, &len), QP_CACHE_MISS);
    assert_null(body);
    assert_int_equal(qp_cache_count(c), 0);
    qp_cache_free(c);
}

static void
entries_are_per_credential(void **state)
{
    (void)state;
    struct qp_cache *c = qp_cache_new(10, 1000, 0);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "A", 1, 0), QK_OK);
    assert_int_equal(qp_cache_get(c, key("Bearer b"), 1, &body, &len), QP_CACHE_MISS);
    assert_int_equal(qp_cache_put(c, key("Bearer b"), "B", 1, 0), QK_OK);
    assert_int_equal(qp_cache_get(c, key("Bearer a"), 1, &body, &len), QP_CACHE_FRESH);
    assert_string_equal(body, "A");
    free(body);
    assert_int_equal(qp_cache_get(c, key("Bearer b"), 1, &body, &len), QP_CACHE_FRESH);
    assert_string_equal(body, "B");
    free(body);
    qp_cache_evict(c, key("Bearer a"));
    assert_int_equal(qp_cache_get(c, key("Bearer a"), 1, &body, &len), QP_CACHE_MISS);
    assert_int_equal(qp_cache_count(c), 1);
    qp_cache_free(c);
}

static void
bounded_and_evicts_least_recently_used(void **state)
{
    (void)state;
    struct qp_cache *c = qp_cache_new(3, 100000, 0);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(qp_cache_put(c, key("Bearer 1"), "1", 1, 0), QK_OK);
    assert_int_equal(qp_cache_put(c, key("Bearer 2"), "2", 1, 0), QK_OK);
    assert_int_equal(qp_cache_put(c, key("Bearer 3"), "3", 1, 0), QK_OK);
    /* Touch 1 so that 2 becomes the least recently used. */
    assert_int_equal(qp_cache_get(c, key("Bearer 1"), 1, &body, &len), QP_CACHE_FRESH);
    free(body);
    assert_int_equal(qp_cache_put(c, key("Bearer 4"), "4", 1, 2), QK_OK);
    assert_int_equal(qp_cache_count(c), 3);
    assert_int_equal(qp_cache_get(c, key("Bearer 2"), 3, &body, &len), QP_CACHE_MISS);
    assert_int_equal(qp_cache_get(c, key("Bearer 1"), 3, &body, &len), QP_CACHE_FRESH);
    free(body);

    /* A flood of distinct credentials never grows it past the bound. */
    char auth[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(auth, sizeof(auth), "Bearer flood-%d", i);
        assert_int_equal(qp_cache_put(c, key(auth), "x", 1, 10), QK_OK);
        assert_true(qp_cache_count(c) <= 3);
    }
    qp_cache_free(c);
}

static void
replacing_an_entry_restarts_its_ttl(void **state)
{
    (void)state;
    struct qp_cache *c = qp_cache_new(2, 100, 0);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "old", 3, 0), QK_OK);
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "new!", 4, 90), QK_OK);
    assert_int_equal(qp_cache_count(c), 1);
    assert_int_equal(qp_cache_get(c, key("Bearer a"), 150, &body, &len), QP_CACHE_FRESH);
    assert_string_equal(body, "new!");
    free(body);
    qp_cache_free(c);
}

static void
single_flight_leads_once_and_lands_all_waiters(void **state)
{
    (void)state;
    struct qp_flights *f = qp_flights_new();
    int a, b, c, other;
    assert_int_equal(qp_flight_join(f, key("Bearer t"), &a), QP_FLIGHT_LEAD);
    assert_int_equal(qp_flight_join(f, key("Bearer t"), &b), QP_FLIGHT_JOINED);
    assert_int_equal(qp_flight_join(f, key("Bearer t"), &c), QP_FLIGHT_JOINED);
    /* Another credential never joins someone else's flight. */
    assert_int_equal(qp_flight_join(f, key("Bearer u"), &other), QP_FLIGHT_LEAD);
    assert_int_equal(qp_flights_open(f), 2);

    void **waiters = NULL;
    assert_int_equal(qp_flight_land(f, key("Bearer t"), &waiters), 2);
    assert_ptr_equal(waiters[0], &b);
    assert_ptr_equal(waiters[1], &c);
    free(waiters);
    assert_int_equal(qp_flight_land(f, key("Bearer u"), &waiters), 0);
    assert_null(waiters);
    assert_int_equal(qp_flights_open(f), 0);
    /* After landing, the next miss leads a new flight. */
    assert_int_equal(qp_flight_join(f, key("Bearer t"), &a), QP_FLIGHT_LEAD);
    qp_flights_free(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(siphash_matches_reference_vector),
        cmocka_unit_test(keys_differ_per_full_authorization_value),
        cmocka_unit_test(fresh_within_ttl_then_stale_then_gone),
        cmocka_unit_test(entries_are_per_credential),
        cmocka_unit_test(bounded_and_evicts_least_recently_used),
        cmocka_unit_test(replacing_an_entry_restarts_its_ttl),
        cmocka_unit_test(single_flight_leads_once_and_lands_all_waiters),
    };
    return cmocka_run_group_tests_name("unit_proxy_cache", tests, seed, NULL);
}
