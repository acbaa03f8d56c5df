/* ringside's in-process lookup next to libmemcached's ketama in the same program (SPEC 11:
 * ringside at least 5x faster than libmemcached's ketama lookup, key hash included, on
 * 16-byte keys; <= 20 ns at 100 nodes, <= 40 ns at 1000).
 *
 * For 10, 100 and 1000 nodes ("127.0.0.1:7000".. as both the ringside node id and the
 * libmemcached server), it builds:
 *   - libmemcached 1.1: memcached_create, DISTRIBUTION = CONSISTENT_KETAMA, then
 *     KETAMA_WEIGHTED (160 points per server, 4 per MD5 digest: the continuum twemproxy
 *     and ringside's ketama build; plain CONSISTENT_KETAMA has 100 one-hash points) and
 *     HASH = the key hash, servers pushed in one go; a lookup is
 *     memcached_generate_hash(memc, key, 16);
 *   - ringside: rs_ring_build, a lookup is rs_ring_lookup(ring, key, 16);
 * for the key hashes both libraries have under the same name (fnv1a_64 by default, which
 * is ringside's default key hash, and md5, ketama's own; --hash picks others). Then every
 * other ringside algorithm (looked up by name at run time, so new ones show up without
 * code changes) with its default parameters, against the fnv1a_64 libmemcached ring.
 *
 * Runs are interleaved: each run times one batch of every contestant, in an order that
 * rotates from run to run, so a noisy neighbour hits all of them alike. The ratio is taken
 * per run (libmemcached ns / ringside ns) and its median and min-max reported. Both sides
 * place the same keys on the same nodes: the share of keys on which they agree is
 * printed as a check that the two rings are the same ring (fnv1a_64 and md5 agree
 * bit for bit between twemproxy, hence ringside, and libmemcached on ASCII keys).
 * Rebuild: libmemcached's continuum build (memcached_server_push into an empty handle)
 * next to rs_ring_build of the same nodes, also interleaved.
 *
 * Keys: 4096 random 16-byte lowercase keys, cycled (as bench_ring does), so the parts of
 * a ring they touch stay in cache, and each timed batch follows an untimed pass over the
 * keys: these are best-case, cache-warm figures, alike for every contestant.
 *
 * Usage: bench_libmemcached [--smoke] [--runs N] [--hash H[,H...]] [--algorithm A[,A...]]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libmemcached/memcached.h>

#include "rs_hash.h"
#include "rs_ring.h"

#define NKEYS 4096 /* keys cycled through per timed batch: 64 KiB, stays in L2 */
#define KEYLEN 16
#define MAX_CONTESTANTS 64
#define MAX_RUNS 1001

static char keys[NKEYS][KEYLEN];

static double
now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int
cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stats {
    double median, min, max;
} stats;

/* Sorts v in place. */
static stats
summarize(double *v, int n) {
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return (stats){.median = med, .min = v[0], .max = v[n - 1]};
}

static uint64_t
splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void *
xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (p == NULL) {
        fprintf(stderr, "bench_libmemcached: out of memory\n");
        exit(1);
    }
    return p;
}

/* The key hashes libmemcached has under a twemproxy (ringside) name. */
static const struct {
    const char *name;
    memcached_hash_t lmc;
} hash_map[] = {
    {"md5", MEMCACHED_HASH_MD5},         {"crc32", MEMCACHED_HASH_CRC},
    {"fnv1_64", MEMCACHED_HASH_FNV1_64}, {"fnv1a_64", MEMCACHED_HASH_FNV1A_64},
    {"fnv1_32", MEMCACHED_HASH_FNV1_32}, {"fnv1a_32", MEMCACHED_HASH_FNV1A_32},
    {"hsieh", MEMCACHED_HASH_HSIEH},     {"murmur", MEMCACHED_HASH_MURMUR},
    {"jenkins", MEMCACHED_HASH_JENKINS},
};

static int
lmc_hash_of(const char *name, memcached_hash_t *out) {
    for (size_t i = 0; i < sizeof(hash_map) / sizeof(hash_map[0]); i++) {
        if (strcmp(hash_map[i].name, name) == 0) {
            *out = hash_map[i].lmc;
            return 0;
        }
    }
    return -EINVAL;
}

