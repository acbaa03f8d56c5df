/* State snapshot format: round trips, checksum coverage of every byte, truncation,
 * garbage and foreign documents, format versions, and every field's bounds. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/sha.h>

#include "rs_state.h"

/* ---- helpers ---- */

#define LIT(s) s, sizeof(s) - 1 /* a literal and its length, NULs included */

static void
add(rs_state *s, const char *id, const char *addr, const char *zone, uint32_t w, bool en,
    bool healthy) {
    rs_node n = {.id = id, .address = addr, .zone = zone, .weight = w, .enabled = en};
    assert_int_equal(rs_state_add_node(s, &n, healthy), 0);
}

/* A state using every field with non-default values. */
static void
sample(rs_state *s) {
    rs_state_init(s);
    snprintf(s->ring, sizeof(s->ring), "%s", "sessions-eu.1");
    s->epoch = 4242;
    s->params.algorithm = RS_ALG_MODULA;
    s->params.hash = RS_HASH_MURMUR;
    s->params.replicas = 3;
    memcpy(s->params.hash_tag, "{}", 3);
    add(s, "cache-a", "127.0.3.7:6379", "eu-west-1a", 1, true, true);
    add(s, "cache-b", "[2001:db8::1]:6380", "", 100, true, false);
    add(s, "caf\xc3\xa9", "cache.example:11211", NULL, RS_WEIGHT_MAX, false, true);
    add(s, "cache-d", "127.0.3.9:6379", "eu-west-1b", 7, false, false);
    add(s, "cache-e", "127.0.3.10:6379", "z", 2, true, true);
    snprintf(s->source, sizeof(s->source), "%s", "consul-kv");
    s->kv_index = 9000000000ull;
    s->health_index = 17;
    s->written_at = 1700000000;
}

static void
assert_printable(const rs_error *err) {
    assert_true(err->msg[0] != '\0');
    for (const char *c = err->msg; *c != '\0'; c++) {
        if (*c < 0x20 || *c >= 0x7f) {
            fail_msg("unprintable byte 0x%02x in message '%s'", (unsigned char)*c, err->msg);
        }
    }
}

static void
assert_zeroed(const rs_state *s) {
    static const rs_state zero;
    assert_memory_equal(s, &zero, sizeof(zero));
}

