/*
 * End to end, the v2 upstream mode (--upstream-dialect v2): the in-process proxy in front
 * of a small scripted v2 upstream written here (libmicrohttpd on 127.0.0.1, ephemeral
 * port), which records every request it gets (path, chat_id query, credential headers,
 * header names, body) and answers each route from a per-test script, else with the
 * service's usual answers: a chat id from chats/new, a thinking-then-answer event stream
 * from the completion, the enveloped model list.
 *
 * What is pinned: two upstream requests per attempt with the caller's token on both; the
 * created chat's id in the completion's query and body; a failed chats/new (500, an HTML
 * 200, success:false) is one failed attempt, and the next attempt starts at chats/new;
 * a completion that fails before the first caller byte is retried, one that fails after
 * is not; streamed reasoning_content and --reasoning inline/drop; the non-stream answer
 * assembled from the stream; the history rule; the headers sent (nothing a browser would
 * add, --upstream-header, --token-cookie); the unwrapped model list; the in-band
 * `unauthorized` answered 401 once, the in-band bad request (an unknown model) 400 once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <microhttpd.h>

#include "qwenkit/buf.h"
#include "qwenkit/mock.h"
#include "qwenkit/proxy.h"
#include "testkit.h"

/* ---- the scripted v2 upstream ---------------------------------------------------------- */

enum route { R_NEW = 0, R_CHAT, R_MODELS, R_OTHER };

struct answer {
    unsigned status;
    const char *ctype;
    const char *body;
};

#define MAX_SCRIPT 8
#define MAX_SEEN 32

struct seen {
    enum route route;
    char chat_id[128]; /* the completion's query */
    char auth[160];    /* Authorization */
    char cookie[512];  /* Cookie */
    char extra[64];    /* X-Extra */
    char names[512];   /* every header name, ",name," lower case */
    char *body;
};

static struct {
    pthread_mutex_t lock;
    struct answer script[3][MAX_SCRIPT];
    size_t queued[3], taken[3];
    struct seen seen[MAX_SEEN];
    size_t n_seen;
    unsigned chats;
} up = {.lock = PTHREAD_MUTEX_INITIALIZER};

#define STREAM                                                                                     \
    "data: {\"response.created\":{\"chat_id\": \"c\", \"parent_id\": \"p\", \"response_id\": "     \
    "\"r0\", \"response_index\": \"0\"}}\n\n"                                                      \
    "data: {\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"\", \"phase\": "    \
    "\"thinking_summary\", \"extra\": {\"summary_thought\": {\"content\": [\"think one\"]}}, "     \
    "\"status\": \"typing\"}}], \"response_id\": \"r0\"}\n\n"                                      \
    "data: {\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"\", \"phase\": "    \
    "\"thinking_summary\", \"extra\": {\"summary_thought\": {\"content\": [\"think one\", "        \
    "\"think two\"]}}, \"status\": \"typing\"}}], \"response_id\": \"r0\"}\n\n"                    \
    "data: {\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"\", \"phase\": "    \
    "\"thinking_summary\", \"status\": \"finished\"}}], \"response_id\": \"r0\"}\n\n"              \
    "data: {\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"Hello\", "          \
    "\"phase\": \"answer\", \"status\": \"typing\"}}], \"response_id\": \"r0\", \"usage\": "       \
    "{\"input_tokens\": 5, \"output_tokens\": 1, \"total_tokens\": 6}}\n\n"                        \
    "data: {\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \" world\", "         \
    "\"phase\": \"answer\", \"status\": \"typing\"}}], \"response_id\": \"r0\", \"usage\": "       \
    "{\"input_tokens\": 5, \"output_tokens\": 2, \"total_tokens\": 7, "                            \
    "\"output_tokens_details\": {\"reasoning_tokens\": 4}}}\n\n"
#define STREAM_END                                                                                 \
    "data: {\"choices\": [{\"delta\": {\"content\": \"\", \"role\": \"assistant\", \"status\": "   \
    "\"finished\", \"phase\": \"answer\"}}], \"response_id\": \"r0\"}\n\n"

static const struct answer sse_ok = {200, "text/event-stream; charset=utf-8", STREAM STREAM_END};
/* The answer began, then the upstream closed before its finished frame. */
static const struct answer sse_cut = {200, "text/event-stream; charset=utf-8", STREAM};

