/* Unit tests for the configuration parser (rs_config): the SPEC §10 example, defaults, every
 * field's type, range and unknown-key errors with their exact text, and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_config.h"

/* ---- helpers ------------------------------------------------------------------------ */

/* The tables write JSON with single quotes for readability; this turns them into double
 * quotes (a literal ' in a test document is written \u0027). Caller frees. */
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

/* Parses an exact-size heap copy of buf[0..len), so a read past the end is an ASan error. */
static int
parse_exact(const char *buf, size_t len, rs_config *c, rs_error *err) {
    char *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    if (len > 0) {
        memcpy(copy, buf, len);
    }
    int rc = rs_config_parse(len > 0 ? copy : NULL, len, c, err);
    free(copy);
    return rc;
}

static int
parse_quoted(const char *table_json, rs_config *c, rs_error *err) {
    char *json = json_of(table_json);
    int rc = parse_exact(json, strlen(json), c, err);
    free(json);
    return rc;
}

/* Glob with '*' only (fnmatch would treat the "[0]" of paths as a character class). */
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

/* After a failed parse the config holds the defaults and owns nothing. */
static void
assert_clean_failure(const rs_config *c, const rs_error *err) {
    assert_null(c->nodes);
    assert_int_equal(c->n_nodes, 0);
    assert_string_equal(c->ring_name, "default");
    assert_true(err->msg[0] != '\0');
    for (const char *p = err->msg; *p != '\0'; p++) {
        assert_true(*p >= 0x20 && *p < 0x7f);
    }
}

/* A minimal valid membership, for documents that must otherwise parse. */
#define NODE "'membership':{'nodes':[{'address':'127.0.0.1:6379'}]}"
#define X10 "xxxxxxxxxx"
#define X40 X10 X10 X10 X10
#define Z8 "0,0,0,0,0,0,0,0"
#define Z64 Z8 "," Z8 "," Z8 "," Z8 "," Z8 "," Z8 "," Z8 "," Z8

/* ---- the SPEC §10 example ---------------------------------------------------------- */

static const char spec_example[] =
    "{\n"
    "  \"ring\":       {\"name\": \"sessions\", \"algorithm\": \"ketama\", \"hash\": "
    "\"fnv1a_64\",\n"
    "                 \"replicas\": 2, \"hash_tag\": \"{}\"},\n"
    "  \"listen\":     {\"socket\": \"/run/ringside/ringside.sock\", \"mode\": \"0660\",\n"
    "                 \"allow_uids\": [], \"allow_gids\": [], \"max_clients\": 10000},\n"
    "  \"http\":       {\"address\": \"127.0.0.1:9317\"},\n"
    "  \"state_dir\":  \"/var/lib/ringside\",\n"
    "  \"membership\": {\"source\": \"static\",\n"
    "                 \"nodes\": [{\"id\": \"cache-a\", \"address\": \"127.0.0.1:6379\",\n"
    "                            \"weight\": 1, \"zone\": \"a\"}],\n"
    "                 \"consul\": {\"address\": \"http://127.0.0.1:8500\",\n"
    "                            \"kv_prefix\": \"ringside/sessions\",\n"
    "                            \"health_service\": \"redis-cache\", \"token_file\": \"\",\n"
    "                            \"ca_file\": \"\", \"stale\": true}},\n"
    "  \"health\":     {\"policy\": \"skip\", \"panic_threshold\": 0.5},\n"
    "  \"log\":        {\"level\": \"info\", \"format\": \"kv\"}\n"
    "}";

static void
test_spec_example(void **state) {
    (void)state;
    rs_config c;
    rs_error err = {{0}};
    assert_int_equal(rs_config_parse(spec_example, strlen(spec_example), &c, &err), 0);
    assert_string_equal(err.msg, "");
    assert_string_equal(c.ring_name, "sessions");
    assert_int_equal(c.params.algorithm, RS_ALG_KETAMA);
    assert_int_equal(c.params.hash, RS_HASH_FNV1A_64);
    assert_int_equal(c.params.replicas, 2);
    assert_string_equal(c.params.hash_tag, "{}");
    assert_string_equal(c.socket_path, "/run/ringside/ringside.sock");
    assert_int_equal(c.socket_mode, 0660);
    assert_int_equal(c.n_allow_uids, 0);
    assert_int_equal(c.n_allow_gids, 0);
    assert_int_equal(c.max_clients, 10000);
    assert_true(c.http_enabled);
    assert_string_equal(c.http_address, "127.0.0.1:9317");
    assert_string_equal(c.state_dir, "/var/lib/ringside");
    assert_int_equal(c.source, RS_SOURCE_STATIC);
    assert_int_equal(c.n_nodes, 1);
    assert_string_equal(c.nodes[0].node.id, "cache-a");
    assert_string_equal(c.nodes[0].node.address, "127.0.0.1:6379");
    assert_string_equal(c.nodes[0].node.zone, "a");
    assert_int_equal(c.nodes[0].node.weight, 1);
    assert_true(c.nodes[0].node.enabled);
    assert_true(c.nodes[0].healthy);
    assert_string_equal(c.consul.address, "http://127.0.0.1:8500");
    assert_string_equal(c.consul.kv_prefix, "ringside/sessions");
    assert_string_equal(c.consul.health_service, "redis-cache");
    assert_string_equal(c.consul.service, "");
    assert_string_equal(c.consul.token_file, "");
    assert_string_equal(c.consul.ca_file, "");
    assert_true(c.consul.stale);
    assert_int_equal(c.health_policy, RS_HEALTH_SKIP);
    assert_true(c.panic_threshold == 0.5);
    assert_int_equal(c.log_level, RS_LOG_INFO);
    assert_int_equal(c.log_format, RS_LOG_KV);
    rs_config_free(&c);
    assert_null(c.nodes);
    assert_int_equal(c.n_nodes, 0);
}

static void
assert_defaults(const rs_config *c) {
    assert_string_equal(c->ring_name, "default");
    assert_int_equal(c->params.algorithm, RS_ALG_KETAMA);
    assert_int_equal(c->params.hash, RS_HASH_FNV1A_64);
    assert_int_equal(c->params.replicas, 2);
    assert_string_equal(c->params.hash_tag, "");
    assert_int_equal(c->params.table_size, 65537);
    assert_int_equal(c->params.points_per_weight, 160);
    assert_int_equal(c->params.vnodes, 150);
    assert_int_equal(c->params.replica_factor, 2);
    assert_false(c->params.zone_aware_replicas);
    assert_string_equal(c->socket_path, "/run/ringside/ringside.sock");
    assert_int_equal(c->socket_mode, 0660);
    assert_string_equal(c->socket_group, "");
    assert_int_equal(c->n_allow_uids, 0);
    assert_int_equal(c->n_allow_gids, 0);
    assert_int_equal(c->max_clients, 10000);
    assert_int_equal(c->max_key_bytes, 8192);
    assert_int_equal(c->max_keys_per_request, 1000);
    assert_int_equal(c->max_request_bytes, 1024 * 1024);
    assert_int_equal(c->max_output_bytes, 8 * 1024 * 1024);
    assert_int_equal(c->idle_timeout_ms, 300000);
    assert_true(c->http_enabled);
    assert_string_equal(c->http_address, "127.0.0.1:9317");
    assert_string_equal(c->state_dir, "/var/lib/ringside");
    assert_int_equal(c->max_state_age_s, 86400);
    assert_int_equal(c->source, RS_SOURCE_STATIC);
    assert_string_equal(c->consul.address, "http://127.0.0.1:8500");
    assert_string_equal(c->consul.kv_prefix, "ringside/default");
    assert_string_equal(c->consul.service, "");
    assert_string_equal(c->consul.health_service, "");
    assert_string_equal(c->consul.token_file, "");
    assert_string_equal(c->consul.ca_file, "");
    assert_string_equal(c->consul.cert_file, "");
    assert_string_equal(c->consul.key_file, "");
    assert_true(c->consul.stale);
    assert_int_equal(c->consul.wait_ms, 300000);
    assert_int_equal(c->consul.max_stale_ms, 10000);
    assert_true(c->consul.max_removal_fraction == 0.5);
    assert_int_equal(c->health_policy, RS_HEALTH_SKIP);
    assert_true(c->panic_threshold == 0.5);
    assert_int_equal(c->log_level, RS_LOG_INFO);
    assert_int_equal(c->log_format, RS_LOG_KV);
}

static void
test_defaults(void **state) {
    (void)state;
    rs_config c;
    rs_error err;
    rs_config_init(&c);
    assert_defaults(&c);
    assert_null(c.nodes);
    assert_int_equal(c.n_nodes, 0);
    rs_config_free(&c);

    /* A file naming only its nodes gets every default, and node defaults. */
    assert_int_equal(parse_quoted("{" NODE "}", &c, &err), 0);
    assert_defaults(&c);
    assert_int_equal(c.n_nodes, 1);
    assert_string_equal(c.nodes[0].node.id, "127.0.0.1:6379");
    assert_string_equal(c.nodes[0].node.address, "127.0.0.1:6379");
    assert_string_equal(c.nodes[0].node.zone, "");
    assert_int_equal(c.nodes[0].node.weight, 1);
    assert_true(c.nodes[0].node.enabled);
    assert_true(c.nodes[0].healthy);
    rs_config_free(&c);
}

/* ---- errors, with their exact text --------------------------------------------------- */

typedef struct err_case {
    const char *json; /* single-quoted, see json_of */
    const char *msg;  /* exact, or a glob with '*' */
} err_case;