static bool
same_str(const char *a, const char *b) {
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static bool
states_equal(const rs_state *a, const rs_state *b) {
    if (a->format != b->format || strcmp(a->ring, b->ring) != 0 || a->epoch != b->epoch ||
        a->params.algorithm != b->params.algorithm || a->params.hash != b->params.hash ||
        a->params.replicas != b->params.replicas || a->params.table_size != b->params.table_size ||
        a->params.points_per_weight != b->params.points_per_weight ||
        a->params.vnodes != b->params.vnodes ||
        a->params.replica_factor != b->params.replica_factor ||
        a->params.zone_aware_replicas != b->params.zone_aware_replicas ||
        strcmp(a->params.hash_tag, b->params.hash_tag) != 0 || a->n_nodes != b->n_nodes ||
        strcmp(a->source, b->source) != 0 || a->kv_index != b->kv_index ||
        a->health_index != b->health_index || a->written_at != b->written_at) {
        return false;
    }
    for (size_t i = 0; i < a->n_nodes; i++) {
        const rs_state_node *x = &a->nodes[i], *y = &b->nodes[i];
        if (!same_str(x->node.id, y->node.id) || !same_str(x->node.address, y->node.address) ||
            !same_str(x->node.zone, y->node.zone) || x->node.weight != y->node.weight ||
            x->node.enabled != y->node.enabled || x->healthy != y->healthy) {
            return false;
        }
    }
    return true;
}

/* Decode from an exact-size heap copy, so ASan sees any read past len. */
static int
decode_exact(const char *buf, size_t len, rs_state *out, rs_error *err) {
    char *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    int rc = rs_state_decode(copy, len, out, err);
    free(copy);
    return rc;
}

static int
decode_str(const char *text, rs_state *out, rs_error *err) {
    return decode_exact(text, strlen(text), out, err);
}

static void
expect_fail(const char *what, const char *text, size_t len, int code, const char *needle) {
    rs_state out;
    rs_error err = {{0}};
    memset(&out, 0xa5, sizeof(out));
    int rc = decode_exact(text, len, &out, &err);
    if (rc != code || (needle != NULL && strstr(err.msg, needle) == NULL)) {
        fail_msg("%s: rc %d msg '%s', expected %d and '%s'", what, rc, err.msg, code,
                 needle != NULL ? needle : "");
    }
    assert_zeroed(&out);
    assert_printable(&err);
}

/* Out-parameter rather than a return value: gcc 12's -Wdangling-pointer misreads the
 * latter once inlined. */
static void
encode_sample(char **text, size_t *len) {
    rs_state s;
    sample(&s);
    assert_int_equal(rs_state_encode(&s, text, len), 0);
    rs_state_free(&s);
}

/* The document of the sample state, for editing. */
static json_t *
sample_doc(void) {
    size_t len;
    char *text = NULL;
    encode_sample(&text, &len);
    json_t *doc = json_loadb(text, len, 0, NULL);
    assert_non_null(doc);
    free(text);
    return doc;
}

/* Recompute the checksum of doc's state so content checks, not the checksum, decide. */
static char *
reseal(json_t *doc) {
    char *canon = json_dumps(json_object_get(doc, "state"), JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(canon);
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)canon, strlen(canon), md);
    free(canon);
    char cks[7 + 2 * SHA256_DIGEST_LENGTH + 1] = "sha256:";
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        snprintf(cks + 7 + 2 * i, 3, "%02x", md[i]);
    }
    json_object_set_new(doc, "checksum", json_string(cks));
    char *text = json_dumps(doc, JSON_INDENT(2));
    assert_non_null(text);
    return text;
}

/* Follow "a.b.3.c" from obj; the last component is returned in *last, its parent back. */
static json_t *
walk(json_t *obj, const char *path, char *last, size_t cap) {
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    char *save = NULL, *tok = strtok_r(buf, ".", &save);
    for (char *next; (next = strtok_r(NULL, ".", &save)) != NULL; tok = next) {
        obj = json_is_array(obj) ? json_array_get(obj, strtoul(tok, NULL, 10))
                                 : json_object_get(obj, tok);
        assert_non_null(obj);
    }
    snprintf(last, cap, "%s", tok);
    return obj;
}

/* ---- round trips ---- */

/* Algorithm parameters survive a snapshot; defaults are not written at all. */
static void
test_algorithm_params(void **unused) {
    (void)unused;
    rs_state s, d;
    rs_error err = {{0}};
    sample(&s);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(rs_state_encode(&s, &text, &len), 0);
    assert_null(strstr(text, "table_size"));
    assert_null(strstr(text, "zone_aware"));
    free(text);
    s.params.algorithm = RS_ALG_VNODE_SHA256;
    s.params.hash = RS_HASH_FNV1A_64;
    s.params.table_size = 1009;
    s.params.points_per_weight = 40;
    s.params.vnodes = 7;
    s.params.replica_factor = 3;
    s.params.zone_aware_replicas = true;
    assert_int_equal(rs_state_encode(&s, &text, &len), 0);
    assert_int_equal(decode_exact(text, len, &d, &err), 0);
    assert_true(states_equal(&s, &d));
    free(text);
    rs_state_free(&s);
    rs_state_free(&d);
}

