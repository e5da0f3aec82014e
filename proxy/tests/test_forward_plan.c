/*
 * The forwarder walks a dialect's plan (dialect.h): an attempt made of two upstream
 * transfers runs both, counts as one attempt, and a failure of either step is one failed
 * attempt that the retry policy repeats from the first step. Qwen v1 has one transfer per
 * attempt, so this test uses a dialect of its own against the in-process mock: the first
 * step reads the model list and keeps the first model's id, the second posts the chat body
 * with that id in its query (as a create-chat-then-complete API would).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "decode_v1.h"
#include "dialect.h"
#include "forward.h"
#include "loop.h"
#include "qwenkit/mock.h"
#include "request.h"

#define CHAT_BODY                                                                                  \
    "{\"model\":\"qwen-max-latest\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"

/* ---- the test dialect ---------------------------------------------------------------- */

static bool
take_first_model(struct qp_plan_state *plan, const char *body, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "data"), 0);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(first, "id");
    bool ok = cJSON_IsString(id);
    if (ok)
        snprintf(plan->chat_id, sizeof(plan->chat_id), "%s", id->valuestring);
    cJSON_Delete(root);
    return ok;
}

static enum qk_err
add_chat_id(const struct qp_plan_state *plan, struct qk_buf *url)
{
    return qk_buf_appendf(url, "?chat_id=%s", plan->chat_id);
}

static const struct qp_dialect_step two_step_chat[] = {
    {.method = "GET", .path = "/api/models", .take_answer = take_first_model},
    {.method = "POST", .path = "/api/chat/completions", .add_query = add_chat_id},
};

static const struct qp_dialect two_step = {
    .name = "two-step (test)",
    .models_path = "/api/models",
    .completion_path = "/api/chat/completions",
    .models = {two_step_chat, 1},
    .chat = {two_step_chat, 2},
    .stream_decoder = &qp_decoder_v1,
};

/* ---- harness ------------------------------------------------------------------------- */

struct env {
    struct qk_mock *mock;
    struct qp_forwarder *fw;
    struct qp_loop *loop;
    char mock_url[64];
};

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static bool done;

/* qp_forward_complete_fn: the exchange ended; drops the loop's reference. */
static void
on_complete(struct qp_request *req)
{
    pthread_mutex_lock(&done_lock);
    done = true;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
    qp_request_unref(req);
}

static void
on_stream_start(struct qp_request *req)
{
    (void)req;
    fail_msg("no request of this test streams");
}

static int
setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    assert_int_equal(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    struct qk_mock_config mc;
    qk_mock_config_init(&mc);
    char err[160];
    assert_int_equal(qk_mock_start(&mc, &e->mock, err, sizeof(err)), QK_OK);
    snprintf(e->mock_url, sizeof(e->mock_url), "http://127.0.0.1:%u/",
             (unsigned)qk_mock_port(e->mock));
    struct qp_forward_config fc = {
        .upstream = e->mock_url,
        .dialect = &two_step,
        .policy = {.max_retries = 2, .base_ms = 10, .retry_after_cap_ms = 1000},
        .cache_ttl_ms = 1000,
        .cache_max_entries = 10,
        .cache_max_bytes = 1 << 20,
        .upstream_timeout_ms = 5000,
        .deadline_ms = 20000,
        .stream_idle_timeout_ms = 5000,
        .keepalive_interval_ms = 5000,
        .complete = on_complete,
        .stream_start = on_stream_start,
    };
    assert_int_equal(qp_forwarder_new(&fc, &e->fw), QK_OK);
    assert_int_equal(
        qp_loop_start(qp_forward_on_post, qp_forward_on_stop, e->fw, &e->loop, err, sizeof(err)),
        QK_OK);
    qp_forwarder_set_loop(e->fw, e->loop);
    *state = e;
    return 0;
}

