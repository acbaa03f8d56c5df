/* Ring parameters, construction, lookup, replicas and accounting, whatever the algorithm;
 * the per-algorithm builders live in alg_continuum.c, alg_table.c and alg_rendezvous.c.
 * ketama reproduces twemproxy 0.5.0's continuum bit for bit (see reference notes). */
#include "rs_ring.h"
#include "rs_error.h"
#include "ring_impl.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

static const char *const algorithm_names[RS_ALG_COUNT] = {
    [RS_ALG_KETAMA] = "ketama",
    [RS_ALG_MODULA] = "modula",
    [RS_ALG_MAGLEV] = "maglev",
    [RS_ALG_RENDEZVOUS] = "rendezvous",
    [RS_ALG_KETAMA_XXH3] = "ketama_xxh3",
    [RS_ALG_HASH_RING] = "hash_ring",
    [RS_ALG_VNODE_SHA256] = "vnode_sha256",
};

void
rs_ring_params_init(rs_ring_params *p) {
    memset(p, 0, sizeof(*p));
    p->algorithm = RS_ALG_KETAMA;
    p->hash = RS_HASH_FNV1A_64;
    p->replicas = 2;
    p->table_size = RS_TABLE_SIZE_DEFAULT;
    p->points_per_weight = RS_POINTS_PER_WEIGHT_DEFAULT;
    p->vnodes = RS_VNODES_DEFAULT;
    p->replica_factor = RS_REPLICA_FACTOR_DEFAULT;
    p->zone_aware_replicas = false;
}

