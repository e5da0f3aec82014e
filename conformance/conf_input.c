/*
 * INPUT-*: requests the proxy must refuse before anything goes upstream. They are sent as
 * raw bytes on a connection of their own (conf_send_raw()): a client library would refuse
 * to send a bare CR, merge two Host lines, or normalise the path. "Nothing upstream" is
 * read from the mock's journal of every credential after a mark, not of one token, since
 * a proxy that picks one of two Authorization lines asks the upstream with either.
 */
#include "conf_groups.h"

#include <stdio.h>
#include <string.h>

/* @return the Host header value the proxy's URL names ("127.0.0.1:PORT"). */
static const char *
host_of_target(struct conf_ctx *ctx)
{
    const char *url = conf_target(ctx)->proxy_url;
    const char *p = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
    return conf_str(ctx, "%.*s", (int)strcspn(p, "/"), p);
}

/*
 * @return a request "METHOD PATH HTTP/1.1" with a Host line (unless @p host is false),
 * the header lines @p lines (each ending in CRLF, or ""), `Connection: close`, and @p body
 * with its Content-Length (unless @p framing_in_lines: the lines carry it).
 */
static const char *
raw_request(struct conf_ctx *ctx, const char *method, const char *path, bool host,
            const char *lines, const char *body, bool framing_in_lines)
{
    const char *host_line = host ? conf_str(ctx, "Host: %s\r\n", host_of_target(ctx)) : "";
    const char *length =
        body && !framing_in_lines ? conf_str(ctx, "Content-Length: %zu\r\n", strlen(body)) : "";
    return conf_str(ctx, "%s %s HTTP/1.1\r\n%s%sConnection: close\r\n%s\r\n%s", method, path,
                    host_line, lines, length, body ? body : "");
}

/* Sends @p raw and checks the answer is a 400 JSON error and nothing went upstream. */
static void
expect_refused(struct conf_ctx *ctx, const char *token, const char *method, const char *path,
               const char *raw, const char *what)
{
    struct conf_mark since = conf_upstream_mark(ctx);
    const struct conf_response *r = conf_send_raw(ctx, token, method, path, raw, strlen(raw), NULL);
    conf_check(ctx, r, r->status == 400, "%s: expected 400, got %s", what,
               r->status ? conf_describe(ctx, r) : r->error);
    conf_assert_json_error(ctx, r);
    size_t n = (size_t)cJSON_GetArraySize(conf_upstream_since(ctx, since));
    conf_check(ctx, r, n == 0, "%s: %zu request(s) reached the upstream", what, n);
}

/* INPUT-1: two Authorization lines get 400 and neither credential reaches the upstream. */
static void
INPUT_1_duplicate_authorization_refused(struct conf_ctx *ctx)
{
    const char *first = conf_token(ctx), *second = conf_token(ctx);
    const char *path = conf_api(ctx, "/models");
    const char *lines =
        conf_str(ctx, "Authorization: Bearer %s\r\nAuthorization: Bearer %s\r\n", first, second);
    expect_refused(ctx, first, "GET", path, raw_request(ctx, "GET", path, true, lines, NULL, false),
                   "a model-list request with two Authorization headers");
    /* The same in one case-insensitive spelling each: header names are not case-sensitive. */
    lines =
        conf_str(ctx, "authorization: Bearer %s\r\nAUTHORIZATION: Bearer %s\r\n", first, second);
    const char *chat = conf_api(ctx, "/chat/completions");
    const char *body = conf_chat_body(ctx, "two credentials");
    expect_refused(ctx, first, "POST", chat,
                   raw_request(ctx, "POST", chat, true,
                               conf_str(ctx, "%sContent-Type: application/json\r\n", lines), body,
                               false),
                   "a chat request with two Authorization headers (different case)");
}

/* INPUT-1: two Host lines get 400, nothing upstream. */
static void
INPUT_1_duplicate_host_refused(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const char *path = conf_api(ctx, "/models");
    const char *lines =
        conf_str(ctx, "Host: %s\r\nHost: other.example\r\nAuthorization: Bearer %s\r\n",
                 host_of_target(ctx), token);
    expect_refused(ctx, token, "GET", path,
                   raw_request(ctx, "GET", path, false, lines, NULL, false),
                   "a model-list request with two Host headers");
}

/* INPUT-1: two Content-Length lines get 400 even when they agree, nothing upstream. */
static void
INPUT_1_duplicate_content_length_refused(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const char *path = conf_api(ctx, "/chat/completions");
    const char *body = conf_chat_body(ctx, "two lengths");
    const char *lines = conf_str(ctx,
                                 "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                                 "Content-Length: %zu\r\nContent-Length: %zu\r\n",
                                 token, strlen(body), strlen(body));
    expect_refused(ctx, token, "POST", path,
                   raw_request(ctx, "POST", path, true, lines, body, true),
                   "a chat request with two (equal) Content-Length headers");
}

