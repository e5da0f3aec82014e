/*
 * RETRY-1..8: which upstream failures are retried, how often, how far apart, and what
 * each attempt sends. Attempt counts and timings come from the mock's journal.
 */
#include "conf_groups.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    TIMING_SLACK_MS = 5,  /* clock granularity allowed below a lower bound */
    TIMING_LATE_MS = 500, /* a busy 2-core machine may run this late */
};

static const struct conf_profile *
profile(struct conf_ctx *ctx)
{
    return &conf_target(ctx)->profile;
}

static void
check_completion(struct conf_ctx *ctx, const struct conf_response *r)
{
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(conf_json(ctx, r), "object");
    conf_check(ctx, r, cJSON_IsString(obj) && strcmp(obj->valuestring, "chat.completion") == 0,
               "the answer is not a chat.completion");
}

/* True when the answer is (or carries) one of the upstream's HTML pages: the mock's
 * captcha, firewall and gateway pages each contain one of these markers. The proxy's own
 * error format is ERR-3's business, not this one's. */
static bool
looks_like_html(const struct conf_response *r)
{
    static const char *const markers[] = {"x5secdata", "block_message", "alibaba-ga"};
    for (size_t i = 0; i < sizeof(markers) / sizeof(markers[0]); i++) {
        if (conf_contains_nocase(r->body, markers[i]))
            return true;
    }
    return false;
}

/* The answer is the upstream's success: 200 and no upstream HTML page. That it is a JSON
 * list (its shape) is HTTP-6's. */
static void
check_model_list(struct conf_ctx *ctx, const struct conf_response *r)
{
    conf_check(ctx, r, r->status == 200 && !looks_like_html(r),
               "the answer is %s, not the model list", conf_describe(ctx, r));
    conf_assume(ctx, conf_is_model_list(ctx, r),
                "the list came back as %s, not JSON (see HTTP-6), nothing more to judge",
                conf_describe(ctx, r));
}

/* Retries are judged on the chat route, which no cache can answer. */
static const struct conf_response *
chat(struct conf_ctx *ctx, const char *token)
{
    return conf_post_chat(ctx, token, conf_chat_body(ctx, "retries"));
}

/* RETRY-1: an upstream 500 is retried; the caller sees only the later success. */
static void
RETRY_1_upstream_500_then_success_returns_only_success(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "models", "[{\"status\":500},{\"ok\":true}]");
    const struct conf_response *r = conf_get_models(ctx, token);
    conf_assume(ctx, conf_attempts(ctx, token, 2) > 0,
                "a new credential got a list without an upstream request (see AUTH-5)");
    check_model_list(ctx, r);
    conf_assert_attempts(ctx, token, 2);
}

/* RETRY-1, chat route. */
static void
RETRY_1_chat_500_then_success_returns_only_success(struct conf_ctx *ctx)
{
    conf_runnable(ctx, conf_max_attempts(ctx) >= 3,
                  "the profile allows fewer than 2 retries (\"max_retries\")");
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", "[{\"status\":500},{\"status\":500},{\"ok\":true}]");
    const struct conf_response *r = conf_post_chat(ctx, token, conf_chat_body(ctx, "retry me"));
    conf_assert_status(ctx, r, 200);
    check_completion(ctx, r);
    conf_assert_attempts(ctx, token, 3);
}

/* RETRY-2 core: one HTML answer, then a good one. */
static void
check_html_retried(struct conf_ctx *ctx, const char *route, const char *html_step)
{
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, route, conf_str(ctx, "[%s,{\"ok\":true}]", html_step));
    bool chat = strcmp(route, "chat") == 0;
    const struct conf_response *r =
        chat ? conf_post_chat(ctx, token, conf_chat_body(ctx, "behind a firewall"))
             : conf_get_models(ctx, token);
    if (!chat)
        conf_assume(ctx, conf_attempts(ctx, token, 2) > 0,
                    "a new credential got a list without an upstream request (see AUTH-5)");
    conf_check(ctx, r, !looks_like_html(r), "an HTML answer reached the caller (%s)",
               conf_describe(ctx, r));
    if (chat)
        conf_assert_status(ctx, r, 200);
    else
        check_model_list(ctx, r);
    conf_assert_attempts(ctx, token, 2);
}