int
rs_algorithm_from_name(const char *name, rs_algorithm *out) {
    if (name == NULL) {
        return -EINVAL;
    }
    for (int i = 0; i < RS_ALG_COUNT; i++) {
        if (strcmp(name, algorithm_names[i]) == 0) {
            *out = (rs_algorithm)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *
rs_algorithm_name(rs_algorithm alg) {
    return (unsigned)alg < RS_ALG_COUNT ? algorithm_names[alg] : "unknown";
}

static bool
is_prime(uint32_t n) {
    if (n < 2) {
        return false;
    }
    for (uint32_t d = 2; d <= n / d; d++) {
        if (n % d == 0) {
            return false;
        }
    }
    return true;
}

const char *
rs_algorithm_own_hash(rs_algorithm alg) {
    switch (alg) {
    case RS_ALG_HASH_RING:
        return "md5";
    case RS_ALG_VNODE_SHA256:
        return "sha256_be32";
    case RS_ALG_KETAMA_XXH3:
        return "xxh3";
    default:
        return NULL;
    }
}

int
rs_ring_params_validate(const rs_ring_params *p, rs_error *err) {
    if ((unsigned)p->algorithm >= RS_ALG_COUNT) {
        return rs_error_set(err, -EINVAL, "algorithm: unknown algorithm %d", (int)p->algorithm);
    }
    if ((unsigned)p->hash >= RS_HASH_COUNT) {
        return rs_error_set(err, -EINVAL, "hash: unknown hash %d", (int)p->hash);
    }
    /* Algorithms with a key hash of their own take the default (meaning "not set") or
     * that very hash; anything else would be silently ignored, so it is refused. */
    const char *own = rs_algorithm_own_hash(p->algorithm);
    if (own != NULL && p->hash != RS_HASH_FNV1A_64 && strcmp(rs_hash_name(p->hash), own) != 0) {
        if (p->algorithm == RS_ALG_VNODE_SHA256) {
            return rs_error_set(err, -EINVAL,
                                "hash: vnode_sha256 always hashes keys with SHA-256; leave hash "
                                "unset, got \"%s\"",
                                rs_hash_name(p->hash));
        }
        return rs_error_set(err, -EINVAL,
                            "hash: %s always hashes keys with %s; leave hash unset (or \"%s\"), "
                            "got \"%s\"",
                            rs_algorithm_name(p->algorithm), own, own, rs_hash_name(p->hash));
    }
    if (p->replicas < 1 || p->replicas > RS_REPLICAS_MAX) {
        return rs_error_set(err, -EINVAL, "replicas: must be between 1 and %d, got %u",
                            RS_REPLICAS_MAX, p->replicas);
    }
    size_t tag = strnlen(p->hash_tag, sizeof(p->hash_tag));
    if (tag != 0 && tag != 2) {
        return rs_error_set(err, -EINVAL, "hash_tag: must be empty or exactly two characters");
    }
    /* 0 stands for the default in the algorithm-specific fields, so that parameters
     * zero-initialised by code that predates them stay valid. */
    uint32_t table_size = p->table_size == 0 ? RS_TABLE_SIZE_DEFAULT : p->table_size;
    if (table_size < RS_TABLE_SIZE_MIN || table_size > RS_TABLE_SIZE_MAX || !is_prime(table_size)) {
        return rs_error_set(err, -EINVAL,
                            "table_size: must be a prime between %u and %u (e.g. 65537, 655373), "
                            "got %u",
                            RS_TABLE_SIZE_MIN, RS_TABLE_SIZE_MAX, p->table_size);
    }
    if (p->points_per_weight > RS_POINTS_PER_WEIGHT_MAX) {
        return rs_error_set(err, -EINVAL, "points_per_weight: must be between 1 and %u, got %u",
                            RS_POINTS_PER_WEIGHT_MAX, p->points_per_weight);
    }
    if (p->vnodes > RS_VNODES_MAX) {
        return rs_error_set(err, -EINVAL, "vnodes: must be between 1 and %u, got %u", RS_VNODES_MAX,
                            p->vnodes);
    }
    if (p->replica_factor > RS_REPLICA_FACTOR_MAX) {
        return rs_error_set(err, -EINVAL, "replica_factor: must be between 1 and %u, got %u",
                            RS_REPLICA_FACTOR_MAX, p->replica_factor);
    }
    return 0;
}

/* Printable, no space: ids, zones and addresses end up in logs and text replies. */
static const char *
bad_char(const char *s) {
    for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++) {
        if (*c <= 0x20 || *c == 0x7f) {
            return (const char *)c;
        }
    }
    return NULL;
}

/* Splits "host:port" / "[v6]:port". Returns 0 with host span and port, or -EINVAL. */
static int
parse_address(const char *a, size_t *host_len, unsigned *port, const char **why) {
    const char *colon = strrchr(a, ':');
    if (colon == NULL) {
        *why = "must be host:port";
        return -EINVAL;
    }
    size_t hl = (size_t)(colon - a);
    if (hl == 0) {
        *why = "host is empty";
        return -EINVAL;
    }
    if (a[0] == '[') {
        if (hl < 3 || a[hl - 1] != ']') {
            *why = "IPv6 host must be in brackets: [addr]:port";
            return -EINVAL;
        }
    } else if (memchr(a, ':', hl) != NULL) {
        *why = "IPv6 host must be in brackets: [addr]:port";
        return -EINVAL;
    }
    const char *p = colon + 1;
    unsigned v = 0;
    size_t digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 6; p++, digits++) {
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (digits == 0 || *p != '\0' || v == 0 || v > 65535) {
        *why = "port must be a number between 1 and 65535";
        return -EINVAL;
    }
    *host_len = hl;
    *port = v;
    return 0;
}

int
rs_node_default_id(const char *address, char *out, size_t cap) {
    size_t hl;
    unsigned port;
    const char *why;
    if (address == NULL || parse_address(address, &hl, &port, &why) != 0) {
        return -EINVAL;
    }
    size_t len = port == 11211 ? hl : strlen(address);
    if (len + 1 > cap) {
        return -ENAMETOOLONG;
    }
    memcpy(out, address, len);
    out[len] = '\0';
    return 0;
}

static int
check_string(const char *what, const char *s, size_t min, size_t max, rs_error *err) {
    size_t len = s == NULL ? 0 : strnlen(s, max + 1);
    if (len < min) {
        return rs_error_set(err, -EINVAL, "%s must not be empty", what);
    }
    if (len > max) {
        return rs_error_set(err, -EINVAL, "%s is too long (max %zu bytes)", what, max);
    }
    if (s != NULL && bad_char(s) != NULL) {
        return rs_error_set(err, -EINVAL, "%s must not contain spaces or control characters", what);
    }
    return 0;
}

int
rs_node_validate(const rs_node *n, rs_error *err) {
    int rc;
    if ((rc = check_string("id", n->id, 1, RS_ID_MAX, err)) != 0 ||
        (rc = check_string("address", n->address, 1, RS_ADDRESS_MAX, err)) != 0 ||
        (rc = check_string("zone", n->zone, 0, RS_ZONE_MAX, err)) != 0) {
        return rc;
    }
    size_t hl;
    unsigned port;
    const char *why;
    if (parse_address(n->address, &hl, &port, &why) != 0) {
        return rs_error_set(err, -EINVAL, "address \"%s\": %s", n->address, why);
    }
    if (n->weight < 1 || n->weight > RS_WEIGHT_MAX) {
        return rs_error_set(err, -EINVAL, "weight must be between 1 and %d, got %u", RS_WEIGHT_MAX,
                            n->weight);
    }
    return 0;
}

/* twemproxy's server order: shorter identity first, then bytewise. */
static int
id_cmp(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb) {
        return la < lb ? -1 : 1;
    }
    return memcmp(a, b, la);
}

static int
node_cmp(const void *a, const void *b) {
    return id_cmp(((const rs_ring_node *)a)->id, ((const rs_ring_node *)b)->id);
}

/* The ring keeps its parameters with every 0-for-default spelled out. */
static void
resolve_defaults(rs_ring_params *p) {
    p->table_size = p->table_size == 0 ? RS_TABLE_SIZE_DEFAULT : p->table_size;
    p->points_per_weight =
        p->points_per_weight == 0 ? RS_POINTS_PER_WEIGHT_DEFAULT : p->points_per_weight;
    p->vnodes = p->vnodes == 0 ? RS_VNODES_DEFAULT : p->vnodes;
    p->replica_factor = p->replica_factor == 0 ? RS_REPLICA_FACTOR_DEFAULT : p->replica_factor;
}

static rs_shape
shape_of(rs_algorithm alg) {
    switch (alg) {
    case RS_ALG_MODULA:
    case RS_ALG_MAGLEV:
        return RS_SHAPE_SLOTS;
    case RS_ALG_RENDEZVOUS:
        return RS_SHAPE_SCORES;
    default:
        return RS_SHAPE_CONTINUUM;
    }
}

static int
zone_ref_cmp(const void *a, const void *b) {
    const rs_ring_node *x = *(const rs_ring_node *const *)a, *y = *(const rs_ring_node *const *)b;
    return strcmp(x->zone, y->zone);
}

/* A small id per distinct zone (nodes without one share ""), and how many zones hold an
 * enabled node: zone-aware replicas stop looking for new zones once they have them all. */
static int
build_zones(rs_ring *r) {
    const rs_ring_node **by_zone = malloc((size_t)r->nnodes * sizeof(*by_zone));
    r->zone_of = malloc((size_t)r->nnodes * sizeof(*r->zone_of));
    uint8_t *has_enabled = calloc(r->nnodes, 1);
    if (by_zone == NULL || r->zone_of == NULL || has_enabled == NULL) {
        free(by_zone);
        free(has_enabled);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < r->nnodes; i++) {
        by_zone[i] = &r->nodes[i];
    }
    qsort(by_zone, r->nnodes, sizeof(*by_zone), zone_ref_cmp);
    uint32_t id = 0;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        if (i > 0 && strcmp(by_zone[i - 1]->zone, by_zone[i]->zone) != 0) {
            id++;
        }
        uint32_t node = (uint32_t)(by_zone[i] - r->nodes);
        r->zone_of[node] = (uint16_t)id;
        if (by_zone[i]->enabled && !has_enabled[id]) {
            has_enabled[id] = 1;
            r->nzones++;
        }
    }
    r->nzone_ids = id + 1;
    free(by_zone);
    free(has_enabled);
    return 0;
}

