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
#include "conf_dialect.h"
#include "conf_mockctl.h"
#include "conf_profile.h"
#include "conf_requirements.h"

enum { CONF_URL_MAX = 256, CONF_REASON_MAX = 320, CONF_EVIDENCE_MAX = 8192 };

struct conf_ctx;

/** The system under test. Set once by main before the groups run. */
struct conf_env {
    char proxy_url[CONF_URL_MAX];       /**< "http://127.0.0.1:PORT" */
    char mock_url[CONF_URL_MAX];        /**< the proxy's upstream (the mock) */
    char unreachable_url[CONF_URL_MAX]; /**< same proxy, upstream refusing; "" if none */
    char proxy_log[512];                /**< file holding the proxy's stderr; "" if none */
    char model[128];                    /**< a model the upstream lists */
    const struct conf_dialect *dialect; /**< the upstream's API: which requests are attempts */
    struct conf_profile profile;
};

/** Makes @p env the target of every test (borrowed until the suite ends). */
void conf_harness_set_env(const struct conf_env *env);

/** The upstream routes, as the mock's scenarios name them. */
enum conf_route { CONF_ROUTE_MODELS = 0, CONF_ROUTE_CHAT = 1, CONF_ROUTE_COUNT };

/** @return "models" or "chat". */
const char *conf_route_name(enum conf_route route);

/**
 * What the preflight (conf_preflight.c) learnt about the target before any test ran. Tests
 * read it so that their verdicts do not depend on what ran before them.
 */
struct conf_facts {
    /** The caller's `Authorization: Bearer T` reached the upstream verbatim on the route. */
    bool token_verbatim[CONF_ROUTE_COUNT];
    /** When it did not: what the upstream received instead (evidence, for reasons). */
    char token_seen[CONF_ROUTE_COUNT][CONF_REASON_MAX];
    /** A fresh credential got a model list with no upstream request at all: the proxy
     *  serves one cache to every credential (AUTH-5). */
    bool shared_models_cache;
    /** The profile names the credential the proxy sends instead of the caller's; "verbatim"
     *  above then means that credential arrives intact. */
    bool own_credential;
};

/** Makes @p facts the preflight's findings (borrowed until the suite ends). */
void conf_harness_set_facts(const struct conf_facts *facts);

/** Probing the target around every test (SPEC.md, ROBUST-1). */
struct conf_watch {
    const char *restart_cmd;    /**< shell command that restarts a target that died, or NULL */
    bool (*restart)(void *arg); /**< or this (--spawn); @return true when it is back */
    void *restart_arg;
};

/** Makes @p watch the probing policy (borrowed until the suite ends). */
void conf_harness_set_watch(const struct conf_watch *watch);

enum { CONF_DOWN_MAX = 32 };

/** The target stopped answering during a test: a finding of ROBUST-1. */
struct conf_down_event {
    const char *test;              /**< the test during which it happened */
    const struct conf_case *kase;  /**< that test */
    char request[CONF_REASON_MAX]; /**< the last request the suite had sent it */
    bool restarted;                /**< --restart-cmd brought it back */
};

/** @return the events of the run so far (static), and their number in @p n. */
const struct conf_down_event *conf_down_events(size_t *n);

/**
 * Probes the target after a request of this test described by @p after. @return true when
 * it answers; false when it stopped, recorded as a down event (and restarted when the run
 * has a --restart-cmd).
 */
bool conf_still_serving(struct conf_ctx *ctx, const char *after);

/**
 * The outcome of a test (SPEC.md, "Verdicts"). SKIP is for a feature the profile declares
 * absent or a precondition that another requirement owns (named in the reason); UNCHECKED
 * for a test the profile keeps from running (the reason says what to change); CANNOT_JUDGE
 * for a test whose evidence the suite cannot observe (the target went down, the caller's
 * token does not reach the upstream verbatim).
 */
enum conf_status {
    CONF_NOT_RUN = 0,
    CONF_PASS = 1,
    CONF_FAIL = 2,
    CONF_SKIP = 3,
    CONF_UNCHECKED = 4,
    CONF_CANNOT_JUDGE = 5,
};