/* RETRY-2: a 200 text/html page (captcha) is a failure and is retried. */
static void
RETRY_2_html_captcha_200_is_retried(struct conf_ctx *ctx)
{
    check_html_retried(ctx, "chat", "{\"html\":\"captcha\"}");
}

/* RETRY-2: a 200 captcha page on the model-list route is retried, never relayed (nor
 * cached: CACHE-3). */
static void
RETRY_2_models_html_captcha_200_is_retried(struct conf_ctx *ctx)
{
    check_html_retried(ctx, "models", "{\"html\":\"captcha\"}");
}

/* RETRY-2: the firewall's 405 HTML page is retried (chat route). */
static void
RETRY_2_html_waf_405_is_retried(struct conf_ctx *ctx)
{
    check_html_retried(ctx, "chat", "{\"html\":\"waf\"}");
}

/* RETRY-2: when every attempt is HTML, no HTML reaches the caller. */
static void
RETRY_2_html_never_relayed_when_all_attempts_fail(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    /* More pages than attempts, so even a proxy that retries too often meets only HTML. */
    conf_queue(ctx, token, "chat",
               conf_repeat_steps(ctx, "{\"html\":\"gateway\"}", conf_max_attempts(ctx) + 2));
    const struct conf_response *r = chat(ctx, token);
    conf_check(ctx, r, !looks_like_html(r), "an HTML answer reached the caller");
    conf_check(ctx, r, r->status >= 500, "all-HTML attempts gave %ld, not an error", r->status);
}

/* RETRY-3: at most max_retries retries (4 attempts by default); then 502 naming the last
 * upstream status. */
static void
RETRY_3_gives_up_after_four_attempts(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    /* One step more than allowed: a proxy that retries too often would use it. */
    conf_queue(ctx, token, "chat",
               conf_repeat_steps(ctx, "{\"status\":500}", conf_max_attempts(ctx) + 1));
    const struct conf_response *r = chat(ctx, token);
    conf_assert_attempts(ctx, token, conf_max_attempts(ctx));
    conf_assert_status(ctx, r, 502);
    conf_check(ctx, r, strstr(r->body, "500") != NULL,
               "the 502 answer does not name the last upstream status (500)");
}

/* RETRY-3: connections the upstream closes without answering count as attempts too, even
 * on a pooled connection, where an HTTP client may quietly send the request again. */
static void
RETRY_3_dropped_connections_count_as_attempts(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    /* A good exchange first, so the proxy holds a pooled upstream connection. */
    const struct conf_response *warm = chat(ctx, token);
    conf_assume(ctx, warm->status == 200, "the warm-up request failed (HTTP %ld)", warm->status);
    conf_queue(ctx, token, "chat",
               conf_repeat_steps(ctx, "{\"drop\":true}", conf_max_attempts(ctx) + 2));
    const struct conf_response *r = chat(ctx, token);
    size_t want = 1 + conf_max_attempts(ctx); /* the warm-up, then every allowed attempt */
    size_t n = conf_attempts(ctx, token, want);
    conf_check(ctx, r, n <= want, "%zu upstream requests for %u allowed attempts", n - 1,
               conf_max_attempts(ctx));
    conf_assume(ctx, n == want, "dropped connections were not retried (RETRY-5)");
    conf_check(ctx, r, r->status == 502 || r->status == 504,
               "expected 502 (or 504) after the upstream dropped every attempt, got %ld",
               r->status);
}

/* Leaves the proxy holding a pooled upstream connection: one good chat exchange with a token
 * of its own, so the test's token has no journal entry and no cached model list yet. */
static void
warm_pooled_connection(struct conf_ctx *ctx)
{
    const struct conf_response *warm = chat(ctx, conf_token(ctx));
    conf_assume(ctx, warm->status == 200, "the warm-up request failed (HTTP %ld)", warm->status);
}

/* RETRY-3, models route: a GET has no body to rewind, so nothing keeps an HTTP client from
 * re-sending it on a dead pooled connection. */
static void
RETRY_3_models_dropped_connections_count_as_attempts(struct conf_ctx *ctx)
{
    warm_pooled_connection(ctx);
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "models",
               conf_repeat_steps(ctx, "{\"drop\":true}", conf_max_attempts(ctx) + 2));
    const struct conf_response *r = conf_get_models(ctx, token);
    size_t want = conf_max_attempts(ctx);
    size_t n = conf_attempts(ctx, token, want);
    conf_check(ctx, r, n <= want, "%zu upstream requests for %u allowed attempts", n,
               conf_max_attempts(ctx));
    conf_assume(ctx, n > 0, "a new credential got a list without an upstream request (see AUTH-5)");
    conf_assume(ctx, n == want, "dropped connections were not retried (RETRY-5)");
    conf_check(ctx, r, r->status == 502 || r->status == 504,
               "expected 502 (or 504) after the upstream dropped every attempt, got %ld",
               r->status);
}

