/*
 * ERR-1..5: request validation, relayed and produced errors, routing, limits, and
 * gateway failures.
 */
#include "conf_groups.h"

#include <stdlib.h>
#include <string.h>

static const struct conf_profile *
profile(struct conf_ctx *ctx)
{
    return &conf_target(ctx)->profile;
}

/* Posts @p body with a fresh token; requires 400, the OpenAI error shape and no upstream. */
static void
check_rejected(struct conf_ctx *ctx, const char *what, const char *body)
{
    const char *token = conf_token(ctx);
    const struct conf_response *r = conf_post_chat(ctx, token, body);
    conf_check(ctx, r, r->status == 400, "%s: expected 400, got %ld", what, r->status);
    conf_assert_openai_error(ctx, r);
    size_t n = conf_upstream_requests(ctx, token, 0);
    conf_check(ctx, r, n == 0, "%s was sent upstream (%zu upstream requests)", what, n);
}

/* ERR-1: malformed JSON gets 400 with an OpenAI-style error and no upstream request. */
static void
ERR_1_malformed_json_gets_400_no_upstream(struct conf_ctx *ctx)
{
    check_rejected(ctx, "truncated JSON", "{\"model\":\"x\",\"messages\":[");
    check_rejected(ctx, "not JSON", "model=qwen&messages=hello");
    check_rejected(ctx, "an empty body", "");
    check_rejected(ctx, "a JSON array", "[{\"role\":\"user\",\"content\":\"hi\"}]");
}

