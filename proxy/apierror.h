/**
 * @file apierror.h
 * @brief OpenAI-shaped error bodies (ERR-3) and the upstream's error messages (ERR-2).
 */
#ifndef QP_APIERROR_H
#define QP_APIERROR_H

#include <stddef.h>

/**
 * Builds `{"error":{"message","type","param","code"}}`.
 * @param param, code may be NULL (JSON null).
 * @return a malloc'd NUL-terminated body (caller frees), NULL when out of memory.
 */
char *qp_error_json(const char *message, const char *type, const char *param, const char *code);

/** @return the OpenAI error type for an HTTP status ("invalid_request_error", ...). */
const char *qp_error_type(unsigned status);

/**
 * Extracts a human message from an upstream error body: FastAPI `{"detail":"..."}`
 * (or a detail list), OpenAI `{"error":{"message"}}`, `{"error":"..."}`, `{"message"}`.
 * Falls back to the raw text (cut, control bytes replaced) when it is not JSON.
 * @return a malloc'd string (caller frees), NULL when out of memory.
 */
char *qp_upstream_message(const char *body, size_t len, long status);

#endif
