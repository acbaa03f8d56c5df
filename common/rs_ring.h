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

typedef enum rs_algorithm {
    RS_ALG_KETAMA = 0, /* twemproxy 0.5.0 ketama, bit for bit */
    RS_ALG_MODULA,     /* twemproxy modula: slots[hash % total weight] */
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
    rs_hash_kind hash;
    uint32_t replicas; /* 1..RS_REPLICAS_MAX: distinct nodes a lookup may return */
    char hash_tag[3];  /* "" for none, else exactly two bytes, e.g. "{}" */
} rs_ring_params;

/* A node of a built ring. Valid as long as the caller holds the ring. */
typedef struct rs_ring_node {
    const char *id;
    const char *address;
    const char *zone; /* "" for none */
    uint32_t weight;
    bool enabled;
    uint32_t points; /* points (ketama) or slots (modula) this node holds */
    double share;    /* exact fraction of the 2^32 key-hash space it owns */
} rs_ring_node;

typedef struct rs_ring rs_ring;

/* Defaults: ketama, fnv1a_64, 2 replicas, no hash tag. */
void rs_ring_params_init(rs_ring_params *p);

/* Check parameters on their own. Returns 0 or -EINVAL with err filled. */
int rs_ring_params_validate(const rs_ring_params *p, rs_error *err);

int rs_algorithm_from_name(const char *name, rs_algorithm *out); /* 0 or -EINVAL */
const char *rs_algorithm_name(rs_algorithm alg);

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

/* The hash of a key as this ring places it: hash tag applied, empty key hashes to 0. */
uint32_t rs_ring_hash_key(const rs_ring *r, const char *key, size_t len);

/* Index (into rs_ring_node_at) of the node owning a key hash. Never fails: a built ring
 * always has at least one enabled node. */
uint32_t rs_ring_locate(const rs_ring *r, uint32_t hash);

/* rs_ring_locate(r, rs_ring_hash_key(r, key, len)). */
uint32_t rs_ring_lookup(const rs_ring *r, const char *key, size_t len);

/* Up to max distinct nodes for a key hash, in ring order from its owner (primary first),
 * skipping nodes whose usable[i] is 0 (usable may be NULL: every enabled node).
 * Writes node indexes to out and returns how many it wrote. */
size_t rs_ring_candidates(const rs_ring *r, uint32_t hash, const uint8_t *usable, uint32_t *out,
                          size_t max);

const rs_ring_params *rs_ring_params_of(const rs_ring *r);
size_t rs_ring_node_count(const rs_ring *r);    /* all nodes, disabled included */
size_t rs_ring_enabled_count(const rs_ring *r); /* nodes holding points */
const rs_ring_node *rs_ring_node_at(const rs_ring *r, size_t i);
int rs_ring_find(const rs_ring *r, const char *id); /* index, or -ENOENT */
size_t rs_ring_point_count(const rs_ring *r);       /* points or slots */

/* Point i in ring order (ketama: its value and owner; modula: slot i, value = i).
 * Returns 0, or -ERANGE when i >= rs_ring_point_count. */
int rs_ring_point_at(const rs_ring *r, size_t i, uint32_t *value, uint32_t *owner);

/* Hex digest of the canonical parameters and node set: equal rings, equal fingerprints. */
const char *rs_ring_fingerprint(const rs_ring *r);

/* max over enabled nodes of share / (weight / total weight): 1.0 is perfect balance. */
double rs_ring_imbalance(const rs_ring *r);

/* Fraction of the key-hash space whose primary node (by id) differs between two rings:
 * exact for ketama against ketama, else measured on 2^20 pseudo-random hashes. */
double rs_ring_moved_fraction(const rs_ring *from, const rs_ring *to);

#endif
