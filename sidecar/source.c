/* Consul membership sources: KV nodes (optionally health-gated) or service instances,
 * through the mass-removal guard, into daemon_install. */
#include "source.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul.h"
#include "log.h"
#include "rs_membership.h"

#define MAX_REMEMBERED_REJECTIONS RS_KV_MAX_REJECTIONS

struct consul_source {
    ringside *d;
    consul_client *client;
    consul_watch *kv;     /* consul-kv: the prefix */
    consul_watch *health; /* consul-service, or consul-kv with health_service */
    rs_kv_memo *memo;
    rs_membership kvm; /* last KV membership */
    bool have_kv;
    char *health_body; /* last health listing */
    size_t health_len;
    bool have_health;
    uint64_t kv_index, health_index;
    void (*done)(ringside *d);

    /* The update the guard holds, if any. */
    rs_ring *held;
    uint8_t *held_healthy;
    char held_reason[256];
    uint64_t updates_held, updates_rejected, consul_errors;
    uint64_t index_resets_seen; /* of both watches, to log each reset once */

    /* Rejections already logged ("key\treason"), so a bad key is logged once. */
    char logged[MAX_REMEMBERED_REJECTIONS][512];
    size_t n_logged;
};

static const char *
source_name(const consul_source *s) {
    return s->d->cfg.source == RS_SOURCE_CONSUL_KV ? "consul-kv" : "consul-service";
}

static void
log_rejections(consul_source *s, const rs_membership *m) {
    char now[MAX_REMEMBERED_REJECTIONS][512];
    size_t n = 0;
    for (size_t i = 0; i < m->n_rejections && n < MAX_REMEMBERED_REJECTIONS; i++) {
        const rs_kv_rejection *r = &m->rejections[i];
        snprintf(now[n], sizeof(now[n]), "%s\t%s", r->key, r->reason);
        bool seen = false;
        for (size_t j = 0; j < s->n_logged && !seen; j++) {
            seen = strcmp(s->logged[j], now[n]) == 0;
        }
        if (!seen) {
            s->updates_rejected++;
            log_line l;
            log_begin(&l, RS_LOG_WARN, "update_rejected");
            log_str(&l, "source", source_name(s));
            log_str(&l, "key", r->key);
            log_str(&l, "reason", r->reason);
            log_str(&l, "action", "keeping the key's last good value");
            log_end(&l);
        }
        n++;
    }
    memcpy(s->logged, now, n * sizeof(now[0]));
    s->n_logged = n;
}

static void
clear_held(consul_source *s) {
    rs_ring_unref(s->held);
    free(s->held_healthy);
    s->held = NULL;
    s->held_healthy = NULL;
    s->held_reason[0] = '\0';
}

