/*
 * End-to-end tests of qwen-mock: the server runs in-process (qk_mock_start on
 * port 0) and the tests talk to it over loopback with libcurl (testkit/testkit.c).
 * Each test uses fresh random tokens, so the per-token state of one test never
 * leaks into another. Tests that need other server options start their own
 * instance. Every bullet of mockupstream/README.md has a test here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "testkit.h"
#include "qwenkit/common.h"
#include "qwenkit/mock.h"

#define MODEL "qwen-max-latest"
#define TOKLEN 96
#define MAX_CHUNKS 300

struct e2e {
    struct qk_mock *mock;
    uint16_t port;
};

/* ---------- helpers ---------- */

/* Asserts the status, printing the whole response when it differs. */
#define assert_status(r, code)                                                                     \
    do {                                                                                           \
        if ((r)->status != (long)(code))                                                           \
            print_message("expected %ld, got status %ld (curl %d: %s)\nbody: %.*s\n",              \
                          (long)(code), (r)->status, (int)(r)->rc, (r)->err, (int)(r)->body_len,   \
                          (r)->body);                                                              \
        assert_int_equal((r)->status, (long)(code));                                               \
    } while (0)

/* Asserts a transfer that completed (curl OK) with @p code. */
#define assert_ok_status(r, code)                                                                  \
    do {                                                                                           \
        if ((r)->rc != CURLE_OK)                                                                   \
            print_message("curl error %d: %s\n", (int)(r)->rc, (r)->err);                          \
        assert_int_equal((r)->rc, CURLE_OK);                                                       \
        assert_status(r, code);                                                                    \
    } while (0)

static struct qk_mock *
start_mock(const struct qk_mock_config *cfg)
{
    struct qk_mock *m = NULL;
    char err[256] = "";
    enum qk_err rc = qk_mock_start(cfg, &m, err, sizeof err);
    if (rc != QK_OK)
        print_message("qk_mock_start: %s\n", err);
    assert_int_equal(rc, QK_OK);
    assert_non_null(m);
    assert_true(qk_mock_port(m) > 0);
    return m;
}

/* A chat body asking @p msg; @p extra is spliced in before the closing brace. */
static const char *
chat_body(char *buf, size_t len, const char *msg, bool stream, const char *extra)
{
    snprintf(buf, len,
             "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"system\",\"content\":\"be "
             "brief\"},{\"role\":\"user\",\"content\":\"%s\"}],\"stream\":%s%s}",
             msg, stream ? "true" : "false", extra ? extra : "");
    return buf;
}

static void
chat(uint16_t port, const char *token, const char *body, struct mc_resp *r)
{
    assert_int_equal(mc_post(port, "/api/chat/completions", token, body, r), 0);
}

static void
chat_timeout(uint16_t port, const char *token, const char *body, long timeout_ms, struct mc_resp *r)
{
    struct mc_req q = {.port = port,
                       .path = "/api/chat/completions",
                       .token = token,
                       .body = body,
                       .timeout_ms = timeout_ms,
                       .headers = {"Content-Type: application/json"}};
    assert_int_equal(mc_request(&q, r), 0);
}

static void
queue(uint16_t port, const char *token, const char *route, const char *steps)
{
    long st = mc_queue(port, token, route, steps);
    if (st != 200)
        print_message("queue %s %s -> %ld\n", route, steps, st);
    assert_int_equal(st, 200);
}

/* The detail of an upstream-style error body {"detail": "..."}; caller frees. */
static char *
detail_of(const struct mc_resp *r)
{
    char *d = mc_json_string(r, "detail");
    if (!d)
        print_message("no {\"detail\"} in: %.*s\n", (int)r->body_len, r->body);
    assert_non_null(d);
    return d;
}

static void
assert_detail(const struct mc_resp *r, long status, const char *detail)
{
    assert_status(r, status);
    const char *ct = mc_header(r, "Content-Type");
    assert_non_null(ct);
    assert_non_null(strstr(ct, "application/json"));
    char *d = detail_of(r);
    assert_string_equal(d, detail);
    free(d);
}

static void
assert_detail_mentions(const struct mc_resp *r, long status, const char *needle)
{
    assert_status(r, status);
    char *d = detail_of(r);
    if (!strstr(d, needle))
        print_message("detail '%s' does not mention '%s'\n", d, needle);
    assert_non_null(strstr(d, needle));
    free(d);
}

/* The non-stream answer to @p msg: its content (caller frees) and piece count. */
static char *
ref_text(uint16_t port, const char *msg, int *pieces)
{
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    struct mc_resp r;
    chat(port, tok, chat_body(body, sizeof body, msg, false, NULL), &r);
    assert_ok_status(&r, 200);
    cJSON *root = mc_json(&r);
    assert_non_null(root);
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "choices"), 0);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(c0, "message"), "content");
    assert_true(cJSON_IsString(content));
    char *text = strdup(content->valuestring);
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "usage"), "output_tokens");
    assert_true(cJSON_IsNumber(out));
    if (pieces)
        *pieces = out->valueint;
    cJSON_Delete(root);
    mc_resp_free(&r);
    return text;
}

/* A parsed event stream: the JSON chunks and whether [DONE] ended it. */
struct stream {
    struct mc_events ev;
    cJSON *chunk[MAX_CHUNKS];
    size_t n;
    bool done;
};

static void
stream_parse(const struct mc_resp *r, struct stream *s)
{
    memset(s, 0, sizeof *s);
    mc_sse_parse(r->body, r->body_len, &s->ev);
    for (size_t i = 0; i < s->ev.n; i++) {
        if (strcmp(s->ev.data[i], "[DONE]") == 0) {
            assert_false(s->done);
            assert_int_equal(i, s->ev.n - 1); /* [DONE] only at the end */
            s->done = true;
            continue;
        }
        cJSON *c = cJSON_Parse(s->ev.data[i]);
        if (!c)
            print_message("event %zu is not JSON: %s\n", i, s->ev.data[i]);
        assert_non_null(c);
        assert_true(s->n < MAX_CHUNKS);
        s->chunk[s->n++] = c;
    }
}

static void
stream_free(struct stream *s)
{
    for (size_t i = 0; i < s->n; i++)
        cJSON_Delete(s->chunk[i]);
    mc_events_free(&s->ev);
}

static const cJSON *
chunk_choice(const struct stream *s, size_t i)
{
    const cJSON *c0 =
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(s->chunk[i], "choices"), 0);
    assert_non_null(c0);
    return c0;
}

static const char *
chunk_content(const struct stream *s, size_t i)
{
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(chunk_choice(s, i), "delta"), "content");
    assert_true(cJSON_IsString(content));
    return content->valuestring;
}

static const cJSON *
chunk_finish(const struct stream *s, size_t i)
{
    return cJSON_GetObjectItemCaseSensitive(chunk_choice(s, i), "finish_reason");
}

static bool
starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Every content extends the previous one (cumulative deltas). */
static void
assert_cumulative(const struct stream *s)
{
    for (size_t i = 1; i < s->n; i++) {
        const char *prev = chunk_content(s, i - 1), *cur = chunk_content(s, i);
        if (!starts_with(cur, prev) || strlen(cur) <= strlen(prev))
            print_message("chunk %zu '%s' does not extend '%s'\n", i, cur, prev);
        assert_true(starts_with(cur, prev));
        assert_true(strlen(cur) > strlen(prev));
    }
}

/* Concatenation of the contents of chunks [0, n). Caller frees. */
static char *
concat_contents(const struct stream *s, size_t n)
{
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(chunk_content(s, i));
    char *out = calloc(1, total);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++)
        strcat(out, chunk_content(s, i));
    return out;
}

/* Only the last chunk carries finish_reason @p finish. */
static void
assert_finish_on_last(const struct stream *s, const char *finish)
{
    assert_true(s->n > 0);
    for (size_t i = 0; i + 1 < s->n; i++)
        assert_false(cJSON_IsString(chunk_finish(s, i)));
    const cJSON *f = chunk_finish(s, s->n - 1);
    assert_true(cJSON_IsString(f));
    assert_string_equal(f->valuestring, finish);
}

static cJSON *
journal_entries(uint16_t port, const char *token, int want)
{
    cJSON *j = mc_journal_wait(port, token, want, 5000);
    assert_non_null(j);
    return j;
}

static const cJSON *
entry(const cJSON *journal, int i)
{
    const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(journal, "entries"), i);
    assert_non_null(e);
    return e;
}

static double
num(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v))
        print_message("'%s' is not a number\n", key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static const char *
str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v))
        print_message("'%s' is not a string\n", key);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static bool
flag(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    assert_true(cJSON_IsBool(v));
    return cJSON_IsTrue(v);
}

/* The journal entry's step as compact JSON, or "null". Caller frees. */
static char *
step_json(const cJSON *e)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "step");
    assert_non_null(s);
    char *out = cJSON_PrintUnformatted(s);
    assert_non_null(out);
    return out;
}

static void
assert_step(const cJSON *e, const char *want)
{
    char *s = step_json(e);
    assert_string_equal(s, want);
    cJSON_free(s);
}

/* ---------- fixtures ---------- */

static int
group_setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    mc_global_init();
    struct e2e *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    struct qk_mock_config cfg;
    qk_mock_config_init(&cfg);
    cfg.port = 0;
    char err[256] = "";
    if (qk_mock_start(&cfg, &e->mock, err, sizeof err) != QK_OK) {
        fprintf(stderr, "qk_mock_start: %s\n", err);
        free(e);
        return -1;
    }
    e->port = qk_mock_port(e->mock);
    *state = e;
    return 0;
}

static int
group_teardown(void **state)
{
    struct e2e *e = *state;
    qk_mock_stop(e->mock);
    free(e);
    mc_global_cleanup();
    return 0;
}

#define PORT (((struct e2e *)*state)->port)

/* ---------- the upstream API ---------- */

/* GET /api/models: 200, >= 6 models with id, name and info.meta. */
static void
models_list(void **state)
{
    char tok[TOKLEN];
    mc_new_token(tok, sizeof tok);
    struct mc_resp r;
    assert_int_equal(mc_get(PORT, "/api/models", tok, &r), 0);
    assert_ok_status(&r, 200);
    assert_non_null(strstr(mc_header(&r, "Content-Type"), "application/json"));
    cJSON *root = mc_json(&r);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    assert_true(cJSON_IsArray(data));
    assert_true(cJSON_GetArraySize(data) >= 6);
    const cJSON *m;
    bool found_default = false;
    cJSON_ArrayForEach(m, data)
    {
        const char *id = str(m, "id");
        str(m, "name");
        assert_string_equal(str(m, "object"), "model");
        const cJSON *info = cJSON_GetObjectItemCaseSensitive(m, "info");
        assert_true(cJSON_IsObject(info));
        assert_string_equal(str(info, "id"), id);
        str(info, "name");
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(info, "meta");
        assert_true(cJSON_IsObject(meta));
        assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(meta, "capabilities")));
        assert_true(num(meta, "max_context_length") > 0);
        if (strcmp(id, MODEL) == 0)
            found_default = true;
    }
    assert_true(found_default);
    cJSON_Delete(root);
    mc_resp_free(&r);
}

/* Non-stream completion: a chat.completion object with usage. */
static void
chat_nonstream_shape(void **state)
{
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    struct mc_resp r;
    long long before = (long long)time(NULL);
    chat(PORT, tok, chat_body(body, sizeof body, "shape?", false, NULL), &r);
    assert_ok_status(&r, 200);
    assert_non_null(strstr(mc_header(&r, "Content-Type"), "application/json"));
    cJSON *root = mc_json(&r);
    assert_non_null(root);
    assert_true(starts_with(str(root, "id"), "chatcmpl"));
    assert_string_equal(str(root, "object"), "chat.completion");
    assert_true(num(root, "created") >= (double)before - 1);
    assert_true(num(root, "created") <= (double)time(NULL) + 1);
    assert_string_equal(str(root, "model"), MODEL);
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "choices"), 0);
    assert_non_null(c0);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c0, "message");
    assert_string_equal(str(msg, "role"), "assistant");
    assert_true(strlen(str(msg, "content")) > 0);
    assert_string_equal(str(c0, "finish_reason"), "stop");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(root, "usage");
    assert_true(num(u, "input_tokens") > 0);
    assert_true(num(u, "output_tokens") > 0);
    assert_int_equal((long)num(u, "total_tokens"),
                     (long)(num(u, "input_tokens") + num(u, "output_tokens")));
    cJSON_Delete(root);
    mc_resp_free(&r);
}

/* The answer text mixes ASCII and multi-byte UTF-8 and has a repeated piece. */
static void
assert_rich_text(const struct stream *incremental, const char *text)
{
    assert_true(mc_utf8_valid(text, strlen(text)));
    bool ascii = false, multibyte = false, repeated = false;
    for (const char *p = text; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
            ascii = true;
        if ((unsigned char)*p >= 0xE0)
            multibyte = true;
    }
    for (size_t i = 1; i < incremental->n; i++)
        if (strcmp(chunk_content(incremental, i), chunk_content(incremental, i - 1)) == 0)
            repeated = true;
    assert_true(ascii);
    assert_true(multibyte);
    assert_true(repeated);
}

/* Stream shape, cumulative by default, incremental on request; all three forms of
 * the answer agree. Several messages so every answer template is exercised. */
