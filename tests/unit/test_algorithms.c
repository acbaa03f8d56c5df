/* The algorithms beyond twemproxy's: maglev, rendezvous, ketama_xxh3, hash_ring and
 * vnode_sha256 (parameters, known answers, collisions, balance, movement, weights,
 * determinism), zone-aware replicas for every algorithm, and fingerprints that must not
 * change. The Python rings are also checked key by key against an independent Python
 * oracle in tests/integration/test_python_rings.py. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "rs_ring.h"

#define MAXN 1100

static struct {
    rs_node nodes[MAXN];
    char ids[MAXN][40];
    char addrs[MAXN][32];
} fx;

static rs_node *
make_nodes(uint32_t n, const char *prefix) {
    assert_true(n <= MAXN);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(fx.ids[i], sizeof(fx.ids[i]), "%s%u", prefix, i);
        snprintf(fx.addrs[i], sizeof(fx.addrs[i]), "127.0.0.1:%u", 7000 + i);
        fx.nodes[i] =
            (rs_node){.id = fx.ids[i], .address = fx.addrs[i], .weight = 1, .enabled = true};
    }
    return fx.nodes;
}

static rs_ring *
build_p(const rs_ring_params *p, const rs_node *nodes, size_t n) {
    rs_ring *r = NULL;
    rs_error err = {{0}};
    if (rs_ring_build(p, nodes, n, &r, &err) != 0) {
        fail_msg("build %s failed: %s", rs_algorithm_name(p->algorithm), err.msg);
    }
    return r;
}

static rs_ring *
build(rs_algorithm alg, const rs_node *nodes, size_t n) {
    rs_ring_params p;
    rs_ring_params_init(&p);
    p.algorithm = alg;
    return build_p(&p, nodes, n);
}

static uint64_t
splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static const char *
id_at(const rs_ring *r, uint32_t i) {
    return rs_ring_node_at(r, i)->id;
}

/* Fraction of n pseudo-random hashes whose primary differs (by id) between two rings. */
static double
sampled_moved(const rs_ring *a, const rs_ring *b, uint32_t n, uint64_t seed) {
    uint32_t moved = 0;
    for (uint32_t s = 0; s < n; s++) {
        uint32_t h = (uint32_t)splitmix(&seed);
        moved += strcmp(id_at(a, rs_ring_locate(a, h)), id_at(b, rs_ring_locate(b, h))) != 0;
    }
    return (double)moved / n;
}

static const rs_algorithm all_algs[] = {
    RS_ALG_KETAMA,      RS_ALG_MODULA,    RS_ALG_MAGLEV,       RS_ALG_RENDEZVOUS,
    RS_ALG_KETAMA_XXH3, RS_ALG_HASH_RING, RS_ALG_VNODE_SHA256,
};
#define NALGS (sizeof(all_algs) / sizeof(all_algs[0]))

/* ---- names and parameters ---- */

static void
test_names_and_defaults(void **state) {
    (void)state;
    static const char *const names[] = {"ketama",      "modula",    "maglev",      "rendezvous",
                                        "ketama_xxh3", "hash_ring", "vnode_sha256"};
    for (int i = 0; i < RS_ALG_COUNT; i++) {
        rs_algorithm a;
        assert_int_equal(rs_algorithm_from_name(names[i], &a), 0);
        assert_int_equal(a, i);
        assert_string_equal(rs_algorithm_name(a), names[i]);
    }
    rs_algorithm a;
    assert_int_equal(rs_algorithm_from_name("Maglev", &a), -EINVAL);
    assert_int_equal(rs_algorithm_from_name("hrw", &a), -EINVAL);
    assert_null(rs_algorithm_own_hash(RS_ALG_KETAMA));
    assert_null(rs_algorithm_own_hash(RS_ALG_MAGLEV));
    assert_null(rs_algorithm_own_hash(RS_ALG_RENDEZVOUS));
    assert_string_equal(rs_algorithm_own_hash(RS_ALG_HASH_RING), "md5");
    assert_string_equal(rs_algorithm_own_hash(RS_ALG_VNODE_SHA256), "sha256_be32");
    assert_string_equal(rs_algorithm_own_hash(RS_ALG_KETAMA_XXH3), "xxh3");

    rs_ring_params p;
    rs_ring_params_init(&p);
    assert_int_equal(p.table_size, 65537);
    assert_int_equal(p.points_per_weight, 160);
    assert_int_equal(p.vnodes, 150);
    assert_int_equal(p.replica_factor, 2);
    assert_false(p.zone_aware_replicas);
}

typedef struct param_case {
    const char *name;
    rs_algorithm alg;
    rs_hash_kind hash;
    uint32_t table_size, points_per_weight, vnodes, replica_factor;
    const char *error; /* NULL: valid */
} param_case;