typedef struct nodeset {
    uint32_t n;
    char (*addr)[32];
    rs_node *nodes;
    memcached_server_st *list; /* libmemcached's server list, for memcached_server_push */
} nodeset;

static void
nodeset_init(nodeset *s, uint32_t n) {
    s->n = n;
    s->addr = xcalloc(n, sizeof(*s->addr));
    s->nodes = xcalloc(n, sizeof(*s->nodes));
    s->list = NULL;
    for (uint32_t i = 0; i < n; i++) {
        snprintf(s->addr[i], sizeof(s->addr[i]), "127.0.0.1:%u", 7000 + i);
        s->nodes[i] =
            (rs_node){.id = s->addr[i], .address = s->addr[i], .weight = 1, .enabled = true};
        memcached_return_t rc;
        s->list = memcached_server_list_append(s->list, "127.0.0.1", (in_port_t)(7000 + i), &rc);
        if (s->list == NULL || rc != MEMCACHED_SUCCESS) {
            fprintf(stderr, "memcached_server_list_append: %d\n", (int)rc);
            exit(1);
        }
    }
}

static void
nodeset_free(nodeset *s) {
    memcached_server_list_free(s->list);
    free(s->addr);
    free(s->nodes);
}

/* A libmemcached handle set up for ketama with the given key hash, no servers yet. */
static memcached_st *
lmc_new(memcached_hash_t hash) {
    memcached_st *m = memcached_create(NULL);
    if (m == NULL) {
        fprintf(stderr, "memcached_create failed\n");
        exit(1);
    }
    if (memcached_behavior_set(m, MEMCACHED_BEHAVIOR_DISTRIBUTION,
                               MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA) != MEMCACHED_SUCCESS ||
        memcached_behavior_set(m, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1) != MEMCACHED_SUCCESS ||
        memcached_behavior_set(m, MEMCACHED_BEHAVIOR_HASH, (uint64_t)hash) != MEMCACHED_SUCCESS) {
        memcached_free(m);
        return NULL;
    }
    return m;
}

static memcached_st *
lmc_build(memcached_hash_t hash, const nodeset *s) {
    memcached_st *m = lmc_new(hash);
    if (m != NULL && memcached_server_push(m, s->list) != MEMCACHED_SUCCESS) {
        memcached_free(m);
        m = NULL;
    }
    return m;
}

static rs_ring *
rs_build(rs_algorithm alg, const char *hash, const nodeset *s) {
    rs_ring_params p;
    rs_ring_params_init(&p);
    p.algorithm = alg;
    if (hash != NULL && rs_hash_from_name(hash, &p.hash) != 0) {
        return NULL;
    }
    rs_ring *r = NULL;
    rs_error err;
    if (rs_ring_build(&p, s->nodes, s->n, &r, &err) != 0) {
        fprintf(stderr, "rs_ring_build(%s, %s, %u nodes): %s\n", rs_algorithm_name(alg),
                hash ? hash : "default", s->n, err.msg);
        return NULL;
    }
    return r;
}

/* A hand-written ketama ring, the kind a team writes itself: ringside's continuum copied
 * into a {value, owner} array, the key hash inlined (fnv1a_64) or called (others), and
 * the textbook lower-bound binary search (libmemcached's loop). */
typedef struct hand_ring {
    rs_hash_kind hash;
    uint32_t n;
    struct hand_point {
        uint32_t value, owner;
    } * p;
} hand_ring;

static hand_ring *
hand_build(const rs_ring *r, rs_hash_kind hash) {
    hand_ring *h = xcalloc(1, sizeof(*h));
    h->hash = hash;
    h->n = (uint32_t)rs_ring_point_count(r);
    h->p = xcalloc(h->n, sizeof(*h->p));
    for (uint32_t i = 0; i < h->n; i++) {
        if (rs_ring_point_at(r, i, &h->p[i].value, &h->p[i].owner) != 0) {
            fprintf(stderr, "rs_ring_point_at failed\n");
            exit(1);
        }
    }
    return h;
}

static void
hand_free(hand_ring *h) {
    if (h != NULL) {
        free(h->p);
        free(h);
    }
}

static inline uint32_t
hand_fnv1a_64(const char *key, size_t len) {
    uint32_t v = UINT32_C(0x84222325);
    for (size_t i = 0; i < len; i++) {
        v ^= (uint32_t)(signed char)key[i];
        v *= UINT32_C(0x1b3);
    }
    return v;
}

