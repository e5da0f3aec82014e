/*
 * End to end: the in-process proxy in front of the in-process mock upstream (qk_mock),
 * both on 127.0.0.1 with ephemeral ports; a libcurl client. Each test uses its own
 * random token, so the mock's journal for that token holds exactly that test's traffic.
 *
 * What SPEC.md requires is the conformance suite's to judge (qwen-conformance runs it
 * against this proxy). Tests here pin what the suite cannot observe or does not ask:
 * the pages and marks only this proxy has (the index page, /healthz, X-Cache, `param`,
 * the wording of its errors), what is measured inside the process (conversions, stream
 * pauses), input libmicrohttpd handles itself, and the log on stderr.
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
    pc.upstream_dialect = "v1"; /* these tests script v1 answers; test_v2.c has v2's */
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

/* ---- what only this proxy has: its pages, its marks, its messages ------------------- */

/* The index page and /healthz (no SPEC requirement: the suite does not ask for them). */
static void
index_page_and_healthz(void **state)
{
    struct env *e = *state;
    struct mc_resp r;
    http(e->proxy_port, "GET", "/", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "/api/chat/completions"));
    /* The page's /healthz example, unescaped: the answer has the same members. */
    const char *example = strstr(r.body, "Liveness: <code>");
    assert_non_null(example);
    example += strlen("Liveness: <code>");
    char shown[128];
    size_t n = (size_t)(strstr(example, "</code>") - example);
    assert_true(n < sizeof(shown));
    memcpy(shown, example, n);
    shown[n] = '\0';
    cJSON *page = cJSON_Parse(shown);
    assert_non_null(page);
    mc_resp_free(&r);
    http(e->proxy_port, "GET", "/healthz", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "stream_pauses")));
    assert_int_equal(cJSON_GetArraySize(j), cJSON_GetArraySize(page));
    const cJSON *item;
    cJSON_ArrayForEach(item, page)
    {
        if (!cJSON_HasObjectItem(j, item->string))
            fail_msg("GET / shows /healthz with \"%s\", the answer has none: %s", item->string,
                     r.body);
    }
    cJSON_Delete(page);
    cJSON_Delete(j);
    mc_resp_free(&r);
}

/* X-Cache says MISS, HIT, then STALE when a refresh past the TTL fails (the suite reads
 * only the stale mark, CACHE-6). */
