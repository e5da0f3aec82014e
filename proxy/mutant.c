#include "mutant.h"

#include <string.h>

#ifdef QK_MUTANTS
enum qp_mutant qp_mutant_active = QP_MUT_NONE;

static const char *const mutant_names[QP_MUT_COUNT] = {[QP_MUT_NONE] = "none",
#define QP_MUTANT_NAME(name, req, text) [QP_MUT_##name] = #name,
                                                       QP_MUTANT_MAP(QP_MUTANT_NAME)
#undef QP_MUTANT_NAME
};

bool
qp_mutant_from_name(const char *name, enum qp_mutant *out)
{
    for (int i = 0; i < QP_MUT_COUNT; i++) {
        if (strcmp(mutant_names[i], name) == 0) {
            *out = (enum qp_mutant)i;
            return true;
        }
    }
    return false;
}

void
qp_mutant_set(enum qp_mutant m)
{
    qp_mutant_active = m;
}
#else
bool
qp_mutant_from_name(const char *name, enum qp_mutant *out)
{
    (void)name;
    (void)out;
    return false;
}

void
qp_mutant_set(enum qp_mutant m)
{
    (void)m;
}
#endif
