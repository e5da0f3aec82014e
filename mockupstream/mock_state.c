#include "mock_state.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "qwenkit/buf.h"

struct journal_entry {
    struct journal_entry *tok_prev, *tok_next; /* per-token list, oldest first */
    struct journal_entry *all_prev, *all_next; /* global list, oldest first */
    struct token_rec *owner;
    unsigned long seq;
    char *json;
};

struct token_rec {
    struct token_rec *hash_next;
    char *token;
    bool revoked;
    struct mock_step *queue_head[MOCK_ROUTE_COUNT];
    struct mock_step *queue_tail[MOCK_ROUTE_COUNT];
    struct journal_entry *j_head, *j_tail;
    size_t j_count;
    size_t in_flight; /* requests received but not yet journaled */
};

#define N_BUCKETS 4096

struct mock_state {
    pthread_mutex_t lock;
    struct token_rec *buckets[N_BUCKETS];
    struct journal_entry *all_head, *all_tail;
    size_t total, per_token_cap, total_cap;
};

static size_t
bucket_of(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h % N_BUCKETS;
}

struct mock_state *
mock_state_new(size_t per_token, size_t total)
{
    struct mock_state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    pthread_mutex_init(&st->lock, NULL);
    st->per_token_cap = per_token ? per_token : 1;
    st->total_cap = total ? total : 1;
    return st;
}

static struct token_rec *
find(struct mock_state *st, const char *token, bool create)
{
    size_t b = bucket_of(token);
    for (struct token_rec *r = st->buckets[b]; r; r = r->hash_next)
        if (strcmp(r->token, token) == 0)
            return r;
    if (!create)
        return NULL;
    struct token_rec *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->token = strdup(token);
    if (!r->token) {
        free(r);
        return NULL;
    }
    r->hash_next = st->buckets[b];
    st->buckets[b] = r;
    return r;
}

/* Frees a record that holds nothing any more, so a flood of one-shot tokens does
 * not grow the table without end. */
static void
maybe_release(struct mock_state *st, struct token_rec *r)
{
    if (r->revoked || r->j_count || r->in_flight)
        return;
    for (int i = 0; i < MOCK_ROUTE_COUNT; i++)
        if (r->queue_head[i])
            return;
    struct token_rec **pp = &st->buckets[bucket_of(r->token)];
    while (*pp != r)
        pp = &(*pp)->hash_next;
    *pp = r->hash_next;
    free(r->token);
    free(r);
}

