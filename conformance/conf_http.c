/*
 * HTTP-1..5: what a successful answer looks like, request ids, CORS, and the OpenAI-style
 * /v1 aliases. The upstream's own answer (asked for directly) is the oracle for content.
 */
#include "conf_groups.h"

#include <pthread.h>
#include <time.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qwenkit/buf.h"

static const struct conf_profile *
profile(struct conf_ctx *ctx)
{
    return &conf_target(ctx)->profile;
}

static const char *
json_string(const cJSON *obj, const char *key)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

/* @return the first upstream attempt journaled for @p token, or NULL. */
static const cJSON *
first_attempt(struct conf_ctx *ctx, const char *token)
{
    return cJSON_GetArrayItem(conf_attempt_entries(ctx, conf_journal(ctx, token)), 0);
}

static const cJSON *
first_choice(const cJSON *completion)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(completion, "choices"), 0);
}

static bool
same_string(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* What the upstream answered: its model, text and finish_reason. */
struct upstream_answer {
    const char *model, *content, *finish_reason;
};

/* v1: the mock's non-stream answer to @p body, asked for directly. */
static struct upstream_answer
v1_answer(struct conf_ctx *ctx, const char *body)
{
    const struct conf_response *direct = conf_mock_direct_chat(ctx, conf_token(ctx), body);
    const cJSON *want = conf_json(ctx, direct);
    conf_check(ctx, direct, direct->status == 200 && want,
               "harness: the upstream itself did not answer the request");
    const cJSON *wc = first_choice(want);
    return (struct upstream_answer){
        .model = json_string(want, "model"),
        .content = json_string(cJSON_GetObjectItemCaseSensitive(wc, "message"), "content"),
        .finish_reason = json_string(wc, "finish_reason"),
    };
}

/* v2: what the mock produced for the proxy's own completion (its journal's `answer`); the
 * v2 stream names no model and ends with a finished frame, which is OpenAI's "stop". */
static struct upstream_answer
v2_answer(struct conf_ctx *ctx, const struct conf_response *r, const char *token)
{
    const cJSON *entry = conf_answered_completion(ctx, token);
    conf_check(ctx, r, entry != NULL,
               "no upstream completion of this request was answered (journal of %s)", token);
    return (struct upstream_answer){
        .model = conf_target(ctx)->model,
        .content = json_string(conf_entry_answer(entry), "text"),
        .finish_reason = "stop",
    };
}

/* Compares the proxy's completion @p r with what the upstream answered to @p body. */
static void
check_same_completion(struct conf_ctx *ctx, const struct conf_response *r, const char *body,
                      const char *token)
{
    conf_assert_status(ctx, r, 200);
    const char *ct = conf_response_header(r, "Content-Type");
    conf_check(ctx, r, conf_contains_nocase(ct, "application/json"),
               "a completion that is not application/json (%s)", ct ? ct : "none");
    const cJSON *got = conf_json(ctx, r);
    struct upstream_answer want =
        conf_dialect_v2(ctx) ? v2_answer(ctx, r, token) : v1_answer(ctx, body);
    conf_check(ctx, r, same_string(json_string(got, "object"), "chat.completion"),
               "\"object\" is not \"chat.completion\"");
    conf_check(ctx, r, cJSON_IsString(cJSON_GetObjectItemCaseSensitive(got, "id")),
               "\"id\" is missing");
    conf_check(ctx, r, cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(got, "created")),
               "\"created\" is missing");
    conf_check(ctx, r, same_string(json_string(got, "model"), want.model),
               "\"model\" differs from the upstream's (%s)", want.model);
    const cJSON *gc = first_choice(got);
    const cJSON *gm = cJSON_GetObjectItemCaseSensitive(gc, "message");
    conf_check(ctx, r, same_string(json_string(gm, "role"), "assistant"),
               "choices[0].message.role is not \"assistant\"");
    conf_check(ctx, r, same_string(json_string(gm, "content"), want.content),
               "choices[0].message.content differs from the upstream's: %s", want.content);
    conf_check(ctx, r, same_string(json_string(gc, "finish_reason"), want.finish_reason),
               "choices[0].finish_reason differs from the upstream's (%s)", want.finish_reason);
}