/* ERR-1: a missing model gets 400 with no upstream request. */
static void
ERR_1_missing_model_gets_400_no_upstream(struct conf_ctx *ctx)
{
    check_rejected(ctx, "a body without model",
                   "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
}

/* ERR-1: missing, empty or non-array messages get 400 with no upstream request. */
static void
ERR_1_bad_messages_gets_400_no_upstream(struct conf_ctx *ctx)
{
    const char *model = conf_target(ctx)->model;
    check_rejected(ctx, "a body without messages", conf_str(ctx, "{\"model\":\"%s\"}", model));
    check_rejected(ctx, "empty messages",
                   conf_chat_body_of(ctx, &(struct conf_chat){.messages_json = "[]"}));
    check_rejected(ctx, "string messages",
                   conf_chat_body_of(ctx, &(struct conf_chat){.messages_json = "\"hi\""}));
    check_rejected(
        ctx, "object messages",
        conf_chat_body_of(ctx, &(struct conf_chat){.messages_json = "{\"role\":\"user\"}"}));
}

/* An upstream 400 that was retried is RETRY-4's failure; ERR-2 judges only relays. A body
 * a proxy may refuse itself (an unknown model) need not reach the upstream at all. */
static void
require_single_attempt(struct conf_ctx *ctx, const char *token, bool may_refuse_itself)
{
    size_t n = conf_attempts(ctx, token, 1);
    if (may_refuse_itself)
        conf_assume(ctx, n > 0,
                    "the proxy refused the body itself, without asking the "
                    "upstream: nothing was relayed");
    conf_check(ctx, NULL, n > 0,
               "the request never reached the upstream, so no upstream 400 was relayed");
    conf_assume(ctx, n == 1, "the upstream 400 was retried (%zu attempts, see RETRY-4)", n);
}

/* Queues failures that end with an attempt timing out, well before any deadline: fast
 * 500s, then answers slower than the attempt timeout (spares included, so a proxy that
 * retries too often still ends on a timeout). */
static void
queue_timeout_last(struct conf_ctx *ctx, const char *token, const char *route)
{
    const char *slow = conf_str(ctx, "{\"ok\":true,\"delay_ms\":%lld}",
                                (long long)(profile(ctx)->upstream_timeout_ms + 500));
    const char *steps = "[";
    for (unsigned i = 0; i < profile(ctx)->max_retries; i++)
        steps = conf_str(ctx, "%s{\"status\":500},", steps);
    conf_queue(ctx, token, route, conf_str(ctx, "%s%s,%s,%s]", steps, slow, slow, slow));
}

/* ERR-2: an upstream 400 reaches the caller as 400 with the upstream's message kept. */
static void
ERR_2_upstream_400_relayed_with_message(struct conf_ctx *ctx)
{
    conf_v1_only(ctx, "the v2 upstream refuses an unknown model in-band (HTTP 200, "
                      "success:false), not with a 400; ERR_2_scripted_400_message_is_kept runs");
    const char *token = conf_token(ctx);
    const char *body = conf_chat_body_of(
        ctx, &(struct conf_chat){.model = "conformance-no-such-model", .text = "hi"});
    const struct conf_response *r = conf_post_chat(ctx, token, body);
    require_single_attempt(ctx, token, true);
    conf_assert_status(ctx, r, 400);
    conf_check(ctx, r, strstr(r->body, "Model not found") != NULL,
               "the upstream's message (\"Model not found\") was not kept");
}

/* ERR-2: any upstream 400 message is kept (a scripted one). */
static void
ERR_2_scripted_400_message_is_kept(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const char *detail = conf_str(ctx, "conformance detail %s", token);
    conf_queue(
        ctx, token, "chat",
        conf_str(ctx, "[{\"status\":400,\"body\":\"{\\\"detail\\\":\\\"%s\\\"}\"}]", detail));
    const struct conf_response *r =
        conf_post_chat(ctx, token, conf_chat_body(ctx, "a scripted 400"));
    require_single_attempt(ctx, token, false);
    conf_assert_status(ctx, r, 400);
    conf_check(ctx, r, strstr(r->body, detail) != NULL,
               "the upstream's message (\"%s\") was not kept", detail);
}

/* A too-big chat body: valid JSON of exactly @p size bytes. */
static const char *
big_body(struct conf_ctx *ctx, size_t size)
{
    size_t fixed = strlen(conf_chat_body_of(ctx, &(struct conf_chat){.text = ""}));
    size_t fill = size > fixed ? size - fixed : 0;
    char *pad = conf_keep(ctx, malloc(fill + 1), free);
    memset(pad, 'x', fill);
    pad[fill] = '\0';
    return conf_chat_body_of(ctx, &(struct conf_chat){.text = pad});
}

/* Checks a produced error: application/json with an "error" object and message. */
static void
check_json_error(struct conf_ctx *ctx, const char *what, const struct conf_response *r)
{
    if (r->status < 400)
        return; /* not an error: other requirements judge that */
    print_error("    checking %s (HTTP %ld)\n", what, r->status);
    conf_assert_json_error(ctx, r);
}

/* ERR-3: every error the proxy produces is JSON: client-side errors. */
static void
ERR_3_client_errors_are_json(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const char *auth[] = {conf_bearer(ctx, token), "Content-Type: application/json", NULL};
    check_json_error(ctx, "missing Authorization",
                     conf_send(ctx, "GET", conf_api(ctx, "/models"), NULL, NULL));
    check_json_error(ctx, "invalid body", conf_post_chat(ctx, token, "{not json"));
    check_json_error(ctx, "unknown path",
                     conf_send(ctx, "GET", conf_api(ctx, "/conformance-nowhere"), auth, NULL));
    check_json_error(ctx, "wrong method",
                     conf_send(ctx, "DELETE", conf_api(ctx, "/models"), auth, NULL));
    size_t over = profile(ctx)->max_body + 1;
    if (over <= 16 * 1024 * 1024)
        check_json_error(ctx, "body over the limit",
                         conf_post_chat(ctx, token, big_body(ctx, over)));
    const char *revoked = conf_token(ctx);
    conf_revoke(ctx, revoked);
    check_json_error(ctx, "upstream 401", conf_get_models(ctx, revoked));
}

/* ERR-3: every error the proxy produces is JSON: gateway errors. */
static void
ERR_3_gateway_errors_are_json(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const char *step = "{\"status\":500}";
    const char *steps = "[";
    for (unsigned i = 0; i <= profile(ctx)->max_retries; i++)
        steps = conf_str(ctx, "%s%s%s", steps, i ? "," : "", step);
    conf_queue(ctx, token, "models", conf_str(ctx, "%s]", steps));
    check_json_error(ctx, "upstream failing every attempt", conf_get_models(ctx, token));
    if (profile(ctx)->upstream_timeout_ms <= 5000) {
        const char *slow = conf_token(ctx);
        queue_timeout_last(ctx, slow, "chat");
        check_json_error(ctx, "upstream timing out",
                         conf_post_chat(ctx, slow, conf_chat_body(ctx, "too slow")));
    }
    const struct conf_env *env = conf_target(ctx);
    if (env->unreachable_url[0]) {
        const char *t = conf_token(ctx);
        const char *headers[] = {conf_bearer(ctx, t), NULL};
        check_json_error(ctx, "upstream unreachable",
                         conf_send_ex(ctx, env->unreachable_url, "GET", conf_api(ctx, "/models"),
                                      headers, NULL, 0, 0));
    }
}

/* ERR-4: an unknown path gets 404. */
static void
ERR_4_unknown_path_gets_404(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const char *headers[] = {conf_bearer(ctx, token), NULL};
    const char *paths[] = {conf_api(ctx, "/conformance-nowhere"), "/conformance-nowhere"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        const struct conf_response *r = conf_send(ctx, "GET", paths[i], headers, NULL);
        conf_check(ctx, r, r->status == 404, "GET %s: expected 404, got %ld", paths[i], r->status);
    }
    conf_assert_no_upstream(ctx, token);
}

/* ERR-4: a wrong method gets 405 with an Allow header. */
static void
ERR_4_wrong_method_gets_405_with_allow(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const char *headers[] = {conf_bearer(ctx, token), "Content-Type: application/json", NULL};
    struct {
        const char *method, *route, *allowed;
    } cases[] = {
        {"DELETE", "/models", "GET"},
        {"POST", "/models", "GET"},
        {"GET", "/chat/completions", "POST"},
        {"PUT", "/chat/completions", "POST"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *body = strcmp(cases[i].method, "GET") == 0 ? NULL : "{}";
        const struct conf_response *r =
            conf_send(ctx, cases[i].method, conf_api(ctx, cases[i].route), headers, body);
        conf_check(ctx, r, r->status == 405, "%s %s: expected 405, got %ld", cases[i].method,
                   cases[i].route, r->status);
        const char *allow = conf_response_header(r, "Allow");
        conf_check(ctx, r, conf_contains_nocase(allow, cases[i].allowed),
                   "%s %s: 405 without an Allow header naming %s", cases[i].method, cases[i].route,
                   cases[i].allowed);
    }
    conf_assert_no_upstream(ctx, token);
}

/* ERR-4: a body over the limit gets 413 and is not sent upstream. */
static void
ERR_4_body_over_limit_gets_413_no_upstream(struct conf_ctx *ctx)
{
    size_t limit = profile(ctx)->max_body;
    conf_check(ctx, NULL, !conf_profile_none(profile(ctx), CONF_NONE_BODY_LIMIT),
               "the profile declares no request body limit (\"max_body\": \"none\"): ERR-4 "
               "requires 413 above one");
    conf_runnable(ctx, limit < 16 * 1024 * 1024,
                  "the profile's body limit (%zu bytes) is too large to send: run the proxy "
                  "with a limit under 16 MiB and set \"max_body\"",
                  limit);
    const char *token = conf_token(ctx);
    const struct conf_response *r = conf_post_chat(ctx, token, big_body(ctx, limit + 1));
    conf_assert_status(ctx, r, 413);
    conf_assert_no_upstream(ctx, token);
}

/* ERR-5: an unreachable upstream gives 502. */
static void
ERR_5_unreachable_upstream_gets_502(struct conf_ctx *ctx)
{
    const struct conf_env *env = conf_target(ctx);
    conf_runnable(ctx, env->unreachable_url[0] != '\0',
                  "no proxy with an unreachable upstream: start a second instance with an "
                  "upstream that refuses connections and pass --unreachable-proxy URL");
    const char *token = conf_token(ctx);
    const char *headers[] = {conf_bearer(ctx, token), "Content-Type: application/json", NULL};
    const struct conf_response *r = conf_send_ex(ctx, env->unreachable_url, "GET",
                                                 conf_api(ctx, "/models"), headers, NULL, 0, 0);
    conf_assert_status(ctx, r, 502);
    const char *body = conf_chat_body(ctx, "nobody is there");
    r = conf_send_ex(ctx, env->unreachable_url, "POST", conf_api(ctx, "/chat/completions"), headers,
                     body, strlen(body), 0);
    conf_assert_status(ctx, r, 502);
}

/* ERR-5: an upstream timeout gives 504. */
static void
ERR_5_upstream_timeout_gets_504(struct conf_ctx *ctx)
{
    int64_t timeout = profile(ctx)->upstream_timeout_ms;
    conf_check(ctx, NULL, !conf_profile_none(profile(ctx), CONF_NONE_ATTEMPT_TIMEOUT),
               "the profile declares no attempt timeout (\"upstream_timeout_ms\": \"none\"): "
               "ERR-5 requires 504 when the upstream does not answer in time");
    conf_runnable(ctx, timeout <= 5000,
                  "the profile's attempt timeout (%lld ms) is too long to wait for: run the "
                  "proxy with one of at most 5000 ms and set \"upstream_timeout_ms\"",
                  (long long)timeout);
    conf_runnable(ctx, profile(ctx)->deadline_ms == 0 || profile(ctx)->deadline_ms > timeout + 1000,
                  "the profile's deadline ends the request before an attempt can time out: "
                  "set \"deadline_ms\" over \"upstream_timeout_ms\" + 1000");
    const char *token = conf_token(ctx);
    queue_timeout_last(ctx, token, "chat");
    const struct conf_response *r =
        conf_post_chat(ctx, token, conf_chat_body(ctx, "a very slow upstream"));
    size_t n = conf_attempts(ctx, token, profile(ctx)->max_retries + 1);
    conf_assume(ctx, n >= profile(ctx)->max_retries + 1,
                "%zu attempts instead of %u (see RETRY-1), so none timed out", n,
                profile(ctx)->max_retries + 1);
    conf_assert_status(ctx, r, 504);
}

static const struct CMUnitTest errors_tests[] = {
    CONF_TEST(ERR_1, ERR_1_malformed_json_gets_400_no_upstream),
    CONF_TEST(ERR_1, ERR_1_missing_model_gets_400_no_upstream),
    CONF_TEST(ERR_1, ERR_1_bad_messages_gets_400_no_upstream),
    CONF_TEST(ERR_2, ERR_2_upstream_400_relayed_with_message),
    CONF_TEST(ERR_2, ERR_2_scripted_400_message_is_kept),
    CONF_TEST(ERR_3, ERR_3_client_errors_are_json),
    CONF_TEST(ERR_3, ERR_3_gateway_errors_are_json),
    CONF_TEST(ERR_4, ERR_4_unknown_path_gets_404),
    CONF_TEST(ERR_4, ERR_4_wrong_method_gets_405_with_allow),
    CONF_TEST(ERR_4, ERR_4_body_over_limit_gets_413_no_upstream),
    CONF_TEST(ERR_5, ERR_5_unreachable_upstream_gets_502),
    CONF_TEST(ERR_5, ERR_5_upstream_timeout_gets_504),
};

CONF_GROUP(errors, errors_tests);
