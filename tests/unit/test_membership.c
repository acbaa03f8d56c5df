/* Unit tests for Consul membership (rs_membership): KV listings as Consul 1.8 writes them,
 * every per-key rejection with its exact reason, the last good value across bad edits and
 * deletions, config overrides, health listings, health gating, the mass-removal guard,
 * backoff and the token bucket, and hostile bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_membership.h"

#define PREFIX "ringside/sessions"

/* ---- helpers ------------------------------------------------------------------------ */

/* The tables write JSON with single quotes for readability; this turns them into double
 * quotes. Caller frees. */
static char *
json_of(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    assert_non_null(out);
    for (size_t i = 0; i <= n; i++) {
        out[i] = s[i] == '\'' ? '"' : s[i];
    }
    return out;
}

/* A tiny base64 encoder (RFC 4648, with padding), so the tests never carry encoded
 * strings nobody can check. Caller frees. */
static char *
b64(const void *data, size_t len) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    char *out = malloc((len + 2) / 3 * 4 + 1);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16;
        if (i + 1 < len) {
            w |= (uint32_t)p[i + 1] << 8;
        }
        if (i + 2 < len) {
            w |= p[i + 2];
        }
        out[o++] = alphabet[w >> 18 & 63];
        out[o++] = alphabet[w >> 12 & 63];
        out[o++] = i + 1 < len ? alphabet[w >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? alphabet[w & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* Glob with '*' only. */
static bool
glob(const char *pat, const char *s) {
    if (*pat == '\0') {
        return *s == '\0';
    }
    if (*pat == '*') {
        for (const char *t = s;; t++) {
            if (glob(pat + 1, t)) {
                return true;
            }
            if (*t == '\0') {
                return false;
            }
        }
    }
    return *s == *pat && glob(pat + 1, s + 1);
}

static void
assert_printable(const char *s) {
    for (const char *p = s; *p != '\0'; p++) {
        assert_true(*p >= 0x20 && *p < 0x7f);
    }
}

/* A KV listing as Consul 1.8 returns it: the fields in its order, indexes counting up. */
typedef struct listing {
    char *buf;
    size_t len, cap;
    size_t n;
} listing;

static void
lst_append(listing *l, const char *s, size_t n) {
    if (l->len + n + 1 > l->cap) {
        l->cap = (l->len + n + 1) * 2;
        l->buf = realloc(l->buf, l->cap);
        assert_non_null(l->buf);
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    l->buf[l->len] = '\0';
}

static void
lst_str(listing *l, const char *s) {
    lst_append(l, s, strlen(s));
}

static void
lst_init(listing *l) {
    memset(l, 0, sizeof(*l));
    lst_str(l, "[");
}

/* One entry; key_json is the Key's JSON string content (escapes allowed), b64value the
 * Value's (NULL for null). */
static void
lst_put_b64(listing *l, const char *key_json, const char *b64value) {
    char head[64];
    snprintf(head, sizeof(head), "%s{\"LockIndex\":0,\"Key\":\"", l->n > 0 ? "," : "");
    lst_str(l, head);
    lst_str(l, key_json);
    lst_str(l, "\",\"Flags\":0,\"Value\":");
    if (b64value == NULL) {
        lst_str(l, "null");
    } else {
        lst_str(l, "\"");
        lst_str(l, b64value);
        lst_str(l, "\"");
    }
    char tail[96];
    snprintf(tail, sizeof(tail), ",\"CreateIndex\":%zu,\"ModifyIndex\":%zu}", 10 + l->n,
             20 + 2 * l->n);
    lst_str(l, tail);
    l->n++;
}

/* One entry whose Value is the base64 of value_q (single-quoted JSON, or NULL for null). */
static void
lst_put(listing *l, const char *key_json, const char *value_q) {
    if (value_q == NULL) {
        lst_put_b64(l, key_json, NULL);
        return;
    }
    char *v = json_of(value_q);
    char *e = b64(v, strlen(v));
    lst_put_b64(l, key_json, e);
    free(e);
    free(v);
}

static const char *
lst_end(listing *l) {
    lst_str(l, "]");
    return l->buf;
}

static void
lst_free(listing *l) {
    free(l->buf);
    memset(l, 0, sizeof(*l));
}

/* Runs on an exact-size heap copy, so a read past the end is an ASan error. */
static int
kv_exact(rs_kv_memo *memo, const char *body, size_t len, rs_membership *m, rs_error *err) {
    rs_ring_params base;
    rs_ring_params_init(&base);
    char *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    if (len > 0) {
        memcpy(copy, body, len);
    }
    int rc = rs_kv_to_membership(memo, len > 0 ? copy : NULL, len, PREFIX, &base, 0.5, m, err);
    free(copy);
    if (rc == 0) {
        assert_int_equal(err->msg[0], '\0');
        for (size_t i = 0; i < m->n_rejections; i++) {
            assert_printable(m->rejections[i].key);
            assert_printable(m->rejections[i].reason);
        }
    } else {
        assert_true(err->msg[0] != '\0');
        assert_printable(err->msg);
        assert_null(m->nodes);
        assert_int_equal(m->n_nodes, 0);
        assert_int_equal(m->n_rejections, 0);
    }
    return rc;
}

static int
kv_run(rs_kv_memo *memo, listing *l, rs_membership *m, rs_error *err) {
    const char *body = lst_end(l);
    int rc = kv_exact(memo, body, strlen(body), m, err);
    lst_free(l);
    return rc;
}

static void
assert_params_equal(const rs_ring_params *a, const rs_ring_params *b) {
    assert_int_equal(a->algorithm, b->algorithm);
    assert_int_equal(a->hash, b->hash);
    assert_int_equal(a->replicas, b->replicas);
    assert_string_equal(a->hash_tag, b->hash_tag);
}

static const rs_node *
find_node(const rs_membership *m, const char *id) {
    for (size_t i = 0; i < m->n_nodes; i++) {
        if (strcmp(m->nodes[i].id, id) == 0) {
            return &m->nodes[i];
        }
    }
    return NULL;
}

static const rs_kv_rejection *
find_rejection(const rs_membership *m, const char *key) {
    for (size_t i = 0; i < m->n_rejections; i++) {
        if (strcmp(m->rejections[i].key, key) == 0) {
            return &m->rejections[i];
        }
    }
    return NULL;
}

/* ---- the test helpers themselves ------------------------------------------------------ */

static void
test_b64_helper(void **state) {
    (void)state;
    static const struct {
        const char *in, *out;
    } rfc4648[] = {{"", ""},
                   {"f", "Zg=="},
                   {"fo", "Zm8="},
                   {"foo", "Zm9v"},
                   {"foob", "Zm9vYg=="},
                   {"fooba", "Zm9vYmE="},
                   {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        char *e = b64(rfc4648[i].in, strlen(rfc4648[i].in));
        assert_string_equal(e, rfc4648[i].out);
        free(e);
    }
    unsigned char all[3] = {0xfb, 0xff, 0xbf};
    char *e = b64(all, 3);
    assert_string_equal(e, "+/+/");
    free(e);
}

/* ---- KV: a realistic listing ---------------------------------------------------------- */

static void
test_realistic_listing(void **state) {
    (void)state;
    rs_kv_memo *memo = NULL;
    assert_int_equal(rs_kv_memo_new(&memo), 0);
    listing l;
    lst_init(&l);
    /* What `consul kv put` of SPEC 4.1's example gives, plus Consul's own folder entry and
     * neighbours that must be ignored. */
    lst_put(&l, PREFIX "/", NULL);
    lst_put(&l, PREFIX "/config", "{'algorithm':'ketama','hash':'fnv1a_64','replicas':2}");
    lst_put(&l, PREFIX "/nodes/", NULL);
    lst_put(&l, PREFIX "/nodes/cache-b", "{'address':'127.0.3.8:6379','enabled':false}");
    lst_put(&l, PREFIX "/nodes/cache-a", "{'address':'127.0.3.7:6379','weight':1,'zone':'a'}");
    lst_put(&l, PREFIX "/nodes/cache-c",
            "{\n  'address': '[fd00::3]:6379',\n  'weight': 3,\n  'zone': 'b'\n}\n");
    lst_put(&l, PREFIX "/nodes/cache-a/extra", "{'address':'1.1.1.1:1'}");
    lst_put(&l, PREFIX "/notes", "{'anything':true}");
    lst_put(&l, PREFIX "/nodesx", "{'address':'1.1.1.1:1'}");
    lst_put(&l, "ringside/sessionsX/nodes/y", "{'address':'1.1.1.1:1'}");
    lst_put(&l, "ringside/other/nodes/z", "{'address':'1.1.1.1:1'}");
    lst_put(&l, PREFIX "/confirm", "{'fingerprint':'0123456789abcdef'}");

    rs_membership m;
    rs_error err = {{0}};
    assert_int_equal(kv_run(memo, &l, &m, &err), 0);
    assert_int_equal(m.n_rejections, 0);
    assert_int_equal(m.n_rejections_total, 0);
    assert_int_equal(m.n_nodes, 3);
    assert_string_equal(m.nodes[0].id, "cache-a");
    assert_string_equal(m.nodes[0].address, "127.0.3.7:6379");
    assert_string_equal(m.nodes[0].zone, "a");
    assert_int_equal(m.nodes[0].weight, 1);
    assert_true(m.nodes[0].enabled);
    assert_string_equal(m.nodes[1].id, "cache-b");
    assert_string_equal(m.nodes[1].address, "127.0.3.8:6379");
    assert_string_equal(m.nodes[1].zone, "");
    assert_int_equal(m.nodes[1].weight, 1);
    assert_false(m.nodes[1].enabled);
    assert_string_equal(m.nodes[2].id, "cache-c");
    assert_string_equal(m.nodes[2].address, "[fd00::3]:6379");
    assert_int_equal(m.nodes[2].weight, 3);
    for (size_t i = 0; i < m.n_nodes; i++) {
        assert_int_equal(m.healthy[i], 1);
    }
    assert_int_equal(m.params.algorithm, RS_ALG_KETAMA);
    assert_int_equal(m.params.hash, RS_HASH_FNV1A_64);
    assert_int_equal(m.params.replicas, 2);
    assert_false(m.force);
    assert_true(m.max_removal_fraction == 0.5);
    assert_string_equal(m.confirm, "0123456789abcdef");

    /* What it is for: a ring. */
    rs_ring *r = NULL;
    assert_int_equal(rs_ring_build(&m.params, m.nodes, m.n_nodes, &r, &err), 0);
    assert_int_equal(rs_ring_enabled_count(r), 2);
    rs_ring_unref(r);

    /* A copy is deep and independent. */
    rs_membership c;
    assert_int_equal(rs_membership_copy(&m, &c), 0);
    assert_ptr_not_equal(c.nodes, m.nodes);
    assert_ptr_not_equal(c.nodes[0].id, m.nodes[0].id);
    rs_membership_free(&m);
    assert_int_equal(c.n_nodes, 3);
    assert_string_equal(c.nodes[2].address, "[fd00::3]:6379");
    assert_string_equal(c.confirm, "0123456789abcdef");
    assert_int_equal(c.healthy[1], 1);
    rs_membership_free(&c);
    rs_membership_free(&c);
    assert_null(c.nodes);
    rs_kv_memo_free(memo);
}

/* A prefix given with its trailing slash, and the root prefix. */
static void
test_prefix_forms(void **state) {
    (void)state;
    rs_ring_params base;
    rs_ring_params_init(&base);
    static const char *const prefixes[] = {PREFIX, PREFIX "/"};
    for (size_t i = 0; i < 2; i++) {
        rs_kv_memo *memo = NULL;
        assert_int_equal(rs_kv_memo_new(&memo), 0);
        listing l;
        lst_init(&l);
        lst_put(&l, PREFIX "/nodes/a", "{'address':'1.2.3.4:5'}");
        lst_end(&l);
        rs_membership m;
        rs_error err;
        assert_int_equal(rs_kv_to_membership(memo, l.buf, l.len, prefixes[i], &base, 0.5, &m, &err),
                         0);
        assert_int_equal(m.n_nodes, 1);
        rs_membership_free(&m);
        lst_free(&l);
        rs_kv_memo_free(memo);
    }
    rs_kv_memo *memo = NULL;
    assert_int_equal(rs_kv_memo_new(&memo), 0);
    listing l;
    lst_init(&l);
    lst_put(&l, "nodes/root", "{'address':'1.2.3.4:5'}");
    lst_put(&l, PREFIX "/nodes/a", "{'address':'1.2.3.4:5'}");
    lst_end(&l);
    rs_membership m;
    assert_int_equal(rs_kv_to_membership(memo, l.buf, l.len, "", &base, 0.5, &m, NULL), 0);
    assert_int_equal(m.n_nodes, 1);
    assert_string_equal(m.nodes[0].id, "root");
    rs_membership_free(&m);
    lst_free(&l);
    rs_kv_memo_free(memo);
}

/* ---- KV: every rejection of a node key -------------------------------------------------- */

typedef struct node_case {
    const char *key;   /* JSON content of the Key after PREFIX "/" */
    const char *value; /* single-quoted JSON, base64-encoded by the test */
    const char *raw;   /* or: the Value string itself ("" null when both are NULL) */
    const char *rejected_key;
    const char *reason; /* glob */
} node_case;

#define NB "nodes/cache-b"

static const node_case node_cases[] = {
    /* values */
    {NB, "{'address':'127.0.0.2:6379','weight':-1}", NULL, NB,
     "weight must be an integer between 1 and 10000, got -1"},
    {NB, "{'address':'127.0.0.2:6379','weight':0}", NULL, NB,
     "weight must be an integer between 1 and 10000, got 0"},
    {NB, "{'address':'127.0.0.2:6379','weight':10001}", NULL, NB,
     "weight must be an integer between 1 and 10000, got 10001"},
    {NB, "{'address':'127.0.0.2:6379','weight':1.0}", NULL, NB,
     "weight must be an integer between 1 and 10000, got 1.0"},
    {NB, "{'address':'127.0.0.2:6379','weight':'2'}", NULL, NB,
     "weight must be an integer between 1 and 10000, got \"2\""},
    {NB, "{'address':'127.0.0.2:6379','weight':null}", NULL, NB,
     "weight must be an integer between 1 and 10000, got null"},
    {NB, "{'address':'127.0.0.2:6379','weight':99999999999999999999}", NULL, NB,
     "invalid JSON at line 1, column *: too big integer*"},
    {NB, "{'weight':2}", NULL, NB, "address is required"},
    {NB, "{}", NULL, NB, "address is required"},
    {NB, "{'address':42}", NULL, NB, "address must be a string, got 42"},
    {NB, "{'address':'127.0.0.2'}", NULL, NB, "address \"127.0.0.2\": must be host:port"},
    {NB, "{'address':'127.0.0.2:0'}", NULL, NB,
     "address \"127.0.0.2:0\": port must be a number between 1 and 65535"},
    {NB, "{'address':'127.0.0.2:65536'}", NULL, NB,
     "address \"127.0.0.2:65536\": port must be a number between 1 and 65535"},
    {NB, "{'address':':6379'}", NULL, NB, "address \":6379\": host is empty"},
    {NB, "{'address':'fd00::1:6379'}", NULL, NB,
     "address \"fd00::1:6379\": IPv6 host must be in brackets: [addr]:port"},
    {NB, "{'address':'a b:1'}", NULL, NB, "address must not contain spaces or control characters"},
    {NB, "{'address':''}", NULL, NB, "address must not be empty"},
    {NB, "{'address':'127.0.0.2:6379','zone':5}", NULL, NB, "zone must be a string, got 5"},
    {NB, "{'address':'127.0.0.2:6379','zone':'x x'}", NULL, NB,
     "zone must not contain spaces or control characters"},
    {NB,
     "{'address':'127.0.0.2:6379','zone':'"
     "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz'}",
     NULL, NB, "zone is too long (max 64 bytes)"},
    {NB, "{'address':'127.0.0.2:6379','enabled':'yes'}", NULL, NB,
     "enabled must be true or false, got \"yes\""},
    {NB, "{'address':'127.0.0.2:6379','enabled':1}", NULL, NB,
     "enabled must be true or false, got 1"},
    {NB, "{'address':'127.0.0.2:6379','color':'red'}", NULL, NB,
     "unknown field \"color\" (expected address, weight, zone, enabled)"},
    {NB, "{'address':'127.0.0.2:6379','id':'cache-x'}", NULL, NB,
     "unknown field \"id\" (expected address, weight, zone, enabled)"},
    {NB, "['127.0.0.2:6379']", NULL, NB, "value must be a JSON object, got an array"},
    {NB, "5", NULL, NB, "value must be a JSON object, got 5"},
    {NB, "'127.0.0.2:6379'", NULL, NB, "value must be a JSON object, got \"127.0.0.2:6379\""},
    {NB, "{'address':", NULL, NB, "invalid JSON at line 1, column *"},
    {NB, "127.0.0.2:6379", NULL, NB, "invalid JSON at line 1, column *"},
    {NB, "{'address':'a:1','address':'b:2'}", NULL, NB, "invalid JSON*duplicate object key*"},
    {NB, "{'address':'a\\u0000b:1'}", NULL, NB, "invalid JSON*"},
    {NB, "{'address':'127.0.0.2:6379'} {}", NULL, NB, "invalid JSON*end of file expected*"},
    /* the Value itself */
    {NB, NULL, NULL, NB, "empty value"},
    {NB, NULL, "", NB, "empty value"},
    {NB, NULL, "!!!!", NB, "value is not valid base64"},
    {NB, NULL, "e30", NB, "value is not valid base64"},      /* "{}" without its '=' */
    {NB, NULL, "e30=e30=", NB, "value is not valid base64"}, /* padding in the middle */
    {NB, NULL, "e3=9", NB, "value is not valid base64"},     /* '=' then a digit */
    {NB, NULL, "=e30", NB, "value is not valid base64"},
    {NB, NULL, "e30 ", NB, "value is not valid base64"},
    {NB, NULL, "e3\\n0=", NB, "value is not valid base64"},    /* a newline inside */
    {NB, NULL, "e30\\u0000", NB, "value is not valid base64"}, /* NUL in the Value */
    {NB, NULL, "AA==", NB, "invalid JSON*"},                   /* one NUL byte */
    /* ids: the key's last segment */
    {"nodes/bad id", "{'address':'127.0.0.2:6379'}", NULL, "nodes/bad id",
     "id must not contain spaces or control characters"},
    {"nodes/bad\\u0001id", "{'address':'127.0.0.2:6379'}", NULL, "nodes/bad?id",
     "id must not contain spaces or control characters"},
    {"nodes/bad\\u0000id", "{'address':'127.0.0.2:6379'}", NULL, "nodes/bad?id",
     "id must not contain spaces or control characters"},
};

static void
test_node_rejections(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(node_cases) / sizeof(node_cases[0]); i++) {
        const node_case *c = &node_cases[i];
        rs_kv_memo *memo = NULL;
        assert_int_equal(rs_kv_memo_new(&memo), 0);
        listing l;
        lst_init(&l);
        char key[512];
        snprintf(key, sizeof(key), PREFIX "/%s", c->key);
        lst_put(&l, PREFIX "/nodes/cache-a", "{'address':'127.0.0.1:6379'}");
        if (c->raw != NULL) {
            lst_put_b64(&l, key, c->raw);
        } else {
            lst_put(&l, key, c->value);
        }
        rs_membership m;
        rs_error err = {{0}};
        assert_int_equal(kv_run(memo, &l, &m, &err), 0);
        if (m.n_rejections != 1 || !glob(c->rejected_key, m.rejections[0].key) ||
            !glob(c->reason, m.rejections[0].reason)) {
            fail_msg("case %zu (%s): got %zu rejections: \"%s\" \"%s\"", i, c->key, m.n_rejections,
                     m.n_rejections ? m.rejections[0].key : "",
                     m.n_rejections ? m.rejections[0].reason : "");
        }
        assert_int_equal(m.n_rejections_total, 1);
        /* No last good value: only the good node is there. */
        assert_int_equal(m.n_nodes, 1);
        assert_string_equal(m.nodes[0].id, "cache-a");
        rs_membership_free(&m);
        rs_kv_memo_free(memo);
    }
}

/* Values at the limits are accepted. */
static void
test_node_limits(void **state) {
    (void)state;
    rs_kv_memo *memo = NULL;
    assert_int_equal(rs_kv_memo_new(&memo), 0);

    /* A value of exactly RS_KV_MAX_VALUE bytes (padded with spaces), and one byte more. */
    char *big = malloc(RS_KV_MAX_VALUE + 2);
    assert_non_null(big);
    const char head[] = "{\"address\":\"127.0.0.9:1\",\"weight\":10000,\"zone\":\"";
    memset(big, ' ', RS_KV_MAX_VALUE + 1);
    memcpy(big, head, strlen(head));
    memset(big + strlen(head), 'z', RS_ZONE_MAX);
    memcpy(big + strlen(head) + RS_ZONE_MAX, "\"}", 2);
    char *exact = b64(big, RS_KV_MAX_VALUE);
    char *over = b64(big, RS_KV_MAX_VALUE + 1);
    char *far_over = malloc(3 * RS_KV_MAX_VALUE);
    assert_non_null(far_over);
    memset(far_over, 'A', 3 * RS_KV_MAX_VALUE - 1);
    far_over[3 * RS_KV_MAX_VALUE - 1] = '\0';
    free(big);

    char longid[RS_ID_MAX + 64];
    snprintf(longid, sizeof(longid), PREFIX "/nodes/");
    size_t o = strlen(longid);
    memset(longid + o, 'i', RS_ID_MAX);
    longid[o + RS_ID_MAX] = '\0';

    listing l;
    lst_init(&l);
    lst_put_b64(&l, PREFIX "/nodes/exact", exact);
    lst_put_b64(&l, PREFIX "/nodes/over", over);
    lst_put_b64(&l, PREFIX "/nodes/far-over", far_over);
    lst_put(&l, longid, "{'address':'[::1]:65535','enabled':true,'zone':''}");
    char tooid[RS_ID_MAX + 64];
    memcpy(tooid, longid, sizeof(longid));
    memcpy(tooid + strlen(longid), "j", 2); /* RS_ID_MAX + 1 bytes */
    lst_put(&l, tooid, "{'address':'127.0.0.1:1'}");
    free(exact);
    free(over);
    free(far_over);
    rs_membership m;
    rs_error err;
    assert_int_equal(kv_run(memo, &l, &m, &err), 0);
    assert_int_equal(m.n_nodes, 2);
    const rs_node *n = find_node(&m, "exact");
    assert_non_null(n);
    assert_int_equal(n->weight, RS_WEIGHT_MAX);
    assert_int_equal(strlen(n->zone), RS_ZONE_MAX);
    assert_non_null(find_node(&m, longid + strlen(PREFIX "/nodes/")));
    assert_int_equal(m.n_rejections, 3);
    const rs_kv_rejection *r = find_rejection(&m, "nodes/over");
    assert_non_null(r);
    assert_string_equal(r->reason, "value too large (4097 bytes, max 4096)");
    r = find_rejection(&m, "nodes/far-over");
    assert_non_null(r);
    assert_true(glob("value too large (about * bytes, max 4096)", r->reason));
    bool found = false;
    for (size_t i = 0; i < m.n_rejections; i++) {
        found |= strcmp(m.rejections[i].reason, "id is too long (201 bytes, max 200)") == 0;
    }
    assert_true(found);
    rs_membership_free(&m);
    rs_kv_memo_free(memo);
}

/* ---- KV: the last good value ---------------------------------------------------------------- */

static void
put_b(listing *l, const char *value_q) {
    lst_init(l);
    lst_put(l, PREFIX "/nodes/cache-a", "{'address':'127.0.0.1:6379'}");
    if (value_q != NULL) {
        lst_put(l, PREFIX "/nodes/cache-b", value_q);
    }
}

static const rs_node *
run_b(rs_kv_memo *memo, const char *value_q, rs_membership *m, size_t rejections) {
    listing l;
    rs_error err;
    put_b(&l, value_q);
    assert_int_equal(kv_run(memo, &l, m, &err), 0);
    assert_int_equal(m->n_rejections, rejections);
    return find_node(m, "cache-b");
}

static void
test_last_good_value(void **state) {
    (void)state;
    rs_kv_memo *memo = NULL, *other = NULL;
    assert_int_equal(rs_kv_memo_new(&memo), 0);
    assert_int_equal(rs_kv_memo_new(&other), 0);
    rs_membership m;
    rs_error err;

    /* A good value. */
    const rs_node *b = run_b(memo, "{'address':'127.0.0.2:6379','weight':2}", &m, 0);
    assert_non_null(b);
    assert_int_equal(b->weight, 2);
    rs_membership_free(&m);

    /* A bad edit: rejected, the last good value stands. */
    b = run_b(memo, "{'address':'127.0.0.2:6379','weight':-1}", &m, 1);
    assert_non_null(b);
    assert_int_equal(b->weight, 2);
    assert_string_equal(m.rejections[0].key, "nodes/cache-b");
    rs_membership_free(&m);

    /* Still bad, a different way: still the last good value. */
    b = run_b(memo, "{'address':'nowhere'}", &m, 1);
    assert_non_null(b);
    assert_string_equal(b->address, "127.0.0.2:6379");
    rs_membership_free(&m);

    /* A body that is not a listing changes nothing, the memo included. */
    assert_int_equal(kv_exact(memo, "nope", 4, &m, &err), -EINVAL);
    assert_true(glob("KV listing: invalid JSON*", err.msg));
    b = run_b(memo, "{'address':'127.0.0.2:6379','weight':'x'}", &m, 1);
    assert_non_null(b);
    assert_int_equal(b->weight, 2);
    rs_membership_free(&m);

    /* A good edit becomes the new last good value. */
    b = run_b(memo, "{'address':'127.0.0.2:6380','weight':3,'enabled':false}", &m, 0);
    assert_non_null(b);
    assert_int_equal(b->weight, 3);
    assert_false(b->enabled);
    rs_membership_free(&m);
    b = run_b(memo, "{'address':'127.0.0.2:6380','weight':3,'enabled':'no'}", &m, 1);
    assert_non_null(b);
    assert_int_equal(b->weight, 3);
    assert_string_equal(b->address, "127.0.0.2:6380");
    rs_membership_free(&m);

    /* A null value (the key exists, no data) is a bad value, not a deletion. */
    listing l;
    lst_init(&l);
    lst_put(&l, PREFIX "/nodes/cache-a", "{'address':'127.0.0.1:6379'}");
    lst_put(&l, PREFIX "/nodes/cache-b", NULL);
    assert_int_equal(kv_run(memo, &l, &m, &err), 0);
    assert_int_equal(m.n_rejections, 1);
    assert_string_equal(m.rejections[0].reason, "empty value");
    assert_non_null(find_node(&m, "cache-b"));
    rs_membership_free(&m);

    /* Another memo knows nothing of it. */
    put_b(&l, "{'address':'127.0.0.2:6379','weight':-1}");
    assert_int_equal(kv_run(other, &l, &m, &err), 0);
    assert_null(find_node(&m, "cache-b"));
    rs_membership_free(&m);

    /* Deleted: gone, and forgotten. */
    b = run_b(memo, NULL, &m, 0);
    assert_null(b);
    assert_int_equal(m.n_nodes, 1);
    rs_membership_free(&m);
    b = run_b(memo, "{'address':'127.0.0.2:6379','weight':-1}", &m, 1);
    assert_null(b);
    rs_membership_free(&m);

    /* A 404 (empty prefix) forgets everything too. */
    b = run_b(memo, "{'address':'127.0.0.2:6379'}", &m, 0);
    assert_non_null(b);
    rs_membership_free(&m);
    assert_int_equal(kv_exact(memo, "[]", 2, &m, &err), 0);
    assert_int_equal(m.n_nodes, 0);
    assert_null(m.nodes);
    assert_null(m.healthy);
    assert_string_equal(m.confirm, "");
    rs_membership_free(&m);
    b = run_b(memo, "{'address':'127.0.0.2:6379','weight':-1}", &m, 1);
    assert_null(b);
    rs_membership_free(&m);

    rs_kv_memo_free(memo);
    rs_kv_memo_free(other);
    rs_kv_memo_free(NULL);
}

/* ---- KV: config and confirm ---------------------------------------------------------------- */

static void
test_config_override(void **state) {
    (void)state;
    rs_kv_memo *memo = NULL;
    assert_int_equal(rs_kv_memo_new(&memo), 0);
    rs_ring_params base;
    rs_ring_params_init(&base);
    base.replicas = 3;
    rs_membership m;
    rs_error err;

    /* No config: the base. */
    listing l;
    lst_init(&l);
    lst_end(&l);
    assert_int_equal(rs_kv_to_membership(memo, l.buf, l.len, PREFIX, &base, 0.25, &m, &err), 0);
    assert_params_equal(&m.params, &base);
    assert_true(m.max_removal_fraction == 0.25);
    assert_false(m.force);
    lst_free(&l);
    rs_membership_free(&m);

    /* Every field. */
    lst_init(&l);
    lst_put(&l, PREFIX "/config",
            "{'algorithm':'modula','hash':'md5','replicas':4,'hash_tag':'{}','force':true,"
            "'max_removal_fraction':1}");
    lst_end(&l);
    assert_int_equal(rs_kv_to_membership(memo, l.buf, l.len, PREFIX, &base, 0.25, &m, &err), 0);
    assert_int_equal(m.n_rejections, 0);
    assert_int_equal(m.params.algorithm, RS_ALG_MODULA);
    assert_int_equal(m.params.hash, RS_HASH_MD5);
    assert_int_equal(m.params.replicas, 4);
    assert_string_equal(m.params.hash_tag, "{}");
    assert_true(m.force);
    assert_true(m.max_removal_fraction == 1.0);
    lst_free(&l);
    rs_membership_free(&m);

    /* A bad edit keeps the last good config, whole. */
    lst_init(&l);
    lst_put(&l, PREFIX "/config", "{'algorithm':'jump'}");
    lst_end(&l);
    assert_int_equal(rs_kv_to_membership(memo, l.buf, l.len, PREFIX, &base, 0.25, &m, &err), 0);
    assert_int_equal(m.n_rejections, 1);
    assert_string_equal(m.rejections[0].key, "config");
    assert_string_equal(m.rejections[0].reason,
                        "unknown algorithm \"jump\" (expected ketama, modula, maglev, rendezvous, "
                        "ketama_xxh3, hash_ring, vnode_sha256)");
    assert_int_equal(m.params.algorithm, RS_ALG_MODULA);
    assert_int_equal(m.params.replicas, 4);
    assert_true(m.force);
    lst_free(&l);
    rs_membership_free(&m);

    /* A partial config overrides only what it names; force goes back to false. */
    lst_init(&l);
    lst_put(&l, PREFIX "/config", "{'hash':'xxh3'}");
    lst_end(&l);
    assert_int_equal(rs_kv_to_membership(memo, l.buf, l.len, PREFIX, &base, 0.25, &m, &err), 0);
    assert_int_equal(m.params.algorithm, RS_ALG_KETAMA);
    assert_int_equal(m.params.hash, RS_HASH_XXH3);
    assert_int_equal(m.params.replicas, 3);
    assert_false(m.force);
    assert_true(m.max_removal_fraction == 0.25);
    lst_free(&l);
    rs_membership_free(&m);

    /* Deleted: the base again, and a bad value now has nothing to fall back on. */
    lst_init(&l);
    lst_end(&l);
    assert_int_equal(rs_kv_to_membership(memo, l.buf, l.len, PREFIX, &base, 0.25, &m, &err), 0);
    assert_params_equal(&m.params, &base);
    lst_free(&l);
    rs_membership_free(&m);
    lst_init(&l);
    lst_put(&l, PREFIX "/config", "{'replicas':0}");
    lst_end(&l);
    assert_int_equal(rs_kv_to_membership(memo, l.buf, l.len, PREFIX, &base, 0.25, &m, &err), 0);
    assert_int_equal(m.n_rejections, 1);
    assert_params_equal(&m.params, &base);
    assert_true(m.max_removal_fraction == 0.25);
    lst_free(&l);
    rs_membership_free(&m);
    rs_kv_memo_free(memo);
}

typedef struct value_case {
    const char *key; /* "config" or "confirm" */
    const char *value;
    const char *reason; /* glob */
} value_case;

static const value_case value_cases[] = {
    {"config", "{'name':'sessions'}",
     "unknown field \"name\" (expected algorithm, hash, replicas, hash_tag, table_size, "
     "points_per_weight, vnodes, replica_factor, zone_aware_replicas, force, "
     "max_removal_fraction)"},
    {"config", "{'algorithm':5}", "algorithm must be a string, got 5"},
    {"config", "{'algorithm':'KETAMA'}",
     "unknown algorithm \"KETAMA\" (expected ketama, modula, maglev, rendezvous, ketama_xxh3, "
     "hash_ring, vnode_sha256)"},
    {"config", "{'table_size':65536}",
     "invalid ring parameters: table_size: must be a prime between 2 and 4000000*"},
    {"config", "{'table_size':1}", "table_size must be an integer between 2 and 4000000, got 1"},
    {"config", "{'vnodes':0}", "vnodes must be an integer between 1 and 10000, got 0"},
    {"config", "{'replica_factor':65}",
     "replica_factor must be an integer between 1 and 64, got 65"},
    {"config", "{'points_per_weight':'160'}",
     "points_per_weight must be an integer between 1 and 10000, got \"160\""},
    {"config", "{'zone_aware_replicas':1}", "zone_aware_replicas must be true or false, got 1"},
    {"config", "{'algorithm':'hash_ring','hash':'crc32'}",
     "invalid ring parameters: hash: hash_ring always hashes keys with md5*"},
    {"config", "{'hash':'sha1'}",
     "unknown hash \"sha1\" (expected one_at_a_time, md5, crc16, *, xxh3)"},
    {"config", "{'hash':'md5\\u0000'}", "invalid JSON*"},
    {"config", "{'replicas':0}", "replicas must be an integer between 1 and 16, got 0"},
    {"config", "{'replicas':17}", "replicas must be an integer between 1 and 16, got 17"},
    {"config", "{'replicas':2.5}", "replicas must be an integer between 1 and 16, got 2.5"},
    {"config", "{'replicas':'2'}", "replicas must be an integer between 1 and 16, got \"2\""},
    {"config", "{'hash_tag':'{'}",
     "hash_tag must be \"\" or two ASCII characters like \"{}\", got \"{\""},
    {"config", "{'hash_tag':'{ '}",
     "hash_tag must be \"\" or two ASCII characters like \"{}\", got \"{ \""},
    {"config", "{'hash_tag':[]}", "hash_tag must be a string, got an array"},
    {"config", "{'force':'true'}", "force must be true or false, got \"true\""},
    {"config", "{'max_removal_fraction':0}",
     "max_removal_fraction must be a number greater than 0 and at most 1, got 0"},
    {"config", "{'max_removal_fraction':1.5}",
     "max_removal_fraction must be a number greater than 0 and at most 1, got 1.5"},
    {"config", "{'max_removal_fraction':-0.5}",
     "max_removal_fraction must be a number greater than 0 and at most 1, got -0.5"},
    {"config", "{'max_removal_fraction':'0.5'}",
     "max_removal_fraction must be a number greater than 0 and at most 1, got \"0.5\""},
    {"config", "[]", "value must be a JSON object, got an array"},
    {"confirm", "{}", "fingerprint is required"},
    {"confirm", "{'fingerprint':'0123456789ABCDEF'}",
     "fingerprint must be 16 lowercase hex digits, got \"0123456789ABCDEF\""},
    {"confirm", "{'fingerprint':'0123456789abcde'}",
     "fingerprint must be 16 lowercase hex digits, got \"0123456789abcde\""},
    {"confirm", "{'fingerprint':'0123456789abcdef0'}", "fingerprint must be 16 *"},
    {"confirm", "{'fingerprint':'0123456789abcdeg'}", "fingerprint must be 16 *"},
    {"confirm", "{'fingerprint':81985529216486895}",
     "fingerprint must be 16 lowercase hex digits, got 81985529216486895"},
    {"confirm", "{'fingerprint':'0123456789abcdef','by':'me'}",
     "unknown field \"by\" (expected fingerprint)"},
};

static void
test_config_confirm_rejections(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(value_cases) / sizeof(value_cases[0]); i++) {
        const value_case *c = &value_cases[i];
        rs_kv_memo *memo = NULL;
        assert_int_equal(rs_kv_memo_new(&memo), 0);
        listing l;
        char key[128];
        snprintf(key, sizeof(key), PREFIX "/%s", c->key);
        lst_init(&l);
        lst_put(&l, key, c->value);
        rs_membership m;
        rs_error err;
        assert_int_equal(kv_run(memo, &l, &m, &err), 0);
        if (m.n_rejections != 1 || strcmp(m.rejections[0].key, c->key) != 0 ||
            !glob(c->reason, m.rejections[0].reason)) {
            fail_msg("case %zu: got %zu rejections: \"%s\" \"%s\"", i, m.n_rejections,
                     m.n_rejections ? m.rejections[0].key : "",
                     m.n_rejections ? m.rejections[0].reason : "");
        }
        rs_ring_params base;
        rs_ring_params_init(&base);
        assert_params_equal(&m.params, &base);
        assert_string_equal(m.confirm, "");
        assert_false(m.force);
        rs_membership_free(&m);
        rs_kv_memo_free(memo);
    }
}

static void
test_confirm_last_good(void **state) {
    (void)state;
    rs_kv_memo *memo = NULL;
    assert_int_equal(rs_kv_memo_new(&memo), 0);
    rs_membership m;
    rs_error err;
    listing l;
    lst_init(&l);
    lst_put(&l, PREFIX "/confirm", "{'fingerprint':'00000000deadbeef'}");
    assert_int_equal(kv_run(memo, &l, &m, &err), 0);
    assert_string_equal(m.confirm, "00000000deadbeef");
    rs_membership_free(&m);
    lst_init(&l);
    lst_put(&l, PREFIX "/confirm", "{'fingerprint':'yes'}");
    assert_int_equal(kv_run(memo, &l, &m, &err), 0);
    assert_int_equal(m.n_rejections, 1);
    assert_string_equal(m.confirm, "00000000deadbeef");
    rs_membership_free(&m);
    lst_init(&l);
    assert_int_equal(kv_run(memo, &l, &m, &err), 0);
    assert_string_equal(m.confirm, "");
    rs_membership_free(&m);
    rs_kv_memo_free(memo);
}

/* ---- KV: hostile bodies ------------------------------------------------------------------ */

typedef struct body_case {
    const char *body;  /* single-quoted */
    const char *error; /* glob; NULL: accepted */
} body_case;

static const body_case body_cases[] = {
    {"", "KV listing: invalid JSON*"},
    {"not json", "KV listing: invalid JSON*"},
    {"{}", "KV listing: must be a JSON array, got an object"},
    {"null", "KV listing: must be a JSON array, got null"},
    {"5", "KV listing: must be a JSON array, got 5"},
    {"'[]'", "KV listing: must be a JSON array, got \"[]\""},
    {"[5]", "KV listing[0]: must be an object, got 5"},
    {"[[]]", "KV listing[0]: must be an object, got an array"},
    {"[{}]", "KV listing[0].Key: must be a string, got nothing (the field is missing)"},
    {"[{'Key':5,'Value':null}]", "KV listing[0].Key: must be a string, got 5"},
    {"[{'Key':'a'}]",
     "KV listing[0].Value: must be a base64 string or null, got nothing (the field is missing)"},
    {"[{'Key':'a','Value':5}]", "KV listing[0].Value: must be a base64 string or null, got 5"},
    {"[{'Key':'a','Value':{}}]", "KV listing[0].Value: must be a base64 string or null, *"},
    {"[{'Key':'a','Value':null,'ModifyIndex':'7'}]",
     "KV listing[0].ModifyIndex: must be a non-negative integer, got \"7\""},
    {"[{'Key':'a','Value':null,'CreateIndex':-1}]",
     "KV listing[0].CreateIndex: must be a non-negative integer, got -1"},
    {"[{'Key':'a','Value':null,'LockIndex':1.5}]",
     "KV listing[0].LockIndex: must be a non-negative integer, got 1.5"},
    {"[{'Key':'a','Value':null,'Flags':null}]",
     "KV listing[0].Flags: must be a non-negative integer, got null"},
    {"[{'Key':'a','Value':null,'Session':1}]", "KV listing[0].Session: must be a string, got 1"},
    {"[{'Key':'a','Value':null},7]", "KV listing[1]: must be an object, got 7"},
    {"[{'Key':'a','Key':'b','Value':null}]", "KV listing: invalid JSON*duplicate object key*"},
    {"[{'Key':'" PREFIX "/nodes/x','Value':null},{'Key':'" PREFIX "/nodes/x','Value':null}]",
     "KV listing: duplicate key \"nodes/x\""},
    {"[{'Key':'a','Value':null}", "KV listing: invalid JSON*"},
    {"[{'Key':'a','Value':null}] x", "KV listing: invalid JSON*"},
    {"[1e999]", "KV listing: invalid JSON*"},
    /* accepted */
    {"[]", NULL},
    {" [ ] \n", NULL},
    {"[{'Key':'a','Value':null}]", NULL},
    {"[{'Key':'a','Value':null},{'Key':'a','Value':null}]", NULL}, /* not ours: ignored */
    {"[{'LockIndex':0,'Key':'" PREFIX "/nodes/x','Flags':18446744073709551615,'Value':null,"
     "'CreateIndex':99999999999999999999,'ModifyIndex':1,'Session':'abc',"
     "'Namespace':'default','Partition':'default'}]",
     NULL},
    {"[{'Key':'a\\u0000b','Value':null}]", NULL},
    {"[{'Key':'" PREFIX "/nodes/a\\u0000b','Value':null}]", NULL},
};

static void
test_hostile_bodies(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(body_cases) / sizeof(body_cases[0]); i++) {
        const body_case *c = &body_cases[i];
        rs_kv_memo *memo = NULL;
        assert_int_equal(rs_kv_memo_new(&memo), 0);
        /* A remembered node, to show a rejected body leaves the memo alone. */
        rs_membership m;
        rs_error err;
        listing l;
        put_b(&l, "{'address':'127.0.0.2:6379'}");
        assert_int_equal(kv_run(memo, &l, &m, &err), 0);
        rs_membership_free(&m);

        char *body = json_of(c->body);
        memset(&m, 0xa5, sizeof(m));
        int rc = kv_exact(memo, body, strlen(body), &m, &err);
        free(body);
        if (c->error == NULL) {
            if (rc != 0) {
                fail_msg("case %zu: %s", i, err.msg);
            }
        } else if (rc != -EINVAL || !glob(c->error, err.msg)) {
            fail_msg("case %zu: rc %d, \"%s\"", i, rc, err.msg);
        }
        rs_membership_free(&m);
        const rs_node *b = run_b(memo, "{'address':'127.0.0.2:6379','weight':0}", &m, 1);
        if (c->error != NULL) {
            assert_non_null(b);
        }
        rs_membership_free(&m);
        rs_kv_memo_free(memo);
    }

    /* Nesting deeper than jansson's limit. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth);
    assert_non_null(deep);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    rs_kv_memo *memo = NULL;
    assert_int_equal(rs_kv_memo_new(&memo), 0);
    rs_membership m;
    rs_error err;
    assert_int_equal(kv_exact(memo, deep, 2 * depth, &m, &err), -EINVAL);
    assert_true(glob("KV listing: invalid JSON*", err.msg));
    free(deep);

    /* Over the size limit: refused before parsing. */
    size_t big = RS_KV_MAX_BODY + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, ' ', big);
    huge[0] = '[';
    huge[big - 1] = ']';
    assert_int_equal(kv_exact(memo, huge, big, &m, &err), -EINVAL);
    assert_string_equal(err.msg, "KV listing: too large (33554433 bytes, max 33554432)");
    free(huge);

    /* Control characters and junk in keys: one key's problem, printable in the report. */
    listing l;
    lst_init(&l);
    lst_put(&l, PREFIX "/nodes/\\u001b[31mred", "{'address':'127.0.0.1:1'}");
    lst_put(&l, PREFIX "/nodes/ok", "{'address':'127.0.0.1:2'}");
    assert_int_equal(kv_run(memo, &l, &m, &err), 0);
    assert_int_equal(m.n_nodes, 1);
    assert_int_equal(m.n_rejections, 1);
    assert_string_equal(m.rejections[0].key, "nodes/?[31mred");
    rs_membership_free(&m);

    /* A key longer than the report field is cut with "...". */
    lst_init(&l);
    char key[600];
    snprintf(key, sizeof(key), PREFIX "/nodes/");
    memset(key + strlen(key), 'k', 400);
    key[strlen(PREFIX "/nodes/") + 400] = '\0';
    lst_put(&l, key, "{'address':'127.0.0.1:1'}");
    assert_int_equal(kv_run(memo, &l, &m, &err), 0);
    assert_int_equal(m.n_rejections, 1);
    assert_int_equal(strlen(m.rejections[0].key), sizeof(m.rejections[0].key) - 1);
    assert_true(glob("nodes/kkkk*k...", m.rejections[0].key));
    assert_string_equal(m.rejections[0].reason, "id is too long (400 bytes, max 200)");
    rs_membership_free(&m);
    rs_kv_memo_free(memo);
}