/* clang-format off */
static const err_case err_cases[] = {
    /* top level */
    {"[]", "top level must be an object, got an array"},
    {"42", "top level must be an object, got 42"},
    {"'x'", "top level must be an object, got \"x\""},
    {"null", "top level must be an object, got null"},
    {"{'lists':1}", "lists: unknown key"},
    {"{'Ring':{}}", "Ring: unknown key"},
    {"{'a b':1}", "\"a b\": unknown key"},
    {"{'ring.name':1}", "\"ring.name\": unknown key"},
    {"{'ring':{'\\u00e9':1}}", "ring.\"\\xc3\\xa9\": unknown key"},
    {"{'" X40 "x':1}", "\"" X40 "...\": unknown key"},
    {"{}", "membership.nodes: at least one node is required with source \"static\""},
    {"{'membership':{'nodes':[]}}",
     "membership.nodes: at least one node is required with source \"static\""},
    {"{'membership':{'nodes':[{'address':'h:1','enabled':false}]}}",
     "membership.nodes: at least one node must be enabled with source \"static\""},

    /* not JSON, or JSON this parser refuses */
    {"", "invalid JSON at line 1, column 0: *"},
    {"   ", "invalid JSON at line 1, column *: *"},
    {"{", "invalid JSON at line 1, column 1: *"},
    {"{} x", "invalid JSON at line 1, column 4: end of file expected*"},
    {"{'ring':{},'ring':{}}", "invalid JSON at line 1, column *: duplicate object key*"},
    {"{'ring':{'name':'a','name':'b'}}", "invalid JSON at line 1, column *: duplicate object key*"},
    {"{'membership':{'nodes':[{'address':'h:1','address':'h:2'}]}}",
     "invalid JSON at *: duplicate object key*"},
    {"{'ring':{'replicas':1e400}}", "invalid JSON at *: real number overflow*"},
    {"{'ring':{'replicas':99999999999999999999}}", "invalid JSON at *: too big integer*"},
    {"{'ring':{'replicas':-99999999999999999999}}", "invalid JSON at *: too big negative integer*"},
    {"{'a\\u0000b':1}", "invalid JSON at *: NUL byte in object key*"},
    {"{'ring':{'name':'\xff'}}", "invalid JSON at *: unable to decode byte 0xff*"},
    {"{'ring':{'name':'\xc3'}}", "invalid JSON at *: unable to decode byte 0xc3*"},
    {"{'ring':{'name':'a\tb'}}", "invalid JSON at *: control character 0x9*"},
    {"{'ring':{'name':'\\ud800'}}", "invalid JSON at *: invalid Unicode*"},
    {"{'ring':{replicas:2}}", "invalid JSON at *"},
    {"{'ring':{'replicas':2,}}", "invalid JSON at *"},
    {"{'ring':{'replicas':02}}", "invalid JSON at *"},
    {"{'ring':{'replicas':NaN}}", "invalid JSON at *"},
    {"/* c */ {}", "invalid JSON at *"},

    /* ring */
    {"{'ring':1}", "ring: must be an object, got 1"},
    {"{'ring':[]}", "ring: must be an object, got an array"},
    {"{'ring':{'nam':'x'}}", "ring.nam: unknown key"},
    {"{'ring':{'vnode':160}}", "ring.vnode: unknown key"},
    {"{'ring':{'points':160}}", "ring.points: unknown key"},
    {"{'ring':{'table_size':1}}",
     "ring.table_size: must be an integer between 2 and 4000000, got 1"},
    {"{'ring':{'table_size':4000037}}",
     "ring.table_size: must be an integer between 2 and 4000000, got 4000037"},
    {"{'ring':{'table_size':65536}}",
     "ring.table_size: must be a prime between 2 and 4000000 (e.g. 65537, 655373), got 65536"},
    {"{'ring':{'table_size':'65537'}}",
     "ring.table_size: must be an integer between 2 and 4000000, got \"65537\""},
    {"{'ring':{'table_size':65537.0}}",
     "ring.table_size: must be an integer between 2 and 4000000, got 65537.0"},
    {"{'ring':{'points_per_weight':0}}",
     "ring.points_per_weight: must be an integer between 1 and 10000, got 0"},
    {"{'ring':{'points_per_weight':10001}}",
     "ring.points_per_weight: must be an integer between 1 and 10000, got 10001"},
    {"{'ring':{'vnodes':0}}", "ring.vnodes: must be an integer between 1 and 10000, got 0"},
    {"{'ring':{'vnodes':-150}}", "ring.vnodes: must be an integer between 1 and 10000, got -150"},
    {"{'ring':{'replica_factor':0}}",
     "ring.replica_factor: must be an integer between 1 and 64, got 0"},
    {"{'ring':{'replica_factor':65}}",
     "ring.replica_factor: must be an integer between 1 and 64, got 65"},
    {"{'ring':{'zone_aware_replicas':1}}",
     "ring.zone_aware_replicas: must be true or false, got 1"},
    {"{'ring':{'zone_aware_replicas':'true'}}",
     "ring.zone_aware_replicas: must be true or false, got \"true\""},
    {"{'ring':{'algorithm':'hash_ring','hash':'crc32'}," NODE "}",
     "ring.hash: hash_ring always hashes keys with md5; leave hash unset (or \"md5\"), "
     "got \"crc32\""},
    {"{'ring':{'algorithm':'ketama_xxh3','hash':'md5'}," NODE "}",
     "ring.hash: ketama_xxh3 always hashes keys with xxh3; leave hash unset (or \"xxh3\"), "
     "got \"md5\""},
    {"{'ring':{'algorithm':'vnode_sha256','hash':'md5'}," NODE "}",
     "ring.hash: vnode_sha256 always hashes keys with SHA-256; leave hash unset, got \"md5\""},
    {"{'ring':{'name':''}}",
     "ring.name: must be 1 to 63 characters from A-Z a-z 0-9 _ . -, got \"\""},
    {"{'ring':{'name':'a/b'}}",
     "ring.name: must be 1 to 63 characters from A-Z a-z 0-9 _ . -, got \"a/b\""},
    {"{'ring':{'name':'a b'}}",
     "ring.name: must be 1 to 63 characters from A-Z a-z 0-9 _ . -, got \"a b\""},
    {"{'ring':{'name':'" X40 X10 X10 "xxxx'}}",
     "ring.name: must be 1 to 63 characters from A-Z a-z 0-9 _ . -, got \"" X40 "...\""},
    {"{'ring':{'name':5}}", "ring.name: must be a string, got 5"},
    {"{'ring':{'name':'a\\u0000b'}}", "ring.name: must not contain NUL bytes"},
    {"{'ring':{'algorithm':'foo'}}",
     "ring.algorithm: unknown algorithm \"foo\" (expected ketama, modula, maglev, rendezvous, ketama_xxh3, hash_ring, vnode_sha256)"},
    {"{'ring':{'algorithm':'Ketama'}}",
     "ring.algorithm: unknown algorithm \"Ketama\" (expected ketama, modula, maglev, rendezvous, ketama_xxh3, hash_ring, vnode_sha256)"},
    {"{'ring':{'algorithm':'" X40 X40 "'}}",
     "ring.algorithm: unknown algorithm \"" X40 "...\" (expected ketama, modula, maglev, rendezvous, ketama_xxh3, hash_ring, vnode_sha256)"},
    {"{'ring':{'algorithm':'a\\\"\\\\b\\n'}}",
     "ring.algorithm: unknown algorithm \"a\\\"\\\\b\\x0a\" (expected ketama, modula, maglev, rendezvous, ketama_xxh3, hash_ring, vnode_sha256)"},
    {"{'ring':{'algorithm':null}}", "ring.algorithm: must be a string, got null"},
    {"{'ring':{'hash':'foo'}}",
     "ring.hash: unknown hash \"foo\" (expected one_at_a_time, md5, crc16, crc32, crc32a, "
     "fnv1_64, fnv1a_64, fnv1_32, fnv1a_32, hsieh, murmur, jenkins, xxh3)"},
    {"{'ring':{'hash':['md5']}}", "ring.hash: must be a string, got an array"},
    {"{'ring':{'replicas':0}}", "ring.replicas: must be an integer between 1 and 16, got 0"},
    {"{'ring':{'replicas':17}}", "ring.replicas: must be an integer between 1 and 16, got 17"},
    {"{'ring':{'replicas':-1}}", "ring.replicas: must be an integer between 1 and 16, got -1"},
    {"{'ring':{'replicas':1.5}}", "ring.replicas: must be an integer between 1 and 16, got 1.5"},
    {"{'ring':{'replicas':2.0}}", "ring.replicas: must be an integer between 1 and 16, got 2.0"},
    {"{'ring':{'replicas':2e0}}", "ring.replicas: must be an integer between 1 and 16, got 2.0"},
    {"{'ring':{'replicas':1e10}}",
     "ring.replicas: must be an integer between 1 and 16, got 10000000000.0"},
    {"{'ring':{'replicas':'2'}}", "ring.replicas: must be an integer between 1 and 16, got \"2\""},
    {"{'ring':{'replicas':true}}", "ring.replicas: must be an integer between 1 and 16, got true"},
    {"{'ring':{'replicas':{}}}",
     "ring.replicas: must be an integer between 1 and 16, got an object"},
    {"{'ring':{'replicas':9223372036854775807}}",
     "ring.replicas: must be an integer between 1 and 16, got 9223372036854775807"},
    {"{'ring':{'replicas':-9223372036854775808}}",
     "ring.replicas: must be an integer between 1 and 16, got -9223372036854775808"},
    {"{'ring':{'replicas':4294967298}}",
     "ring.replicas: must be an integer between 1 and 16, got 4294967298"},
    {"{'ring':{'hash_tag':'{'}}",
     "ring.hash_tag: must be \"\" or two ASCII characters like \"{}\", got \"{\""},
    {"{'ring':{'hash_tag':'{}}'}}",
     "ring.hash_tag: must be \"\" or two ASCII characters like \"{}\", got \"{}}\""},
    {"{'ring':{'hash_tag':'{ '}}",
     "ring.hash_tag: must be \"\" or two ASCII characters like \"{}\", got \"{ \""},
    {"{'ring':{'hash_tag':'\\u00e9'}}",
     "ring.hash_tag: must be \"\" or two ASCII characters like \"{}\", got \"\\xc3\\xa9\""},
    {"{'ring':{'hash_tag':1}}", "ring.hash_tag: must be a string, got 1"},

    /* listen */
    {"{'listen':'x'}", "listen: must be an object, got \"x\""},
    {"{'listen':{'sockets':'x'}}", "listen.sockets: unknown key"},
    {"{'listen':{'socket':''}}", "listen.socket: must not be empty"},
    {"{'listen':{'socket':'run/x.sock'}}",
     "listen.socket: must be an absolute path, got \"run/x.sock\""},
    {"{'listen':{'socket':'/" X40 X40 X10 X10 "xxxxxxx'}}",
     "listen.socket: too long (108 bytes, max 107)"},
    {"{'listen':{'socket':5}}", "listen.socket: must be a string, got 5"},
    {"{'listen':{'socket':'/run/a\\u0000b'}}", "listen.socket: must not contain NUL bytes"},
    {"{'listen':{'mode':'0778'}}", "listen.mode: must be an octal string like \"0660\", got \"0778\""},
    {"{'listen':{'mode':'1777'}}", "listen.mode: must be an octal string like \"0660\", got \"1777\""},
    {"{'listen':{'mode':'rw'}}", "listen.mode: must be an octal string like \"0660\", got \"rw\""},
    {"{'listen':{'mode':''}}", "listen.mode: must be an octal string like \"0660\", got \"\""},
    {"{'listen':{'mode':'66'}}", "listen.mode: must be an octal string like \"0660\", got \"66\""},
    {"{'listen':{'mode':'00660'}}",
     "listen.mode: must be an octal string like \"0660\", got \"00660\""},
    {"{'listen':{'mode':' 660'}}",
     "listen.mode: must be an octal string like \"0660\", got \" 660\""},
    {"{'listen':{'mode':'-660'}}",
     "listen.mode: must be an octal string like \"0660\", got \"-660\""},
    {"{'listen':{'mode':'066\\u0000'}}",
     "listen.mode: must be an octal string like \"0660\", got \"066\\x00\""},
    {"{'listen':{'mode':432}}", "listen.mode: must be an octal string like \"0660\", got 432"},
    {"{'listen':{'group':'a b'}}",
     "listen.group: must be a group name without spaces or ':', got \"a b\""},
    {"{'listen':{'group':'a:b'}}",
     "listen.group: must be a group name without spaces or ':', got \"a:b\""},
    {"{'listen':{'group':'" X40 X10 X10 "xxxx'}}", "listen.group: too long (64 bytes, max 63)"},
    {"{'listen':{'group':0}}", "listen.group: must be a string, got 0"},
    {"{'listen':{'allow_uids':'0'}}", "listen.allow_uids: must be an array of integers, got \"0\""},
    {"{'listen':{'allow_uids':[1.5]}}",
     "listen.allow_uids[0]: must be an integer between 0 and 4294967294, got 1.5"},
    {"{'listen':{'allow_uids':[0,-1]}}",
     "listen.allow_uids[1]: must be an integer between 0 and 4294967294, got -1"},
    {"{'listen':{'allow_uids':[4294967295]}}",
     "listen.allow_uids[0]: must be an integer between 0 and 4294967294, got 4294967295"},
    {"{'listen':{'allow_gids':['wheel']}}",
     "listen.allow_gids[0]: must be an integer between 0 and 4294967294, got \"wheel\""},
    {"{'listen':{'allow_gids':[[0]]}}",
     "listen.allow_gids[0]: must be an integer between 0 and 4294967294, got an array"},
    {"{'listen':{'allow_gids':[" Z64 ",0]}}", "listen.allow_gids: too many entries (65, max 64)"},
    {"{'listen':{'max_clients':0}}",
     "listen.max_clients: must be an integer between 1 and 1000000, got 0"},
    {"{'listen':{'max_clients':1000001}}",
     "listen.max_clients: must be an integer between 1 and 1000000, got 1000001"},
    {"{'listen':{'max_clients':true}}",
     "listen.max_clients: must be an integer between 1 and 1000000, got true"},
    {"{'listen':{'max_key_bytes':0}}",
     "listen.max_key_bytes: must be an integer between 1 and 268435456, got 0"},
    {"{'listen':{'max_key_bytes':2000000}}",
     "listen.max_key_bytes: must not exceed listen.max_request_bytes (1048576), got 2000000"},
    {"{'listen':{'max_key_bytes':100,'max_request_bytes':99}}",
     "listen.max_key_bytes: must not exceed listen.max_request_bytes (99), got 100"},
    {"{'listen':{'max_keys_per_request':0}}",
     "listen.max_keys_per_request: must be an integer between 1 and 1000000, got 0"},
    {"{'listen':{'max_request_bytes':63}}",
     "listen.max_request_bytes: must be an integer between 64 and 268435456, got 63"},
    {"{'listen':{'max_request_bytes':'1MiB'}}",
     "listen.max_request_bytes: must be an integer between 64 and 268435456, got \"1MiB\""},
    {"{'listen':{'max_output_bytes':1023}}",
     "listen.max_output_bytes: must be an integer between 1024 and 1073741824, got 1023"},
    {"{'listen':{'max_output_bytes':1073741825}}",
     "listen.max_output_bytes: must be an integer between 1024 and 1073741824, got 1073741825"},
    {"{'listen':{'idle_timeout':'5'}}",
     "listen.idle_timeout: must be a duration like \"5s\" or \"250ms\" (units ms, s, m, h), "
     "got \"5\""},
    {"{'listen':{'idle_timeout':300}}",
     "listen.idle_timeout: must be a duration like \"5s\" or \"250ms\" (units ms, s, m, h), "
     "got 300"},
    {"{'listen':{'idle_timeout':'5s\\u0000'}}",
     "listen.idle_timeout: must be a duration like \"5s\" or \"250ms\" (units ms, s, m, h), "
     "got \"5s\\x00\""},
    {"{'listen':{'idle_timeout':'25h'}}",
     "listen.idle_timeout: must be 0 (never) or between 1s and 24h"},
    {"{'listen':{'idle_timeout':'500ms'}}",
     "listen.idle_timeout: must be 0 (never) or between 1s and 24h"},

    /* http */
    {"{'http':true}", "http: must be an object, got true"},
    {"{'http':{'port':9317}}", "http.port: unknown key"},
    {"{'http':{'enabled':'yes'}}", "http.enabled: must be true or false, got \"yes\""},
    {"{'http':{'enabled':1}}", "http.enabled: must be true or false, got 1"},
    {"{'http':{'address':'localhost'}}",
     "http.address: must be host:port like \"127.0.0.1:9317\", got \"localhost\""},
    {"{'http':{'address':':9317'}}",
     "http.address: must be host:port like \"127.0.0.1:9317\", got \":9317\""},
    {"{'http':{'address':'h:0'}}",
     "http.address: must be host:port like \"127.0.0.1:9317\", got \"h:0\""},
    {"{'http':{'address':'h:65536'}}",
     "http.address: must be host:port like \"127.0.0.1:9317\", got \"h:65536\""},
    {"{'http':{'address':'a b:80'}}",
     "http.address: must be host:port like \"127.0.0.1:9317\", got \"a b:80\""},
    {"{'http':{'address':'::1:80'}}",
     "http.address: must be host:port like \"127.0.0.1:9317\", got \"::1:80\""},
    {"{'http':{'address':'" X40 X10 X10 "x:80'}}", "http.address: too long (64 bytes, max 63)"},
    {"{'http':{'enabled':false,'address':'nope'}}",
     "http.address: must be host:port like \"127.0.0.1:9317\", got \"nope\""},

    /* state */
    {"{'state_dir':''}", "state_dir: must not be empty"},
    {"{'state_dir':'state'}", "state_dir: must be an absolute path, got \"state\""},
    {"{'state_dir':1}", "state_dir: must be a string, got 1"},
    {"{'state_dir':'/" X40 X40 X40 X40 X40 X40 X10 "xxxxx'}",
     "state_dir: too long (256 bytes, max 255)"},
    {"{'max_state_age':'0'}", "max_state_age: must be between 1s and 8760h"},
    {"{'max_state_age':'8761h'}", "max_state_age: must be between 1s and 8760h"},
    {"{'max_state_age':'1500ms'}", "max_state_age: must be a whole number of seconds"},
    {"{'max_state_age':86400}",
     "max_state_age: must be a duration like \"5s\" or \"250ms\" (units ms, s, m, h), got 86400"},
    {"{'max_state_age':'1d'}",
     "max_state_age: must be a duration like \"5s\" or \"250ms\" (units ms, s, m, h), "
     "got \"1d\""},

    /* membership */
    {"{'membership':[]}", "membership: must be an object, got an array"},
    {"{'membership':{'node':[]}}", "membership.node: unknown key"},
    {"{'membership':{'source':'dns'}}",
     "membership.source: unknown source \"dns\" (expected static, consul-kv, consul-service)"},
    {"{'membership':{'source':'consul_kv'}}",
     "membership.source: unknown source \"consul_kv\" (expected static, consul-kv, "
     "consul-service)"},
    {"{'membership':{'source':1}}", "membership.source: must be a string, got 1"},
    {"{'membership':{'nodes':{}}}", "membership.nodes: must be an array, got an object"},
    {"{'membership':{'nodes':null}}", "membership.nodes: must be an array, got null"},
    {"{'membership':{'nodes':[1]}}", "membership.nodes[0]: must be an object, got 1"},
    {"{'membership':{'nodes':[{'address':'h:1','port':1}]}}",
     "membership.nodes[0].port: unknown key"},
    {"{'membership':{'nodes':[{'id':'a'}]}}", "membership.nodes[0].address: required"},
    {"{'membership':{'nodes':[{'address':'h:1'},{'address':'h:2','weight':-1}]}}",
     "membership.nodes[1].weight: must be an integer between 1 and 10000, got -1"},
    {"{'membership':{'nodes':[{'address':'h:1'},{'address':'h:2'},"
     "{'address':'h:3','weight':-1}]}}",
     "membership.nodes[2].weight: must be an integer between 1 and 10000, got -1"},
    {"{'membership':{'nodes':[{'address':'h:1','weight':0}]}}",
     "membership.nodes[0].weight: must be an integer between 1 and 10000, got 0"},
    {"{'membership':{'nodes':[{'address':'h:1','weight':10001}]}}",
     "membership.nodes[0].weight: must be an integer between 1 and 10000, got 10001"},
    {"{'membership':{'nodes':[{'address':'h:1','weight':1.0}]}}",
     "membership.nodes[0].weight: must be an integer between 1 and 10000, got 1.0"},
    {"{'membership':{'nodes':[{'address':'h:1','weight':'1'}]}}",
     "membership.nodes[0].weight: must be an integer between 1 and 10000, got \"1\""},
    {"{'membership':{'nodes':[{'address':'h:1','weight':null}]}}",
     "membership.nodes[0].weight: must be an integer between 1 and 10000, got null"},
    {"{'membership':{'nodes':[{'address':'nohost'}]}}",
     "membership.nodes[0]: address \"nohost\": must be host:port"},
    {"{'membership':{'nodes':[{'address':':80'}]}}",
     "membership.nodes[0]: address \":80\": host is empty"},
    {"{'membership':{'nodes':[{'address':'h:0'}]}}",
     "membership.nodes[0]: address \"h:0\": port must be a number between 1 and 65535"},
    {"{'membership':{'nodes':[{'id':'x','address':'::1:80'}]}}",
     "membership.nodes[0]: address \"::1:80\": IPv6 host must be in brackets: [addr]:port"},
    {"{'membership':{'nodes':[{'address':'a b:80'}]}}",
     "membership.nodes[0]: address must not contain spaces or control characters"},
    {"{'membership':{'nodes':[{'address':''}]}}", "membership.nodes[0]: address must not be empty"},
    {"{'membership':{'nodes':[{'address':5}]}}",
     "membership.nodes[0].address: must be a string, got 5"},
    {"{'membership':{'nodes':[{'address':'h:1\\u0000'}]}}",
     "membership.nodes[0].address: must not contain NUL bytes"},
    {"{'membership':{'nodes':[{'id':'','address':'h:1'}]}}",
     "membership.nodes[0]: id must not be empty"},
    {"{'membership':{'nodes':[{'id':'a b','address':'h:1'}]}}",
     "membership.nodes[0]: id must not contain spaces or control characters"},
    {"{'membership':{'nodes':[{'id':'" X40 X40 X40 X40 X40 "x','address':'h:1'}]}}",
     "membership.nodes[0]: id is too long (max 200 bytes)"},
    {"{'membership':{'nodes':[{'id':5,'address':'h:1'}]}}",
     "membership.nodes[0].id: must be a string, got 5"},
    {"{'membership':{'nodes':[{'id':'a\\u0000','address':'h:1'}]}}",
     "membership.nodes[0].id: must not contain NUL bytes"},
    {"{'membership':{'nodes':[{'address':'h:1','zone':'" X40 X10 X10 "xxxxx'}]}}",
     "membership.nodes[0]: zone is too long (max 64 bytes)"},
    {"{'membership':{'nodes':[{'address':'h:1','zone':1}]}}",
     "membership.nodes[0].zone: must be a string, got 1"},
    {"{'membership':{'nodes':[{'address':'h:1','enabled':'no'}]}}",
     "membership.nodes[0].enabled: must be true or false, got \"no\""},
    {"{'membership':{'nodes':[{'address':'h:1','healthy':0}]}}",
     "membership.nodes[0].healthy: must be true or false, got 0"},
    {"{'membership':{'nodes':[{'address':'" X40 X40 X40 X40 X40 "x:80'}]}}",
     "membership.nodes[0].id: required here: the address is too long to serve as the id "
     "(max 200 bytes)"},
    {"{'membership':{'nodes':[{'id':'a','address':'h:1'},{'id':'b','address':'h:2'},"
     "{'id':'a','address':'h:3'}]}}",
     "membership.nodes[2]: duplicate id \"a\" (also membership.nodes[0])"},
    {"{'membership':{'nodes':[{'address':'h:1'},{'address':'h:1'}]}}",
     "membership.nodes[1]: duplicate id \"h:1\" (also membership.nodes[0])"},
    {"{'membership':{'nodes':[{'address':'h:11211'},{'id':'h','address':'x:1'}]}}",
     "membership.nodes[1]: duplicate id \"h\" (also membership.nodes[0])"},
    {"{'membership':{'nodes':[{'id':'b','address':'h:1'},{'id':'a','address':'h:2'},"
     "{'id':'a','address':'h:3'},{'id':'b','address':'h:4'}]}}",
     "membership.nodes[2]: duplicate id \"a\" (also membership.nodes[1])"},

    /* membership.consul */
    {"{'membership':{'consul':'x'}}", "membership.consul: must be an object, got \"x\""},
    {"{'membership':{'consul':{'tokenfile':''}}}", "membership.consul.tokenfile: unknown key"},
    {"{'membership':{'consul':{'address':'ftp://x'}}}",
     "membership.consul.address: must be a URL like \"http://127.0.0.1:8500\" (http or https, "
     "no path), got \"ftp://x\""},
    {"{'membership':{'consul':{'address':'http://'}}}",
     "membership.consul.address: must be a URL like \"http://127.0.0.1:8500\" (http or https, "
     "no path), got \"http://\""},
    {"{'membership':{'consul':{'address':'127.0.0.1:8500'}}}",
     "membership.consul.address: must be a URL like \"http://127.0.0.1:8500\" (http or https, "
     "no path), got \"127.0.0.1:8500\""},
    {"{'membership':{'consul':{'address':'http://h:8500/v1'}}}",
     "membership.consul.address: must be a URL like \"http://127.0.0.1:8500\" (http or https, "
     "no path), got \"http://h:8500/v1\""},
    {"{'membership':{'consul':{'address':'http://a b'}}}",
     "membership.consul.address: must be a URL like \"http://127.0.0.1:8500\" (http or https, "
     "no path), got \"http://a b\""},
    {"{'membership':{'consul':{'address':'http://" X40 X40 X40 X40 X40 X40 "xxxxxxxxx'}}}",
     "membership.consul.address: too long (256 bytes, max 255)"},
    {"{'membership':{'consul':{'kv_prefix':''}}}",
     "membership.consul.kv_prefix: must be a KV path like \"ringside/sessions\" (no leading '/', "
     "spaces, '?', '#' or '%'), got \"\""},
    {"{'membership':{'consul':{'kv_prefix':'/ringside'}}}",
     "membership.consul.kv_prefix: must be a KV path like \"ringside/sessions\" (no leading '/', "
     "spaces, '?', '#' or '%'), got \"/ringside\""},
    {"{'membership':{'consul':{'kv_prefix':'/'}}}", "membership.consul.kv_prefix: must be a KV*"},
    {"{'membership':{'consul':{'kv_prefix':'a//'}}}", "membership.consul.kv_prefix: must be a KV*"},
    {"{'membership':{'consul':{'kv_prefix':'a b'}}}", "membership.consul.kv_prefix: must be a KV*"},
    {"{'membership':{'consul':{'kv_prefix':'a?b'}}}", "membership.consul.kv_prefix: must be a KV*"},
    {"{'membership':{'consul':{'kv_prefix':'a%20'}}}",
     "membership.consul.kv_prefix: must be a KV*"},
    {"{'membership':{'consul':{'service':'a/b'}}}",
     "membership.consul.service: must be a service name from A-Z a-z 0-9 _ . -, got \"a/b\""},
    {"{'membership':{'consul':{'health_service':'x y'}}}",
     "membership.consul.health_service: must be a service name from A-Z a-z 0-9 _ . -, "
     "got \"x y\""},
    {"{'membership':{'consul':{'service':'" X40 X40 X40 "xxxxxxxx'}}}",
     "membership.consul.service: too long (128 bytes, max 127)"},
    {"{'membership':{'consul':{'token_file':'token'}}}",
     "membership.consul.token_file: must be an absolute path, got \"token\""},
    {"{'membership':{'consul':{'ca_file':5}}}", "membership.consul.ca_file: must be a string, got 5"},
    {"{'membership':{'consul':{'cert_file':'/c'}}}",
     "membership.consul.key_file: required with cert_file"},
    {"{'membership':{'consul':{'key_file':'/k'}}}",
     "membership.consul.cert_file: required with key_file"},
    {"{'membership':{'consul':{'stale':'true'}}}",
     "membership.consul.stale: must be true or false, got \"true\""},
    {"{'membership':{'consul':{'wait':'0'}}}", "membership.consul.wait: must be between 1s and 10m"},
    {"{'membership':{'consul':{'wait':'500ms'}}}",
     "membership.consul.wait: must be between 1s and 10m"},
    {"{'membership':{'consul':{'wait':'10m1ms'}}}",
     "membership.consul.wait: must be between 1s and 10m"},
    {"{'membership':{'consul':{'wait':'11m'}}}",
     "membership.consul.wait: must be between 1s and 10m"},
    {"{'membership':{'consul':{'wait':5}}}",
     "membership.consul.wait: must be a duration like \"5s\" or \"250ms\" (units ms, s, m, h), "
     "got 5"},
    {"{'membership':{'consul':{'max_stale':'0'}}}",
     "membership.consul.max_stale: must be between 1s and 1h"},
    {"{'membership':{'consul':{'max_removal_fraction':0}}}",
     "membership.consul.max_removal_fraction: must be a number greater than 0 and at most 1, "
     "got 0"},
    {"{'membership':{'consul':{'max_removal_fraction':1.5}}}",
     "membership.consul.max_removal_fraction: must be a number greater than 0 and at most 1, "
     "got 1.5"},
    {"{'membership':{'consul':{'max_removal_fraction':-0.1}}}",
     "membership.consul.max_removal_fraction: must be a number greater than 0 and at most 1, "
     "got -0.1"},
    {"{'membership':{'consul':{'max_removal_fraction':'0.5'}}}",
     "membership.consul.max_removal_fraction: must be a number greater than 0 and at most 1, "
     "got \"0.5\""},
    {"{'membership':{'source':'consul-service'}}",
     "membership.consul.service: required with source \"consul-service\""},

    /* health, log */
    {"{'health':{'mode':1}}", "health.mode: unknown key"},
    {"{'health':{'policy':'drop'}}", "health.policy: unknown policy \"drop\" (expected skip, keep)"},
    {"{'health':{'panic_threshold':-0.1}}",
     "health.panic_threshold: must be a number at least 0 and at most 1, got -0.1"},
    {"{'health':{'panic_threshold':2}}",
     "health.panic_threshold: must be a number at least 0 and at most 1, got 2"},
    {"{'health':{'panic_threshold':1.0000000000000002}}",
     "health.panic_threshold: must be a number at least 0 and at most 1, got 1.0000000000000002"},
    {"{'health':{'panic_threshold':true}}",
     "health.panic_threshold: must be a number at least 0 and at most 1, got true"},
    {"{'log':null}", "log: must be an object, got null"},
    {"{'log':{'file':'x'}}", "log.file: unknown key"},
    {"{'log':{'level':'trace'}}",
     "log.level: unknown level \"trace\" (expected debug, info, warn, error)"},
    {"{'log':{'level':'INFO'}}",
     "log.level: unknown level \"INFO\" (expected debug, info, warn, error)"},
    {"{'log':{'format':'text'}}", "log.format: unknown format \"text\" (expected kv, json)"},

    /* The first mistake in file order is the one reported. */
    {"{'log':{'level':'x'},'ring':{'replicas':0}}",
     "log.level: unknown level \"x\" (expected debug, info, warn, error)"},
    {"{'ring':{'replicas':0},'log':{'level':'x'}}",
     "ring.replicas: must be an integer between 1 and 16, got 0"},
};
/* clang-format on */