static int
compute_fingerprint(rs_ring *r) {
    /* Canonical text: one line of parameters, then one line per node in ring order.
     * ketama and modula without zone-aware replicas keep their original text (and so
     * their fingerprints); other algorithms append the parameters that place keys. */
    size_t cap = 320;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        const rs_ring_node *n = &r->nodes[i];
        cap += strlen(n->id) + strlen(n->address) + strlen(n->zone) + 32;
    }
    char *text = malloc(cap);
    if (text == NULL) {
        return -ENOMEM;
    }
    const rs_ring_params *p = &r->params;
    size_t len = (size_t)snprintf(
        text, cap, "ringside-ring-v1 algorithm=%s hash=%s replicas=%u tag=%s",
        rs_algorithm_name(p->algorithm), rs_ring_key_hash_name(r), p->replicas, p->hash_tag);
    switch (p->algorithm) {
    case RS_ALG_MAGLEV:
        len += (size_t)snprintf(text + len, cap - len, " table_size=%u", p->table_size);
        break;
    case RS_ALG_KETAMA_XXH3:
        len +=
            (size_t)snprintf(text + len, cap - len, " points_per_weight=%u", p->points_per_weight);
        break;
    case RS_ALG_VNODE_SHA256:
        len += (size_t)snprintf(text + len, cap - len, " vnodes=%u replica_factor=%u", p->vnodes,
                                p->replica_factor);
        break;
    default:
        break;
    }
    if (p->zone_aware_replicas) {
        len += (size_t)snprintf(text + len, cap - len, " zone_aware_replicas=1");
    }
    text[len++] = '\n';
    for (uint32_t i = 0; i < r->nnodes; i++) {
        const rs_ring_node *n = &r->nodes[i];
        len += (size_t)snprintf(text + len, cap - len, "%s %s %u %s %d\n", n->id, n->address,
                                n->weight, n->zone, n->enabled ? 1 : 0);
    }
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)text, len, md);
    free(text);
    for (int i = 0; i < RS_FINGERPRINT_LEN / 2; i++) {
        snprintf(r->fingerprint + 2 * i, 3, "%02x", md[i]);
    }
    return 0;
}

