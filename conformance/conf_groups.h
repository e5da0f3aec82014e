/**
 * @file conf_groups.h
 * @brief The test groups, one per area of SPEC.md, in the order they run.
 *
 * Each conf_<area>.c ends with its test array and CONF_GROUP(); conf_plan.c chooses and
 * orders the tests of all groups for a run. Adding an area is one row here and one file.
 */
#ifndef CONF_GROUPS_H
#define CONF_GROUPS_H

#include "conf_harness.h"

/* XX(area): conf_group_<area> lives in conf_<area>.c. */
#define CONF_GROUP_MAP(XX)                                                                         \
    XX(auth)                                                                                       \
    XX(cache)                                                                                      \
    XX(retry)                                                                                      \
    XX(errors)                                                                                     \
    XX(http)                                                                                       \
    XX(stream)                                                                                     \
    XX(robust)                                                                                     \
    XX(conn)                                                                                       \
    XX(input)                                                                                      \
    XX(v2)

#define CONF_GROUP_DECLARE(area) extern const struct conf_group conf_group_##area;
CONF_GROUP_MAP(CONF_GROUP_DECLARE)
#undef CONF_GROUP_DECLARE

/** Defines conf_group_<area> (declared above) over @p tests, a static array of CONF_TEST()
 *  entries, named after the area. */
#define CONF_GROUP(area, tests)                                                                    \
    const struct conf_group conf_group_##area = {#area, (tests), sizeof(tests) / sizeof((tests)[0])}

#endif
