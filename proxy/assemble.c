#include "assemble.h"

#include <stdio.h>

enum qp_assemble_status
qp_assemble_completion(const struct qp_assemble_opts *o, const char *body, size_t len, char **out,
                       size_t *out_len, char *msg, size_t msg_cap, bool *auth)
{
    (void)o;
    (void)body;
    (void)len;
    *out = NULL;
    *out_len = 0;
    if (auth)
        *auth = false;
    snprintf(msg, msg_cap, "not assembled yet");
    return QP_ASSEMBLE_BAD;
}