static void
test_round_trip(void **unused) {
    (void)unused;
    rs_state s, d;
    rs_error err = {{0}};
    sample(&s);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(rs_state_encode(&s, &text, &len), 0);
    assert_int_equal(strlen(text), len);
    assert_true(text[len - 1] == '\n');
    assert_non_null(strstr(text, "\"checksum\": \"sha256:"));
    int rc = decode_exact(text, len, &d, &err);
    if (rc != 0) {
        fail_msg("decode: %d %s", rc, err.msg);
    }
    assert_true(states_equal(&s, &d));
    assert_string_equal(d.nodes[2].node.zone, ""); /* NULL zone comes back as "" */
    assert_int_equal(d.format, RS_STATE_FORMAT);

    /* Re-encoding the decoded state gives the same bytes: the format is deterministic. */
    char *again = NULL;
    size_t len2 = 0;
    assert_int_equal(rs_state_encode(&d, &again, &len2), 0);
    assert_int_equal(len, len2);
    assert_memory_equal(text, again, len);

    /* A decoded state can keep growing (its array capacity follows add_node's rule). */
    for (int i = 0; i < 40; i++) {
        char id[24];
        snprintf(id, sizeof(id), "extra-%d", i);
        add(&d, id, "127.0.0.1:7000", "", 1, true, true);
    }
    assert_int_equal(rs_state_validate(&d, &err), 0);
    free(text);
    free(again);
    rs_state_free(&s);
    rs_state_free(&d);
}

static void
test_round_trip_edges(void **unused) {
    (void)unused;
    rs_state s, d;
    rs_error err = {{0}};
    char *text = NULL;
    size_t len = 0;

    /* No nodes, smallest values. */
    rs_state_init(&s);
    memcpy(s.ring, "r", 2);
    memcpy(s.source, "static", 7);
    assert_int_equal(rs_state_encode(&s, &text, &len), 0);
    assert_int_equal(decode_exact(text, len, &d, &err), 0);
    assert_true(states_equal(&s, &d));
    assert_null(d.nodes);
    free(text);
    rs_state_free(&d);

    /* Largest values. */
    s.epoch = INT64_MAX;
    s.kv_index = INT64_MAX;
    s.health_index = INT64_MAX;
    s.written_at = INT64_MAX;
    memset(s.ring, 'R', RS_STATE_RING_MAX);
    memset(s.source, 'x', RS_STATE_SOURCE_MAX);
    char id[RS_ID_MAX + 1], zone[RS_ZONE_MAX + 1];
    memset(id, 'i', RS_ID_MAX);
    id[RS_ID_MAX] = '\0';
    memset(zone, 'z', RS_ZONE_MAX);
    zone[RS_ZONE_MAX] = '\0';
    add(&s, id, "[::1]:65535", zone, RS_WEIGHT_MAX, true, false);
    assert_int_equal(rs_state_encode(&s, &text, &len), 0);
    assert_int_equal(decode_exact(text, len, &d, &err), 0);
    assert_true(states_equal(&s, &d));
    free(text);
    rs_state_free(&d);
    rs_state_free(&s);

    /* Free accepts NULL, zeroed and freed states. */
    rs_state_free(NULL);
    rs_state_free(&s);
}

