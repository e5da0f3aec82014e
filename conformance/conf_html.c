/* HTML views of JSON reports (conf_html.h). */
#include "conf_html.h"

#include <stdlib.h>
#include <string.h>

#include "qwenkit/buf.h"

#include "conf_requirements.h"
#include "conf_text.h"

/* The page's look: verdict colours that read without colour too (the word is always
 * there), a table that stays readable when printed. */
static const char STYLE[] =
    "body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;"
    "color:#1b1f24}"
    "h1{font-size:1.5rem;margin:0 0 .3rem}h2{font-size:1.15rem;margin:1.6rem 0 .4rem}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}"
    "th{background:#f6f8fa}td:first-child,th:first-child{white-space:nowrap}code,pre{font:13px/1.4 "
    "ui-monospace,monospace}"
    "pre{white-space:pre-wrap;word-break:break-all;background:#f6f8fa;padding:.5rem;margin:.3rem 0}"
    ".r{font-weight:600;white-space:nowrap;text-align:center}"
    ".PASS{background:#dafbe1}.FAIL{background:#ffd7d5}.SKIP{background:#eaeef2}"
    ".UNCHECKED{background:#fff1c2}.CANNOT-JUDGE{background:#ffe2b8}.na{color:#6e7781}"
    ".verdict{display:inline-block;padding:.2rem .6rem;border-radius:.3rem;font-weight:600}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem}dt{font-weight:600}"
    "details{margin:.2rem 0}summary{cursor:pointer}.muted{color:#57606a}";

/* Writes @p s cleaned (conf_text.h) and escaped for HTML text and attribute values. */
static void
put_text(FILE *f, const char *s)
{
    conf_text_put_markup(f, s, false);
}

static const char *
str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double
num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* A verdict as a CSS class: one of the known words, anything else unstyled. */
static const char *
result_class(const char *result)
{
    static const char *const known[] = {"PASS", "FAIL", "SKIP", "UNCHECKED", "CANNOT-JUDGE"};
    for (size_t i = 0; result && i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(result, known[i]) == 0)
            return known[i];
    }
    return "other";
}

static void
page_start(FILE *f, const char *title)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>",
          f);
    put_text(f, title);
    fprintf(f, "</title><style>%s</style></head><body>\n", STYLE);
}

static enum qk_err
page_end(FILE *f)
{
    fputs("</body></html>\n", f);
    return ferror(f) ? QK_IO : QK_OK;
}

/* The verdict line: "conforms" green, "does not conform" red, otherwise amber. */
static void
verdict_badge(FILE *f, const cJSON *report)
{
    const cJSON *summary = cJSON_GetObjectItemCaseSensitive(report, "summary");
    const char *verdict = str(summary, "verdict");
    const char *cls = !verdict                           ? "other"
                      : strcmp(verdict, "conforms") == 0 ? "PASS"
                      : cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(summary, "must_failed"))
                          ? "FAIL"
                          : "UNCHECKED";
    fprintf(f, "<span class=\"verdict %s\">", cls);
    put_text(f, verdict ? verdict : "no verdict");
    fputs("</span>", f);
}

static void
run_facts(FILE *f, const cJSON *report)
{
    const cJSON *order = cJSON_GetObjectItemCaseSensitive(report, "order");
    const cJSON *summary = cJSON_GetObjectItemCaseSensitive(report, "summary");
    fputs("<dl>", f);
    static const char *const facts[][2] = {{"proxy", "proxy"},
                                           {"profile", "profile"},
                                           {"SPEC", "spec_version"},
                                           {"qwen-conformance", "tool_version"}};
    for (size_t i = 0; i < sizeof(facts) / sizeof(facts[0]); i++) {
        fprintf(f, "<dt>%s</dt><dd>", facts[i][0]);
        put_text(f, str(report, facts[i][1]));
        fputs("</dd>", f);
    }
    fputs("<dt>order</dt><dd>", f);
    put_text(f, str(order, "kind"));
    if (cJSON_GetObjectItemCaseSensitive(order, "seed")) {
        fprintf(f, ", seed %.0f", num(order, "seed"));
    }
    fprintf(f,
            "</dd><dt>results</dt><dd>%.0f passed, %.0f failed, %.0f skipped, %.0f unchecked, "
            "%.0f cannot judge; %.0f SHOULD parts failed</dd></dl>\n",
            num(summary, "passed"), num(summary, "failed"), num(summary, "skipped"),
            num(summary, "unchecked"), num(summary, "cannot_judge"),
            num(summary, "should_parts_failed"));
}

/* One test: its name and verdict; reason and evidence folded under it. */
static void
test_item(FILE *f, const cJSON *test)
{
    const char *result = str(test, "result");
    const char *reason = str(test, "reason");
    const char *evidence = str(test, "evidence");
    bool open = result && strcmp(result, "PASS") != 0 && strcmp(result, "SKIP") != 0;
    fprintf(f, "<details%s><summary><span class=\"r %s\">", open ? " open" : "",
            result_class(result));
    put_text(f, result);
    fputs("</span> <code>", f);
    put_text(f, str(test, "name"));
    fprintf(f, "</code> <span class=\"muted\">%.0f ms</span></summary>", num(test, "duration_ms"));
    if (reason) {
        fputs("<p>", f);
        put_text(f, reason);
        fputs("</p>", f);
    }
    if (evidence) {
        fputs("<pre>", f);
        put_text(f, evidence);
        fputs("</pre>", f);
    }
    fputs("</details>\n", f);
}

