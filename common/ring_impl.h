/* Internals of the ring module, shared by ring.c (parameters, lookups, replicas,
 * accounting) and the per-algorithm builders in alg_*.c. Not part of the public API. */
#ifndef RS_RING_IMPL_H
#define RS_RING_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rs_error.h"
#include "rs_ring.h"

#define RS_TWO32 4294967296.0
#define RS_SLOT_EMPTY UINT16_MAX

_Static_assert(RS_NODES_MAX < RS_SLOT_EMPTY, "node indexes must fit a uint16_t slot");

/* How an algorithm stores its placement. */
typedef enum rs_shape {
    RS_SHAPE_CONTINUUM, /* sorted points, owner of the first point >= hash (or > hash) */
    RS_SHAPE_SLOTS,     /* slot[hash % nslots] */
    RS_SHAPE_SCORES,    /* the best-scoring node (rendezvous) */
} rs_shape;

typedef struct rs_point {
    uint32_t value;
    uint32_t owner; /* node index */
} rs_point;

/* One rendezvous candidate: a smaller key / weight ranks first; ties go to the lower node
 * index. Unweighted rings use key = ~score and weight 1. */
typedef struct rs_rank {
    uint64_t key;
    uint32_t weight;
    uint32_t node;
} rs_rank;

struct rs_ring {
    atomic_uint refs;
    rs_ring_params params;
    rs_shape shape;
    rs_hash_fn hash; /* the key hash actually used */
    uint32_t nnodes;
    uint32_t nenabled;
    uint32_t total_weight; /* of enabled nodes */
    rs_ring_node *nodes;   /* sorted by identity: shorter id first, then bytewise */
    char *strings;         /* arena holding every node string */

    /* Continuum: npoints sorted points plus a sentinel {UINT32_MAX, owner of point 0}
     * that ends every scan, and a bucket index over the top bits of the hash: bucket[b]
     * is the first point >= b << bucket_shift, so a lookup scans a point or two. */
    uint32_t npoints;
    rs_point *points;
    uint32_t *bucket;
    uint32_t bucket_shift;
    bool strict; /* Python rings: first point > hash (bisect_right) instead of >= */

    /* Slot tables (modula, maglev): slot[hash % nslots], the modulo by multiplication. */
    uint32_t nslots;
    uint16_t *slot;
    uint64_t slot_magic; /* UINT64_MAX / nslots + 1 (Lemire's fastmod) */

    /* Rendezvous: the enabled nodes (canonical order), their seeds and weights. */
    uint32_t *rv_node;
    uint64_t *rv_seed;
    uint32_t *rv_weight;
    uint64_t *rv_log2; /* weighted rings only: log2(1 + j/2048) in Q32, j = 0..2048 */
    bool rv_weighted;

    /* Zones (zone_aware_replicas only): a small id per node; nzones counts the zones
     * that hold at least one enabled node, nzone_ids all ids handed out. */
    uint16_t *zone_of;
    uint32_t nzones;
    uint32_t nzone_ids;

    double imbalance;
    char fingerprint[RS_FINGERPRINT_LEN + 1];
};

/* Builders: fill the structures of their shape and every node's points and share, or
 * return a negative errno with err filled. The ring's nodes, counts and params are set. */
int rs_alg_build_ketama(rs_ring *r, rs_error *err);
int rs_alg_build_ketama_xxh3(rs_ring *r, rs_error *err);
int rs_alg_build_hash_ring(rs_ring *r, rs_error *err);
int rs_alg_build_vnode_sha256(rs_ring *r, rs_error *err);
int rs_alg_build_modula(rs_ring *r, rs_error *err);
int rs_alg_build_maglev(rs_ring *r, rs_error *err);
int rs_alg_build_rendezvous(rs_ring *r, rs_error *err);

/* Key hashes of their own: vnode_sha256 (first 4 bytes of SHA-256, big-endian) and
 * ketama_xxh3 (low 32 bits of XXH3_64bits, inlined). */
uint32_t rs_alg_sha256_be32(const char *key, size_t len);
uint32_t rs_alg_xxh3_32(const char *key, size_t len);

/* Rendezvous: every enabled node's rank for a key hash, into out[0..nenabled). */
void rs_alg_rendezvous_ranks(const rs_ring *r, uint32_t hash, rs_rank *out);

/* Index of the first point >= hash; npoints (the sentinel) means past the last point,
 * and the sentinel's owner is point 0's, so points[i].owner is always the answer. */
static inline uint32_t
rs_continuum_ge(const rs_ring *r, uint32_t hash) {
    const rs_point *p = r->points;
    uint32_t i = r->bucket[hash >> r->bucket_shift];
    /* Buckets hold about one point: two steps without branches (a mispredicted branch
     * costs more than the lookup), then a loop that crowded buckets rarely enter. */
    i += p[i].value < hash;
    i += p[i].value < hash;
    while (p[i].value < hash) {
        i++;
    }
    return i;
}

/* Index of the point owning hash under the ring's rule. bisect_right's "first point >
 * hash" is "first point >= hash + 1", and hash + 1 wrapping to 0 is its wrap-around. */
static inline uint32_t
rs_continuum_index(const rs_ring *r, uint32_t hash) {
    return rs_continuum_ge(r, r->strict ? hash + 1u : hash);
}

/* hash % nslots without a division. */
static inline uint32_t
rs_slot_index(const rs_ring *r, uint32_t hash) {
    uint64_t low = r->slot_magic * hash;
    return (uint32_t)(((unsigned __int128)low * r->nslots) >> 64);
}

/* Rendezvous score of a node for a key: a 64-bit mix of the node's seed and the key hash
 * (splitmix64's finaliser), the same on every platform. */
static inline uint64_t
rs_rendezvous_mix(uint64_t seed, uint64_t spread_hash) {
    uint64_t x = seed ^ spread_hash;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static inline uint64_t
rs_rendezvous_spread(uint32_t hash) {
    return (uint64_t)hash * 0x9e3779b97f4a7c15ULL;
}

/* -log2(x / 2^64) in Q32 for x >= 1 (in (0, 2^38]), from the ring's table by linear
 * interpolation: integer arithmetic only, so every sidecar computes the same value. */
static inline uint64_t
rs_rendezvous_neglog2(const uint64_t *table, uint64_t x) {
    int top = 63 - __builtin_clzll(x);
    uint64_t m = x << (63 - top); /* bit 63 set */
    uint32_t j = (uint32_t)(m >> 52) & 2047u;
    uint64_t frac = (m >> 20) & 0xffffffffu;
    uint64_t lo = table[j], hi = table[j + 1];
    uint64_t log2x = ((uint64_t)top << 32) + lo + (((hi - lo) * frac) >> 32);
    return ((uint64_t)64 << 32) - log2x;
}

/* True when rank a comes before rank b. */
static inline bool
rs_rank_before(const rs_rank *a, const rs_rank *b) {
    unsigned __int128 l = (unsigned __int128)a->key * b->weight;
    unsigned __int128 r = (unsigned __int128)b->key * a->weight;
    return l < r || (l == r && a->node < b->node);
}

#endif