static void
test_many_nodes(void **unused) {
    (void)unused;
    rs_state s, d;
    rs_error err = {{0}};
    rs_state_init(&s);
    memcpy(s.ring, "big", 4);
    memcpy(s.source, "consul-service", 15);
    for (int i = 0; i < RS_NODES_MAX; i++) {
        char id[24], addr[32];
        snprintf(id, sizeof(id), "node-%05d", i);
        snprintf(addr, sizeof(addr), "127.%d.%d.%d:6379", i >> 16, (i >> 8) & 255, i & 255);
        add(&s, id, addr, "", 1 + (uint32_t)(i % 5), i % 7 != 0, i % 3 != 0);
    }
    rs_node extra = {.id = "one-too-many", .address = "127.9.9.9:1", .weight = 1};
    assert_int_equal(rs_state_add_node(&s, &extra, true), -E2BIG);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(rs_state_encode(&s, &text, &len), 0);
    assert_true(len < RS_STATE_MAX_BYTES);
    assert_int_equal(decode_exact(text, len, &d, &err), 0);
    assert_true(states_equal(&s, &d));
    free(text);
    rs_state_free(&d);

    /* One node more than allowed, sealed correctly: still refused. */
    json_t *doc = sample_doc();
    json_t *nodes = json_object_get(json_object_get(doc, "state"), "nodes");
    json_array_clear(nodes);
    for (int i = 0; i <= RS_NODES_MAX; i++) {
        char id[24];
        snprintf(id, sizeof(id), "node-%05d", i);
        json_array_append_new(nodes, json_pack("{s:s,s:s,s:i,s:s,s:b,s:b}", "id", id, "address",
                                               "127.0.0.1:1", "weight", 1, "zone", "", "enabled", 1,
                                               "healthy", 1));
    }
    text = reseal(doc);
    expect_fail("too many nodes", text, strlen(text), -EINVAL, "state.nodes: too many nodes");
    free(text);
    json_decref(doc);

    /* The in-memory check agrees. */
    s.n_nodes = RS_NODES_MAX + 1; /* only counted, never dereferenced past the check */
    assert_int_equal(rs_state_validate(&s, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "too many nodes"));
    s.n_nodes = RS_NODES_MAX;
    rs_state_free(&s);
}

static void
test_encode_refuses_invalid(void **unused) {
    (void)unused;
    static const char *const needles[] = {
        "state.ring",
        "state.epoch",
        "state.nodes[1].id: duplicate of nodes[0]",
        "state.source",
        "state.nodes[0].id: not valid UTF-8",
        "state.params.replicas",
        "state.written_at",
    };
    for (int c = 0; c < 7; c++) {
        rs_state s;
        rs_error err = {{0}};
        sample(&s);
        switch (c) {
        case 0:
            memcpy(s.ring, "a/b", 4);
            break;
        case 1:
            s.epoch = (uint64_t)INT64_MAX + 1;
            break;
        case 2:
            free((void *)s.nodes[1].node.id);
            s.nodes[1].node.id = strdup("cache-a");
            break;
        case 3:
            s.source[0] = '\0';
            break;
        case 4:
            free((void *)s.nodes[0].node.id);
            s.nodes[0].node.id = strdup("bad\xff");
            break;
        case 5:
            s.params.replicas = 0;
            break;
        default:
            s.written_at = -1;
            break;
        }
        assert_int_equal(rs_state_validate(&s, &err), -EINVAL);
        if (strstr(err.msg, needles[c]) == NULL) {
            fail_msg("case %d: '%s' lacks '%s'", c, err.msg, needles[c]);
        }
        char *text = (char *)0x1;
        size_t len = 99;
        assert_int_equal(rs_state_encode(&s, &text, &len), -EINVAL);
        assert_null(text);
        assert_int_equal(len, 0);
        rs_state_free(&s);
    }
}

/* ---- damage ---- */

static void
test_every_byte_flip(void **unused) {
    (void)unused;
    rs_state orig;
    sample(&orig);
    size_t len;
    char *text = NULL;
    encode_sample(&text, &len);
    char *copy = malloc(len);
    assert_non_null(copy);
    const char *start = strstr(text, "\"state\"");
    assert_non_null(start);
    static const unsigned char flips[] = {0x01, 0x02, 0x20, 0x80};
    size_t accepted = 0, rejected = 0;
    for (size_t i = (size_t)(start - text); i < len; i++) {
        for (size_t f = 0; f < sizeof(flips); f++) {
            memcpy(copy, text, len);
            copy[i] = (char)(copy[i] ^ flips[f]);
            rs_state d;
            rs_error err = {{0}};
            int rc = decode_exact(copy, len, &d, &err);
            if (rc == 0) {
                /* Only layout changes may pass (e.g. whitespace); never other content. */
                if (!states_equal(&orig, &d)) {
                    fail_msg("byte %zu ^ 0x%02x decoded to different content", i, flips[f]);
                }
                accepted++;
            } else {
                assert_true(rc == -EINVAL || rc == -EBADMSG);
                assert_zeroed(&d);
                assert_printable(&err);
                rejected++;
            }
            rs_state_free(&d);
        }
    }
    assert_true(rejected > 10 * accepted);

    /* Every checksum digit matters too. */
    const char *hex = strstr(text, "sha256:") + 7;
    for (size_t i = (size_t)(hex - text); i < (size_t)(hex - text) + 64; i++) {
        memcpy(copy, text, len);
        copy[i] = copy[i] == '0' ? '1' : '0';
        expect_fail("checksum digit", copy, len, -EBADMSG, "checksum mismatch");
    }
    free(copy);
    free(text);
    rs_state_free(&orig);
}

