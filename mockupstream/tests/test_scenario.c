/* Unit tests: scenario JSON parsing and validation (mock_scenario.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

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
    return mock_scenario_parse(json, strlen(json), &defaults, &p->list, p->field,
                               sizeof p->field, p->msg, sizeof p->msg);
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
        {"{\"token\":\"t\",\"steps\":[{\"stream\":{\"chunks\":\"4\"}}]}",
         "steps[0].stream.chunks"},
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_every_step_kind),
        cmocka_unit_test(parses_an_array_and_defaults_route_to_any),
        cmocka_unit_test(rejects_bad_input_naming_the_field),
    };
    return cmocka_run_group_tests_name("mock_scenario", tests, NULL, NULL);
}