/* Build what the watches say into a ring and hand it over, unless the guard holds it. */
static void
recompute(consul_source *s) {
    ringside *d = s->d;
    rs_membership m = {0};
    rs_error err = {{0}};
    int rc = 0;
    if (d->cfg.source == RS_SOURCE_CONSUL_KV) {
        bool gated = d->cfg.consul.health_service[0] != '\0';
        if (!s->have_kv || (gated && !s->have_health)) {
            return; /* wait for every watch's first answer */
        }
        rc = rs_membership_copy(&s->kvm, &m);
        if (rc == 0 && gated) {
            rc = rs_membership_apply_health(&m, s->health_body, s->health_len, &err);
        }
    } else {
        if (!s->have_health) {
            return;
        }
        rc = rs_health_to_membership(s->health_body, s->health_len, &d->cfg.params, &m, &err);
        if (rc == 0) {
            m.max_removal_fraction = d->cfg.consul.max_removal_fraction;
            log_rejections(s, &m);
        }
    }
    if (rc != 0) {
        s->updates_rejected++;
        log_line l;
        log_begin(&l, RS_LOG_WARN, "update_rejected");
        log_str(&l, "source", source_name(s));
        log_str(&l, "reason", rc == -ENOMEM ? "out of memory" : err.msg);
        log_end(&l);
        rs_membership_free(&m);
        return;
    }

    rs_ring *ring = NULL;
    rs_error berr = {{0}};
    if (m.n_nodes == 0) {
        /* An empty listing (a deleted prefix, every instance gone) never empties the
         * ring, force or not: there is nothing to route to. */
        rs_error_set(&berr, -EINVAL, "the update has no nodes");
        rc = -EINVAL;
    } else {
        uint64_t t0 = uv_hrtime();
        rc = rs_ring_build(&m.params, m.nodes, m.n_nodes, &ring, &berr);
        d->stats.last_rebuild_ms = (double)(uv_hrtime() - t0) / 1e6;
    }
    if (rc != 0) {
        bool first = strcmp(s->held_reason, berr.msg) != 0;
        clear_held(s);
        snprintf(s->held_reason, sizeof(s->held_reason), "%s", berr.msg);
        if (first) {
            s->updates_held++;
            log_line l;
            log_begin(&l, RS_LOG_WARN, "update_held");
            log_str(&l, "source", source_name(s));
            log_str(&l, "reason", berr.msg);
            log_str(&l, "action", "keeping the last ring");
            log_end(&l);
        }
        rs_membership_free(&m);
        return;
    }
    size_t rn = rs_ring_node_count(ring);
    uint8_t *healthy = calloc(rn ? rn : 1, 1);
    if (healthy == NULL) {
        rs_ring_unref(ring);
        rs_membership_free(&m);
        return;
    }
    for (size_t i = 0; i < m.n_nodes; i++) {
        int j = rs_ring_find(ring, m.nodes[i].id);
        if (j >= 0) {
            healthy[j] = m.healthy[i];
        }
    }

    rs_error gerr = {{0}};
    bool hold = rs_guard_holds(d->view.ring, &m, m.max_removal_fraction, &gerr);
    bool confirmed = strcmp(m.confirm, rs_ring_fingerprint(ring)) == 0;
    if (hold && !m.force && !confirmed) {
        bool first =
            s->held == NULL || strcmp(rs_ring_fingerprint(s->held), rs_ring_fingerprint(ring)) != 0;
        clear_held(s);
        s->held = ring;
        s->held_healthy = healthy;
        snprintf(s->held_reason, sizeof(s->held_reason), "%s", gerr.msg);
        if (first) {
            s->updates_held++;
            log_line l;
            log_begin(&l, RS_LOG_WARN, "update_held");
            log_str(&l, "source", source_name(s));
            log_str(&l, "fingerprint", rs_ring_fingerprint(ring));
            log_str(&l, "reason", gerr.msg);
            log_str(&l, "action", "run 'ringctl ring confirm' or set force in the KV config");
            log_end(&l);
        }
        rs_membership_free(&m);
        return;
    }
    if (hold) {
        log_line l;
        log_begin(&l, RS_LOG_WARN, "update_confirmed");
        log_str(&l, "fingerprint", rs_ring_fingerprint(ring));
        log_str(&l, "by", m.force ? "force" : "confirm");
        log_str(&l, "reason", gerr.msg);
        log_end(&l);
    }
    clear_held(s);
    daemon_install(d, ring, healthy, source_name(s),
                   d->cfg.source == RS_SOURCE_CONSUL_KV ? s->kv_index : s->health_index);
    free(healthy);
    rs_membership_free(&m);
}

void
source_refresh(consul_source *s) {
    recompute(s);
}

/* Consul's index went backwards (a restored or re-elected cluster): the watch reset
 * it and re-read; say so once per reset. */
static void
note_index_reset(consul_source *s, consul_watch *w) {
    uint64_t total = (s->kv ? consul_watch_get_stats(s->kv)->index_resets : 0) +
                     (s->health ? consul_watch_get_stats(s->health)->index_resets : 0);
    if (total > s->index_resets_seen) {
        s->index_resets_seen = total;
        log_line l;
        log_begin(&l, RS_LOG_WARN, "consul_index_reset");
        log_str(&l, "watch", consul_watch_name(w));
        log_u64(&l, "index", consul_watch_get_stats(w)->index);
        log_str(&l, "reason", "X-Consul-Index went backwards; the watch re-read from scratch");
        log_end(&l);
    }
}

