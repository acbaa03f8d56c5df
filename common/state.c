/* State snapshot (de)serialisation: a checksummed JSON document, decoded strictly and
 * with bounds, so a damaged or foreign file is refused whole and never half-loaded. */
#include "rs_state.h"
#include "rs_error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#define CHECKSUM_PREFIX "sha256:"
#define CHECKSUM_PREFIX_LEN (sizeof(CHECKSUM_PREFIX) - 1)
#define CHECKSUM_HEX_LEN ((size_t)2 * SHA256_DIGEST_LENGTH)
#define DUMP_CANONICAL (JSON_COMPACT | JSON_SORT_KEYS)
#define PATH_CAP 48 /* "state.nodes[9999].address" and the like */

/* Well-formed UTF-8 as jansson accepts it: no overlongs, surrogates or > U+10FFFF. */
static bool
utf8_valid(const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    while (*s != '\0') {
        unsigned c = *s, n;
        uint32_t cp;
        if (c < 0x80) {
            s++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        for (unsigned i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        s += n + 1;
    }
    return true;
}

static bool
token_valid(const char *s, size_t max, bool upper_dot) {
    size_t len = strnlen(s, max + 1);
    if (len == 0 || len > max) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                  (upper_dot && ((c >= 'A' && c <= 'Z') || c == '.'));
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* Node arrays grow by doubling from 4; decode allocates the same capacity so that
 * rs_state_add_node can append to a decoded state. */
static size_t
node_capacity(size_t n) {
    size_t cap = 4;
    while (cap < n) {
        cap *= 2;
    }
    return cap;
}

void
rs_state_init(rs_state *s) {
    memset(s, 0, sizeof(*s));
    s->format = RS_STATE_FORMAT;
    rs_ring_params_init(&s->params);
}

int
rs_state_add_node(rs_state *s, const rs_node *n, bool healthy) {
    if (s->n_nodes >= RS_NODES_MAX) {
        return -E2BIG;
    }
    if (s->nodes == NULL || (s->n_nodes >= 4 && (s->n_nodes & (s->n_nodes - 1)) == 0)) {
        size_t cap = node_capacity(s->n_nodes + 1);
        rs_state_node *grown = realloc(s->nodes, cap * sizeof(*grown));
        if (grown == NULL) {
            return -ENOMEM;
        }
        s->nodes = grown;
    }
    char *id = strdup(n->id != NULL ? n->id : "");
    char *address = strdup(n->address != NULL ? n->address : "");
    char *zone = strdup(n->zone != NULL ? n->zone : "");
    if (id == NULL || address == NULL || zone == NULL) {
        free(id);
        free(address);
        free(zone);
        return -ENOMEM;
    }
    s->nodes[s->n_nodes++] = (rs_state_node){
        .node = {.id = id,
                 .address = address,
                 .zone = zone,
                 .weight = n->weight,
                 .enabled = n->enabled},
        .healthy = healthy,
    };
    return 0;
}

void
rs_state_free(rs_state *s) {
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; s->nodes != NULL && i < s->n_nodes; i++) {
        free((void *)s->nodes[i].node.id);
        free((void *)s->nodes[i].node.address);
        free((void *)s->nodes[i].node.zone);
    }
    free(s->nodes);
    memset(s, 0, sizeof(*s));
}

typedef struct id_at {
    const char *id;
    size_t index;
} id_at;

static int
id_at_cmp(const void *a, const void *b) {
    const id_at *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    /* Ties by position, so the report names the first occurrence. */
    return c != 0 ? c : (x->index < y->index ? -1 : x->index > y->index);
}

static int
check_unique_ids(const rs_state *s, rs_error *err) {
    if (s->n_nodes < 2) {
        return 0;
    }
    id_at *v = malloc(s->n_nodes * sizeof(*v));
    if (v == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->n_nodes; i++) {
        v[i] = (id_at){s->nodes[i].node.id, i};
    }
    qsort(v, s->n_nodes, sizeof(*v), id_at_cmp);
    int rc = 0;
    for (size_t i = 1; i < s->n_nodes; i++) {
        if (strcmp(v[i - 1].id, v[i].id) == 0) {
            rc = rs_error_set(err, -EINVAL,
                              "state.nodes[%zu].id: duplicate of nodes[%zu] (\"%.64s\")",
                              v[i].index, v[i - 1].index, v[i].id);
            break;
        }
    }
    free(v);
    return rc;
}

int
rs_state_validate(const rs_state *s, rs_error *err) {
    rs_error sub;
    if (s->format != RS_STATE_FORMAT) {
        return rs_error_set(err, -EINVAL, "state.format: must be %d, got %u", RS_STATE_FORMAT,
                            s->format);
    }
    if (!token_valid(s->ring, RS_STATE_RING_MAX, true)) {
        return rs_error_set(err, -EINVAL,
                            "state.ring: must be 1 to %d characters from [A-Za-z0-9_.-]",
                            RS_STATE_RING_MAX);
    }
    if (rs_ring_params_validate(&s->params, &sub) != 0) {
        return rs_error_set(err, -EINVAL, "state.params.%s", sub.msg);
    }
    if (!utf8_valid(s->params.hash_tag)) {
        return rs_error_set(err, -EINVAL, "state.params.hash_tag: not valid UTF-8");
    }
    if (s->n_nodes > RS_NODES_MAX) {
        return rs_error_set(err, -EINVAL, "state.nodes: too many nodes (%zu, max %d)", s->n_nodes,
                            RS_NODES_MAX);
    }
    if (s->n_nodes > 0 && s->nodes == NULL) {
        return rs_error_set(err, -EINVAL, "state.nodes: NULL array with %zu nodes", s->n_nodes);
    }
    for (size_t i = 0; i < s->n_nodes; i++) {
        const rs_node *n = &s->nodes[i].node;
        if (rs_node_validate(n, &sub) != 0) {
            return rs_error_set(err, -EINVAL, "state.nodes[%zu]: %s", i, sub.msg);
        }
        const char *bad = !utf8_valid(n->id)                          ? "id"
                          : !utf8_valid(n->address)                   ? "address"
                          : (n->zone != NULL && !utf8_valid(n->zone)) ? "zone"
                                                                      : NULL;
        if (bad != NULL) {
            return rs_error_set(err, -EINVAL, "state.nodes[%zu].%s: not valid UTF-8", i, bad);
        }
    }
    int rc = check_unique_ids(s, err);
    if (rc != 0) {
        return rc == -ENOMEM ? rs_error_set(err, -ENOMEM, "out of memory") : rc;
    }
    if (!token_valid(s->source, RS_STATE_SOURCE_MAX, false)) {
        return rs_error_set(err, -EINVAL,
                            "state.source: must be 1 to %d characters from [a-z0-9_-]",
                            RS_STATE_SOURCE_MAX);
    }
    const struct {
        const char *name;
        uint64_t v;
    } big[] = {{"epoch", s->epoch},
               {"consul.kv_index", s->kv_index},
               {"consul.health_index", s->health_index}};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
        if (big[i].v > (uint64_t)INT64_MAX) {
            return rs_error_set(err, -EINVAL, "state.%s: must be at most %lld", big[i].name,
                                (long long)INT64_MAX);
        }
    }
    if (s->written_at < 0) {
        return rs_error_set(err, -EINVAL, "state.written_at: must not be negative");
    }
    return 0;
}

static void
hex_digest(const char *text, size_t len, char hex[CHECKSUM_HEX_LEN + 1]) {
    static const char digits[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)text, len, md);
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0xf];
    }
    hex[CHECKSUM_HEX_LEN] = '\0';
}

