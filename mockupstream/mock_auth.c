#include "mock_auth.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool
blank(char c)
{
    return c == ' ' || c == '\t';
}

const char *
mock_auth_bearer_token(const char *value, size_t *len)
{
    static const char scheme[] = "bearer";
    const char *p = value;
    if (!p)
        return NULL;
    p += strspn(p, " \t");
    for (size_t i = 0; i < sizeof scheme - 1; i++, p++) {
        if (tolower((unsigned char)*p) != scheme[i])
            return NULL;
    }
    if (!blank(*p))
        return NULL; /* "Bearerabc" names another scheme */
    p += strspn(p, " \t");
    size_t n = strcspn(p, " \t\r\n");
    const char *rest = p + n;
    rest += strspn(rest, " \t");
    if (n == 0 || *rest != '\0')
        return NULL;
    *len = n;
    return p;
}

enum mock_auth_result
mock_auth_credential(const char *authorization, const char *cookie_token, const char **tok,
                     size_t *len)
{
    if (authorization) {
        *tok = mock_auth_bearer_token(authorization, len);
        return *tok ? MOCK_AUTH_OK : MOCK_AUTH_BAD;
    }
    if (cookie_token && cookie_token[0]) {
        *tok = cookie_token;
        *len = strlen(cookie_token);
        return MOCK_AUTH_OK;
    }
    return MOCK_AUTH_MISSING;
}

char *
mock_auth_key(const char *authorization, const char *cookie_token)
{
    size_t len = 0;
    const char *tok = mock_auth_bearer_token(authorization, &len);
    if (tok)
        return strndup(tok, len);
    if (cookie_token && cookie_token[0])
        return strdup(cookie_token);
    return strdup(authorization ? authorization : "");
}
