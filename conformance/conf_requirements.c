#include "conf_requirements.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct conf_requirement requirements[CONF_REQ_COUNT] = {
#define CONF_REQ_ROW(sym, id, level, summary) [CONF_REQ_##sym] = {id, CONF_##level, summary},
    CONF_REQUIREMENT_MAP(CONF_REQ_ROW)
#undef CONF_REQ_ROW
};

const struct conf_requirement *
conf_requirement(enum conf_req req)
{
    return &requirements[req];
}

const char *
conf_level_name(enum conf_level level)
{
    switch (level) {
    case CONF_MUST:
        return "MUST";
    case CONF_SHOULD:
        return "SHOULD";
    case CONF_MAY:
        return "MAY";
    }
    return "?";
}

bool
conf_requirement_find(const char *id, enum conf_req *out)
{
    for (int i = 0; i < CONF_REQ_COUNT; i++) {
        if (strcasecmp(requirements[i].id, id) == 0) {
            *out = (enum conf_req)i;
            return true;
        }
    }
    return false;
}

/* ---- SPEC.md's headings against the table ---- */

/* Appends a line to the report (cut when full) and counts a difference. */
static void difference(size_t *count, char *report, size_t reportlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
difference(size_t *count, char *report, size_t reportlen, const char *fmt, ...)
{
    size_t used = strlen(report);
    (*count)++;
    if (used + 1 >= reportlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(report + used, reportlen - used, fmt, ap);
    va_end(ap);
    used = strlen(report);
    if (used + 1 < reportlen)
        strcat(report, "\n");
}

/* A heading's ID: an upper-case letter, more of them or digits, '-', digits (AUTH-1,
 * SSE-18, V2-3). @return its length, or 0 when @p s starts with none. */
static size_t
id_length(const char *s)
{
    size_t n = 0;
    if (!isupper((unsigned char)s[0]))
        return 0;
    while (isupper((unsigned char)s[n]) || isdigit((unsigned char)s[n]))
        n++;
    if (n == 0 || s[n] != '-' || !isdigit((unsigned char)s[n + 1]))
        return 0;
    n++;
    while (isdigit((unsigned char)s[n]))
        n++;
    return n;
}

/* Parses the level after "ID (": MUST, SHOULD or MAY, ended by ')' or ';'. */
static bool
heading_level(const char *s, enum conf_level *out)
{
    static const struct {
        const char *name;
        enum conf_level level;
    } levels[] = {{"MUST", CONF_MUST}, {"SHOULD", CONF_SHOULD}, {"MAY", CONF_MAY}};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        size_t n = strlen(levels[i].name);
        if (strncmp(s, levels[i].name, n) == 0 && (s[n] == ')' || s[n] == ';')) {
            *out = levels[i].level;
            return true;
        }
    }
    return false;
}

size_t
conf_requirements_check_spec(const char *spec, char *report, size_t reportlen)
{
    static const char mark[] = "#### ";
    size_t count = 0;
    unsigned seen[CONF_REQ_COUNT] = {0};
    if (reportlen)
        report[0] = '\0';
    for (const char *line = spec; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        size_t idlen =
            strncmp(line, mark, sizeof(mark) - 1) == 0 ? id_length(line + sizeof(mark) - 1) : 0;
        if (idlen) {
            const char *id = line + sizeof(mark) - 1;
            char idbuf[32];
            snprintf(idbuf, sizeof(idbuf), "%.*s", (int)idlen, id);
            enum conf_req req = CONF_REQ_COUNT;
            enum conf_level level = CONF_MUST;
            bool has_level =
                strncmp(id + idlen, " (", 2) == 0 && heading_level(id + idlen + 2, &level);
            if (!has_level)
                difference(&count, report, reportlen,
                           "SPEC.md: the heading of %s names no level: %.*s", idbuf, (int)len,
                           line);
            else if (!conf_requirement_find(idbuf, &req) || strcmp(requirements[req].id, idbuf))
                difference(&count, report, reportlen,
                           "SPEC.md has %s (%s), the requirement table does not", idbuf,
                           conf_level_name(level));
            else if (seen[req]++)
                difference(&count, report, reportlen, "SPEC.md has %s more than once", idbuf);
            else if (level != requirements[req].level)
                difference(&count, report, reportlen,
                           "%s is %s in SPEC.md, %s in the requirement table", idbuf,
                           conf_level_name(level), conf_level_name(requirements[req].level));
        }
        line = end ? end + 1 : NULL;
    }
    for (int i = 0; i < CONF_REQ_COUNT; i++) {
        if (!seen[i])
            difference(&count, report, reportlen,
                       "the requirement table has %s (%s), SPEC.md has no heading for it",
                       requirements[i].id, conf_level_name(requirements[i].level));
    }
    return count;
}
