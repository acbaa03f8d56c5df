/* Ring core: construction limits and errors, twemproxy's continuum shape, lookups,
 * replicas and health masks, fingerprints, shares, and consistent-hashing properties. */
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

#include "rs_ring.h"

#define MAXN 1100

typedef struct fixture {
    rs_node nodes[MAXN];
    char ids[MAXN][32];
    char addrs[MAXN][32];
} fixture;

static fixture fx;

static rs_node *
make_nodes(uint32_t n) {
    assert_true(n <= MAXN);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(fx.ids[i], sizeof(fx.ids[i]), "cache-%u", i);
        snprintf(fx.addrs[i], sizeof(fx.addrs[i]), "127.0.0.1:%u", 7000 + i);
        fx.nodes[i] =
            (rs_node){.id = fx.ids[i], .address = fx.addrs[i], .weight = 1, .enabled = true};
    }
    return fx.nodes;
}

static rs_ring *
build(rs_algorithm alg, const rs_node *nodes, size_t n) {
    rs_ring_params p;
    rs_ring_params_init(&p);
    p.algorithm = alg;
    rs_ring *r = NULL;
    rs_error err = {{0}};
    int rc = rs_ring_build(&p, nodes, n, &r, &err);
    if (rc != 0) {
        fail_msg("build failed: %s", err.msg);
    }
    return r;
}

static uint64_t
splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void
random_key(uint64_t *seed, char key[16]) {
    for (int j = 0; j < 16; j++) {
        key[j] = (char)(0x21 + splitmix(seed) % 94);
    }
}

/* ---- errors ---- */

typedef struct bad_case {
    const char *name;
    rs_node node;
    int code;
    const char *needle; /* expected in the message */
} bad_case;