static void
x_cache_marks_miss_hit_and_stale(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], h[96];
    mc_new_token(t, sizeof t);
    auth_header(t, h);
    const char *hs[] = {h, NULL};
    struct mc_resp r;
    const char *const marks[] = {"MISS", "HIT"};
    for (size_t i = 0; i < 2; i++) {
        http(e->proxy_port, "GET", "/api/models", hs, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(mc_header(&r, "X-Cache"), marks[i]);
        mc_resp_free(&r);
    }
    mc_sleep_ms(1100); /* past the 1 s TTL */
    script(e, t, "models", "[{\"status\":503},{\"status\":503},{\"status\":503},{\"status\":503}]");
    http(e->proxy_port, "GET", "/api/models", hs, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(mc_header(&r, "X-Cache"), "STALE");
    mc_resp_free(&r);
    assert_int_equal(attempts(e, t, 5), 5);
}

/* A refused chat body names the field in `param` (ERR-1 asks only for the 400). */
static void
invalid_bodies_name_the_field(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], h[96];
    mc_new_token(t, sizeof t);
    auth_header(t, h);
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
        http(e->proxy_port, "POST", "/v1/chat/completions", hs, cases[i].body, &r);
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

/* ---- streaming (SSE-*) -------------------------------------------------------------- */

#define STREAM_BODY                                                                                \
    "{\"model\":\"qwen-max-latest\",\"stream\":true,\"messages\":[{\"role\":\"user\","             \
    "\"content\":\"stream me\"}]}"
#define STREAM_BODY_INCR                                                                           \
    "{\"model\":\"qwen-max-latest\",\"stream\":true,\"incremental_output\":true,"                  \
    "\"messages\":[{\"role\":\"user\",\"content\":\"stream me\"}]}"

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

/* SSE-11, measured inside: a caller reading slowly makes the proxy pause the upstream
 * transfer once its per-stream buffer is full (the /healthz counter), rather than
 * buffering the answer; the text stays exact. */
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

/* The error after the last attempt says how many there were and what the last one met: a
 * connection dropped on every attempt (the first on a pooled connection), and an in-band
 * failure of every stream (RETRY-3 and SSE-13 judge the status and the count only). */
static void
gave_up_errors_name_the_attempts_and_the_last_cause(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], h[96];
    mc_new_token(t, sizeof t);
    auth_header(t, h);
    const char *hs[] = {h, NULL};
    struct mc_resp r;
    http(e->proxy_port, "POST", "/api/chat/completions", hs, CHAT_BODY, &r); /* pools one */
    assert_int_equal(r.status, 200);
    mc_resp_free(&r);
    script(e, t, "chat",
           "[{\"drop\":true},{\"drop\":true},{\"drop\":true},{\"drop\":true},{\"drop\":true}]");
    http(e->proxy_port, "POST", "/api/chat/completions", hs, CHAT_BODY, &r);
    assert_json_error(&r, 502);
    assert_non_null(strstr(r.body, "after 4 attempt(s)"));
    mc_resp_free(&r);
    assert_int_equal(attempts(e, t, 5), 5);

    script(e, t, "chat",
           "[{\"inband_error\":\"quota\"},{\"inband_error\":\"quota\"},"
           "{\"inband_error\":\"quota\"},{\"inband_error\":\"quota\"}]");
    struct sse_seen s = {0};
    assert_int_equal(stream_request(e->proxy_url, t, STREAM_BODY, &s), CURLE_OK);
    sse_as_resp(&s, &r);
    assert_json_error(&r, 502);
    assert_non_null(strstr(r.body, "RateLimited"));
    mc_resp_free(&r);
    sse_free(&s);
}
/* A stream whose attempts bring no first event within --upstream-timeout ends in a JSON
 * 504 (SSE-7 judges the start's failures with 500s, HTML and drops; ERR-5 the 504 of a
 * non-stream request). */
static void
stream_without_a_first_event_in_time_is_504(void **state)
{
    struct env *e = *state;
    struct qk_proxy_config pc;
    qk_proxy_config_init(&pc);
    pc.upstream_dialect = "v1";
    pc.port = 0;
    pc.upstream = e->mock_url;
    pc.retry_base_ms = 5;
    pc.max_retries = 1;
    pc.upstream_timeout_ms = 500;
    pc.log_format = QK_PROXY_LOG_OFF;
    struct qk_proxy *p = NULL;
    assert_int_equal(qk_proxy_start(&pc, &p, NULL, 0), QK_OK);
    char purl[64];
    snprintf(purl, sizeof(purl), "http://127.0.0.1:%u", qk_proxy_port(p));
    char t[MC_TOKEN_MAX];
    mc_new_token(t, sizeof t);
    script(e, t, "chat",
           "[{\"stream\":{\"stall_after\":0,\"stall_ms\":3000}},"
           "{\"stream\":{\"stall_after\":0,\"stall_ms\":3000}}]");
    struct sse_seen s = {0};
    assert_int_equal(stream_request(purl, t, STREAM_BODY, &s), CURLE_OK);
    struct mc_resp r;
    sse_as_resp(&s, &r);
    assert_json_error(&r, 504);
    mc_resp_free(&r);
    sse_free(&s);
    qk_proxy_stop(p);
}
/* ---- raw requests: bytes a client library would refuse to send ---- */