static void
test_errors(void **state) {
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof(err_cases) / sizeof(err_cases[0]); i++) {
        const err_case *tc = &err_cases[i];
        rs_config c;
        rs_error err = {{0}};
        int rc = parse_quoted(tc->json, &c, &err);
        if (rc != -EINVAL || !glob(tc->msg, err.msg)) {
            print_error("case %zu %s\n  rc %d\n  got  %s\n  want %s\n", i, tc->json, rc, err.msg,
                        tc->msg);
            failures++;
        } else {
            assert_clean_failure(&c, &err);
        }
        rs_config_free(&c);
    }
    assert_int_equal(failures, 0);
}

/* ---- accepted values ------------------------------------------------------------------ */

typedef struct ok_case {
    const char *json;                    /* single-quoted, see json_of */
    uint64_t (*num)(const rs_config *c); /* NULL, or a number to compare with want */
    uint64_t want;
    const char *(*str)(const rs_config *c); /* NULL, or a string to compare with want_str */
    const char *want_str;
} ok_case;

#define NUM(name, expr)                                                                            \
    static uint64_t num_##name(const rs_config *c) {                                               \
        return (uint64_t)(expr);                                                                   \
    }
#define STR(name, expr)                                                                            \
    static const char *str_##name(const rs_config *c) {                                            \
        return (expr);                                                                             \
    }

