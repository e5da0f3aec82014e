/**
 * @file conf_dialect.h
 * @brief The upstream API the mock speaks, as far as the suite's oracle needs it.
 *
 * The journal records every upstream request. In the v1 dialect each attempt (SPEC.md,
 * "Terms") is one request; another may need several (Qwen v2 creates a chat, then asks for
 * its completion), so the suite counts an attempt as the request to the model-list or
 * completion path named here. Such a dialect is one more row, not a change to every count.
 */
#ifndef CONF_DIALECT_H
#define CONF_DIALECT_H

#include <stdbool.h>

/** One upstream dialect. Static data; nothing to free. */
struct conf_dialect {
    const char *name;            /**< "qwen-v1" */
    const char *models_path;     /**< the request of a model-list attempt (GET) */
    const char *completion_path; /**< the request that completes a chat attempt (POST) */
};

/** The Qwen web API the mock serves today: GET /api/models, POST /api/chat/completions. */
extern const struct conf_dialect conf_dialect_qwen_v1;

/**
 * @return true when an upstream request to @p path (a journal entry's path; a query after
 *         '?' is ignored) is an attempt in @p dialect, on either route.
 */
bool conf_dialect_is_attempt(const struct conf_dialect *dialect, const char *path);

#endif
