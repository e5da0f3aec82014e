/**
 * @file mutant.h
 * @brief Deliberately broken behaviours, so the conformance suite can prove it fails.
 *
 * proxy/mutants.tsv is the one table of mutants: name, kind, the upstream dialect the suite
 * runs under, the requirements it must find failing, proxy flags, effect and why. It generates the
 * `mutant_<name>` ctests; the ctest `unit_proxy_mutant_table` checks that QP_MUTANT_MAP below, the
 * sites in the code and the table of MUTANTS.md agree with it. A mutant is one of four
 * kinds:
 *
 *  - flags:   a setting that lies (TTL, retry count, deadline...). No code: its ctest runs
 *             the ordinary proxy with other flags, and its name is not in QP_MUTANT_MAP.
 *  - table:   qp_mutant_apply() edits a module's table or policy once at start-up (retry
 *             rules, header policy, routes, give-up statuses, the auth, admission, stream,
 *             single-flight and libcurl re-send policies, the v2 dialect's chat plan); the
 *             module's code reads it and has no mutant branch.
 *  - rewrite: a QP_MUTANT_REWRITE(point, ...) hook at an edge of the proxy calls
 *             qp_mutant_rewrite_<point>() in mutant.c, which alters what goes out (or an
 *             upstream write as it comes in, or how a dropped stream ends).
 *  - inline:  a structural QP_MUTANT(name) decision where the behaviour is made (in the
 *             pure stream modules QP_SSE_MUTANT(opts, name), sse_mutant.h); a helper it
 *             needs lives in mutant.c, called through QP_MUTANT_HELPER().
 *
 * All of it exists only with -DQK_MUTANTS, and mutant.c is compiled only then. In other
 * builds QP_MUTANT() and QP_MUTANT_HELPER() are 0, QP_MUTANT_REWRITE() is ((void)0) and
 * the editable tables are const, so no mutant code or data is left: ci/check-no-mutants.sh
 * proves it by symbol.
 */
#ifndef QP_MUTANT_H
#define QP_MUTANT_H

/* The mutants compiled into a mutant build: every row of mutants.tsv but the flags ones. */
#define QP_MUTANT_MAP(XX)                                                                          \
    XX(no_auth_check)                                                                              \
    XX(empty_token_ok)                                                                             \
    XX(drop_authorization)                                                                         \
    XX(retry_401)                                                                                  \
    XX(global_cache)                                                                               \
    XX(forward_hop_headers)                                                                        \
    XX(relay_hop_headers)                                                                          \
    XX(cache_errors)                                                                               \
    XX(no_single_flight)                                                                           \
    XX(cache_chat)                                                                                 \
    XX(relay_html)                                                                                 \
    XX(client_resends)                                                                             \
    XX(retry_4xx)                                                                                  \
    XX(no_retry_gateway)                                                                           \
    XX(no_backoff)                                                                                 \
    XX(retry_changes_body)                                                                         \
    XX(no_validation)                                                                              \
    XX(rewrite_400)                                                                                \
    XX(html_errors)                                                                                \
    XX(no_allow_header)                                                                            \
    XX(refusals_ask_upstream)                                                                      \
    XX(unreachable_500)                                                                            \
    XX(timeout_502)                                                                                \
    XX(rewrite_completion)                                                                         \
    XX(no_request_id)                                                                              \
    XX(no_cors)                                                                                    \
    XX(v1_models_raw)                                                                              \
    XX(models_as_text)                                                                             \
    XX(one_caller_at_a_time)                                                                       \
    XX(drop_unknown_fields)                                                                        \
    XX(usage_raw)                                                                                  \
    XX(sse_no_event_stream_headers)                                                                \
    XX(buffer_stream)                                                                              \
    XX(cumulative_passthrough)                                                                     \
    XX(naive_prefix_dedup)                                                                         \
    XX(split_utf8)                                                                                 \
    XX(lf_only_framing)                                                                            \
    XX(stream_200_on_failure)                                                                      \
    XX(replay_after_drop)                                                                          \
    XX(bare_done_on_drop)                                                                          \
    XX(keep_upstream_on_disconnect)                                                                \
    XX(done_twice)                                                                                 \
    XX(unbounded_stream_buffer)                                                                    \
    XX(raw_chunks)                                                                                 \
    XX(sse_extra_fields)                                                                           \
    XX(shared_line_buffer)                                                                         \
    XX(textless_chunk_bad)                                                                         \
    XX(crash_on_missing_messages)                                                                  \
    XX(no_half_close_watch)                                                                        \
    XX(connection_first_line)                                                                      \
    XX(forward_duplicate_headers)                                                                  \
    XX(forward_control_chars)                                                                      \
    XX(decode_path_before_routing)                                                                 \
    XX(head_405)                                                                                   \
    XX(relay_non_sse_200)                                                                          \
    XX(done_on_junk_stream)                                                                        \
    XX(retry_after_caller_left)                                                                    \
    XX(bytes_reset_idle)                                                                           \
    XX(v2_retry_same_chat)                                                                         \
    XX(v2_unchecked_chat_id)                                                                       \
    XX(v2_reasoning_inline)                                                                        \
    XX(v2_reasoning_dropped)                                                                       \
    XX(v2_no_response_lock)                                                                        \
    XX(v2_upstream_done_relayed)                                                                   \
    XX(v2_done_after_inband_error)                                                                 \
    XX(v2_last_message_only)                                                                       \
    XX(v2_wrap_single_message)

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef QK_MUTANTS

