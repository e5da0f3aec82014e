/* Unit tests: the v2 chat registry and the uuids (mock_chats.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mock_chats.h"

static void
uuids_are_version_4_and_distinct(void **state)
{
    (void)state;
    char a[MOCK_UUID_LEN], b[MOCK_UUID_LEN];
    mock_uuid(a);
    for (int i = 0; i < 1000; i++) {
        mock_uuid(b);
        assert_int_equal(strlen(b), 36);
        assert_int_equal(b[14], '4');
        assert_non_null(strchr("89ab", b[19]));
        assert_int_equal(b[8], '-');
        assert_int_equal(b[23], '-');
        assert_string_not_equal(a, b);
        /* No group is left at zero (all 128 bits are random but the version's). */
        assert_memory_not_equal(b, "00000000", 8);
    }
}

static void
a_chat_is_its_owners_and_answers_one_at_a_time(void **state)
{
    (void)state;
    struct mock_chats *c = mock_chats_new(10);
    assert_non_null(c);
    char id[MOCK_UUID_LEN];
    assert_int_equal(mock_chats_create(c, "alice", "qwen-max-latest", id), QK_OK);
    struct mock_chat_info info;
    assert_true(mock_chats_find(c, id, "alice", &info));
    assert_string_equal(info.model, "qwen-max-latest");
    assert_false(info.answering);
    assert_false(mock_chats_find(c, id, "bob", &info));
    assert_false(mock_chats_find(c, "no-such-id", "alice", &info));

    const char *r1[] = {"r-1", "r-2"};
    assert_int_equal(mock_chats_begin(c, id, "bob", r1, 2), MOCK_CHAT_NOT_FOUND);
    assert_int_equal(mock_chats_begin(c, id, "alice", r1, 2), MOCK_CHAT_STARTED);
    assert_true(mock_chats_find(c, id, "alice", &info));
    assert_true(info.answering);
    assert_int_equal(info.n_responses, 2);
    assert_string_equal(info.last_response, "r-2");
    const char *r2[] = {"r-3"};
    assert_int_equal(mock_chats_begin(c, id, "alice", r2, 1), MOCK_CHAT_BUSY);
    mock_chats_end(c, id);
    assert_int_equal(mock_chats_begin(c, id, "alice", r2, 1), MOCK_CHAT_STARTED);
    assert_true(mock_chats_find(c, id, "alice", &info));
    assert_int_equal(info.n_responses, 3);
    assert_string_equal(info.last_response, "r-3");
    mock_chats_end(c, "forgotten"); /* ignored */
    mock_chats_reset(c);
    assert_int_equal(mock_chats_count(c), 0);
    assert_false(mock_chats_find(c, id, "alice", &info));
    mock_chats_end(c, id); /* after a reset: ignored */
    mock_chats_free(c);
}

/* The registry holds at most its bound: the oldest chats go first. */
static void
the_oldest_chats_are_forgotten_beyond_the_bound(void **state)
{
    (void)state;
    struct mock_chats *c = mock_chats_new(3);
    char ids[5][MOCK_UUID_LEN];
    for (int i = 0; i < 5; i++)
        assert_int_equal(mock_chats_create(c, "k", "m", ids[i]), QK_OK);
    assert_int_equal(mock_chats_count(c), 3);
    assert_false(mock_chats_find(c, ids[0], "k", NULL));
    assert_false(mock_chats_find(c, ids[1], "k", NULL));
    for (int i = 2; i < 5; i++)
        assert_true(mock_chats_find(c, ids[i], "k", NULL));
    mock_chats_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uuids_are_version_4_and_distinct),
        cmocka_unit_test(a_chat_is_its_owners_and_answers_one_at_a_time),
        cmocka_unit_test(the_oldest_chats_are_forgotten_beyond_the_bound),
    };
    return cmocka_run_group_tests_name("unit_mock_chats", tests, NULL, NULL);
}
