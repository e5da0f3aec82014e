#include "mock_auth.h"

#include <ctype.h>
#include <stdbool.h>
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
