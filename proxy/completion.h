/**
 * @file completion.h
 * @brief The non-stream chat completion in the terms the OpenAI SDKs type (HTTP-9).
 */
#ifndef QP_COMPLETION_H
#define QP_COMPLETION_H

#include <stddef.h>

/**
 * Rewrites the upstream's `chat.completion` for the caller: `usage` in OpenAI's names
 * (`prompt_tokens`, `completion_tokens`, `total_tokens`) from the upstream's DashScope
 * names (`input_tokens`, `output_tokens`), and `created` in seconds when the upstream
 * gave milliseconds. Everything else is kept as it is.
 * @return a malloc'd body (caller frees) and its length in @p out_len, or NULL when
 *         @p body is not a JSON object (relay it unchanged) or out of memory.
 */
char *qp_completion_openai(const char *body, size_t len, size_t *out_len);

/**
 * The same through cJSON for every body: what qp_completion_openai() does when the body is
 * not already in the form cJSON prints. Exposed for the tests, which compare the two.
 */
char *qp_completion_openai_general(const char *body, size_t len, size_t *out_len);

#endif