static void
script(enum route r, struct answer a)
{
    pthread_mutex_lock(&up.lock);
    assert_true(up.queued[r] < MAX_SCRIPT);
    up.script[r][up.queued[r]++] = a;
    pthread_mutex_unlock(&up.lock);
}

static void
up_reset(void)
{
    pthread_mutex_lock(&up.lock);
    for (size_t i = 0; i < up.n_seen; i++)
        free(up.seen[i].body);
    memset(up.seen, 0, sizeof(up.seen));
    up.n_seen = 0;
    memset(up.queued, 0, sizeof(up.queued));
    memset(up.taken, 0, sizeof(up.taken));
    pthread_mutex_unlock(&up.lock);
}

static size_t
count(enum route r)
{
    pthread_mutex_lock(&up.lock);
    size_t n = 0;
    for (size_t i = 0; i < up.n_seen; i++)
        n += up.seen[i].route == r;
    pthread_mutex_unlock(&up.lock);
    return n;
}

struct upload {
    struct qk_buf body;
};

static enum MHD_Result
add_name(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    (void)value;
    struct seen *s = cls;
    size_t n = strlen(s->names);
    snprintf(s->names + n, sizeof(s->names) - n, "%s,", key);
    for (char *p = s->names + n; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    return MHD_YES;
}

static void
copy_header(struct MHD_Connection *c, const char *name, char *out, size_t cap)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    snprintf(out, cap, "%s", v ? v : "");
}

static enum MHD_Result
up_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
           const char *version, const char *data, size_t *data_size, void **con_cls)
{
    (void)cls;
    (void)version;
    struct upload *u = *con_cls;
    if (!u) {
        u = calloc(1, sizeof(*u));
        qk_buf_init(&u->body, 1 << 22);
        *con_cls = u;
        return MHD_YES;
    }
    if (*data_size) {
        assert_int_equal(qk_buf_append(&u->body, data, *data_size), QK_OK);
        *data_size = 0;
        return MHD_YES;
    }
    enum route r = R_OTHER;
    if (strcmp(method, "POST") == 0 && strcmp(url, "/api/v2/chats/new") == 0)
        r = R_NEW;
    else if (strcmp(method, "POST") == 0 && strcmp(url, "/api/v2/chat/completions") == 0)
        r = R_CHAT;
    else if (strcmp(method, "GET") == 0 && strcmp(url, "/api/v2/models/") == 0)
        r = R_MODELS;

    struct answer a = {404, "application/json", "{\"detail\":\"Not Found\"}"};
    char made[256];
    pthread_mutex_lock(&up.lock);
    if (up.n_seen < MAX_SEEN) {
        struct seen *s = &up.seen[up.n_seen++];
        s->route = r;
        const char *id = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "chat_id");
        snprintf(s->chat_id, sizeof(s->chat_id), "%s", id ? id : "");
        copy_header(c, "Authorization", s->auth, sizeof(s->auth));
        copy_header(c, "Cookie", s->cookie, sizeof(s->cookie));
        copy_header(c, "X-Extra", s->extra, sizeof(s->extra));
        snprintf(s->names, sizeof(s->names), ",");
        MHD_get_connection_values(c, MHD_HEADER_KIND, add_name, s);
        s->body = strdup(qk_buf_ptr(&u->body));
    }
    if (r != R_OTHER && up.taken[r] < up.queued[r]) {
        a = up.script[r][up.taken[r]++];
    } else if (r == R_NEW) {
        snprintf(made, sizeof(made),
                 "{\"success\":true,\"request_id\":\"q\",\"data\":{\"id\":\"chat %u/x\"}}",
                 ++up.chats);
        a = (struct answer){200, "application/json", made};
    } else if (r == R_CHAT) {
        a = sse_ok;
    } else if (r == R_MODELS) {
        a = (struct answer){200, "application/json",
                            "{\"success\":true,\"request_id\":\"q\",\"data\":{\"data\":[{\"id\":"
                            "\"qwen3.7-plus\",\"name\":\"Qwen3.7-Plus\"}]}}"};
    }
    pthread_mutex_unlock(&up.lock);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(a.body), (void *)a.body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(resp, "Content-Type", a.ctype);
    enum MHD_Result ret = MHD_queue_response(c, a.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void
up_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
    (void)cls;
    (void)c;
    (void)t;
    struct upload *u = *con_cls;
    if (u) {
        qk_buf_free(&u->body);
        free(u);
    }
    *con_cls = NULL;
}