/* clang-format off */
NUM(algorithm, c->params.algorithm)
NUM(hash, c->params.hash)
NUM(replicas, c->params.replicas)
NUM(table_size, c->params.table_size)
NUM(points_per_weight, c->params.points_per_weight)
NUM(vnodes, c->params.vnodes)
NUM(replica_factor, c->params.replica_factor)
NUM(zone_aware, c->params.zone_aware_replicas)
NUM(mode, c->socket_mode)
NUM(n_uids, c->n_allow_uids)
NUM(uid1, c->allow_uids[1])
NUM(n_gids, c->n_allow_gids)
NUM(gid63, c->allow_gids[63])
NUM(max_clients, c->max_clients)
NUM(max_key_bytes, c->max_key_bytes)
NUM(max_keys, c->max_keys_per_request)
NUM(max_request, c->max_request_bytes)
NUM(max_output, c->max_output_bytes)
NUM(idle, c->idle_timeout_ms)
NUM(http_enabled, c->http_enabled)
NUM(state_age, c->max_state_age_s)
NUM(source, c->source)
NUM(n_nodes, c->n_nodes)
NUM(weight0, c->nodes[0].node.weight)
NUM(enabled1, c->nodes[1].node.enabled)
NUM(healthy0, c->nodes[0].healthy)
NUM(stale, c->consul.stale)
NUM(wait, c->consul.wait_ms)
NUM(max_stale, c->consul.max_stale_ms)
NUM(removal_x1000, c->consul.max_removal_fraction * 1000)
NUM(policy, c->health_policy)
NUM(panic_x1000, c->panic_threshold * 1000)
NUM(level, c->log_level)
NUM(format, c->log_format)
STR(name, c->ring_name)
STR(hash_tag, c->params.hash_tag)
STR(socket, c->socket_path)
STR(group, c->socket_group)
STR(http_address, c->http_address)
STR(state_dir, c->state_dir)
STR(id0, c->nodes[0].node.id)
STR(id1, c->nodes[1].node.id)
STR(zone0, c->nodes[0].node.zone)
STR(consul_address, c->consul.address)
STR(kv_prefix, c->consul.kv_prefix)
STR(service, c->consul.service)
STR(token_file, c->consul.token_file)
STR(cert_file, c->consul.cert_file)

