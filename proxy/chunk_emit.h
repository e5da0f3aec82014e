/**
 * @file chunk_emit.h
 * @brief Writes neutral deltas (decoder.h) as an OpenAI chat.completion.chunk stream.
 *
 * Output is only `data:` events: complete `chat.completion.chunk` objects with incremental
 * deltas (the role on the first), the envelope of the stream's first chunk on every chunk,
 * usage mapped to OpenAI's names on the finishing chunk, a `finish_reason` on the last
 * chunk (filled in when the upstream gave none) and one final `data: [DONE]`; or, for a
 * failed stream, one error event and no `[DONE]`. When the caller asked for
 * `stream_options.include_usage`, OpenAI's form instead: `usage: null` on every chunk and
 * one more chunk with `choices: []` and the usage just before `[DONE]` (left out when the
 * upstream gave no counts).
 *
 * Pure: no I/O, no global. Ownership: qp_chunk_emitter_new() returns an object the caller
 * frees with qp_chunk_emitter_free(); output is appended to a caller-owned qk_buf.
 */
#ifndef QP_CHUNK_EMIT_H
#define QP_CHUNK_EMIT_H

#include <stddef.h>

#include "decoder.h"
#include "mutant.h"
#include "qwenkit/buf.h"
#include "qwenkit/common.h"

struct qp_chunk_emitter;

struct qp_chunk_emit_opts {
    const char *model; /**< used while the upstream gives none (borrowed, copied) */
    const char *id;    /**< fallback chunk id "chatcmpl-..." (borrowed, copied) */
    long long created; /**< seconds, used while the upstream gives none */
    /** What the caller gets of delta.reasoning (SEPARATE: `reasoning_content`). */
    enum qp_reasoning_mode reasoning;
    bool include_usage; /**< the caller's stream_options.include_usage */
#ifdef QK_MUTANTS
    enum qp_mutant mutant; /**< raw_chunks, sse_extra_fields (see sse_mutant.h) */
#endif
};

/** @return a new emitter, or NULL when out of memory. */
struct qp_chunk_emitter *qp_chunk_emitter_new(const struct qp_chunk_emit_opts *opts);
/** NULL-safe. */
void qp_chunk_emitter_free(struct qp_chunk_emitter *e);

/**
 * Takes one event's delta: its envelope while no chunk went out yet, then a chunk when it
 * carries text or a finish reason, unless a finishing chunk already went out (nothing may
 * follow it).
 * @return QK_OK, or QK_NOMEM (also when @p out is full)
 */
QK_WUR enum qk_err qp_chunk_emit_delta(struct qp_chunk_emitter *e, const struct qp_delta *d,
                                       struct qk_buf *out);

/** Ends a good stream: a chunk with finish_reason "stop" if none went out, then [DONE]. */
QK_WUR enum qk_err qp_chunk_emit_close(struct qp_chunk_emitter *e, struct qk_buf *out);

/** Ends a failed stream: one error event (code stream_interrupted) carrying @p message. */
QK_WUR enum qk_err qp_chunk_emit_error(const char *message, struct qk_buf *out);

/** @return chunk events written so far. */
size_t qp_chunk_emit_count(const struct qp_chunk_emitter *e);

#endif