/* ---- harness --------------------------------------------------------------------------- */

struct env {
    struct MHD_Daemon *up;
    uint16_t up_port;
    struct qk_proxy *proxy;
    uint16_t port;
};

static struct env E;

/* (Re)starts the proxy in v2 mode with @p extra flags ("--reasoning", "inline", ...). */
static void
proxy_with(const char *const *extra)
{
    qk_proxy_stop(E.proxy);
    E.proxy = NULL;
    char upstream[64];
    snprintf(upstream, sizeof(upstream), "http://127.0.0.1:%u", E.up_port);
    const char *argv[24] = {"qwen-proxy", "--upstream-dialect", "v2", "--upstream", upstream};
    int argc = 5;
    for (size_t i = 0; extra && extra[i]; i++)
        argv[argc++] = extra[i];
    struct qk_proxy_config pc;
    qk_proxy_config_init(&pc);
    enum qk_proxy_cli_action action;
    char err[256] = "";
    assert_int_equal(
        qk_proxy_config_from_args(&pc, argc, (char *const *)argv, NULL, &action, err, sizeof(err)),
        QK_OK);
    pc.port = 0;
    pc.retry_base_ms = 5;
    pc.log_format = QK_PROXY_LOG_OFF;
    assert_int_equal(qk_proxy_start(&pc, &E.proxy, err, sizeof(err)), QK_OK);
    E.port = qk_proxy_port(E.proxy);
}

static int
setup_all(void **state)
{
    (void)state;
    mc_global_init();
    E.up = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, up_request, NULL, MHD_OPTION_NOTIFY_COMPLETED, up_done,
                            NULL, MHD_OPTION_END);
    if (!E.up)
        return -1;
    E.up_port = MHD_get_daemon_info(E.up, MHD_DAEMON_INFO_BIND_PORT)->port;
    proxy_with(NULL);
    return 0;
}

static int
teardown_all(void **state)
{
    (void)state;
    qk_proxy_stop(E.proxy);
    MHD_stop_daemon(E.up);
    up_reset();
    mc_global_cleanup();
    return 0;
}

static int
each(void **state)
{
    (void)state;
    up_reset();
    return 0;
}

#define CHAT(stream)                                                                               \
    "{\"model\":\"qwen3.7-plus\",\"stream\":" stream ",\"messages\":[{\"role\":\"user\","          \
    "\"content\":\"hi\"}]}"

static void
ask(const char *body, const char *const *hdrs, struct mc_resp *r)
{
    char auth[96];
    snprintf(auth, sizeof(auth), "Authorization: Bearer tok-v2-test");
    struct mc_req q = {
        .port = E.port, .path = "/v1/chat/completions", .body = body, .timeout_ms = 20000};
    q.headers[0] = auth;
    for (size_t i = 0; hdrs && hdrs[i]; i++)
        q.headers[i + 1] = hdrs[i];
    assert_int_equal(mc_request(&q, r), 0);
    assert_int_equal(r->rc, CURLE_OK);
}

/* The streamed answer's reasoning_content and content, joined; whether it ended [DONE]. */
static bool
stream_text(const struct mc_resp *r, char *reasoning, char *content, size_t cap, bool *error)
{
    struct mc_events ev;
    mc_sse_parse(r->body, r->body_len, &ev);
    reasoning[0] = content[0] = '\0';
    bool done = false;
    *error = false;
    for (size_t i = 0; i < ev.n; i++) {
        if (strcmp(ev.data[i], "[DONE]") == 0) {
            done = true;
            continue;
        }
        cJSON *j = cJSON_Parse(ev.data[i]);
        assert_non_null(j);
        if (cJSON_GetObjectItemCaseSensitive(j, "error"))
            *error = true;
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0), "delta");
        const cJSON *rc = cJSON_GetObjectItemCaseSensitive(d, "reasoning_content");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "content");
        if (cJSON_IsString(rc))
            strncat(reasoning, rc->valuestring, cap - strlen(reasoning) - 1);
        if (cJSON_IsString(c))
            strncat(content, c->valuestring, cap - strlen(content) - 1);
        cJSON_Delete(j);
    }
    mc_events_free(&ev);
    return done;
}