static void
test_content_edit_detected(void **unused) {
    (void)unused;
    /* Valid JSON, valid content, old checksum: a hand edit or a flipped digit. */
    static const char *const edits[][2] = {
        {"\"epoch\": 4242", "\"epoch\": 4243"},           {"\"weight\": 100", "\"weight\": 101"},
        {"\"healthy\": false", "\"healthy\": true "},     {"127.0.3.7:6379", "127.0.3.8:6379"},
        {"\"hash\": \"murmur\"", "\"hash\": \"crc32a\""},
    };
    size_t len;
    char *text = NULL;
    encode_sample(&text, &len);
    for (size_t e = 0; e < sizeof(edits) / sizeof(edits[0]); e++) {
        char *copy = strdup(text);
        char *at = strstr(copy, edits[e][0]);
        assert_non_null(at);
        assert_int_equal(strlen(edits[e][0]), strlen(edits[e][1]));
        memcpy(at, edits[e][1], strlen(edits[e][1]));
        expect_fail(edits[e][0], copy, len, -EBADMSG, "checksum mismatch");
        free(copy);
    }
    free(text);
}

static void
test_layout_independent(void **unused) {
    (void)unused;
    /* Re-dumped compactly, keys reordered, \u escapes: same content, same checksum. */
    json_t *doc = sample_doc();
    char *compact = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    rs_state d, orig;
    rs_error err = {{0}};
    sample(&orig);
    assert_non_null(strcasestr(compact, "caf\\u00e9"));
    assert_int_equal(decode_str(compact, &d, &err), 0);
    assert_true(states_equal(&orig, &d));
    rs_state_free(&d);

    /* Upper-case checksum digits are the same checksum. */
    char *cks = strstr(compact, "sha256:") + 7;
    for (int i = 0; i < 64; i++) {
        if (cks[i] >= 'a' && cks[i] <= 'f') {
            cks[i] = (char)(cks[i] - 'a' + 'A');
        }
    }
    assert_int_equal(decode_str(compact, &d, &err), 0);
    rs_state_free(&d);
    rs_state_free(&orig);
    free(compact);
    json_decref(doc);
}

static void
test_truncated_prefixes(void **unused) {
    (void)unused;
    size_t len;
    char *text = NULL;
    encode_sample(&text, &len);
    size_t body = len;
    while (body > 0 && (text[body - 1] == '\n' || text[body - 1] == ' ')) {
        body--;
    }
    for (size_t n = 0; n < len; n++) {
        rs_state d;
        rs_error err = {{0}};
        int rc = decode_exact(text, n, &d, &err);
        if (n < body) {
            if (rc != -EINVAL) {
                fail_msg("prefix %zu: rc %d (%s)", n, rc, err.msg);
            }
            assert_zeroed(&d);
            assert_printable(&err);
        } else {
            assert_int_equal(rc, 0); /* only trailing whitespace was cut */
            rs_state_free(&d);
        }
    }
    free(text);
}