#include "log.h"
#include "qwenkit/proxy.h"

struct MHD_Connection;
struct MHD_Response;
struct curl_slist;
struct qk_buf;
struct qp_cache;
struct qp_key;
struct qp_request;
struct qp_response;
struct qp_retry_policy;

enum qp_mutant {
    QP_MUT_NONE = 0,
#define QP_MUTANT_ENUM(name) QP_MUT_##name,
    QP_MUTANT_MAP(QP_MUTANT_ENUM)
#undef QP_MUTANT_ENUM
        QP_MUT_COUNT
};

/** The mutant chosen at start (QP_MUT_NONE normally). Set once before threads start. */
extern enum qp_mutant qp_mutant_active;

/** True where the behaviour of mutant @p name is made (kind inline). */
#define QP_MUTANT(name) (qp_mutant_active == QP_MUT_##name)

/** Calls qp_mutant_<helper>(...) of mutant.c, a helper an inline decision needs, as in
 * `QP_MUTANT(name) && QP_MUTANT_HELPER(helper, ...)`; 0 in other builds, so a helper that
 * returns nothing is called as `(void)QP_MUTANT_HELPER(...)`. */
#define QP_MUTANT_HELPER(helper, ...) qp_mutant_##helper(__VA_ARGS__)

/** A table that qp_mutant_apply() may edit before the proxy starts (const otherwise). */
#define QP_MUTANT_EDITABLE

/** An output rewrite: calls qp_mutant_rewrite_<point>(...), which may alter its arguments. */
#define QP_MUTANT_REWRITE(point, ...) qp_mutant_rewrite_##point(__VA_ARGS__)

/** @return true when @p name is a mutant of this build. */
bool qp_mutant_known(const char *name);
#define QP_MUTANT_KNOWN(name) qp_mutant_known(name)

/**
 * Activates the mutant named @p name (NULL: none) for the whole process and makes
 * its table edits: to the process-wide tables (restored first, so that a second proxy of
 * the process starts from the real ones) and to @p retry, the policy of the proxy being
 * started (its rules then point at mutant.c's static copy). Call before any thread starts.
 * @return false for a name that is no mutant (nothing is changed).
 */
bool qp_mutant_apply(const char *name, struct qp_retry_policy *retry);
#define QP_MUTANT_APPLY(name, retry) qp_mutant_apply(name, retry)

/** Rewrites the error answer @p r just made of @p status and @p message (html_errors). */
void qp_mutant_rewrite_error(struct qp_response *r, unsigned status, const char *message);

/**
 * Rewrites the headers of @p r, the answer with @p status about to be queued (a stream's
 * when @p stream): no_request_id, no_allow_header, no_cors (its answers; the preflight's
 * own answer is qp_mutant_rewrite_preflight()'s), sse_no_event_stream_headers.
 */
void qp_mutant_rewrite_response(struct MHD_Response *r, unsigned status, bool stream);

/** Rewrites @p r, the answer to a CORS preflight of a route answering @p method:
 * no_cors (405 with that Allow). */
void qp_mutant_rewrite_preflight(struct qp_response *r, const char *method);

/**
 * Runs before the proxy's own answer with @p status (0: an answer made of an upstream
 * exchange) to the request on @p conn is queued:
 * refusals_ask_upstream asks the upstream's model list (@p upstream + @p models_path) with the
 * caller's Authorization before a 404, 405 or 413, and ignores the answer.
 */
