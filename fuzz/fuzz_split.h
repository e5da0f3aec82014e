/*
 * Input layout shared by the split-invariance targets (fuzz_sse_norm, fuzz_conf_sse):
 *
 *   byte 0        flags, each target reads its own bits
 *   byte 1        low 4 bits: how many cut points follow (0..15)
 *   2 bytes each  cut points, little endian, taken modulo (stream length + 1)
 *   the rest      the stream bytes
 *
 * The stream is fed whole, then in the pieces the cuts make, then one byte at a time;
 * a parser that keeps its state right between reads gives the same result each time.
 */
#ifndef QK_FUZZ_SPLIT_H
#define QK_FUZZ_SPLIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define FUZZ_MAX_CUTS 15

struct fuzz_split {
    uint8_t flags;
    const uint8_t *stream; /* borrowed from the fuzzer's input */
    size_t len;
    size_t cuts[FUZZ_MAX_CUTS + 2]; /* 0, the sorted cuts, len: piece i is [cuts[i], cuts[i+1]) */
    size_t n_pieces;
};

static int
fuzz_cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Returns 0 when the input is too short to hold the header. */
static int
fuzz_split_decode(const uint8_t *data, size_t size, struct fuzz_split *s)
{
    if (size < 2)
        return 0;
    size_t n = data[1] & 0x0F;
    if (2 + 2 * n > size)
        n = (size - 2) / 2;
    s->flags = data[0];
    s->stream = data + 2 + 2 * n;
    s->len = size - 2 - 2 * n;
    s->cuts[0] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t v = (size_t)data[2 + 2 * i] | (size_t)data[3 + 2 * i] << 8;
        s->cuts[1 + i] = v % (s->len + 1);
    }
    qsort(s->cuts + 1, n, sizeof s->cuts[0], fuzz_cmp_size);
    s->cuts[n + 1] = s->len;
    s->n_pieces = n + 1;
    return 1;
}

/* The three ways one stream is fed. */
enum fuzz_feed { FUZZ_WHOLE = 0, FUZZ_CUTS, FUZZ_BYTES };

static size_t
fuzz_split_pieces(const struct fuzz_split *s, enum fuzz_feed how)
{
    return how == FUZZ_WHOLE ? 1 : how == FUZZ_CUTS ? s->n_pieces : s->len;
}

/* An exact-size heap copy of piece @p i (caller frees), so that AddressSanitizer sees
 * any read past its end. */
static char *
fuzz_split_piece(const struct fuzz_split *s, enum fuzz_feed how, size_t i, size_t *len)
{
    size_t from = how == FUZZ_WHOLE ? 0 : how == FUZZ_CUTS ? s->cuts[i] : i;
    *len = how == FUZZ_WHOLE ? s->len : how == FUZZ_CUTS ? s->cuts[i + 1] - s->cuts[i] : 1;
    char *p = malloc(*len ? *len : 1);
    if (!p)
        abort();
    for (size_t k = 0; k < *len; k++)
        p[k] = (char)s->stream[from + k];
    return p;
}

#endif