static int
teardown(void **state)
{
    struct env *e = *state;
    qp_loop_stop(e->loop);
    qp_loop_free(e->loop);
    qp_forwarder_free(e->fw);
    qk_mock_stop(e->mock);
    curl_global_cleanup();
    free(e);
    return 0;
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
script(struct env *e, const char *token, const char *route, const char *steps)
{
    char json[512];
    snprintf(json, sizeof(json), "{\"token\":\"%s\",\"route\":\"%s\",\"steps\":%s}", token, route,
             steps);
    char err[128];
    assert_int_equal(qk_mock_load_scenarios(e->mock, json, strlen(json), err, sizeof(err)), QK_OK);
}

/* Runs one non-stream chat exchange for @p token; returns the request (caller unrefs). */
static struct qp_request *
exchange(struct env *e, const char *token)
{
    struct qp_request *req = qp_request_new();
    assert_non_null(req);
    req->route = QP_ROUTE_CHAT;
    snprintf(req->method, sizeof(req->method), "POST");
    snprintf(req->request_id, sizeof(req->request_id), "plan-test");
    qk_buf_init(&req->body, 1 << 16);
    assert_int_equal(qk_buf_append_str(&req->body, CHAT_BODY), QK_OK);
    char auth[80];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    req->upstream_headers = curl_slist_append(NULL, auth);
    req->upstream_headers =
        curl_slist_append(req->upstream_headers, "Content-Type: application/json");
    req->state = QP_REQ_WAITING;
    done = false;
    qp_request_ref(req); /* the loop's */
    assert_true(qp_loop_post(e->loop, req));
    pthread_mutex_lock(&done_lock);
    while (!done)
        pthread_cond_wait(&done_cond, &done_lock);
    pthread_mutex_unlock(&done_lock);
    return req;
}

static size_t
sink(char *p, size_t size, size_t n, void *ud)
{
    return qk_buf_append(ud, p, size * n) == QK_OK ? size * n : 0;
}

/* The method, path and query of each journal entry of @p token, "GET /p?q" joined by ",". */
static void
journal_lines(struct env *e, const char *token, char *out, size_t len)
{
    char url[160];
    snprintf(url, sizeof(url), "%s__mock/journal?token=%s", e->mock_url, token);
    struct qk_buf body;
    qk_buf_init(&body, 1 << 20);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    cJSON *j = cJSON_Parse(qk_buf_ptr(&body));
    qk_buf_free(&body);
    out[0] = '\0';
    const cJSON *entry = NULL;
    cJSON_ArrayForEach(entry, cJSON_GetObjectItemCaseSensitive(j, "entries"))
    {
        const char *q = cJSON_GetObjectItemCaseSensitive(entry, "query")->valuestring;
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s %s%s%s", used ? "," : "",
                 cJSON_GetObjectItemCaseSensitive(entry, "method")->valuestring,
                 cJSON_GetObjectItemCaseSensitive(entry, "path")->valuestring, q[0] ? "?" : "", q);
    }
    cJSON_Delete(j);
}

/* ---- tests --------------------------------------------------------------------------- */

/* Both transfers run in order, the second with what the first learned; one attempt. */
static void
two_step_attempt_runs_both_transfers(void **state)
{
    struct env *e = *state;
    char token[40];
    new_token(token);
    struct qp_request *req = exchange(e, token);
    assert_int_equal(req->resp.status, 200);
    assert_int_equal(req->attempts, 1);
    char lines[512];
    journal_lines(e, token, lines, sizeof(lines));
    assert_string_equal(lines,
                        "GET /api/models,POST /api/chat/completions?chat_id=qwen-max-latest");
    qp_request_unref(req);
}

/* A failure of the second step is one failed attempt; the retry starts from the first. */
static void
second_step_failure_retries_the_whole_plan(void **state)
{
    struct env *e = *state;
    char token[40];
    new_token(token);
    script(e, token, "chat", "[{\"status\":500}]");
    struct qp_request *req = exchange(e, token);
    assert_int_equal(req->resp.status, 200);
    assert_int_equal(req->attempts, 2);
    char lines[512];
    journal_lines(e, token, lines, sizeof(lines));
    assert_string_equal(lines,
                        "GET /api/models,POST /api/chat/completions?chat_id=qwen-max-latest,"
                        "GET /api/models,POST /api/chat/completions?chat_id=qwen-max-latest");
    qp_request_unref(req);
}

/* A first step whose 2xx answer it cannot use fails the attempt; the second never runs. */
static void
unusable_first_answer_fails_the_attempt(void **state)
{
    struct env *e = *state;
    char token[40];
    new_token(token);
    script(e, token, "models", "[{\"status\":200,\"body\":\"[]\"},{\"status\":500}]");
    script(e, token, "models", "[{\"status\":500}]");
    struct qp_request *req = exchange(e, token);
    assert_int_equal(req->resp.status, 502);
    assert_int_equal(req->attempts, 3);
    char lines[512];
    journal_lines(e, token, lines, sizeof(lines));
    assert_string_equal(lines, "GET /api/models,GET /api/models,GET /api/models");
    qp_request_unref(req);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_step_attempt_runs_both_transfers),
        cmocka_unit_test(second_step_failure_retries_the_whole_plan),
        cmocka_unit_test(unusable_first_answer_fails_the_attempt),
    };
    return cmocka_run_group_tests_name("forward_plan", tests, setup, teardown);
}
