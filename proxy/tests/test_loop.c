/* Unit tests: the loop's timers (a heap): order, ties, cancel and re-arm, at volume; its
 * batched calls (once each, after the pass that queued them, and before the thread ends);
 * a backlog of posted items shared out over passes, so sockets are served in between. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"

#define N_TIMERS 3000

struct rec {
    struct qp_loop_timer t;
    int64_t due;
    unsigned id;
    bool cancelled;
};

static struct qp_loop *the_loop;
static struct rec recs[N_TIMERS];
static unsigned fired[N_TIMERS];
static atomic_uint n_fired;
static atomic_bool all_armed;
static int64_t base_ms;

static void
on_fire(struct qp_loop_timer *t)
{
    struct rec *r = (struct rec *)(void *)t; /* t is the first member */
    unsigned k = atomic_load(&n_fired);
    if (k < N_TIMERS)
        fired[k] = r->id;
    atomic_store(&n_fired, k + 1);
}

/* On the loop thread: arms every timer in a scrambled order, with many equal due times,
 * then cancels some and moves others (earlier and later). */
static void
on_post(void *ctx, void *item)
{
    (void)ctx;
    (void)item;
    base_ms = qk_now_ms() + 200;
    for (unsigned i = 0; i < N_TIMERS; i++) {
        unsigned k = (i * 7919u) % N_TIMERS; /* a permutation: 7919 is prime */
        recs[k].id = k;
        recs[k].t.fire = on_fire;
        recs[k].due = base_ms + (int64_t)(k % 50); /* 60 timers share each due time */
        qp_loop_timer_arm(the_loop, &recs[k].t, recs[k].due);
    }
    for (unsigned k = 0; k < N_TIMERS; k += 3) {
        qp_loop_timer_cancel(the_loop, &recs[k].t);
        qp_loop_timer_cancel(the_loop, &recs[k].t); /* idempotent */
        recs[k].cancelled = true;
    }
    for (unsigned k = 1; k < N_TIMERS; k += 9) {
        recs[k].due = base_ms + 60 + (int64_t)(k % 7);
        recs[k].cancelled = false; /* some were cancelled: arming again brings them back */
        qp_loop_timer_arm(the_loop, &recs[k].t, recs[k].due); /* re-armed: later */
    }
    for (unsigned k = 2; k < N_TIMERS; k += 11) {
        recs[k].due = base_ms - 100; /* already due: fires first */
        recs[k].cancelled = false;
        qp_loop_timer_arm(the_loop, &recs[k].t, recs[k].due);
    }
    atomic_store(&all_armed, true);
}

static void
on_stop(void *ctx)
{
    (void)ctx;
}

static void
timers_fire_in_due_order_ties_in_arming_order(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(qp_loop_start(on_post, on_stop, NULL, 0, &the_loop, err, sizeof(err)), QK_OK);
    assert_true(qp_loop_post(the_loop, recs));
    int64_t until = qk_now_ms() + 10000;
    while (qk_now_ms() < until) {
        struct timespec tick = {0, 5 * 1000 * 1000};
        nanosleep(&tick, NULL);
        if (!atomic_load(&all_armed))
            continue;
        unsigned want = 0;
        for (unsigned k = 0; k < N_TIMERS; k++)
            want += recs[k].cancelled ? 0 : 1;
        if (atomic_load(&n_fired) >= want)
            break;
    }
    struct timespec settle = {0, 50 * 1000 * 1000};
    nanosleep(&settle, NULL); /* a cancelled timer firing late would show now */
    qp_loop_stop(the_loop);
    qp_loop_free(the_loop);

    unsigned want = 0;
    for (unsigned k = 0; k < N_TIMERS; k++)
        want += recs[k].cancelled ? 0 : 1;
    assert_int_equal(atomic_load(&n_fired), want);
    bool seen[N_TIMERS] = {false};
    for (unsigned i = 0; i < want; i++) {
        const struct rec *r = &recs[fired[i]];
        assert_false(r->cancelled);
        assert_false(seen[r->id]); /* once each */
        seen[r->id] = true;
        if (i == 0)
            continue;
        const struct rec *p = &recs[fired[i - 1]];
        assert_true(p->due <= r->due);
        if (p->due == r->due)
            assert_true(p->t.seq < r->t.seq); /* armed earlier, fired earlier */
    }
}

/* ---- batched calls ----------------------------------------------------------------- */

struct batched_rec {
    struct qp_loop_batched b;
    atomic_uint runs;
    atomic_bool in_handler_when_run; /* ran inside the handler that queued it: not batched */
};

static struct batched_rec brecs[3];
static struct batched_rec stop_rec;
static atomic_bool in_handler;
static atomic_bool posted_done;

static void
on_batched(struct qp_loop_batched *b)
{
    struct batched_rec *r = (struct batched_rec *)(void *)b; /* b is the first member */
    atomic_fetch_add(&r->runs, 1);
    if (atomic_load(&in_handler))
        atomic_store(&r->in_handler_when_run, true);
}

