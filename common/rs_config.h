/* The sidecar's configuration: a strict JSON parser (SPEC §10) from a buffer into a plain
 * struct with every default filled in. Pure: no I/O, no logging, no globals. */
#ifndef RS_CONFIG_H
#define RS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_health.h"
#include "rs_ring.h"

#define RS_CONFIG_MAX_BYTES (4u * 1024u * 1024u) /* larger documents are rejected unread */
#define RS_CONFIG_MAX_IDS 64                     /* entries in listen.allow_uids / allow_gids */

typedef enum rs_source {
    RS_SOURCE_STATIC,
    RS_SOURCE_CONSUL_KV,
    RS_SOURCE_CONSUL_SERVICE
} rs_source;
/* rs_health_policy comes from rs_health.h */
typedef enum rs_log_level { RS_LOG_DEBUG, RS_LOG_INFO, RS_LOG_WARN, RS_LOG_ERROR } rs_log_level;
typedef enum rs_log_format { RS_LOG_KV, RS_LOG_JSON } rs_log_format;

/* A node of membership.nodes. node's strings are owned by the config that holds it
 * (valid until rs_config_free); node.zone is "" when none was given. */
typedef struct rs_config_node {
    rs_node node;
    bool healthy; /* "healthy", default true: lets health policy be tried without Consul */
} rs_config_node;

/* Every field holds its default (in brackets) unless the file set it. Durations are
 * strings in the file ("250ms", "5s", "10m", "24h", "1h30m", "0"). Paths (socket,
 * state_dir, consul *_file) must be absolute. */
typedef struct rs_config {
    char ring_name[64];    /* ring.name ["default"]: [A-Za-z0-9_.-]{1,63} */
    rs_ring_params params; /* ring.algorithm, ring.hash, ring.replicas, ring.hash_tag
                              [ketama, fnv1a_64, 2, ""] */

    /* listen */
    char socket_path[108];                  /* listen.socket ["/run/ringside/ringside.sock"] */
    uint32_t socket_mode;                   /* listen.mode, octal string <= "0777" ["0660"] */
    char socket_group[64];                  /* listen.group [""]: "" keeps the process's group */
    uint32_t allow_uids[RS_CONFIG_MAX_IDS]; /* listen.allow_uids [none: no uid check] */
    size_t n_allow_uids;
    uint32_t allow_gids[RS_CONFIG_MAX_IDS]; /* listen.allow_gids [none: no gid check] */
    size_t n_allow_gids;
    uint32_t max_clients;          /* listen.max_clients [10000], 1..1000000 */
    uint32_t max_key_bytes;        /* listen.max_key_bytes [8192], 1..max_request_bytes */
    uint32_t max_keys_per_request; /* listen.max_keys_per_request [1000], 1..1000000 */
    uint32_t max_request_bytes;    /* listen.max_request_bytes [1 MiB], 64..256 MiB */
    uint32_t max_output_bytes;     /* listen.max_output_bytes [8 MiB], 1 KiB..1 GiB */
    uint32_t idle_timeout_ms;      /* listen.idle_timeout ["300s"], "0" (never) or 1s..24h */

    /* http */
    bool http_enabled;     /* http.enabled [true] */
    char http_address[64]; /* http.address ["127.0.0.1:9317"], host:port */

    char state_dir[256];      /* state_dir ["/var/lib/ringside"] */
    uint32_t max_state_age_s; /* max_state_age ["24h"], whole seconds, 1s..8760h */

    /* membership */
    rs_source source;      /* membership.source ["static"] | "consul-kv" | "consul-service" */
    rs_config_node *nodes; /* membership.nodes, in file order; NULL when none */
    size_t n_nodes;        /* static needs >= 1 with one enabled; Consul sources may have 0 */
    struct {
        char address[256];           /* ["http://127.0.0.1:8500"], http:// or https:// URL */
        char kv_prefix[256];         /* ["ringside/<ring.name>"], no leading '/'; one trailing
                                        '/' is dropped */
        char service[128];           /* [""]; required for consul-service */
        char health_service[128];    /* [""]: consul-kv nodes are not health-gated */
        char token_file[256];        /* [""] */
        char ca_file[256];           /* [""] */
        char cert_file[256];         /* [""]; cert_file and key_file go together */
        char key_file[256];          /* [""] */
        bool stale;                  /* [true] */
        uint32_t wait_ms;            /* wait ["5m"], 1s..10m */
        uint32_t max_stale_ms;       /* max_stale ["10s"], 1s..1h */
        double max_removal_fraction; /* [0.5], in (0, 1] */
    } consul;                        /* membership.consul */

    rs_health_policy health_policy; /* health.policy ["skip"] | "keep" */
    double panic_threshold;         /* health.panic_threshold [0.5], 0..1 */
    rs_log_level log_level;         /* log.level ["info"]: debug | info | warn | error */
    rs_log_format log_format;       /* log.format ["kv"] | "json" */
} rs_config;

/* Fill c with the defaults (no nodes). c needs no rs_config_free afterwards, but it is
 * harmless. */
void rs_config_init(rs_config *c);

/* Parse the JSON document json[0..len) (need not be NUL-terminated; json may be NULL
 * when len is 0) into *out, which is overwritten, not freed: pass an uninitialised,
 * initialised or freed config. Unknown keys, wrong types, out-of-range values, duplicate
 * keys or node ids, NUL bytes in strings and strings too long for their field are all
 * errors. Returns 0 (free *out with rs_config_free), -EINVAL with err->msg naming the
 * JSON path and the reason ("membership.consul.wait: must be between 1s and 10m"), or
 * -ENOMEM. On error *out holds the defaults and owns nothing. err may be NULL. */
int rs_config_parse(const char *json, size_t len, rs_config *out, rs_error *err);

/* Free what c owns (its nodes) and leave it with no nodes. Accepts NULL and any config
 * from rs_config_init or rs_config_parse, or a zeroed one. */
void rs_config_free(rs_config *c);

/* Parse a duration: one or more <digits><unit> groups with unit ms, s, m or h ("250ms",
 * "5s", "10m", "24h", "1h30m"), or "0". No sign, fraction or space. Returns 0 with *ms
 * set, or -EINVAL (malformed, or more than UINT64_MAX milliseconds). */
int rs_duration_parse(const char *s, uint64_t *ms);

#endif
