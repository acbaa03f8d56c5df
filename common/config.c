/* Strict JSON configuration parser (SPEC §10): every key known, every type and range
 * checked, every error naming its JSON path. Pure: a buffer in, a struct out. */
#include "rs_config.h"
#include "rs_error.h"
#include "rs_json.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define PATH_MAX_LEN 96 /* "membership.nodes[9999].address" and every other path we build */
#define QUOTE_MAX RS_QUOTE_MAX
#define QUOTE_CAP RS_QUOTE_CAP
#define DESCRIBE_CAP RS_DESCRIBE_CAP

#define MS_PER_S 1000ull
#define MS_PER_M (60 * MS_PER_S)
#define MS_PER_H (60 * MS_PER_M)

#define KIB 1024u
#define MIB (1024u * KIB)
#define GIB (1024u * MIB)

/* ---- describing values in messages ------------------------------------------------ */

/* For config values (integers and reals apart). */
static const char *
describe(char *buf, const json_t *v) {
    return rs_json_describe(buf, v, true);
}

/* "250ms", "5s", "10m", "24h": the largest unit that states ms exactly. */
static const char *
format_duration(char *buf, size_t cap, uint64_t ms) {
    unsigned long long v = ms;
    if (ms == 0) {
        snprintf(buf, cap, "0");
    } else if (ms % MS_PER_H == 0) {
        snprintf(buf, cap, "%lluh", v / MS_PER_H);
    } else if (ms % MS_PER_M == 0) {
        snprintf(buf, cap, "%llum", v / MS_PER_M);
    } else if (ms % MS_PER_S == 0) {
        snprintf(buf, cap, "%llus", v / MS_PER_S);
    } else {
        snprintf(buf, cap, "%llums", v);
    }
    return buf;
}

static bool
is_name_char(unsigned char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-';
}

static bool
all_name_chars(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (!is_name_char((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* Printable and without spaces: these strings end up in logs, URLs and replies. */
static bool
all_graphic(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch == 0x7f) {
            return false;
        }
    }
    return true;
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

/* A key that reads unambiguously in a dotted path without quotes. */
static bool
is_plain_key(const char *s, size_t len) {
    if (len == 0 || len > QUOTE_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!is_name_char(ch) || ch == '.') {
            return false;
        }
    }
    return true;
}

/* ---- typed accessors; each fails with "<path>: <why>" ------------------------------ */

/* path + "." + key, the key quoted when it is not a plain word. */
static void
join_path(char *out, const char *path, const char *key) {
    char q[QUOTE_CAP];
    size_t klen = strlen(key);
    const char *k = is_plain_key(key, klen) ? key : rs_json_quote(q, key, klen);
    snprintf(out, PATH_MAX_LEN, "%s%s%s", path, path[0] != '\0' ? "." : "", k);
}

/* v must be an object whose keys are all in keys (NULL-terminated). */
static int
check_object(const json_t *v, const char *path, const char *const *keys, rs_error *err) {
    char d[DESCRIBE_CAP];
    if (!json_is_object(v)) {
        return rs_error_set(err, -EINVAL, "%s: must be an object, got %s", path, describe(d, v));
    }
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        bool known = false;
        for (const char *const *k = keys; *k != NULL && !known; k++) {
            known = strcmp(*k, key) == 0;
        }
        if (!known) {
            char p[PATH_MAX_LEN];
            join_path(p, path, key);
            return rs_error_set(err, -EINVAL, "%s: unknown key", p);
        }
    }
    return 0;
}

/* A borrowed view of a string value without NUL bytes. */
static int
get_str(const json_t *v, const char *path, const char **s, size_t *len, rs_error *err) {
    char d[DESCRIBE_CAP];
    if (!json_is_string(v)) {
        return rs_error_set(err, -EINVAL, "%s: must be a string, got %s", path, describe(d, v));
    }
    *s = json_string_value(v);
    *len = json_string_length(v);
    if (memchr(*s, '\0', *len) != NULL) {
        return rs_error_set(err, -EINVAL, "%s: must not contain NUL bytes", path);
    }
    return 0;
}

/* A string copied into buf[cap]; too long is an error, never a truncation. */
static int
copy_str(const char *path, const char *s, size_t len, char *buf, size_t cap, rs_error *err) {
    if (len >= cap) {
        return rs_error_set(err, -EINVAL, "%s: too long (%zu bytes, max %zu)", path, len, cap - 1);
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return 0;
}

/* An absolute path, "" allowed only when !required. */
static int
get_path(const json_t *v, const char *path, bool required, char *buf, size_t cap, rs_error *err) {
    const char *s;
    size_t len;
    char q[QUOTE_CAP];
    if (get_str(v, path, &s, &len, err) != 0) {
        return -EINVAL;
    }
    if (len == 0 && required) {
        return rs_error_set(err, -EINVAL, "%s: must not be empty", path);
    }
    if (len > 0 && s[0] != '/') {
        return rs_error_set(err, -EINVAL, "%s: must be an absolute path, got %s", path,
                            rs_json_quote(q, s, len));
    }
    return copy_str(path, s, len, buf, cap, err);
}

static int
get_u32(const json_t *v, const char *path, uint32_t min, uint32_t max, uint32_t *out,
        rs_error *err) {
    return rs_json_get_u32(v, path, ":", min, max, out, err);
}

static int
get_bool(const json_t *v, const char *path, bool *out, rs_error *err) {
    return rs_json_get_bool(v, path, ":", out, err);
}

/* A number in [0, 1] (or (0, 1] with open_zero); integers are numbers too. */
static int
get_fraction(const json_t *v, const char *path, bool open_zero, double *out, rs_error *err) {
    char d[DESCRIBE_CAP];
    if (json_is_number(v)) {
        double x = json_number_value(v);
        if ((open_zero ? x > 0.0 : x >= 0.0) && x <= 1.0) {
            *out = x;
            return 0;
        }
    }
    return rs_error_set(err, -EINVAL, "%s: must be a number %s and at most 1, got %s", path,
                        open_zero ? "greater than 0" : "at least 0", describe(d, v));
}

/* A duration string within [min, max] ms, or "0" when zero_ok. */
static int
get_duration(const json_t *v, const char *path, uint64_t min, uint64_t max, bool zero_ok,
             uint64_t *out, rs_error *err) {
    char d[DESCRIBE_CAP], lo[24], hi[24];
    uint64_t ms;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
        rs_duration_parse(json_string_value(v), &ms) != 0) {
        return rs_error_set(
            err, -EINVAL,
            "%s: must be a duration like \"5s\" or \"250ms\" (units ms, s, m, h), got %s", path,
            describe(d, v));
    }
    if ((ms == 0 && zero_ok) || (ms >= min && ms <= max)) {
        *out = ms;
        return 0;
    }
    return rs_error_set(err, -EINVAL, "%s: must be %sbetween %s and %s", path,
                        zero_ok ? "0 (never) or " : "", format_duration(lo, sizeof(lo), min),
                        format_duration(hi, sizeof(hi), max));
}

/* "unknown <noun> "x" (expected a, b, c)". */
static int
unknown_name(const char *path, const char *noun, const char *s, size_t len,
             const char *const *names, size_t n, rs_error *err) {
    char q[QUOTE_CAP], list[160];
    size_t o = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(list + o, sizeof(list) - o, "%s%s", i > 0 ? ", " : "", names[i]);
        if (w < 0 || (size_t)w >= sizeof(list) - o) {
            break;
        }
        o += (size_t)w;
    }
    return rs_error_set(err, -EINVAL, "%s: unknown %s %s (expected %s)", path, noun,
                        rs_json_quote(q, s, len), list);
}

