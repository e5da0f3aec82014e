/* Unit tests: what the chunk emitter (chunk_emit.c) makes of a delta's reasoning in each
 * mode, and the mode's names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "chunk_emit.h"

static struct qp_chunk_emitter *
emitter(enum qp_reasoning_mode mode)
{
    struct qp_chunk_emit_opts o = {
        .model = "m", .id = "chatcmpl-1", .created = 17, .reasoning = mode};
    struct qp_chunk_emitter *e = qp_chunk_emitter_new(&o);
    assert_non_null(e);
    return e;
}

static struct qp_delta
delta(const char *reasoning, const char *text, const char *finish)
{
    struct qp_delta d = {.text = text,
                         .text_len = strlen(text),
                         .reasoning = reasoning,
                         .reasoning_len = strlen(reasoning),
                         .finish_reason = finish};
    return d;
}

/* Feeds (reasoning, text) pairs, a finish if @p finish, closes; @return the output. */
static char *
run(enum qp_reasoning_mode mode, const char *const *pairs, size_t n, bool finish)
{
    struct qp_chunk_emitter *e = emitter(mode);
    struct qk_buf out;
    qk_buf_init(&out, 1 << 20);
    for (size_t i = 0; i < n; i += 2) {
        struct qp_delta d = delta(pairs[i], pairs[i + 1], NULL);
        assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    }
    if (finish) {
        struct qp_delta d = delta("", "", "stop");
        d.has_usage = true;
        d.prompt_tokens = 5;
        d.completion_tokens = 9;
        d.has_reasoning_tokens = true;
        d.reasoning_tokens = 7;
        assert_int_equal(qp_chunk_emit_delta(e, &d, &out), QK_OK);
    }
    assert_int_equal(qp_chunk_emit_close(e, &out), QK_OK);
    qp_chunk_emitter_free(e);
    char *s = qk_buf_take(&out, NULL);
    return s ? s : strdup("");
}

#define HEAD "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":17,"
#define CHOICE "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":"

static void
separate_mode_writes_reasoning_content_and_omits_empty_content(void **state)
{
    (void)state;
    static const char *const pairs[] = {"a", "", "\nb", "", "", "Hi"};
    char *s = run(QP_REASONING_SEPARATE, pairs, 6, true);
    assert_string_equal(
        s, HEAD CHOICE
        "{\"role\":\"assistant\",\"reasoning_content\":\"a\"},\"finish_reason\":null}]}"
        "\n\n" HEAD CHOICE "{\"reasoning_content\":\"\\nb\"},\"finish_reason\":null}]}"
        "\n\n" HEAD CHOICE "{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n" HEAD CHOICE
        "{\"content\":\"\"},\"finish_reason\":\"stop\"}],\"usage\":{"
        "\"prompt_tokens\":5,\"completion_tokens\":9,\"total_tokens\":14,"
        "\"completion_tokens_details\":{\"reasoning_tokens\":7}}}\n\n"
        "data: [DONE]\n\n");
    free(s);
    /* Both in one delta: both keys. */
    static const char *const both[] = {"r", "t"};
    s = run(QP_REASONING_SEPARATE, both, 2, false);
    assert_non_null(
        strstr(s, "{\"role\":\"assistant\",\"content\":\"t\",\"reasoning_content\":\"r\"}"));
    free(s);
}

/* Without reasoning, the v1 bytes exactly (what chunk_emit wrote before the modes). */
static void
no_reasoning_is_the_v1_output_in_every_mode(void **state)
{
    (void)state;
    static const char *const pairs[] = {"", "Hi", "", " there"};
    static const char want[] = HEAD CHOICE
        "{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n" HEAD CHOICE
        "{\"content\":\" there\"},\"finish_reason\":null}]}\n\n" HEAD CHOICE
        "{\"content\":\"\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    for (int m = 0; m < 3; m++) {
        char *s = run((enum qp_reasoning_mode)m, pairs, 4, false);
        assert_string_equal(s, want);
        free(s);
    }
}