/* ---- tests ----------------------------------------------------------------------------- */

/* One attempt is chats/new then the completion, both with the caller's token; the chat id
 * goes in the completion's query (escaped, decoded here) and body. */
static void
an_attempt_is_two_requests_with_one_token_and_the_chat_id(void **state)
{
    (void)state;
    struct mc_resp r;
    ask(CHAT("true"), NULL, &r);
    assert_int_equal(r.status, 200);
    mc_resp_free(&r);
    assert_int_equal(count(R_NEW), 1);
    assert_int_equal(count(R_CHAT), 1);
    struct seen *n = &up.seen[0], *c = &up.seen[1];
    assert_int_equal(n->route, R_NEW);
    assert_int_equal(c->route, R_CHAT);
    assert_string_equal(n->auth, "Bearer tok-v2-test");
    assert_string_equal(c->auth, "Bearer tok-v2-test");
    assert_string_equal(c->chat_id, "chat 1/x");
    cJSON *body = cJSON_Parse(c->body);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(body, "chat_id")->valuestring, "chat 1/x");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "stream")));
    cJSON_Delete(body);
    body = cJSON_Parse(n->body);
    assert_string_equal(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(body, "models"), 0)->valuestring,
        "qwen3.7-plus");
    cJSON_Delete(body);
    /* No cookie unless configured, and nothing a browser would add. */
    assert_string_equal(c->cookie, "");
    const char *allowed = ",host,accept,authorization,x-request-id,content-type,content-length,";
    char names[512];
    snprintf(names, sizeof(names), "%s", c->names);
    for (char *t = strtok(names, ","); t; t = strtok(NULL, ",")) {
        char item[80];
        snprintf(item, sizeof(item), ",%s,", t);
        if (!strstr(allowed, item))
            fail_msg("unexpected upstream header %s", t);
    }
}

static void
streamed_reasoning_is_reasoning_content_and_the_answer_content(void **state)
{
    (void)state;
    struct mc_resp r;
    ask(CHAT("true"), NULL, &r);
    assert_int_equal(r.status, 200);
    char reasoning[512], content[512];
    bool error = false;
    assert_true(stream_text(&r, reasoning, content, sizeof(reasoning), &error));
    assert_false(error);
    assert_string_equal(reasoning, "think one\nthink two");
    assert_string_equal(content, "Hello world");
    mc_resp_free(&r);
}

static void
reasoning_inline_and_drop(void **state)
{
    (void)state;
    static const char *const inl[] = {"--reasoning", "inline", NULL};
    proxy_with(inl);
    struct mc_resp r;
    char reasoning[512], content[512];
    bool error = false;
    ask(CHAT("true"), NULL, &r);
    assert_true(stream_text(&r, reasoning, content, sizeof(reasoning), &error));
    assert_string_equal(reasoning, "");
    assert_string_equal(content, "<think>\nthink one\nthink two\n</think>\n\nHello world");
    mc_resp_free(&r);
    static const char *const drop[] = {"--reasoning", "drop", NULL};
    proxy_with(drop);
    ask(CHAT("true"), NULL, &r);
    assert_true(stream_text(&r, reasoning, content, sizeof(reasoning), &error));
    assert_string_equal(reasoning, "");
    assert_string_equal(content, "Hello world");
    mc_resp_free(&r);
    proxy_with(NULL);
}