/* INPUT-2: a bare CR, 0x01 or 0x7F in a header value gets 400, nothing upstream. */
static void
INPUT_2_control_characters_in_header_values_refused(struct conf_ctx *ctx)
{
    const struct {
        const char *what, *value;
    } cases[] = {
        {"a bare CR", "conf\rsplit: yes"},
        {"the byte 0x01", "conf\x01"
                          "ctl"},
        {"the byte 0x7F", "conf\x7f"
                          "del"},
    };
    const char *path = conf_api(ctx, "/models");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *token = conf_token(ctx);
        const char *lines =
            conf_str(ctx, "Authorization: Bearer %s\r\nX-Conf-Ctl: %s\r\n", token, cases[i].value);
        expect_refused(ctx, token, "GET", path,
                       raw_request(ctx, "GET", path, true, lines, NULL, false),
                       conf_str(ctx, "a header value with %s", cases[i].what));
    }
}

/* INPUT-3: %2F or %00 in the path is never routed: 404 or 400 JSON, nothing upstream. */
static void
INPUT_3_encoded_slash_or_nul_never_routed(struct conf_ctx *ctx)
{
    const char *prefix = conf_api(ctx, "");
    const struct {
        const char *method, *path;
    } cases[] = {
        {"GET", conf_str(ctx, "%s%%2Fmodels", prefix)},
        {"GET", conf_str(ctx, "%s%%2fmodels", prefix)},
        {"GET", conf_str(ctx, "%s/models%%00x", prefix)},
        {"POST", conf_str(ctx, "%s/chat%%2Fcompletions", prefix)},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *token = conf_token(ctx);
        bool post = strcmp(cases[i].method, "POST") == 0;
        const char *lines = conf_str(ctx, "Authorization: Bearer %s\r\n%s", token,
                                     post ? "Content-Type: application/json\r\n" : "");
        const char *raw = raw_request(ctx, cases[i].method, cases[i].path, true, lines,
                                      post ? conf_chat_body(ctx, "encoded path") : NULL, false);
        struct conf_mark since = conf_upstream_mark(ctx);
        const struct conf_response *r =
            conf_send_raw(ctx, token, cases[i].method, cases[i].path, raw, strlen(raw), NULL);
        conf_check(ctx, r, r->status == 404 || r->status == 400,
                   "%s %s: expected 404 or 400, got %s", cases[i].method, cases[i].path,
                   r->status ? conf_describe(ctx, r) : r->error);
        conf_assert_json_error(ctx, r);
        size_t n = (size_t)cJSON_GetArraySize(conf_upstream_since(ctx, since));
        conf_check(ctx, r, n == 0, "%s %s: %zu request(s) reached the upstream", cases[i].method,
                   cases[i].path, n);
    }
}

/* INPUT-4: HEAD on the model-list route is answered as GET, without a body. */
static void
INPUT_4_head_answered_as_get_without_body(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const char *path = conf_api(ctx, "/models");
    /* Not conf_get_models(): whether credentials share a list (AUTH-5) does not matter. */
    const char *bearer[] = {conf_bearer(ctx, token), NULL};
    conf_require_model_list(ctx, conf_send(ctx, "GET", path, bearer, NULL));
    const char *lines = conf_str(ctx, "Authorization: Bearer %s\r\n", token);
    const char *raw = raw_request(ctx, "HEAD", path, true, lines, NULL, false);
    struct conf_raw_outcome seen;
    const struct conf_response *r =
        conf_send_raw(ctx, token, "HEAD", path, raw, strlen(raw), &seen);
    conf_check(ctx, r, r->status == 200, "HEAD %s: expected 200 as for GET, got %s", path,
               r->status ? conf_describe(ctx, r) : r->error);
    const char *ctype = conf_response_header(r, "Content-Type");
    conf_check(ctx, r, conf_contains_nocase(ctype, "application/json"),
               "HEAD %s: Content-Type is %s, GET answers application/json", path,
               ctype ? ctype : "absent");
    conf_check(ctx, r, r->body_len == 0, "HEAD %s: %zu bytes of body after the header block", path,
               r->body_len);
    conf_check(ctx, r, seen.status_lines == 1, "HEAD %s: %zu status lines in the answer", path,
               seen.status_lines);
}

static const struct CMUnitTest input_tests[] = {
    CONF_TEST(INPUT_1, INPUT_1_duplicate_authorization_refused),
    CONF_TEST(INPUT_1, INPUT_1_duplicate_host_refused),
    CONF_TEST(INPUT_1, INPUT_1_duplicate_content_length_refused),
    CONF_TEST(INPUT_2, INPUT_2_control_characters_in_header_values_refused),
    CONF_TEST(INPUT_3, INPUT_3_encoded_slash_or_nul_never_routed),
    CONF_TEST(INPUT_4, INPUT_4_head_answered_as_get_without_body),
};

CONF_GROUP(input, input_tests);
