/*
 * End to end: the in-process proxy in front of the in-process mock upstream (qk_mock),
 * both on 127.0.0.1 with ephemeral ports; a libcurl client. Each test uses its own
 * random token, so the mock's journal for that token holds exactly that test's traffic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "qwenkit/buf.h"
#include "qwenkit/mock.h"
#include "qwenkit/proxy.h"

#include "models.h"
#include "testkit.h"

#define CHAT_BODY                                                                                  \
    "{\"model\":\"qwen-max-latest\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"

struct env {
    struct qk_mock *mock;
    struct qk_proxy *proxy;
    char mock_url[64];
    char proxy_url[64];
    uint16_t proxy_port;
};

/* One exchange with the proxy on @p port; @p hdrs is a NULL-terminated list of
 * "Name: value". */
static void
http(uint16_t port, const char *method, const char *path, const char *const *hdrs, const char *body,
     struct mc_resp *r)
{
    struct mc_req q = {
        .port = port, .method = method, .path = path, .body = body, .timeout_ms = 20000};
    for (size_t i = 0; hdrs && hdrs[i]; i++) {
        assert_true(i < MC_MAX_HEADERS);
        q.headers[i] = hdrs[i];
    }
    assert_int_equal(mc_request(&q, r), 0);
    assert_int_equal(r->rc, CURLE_OK);
}

static void
auth_header(const char *token, char out[96])
{
    snprintf(out, 96, "Authorization: Bearer %s", token);
}

/* How many upstream requests @p token caused, once @p expect of them had time to land
 * (and nothing of it is in flight) or a generous deadline passed. */
static int
attempts(struct env *e, const char *token, int expect)
{
    cJSON *j = mc_journal_settled(qk_mock_port(e->mock), token, expect, 3000);
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(j, "entries");
    assert_true(cJSON_IsArray(entries)); /* a journal, not an error answer */
    int n = cJSON_GetArraySize(entries);
    cJSON_Delete(j);
    return n;
}

static size_t
sink(char *p, size_t size, size_t n, void *ud)
{
    return qk_buf_append(ud, p, size * n) == QK_OK ? size * n : 0;
}

static void
script(struct env *e, const char *token, const char *route, const char *steps)
{
    char json[1024];
    snprintf(json, sizeof(json), "{\"token\":\"%s\",\"route\":\"%s\",\"steps\":%s}", token, route,
             steps);
    char err[128];
    assert_int_equal(qk_mock_load_scenarios(e->mock, json, strlen(json), err, sizeof(err)), QK_OK);
}

static void
assert_json_error(struct mc_resp *r, long status)
{
    assert_int_equal(r->status, status);
    assert_non_null(mc_header(r, "Content-Type"));
    assert_string_equal(mc_header(r, "Content-Type"), "application/json");
    cJSON *j = cJSON_Parse(r->body);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "message")));
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "type")));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(err, "param"));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(err, "code"));
    cJSON_Delete(j);
}

static int
setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    struct qk_mock_config mc;
    qk_mock_config_init(&mc);
    mc.port = 0;
    char err[256] = "";
    if (qk_mock_start(&mc, &e->mock, err, sizeof(err)) != QK_OK) {
        fprintf(stderr, "mock: %s\n", err);
        return -1;
    }
    snprintf(e->mock_url, sizeof(e->mock_url), "http://127.0.0.1:%u", qk_mock_port(e->mock));

    struct qk_proxy_config pc;
    qk_proxy_config_init(&pc);
    pc.port = 0;
    pc.upstream = e->mock_url;
    pc.retry_base_ms = 5;
    pc.cache_ttl_ms = 1000;
    pc.stale_grace_ms = 30000;
    pc.max_body = 4096;
    pc.log_format = QK_PROXY_LOG_OFF;
    if (qk_proxy_start(&pc, &e->proxy, err, sizeof(err)) != QK_OK) {
        fprintf(stderr, "proxy: %s\n", err);
        return -1;
    }
    e->proxy_port = qk_proxy_port(e->proxy);
    snprintf(e->proxy_url, sizeof(e->proxy_url), "http://127.0.0.1:%u", e->proxy_port);
    *state = e;
    return 0;
}

static int
teardown(void **state)
{
    struct env *e = *state;
    qk_proxy_stop(e->proxy);
    qk_mock_stop(e->mock);
    free(e);
    return 0;
}

/* AUTH-1/2: no, non-Bearer or empty credentials never reach the upstream. */
static void
auth_is_checked_before_any_upstream_call(void **state)
{
    struct env *e = *state;
    char tok[MC_TOKEN_MAX];
    const char *u;
    mc_new_token(tok, sizeof tok);
    u = "/api/models";
    struct mc_resp r;
    http(e->proxy_port, "GET", u, NULL, NULL, &r);
    assert_json_error(&r, 401);
    mc_resp_free(&r);
    char basic[96];
    snprintf(basic, sizeof(basic), "Authorization: Basic %s", tok);
    const char *h1[] = {basic, NULL};
    http(e->proxy_port, "GET", u, h1, NULL, &r);
    assert_json_error(&r, 401);
    mc_resp_free(&r);
    const char *h2[] = {"Authorization: Bearer ", NULL};
    u = "/api/chat/completions";
    http(e->proxy_port, "POST", u, h2, CHAT_BODY, &r);
    assert_json_error(&r, 401);
    mc_resp_free(&r);
    assert_int_equal(attempts(e, tok, 0), 0);
}

/* CACHE-1 + AUTH-5: cached per credential; the second request makes no upstream call. */
static void
model_list_is_cached_per_credential(void **state)
{
    struct env *e = *state;
    char a[MC_TOKEN_MAX], b[MC_TOKEN_MAX], ha[96], hb[96];
    const char *u;
    mc_new_token(a, sizeof a);
    mc_new_token(b, sizeof b);
    auth_header(a, ha);
    auth_header(b, hb);
    u = "/api/models";
    const char *h[] = {ha, NULL};
    struct mc_resp r1, r2, r3;
    http(e->proxy_port, "GET", u, h, NULL, &r1);
    assert_int_equal(r1.status, 200);
    assert_string_equal(mc_header(&r1, "X-Cache"), "MISS");
    http(e->proxy_port, "GET", u, h, NULL, &r2);
    assert_int_equal(r2.status, 200);
    assert_string_equal(mc_header(&r2, "X-Cache"), "HIT");
    assert_string_equal(r1.body, r2.body);
    assert_int_equal(attempts(e, a, 1), 1);

    /* Another credential, refused upstream, is not served A's list. */
    script(e, b, "models", "[{\"status\":401}]");
    const char *hb_list[] = {hb, NULL};
    http(e->proxy_port, "GET", u, hb_list, NULL, &r3);
    assert_json_error(&r3, 401);
    assert_int_equal(attempts(e, b, 1), 1);
    mc_resp_free(&r1);
    mc_resp_free(&r2);
    mc_resp_free(&r3);
}

