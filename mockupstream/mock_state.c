#include "mock_state.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
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
    int64_t received_ms; /* -1 when unknown (added without a mock_flight) */
    char *auth;          /* the request's Authorization values, NUL-ended each; may be NULL */
    size_t auth_len;
    char *json;
};

struct token_rec {
    struct token_rec *hash_next;
    char *token;
    bool revoked;
    int revoked_delay_ms; /* how long a revoked request waits for its 401 */
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
    struct mock_flight *flying; /* requests in flight, newest first */
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
            /* A step for several requests stays at the head; each takes a copy. Out of
             * memory, the step itself is the last one taken. */
            struct mock_step *copy = s->times > 1 ? mock_step_copy(s) : NULL;
            if (copy) {
                s->times--;
                s = copy;
                break;
            }
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
mock_state_revoke(struct mock_state *st, const char *token, int delay_ms)
{
    pthread_mutex_lock(&st->lock);
    struct token_rec *r = find(st, token, true);
    if (r) {
        r->revoked = true;
        r->revoked_delay_ms = delay_ms;
    }
    pthread_mutex_unlock(&st->lock);
}

bool
mock_state_is_revoked(struct mock_state *st, const char *token, int *delay_ms)
{
    pthread_mutex_lock(&st->lock);
    struct token_rec *r = find(st, token, false);
    bool revoked = r && r->revoked;
    if (delay_ms)
        *delay_ms = revoked ? r->revoked_delay_ms : 0;
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
    free(e->auth);
    free(e->json);
    free(e);
    maybe_release(st, r);
}

static void add_locked(struct mock_state *st, const char *key, unsigned long seq,
                       const struct mock_flight *meta, char *entry_json);

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
    add_locked(st, key, seq, NULL, entry_json);
    pthread_mutex_unlock(&st->lock);
}

void
mock_state_request_begin(struct mock_state *st, struct mock_flight *f)
{
    pthread_mutex_lock(&st->lock);
    struct token_rec *r = find(st, f->key, true);
    if (r)
        r->in_flight++;
    f->_prev = NULL;
    f->_next = st->flying;
    if (st->flying)
        st->flying->_prev = f;
    st->flying = f;
    f->_counted = true;
    pthread_mutex_unlock(&st->lock);
}

static void
flight_unlink(struct mock_state *st, struct mock_flight *f)
{
    if (f->_prev)
        f->_prev->_next = f->_next;
    else
        st->flying = f->_next;
    if (f->_next)
        f->_next->_prev = f->_prev;
    f->_prev = f->_next = NULL;
    f->_counted = false;
}

void
mock_state_request_end(struct mock_state *st, struct mock_flight *f, unsigned long seq,
                       char *entry_json)
{
    pthread_mutex_lock(&st->lock);
    /* One lock for both, so no reader sees the request neither in flight nor journaled. */
    if (entry_json)
        add_locked(st, f->key, seq, f, entry_json);
    if (f->_counted) { /* not after a reset that came in between */
        flight_unlink(st, f);
        struct token_rec *r = find(st, f->key, false);
        if (r && r->in_flight) {
            r->in_flight--;
            maybe_release(st, r);
        }
    }
    pthread_mutex_unlock(&st->lock);
}

