#include "cache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct qp_blob *
qp_blob_new(const char *data, size_t len)
{
    struct qp_blob *b = malloc(sizeof(*b) + len + 1);
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = len;
    if (len)
        memcpy(b->data, data, len);
    b->data[len] = '\0';
    return b;
}

struct qp_blob *
qp_blob_ref(struct qp_blob *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void
qp_blob_unref(struct qp_blob *b)
{
    /* acq_rel: the freeing thread sees every reader's last access done. */
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

/* Blob sizes count as their bodies' lengths, the quantity max_bytes bounds. */
static size_t
blob_len(const struct qp_blob *b)
{
    return b ? b->len : 0;
}

struct entry {
    struct qp_key key;
    struct qp_blob *body;
    struct qp_blob *derived; /* the derive hook's form of body, or NULL */
    int64_t stored_ms;
    struct entry *bucket_next; /* hash chain */
    struct entry *lru_prev;    /* towards most recently used */
    struct entry *lru_next;    /* towards least recently used */
};

struct qp_cache {
    pthread_mutex_t lock; /* guards everything below but the settings */
    size_t max_entries;
    size_t max_bytes;
    int64_t ttl_ms;
    int64_t grace_ms;
    qp_cache_derive_fn derive;
    size_t count;
    size_t bytes;    /* sum of the body and derived lengths over the entries */
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
    if (!c->buckets || pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c->buckets);
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
    c->bytes -= blob_len(e->body) + blob_len(e->derived);
    qp_blob_unref(e->body); /* a response still serving it keeps its own reference */
    qp_blob_unref(e->derived);
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
    pthread_mutex_destroy(&c->lock);
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

static struct qp_blob *
form_of(const struct entry *e, enum qp_cache_form form)
{
    return form == QP_CACHE_DERIVED ? e->derived : e->body;
}

/* Under the lock: finds @p key, drops it when past its grace time, and marks a fresh one
 * recently used when @p touch. */
static enum qp_cache_state
lookup_locked(struct qp_cache *c, struct qp_key key, int64_t now_ms, bool touch, struct entry **out)
{
    *out = find(c, key);
    if (!*out)
        return QP_CACHE_MISS;
    enum qp_cache_state st = state_of(c, *out, now_ms);
    if (st == QP_CACHE_MISS)
        *out = NULL;
    else if (touch && c->lru_head != *out) {
        lru_unlink(c, *out);
        lru_push_front(c, *out);
    }
    return st;
}

enum qp_cache_state
qp_cache_get_shared(struct qp_cache *c, struct qp_key key, int64_t now_ms, enum qp_cache_form form,
                    struct qp_blob **out)
{
    *out = NULL;
    struct entry *e = NULL;
    pthread_mutex_lock(&c->lock);
    /* Any entry found is marked used, a stale one too: it is about to be refreshed. */
    enum qp_cache_state st = lookup_locked(c, key, now_ms, true, &e);
    if (st == QP_CACHE_FRESH) {
        struct qp_blob *b = form_of(e, form);
        if (b)
            *out = qp_blob_ref(b);
        else
            st = QP_CACHE_MISS;
    }
    pthread_mutex_unlock(&c->lock);
    return st;
}

enum qp_cache_state
qp_cache_fallback_shared(struct qp_cache *c, struct qp_key key, int64_t now_ms,
                         enum qp_cache_form form, struct qp_blob **out)
{
    *out = NULL;
    struct entry *e = NULL;
    pthread_mutex_lock(&c->lock);
    enum qp_cache_state st = lookup_locked(c, key, now_ms, false, &e);
    if (st != QP_CACHE_MISS) {
        struct qp_blob *b = form_of(e, form);
        if (b)
            *out = qp_blob_ref(b);
        else
            st = QP_CACHE_MISS;
    }
    pthread_mutex_unlock(&c->lock);
    return st;
}

/* A malloc'd NUL-terminated copy of @p b (which it drops), NULL when out of memory. */
static char *
copy_out(struct qp_blob *b, size_t *len)
{
    char *p = malloc(b->len + 1);
    if (p) {
        memcpy(p, b->data, b->len + 1);
        *len = b->len;
    }
    qp_blob_unref(b);
    return p;
}

enum qp_cache_state
qp_cache_get(struct qp_cache *c, struct qp_key key, int64_t now_ms, enum qp_cache_form form,
             char **body, size_t *len)
{
    *body = NULL;
    *len = 0;
    struct qp_blob *b = NULL;
    enum qp_cache_state st = qp_cache_get_shared(c, key, now_ms, form, &b);
    if (st == QP_CACHE_FRESH) {
        *body = copy_out(b, len);
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
    struct qp_blob *b = NULL;
    enum qp_cache_state st = qp_cache_fallback_shared(c, key, now_ms, form, &b);
    if (st == QP_CACHE_MISS)
        return st;
    *body = copy_out(b, len);
    return *body ? st : QP_CACHE_MISS;
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
    struct qp_blob *copy = NULL;
    struct qp_blob *derived = NULL;
    struct entry *e = NULL;
    char *made = NULL;
    size_t made_len = 0;

    /* The costly part (the derived form, the copies) runs before the lock is taken, so
     * that the server threads' lookups never wait for it. A body over the bound is not
     * kept: do not pay for its derived form either. */
    bool keep = fits(c, 0, len);
    if (keep && c->derive)
        made = c->derive(body, len, &made_len);
    if (made) {
        derived = qp_blob_new(made, made_len);
        if (!derived) {
            rc = QK_NOMEM;
            keep = false;
        }
    }
    keep = keep && fits(c, len, blob_len(derived));
    if (keep) {
        copy = qp_blob_new(body, len);
        e = calloc(1, sizeof(*e));
        if (!copy || !e) {
            rc = QK_NOMEM;
            keep = false;
        }
    }

    pthread_mutex_lock(&c->lock);
    /* Whatever happens, the older list of this key is out of date. */
    struct entry *old = find(c, key);
    if (old)
        remove_entry(c, old);
    if (keep) {
        size_t bytes = len + blob_len(derived);
        /* Make room: least recently used first, by count and by bytes. */
        while (c->lru_tail &&
               ((c->max_entries && c->count >= c->max_entries) || !fits(c, c->bytes, bytes)))
            remove_entry(c, c->lru_tail);
        e->key = key;
        e->body = copy;
        e->derived = derived;
        e->stored_ms = now_ms;
        struct entry **slot = slot_of(c, key);
        e->bucket_next = *slot;
        *slot = e;
        lru_push_front(c, e);
        c->count++;
        c->bytes += bytes;
        copy = NULL;
        derived = NULL;
        e = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    free(made);
    qp_blob_unref(copy);
    qp_blob_unref(derived);
    free(e);
    return rc;
}

void
qp_cache_evict(struct qp_cache *c, struct qp_key key)
{
    pthread_mutex_lock(&c->lock);
    struct entry *e = find(c, key);
    if (e)
        remove_entry(c, e);
    pthread_mutex_unlock(&c->lock);
}

size_t
qp_cache_count(struct qp_cache *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->count;
    pthread_mutex_unlock(&c->lock);
    return n;
}

size_t
qp_cache_bytes(struct qp_cache *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->bytes;
    pthread_mutex_unlock(&c->lock);
    return n;
}