/* RETRY-4: 400, 401, 403, 404 and 413 are never retried. */
static void
RETRY_4_client_errors_are_never_retried(struct conf_ctx *ctx)
{
    static const int statuses[] = {400, 401, 403, 404, 413};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        const char *token = conf_token(ctx);
        conf_queue(ctx, token, "chat",
                   conf_str(ctx, "[{\"status\":%d},{\"ok\":true}]", statuses[i]));
        const struct conf_response *r =
            conf_post_chat(ctx, token, conf_chat_body(ctx, "a client error"));
        size_t n = conf_attempts(ctx, token, 1);
        conf_check(ctx, r, n == 1, "upstream %d was retried (%zu attempts)", statuses[i], n);
    }
}

/* RETRY-5: 502, 503 and 504 are retried. */
static void
RETRY_5_gateway_statuses_are_retried(struct conf_ctx *ctx)
{
    static const int statuses[] = {502, 503, 504};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        const char *token = conf_token(ctx);
        conf_queue(ctx, token, "chat",
                   conf_str(ctx, "[{\"status\":%d},{\"ok\":true}]", statuses[i]));
        const struct conf_response *r = chat(ctx, token);
        size_t n = conf_attempts(ctx, token, 2);
        conf_check(ctx, r, r->status == 200 && n == 2,
                   "upstream %d then success: caller got %ld after %zu attempts", statuses[i],
                   r->status, n);
    }
}

/* RETRY-5: a connection closed without an answer is retried. */
static void
RETRY_5_dropped_connection_is_retried(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", "[{\"drop\":true},{\"ok\":true}]");
    const struct conf_response *r =
        conf_post_chat(ctx, token, conf_chat_body(ctx, "a dropped connection"));
    conf_assert_status(ctx, r, 200);
    conf_assert_attempts(ctx, token, 2);
}

/* RETRY-5: an attempt that times out is retried. */
static void
RETRY_5_timeout_is_retried(struct conf_ctx *ctx)
{
    int64_t timeout = profile(ctx)->upstream_timeout_ms;
    conf_assume(ctx, !conf_profile_none(profile(ctx), CONF_NONE_ATTEMPT_TIMEOUT),
                "the profile declares no attempt timeout, so none can be retried");
    conf_runnable(ctx, timeout <= 5000,
                  "the profile's attempt timeout (%lld ms) is too long to wait for: set "
                  "\"upstream_timeout_ms\" to at most 5000",
                  (long long)timeout);
    conf_runnable(ctx, profile(ctx)->deadline_ms == 0 || profile(ctx)->deadline_ms > timeout + 500,
                  "the profile's deadline leaves no time for a retry after a timeout: set "
                  "\"deadline_ms\" over \"upstream_timeout_ms\" + 500");
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat",
               conf_str(ctx, "[{\"ok\":true,\"delay_ms\":%lld},{\"ok\":true}]",
                        (long long)(timeout + 500)));
    const struct conf_response *r = chat(ctx, token);
    conf_assert_status(ctx, r, 200);
    conf_assert_attempts(ctx, token, 2);
}

/* Time between the end of attempt @p i and the start of attempt i+1 (0-based). */
static int64_t
gap_ms(const cJSON *entries, int i)
{
    const cJSON *a = cJSON_GetArrayItem(entries, i);
    const cJSON *b = cJSON_GetArrayItem(entries, i + 1);
    return conf_entry_received_ms(b) - conf_entry_finished_ms(a);
}

/* RETRY-6: attempts are spaced by a growing backoff: before retry n the proxy waits
 * between half and all of base * 2^(n-1). A busy machine only delays a retry, so the
 * bounds hold however loaded it is; but a first retry that came later than its backoff
 * allows can outlast the last one, and then "did not grow" may be noise: that round is
 * measured again, with a new token, up to BACKOFF_ROUNDS times. */
