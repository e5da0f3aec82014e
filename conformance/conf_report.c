#include "conf_report.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *
status_name(enum conf_status s)
{
    switch (s) {
    case CONF_PASS:
        return "PASS";
    case CONF_FAIL:
        return "FAIL";
    case CONF_SKIP:
        return "SKIP";
    case CONF_NOT_RUN:
        break;
    }
    return "NOT RUN";
}

/* Folds one test's outcome into a result: any FAIL wins, then any PASS, then SKIP. */
static void
fold(enum conf_status *status, const struct conf_case **evidence, const struct conf_case *c)
{
    if (c->status == CONF_FAIL && *status != CONF_FAIL) {
        *status = CONF_FAIL;
        *evidence = c;
    } else if (c->status == CONF_PASS && *status != CONF_FAIL) {
        *status = CONF_PASS;
        *evidence = NULL;
    } else if (c->status == CONF_SKIP && *status == CONF_NOT_RUN) {
        *status = CONF_SKIP;
        *evidence = c;
    }
}

void
conf_results_collect(const struct conf_group *const *groups, size_t ngroups,
                     struct conf_results *out)
{
    memset(out, 0, sizeof(*out));
    /* Per requirement: any FAIL wins, then any PASS, then SKIP. */
    for (size_t g = 0; g < ngroups; g++) {
        for (size_t i = 0; i < groups[g]->count; i++) {
            const struct conf_case *c = conf_case_of(&groups[g]->tests[i]);
            struct conf_req_result *r = &out->req[c->req];
            if (c->status == CONF_NOT_RUN)
                continue;
            /* A SHOULD-part test of a MUST requirement is folded apart (a test marked so
             * on a SHOULD requirement is simply one of its tests). */
            bool part = c->should_part && conf_requirement(c->req)->level == CONF_MUST;
            fold(part ? &r->should_status : &r->status,
                 part ? &r->should_evidence : &r->evidence, c);
        }
    }
    for (int i = 0; i < CONF_REQ_COUNT; i++) {
        if (out->req[i].should_status == CONF_FAIL)
            out->should_parts_failed++;
        switch (out->req[i].status) {
        case CONF_PASS:
            out->passed++;
            break;
        case CONF_FAIL:
            out->failed++;
            if (conf_requirement((enum conf_req)i)->level == CONF_MUST)
                out->must_failed = true;
            break;
        case CONF_SKIP:
            out->skipped++;
            break;
        case CONF_NOT_RUN:
            break;
        }
    }
}

void
conf_report_table(FILE *f, const struct conf_results *res)
{
    fprintf(f, "\n%-9s %-6s %-6s %s\n", "ID", "LEVEL", "RESULT", "REQUIREMENT / REASON");
    for (int i = 0; i < CONF_REQ_COUNT; i++) {
        const struct conf_req_result *r = &res->req[i];
        const struct conf_requirement *req = conf_requirement((enum conf_req)i);
        if (r->status == CONF_NOT_RUN && r->should_status == CONF_NOT_RUN)
            continue;
        fprintf(f, "%-9s %-6s %-6s %s\n", req->id, conf_level_name(req->level),
                status_name(r->status), req->summary);
        if (r->evidence)
            fprintf(f, "%-23s %s: %s\n", "", r->evidence->name, r->evidence->reason);
        if (r->should_status == CONF_FAIL || r->should_status == CONF_SKIP)
            fprintf(f, "%-23s SHOULD part %s: %s: %s\n", "",
                    r->should_status == CONF_FAIL ? "NOT MET" : "skipped",
                    r->should_evidence->name, r->should_evidence->reason);
    }
    fprintf(f, "conformance: %u passed, %u failed, %u skipped\n", res->passed, res->failed,
            res->skipped);
    if (res->should_parts_failed)
        fprintf(f, "SHOULD parts of MUST requirements not met: %u\n", res->should_parts_failed);
    fflush(f);
}

