/**
 * @file decoder.h
 * @brief The upstream-dialect seam of the stream relay: one event's data to a neutral delta.
 *
 * sse_frame.c cuts the upstream's bytes into events; a decoder reads one event's data in
 * its dialect and says what it means for the caller, in no dialect's terms (struct
 * qp_delta); chunk_emit.c writes that as OpenAI chunks. A dialect is one file that fills a
 * struct qp_decoder_ops: decode_v1.c is the Qwen v1 one. A decoder keeps what its dialect
 * needs across the events of one stream (v1: the text sent so far, for SSE-4).
 *
 * Ownership: new() returns state that free() releases. The strings of a delta are borrowed
 * from the decoder until its next event(), release() or free().
 *
 * Reasoning (v2's thinking) travels beside the answer text in its own field; what the caller
 * sees of it is a choice of the emitter (enum qp_reasoning_mode), not of the decoder.
 */
#ifndef QP_DECODER_H
#define QP_DECODER_H

#include <stdbool.h>
#include <stddef.h>

#include "mutant.h"

/** What the caller gets of the upstream's reasoning (`--reasoning`). */
enum qp_reasoning_mode {
    QP_REASONING_SEPARATE = 0, /**< `reasoning_content` beside `content` (the default) */
    QP_REASONING_INLINE,       /**< `<think>\n` reasoning `\n</think>\n\n` before the content */
    QP_REASONING_DROP,         /**< not sent at all */
};

/** Parses "separate", "inline" or "drop". @return false (and @p out untouched) otherwise. */
bool qp_reasoning_mode_parse(const char *s, enum qp_reasoning_mode *out);

/** @return "separate", "inline" or "drop". */
const char *qp_reasoning_mode_name(enum qp_reasoning_mode m);

struct qp_decoder_opts {
    bool incremental_requested; /**< the request carried "incremental_output": true */
#ifdef QK_MUTANTS
    enum qp_mutant mutant; /**< the active mutant, set by sse_norm.c (see sse_mutant.h) */
#endif
};

/** What one event was. */
enum qp_decode_status {
    QP_DECODE_CHUNK = 0, /**< part of the answer: the delta says which part (maybe none) */
    QP_DECODE_DONE,      /**< the upstream's end of stream ([DONE]) */
    QP_DECODE_FAILURE,   /**< an in-band failure payload (firewall, quota): delta.failure */
    QP_DECODE_BAD,       /**< not an event of this dialect */
    QP_DECODE_NOMEM,
};

/** One event's meaning for the caller (QP_DECODE_CHUNK), or its failure. */
struct qp_delta {
    /** Text the caller has not had yet, the dialect's cumulative or incremental rule
     *  applied; "" when none. Not NUL-terminated at text_len in general. */
    const char *text;
    size_t text_len;
    /** Reasoning the caller has not had yet ("" when none), borrowed as text is. */
    const char *reasoning;
    size_t reasoning_len;
    const char *finish_reason; /**< NULL unless this event ends the answer */
    /** Token counts (finite, >= 0, below 2^53, as the upstream sent them). */
    bool has_usage;
    double prompt_tokens, completion_tokens;
    /** The part of completion_tokens spent reasoning, when the upstream gives it. */
    bool has_reasoning_tokens;
    double reasoning_tokens;
    /** The upstream's envelope as this event gives it: model and id NULL when absent or
     *  empty, the creation time in seconds when has_created. */
    const char *model, *id;
    bool has_created;
    long long created_s;
    const char *failure; /**< QP_DECODE_FAILURE: the message for the caller and the log */
    /** QP_DECODE_FAILURE: 0 when another attempt may succeed (a firewall challenge, a
     *  quota, a busy chat), else the caller's final status, never retried: 401 the upstream
     *  refused the credential, 400 it rejected the caller's request. */
    unsigned failure_status;
};

/** One dialect's stream decoder. */
struct qp_decoder_ops {
    /** @return new per-stream state, or NULL when out of memory (copies @p opts). */
    void *(*new)(const struct qp_decoder_opts *opts);
    /**
     * Reads one event's data (@p len bytes, not NUL-terminated; the framing's, borrowed for
     * the call) and fills @p delta (all fields; strings borrowed, see the file comment).
     */
    enum qp_decode_status (*event)(void *state, const char *data, size_t len,
                                   struct qp_delta *delta);
    /** Gives back what the last event() kept for its delta (the event is used). */
    void (*release)(void *state);
    /** NULL-safe. */
    void (*free)(void *state);
    /**
     * Optional (NULL: none). @return whether a whole non-SSE body (a 2xx answer that is
     * application/json, text/html or empty) is one of the dialect's in-band failures, with
     * a one-line cause (no credential) written into @p msg (@p cap bytes, NUL-terminated).
     */
    bool (*body_failure)(const char *body, size_t len, char *msg, size_t cap);
    /** Optional. @return the final status of such a failure body (delta.failure_status:
     *  0 when worth another attempt, 401, 400), 0 when it is no failure. */
    unsigned (*body_failure_status)(const char *body, size_t len);
    /** A clean end before a delta with a finish_reason (or the upstream's [DONE]) is a
     *  cut, not a normal end (v2: the answer's `finished` frame ends it). */
    bool finish_required;
};

#endif