static void
check_backoff_grows(struct conf_ctx *ctx, const char *route)
{
    enum { BACKOFF_ROUNDS = 3 };
    int64_t base = profile(ctx)->retry_base_ms;
    conf_assume(ctx, base > 0, "profile retry_base_ms is 0: no backoff to measure");
    conf_runnable(ctx, conf_max_attempts(ctx) >= 3,
                  "the profile allows fewer than 2 retries: nothing grows (\"max_retries\")");
    for (int round = 1;; round++) {
        const char *token = conf_token(ctx);
        conf_queue(ctx, token, route,
                   conf_repeat_steps(ctx, "{\"status\":500}", conf_max_attempts(ctx)));
        if (strcmp(route, "chat") == 0)
            chat(ctx, token);
        else
            conf_get_models(ctx, token);
        size_t n = conf_attempts(ctx, token, conf_max_attempts(ctx));
        conf_assume(ctx, n >= 3, "only %zu attempts (see RETRY-1/RETRY-3), nothing to judge", n);
        const cJSON *entries = conf_attempt_entries(ctx, conf_journal(ctx, token));
        for (int i = 0; i + 1 < (int)n; i++) {
            int64_t nominal = base << i;
            int64_t gap = gap_ms(entries, i);
            conf_check(ctx, NULL, gap >= nominal / 2 - TIMING_SLACK_MS,
                       "retry %d came %lld ms after the failure; backoff is at least %lld ms",
                       i + 1, (long long)gap, (long long)(nominal / 2));
            conf_check(ctx, NULL, gap <= nominal + TIMING_LATE_MS,
                       "retry %d came %lld ms after the failure; backoff is at most %lld ms", i + 1,
                       (long long)gap, (long long)nominal);
        }
        int64_t first = gap_ms(entries, 0), last = gap_ms(entries, (int)n - 2);
        if (last > first)
            return;
        if (first > base && round < BACKOFF_ROUNDS)
            continue; /* the first retry came late: measure again */
        conf_check(ctx, NULL, false, "the backoff did not grow (%lld ms, then %lld ms; %d %s)",
                   (long long)first, (long long)last, round,
                   round == 1 ? "measurement" : "measurements");
        return;
    }
}

static void
RETRY_6_backoff_grows_between_attempts(struct conf_ctx *ctx)
{
    check_backoff_grows(ctx, "chat");
}

/* RETRY-6 on the model-list route. */
static void
RETRY_6_models_backoff_grows_between_attempts(struct conf_ctx *ctx)
{
    check_backoff_grows(ctx, "models");
}

/* RETRY-6: a 429 Retry-After within the cap is honoured before retrying. */
static void
RETRY_6_retry_after_within_cap_is_honoured(struct conf_ctx *ctx)
{
    conf_assume(ctx, profile(ctx)->retry_after_cap_ms >= 1000,
                "the profile does not honour a Retry-After of 1 s (\"retry_after_cap_ms\")");
    conf_runnable(ctx, profile(ctx)->deadline_ms == 0 || profile(ctx)->deadline_ms > 1500,
                  "the profile's deadline is too short to wait 1 s: set \"deadline_ms\" over "
                  "1500");
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", "[{\"status\":429,\"retry_after\":1},{\"ok\":true}]");
    const struct conf_response *r = chat(ctx, token);
    conf_assert_status(ctx, r, 200);
    conf_assert_attempts(ctx, token, 2);
    int64_t gap = gap_ms(conf_attempt_entries(ctx, conf_journal(ctx, token)), 0);
    conf_check(ctx, NULL, gap >= 1000 - 50, "the retry came %lld ms after \"Retry-After: 1\"",
               (long long)gap);
}

/* RETRY-6: a Retry-After over the cap is relayed to the caller with its Retry-After. */
static void
RETRY_6_retry_after_over_cap_is_relayed(struct conf_ctx *ctx)
{
    int64_t cap_s = profile(ctx)->retry_after_cap_ms / 1000;
    long over = (long)(cap_s * 10 + 30);
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat",
               conf_str(ctx, "[{\"status\":503,\"retry_after\":%ld},{\"ok\":true}]", over));
    const struct conf_response *r = chat(ctx, token);
    conf_assert_status(ctx, r, 503);
    const char *ra = conf_response_header(r, "Retry-After");
    conf_check(ctx, r, ra && strtol(ra, NULL, 10) == over,
               "expected Retry-After: %ld relayed, got %s", over, ra ? ra : "none");
    conf_assert_attempts(ctx, token, 1);
}