/* Every truncation of a good listing is refused whole, and never read past. */
static void
test_truncated_listing(void **state) {
    (void)state;
    listing l;
    lst_init(&l);
    lst_put(&l, PREFIX "/config", "{'replicas':3}");
    lst_put(&l, PREFIX "/nodes/a", "{'address':'127.0.0.1:1','zone':'z\\u00e9'}");
    lst_put(&l, PREFIX "/nodes/b", NULL);
    lst_end(&l);
    rs_kv_memo *memo = NULL;
    assert_int_equal(rs_kv_memo_new(&memo), 0);
    rs_membership m;
    rs_error err;
    for (size_t n = 0; n < l.len; n++) {
        assert_int_equal(kv_exact(memo, l.buf, n, &m, &err), -EINVAL);
    }
    assert_int_equal(kv_exact(memo, l.buf, l.len, &m, &err), 0);
    assert_int_equal(m.n_nodes, 1); /* rs_node_validate takes UTF-8 (bytes >= 0x80) */
    assert_string_equal(m.nodes[0].zone, "z\xc3\xa9");
    assert_int_equal(m.n_rejections, 1);
    assert_int_equal(m.params.replicas, 3);
    rs_membership_free(&m);
    lst_free(&l);
    rs_kv_memo_free(memo);
}

