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

/** How a request's credential reads. */
enum mock_auth_result {
    MOCK_AUTH_OK = 0,  /**< a token: the Bearer one, or the cookie's */
    MOCK_AUTH_MISSING, /**< no Authorization and no non-empty `token` cookie */
    MOCK_AUTH_BAD,     /**< an Authorization that is not `Bearer <token>` */
};

/**
 * The credential of a request: `Authorization: Bearer <t>` (@p authorization, NULL when the
 * header is absent) or, only when there is no Authorization header, the value of its cookie
 * `token` (@p cookie_token, as the HTTP library parsed it; NULL when none), as the 2026 web
 * app sends it. On MOCK_AUTH_OK *@p tok points into one of them with its length in *@p len.
 */
enum mock_auth_result mock_auth_credential(const char *authorization, const char *cookie_token,
                                           const char **tok, size_t *len);

/**
 * The key a request's journal entry, steps and revocation are filed under: its bearer
 * token, else its `token` cookie (non-empty), else the raw Authorization value, else "".
 * A new string (caller frees), NULL on OOM.
 */
char *mock_auth_key(const char *authorization, const char *cookie_token);

#endif
