/*
 * CACHE-1..7: the per-credential model-list cache. Timings come from the profile; the
 * tests wait for real TTLs, so the profile of a fast suite run keeps them short.
 */
#include "conf_groups.h"

#include <string.h>

enum {
    TTL_MARGIN_MS = 600,     /* wait this much past an expiry before judging it */
    LONGEST_WAIT_MS = 20000, /* timings beyond this make a test skip, not hang */
};

static const struct conf_profile *
profile(struct conf_ctx *ctx)
{
    return &conf_target(ctx)->profile;
}

static void
require_short_ttl(struct conf_ctx *ctx)
{
    conf_check(ctx, NULL, !conf_profile_none(profile(ctx), CONF_NONE_CACHE),
               "the profile declares no model-list cache (\"cache_ttl_ms\": \"none\"), which "
               "this requirement needs");
    conf_runnable(ctx, profile(ctx)->cache_ttl_ms <= LONGEST_WAIT_MS,
                  "the profile's cache TTL (%lld ms) is too long to wait for: run the proxy with "
                  "a TTL of at most %d ms and set \"cache_ttl_ms\"",
                  (long long)profile(ctx)->cache_ttl_ms, LONGEST_WAIT_MS);
}

/* Enough failing steps to exhaust every attempt of one request, with two to spare for a
 * proxy that retries more than it should (RETRY-3's business, not the cache's). */
static unsigned
enough_failures(struct conf_ctx *ctx)
{
    return profile(ctx)->max_retries + 3;
}

static const char *
failing_steps(struct conf_ctx *ctx, const char *step)
{
    return conf_repeat_steps(ctx, step, enough_failures(ctx));
}

static bool
same_body(const struct conf_response *a, const struct conf_response *b)
{
    return a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0;
}

/* CACHE-1: a second GET models with the same token within the TTL is served with no
 * upstream request, with the same body. */
static void
CACHE_1_second_request_within_ttl_served_from_cache(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const struct conf_response *first = conf_get_models(ctx, token);
    conf_require_model_list(ctx, first);
    size_t before = conf_attempts(ctx, token, 1);
    conf_assume(ctx, before == 1,
                "a new credential got a list without an upstream request (see AUTH-5)");
    const struct conf_response *second = conf_get_models(ctx, token);
    conf_check(ctx, second, conf_is_model_list(ctx, second),
               "the second request got %s, not the list", conf_describe(ctx, second));
    conf_check(ctx, second, same_body(first, second),
               "the cached answer differs from the first one");
    size_t after = conf_attempts(ctx, token, before);
    conf_check(ctx, second, after == before,
               "the second request within the TTL went upstream (%zu attempts, then %zu)", before,
               after);
}

/* CACHE-2: after the TTL expires, the next request goes upstream again. */
static void
CACHE_2_request_after_ttl_goes_upstream(struct conf_ctx *ctx)
{
    require_short_ttl(ctx);
    const char *token = conf_token(ctx);
    conf_require_model_list(ctx, conf_get_models(ctx, token));
    conf_sleep_ms(profile(ctx)->cache_ttl_ms + TTL_MARGIN_MS);
    size_t before = conf_attempts(ctx, token, 1);
    const struct conf_response *again = conf_get_models(ctx, token);
    conf_check(ctx, again, conf_is_model_list(ctx, again),
               "the request after the TTL got %s, not the list", conf_describe(ctx, again));
    size_t after = conf_attempts(ctx, token, before + 1);
    conf_check(ctx, NULL, after == before + 1,
               "the request after the TTL did not go upstream (%zu attempts, then %zu)", before,
               after);
}

/* CACHE-3 core: a request failing with @p copies of @p step is followed by one that must
 * go upstream. */
static void
check_failure_not_cached(struct conf_ctx *ctx, const char *what, const char *step, unsigned copies)
{
    const char *token = conf_token(ctx);
    size_t queued = conf_queue(ctx, token, "models", conf_repeat_steps(ctx, step, copies));
    const struct conf_response *failed = conf_get_models(ctx, token);
    /* Judged by shape: a 200 HTML page is a failure that reached the caller (RETRY-2's
     * business), and caching it is this requirement's. */
    conf_assume(ctx, !conf_is_model_list(ctx, failed),
                "a list came back although the upstream failed more often than the profile "
                "allows attempts (see RETRY-3), nothing to judge");
    conf_burn_leftovers(ctx, token, "models", queued);
    size_t before = conf_attempts(ctx, token, queued);
    const struct conf_response *next = conf_get_models(ctx, token);
    size_t after = conf_attempts(ctx, token, before + 1);
    conf_check(ctx, next, after == before + 1,
               "after a %s, the next request did not go upstream (the failure was cached; it "
               "got %s)",
               what, conf_describe(ctx, next));
    /* It went upstream: an answer that is still no list is HTTP-6's business. */
    conf_assume(ctx, conf_is_model_list(ctx, next),
                "the next request went upstream but got %s, not a list (see HTTP-6)",
                conf_describe(ctx, next));
}

