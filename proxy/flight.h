/**
 * @file flight.h
 * @brief Single flight for model-list misses (CACHE-4).
 *
 * When several requests with the same credential miss the cache at once, the first one
 * leads (goes upstream) and the others join its flight and wait; when the leader lands,
 * every waiter gets the leader's answer. Single-threaded (the upstream loop thread).
 * The registry stores waiters as borrowed pointers; it never frees them.
 */
#ifndef QP_FLIGHT_H
#define QP_FLIGHT_H

#include <stdbool.h>
#include <stddef.h>

#include "key.h"
#include "mutant.h"

struct qp_flights;

/** Whether concurrent misses of one key share a fetch. */
struct qp_flight_policy {
    bool single_flight; /**< one fetch per key, the others wait for it (CACHE-4) */
};

/** The one policy (const but in mutant builds, whose qp_mutant_apply() may edit it). */
extern QP_MUTANT_EDITABLE struct qp_flight_policy qp_flight_policy;

/** What qp_flight_join() decided. */
enum qp_flight_role {
    QP_FLIGHT_LEAD = 0,   /**< no flight was open: one is now, the caller fetches */
    QP_FLIGHT_JOINED = 1, /**< the waiter was added to an open flight */
    QP_FLIGHT_ALONE = 2,  /**< out of memory, or no single flight: fetch without one */
};

/** @return a new registry (NULL when out of memory); free with qp_flights_free(). */
struct qp_flights *qp_flights_new(void);

/** Frees the registry (not the waiters). NULL-safe. */
void qp_flights_free(struct qp_flights *f);

/** Joins the open flight of @p key as @p waiter (borrowed), or opens one; without
 * qp_flight_policy.single_flight, neither: QP_FLIGHT_ALONE. */
enum qp_flight_role qp_flight_join(struct qp_flights *f, struct qp_key key, void *waiter);

/**
 * Closes the flight of @p key.
 * @param[out] waiters a malloc'd array of the joined waiters (caller frees the array),
 *             NULL when there are none.
 * @return the number of waiters.
 */
size_t qp_flight_land(struct qp_flights *f, struct qp_key key, void ***waiters);

/** @return the number of open flights. */
size_t qp_flights_open(const struct qp_flights *f);

#endif
