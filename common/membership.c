/* Membership from Consul (SPEC §4): KV listings and health listings in, node sets out, with
 * every KV value validated on its own and the last good value of a key kept; plus the
 * mass-removal guard, jittered backoff and a token bucket. Pure: no I/O, clocks or globals. */
#include "rs_membership.h"
#include "rs_error.h"
#include "rs_json.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define QUOTE_MAX RS_QUOTE_MAX
#define QUOTE_CAP RS_QUOTE_CAP
#define DESCRIBE_CAP RS_DESCRIBE_CAP

#define NODES_DIR "nodes/"
#define NODES_DIR_LEN (sizeof(NODES_DIR) - 1)
#define SERVICE_KEY "service/"

#define TOKEN_SLACK 1e-9 /* of a token: rounding in the bucket's refill arithmetic */

/* Longest base64 text whose decoding can fit RS_KV_MAX_VALUE bytes. */
#define B64_MAX_LEN (4 * ((RS_KV_MAX_VALUE + 2) / 3))
#define B64_BUF (B64_MAX_LEN / 4 * 3)

/* ---- describing values in messages ------------------------------------------------ */

/* s[0..len) quoted, escaped to printable ASCII and cut to about QUOTE_MAX characters. */

/* For KV values (integers and reals apart). */
static const char *
describe(char *buf, const json_t *v) {
    return rs_json_describe(buf, v, true);
}

/* For Consul's listings (parsed with every number a real). */
static const char *
describe_listed(char *buf, const json_t *v) {
    if (v == NULL) {
        return "nothing (the field is missing)";
    }
    return rs_json_describe(buf, v, false);
}

static bool
all_ascii_graphic(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* Bytes compared, then length: the order of keys and ids in every output. */
static int
bytes_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : alen > blen;
}

/* json_loadb's failure as an error; jansson's text may quote input (rs_error_set cleans it). */
static int
json_failure(rs_error *err, const char *what, const json_error_t *jerr) {
    if (json_error_code(jerr) == json_error_out_of_memory) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    return rs_error_set(err, -EINVAL, "%sinvalid JSON at line %d, column %d: %s", what, jerr->line,
                        jerr->column, jerr->text);
}

/* ---- rejections ---------------------------------------------------------------------- */

/* Records head+key (printable, cut with "..." when long) and the reason; the array keeps
 * the first RS_KV_MAX_REJECTIONS, the total counts all. */
static void
reject(rs_membership *m, const char *head, const char *key, size_t key_len, const char *reason) {
    m->n_rejections_total++;
    if (m->n_rejections >= RS_KV_MAX_REJECTIONS) {
        return;
    }
    rs_kv_rejection *r = &m->rejections[m->n_rejections++];
    size_t cap = sizeof(r->key), o = 0;
    for (const char *h = head; *h != '\0' && o + 1 < cap; h++) {
        r->key[o++] = *h;
    }
    for (size_t i = 0; i < key_len && o + 1 < cap; i++) {
        unsigned char ch = (unsigned char)key[i];
        r->key[o++] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
    }
    if (strlen(head) + key_len > cap - 1) {
        memcpy(r->key + cap - 4, "...", 3);
    }
    r->key[o] = '\0';
    snprintf(r->reason, sizeof(r->reason), "%s", reason);
}

/* ---- ids ----------------------------------------------------------------------------- */

/* A node id as rs_node_validate accepts it (the why has no key in it). */
static int
check_id(const char *id, size_t len, rs_error *why) {
    if (len == 0) {
        return rs_error_set(why, -EINVAL, "id must not be empty");
    }
    if (memchr(id, '\0', len) != NULL) {
        return rs_error_set(why, -EINVAL, "id must not contain spaces or control characters");
    }
    if (len > RS_ID_MAX) {
        return rs_error_set(why, -EINVAL, "id is too long (%zu bytes, max %d)", len, RS_ID_MAX);
    }
    char buf[RS_ID_MAX + 1];
    memcpy(buf, id, len);
    buf[len] = '\0';
    rs_node n = {.id = buf, .address = "127.0.0.1:1", .zone = "", .weight = 1, .enabled = true};
    return rs_node_validate(&n, why);
}

/* ---- base64 -------------------------------------------------------------------------- */