static void
on_kv_change(consul_watch *w, int status, const char *body, size_t len, uint64_t index, void *arg) {
    consul_source *s = arg;
    ringside *d = s->d;
    (void)status;
    note_index_reset(s, w);
    rs_membership m = {0};
    rs_error err = {{0}};
    int rc = rs_kv_to_membership(s->memo, body, len, d->cfg.consul.kv_prefix, &d->cfg.params,
                                 d->cfg.consul.max_removal_fraction, &m, &err);
    if (rc != 0) {
        s->updates_rejected++;
        log_line l;
        log_begin(&l, RS_LOG_WARN, "update_rejected");
        log_str(&l, "source", "consul-kv");
        log_str(&l, "reason", err.msg);
        log_end(&l);
        return;
    }
    log_rejections(s, &m);
    rs_membership_free(&s->kvm);
    s->kvm = m;
    s->have_kv = true;
    s->kv_index = index;
    recompute(s);
}

static void
on_health_change(consul_watch *w, int status, const char *body, size_t len, uint64_t index,
                 void *arg) {
    consul_source *s = arg;
    (void)status;
    note_index_reset(s, w);
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return;
    }
    memcpy(copy, body, len);
    copy[len] = '\0';
    free(s->health_body);
    s->health_body = copy;
    s->health_len = len;
    s->have_health = true;
    s->health_index = index;
    recompute(s);
}

static void
on_watch_error(consul_watch *w, const char *message, void *arg) {
    consul_source *s = arg;
    s->consul_errors++;
    const consul_watch_stats *st = consul_watch_get_stats(w);
    log_line l;
    log_begin(&l, RS_LOG_WARN, "consul_error");
    log_str(&l, "watch", consul_watch_name(w));
    log_str(&l, "agent", st->address ? st->address : "");
    log_str(&l, "reason", message);
    log_str(&l, "action", "serving the last ring; retrying");
    log_end(&l);
}

/* Consul settings: the config's, with Consul's environment variables where the config
 * leaves the default. */
static int
settings_from_config(const rs_config *cfg, consul_settings *cs, rs_error *err) {
    consul_settings_init(cs);
    int rc = consul_settings_from_env(cs, err);
    if (rc != 0) {
        return rc;
    }
    rs_config defaults;
    rs_config_init(&defaults);
    if (cs->n_addresses == 0 || strcmp(cfg->consul.address, defaults.consul.address) != 0) {
        snprintf(cs->addresses[0], sizeof(cs->addresses[0]), "%s", cfg->consul.address);
        cs->n_addresses = 1;
    }
    rs_config_free(&defaults);
    if (cfg->consul.token_file[0] != '\0') {
        rc = consul_read_token_file(cfg->consul.token_file, cs->token, sizeof(cs->token), err);
        if (rc != 0) {
            return rc;
        }
    }
    if (cfg->consul.ca_file[0] != '\0') {
        snprintf(cs->ca_file, sizeof(cs->ca_file), "%s", cfg->consul.ca_file);
    }
    if (cfg->consul.cert_file[0] != '\0') {
        snprintf(cs->cert_file, sizeof(cs->cert_file), "%s", cfg->consul.cert_file);
        snprintf(cs->key_file, sizeof(cs->key_file), "%s", cfg->consul.key_file);
    }
    cs->stale = cfg->consul.stale;
    cs->wait_ms = cfg->consul.wait_ms;
    cs->max_stale_ms = cfg->consul.max_stale_ms;
    return 0;
}

int
source_start(ringside *d, rs_error *err) {
    consul_source *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    s->d = d;
    consul_settings cs;
    int rc = settings_from_config(&d->cfg, &cs, err);
    if (rc == 0) {
        rc = rs_kv_memo_new(&s->memo);
        if (rc != 0) {
            rs_error_set(err, rc, "out of memory");
        }
    }
    if (rc == 0) {
        rc = consul_client_new(d->loop, &cs, &s->client, err);
    }
    char path[512];
    if (rc == 0 && d->cfg.source == RS_SOURCE_CONSUL_KV) {
        snprintf(path, sizeof(path), "/v1/kv/%s/?recurse", d->cfg.consul.kv_prefix);
        rc = consul_watch_start(s->client, "kv", path, on_kv_change, on_watch_error, s, &s->kv);
    }
    const char *svc = d->cfg.source == RS_SOURCE_CONSUL_SERVICE ? d->cfg.consul.service
                                                                : d->cfg.consul.health_service;
    if (rc == 0 && svc[0] != '\0') {
        snprintf(path, sizeof(path), "/v1/health/service/%s", svc);
        rc = consul_watch_start(s->client, "health", path, on_health_change, on_watch_error, s,
                                &s->health);
    }
    if (rc != 0) {
        if (err->msg[0] == '\0') {
            rs_error_set(err, rc, "starting the Consul watches failed");
        }
        rs_kv_memo_free(s->memo);
        free(s);
        return rc;
    }
    d->src = s;
    log_line l;
    log_begin(&l, RS_LOG_INFO, "consul_watch_started");
    log_str(&l, "source", source_name(s));
    log_str(&l, "agent", cs.addresses[0]);
    log_u64(&l, "agents", cs.n_addresses);
    if (s->kv != NULL) {
        log_str(&l, "kv_prefix", d->cfg.consul.kv_prefix);
    }
    if (svc[0] != '\0') {
        log_str(&l, "service", svc);
    }
    log_bool(&l, "token", cs.token[0] != '\0');
    log_end(&l);
    return 0;
}