static void
test_params(void **state) {
    (void)state;
    const param_case cases[] = {
        {"defaults", RS_ALG_MAGLEV, RS_HASH_FNV1A_64, 65537, 160, 150, 2, NULL},
        {"0 means default", RS_ALG_MAGLEV, RS_HASH_FNV1A_64, 0, 0, 0, 0, NULL},
        {"small prime", RS_ALG_MAGLEV, RS_HASH_FNV1A_64, 2, 1, 1, 1, NULL},
        {"largest prime", RS_ALG_MAGLEV, RS_HASH_FNV1A_64, 3999971, 10000, 10000, 64, NULL},
        {"not prime", RS_ALG_MAGLEV, RS_HASH_FNV1A_64, 65536, 160, 150, 2,
         "table_size: must be a prime between 2 and 4000000 (e.g. 65537, 655373), got 65536"},
        {"one", RS_ALG_MAGLEV, RS_HASH_FNV1A_64, 1, 160, 150, 2, "table_size: must be a prime"},
        {"too big", RS_ALG_MAGLEV, RS_HASH_FNV1A_64, 4000037, 160, 150, 2, "table_size"},
        /* Checked whatever the algorithm: a bad value is a bad config. */
        {"not prime, ketama", RS_ALG_KETAMA, RS_HASH_FNV1A_64, 9, 160, 150, 2, "table_size"},
        {"points", RS_ALG_KETAMA_XXH3, RS_HASH_FNV1A_64, 0, 10001, 0, 0,
         "points_per_weight: must be between 1 and 10000, got 10001"},
        {"vnodes", RS_ALG_VNODE_SHA256, RS_HASH_FNV1A_64, 0, 0, 10001, 0,
         "vnodes: must be between 1 and 10000, got 10001"},
        {"replica_factor", RS_ALG_VNODE_SHA256, RS_HASH_FNV1A_64, 0, 0, 0, 65,
         "replica_factor: must be between 1 and 64, got 65"},
        /* Algorithms with their own key hash: the default (unset) or that hash. */
        {"hash_ring md5", RS_ALG_HASH_RING, RS_HASH_MD5, 0, 0, 0, 0, NULL},
        {"hash_ring crc32", RS_ALG_HASH_RING, RS_HASH_CRC32, 0, 0, 0, 0,
         "hash: hash_ring always hashes keys with md5; leave hash unset (or \"md5\"), got "
         "\"crc32\""},
        {"ketama_xxh3 xxh3", RS_ALG_KETAMA_XXH3, RS_HASH_XXH3, 0, 0, 0, 0, NULL},
        {"ketama_xxh3 md5", RS_ALG_KETAMA_XXH3, RS_HASH_MD5, 0, 0, 0, 0,
         "hash: ketama_xxh3 always hashes keys with xxh3"},
        {"vnode md5", RS_ALG_VNODE_SHA256, RS_HASH_MD5, 0, 0, 0, 0,
         "hash: vnode_sha256 always hashes keys with SHA-256; leave hash unset, got \"md5\""},
        {"maglev any hash", RS_ALG_MAGLEV, RS_HASH_CRC32A, 0, 0, 0, 0, NULL},
        {"rendezvous any hash", RS_ALG_RENDEZVOUS, RS_HASH_MURMUR, 0, 0, 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const param_case *c = &cases[i];
        rs_ring_params p;
        rs_ring_params_init(&p);
        p.algorithm = c->alg;
        p.hash = c->hash;
        p.table_size = c->table_size;
        p.points_per_weight = c->points_per_weight;
        p.vnodes = c->vnodes;
        p.replica_factor = c->replica_factor;
        rs_error err = {{0}};
        int rc = rs_ring_params_validate(&p, &err);
        if (c->error == NULL ? rc != 0 : rc != -EINVAL || strstr(err.msg, c->error) == NULL) {
            fail_msg("%s: rc %d '%s', expected %s", c->name, rc, err.msg,
                     c->error ? c->error : "success");
        }
    }
}

static void
test_build_limits(void **state) {
    (void)state;
    rs_ring_params p;
    rs_ring_params_init(&p);
    rs_ring *r = NULL;
    rs_error err;
    /* maglev needs a slot per node at least. */
    p.algorithm = RS_ALG_MAGLEV;
    p.table_size = 7;
    assert_int_equal(rs_ring_build(&p, make_nodes(8, "n"), 8, &r, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "table_size 7 is smaller than the 8 enabled nodes"));
    assert_null(r);
    r = build_p(&p, make_nodes(7, "n"), 7); /* a table of 7 for 7 nodes: one slot each */
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(rs_ring_node_at(r, i)->points, 1);
    }
    rs_ring_unref(r);
    /* Point budgets. */
    rs_node *nodes = make_nodes(500, "n");
    for (int i = 0; i < 500; i++) {
        nodes[i].weight = 100;
    }
    rs_ring_params_init(&p);
    p.algorithm = RS_ALG_KETAMA_XXH3; /* 160 x 50000 > 4M */
    assert_int_equal(rs_ring_build(&p, nodes, 500, &r, &err), -E2BIG);
    assert_non_null(strstr(err.msg, "lower points_per_weight"));
    p.algorithm = RS_ALG_VNODE_SHA256; /* 300 x 50000 */
    assert_int_equal(rs_ring_build(&p, nodes, 500, &r, &err), -E2BIG);
    assert_non_null(strstr(err.msg, "lower vnodes"));
    /* hash_ring gives a light node no digest at all: floor(40 * 2 * 1 / 101) = 0. */
    nodes = make_nodes(2, "n");
    nodes[1].weight = 100;
    r = build(RS_ALG_HASH_RING, nodes, 2);
    assert_int_equal(rs_ring_node_at(r, 0)->points, 0);
    assert_int_equal(rs_ring_node_at(r, 1)->points, 3 * 79);
    rs_ring_unref(r);
}

/* ---- fingerprints ---- */

static uint32_t *
param_field(rs_ring_params *p, int field) {
    switch (field) {
    case 0:
        return &p->table_size;
    case 1:
        return &p->points_per_weight;
    case 2:
        return &p->vnodes;
    default:
        return &p->replica_factor;
    }
}

