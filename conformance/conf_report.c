#include "conf_report.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "conf_text.h"

/* How strongly an outcome speaks for its requirement: a failure outweighs everything; a
 * test that could not be judged or run keeps a requirement from passing; a pass outweighs
 * a skip, except in a MUST requirement, where a test skipped for any reason but "not
 * applicable" (the other dialect's, declared absent) leaves it open (SPEC.md, "Verdicts").
 * @p c is the test that gave @p s (NULL for a pass or nothing yet). */
static int
rank(enum conf_status s, const struct conf_case *c, bool must)
{
    switch (s) {
    case CONF_NOT_RUN:
        return 0;
    case CONF_SKIP:
        return must && c && !c->excused ? 25 : 10;
    case CONF_PASS:
        return 20;
    case CONF_UNCHECKED:
        return 30;
    case CONF_CANNOT_JUDGE:
        return 40;
    case CONF_FAIL:
        return 50;
    }
    return 0;
}

/* Folds one test's outcome into a result; the first test of the winning rank is the
 * evidence (none for a pass). @p must: the fold of a MUST requirement's own tests. */
static void
fold(enum conf_status *status, const struct conf_case **evidence, const struct conf_case *c,
     bool must)
{
    if (rank(c->status, c, must) <= rank(*status, *evidence, must))
        return;
    *status = c->status;
    *evidence = c->status == CONF_PASS ? NULL : c;
}

static void
count(struct conf_results *out, enum conf_req req)
{
    bool must = conf_requirement(req)->level == CONF_MUST;
    switch (out->req[req].status) {
    case CONF_PASS:
        out->passed++;
        break;
    case CONF_FAIL:
        out->failed++;
        out->must_failed += must;
        break;
    case CONF_SKIP:
        out->skipped++;
        out->must_open += must && !out->req[req].other_dialect;
        break;
    case CONF_UNCHECKED:
        out->unchecked++;
        out->must_open += must;
        break;
    case CONF_CANNOT_JUDGE:
        out->cannot_judge++;
        out->must_open += must;
        break;
    case CONF_NOT_RUN:
        break;
    }
}

void
conf_results_collect(const struct conf_group *const *groups, size_t ngroups,
                     struct conf_results *out)
{
    memset(out, 0, sizeof(*out));
    bool ran[CONF_REQ_COUNT] = {false};
    bool applies[CONF_REQ_COUNT] = {false};
    for (size_t g = 0; g < ngroups; g++) {
        for (size_t i = 0; i < groups[g]->count; i++) {
            const struct conf_case *c = conf_case_of(&groups[g]->tests[i]);
            struct conf_req_result *r = &out->req[c->req];
            if (c->status == CONF_NOT_RUN)
                continue;
            ran[c->req] = true;
            applies[c->req] = applies[c->req] || !c->other_dialect;
            /* A SHOULD-part test of a MUST requirement is folded apart (a test marked so
             * on a SHOULD requirement is simply one of its tests). */
            bool must = conf_requirement(c->req)->level == CONF_MUST;
            bool part = c->should_part && must;
            fold(part ? &r->should_status : &r->status, part ? &r->should_evidence : &r->evidence,
                 c, must && !part);
        }
    }
    out->down_events = conf_down_events(&out->down_count);
    /* A target that stopped answering during any test fails ROBUST-1 (SPEC.md, "Target
     * health"), whichever test's request it was. */
    struct conf_req_result *robust = &out->req[CONF_REQ_ROBUST_1];
    if (out->down_count > 0 && robust->status != CONF_FAIL) {
        robust->status = CONF_FAIL;
        robust->evidence = out->down_events[0].kase;
    }
    for (int i = 0; i < CONF_REQ_COUNT; i++) {
        out->req[i].other_dialect = ran[i] && !applies[i];
        if (out->req[i].should_status == CONF_FAIL)
            out->should_parts_failed++;
        count(out, (enum conf_req)i);
    }
}

enum conf_verdict
conf_results_verdict(const struct conf_results *res)
{
    if (res->must_failed)
        return CONF_VERDICT_NONCONFORMING;
    if (res->must_open)
        return CONF_VERDICT_NOT_ESTABLISHED;
    return CONF_VERDICT_CONFORMS;
}

