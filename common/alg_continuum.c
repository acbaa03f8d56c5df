/* Continuum rings: sorted points on the 2^32 hash circle, each owned by a node. ketama
 * (twemproxy 0.5.0, bit for bit), ketama_xxh3 (the same shape, XXH3 points), hash_ring
 * (Python hash_ring 1.3.1) and vnode_sha256 (the consistent-hashing article's ring). */
#include "ring_impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The low-level digest APIs are deprecated in OpenSSL 3 but skip EVP's per-call fetch,
 * which would dominate on the short strings hashed here (see hash.c). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define KETAMA_POINTS_PER_SERVER 160
#define KETAMA_POINTS_PER_HASH 4
#define HASH_RING_DIGESTS_PER_NODE 40 /* for equal weights */
#define HASH_RING_POINTS_PER_DIGEST 3
#define BUCKET_BITS_MAX 20

/* LSD radix sort of items (value << 32 | owner) on the value (3 passes of 11 bits),
 * stable: among equal values the generation order stays, which decides who owns them
 * (twemproxy's first, Python's last writer). Items, then a copy into the ring's points:
 * with this order of allocations glibc reuses a previous build's memory (measured: no
 * page faults from the third build on), where sorting straight into the ring's array
 * made every rebuild fault its pages in again (4x slower on a VM). */
static int
sort_points(uint64_t *items, uint32_t n) {
    enum { BITS = 11, RADIX = 1 << BITS };
    uint64_t *tmp = malloc((size_t)n * sizeof(*tmp));
    uint32_t *count = malloc(RADIX * sizeof(*count));
    if (tmp == NULL || count == NULL) {
        free(tmp);
        free(count);
        return -ENOMEM;
    }
    uint64_t *src = items, *dst = tmp;
    for (unsigned shift = 32; shift < 64; shift += BITS) {
        memset(count, 0, RADIX * sizeof(*count));
        for (uint32_t i = 0; i < n; i++) {
            count[(src[i] >> shift) & (RADIX - 1)]++;
        }
        uint32_t sum = 0;
        for (uint32_t d = 0; d < RADIX; d++) {
            uint32_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (uint32_t i = 0; i < n; i++) {
            dst[count[(src[i] >> shift) & (RADIX - 1)]++] = src[i];
        }
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != items) { /* odd number of passes: 3 with 11 bits */
        memcpy(items, src, (size_t)n * sizeof(*items));
    }
    free(tmp);
    free(count);
    return 0;
}

/* Decimal digits of v at out (no NUL); returns their count. Rebuilds format one number
 * per digest, where snprintf would cost a third of the build. */
static size_t
format_u32(char *out, uint32_t v) {
    char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
    }
    return n;
}

