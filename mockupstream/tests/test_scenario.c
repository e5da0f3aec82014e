/* Unit tests: scenario JSON parsing and validation (mock_scenario.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "mock_check.h"
#include "mock_knobs.h"
#include "mock_scenario.h"

struct parsed {
    struct mock_scenario *list;
    char field[256];
    char msg[160];
};

static enum qk_err
parse(const char *json, struct parsed *p)
{
    struct mock_stream_opts defaults;
    mock_stream_opts_init(&defaults);
    memset(p, 0, sizeof *p);
    return mock_scenario_parse(json, strlen(json), &defaults, &p->list, p->field, sizeof p->field,
                               p->msg, sizeof p->msg);
}

static void
parses_every_step_kind(void **state)
{
    (void)state;
    struct parsed p;
    assert_int_equal(
        parse("{\"token\":\"t1\",\"route\":\"chat\",\"steps\":["
              "{\"status\":500},"
              "{\"status\":429,\"retry_after\":2,\"body\":\"{}\",\"content_type\":\"text/plain\"},"
              "{\"html\":\"waf\",\"status\":403},"
              "{\"inband_error\":\"quota\"},"
              "{\"delay_ms\":50,\"drop\":true},"
              "{\"ok\":true,\"delay_ms\":10,\"headers\":{\"X-Trace\":\"abc\"}},"
              "{\"stream\":{\"chunks\":4,\"chunk_delay_ms\":5,\"split_utf8\":true,\"crlf\":true,"
              "\"comments\":true,\"coalesce\":2,\"truncate_after\":3,\"final_repeat\":true,"
              "\"cumulative\":false,\"done\":false,\"usage\":false,\"final_empty_delta\":true,"
              "\"empty_choices\":true,\"no_content_delta\":true}}]}",
              &p),
        QK_OK);
    assert_non_null(p.list);
    assert_string_equal(p.list->token, "t1");
    assert_int_equal(p.list->route, MOCK_ROUTE_CHAT);
    assert_int_equal(p.list->n_steps, 7);
    struct mock_step *s = p.list->steps;
    assert_int_equal(s->status, 500);
    assert_int_equal(s->retry_after, -1);
    s = s->next;
    assert_int_equal(s->retry_after, 2);
    assert_string_equal(s->body, "{}");
    assert_string_equal(s->content_type, "text/plain");
    s = s->next;
    assert_int_equal(s->html, MOCK_HTML_WAF);
    assert_int_equal(s->status, 403);
    s = s->next;
    assert_int_equal(s->inband, MOCK_INBAND_QUOTA);
    s = s->next;
    assert_true(s->drop);
    assert_int_equal(s->delay_ms, 50);
    s = s->next;
    assert_true(s->ok);
    assert_non_null(s->headers);
    s = s->next;
    assert_true(s->has_stream);
    assert_int_equal(s->stream.chunks, 4);
    assert_true(s->stream.split_utf8);
    assert_int_equal(s->stream.eol, MOCK_EOL_CRLF);
    assert_int_equal(s->stream.coalesce, 2);
    assert_int_equal(s->stream.truncate_after, 3);
    assert_int_equal(s->stream.cumulative, 0);
    assert_false(s->stream.done);
    assert_false(s->stream.usage);
    assert_true(s->stream.final_empty_delta);
    assert_true(s->stream.empty_choices);
    assert_true(s->stream.no_content_delta);
    assert_true(s->stream.finish_reason); /* untouched keys keep the defaults */
    assert_non_null(strstr(s->json, "\"chunks\":4"));
    mock_scenario_free(p.list);
}

static void
parses_an_array_and_defaults_route_to_any(void **state)
{
    (void)state;
    struct parsed p;
    assert_int_equal(parse("[{\"token\":\"a\",\"steps\":[{\"ok\":true}]},"
                           "{\"token\":\"b\",\"route\":\"models\",\"steps\":[{\"status\":502}]}]",
                           &p),
                     QK_OK);
    assert_string_equal(p.list->token, "a");
    assert_int_equal(p.list->route, MOCK_ROUTE_ANY);
    assert_string_equal(p.list->next->token, "b");
    assert_int_equal(p.list->next->route, MOCK_ROUTE_MODELS);
    assert_null(p.list->next->next);
    mock_scenario_free(p.list);
}

