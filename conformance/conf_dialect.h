/**
 * @file conf_dialect.h
 * @brief The upstream API the mock speaks, as far as the suite's oracle needs it.
 *
 * The journal records every upstream request. In the v1 dialect each attempt (SPEC.md,
 * "Terms") is one request; in v2 an attempt creates a chat, then asks for its completion,
 * so the suite counts an attempt as the request to the model-list or completion path named
 * here. A dialect is one more row, not a change to every count.
 */
#ifndef CONF_DIALECT_H
#define CONF_DIALECT_H

#include <stdbool.h>

/** One upstream dialect. Static data; nothing to free. */
struct conf_dialect {
    const char *name;            /**< "qwen-v1", "qwen-v2": the profile's upstream_dialect */
    const char *models_path;     /**< the request of a model-list attempt (GET) */
    const char *completion_path; /**< the request that completes a chat attempt (POST) */
    const char *chat_new_path;   /**< the request that creates a chat first (POST); NULL when
                                      the dialect has none (v1) */
    /** The proxy rewrites the caller's body into the upstream's own shape (v2: one message
     *  of the caller's texts, the upstream's fields), so bodies are compared by what the
     *  dialect keeps: the model and the caller's texts. */
    bool transforms_body;
};

/** The Qwen web API v1: GET /api/models, POST /api/chat/completions. */
extern const struct conf_dialect conf_dialect_qwen_v1;

/** The Qwen web API v2: GET /api/v2/models/, POST /api/v2/chats/new, then
 *  POST /api/v2/chat/completions?chat_id=ID (a streamed answer of its own frames). */
extern const struct conf_dialect conf_dialect_qwen_v2;

/** @return the dialect named @p name ("qwen-v1", "qwen-v2"), or NULL. */
const struct conf_dialect *conf_dialect_find(const char *name);

/** @return the dialects' names, comma-separated (static), for error messages. */
const char *conf_dialect_names(void);

/**
 * @return true when an upstream request to @p path (a journal entry's path; a query after
 *         '?' is ignored) is an attempt in @p dialect, on either route.
 */
bool conf_dialect_is_attempt(const struct conf_dialect *dialect, const char *path);

/** @return true when @p path is @p dialect's chat-creation request (never in v1). */
bool conf_dialect_is_chat_new(const struct conf_dialect *dialect, const char *path);

/** @return true when @p path is @p dialect's completion request. */
bool conf_dialect_is_completion(const struct conf_dialect *dialect, const char *path);

/** @return true for the v2 dialect (and any later one that shares its wire shape). */
bool conf_dialect_is_v2(const struct conf_dialect *dialect);

#endif