static void
test_fingerprints(void **state) {
    (void)state;
    const rs_node nodes[3] = {
        {"cache-a", "127.0.0.1:6379", "a", 1, true},
        {"cache-b", "127.0.0.2:6379", "b", 2, true},
        {"cache-c", "127.0.0.3:6379", NULL, 1, false},
    };
    /* Ketama and modula fingerprints must not move: these are SHA-256 of the canonical
     * text as compute_fingerprint wrote it before the new algorithms, recomputed in
     * Python (the same formula reproduces the values recorded then). */
    static const struct {
        rs_algorithm alg;
        bool variant; /* replicas 3, md5, hash tag {} */
        const char *fp;
    } known[] = {
        {RS_ALG_KETAMA, false, "e98ddf7dd473f968"},
        {RS_ALG_KETAMA, true, "297be65ec62558b7"},
        {RS_ALG_MODULA, false, "942076609339844c"},
        {RS_ALG_MODULA, true, "f4ee81bde6efabf8"},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        rs_ring_params p;
        rs_ring_params_init(&p);
        p.algorithm = known[i].alg;
        /* Parameters of other algorithms do not enter ketama's or modula's text. */
        p.table_size = 1009;
        p.vnodes = 7;
        p.points_per_weight = 40;
        if (known[i].variant) {
            p.replicas = 3;
            p.hash = RS_HASH_MD5;
            memcpy(p.hash_tag, "{}", 3);
        }
        rs_ring *r = build_p(&p, nodes, 3);
        assert_string_equal(rs_ring_fingerprint(r), known[i].fp);
        rs_ring_unref(r);
    }

    /* Every placement parameter changes the fingerprint of the algorithm it belongs to;
     * 0-for-default and the spelled-out default are the same ring. */
    static const struct {
        rs_algorithm alg;
        int field; /* 0 table_size, 1 points_per_weight, 2 vnodes, 3 replica_factor */
        uint32_t dflt, other;
    } fields[] = {
        {RS_ALG_MAGLEV, 0, 65537, 1009},
        {RS_ALG_KETAMA_XXH3, 1, 160, 100},
        {RS_ALG_VNODE_SHA256, 2, 150, 100},
        {RS_ALG_VNODE_SHA256, 3, 2, 1},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        char fp[3][RS_FINGERPRINT_LEN + 1];
        const uint32_t values[3] = {0, fields[i].dflt, fields[i].other};
        for (int v = 0; v < 3; v++) {
            rs_ring_params p;
            rs_ring_params_init(&p);
            p.algorithm = fields[i].alg;
            *param_field(&p, fields[i].field) = values[v];
            rs_ring *r = build_p(&p, nodes, 3);
            memcpy(fp[v], rs_ring_fingerprint(r), sizeof(fp[v]));
            rs_ring_params used = *rs_ring_params_of(r); /* 0 is reported as the default */
            assert_int_equal(*param_field(&used, fields[i].field),
                             values[v] ? values[v] : fields[i].dflt);
            rs_ring_unref(r);
        }
        assert_string_equal(fp[0], fp[1]);
        assert_string_not_equal(fp[1], fp[2]);
    }

    /* The own key hash, unset or spelled out, is one ring; zone-aware replicas differ. */
    rs_ring_params p;
    rs_ring_params_init(&p);
    p.algorithm = RS_ALG_HASH_RING;
    rs_ring *unset = build_p(&p, nodes, 3);
    p.hash = RS_HASH_MD5;
    rs_ring *md5 = build_p(&p, nodes, 3);
    assert_string_equal(rs_ring_fingerprint(unset), rs_ring_fingerprint(md5));
    assert_string_equal(rs_ring_key_hash_name(unset), "md5");
    p.zone_aware_replicas = true;
    rs_ring *zones = build_p(&p, nodes, 3);
    assert_string_not_equal(rs_ring_fingerprint(unset), rs_ring_fingerprint(zones));
    assert_true(rs_ring_moved_fraction(unset, zones) == 0.0);
    rs_ring_unref(unset);
    rs_ring_unref(md5);
    rs_ring_unref(zones);

    /* Different algorithms, different fingerprints. */
    char seen[NALGS][RS_FINGERPRINT_LEN + 1];
    for (size_t a = 0; a < NALGS; a++) {
        rs_ring *r = build(all_algs[a], nodes, 3);
        memcpy(seen[a], rs_ring_fingerprint(r), sizeof(seen[a]));
        for (size_t b = 0; b < a; b++) {
            assert_string_not_equal(seen[a], seen[b]);
        }
        rs_ring_unref(r);
    }
}

/* ---- every algorithm: the shared contract ---- */

static void
test_contract(void **state) {
    (void)state;
    for (size_t a = 0; a < NALGS; a++) {
        rs_node *nodes = make_nodes(40, "node-");
        nodes[3].weight = 4;
        nodes[5].enabled = false;
        rs_ring *r = build(all_algs[a], nodes, 40);
        const char *name = rs_algorithm_name(all_algs[a]);
        double sum = 0;
        for (size_t i = 0; i < 40; i++) {
            sum += rs_ring_node_at(r, i)->share;
        }
        if (fabs(sum - 1.0) > 1e-9) {
            fail_msg("%s: shares sum to %.12f", name, sum);
        }
        assert_true(rs_ring_node_at(r, (size_t)rs_ring_find(r, "node-5"))->share == 0.0);
        uint64_t seed = 5;
        for (int k = 0; k < 3000; k++) {
            uint32_t h = (uint32_t)splitmix(&seed);
            uint32_t out[RS_REPLICAS_MAX];
            size_t n = rs_ring_candidates(r, h, NULL, out, 6);
            assert_int_equal(n, 6);
            assert_int_equal(out[0], rs_ring_locate(r, h));
            for (size_t i = 0; i < n; i++) {
                assert_true(rs_ring_node_at(r, out[i])->enabled);
                for (size_t j = i + 1; j < n; j++) {
                    assert_int_not_equal(out[i], out[j]);
                }
            }
            /* A dead primary's keys go to its first replica; replica order is kept. */
            uint8_t usable[40];
            memset(usable, 1, sizeof(usable));
            usable[out[0]] = 0;
            uint32_t alive[3];
            assert_int_equal(rs_ring_candidates(r, h, usable, alive, 3), 3);
            assert_int_equal(alive[0], out[1]);
            assert_int_equal(alive[1], out[2]);
            assert_int_equal(alive[2], out[3]);
            /* Asking for everything gives every enabled node once. */
            uint32_t every[40];
            assert_int_equal(rs_ring_candidates(r, h, NULL, every, 40), 39);
            assert_memory_equal(every, out, 6 * sizeof(uint32_t));
        }
        rs_ring_unref(r);
    }
}

/* ---- maglev ---- */

static void
test_maglev_balance(void **state) {
    (void)state;
    static const uint32_t sizes[] = {10, 100, 1000};
    for (size_t s = 0; s < 3; s++) {
        rs_ring *r = build(RS_ALG_MAGLEV, make_nodes(sizes[s], "cache-"), sizes[s]);
        assert_int_equal(rs_ring_point_count(r), 65537);
        /* Equal weights take turns: slot counts differ by at most one. */
        uint32_t lo = UINT32_MAX, hi = 0;
        for (size_t i = 0; i < sizes[s]; i++) {
            uint32_t pts = rs_ring_node_at(r, i)->points;
            lo = pts < lo ? pts : lo;
            hi = pts > hi ? pts : hi;
        }
        assert_true(hi - lo <= 1);
        if (sizes[s] == 100 && rs_ring_imbalance(r) > 1.02) {
            fail_msg("maglev imbalance at 100 nodes: %.4f > 1.02", rs_ring_imbalance(r));
        }
        assert_true(rs_ring_imbalance(r) < 1.01);
        /* A lookup reads slot hash % table_size. */
        uint64_t seed = 9;
        for (int k = 0; k < 10000; k++) {
            uint32_t h = (uint32_t)splitmix(&seed), v, o;
            assert_int_equal(rs_ring_point_at(r, h % 65537, &v, &o), 0);
            assert_int_equal(rs_ring_locate(r, h), o);
        }
        assert_int_equal(rs_ring_locate(r, UINT32_MAX), rs_ring_locate(r, UINT32_MAX % 65537));
        rs_ring_unref(r);
    }
}