/* Each bad input is rejected and the error names the field. */
static void
rejects_bad_input_naming_the_field(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *field;
    } cases[] = {
        {"not json", ""},
        {"[]", ""},
        {"42", ""},
        {"{\"route\":\"chat\",\"steps\":[{\"ok\":true}]}", "token"},
        {"{\"token\":\"\",\"steps\":[{\"ok\":true}]}", "token"},
        {"{\"token\":7,\"steps\":[{\"ok\":true}]}", "token"},
        {"{\"token\":\"t\",\"route\":\"nope\",\"steps\":[{\"ok\":true}]}", "route"},
        {"{\"token\":\"t\",\"steps\":[]}", "steps"},
        {"{\"token\":\"t\",\"steps\":{}}", "steps"},
        {"{\"token\":\"t\",\"steps\":[{\"ok\":true}],\"extra\":1}", "extra"},
        {"{\"token\":\"t\",\"steps\":[1]}", "steps[0]"},
        {"{\"token\":\"t\",\"steps\":[{\"ok\":true},{\"explode\":true}]}", "steps[1].explode"},
        {"{\"token\":\"t\",\"steps\":[{\"status\":\"500\"}]}", "steps[0].status"},
        {"{\"token\":\"t\",\"steps\":[{\"status\":99}]}", "steps[0].status"},
        {"{\"token\":\"t\",\"steps\":[{\"status\":500.5}]}", "steps[0].status"},
        {"{\"token\":\"t\",\"steps\":[{\"html\":\"other\"}]}", "steps[0].html"},
        {"{\"token\":\"t\",\"steps\":[{\"inband_error\":true}]}", "steps[0].inband_error"},
        {"{\"token\":\"t\",\"steps\":[{\"delay_ms\":-1}]}", "steps[0].delay_ms"},
        {"{\"token\":\"t\",\"steps\":[{\"drop\":false}]}", "steps[0].drop"},
        {"{\"token\":\"t\",\"steps\":[{\"drop\":true,\"status\":500}]}", "steps[0].drop"},
        {"{\"token\":\"t\",\"steps\":[{\"ok\":true,\"status\":500}]}", "steps[0].ok"},
        {"{\"token\":\"t\",\"steps\":[{\"inband_error\":\"waf\",\"html\":\"waf\"}]}",
         "steps[0].inband_error"},
        {"{\"token\":\"t\",\"steps\":[{\"body\":\"x\"}]}", "steps[0].body"},
        {"{\"token\":\"t\",\"steps\":[{\"headers\":[]}]}", "steps[0].headers"},
        {"{\"token\":\"t\",\"steps\":[{\"headers\":{\"X-A\":1}}]}", "steps[0].headers.X-A"},
        {"{\"token\":\"t\",\"steps\":[{\"headers\":{\"Bad Name\":\"v\"}}]}",
         "steps[0].headers.Bad Name"},
        {"{\"token\":\"t\",\"steps\":[{\"headers\":{\"X-A\":\"a\\r\\nX-B: b\"}}]}",
         "steps[0].headers.X-A"},
        {"{\"token\":\"t\",\"steps\":[{\"headers\":{\"content-length\":\"9\"}}]}",
         "steps[0].headers.content-length"},
        {"{\"token\":\"t\",\"steps\":[{\"drop\":true,\"headers\":{\"X-A\":\"1\"}}]}",
         "steps[0].headers"},
        {"{\"token\":\"t\",\"steps\":[{\"retry_after\":3}]}", "steps[0].retry_after"},
        {"{\"token\":\"t\",\"steps\":[{\"stream\":[]}]}", "steps[0].stream"},
        {"{\"token\":\"t\",\"steps\":[{\"stream\":{\"chunks\":\"4\"}}]}", "steps[0].stream.chunks"},
        {"{\"token\":\"t\",\"steps\":[{\"stream\":{\"chunks\":0}}]}", "steps[0].stream.chunks"},
        {"{\"token\":\"t\",\"steps\":[{\"stream\":{\"split_utf8\":1}}]}",
         "steps[0].stream.split_utf8"},
        {"{\"token\":\"t\",\"steps\":[{\"stream\":{\"speed\":1}}]}", "steps[0].stream.speed"},
        {"{\"token\":\"t\",\"steps\":[{\"stream\":{\"final_empty_delta\":1}}]}",
         "steps[0].stream.final_empty_delta"},
        {"{\"token\":\"t\",\"steps\":[{\"stream\":{\"empty_choices\":\"yes\"}}]}",
         "steps[0].stream.empty_choices"},
        {"{\"token\":\"t\",\"steps\":[{\"stream\":{\"no_content_delta\":null}}]}",
         "steps[0].stream.no_content_delta"},
        {"{\"token\":\"t\",\"steps\":[{\"stream\":{\"crlf\":true,\"cr\":true}}]}",
         "steps[0].stream.cr"},
        {"[{\"token\":\"a\",\"steps\":[{\"ok\":true}]},{\"token\":\"b\",\"steps\":[{\"x\":1}]}]",
         "[1].steps[0].x"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct parsed p;
        enum qk_err rc = parse(cases[i].json, &p);
        if (rc != QK_INVALID || strcmp(p.field, cases[i].field) != 0)
            fail_msg("case %zu %s: rc=%d field='%s' (want '%s') msg='%s'", i, cases[i].json, rc,
                     p.field, cases[i].field, p.msg);
        assert_null(p.list);
        assert_true(p.msg[0] != '\0');
    }
}