/* Each failed chats/new is one failed attempt; the next attempt starts at chats/new. */
static void
failed_chat_creation_is_a_failed_attempt_retried_from_the_start(void **state)
{
    (void)state;
    script(R_NEW, (struct answer){500, "application/json", "{\"detail\":\"oops\"}"});
    script(R_NEW, (struct answer){200, "text/html",
                                  "<!doctypehtml><meta name=\"aliyun_waf_aa\" content=\"1\">"});
    script(R_NEW, (struct answer){200, "application/json",
                                  "{\"success\":false,\"request_id\":\"q\",\"data\":{\"code\":"
                                  "\"RateLimited\",\"details\":\"slow down\"}}"});
    struct mc_resp r;
    ask(CHAT("true"), NULL, &r);
    assert_int_equal(r.status, 200);
    mc_resp_free(&r);
    assert_int_equal(count(R_NEW), 4);
    assert_int_equal(count(R_CHAT), 1);
    /* Out of attempts: the 502 names the step and the last cause. */
    up_reset();
    for (int i = 0; i < 4; i++)
        script(R_NEW, (struct answer){200, "application/json",
                                      "{\"success\":true,\"data\":{\"nothing\":1}}"});
    ask(CHAT("true"), NULL, &r);
    assert_int_equal(r.status, 502);
    assert_non_null(strstr(r.body, "step 1 of 2 (POST /api/v2/chats/new)"));
    assert_non_null(strstr(r.body, "data.id"));
    assert_non_null(strstr(r.body, "4 attempt(s)"));
    mc_resp_free(&r);
    assert_int_equal(count(R_CHAT), 0);
}

/* The completion failing before the caller's first byte (500, a whole JSON failure body,
 * an in-band failure event) is retried with a new chat; after the first byte, never. */
static void
completion_failures_retried_before_the_first_byte_only(void **state)
{
    (void)state;
    script(R_CHAT, (struct answer){500, "text/plain", "down"});
    script(R_CHAT, (struct answer){200, "application/json",
                                   "{\"success\":false,\"request_id\":\"q\",\"data\":{\"code\":"
                                   "\"Bad_Request\",\"details\":\"The chat is in progress!\"}}"});
    script(R_CHAT, (struct answer){
                       200, "text/event-stream",
                       "data: {\"error\":{\"code\":\"internal_error\",\"details\":\"x\"}}\n\n"});
    struct mc_resp r;
    ask(CHAT("true"), NULL, &r);
    assert_int_equal(r.status, 200);
    char reasoning[512], content[512];
    bool error = false;
    assert_true(stream_text(&r, reasoning, content, sizeof(reasoning), &error));
    assert_string_equal(content, "Hello world");
    mc_resp_free(&r);
    assert_int_equal(count(R_NEW), 4);
    assert_int_equal(count(R_CHAT), 4);
    /* Every attempt used the chat it created. */
    for (size_t i = 0; i + 1 < up.n_seen; i += 2) {
        char want[64];
        snprintf(want, sizeof(want), "chat %u/x", up.chats - 3 + (unsigned)(i / 2));
        assert_string_equal(up.seen[i + 1].chat_id, want);
    }

    up_reset();
    script(R_CHAT, sse_cut);
    ask(CHAT("true"), NULL, &r);
    assert_int_equal(r.status, 200);
    assert_false(stream_text(&r, reasoning, content, sizeof(reasoning), &error));
    assert_true(error); /* one error event, no [DONE] */
    mc_resp_free(&r);
    assert_int_equal(count(R_NEW), 1);
    assert_int_equal(count(R_CHAT), 1);
}

/* A non-stream caller: the upstream still streams; the answer is one chat.completion. */
static void
non_stream_answer_is_assembled(void **state)
{
    (void)state;
    struct mc_resp r;
    ask(CHAT("false"), NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(mc_header(&r, "Content-Type"), "application/json");
    cJSON *j = cJSON_Parse(r.body);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "object")->valuestring,
                        "chat.completion");
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(ch, "message");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(m, "content")->valuestring, "Hello world");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(m, "reasoning_content")->valuestring,
                        "think one\nthink two");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(ch, "finish_reason")->valuestring, "stop");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens")->valueint, 5);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(u, "completion_tokens")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(u, "total_tokens")->valueint, 7);
    cJSON_Delete(j);
    mc_resp_free(&r);
    /* The upstream was asked for a stream all the same. */
    cJSON *body = cJSON_Parse(up.seen[1].body);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "stream")));
    cJSON_Delete(body);

    /* A stream cut before its finished frame is a failed attempt for a non-stream caller. */
    up_reset();
    script(R_CHAT, sse_cut);
    ask(CHAT("false"), NULL, &r);
    assert_int_equal(r.status, 200);
    mc_resp_free(&r);
    assert_int_equal(count(R_CHAT), 2);
}