static void
test_maglev_weights(void **state) {
    (void)state;
    rs_node *nodes = make_nodes(40, "w-");
    uint32_t total = 0;
    for (uint32_t i = 0; i < 40; i++) {
        nodes[i].weight = 1 + i % 5;
        total += nodes[i].weight;
    }
    rs_ring_params p;
    rs_ring_params_init(&p);
    p.algorithm = RS_ALG_MAGLEV;
    p.table_size = 655373;
    rs_ring *r = build_p(&p, nodes, 40);
    for (size_t i = 0; i < 40; i++) {
        const rs_ring_node *n = rs_ring_node_at(r, i);
        double want = 655373.0 * n->weight / total;
        if (fabs(n->points - want) > 0.01 * want + 1) {
            fail_msg("maglev weight %u: %u slots, want %.1f", n->weight, n->points, want);
        }
    }
    assert_true(rs_ring_imbalance(r) < 1.01);
    rs_ring_unref(r);
}

/* Keys moved against the ideal, exact (slot by slot) and sampled. Maglev trades some extra
 * movement for balance: measured about 1.6x the ideal at 100 nodes. */
static void
test_maglev_movement(void **state) {
    (void)state;
    rs_node *nodes = make_nodes(101, "cache-");
    rs_ring *a = build(RS_ALG_MAGLEV, nodes, 100);
    rs_ring *b = build(RS_ALG_MAGLEV, nodes, 101);
    double add = rs_ring_moved_fraction(a, b), remove = rs_ring_moved_fraction(b, a);
    double ideal = 1.0 / 101;
    assert_true(add >= ideal * 0.99 && add < 2.0 * ideal);
    assert_true(fabs(add - remove) < 1e-12);
    assert_true(fabs(add - sampled_moved(a, b, 1u << 20, 77)) < 0.002);
    /* At least the new node's share moved; the rest moved between old nodes. */
    const rs_ring_node *added = rs_ring_node_at(b, (size_t)rs_ring_find(b, "cache-100"));
    assert_true(add >= added->share - 1e-12);
    rs_ring_unref(a);
    rs_ring_unref(b);

    /* A smaller table disrupts more (and balances worse). */
    rs_ring_params p;
    rs_ring_params_init(&p);
    p.algorithm = RS_ALG_MAGLEV;
    p.table_size = 1009;
    a = build_p(&p, nodes, 100);
    b = build_p(&p, nodes, 101);
    assert_true(rs_ring_moved_fraction(a, b) > add);
    assert_true(rs_ring_imbalance(a) > 1.02);
    rs_ring_unref(a);
    rs_ring_unref(b);
}

/* ---- rendezvous ---- */

static void
test_rendezvous_movement(void **state) {
    (void)state;
    rs_node *nodes = make_nodes(101, "cache-");
    rs_ring *a = build(RS_ALG_RENDEZVOUS, nodes, 100);
    rs_ring *b = build(RS_ALG_RENDEZVOUS, nodes, 101);
    assert_int_equal(rs_ring_point_count(a), 0);
    /* Adding a node moves keys only onto it; removing moves only its keys. */
    uint64_t seed = 3;
    uint32_t moved = 0;
    const uint32_t n = 200000;
    for (uint32_t s = 0; s < n; s++) {
        uint32_t h = (uint32_t)splitmix(&seed);
        const char *before = id_at(a, rs_ring_locate(a, h)),
                   *after = id_at(b, rs_ring_locate(b, h));
        if (strcmp(before, after) != 0) {
            assert_string_equal(after, "cache-100");
            moved++;
        }
    }
    double expect = rs_ring_moved_fraction(a, b);
    assert_true(fabs(expect - 1.0 / 101) < 1e-12); /* the expected value, exactly */
    assert_true(fabs((double)moved / n - expect) < 0.0015);
    assert_true(fabs(rs_ring_moved_fraction(b, a) - expect) < 1e-12);
    rs_ring_unref(a);
    rs_ring_unref(b);

    /* A weight change has no closed form: sampled, and close to the truth. */
    a = build(RS_ALG_RENDEZVOUS, nodes, 20);
    nodes[0].weight = 3;
    b = build(RS_ALG_RENDEZVOUS, nodes, 20);
    double m = rs_ring_moved_fraction(a, b);
    assert_true(fabs(m - sampled_moved(a, b, 1u << 18, 12)) < 0.01);
    assert_true(fabs(m - (3.0 / 22 - 1.0 / 20)) < 0.01); /* only onto the heavier node */
    rs_ring_unref(a);
    rs_ring_unref(b);
}

static void
test_rendezvous_weights(void **state) {
    (void)state;
    rs_node *nodes = make_nodes(8, "rw-");
    uint32_t total = 0;
    for (uint32_t i = 0; i < 8; i++) {
        nodes[i].weight = 1 + i; /* 1..8 */
        total += nodes[i].weight;
    }
    rs_ring *r = build(RS_ALG_RENDEZVOUS, nodes, 8);
    uint32_t count[8] = {0};
    uint64_t seed = 21;
    const uint32_t n = 1u << 20;
    for (uint32_t s = 0; s < n; s++) {
        count[rs_ring_locate(r, (uint32_t)splitmix(&seed))]++;
    }
    for (size_t i = 0; i < 8; i++) {
        const rs_ring_node *node = rs_ring_node_at(r, i);
        double want = (double)node->weight / total, got = (double)count[i] / n;
        assert_true(fabs(node->share - want) < 1e-12);
        if (fabs(got - want) > 0.003) {
            fail_msg("rendezvous weight %u: share %.4f, want %.4f", node->weight, got, want);
        }
    }
    rs_ring_unref(r);

    /* Equal weights, any value: the same ring as weight 1 (the integer comparison). */
    nodes = make_nodes(30, "eq-");
    rs_ring *ones = build(RS_ALG_RENDEZVOUS, nodes, 30);
    for (int i = 0; i < 30; i++) {
        nodes[i].weight = 7;
    }
    rs_ring *sevens = build(RS_ALG_RENDEZVOUS, nodes, 30);
    assert_true(sampled_moved(ones, sevens, 100000, 4) == 0.0);
    rs_ring_unref(ones);
    rs_ring_unref(sevens);
}