/* The IDs of MUST requirements whose result is @p status, comma-separated. */
static void
print_must_ids(FILE *f, const struct conf_results *res, enum conf_status status)
{
    const char *sep = "";
    for (int i = 0; i < CONF_REQ_COUNT; i++) {
        const struct conf_requirement *req = conf_requirement((enum conf_req)i);
        if (req->level == CONF_MUST && res->req[i].status == status &&
            (status != CONF_SKIP || !res->req[i].other_dialect)) {
            fprintf(f, "%s%s", sep, req->id);
            sep = ", ";
        }
    }
}

static unsigned
must_with(const struct conf_results *res, enum conf_status status)
{
    unsigned n = 0;
    for (int i = 0; i < CONF_REQ_COUNT; i++)
        n += conf_requirement((enum conf_req)i)->level == CONF_MUST &&
             res->req[i].status == status && !res->req[i].other_dialect;
    return n;
}

void
conf_report_verdict(FILE *f, const struct conf_results *res)
{
    switch (conf_results_verdict(res)) {
    case CONF_VERDICT_CONFORMS:
        fprintf(f, "verdict: conforms (every MUST requirement run passed)\n");
        return;
    case CONF_VERDICT_NONCONFORMING:
        fprintf(f, "verdict: does not conform: %u MUST requirement%s failed (", res->must_failed,
                res->must_failed == 1 ? "" : "s");
        print_must_ids(f, res, CONF_FAIL);
        fputs(")\n", f);
        return;
    case CONF_VERDICT_NOT_ESTABLISHED:
        break;
    }
    fprintf(f, "verdict: not established:");
    static const enum conf_status open[] = {CONF_UNCHECKED, CONF_CANNOT_JUDGE, CONF_SKIP};
    static const char *const words[] = {"unchecked", "cannot be judged", "skipped"};
    const char *sep = " ";
    for (size_t k = 0; k < sizeof(open) / sizeof(open[0]); k++) {
        unsigned n = must_with(res, open[k]);
        if (n == 0)
            continue;
        fprintf(f, "%s%u MUST requirement%s %s (", sep, n, n == 1 ? "" : "s", words[k]);
        print_must_ids(f, res, open[k]);
        fputs(")", f);
        sep = "; ";
    }
    fputs("\n", f);
}

void
conf_report_table(FILE *f, const struct conf_results *res)
{
    fprintf(f, "\n%-9s %-6s %-12s %s\n", "ID", "LEVEL", "RESULT", "REQUIREMENT / REASON");
    for (int i = 0; i < CONF_REQ_COUNT; i++) {
        const struct conf_req_result *r = &res->req[i];
        const struct conf_requirement *req = conf_requirement((enum conf_req)i);
        if (r->status == CONF_NOT_RUN && r->should_status == CONF_NOT_RUN)
            continue;
        fprintf(f, "%-9s %-6s %-12s %s\n", req->id, conf_level_name(req->level),
                conf_status_name(r->status), req->summary);
        if (r->evidence)
            fprintf(f, "%-29s %s: %s\n", "", r->evidence->name, r->evidence->reason);
        if (r->should_status == CONF_FAIL || r->should_status == CONF_SKIP)
            fprintf(f, "%-29s SHOULD part %s: %s: %s\n", "",
                    r->should_status == CONF_FAIL ? "NOT MET" : "skipped", r->should_evidence->name,
                    r->should_evidence->reason);
    }
    for (size_t i = 0; i < res->down_count; i++)
        fprintf(f, "TARGET-DOWN during %s, after %s%s\n", res->down_events[i].test,
                res->down_events[i].request, res->down_events[i].restarted ? " (restarted)" : "");
    if (res->unchecked || res->cannot_judge)
        fprintf(f, "not judged: %u unchecked, %u cannot judge\n", res->unchecked,
                res->cannot_judge);
    if (res->should_parts_failed)
        fprintf(f, "SHOULD parts of MUST requirements not met: %u\n", res->should_parts_failed);
    conf_report_verdict(f, res);
    fprintf(f, "conformance: %u passed, %u failed, %u skipped\n", res->passed, res->failed,
            res->skipped);
    fflush(f);
}

/* Writes @p s as XML character data or attribute text. Every string a report holds was
 * cleaned when it was recorded (conf_text.h); cleaning again keeps this safe on its own. */
