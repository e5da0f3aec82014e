/* The gate between SPEC.md and the requirement table (conf_requirements.h): the same IDs at
 * the same levels. The first tests show that the comparison catches each kind of drift; the
 * last one reads SPEC.md itself, or the file given as the first argument (the build also
 * runs it on a deliberately altered copy, which must fail). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "conf_requirements.h"

static const char *spec_path = CONF_SPEC_MD;

enum { TEXT_MAX = 64 * 1024, REPORT_MAX = 4096 };

/* A SPEC.md-like text with one heading per row of the table, in table order. */
static char *
headings_of_table(void)
{
    char *text = calloc(1, TEXT_MAX);
    assert_non_null(text);
    strcat(text, "# Spec\n\n## Requirements\n\n### A section\n\n");
    for (int i = 0; i < CONF_REQ_COUNT; i++) {
        const struct conf_requirement *r = conf_requirement((enum conf_req)i);
        size_t used = strlen(text);
        snprintf(text + used, TEXT_MAX - used, "#### %s (%s): %s\n\nText.\n\n", r->id,
                 conf_level_name(r->level), r->summary);
    }
    return text;
}

/* Replaces the first @p from in @p text by @p to (in place; @p text has room). */
static void
replace(char *text, const char *from, const char *to)
{
    char *at = strstr(text, from);
    assert_non_null(at);
    size_t from_len = strlen(from), to_len = strlen(to);
    memmove(at + to_len, at + from_len, strlen(at + from_len) + 1);
    memcpy(at, to, to_len);
}

static void
table_headings_agree(void **state)
{
    (void)state;
    char *text = headings_of_table();
    char report[REPORT_MAX];
    assert_int_equal(conf_requirements_check_spec(text, report, sizeof(report)), 0);
    assert_string_equal(report, "");
    free(text);
}

static void
order_and_should_part_do_not_matter(void **state)
{
    (void)state;
    char *text = headings_of_table();
    /* AUTH-1 moved to the end, with a SHOULD part; a heading that is no requirement. */
    replace(text, "#### AUTH-1 (MUST)", "#### Notes (not a requirement)");
    strcat(text, "#### AUTH-1 (MUST; SHOULD part): moved\n");
    char report[REPORT_MAX];
    assert_int_equal(conf_requirements_check_spec(text, report, sizeof(report)), 0);
    free(text);
}

static void
changed_level_is_caught(void **state)
{
    (void)state;
    char *text = headings_of_table();
    replace(text, "#### CACHE-4 (SHOULD)", "#### CACHE-4 (MUST)");
    char report[REPORT_MAX];
    assert_int_equal(conf_requirements_check_spec(text, report, sizeof(report)), 1);
    assert_non_null(strstr(report, "CACHE-4 is MUST in SPEC.md, SHOULD in the requirement table"));
    free(text);
}

static void
missing_heading_is_caught(void **state)
{
    (void)state;
    char *text = headings_of_table();
    replace(text, "#### RETRY-7 (MUST)", "#### Retry seven (MUST)");
    char report[REPORT_MAX];
    assert_int_equal(conf_requirements_check_spec(text, report, sizeof(report)), 1);
    assert_non_null(strstr(report, "the requirement table has RETRY-7 (MUST), SPEC.md has no"));
    free(text);
}

static void
extra_and_duplicate_headings_are_caught(void **state)
{
    (void)state;
    char *text = headings_of_table();
    strcat(text, "#### AUTH-99 (SHOULD): new\n#### SSE-3 (MUST): again\n#### ERR-1: no level\n");
    char report[REPORT_MAX];
    assert_int_equal(conf_requirements_check_spec(text, report, sizeof(report)), 3);
    assert_non_null(strstr(report, "SPEC.md has AUTH-99 (SHOULD), the requirement table does not"));
    assert_non_null(strstr(report, "SPEC.md has SSE-3 more than once"));
    assert_non_null(strstr(report, "the heading of ERR-1 names no level"));
    free(text);
}

static void
spec_md_agrees_with_the_table(void **state)
{
    (void)state;
    FILE *f = fopen(spec_path, "rb");
    if (!f)
        fail_msg("cannot read %s", spec_path);
    char *text = calloc(1, 4 * TEXT_MAX);
    assert_non_null(text);
    size_t n = fread(text, 1, 4 * TEXT_MAX - 1, f);
    int unread = !feof(f);
    fclose(f);
    if (unread)
        fail_msg("%s is larger than this test reads (%d bytes)", spec_path, 4 * TEXT_MAX - 1);
    text[n] = '\0';
    char report[REPORT_MAX];
    size_t differences = conf_requirements_check_spec(text, report, sizeof(report));
    free(text);
    if (differences)
        fail_msg("%s and conf_requirements.h differ in %zu place(s):\n%s", spec_path, differences,
                 report);
}

int
main(int argc, char **argv)
{
    if (argc > 1)
        spec_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_headings_agree),
        cmocka_unit_test(order_and_should_part_do_not_matter),
        cmocka_unit_test(changed_level_is_caught),
        cmocka_unit_test(missing_heading_is_caught),
        cmocka_unit_test(extra_and_duplicate_headings_are_caught),
        cmocka_unit_test(spec_md_agrees_with_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