/* HTTP-4: /v1/models is OpenAI's list shape. */
static void
v1_models_has_the_openai_shape(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], h[96];
    const char *u;
    mc_new_token(t, sizeof t);
    auth_header(t, h);
    u = "/v1/models";
    const char *hs[] = {h, NULL};
    struct mc_resp r;
    http(e->proxy_port, "GET", u, hs, NULL, &r);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "object")->valuestring, "list");
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "data"), 0);
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "id")));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(m, "object")->valuestring, "model");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, "created")));
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "owned_by")));
    cJSON_Delete(j);
    mc_resp_free(&r);
}

/* The /v1 list is converted from the upstream's once per cache entry, not on every hit:
 * a hit on a huge list would otherwise hold the one upstream thread. */
static void
v1_models_is_converted_once_per_entry(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], h[96];
    const char *u;
    mc_new_token(t, sizeof t);
    auth_header(t, h);
    u = "/v1/models";
    const char *hs[] = {h, NULL};
    unsigned long before = qp_models_openai_conversions();
    struct mc_resp first;
    http(e->proxy_port, "GET", u, hs, NULL, &first);
    assert_int_equal(first.status, 200);
    assert_string_equal(mc_header(&first, "X-Cache"), "MISS");
    for (int i = 0; i < 4; i++) {
        struct mc_resp r;
        http(e->proxy_port, "GET", u, hs, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(mc_header(&r, "X-Cache"), "HIT");
        assert_string_equal(r.body, first.body);
        mc_resp_free(&r);
    }
    assert_int_equal(qp_models_openai_conversions() - before, 1);
    mc_resp_free(&first);

    /* Concurrent misses of a flight share the one conversion too. */
    char t2[MC_TOKEN_MAX];
    mc_new_token(t2, sizeof t2);
    script(e, t2, "models", "[{\"delay_ms\":400}]");
    before = qp_models_openai_conversions();
    struct mc_req reqs[4];
    struct mc_resp resps[4];
    for (int i = 0; i < 4; i++)
        reqs[i] =
            (struct mc_req){.port = e->proxy_port, .path = u, .token = t2, .timeout_ms = 20000};
    assert_int_equal(mc_request_all(reqs, resps, 4), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(resps[i].rc, CURLE_OK);
        assert_int_equal(resps[i].status, 200);
        assert_non_null(strstr(resps[i].body, "\"object\":\"list\""));
        assert_string_equal(resps[i].body, resps[0].body);
    }
    for (int i = 0; i < 4; i++)
        mc_resp_free(&resps[i]);
    assert_int_equal(attempts(e, t2, 1), 1);
    assert_int_equal(qp_models_openai_conversions() - before, 1);
}

/* RETRY-1/2/7 + AUTH-3 + HTTP-2: failures are retried with the same request. */
static void
failures_are_retried_with_identical_requests(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], h[96];
    const char *u;
    mc_new_token(t, sizeof t);
    auth_header(t, h);
    script(e, t, "chat", "[{\"status\":500},{\"html\":\"captcha\"},{\"ok\":true}]");
    u = "/api/chat/completions";
    const char *hs[] = {h, "X-Request-Id: req-e2e-1", "Connection: X-Drop", "X-Drop: 1", NULL};
    struct mc_resp r;
    http(e->proxy_port, "POST", u, hs, CHAT_BODY, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(mc_header(&r, "X-Request-Id"), "req-e2e-1");
    cJSON *body = cJSON_Parse(r.body);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(body, "object")->valuestring,
                        "chat.completion");
    cJSON_Delete(body);
    mc_resp_free(&r);

    cJSON *j = mc_journal_settled(qk_mock_port(e->mock), t, 3, 3000);
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(j, "entries");
    assert_int_equal(cJSON_GetArraySize(entries), 3);
    const cJSON *entry = NULL;
    cJSON_ArrayForEach(entry, entries)
    {
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(entry, "body")->valuestring,
                            CHAT_BODY);
        bool saw_auth = false, saw_id = false;
        const cJSON *hd = NULL;
        cJSON_ArrayForEach(hd, cJSON_GetObjectItemCaseSensitive(entry, "headers"))
        {
            const char *n = cJSON_GetObjectItemCaseSensitive(hd, "name")->valuestring;
            const char *v = cJSON_GetObjectItemCaseSensitive(hd, "value")->valuestring;
            if (strcasecmp(n, "Authorization") == 0)
                saw_auth = strcmp(v, h + strlen("Authorization: ")) == 0;
            if (strcasecmp(n, "X-Request-Id") == 0)
                saw_id = strcmp(v, "req-e2e-1") == 0;
            assert_true(strcasecmp(n, "X-Drop") != 0);
            assert_true(strcasecmp(n, "Connection") != 0 || strcasecmp(v, "X-Drop") != 0);
        }
        assert_true(saw_auth);
        assert_true(saw_id);
    }
    cJSON_Delete(j);
}

/* RETRY-3: four attempts, then 502 naming the last status. */
static void
gives_up_after_four_attempts(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], h[96];
    const char *u;
    mc_new_token(t, sizeof t);
    auth_header(t, h);
    script(e, t, "chat",
           "[{\"status\":500},{\"status\":500},{\"status\":502},{\"status\":503},{\"ok\":true}]");
    u = "/api/chat/completions";
    const char *hs[] = {h, NULL};
    struct mc_resp r;
    http(e->proxy_port, "POST", u, hs, CHAT_BODY, &r);
    assert_json_error(&r, 502);
    assert_non_null(strstr(r.body, "503"));
    assert_int_equal(attempts(e, t, 4), 4);
    mc_resp_free(&r);
}

/* RETRY-3: when the upstream drops every connection, the first a pooled one, libcurl sends
 * no request of its own on either route: the journal holds exactly the attempts the proxy
 * counted, the number its answer (and its log line) gives. */