/* Expired token inside a 2xx (chats/new): 401 to the caller, not retried. */
static void
in_band_unauthorized_is_401_once(void **state)
{
    (void)state;
    script(R_NEW, (struct answer){200, "application/json",
                                  "{\"success\":false,\"request_id\":\"q\",\"data\":{\"code\":"
                                  "\"unauthorized\",\"details\":\"Token has expired, please log "
                                  "in again.\"}}"});
    struct mc_resp r;
    ask(CHAT("true"), NULL, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "Token has expired"));
    mc_resp_free(&r);
    assert_int_equal(count(R_NEW), 1);
    assert_int_equal(count(R_CHAT), 0);

    /* The service's HTTP 401, in its envelope: relayed with its details, not retried. */
    up_reset();
    script(R_NEW, (struct answer){401, "application/json",
                                  "{\"success\":false,\"request_id\":\"q\",\"data\":{\"code\":"
                                  "\"Unauthorized\",\"details\":\"Not logged in\"}}"});
    ask(CHAT("false"), NULL, &r);
    assert_int_equal(r.status, 401);
    cJSON *j = cJSON_Parse(r.body);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(err, "message")->valuestring,
                        "Not logged in");
    cJSON_Delete(j);
    mc_resp_free(&r);
    assert_int_equal(count(R_NEW), 1);
}

#define FAILURE(code, details)                                                                     \
    "{\"success\":false,\"request_id\":\"q\",\"data\":{\"code\":\"" code                           \
    "\",\"details\":\"" details "\"}}"

/* The OpenAI error of a response: its status, code and message checked. */
static void
expect_error(const struct mc_resp *r, long status, const char *code, const char *needle)
{
    assert_int_equal(r->status, status);
    cJSON *j = cJSON_Parse(r->body);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    assert_non_null(err);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(err, "code");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(err, "message");
    assert_true(cJSON_IsString(c) && cJSON_IsString(m));
    assert_string_equal(c->valuestring, code);
    if (!strstr(m->valuestring, needle))
        fail_msg("'%s' lacks '%s'", m->valuestring, needle);
    cJSON_Delete(j);
}

/* The caller's bad request inside a 2xx (an unknown model at chats/new, a bad body at the
 * completion): 400 naming the upstream's code and details, once; the in-progress chat is
 * worth another attempt; an expired token at the completion is 401, once. */
static void
in_band_bad_request_is_400_once(void **state)
{
    (void)state;
    struct mc_resp r;
    for (int stream = 0; stream < 2; stream++) {
        up_reset();
        script(R_NEW,
               (struct answer){200, "application/json", FAILURE("Bad_Request", "Model not found")});
        ask(stream ? CHAT("true") : CHAT("false"), NULL, &r);
        expect_error(&r, 400, "upstream_rejected", "Bad_Request: Model not found");
        mc_resp_free(&r);
        assert_int_equal(count(R_NEW), 1);
        assert_int_equal(count(R_CHAT), 0);

        /* At the completion, as a whole body and as the stream's first event. */
        up_reset();
        script(R_CHAT, (struct answer){200, "application/json",
                                       FAILURE("RequestValidationError", "chat_id required")});
        ask(stream ? CHAT("true") : CHAT("false"), NULL, &r);
        expect_error(&r, 400, "upstream_rejected", "RequestValidationError: chat_id required");
        mc_resp_free(&r);
        assert_int_equal(count(R_CHAT), 1);
        up_reset();
        script(R_CHAT, (struct answer){200, "text/event-stream",
                                       "data: {\"error\":{\"code\":\"invalid_input\","
                                       "\"details\":\"thinking off\"}}\n\n"});
        ask(stream ? CHAT("true") : CHAT("false"), NULL, &r);
        expect_error(&r, 400, "upstream_rejected", "invalid_input: thinking off");
        mc_resp_free(&r);
        assert_int_equal(count(R_CHAT), 1);

        /* Worth another attempt: the chat in progress, "Internal error...". */
        up_reset();
        script(R_CHAT, (struct answer){200, "application/json",
                                       FAILURE("Bad_Request", "The chat is in progress!")});
        script(R_CHAT, (struct answer){200, "application/json",
                                       FAILURE("Bad_Request", "internal error...")});
        ask(stream ? CHAT("true") : CHAT("false"), NULL, &r);
        assert_int_equal(r.status, 200);
        mc_resp_free(&r);
        assert_int_equal(count(R_CHAT), 3);

        /* The expired token at the completion: 401, once. */
        up_reset();
        script(R_CHAT, (struct answer){200, "application/json",
                                       FAILURE("Bad_Request", "Token has expired, log in")});
        ask(stream ? CHAT("true") : CHAT("false"), NULL, &r);
        expect_error(&r, 401, "upstream_error", "Token has expired");
        mc_resp_free(&r);
        assert_int_equal(count(R_CHAT), 1);
    }
}

