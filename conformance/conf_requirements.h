/**
 * @file conf_requirements.h
 * @brief The requirements of conformance/SPEC.md, as one table.
 *
 * Each row is (symbol, ID, level, one-line summary). The report, the JSON/JUnit output and
 * the test registration all read this table, so an ID cannot be misspelt in one place and
 * right in another. SPEC.md is the normative text; keep the summaries in step with it (its
 * IDs and levels are checked against this table: conf_requirements_check_spec()).
 */
#ifndef CONF_REQUIREMENTS_H
#define CONF_REQUIREMENTS_H

#include <stdbool.h>
#include <stddef.h>

/** The version of SPEC.md this suite checks. */
#define CONF_SPEC_VERSION "1.4.2"

enum conf_level {
    CONF_MUST = 0,
    CONF_SHOULD = 1,
    CONF_MAY = 2,
};

#define CONF_AUTH_REQUIREMENTS(XX)                                                                 \
    XX(AUTH_1, "AUTH-1", MUST, "no Authorization: 401, no upstream request")                       \
    XX(AUTH_2, "AUTH-2", MUST, "non-Bearer or empty token: 401, no upstream request")              \
    XX(AUTH_3, "AUTH-3", MUST, "caller's Authorization reaches upstream unchanged")                \
    XX(AUTH_4, "AUTH-4", MUST, "upstream 401 relayed as 401 after one attempt")                    \
    XX(AUTH_5, "AUTH-5", MUST, "model-list cache keyed by credential")                             \
    XX(AUTH_6, "AUTH-6", MUST, "no own credentials upstream; hop-by-hop headers dropped")

#define CONF_CACHE_REQUIREMENTS(XX)                                                                \
    XX(CACHE_1, "CACHE-1", MUST, "model list served from cache within the TTL")                    \
    XX(CACHE_2, "CACHE-2", MUST, "after the TTL the model list is fetched again")                  \
    XX(CACHE_3, "CACHE-3", MUST, "failures are never cached")                                      \
    XX(CACHE_4, "CACHE-4", SHOULD, "concurrent misses cause one upstream request")                 \
    XX(CACHE_5, "CACHE-5", MUST, "chat completions are never cached")                              \
    XX(CACHE_6, "CACHE-6", SHOULD, "stale list served for a bounded grace on failure")             \
    XX(CACHE_7, "CACHE-7", MUST, "cache bounded, least recently used evicted")

#define CONF_RETRY_REQUIREMENTS(XX)                                                                \
    XX(RETRY_1, "RETRY-1", MUST, "upstream 500 retried; caller sees only the success")             \
    XX(RETRY_2, "RETRY-2", MUST, "HTML answers are failures, retried, never relayed")              \
    XX(RETRY_3, "RETRY-3", MUST, "at most max-retries retries, then 502 naming status")            \
    XX(RETRY_4, "RETRY-4", MUST, "400, 401, 403, 404, 413 never retried")                          \
    XX(RETRY_5, "RETRY-5", SHOULD, "502/503/504 and connection errors retried")                    \
    XX(RETRY_6, "RETRY-6", SHOULD, "growing jittered backoff; Retry-After honoured")               \
    XX(RETRY_7, "RETRY-7", MUST, "every attempt sends the same body and headers")                  \
    XX(RETRY_8, "RETRY-8", SHOULD, "whole-request deadline stops retries with 504")

#define CONF_ERR_REQUIREMENTS(XX)                                                                  \
    XX(ERR_1, "ERR-1", MUST, "invalid chat body: 400 OpenAI-style error, no upstream")             \
    XX(ERR_2, "ERR-2", MUST, "upstream 400 relayed as 400 with its message")                       \
    XX(ERR_3, "ERR-3", MUST, "every error the proxy produces is JSON")                             \
    XX(ERR_4, "ERR-4", MUST, "unknown path 404, wrong method 405 + Allow, big body 413")           \
    XX(ERR_5, "ERR-5", MUST, "upstream unreachable 502, upstream timeout 504")