static void
on_client_closed(void *arg) {
    consul_source *s = arg;
    ringside *d = s->d;
    void (*done)(ringside *) = s->done;
    rs_kv_memo_free(s->memo);
    rs_membership_free(&s->kvm);
    free(s->health_body);
    clear_held(s);
    free(s);
    d->src = NULL;
    if (done != NULL) {
        done(d);
    }
}

void
source_stop(consul_source *s, void (*done)(ringside *d)) {
    s->done = done;
    consul_client_close(s->client, on_client_closed, s);
}

const consul_watch *
source_kv_watch(const consul_source *s) {
    return s != NULL ? s->kv : NULL;
}

const consul_watch *
source_health_watch(const consul_source *s) {
    return s != NULL ? s->health : NULL;
}

uint64_t
source_updates_held(const consul_source *s) {
    return s != NULL ? s->updates_held : 0;
}

uint64_t
source_updates_rejected(const consul_source *s) {
    return s != NULL ? s->updates_rejected : 0;
}

uint64_t
source_consul_errors(const consul_source *s) {
    return s != NULL ? s->consul_errors : 0;
}

const char *
source_held_fingerprint(const consul_source *s) {
    return s != NULL && s->held != NULL ? rs_ring_fingerprint(s->held) : "";
}

const char *
source_held_reason(const consul_source *s) {
    return s != NULL ? s->held_reason : "";
}

static void
watch_info(FILE *f, const char *prefix, const consul_watch *w) {
    if (w == NULL) {
        return;
    }
    const consul_watch_stats *st = consul_watch_get_stats(w);
    fprintf(f,
            "%s_agent:%s\r\n%s_index:%" PRIu64 "\r\n%s_requests:%" PRIu64 "\r\n%s_errors:%" PRIu64
            "\r\n%s_changes:%" PRIu64 "\r\n%s_last_contact_ms:%" PRId64 "\r\n%s_last_error:%s\r\n",
            prefix, st->address ? st->address : "", prefix, st->index, prefix, st->requests, prefix,
            st->errors, prefix, st->changes, prefix, st->last_contact_ms, prefix, st->last_error);
    fprintf(f,
            "%s_index_resets:%" PRIu64 "\r\n%s_retries:%" PRIu64 "\r\n%s_failovers:%" PRIu64
            "\r\n%s_throttled:%" PRIu64 "\r\n%s_last_backoff_ms:%" PRIu64 "\r\n",
            prefix, st->index_resets, prefix, st->retries, prefix, st->failovers, prefix,
            st->throttled, prefix, st->last_backoff_ms);
}

void
source_info(const consul_source *s, FILE *f) {
    if (s == NULL) {
        return;
    }
    fprintf(f, "\r\n# Consul\r\nsource:%s\r\n", source_name(s));
    watch_info(f, "kv", s->kv);
    watch_info(f, "health", s->health);
    fprintf(f,
            "consul_errors:%" PRIu64 "\r\nupdates_held:%" PRIu64 "\r\nupdates_rejected:%" PRIu64
            "\r\nheld_fingerprint:%s\r\nheld_reason:%s\r\n",
            s->consul_errors, s->updates_held, s->updates_rejected, source_held_fingerprint(s),
            s->held_reason);
}
