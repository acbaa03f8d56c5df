/* The ring: an immutable, refcounted placement built from parameters and a node set.
 * Lookups read it; a change builds a new one that is swapped in whole. */
#ifndef RS_RING_H
#define RS_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_error.h"
#include "rs_hash.h"

/* Limits on everything a ring is built from; input beyond them is rejected. */
#define RS_NODES_MAX 10000     /* nodes in one ring, enabled or not */
#define RS_ID_MAX 200          /* bytes in a node id */
#define RS_ADDRESS_MAX 262     /* bytes in "host:port" ("[v6]:port" included) */
#define RS_ZONE_MAX 64         /* bytes in a zone name */
#define RS_WEIGHT_MAX 10000    /* largest node weight */
#define RS_REPLICAS_MAX 16     /* largest replicas parameter */
#define RS_POINTS_MAX 4000000u /* largest point or slot count of one ring */
#define RS_FINGERPRINT_LEN 16  /* hex characters */

/* Algorithm parameters: defaults and bounds. */
#define RS_TABLE_SIZE_DEFAULT 65537u /* maglev lookup table slots (a prime) */
#define RS_TABLE_SIZE_MIN 2u
#define RS_TABLE_SIZE_MAX RS_POINTS_MAX
#define RS_POINTS_PER_WEIGHT_DEFAULT 160u /* ketama_xxh3 points per unit of weight */
#define RS_POINTS_PER_WEIGHT_MAX 10000u
#define RS_VNODES_DEFAULT 150u /* vnode_sha256 virtual nodes per node (per unit of weight) */
#define RS_VNODES_MAX 10000u
#define RS_REPLICA_FACTOR_DEFAULT 2u /* vnode_sha256 points per virtual node */
#define RS_REPLICA_FACTOR_MAX 64u

/* Names in config, KV and CLI are the lowercase words after RS_ALG_ ("ketama_xxh3"). */
typedef enum rs_algorithm {
    RS_ALG_KETAMA = 0,   /* twemproxy 0.5.0 ketama, bit for bit */
    RS_ALG_MODULA,       /* twemproxy modula: slots[hash % total weight] */
    RS_ALG_MAGLEV,       /* Maglev lookup table of table_size slots, weighted */
    RS_ALG_RENDEZVOUS,   /* highest random weight: the best-scoring node wins, O(nodes) */
    RS_ALG_KETAMA_XXH3,  /* ketama's shape with XXH3 points and keys; not twemproxy's */
    RS_ALG_HASH_RING,    /* Python hash_ring 1.3.1, keys hashed with MD5 */
    RS_ALG_VNODE_SHA256, /* the consistent-hashing article's ConsistentHashRing (SHA-256) */
    RS_ALG_COUNT
} rs_algorithm;

/* A node as given to rs_ring_build. Strings are borrowed; the ring copies them. */
typedef struct rs_node {
    const char *id;      /* string hashed onto the ring; required */
    const char *address; /* "host:port" returned to clients; required */
    const char *zone;    /* NULL or "" for none */
    uint32_t weight;     /* 1..RS_WEIGHT_MAX */
    bool enabled;        /* a disabled node keeps its entry but gets no points */
} rs_node;

typedef struct rs_ring_params {
    rs_algorithm algorithm;
    rs_hash_kind hash; /* key hash; hash_ring, vnode_sha256 and ketama_xxh3 have their own
                        * and accept only the default or that one (see rs_ring_key_hash_name) */
    uint32_t replicas; /* 1..RS_REPLICAS_MAX: distinct nodes a lookup may return */
    char hash_tag[3];  /* "" for none, else exactly two bytes, e.g. "{}" */
    /* Algorithm-specific; 0 means the default (a built ring reports the value used). */
    uint32_t table_size;        /* maglev: a prime in RS_TABLE_SIZE_MIN..MAX */
    uint32_t points_per_weight; /* ketama_xxh3: 1..RS_POINTS_PER_WEIGHT_MAX */
    uint32_t vnodes;            /* vnode_sha256: 1..RS_VNODES_MAX */
    uint32_t replica_factor;    /* vnode_sha256: 1..RS_REPLICA_FACTOR_MAX */
    bool zone_aware_replicas;   /* replicas prefer zones not chosen yet (rs_ring_candidates) */
} rs_ring_params;

/* A node of a built ring. Valid as long as the caller holds the ring. */
typedef struct rs_ring_node {
    const char *id;
    const char *address;
    const char *zone; /* "" for none */
    uint32_t weight;
    bool enabled;
    uint32_t points; /* points (continuum rings) or slots (modula, maglev); 0 for rendezvous */
    double share;    /* fraction of the 2^32 key-hash space it owns: exact, except for
                      * rendezvous, where it is the expected weight / total weight */
} rs_ring_node;

typedef struct rs_ring rs_ring;

/* Defaults: ketama, fnv1a_64, 2 replicas, no hash tag, table_size 65537,
 * points_per_weight 160, vnodes 150, replica_factor 2, zone_aware_replicas off. */
void rs_ring_params_init(rs_ring_params *p);

