/* Unit tests: the non-stream completion in OpenAI's terms (HTTP-9). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "completion.h"

static cJSON *
convert(const char *body)
{
    size_t len = 0;
    char *out = qp_completion_openai(body, strlen(body), &len);
    assert_non_null(out);
    assert_int_equal(len, strlen(out));
    cJSON *json = cJSON_Parse(out);
    free(out);
    assert_non_null(json);
    return json;
}

static double
number(const cJSON *obj, const char *name)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, name);
    assert_true(cJSON_IsNumber(n));
    return n->valuedouble;
}

static void
dashscope_usage_becomes_openai_usage(void **state)
{
    (void)state;
    cJSON *c = convert("{\"id\":\"x\",\"object\":\"chat.completion\",\"created\":1737936000,"
                       "\"choices\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":11,"
                       "\"total_tokens\":14,\"input_tokens_details\":{\"cached\":0}}}");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(c, "usage");
    assert_int_equal((int)number(u, "prompt_tokens"), 3);
    assert_int_equal((int)number(u, "completion_tokens"), 11);
    assert_int_equal((int)number(u, "total_tokens"), 14);
    assert_false(cJSON_HasObjectItem(u, "input_tokens"));
    assert_false(cJSON_HasObjectItem(u, "output_tokens"));
    assert_true(cJSON_HasObjectItem(u, "input_tokens_details"));
    assert_int_equal((long)number(c, "created"), 1737936000L);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(c, "id")), "x");
    cJSON_Delete(c);
}

static void
openai_usage_and_seconds_are_kept(void **state)
{
    (void)state;
    cJSON *c = convert("{\"created\":1737936000123,\"usage\":{\"prompt_tokens\":2,"
                       "\"completion_tokens\":5,\"total_tokens\":7}}");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(c, "usage");
    assert_int_equal((int)number(u, "prompt_tokens"), 2);
    assert_int_equal((int)number(u, "total_tokens"), 7);
    /* Milliseconds become seconds. */
    assert_int_equal((long)number(c, "created"), 1737936000L);
    cJSON_Delete(c);
}

static void
a_body_that_is_not_an_object_is_left_alone(void **state)
{
    (void)state;
    size_t len = 0;
    assert_null(qp_completion_openai("[1,2]", 5, &len));
    assert_null(qp_completion_openai("not json", 8, &len));
    assert_null(qp_completion_openai("", 0, &len));
}

/* ROBUST-1: out-of-range numbers (created 1e999, token counts that overflow) are replaced,
 * never cast: created becomes now, and usage keeps only finite counts. */
static void
out_of_range_numbers_are_replaced(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        ("{\"created\":1e999,\"choices\":[{\"index\":1e999}],"
         "\"usage\":{\"input_tokens\":1e999,\"output_tokens\":-1e999}}"),
        "{\"created\":-1e999,\"usage\":{\"prompt_tokens\":1e999,\"completion_tokens\":-1e999}}",
        "{\"created\":1e300,\"usage\":{\"input_tokens\":-1,\"output_tokens\":2}}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        cJSON *c = convert(bodies[i]);
        double created = number(c, "created");
        double now = (double)time(NULL);
        assert_true(created > now - 86400 && created < now + 86400);
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(c, "usage");
        const cJSON *item = NULL;
        cJSON_ArrayForEach(item, u)
        {
            /* cJSON prints inf and NaN as null: a count must stay a number or go. */
            assert_false(cJSON_IsNull(item));
        }
        assert_null(cJSON_GetObjectItemCaseSensitive(u, "total_tokens"));
        cJSON_Delete(c);
    }
}

/* Numbers come out as cJSON prints them, byte for byte: integers (printed by the proxy
 * itself), and the ones it leaves to cJSON (fractions, -0, 1e15 and up). */
static void
numbers_print_as_cjson_prints_them(void **state)
{
    (void)state;
    const char *body = "{\"created\":1737936000,\"n\":-5,\"z\":-0,\"big\":1e15,"
                       "\"below\":999999999999999,\"f\":1.5,\"a\":[0,7,{\"k\":-12}],\"s\":\"9\"}";
    cJSON *ref = cJSON_Parse(body);
    char *want = cJSON_PrintUnformatted(ref);
    size_t len = 0;
    char *got = qp_completion_openai(body, strlen(body), &len);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_int_equal(len, strlen(want));
    free(got);
    free(want);
    cJSON_Delete(ref);
}

/* Both paths give the same bytes, or both none: a body in cJSON's printed form takes the
 * copy-and-rewrite path, every other body cJSON's round trip. */
static void
expect_same(const char *body, size_t len)
{
    size_t fast_len = 0, general_len = 0;
    char *fast = qp_completion_openai(body, len, &fast_len);
    char *general = qp_completion_openai_general(body, len, &general_len);
    if (!fast || !general) {
        if (fast || general)
            print_error("body %.*s: fast %s, general %s\n", (int)len, body, fast ? fast : "NULL",
                        general ? general : "NULL");
        assert_true(!fast && !general);
    } else {
        if (fast_len != general_len || memcmp(fast, general, fast_len) != 0)
            print_error("body %.*s:\n fast    %s\n general %s\n", (int)len, body, fast, general);
        assert_int_equal(fast_len, general_len);
        assert_memory_equal(fast, general, fast_len);
        assert_int_equal(strlen(fast), fast_len);
    }
    free(fast);
    free(general);
}