static void
requirement_row(FILE *f, const cJSON *req)
{
    const char *result = str(req, "result");
    const cJSON *part = cJSON_GetObjectItemCaseSensitive(req, "should_part");
    fputs("<tr id=\"", f);
    put_text(f, str(req, "id"));
    fputs("\"><td><code>", f);
    put_text(f, str(req, "id"));
    fputs("</code></td><td>", f);
    put_text(f, str(req, "level"));
    fprintf(f, "</td><td class=\"r %s\">", result_class(result));
    put_text(f, result);
    if (part && str(part, "result") && strcmp(str(part, "result"), "FAIL") == 0)
        fputs("<br><span class=\"muted\">SHOULD part not met</span>", f);
    fputs("</td><td>", f);
    put_text(f, str(req, "summary"));
    if (str(req, "reason")) {
        fputs("<br><span class=\"muted\">", f);
        put_text(f, str(req, "reason"));
        fputs("</span>", f);
    }
    const cJSON *tests = cJSON_GetObjectItemCaseSensitive(req, "tests");
    fprintf(f, "<details%s><summary>%d test%s</summary>\n",
            result && strcmp(result, "PASS") != 0 && strcmp(result, "SKIP") != 0 ? " open" : "",
            cJSON_GetArraySize(tests), cJSON_GetArraySize(tests) == 1 ? "" : "s");
    const cJSON *test;
    cJSON_ArrayForEach(test, tests) test_item(f, test);
    fputs("</details></td></tr>\n", f);
}

enum qk_err
conf_html_report(FILE *f, const cJSON *report)
{
    char title[160];
    snprintf(title, sizeof(title), "qwen-conformance: %s",
             str(report, "profile") ? str(report, "profile") : "report");
    page_start(f, title);
    fputs("<h1>", f);
    put_text(f, title);
    fputs("</h1>\n<p>", f);
    verdict_badge(f, report);
    fputs("</p>\n", f);
    run_facts(f, report);
    const cJSON *down = cJSON_GetObjectItemCaseSensitive(report, "target_down");
    if (cJSON_GetArraySize(down) > 0) {
        fputs("<h2>The target stopped answering</h2><ul>", f);
        const cJSON *ev;
        cJSON_ArrayForEach(ev, down)
        {
            fputs("<li><code>", f);
            put_text(f, str(ev, "test"));
            fputs("</code>, after ", f);
            put_text(f, str(ev, "after"));
            fputs(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ev, "restarted"))
                      ? " (restarted)</li>"
                      : "</li>",
                  f);
        }
        fputs("</ul>\n", f);
    }
    fputs("<h2>Requirements</h2>\n<table><thead><tr><th>ID</th><th>level</th><th>verdict</th>"
          "<th>requirement, reason and tests</th></tr></thead><tbody>\n",
          f);
    const cJSON *req;
    cJSON_ArrayForEach(req, cJSON_GetObjectItemCaseSensitive(report, "requirements"))
        requirement_row(f, req);
    fputs("</tbody></table>\n", f);
    const cJSON *na = cJSON_GetObjectItemCaseSensitive(report, "not_applicable");
    if (cJSON_GetArraySize(na) > 0) {
        fputs("<h2>Not applicable</h2><ul>", f);
        cJSON_ArrayForEach(req, na)
        {
            fputs("<li><code>", f);
            put_text(f, str(req, "id"));
            fputs("</code>: ", f);
            put_text(f, str(req, "reason"));
            fputs("</li>", f);
        }
        fputs("</ul>\n", f);
    }
    return page_end(f);
}

/* @return the requirement @p id in @p report's "requirements", or NULL. */
static const cJSON *
find_requirement(const cJSON *report, const char *key, const char *id)
{
    const cJSON *req;
    cJSON_ArrayForEach(req, cJSON_GetObjectItemCaseSensitive(report, key))
    {
        const char *rid = str(req, "id");
        if (rid && strcmp(rid, id) == 0)
            return req;
    }
    return NULL;
}

static void
matrix_cell(FILE *f, const cJSON *report, const char *id)
{
    const cJSON *req = find_requirement(report, "requirements", id);
    if (!req) {
        const cJSON *na = find_requirement(report, "not_applicable", id);
        fputs(na ? "<td class=\"r na\" title=\"" : "<td class=\"r na\" title=\"not run\">-</td>",
              f);
        if (na) {
            put_text(f, str(na, "reason"));
            fputs("\">n/a</td>", f);
        }
        return;
    }
    const char *result = str(req, "result");
    fprintf(f, "<td class=\"r %s\" title=\"", result_class(result));
    put_text(f, str(req, "reason"));
    fputs("\">", f);
    put_text(f, result);
    const cJSON *part = cJSON_GetObjectItemCaseSensitive(req, "should_part");
    if (part && str(part, "result") && strcmp(str(part, "result"), "FAIL") == 0)
        fputs("<sup title=\"SHOULD part not met\">*</sup>", f);
    fputs("</td>", f);
}