static void
test_rendezvous_replicas(void **state) {
    (void)state;
    /* Up to 16 answers come from a top-k pass; more rank every node: the same order. */
    rs_node *nodes = make_nodes(300, "rr-");
    nodes[7].weight = 5;
    rs_ring *r = build(RS_ALG_RENDEZVOUS, nodes, 300);
    uint64_t seed = 8;
    for (int k = 0; k < 500; k++) {
        uint32_t h = (uint32_t)splitmix(&seed);
        uint32_t few[16], many[40];
        assert_int_equal(rs_ring_candidates(r, h, NULL, few, 16), 16);
        assert_int_equal(rs_ring_candidates(r, h, NULL, many, 40), 40);
        assert_memory_equal(few, many, sizeof(few));
    }
    rs_ring_unref(r);
}

/* ---- ketama_xxh3 ---- */

static void
test_ketama_xxh3(void **state) {
    (void)state;
    rs_node *nodes = make_nodes(4, "x-");
    nodes[2].weight = 3;
    rs_ring_params p;
    rs_ring_params_init(&p);
    p.algorithm = RS_ALG_KETAMA_XXH3;
    p.points_per_weight = 101; /* odd: the last hash gives only its low half */
    rs_ring *r = build_p(&p, nodes, 4);
    assert_int_equal(rs_ring_point_count(r), 101 * 6);
    int x2 = rs_ring_find(r, "x-2");
    assert_int_equal(rs_ring_node_at(r, (size_t)x2)->points, 303);
    /* Known points: halves of XXH3_64bits_withSeed(id, k). */
    uint64_t h0 = XXH3_64bits_withSeed("x-2", 3, 0), h151 = XXH3_64bits_withSeed("x-2", 3, 151);
    const uint32_t want[3] = {(uint32_t)h0, (uint32_t)(h0 >> 32), (uint32_t)h151};
    int found[3] = {0}, unused_half = 0;
    for (size_t i = 0; i < rs_ring_point_count(r); i++) {
        uint32_t v, o;
        rs_ring_point_at(r, i, &v, &o);
        for (int w = 0; w < 3; w++) {
            found[w] += v == want[w] && o == (uint32_t)x2;
        }
        unused_half += v == (uint32_t)(h151 >> 32) && o == (uint32_t)x2;
    }
    assert_int_equal(found[0], 1);
    assert_int_equal(found[1], 1);
    assert_int_equal(found[2], 1);
    assert_int_equal(unused_half, 0); /* point 303 would be the high half: 303 points only */
    /* Keys hash with XXH3 whatever p.hash says (the default, here). */
    assert_int_equal(rs_ring_hash_key(r, "user:42", 7), (uint32_t)XXH3_64bits("user:42", 7));
    assert_string_equal(rs_ring_key_hash_name(r), "xxh3");
    rs_ring_unref(r);

    /* Consistent hashing: adding moves keys only onto the new node, about its share. */
    double total = 0;
    for (int seed = 0; seed < 6; seed++) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "s%d-node-", seed);
        nodes = make_nodes(101, prefix);
        rs_ring *a = build(RS_ALG_KETAMA_XXH3, nodes, 100);
        rs_ring *b = build(RS_ALG_KETAMA_XXH3, nodes, 101);
        double moved = rs_ring_moved_fraction(a, b);
        const rs_ring_node *added = rs_ring_node_at(b, (size_t)rs_ring_find(b, fx.ids[100]));
        assert_true(fabs(moved - added->share) < 1e-9);
        assert_int_equal(added->points, 160); /* no float32 drop at 100 nodes */
        total += moved;
        rs_ring_unref(a);
        rs_ring_unref(b);
    }
    if (total / 6 > 1.15 / 101) {
        fail_msg("ketama_xxh3: adding 1 node to 100 moved %.4f on average", total / 6);
    }
}

/* ---- hash_ring ---- */

static void
test_hash_ring_known(void **state) {
    (void)state;
    const rs_node one = {"redis-1:6379", "127.0.0.1:6379", NULL, 1, true};
    rs_ring *r = build(RS_ALG_HASH_RING, &one, 1);
    assert_int_equal(rs_ring_point_count(r), 120);
    /* MD5("redis-1:6379-0"): words 0-2 are points, word 3 is not. */
    const uint32_t words[4] = {0x6b91847e, 0xd3e5b5d2, 0xe8dc19fc, 0x34f3e003};
    int found[4] = {0};
    for (size_t i = 0; i < 120; i++) {
        uint32_t v, o;
        rs_ring_point_at(r, i, &v, &o);
        for (int w = 0; w < 4; w++) {
            found[w] += v == words[w];
        }
    }
    assert_int_equal(found[0] + found[1] + found[2], 3);
    assert_int_equal(found[3], 0);
    /* Keys: MD5 bytes 0-3 little-endian; "" hashes like any string. */
    assert_int_equal(rs_ring_hash_key(r, "user:42", 7), 0x18dfda56);
    assert_int_equal(rs_ring_hash_key(r, "", 0), 0xd98c1dd4);
    assert_string_equal(rs_ring_key_hash_name(r), "md5");
    rs_ring_unref(r);

    /* Points per node: floor(40 * N * w / T) digests x 3, weights included. */
    rs_node *nodes = make_nodes(5, "hr-");
    const uint32_t w[5] = {1, 3, 5, 6, 10};
    for (int i = 0; i < 5; i++) {
        nodes[i].weight = w[i];
    }
    r = build(RS_ALG_HASH_RING, nodes, 5);
    for (int i = 0; i < 5; i++) {
        const rs_ring_node *n = rs_ring_node_at(r, (size_t)rs_ring_find(r, fx.ids[i]));
        assert_int_equal(n->points, 3 * (40 * 5 * w[i] / 25));
    }
    rs_ring_unref(r);
}

