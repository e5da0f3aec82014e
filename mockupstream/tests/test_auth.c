/* Unit tests: the mock's own reading of a Bearer credential (mock_auth.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mock_auth.h"

static void
bearer_scheme_in_any_case_with_one_token(void **state)
{
    (void)state;
    size_t len = 0;
    const char *t = mock_auth_bearer_token("bearer abc", &len);
    assert_non_null(t);
    assert_int_equal(len, 3);
    assert_memory_equal(t, "abc", 3);
    t = mock_auth_bearer_token(" \tBeArEr \t xyz \t", &len);
    assert_non_null(t);
    assert_int_equal(len, 3);
    assert_memory_equal(t, "xyz", 3);
}

static void
other_schemes_and_malformed_values_carry_no_token(void **state)
{
    (void)state;
    size_t len = 0;
    const char *refused[] = {"Bearer",   "Bearer   ", "Basic abc", "Bearerabc",   "Bearer a b",
                             "Bear abc", "",          "Bearer\r",  "Bearer a\r\n"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if (mock_auth_bearer_token(refused[i], &len))
            fail_msg("'%s' read as a Bearer token", refused[i]);
    }
    assert_null(mock_auth_bearer_token(NULL, &len));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bearer_scheme_in_any_case_with_one_token),
        cmocka_unit_test(other_schemes_and_malformed_values_carry_no_token),
    };
    return cmocka_run_group_tests_name("unit_mock_auth", tests, NULL, NULL);
}