/* HTTP-1: a non-stream completion returns the upstream's chat.completion JSON. */
static void
HTTP_1_non_stream_completion_returns_upstream_json(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const char *body = conf_chat_body(ctx, conf_str(ctx, "Say hello to %s", token));
    check_same_completion(ctx, conf_post_chat(ctx, token, body), body, token);
    conf_assert_attempts(ctx, token, 1);
}

/* HTTP-1: a length-limited answer keeps the upstream's text and finish_reason. */
static void
HTTP_1_length_limited_completion_is_kept(struct conf_ctx *ctx)
{
    conf_v1_only(ctx, "the v2 upstream takes no max_tokens and never cuts an answer for length");
    const char *token = conf_token(ctx);
    const char *body =
        conf_chat_body_of(ctx, &(struct conf_chat){.text = conf_str(ctx, "count %s", token),
                                                   .stream = CONF_CHAT_STREAM_FALSE,
                                                   .extra_json = "\"max_tokens\":2"});
    const struct conf_response *r = conf_post_chat(ctx, token, body);
    const cJSON *sent =
        cJSON_GetArrayItem(conf_attempt_entries(ctx, conf_journal_settled(ctx, token)), 0);
    conf_assume(ctx, !sent || strstr(conf_entry_body(sent), "\"max_tokens\""),
                "the proxy did not pass max_tokens on (see HTTP-8), nothing to compare");
    check_same_completion(ctx, r, body, token);
}

/* HTTP-2: a caller's X-Request-Id is sent upstream and returned. */
static void
HTTP_2_request_id_is_forwarded_and_returned(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const char *rid = conf_str(ctx, "rid-%s", token);
    /* The chat route: no cache can answer it, so the id must travel upstream. */
    const char *headers[] = {conf_bearer(ctx, token), conf_str(ctx, "X-Request-Id: %s", rid),
                             "Content-Type: application/json", NULL};
    const struct conf_response *r = conf_send(ctx, "POST", conf_api(ctx, "/chat/completions"),
                                              headers, conf_chat_body(ctx, "a request id"));
    const char *back = conf_response_header(r, "X-Request-Id");
    conf_check(ctx, r, same_string(back, rid), "X-Request-Id not returned (got %s)",
               back ? back : "none");
    conf_check(ctx, r, conf_attempts(ctx, token, 1) == 1, "expected one upstream request");
    const char *up = conf_entry_header(first_attempt(ctx, token), "X-Request-Id");
    conf_check(ctx, r, same_string(up, rid), "X-Request-Id not sent upstream (got %s)",
               up ? up : "none");
}

/* HTTP-2: without one, the proxy generates an X-Request-Id, sends it and returns it. */
static void
HTTP_2_request_id_is_generated(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    const struct conf_response *r =
        conf_post_chat(ctx, token, conf_chat_body(ctx, "no request id"));
    const char *back = conf_response_header(r, "X-Request-Id");
    conf_check(ctx, r, back && back[0], "no X-Request-Id in the response");
    conf_check(ctx, r, conf_attempts(ctx, token, 1) == 1, "expected one upstream request");
    const char *up = conf_entry_header(first_attempt(ctx, token), "X-Request-Id");
    conf_check(ctx, r, same_string(up, back), "the upstream saw X-Request-Id %s, the caller %s",
               up ? up : "none", back);
}

static bool
file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    struct qk_buf text;
    qk_buf_init(&text, 64 * 1024 * 1024);
    char chunk[8192];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ok = qk_buf_append(&text, chunk, n) == QK_OK;
    fclose(f);
    bool found = strstr(qk_buf_ptr(&text), needle) != NULL;
    qk_buf_free(&text);
    return found;
}

/* HTTP-2: the request id appears in the proxy's log line. */
static void
HTTP_2_request_id_appears_in_log(struct conf_ctx *ctx)
{
    const char *log = conf_target(ctx)->proxy_log;
    conf_observable(ctx, log[0] != '\0',
                    "the proxy's log is not available: pass --proxy-log FILE (--spawn knows it)");
    const char *token = conf_token(ctx);
    const char *rid = conf_str(ctx, "rid-%s", token);
    const char *headers[] = {conf_bearer(ctx, token), conf_str(ctx, "X-Request-Id: %s", rid), NULL};
    conf_send(ctx, "GET", conf_api(ctx, "/models"), headers, NULL);
    bool found = false;
    for (int i = 0; i < 20 && !found; i++) {
        found = file_contains(log, rid);
        if (!found)
            conf_sleep_ms(50);
    }
    conf_check(ctx, NULL, found, "the request id %s is not in the proxy's log (%s)", rid, log);
}

