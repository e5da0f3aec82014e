/* The proxy's reading of a caller's credential: the token of `Authorization: Bearer T`.
 * The proxy's own logic: the conformance suite and the mock read credentials their own
 * way, so one misreading cannot hide itself on both sides. */
#ifndef QP_BEARER_H
#define QP_BEARER_H

#include <stddef.h>

/**
 * Extracts the token of an `Authorization: Bearer <token>` value.
 * The scheme is case-insensitive; surrounding spaces are skipped.
 * @return pointer into @p header (borrowed) and its length in @p len,
 *         or NULL when the scheme is not Bearer or the token is empty.
 */
const char *qp_bearer_token(const char *header, size_t *len);

#endif
