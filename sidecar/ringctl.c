/* ringctl: the operator's command line. Offline commands (simulate, place) build rings
 * in process from libringside; daemon and Consul commands arrive with those features. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rs_hash.h"
#include "rs_ring.h"

#define EXIT_USAGE 2

static const char *progname = "ringctl";

static void
usage_main(FILE *f) {
    fprintf(f, "usage: ringctl COMMAND [OPTIONS]\n"
               "\n"
               "Offline commands (no daemon, no Consul):\n"
               "  simulate   show how many keys move when nodes join or leave, per algorithm,\n"
               "             next to the modulo baseline\n"
               "  place      print the node each key on stdin goes to, for a given node set\n"
               "\n"
               "Run 'ringctl COMMAND --help' for a command's options.\n"
               "Exit codes: 0 ok, 1 failure, 2 usage error.\n");
}

static void
usage_simulate(FILE *f) {
    fprintf(f,
            "usage: ringctl simulate --nodes N [--add K | --remove K] [--keys M]\n"
            "                        [--algorithm A[,A...]] [--hash H] [--seed S] [--json]\n"
            "\n"
            "Builds a ring of N nodes (ids cache-0..cache-N-1), then one with K nodes added or\n"
            "removed, places M random 16-byte keys on both, and prints the fraction of keys\n"
            "that moved, the ideal fraction, the imbalance (max share / fair share, 1.0 is\n"
            "perfect) and the time to build the new ring, for each algorithm next to modula.\n"
            "\n"
            "  --nodes N        nodes before the change (1..%d)\n"
            "  --add K          add K nodes (default: --add 1)\n"
            "  --remove K       remove K nodes (the last K by id)\n"
            "  --keys M         keys to place (default 100000)\n"
            "  --algorithm A    comma-separated algorithms (default ketama); modula is\n"
            "                   always shown as the baseline\n"
            "  --hash H         key hash (default fnv1a_64)\n"
            "  --seed S         seed for the random keys (default 1)\n"
            "  --json           one JSON object per algorithm instead of a table\n",
            RS_NODES_MAX);
}

static void
usage_place(FILE *f) {
    fprintf(f,
            "usage: ringctl place --node SPEC [--node SPEC...] [--algorithm A] [--hash H]\n"
            "                     [--hash-tag XY] [--hex] < keys\n"
            "\n"
            "Reads one key per line on stdin and prints, per key, the address and id of the\n"
            "node that owns it: '<address> <id>'.\n"
            "\n"
            "  --node SPEC      ADDRESS[,id=ID][,weight=W][,zone=Z][,disabled]; without id,\n"
            "                   the id is the address (just the host for port 11211), as\n"
            "                   twemproxy names servers\n"
            "  --algorithm A    ketama (default) or modula\n"
            "  --hash H         one_at_a_time md5 crc16 crc32 crc32a fnv1_64 fnv1a_64 (default)\n"
            "                   fnv1_32 fnv1a_32 hsieh murmur jenkins xxh3\n"
            "  --hash-tag XY    hash only the part of the key between X and Y\n"
            "  --hex            keys on stdin are hex-encoded (for binary keys)\n");
}

static int usage_error(void (*usage)(FILE *), const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "ringctl: <message>" and the command's usage on stderr; returns EXIT_USAGE. */
static int
usage_error(void (*usage)(FILE *), const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: ", progname);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    usage(stderr);
    return EXIT_USAGE;
}

static int
parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
        return -EINVAL;
    }
    *out = (uint32_t)v;
    return 0;
}

static double
now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- simulate ---- */

typedef struct sim_result {
    rs_algorithm alg;
    double moved;       /* measured on the keys */
    double moved_space; /* of the key-hash space */
    double imbalance_before, imbalance_after;
    double build_ms;
    uint32_t wrong_moves; /* keys that moved between two nodes present in both rings */
} sim_result;

