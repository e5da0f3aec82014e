#include "mock_timer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct timer_entry {
    int64_t due;
    uint64_t seq; /* ties broken by insertion order */
    mock_timer_fn fn;
    void *arg;
};

/* A binary min-heap of entries guarded by one mutex. */
struct mock_timer {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    struct timer_entry *heap;
    size_t len, alloc;
    uint64_t seq;
    bool stopping;
};

static bool
before(const struct timer_entry *a, const struct timer_entry *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void
swap(struct timer_entry *a, struct timer_entry *b)
{
    struct timer_entry t = *a;
    *a = *b;
    *b = t;
}

static struct timer_entry
heap_pop(struct mock_timer *t)
{
    struct timer_entry top = t->heap[0];
    t->heap[0] = t->heap[--t->len];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->len && before(&t->heap[l], &t->heap[m]))
            m = l;
        if (r < t->len && before(&t->heap[r], &t->heap[m]))
            m = r;
        if (m == i)
            break;
        swap(&t->heap[i], &t->heap[m]);
        i = m;
    }
    return top;
}

static void *
timer_main(void *arg)
{
    struct mock_timer *t = arg;
    pthread_mutex_lock(&t->lock);
    while (!t->stopping) {
        if (t->len == 0) {
            pthread_cond_wait(&t->wake, &t->lock);
            continue;
        }
        int64_t now = qk_now_ms();
        if (t->heap[0].due > now) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t wait = t->heap[0].due - now;
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&t->wake, &t->lock, &ts);
            continue;
        }
        struct timer_entry e = heap_pop(t);
        /* Callbacks run unlocked so they may schedule more timers. */
        pthread_mutex_unlock(&t->lock);
        e.fn(e.arg);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

enum qk_err
mock_timer_start(struct mock_timer **out)
{
    struct mock_timer *t = calloc(1, sizeof *t);
    if (!t)
        return QK_NOMEM;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&t->thread, NULL, timer_main, t) != 0) {
        pthread_cond_destroy(&t->wake);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return QK_START;
    }
    *out = t;
    return QK_OK;
}

enum qk_err
mock_timer_at(struct mock_timer *t, int64_t due_ms, mock_timer_fn fn, void *arg)
{
    pthread_mutex_lock(&t->lock);
    if (t->len == t->alloc) {
        size_t n = t->alloc ? t->alloc * 2 : 256;
        struct timer_entry *h = realloc(t->heap, n * sizeof *h);
        if (!h) {
            pthread_mutex_unlock(&t->lock);
            return QK_NOMEM;
        }
        t->heap = h;
        t->alloc = n;
    }
    size_t i = t->len++;
    t->heap[i] = (struct timer_entry){due_ms, t->seq++, fn, arg};
    while (i > 0 && before(&t->heap[i], &t->heap[(i - 1) / 2])) {
        swap(&t->heap[i], &t->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    if (i == 0)
        pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    return QK_OK;
}

void
mock_timer_fire_all(struct mock_timer *t)
{
    pthread_mutex_lock(&t->lock);
    while (t->len > 0) {
        struct timer_entry e = heap_pop(t);
        pthread_mutex_unlock(&t->lock);
        e.fn(e.arg);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
}

void
mock_timer_stop(struct mock_timer *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    mock_timer_fire_all(t);
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->lock);
    free(t->heap);
    free(t);
}
