/**
 * @file prompt.h
 * @brief The history rule of the v2 dialect: an OpenAI `messages` array as ONE message.
 *
 * Qwen's v2 service answers one message per request (several `messages[]` entries give an
 * empty or partial answer), so the proxy sends the conversation as one user message:
 * - a request whose only message is a user message sends its text as is;
 * - otherwise every message in order as `<role>: <text>`, joined by a blank line ("\n\n"),
 *   the role as given (system, user, assistant, tool, or "user" when it is missing or not a
 *   string).
 * A message's text is its `content` string, or the `text` of the text parts of a content
 * array joined by "\n"; other parts (images, files) and `tool_calls` are not sent.
 *
 * Pure: no I/O, no globals.
 */
#ifndef QP_PROMPT_H
#define QP_PROMPT_H

#include <cjson/cJSON.h>

#include "qwenkit/buf.h"
#include "qwenkit/common.h"

/** Appends the one-message prompt of @p messages (an array, borrowed) to @p out
 *  (caller-owned). @return QK_OK, QK_INVALID when @p messages is no array, or QK_NOMEM. */
QK_WUR enum qk_err qp_prompt_flatten(const cJSON *messages, struct qk_buf *out);

#endif
