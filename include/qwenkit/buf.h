/**
 * @file buf.h
 * @brief A small growable byte buffer with a hard cap, always NUL-terminated.
 *
 * The struct is visible so it can live inside other structs; use the API, not the
 * fields. Ownership: the buffer owns `_data`; qk_buf_free() releases it and
 * qk_buf_take() hands it to the caller.
 */
#ifndef QWENKIT_BUF_H
#define QWENKIT_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "qwenkit/common.h"

struct qk_buf {
    char *_data; /* NUL-terminated when non-NULL */
    size_t _len;
    size_t _alloc;
    size_t _cap; /* hard limit on _len */
};

/** Prepares an empty buffer that refuses to grow beyond @p cap bytes. No allocation. */
void qk_buf_init(struct qk_buf *b, size_t cap);
/** Appends @p len bytes; on failure the buffer is unchanged. */
QK_WUR enum qk_err qk_buf_append(struct qk_buf *b, const void *ptr, size_t len);
/** Appends a NUL-terminated string. */
QK_WUR enum qk_err qk_buf_append_str(struct qk_buf *b, const char *s);
/** printf-style append; on failure the buffer is unchanged. */
QK_WUR enum qk_err qk_buf_appendf(struct qk_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** Appends the whole file at @p path (QK_IO when it cannot be read, QK_NOMEM past the cap). */
QK_WUR enum qk_err qk_buf_append_file(struct qk_buf *b, const char *path);
/** Drops the first @p n bytes (consumed data), keeping the rest. */
void qk_buf_consume(struct qk_buf *b, size_t n);
/** Keeps only the first @p len bytes (nothing changes when it holds no more than that). */
void qk_buf_truncate(struct qk_buf *b, size_t len);
/** Empties the buffer, keeping its memory. */
void qk_buf_reset(struct qk_buf *b);
/** Frees the memory; the buffer is empty and reusable afterwards. NULL-safe. */
void qk_buf_free(struct qk_buf *b);
/** Hands the data (malloc'd, NUL-terminated, never NULL unless OOM) to the caller, who frees it. */
char *qk_buf_take(struct qk_buf *b, size_t *len);

/** @return the contents (borrowed; "" when empty). */
const char *qk_buf_ptr(const struct qk_buf *b);
/** @return the length in bytes. */
size_t qk_buf_len(const struct qk_buf *b);

#endif