void qp_mutant_rewrite_refusal(struct MHD_Connection *conn, unsigned status, const char *upstream,
                               const char *models_path);

/**
 * Rewrites the upstream request header lines @p list (the caller owns the list, which may
 * be replaced), made of the request on @p conn: no_request_id, drop_authorization,
 * connection_first_line (the caller's headers named only in a later Connection line go
 * up too, as if the first line were the whole list).
 */
void qp_mutant_rewrite_upstream_headers(struct curl_slist **list, struct MHD_Connection *conn);

/** Rewrites the model list answer @p r (in the OpenAI shape when @p v1): models_as_text. */
void qp_mutant_rewrite_models(struct qp_response *r, bool v1);

/**
 * Rewrites the chat completion about to be relayed: @p *body (malloc'd, may be NULL when
 * the upstream's could not be converted; the caller owns it, which may be replaced) is
 * its OpenAI form, which replaces the upstream's unless NULL: usage_raw (NULL: the
 * upstream's as it is), rewrite_completion.
 */
void qp_mutant_rewrite_completion(char **body, size_t *len);

/** Rewrites @p *message (malloc'd or NULL; the caller owns it, which may be replaced), the
 * upstream's error message relayed with @p status: rewrite_400. */
void qp_mutant_rewrite_upstream_message(char **message, long status);

/** Rewrites req->resp, the relay of a final upstream answer req->last: relay_html (the
 * HTML page itself, with its status). */
void qp_mutant_rewrite_relay(struct qp_request *req);

/** Rewrites the key of @p *key's model-list cache entry: global_cache. */
void qp_mutant_rewrite_models_key(struct qp_key *key);

/** Rewrites req->body before each attempt sends it (req->attempts made so far):
 * drop_unknown_fields, retry_changes_body, v2_last_message_only, v2_wrap_single_message,
 * v2_reasoning_inline and v2_reasoning_dropped (no thinking asked for). */
void qp_mutant_rewrite_upstream_body(struct qp_request *req);

/** Rewrites req->plan after a plan step's answer was read into it (the chat a v2 attempt
 * created): v2_retry_same_chat (every attempt of the request goes on in its first one's
 * chat, kept in req->mutant_chat_id). */
void qp_mutant_rewrite_plan(struct qp_request *req);

/** Rewrites @p tail, the events that end a stream (@p ok: without failure; a failure to
 * grow it is noted in @p log): done_twice. */
void qp_mutant_rewrite_stream_end(struct qk_buf *tail, bool ok, struct qp_log log);

/** Rewrites @p *ok, whether a started stream (an event stream when @p sse) whose upstream
 * failed, was cut or went idle ends as a success, [DONE], rather than with an error event:
 * bare_done_on_drop. */
void qp_mutant_rewrite_stream_drop(bool *ok, bool sse);

/** Rewrites one upstream write of a stream, @p *bytes (@p *len bytes, borrowed) before it
 * is decoded; a replacement is malloc'd into @p *owned, which the caller frees:
 * split_utf8 (each write decoded alone). */
void qp_mutant_rewrite_upstream_write(const char **bytes, size_t *len, char **owned);

/** @return true when an exchange of the list @p active other than @p req relays a stream
 * whose upstream transfer runs (one_caller_at_a_time). */
bool qp_mutant_another_stream_open(const struct qp_request *active, const struct qp_request *req);

/** Stores req->attempt_body in @p cache under req->flight_key at @p now, where the proxy
 * never caches (cache_chat: a completion, cache_errors: a failure); a failure to store
 * is noted in @p log. */
void qp_mutant_cache_put(struct qp_cache *cache, const struct qp_request *req, int64_t now,
                         struct qp_log log);

/** cache_chat: keys @p req by credential and body and looks its answer up in @p cache.
 * @return true on a fresh hit, with req->resp set to it. */
bool qp_mutant_chat_lookup(struct qp_cache *cache, struct qp_request *req, int64_t now);

#else

#define QP_MUTANT(name) 0
#define QP_MUTANT_HELPER(helper, ...) 0
#define QP_MUTANT_EDITABLE const
#define QP_MUTANT_REWRITE(point, ...) ((void)0)
/* No name is a mutant, and only "no mutant" (NULL) can be applied. */
#define QP_MUTANT_KNOWN(name) ((void)(name), false)
#define QP_MUTANT_APPLY(name, retry) ((void)(retry), (name) == NULL)

#endif

#endif
