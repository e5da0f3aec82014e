/* The registry of upstream dialects, by their `--upstream-dialect` name. */
#include "dialect.h"

#include <string.h>

static const struct qp_dialect *const dialects[] = {&qp_dialect_v1, &qp_dialect_v2};

const struct qp_dialect *
qp_dialect_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof(dialects) / sizeof(dialects[0]); i++) {
        if (strcmp(dialects[i]->name, name) == 0)
            return dialects[i];
    }
    return NULL;
}

const char *
qp_dialect_names(void)
{
    return "v1|v2"; /* the rows above; test_dialect checks that they agree */
}