static void
inline_mode_wraps_the_reasoning_in_a_think_block(void **state)
{
    (void)state;
    static const char *const pairs[] = {"a", "", "\nb", "", "", "Hi", "", "!"};
    char *s = run(QP_REASONING_INLINE, pairs, 8, true);
    assert_string_equal(
        s, HEAD CHOICE
        "{\"role\":\"assistant\",\"content\":\"<think>\\na\"},\"finish_reason\":null}]}"
        "\n\n" HEAD CHOICE "{\"content\":\"\\nb\"},\"finish_reason\":null}]}\n\n" HEAD CHOICE
        "{\"content\":\"\\n</think>\\n\\nHi\"},\"finish_reason\":null}]}\n\n" HEAD CHOICE
        "{\"content\":\"!\"},\"finish_reason\":null}]}\n\n" HEAD CHOICE
        "{\"content\":\"\"},\"finish_reason\":\"stop\"}],\"usage\":{"
        "\"prompt_tokens\":5,\"completion_tokens\":9,\"total_tokens\":14,"
        "\"completion_tokens_details\":{\"reasoning_tokens\":7}}}\n\n"
        "data: [DONE]\n\n");
    assert_null(strstr(s, "reasoning_content"));
    free(s);
    /* Reasoning and no answer: closed on the finish, or by close() when none came. */
    static const char *const only[] = {"x", ""};
    s = run(QP_REASONING_INLINE, only, 2, true);
    assert_non_null(strstr(s, "{\"content\":\"\\n</think>\\n\\n\"},\"finish_reason\":\"stop\""));
    free(s);
    s = run(QP_REASONING_INLINE, only, 2, false);
    assert_non_null(strstr(s, "{\"content\":\"\\n</think>\\n\\n\"},\"finish_reason\":\"stop\""));
    free(s);
    /* Reasoning and text in one delta. */
    static const char *const both[] = {"r", "t"};
    s = run(QP_REASONING_INLINE, both, 2, false);
    assert_non_null(strstr(s, "\"content\":\"<think>\\nr\\n</think>\\n\\nt\""));
    free(s);
}

static void
drop_mode_sends_no_reasoning(void **state)
{
    (void)state;
    static const char *const pairs[] = {"a", "", "\nb", "", "", "Hi"};
    char *s = run(QP_REASONING_DROP, pairs, 6, false);
    /* The first reasoning still starts the caller's stream (the role, an empty content):
     * a long think must not look like an upstream that has not answered yet. */
    assert_string_equal(s, HEAD CHOICE "{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\""
                                       ":null}]}\n\n" HEAD CHOICE
                                       "{\"content\":\"Hi\"},\"finish_reason\""
                                       ":null}]}\n\n" HEAD CHOICE "{\"content\":\"\"},\"finish_"
                                       "reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    free(s);
}

static void
mode_names(void **state)
{
    (void)state;
    enum qp_reasoning_mode m = QP_REASONING_DROP;
    assert_true(qp_reasoning_mode_parse("separate", &m));
    assert_int_equal(m, QP_REASONING_SEPARATE);
    assert_true(qp_reasoning_mode_parse("inline", &m));
    assert_int_equal(m, QP_REASONING_INLINE);
    assert_true(qp_reasoning_mode_parse("drop", &m));
    assert_int_equal(m, QP_REASONING_DROP);
    assert_false(qp_reasoning_mode_parse("Inline", &m));
    assert_false(qp_reasoning_mode_parse("", &m));
    assert_false(qp_reasoning_mode_parse(NULL, &m));
    assert_int_equal(m, QP_REASONING_DROP);
    for (int i = 0; i < 3; i++) {
        assert_true(qp_reasoning_mode_parse(qp_reasoning_mode_name((enum qp_reasoning_mode)i), &m));
        assert_int_equal(m, i);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(separate_mode_writes_reasoning_content_and_omits_empty_content),
        cmocka_unit_test(no_reasoning_is_the_v1_output_in_every_mode),
        cmocka_unit_test(inline_mode_wraps_the_reasoning_in_a_think_block),
        cmocka_unit_test(drop_mode_sends_no_reasoning),
        cmocka_unit_test(mode_names),
    };
    return cmocka_run_group_tests_name("proxy_reasoning", tests, NULL, NULL);
}
