/**
 * @file key.h
 * @brief Credential keys: a keyed 128-bit hash of a full `Authorization` value.
 *
 * The model-list cache is keyed by credential (AUTH-5). It stores this key, never the
 * token, and the hash is keyed by a per-process random secret so that nobody can craft
 * a second credential that collides with someone else's entry.
 */
#ifndef QP_KEY_H
#define QP_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** A credential key; compare with qp_key_equal(). */
struct qp_key {
    uint64_t hi;
    uint64_t lo;
};

/** Sets the process secret from the system random source. Call once before threads. */
void qp_key_seed_random(void);

/** Sets the process secret explicitly (unit tests). */
void qp_key_seed(const uint8_t secret[32]);

/** @return the key of @p len bytes at @p data (any bytes, NUL included). */
struct qp_key qp_key_of(const void *data, size_t len);

/** @return true when both keys are equal. */
bool qp_key_equal(struct qp_key a, struct qp_key b);

/** SipHash-2-4 of @p data under the 16-byte key @p k (exposed for its test vector). */
uint64_t qp_siphash24(const uint8_t k[16], const void *data, size_t len);

#endif
