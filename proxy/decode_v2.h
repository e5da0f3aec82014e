/**
 * @file decode_v2.h
 * @brief The Qwen v2 dialect's stream decoder (decoder.h), for chat.qwen.ai's
 *        /api/v2/chat/completions event stream.
 *
 * Events (LF only, Python-style JSON spacing; the framing is sse_frame's):
 * - `{"response.created":{"chat_id", "parent_id", "response_id", "response_index": "0"}}`
 *   (no `choices`). One response reaches the caller: the one whose created frame has
 *   index "0" (a string, or the number 0), else the first created frame without an index,
 *   else the first response_id seen on a frame. Frames of any other response_id are
 *   dropped; frames without a response_id are taken.
 * - `{"choices": [{"delta": {"role", "content", "phase", "status", "extra"}}],
 *   "response_id", "usage", "timestamp"}`, by phase:
 *   - `thinking_summary`: `extra.summary_thought.content` is the CUMULATIVE array of
 *     reasoning elements. Sent as reasoning: each element past those already sent,
 *     preceded by "\n" unless it is the first element; an element already sent that grew
 *     (the old text is its prefix) sends its new end; an element that changed otherwise
 *     sends nothing (never a duplicate). Titles (`summary_title`) are dropped. Its
 *     `finished` ends nothing.
 *   - `think`: `content` is incremental reasoning, sent as is.
 *   - `answer`, or no `phase` key at all (the request did not ask for phases): `content`
 *     is the incremental answer text; `status: "finished"` ends the answer
 *     (finish_reason "stop"; a string `finish_reason` on the choice is taken too).
 *   - any other phase (`image_gen`, tools): ignored.
 *   Empty `typing` frames send nothing.
 * - `usage` is cumulative, the last one wins: `input_tokens`, `output_tokens`,
 *   `output_tokens_details.reasoning_tokens`; the finishing delta carries the last seen.
 * - In-band failures (any event): `{"success":false,"data":{"code","details"}}`,
 *   `{"ret":["FAIL_...", ...]}`, `{"error":{"code","details"|"message"}}`: one line
 *   `<what>: <code>: <details>`, control bytes as spaces, at most about 200 bytes;
 *   failure_status as qp_v2_failure_status() says.
 * - `[DONE]` (not sent by the service, tolerated).
 *
 * body_failure() classifies a whole non-SSE body: the bare JSON of those failures, an
 * HTML page (`aliyun_waf`, `<!doctypehtml>`, any `<html`), or an empty body.
 *
 * Memory: per stream, one record (length, hash) per reasoning element sent and the
 * reasoning of the last event; an event's tree until release(), in the decoder's arena
 * (json_arena.h), all of it given back by release(), so that an idle stream holds no
 * tree memory. Pure: no I/O, no global of its own.
 */
#ifndef QP_DECODE_V2_H
#define QP_DECODE_V2_H

#include "decoder.h"

/** The v2 decoder's operations (finish_required, body_failure set). */
extern const struct qp_decoder_ops qp_decoder_v2;

/**
 * The caller's final status for one of the service's in-band failures, from its code and
 * details (either NULL; the `ret` challenge's first and second items), the one rule of
 * the decoder and of the chats/new reader:
 * - 401, the credential: code `unauthorized` (any case), or details holding "Token has
 *   expired";
 * - 400, the caller's request: code `Bad_Request` (any case) but for the details "The chat
 *   is in progress" and "Internal error..." (any case); `RequestValidationError`;
 *   `invalid_input`;
 * - 0, worth another attempt: everything else (firewall challenges, `RateLimited`,
 *   `internal_error`, `Not_Found`, unknown codes).
 */
unsigned qp_v2_failure_status(const char *code, const char *details);

#endif