static void
batch_on_post(void *ctx, void *item)
{
    (void)ctx;
    (void)item;
    atomic_store(&in_handler, true);
    for (unsigned i = 0; i < 3; i++) {
        brecs[i].b.run = on_batched;
        assert_true(qp_loop_batch(the_loop, &brecs[i].b));
    }
    assert_false(qp_loop_batch(the_loop, &brecs[1].b)); /* queued already: one run */
    atomic_store(&in_handler, false);
    atomic_store(&posted_done, true);
}

static void
batch_on_stop(void *ctx)
{
    (void)ctx;
    stop_rec.b.run = on_batched;
    assert_true(qp_loop_batch(the_loop, &stop_rec.b));
}

/* A resume batched by the loop must run once, after the handler that asked for it, and a
 * batch queued while the loop stops must still run: libmicrohttpd must never be stopped
 * with a connection left suspended. */
static void
batched_calls_run_once_after_the_pass_and_before_stop(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(
        qp_loop_start(batch_on_post, batch_on_stop, NULL, 0, &the_loop, err, sizeof(err)), QK_OK);
    assert_true(qp_loop_post(the_loop, brecs));
    int64_t until = qk_now_ms() + 10000;
    while (qk_now_ms() < until && atomic_load(&brecs[2].runs) == 0) {
        struct timespec tick = {0, 2 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    assert_true(atomic_load(&posted_done));
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(atomic_load(&brecs[i].runs), 1);
        assert_false(atomic_load(&brecs[i].in_handler_when_run));
    }
    qp_loop_stop(the_loop);
    assert_int_equal(atomic_load(&stop_rec.runs), 1);
    qp_loop_free(the_loop);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&brecs[i].runs), 1);
}

/* ---- posted items share the passes with sockets ------------------------------------ */

#define N_BACKLOG 2000

static int share_fds[2] = {-1, -1};
static struct qp_loop_watch share_watch;
static atomic_bool backlog_queued;
static atomic_uint items_run;
static atomic_uint items_run_when_fired; /* 0: the watch has not fired */
static atomic_uint hung_up_after;        /* items_run when the peer hung up */
static unsigned order_broken;
static unsigned last_item;

static void
share_on_fire(struct qp_loop_watch *w)
{
    (void)w;
    atomic_store(&items_run_when_fired, atomic_load(&items_run));
}

/* Item 0 watches the socket and waits until the whole backlog is queued behind it; item 1
 * hangs up the socket's peer, so the hang-up is ready while the backlog still waits. */
static void
share_on_post(void *ctx, void *item)
{
    (void)ctx;
    unsigned k = (unsigned)(uintptr_t)item;
    if (k != 0 && k != last_item + 1)
        order_broken++;
    last_item = k;
    if (k == 0) {
        share_watch.fire = share_on_fire;
        assert_int_equal(qp_loop_watch_add(the_loop, &share_watch, share_fds[0]), QK_OK);
        while (!atomic_load(&backlog_queued)) {
            struct timespec tick = {0, 1000 * 1000};
            nanosleep(&tick, NULL);
        }
    } else if (k == 1) {
        close(share_fds[1]);
        share_fds[1] = -1;
        atomic_store(&hung_up_after, atomic_load(&items_run) + 1);
    }
    atomic_fetch_add(&items_run, 1);
}

static void
share_on_stop(void *ctx)
{
    (void)ctx;
}

/* At 10k streams a pass that started every transfer posted meanwhile kept the events of
 * the streams already relaying waiting for over 100 ms: a socket that becomes ready must
 * be served after at most one pass's share of a backlog, and every item still runs, in
 * the order posted, the last ones even when the loop is stopped with them queued. */
static void
a_posted_backlog_shares_the_passes_with_sockets(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, share_fds), 0);
    assert_int_equal(
        qp_loop_start(share_on_post, share_on_stop, NULL, 0, &the_loop, err, sizeof(err)), QK_OK);
    for (uintptr_t k = 0; k < N_BACKLOG; k++)
        assert_true(qp_loop_post(the_loop, (void *)k));
    atomic_store(&backlog_queued, true);
    int64_t until = qk_now_ms() + 10000;
    while (qk_now_ms() < until && atomic_load(&items_run_when_fired) == 0) {
        struct timespec tick = {0, 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    qp_loop_stop(the_loop); /* what is still queued runs before the thread ends */
    qp_loop_free(the_loop);
    close(share_fds[0]);

    unsigned fired_at = atomic_load(&items_run_when_fired);
    unsigned ready_at = atomic_load(&hung_up_after);
    assert_true(fired_at > 0);
    assert_true(fired_at >= ready_at);
    assert_true(fired_at - ready_at <= QP_LOOP_POSTS_PER_PASS);
    assert_int_equal(atomic_load(&items_run), N_BACKLOG);
    assert_int_equal(order_broken, 0);
    assert_int_equal(last_item, N_BACKLOG - 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(timers_fire_in_due_order_ties_in_arming_order),
        cmocka_unit_test(batched_calls_run_once_after_the_pass_and_before_stop),
        cmocka_unit_test(a_posted_backlog_shares_the_passes_with_sockets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