static void
test_garbage(void **unused) {
    (void)unused;
    static const struct {
        const char *text;
        size_t len;
        const char *needle;
    } cases[] = {
        {LIT(""), "empty"},
        {LIT("\0\0\0\0"), "not valid JSON"},
        {LIT("   \n"), "not valid JSON"},
        {LIT("null"), "not valid JSON"},
        {LIT("\"format\""), "not valid JSON"},
        {LIT("42"), "not valid JSON"},
        {LIT("[1,2,3]"), "not a ringside state file: the top level is an array"},
        {LIT("{"), "not valid JSON"},
        {LIT("{}{}"), "not valid JSON"},
        {LIT("{\"format\":1}trailing"), "not valid JSON"},
        {LIT("\xff\xfe{\"format\":1}"), "not valid JSON"},
        {LIT("{\"format\":1,\"format\":1}"), "not valid JSON"}, /* duplicate key */
        {LIT("{\"format\":1,\"checksum\":\"sha256:\",\"state\":{\"ring\":\"a\\u0000b\"}}"),
         "not valid JSON"},
        {LIT("PK\x03\x04garbage"), "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char what[32];
        snprintf(what, sizeof(what), "garbage %zu", i);
        expect_fail(what, cases[i].text, cases[i].len, -EINVAL, cases[i].needle);
    }

    /* Deep nesting is refused by the parser's depth limit, not the stack. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    expect_fail("deep", deep, 2 * depth, -EINVAL, "not valid JSON");
    free(deep);

    /* Oversize input is refused before parsing. */
    size_t big = (size_t)RS_STATE_MAX_BYTES + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    expect_fail("huge", huge, big, -EINVAL, "too large");
    free(huge);

    /* Random bytes. */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    char buf[512];
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(x % sizeof(buf));
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (char)x;
        }
        if (round & 1) {
            buf[0] = '{'; /* reach past the first byte more often */
        }
        expect_fail("random", buf, n, -EINVAL, NULL);
    }
}

static void
test_foreign(void **unused) {
    (void)unused;
    static const struct {
        const char *text;
        int code;
        const char *needle;
    } cases[] = {
        /* A sidecar config file. */
        {"{\"ring\":\"main\",\"listen\":\"/run/ringside/ringside.sock\",\"nodes\":[]}", -EINVAL,
         "not a ringside state file: no \"format\" key"},
        {"{\"format\":1}", -EINVAL, "not a ringside state file: no \"checksum\" key"},
        {"{\"format\":1,\"checksum\":\"sha256:00\"}", -EINVAL, "no \"state\" key"},
        {"{\"format\":\"1\",\"state\":{}}", -EINVAL, "\"format\" is a string, not an integer"},
        {"{\"format\":1.0,\"state\":{}}", -EINVAL, "\"format\" is a number, not an integer"},
        {"{\"format\":1,\"checksum\":\"x\",\"state\":{},\"other\":true}", -EINVAL,
         "not a ringside state file: unknown key \"other\""},
        {"{\"format\":1,\"checksum\":\"x\",\"state\":[]}", -EINVAL, "state: must be an object"},
        {"{\"format\":1,\"checksum\":\"md5:abc\",\"state\":{}}", -EINVAL,
         "checksum: must be \"sha256:\" followed by 64 hex digits"},
        {"{\"format\":1,\"checksum\":7,\"state\":{}}", -EINVAL, "checksum: must be"},
        {"{\"format\":1,\"checksum\":\"sha256:"
         "zz00000000000000000000000000000000000000000000000000000000000000\",\"state\":{}}",
         -EINVAL, "checksum: must be"},
        {"{\"format\":1,\"checksum\":\"sha256:"
         "0000000000000000000000000000000000000000000000000000000000000000\",\"state\":{}}",
         -EBADMSG, "checksum mismatch"},
        /* Newer and older versions: not ours to read, whatever else they hold. */
        {"{\"format\":2,\"checksum\":\"sha256:00\",\"state\":{},\"extra\":[]}", -EPROTONOSUPPORT,
         "unsupported state format 2 (this build reads 1)"},
        {"{\"format\":0}", -EPROTONOSUPPORT, "unsupported state format 0"},
        {"{\"format\":-1}", -EPROTONOSUPPORT, "unsupported state format -1"},
        {"{\"format\":9223372036854775807}", -EPROTONOSUPPORT, "unsupported"},
        {"{\"format\":99999999999999999999}", -EINVAL, "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_fail(cases[i].text, cases[i].text, strlen(cases[i].text), cases[i].code,
                    cases[i].needle);
    }

    /* A correctly sealed empty state is still not a state. */
    json_t *doc = sample_doc();
    json_object_set_new(doc, "state", json_object());
    char *text = reseal(doc);
    expect_fail("empty state", text, strlen(text), -EINVAL, "state.ring: missing");
    free(text);
    json_decref(doc);
}