/* One of names[0..n); *out gets its index. */
static int
get_choice(const json_t *v, const char *path, const char *noun, const char *const *names, size_t n,
           int *out, rs_error *err) {
    const char *s;
    size_t len;
    if (get_str(v, path, &s, &len, err) != 0) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    return unknown_name(path, noun, s, len, names, n, err);
}

/* ---- sections ----------------------------------------------------------------------- */

static int
parse_ring(const json_t *obj, rs_config *c, rs_error *err) {
    static const char *const keys[] = {
        "name",       "algorithm",         "hash",   "replicas",       "hash_tag",
        "table_size", "points_per_weight", "vnodes", "replica_factor", "zone_aware_replicas",
        NULL};
    const json_t *v;
    const char *s;
    size_t len;
    char q[QUOTE_CAP];

    if (check_object(obj, "ring", keys, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "name")) != NULL) {
        if (get_str(v, "ring.name", &s, &len, err) != 0) {
            return -EINVAL;
        }
        if (len < 1 || len >= sizeof(c->ring_name) || !all_name_chars(s, len)) {
            return rs_error_set(
                err, -EINVAL,
                "ring.name: must be 1 to 63 characters from A-Z a-z 0-9 _ . -, got %s",
                rs_json_quote(q, s, len));
        }
        memcpy(c->ring_name, s, len + 1);
    }
    if ((v = json_object_get(obj, "algorithm")) != NULL) {
        if (get_str(v, "ring.algorithm", &s, &len, err) != 0) {
            return -EINVAL;
        }
        if (rs_algorithm_from_name(s, &c->params.algorithm) != 0) {
            const char *names[RS_ALG_COUNT];
            for (int i = 0; i < RS_ALG_COUNT; i++) {
                names[i] = rs_algorithm_name((rs_algorithm)i);
            }
            return unknown_name("ring.algorithm", "algorithm", s, len, names, RS_ALG_COUNT, err);
        }
    }
    if ((v = json_object_get(obj, "hash")) != NULL) {
        if (get_str(v, "ring.hash", &s, &len, err) != 0) {
            return -EINVAL;
        }
        if (rs_hash_from_name(s, &c->params.hash) != 0) {
            const char *names[RS_HASH_COUNT];
            for (int i = 0; i < RS_HASH_COUNT; i++) {
                names[i] = rs_hash_name((rs_hash_kind)i);
            }
            return unknown_name("ring.hash", "hash", s, len, names, RS_HASH_COUNT, err);
        }
    }
    if ((v = json_object_get(obj, "replicas")) != NULL &&
        get_u32(v, "ring.replicas", 1, RS_REPLICAS_MAX, &c->params.replicas, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "hash_tag")) != NULL) {
        if (get_str(v, "ring.hash_tag", &s, &len, err) != 0) {
            return -EINVAL;
        }
        if ((len != 0 && len != 2) || !all_ascii_graphic(s, len)) {
            return rs_error_set(
                err, -EINVAL,
                "ring.hash_tag: must be \"\" or two ASCII characters like \"{}\", got %s",
                rs_json_quote(q, s, len));
        }
        memcpy(c->params.hash_tag, s, len + 1);
    }
    /* Ranges here; table_size's primality and the rules across fields are checked by
     * rs_ring_params_validate once the whole file is read. */
    if ((v = json_object_get(obj, "table_size")) != NULL &&
        get_u32(v, "ring.table_size", RS_TABLE_SIZE_MIN, RS_TABLE_SIZE_MAX, &c->params.table_size,
                err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "points_per_weight")) != NULL &&
        get_u32(v, "ring.points_per_weight", 1, RS_POINTS_PER_WEIGHT_MAX,
                &c->params.points_per_weight, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "vnodes")) != NULL &&
        get_u32(v, "ring.vnodes", 1, RS_VNODES_MAX, &c->params.vnodes, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "replica_factor")) != NULL &&
        get_u32(v, "ring.replica_factor", 1, RS_REPLICA_FACTOR_MAX, &c->params.replica_factor,
                err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "zone_aware_replicas")) != NULL &&
        get_bool(v, "ring.zone_aware_replicas", &c->params.zone_aware_replicas, err) != 0) {
        return -EINVAL;
    }
    return 0;
}