static void
ring_free(rs_ring *r) {
    if (r == NULL) {
        return;
    }
    free(r->nodes);
    free(r->strings);
    free(r->points);
    free(r->bucket);
    free(r->slot);
    free(r->rv_node);
    free(r->rv_seed);
    free(r->rv_weight);
    free(r->rv_log2);
    free(r->zone_of);
    free(r);
}

static char *
arena_put(char **cursor, const char *s) {
    size_t len = s == NULL ? 0 : strlen(s);
    char *dst = *cursor;
    if (len > 0) {
        memcpy(dst, s, len);
    }
    dst[len] = '\0';
    *cursor += len + 1;
    return dst;
}

int
rs_ring_build(const rs_ring_params *p, const rs_node *nodes, size_t n, rs_ring **out,
              rs_error *err) {
    rs_ring *r = NULL;
    int rc;

    *out = NULL;
    if ((rc = rs_ring_params_validate(p, err)) != 0) {
        return rc;
    }
    if (n == 0 || nodes == NULL) {
        return rs_error_set(err, -EINVAL, "nodes: the node set is empty");
    }
    if (n > RS_NODES_MAX) {
        return rs_error_set(err, -E2BIG, "nodes: %zu nodes (max %d)", n, RS_NODES_MAX);
    }
    size_t strings = 0;
    for (size_t i = 0; i < n; i++) {
        rs_error nerr;
        if ((rc = rs_node_validate(&nodes[i], &nerr)) != 0) {
            return rs_error_set(err, rc, "nodes[%zu]%s%.*s%s: %s", i, nodes[i].id ? " (" : "",
                                nodes[i].id ? (int)strnlen(nodes[i].id, 64) : 0,
                                nodes[i].id ? nodes[i].id : "", nodes[i].id ? ")" : "", nerr.msg);
        }
        strings += strlen(nodes[i].id) + strlen(nodes[i].address) +
                   (nodes[i].zone ? strlen(nodes[i].zone) : 0) + 3;
    }

    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    atomic_init(&r->refs, 1);
    r->params = *p;
    resolve_defaults(&r->params);
    r->shape = shape_of(p->algorithm);
    switch (p->algorithm) {
    case RS_ALG_HASH_RING:
        r->hash = rs_hash_get(RS_HASH_MD5); /* MD5, bytes 0-3 little-endian: the library's */
        r->strict = true;
        break;
    case RS_ALG_VNODE_SHA256:
        r->hash = rs_alg_sha256_be32;
        r->strict = true;
        break;
    case RS_ALG_KETAMA_XXH3:
        r->hash = rs_alg_xxh3_32;
        break;
    default:
        r->hash = rs_hash_get(p->hash);
        break;
    }
    r->nnodes = (uint32_t)n;
    r->nodes = calloc(n, sizeof(*r->nodes));
    r->strings = malloc(strings);
    if (r->nodes == NULL || r->strings == NULL) {
        rc = rs_error_set(err, -ENOMEM, "out of memory");
        goto cleanup;
    }
    char *cursor = r->strings;
    for (size_t i = 0; i < n; i++) {
        rs_ring_node *rn = &r->nodes[i];
        rn->id = arena_put(&cursor, nodes[i].id);
        rn->address = arena_put(&cursor, nodes[i].address);
        rn->zone = arena_put(&cursor, nodes[i].zone);
        rn->weight = nodes[i].weight;
        rn->enabled = nodes[i].enabled;
    }
    qsort(r->nodes, n, sizeof(*r->nodes), node_cmp);
    for (uint32_t i = 0; i < r->nnodes; i++) {
        if (i > 0 && strcmp(r->nodes[i - 1].id, r->nodes[i].id) == 0) {
            rc = rs_error_set(err, -EEXIST, "nodes: duplicate id \"%s\"", r->nodes[i].id);
            goto cleanup;
        }
        if (r->nodes[i].enabled) {
            r->nenabled++;
            r->total_weight += r->nodes[i].weight;
        }
    }
    if (r->nenabled == 0) {
        rc = rs_error_set(err, -EINVAL, "nodes: no node is enabled");
        goto cleanup;
    }

    switch (p->algorithm) {
    case RS_ALG_KETAMA:
        rc = rs_alg_build_ketama(r, err);
        break;
    case RS_ALG_MODULA:
        rc = rs_alg_build_modula(r, err);
        break;
    case RS_ALG_MAGLEV:
        rc = rs_alg_build_maglev(r, err);
        break;
    case RS_ALG_RENDEZVOUS:
        rc = rs_alg_build_rendezvous(r, err);
        break;
    case RS_ALG_KETAMA_XXH3:
        rc = rs_alg_build_ketama_xxh3(r, err);
        break;
    case RS_ALG_HASH_RING:
        rc = rs_alg_build_hash_ring(r, err);
        break;
    case RS_ALG_VNODE_SHA256:
        rc = rs_alg_build_vnode_sha256(r, err);
        break;
    default:
        rc = rs_error_set(err, -EINVAL, "algorithm: not implemented");
        break;
    }
    if (rc != 0) {
        goto cleanup;
    }
    if (p->zone_aware_replicas && build_zones(r) != 0) {
        rc = rs_error_set(err, -ENOMEM, "out of memory");
        goto cleanup;
    }

    r->imbalance = 0;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        const rs_ring_node *rn = &r->nodes[i];
        if (rn->enabled) {
            double ideal = (double)rn->weight / (double)r->total_weight;
            double ratio = rn->share / ideal;
            if (ratio > r->imbalance) {
                r->imbalance = ratio;
            }
        }
    }
    if (compute_fingerprint(r) != 0) {
        rc = rs_error_set(err, -ENOMEM, "out of memory");
        goto cleanup;
    }
    *out = r;
    return 0;

