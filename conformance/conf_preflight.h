/**
 * @file conf_preflight.h
 * @brief What the suite establishes about the target before any test runs, so that no
 *        verdict depends on the order of the tests (SPEC.md, "Preflight").
 *
 * On both routes: does the caller's token reach the upstream verbatim (the mock scripts and
 * journals per token, so every per-token test depends on it)? On the model-list route: does
 * a fresh credential get a list without any upstream request (one cache shared by every
 * credential)? And is the profile's api_prefix the one the proxy serves?
 */
#ifndef CONF_PREFLIGHT_H
#define CONF_PREFLIGHT_H

#include <stdio.h>

#include "conf_harness.h"

/**
 * Runs the preflight against @p env and fills @p facts.
 * @param[out] err a setup error the user must fix first (e.g. "set api_prefix").
 * @return QK_OK, or QK_INVALID with @p err when the suite cannot run as configured.
 */
QK_WUR enum qk_err conf_preflight_run(const struct conf_env *env, struct conf_facts *facts,
                                      char *err, size_t errlen);

/** Prints the findings, one line each ("preflight: ..."). */
void conf_preflight_print(FILE *f, const struct conf_facts *facts);

#endif