static inline uint32_t
hand_lookup(const hand_ring *h, const char *key, size_t len) {
    uint32_t hv =
        h->hash == RS_HASH_FNV1A_64 ? hand_fnv1a_64(key, len) : rs_hash(h->hash, key, len);
    uint32_t left = 0, right = h->n;
    while (left < right) {
        uint32_t mid = left + (right - left) / 2;
        if (h->p[mid].value < hv) {
            left = mid + 1;
        } else {
            right = mid;
        }
    }
    return h->p[right == h->n ? 0 : right].owner;
}

enum kind { K_RINGSIDE, K_LIBMEMCACHED, K_HAND };

/* One contestant and its timings. */
typedef struct contestant {
    enum kind kind;
    char label[48];
    char hash[24];
    rs_ring *ring;
    memcached_st *memc;
    hand_ring *hand;
    int base_lmc, base_hand; /* indexes of the baselines it is compared with, or -1 */
    double ns[MAX_RUNS];
    double r_lmc[MAX_RUNS], r_hand[MAX_RUNS];
} contestant;

static volatile uint32_t sink;

/* ns per lookup over one timed batch. */
static double
time_batch(const contestant *c, int batches) {
    uint32_t acc = 0;
    double t0 = now_ns();
    if (c->kind == K_RINGSIDE) {
        const rs_ring *r = c->ring;
        for (int b = 0; b < batches; b++) {
            for (int k = 0; k < NKEYS; k++) {
                acc += rs_ring_lookup(r, keys[k], KEYLEN);
            }
        }
    } else if (c->kind == K_LIBMEMCACHED) {
        const memcached_st *m = c->memc;
        for (int b = 0; b < batches; b++) {
            for (int k = 0; k < NKEYS; k++) {
                acc += memcached_generate_hash(m, keys[k], KEYLEN);
            }
        }
    } else {
        const hand_ring *h = c->hand;
        for (int b = 0; b < batches; b++) {
            for (int k = 0; k < NKEYS; k++) {
                acc += hand_lookup(h, keys[k], KEYLEN);
            }
        }
    }
    double t = (now_ns() - t0) / ((double)batches * NKEYS);
    sink += acc;
    return t;
}

/* Share of the keys both sides place on the same address. */
static double
agreement(const rs_ring *r, const memcached_st *m, const nodeset *s) {
    int same = 0;
    for (int k = 0; k < NKEYS; k++) {
        const rs_ring_node *n = rs_ring_node_at(r, rs_ring_lookup(r, keys[k], KEYLEN));
        uint32_t idx = memcached_generate_hash(m, keys[k], KEYLEN);
        same += idx < s->n && strcmp(n->address, s->addr[idx]) == 0;
    }
    return (double)same / NKEYS;
}

/* Whether libmemcached builds a ketama continuum of s->n servers at all: 1.1 asserts
 * (and aborts) when servers x 100 > MEMCACHED_CONTINUUM_SIZE (10000), i.e. above 100
 * servers. Tried in a child so the abort does not take the benchmark down. */
static int
lmc_can_build(memcached_hash_t hash, const nodeset *s, char *why, size_t cap) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, cap, "fork: %s", strerror(errno));
        return 0;
    }
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 2);
        }
        memcached_st *m = lmc_build(hash, s);
        _exit(m != NULL ? 0 : 1);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        return 1;
    }
    if (WIFSIGNALED(st)) {
        snprintf(why, cap, "libmemcached %s aborts (%s) building ketama for %u servers",
                 LIBMEMCACHED_VERSION_STRING, strsignal(WTERMSIG(st)), s->n);
    } else {
        snprintf(why, cap, "libmemcached %s fails building ketama for %u servers",
                 LIBMEMCACHED_VERSION_STRING, s->n);
    }
    return 0;
}

static int
in_list(const char *list, const char *name) {
    if (list == NULL) {
        return 1;
    }
    size_t len = strlen(name);
    for (const char *p = list; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t l = end ? (size_t)(end - p) : strlen(p);
        if (l == len && strncmp(p, name, len) == 0) {
            return 1;
        }
        p += l + (end != NULL);
    }
    return 0;
}

