/**
 * @file mutant.h
 * @brief Deliberately broken behaviours, so the conformance suite can prove it fails.
 *
 * Each mutant breaks exactly one requirement of conformance/SPEC.md. They exist only in
 * builds configured with -DQK_MUTANTS=ON; elsewhere QP_MUTANT() is the constant 0 and the
 * compiler drops every mutant branch, so release binaries contain no mutant code.
 * proxy/MUTANTS.md documents the same table for the suite's ctest.
 */
#ifndef QP_MUTANT_H
#define QP_MUTANT_H

#include <stdbool.h>

/* name, requirement it breaks, what it does */
#define QP_MUTANT_MAP(XX)                                                                          \
    XX(no_auth_check, "AUTH-1", "forwards requests that carry no Authorization")                   \
    XX(empty_token_ok, "AUTH-2", "accepts a non-Bearer scheme or an empty token")                  \
    XX(drop_authorization, "AUTH-3", "does not forward the caller's Authorization")                \
    XX(retry_401, "AUTH-4", "retries an upstream 401 like a 500")                                  \
    XX(global_cache, "AUTH-5", "one model-list cache entry shared by every credential")            \
    XX(forward_hop_headers, "AUTH-6", "forwards hop-by-hop request headers upstream")              \
    XX(relay_hop_headers, "AUTH-6", "relays the upstream's hop-by-hop response headers")           \
    XX(no_cache, "CACHE-1", "never serves the model list from the cache")                          \
    XX(cache_never_expires, "CACHE-2", "ignores the cache TTL")                                    \
    XX(cache_errors, "CACHE-3", "caches failed model-list answers")                                \
    XX(no_single_flight, "CACHE-4", "every concurrent miss goes upstream")                         \
    XX(cache_chat, "CACHE-5", "caches chat completions per credential and body")                   \
    XX(no_stale, "CACHE-6", "never serves a stale list when a refresh fails")                      \
    XX(unbounded_cache, "CACHE-7", "ignores --cache-max-entries and --cache-max-bytes")            \
    XX(no_retry, "RETRY-1", "never retries")                                                       \
    XX(relay_html, "RETRY-2", "relays HTML answers instead of retrying them")                      \
    XX(wrong_retry_count, "RETRY-3", "makes one attempt more than configured")                     \
    XX(client_resends, "RETRY-3", "lets libcurl re-send a request on a dead pooled connection")  \
    XX(retry_4xx, "RETRY-4", "retries 400/403/404/413 like a 500")                                 \
    XX(no_retry_gateway, "RETRY-5", "does not retry 502/503/504 or connection errors")             \
    XX(no_backoff, "RETRY-6", "retries at once, ignoring backoff and Retry-After")                 \
    XX(retry_changes_body, "RETRY-7", "sends a different body on retries")                         \
    XX(no_deadline, "RETRY-8", "ignores the whole-request deadline")                               \
    XX(no_validation, "ERR-1", "forwards chat bodies without validating them")                     \
    XX(rewrite_400, "ERR-2", "replaces the upstream 400 message with a generic one")               \
    XX(html_errors, "ERR-3", "answers its own errors as text/html")                                \
    XX(no_allow_header, "ERR-4", "answers 405 without an Allow header")                            \
    XX(no_413, "ERR-4", "accepts bodies over --max-body")                                          \
    XX(unreachable_500, "ERR-5", "answers 500 when the upstream is unreachable")                   \
    XX(timeout_502, "ERR-5", "answers 502 instead of 504 on an upstream timeout")                  \
    XX(rewrite_completion, "HTTP-1", "rewrites the upstream chat.completion body")                 \
    XX(no_request_id, "HTTP-2", "neither forwards nor returns X-Request-Id")                       \
    XX(no_cors, "HTTP-3", "answers CORS preflight with 405")                                       \
    XX(v1_models_raw, "HTTP-4", "answers /v1/models in the upstream shape")                        \
    XX(models_as_text, "HTTP-6", "answers the model list as text/plain")                           \
    XX(one_caller_at_a_time, "HTTP-7", "starts nothing upstream while another stream is open")     \
    XX(drop_unknown_fields, "HTTP-8", "sends upstream only the chat fields it knows")              \
    XX(usage_raw, "HTTP-9", "relays the upstream's usage names in non-stream answers")             \
    XX(crash_on_missing_messages, "ROBUST-1", "aborts on a chat body without messages")            \
    XX(no_receive_deadline, "ROBUST-2", "lets a request head take for ever when bytes trickle in") \
    XX(no_half_close_watch, "ROBUST-3", "keeps a half-closed partial request until its deadline")  \
    XX(sse_no_event_stream_headers, "SSE-1", "streams without Cache-Control: no-cache")            \
    XX(buffer_stream, "SSE-2", "holds the whole stream back until the upstream ends")              \
    XX(cumulative_passthrough, "SSE-4", "relays upstream deltas as they are (cumulative text)")    \
    XX(naive_prefix_dedup, "SSE-4",                                                                \
       "drops the prefix equal to the previous piece (loses repeats)")                             \
    XX(split_utf8, "SSE-5", "decodes each upstream write alone, mangling split UTF-8")             \
    XX(lf_only_framing, "SSE-6", "only understands LF line endings")                               \
    XX(stream_200_on_failure, "SSE-7", "answers 200 before the first event; failures in-band")     \
    XX(replay_after_drop, "SSE-8", "retries a stream dropped mid-way, replaying its text")         \
    XX(bare_done_on_drop, "SSE-8", "ends a dropped stream with [DONE] and no error event")         \
    XX(keep_upstream_on_disconnect, "SSE-9", "keeps the upstream open after the caller left")      \
    XX(unbounded_stream_buffer, "SSE-11", "never pauses the upstream for a slow caller")        \
    XX(done_twice, "SSE-3", "ends a good stream with two data: [DONE] events")                \
    XX(raw_chunks, "SSE-12", "created in milliseconds, no finish_reason filled in")                \
    XX(sse_extra_fields, "SSE-12", "emits event: and id: lines")                                   \
    XX(shared_line_buffer, "SSE-14", "one partial-line buffer shared by every stream")              \
    XX(textless_chunk_bad, "SSE-15", "takes a chunk without text for a broken event")             \
    XX(connection_first_line, "AUTH-6", "reads only the first Connection header line")             \
    XX(forward_duplicate_headers, "INPUT-1", "forwards two Authorization/Host/Content-Length")      \
    XX(forward_control_chars, "INPUT-2", "forwards header values holding control characters")     \
    XX(decode_path_before_routing, "INPUT-3", "routes on the decoded path (%2F, %00)")             \
    XX(head_405, "INPUT-4", "answers HEAD on the GET routes with 405") \
    XX(relay_non_sse_200, "SSE-16", "relays a 200 that is not an event stream as a success")      \
    XX(done_on_junk_stream, "SSE-17", "ends a stream without events, or cut, with [DONE]")        \
    XX(retry_after_caller_left, "SSE-18", "keeps retrying after the caller left before the start") \
    XX(bytes_reset_idle, "SSE-10", "any upstream byte resets the stream idle timeout")

enum qp_mutant {
    QP_MUT_NONE = 0,
#ifdef QK_MUTANTS
#define QP_MUTANT_ENUM(name, req, text) QP_MUT_##name,
    QP_MUTANT_MAP(QP_MUTANT_ENUM)
#undef QP_MUTANT_ENUM
        QP_MUT_COUNT
#endif
};

#ifdef QK_MUTANTS
/** The mutant chosen at start (QP_MUT_NONE normally). Set once before threads start. */
extern enum qp_mutant qp_mutant_active;
#define QP_MUTANT(name) (qp_mutant_active == QP_MUT_##name)
#else
#define QP_MUTANT(name) 0
#endif

/**
 * Looks a mutant up by name.
 * @return true and the id in @p out, or false for an unknown name (or a release build).
 */
bool qp_mutant_from_name(const char *name, enum qp_mutant *out);

/** Activates @p m for the whole process (tests and qk_proxy_start()). */
void qp_mutant_set(enum qp_mutant m);

#endif