/* CACHE-3: failures are never cached: 500. */
static void
CACHE_3_upstream_500_is_not_cached(struct conf_ctx *ctx)
{
    check_failure_not_cached(ctx, "upstream 500", "{\"status\":500}", enough_failures(ctx));
}

/* CACHE-3: failures are never cached: HTML. */
static void
CACHE_3_html_answer_is_not_cached(struct conf_ctx *ctx)
{
    check_failure_not_cached(ctx, "HTML answer", "{\"html\":\"captcha\"}", enough_failures(ctx));
}

/* CACHE-3: failures are never cached: 401. */
static void
CACHE_3_upstream_401_is_not_cached(struct conf_ctx *ctx)
{
    check_failure_not_cached(ctx, "upstream 401", "{\"status\":401}", enough_failures(ctx));
}

/* CACHE-3: failures are never cached: 429. */
static void
CACHE_3_upstream_429_is_not_cached(struct conf_ctx *ctx)
{
    check_failure_not_cached(ctx, "upstream 429", "{\"status\":429}", enough_failures(ctx));
}

/* CACHE-3: failures are never cached: network error. */
static void
CACHE_3_network_error_is_not_cached(struct conf_ctx *ctx)
{
    /* Twice as many as attempts: an HTTP client may silently resend a request once when
     * a reused connection closes without an answer. */
    check_failure_not_cached(ctx, "dropped connection", "{\"drop\":true}",
                             2 * enough_failures(ctx));
}

/* CACHE-4: concurrent requests that all miss the cache cause one upstream request. */
static void
CACHE_4_concurrent_misses_cause_one_upstream_request(struct conf_ctx *ctx)
{
    enum { CALLERS = 6 };
    const char *token = conf_token(ctx);
    /* A slow first answer keeps every caller waiting on the same miss. */
    conf_queue(ctx, token, "models", "[{\"ok\":true,\"delay_ms\":600}]");
    const char *headers[] = {conf_bearer(ctx, token), NULL};
    const char *url = conf_str(ctx, "%s%s", conf_target(ctx)->proxy_url, conf_api(ctx, "/models"));
    struct conf_request reqs[CALLERS];
    for (int i = 0; i < CALLERS; i++)
        reqs[i] = (struct conf_request){.method = "GET", .url = url, .headers = headers};
    const struct conf_response *r = conf_send_many(ctx, reqs, CALLERS);
    for (int i = 0; i < CALLERS; i++) {
        conf_check(ctx, &r[i], r[i].status == 200, "caller %d got %ld", i + 1, r[i].status);
        conf_check(ctx, &r[i], same_body(&r[0], &r[i]), "caller %d got a different list", i + 1);
    }
    size_t n = conf_attempts(ctx, token, 1);
    conf_check(ctx, NULL, n <= 1, "%d concurrent misses caused %zu upstream requests", CALLERS, n);
}

/* CACHE-5: chat completions are never cached. */
static void
CACHE_5_chat_completions_are_never_cached(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const char *body = conf_chat_body(ctx, "the same question twice");
    conf_assert_status(ctx, conf_post_chat(ctx, token, body), 200);
    conf_assert_status(ctx, conf_post_chat(ctx, token, body), 200);
    conf_assert_attempts(ctx, token, 2);
}

static void
require_stale_grace(struct conf_ctx *ctx)
{
    require_short_ttl(ctx);
    conf_assume(ctx, profile(ctx)->stale_grace_ms > 0,
                "the profile declares no stale grace (declare CACHE-6 absent if the proxy has "
                "none)");
    conf_runnable(ctx, profile(ctx)->stale_grace_ms >= 1000,
                  "the profile's stale grace (%lld ms) is too short to test: run the proxy "
                  "with a grace of 1 s or more and set \"stale_grace_ms\"",
                  (long long)profile(ctx)->stale_grace_ms);
    conf_runnable(ctx, profile(ctx)->stale_grace_ms <= LONGEST_WAIT_MS,
                  "the profile's stale grace (%lld ms) is too long to wait for: run the proxy "
                  "with a grace of at most %d ms and set \"stale_grace_ms\"",
                  (long long)profile(ctx)->stale_grace_ms, LONGEST_WAIT_MS);
}