enum qk_err
conf_html_matrix(FILE *f, const cJSON *const *reports, const char *const *labels, size_t n)
{
    page_start(f, "qwen-conformance: implementations side by side");
    fprintf(f, "<h1>qwen-conformance: %zu implementation%s side by side</h1>\n", n,
            n == 1 ? "" : "s");
    fputs("<p class=\"muted\">One column per report, one row per requirement in SPEC order; "
          "hover a cell for its reason. n/a: the requirement belongs to the other upstream "
          "dialect; -: not run; *: the SHOULD part of a MUST requirement not met.</p>\n"
          "<table><thead><tr><th>requirement</th>",
          f);
    for (size_t i = 0; i < n; i++) {
        fputs("<th>", f);
        put_text(f, str(reports[i], "profile") ? str(reports[i], "profile") : "?");
        if (labels && labels[i]) {
            fputs("<br><span class=\"muted\">", f);
            put_text(f, labels[i]);
            fputs("</span>", f);
        }
        fputs("<br>", f);
        verdict_badge(f, reports[i]);
        fputs("</th>", f);
    }
    fputs("</tr></thead><tbody>\n", f);
    for (int r = 0; r < CONF_REQ_COUNT; r++) {
        const struct conf_requirement *req = conf_requirement((enum conf_req)r);
        bool judged = false;
        for (size_t i = 0; i < n && !judged; i++)
            judged = find_requirement(reports[i], "requirements", req->id) != NULL;
        if (!judged)
            continue;
        fputs("<tr><th title=\"", f);
        put_text(f, req->summary);
        fprintf(f, "\"><code>%s</code> <span class=\"muted\">%s</span></th>", req->id,
                conf_level_name(req->level));
        for (size_t i = 0; i < n; i++)
            matrix_cell(f, reports[i], req->id);
        fputs("</tr>\n", f);
    }
    fputs("</tbody></table>\n", f);
    return page_end(f);
}

enum qk_err
conf_html_write_report(const char *path, const cJSON *report)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return QK_IO;
    enum qk_err rc = conf_html_report(f, report);
    if (fclose(f) != 0)
        rc = QK_IO;
    return rc;
}

/* Reads @p path as a JSON report. @return the tree (caller deletes) or NULL with @p err. */
static cJSON *
load_report(const char *path, char *err, size_t errlen)
{
    struct qk_buf text;
    qk_buf_init(&text, (size_t)256 << 20);
    cJSON *report = NULL;
    if (qk_buf_append_file(&text, path) != QK_OK) {
        snprintf(err, errlen, "cannot read %s", path);
    } else if (!(report = cJSON_ParseWithLength(qk_buf_ptr(&text), qk_buf_len(&text)))) {
        snprintf(err, errlen, "%s is not JSON", path);
    } else if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(report, "requirements")) ||
               !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(report, "summary"))) {
        snprintf(err, errlen, "%s is not a qwen-conformance report (no requirements, summary)",
                 path);
        cJSON_Delete(report);
        report = NULL;
    }
    qk_buf_free(&text);
    return report;
}

enum qk_err
conf_html_render_files(const char *html_path, const char *const *json_paths, size_t n, bool matrix,
                       char *err, size_t errlen)
{
    if (n == 0 || (!matrix && n != 1)) {
        snprintf(err, errlen,
                 matrix ? "--matrix needs at least one JSON report"
                        : "--from-json renders one report (--matrix for several)");
        return QK_INVALID;
    }
    cJSON **reports = calloc(n, sizeof(*reports));
    const char **labels = calloc(n, sizeof(*labels));
    enum qk_err rc = reports && labels ? QK_OK : QK_NOMEM;
    for (size_t i = 0; rc == QK_OK && i < n; i++) {
        reports[i] = load_report(json_paths[i], err, errlen);
        if (!reports[i])
            rc = QK_INVALID;
        const char *slash = strrchr(json_paths[i], '/');
        labels[i] = slash ? slash + 1 : json_paths[i];
    }
    if (rc == QK_OK) {
        FILE *f = fopen(html_path, "w");
        if (!f) {
            rc = QK_IO;
        } else {
            rc = matrix ? conf_html_matrix(f, (const cJSON *const *)reports, labels, n)
                        : conf_html_report(f, reports[0]);
            if (fclose(f) != 0)
                rc = QK_IO;
        }
        if (rc != QK_OK)
            snprintf(err, errlen, "cannot write %s", html_path);
    }
    for (size_t i = 0; reports && i < n; i++)
        cJSON_Delete(reports[i]);
    free(reports);
    free(labels);
    return rc;
}