#define OKN(json, getter, value) {(json), num_##getter, (value), NULL, NULL}
#define OKS(json, getter, value) {(json), NULL, 0, str_##getter, (value)}

static const ok_case ok_cases[] = {
    OKS("{'ring':{'name':'a.b-c_D9'}," NODE "}", name, "a.b-c_D9"),
    OKS("{'ring':{'name':'" X40 X10 X10 "xxx'}," NODE "}", name, X40 X10 X10 "xxx"),
    OKN("{'ring':{'algorithm':'modula'}," NODE "}", algorithm, RS_ALG_MODULA),
    OKN("{'ring':{'algorithm':'maglev'}," NODE "}", algorithm, RS_ALG_MAGLEV),
    OKN("{'ring':{'algorithm':'rendezvous'}," NODE "}", algorithm, RS_ALG_RENDEZVOUS),
    OKN("{'ring':{'algorithm':'ketama_xxh3'}," NODE "}", algorithm, RS_ALG_KETAMA_XXH3),
    OKN("{'ring':{'algorithm':'hash_ring'}," NODE "}", algorithm, RS_ALG_HASH_RING),
    OKN("{'ring':{'algorithm':'vnode_sha256'}," NODE "}", algorithm, RS_ALG_VNODE_SHA256),
    OKN("{'ring':{'algorithm':'hash_ring','hash':'md5'}," NODE "}", hash, RS_HASH_MD5),
    OKN("{'ring':{'algorithm':'ketama_xxh3','hash':'xxh3'}," NODE "}", hash, RS_HASH_XXH3),
    OKN("{'ring':{'table_size':2}," NODE "}", table_size, 2),
    OKN("{'ring':{'table_size':1009}," NODE "}", table_size, 1009),
    OKN("{'ring':{'table_size':3999971}," NODE "}", table_size, 3999971),
    OKN("{'ring':{'points_per_weight':1}," NODE "}", points_per_weight, 1),
    OKN("{'ring':{'points_per_weight':10000}," NODE "}", points_per_weight, 10000),
    OKN("{'ring':{'vnodes':1}," NODE "}", vnodes, 1),
    OKN("{'ring':{'vnodes':10000}," NODE "}", vnodes, 10000),
    OKN("{'ring':{'replica_factor':1}," NODE "}", replica_factor, 1),
    OKN("{'ring':{'replica_factor':64}," NODE "}", replica_factor, 64),
    OKN("{'ring':{'zone_aware_replicas':true}," NODE "}", zone_aware, 1),
    OKN("{'ring':{'zone_aware_replicas':false}," NODE "}", zone_aware, 0),
    OKN("{'ring':{'hash':'xxh3'}," NODE "}", hash, RS_HASH_XXH3),
    OKN("{'ring':{'hash':'one_at_a_time'}," NODE "}", hash, RS_HASH_ONE_AT_A_TIME),
    OKN("{'ring':{'replicas':1}," NODE "}", replicas, 1),
    OKN("{'ring':{'replicas':16}," NODE "}", replicas, 16),
    OKS("{'ring':{'hash_tag':''}," NODE "}", hash_tag, ""),
    OKS("{'ring':{'hash_tag':'{}'}," NODE "}", hash_tag, "{}"),
    OKS("{'ring':{'hash_tag':'$$'}," NODE "}", hash_tag, "$$"),
    OKN("{'listen':{'mode':'660'}," NODE "}", mode, 0660),
    OKN("{'listen':{'mode':'0600'}," NODE "}", mode, 0600),
    OKN("{'listen':{'mode':'0777'}," NODE "}", mode, 0777),
    OKN("{'listen':{'mode':'0000'}," NODE "}", mode, 0),
    OKS("{'listen':{'socket':'/" X40 X40 X10 X10 "xxxxxx'}," NODE "}", socket,
        "/" X40 X40 X10 X10 "xxxxxx"),
    OKS("{'listen':{'group':'cache-users'}," NODE "}", group, "cache-users"),
    OKN("{'listen':{'allow_uids':[0,4294967294]}," NODE "}", n_uids, 2),
    OKN("{'listen':{'allow_uids':[0,4294967294]}," NODE "}", uid1, 4294967294u),
    OKN("{'listen':{'allow_gids':[" Z64 "]}," NODE "}", n_gids, 64),
    OKN("{'listen':{'allow_gids':[" Z8 "," Z8 "," Z8 "," Z8 "," Z8 "," Z8 "," Z8 ",0,0,0,0,0,"
        "0,0,7]}," NODE "}", gid63, 7),
    OKN("{'listen':{'max_clients':1}," NODE "}", max_clients, 1),
    OKN("{'listen':{'max_clients':1000000}," NODE "}", max_clients, 1000000),
    OKN("{'listen':{'max_key_bytes':1048576}," NODE "}", max_key_bytes, 1048576),
    OKN("{'listen':{'max_keys_per_request':1}," NODE "}", max_keys, 1),
    OKN("{'listen':{'max_request_bytes':268435456}," NODE "}", max_request, 268435456),
    OKN("{'listen':{'max_output_bytes':1024}," NODE "}", max_output, 1024),
    OKN("{'listen':{'idle_timeout':'0'}," NODE "}", idle, 0),
    OKN("{'listen':{'idle_timeout':'1s'}," NODE "}", idle, 1000),
    OKN("{'listen':{'idle_timeout':'1m'}," NODE "}", idle, 60000),
    OKN("{'listen':{'idle_timeout':'1h30m'}," NODE "}", idle, 5400000),
    OKN("{'listen':{'idle_timeout':'24h'}," NODE "}", idle, 86400000),
    OKN("{'http':{'enabled':false}," NODE "}", http_enabled, 0),
    OKS("{'http':{'address':'[::1]:9317'}," NODE "}", http_address, "[::1]:9317"),
    OKS("{'http':{'address':'metrics.local:80'}," NODE "}", http_address, "metrics.local:80"),
    OKS("{'state_dir':'/tmp/s'," NODE "}", state_dir, "/tmp/s"),
    OKN("{'max_state_age':'1h'," NODE "}", state_age, 3600),
    OKN("{'max_state_age':'1s'," NODE "}", state_age, 1),
    OKN("{'max_state_age':'2000ms'," NODE "}", state_age, 2),
    OKN("{'max_state_age':'8760h'," NODE "}", state_age, 31536000),
    /* Consul sources need no nodes. */
    OKN("{'membership':{'source':'consul-kv'}}", source, RS_SOURCE_CONSUL_KV),
    OKN("{'membership':{'source':'consul-kv','nodes':[]}}", n_nodes, 0),
    OKN("{'membership':{'source':'consul-service','consul':{'service':'redis'}}}", source,
        RS_SOURCE_CONSUL_SERVICE),
    OKS("{'membership':{'source':'consul-service','consul':{'service':'redis-cache.v2'}}}",
        service, "redis-cache.v2"),
    OKN("{'membership':{'source':'consul-kv','nodes':[{'address':'h:1','enabled':false}]}}",
        n_nodes, 1),
    /* Nodes. */
    OKN("{'membership':{'nodes':[{'address':'h:1','weight':10000}]}}", weight0, 10000),
    OKN("{'membership':{'nodes':[{'address':'h:1','healthy':false}]}}", healthy0, 0),
    OKN("{'membership':{'nodes':[{'address':'h:1'},{'address':'h:2','enabled':false}]}}",
        enabled1, 0),
    OKS("{'membership':{'nodes':[{'address':'h:1','zone':'eu-1a'}]}}", zone0, "eu-1a"),
    OKS("{'membership':{'nodes':[{'address':'127.0.0.1:11211'}]}}", id0, "127.0.0.1"),
    OKS("{'membership':{'nodes':[{'address':'127.0.0.1:6379'}]}}", id0, "127.0.0.1:6379"),
    OKS("{'membership':{'nodes':[{'address':'[::1]:11211'}]}}", id0, "[::1]"),
    OKS("{'membership':{'nodes':[{'address':'h:1'},{'id':'h:2','address':'h:1'}]}}", id1, "h:2"),
    OKS("{'membership':{'nodes':[{'id':'\\u00e9','address':'h:1'}]}}", id0, "\xc3\xa9"),
    OKS("{'membership':{'nodes':[{'id':'" X40 X40 X40 X40 X40 "','address':'h:1'}]}}", id0,
        X40 X40 X40 X40 X40),
    /* Consul. */
    OKS("{'membership':{'consul':{'address':'https://consul.example:8501'},"
        "'nodes':[{'address':'h:1'}]}}",
        consul_address, "https://consul.example:8501"),
    OKS("{'ring':{'name':'sessions'}," NODE "}", kv_prefix, "ringside/sessions"),
    OKS("{" NODE ",'ring':{'name':'sessions'}}", kv_prefix, "ringside/sessions"),
    OKS("{'membership':{'consul':{'kv_prefix':'a/b/'},'nodes':[{'address':'h:1'}]}}", kv_prefix,
        "a/b"),
    OKS("{'membership':{'consul':{'kv_prefix':'a'},'nodes':[{'address':'h:1'}]},"
        "'ring':{'name':'x'}}", kv_prefix, "a"),
    OKS("{'membership':{'consul':{'token_file':'/etc/t'}," "'nodes':[{'address':'h:1'}]}}",
        token_file, "/etc/t"),
    OKS("{'membership':{'consul':{'cert_file':'/c','key_file':'/k'}," "'nodes':[{'address':'h:1'}]}}",
        cert_file, "/c"),
    OKN("{'membership':{'consul':{'stale':false}," "'nodes':[{'address':'h:1'}]}}", stale, 0),
    OKN("{'membership':{'consul':{'wait':'1s'}," "'nodes':[{'address':'h:1'}]}}", wait, 1000),
    OKN("{'membership':{'consul':{'wait':'10m'}," "'nodes':[{'address':'h:1'}]}}", wait, 600000),
    OKN("{'membership':{'consul':{'max_stale':'1h'}," "'nodes':[{'address':'h:1'}]}}", max_stale,
        3600000),
    OKN("{'membership':{'consul':{'max_removal_fraction':1}," "'nodes':[{'address':'h:1'}]}}",
        removal_x1000, 1000),
    OKN("{'membership':{'consul':{'max_removal_fraction':0.25}," "'nodes':[{'address':'h:1'}]}}",
        removal_x1000, 250),
    /* health, log */
    OKN("{'health':{'policy':'keep'}," NODE "}", policy, RS_HEALTH_KEEP),
    OKN("{'health':{'panic_threshold':0}," NODE "}", panic_x1000, 0),
    OKN("{'health':{'panic_threshold':1}," NODE "}", panic_x1000, 1000),
    OKN("{'health':{'panic_threshold':0.75}," NODE "}", panic_x1000, 750),
    OKN("{'health':{'panic_threshold':-0.0}," NODE "}", panic_x1000, 0),
    OKN("{'log':{'level':'debug'}," NODE "}", level, RS_LOG_DEBUG),
    OKN("{'log':{'level':'error'}," NODE "}", level, RS_LOG_ERROR),
    OKN("{'log':{'format':'json'}," NODE "}", format, RS_LOG_JSON),
    /* Whitespace and empty sections are fine. */
    OKN(" \n\t{ 'ring' : { } , 'listen':{}, 'http':{}, 'health':{}, 'log':{}, " NODE " }\r\n ",
        replicas, 2),
};
/* clang-format on */