static int
get_ids(const json_t *v, const char *path, uint32_t *ids, size_t *n, rs_error *err) {
    char d[DESCRIBE_CAP], p[PATH_MAX_LEN];
    if (!json_is_array(v)) {
        return rs_error_set(err, -EINVAL, "%s: must be an array of integers, got %s", path,
                            describe(d, v));
    }
    if (json_array_size(v) > RS_CONFIG_MAX_IDS) {
        return rs_error_set(err, -EINVAL, "%s: too many entries (%zu, max %d)", path,
                            json_array_size(v), RS_CONFIG_MAX_IDS);
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        snprintf(p, sizeof(p), "%s[%zu]", path, i);
        /* (uid_t)-1 means "no change" to chown(2) and is nobody's id. */
        if (get_u32(json_array_get(v, i), p, 0, UINT32_MAX - 1, &ids[i], err) != 0) {
            return -EINVAL;
        }
    }
    *n = json_array_size(v);
    return 0;
}

static int
parse_listen(const json_t *obj, rs_config *c, rs_error *err) {
    static const char *const keys[] = {"socket",
                                       "mode",
                                       "group",
                                       "allow_uids",
                                       "allow_gids",
                                       "max_clients",
                                       "max_key_bytes",
                                       "max_keys_per_request",
                                       "max_request_bytes",
                                       "max_output_bytes",
                                       "idle_timeout",
                                       NULL};
    const json_t *v;
    const char *s;
    size_t len;
    char q[QUOTE_CAP], d[DESCRIBE_CAP];
    uint64_t ms;

    if (check_object(obj, "listen", keys, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "socket")) != NULL &&
        get_path(v, "listen.socket", true, c->socket_path, sizeof(c->socket_path), err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "mode")) != NULL) {
        /* A string, not a JSON number: 0660 written as a number would be 660 decimal. */
        uint32_t mode = 0;
        bool ok = json_is_string(v) && (len = json_string_length(v)) >= 3 && len <= 4;
        for (size_t i = 0; ok && i < len; i++) {
            char ch = json_string_value(v)[i];
            ok = ch >= '0' && ch <= '7';
            mode = mode * 8 + (uint32_t)(ch - '0');
        }
        if (!ok || mode > 0777) {
            return rs_error_set(err, -EINVAL,
                                "listen.mode: must be an octal string like \"0660\", got %s",
                                describe(d, v));
        }
        c->socket_mode = mode;
    }
    if ((v = json_object_get(obj, "group")) != NULL) {
        if (get_str(v, "listen.group", &s, &len, err) != 0) {
            return -EINVAL;
        }
        if (!all_graphic(s, len) || memchr(s, ':', len) != NULL) {
            return rs_error_set(err, -EINVAL,
                                "listen.group: must be a group name without spaces or ':', got %s",
                                rs_json_quote(q, s, len));
        }
        if (copy_str("listen.group", s, len, c->socket_group, sizeof(c->socket_group), err) != 0) {
            return -EINVAL;
        }
    }
    if ((v = json_object_get(obj, "allow_uids")) != NULL &&
        get_ids(v, "listen.allow_uids", c->allow_uids, &c->n_allow_uids, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "allow_gids")) != NULL &&
        get_ids(v, "listen.allow_gids", c->allow_gids, &c->n_allow_gids, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "max_clients")) != NULL &&
        get_u32(v, "listen.max_clients", 1, 1000000, &c->max_clients, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "max_key_bytes")) != NULL &&
        get_u32(v, "listen.max_key_bytes", 1, 256 * MIB, &c->max_key_bytes, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "max_keys_per_request")) != NULL &&
        get_u32(v, "listen.max_keys_per_request", 1, 1000000, &c->max_keys_per_request, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "max_request_bytes")) != NULL &&
        get_u32(v, "listen.max_request_bytes", 64, 256 * MIB, &c->max_request_bytes, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "max_output_bytes")) != NULL &&
        get_u32(v, "listen.max_output_bytes", KIB, GIB, &c->max_output_bytes, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "idle_timeout")) != NULL) {
        if (get_duration(v, "listen.idle_timeout", MS_PER_S, 24 * MS_PER_H, true, &ms, err) != 0) {
            return -EINVAL;
        }
        c->idle_timeout_ms = (uint32_t)ms;
    }
    return 0;
}

