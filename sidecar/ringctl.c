/* ringctl: the operator's command line. Offline commands (simulate, place, check-config)
 * use libringside in process; daemon commands talk RESP to ringside's socket via hiredis;
 * Consul commands (node ..., ring set|show|confirm) edit the ring's KV prefix with
 * check-and-set writes, validated by the sidecars' own parser first. */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "consul_cli.h"
#include "rs_config.h"
#include "rs_hash.h"
#include "rs_membership.h"
#include "rs_ring.h"

#ifndef RINGSIDE_VERSION
#define RINGSIDE_VERSION "unknown"
#endif

#define EXIT_USAGE 2
#define DEFAULT_SOCKET "/run/ringside/ringside.sock"

static const char *progname = "ringctl";

static void
usage_main(FILE *f) {
    fprintf(f, "usage: ringctl [--socket PATH] COMMAND [OPTIONS] [ARGS]\n"
               "\n"
               "Daemon commands (ask ringside over its Unix socket):\n"
               "  lookup KEY...  print the address each key goes to\n"
               "  route KEY      show how a key is routed: hash, answer, candidates and health\n"
               "  ring           print the ring summary (epoch, fingerprint, parameters, counts)\n"
               "  nodes          print the nodes with weight, zone, health and share\n"
               "  watch          print a line each time the ring changes\n"
               "  ping           check that the daemon answers\n"
               "  dump           print the ring's parameters, nodes and health as JSON\n"
               "\n"
               "Consul commands (edit the ring's KV prefix; every sidecar follows):\n"
               "  node add ID ADDRESS [--weight W] [--zone Z] [--disabled]\n"
               "  node remove ID\n"
               "  node disable ID | node enable ID\n"
               "  node set ID [--weight W] [--zone Z] [--address A]\n"
               "  ring set [--algorithm A] [--hash H] [--replicas N] [--hash-tag XY]\n"
               "           [--force true|false] [--max-removal-fraction F]\n"
               "  ring show      the prefix as the sidecars see it, and its ring's fingerprint\n"
               "  ring confirm   apply an update held by the mass-removal guard, fleet-wide\n"
               "                 (they take --consul URL, --prefix P | --ring NAME,\n"
               "                 --token-file F, --ca-file F, --json)\n"
               "\n"
               "Offline commands (no daemon, no Consul):\n"
               "  simulate       show how many keys move when nodes join or leave, per\n"
               "                 algorithm, next to the modulo baseline\n"
               "  place          print the node each key on stdin goes to, for a given node set\n"
               "  check-config   validate config files without starting anything\n"
               "\n"
               "  --socket PATH  the daemon's socket, before or after the command (default\n"
               "                 $RINGSIDE_SOCKET, else " DEFAULT_SOCKET ")\n"
               "  --version      print the version\n"
               "\n"
               "Run 'ringctl COMMAND --help' (or 'ringctl node add --help', ...) for a command's\n"
               "options; lookup, route, ring, nodes, watch and the Consul commands take --json.\n"
               "Exit codes: 0 ok, 1 failure, 2 usage error.\n");
}

static void
usage_simulate(FILE *f) {
    fprintf(f,
            "usage: ringctl simulate --nodes N [--add K | --remove K] [--keys M]\n"
            "                        [--algorithm A[,A...] | --algorithm all] [--hash H]\n"
            "                        [--table-size M] [--points-per-weight P] [--vnodes V]\n"
            "                        [--replica-factor R] [--seed S] [--json]\n"
            "\n"
            "Builds a ring of N nodes (ids cache-0..cache-N-1), then one with K nodes added or\n"
            "removed, places M random 16-byte keys on both, and prints side by side, for each\n"
            "algorithm next to modula: the fraction of keys that moved (on the keys, and over\n"
            "the whole hash space), the ideal fraction, the keys that moved between nodes\n"
            "present in both rings (0 for consistent hashing), the imbalance (max share / fair\n"
            "share, 1.0 is perfect) and the time to build the new ring.\n"
            "\n"
            "  --nodes N        nodes before the change (1..%d)\n"
            "  --add K          add K nodes (default: --add 1)\n"
            "  --remove K       remove K nodes (the last K by id)\n"
            "  --keys M         keys to place (default 100000)\n"
            "  --algorithm A    comma-separated algorithms, or all (default ketama): ketama\n"
            "                   modula maglev rendezvous ketama_xxh3 hash_ring vnode_sha256;\n"
            "                   modula is always shown as the baseline\n"
            "  --hash H         key hash of the algorithms that take one (default fnv1a_64);\n"
            "                   hash_ring, vnode_sha256 and ketama_xxh3 have their own\n"
            "  --table-size M   maglev table size, a prime (default 65537)\n"
            "  --points-per-weight P  ketama_xxh3 points per unit of weight (default 160)\n"
            "  --vnodes V       vnode_sha256 virtual nodes per node (default 150)\n"
            "  --replica-factor R  vnode_sha256 points per virtual node (default 2)\n"
            "  --seed S         seed for the random keys (default 1)\n"
            "  --json           one JSON object per algorithm instead of a table\n",
            RS_NODES_MAX);
}

static void
usage_place(FILE *f) {
    fprintf(f,
            "usage: ringctl place --node SPEC [--node SPEC...] [--algorithm A] [--hash H]\n"
            "                     [--hash-tag XY] [--replicas N] [--zone-aware]\n"
            "                     [--table-size M] [--points-per-weight P] [--vnodes V]\n"
            "                     [--replica-factor R] [--hex] < keys\n"
            "\n"
            "Reads one key per line on stdin and prints, per key, the address and id of the\n"
            "node that owns it: '<address> <id>'. With --replicas N, the line holds up to N\n"
            "distinct nodes in replica order, primary first: '<address> <id> <address> <id>...'.\n"
            "\n"
            "  --node SPEC      ADDRESS[,id=ID][,weight=W][,zone=Z][,disabled]; without id,\n"
            "                   the id is the address (just the host for port 11211), as\n"
            "                   twemproxy names servers\n"
            "  --algorithm A    ketama (default), modula, maglev, rendezvous, ketama_xxh3,\n"
            "                   hash_ring or vnode_sha256\n"
            "  --replicas N     print N nodes per key (1..%d, default 1)\n"
            "  --zone-aware     replicas prefer zones not used yet (zone_aware_replicas)\n"
            "  --table-size M   maglev table size, a prime (default 65537)\n"
            "  --points-per-weight P  ketama_xxh3 points per unit of weight (default 160)\n"
            "  --vnodes V       vnode_sha256 virtual nodes per node (default 150)\n"
            "  --replica-factor R  vnode_sha256 points per virtual node (default 2)\n"
            "  --hash H         one_at_a_time md5 crc16 crc32 crc32a fnv1_64 fnv1a_64 (default)\n"
            "                   fnv1_32 fnv1a_32 hsieh murmur jenkins xxh3\n"
            "  --hash-tag XY    hash only the part of the key between X and Y\n"
            "  --hex            keys on stdin are hex-encoded (for binary keys)\n",
            RS_REPLICAS_MAX);
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

/* --table-size, --points-per-weight, --vnodes, --replica-factor (option letters M P V R)
 * into p. Returns 0, or -EINVAL with why filled. */
static int
parse_alg_param(int opt, const char *arg, rs_ring_params *p, char *why, size_t cap) {
    uint32_t v;
    switch (opt) {
    case 'M':
        if (parse_u32(arg, RS_TABLE_SIZE_MIN, RS_TABLE_SIZE_MAX, &v) != 0) {
            snprintf(why, cap, "--table-size: expected a prime between %u and %u, got '%s'",
                     RS_TABLE_SIZE_MIN, RS_TABLE_SIZE_MAX, arg);
            return -EINVAL;
        }
        p->table_size = v;
        return 0;
    case 'P':
        if (parse_u32(arg, 1, RS_POINTS_PER_WEIGHT_MAX, &v) != 0) {
            snprintf(why, cap, "--points-per-weight: expected 1..%u, got '%s'",
                     RS_POINTS_PER_WEIGHT_MAX, arg);
            return -EINVAL;
        }
        p->points_per_weight = v;
        return 0;
    case 'V':
        if (parse_u32(arg, 1, RS_VNODES_MAX, &v) != 0) {
            snprintf(why, cap, "--vnodes: expected 1..%u, got '%s'", RS_VNODES_MAX, arg);
            return -EINVAL;
        }
        p->vnodes = v;
        return 0;
    default:
        if (parse_u32(arg, 1, RS_REPLICA_FACTOR_MAX, &v) != 0) {
            snprintf(why, cap, "--replica-factor: expected 1..%u, got '%s'", RS_REPLICA_FACTOR_MAX,
                     arg);
            return -EINVAL;
        }
        p->replica_factor = v;
        return 0;
    }
}

/* ---- simulate ---- */

typedef struct sim_result {
    rs_algorithm alg;
    const char *key_hash;
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
simulate_one(rs_algorithm alg, const rs_ring_params *base, const rs_node *nodes, uint32_t before,
             uint32_t after, const char (*keys)[17], uint32_t nkeys, sim_result *res) {
    rs_ring_params p = *base;
    p.algorithm = alg;
    if (rs_algorithm_own_hash(alg) != NULL) {
        p.hash = RS_HASH_FNV1A_64; /* "unset": the algorithm hashes keys its own way */
    }
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
    res->key_hash = rs_ring_key_hash_name(b);
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
        {"table-size", required_argument, NULL, 'M'},
        {"points-per-weight", required_argument, NULL, 'P'},
        {"vnodes", required_argument, NULL, 'V'},
        {"replica-factor", required_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    rs_ring_params base;
    rs_ring_params_init(&base);
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
        case 'M':
        case 'P':
        case 'V':
        case 'R': {
            char why[160];
            if (parse_alg_param(c, optarg, &base, why, sizeof(why)) != 0) {
                return usage_error(usage_simulate, "%s", why);
            }
            break;
        }
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
    base.hash = hash;
    rs_error perr;
    if (rs_ring_params_validate(&base, &perr) != 0) {
        return usage_error(usage_simulate, "%s", perr.msg);
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
        if (strcmp(tok, "all") == 0) {
            for (int a = 0; a < RS_ALG_COUNT; a++) {
                bool dup = false;
                for (size_t i = 0; i < nalg; i++) {
                    dup |= list[i] == (rs_algorithm)a;
                }
                if (!dup) {
                    list[nalg++] = (rs_algorithm)a;
                }
            }
            continue;
        }
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
        if (simulate_one(list[i], &base, nv, before, after, (const char(*)[17])keys, nkeys,
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
                   rs_algorithm_name(res[i].alg), res[i].key_hash, before, after, nkeys,
                   res[i].moved, res[i].moved_space, ideal, res[i].wrong_moves,
                   res[i].imbalance_before, res[i].imbalance_after, res[i].build_ms);
        }
    } else {
        printf("%u -> %u nodes (%s %u), %u keys; ideal movement %.2f%%\n\n", before, after,
               have_remove ? "remove" : "add", have_remove ? remove : add, nkeys, ideal * 100);
        printf("%-12s %-11s %8s %7s %9s %7s %12s %11s %9s\n", "algorithm", "key hash", "moved",
               "x ideal", "keyspace", "stray", "imbal.before", "imbal.after", "build ms");
        for (size_t i = 0; i < nalg; i++) {
            printf("%-12s %-11s %7.2f%% %7.2f %8.2f%% %7u %12.4f %11.4f %9.3f\n",
                   rs_algorithm_name(res[i].alg), res[i].key_hash, res[i].moved * 100,
                   res[i].moved / ideal, res[i].moved_space * 100, res[i].wrong_moves,
                   res[i].imbalance_before, res[i].imbalance_after, res[i].build_ms);
        }
        printf("\nmoved: share of the keys whose node changed; keyspace: the same over the whole "
               "hash\nspace (exact, or sampled; rendezvous: expected); stray: keys that moved "
               "between\ntwo nodes present in both rings; imbalance: largest share / fair share "
               "(1.0000\nis perfect; rendezvous: expected); build ms: best of 5 builds of the new "
               "ring.\n");
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
cmd_place(int argc, char **argv) {
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'N'},
        {"algorithm", required_argument, NULL, 'A'},
        {"hash", required_argument, NULL, 'H'},
        {"hash-tag", required_argument, NULL, 'T'},
        {"hex", no_argument, NULL, 'x'},
        {"replicas", required_argument, NULL, 'r'},
        {"zone-aware", no_argument, NULL, 'z'},
        {"table-size", required_argument, NULL, 'M'},
        {"points-per-weight", required_argument, NULL, 'P'},
        {"vnodes", required_argument, NULL, 'V'},
        {"replica-factor", required_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    rs_ring_params p;
    rs_ring_params_init(&p);
    uint32_t replicas = 1;
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
        case 'r':
            if (parse_u32(optarg, 1, RS_REPLICAS_MAX, &replicas) != 0) {
                rc = usage_error(usage_place, "--replicas: expected 1..%d, got '%s'",
                                 RS_REPLICAS_MAX, optarg);
                goto out;
            }
            break;
        case 'z':
            p.zone_aware_replicas = true;
            break;
        case 'M':
        case 'P':
        case 'V':
        case 'R': {
            char why[160];
            if (parse_alg_param(c, optarg, &p, why, sizeof(why)) != 0) {
                rc = usage_error(usage_place, "%s", why);
                goto out;
            }
            break;
        }
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
    p.replicas = replicas > p.replicas ? replicas : p.replicas;
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
            if (rs_hex_decode(line, (size_t)len, key) < 0) {
                fprintf(stderr, "%s: line %lu: not hex\n", progname, lineno);
                rc = 1;
                goto out;
            }
            k = key;
            klen = (size_t)len / 2;
        }
        if (replicas == 1) {
            const rs_ring_node *node = rs_ring_node_at(ring, rs_ring_lookup(ring, k, klen));
            printf("%s %s\n", node->address, node->id);
            continue;
        }
        uint32_t cand[RS_REPLICAS_MAX];
        size_t got =
            rs_ring_candidates(ring, rs_ring_hash_key(ring, k, klen), NULL, cand, replicas);
        for (size_t i = 0; i < got; i++) {
            const rs_ring_node *node = rs_ring_node_at(ring, cand[i]);
            printf("%s%s %s", i > 0 ? " " : "", node->address, node->id);
        }
        printf("\n");
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

/* ---- talking to the daemon ---- */

#define CONNECT_TIMEOUT_S 2
#define JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(10))

/* --socket PATH, else $RINGSIDE_SOCKET, else the default. */
static const char *
default_socket(void) {
    const char *env = getenv("RINGSIDE_SOCKET");
    return env != NULL && env[0] != '\0' ? env : DEFAULT_SOCKET;
}

/* Connects to the daemon's socket with a CONNECT_TIMEOUT_S timeout (which also bounds
 * every reply). Prints why on failure and returns NULL. */
static redisContext *
ctl_connect(const char *path) {
    struct sockaddr_un sa;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "%s: socket path too long (max %zu bytes): %s\n", progname,
                sizeof(sa.sun_path) - 1, path);
        return NULL;
    }
    struct timeval tv = {.tv_sec = CONNECT_TIMEOUT_S};
    errno = 0;
    redisContext *c = redisConnectUnixWithTimeout(path, tv);
    int saved = errno;
    if (c == NULL) {
        fprintf(stderr, "%s: cannot connect to %s: out of memory\n", progname, path);
        return NULL;
    }
    if (c->err != 0) {
        fprintf(stderr, "%s: cannot connect to %s: %s %s\n", progname, path, c->errstr,
                saved == EACCES ? "(check the socket's owner, group and mode)"
                                : "(is ringside running? use --socket PATH or RINGSIDE_SOCKET)");
        redisFree(c);
        return NULL;
    }
    /* Some hiredis versions bound only connect() for Unix sockets: bound replies too. */
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        fprintf(stderr, "%s: %s: %s\n", progname, path, c->errstr);
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Reports a failed exchange: an I/O error, a timeout or the daemon hanging up. */
static void
io_error(const redisContext *c, const char *path, int saved_errno) {
#ifdef REDIS_ERR_TIMEOUT
    bool timeout = c->err == REDIS_ERR_TIMEOUT;
#else
    bool timeout = false;
#endif
    timeout |= c->err == REDIS_ERR_IO && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK);
    if (timeout) {
        fprintf(stderr, "%s: %s: no reply from ringside within %ds\n", progname, path,
                CONNECT_TIMEOUT_S);
    } else {
        fprintf(stderr, "%s: %s: %s\n", progname, path, c->errstr);
    }
}

/* Sends argv (binary-safe: lengths from lens, or strlen when lens is NULL) and returns
 * the reply for the caller to free. Returns NULL, having printed why, on an I/O error or
 * an error reply (printed as is: "ringctl: NORING no usable nodes"). */
static redisReply *
ctl_call(redisContext *c, const char *path, int argc, const char **argv, const size_t *lens) {
    errno = 0;
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    if (r == NULL) {
        io_error(c, path, errno);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "%s: %.*s\n", progname, (int)r->len, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static int shape_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "ringctl: unexpected reply to CMD: <why>"; returns 1. */
static int
shape_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: unexpected reply to %s: ", progname, cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (is the daemon the same version as ringctl?)\n");
    return 1;
}

static bool
reply_is_str(const redisReply *r) {
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

static bool
reply_str_eq(const redisReply *r, const char *s) {
    return reply_is_str(r) && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* A flat field/value array: an array of even length whose fields are strings. */
static bool
pairs_ok(const redisReply *a) {
    if (a->type != REDIS_REPLY_ARRAY || a->elements % 2 != 0) {
        return false;
    }
    for (size_t i = 0; i < a->elements; i += 2) {
        if (!reply_is_str(a->element[i])) {
            return false;
        }
    }
    return true;
}

/* The value of field name in a flat field/value array that passed pairs_ok, or NULL. */
static const redisReply *
pairs_get(const redisReply *a, const char *name) {
    for (size_t i = 0; i + 1 < a->elements; i += 2) {
        if (reply_str_eq(a->element[i], name)) {
            return a->element[i + 1];
        }
    }
    return NULL;
}

/* A string field as a NUL-terminated string (hiredis terminates them), or NULL when the
 * field is missing or not a string. */
static const char *
pairs_str(const redisReply *a, const char *name) {
    const redisReply *v = pairs_get(a, name);
    return v != NULL && reply_is_str(v) ? v->str : NULL;
}

static bool
pairs_int(const redisReply *a, const char *name, long long *out) {
    const redisReply *v = pairs_get(a, name);
    if (v == NULL || v->type != REDIS_REPLY_INTEGER) {
        return false;
    }
    *out = v->integer;
    return true;
}

static bool
parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v)) {
        return false;
    }
    *out = v;
    return true;
}

/* A JSON string; bytes that are not valid UTF-8 (which JSON cannot carry) become '?'. */
static json_t *
jstr(const char *s, size_t len) {
    json_t *j = json_stringn(s, len);
    if (j != NULL) {
        return j;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        copy[i] = s[i];
        if ((unsigned char)s[i] >= 0x80 || s[i] == '\0') {
            copy[i] = '?';
        }
    }
    j = json_stringn(copy, len);
    free(copy);
    return j;
}

/* A key for JSON output: {"key": "..."} when it is valid UTF-8, else {"key_hex": "..."}. */
static int
json_set_key(json_t *obj, const char *key, size_t len) {
    json_t *j = json_stringn(key, len);
    if (j != NULL) {
        return json_object_set_new(obj, "key", j);
    }
    char *hex = malloc(len * 2 + 1);
    if (hex == NULL) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)key[i]);
    }
    int rc = json_object_set_new(obj, "key_hex", json_string(hex));
    free(hex);
    return rc;
}

