/* Slot tables: modula (twemproxy's slots[hash % total weight]) and maglev (a Maglev
 * lookup table of table_size slots filled from per-node permutations, weighted). */
#include "ring_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

static int
alloc_slots(rs_ring *r, uint32_t nslots, rs_error *err) {
    r->nslots = nslots;
    r->slot_magic = UINT64_MAX / nslots + 1;
    r->slot = malloc((size_t)nslots * sizeof(*r->slot));
    return r->slot == NULL ? rs_error_set(err, -ENOMEM, "out of memory") : 0;
}

/* hash % n over all 2^32 hashes: the first (2^32 mod n) slots get one extra hash. */
static void
slot_shares(rs_ring *r) {
    uint64_t base = ((uint64_t)1 << 32) / r->nslots;
    uint64_t extra = ((uint64_t)1 << 32) % r->nslots;
    uint64_t *own = calloc(r->nnodes, sizeof(*own));
    if (own != NULL) {
        for (uint32_t s = 0; s < r->nslots; s++) {
            own[r->slot[s]] += base + (s < extra);
        }
        for (uint32_t i = 0; i < r->nnodes; i++) {
            r->nodes[i].share = (double)own[i] / RS_TWO32;
        }
        free(own);
        return;
    }
    for (uint32_t s = 0; s < r->nslots; s++) {
        r->nodes[r->slot[s]].share += (double)(base + (s < extra)) / RS_TWO32;
    }
}

int
rs_alg_build_modula(rs_ring *r, rs_error *err) {
    if (r->total_weight > RS_POINTS_MAX) {
        return rs_error_set(err, -E2BIG, "modula needs %u slots (max %u): lower the weights",
                            r->total_weight, RS_POINTS_MAX);
    }
    int rc = alloc_slots(r, r->total_weight, err);
    if (rc != 0) {
        return rc;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        rs_ring_node *n = &r->nodes[i];
        n->points = n->enabled ? n->weight : 0;
        for (uint32_t w = 0; w < n->points; w++) {
            r->slot[k++] = (uint16_t)i;
        }
    }
    slot_shares(r);
    return 0;
}

/* ---- maglev ---- */

typedef struct mg_node {
    uint32_t node;   /* ring node index */
    uint32_t pos;    /* next slot of its permutation to try */
    uint32_t skip;   /* permutation step, 1..M-1 */
    uint32_t weight; /* its weight */
    uint32_t count;  /* slots taken */
    uint64_t turn;   /* weighted fill: the round in which it may take its next slot */
} mg_node;

/* Takes the next free slot of n's permutation. */
static inline void
mg_take(rs_ring *r, mg_node *n) {
    uint32_t c = n->pos, m = r->nslots;
    while (r->slot[c] != RS_SLOT_EMPTY) {
        c += n->skip;
        if (c >= m) {
            c -= m;
        }
    }
    r->slot[c] = (uint16_t)n->node;
    c += n->skip;
    n->pos = c >= m ? c - m : c;
    n->count++;
}

/* Heap of mg_node pointers ordered by (turn, node). */
static inline bool
mg_less(const mg_node *a, const mg_node *b) {
    return a->turn < b->turn || (a->turn == b->turn && a->node < b->node);
}

static void
mg_sift_down(mg_node **h, uint32_t n, uint32_t i) {
    for (;;) {
        uint32_t l = 2 * i + 1, best = i;
        if (l < n && mg_less(h[l], h[best])) {
            best = l;
        }
        if (l + 1 < n && mg_less(h[l + 1], h[best])) {
            best = l + 1;
        }
        if (best == i) {
            return;
        }
        mg_node *t = h[i];
        h[i] = h[best];
        h[best] = t;
        i = best;
    }
}

/* Maglev (Eisenbud et al., NSDI 2016), weighted as Envoy does: node i's permutation is
 * offset_i, offset_i + skip_i, ... mod M with offset = XXH3_64bits_withSeed(id, 0) % M
 * and skip = XXH3_64bits_withSeed(id, 1) % (M - 1) + 1. Rounds t = 0, 1, ... visit the
 * enabled nodes in id order; a node takes the next free slot of its permutation in round
 * t when t * weight >= slots_taken * max_weight, so slot counts follow the weights.
 * Equal weights reduce to plain round robin. */
int
rs_alg_build_maglev(rs_ring *r, rs_error *err) {
    const uint32_t m = r->params.table_size;
    if (m < r->nenabled) {
        return rs_error_set(err, -EINVAL,
                            "table_size %u is smaller than the %u enabled nodes (maglev wants a "
                            "prime of at least 100 x nodes)",
                            m, r->nenabled);
    }
    int rc = alloc_slots(r, m, err);
    if (rc != 0) {
        return rc;
    }
    memset(r->slot, 0xff, (size_t)m * sizeof(*r->slot));
    mg_node *mg = calloc(r->nenabled, sizeof(*mg));
    mg_node **heap = calloc(r->nenabled, sizeof(*heap));
    if (mg == NULL || heap == NULL) {
        free(mg);
        free(heap);
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    uint32_t ne = 0, wmax = 0;
    bool equal = true;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        const rs_ring_node *n = &r->nodes[i];
        if (!n->enabled) {
            continue;
        }
        size_t len = strlen(n->id);
        mg[ne] = (mg_node){
            .node = i,
            .pos = (uint32_t)(XXH3_64bits_withSeed(n->id, len, 0) % m),
            .skip = (uint32_t)(XXH3_64bits_withSeed(n->id, len, 1) % (m - 1)) + 1,
            .weight = n->weight,
        };
        equal = equal && (ne == 0 || n->weight == mg[0].weight);
        wmax = n->weight > wmax ? n->weight : wmax;
        ne++;
    }
    uint32_t filled = 0;
    if (equal) {
        while (filled < m) {
            for (uint32_t k = 0; k < ne && filled < m; k++, filled++) {
                mg_take(r, &mg[k]);
            }
        }
    } else {
        for (uint32_t k = 0; k < ne; k++) {
            heap[k] = &mg[k]; /* all at turn 0, in node order: already a heap */
        }
        for (; filled < m; filled++) {
            mg_node *n = heap[0];
            mg_take(r, n);
            /* ceil(count * wmax / weight), and never twice in one round. */
            uint64_t next = ((uint64_t)n->count * wmax + n->weight - 1) / n->weight;
            n->turn = next > n->turn + 1 ? next : n->turn + 1;
            mg_sift_down(heap, ne, 0);
        }
    }
    for (uint32_t k = 0; k < ne; k++) {
        r->nodes[mg[k].node].points = mg[k].count;
    }
    free(mg);
    free(heap);
    slot_shares(r);
    return 0;
}
