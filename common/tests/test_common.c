#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "qwenkit/buf.h"
#include "qwenkit/common.h"

static void
buf_appends_and_stays_terminated(void **state)
{
    (void)state;
    struct qk_buf b;
    qk_buf_init(&b, 64);
    assert_int_equal(qk_buf_append_str(&b, "data: "), QK_OK);
    assert_int_equal(qk_buf_appendf(&b, "%d-%s", 42, "哈"), QK_OK);
    assert_string_equal(qk_buf_ptr(&b), "data: 42-哈");
    assert_int_equal(qk_buf_len(&b), strlen("data: 42-哈"));
    qk_buf_consume(&b, 6);
    assert_string_equal(qk_buf_ptr(&b), "42-哈");
    qk_buf_truncate(&b, 3);
    assert_string_equal(qk_buf_ptr(&b), "42-");
    qk_buf_truncate(&b, 10); /* longer than the contents: unchanged */
    assert_string_equal(qk_buf_ptr(&b), "42-");
    qk_buf_free(&b);
}

static void
buf_refuses_to_pass_its_cap_and_keeps_old_content(void **state)
{
    (void)state;
    struct qk_buf b;
    qk_buf_init(&b, 8);
    assert_int_equal(qk_buf_append_str(&b, "12345"), QK_OK);
    assert_int_equal(qk_buf_append_str(&b, "6789"), QK_TOO_BIG);
    assert_int_equal(qk_buf_appendf(&b, "%s", "abcd"), QK_TOO_BIG);
    assert_string_equal(qk_buf_ptr(&b), "12345");
    assert_int_equal(qk_buf_append_str(&b, "678"), QK_OK);
    size_t len = 0;
    char *taken = qk_buf_take(&b, &len);
    assert_int_equal(len, 8);
    assert_string_equal(taken, "12345678");
    assert_int_equal(qk_buf_len(&b), 0);
    free(taken);
}

static void
fingerprint_hides_token_and_is_stable(void **state)
{
    (void)state;
    char a[QK_LIMIT_FINGERPRINT], b[QK_LIMIT_FINGERPRINT], c[QK_LIMIT_FINGERPRINT];
    const char *tok = "secret-token-value-123";
    qk_token_fingerprint(tok, strlen(tok), a);
    qk_token_fingerprint(tok, strlen(tok), b);
    qk_token_fingerprint("other", 5, c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_null(strstr(a, "secret"));
    qk_token_fingerprint(NULL, 0, c);
    assert_string_equal(c, "-");
}

static void
errors_have_names_and_text(void **state)
{
    (void)state;
    assert_string_equal(qk_err_name(QK_TOO_BIG), "TOO_BIG");
    assert_string_equal(qk_strerror(QK_NOMEM), "out of memory");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_appends_and_stays_terminated),
        cmocka_unit_test(buf_refuses_to_pass_its_cap_and_keeps_old_content),
        cmocka_unit_test(fingerprint_hides_token_and_is_stable),
        cmocka_unit_test(errors_have_names_and_text),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
