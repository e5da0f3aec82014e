/* Unit tests: the suite's WHATWG SSE parser (conf_sse.c), on the cases of the
 * spec and the WPT/WebKit corpora that a proxy's output can hit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "conf_sse.h"

static void
feed_all(struct conf_sse_parser *p, const char *s)
{
    assert_true(conf_sse_feed(p, s, strlen(s), 1));
    conf_sse_finish(p);
}

static void
line_endings_lf_crlf_cr_and_mixed(void **state)
{
    (void)state;
    static const char *const streams[] = {
        "data: a\n\ndata: b\n\n",
        "data: a\r\n\r\ndata: b\r\n\r\n",
        "data: a\r\rdata: b\r\r",
        "data: a\r\n\ndata: b\r\r\n",
    };
    for (size_t k = 0; k < 4; k++) {
        struct conf_sse_parser p;
        conf_sse_init(&p);
        feed_all(&p, streams[k]);
        assert_int_equal(p.n_events, 2);
        assert_string_equal(p.events[0].data, "a");
        assert_string_equal(p.events[1].data, "b");
        assert_false(p.ended_inside_event);
        conf_sse_free(&p);
    }
}

static void
every_split_point_gives_the_same_events(void **state)
{
    (void)state;
    const char *s = "data: 哈\r\n\r\n: ping\r\ndata: x\r\ndata: y\r\n\r\n";
    size_t len = strlen(s);
    for (size_t cut = 0; cut <= len; cut++) {
        struct conf_sse_parser p;
        conf_sse_init(&p);
        assert_true(conf_sse_feed(&p, s, cut, 1));
        assert_true(conf_sse_feed(&p, s + cut, len - cut, 2));
        conf_sse_finish(&p);
        assert_int_equal(p.n_events, 2);
        assert_string_equal(p.events[0].data, "哈");
        assert_string_equal(p.events[1].data, "x\ny");
        assert_int_equal(p.comments, 1);
        assert_int_equal(p.empty_dispatches, 0);
        conf_sse_free(&p);
    }
}

static void
field_parsing_follows_the_spec(void **state)
{
    (void)state;
    struct conf_sse_parser p;
    conf_sse_init(&p);
    /* "data:x" (no space), "data:  y" keeps one space, "Data:" and "data :" are
     * other fields, "data" alone appends an empty line. */
    feed_all(&p, "data:x\n\ndata:  y\n\nData: no\ndata : no\n\ndata\ndata\n\n");
    assert_int_equal(p.n_events, 3);
    assert_string_equal(p.events[0].data, "x");
    assert_string_equal(p.events[1].data, " y");
    assert_string_equal(p.events[2].data, "\n");
    assert_int_equal(p.other_fields, 2);
    assert_int_equal(p.empty_dispatches, 1); /* the blank after the two bad fields */
    conf_sse_free(&p);
}

static void
event_id_retry_are_counted_and_type_applies_once(void **state)
{
    (void)state;
    struct conf_sse_parser p;
    conf_sse_init(&p);
    feed_all(&p, "event: error\nid: 7\nretry: 10\ndata: e\n\ndata: m\n\n");
    assert_int_equal(p.n_events, 2);
    assert_string_equal(p.events[0].type, "error");
    assert_string_equal(p.events[1].type, "message");
    assert_string_equal(p.last_event_id, "7");
    assert_int_equal(p.other_fields, 3);
    conf_sse_free(&p);
}

static void
bom_stripped_once_and_unterminated_event_discarded(void **state)
{
    (void)state;
    struct conf_sse_parser p;
    conf_sse_init(&p);
    feed_all(&p, "\xEF\xBB\xBF"
                 "data: a\n\n\xEF\xBB\xBF"
                 "data: b\n\ndata: lost\n");
    assert_int_equal(p.n_events, 1);
    assert_string_equal(p.events[0].data, "a");
    assert_int_equal(p.other_fields, 1); /* the second BOM is part of a field name */
    assert_true(p.ended_inside_event);
    conf_sse_free(&p);
}

static void
event_time_is_that_of_the_completing_bytes(void **state)
{
    (void)state;
    struct conf_sse_parser p;
    conf_sse_init(&p);
    assert_true(conf_sse_feed(&p, "data: a\n", 8, 100));
    assert_int_equal(p.n_events, 0);
    assert_true(conf_sse_feed(&p, "\n", 1, 250));
    assert_int_equal(p.n_events, 1);
    assert_int_equal(p.events[0].at_ms, 250);
    conf_sse_free(&p);
}

static void
utf8_validation_rejects_broken_sequences(void **state)
{
    (void)state;
    assert_true(conf_utf8_valid("héllo 哈 🎉", strlen("héllo 哈 🎉")));
    assert_false(conf_utf8_valid("\xE5\x93", 2));         /* cut character */
    assert_false(conf_utf8_valid("\x93\x88", 2));         /* starts inside one */
    assert_false(conf_utf8_valid("\xC0\xAF", 2));         /* overlong */
    assert_false(conf_utf8_valid("\xED\xA0\x80", 3));     /* surrogate */
    assert_false(conf_utf8_valid("\xEF\xBF\xBD\xFF", 4)); /* invalid byte */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(line_endings_lf_crlf_cr_and_mixed),
        cmocka_unit_test(every_split_point_gives_the_same_events),
        cmocka_unit_test(field_parsing_follows_the_spec),
        cmocka_unit_test(event_id_retry_are_counted_and_type_applies_once),
        cmocka_unit_test(bom_stripped_once_and_unterminated_event_discarded),
        cmocka_unit_test(event_time_is_that_of_the_completing_bytes),
        cmocka_unit_test(utf8_validation_rejects_broken_sequences),
    };
    return cmocka_run_group_tests_name("conf_sse_parser", tests, NULL, NULL);
}
