/* The proxy's reading of a caller's credential: the token of `Authorization: Bearer T`.
 * The proxy's own logic: the conformance suite and the mock read credentials their own
 * way, so one misreading cannot hide itself on both sides. */
#ifndef QP_BEARER_H
#define QP_BEARER_H

#include <stdbool.h>
#include <stddef.h>

#include "mutant.h"

/**
 * Extracts the token of an `Authorization: Bearer <token>` value.
 * The scheme is case-insensitive; surrounding spaces are skipped.
 * @return pointer into @p header (borrowed) and its length in @p len,
 *         or NULL when the scheme is not Bearer or the token is empty.
 */
const char *qp_bearer_token(const char *header, size_t *len);

/** What the proxy asks of a caller's credential before anything goes upstream. */
struct qp_auth_policy {
    bool require_authorization; /**< a request without Authorization is refused (AUTH-1) */
    bool require_bearer_token;  /**< a non-Bearer scheme or an empty token is refused (AUTH-2) */
};

/** The one policy, kept by server.c (const but in mutant builds, whose qp_mutant_apply()
 * may edit it). */
extern QP_MUTANT_EDITABLE struct qp_auth_policy qp_auth_policy;

#endif
