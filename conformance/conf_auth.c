/*
 * AUTH-1..6: who may use the proxy, and what credentials travel upstream.
 * The mock's journal is keyed by token; requests that carried no usable token are read
 * with the empty token.
 */
#include "conf_groups.h"

#include <string.h>
#include <strings.h>

#include "conf_text.h"

/* @return true when any request reached the upstream after @p since, whatever
 * credential it carried (a proxy may send its own): each is printed as evidence. */
static bool
upstream_request_seen(struct conf_ctx *ctx, struct conf_mark since, const char *token)
{
    /* The proxy answered already; give a forwarded request a moment to arrive. */
    conf_sleep_ms(100);
    bool seen = false;
    const cJSON *e;
    cJSON_ArrayForEach(e, conf_upstream_since(ctx, since))
    {
        char shown[160];
        seen = true;
        print_error("    upstream request: %s %s, Authorization: %s\n", conf_entry_method(e),
                    conf_entry_path(e),
                    conf_text_credential(shown, sizeof(shown),
                                         conf_entry_header(e, "Authorization"), token));
    }
    return seen;
}

/* AUTH-1: a request without Authorization gets 401 and causes no upstream request. */
static void
AUTH_1_missing_authorization_gets_401_no_upstream(struct conf_ctx *ctx)
{
    conf_judges_credentials(ctx);
    struct conf_mark since = conf_upstream_mark(ctx);
    const struct conf_response *r = conf_send(ctx, "GET", conf_api(ctx, "/models"), NULL, NULL);
    conf_assert_status(ctx, r, 401);
    conf_check(ctx, r, !upstream_request_seen(ctx, since, NULL),
               "GET models without Authorization caused an upstream request");
}

/* AUTH-1, chat route. */
static void
AUTH_1_chat_without_authorization_gets_401_no_upstream(struct conf_ctx *ctx)
{
    conf_judges_credentials(ctx);
    const char *headers[] = {"Content-Type: application/json", NULL};
    struct conf_mark since = conf_upstream_mark(ctx);
    const struct conf_response *r = conf_send(ctx, "POST", conf_api(ctx, "/chat/completions"),
                                              headers, conf_chat_body(ctx, "no credentials"));
    conf_assert_status(ctx, r, 401);
    conf_check(ctx, r, !upstream_request_seen(ctx, since, NULL),
               "a chat request without Authorization caused an upstream request");
}

/* AUTH-2: a non-Bearer scheme gets 401 and causes no upstream request. */
static void
AUTH_2_non_bearer_scheme_gets_401_no_upstream(struct conf_ctx *ctx)
{
    conf_judges_credentials(ctx);
    const char *token = conf_token(ctx);
    const char *schemes[] = {"Basic", "Token", "Bearerx"};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        const char *value = conf_str(ctx, "%s %s", schemes[i], token);
        const char *headers[] = {conf_str(ctx, "Authorization: %s", value), NULL};
        struct conf_mark since = conf_upstream_mark(ctx);
        const struct conf_response *r =
            conf_send(ctx, "GET", conf_api(ctx, "/models"), headers, NULL);
        conf_check(ctx, r, r->status == 401, "scheme \"%s\": expected 401, got %ld", schemes[i],
                   r->status);
        conf_check(ctx, r, !upstream_request_seen(ctx, since, token),
                   "scheme \"%s\" caused an upstream request", schemes[i]);
    }
}

/* AUTH-2: an empty token gets 401 and causes no upstream request. */
static void
AUTH_2_empty_token_gets_401_no_upstream(struct conf_ctx *ctx)
{
    conf_judges_credentials(ctx);
    struct {
        const char *line, *value;
    } cases[] = {
        {"Authorization: Bearer", "Bearer"},
        {"Authorization: Bearer    ", "Bearer    "},
        {"Authorization;", ""}, /* libcurl's way to send an empty value */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *headers[] = {cases[i].line, NULL};
        struct conf_mark since = conf_upstream_mark(ctx);
        const struct conf_response *r =
            conf_send(ctx, "GET", conf_api(ctx, "/models"), headers, NULL);
        conf_check(ctx, r, r->status == 401, "\"%s\": expected 401, got %ld", cases[i].line,
                   r->status);
        conf_check(ctx, r, !upstream_request_seen(ctx, since, NULL),
                   "\"%s\" caused an upstream request", cases[i].line);
    }
}