static int
parse_http(const json_t *obj, rs_config *c, rs_error *err) {
    static const char *const keys[] = {"enabled", "address", NULL};
    const json_t *v;
    const char *s;
    size_t len;
    char q[QUOTE_CAP], host[sizeof(c->http_address)];

    if (check_object(obj, "http", keys, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "enabled")) != NULL &&
        get_bool(v, "http.enabled", &c->http_enabled, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "address")) != NULL) {
        if (get_str(v, "http.address", &s, &len, err) != 0 ||
            copy_str("http.address", s, len, c->http_address, sizeof(c->http_address), err) != 0) {
            return -EINVAL;
        }
        /* rs_node_default_id accepts exactly the host:port forms a node address may take. */
        if (!all_graphic(s, len) || rs_node_default_id(s, host, sizeof(host)) != 0) {
            return rs_error_set(err, -EINVAL,
                                "http.address: must be host:port like \"127.0.0.1:9317\", got %s",
                                rs_json_quote(q, s, len));
        }
    }
    return 0;
}

/* An http:// or https:// URL with a host and no path: the watcher appends /v1/... */
static int
get_consul_address(const json_t *v, const char *path, char *buf, size_t cap, rs_error *err) {
    const char *s;
    size_t len;
    char q[QUOTE_CAP];
    if (get_str(v, path, &s, &len, err) != 0) {
        return -EINVAL;
    }
    size_t scheme = strncmp(s, "http://", 7) == 0 ? 7 : strncmp(s, "https://", 8) == 0 ? 8 : 0;
    if (scheme == 0 || len == scheme || !all_graphic(s, len) ||
        memchr(s + scheme, '/', len > scheme ? len - scheme : 0) != NULL) {
        return rs_error_set(
            err, -EINVAL,
            "%s: must be a URL like \"http://127.0.0.1:8500\" (http or https, no path), "
            "got %s",
            path, rs_json_quote(q, s, len));
    }
    return copy_str(path, s, len, buf, cap, err);
}

/* A Consul service name: it goes into URL paths unescaped, so [A-Za-z0-9_.-]; "" = none. */
static int
get_service(const json_t *v, const char *path, char *buf, size_t cap, rs_error *err) {
    const char *s;
    size_t len;
    char q[QUOTE_CAP];
    if (get_str(v, path, &s, &len, err) != 0) {
        return -EINVAL;
    }
    if (!all_name_chars(s, len)) {
        return rs_error_set(err, -EINVAL,
                            "%s: must be a service name from A-Z a-z 0-9 _ . -, got %s", path,
                            rs_json_quote(q, s, len));
    }
    return copy_str(path, s, len, buf, cap, err);
}

