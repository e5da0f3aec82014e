/* Unit tests: the v1 stream decoder (decode_v1.c): one event's data to a neutral delta;
 * the SSE-4 rule for cumulative and incremental text, the envelope, usage, in-band
 * failures, [DONE] and bad events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "decode_v1.h"
#include "qwenkit/buf.h"

static void *
decoder(bool incremental)
{
    struct qp_decoder_opts o = {.incremental_requested = incremental};
    void *d = qp_decoder_v1.new(&o);
    assert_non_null(d);
    return d;
}

static enum qp_decode_status
decode(void *dec, const char *data, struct qp_delta *d)
{
    return qp_decoder_v1.event(dec, data, strlen(data), d);
}

/* A chunk whose content is @p content; @return the new text it gives the caller. */
static const char *
text_of(void *dec, const char *content)
{
    static char text[32 * 1024], data[32 * 1024];
    snprintf(data, sizeof data, "{\"choices\":[{\"delta\":{\"content\":\"%s\"}}]}", content);
    struct qp_delta d;
    assert_int_equal(decode(dec, data, &d), QP_DECODE_CHUNK);
    snprintf(text, sizeof text, "%.*s", (int)d.text_len, d.text);
    qp_decoder_v1.release(dec);
    return text;
}

static void
done_bad_and_failures(void **state)
{
    (void)state;
    void *dec = decoder(false);
    struct qp_delta d;
    assert_int_equal(decode(dec, "[DONE]", &d), QP_DECODE_DONE);
    static const char *const bad[] = {"<html>", "", "[DONE] ", "[1,2]", "\"text\"", "{\"a\":"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(decode(dec, bad[i], &d), QP_DECODE_BAD);
    static const struct {
        const char *data, *message;
    } failures[] = {
        {"{\"ret\":[\"FAIL_SYS_USER_VALIDATE\",\"RGV587_ERROR::SM\"],\"data\":{}}",
         "upstream refused the request: FAIL_SYS_USER_VALIDATE"},
        {"{\"success\":false,\"data\":{\"code\":\"RateLimited\"}}",
         "upstream failure: RateLimited"},
        {"{\"success\":false}", "upstream failure: success=false"},
        {"{\"error\":{\"message\":\"quota\"}}", "upstream error: quota"},
        {"{\"error\":\"plain\"}", "upstream error: plain"},
        {"{\"error\":7}", "upstream error: unknown"},
    };
    for (size_t i = 0; i < sizeof failures / sizeof failures[0]; i++) {
        assert_int_equal(decode(dec, failures[i].data, &d), QP_DECODE_FAILURE);
        assert_string_equal(d.failure, failures[i].message);
    }
    /* Not failures: a SUCCESS ret, success true, a null error. */
    static const char *const fine[] = {"{\"ret\":[\"SUCCESS::ok\"]}", "{\"success\":true}",
                                       "{\"error\":null}"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        assert_int_equal(decode(dec, fine[i], &d), QP_DECODE_CHUNK);
        assert_int_equal(d.text_len, 0);
        assert_null(d.finish_reason);
    }
    qp_decoder_v1.free(dec);
}

/* The envelope, finish reason and usage as the event gives them. */
static void
envelope_finish_and_usage(void **state)
{
    (void)state;
    void *dec = decoder(true);
    struct qp_delta d;
    assert_int_equal(
        decode(dec,
               "{\"id\":\"up-1\",\"model\":\"qwen-max\",\"created\":1738000000123,"
               "\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}],"
               "\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}",
               &d),
        QP_DECODE_CHUNK);
    assert_string_equal(d.id, "up-1");
    assert_string_equal(d.model, "qwen-max");
    assert_true(d.has_created);
    assert_int_equal(d.created_s, 1738000000); /* milliseconds turned into seconds */
    assert_string_equal(d.finish_reason, "stop");
    assert_true(d.has_usage);
    assert_true(d.prompt_tokens == 3 && d.completion_tokens == 4);
    assert_int_equal(d.text_len, 2);
    assert_memory_equal(d.text, "hi", 2);
    /* Empty strings and numbers out of range are absent, never cast. */
    static const char *const absent[] = {
        ("{\"id\":\"\",\"model\":\"\",\"created\":1e999,\"choices\":[{\"finish_reason\":\"\"}],"
         "\"usage\":{\"input_tokens\":1e999,\"output_tokens\":1}}"),
        "{\"id\":7,\"created\":-5,\"usage\":{\"input_tokens\":-1,\"output_tokens\":1}}",
        "{\"created\":1e300,\"usage\":{\"input_tokens\":1}}",
        "{\"created\":\"1738000000\",\"usage\":7}",
    };
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        assert_int_equal(decode(dec, absent[i], &d), QP_DECODE_CHUNK);
        assert_null(d.id);
        assert_null(d.model);
        assert_false(d.has_created);
        assert_null(d.finish_reason);
        assert_false(d.has_usage);
        assert_int_equal(d.text_len, 0);
    }
    qp_decoder_v1.free(dec);
}