static void
dropped_connections_are_the_attempts_counted(void **state)
{
    struct env *e = *state;
    static const char *const routes[] = {"models", "chat"};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        char w[MC_TOKEN_MAX], t[MC_TOKEN_MAX], h[96];
        const char *u;
        const char *hs[] = {h, NULL};
        struct mc_resp r;
        bool models = strcmp(routes[i], "models") == 0;
        mc_new_token(w, sizeof w);
        auth_header(w, h);
        u = "/api/chat/completions";
        http(e->proxy_port, "POST", u, hs, CHAT_BODY, &r); /* leaves a pooled upstream connection */
        assert_int_equal(r.status, 200);
        mc_resp_free(&r);

        mc_new_token(t, sizeof t);
        auth_header(t, h);
        script(e, t, routes[i],
               "[{\"drop\":true},{\"drop\":true},{\"drop\":true},{\"drop\":true},"
               "{\"drop\":true},{\"drop\":true}]");
        u = models ? "/api/models" : "/api/chat/completions";
        http(e->proxy_port, models ? "GET" : "POST", u, hs, models ? NULL : CHAT_BODY, &r);
        assert_json_error(&r, 502);
        assert_non_null(strstr(r.body, "after 4 attempt(s)"));
        mc_resp_free(&r);
        assert_int_equal(attempts(e, t, 4), 4);
    }
}

/* RETRY-4 + ERR-2 + AUTH-4: client errors are relayed after one attempt. */
static void
client_errors_are_relayed_once(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], h[96];
    const char *u;
    mc_new_token(t, sizeof t);
    auth_header(t, h);
    u = "/api/chat/completions";
    const char *hs[] = {h, NULL};
    struct mc_resp r;
    http(e->proxy_port, "POST", u, hs,
         "{\"model\":\"no-such-model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r);
    assert_json_error(&r, 400);
    assert_non_null(strstr(r.body, "Model not found"));
    mc_resp_free(&r);
    assert_int_equal(attempts(e, t, 1), 1);

    script(e, t, "chat", "[{\"status\":401},{\"ok\":true}]");
    http(e->proxy_port, "POST", u, hs, CHAT_BODY, &r);
    assert_json_error(&r, 401);
    mc_resp_free(&r);
    assert_int_equal(attempts(e, t, 2), 2);
}

/* ERR-1: invalid bodies get 400 naming the field, without an upstream call. */
static void
invalid_bodies_never_go_upstream(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], h[96];
    const char *u;
    mc_new_token(t, sizeof t);
    auth_header(t, h);
    u = "/v1/chat/completions";
    const char *hs[] = {h, NULL};
    struct {
        const char *body;
        const char *param;
    } cases[] = {
        {"{not json", NULL},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "model"},
        {"{\"model\":\"qwen-max-latest\"}", "messages"},
        {"{\"model\":\"qwen-max-latest\",\"messages\":[]}", "messages"},
        {"{\"model\":\"qwen-max-latest\",\"messages\":\"hi\"}", "messages"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mc_resp r;
        http(e->proxy_port, "POST", u, hs, cases[i].body, &r);
        assert_json_error(&r, 400);
        cJSON *j = cJSON_Parse(r.body);
        const cJSON *p =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "param");
        if (cases[i].param)
            assert_string_equal(p->valuestring, cases[i].param);
        else
            assert_true(cJSON_IsNull(p));
        cJSON_Delete(j);
        mc_resp_free(&r);
    }
    assert_int_equal(attempts(e, t, 0), 0);
}

/* ERR-4: 404, 405 with Allow, 413. */
static void
routing_errors(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], h[96];
    const char *u;
    mc_new_token(t, sizeof t);
    auth_header(t, h);
    const char *hs[] = {h, NULL};
    struct mc_resp r;
    u = "/api/nothing";
    http(e->proxy_port, "GET", u, hs, NULL, &r);
    assert_json_error(&r, 404);
    mc_resp_free(&r);
    u = "/api/chat/completions";
    http(e->proxy_port, "GET", u, hs, NULL, &r);
    assert_json_error(&r, 405);
    assert_non_null(mc_header(&r, "Allow"));
    assert_non_null(strstr(mc_header(&r, "Allow"), "POST"));
    mc_resp_free(&r);
    char *big = malloc(8192);
    memset(big, 'a', 8191);
    big[8191] = '\0';
    http(e->proxy_port, "POST", u, hs, big, &r);
    assert_json_error(&r, 413);
    mc_resp_free(&r);
    free(big);
    u = "/";
    http(e->proxy_port, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "/api/chat/completions"));
    mc_resp_free(&r);
    u = "/healthz";
    http(e->proxy_port, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    mc_resp_free(&r);
    assert_int_equal(attempts(e, t, 0), 0);
}

/* CACHE-4: concurrent misses share one upstream request. */
static void
concurrent_misses_fly_once(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX];
    mc_new_token(t, sizeof t);
    script(e, t, "models", "[{\"delay_ms\":400}]");
    const char *u = "/api/models";
    struct mc_req reqs[5];
    struct mc_resp resps[5];
    for (int i = 0; i < 5; i++)
        reqs[i] =
            (struct mc_req){.port = e->proxy_port, .path = u, .token = t, .timeout_ms = 20000};
    assert_int_equal(mc_request_all(reqs, resps, 5), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(resps[i].rc, CURLE_OK);
        assert_int_equal(resps[i].status, 200);
        assert_string_equal(resps[i].body, resps[0].body);
    }
    for (int i = 0; i < 5; i++)
        mc_resp_free(&resps[i]);
    assert_int_equal(attempts(e, t, 1), 1);
}