static const char *const same_bodies[] = {
    /* qwen-mock's v1 answer */
    "{\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion\",\"created\":1796236380,"
    "\"model\":\"qwen-max-latest\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":\"Hello! \xe6\x88\x91 \xf0\x9f\x8e\x89 \\\"q\\\" \\\\ \\n\\t/\"},"
    "\"finish_reason\":\"stop\"}],\"usage\":{\"input_tokens\":4,\"output_tokens\":11,"
    "\"total_tokens\":15}}",
    "{\"usage\":{\"input_tokens\":3,\"output_tokens\":11,\"input_tokens_details\":{\"c\":0}}}",
    "{\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":5,\"total_tokens\":7}}",
    "{\"usage\":{\"input_tokens\":2,\"output_tokens\":5,\"prompt_tokens\":9}}",
    "{\"usage\":{\"total_tokens\":1,\"input_tokens\":2,\"output_tokens\":5,\"completion_tokens\":8}"
    "}",
    "{\"usage\":{\"input_tokens\":2}}",
    "{\"usage\":{\"input_tokens\":\"2\",\"output_tokens\":5}}",
    "{\"usage\":{\"input_tokens\":2,\"output_tokens\":5,\"total_tokens\":\"x\"}}",
    "{\"usage\":{\"input_tokens\":2,\"output_tokens\":5,\"prompt_tokens\":null}}",
    "{\"usage\":{\"input_tokens\":-2,\"output_tokens\":5}}",
    "{\"usage\":{\"input_tokens\":2,\"output_tokens\":5,\"x\":-1}}",
    "{\"usage\":{\"input_tokens\":2,\"input_tokens\":3,\"output_tokens\":5}}",
    "{\"usage\":{\"input_tokens\":999999999999999,\"output_tokens\":1}}",
    "{\"usage\":{\"input_tokens\":999999999999999,\"output_tokens\":0}}",
    "{\"usage\":{\"input_tokens\":1.5,\"output_tokens\":1}}",
    "{\"usage\":{}}",
    "{\"usage\":[]}",
    "{\"usage\":7,\"created\":\"soon\"}",
    "{\"usage\":{\"input_tokens\":1,\"output_tokens\":2},\"usage\":{\"input_tokens\":3,"
    "\"output_tokens\":4}}",
    "{\"created\":1737936000123}",
    "{\"created\":1737936000}",
    "{\"created\":100000000000}",
    "{\"created\":100000000001}",
    "{\"created\":99999999999999}",
    "{\"created\":999999999999999}",
    "{\"created\":1,\"created\":2}",
    "{\"created\":-0}",
    "{\"created\":1.0}",
    "{\"created\":1e3}",
    "{\"created\":01}",
    "{\"a\":[],\"b\":{},\"c\":[true,false,null,[[]],{\"d\":[0]}],\"e\":\"\"}",
    "{}",
    "{\"a\":1}   ",
    "{\"a\":1}trailing",
    " {\"a\":1}",
    "{\"a\": 1}",
    "{\"a\":\"\\u00e9\"}",
    "{\"a\":\"\\/\"}",
    "{\"a\":\"\\b\\f\\r\"}",
    "{\"a\":1,}",
    "{\"a\":1",
    "{\"a\"}",
    "{\"a\":tru}",
    "{\"a\":\"unterminated}",
    "{\"created\":1737936000123,\"usage\":{\"input_tokens\":3,\"output_tokens\":4},\"z\":[1,2]}",
    "{\"usage\":{\"input_tokens\":3,\"output_tokens\":4},\"created\":1737936000123}",
    "[1,2]",
    "not json",
    "",
    "{",
    "\"s\"",
};

static void
fast_and_general_paths_agree(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(same_bodies) / sizeof(same_bodies[0]); i++)
        expect_same(same_bodies[i], strlen(same_bodies[i]));
    /* A raw control byte, and a NUL inside a string. */
    expect_same("{\"a\":\"x\x01y\"}", 11);
    expect_same("{\"a\":\"x\0y\"}", 11);
}

/* Random edits of a real answer (deterministic): whatever the bytes, the same answer. */
static void
fast_and_general_paths_agree_on_edited_bodies(void **state)
{
    (void)state;
    static const char alphabet[] = "{}[],:\"\\-0123456789.eEtrufalsn xu";
    const char *base = same_bodies[0];
    size_t len = strlen(base);
    char buf[1024];
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, base, len);
        size_t n = len;
        int edits = 1 + (int)(round % 3);
        for (int e = 0; e < edits; e++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            size_t at = (size_t)(x % n);
            char c = alphabet[(x >> 32) % (sizeof(alphabet) - 1)];
            switch ((x >> 48) % 3) {
            case 0:
                buf[at] = c;
                break;
            case 1: /* delete */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default: /* insert */
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = c;
                n++;
                break;
            }
        }
        expect_same(buf, n);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dashscope_usage_becomes_openai_usage),
        cmocka_unit_test(numbers_print_as_cjson_prints_them),
        cmocka_unit_test(openai_usage_and_seconds_are_kept),
        cmocka_unit_test(a_body_that_is_not_an_object_is_left_alone),
        cmocka_unit_test(out_of_range_numbers_are_replaced),
        cmocka_unit_test(fast_and_general_paths_agree),
        cmocka_unit_test(fast_and_general_paths_agree_on_edited_bodies),
    };
    return cmocka_run_group_tests_name("proxy_completion", tests, NULL, NULL);
}