/* Two journal entries carry the same headers (names case-insensitive, any order). */
static bool
same_headers(const cJSON *a, const cJSON *b, const char **diff)
{
    if (conf_entry_header_total(a) != conf_entry_header_total(b)) {
        *diff = "a different number of headers";
        return false;
    }
    const char *name, *value;
    for (size_t i = 0; conf_entry_header_at(a, i, &name, &value); i++) {
        const char *other = name ? conf_entry_header(b, name) : NULL;
        if (!name || !value || !other || strcmp(value, other) != 0 ||
            conf_entry_header_count(a, name) != conf_entry_header_count(b, name)) {
            *diff = name ? name : "(unnamed header)";
            return false;
        }
    }
    return true;
}

static void
release_json(void *ptr)
{
    cJSON_Delete(ptr);
}

/* The texts of a v2 completion body's messages, in order (string contents, or the `text`
 * of content items), for comparing what of the caller's request it carries. */
static const char *
v2_texts(struct conf_ctx *ctx, const cJSON *body)
{
    const char *out = "";
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(body, "messages"))
    {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsString(content))
            out = conf_str(ctx, "%s[%s]", out, content->valuestring);
        const cJSON *item;
        const cJSON *items = cJSON_IsArray(content) ? content : NULL;
        cJSON_ArrayForEach(item, items)
        {
            const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "text"));
            out = conf_str(ctx, "%s[%s]", out, t ? t : "");
        }
    }
    return out;
}

static bool
same_member(const cJSON *a, const cJSON *b, const char *name)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, name);
    const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, name);
    return (!x && !y) || (x && y && cJSON_Compare(x, y, true));
}

/*
 * v2: two completions of one request carry the same request. Each attempt names its own
 * chat (chat_id in the query and the body, message ids, a timestamp, a Referer naming the
 * chat), so what must repeat is the caller's part: the model, the messages' texts, `stream`,
 * the thinking switch; the same header names, and the same Authorization, Content-Type and
 * X-Request-Id values.
 */
static bool
same_v2_request(struct conf_ctx *ctx, const cJSON *a, const cJSON *b, const char **diff)
{
    cJSON *ja = cJSON_Parse(conf_entry_body(a)), *jb = cJSON_Parse(conf_entry_body(b));
    conf_keep(ctx, ja ? ja : cJSON_CreateNull(), release_json);
    conf_keep(ctx, jb ? jb : cJSON_CreateNull(), release_json);
    const cJSON *fa = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ja, "messages"), 0), "feature_config");
    const cJSON *fb = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(jb, "messages"), 0), "feature_config");
    if (!same_member(ja, jb, "model"))
        *diff = "the model";
    else if (strcmp(v2_texts(ctx, ja), v2_texts(ctx, jb)) != 0)
        *diff = "the messages' texts";
    else if (!same_member(ja, jb, "stream"))
        *diff = "\"stream\"";
    else if (!same_member(fa, fb, "thinking_enabled"))
        *diff = "feature_config.thinking_enabled";
    if (*diff)
        return false;
    if (conf_entry_header_total(a) != conf_entry_header_total(b)) {
        *diff = "a different number of headers";
        return false;
    }
    const char *name, *value;
    for (size_t i = 0; conf_entry_header_at(a, i, &name, &value); i++) {
        if (!name || conf_entry_header_count(a, name) != conf_entry_header_count(b, name)) {
            *diff = name ? name : "(unnamed header)";
            return false;
        }
    }
    static const char *const kept[] = {"Authorization", "Content-Type", "X-Request-Id"};
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        const char *x = conf_entry_header(a, kept[i]), *y = conf_entry_header(b, kept[i]);
        if ((x || y) && !(x && y && strcmp(x, y) == 0)) {
            *diff = kept[i];
            return false;
        }
    }
    return true;
}

