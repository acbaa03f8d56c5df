/* Membership from Consul, pure: Consul's KV and health JSON in, a node set with health
 * and ring parameters out. Each KV value is validated on its own; a bad value is
 * rejected with a reason and the last good value of that key is kept. Also the
 * mass-removal guard, jittered backoff and a token bucket. No I/O, no clocks, no
 * globals: time and randomness are parameters. */
#ifndef RS_MEMBERSHIP_H
#define RS_MEMBERSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_error.h"
#include "rs_ring.h"

#define RS_KV_MAX_BODY (32u * 1024u * 1024u) /* largest Consul response accepted */
#define RS_KV_MAX_VALUE 4096                 /* bytes in one decoded KV value */
#define RS_KV_MAX_REJECTIONS 64              /* rejections reported per update */
#define RS_MAX_REMOVAL_DEFAULT 0.5           /* SPEC 4.2: max_removal_fraction default */

/* One key's rejection: key "nodes/cache-b", reason "weight must be an integer between 1
 * and 10000, got -1". The reason does not repeat the key. Both are printable ASCII
 * (other bytes become '?'); a key longer than the field ends in "...". */
typedef struct rs_kv_rejection {
    char key[256]; /* relative to the prefix ("nodes/cache-b", "config"), or "service/<id>" */
    char reason[256];
} rs_kv_rejection;

/* A membership as a source sees it: parameters, nodes (strings owned by the struct),
 * per-node health (1 = healthy), and the operator's overrides. nodes and healthy are
 * both NULL when n_nodes is 0, both allocated otherwise; nodes are sorted by id
 * (bytewise) and their ids are unique. */
typedef struct rs_membership {
    rs_ring_params params;
    rs_node *nodes;
    uint8_t *healthy;
    size_t n_nodes;
    bool force;                           /* KV config "force": apply even past the guard */
    double max_removal_fraction;          /* KV config, else the file's value */
    char confirm[RS_FINGERPRINT_LEN + 1]; /* <prefix>/confirm: {"fingerprint": "..."}; "" none */
    rs_kv_rejection rejections[RS_KV_MAX_REJECTIONS]; /* the first ones (KV: in key order) */
    size_t n_rejections;
    size_t n_rejections_total; /* may exceed the array */
} rs_membership;

/* Free what m owns and zero it. Accepts NULL and a zeroed membership. */
void rs_membership_free(rs_membership *m);

/* Deep copy of src into *dst (overwritten, not freed first): nodes, their strings and
 * health are new allocations; everything else is copied by value. A src without a
 * healthy array gives all-healthy. Returns 0, or -ENOMEM with *dst zeroed. */
int rs_membership_copy(const rs_membership *src, rs_membership *dst);

/* The KV memory of one watcher: last good value per key, so a bad edit of a key keeps
 * that key's previous value. Opaque; use one memo per KV prefix. */
typedef struct rs_kv_memo rs_kv_memo;

/* An empty memo in *out. Returns 0 or -ENOMEM. */
int rs_kv_memo_new(rs_kv_memo **out);
void rs_kv_memo_free(rs_kv_memo *memo); /* accepts NULL */

/* Turn a response of GET /v1/kv/<prefix>/?recurse (a JSON array of {Key, Value (base64
 * or null), ModifyIndex, ...}) into a membership. base: the file's ring parameters and
 * max_removal_fraction, overridden by <prefix>/config when present and valid. Keys:
 *   <prefix>/config           {"algorithm","hash","replicas","hash_tag","force",
 *                              "max_removal_fraction"}, all optional; force defaults to
 *                             false, max_removal_fraction is in (0, 1]
 *   <prefix>/nodes/<id>       {"address" (required),"weight" (1..RS_WEIGHT_MAX, default
 *                              1),"zone" (default ""),"enabled" (default true)}; the id
 *                              is the key's last segment and follows rs_node_validate
 *   <prefix>/confirm          {"fingerprint": "<16 lowercase hex>"}
 * prefix is given without a trailing '/' (one is tolerated). Keys outside the prefix,
 * folders (ending in '/'), deeper paths (nodes/a/b) and other names are ignored.
 *
 * Per key, strictly: unknown fields, wrong types (1.0 is not an integer), out-of-range
 * values, bad addresses, invalid base64, a null or empty value, a value over
 * RS_KV_MAX_VALUE decoded bytes, invalid JSON or a bad id reject that key (a rejection in
 * out, in key order) and the memo's last good value of the key is used instead, if any;
 * without one a node is absent and a config falls back to base. Node keys beyond
 * RS_NODES_MAX (in id order) are rejected too. A key missing from the listing is a
 * deletion: gone from the result and from the memo. On success the memo holds exactly
 * the values the result was built from.
 *
 * The result: params and max_removal_fraction from base with the config applied, force
 * from the config, nodes sorted by id, all healthy (apply health separately), confirm.
 * A 404 (empty prefix) is passed as body "[]" and gives an empty membership.
 *
 * *out is overwritten (not freed first). Returns 0 (rejections, if any, are in out), or
 * with *out zeroed, err filled and the memo unchanged: -EINVAL when the body itself is
 * not a Consul KV listing (not JSON, not an array of objects with a string Key and a
 * string-or-null Value, non-numeric indexes, a duplicate Key, over RS_KV_MAX_BODY bytes;
 * unknown fields of the listing's objects are ignored) or base is invalid; -ENOMEM. */
