/* Ring construction, lookup and accounting for the ketama and modula algorithms.
 * ketama reproduces twemproxy 0.5.0's continuum bit for bit (see reference notes). */
#include "rs_ring.h"
#include "rs_error.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#define KETAMA_POINTS_PER_SERVER 160
#define KETAMA_POINTS_PER_HASH 4
#define TWO32 4294967296.0

struct rs_ring {
    atomic_uint refs;
    rs_ring_params params;
    rs_hash_fn hash;
    uint32_t nnodes;
    uint32_t nenabled;
    uint32_t total_weight; /* of enabled nodes */
    rs_ring_node *nodes;   /* sorted by identity: shorter id first, then bytewise */
    char *strings;         /* arena holding every node string */

    /* ketama: sorted point values with their owners, plus a bucket index over the top
     * bits of the hash so a lookup scans a handful of points instead of a bisection. */
    uint32_t npoints;
    uint32_t *value;
    uint32_t *owner;
    uint32_t *bucket; /* 2^bucket_bits + 1 entries: first point index of each bucket */
    uint32_t bucket_shift;

    /* modula: slot -> node */
    uint32_t nslots;
    uint32_t *slot;

    double imbalance;
    char fingerprint[RS_FINGERPRINT_LEN + 1];
};

static const char *const algorithm_names[RS_ALG_COUNT] = {
    [RS_ALG_KETAMA] = "ketama",
    [RS_ALG_MODULA] = "modula",
};

