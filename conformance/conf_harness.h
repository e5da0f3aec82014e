/**
 * @file conf_harness.h
 * @brief What every conformance test uses: the target, per-test context, requests to the
 *        proxy, the mock's journal, and assertions that explain themselves.
 *
 * A test is `static void ID_words(struct conf_ctx *ctx)`, registered with CONF_TEST().
 * Everything a test obtains through @p ctx (responses, journals, strings) belongs to the
 * context and is freed after the test, even when an assertion fails half-way, so tests
 * never free anything themselves.
 *
 * Tests are independent and order-free: each uses fresh random tokens, and the mock keeps
 * steps and journals per token.
 */
#ifndef CONF_HARNESS_H
#define CONF_HARNESS_H

#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "conf_client.h"
#include "conf_mockctl.h"
#include "conf_profile.h"
#include "conf_requirements.h"

enum { CONF_URL_MAX = 256, CONF_REASON_MAX = 320 };

/** The system under test. Set once by main before the groups run. */
struct conf_env {
    char proxy_url[CONF_URL_MAX];       /**< "http://127.0.0.1:PORT" */
    char mock_url[CONF_URL_MAX];        /**< the proxy's upstream (the mock) */
    char unreachable_url[CONF_URL_MAX]; /**< same proxy, upstream refusing; "" if none */
    char proxy_log[512];                /**< file holding the proxy's stderr; "" if none */
    char model[128];                    /**< a model the upstream lists */
    struct conf_profile profile;
};

/** Makes @p env the target of every test (borrowed until the suite ends). */
void conf_harness_set_env(const struct conf_env *env);

enum conf_status {
    CONF_NOT_RUN = 0,
    CONF_PASS = 1,
    CONF_FAIL = 2,
    CONF_SKIP = 3,
};

struct conf_ctx;

/** One test and, after the run, its outcome. */
struct conf_case {
    const char *name;            /**< the C function name, also the cmocka test name */
    enum conf_req req;           /**< the requirement it checks */
    void (*fn)(struct conf_ctx *ctx);
    bool should_part;            /**< checks the SHOULD part of a MUST requirement */
    enum conf_status status;     /**< filled by the run */
    char reason[CONF_REASON_MAX];/**< why it failed or skipped */
    int64_t duration_ms;
};

/** cmocka fixtures behind CONF_TEST(); not called directly. */
void conf_case_run(void **state);
int conf_case_setup(void **state);
int conf_case_teardown(void **state);

/** A cmocka test entry for @p fn, which checks requirement @p req (symbol: AUTH_1). */
#define CONF_TEST(req, fn) CONF_TEST_PART(req, fn, false)

/**
 * A test of the SHOULD part of a MUST requirement (SPEC.md, "Requirements with a SHOULD
 * part"): its failure is reported as "SHOULD part not met" and does not fail the
 * requirement, whose outcome comes from its other (MUST) tests.
 */
#define CONF_TEST_SHOULD(req, fn) CONF_TEST_PART(req, fn, true)

#define CONF_TEST_PART(req_sym, fn_name, part)                                              \
    {                                                                                      \
        #fn_name, conf_case_run, conf_case_setup, conf_case_teardown,                      \
            &(struct conf_case){.name = #fn_name,                                          \
                                .req = CONF_REQ_##req_sym,                                 \
                                .fn = fn_name,                                             \
                                .should_part = (part),                                     \
                                .status = CONF_NOT_RUN},                                   \
    }

/** @return the case a cmocka entry made with CONF_TEST() carries. */
struct conf_case *conf_case_of(const struct CMUnitTest *test);

/** A group of tests (one area); see conf_groups.h. */
struct conf_group {
    const char *name;
    const struct CMUnitTest *tests;
    size_t count;
};

/* ---- Per-test helpers. Strings and objects returned belong to @p ctx. ---- */

/**
 * Hands @p ptr to the context: @p release(ptr) runs after the test, even when an
 * assertion ends it. A NULL @p ptr (out of memory) fails the test. @return @p ptr.
 */
void *conf_keep(struct conf_ctx *ctx, void *ptr, void (*release)(void *ptr));

