#include "cache.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct qp_key key;
    char *body;
    size_t len;
    char *derived; /* the derive hook's form of body, or NULL */
    size_t derived_len;
    int64_t stored_ms;
    struct entry *bucket_next; /* hash chain */
    struct entry *lru_prev;    /* towards most recently used */
    struct entry *lru_next;    /* towards least recently used */
};

struct qp_cache {
    size_t max_entries;
    size_t max_bytes;
    int64_t ttl_ms;
    int64_t grace_ms;
    qp_cache_derive_fn derive;
    size_t count;
    size_t bytes;    /* sum of len + derived_len over the entries */
    size_t nbuckets; /* power of two */
    struct entry **buckets;
    struct entry *lru_head; /* most recently used */
    struct entry *lru_tail; /* least recently used */
};

struct qp_cache *
qp_cache_new(size_t max_entries, size_t max_bytes, int64_t ttl_ms, int64_t grace_ms,
             qp_cache_derive_fn derive)
{
    struct qp_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    size_t want = max_entries ? max_entries : 4096;
    c->nbuckets = 64;
    while (c->nbuckets < want && c->nbuckets < 65536)
        c->nbuckets *= 2;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->max_entries = max_entries;
    c->max_bytes = max_bytes;
    c->ttl_ms = ttl_ms;
    c->grace_ms = grace_ms;
    c->derive = derive;
    return c;
}

static struct entry **
slot_of(struct qp_cache *c, struct qp_key key)
{
    return &c->buckets[key.lo & (c->nbuckets - 1)];
}

static void
lru_unlink(struct qp_cache *c, struct entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void
lru_push_front(struct qp_cache *c, struct entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (!c->lru_tail)
        c->lru_tail = e;
}

static void
remove_entry(struct qp_cache *c, struct entry *e)
{
    struct entry **pp = slot_of(c, e->key);
    while (*pp && *pp != e)
        pp = &(*pp)->bucket_next;
    if (*pp)
        *pp = e->bucket_next;
    lru_unlink(c, e);
    c->bytes -= e->len + e->derived_len;
    free(e->body);
    free(e->derived);
    free(e);
    c->count--;
}

static struct entry *
find(struct qp_cache *c, struct qp_key key)
{
    for (struct entry *e = *slot_of(c, key); e; e = e->bucket_next) {
        if (qp_key_equal(e->key, key))
            return e;
    }
    return NULL;
}

void
qp_cache_free(struct qp_cache *c)
{
    if (!c)
        return;
    while (c->lru_head)
        remove_entry(c, c->lru_head);
    free(c->buckets);
    free(c);
}

/* Classifies @p e at @p now, dropping it when it is past its grace time. */
static enum qp_cache_state
state_of(struct qp_cache *c, struct entry *e, int64_t now_ms)
{
    int64_t age = now_ms - e->stored_ms;
    if (age < c->ttl_ms)
        return QP_CACHE_FRESH;
    if (age < c->ttl_ms + c->grace_ms)
        return QP_CACHE_STALE;
    remove_entry(c, e);
    return QP_CACHE_MISS;
}

/* A malloc'd copy of @p e's @p form, or NULL (no such form, or out of memory). */
static char *
copy_form(const struct entry *e, enum qp_cache_form form, size_t *len)
{
    const char *src = form == QP_CACHE_DERIVED ? e->derived : e->body;
    size_t n = form == QP_CACHE_DERIVED ? e->derived_len : e->len;
    if (!src)
        return NULL;
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, src, n);
        p[n] = '\0';
        *len = n;
    }
    return p;
}

enum qp_cache_state
qp_cache_get(struct qp_cache *c, struct qp_key key, int64_t now_ms, enum qp_cache_form form,
             char **body, size_t *len)
{
    *body = NULL;
    *len = 0;
    struct entry *e = find(c, key);
    if (!e)
        return QP_CACHE_MISS;
    enum qp_cache_state st = state_of(c, e, now_ms);
    if (st == QP_CACHE_MISS)
        return st;
    lru_unlink(c, e);
    lru_push_front(c, e);
    if (st == QP_CACHE_FRESH) {
        *body = copy_form(e, form, len);
        if (!*body)
            return QP_CACHE_MISS;
    }
    return st;
}

enum qp_cache_state
qp_cache_get_fallback(struct qp_cache *c, struct qp_key key, int64_t now_ms,
                      enum qp_cache_form form, char **body, size_t *len)
{
    *body = NULL;
    *len = 0;
    struct entry *e = find(c, key);
    if (!e)
        return QP_CACHE_MISS;
    enum qp_cache_state st = state_of(c, e, now_ms);
    if (st == QP_CACHE_MISS)
        return st;
    *body = copy_form(e, form, len);
    if (!*body)
        return QP_CACHE_MISS;
    return st;
}

/* True when @p bytes more fit under the byte bound once the cache holds @p held. */
static bool
fits(const struct qp_cache *c, size_t held, size_t bytes)
{
    return !c->max_bytes || (bytes <= c->max_bytes && held <= c->max_bytes - bytes);
}

enum qk_err
qp_cache_put(struct qp_cache *c, struct qp_key key, const char *body, size_t len, int64_t now_ms)
{
    enum qk_err rc = QK_OK;
    char *copy = NULL;
    char *derived = NULL;
    size_t derived_len = 0;
    struct entry *e = find(c, key);

    /* Whatever happens, the older list of this key is out of date. */
    if (e)
        remove_entry(c, e);
    e = NULL;
    /* A body over the bound is not kept: do not pay for its derived form either. */
    if (!fits(c, 0, len))
        goto out;
    if (c->derive)
        derived = c->derive(body, len, &derived_len);
    if (!derived)
        derived_len = 0;
    if (!fits(c, len, derived_len))
        goto out;
    copy = malloc(len + 1);
    e = calloc(1, sizeof(*e));
    if (!copy || !e) {
        rc = QK_NOMEM;
        goto out;
    }
    memcpy(copy, body, len);
    copy[len] = '\0';

    /* Make room: least recently used first, by count and by bytes. */
    while (c->lru_tail && ((c->max_entries && c->count >= c->max_entries) ||
                           !fits(c, c->bytes, len + derived_len)))
        remove_entry(c, c->lru_tail);

    e->key = key;
    e->body = copy;
    e->len = len;
    e->derived = derived;
    e->derived_len = derived_len;
    e->stored_ms = now_ms;
    struct entry **slot = slot_of(c, key);
    e->bucket_next = *slot;
    *slot = e;
    lru_push_front(c, e);
    c->count++;
    c->bytes += len + derived_len;
    copy = NULL;
    derived = NULL;
    e = NULL;
out:
    free(copy);
    free(derived);
    free(e);
    return rc;
}

void
qp_cache_evict(struct qp_cache *c, struct qp_key key)
{
    struct entry *e = find(c, key);
    if (e)
        remove_entry(c, e);
}

size_t
qp_cache_count(const struct qp_cache *c)
{
    return c->count;
}

size_t
qp_cache_bytes(const struct qp_cache *c)
{
    return c->bytes;
}