/* Fields whose numbers RESP2 can only carry as strings; JSON output turns them into
 * numbers. */
static bool
is_decimal_field(const redisReply *name) {
    return reply_str_eq(name, "share") || reply_str_eq(name, "imbalance");
}

/* A flat field/value array (passed pairs_ok) as a JSON object, fields in reply order:
 * integers as numbers, strings as strings (decimal fields as numbers), nil as null. */
static json_t *
pairs_to_json(const redisReply *a) {
    json_t *obj = json_object();
    if (obj == NULL) {
        return NULL;
    }
    for (size_t i = 0; i + 1 < a->elements; i += 2) {
        const redisReply *k = a->element[i], *v = a->element[i + 1];
        json_t *jv = NULL;
        double d;
        if (v->type == REDIS_REPLY_INTEGER) {
            jv = json_integer(v->integer);
        } else if (reply_is_str(v) && is_decimal_field(k) && parse_double(v->str, &d)) {
            jv = json_real(d);
        } else if (reply_is_str(v)) {
            jv = jstr(v->str, v->len);
        } else {
            jv = json_null();
        }
        /* Field names are ASCII in practice; a name JSON cannot carry is dropped. */
        char *name = strndup(k->str, k->len);
        if (name == NULL || json_object_set_new(obj, name, jv) != 0) {
            free(name);
            json_decref(obj);
            return NULL;
        }
        free(name);
    }
    return obj;
}

/* Prints doc on stdout, one line, and consumes it. Returns 0 or 1. */
static int
print_json(json_t *doc) {
    int rc = doc != NULL && json_dumpf(doc, stdout, JSON_FLAGS) == 0 ? 0 : 1;
    json_decref(doc);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot format JSON output\n", progname);
        return 1;
    }
    putchar('\n');
    return 0;
}

/* ---- tables ---- */

#define TABLE_MAX_COLS 8

/* Rows of strings printed with aligned columns. Cells are copied. */
typedef struct table {
    size_t ncols, nrows, cap;
    char **cells;
    size_t width[TABLE_MAX_COLS];
    bool right[TABLE_MAX_COLS]; /* right-aligned (numbers) */
} table;

static void
table_init(table *t, size_t ncols) {
    assert(ncols <= TABLE_MAX_COLS);
    *t = (table){.ncols = ncols};
}

static void
table_free(table *t) {
    for (size_t i = 0; i < t->nrows * t->ncols; i++) {
        free(t->cells[i]);
    }
    free(t->cells);
    t->cells = NULL;
    t->nrows = 0;
}

/* Appends a row of ncols strings. Returns 0 or -ENOMEM. */
static int
table_add(table *t, const char *const *row) {
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **cells = realloc(t->cells, cap * t->ncols * sizeof(*cells));
        if (cells == NULL) {
            return -ENOMEM;
        }
        t->cells = cells;
        t->cap = cap;
    }
    char **dst = t->cells + t->nrows * t->ncols;
    for (size_t i = 0; i < t->ncols; i++) {
        dst[i] = strdup(row[i]);
        if (dst[i] == NULL) {
            for (size_t j = 0; j < i; j++) {
                free(dst[j]);
            }
            return -ENOMEM;
        }
        size_t w = strlen(row[i]);
        t->width[i] = w > t->width[i] ? w : t->width[i];
    }
    t->nrows++;
    return 0;
}

static void
table_print(const table *t, const char *indent) {
    for (size_t r = 0; r < t->nrows; r++) {
        fputs(indent, stdout);
        for (size_t i = 0; i < t->ncols; i++) {
            const char *cell = t->cells[r * t->ncols + i];
            bool last = i + 1 == t->ncols;
            if (t->right[i]) {
                printf("%*s", (int)t->width[i], cell);
            } else {
                printf("%-*s", last ? 0 : (int)t->width[i], cell);
            }
            fputs(last ? "\n" : "  ", stdout);
        }
    }
}

/* ---- usage of the daemon commands ---- */

static void
usage_lookup(FILE *f) {
    fprintf(f,
            "usage: ringctl lookup [--socket PATH] [--json] [--hex] KEY...\n"
            "\n"
            "Prints the address of the node each key goes to, one line per key, in order\n"
            "(LOOKUP for one key, MLOOKUP for several).\n"
            "\n"
            "  --socket PATH    the daemon's socket (default $RINGSIDE_SOCKET, else\n"
            "                   " DEFAULT_SOCKET ")\n"
            "  --json           [{\"key\":KEY,\"address\":ADDRESS},...] (address null when\n"
            "                   no node is usable; \"key_hex\" instead of \"key\" for keys that\n"
            "                   are not UTF-8)\n"
            "  --hex            keys are hex-encoded (for binary keys)\n");
}

static void
usage_route(FILE *f) {
    fprintf(f,
            "usage: ringctl route [--socket PATH] [--json] [--hex] KEY\n"
            "\n"
            "Shows how the daemon routes a key (ROUTE): ring epoch, key hash (hash tag\n"
            "applied), the answer LOOKUP gives, and the candidate nodes in ring order with\n"
            "their health and whether the health policy uses or skips them.\n"
            "\n"
            "  --socket PATH    the daemon's socket (default $RINGSIDE_SOCKET, else\n"
            "                   " DEFAULT_SOCKET ")\n"
            "  --json           {\"key\",\"epoch\",\"hash\",\"answer\",\"candidates\":[{\"id\",\n"
            "                   \"address\",\"zone\",\"health\",\"used\"},...]}\n"
            "  --hex            the key is hex-encoded (for binary keys)\n");
}

static void
usage_ring(FILE *f) {
    fprintf(f,
            "usage: ringctl ring [--socket PATH] [--json]\n"
            "       ringctl ring set|show|confirm ...   (Consul: see 'ringctl ring show --help')\n"
            "\n"
            "Prints the daemon's ring summary (RING) as 'field: value' lines: name, epoch,\n"
            "fingerprint, algorithm, hash, replicas, node counts, points, imbalance, panic,\n"
            "source, Consul index, last change.\n"
            "\n"
            "  --socket PATH    the daemon's socket (default $RINGSIDE_SOCKET, else\n"
            "                   " DEFAULT_SOCKET ")\n"
            "  --json           one JSON object with the same fields\n");
}

static void
usage_nodes(FILE *f) {
    fprintf(f, "usage: ringctl nodes [--socket PATH] [--json]\n"
               "\n"
               "Prints the daemon's nodes (NODES) as a table: id, address, weight, zone,\n"
               "enabled, health and share of the key space.\n"
               "\n"
               "  --socket PATH    the daemon's socket (default $RINGSIDE_SOCKET, else\n"
               "                   " DEFAULT_SOCKET ")\n"
               "  --json           a JSON array with one object per node (share as a fraction)\n");
}

static void
usage_watch(FILE *f) {
    fprintf(f,
            "usage: ringctl watch [--socket PATH] [--json] [--count N] [--timeout SECONDS]\n"
            "\n"
            "Subscribes to ring changes (SUBSCRIBE ring) and prints one line per change,\n"
            "'<time> <epoch> <fingerprint>' (time in UTC, ISO 8601), until interrupted.\n"
            "\n"
            "  --socket PATH      the daemon's socket (default $RINGSIDE_SOCKET, else\n"
            "                     " DEFAULT_SOCKET ")\n"
            "  --json             one JSON object per line: {\"time\",\"epoch\",\"fingerprint\"}\n"
            "  --count N          exit 0 after N changes\n"
            "  --timeout SECONDS  exit 1 when SECONDS pass without a change\n");
}

static void
usage_ping(FILE *f) {
    fprintf(f, "usage: ringctl ping [--socket PATH] [MESSAGE]\n"
               "\n"
               "Checks that the daemon answers (PING); prints PONG, or MESSAGE echoed back.\n"
               "\n"
               "  --socket PATH    the daemon's socket (default $RINGSIDE_SOCKET, else\n"
               "                   " DEFAULT_SOCKET ")\n");
}

static void
usage_dump(FILE *f) {
    fprintf(f, "usage: ringctl dump [--socket PATH] [--compact]\n"
               "\n"
               "Prints the daemon's DUMP, pretty-printed: the ring parameters, nodes and health,\n"
               "enough to rebuild the identical ring.\n"
               "\n"
               "  --socket PATH    the daemon's socket (default $RINGSIDE_SOCKET, else\n"
               "                   " DEFAULT_SOCKET ")\n"
               "  --compact        one line instead of indented JSON\n");
}

static void
usage_check_config(FILE *f) {
    fprintf(f, "usage: ringctl check-config FILE...\n"
               "\n"
               "Validates ringside config files without starting anything: parses each one as\n"
               "the daemon does and, for static membership, builds its ring. Prints 'FILE: ok'\n"
               "or 'FILE: <error>' (on stderr) per file; exits 1 if any is invalid.\n");
}

/* ---- daemon commands ---- */

/* Decodes hex into a new NUL-terminated buffer; returns it (caller frees) with *len set, or
 * NULL for malformed hex. */
static char *
hex_decode(const char *hex, size_t *len) {
    size_t n = strlen(hex);
    if (n % 2 != 0) {
        return NULL;
    }
    char *out = malloc(n / 2 + 1);
    if (out == NULL) {
        return NULL;
    }
    if (rs_hex_decode(hex, n, out) < 0) {
        free(out);
        return NULL;
    }
    out[n / 2] = '\0';
    *len = n / 2;
    return out;
}

/* Keys from the command line, as given or hex-decoded, ready for redisCommandArgv after
 * the command name in argv[0]. */
typedef struct keyv {
    const char **argv;
    size_t *lens;
    char **decoded; /* owned hex-decoded keys, NULL entries otherwise */
    size_t n;       /* keys; argv and lens hold n + 1 entries */
} keyv;

static void
keyv_free(keyv *k) {
    for (size_t i = 0; k->decoded != NULL && i < k->n; i++) {
        free(k->decoded[i]);
    }
    free(k->decoded);
    free(k->argv);
    free(k->lens);
    *k = (keyv){0};
}