/* The first configured origin, or an example one when any origin is allowed. */
static const char *
allowed_origin(struct conf_ctx *ctx)
{
    const char *list = profile(ctx)->cors_origins;
    if (strcmp(list, "*") == 0)
        return "https://conformance.example";
    size_t len = strcspn(list, ",");
    return conf_str(ctx, "%.*s", (int)len, list);
}

/* @return true when the comma-separated header value @p list has the token @p name (any
 * case, whitespace around items ignored), as Fetch parses Access-Control-Allow-*. */
static bool
list_has(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        p += strspn(p, " \t,");
        size_t len = strcspn(p, ",");
        size_t trimmed = len;
        while (trimmed > 0 && (p[trimmed - 1] == ' ' || p[trimmed - 1] == '\t'))
            trimmed--;
        if (trimmed == n && strncasecmp(p, name, n) == 0)
            return true;
        p += len;
    }
    return false;
}

static void
require_cors(struct conf_ctx *ctx)
{
    conf_assume(ctx, profile(ctx)->cors_origins[0] != '\0', "profile has no CORS origins");
}

/* HTTP-3: a CORS preflight from an allowed origin is answered. */
static void
HTTP_3_cors_preflight_is_answered(struct conf_ctx *ctx)
{
    require_cors(ctx);
    const char *origin = allowed_origin(ctx);
    const char *headers[] = {conf_str(ctx, "Origin: %s", origin),
                             "Access-Control-Request-Method: POST",
                             "Access-Control-Request-Headers: authorization, content-type", NULL};
    const struct conf_response *r =
        conf_send(ctx, "OPTIONS", conf_api(ctx, "/chat/completions"), headers, NULL);
    /* Judged as a browser does (Fetch, "CORS-preflight fetch"), for a request without
     * credentials mode "include": an ok status; the origin or "*"; POST is a safelisted
     * method, so Access-Control-Allow-Methods need not name it; "*" covers Content-Type
     * but never Authorization, which must be named. */
    conf_check(ctx, r, r->status >= 200 && r->status <= 299,
               "preflight answered %ld, expected an ok status (200-299)", r->status);
    const char *acao = conf_response_header(r, "Access-Control-Allow-Origin");
    conf_check(ctx, r, same_string(acao, origin) || same_string(acao, "*"),
               "Access-Control-Allow-Origin is %s, expected %s", acao ? acao : "absent", origin);
    const char *allowed = conf_response_header(r, "Access-Control-Allow-Headers");
    conf_check(ctx, r, list_has(allowed, "authorization"),
               "Access-Control-Allow-Headers (%s) does not name Authorization (\"*\" does not "
               "cover it)",
               allowed ? allowed : "absent");
    conf_check(ctx, r, list_has(allowed, "content-type") || list_has(allowed, "*"),
               "Access-Control-Allow-Headers (%s) does not allow Content-Type",
               allowed ? allowed : "absent");
    /* The actual request from that origin carries the header too. */
    const char *token = conf_token(ctx);
    const char *get_headers[] = {conf_bearer(ctx, token), conf_str(ctx, "Origin: %s", origin),
                                 NULL};
    r = conf_send(ctx, "GET", conf_api(ctx, "/models"), get_headers, NULL);
    acao = conf_response_header(r, "Access-Control-Allow-Origin");
    conf_check(ctx, r, same_string(acao, origin) || same_string(acao, "*"),
               "a GET from an allowed origin has no Access-Control-Allow-Origin");
}

/* HTTP-3: an origin outside the configured list is not allowed. */
static void
HTTP_3_other_origins_are_not_allowed(struct conf_ctx *ctx)
{
    require_cors(ctx);
    conf_assume(ctx, strstr(profile(ctx)->cors_origins, "*") == NULL,
                "profile allows every origin");
    const char *origin = "https://not-allowed.conformance.invalid";
    const char *headers[] = {conf_str(ctx, "Origin: %s", origin),
                             "Access-Control-Request-Method: POST", NULL};
    const struct conf_response *r =
        conf_send(ctx, "OPTIONS", conf_api(ctx, "/chat/completions"), headers, NULL);
    const char *acao = conf_response_header(r, "Access-Control-Allow-Origin");
    conf_check(ctx, r, !same_string(acao, origin) && !same_string(acao, "*"),
               "an origin outside the list was allowed (%s)", acao);
}