static void
test_accepted(void **state) {
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
        const ok_case *tc = &ok_cases[i];
        rs_config c;
        rs_error err = {{0}};
        int rc = parse_quoted(tc->json, &c, &err);
        if (rc != 0) {
            print_error("case %zu %s\n  rc %d: %s\n", i, tc->json, rc, err.msg);
            failures++;
            continue;
        }
        if (tc->num != NULL && tc->num(&c) != tc->want) {
            print_error("case %zu %s\n  got %llu, want %llu\n", i, tc->json,
                        (unsigned long long)tc->num(&c), (unsigned long long)tc->want);
            failures++;
        }
        if (tc->str != NULL && strcmp(tc->str(&c), tc->want_str) != 0) {
            print_error("case %zu %s\n  got \"%s\", want \"%s\"\n", i, tc->json, tc->str(&c),
                        tc->want_str);
            failures++;
        }
        rs_config_free(&c);
    }
    assert_int_equal(failures, 0);
}

/* ---- durations ------------------------------------------------------------------------- */

typedef struct duration_case {
    const char *in;
    int rc;
    uint64_t ms;
} duration_case;

static const duration_case duration_cases[] = {
    {"0", 0, 0},
    {"0s", 0, 0},
    {"0ms", 0, 0},
    {"250ms", 0, 250},
    {"5s", 0, 5000},
    {"10m", 0, 600000},
    {"24h", 0, 86400000},
    {"1h30m", 0, 5400000},
    {"1m30s", 0, 90000},
    {"1s500ms", 0, 1500},
    {"007s", 0, 7000},
    {"18446744073709551615ms", 0, UINT64_MAX},
    {"", -EINVAL, 0},
    {"5", -EINVAL, 0},
    {"00", -EINVAL, 0},
    {"s", -EINVAL, 0},
    {"ms", -EINVAL, 0},
    {"5x", -EINVAL, 0},
    {"5S", -EINVAL, 0},
    {"5sec", -EINVAL, 0},
    {"5mss", -EINVAL, 0},
    {"-5s", -EINVAL, 0},
    {"+5s", -EINVAL, 0},
    {"5 s", -EINVAL, 0},
    {" 5s", -EINVAL, 0},
    {"5s ", -EINVAL, 0},
    {"1.5s", -EINVAL, 0},
    {"5s5", -EINVAL, 0},
    {"1d", -EINVAL, 0},
    {"18446744073709551616ms", -EINVAL, 0},
    {"18446744073709552s", -EINVAL, 0},
    {"5124095576030432h", -EINVAL, 0},
    {"18446744073709551615ms1ms", -EINVAL, 0},
    {"99999999999999999999999999h", -EINVAL, 0},
};

