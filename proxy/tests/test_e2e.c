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
#include <sys/random.h>
#include <time.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "qwenkit/buf.h"
#include "qwenkit/mock.h"
#include "qwenkit/proxy.h"

#define CHAT_BODY                                                                                  \
    "{\"model\":\"qwen-max-latest\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"

struct env {
    struct qk_mock *mock;
    struct qk_proxy *proxy;
    char mock_url[64];
    char proxy_url[64];
};

struct reply {
    long status;
    struct qk_buf body;
    struct qk_buf headers;
};

static size_t
sink(char *p, size_t size, size_t n, void *ud)
{
    return qk_buf_append(ud, p, size * n) == QK_OK ? size * n : 0;
}

/* One HTTP exchange; @p hdrs is a NULL-terminated list of "Name: value". */
static void
http(const char *method, const char *url, const char *const *hdrs, const char *body,
     struct reply *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *list = NULL;
    for (const char *const *h = hdrs; h && *h; h++)
        list = curl_slist_append(list, *h);
    qk_buf_init(&r->body, 1 << 22);
    qk_buf_init(&r->headers, 1 << 16);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
}

static void
reply_free(struct reply *r)
{
    qk_buf_free(&r->body);
    qk_buf_free(&r->headers);
}

static void
new_token(char out[40])
{
    unsigned char b[12];
    assert_int_equal(getrandom(b, sizeof(b), 0), (ssize_t)sizeof(b));
    snprintf(out, 40, "tok-");
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(out + 4 + 2 * i, 3, "%02x", b[i]);
}

static void
auth_header(const char *token, char out[80])
{
    snprintf(out, 80, "Authorization: Bearer %s", token);
}

/* The mock's journal for @p token (caller cJSON_Delete()s it). */
static cJSON *
journal(struct env *e, const char *token)
{
    char url[160];
    snprintf(url, sizeof(url), "%s/__mock/journal?token=%s", e->mock_url, token);
    struct reply r;
    http("GET", url, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(qk_buf_ptr(&r.body));
    reply_free(&r);
    assert_non_null(j);
    return j;
}

static int
attempts(struct env *e, const char *token)
{
    cJSON *j = journal(e, token);
    int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries"));
    cJSON_Delete(j);
    return n;
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

static const char *
header(struct reply *r, const char *name)
{
    static char value[256];
    const char *h = qk_buf_ptr(&r->headers);
    size_t n = strlen(name);
    for (const char *line = h; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r\n");
            snprintf(value, sizeof(value), "%.*s", (int)len, v);
            return value;
        }
    }
    return NULL;
}

static void
assert_json_error(struct reply *r, long status)
{
    assert_int_equal(r->status, status);
    assert_non_null(header(r, "Content-Type"));
    assert_string_equal(header(r, "Content-Type"), "application/json");
    cJSON *j = cJSON_Parse(qk_buf_ptr(&r->body));
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
    snprintf(e->proxy_url, sizeof(e->proxy_url), "http://127.0.0.1:%u", qk_proxy_port(e->proxy));
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

static void
url(struct env *e, const char *path, char out[128])
{
    snprintf(out, 128, "%s%s", e->proxy_url, path);
}

/* AUTH-1/2: no, non-Bearer or empty credentials never reach the upstream. */
static void
auth_is_checked_before_any_upstream_call(void **state)
{
    struct env *e = *state;
    char tok[40], u[128];
    new_token(tok);
    url(e, "/api/models", u);
    struct reply r;
    http("GET", u, NULL, NULL, &r);
    assert_json_error(&r, 401);
    reply_free(&r);
    char basic[80];
    snprintf(basic, sizeof(basic), "Authorization: Basic %s", tok);
    const char *h1[] = {basic, NULL};
    http("GET", u, h1, NULL, &r);
    assert_json_error(&r, 401);
    reply_free(&r);
    const char *h2[] = {"Authorization: Bearer ", NULL};
    url(e, "/api/chat/completions", u);
    http("POST", u, h2, CHAT_BODY, &r);
    assert_json_error(&r, 401);
    reply_free(&r);
    assert_int_equal(attempts(e, tok), 0);
}

/* CACHE-1 + AUTH-5: cached per credential; the second request makes no upstream call. */
static void
model_list_is_cached_per_credential(void **state)
{
    struct env *e = *state;
    char a[40], b[40], ha[80], hb[80], u[128];
    new_token(a);
    new_token(b);
    auth_header(a, ha);
    auth_header(b, hb);
    url(e, "/api/models", u);
    const char *h[] = {ha, NULL};
    struct reply r1, r2, r3;
    http("GET", u, h, NULL, &r1);
    assert_int_equal(r1.status, 200);
    assert_string_equal(header(&r1, "X-Cache"), "MISS");
    http("GET", u, h, NULL, &r2);
    assert_int_equal(r2.status, 200);
    assert_string_equal(header(&r2, "X-Cache"), "HIT");
    assert_string_equal(qk_buf_ptr(&r1.body), qk_buf_ptr(&r2.body));
    assert_int_equal(attempts(e, a), 1);

    /* Another credential, refused upstream, is not served A's list. */
    script(e, b, "models", "[{\"status\":401}]");
    const char *hb_list[] = {hb, NULL};
    http("GET", u, hb_list, NULL, &r3);
    assert_json_error(&r3, 401);
    assert_int_equal(attempts(e, b), 1);
    reply_free(&r1);
    reply_free(&r2);
    reply_free(&r3);
}

/* HTTP-4: /v1/models is OpenAI's list shape. */
static void
v1_models_has_the_openai_shape(void **state)
{
    struct env *e = *state;
    char t[40], h[80], u[128];
    new_token(t);
    auth_header(t, h);
    url(e, "/v1/models", u);
    const char *hs[] = {h, NULL};
    struct reply r;
    http("GET", u, hs, NULL, &r);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(qk_buf_ptr(&r.body));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "object")->valuestring, "list");
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "data"), 0);
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "id")));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(m, "object")->valuestring, "model");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, "created")));
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "owned_by")));
    cJSON_Delete(j);
    reply_free(&r);
}