/* Fills the cache for @p token, waits past its TTL (within the grace) and queues a failing
 * refresh. @return the first answer. */
static const struct conf_response *
expire_then_fail_refresh(struct conf_ctx *ctx, const char *token, int64_t wait_ms,
                         const char *steps, size_t *queued)
{
    const struct conf_response *first = conf_get_models(ctx, token);
    conf_require_model_list(ctx, first);
    conf_get_models(ctx, token);
    conf_assume(ctx, conf_attempts(ctx, token, 1) == 1,
                "the list is not cached (see CACHE-1), nothing to judge");
    conf_sleep_ms(wait_ms);
    *queued = conf_queue(ctx, token, "models", steps);
    return first;
}

/* CACHE-6: when a refresh after expiry fails, the last good list is served, marked stale. */
static void
CACHE_6_stale_list_served_when_refresh_fails(struct conf_ctx *ctx)
{
    require_stale_grace(ctx);
    const char *token = conf_token(ctx);
    size_t queued;
    const struct conf_response *first =
        expire_then_fail_refresh(ctx, token, profile(ctx)->cache_ttl_ms + 300,
                                 failing_steps(ctx, "{\"status\":500}"), &queued);
    const struct conf_response *r = conf_get_models(ctx, token);
    conf_assume(ctx, conf_attempts(ctx, token, 2) >= 2,
                "the expired list was not refreshed (see CACHE-2), nothing to judge");
    conf_check(ctx, r, r->status == 200 && same_body(first, r),
               "a failed refresh within the grace did not serve the last good list");
    const char *name = profile(ctx)->stale_header;
    const char *mark = conf_response_header(r, name);
    conf_check(ctx, r, conf_contains_nocase(mark, "stale"),
               "the stale list is not marked (expected a %s header containing \"stale\")", name);
    conf_burn_leftovers(ctx, token, "models", queued);
}

/* CACHE-6: the grace time is bounded: past TTL + grace a failed refresh is an error. */
static void
CACHE_6_stale_serving_is_bounded_by_grace(struct conf_ctx *ctx)
{
    require_stale_grace(ctx);
    const char *token = conf_token(ctx);
    size_t queued;
    int64_t wait = profile(ctx)->cache_ttl_ms + profile(ctx)->stale_grace_ms + TTL_MARGIN_MS;
    expire_then_fail_refresh(ctx, token, wait, failing_steps(ctx, "{\"status\":500}"), &queued);
    const struct conf_response *r = conf_get_models(ctx, token);
    conf_assume(ctx, conf_attempts(ctx, token, 2) >= 2,
                "the expired list was not refreshed (see CACHE-2), nothing to judge");
    conf_check(ctx, r, !conf_is_model_list(ctx, r),
               "a list older than TTL + grace was served when the refresh failed");
}

/* CACHE-6: a 401 on refresh is relayed and evicts the entry. */
static void
CACHE_6_401_on_refresh_is_relayed_and_evicts(struct conf_ctx *ctx)
{
    require_stale_grace(ctx);
    const char *token = conf_token(ctx);
    size_t queued;
    expire_then_fail_refresh(ctx, token, profile(ctx)->cache_ttl_ms + 300,
                             failing_steps(ctx, "{\"status\":401}"), &queued);
    const struct conf_response *r = conf_get_models(ctx, token);
    size_t n = conf_attempts(ctx, token, 2);
    conf_assume(ctx, n >= 2, "the expired list was not refreshed (see CACHE-2), nothing to judge");
    conf_assume(ctx, n == 2, "the upstream 401 was retried (see AUTH-4), nothing to judge");
    conf_check(ctx, r, r->status == 401, "a 401 on refresh gave %ld, not 401", r->status);
    conf_burn_leftovers(ctx, token, "models", queued);
    conf_queue(ctx, token, "models", failing_steps(ctx, "{\"status\":500}"));
    r = conf_get_models(ctx, token);
    conf_check(ctx, r, !conf_is_model_list(ctx, r),
               "after a 401 on refresh, a failing refresh still served the old list");
}

static size_t
require_cache_bound(struct conf_ctx *ctx)
{
    size_t max = profile(ctx)->cache_max_entries;
    conf_check(ctx, NULL, !conf_profile_none(profile(ctx), CONF_NONE_CACHE_BOUND),
               "the profile declares the model-list cache unbounded "
               "(\"cache_max_entries\": \"none\")");
    conf_runnable(ctx, max > 0,
                  "the profile does not give the cache bound: set \"cache_max_entries\"");
    conf_runnable(ctx, max <= 200,
                  "the profile's cache bound (%zu) is too large to fill: run the proxy with a "
                  "bound of at most 200 and set \"cache_max_entries\"",
                  max);
    require_short_ttl(ctx);
    return max;
}