/* Returns 0, 1 (out of memory, printed) or EXIT_USAGE (bad hex, printed). */
static int
keyv_init(keyv *k, const char *cmd, char **keys, size_t n, bool hex, void (*usage)(FILE *)) {
    *k = (keyv){.n = n};
    k->argv = calloc(n + 1, sizeof(*k->argv));
    k->lens = calloc(n + 1, sizeof(*k->lens));
    k->decoded = calloc(n + 1, sizeof(*k->decoded));
    if (k->argv == NULL || k->lens == NULL || k->decoded == NULL) {
        fprintf(stderr, "%s: out of memory\n", progname);
        keyv_free(k);
        return 1;
    }
    k->argv[0] = cmd;
    k->lens[0] = strlen(cmd);
    for (size_t i = 0; i < n; i++) {
        if (hex) {
            k->decoded[i] = hex_decode(keys[i], &k->lens[i + 1]);
            if (k->decoded[i] == NULL) {
                int rc = usage_error(usage, "--hex: '%s' is not hex-encoded", keys[i]);
                keyv_free(k);
                return rc;
            }
            k->argv[i + 1] = k->decoded[i];
        } else {
            k->argv[i + 1] = keys[i];
            k->lens[i + 1] = strlen(keys[i]);
        }
    }
    return 0;
}

/* The options every daemon command shares: --socket (also accepted after the command),
 * --json, --help, and --hex where hex is not NULL. Returns -1 to go on (optind at the
 * first operand), else the exit code. */
static int
daemon_opts(int argc, char **argv, void (*usage)(FILE *), const char **sock, bool *json,
            bool *hex) {
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 'S'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"hex", no_argument, NULL, 'x'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'S':
            *sock = optarg;
            break;
        case 'j':
            *json = true;
            break;
        case 'x':
            if (hex == NULL) {
                return usage_error(usage, "%s", "--hex is not an option of this command");
            }
            *hex = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    return -1;
}

static int
cmd_lookup(int argc, char **argv, const char *sock) {
    bool json = false, hex = false;
    int prc = daemon_opts(argc, argv, usage_lookup, &sock, &json, &hex);
    if (prc >= 0) {
        return prc;
    }
    if (optind == argc) {
        return usage_error(usage_lookup, "%s", "at least one KEY is required");
    }
    size_t nkeys = (size_t)(argc - optind);
    keyv k;
    int rc =
        keyv_init(&k, nkeys == 1 ? "LOOKUP" : "MLOOKUP", argv + optind, nkeys, hex, usage_lookup);
    if (rc != 0) {
        return rc;
    }
    redisContext *ctx = NULL;
    redisReply *r = NULL;
    json_t *doc = NULL;
    rc = 1;
    if ((ctx = ctl_connect(sock)) == NULL ||
        (r = ctl_call(ctx, sock, (int)nkeys + 1, k.argv, k.lens)) == NULL) {
        goto out;
    }
    /* One reply per key: LOOKUP's bulk string, or MLOOKUP's array of them. */
    const redisReply *const *answers = (const redisReply *const *)&r;
    if (nkeys > 1) {
        if (r->type != REDIS_REPLY_ARRAY || r->elements != nkeys) {
            shape_error("MLOOKUP", "expected an array of %zu addresses", nkeys);
            goto out;
        }
        answers = (const redisReply *const *)r->element;
    }
    for (size_t i = 0; i < nkeys; i++) {
        if (!reply_is_str(answers[i]) && answers[i]->type != REDIS_REPLY_NIL) {
            shape_error(k.argv[0], "expected an address for key %zu", i + 1);
            goto out;
        }
    }
    if (json && (doc = json_array()) == NULL) {
        goto out;
    }
    rc = 0;
    for (size_t i = 0; i < nkeys; i++) {
        const redisReply *a = answers[i];
        bool nil = a->type == REDIS_REPLY_NIL;
        if (nil) {
            fprintf(stderr, "%s: no usable node for key '%s'\n", progname, argv[optind + (int)i]);
            rc = 1;
        }
        if (json) {
            json_t *o = json_object();
            if (o == NULL || json_array_append_new(doc, o) != 0 ||
                json_set_key(o, k.argv[i + 1], k.lens[i + 1]) != 0 ||
                json_object_set_new(o, "address", nil ? json_null() : jstr(a->str, a->len)) != 0) {
                rc = 1;
                goto out;
            }
        } else {
            printf("%s\n", nil ? "(nil)" : a->str);
        }
    }
    if (json) {
        rc |= print_json(doc);
        doc = NULL;
    }
out:
    json_decref(doc);
    freeReplyObject(r);
    redisFree(ctx);
    keyv_free(&k);
    return rc;
}

/* One ROUTE candidate: [id, address, zone, health, used|skipped]. */
static bool
candidate_ok(const redisReply *c) {
    if (c->type != REDIS_REPLY_ARRAY || c->elements != 5) {
        return false;
    }
    for (size_t i = 0; i < 5; i++) {
        if (!reply_is_str(c->element[i])) {
            return false;
        }
    }
    return reply_str_eq(c->element[4], "used") || reply_str_eq(c->element[4], "skipped");
}

static int
cmd_route(int argc, char **argv, const char *sock) {
    bool json = false, hex = false;
    int prc = daemon_opts(argc, argv, usage_route, &sock, &json, &hex);
    if (prc >= 0) {
        return prc;
    }
    if (argc - optind != 1) {
        return usage_error(usage_route, "%s", "expected exactly one KEY");
    }
    keyv k;
    int rc = keyv_init(&k, "ROUTE", argv + optind, 1, hex, usage_route);
    if (rc != 0) {
        return rc;
    }
    redisContext *ctx = NULL;
    redisReply *r = NULL;
    json_t *doc = NULL;
    table t;
    table_init(&t, 5);
    rc = 1;
    if ((ctx = ctl_connect(sock)) == NULL || (r = ctl_call(ctx, sock, 2, k.argv, k.lens)) == NULL) {
        goto out;
    }
    long long epoch, hash;
    const redisReply *answer, *cands;
    if (!pairs_ok(r) || !pairs_int(r, "epoch", &epoch) || !pairs_int(r, "hash", &hash) ||
        (answer = pairs_get(r, "answer")) == NULL ||
        (!reply_is_str(answer) && answer->type != REDIS_REPLY_NIL) ||
        (cands = pairs_get(r, "candidates")) == NULL || cands->type != REDIS_REPLY_ARRAY) {
        shape_error("ROUTE", "%s", "expected epoch, hash, answer and candidates fields");
        goto out;
    }
    for (size_t i = 0; i < cands->elements; i++) {
        if (!candidate_ok(cands->element[i])) {
            shape_error("ROUTE", "candidate %zu is not [id, address, zone, health, used|skipped]",
                        i + 1);
            goto out;
        }
    }
    bool nil = answer->type == REDIS_REPLY_NIL;
    if (json) {
        json_t *list = NULL;
        int e = (doc = json_object()) == NULL || (list = json_array()) == NULL;
        e = e || json_set_key(doc, k.argv[1], k.lens[1]) != 0;
        e = e || json_object_set_new(doc, "epoch", json_integer(epoch)) != 0;
        e = e || json_object_set_new(doc, "hash", json_integer(hash)) != 0;
        e = e || json_object_set_new(doc, "answer",
                                     nil ? json_null() : jstr(answer->str, answer->len)) != 0;
        for (size_t i = 0; !e && i < cands->elements; i++) {
            redisReply **f = cands->element[i]->element;
            e = json_array_append_new(list, json_pack("{s:o, s:o, s:o, s:o, s:b}", "id",
                                                      jstr(f[0]->str, f[0]->len), "address",
                                                      jstr(f[1]->str, f[1]->len), "zone",
                                                      jstr(f[2]->str, f[2]->len), "health",
                                                      jstr(f[3]->str, f[3]->len), "used",
                                                      reply_str_eq(f[4], "used"))) != 0;
        }
        if (e) {
            json_decref(list);
            list = NULL;
        }
        /* set_new consumes list even when it fails. */
        if (list == NULL || json_object_set_new(doc, "candidates", list) != 0) {
            fprintf(stderr, "%s: out of memory\n", progname);
            goto out;
        }
        rc = print_json(doc);
        doc = NULL;
        goto out;
    }
    printf("key:         %s\n", argv[optind]);
    printf("epoch:       %lld\n", epoch);
    printf("hash:        %lld\n", hash);
    printf("answer:      %s\n", nil ? "(none: no usable node)" : answer->str);
    printf("candidates:  %zu\n", cands->elements);
    const char *head[] = {"id", "address", "zone", "health", "route"};
    if (table_add(&t, head) != 0) {
        goto out;
    }
    for (size_t i = 0; i < cands->elements; i++) {
        redisReply **f = cands->element[i]->element;
        const char *row[] = {f[0]->str, f[1]->str, f[2]->len ? f[2]->str : "-", f[3]->str,
                             f[4]->str};
        if (table_add(&t, row) != 0) {
            goto out;
        }
    }
    table_print(&t, "  ");
    rc = 0;
out:
    table_free(&t);
    json_decref(doc);
    freeReplyObject(r);
    redisFree(ctx);
    keyv_free(&k);
    return rc;
}

/* "1717000000 (2024-05-29 16:26:40 UTC)", or "0 (never)". */
static void
format_unix_time(long long t, char *out, size_t cap) {
    struct tm tm;
    time_t tt = (time_t)t;
    char when[32];
    if (t <= 0 || gmtime_r(&tt, &tm) == NULL ||
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0) {
        snprintf(out, cap, "%lld%s", t, t == 0 ? " (never)" : "");
        return;
    }
    snprintf(out, cap, "%lld (%s)", t, when);
}

static int
cmd_ring(int argc, char **argv, const char *sock) {
    bool json = false;
    int prc = daemon_opts(argc, argv, usage_ring, &sock, &json, NULL);
    if (prc >= 0) {
        return prc;
    }
    if (optind < argc) {
        return usage_error(usage_ring, "unexpected argument '%s'", argv[optind]);
    }
    const char *cmd[] = {"RING"};
    redisContext *ctx = NULL;
    redisReply *r = NULL;
    int rc = 1;
    if ((ctx = ctl_connect(sock)) == NULL || (r = ctl_call(ctx, sock, 1, cmd, NULL)) == NULL) {
        goto out;
    }
    if (!pairs_ok(r) || r->elements == 0) {
        shape_error("RING", "%s", "expected a field/value array");
        goto out;
    }
    if (json) {
        rc = print_json(pairs_to_json(r));
        goto out;
    }
    /* Every field the daemon sends, in its order: newer daemons may add some. */
    size_t width = 0;
    for (size_t i = 0; i < r->elements; i += 2) {
        width = r->element[i]->len > width ? r->element[i]->len : width;
    }
    for (size_t i = 0; i < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        char buf[64];
        const char *val = "";
        if (v->type == REDIS_REPLY_INTEGER && reply_str_eq(k, "last_change")) {
            format_unix_time(v->integer, buf, sizeof(buf));
            val = buf;
        } else if (v->type == REDIS_REPLY_INTEGER) {
            snprintf(buf, sizeof(buf), "%lld", v->integer);
            val = buf;
        } else if (reply_is_str(v)) {
            val = v->len > 0 ? v->str : "-";
        } else if (v->type == REDIS_REPLY_NIL) {
            val = "(nil)";
        } else {
            shape_error("RING", "field '%s' has an unexpected type", k->str);
            goto out;
        }
        printf("%s:%*s %s\n", k->str, (int)(width - k->len), "", val);
    }
    rc = 0;
out:
    freeReplyObject(r);
    redisFree(ctx);
    return rc;
}

static int
cmd_nodes(int argc, char **argv, const char *sock) {
    bool json = false;
    int prc = daemon_opts(argc, argv, usage_nodes, &sock, &json, NULL);
    if (prc >= 0) {
        return prc;
    }
    if (optind < argc) {
        return usage_error(usage_nodes, "unexpected argument '%s'", argv[optind]);
    }
    const char *cmd[] = {"NODES"};
    redisContext *ctx = NULL;
    redisReply *r = NULL;
    json_t *doc = NULL;
    table t;
    table_init(&t, 7);
    t.right[2] = t.right[6] = true;
    int rc = 1;
    if ((ctx = ctl_connect(sock)) == NULL || (r = ctl_call(ctx, sock, 1, cmd, NULL)) == NULL) {
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        shape_error("NODES", "%s", "expected an array of nodes");
        goto out;
    }
    const char *head[] = {"id", "address", "weight", "zone", "enabled", "health", "share"};
    if ((json && (doc = json_array()) == NULL) || (!json && table_add(&t, head) != 0)) {
        goto out;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *n = r->element[i];
        const char *id, *address, *zone, *health, *share;
        long long weight, enabled;
        double frac;
        if (!pairs_ok(n) || (id = pairs_str(n, "id")) == NULL ||
            (address = pairs_str(n, "address")) == NULL || !pairs_int(n, "weight", &weight) ||
            (zone = pairs_str(n, "zone")) == NULL || !pairs_int(n, "enabled", &enabled) ||
            (health = pairs_str(n, "health")) == NULL || (share = pairs_str(n, "share")) == NULL ||
            !parse_double(share, &frac)) {
            shape_error("NODES",
                        "node %zu lacks one of id, address, weight, zone, enabled, health, share",
                        i + 1);
            goto out;
        }
        if (json) {
            if (json_array_append_new(doc, pairs_to_json(n)) != 0) {
                goto out;
            }
            continue;
        }
        char wbuf[24], sbuf[32];
        snprintf(wbuf, sizeof(wbuf), "%lld", weight);
        snprintf(sbuf, sizeof(sbuf), "%.2f%%", frac * 100);
        const char *row[] = {id,     address, wbuf, zone[0] ? zone : "-", enabled ? "yes" : "no",
                             health, sbuf};
        if (table_add(&t, row) != 0) {
            goto out;
        }
    }
    if (json) {
        rc = print_json(doc);
        doc = NULL;
    } else {
        table_print(&t, "");
        rc = 0;
    }
out:
    table_free(&t);
    json_decref(doc);
    freeReplyObject(r);
    redisFree(ctx);
    return rc;
}

