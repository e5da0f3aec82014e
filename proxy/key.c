#include "key.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static uint8_t secret[32];

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static uint64_t
load64_le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

uint64_t
qp_siphash24(const uint8_t k[16], const void *data, size_t len)
{
    const uint8_t *in = data;
    uint64_t k0 = load64_le(k), k1 = load64_le(k + 8);
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    size_t whole = len - len % 8;

    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load64_le(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)in[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

void
qp_key_seed(const uint8_t s[32])
{
    memcpy(secret, s, sizeof(secret));
}

void
qp_key_seed_random(void)
{
    uint8_t s[32];
    if (getrandom(s, sizeof(s), 0) != (ssize_t)sizeof(s)) {
        /* No entropy source: fall back to time; keys stay per-credential, only less
         * resistant to crafted collisions. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t t = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
        for (size_t i = 0; i < sizeof(s); i++)
            s[i] = (uint8_t)(t >> (8 * (i % 8))) ^ (uint8_t)(i * 131);
    }
    qp_key_seed(s);
}

struct qp_key
qp_key_of(const void *data, size_t len)
{
    struct qp_key k;
    k.hi = qp_siphash24(secret, data, len);
    k.lo = qp_siphash24(secret + 16, data, len);
    return k;
}

bool
qp_key_equal(struct qp_key a, struct qp_key b)
{
    return a.hi == b.hi && a.lo == b.lo;
}