static void
xml_escaped(FILE *f, const char *s)
{
    conf_text_put_markup(f, s, true);
}

/* A string member, cleaned of bytes JSON cannot hold. */
static void
json_add_text(cJSON *o, const char *name, const char *s)
{
    size_t len = strlen(s);
    char *clean = malloc(4 * len + 1);
    if (!clean)
        return;
    conf_text_clean(clean, 4 * len + 1, s, len);
    cJSON_AddStringToObject(o, name, clean);
    free(clean);
}

static void
xml_property(FILE *f, const char *name, const char *value)
{
    fputs("      <property name=\"", f);
    xml_escaped(f, name);
    fputs("\" value=\"", f);
    xml_escaped(f, value);
    fputs("\"/>\n", f);
}

static void
junit_properties(FILE *f, const struct conf_run_info *info)
{
    char seed[32];
    cJSON *profile = conf_profile_to_json(info->profile);
    char *profile_text = profile ? cJSON_PrintUnformatted(profile) : NULL;
    snprintf(seed, sizeof(seed), "%llu", (unsigned long long)info->seed);
    fputs("    <properties>\n", f);
    xml_property(f, "spec_version", CONF_SPEC_VERSION);
    xml_property(f, "tool_version", QK_VERSION);
    xml_property(f, "proxy", info->proxy_url);
    xml_property(f, "profile", info->profile->name);
    xml_property(f, "profile_effective", profile_text ? profile_text : "");
    xml_property(f, "order", info->shuffled ? "shuffled" : "registered");
    if (info->shuffled)
        xml_property(f, "order_seed", seed);
    for (int r = 0; r < CONF_ROUTE_COUNT; r++) {
        char name[64];
        snprintf(name, sizeof(name), "preflight_token_verbatim_%s",
                 conf_route_name((enum conf_route)r));
        xml_property(f, name, info->facts->token_verbatim[r] ? "true" : info->facts->token_seen[r]);
    }
    xml_property(f, "preflight_shared_models_cache",
                 info->facts->shared_models_cache ? "true" : "false");
    fputs("    </properties>\n", f);
    free(profile_text);
    cJSON_Delete(profile);
}

/* The body of a <failure> or <skipped> element: everything needed to act on it. */
static void
junit_evidence(FILE *f, const struct conf_case *c)
{
    const struct conf_requirement *req = conf_requirement(c->req);
    fprintf(f, "%s (%s): %s&#10;", req->id, conf_level_name(req->level), req->summary);
    fputs("seen: ", f);
    xml_escaped(f, c->reason);
    fputs("&#10;", f);
    if (c->evidence)
        xml_escaped(f, c->evidence);
}