/* CACHE-2 + CACHE-3 + CACHE-6: expiry, no caching of failures, stale on a failed refresh. */
static void
expiry_failures_and_stale_grace(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], h[96];
    const char *u;
    mc_new_token(t, sizeof t);
    auth_header(t, h);
    u = "/api/models";
    const char *hs[] = {h, NULL};
    struct mc_resp r;
    /* A failure is not cached: the next request goes upstream again. */
    script(e, t, "models", "[{\"status\":500},{\"status\":500},{\"status\":500},{\"status\":500}]");
    http(e->proxy_port, "GET", u, hs, NULL, &r);
    assert_json_error(&r, 502);
    mc_resp_free(&r);
    http(e->proxy_port, "GET", u, hs, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(mc_header(&r, "X-Cache"), "MISS");
    mc_resp_free(&r);
    assert_int_equal(attempts(e, t, 5), 5);

    mc_sleep_ms(1100); /* past the 1 s TTL */
    script(e, t, "models", "[{\"status\":503},{\"status\":503},{\"status\":503},{\"status\":503}]");
    http(e->proxy_port, "GET", u, hs, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(mc_header(&r, "X-Cache"), "STALE");
    mc_resp_free(&r);
    assert_int_equal(attempts(e, t, 9), 9);
    /* A 401 on refresh is relayed and evicts the entry. */
    script(
        e, t, "models",
        "[{\"status\":401},{\"status\":500},{\"status\":500},{\"status\":500},{\"status\":500}]");
    http(e->proxy_port, "GET", u, hs, NULL, &r);
    assert_json_error(&r, 401);
    mc_resp_free(&r);
    http(e->proxy_port, "GET", u, hs, NULL, &r);
    assert_json_error(&r, 502);
    mc_resp_free(&r);
}

/* ERR-5: an unreachable upstream is 502, JSON. */
static void
unreachable_upstream_is_502(void **state)
{
    (void)state;
    struct qk_proxy_config pc;
    qk_proxy_config_init(&pc);
    pc.port = 0;
    pc.upstream = "http://127.0.0.1:1";
    pc.retry_base_ms = 1;
    pc.log_format = QK_PROXY_LOG_OFF;
    struct qk_proxy *p = NULL;
    assert_int_equal(qk_proxy_start(&pc, &p, NULL, 0), QK_OK);
    const char *hs[] = {"Authorization: Bearer x", NULL};
    struct mc_resp r;
    http(qk_proxy_port(p), "GET", "/api/models", hs, NULL, &r);
    assert_json_error(&r, 502);
    mc_resp_free(&r);
    qk_proxy_stop(p);
}

/* ---- streaming (SSE-*) -------------------------------------------------------------- */

#define STREAM_BODY                                                                                \
    "{\"model\":\"qwen-max-latest\",\"stream\":true,\"messages\":[{\"role\":\"user\","             \
    "\"content\":\"stream me\"}]}"
#define STREAM_BODY_INCR                                                                           \
    "{\"model\":\"qwen-max-latest\",\"stream\":true,\"incremental_output\":true,"                  \
    "\"messages\":[{\"role\":\"user\",\"content\":\"stream me\"}]}"
#define PLAIN_BODY                                                                                 \
    "{\"model\":\"qwen-max-latest\",\"messages\":[{\"role\":\"user\",\"content\":\"stream me\"}]}"

/* What a streaming caller saw, parsed with this test's own (LF-only, strict) reading. */
struct sse_seen {
    long status;
    struct qk_buf raw;
    struct qk_buf headers;
    struct qk_buf text; /* concatenated delta.content */
    int chunks, done, errors, comments, other_lines, bad_chunks, finishes;
    bool done_last;            /* [DONE] was the last event */
    bool finish_on_last_chunk; /* the last chunk carried a finish_reason */
    int64_t recv_ms[64];       /* when each data event arrived */
    int events;                /* data events (chunks, errors, [DONE]) */
    size_t parsed;             /* bytes of raw already parsed */
    int abort_after;           /* >0: the client hangs up after this many data events */
    long max_recv_bps;         /* >0: read at most this many bytes per second */
    int64_t aborted_ms;
};

static void
sse_parse_some(struct sse_seen *s)
{
    const char *all = qk_buf_ptr(&s->raw);
    for (;;) {
        const char *p = all + s->parsed;
        const char *end = strstr(p, "\n\n");
        if (!end)
            return;
        s->parsed = (size_t)(end + 2 - all);
        if (*p == ':') {
            s->comments++;
            continue;
        }
        if (strncmp(p, "data: ", 6) != 0 || memchr(p, '\n', (size_t)(end - p))) {
            s->other_lines++;
            continue;
        }
        char *data = strndup(p + 6, (size_t)(end - p - 6));
        if (s->events < 64)
            s->recv_ms[s->events] = qk_now_ms();
        s->events++;
        s->done_last = false;
        if (strcmp(data, "[DONE]") == 0) {
            s->done++;
            s->done_last = true;
            free(data);
            continue;
        }
        cJSON *o = cJSON_Parse(data);
        free(data);
        if (cJSON_GetObjectItemCaseSensitive(o, "error")) {
            s->errors++;
            cJSON_Delete(o);
            continue;
        }
        s->chunks++;
        const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(ch, "delta"), "content");
        const cJSON *fin = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
        const cJSON *created = cJSON_GetObjectItemCaseSensitive(o, "created");
        const cJSON *object = cJSON_GetObjectItemCaseSensitive(o, "object");
        bool ok = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "id")) &&
                  cJSON_IsString(object) &&
                  strcmp(object->valuestring, "chat.completion.chunk") == 0 &&
                  cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "model")) &&
                  cJSON_IsNumber(created) && created->valuedouble < 1e11 &&
                  cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(ch, "index")) && fin != NULL;
        if (!ok)
            s->bad_chunks++;
        if (cJSON_IsString(content) && qk_buf_append_str(&s->text, content->valuestring) != QK_OK)
            s->bad_chunks++;
        s->finish_on_last_chunk = cJSON_IsString(fin);
        if (cJSON_IsString(fin))
            s->finishes++;
        cJSON_Delete(o);
    }
}

static size_t
sse_sink(char *p, size_t size, size_t n, void *ud)
{
    struct sse_seen *s = ud;
    if (qk_buf_append(&s->raw, p, size * n) != QK_OK)
        return 0;
    sse_parse_some(s);
    if (s->abort_after > 0 && s->events >= s->abort_after) {
        s->aborted_ms = qk_now_ms();
        return 0; /* hang up */
    }
    return size * n;
}

/* A pinned, small socket receive buffer: the kernel cannot soak up the stream for a slow
 * reader, so the proxy's own bound is what holds it back. */
static int
small_rcvbuf(void *arg, curl_socket_t fd, curlsocktype purpose)
{
    (void)arg;
    (void)purpose;
    int bytes = 8192;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
    return CURL_SOCKOPT_OK;
}

/* POSTs @p body to @p proxy_url's chat route with @p token, reading the stream as it comes. */
static CURLcode
stream_request(const char *proxy_url, const char *token, const char *body, struct sse_seen *s)
{
    char u[128], h[96];
    snprintf(u, sizeof(u), "%s/v1/chat/completions", proxy_url);
    auth_header(token, h);
    int abort_after = s->abort_after;
    long max_recv_bps = s->max_recv_bps;
    memset(s, 0, sizeof(*s));
    s->abort_after = abort_after;
    s->max_recv_bps = max_recv_bps;
    qk_buf_init(&s->raw, 1 << 25);
    qk_buf_init(&s->headers, 1 << 16);
    qk_buf_init(&s->text, 1 << 24);
    CURL *c = curl_easy_init();
    struct curl_slist *list = curl_slist_append(NULL, h);
    curl_easy_setopt(c, CURLOPT_URL, u);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sse_sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &s->headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    if (s->max_recv_bps > 0) {
        curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)s->max_recv_bps);
        curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 4096L); /* keep the client's own buffer small */
        curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, small_rcvbuf);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &s->status);
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
    return rc;
}

static void
sse_free(struct sse_seen *s)
{
    qk_buf_free(&s->raw);
    qk_buf_free(&s->headers);
    qk_buf_free(&s->text);
}