/* Canonical dump of the state object and its SHA-256 in hex. 0 or -ENOMEM. */
static int
state_checksum(const json_t *state, char hex[CHECKSUM_HEX_LEN + 1]) {
    char *canon = json_dumps(state, DUMP_CANONICAL);
    if (canon == NULL) {
        return -ENOMEM;
    }
    hex_digest(canon, strlen(canon), hex);
    free(canon);
    return 0;
}

/* The algorithm-specific parameters, each only when it differs from its default, so
 * that snapshots of rings using none of them stay exactly as they were. */
static int
put_algorithm_params(json_t *params, const rs_ring_params *p) {
    rs_ring_params d;
    rs_ring_params_init(&d);
    int rc = 0;
    if (p->table_size != 0 && p->table_size != d.table_size) {
        rc |= json_object_set_new(params, "table_size", json_integer(p->table_size));
    }
    if (p->points_per_weight != 0 && p->points_per_weight != d.points_per_weight) {
        rc |= json_object_set_new(params, "points_per_weight", json_integer(p->points_per_weight));
    }
    if (p->vnodes != 0 && p->vnodes != d.vnodes) {
        rc |= json_object_set_new(params, "vnodes", json_integer(p->vnodes));
    }
    if (p->replica_factor != 0 && p->replica_factor != d.replica_factor) {
        rc |= json_object_set_new(params, "replica_factor", json_integer(p->replica_factor));
    }
    if (p->zone_aware_replicas) {
        rc |= json_object_set_new(params, "zone_aware_replicas", json_true());
    }
    return rc;
}

