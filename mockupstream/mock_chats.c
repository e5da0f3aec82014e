#include "mock_chats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------- uuids ---------- */

static pthread_once_t seed_once = PTHREAD_ONCE_INIT;
static uint64_t seed;
static atomic_uint_fast64_t uuid_counter;

static void
init_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

/* splitmix64: distinct counters give well-spread, distinct outputs. */
static uint64_t
mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15u;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
    return x ^ (x >> 31);
}

void
mock_uuid(char out[MOCK_UUID_LEN])
{
    pthread_once(&seed_once, init_seed);
    uint64_t n = atomic_fetch_add(&uuid_counter, 2);
    uint64_t hi = mix(seed ^ n), lo = mix(seed ^ (n + 1));
    hi = (hi & ~(uint64_t)0xF000) | 0x4000;                /* version 4 */
    lo = (lo & 0x3FFFFFFFFFFFFFFFu) | 0x8000000000000000u; /* variant 10 */
    snprintf(out, MOCK_UUID_LEN, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(hi >> 32),
             (unsigned)((hi >> 16) & 0xFFFF), (unsigned)(hi & 0xFFFF), (unsigned)(lo >> 48),
             (unsigned long long)(lo & 0xFFFFFFFFFFFFu));
}

/* ---------- the registry ---------- */

#define N_BUCKETS 4096

struct chat {
    struct chat *hash_next;
    struct chat *older, *newer; /* creation order, for the bound */
    char id[MOCK_UUID_LEN];
    char *key;
    char model[MOCK_CHAT_MODEL_LEN];
    bool answering;
    size_t n_responses;
    char responses[MOCK_CHAT_RESPONSES][MOCK_UUID_LEN]; /* a ring of the latest */
};

struct mock_chats {
    pthread_mutex_t lock;
    struct chat *buckets[N_BUCKETS];
    struct chat *oldest, *newest;
    size_t count, cap;
};

static size_t
bucket_of(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h % N_BUCKETS;
}

struct mock_chats *
mock_chats_new(size_t cap)
{
    struct mock_chats *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->cap = cap ? cap : 1;
    return c;
}

static struct chat *
find_locked(struct mock_chats *c, const char *id)
{
    for (struct chat *ch = c->buckets[bucket_of(id)]; ch; ch = ch->hash_next)
        if (strcmp(ch->id, id) == 0)
            return ch;
    return NULL;
}

static void
drop_locked(struct mock_chats *c, struct chat *ch)
{
    struct chat **pp = &c->buckets[bucket_of(ch->id)];
    while (*pp != ch)
        pp = &(*pp)->hash_next;
    *pp = ch->hash_next;
    if (ch->older)
        ch->older->newer = ch->newer;
    else
        c->oldest = ch->newer;
    if (ch->newer)
        ch->newer->older = ch->older;
    else
        c->newest = ch->older;
    c->count--;
    free(ch->key);
    free(ch);
}

static void
clear_locked(struct mock_chats *c)
{
    while (c->oldest)
        drop_locked(c, c->oldest);
}

void
mock_chats_free(struct mock_chats *c)
{
    if (!c)
        return;
    clear_locked(c);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void
mock_chats_reset(struct mock_chats *c)
{
    pthread_mutex_lock(&c->lock);
    clear_locked(c);
    pthread_mutex_unlock(&c->lock);
}

enum qk_err
mock_chats_create(struct mock_chats *c, const char *key, const char *model, char id[MOCK_UUID_LEN])
{
    struct chat *ch = calloc(1, sizeof *ch);
    if (!ch)
        return QK_NOMEM;
    ch->key = strdup(key);
    if (!ch->key) {
        free(ch);
        return QK_NOMEM;
    }
    snprintf(ch->model, sizeof ch->model, "%s", model);
    mock_uuid(ch->id);
    memcpy(id, ch->id, MOCK_UUID_LEN);
    pthread_mutex_lock(&c->lock);
    size_t b = bucket_of(ch->id);
    ch->hash_next = c->buckets[b];
    c->buckets[b] = ch;
    ch->older = c->newest;
    if (c->newest)
        c->newest->newer = ch;
    else
        c->oldest = ch;
    c->newest = ch;
    c->count++;
    while (c->count > c->cap)
        drop_locked(c, c->oldest);
    pthread_mutex_unlock(&c->lock);
    return QK_OK;
}

static void
copy_info(const struct chat *ch, struct mock_chat_info *out)
{
    memcpy(out->model, ch->model, sizeof out->model);
    out->answering = ch->answering;
    out->n_responses = ch->n_responses;
    out->last_response[0] = '\0';
    if (ch->n_responses)
        memcpy(out->last_response, ch->responses[(ch->n_responses - 1) % MOCK_CHAT_RESPONSES],
               MOCK_UUID_LEN);
}

bool
mock_chats_find(struct mock_chats *c, const char *id, const char *key, struct mock_chat_info *out)
{
    pthread_mutex_lock(&c->lock);
    struct chat *ch = find_locked(c, id);
    bool ok = ch && strcmp(ch->key, key) == 0;
    if (ok && out)
        copy_info(ch, out);
    pthread_mutex_unlock(&c->lock);
    return ok;
}

enum mock_chat_begin
mock_chats_begin(struct mock_chats *c, const char *id, const char *key,
                 const char *const *response_ids, size_t n)
{
    enum mock_chat_begin rc = MOCK_CHAT_STARTED;
    pthread_mutex_lock(&c->lock);
    struct chat *ch = find_locked(c, id);
    if (!ch || strcmp(ch->key, key) != 0) {
        rc = MOCK_CHAT_NOT_FOUND;
    } else if (ch->answering) {
        rc = MOCK_CHAT_BUSY;
    } else {
        ch->answering = true;
        for (size_t i = 0; i < n; i++, ch->n_responses++)
            snprintf(ch->responses[ch->n_responses % MOCK_CHAT_RESPONSES], MOCK_UUID_LEN, "%s",
                     response_ids[i]);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void
mock_chats_end(struct mock_chats *c, const char *id)
{
    pthread_mutex_lock(&c->lock);
    struct chat *ch = find_locked(c, id);
    if (ch)
        ch->answering = false;
    pthread_mutex_unlock(&c->lock);
}

size_t
mock_chats_count(struct mock_chats *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->count;
    pthread_mutex_unlock(&c->lock);
    return n;
}