static void
add_locked(struct mock_state *st, const char *key, unsigned long seq,
           const struct mock_flight *meta, char *entry_json)
{
    struct journal_entry *e = calloc(1, sizeof *e);
    if (!e) {
        free(entry_json);
        return;
    }
    e->json = entry_json;
    e->seq = seq;
    e->received_ms = meta ? meta->received_ms : -1;
    if (meta && meta->auth_len) {
        e->auth = malloc(meta->auth_len);
        if (e->auth) {
            memcpy(e->auth, meta->auth, meta->auth_len);
            e->auth_len = meta->auth_len;
        }
    }
    struct token_rec *r = find(st, key, true);
    if (!r || (meta && meta->auth_len && !e->auth)) {
        free(entry_json);
        free(e->auth);
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

/* ---------- searching the whole journal ---------- */

enum query_param { QP_CONTAINS, QP_SINCE, QP_UNTIL, QP_NOT_TOKEN, QP_LIMIT, QP_COUNT };

static const char *const query_param_names[QP_COUNT] = {"contains", "since_ms", "until_ms",
                                                        "not_token", "limit"};

void
mock_journal_query_init(struct mock_journal_query *q)
{
    memset(q, 0, sizeof *q);
    q->since_ms = INT64_MIN;
    q->until_ms = INT64_MAX;
    q->limit = MOCK_SEARCH_LIMIT_DEFAULT;
}

static enum qk_err
query_fail(const char *name, const char *what, char *field, size_t field_len, char *msg,
           size_t msg_len)
{
    snprintf(field, field_len, "%.64s", name);
    snprintf(msg, msg_len, "%s", what);
    return QK_INVALID;
}

/* Plain decimal digits only (no sign, no space), at most 18 of them so the value fits an
 * int64_t with room to spare: CLOCK_MONOTONIC milliseconds are far smaller. */
static bool
parse_count(const char *v, int64_t *out)
{
    size_t n = v ? strlen(v) : 0;
    if (n == 0 || n > 18)
        return false;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        x = x * 10 + (v[i] - '0');
    }
    *out = x;
    return true;
}

enum qk_err
mock_journal_query_set(struct mock_journal_query *q, const char *name, const char *value,
                       char *field, size_t field_len, char *msg, size_t msg_len)
{
    int p = 0;
    while (p < QP_COUNT && strcmp(name, query_param_names[p]) != 0)
        p++;
    if (p == QP_COUNT)
        return query_fail(name,
                          "unknown journal parameter (token, or a search: contains, "
                          "since_ms, until_ms, not_token, limit)",
                          field, field_len, msg, msg_len);
    if (q->_given & (1u << p))
        return query_fail(name, "given more than once", field, field_len, msg, msg_len);
    q->_given |= 1u << p;
    int64_t n = 0;
    switch ((enum query_param)p) {
    case QP_CONTAINS:
    case QP_NOT_TOKEN:
        if (!value || !value[0])
            return query_fail(name, "must be a non-empty string", field, field_len, msg, msg_len);
        if (p == QP_CONTAINS)
            q->contains = value;
        else
            q->not_token = value;
        return QK_OK;
    case QP_SINCE:
    case QP_UNTIL:
        if (!parse_count(value, &n))
            return query_fail(name, "must be a non-negative integer (CLOCK_MONOTONIC ms)", field,
                              field_len, msg, msg_len);
        if (p == QP_SINCE)
            q->since_ms = n;
        else
            q->until_ms = n;
        return QK_OK;
    case QP_LIMIT:
        if (!parse_count(value, &n) || n < 1 || n > MOCK_SEARCH_LIMIT_MAX) {
            char m[64];
            snprintf(m, sizeof m, "must be an integer between 1 and %d", MOCK_SEARCH_LIMIT_MAX);
            return query_fail(name, m, field, field_len, msg, msg_len);
        }
        q->limit = (size_t)n;
        return QK_OK;
    case QP_COUNT:
        break;
    }
    return QK_INVALID;
}

enum qk_err
mock_journal_query_check(const struct mock_journal_query *q, char *field, size_t field_len,
                         char *msg, size_t msg_len)
{
    if (!q->contains && !q->not_token && q->since_ms == INT64_MIN && q->until_ms == INT64_MAX)
        return query_fail(q->_given & (1u << QP_LIMIT) ? "limit" : "token",
                          "a journal read needs token, or a search condition (contains, "
                          "since_ms, until_ms, not_token)",
                          field, field_len, msg, msg_len);
    if (q->until_ms < q->since_ms)
        return query_fail("until_ms", "must not be less than since_ms", field, field_len, msg,
                          msg_len);
    return QK_OK;
}

/* Does a request with these Authorization values, received then, match the query? */
static bool
query_matches(const struct mock_journal_query *q, int64_t received_ms, const char *auth,
              size_t auth_len)
{
    if (received_ms < q->since_ms || received_ms > q->until_ms)
        return false;
    if (q->contains) {
        bool found = false;
        for (size_t off = 0; off < auth_len && !found; off += strlen(auth + off) + 1)
            found = strstr(auth + off, q->contains) != NULL;
        if (!found)
            return false;
    }
    if (q->not_token) {
        /* The verbatim credential is exactly one value, exactly "Bearer T". */
        static const char scheme[] = "Bearer ";
        size_t tlen = strlen(q->not_token);
        bool verbatim = auth_len == sizeof scheme - 1 + tlen + 1 &&
                        memcmp(auth, scheme, sizeof scheme - 1) == 0 &&
                        memcmp(auth + sizeof scheme - 1, q->not_token, tlen) == 0 &&
                        auth[auth_len - 1] == '\0';
        if (verbatim)
            return false;
    }
    return true;
}

static bool
entry_matches(const struct mock_journal_query *q, const struct journal_entry *e)
{
    return query_matches(q, e->received_ms, e->auth, e->auth_len);
}

char *
mock_state_journal_search(struct mock_state *st, const struct mock_journal_query *q)
{
    struct qk_buf b;
    qk_buf_init(&b, SIZE_MAX / 2);
    size_t limit = q->limit ? q->limit : 1;
    pthread_mutex_lock(&st->lock);
    size_t in_flight = 0, matched = 0;
    for (const struct mock_flight *f = st->flying; f; f = f->_next)
        in_flight += query_matches(q, f->received_ms, f->auth, f->auth_len);
    /* Newest first, to find the oldest of the latest `limit` matches. */
    const struct journal_entry *first = NULL;
    for (const struct journal_entry *e = st->all.tail; e; e = e->prev[LIST_ALL])
        if (entry_matches(q, e) && ++matched <= limit)
            first = e;
    enum qk_err rc = qk_buf_appendf(&b,
                                    "{\"in_flight\":%zu,\"matched\":%zu,\"truncated\":%s,"
                                    "\"entries\":[",
                                    in_flight, matched, matched > limit ? "true" : "false");
    bool comma = false;
    for (const struct journal_entry *e = first; e && rc == QK_OK; e = e->next[LIST_ALL]) {
        if (!entry_matches(q, e))
            continue;
        if (comma)
            rc = qk_buf_append(&b, ",", 1);
        if (rc == QK_OK)
            rc = qk_buf_append_str(&b, e->json);
        comma = true;
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
                free(e->auth);
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
    /* Requests under way stay their owners' to end; they just stop counting, as their
     * tokens' in-flight counts went with the records. */
    while (st->flying)
        flight_unlink(st, st->flying);
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