/* "2024-05-29T16:26:40.123Z", the current time in UTC. */
static void
format_now(char *out, size_t cap) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    size_t n = 0;
    if (gmtime_r(&ts.tv_sec, &tm) == NULL ||
        (n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm)) == 0) {
        snprintf(out, cap, "%lld", (long long)ts.tv_sec);
        return;
    }
    snprintf(out + n, cap - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

/* Prints one ring-change push (["message","ring","<epoch> <fingerprint>"]). Returns 0, or
 * 1 for an unexpected shape (printed). */
static int
watch_print(const redisReply *m, bool json) {
    if (m->type != REDIS_REPLY_ARRAY || m->elements != 3 ||
        !reply_str_eq(m->element[0], "message") || !reply_str_eq(m->element[1], "ring") ||
        !reply_is_str(m->element[2])) {
        return shape_error("SUBSCRIBE", "%s",
                           "expected [\"message\", \"ring\", \"<epoch> <fingerprint>\"]");
    }
    const char *payload = m->element[2]->str;
    char *end;
    errno = 0;
    unsigned long long epoch = strtoull(payload, &end, 10);
    if (errno != 0 || end == payload || payload[0] == '-' || *end != ' ' || end[1] == '\0' ||
        strchr(end + 1, ' ') != NULL) {
        return shape_error("SUBSCRIBE", "message '%s' is not '<epoch> <fingerprint>'", payload);
    }
    const char *fp = end + 1;
    char now[40];
    format_now(now, sizeof(now));
    if (json) {
        /* "-" is the daemon's fingerprint when it has no ring. */
        json_t *o =
            json_pack("{s:s, s:I, s:o}", "time", now, "epoch", (json_int_t)epoch, "fingerprint",
                      strcmp(fp, "-") == 0 ? json_null() : jstr(fp, strlen(fp)));
        if (print_json(o) != 0) {
            return 1;
        }
    } else {
        printf("%s %llu %s\n", now, epoch, fp);
    }
    fflush(stdout);
    return 0;
}

static int
cmd_watch(int argc, char **argv, const char *sock) {
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 'S'},  {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},          {"count", required_argument, NULL, 'c'},
        {"timeout", required_argument, NULL, 't'}, {NULL, 0, NULL, 0},
    };
    bool json = false;
    uint32_t count = 0; /* 0: forever */
    double timeout = 0; /* seconds; 0: none */
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'S':
            sock = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'c':
            if (parse_u32(optarg, 1, UINT32_MAX, &count) != 0) {
                return usage_error(usage_watch, "--count: expected a positive number, got '%s'",
                                   optarg);
            }
            break;
        case 't':
            if (!parse_double(optarg, &timeout) || timeout <= 0 || timeout > 86400 * 365) {
                return usage_error(usage_watch,
                                   "--timeout: expected a positive number of seconds, got '%s'",
                                   optarg);
            }
            break;
        case 'h':
            usage_watch(stdout);
            return 0;
        default:
            usage_watch(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        return usage_error(usage_watch, "unexpected argument '%s'", argv[optind]);
    }
    const char *cmd[] = {"SUBSCRIBE", "ring"};
    redisContext *ctx = NULL;
    redisReply *r = NULL;
    int rc = 1;
    if ((ctx = ctl_connect(sock)) == NULL || (r = ctl_call(ctx, sock, 2, cmd, NULL)) == NULL) {
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        !reply_str_eq(r->element[0], "subscribe") || !reply_str_eq(r->element[1], "ring") ||
        r->element[2]->type != REDIS_REPLY_INTEGER) {
        shape_error("SUBSCRIBE", "%s", "expected [\"subscribe\", \"ring\", 1]");
        goto out;
    }
    freeReplyObject(r);
    r = NULL;
    /* The connect timeout bounded the SUBSCRIBE reply; changes may be hours apart. */
    struct timeval tv = {0};
    if (timeout > 0) {
        tv.tv_sec = (time_t)timeout;
        tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) * 1e6);
        if (tv.tv_sec == 0 && tv.tv_usec == 0) {
            tv.tv_usec = 1;
        }
    }
    if (redisSetTimeout(ctx, tv) != REDIS_OK) {
        fprintf(stderr, "%s: %s: %s\n", progname, sock, ctx->errstr);
        goto out;
    }
    for (uint32_t seen = 0; count == 0 || seen < count; seen++) {
        void *reply = NULL;
        errno = 0;
        if (redisGetReply(ctx, &reply) != REDIS_OK || reply == NULL) {
            int saved = errno;
#ifdef REDIS_ERR_TIMEOUT
            bool timed_out = ctx->err == REDIS_ERR_TIMEOUT;
#else
            bool timed_out = false;
#endif
            timed_out |= ctx->err == REDIS_ERR_IO && (saved == EAGAIN || saved == EWOULDBLOCK);
            if (timed_out) {
                fprintf(stderr, "%s: no ring change within %gs\n", progname, timeout);
            } else if (ctx->err == REDIS_ERR_EOF) {
                fprintf(stderr, "%s: %s: ringside closed the connection\n", progname, sock);
            } else {
                fprintf(stderr, "%s: %s: %s\n", progname, sock, ctx->errstr);
            }
            goto out;
        }
        r = reply;
        if (r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "%s: %.*s\n", progname, (int)r->len, r->str);
            goto out;
        }
        if (watch_print(r, json) != 0) {
            goto out;
        }
        freeReplyObject(r);
        r = NULL;
    }
    rc = 0;
out:
    freeReplyObject(r);
    redisFree(ctx);
    return rc;
}

static int
cmd_ping(int argc, char **argv, const char *sock) {
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'S':
            sock = optarg;
            break;
        case 'h':
            usage_ping(stdout);
            return 0;
        default:
            usage_ping(stderr);
            return EXIT_USAGE;
        }
    }
    if (argc - optind > 1) {
        return usage_error(usage_ping, "unexpected argument '%s'", argv[optind + 1]);
    }
    const char *cmd[] = {"PING", optind < argc ? argv[optind] : NULL};
    redisContext *ctx = NULL;
    redisReply *r = NULL;
    int rc = 1;
    if ((ctx = ctl_connect(sock)) == NULL ||
        (r = ctl_call(ctx, sock, optind < argc ? 2 : 1, cmd, NULL)) == NULL) {
        goto out;
    }
    if (!reply_is_str(r)) {
        shape_error("PING", "%s", "expected PONG or the message");
        goto out;
    }
    fwrite(r->str, 1, r->len, stdout);
    putchar('\n');
    rc = 0;
out:
    freeReplyObject(r);
    redisFree(ctx);
    return rc;
}

static int
cmd_dump(int argc, char **argv, const char *sock) {
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 'S'}, {"compact", no_argument, NULL, 'C'},
        {"json", no_argument, NULL, 'j'}, /* accepted for symmetry: the output is JSON */
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    size_t flags = JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'S':
            sock = optarg;
            break;
        case 'C':
            flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10);
            break;
        case 'j':
            break;
        case 'h':
            usage_dump(stdout);
            return 0;
        default:
            usage_dump(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        return usage_error(usage_dump, "unexpected argument '%s'", argv[optind]);
    }
    const char *cmd[] = {"DUMP"};
    redisContext *ctx = NULL;
    redisReply *r = NULL;
    json_t *doc = NULL;
    int rc = 1;
    if ((ctx = ctl_connect(sock)) == NULL || (r = ctl_call(ctx, sock, 1, cmd, NULL)) == NULL) {
        goto out;
    }
    json_error_t jerr;
    if (r->type != REDIS_REPLY_STRING ||
        (doc = json_loadb(r->str, r->len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
        shape_error("DUMP", "expected a JSON document%s%s",
                    r->type == REDIS_REPLY_STRING ? ": " : "",
                    r->type == REDIS_REPLY_STRING ? jerr.text : "");
        goto out;
    }
    if (json_dumpf(doc, stdout, flags) != 0) {
        fprintf(stderr, "%s: cannot format JSON output\n", progname);
        goto out;
    }
    putchar('\n');
    rc = 0;
out:
    json_decref(doc);
    freeReplyObject(r);
    redisFree(ctx);
    return rc;
}

/* ---- check-config ---- */

/* Reads a whole regular file of at most max bytes into a NUL-terminated buffer. */
static int
read_file(const char *path, size_t max, char **out, size_t *len, rs_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err->msg, sizeof(err->msg), "%s", strerror(errno));
        return -errno;
    }
    char *buf = malloc(max + 1);
    if (buf == NULL) {
        fclose(f);
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return -ENOMEM;
    }
    /* Reading one byte past the limit tells "too large" from "exactly at the limit". */
    errno = 0;
    size_t got = fread(buf, 1, max + 1, f);
    int failed = ferror(f) ? (errno != 0 ? errno : EIO) : 0;
    fclose(f);
    if (failed) {
        free(buf);
        snprintf(err->msg, sizeof(err->msg), "%s", strerror(failed));
        return -failed;
    }
    if (got > max) {
        free(buf);
        snprintf(err->msg, sizeof(err->msg), "larger than %zu bytes", max);
        return -EFBIG;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

/* Parses one config file and, for static membership, builds its ring. Returns 0 or 1. */
static int
check_one_config(const char *path) {
    char *text = NULL;
    size_t len = 0;
    rs_error err = {{0}};
    rs_config cfg;
    rs_node *nodes = NULL;
    rs_ring *ring = NULL;
    rs_config_init(&cfg);
    int rc = read_file(path, (size_t)RS_CONFIG_MAX_BYTES, &text, &len, &err);
    if (rc == 0) {
        rc = rs_config_parse(text, len, &cfg, &err);
    }
    if (rc == 0 && cfg.source == RS_SOURCE_STATIC && cfg.n_nodes > 0) {
        /* The daemon builds this ring at start; a node set the parser accepts can still
         * fail as a whole (too many points). */
        nodes = calloc(cfg.n_nodes, sizeof(*nodes));
        if (nodes == NULL) {
            snprintf(err.msg, sizeof(err.msg), "out of memory");
            rc = -ENOMEM;
        } else {
            for (size_t i = 0; i < cfg.n_nodes; i++) {
                nodes[i] = cfg.nodes[i].node;
            }
            rc = rs_ring_build(&cfg.params, nodes, cfg.n_nodes, &ring, &err);
        }
    }
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", path, err.msg[0] ? err.msg : strerror(-rc));
    } else {
        printf("%s: ok\n", path);
    }
    rs_ring_unref(ring);
    free(nodes);
    rs_config_free(&cfg);
    free(text);
    return rc == 0 ? 0 : 1;
}

static int
cmd_check_config(int argc, char **argv) {
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage_check_config(stdout);
            return 0;
        default:
            usage_check_config(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind == argc) {
        return usage_error(usage_check_config, "%s", "expected a FILE");
    }
    int rc = 0;
    for (int i = optind; i < argc; i++) {
        rc |= check_one_config(argv[i]);
    }
    return rc;
}

/* ---- Consul commands: node add|remove|disable|enable|set, ring set|show|confirm ---- */

#define DEFAULT_PREFIX "ringside/default"
#define PREFIX_MAX 256
#define KEY_MAX (PREFIX_MAX + RS_ID_MAX + 16)
#define KV_JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))
/* Test-only: sleep this many ms between reading a key and writing it back, after saying so
 * on stderr, so that tests can change the key in between (a CAS conflict). */
#define TEST_PAUSE_ENV "RINGCTL_TEST_PAUSE_BEFORE_WRITE"
#define DEFAULT_MAX_REMOVAL 0.5 /* SPEC §4.2: the guard's default */

enum {
    OPT_CONSUL = 1000,
    OPT_PREFIX,
    OPT_RING,
    OPT_TOKEN_FILE,
    OPT_CA_FILE,
    OPT_JSON,
    OPT_HELP,
    OPT_WEIGHT,
    OPT_ZONE,
    OPT_ADDRESS,
    OPT_DISABLED,
    OPT_ALGORITHM,
    OPT_HASH,
    OPT_REPLICAS,
    OPT_HASH_TAG,
    OPT_FORCE,
    OPT_MAX_REMOVAL,
    OPT_YES,
    OPT_FINGERPRINT,
};

#define KV_COMMON_OPTIONS                                                                          \
    {"consul", required_argument, NULL, OPT_CONSUL},                                               \
        {"prefix", required_argument, NULL, OPT_PREFIX},                                           \
        {"ring", required_argument, NULL, OPT_RING},                                               \
        {"token-file", required_argument, NULL, OPT_TOKEN_FILE},                                   \
        {"ca-file", required_argument, NULL, OPT_CA_FILE}, {"json", no_argument, NULL, OPT_JSON},  \
    {                                                                                              \
        "help", no_argument, NULL, OPT_HELP                                                        \
    }

#define KV_COMMON_HELP                                                                             \
    "Consul options (every Consul command):\n"                                                     \
    "  --consul URL        the Consul agent (default $CONSUL_HTTP_ADDR, with or without\n"         \
    "                      scheme: http, or https when CONSUL_HTTP_SSL=true; else\n"               \
    "                      " CONSUL_CLI_DEFAULT_ADDRESS ")\n"                                      \
    "  --prefix P          the ring's KV prefix (default $RINGSIDE_KV_PREFIX, else\n"              \
    "                      " DEFAULT_PREFIX ")\n"                                                  \
    "  --ring NAME         same as --prefix ringside/NAME\n"                                       \
    "  --token-file F      ACL token file (default $CONSUL_HTTP_TOKEN_FILE, else the token\n"      \
    "                      in $CONSUL_HTTP_TOKEN); sent as X-Consul-Token, never printed\n"        \
    "  --ca-file F         CA bundle for https (default $CONSUL_CACERT)\n"                         \
    "  --json              print a JSON object instead of a line\n"

static void
usage_node(FILE *f) {
    fprintf(f, "usage: ringctl node add ID ADDRESS [--weight W] [--zone Z] [--disabled]\n"
               "       ringctl node remove ID\n"
               "       ringctl node disable ID\n"
               "       ringctl node enable ID\n"
               "       ringctl node set ID [--weight W] [--zone Z] [--address A]\n"
               "\n"
               "Changes a node of the ring in Consul KV (<prefix>/nodes/<ID>); every sidecar\n"
               "watching the prefix follows. Values are validated as the sidecars validate\n"
               "them before anything is written, and written with check-and-set: an edit made\n"
               "by someone else in between is never overwritten (exit 1, nothing written).\n"
               "Run 'ringctl node SUBCOMMAND --help' for details.\n");
}

static void
usage_node_add(FILE *f) {
    fprintf(f,
            "usage: ringctl node add ID ADDRESS [--weight W] [--zone Z] [--disabled]\n"
            "                        [Consul options]\n"
            "\n"
            "Creates <prefix>/nodes/ID = {\"address\",\"weight\",\"zone\",\"enabled\"}; fails\n"
            "if the node exists (use 'node set').\n"
            "\n"
            "  --weight W          1..%d (default 1)\n"
            "  --zone Z            failure domain (default none)\n"
            "  --disabled          add it disabled: in the KV, out of the ring\n"
            "\n" KV_COMMON_HELP,
            RS_WEIGHT_MAX);
}

static void
usage_node_remove(FILE *f) {
    fprintf(f, "usage: ringctl node remove ID [Consul options]\n"
               "\n"
               "Deletes <prefix>/nodes/ID (check-and-set on the value just read). A removal\n"
               "of more than max_removal_fraction of the enabled nodes is held by the sidecars\n"
               "until 'ringctl ring confirm'.\n"
               "\n" KV_COMMON_HELP);
}