/* Fetches the list for @p token; requires that it went upstream when @p fresh. */
static void
fetch(struct conf_ctx *ctx, const char *token, bool fresh)
{
    conf_require_model_list(ctx, conf_get_models(ctx, token));
    if (fresh)
        conf_assume(ctx, conf_attempts(ctx, token, 1) == 1,
                    "a new credential was not fetched upstream (see AUTH-5), nothing to judge");
}

/* The whole test must run within one TTL, or expiry rather than eviction explains it. */
static void
require_within_ttl(struct conf_ctx *ctx, int64_t started_ms)
{
    int64_t took = qk_now_ms() - started_ms;
    conf_observable(ctx, took < profile(ctx)->cache_ttl_ms * 3 / 4,
                    "filling the cache took %lld ms, too close to the TTL to tell eviction from "
                    "expiry",
                    (long long)took);
}

/* CACHE-7: the cache is bounded: filling it with other credentials evicts the oldest. */
static void
CACHE_7_cache_is_bounded(struct conf_ctx *ctx)
{
    size_t max = require_cache_bound(ctx);
    int64_t started = qk_now_ms();
    const char *oldest = conf_token(ctx);
    fetch(ctx, oldest, true);
    for (size_t i = 0; i < max; i++)
        fetch(ctx, conf_token(ctx), i == 0);
    fetch(ctx, oldest, false);
    size_t n = conf_attempts(ctx, oldest, 2);
    require_within_ttl(ctx, started);
    conf_check(ctx, NULL, n == 2,
               "after %zu other credentials, the oldest entry was still cached "
               "(cache_max_entries %zu)",
               max, max);
}

/* CACHE-7: the entry evicted is the least recently used one. */
static void
CACHE_7_eviction_is_least_recently_used(struct conf_ctx *ctx)
{
    size_t max = require_cache_bound(ctx);
    conf_assume(ctx, max >= 2, "cache_max_entries %zu is too small to order", max);
    int64_t started = qk_now_ms();
    const char *kept = conf_token(ctx);
    const char *victim = conf_token(ctx);
    fetch(ctx, kept, true);
    fetch(ctx, victim, true);
    for (size_t i = 2; i < max; i++)
        fetch(ctx, conf_token(ctx), false);
    fetch(ctx, kept, false); /* a hit: "kept" becomes the most recent */
    conf_assume(ctx, conf_attempts(ctx, kept, 1) == 1,
                "the list is not cached (see CACHE-1), nothing to judge");
    fetch(ctx, conf_token(ctx), true); /* one more credential evicts the LRU: "victim" */
    fetch(ctx, kept, false);
    fetch(ctx, victim, false);
    size_t kept_n = conf_attempts(ctx, kept, 1);
    size_t victim_n = conf_attempts(ctx, victim, 2);
    require_within_ttl(ctx, started);
    conf_check(ctx, NULL, kept_n == 1, "a recently used entry was evicted (%zu upstream requests)",
               kept_n);
    conf_check(ctx, NULL, victim_n == 2,
               "the least recently used entry was not evicted (%zu upstream requests)", victim_n);
}

static const struct CMUnitTest cache_tests[] = {
    CONF_TEST(CACHE_1, CACHE_1_second_request_within_ttl_served_from_cache),
    CONF_TEST(CACHE_2, CACHE_2_request_after_ttl_goes_upstream),
    CONF_TEST(CACHE_3, CACHE_3_upstream_500_is_not_cached),
    CONF_TEST(CACHE_3, CACHE_3_html_answer_is_not_cached),
    CONF_TEST(CACHE_3, CACHE_3_upstream_401_is_not_cached),
    CONF_TEST(CACHE_3, CACHE_3_upstream_429_is_not_cached),
    CONF_TEST(CACHE_3, CACHE_3_network_error_is_not_cached),
    CONF_TEST(CACHE_4, CACHE_4_concurrent_misses_cause_one_upstream_request),
    CONF_TEST(CACHE_5, CACHE_5_chat_completions_are_never_cached),
    CONF_TEST(CACHE_6, CACHE_6_stale_list_served_when_refresh_fails),
    CONF_TEST(CACHE_6, CACHE_6_stale_serving_is_bounded_by_grace),
    CONF_TEST(CACHE_6, CACHE_6_401_on_refresh_is_relayed_and_evicts),
    CONF_TEST(CACHE_7, CACHE_7_cache_is_bounded),
    CONF_TEST(CACHE_7, CACHE_7_eviction_is_least_recently_used),
};

CONF_GROUP(cache, cache_tests);