static void
test_durations(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(duration_cases) / sizeof(duration_cases[0]); i++) {
        const duration_case *tc = &duration_cases[i];
        uint64_t ms = 12345;
        int rc = rs_duration_parse(tc->in, &ms);
        if (rc != tc->rc || (rc == 0 && ms != tc->ms) || (rc != 0 && ms != 12345)) {
            print_error("duration \"%s\": rc %d ms %llu\n", tc->in, rc, (unsigned long long)ms);
        }
        assert_int_equal(rc, tc->rc);
        assert_true(rc == 0 ? ms == tc->ms : ms == 12345);
    }
    uint64_t ms;
    assert_int_equal(rs_duration_parse(NULL, &ms), -EINVAL);
}

/* ---- hostile input ----------------------------------------------------------------------- */

/* Every proper prefix of a valid document fails cleanly. */
static void
check_prefixes(const char *doc, size_t len) {
    while (len > 0 && (doc[len - 1] == '\n' || doc[len - 1] == ' ')) {
        len--;
    }
    rs_config c;
    rs_error err;
    assert_int_equal(parse_exact(doc, len, &c, &err), 0);
    rs_config_free(&c);
    for (size_t n = 0; n < len; n++) {
        memset(&c, 0xa5, sizeof(c));
        int rc = parse_exact(doc, n, &c, &err);
        if (rc != -EINVAL) {
            print_error("prefix of %zu bytes: rc %d\n", n, rc);
        }
        assert_int_equal(rc, -EINVAL);
        assert_true(glob("invalid JSON at line *, column *: *", err.msg));
        assert_clean_failure(&c, &err);
    }
}

static void
test_truncated(void **state) {
    (void)state;
    check_prefixes(spec_example, strlen(spec_example));
    char *json = json_of("{'ring':{'name':'x','hash_tag':'{}'},'membership':{'nodes':["
                         "{'id':'a','address':'[::1]:1','weight':3,'zone':'z','enabled':true,"
                         "'healthy':false},{'address':'h:11211'}]},'health':{'panic_threshold':"
                         "0.25},'listen':{'allow_uids':[1,2]}}");
    check_prefixes(json, strlen(json));
    free(json);
}

static uint64_t
xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random bytes, random JSON-ish tokens, and a valid document with bytes flipped: nothing
 * crashes or leaks, and every failure has a message. */
static void
test_garbage(void **state) {
    (void)state;
    static const char *const tokens[] = {"{",           "}",         "[",
                                         "]",           ",",         ":",
                                         "\"ring\"",    "\"nodes\"", "\"membership\"",
                                         "\"address\"", "\"h:1\"",   "1",
                                         "-1",          "1.5",       "true",
                                         "null",        "\"\"",      " ",
                                         "\\u0000",     "\""};
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    char buf[2048];
    size_t ok = 0;
    for (int round = 0; round < 30000; round++) {
        size_t len = 0;
        int kind = round % 3;
        if (kind == 0) {
            len = xorshift(&seed) % 512;
            for (size_t i = 0; i < len; i++) {
                buf[i] = (char)xorshift(&seed);
            }
        } else if (kind == 1) {
            size_t ntok = xorshift(&seed) % 40;
            for (size_t i = 0; i < ntok; i++) {
                const char *t = tokens[xorshift(&seed) % (sizeof(tokens) / sizeof(tokens[0]))];
                size_t tl = strlen(t);
                if (len + tl > sizeof(buf)) {
                    break;
                }
                memcpy(buf + len, t, tl);
                len += tl;
            }
        } else {
            len = strlen(spec_example);
            memcpy(buf, spec_example, len < sizeof(buf) ? len : sizeof(buf));
            len = len < sizeof(buf) ? len : sizeof(buf);
            for (int f = 0; f < 1 + (int)(xorshift(&seed) % 3); f++) {
                buf[xorshift(&seed) % len] = (char)xorshift(&seed);
            }
        }
        rs_config c;
        rs_error err;
        int rc = parse_exact(buf, len, &c, &err);
        if (rc == 0) {
            ok++;
            assert_true(c.n_nodes <= RS_NODES_MAX);
            for (size_t i = 0; i < c.n_nodes; i++) {
                assert_int_equal(rs_node_validate(&c.nodes[i].node, &err), 0);
            }
        } else {
            assert_int_equal(rc, -EINVAL);
            assert_clean_failure(&c, &err);
        }
        rs_config_free(&c);
    }
    (void)ok;
}

static void
test_deep_nesting(void **state) {
    (void)state;
    const size_t depth = 100000;
    char *s = malloc(2 * depth + 32);
    assert_non_null(s);
    for (int where = 0; where < 3; where++) {
        size_t len = 0;
        if (where == 1) {
            len = (size_t)sprintf(s, "{\"ring\":");
        } else if (where == 2) {
            len = (size_t)sprintf(s, "{\"membership\":{\"nodes\":");
        }
        memset(s + len, '[', depth);
        len += depth;
        if (where == 2) { /* closed, so only the depth limit can stop it */
            memset(s + len, ']', depth);
            len += depth;
            s[len++] = '}';
            s[len++] = '}';
        }
        rs_config c;
        rs_error err;
        assert_int_equal(parse_exact(s, len, &c, &err), -EINVAL);
        assert_true(glob("invalid JSON at *: maximum parsing depth reached*", err.msg));
        assert_clean_failure(&c, &err);
    }
    /* Nesting inside a known field that takes no array is a type error, not a crash. */
    rs_config c;
    rs_error err;
    assert_int_equal(
        parse_quoted("{'ring':{'replicas':[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]}}", &c, &err), -EINVAL);
    assert_string_equal(err.msg,
                        "ring.replicas: must be an integer between 1 and 16, got an array");
    free(s);
}

static void
test_embedded_nul(void **state) {
    (void)state;
    rs_config c;
    rs_error err;
    /* Raw NUL bytes: inside a string, between tokens, and after a valid document. */
    static const char in_string[] = "{\"ring\":{\"name\":\"a\0b\"}}";
    static const char between[] = "{\"ring\":\0{}}";
    char after[] = "{\"membership\":{\"nodes\":[{\"address\":\"h:1\"}]}}\0";
    assert_int_equal(parse_exact(in_string, sizeof(in_string) - 1, &c, &err), -EINVAL);
    assert_true(glob("invalid JSON at *", err.msg));
    assert_clean_failure(&c, &err);
    assert_int_equal(parse_exact(between, sizeof(between) - 1, &c, &err), -EINVAL);
    assert_true(glob("invalid JSON at *", err.msg));
    assert_clean_failure(&c, &err);
    assert_int_equal(parse_exact(after, sizeof(after) - 1, &c, &err), -EINVAL);
    assert_true(glob("invalid JSON at *", err.msg));
    assert_clean_failure(&c, &err);
    /* The same document without the NUL parses: the length given is what counts. */
    assert_int_equal(parse_exact(after, sizeof(after) - 2, &c, &err), 0);
    rs_config_free(&c);
    /* Escaped NUL in every kind of string field names the field (more in err_cases). */
    assert_int_equal(
        parse_quoted("{'membership':{'nodes':[{'address':'h:1','zone':'\\u0000'}]}}", &c, &err),
        -EINVAL);
    assert_string_equal(err.msg, "membership.nodes[0].zone: must not contain NUL bytes");
    assert_int_equal(parse_quoted("{'membership':{'consul':{'kv_prefix':'a\\u0000'}}}", &c, &err),
                     -EINVAL);
    assert_string_equal(err.msg, "membership.consul.kv_prefix: must not contain NUL bytes");
    assert_int_equal(parse_quoted("{'log':{'level':'info\\u0000'}}", &c, &err), -EINVAL);
    assert_string_equal(err.msg, "log.level: must not contain NUL bytes");
    assert_int_equal(parse_quoted("{'ring':{'hash':'md5\\u0000'}}", &c, &err), -EINVAL);
    assert_string_equal(err.msg, "ring.hash: must not contain NUL bytes");
}

