/* How the mock, as the upstream, reads a request's credential. The mock's own reading
 * (the proxy has its own): the oracle and the code it judges share no credential logic,
 * so one misreading cannot hide itself on both sides. */
#ifndef MOCK_AUTH_H
#define MOCK_AUTH_H

#include <stddef.h>

/**
 * The token of an `Authorization` value of the form `Bearer <token>`: the scheme in any
 * case, blanks (spaces, tabs) around the token, and nothing else after it.
 * @return a pointer into @p value (borrowed) with its length in @p len, or NULL when
 *         @p value is NULL, another scheme, or the token is empty or two words.
 */
const char *mock_auth_bearer_token(const char *value, size_t *len);

#endif
