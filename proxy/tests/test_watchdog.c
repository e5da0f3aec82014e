/* Unit tests: the admission watchdog walks the open connections once per check interval,
 * however many callers hang up meanwhile, and still cuts every half-closed partial
 * request within the grace and one interval. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admission.h"

#define N_PAIRS 400
/* The watchdog's interval and grace (admission.c), and slack for a busy machine. */
#define CHECK_INTERVAL_MS 100
#define HALF_CLOSE_GRACE_MS 150
#define SLACK_MS 400

static void
sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000 * 1000};
    nanosleep(&t, NULL);
}

/* At 10k streams the callers leave one by one after their answers: a walk per hang-up
 * made that O(connections) each, under the lock every server thread takes. */
static void
hang_ups_in_a_burst_share_the_rounds(void **state)
{
    (void)state;
    struct qp_admission_config cfg = {
        .max_connections = 4 * N_PAIRS,
        .receive_timeout_ms = 60000,
        .idle_timeout_ms = 60000,
    };
    struct qp_admission *adm = NULL;
    assert_int_equal(qp_admission_start(&cfg, &adm), QK_OK);

    int fds[N_PAIRS][2];
    struct qp_conn *conns[N_PAIRS];
    for (int i = 0; i < N_PAIRS; i++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds[i]), 0);
        conns[i] = qp_admission_opened(adm, fds[i][0]); /* waiting for a request head */
        assert_non_null(conns[i]);
    }
    unsigned long rounds_before = qp_admission_round_count(adm);
    int64_t t0 = qk_now_ms();
    for (int i = 0; i < N_PAIRS; i++) {
        close(fds[i][1]); /* the caller hangs up before sending a whole head */
        if (i % 4 == 3)
            sleep_ms(1); /* a wake-up each, not one for the whole burst */
    }
    int64_t burst_ms = qk_now_ms() - t0;
    /* Every connection is cut within the grace and an interval of its hang-up. */
    int64_t until = qk_now_ms() + HALF_CLOSE_GRACE_MS + CHECK_INTERVAL_MS + SLACK_MS;
    while (qk_now_ms() < until && qp_admission_cut_count(adm) < N_PAIRS)
        sleep_ms(5);
    int64_t elapsed_ms = qk_now_ms() - t0;
    assert_int_equal(qp_admission_cut_count(adm), N_PAIRS);
    assert_true(elapsed_ms <= burst_ms + HALF_CLOSE_GRACE_MS + CHECK_INTERVAL_MS + SLACK_MS);

    unsigned long rounds = qp_admission_round_count(adm) - rounds_before;
    print_message("%d hang-ups over %lld ms, all cut after %lld ms, %lu rounds\n", N_PAIRS,
                  (long long)burst_ms, (long long)elapsed_ms, rounds);
    /* One round per interval (and one at each end), not one per wake-up. */
    assert_true(rounds <= (unsigned long)(elapsed_ms / CHECK_INTERVAL_MS) + 2);

    for (int i = 0; i < N_PAIRS; i++) {
        qp_admission_closed(adm, conns[i]);
        close(fds[i][0]);
    }
    qp_admission_stop(adm);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hang_ups_in_a_burst_share_the_rounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
