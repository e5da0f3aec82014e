/*
 * The forwarder walks a dialect's plan (dialect.h): an attempt made of two upstream
 * transfers runs both, counts as one attempt, and a failure of either step is one failed
 * attempt that the retry policy repeats from the first step. Qwen v1 has one transfer per
 * attempt, so this test uses a dialect of its own against the in-process mock: the first
 * step reads the model list and keeps the first model's id, the second posts the chat body
 * with that id in its query (as a create-chat-then-complete API would). The upstream
 * timeout bounds the attempt, both steps together.
 * Streamed requests need a caller's connection (the relay suspends and resumes it), so a
 * second group runs them through a minimal front (libmicrohttpd, as server.c does) with a
 * dialect whose first step posts the chat body too: asked for a stream, the mock answers
 * that step with one, which must not reach the caller.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <microhttpd.h>

#include "decode_v1.h"
#include "dialect.h"
#include "forward.h"
#include "loop.h"
#include "qwenkit/mock.h"
#include "request.h"
#include "testkit.h"

/* The upstream timeout: it bounds an attempt, all its steps (dialect.h). */
#define ATTEMPT_LIMIT_MS 1500

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
    .models = {two_step_chat, 1},
    .chat = {two_step_chat, 2},
    .stream_decoder = &qp_decoder_v1,
};

/* A first step that posts the caller's body too, as a create-chat step may: asked for a
 * stream, the mock answers it with one. Any completion, JSON or events, gives the chat id. */
static bool
take_completion(struct qp_plan_state *plan, const char *body, size_t len)
{
    (void)len;
    bool ok = strstr(body, "chat.completion") != NULL;
    if (ok)
        snprintf(plan->chat_id, sizeof(plan->chat_id), "c1");
    return ok;
}

static const struct qp_dialect_step post_twice_chat[] = {
    {.method = "POST", .path = "/api/chat/completions", .take_answer = take_completion},
    {.method = "POST", .path = "/api/chat/completions", .add_query = add_chat_id},
};

static const struct qp_dialect post_twice = {
    .name = "post-twice (test)",
    .models = {two_step_chat, 1},
    .chat = {post_twice_chat, 2},
    .stream_decoder = &qp_decoder_v1,
};

/* ---- harness ------------------------------------------------------------------------- */

struct env {
    struct qk_mock *mock;
    struct qp_forwarder *fw;
    struct qp_loop *loop;
    struct MHD_Daemon *front; /* a caller's side for streamed requests (see front_request) */
    char mock_url[64];
    uint16_t front_port; /**< the front (a server.c-like MHD daemon) */
};

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static bool done;
static unsigned stream_started_at_step; /* plan_step when the stream was committed */

/* qp_forward_complete_fn: the exchange ended; drops the loop's reference. A request that
 * came through the front has its connection resumed, as server.c does. */
static void
on_complete(struct qp_request *req)
{
    if (req->conn) {
        req->state = QP_REQ_READY;
        MHD_resume_connection(req->conn);
        qp_request_unref(req);
        return;
    }
    pthread_mutex_lock(&done_lock);
    done = true;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
    qp_request_unref(req);
}

/* qp_forward_stream_fn: the 200 stream is committed; the loop keeps its reference. */
static void
on_stream_start(struct qp_request *req)
{
    stream_started_at_step = req->plan_step;
    MHD_resume_connection(req->conn);
}

/* ---- the front: a minimal server.c, so that a request can stream to a real caller ---- */

static ssize_t
front_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct qp_request *req = cls;
    return qp_stream_read(&req->st, buf, max);
}

static void
front_stream_free(void *cls)
{
    qp_request_unref(cls);
}