enum qk_err
conf_report_junit(const char *path, const struct conf_group *const *groups, size_t ngroups,
                  const struct conf_results *res, const struct conf_run_info *info)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return QK_IO;
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"qwen-conformance\">\n",
          f);
    for (size_t g = 0; g < ngroups; g++) {
        unsigned tests = 0, failures = 0, skipped = 0;
        double secs = 0;
        for (size_t i = 0; i < groups[g]->count; i++) {
            const struct conf_case *c = conf_case_of(&groups[g]->tests[i]);
            tests += c->status != CONF_NOT_RUN;
            failures += c->status == CONF_FAIL;
            skipped +=
                c->status != CONF_NOT_RUN && c->status != CONF_FAIL && c->status != CONF_PASS;
            secs += (double)c->duration_ms / 1000.0;
        }
        if (tests == 0)
            continue;
        fprintf(f,
                "  <testsuite name=\"conformance.%s\" tests=\"%u\" failures=\"%u\" "
                "errors=\"0\" skipped=\"%u\" time=\"%.3f\">\n",
                groups[g]->name, tests, failures, skipped, secs);
        junit_properties(f, info);
        for (size_t i = 0; i < groups[g]->count; i++) {
            const struct conf_case *c = conf_case_of(&groups[g]->tests[i]);
            const struct conf_requirement *req = conf_requirement(c->req);
            if (c->status == CONF_NOT_RUN)
                continue;
            fprintf(f, "    <testcase classname=\"conformance.%s.%s\" name=\"%s\" time=\"%.3f\"",
                    groups[g]->name, req->id, c->name, (double)c->duration_ms / 1000.0);
            if (c->status == CONF_PASS) {
                fputs("/>\n", f);
                continue;
            }
            /* JUnit knows failures and skips; UNCHECKED and CANNOT-JUDGE are skips whose
             * message names the state. */
            bool failed = c->status == CONF_FAIL;
            fprintf(f, ">\n      <%s message=\"%s ", failed ? "failure" : "skipped",
                    conf_status_name(c->status));
            xml_escaped(f, req->id);
            fputs(" (", f);
            fputs(conf_level_name(req->level), f);
            if (c->should_part && req->level == CONF_MUST)
                fputs(", SHOULD part", f);
            fputs("): ", f);
            xml_escaped(f, c->reason);
            fprintf(f, "\"%s>", failed ? " type=\"FAIL\"" : "");
            junit_evidence(f, c);
            fprintf(f, "</%s>\n    </testcase>\n", failed ? "failure" : "skipped");
        }
        fputs("  </testsuite>\n", f);
    }
    if (res->down_count > 0) {
        fputs("  <testsuite name=\"conformance.target\" tests=\"1\" failures=\"1\" errors=\"0\" "
              "skipped=\"0\">\n    <testcase classname=\"conformance.target.ROBUST-1\" "
              "name=\"TARGET_DOWN\">\n      <failure message=\"TARGET-DOWN\" type=\"FAIL\">",
              f);
        for (size_t i = 0; i < res->down_count; i++) {
            fputs("during ", f);
            xml_escaped(f, res->down_events[i].test);
            fputs(", after ", f);
            xml_escaped(f, res->down_events[i].request);
            fputs(res->down_events[i].restarted ? " (restarted)&#10;" : "&#10;", f);
        }
        fputs("</failure>\n    </testcase>\n  </testsuite>\n", f);
    }
    fputs("</testsuites>\n", f);
    return fclose(f) == 0 ? QK_OK : QK_IO;
}

static cJSON *
case_json(const struct conf_case *c)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "name", c->name);
    cJSON_AddStringToObject(t, "result", conf_status_name(c->status));
    if (c->should_part && conf_requirement(c->req)->level == CONF_MUST)
        cJSON_AddStringToObject(t, "part", "SHOULD");
    if (c->status != CONF_PASS && c->status != CONF_NOT_RUN)
        json_add_text(t, "reason", c->reason);
    if (c->evidence)
        json_add_text(t, "evidence", c->evidence);
    cJSON_AddNumberToObject(t, "duration_ms", (double)c->duration_ms);
    return t;
}

static const char *
verdict_word(enum conf_verdict v)
{
    switch (v) {
    case CONF_VERDICT_CONFORMS:
        return "conforms";
    case CONF_VERDICT_NONCONFORMING:
        return "does not conform";
    case CONF_VERDICT_NOT_ESTABLISHED:
        break;
    }
    return "not established";
}

static void
json_run_info(cJSON *root, const struct conf_run_info *info)
{
    cJSON_AddStringToObject(root, "spec_version", CONF_SPEC_VERSION);
    cJSON_AddStringToObject(root, "tool_version", QK_VERSION);
    json_add_text(root, "proxy", info->proxy_url);
    json_add_text(root, "profile", info->profile->name);
    cJSON_AddItemToObject(root, "profile_effective", conf_profile_to_json(info->profile));
    cJSON *order = cJSON_AddObjectToObject(root, "order");
    cJSON_AddStringToObject(order, "kind", info->shuffled ? "shuffled" : "registered");
    if (info->shuffled)
        cJSON_AddNumberToObject(order, "seed", (double)info->seed);
    cJSON *pre = cJSON_AddObjectToObject(root, "preflight");
    for (int r = 0; r < CONF_ROUTE_COUNT; r++) {
        cJSON *route = cJSON_AddObjectToObject(pre, conf_route_name((enum conf_route)r));
        cJSON_AddBoolToObject(route, "token_verbatim", info->facts->token_verbatim[r]);
        if (!info->facts->token_verbatim[r])
            json_add_text(route, "seen", info->facts->token_seen[r]);
    }
    cJSON_AddBoolToObject(pre, "shared_models_cache", info->facts->shared_models_cache);
}