/* First point strictly greater than the hash (bisect_right), for both Python rings:
 * a hash equal to a point goes to the next point; the largest point and UINT32_MAX
 * wrap to point 0. ketama, for contrast, takes the point itself. */
static void
test_strict_lookup(void **state) {
    (void)state;
    const rs_algorithm algs[] = {RS_ALG_HASH_RING, RS_ALG_VNODE_SHA256, RS_ALG_KETAMA};
    for (int a = 0; a < 3; a++) {
        rs_ring *r = build(algs[a], make_nodes(6, "sl-"), 6);
        bool strict = algs[a] != RS_ALG_KETAMA;
        size_t n = rs_ring_point_count(r);
        uint32_t first, first_o, last, last_o;
        rs_ring_point_at(r, 0, &first, &first_o);
        rs_ring_point_at(r, n - 1, &last, &last_o);
        for (size_t i = 0; i < n; i++) {
            uint32_t v, o, nv, no, pv, po;
            rs_ring_point_at(r, i, &v, &o);
            if (i > 0 && (rs_ring_point_at(r, i - 1, &pv, &po), pv == v)) {
                continue; /* a repeated value: its first copy decides */
            }
            size_t next = i;
            do {
                next = next + 1 == n ? 0 : next + 1;
                rs_ring_point_at(r, next, &nv, &no);
            } while (nv == v && next != i);
            uint32_t want = strict ? (next <= i ? first_o : no) : o;
            assert_int_equal(rs_ring_locate(r, v), want);
            if (v > 0) {
                assert_int_equal(rs_ring_locate(r, v - 1), o); /* just below: this point */
            }
        }
        assert_int_equal(rs_ring_locate(r, UINT32_MAX),
                         last == UINT32_MAX && !strict ? last_o : first_o);
        assert_int_equal(rs_ring_locate(r, last), strict ? first_o : last_o);
        if (!(strict && first == 0)) {
            assert_int_equal(rs_ring_locate(r, 0), first_o);
        }
        rs_ring_unref(r);
    }
}

/* Colliding points, found by a birthday search over node names (see
 * tests/integration/test_python_rings.py). Both copies stay on the ring and belong to the
 * last writer in ringside's node order: shorter id first, then bytewise; this is the
 * Python list order that reproduces ringside exactly. */
static void
test_collisions(void **state) {
    (void)state;
    static const struct {
        rs_algorithm alg;
        const char *first, *last;
        uint32_t value;
    } cases[] = {
        {RS_ALG_HASH_RING, "coll-320:6379", "coll-433:6379", 0x12e7b48c},
        {RS_ALG_VNODE_SHA256, "vc-72:6379", "vc-306:6379", 0x3ba283be},
    };
    for (size_t c = 0; c < 2; c++) {
        /* Given in either order: the same owner. */
        for (int order = 0; order < 2; order++) {
            rs_node pair[2] = {
                {cases[c].first, "127.0.0.1:1", NULL, 1, true},
                {cases[c].last, "127.0.0.2:1", NULL, 1, true},
            };
            if (order == 1) {
                rs_node t = pair[0];
                pair[0] = pair[1];
                pair[1] = t;
            }
            rs_ring *r = build(cases[c].alg, pair, 2);
            int copies = 0;
            for (size_t i = 0; i < rs_ring_point_count(r); i++) {
                uint32_t v, o;
                rs_ring_point_at(r, i, &v, &o);
                if (v == cases[c].value) {
                    copies++;
                    assert_string_equal(id_at(r, o), cases[c].last);
                }
            }
            assert_int_equal(copies, 2);
            /* The arc just below the point belongs to the last writer. */
            assert_string_equal(id_at(r, rs_ring_locate(r, cases[c].value - 1)), cases[c].last);
            rs_ring_unref(r);
        }
        /* Without the winner (where the Python vnode ring would crash on an ownerless
         * copy) the other writer owns the point: a ring is a function of its node set. */
        rs_node alone = {cases[c].first, "127.0.0.1:1", NULL, 1, true};
        rs_ring *r = build(cases[c].alg, &alone, 1);
        assert_string_equal(id_at(r, rs_ring_locate(r, cases[c].value - 1)), cases[c].first);
        rs_ring_unref(r);
    }
}

/* ---- vnode_sha256 ---- */

static void
test_vnode_sha256_known(void **state) {
    (void)state;
    const rs_node one = {"redis-1:6379", "127.0.0.1:6379", NULL, 1, true};
    rs_ring *r = build(RS_ALG_VNODE_SHA256, &one, 1);
    assert_int_equal(rs_ring_point_count(r), 300);
    int found = 0;
    for (size_t i = 0; i < 300; i++) {
        uint32_t v, o;
        rs_ring_point_at(r, i, &v, &o);
        found += v == 0x33abd411u; /* H("redis-1:6379#vn0-r0") */
        found += v == 0x65dac7c4u; /* H("redis-1:6379#vn149-r1") */
    }
    assert_int_equal(found, 2);
    assert_int_equal(rs_ring_hash_key(r, "user:42", 7), 0xea3fd43bu);
    assert_int_equal(rs_ring_hash_key(r, "", 0), 0xe3b0c442u);
    assert_string_equal(rs_ring_key_hash_name(r), "sha256_be32");
    /* One node: the replica is the primary. */
    uint32_t out[2];
    assert_int_equal(rs_ring_candidates(r, 12345, NULL, out, 2), 1);
    rs_ring_unref(r);

    /* vnodes x replica_factor x weight points. */
    rs_node *nodes = make_nodes(3, "v-");
    nodes[1].weight = 2;
    rs_ring_params p;
    rs_ring_params_init(&p);
    p.algorithm = RS_ALG_VNODE_SHA256;
    p.vnodes = 10;
    p.replica_factor = 3;
    r = build_p(&p, nodes, 3);
    assert_int_equal(rs_ring_point_count(r), 10 * 3 * 4);
    assert_int_equal(rs_ring_node_at(r, (size_t)rs_ring_find(r, "v-1"))->points, 60);
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)"v-1#vn19-r2", 11, md);
    uint32_t want = (uint32_t)md[0] << 24 | (uint32_t)md[1] << 16 | (uint32_t)md[2] << 8 | md[3];
    bool have = false;
    for (size_t i = 0; i < rs_ring_point_count(r); i++) {
        uint32_t v, o;
        rs_ring_point_at(r, i, &v, &o);
        have |= v == want && strcmp(id_at(r, o), "v-1") == 0;
    }
    assert_true(have);
    rs_ring_unref(r);
}

