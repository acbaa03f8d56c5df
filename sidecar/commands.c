/* Socket commands: lookups, ring introspection, subscriptions, INFO. Replies follow
 * docs/protocol.md; errors are RESP errors with a clear text. */
#include "commands.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "rs_hash.h"
#include "source.h"

static const char *const cmd_names[CMD_COUNT] = {
    [CMD_PING] = "ping",           [CMD_LOOKUP] = "lookup",
    [CMD_LOOKUPN] = "lookupn",     [CMD_MLOOKUP] = "mlookup",
    [CMD_ROUTE] = "route",         [CMD_RING] = "ring",
    [CMD_NODES] = "nodes",         [CMD_DUMP] = "dump",
    [CMD_SUBSCRIBE] = "subscribe", [CMD_UNSUBSCRIBE] = "unsubscribe",
    [CMD_INFO] = "info",           [CMD_COMMAND] = "command",
    [CMD_QUIT] = "quit",           [CMD_UNKNOWN] = "unknown",
};

const char *
commands_name(int cmd) {
    return cmd >= 0 && cmd < CMD_COUNT ? cmd_names[cmd] : "unknown";
}

/* Case-insensitive match of an argument against a lowercase command name. Names are
 * letters only, and for letters c | 0x20 is the lowercase; no other byte maps to one. */
static bool
name_is(const rs_resp_arg *a, const char *name) {
    for (size_t i = 0; i < a->len; i++) {
        if (name[i] == '\0' || ((unsigned char)a->ptr[i] | 0x20) != (unsigned char)name[i]) {
            return false;
        }
    }
    return name[a->len] == '\0';
}

/* On every request: no strlen or strncasecmp call per table entry, most names fail on
 * their first byte. */
static int
lookup_cmd(const rs_resp_arg *a) {
    for (int i = 0; i < CMD_UNKNOWN; i++) {
        if (name_is(a, cmd_names[i])) {
            return i;
        }
    }
    return CMD_UNKNOWN;
}

/* ---- reply helpers: every failure to buffer is -ENOMEM, mapped to a close ---- */

typedef struct reply {
    ringside *d;
    rs_buf *out;
    int rc;
} reply;

