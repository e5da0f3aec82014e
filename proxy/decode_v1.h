/**
 * @file decode_v1.h
 * @brief The Qwen v1 dialect's stream decoder (decoder.h), for chat.qwenlm.ai's
 *        /api/chat/completions event stream.
 *
 * An event's data is a chunk `{"choices":[{"delta":{"content":...},"finish_reason":...}],
 * "usage":{"input_tokens":..,"output_tokens":..}, "id", "model", "created"}` (the envelope
 * may be missing; `created` may be milliseconds), `[DONE]`, or an in-band failure payload:
 * `{"ret":["FAIL_..."]}`, `{"success":false,...}`, `{"error":...}`.
 *
 * Rule for telling cumulative from incremental text (SSE-4): the request decides the
 * starting mode. In incremental mode, a chunk whose content begins with the whole text so
 * far and is longer than it, or (once two pieces have arrived) equals it, is taken as
 * cumulative (the upstream ignored the flag): only its new suffix is relayed, and the
 * stream is treated as cumulative from then on. Limit: a genuine incremental piece that
 * begins with the entire text so far ("a" then "ab") would be shortened; repeated pieces
 * ("哈","哈","哈") are safe. In cumulative mode a chunk that does not extend the text (a
 * rewrite) relays what follows the common prefix when the rewrite lies in the last 4 KiB,
 * else only what goes past the text already sent.
 *
 * Memory (SSE-11): the text so far is kept as its length, a 64-bit hash of all but its
 * last 4 KiB, and those 4 KiB, so an incremental answer of any length costs the same. An
 * event's parsed tree is kept only until release().
 *
 * Pure: no I/O, no global.
 */
#ifndef QP_DECODE_V1_H
#define QP_DECODE_V1_H

#include "decoder.h"

/** The v1 decoder's operations. */
extern const struct qp_decoder_ops qp_decoder_v1;

#endif