static void
stream_shape_cumulative_and_incremental(void **state)
{
    static const char *const msgs[] = {"hello", "list fruit", "say hi", "what is 42", "a", "bb"};
    for (size_t m = 0; m < sizeof msgs / sizeof msgs[0]; m++) {
        int pieces = 0;
        char *ref = ref_text(PORT, msgs[m], &pieces);
        assert_true(pieces > 3);
        char tok[TOKLEN], body[512];
        mc_new_token(tok, sizeof tok);

        struct mc_resp r;
        chat(PORT, tok, chat_body(body, sizeof body, msgs[m], true, NULL), &r);
        assert_ok_status(&r, 200);
        assert_true(starts_with(mc_header(&r, "Content-Type"), "text/event-stream"));
        assert_non_null(mc_header(&r, "Cache-Control"));
        assert_non_null(strstr(mc_header(&r, "Cache-Control"), "no-cache"));
        assert_null(memchr(r.body, '\r', r.body_len)); /* LF line endings */
        struct stream s;
        stream_parse(&r, &s);
        assert_true(s.done);
        assert_int_equal(s.ev.comments, 0);
        assert_int_equal(s.n, (size_t)pieces); /* one event per piece */
        assert_finish_on_last(&s, "stop");
        for (size_t i = 0; i < s.n; i++) {
            assert_string_equal(str(s.chunk[i], "object"), "chat.completion.chunk");
            assert_true(starts_with(str(s.chunk[i], "id"), "chatcmpl"));
            assert_string_equal(str(s.chunk[i], "model"), MODEL);
            num(s.chunk[i], "created");
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(s.chunk[i], "usage");
            if (i + 1 < s.n) {
                assert_true(u == NULL || cJSON_IsNull(u));
            } else {
                assert_true(num(u, "input_tokens") > 0);
                assert_int_equal((long)num(u, "output_tokens"), pieces);
                assert_int_equal((long)num(u, "total_tokens"),
                                 (long)(num(u, "input_tokens") + num(u, "output_tokens")));
            }
        }
        assert_cumulative(&s);
        assert_string_equal(chunk_content(&s, s.n - 1), ref);
        stream_free(&s);
        mc_resp_free(&r);

        chat(PORT, tok, chat_body(body, sizeof body, msgs[m], true, ",\"incremental_output\":true"),
             &r);
        assert_ok_status(&r, 200);
        stream_parse(&r, &s);
        assert_true(s.done);
        assert_int_equal(s.n, (size_t)pieces);
        assert_finish_on_last(&s, "stop");
        char *joined = concat_contents(&s, s.n);
        assert_string_equal(joined, ref);
        assert_rich_text(&s, joined);
        free(joined);
        stream_free(&s);
        mc_resp_free(&r);
        free(ref);
    }
}

/* The same request gives the same text; max_tokens keeps the first N pieces. */
static void
deterministic_text_and_max_tokens(void **state)
{
    int p1 = 0, p2 = 0;
    char *a = ref_text(PORT, "determinism", &p1);
    char *b = ref_text(PORT, "determinism", &p2);
    assert_string_equal(a, b);
    assert_int_equal(p1, p2);
    char *c = ref_text(PORT, "something else entirely", NULL);
    assert_string_not_equal(a, c);

    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    struct mc_resp r;
    chat(PORT, tok, chat_body(body, sizeof body, "determinism", true, ",\"max_tokens\":3"), &r);
    assert_ok_status(&r, 200);
    struct stream s;
    stream_parse(&r, &s);
    assert_int_equal(s.n, 3);
    assert_finish_on_last(&s, "length");
    assert_true(starts_with(a, chunk_content(&s, 2)));
    assert_true(strlen(chunk_content(&s, 2)) < strlen(a));
    stream_free(&s);
    mc_resp_free(&r);

    chat(PORT, tok, chat_body(body, sizeof body, "determinism", false, ",\"max_tokens\":2"), &r);
    assert_ok_status(&r, 200);
    cJSON *root = mc_json(&r);
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "choices"), 0);
    assert_string_equal(str(c0, "finish_reason"), "length");
    assert_int_equal((long)num(cJSON_GetObjectItemCaseSensitive(root, "usage"), "output_tokens"),
                     2);
    cJSON_Delete(root);
    mc_resp_free(&r);
    free(a);
    free(b);
    free(c);
}

/* ---------- auth ---------- */

static void
auth_missing_is_401(void **state)
{
    struct mc_resp r;
    assert_int_equal(mc_get(PORT, "/api/models", NULL, &r), 0);
    assert_detail(&r, 401, "Not authenticated");
    mc_resp_free(&r);
    char body[512];
    chat(PORT, NULL, chat_body(body, sizeof body, "hi", false, NULL), &r);
    assert_detail(&r, 401, "Not authenticated");
    mc_resp_free(&r);
}

/* missing_auth_status = 403, as Open WebUI did. */
static void
auth_missing_is_403_by_option(void **state)
{
    (void)state;
    struct qk_mock_config cfg;
    qk_mock_config_init(&cfg);
    cfg.port = 0;
    cfg.missing_auth_status = 403;
    struct qk_mock *m = start_mock(&cfg);
    uint16_t port = qk_mock_port(m);
    struct mc_resp r;
    assert_int_equal(mc_get(port, "/api/models", NULL, &r), 0);
    assert_detail(&r, 403, "Not authenticated");
    mc_resp_free(&r);
    char tok[TOKLEN];
    mc_new_token(tok, sizeof tok);
    assert_int_equal(mc_get(port, "/api/models", tok, &r), 0);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
    /* A present but malformed header is still 401. */
    struct mc_req q = {.port = port, .path = "/api/models", .headers = {"Authorization: Basic x"}};
    assert_int_equal(mc_request(&q, &r), 0);
    assert_detail(&r, 401, "401 Unauthorized");
    mc_resp_free(&r);
    qk_mock_stop(m);
}

static void
auth_malformed_is_401(void **state)
{
    static const char *const bad[] = {
        "Authorization: Basic dXNlcjpwYXNz",
        "Authorization: Token abc",
        "Authorization: Bearer",
        "Authorization: Bearer a b",
        "Authorization: Bearerabc",
        "Authorization;", /* empty value */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct mc_resp r;
        struct mc_req q = {.port = PORT, .path = "/api/models", .headers = {bad[i]}};
        assert_int_equal(mc_request(&q, &r), 0);
        if (r.status != 401)
            print_message("header: %s\n", bad[i]);
        assert_detail(&r, 401, "401 Unauthorized");
        mc_resp_free(&r);
    }
}

static void
auth_lowercase_bearer_accepted(void **state)
{
    char tok[TOKLEN], hdr[160], body[512];
    mc_new_token(tok, sizeof tok);
    snprintf(hdr, sizeof hdr, "authorization: bearer %s", tok);
    struct mc_resp r;
    struct mc_req q = {.port = PORT, .path = "/api/models", .headers = {hdr}};
    assert_int_equal(mc_request(&q, &r), 0);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
    struct mc_req c = {.port = PORT,
                       .path = "/api/chat/completions",
                       .headers = {hdr, "Content-Type: application/json"},
                       .body = chat_body(body, sizeof body, "hi", false, NULL)};
    assert_int_equal(mc_request(&c, &r), 0);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
    /* The journal keys on the token itself, whatever the scheme's case. */
    cJSON *j = journal_entries(PORT, tok, 2);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries")), 2);
    cJSON_Delete(j);
}

static void
auth_revoked_is_401(void **state)
{
    char tok[TOKLEN], other[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    mc_new_token(other, sizeof other);
    struct mc_resp r;
    assert_int_equal(mc_get(PORT, "/api/models", tok, &r), 0);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
    assert_int_equal(mc_revoke(PORT, tok), 200);
    static const char expired[] =
        "Your session has expired or the token is invalid. Please sign in again.";
    assert_int_equal(mc_get(PORT, "/api/models", tok, &r), 0);
    assert_detail(&r, 401, expired);
    mc_resp_free(&r);
    chat(PORT, tok, chat_body(body, sizeof body, "hi", true, NULL), &r);
    assert_detail(&r, 401, expired);
    mc_resp_free(&r);
    assert_int_equal(mc_get(PORT, "/api/models", other, &r), 0);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
}

/* A revocation with delay_ms answers each later request 401 after that delay. */
static void
auth_revoked_with_delay_is_a_slow_401(void **state)
{
    (void)state;
    char tok[TOKLEN], json[128];
    mc_new_token(tok, sizeof tok);
    snprintf(json, sizeof json, "{\"token\":\"%s\",\"delay_ms\":150}", tok);
    struct mc_resp r;
    assert_int_equal(mc_post(PORT, "/__mock/tokens/revoke", NULL, json, &r), 0);
    assert_int_equal(r.status, 200);
    mc_resp_free(&r);
    int64_t t0 = qk_now_ms();
    assert_int_equal(mc_get(PORT, "/api/models", tok, &r), 0);
    int64_t took = qk_now_ms() - t0;
    assert_detail(&r, 401,
                  "Your session has expired or the token is invalid. Please sign in again.");
    mc_resp_free(&r);
    assert_true(took >= 145);
    assert_true(took < 2000);
    assert_int_equal(
        mc_post(PORT, "/__mock/tokens/revoke", NULL, "{\"token\":\"x\",\"delay_ms\":-1}", &r), 0);
    assert_int_equal(r.status, 400);
    mc_resp_free(&r);
}

/* ---------- request errors ---------- */

static void
errors_bad_json(void **state)
{
    static const char *const bodies[] = {"{not json", "[1,2]", "\"text\"", "", "{\"model\":"};
    char tok[TOKLEN];
    mc_new_token(tok, sizeof tok);
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        struct mc_resp r;
        chat(PORT, tok, bodies[i], &r);
        if (r.status != 400)
            print_message("body: %s\n", bodies[i]);
        assert_detail(&r, 400, "Invalid JSON body");
        mc_resp_free(&r);
    }
}

static void
errors_wrong_fields(void **state)
{
    static const struct {
        const char *body;
        const char *mention;
    } cases[] = {
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "Field required: model"},
        {"{\"model\":5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model"},
        {"{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
         "Model not found"},
        {"{\"model\":\"" MODEL "\"}", "messages"},
        {"{\"model\":\"" MODEL "\",\"messages\":[]}", "messages"},
        {"{\"model\":\"" MODEL "\",\"messages\":\"hi\"}", "messages"},
        {"{\"model\":\"" MODEL "\",\"messages\":[\"hi\"]}", "messages[0]"},
        {"{\"model\":\"" MODEL "\",\"messages\":[{\"content\":\"x\"}]}", "messages[0].role"},
        {"{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
         "{\"role\":\"user\",\"content\":7}]}",
         "messages[1].content"},
        {"{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"stream\":\"yes\"}",
         "stream"},
        {"{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"incremental_output\":1}",
         "incremental_output"},
        {"{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"max_tokens\":0}",
         "max_tokens"},
        {"{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"max_tokens\":1.5}",
         "max_tokens"},
        {"{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"max_tokens\":\"3\"}",
         "max_tokens"},
    };
    char tok[TOKLEN];
    mc_new_token(tok, sizeof tok);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mc_resp r;
        chat(PORT, tok, cases[i].body, &r);
        if (r.status != 400)
            print_message("body: %s\n", cases[i].body);
        assert_detail_mentions(&r, 400, cases[i].mention);
        mc_resp_free(&r);
    }
    /* What real clients also send is accepted: array content, extra fields. */
    static const char ok_body[] =
        "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
        "\"text\",\"text\":\"hi\"}]}],\"stream\":false,\"incremental_output\":false,"
        "\"session_id\":\"s\",\"chat_id\":\"c\",\"id\":\"i\",\"chat_type\":\"t2t\","
        "\"feature_config\":{\"thinking_enabled\":false},\"temperature\":0.5,\"size\":\"1:1\","
        "\"max_tokens\":4}";
    struct mc_resp r;
    chat(PORT, tok, ok_body, &r);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
}

/* A server with small limits: max_body, journal bounds. */
static struct qk_mock *
start_small(void)
{
    struct qk_mock_config cfg;
    qk_mock_config_init(&cfg);
    cfg.port = 0;
    cfg.max_body = 256;
    cfg.journal_per_token = 3;
    cfg.journal_total = 5;
    return start_mock(&cfg);
}

static void
errors_body_too_large_is_413(void **state)
{
    (void)state;
    struct qk_mock *m = start_small();
    uint16_t port = qk_mock_port(m);
    char tok[TOKLEN], body[1024], pad[600];
    mc_new_token(tok, sizeof tok);
    memset(pad, 'x', 300);
    pad[300] = '\0';
    struct mc_resp r;
    chat(port, tok, chat_body(body, sizeof body, pad, false, NULL), &r);
    assert_detail(&r, 413, "Request body too large");
    mc_resp_free(&r);
    /* Without Content-Length (chunked upload) too. */
    struct mc_req q = {.port = port,
                       .path = "/api/chat/completions",
                       .token = tok,
                       .body = body,
                       .chunked_upload = true};
    assert_int_equal(mc_request(&q, &r), 0);
    assert_detail(&r, 413, "Request body too large");
    mc_resp_free(&r);
    /* Just under the limit is fine. */
    pad[60] = '\0';
    chat(port, tok, chat_body(body, sizeof body, pad, false, NULL), &r);
    assert_true(strlen(body) <= 256);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
    qk_mock_stop(m);
}

static void
errors_unknown_path_and_wrong_method(void **state)
{
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    struct mc_resp r;
    static const char *const paths[] = {"/api/nope", "/", "/api/chat", "/api/models/x"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        assert_int_equal(mc_get(PORT, paths[i], tok, &r), 0);
        assert_detail(&r, 404, "Not Found");
        mc_resp_free(&r);
    }
    assert_int_equal(mc_get(PORT, "/api/chat/completions", tok, &r), 0);
    assert_detail(&r, 405, "Method Not Allowed");
    assert_non_null(mc_header(&r, "Allow"));
    assert_string_equal(mc_header(&r, "Allow"), "POST");
    mc_resp_free(&r);
    assert_int_equal(
        mc_post(PORT, "/api/models", tok, chat_body(body, sizeof body, "x", false, NULL), &r), 0);
    assert_detail(&r, 405, "Method Not Allowed");
    assert_non_null(mc_header(&r, "Allow"));
    assert_string_equal(mc_header(&r, "Allow"), "GET");
    mc_resp_free(&r);
    struct mc_req q = {.port = PORT, .path = "/api/models", .token = tok, .method = "DELETE"};
    assert_int_equal(mc_request(&q, &r), 0);
    assert_detail(&r, 405, "Method Not Allowed");
    assert_string_equal(mc_header(&r, "Allow"), "GET");
    mc_resp_free(&r);
}

