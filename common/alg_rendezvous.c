/* Rendezvous (highest random weight) hashing: every enabled node scores every key and
 * the best score wins; replicas are the next best. A node's seed is XXH3_64bits(id); its
 * score for key hash h is splitmix64's finaliser of seed ^ (h * 0x9e3779b97f4a7c15).
 * Equal weights: the highest score wins. Unequal weights: the smallest -ln(U) / weight
 * wins, U = score / 2^64 (the exponential race, whose winner is node i with probability
 * weight_i / total), computed as a Q32 fixed-point log2 so every platform agrees. */
#include "ring_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define LOG2_TABLE 2048

/* log2(y) in Q32 for y = num / 2^62 in [1, 2), one bit at a time: square y; when the
 * square reaches 2, that bit of the logarithm is 1 and y halves. Exact integer steps. */
static uint64_t
log2_q32(uint64_t y) {
    uint64_t result = 0;
    for (int bit = 31; bit >= 0; bit--) {
        unsigned __int128 sq = (unsigned __int128)y * y;
        y = (uint64_t)(sq >> 62);
        if (y >= (uint64_t)1 << 63) {
            y >>= 1;
            result |= (uint64_t)1 << bit;
        }
    }
    return result;
}

int
rs_alg_build_rendezvous(rs_ring *r, rs_error *err) {
    uint32_t ne = r->nenabled;
    r->rv_node = malloc((size_t)ne * sizeof(*r->rv_node));
    r->rv_seed = malloc((size_t)ne * sizeof(*r->rv_seed));
    r->rv_weight = malloc((size_t)ne * sizeof(*r->rv_weight));
    if (r->rv_node == NULL || r->rv_seed == NULL || r->rv_weight == NULL) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        rs_ring_node *n = &r->nodes[i];
        n->points = 0;
        if (!n->enabled) {
            continue;
        }
        r->rv_node[k] = i;
        r->rv_seed[k] = XXH3_64bits(n->id, strlen(n->id));
        r->rv_weight[k] = n->weight;
        r->rv_weighted = r->rv_weighted || n->weight != r->rv_weight[0];
        n->share = (double)n->weight / r->total_weight;
        k++;
    }
    if (r->rv_weighted) {
        r->rv_log2 = malloc((LOG2_TABLE + 1) * sizeof(*r->rv_log2));
        if (r->rv_log2 == NULL) {
            return rs_error_set(err, -ENOMEM, "out of memory");
        }
        for (uint32_t j = 0; j < LOG2_TABLE; j++) {
            r->rv_log2[j] = log2_q32(((uint64_t)1 << 62) + ((uint64_t)j << 51));
        }
        r->rv_log2[LOG2_TABLE] = (uint64_t)1 << 32;
    }
    return 0;
}

void
rs_alg_rendezvous_ranks(const rs_ring *r, uint32_t hash, rs_rank *out) {
    uint64_t spread = rs_rendezvous_spread(hash);
    for (uint32_t k = 0; k < r->nenabled; k++) {
        uint64_t x = rs_rendezvous_mix(r->rv_seed[k], spread);
        if (r->rv_weighted) {
            out[k] = (rs_rank){.key = rs_rendezvous_neglog2(r->rv_log2, x | 1),
                               .weight = r->rv_weight[k],
                               .node = r->rv_node[k]};
        } else {
            out[k] = (rs_rank){.key = ~x, .weight = 1, .node = r->rv_node[k]};
        }
    }
}