/* Several messages go up as one: `<role>: <text>` joined by blank lines. */
static void
history_goes_up_as_one_message(void **state)
{
    (void)state;
    struct mc_resp r;
    ask("{\"model\":\"qwen3.7-plus\",\"stream\":true,\"messages\":[{\"role\":\"system\","
        "\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"hi\"},{\"role\":"
        "\"assistant\",\"content\":\"hello\"},{\"role\":\"user\",\"content\":\"again\"}]}",
        NULL, &r);
    assert_int_equal(r.status, 200);
    mc_resp_free(&r);
    assert_int_equal(count(R_CHAT), 1);
    cJSON *body = cJSON_Parse(up.seen[1].body);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    assert_int_equal(cJSON_GetArraySize(msgs), 1);
    assert_string_equal(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(msgs, 0), "content")->valuestring,
        "system: be brief\n\nuser: hi\n\nassistant: hello\n\nuser: again");
    cJSON_Delete(body);
}

/* --upstream-header and --token-cookie, on both requests of an attempt. */
static void
configured_headers_and_token_cookie(void **state)
{
    (void)state;
    static const char *const flags[] = {
        "--token-cookie",    "--upstream-header",       "X-Extra: 1",
        "--upstream-header", "Cookie: ssxmod_itna=abc", NULL};
    proxy_with(flags);
    static const char *const hdrs[] = {"X-Extra: from-caller", "Cookie: mine=1", NULL};
    struct mc_resp r;
    ask(CHAT("true"), hdrs, &r);
    assert_int_equal(r.status, 200);
    mc_resp_free(&r);
    assert_int_equal(up.n_seen, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(up.seen[i].extra, "1"); /* the configured one replaces the caller's */
        assert_string_equal(up.seen[i].cookie, "token=tok-v2-test; ssxmod_itna=abc; mine=1");
        assert_string_equal(up.seen[i].auth, "Bearer tok-v2-test");
    }
    proxy_with(NULL);
    up_reset();
    ask(CHAT("true"), hdrs, &r);
    mc_resp_free(&r);
    assert_string_equal(up.seen[0].extra, "from-caller");
    assert_string_equal(up.seen[0].cookie, "mine=1");
}

/* The model list's envelope is unwrapped: callers get v1's shapes. */
static void
model_list_is_served_in_the_v1_shapes(void **state)
{
    (void)state;
    struct mc_resp r;
    assert_int_equal(mc_get(E.port, "/api/models", "tok-models", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"data\":[{\"id\":\"qwen3.7-plus\",\"name\":\"Qwen3.7-Plus\"}]}");
    mc_resp_free(&r);
    assert_int_equal(mc_get(E.port, "/v1/models", "tok-models", &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "object")->valuestring, "list");
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "data"), 0);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(m, "id")->valuestring, "qwen3.7-plus");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(m, "object")->valuestring, "model");
    cJSON_Delete(j);
    mc_resp_free(&r);
    assert_int_equal(count(R_MODELS), 1); /* the second came from the cache */
}

/* Against qwen-mock's v2 routes: both requests journaled under the caller's token, the
 * created chat's id in the completion's query, and the answer the mock says it produced,
 * streamed and not. */