struct raw_reply {
    struct mc_resp r;    /* status, headers and body of the first answer */
    size_t status_lines; /* lines starting "HTTP/" in the whole answer */
    bool closed;         /* the proxy closed the connection within the time given */
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
    const cJSON *p =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "param");
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
        {"X-Ctl: a\x7f"
         "b\r\n",
         "X-Ctl"},
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
    assert_int_equal(qk_buf_appendf(&req,
                                    " HTTP/1.1\r\nHost: a.example\r\nAuthorization: Bearer "
                                    "%s\r\nConnection: close\r\n\r\n",
                                    t),
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
             "Connection: close\r\n\r\n",
             t);
    raw_http(e, req, strlen(req), &rr);
    assert_int_equal(rr.r.status, 200);
    assert_string_equal(mc_header(&rr.r, "Content-Type"), "application/json");
    assert_int_equal(rr.r.body_len, 0);
    mc_resp_free(&rr.r);
    cJSON *j = mc_journal_settled(qk_mock_port(e->mock), t, 1, 3000);
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(j, "entries");
    assert_int_equal(cJSON_GetArraySize(entries), 1);
    assert_string_equal(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(entries, 0), "method")->valuestring,
        "GET");
    cJSON_Delete(j);
    /* A second HEAD is a cache hit, as a GET would be. */
    raw_http(e, req, strlen(req), &rr);
    assert_int_equal(rr.r.status, 200);
    assert_string_equal(mc_header(&rr.r, "X-Cache"), "HIT");
    mc_resp_free(&rr.r);
    snprintf(req, sizeof(req),
             "OPTIONS /api/models HTTP/1.1\r\nHost: a.example\r\n"
             "Connection: close\r\n\r\n");
    raw_http(e, req, strlen(req), &rr);
    assert_non_null(strstr(mc_header(&rr.r, "Allow"), "HEAD"));
    mc_resp_free(&rr.r);
    snprintf(req, sizeof(req),
             "HEAD /healthz HTTP/1.1\r\nHost: a.example\r\n"
             "Connection: close\r\n\r\n");
    raw_http(e, req, strlen(req), &rr);
    assert_int_equal(rr.r.status, 200);
    assert_int_equal(rr.r.body_len, 0);
    mc_resp_free(&rr.r);
}

/* ---- the log: the request line and the diagnostics, on stderr ---------------------- */

/* This process's stderr, sent to a file while a logging proxy runs. A failed assertion
 * leaves it captured: the test's teardown gives it back and shows what was written. */
struct captured {
    int saved_fd; /* the real stderr; -1 when nothing is captured */
    char path[64];
};
static struct captured capture = {.saved_fd = -1};

static void
capture_stderr(void)
{
    snprintf(capture.path, sizeof(capture.path), "/tmp/qk-e2e-stderr-XXXXXX");
    int fd = mkstemp(capture.path);
    assert_true(fd >= 0);
    fflush(stderr);
    capture.saved_fd = dup(STDERR_FILENO);
    assert_true(capture.saved_fd >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    close(fd);
}

/* Gives stderr back; @return what was written meanwhile (the caller frees it). */
static char *
release_stderr(void)
{
    if (capture.saved_fd < 0)
        return NULL;
    fflush(stderr);
    (void)dup2(capture.saved_fd, STDERR_FILENO);
    close(capture.saved_fd);
    capture.saved_fd = -1;
    struct qk_buf text;
    qk_buf_init(&text, 1 << 24);
    FILE *f = fopen(capture.path, "rb");
    char chunk[4096];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (qk_buf_append(&text, chunk, n) != QK_OK)
            break;
    if (f)
        fclose(f);
    unlink(capture.path);
    size_t len = 0;
    char *all = qk_buf_take(&text, &len);
    return all ? all : strdup("");
}

static int
release_stderr_teardown(void **state)
{
    (void)state;
    char *left = release_stderr();
    if (left && left[0])
        fprintf(stderr, "captured stderr:\n%s", left);
    free(left);
    return 0;
}

/* Starts a proxy that logs in @p format, with @p max_retries, in front of @p upstream
 * (NULL: the mock), with an attempt limit of @p upstream_timeout_ms (0: the default). */
static struct qk_proxy *
logging_proxy_at(struct env *e, enum qk_proxy_log_format format, enum qk_proxy_log_level level,
                 unsigned max_retries, const char *upstream, int64_t upstream_timeout_ms)
{
    struct qk_proxy_config pc;
    qk_proxy_config_init(&pc);
    pc.upstream_dialect = "v1";
    pc.port = 0;
    pc.upstream = upstream ? upstream : e->mock_url;
    pc.retry_base_ms = 5;
    pc.max_retries = max_retries;
    if (upstream_timeout_ms > 0)
        pc.upstream_timeout_ms = upstream_timeout_ms;
    pc.log_format = format;
    pc.log_level = level;
    struct qk_proxy *p = NULL;
    assert_int_equal(qk_proxy_start(&pc, &p, NULL, 0), QK_OK);
    return p;
}

static struct qk_proxy *
logging_proxy(struct env *e, enum qk_proxy_log_format format, unsigned max_retries,
              const char *upstream, int64_t upstream_timeout_ms)
{
    return logging_proxy_at(e, format, QK_PROXY_LOG_LEVEL_INFO, max_retries, upstream,
                            upstream_timeout_ms);
}

/* The @p nth (0-based) line of @p text that holds @p a and @p b, copied into @p out;
 * @return how many such lines there are. */
static size_t
lines_with(const char *text, const char *a, const char *b, size_t nth, char *out, size_t cap)
{
    size_t count = 0;
    if (out && cap)
        out[0] = '\0';
    for (const char *l = text; l && *l;) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        char *line = strndup(l, len);
        if (strstr(line, a) && (!b || strstr(line, b))) {
            if (count == nth && out)
                snprintf(out, cap, "%s", line);
            count++;
        }
        free(line);
        l = end ? end + 1 : NULL;
    }
    return count;
}

