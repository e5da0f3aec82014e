/**
 * @file conf_report.h
 * @brief Turns the outcomes of the tests into requirement results: the table, the
 *        summary line, JUnit XML, a JSON report and the exit code.
 *
 * A requirement FAILS when one of its tests failed, is SKIPPED when all of its tests were
 * skipped, PASSES otherwise; requirements with no test selected (--only) are left out.
 * The tests of a MUST requirement's SHOULD part are folded apart, into should_status.
 */
#ifndef CONF_REPORT_H
#define CONF_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "conf_harness.h"
#include "conf_requirements.h"

/** The outcome of one requirement. */
struct conf_req_result {
    enum conf_status status;         /**< CONF_NOT_RUN when no test of it ran */
    const struct conf_case *evidence;/**< the test whose reason the table shows */
    /** The SHOULD part of a MUST requirement (its CONF_TEST_SHOULD tests), folded the same
     *  way but apart: it never changes @p status. CONF_NOT_RUN when it has none. */
    enum conf_status should_status;
    const struct conf_case *should_evidence;
};

/** Requirement results in table order. */
struct conf_results {
    struct conf_req_result req[CONF_REQ_COUNT];
    unsigned passed, failed, skipped;
    unsigned should_parts_failed;    /**< MUST requirements whose SHOULD part failed */
    bool must_failed;
};

/** Folds the cases of @p groups into @p out. */
void conf_results_collect(const struct conf_group *const *groups, size_t ngroups,
                          struct conf_results *out);

/** Prints the requirement table and the final `conformance: ...` line. */
void conf_report_table(FILE *f, const struct conf_results *res);

/** Writes JUnit XML (one testsuite per group, one testcase per test). */
QK_WUR enum qk_err conf_report_junit(const char *path, const struct conf_group *const *groups,
                                     size_t ngroups);

/** Writes the JSON report (requirements with their tests, and the totals). */
QK_WUR enum qk_err conf_report_json(const char *path, const struct conf_group *const *groups,
                                    size_t ngroups, const struct conf_results *res,
                                    const char *proxy_url, const char *profile_name);

#endif