/** @return "PASS", "FAIL", "SKIP", "UNCHECKED", "CANNOT-JUDGE" or "NOT RUN". */
const char *conf_status_name(enum conf_status s);

struct conf_ctx;

/** One test and, after the run, its outcome. */
struct conf_case {
    const char *name;  /**< the C function name, also the cmocka test name */
    enum conf_req req; /**< the requirement it checks */
    void (*fn)(struct conf_ctx *ctx);
    bool should_part;   /**< checks the SHOULD part of a MUST requirement */
    bool other_dialect; /**< filled by the run: skipped as the other dialect's */
    /** Filled by the run: skipped as not applicable (the other dialect's, or declared
     *  absent), which leaves a MUST requirement open no more than an unselected test. */
    bool excused;
    enum conf_status status;      /**< filled by the run */
    char reason[CONF_REASON_MAX]; /**< why it failed or skipped */
    int64_t duration_ms;
    char *evidence; /**< what the test saw when it failed (owned, cleaned text) */
    size_t evidence_len;
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

#define CONF_TEST_PART(req_sym, fn_name, part)                                                     \
    {                                                                                              \
#fn_name, conf_case_run, conf_case_setup, conf_case_teardown,                              \
            &(struct conf_case){.name = #fn_name,                                                  \
                     .req = CONF_REQ_##req_sym,                                                    \
                     .fn = fn_name,                                                                \
                     .should_part = (part),                                                        \
                     .status = CONF_NOT_RUN },                                                     \
    }

/** @return the case a cmocka entry made with CONF_TEST() carries. */
struct conf_case *conf_case_of(const struct CMUnitTest *test);

/** A group of tests (one area); see conf_groups.h. */
struct conf_group {
    const char *name;
    const struct CMUnitTest *tests;
    size_t count;
};

/** Frees what the run left in the cases of @p groups (their evidence). */
void conf_cases_release(const struct conf_group *const *groups, size_t ngroups);

/* ---- Per-test helpers. Strings and objects returned belong to @p ctx. ---- */

/**
 * Hands @p ptr to the context: @p release(ptr) runs after the test, even when an
 * assertion ends it. A NULL @p ptr (out of memory) fails the test. @return @p ptr.
 */
void *conf_keep(struct conf_ctx *ctx, void *ptr, void (*release)(void *ptr));

/** @return the target. */
const struct conf_env *conf_target(const struct conf_ctx *ctx);
/**
 * Declares that this test judges which credential reached the upstream (AUTH-1, AUTH-2,
 * AUTH-3, AUTH-6), so an altered credential fails it instead of making it CANNOT-JUDGE.
 * Every other test that sends a request on a route where the preflight saw the caller's
 * token altered (or replaced) on its way upstream ends CANNOT-JUDGE: what the upstream
 * answers, and what the mock scripts and journals, depend on that credential.
 */
void conf_judges_credentials(struct conf_ctx *ctx);
/** Declares that this test judges only that the target keeps answering (ROBUST-1). */
void conf_judges_survival_only(struct conf_ctx *ctx);
/** Declares that this test judges whether credentials share a model list (AUTH-5). */
void conf_judges_shared_cache(struct conf_ctx *ctx);
/**
 * Remembers a request this test sends to the proxy outside conf_send() (streams), as the
 * evidence a crash report names and for the routes the test depends on.
 */
void conf_note_request(struct conf_ctx *ctx, const char *method, const char *path, const char *body,
                       size_t body_len);
/**
 * Remembers the end of a request conf_note_request() announced: @p r's done_ms, or, when
 * the test did not take the whole answer (@p whole false, or no answer), that a caller
 * left early: from then on a failed chat creation at any time may be that request's.
 * conf_send() and its kin call it; a test that sends outside them calls it once per
 * request, in any order.
 */
void conf_note_answered(struct conf_ctx *ctx, const struct conf_response *r, bool whole);
/** Records a token the preflight sent, so that tests treat it as an earlier test's. */
void conf_note_preflight_token(const char *token);
/**
 * Remembers that the test now sends requests with @p token outside conf_send() (streams).
 * With a profile's upstream_credential (a proxy that sends its own), the mock scripts and
 * journals that credential for one caller's token at a time: a new token starts from a
 * clean upstream, and going back to an earlier one makes the test CANNOT-JUDGE.
 */
void conf_note_token(struct conf_ctx *ctx, const char *token);
/** @return a fresh random token ("conf-" + 24 hex digits). */
const char *conf_token(struct conf_ctx *ctx);
/** @return a formatted string. */
const char *conf_str(struct conf_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** @return the proxy path of an API route: conf_api(ctx, "/models") is "/api/models". */
const char *conf_api(struct conf_ctx *ctx, const char *route);
/** @return "Authorization: Bearer TOKEN". */
const char *conf_bearer(struct conf_ctx *ctx, const char *token);
/** Whether a chat body has a "stream" member, and its value. */
enum conf_chat_stream {
    CONF_CHAT_STREAM_OMITTED = 0,
    CONF_CHAT_STREAM_FALSE,
    CONF_CHAT_STREAM_TRUE,
};

/**
 * What a chat request body holds: `{"model":M,"messages":[...],"stream":S,EXTRA}`, members
 * in that order. Strings are borrowed. A zero-initialised struct (with a model) is a body
 * with one empty user message and no "stream".
 */
struct conf_chat {
    const char *model;         /**< the model; NULL in conf_chat_body_of(): the target's */
    const char *messages_json; /**< the "messages" value as JSON text, sent as given; NULL:
                                    one user message holding @c text */
    const char *text;          /**< that user message's content (NULL: "") */
    enum conf_chat_stream stream;
    const char *extra_json; /**< further members as JSON text without braces
                                 (`"max_tokens":2`), sent as given; NULL: none */
};

/** @return the body @p chat describes (model required); caller frees with free().
 *  NULL when out of memory. */
char *conf_chat_json(const struct conf_chat *chat);
/** conf_chat_json() with the target's model by default; @return a string of @p ctx. */
const char *conf_chat_body_of(struct conf_ctx *ctx, const struct conf_chat *chat);
/** @return a valid non-stream chat body whose one message contains @p text. */
const char *conf_chat_body(struct conf_ctx *ctx, const char *text);
/** @return a JSON array of @p n copies of the step object @p step (a mock scenario). */
const char *conf_repeat_steps(struct conf_ctx *ctx, const char *step, unsigned n);
/** @return the attempts the profile allows one request: max_retries + 1. */
unsigned conf_max_attempts(struct conf_ctx *ctx);
/**
 * @return a JSON array of one step: the step object @p step answering every request of its
 * route a request's attempts can make, spare v2 chats included (mock key `times`), and
 * not many more: a pool that refills in the background soon stops meeting it.
 */
const char *conf_steps_always(struct conf_ctx *ctx, const char *step);
/**
 * @return the delay_ms of a failure that must be seen in flight beside the requests a
 * proxy sends with it (a v2 pool's spare creations): 50 ms, or less with a short
 * upstream_timeout_ms.
 */
int conf_slow_failure_ms(struct conf_ctx *ctx);

/**
 * Sends a request to the proxy. @p path is appended to the proxy URL; @p headers is a
 * NULL-terminated list of "Name: value" (or NULL); @p body may be NULL.
 * @return the response; a transport failure shows as status 0 and curl_code.
 */
const struct conf_response *conf_send(struct conf_ctx *ctx, const char *method, const char *path,
                                      const char *const *headers, const char *body);
/** Same as conf_send() with an explicit body length and timeout. */
const struct conf_response *conf_send_ex(struct conf_ctx *ctx, const char *base_url,
                                         const char *method, const char *path,
                                         const char *const *headers, const char *body,
                                         size_t body_len, long timeout_ms);
/**
 * Sends the bytes @p raw exactly as given to the proxy on a new connection
 * (conf_http_raw()), for requests a client library would refuse or repair. @p token is the
 * credential they carry (or NULL), @p method and @p path what the request asks for (for the
 * crash report and the routes the test depends on). @p outcome, when not NULL, gets what
 * else was seen (status lines, whether the connection was closed).
 * @return the response; no answer shows as status 0.
 */
const struct conf_response *conf_send_raw(struct conf_ctx *ctx, const char *token,
                                          const char *method, const char *path, const char *raw,
                                          size_t raw_len, struct conf_raw_outcome *outcome);
/** Sends @p n requests at once; @return an array of n responses. */
const struct conf_response *conf_send_many(struct conf_ctx *ctx, const struct conf_request *reqs,
                                           size_t n);
/** GET PREFIX/models with a Bearer token. */
const struct conf_response *conf_get_models(struct conf_ctx *ctx, const char *token);
/** POST PREFIX/chat/completions with a Bearer token and @p body. */
const struct conf_response *conf_post_chat(struct conf_ctx *ctx, const char *token,
                                           const char *body);
/** Sends a request straight to the mock (bypassing the proxy) with a Bearer token. */
const struct conf_response *conf_mock_direct(struct conf_ctx *ctx, const char *method,
                                             const char *path, const char *token, const char *body);
/**
 * Asks the mock itself for a chat completion of @p body, an OpenAI chat body (one attempt
 * of the dialect). v1: the body as it is. v2: a chat created for @p body's model, then its
 * completion (always streamed) of one message holding the text of @p body's single
 * message (several messages: each as `role: text`, a blank line between them).
 */
const struct conf_response *conf_mock_direct_chat(struct conf_ctx *ctx, const char *token,
                                                  const char *body);
/**
 * @return the answer text the upstream gives to @p body (an OpenAI chat body), asked for
 * directly with a fresh token: v1 from the mock's non-stream answer, v2 from the journal
 * entry of the completion (`answer.text`), which records what the mock produced.
 */
const char *conf_oracle_text(struct conf_ctx *ctx, const char *body);
/**
 * v2: queues @p step (one step object) on the chat route of a fresh token, asks the mock
 * directly for @p body's completion (conf_mock_direct_chat()) and returns the answer text
 * the mock journaled, read by the raw token (the oracle never retires the test's token).
 */
const char *conf_direct_stream_text(struct conf_ctx *ctx, const char *step, const char *body);
/**
 * Queues @p steps_json for @p token as the mock keys it, for the suite's own direct
 * requests (an oracle's): never the profile's upstream_credential, never a token change.
 */
void conf_queue_direct(struct conf_ctx *ctx, const char *token, const char *route,
                       const char *steps_json);
/**
 * @return the journal entry of the latest completion of @p token that the mock answered
 * with an answer of its own (v2: it carries `answer`), settled; NULL when there is none
 * (v1 journals no answers).
 */
const cJSON *conf_answered_completion(struct conf_ctx *ctx, const char *token);
/**
 * @return the text the caller of @p token should have got: under v2 the text the mock
 * journaled for the proxy's own completion (`answer.text` of conf_answered_completion()),
 * whenever there is one, since the proxy builds the upstream's prompt itself (a wrapped
 * prompt is V2-8's business, never a reason to skip another test); otherwise @p oracle,
 * the direct oracle's text (v1 always). Call it after the proxy's request.
 */
const char *conf_expected_text_of(struct conf_ctx *ctx, const char *token, const char *oracle);
/** conf_expected_text_of() for the latest caller's token sent to the proxy. */
const char *conf_expected_text(struct conf_ctx *ctx, const char *oracle);
/** @return true when the target's upstream speaks the v2 dialect (profile upstream_dialect). */
bool conf_dialect_v2(const struct conf_ctx *ctx);
/**
 * SKIPs the test under the v2 dialect: it judges something only the v1 upstream does.
 * The reason says why (SPEC.md, "Dialects"); a skip, never a silent pass.
 */
#define conf_v1_only(ctx, ...)                                                                     \
    conf_dialect_only_at((ctx), !conf_dialect_v2(ctx), __FILE__, __LINE__,                         \
                         "v1 dialect only: " __VA_ARGS__)
/** SKIPs the test under the v1 dialect (a requirement on what v2 adds). */
#define conf_v2_only(ctx)                                                                          \
    conf_dialect_only_at((ctx), conf_dialect_v2(ctx), __FILE__, __LINE__,                          \
                         "v2 dialect only: the profile's upstream_dialect is \"%s\"",              \
                         conf_target(ctx)->dialect->name)
/** conf_assume_at() for a test that does not apply to the dialect: a requirement all of
 *  whose tests are skipped so leaves the verdict alone (SPEC.md, "Dialects"). */
void conf_dialect_only_at(struct conf_ctx *ctx, bool ok, const char *file, int line,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/** Asks the mock itself for its model list (one attempt of the dialect). */
const struct conf_response *conf_mock_direct_models(struct conf_ctx *ctx, const char *token);
/**
 * @return true when @p resp is a model list by its shape, not its status alone: 200,
 * `application/json`, a JSON object with a `data` array (an HTML page served with 200 is
 * no list).
 */
bool conf_is_model_list(struct conf_ctx *ctx, const struct conf_response *resp);
/** Skips the test, naming HTTP-6, unless @p resp is a model list (a precondition). */
void conf_require_model_list(struct conf_ctx *ctx, const struct conf_response *resp);
/** @return "HTTP 200 text/html" and the like: what an answer was, for reasons. */
const char *conf_describe(struct conf_ctx *ctx, const struct conf_response *resp);
/** @return the parsed body, or NULL when it is not JSON. */
const cJSON *conf_json(struct conf_ctx *ctx, const struct conf_response *resp);

/* ---- The mock. A control-API failure fails the test (it is not the proxy's fault, but
 *      nothing can be judged without it). ---- */

/** Queues @p steps_json (a JSON array) for @p token on @p route; @return steps queued. */
size_t conf_queue(struct conf_ctx *ctx, const char *token, const char *route,
                  const char *steps_json);
/** Revokes @p token at the mock. */
void conf_revoke(struct conf_ctx *ctx, const char *token);
/** Revokes @p token at the mock; each later request waits @p delay_ms for its 401. */
void conf_revoke_slow(struct conf_ctx *ctx, const char *token, int delay_ms);
/** @return the journal entries (a cJSON array) of @p token, oldest first, as they are now. */
const cJSON *conf_journal(struct conf_ctx *ctx, const char *token);
/** Like conf_journal(), once the mock counts none of @p token's requests as in flight
 *  (received but not yet journaled), or after a second (a stream still running). */
const cJSON *conf_journal_settled(struct conf_ctx *ctx, const char *token);
/**
 * @return the entries of @p journal (a journal's entries array) that are attempts: the
 *         requests to the dialect's model-list and completion paths (conf_dialect.h), in
 *         order, and in v2 a chat creation that failed (any status but 2xx, or a scripted
 *         step other than `ok`): the attempt ended there. A chat created and used (or
 *         created ahead, pooled) is part of its completion's attempt, not one of its own. The array
 * belongs to @p ctx; its items are @p journal's.
 */
const cJSON *conf_attempt_entries(struct conf_ctx *ctx, const cJSON *journal);
/**
 * @return the number of upstream attempts (conf_attempt_entries()) made with @p token, read
 *         once the journal has settled: nothing of @p token in flight at the mock. It polls
 *         briefly for late requests, and returns as soon as the settled count is @p expect
 *         (or above it).
 */
size_t conf_attempts(struct conf_ctx *ctx, const char *token, size_t expect);
/**
 * @return the number of upstream requests of any kind made with @p token (every journal
 *         entry, whatever its path), settled as conf_attempts() is. What "no upstream
 *         request" checks count: a request forwarded to a path that is no attempt still
 *         reached the upstream.
 */
size_t conf_upstream_requests(struct conf_ctx *ctx, const char *token, size_t expect);
/** A point in the upstream's journal: requests after it arrived later (see below). */
struct conf_mark {
    int64_t ms; /**< qk_now_ms() when it was taken */
    long seq;   /**< the journal's latest sequence number then (arrival order) */
};

/**
 * @return a mark taken once nothing is in flight at the mock (up to 1 s): every request
 * that arrives later has a larger sequence number. Times alone cannot tell, as requests
 * of two tests can arrive within one millisecond.
 */
struct conf_mark conf_upstream_mark(struct conf_ctx *ctx);
/**
 * @return every upstream request that arrived after @p mark, whatever credential it carried
 * or none, once none of them is in flight (up to 1 s).
 */
const cJSON *conf_upstream_since(struct conf_ctx *ctx, struct conf_mark mark);
/**
 * @return true when @p e is a v2 chat creation that succeeded for a token an earlier test
 * issued: a pool refilled in the background, which carries nothing of this test's. Every
 * window read (conf_upstream_since()) leaves them out.
 */
bool conf_entry_is_earlier_chat_creation(const struct conf_ctx *ctx, const cJSON *e);
/**
 * @return what the upstream received after @p mark in place of `Bearer TOKEN`, as a
 * phrase for a reason ("\"Bearer Bearer <token>\"", "\"Bearer <another credential, 40
 * bytes>\"", "\"(no Authorization)\""), or NULL when every such request carried it verbatim.
 */
const char *conf_credential_seen(struct conf_ctx *ctx, const char *token, struct conf_mark mark);
/**
 * Consumes the steps of @p token on @p route that the proxy did not use (so a later
 * request of the same test meets a plain upstream again), by calling the mock directly.
 * @param queued what conf_queue() returned for this route.
 */
void conf_burn_leftovers(struct conf_ctx *ctx, const char *token, const char *route, size_t queued);

/* ---- Assertions. On failure they record the reason, print the evidence (the response,
 *      the journal) and end the test through cmocka. ---- */

#define conf_check(ctx, resp, cond, ...)                                                           \
    conf_check_at((ctx), (resp), (cond), __FILE__, __LINE__, __VA_ARGS__)
#define conf_assume(ctx, cond, ...) conf_assume_at((ctx), (cond), __FILE__, __LINE__, __VA_ARGS__)
#define conf_skip(ctx, ...) conf_assume_at((ctx), false, __FILE__, __LINE__, __VA_ARGS__)
/** The profile keeps this test from running: UNCHECKED unless @p cond (say what to change). */
#define conf_runnable(ctx, cond, ...)                                                              \
    conf_end_unless_at((ctx), (cond), CONF_UNCHECKED, __FILE__, __LINE__, __VA_ARGS__)
/** The suite cannot observe what it needs: CANNOT-JUDGE unless @p cond. */
#define conf_observable(ctx, cond, ...)                                                            \
    conf_end_unless_at((ctx), (cond), CONF_CANNOT_JUDGE, __FILE__, __LINE__, __VA_ARGS__)
#define conf_assert_status(ctx, resp, status)                                                      \
    conf_assert_status_at((ctx), (resp), (status), __FILE__, __LINE__)
#define conf_assert_attempts(ctx, token, n)                                                        \
    conf_assert_attempts_at((ctx), (token), (n), __FILE__, __LINE__)
/** Fails unless nothing at all reached the upstream with @p token (conf_upstream_requests). */
#define conf_assert_no_upstream(ctx, token)                                                        \
    conf_assert_no_upstream_at((ctx), (token), __FILE__, __LINE__)
#define conf_assert_json_error(ctx, resp)                                                          \
    conf_assert_json_error_at((ctx), (resp), __FILE__, __LINE__)
#define conf_assert_openai_error(ctx, resp)                                                        \
    conf_assert_openai_error_at((ctx), (resp), __FILE__, __LINE__)

/** Fails the test with a formatted reason (and the response, if any) unless @p ok. */
void conf_check_at(struct conf_ctx *ctx, const struct conf_response *resp, bool ok,
                   const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/** Skips the test with a formatted reason unless @p ok (a precondition that belongs to
 *  another requirement or a feature the profile says is absent). */
void conf_assume_at(struct conf_ctx *ctx, bool ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/** Ends the test with @p status (CONF_UNCHECKED or CONF_CANNOT_JUDGE) unless @p ok. */
void conf_end_unless_at(struct conf_ctx *ctx, bool ok, enum conf_status status, const char *file,
                        int line, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void conf_assert_status_at(struct conf_ctx *ctx, const struct conf_response *resp, long status,
                           const char *file, int line);
void conf_assert_no_upstream_at(struct conf_ctx *ctx, const char *token, const char *file,
                                int line);
void conf_assert_attempts_at(struct conf_ctx *ctx, const char *token, size_t n, const char *file,
                             int line);
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
