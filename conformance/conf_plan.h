/**
 * @file conf_plan.h
 * @brief Which tests a run executes, and in which order: --only, --exclude, --shuffle.
 *
 * A pattern list is comma-separated; each pattern is a requirement ID or a test name, and
 * may use the globs * ? [..] ("RETRY-1", "SSE-*", "AUTH_3_*"). IDs match case-insensitively.
 * A shuffled order depends only on the seed, so a run can be repeated exactly.
 */
#ifndef CONF_PLAN_H
#define CONF_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf_harness.h"

/** The tests of one run, in order. Owns @p tests (the entries point at the groups' cases). */
struct conf_plan {
    struct CMUnitTest *tests;
    size_t count;
};

/** @return true when one of the comma-separated @p patterns names @p kase or its requirement. */
bool conf_plan_matches(const char *patterns, const struct conf_case *kase);

/**
 * Selects the tests of @p groups that --only @p only (NULL: all) names and --exclude
 * @p exclude (NULL: none) does not, in registration order, or shuffled from @p seed.
 * @param[out] err names a pattern that matches no test or requirement.
 * @return QK_OK, QK_INVALID (a pattern names nothing, or nothing is left), QK_NOMEM.
 */
QK_WUR enum qk_err conf_plan_build(const struct conf_group *const *groups, size_t ngroups,
                                   const char *only, const char *exclude, bool shuffle,
                                   uint64_t seed, struct conf_plan *out, char *err, size_t errlen);

/** Frees what conf_plan_build() allocated. NULL-safe. */
void conf_plan_free(struct conf_plan *plan);

#endif
