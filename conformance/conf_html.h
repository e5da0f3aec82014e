/**
 * @file conf_html.h
 * @brief HTML views of JSON reports: one run, and a matrix of several.
 *
 * Both render the JSON report (conf_report_tree(), or a file --json wrote), so that a saved
 * report can be rendered later and a matrix built from runs of different machines. The
 * pages are self-contained (inline CSS, no script, no external resource): evidence folds
 * under each test with <details>. Every string is cleaned (conf_text_clean) and escaped,
 * so a report of a hostile target, or a hand-edited one, cannot inject markup.
 */
#ifndef CONF_HTML_H
#define CONF_HTML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "qwenkit/common.h"

/** Writes the page of one run's @p report to @p f. @return QK_OK, or QK_IO. */
QK_WUR enum qk_err conf_html_report(FILE *f, const cJSON *report);

/**
 * Writes a matrix of @p n reports to @p f: one column per report (headed by its profile
 * name, then @p labels[i] when given, a label per column or NULL), one row per
 * requirement any of them judged, in SPEC order, each cell its verdict with the reason as
 * a tooltip; a requirement a report did not judge shows as "n/a" (other dialect) or "-".
 * @return QK_OK, or QK_IO.
 */
QK_WUR enum qk_err conf_html_matrix(FILE *f, const cJSON *const *reports, const char *const *labels,
                                    size_t n);

/** Writes the page of @p report to the file @p path. @return QK_OK, or QK_IO. */
QK_WUR enum qk_err conf_html_write_report(const char *path, const cJSON *report);

/**
 * Renders saved JSON reports (files --json wrote) into @p html_path: with @p matrix a
 * matrix of all @p n of them (each column labelled with its file name), otherwise the page
 * of the one report (@p n == 1). @return QK_OK; QK_IO or QK_INVALID with @p err naming the
 * file that could not be read, is not JSON, or is not a report.
 */
QK_WUR enum qk_err conf_html_render_files(const char *html_path, const char *const *json_paths,
                                          size_t n, bool matrix, char *err, size_t errlen);

#endif