#define CONF_HTTP_REQUIREMENTS(XX)                                                                 \
    XX(HTTP_1, "HTTP-1", MUST, "non-stream completion returns upstream chat.completion")           \
    XX(HTTP_2, "HTTP-2", SHOULD, "X-Request-Id taken or generated, forwarded, returned")           \
    XX(HTTP_3, "HTTP-3", SHOULD, "CORS preflight answered for configured origins")                 \
    XX(HTTP_4, "HTTP-4", SHOULD, "/v1/models answers in OpenAI's list shape")                      \
    XX(HTTP_5, "HTTP-5", SHOULD, "/v1/chat/completions is an alias of the /api route")             \
    XX(HTTP_6, "HTTP-6", MUST, "model list relayed: 200 JSON with the upstream's models")          \
    XX(HTTP_7, "HTTP-7", MUST, "one caller's slow stream never delays another's request")          \
    XX(HTTP_8, "HTTP-8", MUST, "the caller's body fields reach the upstream unchanged")            \
    XX(HTTP_9, "HTTP-9", MUST, "non-stream answer: created in seconds, OpenAI usage names")

/* Streaming (SPEC 1.1): tests in conf_stream.c, judged with the suite's own SSE parser
 * (conf_sse.c). A MUST row may also have a SHOULD part, checked by CONF_TEST_SHOULD tests. */
#define CONF_SSE_REQUIREMENTS(XX)                                                                  \
    XX(SSE_1, "SSE-1", MUST, "stream answers 200 text/event-stream, no-cache")                     \
    XX(SSE_2, "SSE-2", MUST, "events relayed as they arrive, not buffered")                        \
    XX(SSE_3, "SSE-3", MUST, "well-formed data: events, one final [DONE]")                         \
    XX(SSE_4, "SSE-4", MUST, "deltas incremental and exact (cumulative upstream)")                 \
    XX(SSE_5, "SSE-5", MUST, "UTF-8 split across upstream writes arrives intact")                  \
    XX(SSE_6, "SSE-6", MUST, "any valid upstream framing (CRLF, CR, comments, splits)")            \
    XX(SSE_7, "SSE-7", MUST, "failure before the first event: retried, JSON error")                \
    XX(SSE_8, "SSE-8", MUST, "mid-stream drop or stall: one error event, no replay")               \
    XX(SSE_9, "SSE-9", MUST, "caller gone: upstream closed within 1 s")                            \
    XX(SSE_10, "SSE-10", SHOULD, "idle timeout, keep-alive comments, no total cap")                \
    XX(SSE_11, "SSE-11", SHOULD, "slow caller: bounded per-stream buffer")                         \
    XX(SSE_12, "SSE-12", MUST, "complete chat.completion.chunk objects, data: only")               \
    XX(SSE_13, "SSE-13", SHOULD, "in-band failure payload retried, then error status")             \
    XX(SSE_14, "SSE-14", MUST, "concurrent streams independent, each exact")                       \
    XX(SSE_15, "SSE-15", MUST, "chunks without text: text exact, stream ends cleanly")             \
    XX(SSE_16, "SSE-16", MUST, "a 200 that is not an event stream is a failure")                   \
    XX(SSE_17, "SSE-17", MUST, "no parseable event or a cut last event: a failure")                \
    XX(SSE_18, "SSE-18", MUST, "caller gone before the first byte: no retry after 1 s")

/* SPEC 1.2: the target survives what the suite sends it and what the upstream answers. */
#define CONF_ROBUST_REQUIREMENTS(XX)                                                               \
    XX(ROBUST_1, "ROBUST-1", MUST, "keeps serving after malformed input and odd answers")          \
    XX(ROBUST_2, "ROBUST-2", SHOULD, "a request trickled in is cut at a receive deadline")         \
    XX(ROBUST_3, "ROBUST-3", SHOULD, "a caller who hangs up mid-request is let go at once")

