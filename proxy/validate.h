/**
 * @file validate.h
 * @brief Validation of chat-completion request bodies before any upstream call (ERR-1).
 */
#ifndef QP_VALIDATE_H
#define QP_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

/** Why a body was refused; the strings are static. */
struct qp_invalid {
    const char *param;   /**< the offending field ("model", "messages"), NULL for the body */
    const char *message; /**< an English sentence for the error body */
    const char *code;    /**< OpenAI-style code ("invalid_json", "missing_required_parameter") */
};

/**
 * Checks a chat-completion body: a JSON object with a non-empty string `model`, a non-empty
 * array `messages` whose entries are objects, a boolean `stream` when present, and
 * `stream_options` an object whose `include_usage` is a boolean, when present.
 * Borrows @p body (need not be NUL-terminated).
 * @param[out] stream set to the value of `stream` (false when absent).
 * @return true when valid; otherwise false and @p why filled.
 */
bool qp_validate_chat(const char *body, size_t len, bool *stream, struct qp_invalid *why);

#endif