static void
usage_node_enable(FILE *f) {
    fprintf(f, "usage: ringctl node disable ID [Consul options]\n"
               "       ringctl node enable ID [Consul options]\n"
               "\n"
               "Sets \"enabled\" of <prefix>/nodes/ID: a disabled node keeps its entry but\n"
               "leaves the ring. Nothing is written when the node is already in that state.\n"
               "\n" KV_COMMON_HELP);
}

static void
usage_node_set(FILE *f) {
    fprintf(f,
            "usage: ringctl node set ID [--weight W] [--zone Z] [--address A]\n"
            "                      [Consul options]\n"
            "\n"
            "Changes fields of <prefix>/nodes/ID, keeping the others. Changing the address\n"
            "moves no key.\n"
            "\n"
            "  --weight W          1..%d\n"
            "  --zone Z            failure domain ('' removes it)\n"
            "  --address A         host:port (or [v6]:port) returned to clients\n"
            "\n" KV_COMMON_HELP,
            RS_WEIGHT_MAX);
}

static void
usage_ring_set(FILE *f) {
    fprintf(f,
            "usage: ringctl ring set [--algorithm A] [--hash H] [--replicas N] [--hash-tag XY]\n"
            "                        [--force true|false] [--max-removal-fraction F]\n"
            "                        [Consul options]\n"
            "\n"
            "Changes fields of <prefix>/config, keeping the others. A field absent from the\n"
            "KV config comes from each sidecar's config file.\n"
            "\n"
            "  --algorithm A             ketama or modula\n"
            "  --hash H                  one_at_a_time md5 crc16 crc32 crc32a fnv1_64 fnv1a_64\n"
            "                            fnv1_32 fnv1a_32 hsieh murmur jenkins xxh3\n"
            "  --replicas N              distinct nodes a lookup may return (1..%d)\n"
            "  --hash-tag XY             hash only the part of a key between X and Y ('' for\n"
            "                            none)\n"
            "  --force true|false        true: sidecars apply every update, even one the\n"
            "                            mass-removal guard would hold (set it back to false)\n"
            "  --max-removal-fraction F  hold an update that removes more than this fraction\n"
            "                            of the enabled nodes (0 < F <= 1)\n"
            "\n" KV_COMMON_HELP,
            RS_REPLICAS_MAX);
}

static void
usage_ring_show(FILE *f) {
    fprintf(f, "usage: ringctl ring show [Consul options]\n"
               "\n"
               "Reads the KV prefix and shows it as the sidecars see it: parameters (the KV\n"
               "config over the defaults), force, max_removal_fraction, the confirmed\n"
               "fingerprint, the nodes with their share, the keys the sidecars reject and why,\n"
               "and the fingerprint of the ring they would build. Without a KV config the\n"
               "parameters shown are the defaults; sidecars use their config file's.\n"
               "\n" KV_COMMON_HELP);
}

static void
usage_ring_confirm(FILE *f) {
    fprintf(f, "usage: ringctl ring confirm [--yes] [--fingerprint FP] [Consul options]\n"
               "\n"
               "Applies an update the sidecars hold (the mass-removal guard) fleet-wide: builds\n"
               "the ring from the KV prefix exactly as the sidecars do, prints it, and writes\n"
               "<prefix>/confirm = {\"fingerprint\":\"<fingerprint>\"}. A sidecar holding an\n"
               "update with that fingerprint applies it.\n"
               "\n"
               "  --yes               do not ask (required when stdin is not a terminal)\n"
               "  --fingerprint FP    confirm FP (16 hex digits, e.g. from a sidecar's\n"
               "                      /v1/status) instead of the one computed here: needed when\n"
               "                      the prefix has no config and the sidecars' files set other\n"
               "                      ring parameters than the defaults\n"
               "\n" KV_COMMON_HELP);
}

typedef struct kv_opts {
    consul_cli_settings consul;
    const char *prefix_opt, *ring_opt;
    char prefix[PREFIX_MAX]; /* resolved, no leading or trailing '/' */
    bool json;
} kv_opts;

/* Takes the options every Consul command shares. Returns true when c was one. */
static bool
kv_common_opt(int c, const char *arg, kv_opts *o) {
    switch (c) {
    case OPT_CONSUL:
        o->consul.address = arg;
        return true;
    case OPT_PREFIX:
        o->prefix_opt = arg;
        return true;
    case OPT_RING:
        o->ring_opt = arg;
        return true;
    case OPT_TOKEN_FILE:
        o->consul.token_file = arg;
        return true;
    case OPT_CA_FILE:
        o->consul.ca_file = arg;
        return true;
    case OPT_JSON:
        o->json = true;
        return true;
    default:
        return false;
    }
}

/* The prefix from --prefix, --ring, $RINGSIDE_KV_PREFIX or the default, checked as the
 * daemon checks membership.consul.kv_prefix. Returns -1 to go on, else the exit code. */
static int
kv_resolve(kv_opts *o, void (*usage)(FILE *)) {
    if (o->prefix_opt != NULL && o->ring_opt != NULL) {
        return usage_error(usage, "%s", "--prefix and --ring exclude each other");
    }
    const char *env = getenv("RINGSIDE_KV_PREFIX");
    const char *what = "--prefix";
    int n;
    if (o->ring_opt != NULL) {
        if (o->ring_opt[0] == '\0' || strchr(o->ring_opt, '/') != NULL) {
            return usage_error(usage, "--ring: expected a ring name without '/', got '%s'",
                               o->ring_opt);
        }
        n = snprintf(o->prefix, sizeof(o->prefix), "ringside/%s", o->ring_opt);
        what = "--ring";
    } else {
        const char *p = o->prefix_opt;
        if (p == NULL && env != NULL && env[0] != '\0') {
            p = env;
            what = "RINGSIDE_KV_PREFIX";
        }
        n = snprintf(o->prefix, sizeof(o->prefix), "%s", p != NULL ? p : DEFAULT_PREFIX);
    }
    if (n < 0 || (size_t)n >= sizeof(o->prefix)) {
        return usage_error(usage, "%s: too long (max %d bytes)", what, PREFIX_MAX - 1);
    }
    size_t len = (size_t)n;
    if (len > 1 && o->prefix[len - 1] == '/') {
        o->prefix[--len] = '\0';
    }
    bool ok = len > 0 && o->prefix[0] != '/' && o->prefix[len - 1] != '/' &&
              strpbrk(o->prefix, "?#%") == NULL;
    for (size_t i = 0; ok && i < len; i++) {
        ok = o->prefix[i] > ' ' && o->prefix[i] < 0x7f;
    }
    if (!ok) {
        return usage_error(usage,
                           "%s: must be a KV path like \"ringside/sessions\" (no leading '/', "
                           "spaces, '?', '#' or '%%'), got '%s'",
                           what, o->prefix);
    }
    return -1;
}

static consul_cli *
kv_connect(const kv_opts *o) {
    consul_cli *c = NULL;
    rs_error err;
    if (consul_cli_new(&o->consul, &c, &err) != 0) {
        fprintf(stderr, "%s: %s\n", progname, err.msg);
        return NULL;
    }
    return c;
}

/* KV values are JSON, which carries only UTF-8. */
static bool
is_utf8(const char *s) {
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

/* The command's ID operand: exactly one, or ID and ADDRESS for add. */
static int
kv_operands(int argc, char **argv, int want, void (*usage)(FILE *)) {
    if (argc - optind < want) {
        return usage_error(usage, "%s", want == 2 ? "expected ID and ADDRESS" : "expected an ID");
    }
    if (argc - optind > want) {
        return usage_error(usage, "unexpected argument '%s'", argv[optind + want]);
    }
    for (int i = optind; i < optind + want; i++) {
        if (argv[i][0] == '\0' || !is_utf8(argv[i])) {
            return usage_error(usage, "%s must not be empty and must be UTF-8",
                               i == optind ? "ID" : "ADDRESS");
        }
    }
    if (strlen(argv[optind]) > RS_ID_MAX) {
        fprintf(stderr, "%s: node id is too long (%zu bytes, max %d)\n", progname,
                strlen(argv[optind]), RS_ID_MAX);
        return 1;
    }
    return -1;
}

static void
test_pause(const char *rel, uint64_t index) {
    const char *v = getenv(TEST_PAUSE_ENV);
    uint32_t ms;
    if (v == NULL || parse_u32(v, 1, 600000, &ms) != 0) {
        return;
    }
    fprintf(stderr,
            "%s: test pause (" TEST_PAUSE_ENV "): read %s at index %llu, writing in %u ms\n",
            progname, rel, (unsigned long long)index, ms);
    fflush(stderr);
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Writes value (NULL: deletes) to <prefix>/<rel> if its ModifyIndex is still cas (0: if it
 * does not exist). Returns 0, or 1 having printed why: unreachable, HTTP error, or a
 * concurrent edit (Consul answered false: nothing was written). */
static int
kv_write(consul_cli *cli, const kv_opts *o, const char *rel, const char *value, uint64_t cas) {
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "%s/%s", o->prefix, rel);
    test_pause(rel, cas);
    rs_error err;
    bool done = false;
    if (consul_cli_kv_cas(cli, key, value, value != NULL ? strlen(value) : 0, cas, &done, &err) !=
        0) {
        fprintf(stderr, "%s: %s\n", progname, err.msg);
        return 1;
    }
    if (done) {
        return 0;
    }
    if (cas == 0) {
        fprintf(stderr,
                "%s: %s was created in Consul while this edit was being made (someone else "
                "added it); nothing was written — re-run to see it\n",
                progname, rel);
    } else {
        fprintf(stderr,
                "%s: %s changed in Consul while this edit was being made (someone else edited "
                "it); nothing was written — re-run to apply on top of the new value\n",
                progname, rel);
    }
    return 1;
}

/* Reads <prefix>/<rel>. Returns 0 or 1 (printed). */
static int
kv_read(consul_cli *cli, const kv_opts *o, const char *rel, consul_kv *kv) {
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "%s/%s", o->prefix, rel);
    rs_error err;
    if (consul_cli_kv_get(cli, key, kv, &err) != 0) {
        fprintf(stderr, "%s: %s\n", progname, err.msg);
        return 1;
    }
    return 0;
}

/* What the sidecars make of <prefix>/<rel> = value: their own KV parser
 * (rs_kv_to_membership, fresh memo) run on a one-key listing. Returns 0 with *m filled
 * (caller frees), or -EINVAL with the sidecars' reason in why. */
static int
sidecar_view(const char *prefix, const char *rel, const char *value, rs_membership *m, char *why,
             size_t cap) {
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "%s/%s", prefix, rel);
    *m = (rs_membership){0};
    rs_kv_memo *memo = NULL;
    char *b64 = consul_cli_base64(value, strlen(value));
    json_t *listing =
        b64 == NULL ? NULL
                    : json_pack("[{s:s, s:s, s:i, s:i, s:i, s:i}]", "Key", key, "Value", b64,
                                "Flags", 0, "LockIndex", 0, "CreateIndex", 1, "ModifyIndex", 1);
    char *body = listing != NULL ? json_dumps(listing, JSON_COMPACT) : NULL;
    int rc = -ENOMEM;
    snprintf(why, cap, "out of memory");
    if (body != NULL && rs_kv_memo_new(&memo) == 0) {
        rs_ring_params base;
        rs_ring_params_init(&base);
        rs_error err = {{0}};
        rc = rs_kv_to_membership(memo, body, strlen(body), prefix, &base, DEFAULT_MAX_REMOVAL, m,
                                 &err);
        if (rc != 0) {
            snprintf(why, cap, "%s", err.msg);
        } else if (m->n_rejections_total > 0) {
            snprintf(why, cap, "%s",
                     m->n_rejections > 0 ? m->rejections[0].reason : "rejected by the sidecars");
            rc = -EINVAL;
        }
    }
    rs_kv_memo_free(memo);
    free(body);
    json_decref(listing);
    free(b64);
    if (rc != 0) {
        rs_membership_free(m);
        *m = (rs_membership){0};
    }
    return rc;
}

/* The node a KV value describes, borrowing strings from obj; types and presence checked
 * here, values by rs_node_validate. Returns 0, or -EINVAL with why. */
static int
node_from_json(const json_t *obj, const char *id, rs_node *n, char *why, size_t cap) {
    *n = (rs_node){.id = id, .weight = 1, .enabled = true};
    const json_t *v;
    if (!json_is_object(obj)) {
        snprintf(why, cap, "the value is not a JSON object");
        return -EINVAL;
    }
    if (!json_is_string(v = json_object_get(obj, "address"))) {
        snprintf(why, cap, "%s", v == NULL ? "address is missing" : "address must be a string");
        return -EINVAL;
    }
    n->address = json_string_value(v);
    if ((v = json_object_get(obj, "weight")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > (json_int_t)UINT32_MAX) {
            snprintf(why, cap, "weight must be an integer between 1 and %d", RS_WEIGHT_MAX);
            return -EINVAL;
        }
        n->weight = (uint32_t)json_integer_value(v);
    }
    if ((v = json_object_get(obj, "zone")) != NULL) {
        if (!json_is_string(v)) {
            snprintf(why, cap, "zone must be a string");
            return -EINVAL;
        }
        n->zone = json_string_value(v);
    }
    if ((v = json_object_get(obj, "enabled")) != NULL) {
        if (!json_is_boolean(v)) {
            snprintf(why, cap, "enabled must be true or false");
            return -EINVAL;
        }
        n->enabled = json_is_true(v);
    }
    return 0;
}

/* Checks a node value before it is written: shape, rs_node_validate, then the sidecars'
 * own parser. Returns 0, or 1 having printed "nodes/ID: <why>; nothing written". */
static int
node_check(const char *prefix, const char *id, const json_t *obj, const char *text) {
    char why[512], rel[RS_ID_MAX + 16];
    snprintf(rel, sizeof(rel), "nodes/%s", id);
    rs_node n;
    rs_error err = {{0}};
    rs_membership m = {0};
    int rc = node_from_json(obj, id, &n, why, sizeof(why));
    if (rc == 0 && strchr(id, '/') != NULL) {
        snprintf(why, sizeof(why), "id must not contain '/' (a node is one key under nodes/)");
        rc = -EINVAL;
    }
    if (rc == 0 && (rc = rs_node_validate(&n, &err)) != 0) {
        snprintf(why, sizeof(why), "%s", err.msg);
    }
    if (rc == 0 && (rc = sidecar_view(prefix, rel, text, &m, why, sizeof(why))) == 0) {
        bool found = false;
        for (size_t i = 0; i < m.n_nodes; i++) {
            found |= strcmp(m.nodes[i].id, id) == 0;
        }
        if (!found) {
            snprintf(why, sizeof(why), "the sidecars would not read this key as a node");
            rc = -EINVAL;
        }
    }
    rs_membership_free(&m);
    if (rc != 0) {
        fprintf(stderr, "%s: %s: %s; nothing written\n", progname, rel, why);
        return 1;
    }
    return 0;
}

