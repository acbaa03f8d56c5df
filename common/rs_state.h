/* The ring state snapshot: what the sidecar persists after every applied change and
 * serves from at start. Pure (de)serialisation: bytes in, bytes out, no file I/O. */
#ifndef RS_STATE_H
#define RS_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_ring.h"

#define RS_STATE_FORMAT 1                     /* the only format version this build reads */
#define RS_STATE_MAX_BYTES ((size_t)64 << 20) /* largest snapshot text decode accepts */
#define RS_STATE_RING_MAX 63                  /* bytes in a ring name: [A-Za-z0-9_.-]+ */
#define RS_STATE_SOURCE_MAX 31                /* bytes in a source name: [a-z0-9_-]+ */

/* One node and its health. The strings in node are owned by the enclosing rs_state
 * (malloc'd, freed by rs_state_free); zone may be NULL or "" for none. */
typedef struct rs_state_node {
    rs_node node;
    bool healthy;
} rs_state_node;

/* A snapshot. epoch and the indexes are uint64_t but must stay <= INT64_MAX: the file
 * stores them as JSON integers, which jansson reads as long long. */
typedef struct rs_state {
    uint32_t format; /* RS_STATE_FORMAT */
    char ring[RS_STATE_RING_MAX + 1];
    uint64_t epoch; /* only goes up */
    rs_ring_params params;
    rs_state_node *nodes; /* filled by rs_state_add_node or decode only; <= RS_NODES_MAX */
    size_t n_nodes;
    char source[RS_STATE_SOURCE_MAX + 1]; /* "static", "consul-kv", "consul-service" */
    uint64_t kv_index, health_index;      /* Consul X-Consul-Index values, 0 when unknown */
    int64_t written_at;                   /* unix seconds, >= 0 */
} rs_state;

/* Zero *s, then set format = RS_STATE_FORMAT and the default ring parameters. */
void rs_state_init(rs_state *s);

/* Append a copy of node n (its strings are copied; zone NULL becomes "") with its health.
 * No validation here: rs_state_validate / rs_state_encode check the whole state.
 * Returns 0, -E2BIG when s already holds RS_NODES_MAX nodes, or -ENOMEM (s unchanged). */
int rs_state_add_node(rs_state *s, const rs_node *n, bool healthy);

/* Check a state as rs_state_decode would accept it: format, ring name ([A-Za-z0-9_.-],
 * 1..63 bytes), params (rs_ring_params_validate), at most RS_NODES_MAX nodes, each one
 * valid (rs_node_validate) with UTF-8 strings and a unique id, source ([a-z0-9_-],
 * 1..31 bytes), epoch and indexes <= INT64_MAX, written_at >= 0. An empty node set is
 * valid here (building a ring from it is the caller's business).
 * Returns 0, or -EINVAL with err naming the field ("state.nodes[3]: weight must ..."). */
int rs_state_validate(const rs_state *s, rs_error *err);

/* Encode s as snapshot text: {"format":1,"checksum":"sha256:<hex>","state":{...}},
 * indented for people, ending in a newline. The checksum is SHA-256 over the "state"
 * object dumped with JSON_COMPACT | JSON_SORT_KEYS, so it covers content, not layout.
 * On success *out is a malloc'd NUL-terminated string the caller frees and *len its
 * length (without the NUL). Returns 0, -EINVAL when s fails rs_state_validate (call it
 * first for the reason), or -ENOMEM. On error *out is NULL. */
int rs_state_encode(const rs_state *s, char **out, size_t *len);

/* Decode snapshot text buf[0..len) (need not be NUL-terminated) into *out, which the
 * caller later frees with rs_state_free. Strict: at most RS_STATE_MAX_BYTES, one JSON
 * object with exactly the keys above, no unknown or duplicate keys, integers in range,
 * and the result passes rs_state_validate. Returns 0, or with err filled (printable
 * ASCII, names the field) and *out zeroed:
 *   -EINVAL          not JSON, not a state file (foreign JSON), or bad/missing content;
 *   -EBADMSG         the checksum does not match the content;
 *   -EPROTONOSUPPORT a "format" other than RS_STATE_FORMAT;
 *   -ENOMEM          out of memory. */
int rs_state_decode(const char *buf, size_t len, rs_state *out, rs_error *err);

/* Free the node strings and array held by s and zero it. Accepts NULL and a zeroed or
 * rs_state_init'ed state. */
void rs_state_free(rs_state *s);

#endif