/* The answer's text for the request above, from the non-streamed route. */
static char *
reference_text(struct env *e, const char *token)
{
    char h[96];
    const char *u;
    u = "/v1/chat/completions";
    auth_header(token, h);
    const char *hs[] = {h, NULL};
    struct mc_resp r;
    http(e->proxy_port, "POST", u, hs, PLAIN_BODY, &r);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0), "message");
    char *text = strdup(cJSON_GetObjectItemCaseSensitive(msg, "content")->valuestring);
    cJSON_Delete(j);
    mc_resp_free(&r);
    return text;
}

/* The stream's answer as one response: status, headers and the raw body. */
static void
sse_as_resp(struct sse_seen *s, struct mc_resp *r)
{
    struct qk_buf all;
    qk_buf_init(&all, 1 << 26);
    assert_int_equal(qk_buf_append(&all, qk_buf_ptr(&s->headers), qk_buf_len(&s->headers)), QK_OK);
    assert_int_equal(qk_buf_append(&all, qk_buf_ptr(&s->raw), qk_buf_len(&s->raw)), QK_OK);
    assert_int_equal(mc_resp_parse_raw(qk_buf_ptr(&all), qk_buf_len(&all), r), 0);
    qk_buf_free(&all);
}

/* The value of the stream's header @p name, or NULL (static storage). */
static const char *
sse_header(struct sse_seen *s, const char *name)
{
    static char value[256];
    struct mc_resp r;
    sse_as_resp(s, &r);
    const char *v = mc_header(&r, name);
    snprintf(value, sizeof(value), "%s", v ? v : "");
    mc_resp_free(&r);
    return v ? value : NULL;
}

/* A stream that ended well: SSE-1, SSE-3, SSE-4 (exact text), SSE-12. */
static void
assert_good_stream(struct sse_seen *s, const char *want)
{
    assert_int_equal(s->status, 200);
    assert_string_equal(sse_header(s, "Content-Type"), "text/event-stream");
    assert_string_equal(sse_header(s, "Cache-Control"), "no-cache");
    assert_int_equal(s->parsed, qk_buf_len(&s->raw)); /* nothing after the last blank line */
    assert_int_equal(s->other_lines, 0);
    assert_int_equal(s->bad_chunks, 0);
    assert_int_equal(s->errors, 0);
    assert_int_equal(s->done, 1);
    assert_true(s->done_last);
    assert_true(s->finish_on_last_chunk);
    assert_int_equal(s->finishes, 1);
    assert_string_equal(qk_buf_ptr(&s->text), want);
}

/* SSE-4: cumulative and incremental upstream deltas give exactly the non-streamed text. */
static void
stream_cumulative_and_incremental_are_exact(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX];
    mc_new_token(t, sizeof t);
    char *want = reference_text(e, t);
    struct sse_seen s = {0};
    assert_int_equal(stream_request(e->proxy_url, t, STREAM_BODY, &s), CURLE_OK);
    assert_good_stream(&s, want);
    assert_true(s.chunks > 3);
    sse_free(&s);
    assert_int_equal(stream_request(e->proxy_url, t, STREAM_BODY_INCR, &s), CURLE_OK);
    assert_good_stream(&s, want);
    sse_free(&s);
    /* A final chunk repeating the whole text, and an upstream that ignores the flag. */
    script(e, t, "chat",
           "[{\"stream\":{\"final_repeat\":true}},{\"stream\":{\"final_repeat\":true}},"
           "{\"stream\":{\"cumulative\":true}},{\"stream\":{\"done\":false,"
           "\"finish_reason\":false,\"envelope\":false}}]");
    const char *bodies[] = {STREAM_BODY, STREAM_BODY_INCR, STREAM_BODY_INCR, STREAM_BODY};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(stream_request(e->proxy_url, t, bodies[i], &s), CURLE_OK);
        assert_good_stream(&s, want);
        sse_free(&s);
    }
    free(want);
}

static unsigned long
stream_pauses(struct env *e)
{
    struct mc_resp r;
    http(e->proxy_port, "GET", "/healthz", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "stream_pauses");
    assert_true(cJSON_IsNumber(n));
    unsigned long v = (unsigned long)n->valuedouble;
    cJSON_Delete(j);
    mc_resp_free(&r);
    return v;
}

/* SSE-11: a caller reading slowly makes the proxy pause the upstream transfer once its
 * per-stream buffer is full, rather than buffering the answer; the text stays exact. */
static void
stream_slow_reader_pauses_upstream(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX];
    mc_new_token(t, sizeof t);
    /* About 6 MB of text: far beyond the 64 KiB per-stream buffer, and beyond the 4 MiB
     * a kernel socket send buffer can grow to, which would otherwise hide the bound. */
    script(e, t, "chat",
           "[{\"stream\":{\"piece_bytes\":560000}},{\"stream\":{\"piece_bytes\":560000}}]");
    struct sse_seen fast = {0}, slow = {0};
    assert_int_equal(stream_request(e->proxy_url, t, STREAM_BODY_INCR, &fast), CURLE_OK);
    assert_good_stream(&fast, qk_buf_ptr(&fast.text));
    assert_true(qk_buf_len(&fast.text) >= 5000000);
    unsigned long before = stream_pauses(e);
    slow.max_recv_bps = 4000000;
    assert_int_equal(stream_request(e->proxy_url, t, STREAM_BODY_INCR, &slow), CURLE_OK);
    assert_good_stream(&slow, qk_buf_ptr(&fast.text));
    assert_true(stream_pauses(e) > before);
    sse_free(&fast);
    sse_free(&slow);
}

/* SSE-5 + SSE-6: split UTF-8, CRLF, CR, comments, coalesced and spread events. */
static void
stream_any_framing_is_understood(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX];
    mc_new_token(t, sizeof t);
    char *want = reference_text(e, t);
    script(e, t, "chat",
           "[{\"stream\":{\"split_utf8\":true}},{\"stream\":{\"crlf\":true}},"
           "{\"stream\":{\"cr\":true}},{\"stream\":{\"comments\":true}},"
           "{\"stream\":{\"coalesce\":true}},{\"stream\":{\"coalesce\":3,\"crlf\":true}},"
           "{\"stream\":{\"split_utf8\":true,\"cr\":true}}]");
    for (int i = 0; i < 7; i++) {
        struct sse_seen s = {0};
        assert_int_equal(stream_request(e->proxy_url, t, STREAM_BODY, &s), CURLE_OK);
        assert_good_stream(&s, want);
        sse_free(&s);
    }
    free(want);
}