/* One request with token @p token and X-Request-Id @p rid. */
static long
request_with_id(uint16_t port, const char *method, const char *path, const char *token,
                const char *rid, const char *body)
{
    char h[96], idh[96];
    auth_header(token, h);
    snprintf(idh, sizeof(idh), "X-Request-Id: %s", rid);
    const char *hs[] = {h, idh, NULL};
    struct mc_resp r;
    http(port, method, path, hs, body, &r);
    long status = r.status;
    mc_resp_free(&r);
    return status;
}

/* One line per request in either format, with the fingerprint and never the token. */
static void
request_line_in_text_and_json(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], tag[MC_TOKEN_MAX], rid[80], fp[QK_LIMIT_FINGERPRINT], line[1024];
    char want[256];
    mc_new_token(t, sizeof t);
    mc_new_token(tag, sizeof tag); /* request ids apart from the token, which must not show */
    qk_token_fingerprint(t, strlen(t), fp);
    snprintf(rid, sizeof(rid), "text-%s", tag);

    capture_stderr();
    struct qk_proxy *p = logging_proxy(e, QK_PROXY_LOG_TEXT, 3, NULL, 0);
    assert_int_equal(request_with_id(qk_proxy_port(p), "GET", "/api/models", t, rid, NULL), 200);
    qk_proxy_stop(p); /* every request line is written by now */
    char *text = release_stderr();
    snprintf(want, sizeof(want),
             " qwen-proxy id=%s method=GET path=/api/models status=200 "
             "attempts=1 cache=MISS latency_ms=",
             rid);
    assert_int_equal(lines_with(text, want, NULL, 0, line, sizeof(line)), 1);
    snprintf(want, sizeof(want), " token=%s", fp);
    assert_non_null(strstr(line, want));
    assert_null(strstr(text, t));
    free(text);

    snprintf(rid, sizeof(rid), "json-%s", tag);
    capture_stderr();
    p = logging_proxy(e, QK_PROXY_LOG_JSON, 3, NULL, 0);
    assert_int_equal(request_with_id(qk_proxy_port(p), "GET", "/api/models", t, rid, NULL), 200);
    qk_proxy_stop(p);
    text = release_stderr();
    assert_int_equal(lines_with(text, rid, NULL, 0, line, sizeof(line)), 1);
    cJSON *j = cJSON_Parse(line);
    assert_true(cJSON_IsObject(j));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "id")), rid);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "method")), "GET");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "path")),
                        "/api/models");
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "status")), 200);
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "attempts")), 1);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "cache")), "MISS");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "token")), fp);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "latency_ms")));
    cJSON_Delete(j);
    assert_null(strstr(text, t));
    free(text);
}

