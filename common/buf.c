#include "qwenkit/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
qk_buf_init(struct qk_buf *b, size_t cap)
{
    b->_data = NULL;
    b->_len = 0;
    b->_alloc = 0;
    b->_cap = cap;
}

static enum qk_err
reserve(struct qk_buf *b, size_t extra)
{
    if (extra > b->_cap - b->_len)
        return QK_TOO_BIG;
    size_t need = b->_len + extra + 1;
    if (need <= b->_alloc)
        return QK_OK;
    size_t alloc = b->_alloc ? b->_alloc : 64;
    while (alloc < need)
        alloc *= 2;
    char *p = realloc(b->_data, alloc);
    if (!p)
        return QK_NOMEM;
    b->_data = p;
    b->_alloc = alloc;
    return QK_OK;
}

enum qk_err
qk_buf_append(struct qk_buf *b, const void *ptr, size_t len)
{
    enum qk_err rc = reserve(b, len);
    if (rc != QK_OK)
        return rc;
    if (len)
        memcpy(b->_data + b->_len, ptr, len);
    b->_len += len;
    b->_data[b->_len] = '\0';
    return QK_OK;
}

enum qk_err
qk_buf_append_str(struct qk_buf *b, const char *s)
{
    return qk_buf_append(b, s, strlen(s));
}

enum qk_err
qk_buf_appendf(struct qk_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return QK_INVALID;
    enum qk_err rc = reserve(b, (size_t)n);
    if (rc != QK_OK)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->_data + b->_len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->_len += (size_t)n;
    return QK_OK;
}

void
qk_buf_consume(struct qk_buf *b, size_t n)
{
    if (n >= b->_len) {
        qk_buf_reset(b);
        return;
    }
    memmove(b->_data, b->_data + n, b->_len - n);
    b->_len -= n;
    b->_data[b->_len] = '\0';
}

void
qk_buf_truncate(struct qk_buf *b, size_t len)
{
    if (len >= b->_len)
        return;
    b->_len = len;
    b->_data[len] = '\0';
}

void
qk_buf_reset(struct qk_buf *b)
{
    b->_len = 0;
    if (b->_data)
        b->_data[0] = '\0';
}

void
qk_buf_free(struct qk_buf *b)
{
    if (!b)
        return;
    free(b->_data);
    b->_data = NULL;
    b->_len = 0;
    b->_alloc = 0;
}

char *
qk_buf_take(struct qk_buf *b, size_t *len)
{
    char *data = b->_data;
    if (!data)
        data = calloc(1, 1);
    if (len)
        *len = b->_len;
    b->_data = NULL;
    b->_len = 0;
    b->_alloc = 0;
    return data;
}

const char *
qk_buf_ptr(const struct qk_buf *b)
{
    return b->_data ? b->_data : "";
}

size_t
qk_buf_len(const struct qk_buf *b)
{
    return b->_len;
}

enum qk_err
qk_buf_append_file(struct qk_buf *b, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return QK_IO;
    enum qk_err rc = QK_OK;
    char chunk[4096];
    size_t n;
    while (rc == QK_OK && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = qk_buf_append(b, chunk, n);
    if (rc == QK_OK && ferror(f))
        rc = QK_IO;
    fclose(f);
    return rc;
}