static void
test_bad_nodes(void **state) {
    (void)state;
    static char long_id[RS_ID_MAX + 2];
    memset(long_id, 'x', sizeof(long_id) - 1);
    static char long_addr[RS_ADDRESS_MAX + 10];
    memset(long_addr, '1', sizeof(long_addr) - 1);
    memcpy(long_addr + sizeof(long_addr) - 7, ":6379", 6);
    const bad_case cases[] = {
        {"zero weight", {"a", "127.0.0.1:1", NULL, 0, true}, -EINVAL, "weight must be between 1"},
        {"absurd weight", {"a", "127.0.0.1:1", NULL, RS_WEIGHT_MAX + 1, true}, -EINVAL, "weight"},
        {"empty id", {"", "127.0.0.1:1", NULL, 1, true}, -EINVAL, "id must not be empty"},
        {"null id", {NULL, "127.0.0.1:1", NULL, 1, true}, -EINVAL, "id must not be empty"},
        {"long id", {long_id, "127.0.0.1:1", NULL, 1, true}, -EINVAL, "id is too long"},
        {"control char id", {"a\nb", "127.0.0.1:1", NULL, 1, true}, -EINVAL, "control"},
        {"space id", {"a b", "127.0.0.1:1", NULL, 1, true}, -EINVAL, "spaces"},
        {"del char", {"a\x7f", "127.0.0.1:1", NULL, 1, true}, -EINVAL, "control"},
        {"empty address", {"a", "", NULL, 1, true}, -EINVAL, "address must not be empty"},
        {"long address", {"a", long_addr, NULL, 1, true}, -EINVAL, "address is too long"},
        {"no port", {"a", "127.0.0.1", NULL, 1, true}, -EINVAL, "host:port"},
        {"port 0", {"a", "127.0.0.1:0", NULL, 1, true}, -EINVAL, "port must be"},
        {"port 65536", {"a", "127.0.0.1:65536", NULL, 1, true}, -EINVAL, "port must be"},
        {"port junk", {"a", "127.0.0.1:12x", NULL, 1, true}, -EINVAL, "port must be"},
        {"empty host", {"a", ":6379", NULL, 1, true}, -EINVAL, "host is empty"},
        {"bare v6", {"a", "::1:6379", NULL, 1, true}, -EINVAL, "brackets"},
        {"control zone", {"a", "127.0.0.1:1", "z\tz", 1, true}, -EINVAL, "zone"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rs_ring_params p;
        rs_ring_params_init(&p);
        rs_ring *r = (rs_ring *)0x1;
        rs_error err = {{0}};
        int rc = rs_ring_build(&p, &cases[i].node, 1, &r, &err);
        if (rc != cases[i].code || strstr(err.msg, cases[i].needle) == NULL) {
            fail_msg("%s: rc %d msg '%s', expected %d and '%s'", cases[i].name, rc, err.msg,
                     cases[i].code, cases[i].needle);
        }
        assert_null(r);
        assert_non_null(strstr(err.msg, "nodes[0]"));
    }
    /* Valid oddities are accepted. */
    const rs_node good[] = {
        {"v6", "[::1]:6379", "", 1, true},
        {"caf\xc3\xa9", "cache.example:6379", "eu-west-1a", RS_WEIGHT_MAX, true},
    };
    rs_ring_params p;
    rs_ring_params_init(&p);
    rs_ring *r = NULL;
    rs_error err;
    assert_int_equal(rs_ring_build(&p, good, 2, &r, &err), 0);
    rs_ring_unref(r);
}

static void
test_bad_sets(void **state) {
    (void)state;
    rs_ring_params p;
    rs_ring_params_init(&p);
    rs_ring *r = NULL;
    rs_error err;
    rs_node *nodes = make_nodes(3);

    assert_int_equal(rs_ring_build(&p, nodes, 0, &r, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "empty"));

    nodes[2].id = nodes[0].id;
    assert_int_equal(rs_ring_build(&p, nodes, 3, &r, &err), -EEXIST);
    assert_non_null(strstr(err.msg, "duplicate id \"cache-0\""));
    nodes = make_nodes(3);

    for (int i = 0; i < 3; i++) {
        nodes[i].enabled = false;
    }
    assert_int_equal(rs_ring_build(&p, nodes, 3, &r, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "no node is enabled"));
    nodes = make_nodes(3);

    assert_int_equal(rs_ring_build(&p, nodes, RS_NODES_MAX + 1, &r, &err), -E2BIG);

    p.replicas = 0;
    assert_int_equal(rs_ring_build(&p, nodes, 3, &r, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "replicas"));
    p.replicas = RS_REPLICAS_MAX + 1;
    assert_int_equal(rs_ring_build(&p, nodes, 3, &r, &err), -EINVAL);
    rs_ring_params_init(&p);
    memcpy(p.hash_tag, "{", 2);
    assert_int_equal(rs_ring_build(&p, nodes, 3, &r, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "hash_tag"));
    rs_ring_params_init(&p);
    p.hash = RS_HASH_COUNT;
    assert_int_equal(rs_ring_build(&p, nodes, 3, &r, &err), -EINVAL);
    rs_ring_params_init(&p);
    p.algorithm = RS_ALG_COUNT;
    assert_int_equal(rs_ring_build(&p, nodes, 3, &r, &err), -EINVAL);
    assert_null(r);
}

static void
test_point_overflow(void **state) {
    (void)state;
    /* modula needs one slot per unit of weight: 500 x 10000 is past RS_POINTS_MAX. */
    rs_node *nodes = make_nodes(500);
    for (int i = 0; i < 500; i++) {
        nodes[i].weight = RS_WEIGHT_MAX;
    }
    rs_ring_params p;
    rs_ring_params_init(&p);
    p.algorithm = RS_ALG_MODULA;
    rs_ring *r = NULL;
    rs_error err;
    assert_int_equal(rs_ring_build(&p, nodes, 500, &r, &err), -E2BIG);
    assert_non_null(strstr(err.msg, "slots"));
    assert_null(r);
}

static void
test_names(void **state) {
    (void)state;
    rs_algorithm a;
    assert_int_equal(rs_algorithm_from_name("ketama", &a), 0);
    assert_int_equal(a, RS_ALG_KETAMA);
    assert_int_equal(rs_algorithm_from_name("modula", &a), 0);
    assert_int_equal(a, RS_ALG_MODULA);
    assert_int_equal(rs_algorithm_from_name("KETAMA", &a), -EINVAL);
    assert_int_equal(rs_algorithm_from_name(NULL, &a), -EINVAL);
    assert_string_equal(rs_algorithm_name(RS_ALG_MODULA), "modula");

    char id[64];
    assert_int_equal(rs_node_default_id("127.0.0.1:11211", id, sizeof(id)), 0);
    assert_string_equal(id, "127.0.0.1");
    assert_int_equal(rs_node_default_id("127.0.0.1:6379", id, sizeof(id)), 0);
    assert_string_equal(id, "127.0.0.1:6379");
    assert_int_equal(rs_node_default_id("[::1]:11211", id, sizeof(id)), 0);
    assert_string_equal(id, "[::1]");
    assert_int_equal(rs_node_default_id("nope", id, sizeof(id)), -EINVAL);
    assert_int_equal(rs_node_default_id("127.0.0.1:6379", id, 5), -ENAMETOOLONG);
}

/* ---- twemproxy's continuum ---- */

static void
test_ketama_known_points(void **state) {
    (void)state;
    /* From the reference: MD5("127.0.0.1:17001-0") gives these four points. */
    const uint32_t expect[4] = {2754572744u, 2044019028u, 1532223127u, 478895061u};
    rs_node nodes[2] = {
        {"127.0.0.1:17001", "127.0.0.1:17001", NULL, 1, true},
        {"127.0.0.1:17002", "127.0.0.1:17002", NULL, 1, true},
    };
    rs_ring *r = build(RS_ALG_KETAMA, nodes, 2);
    assert_int_equal(rs_ring_point_count(r), 320);
    int owner0 = rs_ring_find(r, "127.0.0.1:17001");
    assert_true(owner0 >= 0);
    int found = 0;
    uint32_t prev = 0;
    for (size_t i = 0; i < rs_ring_point_count(r); i++) {
        uint32_t v, o;
        assert_int_equal(rs_ring_point_at(r, i, &v, &o), 0);
        assert_true(v >= prev);
        prev = v;
        for (int k = 0; k < 4; k++) {
            if (v == expect[k] && o == (uint32_t)owner0) {
                found++;
            }
        }
        /* A key hash equal to a point lands on that point's owner; one above it, on
         * the next point's owner (or the first point's, past the end). */
        assert_int_equal(rs_ring_locate(r, v), o);
        if (v != UINT32_MAX) {
            uint32_t nv, no;
            size_t next = i + 1;
            while (next < rs_ring_point_count(r) &&
                   (rs_ring_point_at(r, next, &nv, &no), nv == v)) {
                next++;
            }
            if (next == rs_ring_point_count(r)) {
                rs_ring_point_at(r, 0, &nv, &no);
            }
            assert_int_equal(rs_ring_locate(r, v + 1), no);
        }
    }
    assert_int_equal(found, 4);
    uint32_t first, firsto, last, lasto;
    rs_ring_point_at(r, 0, &first, &firsto);
    rs_ring_point_at(r, rs_ring_point_count(r) - 1, &last, &lasto);
    assert_int_equal(rs_ring_locate(r, 0), firsto);
    assert_int_equal(rs_ring_locate(r, UINT32_MAX), last == UINT32_MAX ? lasto : firsto);
    assert_int_equal(rs_ring_point_at(r, rs_ring_point_count(r), &first, &firsto), -ERANGE);
    rs_ring_unref(r);
}

static void
test_ketama_weighted_points(void **state) {
    (void)state;
    /* The reference: weights 1,3,5,6,10 give 28/92/160/188/320 points (float32). */
    const uint32_t weights[5] = {1, 3, 5, 6, 10};
    const uint32_t points[5] = {28, 92, 160, 188, 320};
    rs_node *nodes = make_nodes(5);
    for (int i = 0; i < 5; i++) {
        nodes[i].weight = weights[i];
    }
    rs_ring *r = build(RS_ALG_KETAMA, nodes, 5);
    for (int i = 0; i < 5; i++) {
        const rs_ring_node *n = rs_ring_node_at(r, (size_t)rs_ring_find(r, fx.ids[i]));
        assert_int_equal(n->points, points[i]);
    }
    assert_int_equal(rs_ring_point_count(r), 28 + 92 + 160 + 188 + 320);
    rs_ring_unref(r);

    /* Equal weights at 25 nodes: float32 gives 39.999998 -> 39 hashes -> 156 points. */
    r = build(RS_ALG_KETAMA, make_nodes(25), 25);
    assert_int_equal(rs_ring_node_at(r, 0)->points, 156);
    rs_ring_unref(r);
    r = build(RS_ALG_KETAMA, make_nodes(24), 24);
    assert_int_equal(rs_ring_node_at(r, 0)->points, 160);
    rs_ring_unref(r);
}

static void
test_disabled_nodes(void **state) {
    (void)state;
    rs_node *nodes = make_nodes(4);
    nodes[1].enabled = false;
    rs_ring *with = build(RS_ALG_KETAMA, nodes, 4);
    rs_node three[3] = {nodes[0], nodes[2], nodes[3]};
    rs_ring *without = build(RS_ALG_KETAMA, three, 3);
    assert_int_equal(rs_ring_node_count(with), 4);
    assert_int_equal(rs_ring_enabled_count(with), 3);
    const rs_ring_node *d = rs_ring_node_at(with, (size_t)rs_ring_find(with, "cache-1"));
    assert_false(d->enabled);
    assert_int_equal(d->points, 0);
    assert_true(d->share == 0.0);
    /* A disabled node leaves the ring exactly as if it were absent. */
    assert_true(rs_ring_moved_fraction(with, without) == 0.0);
    assert_string_not_equal(rs_ring_fingerprint(with), rs_ring_fingerprint(without));
    rs_ring_unref(with);
    rs_ring_unref(without);
}

static void
test_hash_tag(void **state) {
    (void)state;
    rs_ring_params p;
    rs_ring_params_init(&p);
    memcpy(p.hash_tag, "{}", 3);
    rs_ring *r = NULL;
    rs_error err;
    assert_int_equal(rs_ring_build(&p, make_nodes(5), 5, &r, &err), 0);
    const struct {
        const char *key, *hashed;
    } cases[] = {
        {"user:{42}:name", "42"}, {"{42}", "42"},     {"a{b", "a{b"},
        {"{}x", "{}x"},           {"{x}{y}", "x"},    {"}{ab}", "ab"},
        {"x{a}}", "a"},           {"plain", "plain"}, {"{{a}", "{a"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t want = rs_hash(RS_HASH_FNV1A_64, cases[i].hashed, strlen(cases[i].hashed));
        uint32_t got = rs_ring_hash_key(r, cases[i].key, strlen(cases[i].key));
        if (want != got) {
            fail_msg("hash tag: key '%s' should hash as '%s'", cases[i].key, cases[i].hashed);
        }
    }
    assert_int_equal(rs_ring_hash_key(r, "", 0), 0);
    rs_ring_unref(r);
}

static void
test_modula(void **state) {
    (void)state;
    rs_node *nodes = make_nodes(3);
    nodes[0].weight = 1;
    nodes[1].weight = 10;
    nodes[2].weight = 2;
    rs_ring *r = build(RS_ALG_MODULA, nodes, 3);
    assert_int_equal(rs_ring_point_count(r), 13);
    /* Slots in id order (cache-0 x1, cache-1 x10, cache-2 x2); slot = hash % 13. */
    for (uint32_t h = 0; h < 1000; h++) {
        uint32_t s = h % 13;
        const char *want = s < 1 ? "cache-0" : s < 11 ? "cache-1" : "cache-2";
        assert_string_equal(rs_ring_node_at(r, rs_ring_locate(r, h))->id, want);
    }
    double sum = 0;
    for (size_t i = 0; i < 3; i++) {
        sum += rs_ring_node_at(r, i)->share;
    }
    assert_true(fabs(sum - 1.0) < 1e-12);
    assert_true(fabs(rs_ring_node_at(r, 1)->share - 10.0 / 13) < 1e-9);
    rs_ring_unref(r);
}

/* ---- lookups, replicas, health ---- */

static void
test_candidates(void **state) {
    (void)state;
    rs_ring *r = build(RS_ALG_KETAMA, make_nodes(10), 10);
    uint64_t seed = 7;
    uint8_t usable[10];
    for (int k = 0; k < 2000; k++) {
        char key[16];
        random_key(&seed, key);
        uint32_t h = rs_ring_hash_key(r, key, 16);
        uint32_t out[12];
        size_t n = rs_ring_candidates(r, h, NULL, out, 12);
        assert_int_equal(n, 10); /* capped at the enabled count, all distinct */
        assert_int_equal(out[0], rs_ring_locate(r, h));
        for (size_t i = 0; i < n; i++) {
            for (size_t j = i + 1; j < n; j++) {
                assert_int_not_equal(out[i], out[j]);
            }
        }
        /* Same answer through the small-request path. */
        uint32_t two[2];
        assert_int_equal(rs_ring_candidates(r, h, NULL, two, 2), 2);
        assert_int_equal(two[0], out[0]);
        assert_int_equal(two[1], out[1]);
        /* A dead primary's keys go to the node that was its first replica. */
        memset(usable, 1, sizeof(usable));
        usable[out[0]] = 0;
        uint32_t alive[2];
        assert_int_equal(rs_ring_candidates(r, h, usable, alive, 2), 2);
        assert_int_equal(alive[0], out[1]);
        assert_int_equal(alive[1], out[2]);
        /* Only one usable node: everything goes there. */
        memset(usable, 0, sizeof(usable));
        usable[3] = 1;
        assert_int_equal(rs_ring_candidates(r, h, usable, alive, 2), 1);
        assert_int_equal(alive[0], 3);
        memset(usable, 0, sizeof(usable));
        assert_int_equal(rs_ring_candidates(r, h, usable, alive, 2), 0);
    }
    rs_ring_unref(r);
}

static void
test_single_node(void **state) {
    (void)state;
    for (int a = 0; a < RS_ALG_COUNT; a++) {
        rs_ring *r = build((rs_algorithm)a, make_nodes(1), 1);
        for (uint32_t h = 0; h < 100000; h += 7) {
            assert_int_equal(rs_ring_locate(r, h * 42949u), 0);
        }
        assert_int_equal(rs_ring_locate(r, UINT32_MAX), 0);
        assert_true(fabs(rs_ring_node_at(r, 0)->share - 1.0) < 1e-12);
        rs_ring_unref(r);
    }
}

/* ---- identity ---- */

static void
test_order_independence(void **state) {
    (void)state;
    for (int a = 0; a < RS_ALG_COUNT; a++) {
        rs_node *nodes = make_nodes(50);
        nodes[7].weight = 3;
        nodes[9].zone = "b";
        rs_ring *r1 = build((rs_algorithm)a, nodes, 50);
        uint64_t seed = 99;
        for (int i = 49; i > 0; i--) { /* Fisher-Yates */
            int j = (int)(splitmix(&seed) % (uint64_t)(i + 1));
            rs_node t = nodes[i];
            nodes[i] = nodes[j];
            nodes[j] = t;
        }
        rs_ring *r2 = build((rs_algorithm)a, nodes, 50);
        assert_string_equal(rs_ring_fingerprint(r1), rs_ring_fingerprint(r2));
        assert_int_equal(rs_ring_point_count(r1), rs_ring_point_count(r2));
        for (size_t i = 0; i < rs_ring_point_count(r1); i++) {
            uint32_t v1, o1, v2, o2;
            rs_ring_point_at(r1, i, &v1, &o1);
            rs_ring_point_at(r2, i, &v2, &o2);
            assert_int_equal(v1, v2);
            assert_string_equal(rs_ring_node_at(r1, o1)->id, rs_ring_node_at(r2, o2)->id);
        }
        assert_true(rs_ring_moved_fraction(r1, r2) == 0.0);
        rs_ring_unref(r1);
        rs_ring_unref(r2);
    }
}

static void
test_fingerprint(void **state) {
    (void)state;
    rs_node *nodes = make_nodes(5);
    rs_ring *base = build(RS_ALG_KETAMA, nodes, 5);
    const char *fp = rs_ring_fingerprint(base);
    assert_int_equal(strlen(fp), RS_FINGERPRINT_LEN);
    assert_true(strspn(fp, "0123456789abcdef") == RS_FINGERPRINT_LEN);

    /* An address change keeps every key in place but changes the fingerprint. */
    nodes[2].address = "127.0.0.9:6379";
    rs_ring *moved_addr = build(RS_ALG_KETAMA, nodes, 5);
    assert_string_not_equal(fp, rs_ring_fingerprint(moved_addr));
    assert_true(rs_ring_moved_fraction(base, moved_addr) == 0.0);
    rs_ring_unref(moved_addr);

    nodes = make_nodes(5);
    nodes[1].weight = 2;
    rs_ring *w = build(RS_ALG_KETAMA, nodes, 5);
    assert_string_not_equal(fp, rs_ring_fingerprint(w));
    rs_ring_unref(w);

    nodes = make_nodes(5);
    rs_ring *m = build(RS_ALG_MODULA, nodes, 5);
    assert_string_not_equal(fp, rs_ring_fingerprint(m));
    rs_ring_unref(m);

    rs_ring_params p;
    rs_ring_params_init(&p);
    p.replicas = 3;
    rs_ring *rep = NULL;
    rs_error err;
    assert_int_equal(rs_ring_build(&p, nodes, 5, &rep, &err), 0);
    assert_string_not_equal(fp, rs_ring_fingerprint(rep));
    rs_ring_unref(rep);

    rs_ring *same = build(RS_ALG_KETAMA, make_nodes(5), 5);
    assert_string_equal(fp, rs_ring_fingerprint(same));
    rs_ring_unref(same);
    rs_ring_unref(base);
}

static void
test_refcount(void **state) {
    (void)state;
    rs_ring *r = build(RS_ALG_KETAMA, make_nodes(3), 3);
    rs_ring *again = rs_ring_ref(r);
    assert_ptr_equal(again, r);
    rs_ring_unref(r);
    assert_string_equal(rs_ring_node_at(again, 0)->id, "cache-0"); /* still alive */
    rs_ring_unref(again);
    rs_ring_unref(NULL);
}

/* ---- consistent-hashing properties ---- */

static void
test_shares(void **state) {
    (void)state;
    rs_ring *r = build(RS_ALG_KETAMA, make_nodes(100), 100);
    double sum = 0, max = 0;
    for (size_t i = 0; i < 100; i++) {
        double s = rs_ring_node_at(r, i)->share;
        sum += s;
        max = s > max ? s : max;
    }
    assert_true(fabs(sum - 1.0) < 1e-9);
    assert_true(fabs(rs_ring_imbalance(r) - max * 100) < 1e-9);
    /* 160 points per node: ketama's known spread, well above 1 and well below 2. */
    assert_true(rs_ring_imbalance(r) > 1.05 && rs_ring_imbalance(r) < 1.5);

    /* Shares measured on keys agree with the exact arc shares. */
    uint32_t counts[100] = {0};
    uint64_t seed = 3;
    const int nkeys = 400000;
    for (int k = 0; k < nkeys; k++) {
        char key[16];
        random_key(&seed, key);
        counts[rs_ring_lookup(r, key, 16)]++;
    }
    for (size_t i = 0; i < 100; i++) {
        double measured = (double)counts[i] / nkeys;
        assert_true(fabs(measured - rs_ring_node_at(r, i)->share) < 0.0025);
    }
    rs_ring_unref(r);
}

static void
test_add_moves_little(void **state) {
    (void)state;
    /* Sizes where twemproxy's float32 arithmetic gives 160 points per node at both n and
     * n+1; at n = 25, 47, 50, 100, ... it gives 156, so every node also loses a hash
     * when the count crosses such an n (see test_float32_point_drop). */
    static const uint32_t sizes[] = {5, 10, 40, 80};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint32_t n = sizes[s];
        double total = 0;
        const int seeds = 8;
        for (int seed = 0; seed < seeds; seed++) {
            /* A different node-name family per seed changes the ring's shape. */
            rs_node *nodes = make_nodes(n + 1);
            for (uint32_t i = 0; i <= n; i++) {
                snprintf(fx.ids[i], sizeof(fx.ids[i]), "s%d-node-%u", seed, i);
            }
            rs_ring *a = build(RS_ALG_KETAMA, nodes, n);
            rs_ring *b = build(RS_ALG_KETAMA, nodes, n + 1);
            double moved = rs_ring_moved_fraction(a, b);
            total += moved;
            /* Every moved key went to the new node: the new node's share is the movement. */
            const rs_ring_node *added = rs_ring_node_at(b, (size_t)rs_ring_find(b, fx.ids[n]));
            assert_true(fabs(moved - added->share) < 1e-9);
            /* And on real keys: moved only onto the new node. */
            uint64_t kseed = (uint64_t)seed;
            for (int k = 0; k < 20000; k++) {
                char key[16];
                random_key(&kseed, key);
                const char *before = rs_ring_node_at(a, rs_ring_lookup(a, key, 16))->id;
                const char *after = rs_ring_node_at(b, rs_ring_lookup(b, key, 16))->id;
                if (strcmp(before, after) != 0) {
                    assert_string_equal(after, fx.ids[n]);
                }
            }
            rs_ring_unref(a);
            rs_ring_unref(b);
        }
        double mean = total / seeds, ideal = 1.0 / (n + 1);
        if (mean > 1.1 * ideal) {
            fail_msg("adding 1 node to %u moved %.4f on average, ideal %.4f", n, mean, ideal);
        }
    }
}

static void
test_float32_point_drop(void **state) {
    (void)state;
    /* 99 -> 100 nodes: points per node drop from 160 to 156 (twemproxy's float32
     * rounding), so keys also move between nodes present in both rings. ketama mode
     * reproduces this on purpose: it is what twemproxy does. */
    rs_node *nodes = make_nodes(100);
    rs_ring *a = build(RS_ALG_KETAMA, nodes, 99);
    rs_ring *b = build(RS_ALG_KETAMA, nodes, 100);
    assert_int_equal(rs_ring_node_at(a, 0)->points, 160);
    assert_int_equal(rs_ring_node_at(b, 0)->points, 156);
    const rs_ring_node *added = rs_ring_node_at(b, (size_t)rs_ring_find(b, "cache-99"));
    assert_true(rs_ring_moved_fraction(a, b) > added->share + 0.005);
    rs_ring_unref(a);
    rs_ring_unref(b);
}

static void
test_remove_moves_only_its_keys(void **state) {
    (void)state;
    rs_node *nodes = make_nodes(20);
    rs_ring *a = build(RS_ALG_KETAMA, nodes, 20);
    rs_node rest[19];
    memcpy(rest, nodes, 7 * sizeof(rs_node));
    memcpy(rest + 7, nodes + 8, 12 * sizeof(rs_node));
    rs_ring *b = build(RS_ALG_KETAMA, rest, 19);
    const rs_ring_node *gone = rs_ring_node_at(a, (size_t)rs_ring_find(a, "cache-7"));
    assert_true(fabs(rs_ring_moved_fraction(a, b) - gone->share) < 1e-9);
    uint64_t seed = 11;
    for (int k = 0; k < 50000; k++) {
        char key[16];
        random_key(&seed, key);
        const char *before = rs_ring_node_at(a, rs_ring_lookup(a, key, 16))->id;
        const char *after = rs_ring_node_at(b, rs_ring_lookup(b, key, 16))->id;
        if (strcmp(before, "cache-7") != 0) {
            assert_string_equal(before, after);
        } else {
            assert_string_not_equal(after, "cache-7");
        }
    }
    rs_ring_unref(a);
    rs_ring_unref(b);
}

static void
test_modula_moves_most(void **state) {
    (void)state;
    rs_node *nodes = make_nodes(11);
    rs_ring *a = build(RS_ALG_MODULA, nodes, 10);
    rs_ring *b = build(RS_ALG_MODULA, nodes, 11);
    double moved = rs_ring_moved_fraction(a, b);
    /* Modulo placement reshuffles about n/(n+1) of the keys. */
    assert_true(fabs(moved - 10.0 / 11) < 0.01);
    rs_ring_unref(a);
    rs_ring_unref(b);
}

static void
test_moved_fraction_exact(void **state) {
    (void)state;
    /* The exact arc-merge answer agrees with a count over evenly spread hashes. */
    rs_node *nodes = make_nodes(30);
    rs_ring *a = build(RS_ALG_KETAMA, nodes, 27);
    rs_ring *b = build(RS_ALG_KETAMA, nodes + 2, 28);
    double exact = rs_ring_moved_fraction(a, b);
    uint64_t moved = 0;
    const uint32_t samples = 1u << 22;
    for (uint32_t s = 0; s < samples; s++) {
        uint32_t h = s * 1024u + 511u;
        moved += strcmp(rs_ring_node_at(a, rs_ring_locate(a, h))->id,
                        rs_ring_node_at(b, rs_ring_locate(b, h))->id) != 0;
    }
    assert_true(fabs(exact - (double)moved / samples) < 0.002);
    assert_true(exact > 0.05);
    rs_ring_unref(a);
    rs_ring_unref(b);
}

int
main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_nodes),
        cmocka_unit_test(test_bad_sets),
        cmocka_unit_test(test_point_overflow),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_ketama_known_points),
        cmocka_unit_test(test_ketama_weighted_points),
        cmocka_unit_test(test_disabled_nodes),
        cmocka_unit_test(test_hash_tag),
        cmocka_unit_test(test_modula),
        cmocka_unit_test(test_candidates),
        cmocka_unit_test(test_single_node),
        cmocka_unit_test(test_order_independence),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_shares),
        cmocka_unit_test(test_add_moves_little),
        cmocka_unit_test(test_float32_point_drop),
        cmocka_unit_test(test_remove_moves_only_its_keys),
        cmocka_unit_test(test_modula_moves_most),
        cmocka_unit_test(test_moved_fraction_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