void
rs_ring_params_init(rs_ring_params *p) {
    memset(p, 0, sizeof(*p));
    p->algorithm = RS_ALG_KETAMA;
    p->hash = RS_HASH_FNV1A_64;
    p->replicas = 2;
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

int
rs_ring_params_validate(const rs_ring_params *p, rs_error *err) {
    if ((unsigned)p->algorithm >= RS_ALG_COUNT) {
        return rs_error_set(err, -EINVAL, "algorithm: unknown algorithm %d", (int)p->algorithm);
    }
    if ((unsigned)p->hash >= RS_HASH_COUNT) {
        return rs_error_set(err, -EINVAL, "hash: unknown hash %d", (int)p->hash);
    }
    if (p->replicas < 1 || p->replicas > RS_REPLICAS_MAX) {
        return rs_error_set(err, -EINVAL, "replicas: must be between 1 and %d, got %u",
                            RS_REPLICAS_MAX, p->replicas);
    }
    size_t tag = strnlen(p->hash_tag, sizeof(p->hash_tag));
    if (tag != 0 && tag != 2) {
        return rs_error_set(err, -EINVAL, "hash_tag: must be empty or exactly two characters");
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

/* Stable LSD radix sort of items on their upper 32 bits (the point value); the lower
 * 32 bits carry the owner. Stability keeps twemproxy's tie order: server index, then
 * hash index, then digest word, which is the order items were generated in. */
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
 * per MD5, where snprintf would cost a third of the build. */
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

static int
build_ketama(rs_ring *r, rs_error *err) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        rs_ring_node *n = &r->nodes[i];
        n->points = n->enabled ? ketama_points(n->weight, r->total_weight, r->nenabled) : 0;
        total += n->points;
    }
    if (total > RS_POINTS_MAX) {
        return rs_error_set(err, -E2BIG, "ring needs %llu points (max %u)",
                            (unsigned long long)total, RS_POINTS_MAX);
    }
    if (total == 0) {
        return rs_error_set(err, -EINVAL, "no node gets a point on the ring (weights too uneven)");
    }
    uint64_t *items = malloc((size_t)total * sizeof(*items));
    if (items == NULL) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    uint32_t k = 0;
    char buf[RS_ID_MAX + 16];
    unsigned char digest[16];
    for (uint32_t i = 0; i < r->nnodes; i++) {
        const rs_ring_node *n = &r->nodes[i];
        size_t idlen = strlen(n->id);
        memcpy(buf, n->id, idlen);
        buf[idlen] = '-';
        for (uint32_t h = 0; h < n->points / KETAMA_POINTS_PER_HASH; h++) {
            size_t len = format_u32(buf + idlen + 1, h);
            rs_md5(buf, idlen + 1 + len, digest);
            for (int w = 0; w < KETAMA_POINTS_PER_HASH; w++) {
                const unsigned char *d = digest + 4 * w;
                uint32_t v = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 |
                             (uint32_t)d[3] << 24;
                items[k++] = (uint64_t)v << 32 | i;
            }
        }
    }
    int rc = sort_points(items, k);
    if (rc != 0) {
        free(items);
        return rs_error_set(err, rc, "out of memory");
    }
    unsigned bits = 1;
    while (bits < 20 && (1u << (bits + 2)) <= k) {
        bits++;
    }
    r->npoints = k;
    r->bucket_shift = 32 - bits;
    r->value = malloc((size_t)k * sizeof(*r->value));
    r->owner = malloc((size_t)k * sizeof(*r->owner));
    r->bucket = malloc(((size_t)(1u << bits) + 1) * sizeof(*r->bucket));
    if (r->value == NULL || r->owner == NULL || r->bucket == NULL) {
        free(items);
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    uint32_t b = 0;
    for (uint32_t i = 0; i < k; i++) {
        r->value[i] = (uint32_t)(items[i] >> 32);
        r->owner[i] = (uint32_t)items[i];
        uint32_t top = r->value[i] >> r->bucket_shift;
        while (b <= top) {
            r->bucket[b++] = i;
        }
    }
    while (b <= (1u << bits)) {
        r->bucket[b++] = k;
    }
    free(items);

    /* Shares from arc lengths: point i owns (value[i-1], value[i]]; point 0 also owns
     * everything above the last point. A repeated value owns nothing. */
    uint64_t *own = calloc(r->nnodes, sizeof(*own));
    if (own == NULL) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    own[r->owner[0]] += (uint64_t)r->value[0] + 1 + (UINT32_MAX - (uint64_t)r->value[k - 1]);
    for (uint32_t i = 1; i < k; i++) {
        own[r->owner[i]] += (uint64_t)r->value[i] - r->value[i - 1];
    }
    for (uint32_t i = 0; i < r->nnodes; i++) {
        r->nodes[i].share = (double)own[i] / TWO32;
    }
    free(own);
    return 0;
}

static int
build_modula(rs_ring *r, rs_error *err) {
    if (r->total_weight > RS_POINTS_MAX) {
        return rs_error_set(err, -E2BIG, "modula needs %u slots (max %u): lower the weights",
                            r->total_weight, RS_POINTS_MAX);
    }
    r->nslots = r->total_weight;
    r->slot = malloc((size_t)r->nslots * sizeof(*r->slot));
    if (r->slot == NULL) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        rs_ring_node *n = &r->nodes[i];
        n->points = n->enabled ? n->weight : 0;
        for (uint32_t w = 0; w < n->points; w++) {
            r->slot[k++] = i;
        }
    }
    /* hash % W over all 2^32 hashes: the first (2^32 mod W) slots get one extra hash. */
    uint64_t base = ((uint64_t)1 << 32) / r->nslots;
    uint64_t extra = ((uint64_t)1 << 32) % r->nslots;
    for (uint32_t s = 0; s < r->nslots; s++) {
        r->nodes[r->slot[s]].share += (double)(base + (s < extra)) / TWO32;
    }
    return 0;
}

static int
compute_fingerprint(rs_ring *r) {
    /* Canonical text: one line of parameters, then one line per node in ring order. */
    size_t cap = 256;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        const rs_ring_node *n = &r->nodes[i];
        cap += strlen(n->id) + strlen(n->address) + strlen(n->zone) + 32;
    }
    char *text = malloc(cap);
    if (text == NULL) {
        return -ENOMEM;
    }
    size_t len =
        (size_t)snprintf(text, cap, "ringside-ring-v1 algorithm=%s hash=%s replicas=%u tag=%s\n",
                         rs_algorithm_name(r->params.algorithm), rs_hash_name(r->params.hash),
                         r->params.replicas, r->params.hash_tag);
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
    free(r->value);
    free(r->owner);
    free(r->bucket);
    free(r->slot);
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
    r->hash = rs_hash_get(p->hash);
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
        rc = build_ketama(r, err);
        break;
    case RS_ALG_MODULA:
        rc = build_modula(r, err);
        break;
    default:
        rc = rs_error_set(err, -EINVAL, "algorithm: not implemented");
        break;
    }
    if (rc != 0) {
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
    return len == 0 ? 0 : r->hash(key, len);
}

