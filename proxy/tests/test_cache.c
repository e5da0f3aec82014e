/* Unit tests: model-list cache (TTL, per-credential keys, LRU bounds on entries and bytes,
 * stale grace, the derived form made once per entry, shared bodies read from other threads
 * while entries are replaced), single flight, and credential keys. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
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
    struct qp_cache *c = qp_cache_new(10, 0, 1000, 500, NULL);
    assert_non_null(c);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(qp_cache_get(c, key("Bearer a"), 0, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_MISS);
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "{\"data\":[]}", 11, 100), QK_OK);

    assert_int_equal(qp_cache_get(c, key("Bearer a"), 1099, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_FRESH);
    assert_string_equal(body, "{\"data\":[]}");
    assert_int_equal(len, 11);
    free(body);

    /* At exactly TTL the entry is expired: refresh, but keep it as fallback. */
    assert_int_equal(qp_cache_get(c, key("Bearer a"), 1100, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_STALE);
    assert_null(body);
    assert_int_equal(qp_cache_get_fallback(c, key("Bearer a"), 1599, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_STALE);
    assert_string_equal(body, "{\"data\":[]}");
    free(body);

    /* Past TTL + grace it is dropped. */
    assert_int_equal(qp_cache_get_fallback(c, key("Bearer a"), 1600, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_MISS);
    assert_null(body);
    assert_int_equal(qp_cache_count(c), 0);
    qp_cache_free(c);
}

static void
entries_are_per_credential(void **state)
{
    (void)state;
    struct qp_cache *c = qp_cache_new(10, 0, 1000, 0, NULL);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "A", 1, 0), QK_OK);
    assert_int_equal(qp_cache_get(c, key("Bearer b"), 1, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_MISS);
    assert_int_equal(qp_cache_put(c, key("Bearer b"), "B", 1, 0), QK_OK);
    assert_int_equal(qp_cache_get(c, key("Bearer a"), 1, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_FRESH);
    assert_string_equal(body, "A");
    free(body);
    assert_int_equal(qp_cache_get(c, key("Bearer b"), 1, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_FRESH);
    assert_string_equal(body, "B");
    free(body);
    qp_cache_evict(c, key("Bearer a"));
    assert_int_equal(qp_cache_get(c, key("Bearer a"), 1, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_MISS);
    assert_int_equal(qp_cache_count(c), 1);
    qp_cache_free(c);
}

static void
bounded_and_evicts_least_recently_used(void **state)
{
    (void)state;
    struct qp_cache *c = qp_cache_new(3, 0, 100000, 0, NULL);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(qp_cache_put(c, key("Bearer 1"), "1", 1, 0), QK_OK);
    assert_int_equal(qp_cache_put(c, key("Bearer 2"), "2", 1, 0), QK_OK);
    assert_int_equal(qp_cache_put(c, key("Bearer 3"), "3", 1, 0), QK_OK);
    /* Touch 1 so that 2 becomes the least recently used. */
    assert_int_equal(qp_cache_get(c, key("Bearer 1"), 1, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_FRESH);
    free(body);
    assert_int_equal(qp_cache_put(c, key("Bearer 4"), "4", 1, 2), QK_OK);
    assert_int_equal(qp_cache_count(c), 3);
    assert_int_equal(qp_cache_get(c, key("Bearer 2"), 3, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_MISS);
    assert_int_equal(qp_cache_get(c, key("Bearer 1"), 3, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_FRESH);
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
    struct qp_cache *c = qp_cache_new(2, 0, 100, 0, NULL);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "old", 3, 0), QK_OK);
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "new!", 4, 90), QK_OK);
    assert_int_equal(qp_cache_count(c), 1);
    assert_int_equal(qp_cache_get(c, key("Bearer a"), 150, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_FRESH);
    assert_string_equal(body, "new!");
    free(body);
    qp_cache_free(c);
}

/* The byte bound: entries are dropped least recently used first until the bodies fit. */
static void
bounded_in_bytes_evicting_least_recently_used(void **state)
{
    (void)state;
    struct qp_cache *c = qp_cache_new(100, 30, 100000, 0, NULL);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(qp_cache_put(c, key("Bearer 1"), "1111111111", 10, 0), QK_OK);
    assert_int_equal(qp_cache_put(c, key("Bearer 2"), "2222222222", 10, 0), QK_OK);
    assert_int_equal(qp_cache_put(c, key("Bearer 3"), "3333333333", 10, 0), QK_OK);
    assert_int_equal(qp_cache_bytes(c), 30);
    /* Touch 1 so that 2, then 3, are the least recently used. */
    assert_int_equal(qp_cache_get(c, key("Bearer 1"), 1, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_FRESH);
    free(body);
    /* 15 more bytes: 2 and 3 must go (one would leave 35), 1 stays. */
    assert_int_equal(qp_cache_put(c, key("Bearer 4"), "444444444444444", 15, 2), QK_OK);
    assert_int_equal(qp_cache_count(c), 2);
    assert_int_equal(qp_cache_bytes(c), 25);
    assert_int_equal(qp_cache_get(c, key("Bearer 2"), 3, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_MISS);
    assert_int_equal(qp_cache_get(c, key("Bearer 3"), 3, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_MISS);
    assert_int_equal(qp_cache_get(c, key("Bearer 1"), 3, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_FRESH);
    assert_string_equal(body, "1111111111");
    free(body);

    /* Replacing an entry with a larger body evicts others, never the entry itself. */
    assert_int_equal(qp_cache_put(c, key("Bearer 1"), "11111111111111111111", 20, 4), QK_OK);
    assert_int_equal(qp_cache_count(c), 1);
    assert_int_equal(qp_cache_bytes(c), 20);
    assert_int_equal(qp_cache_get(c, key("Bearer 1"), 5, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_FRESH);
    assert_int_equal(len, 20);
    free(body);

    /* Evicting and expiring give their bytes back. */
    qp_cache_evict(c, key("Bearer 1"));
    assert_int_equal(qp_cache_bytes(c), 0);

    /* A flood of varied sizes never holds more than the bound. */
    char auth[32], blob[31];
    memset(blob, 'x', sizeof(blob));
    for (int i = 0; i < 2000; i++) {
        snprintf(auth, sizeof(auth), "Bearer flood-%d", i);
        assert_int_equal(qp_cache_put(c, key(auth), blob, (size_t)(i % 31), 10), QK_OK);
        assert_true(qp_cache_bytes(c) <= 30);
    }
    qp_cache_free(c);
}

/* A list larger than the bound is not kept, and the older list of that key goes too (it
 * is out of date: serving it as fresh would hide the newer one). */
static void
entry_larger_than_the_bound_is_not_cached(void **state)
{
    (void)state;
    struct qp_cache *c = qp_cache_new(100, 16, 100000, 100000, NULL);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "small", 5, 0), QK_OK);
    assert_int_equal(qp_cache_put(c, key("Bearer b"), "other", 5, 0), QK_OK);
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "0123456789abcdefg", 17, 1), QK_OK);
    assert_int_equal(qp_cache_get(c, key("Bearer a"), 2, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_MISS);
    assert_null(body);
    assert_int_equal(qp_cache_get_fallback(c, key("Bearer a"), 2, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_MISS);
    /* Others are untouched: a list that is not cached evicts nobody. */
    assert_int_equal(qp_cache_count(c), 1);
    assert_int_equal(qp_cache_bytes(c), 5);
    assert_int_equal(qp_cache_get(c, key("Bearer b"), 2, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_FRESH);
    free(body);
    /* Exactly the bound fits. */
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "0123456789abcdef", 16, 3), QK_OK);
    assert_int_equal(qp_cache_count(c), 1);
    assert_int_equal(qp_cache_bytes(c), 16);
    qp_cache_free(c);
}

/* The derive hook for the tests: "<body>!" and a count of its calls. */
static int derive_calls;

static char *
derive_bang(const char *body, size_t len, size_t *out_len)
{
    derive_calls++;
    if (len > 0 && body[0] == 'X')
        return NULL; /* an unusable body */
    char *out = malloc(len + 2);
    if (!out)
        return NULL;
    memcpy(out, body, len);
    out[len] = '!';
    out[len + 1] = '\0';
    *out_len = len + 1;
    return out;
}

/* The derived form (/v1/models) is made once per stored entry, never per hit. */
static void
derived_form_is_made_once_per_entry(void **state)
{
    (void)state;
    derive_calls = 0;
    struct qp_cache *c = qp_cache_new(10, 0, 1000, 1000, derive_bang);
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "list", 4, 0), QK_OK);
    int after_put = derive_calls;
    assert_true(after_put <= 1);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(qp_cache_get(c, key("Bearer a"), 1 + i, QP_CACHE_DERIVED, &body, &len),
                         QP_CACHE_FRESH);
        assert_string_equal(body, "list!");
        assert_int_equal(len, 5);
        free(body);
        assert_int_equal(qp_cache_get(c, key("Bearer a"), 1 + i, QP_CACHE_BODY, &body, &len),
                         QP_CACHE_FRESH);
        assert_string_equal(body, "list");
        free(body);
    }
    /* The stale fallback serves the same derived form. */
    assert_int_equal(qp_cache_get_fallback(c, key("Bearer a"), 1500, QP_CACHE_DERIVED, &body, &len),
                     QP_CACHE_STALE);
    assert_string_equal(body, "list!");
    free(body);
    assert_int_equal(derive_calls, 1);

    /* A new list for the key is a new entry: derived once more, from the new body. */
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "next", 4, 1600), QK_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(qp_cache_get(c, key("Bearer a"), 1601, QP_CACHE_DERIVED, &body, &len),
                         QP_CACHE_FRESH);
        assert_string_equal(body, "next!");
        free(body);
    }
    assert_int_equal(derive_calls, 2);

    /* A body the hook refuses stays servable in its own form; the derived one misses. */
    assert_int_equal(qp_cache_put(c, key("Bearer x"), "Xbad", 4, 0), QK_OK);
    assert_int_equal(qp_cache_get(c, key("Bearer x"), 1, QP_CACHE_DERIVED, &body, &len),
                     QP_CACHE_MISS);
    assert_null(body);
    assert_int_equal(qp_cache_get(c, key("Bearer x"), 1, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_FRESH);
    assert_string_equal(body, "Xbad");
    free(body);
    qp_cache_free(c);
}

/* Both forms count against the byte bound; an entry whose two forms exceed it is not kept. */
static void
derived_form_counts_against_the_byte_bound(void **state)
{
    (void)state;
    struct qp_cache *c = qp_cache_new(10, 20, 1000, 0, derive_bang);
    char *body = NULL;
    size_t len = 0;
    /* 5 + 6 bytes. */
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "aaaaa", 5, 0), QK_OK);
    assert_int_equal(qp_cache_get(c, key("Bearer a"), 1, QP_CACHE_DERIVED, &body, &len),
                     QP_CACHE_FRESH);
    free(body);
    assert_int_equal(qp_cache_bytes(c), 11);
    /* Another 11 would make 22 > 20: a goes. */
    assert_int_equal(qp_cache_put(c, key("Bearer b"), "bbbbb", 5, 2), QK_OK);
    assert_int_equal(qp_cache_get(c, key("Bearer b"), 3, QP_CACHE_DERIVED, &body, &len),
                     QP_CACHE_FRESH);
    free(body);
    assert_true(qp_cache_bytes(c) <= 20);
    assert_int_equal(qp_cache_get(c, key("Bearer a"), 3, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_MISS);
    /* 10 + 11 = 21 > 20: served by the caller, never kept, b untouched. */
    assert_int_equal(qp_cache_put(c, key("Bearer c"), "cccccccccc", 10, 4), QK_OK);
    assert_int_equal(qp_cache_get(c, key("Bearer c"), 5, QP_CACHE_BODY, &body, &len),
                     QP_CACHE_MISS);
    assert_int_equal(qp_cache_get(c, key("Bearer c"), 5, QP_CACHE_DERIVED, &body, &len),
                     QP_CACHE_MISS);
    assert_int_equal(qp_cache_get(c, key("Bearer b"), 5, QP_CACHE_DERIVED, &body, &len),
                     QP_CACHE_FRESH);
    assert_string_equal(body, "bbbbb!");
    free(body);
    assert_true(qp_cache_bytes(c) <= 20);
    qp_cache_free(c);
}

/* A shared body outlives its entry: replaced and evicted, it stays readable until the
 * reader drops it. */
static void
shared_body_outlives_its_entry(void **state)
{
    (void)state;
    struct qp_cache *c = qp_cache_new(1, 0, 1000, 0, derive_bang);
    struct qp_blob *b = NULL, *d = NULL;
    assert_int_equal(qp_cache_get_shared(c, key("Bearer a"), 0, QP_CACHE_BODY, &b), QP_CACHE_MISS);
    assert_null(b);
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "first", 5, 0), QK_OK);
    assert_int_equal(qp_cache_get_shared(c, key("Bearer a"), 1, QP_CACHE_BODY, &b), QP_CACHE_FRESH);
    assert_int_equal(qp_cache_get_shared(c, key("Bearer a"), 1, QP_CACHE_DERIVED, &d),
                     QP_CACHE_FRESH);
    assert_int_equal(qp_cache_put(c, key("Bearer a"), "second", 6, 2), QK_OK);
    assert_int_equal(qp_cache_put(c, key("Bearer b"), "other", 5, 3), QK_OK); /* evicts a */
    assert_int_equal(qp_cache_count(c), 1);
    assert_int_equal(b->len, 5);
    assert_string_equal(b->data, "first");
    assert_string_equal(d->data, "first!");
    qp_blob_unref(b);
    qp_blob_unref(d);
    /* Past the TTL a shared lookup misses; the fallback serves within the grace only. */
    assert_int_equal(qp_cache_get_shared(c, key("Bearer b"), 1003, QP_CACHE_BODY, &b),
                     QP_CACHE_MISS);
    assert_null(b);
    qp_cache_free(c);
}

