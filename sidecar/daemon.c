/* The daemon's life: load the config and the snapshot, serve, apply membership changes
 * (epoch, snapshot, pushes), reload on SIGHUP, stop gracefully on SIGTERM/SIGINT. */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "persist.h"
#include "rs_state.h"
#include "server.h"
#include "source.h"

#define STOP_DEADLINE_MS 3000

uint64_t
daemon_now_ms(const ringside *d) {
    return uv_now(d->loop);
}

static int64_t
unix_now(void) {
    return (int64_t)time(NULL);
}

/* Read a whole file of at most max bytes. Returns 0 with a malloc'd, NUL-terminated
 * buffer, or a negative code with err. */
int
daemon_read_file(const char *path, size_t max, char **out, size_t *len, rs_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err->msg, sizeof(err->msg), "%s: %s", path, strerror(errno));
        return -errno;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err->msg, sizeof(err->msg), "%s: not a regular file", path);
        close(fd);
        return -EINVAL;
    }
    if ((size_t)st.st_size > max) {
        snprintf(err->msg, sizeof(err->msg), "%s: too large (%lld bytes, max %zu)", path,
                 (long long)st.st_size, max);
        close(fd);
        return -EFBIG;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

static int
load_config(const char *path, rs_config *cfg, rs_error *err) {
    char *text;
    size_t len;
    int rc = daemon_read_file(path, RS_CONFIG_MAX_BYTES, &text, &len, err);
    if (rc != 0) {
        return rc;
    }
    rc = rs_config_parse(text, len, cfg, err);
    free(text);
    return rc;
}

static void
view_free(view *v) {
    rs_ring_unref(v->ring);
    free(v->healthy);
    free(v->usable);
    memset(v, 0, sizeof(*v));
}

/* ---- persistence ---- */

static void
write_state(ringside *d) {
    const view *v = &d->view;
    if (v->ring == NULL) {
        return;
    }
    rs_state st;
    rs_state_init(&st);
    snprintf(st.ring, sizeof(st.ring), "%s", d->cfg.ring_name);
    snprintf(st.source, sizeof(st.source), "%s", v->source);
    st.epoch = v->epoch;
    st.params = *rs_ring_params_of(v->ring);
    st.kv_index = v->consul_index;
    st.written_at = unix_now();
    int rc = 0;
    for (size_t i = 0; i < rs_ring_node_count(v->ring) && rc == 0; i++) {
        const rs_ring_node *n = rs_ring_node_at(v->ring, i);
        rs_node node = {.id = n->id,
                        .address = n->address,
                        .zone = n->zone,
                        .weight = n->weight,
                        .enabled = n->enabled};
        rc = rs_state_add_node(&st, &node, v->healthy[i] != 0);
    }
    rs_error err = {{0}};
    if (rc == 0) {
        rc = persist_write(d->cfg.state_dir, d->cfg.ring_name, &st, &err);
    } else {
        snprintf(err.msg, sizeof(err.msg), "out of memory");
    }
    log_line l;
    if (rc == 0) {
        d->stats.state_writes++;
        log_begin(&l, RS_LOG_DEBUG, "state_written");
        log_str(&l, "dir", d->cfg.state_dir);
        log_u64(&l, "epoch", v->epoch);
    } else {
        d->stats.state_write_failures++;
        log_begin(&l, RS_LOG_ERROR, "state_write_failed");
        log_str(&l, "reason", err.msg);
    }
    log_end(&l);
    rs_state_free(&st);
}

/* ---- applying changes ---- */

/* A bounded, comma-separated list of ids for a log line: ids that do not fit are
 * counted and summarised as ",...(+N more)". */
typedef struct id_list {
    char text[1024];
    size_t len;
    size_t count, dropped;
} id_list;

static void
id_list_add(id_list *l, const char *id) {
    l->count++;
    size_t need = strlen(id) + (l->len ? 1 : 0);
    /* Keep room for the summary of what may be dropped later. */
    if (l->dropped > 0 || l->len + need + 24 >= sizeof(l->text)) {
        l->dropped++;
        return;
    }
    l->len +=
        (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len, "%s%s", l->len ? "," : "", id);
}

static const char *
id_list_str(id_list *l) {
    if (l->dropped > 0) {
        snprintf(l->text + l->len, sizeof(l->text) - l->len, ",...(+%zu more)", l->dropped);
    }
    return l->text;
}

static void
log_ring_change(const rs_ring *old, const rs_ring *new_ring, uint64_t epoch, const char *source,
                double moved) {
    id_list added = {.len = 0}, removed = {.len = 0};
    uint64_t points_added = 0;
    for (size_t i = 0; i < rs_ring_node_count(new_ring); i++) {
        const rs_ring_node *n = rs_ring_node_at(new_ring, i);
        int j = old ? rs_ring_find(old, n->id) : -1;
        bool was = j >= 0 && rs_ring_node_at(old, (size_t)j)->enabled;
        if (n->enabled && !was) {
            points_added += n->points;
            id_list_add(&added, n->id);
        }
    }
    for (size_t i = 0; old != NULL && i < rs_ring_node_count(old); i++) {
        const rs_ring_node *n = rs_ring_node_at(old, i);
        int j = rs_ring_find(new_ring, n->id);
        bool still = j >= 0 && rs_ring_node_at(new_ring, (size_t)j)->enabled;
        if (n->enabled && !still) {
            id_list_add(&removed, n->id);
        }
    }
    log_line l;
    log_begin(&l, RS_LOG_INFO, "ring_change");
    log_u64(&l, "epoch", epoch);
    log_str(&l, "source", source);
    log_str(&l, "fingerprint", rs_ring_fingerprint(new_ring));
    log_str(&l, "added", id_list_str(&added));
    log_str(&l, "removed", id_list_str(&removed));
    log_u64(&l, "nodes", rs_ring_enabled_count(new_ring));
    log_u64(&l, "points", rs_ring_point_count(new_ring));
    log_u64(&l, "points_added", points_added);
    log_f(&l, "moved", moved);
    log_f(&l, "imbalance", rs_ring_imbalance(new_ring));
    log_end(&l);
}

static void
log_health_change(const view *old, const view *v) {
    for (size_t i = 0; i < rs_ring_node_count(v->ring); i++) {
        const rs_ring_node *n = rs_ring_node_at(v->ring, i);
        int j = old->ring ? rs_ring_find(old->ring, n->id) : -1;
        bool was = j >= 0 ? old->healthy[j] != 0 : true;
        if (was != (v->healthy[i] != 0)) {
            log_line l;
            log_begin(&l, RS_LOG_INFO, "health_change");
            log_str(&l, "node", n->id);
            log_str(&l, "health", v->healthy[i] ? "passing" : "critical");
            log_u64(&l, "epoch", v->epoch);
            log_end(&l);
        }
    }
    if (old->health.panic != v->health.panic) {
        log_line l;
        log_begin(&l, v->health.panic ? RS_LOG_WARN : RS_LOG_INFO, "panic_mode");
        log_bool(&l, "active", v->health.panic);
        log_u64(&l, "healthy", v->health.healthy);
        log_u64(&l, "enabled", v->health.enabled);
        log_end(&l);
    }
}

/* Install a ring with health (indexed like the ring) as the new view if it differs
 * from the current one. Takes ownership of ring and healthy. Returns true if the
 * view changed (epoch bumped). */
static bool
install(ringside *d, rs_ring *ring, uint8_t *healthy, const char *source, uint64_t min_epoch,
        uint64_t consul_index) {
    view *cur = &d->view;
    size_t n = rs_ring_node_count(ring);
    bool same_ring =
        cur->ring != NULL && strcmp(rs_ring_fingerprint(cur->ring), rs_ring_fingerprint(ring)) == 0;
    bool same_health = same_ring && memcmp(cur->healthy, healthy, n) == 0;
    if (same_ring && same_health && cur->policy == d->cfg.health_policy) {
        /* Confirmed by its source: a snapshot view becomes that source's view. */
        snprintf(cur->source, sizeof(cur->source), "%s", source);
        cur->consul_index = consul_index;
        uint8_t *usable = malloc(n ? n : 1);
        if (usable != NULL) {
            /* The panic threshold may have changed on reload: recompute quietly. */
            rs_health_compute(cur->ring, cur->healthy, cur->policy, d->cfg.panic_threshold, usable,
                              &cur->health);
            free(cur->usable);
            cur->usable = usable;
        }
        rs_ring_unref(ring);
        free(healthy);
        return false;
    }
    uint8_t *usable = malloc(n ? n : 1);
    if (usable == NULL) {
        rs_ring_unref(ring);
        free(healthy);
        log_msg(RS_LOG_ERROR, "update_rejected", "reason", "out of memory");
        return false;
    }
    view next = {0};
    next.ring = ring;
    next.healthy = healthy;
    next.usable = usable;
    next.policy = d->cfg.health_policy;
    rs_health_compute(ring, healthy, next.policy, d->cfg.panic_threshold, usable, &next.health);
    next.epoch = (cur->epoch > min_epoch ? cur->epoch : min_epoch) + 1;
    next.last_change = unix_now();
    next.consul_index = consul_index;
    snprintf(next.source, sizeof(next.source), "%s", source);
    if (!same_ring) {
        d->stats.rebuilds++;
        d->stats.last_moved_fraction = cur->ring ? rs_ring_moved_fraction(cur->ring, ring) : 1.0;
        log_ring_change(cur->ring, ring, next.epoch, source, d->stats.last_moved_fraction);
    }
    log_health_change(cur, &next);
    view_free(cur);
    *cur = next;
    /* Subscribers first: the snapshot's fsyncs take milliseconds. */
    if (d->srv != NULL) {
        server_publish(d->srv);
    }
    write_state(d);
    return true;
}

int
daemon_apply(ringside *d, const rs_ring_params *p, const rs_node *nodes, const uint8_t *healthy,
             size_t n, const char *source, rs_error *err) {
    rs_ring *ring = NULL;
    uint64_t t0 = uv_hrtime();
    int rc = rs_ring_build(p, nodes, n, &ring, err);
    d->stats.last_rebuild_ms = (double)(uv_hrtime() - t0) / 1e6;
    if (rc != 0) {
        log_line l;
        log_begin(&l, RS_LOG_WARN, "update_rejected");
        log_str(&l, "source", source);
        log_str(&l, "reason", err->msg);
        log_end(&l);
        return rc;
    }
    size_t rn = rs_ring_node_count(ring);
    uint8_t *h = calloc(rn ? rn : 1, 1);
    if (h == NULL) {
        rs_ring_unref(ring);
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        int j = rs_ring_find(ring, nodes[i].id);
        if (j >= 0) {
            h[j] = healthy == NULL || healthy[i];
        }
    }
    install(d, ring, h, source, d->epoch_floor, d->view.consul_index);
    return 0;
}

void
daemon_install(ringside *d, rs_ring *ring, const uint8_t *healthy, const char *source,
               uint64_t consul_index) {
    size_t n = rs_ring_node_count(ring);
    uint8_t *h = malloc(n ? n : 1);
    if (h == NULL) {
        rs_ring_unref(ring);
        log_msg(RS_LOG_ERROR, "update_rejected", "reason", "out of memory");
        return;
    }
    memcpy(h, healthy, n);
    install(d, ring, h, source, d->epoch_floor, consul_index);
}

static int
apply_static(ringside *d, rs_error *err) {
    const rs_config *cfg = &d->cfg;
    rs_node *nodes = calloc(cfg->n_nodes ? cfg->n_nodes : 1, sizeof(*nodes));
    uint8_t *healthy = calloc(cfg->n_nodes ? cfg->n_nodes : 1, 1);
    if (nodes == NULL || healthy == NULL) {
        free(nodes);
        free(healthy);
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        nodes[i] = cfg->nodes[i].node;
        healthy[i] = cfg->nodes[i].healthy;
    }
    int rc = daemon_apply(d, &cfg->params, nodes, healthy, cfg->n_nodes, "static", err);
    free(nodes);
    free(healthy);
    return rc;
}

/* Serve the last snapshot at once: it is what the fleet agreed on last time. */
static void
load_snapshot(ringside *d) {
    rs_state st;
    rs_state_init(&st);
    rs_error err = {{0}};
    int rc = persist_load(d->cfg.state_dir, d->cfg.ring_name, unix_now(), d->cfg.max_state_age_s,
                          &st, &err);
    if (rc == -ENOENT) {
        log_msg(RS_LOG_INFO, "state_missing", "dir", d->cfg.state_dir);
        return;
    }
    if (rc != 0) {
        if (rc == -ESTALE) {
            d->epoch_floor = st.epoch;
        }
        log_line l;
        log_begin(&l, RS_LOG_WARN, "state_rejected");
        log_str(&l, "reason", err.msg);
        log_end(&l);
        rs_state_free(&st);
        return;
    }
    rs_node *nodes = calloc(st.n_nodes ? st.n_nodes : 1, sizeof(*nodes));
    rs_ring *ring = NULL;
    uint8_t *healthy = NULL;
    if (nodes != NULL) {
        for (size_t i = 0; i < st.n_nodes; i++) {
            nodes[i] = st.nodes[i].node;
        }
        rc = rs_ring_build(&st.params, nodes, st.n_nodes, &ring, &err);
    } else {
        rc = -ENOMEM;
    }
    if (rc == 0) {
        healthy = calloc(rs_ring_node_count(ring), 1);
        for (size_t i = 0; healthy != NULL && i < st.n_nodes; i++) {
            int j = rs_ring_find(ring, st.nodes[i].node.id);
            if (j >= 0) {
                healthy[j] = st.nodes[i].healthy;
            }
        }
    }
    if (rc != 0 || healthy == NULL) {
        log_line l;
        log_begin(&l, RS_LOG_WARN, "state_rejected");
        log_str(&l, "reason", rc != 0 ? err.msg : "out of memory");
        log_end(&l);
        rs_ring_unref(ring);
    } else {
        /* The snapshot's epoch continues: the view takes it as is. */
        view *v = &d->view;
        v->ring = ring;
        v->healthy = healthy;
        v->usable = malloc(rs_ring_node_count(ring));
        v->policy = d->cfg.health_policy;
        v->epoch = st.epoch;
        v->last_change = st.written_at;
        v->consul_index = st.kv_index;
        snprintf(v->source, sizeof(v->source), "snapshot");
        if (v->usable == NULL) {
            view_free(v);
        } else {
            rs_health_compute(ring, healthy, v->policy, d->cfg.panic_threshold, v->usable,
                              &v->health);
            log_line l;
            log_begin(&l, RS_LOG_INFO, "state_loaded");
            log_u64(&l, "epoch", st.epoch);
            log_str(&l, "fingerprint", rs_ring_fingerprint(ring));
            log_u64(&l, "nodes", rs_ring_node_count(ring));
            log_i64(&l, "age_s", unix_now() - st.written_at);
            log_end(&l);
        }
    }
    free(nodes);
    rs_state_free(&st);
}

/* ---- signals ---- */

static void
on_closed_noop(uv_handle_t *h) {
    (void)h;
}

static void
finish_stop(ringside *d) {
    write_state(d);
    if (unlink(d->cfg.socket_path) != 0 && errno != ENOENT) {
        log_msg(RS_LOG_WARN, "socket_remove_failed", "path", d->cfg.socket_path);
    }
    uv_timer_stop(&d->stop_timer);
    uv_close((uv_handle_t *)&d->stop_timer, on_closed_noop);
    uv_close((uv_handle_t *)&d->sig_hup, on_closed_noop);
    uv_close((uv_handle_t *)&d->sig_term, on_closed_noop);
    uv_close((uv_handle_t *)&d->sig_int, on_closed_noop);
    log_line l;
    log_begin(&l, RS_LOG_INFO, "stopped");
    log_u64(&l, "epoch", d->view.epoch);
    log_end(&l);
}

static void
on_stop_deadline(uv_timer_t *t) {
    ringside *d = t->data;
    log_msg(RS_LOG_WARN, "stop_deadline", "reason", "closing clients that did not finish");
    server_force_close(d->srv);
}

/* The server and the Consul watches close in parallel; the last one finishes. */
static void
part_stopped(ringside *d) {
    if (--d->closing == 0) {
        finish_stop(d);
    }
}

static void
daemon_stop(ringside *d, const char *why) {
    if (d->stopping) {
        return;
    }
    d->stopping = true;
    log_msg(RS_LOG_INFO, "stopping", "signal", why);
    uv_timer_start(&d->stop_timer, on_stop_deadline, STOP_DEADLINE_MS, 0);
    d->closing = 1 + (d->src != NULL) + (d->http != NULL);
    if (d->src != NULL) {
        source_stop(d->src, part_stopped);
    }
    if (d->http != NULL) {
        http_stop(d->http, part_stopped);
    }
    server_stop(d->srv, part_stopped);
}

static void
reload(ringside *d) {
    rs_config next;
    rs_config_init(&next);
    rs_error err = {{0}};
    d->stats.config_reloads++;
    int rc = load_config(d->config_path, &next, &err);
    if (rc != 0) {
        d->stats.config_reload_failures++;
        log_line l;
        log_begin(&l, RS_LOG_ERROR, "config_rejected");
        log_str(&l, "file", d->config_path);
        log_str(&l, "reason", err.msg);
        log_str(&l, "action", "keeping the running config");
        log_end(&l);
        return;
    }
    /* What the process is bound to cannot change without a restart. */
    if (strcmp(next.socket_path, d->cfg.socket_path) != 0 ||
        strcmp(next.ring_name, d->cfg.ring_name) != 0 ||
        strcmp(next.state_dir, d->cfg.state_dir) != 0 || next.source != d->cfg.source ||
        strcmp(next.http_address, d->cfg.http_address) != 0 ||
        next.http_enabled != d->cfg.http_enabled) {
        log_msg(RS_LOG_WARN, "config_restart_needed", "fields",
                "listen.socket, ring.name, state_dir, membership.source and http keep their "
                "running values until a restart");
        snprintf(next.socket_path, sizeof(next.socket_path), "%s", d->cfg.socket_path);
        snprintf(next.ring_name, sizeof(next.ring_name), "%s", d->cfg.ring_name);
        snprintf(next.state_dir, sizeof(next.state_dir), "%s", d->cfg.state_dir);
        next.source = d->cfg.source;
        snprintf(next.http_address, sizeof(next.http_address), "%s", d->cfg.http_address);
        next.http_enabled = d->cfg.http_enabled;
    }
    if (d->cfg.source != RS_SOURCE_STATIC &&
        memcmp(&next.consul, &d->cfg.consul, sizeof(next.consul)) != 0) {
        log_msg(RS_LOG_WARN, "config_restart_needed", "fields",
                "membership.consul keeps its running values until a restart");
        next.consul = d->cfg.consul;
    }
    rs_config old = d->cfg;
    d->cfg = next;
    log_configure(d->cfg.log_level, d->cfg.log_format);
    if (d->cfg.source == RS_SOURCE_STATIC) {
        rc = apply_static(d, &err);
    } else if (d->src != NULL) {
        source_refresh(d->src); /* the file's ring parameters are KV config's base */
    }
    if (rc != 0) {
        d->stats.config_reload_failures++;
        d->cfg = old;
        rs_config_free(&next);
        log_configure(d->cfg.log_level, d->cfg.log_format);
        log_line l;
        log_begin(&l, RS_LOG_ERROR, "config_rejected");
        log_str(&l, "file", d->config_path);
        log_str(&l, "reason", err.msg);
        log_str(&l, "action", "keeping the running config");
        log_end(&l);
        return;
    }
    rs_config_free(&old);
    if (server_reconfigure(d->srv) != 0) {
        log_msg(RS_LOG_ERROR, "config_limits", "reason",
                "out of memory: request limits keep their previous values");
    }
    log_line l;
    log_begin(&l, RS_LOG_INFO, "config_reloaded");
    log_str(&l, "file", d->config_path);
    log_u64(&l, "epoch", d->view.epoch);
    log_end(&l);
}

static void
on_signal(uv_signal_t *h, int signum) {
    ringside *d = h->data;
    if (signum == SIGHUP) {
        if (!d->stopping) {
            reload(d);
        }
    } else {
        daemon_stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
    }
}

int
daemon_run(const char *config_path) {
    ringside d;
    memset(&d, 0, sizeof(d));
    d.config_path = config_path;
    rs_config_init(&d.cfg);
    rs_error err = {{0}};
    int rc = load_config(config_path, &d.cfg, &err);
    if (rc != 0) {
        log_msg(RS_LOG_ERROR, "config_rejected", "reason", err.msg);
        rs_config_free(&d.cfg);
        return 1;
    }
    log_configure(d.cfg.log_level, d.cfg.log_format);
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    d.loop = &loop;
    d.stats.started_ms = uv_now(&loop);

    /* The socket first: a second instance must fail before touching the state. Nobody
     * is answered before uv_run, so the view below is in place for the first client. */
    rc = server_start(&d, &err);
    if (rc != 0) {
        log_msg(RS_LOG_ERROR, "startup_failed", "reason", err.msg);
        rs_config_free(&d.cfg);
        uv_loop_close(&loop);
        return 1;
    }
    rc = http_start(&d, &err);
    if (rc != 0) {
        log_msg(RS_LOG_ERROR, "startup_failed", "reason", err.msg);
        server_stop(d.srv, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        server_free(d.srv);
        unlink(d.cfg.socket_path);
        rs_config_free(&d.cfg);
        uv_loop_close(&loop);
        return 1;
    }
    load_snapshot(&d);
    if (d.cfg.source == RS_SOURCE_STATIC) {
        rc = apply_static(&d, &err);
    } else {
        /* Consul: serve the snapshot now and reconcile once Consul answers. Without a
         * snapshot, static nodes in the file (if any) serve meanwhile. */
        if (d.view.ring == NULL && d.cfg.n_nodes > 0) {
            rc = apply_static(&d, &err);
        }
        if (rc == 0) {
            rc = source_start(&d, &err);
        }
        if (rc != 0) {
            log_msg(RS_LOG_ERROR, "startup_failed", "reason", err.msg);
            server_stop(d.srv, NULL);
            if (d.http != NULL) {
                http_stop(d.http, NULL);
            }
            uv_run(&loop, UV_RUN_DEFAULT);
            server_free(d.srv);
            view_free(&d.view);
            rs_config_free(&d.cfg);
            uv_loop_close(&loop);
            return 1;
        }
    }
    /* A snapshot-only view with a bad static config still serves; with nothing at all,
     * lookups answer NORING until a ring arrives. */
    if (d.view.ring == NULL) {
        log_msg(RS_LOG_WARN, "no_ring", "reason",
                rc != 0 ? err.msg : "no snapshot yet: lookups answer NORING until Consul does");
    }

    uv_timer_init(&loop, &d.stop_timer);
    d.stop_timer.data = &d;
    uv_signal_init(&loop, &d.sig_hup);
    uv_signal_init(&loop, &d.sig_term);
    uv_signal_init(&loop, &d.sig_int);
    d.sig_hup.data = d.sig_term.data = d.sig_int.data = &d;
    uv_signal_start(&d.sig_hup, on_signal, SIGHUP);
    uv_signal_start(&d.sig_term, on_signal, SIGTERM);
    uv_signal_start(&d.sig_int, on_signal, SIGINT);

    log_line l;
    log_begin(&l, RS_LOG_INFO, "started");
    log_str(&l, "version", RINGSIDE_VERSION);
    log_str(&l, "socket", d.cfg.socket_path);
    log_str(&l, "ring", d.cfg.ring_name);
    log_u64(&l, "epoch", d.view.epoch);
    log_str(&l, "fingerprint", d.view.ring ? rs_ring_fingerprint(d.view.ring) : "");
    log_end(&l);

    uv_run(&loop, UV_RUN_DEFAULT);

    server_free(d.srv);
    view_free(&d.view);
    rs_config_free(&d.cfg);
    rc = uv_loop_close(&loop);
    if (rc != 0) {
        log_msg(RS_LOG_WARN, "loop_close", "reason", uv_strerror(rc));
    }
    return d.exit_code;
}
