/*
 * The v2 upstream's chats (POST /api/v2/chats/new), as the mock remembers them: id, owner
 * key, model, whether an answer is streaming into it, and the response ids it produced.
 * One mutex guards the registry; every call is thread-safe. Also the mock's uuids.
 */
#ifndef MOCK_CHATS_H
#define MOCK_CHATS_H

#include <stdbool.h>
#include <stddef.h>

#include "qwenkit/common.h"

/** Room for a uuid ("8-4-4-4-12" hex digits) and its NUL. */
#define MOCK_UUID_LEN 37
/** Room for a model id the registry keeps (longer ones are never listed models). */
#define MOCK_CHAT_MODEL_LEN 64
/** Response ids a chat keeps (the latest). */
#define MOCK_CHAT_RESPONSES 16

/** Writes a fresh random version-4 uuid into @p out. Thread-safe. */
void mock_uuid(char out[MOCK_UUID_LEN]);

struct mock_chats;

/** New empty registry keeping at most @p cap chats (the oldest are forgotten first).
 *  Caller frees with mock_chats_free(). NULL on OOM. */
struct mock_chats *mock_chats_new(size_t cap);
void mock_chats_free(struct mock_chats *c);

/** Forgets every chat (POST /__mock/reset). */
void mock_chats_reset(struct mock_chats *c);

/** Creates a chat of @p key for @p model; its new id goes to @p id.
 *  @return QK_OK or QK_NOMEM. */
QK_WUR enum qk_err mock_chats_create(struct mock_chats *c, const char *key, const char *model,
                                     char id[MOCK_UUID_LEN]);

/** What mock_chats_begin() found. */
enum mock_chat_begin {
    MOCK_CHAT_STARTED = 0, /**< the chat is now answering */
    MOCK_CHAT_NOT_FOUND,   /**< no such chat, or another key's */
    MOCK_CHAT_BUSY,        /**< an answer is already streaming into it */
};

/** A chat as the registry holds it (a copy). */
struct mock_chat_info {
    char model[MOCK_CHAT_MODEL_LEN];
    bool answering;
    size_t n_responses; /**< response ids produced so far (all, not only those kept) */
    char last_response[MOCK_UUID_LEN];
};

/** @return true and a copy of chat @p id in @p out when it exists and is @p key's. */
bool mock_chats_find(struct mock_chats *c, const char *id, const char *key,
                     struct mock_chat_info *out);

/**
 * Starts an answer in chat @p id of @p key, unless one is streaming: marks it answering
 * and records the @p n response ids of @p response_ids. mock_chats_end() ends it.
 */
enum mock_chat_begin mock_chats_begin(struct mock_chats *c, const char *id, const char *key,
                                      const char *const *response_ids, size_t n);

/** Ends the answer begun in chat @p id (a forgotten chat is ignored). */
void mock_chats_end(struct mock_chats *c, const char *id);

/** Number of chats held (for tests of the bound). */
size_t mock_chats_count(struct mock_chats *c);

#endif