static inline uint32_t
load_le32(const unsigned char *d) {
    return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

static inline uint32_t
load_be32(const unsigned char *d) {
    return (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | (uint32_t)d[3];
}

uint32_t
rs_alg_sha256_be32(const char *key, size_t len) {
    SHA256_CTX ctx;
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, key, len);
    SHA256_Final(md, &ctx);
    return load_be32(md);
}

uint32_t
rs_alg_xxh3_32(const char *key, size_t len) {
    return (uint32_t)XXH3_64bits(key, len);
}

/* Takes the generated items (value << 32 | owner, in generation order; freed here),
 * sorts them and builds the points, bucket index and shares. last_writer: a value that
 * several items share belongs to the last of them (Python's dict), else to the first. */
static int
finish(rs_ring *r, uint64_t *items, uint32_t k, bool last_writer, rs_error *err) {
    int rc = sort_points(items, k);
    if (rc != 0) {
        free(items);
        return rs_error_set(err, rc, "out of memory");
    }
    /* About one point per bucket: most lookups read one bucket and one point. */
    unsigned bits = 1;
    while (bits < BUCKET_BITS_MAX && (1u << bits) < k) {
        bits++;
    }
    r->npoints = k;
    r->bucket_shift = 32 - bits;
    r->points = malloc(((size_t)k + 1) * sizeof(*r->points));
    r->bucket = malloc((size_t)(1u << bits) * sizeof(*r->bucket));
    if (r->points == NULL || r->bucket == NULL) {
        free(items);
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < k; i++) {
        r->points[i].value = (uint32_t)(items[i] >> 32);
        r->points[i].owner = (uint32_t)items[i];
    }
    free(items);
    if (last_writer) {
        for (uint32_t i = k; i-- > 1;) {
            if (r->points[i - 1].value == r->points[i].value) {
                r->points[i - 1].owner = r->points[i].owner;
            }
        }
    }
    r->points[k] = (rs_point){.value = UINT32_MAX, .owner = r->points[0].owner};
    uint32_t i = 0;
    for (uint32_t b = 0; b < (1u << bits); b++) {
        uint32_t start = b << r->bucket_shift;
        while (i < k && r->points[i].value < start) {
            i++;
        }
        r->bucket[b] = i;
    }

    /* Shares from arc lengths. With ">=", point i owns (value[i-1], value[i]]; with ">",
     * [value[i-1], value[i]): the same lengths. Point 0 also owns the wrap-around arc; a
     * repeated value owns nothing. */
    uint64_t *own = calloc(r->nnodes, sizeof(*own));
    if (own == NULL) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    const rs_point *p = r->points;
    own[p[0].owner] += (uint64_t)p[0].value + 1 + (UINT32_MAX - (uint64_t)p[k - 1].value);
    for (uint32_t j = 1; j < k; j++) {
        own[p[j].owner] += (uint64_t)p[j].value - p[j - 1].value;
    }
    for (uint32_t j = 0; j < r->nnodes; j++) {
        r->nodes[j].share = (double)own[j] / RS_TWO32;
    }
    free(own);
    return 0;
}

/* The item array for total points, or an error: too many, none, or out of memory. */
static int
alloc_items(uint64_t total, const char *hint, uint64_t **items, rs_error *err) {
    *items = NULL;
    if (total > RS_POINTS_MAX) {
        return rs_error_set(err, -E2BIG, "ring needs %llu points (max %u)%s",
                            (unsigned long long)total, RS_POINTS_MAX, hint);
    }
    if (total == 0) {
        return rs_error_set(err, -EINVAL, "no node gets a point on the ring (weights too uneven)");
    }
    *items = malloc((size_t)total * sizeof(**items));
    return *items == NULL ? rs_error_set(err, -ENOMEM, "out of memory") : 0;
}

/* ---- ketama ---- */

/* Points per server exactly as twemproxy computes them: float32 share, then
 * floorf(share * 160 / 4 * n + 1e-10) * 4, where the addition happens in double. */
static uint32_t
ketama_points(uint32_t weight, uint32_t total_weight, uint32_t nlive) {
    float pct = (float)weight / (float)total_weight;
    float x = pct * (float)KETAMA_POINTS_PER_SERVER;
    x = x / 4.0f;
    x = x * (float)nlive;
    double d = (double)x + 0.0000000001;
    float f = floorf((float)d);
    return (uint32_t)(f * 4.0f);
}

/* The MD5 rings' points (ketama, hash_ring): for each node in order and j below
 * points / words, MD5 of "<id>-<j>" gives `words` little-endian uint32 points, stored
 * as value << 32 | node in generation order. Returns how many were written. */
static uint32_t
md5_points(const rs_ring *r, int words, uint64_t *items) {
    uint32_t k = 0;
    char buf[RS_ID_MAX + 16];
    unsigned char digest[16];
    for (uint32_t i = 0; i < r->nnodes; i++) {
        const rs_ring_node *n = &r->nodes[i];
        size_t idlen = strlen(n->id);
        memcpy(buf, n->id, idlen);
        buf[idlen] = '-';
        for (uint32_t j = 0; j < n->points / (uint32_t)words; j++) {
            size_t len = format_u32(buf + idlen + 1, j);
            rs_md5(buf, idlen + 1 + len, digest);
            for (int w = 0; w < words; w++) {
                items[k++] = (uint64_t)load_le32(digest + 4 * w) << 32 | i;
            }
        }
    }
    return k;
}

int
rs_alg_build_ketama(rs_ring *r, rs_error *err) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        rs_ring_node *n = &r->nodes[i];
        n->points = n->enabled ? ketama_points(n->weight, r->total_weight, r->nenabled) : 0;
        total += n->points;
    }
    uint64_t *items;
    int rc = alloc_items(total, "", &items, err);
    if (rc != 0) {
        return rc;
    }
    uint32_t k = md5_points(r, KETAMA_POINTS_PER_HASH, items);
    return finish(r, items, k, false, err);
}