static void
xml_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            /* Control characters are not allowed in XML 1.0. */
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n')
                fputc(' ', f);
            else
                fputc(*s, f);
        }
    }
}

enum qk_err
conf_report_junit(const char *path, const struct conf_group *const *groups, size_t ngroups)
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
            skipped += c->status == CONF_SKIP;
            secs += (double)c->duration_ms / 1000.0;
        }
        if (tests == 0)
            continue;
        fprintf(f,
                "  <testsuite name=\"conformance.%s\" tests=\"%u\" failures=\"%u\" "
                "errors=\"0\" skipped=\"%u\" time=\"%.3f\">\n",
                groups[g]->name, tests, failures, skipped, secs);
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
            fprintf(f, ">\n      <%s message=\"", c->status == CONF_FAIL ? "failure" : "skipped");
            xml_escaped(f, req->id);
            fputs(" (", f);
            fputs(conf_level_name(req->level), f);
            if (c->should_part && req->level == CONF_MUST)
                fputs(", SHOULD part", f);
            fputs("): ", f);
            xml_escaped(f, c->reason);
            fputs("\"/>\n    </testcase>\n", f);
        }
        fputs("  </testsuite>\n", f);
    }
    fputs("</testsuites>\n", f);
    return fclose(f) == 0 ? QK_OK : QK_IO;
}

static cJSON *
case_json(const struct conf_case *c)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "name", c->name);
    cJSON_AddStringToObject(t, "result", status_name(c->status));
    if (c->should_part && conf_requirement(c->req)->level == CONF_MUST)
        cJSON_AddStringToObject(t, "part", "SHOULD");
    if (c->status == CONF_FAIL || c->status == CONF_SKIP)
        cJSON_AddStringToObject(t, "reason", c->reason);
    cJSON_AddNumberToObject(t, "duration_ms", (double)c->duration_ms);
    return t;
}

enum qk_err
conf_report_json(const char *path, const struct conf_group *const *groups, size_t ngroups,
                 const struct conf_results *res, const char *proxy_url,
                 const char *profile_name)
{
    enum qk_err rc = QK_NOMEM;
    cJSON *root = cJSON_CreateObject();
    cJSON *reqs = cJSON_AddArrayToObject(root, "requirements");
    cJSON *summary = cJSON_AddObjectToObject(root, "summary");
    char *text = NULL;
    FILE *f = NULL;

    cJSON_AddStringToObject(root, "spec_version", CONF_SPEC_VERSION);
    cJSON_AddStringToObject(root, "proxy", proxy_url);
    cJSON_AddStringToObject(root, "profile", profile_name);
    for (int i = 0; i < CONF_REQ_COUNT; i++) {
        const struct conf_req_result *r = &res->req[i];
        const struct conf_requirement *req = conf_requirement((enum conf_req)i);
        if (r->status == CONF_NOT_RUN && r->should_status == CONF_NOT_RUN)
            continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", req->id);
        cJSON_AddStringToObject(o, "level", conf_level_name(req->level));
        cJSON_AddStringToObject(o, "summary", req->summary);
        cJSON_AddStringToObject(o, "result", status_name(r->status));
        if (r->evidence)
            cJSON_AddStringToObject(o, "reason", r->evidence->reason);
        if (r->should_status != CONF_NOT_RUN) {
            cJSON *sp = cJSON_AddObjectToObject(o, "should_part");
            cJSON_AddStringToObject(sp, "result", status_name(r->should_status));
            if (r->should_evidence)
                cJSON_AddStringToObject(sp, "reason", r->should_evidence->reason);
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
    cJSON_AddNumberToObject(summary, "passed", res->passed);
    cJSON_AddNumberToObject(summary, "failed", res->failed);
    cJSON_AddNumberToObject(summary, "skipped", res->skipped);
    cJSON_AddNumberToObject(summary, "should_parts_failed", res->should_parts_failed);
    cJSON_AddBoolToObject(summary, "must_failed", res->must_failed);
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