/* "127.0.0.1:6382 weight 1 zone a disabled" for a node value ("disabled" only with
 * state), or its JSON when it does not describe a node. */
static void
node_describe(const json_t *obj, const char *id, bool state, char *out, size_t cap) {
    rs_node n;
    char why[128];
    if (node_from_json(obj, id, &n, why, sizeof(why)) != 0) {
        char *text = json_is_object(obj) ? json_dumps(obj, KV_JSON_FLAGS) : NULL;
        snprintf(out, cap, "%s", text != NULL ? text : "(not a node value)");
        free(text);
        return;
    }
    snprintf(out, cap, "%s weight %u%s%s%s", n.address, n.weight,
             n.zone != NULL && n.zone[0] != '\0' ? " zone " : "", n.zone != NULL ? n.zone : "",
             n.enabled || !state ? "" : " disabled");
}

/* A KV value as JSON: parsed when it is JSON, else the raw text as a string. */
static json_t *
kv_value_json(const consul_kv *kv) {
    json_t *v = json_loadb(kv->value, kv->len, JSON_DECODE_ANY, NULL);
    return v != NULL ? v : jstr(kv->value, kv->len);
}

/* Prints the --json answer of a write: {"key","action","value","previous"}. Consumes value
 * and previous (either may be NULL: null). */
static int
print_write_json(const kv_opts *o, const char *rel, const char *action, json_t *value,
                 json_t *previous) {
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "%s/%s", o->prefix, rel);
    return print_json(json_pack("{s:s, s:s, s:o, s:o}", "key", key, "action", action, "value",
                                value != NULL ? value : json_null(), "previous",
                                previous != NULL ? previous : json_null()));
}

/* The current value of an existing key as a JSON object for read-modify-write. Returns
 * the object, or NULL having printed why. */
static json_t *
kv_object(const consul_kv *kv, const char *rel, const char *hint) {
    json_error_t jerr;
    json_t *obj = json_loadb(kv->value, kv->len, JSON_REJECT_DUPLICATES, &jerr);
    if (json_is_object(obj)) {
        return obj;
    }
    json_decref(obj);
    fprintf(stderr,
            "%s: %s: the value in Consul is not a JSON object (%s), so it cannot be "
            "edited field by field; %s\n",
            progname, rel, obj == NULL ? jerr.text : "another JSON type", hint);
    return NULL;
}

/* Parses a Consul command that takes only the common options. Returns -1 to go on
 * (optind at the first operand), else the exit code. */
static int
kv_common_opts(int argc, char **argv, void (*usage)(FILE *), kv_opts *o) {
    static const struct option opts[] = {KV_COMMON_OPTIONS, {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == OPT_HELP) {
            usage(stdout);
            return 0;
        }
        if (!kv_common_opt(c, optarg, o)) {
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    return -1;
}

static int
cmd_node_add(int argc, char **argv) {
    static const struct option opts[] = {
        KV_COMMON_OPTIONS,
        {"weight", required_argument, NULL, OPT_WEIGHT},
        {"zone", required_argument, NULL, OPT_ZONE},
        {"disabled", no_argument, NULL, OPT_DISABLED},
        {NULL, 0, NULL, 0},
    };
    kv_opts o = {0};
    uint32_t weight = 1;
    const char *zone = NULL;
    bool disabled = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_WEIGHT:
            if (parse_u32(optarg, 0, UINT32_MAX, &weight) != 0) {
                return usage_error(usage_node_add,
                                   "--weight: expected a positive integer, got '%s'", optarg);
            }
            break;
        case OPT_ZONE:
            if (!is_utf8(optarg)) {
                return usage_error(usage_node_add, "%s", "--zone: not UTF-8");
            }
            zone = optarg;
            break;
        case OPT_DISABLED:
            disabled = true;
            break;
        case OPT_HELP:
            usage_node_add(stdout);
            return 0;
        default:
            if (!kv_common_opt(c, optarg, &o)) {
                usage_node_add(stderr);
                return EXIT_USAGE;
            }
        }
    }
    int rc = kv_operands(argc, argv, 2, usage_node_add);
    if (rc >= 0 || (rc = kv_resolve(&o, usage_node_add)) >= 0) {
        return rc;
    }
    const char *id = argv[optind], *address = argv[optind + 1];
    char rel[RS_ID_MAX + 16];
    snprintf(rel, sizeof(rel), "nodes/%.*s", RS_ID_MAX + 1, id);
    json_t *val = json_pack("{s:s, s:I}", "address", address, "weight", (json_int_t)weight);
    char *text = NULL;
    consul_cli *cli = NULL;
    consul_kv kv = {0};
    rc = 1;
    if (val == NULL ||
        (zone != NULL && zone[0] != '\0' &&
         json_object_set_new(val, "zone", json_string(zone)) != 0) ||
        json_object_set_new(val, "enabled", json_boolean(!disabled)) != 0 ||
        (text = json_dumps(val, KV_JSON_FLAGS)) == NULL) {
        fprintf(stderr, "%s: out of memory (or an argument is not UTF-8)\n", progname);
        goto out;
    }
    if (node_check(o.prefix, id, val, text) != 0 || (cli = kv_connect(&o)) == NULL ||
        kv_read(cli, &o, rel, &kv) != 0) {
        goto out;
    }
    if (kv.exists) {
        json_t *cur = kv_value_json(&kv);
        char desc[512];
        node_describe(cur, id, true, desc, sizeof(desc));
        json_decref(cur);
        fprintf(stderr, "%s: %s already exists (%s); use 'ringctl node set' to change it\n",
                progname, rel, desc);
        goto out;
    }
    if (kv_write(cli, &o, rel, text, 0) != 0) {
        goto out;
    }
    if (o.json) {
        rc = print_write_json(&o, rel, "added", json_incref(val), NULL);
    } else {
        char desc[512];
        node_describe(val, id, true, desc, sizeof(desc));
        printf("%s: added %s\n", rel, desc);
        rc = 0;
    }
out:
    consul_kv_free(&kv);
    consul_cli_free(cli);
    free(text);
    json_decref(val);
    return rc;
}

static int
cmd_node_remove(int argc, char **argv) {
    kv_opts o = {0};
    int prc = kv_common_opts(argc, argv, usage_node_remove, &o);
    if (prc >= 0) {
        return prc;
    }
    int rc = kv_operands(argc, argv, 1, usage_node_remove);
    if (rc >= 0 || (rc = kv_resolve(&o, usage_node_remove)) >= 0) {
        return rc;
    }
    const char *id = argv[optind];
    char rel[RS_ID_MAX + 16];
    snprintf(rel, sizeof(rel), "nodes/%.*s", RS_ID_MAX + 1, id);
    consul_cli *cli = NULL;
    consul_kv kv = {0};
    json_t *prev = NULL;
    rc = 1;
    if ((cli = kv_connect(&o)) == NULL || kv_read(cli, &o, rel, &kv) != 0) {
        goto out;
    }
    if (!kv.exists) {
        fprintf(stderr, "%s: %s does not exist under %s/ (see 'ringctl ring show')\n", progname,
                rel, o.prefix);
        goto out;
    }
    if (kv_write(cli, &o, rel, NULL, kv.modify_index) != 0) {
        goto out;
    }
    prev = kv_value_json(&kv);
    if (o.json) {
        rc = print_write_json(&o, rel, "removed", NULL, prev);
        prev = NULL;
    } else {
        char desc[512];
        node_describe(prev, id, true, desc, sizeof(desc));
        printf("%s: removed (was %s)\n", rel, desc);
        rc = 0;
    }
out:
    json_decref(prev);
    consul_kv_free(&kv);
    consul_cli_free(cli);
    return rc;
}

/* The changes node set, enable and disable make; NULL / -1: unchanged. */
typedef struct node_edit {
    const char *address;
    const char *zone; /* "" removes the zone */
    bool set_weight;
    uint32_t weight;
    int enabled;
} node_edit;

/* A value in a change list: strings bare, "(none)" when absent, else compact JSON. */
static char *
change_text(const json_t *v) {
    if (v == NULL) {
        return strdup("(none)");
    }
    if (json_is_string(v)) {
        return strdup(json_string_value(v)[0] ? json_string_value(v) : "\"\"");
    }
    return json_dumps(v, KV_JSON_FLAGS | JSON_ENCODE_ANY);
}

/* Appends ", field old -> new" to a change list. */
static void
note_change(char *buf, size_t cap, const char *field, const json_t *before, const json_t *after) {
    char *b = change_text(before), *a = change_text(after);
    size_t used = strlen(buf);
    snprintf(buf + used, cap - used, "%s%s %s -> %s", used ? ", " : "", field, b ? b : "?",
             a ? a : "?");
    free(b);
    free(a);
}

/* Read-modify-write of one node: node set, enable and disable. */
static int
node_modify(const kv_opts *o, const char *id, const node_edit *e, const char *action) {
    char rel[RS_ID_MAX + 16];
    snprintf(rel, sizeof(rel), "nodes/%.*s", RS_ID_MAX + 1, id);
    consul_cli *cli = NULL;
    consul_kv kv = {0};
    json_t *obj = NULL, *prev = NULL;
    char *text = NULL;
    int rc = 1;
    if ((cli = kv_connect(o)) == NULL || kv_read(cli, o, rel, &kv) != 0) {
        goto out;
    }
    if (!kv.exists) {
        fprintf(stderr,
                "%s: %s does not exist under %s/; add it with 'ringctl node add %s ADDRESS'\n",
                progname, rel, o->prefix, id);
        goto out;
    }
    char hint[RS_ID_MAX * 2 + 96];
    snprintf(hint, sizeof(hint),
             "replace it: 'ringctl node remove %s', then 'ringctl node add %s ...'", id, id);
    if ((obj = kv_object(&kv, rel, hint)) == NULL || (prev = json_deep_copy(obj)) == NULL) {
        goto out;
    }
    char changes[1024] = "";
    if (e->enabled >= 0) {
        const json_t *cur = json_object_get(obj, "enabled");
        bool now = cur == NULL || json_is_true(cur);
        if (!json_is_boolean(cur) && cur != NULL) {
            now = !e->enabled; /* not a boolean: rewrite it */
        }
        if (now != (e->enabled != 0)) {
            json_t *v = json_boolean(e->enabled);
            note_change(changes, sizeof(changes), "enabled", cur, v);
            json_object_set_new(obj, "enabled", v);
        }
    }
    if (e->set_weight) {
        json_t *v = json_integer(e->weight);
        const json_t *cur = json_object_get(obj, "weight");
        if (!json_equal(cur, v)) {
            note_change(changes, sizeof(changes), "weight", cur, v);
        }
        json_object_set_new(obj, "weight", v);
    }
    if (e->zone != NULL) {
        const json_t *cur = json_object_get(obj, "zone");
        if (e->zone[0] == '\0') {
            if (cur != NULL) {
                note_change(changes, sizeof(changes), "zone", cur, NULL);
                json_object_del(obj, "zone");
            }
        } else {
            json_t *v = json_string(e->zone);
            if (!json_equal(cur, v)) {
                note_change(changes, sizeof(changes), "zone", cur, v);
            }
            json_object_set_new(obj, "zone", v);
        }
    }
    if (e->address != NULL) {
        json_t *v = json_string(e->address);
        const json_t *cur = json_object_get(obj, "address");
        if (!json_equal(cur, v)) {
            note_change(changes, sizeof(changes), "address", cur, v);
        }
        json_object_set_new(obj, "address", v);
    }
    if (json_equal(obj, prev)) {
        if (o->json) {
            rc = print_write_json(o, rel, "unchanged", json_incref(obj), NULL);
        } else {
            char desc[512];
            node_describe(obj, id, true, desc, sizeof(desc));
            printf("%s: %s; nothing written (%s)\n", rel,
                   e->enabled == 1   ? "already enabled"
                   : e->enabled == 0 ? "already disabled"
                                     : "unchanged",
                   desc);
            rc = 0;
        }
        goto out;
    }
    if ((text = json_dumps(obj, KV_JSON_FLAGS)) == NULL) {
        fprintf(stderr, "%s: out of memory (or an argument is not UTF-8)\n", progname);
        goto out;
    }
    if (node_check(o->prefix, id, obj, text) != 0 ||
        kv_write(cli, o, rel, text, kv.modify_index) != 0) {
        goto out;
    }
    if (o->json) {
        rc = print_write_json(o, rel, action, json_incref(obj), prev);
        prev = NULL;
    } else {
        char desc[512];
        /* enable/disable name the state already. */
        node_describe(obj, id, e->enabled < 0, desc, sizeof(desc));
        if (e->enabled >= 0) {
            printf("%s: %s (%s)\n", rel, action, desc);
        } else {
            printf("%s: %s (now %s)\n", rel, changes, desc);
        }
        rc = 0;
    }
out:
    free(text);
    json_decref(obj);
    json_decref(prev);
    consul_kv_free(&kv);
    consul_cli_free(cli);
    return rc;
}

static int
cmd_node_enable(int argc, char **argv, bool enable) {
    kv_opts o = {0};
    int prc = kv_common_opts(argc, argv, usage_node_enable, &o);
    if (prc >= 0) {
        return prc;
    }
    int rc = kv_operands(argc, argv, 1, usage_node_enable);
    if (rc >= 0 || (rc = kv_resolve(&o, usage_node_enable)) >= 0) {
        return rc;
    }
    node_edit e = {.enabled = enable ? 1 : 0};
    return node_modify(&o, argv[optind], &e, enable ? "enabled" : "disabled");
}

static int
cmd_node_set(int argc, char **argv) {
    static const struct option opts[] = {
        KV_COMMON_OPTIONS,
        {"weight", required_argument, NULL, OPT_WEIGHT},
        {"zone", required_argument, NULL, OPT_ZONE},
        {"address", required_argument, NULL, OPT_ADDRESS},
        {NULL, 0, NULL, 0},
    };
    kv_opts o = {0};
    node_edit e = {.enabled = -1};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_WEIGHT:
            if (parse_u32(optarg, 0, UINT32_MAX, &e.weight) != 0) {
                return usage_error(usage_node_set,
                                   "--weight: expected a positive integer, got '%s'", optarg);
            }
            e.set_weight = true;
            break;
        case OPT_ZONE:
        case OPT_ADDRESS:
            if (!is_utf8(optarg)) {
                return usage_error(usage_node_set, "--%s: not UTF-8",
                                   c == OPT_ZONE ? "zone" : "address");
            }
            *(c == OPT_ZONE ? &e.zone : &e.address) = optarg;
            break;
        case OPT_HELP:
            usage_node_set(stdout);
            return 0;
        default:
            if (!kv_common_opt(c, optarg, &o)) {
                usage_node_set(stderr);
                return EXIT_USAGE;
            }
        }
    }
    int rc = kv_operands(argc, argv, 1, usage_node_set);
    if (rc >= 0 || (rc = kv_resolve(&o, usage_node_set)) >= 0) {
        return rc;
    }
    if (!e.set_weight && e.zone == NULL && e.address == NULL) {
        return usage_error(usage_node_set, "%s",
                           "nothing to set: give --weight, --zone or --address");
    }
    return node_modify(&o, argv[optind], &e, "set");
}

