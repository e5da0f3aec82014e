#include "bearer.h"

#include <strings.h>

const char *
qp_bearer_token(const char *header, size_t *len)
{
    if (!header)
        return NULL;
    while (*header == ' ' || *header == '\t')
        header++;
    if (strncasecmp(header, "bearer", 6) != 0 || (header[6] != ' ' && header[6] != '\t'))
        return NULL;
    const char *tok = header + 6;
    while (*tok == ' ' || *tok == '\t')
        tok++;
    size_t n = 0;
    while (tok[n] && tok[n] != ' ' && tok[n] != '\t' && tok[n] != '\r' && tok[n] != '\n')
        n++;
    /* A second word after the token means the value is malformed. */
    const char *rest = tok + n;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    if (n == 0 || *rest != '\0')
        return NULL;
    *len = n;
    return tok;
}