static int
b64_digit(unsigned char c) {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/* Standard base64 with '=' padding, as Consul (Go's StdEncoding) writes it: a length that
 * is a multiple of 4, '=' only as the last one or two characters. out has room for
 * len / 4 * 3 bytes. Returns the decoded length, or -1 for anything else. */
static long
b64_decode(const char *s, size_t len, unsigned char *out) {
    if (len % 4 != 0) {
        return -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t w = 0;
        int pad = 0;
        for (size_t k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            int d = 0;
            if (c == '=') {
                if (i + 4 != len || k < 2) {
                    return -1;
                }
                pad++;
            } else if (pad > 0 || (d = b64_digit(c)) < 0) {
                return -1;
            }
            w = w << 6 | (uint32_t)d;
        }
        out[o++] = (unsigned char)(w >> 16);
        if (pad < 2) {
            out[o++] = (unsigned char)(w >> 8);
        }
        if (pad < 1) {
            out[o++] = (unsigned char)w;
        }
    }
    return (long)o;
}

/* ---- the memo ------------------------------------------------------------------------ */

typedef enum key_kind { KEY_CONFIG, KEY_CONFIRM, KEY_NODE } key_kind;

/* What <prefix>/config overrides. */
enum {
    CFG_ALGORITHM = 1,
    CFG_HASH = 2,
    CFG_REPLICAS = 4,
    CFG_HASH_TAG = 8,
    CFG_MAX = 16,
    CFG_TABLE_SIZE = 32,
    CFG_POINTS_PER_WEIGHT = 64,
    CFG_VNODES = 128,
    CFG_REPLICA_FACTOR = 256,
    CFG_ZONE_AWARE = 512,
};

typedef struct kv_config {
    unsigned set; /* CFG_* */
    rs_algorithm algorithm;
    rs_hash_kind hash;
    uint32_t replicas;
    char hash_tag[3];
    uint32_t table_size;
    uint32_t points_per_weight;
    uint32_t vnodes;
    uint32_t replica_factor;
    bool zone_aware_replicas;
    bool force;
    double max_removal;
} kv_config;

enum { ENTRY_IDLE = 0, ENTRY_REUSED, ENTRY_FRESH };

/* The last good value of one key, in one allocation with its strings. */
typedef struct memo_entry {
    key_kind kind;
    int state;       /* ENTRY_*: during an update, whether it came from the memo or is new */
    const char *key; /* relative: "config", "confirm", "nodes/<id>" */
    size_t key_len;
    /* KEY_NODE */
    const char *address, *zone;
    uint32_t weight;
    bool enabled;
    /* KEY_CONFIG */
    kv_config config;
    /* KEY_CONFIRM */
    char fingerprint[RS_FINGERPRINT_LEN + 1];
    char text[]; /* key, address, zone */
} memo_entry;

struct rs_kv_memo {
    memo_entry **entries; /* sorted by key bytes */
    size_t n;
};

int
rs_kv_memo_new(rs_kv_memo **out) {
    assert(out != NULL);
    *out = calloc(1, sizeof(**out));
    return *out == NULL ? -ENOMEM : 0;
}

void
rs_kv_memo_free(rs_kv_memo *memo) {
    if (memo == NULL) {
        return;
    }
    for (size_t i = 0; i < memo->n; i++) {
        free(memo->entries[i]);
    }
    free(memo->entries);
    free(memo);
}

static memo_entry *
memo_find(const rs_kv_memo *memo, const char *key, size_t len) {
    size_t lo = 0, hi = memo->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const memo_entry *e = memo->entries[mid];
        int c = bytes_cmp(e->key, e->key_len, key, len);
        if (c == 0) {
            return memo->entries[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

/* A fresh entry holding key and the given strings (NULL for none). */
static memo_entry *
entry_new(key_kind kind, const char *key, size_t key_len, const char *address, size_t address_len,
          const char *zone, size_t zone_len) {
    memo_entry *e = malloc(sizeof(*e) + key_len + address_len + zone_len + 3);
    if (e == NULL) {
        return NULL;
    }
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->state = ENTRY_FRESH;
    char *p = e->text;
    memcpy(p, key, key_len);
    p[key_len] = '\0';
    e->key = p;
    e->key_len = key_len;
    p += key_len + 1;
    if (address != NULL) {
        memcpy(p, address, address_len);
        p[address_len] = '\0';
        e->address = p;
        p += address_len + 1;
    }
    if (zone != NULL) {
        memcpy(p, zone, zone_len);
        p[zone_len] = '\0';
        e->zone = p;
    }
    return e;
}

/* ---- KV values ----------------------------------------------------------------------- */

/* "unknown field "x" (expected a, b, c)" */
static int
unknown_field(rs_error *why, const char *key, const char *expected) {
    char q[QUOTE_CAP];
    return rs_error_set(why, -EINVAL, "unknown field %s (expected %s)",
                        rs_json_quote(q, key, strlen(key)), expected);
}

/* value must be an object whose keys are all in keys (NULL-terminated). */
static int
check_fields(const json_t *v, const char *const *keys, const char *expected, rs_error *why) {
    char d[DESCRIBE_CAP];
    if (!json_is_object(v)) {
        return rs_error_set(why, -EINVAL, "value must be a JSON object, got %s", describe(d, v));
    }
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        bool known = false;
        for (const char *const *k = keys; *k != NULL && !known; k++) {
            known = strcmp(*k, key) == 0;
        }
        if (!known) {
            return unknown_field(why, key, expected);
        }
    }
    return 0;
}

static int
get_string(const json_t *v, const char *field, const char **s, size_t *len, rs_error *why) {
    char d[DESCRIBE_CAP];
    if (!json_is_string(v)) {
        return rs_error_set(why, -EINVAL, "%s must be a string, got %s", field, describe(d, v));
    }
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

static int
get_u32(const json_t *v, const char *field, uint32_t min, uint32_t max, uint32_t *out,
        rs_error *why) {
    return rs_json_get_u32(v, field, "", min, max, out, why);
}

static int
get_bool(const json_t *v, const char *field, bool *out, rs_error *why) {
    return rs_json_get_bool(v, field, "", out, why);
}

/* The value of a key as JSON: null and "" are empty values, then base64, size, JSON.
 * Returns 0 with *root (the caller's), -EINVAL with why, or -ENOMEM. */
static int
load_value(const json_t *value, json_t **root, rs_error *why) {
    unsigned char buf[B64_BUF + 1];
    json_error_t jerr;
    *root = NULL;
    if (json_is_null(value) || json_string_length(value) == 0) {
        return rs_error_set(why, -EINVAL, "empty value");
    }
    size_t len = json_string_length(value);
    if (len > B64_MAX_LEN) {
        return rs_error_set(why, -EINVAL, "value too large (about %zu bytes, max %d)", len / 4 * 3,
                            RS_KV_MAX_VALUE);
    }
    long n = b64_decode(json_string_value(value), len, buf);
    if (n < 0) {
        return rs_error_set(why, -EINVAL, "value is not valid base64");
    }
    if (n > RS_KV_MAX_VALUE) {
        return rs_error_set(why, -EINVAL, "value too large (%ld bytes, max %d)", n,
                            RS_KV_MAX_VALUE);
    }
    if (n == 0) {
        return rs_error_set(why, -EINVAL, "empty value");
    }
    *root =
        json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (*root == NULL) {
        return json_failure(why, "", &jerr);
    }
    return 0;
}

/* <prefix>/nodes/<id>: {"address", "weight", "zone", "enabled"}. */
static int
parse_node(const json_t *v, const char *key, size_t key_len, memo_entry **out, rs_error *why) {
    static const char *const keys[] = {"address", "weight", "zone", "enabled", NULL};
    static const char expected[] = "address, weight, zone, enabled";
    const char *address = NULL, *zone = "";
    size_t address_len = 0, zone_len = 0;
    uint32_t weight = 1;
    bool enabled = true;
    const json_t *f;

    if (check_fields(v, keys, expected, why) != 0) {
        return -EINVAL;
    }
    if ((f = json_object_get(v, "address")) == NULL) {
        return rs_error_set(why, -EINVAL, "address is required");
    }
    if (get_string(f, "address", &address, &address_len, why) != 0) {
        return -EINVAL;
    }
    if ((f = json_object_get(v, "weight")) != NULL &&
        get_u32(f, "weight", 1, RS_WEIGHT_MAX, &weight, why) != 0) {
        return -EINVAL;
    }
    if ((f = json_object_get(v, "zone")) != NULL &&
        get_string(f, "zone", &zone, &zone_len, why) != 0) {
        return -EINVAL;
    }
    if ((f = json_object_get(v, "enabled")) != NULL && get_bool(f, "enabled", &enabled, why) != 0) {
        return -EINVAL;
    }
    /* jansson lets no NUL through here (values are parsed without JSON_ALLOW_NUL). */
    rs_node n = {.id = key + NODES_DIR_LEN,
                 .address = address,
                 .zone = zone,
                 .weight = weight,
                 .enabled = enabled};
    if (rs_node_validate(&n, why) != 0) {
        return -EINVAL;
    }
    memo_entry *e = entry_new(KEY_NODE, key, key_len, address, address_len, zone, zone_len);
    if (e == NULL) {
        return rs_error_set(why, -ENOMEM, "out of memory");
    }
    e->weight = weight;
    e->enabled = enabled;
    *out = e;
    return 0;
}

/* "unknown algorithm "x" (expected a, b)" over a name table. */
static int
unknown_name(rs_error *why, const char *noun, const char *s, size_t len,
             const char *(*name_of)(int), int n) {
    char q[QUOTE_CAP], list[160];
    size_t o = 0;
    list[0] = '\0';
    for (int i = 0; i < n; i++) {
        int w = snprintf(list + o, sizeof(list) - o, "%s%s", i > 0 ? ", " : "", name_of(i));
        if (w < 0 || (size_t)w >= sizeof(list) - o) {
            break;
        }
        o += (size_t)w;
    }
    return rs_error_set(why, -EINVAL, "unknown %s %s (expected %s)", noun, rs_json_quote(q, s, len),
                        list);
}

static const char *
algorithm_name_of(int i) {
    return rs_algorithm_name((rs_algorithm)i);
}

static const char *
hash_name_of(int i) {
    return rs_hash_name((rs_hash_kind)i);
}

/* base with c's overrides; 0, or -EINVAL when the result fails rs_ring_params_validate. */
static int
config_apply(const kv_config *c, const rs_ring_params *base, rs_ring_params *out, rs_error *why) {
    *out = *base;
    if (c->set & CFG_ALGORITHM) {
        out->algorithm = c->algorithm;
    }
    if (c->set & CFG_HASH) {
        out->hash = c->hash;
    }
    if (c->set & CFG_REPLICAS) {
        out->replicas = c->replicas;
    }
    if (c->set & CFG_HASH_TAG) {
        memcpy(out->hash_tag, c->hash_tag, sizeof(out->hash_tag));
    }
    if (c->set & CFG_TABLE_SIZE) {
        out->table_size = c->table_size;
    }
    if (c->set & CFG_POINTS_PER_WEIGHT) {
        out->points_per_weight = c->points_per_weight;
    }
    if (c->set & CFG_VNODES) {
        out->vnodes = c->vnodes;
    }
    if (c->set & CFG_REPLICA_FACTOR) {
        out->replica_factor = c->replica_factor;
    }
    if (c->set & CFG_ZONE_AWARE) {
        out->zone_aware_replicas = c->zone_aware_replicas;
    }
    return rs_ring_params_validate(out, why);
}

/* <prefix>/config: {"algorithm","hash","replicas","hash_tag","table_size",
 * "points_per_weight","vnodes","replica_factor","zone_aware_replicas","force",
 * "max_removal_fraction"}: the file's ring parameters, with the same checks. */
static int
parse_config(const json_t *v, const rs_ring_params *base, memo_entry **out, rs_error *why) {
    static const char *const keys[] = {"algorithm",
                                       "hash",
                                       "replicas",
                                       "hash_tag",
                                       "table_size",
                                       "points_per_weight",
                                       "vnodes",
                                       "replica_factor",
                                       "zone_aware_replicas",
                                       "force",
                                       "max_removal_fraction",
                                       NULL};
    static const char expected[] =
        "algorithm, hash, replicas, hash_tag, table_size, points_per_weight, vnodes, "
        "replica_factor, zone_aware_replicas, force, max_removal_fraction";
    kv_config c = {0};
    const json_t *f;
    const char *s = NULL;
    size_t len = 0;
    char q[QUOTE_CAP], d[DESCRIBE_CAP];

    if (check_fields(v, keys, expected, why) != 0) {
        return -EINVAL;
    }
    if ((f = json_object_get(v, "algorithm")) != NULL) {
        if (get_string(f, "algorithm", &s, &len, why) != 0) {
            return -EINVAL;
        }
        if (memchr(s, '\0', len) != NULL || rs_algorithm_from_name(s, &c.algorithm) != 0) {
            return unknown_name(why, "algorithm", s, len, algorithm_name_of, RS_ALG_COUNT);
        }
        c.set |= CFG_ALGORITHM;
    }
    if ((f = json_object_get(v, "hash")) != NULL) {
        if (get_string(f, "hash", &s, &len, why) != 0) {
            return -EINVAL;
        }
        if (memchr(s, '\0', len) != NULL || rs_hash_from_name(s, &c.hash) != 0) {
            return unknown_name(why, "hash", s, len, hash_name_of, RS_HASH_COUNT);
        }
        c.set |= CFG_HASH;
    }
    if ((f = json_object_get(v, "replicas")) != NULL) {
        if (get_u32(f, "replicas", 1, RS_REPLICAS_MAX, &c.replicas, why) != 0) {
            return -EINVAL;
        }
        c.set |= CFG_REPLICAS;
    }
    if ((f = json_object_get(v, "hash_tag")) != NULL) {
        if (get_string(f, "hash_tag", &s, &len, why) != 0) {
            return -EINVAL;
        }
        if ((len != 0 && len != 2) || !all_ascii_graphic(s, len)) {
            return rs_error_set(why, -EINVAL,
                                "hash_tag must be \"\" or two ASCII characters like \"{}\", got %s",
                                rs_json_quote(q, s, len));
        }
        memcpy(c.hash_tag, s, len + 1);
        c.set |= CFG_HASH_TAG;
    }
    /* Ranges here; table_size's primality is rs_ring_params_validate's, below. */
    if ((f = json_object_get(v, "table_size")) != NULL) {
        if (get_u32(f, "table_size", RS_TABLE_SIZE_MIN, RS_TABLE_SIZE_MAX, &c.table_size, why) !=
            0) {
            return -EINVAL;
        }
        c.set |= CFG_TABLE_SIZE;
    }
    if ((f = json_object_get(v, "points_per_weight")) != NULL) {
        if (get_u32(f, "points_per_weight", 1, RS_POINTS_PER_WEIGHT_MAX, &c.points_per_weight,
                    why) != 0) {
            return -EINVAL;
        }
        c.set |= CFG_POINTS_PER_WEIGHT;
    }
    if ((f = json_object_get(v, "vnodes")) != NULL) {
        if (get_u32(f, "vnodes", 1, RS_VNODES_MAX, &c.vnodes, why) != 0) {
            return -EINVAL;
        }
        c.set |= CFG_VNODES;
    }
    if ((f = json_object_get(v, "replica_factor")) != NULL) {
        if (get_u32(f, "replica_factor", 1, RS_REPLICA_FACTOR_MAX, &c.replica_factor, why) != 0) {
            return -EINVAL;
        }
        c.set |= CFG_REPLICA_FACTOR;
    }
    if ((f = json_object_get(v, "zone_aware_replicas")) != NULL) {
        if (get_bool(f, "zone_aware_replicas", &c.zone_aware_replicas, why) != 0) {
            return -EINVAL;
        }
        c.set |= CFG_ZONE_AWARE;
    }
    if ((f = json_object_get(v, "force")) != NULL && get_bool(f, "force", &c.force, why) != 0) {
        return -EINVAL;
    }
    if ((f = json_object_get(v, "max_removal_fraction")) != NULL) {
        double x = json_is_number(f) ? json_number_value(f) : NAN;
        if (!(x > 0.0 && x <= 1.0)) {
            return rs_error_set(
                why, -EINVAL,
                "max_removal_fraction must be a number greater than 0 and at most 1, got %s",
                describe(d, f));
        }
        c.max_removal = x;
        c.set |= CFG_MAX;
    }
    rs_ring_params merged;
    rs_error perr;
    if (config_apply(&c, base, &merged, &perr) != 0) {
        return rs_error_set(why, -EINVAL, "invalid ring parameters: %s", perr.msg);
    }
    memo_entry *e = entry_new(KEY_CONFIG, "config", 6, NULL, 0, NULL, 0);
    if (e == NULL) {
        return rs_error_set(why, -ENOMEM, "out of memory");
    }
    e->config = c;
    *out = e;
    return 0;
}

/* <prefix>/confirm: {"fingerprint": "<16 lowercase hex digits>"}. */
static int
parse_confirm(const json_t *v, memo_entry **out, rs_error *why) {
    static const char *const keys[] = {"fingerprint", NULL};
    const json_t *f;
    char d[DESCRIBE_CAP];

    if (check_fields(v, keys, "fingerprint", why) != 0) {
        return -EINVAL;
    }
    if ((f = json_object_get(v, "fingerprint")) == NULL) {
        return rs_error_set(why, -EINVAL, "fingerprint is required");
    }
    bool ok = json_is_string(f) && json_string_length(f) == RS_FINGERPRINT_LEN;
    for (size_t i = 0; ok && i < RS_FINGERPRINT_LEN; i++) {
        char ch = json_string_value(f)[i];
        ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
    }
    if (!ok) {
        return rs_error_set(why, -EINVAL, "fingerprint must be %d lowercase hex digits, got %s",
                            RS_FINGERPRINT_LEN, describe(d, f));
    }
    memo_entry *e = entry_new(KEY_CONFIRM, "confirm", 7, NULL, 0, NULL, 0);
    if (e == NULL) {
        return rs_error_set(why, -ENOMEM, "out of memory");
    }
    memcpy(e->fingerprint, json_string_value(f), RS_FINGERPRINT_LEN + 1);
    *out = e;
    return 0;
}

/* ---- the KV listing -------------------------------------------------------------------- */

/* A key of the listing that names something: relative key, kind and (borrowed) value. */
typedef struct kv_item {
    const char *rel;
    size_t rel_len;
    key_kind kind;
    const json_t *value;
} kv_item;

static int
kv_item_cmp(const void *a, const void *b) {
    const kv_item *x = a, *y = b;
    return bytes_cmp(x->rel, x->rel_len, y->rel, y->rel_len);
}

/* Is key[0..len) one of ours? Keys outside the prefix, folders, deeper paths and other
 * names are not. */
static bool
classify(const char *key, size_t len, const char *prefix, size_t plen, kv_item *it) {
    if (plen > 0) {
        if (len <= plen || memcmp(key, prefix, plen) != 0 || key[plen] != '/') {
            return false;
        }
        key += plen + 1;
        len -= plen + 1;
    }
    it->rel = key;
    it->rel_len = len;
    if (len == 6 && memcmp(key, "config", 6) == 0) {
        it->kind = KEY_CONFIG;
        return true;
    }
    if (len == 7 && memcmp(key, "confirm", 7) == 0) {
        it->kind = KEY_CONFIRM;
        return true;
    }
    if (len > NODES_DIR_LEN && memcmp(key, NODES_DIR, NODES_DIR_LEN) == 0 &&
        memchr(key + NODES_DIR_LEN, '/', len - NODES_DIR_LEN) == NULL) {
        it->kind = KEY_NODE;
        return true;
    }
    return false;
}

/* A number as Consul writes its indexes and flags (uint64: parsed as reals, see below). */
static bool
is_count(const json_t *v) {
    double x = json_is_number(v) ? json_number_value(v) : -1.0;
    return x >= 0.0 && x == floor(x);
}

/* One element of the listing must look like Consul's: {Key, Value, ...}. Other fields are
 * ignored (newer Consuls add Namespace, Partition, ...). */
static int
check_kv_entry(const json_t *it, size_t i, rs_error *err) {
    static const char *const counts[] = {"ModifyIndex", "CreateIndex", "LockIndex", "Flags"};
    char d[DESCRIBE_CAP];
    const json_t *f;
    if (!json_is_object(it)) {
        return rs_error_set(err, -EINVAL, "KV listing[%zu]: must be an object, got %s", i,
                            describe_listed(d, it));
    }
    if (!json_is_string(f = json_object_get(it, "Key"))) {
        return rs_error_set(err, -EINVAL, "KV listing[%zu].Key: must be a string, got %s", i,
                            describe_listed(d, f));
    }
    f = json_object_get(it, "Value");
    if (f == NULL || !(json_is_string(f) || json_is_null(f))) {
        return rs_error_set(err, -EINVAL,
                            "KV listing[%zu].Value: must be a base64 string or null, got %s", i,
                            describe_listed(d, f));
    }
    for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
        if ((f = json_object_get(it, counts[k])) != NULL && !is_count(f)) {
            return rs_error_set(err, -EINVAL,
                                "KV listing[%zu].%s: must be a non-negative integer, got %s", i,
                                counts[k], describe_listed(d, f));
        }
    }
    if ((f = json_object_get(it, "Session")) != NULL && !json_is_string(f)) {
        return rs_error_set(err, -EINVAL, "KV listing[%zu].Session: must be a string, got %s", i,
                            describe_listed(d, f));
    }
    return 0;
}

/* Parse a Consul listing: bounded, duplicate object keys refused, NUL in strings let
 * through (a hostile key is one key's problem, not the listing's), and every number read
 * as a real so that uint64 indexes and flags beyond INT64_MAX parse. */
static int
load_listing(const char *body, size_t len, const char *what, json_t **root, rs_error *err) {
    json_error_t jerr;
    char d[DESCRIBE_CAP];
    *root = NULL;
    if (len > RS_KV_MAX_BODY) {
        return rs_error_set(err, -EINVAL, "%s: too large (%zu bytes, max %u)", what, len,
                            RS_KV_MAX_BODY);
    }
    *root = json_loadb(
        len > 0 ? body : "", len,
        JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
    if (*root == NULL) {
        char head[64];
        snprintf(head, sizeof(head), "%s: ", what);
        return json_failure(err, head, &jerr);
    }
    if (!json_is_array(*root)) {
        int rc = rs_error_set(err, -EINVAL, "%s: must be a JSON array, got %s", what,
                              describe_listed(d, *root));
        json_decref(*root);
        *root = NULL;
        return rc;
    }
    return 0;
}

/* Fill out from the chosen entries (sorted by key): parameters, nodes, confirm. */
static int
build_kv_membership(memo_entry *const *chosen, size_t n, const rs_ring_params *base,
                    double base_max_removal, rs_membership *m) {
    size_t nodes = 0, strings = 0;
    m->params = *base;
    m->max_removal_fraction = base_max_removal;
    for (size_t i = 0; i < n; i++) {
        const memo_entry *e = chosen[i];
        if (e->kind == KEY_NODE) {
            nodes++;
            strings += e->key_len - NODES_DIR_LEN + strlen(e->address) + strlen(e->zone) + 3;
        } else if (e->kind == KEY_CONFIRM) {
            memcpy(m->confirm, e->fingerprint, sizeof(m->confirm));
        } else {
            rs_ring_params p;
            /* A remembered config is re-applied to today's base; should the two no longer
             * agree, the base stands (the rejection of the current value says why). */
            if (config_apply(&e->config, base, &p, NULL) == 0) {
                m->params = p;
                m->force = e->config.force;
                if (e->config.set & CFG_MAX) {
                    m->max_removal_fraction = e->config.max_removal;
                }
            }
        }
    }
    if (nodes == 0) {
        return 0;
    }
    m->nodes = malloc(nodes * sizeof(*m->nodes) + strings);
    m->healthy = malloc(nodes);
    if (m->nodes == NULL || m->healthy == NULL) {
        return -ENOMEM;
    }
    char *cursor = (char *)(m->nodes + nodes);
    for (size_t i = 0; i < n; i++) {
        const memo_entry *e = chosen[i];
        if (e->kind != KEY_NODE) {
            continue;
        }
        rs_node *out = &m->nodes[m->n_nodes++];
        const char *src[3] = {e->key + NODES_DIR_LEN, e->address, e->zone};
        const char *dst[3];
        for (size_t k = 0; k < 3; k++) {
            size_t len = strlen(src[k]);
            memcpy(cursor, src[k], len + 1);
            dst[k] = cursor;
            cursor += len + 1;
        }
        *out = (rs_node){.id = dst[0],
                         .address = dst[1],
                         .zone = dst[2],
                         .weight = e->weight,
                         .enabled = e->enabled};
    }
    memset(m->healthy, 1, nodes);
    return 0;
}

int
rs_kv_to_membership(rs_kv_memo *memo, const char *body, size_t len, const char *prefix,
                    const rs_ring_params *base, double base_max_removal, rs_membership *out,
                    rs_error *err) {
    rs_error scratch, why;
    rs_membership m;
    json_t *root = NULL;
    kv_item *items = NULL;
    memo_entry **chosen = NULL;
    size_t n_items = 0, n_chosen = 0, n_nodes = 0;
    int rc;

    assert(memo != NULL && prefix != NULL && base != NULL && out != NULL);
    assert(body != NULL || len == 0);
    if (err == NULL) {
        err = &scratch;
    }
    err->msg[0] = '\0';
    memset(&m, 0, sizeof(m));
    memset(out, 0, sizeof(*out));

    if (rs_ring_params_validate(base, &why) != 0) {
        rc = rs_error_set(err, -EINVAL, "base ring parameters: %s", why.msg);
        goto done;
    }
    if (!(base_max_removal > 0.0 && base_max_removal <= 1.0)) {
        rc = rs_error_set(err, -EINVAL, "base max_removal_fraction must be in (0, 1]");
        goto done;
    }
    if ((rc = load_listing(body, len, "KV listing", &root, err)) != 0) {
        goto done;
    }
    size_t plen = strlen(prefix);
    if (plen > 0 && prefix[plen - 1] == '/') {
        plen--;
    }
    size_t total = json_array_size(root);
    items = malloc((total > 0 ? total : 1) * sizeof(*items));
    chosen = malloc((total > 0 ? total : 1) * sizeof(*chosen));
    if (items == NULL || chosen == NULL) {
        rc = rs_error_set(err, -ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < total; i++) {
        const json_t *it = json_array_get(root, i);
        if ((rc = check_kv_entry(it, i, err)) != 0) {
            goto done;
        }
        const json_t *key = json_object_get(it, "Key");
        kv_item item;
        if (classify(json_string_value(key), json_string_length(key), prefix, plen, &item)) {
            item.value = json_object_get(it, "Value");
            items[n_items++] = item;
        }
    }
    qsort(items, n_items, sizeof(*items), kv_item_cmp);
    for (size_t i = 1; i < n_items; i++) {
        if (kv_item_cmp(&items[i - 1], &items[i]) == 0) {
            char q[QUOTE_CAP];
            rc = rs_error_set(err, -EINVAL, "KV listing: duplicate key %s",
                              rs_json_quote(q, items[i].rel, items[i].rel_len));
            goto done;
        }
    }

    for (size_t i = 0; i < n_items; i++) {
        const kv_item *it = &items[i];
        memo_entry *e = NULL;
        json_t *value = NULL;
        if (it->kind == KEY_NODE) {
            if (check_id(it->rel + NODES_DIR_LEN, it->rel_len - NODES_DIR_LEN, &why) != 0) {
                reject(&m, "", it->rel, it->rel_len, why.msg);
                continue; /* a key that can never be a node has no last good value */
            }
            if (n_nodes >= RS_NODES_MAX) {
                rs_error_set(&why, -E2BIG, "too many nodes (max %d)", RS_NODES_MAX);
                reject(&m, "", it->rel, it->rel_len, why.msg);
                continue;
            }
        }
        rc = load_value(it->value, &value, &why);
        if (rc == 0) {
            if (it->kind == KEY_NODE) {
                rc = parse_node(value, it->rel, it->rel_len, &e, &why);
            } else if (it->kind == KEY_CONFIG) {
                rc = parse_config(value, base, &e, &why);
            } else {
                rc = parse_confirm(value, &e, &why);
            }
        }
        json_decref(value);
        if (rc == -ENOMEM) {
            rs_error_set(err, rc, "out of memory");
            goto done;
        }
        if (rc != 0) {
            reject(&m, "", it->rel, it->rel_len, why.msg);
            if ((e = memo_find(memo, it->rel, it->rel_len)) != NULL) {
                e->state = ENTRY_REUSED;
            }
        }
        if (e != NULL) {
            chosen[n_chosen++] = e;
            n_nodes += e->kind == KEY_NODE;
        }
    }
    rc = 0;
    if (build_kv_membership(chosen, n_chosen, base, base_max_removal, &m) != 0) {
        rc = rs_error_set(err, -ENOMEM, "out of memory");
        goto done;
    }

    /* Commit: the chosen entries become the memo; remembered keys not chosen (deleted,
     * or bad with no last good value) are forgotten. */
    for (size_t i = 0; i < memo->n; i++) {
        if (memo->entries[i]->state != ENTRY_REUSED) {
            free(memo->entries[i]);
        }
    }
    free(memo->entries);
    for (size_t i = 0; i < n_chosen; i++) {
        chosen[i]->state = ENTRY_IDLE;
    }
    /* chosen was sized for the whole listing, ignored keys included: keep what is used. */
    memo_entry **fit = realloc(chosen, (n_chosen > 0 ? n_chosen : 1) * sizeof(*chosen));
    if (fit != NULL) {
        chosen = fit;
    }
    memo->entries = chosen;
    memo->n = n_chosen;
    chosen = NULL;

done:
    if (chosen != NULL) {
        for (size_t i = 0; i < n_chosen; i++) {
            if (chosen[i]->state == ENTRY_FRESH) {
                free(chosen[i]);
            } else {
                chosen[i]->state = ENTRY_IDLE;
            }
        }
        free(chosen);
    }
    free(items);
    json_decref(root);
    if (rc != 0) {
        rs_membership_free(&m);
        return rc;
    }
    *out = m;
    return 0;
}

/* ---- the health listing ------------------------------------------------------------------ */

/* One service instance, borrowing from the parsed listing. */
typedef struct instance {
    const char *id; /* Service.ID */
    size_t id_len;
    const char *node; /* Node.Node, for messages */
    size_t node_len;
    const char *host; /* Service.Address, or Node.Address when that is empty */
    size_t host_len;
    double port;
    const json_t *meta; /* Service.Meta object, or NULL */
    bool healthy;
    const char *address; /* "host:port" in the listing's arena; NULL when not valid */
    size_t index;        /* position in the listing */
} instance;

typedef struct health_listing {
    json_t *root;
    instance *in;
    size_t n;
    char *arena;
} health_listing;

static void
listing_free(health_listing *l) {
    json_decref(l->root);
    free(l->in);
    free(l->arena);
    memset(l, 0, sizeof(*l));
}

/* An optional string member (absent is ""); anything else is not Consul's shape. */
static int
opt_string(const json_t *obj, const char *name, size_t i, const char *path, const char **s,
           size_t *len, rs_error *err) {
    char d[DESCRIBE_CAP];
    const json_t *f = json_object_get(obj, name);
    *s = "";
    *len = 0;
    if (f == NULL) {
        return 0;
    }
    if (!json_is_string(f)) {
        return rs_error_set(err, -EINVAL, "health listing[%zu].%s.%s: must be a string, got %s", i,
                            path, name, describe_listed(d, f));
    }
    *s = json_string_value(f);
    *len = json_string_length(f);
    return 0;
}

/* "host:port" ("[v6]:port") for an instance, as rs_node_validate accepts it. */
static int
make_address(const instance *in, char *buf, size_t cap, rs_error *why) {
    char d[DESCRIBE_CAP];
    if (in->host_len == 0) {
        return rs_error_set(why, -EINVAL,
                            "no address: Service.Address and Node.Address are both empty");
    }
    if (memchr(in->host, '\0', in->host_len) != NULL) {
        return rs_error_set(why, -EINVAL, "address must not contain NUL bytes");
    }
    if (!(in->port >= 1 && in->port <= 65535 && in->port == floor(in->port))) {
        rs_json_format_real(d, sizeof(d), in->port, false);
        return rs_error_set(why, -EINVAL,
                            "Service.Port must be an integer between 1 and 65535, got %s", d);
    }
    if (in->host_len > RS_ADDRESS_MAX) {
        return rs_error_set(why, -EINVAL, "address is too long (max %d bytes)", RS_ADDRESS_MAX);
    }
    int w;
    if (in->host[0] != '[' && memchr(in->host, ':', in->host_len) != NULL) {
        w = snprintf(buf, cap, "[%.*s]:%u", (int)in->host_len, in->host, (unsigned)in->port);
    } else {
        w = snprintf(buf, cap, "%.*s:%u", (int)in->host_len, in->host, (unsigned)in->port);
    }
    if (w < 0 || (size_t)w >= cap) {
        return rs_error_set(why, -EINVAL, "address is too long (max %d bytes)", RS_ADDRESS_MAX);
    }
    rs_node n = {.id = "x", .address = buf, .zone = "", .weight = 1, .enabled = true};
    return rs_node_validate(&n, why);
}

/* Healthy unless a check is critical or in maintenance. warning counts as healthy (the
 * node still serves), and so does passing; an unknown status does not (fail safe). */
static bool
status_healthy(const char *s) {
    return strcmp(s, "passing") == 0 || strcmp(s, "warning") == 0;
}

/* One element: {"Node": {...}, "Service": {...}, "Checks": [...]}; unknown fields ignored. */
static int
read_instance(const json_t *it, size_t i, instance *in, rs_error *err) {
    char d[DESCRIBE_CAP];
    const json_t *node, *svc, *checks, *f;
    const char *saddr = "", *naddr = "";
    size_t saddr_len = 0, naddr_len = 0;

    memset(in, 0, sizeof(*in));
    in->index = i;
    if (!json_is_object(it)) {
        return rs_error_set(err, -EINVAL, "health listing[%zu]: must be an object, got %s", i,
                            describe_listed(d, it));
    }
    if (!json_is_object(node = json_object_get(it, "Node"))) {
        return rs_error_set(err, -EINVAL, "health listing[%zu].Node: must be an object, got %s", i,
                            describe_listed(d, node));
    }
    if (!json_is_object(svc = json_object_get(it, "Service"))) {
        return rs_error_set(err, -EINVAL, "health listing[%zu].Service: must be an object, got %s",
                            i, describe_listed(d, svc));
    }
    if (opt_string(node, "Node", i, "Node", &in->node, &in->node_len, err) != 0 ||
        opt_string(node, "Address", i, "Node", &naddr, &naddr_len, err) != 0 ||
        opt_string(svc, "Address", i, "Service", &saddr, &saddr_len, err) != 0) {
        return -EINVAL;
    }
    if (!json_is_string(f = json_object_get(svc, "ID"))) {
        return rs_error_set(err, -EINVAL,
                            "health listing[%zu].Service.ID: must be a string, got %s", i,
                            describe_listed(d, f));
    }
    in->id = json_string_value(f);
    in->id_len = json_string_length(f);
    if (!json_is_number(f = json_object_get(svc, "Port"))) {
        return rs_error_set(err, -EINVAL,
                            "health listing[%zu].Service.Port: must be a number, got %s", i,
                            describe_listed(d, f));
    }
    in->port = json_number_value(f);
    f = json_object_get(svc, "Meta");
    if (f != NULL && !json_is_null(f) && !json_is_object(f)) {
        return rs_error_set(err, -EINVAL,
                            "health listing[%zu].Service.Meta: must be an object or null, got %s",
                            i, describe_listed(d, f));
    }
    in->meta = json_is_object(f) ? f : NULL;
    in->host = saddr_len > 0 ? saddr : naddr;
    in->host_len = saddr_len > 0 ? saddr_len : naddr_len;

    in->healthy = true;
    checks = json_object_get(it, "Checks");
    if (checks != NULL && !json_is_null(checks) && !json_is_array(checks)) {
        return rs_error_set(err, -EINVAL,
                            "health listing[%zu].Checks: must be an array or null, got %s", i,
                            describe_listed(d, checks));
    }
    for (size_t k = 0; k < json_array_size(checks); k++) {
        const json_t *c = json_array_get(checks, k);
        f = json_is_object(c) ? json_object_get(c, "Status") : NULL;
        if (!json_is_string(f)) {
            return rs_error_set(err, -EINVAL,
                                "health listing[%zu].Checks[%zu]: must be an object with a string "
                                "Status",
                                i, k);
        }
        /* Every check of the entry counts, node checks (serfHealth) included, as for
         * Consul's own ?passing filter. */
        if (!status_healthy(json_string_value(f))) {
            in->healthy = false;
        }
    }
    return 0;
}

/* Parse a GET /v1/health/service/<name> body into instances with their addresses. */
static int
listing_parse(const char *body, size_t len, health_listing *l, rs_error *err) {
    int rc;
    memset(l, 0, sizeof(*l));
    if ((rc = load_listing(body, len, "health listing", &l->root, err)) != 0) {
        return rc;
    }
    size_t n = json_array_size(l->root);
    l->in = malloc((n > 0 ? n : 1) * sizeof(*l->in));
    if (l->in == NULL) {
        listing_free(l);
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    size_t arena = 1;
    for (size_t i = 0; i < n; i++) {
        if ((rc = read_instance(json_array_get(l->root, i), i, &l->in[i], err)) != 0) {
            listing_free(l);
            return rc;
        }
        l->n++;
        size_t host = l->in[i].host_len;
        arena += (host < RS_ADDRESS_MAX ? host : RS_ADDRESS_MAX) + 10; /* [ ] : port NUL */
    }
    l->arena = malloc(arena);
    if (l->arena == NULL) {
        listing_free(l);
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    char *cursor = l->arena;
    for (size_t i = 0; i < l->n; i++) {
        char buf[RS_ADDRESS_MAX + 1];
        if (make_address(&l->in[i], buf, sizeof(buf), NULL) == 0) {
            size_t alen = strlen(buf);
            memcpy(cursor, buf, alen + 1);
            l->in[i].address = cursor;
            cursor += alen + 1;
        }
    }
    return 0;
}

/* Instances by id, then by listing position: the first of equal ids comes first. */
static int
instance_id_cmp(const void *a, const void *b) {
    const instance *x = *(const instance *const *)a, *y = *(const instance *const *)b;
    int c = bytes_cmp(x->id, x->id_len, y->id, y->id_len);
    if (c != 0) {
        return c;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

static int
instance_address_cmp(const void *a, const void *b) {
    const instance *x = *(const instance *const *)a, *y = *(const instance *const *)b;
    int c = strcmp(x->address, y->address);
    if (c != 0) {
        return c;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Meta.ringside_weight: a decimal string 1..RS_WEIGHT_MAX; absent is 1. */
static int
meta_weight(const json_t *meta, uint32_t *w, rs_error *why) {
    char d[DESCRIBE_CAP];
    const json_t *v = meta != NULL ? json_object_get(meta, "ringside_weight") : NULL;
    *w = 1;
    if (v == NULL) {
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        uint32_t x = 0;
        bool ok = len >= 1 && len <= 9;
        for (size_t i = 0; ok && i < len; i++) {
            ok = s[i] >= '0' && s[i] <= '9';
            x = x * 10 + (uint32_t)(s[i] - '0');
        }
        if (ok && x >= 1 && x <= RS_WEIGHT_MAX) {
            *w = x;
            return 0;
        }
    }
    return rs_error_set(why, -EINVAL,
                        "ringside_weight must be an integer between 1 and %d, got %s; using 1",
                        RS_WEIGHT_MAX, describe_listed(d, v));
}

/* Meta.ringside_zone: as a node's zone; absent is "". */
static int
meta_zone(const json_t *meta, const char **zone, rs_error *why) {
    char d[DESCRIBE_CAP];
    const json_t *v = meta != NULL ? json_object_get(meta, "ringside_zone") : NULL;
    *zone = "";
    if (v == NULL) {
        return 0;
    }
    if (json_is_string(v) && memchr(json_string_value(v), '\0', json_string_length(v)) == NULL) {
        rs_node n = {.id = "x",
                     .address = "127.0.0.1:1",
                     .zone = json_string_value(v),
                     .weight = 1,
                     .enabled = true};
        if (rs_node_validate(&n, NULL) == 0) {
            *zone = json_string_value(v);
            return 0;
        }
    }
    return rs_error_set(why, -EINVAL,
                        "ringside_zone must be at most %d bytes without spaces or control "
                        "characters, got %s; using no zone",
                        RS_ZONE_MAX, describe_listed(d, v));
}

/* A valid instance's node, strings borrowed from the listing. */
typedef struct svc_node {
    const instance *in;
    const char *zone;
    uint32_t weight;
} svc_node;

int
rs_health_to_membership(const char *body, size_t len, const rs_ring_params *base,
                        rs_membership *out, rs_error *err) {
    rs_error scratch, why;
    rs_membership m;
    health_listing l;
    const instance **valid = NULL;
    svc_node *keep = NULL;
    size_t n_valid = 0, n_keep = 0;
    int rc;

    assert(base != NULL && out != NULL && (body != NULL || len == 0));
    if (err == NULL) {
        err = &scratch;
    }
    err->msg[0] = '\0';
    memset(&m, 0, sizeof(m));
    memset(out, 0, sizeof(*out));
    if (rs_ring_params_validate(base, &why) != 0) {
        return rs_error_set(err, -EINVAL, "base ring parameters: %s", why.msg);
    }
    if ((rc = listing_parse(body, len, &l, err)) != 0) {
        return rc;
    }
    m.params = *base;
    m.max_removal_fraction = RS_MAX_REMOVAL_DEFAULT;

    valid = malloc((l.n > 0 ? l.n : 1) * sizeof(*valid));
    keep = malloc((l.n > 0 ? l.n : 1) * sizeof(*keep));
    if (valid == NULL || keep == NULL) {
        rc = rs_error_set(err, -ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < l.n; i++) {
        const instance *in = &l.in[i];
        char buf[RS_ADDRESS_MAX + 1];
        if (check_id(in->id, in->id_len, &why) != 0 ||
            make_address(in, buf, sizeof(buf), &why) != 0) {
            reject(&m, SERVICE_KEY, in->id, in->id_len, why.msg);
            continue;
        }
        valid[n_valid++] = in;
    }
    qsort(valid, n_valid, sizeof(*valid), instance_id_cmp);
    for (size_t i = 0; i < n_valid; i++) {
        const instance *in = valid[i];
        if (n_keep > 0 && bytes_cmp(keep[n_keep - 1].in->id, keep[n_keep - 1].in->id_len, in->id,
                                    in->id_len) == 0) {
            char q[QUOTE_CAP], q2[QUOTE_CAP];
            const instance *first = keep[n_keep - 1].in;
            rs_error_set(&why, -EEXIST,
                         "duplicate service ID on node %s (listing[%zu]); keeping the one on "
                         "node %s (listing[%zu])",
                         rs_json_quote(q, in->node, in->node_len), in->index,
                         rs_json_quote(q2, first->node, first->node_len), first->index);
            reject(&m, SERVICE_KEY, in->id, in->id_len, why.msg);
            continue;
        }
        if (n_keep >= RS_NODES_MAX) {
            rs_error_set(&why, -E2BIG, "too many nodes (max %d)", RS_NODES_MAX);
            reject(&m, SERVICE_KEY, in->id, in->id_len, why.msg);
            continue;
        }
        svc_node *k = &keep[n_keep++];
        k->in = in;
        if (meta_weight(in->meta, &k->weight, &why) != 0) {
            reject(&m, SERVICE_KEY, in->id, in->id_len, why.msg);
        }
        if (meta_zone(in->meta, &k->zone, &why) != 0) {
            reject(&m, SERVICE_KEY, in->id, in->id_len, why.msg);
        }
    }

    if (n_keep > 0) {
        size_t strings = 0;
        for (size_t i = 0; i < n_keep; i++) {
            strings += keep[i].in->id_len + strlen(keep[i].in->address) + strlen(keep[i].zone) + 3;
        }
        m.nodes = malloc(n_keep * sizeof(*m.nodes) + strings);
        m.healthy = malloc(n_keep);
        if (m.nodes == NULL || m.healthy == NULL) {
            rc = rs_error_set(err, -ENOMEM, "out of memory");
            goto done;
        }
        char *cursor = (char *)(m.nodes + n_keep);
        for (size_t i = 0; i < n_keep; i++) {
            const instance *in = keep[i].in;
            const char *src[3] = {in->id, in->address, keep[i].zone};
            size_t lens[3] = {in->id_len, strlen(in->address), strlen(keep[i].zone)};
            const char *dst[3];
            for (size_t k = 0; k < 3; k++) {
                memcpy(cursor, src[k], lens[k]);
                cursor[lens[k]] = '\0';
                dst[k] = cursor;
                cursor += lens[k] + 1;
            }
            m.nodes[i] = (rs_node){.id = dst[0],
                                   .address = dst[1],
                                   .zone = dst[2],
                                   .weight = keep[i].weight,
                                   .enabled = true};
            m.healthy[i] = in->healthy;
        }
        m.n_nodes = n_keep;
    }
    rc = 0;

done:
    free(valid);
    free(keep);
    listing_free(&l);
    if (rc != 0) {
        rs_membership_free(&m);
        return rc;
    }
    *out = m;
    return 0;
}

/* The first instance (in listing order) of sorted[0..n) with this id, or NULL. */
static const instance *
first_by_id(const instance *const *sorted, size_t n, const char *id) {
    size_t lo = 0, hi = n, len = strlen(id);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (bytes_cmp(sorted[mid]->id, sorted[mid]->id_len, id, len) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < n && bytes_cmp(sorted[lo]->id, sorted[lo]->id_len, id, len) == 0 ? sorted[lo]
                                                                                 : NULL;
}

static const instance *
first_by_address(const instance *const *sorted, size_t n, const char *address) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(sorted[mid]->address, address) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < n && strcmp(sorted[lo]->address, address) == 0 ? sorted[lo] : NULL;
}

int
rs_membership_apply_health(rs_membership *m, const char *body, size_t len, rs_error *err) {
    rs_error scratch;
    health_listing l;
    const instance **by_id = NULL, **by_address = NULL;
    uint8_t *healthy = NULL;
    size_t n_address = 0;
    int rc;

    assert(m != NULL && (m->nodes != NULL || m->n_nodes == 0) && (body != NULL || len == 0));
    if (err == NULL) {
        err = &scratch;
    }
    err->msg[0] = '\0';
    if ((rc = listing_parse(body, len, &l, err)) != 0) {
        return rc;
    }
    by_id = malloc((l.n > 0 ? l.n : 1) * sizeof(*by_id));
    by_address = malloc((l.n > 0 ? l.n : 1) * sizeof(*by_address));
    healthy = m->healthy != NULL ? m->healthy : malloc(m->n_nodes > 0 ? m->n_nodes : 1);
    if (by_id == NULL || by_address == NULL || healthy == NULL) {
        rc = rs_error_set(err, -ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < l.n; i++) {
        by_id[i] = &l.in[i];
        if (l.in[i].address != NULL) {
            by_address[n_address++] = &l.in[i];
        }
    }
    qsort(by_id, l.n, sizeof(*by_id), instance_id_cmp);
    qsort(by_address, n_address, sizeof(*by_address), instance_address_cmp);
    for (size_t i = 0; i < m->n_nodes; i++) {
        const instance *in = first_by_id(by_id, l.n, m->nodes[i].id);
        if (in == NULL) {
            in = first_by_address(by_address, n_address, m->nodes[i].address);
        }
        healthy[i] = in != NULL && in->healthy;
    }
    m->healthy = healthy;
    healthy = NULL;

done:
    if (healthy != m->healthy) {
        free(healthy);
    }
    free(by_id);
    free(by_address);
    listing_free(&l);
    return rc;
}

/* ---- the membership ------------------------------------------------------------------------ */

void
rs_membership_free(rs_membership *m) {
    if (m == NULL) {
        return;
    }
    free(m->nodes); /* the node strings live in the same block */
    free(m->healthy);
    memset(m, 0, sizeof(*m));
}

int
rs_membership_copy(const rs_membership *src, rs_membership *dst) {
    assert(src != NULL && dst != NULL);
    rs_membership m = *src;
    m.nodes = NULL;
    m.healthy = NULL;
    m.n_nodes = 0;
    if (src->n_nodes > 0) {
        size_t n = src->n_nodes, strings = 0;
        for (size_t i = 0; i < n; i++) {
            const rs_node *s = &src->nodes[i];
            strings += strlen(s->id) + strlen(s->address) + (s->zone ? strlen(s->zone) : 0) + 3;
        }
        m.nodes = malloc(n * sizeof(*m.nodes) + strings);
        m.healthy = malloc(n);
        if (m.nodes == NULL || m.healthy == NULL) {
            free(m.nodes);
            free(m.healthy);
            memset(dst, 0, sizeof(*dst));
            return -ENOMEM;
        }
        char *cursor = (char *)(m.nodes + n);
        for (size_t i = 0; i < n; i++) {
            const rs_node *s = &src->nodes[i];
            const char *from[3] = {s->id, s->address, s->zone ? s->zone : ""};
            const char *to[3];
            for (size_t k = 0; k < 3; k++) {
                size_t len = strlen(from[k]);
                memcpy(cursor, from[k], len + 1);
                to[k] = cursor;
                cursor += len + 1;
            }
            m.nodes[i] = *s;
            m.nodes[i].id = to[0];
            m.nodes[i].address = to[1];
            m.nodes[i].zone = to[2];
        }
        if (src->healthy != NULL) {
            memcpy(m.healthy, src->healthy, n);
        } else {
            memset(m.healthy, 1, n);
        }
        m.n_nodes = n;
    }
    *dst = m;
    return 0;
}

/* ---- the mass-removal guard ------------------------------------------------------------------ */

/* A percentage as people write it: "75", "66.7", "50". */
static const char *
percent(char *buf, size_t cap, double fraction) {
    snprintf(buf, cap, "%.1f", fraction * 100.0);
    size_t n = strlen(buf);
    if (n >= 2 && strcmp(buf + n - 2, ".0") == 0) {
        buf[n - 2] = '\0';
    }
    return buf;
}

bool
rs_guard_holds(const rs_ring *from, const rs_membership *to, double max_fraction, rs_error *err) {
    assert(to != NULL && (to->nodes != NULL || to->n_nodes == 0));
    if (err != NULL) {
        err->msg[0] = '\0';
    }
    if (from == NULL) {
        return false;
    }
    size_t nf = rs_ring_node_count(from), before = 0;
    for (size_t i = 0; i < nf; i++) {
        before += rs_ring_node_at(from, i)->enabled;
    }
    if (before == 0) {
        return false;
    }
    /* Count the enabled nodes of `from` still enabled in `to`; `seen` makes a duplicate
     * id in `to` count once. */
    uint8_t *seen = calloc(nf, 1);
    if (seen == NULL) {
        rs_error_set(err, -ENOMEM, "out of memory checking the mass-removal guard");
        return true; /* fail safe: the last ring keeps serving */
    }
    size_t kept = 0, after = 0;
    for (size_t j = 0; j < to->n_nodes; j++) {
        const rs_node *n = &to->nodes[j];
        if (!n->enabled || n->id == NULL) {
            continue;
        }
        after++;
        int k = rs_ring_find(from, n->id);
        if (k >= 0 && rs_ring_node_at(from, (size_t)k)->enabled && !seen[k]) {
            seen[k] = 1;
            kept++;
        }
    }
    free(seen);
    size_t removed = before - kept;
    char p1[16], p2[16];
    if (after == 0) {
        rs_error_set(err, -EBUSY, "update would leave no enabled node (%zu enabled now)", before);
        return true;
    }
    if (removed == before) {
        if (before == 1) {
            rs_error_set(err, -EBUSY, "update would remove the only enabled node");
        } else {
            rs_error_set(err, -EBUSY, "update would remove all %zu enabled nodes", before);
        }
        return true;
    }
    /* A quotient, not max_fraction * before: 3 / 10 is the same double as 0.3, so a
     * removal of exactly the allowed fraction is never held by a rounding error. */
    double fraction = (double)removed / (double)before;
    if (!(fraction <= max_fraction)) { /* a NaN max_fraction holds every removal */
        if (removed == 0) {
            return false;
        }
        rs_error_set(err, -EBUSY, "update would remove %zu of %zu enabled nodes (%s%%, max %s%%)",
                     removed, before, percent(p1, sizeof(p1), fraction),
                     percent(p2, sizeof(p2), max_fraction));
        return true;
    }
    return false;
}

/* ---- backoff and rate limit -------------------------------------------------------------------
 */

uint64_t
rs_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms, double random) {
    if (cap_ms < base_ms) {
        cap_ms = base_ms;
    }
    /* base * 2^attempt, stopping at cap before it can overflow. */
    uint64_t ceiling = base_ms;
    for (unsigned i = 0; i < attempt && ceiling > 0 && ceiling < cap_ms; i++) {
        ceiling = ceiling > cap_ms / 2 ? cap_ms : ceiling * 2;
    }
    if (ceiling > cap_ms) {
        ceiling = cap_ms;
    }
    if (!(random > 0.0)) { /* negative and NaN draws too */
        return base_ms;
    }
    uint64_t span = ceiling - base_ms;
    double offset = random * (double)span;
    /* random < 1, but its product with a span near 2^64 can round up to the span. */
    if (!(offset < (double)span)) {
        return ceiling;
    }
    uint64_t off = (uint64_t)offset;
    return base_ms + (off < span ? off : span);
}

void
rs_bucket_init(rs_bucket *b, double rate, double burst, uint64_t now_ms) {
    assert(b != NULL);
    b->rate = rate > 0.0 ? rate : 0.0;
    b->burst = burst >= 1.0 ? burst : 1.0;
    b->tokens = b->burst;
    b->last_ms = now_ms;
}

uint64_t
rs_bucket_take(rs_bucket *b, uint64_t now_ms) {
    assert(b != NULL);
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * b->rate / 1000.0;
        if (b->tokens > b->burst) {
            b->tokens = b->burst;
        }
    }
    /* A clock that went back refills nothing, and counts from where it is now. */
    b->last_ms = now_ms;
    /* The slack absorbs rounding, so waiting exactly the ms returned below finds a token. */
    if (b->tokens >= 1.0 - TOKEN_SLACK) {
        b->tokens = b->tokens > 1.0 ? b->tokens - 1.0 : 0.0;
        return 0;
    }
    if (!(b->rate > 0.0)) {
        return UINT64_MAX;
    }
    double wait = ceil((1.0 - TOKEN_SLACK - b->tokens) * 1000.0 / b->rate);
    if (!(wait < 18446744073709551615.0)) {
        return UINT64_MAX;
    }
    return wait < 1.0 ? 1 : (uint64_t)wait;
}