static void
make_nodes(rs_node *nodes, char (*ids)[32], char (*addrs)[32], uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof(ids[i]), "cache-%u", i);
        snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%u", 7000 + i % 50000);
        nodes[i] = (rs_node){.id = ids[i], .address = addrs[i], .weight = 1, .enabled = true};
    }
}

static uint64_t
splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int
simulate_one(rs_algorithm alg, rs_hash_kind hash, const rs_node *nodes, uint32_t before,
             uint32_t after, const char (*keys)[17], uint32_t nkeys, sim_result *res) {
    rs_ring_params p;
    rs_ring_params_init(&p);
    p.algorithm = alg;
    p.hash = hash;
    rs_ring *a = NULL, *b = NULL;
    rs_error err;
    int rc;
    /* Build time: the best of a few builds of the "after" ring (the first pays for page
     * faults and cold caches). */
    double best = INFINITY;
    for (int i = 0; i < 5; i++) {
        double t0 = now_sec();
        if ((rc = rs_ring_build(&p, nodes, after, &b, &err)) != 0) {
            fprintf(stderr, "%s: %s: %s\n", progname, rs_algorithm_name(alg), err.msg);
            return rc;
        }
        best = fmin(best, now_sec() - t0);
        rs_ring_unref(b);
        b = NULL;
    }
    if ((rc = rs_ring_build(&p, nodes, before, &a, &err)) != 0) {
        fprintf(stderr, "%s: %s: %s\n", progname, rs_algorithm_name(alg), err.msg);
        return rc;
    }
    if ((rc = rs_ring_build(&p, nodes, after, &b, &err)) != 0) {
        fprintf(stderr, "%s: %s: %s\n", progname, rs_algorithm_name(alg), err.msg);
        rs_ring_unref(a);
        return rc;
    }
    res->alg = alg;
    res->build_ms = best * 1e3;
    res->imbalance_before = rs_ring_imbalance(a);
    res->imbalance_after = rs_ring_imbalance(b);
    res->moved_space = rs_ring_moved_fraction(a, b);
    uint32_t moved = 0, wrong = 0;
    for (uint32_t k = 0; k < nkeys; k++) {
        const rs_ring_node *na = rs_ring_node_at(a, rs_ring_lookup(a, keys[k], 16));
        const rs_ring_node *nb = rs_ring_node_at(b, rs_ring_lookup(b, keys[k], 16));
        if (strcmp(na->id, nb->id) != 0) {
            moved++;
            /* Consistent hashing moves keys only onto added nodes or off removed ones. */
            if (rs_ring_find(a, nb->id) >= 0 && rs_ring_find(b, na->id) >= 0) {
                wrong++;
            }
        }
    }
    res->moved = (double)moved / nkeys;
    res->wrong_moves = wrong;
    rs_ring_unref(a);
    rs_ring_unref(b);
    return 0;
}