cleanup:
    ring_free(r);
    return rc;
}

rs_ring *
rs_ring_ref(rs_ring *r) {
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    return r;
}

void
rs_ring_unref(rs_ring *r) {
    if (r != NULL && atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
        ring_free(r);
    }
}

uint32_t
rs_ring_hash_key(const rs_ring *r, const char *key, size_t len) {
    if (r->params.hash_tag[0] != '\0') {
        const char *start = memchr(key, r->params.hash_tag[0], len);
        if (start != NULL) {
            const char *end =
                memchr(start + 1, r->params.hash_tag[1], len - (size_t)(start + 1 - key));
            if (end != NULL && end - start > 1) {
                key = start + 1;
                len = (size_t)(end - key);
            }
        }
    }
    /* twemproxy hashes an empty key to 0; the Python rings hash "" like any string. */
    return len == 0 && !r->strict ? 0 : r->hash(key, len);
}

const char *
rs_ring_key_hash_name(const rs_ring *r) {
    const char *own = rs_algorithm_own_hash(r->params.algorithm);
    return own != NULL ? own : rs_hash_name(r->params.hash);
}

/* The best-ranked enabled node of a rendezvous ring. Out of line: inlined, its register
 * needs would put a prologue on every continuum and slot lookup. */
__attribute__((noinline)) static uint32_t
rendezvous_best(const rs_ring *r, uint32_t hash) {
    uint64_t spread = rs_rendezvous_spread(hash);
    uint32_t best = 0;
    if (!r->rv_weighted) {
        /* Ties go to the first, which is the lower node index. */
        uint64_t top = rs_rendezvous_mix(r->rv_seed[0], spread);
        for (uint32_t k = 1; k < r->nenabled; k++) {
            uint64_t x = rs_rendezvous_mix(r->rv_seed[k], spread);
            if (x > top) {
                top = x;
                best = k;
            }
        }
        return r->rv_node[best];
    }
    /* Smallest -log2(U) / weight: compare key_a * weight_b < key_b * weight_a (< 2^52). */
    uint64_t bkey = rs_rendezvous_neglog2(r->rv_log2, rs_rendezvous_mix(r->rv_seed[0], spread) | 1);
    uint64_t bw = r->rv_weight[0];
    for (uint32_t k = 1; k < r->nenabled; k++) {
        uint64_t key =
            rs_rendezvous_neglog2(r->rv_log2, rs_rendezvous_mix(r->rv_seed[k], spread) | 1);
        if (key * bw < bkey * r->rv_weight[k]) {
            bkey = key;
            bw = r->rv_weight[k];
            best = k;
        }
    }
    return r->rv_node[best];
}

uint32_t
rs_ring_locate(const rs_ring *r, uint32_t hash) {
    switch (r->shape) {
    case RS_SHAPE_CONTINUUM:
        return r->points[rs_continuum_index(r, hash)].owner;
    case RS_SHAPE_SLOTS:
        return r->slot[rs_slot_index(r, hash)];
    default:
        return rendezvous_best(r, hash);
    }
}

uint32_t
rs_ring_lookup(const rs_ring *r, const char *key, size_t len) {
    return rs_ring_locate(r, rs_ring_hash_key(r, key, len));
}

/* ---- replicas ---- */