/* ---- determinism ---- */

static void
test_order_and_weights_determinism(void **state) {
    (void)state;
    for (size_t a = 0; a < NALGS; a++) {
        rs_node *nodes = make_nodes(60, "d-");
        for (int i = 0; i < 60; i++) {
            nodes[i].weight = 1 + (uint32_t)(i * 7) % 4;
            nodes[i].zone = i % 3 == 0 ? "a" : i % 3 == 1 ? "b" : "c";
        }
        rs_ring_params p;
        rs_ring_params_init(&p);
        p.algorithm = all_algs[a];
        p.zone_aware_replicas = true;
        rs_ring *r1 = build_p(&p, nodes, 60);
        uint64_t seed = 1234;
        for (int i = 59; i > 0; i--) {
            int j = (int)(splitmix(&seed) % (uint64_t)(i + 1));
            rs_node t = nodes[i];
            nodes[i] = nodes[j];
            nodes[j] = t;
        }
        rs_ring *r2 = build_p(&p, nodes, 60);
        assert_string_equal(rs_ring_fingerprint(r1), rs_ring_fingerprint(r2));
        assert_int_equal(rs_ring_point_count(r1), rs_ring_point_count(r2));
        for (size_t i = 0; i < rs_ring_point_count(r1); i++) {
            uint32_t v1, o1, v2, o2;
            rs_ring_point_at(r1, i, &v1, &o1);
            rs_ring_point_at(r2, i, &v2, &o2);
            assert_int_equal(v1, v2);
            assert_string_equal(id_at(r1, o1), id_at(r2, o2));
        }
        for (int k = 0; k < 2000; k++) {
            uint32_t h = (uint32_t)splitmix(&seed), c1[5], c2[5];
            assert_int_equal(rs_ring_candidates(r1, h, NULL, c1, 5), 5);
            assert_int_equal(rs_ring_candidates(r2, h, NULL, c2, 5), 5);
            for (int i = 0; i < 5; i++) {
                assert_string_equal(id_at(r1, c1[i]), id_at(r2, c2[i]));
            }
        }
        assert_true(rs_ring_moved_fraction(r1, r2) == 0.0);
        rs_ring_unref(r1);
        rs_ring_unref(r2);
    }
}

/* ---- zone-aware replicas ---- */

static bool
zone_in(const rs_ring *r, const uint32_t *out, size_t n, const char *zone) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rs_ring_node_at(r, out[i])->zone, zone) == 0) {
            return true;
        }
    }
    return false;
}

static void
test_zone_aware(void **state) {
    (void)state;
    for (size_t a = 0; a < NALGS; a++) {
        /* 12 nodes in zones a, b, c (4 each). */
        rs_node *nodes = make_nodes(12, "z-");
        static const char *const zones[3] = {"a", "b", "c"};
        for (int i = 0; i < 12; i++) {
            nodes[i].zone = zones[i % 3];
        }
        rs_ring_params p;
        rs_ring_params_init(&p);
        p.algorithm = all_algs[a];
        rs_ring *plain = build_p(&p, nodes, 12);
        p.zone_aware_replicas = true;
        rs_ring *zr = build_p(&p, nodes, 12);
        const char *name = rs_algorithm_name(all_algs[a]);
        uint64_t seed = 17;
        for (int k = 0; k < 3000; k++) {
            uint32_t h = (uint32_t)splitmix(&seed);
            uint32_t nat[12], out[12];
            assert_int_equal(rs_ring_candidates(plain, h, NULL, nat, 12), 12);
            assert_int_equal(rs_ring_candidates(zr, h, NULL, out, 12), 12);
            /* The primary does not change; the first three are in three zones. */
            assert_int_equal(out[0], nat[0]);
            for (int i = 0; i < 3; i++) {
                for (int j = i + 1; j < 3; j++) {
                    if (strcmp(rs_ring_node_at(zr, out[i])->zone,
                               rs_ring_node_at(zr, out[j])->zone) == 0) {
                        fail_msg("%s: replicas %d and %d share zone %s", name, i, j,
                                 rs_ring_node_at(zr, out[i])->zone);
                    }
                }
            }
            /* The rule, literally: first of each new zone in natural order, then the rest
             * in natural order. */
            uint32_t want[12];
            size_t nw = 0;
            bool used[3] = {false, false, false}, taken[12] = {false};
            for (int i = 0; i < 12; i++) {
                int z = rs_ring_node_at(zr, nat[i])->zone[0] - 'a';
                if (!used[z]) {
                    used[z] = true;
                    taken[i] = true;
                    want[nw++] = nat[i];
                }
            }
            for (int i = 0; i < 12; i++) {
                if (!taken[i]) {
                    want[nw++] = nat[i];
                }
            }
            assert_memory_equal(out, want, sizeof(want));
            /* Health does not reorder: a dead primary's keys go to its first replica,
             * now in another zone. */
            uint8_t usable[12];
            memset(usable, 1, sizeof(usable));
            usable[out[0]] = 0;
            uint32_t alive[3];
            assert_int_equal(rs_ring_candidates(zr, h, usable, alive, 3), 3);
            assert_int_equal(alive[0], out[1]);
            assert_int_equal(alive[1], out[2]);
            assert_int_equal(alive[2], out[3]);
            /* A whole zone down: the other two zones come first. */
            int down = k % 3;
            for (int i = 0; i < 12; i++) {
                usable[i] = rs_ring_node_at(zr, (size_t)i)->zone[0] - 'a' != down;
            }
            assert_int_equal(rs_ring_candidates(zr, h, usable, alive, 2), 2);
            assert_string_not_equal(rs_ring_node_at(zr, alive[0])->zone,
                                    rs_ring_node_at(zr, alive[1])->zone);
        }
        rs_ring_unref(plain);
        rs_ring_unref(zr);

        /* Fewer zones than replicas: distinct zones first, then fill in natural order.
         * Nodes without a zone share one zone. */
        nodes = make_nodes(6, "f-");
        nodes[0].zone = "x";
        nodes[1].zone = "x";
        nodes[2].zone = "y";
        nodes[3].zone = NULL;
        nodes[4].zone = "";
        nodes[5].zone = "x";
        rs_ring_params_init(&p);
        p.algorithm = all_algs[a];
        p.zone_aware_replicas = true;
        zr = build_p(&p, nodes, 6);
        for (int k = 0; k < 2000; k++) {
            uint32_t h = (uint32_t)splitmix(&seed), out[4];
            assert_int_equal(rs_ring_candidates(zr, h, NULL, out, 4), 4);
            assert_true(zone_in(zr, out, 3, "x") && zone_in(zr, out, 3, "y") &&
                        zone_in(zr, out, 3, ""));
        }
        rs_ring_unref(zr);
    }
}