/* More node keys than a ring takes: the excess, in id order, is rejected; reports are
 * capped, the total is not. */
static void
test_huge_listing(void **state) {
    (void)state;
    rs_kv_memo *memo = NULL;
    assert_int_equal(rs_kv_memo_new(&memo), 0);
    char *val = b64("{\"address\":\"127.0.0.1:6379\"}", 28);
    listing l;
    lst_init(&l);
    for (size_t i = RS_NODES_MAX + 5; i-- > 0;) { /* reverse order: the output is sorted */
        char key[64];
        snprintf(key, sizeof(key), PREFIX "/nodes/n%05zu", i);
        lst_put_b64(&l, key, val);
    }
    free(val);
    rs_membership m;
    rs_error err;
    assert_int_equal(kv_run(memo, &l, &m, &err), 0);
    assert_int_equal(m.n_nodes, RS_NODES_MAX);
    for (size_t i = 1; i < m.n_nodes; i++) {
        assert_true(strcmp(m.nodes[i - 1].id, m.nodes[i].id) < 0);
    }
    assert_string_equal(m.nodes[RS_NODES_MAX - 1].id, "n09999");
    assert_int_equal(m.n_rejections, 5);
    assert_string_equal(m.rejections[0].key, "nodes/n10000");
    assert_string_equal(m.rejections[0].reason, "too many nodes (max 10000)");
    rs_membership_free(&m);

    lst_init(&l);
    for (size_t i = 0; i < 100; i++) {
        char key[64];
        snprintf(key, sizeof(key), PREFIX "/nodes/bad%03zu", i);
        lst_put(&l, key, "{'address':'x'}");
    }
    assert_int_equal(kv_run(memo, &l, &m, &err), 0);
    assert_int_equal(m.n_nodes, 0);
    assert_int_equal(m.n_rejections, RS_KV_MAX_REJECTIONS);
    assert_int_equal(m.n_rejections_total, 100);
    assert_string_equal(m.rejections[0].key, "nodes/bad000");
    assert_string_equal(m.rejections[RS_KV_MAX_REJECTIONS - 1].key, "nodes/bad063");
    rs_membership_free(&m);
    rs_kv_memo_free(memo);
}