static int
cmd_node(int argc, char **argv, const char *sock) {
    (void)sock;
    if (argc < 2) {
        return usage_error(usage_node, "%s",
                           "missing subcommand: add, remove, disable, enable or set");
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        usage_node(stdout);
        return 0;
    }
    if (strcmp(sub, "add") == 0) {
        return cmd_node_add(argc - 1, argv + 1);
    }
    if (strcmp(sub, "remove") == 0) {
        return cmd_node_remove(argc - 1, argv + 1);
    }
    if (strcmp(sub, "disable") == 0 || strcmp(sub, "enable") == 0) {
        return cmd_node_enable(argc - 1, argv + 1, strcmp(sub, "enable") == 0);
    }
    if (strcmp(sub, "set") == 0) {
        return cmd_node_set(argc - 1, argv + 1);
    }
    return usage_error(usage_node, "unknown node subcommand '%s'", sub);
}

/* ---- ring set ---- */

static int
parse_bool(const char *s, bool *out) {
    if (strcmp(s, "true") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(s, "false") == 0) {
        *out = false;
        return 0;
    }
    return -EINVAL;
}

/* Checks a config value before it is written: the sidecars' own parser, then
 * rs_ring_params_validate on the parameters it yields. Returns 0, or 1 (printed). */
static int
config_check(const char *prefix, const char *text) {
    char why[512];
    rs_membership m = {0};
    rs_error err = {{0}};
    int rc = 0;
    if ((rc = sidecar_view(prefix, "config", text, &m, why, sizeof(why))) == 0 &&
        (rc = rs_ring_params_validate(&m.params, &err)) != 0) {
        snprintf(why, sizeof(why), "%s", err.msg);
    }
    rs_membership_free(&m);
    if (rc != 0) {
        fprintf(stderr, "%s: config: %s; nothing written\n", progname, why);
        return 1;
    }
    return 0;
}

static int
cmd_ring_set(int argc, char **argv) {
    static const struct option opts[] = {
        KV_COMMON_OPTIONS,
        {"algorithm", required_argument, NULL, OPT_ALGORITHM},
        {"hash", required_argument, NULL, OPT_HASH},
        {"replicas", required_argument, NULL, OPT_REPLICAS},
        {"hash-tag", required_argument, NULL, OPT_HASH_TAG},
        {"force", required_argument, NULL, OPT_FORCE},
        {"max-removal-fraction", required_argument, NULL, OPT_MAX_REMOVAL},
        {NULL, 0, NULL, 0},
    };
    kv_opts o = {0};
    json_t *set = json_object(); /* the fields to change, in option order */
    int rc = EXIT_USAGE, c;
    consul_cli *cli = NULL;
    consul_kv kv = {0};
    json_t *obj = NULL, *prev = NULL;
    char *text = NULL;
    if (set == NULL) {
        return 1;
    }
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        uint32_t u;
        double d;
        bool b;
        if ((c == OPT_ALGORITHM || c == OPT_HASH || c == OPT_HASH_TAG) && !is_utf8(optarg)) {
            rc = usage_error(usage_ring_set, "--%s: not UTF-8",
                             c == OPT_ALGORITHM ? "algorithm"
                             : c == OPT_HASH    ? "hash"
                                                : "hash-tag");
            goto out;
        }
        switch (c) {
        case OPT_ALGORITHM:
            json_object_set_new(set, "algorithm", json_string(optarg));
            break;
        case OPT_HASH:
            json_object_set_new(set, "hash", json_string(optarg));
            break;
        case OPT_REPLICAS:
            if (parse_u32(optarg, 0, UINT32_MAX, &u) != 0) {
                rc = usage_error(usage_ring_set,
                                 "--replicas: expected a positive integer, got '%s'", optarg);
                goto out;
            }
            json_object_set_new(set, "replicas", json_integer(u));
            break;
        case OPT_HASH_TAG:
            json_object_set_new(set, "hash_tag", json_string(optarg));
            break;
        case OPT_FORCE:
            if (parse_bool(optarg, &b) != 0) {
                rc = usage_error(usage_ring_set, "--force: expected true or false, got '%s'",
                                 optarg);
                goto out;
            }
            json_object_set_new(set, "force", json_boolean(b));
            break;
        case OPT_MAX_REMOVAL:
            if (!parse_double(optarg, &d)) {
                rc = usage_error(usage_ring_set,
                                 "--max-removal-fraction: expected a number, got '%s'", optarg);
                goto out;
            }
            json_object_set_new(set, "max_removal_fraction", json_real(d));
            break;
        case OPT_HELP:
            usage_ring_set(stdout);
            rc = 0;
            goto out;
        default:
            if (!kv_common_opt(c, optarg, &o)) {
                usage_ring_set(stderr);
                goto out;
            }
        }
    }
    if (optind < argc) {
        rc = usage_error(usage_ring_set, "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if ((rc = kv_resolve(&o, usage_ring_set)) >= 0) {
        goto out;
    }
    if (json_object_size(set) == 0) {
        rc = usage_error(usage_ring_set, "%s", "nothing to set: give at least one option");
        goto out;
    }
    rc = 1;
    /* Names and a hash tag's length are checked here for a message that lists the choices;
     * everything else by the sidecars' parser below. */
    const json_t *v;
    rs_algorithm alg;
    rs_hash_kind hk;
    if ((v = json_object_get(set, "algorithm")) != NULL &&
        rs_algorithm_from_name(json_string_value(v), &alg) != 0) {
        fprintf(stderr, "%s: config: algorithm: unknown algorithm '%s' (known:", progname,
                json_string_value(v));
        for (int i = 0; i < RS_ALG_COUNT; i++) {
            fprintf(stderr, " %s", rs_algorithm_name((rs_algorithm)i));
        }
        fprintf(stderr, "); nothing written\n");
        goto out;
    }
    if ((v = json_object_get(set, "hash")) != NULL &&
        rs_hash_from_name(json_string_value(v), &hk) != 0) {
        fprintf(stderr, "%s: config: hash: unknown hash '%s' (known:", progname,
                json_string_value(v));
        for (int i = 0; i < RS_HASH_COUNT; i++) {
            fprintf(stderr, " %s", rs_hash_name((rs_hash_kind)i));
        }
        fprintf(stderr, "); nothing written\n");
        goto out;
    }
    if ((v = json_object_get(set, "hash_tag")) != NULL && json_string_length(v) != 0 &&
        json_string_length(v) != 2) {
        fprintf(stderr,
                "%s: config: hash_tag must be empty or exactly two characters, got '%s'; nothing "
                "written\n",
                progname, json_string_value(v));
        goto out;
    }
    if ((cli = kv_connect(&o)) == NULL || kv_read(cli, &o, "config", &kv) != 0) {
        goto out;
    }
    if (kv.exists) {
        char hint[PREFIX_MAX + 64];
        snprintf(hint, sizeof(hint), "replace it with 'consul kv delete %s/config' first",
                 o.prefix);
        if ((obj = kv_object(&kv, "config", hint)) == NULL) {
            goto out;
        }
    } else if ((obj = json_object()) == NULL) {
        goto out;
    }
    if ((prev = json_deep_copy(obj)) == NULL) {
        goto out;
    }
    char changes[1024] = "";
    const char *field;
    json_t *nv;
    json_object_foreach(set, field, nv) {
        const json_t *cur = json_object_get(obj, field);
        if (!json_equal(cur, nv)) {
            note_change(changes, sizeof(changes), field, cur, nv);
        }
        json_object_set(obj, field, nv);
    }
    if (kv.exists && json_equal(obj, prev)) {
        if (o.json) {
            rc = print_write_json(&o, "config", "unchanged", json_incref(obj), NULL);
        } else {
            char *t = json_dumps(obj, KV_JSON_FLAGS);
            printf("config: unchanged; nothing written (%s)\n", t != NULL ? t : "");
            free(t);
            rc = 0;
        }
        goto out;
    }
    if ((text = json_dumps(obj, KV_JSON_FLAGS)) == NULL) {
        fprintf(stderr, "%s: out of memory (or an argument is not UTF-8)\n", progname);
        goto out;
    }
    if (config_check(o.prefix, text) != 0 ||
        kv_write(cli, &o, "config", text, kv.exists ? kv.modify_index : 0) != 0) {
        goto out;
    }
    if (o.json) {
        rc = print_write_json(&o, "config", kv.exists ? "set" : "created", json_incref(obj),
                              kv.exists ? prev : NULL);
        if (kv.exists) {
            prev = NULL;
        }
    } else {
        printf("config: %s (now %s)\n", changes, text);
        if (json_is_true(json_object_get(obj, "force"))) {
            printf("note: with force true the sidecars apply every update, even a mass removal; "
                   "set --force false when done\n");
        }
        rc = 0;
    }
out:
    free(text);
    json_decref(obj);
    json_decref(prev);
    json_decref(set);
    consul_kv_free(&kv);
    consul_cli_free(cli);
    return rc;
}

/* ---- ring show, ring confirm ---- */

/* The KV prefix as the sidecars see it. */
typedef struct kv_state {
    consul_reply listing;
    rs_membership m;
    bool have_config;       /* <prefix>/config exists */
    bool config_rejected;   /* ... and the sidecars reject it */
    uint64_t confirm_index; /* ModifyIndex of <prefix>/confirm, 0 when absent */
    rs_ring *ring;          /* NULL when the nodes give no ring */
    char ring_error[256];
} kv_state;

static void
kv_state_free(kv_state *s) {
    consul_reply_free(&s->listing);
    rs_membership_free(&s->m);
    rs_ring_unref(s->ring);
    *s = (kv_state){0};
}

/* Reads the prefix and builds its ring as a freshly started sidecar would:
 * rs_kv_to_membership with a new memo over the defaults, then rs_ring_build. Returns 0,
 * or 1 having printed why. */
static int
kv_state_load(consul_cli *cli, const kv_opts *o, kv_state *s) {
    *s = (kv_state){0};
    rs_error err = {{0}};
    if (consul_cli_kv_list(cli, o->prefix, &s->listing, &err) != 0) {
        fprintf(stderr, "%s: %s\n", progname, err.msg);
        return 1;
    }
    char config_key[KEY_MAX], confirm_key[KEY_MAX];
    snprintf(config_key, sizeof(config_key), "%s/config", o->prefix);
    snprintf(confirm_key, sizeof(confirm_key), "%s/confirm", o->prefix);
    json_t *doc = json_loadb(s->listing.body, s->listing.len, 0, NULL);
    size_t i;
    json_t *e;
    json_array_foreach(doc, i, e) {
        const char *k = json_string_value(json_object_get(e, "Key"));
        json_t *mi = json_object_get(e, "ModifyIndex");
        if (k != NULL && strcmp(k, config_key) == 0) {
            s->have_config = true;
        } else if (k != NULL && strcmp(k, confirm_key) == 0 && json_is_integer(mi)) {
            s->confirm_index = (uint64_t)json_integer_value(mi);
        }
    }
    json_decref(doc);
    /* Consul 1.8 drops keys the token may not read from a listing without saying so
     * (later versions send X-Consul-Results-Filtered-By-ACLs, checked by
     * consul_cli_kv_list). A single-key read is refused instead (403), so reading the keys
     * that make the ring tells a partial listing from the real one. */
    static const char *const probes[] = {"config", "confirm", "nodes/"};
    for (i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        consul_kv kv;
        char key[KEY_MAX];
        snprintf(key, sizeof(key), "%s/%s", o->prefix, probes[i]);
        int prc = consul_cli_kv_get(cli, key, &kv, &err);
        consul_kv_free(&kv);
        if (prc == -EACCES) {
            fprintf(stderr,
                    "%s: %s\n%s: the ACL token may not read %s, so the listing of %s/ may lack "
                    "keys the sidecars see; use a token with read access to the whole prefix\n",
                    progname, err.msg, progname, key, o->prefix);
            return 1;
        }
        if (prc != 0) {
            fprintf(stderr, "%s: %s\n", progname, err.msg);
            return 1;
        }
    }
    rs_kv_memo *memo = NULL;
    rs_ring_params base;
    rs_ring_params_init(&base);
    int rc = rs_kv_memo_new(&memo);
    if (rc != 0) {
        snprintf(err.msg, sizeof(err.msg), "out of memory");
    } else {
        rc = rs_kv_to_membership(memo, s->listing.body, s->listing.len, o->prefix, &base,
                                 DEFAULT_MAX_REMOVAL, &s->m, &err);
    }
    rs_kv_memo_free(memo);
    if (rc != 0) {
        fprintf(stderr, "%s: %s/: %s\n", progname, o->prefix, err.msg);
        return 1;
    }
    for (i = 0; i < s->m.n_rejections; i++) {
        s->config_rejected |= strcmp(s->m.rejections[i].key, "config") == 0;
    }
    if (s->m.n_nodes == 0) {
        snprintf(s->ring_error, sizeof(s->ring_error), "no nodes under %.200s/nodes/", o->prefix);
    } else if (rs_ring_build(&s->m.params, s->m.nodes, s->m.n_nodes, &s->ring, &err) != 0) {
        snprintf(s->ring_error, sizeof(s->ring_error), "%s", err.msg);
        s->ring = NULL;
    }
    return 0;
}

static void
print_params_line(const kv_state *s, FILE *f) {
    const rs_ring_params *p = &s->m.params;
    fprintf(f, "%s, %s, replicas %u, hash_tag %s", rs_algorithm_name(p->algorithm),
            rs_hash_name(p->hash), p->replicas, p->hash_tag[0] ? p->hash_tag : "none");
}

/* Warnings about what may make a sidecar's ring differ from the one computed here. */
static void
print_state_warnings(const kv_state *s, const char *prefix, FILE *f) {
    if (!s->have_config) {
        fprintf(f,
                "note: %s/config does not exist: each sidecar uses its config file's ring "
                "parameters (shown: the defaults)\n",
                prefix);
    } else if (s->config_rejected) {
        fprintf(f,
                "note: %s/config is rejected: each sidecar keeps its last good config (shown: "
                "the defaults)\n",
                prefix);
    }
    if (s->m.n_rejections_total > 0) {
        fprintf(f,
                "note: %zu key(s) rejected: a sidecar that saw an earlier good value of a rejected "
                "key keeps it, so its ring may differ from the one shown\n",
                s->m.n_rejections_total);
    }
}