/* Queues req->resp, or the stream the loop committed. */
static enum MHD_Result
front_respond(struct MHD_Connection *conn, struct qp_request *req)
{
    struct MHD_Response *r;
    unsigned status = req->resp.status;
    if (req->streaming) {
        qp_request_ref(req); /* the response's */
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, front_stream_read, req,
                                              front_stream_free);
        status = 200;
    } else {
        r = MHD_create_response_from_buffer(req->resp.len, req->resp.body, MHD_RESPMEM_MUST_COPY);
    }
    assert_non_null(r);
    req->state = QP_REQ_SENT;
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
front_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
              const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    struct env *e = cls;
    struct qp_request *req = *con_cls;
    (void)url;
    (void)method;
    (void)version;
    if (!req) {
        req = qp_request_new();
        assert_non_null(req);
        req->conn = conn;
        req->route = QP_ROUTE_CHAT;
        snprintf(req->method, sizeof(req->method), "POST");
        snprintf(req->request_id, sizeof(req->request_id), "plan-front");
        qk_buf_init(&req->body, 1 << 16);
        *con_cls = req;
        return MHD_YES;
    }
    if (*upload_size) {
        assert_int_equal(qk_buf_append(&req->body, upload, *upload_size), QK_OK);
        *upload_size = 0;
        return MHD_YES;
    }
    if (req->state == QP_REQ_READY)
        return front_respond(conn, req);
    if (req->state != QP_REQ_READING)
        return MHD_YES;
    req->stream = strstr(qk_buf_ptr(&req->body), "\"stream\":true") != NULL;
    char auth[96];
    snprintf(auth, sizeof(auth), "Authorization: %s",
             MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"));
    req->upstream_headers = curl_slist_append(NULL, auth);
    req->upstream_headers =
        curl_slist_append(req->upstream_headers, "Content-Type: application/json");
    req->state = QP_REQ_WAITING;
    qp_request_ref(req); /* the loop's */
    MHD_suspend_connection(conn);
    assert_true(qp_loop_post(e->loop, req));
    return MHD_YES;
}

static void
front_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                enum MHD_RequestTerminationCode toe)
{
    struct qp_request *req = *con_cls;
    (void)cls;
    (void)conn;
    if (!req)
        return;
    if (req->streaming)
        qp_stream_connection_done(&req->st, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    qp_request_unref(req); /* the connection's */
}

static int
setup_with(void **state, const struct qp_dialect *dialect)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    mc_global_init();
    struct qk_mock_config mc;
    qk_mock_config_init(&mc);
    char err[160];
    assert_int_equal(qk_mock_start(&mc, &e->mock, err, sizeof(err)), QK_OK);
    snprintf(e->mock_url, sizeof(e->mock_url), "http://127.0.0.1:%u/",
             (unsigned)qk_mock_port(e->mock));
    struct qp_forward_config fc = {
        .upstream = e->mock_url,
        .dialect = dialect,
        .policy = {.max_retries = 2, .base_ms = 10, .retry_after_cap_ms = 1000},
        .cache_ttl_ms = 1000,
        .cache_max_entries = 10,
        .cache_max_bytes = 1 << 20,
        .upstream_timeout_ms = ATTEMPT_LIMIT_MS,
        .deadline_ms = 20000,
        .stream_idle_timeout_ms = 5000,
        .keepalive_interval_ms = 5000,
        .log = {.format = QK_PROXY_LOG_TEXT, .level = QK_PROXY_LOG_LEVEL_INFO},
        .complete = on_complete,
        .stream_start = on_stream_start,
    };
    assert_int_equal(qp_forwarder_new(&fc, &e->fw), QK_OK);
    assert_int_equal(
        qp_loop_start(qp_forward_on_post, qp_forward_on_stop, e->fw, 0, &e->loop, err, sizeof(err)),
        QK_OK);
    qp_forwarder_set_loop(e->fw, e->loop);
    e->front = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME, 0, NULL,
                                NULL, front_request, e, MHD_OPTION_NOTIFY_COMPLETED,
                                front_completed, e, MHD_OPTION_END);
    assert_non_null(e->front);
    e->front_port = MHD_get_daemon_info(e->front, MHD_DAEMON_INFO_BIND_PORT)->port;
    *state = e;
    return 0;
}

static int
setup(void **state)
{
    return setup_with(state, &two_step);
}

static int
setup_post_twice(void **state)
{
    return setup_with(state, &post_twice);
}