/* AUTH-2: the scheme name is case-insensitive ("bearer x" is valid). */
static void
AUTH_2_scheme_name_is_case_insensitive(struct conf_ctx *ctx)
{
    const char *schemes[] = {"bearer", "BEARER"};
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        const char *token = conf_token(ctx);
        const char *chat_headers[] = {conf_str(ctx, "Authorization: %s %s", schemes[i], token),
                                      "Content-Type: application/json", NULL};
        /* The chat route: a cached model list would prove nothing about the token. */
        const struct conf_response *r =
            conf_send(ctx, "POST", conf_api(ctx, "/chat/completions"), chat_headers,
                      conf_chat_body(ctx, "a lower-case scheme"));
        conf_check(ctx, r, r->status == 200, "scheme \"%s\": expected 200, got %ld", schemes[i],
                   r->status);
        conf_assert_attempts(ctx, token, 1);
    }
}

/* Every journal entry of @p token carries exactly one Authorization equal to @p expected,
 * or under v2 none and exactly one cookie `token` with the caller's token (AUTH-3). */
static void
check_authorization_on_every_attempt(struct conf_ctx *ctx, const char *token, const char *expected)
{
    const cJSON *entries = conf_journal_settled(ctx, token);
    conf_check(ctx, NULL, cJSON_GetArraySize(entries) > 0,
               "no upstream request carried the caller's token");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, entries)
    {
        i++;
        if (conf_dialect_v2(ctx) && conf_entry_credential_is(e, token, true))
            continue;
        const char *got = conf_entry_header(e, "Authorization");
        conf_check(ctx, NULL, conf_entry_header_count(e, "Authorization") == 1,
                   "attempt %d carried %zu Authorization headers%s", i,
                   conf_entry_header_count(e, "Authorization"),
                   conf_dialect_v2(ctx) ? " and not one cookie token=<token>" : "");
        conf_check(ctx, NULL, got && strcmp(got, expected) == 0,
                   "attempt %d: Authorization \"%s\", expected \"%s\"", i, got ? got : "(none)",
                   expected);
    }
}

/* AUTH-3: the caller's Authorization reaches the upstream unchanged, on every attempt
 * (models route). */
static void
AUTH_3_authorization_reaches_upstream_unchanged_on_models(struct conf_ctx *ctx)
{
    conf_judges_credentials(ctx);
    const char *token = conf_token(ctx);
    struct conf_mark since = conf_upstream_mark(ctx);
    conf_queue(ctx, token, "models", "[{\"status\":500},{\"ok\":true}]");
    conf_get_models(ctx, token);
    size_t n = conf_attempts(ctx, token, 2);
    const char *seen = conf_credential_seen(ctx, token, since);
    conf_check(ctx, NULL, !seen, "the upstream received %s instead of \"Bearer <token>\"",
               seen ? seen : "");
    conf_assume(ctx, n > 0, "a new credential got a list without an upstream request (see AUTH-5)");
    check_authorization_on_every_attempt(ctx, token, conf_str(ctx, "Bearer %s", token));
}

/* AUTH-3, chat route. */
static void
AUTH_3_authorization_reaches_upstream_unchanged_on_chat(struct conf_ctx *ctx)
{
    conf_judges_credentials(ctx);
    const char *token = conf_token(ctx);
    struct conf_mark since = conf_upstream_mark(ctx);
    conf_queue(ctx, token, "chat", "[{\"status\":500},{\"ok\":true}]");
    conf_post_chat(ctx, token, conf_chat_body(ctx, "authorization on every attempt"));
    conf_attempts(ctx, token, 2);
    const char *seen = conf_credential_seen(ctx, token, since);
    conf_check(ctx, NULL, !seen, "the upstream received %s instead of \"Bearer <token>\"",
               seen ? seen : "");
    check_authorization_on_every_attempt(ctx, token, conf_str(ctx, "Bearer %s", token));
}

/* AUTH-4: an upstream 401 reaches the caller as 401 after exactly one attempt. */
static void
AUTH_4_upstream_401_relayed_after_one_attempt(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "models", "[{\"status\":401},{\"ok\":true},{\"ok\":true}]");
    const struct conf_response *r = conf_get_models(ctx, token);
    conf_assume(ctx, conf_attempts(ctx, token, 1) > 0,
                "a new credential got a list without an upstream request (see AUTH-5)");
    conf_assert_status(ctx, r, 401);
    conf_assert_attempts(ctx, token, 1);
}