/* Check parameters on their own (every field, whatever the algorithm). Returns 0 or
 * -EINVAL with err filled; messages start with the field name ("table_size: ..."). */
int rs_ring_params_validate(const rs_ring_params *p, rs_error *err);

int rs_algorithm_from_name(const char *name, rs_algorithm *out); /* 0 or -EINVAL */
const char *rs_algorithm_name(rs_algorithm alg);

/* The key hash an algorithm always uses ("md5" for hash_ring, "sha256_be32" for
 * vnode_sha256, "xxh3" for ketama_xxh3), or NULL when it uses params.hash. */
const char *rs_algorithm_own_hash(rs_algorithm alg);

/* Check one node on its own (id, address, zone, weight). Returns 0 or -EINVAL. */
int rs_node_validate(const rs_node *n, rs_error *err);

/* The id twemproxy gives a server without a name: "host" for port 11211, else the
 * address itself. Writes at most cap bytes including the NUL. Returns 0, -EINVAL for a
 * malformed address, or -ENAMETOOLONG when it does not fit. */
int rs_node_default_id(const char *address, char *out, size_t cap);

/* Build a ring from params and nodes[0..n) (in any order: the result is the same).
 * On success *out holds a ring with one reference for the caller. Errors (err filled):
 * -EINVAL bad params or node, empty node set, or no enabled node; -EEXIST duplicate id;
 * -E2BIG too many nodes or points; -ENOMEM. */
int rs_ring_build(const rs_ring_params *p, const rs_node *nodes, size_t n, rs_ring **out,
                  rs_error *err);

rs_ring *rs_ring_ref(rs_ring *r);
void rs_ring_unref(rs_ring *r); /* accepts NULL; frees on the last reference */

/* The hash of a key as this ring places it: hash tag applied, then the ring's key hash.
 * An empty key hashes to 0, except for hash_ring and vnode_sha256, which hash it as the
 * Python code does (MD5 / SHA-256 of ""). */
uint32_t rs_ring_hash_key(const rs_ring *r, const char *key, size_t len);

/* Name of the key hash the ring really uses: params.hash, or "md5" (hash_ring),
 * "sha256_be32" (vnode_sha256), "xxh3" (ketama_xxh3). */
const char *rs_ring_key_hash_name(const rs_ring *r);

/* Index (into rs_ring_node_at) of the node owning a key hash. Never fails: a built ring
 * always has at least one enabled node. */
uint32_t rs_ring_locate(const rs_ring *r, uint32_t hash);

/* rs_ring_locate(r, rs_ring_hash_key(r, key, len)). */
uint32_t rs_ring_lookup(const rs_ring *r, const char *key, size_t len);

/* Up to max distinct nodes for a key hash in the algorithm's natural order from its owner
 * (primary first): clockwise for continuum rings, slot order for modula and maglev, score
 * order for rendezvous. Nodes whose usable[i] is 0 are skipped (usable may be NULL: every
 * enabled node). With params.zone_aware_replicas the order over all enabled nodes is first
 * rearranged (health plays no part): walking the natural order, a node whose zone differs
 * from every zone taken so far comes first, then the others follow in natural order;
 * nodes without a zone share one zone, "". Unusable nodes are then skipped, so a dead
 * primary's keys go to its first replica either way. Writes node indexes to out and
 * returns how many it wrote. */
size_t rs_ring_candidates(const rs_ring *r, uint32_t hash, const uint8_t *usable, uint32_t *out,
                          size_t max);

const rs_ring_params *rs_ring_params_of(const rs_ring *r);
size_t rs_ring_node_count(const rs_ring *r);    /* all nodes, disabled included */
size_t rs_ring_enabled_count(const rs_ring *r); /* nodes holding points */
const rs_ring_node *rs_ring_node_at(const rs_ring *r, size_t i);
int rs_ring_find(const rs_ring *r, const char *id); /* index, or -ENOENT */
size_t rs_ring_point_count(const rs_ring *r);       /* points or slots */

/* Point i in ring order (continuum rings: its value and owner; modula and maglev: slot i,
 * value = i; rendezvous has none). Returns 0, or -ERANGE when i >= rs_ring_point_count. */
int rs_ring_point_at(const rs_ring *r, size_t i, uint32_t *value, uint32_t *owner);

/* Hex digest of the canonical parameters and node set: equal rings, equal fingerprints. */
const char *rs_ring_fingerprint(const rs_ring *r);

/* max over enabled nodes of share / (weight / total weight): 1.0 is perfect balance. */
double rs_ring_imbalance(const rs_ring *r);

/* Fraction of the key-hash space whose primary node (by id) differs between two rings.
 * Exact for two continuum rings with the same lookup rule (merging their arcs) and for two
 * slot tables of the same size; for two rendezvous rings whose common nodes kept their
 * weights, the expected value (weight of the nodes in only one ring / weight of all);
 * else measured on up to 2^20 pseudo-random hashes (fewer for large rendezvous rings). */
double rs_ring_moved_fraction(const rs_ring *from, const rs_ring *to);

#endif