/* The natural order of a key as a sequence of node indexes, repeats included: a walk
 * around the continuum or the slot table, or a list ranked in advance (rendezvous). */
typedef struct walk {
    const rs_ring *r;
    const rs_rank *ranks; /* rendezvous */
    uint32_t pos, len, left;
} walk;

static void
walk_init(walk *w, const rs_ring *r, uint32_t hash, const rs_rank *ranks) {
    w->r = r;
    w->ranks = ranks;
    switch (r->shape) {
    case RS_SHAPE_CONTINUUM:
        w->len = r->npoints;
        w->pos = rs_continuum_index(r, hash);
        w->pos = w->pos == r->npoints ? 0 : w->pos;
        break;
    case RS_SHAPE_SLOTS:
        w->len = r->nslots;
        w->pos = rs_slot_index(r, hash);
        break;
    default:
        w->len = r->nenabled;
        w->pos = 0;
        break;
    }
    w->left = w->len;
}

static inline bool
walk_next(walk *w, uint32_t *node) {
    if (w->left == 0) {
        return false;
    }
    w->left--;
    switch (w->r->shape) {
    case RS_SHAPE_CONTINUUM:
        *node = w->r->points[w->pos].owner;
        break;
    case RS_SHAPE_SLOTS:
        *node = w->r->slot[w->pos];
        break;
    default:
        *node = w->ranks[w->pos].node;
        break;
    }
    w->pos = w->pos + 1 == w->len ? 0 : w->pos + 1;
    return true;
}

static int
rank_cmp(const void *a, const void *b) {
    const rs_rank *x = a, *y = b;
    return rs_rank_before(x, y) ? -1 : rs_rank_before(y, x) ? 1 : 0;
}

#define BIT_TEST(set, i) (((set)[(i) / 64] >> ((i) % 64)) & 1)
#define BIT_SET(set, i) ((set)[(i) / 64] |= (uint64_t)1 << ((i) % 64))

/* Distinct usable nodes in natural order. */
static size_t
plain_candidates(walk *w, const uint8_t *usable, uint32_t *out, size_t max) {
    /* Small requests check the output for duplicates; large ones keep a bitmap. */
    uint64_t seen[(RS_NODES_MAX + 63) / 64];
    bool bitmap = max > 8;
    if (bitmap) {
        memset(seen, 0, ((w->r->nnodes + 63) / 64) * sizeof(uint64_t));
    }
    size_t count = 0;
    uint32_t node;
    while (count < max && walk_next(w, &node)) {
        if (usable != NULL && !usable[node]) {
            continue;
        }
        bool dup = false;
        if (bitmap) {
            dup = BIT_TEST(seen, node);
            BIT_SET(seen, node);
        } else {
            for (size_t j = 0; j < count && !dup; j++) {
                dup = out[j] == node;
            }
        }
        if (!dup) {
            out[count++] = node;
        }
    }
    return count;
}

/* The zone-aware order over all enabled nodes, health aside: walking the natural order,
 * a node of a zone not taken yet comes first (and takes its zone); once every zone is
 * taken, or the walk ends, the other nodes follow in natural order (a second walk from
 * the start). Unusable nodes keep their place in that order but are not written. */
static size_t
zone_candidates(walk *w, const uint8_t *usable, uint32_t *out, size_t max) {
    const rs_ring *r = w->r;
    uint64_t seen[(RS_NODES_MAX + 63) / 64];
    uint64_t first[(RS_NODES_MAX + 63) / 64];
    uint64_t taken[(RS_NODES_MAX + 63) / 64];
    const size_t words = (r->nnodes + 63) / 64;
    memset(seen, 0, words * sizeof(uint64_t));
    memset(first, 0, words * sizeof(uint64_t));
    memset(taken, 0, ((r->nzone_ids + 63) / 64) * sizeof(uint64_t));
    walk again = *w;
    size_t count = 0;
    uint32_t zones = 0, node;
    while (count < max && zones < r->nzones && walk_next(w, &node)) {
        if (BIT_TEST(seen, node)) {
            continue;
        }
        BIT_SET(seen, node);
        uint32_t z = r->zone_of[node];
        if (!BIT_TEST(taken, z)) {
            BIT_SET(taken, z);
            BIT_SET(first, node);
            zones++;
            if (usable == NULL || usable[node]) {
                out[count++] = node;
            }
        }
    }
    while (count < max && walk_next(&again, &node)) {
        if (BIT_TEST(first, node)) {
            continue;
        }
        BIT_SET(first, node); /* from here on: "already placed" */
        if (usable == NULL || usable[node]) {
            out[count++] = node;
        }
    }
    return count;
}