/* An unknown route is refused with every route the mock knows named, from its table. */
static void
unknown_route_names_every_route(void **state)
{
    (void)state;
    struct parsed p;
    assert_int_equal(parse("{\"token\":\"t\",\"route\":\"nope\",\"steps\":[{\"ok\":true}]}", &p),
                     QK_INVALID);
    assert_string_equal(p.field, "route");
    for (int i = 0; i < MOCK_ROUTE_COUNT; i++) {
        char quoted[64];
        snprintf(quoted, sizeof quoted, "\"%s\"", mock_route_name((enum mock_route)i));
        if (!strstr(p.msg, quoted))
            fail_msg("route %s missing from '%s'", quoted, p.msg);
    }
    assert_string_equal(p.msg, "must be \"models\", \"chat\", \"chats_new\" or \"any\"");
}

/* Numbers far outside every range (and outside what any integer type holds) are refused
 * as out of range, never converted first: converting them is undefined behaviour. */
static void
refuses_huge_numbers_as_out_of_range(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *field;
    } cases[] = {
        {"{\"token\":\"t\",\"steps\":[{\"status\":1e300}]}", "steps[0].status"},
        {"{\"token\":\"t\",\"steps\":[{\"status\":-1e300}]}", "steps[0].status"},
        {"{\"token\":\"t\",\"steps\":[{\"status\":1e19}]}", "steps[0].status"},
        {"{\"token\":\"t\",\"steps\":[{\"status\":4294967796}]}", "steps[0].status"},
        {"{\"token\":\"t\",\"steps\":[{\"stream\":{\"chunks\":-1e300}}]}",
         "steps[0].stream.chunks"},
        {"{\"token\":\"t\",\"steps\":[{\"stream\":{\"chunks\":1e300}}]}", "steps[0].stream.chunks"},
        {"{\"token\":\"t\",\"steps\":[{\"delay_ms\":9.3e18}]}", "steps[0].delay_ms"},
        {"{\"token\":\"t\",\"steps\":[{\"status\":500,\"retry_after\":-1e300}]}",
         "steps[0].retry_after"},
        {"{\"token\":\"t\",\"steps\":[{\"stream\":{\"coalesce\":1e300}}]}",
         "steps[0].stream.coalesce"},
        {"{\"token\":\"t\",\"steps\":[{\"stream\":{\"piece_bytes\":1.8e308}}]}",
         "steps[0].stream.piece_bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct parsed p;
        enum qk_err rc = parse(cases[i].json, &p);
        if (rc != QK_INVALID || strcmp(p.field, cases[i].field) != 0 || !strstr(p.msg, "between"))
            fail_msg("case %zu %s: rc=%d field='%s' (want '%s') msg='%s'", i, cases[i].json, rc,
                     p.field, cases[i].field, p.msg);
        assert_null(p.list);
    }
}

