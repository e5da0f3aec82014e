/**
 * @file assemble.h
 * @brief A non-stream answer from an upstream stream: the whole event stream's body in,
 *        one OpenAI `chat.completion` out (v2 streams even when the caller did not ask).
 *
 * The body is read by the same framing (sse_frame.h) and decoder (decoder.h) as a stream,
 * so both paths agree on every event. The answer:
 * `{"id","object":"chat.completion","created","model","choices":[{"index":0,"message":
 * {"role":"assistant","content":...[,"reasoning_content":...]},"finish_reason":...}]
 * [,"usage":{"prompt_tokens","completion_tokens","total_tokens"
 * [,"completion_tokens_details":{"reasoning_tokens"}]}]}`.
 * `reasoning_content` only when there was reasoning and the mode is SEPARATE; INLINE puts
 * `<think>\n` reasoning `\n</think>\n\n` before the content; DROP leaves it out. `usage`
 * only when the upstream gave one (the last seen), `total_tokens` only when the sum is
 * below 2^53. The answer is final: in OpenAI's terms already, as the completion rewrite
 * (completion.h) would leave it, so the proxy relays it without that rewrite.
 *
 * Pure: no I/O, no global.
 */
#ifndef QP_ASSEMBLE_H
#define QP_ASSEMBLE_H

#include <stdbool.h>
#include <stddef.h>

#include "decoder.h"

struct qp_assemble_opts {
    const struct qp_decoder_ops *dialect;
    const char *model; /**< used when the upstream gives none (borrowed) */
    const char *id;    /**< "chatcmpl-..." (borrowed) */
    long long created_s;
    enum qp_reasoning_mode reasoning;
};

enum qp_assemble_status {
    QP_ASSEMBLE_OK = 0,  /**< *out is a chat.completion JSON (malloc'd, caller frees) */
    QP_ASSEMBLE_FAILURE, /**< an in-band failure frame, or a failure body (msg filled;
                          *final_status set) */
    /** The stream ended before the answer finished: the dialect requires a finish
     *  (finish_required) and neither a finishing delta nor [DONE] came, or the last event
     *  was cut (no blank line) before one came. */
    QP_ASSEMBLE_INCOMPLETE,
    QP_ASSEMBLE_BAD, /**< not a stream of this dialect (no event, or an event it cannot read) */
    QP_ASSEMBLE_NOMEM,
};

/**
 * Assembles @p body (@p len bytes, the whole upstream answer).
 * @param msg a one-line cause for every status but OK (@p msg_cap bytes, NUL-terminated)
 * @param final_status set to a FAILURE's final status (delta.failure_status: 0 when worth
 *        another attempt, 401, 400), else 0 (may be NULL)
 */
enum qp_assemble_status qp_assemble_completion(const struct qp_assemble_opts *o, const char *body,
                                               size_t len, char **out, size_t *out_len, char *msg,
                                               size_t msg_cap, unsigned *final_status);

#endif
