/* Unit tests: cJSON trees in an arena (json_arena.c): the tree reads as cJSON's own, a
 * reset gives it back, text that is not JSON, a tree larger than a chunk, cJSON's other
 * calls left on malloc and free, and hooks set again by someone else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "json_arena.h"

static const char frame[] =
    "{\"choices\": [{\"delta\": {\"role\": \"assistant\", \"content\": \"Hello \\u00e9\", "
    "\"phase\": \"answer\"}}], \"usage\": {\"input_tokens\": 1004, \"output_tokens\": 3}, "
    "\"ok\": true, \"none\": null}";

/* The arena's tree is the tree cJSON parses on its own, printed byte for byte. */
static void
a_tree_reads_and_prints_as_cjson_s_own(void **state)
{
    (void)state;
    struct qp_json_arena a = {0};
    for (int round = 0; round < 3; round++) {
        cJSON *t = qp_json_arena_parse(&a, frame, strlen(frame));
        assert_non_null(t);
        assert_true(a.hooked);
        cJSON *own = cJSON_ParseWithLength(frame, strlen(frame));
        assert_non_null(own);
        char *p1 = cJSON_PrintUnformatted(t);
        char *p2 = cJSON_PrintUnformatted(own);
        assert_string_equal(p1, p2);
        cJSON_free(p1);
        cJSON_free(p2);
        cJSON_Delete(own); /* a malloc'd tree, freed as always */
        const cJSON *usage = cJSON_GetObjectItemCaseSensitive(t, "usage");
        assert_int_equal(cJSON_GetObjectItemCaseSensitive(usage, "input_tokens")->valuedouble,
                         1004);
        qp_json_arena_reset(&a, 64 * 1024);
        assert_non_null(a.chunks); /* one chunk kept for the next event */
    }
    qp_json_arena_free(&a);
    assert_null(a.chunks);
    qp_json_arena_free(NULL);
}

/* Text that is not JSON, or cut, is NULL; what cJSON freed of it stays in the arena until
 * the reset (the sanitizers judge that nothing is freed twice or lost). */
static void
not_json_is_null(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "{", "{\"a\": [1, 2, {\"b\": \"c\"", "[1, 2, 3]]", "{\"a\": \"\\ud800\" x}", "<html>",
    };
    struct qp_json_arena a = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *t = qp_json_arena_parse(&a, bad[i], strlen(bad[i]));
        if (t && !cJSON_IsArray(t))
            fail_msg("case %zu parsed", i);
        qp_json_arena_reset(&a, 0);
        assert_null(a.chunks);
    }
    qp_json_arena_free(&a);
}

/* A tree far larger than a chunk (a long cumulative array, a long string): several
 * chunks, given back to one kept chunk at most @p keep bytes. */
static void
a_large_tree_takes_several_chunks(void **state)
{
    (void)state;
    size_t n = 20000;
    size_t cap = n * 16 + 300000;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t len = (size_t)snprintf(s, cap, "{\"long\": \"");
    memset(s + len, 'x', 200000);
    len += 200000;
    len += (size_t)snprintf(s + len, cap - len, "\", \"a\": [");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s\"e%zu\"", i ? "," : "", i);
    len += (size_t)snprintf(s + len, cap - len, "]}");
    struct qp_json_arena a = {0};
    cJSON *t = qp_json_arena_parse(&a, s, len);
    assert_non_null(t);
    assert_true(a.hooked);
    assert_non_null(a.chunks);
    assert_int_equal(strlen(cJSON_GetObjectItemCaseSensitive(t, "long")->valuestring), 200000);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(t, "a");
    assert_int_equal(cJSON_GetArraySize(arr), (int)n);
    assert_string_equal(cJSON_GetArrayItem(arr, (int)n - 1)->valuestring, "e19999");
    qp_json_arena_reset(&a, 64 * 1024);
    t = qp_json_arena_parse(&a, frame, strlen(frame));
    assert_non_null(t);
    qp_json_arena_free(&a);
    free(s);
}

/* Hooks set again by someone else (here: cJSON's defaults): the parse still works, and
 * says that the tree is malloc'd, the caller's to delete. */
static void
hooks_set_by_someone_else_give_a_malloced_tree(void **state)
{
    (void)state;
    cJSON_InitHooks(NULL);
    struct qp_json_arena a = {0};
    cJSON *t = qp_json_arena_parse(&a, frame, strlen(frame));
    assert_non_null(t);
    assert_false(a.hooked);
    assert_null(a.chunks);
    cJSON_Delete(t);
    qp_json_arena_free(&a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_tree_reads_and_prints_as_cjson_s_own),
        cmocka_unit_test(not_json_is_null),
        cmocka_unit_test(a_large_tree_takes_several_chunks),
        /* last: it takes the arena's hooks away for the rest of the process */
        cmocka_unit_test(hooks_set_by_someone_else_give_a_malloced_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
