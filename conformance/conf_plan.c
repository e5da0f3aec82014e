#include "conf_plan.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PATTERN_MAX = 128 };

/* Calls @p fn for every pattern of the comma-separated @p patterns; stops when it returns
 * true. @return true when one did. */
static bool
each_pattern(const char *patterns, bool (*fn)(const char *pattern, const void *arg),
             const void *arg)
{
    const char *p = patterns;
    while (p && *p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char one[PATTERN_MAX];
        while (len > 0 && isspace((unsigned char)p[0])) {
            p++;
            len--;
        }
        while (len > 0 && isspace((unsigned char)p[len - 1]))
            len--;
        if (len > 0 && len < sizeof(one)) {
            memcpy(one, p, len);
            one[len] = '\0';
            if (fn(one, arg))
                return true;
        }
        p = comma ? comma + 1 : NULL;
    }
    return false;
}

static bool
pattern_names_case(const char *pattern, const void *arg)
{
    const struct conf_case *kase = arg;
    if (fnmatch(pattern, kase->name, 0) == 0)
        return true;
    /* Requirement IDs are upper case; "sse-*" names them too. */
    char upper[PATTERN_MAX];
    size_t i = 0;
    for (; pattern[i] && i + 1 < sizeof(upper); i++)
        upper[i] = (char)toupper((unsigned char)pattern[i]);
    upper[i] = '\0';
    return fnmatch(upper, conf_requirement(kase->req)->id, 0) == 0;
}

bool
conf_plan_matches(const char *patterns, const struct conf_case *kase)
{
    return each_pattern(patterns, pattern_names_case, kase);
}

/* For the check that every pattern names something. */
struct pattern_scan {
    const struct conf_group *const *groups;
    size_t ngroups;
    const char *unmatched; /* the first pattern that named nothing */
    char buf[PATTERN_MAX];
};

static bool
pattern_names_nothing(const char *pattern, const void *arg)
{
    struct pattern_scan *scan = (struct pattern_scan *)arg;
    for (size_t g = 0; g < scan->ngroups; g++) {
        for (size_t i = 0; i < scan->groups[g]->count; i++) {
            if (pattern_names_case(pattern, conf_case_of(&scan->groups[g]->tests[i])))
                return false;
        }
    }
    snprintf(scan->buf, sizeof(scan->buf), "%s", pattern);
    scan->unmatched = scan->buf;
    return true;
}

/* splitmix64: a small, well-mixed generator; the same seed gives the same order anywhere. */
static uint64_t
next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

enum qk_err
conf_plan_build(const struct conf_group *const *groups, size_t ngroups, const char *only,
                const char *exclude, bool shuffle, uint64_t seed, struct conf_plan *out, char *err,
                size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *lists[] = {only, exclude};
    const char *flags[] = {"--only", "--exclude"};
    for (int k = 0; k < 2; k++) {
        struct pattern_scan scan = {.groups = groups, .ngroups = ngroups};
        if (lists[k] && each_pattern(lists[k], pattern_names_nothing, &scan)) {
            snprintf(err, errlen, "%s %s: names no requirement and no test (see --list)", flags[k],
                     scan.unmatched);
            return QK_INVALID;
        }
    }
    size_t total = 0;
    for (size_t g = 0; g < ngroups; g++)
        total += groups[g]->count;
    out->tests = calloc(total ? total : 1, sizeof(*out->tests));
    if (!out->tests)
        return QK_NOMEM;
    for (size_t g = 0; g < ngroups; g++) {
        for (size_t i = 0; i < groups[g]->count; i++) {
            const struct conf_case *kase = conf_case_of(&groups[g]->tests[i]);
            if (only && !conf_plan_matches(only, kase))
                continue;
            if (exclude && conf_plan_matches(exclude, kase))
                continue;
            out->tests[out->count++] = groups[g]->tests[i];
        }
    }
    if (out->count == 0) {
        snprintf(err, errlen, "no test is left to run after --only and --exclude");
        conf_plan_free(out);
        return QK_INVALID;
    }
    if (shuffle) {
        uint64_t state = seed;
        for (size_t i = out->count - 1; i > 0; i--) {
            size_t j = (size_t)(next_random(&state) % (i + 1));
            struct CMUnitTest t = out->tests[i];
            out->tests[i] = out->tests[j];
            out->tests[j] = t;
        }
    }
    return QK_OK;
}

void
conf_plan_free(struct conf_plan *plan)
{
    if (!plan)
        return;
    free(plan->tests);
    plan->tests = NULL;
    plan->count = 0;
}