static json_t *
state_json(const kv_state *s, const kv_opts *o, consul_cli *cli) {
    const rs_ring_params *p = &s->m.params;
    json_t *nodes = json_array(), *rej = json_array();
    json_t *doc =
        json_pack("{s:s, s:s, s:I, s:{s:b, s:b, s:s, s:s, s:i, s:s, s:b, s:f}, s:o, s:o, s:o}",
                  "prefix", o->prefix, "consul", consul_cli_url(cli), "index",
                  (json_int_t)s->listing.index, "config", "present", s->have_config, "rejected",
                  s->config_rejected, "algorithm", rs_algorithm_name(p->algorithm), "hash",
                  rs_hash_name(p->hash), "replicas", (int)p->replicas, "hash_tag", p->hash_tag,
                  "force", s->m.force, "max_removal_fraction", s->m.max_removal_fraction, "confirm",
                  s->m.confirm[0] ? json_string(s->m.confirm) : json_null(), "nodes", nodes,
                  "rejections", rej);
    if (doc == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < s->m.n_nodes; i++) {
        const rs_node *n = &s->m.nodes[i];
        int at = s->ring != NULL ? rs_ring_find(s->ring, n->id) : -1;
        json_t *share =
            at >= 0 ? json_real(rs_ring_node_at(s->ring, (size_t)at)->share) : json_null();
        json_array_append_new(
            nodes,
            json_pack("{s:o, s:o, s:i, s:o, s:b, s:o}", "id", jstr(n->id, strlen(n->id)), "address",
                      jstr(n->address, strlen(n->address)), "weight", (int)n->weight, "zone",
                      jstr(n->zone ? n->zone : "", n->zone ? strlen(n->zone) : 0), "enabled",
                      n->enabled, "share", share));
    }
    for (size_t i = 0; i < s->m.n_rejections; i++) {
        const rs_kv_rejection *r = &s->m.rejections[i];
        json_array_append_new(rej, json_pack("{s:o, s:o}", "key", jstr(r->key, strlen(r->key)),
                                             "reason", jstr(r->reason, strlen(r->reason))));
    }
    json_object_set_new(doc, "rejections_total", json_integer((json_int_t)s->m.n_rejections_total));
    if (s->ring != NULL) {
        json_object_set_new(doc, "ring",
                            json_pack("{s:s, s:I, s:I, s:I, s:f, s:b}", "fingerprint",
                                      rs_ring_fingerprint(s->ring), "nodes",
                                      (json_int_t)rs_ring_node_count(s->ring), "enabled",
                                      (json_int_t)rs_ring_enabled_count(s->ring), "points",
                                      (json_int_t)rs_ring_point_count(s->ring), "imbalance",
                                      rs_ring_imbalance(s->ring), "confirmed",
                                      strcmp(s->m.confirm, rs_ring_fingerprint(s->ring)) == 0));
        json_object_set_new(doc, "ring_error", json_null());
    } else {
        json_object_set_new(doc, "ring", json_null());
        json_object_set_new(doc, "ring_error", json_string(s->ring_error));
    }
    return doc;
}

static int
cmd_ring_show(int argc, char **argv) {
    kv_opts o = {0};
    int prc = kv_common_opts(argc, argv, usage_ring_show, &o);
    if (prc >= 0) {
        return prc;
    }
    if (optind < argc) {
        return usage_error(usage_ring_show, "unexpected argument '%s'", argv[optind]);
    }
    int rc = kv_resolve(&o, usage_ring_show);
    if (rc >= 0) {
        return rc;
    }
    consul_cli *cli = NULL;
    kv_state s = {0};
    table t;
    table_init(&t, 6);
    t.right[2] = t.right[5] = true;
    rc = 1;
    if ((cli = kv_connect(&o)) == NULL || kv_state_load(cli, &o, &s) != 0) {
        goto out;
    }
    if (o.json) {
        rc = print_json(state_json(&s, &o, cli));
        goto out;
    }
    printf("prefix:                %s/ (Consul %s, index %llu)\n", o.prefix, consul_cli_url(cli),
           (unsigned long long)s.listing.index);
    printf("parameters:            ");
    print_params_line(&s, stdout);
    printf(" (%s)\n", s.have_config && !s.config_rejected ? "KV config over the defaults"
                      : s.have_config                     ? "config rejected: defaults"
                                                          : "no KV config: defaults");
    printf("force:                 %s\n", s.m.force ? "true" : "false");
    printf("max_removal_fraction:  %g\n", s.m.max_removal_fraction);
    printf("confirm:               %s\n", s.m.confirm[0] ? s.m.confirm : "-");
    if (s.ring != NULL) {
        printf("fingerprint:           %s (%zu nodes, %zu enabled, %zu points, imbalance %.3f)%s\n",
               rs_ring_fingerprint(s.ring), rs_ring_node_count(s.ring),
               rs_ring_enabled_count(s.ring), rs_ring_point_count(s.ring),
               rs_ring_imbalance(s.ring),
               strcmp(s.m.confirm, rs_ring_fingerprint(s.ring)) == 0 ? " confirmed" : "");
    } else {
        printf("fingerprint:           - (no ring: %s)\n", s.ring_error);
    }
    if (s.m.n_nodes > 0) {
        const char *head[] = {"id", "address", "weight", "zone", "enabled", "share"};
        if (table_add(&t, head) != 0) {
            goto out;
        }
        /* Ring order (by id, as twemproxy sorts servers) when there is a ring. */
        size_t n = s.ring != NULL ? rs_ring_node_count(s.ring) : s.m.n_nodes;
        for (size_t i = 0; i < n; i++) {
            const char *id, *address, *zone;
            uint32_t weight;
            bool enabled;
            char wbuf[16], sbuf[32] = "-";
            if (s.ring != NULL) {
                const rs_ring_node *rn = rs_ring_node_at(s.ring, i);
                id = rn->id, address = rn->address, zone = rn->zone, weight = rn->weight;
                enabled = rn->enabled;
                snprintf(sbuf, sizeof(sbuf), "%.2f%%", rn->share * 100);
            } else {
                const rs_node *nn = &s.m.nodes[i];
                id = nn->id, address = nn->address, zone = nn->zone ? nn->zone : "";
                weight = nn->weight, enabled = nn->enabled;
            }
            snprintf(wbuf, sizeof(wbuf), "%u", weight);
            const char *row[] = {id,  address, wbuf, zone[0] ? zone : "-", enabled ? "yes" : "no",
                                 sbuf};
            if (table_add(&t, row) != 0) {
                goto out;
            }
        }
        printf("\n");
        table_print(&t, "");
    }
    if (s.m.n_rejections_total > 0) {
        printf("\nrejected (%zu):\n", s.m.n_rejections_total);
        for (size_t i = 0; i < s.m.n_rejections; i++) {
            printf("  %s: %s\n", s.m.rejections[i].key, s.m.rejections[i].reason);
        }
        if (s.m.n_rejections_total > s.m.n_rejections) {
            printf("  ... and %zu more\n", s.m.n_rejections_total - s.m.n_rejections);
        }
    }
    if (!s.have_config || s.config_rejected || s.m.n_rejections_total > 0) {
        printf("\n");
        print_state_warnings(&s, o.prefix, stdout);
    }
    rc = 0;
out:
    table_free(&t);
    kv_state_free(&s);
    consul_cli_free(cli);
    return rc;
}

static bool
is_fingerprint(const char *s) {
    if (strlen(s) != RS_FINGERPRINT_LEN) {
        return false;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) {
            return false;
        }
    }
    return true;
}

/* Asks on the terminal. Returns true for y/yes. */
static bool
ask_yes(const char *question) {
    fprintf(stderr, "%s [y/N] ", question);
    fflush(stderr);
    char *line = NULL;
    size_t cap = 0;
    bool yes = false;
    if (getline(&line, &cap, stdin) > 0) {
        yes = strcmp(line, "y\n") == 0 || strcmp(line, "yes\n") == 0 || strcmp(line, "Y\n") == 0 ||
              strcmp(line, "YES\n") == 0;
    }
    free(line);
    return yes;
}

static int
cmd_ring_confirm(int argc, char **argv) {
    static const struct option opts[] = {
        KV_COMMON_OPTIONS,
        {"yes", no_argument, NULL, OPT_YES},
        {"fingerprint", required_argument, NULL, OPT_FINGERPRINT},
        {NULL, 0, NULL, 0},
    };
    kv_opts o = {0};
    bool yes = false;
    const char *want = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_YES:
            yes = true;
            break;
        case OPT_FINGERPRINT:
            if (!is_fingerprint(optarg)) {
                return usage_error(usage_ring_confirm,
                                   "--fingerprint: expected %d lowercase hex digits, got '%s'",
                                   RS_FINGERPRINT_LEN, optarg);
            }
            want = optarg;
            break;
        case OPT_HELP:
            usage_ring_confirm(stdout);
            return 0;
        default:
            if (!kv_common_opt(c, optarg, &o)) {
                usage_ring_confirm(stderr);
                return EXIT_USAGE;
            }
        }
    }
    if (optind < argc) {
        return usage_error(usage_ring_confirm, "unexpected argument '%s'", argv[optind]);
    }
    int rc = kv_resolve(&o, usage_ring_confirm);
    if (rc >= 0) {
        return rc;
    }
    if (!yes && !isatty(STDIN_FILENO)) {
        return usage_error(usage_ring_confirm, "%s",
                           "stdin is not a terminal: pass --yes to confirm without a prompt");
    }
    consul_cli *cli = NULL;
    kv_state s = {0};
    char *text = NULL;
    json_t *val = NULL;
    rc = 1;
    if ((cli = kv_connect(&o)) == NULL || kv_state_load(cli, &o, &s) != 0) {
        goto out;
    }
    /* Everything but the JSON answer goes to stderr under --json. */
    FILE *info = o.json ? stderr : stdout;
    const char *fp = want;
    if (s.ring != NULL) {
        fprintf(info, "ring: %zu nodes (%zu enabled), fingerprint %s; ", rs_ring_node_count(s.ring),
                rs_ring_enabled_count(s.ring), rs_ring_fingerprint(s.ring));
        print_params_line(&s, info);
        fprintf(info, "\n");
        if (fp == NULL) {
            fp = rs_ring_fingerprint(s.ring);
        } else if (strcmp(fp, rs_ring_fingerprint(s.ring)) != 0) {
            fprintf(stderr, "%s: note: confirming %s as asked; the KV prefix gives %s here\n",
                    progname, fp, rs_ring_fingerprint(s.ring));
        }
    } else if (fp == NULL) {
        fprintf(stderr, "%s: nothing to confirm: %s/ gives no ring (%s)\n", progname, o.prefix,
                s.ring_error);
        goto out;
    } else {
        fprintf(stderr, "%s: note: %s/ gives no ring here (%s); confirming %s as asked\n", progname,
                o.prefix, s.ring_error, fp);
    }
    fflush(info);
    print_state_warnings(&s, o.prefix, stderr);
    if (strcmp(s.m.confirm, fp) == 0) {
        if (o.json) {
            rc = print_write_json(&o, "confirm", "unchanged", json_pack("{s:s}", "fingerprint", fp),
                                  NULL);
        } else {
            printf("confirm: already %s; nothing written\n", fp);
            rc = 0;
        }
        goto out;
    }
    if (!yes && !ask_yes("Confirm this ring for every sidecar holding it?")) {
        fprintf(stderr, "%s: not confirmed; nothing written\n", progname);
        goto out;
    }
    if ((val = json_pack("{s:s}", "fingerprint", fp)) == NULL ||
        (text = json_dumps(val, KV_JSON_FLAGS)) == NULL) {
        goto out;
    }
    if (kv_write(cli, &o, "confirm", text, s.confirm_index) != 0) {
        goto out;
    }
    if (o.json) {
        rc = print_write_json(&o, "confirm", "confirmed", json_incref(val),
                              s.m.confirm[0] ? json_pack("{s:s}", "fingerprint", s.m.confirm)
                                             : NULL);
    } else {
        printf("confirm: %s written; sidecars holding an update with this fingerprint apply it\n",
               text);
        rc = 0;
    }
out:
    free(text);
    json_decref(val);
    kv_state_free(&s);
    consul_cli_free(cli);
    return rc;
}

/* "ring" alone asks the daemon; "ring set|show|confirm" works on Consul. */
static int
cmd_ring_any(int argc, char **argv, const char *sock) {
    if (argc > 1 && strcmp(argv[1], "set") == 0) {
        return cmd_ring_set(argc - 1, argv + 1);
    }
    if (argc > 1 && strcmp(argv[1], "show") == 0) {
        return cmd_ring_show(argc - 1, argv + 1);
    }
    if (argc > 1 && strcmp(argv[1], "confirm") == 0) {
        return cmd_ring_confirm(argc - 1, argv + 1);
    }
    return cmd_ring(argc, argv, sock);
}

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv, const char *sock); /* NULL: offline */
    int (*run_offline)(int argc, char **argv);
} command;

static const command commands[] = {
    {"lookup", cmd_lookup, NULL},
    {"route", cmd_route, NULL},
    {"ring", cmd_ring_any, NULL},
    {"nodes", cmd_nodes, NULL},
    {"node", cmd_node, NULL},
    {"watch", cmd_watch, NULL},
    {"ping", cmd_ping, NULL},
    {"dump", cmd_dump, NULL},
    {"simulate", NULL, cmd_simulate},
    {"place", NULL, cmd_place},
    {"check-config", NULL, cmd_check_config},
};

int
main(int argc, char **argv) {
    const char *sock = default_socket();
    int i = 1;
    /* Global options, up to the command name. */
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_main(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            printf("ringctl %s\n", RINGSIDE_VERSION);
            return 0;
        }
        if (strcmp(a, "--socket") == 0) {
            if (i + 1 == argc) {
                return usage_error(usage_main, "%s", "--socket requires a PATH");
            }
            sock = argv[++i];
        } else if (strncmp(a, "--socket=", 9) == 0) {
            sock = a + 9;
        } else {
            return usage_error(usage_main, "unknown option '%s'", a);
        }
    }
    if (i == argc) {
        return usage_error(usage_main, "%s", "missing COMMAND");
    }
    const char *name = argv[i];
    if (strcmp(name, "help") == 0) {
        usage_main(stdout);
        return 0;
    }
    for (size_t c = 0; c < sizeof(commands) / sizeof(commands[0]); c++) {
        if (strcmp(name, commands[c].name) == 0) {
            return commands[c].run != NULL ? commands[c].run(argc - i, argv + i, sock)
                                           : commands[c].run_offline(argc - i, argv + i);
        }
    }
    return usage_error(usage_main, "unknown command '%s'", name);
}