/* ---------- fault-injection steps ---------- */

static void
step_status_body_retry_after(void **state)
{
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    queue(PORT, tok, "chat",
          "[{\"status\":500},{\"status\":418,\"body\":\"teapot!\",\"content_type\":"
          "\"text/plain\"},{\"status\":429,\"retry_after\":2},{\"status\":400,\"body\":"
          "\"{\\\"detail\\\":\\\"custom\\\"}\"}]");
    chat_body(body, sizeof body, "hi", false, NULL);
    struct mc_resp r;
    chat(PORT, tok, body, &r);
    assert_detail(&r, 500, "Mock error 500");
    assert_null(mc_header(&r, "Retry-After"));
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_status(&r, 418);
    assert_string_equal(r.body, "teapot!");
    assert_true(starts_with(mc_header(&r, "Content-Type"), "text/plain"));
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_detail(&r, 429, "Mock error 429");
    assert_non_null(mc_header(&r, "Retry-After"));
    assert_string_equal(mc_header(&r, "Retry-After"), "2");
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_detail(&r, 400, "custom");
    mc_resp_free(&r);
    chat(PORT, tok, body, &r); /* steps ran out: normal again */
    assert_ok_status(&r, 200);
    assert_null(mc_header(&r, "Retry-After"));
    mc_resp_free(&r);
}

/* Extra response headers ride on normal answers, errors and streams alike. */
static void
step_extra_headers(void **state)
{
    (void)state;
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    queue(PORT, tok, "chat",
          "[{\"ok\":true,\"headers\":{\"Connection\":\"X-Hop\",\"X-Hop\":\"1\","
          "\"Keep-Alive\":\"timeout=5\",\"X-Upstream\":\"yes\"}},"
          "{\"status\":503,\"headers\":{\"X-Upstream\":\"err\"}},"
          "{\"stream\":{\"chunks\":2},\"headers\":{\"X-Upstream\":\"sse\"}}]");
    chat_body(body, sizeof body, "hi", false, NULL);
    struct mc_resp r;
    chat(PORT, tok, body, &r);
    assert_ok_status(&r, 200);
    assert_string_equal(mc_header(&r, "X-Hop"), "1");
    assert_string_equal(mc_header(&r, "Keep-Alive"), "timeout=5");
    assert_string_equal(mc_header(&r, "X-Upstream"), "yes");
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_detail(&r, 503, "Mock error 503");
    assert_string_equal(mc_header(&r, "X-Upstream"), "err");
    mc_resp_free(&r);
    chat_body(body, sizeof body, "hi", true, NULL);
    chat(PORT, tok, body, &r);
    assert_ok_status(&r, 200);
    assert_string_equal(mc_header(&r, "X-Upstream"), "sse");
    mc_resp_free(&r);
    chat(PORT, tok, body, &r); /* steps ran out: no extra headers */
    assert_null(mc_header(&r, "X-Upstream"));
    mc_resp_free(&r);
}

static void
assert_html(const struct mc_resp *r, long status, const char *needle)
{
    assert_ok_status(r, status);
    const char *ct = mc_header(r, "Content-Type");
    assert_non_null(ct);
    assert_true(starts_with(ct, "text/html"));
    assert_non_null(strstr(r->body, "<html"));
    if (needle)
        assert_non_null(strstr(r->body, needle));
    assert_true(mc_utf8_valid(r->body, r->body_len));
}

/* Every LF of the body is part of a CRLF, and there is at least one. */
static void
assert_crlf_lines(const char *body, size_t len)
{
    size_t lf = 0;
    for (size_t i = 0; i < len; i++)
        if (body[i] == '\n') {
            assert_true(i > 0 && body[i - 1] == '\r');
            lf++;
        }
    assert_true(lf > 2);
}

static void
step_html_pages(void **state)
{
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    queue(PORT, tok, "chat",
          "[{\"html\":\"captcha\"},{\"html\":\"waf\"},{\"html\":\"gateway\"},"
          "{\"html\":\"gateway\",\"status\":504},{\"html\":\"captcha\",\"status\":403},"
          "{\"html\":\"waf\",\"retry_after\":5}]");
    chat_body(body, sizeof body, "hi", true, NULL);
    struct mc_resp r;
    chat(PORT, tok, body, &r);
    assert_html(&r, 200, NULL);
    assert_null(mc_header(&r, "Server"));
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_html(&r, 405, "blocked");
    assert_non_null(mc_header(&r, "Server"));
    assert_string_equal(mc_header(&r, "Server"), "Tengine");
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_html(&r, 502, "502 Bad Gateway");
    assert_crlf_lines(r.body, r.body_len);
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_html(&r, 504, "504 Gateway Time-out");
    assert_crlf_lines(r.body, r.body_len);
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_html(&r, 403, NULL);
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_html(&r, 405, "blocked");
    assert_string_equal(mc_header(&r, "Retry-After"), "5");
    mc_resp_free(&r);
}

static void
step_inband_errors(void **state)
{
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    queue(PORT, tok, "chat", "[{\"inband_error\":\"waf\"},{\"inband_error\":\"quota\"}]");
    chat_body(body, sizeof body, "hi", true, NULL);
    struct mc_resp r;
    struct stream s;

    chat(PORT, tok, body, &r);
    assert_ok_status(&r, 200);
    assert_true(starts_with(mc_header(&r, "Content-Type"), "text/event-stream"));
    stream_parse(&r, &s);
    assert_int_equal(s.ev.n, 1);
    assert_false(s.done);
    const cJSON *ret = cJSON_GetObjectItemCaseSensitive(s.chunk[0], "ret");
    assert_true(cJSON_IsArray(ret));
    assert_string_equal(cJSON_GetArrayItem(ret, 0)->valuestring, "FAIL_SYS_USER_VALIDATE");
    assert_null(cJSON_GetObjectItemCaseSensitive(s.chunk[0], "choices"));
    stream_free(&s);
    mc_resp_free(&r);

    chat(PORT, tok, body, &r);
    assert_ok_status(&r, 200);
    assert_true(starts_with(mc_header(&r, "Content-Type"), "text/event-stream"));
    stream_parse(&r, &s);
    assert_int_equal(s.ev.n, 1);
    assert_false(s.done);
    assert_false(flag(s.chunk[0], "success"));
    assert_string_equal(str(cJSON_GetObjectItemCaseSensitive(s.chunk[0], "data"), "code"),
                        "RateLimited");
    stream_free(&s);
    mc_resp_free(&r);

    cJSON *j = journal_entries(PORT, tok, 2);
    assert_int_equal((long)num(entry(j, 0), "status"), 200);
    assert_int_equal((long)num(entry(j, 0), "events_sent"), 1);
    assert_step(entry(j, 1), "{\"inband_error\":\"quota\"}");
    cJSON_Delete(j);
}

static void
step_delay(void **state)
{
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    queue(PORT, tok, "any",
          "[{\"delay_ms\":300},{\"delay_ms\":200,\"status\":503},"
          "{\"delay_ms\":150,\"stream\":{\"chunks\":2}}]");
    struct mc_resp r;
    assert_int_equal(mc_get(PORT, "/api/models", tok, &r), 0);
    assert_ok_status(&r, 200);
    assert_true(r.end_ms - r.start_ms >= 299);
    mc_resp_free(&r);
    chat(PORT, tok, chat_body(body, sizeof body, "hi", true, NULL), &r);
    assert_detail(&r, 503, "Mock error 503");
    assert_true(r.end_ms - r.start_ms >= 199);
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_ok_status(&r, 200);
    assert_true(r.end_ms - r.start_ms >= 149);
    /* The delay is before the headers: the first body byte comes after it too. */
    assert_true(r.n_chunks > 0);
    assert_true(r.chunks[0].ms - r.start_ms >= 149);
    struct stream s;
    stream_parse(&r, &s);
    assert_int_equal(s.n, 2);
    stream_free(&s);
    mc_resp_free(&r);
    cJSON *j = journal_entries(PORT, tok, 3);
    assert_true(num(entry(j, 0), "finished_ms") - num(entry(j, 0), "received_ms") >= 300);
    assert_true(num(entry(j, 1), "finished_ms") - num(entry(j, 1), "received_ms") >= 200);
    cJSON_Delete(j);
}

static void
step_drop(void **state)
{
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    queue(PORT, tok, "chat", "[{\"drop\":true},{\"drop\":true,\"delay_ms\":150}]");
    chat_body(body, sizeof body, "hi", false, NULL);
    struct mc_resp r;
    chat(PORT, tok, body, &r);
    if (r.rc != CURLE_GOT_NOTHING)
        print_message("curl %d: %s\n", (int)r.rc, r.err);
    assert_int_equal(r.rc, CURLE_GOT_NOTHING);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.body_len, 0);
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_int_equal(r.rc, CURLE_GOT_NOTHING);
    assert_true(r.end_ms - r.start_ms >= 149);
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
    cJSON *j = journal_entries(PORT, tok, 3);
    assert_step(entry(j, 0), "{\"drop\":true}");
    assert_false(flag(entry(j, 0), "client_gone"));
    assert_int_equal((long)num(entry(j, 0), "bytes_sent"), 0);
    cJSON_Delete(j);
}

static void
step_ok_after_failures(void **state)
{
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    queue(PORT, tok, "chat", "[{\"status\":500},{\"status\":502},{\"ok\":true}]");
    chat_body(body, sizeof body, "hi", false, NULL);
    static const long want[] = {500, 502, 200, 200};
    for (size_t i = 0; i < 4; i++) {
        struct mc_resp r;
        chat(PORT, tok, body, &r);
        assert_ok_status(&r, want[i]);
        mc_resp_free(&r);
    }
    cJSON *j = journal_entries(PORT, tok, 4);
    assert_step(entry(j, 0), "{\"status\":500}");
    assert_step(entry(j, 1), "{\"status\":502}");
    assert_step(entry(j, 2), "{\"ok\":true}");
    assert_step(entry(j, 3), "null");
    cJSON_Delete(j);
}

/* A route's own queue first, then "any"; the models and chat queues are separate. */
static void
step_routes(void **state)
{
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    queue(PORT, tok, "models", "[{\"status\":501}]");
    queue(PORT, tok, "chat", "[{\"status\":502}]");
    queue(PORT, tok, "any", "[{\"status\":503},{\"status\":504}]");
    chat_body(body, sizeof body, "hi", false, NULL);
    struct mc_resp r;
    chat(PORT, tok, body, &r);
    assert_ok_status(&r, 502);
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_ok_status(&r, 503);
    mc_resp_free(&r);
    assert_int_equal(mc_get(PORT, "/api/models", tok, &r), 0);
    assert_ok_status(&r, 501);
    mc_resp_free(&r);
    assert_int_equal(mc_get(PORT, "/api/models", tok, &r), 0);
    assert_ok_status(&r, 504);
    mc_resp_free(&r);
    assert_int_equal(mc_get(PORT, "/api/models", tok, &r), 0);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
    chat(PORT, tok, body, &r);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
    /* Requests that never reach a route (404) take no step. */
    queue(PORT, tok, "any", "[{\"status\":505}]");
    assert_int_equal(mc_get(PORT, "/api/nope", tok, &r), 0);
    assert_status(&r, 404);
    mc_resp_free(&r);
    assert_int_equal(mc_get(PORT, "/api/models", tok, &r), 0);
    assert_ok_status(&r, 505);
    mc_resp_free(&r);
}

/* ---------- stream shaping ---------- */

/* Queues @p steps on chat for a fresh token and streams the answer to @p msg. */
static void
shaped(uint16_t port, char *tok, const char *steps, const char *msg, const char *extra,
       struct mc_resp *r)
{
    char body[512];
    mc_new_token(tok, TOKLEN);
    queue(port, tok, "chat", steps);
    chat(port, tok, chat_body(body, sizeof body, msg, true, extra), r);
}