/* Invalid base parameters are the caller's bug, reported rather than used. */
static void
test_bad_base(void **state) {
    (void)state;
    rs_kv_memo *memo = NULL;
    assert_int_equal(rs_kv_memo_new(&memo), 0);
    rs_ring_params base;
    rs_ring_params_init(&base);
    rs_membership m;
    rs_error err;
    assert_int_equal(rs_kv_to_membership(memo, "[]", 2, PREFIX, &base, 0.0, &m, &err), -EINVAL);
    assert_int_equal(rs_kv_to_membership(memo, "[]", 2, PREFIX, &base, NAN, &m, &err), -EINVAL);
    base.replicas = 0;
    assert_int_equal(rs_kv_to_membership(memo, "[]", 2, PREFIX, &base, 0.5, &m, &err), -EINVAL);
    assert_true(glob("base ring parameters: *", err.msg));
    assert_int_equal(rs_health_to_membership("[]", 2, &base, &m, &err), -EINVAL);
    rs_kv_memo_free(memo);
}

/* ---- health listings --------------------------------------------------------------------- */

/* One instance as Consul 1.8's /v1/health/service/<name> writes it, with its many fields. */
static char *
instance_json(const char *node, const char *node_addr, const char *id, const char *svc_addr,
              int port, const char *meta, const char *checks) {
    char *out = NULL;
    char *q = NULL;
    int n =
        asprintf(&q,
                 "{'Node':{'ID':'40e4a748-2192-161a-0510-9bf59fe950b5','Node':'%s','Address':'%s',"
                 "'Datacenter':'dc1','TaggedAddresses':{'lan':'%s','lan_ipv4':'%s','wan':'%s',"
                 "'wan_ipv4':'%s'},'Meta':{'consul-network-segment':''},'CreateIndex':5,"
                 "'ModifyIndex':6},"
                 "'Service':{'ID':'%s','Service':'redis-cache','Tags':['primary'],'Address':'%s',"
                 "'TaggedAddresses':null,'Meta':%s,'Port':%d,'Weights':{'Passing':1,'Warning':1},"
                 "'EnableTagOverride':false,'Proxy':{'MeshGateway':{},'Expose':{}},'Connect':{},"
                 "'CreateIndex':10,'ModifyIndex':10},"
                 "'Checks':[%s]}",
                 node, node_addr, node_addr, node_addr, node_addr, node_addr, id, svc_addr, meta,
                 port, checks);
    assert_true(n > 0);
    out = json_of(q);
    free(q);
    return out;
}