static int
parse_consul(const json_t *obj, rs_config *c, bool *kv_prefix_set, rs_error *err) {
    static const char *const keys[] = {
        "address",   "kv_prefix", "service", "health_service", "token_file", "ca_file",
        "cert_file", "key_file",  "stale",   "wait",           "max_stale",  "max_removal_fraction",
        NULL};
    const json_t *v;
    const char *s;
    size_t len;
    char q[QUOTE_CAP];
    uint64_t ms;

    if (check_object(obj, "membership.consul", keys, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "address")) != NULL &&
        get_consul_address(v, "membership.consul.address", c->consul.address,
                           sizeof(c->consul.address), err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "kv_prefix")) != NULL) {
        if (get_str(v, "membership.consul.kv_prefix", &s, &len, err) != 0) {
            return -EINVAL;
        }
        if (len > 1 && s[len - 1] == '/') {
            len--; /* "ringside/sessions/" as SPEC §4.1 writes it */
        }
        if (len == 0 || s[0] == '/' || s[len - 1] == '/' || !all_graphic(s, len) ||
            strpbrk(s, "?#%") != NULL) {
            return rs_error_set(
                err, -EINVAL,
                "membership.consul.kv_prefix: must be a KV path like "
                "\"ringside/sessions\" (no leading '/', spaces, '?', '#' or '%%'), got %s",
                rs_json_quote(q, json_string_value(v), json_string_length(v)));
        }
        if (copy_str("membership.consul.kv_prefix", s, len, c->consul.kv_prefix,
                     sizeof(c->consul.kv_prefix), err) != 0) {
            return -EINVAL;
        }
        *kv_prefix_set = true;
    }
    if ((v = json_object_get(obj, "service")) != NULL &&
        get_service(v, "membership.consul.service", c->consul.service, sizeof(c->consul.service),
                    err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "health_service")) != NULL &&
        get_service(v, "membership.consul.health_service", c->consul.health_service,
                    sizeof(c->consul.health_service), err) != 0) {
        return -EINVAL;
    }
    static const struct {
        const char *key, *path;
        size_t off;
    } files[] = {
        {"token_file", "membership.consul.token_file", offsetof(rs_config, consul.token_file)},
        {"ca_file", "membership.consul.ca_file", offsetof(rs_config, consul.ca_file)},
        {"cert_file", "membership.consul.cert_file", offsetof(rs_config, consul.cert_file)},
        {"key_file", "membership.consul.key_file", offsetof(rs_config, consul.key_file)},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if ((v = json_object_get(obj, files[i].key)) != NULL &&
            get_path(v, files[i].path, false, (char *)c + files[i].off, sizeof(c->consul.ca_file),
                     err) != 0) {
            return -EINVAL;
        }
    }
    if ((v = json_object_get(obj, "stale")) != NULL &&
        get_bool(v, "membership.consul.stale", &c->consul.stale, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "wait")) != NULL) {
        if (get_duration(v, "membership.consul.wait", MS_PER_S, 10 * MS_PER_M, false, &ms, err) !=
            0) {
            return -EINVAL;
        }
        c->consul.wait_ms = (uint32_t)ms;
    }
    if ((v = json_object_get(obj, "max_stale")) != NULL) {
        if (get_duration(v, "membership.consul.max_stale", MS_PER_S, MS_PER_H, false, &ms, err) !=
            0) {
            return -EINVAL;
        }
        c->consul.max_stale_ms = (uint32_t)ms;
    }
    if ((v = json_object_get(obj, "max_removal_fraction")) != NULL &&
        get_fraction(v, "membership.consul.max_removal_fraction", true,
                     &c->consul.max_removal_fraction, err) != 0) {
        return -EINVAL;
    }
    return 0;
}

/* ---- nodes ------------------------------------------------------------------------- */

/* Reads and checks membership.nodes[i] into *out, whose strings borrow from the JSON
 * value or, for an id taken from the address, from idbuf[RS_ID_MAX + 1]. */
static int
read_node(const json_t *obj, size_t i, rs_config_node *out, char *idbuf, rs_error *err) {
    static const char *const keys[] = {"id",      "address", "weight", "zone",
                                       "enabled", "healthy", NULL};
    char path[PATH_MAX_LEN], p[PATH_MAX_LEN];
    const json_t *v;
    const char *id = NULL;
    size_t len;

    snprintf(path, sizeof(path), "membership.nodes[%zu]", i);
    if (check_object(obj, path, keys, err) != 0) {
        return -EINVAL;
    }
    memset(out, 0, sizeof(*out));
    out->node.zone = "";
    out->node.weight = 1;
    out->node.enabled = true;
    out->healthy = true;

    if ((v = json_object_get(obj, "id")) != NULL) {
        join_path(p, path, "id");
        if (get_str(v, p, &id, &len, err) != 0) {
            return -EINVAL;
        }
    }
    join_path(p, path, "address");
    if ((v = json_object_get(obj, "address")) == NULL) {
        return rs_error_set(err, -EINVAL, "%s: required", p);
    }
    if (get_str(v, p, &out->node.address, &len, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "weight")) != NULL) {
        join_path(p, path, "weight");
        if (get_u32(v, p, 1, RS_WEIGHT_MAX, &out->node.weight, err) != 0) {
            return -EINVAL;
        }
    }
    if ((v = json_object_get(obj, "zone")) != NULL) {
        join_path(p, path, "zone");
        if (get_str(v, p, &out->node.zone, &len, err) != 0) {
            return -EINVAL;
        }
    }
    if ((v = json_object_get(obj, "enabled")) != NULL) {
        join_path(p, path, "enabled");
        if (get_bool(v, p, &out->node.enabled, err) != 0) {
            return -EINVAL;
        }
    }
    if ((v = json_object_get(obj, "healthy")) != NULL) {
        join_path(p, path, "healthy");
        if (get_bool(v, p, &out->healthy, err) != 0) {
            return -EINVAL;
        }
    }

    /* Without an id, check the address first with a stand-in id, so a bad address is
     * reported as one rather than as a bad id derived from it. */
    rs_error nerr;
    out->node.id = id != NULL ? id : "-";
    if (rs_node_validate(&out->node, &nerr) != 0) {
        return rs_error_set(err, -EINVAL, "%s: %s", path, nerr.msg);
    }
    if (id == NULL) {
        if (rs_node_default_id(out->node.address, idbuf, RS_ID_MAX + 1) != 0) {
            return rs_error_set(err, -EINVAL,
                                "%s.id: required here: the address is too long to serve as the id "
                                "(max %d bytes)",
                                path, RS_ID_MAX);
        }
        out->node.id = idbuf;
    }
    return 0;
}