/* A scripted status is a final answer: 1xx would leave the client waiting for one, and
 * anything outside 200-599 is no HTTP status a proxy meets. */
static void
status_is_a_final_status_200_to_599(void **state)
{
    (void)state;
    static const char *const bad[] = {"0", "100", "101", "103", "199", "600", "999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char json[96];
        snprintf(json, sizeof json, "{\"token\":\"t\",\"steps\":[{\"status\":%s}]}", bad[i]);
        struct parsed p;
        enum qk_err rc = parse(json, &p);
        if (rc != QK_INVALID || strcmp(p.field, "steps[0].status") != 0 || !strstr(p.msg, "200"))
            fail_msg("status %s: rc=%d field='%s' msg='%s'", bad[i], rc, p.field, p.msg);
    }
    struct parsed p;
    assert_int_equal(parse("{\"token\":\"t\",\"steps\":[{\"status\":200},{\"status\":599},"
                           "{\"html\":\"gateway\",\"status\":504}]}",
                           &p),
                     QK_OK);
    assert_int_equal(p.list->steps->status, 200);
    assert_int_equal(p.list->steps->next->status, 599);
    mock_scenario_free(p.list);
}

/* A key given twice is refused (cJSON keeps both): which one wins would be a guess, and
 * the first token was leaked. */
static void
refuses_keys_given_twice(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *field;
    } cases[] = {
        {"{\"token\":\"a\",\"token\":\"b\",\"steps\":[{\"ok\":true}]}", "token"},
        {"{\"token\":\"a\",\"route\":\"chat\",\"route\":\"models\",\"steps\":[{\"ok\":true}]}",
         "route"},
        {"{\"token\":\"a\",\"steps\":[{\"ok\":true}],\"steps\":[{\"ok\":true}]}", "steps"},
        {"{\"token\":\"a\",\"steps\":[{\"status\":500,\"body\":\"x\",\"body\":\"y\"}]}",
         "steps[0].body"},
        {"{\"token\":\"a\",\"steps\":[{\"stream\":{\"chunks\":2,\"chunks\":3}}]}",
         "steps[0].stream.chunks"},
        {"{\"token\":\"a\",\"steps\":[{\"stream\":{},\"stream\":{}}]}", "steps[0].stream"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct parsed p;
        enum qk_err rc = parse(cases[i].json, &p);
        if (rc != QK_INVALID || strcmp(p.field, cases[i].field) != 0 ||
            !strstr(p.msg, "more than once"))
            fail_msg("case %zu %s: rc=%d field='%s' (want '%s') msg='%s'", i, cases[i].json, rc,
                     p.field, cases[i].field, p.msg);
        assert_null(p.list);
    }
}

/* Cumulative deltas re-send the text so far in every event: a step that asks for them
 * with large pieces and many chunks is refused at once, naming piece_bytes, rather than
 * costing gigabytes when a request arrives. Incremental, the same step is fine. */