static void
stream_chunks(void **state)
{
    char tok[TOKLEN];
    char *ref = ref_text(PORT, "chunks", NULL);
    struct mc_resp r;
    struct stream s;
    shaped(PORT, tok, "[{\"stream\":{\"chunks\":3}}]", "chunks", NULL, &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_true(s.done);
    assert_int_equal(s.n, 3);
    assert_cumulative(&s);
    assert_finish_on_last(&s, "stop");
    assert_string_equal(chunk_content(&s, 2), ref);
    stream_free(&s);
    mc_resp_free(&r);

    shaped(PORT, tok, "[{\"stream\":{\"chunks\":5}}]", "chunks", ",\"incremental_output\":true",
           &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_int_equal(s.n, 5);
    char *joined = concat_contents(&s, s.n);
    assert_string_equal(joined, ref);
    for (size_t i = 0; i < s.n; i++) /* cut at character boundaries */
        assert_true(mc_utf8_valid(chunk_content(&s, i), strlen(chunk_content(&s, i))));
    free(joined);
    stream_free(&s);
    mc_resp_free(&r);
    free(ref);
}

static void
stream_chunk_delay(void **state)
{
    char tok[TOKLEN];
    struct mc_resp r;
    shaped(PORT, tok, "[{\"stream\":{\"chunks\":4,\"chunk_delay_ms\":120}}]", "delay", NULL, &r);
    assert_ok_status(&r, 200);
    int64_t t[8];
    size_t n = mc_event_times(&r, t, 8);
    assert_int_equal(n, 5); /* 4 pieces + [DONE] */
    for (size_t i = 1; i < n; i++) {
        if (t[i] - t[i - 1] < 60)
            print_message("events %zu and %zu arrived %lld ms apart\n", i - 1, i,
                          (long long)(t[i] - t[i - 1]));
        assert_true(t[i] - t[i - 1] >= 60);
    }
    assert_true(t[n - 1] - t[0] >= 4 * 120 - 40);
    mc_resp_free(&r);
    cJSON *j = journal_entries(PORT, tok, 1);
    const cJSON *ems = cJSON_GetObjectItemCaseSensitive(entry(j, 0), "event_ms");
    assert_int_equal(cJSON_GetArraySize(ems), 5);
    for (int i = 1; i < 5; i++)
        assert_true(cJSON_GetArrayItem(ems, i)->valuedouble -
                        cJSON_GetArrayItem(ems, i - 1)->valuedouble >=
                    119);
    cJSON_Delete(j);
}

static void
stream_split_utf8(void **state)
{
    char tok[TOKLEN];
    struct mc_resp plain, split;
    /* Without the envelope the bodies do not depend on time or sequence numbers. */
    shaped(PORT, tok, "[{\"stream\":{\"envelope\":false}}]", "utf8 please", NULL, &plain);
    assert_ok_status(&plain, 200);
    shaped(PORT, tok, "[{\"stream\":{\"envelope\":false,\"split_utf8\":true}}]", "utf8 please",
           NULL, &split);
    assert_ok_status(&split, 200);
    size_t inside = 0;
    for (size_t i = 0; i < split.n_chunks; i++)
        if (split.chunks[i].len && ((unsigned char)split.chunks[i].data[0] & 0xC0) == 0x80)
            inside++;
    if (inside == 0)
        print_message("%zu pieces received, none starts inside a character\n", split.n_chunks);
    assert_true(inside >= 1);
    assert_true(mc_utf8_valid(split.body, split.body_len));
    assert_int_equal(split.body_len, plain.body_len);
    assert_memory_equal(split.body, plain.body, plain.body_len);
    struct stream s;
    stream_parse(&split, &s);
    assert_true(s.done);
    char *ref = ref_text(PORT, "utf8 please", NULL);
    assert_string_equal(chunk_content(&s, s.n - 1), ref);
    free(ref);
    stream_free(&s);
    mc_resp_free(&plain);
    mc_resp_free(&split);
}

static void
stream_line_endings(void **state)
{
    char tok[TOKLEN];
    int pieces = 0;
    char *ref = ref_text(PORT, "eol", &pieces);
    struct mc_resp r;
    struct stream s;

    shaped(PORT, tok, "[{\"stream\":{\"crlf\":true}}]", "eol", NULL, &r);
    assert_ok_status(&r, 200);
    assert_non_null(strstr(r.body, "\r\n\r\n"));
    assert_crlf_lines(r.body, r.body_len);
    stream_parse(&r, &s);
    assert_true(s.done);
    assert_int_equal(s.n, (size_t)pieces);
    assert_string_equal(chunk_content(&s, s.n - 1), ref);
    stream_free(&s);
    mc_resp_free(&r);

    shaped(PORT, tok, "[{\"stream\":{\"cr\":true}}]", "eol", NULL, &r);
    assert_ok_status(&r, 200);
    assert_null(memchr(r.body, '\n', r.body_len));
    assert_non_null(strstr(r.body, "\r\r"));
    stream_parse(&r, &s);
    assert_true(s.done);
    assert_int_equal(s.n, (size_t)pieces);
    assert_string_equal(chunk_content(&s, s.n - 1), ref);
    stream_free(&s);
    mc_resp_free(&r);
    free(ref);
}

static void
stream_comments(void **state)
{
    char tok[TOKLEN];
    int pieces = 0;
    char *ref = ref_text(PORT, "comments", &pieces);
    struct mc_resp r;
    shaped(PORT, tok, "[{\"stream\":{\"comments\":true}}]", "comments", NULL, &r);
    assert_ok_status(&r, 200);
    struct stream s;
    stream_parse(&r, &s);
    assert_true(s.done);
    assert_int_equal(s.n, (size_t)pieces);
    assert_true(s.ev.comments >= (size_t)pieces);
    assert_true(starts_with(r.body, ": keep-alive\n"));
    /* Every completion event is preceded by a keep-alive comment line. */
    size_t seen = 0;
    for (const char *p = strstr(r.body, "data: {"); p; p = strstr(p + 1, "data: {")) {
        assert_true(p - r.body >= 13);
        assert_memory_equal(p - 13, ": keep-alive\n", 13);
        seen++;
    }
    assert_int_equal(seen, (size_t)pieces);
    assert_string_equal(chunk_content(&s, s.n - 1), ref);
    stream_free(&s);
    mc_resp_free(&r);
    free(ref);
}

static void
stream_coalesce(void **state)
{
    char tok[TOKLEN];
    int pieces = 0;
    char *ref = ref_text(PORT, "coalesce", &pieces);
    struct mc_resp r;
    struct stream s;

    /* All events in one write. */
    shaped(PORT, tok, "[{\"stream\":{\"coalesce\":true}}]", "coalesce", NULL, &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_true(s.done);
    assert_int_equal(s.n, (size_t)pieces);
    assert_string_equal(chunk_content(&s, s.n - 1), ref);
    stream_free(&s);
    mc_resp_free(&r);
    cJSON *j = journal_entries(PORT, tok, 1);
    const cJSON *ems = cJSON_GetObjectItemCaseSensitive(entry(j, 0), "event_ms");
    assert_int_equal(cJSON_GetArraySize(ems), pieces + 1);
    assert_int_equal((long)num(entry(j, 0), "events_sent"), pieces + 1);
    for (int i = 1; i <= pieces; i++)
        assert_true(cJSON_GetArrayItem(ems, i)->valuedouble ==
                    cJSON_GetArrayItem(ems, 0)->valuedouble);
    cJSON_Delete(j);

    /* Two events per write, 100 ms between writes: events arrive in pairs. */
    shaped(PORT, tok, "[{\"stream\":{\"chunks\":4,\"coalesce\":2,\"chunk_delay_ms\":100}}]",
           "coalesce", NULL, &r);
    assert_ok_status(&r, 200);
    int64_t t[8];
    assert_int_equal(mc_event_times(&r, t, 8), 5);
    assert_true(t[1] - t[0] < 50);
    assert_true(t[2] - t[1] >= 50);
    assert_true(t[3] - t[2] < 50);
    assert_true(t[4] - t[3] >= 50);
    mc_resp_free(&r);
    j = journal_entries(PORT, tok, 1);
    ems = cJSON_GetObjectItemCaseSensitive(entry(j, 0), "event_ms");
    assert_int_equal(cJSON_GetArraySize(ems), 5);
    double e[5];
    for (int i = 0; i < 5; i++)
        e[i] = cJSON_GetArrayItem(ems, i)->valuedouble;
    assert_true(e[0] == e[1] && e[2] == e[3]);
    assert_true(e[2] - e[1] >= 99 && e[4] - e[3] >= 99);
    cJSON_Delete(j);
    free(ref);
}

static void
stream_truncate_after(void **state)
{
    char tok[TOKLEN];
    struct mc_resp r;
    shaped(PORT, tok, "[{\"stream\":{\"truncate_after\":2}}]", "truncate", NULL, &r);
    assert_status(&r, 200);
    if (r.rc == CURLE_OK || r.rc == CURLE_OPERATION_TIMEDOUT)
        print_message("curl %d: %s\n", (int)r.rc, r.err);
    assert_int_not_equal(r.rc, CURLE_OK);
    assert_int_not_equal(r.rc, CURLE_OPERATION_TIMEDOUT);
    assert_true(r.end_ms - r.start_ms < 5000);
    struct stream s;
    stream_parse(&r, &s);
    assert_false(s.done);
    assert_int_equal(s.ev.n, 2);
    assert_null(strstr(r.body, "[DONE]"));
    stream_free(&s);
    mc_resp_free(&r);
    cJSON *j = journal_entries(PORT, tok, 1);
    assert_int_equal((long)num(entry(j, 0), "events_sent"), 2);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(entry(j, 0), "event_ms")),
                     2);
    assert_false(flag(entry(j, 0), "client_gone"));
    assert_int_equal((long)num(entry(j, 0), "status"), 200);
    cJSON_Delete(j);
}

static void
stream_stall_after(void **state)
{
    char tok[TOKLEN], body[512];
    struct mc_resp r;
    mc_new_token(tok, sizeof tok);
    queue(PORT, tok, "chat", "[{\"stream\":{\"stall_after\":1}}]");
    chat_timeout(PORT, tok, chat_body(body, sizeof body, "stall", true, NULL), 800, &r);
    assert_status(&r, 200);
    assert_int_equal(r.rc, CURLE_OPERATION_TIMEDOUT);
    struct stream s;
    stream_parse(&r, &s);
    assert_int_equal(s.n, 1);
    assert_false(s.done);
    stream_free(&s);
    mc_resp_free(&r);
    /* The mock notices the client left (within idle_check_ms) and journals it. */
    int64_t gave_up = qk_now_ms();
    cJSON *j = journal_entries(PORT, tok, 1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries")), 1);
    assert_true(qk_now_ms() - gave_up < 4000);
    assert_true(flag(entry(j, 0), "client_gone"));
    assert_int_equal((long)num(entry(j, 0), "events_sent"), 1);
    cJSON_Delete(j);

    /* stall_ms bounds the stall: the mock closes, the client did not leave. */
    mc_new_token(tok, sizeof tok);
    queue(PORT, tok, "chat", "[{\"stream\":{\"stall_after\":2,\"stall_ms\":300}}]");
    chat_timeout(PORT, tok, body, 5000, &r);
    assert_status(&r, 200);
    assert_int_not_equal(r.rc, CURLE_OK);
    assert_int_not_equal(r.rc, CURLE_OPERATION_TIMEDOUT);
    assert_true(r.end_ms - r.start_ms >= 299);
    stream_parse(&r, &s);
    assert_int_equal(s.n, 2);
    stream_free(&s);
    mc_resp_free(&r);
    j = journal_entries(PORT, tok, 1);
    assert_false(flag(entry(j, 0), "client_gone"));
    assert_int_equal((long)num(entry(j, 0), "events_sent"), 2);
    cJSON_Delete(j);
}

static void
stream_final_repeat(void **state)
{
    char tok[TOKLEN];
    int pieces = 0;
    char *ref = ref_text(PORT, "repeat", &pieces);
    struct mc_resp r;
    struct stream s;
    shaped(PORT, tok, "[{\"stream\":{\"final_repeat\":true}}]", "repeat", NULL, &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_true(s.done);
    assert_int_equal(s.n, (size_t)pieces + 1);
    assert_finish_on_last(&s, "stop");
    assert_string_equal(chunk_content(&s, s.n - 2), ref);
    assert_string_equal(chunk_content(&s, s.n - 1), ref);
    stream_free(&s);
    mc_resp_free(&r);

    shaped(PORT, tok, "[{\"stream\":{\"final_repeat\":true}}]", "repeat",
           ",\"incremental_output\":true", &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_int_equal(s.n, (size_t)pieces + 1);
    assert_finish_on_last(&s, "stop");
    char *joined = concat_contents(&s, s.n - 1);
    assert_string_equal(joined, ref);
    assert_string_equal(chunk_content(&s, s.n - 1), ref);
    free(joined);
    stream_free(&s);
    mc_resp_free(&r);
    free(ref);
}

static void
stream_forced_cumulative(void **state)
{
    char tok[TOKLEN];
    int pieces = 0;
    char *ref = ref_text(PORT, "forced", &pieces);
    struct mc_resp r;
    struct stream s;
    /* Forced incremental although the request did not ask for it. */
    shaped(PORT, tok, "[{\"stream\":{\"cumulative\":false}}]", "forced", NULL, &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_int_equal(s.n, (size_t)pieces);
    char *joined = concat_contents(&s, s.n);
    assert_string_equal(joined, ref);
    assert_true(strlen(chunk_content(&s, s.n - 1)) < strlen(ref));
    free(joined);
    stream_free(&s);
    mc_resp_free(&r);
    /* Forced cumulative although the request asked for incremental output. */
    shaped(PORT, tok, "[{\"stream\":{\"cumulative\":true}}]", "forced",
           ",\"incremental_output\":true", &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_int_equal(s.n, (size_t)pieces);
    assert_cumulative(&s);
    assert_string_equal(chunk_content(&s, s.n - 1), ref);
    stream_free(&s);
    mc_resp_free(&r);
    free(ref);
}

/* The delta of chunk @p i, NULL for a chunk with "choices": []. */
static const cJSON *
chunk_delta(const struct stream *s, size_t i)
{
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(s->chunk[i], "choices");
    assert_true(cJSON_IsArray(choices));
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(choices, 0), "delta");
}

/* What a caller reading @p s ends up with; chunks without content add nothing. */
static char *
text_of(const struct stream *s, bool cumulative)
{
    char *out = strdup("");
    assert_non_null(out);
    for (size_t i = 0; i < s->n; i++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(chunk_delta(s, i), "content");
        if (!cJSON_IsString(c))
            continue;
        size_t have = cumulative ? 0 : strlen(out);
        if (cumulative)
            assert_true(starts_with(c->valuestring, out));
        char *next = malloc(have + strlen(c->valuestring) + 1);
        assert_non_null(next);
        memcpy(next, out, have);
        strcpy(next + have, c->valuestring);
        free(out);
        out = next;
    }
    return out;
}

/* Chunks that carry no text (an empty last delta, "choices": [], a role-only delta)
 * leave the caller's text as the non-stream answer, in both delta modes and with the
 * other stream keys. */
static void
stream_text_free_chunks(void **state)
{
    static const struct {
        const char *stream; /* the step's stream object, without braces */
        size_t extra;       /* chunks beyond the text pieces */
    } shapes[] = {
        {"\"final_empty_delta\":true", 1},
        {"\"empty_choices\":true", 2},
        {"\"no_content_delta\":true", 2},
        {"\"final_empty_delta\":true,\"empty_choices\":true,\"no_content_delta\":true,"
         "\"chunks\":4,\"chunk_delay_ms\":20,\"split_utf8\":true,\"comments\":true",
         5},
    };
    char *ref = ref_text(PORT, "textless", NULL);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        for (int cum = 0; cum < 2; cum++) {
            char tok[TOKLEN], steps[512];
            struct mc_resp r;
            struct stream s;
            snprintf(steps, sizeof steps, "[{\"stream\":{%s,\"chunks\":3}}]", shapes[k].stream);
            if (k == 3) /* its own chunks count */
                snprintf(steps, sizeof steps, "[{\"stream\":{%s}}]", shapes[k].stream);
            shaped(PORT, tok, steps, "textless", cum ? NULL : ",\"incremental_output\":true", &r);
            assert_ok_status(&r, 200);
            assert_true(mc_utf8_valid(r.body, r.body_len));
            stream_parse(&r, &s);
            assert_true(s.done);
            size_t pieces = k == 3 ? 4 : 3;
            assert_int_equal(s.n, pieces + shapes[k].extra);
            char *text = text_of(&s, cum);
            if (strcmp(text, ref) != 0)
                print_message("%s (%s): '%s' != '%s'\n", steps, cum ? "cumulative" : "incremental",
                              text, ref);
            assert_string_equal(text, ref);
            free(text);
            /* One finish_reason, on the last chunk that has a choice. */
            size_t fin_at = SIZE_MAX, n_fin = 0, n_usage = 0;
            for (size_t i = 0; i < s.n; i++) {
                const cJSON *c0 =
                    cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(s.chunk[i], "choices"), 0);
                if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c0, "finish_reason"))) {
                    fin_at = i;
                    n_fin++;
                }
                n_usage += cJSON_GetObjectItemCaseSensitive(s.chunk[i], "usage") != NULL;
            }
            assert_int_equal(n_fin, 1);
            assert_int_equal(n_usage, 1);
            bool empty_choices = strstr(shapes[k].stream, "empty_choices") != NULL;
            assert_int_equal(fin_at, s.n - 1 - (empty_choices ? 1 : 0));
            const cJSON *fin_delta = chunk_delta(&s, fin_at);
            if (strstr(shapes[k].stream, "final_empty_delta")) {
                assert_true(cJSON_IsObject(fin_delta));
                assert_null(fin_delta->child); /* delta: {} */
            }
            if (empty_choices) {
                assert_null(chunk_delta(&s, 0));
                assert_null(chunk_delta(&s, s.n - 1));
                assert_non_null(cJSON_GetObjectItemCaseSensitive(s.chunk[s.n - 1], "usage"));
            }
            if (strstr(shapes[k].stream, "no_content_delta")) {
                const cJSON *d = chunk_delta(&s, empty_choices ? 1 : 0);
                assert_string_equal(str(d, "role"), "assistant");
                assert_null(cJSON_GetObjectItemCaseSensitive(d, "content"));
                size_t empty = 0;
                for (size_t i = 0; i < s.n; i++) {
                    const cJSON *di = chunk_delta(&s, i);
                    empty += di && !di->child && i != fin_at;
                }
                assert_int_equal(empty, 1);
            }
            if (k == 3) {
                assert_true(s.ev.comments >= s.n);
                assert_true(r.n_chunks > s.ev.n); /* split into several writes */
            }
            stream_free(&s);
            mc_resp_free(&r);
        }
    }
    free(ref);
}

