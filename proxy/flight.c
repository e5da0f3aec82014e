#include "flight.h"

#include <stdlib.h>

QP_MUTANT_EDITABLE struct qp_flight_policy qp_flight_policy = {.single_flight = true};

struct flight {
    struct qp_key key;
    void **waiters;
    size_t count;
    size_t alloc;
    struct flight *next;
};

struct qp_flights {
    struct flight *open; /* few at a time: one per credential being fetched */
    size_t n;
};

struct qp_flights *
qp_flights_new(void)
{
    return calloc(1, sizeof(struct qp_flights));
}

void
qp_flights_free(struct qp_flights *f)
{
    if (!f)
        return;
    while (f->open) {
        struct flight *next = f->open->next;
        free(f->open->waiters);
        free(f->open);
        f->open = next;
    }
    free(f);
}

static struct flight **
find(struct qp_flights *f, struct qp_key key)
{
    struct flight **pp = &f->open;
    while (*pp && !qp_key_equal((*pp)->key, key))
        pp = &(*pp)->next;
    return pp;
}

enum qp_flight_role
qp_flight_join(struct qp_flights *f, struct qp_key key, void *waiter)
{
    if (!qp_flight_policy.single_flight)
        return QP_FLIGHT_ALONE;
    struct flight **pp = find(f, key);
    if (*pp) {
        struct flight *fl = *pp;
        if (fl->count == fl->alloc) {
            size_t alloc = fl->alloc ? fl->alloc * 2 : 4;
            void **w = realloc(fl->waiters, alloc * sizeof(*w));
            if (!w)
                return QP_FLIGHT_ALONE;
            fl->waiters = w;
            fl->alloc = alloc;
        }
        fl->waiters[fl->count++] = waiter;
        return QP_FLIGHT_JOINED;
    }
    struct flight *fl = calloc(1, sizeof(*fl));
    if (!fl)
        return QP_FLIGHT_ALONE;
    fl->key = key;
    fl->next = f->open;
    f->open = fl;
    f->n++;
    return QP_FLIGHT_LEAD;
}

size_t
qp_flight_land(struct qp_flights *f, struct qp_key key, void ***waiters)
{
    *waiters = NULL;
    struct flight **pp = find(f, key);
    if (!*pp)
        return 0;
    struct flight *fl = *pp;
    *pp = fl->next;
    f->n--;
    size_t n = fl->count;
    *waiters = fl->waiters;
    if (!n) {
        free(fl->waiters);
        *waiters = NULL;
    }
    free(fl);
    return n;
}

size_t
qp_flights_open(const struct qp_flights *f)
{
    return f->n;
}