static void
refuses_cumulative_streams_too_large_to_send(void **state)
{
    (void)state;
    struct parsed p;
    assert_int_equal(parse("{\"token\":\"t\",\"steps\":[{\"stream\":{\"cumulative\":true,"
                           "\"piece_bytes\":2097152,\"chunks\":256}}]}",
                           &p),
                     QK_INVALID);
    assert_string_equal(p.field, "steps[0].stream.piece_bytes");
    assert_non_null(strstr(p.msg, "cumulative"));
    assert_int_equal(parse("{\"token\":\"t\",\"steps\":[{\"stream\":{\"piece_bytes\":2097152,"
                           "\"chunks\":256,\"cumulative\":true}}]}",
                           &p),
                     QK_INVALID);
    assert_string_equal(p.field, "steps[0].stream.piece_bytes");
    assert_int_equal(parse("{\"token\":\"t\",\"steps\":[{\"stream\":{\"cumulative\":false,"
                           "\"piece_bytes\":2097152,\"chunks\":256}},"
                           "{\"stream\":{\"cumulative\":true,\"chunks\":256}},"
                           "{\"stream\":{\"cumulative\":true,\"piece_bytes\":4096}}]}",
                           &p),
                     QK_OK);
    mock_scenario_free(p.list);
}

/* The checked reading of JSON integers: bounds are compared before any conversion. */
static void
json_int_in_range_checks_before_converting(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        long long lo, hi;
        enum mock_int_check want;
        long long value;
    } cases[] = {
        {"5", 1, 10, MOCK_INT_OK, 5},
        {"1", 1, 10, MOCK_INT_OK, 1},
        {"10", 1, 10, MOCK_INT_OK, 10},
        {"-0", 0, 10, MOCK_INT_OK, 0},
        {"0", 1, 10, MOCK_INT_BELOW, 0},
        {"11", 1, 10, MOCK_INT_ABOVE, 0},
        {"10.5", 1, 10, MOCK_INT_ABOVE, 0},
        {"5.5", 1, 10, MOCK_INT_NOT_INTEGER, 0},
        {"1e300", 1, 10, MOCK_INT_ABOVE, 0},
        {"-1e300", 1, 10, MOCK_INT_BELOW, 0},
        {"1.7976931348623157e308", 0, MOCK_JSON_INT_BOUND, MOCK_INT_ABOVE, 0},
        {"9007199254740992", 0, MOCK_JSON_INT_BOUND, MOCK_INT_OK, MOCK_JSON_INT_BOUND},
        {"-9007199254740992", -MOCK_JSON_INT_BOUND, 0, MOCK_INT_OK, -MOCK_JSON_INT_BOUND},
        {"\"5\"", 1, 10, MOCK_INT_NOT_NUMBER, 0},
        {"true", 1, 10, MOCK_INT_NOT_NUMBER, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *item = cJSON_Parse(cases[i].json);
        assert_non_null(item);
        long long v = -7;
        enum mock_int_check got = mock_json_int_in_range(item, cases[i].lo, cases[i].hi, &v);
        if (got != cases[i].want)
            fail_msg("case %zu %s: got %d, want %d", i, cases[i].json, got, cases[i].want);
        assert_int_equal(v, got == MOCK_INT_OK ? cases[i].value : -7);
        cJSON_Delete(item);
    }
    assert_int_equal(mock_json_int_in_range(NULL, 0, 1, NULL), MOCK_INT_NOT_NUMBER);
}

/* Log escaping keeps printable UTF-8 and writes everything else as \xNN. */
static void
log_escape_keeps_text_on_its_line(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"/api/chat/completions", "/api/chat/completions"},
        {"哈 🎉 é", "哈 🎉 é"},
        {"/x\nqwen-mock: GET /forged", "/x\\x0aqwen-mock: GET /forged"},
        {"a\rb\tc\x1b[2J\x7f", "a\\x0db\\x09c\\x1b[2J\\x7f"},
        {"back\\slash", "back\\x5cslash"},
        {"c1 \xc2\x85 \xc2\x9b nbsp \xc2\xa0", "c1 \\xc2\\x85 \\xc2\\x9b nbsp \xc2\xa0"},
        {"bad \xff \xc0\xaf \xed\xa0\x80 \xe6\x88",
         "bad \\xff \\xc0\\xaf \\xed\\xa0\\x80 \\xe6\\x88"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct qk_buf b;
        qk_buf_init(&b, 1024);
        mock_log_escape(&b, cases[i].in);
        if (strcmp(qk_buf_ptr(&b), cases[i].out) != 0)
            fail_msg("case %zu: got '%s', want '%s'", i, qk_buf_ptr(&b), cases[i].out);
        qk_buf_free(&b);
    }
    /* At the buffer's cap the line is cut, never left half-escaped. */
    struct qk_buf b;
    qk_buf_init(&b, 6);
    mock_log_escape(&b, "ab\ncd");
    assert_string_equal(qk_buf_ptr(&b), "ab\\x0a");
    qk_buf_free(&b);
}