static void
usage(void) {
    fprintf(stderr,
            "usage: bench_libmemcached [--smoke] [--runs N] [--hash H[,H...]] "
            "[--algorithm A[,A...]]\n"
            "Times ringside's lookup (rs_ring_lookup, key hash included, 16-byte keys) next\n"
            "to libmemcached's ketama (memcached_generate_hash) and a hand-written ketama\n"
            "ring in the same program, at 10, 100 and 1000 nodes, interleaved runs; prints\n"
            "medians, min-max and the ratios, then the continuum rebuild times.\n"
            "  --hash H       key hashes to pair ringside ketama and the baselines on\n"
            "                 (default fnv1a_64,md5; also crc32 fnv1_64 fnv1_32 fnv1a_32\n"
            "                 hsieh murmur jenkins)\n"
            "  --algorithm A  other ringside algorithms to time (default: all; none: none)\n"
            "  --runs N       interleaved runs (default 101; --smoke: 3)\n");
}

static contestant *
add(contestant *cs, int *nc, enum kind kind, const char *label, const char *hash) {
    if (*nc >= MAX_CONTESTANTS) {
        fprintf(stderr, "bench_libmemcached: too many contestants\n");
        exit(1);
    }
    contestant *c = &cs[(*nc)++];
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    c->base_lmc = c->base_hand = -1;
    snprintf(c->label, sizeof(c->label), "%s", label);
    snprintf(c->hash, sizeof(c->hash), "%s", hash);
    return c;
}

static void
fmt_ratio(char *out, size_t cap, const contestant *c, const double *r, int base, int runs) {
    if (base < 0) {
        snprintf(out, cap, "%s", c->kind == K_RINGSIDE ? "-" : "");
        return;
    }
    double *v = xcalloc((size_t)runs, sizeof(double));
    memcpy(v, r, (size_t)runs * sizeof(double));
    stats q = summarize(v, runs);
    free(v);
    snprintf(out, cap, "%.2f (%.2f-%.2f)", q.median, q.min, q.max);
}