/* The models of @p data (from the proxy's answer @p r) are exactly the upstream's, by id:
 * the oracle is the mock's own list, asked for directly. */
static void
check_same_models(struct conf_ctx *ctx, const struct conf_response *r, const cJSON *data)
{
    const struct conf_response *direct = conf_mock_direct_models(ctx, conf_token(ctx));
    /* Either dialect's shape: v2 wraps the list in an envelope. */
    const cJSON *want = conf_model_array(conf_json(ctx, direct));
    conf_check(ctx, r, cJSON_GetArraySize(want) == cJSON_GetArraySize(data),
               "%d models listed, the upstream has %d", cJSON_GetArraySize(data),
               cJSON_GetArraySize(want));
    const cJSON *m;
    cJSON_ArrayForEach(m, want)
    {
        bool found = false;
        const cJSON *got;
        cJSON_ArrayForEach(got, data)
        {
            found = found || same_string(json_string(got, "id"), json_string(m, "id"));
        }
        conf_check(ctx, r, found, "the upstream's model %s is not listed", json_string(m, "id"));
    }
}

/* HTTP-6: GET PREFIX/models relays the upstream's list: 200, application/json, a "data"
 * array holding exactly the upstream's model ids. */
static void
HTTP_6_model_list_is_relayed(struct conf_ctx *ctx)
{
    const char *token = conf_token(ctx);
    /* Not conf_get_models(): a list one cache serves every credential (AUTH-5) is still a
     * relayed list. */
    const char *headers[] = {conf_bearer(ctx, token), NULL};
    const struct conf_response *r = conf_send(ctx, "GET", conf_api(ctx, "/models"), headers, NULL);
    conf_check(ctx, r, conf_is_model_list(ctx, r), "GET %s answered %s, not a JSON model list",
               conf_api(ctx, "/models"), conf_describe(ctx, r));
    check_same_models(ctx, r, cJSON_GetObjectItemCaseSensitive(conf_json(ctx, r), "data"));
}

/* ---- HTTP-7 ---- */

/* A stream read on a thread of its own, while the test goes on. Plain conf_http(): the
 * test's context is not shared with the thread. */
struct background_stream {
    struct conf_request req;
    struct conf_response resp;
    pthread_t thread;
    bool running; /* started and not joined yet */
};

/* Waits for the stream to end. Also the context's release function, so that a test that
 * ends early never frees what the thread still uses. */
static void
join_background_stream(struct background_stream *bg)
{
    if (bg->running)
        pthread_join(bg->thread, NULL);
    bg->running = false;
}

static void
release_background_stream(void *ptr)
{
    struct background_stream *bg = ptr;
    join_background_stream(bg);
    conf_response_clear(&bg->resp);
    free(bg);
}

static void *
run_background_stream(void *arg)
{
    struct background_stream *bg = arg;
    if (conf_http(&bg->req, &bg->resp) != QK_OK)
        bg->resp.status = -1;
    return NULL;
}

/* HTTP-7: while one caller's stream is slowly being relayed, another caller's request is
 * answered at once (a proxy that blocks on its upstream serves one caller at a time). */