cJSON *
conf_report_tree(const struct conf_group *const *groups, size_t ngroups,
                 const struct conf_results *res, const struct conf_run_info *info)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    json_run_info(root, info);
    cJSON *reqs = cJSON_AddArrayToObject(root, "requirements");
    /* Requirements of the other dialect do not apply: apart, with the reason, so that a
     * reader of "requirements" sees only what was judged (SPEC.md, "Verdicts"). */
    cJSON *not_applicable = cJSON_AddArrayToObject(root, "not_applicable");
    for (int i = 0; i < CONF_REQ_COUNT; i++) {
        const struct conf_req_result *r = &res->req[i];
        const struct conf_requirement *req = conf_requirement((enum conf_req)i);
        if (r->status == CONF_NOT_RUN && r->should_status == CONF_NOT_RUN)
            continue;
        if (r->other_dialect) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "id", req->id);
            if (r->evidence)
                json_add_text(o, "reason", r->evidence->reason);
            cJSON_AddItemToArray(not_applicable, o);
            continue;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", req->id);
        cJSON_AddStringToObject(o, "level", conf_level_name(req->level));
        cJSON_AddStringToObject(o, "summary", req->summary);
        cJSON_AddStringToObject(o, "result", conf_status_name(r->status));
        if (r->evidence)
            json_add_text(o, "reason", r->evidence->reason);
        if (r->should_status != CONF_NOT_RUN) {
            cJSON *sp = cJSON_AddObjectToObject(o, "should_part");
            cJSON_AddStringToObject(sp, "result", conf_status_name(r->should_status));
            if (r->should_evidence)
                json_add_text(sp, "reason", r->should_evidence->reason);
        }
        cJSON *tests = cJSON_AddArrayToObject(o, "tests");
        for (size_t g = 0; g < ngroups; g++) {
            for (size_t k = 0; k < groups[g]->count; k++) {
                const struct conf_case *c = conf_case_of(&groups[g]->tests[k]);
                if ((int)c->req == i && c->status != CONF_NOT_RUN)
                    cJSON_AddItemToArray(tests, case_json(c));
            }
        }
        cJSON_AddItemToArray(reqs, o);
    }
    cJSON *down = cJSON_AddArrayToObject(root, "target_down");
    for (size_t i = 0; i < res->down_count; i++) {
        cJSON *ev = cJSON_CreateObject();
        json_add_text(ev, "test", res->down_events[i].test);
        json_add_text(ev, "after", res->down_events[i].request);
        cJSON_AddBoolToObject(ev, "restarted", res->down_events[i].restarted);
        cJSON_AddItemToArray(down, ev);
    }
    cJSON *summary = cJSON_AddObjectToObject(root, "summary");
    cJSON_AddNumberToObject(summary, "passed", res->passed);
    cJSON_AddNumberToObject(summary, "failed", res->failed);
    cJSON_AddNumberToObject(summary, "skipped", res->skipped);
    cJSON_AddNumberToObject(summary, "unchecked", res->unchecked);
    cJSON_AddNumberToObject(summary, "cannot_judge", res->cannot_judge);
    cJSON_AddNumberToObject(summary, "should_parts_failed", res->should_parts_failed);
    cJSON_AddBoolToObject(summary, "must_failed", res->must_failed > 0);
    cJSON_AddStringToObject(summary, "verdict", verdict_word(conf_results_verdict(res)));
    return root;
}

enum qk_err
conf_report_json(const char *path, const struct conf_group *const *groups, size_t ngroups,
                 const struct conf_results *res, const struct conf_run_info *info)
{
    enum qk_err rc = QK_NOMEM;
    cJSON *root = conf_report_tree(groups, ngroups, res, info);
    char *text = NULL;
    FILE *f = NULL;
    if (!root)
        goto out;
    text = cJSON_Print(root);
    if (!text)
        goto out;
    rc = QK_IO;
    f = fopen(path, "w");
    if (!f)
        goto out;
    if (fputs(text, f) >= 0 && fputc('\n', f) != EOF)
        rc = QK_OK;
out:
    if (f && fclose(f) != 0)
        rc = QK_IO;
    free(text);
    cJSON_Delete(root);
    return rc;
}