size_t
mock_state_queue(struct mock_state *st, struct mock_scenario *list)
{
    size_t n = 0;
    pthread_mutex_lock(&st->lock);
    for (struct mock_scenario *sc = list; sc; sc = sc->next) {
        struct token_rec *r = find(st, sc->token, true);
        if (!r)
            break;
        while (sc->steps) {
            struct mock_step *s = sc->steps;
            sc->steps = s->next;
            s->next = NULL;
            if (r->queue_tail[sc->route])
                r->queue_tail[sc->route]->next = s;
            else
                r->queue_head[sc->route] = s;
            r->queue_tail[sc->route] = s;
            n++;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return n;
}

struct mock_step *
mock_state_take_step(struct mock_state *st, const char *token, enum mock_route route)
{
    struct mock_step *s = NULL;
    pthread_mutex_lock(&st->lock);
    struct token_rec *r = find(st, token, false);
    if (r) {
        enum mock_route order[2] = {route, MOCK_ROUTE_ANY};
        for (int i = 0; i < 2 && !s; i++) {
            enum mock_route q = order[i];
            if (q >= MOCK_ROUTE_COUNT || !r->queue_head[q])
                continue;
            s = r->queue_head[q];
            r->queue_head[q] = s->next;
            if (!r->queue_head[q])
                r->queue_tail[q] = NULL;
            s->next = NULL;
        }
        maybe_release(st, r);
    }
    pthread_mutex_unlock(&st->lock);
    return s;
}

void
mock_state_revoke(struct mock_state *st, const char *token)
{
    pthread_mutex_lock(&st->lock);
    struct token_rec *r = find(st, token, true);
    if (r)
        r->revoked = true;
    pthread_mutex_unlock(&st->lock);
}

bool
mock_state_is_revoked(struct mock_state *st, const char *token)
{
    pthread_mutex_lock(&st->lock);
    struct token_rec *r = find(st, token, false);
    bool revoked = r && r->revoked;
    pthread_mutex_unlock(&st->lock);
    return revoked;
}

static void
drop_entry(struct mock_state *st, struct journal_entry *e)
{
    struct token_rec *r = e->owner;
    if (e->tok_prev)
        e->tok_prev->tok_next = e->tok_next;
    else
        r->j_head = e->tok_next;
    if (e->tok_next)
        e->tok_next->tok_prev = e->tok_prev;
    else
        r->j_tail = e->tok_prev;
    if (e->all_prev)
        e->all_prev->all_next = e->all_next;
    else
        st->all_head = e->all_next;
    if (e->all_next)
        e->all_next->all_prev = e->all_prev;
    else
        st->all_tail = e->all_prev;
    r->j_count--;
    st->total--;
    free(e->json);
    free(e);
    maybe_release(st, r);
}

static void add_locked(struct mock_state *st, const char *key, unsigned long seq,
                       char *entry_json);

void
mock_state_journal_add(struct mock_state *st, const char *key, char *entry_json)
{
    mock_state_journal_add_seq(st, key, ULONG_MAX, entry_json);
}

void
mock_state_journal_add_seq(struct mock_state *st, const char *key, unsigned long seq,
                           char *entry_json)
{
    pthread_mutex_lock(&st->lock);
    add_locked(st, key, seq, entry_json);
    pthread_mutex_unlock(&st->lock);
}

void
mock_state_request_begin(struct mock_state *st, const char *key)
{
    pthread_mutex_lock(&st->lock);
    struct token_rec *r = find(st, key, true);
    if (r)
        r->in_flight++;
    pthread_mutex_unlock(&st->lock);
}

void
mock_state_request_end(struct mock_state *st, const char *key, unsigned long seq,
                       char *entry_json)
{
    pthread_mutex_lock(&st->lock);
    /* One lock for both, so no reader sees the request neither in flight nor journaled. */
    if (entry_json)
        add_locked(st, key, seq, entry_json);
    struct token_rec *r = find(st, key, false);
    if (r && r->in_flight) { /* 0 after a reset that came in between */
        r->in_flight--;
        maybe_release(st, r);
    }
    pthread_mutex_unlock(&st->lock);
}

static void
add_locked(struct mock_state *st, const char *key, unsigned long seq, char *entry_json)
{
    struct journal_entry *e = calloc(1, sizeof *e);
    if (!e) {
        free(entry_json);
        return;
    }
    e->json = entry_json;
    e->seq = seq;
    struct token_rec *r = find(st, key, true);
    if (!r) {
        free(entry_json);
        free(e);
        return;
    }
    e->owner = r;
    /* Requests finish out of order (a slow stream, or two server threads): insert
     * after the last entry received before this one, so the token's journal stays
     * in the order the requests arrived. Usually that is the tail. */
    struct journal_entry *after = r->j_tail;
    while (after && after->seq > seq)
        after = after->tok_prev;
    e->tok_prev = after;
    e->tok_next = after ? after->tok_next : r->j_head;
    if (e->tok_next)
        e->tok_next->tok_prev = e;
    else
        r->j_tail = e;
    if (after)
        after->tok_next = e;
    else
        r->j_head = e;
    r->j_count++;
    /* The global list keeps arrival order too, so the total cap evicts the
     * request that arrived first, not the one that happened to finish first. */
    struct journal_entry *all_after = st->all_tail;
    while (all_after && all_after->seq > seq)
        all_after = all_after->all_prev;
    e->all_prev = all_after;
    e->all_next = all_after ? all_after->all_next : st->all_head;
    if (e->all_next)
        e->all_next->all_prev = e;
    else
        st->all_tail = e;
    if (all_after)
        all_after->all_next = e;
    else
        st->all_head = e;
    st->total++;
    if (r->j_count > st->per_token_cap)
        drop_entry(st, r->j_head);
    while (st->total > st->total_cap)
        drop_entry(st, st->all_head);
}

char *
mock_state_journal_json(struct mock_state *st, const char *key)
{
    struct qk_buf b;
    qk_buf_init(&b, SIZE_MAX / 2);
    char fp[QK_LIMIT_FINGERPRINT];
    qk_token_fingerprint(key, strlen(key), fp);
    pthread_mutex_lock(&st->lock);
    struct token_rec *r = find(st, key, false);
    enum qk_err rc = qk_buf_appendf(&b, "{\"token\":\"%s\",\"in_flight\":%zu,\"entries\":[", fp,
                                    r ? r->in_flight : 0);
    for (struct journal_entry *e = r ? r->j_head : NULL; e && rc == QK_OK; e = e->tok_next) {
        if (e != r->j_head)
            rc = qk_buf_append(&b, ",", 1);
        if (rc == QK_OK)
            rc = qk_buf_append_str(&b, e->json);
    }
    pthread_mutex_unlock(&st->lock);
    if (rc == QK_OK)
        rc = qk_buf_append_str(&b, "]}");
    if (rc != QK_OK) {
        qk_buf_free(&b);
        return NULL;
    }
    return qk_buf_take(&b, NULL);
}

static void
clear_locked(struct mock_state *st)
{
    for (size_t b = 0; b < N_BUCKETS; b++) {
        struct token_rec *r = st->buckets[b];
        while (r) {
            struct token_rec *next = r->hash_next;
            for (int q = 0; q < MOCK_ROUTE_COUNT; q++) {
                struct mock_step *s = r->queue_head[q];
                while (s) {
                    struct mock_step *n = s->next;
                    mock_step_free(s);
                    s = n;
                }
            }
            struct journal_entry *e = r->j_head;
            while (e) {
                struct journal_entry *n = e->tok_next;
                free(e->json);
                free(e);
                e = n;
            }
            free(r->token);
            free(r);
            r = next;
        }
        st->buckets[b] = NULL;
    }
    st->all_head = st->all_tail = NULL;
    st->total = 0;
}

void
mock_state_reset(struct mock_state *st)
{
    pthread_mutex_lock(&st->lock);
    clear_locked(st);
    pthread_mutex_unlock(&st->lock);
}

size_t
mock_state_journal_total(struct mock_state *st)
{
    pthread_mutex_lock(&st->lock);
    size_t n = st->total;
    pthread_mutex_unlock(&st->lock);
    return n;
}

void
mock_state_free(struct mock_state *st)
{
    if (!st)
        return;
    clear_locked(st);
    pthread_mutex_destroy(&st->lock);
    free(st);
}