static char *
check_json(const char *node, const char *service_id, const char *status) {
    char *q = NULL;
    int n = asprintf(&q,
                     "{'Node':'%s','CheckID':'service:%s','Name':'Service check','Status':'%s',"
                     "'Notes':'','Output':'TCP connect: Success','ServiceID':'%s',"
                     "'ServiceName':'redis-cache','ServiceTags':['primary'],'Type':'tcp',"
                     "'Definition':{},'CreateIndex':11,'ModifyIndex':12}",
                     node, service_id, status, service_id);
    assert_true(n > 0);
    return q;
}

static char *
serf_json(const char *node, const char *status) {
    char *q = NULL;
    int n = asprintf(&q,
                     "{'Node':'%s','CheckID':'serfHealth','Name':'Serf Health Status',"
                     "'Status':'%s','Notes':'','Output':'Agent alive and reachable',"
                     "'ServiceID':'','ServiceName':'','ServiceTags':[],'Type':'',"
                     "'Definition':{},'CreateIndex':5,'ModifyIndex':5}",
                     node, status);
    assert_true(n > 0);
    return q;
}

/* An instance with a serfHealth check and a service check of the given statuses. */
static char *
inst(const char *node, const char *node_addr, const char *id, const char *svc_addr, int port,
     const char *meta, const char *serf, const char *status) {
    char *c1 = serf_json(node, serf);
    char *c2 = check_json(node, id, status);
    char *checks = NULL;
    assert_true(asprintf(&checks, "%s,%s", c1, c2) > 0);
    char *out = instance_json(node, node_addr, id, svc_addr, port, meta, checks);
    free(c1);
    free(c2);
    free(checks);
    return out;
}

/* A listing of the given instance documents (each freed). */
static char *
health_body(size_t n, char **instances) {
    listing l;
    lst_init(&l);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            lst_str(&l, ",\n");
        }
        lst_str(&l, instances[i]);
        free(instances[i]);
    }
    lst_end(&l);
    return l.buf;
}

static int
health_exact(const char *body, size_t len, rs_membership *m, rs_error *err) {
    rs_ring_params base;
    rs_ring_params_init(&base);
    char *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    if (len > 0) {
        memcpy(copy, body, len);
    }
    int rc = rs_health_to_membership(len > 0 ? copy : NULL, len, &base, m, err);
    free(copy);
    if (rc == 0) {
        for (size_t i = 0; i < m->n_rejections; i++) {
            assert_printable(m->rejections[i].key);
            assert_printable(m->rejections[i].reason);
        }
        for (size_t i = 0; i < m->n_nodes; i++) {
            assert_int_equal(rs_node_validate(&m->nodes[i], NULL), 0);
            if (i > 0) {
                assert_true(strcmp(m->nodes[i - 1].id, m->nodes[i].id) < 0);
            }
        }
    } else {
        assert_printable(err->msg);
        assert_true(err->msg[0] != '\0');
        assert_null(m->nodes);
        assert_int_equal(m->n_nodes, 0);
    }
    return rc;
}

