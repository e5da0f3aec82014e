/* Unit tests: the proxy's reading of a Bearer credential (AUTH-1/2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "bearer.h"

static void
bearer_scheme_is_case_insensitive_and_token_required(void **state)
{
    (void)state;
    size_t len = 0;
    const char *t = qp_bearer_token("bearer abc", &len);
    assert_non_null(t);
    assert_int_equal(len, 3);
    assert_memory_equal(t, "abc", 3);
    assert_non_null(qp_bearer_token("BEARER  xyz ", &len));
    assert_null(qp_bearer_token("Bearer", &len));
    assert_null(qp_bearer_token("Bearer   ", &len));
    assert_null(qp_bearer_token("Basic abc", &len));
    assert_null(qp_bearer_token("Bearerabc", &len));
    assert_null(qp_bearer_token("Bearer a b", &len));
    assert_null(qp_bearer_token(NULL, &len));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bearer_scheme_is_case_insensitive_and_token_required),
    };
    return cmocka_run_group_tests_name("unit_proxy_bearer", tests, NULL, NULL);
}