/* No chunk carries @p key. */
static void
assert_no_key(const struct stream *s, const char *key)
{
    for (size_t i = 0; i < s->n; i++)
        assert_null(cJSON_GetObjectItemCaseSensitive(s->chunk[i], key));
}

static void
stream_step_overrides(void **state)
{
    char tok[TOKLEN];
    int pieces = 0;
    char *ref = ref_text(PORT, "overrides", &pieces);
    struct mc_resp r;
    struct stream s;

    shaped(PORT, tok, "[{\"stream\":{\"done\":false}}]", "overrides", NULL, &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_false(s.done);
    assert_null(strstr(r.body, "[DONE]"));
    assert_int_equal(s.n, (size_t)pieces);
    assert_finish_on_last(&s, "stop");
    stream_free(&s);
    mc_resp_free(&r);

    shaped(PORT, tok, "[{\"stream\":{\"finish_reason\":false}}]", "overrides", NULL, &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_true(s.done);
    for (size_t i = 0; i < s.n; i++)
        assert_false(cJSON_IsString(chunk_finish(&s, i)));
    assert_string_equal(chunk_content(&s, s.n - 1), ref);
    stream_free(&s);
    mc_resp_free(&r);

    shaped(PORT, tok, "[{\"stream\":{\"usage\":false}}]", "overrides", NULL, &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_true(s.done);
    assert_no_key(&s, "usage");
    assert_finish_on_last(&s, "stop");
    stream_free(&s);
    mc_resp_free(&r);

    shaped(PORT, tok, "[{\"stream\":{\"envelope\":false}}]", "overrides", NULL, &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_true(s.done);
    assert_no_key(&s, "id");
    assert_no_key(&s, "object");
    assert_no_key(&s, "created");
    assert_no_key(&s, "model");
    assert_string_equal(chunk_content(&s, s.n - 1), ref);
    stream_free(&s);
    mc_resp_free(&r);
    free(ref);
}

/* The server options turn [DONE], finish_reason, usage and the envelope off; a
 * step can turn them back on. */
static void
stream_server_options(void **state)
{
    (void)state;
    struct qk_mock_config cfg;
    qk_mock_config_init(&cfg);
    cfg.port = 0;
    cfg.send_done = false;
    cfg.send_finish_reason = false;
    cfg.send_usage = false;
    cfg.send_envelope = false;
    struct qk_mock *m = start_mock(&cfg);
    uint16_t port = qk_mock_port(m);
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    struct mc_resp r;
    struct stream s;
    chat(port, tok, chat_body(body, sizeof body, "options", true, NULL), &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_false(s.done);
    assert_true(s.n > 3);
    for (size_t i = 0; i < s.n; i++)
        assert_false(cJSON_IsString(chunk_finish(&s, i)));
    assert_no_key(&s, "usage");
    assert_no_key(&s, "id");
    assert_no_key(&s, "object");
    assert_no_key(&s, "created");
    assert_no_key(&s, "model");
    assert_cumulative(&s);
    stream_free(&s);
    mc_resp_free(&r);

    /* A step's other stream options keep the server's settings... */
    queue(port, tok, "chat",
          "[{\"stream\":{\"chunks\":2}},{\"stream\":{\"done\":true,"
          "\"finish_reason\":true,\"usage\":true,\"envelope\":true}}]");
    chat(port, tok, body, &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_int_equal(s.n, 2);
    assert_false(s.done);
    assert_no_key(&s, "id");
    stream_free(&s);
    mc_resp_free(&r);
    /* ...and a step can turn each back on. */
    chat(port, tok, body, &r);
    assert_ok_status(&r, 200);
    stream_parse(&r, &s);
    assert_true(s.done);
    assert_finish_on_last(&s, "stop");
    assert_non_null(cJSON_GetObjectItemCaseSensitive(s.chunk[s.n - 1], "usage"));
    str(s.chunk[0], "id");
    stream_free(&s);
    mc_resp_free(&r);
    qk_mock_stop(m);
}

/* ---------- the journal ---------- */

static const char *
header_value(const cJSON *e, const char *name)
{
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(e, "headers"))
    {
        if (strcasecmp(str(h, "name"), name) == 0)
            return str(h, "value");
    }
    return NULL;
}

static void
journal_records_requests(void **state)
{
    char tok[TOKLEN], body[512], auth[160];
    mc_new_token(tok, sizeof tok);
    snprintf(auth, sizeof auth, "Bearer %s", tok);
    queue(PORT, tok, "chat", "[{\"status\":500}]");
    int64_t t0 = qk_now_ms();
    struct mc_resp r1, r2, r3;
    struct mc_req q = {.port = PORT,
                       .path = "/api/models?probe=1",
                       .token = tok,
                       .headers = {"X-E2E: journal test"}};
    assert_int_equal(mc_request(&q, &r1), 0);
    assert_ok_status(&r1, 200);
    chat(PORT, tok, chat_body(body, sizeof body, "journal", false, NULL), &r2);
    assert_ok_status(&r2, 500);
    chat(PORT, tok, chat_body(body, sizeof body, "journal", true, NULL), &r3);
    assert_ok_status(&r3, 200);

    /* An entry is written once the server is done with the request, which may be
     * just after the client has the whole response: the fetch bounds it. */
    cJSON *j = journal_entries(PORT, tok, 3);
    int64_t t1 = qk_now_ms();
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(j, "entries");
    assert_int_equal(cJSON_GetArraySize(entries), 3);
    /* The journal names the token by fingerprint only. */
    assert_true(starts_with(str(j, "token"), "t:"));
    char *whole = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(j, "token"));
    assert_null(strstr(whole, tok));
    cJSON_free(whole);

    double prev_seq = 0, prev_received = 0;
    for (int i = 0; i < 3; i++) {
        const cJSON *e = entry(j, i);
        assert_true(num(e, "seq") > prev_seq);
        prev_seq = num(e, "seq");
        assert_true(num(e, "received_ms") >= (double)t0);
        assert_true(num(e, "received_ms") >= prev_received);
        prev_received = num(e, "received_ms");
        assert_true(num(e, "finished_ms") >= num(e, "received_ms"));
        assert_true(num(e, "finished_ms") <= (double)t1);
        assert_false(flag(e, "client_gone"));
        const char *a = header_value(e, "Authorization");
        assert_non_null(a);
        assert_string_equal(a, auth);
        assert_non_null(header_value(e, "Host"));
    }
    const cJSON *e = entry(j, 0);
    assert_string_equal(str(e, "method"), "GET");
    assert_string_equal(str(e, "path"), "/api/models");
    assert_string_equal(str(e, "query"), "probe=1");
    assert_string_equal(header_value(e, "X-E2E"), "journal test");
    assert_string_equal(str(e, "body"), "");
    assert_step(e, "null");
    assert_int_equal((long)num(e, "status"), 200);
    assert_int_equal((long)num(e, "bytes_sent"), (long)r1.body_len);
    assert_int_equal((long)num(e, "events_sent"), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(e, "event_ms")), 0);

    e = entry(j, 1);
    assert_string_equal(str(e, "method"), "POST");
    assert_string_equal(str(e, "path"), "/api/chat/completions");
    assert_string_equal(str(e, "query"), "");
    assert_string_equal(header_value(e, "Content-Type"), "application/json");
    assert_string_equal(str(e, "body"), chat_body(body, sizeof body, "journal", false, NULL));
    assert_step(e, "{\"status\":500}");
    assert_int_equal((long)num(e, "status"), 500);
    assert_int_equal((long)num(e, "bytes_sent"), (long)r2.body_len);

    e = entry(j, 2);
    assert_string_equal(str(e, "body"), chat_body(body, sizeof body, "journal", true, NULL));
    assert_step(e, "null");
    assert_int_equal((long)num(e, "status"), 200);
    assert_int_equal((long)num(e, "bytes_sent"), (long)r3.body_len);
    struct stream s;
    stream_parse(&r3, &s);
    const cJSON *ems = cJSON_GetObjectItemCaseSensitive(e, "event_ms");
    assert_int_equal((long)num(e, "events_sent"), (long)s.ev.n);
    assert_int_equal(cJSON_GetArraySize(ems), (int)s.ev.n);
    const cJSON *t;
    cJSON_ArrayForEach(t, ems)
    {
        assert_true(t->valuedouble >= num(e, "received_ms"));
        assert_true(t->valuedouble <= num(e, "finished_ms"));
    }
    stream_free(&s);
    cJSON_Delete(j);
    mc_resp_free(&r1);
    mc_resp_free(&r2);
    mc_resp_free(&r3);

    /* Requests without a token are journaled under the empty key, not under ours. */
    j = mc_journal(PORT, "never-used-token");
    assert_non_null(j);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries")), 0);
    cJSON_Delete(j);
}

/* A client that leaves mid-stream shows as client_gone. */
static void
journal_client_gone_on_abort(void **state)
{
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    queue(PORT, tok, "chat", "[{\"stream\":{\"chunk_delay_ms\":150}}]");
    struct mc_req q = {.port = PORT,
                       .path = "/api/chat/completions",
                       .token = tok,
                       .body = chat_body(body, sizeof body, "leave", true, NULL),
                       .abort_after_events = 2};
    struct mc_resp r;
    assert_int_equal(mc_request(&q, &r), 0);
    assert_true(r.aborted);
    assert_int_equal(r.rc, CURLE_WRITE_ERROR);
    assert_int_equal(r.events_seen, 2);
    mc_resp_free(&r);
    cJSON *j = journal_entries(PORT, tok, 1);
    assert_true(flag(entry(j, 0), "client_gone"));
    assert_true(num(entry(j, 0), "events_sent") < 6);
    cJSON_Delete(j);

    /* Leaving while the mock still waits to send the headers counts too. */
    mc_new_token(tok, sizeof tok);
    queue(PORT, tok, "models", "[{\"delay_ms\":700}]");
    struct mc_req g = {.port = PORT, .path = "/api/models", .token = tok, .timeout_ms = 150};
    assert_int_equal(mc_request(&g, &r), 0);
    assert_int_equal(r.rc, CURLE_OPERATION_TIMEDOUT);
    mc_resp_free(&r);
    j = journal_entries(PORT, tok, 1);
    assert_true(flag(entry(j, 0), "client_gone"));
    assert_int_equal((long)num(entry(j, 0), "bytes_sent"), 0);
    cJSON_Delete(j);
}

struct stall_thread {
    uint16_t port;
    char tok[TOKLEN];
    long timeout_ms;
    struct mc_resp r;
    int rc;
};

static void *
stall_main(void *arg)
{
    struct stall_thread *t = arg;
    char body[512];
    struct mc_req q = {.port = t->port,
                       .path = "/api/chat/completions",
                       .token = t->tok,
                       .body = chat_body(body, sizeof body, "stall", true, NULL),
                       .timeout_ms = t->timeout_ms};
    t->rc = mc_request(&q, &t->r);
    return NULL;
}

/* Waits until health reports at least @p want open streams. */
static bool
wait_streams(uint16_t port, int want, long timeout_ms)
{
    int64_t deadline = qk_now_ms() + timeout_ms;
    while (qk_now_ms() < deadline) {
        struct mc_resp r;
        int n = -1;
        if (mc_get(port, "/__mock/health", NULL, &r) == 0 && r.status == 200) {
            cJSON *h = mc_json(&r);
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(h, "streams");
            n = cJSON_IsNumber(s) ? s->valueint : -1;
            cJSON_Delete(h);
        }
        mc_resp_free(&r);
        if (n >= want)
            return true;
        mc_sleep_ms(20);
    }
    return false;
}

static long
journal_in_flight(const cJSON *j)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "in_flight");
    assert_true(cJSON_IsNumber(n));
    return (long)n->valuedouble;
}

/* A request under way counts as in flight, with no entry yet; once done it is an entry. */
static void
journal_counts_requests_in_flight(void **state)
{
    (void)state;
    struct stall_thread t = {.port = PORT, .timeout_ms = 10000};
    mc_new_token(t.tok, sizeof t.tok);
    queue(PORT, t.tok, "chat", "[{\"stream\":{\"chunks\":3,\"chunk_delay_ms\":300}}]");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stall_main, &t), 0);
    bool seen = wait_streams(PORT, 1, 3000);
    cJSON *during = mc_journal(PORT, t.tok);
    pthread_join(th, NULL);
    assert_true(seen);
    assert_int_equal(journal_in_flight(during), 1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(during, "entries")), 0);
    cJSON_Delete(during);
    assert_int_equal(t.rc, 0);
    mc_resp_free(&t.r);
    cJSON *after = journal_entries(PORT, t.tok, 1);
    assert_int_equal(journal_in_flight(after), 0);
    cJSON_Delete(after);
}