static char *
arena_put(char **cursor, const char *s) {
    size_t len = strlen(s);
    char *dst = *cursor;
    memcpy(dst, s, len + 1);
    *cursor += len + 1;
    return dst;
}

typedef struct id_ref {
    const char *id;
    size_t index;
} id_ref;

static int
id_ref_cmp(const void *a, const void *b) {
    const id_ref *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    if (c != 0) {
        return c;
    }
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Duplicate ids: reports the pair whose later index comes first in the file. */
static int
check_duplicate_ids(const rs_config_node *nodes, size_t n, rs_error *err) {
    if (n < 2) {
        return 0;
    }
    id_ref *refs = malloc(n * sizeof(*refs));
    if (refs == NULL) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        refs[i].id = nodes[i].node.id;
        refs[i].index = i;
    }
    qsort(refs, n, sizeof(*refs), id_ref_cmp);
    size_t first = 0, dup = n, dup_first = 0;
    for (size_t k = 1; k < n; k++) {
        if (strcmp(refs[k].id, refs[k - 1].id) != 0) {
            first = k;
        } else if (refs[k].index < dup) {
            dup = refs[k].index;
            dup_first = refs[first].index;
        }
    }
    free(refs);
    if (dup < n) {
        char q[QUOTE_CAP];
        const char *id = nodes[dup].node.id;
        return rs_error_set(err, -EINVAL,
                            "membership.nodes[%zu]: duplicate id %s (also membership.nodes[%zu])",
                            dup, rs_json_quote(q, id, strlen(id)), dup_first);
    }
    return 0;
}

/* Two passes over the array: the first checks every node and sizes the strings, the
 * second copies them into one block after the node array, freed with it. */
static int
parse_nodes(const json_t *arr, rs_config *c, rs_error *err) {
    char d[DESCRIBE_CAP], idbuf[RS_ID_MAX + 1];
    rs_config_node tmp;

    if (!json_is_array(arr)) {
        return rs_error_set(err, -EINVAL, "membership.nodes: must be an array, got %s",
                            describe(d, arr));
    }
    size_t n = json_array_size(arr);
    if (n > RS_NODES_MAX) {
        return rs_error_set(err, -EINVAL, "membership.nodes: too many nodes (%zu, max %d)", n,
                            RS_NODES_MAX);
    }
    if (n == 0) {
        return 0;
    }
    size_t strings = 0;
    for (size_t i = 0; i < n; i++) {
        if (read_node(json_array_get(arr, i), i, &tmp, idbuf, err) != 0) {
            return -EINVAL;
        }
        strings += strlen(tmp.node.id) + strlen(tmp.node.address) + strlen(tmp.node.zone) + 3;
    }
    rs_config_node *nodes = malloc(n * sizeof(*nodes) + strings);
    if (nodes == NULL) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    char *cursor = (char *)(nodes + n);
    for (size_t i = 0; i < n; i++) {
        int rc = read_node(json_array_get(arr, i), i, &nodes[i], idbuf, err);
        if (rc != 0) { /* cannot happen: the same node passed a moment ago */
            free(nodes);
            return rc;
        }
        nodes[i].node.id = arena_put(&cursor, nodes[i].node.id);
        nodes[i].node.address = arena_put(&cursor, nodes[i].node.address);
        nodes[i].node.zone = arena_put(&cursor, nodes[i].node.zone);
    }
    c->nodes = nodes;
    c->n_nodes = n;
    return check_duplicate_ids(nodes, n, err);
}

static int
parse_membership(const json_t *obj, rs_config *c, bool *kv_prefix_set, rs_error *err) {
    static const char *const keys[] = {"source", "nodes", "consul", NULL};
    static const char *const sources[] = {"static", "consul-kv", "consul-service"};
    const json_t *v;
    int choice = 0;

    if (check_object(obj, "membership", keys, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "source")) != NULL) {
        if (get_choice(v, "membership.source", "source", sources, 3, &choice, err) != 0) {
            return -EINVAL;
        }
        c->source = (rs_source)choice;
    }
    if ((v = json_object_get(obj, "consul")) != NULL &&
        parse_consul(v, c, kv_prefix_set, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "nodes")) != NULL) {
        return parse_nodes(v, c, err);
    }
    return 0;
}