size_t
rs_ring_candidates(const rs_ring *r, uint32_t hash, const uint8_t *usable, uint32_t *out,
                   size_t max) {
    if (max > r->nenabled) {
        max = r->nenabled;
    }
    if (max == 0) {
        return 0;
    }
    /* The common case: a usable primary and one answer. */
    if (max == 1) {
        uint32_t primary = rs_ring_locate(r, hash);
        if (usable == NULL || usable[primary]) {
            out[0] = primary;
            return 1;
        }
    }
    bool zones = r->params.zone_aware_replicas && r->zone_of != NULL;
    if (r->shape != RS_SHAPE_SCORES) {
        walk w;
        walk_init(&w, r, hash, NULL);
        return zones ? zone_candidates(&w, usable, out, max)
                     : plain_candidates(&w, usable, out, max);
    }

    /* Rendezvous: a few answers come from one pass keeping the best ones; more, or zones,
     * rank every node. */
    rs_rank stack[256];
    rs_rank *ranks = r->nenabled <= 256 ? stack : malloc((size_t)r->nenabled * sizeof(*ranks));
    if (ranks == NULL) {
        return 0;
    }
    rs_alg_rendezvous_ranks(r, hash, ranks);
    size_t count = 0;
    if (!zones && max <= RS_REPLICAS_MAX) {
        rs_rank best[RS_REPLICAS_MAX];
        for (uint32_t k = 0; k < r->nenabled; k++) {
            if (usable != NULL && !usable[ranks[k].node]) {
                continue;
            }
            if (count == max && !rs_rank_before(&ranks[k], &best[count - 1])) {
                continue;
            }
            size_t at = count < max ? count++ : count - 1;
            while (at > 0 && rs_rank_before(&ranks[k], &best[at - 1])) {
                best[at] = best[at - 1];
                at--;
            }
            best[at] = ranks[k];
        }
        for (size_t i = 0; i < count; i++) {
            out[i] = best[i].node;
        }
    } else {
        qsort(ranks, r->nenabled, sizeof(*ranks), rank_cmp);
        walk w;
        walk_init(&w, r, hash, ranks);
        count =
            zones ? zone_candidates(&w, usable, out, max) : plain_candidates(&w, usable, out, max);
    }
    if (ranks != stack) {
        free(ranks);
    }
    return count;
}

/* ---- accessors ---- */

const rs_ring_params *
rs_ring_params_of(const rs_ring *r) {
    return &r->params;
}

size_t
rs_ring_node_count(const rs_ring *r) {
    return r->nnodes;
}

size_t
rs_ring_enabled_count(const rs_ring *r) {
    return r->nenabled;
}

const rs_ring_node *
rs_ring_node_at(const rs_ring *r, size_t i) {
    return i < r->nnodes ? &r->nodes[i] : NULL;
}