/* Entries are in the order the requests arrived, not the order they finished: a
 * slow stream received first stays first although a later request ends before it. */
static void
journal_order_is_arrival_order(void **state)
{
    struct stall_thread t = {.port = PORT, .timeout_ms = 10000};
    mc_new_token(t.tok, sizeof t.tok);
    queue(PORT, t.tok, "chat", "[{\"stream\":{\"chunks\":3,\"chunk_delay_ms\":200}}]");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stall_main, &t), 0);
    bool seen = wait_streams(PORT, 1, 3000);
    struct mc_resp r;
    int rc = mc_get(PORT, "/api/models?second=1", t.tok, &r);
    int64_t second_done = qk_now_ms();
    pthread_join(th, NULL);
    assert_true(seen);
    assert_int_equal(rc, 0);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
    assert_int_equal(t.rc, 0);
    assert_ok_status(&t.r, 200);
    assert_true(t.r.end_ms > second_done); /* the stream really finished last */
    mc_resp_free(&t.r);
    cJSON *j = journal_entries(PORT, t.tok, 2);
    assert_string_equal(str(entry(j, 0), "path"), "/api/chat/completions");
    assert_string_equal(str(entry(j, 1), "query"), "second=1");
    assert_true(num(entry(j, 0), "seq") < num(entry(j, 1), "seq"));
    assert_true(num(entry(j, 0), "finished_ms") > num(entry(j, 1), "finished_ms"));
    cJSON_Delete(j);
}

static int
entry_count(uint16_t port, const char *tok)
{
    cJSON *j = mc_journal(port, tok);
    assert_non_null(j);
    int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries"));
    cJSON_Delete(j);
    return n;
}

/* Polls the token's journal until its oldest entry has query `want`. */
static cJSON *
wait_first_query(uint16_t port, const char *tok, const char *want, long timeout_ms)
{
    int64_t deadline = qk_now_ms() + timeout_ms;
    for (;;) {
        cJSON *j = mc_journal(port, tok);
        const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "entries"), 0);
        const cJSON *query = cJSON_GetObjectItemCaseSensitive(first, "query");
        if ((cJSON_IsString(query) && strcmp(query->valuestring, want) == 0) ||
            qk_now_ms() >= deadline)
            return j;
        cJSON_Delete(j);
        mc_sleep_ms(20);
    }
}

/* Bounded per token and in total, oldest dropped first. */
static void
journal_is_bounded(void **state)
{
    (void)state;
    struct qk_mock *m = start_small(); /* 3 per token, 5 in all */
    uint16_t port = qk_mock_port(m);
    char a[TOKLEN], b[TOKLEN], path[64];
    mc_new_token(a, sizeof a);
    mc_new_token(b, sizeof b);
    struct mc_resp r;
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "/api/models?n=%d", i);
        assert_int_equal(mc_get(port, path, a, &r), 0);
        assert_ok_status(&r, 200);
        mc_resp_free(&r);
    }
    /* Entries land when each response completes, possibly after the client has
     * read it: wait for the final state rather than sleeping. */
    cJSON *j = wait_first_query(port, a, "n=2", 5000);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries")), 3);
    assert_string_equal(str(entry(j, 0), "query"), "n=2");
    assert_string_equal(str(entry(j, 2), "query"), "n=4");
    cJSON_Delete(j);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "/api/models?m=%d", i);
        assert_int_equal(mc_get(port, path, b, &r), 0);
        assert_ok_status(&r, 200);
        mc_resp_free(&r);
    }
    j = mc_journal_wait(port, b, 3, 5000);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries")), 3);
    cJSON_Delete(j);
    /* 6 entries > 5 in all: a's oldest went. */
    j = mc_journal(port, a);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries")), 2);
    assert_string_equal(str(entry(j, 0), "query"), "n=3");
    cJSON_Delete(j);
    assert_int_equal(entry_count(port, b), 3);
    qk_mock_stop(m);
}

/* ---------- searching the journal ---------- */

static void assert_control_error(long status, cJSON *reply, const char *field);

/* What a proxy may send upstream for the caller's token @T, one request each, tagged by
 * its query `n=i`. */
static const struct {
    const char *headers[2]; /* raw header lines; @T = the token, @O = another token */
    bool searched;          /* carries @T in some form */
    bool verbatim;          /* exactly one `Authorization: Bearer @T` */
} altered[] = {
    {{"Authorization: Bearer @T"}, true, true},
    {{"Authorization: Bearer Bearer @T"}, true, false},
    {{"authorization: bearer @T"}, true, false},
    {{"Authorization: Bearer   \"@T\"."}, true, false},
    {{NULL}, false, false},
    {{"Authorization: Bearer @O"}, false, false},
    {{"Authorization: Bearer @O", "AUTHORIZATION: Bearer @T"}, true, false},
    {{"Authorization: Bearer undefined"}, false, false},
    {{"Authorization: Bearer @T", "Authorization: Bearer @T"}, true, false},
    {{"Authorization: Bearer null"}, false, false},
};
#define N_ALTERED (sizeof altered / sizeof altered[0])

/* Copies @p tmpl with @T and @O replaced. */
static void
subst2(char *out, size_t len, const char *tmpl, const char *t, const char *o)
{
    size_t k = 0;
    for (const char *p = tmpl; *p && k + 1 < len; p++) {
        const char *with = p[0] == '@' && p[1] == 'T' ? t : p[0] == '@' && p[1] == 'O' ? o : NULL;
        if (with) {
            size_t n = strlen(with);
            assert_true(k + n < len);
            memcpy(out + k, with, n);
            k += n;
            p++;
        } else {
            out[k++] = *p;
        }
    }
    out[k] = '\0';
}

/* The `n` of an entry's query "n=I". */
static int
entry_n(const cJSON *e)
{
    const char *q = str(e, "query");
    assert_true(starts_with(q, "n="));
    return atoi(q + 2);
}

/* Sends every altered[] request, a few ms apart, between the times *t0 and *t1. */
static void
send_altered(uint16_t port, const char *tok, const char *other, int64_t *t0, int64_t *t1)
{
    char lines[N_ALTERED][2][256], path[32];
    *t0 = qk_now_ms();
    for (size_t i = 0; i < N_ALTERED; i++) {
        struct mc_req q = {.port = port, .path = path};
        snprintf(path, sizeof path, "/api/models?n=%zu", i);
        for (int h = 0; h < 2 && altered[i].headers[h]; h++) {
            subst2(lines[i][h], sizeof lines[i][h], altered[i].headers[h], tok, other);
            q.headers[h] = lines[i][h];
        }
        struct mc_resp r;
        assert_int_equal(mc_request(&q, &r), 0);
        assert_int_equal(r.rc, CURLE_OK); /* 200 or 401: the journal has it either way */
        mc_resp_free(&r);
        mc_sleep_ms(4); /* distinct received_ms for the window bounds */
    }
    *t1 = qk_now_ms();
}

/* contains= finds the requests that carried the token in any form, under whatever key
 * the mock filed them, with the raw values they carried; nothing else. */
static void
journal_search_contains(void **state)
{
    char tok[TOKLEN], other[TOKLEN], query[256], want[256];
    mc_new_token(tok, sizeof tok);
    mc_new_token(other, sizeof other);
    int64_t t0, t1;
    send_altered(PORT, tok, other, &t0, &t1);
    size_t n_want = 0;
    for (size_t i = 0; i < N_ALTERED; i++)
        n_want += altered[i].searched;
    snprintf(query, sizeof query, "contains=%s", tok);
    cJSON *j = mc_journal_search_wait(PORT, query, (int)n_want, 5000);
    assert_non_null(j);
    assert_int_equal((long)num(j, "in_flight"), 0);
    assert_int_equal((long)num(j, "matched"), (long)n_want);
    assert_false(flag(j, "truncated"));
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(j, "entries");
    assert_int_equal(cJSON_GetArraySize(entries), (int)n_want);
    size_t k = 0;
    for (size_t i = 0; i < N_ALTERED; i++) {
        if (!altered[i].searched)
            continue;
        const cJSON *e = entry(j, (int)k++);
        assert_int_equal(entry_n(e), (int)i); /* oldest first */
        /* The raw values, in order, as "authorization" and among the headers. */
        const cJSON *auth = cJSON_GetObjectItemCaseSensitive(e, "authorization");
        int n_auth = altered[i].headers[1] ? 2 : 1;
        assert_int_equal(cJSON_GetArraySize(auth), n_auth);
        for (int h = 0; h < n_auth; h++) {
            subst2(want, sizeof want, strchr(altered[i].headers[h], ':') + 2, tok, other);
            assert_string_equal(cJSON_GetArrayItem(auth, h)->valuestring, want);
        }
        int in_headers = 0;
        const cJSON *hd;
        cJSON_ArrayForEach(hd, cJSON_GetObjectItemCaseSensitive(e, "headers")) in_headers +=
            strcasecmp(str(hd, "name"), "Authorization") == 0;
        assert_int_equal(in_headers, n_auth);
        assert_true(starts_with(str(e, "token"), "t:"));
    }
    cJSON_Delete(j);
    /* The doubled prefix (a malformed value, 401) was filed under the raw value, not T:
     * the per-key read misses it. */
    j = mc_journal(PORT, tok);
    assert_non_null(j);
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(j, "entries"))
        assert_true(entry_n(e) != 1);
    cJSON_Delete(j);
    /* A string nobody sent finds nothing. */
    snprintf(query, sizeof query, "contains=%s-never", tok);
    j = mc_journal_search(PORT, query, NULL);
    assert_int_equal((long)num(j, "matched"), 0);
    cJSON_Delete(j);
}

/* since_ms/until_ms select by received_ms, bounds included; not_token keeps every request
 * that did not carry exactly `Authorization: Bearer T`: another credential, or none. */
