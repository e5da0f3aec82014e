#include "json_arena.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* A chunk's usable bytes at least; a parse that needs more gets a chunk of its own. */
#define CHUNK_BYTES (8 * 1024)
#define ALIGN _Alignof(max_align_t)
/* The chunk's header, rounded up so that its data is aligned for any node. */
#define HEADER ((sizeof(struct qp_json_chunk) + ALIGN - 1) / ALIGN * ALIGN)

struct qp_json_chunk {
    struct qp_json_chunk *next; /* older */
    size_t size;                /* usable bytes after the header */
};

/* The arena this thread is parsing into, NULL when it is not parsing. */
static _Thread_local struct qp_json_arena *parsing;

static unsigned char *
data_of(struct qp_json_chunk *c)
{
    return (unsigned char *)c + HEADER;
}

static void *
arena_alloc(size_t n)
{
    struct qp_json_arena *a = parsing;
    if (!a)
        return malloc(n);
    if (n > SIZE_MAX / 2)
        return NULL;
    n = (n + ALIGN - 1) / ALIGN * ALIGN;
    struct qp_json_chunk *c = a->chunks;
    if (!c || c->size - a->used < n) {
        size_t size = n > CHUNK_BYTES ? n : CHUNK_BYTES;
        if (c && size < 2 * c->size)
            size = 2 * c->size; /* a large tree takes few chunks */
        struct qp_json_chunk *fresh = malloc(HEADER + size);
        if (!fresh)
            return NULL;
        fresh->next = c;
        fresh->size = size;
        a->chunks = c = fresh;
        a->used = 0;
    }
    void *p = data_of(c) + a->used;
    a->used += n;
    a->taken++;
    return p;
}

static bool
owns(const struct qp_json_arena *a, const void *p)
{
    uintptr_t at = (uintptr_t)p;
    for (struct qp_json_chunk *c = a->chunks; c; c = c->next) {
        uintptr_t start = (uintptr_t)data_of(c);
        if (at >= start && at < start + c->size)
            return true;
    }
    return false;
}

/* cJSON frees nodes of a tree it is parsing only when the text turns out not to be JSON:
 * those stay in the arena until its reset. */
static void
arena_free(void *p)
{
    struct qp_json_arena *a = parsing;
    if (a && owns(a, p))
        return;
    free(p);
}

/* Before main, while no thread runs: cJSON reads its hooks on every call. */
__attribute__((constructor)) static void
install_hooks(void)
{
    cJSON_Hooks hooks = {.malloc_fn = arena_alloc, .free_fn = arena_free};
    cJSON_InitHooks(&hooks);
}

cJSON *
qp_json_arena_parse(struct qp_json_arena *a, const char *s, size_t len)
{
    size_t before = a->taken;
    parsing = a;
    cJSON *tree = cJSON_ParseWithLength(s, len);
    parsing = NULL;
    a->hooked = a->taken != before;
    return tree;
}

void
qp_json_arena_reset(struct qp_json_arena *a, size_t keep)
{
    struct qp_json_chunk *c = a->chunks;
    while (c && c->next) {
        struct qp_json_chunk *older = c->next;
        free(c);
        c = older;
    }
    if (c && c->size > keep) {
        free(c);
        c = NULL;
    }
    a->chunks = c;
    a->used = 0;
}

void
qp_json_arena_free(struct qp_json_arena *a)
{
    if (!a)
        return;
    qp_json_arena_reset(a, 0);
}