static void
HTTP_7_slow_stream_does_not_delay_another_caller(struct conf_ctx *ctx)
{
    enum { PIECES = 6, PACE = 300, FAST_LIMIT_MS = 1000 };
    const char *slow = conf_token(ctx), *fast = conf_token(ctx);
    conf_queue(ctx, slow, "chat",
               conf_str(ctx, "[{\"stream\":{\"chunks\":%d,\"chunk_delay_ms\":%d}}]", PIECES, PACE));
    const char *stream_body =
        conf_chat_body_of(ctx, &(struct conf_chat){.text = "a slow answer",
                                                   .stream = CONF_CHAT_STREAM_TRUE,
                                                   .extra_json = "\"incremental_output\":true"});
    const char *headers[] = {conf_bearer(ctx, slow), "Content-Type: application/json", NULL};
    struct background_stream *bg =
        conf_keep(ctx, calloc(1, sizeof(*bg)), release_background_stream);
    bg->req = (struct conf_request){
        .method = "POST",
        .url =
            conf_str(ctx, "%s%s", conf_target(ctx)->proxy_url, conf_api(ctx, "/chat/completions")),
        .headers = headers,
        .body = stream_body,
        .body_len = strlen(stream_body),
        .timeout_ms = 10000,
    };
    conf_observable(ctx, !conf_target(ctx)->profile.upstream_credential[0],
                    "two callers at once cannot be told apart upstream when the proxy sends one "
                    "credential of its own (\"upstream_credential\")");
    conf_note_token(ctx, slow);
    conf_note_request(ctx, "POST", conf_api(ctx, "/chat/completions"), stream_body,
                      strlen(stream_body));
    bg->running = pthread_create(&bg->thread, NULL, run_background_stream, bg) == 0;
    conf_check(ctx, NULL, bg->running, "harness: cannot start a thread");
    /* Let the stream begin: its first pieces are on their way. */
    conf_sleep_ms(PACE + PACE / 2);
    const struct conf_response *r =
        conf_post_chat(ctx, fast, conf_chat_body(ctx, "meanwhile, another caller"));
    int64_t fast_ms = r->done_ms - r->sent_ms;
    join_background_stream(bg);
    conf_note_answered(ctx, &bg->resp, bg->resp.status > 0);
    int64_t stream_end = bg->resp.done_ms;
    long stream_status = bg->resp.status;
    conf_assume(ctx, stream_status == 200,
                "the slow stream itself failed (HTTP %ld; see SSE-1), nothing to judge",
                stream_status);
    conf_assume(ctx, r->status == 200, "the other caller's request failed (%s; see HTTP-1)",
                conf_describe(ctx, r));
    int64_t margin = stream_end - r->done_ms;
    conf_check(ctx, r, fast_ms <= FAST_LIMIT_MS && margin >= PACE,
               "a chat request sent while another caller's stream was running took %lld ms and "
               "was answered %lld ms %s that stream ended: the proxy served the callers one "
               "after the other",
               (long long)fast_ms, (long long)(margin < 0 ? -margin : margin),
               margin < 0 ? "after" : "before");
}

/* ---- HTTP-8 ---- */

/* HTTP-8: every field of the caller's body reaches the upstream unchanged, unknown ones
 * included; the proxy may add only incremental_output (and what the profile declares). */