/* A step carrying @p key = @p value: at the step's level, or in its stream object. A
 * step-level number rides with a status, which retry_after needs. */
static enum qk_err
parse_knob(const struct mock_knob_table *t, const struct mock_knob *k, const char *value,
           struct parsed *p)
{
    char json[256];
    bool stream = t == &mock_stream_knobs;
    bool with_status = !stream && strcmp(k->key, "status") != 0;
    snprintf(json, sizeof json, "{\"token\":\"t\",\"steps\":[{%s%s\"%s\":%s%s}]}",
             with_status ? "\"status\":500," : "", stream ? "\"stream\":{" : "", k->key, value,
             stream ? "}" : "");
    return parse(json, p);
}

/* Every row of the key tables is enforced as the table says: an integer knob takes its
 * bounds and refuses one beyond each, naming the field; a boolean refuses a number. A
 * new row is covered here without a new test. */
static void
every_knob_row_is_enforced_as_its_table_says(void **state)
{
    (void)state;
    const struct mock_knob_table *tables[] = {&mock_step_knobs, &mock_stream_knobs};
    for (size_t t = 0; t < 2; t++) {
        for (size_t i = 0; i < tables[t]->count; i++) {
            const struct mock_knob *k = &tables[t]->rows[i];
            char field[64], v[32];
            snprintf(field, sizeof field, "steps[0].%s%s", tables[t]->prefix, k->key);
            struct parsed p;
            if (k->type == MOCK_KNOB_INT || k->type == MOCK_KNOB_UINT ||
                k->type == MOCK_KNOB_COALESCE) {
                long long ok[] = {k->lo, k->hi}, bad[] = {k->lo - 1, k->hi + 1};
                for (size_t j = 0; j < 2; j++) {
                    snprintf(v, sizeof v, "%lld", ok[j]);
                    if (parse_knob(tables[t], k, v, &p) != QK_OK)
                        fail_msg("%s=%s refused: %s: %s", field, v, p.field, p.msg);
                    mock_scenario_free(p.list);
                    snprintf(v, sizeof v, "%lld", bad[j]);
                    assert_int_equal(parse_knob(tables[t], k, v, &p), QK_INVALID);
                    assert_string_equal(p.field, field);
                    assert_non_null(strstr(p.msg, "between"));
                }
            } else if (k->type == MOCK_KNOB_BOOL || k->type == MOCK_KNOB_TRUE ||
                       k->type == MOCK_KNOB_EOL || k->type == MOCK_KNOB_DELTAS) {
                assert_int_equal(parse_knob(tables[t], k, "1", &p), QK_INVALID);
                assert_string_equal(p.field, field);
                assert_string_equal(p.msg, "must be true or false");
            }
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_every_step_kind),
        cmocka_unit_test(parses_an_array_and_defaults_route_to_any),
        cmocka_unit_test(unknown_route_names_every_route),
        cmocka_unit_test(rejects_bad_input_naming_the_field),
        cmocka_unit_test(refuses_huge_numbers_as_out_of_range),
        cmocka_unit_test(status_is_a_final_status_200_to_599),
        cmocka_unit_test(refuses_keys_given_twice),
        cmocka_unit_test(refuses_cumulative_streams_too_large_to_send),
        cmocka_unit_test(json_int_in_range_checks_before_converting),
        cmocka_unit_test(log_escape_keeps_text_on_its_line),
        cmocka_unit_test(every_knob_row_is_enforced_as_its_table_says),
    };
    return cmocka_run_group_tests_name("mock_scenario", tests, NULL, NULL);
}