static json_t *
state_to_json(const rs_state *s) {
    json_t *nodes = json_array();
    if (nodes == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < s->n_nodes; i++) {
        const rs_state_node *sn = &s->nodes[i];
        json_t *node = json_pack("{s:s, s:s, s:I, s:s, s:b, s:b}", "id", sn->node.id, "address",
                                 sn->node.address, "weight", (json_int_t)sn->node.weight, "zone",
                                 sn->node.zone != NULL ? sn->node.zone : "", "enabled",
                                 (int)sn->node.enabled, "healthy", (int)sn->healthy);
        if (json_array_append_new(nodes, node) != 0) {
            json_decref(nodes);
            return NULL;
        }
    }
    json_t *params =
        json_pack("{s:s, s:s, s:I, s:s}", "algorithm", rs_algorithm_name(s->params.algorithm),
                  "hash", rs_hash_name(s->params.hash), "replicas", (json_int_t)s->params.replicas,
                  "hash_tag", s->params.hash_tag);
    if (params != NULL && put_algorithm_params(params, &s->params) != 0) {
        json_decref(params);
        params = NULL;
    }
    /* "o" steals nodes and params, also when json_pack fails. */
    return json_pack("{s:s, s:I, s:o, s:o, s:s, s:{s:I, s:I}, s:I}", "ring", s->ring, "epoch",
                     (json_int_t)s->epoch, "params", params, "nodes", nodes, "source", s->source,
                     "consul", "kv_index", (json_int_t)s->kv_index, "health_index",
                     (json_int_t)s->health_index, "written_at", (json_int_t)s->written_at);
}

int
rs_state_encode(const rs_state *s, char **out, size_t *len) {
    char hex[CHECKSUM_HEX_LEN + 1];
    char checksum[CHECKSUM_PREFIX_LEN + CHECKSUM_HEX_LEN + 1];
    json_t *state = NULL, *doc = NULL;
    char *text = NULL;
    int rc = -ENOMEM;

    *out = NULL;
    *len = 0;
    if (rs_state_validate(s, NULL) != 0) {
        return -EINVAL;
    }
    if ((state = state_to_json(s)) == NULL || state_checksum(state, hex) != 0) {
        goto out;
    }
    snprintf(checksum, sizeof(checksum), "%s%s", CHECKSUM_PREFIX, hex);
    doc = json_pack("{s:i, s:s, s:O}", "format", RS_STATE_FORMAT, "checksum", checksum, "state",
                    state);
    if (doc == NULL || (text = json_dumps(doc, JSON_INDENT(2))) == NULL) {
        goto out;
    }
    size_t n = strlen(text);
    char *grown = realloc(text, n + 2);
    if (grown == NULL) {
        goto out;
    }
    text = grown;
    text[n] = '\n';
    text[n + 1] = '\0';
    *out = text;
    *len = n + 1;
    text = NULL;
    rc = 0;
out:
    free(text);
    json_decref(doc);
    json_decref(state);
    return rc;
}

/* ---- decoding ---------------------------------------------------------------------- */

/* Only keys in want[0..n), and want[0..required) all present. */
static int
check_keys(const json_t *obj, const char *path, const char *const *want, size_t n, size_t required,
           rs_error *err) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value) {
        size_t i = 0;
        while (i < n && strcmp(key, want[i]) != 0) {
            i++;
        }
        if (i == n) {
            return rs_error_set(err, -EINVAL, "%s: unknown key \"%.40s\"", path, key);
        }
    }
    for (size_t i = 0; i < required; i++) {
        if (json_object_get(obj, want[i]) == NULL) {
            return rs_error_set(err, -EINVAL, "%s.%s: missing", path, want[i]);
        }
    }
    return 0;
}

static int
get_int(const json_t *obj, const char *path, const char *key, long long min, long long max,
        long long *out, rs_error *err) {
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        return rs_error_set(err, -EINVAL, "%s.%s: must be an integer between %lld and %lld", path,
                            key, min, max);
    }
    *out = json_integer_value(v);
    return 0;
}

