/**
 * @file cache.h
 * @brief The model-list cache: per credential, TTL, stale grace, bounded LRU (CACHE-1..7).
 *
 * Thread-safe: the server threads look entries up (a hit is answered where it arrives) while
 * the upstream loop thread stores, evicts and reads fallbacks; one mutex guards the index,
 * held only for the lookup itself. Bodies are immutable, reference-counted blobs
 * (struct qp_blob), so a hit shares the stored bytes with its response instead of copying
 * them, and an entry replaced or evicted meanwhile lives on until its last reader is done.
 * Time is passed in by the caller (milliseconds on any monotonic clock), which keeps the
 * expiry rules testable without sleeping.
 *
 * An entry is FRESH for ttl_ms after it was stored, then STALE for grace_ms more (served
 * only when a refresh fails, CACHE-6), then gone.
 *
 * Two bounds, both LRU (CACHE-7): at most max_entries entries, and at most max_bytes bytes
 * of bodies. An entry holds its body and, when the cache has a derive hook, the body's
 * derived form (the /v1/models shape), made once when the entry is stored so that hits
 * never redo that costly conversion; both count against max_bytes. Storing evicts the
 * least recently used entries until everything fits; an entry larger than max_bytes on its
 * own is not kept at all (the caller serves it anyway).
 */
#ifndef QP_CACHE_H
#define QP_CACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "key.h"
#include "qwenkit/common.h"

struct qp_cache;

/**
 * An immutable, reference-counted body: @p len bytes at @p data, NUL-terminated. Shared by
 * a cache entry and the responses that serve it; the last qp_blob_unref() frees it.
 */
struct qp_blob {
    atomic_uint refs; /**< use qp_blob_ref() / qp_blob_unref() */
    size_t len;
    char data[];
};

/** @return a new blob holding a copy of @p len bytes at @p data (one reference, the
 *  caller's), or NULL when out of memory. */
struct qp_blob *qp_blob_new(const char *data, size_t len);

/** Takes one more reference to @p b; @return @p b. */
struct qp_blob *qp_blob_ref(struct qp_blob *b);

/** Drops one reference; the last one frees the blob. NULL-safe. */
void qp_blob_unref(struct qp_blob *b);

/** What a lookup found. */
enum qp_cache_state {
    QP_CACHE_MISS = 0,  /**< nothing usable */
    QP_CACHE_FRESH = 1, /**< within the TTL: serve it */
    QP_CACHE_STALE = 2, /**< expired but within the grace time: refresh, keep as fallback */
};

/** Which form of an entry a lookup wants. */
enum qp_cache_form {
    QP_CACHE_BODY = 0,    /**< the body as stored */
    QP_CACHE_DERIVED = 1, /**< the derive hook's form of it (a miss when there is none) */
};

/**
 * Makes the derived form of @p body (the cache calls it once per stored entry).
 * @return a malloc'd NUL-terminated body (the cache takes it) with its length in
 *         @p out_len, or NULL when @p body has no derived form (or out of memory).
 */
typedef char *(*qp_cache_derive_fn)(const char *body, size_t len, size_t *out_len);

/**
 * @return a new empty cache, or NULL when out of memory; free with qp_cache_free().
 * @param max_entries bound on entries (0 means unbounded).
 * @param max_bytes bound on the bytes of bodies and derived forms held (0 means unbounded).
 * @param derive makes the derived form of each stored body, or NULL for none.
 */
struct qp_cache *qp_cache_new(size_t max_entries, size_t max_bytes, int64_t ttl_ms,
                              int64_t grace_ms, qp_cache_derive_fn derive);

/** Frees the cache and every entry. NULL-safe. */
void qp_cache_free(struct qp_cache *c);

/**
 * Looks @p key up at time @p now_ms and marks it recently used.
 * On QP_CACHE_FRESH, @p body receives a malloc'd NUL-terminated copy of the entry's
 * @p form (caller frees) and @p len its length; otherwise *body is NULL. An entry without
 * the form asked for is a miss. Entries past their grace time are dropped.
 */
enum qp_cache_state qp_cache_get(struct qp_cache *c, struct qp_key key, int64_t now_ms,
                                 enum qp_cache_form form, char **body, size_t *len);

/**
 * Like qp_cache_get(), without a copy: on QP_CACHE_FRESH, @p out receives a reference to
 * the entry's @p form (the caller drops it with qp_blob_unref()); otherwise *out is NULL.
 */
enum qp_cache_state qp_cache_get_shared(struct qp_cache *c, struct qp_key key, int64_t now_ms,
                                        enum qp_cache_form form, struct qp_blob **out);

/**
 * Like qp_cache_get_fallback(), without a copy: on QP_CACHE_FRESH or QP_CACHE_STALE,
 * @p out receives a reference to the entry's @p form (caller drops it with
 * qp_blob_unref()); otherwise *out is NULL.
 */
enum qp_cache_state qp_cache_fallback_shared(struct qp_cache *c, struct qp_key key, int64_t now_ms,
                                             enum qp_cache_form form, struct qp_blob **out);

/**
 * Returns a copy of the entry's @p form (fresh or stale) when it is still within TTL +
 * grace.
 * @return QP_CACHE_FRESH or QP_CACHE_STALE with *body malloc'd (caller frees), or
 *         QP_CACHE_MISS with *body NULL.
 */
enum qp_cache_state qp_cache_get_fallback(struct qp_cache *c, struct qp_key key, int64_t now_ms,
                                          enum qp_cache_form form, char **body, size_t *len);

/**
 * Stores a copy of @p body (and its derived form) for @p key at @p now_ms, replacing any
 * older entry and evicting least recently used ones until both bounds hold. When the new
 * entry alone exceeds max_bytes it is not stored, and the older entry of @p key is dropped
 * (it is out of date); QK_OK all the same. On QK_NOMEM the older entry is dropped too.
 */
QK_WUR enum qk_err qp_cache_put(struct qp_cache *c, struct qp_key key, const char *body, size_t len,
                                int64_t now_ms);

/** Drops the entry of @p key, if any (a 401 on refresh, CACHE-6). */
void qp_cache_evict(struct qp_cache *c, struct qp_key key);

/** @return the number of entries held. */
size_t qp_cache_count(struct qp_cache *c);

/** @return the bytes held: bodies and derived forms, the quantity max_bytes bounds. */
size_t qp_cache_bytes(struct qp_cache *c);

#endif