/* SSE-4, cumulative mode: each chunk gives what it adds; a rewrite gives what follows the
 * common prefix, on a character boundary. */
static void
cumulative_text_gives_its_new_end(void **state)
{
    (void)state;
    void *dec = decoder(false);
    assert_string_equal(text_of(dec, "Hi"), "Hi");
    assert_string_equal(text_of(dec, "Hi 哈"), " 哈");
    assert_string_equal(text_of(dec, "Hi 哈"), ""); /* a repeat adds nothing */
    assert_string_equal(text_of(dec, "Hi 哈!"), "!");
    /* "哈" and "哀" share their first two bytes: the delta starts on the boundary. */
    assert_string_equal(text_of(dec, "Hi 哀!?"), "哀!?");
    assert_string_equal(text_of(dec, "Hi 哀!?"), "");
    qp_decoder_v1.free(dec);
}

/* SSE-4, incremental mode: pieces are kept, repeats included, until a chunk that begins
 * with all the text so far shows the upstream sends cumulative text after all. */
static void
incremental_text_is_kept_until_it_proves_cumulative(void **state)
{
    (void)state;
    void *dec = decoder(true);
    assert_string_equal(text_of(dec, "哈"), "哈");
    assert_string_equal(text_of(dec, "哈"), "哈"); /* one earlier piece: a genuine repeat */
    assert_string_equal(text_of(dec, "!"), "!");
    assert_string_equal(text_of(dec, "哈哈! ok"), " ok"); /* begins with all: cumulative */
    assert_string_equal(text_of(dec, "哈哈! ok."), ".");
    qp_decoder_v1.free(dec);
    /* After two pieces, a chunk equal to the whole text is a cumulative repeat. */
    dec = decoder(true);
    assert_string_equal(text_of(dec, "a"), "a");
    assert_string_equal(text_of(dec, "b"), "b");
    assert_string_equal(text_of(dec, "ab"), "");
    qp_decoder_v1.free(dec);
    /* The documented limit: a piece beginning with the whole text is shortened. */
    dec = decoder(true);
    assert_string_equal(text_of(dec, "a"), "a");
    assert_string_equal(text_of(dec, "ab"), "b");
    qp_decoder_v1.free(dec);
}

/* The text so far is a 4 KiB tail and a hash: dedup stays exact far past it, and a rewrite
 * before the tail only gives what goes past the text already sent. */
static void
long_cumulative_text_past_the_kept_tail(void **state)
{
    (void)state;
    enum { LEN = 3 * 4096 + 100 };
    static char text[LEN + 2];
    for (size_t i = 0; i < LEN; i++)
        text[i] = (char)('a' + i % 26);
    void *dec = decoder(false);
    struct qk_buf got;
    qk_buf_init(&got, 1 << 20);
    for (size_t end = 0; end < LEN;) {
        end = end + 1000 < LEN ? end + 1000 : LEN;
        char saved = text[end];
        text[end] = '\0';
        assert_int_equal(qk_buf_append_str(&got, text_of(dec, text)), QK_OK);
        text[end] = saved;
    }
    text[LEN] = '\0';
    assert_string_equal(qk_buf_ptr(&got), text);
    text[10] = '#'; /* a rewrite far before the tail, and one more byte */
    text[LEN] = '!';
    text[LEN + 1] = '\0';
    assert_string_equal(text_of(dec, text), "!");
    qk_buf_free(&got);
    qp_decoder_v1.free(dec);
}

#ifdef QK_MUTANTS
/* The mutants reach the decoder through its options only. */
static void
mutant_options_change_the_decoding(void **state)
{
    (void)state;
    struct qp_decoder_opts o = {.mutant = QP_MUT_cumulative_passthrough};
    void *dec = qp_decoder_v1.new(&o);
    assert_string_equal(text_of(dec, "Hi"), "Hi");
    assert_string_equal(text_of(dec, "Hi!"), "Hi!");
    qp_decoder_v1.free(dec);

    o.mutant = QP_MUT_naive_prefix_dedup;
    dec = qp_decoder_v1.new(&o);
    assert_string_equal(text_of(dec, "哈"), "哈");
    assert_string_equal(text_of(dec, "哈"), ""); /* a repeat is lost */
    qp_decoder_v1.free(dec);

    o.mutant = QP_MUT_textless_chunk_bad;
    dec = qp_decoder_v1.new(&o);
    struct qp_delta d;
    assert_int_equal(decode(dec, "{\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}", &d),
                     QP_DECODE_BAD);
    qp_decoder_v1.free(dec);
}
#endif

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(done_bad_and_failures),
        cmocka_unit_test(envelope_finish_and_usage),
        cmocka_unit_test(cumulative_text_gives_its_new_end),
        cmocka_unit_test(incremental_text_is_kept_until_it_proves_cumulative),
        cmocka_unit_test(long_cumulative_text_past_the_kept_tail),
#ifdef QK_MUTANTS
        cmocka_unit_test(mutant_options_change_the_decoding),
#endif
    };
    return cmocka_run_group_tests_name("proxy_decode_v1", tests, NULL, NULL);
}