static void
check_attempts_identical(struct conf_ctx *ctx, const char *token)
{
    const cJSON *entries = conf_attempt_entries(ctx, conf_journal_settled(ctx, token));
    const cJSON *first = cJSON_GetArrayItem(entries, 0);
    int n = cJSON_GetArraySize(entries);
    bool v2_completions =
        conf_dialect_v2(ctx) && first &&
        conf_dialect_is_completion(conf_target(ctx)->dialect, conf_entry_path(first));
    for (int i = 1; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(entries, i);
        const char *diff = NULL;
        if (v2_completions) {
            bool same = same_v2_request(ctx, first, e, &diff);
            conf_check(ctx, NULL, same, "attempt %d sent another request than attempt 1 (%s)",
                       i + 1, diff ? diff : "?");
            continue;
        }
        conf_check(ctx, NULL, strcmp(conf_entry_body(first), conf_entry_body(e)) == 0,
                   "attempt %d sent a different body than attempt 1", i + 1);
        /* Called first: arguments are evaluated in no fixed order. */
        bool same = same_headers(first, e, &diff);
        conf_check(ctx, NULL, same, "attempt %d sent different headers than attempt 1 (%s)", i + 1,
                   diff ? diff : "?");
    }
}

/* A chat request whose body and headers a careless retry would change: non-ASCII text,
 * extra fields, an X-Request-Id. */
static void
send_rich_chat(struct conf_ctx *ctx, const char *token)
{
    const char *body = conf_chat_body_of(
        ctx, &(struct conf_chat){
                 .messages_json = conf_str(ctx,
                                           "[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                                           "{\"role\":\"user\",\"content\":"
                                           "\"h\\u00e9llo \\u4f60\\u597d %s\"}]",
                                           token),
                 .stream = CONF_CHAT_STREAM_FALSE,
                 .extra_json = conf_str(ctx,
                                        "\"temperature\":0.5,\"session_id\":\"%s\","
                                        "\"feature_config\":{\"thinking_enabled\":false}",
                                        token),
             });
    const char *headers[] = {conf_bearer(ctx, token), "Content-Type: application/json",
                             conf_str(ctx, "X-Request-Id: rid-%s", token), NULL};
    conf_send(ctx, "POST", conf_api(ctx, "/chat/completions"), headers, body);
}

/* RETRY-7: every attempt sends the same body and headers as the first (chat route). */
static void
RETRY_7_every_attempt_sends_same_body_and_headers(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", "[{\"status\":500},{\"status\":502},{\"ok\":true}]");
    send_rich_chat(ctx, token);
    size_t n = conf_attempts(ctx, token, 3);
    conf_assume(ctx, n >= 2, "the proxy did not retry (see RETRY-1), nothing to compare");
    check_attempts_identical(ctx, token);
}

/* RETRY-7, models route. */
static void
RETRY_7_models_retries_send_same_headers(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "models", "[{\"status\":500},{\"ok\":true}]");
    conf_get_models(ctx, token);
    size_t n = conf_attempts(ctx, token, 2);
    conf_assume(ctx, n >= 2, "the proxy did not retry (see RETRY-1), nothing to compare");
    check_attempts_identical(ctx, token);
}

/* RETRY-7 after connection failures: the upstream closes two connections without answering,
 * the first a pooled one, and every request that reached it is the same, whoever sent it
 * (the proxy's retry or its HTTP client on its own). */
static void
RETRY_7_retries_after_dropped_connections_send_same_request(struct conf_ctx *ctx)
{
    conf_runnable(ctx, conf_max_attempts(ctx) >= 2,
                  "the profile allows no retries (\"max_retries\"): nothing to compare");
    warm_pooled_connection(ctx);
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", "[{\"drop\":true},{\"drop\":true},{\"ok\":true}]");
    send_rich_chat(ctx, token);
    size_t n = conf_attempts(ctx, token, 3);
    conf_assume(ctx, n >= 2,
                "dropped connections were not retried (see RETRY-5), nothing to "
                "compare");
    check_attempts_identical(ctx, token);
}

/* RETRY-7 after connection failures, models route. */
static void
RETRY_7_models_retries_after_dropped_connections_send_same_headers(struct conf_ctx *ctx)
{
    conf_runnable(ctx, conf_max_attempts(ctx) >= 2,
                  "the profile allows no retries (\"max_retries\"): nothing to compare");
    warm_pooled_connection(ctx);
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "models", "[{\"drop\":true},{\"drop\":true},{\"ok\":true}]");
    conf_get_models(ctx, token);
    size_t n = conf_attempts(ctx, token, 3);
    conf_assume(ctx, n > 0, "a new credential got a list without an upstream request (see AUTH-5)");
    conf_assume(ctx, n >= 2,
                "dropped connections were not retried (see RETRY-5), nothing to "
                "compare");
    check_attempts_identical(ctx, token);
}

/* RETRY-8: the whole request has a deadline; retries stop when it is reached (504). */
static void
RETRY_8_deadline_stops_retries_with_504(struct conf_ctx *ctx)
{
    int64_t deadline = profile(ctx)->deadline_ms;
    int64_t timeout = profile(ctx)->upstream_timeout_ms;
    conf_assume(ctx, deadline > 0, "the profile declares no whole-request deadline");
    conf_runnable(ctx, deadline <= 10000,
                  "the profile's deadline (%lld ms) is too long to wait for: set "
                  "\"deadline_ms\" to at most 10000",
                  (long long)deadline);
    /* Slow failures, each under the attempt timeout, that together outlast the deadline.
     * The deadline is placed in the middle of the last attempt (backoffs counted at 3/4 of
     * their RETRY-6 maximum), far from any attempt's start or end, so that where it falls
     * does not depend on the backoff jitter. */
    unsigned n = conf_max_attempts(ctx);
    int64_t backoffs = profile(ctx)->retry_base_ms * (((int64_t)1 << (n - 1)) - 1) * 3 / 4;
    int64_t delay = n >= 2 ? (deadline - backoffs) * 2 / (2 * (int64_t)n - 1) : 0;
    conf_runnable(ctx, n >= 2 && n <= 16 && delay >= 200 && delay <= timeout * 8 / 10,
                  "the profile's attempts cannot outlast its deadline, each under the attempt "
                  "timeout: give \"deadline_ms\" room for every attempt");
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat",
               conf_repeat_steps(
                   ctx, conf_str(ctx, "{\"status\":500,\"delay_ms\":%lld}", (long long)delay),
                   conf_max_attempts(ctx)));
    const struct conf_response *r = chat(ctx, token);
    conf_assume(ctx, conf_attempts(ctx, token, 2) >= 2,
                "the proxy did not retry (see RETRY-1), so no deadline was reached");
    conf_assert_status(ctx, r, 504);
    int64_t took = r->done_ms - r->sent_ms;
    conf_check(ctx, r, took <= deadline + 1000,
               "the 504 came %lld ms after the request; the deadline is %lld ms", (long long)took,
               (long long)deadline);
}