static void
journal_search_window_not_token(void **state)
{
    char tok[TOKLEN], other[TOKLEN], query[256];
    mc_new_token(tok, sizeof tok);
    mc_new_token(other, sizeof other);
    int64_t t0, t1;
    send_altered(PORT, tok, other, &t0, &t1);
    snprintf(query, sizeof query, "since_ms=%lld&until_ms=%lld", (long long)t0, (long long)t1);
    cJSON *all = mc_journal_search_wait(PORT, query, (int)N_ALTERED, 5000);
    assert_non_null(all);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(all, "entries")),
                     (int)N_ALTERED);
    int64_t received[N_ALTERED];
    for (size_t i = 0; i < N_ALTERED; i++) {
        assert_int_equal(entry_n(entry(all, (int)i)), (int)i);
        received[i] = (int64_t)num(entry(all, (int)i), "received_ms");
        assert_true(received[i] >= t0 && received[i] <= t1);
        if (i)
            assert_true(received[i] > received[i - 1]);
    }
    cJSON_Delete(all);

    snprintf(query, sizeof query, "since_ms=%lld&until_ms=%lld&not_token=%s", (long long)t0,
             (long long)t1, tok);
    cJSON *j = mc_journal_search(PORT, query, NULL);
    size_t k = 0;
    for (size_t i = 0; i < N_ALTERED; i++) {
        if (altered[i].verbatim)
            continue;
        assert_int_equal(entry_n(entry(j, (int)k++)), (int)i);
    }
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries")), (int)k);
    assert_int_equal((long)num(j, "matched"), (long)k);
    cJSON_Delete(j);

    /* Bounds are inclusive and exact to the millisecond. */
    snprintf(query, sizeof query, "since_ms=%lld&until_ms=%lld", (long long)received[2],
             (long long)received[4]);
    j = mc_journal_search(PORT, query, NULL);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries")), 3);
    assert_int_equal(entry_n(entry(j, 0)), 2);
    assert_int_equal(entry_n(entry(j, 2)), 4);
    cJSON_Delete(j);
    snprintf(query, sizeof query, "since_ms=%lld&until_ms=%lld", (long long)received[2] + 1,
             (long long)received[4] - 1);
    j = mc_journal_search(PORT, query, NULL);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries")), 1);
    assert_int_equal(entry_n(entry(j, 0)), 3);
    cJSON_Delete(j);
    /* The missing header alone: not the token, in a one-request window. */
    snprintf(query, sizeof query, "since_ms=%lld&until_ms=%lld&not_token=%s",
             (long long)received[4], (long long)received[4], tok);
    j = mc_journal_search(PORT, query, NULL);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries")), 1);
    assert_int_equal(
        cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(entry(j, 0), "authorization")), 0);
    assert_int_equal((long)num(entry(j, 0), "status"), 401);
    cJSON_Delete(j);
    /* limit keeps the latest matches. */
    snprintf(query, sizeof query, "since_ms=%lld&until_ms=%lld&limit=2", (long long)t0,
             (long long)t1);
    j = mc_journal_search(PORT, query, NULL);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries")), 2);
    assert_int_equal(entry_n(entry(j, 0)), (int)N_ALTERED - 2);
    assert_int_equal((long)num(j, "matched"), (long)N_ALTERED);
    assert_true(flag(j, "truncated"));
    cJSON_Delete(j);
}

/* A matching request still under way counts as in flight, with no entry yet. */
static void
journal_search_counts_in_flight(void **state)
{
    struct stall_thread t = {.port = PORT, .timeout_ms = 10000};
    mc_new_token(t.tok, sizeof t.tok);
    queue(PORT, t.tok, "chat", "[{\"stream\":{\"chunks\":3,\"chunk_delay_ms\":300}}]");
    int64_t t0 = qk_now_ms();
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stall_main, &t), 0);
    bool seen = wait_streams(PORT, 1, 3000);
    char query[256];
    snprintf(query, sizeof query, "contains=%s", t.tok);
    cJSON *during = mc_journal_search(PORT, query, NULL);
    snprintf(query, sizeof query, "since_ms=%lld&not_token=%s", (long long)t0, t.tok);
    cJSON *other = mc_journal_search(PORT, query, NULL);
    pthread_join(th, NULL);
    assert_true(seen);
    assert_int_equal((long)num(during, "in_flight"), 1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(during, "entries")), 0);
    assert_int_equal((long)num(other, "in_flight"), 0); /* it carries the token verbatim */
    cJSON_Delete(during);
    cJSON_Delete(other);
    assert_int_equal(t.rc, 0);
    mc_resp_free(&t.r);
    snprintf(query, sizeof query, "contains=%s", t.tok);
    cJSON *after = mc_journal_search_wait(PORT, query, 1, 5000);
    assert_int_equal((long)num(after, "in_flight"), 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(after, "entries")), 1);
    cJSON_Delete(after);
}

/* Bad search parameters get 400 naming the parameter. */
static void
journal_search_bad_parameters(void **state)
{
    static const struct {
        const char *query, *field;
    } bad[] = {
        {"contains=", "contains"},
        {"contains", "contains"},
        {"not_token=", "not_token"},
        {"since_ms=abc", "since_ms"},
        {"since_ms=-5", "since_ms"},
        {"until_ms=1.5", "until_ms"},
        {"since_ms=10&until_ms=9", "until_ms"},
        {"since_ms=1&since_ms=2", "since_ms"},
        {"contains=x&limit=0", "limit"},
        {"contains=x&limit=many", "limit"},
        {"limit=5", "limit"},
        {"token=x&contains=y", "contains"},
        {"since_ms=1&token=x", "since_ms"},
        {"token=x&token=y", "token"},
        {"sinse_ms=1", "sinse_ms"},
        {"token=x&junk=1", "junk"},
        {"", "token"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long st = 0;
        cJSON *reply = mc_journal_search(PORT, bad[i].query, &st);
        if (st != 400)
            print_message("journal?%s -> %ld\n", bad[i].query, st);
        assert_control_error(st, reply, bad[i].field);
        cJSON_Delete(reply);
    }
    /* Good ones, for contrast. */
    long st = 0;
    cJSON *reply = mc_journal_search(PORT, "until_ms=0", &st);
    assert_int_equal(st, 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(reply, "entries")), 0);
    cJSON_Delete(reply);
    reply = mc_journal_search(PORT, "contains=%2B%20x&limit=1000000", &st);
    assert_int_equal(st, 200);
    cJSON_Delete(reply);
}

/* ---------- control API ---------- */

static void
reset_clears_everything(void **state)
{
    char a[TOKLEN], b[TOKLEN], body[512];
    mc_new_token(a, sizeof a);
    mc_new_token(b, sizeof b);
    queue(PORT, a, "chat", "[{\"status\":500},{\"status\":500}]");
    assert_int_equal(mc_revoke(PORT, b), 200);
    chat_body(body, sizeof body, "hi", false, NULL);
    struct mc_resp r;
    chat(PORT, a, body, &r);
    assert_ok_status(&r, 500);
    mc_resp_free(&r);
    chat(PORT, b, body, &r);
    assert_ok_status(&r, 401);
    mc_resp_free(&r);
    cJSON *j = journal_entries(PORT, a, 1);
    cJSON_Delete(j);
    assert_int_equal(mc_reset(PORT), 200);
    assert_int_equal(entry_count(PORT, a), 0);
    assert_int_equal(entry_count(PORT, b), 0);
    chat(PORT, a, body, &r); /* the second 500 is gone */
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
    chat(PORT, b, body, &r); /* no longer revoked */
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
}

static void
health(void **state)
{
    struct mc_resp r;
    assert_int_equal(mc_get(PORT, "/__mock/health", NULL, &r), 0);
    assert_ok_status(&r, 200);
    cJSON *h = mc_json(&r);
    assert_string_equal(str(h, "status"), "ok");
    assert_true(num(h, "connections") >= 1); /* ours */
    assert_true(num(h, "streams") >= 0);
    cJSON_Delete(h);
    mc_resp_free(&r);

    /* An open stream shows in the count. */
    struct stall_thread t = {.port = PORT, .timeout_ms = 1500};
    mc_new_token(t.tok, sizeof t.tok);
    queue(PORT, t.tok, "chat", "[{\"stream\":{\"stall_after\":1}}]");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stall_main, &t), 0);
    bool seen = wait_streams(PORT, 1, 1200);
    pthread_join(th, NULL);
    assert_true(seen);
    assert_int_equal(t.rc, 0);
    assert_int_equal(t.r.rc, CURLE_OPERATION_TIMEDOUT);
    mc_resp_free(&t.r);
}

static void
assert_control_error(long status, cJSON *reply, const char *field)
{
    assert_int_equal(status, 400);
    assert_non_null(reply);
    str(reply, "error");
    const char *f = str(reply, "field");
    if (strcmp(f, field) != 0)
        print_message("field '%s', expected '%s'\n", f, field);
    assert_string_equal(f, field);
}

/* Copies @p tmpl into @p out with every "@T" replaced by @p tok. */
static void
subst_token(char *out, size_t len, const char *tmpl, const char *tok)
{
    size_t o = 0;
    for (const char *p = tmpl; *p && o + 1 < len; p++) {
        if (p[0] == '@' && p[1] == 'T') {
            size_t n = strlen(tok);
            assert_true(o + n < len);
            memcpy(out + o, tok, n);
            o += n;
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

static void
control_errors(void **state)
{
    char tok[TOKLEN], json[1024];
    mc_new_token(tok, sizeof tok);
    static const struct {
        const char *tmpl; /* @T = the token */
        const char *field;
    } cases[] = {
        {"{\"token\":\"@T\",\"steps\":[{\"stream\":{\"chunks\":\"x\"}}]}",
         "steps[0].stream.chunks"},
        {"{\"token\":\"@T\",\"steps\":[{\"ok\":true},{\"bogus\":1}]}", "steps[1].bogus"},
        {"{\"token\":\"@T\",\"steps\":[{\"stream\":{\"bogus\":true}}]}", "steps[0].stream.bogus"},
        {"{\"token\":\"@T\",\"steps\":[{\"status\":99}]}", "steps[0].status"},
        {"{\"token\":\"@T\",\"steps\":[{\"html\":\"teapot\"}]}", "steps[0].html"},
        {"{\"token\":\"@T\",\"steps\":[{\"inband_error\":\"nope\"}]}", "steps[0].inband_error"},
        {"{\"token\":\"@T\",\"steps\":[{\"delay_ms\":-1}]}", "steps[0].delay_ms"},
        {"{\"token\":\"@T\",\"steps\":[7]}", "steps[0]"},
        {"{\"token\":\"@T\",\"route\":\"images\",\"steps\":[{\"ok\":true}]}", "route"},
        {"{\"token\":\"@T\",\"route\":\"chat\"}", "steps"},
        {"{\"token\":\"@T\",\"steps\":[]}", "steps"},
        {"{\"route\":\"chat\",\"steps\":[{\"ok\":true}]}", "token"},
        {"{\"token\":\"\",\"steps\":[{\"ok\":true}]}", "token"},
        {"{\"token\":\"@T\",\"steps\":[{\"ok\":true}],\"extra\":1}", "extra"},
        {"[{\"token\":\"@T\",\"steps\":[{\"status\":500}]},{\"token\":\"x\",\"steps\":"
         "[{\"stream\":{\"chunks\":0}}]}]",
         "[1].steps[0].stream.chunks"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        subst_token(json, sizeof json, cases[i].tmpl, tok);
        cJSON *reply = NULL;
        long st = mc_scenarios(PORT, json, &reply);
        if (st != 400)
            print_message("scenario: %s\n", json);
        assert_control_error(st, reply, cases[i].field);
        cJSON_Delete(reply);
    }
    /* Not JSON at all. */
    cJSON *reply = NULL;
    assert_int_equal(mc_scenarios(PORT, "{oops", &reply), 400);
    assert_non_null(reply);
    str(reply, "error");
    cJSON_Delete(reply);
    /* Nothing of a rejected scenario was queued (not even its valid part). */
    struct mc_resp r;
    assert_int_equal(mc_get(PORT, "/api/models", tok, &r), 0);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
    /* A valid one answers with the number queued. */
    snprintf(json, sizeof json,
             "[{\"token\":\"%s\",\"route\":\"models\",\"steps\":[{\"ok\":true},{\"ok\":true}]},"
             "{\"token\":\"%s\",\"steps\":[{\"status\":500}]}]",
             tok, tok);
    assert_int_equal(mc_scenarios(PORT, json, &reply), 200);
    assert_int_equal((long)num(reply, "queued"), 3);
    cJSON_Delete(reply);
    /* Other control errors. */
    assert_int_equal(mc_get(PORT, "/__mock/journal", NULL, &r), 0);
    reply = mc_json(&r);
    assert_control_error(r.status, reply, "token");
    cJSON_Delete(reply);
    mc_resp_free(&r);
    static const char *const bad_revoke[] = {"{}", "{\"token\":\"\"}", "{\"token\":5}", "x"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(mc_post(PORT, "/__mock/tokens/revoke", NULL, bad_revoke[i], &r), 0);
        reply = mc_json(&r);
        assert_control_error(r.status, reply, "token");
        cJSON_Delete(reply);
        mc_resp_free(&r);
    }
    assert_int_equal(mc_get(PORT, "/__mock/nope", NULL, &r), 0);
    assert_status(&r, 404);
    mc_resp_free(&r);
    assert_int_equal(mc_get(PORT, "/__mock/reset", NULL, &r), 0);
    assert_status(&r, 405);
    mc_resp_free(&r);
}

static void
load_scenarios_api(void **state)
{
    struct e2e *e = *state;
    char tok[TOKLEN], json[1024], err[256] = "";
    mc_new_token(tok, sizeof tok);
    snprintf(json, sizeof json,
             "[{\"token\":\"%s\",\"route\":\"chat\",\"steps\":[{\"status\":507}]},"
             "{\"token\":\"%s\",\"route\":\"models\",\"steps\":[{\"status\":508}]}]",
             tok, tok);
    assert_int_equal(qk_mock_load_scenarios(e->mock, json, strlen(json), err, sizeof err), QK_OK);
    char body[512];
    struct mc_resp r;
    chat(e->port, tok, chat_body(body, sizeof body, "hi", false, NULL), &r);
    assert_ok_status(&r, 507);
    mc_resp_free(&r);
    assert_int_equal(mc_get(e->port, "/api/models", tok, &r), 0);
    assert_ok_status(&r, 508);
    mc_resp_free(&r);

    snprintf(json, sizeof json,
             "{\"token\":\"%s\",\"steps\":[{\"status\":500},{\"stream\":{\"chunks\":\"x\"}}]}",
             tok);
    assert_int_equal(qk_mock_load_scenarios(e->mock, json, strlen(json), err, sizeof err),
                     QK_INVALID);
    assert_non_null(strstr(err, "steps[1].stream.chunks"));
    assert_int_equal(qk_mock_load_scenarios(e->mock, "nope", 4, err, sizeof err), QK_INVALID);
    assert_int_equal(qk_mock_load_scenarios(e->mock, "nope", 4, NULL, 0), QK_INVALID);
    /* Nothing queued by the rejected loads. */
    assert_int_equal(mc_get(e->port, "/api/models", tok, &r), 0);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
}

/* ---------- parallel tokens ---------- */

#define PAR_THREADS 6
#define PAR_REQS 6

struct par_thread {
    uint16_t port;
    int idx;
    char tok[TOKLEN];
    long status[PAR_REQS];
    long queued;
    bool stream_ok;
};

static void *
par_main(void *arg)
{
    struct par_thread *t = arg;
    char steps[256], body[512];
    int i = t->idx;
    snprintf(steps, sizeof steps,
             "[{\"status\":%d},{\"status\":%d,\"delay_ms\":%d},{\"ok\":true},{\"status\":%d},"
             "{\"stream\":{\"chunks\":2,\"chunk_delay_ms\":20}}]",
             500 + i, 520 + i, 10 * i, 540 + i);
    t->queued = mc_queue(t->port, t->tok, "chat", steps);
    for (int k = 0; k < PAR_REQS; k++) {
        struct mc_resp r;
        const char *b = chat_body(body, sizeof body, "parallel", k == 4, NULL);
        if (mc_post(t->port, "/api/chat/completions", t->tok, b, &r) == 0 && r.rc == CURLE_OK) {
            t->status[k] = r.status;
            if (k == 4) {
                struct mc_events ev;
                mc_sse_parse(r.body, r.body_len, &ev);
                t->stream_ok = ev.n == 3; /* 2 chunks + [DONE] */
                mc_events_free(&ev);
            }
        } else {
            t->status[k] = -1;
        }
        mc_resp_free(&r);
    }
    return NULL;
}

static void
parallel_tokens_do_not_interfere(void **state)
{
    struct par_thread t[PAR_THREADS];
    pthread_t th[PAR_THREADS];
    memset(t, 0, sizeof t);
    for (int i = 0; i < PAR_THREADS; i++) {
        t[i].port = PORT;
        t[i].idx = i;
        mc_new_token(t[i].tok, sizeof t[i].tok);
        assert_int_equal(pthread_create(&th[i], NULL, par_main, &t[i]), 0);
    }
    for (int i = 0; i < PAR_THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < PAR_THREADS; i++) {
        long want[PAR_REQS] = {500 + i, 520 + i, 200, 540 + i, 200, 200};
        assert_int_equal(t[i].queued, 200);
        for (int k = 0; k < PAR_REQS; k++) {
            if (t[i].status[k] != want[k])
                print_message("thread %d request %d: %ld, expected %ld\n", i, k, t[i].status[k],
                              want[k]);
            assert_int_equal(t[i].status[k], want[k]);
        }
        assert_true(t[i].stream_ok);
        cJSON *j = journal_entries(PORT, t[i].tok, PAR_REQS);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "entries")),
                         PAR_REQS);
        for (int k = 0; k < PAR_REQS; k++)
            assert_int_equal((long)num(entry(j, k), "status"), want[k]);
        assert_step(entry(j, 5), "null");
        cJSON_Delete(j);
    }
}

/* ---------- lifecycle ---------- */

/* qk_mock_stop() ends open streams instead of waiting for them. */
static void
stop_ends_open_streams(void **state)
{
    (void)state;
    struct qk_mock_config cfg;
    qk_mock_config_init(&cfg);
    cfg.port = 0;
    struct qk_mock *m = start_mock(&cfg);
    struct stall_thread t = {.port = qk_mock_port(m), .timeout_ms = 8000};
    mc_new_token(t.tok, sizeof t.tok);
    queue(t.port, t.tok, "chat", "[{\"stream\":{\"stall_after\":1}}]");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stall_main, &t), 0);
    bool seen = wait_streams(t.port, 1, 3000);
    int64_t t0 = qk_now_ms();
    qk_mock_stop(m);
    int64_t stop_ms = qk_now_ms() - t0;
    pthread_join(th, NULL);
    assert_true(seen);
    assert_true(stop_ms < 3000);
    assert_int_equal(t.rc, 0);
    assert_int_not_equal(t.r.rc, CURLE_OK);
    assert_int_not_equal(t.r.rc, CURLE_OPERATION_TIMEDOUT);
    assert_true(t.r.end_ms - t.r.start_ms < 6000);
    mc_resp_free(&t.r);
}

