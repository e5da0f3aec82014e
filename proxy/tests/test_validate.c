/* Unit tests: chat body validation (ERR-1), error bodies (ERR-2/3), model list shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "apierror.h"
#include "models.h"
#include "validate.h"

static void
expect_invalid(const char *body, const char *param)
{
    struct qp_invalid why = {NULL, NULL, NULL};
    bool stream = true;
    assert_false(qp_validate_chat(body, strlen(body), &stream, &why));
    if (param)
        assert_string_equal(why.param, param);
    else
        assert_null(why.param);
    assert_non_null(why.message);
    assert_non_null(why.code);
}

static void
valid_bodies_pass(void **state)
{
    (void)state;
    struct qp_invalid why;
    bool stream = true;
    const char *b = "{\"model\":\"qwen-max-latest\",\"messages\":[{\"role\":\"user\","
                    "\"content\":\"hi\"}]}";
    assert_true(qp_validate_chat(b, strlen(b), &stream, &why));
    assert_false(stream);
    b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true} \n";
    assert_true(qp_validate_chat(b, strlen(b), &stream, &why));
    assert_true(stream);
    b = "{\"model\":\"m\",\"messages\":[{}],\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true,\"future_option\":3}}";
    assert_true(qp_validate_chat(b, strlen(b), &stream, &why));
    b = "{\"model\":\"m\",\"messages\":[{}],\"stream_options\":null}";
    assert_true(qp_validate_chat(b, strlen(b), &stream, &why));
}

static void
bad_bodies_name_the_field(void **state)
{
    (void)state;
    expect_invalid("", NULL);
    expect_invalid("{", NULL);
    expect_invalid("not json", NULL);
    expect_invalid("[1,2]", NULL);
    expect_invalid("{\"model\":\"m\",\"messages\":[{}]} trailing", NULL);
    expect_invalid("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model");
    expect_invalid("{\"model\":42,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model");
    expect_invalid("{\"model\":\"\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                   "model");
    expect_invalid("{\"model\":\"m\"}", "messages");
    expect_invalid("{\"model\":\"m\",\"messages\":[]}", "messages");
    expect_invalid("{\"model\":\"m\",\"messages\":{}}", "messages");
    expect_invalid("{\"model\":\"m\",\"messages\":\"hi\"}", "messages");
    expect_invalid("{\"model\":\"m\",\"messages\":[1]}", "messages");
    expect_invalid("{\"model\":\"m\",\"messages\":[{}],\"stream\":\"yes\"}", "stream");
    expect_invalid("{\"model\":\"m\",\"messages\":[{}],\"stream_options\":true}", "stream_options");
    expect_invalid("{\"model\":\"m\",\"messages\":[{}],\"stream_options\":{\"include_usage\":1}}",
                   "stream_options.include_usage");
}

static void
body_with_nul_byte_is_not_json(void **state)
{
    (void)state;
    const char b[] = "{\"model\":\"m\",\"messages\":[{}]}\0garbage";
    struct qp_invalid why;
    bool stream = false;
    assert_false(qp_validate_chat(b, sizeof(b) - 1, &stream, &why));
}

static void
error_json_has_the_openai_shape(void **state)
{
    (void)state;
    char *s = qp_error_json("Missing \"model\".", "invalid_request_error", "model", NULL);
    cJSON *root = cJSON_Parse(s);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "message")->valuestring,
                        "Missing \"model\".");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "type")->valuestring,
                        "invalid_request_error");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(e, "param")->valuestring, "model");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(e, "code")));
    cJSON_Delete(root);
    free(s);
    assert_string_equal(qp_error_type(401), "authentication_error");
    assert_string_equal(qp_error_type(502), "api_error");
}

static void
upstream_messages_are_kept(void **state)
{
    (void)state;
    const char *b = "{\"detail\":\"Model not found\"}";
    char *m = qp_upstream_message(b, strlen(b), 400);
    assert_string_equal(m, "Model not found");
    free(m);
    b = "{\"error\":{\"message\":\"bad thing\",\"type\":\"x\"}}";
    m = qp_upstream_message(b, strlen(b), 400);
    assert_string_equal(m, "bad thing");
    free(m);
    b = "plain\ntext";
    m = qp_upstream_message(b, strlen(b), 400);
    assert_string_equal(m, "plain text");
    free(m);
    m = qp_upstream_message("", 0, 418);
    assert_non_null(strstr(m, "418"));
    free(m);
}

static void
model_list_becomes_openai_list(void **state)
{
    (void)state;
    const char *up = "{\"data\":[{\"id\":\"qwen-max-latest\",\"name\":\"Qwen2.5-Max\","
                     "\"created\":1737936000,\"owned_by\":\"qwen\"},{\"id\":\"bare\"},"
                     "{\"name\":\"no id\"}]}";
    assert_true(qp_models_usable(up, strlen(up)));
    assert_false(qp_models_usable("{\"data\":{}}", 11));
    assert_false(qp_models_usable("<html>", 6));
    size_t len = 0;
    char *out = qp_models_openai(up, strlen(up), &len);
    assert_non_null(out);
    assert_int_equal(len, strlen(out));
    cJSON *root = cJSON_Parse(out);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(root, "object")->valuestring, "list");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    assert_int_equal(cJSON_GetArraySize(data), 2);
    const cJSON *bare = cJSON_GetArrayItem(data, 1);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(bare, "object")->valuestring, "model");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(bare, "created")));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(bare, "owned_by")->valuestring, "qwen");
    const cJSON *first = cJSON_GetArrayItem(data, 0);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(first, "created")->valuedouble, 1737936000);
    cJSON_Delete(root);
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_bodies_pass),
        cmocka_unit_test(bad_bodies_name_the_field),
        cmocka_unit_test(body_with_nul_byte_is_not_json),
        cmocka_unit_test(error_json_has_the_openai_shape),
        cmocka_unit_test(upstream_messages_are_kept),
        cmocka_unit_test(model_list_becomes_openai_list),
    };
    return cmocka_run_group_tests_name("unit_proxy_validate", tests, NULL, NULL);
}