static char *
realistic_health(void) {
    char *in[] = {
        inst("node-1", "127.0.3.7", "cache-a", "", 6379,
             "{'ringside_weight':'2','ringside_zone':'a','version':'7'}", "passing", "passing"),
        inst("node-2", "127.0.3.8", "cache-b", "127.0.4.8", 6380, "null", "passing", "warning"),
        inst("node-3", "127.0.3.9", "cache-c", "", 6379, "{}", "passing", "critical"),
        inst("node-4", "127.0.3.10", "cache-d", "fd00::4", 6379, "{'ringside_zone':'b'}", "passing",
             "maintenance"),
        inst("node-5", "fd00::5", "cache-e", "", 7000, "{'ringside_weight':'10000'}", "critical",
             "passing"),
        inst("node-6", "127.0.3.12", "cache-f", "", 6379, "{}", "passing", "bogus"),
        inst("node-7", "127.0.3.13", "cache-g", "fd00::7", 6379, "{}", "passing", "passing"),
    };
    return health_body(sizeof(in) / sizeof(in[0]), in);
}

static void
test_health_listing(void **state) {
    (void)state;
    char *body = realistic_health();
    rs_membership m;
    rs_error err;
    assert_int_equal(health_exact(body, strlen(body), &m, &err), 0);
    free(body);
    assert_int_equal(m.n_rejections, 0);
    assert_int_equal(m.n_nodes, 7);
    static const struct {
        const char *id, *address, *zone;
        uint32_t weight;
        uint8_t healthy;
    } want[] = {
        {"cache-a", "127.0.3.7:6379", "a", 2, 1},    /* passing; Service.Address empty */
        {"cache-b", "127.0.4.8:6380", "", 1, 1},     /* warning is healthy; Meta null */
        {"cache-c", "127.0.3.9:6379", "", 1, 0},     /* critical */
        {"cache-d", "[fd00::4]:6379", "b", 1, 0},    /* maintenance; IPv6 service address */
        {"cache-e", "[fd00::5]:7000", "", 10000, 0}, /* node check critical; IPv6 node */
        {"cache-f", "127.0.3.12:6379", "", 1, 0},    /* an unknown status is not healthy */
        {"cache-g", "[fd00::7]:6379", "", 1, 1},
    };
    for (size_t i = 0; i < m.n_nodes; i++) {
        assert_string_equal(m.nodes[i].id, want[i].id);
        assert_string_equal(m.nodes[i].address, want[i].address);
        assert_string_equal(m.nodes[i].zone, want[i].zone);
        assert_int_equal(m.nodes[i].weight, want[i].weight);
        assert_true(m.nodes[i].enabled);
        assert_int_equal(m.healthy[i], want[i].healthy);
    }
    rs_ring_params base;
    rs_ring_params_init(&base);
    assert_params_equal(&m.params, &base);
    assert_true(m.max_removal_fraction == RS_MAX_REMOVAL_DEFAULT);
    assert_false(m.force);
    assert_string_equal(m.confirm, "");
    rs_membership_free(&m);

    /* No checks at all, Checks null, Meta missing: healthy, defaults. */
    const char *bare = "[{'Node':{'Node':'n','Address':'127.1.1.1'},"
                       "'Service':{'ID':'x','Port':1},'Checks':[]},"
                       "{'Node':{'Node':'n'},'Service':{'ID':'y','Address':'127.1.1.2','Port':2},"
                       "'Checks':null},"
                       "{'Node':{},'Service':{'ID':'z','Address':'[fd00::9]','Port':3}}]";
    body = json_of(bare);
    assert_int_equal(health_exact(body, strlen(body), &m, &err), 0);
    free(body);
    assert_int_equal(m.n_nodes, 3);
    assert_string_equal(m.nodes[0].address, "127.1.1.1:1");
    assert_string_equal(m.nodes[1].address, "127.1.1.2:2");
    assert_string_equal(m.nodes[2].address, "[fd00::9]:3");
    assert_int_equal(m.healthy[0] & m.healthy[1] & m.healthy[2], 1);
    rs_membership_free(&m);

    assert_int_equal(health_exact("[]", 2, &m, &err), 0);
    assert_int_equal(m.n_nodes, 0);
    assert_null(m.nodes);
    rs_membership_free(&m);
}

typedef struct svc_case {
    const char *id, *svc_addr, *node_addr;
    int port;
    const char *meta;
    bool kept; /* still a node (with defaults) */
    uint32_t weight;
    const char *key, *reason; /* the rejection, glob */
} svc_case;

static const svc_case svc_cases[] = {
    {"s", "", "127.0.0.1", 1, "{'ringside_weight':'0'}", true, 1, "service/s",
     "ringside_weight must be an integer between 1 and 10000, got \"0\"; using 1"},
    {"s", "", "127.0.0.1", 1, "{'ringside_weight':'10001'}", true, 1, "service/s",
     "ringside_weight must be an integer between 1 and 10000, got \"10001\"; using 1"},
    {"s", "", "127.0.0.1", 1, "{'ringside_weight':'abc'}", true, 1, "service/s",
     "ringside_weight must be an integer between 1 and 10000, got \"abc\"; using 1"},
    {"s", "", "127.0.0.1", 1, "{'ringside_weight':''}", true, 1, "service/s", "ringside_weight *"},
    {"s", "", "127.0.0.1", 1, "{'ringside_weight':' 5'}", true, 1, "service/s",
     "ringside_weight *"},
    {"s", "", "127.0.0.1", 1, "{'ringside_weight':'+5'}", true, 1, "service/s",
     "ringside_weight *"},
    {"s", "", "127.0.0.1", 1, "{'ringside_weight':'5x'}", true, 1, "service/s",
     "ringside_weight *"},
    {"s", "", "127.0.0.1", 1, "{'ringside_weight':'99999999999'}", true, 1, "service/s",
     "ringside_weight *"},
    {"s", "", "127.0.0.1", 1, "{'ringside_weight':5}", true, 1, "service/s",
     "ringside_weight must be an integer between 1 and 10000, got 5; using 1"},
    {"s", "", "127.0.0.1", 1, "{'ringside_weight':'007'}", true, 7, NULL, NULL},
    {"s", "", "127.0.0.1", 1, "{'ringside_zone':'a b'}", true, 1, "service/s",
     "ringside_zone must be at most 64 bytes without spaces or control characters, got \"a b\"; "
     "using no zone"},
    {"s", "", "127.0.0.1", 1, "{'ringside_zone':7}", true, 1, "service/s", "ringside_zone *got 7*"},
    {"s", "", "127.0.0.1", 0, "{}", false, 0, "service/s",
     "Service.Port must be an integer between 1 and 65535, got 0"},
    {"s", "", "127.0.0.1", 70000, "{}", false, 0, "service/s",
     "Service.Port must be an integer between 1 and 65535, got 70000"},
    {"s", "", "127.0.0.1", -1, "{}", false, 0, "service/s", "Service.Port *got -1"},
    {"s", "", "", 1, "{}", false, 0, "service/s",
     "no address: Service.Address and Node.Address are both empty"},
    {"s", "bad host", "127.0.0.1", 1, "{}", false, 0, "service/s",
     "address must not contain spaces or control characters"},
    {"s", "[fd00::1", "127.0.0.1", 1, "{}", false, 0, "service/s", "address \"[fd00::1:1\": *"},
    {"a b", "", "127.0.0.1", 1, "{}", false, 0, "service/a b",
     "id must not contain spaces or control characters"},
    {"", "", "127.0.0.1", 1, "{}", false, 0, "service/", "id must not be empty"},
    {"x\\u0007y", "", "127.0.0.1", 1, "{}", false, 0, "service/x?y",
     "id must not contain spaces or control characters"},
};

static void
test_health_rejections(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(svc_cases) / sizeof(svc_cases[0]); i++) {
        const svc_case *c = &svc_cases[i];
        char *in[2] = {
            inst("node-0", "127.9.9.9", "good", "", 1, "{}", "passing", "passing"),
            inst("node-1", c->node_addr, c->id, c->svc_addr, c->port, c->meta, "passing",
                 "passing"),
        };
        char *body = health_body(2, in);
        rs_membership m;
        rs_error err;
        assert_int_equal(health_exact(body, strlen(body), &m, &err), 0);
        free(body);
        const rs_node *n = find_node(&m, c->id);
        if ((n != NULL) != c->kept || m.n_nodes != 1u + c->kept ||
            m.n_rejections != (c->reason != NULL) ||
            (c->reason != NULL &&
             (!glob(c->key, m.rejections[0].key) || !glob(c->reason, m.rejections[0].reason)))) {
            fail_msg("case %zu: %zu nodes, %zu rejections: \"%s\" \"%s\"", i, m.n_nodes,
                     m.n_rejections, m.n_rejections ? m.rejections[0].key : "",
                     m.n_rejections ? m.rejections[0].reason : "");
        }
        if (n != NULL) {
            assert_int_equal(n->weight, c->weight);
        }
        rs_membership_free(&m);
    }
}

static void
test_health_duplicates(void **state) {
    (void)state;
    char *in[] = {
        inst("node-2", "127.0.0.2", "dup", "", 6379, "{'ringside_weight':'2'}", "passing",
             "critical"),
        inst("node-1", "127.0.0.1", "dup", "", 6379, "{'ringside_weight':'3'}", "passing",
             "passing"),
        inst("node-3", "127.0.0.3", "dup", "", 6379, "{}", "passing", "passing"),
        inst("node-4", "127.0.0.4", "solo", "", 6379, "{}", "passing", "passing"),
    };
    char *body = health_body(4, in);
    rs_membership m;
    rs_error err;
    assert_int_equal(health_exact(body, strlen(body), &m, &err), 0);
    assert_int_equal(m.n_nodes, 2);
    const rs_node *n = find_node(&m, "dup");
    assert_non_null(n);
    assert_string_equal(n->address, "127.0.0.2:6379"); /* the first in the listing */
    assert_int_equal(n->weight, 2);
    assert_int_equal(m.healthy[0], 0);
    assert_int_equal(m.n_rejections, 2);
    assert_string_equal(m.rejections[0].key, "service/dup");
    assert_string_equal(m.rejections[0].reason,
                        "duplicate service ID on node \"node-1\" (listing[1]); keeping the one on "
                        "node \"node-2\" (listing[0])");
    rs_membership_free(&m);

    /* apply_health takes the first too. */
    rs_node node = {
        .id = "dup", .address = "127.0.0.1:6379", .zone = "", .weight = 1, .enabled = true};
    rs_membership km = {.nodes = &node, .n_nodes = 1};
    uint8_t h = 1;
    km.healthy = &h;
    assert_int_equal(rs_membership_apply_health(&km, body, strlen(body), &err), 0);
    assert_int_equal(h, 0);
    free(body);
}

