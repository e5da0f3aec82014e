/* One thread that fires callbacks at deadlines: the mock's delays and stream
 * pacing resume suspended connections from here instead of sleeping. */
#ifndef MOCK_TIMER_H
#define MOCK_TIMER_H

#include <stdint.h>

#include "qwenkit/common.h"

struct mock_timer;

typedef void (*mock_timer_fn)(void *arg);

/** Starts the timer thread. Caller owns the result (mock_timer_stop()). */
QK_WUR enum qk_err mock_timer_start(struct mock_timer **out);

/** Calls fn(arg) on the timer thread at @p due_ms (qk_now_ms() clock). */
QK_WUR enum qk_err mock_timer_at(struct mock_timer *t, int64_t due_ms, mock_timer_fn fn, void *arg);

/** Fires every pending callback now, on the caller's thread (used before shutdown). */
void mock_timer_fire_all(struct mock_timer *t);

/** Stops the thread and frees the timer; pending callbacks are fired first. NULL-safe. */
void mock_timer_stop(struct mock_timer *t);

#endif