int
rs_ring_find(const rs_ring *r, const char *id) {
    size_t lo = 0, hi = r->nnodes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = id_cmp(r->nodes[mid].id, id);
        if (c == 0) {
            return (int)mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -ENOENT;
}

size_t
rs_ring_point_count(const rs_ring *r) {
    switch (r->shape) {
    case RS_SHAPE_CONTINUUM:
        return r->npoints;
    case RS_SHAPE_SLOTS:
        return r->nslots;
    default:
        return 0;
    }
}

int
rs_ring_point_at(const rs_ring *r, size_t i, uint32_t *value, uint32_t *owner) {
    if (i >= rs_ring_point_count(r)) {
        return -ERANGE;
    }
    if (r->shape == RS_SHAPE_CONTINUUM) {
        *value = r->points[i].value;
        *owner = r->points[i].owner;
    } else {
        *value = (uint32_t)i;
        *owner = r->slot[i];
    }
    return 0;
}

const char *
rs_ring_fingerprint(const rs_ring *r) {
    return r->fingerprint;
}

double
rs_ring_imbalance(const rs_ring *r) {
    return r->imbalance;
}

/* ---- movement ---- */

/* Maps each node index of `from` to the index of the same id in `to`, or UINT32_MAX. */
static uint32_t *
map_nodes(const rs_ring *from, const rs_ring *to) {
    uint32_t *map = malloc((size_t)from->nnodes * sizeof(*map));
    if (map != NULL) {
        for (uint32_t i = 0; i < from->nnodes; i++) {
            int j = rs_ring_find(to, from->nodes[i].id);
            map[i] = j < 0 ? UINT32_MAX : (uint32_t)j;
        }
    }
    return map;
}

/* Two continuum rings with the same rule: both owners are constant between consecutive
 * points of the merged point sets, so arcs are compared whole. (A ">" ring is a ">=" ring
 * seen through hash + 1, a bijection: the same merge counts it exactly.) */
static uint64_t
moved_continuum(const rs_ring *from, const rs_ring *to, const uint32_t *map) {
    const rs_point *a = from->points, *b = to->points;
    uint32_t na = from->npoints, nb = to->npoints, i = 0, j = 0;
    uint64_t moved = 0, prev = 0; /* hashes below prev are accounted for */
    while (i < na || j < nb) {
        uint32_t u = j >= nb || (i < na && a[i].value <= b[j].value) ? a[i].value : b[j].value;
        /* Past the last point, the sentinel carries point 0's owner. */
        if (map[a[i].owner] != b[j].owner) {
            moved += (uint64_t)u + 1 - prev;
        }
        prev = (uint64_t)u + 1;
        while (i < na && a[i].value == u) {
            i++;
        }
        while (j < nb && b[j].value == u) {
            j++;
        }
    }
    if (map[a[0].owner] != b[0].owner) {
        moved += ((uint64_t)1 << 32) - prev;
    }
    return moved;
}

/* Two slot tables of one size place hash h in the same slot, h % n. */
static uint64_t
moved_slots(const rs_ring *from, const rs_ring *to, const uint32_t *map) {
    uint64_t base = ((uint64_t)1 << 32) / from->nslots;
    uint64_t extra = ((uint64_t)1 << 32) % from->nslots;
    uint64_t moved = 0;
    for (uint32_t s = 0; s < from->nslots; s++) {
        if (map[from->slot[s]] != to->slot[s]) {
            moved += base + (s < extra);
        }
    }
    return moved;
}

/* Two rendezvous rings whose common nodes kept their weights: a key moves exactly when
 * the best node over both node sets is in only one of them, which happens with
 * probability weight(in one only) / weight(all). Returns NAN when weights changed. */
static double
moved_rendezvous(const rs_ring *from, const rs_ring *to, const uint32_t *map) {
    uint64_t only = 0, all = 0;
    for (uint32_t i = 0; i < from->nnodes; i++) {
        const rs_ring_node *a = &from->nodes[i];
        const rs_ring_node *b = map[i] == UINT32_MAX ? NULL : &to->nodes[map[i]];
        bool in_b = b != NULL && b->enabled;
        if (a->enabled && in_b && a->weight != b->weight) {
            return NAN;
        }
        if (a->enabled) {
            all += a->weight;
            only += in_b ? 0 : a->weight;
        }
    }
    for (uint32_t j = 0; j < to->nnodes; j++) {
        const rs_ring_node *b = &to->nodes[j];
        int i = rs_ring_find(from, b->id);
        bool in_a = i >= 0 && from->nodes[i].enabled;
        if (b->enabled && !in_a) {
            all += b->weight;
            only += b->weight;
        }
    }
    return (double)only / (double)all;
}

double
rs_ring_moved_fraction(const rs_ring *from, const rs_ring *to) {
    uint32_t *map = map_nodes(from, to);
    if (map == NULL) {
        return NAN;
    }
    double result = NAN;
    if (from->shape == RS_SHAPE_CONTINUUM && to->shape == RS_SHAPE_CONTINUUM &&
        from->strict == to->strict) {
        result = (double)moved_continuum(from, to, map) / RS_TWO32;
    } else if (from->shape == RS_SHAPE_SLOTS && to->shape == RS_SHAPE_SLOTS &&
               from->nslots == to->nslots) {
        result = (double)moved_slots(from, to, map) / RS_TWO32;
    } else if (from->shape == RS_SHAPE_SCORES && to->shape == RS_SHAPE_SCORES) {
        result = moved_rendezvous(from, to, map);
    }
    if (isnan(result)) {
        /* Pseudo-random, distinct sample hashes: an even stride would alias with modulo.
         * Rendezvous lookups cost one score per node: fewer samples for large rings. */
        uint64_t cost = 1 + (from->shape == RS_SHAPE_SCORES ? from->nenabled : 0) +
                        (to->shape == RS_SHAPE_SCORES ? to->nenabled : 0);
        uint32_t samples = 1u << 20;
        while (samples > (1u << 14) && (uint64_t)samples * cost > ((uint64_t)1 << 26)) {
            samples >>= 1;
        }
        uint64_t moved = 0;
        for (uint32_t s = 0; s < samples; s++) {
            uint32_t h = s;
            h ^= h >> 16;
            h *= 0x85ebca6bu;
            h ^= h >> 13;
            h *= 0xc2b2ae35u;
            h ^= h >> 16;
            if (map[rs_ring_locate(from, h)] != rs_ring_locate(to, h)) {
                moved++;
            }
        }
        result = (double)moved / samples;
    }
    free(map);
    return result;
}
