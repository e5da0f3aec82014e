/**
 * @file cache.h
 * @brief The model-list cache: per credential, TTL, stale grace, bounded LRU (CACHE-1..7).
 *
 * Single-threaded: only the upstream loop thread touches a cache, so there is no lock.
 * Time is passed in by the caller (milliseconds on any monotonic clock), which keeps the
 * expiry rules testable without sleeping.
 *
 * An entry is FRESH for ttl_ms after it was stored, then STALE for grace_ms more (served
 * only when a refresh fails, CACHE-6), then gone. When the cache holds max_entries and a new
 * credential is stored, the least recently used entry is dropped (CACHE-7).
 */
#ifndef QP_CACHE_H
#define QP_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "key.h"
#include "qwenkit/common.h"

struct qp_cache;

/** What a lookup found. */
enum qp_cache_state {
    QP_CACHE_MISS = 0,  /**< nothing usable */
    QP_CACHE_FRESH = 1, /**< within the TTL: serve it */
    QP_CACHE_STALE = 2, /**< expired but within the grace time: refresh, keep as fallback */
};

/**
 * @return a new empty cache, or NULL when out of memory; free with qp_cache_free().
 * @param max_entries bound on entries (0 means unbounded, for the unbounded_cache mutant).
 */
struct qp_cache *qp_cache_new(size_t max_entries, int64_t ttl_ms, int64_t grace_ms);

/** Frees the cache and every entry. NULL-safe. */
void qp_cache_free(struct qp_cache *c);

/**
 * Looks @p key up at time @p now_ms and marks it recently used.
 * On QP_CACHE_FRESH, @p body receives a malloc'd NUL-terminated copy (caller frees) and
 * @p len its length; otherwise *body is NULL. Entries past their grace time are dropped.
 */
enum qp_cache_state qp_cache_get(struct qp_cache *c, struct qp_key key, int64_t now_ms, char **body,
                                 size_t *len);

/**
 * Returns a copy of the entry (fresh or stale) when it is still within TTL + grace.
 * @return QP_CACHE_FRESH or QP_CACHE_STALE with *body malloc'd (caller frees), or
 *         QP_CACHE_MISS with *body NULL.
 */
enum qp_cache_state qp_cache_get_fallback(struct qp_cache *c, struct qp_key key, int64_t now_ms,
                                          char **body, size_t *len);

/** Stores a copy of @p body for @p key at @p now_ms, replacing any older entry. */
QK_WUR enum qk_err qp_cache_put(struct qp_cache *c, struct qp_key key, const char *body, size_t len,
                                int64_t now_ms);

/** Drops the entry of @p key, if any (a 401 on refresh, CACHE-6). */
void qp_cache_evict(struct qp_cache *c, struct qp_key key);

/** @return the number of entries held. */
size_t qp_cache_count(const struct qp_cache *c);

#endif