/* AUTH-4, chat route, with a token the upstream revoked. Under v2 the refusals are slow,
 * so that the chats a pool creates at once are seen in flight at once: one attempt. */
static void
AUTH_4_revoked_token_on_chat_relayed_after_one_attempt(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    conf_revoke_slow(ctx, token,
                     conf_dialect_is_v2(conf_target(ctx)->dialect) ? conf_slow_failure_ms(ctx) : 0);
    const struct conf_response *r =
        conf_post_chat(ctx, token, conf_chat_body(ctx, "revoked token"));
    conf_assert_status(ctx, r, 401);
    conf_assert_attempts(ctx, token, 1);
}

/* AUTH-5: a revoked token gets 401 even while another token's list is cached. */
static void
AUTH_5_revoked_token_gets_401_while_another_list_is_cached(struct conf_ctx *ctx)
{
    conf_judges_shared_cache(ctx);
    const char *good = conf_token(ctx);
    const char *revoked = conf_token(ctx);
    conf_require_model_list(ctx, conf_get_models(ctx, good));
    conf_revoke(ctx, revoked);
    const struct conf_response *r = conf_get_models(ctx, revoked);
    /* Any refusal will do here; that it is a 401 is AUTH-4's requirement. */
    conf_check(ctx, r, !conf_is_model_list(ctx, r) && r->status != 0,
               "a revoked token got a model list while another token's list was cached");
    conf_check(ctx, r, conf_attempts(ctx, revoked, 1) >= 1,
               "the revoked token was answered without asking the upstream");
}

/* AUTH-5: each credential's list comes from the upstream with that credential. */
static void
AUTH_5_each_credential_fetches_its_own_list(struct conf_ctx *ctx)
{
    conf_judges_shared_cache(ctx);
    const char *first = conf_token(ctx);
    const char *second = conf_token(ctx);
    conf_require_model_list(ctx, conf_get_models(ctx, first));
    conf_require_model_list(ctx, conf_get_models(ctx, second));
    size_t n = conf_attempts(ctx, second, 1);
    conf_check(ctx, NULL, n == 1,
               "a second credential was served without asking the upstream (%zu attempts)", n);
}

/* AUTH-6: hop-by-hop request headers and Proxy-Authorization are not forwarded. */
static void
AUTH_6_hop_by_hop_headers_not_forwarded(struct conf_ctx *ctx)
{
    conf_judges_credentials(ctx);
    const char *token = conf_token(ctx);
    const char *headers[] = {
        conf_bearer(ctx, token),
        "Connection: keep-alive, X-Conf-Hop",
        "X-Conf-Hop: must-not-travel",
        "Keep-Alive: timeout=77, max=7",
        "TE: conf-te-7",
        "Upgrade: conf-test/1",
        "Proxy-Authorization: Basic Y29uZjpzZWNyZXQ=",
        "Content-Type: application/json",
        NULL,
    };
    /* The chat route, never cached, always goes upstream. Every request after the mark is
     * judged, whatever credential it carried: that belongs to AUTH-3. */
    struct conf_mark since = conf_upstream_mark(ctx);
    conf_send(ctx, "POST", conf_api(ctx, "/chat/completions"), headers,
              conf_chat_body(ctx, "hop-by-hop headers"));
    conf_sleep_ms(100);
    const cJSON *upstream = conf_upstream_since(ctx, since);
    conf_assume(ctx, cJSON_GetArraySize(upstream) > 0,
                "the chat request did not reach the upstream (see HTTP-1), nothing to judge");
    /* A proxy's own HTTP client may send hop-by-hop headers of its own (its connection's
     * Keep-Alive); only the caller's distinctive values are evidence of forwarding. */
    const struct {
        const char *name, *caller_value;
    } dropped[] = {
        {"X-Conf-Hop", "must-not-travel"},
        {"Keep-Alive", "timeout=77, max=7"},
        {"TE", "conf-te-7"},
        {"Upgrade", "conf-test/1"},
        {"Proxy-Authorization", "Basic Y29uZjpzZWNyZXQ="},
    };
    const cJSON *e;
    cJSON_ArrayForEach(e, upstream)
    {
        for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++) {
            const char *v = conf_entry_header(e, dropped[i].name);
            conf_check(ctx, NULL, !conf_contains_nocase(v, dropped[i].caller_value),
                       "the caller's %s reached the upstream (\"%s\")", dropped[i].name,
                       v ? v : "");
        }
        const char *conn = conf_entry_header(e, "Connection");
        conf_check(ctx, NULL, !conf_contains_nocase(conn, "X-Conf-Hop"),
                   "the caller's Connection header reached the upstream (\"%s\")", conn);
    }
}

