#include "mock_state.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "qwenkit/buf.h"

/* Every entry sits on two lists, both in arrival (seq) order, oldest first: its token's
 * (what the journal shows, bounded per token) and the global one (bounded in total). */
enum journal_list_kind { LIST_TOKEN, LIST_ALL, LIST_KINDS };

struct journal_list {
    struct journal_entry *head, *tail;
};

struct journal_entry {
    struct journal_entry *prev[LIST_KINDS], *next[LIST_KINDS];
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
    struct journal_list journal;
    size_t j_count;
    size_t in_flight; /* requests received but not yet journaled */
};

#define N_BUCKETS 4096

struct mock_state {
    pthread_mutex_t lock;
    struct token_rec *buckets[N_BUCKETS];
    struct journal_list all;
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

/* Requests finish out of order (a slow stream, or two server threads): insert after the
 * last entry received before this one, so the list stays in arrival order and its bound
 * drops the request that arrived first. Usually that is the tail. */
static void
list_insert_by_seq(struct journal_list *l, enum journal_list_kind k, struct journal_entry *e)
{
    struct journal_entry *after = l->tail;
    while (after && after->seq > e->seq)
        after = after->prev[k];
    e->prev[k] = after;
    e->next[k] = after ? after->next[k] : l->head;
    if (e->next[k])
        e->next[k]->prev[k] = e;
    else
        l->tail = e;
    if (after)
        after->next[k] = e;
    else
        l->head = e;
}

static void
list_unlink(struct journal_list *l, enum journal_list_kind k, struct journal_entry *e)
{
    if (e->prev[k])
        e->prev[k]->next[k] = e->next[k];
    else
        l->head = e->next[k];
    if (e->next[k])
        e->next[k]->prev[k] = e->prev[k];
    else
        l->tail = e->prev[k];
}

static void
drop_entry(struct mock_state *st, struct journal_entry *e)
{
    struct token_rec *r = e->owner;
    list_unlink(&r->journal, LIST_TOKEN, e);
    list_unlink(&st->all, LIST_ALL, e);
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
    list_insert_by_seq(&r->journal, LIST_TOKEN, e);
    list_insert_by_seq(&st->all, LIST_ALL, e);
    r->j_count++;
    st->total++;
    if (r->j_count > st->per_token_cap)
        drop_entry(st, r->journal.head);
    while (st->total > st->total_cap)
        drop_entry(st, st->all.head);
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
    for (struct journal_entry *e = r ? r->journal.head : NULL; e && rc == QK_OK;
         e = e->next[LIST_TOKEN]) {
        if (e != r->journal.head)
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
            struct journal_entry *e = r->journal.head;
            while (e) {
                struct journal_entry *n = e->next[LIST_TOKEN];
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
    st->all.head = st->all.tail = NULL;
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
