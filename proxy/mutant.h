/**
 * @file mutant.h
 * @brief Deliberately broken behaviours, so the conformance suite can prove it fails.
 *
 * proxy/mutants.tsv is the one table of mutants: name, kind, the requirements the suite
 * must find failing, proxy flags, effect and why. It generates the `mutant_<name>`
 * ctests; the ctest `unit_proxy_mutant_table` checks that QP_MUTANT_MAP below, the
 * sites in the code and the table of MUTANTS.md agree with it. A mutant is one of four
 * kinds:
 *
 *  - flags:   a setting that lies (TTL, retry count, deadline...). No code: its ctest runs
 *             the ordinary proxy with other flags, and its name is not in QP_MUTANT_MAP.
 *  - table:   qp_mutant_apply() edits a module's table once at start-up (retry rules,
 *             header policy, routes); the module's code has no mutant branch.
 *  - rewrite: a QP_MUTANT_REWRITE(point, ...) hook at an edge of the proxy calls
 *             qp_mutant_rewrite_<point>() in mutant.c, which alters what goes out.
 *  - inline:  a structural QP_MUTANT(name) decision where the behaviour is made.
 *
 * All of it exists only with -DQK_MUTANTS, and mutant.c is compiled only then. In other
 * builds QP_MUTANT() is 0, QP_MUTANT_REWRITE() is ((void)0) and the editable tables are
 * const, so no mutant code or data is left: ci/check-no-mutants.sh proves it by symbol.
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
    XX(bytes_reset_idle)

#include <stdbool.h>

#ifdef QK_MUTANTS

struct MHD_Response;
struct curl_slist;
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
 * when @p stream): no_request_id, no_allow_header, no_cors (its answers; the preflight
 * is inline), sse_no_event_stream_headers.
 */
void qp_mutant_rewrite_response(struct MHD_Response *r, unsigned status, bool stream);

/**
 * Rewrites the upstream request header lines @p list (the caller owns the list, which may
 * be replaced): no_request_id, drop_authorization.
 */
void qp_mutant_rewrite_upstream_headers(struct curl_slist **list);

#else

#define QP_MUTANT(name) 0
#define QP_MUTANT_EDITABLE const
#define QP_MUTANT_REWRITE(point, ...) ((void)0)
/* No name is a mutant, and only "no mutant" (NULL) can be applied. */
#define QP_MUTANT_KNOWN(name) ((void)(name), false)
#define QP_MUTANT_APPLY(name, retry) ((void)(retry), (name) == NULL)

#endif

#endif