/* RETRY-1/2/7 + AUTH-3 + HTTP-2: failures are retried with the same request. */
static void
failures_are_retried_with_identical_requests(void **state)
{
    struct env *e = *state;
    char t[40], h[80], u[128];
    new_token(t);
    auth_header(t, h);
    script(e, t, "chat", "[{\"status\":500},{\"html\":\"captcha\"},{\"ok\":true}]");
    url(e, "/api/chat/completions", u);
    const char *hs[] = {h, "X-Request-Id: req-e2e-1", "Connection: X-Drop", "X-Drop: 1", NULL};
    struct reply r;
    http("POST", u, hs, CHAT_BODY, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "X-Request-Id"), "req-e2e-1");
    cJSON *body = cJSON_Parse(qk_buf_ptr(&r.body));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(body, "object")->valuestring,
                        "chat.completion");
    cJSON_Delete(body);
    reply_free(&r);

    cJSON *j = journal(e, t);
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
    char t[40], h[80], u[128];
    new_token(t);
    auth_header(t, h);
    script(e, t, "chat",
           "[{\"status\":500},{\"status\":500},{\"status\":502},{\"status\":503},{\"ok\":true}]");
    url(e, "/api/chat/completions", u);
    const char *hs[] = {h, NULL};
    struct reply r;
    http("POST", u, hs, CHAT_BODY, &r);
    assert_json_error(&r, 502);
    assert_non_null(strstr(qk_buf_ptr(&r.body), "503"));
    assert_int_equal(attempts(e, t), 4);
    reply_free(&r);
}

/* RETRY-4 + ERR-2 + AUTH-4: client errors are relayed after one attempt. */
static void
client_errors_are_relayed_once(void **state)
{
    struct env *e = *state;
    char t[40], h[80], u[128];
    new_token(t);
    auth_header(t, h);
    url(e, "/api/chat/completions", u);
    const char *hs[] = {h, NULL};
    struct reply r;
    http("POST", u, hs,
         "{\"model\":\"no-such-model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r);
    assert_json_error(&r, 400);
    assert_non_null(strstr(qk_buf_ptr(&r.body), "Model not found"));
    reply_free(&r);
    assert_int_equal(attempts(e, t), 1);

    script(e, t, "chat", "[{\"status\":401},{\"ok\":true}]");
    http("POST", u, hs, CHAT_BODY, &r);
    assert_json_error(&r, 401);
    reply_free(&r);
    assert_int_equal(attempts(e, t), 2);
}

/* ERR-1: invalid bodies get 400 naming the field, without an upstream call. */
static void
invalid_bodies_never_go_upstream(void **state)
{
    struct env *e = *state;
    char t[40], h[80], u[128];
    new_token(t);
    auth_header(t, h);
    url(e, "/v1/chat/completions", u);
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
        struct reply r;
        http("POST", u, hs, cases[i].body, &r);
        assert_json_error(&r, 400);
        cJSON *j = cJSON_Parse(qk_buf_ptr(&r.body));
        const cJSON *p =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "param");
        if (cases[i].param)
            assert_string_equal(p->valuestring, cases[i].param);
        else
            assert_true(cJSON_IsNull(p));
        cJSON_Delete(j);
        reply_free(&r);
    }
    assert_int_equal(attempts(e, t), 0);
}