static int
teardown(void **state)
{
    struct env *e = *state;
    MHD_stop_daemon(e->front);
    qp_loop_stop(e->loop);
    qp_loop_free(e->loop);
    qp_forwarder_free(e->fw);
    qk_mock_stop(e->mock);
    mc_global_cleanup();
    free(e);
    return 0;
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

/* Posts @p body through the front as the caller of @p token; @return the status, the answer
 * in @p answer (caller mc_resp_free()s). */
static long
front_post(struct env *e, const char *token, const char *body, struct mc_resp *answer)
{
    struct mc_req req = {
        .port = e->front_port,
        .path = "/api/chat/completions",
        .token = token,
        .headers = {"Content-Type: application/json"},
        .body = body,
        .timeout_ms = 30000,
    };
    assert_int_equal(mc_request(&req, answer), 0);
    assert_int_equal(answer->rc, CURLE_OK);
    return answer->status;
}

/* The method, path and query of each journal entry of @p token, "GET /p?q" joined by ",",
 * once nothing of the token is in flight (the mock journals a request a moment after the
 * proxy saw its answer). */
static void
journal_lines(struct env *e, const char *token, char *out, size_t len)
{
    cJSON *j = mc_journal_settled(qk_mock_port(e->mock), token, 1, 5000);
    assert_non_null(j);
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
    char token[MC_TOKEN_MAX];
    mc_new_token(token, sizeof(token));
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
    char token[MC_TOKEN_MAX];
    mc_new_token(token, sizeof(token));
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
    char token[MC_TOKEN_MAX];
    mc_new_token(token, sizeof(token));
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

/* The upstream timeout bounds a whole attempt: two steps that are slow together fail the
 * attempt even though each alone is within the limit; the retry then succeeds. */
static void
slow_steps_together_exceed_the_attempt_limit(void **state)
{
    struct env *e = *state;
    char token[MC_TOKEN_MAX];
    mc_new_token(token, sizeof(token));
    char slow[64];
    snprintf(slow, sizeof(slow), "[{\"delay_ms\":%d}]", ATTEMPT_LIMIT_MS * 2 / 3);
    script(e, token, "models", slow);
    script(e, token, "chat", slow);
    struct qp_request *req = exchange(e, token);
    assert_int_equal(req->resp.status, 200);
    assert_int_equal(req->attempts, 2);
    qp_request_unref(req);
}

#define STREAM_BODY                                                                                \
    "{\"model\":\"qwen-max-latest\",\"stream\":true,"                                              \
    "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"

/* Only the plan's last step feeds the caller's stream: a first step that answers with an
 * event stream is read whole, as any step before the last. */
static void
stream_comes_from_the_last_step(void **state)
{
    struct env *e = *state;
    char token[MC_TOKEN_MAX];
    mc_new_token(token, sizeof(token));
    stream_started_at_step = 99;
    struct mc_resp answer;
    assert_int_equal(front_post(e, token, STREAM_BODY, &answer), 200);
    assert_int_equal(stream_started_at_step, 1);
    assert_non_null(strstr(answer.body, "data: [DONE]"));
    mc_resp_free(&answer);
    char lines[512];
    journal_lines(e, token, lines, sizeof(lines));
    assert_string_equal(lines, "POST /api/chat/completions,POST /api/chat/completions?chat_id=c1");
}

/* A first step whose answer is unusable fails the attempt with its own cause, naming the
 * step; the stream checks (SSE-16) judge the last step's answer only. */
static void
failed_first_step_is_named_in_the_error(void **state)
{
    struct env *e = *state;
    char token[MC_TOKEN_MAX];
    mc_new_token(token, sizeof(token));
    const char *bad = "{\"status\":200,\"body\":\"[]\"}";
    char steps[128];
    snprintf(steps, sizeof(steps), "[%s,%s,%s]", bad, bad, bad);
    script(e, token, "chat", steps);
    struct mc_resp answer;
    assert_int_equal(front_post(e, token, STREAM_BODY, &answer), 502);
    const char *text = answer.body;
    if (!strstr(
            text,
            "step 1 of 2 (POST /api/chat/completions): last upstream status 200 (unusable body)") ||
        strstr(text, "event stream"))
        fail_msg("unexpected error: %s", text);
    mc_resp_free(&answer);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_step_attempt_runs_both_transfers),
        cmocka_unit_test(second_step_failure_retries_the_whole_plan),
        cmocka_unit_test(unusable_first_answer_fails_the_attempt),
        cmocka_unit_test(slow_steps_together_exceed_the_attempt_limit),
    };
    const struct CMUnitTest stream_tests[] = {
        cmocka_unit_test(stream_comes_from_the_last_step),
        cmocka_unit_test(failed_first_step_is_named_in_the_error),
    };
    int failed = cmocka_run_group_tests_name("forward_plan", tests, setup, teardown);
    failed += cmocka_run_group_tests_name("forward_plan_stream", stream_tests, setup_post_twice,
                                          teardown);
    return failed;
}