static int
parse_health(const json_t *obj, rs_config *c, rs_error *err) {
    static const char *const keys[] = {"policy", "panic_threshold", NULL};
    static const char *const policies[] = {"skip", "keep"};
    const json_t *v;
    int choice = 0;

    if (check_object(obj, "health", keys, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "policy")) != NULL) {
        if (get_choice(v, "health.policy", "policy", policies, 2, &choice, err) != 0) {
            return -EINVAL;
        }
        c->health_policy = (rs_health_policy)choice;
    }
    if ((v = json_object_get(obj, "panic_threshold")) != NULL &&
        get_fraction(v, "health.panic_threshold", false, &c->panic_threshold, err) != 0) {
        return -EINVAL;
    }
    return 0;
}

static int
parse_log(const json_t *obj, rs_config *c, rs_error *err) {
    static const char *const keys[] = {"level", "format", NULL};
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    static const char *const formats[] = {"kv", "json"};
    const json_t *v;
    int choice = 0;

    if (check_object(obj, "log", keys, err) != 0) {
        return -EINVAL;
    }
    if ((v = json_object_get(obj, "level")) != NULL) {
        if (get_choice(v, "log.level", "level", levels, 4, &choice, err) != 0) {
            return -EINVAL;
        }
        c->log_level = (rs_log_level)choice;
    }
    if ((v = json_object_get(obj, "format")) != NULL) {
        if (get_choice(v, "log.format", "format", formats, 2, &choice, err) != 0) {
            return -EINVAL;
        }
        c->log_format = (rs_log_format)choice;
    }
    return 0;
}

/* Rules that span fields, once every field is read. */
static int
check_whole(rs_config *c, bool kv_prefix_set, rs_error *err) {
    rs_error perr;
    if (rs_ring_params_validate(&c->params, &perr) != 0) {
        return rs_error_set(err, -EINVAL, "ring.%s", perr.msg);
    }
    if (c->max_key_bytes > c->max_request_bytes) {
        return rs_error_set(
            err, -EINVAL,
            "listen.max_key_bytes: must not exceed listen.max_request_bytes (%u), got %u",
            c->max_request_bytes, c->max_key_bytes);
    }
    if (c->source == RS_SOURCE_CONSUL_SERVICE && c->consul.service[0] == '\0') {
        return rs_error_set(err, -EINVAL,
                            "membership.consul.service: required with source \"consul-service\"");
    }
    if ((c->consul.cert_file[0] == '\0') != (c->consul.key_file[0] == '\0')) {
        return rs_error_set(err, -EINVAL, "membership.consul.%s: required with %s",
                            c->consul.key_file[0] == '\0' ? "key_file" : "cert_file",
                            c->consul.key_file[0] == '\0' ? "cert_file" : "key_file");
    }
    if (c->source == RS_SOURCE_STATIC) {
        size_t enabled = 0;
        for (size_t i = 0; i < c->n_nodes; i++) {
            enabled += c->nodes[i].node.enabled;
        }
        if (c->n_nodes == 0) {
            return rs_error_set(
                err, -EINVAL,
                "membership.nodes: at least one node is required with source \"static\"");
        }
        if (enabled == 0) {
            return rs_error_set(err, -EINVAL,
                                "membership.nodes: at least one node must be enabled with source "
                                "\"static\"");
        }
    }
    if (!kv_prefix_set) {
        /* ring_name is at most 63 bytes, so this always fits. */
        snprintf(c->consul.kv_prefix, sizeof(c->consul.kv_prefix), "ringside/%s", c->ring_name);
    }
    return 0;
}