/* ERR-4: 404, 405 with Allow, 413. */
static void
routing_errors(void **state)
{
    struct env *e = *state;
    char t[40], h[80], u[128];
    new_token(t);
    auth_header(t, h);
    const char *hs[] = {h, NULL};
    struct reply r;
    url(e, "/api/nothing", u);
    http("GET", u, hs, NULL, &r);
    assert_json_error(&r, 404);
    reply_free(&r);
    url(e, "/api/chat/completions", u);
    http("GET", u, hs, NULL, &r);
    assert_json_error(&r, 405);
    assert_non_null(header(&r, "Allow"));
    assert_non_null(strstr(header(&r, "Allow"), "POST"));
    reply_free(&r);
    char *big = malloc(8192);
    memset(big, 'a', 8191);
    big[8191] = '\0';
    http("POST", u, hs, big, &r);
    assert_json_error(&r, 413);
    reply_free(&r);
    free(big);
    url(e, "/", u);
    http("GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(qk_buf_ptr(&r.body), "/api/chat/completions"));
    reply_free(&r);
    url(e, "/healthz", u);
    http("GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(attempts(e, t), 0);
}

/* CACHE-4: concurrent misses share one upstream request. */
static void
concurrent_misses_fly_once(void **state)
{
    struct env *e = *state;
    char t[40], h[80], u[128];
    new_token(t);
    auth_header(t, h);
    script(e, t, "models", "[{\"delay_ms\":400}]");
    url(e, "/api/models", u);
    CURLM *multi = curl_multi_init();
    CURL *easy[5];
    struct qk_buf bodies[5];
    struct curl_slist *list = curl_slist_append(NULL, h);
    for (int i = 0; i < 5; i++) {
        qk_buf_init(&bodies[i], 1 << 20);
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, u);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, list);
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT, 20L);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, &bodies[i]);
        curl_multi_add_handle(multi, easy[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(multi, &running);
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < 5; i++) {
        long status = 0;
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
        assert_int_equal(status, 200);
        assert_string_equal(qk_buf_ptr(&bodies[i]), qk_buf_ptr(&bodies[0]));
    }
    for (int i = 0; i < 5; i++) {
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
        qk_buf_free(&bodies[i]);
    }
    curl_slist_free_all(list);
    curl_multi_cleanup(multi);
    assert_int_equal(attempts(e, t), 1);
}

/* CACHE-2 + CACHE-3 + CACHE-6: expiry, no caching of failures, stale on a failed refresh. */
static void
expiry_failures_and_stale_grace(void **state)
{
    struct env *e = *state;
    char t[40], h[80], u[128];
    new_token(t);
    auth_header(t, h);
    url(e, "/api/models", u);
    const char *hs[] = {h, NULL};
    struct reply r;
    /* A failure is not cached: the next request goes upstream again. */
    script(e, t, "models", "[{\"status\":500},{\"status\":500},{\"status\":500},{\"status\":500}]");
    http("GET", u, hs, NULL, &r);
    assert_json_error(&r, 502);
    reply_free(&r);
    http("GET", u, hs, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "X-Cache"), "MISS");
    reply_free(&r);
    assert_int_equal(attempts(e, t), 5);

    struct timespec ts = {1, 100 * 1000 * 1000};
    nanosleep(&ts, NULL); /* past the 1 s TTL */
    script(e, t, "models", "[{\"status\":503},{\"status\":503},{\"status\":503},{\"status\":503}]");
    http("GET", u, hs, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(header(&r, "X-Cache"), "STALE");
    reply_free(&r);
    assert_int_equal(attempts(e, t), 9);
    /* A 401 on refresh is relayed and evicts the entry. */
    script(
        e, t, "models",
        "[{\"status\":401},{\"status\":500},{\"status\":500},{\"status\":500},{\"status\":500}]");
    http("GET", u, hs, NULL, &r);
    assert_json_error(&r, 401);
    reply_free(&r);
    http("GET", u, hs, NULL, &r);
    assert_json_error(&r, 502);
    reply_free(&r);
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
    char u[128];
    snprintf(u, sizeof(u), "http://127.0.0.1:%u/api/models", qk_proxy_port(p));
    const char *hs[] = {"Authorization: Bearer x", NULL};
    struct reply r;
    http("GET", u, hs, NULL, &r);
    assert_json_error(&r, 502);
    reply_free(&r);
    qk_proxy_stop(p);
}

int
main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(auth_is_checked_before_any_upstream_call),
        cmocka_unit_test(model_list_is_cached_per_credential),
        cmocka_unit_test(v1_models_has_the_openai_shape),
        cmocka_unit_test(failures_are_retried_with_identical_requests),
        cmocka_unit_test(gives_up_after_four_attempts),
        cmocka_unit_test(client_errors_are_relayed_once),
        cmocka_unit_test(invalid_bodies_never_go_upstream),
        cmocka_unit_test(routing_errors),
        cmocka_unit_test(concurrent_misses_fly_once),
        cmocka_unit_test(expiry_failures_and_stale_grace),
        cmocka_unit_test(unreachable_upstream_is_502),
    };
    int rc = cmocka_run_group_tests_name("unit_proxy_e2e", tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