static int
cmd_simulate(int argc, char **argv) {
    static const struct option opts[] = {
        {"nodes", required_argument, NULL, 'n'},
        {"add", required_argument, NULL, 'a'},
        {"remove", required_argument, NULL, 'r'},
        {"keys", required_argument, NULL, 'k'},
        {"algorithm", required_argument, NULL, 'A'},
        {"hash", required_argument, NULL, 'H'},
        {"seed", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    uint32_t nodes = 0, add = 0, remove = 0, nkeys = 100000, seed = 1;
    bool have_add = false, have_remove = false, json = false;
    const char *algs = "ketama";
    rs_hash_kind hash = RS_HASH_FNV1A_64;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (parse_u32(optarg, 1, RS_NODES_MAX, &nodes) != 0) {
                return usage_error(usage_simulate, "--nodes: expected 1..10000, got '%s'", optarg);
            }
            break;
        case 'a':
            if (parse_u32(optarg, 1, RS_NODES_MAX, &add) != 0) {
                return usage_error(usage_simulate, "--add: expected a positive count, got '%s'",
                                   optarg);
            }
            have_add = true;
            break;
        case 'r':
            if (parse_u32(optarg, 1, RS_NODES_MAX, &remove) != 0) {
                return usage_error(usage_simulate, "--remove: expected a positive count, got '%s'",
                                   optarg);
            }
            have_remove = true;
            break;
        case 'k':
            if (parse_u32(optarg, 1, 100000000, &nkeys) != 0) {
                return usage_error(usage_simulate, "--keys: expected 1..100000000, got '%s'",
                                   optarg);
            }
            break;
        case 'A':
            algs = optarg;
            break;
        case 'H':
            if (rs_hash_from_name(optarg, &hash) != 0) {
                return usage_error(usage_simulate, "--hash: unknown hash '%s'", optarg);
            }
            break;
        case 's':
            if (parse_u32(optarg, 0, UINT32_MAX, &seed) != 0) {
                return usage_error(usage_simulate, "--seed: expected a number, got '%s'", optarg);
            }
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            usage_simulate(stdout);
            return 0;
        default:
            usage_simulate(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        return usage_error(usage_simulate, "unexpected argument '%s'", argv[optind]);
    }
    if (nodes == 0) {
        return usage_error(usage_simulate, "%s", "--nodes is required");
    }
    if (have_add && have_remove) {
        return usage_error(usage_simulate, "%s", "--add and --remove exclude each other");
    }
    if (!have_add && !have_remove) {
        add = 1;
    }
    if (remove >= nodes) {
        return usage_error(usage_simulate, "%s", "--remove must leave at least one node");
    }
    if ((uint64_t)nodes + add > RS_NODES_MAX) {
        return usage_error(usage_simulate, "%s", "too many nodes after --add (max 10000)");
    }

    rs_algorithm list[RS_ALG_COUNT + 1];
    size_t nalg = 0;
    list[nalg++] = RS_ALG_MODULA;
    char *copy = strdup(algs);
    if (copy == NULL) {
        return 1;
    }
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        rs_algorithm alg;
        if (rs_algorithm_from_name(tok, &alg) != 0) {
            int rc = usage_error(usage_simulate, "--algorithm: unknown algorithm '%s'", tok);
            free(copy);
            return rc;
        }
        bool dup = false;
        for (size_t i = 0; i < nalg; i++) {
            dup |= list[i] == alg;
        }
        if (!dup && nalg < RS_ALG_COUNT) {
            list[nalg++] = alg;
        }
    }
    free(copy);

    uint32_t total = nodes + add;
    uint32_t before = nodes, after = have_remove ? nodes - remove : nodes + add;
    rs_node *nv = calloc(total, sizeof(*nv));
    char(*ids)[32] = calloc(total, sizeof(*ids));
    char(*addrs)[32] = calloc(total, sizeof(*addrs));
    char(*keys)[17] = calloc(nkeys, sizeof(*keys));
    sim_result *res = calloc(nalg, sizeof(*res));
    int rc = 1;
    if (nv == NULL || ids == NULL || addrs == NULL || keys == NULL || res == NULL) {
        fprintf(stderr, "%s: out of memory\n", progname);
        goto out;
    }
    make_nodes(nv, ids, addrs, total);
    uint64_t state = seed;
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyz0123456789:_-ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (uint32_t k = 0; k < nkeys; k++) {
        for (int j = 0; j < 16; j++) {
            keys[k][j] = alphabet[splitmix(&state) % (sizeof(alphabet) - 1)];
        }
    }
    for (size_t i = 0; i < nalg; i++) {
        if (simulate_one(list[i], hash, nv, before, after, (const char(*)[17])keys, nkeys,
                         &res[i]) != 0) {
            goto out;
        }
    }
    double ideal = have_remove ? (double)remove / before : (double)add / after;
    if (json) {
        for (size_t i = 0; i < nalg; i++) {
            printf("{\"algorithm\":\"%s\",\"hash\":\"%s\",\"nodes_before\":%u,\"nodes_after\":%u,"
                   "\"keys\":%u,\"moved\":%.6f,\"moved_keyspace\":%.6f,\"ideal\":%.6f,"
                   "\"moved_between_unchanged_nodes\":%u,\"imbalance_before\":%.4f,"
                   "\"imbalance_after\":%.4f,\"build_ms\":%.3f}\n",
                   rs_algorithm_name(res[i].alg), rs_hash_name(hash), before, after, nkeys,
                   res[i].moved, res[i].moved_space, ideal, res[i].wrong_moves,
                   res[i].imbalance_before, res[i].imbalance_after, res[i].build_ms);
        }
    } else {
        printf("%u -> %u nodes (%s %u), %u keys, hash %s; ideal movement %.2f%%\n\n", before, after,
               have_remove ? "remove" : "add", have_remove ? remove : add, nkeys,
               rs_hash_name(hash), ideal * 100);
        printf("%-12s %9s %10s %12s %12s %12s %10s\n", "algorithm", "moved", "x ideal", "keyspace",
               "imbal.before", "imbal.after", "build ms");
        for (size_t i = 0; i < nalg; i++) {
            printf("%-12s %8.2f%% %10.2f %11.2f%% %12.3f %12.3f %10.3f\n",
                   rs_algorithm_name(res[i].alg), res[i].moved * 100, res[i].moved / ideal,
                   res[i].moved_space * 100, res[i].imbalance_before, res[i].imbalance_after,
                   res[i].build_ms);
        }
        printf("\nmoved: share of the keys whose node changed; keyspace: the same, computed "
               "over the\nwhole hash space; imbalance: largest share / fair share (1.000 is "
               "perfect).\n");
    }
    rc = 0;
out:
    free(nv);
    free(ids);
    free(addrs);
    free(keys);
    free(res);
    return rc;
}

/* ---- place ---- */

#define PLACE_MAX_NODES 1024

typedef struct node_spec {
    char *buf; /* owns the strings below */
    char id[RS_ID_MAX + 1];
} node_spec;

/* ADDRESS[,id=ID][,weight=W][,zone=Z][,disabled] */
static int
parse_node_spec(const char *spec, rs_node *n, node_spec *owned, char *why, size_t cap) {
    owned->buf = strdup(spec);
    if (owned->buf == NULL) {
        snprintf(why, cap, "out of memory");
        return -ENOMEM;
    }
    *n = (rs_node){.weight = 1, .enabled = true};
    char *save = NULL;
    char *tok = strtok_r(owned->buf, ",", &save);
    if (tok == NULL) {
        snprintf(why, cap, "empty node spec");
        return -EINVAL;
    }
    n->address = tok;
    while ((tok = strtok_r(NULL, ",", &save)) != NULL) {
        if (strncmp(tok, "id=", 3) == 0) {
            n->id = tok + 3;
        } else if (strncmp(tok, "zone=", 5) == 0) {
            n->zone = tok + 5;
        } else if (strncmp(tok, "weight=", 7) == 0) {
            if (parse_u32(tok + 7, 1, RS_WEIGHT_MAX, &n->weight) != 0) {
                snprintf(why, cap, "weight must be between 1 and %d, got '%s'", RS_WEIGHT_MAX,
                         tok + 7);
                return -EINVAL;
            }
        } else if (strcmp(tok, "disabled") == 0) {
            n->enabled = false;
        } else {
            snprintf(why, cap, "unknown field '%s' (expected id=, weight=, zone=, disabled)", tok);
            return -EINVAL;
        }
    }
    if (n->id == NULL) {
        int rc = rs_node_default_id(n->address, owned->id, sizeof(owned->id));
        if (rc != 0) {
            snprintf(why, cap, "address '%s' is not host:port", n->address);
            return rc;
        }
        n->id = owned->id;
    }
    return 0;
}

static int
hexval(int c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static int
cmd_place(int argc, char **argv) {
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'N'},
        {"algorithm", required_argument, NULL, 'A'},
        {"hash", required_argument, NULL, 'H'},
        {"hash-tag", required_argument, NULL, 'T'},
        {"hex", no_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    rs_ring_params p;
    rs_ring_params_init(&p);
    rs_node nodes[PLACE_MAX_NODES];
    node_spec owned[PLACE_MAX_NODES];
    size_t n = 0;
    bool hex = false;
    int rc = EXIT_USAGE, c;
    rs_ring *ring = NULL;
    char *line = NULL;
    char *key = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'N': {
            char why[256];
            if (n == PLACE_MAX_NODES) {
                rc = usage_error(usage_place, "%s", "too many --node options");
                goto out;
            }
            if (parse_node_spec(optarg, &nodes[n], &owned[n], why, sizeof(why)) != 0) {
                n++;
                fprintf(stderr, "%s: --node '%s': %s\n", progname, optarg, why);
                goto out;
            }
            n++;
            break;
        }
        case 'A':
            if (rs_algorithm_from_name(optarg, &p.algorithm) != 0) {
                rc = usage_error(usage_place, "--algorithm: unknown algorithm '%s'", optarg);
                goto out;
            }
            break;
        case 'H':
            if (rs_hash_from_name(optarg, &p.hash) != 0) {
                rc = usage_error(usage_place, "--hash: unknown hash '%s'", optarg);
                goto out;
            }
            break;
        case 'T':
            if (strlen(optarg) != 2) {
                rc = usage_error(usage_place, "--hash-tag: expected two characters, got '%s'",
                                 optarg);
                goto out;
            }
            memcpy(p.hash_tag, optarg, 3);
            break;
        case 'x':
            hex = true;
            break;
        case 'h':
            usage_place(stdout);
            rc = 0;
            goto out;
        default:
            usage_place(stderr);
            goto out;
        }
    }
    if (optind < argc) {
        rc = usage_error(usage_place, "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (n == 0) {
        rc = usage_error(usage_place, "%s", "at least one --node is required");
        goto out;
    }
    rs_error err;
    if (rs_ring_build(&p, nodes, n, &ring, &err) != 0) {
        fprintf(stderr, "%s: %s\n", progname, err.msg);
        rc = 1;
        goto out;
    }
    size_t cap = 0;
    ssize_t len;
    unsigned long lineno = 0;
    rc = 0;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        if (len > 0 && line[len - 1] == '\n') {
            line[--len] = '\0';
        }
        const char *k = line;
        size_t klen = (size_t)len;
        if (hex) {
            if (len % 2 != 0) {
                fprintf(stderr, "%s: line %lu: odd number of hex digits\n", progname, lineno);
                rc = 1;
                break;
            }
            char *tmp = realloc(key, (size_t)len / 2 + 1);
            if (tmp == NULL) {
                rc = 1;
                break;
            }
            key = tmp;
            for (ssize_t i = 0; i < len; i += 2) {
                int hi = hexval(line[i]), lo = hexval(line[i + 1]);
                if (hi < 0 || lo < 0) {
                    fprintf(stderr, "%s: line %lu: not hex\n", progname, lineno);
                    rc = 1;
                    goto out;
                }
                key[i / 2] = (char)(hi << 4 | lo);
            }
            k = key;
            klen = (size_t)len / 2;
        }
        const rs_ring_node *node = rs_ring_node_at(ring, rs_ring_lookup(ring, k, klen));
        printf("%s %s\n", node->address, node->id);
    }
out:
    for (size_t i = 0; i < n; i++) {
        free(owned[i].buf);
    }
    free(line);
    free(key);
    rs_ring_unref(ring);
    return rc;
}

int
main(int argc, char **argv) {
    if (argc < 2) {
        usage_main(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage_main(stdout);
        return 0;
    }
    if (strcmp(cmd, "simulate") == 0) {
        return cmd_simulate(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "place") == 0) {
        return cmd_place(argc - 1, argv + 1);
    }
    fprintf(stderr, "%s: unknown command '%s'\n", progname, cmd);
    usage_main(stderr);
    return EXIT_USAGE;
}