static const body_case health_bad[] = {
    {"", "health listing: invalid JSON*"},
    {"{}", "health listing: must be a JSON array, got an object"},
    {"[5]", "health listing[0]: must be an object, got 5"},
    {"[{}]", "health listing[0].Node: must be an object, got nothing (the field is missing)"},
    {"[{'Node':{}}]",
     "health listing[0].Service: must be an object, got nothing (the field is missing)"},
    {"[{'Node':{},'Service':[]}]", "health listing[0].Service: must be an object, got an array"},
    {"[{'Node':{},'Service':{'Port':1}}]",
     "health listing[0].Service.ID: must be a string, got nothing (the field is missing)"},
    {"[{'Node':{},'Service':{'ID':7,'Port':1}}]",
     "health listing[0].Service.ID: must be a string, got 7"},
    {"[{'Node':{},'Service':{'ID':'a'}}]",
     "health listing[0].Service.Port: must be a number, got nothing (the field is missing)"},
    {"[{'Node':{},'Service':{'ID':'a','Port':'80'}}]",
     "health listing[0].Service.Port: must be a number, got \"80\""},
    {"[{'Node':{'Address':1},'Service':{'ID':'a','Port':1}}]",
     "health listing[0].Node.Address: must be a string, got 1"},
    {"[{'Node':{'Node':null},'Service':{'ID':'a','Port':1}}]",
     "health listing[0].Node.Node: must be a string, got null"},
    {"[{'Node':{},'Service':{'ID':'a','Port':1,'Address':[]}}]",
     "health listing[0].Service.Address: must be a string, got an array"},
    {"[{'Node':{},'Service':{'ID':'a','Port':1,'Meta':'x'}}]",
     "health listing[0].Service.Meta: must be an object or null, got \"x\""},
    {"[{'Node':{},'Service':{'ID':'a','Port':1},'Checks':{}}]",
     "health listing[0].Checks: must be an array or null, got an object"},
    {"[{'Node':{},'Service':{'ID':'a','Port':1},'Checks':[{}]}]",
     "health listing[0].Checks[0]: must be an object with a string Status"},
    {"[{'Node':{},'Service':{'ID':'a','Port':1},'Checks':[5]}]", "health listing[0].Checks[0]: *"},
    {"[{'Node':{},'Service':{'ID':'a','Port':1},'Checks':[{'Status':1}]}]",
     "health listing[0].Checks[0]: *"},
};

static void
test_health_hostile(void **state) {
    (void)state;
    rs_node node = {.id = "a", .address = "1.1.1.1:1", .zone = "", .weight = 1, .enabled = true};
    for (size_t i = 0; i < sizeof(health_bad) / sizeof(health_bad[0]); i++) {
        char *body = json_of(health_bad[i].body);
        rs_membership m;
        rs_error err;
        memset(&m, 0x5a, sizeof(m));
        int rc = health_exact(body, strlen(body), &m, &err);
        if (rc != -EINVAL || !glob(health_bad[i].error, err.msg)) {
            fail_msg("case %zu: rc %d, \"%s\"", i, rc, err.msg);
        }
        /* apply_health refuses the same bodies, leaving health alone. */
        uint8_t h = 7;
        rs_membership km = {.nodes = &node, .healthy = &h, .n_nodes = 1};
        assert_int_equal(rs_membership_apply_health(&km, body, strlen(body), &err), -EINVAL);
        assert_int_equal(h, 7);
        free(body);
    }

    /* Every truncation of a realistic listing is refused whole. */
    char *body = realistic_health();
    size_t len = strlen(body);
    for (size_t n = 0; n < len; n++) {
        rs_membership m;
        rs_error err;
        assert_int_equal(health_exact(body, n, &m, &err), -EINVAL);
    }
    free(body);

    /* Over the size limit. */
    size_t big = RS_KV_MAX_BODY + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, ' ', big);
    huge[0] = '[';
    huge[big - 1] = ']';
    rs_membership m;
    rs_error err;
    assert_int_equal(health_exact(huge, big, &m, &err), -EINVAL);
    assert_true(glob("health listing: too large*", err.msg));
    free(huge);
}

/* ---- apply_health --------------------------------------------------------------------------- */

static void
test_apply_health(void **state) {
    (void)state;
    rs_kv_memo *memo = NULL;
    assert_int_equal(rs_kv_memo_new(&memo), 0);
    listing l;
    lst_init(&l);
    lst_put(&l, PREFIX "/nodes/cache-a", "{'address':'127.0.3.7:6379'}"); /* by id */
    lst_put(&l, PREFIX "/nodes/b", "{'address':'127.0.4.8:6380'}");       /* by address */
    lst_put(&l, PREFIX "/nodes/cache-c", "{'address':'127.9.9.9:6379'}"); /* by id: critical */
    lst_put(&l, PREFIX "/nodes/nobody", "{'address':'127.7.7.7:6379'}");  /* no instance */
    lst_put(&l, PREFIX "/nodes/v6", "{'address':'[fd00::7]:6379'}");      /* by address, v6 */
    lst_put(&l, PREFIX "/nodes/cache-f", "{'address':'127.0.3.7:6379'}"); /* id beats address */
    lst_put(&l, PREFIX "/nodes/other", "{'address':'127.0.3.10:6379'}");  /* cache-d's node,
                                                                            but not its address */
    rs_membership m;
    rs_error err;
    assert_int_equal(kv_run(memo, &l, &m, &err), 0);
    assert_int_equal(m.n_nodes, 7);

    char *body = realistic_health();
    rs_membership copy;
    assert_int_equal(rs_membership_copy(&m, &copy), 0);
    assert_int_equal(rs_membership_apply_health(&copy, body, strlen(body), &err), 0);
    static const struct {
        const char *id;
        uint8_t healthy;
    } want[] = {
        {"b", 1},      {"cache-a", 1}, {"cache-c", 0}, {"cache-f", 0},
        {"nobody", 0}, {"other", 0},   {"v6", 1},
    };
    for (size_t i = 0; i < copy.n_nodes; i++) {
        assert_string_equal(copy.nodes[i].id, want[i].id);
        if (copy.healthy[i] != want[i].healthy) {
            fail_msg("%s: healthy %d", want[i].id, copy.healthy[i]);
        }
    }
    /* The KV membership it was copied from is untouched. */
    for (size_t i = 0; i < m.n_nodes; i++) {
        assert_int_equal(m.healthy[i], 1);
    }

    /* An empty health listing: every node unhealthy. */
    assert_int_equal(rs_membership_apply_health(&copy, "[]", 2, &err), 0);
    for (size_t i = 0; i < copy.n_nodes; i++) {
        assert_int_equal(copy.healthy[i], 0);
    }
    rs_membership_free(&copy);

    /* A membership without a healthy array gets one. */
    rs_node node = {
        .id = "cache-a", .address = "1.1.1.1:1", .zone = "", .weight = 1, .enabled = true};
    rs_membership bare = {.nodes = &node, .n_nodes = 1};
    assert_int_equal(rs_membership_apply_health(&bare, body, strlen(body), NULL), 0);
    assert_non_null(bare.healthy);
    assert_int_equal(bare.healthy[0], 1);
    free(bare.healthy);

    /* An empty membership. */
    rs_membership empty = {0};
    assert_int_equal(rs_membership_apply_health(&empty, body, strlen(body), &err), 0);
    free(empty.healthy);
    free(body);
    rs_membership_free(&m);
    rs_kv_memo_free(memo);
}

/* ---- the guard --------------------------------------------------------------------------------
 */

static rs_ring *
ring_of(const char *const *ids, size_t n, const bool *enabled) {
    rs_node nodes[16];
    char addr[16][48];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        snprintf(addr[i], sizeof(addr[i]), "127.0.0.%zu:6379", i + 1);
        nodes[i] = (rs_node){.id = ids[i],
                             .address = addr[i],
                             .zone = "",
                             .weight = 1,
                             .enabled = enabled == NULL || enabled[i]};
    }
    rs_ring_params p;
    rs_ring_params_init(&p);
    rs_ring *r = NULL;
    rs_error err;
    assert_int_equal(rs_ring_build(&p, nodes, n, &r, &err), 0);
    return r;
}

typedef struct guard_case {
    const char *from; /* ids, space-separated; "-" prefix = disabled; NULL = no ring */
    const char *to;   /* same */
    double max;
    bool hold;
    const char *reason; /* exact, when held */
} guard_case;

static const guard_case guard_cases[] = {
    {NULL, "a", 0.5, false, NULL}, /* first ring */
    {NULL, "", 0.5, false, NULL},
    {"a b", "a", 0.5, false, NULL}, /* 50% is not more than 50% */
    {"a b", "a", 0.49, true, "update would remove 1 of 2 enabled nodes (50%, max 49%)"},
    {"a b c", "a", 0.5, true, "update would remove 2 of 3 enabled nodes (66.7%, max 50%)"},
    {"a b c d", "a x y", 0.5, true, "update would remove 3 of 4 enabled nodes (75%, max 50%)"},
    {"a b c d", "a b c", 0.25, false, NULL},
    {"a b c", "", 0.5, true, "update would leave no enabled node (3 enabled now)"},
    {"a b c", "-a -b -c", 1.0, true, "update would leave no enabled node (3 enabled now)"},
    {"a b c", "x y z", 1.0, true, "update would remove all 3 enabled nodes"},
    {"a", "b", 1.0, true, "update would remove the only enabled node"},
    {"a b c", "a", 1.0, false, NULL},
    {"a b c d", "a -b c d", 0.5, false, NULL}, /* disabling counts as removal: 1 of 4 */
    {"a b c d", "a -b -c -d", 0.5, true, "update would remove 3 of 4 enabled nodes (75%, max 50%)"},
    {"a -b -c -d", "a", 0.1, false, NULL}, /* disabled nodes of `from` don't count */
    {"-a b", "a", 0.5, true, "update would remove the only enabled node"},
    {"a b", "a b c d e f", 0.1, false, NULL},                   /* additions never hold */
    {"a b c d e f g h i j", "a b c d e f g", 0.3, false, NULL}, /* exactly 30% */
    {"a b c d e f g h i j", "a b c d e f", 0.3, true,
     "update would remove 4 of 10 enabled nodes (40%, max 30%)"},
    {"a b c", "a a a", 0.5, true, "update would remove 2 of 3 enabled nodes (66.7%, max 50%)"},
};

/* Splits "a -b c" into ids and enabled flags. */
static size_t
parse_ids(const char *spec, char ids[16][8], bool *enabled) {
    size_t n = 0;
    const char *p = spec;
    while (*p != '\0') {
        while (*p == ' ') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        enabled[n] = *p != '-';
        if (*p == '-') {
            p++;
        }
        size_t k = 0;
        while (*p != '\0' && *p != ' ') {
            ids[n][k++] = *p++;
        }
        ids[n][k] = '\0';
        n++;
    }
    return n;
}

