/**
 * @file conf_report.h
 * @brief Turns the outcomes of the tests into requirement results: the table, the
 *        summary line, JUnit XML, a JSON report and the exit code.
 *
 * A requirement FAILS when one of its tests failed; otherwise it is CANNOT-JUDGE or
 * UNCHECKED when one of its tests was, PASSES when one passed, and is SKIPPED when all were
 * skipped. Requirements with no test selected (--only) are left out.
 * The tests of a MUST requirement's SHOULD part are folded apart, into should_status.
 */
#ifndef CONF_REPORT_H
#define CONF_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "conf_harness.h"
#include "conf_requirements.h"

/** The outcome of one requirement. */
struct conf_req_result {
    enum conf_status status;          /**< CONF_NOT_RUN when no test of it ran */
    const struct conf_case *evidence; /**< the test whose reason the table shows */
    /** The SHOULD part of a MUST requirement (its CONF_TEST_SHOULD tests), folded the same
     *  way but apart: it never changes @p status. CONF_NOT_RUN when it has none. */
    enum conf_status should_status;
    const struct conf_case *should_evidence;
    /** Every test of it that ran was skipped as the other dialect's (conf_v1_only(),
     *  conf_v2_only()): it does not apply to this upstream, so a MUST leaves the verdict
     *  open no more than an unselected one. */
    bool other_dialect;
};

/** Requirement results in table order. */
struct conf_results {
    struct conf_req_result req[CONF_REQ_COUNT];
    unsigned passed, failed, skipped, unchecked, cannot_judge;
    unsigned should_parts_failed;              /**< MUST requirements whose SHOULD part failed */
    unsigned must_failed;                      /**< MUST requirements that failed */
    unsigned must_open;                        /**< MUST requirements neither passed nor failed */
    const struct conf_down_event *down_events; /**< when the target stopped answering */
    size_t down_count;
};

/** What a run concludes (SPEC.md, "Verdicts"). */
enum conf_verdict {
    CONF_VERDICT_CONFORMS,        /**< every MUST requirement run passed */
    CONF_VERDICT_NONCONFORMING,   /**< a MUST requirement failed */
    CONF_VERDICT_NOT_ESTABLISHED, /**< none failed, but one is unchecked, unjudged or skipped */
};

/** @return the run's verdict. */
enum conf_verdict conf_results_verdict(const struct conf_results *res);

/** Prints the verdict in words ("verdict: conforms", ...). */
void conf_report_verdict(FILE *f, const struct conf_results *res);

/** Folds the cases of @p groups into @p out. */
void conf_results_collect(const struct conf_group *const *groups, size_t ngroups,
                          struct conf_results *out);

/** Prints the requirement table and the final `conformance: ...` line. */
void conf_report_table(FILE *f, const struct conf_results *res);

/** What a report says about the run besides the results. All borrowed. */
struct conf_run_info {
    const char *proxy_url;
    const struct conf_profile *profile;
    bool shuffled;
    uint64_t seed;
    const struct conf_facts *facts;
};

/**
 * Writes JUnit XML: one testsuite per group with the run's <properties>, one testcase per
 * test; a failure or skip carries its evidence as text. Valid XML whatever the target sent.
 */
QK_WUR enum qk_err conf_report_junit(const char *path, const struct conf_group *const *groups,
                                     size_t ngroups, const struct conf_results *res,
                                     const struct conf_run_info *info);

/**
 * @return the JSON report as a tree: the run, the requirements with their tests, the
 * totals (what --json writes and the HTML report renders); NULL without memory. The
 * caller owns it (cJSON_Delete).
 */
cJSON *conf_report_tree(const struct conf_group *const *groups, size_t ngroups,
                        const struct conf_results *res, const struct conf_run_info *info);

/** Writes the JSON report: the run, the requirements with their tests, the totals. */
QK_WUR enum qk_err conf_report_json(const char *path, const struct conf_group *const *groups,
                                    size_t ngroups, const struct conf_results *res,
                                    const struct conf_run_info *info);

#endif