struct reader_arg {
    struct qp_cache *cache;
    atomic_bool *stop;
    atomic_ulong hits; /* read by the main thread while the reader runs */
    bool torn;         /* a body that was neither list */
};

/* A server thread: looks the one key up until told to stop, checking every body it gets. */
static void *
reader_main(void *p)
{
    struct reader_arg *a = p;
    while (!atomic_load(a->stop)) {
        struct qp_blob *b = NULL;
        if (qp_cache_get_shared(a->cache, key("Bearer r"), 1, QP_CACHE_DERIVED, &b) ==
            QP_CACHE_FRESH) {
            atomic_fetch_add(&a->hits, 1);
            if (!(b->len == 5 && (strcmp(b->data, "AAAA!") == 0 || strcmp(b->data, "BBBB!") == 0)))
                a->torn = true;
            qp_blob_unref(b);
        }
    }
    return NULL;
}

/* Server threads read while the loop thread replaces and evicts (run under TSan in CI):
 * every hit is one whole list, and a stored list is found. */
static void
lookups_from_other_threads_while_storing(void **state)
{
    (void)state;
    struct qp_cache *c = qp_cache_new(4, 0, 1000, 0, derive_bang);
    atomic_bool stop = false;
    struct reader_arg args[2] = {{c, &stop, 0, false}, {c, &stop, 0, false}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &args[i]), 0);
    char other[32];
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(qp_cache_put(c, key("Bearer r"), i % 2 ? "AAAA" : "BBBB", 4, 0), QK_OK);
        snprintf(other, sizeof(other), "Bearer o%d", i);
        assert_int_equal(qp_cache_put(c, key(other), "oooo", 4, 0), QK_OK);
        if (i % 100 == 99)
            qp_cache_evict(c, key("Bearer r"));
    }
    assert_int_equal(qp_cache_put(c, key("Bearer r"), "AAAA", 4, 0), QK_OK);
    /* Let each reader see the last list at least once before stopping. */
    for (int spins = 0;
         spins < 100000 && (atomic_load(&args[0].hits) == 0 || atomic_load(&args[1].hits) == 0);
         spins++)
        sched_yield();
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_false(args[i].torn);
        assert_true(atomic_load(&args[i].hits) > 0);
    }
    assert_true(qp_cache_count(c) <= 4);
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
        cmocka_unit_test(bounded_in_bytes_evicting_least_recently_used),
        cmocka_unit_test(entry_larger_than_the_bound_is_not_cached),
        cmocka_unit_test(derived_form_is_made_once_per_entry),
        cmocka_unit_test(derived_form_counts_against_the_byte_bound),
        cmocka_unit_test(shared_body_outlives_its_entry),
        cmocka_unit_test(lookups_from_other_threads_while_storing),
        cmocka_unit_test(single_flight_leads_once_and_lands_all_waiters),
    };
    return cmocka_run_group_tests_name("unit_proxy_cache", tests, seed, NULL);
}
