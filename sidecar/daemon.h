/* The ringside daemon: owns the loop, the config, the current view (ring + health +
 * epoch), the socket server, persistence and signals. */
#ifndef RS_DAEMON_H
#define RS_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "rs_config.h"
#include "rs_health.h"
#include "rs_ring.h"

/* What lookups read. Replaced whole on every change; ring may be NULL (no ring yet). */
typedef struct view {
    rs_ring *ring;
    uint8_t *healthy; /* per ring node, 1 = healthy */
    uint8_t *usable;  /* per ring node, what lookups may return */
    rs_health_summary health;
    rs_health_policy policy;
    uint64_t epoch;
    int64_t last_change; /* unix seconds */
    char source[32];     /* "static", "snapshot", "consul-kv", ... */
    uint64_t consul_index;
} view;

/* Counters shown by INFO (and, later, /metrics). */
typedef struct stats {
    uint64_t started_ms;
    uint64_t connections_total;
    uint64_t connections_rejected; /* max clients or peer credentials */
    uint64_t commands[16];         /* by command (see commands.h) */
    uint64_t errors;               /* error replies sent */
    uint64_t protocol_errors;
    uint64_t slow_clients_closed;
    uint64_t idle_clients_closed;
    uint64_t rebuilds;
    double last_rebuild_ms;     /* time to build the last new ring */
    double last_moved_fraction; /* of the key space, by the last ring change */
    uint64_t state_writes;
    uint64_t state_write_failures;
    uint64_t config_reloads;
    uint64_t config_reload_failures;
} stats;

typedef struct ringside ringside;
typedef struct server server;
typedef struct consul_source consul_source;
typedef struct http_server http_server;

struct ringside {
    uv_loop_t *loop;
    const char *config_path;
    rs_config cfg;
    view view;
    uint64_t epoch_floor; /* from a snapshot too old to serve: epochs stay above it */
    stats stats;
    server *srv;
    consul_source *src; /* Consul watches; NULL for static membership */
    http_server *http;  /* HTTP endpoint; NULL when http.enabled is false */
    int closing;        /* handles still closing during a stop */
    uv_signal_t sig_hup, sig_term, sig_int;
    uv_timer_t stop_timer;
    bool stopping;
    int exit_code;
};

/* Load config_path, start serving, run the loop until SIGTERM/SIGINT. Returns the
 * process exit code (0 on a graceful stop, 1 when startup fails). */
int daemon_run(const char *config_path);

/* Apply a membership update (the one path every source feeds): build the ring if the
 * parameters or node set changed, recompute the health view, bump the epoch, write the
 * snapshot and notify subscribers. healthy[i] belongs to nodes[i]. No change, no bump.
 * Returns 0 (applied or unchanged) or a negative code with err filled (old view kept). */
int daemon_apply(ringside *d, const rs_ring_params *p, const rs_node *nodes, const uint8_t *healthy,
                 size_t n, const char *source, rs_error *err);

/* The same for a ring the caller built: takes ownership of ring; healthy[i] belongs to
 * ring node i (the caller keeps the array). consul_index is recorded in the view. */
void daemon_install(ringside *d, rs_ring *ring, const uint8_t *healthy, const char *source,
                    uint64_t consul_index);

uint64_t daemon_now_ms(const ringside *d);

/* Read a whole regular file of at most max bytes into a malloc'd, NUL-terminated buffer.
 * Returns 0, or a negative code with err naming the path and the reason. */
int daemon_read_file(const char *path, size_t max, char **out, size_t *len, rs_error *err);

#endif