/* The rule on a large ring, asking for every node (well past any small buffer), with some
 * nodes unusable: the zone order over all nodes, filtered. */
static void
test_zone_aware_many(void **state) {
    (void)state;
    static char zone_names[7][8];
    for (int z = 0; z < 7; z++) {
        snprintf(zone_names[z], sizeof(zone_names[z]), "zone%d", z);
    }
    for (size_t a = 0; a < NALGS; a++) {
        rs_node *nodes = make_nodes(150, "big-");
        for (int i = 0; i < 150; i++) {
            nodes[i].zone = zone_names[(i * i) % 7]; /* uneven zones */
        }
        rs_ring_params p;
        rs_ring_params_init(&p);
        p.algorithm = all_algs[a];
        rs_ring *plain = build_p(&p, nodes, 150);
        p.zone_aware_replicas = true;
        rs_ring *zr = build_p(&p, nodes, 150);
        uint64_t seed = 23;
        for (int k = 0; k < 200; k++) {
            uint32_t h = (uint32_t)splitmix(&seed);
            uint32_t nat[150], want[150], out[150];
            uint8_t usable[150];
            assert_int_equal(rs_ring_candidates(plain, h, NULL, nat, 150), 150);
            bool used[7] = {false}, placed[150] = {false};
            size_t nw = 0;
            for (int i = 0; i < 150; i++) {
                int z = rs_ring_node_at(zr, nat[i])->zone[4] - '0';
                if (!used[z]) {
                    used[z] = placed[i] = true;
                    want[nw++] = nat[i];
                }
            }
            for (int i = 0; i < 150; i++) {
                if (!placed[i]) {
                    want[nw++] = nat[i];
                }
            }
            assert_int_equal(rs_ring_candidates(zr, h, NULL, out, 150), 150);
            assert_memory_equal(out, want, sizeof(want));
            for (int i = 0; i < 150; i++) {
                usable[i] = (uint8_t)(splitmix(&seed) % 3 != 0);
            }
            size_t n = rs_ring_candidates(zr, h, usable, out, 150), j = 0;
            for (size_t i = 0; i < 150; i++) {
                if (usable[want[i]]) {
                    assert_true(j < n);
                    assert_int_equal(out[j++], want[i]);
                }
            }
            assert_int_equal(j, n);
        }
        rs_ring_unref(plain);
        rs_ring_unref(zr);
    }
}

/* ---- movement and balance side by side (the figures ringctl simulate prints) ---- */

static void
test_moved_fraction_methods(void **state) {
    (void)state;
    /* Exact where possible, and each agrees with sampling. */
    for (size_t a = 0; a < NALGS; a++) {
        rs_node *nodes = make_nodes(31, "m-");
        rs_ring *x = build(all_algs[a], nodes, 30);
        rs_ring *y = build(all_algs[a], nodes + 1, 30); /* one out, one in */
        double m = rs_ring_moved_fraction(x, y), s = sampled_moved(x, y, 1u << 20, 99);
        if (fabs(m - s) > 0.004) {
            fail_msg("%s: moved %.5f, sampled %.5f", rs_algorithm_name(all_algs[a]), m, s);
        }
        rs_ring_unref(x);
        rs_ring_unref(y);
    }
    /* Across algorithms: sampled, and about 1 - 1/n for unrelated placements. (ketama
     * and hash_ring are not unrelated: hash_ring's points are a subset of ketama's, from
     * the same MD5("<id>-<j>") digests.) */
    rs_node *nodes = make_nodes(10, "m-");
    rs_ring *k = build(RS_ALG_KETAMA, nodes, 10), *h = build(RS_ALG_MAGLEV, nodes, 10);
    double m = rs_ring_moved_fraction(k, h);
    assert_true(m > 0.8 && m < 0.98);
    rs_ring_unref(k);
    rs_ring_unref(h);
}

int
main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_defaults),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_build_limits),
        cmocka_unit_test(test_fingerprints),
        cmocka_unit_test(test_contract),
        cmocka_unit_test(test_maglev_balance),
        cmocka_unit_test(test_maglev_weights),
        cmocka_unit_test(test_maglev_movement),
        cmocka_unit_test(test_rendezvous_movement),
        cmocka_unit_test(test_rendezvous_weights),
        cmocka_unit_test(test_rendezvous_replicas),
        cmocka_unit_test(test_ketama_xxh3),
        cmocka_unit_test(test_hash_ring_known),
        cmocka_unit_test(test_strict_lookup),
        cmocka_unit_test(test_collisions),
        cmocka_unit_test(test_vnode_sha256_known),
        cmocka_unit_test(test_order_and_weights_determinism),
        cmocka_unit_test(test_zone_aware),
        cmocka_unit_test(test_zone_aware_many),
        cmocka_unit_test(test_moved_fraction_methods),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
