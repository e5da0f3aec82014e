/**
 * @file json_arena.h
 * @brief cJSON trees allocated from an arena: a parse that costs a bump of a pointer per
 *        node, and a tree given back at once, without cJSON_Delete's walk and its frees.
 *
 * A v2 stream is one parse per event (decode_v2.c), each a tree of tens of nodes, every
 * node and string one malloc and one free: most of what a non-stream v2 chat costs. cJSON
 * allocates through one process-wide pair of hooks; this module sets them once, when the
 * program is loaded (no thread runs yet), to functions that take memory from the arena
 * the calling thread is parsing into, and from malloc and free everywhere else (every
 * other cJSON call of the process, on any thread, is unchanged).
 *
 * Ownership: the arena owns every node and string of the trees parsed into it, until
 * qp_json_arena_reset() or qp_json_arena_free(). Such a tree is never given to
 * cJSON_Delete() (nor any node of it to a cJSON call that frees or adds); reading it is
 * what it is for. Strings printed from it (cJSON_Print*) are malloc'd, as always.
 * One arena is used by one thread at a time.
 */
#ifndef QP_JSON_ARENA_H
#define QP_JSON_ARENA_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

struct qp_json_chunk;

/** An arena; zero-initialised it is empty and ready (no allocation until a parse). */
struct qp_json_arena {
    struct qp_json_chunk *chunks; /* the newest first; the oldest is kept by reset */
    size_t used;                  /* bytes taken from the newest chunk */
    size_t taken;                 /* allocations served, ever */
    bool hooked;                  /* the last parse took its memory from here */
};

/**
 * Parses @p len bytes (not NUL-terminated) as cJSON_ParseWithLength() does, into @p a.
 * @return the tree, owned by the arena when @p a->hooked, else (cJSON's hooks were set
 * again by someone else) malloc'd and the caller's to cJSON_Delete(); NULL when not JSON
 * or out of memory.
 */
cJSON *qp_json_arena_parse(struct qp_json_arena *a, const char *s, size_t len);

/** Drops every tree parsed into @p a; keeps one chunk of at most @p keep bytes. */
void qp_json_arena_reset(struct qp_json_arena *a, size_t keep);

/** Gives every chunk back; the arena is empty and usable again. NULL-safe. */
void qp_json_arena_free(struct qp_json_arena *a);

#endif