int
main(int argc, char **argv) {
    int smoke = 0, runs = 0;
    const char *hashes = "fnv1a_64,md5", *algs = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            smoke = 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--runs") == 0) {
            runs = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--hash") == 0) {
            hashes = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--algorithm") == 0) {
            algs = argv[++i];
        } else {
            usage();
            return 2;
        }
    }
    if (runs == 0) {
        runs = smoke ? 3 : 101;
    }
    if (runs < 1 || runs > MAX_RUNS) {
        fprintf(stderr, "bench_libmemcached: --runs 1..%d\n", MAX_RUNS);
        return 2;
    }
    if (algs != NULL && strcmp(algs, "none") != 0) {
        for (const char *p = algs; *p != '\0';) {
            char name[64];
            size_t l = strcspn(p, ",");
            snprintf(name, sizeof(name), "%.*s", (int)l, p);
            rs_algorithm a;
            if (rs_algorithm_from_name(name, &a) != 0) {
                fprintf(stderr, "bench_libmemcached: unknown algorithm '%s'\n", name);
                return 2;
            }
            p += l + (p[l] == ',');
        }
    }
    /* Short batches (about a millisecond) and many runs: a burst of noise from another
     * process then hits few batches, and the per-run ratios stay fair. */
    const int batches = smoke ? 1 : 5; /* lookups per timed batch: batches x 4096 */

    uint64_t seed = 42;
    for (int k = 0; k < NKEYS; k++) {
        for (int j = 0; j < KEYLEN; j++) {
            keys[k][j] = (char)('a' + splitmix(&seed) % 26);
        }
    }

    static const uint32_t sizes[] = {10, 100, 1000};
    int failures = 0, missed = 0;
    char first_hash[24] = "";
    static contestant cs[MAX_CONTESTANTS];

    printf("libmemcached %s ketama (DISTRIBUTION_CONSISTENT_KETAMA + KETAMA_WEIGHTED: 160 "
           "points/server, 4 per MD5, like twemproxy) and a hand-written ketama ring vs "
           "ringside;\n%d-byte keys, %d interleaved runs of %d lookups each\n\n",
           LIBMEMCACHED_VERSION_STRING, KEYLEN, runs, batches * NKEYS);
    printf("%-22s %-11s %5s %7s | %8s %17s | %-22s | %-22s | %6s\n", "contestant", "key hash",
           "nodes", "points", "ns/look", "(min-max)", "x libmemcached (min-max)",
           "x hand-written (min-max)", "agree");

    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        nodeset s;
        nodeset_init(&s, sizes[si]);
        int nc = 0;
        char lmc_why[160] = "";
        int first_lmc = -1, first_hand = -1;

        /* Per key hash: libmemcached (if it can), hand-written, ringside ketama. */
        for (const char *p = hashes; *p != '\0';) {
            char name[24];
            size_t l = strcspn(p, ",");
            snprintf(name, sizeof(name), "%.*s", (int)l, p);
            p += l + (p[l] == ',');
            memcached_hash_t lh;
            rs_hash_kind rh;
            if (lmc_hash_of(name, &lh) != 0 || rs_hash_from_name(name, &rh) != 0) {
                fprintf(stderr, "bench_libmemcached: '%s' is not a hash of both\n", name);
                failures++;
                continue;
            }
            rs_ring *r = rs_build(RS_ALG_KETAMA, name, &s);
            if (r == NULL) {
                failures++;
                continue;
            }
            if (first_hash[0] == '\0') {
                snprintf(first_hash, sizeof(first_hash), "%s", name);
            }
            int li = -1;
            if (lmc_can_build(lh, &s, lmc_why, sizeof(lmc_why))) {
                contestant *b = add(cs, &nc, K_LIBMEMCACHED, "libmemcached ketama", name);
                b->memc = lmc_build(lh, &s);
                li = nc - 1;
            }
            contestant *h = add(cs, &nc, K_HAND, "hand-written ketama", name);
            h->hand = hand_build(r, rh);
            h->base_lmc = li;
            int hi = nc - 1;
            contestant *c = add(cs, &nc, K_RINGSIDE, "ringside ketama", name);
            c->ring = r;
            c->base_lmc = li;
            c->base_hand = hi;
            if (first_hand < 0) {
                first_lmc = li;
                first_hand = hi;
            }
        }
        if (first_hand < 0) {
            fprintf(stderr, "bench_libmemcached: no usable --hash\n");
            return 1;
        }
        for (int a = 0; a < RS_ALG_COUNT; a++) {
            const char *name = rs_algorithm_name((rs_algorithm)a);
            if (a == RS_ALG_KETAMA || name == NULL || !in_list(algs, name)) {
                continue;
            }
            rs_ring *r = rs_build((rs_algorithm)a, NULL, &s);
            if (r == NULL) {
                failures++;
                continue;
            }
            char label[48];
            snprintf(label, sizeof(label), "ringside %s", name);
            contestant *c = add(cs, &nc, K_RINGSIDE, label, rs_ring_key_hash_name(r));
            c->ring = r;
            c->base_lmc = first_lmc;
            c->base_hand = first_hand;
        }

        /* Warm-up, then interleaved runs in an order rotating from run to run. */
        for (int i = 0; i < nc; i++) {
            (void)time_batch(&cs[i], 1);
        }
        for (int run = 0; run < runs; run++) {
            for (int j = 0; j < nc; j++) {
                int i = (j + run) % nc;
                (void)time_batch(&cs[i], 1); /* bring its ring back into the caches */
                cs[i].ns[run] = time_batch(&cs[i], batches);
            }
            for (int i = 0; i < nc; i++) {
                contestant *c = &cs[i];
                if (c->base_lmc >= 0) {
                    c->r_lmc[run] = cs[c->base_lmc].ns[run] / c->ns[run];
                }
                if (c->base_hand >= 0) {
                    c->r_hand[run] = cs[c->base_hand].ns[run] / c->ns[run];
                }
            }
        }

        for (int i = 0; i < nc; i++) {
            contestant *c = &cs[i];
            size_t points = c->kind == K_LIBMEMCACHED ? c->memc->ketama.continuum_points_counter
                            : c->kind == K_HAND       ? c->hand->n
                                                      : rs_ring_point_count(c->ring);
            double med_lmc = 0;
            if (c->base_lmc >= 0) {
                double v[MAX_RUNS];
                memcpy(v, c->r_lmc, (size_t)runs * sizeof(double));
                med_lmc = summarize(v, runs).median;
            }
            char xl[48], xh[48], agree[16] = "";
            fmt_ratio(xl, sizeof(xl), c, c->r_lmc, c->base_lmc, runs);
            fmt_ratio(xh, sizeof(xh), c, c->r_hand, c->base_hand, runs);
            stats t = summarize(c->ns, runs);
            int is_rs_ketama = c->kind == K_RINGSIDE && strcmp(c->label, "ringside ketama") == 0;
            if (is_rs_ketama && c->base_lmc >= 0) {
                snprintf(agree, sizeof(agree), "%5.1f%%",
                         100.0 * agreement(c->ring, cs[c->base_lmc].memc, &s));
            }
            printf("%-22s %-11s %5u %7zu | %8.2f %8.2f-%-8.2f | %-22s | %-22s | %6s\n", c->label,
                   c->hash, s.n, points, t.median, t.min, t.max, xl, xh, agree);
            if (is_rs_ketama && strcmp(c->hash, first_hash) == 0) {
                missed += (c->base_lmc >= 0 && med_lmc < 5.0) || (s.n == 100 && t.median > 20.0) ||
                          (s.n == 1000 && t.median > 40.0);
            }
        }
        if (first_lmc < 0) {
            printf("%-22s %-11s %5u %7s | %s\n", "libmemcached ketama", "-", s.n, "-", lmc_why);
        }

        /* Rebuild of ketama with the first hash, interleaved: libmemcached's continuum (one
         * push of every server into an empty handle) and rs_ring_build. */
        {
            int rb_runs = smoke ? 2 : (s.n >= 1000 ? 11 : 31);
            memcached_hash_t lh = MEMCACHED_HASH_DEFAULT;
            (void)lmc_hash_of(first_hash, &lh);
            double *tl = xcalloc((size_t)rb_runs, sizeof(double));
            double *tr = xcalloc((size_t)rb_runs, sizeof(double));
            double *rr = xcalloc((size_t)rb_runs, sizeof(double));
            for (int run = 0; run < rb_runs; run++) {
                if (first_lmc >= 0) {
                    memcached_st *m = lmc_new(lh);
                    double t0 = now_ns();
                    if (m == NULL || memcached_server_push(m, s.list) != MEMCACHED_SUCCESS) {
                        fprintf(stderr, "memcached_server_push failed\n");
                        return 1;
                    }
                    tl[run] = (now_ns() - t0) / 1e6;
                    memcached_free(m);
                }
                double t0 = now_ns();
                rs_ring *r = rs_build(RS_ALG_KETAMA, first_hash, &s);
                tr[run] = (now_ns() - t0) / 1e6;
                if (r == NULL) {
                    return 1;
                }
                rs_ring_unref(r);
                rr[run] = tl[run] / tr[run];
            }
            stats b = summarize(tr, rb_runs);
            if (first_lmc >= 0) {
                stats a = summarize(tl, rb_runs), q = summarize(rr, rb_runs);
                printf("%-22s %-11s %5u %7s | rebuild ms: ringside %.3f (%.3f-%.3f), "
                       "libmemcached %.3f (%.3f-%.3f): ringside %.2fx faster (%.2f-%.2f)\n",
                       "rebuild ketama", first_hash, s.n, "", b.median, b.min, b.max, a.median,
                       a.min, a.max, q.median, q.min, q.max);
            } else {
                printf("%-22s %-11s %5u %7s | rebuild ms: ringside %.3f (%.3f-%.3f), "
                       "libmemcached n/a\n",
                       "rebuild ketama", first_hash, s.n, "", b.median, b.min, b.max);
            }
            free(tl);
            free(tr);
            free(rr);
        }
        printf("\n");

        for (int i = 0; i < nc; i++) {
            rs_ring_unref(cs[i].ring);
            if (cs[i].memc != NULL) {
                memcached_free(cs[i].memc);
            }
            hand_free(cs[i].hand);
        }
        nodeset_free(&s);
    }
    printf("ns/look: median ns per lookup, key hash included. x libmemcached / x hand-written:\n"
           "median over runs of baseline ns / this ns in the same run (> 1: faster than the\n"
           "baseline). agree: keys ringside and libmemcached place on the same node.\n"
           "Goals (SPEC 11) for ringside ketama (%s): >= 5x libmemcached, <= 20 ns at 100\n"
           "nodes, <= 40 ns at 1000: %s.\n",
           first_hash, missed ? "MISSED" : "met");
    return failures ? 1 : 0;
}