/* SSE-7 + SSE-13: failures before the first event are retried, then JSON, never 200. */
static void
stream_failures_before_first_event_are_json(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX];
    mc_new_token(t, sizeof t);
    struct sse_seen s = {0};
    script(e, t, "chat",
           "[{\"status\":500},{\"html\":\"gateway\"},{\"status\":504},{\"status\":503}]");
    assert_int_equal(stream_request(e->proxy_url, t, STREAM_BODY, &s), CURLE_OK);
    struct mc_resp r;
    sse_as_resp(&s, &r);
    assert_json_error(&r, 502);
    mc_resp_free(&r);
    sse_free(&s);
    assert_int_equal(attempts(e, t, 4), 4);

    script(e, t, "chat",
           "[{\"inband_error\":\"waf\"},{\"inband_error\":\"quota\"},{\"inband_error\":\"waf\"},"
           "{\"inband_error\":\"quota\"}]");
    assert_int_equal(stream_request(e->proxy_url, t, STREAM_BODY, &s), CURLE_OK);
    sse_as_resp(&s, &r);
    assert_json_error(&r, 502);
    mc_resp_free(&r);
    assert_non_null(strstr(qk_buf_ptr(&s.raw), "RateLimited"));
    sse_free(&s);
    assert_int_equal(attempts(e, t, 8), 8);

    char *want = reference_text(e, t);
    script(e, t, "chat", "[{\"inband_error\":\"waf\"},{\"stream\":{\"truncate_after\":0}}]");
    assert_int_equal(stream_request(e->proxy_url, t, STREAM_BODY, &s), CURLE_OK);
    assert_good_stream(&s, want);
    sse_free(&s);
    assert_int_equal(attempts(e, t, 12), 12);

    script(e, t, "chat", "[{\"status\":401},{\"ok\":true}]");
    assert_int_equal(stream_request(e->proxy_url, t, STREAM_BODY, &s), CURLE_OK);
    sse_as_resp(&s, &r);
    assert_json_error(&r, 401);
    mc_resp_free(&r);
    sse_free(&s);
    free(want);
}

/* SSE-8: a drop after the first event: one error event, no [DONE], no second attempt. */
static void
stream_drop_mid_way_ends_with_one_error(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX];
    mc_new_token(t, sizeof t);
    script(e, t, "chat", "[{\"stream\":{\"truncate_after\":3}}]");
    struct sse_seen s = {0};
    assert_int_equal(stream_request(e->proxy_url, t, STREAM_BODY, &s), CURLE_OK);
    assert_int_equal(s.status, 200);
    assert_int_equal(s.chunks, 3);
    assert_int_equal(s.errors, 1);
    assert_int_equal(s.done, 0);
    assert_int_equal(s.other_lines, 0);
    sse_free(&s);
    assert_int_equal(attempts(e, t, 1), 1);
}

/* SSE-2: with events 300 ms apart upstream, each reaches the caller long before the next. */
static void
stream_events_are_relayed_as_they_arrive(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX];
    mc_new_token(t, sizeof t);
    script(e, t, "chat", "[{\"stream\":{\"chunks\":4,\"chunk_delay_ms\":300}}]");
    struct sse_seen s = {0};
    assert_int_equal(stream_request(e->proxy_url, t, STREAM_BODY, &s), CURLE_OK);
    assert_int_equal(s.chunks, 4);
    cJSON *j = mc_journal_settled(qk_mock_port(e->mock), t, 1, 3000);
    const cJSON *entry = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "entries"), 0);
    const cJSON *sent = cJSON_GetObjectItemCaseSensitive(entry, "event_ms");
    assert_true(cJSON_GetArraySize(sent) >= 4);
    for (int i = 0; i < 4; i++) {
        int64_t up = (int64_t)cJSON_GetArrayItem(sent, i)->valuedouble;
        assert_true(s.recv_ms[i] >= up);
        /* SPEC.md's tolerance for a busy machine; a buffering relay is 900 ms late. */
        assert_true(s.recv_ms[i] - up < 450);
    }
    cJSON_Delete(j);
    sse_free(&s);
}

/* SSE-9: the caller hangs up mid-stream; the upstream connection is closed within 1 s. */
static void
stream_caller_leaving_closes_upstream(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX];
    mc_new_token(t, sizeof t);
    script(e, t, "chat", "[{\"stream\":{\"stall_after\":2,\"stall_ms\":20000}}]");
    struct sse_seen s = {.abort_after = 1};
    assert_int_equal(stream_request(e->proxy_url, t, STREAM_BODY, &s), CURLE_WRITE_ERROR);
    int64_t left = s.aborted_ms;
    bool gone = false;
    int64_t seen_ms = 0;
    while (!gone && qk_now_ms() - left < 3000) {
        cJSON *j = mc_journal(qk_mock_port(e->mock), t);
        assert_non_null(j);
        const cJSON *entry = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "entries"), 0);
        gone = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(entry, "client_gone"));
        seen_ms = qk_now_ms();
        cJSON_Delete(j);
        if (!gone) {
            mc_sleep_ms(50);
        }
    }
    assert_true(gone);
    assert_true(seen_ms - left < 1000);
    sse_free(&s);
}

/* SSE-10: idle timeout with keep-alives; a flowing stream outlives the attempt limit. */
/* ---- raw requests: bytes a client library would refuse to send ---- */

struct raw_reply {
    struct mc_resp r;     /* status, headers and body of the first answer */
    size_t status_lines;  /* lines starting "HTTP/" in the whole answer */
    bool closed;          /* the proxy closed the connection within the time given */
};

/* Sends @p bytes to the proxy on a new connection and reads until it closes (or 5 s). */
static void
raw_http(struct env *e, const char *bytes, size_t len, struct raw_reply *out)
{
    memset(out, 0, sizeof(*out));
    int fd = mc_connect(e->proxy_port, NULL);
    assert_true(fd >= 0);
    (void)mc_send_all(fd, bytes, len); /* it may answer and close before reading it all */
    size_t cap = (size_t)1 << 22;
    char *a = malloc(cap);
    assert_non_null(a);
    out->closed = mc_read_until_closed(fd, 5000, a, cap) >= 0;
    close(fd);
    for (const char *l = a; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        out->status_lines += strncmp(l, "HTTP/", 5) == 0;
    assert_int_equal(mc_resp_parse_raw(a, strlen(a), &out->r), 0);
    free(a);
}

/* The `param` of a JSON error reply, or "" (static). */
static const char *
error_param(struct mc_resp *r)
{
    static char param[64];
    cJSON *j = cJSON_Parse(r->body);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"),
                                                      "param");
    snprintf(param, sizeof(param), "%s", cJSON_IsString(p) ? p->valuestring : "");
    cJSON_Delete(j);
    return param;
}