static void r_err(reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
r_err(reply *r, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->d->stats.errors++;
    r->rc |= rs_resp_put_error(r->out, msg);
}

static void
r_bulk(reply *r, const char *s) {
    r->rc |= rs_resp_put_bulk_str(r->out, s);
}

static void
r_int(reply *r, long long v) {
    r->rc |= rs_resp_put_integer(r->out, v);
}

static void
r_array(reply *r, size_t n) {
    r->rc |= rs_resp_put_array(r->out, n);
}

static void
r_field_str(reply *r, const char *k, const char *v) {
    r_bulk(r, k);
    r_bulk(r, v);
}

static void
r_field_int(reply *r, const char *k, long long v) {
    r_bulk(r, k);
    r_int(r, v);
}

static void
wrong_args(reply *r, int cmd) {
    r_err(r, "ERR wrong number of arguments for '%s'", cmd_names[cmd]);
}

static bool
key_ok(reply *r, const rs_resp_arg *key) {
    if (key->len > r->d->cfg.max_key_bytes) {
        r_err(r, "ERR key too long (max %u bytes)", r->d->cfg.max_key_bytes);
        return false;
    }
    return true;
}

static bool
have_ring(reply *r) {
    if (r->d->view.ring == NULL || r->d->view.health.usable == 0) {
        r_err(r, "NORING no usable nodes");
        return false;
    }
    return true;
}

/* ---- commands ---- */

static void
do_lookup(reply *r, const rs_resp_arg *key) {
    const view *v = &r->d->view;
    uint32_t hash = rs_ring_hash_key(v->ring, key->ptr, key->len);
    uint32_t node;
    if (rs_ring_candidates(v->ring, hash, v->usable, &node, 1) == 0) {
        r_err(r, "NORING no usable nodes");
        return;
    }
    r_bulk(r, rs_ring_node_at(v->ring, node)->address);
}

/* A positive decimal count; values beyond any node count saturate. */
static bool
parse_count(const rs_resp_arg *a, uint32_t *out) {
    if (a->len == 0) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < a->len; i++) {
        if (a->ptr[i] < '0' || a->ptr[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(a->ptr[i] - '0');
        if (v > UINT32_MAX) {
            v = UINT32_MAX;
        }
    }
    *out = (uint32_t)v;
    return v > 0;
}

static void
do_lookupn(reply *r, const rs_resp_cmd *cmd) {
    const view *v = &r->d->view;
    uint32_t n;
    if (!parse_count(&cmd->argv[2], &n)) {
        r_err(r, "ERR n must be a positive integer");
        return;
    }
    if (!key_ok(r, &cmd->argv[1]) || !have_ring(r)) {
        return;
    }
    if (n > rs_ring_node_count(v->ring)) {
        n = (uint32_t)rs_ring_node_count(v->ring);
    }
    uint32_t out[RS_NODES_MAX];
    uint32_t hash = rs_ring_hash_key(v->ring, cmd->argv[1].ptr, cmd->argv[1].len);
    size_t got = rs_ring_candidates(v->ring, hash, v->usable, out, n);
    r_array(r, got);
    for (size_t i = 0; i < got; i++) {
        r_bulk(r, rs_ring_node_at(v->ring, out[i])->address);
    }
}

static void
do_mlookup(reply *r, const rs_resp_cmd *cmd) {
    const view *v = &r->d->view;
    size_t nkeys = cmd->argc - 1;
    if (nkeys > r->d->cfg.max_keys_per_request) {
        r_err(r, "ERR too many keys (max %u)", r->d->cfg.max_keys_per_request);
        return;
    }
    for (size_t i = 1; i < cmd->argc; i++) {
        if (!key_ok(r, &cmd->argv[i])) {
            return;
        }
    }
    if (!have_ring(r)) {
        return;
    }
    r_array(r, nkeys);
    for (size_t i = 1; i < cmd->argc; i++) {
        uint32_t hash = rs_ring_hash_key(v->ring, cmd->argv[i].ptr, cmd->argv[i].len);
        uint32_t node;
        if (rs_ring_candidates(v->ring, hash, v->usable, &node, 1) == 1) {
            r_bulk(r, rs_ring_node_at(v->ring, node)->address);
        } else {
            r->rc |= rs_resp_put_null(r->out);
        }
    }
}

static void
do_route(reply *r, const rs_resp_arg *key) {
    const view *v = &r->d->view;
    uint32_t hash = rs_ring_hash_key(v->ring, key->ptr, key->len);
    uint32_t cand[RS_REPLICAS_MAX];
    size_t n = rs_ring_candidates(v->ring, hash, NULL, cand, rs_ring_params_of(v->ring)->replicas);
    uint32_t answer;
    bool have = rs_ring_candidates(v->ring, hash, v->usable, &answer, 1) == 1;
    r_array(r, 8);
    r_field_int(r, "epoch", (long long)v->epoch);
    r_field_int(r, "hash", hash);
    r_bulk(r, "answer");
    if (have) {
        r_bulk(r, rs_ring_node_at(v->ring, answer)->address);
    } else {
        r->rc |= rs_resp_put_null(r->out);
    }
    r_bulk(r, "candidates");
    r_array(r, n);
    for (size_t i = 0; i < n; i++) {
        const rs_ring_node *node = rs_ring_node_at(v->ring, cand[i]);
        r_array(r, 5);
        r_bulk(r, node->id);
        r_bulk(r, node->address);
        r_bulk(r, node->zone);
        r_bulk(r, v->healthy[cand[i]] ? "passing" : "critical");
        r_bulk(r, v->usable[cand[i]] ? "used" : "skipped");
    }
}

static void
do_ring(reply *r) {
    const view *v = &r->d->view;
    char imbalance[32];
    const rs_ring_params *p = v->ring ? rs_ring_params_of(v->ring) : NULL;
    snprintf(imbalance, sizeof(imbalance), "%.4f", v->ring ? rs_ring_imbalance(v->ring) : 0.0);
    r_array(r, 19 * 2);
    r_field_str(r, "name", r->d->cfg.ring_name);
    r_field_int(r, "epoch", (long long)v->epoch);
    r_field_str(r, "fingerprint", v->ring ? rs_ring_fingerprint(v->ring) : "");
    r_field_str(r, "algorithm", p ? rs_algorithm_name(p->algorithm) : "");
    r_field_str(r, "hash", v->ring ? rs_ring_key_hash_name(v->ring) : "");
    r_field_str(r, "hash_tag", p ? p->hash_tag : "");
    r_field_int(r, "replicas", p ? p->replicas : 0);
    r_field_int(r, "nodes", v->ring ? (long long)rs_ring_node_count(v->ring) : 0);
    r_field_int(r, "enabled", v->health.enabled);
    r_field_int(r, "healthy", v->health.healthy);
    r_field_int(r, "points", v->ring ? (long long)rs_ring_point_count(v->ring) : 0);
    r_field_str(r, "imbalance", imbalance);
    r_field_int(r, "panic", v->health.panic);
    r_field_str(r, "policy", rs_health_policy_name(v->policy));
    r_field_str(r, "source", v->source);
    r_field_int(r, "consul_index", (long long)v->consul_index);
    r_field_int(r, "last_change", v->last_change);
    r_field_str(r, "held", source_held_fingerprint(r->d->src));
    r_field_str(r, "held_reason", source_held_reason(r->d->src));
}

static void
do_nodes(reply *r) {
    const view *v = &r->d->view;
    size_t n = v->ring ? rs_ring_node_count(v->ring) : 0;
    r_array(r, n);
    for (size_t i = 0; i < n; i++) {
        const rs_ring_node *node = rs_ring_node_at(v->ring, i);
        char share[32];
        snprintf(share, sizeof(share), "%.6f", node->share);
        r_array(r, 14);
        r_field_str(r, "id", node->id);
        r_field_str(r, "address", node->address);
        r_field_int(r, "weight", node->weight);
        r_field_str(r, "zone", node->zone);
        r_field_int(r, "enabled", node->enabled);
        r_field_str(r, "health", v->healthy[i] ? "passing" : "critical");
        r_field_str(r, "share", share);
    }
}

static void
do_dump(reply *r) {
    const view *v = &r->d->view;
    const rs_ring_params *p = rs_ring_params_of(v->ring);
    json_t *nodes = json_array();
    for (size_t i = 0; i < rs_ring_node_count(v->ring); i++) {
        const rs_ring_node *n = rs_ring_node_at(v->ring, i);
        json_array_append_new(nodes, json_pack("{s:s, s:s, s:I, s:s, s:b, s:b}", "id", n->id,
                                               "address", n->address, "weight",
                                               (json_int_t)n->weight, "zone", n->zone, "enabled",
                                               n->enabled, "healthy", v->healthy[i] != 0));
    }
    json_t *doc = json_pack("{s:s, s:I, s:s, s:{s:s, s:s, s:I, s:s}, s:{s:s, s:f}, s:o}", "ring",
                            r->d->cfg.ring_name, "epoch", (json_int_t)v->epoch, "fingerprint",
                            rs_ring_fingerprint(v->ring), "params", "algorithm",
                            rs_algorithm_name(p->algorithm), "hash", rs_hash_name(p->hash),
                            "replicas", (json_int_t)p->replicas, "hash_tag", p->hash_tag, "health",
                            "policy", rs_health_policy_name(v->policy), "panic_threshold",
                            r->d->cfg.panic_threshold, "nodes", nodes);
    /* The algorithm parameters, where not default: enough to rebuild the same ring. */
    json_t *params = doc ? json_object_get(doc, "params") : NULL;
    rs_ring_params d;
    rs_ring_params_init(&d);
    if (params != NULL && p->table_size != d.table_size) {
        json_object_set_new(params, "table_size", json_integer(p->table_size));
    }
    if (params != NULL && p->points_per_weight != d.points_per_weight) {
        json_object_set_new(params, "points_per_weight", json_integer(p->points_per_weight));
    }
    if (params != NULL && p->vnodes != d.vnodes) {
        json_object_set_new(params, "vnodes", json_integer(p->vnodes));
    }
    if (params != NULL && p->replica_factor != d.replica_factor) {
        json_object_set_new(params, "replica_factor", json_integer(p->replica_factor));
    }
    if (params != NULL && p->zone_aware_replicas) {
        json_object_set_new(params, "zone_aware_replicas", json_true());
    }
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (text == NULL) {
        r->rc |= -ENOMEM;
    } else {
        r_bulk(r, text);
    }
    free(text);
    json_decref(doc);
}

static void
do_info(reply *r, const cmd_client *client) {
    const ringside *d = r->d;
    const view *v = &d->view;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL) {
        r->rc |= -ENOMEM;
        return;
    }
    uint64_t up = (daemon_now_ms(d) - d->stats.started_ms) / 1000;
    fprintf(f,
            "# Server\r\nringside_version:%s\r\npid:%ld\r\nuptime_in_seconds:%" PRIu64
            "\r\nconfig_file:%s\r\nsocket:%s\r\n",
            RINGSIDE_VERSION, (long)getpid(), up, d->config_path, d->cfg.socket_path);
    fprintf(f, "\r\n# Ring\r\nname:%s\r\nepoch:%" PRIu64 "\r\nfingerprint:%s\r\nsource:%s\r\n",
            d->cfg.ring_name, v->epoch, v->ring ? rs_ring_fingerprint(v->ring) : "", v->source);
    if (v->ring != NULL) {
        const rs_ring_params *p = rs_ring_params_of(v->ring);
        fprintf(f,
                "algorithm:%s\r\nhash:%s\r\nreplicas:%u\r\nnodes:%zu\r\npoints:%zu\r\n"
                "imbalance:%.4f\r\n",
                rs_algorithm_name(p->algorithm), rs_hash_name(p->hash), p->replicas,
                rs_ring_node_count(v->ring), rs_ring_point_count(v->ring),
                rs_ring_imbalance(v->ring));
    }
    fprintf(f,
            "enabled_nodes:%u\r\nhealthy_nodes:%u\r\nusable_nodes:%u\r\npanic:%d\r\n"
            "health_policy:%s\r\n",
            v->health.enabled, v->health.healthy, v->health.usable, v->health.panic,
            rs_health_policy_name(v->policy));
    fprintf(f,
            "\r\n# Clients\r\nconnected_clients:%zu\r\nsubscribers:%zu\r\n"
            "total_connections:%" PRIu64 "\r\nrejected_connections:%" PRIu64
            "\r\nprotocol_errors:%" PRIu64 "\r\nslow_clients_closed:%" PRIu64
            "\r\nidle_clients_closed:%" PRIu64 "\r\n",
            client->clients, client->subscribers, d->stats.connections_total,
            d->stats.connections_rejected, d->stats.protocol_errors, d->stats.slow_clients_closed,
            d->stats.idle_clients_closed);
    fprintf(f, "\r\n# Commands\r\n");
    for (int i = 0; i < CMD_COUNT; i++) {
        if (d->stats.commands[i] > 0) {
            fprintf(f, "cmd_%s:%" PRIu64 "\r\n", cmd_names[i], d->stats.commands[i]);
        }
    }
    fprintf(f, "error_replies:%" PRIu64 "\r\n", d->stats.errors);
    source_info(d->src, f);
    fprintf(f,
            "\r\n# Persistence\r\nstate_dir:%s\r\nstate_writes:%" PRIu64
            "\r\nstate_write_failures:%" PRIu64 "\r\nrebuilds:%" PRIu64
            "\r\nconfig_reloads:%" PRIu64 "\r\nconfig_reload_failures:%" PRIu64 "\r\n",
            d->cfg.state_dir, d->stats.state_writes, d->stats.state_write_failures,
            d->stats.rebuilds, d->stats.config_reloads, d->stats.config_reload_failures);
    if (fclose(f) != 0 || text == NULL) {
        free(text);
        r->rc |= -ENOMEM;
        return;
    }
    r->rc |= rs_resp_put_bulk(r->out, text, len);
    free(text);
}

static bool
is_ring_channel(const rs_resp_arg *a) {
    return a->len == 4 && strncasecmp(a->ptr, "ring", 4) == 0;
}

int
commands_put_ring_message(const ringside *d, rs_buf *out) {
    char msg[64];
    snprintf(msg, sizeof(msg), "%" PRIu64 " %s", d->view.epoch,
             d->view.ring ? rs_ring_fingerprint(d->view.ring) : "-");
    int rc = rs_resp_put_array(out, 3);
    rc |= rs_resp_put_bulk_str(out, "message");
    rc |= rs_resp_put_bulk_str(out, "ring");
    rc |= rs_resp_put_bulk_str(out, msg);
    return rc;
}

cmd_action
commands_execute(ringside *d, const rs_resp_cmd *cmd, const cmd_client *client, rs_buf *out) {
    reply r = {.d = d, .out = out, .rc = 0};
    int c = lookup_cmd(&cmd->argv[0]);
    size_t argc = cmd->argc;
    cmd_action act = CMD_ACT_NONE;
    d->stats.commands[c]++;

    /* A subscriber may only (un)subscribe, ping and quit, as in Redis. */
    if (client->subscribed && c != CMD_SUBSCRIBE && c != CMD_UNSUBSCRIBE && c != CMD_PING &&
        c != CMD_QUIT) {
        r_err(&r, "ERR only SUBSCRIBE, UNSUBSCRIBE, PING and QUIT are allowed while subscribed");
        return r.rc ? CMD_ACT_CLOSE : act;
    }
    switch (c) {
    case CMD_PING:
        if (argc > 2) {
            wrong_args(&r, c);
        } else if (client->subscribed) {
            r_array(&r, 2);
            r_bulk(&r, "pong");
            r.rc |= rs_resp_put_bulk(out, argc == 2 ? cmd->argv[1].ptr : "",
                                     argc == 2 ? cmd->argv[1].len : 0);
        } else if (argc == 2) {
            r.rc |= rs_resp_put_bulk(out, cmd->argv[1].ptr, cmd->argv[1].len);
        } else {
            r.rc |= rs_resp_put_simple(out, "PONG");
        }
        break;
    case CMD_LOOKUP:
        if (argc != 2) {
            wrong_args(&r, c);
        } else if (key_ok(&r, &cmd->argv[1]) && have_ring(&r)) {
            do_lookup(&r, &cmd->argv[1]);
        }
        break;
    case CMD_LOOKUPN:
        if (argc != 3) {
            wrong_args(&r, c);
        } else {
            do_lookupn(&r, cmd);
        }
        break;
    case CMD_MLOOKUP:
        if (argc < 2) {
            wrong_args(&r, c);
        } else {
            do_mlookup(&r, cmd);
        }
        break;
    case CMD_ROUTE:
        if (argc != 2) {
            wrong_args(&r, c);
        } else if (key_ok(&r, &cmd->argv[1])) {
            if (d->view.ring == NULL) {
                r_err(&r, "NORING no usable nodes");
            } else {
                do_route(&r, &cmd->argv[1]);
            }
        }
        break;
    case CMD_RING:
        if (argc != 1) {
            wrong_args(&r, c);
        } else {
            do_ring(&r);
        }
        break;
    case CMD_NODES:
        if (argc != 1) {
            wrong_args(&r, c);
        } else {
            do_nodes(&r);
        }
        break;
    case CMD_DUMP:
        if (argc != 1) {
            wrong_args(&r, c);
        } else if (d->view.ring == NULL) {
            r_err(&r, "NORING no usable nodes");
        } else {
            do_dump(&r);
        }
        break;
    case CMD_SUBSCRIBE:
        if (argc != 2) {
            wrong_args(&r, c);
        } else if (!is_ring_channel(&cmd->argv[1])) {
            r_err(&r, "ERR unknown channel '%.*s' (the only channel is 'ring')",
                  (int)(cmd->argv[1].len > 64 ? 64 : cmd->argv[1].len), cmd->argv[1].ptr);
        } else {
            r_array(&r, 3);
            r_bulk(&r, "subscribe");
            r_bulk(&r, "ring");
            r_int(&r, 1);
            act = CMD_ACT_SUBSCRIBE;
        }
        break;
    case CMD_UNSUBSCRIBE:
        if (argc > 2 || (argc == 2 && !is_ring_channel(&cmd->argv[1]))) {
            r_err(&r, "ERR usage: UNSUBSCRIBE [ring]");
        } else {
            r_array(&r, 3);
            r_bulk(&r, "unsubscribe");
            r_bulk(&r, "ring");
            r_int(&r, 0);
            act = CMD_ACT_UNSUBSCRIBE;
        }
        break;
    case CMD_INFO:
        do_info(&r, client);
        break;
    case CMD_COMMAND:
        /* redis-cli asks for COMMAND DOCS when it starts interactively. */
        r_array(&r, 0);
        break;
    case CMD_QUIT:
        r.rc |= rs_resp_put_simple(out, "OK");
        act = CMD_ACT_CLOSE;
        break;
    default:
        r_err(&r, "ERR unknown command '%.*s'",
              (int)(cmd->argv[0].len > 64 ? 64 : cmd->argv[0].len), cmd->argv[0].ptr);
        break;
    }
    return r.rc != 0 ? CMD_ACT_CLOSE : act;
}
