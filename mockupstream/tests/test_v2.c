/*
 * End-to-end tests of qwen-mock's v2 dialect (api_v2.c, mock_stream_v2.c, mock_chats.c):
 * the mock runs in-process on port 0, the tests talk to it over loopback with testkit.
 * Each test uses fresh random tokens. Every v2 statement of mockupstream/README.md has a
 * test here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testkit.h"
#include "qwenkit/common.h"
#include "qwenkit/mock.h"

#define MODEL "qwen-max-latest"
#define TOKLEN 96
#define COMPLETIONS "/api/v2/chat/completions"

struct v2 {
    struct qk_mock *mock;
    uint16_t port;
};

#define PORT (((struct v2 *)*state)->port)

/* ---------- helpers ---------- */

#define assert_status(r, code)                                                                     \
    do {                                                                                           \
        if ((r)->status != (long)(code))                                                           \
            print_message("expected %ld, got status %ld (curl %d: %s)\nbody: %.*s\n",              \
                          (long)(code), (r)->status, (int)(r)->rc, (r)->err, (int)(r)->body_len,   \
                          (r)->body);                                                              \
        assert_int_equal((r)->status, (long)(code));                                               \
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
    return m;
}

static void
queue(uint16_t port, const char *token, const char *route, const char *steps)
{
    long st = mc_queue(port, token, route, steps);
    if (st != 200)
        print_message("queue %s %s -> %ld\n", route, steps, st);
    assert_int_equal(st, 200);
}

static bool
is_uuid(const char *s)
{
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !strchr("0123456789abcdef", s[i]))
            return false;
    }
    return true;
}