/* Index of the first point >= hash, wrapping to 0 past the last one. */
static inline uint32_t
ketama_index(const rs_ring *r, uint32_t hash) {
    uint32_t b = hash >> r->bucket_shift;
    uint32_t i = r->bucket[b], end = r->bucket[b + 1];
    while (i < end && r->value[i] < hash) {
        i++;
    }
    return i == r->npoints ? 0 : i;
}

uint32_t
rs_ring_locate(const rs_ring *r, uint32_t hash) {
    if (r->params.algorithm == RS_ALG_KETAMA) {
        return r->owner[ketama_index(r, hash)];
    }
    return r->slot[hash % r->nslots];
}

uint32_t
rs_ring_lookup(const rs_ring *r, const char *key, size_t len) {
    return rs_ring_locate(r, rs_ring_hash_key(r, key, len));
}

size_t
rs_ring_candidates(const rs_ring *r, uint32_t hash, const uint8_t *usable, uint32_t *out,
                   size_t max) {
    const uint32_t *seq;
    uint32_t len, start;
    if (r->params.algorithm == RS_ALG_KETAMA) {
        seq = r->owner;
        len = r->npoints;
        start = ketama_index(r, hash);
    } else {
        seq = r->slot;
        len = r->nslots;
        start = hash % r->nslots;
    }
    if (max > r->nenabled) {
        max = r->nenabled;
    }
    /* Small requests check the output for duplicates; large ones keep a bitmap. */
    uint64_t seen[(RS_NODES_MAX + 63) / 64];
    bool bitmap = max > 8;
    if (bitmap) {
        memset(seen, 0, ((r->nnodes + 63) / 64) * sizeof(uint64_t));
    }
    size_t count = 0;
    uint32_t pos = start;
    for (uint32_t step = 0; step < len && count < max; step++) {
        uint32_t node = seq[pos];
        pos = pos + 1 == len ? 0 : pos + 1;
        if (usable != NULL && !usable[node]) {
            continue;
        }
        bool dup = false;
        if (bitmap) {
            dup = (seen[node / 64] >> (node % 64)) & 1;
            seen[node / 64] |= (uint64_t)1 << (node % 64);
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
    return r->params.algorithm == RS_ALG_KETAMA ? r->npoints : r->nslots;
}

int
rs_ring_point_at(const rs_ring *r, size_t i, uint32_t *value, uint32_t *owner) {
    if (i >= rs_ring_point_count(r)) {
        return -ERANGE;
    }
    if (r->params.algorithm == RS_ALG_KETAMA) {
        *value = r->value[i];
        *owner = r->owner[i];
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

double
rs_ring_moved_fraction(const rs_ring *from, const rs_ring *to) {
    uint32_t *map = map_nodes(from, to);
    if (map == NULL) {
        return NAN;
    }
    uint64_t moved = 0;
    if (from->params.algorithm == RS_ALG_KETAMA && to->params.algorithm == RS_ALG_KETAMA) {
        /* Both owners are constant between consecutive points of the merged point sets:
         * on (prev, u] the owner is that of the first point >= u in each ring. */
        uint32_t i = 0, j = 0;
        uint64_t prev = 0; /* hashes below prev are accounted for */
        while (i < from->npoints || j < to->npoints) {
            uint32_t u;
            if (j >= to->npoints || (i < from->npoints && from->value[i] <= to->value[j])) {
                u = from->value[i];
            } else {
                u = to->value[j];
            }
            uint32_t a = from->owner[i < from->npoints ? i : 0];
            uint32_t b = to->owner[j < to->npoints ? j : 0];
            if (map[a] != b) {
                moved += (uint64_t)u + 1 - prev;
            }
            prev = (uint64_t)u + 1;
            while (i < from->npoints && from->value[i] == u) {
                i++;
            }
            while (j < to->npoints && to->value[j] == u) {
                j++;
            }
        }
        if (map[from->owner[0]] != to->owner[0]) {
            moved += ((uint64_t)1 << 32) - prev;
        }
        free(map);
        return (double)moved / TWO32;
    }
    /* Pseudo-random, distinct sample hashes: an even stride would alias with modulo. */
    const uint32_t samples = 1u << 20;
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
    free(map);
    return (double)moved / samples;
}