/* SPEC 1.3: input the proxy refuses before anything goes upstream (conf_input.c). */
#define CONF_INPUT_REQUIREMENTS(XX)                                                                \
    XX(INPUT_1, "INPUT-1", MUST, "duplicate Authorization/Host/Content-Length: 400")               \
    XX(INPUT_2, "INPUT-2", MUST, "control characters in header values: 400")                       \
    XX(INPUT_3, "INPUT-3", MUST, "encoded / or NUL in the path never reaches a route")             \
    XX(INPUT_4, "INPUT-4", SHOULD, "HEAD on the GET routes answered as GET, no body")

/* SPEC 1.4: what the Qwen v2 upstream adds (conf_v2.c); SKIP under the v1 dialect. */
#define CONF_V2_REQUIREMENTS(XX)                                                                   \
    XX(V2_1, "V2-1", MUST, "every attempt completes a chat of its own")                            \
    XX(V2_2, "V2-2", MUST, "a failed chat creation is a failed attempt")                           \
    XX(V2_3, "V2-3", MUST, "reasoning never in content (SHOULD: in reasoning_content)")            \
    XX(V2_4, "V2-4", MUST, "only response 0 reaches the caller, no raw v2 frame")                  \
    XX(V2_5, "V2-5", MUST, "one [DONE] whether or not the upstream sends one")                     \
    XX(V2_6, "V2-6", MUST, "in-band failures: error status, or one error event once streaming")    \
    XX(V2_7, "V2-7", MUST, "the whole conversation reaches the upstream in one message")           \
    XX(V2_8, "V2-8", SHOULD, "a single user message is sent as its text, as it is")

#define CONF_REQUIREMENT_MAP(XX)                                                                   \
    CONF_AUTH_REQUIREMENTS(XX)                                                                     \
    CONF_CACHE_REQUIREMENTS(XX)                                                                    \
    CONF_RETRY_REQUIREMENTS(XX)                                                                    \
    CONF_ERR_REQUIREMENTS(XX)                                                                      \
    CONF_HTTP_REQUIREMENTS(XX)                                                                     \
    CONF_SSE_REQUIREMENTS(XX)                                                                      \
    CONF_ROBUST_REQUIREMENTS(XX)                                                                   \
    CONF_INPUT_REQUIREMENTS(XX)                                                                    \
    CONF_V2_REQUIREMENTS(XX)

enum conf_req {
#define CONF_REQ_ENUM(sym, id, level, summary) CONF_REQ_##sym,
    CONF_REQUIREMENT_MAP(CONF_REQ_ENUM)
#undef CONF_REQ_ENUM
        CONF_REQ_COUNT
};

struct conf_requirement {
    const char *id; /**< "AUTH-1" */
    enum conf_level level;
    const char *summary; /**< one line, for the report */
};

/** @return the row of @p req (static). */
const struct conf_requirement *conf_requirement(enum conf_req req);

/** @return "MUST", "SHOULD" or "MAY". */
const char *conf_level_name(enum conf_level level);

/**
 * Looks a requirement up by its ID ("RETRY-3"), case-insensitively.
 * @return true and the requirement in @p out, false for an unknown ID.
 */
bool conf_requirement_find(const char *id, enum conf_req *out);

/**
 * Compares the requirement headings of SPEC.md (`#### ID (LEVEL[; SHOULD part]): title`)
 * with the table: every ID in both, once in SPEC.md, at the same level. The order may
 * differ (SPEC.md groups the MUST requirements of a section first).
 * @param spec the text of SPEC.md (borrowed).
 * @param[out] report one line per difference, cut to @p reportlen ("" when none).
 * @return the number of differences; 0 when they agree.
 */
size_t conf_requirements_check_spec(const char *spec, char *report, size_t reportlen);

#endif