/* Each failed attempt gives one `qwen-proxy: upstream:` line naming the request, the
 * attempt and its cause, whatever the cause; no line holds the token. */
static void
failed_attempts_are_logged_once_with_their_cause(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], tag[MC_TOKEN_MAX], rid[80], line[1024], want[160];
    mc_new_token(t, sizeof t);
    mc_new_token(tag, sizeof tag); /* request ids apart from the token, which must not show */
    capture_stderr();
    struct qk_proxy *p = logging_proxy(e, QK_PROXY_LOG_TEXT, 3, NULL, 0);
    uint16_t port = qk_proxy_port(p);

    /* A status and an HTML page, then a good answer: two lines, none for the success. */
    snprintf(rid, sizeof(rid), "status-%s", tag);
    script(e, t, "chat", "[{\"status\":500},{\"html\":\"captcha\"},{\"ok\":true}]");
    assert_int_equal(request_with_id(port, "POST", "/api/chat/completions", t, rid, CHAT_BODY),
                     200);
    /* A stream: an in-band failure, a 200 that is no event stream, then a good stream. */
    char srid[80];
    snprintf(srid, sizeof(srid), "stream-%s", tag);
    script(e, t, "chat",
           "[{\"inband_error\":\"quota\"},{\"status\":200,\"content_type\":\"text/plain\","
           "\"body\":\"not an event stream\\n\"},{\"ok\":true}]");
    assert_int_equal(request_with_id(port, "POST", "/api/chat/completions", t, srid, STREAM_BODY),
                     200);
    qk_proxy_stop(p);

    /* No answer in time, on the only attempt. */
    char trid[80];
    snprintf(trid, sizeof(trid), "timeout-%s", tag);
    p = logging_proxy(e, QK_PROXY_LOG_TEXT, 0, NULL, 300);
    script(e, t, "models", "[{\"delay_ms\":1500}]");
    assert_int_equal(request_with_id(qk_proxy_port(p), "GET", "/api/models", t, trid, NULL), 504);
    qk_proxy_stop(p);

    /* Nothing listening upstream. */
    char crid[80];
    snprintf(crid, sizeof(crid), "refused-%s", tag);
    p = logging_proxy(e, QK_PROXY_LOG_TEXT, 0, "http://127.0.0.1:1", 0);
    assert_int_equal(request_with_id(qk_proxy_port(p), "GET", "/api/models", t, crid, NULL), 502);
    qk_proxy_stop(p);
    char *text = release_stderr();

    snprintf(want, sizeof(want), "qwen-proxy: upstream: request %s attempt ", rid);
    assert_int_equal(lines_with(text, want, NULL, 0, NULL, 0), 2);
    assert_int_equal(lines_with(text, want, "attempt 1 failed: HTTP 500 (retry in ", 0, NULL, 0),
                     1);
    assert_int_equal(
        lines_with(text, want, "attempt 2 failed: HTML page (HTTP 200) (retry in ", 0, NULL, 0), 1);

    snprintf(want, sizeof(want), "qwen-proxy: upstream: request %s attempt ", srid);
    assert_int_equal(lines_with(text, want, NULL, 0, NULL, 0), 2);
    assert_int_equal(
        lines_with(text, want, "attempt 1 failed: in-band failure: ", 0, line, sizeof(line)), 1);
    assert_non_null(strstr(line, "RateLimited"));
    assert_int_equal(
        lines_with(text, want, "attempt 2 failed: unusable stream: ", 0, line, sizeof(line)), 1);
    assert_non_null(strstr(line, "text/plain"));

    snprintf(want, sizeof(want), "qwen-proxy: upstream: request %s attempt ", trid);
    assert_int_equal(lines_with(text, want, NULL, 0, NULL, 0), 1);
    assert_int_equal(lines_with(text, want, "attempt 1 failed: timeout: ", 0, line, sizeof(line)),
                     1);
    assert_non_null(strstr(line, "(no attempt left)"));

    snprintf(want, sizeof(want), "qwen-proxy: upstream: request %s attempt ", crid);
    assert_int_equal(lines_with(text, want, NULL, 0, NULL, 0), 1);
    assert_int_equal(
        lines_with(text, want, "attempt 1 failed: connection error: ", 0, line, sizeof(line)), 1);
    assert_non_null(strstr(line, "127.0.0.1")); /* libcurl's message names the address */

    /* Each request line names its attempts' failures, in order. */
    const struct {
        const char *rid, *want;
    } lines[] = {
        {rid, " status=200 attempts=3 "},     {rid, " failures=status_500,html_200\n"},
        {srid, " failures=inband,invalid\n"}, {trid, " status=504 attempts=1 "},
        {trid, " failures=timeout\n"},        {crid, " status=502 attempts=1 "},
        {crid, " failures=connect\n"},
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        snprintf(want, sizeof(want), " qwen-proxy id=%s ", lines[i].rid);
        char with_newline[1100];
        assert_int_equal(lines_with(text, want, NULL, 0, line, sizeof(line)), 1);
        snprintf(with_newline, sizeof(with_newline), "%s\n", line);
        if (!strstr(with_newline, lines[i].want))
            fail_msg("request line %s lacks '%s'", line, lines[i].want);
    }
    assert_null(strstr(text, t));
    free(text);
}

