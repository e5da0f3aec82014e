/* Unit tests: picking one model out of an OpenAI list (GET /v1/models/{id}). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "models.h"

static const char LIST[] = "{\"object\":\"list\",\"data\":["
                           "{\"id\":\"qwen-max-latest\",\"object\":\"model\",\"created\":1,"
                           "\"owned_by\":\"qwen\",\"name\":\"Qwen2.5-Max\"},"
                           "{\"id\":\"qwen-plus-latest\",\"object\":\"model\",\"created\":2,"
                           "\"owned_by\":\"qwen\"},{\"object\":\"model\"}]}";

static void
picks_the_model_by_id(void **state)
{
    (void)state;
    size_t len = 0;
    bool nomem = true;
    char *m = qp_models_pick(LIST, strlen(LIST), "qwen-plus-latest", &len, &nomem);
    assert_non_null(m);
    assert_false(nomem);
    assert_string_equal(m, "{\"id\":\"qwen-plus-latest\",\"object\":\"model\",\"created\":2,"
                           "\"owned_by\":\"qwen\"}");
    assert_int_equal(len, strlen(m));
    free(m);
    m = qp_models_pick(LIST, strlen(LIST), "qwen-max-latest", &len, &nomem);
    assert_non_null(strstr(m, "\"name\":\"Qwen2.5-Max\"")); /* the other fields kept */
    free(m);
}

static void
unknown_id_and_bad_lists_give_nothing(void **state)
{
    (void)state;
    size_t len = 0;
    bool nomem = true;
    assert_null(qp_models_pick(LIST, strlen(LIST), "qwen-plus", &len, &nomem)); /* exact only */
    assert_false(nomem);
    assert_null(qp_models_pick(LIST, strlen(LIST), "", &len, &nomem));
    assert_null(qp_models_pick("not json", 8, "qwen-max-latest", &len, &nomem));
    assert_null(qp_models_pick("{\"data\":{}}", 11, "qwen-max-latest", &len, &nomem));
    assert_false(nomem);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(picks_the_model_by_id),
        cmocka_unit_test(unknown_id_and_bad_lists_give_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