static void
check_body_fidelity(struct conf_ctx *ctx, bool stream)
{
    const char *token = conf_token(ctx);
    const char *body = conf_chat_body_of(
        ctx, &(struct conf_chat){
                 .messages_json = "[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                                  "{\"role\":\"user\",\"content\":\"fidelity \\u00e9\\u54c8\"}]",
                 .stream = stream ? CONF_CHAT_STREAM_TRUE : CONF_CHAT_STREAM_FALSE,
                 .extra_json = "\"temperature\":0.3,\"top_p\":0.9,\"max_tokens\":50,"
                               "\"presence_penalty\":0.5,\"user\":\"conf-user\","
                               "\"x_conf_extra\":{\"nested\":[1,\"two\",null,true],\"n\":1.5}",
             });
    conf_post_chat(ctx, token, body);
    conf_check(ctx, NULL, conf_attempts(ctx, token, 1) >= 1,
               "no upstream request carried the caller's token");
    const cJSON *sent =
        conf_json(ctx, &(struct conf_response){.body = (char *)body, .body_len = strlen(body)});
    const char *up_text = conf_entry_body(first_attempt(ctx, token));
    cJSON *up = cJSON_Parse(up_text);
    conf_keep(ctx, up ? up : cJSON_CreateNull(), (void (*)(void *))cJSON_Delete);
    conf_check(ctx, NULL, cJSON_IsObject(up), "the body sent upstream is not a JSON object: %.200s",
               up_text);
    const cJSON *field;
    cJSON_ArrayForEach(field, sent)
    {
        const cJSON *got = cJSON_GetObjectItemCaseSensitive(up, field->string);
        char *want_text = cJSON_PrintUnformatted(field);
        char *got_text = got ? cJSON_PrintUnformatted(got) : NULL;
        conf_keep(ctx, want_text, free);
        if (got_text)
            conf_keep(ctx, got_text, free);
        conf_check(ctx, NULL, got && cJSON_Compare(field, got, true),
                   "%s request: \"%s\" reached the upstream as %s, the caller sent %s",
                   stream ? "stream" : "non-stream", field->string, got_text ? got_text : "nothing",
                   want_text);
    }
    cJSON_ArrayForEach(field, up)
    {
        bool allowed = cJSON_HasObjectItem(sent, field->string) ||
                       strcmp(field->string, "incremental_output") == 0 ||
                       conf_profile_adds_field(&conf_target(ctx)->profile, field->string);
        conf_check(ctx, NULL, allowed,
                   "%s request: the proxy added \"%s\" to the body (not allowed by SPEC or "
                   "profile \"upstream_added_fields\")",
                   stream ? "stream" : "non-stream", field->string);
    }
}

/* The v2 upstream takes a body of its own, which the proxy builds. */
#define HTTP_8_V1_ONLY(ctx)                                                                        \
    conf_v1_only(ctx, "the v2 upstream takes a body of its own shape, not the caller's; V2-7 "     \
                      "judges what of the caller's body must reach it")

static void
HTTP_8_body_fields_reach_the_upstream_unchanged(struct conf_ctx *ctx)
{
    HTTP_8_V1_ONLY(ctx);
    check_body_fidelity(ctx, false);
}

static void
HTTP_8_stream_body_fields_reach_the_upstream_unchanged(struct conf_ctx *ctx)
{
    HTTP_8_V1_ONLY(ctx);
    check_body_fidelity(ctx, true);
}

/* ---- HTTP-9 ---- */

/* HTTP-9: the non-stream answer has what the OpenAI SDKs type: created in seconds, the
 * model, usage as prompt_tokens, completion_tokens and total_tokens. */
static void
HTTP_9_non_stream_answer_in_openai_terms(struct conf_ctx *ctx)
{
    enum { DAY_S = 86400 };
    const char *token = conf_token(ctx);
    const struct conf_response *r =
        conf_post_chat(ctx, token, conf_chat_body(ctx, "usage, please"));
    conf_assume(ctx, r->status == 200, "the completion failed (%s; see HTTP-1)",
                conf_describe(ctx, r));
    const cJSON *got = conf_json(ctx, r);
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(got, "created");
    double now = (double)time(NULL);
    conf_check(ctx, r,
               cJSON_IsNumber(created) && created->valuedouble > now - DAY_S &&
                   created->valuedouble < now + DAY_S,
               "\"created\" is not a time in seconds within a day of now (%.0f)",
               cJSON_IsNumber(created) ? created->valuedouble : -1.0);
    conf_check(ctx, r, same_string(json_string(got, "model"), conf_target(ctx)->model),
               "\"model\" is not the requested %s", conf_target(ctx)->model);
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(got, "usage");
    const char *names[] = {"prompt_tokens", "completion_tokens", "total_tokens"};
    double v[3];
    for (int i = 0; i < 3; i++) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(usage, names[i]);
        conf_check(ctx, r, cJSON_IsNumber(n) && n->valuedouble >= 0,
                   "usage.%s is missing or not a count", names[i]);
        v[i] = n->valuedouble;
    }
    conf_check(ctx, r, v[2] == v[0] + v[1],
               "usage.total_tokens (%.0f) is not prompt_tokens + completion_tokens (%.0f + %.0f)",
               v[2], v[0], v[1]);
}

static void
require_v1(struct conf_ctx *ctx)
{
    conf_assume(ctx, profile(ctx)->v1_prefix[0] != '\0', "profile has no /v1 aliases");
}