/* A stream cut after its start names the cut on its request line (status 200, the caller
 * got an error event); --log-level warn keeps only the request lines of answers that failed
 * the caller, and the failed attempts' lines; error keeps none of them. */
static void
request_line_names_a_cut_and_levels_filter(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], tag[MC_TOKEN_MAX], ok_rid[80], bad_rid[80], cut_rid[80], line[1024];
    mc_new_token(t, sizeof t);
    mc_new_token(tag, sizeof tag);
    snprintf(ok_rid, sizeof(ok_rid), "ok-%s", tag);
    snprintf(bad_rid, sizeof(bad_rid), "bad-%s", tag);
    snprintf(cut_rid, sizeof(cut_rid), "cut-%s", tag);
    const enum qk_proxy_log_level levels[] = {QK_PROXY_LOG_LEVEL_INFO, QK_PROXY_LOG_LEVEL_WARN,
                                              QK_PROXY_LOG_LEVEL_ERROR};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        capture_stderr();
        struct qk_proxy *p = logging_proxy_at(e, QK_PROXY_LOG_TEXT, levels[i], 0, NULL, 0);
        uint16_t port = qk_proxy_port(p);
        script(e, t, "chat",
               "[{\"ok\":true},{\"status\":500},{\"stream\":{\"truncate_after\":2}}]");
        assert_int_equal(
            request_with_id(port, "POST", "/api/chat/completions", t, ok_rid, CHAT_BODY), 200);
        assert_int_equal(
            request_with_id(port, "POST", "/api/chat/completions", t, bad_rid, CHAT_BODY), 502);
        assert_int_equal(
            request_with_id(port, "POST", "/api/chat/completions", t, cut_rid, STREAM_BODY), 200);
        qk_proxy_stop(p);
        char *text = release_stderr();
        char want[160];
        size_t expected = levels[i] == QK_PROXY_LOG_LEVEL_INFO ? 1 : 0;
        snprintf(want, sizeof(want), " qwen-proxy id=%s ", ok_rid);
        assert_int_equal(lines_with(text, want, " failures=-", 0, NULL, 0), expected);
        expected = levels[i] >= QK_PROXY_LOG_LEVEL_WARN ? 1 : 0;
        snprintf(want, sizeof(want), " qwen-proxy id=%s ", bad_rid);
        assert_int_equal(lines_with(text, want, " status=502 ", 0, NULL, 0), expected);
        snprintf(want, sizeof(want), "qwen-proxy: upstream: request %s attempt 1 failed", bad_rid);
        assert_int_equal(lines_with(text, want, NULL, 0, NULL, 0), expected);
        snprintf(want, sizeof(want), " qwen-proxy id=%s ", cut_rid);
        assert_int_equal(lines_with(text, want, " status=200 ", 0, line, sizeof(line)), expected);
        if (expected && !strstr(line, " failures=cut_"))
            fail_msg("a cut stream's request line names no cut: %s", line);
        if (levels[i] == QK_PROXY_LOG_LEVEL_ERROR && text[0] != '\0')
            fail_msg("--log-level error wrote: %s", text);
        assert_null(strstr(text, t));
        free(text);
    }
}

