/**
 * @file sse_norm.h
 * @brief Turns the upstream's chat stream into a well-formed OpenAI stream.
 *
 * The upstream sends `data: {chunk}` events whose `delta.content` is CUMULATIVE
 * (the whole text so far) unless the request asked for `incremental_output`, may
 * use any SSE framing (LF, CRLF, CR, comments, events split or coalesced across
 * reads), may omit `finish_reason`, `[DONE]` and the chunk envelope, and may open
 * with an in-band failure payload. The normalizer accepts all of that and emits
 * only `data:` lines: complete `chat.completion.chunk` objects with incremental
 * deltas, a `finish_reason` on the last chunk, and one final `data: [DONE]`.
 *
 * It is three pure modules in a row: sse_frame.h cuts the bytes into events (no dialect),
 * a decoder (decoder.h; decode_v1.h is the v1 dialect, with the SSE-4 rule for telling
 * cumulative from incremental text) says what each event means, and chunk_emit.h writes
 * that as OpenAI chunks. This file only joins them, and picks the mutant they see.
 *
 * Memory (SSE-11): the text so far costs a fixed 4 KiB and a hash (decode_v1.h), so an
 * incremental answer of any length costs the same. What grows is the event being read:
 * its line (cumulative events are as long as the answer), its parsed tree and its delta,
 * given back after the event when over 64 KiB. One event may be at most 16 MiB
 * (QP_SSE_NOMEM beyond).
 *
 * Pure data in, bytes out: no I/O, so it is unit-tested at every byte split.
 * Ownership: qp_sse_norm_new() returns an object the caller frees with
 * qp_sse_norm_free(); output is appended to a caller-owned qk_buf.
 */
#ifndef QP_SSE_NORM_H
#define QP_SSE_NORM_H

#include <stdbool.h>
#include <stddef.h>

#include "decoder.h"
#include "qwenkit/buf.h"
#include "qwenkit/common.h"
#include "sse_frame.h"

struct qp_sse_norm;

/** What feeding bytes produced. */
enum qp_sse_status {
    QP_SSE_OK = 0,       /**< fine (maybe no output yet) */
    QP_SSE_DONE,         /**< the upstream sent [DONE]; later bytes are ignored */
    QP_SSE_INBAND_ERROR, /**< the first event was a failure payload (firewall, quota) */
    QP_SSE_BAD_EVENT,    /**< an event's data was not a JSON chunk */
    QP_SSE_NOMEM,
};

/**
 * A normalizer for the v1 upstream: qp_sse_norm_new_for(&qp_decoder_v1, ...).
 * @param incremental_requested the request carried "incremental_output": true
 * @param model the request's model, used when chunks carry none (borrowed, copied)
 * @param id fallback chunk id "chatcmpl-..." (borrowed, copied)
 * @param now_s creation time in seconds, used when chunks carry none
 * @return a new normalizer, or NULL when out of memory
 */
struct qp_sse_norm *qp_sse_norm_new(bool incremental_requested, const char *model, const char *id,
                                    long long now_s);

/** The same for the upstream dialect @p dialect (borrowed for the normalizer's life). */
struct qp_sse_norm *qp_sse_norm_new_for(const struct qp_decoder_ops *dialect,
                                        bool incremental_requested, const char *model,
                                        const char *id, long long now_s);

/** Everything a normalizer is made of (strings borrowed, copied; dialect borrowed for the
 *  normalizer's life). */
struct qp_sse_norm_opts {
    const struct qp_decoder_ops *dialect; /**< NULL: qp_decoder_v1 */
    bool incremental_requested;           /**< the request carried "incremental_output": true */
    const char *model;                    /**< the request's model, while chunks carry none */
    const char *id;                       /**< fallback chunk id "chatcmpl-..." */
    long long now_s;                      /**< creation time, while chunks carry none */
    enum qp_reasoning_mode reasoning;     /**< what the caller gets of the reasoning */
    bool include_usage;                   /**< stream_options.include_usage (chunk_emit.h) */
};

/** @return a new normalizer made of @p o, or NULL when out of memory. */
struct qp_sse_norm *qp_sse_norm_new_opts(const struct qp_sse_norm_opts *o);

void qp_sse_norm_free(struct qp_sse_norm *n);

/** Feeds upstream body bytes; appends caller-ready SSE bytes to @p out. */
QK_WUR enum qp_sse_status qp_sse_norm_feed(struct qp_sse_norm *n, const char *bytes, size_t len,
                                           struct qk_buf *out);

/**
 * Ends the stream. When the upstream ended cleanly (@p upstream_ok, or [DONE]
 * seen) and qp_sse_norm_end() is CLEAN, appends a closing chunk with finish_reason
 * if none was sent, then `data: [DONE]`. Otherwise appends one error event carrying
 * @p error_message, or the reason qp_sse_norm_end() gives (and no [DONE], so no
 * client mistakes it for success).
 */
QK_WUR enum qk_err qp_sse_norm_finish(struct qp_sse_norm *n, bool upstream_ok,
                                      const char *error_message, struct qk_buf *out);

/**
 * @return how the bytes fed so far would end if the transfer ended now (SSE-17; enum
 * qp_sse_end is in sse_frame.h), CLEAN once [DONE] was seen. A stream that is not CLEAN
 * is a failure: qp_sse_norm_finish() then ends it with an error event, never with [DONE],
 * even when @p upstream_ok.
 */
enum qp_sse_end qp_sse_norm_end(const struct qp_sse_norm *n);

/**
 * @return complete events and comment lines seen so far: what shows that the upstream is
 * alive (SSE-10). Bytes that complete neither (a trickle) do not count.
 */
size_t qp_sse_norm_progress(const struct qp_sse_norm *n);

/** Number of chunk events emitted so far. */
size_t qp_sse_norm_events(const struct qp_sse_norm *n);

/** The in-band failure message when feed returned QP_SSE_INBAND_ERROR (borrowed). */
const char *qp_sse_norm_inband_message(const struct qp_sse_norm *n);

/** @return that failure's final status (delta.failure_status): 0 when another attempt may
 *  succeed, else the caller's status, not retried (401 the credential, 400 the request). */
unsigned qp_sse_norm_inband_status(const struct qp_sse_norm *n);

/** @return whether the dialect requires a finish (finish_required) and none came yet: a
 *  clean end now would be a cut, which qp_sse_norm_end() reports as QP_SSE_END_CUT (so a
 *  caller may word it "ended before the answer finished"). */
bool qp_sse_norm_unfinished(const struct qp_sse_norm *n);

#endif