/* HTTP-4: /v1/models answers in OpenAI's list shape, with the upstream's models. */
static void
HTTP_4_v1_models_in_openai_list_shape(struct conf_ctx *ctx)
{
    require_v1(ctx);
    const char *token = conf_token(ctx);
    const char *headers[] = {conf_bearer(ctx, token), NULL};
    const struct conf_response *r =
        conf_send(ctx, "GET", conf_str(ctx, "%s/models", profile(ctx)->v1_prefix), headers, NULL);
    conf_assert_status(ctx, r, 200);
    const cJSON *list = conf_json(ctx, r);
    conf_check(ctx, r, same_string(json_string(list, "object"), "list"),
               "\"object\" is not \"list\"");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(list, "data");
    conf_check(ctx, r, cJSON_IsArray(data) && cJSON_GetArraySize(data) > 0,
               "\"data\" is not a non-empty array");
    const cJSON *m;
    cJSON_ArrayForEach(m, data)
    {
        conf_check(ctx, r, json_string(m, "id") != NULL, "a model has no string \"id\"");
        conf_check(ctx, r, same_string(json_string(m, "object"), "model"),
                   "model %s: \"object\" is not \"model\"", json_string(m, "id"));
        conf_check(ctx, r, cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, "created")),
                   "model %s: \"created\" is not a number", json_string(m, "id"));
        conf_check(ctx, r, json_string(m, "owned_by") != NULL,
                   "model %s: \"owned_by\" is not a string", json_string(m, "id"));
    }
    check_same_models(ctx, r, data);
}

/* Equal strings, or both absent. */
static bool
same_or_both_absent(const char *a, const char *b)
{
    return (!a && !b) || same_string(a, b);
}

/* HTTP-5: /v1/chat/completions is an alias of the /api route. */
static void
HTTP_5_v1_chat_completions_alias(struct conf_ctx *ctx)
{
    require_v1(ctx);
    const char *token = conf_token(ctx);
    const char *body = conf_chat_body(ctx, conf_str(ctx, "through v1 %s", token));
    const char *headers[] = {conf_bearer(ctx, token), "Content-Type: application/json", NULL};
    const struct conf_response *r = conf_send(
        ctx, "POST", conf_str(ctx, "%s/chat/completions", profile(ctx)->v1_prefix), headers, body);
    conf_assert_status(ctx, r, 200);
    /* The oracle is the proxy's own PREFIX route: an alias must answer as it does. */
    const struct conf_response *main_route = conf_post_chat(ctx, token, body);
    conf_check(ctx, main_route, main_route->status == 200,
               "the %s route itself failed, nothing to compare", profile(ctx)->api_prefix);
    const cJSON *got = conf_json(ctx, r), *want = conf_json(ctx, main_route);
    conf_check(ctx, r, same_or_both_absent(json_string(got, "object"), json_string(want, "object")),
               "\"object\" differs from the %s route's", profile(ctx)->api_prefix);
    conf_check(ctx, r, same_or_both_absent(json_string(got, "model"), json_string(want, "model")),
               "\"model\" differs from the %s route's", profile(ctx)->api_prefix);
    const cJSON *gm = cJSON_GetObjectItemCaseSensitive(first_choice(got), "message");
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(first_choice(want), "message");
    conf_check(ctx, r, same_or_both_absent(json_string(gm, "content"), json_string(wm, "content")),
               "the answer differs from the %s route's", profile(ctx)->api_prefix);
}

static const struct CMUnitTest http_tests[] = {
    CONF_TEST(HTTP_1, HTTP_1_non_stream_completion_returns_upstream_json),
    CONF_TEST(HTTP_1, HTTP_1_length_limited_completion_is_kept),
    CONF_TEST(HTTP_2, HTTP_2_request_id_is_forwarded_and_returned),
    CONF_TEST(HTTP_2, HTTP_2_request_id_is_generated),
    CONF_TEST(HTTP_2, HTTP_2_request_id_appears_in_log),
    CONF_TEST(HTTP_3, HTTP_3_cors_preflight_is_answered),
    CONF_TEST(HTTP_3, HTTP_3_other_origins_are_not_allowed),
    CONF_TEST(HTTP_4, HTTP_4_v1_models_in_openai_list_shape),
    CONF_TEST(HTTP_5, HTTP_5_v1_chat_completions_alias),
    CONF_TEST(HTTP_6, HTTP_6_model_list_is_relayed),
    CONF_TEST(HTTP_7, HTTP_7_slow_stream_does_not_delay_another_caller),
    CONF_TEST(HTTP_8, HTTP_8_body_fields_reach_the_upstream_unchanged),
    CONF_TEST(HTTP_8, HTTP_8_stream_body_fields_reach_the_upstream_unchanged),
    CONF_TEST(HTTP_9, HTTP_9_non_stream_answer_in_openai_terms),
};

CONF_GROUP(http, http_tests);
