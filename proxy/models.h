/**
 * @file models.h
 * @brief The model list: checking the upstream's answer and the OpenAI shape (HTTP-4).
 */
#ifndef QP_MODELS_H
#define QP_MODELS_H

#include <stdbool.h>
#include <stddef.h>

/** @return true when @p body is a JSON object with a `data` array (the upstream shape). */
bool qp_models_usable(const char *body, size_t len);

/**
 * Unwraps a v2 model list (`{"success":true,"request_id":...,"data":{"data":[...]}}`; the
 * list may also be `data` itself or `data.models`) into the v1 shape `{"data":[...]}` that
 * callers of /api/models get and that the cache stores.
 * @return a malloc'd body (caller frees), or NULL when @p body holds no such list (or
 * `success` is false) or out of memory.
 */
char *qp_models_unwrap(const char *body, size_t len, size_t *out_len);

/**
 * Converts the upstream list to OpenAI's `{"object":"list","data":[{"id","object":"model",
 * "created","owned_by"}...]}`, keeping the other fields of each model. Entries without a
 * string `id` are dropped.
 * Costly on a large list (parse, copy, print): the cache calls it once per entry.
 * @return a malloc'd body (caller frees), or NULL when @p body is unusable or out of memory.
 */
char *qp_models_openai(const char *body, size_t len, size_t *out_len);

/**
 * Picks the model @p id out of an OpenAI list (qp_models_openai()'s shape), for
 * `GET /v1/models/{id}` (the SDKs' models.retrieve). @return the model object as a
 * malloc'd body (caller frees), or NULL when the list has no such id (or out of memory:
 * @p nomem set).
 */
char *qp_models_pick(const char *list, size_t len, const char *id, size_t *out_len, bool *nomem);

/** @return how many times qp_models_openai() ran in this process (tests count them).
 *  Thread-safe. */
unsigned long qp_models_openai_conversions(void);

#endif