/* In the JSON format a diagnostic is one JSON object per line, like the request line. */
static void
failed_attempts_in_json(void **state)
{
    struct env *e = *state;
    char t[MC_TOKEN_MAX], tag[MC_TOKEN_MAX], rid[80], line[1024], want[160];
    mc_new_token(t, sizeof t);
    mc_new_token(tag, sizeof tag);
    snprintf(rid, sizeof(rid), "json-%s", tag);
    capture_stderr();
    struct qk_proxy *p = logging_proxy(e, QK_PROXY_LOG_JSON, 3, NULL, 0);
    script(e, t, "chat", "[{\"status\":503},{\"ok\":true}]");
    assert_int_equal(
        request_with_id(qk_proxy_port(p), "POST", "/api/chat/completions", t, rid, CHAT_BODY), 200);
    qk_proxy_stop(p);
    char *text = release_stderr();
    assert_null(strstr(text, "qwen-proxy: "));
    assert_null(strstr(text, t));
    snprintf(want, sizeof(want), "request %s attempt 1 failed: HTTP 503 (retry in ", rid);
    assert_int_equal(lines_with(text, "\"module\":\"upstream\"", rid, 0, line, sizeof(line)), 1);
    cJSON *j = cJSON_Parse(line);
    assert_true(cJSON_IsObject(j));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "level")), "warn");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "module")),
                        "upstream");
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "msg"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, want));
    cJSON_Delete(j);
    /* The request line is there too, naming the failure, and every line is an object. */
    assert_int_equal(lines_with(text, "\"id\":", rid, 0, line, sizeof(line)), 1);
    j = cJSON_Parse(line);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "level")), "info");
    const cJSON *failures = cJSON_GetObjectItemCaseSensitive(j, "failures");
    assert_int_equal(cJSON_GetArraySize(failures), 1);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetArrayItem(failures, 0)), "status_503");
    cJSON_Delete(j);
    for (const char *l = text; *l;) {
        const char *end = strchr(l, '\n');
        assert_non_null(end);
        char *one = strndup(l, (size_t)(end - l));
        cJSON *o = cJSON_Parse(one);
        assert_true(cJSON_IsObject(o));
        cJSON_Delete(o);
        free(one);
        l = end + 1;
    }
    free(text);
}

int
main(void)
{
    mc_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(index_page_and_healthz),
        cmocka_unit_test(x_cache_marks_miss_hit_and_stale),
        cmocka_unit_test(v1_models_is_converted_once_per_entry),
        cmocka_unit_test(invalid_bodies_name_the_field),
        cmocka_unit_test(gave_up_errors_name_the_attempts_and_the_last_cause),
        cmocka_unit_test(stream_without_a_first_event_in_time_is_504),
        cmocka_unit_test(stream_slow_reader_pauses_upstream),
        cmocka_unit_test(input_refusals_name_the_header),
        cmocka_unit_test(query_of_thousands_of_arguments_is_answered),
        cmocka_unit_test(protocol_errors_get_the_right_status_and_a_close),
        cmocka_unit_test(head_is_get_without_body),
        cmocka_unit_test_teardown(request_line_in_text_and_json, release_stderr_teardown),
        cmocka_unit_test_teardown(failed_attempts_are_logged_once_with_their_cause,
                                  release_stderr_teardown),
        cmocka_unit_test_teardown(failed_attempts_in_json, release_stderr_teardown),
        cmocka_unit_test_teardown(request_line_names_a_cut_and_levels_filter,
                                  release_stderr_teardown),
    };
    int rc = cmocka_run_group_tests_name("unit_proxy_e2e", tests, setup, teardown);
    curl_global_cleanup();
    return rc;
}