/* A string of at most max bytes, without NULs. */
static int
get_str(const json_t *obj, const char *path, const char *key, size_t max, const char **out,
        rs_error *err) {
    const json_t *v = json_object_get(obj, key);
    const char *s = json_string_value(v);
    if (s == NULL) {
        return rs_error_set(err, -EINVAL, "%s.%s: must be a string", path, key);
    }
    size_t len = json_string_length(v);
    if (len > max) {
        return rs_error_set(err, -EINVAL, "%s.%s: too long (max %zu bytes)", path, key, max);
    }
    if (strlen(s) != len) {
        return rs_error_set(err, -EINVAL, "%s.%s: contains a NUL byte", path, key);
    }
    *out = s;
    return 0;
}

static int
get_bool(const json_t *obj, const char *path, const char *key, bool *out, rs_error *err) {
    const json_t *v = json_object_get(obj, key);
    if (!json_is_boolean(v)) {
        return rs_error_set(err, -EINVAL, "%s.%s: must be true or false", path, key);
    }
    *out = json_is_true(v);
    return 0;
}

static int
get_object(const json_t *obj, const char *path, const char *key, const json_t **out,
           rs_error *err) {
    const json_t *v = json_object_get(obj, key);
    if (!json_is_object(v)) {
        return rs_error_set(err, -EINVAL, "%s.%s: must be an object", path, key);
    }
    *out = v;
    return 0;
}

static int
decode_params(const json_t *state, rs_ring_params *p, rs_error *err) {
    /* The first four are required; the algorithm parameters are written when not default. */
    static const char *const keys[] = {"algorithm", "hash",           "replicas",
                                       "hash_tag",  "table_size",     "points_per_weight",
                                       "vnodes",    "replica_factor", "zone_aware_replicas"};
    const char *path = "state.params";
    const json_t *obj = NULL;
    rs_ring_params_init(p);                      /* absent algorithm parameters are the defaults */
    const char *alg = "", *hash = "", *tag = ""; /* views into the document */
    long long replicas = 0;
    int rc;
    if ((rc = get_object(state, "state", "params", &obj, err)) != 0 ||
        (rc = check_keys(obj, path, keys, 9, 4, err)) != 0 ||
        (rc = get_str(obj, path, "algorithm", 32, &alg, err)) != 0 ||
        (rc = get_str(obj, path, "hash", 32, &hash, err)) != 0 ||
        (rc = get_int(obj, path, "replicas", 1, RS_REPLICAS_MAX, &replicas, err)) != 0 ||
        (rc = get_str(obj, path, "hash_tag", 8, &tag, err)) != 0) {
        return rc;
    }
    if (rs_algorithm_from_name(alg, &p->algorithm) != 0) {
        return rs_error_set(err, -EINVAL, "%s.algorithm: unknown algorithm \"%s\"", path, alg);
    }
    if (rs_hash_from_name(hash, &p->hash) != 0) {
        return rs_error_set(err, -EINVAL, "%s.hash: unknown hash \"%s\"", path, hash);
    }
    size_t tag_len = strlen(tag);
    if (tag_len != 0 && tag_len != 2) {
        return rs_error_set(err, -EINVAL, "%s.hash_tag: must be empty or exactly two bytes", path);
    }
    p->replicas = (uint32_t)replicas;
    memcpy(p->hash_tag, tag, tag_len + 1);
    static const struct {
        const char *key;
        long long min, max;
    } counts[] = {{"table_size", RS_TABLE_SIZE_MIN, RS_TABLE_SIZE_MAX},
                  {"points_per_weight", 1, RS_POINTS_PER_WEIGHT_MAX},
                  {"vnodes", 1, RS_VNODES_MAX},
                  {"replica_factor", 1, RS_REPLICA_FACTOR_MAX}};
    uint32_t *dst[] = {&p->table_size, &p->points_per_weight, &p->vnodes, &p->replica_factor};
    for (size_t i = 0; i < 4; i++) {
        long long v;
        if (json_object_get(obj, counts[i].key) != NULL) {
            if ((rc = get_int(obj, path, counts[i].key, counts[i].min, counts[i].max, &v, err)) !=
                0) {
                return rc;
            }
            *dst[i] = (uint32_t)v;
        }
    }
    if (json_object_get(obj, "zone_aware_replicas") != NULL &&
        (rc = get_bool(obj, path, "zone_aware_replicas", &p->zone_aware_replicas, err)) != 0) {
        return rc;
    }
    return 0;
}

