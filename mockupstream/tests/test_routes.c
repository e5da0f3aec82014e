/* Unit tests: the route tables (mock_http.h) and their lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mock_http.h"

static enum MHD_Result
no_handler(struct mock_req *r)
{
    (void)r;
    return MHD_NO;
}

static void
lookup_matches_path_and_method_and_names_the_path_methods(void **state)
{
    (void)state;
    static const struct mock_route_row rows[] = {
        {"/a", "GET", MOCK_ROUTE_MODELS, no_handler},
        {"/a", "POST", MOCK_ROUTE_CHAT, no_handler},
        {"/b", "POST", MOCK_ROUTE_CHAT, no_handler},
    };
    const struct mock_route_table t = {rows, 3, MOCK_DIALECT_V1};
    char allow[32];
    assert_ptr_equal(mock_route_find(&t, "/a", "POST", allow, sizeof allow), &rows[1]);
    assert_string_equal(allow, "GET, POST");
    assert_null(mock_route_find(&t, "/b", "GET", allow, sizeof allow));
    assert_string_equal(allow, "POST");
    assert_null(mock_route_find(&t, "/c", "GET", allow, sizeof allow));
    assert_string_equal(allow, "");
    /* Paths are whole: no prefix, no trailing slash. */
    assert_null(mock_route_find(&t, "/a/", "GET", allow, sizeof allow));
    assert_string_equal(allow, "");
}

static void
v1_routes_are_the_models_list_and_chat_completions(void **state)
{
    (void)state;
    char allow[32];
    const struct mock_route_row *m =
        mock_route_find(&mock_api_v1, "/api/models", "GET", allow, sizeof allow);
    assert_non_null(m);
    assert_int_equal(m->route, MOCK_ROUTE_MODELS);
    const struct mock_route_row *c =
        mock_route_find(&mock_api_v1, "/api/chat/completions", "POST", allow, sizeof allow);
    assert_non_null(c);
    assert_int_equal(c->route, MOCK_ROUTE_CHAT);
    assert_null(mock_route_find(&mock_api_v1, "/api/chat/completions", "GET", allow, sizeof allow));
    assert_string_equal(allow, "POST");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lookup_matches_path_and_method_and_names_the_path_methods),
        cmocka_unit_test(v1_routes_are_the_models_list_and_chat_completions),
    };
    return cmocka_run_group_tests_name("unit_mock_routes", tests, NULL, NULL);
}
