/**
 * @file conf_groups.h
 * @brief The test groups, one per area of SPEC.md, in the order they run.
 *
 * Each conf_<area>.c ends with its run function (cmocka_run_group_tests_name) and its
 * group object. Adding an area is one row here and one file.
 */
#ifndef CONF_GROUPS_H
#define CONF_GROUPS_H

#include "conf_harness.h"

/* XX(area): conf_group_<area> and conf_run_<area>() live in conf_<area>.c. */
#define CONF_GROUP_MAP(XX)                                                                 \
    XX(auth)                                                                               \
    XX(cache)                                                                              \
    XX(retry)                                                                              \
    XX(errors)                                                                             \
    XX(http)                                                                               \
    XX(stream)                                                                             \
    XX(robust)

#define CONF_GROUP_DECLARE(area)                                                           \
    extern const struct conf_group conf_group_##area;                                      \
    int conf_run_##area(void);
CONF_GROUP_MAP(CONF_GROUP_DECLARE)
#undef CONF_GROUP_DECLARE

#endif
