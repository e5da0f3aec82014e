/* The v2 completion stream (chat.qwen.ai, 2026) as a plan of writes: `response.created`,
 * thinking frames, incremental answer frames with cumulative usage, finished frames.
 * Pure, like mock_stream.c, whose plan assembly it shares. */
#ifndef MOCK_STREAM_V2_H
#define MOCK_STREAM_V2_H

#include <stdbool.h>
#include <stddef.h>

#include "mock_stream.h"

/** One response of a v2 stream (all borrowed). */
struct mock_v2_response {
    const char *response_id;
    const char *const *pieces; /**< the answer's natural pieces */
    size_t n_pieces;
    const char *const *reasoning; /**< summary elements, or the `think` phase's pieces */
    size_t n_reasoning;
    const char *const *titles; /**< summary titles */
    size_t n_titles;
};

/** What a v2 stream says, independent of how it is shaped (all borrowed). */
struct mock_v2_answer {
    const char *chat_id;
    const char *parent_id;
    struct mock_v2_response resp[2];
    size_t n_resp;       /**< 1, or 2 for a `dual` stream */
    bool thinking;       /**< send the reasoning */
    bool think_phase;    /**< as the older `think` phase (else `thinking_summary`) */
    bool phase_keys;     /**< the request asked for `output_schema: "phase"` */
    int input_tokens;    /**< usage's input_tokens */
    long long timestamp; /**< seconds, in every frame that carries one */
};

/**
 * Builds the plan of @p a shaped by @p o. Its frame keys: cumulative (answer content is
 * the text so far), usage, done, error_after, empty_answer, summary_grow, comments, the
 * line ends, chunks and piece_bytes; then mock_plan_assemble() for the rest.
 * @p text0 (may be NULL) receives the answer text of response 0 as streamed (a new
 * string, caller frees; "" for an empty answer).
 * @return QK_OK, QK_NOMEM, or QK_TOO_BIG when the events would carry more than
 *         MOCK_STREAM_MAX_BYTES of text per response.
 */
QK_WUR enum qk_err mock_plan_build_v2(const struct mock_v2_answer *a,
                                      const struct mock_stream_opts *o, struct mock_plan *out,
                                      char **text0);

#endif