/* INPUT-1/2: the refusal names the header, and nothing reaches the upstream. */
static void
input_refusals_name_the_header(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], t2[MC_TOKEN_MAX];
    mc_new_token(t, sizeof t);
    mc_new_token(t2, sizeof t2);
    char req[1024];
    struct raw_reply rr;
    char dup_auth[96];
    snprintf(dup_auth, sizeof(dup_auth), "Authorization: Bearer %s\r\n", t2);
    const struct {
        const char *extra, *param;
    } cases[] = {
        {dup_auth, "Authorization"},
        {"Host: b.example\r\n", "Host"},
        {"X-Ctl: a\rb\r\n", "X-Ctl"},
        {"X-Ctl: a\x7f" "b\r\n", "X-Ctl"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(req, sizeof(req),
                 "GET /api/models HTTP/1.1\r\nHost: a.example\r\nAuthorization: Bearer %s\r\n"
                 "%sConnection: close\r\n\r\n",
                 t, cases[i].extra);
        raw_http(e, req, strlen(req), &rr);
        assert_json_error(&rr.r, 400);
        assert_string_equal(error_param(&rr.r), cases[i].param);
        assert_int_equal(rr.status_lines, 1);
        mc_resp_free(&rr.r);
    }
    /* A header name that is not a token, and HTTP/1.1 without Host (libmicrohttpd serves
     * both as they are). */
    const struct {
        const char *bytes, *code;
    } more[] = {
        {"GET /healthz HTTP/1.1\r\nHost: a\r\nBad Name: x\r\nConnection: close\r\n\r\n",
         "invalid_header_name"},
        {"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", "missing_host"},
    };
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
        raw_http(e, more[i].bytes, strlen(more[i].bytes), &rr);
        assert_json_error(&rr.r, 400);
        assert_non_null(strstr(rr.r.body, more[i].code));
        mc_resp_free(&rr.r);
    }
    /* Two Content-Length lines: refused, and the connection is closed, not read on. */
    snprintf(req, sizeof(req),
             "POST /api/chat/completions HTTP/1.1\r\nHost: a.example\r\n"
             "Authorization: Bearer %s\r\nContent-Length: %zu\r\nContent-Length: %zu\r\n\r\n%s",
             t, strlen(CHAT_BODY), strlen(CHAT_BODY), CHAT_BODY);
    raw_http(e, req, strlen(req), &rr);
    assert_json_error(&rr.r, 400);
    assert_string_equal(error_param(&rr.r), "Content-Length");
    assert_true(rr.closed);
    mc_resp_free(&rr.r);
    assert_int_equal(attempts(e, t, 0), 0);
    assert_int_equal(attempts(e, t2, 0), 0);
}

/* A query of thousands of arguments (no route reads any) is answered, not left hanging. */
static void
query_of_thousands_of_arguments_is_answered(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX];
    mc_new_token(t, sizeof t);
    struct qk_buf req;
    qk_buf_init(&req, 1 << 20);
    assert_int_equal(qk_buf_append_str(&req, "GET /api/models?"), QK_OK);
    for (int i = 0; i < 900; i++) /* about 7 KB: under the 8 KB target limit */
        assert_int_equal(qk_buf_appendf(&req, "%sa%d=b", i ? "&" : "", i), QK_OK);
    assert_int_equal(qk_buf_appendf(&req, " HTTP/1.1\r\nHost: a.example\r\nAuthorization: Bearer "
                                          "%s\r\nConnection: close\r\n\r\n", t),
                     QK_OK);
    struct raw_reply rr;
    raw_http(e, qk_buf_ptr(&req), qk_buf_len(&req), &rr);
    assert_int_equal(rr.r.status, 200);
    assert_true(rr.closed);
    mc_resp_free(&rr.r);
    /* A target over the proxy's limit gets its JSON 414. */
    qk_buf_reset(&req);
    assert_int_equal(qk_buf_append_str(&req, "GET /api/models?"), QK_OK);
    for (int i = 0; i < 9000; i++)
        assert_int_equal(qk_buf_append(&req, "a", 1), QK_OK);
    assert_int_equal(qk_buf_append_str(&req, " HTTP/1.1\r\nHost: a.example\r\nConnection: close"
                                             "\r\n\r\n"),
                     QK_OK);
    raw_http(e, qk_buf_ptr(&req), qk_buf_len(&req), &rr);
    assert_json_error(&rr.r, 414);
    mc_resp_free(&rr.r);
    qk_buf_free(&req);
}

/*
 * What libmicrohttpd answers itself (proxy/README.md, "Protocol errors"): header blocks
 * up to its memory get the proxy's JSON 431; larger ones, a malformed request line or
 * Content-Length and unsupported versions get its HTML page. Pinned here: the status,
 * and that the connection is closed after it.
 */
static void
protocol_errors_get_the_right_status_and_a_close(void **state)
{
    struct env *e = *state;
    struct qk_buf req;
    qk_buf_init(&req, 1 << 20);
    struct raw_reply rr;
    const size_t sizes[] = {20 * 1024, 100 * 1024};
    for (size_t i = 0; i < 2; i++) {
        qk_buf_reset(&req);
        assert_int_equal(qk_buf_append_str(&req, "GET /api/models HTTP/1.1\r\nHost: a.example\r\n"
                                                 "X-Big: "),
                         QK_OK);
        for (size_t k = 0; k < sizes[i]; k++)
            assert_int_equal(qk_buf_append(&req, "a", 1), QK_OK);
        assert_int_equal(qk_buf_append_str(&req, "\r\nConnection: close\r\n\r\n"), QK_OK);
        raw_http(e, qk_buf_ptr(&req), qk_buf_len(&req), &rr);
        assert_int_equal(rr.r.status, 431);
        assert_int_equal(rr.status_lines, 1);
        assert_true(rr.closed);
        if (i == 0)
            assert_json_error(&rr.r, 431); /* within libmicrohttpd's memory: ours */
        mc_resp_free(&rr.r);
    }
    qk_buf_free(&req);
    const struct {
        const char *bytes;
        long status;
        size_t status_lines; /* 0: not pinned (libmicrohttpd 0.9.75 sends its 400 twice) */
    } cases[] = {
        {"GET / HTTP/2.5\r\nHost: a.example\r\n\r\n", 505, 1},
        {"GET / HTTP/x\r\nHost: a.example\r\n\r\n", 400, 1},
        {"POST /api/chat/completions HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1x\r\n\r\n",
         400, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        raw_http(e, cases[i].bytes, strlen(cases[i].bytes), &rr);
        assert_int_equal(rr.r.status, cases[i].status);
        assert_true(rr.closed);
        if (cases[i].status_lines)
            assert_int_equal(rr.status_lines, cases[i].status_lines);
        mc_resp_free(&rr.r);
    }
}

/* INPUT-4: HEAD is GET without a body; HEAD on the model list asks the upstream as GET. */
static void
head_is_get_without_body(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], req[512];
    mc_new_token(t, sizeof t);
    struct raw_reply rr;
    snprintf(req, sizeof(req),
             "HEAD /api/models HTTP/1.1\r\nHost: a.example\r\nAuthorization: Bearer %s\r\n"
             "Connection: close\r\n\r\n", t);
    raw_http(e, req, strlen(req), &rr);
    assert_int_equal(rr.r.status, 200);
    assert_string_equal(mc_header(&rr.r, "Content-Type"), "application/json");
    assert_int_equal(rr.r.body_len, 0);
    mc_resp_free(&rr.r);
    cJSON *j = mc_journal_settled(qk_mock_port(e->mock), t, 1, 3000);
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(j, "entries");
    assert_int_equal(cJSON_GetArraySize(entries), 1);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(entries, 0), "method")
                            ->valuestring,
                        "GET");
    cJSON_Delete(j);
    /* A second HEAD is a cache hit, as a GET would be. */
    raw_http(e, req, strlen(req), &rr);
    assert_int_equal(rr.r.status, 200);
    assert_string_equal(mc_header(&rr.r, "X-Cache"), "HIT");
    mc_resp_free(&rr.r);
    snprintf(req, sizeof(req), "OPTIONS /api/models HTTP/1.1\r\nHost: a.example\r\n"
                               "Connection: close\r\n\r\n");
    raw_http(e, req, strlen(req), &rr);
    assert_non_null(strstr(mc_header(&rr.r, "Allow"), "HEAD"));
    mc_resp_free(&rr.r);
    snprintf(req, sizeof(req), "HEAD /healthz HTTP/1.1\r\nHost: a.example\r\n"
                               "Connection: close\r\n\r\n");
    raw_http(e, req, strlen(req), &rr);
    assert_int_equal(rr.r.status, 200);
    assert_int_equal(rr.r.body_len, 0);
    mc_resp_free(&rr.r);
}