/* AUTH-6: every Connection header line names hop-by-hop headers, not only the first. */
static void
AUTH_6_second_connection_line_counts(struct conf_ctx *ctx)
{
    conf_judges_credentials(ctx);
    const char *token = conf_token(ctx);
    const char *path = conf_api(ctx, "/chat/completions");
    const char *body = conf_chat_body(ctx, "two Connection lines");
    const char *url = conf_target(ctx)->proxy_url;
    const char *host = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
    /* Raw bytes: a client library may merge the two lines into one. */
    const char *raw = conf_str(ctx,
                               "POST %s HTTP/1.1\r\nHost: %.*s\r\nAuthorization: Bearer %s\r\n"
                               "Content-Type: application/json\r\nConnection: close\r\n"
                               "Connection: X-Conf-Hop2\r\nX-Conf-Hop2: must-not-travel-2\r\n"
                               "Content-Length: %zu\r\n\r\n%s",
                               path, (int)strcspn(host, "/"), host, token, strlen(body), body);
    struct conf_mark since = conf_upstream_mark(ctx);
    conf_send_raw(ctx, token, "POST", path, raw, strlen(raw), NULL);
    conf_sleep_ms(100);
    const cJSON *upstream = conf_upstream_since(ctx, since);
    conf_assume(ctx, cJSON_GetArraySize(upstream) > 0,
                "the chat request did not reach the upstream (see HTTP-1), nothing to judge");
    const cJSON *e;
    cJSON_ArrayForEach(e, upstream)
    {
        const char *v = conf_entry_header(e, "X-Conf-Hop2");
        conf_check(ctx, NULL, !conf_contains_nocase(v, "must-not-travel-2"),
                   "X-Conf-Hop2, named in the request's second Connection header, reached the "
                   "upstream (\"%s\")",
                   v ? v : "");
    }
}

/* v2: the request's cookies carry no credential but the caller's: no cookie `token`, or
 * exactly one, with the caller's @p token (other cookies, such as the firewall's
 * `acw_tc`, are no credential). */
static bool
cookie_is_callers(const cJSON *e, const char *token)
{
    bool callers = false;
    size_t n = conf_entry_token_cookies(e, token, &callers);
    return n == 0 || (n == 1 && callers);
}

/* AUTH-6: the proxy adds no credentials of its own upstream. */
static void
AUTH_6_proxy_adds_no_credentials(struct conf_ctx *ctx)
{
    conf_judges_credentials(ctx);
    const char *token = conf_token(ctx);
    struct conf_mark since = conf_upstream_mark(ctx);
    conf_post_chat(ctx, token, conf_chat_body(ctx, "no extra credentials"));
    conf_sleep_ms(100);
    const cJSON *upstream = conf_upstream_since(ctx, since);
    conf_assume(ctx, cJSON_GetArraySize(upstream) > 0,
                "the chat request did not reach the upstream (see HTTP-1), nothing to judge");
    /* An altered caller's credential ("Bearer Bearer T") is AUTH-3's; here: a credential
     * that is not the caller's at all, a second one, or another kind of secret. */
    const cJSON *e;
    cJSON_ArrayForEach(e, upstream)
    {
        size_t n = conf_entry_header_count(e, "Authorization");
        const char *auth = conf_entry_header(e, "Authorization");
        char shown[160];
        conf_check(ctx, NULL, n <= 1, "the upstream received %zu Authorization headers", n);
        conf_check(ctx, NULL, !auth || strstr(auth, token),
                   "the upstream received the proxy's own credential %s instead of the caller's",
                   conf_text_credential(shown, sizeof(shown), auth, token));
        const char *own[] = {"Cookie", "Proxy-Authorization", "X-Api-Key", "Api-Key"};
        for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
            const char *v = conf_entry_header(e, own[i]);
            /* The v2 upstream reads the credential from cookie `token` too (its browser
             * sends only that): the caller's token there is the caller's credential. */
            if (v && i == 0 && conf_dialect_v2(ctx) && cookie_is_callers(e, token))
                continue;
            conf_check(ctx, NULL, v == NULL, "the proxy sent its own %s upstream", own[i]);
        }
    }
}