/* ---------- numbers and sizes from the outside ---------- */

/* Numbers beyond every integer type, statuses that are no final answer and keys given
 * twice are refused with a 400 naming the field; nothing of them is queued. */
static void
control_refuses_out_of_range_numbers(void **state)
{
    char tok[TOKLEN], json[512];
    mc_new_token(tok, sizeof tok);
    static const struct {
        const char *tmpl; /* @T = the token */
        const char *field;
    } cases[] = {
        {"{\"token\":\"@T\",\"steps\":[{\"status\":1e300}]}", "steps[0].status"},
        {"{\"token\":\"@T\",\"steps\":[{\"status\":-1e300}]}", "steps[0].status"},
        {"{\"token\":\"@T\",\"steps\":[{\"stream\":{\"chunks\":-1e300}}]}",
         "steps[0].stream.chunks"},
        {"{\"token\":\"@T\",\"steps\":[{\"delay_ms\":1e300}]}", "steps[0].delay_ms"},
        {"{\"token\":\"@T\",\"steps\":[{\"status\":101}]}", "steps[0].status"},
        {"{\"token\":\"@T\",\"steps\":[{\"status\":100}]}", "steps[0].status"},
        {"{\"token\":\"@T\",\"steps\":[{\"status\":199}]}", "steps[0].status"},
        {"{\"token\":\"@T\",\"steps\":[{\"status\":600}]}", "steps[0].status"},
        {"{\"token\":\"@T\",\"token\":\"@T-2\",\"steps\":[{\"status\":500}]}", "token"},
        {"{\"token\":\"@T\",\"steps\":[{\"stream\":{\"cumulative\":true,\"piece_bytes\":2097152,"
         "\"chunks\":256}}]}",
         "steps[0].stream.piece_bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        subst_token(json, sizeof json, cases[i].tmpl, tok);
        cJSON *reply = NULL;
        long st = mc_scenarios(PORT, json, &reply);
        if (st != 400)
            print_message("scenario: %s\n", json);
        assert_control_error(st, reply, cases[i].field);
        cJSON_Delete(reply);
    }
    struct mc_resp r;
    assert_int_equal(mc_get(PORT, "/api/models", tok, &r), 0);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
    /* Nor is a token revoked when the body names two. */
    subst_token(json, sizeof json, "{\"token\":\"@T\",\"token\":\"@T\"}", tok);
    assert_int_equal(mc_post(PORT, "/__mock/tokens/revoke", NULL, json, &r), 0);
    cJSON *reply = mc_json(&r);
    assert_control_error(r.status, reply, "token");
    cJSON_Delete(reply);
    mc_resp_free(&r);
    assert_int_equal(mc_get(PORT, "/api/models", tok, &r), 0);
    assert_ok_status(&r, 200);
    mc_resp_free(&r);
}

/* max_tokens too large for any integer is no limit at all; too small is refused. */
static void
api_max_tokens_beyond_every_integer(void **state)
{
    int pieces = 0;
    char *ref = ref_text(PORT, "big limits", &pieces);
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    static const char *const huge[] = {",\"max_tokens\":1e300", ",\"max_tokens\":1e19",
                                       ",\"max_tokens\":1.7976931348623157e308"};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        struct mc_resp r;
        chat(PORT, tok, chat_body(body, sizeof body, "big limits", true, huge[i]), &r);
        assert_ok_status(&r, 200);
        struct stream s;
        stream_parse(&r, &s);
        assert_int_equal(s.n, (size_t)pieces);
        assert_finish_on_last(&s, "stop");
        stream_free(&s);
        mc_resp_free(&r);
    }
    static const char *const bad[] = {",\"max_tokens\":-1e300", ",\"max_tokens\":-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct mc_resp r;
        chat(PORT, tok, chat_body(body, sizeof body, "big limits", false, bad[i]), &r);
        assert_detail_mentions(&r, 400, "max_tokens");
        mc_resp_free(&r);
    }
    free(ref);
}

/* Resident memory of this process (the mock runs in it), in bytes. */
struct rss_watch {
    pthread_t thread;
    atomic_bool stop;
    size_t peak;
};

static void *
rss_watch_run(void *arg)
{
    struct rss_watch *w = arg;
    while (!atomic_load(&w->stop)) {
        size_t now = mc_rss_bytes();
        if (now > w->peak)
            w->peak = now;
        mc_sleep_ms(2);
    }
    return NULL;
}

/* Cumulative deltas re-send the text so far in every event: a scripted stream whose
 * cumulative form would be huge is answered with a clear 500 (the step's fault, not the
 * caller's) before anything is built, so the request costs next to no memory. The same
 * step asked for incrementally streams as usual. Bench (release build, qwen-mock alone):
 * before the bound this request streamed 475 MB and peaked at 1009 MB of RSS (4.3 s);
 * now it is refused in 0.2 s at a 27 MB peak. */
static void
stream_huge_cumulative_is_refused_cheaply(void **state)
{
    static const char step[] = "[{\"stream\":{\"piece_bytes\":2097152,\"chunks\":40}}]";
    char tok[TOKLEN], body[512];
    mc_new_token(tok, sizeof tok);
    queue(PORT, tok, "chat", step);
    struct rss_watch w = {.peak = mc_rss_bytes()};
    size_t before = w.peak;
    atomic_init(&w.stop, false);
    assert_int_equal(pthread_create(&w.thread, NULL, rss_watch_run, &w), 0);
    struct mc_resp r;
    chat_timeout(PORT, tok, chat_body(body, sizeof body, "cumulative", true, NULL), 60000, &r);
    atomic_store(&w.stop, true);
    pthread_join(w.thread, NULL);
    print_message("cumulative refusal: RSS %zu MB before, peak %zu MB\n", before >> 20,
                  w.peak >> 20);
    assert_detail_mentions(&r, 500, "cumulative");
    mc_resp_free(&r);
    /* TSan's shadow memory is ~4x each allocated byte: no bound to check there. */
#ifndef __SANITIZE_THREAD__
    assert_true(w.peak < before + ((size_t)64 << 20));
#endif

    queue(PORT, tok, "chat", step);
    chat_timeout(PORT, tok,
                 chat_body(body, sizeof body, "cumulative", true, ",\"incremental_output\":true"),
                 60000, &r);
    assert_ok_status(&r, 200);
    assert_true(r.body_len > (size_t)20 << 20);
    mc_resp_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(models_list),
        cmocka_unit_test(chat_nonstream_shape),
        cmocka_unit_test(stream_shape_cumulative_and_incremental),
        cmocka_unit_test(deterministic_text_and_max_tokens),
        cmocka_unit_test(auth_missing_is_401),
        cmocka_unit_test(auth_missing_is_403_by_option),
        cmocka_unit_test(auth_malformed_is_401),
        cmocka_unit_test(auth_lowercase_bearer_accepted),
        cmocka_unit_test(auth_revoked_is_401),
        cmocka_unit_test(auth_revoked_with_delay_is_a_slow_401),
        cmocka_unit_test(errors_bad_json),
        cmocka_unit_test(errors_wrong_fields),
        cmocka_unit_test(errors_body_too_large_is_413),
        cmocka_unit_test(errors_unknown_path_and_wrong_method),
        cmocka_unit_test(step_status_body_retry_after),
        cmocka_unit_test(step_extra_headers),
        cmocka_unit_test(step_html_pages),
        cmocka_unit_test(step_inband_errors),
        cmocka_unit_test(step_delay),
        cmocka_unit_test(step_drop),
        cmocka_unit_test(step_ok_after_failures),
        cmocka_unit_test(step_routes),
        cmocka_unit_test(stream_chunks),
        cmocka_unit_test(stream_chunk_delay),
        cmocka_unit_test(stream_split_utf8),
        cmocka_unit_test(stream_line_endings),
        cmocka_unit_test(stream_comments),
        cmocka_unit_test(stream_coalesce),
        cmocka_unit_test(stream_truncate_after),
        cmocka_unit_test(stream_stall_after),
        cmocka_unit_test(stream_final_repeat),
        cmocka_unit_test(stream_forced_cumulative),
        cmocka_unit_test(stream_text_free_chunks),
        cmocka_unit_test(stream_step_overrides),
        cmocka_unit_test(stream_server_options),
        cmocka_unit_test(journal_records_requests),
        cmocka_unit_test(journal_client_gone_on_abort),
        cmocka_unit_test(journal_order_is_arrival_order),
        cmocka_unit_test(journal_counts_requests_in_flight),
        cmocka_unit_test(journal_is_bounded),
        cmocka_unit_test(journal_search_contains),
        cmocka_unit_test(journal_search_window_not_token),
        cmocka_unit_test(journal_search_counts_in_flight),
        cmocka_unit_test(journal_search_bad_parameters),
        cmocka_unit_test(health),
        cmocka_unit_test(control_errors),
        cmocka_unit_test(control_refuses_out_of_range_numbers),
        cmocka_unit_test(api_max_tokens_beyond_every_integer),
        cmocka_unit_test(stream_huge_cumulative_is_refused_cheaply),
        cmocka_unit_test(load_scenarios_api),
        cmocka_unit_test(parallel_tokens_do_not_interfere),
        cmocka_unit_test(reset_clears_everything),
        cmocka_unit_test(stop_ends_open_streams),
    };
    return cmocka_run_group_tests_name("e2e_mock", tests, group_setup, group_teardown);
}