int rs_kv_to_membership(rs_kv_memo *memo, const char *body, size_t len, const char *prefix,
                        const rs_ring_params *base, double base_max_removal, rs_membership *out,
                        rs_error *err);

/* Turn a response of GET /v1/health/service/<name> into a membership: every instance is
 * a node, id = Service.ID, address = Service.Address (or Node.Address when empty) ":"
 * Service.Port ("[v6]:port" for an IPv6 host), weight from Service.Meta.ringside_weight
 * (a decimal string 1..RS_WEIGHT_MAX, default 1), zone from Service.Meta.ringside_zone
 * (default ""), enabled. Healthy unless one of its checks (node checks included) is
 * "critical" or "maintenance": "warning" counts as healthy, an unknown status as
 * unhealthy. Unknown fields anywhere are ignored (Consul adds many).
 *
 * Per instance, rejections keyed "service/<id>": an invalid id, no host, a port outside
 * 1..65535 or an invalid address drop the instance; a bad ringside_weight or
 * ringside_zone keeps it with weight 1 or no zone; the same Service.ID twice keeps the
 * first in listing order; instances beyond RS_NODES_MAX (in id order) are dropped.
 * params are copied from base, force is false, confirm "", max_removal_fraction is
 * RS_MAX_REMOVAL_DEFAULT (the caller sets its own). Nodes are sorted by id.
 *
 * *out is overwritten (not freed first). Returns 0, or with *out zeroed and err filled:
 * -EINVAL when the body is not a health listing (not JSON, not an array of objects with
 * object Node and Service, a string Service.ID, a numeric Service.Port, string
 * addresses, Meta an object or null, Checks an array of objects with a string Status;
 * over RS_KV_MAX_BODY bytes) or base is invalid; -ENOMEM. */
int rs_health_to_membership(const char *body, size_t len, const rs_ring_params *base,
                            rs_membership *out, rs_error *err);

/* Gate a KV membership with a service's health (SPEC 4, consul-kv + health_service):
 * a node's health is the aggregate of the checks of the instance whose Service.ID is
 * the node id (the first such in the listing), else whose "host:port" (built as in
 * rs_health_to_membership) equals the node's address; a node with no instance is
 * unhealthy. Only m->healthy changes (allocated if NULL). Returns 0, or with m unchanged
 * and err filled: -EINVAL (body not a health listing, as above) or -ENOMEM. */
int rs_membership_apply_health(rs_membership *m, const char *body, size_t len, rs_error *err);

/* The mass-removal guard: does going from `from` to the nodes of `to` remove more than
 * max_fraction of the enabled nodes of `from` (strictly: 1 of 2 at 0.5 is not held), or
 * all of them (even at max_fraction 1, and also when `to` has no enabled node)? A node
 * counts as removed when its id is missing from `to` or disabled there. Returns true
 * (hold) with a reason in err ("update would remove 3 of 4 enabled nodes (75%, max
 * 50%)"), false to apply (err->msg ""). from may be NULL (first ring: never held); a
 * `from` without enabled nodes never holds. force and confirm are the caller's business.
 * If memory runs out it holds (fail safe) with the reason "out of memory ...". */
bool rs_guard_holds(const rs_ring *from, const rs_membership *to, double max_fraction,
                    rs_error *err);

/* Exponential backoff with full jitter: the delay before retry `attempt` (0-based),
 * base_ms + random * (min(cap_ms, base_ms * 2^attempt) - base_ms), so attempt 0 waits
 * base_ms and every delay is within [base_ms, cap_ms] (cap_ms below base_ms counts as
 * base_ms). random is a uniform draw in [0, 1); values outside are clamped. Never
 * overflows, whatever the attempt. */
uint64_t rs_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms, double random);

/* Token bucket: `rate` tokens per second, at most `burst`. */
typedef struct rs_bucket {
    double tokens, rate, burst;
    uint64_t last_ms;
} rs_bucket;

/* A full bucket at now_ms. rate <= 0 never refills; burst below 1 counts as 1. */
void rs_bucket_init(rs_bucket *b, double rate, double burst, uint64_t now_ms);

/* Refill for the time since the last call (a clock going back refills nothing), then
 * take a token if there is one (returns 0), else return the whole ms (>= 1) until one
 * is there: taking again at now_ms plus that many ms succeeds. UINT64_MAX when the rate
 * is 0. */
uint64_t rs_bucket_take(rs_bucket *b, uint64_t now_ms);

#endif