static int
decode_node(const json_t *v, size_t i, rs_state_node *sn, rs_error *err) {
    static const char *const keys[] = {"id", "address", "weight", "zone", "enabled", "healthy"};
    char path[PATH_CAP];
    const char *id = "", *address = "", *zone = ""; /* views into the document */
    long long weight = 0;
    bool enabled = false, healthy = false;
    int rc;
    snprintf(path, sizeof(path), "state.nodes[%zu]", i);
    if (!json_is_object(v)) {
        return rs_error_set(err, -EINVAL, "%s: must be an object", path);
    }
    if ((rc = check_keys(v, path, keys, 6, 6, err)) != 0 ||
        (rc = get_str(v, path, "id", RS_ID_MAX, &id, err)) != 0 ||
        (rc = get_str(v, path, "address", RS_ADDRESS_MAX, &address, err)) != 0 ||
        (rc = get_int(v, path, "weight", 1, RS_WEIGHT_MAX, &weight, err)) != 0 ||
        (rc = get_str(v, path, "zone", RS_ZONE_MAX, &zone, err)) != 0 ||
        (rc = get_bool(v, path, "enabled", &enabled, err)) != 0 ||
        (rc = get_bool(v, path, "healthy", &healthy, err)) != 0) {
        return rc;
    }
    sn->node.id = strdup(id);
    sn->node.address = strdup(address);
    sn->node.zone = strdup(zone);
    sn->node.weight = (uint32_t)weight;
    sn->node.enabled = enabled;
    sn->healthy = healthy;
    if (sn->node.id == NULL || sn->node.address == NULL || sn->node.zone == NULL) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

static int
decode_nodes(const json_t *state, rs_state *s, rs_error *err) {
    const json_t *arr = json_object_get(state, "nodes");
    if (!json_is_array(arr)) {
        return rs_error_set(err, -EINVAL, "state.nodes: must be an array");
    }
    size_t n = json_array_size(arr);
    if (n > RS_NODES_MAX) {
        return rs_error_set(err, -EINVAL, "state.nodes: too many nodes (%zu, max %d)", n,
                            RS_NODES_MAX);
    }
    if (n == 0) {
        return 0;
    }
    /* calloc: rs_state_free on a partly filled array frees NULL strings harmlessly. */
    s->nodes = calloc(node_capacity(n), sizeof(*s->nodes));
    if (s->nodes == NULL) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        s->n_nodes = i + 1;
        int rc = decode_node(json_array_get(arr, i), i, &s->nodes[i], err);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int
decode_state(const json_t *state, rs_state *s, rs_error *err) {
    static const char *const keys[] = {"ring",   "epoch",  "params",    "nodes",
                                       "source", "consul", "written_at"};
    static const char *const consul_keys[] = {"kv_index", "health_index"};
    const json_t *consul = NULL;
    const char *ring = "", *source = ""; /* views into the document */
    long long epoch = 0, kv = 0, health = 0, written = 0;
    int rc;
    if ((rc = check_keys(state, "state", keys, 7, 7, err)) != 0 ||
        (rc = get_str(state, "state", "ring", RS_STATE_RING_MAX, &ring, err)) != 0 ||
        (rc = get_int(state, "state", "epoch", 0, INT64_MAX, &epoch, err)) != 0 ||
        (rc = decode_params(state, &s->params, err)) != 0 ||
        (rc = decode_nodes(state, s, err)) != 0 ||
        (rc = get_str(state, "state", "source", RS_STATE_SOURCE_MAX, &source, err)) != 0 ||
        (rc = get_object(state, "state", "consul", &consul, err)) != 0 ||
        (rc = check_keys(consul, "state.consul", consul_keys, 2, 2, err)) != 0 ||
        (rc = get_int(consul, "state.consul", "kv_index", 0, INT64_MAX, &kv, err)) != 0 ||
        (rc = get_int(consul, "state.consul", "health_index", 0, INT64_MAX, &health, err)) != 0 ||
        (rc = get_int(state, "state", "written_at", 0, INT64_MAX, &written, err)) != 0) {
        return rc;
    }
    s->format = RS_STATE_FORMAT;
    memcpy(s->ring, ring, strlen(ring) + 1);
    memcpy(s->source, source, strlen(source) + 1);
    s->epoch = (uint64_t)epoch;
    s->kv_index = (uint64_t)kv;
    s->health_index = (uint64_t)health;
    s->written_at = written;
    return rs_state_validate(s, err);
}

/* "sha256:" and 64 hex digits (either case) against the digest we computed. */
static int
verify_checksum(const json_t *root, const json_t *state, rs_error *err) {
    const json_t *v = json_object_get(root, "checksum");
    const char *s = json_string_value(v);
    if (s == NULL || json_string_length(v) != CHECKSUM_PREFIX_LEN + CHECKSUM_HEX_LEN ||
        strncmp(s, CHECKSUM_PREFIX, CHECKSUM_PREFIX_LEN) != 0) {
        return rs_error_set(err, -EINVAL, "checksum: must be \"%s\" followed by %d hex digits",
                            CHECKSUM_PREFIX, (int)CHECKSUM_HEX_LEN);
    }
    s += CHECKSUM_PREFIX_LEN;
    unsigned char got[CHECKSUM_HEX_LEN / 2], want_bin[CHECKSUM_HEX_LEN / 2];
    if (rs_hex_decode(s, CHECKSUM_HEX_LEN, (char *)got) < 0) {
        return rs_error_set(err, -EINVAL, "checksum: must be \"%s\" followed by %d hex digits",
                            CHECKSUM_PREFIX, (int)CHECKSUM_HEX_LEN);
    }
    char want[CHECKSUM_HEX_LEN + 1];
    if (state_checksum(state, want) != 0) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    if (rs_hex_decode(want, CHECKSUM_HEX_LEN, (char *)want_bin) < 0 ||
        memcmp(got, want_bin, sizeof(got)) != 0) {
        return rs_error_set(err, -EBADMSG, "checksum mismatch");
    }
    return 0;
}

static const char *
json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

int
rs_state_decode(const char *buf, size_t len, rs_state *out, rs_error *err) {
    static const char *const keys[] = {"format", "checksum", "state"};
    const char *const foreign = "not a ringside state file";
    rs_state s;
    json_t *root = NULL;
    json_error_t jerr;
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&s, 0, sizeof(s));
    if (len > RS_STATE_MAX_BYTES) {
        return rs_error_set(err, -EINVAL, "too large: %zu bytes (max %zu)", len,
                            RS_STATE_MAX_BYTES);
    }
    if (len == 0) {
        return rs_error_set(err, -EINVAL, "empty");
    }
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory) {
            return rs_error_set(err, -ENOMEM, "out of memory");
        }
        return rs_error_set(err, -EINVAL, "not valid JSON: line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
    }
    if (!json_is_object(root)) {
        rc = rs_error_set(err, -EINVAL, "%s: the top level is %s, not an object", foreign,
                          json_type_name(root));
        goto out;
    }
    const json_t *format = json_object_get(root, "format");
    if (format == NULL) {
        rc = rs_error_set(err, -EINVAL, "%s: no \"format\" key", foreign);
        goto out;
    }
    if (!json_is_integer(format)) {
        rc = rs_error_set(err, -EINVAL, "%s: \"format\" is %s, not an integer", foreign,
                          json_type_name(format));
        goto out;
    }
    if (json_integer_value(format) != RS_STATE_FORMAT) {
        rc = rs_error_set(err, -EPROTONOSUPPORT,
                          "unsupported state format %lld (this build reads %d)",
                          (long long)json_integer_value(format), RS_STATE_FORMAT);
        goto out;
    }
    /* Unknown and missing top-level keys mean some other document with a "format". */
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        if (strcmp(key, "format") != 0 && strcmp(key, "checksum") != 0 &&
            strcmp(key, "state") != 0) {
            rc = rs_error_set(err, -EINVAL, "%s: unknown key \"%.40s\"", foreign, key);
            goto out;
        }
    }
    for (size_t i = 1; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (json_object_get(root, keys[i]) == NULL) {
            rc = rs_error_set(err, -EINVAL, "%s: no \"%s\" key", foreign, keys[i]);
            goto out;
        }
    }
    const json_t *state = json_object_get(root, "state");
    if (!json_is_object(state)) {
        rc = rs_error_set(err, -EINVAL, "state: must be an object");
        goto out;
    }
    /* Checksum before content: damage is reported as damage, not as a bad field. */
    if ((rc = verify_checksum(root, state, err)) != 0 || (rc = decode_state(state, &s, err)) != 0) {
        goto out;
    }
    *out = s;
    memset(&s, 0, sizeof(s));
    rc = 0;
out:
    rs_state_free(&s);
    json_decref(root);
    return rc;
}