/* @return true when any response header named @p name holds @p value. */
static bool
response_header_holds(const struct conf_response *r, const char *name, const char *value)
{
    for (size_t i = 0; i < r->header_count; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0 &&
            conf_contains_nocase(r->headers[i].value, value))
            return true;
    }
    return false;
}

/* AUTH-6: hop-by-hop headers the upstream sends are not relayed back to the caller, on
 * either route. */
static void
AUTH_6_no_hop_by_hop_headers_in_response(struct conf_ctx *ctx)
{
    /* Distinctive values: a proxy's own server sends hop-by-hop headers of its own (Node.js
     * answers every keep-alive request with "Keep-Alive: timeout=5"), which are not the
     * upstream's relayed. */
    static const char steps[] =
        "[{\"ok\":true,\"headers\":{\"Connection\":\"X-Conf-Hop\",\"X-Conf-Hop\":\"conf-hop-7\","
        "\"Keep-Alive\":\"timeout=77, max=7\",\"Upgrade\":\"conf-up/7\","
        "\"Proxy-Authenticate\":\"Basic realm=conf-up-7\",\"Trailer\":\"X-Conf-Trailer\","
        "\"Proxy-Connection\":\"conf-pc-7\"}}]";
    const struct {
        const char *name, *upstream_value;
    } hop[] = {
        {"Keep-Alive", "timeout=77"},      {"Proxy-Authenticate", "conf-up-7"},
        {"Trailer", "X-Conf-Trailer"},     {"Upgrade", "conf-up/7"},
        {"Proxy-Connection", "conf-pc-7"}, {"X-Conf-Hop", "conf-hop-7"},
    };
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "models", steps);
    conf_queue(ctx, token, "chat", steps);
    const struct conf_response *answers[2] = {
        conf_get_models(ctx, token),
        conf_post_chat(ctx, token, conf_chat_body(ctx, "hop-by-hop")),
    };
    for (size_t a = 0; a < 2; a++) {
        const struct conf_response *r = answers[a];
        conf_assume(ctx, r->status == 200, "the %s route answered %s (see %s), nothing to judge",
                    a ? "chat" : "models", conf_describe(ctx, r), a ? "HTTP-1" : "HTTP-6");
        for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
            conf_check(ctx, r, !response_header_holds(r, hop[i].name, hop[i].upstream_value),
                       "the upstream's hop-by-hop header %s was relayed to the caller",
                       hop[i].name);
    }
}

static const struct CMUnitTest auth_tests[] = {
    CONF_TEST(AUTH_1, AUTH_1_missing_authorization_gets_401_no_upstream),
    CONF_TEST(AUTH_1, AUTH_1_chat_without_authorization_gets_401_no_upstream),
    CONF_TEST(AUTH_2, AUTH_2_non_bearer_scheme_gets_401_no_upstream),
    CONF_TEST(AUTH_2, AUTH_2_empty_token_gets_401_no_upstream),
    CONF_TEST(AUTH_2, AUTH_2_scheme_name_is_case_insensitive),
    CONF_TEST(AUTH_3, AUTH_3_authorization_reaches_upstream_unchanged_on_models),
    CONF_TEST(AUTH_3, AUTH_3_authorization_reaches_upstream_unchanged_on_chat),
    CONF_TEST(AUTH_4, AUTH_4_upstream_401_relayed_after_one_attempt),
    CONF_TEST(AUTH_4, AUTH_4_revoked_token_on_chat_relayed_after_one_attempt),
    CONF_TEST(AUTH_5, AUTH_5_revoked_token_gets_401_while_another_list_is_cached),
    CONF_TEST(AUTH_5, AUTH_5_each_credential_fetches_its_own_list),
    CONF_TEST(AUTH_6, AUTH_6_hop_by_hop_headers_not_forwarded),
    CONF_TEST(AUTH_6, AUTH_6_proxy_adds_no_credentials),
    CONF_TEST(AUTH_6, AUTH_6_no_hop_by_hop_headers_in_response),
    CONF_TEST(AUTH_6, AUTH_6_second_connection_line_counts),
};

CONF_GROUP(auth, auth_tests);