static const cJSON *
item(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *
str(const cJSON *o, const char *key)
{
    const cJSON *v = item(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The body of a chats/new request: the browser's shape. */
#define CHATS_NEW_BODY                                                                             \
    "{\"chatId\":\"\",\"models\":[\"" MODEL "\"],\"project_id\":\"\",\"timestamp\":1787650000000," \
    "\"chat_type\":\"t2t\",\"chat_mode\":\"normal\"}"

/* POST /api/v2/chats/new with @p body; @return the new chat id (caller frees). */
static char *
new_chat_with(uint16_t port, const char *token, const char *body)
{
    struct mc_resp r;
    assert_int_equal(mc_post(port, "/api/v2/chats/new", token, body, &r), 0);
    assert_status(&r, 200);
    cJSON *j = mc_json(&r);
    if (!cJSON_IsTrue(item(j, "success")))
        print_message("chats/new: %s\n", r.body);
    assert_true(cJSON_IsTrue(item(j, "success")));
    assert_true(is_uuid(str(j, "request_id")));
    const char *id = str(item(j, "data"), "id");
    assert_true(is_uuid(id));
    char *out = strdup(id);
    cJSON_Delete(j);
    mc_resp_free(&r);
    return out;
}

static char *
new_chat(uint16_t port, const char *token)
{
    return new_chat_with(port, token, CHATS_NEW_BODY);
}

/* A completion body as the proxy sends it, with one message (extra spliced at the end of
 * the body); @p fc is the feature_config object. */
static const char *
v2_body(char *buf, size_t len, const char *msg, const char *fc, const char *extra)
{
    snprintf(buf, len,
             "{\"stream\":true,\"incremental_output\":true,\"version\":\"2.1\",\"chat_mode\":"
             "\"normal\",\"model\":\"" MODEL "\",\"parent_id\":null,\"messages\":[{\"fid\":"
             "\"00000000-0000-4000-8000-000000000000\",\"parentId\":null,\"childrenIds\":[],"
             "\"role\":\"user\",\"content\":\"%s\",\"user_action\":\"chat\",\"files\":[],"
             "\"models\":[\"" MODEL "\"],\"chat_type\":\"t2t\",\"sub_chat_type\":\"t2t\","
             "\"feature_config\":%s,\"extra\":{\"meta\":{\"subChatType\":\"t2t\"}}}]%s}",
             msg, fc, extra ? extra : "");
    return buf;
}

#define FC_THINK                                                                                   \
    "{\"output_schema\":\"phase\",\"thinking_enabled\":true,\"thinking_format\":\"summary\"}"
#define FC_FAST "{\"output_schema\":\"phase\",\"thinking_enabled\":false}"

static void
complete(uint16_t port, const char *token, const char *chat_id, const char *body, struct mc_resp *r)
{
    char path[160];
    if (chat_id)
        snprintf(path, sizeof path, COMPLETIONS "?chat_id=%s", chat_id);
    else
        snprintf(path, sizeof path, COMPLETIONS);
    assert_int_equal(mc_post(port, path, token, body, r), 0);
}

/* A stream's events as JSON (NULL for a non-JSON one such as [DONE]). */
struct frames {
    struct mc_events ev;
    cJSON *f[600];
    size_t n;
};

static void
frames_parse(const struct mc_resp *r, struct frames *s)
{
    memset(s, 0, sizeof *s);
    mc_sse_parse(r->body, r->body_len, &s->ev);
    assert_true(s->ev.n < 600);
    for (size_t i = 0; i < s->ev.n; i++)
        s->f[i] = cJSON_Parse(s->ev.data[i]);
    s->n = s->ev.n;
}

static void
frames_free(struct frames *s)
{
    for (size_t i = 0; i < s->n; i++)
        cJSON_Delete(s->f[i]);
    mc_events_free(&s->ev);
}

static const cJSON *
delta_of(const cJSON *frame)
{
    return item(cJSON_GetArrayItem(item(frame, "choices"), 0), "delta");
}

/* Asserts an HTTP 200 business error {"success":false,...} with @p code and @p details. */
static void
assert_business_error(const struct mc_resp *r, const char *code, const char *details)
{
    assert_int_equal(r->rc, CURLE_OK);
    assert_status(r, 200);
    assert_string_equal(mc_header(r, "Content-Type"), "application/json");
    cJSON *j = mc_json(r);
    if (!j || !cJSON_IsFalse(item(j, "success")))
        print_message("not a business error: %s\n", r->body);
    assert_true(cJSON_IsFalse(item(j, "success")));
    assert_true(is_uuid(str(j, "request_id")));
    assert_string_equal(str(item(j, "data"), "code"), code);
    const char *d = str(item(j, "data"), "details");
    assert_non_null(d);
    if (!strstr(d, details))
        print_message("details '%s' lack '%s'\n", d, details);
    assert_non_null(strstr(d, details));
    cJSON_Delete(j);
}

/* The journal of @p token once it holds @p n settled entries. */
static cJSON *
journal(uint16_t port, const char *token, int n)
{
    cJSON *j = mc_journal_settled(port, token, n, 5000);
    assert_non_null(j);
    assert_int_equal(cJSON_GetArraySize(item(j, "entries")), n);
    return j;
}

/* The answer text of v1 for the same model and message (the same deterministic function). */
static char *
v1_text(uint16_t port, const char *msg)
{
    char tok[TOKLEN], body[256];
    mc_new_token(tok, sizeof tok);
    snprintf(body, sizeof body,
             "{\"model\":\"" MODEL "\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
             msg);
    struct mc_resp r;
    assert_int_equal(mc_post(port, "/api/chat/completions", tok, body, &r), 0);
    assert_status(&r, 200);
    cJSON *j = mc_json(&r);
    char *t = strdup(str(item(cJSON_GetArrayItem(item(j, "choices"), 0), "message"), "content"));
    cJSON_Delete(j);
    mc_resp_free(&r);
    return t;
}

/* ---------- fixtures ---------- */

static int
group_setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    mc_global_init();
    struct v2 *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    struct qk_mock_config cfg;
    qk_mock_config_init(&cfg);
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
    struct v2 *e = *state;
    qk_mock_stop(e->mock);
    free(e);
    mc_global_cleanup();
    return 0;
}

/* ---------- the model list ---------- */

/* Both v2 paths answer the v1 list's models in the v2 envelope; v1's path is unchanged. */
static void
models_v2_envelope_on_both_paths(void **state)
{
    char tok[TOKLEN];
    mc_new_token(tok, sizeof tok);
    struct mc_resp v1;
    assert_int_equal(mc_get(PORT, "/api/models", tok, &v1), 0);
    assert_status(&v1, 200);
    cJSON *j1 = mc_json(&v1);
    assert_null(item(j1, "success"));
    const cJSON *list1 = item(j1, "data");
    assert_true(cJSON_IsArray(list1));
    const char *paths[] = {"/api/v2/models/", "/api/v2/models"};
    for (size_t p = 0; p < 2; p++) {
        struct mc_resp r;
        assert_int_equal(mc_get(PORT, paths[p], tok, &r), 0);
        assert_status(&r, 200);
        assert_string_equal(mc_header(&r, "Content-Type"), "application/json");
        cJSON *j = mc_json(&r);
        assert_true(cJSON_IsTrue(item(j, "success")));
        assert_true(is_uuid(str(j, "request_id")));
        const cJSON *list = item(item(j, "data"), "data");
        assert_int_equal(cJSON_GetArraySize(list), cJSON_GetArraySize(list1));
        for (int i = 0; i < cJSON_GetArraySize(list); i++)
            assert_string_equal(str(cJSON_GetArrayItem(list, i), "id"),
                                str(cJSON_GetArrayItem(list1, i), "id"));
        cJSON_Delete(j);
        mc_resp_free(&r);
    }
    cJSON_Delete(j1);
    mc_resp_free(&v1);
    /* Both requests are journaled, on route models. */
    cJSON *jn = journal(PORT, tok, 3);
    assert_string_equal(str(cJSON_GetArrayItem(item(jn, "entries"), 1), "path"), "/api/v2/models/");
    cJSON_Delete(jn);
}

/* ---------- chats/new ---------- */

/* The browser's body, the older `title` one, seconds or no timestamp, any type and mode:
 * each gets a new chat id. */
static void
chats_new_accepts_both_shapes(void **state)
{
    char tok[TOKLEN];
    mc_new_token(tok, sizeof tok);
    const char *bodies[] = {
        CHATS_NEW_BODY,
        "{\"title\":\"New Chat\",\"models\":[\"" MODEL "\"],\"chat_mode\":\"normal\","
        "\"chat_type\":\"t2t\",\"timestamp\":1787650000,\"project_id\":\"\"}",
        "{\"title\":\"新建对话\",\"models\":[\"" MODEL "\"],\"chat_mode\":\"local\","
        "\"chat_type\":\"t2i\"}",
        "{\"models\":[\"" MODEL "\"],\"chat_mode\":\"guest\",\"chat_type\":\"search\"}",
    };
    char *ids[4];
    for (size_t i = 0; i < 4; i++) {
        ids[i] = new_chat_with(PORT, tok, bodies[i]);
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(ids[i], ids[k]);
    }
    /* Each chat takes a completion. */
    char body[2048];
    for (size_t i = 0; i < 4; i++) {
        struct mc_resp r;
        complete(PORT, tok, ids[i], v2_body(body, sizeof body, "hi", FC_FAST, NULL), &r);
        assert_status(&r, 200);
        assert_string_equal(mc_header(&r, "Content-Type"), "text/event-stream; charset=utf-8");
        mc_resp_free(&r);
        free(ids[i]);
    }
}

static void
chats_new_failures(void **state)
{
    char tok[TOKLEN];
    mc_new_token(tok, sizeof tok);
    struct {
        const char *body, *details;
    } cases[] = {
        {"{not json", "Invalid JSON body"},
        {"[1]", "Invalid JSON body"},
        {"{\"chat_type\":\"t2t\"}", "models"},
        {"{\"models\":[]}", "models"},
        {"{\"models\":\"" MODEL "\"}", "models"},
        {"{\"models\":[1]}", "models"},
        {"{\"models\":[\"no-such-model\"]}", "Model not found"},
        {"{\"models\":[\"" MODEL "\"],\"timestamp\":\"now\"}", "timestamp"},
        {"{\"models\":[\"" MODEL "\"],\"title\":7}", "title"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mc_resp r;
        assert_int_equal(mc_post(PORT, "/api/v2/chats/new", tok, cases[i].body, &r), 0);
        assert_business_error(&r, "Bad_Request", cases[i].details);
        mc_resp_free(&r);
    }
}

/* ---------- completion errors ---------- */

static void
completion_errors(void **state)
{
    char tok[TOKLEN], other[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    mc_new_token(other, sizeof other);
    char *id = new_chat(PORT, tok);
    char *foreign = new_chat(PORT, other);
    struct mc_resp r;

    complete(PORT, tok, NULL, v2_body(body, sizeof body, "hi", FC_FAST, NULL), &r);
    assert_business_error(&r, "RequestValidationError",
                          "[\"Field 'query -> chat_id': Field required\"]");
    mc_resp_free(&r);

    complete(PORT, tok, "00000000-0000-4000-8000-000000000001", body, &r);
    assert_business_error(&r, "Not_Found", "Chat not found");
    mc_resp_free(&r);

    complete(PORT, tok, foreign, body, &r); /* another key's chat */
    assert_business_error(&r, "Not_Found", "Chat not found");
    mc_resp_free(&r);

    struct {
        const char *body, *details;
    } cases[] = {
        {"{oops", "Invalid JSON body"},
        {"{\"stream\":false,\"model\":\"" MODEL "\",\"messages\":[{\"content\":\"x\"}]}",
         "Internal error..."},
        {"{\"model\":\"" MODEL "\",\"messages\":[{\"content\":\"x\"}]}", "Internal error..."},
        {"{\"stream\":true,\"model\":\"" MODEL "\"}", "messages"},
        {"{\"stream\":true,\"model\":\"" MODEL "\",\"messages\":[]}", "messages"},
        {"{\"stream\":true,\"model\":\"" MODEL "\",\"messages\":{}}", "messages"},
        {"{\"stream\":true,\"model\":\"" MODEL "\",\"messages\":[{\"content\":3}]}",
         "messages[0].content"},
        {"{\"stream\":true,\"model\":\"" MODEL "\",\"messages\":[7]}", "messages[0]"},
        {"{\"stream\":true,\"model\":\"nope\",\"messages\":[{\"content\":\"x\"}]}",
         "Model not found"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        complete(PORT, tok, id, cases[i].body, &r);
        assert_business_error(&r, "Bad_Request", cases[i].details);
        mc_resp_free(&r);
    }
    /* No model: the chat's; content as an item array. */
    complete(PORT, tok, id,
             "{\"stream\":true,\"messages\":[{\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}",
             &r);
    assert_status(&r, 200);
    assert_string_equal(mc_header(&r, "Content-Type"), "text/event-stream; charset=utf-8");
    mc_resp_free(&r);
    free(id);
    free(foreign);
}

/* ---------- the stream ---------- */

/* The default stream with thinking on, checked byte for byte where the captures fix it. */
static void
stream_with_thinking(void **state)
{
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    struct mc_resp r;
    complete(PORT, tok, id, v2_body(body, sizeof body, "What is 2+2?", FC_THINK, NULL), &r);
    assert_status(&r, 200);
    assert_string_equal(mc_header(&r, "Content-Type"), "text/event-stream; charset=utf-8");
    assert_null(memchr(r.body, '\r', r.body_len)); /* LF only */
    assert_null(strstr(r.body, "[DONE]"));

    struct frames s;
    frames_parse(&r, &s);
    assert_true(s.n > 6);
    /* Frame 1: response.created, no choices, the capture's mixed spacing. */
    char want[256];
    const cJSON *created = item(s.f[0], "response.created");
    assert_non_null(created);
    assert_null(item(s.f[0], "choices"));
    const char *rid = str(created, "response_id");
    assert_true(is_uuid(rid));
    assert_true(is_uuid(str(created, "parent_id")));
    snprintf(want, sizeof want,
             "data: {\"response.created\":{\"chat_id\": \"%s\", \"parent_id\": \"%s\", "
             "\"response_id\":\"%s\", \"response_index\": \"0\"}}\n\n",
             id, str(created, "parent_id"), rid);
    assert_memory_equal(r.body, want, strlen(want));

    /* Thinking: cumulative arrays, each frame the previous one plus an element. */
    size_t i = 1, prev = 0;
    const cJSON *before = NULL; /* the previous frame's summary_thought */
    for (; i < s.n; i++) {
        const cJSON *d = delta_of(s.f[i]);
        if (strcmp(str(d, "phase"), "thinking_summary") != 0 ||
            strcmp(str(d, "status"), "typing") != 0)
            break;
        assert_string_equal(str(d, "content"), "");
        assert_string_equal(str(s.f[i], "response_id"), rid);
        const cJSON *th = item(item(item(d, "extra"), "summary_thought"), "content");
        const cJSON *ti = item(item(item(d, "extra"), "summary_title"), "content");
        assert_true(cJSON_IsArray(ti) && cJSON_GetArraySize(ti) >= 1);
        assert_int_equal((size_t)cJSON_GetArraySize(th), prev + 1);
        for (size_t k = 0; k < prev; k++)
            assert_string_equal(cJSON_GetArrayItem(th, (int)k)->valuestring,
                                cJSON_GetArrayItem(before, (int)k)->valuestring);
        before = th;
        prev++;
        const cJSON *u = item(s.f[i], "usage");
        assert_non_null(item(item(u, "output_tokens_details"), "reasoning_tokens"));
    }
    assert_true(prev >= 2 && prev <= 4);
    /* The thinking phase's finished frame: no extra, no usage. */
    snprintf(want, sizeof want,
             "{\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"\", \"phase\": "
             "\"thinking_summary\", \"status\": \"finished\"}}], \"response_id\": \"%s\", "
             "\"timestamp\": ",
             rid);
    assert_memory_equal(s.ev.data[i], want, strlen(want));
    i++;

    /* Answer frames: incremental, cumulative usage with every detail key. */
    char text[2048] = "";
    double last_out = 0;
    size_t answer_frames = 0;
    for (; i + 1 < s.n; i++) {
        const cJSON *d = delta_of(s.f[i]);
        assert_string_equal(str(d, "phase"), "answer");
        assert_string_equal(str(d, "status"), "typing");
        assert_string_equal(str(d, "role"), "assistant");
        strncat(text, str(d, "content"), sizeof text - strlen(text) - 1);
        const cJSON *u = item(s.f[i], "usage");
        double in = cJSON_GetNumberValue(item(u, "input_tokens"));
        double out = cJSON_GetNumberValue(item(u, "output_tokens"));
        assert_true(in > 1000);
        assert_true(out >= last_out);
        assert_true(cJSON_GetNumberValue(item(u, "total_tokens")) == in + out);
        assert_true(cJSON_GetNumberValue(item(u, "characters")) == 0);
        assert_true(cJSON_GetNumberValue(item(item(u, "input_tokens_details"), "text_tokens")) ==
                    in);
        assert_non_null(item(item(u, "output_tokens_details"), "text_tokens"));
        assert_non_null(item(item(u, "prompt_tokens_details"), "cached_tokens"));
        assert_non_null(item(s.f[i], "timestamp"));
        last_out = out;
        answer_frames++;
    }
    /* The empty typing frame, then the finished frame, byte for byte, last. */
    assert_string_equal(str(delta_of(s.f[s.n - 2]), "content"), "");
    assert_string_equal(str(delta_of(s.f[s.n - 2]), "status"), "typing");
    snprintf(want, sizeof want,
             "data: {\"choices\": [{\"delta\": {\"content\": \"\", \"role\": \"assistant\", "
             "\"status\": \"finished\", \"phase\": \"answer\"}}], \"response_id\": \"%s\"}\n\n",
             rid);
    assert_true(r.body_len > strlen(want));
    assert_string_equal(r.body + r.body_len - strlen(want), want);
    assert_true(answer_frames > 2);
    /* The text is v1's for the same model and message. */
    char *ref = v1_text(PORT, "What is 2+2?");
    assert_string_equal(text, ref);
    free(ref);
    frames_free(&s);
    mc_resp_free(&r);
    free(id);
}

/* thinking_enabled false: no thinking frames; the stream key `thinking` forces either way. */
static void
stream_thinking_switches(void **state)
{
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    struct mc_resp r;
    complete(PORT, tok, id, v2_body(body, sizeof body, "fast", FC_FAST, NULL), &r);
    assert_status(&r, 200);
    assert_null(strstr(r.body, "thinking_summary"));
    assert_non_null(strstr(r.body, "\"phase\": \"answer\""));
    assert_null(strstr(r.body, "reasoning_tokens"));
    mc_resp_free(&r);

    queue(PORT, tok, "chat",
          "[{\"stream\":{\"thinking\":true}},{\"stream\":{\"thinking\":false}}]");
    complete(PORT, tok, id, body, &r);
    assert_non_null(strstr(r.body, "\"phase\": \"thinking_summary\""));
    mc_resp_free(&r);
    complete(PORT, tok, id, v2_body(body, sizeof body, "fast", FC_THINK, NULL), &r);
    assert_null(strstr(r.body, "thinking_summary"));
    mc_resp_free(&r);
    free(id);
}

/* Without output_schema "phase" no frame has a phase key. */
static void
stream_without_phase_schema(void **state)
{
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    struct mc_resp r;
    complete(PORT, tok, id, v2_body(body, sizeof body, "x", "{\"thinking_enabled\":true}", NULL),
             &r);
    assert_status(&r, 200);
    assert_null(strstr(r.body, "\"phase\""));
    assert_non_null(strstr(r.body, "summary_thought"));
    assert_non_null(strstr(r.body, "\"status\": \"finished\""));
    mc_resp_free(&r);
    free(id);
}

/* think_phase "think": incremental reasoning in content, its own finished frame; the
 * journal's reasoning is those pieces. */
static void
stream_think_phase(void **state)
{
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    queue(PORT, tok, "chat", "[{\"stream\":{\"think_phase\":\"think\"}}]");
    struct mc_resp r;
    complete(PORT, tok, id, v2_body(body, sizeof body, "think", FC_THINK, NULL), &r);
    assert_status(&r, 200);
    assert_null(strstr(r.body, "thinking_summary"));
    struct frames s;
    frames_parse(&r, &s);
    char reasoning[1024] = "";
    size_t i = 1;
    for (; i < s.n && strcmp(str(delta_of(s.f[i]), "status"), "typing") == 0; i++) {
        assert_string_equal(str(delta_of(s.f[i]), "phase"), "think");
        assert_null(item(delta_of(s.f[i]), "extra"));
        strncat(reasoning, str(delta_of(s.f[i]), "content"),
                sizeof reasoning - strlen(reasoning) - 1);
    }
    assert_true(i >= 3);
    assert_string_equal(str(delta_of(s.f[i]), "phase"), "think");
    assert_string_equal(str(delta_of(s.f[i]), "status"), "finished");
    assert_string_equal(str(delta_of(s.f[i + 1]), "phase"), "answer");
    assert_non_null(strchr(reasoning, '\n')); /* elements on lines of their own */
    frames_free(&s);
    mc_resp_free(&r);

    cJSON *j = journal(PORT, tok, 2);
    const cJSON *ans = item(cJSON_GetArrayItem(item(j, "entries"), 1), "answer");
    /* The journal holds the raw elements; the pieces put "\n" before each but the first. */
    char joined[1024] = "";
    const cJSON *el;
    cJSON_ArrayForEach(el, item(ans, "reasoning"))
    {
        assert_int_not_equal(el->valuestring[0], '\n');
        if (joined[0])
            strncat(joined, "\n", sizeof joined - strlen(joined) - 1);
        strncat(joined, el->valuestring, sizeof joined - strlen(joined) - 1);
    }
    assert_string_equal(joined, reasoning);
    cJSON_Delete(j);
    free(id);
}

/* summary_grow: an element is first sent cut, then whole in the next frame. */
static void
stream_summary_grow(void **state)
{
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    queue(PORT, tok, "chat", "[{\"stream\":{\"summary_grow\":true}}]");
    struct mc_resp r;
    complete(PORT, tok, id, v2_body(body, sizeof body, "grow", FC_THINK, NULL), &r);
    struct frames s;
    frames_parse(&r, &s);
    const cJSON *a = item(item(item(delta_of(s.f[1]), "extra"), "summary_thought"), "content");
    const cJSON *b = item(item(item(delta_of(s.f[2]), "extra"), "summary_thought"), "content");
    assert_int_equal(cJSON_GetArraySize(a), 1);
    assert_int_equal(cJSON_GetArraySize(b), 1);
    const char *part = cJSON_GetArrayItem(a, 0)->valuestring;
    const char *whole = cJSON_GetArrayItem(b, 0)->valuestring;
    assert_true(strlen(part) < strlen(whole));
    assert_memory_equal(part, whole, strlen(part));
    assert_true(part[strlen(part) - 1] != ' ');
    frames_free(&s);
    mc_resp_free(&r);
    free(id);
}

/* done: true ends the stream with [DONE]. */
static void
stream_done_knob(void **state)
{
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    queue(PORT, tok, "chat", "[{\"stream\":{\"done\":true}}]");
    struct mc_resp r;
    complete(PORT, tok, id, v2_body(body, sizeof body, "d", FC_FAST, NULL), &r);
    const char *tail = "\"status\": \"finished\", \"phase\": \"answer\"}}], \"response_id\": ";
    assert_non_null(strstr(r.body, tail));
    assert_string_equal(r.body + r.body_len - strlen("data: [DONE]\n\n"), "data: [DONE]\n\n");
    mc_resp_free(&r);
    free(id);
}

/* dual: two created frames, then both responses' frames in turn, different texts. */
static void
stream_dual(void **state)
{
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    queue(PORT, tok, "chat", "[{\"stream\":{\"dual\":true}}]");
    struct mc_resp r;
    complete(PORT, tok, id, v2_body(body, sizeof body, "Paris?", FC_FAST, NULL), &r);
    assert_status(&r, 200);
    struct frames s;
    frames_parse(&r, &s);
    const cJSON *c0 = item(s.f[0], "response.created"), *c1 = item(s.f[1], "response.created");
    assert_string_equal(str(c0, "response_index"), "0");
    assert_string_equal(str(c1, "response_index"), "1");
    assert_string_equal(str(c0, "chat_id"), str(c1, "chat_id"));
    assert_string_equal(str(c0, "parent_id"), str(c1, "parent_id"));
    char r0[64], r1[64];
    snprintf(r0, sizeof r0, "%s", str(c0, "response_id"));
    snprintf(r1, sizeof r1, "%s", str(c1, "response_id"));
    assert_string_not_equal(r0, r1);
    assert_string_equal(str(s.f[2], "response_id"), r0);
    assert_string_equal(str(s.f[3], "response_id"), r1);
    char text[2][2048] = {"", ""};
    int finished[2] = {0, 0};
    for (size_t i = 2; i < s.n; i++) {
        int k = strcmp(str(s.f[i], "response_id"), r0) == 0 ? 0 : 1;
        assert_string_equal(str(s.f[i], "response_id"), k ? r1 : r0);
        const cJSON *d = delta_of(s.f[i]);
        if (strcmp(str(d, "status"), "finished") == 0)
            finished[k]++;
        else
            strncat(text[k], str(d, "content"), sizeof text[k] - strlen(text[k]) - 1);
    }
    assert_int_equal(finished[0], 1);
    assert_int_equal(finished[1], 1);
    assert_string_not_equal(text[0], text[1]);
    char *ref = v1_text(PORT, "Paris?");
    assert_string_equal(text[0], ref);
    free(ref);
    frames_free(&s);
    mc_resp_free(&r);
    cJSON *j = journal(PORT, tok, 2);
    assert_string_equal(
        str(item(cJSON_GetArrayItem(item(j, "entries"), 1), "answer"), "response_id"), r0);
    cJSON_Delete(j);
    free(id);
}

/* error_after: K frames after created, then the error object, then the end. */
static void
stream_error_after(void **state)
{
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    queue(PORT, tok, "chat", "[{\"stream\":{\"error_after\":2}},{\"stream\":{\"error_after\":0}}]");
    for (int k = 2; k >= 0; k -= 2) {
        struct mc_resp r;
        complete(PORT, tok, id, v2_body(body, sizeof body, "err", FC_THINK, NULL), &r);
        assert_int_equal(r.rc, CURLE_OK);
        assert_status(&r, 200);
        struct frames s;
        frames_parse(&r, &s);
        assert_int_equal(s.n, (size_t)k + 2);
        assert_non_null(item(s.f[0], "response.created"));
        const cJSON *err = item(s.f[s.n - 1], "error");
        assert_string_equal(str(err, "code"), "internal_error");
        assert_non_null(strstr(str(err, "details"), "Allocated quota exceeded"));
        assert_null(strstr(r.body, "\"status\": \"finished\", \"phase\": \"answer\""));
        frames_free(&s);
        mc_resp_free(&r);
    }
    free(id);
}

/* empty_answer: created, thinking, the answer's finished frame; no answer text. */
static void
stream_empty_answer(void **state)
{
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    queue(PORT, tok, "chat", "[{\"stream\":{\"empty_answer\":true}}]");
    struct mc_resp r;
    complete(PORT, tok, id, v2_body(body, sizeof body, "e", FC_THINK, NULL), &r);
    struct frames s;
    frames_parse(&r, &s);
    size_t answer_typing = 0, thinking = 0;
    for (size_t i = 1; i < s.n; i++) {
        const cJSON *d = delta_of(s.f[i]);
        if (strcmp(str(d, "phase"), "answer") == 0 && strcmp(str(d, "status"), "typing") == 0)
            answer_typing++;
        if (strcmp(str(d, "phase"), "thinking_summary") == 0)
            thinking++;
    }
    assert_int_equal(answer_typing, 0);
    assert_true(thinking >= 3);
    assert_string_equal(str(delta_of(s.f[s.n - 1]), "status"), "finished");
    assert_string_equal(str(delta_of(s.f[s.n - 1]), "phase"), "answer");
    frames_free(&s);
    mc_resp_free(&r);
    cJSON *j = journal(PORT, tok, 2);
    assert_string_equal(str(item(cJSON_GetArrayItem(item(j, "entries"), 1), "answer"), "text"), "");
    cJSON_Delete(j);
    free(id);
}

/* The v1 stream knobs that make sense keep their meaning on the v2 route. */
static void
stream_shared_knobs(void **state)
{
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    queue(PORT, tok, "chat",
          "[{\"stream\":{\"crlf\":true}},{\"stream\":{\"chunks\":2,\"comments\":true}},"
          "{\"stream\":{\"truncate_after\":3}},{\"stream\":{\"usage\":false}},"
          "{\"stream\":{\"cumulative\":true}}]");
    v2_body(body, sizeof body, "knobs", FC_FAST, NULL);
    struct mc_resp r;
    complete(PORT, tok, id, body, &r);
    assert_non_null(strstr(r.body, "}\r\n\r\ndata: "));
    mc_resp_free(&r);

    complete(PORT, tok, id, body, &r);
    struct frames s;
    frames_parse(&r, &s);
    assert_int_equal(s.n, 1 + 2 + 1 + 1); /* created, 2 pieces, empty typing, finished */
    assert_int_equal(s.ev.comments, s.n);
    frames_free(&s);
    mc_resp_free(&r);

    complete(PORT, tok, id, body, &r);
    assert_int_not_equal(r.rc, CURLE_OK); /* closed without ending the body */
    frames_parse(&r, &s);
    assert_int_equal(s.n, 3);
    frames_free(&s);
    mc_resp_free(&r);

    complete(PORT, tok, id, body, &r);
    assert_null(strstr(r.body, "usage"));
    mc_resp_free(&r);

    complete(PORT, tok, id, body, &r);
    frames_parse(&r, &s);
    char *ref = v1_text(PORT, "knobs");
    assert_string_equal(str(delta_of(s.f[s.n - 3]), "content"), ref); /* the text so far */
    free(ref);
    frames_free(&s);
    mc_resp_free(&r);
    free(id);
}

/* v1 chunk shapes asked for on the v2 route, and v2 shapes on v1's, are refused (400). */
static void
stream_knobs_of_the_other_dialect_refused(void **state)
{
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    const char *keys[] = {"final_repeat",     "final_empty_delta", "empty_choices",
                          "no_content_delta", "finish_reason",     "envelope"};
    v2_body(body, sizeof body, "v1", FC_FAST, NULL);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char steps[96], want[64];
        snprintf(steps, sizeof steps, "[{\"stream\":{\"%s\":true}},{\"stream\":{\"%s\":false}}]",
                 keys[i], keys[i]);
        queue(PORT, tok, "chat", steps);
        struct mc_resp r;
        complete(PORT, tok, id, body, &r);
        assert_status(&r, 400);
        snprintf(want, sizeof want, "stream.%s", keys[i]);
        assert_non_null(strstr(r.body, want));
        mc_resp_free(&r);
        complete(PORT, tok, id, body, &r); /* false: what v2 does anyway */
        assert_status(&r, 200);
        assert_string_equal(mc_header(&r, "Content-Type"), "text/event-stream; charset=utf-8");
        mc_resp_free(&r);
    }
    queue(PORT, tok, "chat", "[{\"stream\":{\"dual\":true}},{\"stream\":{\"error_after\":1}}]");
    const char *v1 = "{\"model\":\"" MODEL "\",\"stream\":true,\"messages\":[{\"role\":\"user\","
                     "\"content\":\"x\"}]}";
    const char *names[] = {"stream.dual", "stream.error_after"};
    for (size_t i = 0; i < 2; i++) {
        struct mc_resp r;
        assert_int_equal(mc_post(PORT, "/api/chat/completions", tok, v1, &r), 0);
        assert_status(&r, 400);
        assert_non_null(strstr(r.body, names[i]));
        mc_resp_free(&r);
    }
    free(id);
}

/* ---------- the chat in progress ---------- */

struct slow {
    uint16_t port;
    const char *token, *chat_id, *body;
    struct mc_resp r;
};

static void *
slow_run(void *arg)
{
    struct slow *s = arg;
    char path[160];
    snprintf(path, sizeof path, COMPLETIONS "?chat_id=%s", s->chat_id);
    struct mc_req q = {.port = s->port, .path = path, .token = s->token, .body = s->body};
    (void)mc_request(&q, &s->r);
    return NULL;
}

/* A chat takes its next completion as soon as the previous answer's last byte is out: a
 * client that goes on in the same chat the moment it reads the end is never told the chat
 * is still in progress (the mock's own bookkeeping may lag the end it sent). */
static void
chat_free_once_its_answer_ended(void **state)
{
    (void)state;
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    v2_body(body, sizeof body, "again", FC_FAST, NULL);
    for (int i = 0; i < 30; i++) {
        struct mc_resp r;
        complete(PORT, tok, id, body, &r);
        assert_status(&r, 200);
        if (!strstr(r.body, "\"status\": \"finished\", \"phase\": \"answer\""))
            fail_msg("completion %d in one chat: %s", i, r.body);
        mc_resp_free(&r);
    }
    free(id);
}

/* A second completion while the first still streams gets "The chat is in progress!";
 * another chat is not affected, and once the first ends the chat answers again. */
static void
chat_in_progress(void **state)
{
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    char *other = new_chat(PORT, tok);
    queue(PORT, tok, "chat", "[{\"stream\":{\"chunks\":4,\"chunk_delay_ms\":150}}]");
    v2_body(body, sizeof body, "slow", FC_FAST, NULL);
    struct slow s = {.port = PORT, .token = tok, .chat_id = id, .body = body};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slow_run, &s), 0);
    /* Wait until the slow stream has started (its first event is out). */
    cJSON *h = NULL;
    for (int i = 0; i < 200; i++) {
        struct mc_resp hr;
        assert_int_equal(mc_get(PORT, "/__mock/health", NULL, &hr), 0);
        h = mc_json(&hr);
        mc_resp_free(&hr);
        bool streaming = cJSON_GetNumberValue(item(h, "streams")) >= 1;
        cJSON_Delete(h);
        if (streaming)
            break;
        mc_sleep_ms(5);
    }
    struct mc_resp r;
    complete(PORT, tok, id, body, &r);
    assert_business_error(&r, "Bad_Request", "The chat is in progress!");
    mc_resp_free(&r);
    complete(PORT, tok, other, body, &r);
    assert_status(&r, 200);
    assert_string_equal(mc_header(&r, "Content-Type"), "text/event-stream; charset=utf-8");
    mc_resp_free(&r);
    pthread_join(t, NULL);
    assert_status(&s.r, 200);
    assert_non_null(strstr(s.r.body, "\"status\": \"finished\", \"phase\": \"answer\""));
    mc_resp_free(&s.r);
    /* The first stream is journaled once it ends, and so frees the chat (two chats/new,
     * the slow stream, the refused one, the other chat's). */
    cJSON *j = journal(PORT, tok, 5);
    cJSON_Delete(j);
    complete(PORT, tok, id, body, &r);
    assert_status(&r, 200);
    assert_string_equal(mc_header(&r, "Content-Type"), "text/event-stream; charset=utf-8");
    mc_resp_free(&r);
    free(id);
    free(other);
}

/* ---------- steps on every v2 route ---------- */

struct route_req {
    const char *route, *method, *path;
    bool completion;
};

/* Sends one request of route @p rr for @p tok (a completion into @p chat). */
static void
route_request(uint16_t port, const struct route_req *rr, const char *tok, const char *chat,
              struct mc_resp *r)
{
    char body[2048], path[160];
    snprintf(path, sizeof path, "%s%s%s", rr->path, rr->completion ? "?chat_id=" : "",
             rr->completion ? chat : "");
    struct mc_req q = {.port = port, .path = path, .token = tok, .method = rr->method};
    if (rr->completion)
        q.body = v2_body(body, sizeof body, "steps", FC_FAST, NULL);
    else if (strcmp(rr->method, "POST") == 0)
        q.body = CHATS_NEW_BODY;
    assert_int_equal(mc_request(&q, r), 0);
}

static void
every_v2_route_takes_steps(void **state)
{
    static const struct route_req routes[] = {
        {"models", "GET", "/api/v2/models/", false},
        {"chats_new", "POST", "/api/v2/chats/new", false},
        {"chat", "POST", COMPLETIONS, true},
    };
    for (size_t k = 0; k < 3; k++) {
        char tok[TOKLEN];
        mc_new_token(tok, sizeof tok);
        char *chat = new_chat(PORT, tok);
        queue(PORT, tok, routes[k].route,
              "[{\"status\":503,\"retry_after\":7,\"headers\":{\"X-Mock\":\"1\"}},"
              "{\"status\":429,\"body\":\"slow down\",\"content_type\":\"text/plain\"},"
              "{\"html\":\"waf200\"},{\"inband_error\":\"quota\"},"
              "{\"inband_error\":\"waf\",\"inband_sse\":true},{\"drop\":true},"
              "{\"delay_ms\":150,\"ok\":true}]");
        const struct route_req *rr = &routes[k];
        struct mc_resp r;

        route_request(PORT, rr, tok, chat, &r);
        assert_status(&r, 503);
        assert_string_equal(mc_header(&r, "Retry-After"), "7");
        assert_string_equal(mc_header(&r, "X-Mock"), "1");
        mc_resp_free(&r);

        route_request(PORT, rr, tok, chat, &r);
        assert_status(&r, 429);
        assert_string_equal(r.body, "slow down");
        assert_string_equal(mc_header(&r, "Content-Type"), "text/plain");
        mc_resp_free(&r);

        route_request(PORT, rr, tok, chat, &r);
        assert_status(&r, 200);
        assert_non_null(strstr(mc_header(&r, "Content-Type"), "text/html"));
        assert_memory_equal(
            r.body, "<!doctypehtml><meta charset=\"UTF-8\"><meta name=\"aliyun_waf_aa\"",
            strlen("<!doctypehtml><meta charset=\"UTF-8\"><meta name=\"aliyun_waf_aa\""));
        assert_non_null(strstr(r.body, "aliyun_waf_bb"));
        mc_resp_free(&r);

        route_request(PORT, rr, tok, chat, &r);
        assert_status(&r, 200);
        assert_string_equal(mc_header(&r, "Content-Type"), "application/json;charset=utf-8");
        cJSON *j = mc_json(&r);
        assert_true(cJSON_IsFalse(item(j, "success")));
        assert_string_equal(str(item(j, "data"), "code"), "RateLimited");
        assert_string_equal(str(item(j, "data"), "details"),
                            "You've reached the upper limit for today's usage.");
        assert_true(cJSON_GetNumberValue(item(item(j, "data"), "num")) == 1);
        cJSON_Delete(j);
        mc_resp_free(&r);

        route_request(PORT, rr, tok, chat, &r);
        assert_status(&r, 200);
        assert_string_equal(mc_header(&r, "Content-Type"), "text/event-stream; charset=utf-8");
        assert_memory_equal(r.body, "data: {\"ret\":[\"FAIL_SYS_USER_VALIDATE\"", 37);
        assert_string_equal(r.body + r.body_len - 4, "}}\n\n");
        assert_non_null(strstr(r.body, "chat.qwen.ai:443//api/v2/chat/completions"));
        mc_resp_free(&r);

        route_request(PORT, rr, tok, chat, &r);
        assert_int_not_equal(r.rc, CURLE_OK);
        assert_int_equal(r.status, 0);
        mc_resp_free(&r);

        route_request(PORT, rr, tok, chat, &r);
        assert_status(&r, 200);
        assert_true(r.end_ms - r.start_ms >= 140);
        mc_resp_free(&r);

        /* Each step went to this route only: chats/new (the first) took none. */
        cJSON *jn = journal(PORT, tok, 8);
        assert_true(cJSON_IsNull(item(cJSON_GetArrayItem(item(jn, "entries"), 0), "step")));
        cJSON_Delete(jn);
        free(chat);
    }
}

/* Every in-band name, on a v2 path (the bare body) and on v1's (one event). */
static void
inband_names(void **state)
{
    struct {
        const char *name, *marker;
    } cases[] = {
        {"waf", "RGV587_ERROR::SM::"},
        {"captcha", "action=captchaconnect"},
        {"quota", "\"RateLimited\""},
        {"in_progress", "The chat is in progress!"},
        {"expired", "\"code\":\"unauthorized\",\"details\":\"Token has expired, please log in "
                    "again.\""},
        {"error", "{\"error\":{\"code\":\"internal_error\",\"details\":\"Allocated quota"},
    };
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char steps[96];
        snprintf(steps, sizeof steps, "[{\"inband_error\":\"%s\"},{\"inband_error\":\"%s\"}]",
                 cases[i].name, cases[i].name);
        queue(PORT, tok, "chat", steps);
        struct mc_resp r;
        complete(PORT, tok, id, v2_body(body, sizeof body, "x", FC_FAST, NULL), &r);
        assert_status(&r, 200);
        assert_string_equal(mc_header(&r, "Content-Type"), "application/json;charset=utf-8");
        assert_non_null(strstr(r.body, cases[i].marker));
        cJSON *j = mc_json(&r); /* the whole body is the JSON */
        assert_non_null(j);
        cJSON_Delete(j);
        mc_resp_free(&r);
        assert_int_equal(mc_post(PORT, "/api/chat/completions", tok,
                                 "{\"model\":\"" MODEL "\",\"stream\":true,\"messages\":[{"
                                 "\"role\":\"user\",\"content\":\"x\"}]}",
                                 &r),
                         0);
        assert_status(&r, 200);
        assert_string_equal(mc_header(&r, "Content-Type"), "text/event-stream");
        assert_memory_equal(r.body, "data: {", 7);
        assert_non_null(strstr(r.body, cases[i].marker));
        mc_resp_free(&r);
    }
    free(id);
}

/* ---------- credentials ---------- */

static void
cookie_credential(void **state)
{
    char tok[TOKLEN], cookie[TOKLEN + 64], body[2048];
    mc_new_token(tok, sizeof tok);
    snprintf(cookie, sizeof cookie, "Cookie: ssxmod_itna=abc; token=%s", tok);
    struct mc_resp r;
    struct mc_req q = {
        .port = PORT, .path = "/api/v2/chats/new", .body = CHATS_NEW_BODY, .headers = {cookie}};
    assert_int_equal(mc_request(&q, &r), 0);
    assert_status(&r, 200);
    cJSON *j = mc_json(&r);
    char *id = strdup(str(item(j, "data"), "id"));
    cJSON_Delete(j);
    mc_resp_free(&r);
    /* The chat is the cookie token's: the same token as Bearer reaches it. */
    complete(PORT, tok, id, v2_body(body, sizeof body, "c", FC_FAST, NULL), &r);
    assert_status(&r, 200);
    assert_string_equal(mc_header(&r, "Content-Type"), "text/event-stream; charset=utf-8");
    mc_resp_free(&r);
    /* The v1 path reads the cookie too. */
    q.path = "/api/models";
    q.body = NULL;
    assert_int_equal(mc_request(&q, &r), 0);
    assert_status(&r, 200);
    mc_resp_free(&r);
    cJSON *jn = journal(PORT, tok, 3); /* all filed under the token */
    cJSON_Delete(jn);

    /* No credential; an Authorization that is not Bearer, a cookie beside it or not. */
    const char *bad[][2] = {{NULL, "Not authenticated"},
                            {"Authorization: Basic abc", "401 Unauthorized"},
                            {"Cookie: token=", "Not authenticated"}};
    for (size_t i = 0; i < 3; i++) {
        struct mc_req b = {.port = PORT, .path = "/api/v2/models/", .headers = {bad[i][0], cookie}};
        if (!bad[i][0])
            b.headers[1] = NULL;
        assert_int_equal(mc_request(&b, &r), 0);
        assert_status(&r, 401);
        j = mc_json(&r);
        assert_true(cJSON_IsFalse(item(j, "success")));
        assert_true(is_uuid(str(j, "request_id")));
        assert_string_equal(str(item(j, "data"), "code"), "Unauthorized");
        assert_string_equal(str(item(j, "data"), "details"), bad[i][1]);
        cJSON_Delete(j);
        mc_resp_free(&r);
    }
    /* A revoked cookie token: v2's shape on v2 paths, v1's on v1's. */
    assert_int_equal(mc_revoke(PORT, tok), 200);
    q.path = "/api/v2/models/";
    assert_int_equal(mc_request(&q, &r), 0);
    assert_status(&r, 401);
    assert_non_null(strstr(r.body, "\"code\":\"Unauthorized\""));
    mc_resp_free(&r);
    q.path = "/api/models";
    assert_int_equal(mc_request(&q, &r), 0);
    assert_status(&r, 401);
    assert_non_null(strstr(r.body, "{\"detail\":\"Your session has expired"));
    mc_resp_free(&r);
    free(id);
}

/* ---------- the journal ---------- */

static void
journal_records_both_requests_and_the_answer(void **state)
{
    char tok[TOKLEN], body[2048];
    mc_new_token(tok, sizeof tok);
    char *id = new_chat(PORT, tok);
    struct mc_resp r;
    complete(PORT, tok, id, v2_body(body, sizeof body, "journal me", FC_THINK, NULL), &r);
    assert_status(&r, 200);
    struct frames s;
    frames_parse(&r, &s);
    const char *rid = str(item(s.f[0], "response.created"), "response_id");
    char text[2048] = "";
    const cJSON *thought = NULL;
    for (size_t i = 1; i < s.n; i++) {
        const cJSON *d = delta_of(s.f[i]);
        if (strcmp(str(d, "phase"), "answer") == 0)
            strncat(text, str(d, "content"), sizeof text - strlen(text) - 1);
        else if (item(d, "extra"))
            thought = item(item(item(d, "extra"), "summary_thought"), "content");
    }
    cJSON *j = journal(PORT, tok, 2);
    const cJSON *e0 = cJSON_GetArrayItem(item(j, "entries"), 0);
    const cJSON *e1 = cJSON_GetArrayItem(item(j, "entries"), 1);
    assert_string_equal(str(e0, "path"), "/api/v2/chats/new");
    assert_null(item(e0, "answer"));
    assert_string_equal(str(e1, "path"), COMPLETIONS);
    char q[64];
    snprintf(q, sizeof q, "chat_id=%s", id);
    assert_string_equal(str(e1, "query"), q);
    const cJSON *ans = item(e1, "answer");
    assert_string_equal(str(ans, "text"), text);
    assert_string_equal(str(ans, "response_id"), rid);
    assert_string_equal(str(ans, "chat_id"), id);
    const cJSON *reasoning = item(ans, "reasoning");
    assert_int_equal(cJSON_GetArraySize(reasoning), cJSON_GetArraySize(thought));
    for (int i = 0; i < cJSON_GetArraySize(reasoning); i++)
        assert_string_equal(cJSON_GetArrayItem(reasoning, i)->valuestring,
                            cJSON_GetArrayItem(thought, i)->valuestring);
    cJSON_Delete(j);
    frames_free(&s);
    mc_resp_free(&r);

    /* Thinking off: reasoning []. */
    complete(PORT, tok, id, v2_body(body, sizeof body, "journal me", FC_FAST, NULL), &r);
    mc_resp_free(&r);
    j = journal(PORT, tok, 3);
    assert_int_equal(cJSON_GetArraySize(item(
                         item(cJSON_GetArrayItem(item(j, "entries"), 2), "answer"), "reasoning")),
                     0);
    cJSON_Delete(j);
    free(id);
}

/* ---------- --v2-messages ---------- */

static void
several_messages_by_option(void **state)
{
    (void)state;
    const char *body = "{\"stream\":true,\"model\":\"" MODEL "\",\"messages\":["
                       "{\"role\":\"user\",\"content\":\"one\"},"
                       "{\"role\":\"user\",\"content\":\"two\"}]}";
    enum qk_mock_v2_messages modes[] = {QK_MOCK_V2_FIRST, QK_MOCK_V2_LAST, QK_MOCK_V2_EMPTY};
    const char *want[] = {"one", "two", NULL};
    for (size_t k = 0; k < 3; k++) {
        struct qk_mock_config cfg;
        qk_mock_config_init(&cfg);
        cfg.v2_messages = modes[k];
        struct qk_mock *m = start_mock(&cfg);
        uint16_t port = qk_mock_port(m);
        char tok[TOKLEN];
        mc_new_token(tok, sizeof tok);
        char *id = new_chat(port, tok);
        struct mc_resp r;
        complete(port, tok, id, body, &r);
        assert_status(&r, 200);
        cJSON *j = journal(port, tok, 2);
        const char *text = str(item(cJSON_GetArrayItem(item(j, "entries"), 1), "answer"), "text");
        if (want[k]) {
            char *ref = v1_text(port, want[k]);
            assert_string_equal(text, ref);
            free(ref);
        } else {
            assert_string_equal(text, "");
            assert_null(strstr(r.body, "\"status\": \"typing\""));
        }
        cJSON_Delete(j);
        mc_resp_free(&r);
        free(id);
        qk_mock_stop(m);
    }
}

/* The v2 keys of a scenario are checked like the others (400 naming the field). */
static void
scenario_v2_keys_checked(void **state)
{
    char tok[TOKLEN];
    mc_new_token(tok, sizeof tok);
    struct {
        const char *steps, *field;
    } bad[] = {
        {"[{\"inband_sse\":true}]", "steps[0].inband_sse"},
        {"[{\"inband_error\":\"nope\"}]", "steps[0].inband_error"},
        {"[{\"html\":\"waf201\"}]", "steps[0].html"},
        {"[{\"stream\":{\"think_phase\":\"detail\"}}]", "steps[0].stream.think_phase"},
        {"[{\"stream\":{\"error_after\":-1}}]", "steps[0].stream.error_after"},
        {"[{\"stream\":{\"dual\":1}}]", "steps[0].stream.dual"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[256];
        snprintf(json, sizeof json, "{\"token\":\"%s\",\"route\":\"chat\",\"steps\":%s}", tok,
                 bad[i].steps);
        cJSON *reply = NULL;
        assert_int_equal(mc_scenarios(PORT, json, &reply), 400);
        assert_string_equal(str(reply, "field"), bad[i].field);
        cJSON_Delete(reply);
    }
    /* chats_new is a route of its own: its step is not the completion's. */
    queue(PORT, tok, "chats_new", "[{\"status\":502}]");
    char *id = NULL;
    struct mc_resp r;
    assert_int_equal(mc_post(PORT, "/api/v2/chats/new", tok, CHATS_NEW_BODY, &r), 0);
    assert_status(&r, 502);
    mc_resp_free(&r);
    id = new_chat(PORT, tok);
    free(id);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(models_v2_envelope_on_both_paths),
        cmocka_unit_test(chats_new_accepts_both_shapes),
        cmocka_unit_test(chats_new_failures),
        cmocka_unit_test(completion_errors),
        cmocka_unit_test(stream_with_thinking),
        cmocka_unit_test(stream_thinking_switches),
        cmocka_unit_test(stream_without_phase_schema),
        cmocka_unit_test(stream_think_phase),
        cmocka_unit_test(stream_summary_grow),
        cmocka_unit_test(stream_done_knob),
        cmocka_unit_test(stream_dual),
        cmocka_unit_test(stream_error_after),
        cmocka_unit_test(stream_empty_answer),
        cmocka_unit_test(stream_shared_knobs),
        cmocka_unit_test(stream_knobs_of_the_other_dialect_refused),
        cmocka_unit_test(chat_in_progress),
        cmocka_unit_test(chat_free_once_its_answer_ended),
        cmocka_unit_test(every_v2_route_takes_steps),
        cmocka_unit_test(inband_names),
        cmocka_unit_test(cookie_credential),
        cmocka_unit_test(journal_records_both_requests_and_the_answer),
        cmocka_unit_test(several_messages_by_option),
        cmocka_unit_test(scenario_v2_keys_checked),
    };
    return cmocka_run_group_tests_name("e2e_mock_v2", tests, group_setup, group_teardown);
}