static const struct CMUnitTest retry_tests[] = {
    CONF_TEST(RETRY_1, RETRY_1_upstream_500_then_success_returns_only_success),
    CONF_TEST(RETRY_1, RETRY_1_chat_500_then_success_returns_only_success),
    CONF_TEST(RETRY_2, RETRY_2_html_captcha_200_is_retried),
    CONF_TEST(RETRY_2, RETRY_2_models_html_captcha_200_is_retried),
    CONF_TEST(RETRY_2, RETRY_2_html_waf_405_is_retried),
    CONF_TEST(RETRY_2, RETRY_2_html_never_relayed_when_all_attempts_fail),
    CONF_TEST(RETRY_3, RETRY_3_gives_up_after_four_attempts),
    CONF_TEST(RETRY_3, RETRY_3_dropped_connections_count_as_attempts),
    CONF_TEST(RETRY_3, RETRY_3_models_dropped_connections_count_as_attempts),
    CONF_TEST(RETRY_4, RETRY_4_client_errors_are_never_retried),
    CONF_TEST(RETRY_5, RETRY_5_gateway_statuses_are_retried),
    CONF_TEST(RETRY_5, RETRY_5_dropped_connection_is_retried),
    CONF_TEST(RETRY_5, RETRY_5_timeout_is_retried),
    CONF_TEST(RETRY_6, RETRY_6_backoff_grows_between_attempts),
    CONF_TEST(RETRY_6, RETRY_6_models_backoff_grows_between_attempts),
    CONF_TEST(RETRY_6, RETRY_6_retry_after_within_cap_is_honoured),
    CONF_TEST(RETRY_6, RETRY_6_retry_after_over_cap_is_relayed),
    CONF_TEST(RETRY_7, RETRY_7_every_attempt_sends_same_body_and_headers),
    CONF_TEST(RETRY_7, RETRY_7_models_retries_send_same_headers),
    CONF_TEST(RETRY_7, RETRY_7_retries_after_dropped_connections_send_same_request),
    CONF_TEST(RETRY_7, RETRY_7_models_retries_after_dropped_connections_send_same_headers),
    CONF_TEST(RETRY_8, RETRY_8_deadline_stops_retries_with_504),
};

CONF_GROUP(retry, retry_tests);