/** @return the target. */
const struct conf_env *conf_target(const struct conf_ctx *ctx);
/** @return a fresh random token ("conf-" + 24 hex digits). */
const char *conf_token(struct conf_ctx *ctx);
/** @return a formatted string. */
const char *conf_str(struct conf_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** @return the proxy path of an API route: conf_api(ctx, "/models") is "/api/models". */
const char *conf_api(struct conf_ctx *ctx, const char *route);
/** @return "Authorization: Bearer TOKEN". */
const char *conf_bearer(struct conf_ctx *ctx, const char *token);
/** @return a valid non-stream chat body whose last message contains @p text. */
const char *conf_chat_body(struct conf_ctx *ctx, const char *text);
/** @return a JSON array of @p n copies of the step object @p step (a mock scenario). */
const char *conf_repeat_steps(struct conf_ctx *ctx, const char *step, unsigned n);
/** @return the attempts the profile allows one request: max_retries + 1. */
unsigned conf_max_attempts(struct conf_ctx *ctx);

/**
 * Sends a request to the proxy. @p path is appended to the proxy URL; @p headers is a
 * NULL-terminated list of "Name: value" (or NULL); @p body may be NULL.
 * @return the response; a transport failure shows as status 0 and curl_code.
 */
const struct conf_response *conf_send(struct conf_ctx *ctx, const char *method,
                                      const char *path, const char *const *headers,
                                      const char *body);
/** Same as conf_send() with an explicit body length and timeout. */
const struct conf_response *conf_send_ex(struct conf_ctx *ctx, const char *base_url,
                                         const char *method, const char *path,
                                         const char *const *headers, const char *body,
                                         size_t body_len, long timeout_ms);
/** Sends @p n requests at once; @return an array of n responses. */
const struct conf_response *conf_send_many(struct conf_ctx *ctx,
                                           const struct conf_request *reqs, size_t n);
/** GET PREFIX/models with a Bearer token. */
const struct conf_response *conf_get_models(struct conf_ctx *ctx, const char *token);
/** POST PREFIX/chat/completions with a Bearer token and @p body. */
const struct conf_response *conf_post_chat(struct conf_ctx *ctx, const char *token,
                                           const char *body);
/** Sends a request straight to the mock (bypassing the proxy) with a Bearer token. */
const struct conf_response *conf_mock_direct(struct conf_ctx *ctx, const char *method,
                                             const char *path, const char *token,
                                             const char *body);
/** @return the parsed body, or NULL when it is not JSON. */
const cJSON *conf_json(struct conf_ctx *ctx, const struct conf_response *resp);

/* ---- The mock. A control-API failure fails the test (it is not the proxy's fault, but
 *      nothing can be judged without it). ---- */

/** Queues @p steps_json (a JSON array) for @p token on @p route; @return steps queued. */
size_t conf_queue(struct conf_ctx *ctx, const char *token, const char *route,
                  const char *steps_json);
/** Revokes @p token at the mock. */
void conf_revoke(struct conf_ctx *ctx, const char *token);
/** @return the journal entries (a cJSON array) of @p token, oldest first, as they are now. */
const cJSON *conf_journal(struct conf_ctx *ctx, const char *token);
/** Like conf_journal(), once the mock counts none of @p token's requests as in flight
 *  (received but not yet journaled), or after a second (a stream still running). */
const cJSON *conf_journal_settled(struct conf_ctx *ctx, const char *token);
/**
 * @return the number of upstream requests made with @p token, read once the journal has
 *         settled: nothing of @p token in flight at the mock. It polls briefly for late
 *         requests, and returns as soon as the settled count is @p expect (or above it).
 */
size_t conf_attempts(struct conf_ctx *ctx, const char *token, size_t expect);
/** @return the largest journal "seq" of requests that carried no usable token (or 0). */
int64_t conf_anonymous_seq(struct conf_ctx *ctx);
/**
 * Consumes the steps of @p token on @p route that the proxy did not use (so a later
 * request of the same test meets a plain upstream again), by calling the mock directly.
 * @param queued what conf_queue() returned for this route.
 */
void conf_burn_leftovers(struct conf_ctx *ctx, const char *token, const char *route,
                         size_t queued);

/* ---- Assertions. On failure they record the reason, print the evidence (the response,
 *      the journal) and end the test through cmocka. ---- */

#define conf_check(ctx, resp, cond, ...)                                                   \
    conf_check_at((ctx), (resp), (cond), __FILE__, __LINE__, __VA_ARGS__)
#define conf_assume(ctx, cond, ...) conf_assume_at((ctx), (cond), __FILE__, __LINE__, __VA_ARGS__)
#define conf_skip(ctx, ...) conf_assume_at((ctx), false, __FILE__, __LINE__, __VA_ARGS__)
#define conf_assert_status(ctx, resp, status)                                              \
    conf_assert_status_at((ctx), (resp), (status), __FILE__, __LINE__)
#define conf_assert_attempts(ctx, token, n)                                                \
    conf_assert_attempts_at((ctx), (token), (n), __FILE__, __LINE__)
#define conf_assert_json_error(ctx, resp)                                                  \
    conf_assert_json_error_at((ctx), (resp), __FILE__, __LINE__)
#define conf_assert_openai_error(ctx, resp)                                                \
    conf_assert_openai_error_at((ctx), (resp), __FILE__, __LINE__)

/** Fails the test with a formatted reason (and the response, if any) unless @p ok. */
void conf_check_at(struct conf_ctx *ctx, const struct conf_response *resp, bool ok,
                   const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/** Skips the test with a formatted reason unless @p ok (a precondition that belongs to
 *  another requirement or a feature the profile says is absent). */
void conf_assume_at(struct conf_ctx *ctx, bool ok, const char *file, int line,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void conf_assert_status_at(struct conf_ctx *ctx, const struct conf_response *resp,
                           long status, const char *file, int line);
void conf_assert_attempts_at(struct conf_ctx *ctx, const char *token, size_t n,
                             const char *file, int line);
/** application/json and a JSON object with an "error" object holding a "message" string. */
void conf_assert_json_error_at(struct conf_ctx *ctx, const struct conf_response *resp,
                               const char *file, int line);
/** As above, and the error object has "type" (string), "param" and "code" members. */
void conf_assert_openai_error_at(struct conf_ctx *ctx, const struct conf_response *resp,
                                 const char *file, int line);

/** Sleeps @p ms milliseconds. */
void conf_sleep_ms(int64_t ms);
/** @return true when @p haystack contains @p needle, ignoring ASCII case. */
bool conf_contains_nocase(const char *haystack, const char *needle);

#endif