/* ---- ketama_xxh3 ---- */

/* points_per_weight x weight points per node, exactly proportional: point 2k is the low
 * and point 2k+1 the high half of XXH3_64bits_withSeed(id, seed = k). */
int
rs_alg_build_ketama_xxh3(rs_ring *r, rs_error *err) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        rs_ring_node *n = &r->nodes[i];
        uint64_t pts = n->enabled ? (uint64_t)r->params.points_per_weight * n->weight : 0;
        n->points = pts > RS_POINTS_MAX ? RS_POINTS_MAX + 1 : (uint32_t)pts;
        total += pts;
    }
    uint64_t *items;
    int rc = alloc_items(total, ": lower points_per_weight or the weights", &items, err);
    if (rc != 0) {
        return rc;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        const rs_ring_node *n = &r->nodes[i];
        size_t idlen = strlen(n->id);
        for (uint32_t j = 0; j < n->points; j += 2) {
            uint64_t h = XXH3_64bits_withSeed(n->id, idlen, j / 2);
            items[k++] = (h & 0xffffffffu) << 32 | i;
            if (j + 1 < n->points) {
                items[k++] = (h >> 32) << 32 | i;
            }
        }
    }
    return finish(r, items, k, false, err);
}

/* ---- hash_ring (Python hash_ring 1.3.1) ---- */

/* floor(40 * N * w / T) digests of MD5("<id>-<j>"), 3 little-endian words each; equal
 * values go to the last writer (node order, then j, then word), as the library's dict. */
int
rs_alg_build_hash_ring(rs_ring *r, rs_error *err) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        rs_ring_node *n = &r->nodes[i];
        uint64_t digests = n->enabled ? (uint64_t)HASH_RING_DIGESTS_PER_NODE * r->nenabled *
                                            n->weight / r->total_weight
                                      : 0;
        n->points = (uint32_t)(digests * HASH_RING_POINTS_PER_DIGEST);
        total += n->points;
    }
    uint64_t *items;
    int rc = alloc_items(total, "", &items, err);
    if (rc != 0) {
        return rc;
    }
    uint32_t k = md5_points(r, HASH_RING_POINTS_PER_DIGEST, items);
    return finish(r, items, k, true, err);
}

/* ---- vnode_sha256 (the article's ConsistentHashRing) ---- */

/* Points H("<id>#vn<v>-r<r>") for v < vnodes x weight, r < replica_factor, H = first 4
 * bytes of SHA-256, big-endian. Equal values go to the last writer (node order, v, r). */
int
rs_alg_build_vnode_sha256(rs_ring *r, rs_error *err) {
    uint64_t total = 0;
    const uint64_t per_weight = (uint64_t)r->params.vnodes * r->params.replica_factor;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        rs_ring_node *n = &r->nodes[i];
        uint64_t pts = n->enabled ? per_weight * n->weight : 0;
        n->points = pts > RS_POINTS_MAX ? RS_POINTS_MAX + 1 : (uint32_t)pts;
        total += pts;
    }
    uint64_t *items;
    int rc = alloc_items(total, ": lower vnodes, replica_factor or the weights", &items, err);
    if (rc != 0) {
        return rc;
    }
    uint32_t k = 0;
    char buf[RS_ID_MAX + 32];
    for (uint32_t i = 0; i < r->nnodes; i++) {
        const rs_ring_node *n = &r->nodes[i];
        if (!n->enabled) {
            continue;
        }
        size_t idlen = strlen(n->id);
        memcpy(buf, n->id, idlen);
        memcpy(buf + idlen, "#vn", 3);
        uint32_t nv = r->params.vnodes * n->weight;
        for (uint32_t v = 0; v < nv; v++) {
            size_t len = idlen + 3 + format_u32(buf + idlen + 3, v);
            buf[len++] = '-';
            buf[len++] = 'r';
            for (uint32_t rep = 0; rep < r->params.replica_factor; rep++) {
                size_t full = len + format_u32(buf + len, rep);
                items[k++] = (uint64_t)rs_alg_sha256_be32(buf, full) << 32 | i;
            }
        }
    }
    return finish(r, items, k, true, err);
}