static void
stream_idle_timeout_and_keepalive(void **state)
{
    struct env *e = *state;
    struct qk_proxy_config pc;
    qk_proxy_config_init(&pc);
    pc.port = 0;
    pc.upstream = e->mock_url;
    pc.retry_base_ms = 5;
    pc.upstream_timeout_ms = 500;
    pc.stream_idle_timeout_ms = 900;
    pc.keepalive_interval_ms = 200;
    pc.log_format = QK_PROXY_LOG_OFF;
    struct qk_proxy *p = NULL;
    assert_int_equal(qk_proxy_start(&pc, &p, NULL, 0), QK_OK);
    char purl[64];
    snprintf(purl, sizeof(purl), "http://127.0.0.1:%u", qk_proxy_port(p));
    char t[MC_TOKEN_MAX];
    mc_new_token(t, sizeof t);
    char *want = reference_text(e, t);

    /* 6 events 400 ms apart: 2 s in all, past the 500 ms attempt limit, never idle 900 ms. */
    script(e, t, "chat", "[{\"stream\":{\"chunks\":6,\"chunk_delay_ms\":400}}]");
    struct sse_seen s = {0};
    assert_int_equal(stream_request(purl, t, STREAM_BODY, &s), CURLE_OK);
    assert_good_stream(&s, want);
    assert_true(s.comments >= 1);
    sse_free(&s);

    /* Silent after 2 events: keep-alives, then one error event and no [DONE]. */
    script(e, t, "chat", "[{\"stream\":{\"stall_after\":2,\"stall_ms\":20000}}]");
    int64_t t0 = qk_now_ms();
    assert_int_equal(stream_request(purl, t, STREAM_BODY, &s), CURLE_OK);
    int64_t took = qk_now_ms() - t0;
    assert_int_equal(s.status, 200);
    assert_int_equal(s.chunks, 2);
    assert_int_equal(s.errors, 1);
    assert_int_equal(s.done, 0);
    assert_true(s.comments >= 2);
    assert_true(took >= 800 && took < 5000);
    sse_free(&s);

    /* No first event within the attempt limit: retried, then 504 JSON. */
    script(e, t, "chat",
           "[{\"stream\":{\"stall_after\":0,\"stall_ms\":3000}},"
           "{\"stream\":{\"stall_after\":0,\"stall_ms\":3000}}]");
    struct qk_proxy_config pc2 = pc;
    pc2.max_retries = 1;
    qk_proxy_stop(p);
    assert_int_equal(qk_proxy_start(&pc2, &p, NULL, 0), QK_OK);
    snprintf(purl, sizeof(purl), "http://127.0.0.1:%u", qk_proxy_port(p));
    assert_int_equal(stream_request(purl, t, STREAM_BODY, &s), CURLE_OK);
    struct mc_resp r;
    sse_as_resp(&s, &r);
    assert_json_error(&r, 504);
    mc_resp_free(&r);
    sse_free(&s);
    qk_proxy_stop(p);
    free(want);
}

int
main(void)
{
    mc_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(auth_is_checked_before_any_upstream_call),
        cmocka_unit_test(model_list_is_cached_per_credential),
        cmocka_unit_test(v1_models_has_the_openai_shape),
        cmocka_unit_test(v1_models_is_converted_once_per_entry),
        cmocka_unit_test(failures_are_retried_with_identical_requests),
        cmocka_unit_test(gives_up_after_four_attempts),
        cmocka_unit_test(dropped_connections_are_the_attempts_counted),
        cmocka_unit_test(client_errors_are_relayed_once),
        cmocka_unit_test(invalid_bodies_never_go_upstream),
        cmocka_unit_test(routing_errors),
        cmocka_unit_test(concurrent_misses_fly_once),
        cmocka_unit_test(expiry_failures_and_stale_grace),
        cmocka_unit_test(unreachable_upstream_is_502),
        cmocka_unit_test(stream_cumulative_and_incremental_are_exact),
        cmocka_unit_test(stream_any_framing_is_understood),
        cmocka_unit_test(stream_failures_before_first_event_are_json),
        cmocka_unit_test(stream_drop_mid_way_ends_with_one_error),
        cmocka_unit_test(stream_events_are_relayed_as_they_arrive),
        cmocka_unit_test(stream_caller_leaving_closes_upstream),
        cmocka_unit_test(stream_idle_timeout_and_keepalive),
        cmocka_unit_test(stream_slow_reader_pauses_upstream),
        cmocka_unit_test(input_refusals_name_the_header),
        cmocka_unit_test(query_of_thousands_of_arguments_is_answered),
        cmocka_unit_test(protocol_errors_get_the_right_status_and_a_close),
        cmocka_unit_test(head_is_get_without_body),
    };
    int rc = cmocka_run_group_tests_name("unit_proxy_e2e", tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