/* ---- field bounds, each sealed with a correct checksum ---- */

typedef struct field_case {
    const char *path;  /* "nodes.3.weight" */
    const char *value; /* JSON text, or NULL to delete the key */
    const char *needle;
} field_case;

static void
test_bad_fields(void **unused) {
    (void)unused;
    static char long_id[RS_ID_MAX + 4];
    long_id[0] = '"';
    memset(long_id + 1, 'x', RS_ID_MAX + 1);
    long_id[RS_ID_MAX + 2] = '"';
    const field_case cases[] = {
        {"epoch", "-1", "state.epoch: must be an integer between 0 and 9223372036854775807"},
        {"epoch", "1.5", "state.epoch: must be an integer between 0"},
        {"epoch", "\"7\"", "state.epoch: must be an integer"},
        {"epoch", "null", "state.epoch: must be an integer"},
        {"epoch", NULL, "state.epoch: missing"},
        {"written_at", "-1700000000", "state.written_at: must be an integer between 0"},
        {"consul.kv_index", "-3", "state.consul.kv_index: must be an integer between 0"},
        {"consul.health_index", "true", "state.consul.health_index: must be an integer"},
        {"consul.extra", "1", "state.consul: unknown key \"extra\""},
        {"consul.kv_index", NULL, "state.consul.kv_index: missing"},
        {"consul", "[]", "state.consul: must be an object"},
        {"nodes.3.weight", "0", "state.nodes[3].weight: must be an integer between 1 and 10000"},
        {"nodes.3.weight", "10001", "state.nodes[3].weight: must be an integer between 1 and"},
        {"nodes.3.weight", "4294967297", "state.nodes[3].weight: must be an integer"},
        {"nodes.3.weight", "-1", "state.nodes[3].weight: must be an integer"},
        {"nodes.0.id", "\"\"", "state.nodes[0]: id must not be empty"},
        {"nodes.0.id", "\"a b\"", "state.nodes[0]: id must not contain spaces"},
        {"nodes.0.id", "\"a\\nb\"", "state.nodes[0]: id must not contain spaces or control"},
        {"nodes.0.id", long_id, "state.nodes[0].id: too long (max 200 bytes)"},
        {"nodes.0.id", "5", "state.nodes[0].id: must be a string"},
        {"nodes.1.id", "\"cache-a\"", "state.nodes[1].id: duplicate of nodes[0] (\"cache-a\")"},
        {"nodes.4.id", "\"cache-b\"", "state.nodes[4].id: duplicate of nodes[1]"},
        {"nodes.1.address", "\"nohost\"", "state.nodes[1]: address \"nohost\": must be host:port"},
        {"nodes.1.address", "\"h:0\"", "state.nodes[1]: address \"h:0\": port must be"},
        {"nodes.2.zone", "null", "state.nodes[2].zone: must be a string"},
        {"nodes.2.zone", NULL, "state.nodes[2].zone: missing"},
        {"nodes.2.enabled", "1", "state.nodes[2].enabled: must be true or false"},
        {"nodes.2.healthy", "\"yes\"", "state.nodes[2].healthy: must be true or false"},
        {"nodes.0.extra", "1", "state.nodes[0]: unknown key \"extra\""},
        {"nodes.0.evil\\u0007", "1", "state.nodes[0]: unknown key \"evil?\""},
        {"nodes.4", "\"cache-e\"", "state.nodes[4]: must be an object"},
        {"nodes", "{}", "state.nodes: must be an array"},
        {"params.algorithm", "\"jump\"", "state.params.algorithm: unknown algorithm"},
        {"params.hash", "\"md6\"", "state.params.hash: unknown hash \"md6\""},
        {"params.replicas", "0", "state.params.replicas: must be an integer between 1 and 16"},
        {"params.replicas", "17", "state.params.replicas: must be an integer between 1 and 16"},
        {"params.hash_tag", "\"{\"", "state.params.hash_tag: must be empty or exactly two"},
        {"params.hash_tag", "\"{{{\"", "state.params.hash_tag: must be empty or exactly two"},
        {"params.extra", "1", "state.params: unknown key \"extra\""},
        {"params.replicas", NULL, "state.params.replicas: missing"},
        {"params", "\"ketama\"", "state.params: must be an object"},
        {"ring", "\"\"", "state.ring: must be 1 to 63 characters from [A-Za-z0-9_.-]"},
        {"ring", "\"../etc\"", "state.ring: must be 1 to 63 characters"},
        {"ring", "\"a/b\"", "state.ring: must be"},
        {"ring", NULL, "state.ring: missing"},
        {"source", "\"\"", "state.source: must be 1 to 31 characters from [a-z0-9_-]"},
        {"source", "\"Consul KV\"", "state.source: must be"},
        {"source", "7", "state.source: must be a string"},
        {"unexpected", "{}", "state: unknown key \"unexpected\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *doc = sample_doc();
        char last[64];
        json_t *parent = walk(json_object_get(doc, "state"), cases[i].path, last, sizeof(last));
        if (strcmp(last, "evil\\u0007") == 0) {
            memcpy(last, "evil\a", 6);
        }
        if (cases[i].value == NULL) {
            assert_int_equal(json_object_del(parent, last), 0);
        } else {
            json_error_t jerr;
            json_t *v = json_loads(cases[i].value, JSON_DECODE_ANY, &jerr);
            assert_non_null(v);
            if (json_is_array(parent)) {
                assert_int_equal(json_array_set_new(parent, strtoul(last, NULL, 10), v), 0);
            } else {
                assert_int_equal(json_object_set_new(parent, last, v), 0);
            }
        }
        char *text = reseal(doc);
        expect_fail(cases[i].needle, text, strlen(text), -EINVAL, cases[i].needle);
        free(text);
        json_decref(doc);
    }
}

static void
test_add_node_copies(void **unused) {
    (void)unused;
    rs_state s;
    rs_state_init(&s);
    char id[8] = "n1";
    rs_node n = {.id = id, .address = "127.0.0.1:1", .zone = NULL, .weight = 1, .enabled = true};
    assert_int_equal(rs_state_add_node(&s, &n, true), 0);
    id[1] = '9';
    assert_string_equal(s.nodes[0].node.id, "n1");
    assert_string_equal(s.nodes[0].node.zone, "");
    assert_int_equal(s.params.algorithm, RS_ALG_KETAMA);
    assert_int_equal(s.format, RS_STATE_FORMAT);
    rs_state_free(&s);
    assert_zeroed(&s);
}

int
main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_algorithm_params),
        cmocka_unit_test(test_round_trip_edges),
        cmocka_unit_test(test_many_nodes),
        cmocka_unit_test(test_encode_refuses_invalid),
        cmocka_unit_test(test_every_byte_flip),
        cmocka_unit_test(test_content_edit_detected),
        cmocka_unit_test(test_layout_independent),
        cmocka_unit_test(test_truncated_prefixes),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_foreign),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_add_node_copies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