static void
test_huge_numbers(void **state) {
    (void)state;
    static const err_case cases[] = {
        {"{'ring':{'replicas':1"
         "000000000000000000000000000000000000000000000000000000000}}",
         "invalid JSON at *: too big integer*"},
        {"{'listen':{'max_clients':18446744073709551615}}", "invalid JSON at *: too big integer*"},
        {"{'ring':{'replicas':1e308}}",
         "ring.replicas: must be an integer between 1 and 16, got 1e+308"},
        {"{'ring':{'replicas':-1e308}}",
         "ring.replicas: must be an integer between 1 and 16, got -1e+308"},
        {"{'ring':{'replicas':1e-400}}",
         "ring.replicas: must be an integer between 1 and 16, got 0.0"},
        {"{'listen':{'allow_uids':[9223372036854775807]}}",
         "listen.allow_uids[0]: must be an integer between 0 and 4294967294, "
         "got 9223372036854775807"},
        {"{'health':{'panic_threshold':1e308}}",
         "health.panic_threshold: must be a number at least 0 and at most 1, got 1e+308"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rs_config c;
        rs_error err;
        assert_int_equal(parse_quoted(cases[i].json, &c, &err), -EINVAL);
        if (!glob(cases[i].msg, err.msg)) {
            print_error("%s\n  got  %s\n  want %s\n", cases[i].json, err.msg, cases[i].msg);
            fail();
        }
        assert_clean_failure(&c, &err);
    }
    /* A denormal is still a number in range. */
    rs_config c;
    rs_error err;
    assert_int_equal(parse_quoted("{'health':{'panic_threshold':1e-320}," NODE "}", &c, &err), 0);
    assert_true(c.panic_threshold > 0 && c.panic_threshold < 1e-300);
    rs_config_free(&c);
}

/* Builds {"membership":{"nodes":[n nodes]}} padded with spaces to pad bytes in total. */
static char *
nodes_doc(size_t n, size_t pad, size_t *len) {
    size_t cap = 64 + n * 48 + pad;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t o = (size_t)snprintf(s, cap, "{\"membership\":{\"nodes\":[");
    for (size_t i = 0; i < n; i++) {
        o += (size_t)snprintf(s + o, cap - o,
                              "%s{\"id\":\"n%zu\",\"address\":\"127.0.%zu.%zu:6379\"}",
                              i > 0 ? "," : "", i, i / 256, i % 256);
    }
    o += (size_t)snprintf(s + o, cap - o, "]}}");
    while (o < pad) {
        s[o++] = ' ';
    }
    *len = o;
    return s;
}

static void
test_limits(void **state) {
    (void)state;
    rs_config c;
    rs_error err;
    size_t len;

    char *s = nodes_doc(RS_NODES_MAX, 0, &len);
    assert_int_equal(parse_exact(s, len, &c, &err), 0);
    assert_int_equal(c.n_nodes, RS_NODES_MAX);
    assert_string_equal(c.nodes[RS_NODES_MAX - 1].node.id, "n9999");
    assert_string_equal(c.nodes[RS_NODES_MAX - 1].node.address, "127.0.39.15:6379");
    rs_config_free(&c);
    free(s);

    s = nodes_doc(RS_NODES_MAX + 1, 0, &len);
    assert_int_equal(parse_exact(s, len, &c, &err), -EINVAL);
    assert_string_equal(err.msg, "membership.nodes: too many nodes (10001, max 10000)");
    assert_clean_failure(&c, &err);
    free(s);

    /* Exactly the size limit parses; one byte more is refused before parsing. */
    s = nodes_doc(3, RS_CONFIG_MAX_BYTES + 1, &len);
    assert_int_equal(parse_exact(s, RS_CONFIG_MAX_BYTES, &c, &err), 0);
    assert_int_equal(c.n_nodes, 3);
    rs_config_free(&c);
    assert_int_equal(parse_exact(s, RS_CONFIG_MAX_BYTES + 1, &c, &err), -EINVAL);
    assert_string_equal(err.msg, "config is too large (4194305 bytes, max 4194304)");
    assert_clean_failure(&c, &err);
    free(s);
}

static void
test_api_contract(void **state) {
    (void)state;
    rs_config c;
    rs_error err;

    /* free accepts NULL, a zeroed config, and a config freed twice. */
    rs_config_free(NULL);
    memset(&c, 0, sizeof(c));
    rs_config_free(&c);
    assert_int_equal(parse_quoted("{" NODE "}", &c, &err), 0);
    rs_config_free(&c);
    rs_config_free(&c);
    assert_null(c.nodes);

    /* err may be NULL; out is overwritten whatever it held. */
    memset(&c, 0x5a, sizeof(c));
    char *json = json_of("{" NODE "}");
    assert_int_equal(rs_config_parse(json, strlen(json), &c, NULL), 0);
    assert_int_equal(c.n_nodes, 1);
    rs_config_free(&c);
    assert_int_equal(rs_config_parse(json, strlen(json) - 1, &c, NULL), -EINVAL);
    assert_null(c.nodes);
    free(json);

    /* The buffer need not be NUL-terminated: a parse reads exactly len bytes. */
    static const char one[] = "{\"membership\":{\"nodes\":[{\"address\":\"h:1\"}]}}";
    static const char two[] = "{\"membership\":{\"nodes\":[{\"address\":\"h:1\"}]}}{\"x\":1}";
    assert_int_equal(rs_config_parse(two, strlen(one), &c, &err), 0);
    rs_config_free(&c);
    assert_int_equal(rs_config_parse(NULL, 0, &c, &err), -EINVAL);
    assert_clean_failure(&c, &err);

    /* Nodes own their strings: the input buffer can go away. */
    json = json_of("{'membership':{'nodes':[{'id':'cache-a','address':'h:1','zone':'z'},"
                   "{'address':'h:11211'}]}}");
    assert_int_equal(rs_config_parse(json, strlen(json), &c, &err), 0);
    memset(json, 0, strlen(json));
    free(json);
    assert_string_equal(c.nodes[0].node.id, "cache-a");
    assert_string_equal(c.nodes[0].node.zone, "z");
    assert_string_equal(c.nodes[1].node.id, "h");
    assert_string_equal(c.nodes[1].node.address, "h:11211");
    assert_string_equal(c.nodes[1].node.zone, "");

    /* A parsed config's nodes and params build a ring. */
    rs_node nodes[2] = {c.nodes[0].node, c.nodes[1].node};
    rs_ring *ring = NULL;
    assert_int_equal(rs_ring_build(&c.params, nodes, 2, &ring, &err), 0);
    assert_int_equal(rs_ring_node_count(ring), 2);
    rs_ring_unref(ring);
    rs_config_free(&c);
}

/* ---- the example files in configs/ ----------------------------------------------------- */

static char *
read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    assert_int_equal(ferror(f), 0);
    fclose(f);
    *len = n;
    return buf;
}

static const char *
source_dir(void) {
    const char *dir = getenv("RS_SOURCE_DIR");
    if (dir != NULL && dir[0] != '\0') {
        return dir;
    }
#ifdef RS_SOURCE_DIR_DEFAULT
    return RS_SOURCE_DIR_DEFAULT;
#else
    return NULL;
#endif
}

static int
parse_config_file(const char *name, rs_config *c) {
    const char *dir = source_dir();
    if (dir == NULL) {
        print_message("note: RS_SOURCE_DIR unset and no RS_SOURCE_DIR_DEFAULT: skipping %s\n",
                      name);
        return -1;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/configs/%s", dir, name);
    size_t len = 0;
    char *text = read_file(path, &len);
    if (text == NULL) {
        print_error("cannot read %s\n", path);
    }
    assert_non_null(text);
    rs_error err = {{0}};
    int rc = rs_config_parse(text, len, c, &err);
    if (rc != 0) {
        print_error("%s: %s\n", path, err.msg);
    }
    assert_int_equal(rc, 0);
    free(text);
    return 0;
}

static void
assert_demo_nodes(const rs_config *c) {
    static const char *const ids[] = {"cache-a", "cache-b", "cache-c"};
    static const char *const addrs[] = {"127.0.0.1:6379", "127.0.0.1:6380", "127.0.0.1:6381"};
    static const char *const zones[] = {"a", "b", "c"};
    assert_string_equal(c->ring_name, "sessions");
    assert_int_equal(c->source, RS_SOURCE_STATIC);
    assert_int_equal(c->n_nodes, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(c->nodes[i].node.id, ids[i]);
        assert_string_equal(c->nodes[i].node.address, addrs[i]);
        assert_string_equal(c->nodes[i].node.zone, zones[i]);
        assert_int_equal(c->nodes[i].node.weight, 1);
        assert_true(c->nodes[i].node.enabled);
    }
}

static void
test_config_files(void **state) {
    (void)state;
    rs_config c;
    if (parse_config_file("static.json", &c) != 0) {
        skip();
    }
    assert_demo_nodes(&c);
    assert_string_equal(c.socket_path, "/run/ringside/ringside.sock");
    assert_string_equal(c.state_dir, "/var/lib/ringside");
    assert_true(c.http_enabled);
    assert_string_equal(c.params.hash_tag, "{}");
    rs_config_free(&c);

    assert_int_equal(parse_config_file("demo.json", &c), 0);
    assert_demo_nodes(&c);
    assert_string_equal(c.socket_path, "/tmp/ringside-demo/ringside.sock");
    assert_string_equal(c.state_dir, "/tmp/ringside-demo/state");
    assert_false(c.http_enabled);
    rs_config_free(&c);
}

int
main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_example), cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors),       cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_durations),    cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_garbage),      cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_embedded_nul), cmocka_unit_test(test_huge_numbers),
        cmocka_unit_test(test_limits),       cmocka_unit_test(test_api_contract),
        cmocka_unit_test(test_config_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