static int
parse_root(const json_t *root, rs_config *c, rs_error *err) {
    static const char *const keys[] = {"ring",       "listen", "http", "state_dir", "max_state_age",
                                       "membership", "health", "log",  NULL};
    char d[DESCRIBE_CAP];
    const char *key;
    const json_t *v;
    bool kv_prefix_set = false;
    uint64_t ms;
    int rc = 0;

    if (!json_is_object(root)) {
        return rs_error_set(err, -EINVAL, "top level must be an object, got %s", describe(d, root));
    }
    if (check_object(root, "", keys, err) != 0) {
        return -EINVAL;
    }
    /* In file order, so the first mistake in the file is the one reported. */
    json_object_foreach((json_t *)root, key, v) {
        if (strcmp(key, "ring") == 0) {
            rc = parse_ring(v, c, err);
        } else if (strcmp(key, "listen") == 0) {
            rc = parse_listen(v, c, err);
        } else if (strcmp(key, "http") == 0) {
            rc = parse_http(v, c, err);
        } else if (strcmp(key, "state_dir") == 0) {
            rc = get_path(v, "state_dir", true, c->state_dir, sizeof(c->state_dir), err);
        } else if (strcmp(key, "max_state_age") == 0) {
            rc = get_duration(v, "max_state_age", MS_PER_S, 8760 * MS_PER_H, false, &ms, err);
            if (rc == 0 && ms % MS_PER_S != 0) {
                rc = rs_error_set(err, -EINVAL, "max_state_age: must be a whole number of seconds");
            }
            if (rc == 0) {
                c->max_state_age_s = (uint32_t)(ms / MS_PER_S);
            }
        } else if (strcmp(key, "membership") == 0) {
            rc = parse_membership(v, c, &kv_prefix_set, err);
        } else if (strcmp(key, "health") == 0) {
            rc = parse_health(v, c, err);
        } else if (strcmp(key, "log") == 0) {
            rc = parse_log(v, c, err);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return check_whole(c, kv_prefix_set, err);
}

/* ---- public ------------------------------------------------------------------------ */

void
rs_config_init(rs_config *c) {
    memset(c, 0, sizeof(*c));
    snprintf(c->ring_name, sizeof(c->ring_name), "default");
    rs_ring_params_init(&c->params);
    snprintf(c->socket_path, sizeof(c->socket_path), "/run/ringside/ringside.sock");
    c->socket_mode = 0660;
    c->max_clients = 10000;
    c->max_key_bytes = 8192;
    c->max_keys_per_request = 1000;
    c->max_request_bytes = MIB;
    c->max_output_bytes = 8 * MIB;
    c->idle_timeout_ms = 300 * MS_PER_S;
    c->http_enabled = true;
    snprintf(c->http_address, sizeof(c->http_address), "127.0.0.1:9317");
    snprintf(c->state_dir, sizeof(c->state_dir), "/var/lib/ringside");
    c->max_state_age_s = 24 * 3600;
    c->source = RS_SOURCE_STATIC;
    snprintf(c->consul.address, sizeof(c->consul.address), "http://127.0.0.1:8500");
    snprintf(c->consul.kv_prefix, sizeof(c->consul.kv_prefix), "ringside/default");
    c->consul.stale = true;
    c->consul.wait_ms = 5 * MS_PER_M;
    c->consul.max_stale_ms = 10 * MS_PER_S;
    c->consul.max_removal_fraction = 0.5;
    c->health_policy = RS_HEALTH_SKIP;
    c->panic_threshold = 0.5;
    c->log_level = RS_LOG_INFO;
    c->log_format = RS_LOG_KV;
}

void
rs_config_free(rs_config *c) {
    if (c == NULL) {
        return;
    }
    free(c->nodes); /* the node strings live in the same block */
    c->nodes = NULL;
    c->n_nodes = 0;
}

int
rs_config_parse(const char *json, size_t len, rs_config *out, rs_error *err) {
    rs_error scratch;
    rs_config c;
    json_t *root = NULL;
    json_error_t jerr;
    int rc;

    assert(out != NULL && (json != NULL || len == 0));
    if (err == NULL) {
        err = &scratch;
    }
    err->msg[0] = '\0';
    rs_config_init(&c);
    if (len > RS_CONFIG_MAX_BYTES) {
        rc = rs_error_set(err, -EINVAL, "config is too large (%zu bytes, max %u)", len,
                          RS_CONFIG_MAX_BYTES);
        goto done;
    }
    /* NUL inside strings is let through here so that get_str can name its path. */
    root = json_loadb(len > 0 ? json : "", len,
                      JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_out_of_memory) {
            rc = rs_error_set(err, -ENOMEM, "out of memory");
            goto done;
        }
        /* jansson may quote the offending input: keep the message printable. */
        for (char *p = jerr.text; *p != '\0'; p++) {
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
                *p = '?';
            }
        }
        rc = rs_error_set(err, -EINVAL, "invalid JSON at line %d, column %d: %s", jerr.line,
                          jerr.column, jerr.text);
        goto done;
    }
    rc = parse_root(root, &c, err);

done:
    json_decref(root);
    if (rc != 0) {
        rs_config_free(&c);
        rs_config_init(out);
        return rc;
    }
    *out = c;
    return 0;
}

int
rs_duration_parse(const char *s, uint64_t *ms) {
    if (s == NULL || *s == '\0') {
        return -EINVAL;
    }
    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return 0;
    }
    uint64_t total = 0;
    while (*s != '\0') {
        uint64_t v = 0;
        const char *start = s;
        for (; *s >= '0' && *s <= '9'; s++) {
            if (__builtin_mul_overflow(v, 10, &v) ||
                __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v)) {
                return -EINVAL;
            }
        }
        if (s == start) {
            return -EINVAL;
        }
        uint64_t unit;
        if (s[0] == 'm' && s[1] == 's') {
            unit = 1;
            s += 2;
        } else if (s[0] == 's') {
            unit = MS_PER_S;
            s++;
        } else if (s[0] == 'm') {
            unit = MS_PER_M;
            s++;
        } else if (s[0] == 'h') {
            unit = MS_PER_H;
            s++;
        } else {
            return -EINVAL;
        }
        if (__builtin_mul_overflow(v, unit, &v) || __builtin_add_overflow(total, v, &total)) {
            return -EINVAL;
        }
    }
    *ms = total;
    return 0;
}