static void
against_the_mock_v2_routes(void **state)
{
    (void)state;
    struct qk_mock_config mc;
    qk_mock_config_init(&mc);
    mc.port = 0;
    struct qk_mock *mock = NULL;
    char err[256] = "";
    assert_int_equal(qk_mock_start(&mc, &mock, err, sizeof(err)), QK_OK);
    uint16_t saved = E.up_port;
    E.up_port = qk_mock_port(mock);
    proxy_with(NULL);
    char token[MC_TOKEN_MAX];
    mc_new_token(token, sizeof(token));
    char auth[128];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    const char *body = "{\"model\":\"qwen-max-latest\",\"stream\":false,\"messages\":[{\"role\":"
                       "\"user\",\"content\":\"hello there\"}]}";
    struct mc_req q = {
        .port = E.port, .path = "/v1/chat/completions", .body = body, .timeout_ms = 20000};
    q.headers[0] = auth;
    struct mc_resp r;
    assert_int_equal(mc_request(&q, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0), "message");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    assert_true(cJSON_IsString(content));
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "reasoning_content")));

    cJSON *journal = mc_journal_settled(qk_mock_port(mock), token, 2, 3000);
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(journal, "entries");
    assert_int_equal(cJSON_GetArraySize(entries), 2);
    const cJSON *e0 = cJSON_GetArrayItem(entries, 0), *e1 = cJSON_GetArrayItem(entries, 1);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(e0, "path")->valuestring,
                        "/api/v2/chats/new");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(e1, "path")->valuestring,
                        "/api/v2/chat/completions");
    const cJSON *answer = cJSON_GetObjectItemCaseSensitive(e1, "answer");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(answer, "text")->valuestring,
                        content->valuestring);
    char query[200];
    snprintf(query, sizeof(query), "chat_id=%s",
             cJSON_GetObjectItemCaseSensitive(answer, "chat_id")->valuestring);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(e1, "query")->valuestring, query);
    cJSON_Delete(journal);
    cJSON_Delete(j);
    mc_resp_free(&r);

    /* Streamed: the same text as content chunks, then [DONE]. */
    q.body = "{\"model\":\"qwen-max-latest\",\"stream\":true,\"messages\":[{\"role\":\"user\","
             "\"content\":\"hello there\"}]}";
    assert_int_equal(mc_request(&q, &r), 0);
    assert_int_equal(r.status, 200);
    char reasoning[4096], text[4096];
    bool error = false;
    assert_true(stream_text(&r, reasoning, text, sizeof(text), &error));
    assert_false(error);
    assert_true(reasoning[0] != '\0');
    journal = mc_journal_settled(qk_mock_port(mock), token, 4, 3000);
    entries = cJSON_GetObjectItemCaseSensitive(journal, "entries");
    assert_int_equal(cJSON_GetArraySize(entries), 4);
    answer = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(entries, 3), "answer");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(answer, "text")->valuestring, text);
    cJSON_Delete(journal);
    mc_resp_free(&r);

    /* An unknown model: the mock's in-band Bad_Request, the caller's 400, one chats/new. */
    q.body = "{\"model\":\"no-such-model\",\"stream\":true,\"messages\":[{\"role\":\"user\","
             "\"content\":\"hello there\"}]}";
    assert_int_equal(mc_request(&q, &r), 0);
    expect_error(&r, 400, "upstream_rejected", "Model not found");
    mc_resp_free(&r);
    journal = mc_journal_settled(qk_mock_port(mock), token, 6, 1000);
    entries = cJSON_GetObjectItemCaseSensitive(journal, "entries");
    assert_int_equal(cJSON_GetArraySize(entries), 5);
    assert_string_equal(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(entries, 4), "path")->valuestring,
        "/api/v2/chats/new");
    cJSON_Delete(journal);

    E.up_port = saved;
    proxy_with(NULL);
    qk_mock_stop(mock);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(an_attempt_is_two_requests_with_one_token_and_the_chat_id, each),
        cmocka_unit_test_setup(streamed_reasoning_is_reasoning_content_and_the_answer_content,
                               each),
        cmocka_unit_test_setup(reasoning_inline_and_drop, each),
        cmocka_unit_test_setup(failed_chat_creation_is_a_failed_attempt_retried_from_the_start,
                               each),
        cmocka_unit_test_setup(completion_failures_retried_before_the_first_byte_only, each),
        cmocka_unit_test_setup(non_stream_answer_is_assembled, each),
        cmocka_unit_test_setup(in_band_unauthorized_is_401_once, each),
        cmocka_unit_test_setup(in_band_bad_request_is_400_once, each),
        cmocka_unit_test_setup(history_goes_up_as_one_message, each),
        cmocka_unit_test_setup(configured_headers_and_token_cookie, each),
        cmocka_unit_test_setup(model_list_is_served_in_the_v1_shapes, each),
        cmocka_unit_test_setup(against_the_mock_v2_routes, each),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