static void
test_guard(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(guard_cases) / sizeof(guard_cases[0]); i++) {
        const guard_case *c = &guard_cases[i];
        char fids[16][8], tids[16][8];
        bool fen[16], ten[16];
        rs_ring *from = NULL;
        if (c->from != NULL) {
            size_t nf = parse_ids(c->from, fids, fen);
            const char *ptrs[16];
            for (size_t k = 0; k < nf; k++) {
                ptrs[k] = fids[k];
            }
            from = ring_of(ptrs, nf, fen);
        }
        size_t nt = parse_ids(c->to, tids, ten);
        rs_node nodes[16];
        for (size_t k = 0; k < nt; k++) {
            nodes[k] = (rs_node){.id = tids[k],
                                 .address = "127.1.1.1:1",
                                 .zone = "",
                                 .weight = 1,
                                 .enabled = ten[k]};
        }
        rs_membership to = {.nodes = nt > 0 ? nodes : NULL, .n_nodes = nt};
        to.force = true; /* the caller's business: the guard still says what it sees */
        rs_error err;
        memset(&err, 'x', sizeof(err));
        bool held = rs_guard_holds(from, &to, c->max, &err);
        if (held != c->hold || (held && strcmp(err.msg, c->reason) != 0) ||
            (!held && err.msg[0] != '\0')) {
            fail_msg("case %zu: held %d, \"%s\"", i, held, err.msg);
        }
        assert_false(held != rs_guard_holds(from, &to, c->max, NULL));
        rs_ring_unref(from);
    }
}

/* ---- backoff and bucket ------------------------------------------------------------------------
 */

static void
test_backoff(void **state) {
    (void)state;
    /* Attempt 0 waits the base, whatever the draw. */
    assert_int_equal(rs_backoff_ms(0, 100, 30000, 0.0), 100);
    assert_int_equal(rs_backoff_ms(0, 100, 30000, 0.999), 100);
    /* The ceiling doubles up to the cap; the draw spreads over [base, ceiling]. */
    uint64_t prev = 0;
    for (unsigned a = 0; a < 20; a++) {
        uint64_t ceiling = 100u << a;
        if (ceiling > 30000) {
            ceiling = 30000;
        }
        uint64_t lo = rs_backoff_ms(a, 100, 30000, 0.0);
        uint64_t mid = rs_backoff_ms(a, 100, 30000, 0.5);
        uint64_t hi = rs_backoff_ms(a, 100, 30000, 0.9999999);
        assert_int_equal(lo, 100);
        assert_true(mid == 100 + (ceiling - 100) / 2 || mid == 100 + (ceiling - 100 + 1) / 2);
        assert_true(hi <= ceiling && hi + 1 >= ceiling);
        assert_true(hi >= prev);
        prev = hi;
    }
    assert_int_equal(rs_backoff_ms(1, 100, 30000, 0.5), 150);
    assert_int_equal(rs_backoff_ms(3, 100, 30000, 0.5), 450);
    /* Huge attempts and huge values never overflow. */
    assert_int_equal(rs_backoff_ms(UINT_MAX, 100, 30000, 0.0), 100);
    assert_true(rs_backoff_ms(UINT_MAX, 100, 30000, 0.9999999) <= 30000);
    assert_true(rs_backoff_ms(UINT_MAX, 100, 30000, 0.9999999) >= 29990);
    assert_true(rs_backoff_ms(64, UINT64_MAX / 2, UINT64_MAX, 0.9999999) <= UINT64_MAX);
    assert_true(rs_backoff_ms(64, UINT64_MAX / 2, UINT64_MAX, 0.9999999) >= UINT64_MAX / 2);
    assert_int_equal(rs_backoff_ms(1000, 1, UINT64_MAX, 0.0), 1);
    assert_true(rs_backoff_ms(1000, 1, UINT64_MAX, 0.999999999999) > UINT64_MAX / 2);
    assert_int_equal(rs_backoff_ms(UINT_MAX, 0, 1000, 0.7), 0);
    /* Odd arguments: cap below base, draws outside [0, 1). */
    assert_int_equal(rs_backoff_ms(5, 500, 100, 0.5), 500);
    assert_int_equal(rs_backoff_ms(5, 100, 30000, -1.0), 100);
    assert_int_equal(rs_backoff_ms(5, 100, 30000, NAN), 100);
    assert_int_equal(rs_backoff_ms(5, 100, 30000, 1.0), 3200);
    assert_int_equal(rs_backoff_ms(5, 100, 30000, 7.0), 3200);
    /* Many draws stay within the bounds. */
    uint64_t seed = 42;
    for (int i = 0; i < 10000; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        double r = (double)(seed >> 11) / 9007199254740992.0;
        unsigned a = (unsigned)(seed >> 59);
        uint64_t d = rs_backoff_ms(a, 100, 30000, r);
        assert_true(d >= 100 && d <= 30000);
    }
}

static void
test_bucket(void **state) {
    (void)state;
    rs_bucket b;
    rs_bucket_init(&b, 10.0, 3.0, 1000);
    /* The burst, then a wait of one token's time. */
    assert_int_equal(rs_bucket_take(&b, 1000), 0);
    assert_int_equal(rs_bucket_take(&b, 1000), 0);
    assert_int_equal(rs_bucket_take(&b, 1000), 0);
    assert_int_equal(rs_bucket_take(&b, 1000), 100);
    assert_int_equal(rs_bucket_take(&b, 1050), 50);
    assert_int_equal(rs_bucket_take(&b, 1099), 1);
    assert_int_equal(rs_bucket_take(&b, 1100), 0);
    assert_int_equal(rs_bucket_take(&b, 1100), 100);
    /* A long pause refills to the burst, not beyond. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rs_bucket_take(&b, 1000000), 0);
    }
    assert_int_equal(rs_bucket_take(&b, 1000000), 100);
    /* A clock that goes back refills nothing. */
    assert_int_equal(rs_bucket_take(&b, 500), 100);
    assert_int_equal(rs_bucket_take(&b, 600), 0);

    /* Waiting exactly what it says always works, whatever the rate. */
    static const double rates[] = {3.0, 7.0, 0.3, 1000.0, 33.3, 2500.0};
    for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
        rs_bucket_init(&b, rates[r], 1.0, 0);
        uint64_t now = 0;
        assert_int_equal(rs_bucket_take(&b, now), 0);
        for (int i = 0; i < 1000; i++) {
            uint64_t wait = rs_bucket_take(&b, now);
            assert_true(wait >= 1);
            now += wait;
            if (rs_bucket_take(&b, now) != 0) {
                fail_msg("rate %g: no token after waiting %llu ms", rates[r],
                         (unsigned long long)wait);
            }
        }
        /* On average, the rate. */
        assert_true(fabs((double)now - 1000.0 * 1000.0 / rates[r]) <= 1000.0 + now * 1e-6);
    }

    /* No rate: never again. A burst below one is one. */
    rs_bucket_init(&b, 0.0, 0.0, 0);
    assert_int_equal(rs_bucket_take(&b, 0), 0);
    assert_int_equal(rs_bucket_take(&b, 1000000), UINT64_MAX);
}

/* ---- API contract -------------------------------------------------------------------------------
 */

static void
test_api_contract(void **state) {
    (void)state;
    rs_membership_free(NULL);
    rs_membership zero = {0};
    rs_membership_free(&zero);
    rs_membership copy;
    memset(&copy, 0x77, sizeof(copy));
    assert_int_equal(rs_membership_copy(&zero, &copy), 0);
    assert_null(copy.nodes);
    assert_null(copy.healthy);
    assert_int_equal(copy.n_nodes, 0);

    /* err may be NULL everywhere. */
    rs_kv_memo *memo = NULL;
    assert_int_equal(rs_kv_memo_new(&memo), 0);
    rs_ring_params base;
    rs_ring_params_init(&base);
    rs_membership m;
    assert_int_equal(rs_kv_to_membership(memo, "x", 1, PREFIX, &base, 0.5, &m, NULL), -EINVAL);
    assert_int_equal(rs_kv_to_membership(memo, NULL, 0, PREFIX, &base, 0.5, &m, NULL), -EINVAL);
    assert_int_equal(rs_health_to_membership("x", 1, &base, &m, NULL), -EINVAL);
    assert_int_equal(rs_health_to_membership(NULL, 0, &base, &m, NULL), -EINVAL);

    /* Same input, same output (and the memo does not change a good listing's result). */
    listing l;
    lst_init(&l);
    lst_put(&l, PREFIX "/nodes/b", "{'address':'127.0.0.2:1','zone':'z','weight':5}");
    lst_put(&l, PREFIX "/nodes/a", "{'address':'127.0.0.1:1'}");
    lst_put(&l, PREFIX "/config", "{'replicas':1}");
    lst_end(&l);
    rs_membership m1, m2;
    assert_int_equal(rs_kv_to_membership(memo, l.buf, l.len, PREFIX, &base, 0.5, &m1, NULL), 0);
    assert_int_equal(rs_kv_to_membership(memo, l.buf, l.len, PREFIX, &base, 0.5, &m2, NULL), 0);
    assert_int_equal(m1.n_nodes, m2.n_nodes);
    for (size_t i = 0; i < m1.n_nodes; i++) {
        assert_string_equal(m1.nodes[i].id, m2.nodes[i].id);
        assert_string_equal(m1.nodes[i].address, m2.nodes[i].address);
        assert_string_equal(m1.nodes[i].zone, m2.nodes[i].zone);
        assert_int_equal(m1.nodes[i].weight, m2.nodes[i].weight);
    }
    assert_params_equal(&m1.params, &m2.params);
    rs_membership_free(&m1);
    rs_membership_free(&m2);
    lst_free(&l);
    rs_kv_memo_free(memo);
}

int
main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_helper),
        cmocka_unit_test(test_realistic_listing),
        cmocka_unit_test(test_prefix_forms),
        cmocka_unit_test(test_node_rejections),
        cmocka_unit_test(test_node_limits),
        cmocka_unit_test(test_last_good_value),
        cmocka_unit_test(test_config_override),
        cmocka_unit_test(test_config_confirm_rejections),
        cmocka_unit_test(test_confirm_last_good),
        cmocka_unit_test(test_hostile_bodies),
        cmocka_unit_test(test_truncated_listing),
        cmocka_unit_test(test_huge_listing),
        cmocka_unit_test(test_bad_base),
        cmocka_unit_test(test_health_listing),
        cmocka_unit_test(test_health_rejections),
        cmocka_unit_test(test_health_duplicates),
        cmocka_unit_test(test_health_hostile),
        cmocka_unit_test(test_apply_health),
        cmocka_unit_test(test_guard),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_api_contract),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
