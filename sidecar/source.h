/* Consul membership sources (consul-kv, consul-service): watches Consul, turns what it
 * says into a node set with health, guards against mass removal, and hands the result
 * to the daemon's one update path. */
#ifndef RS_SOURCE_H
#define RS_SOURCE_H

#include <stdio.h>

#include "consul.h"
#include "daemon.h"
#include "rs_error.h"

typedef struct consul_source consul_source;

/* Start watching Consul as d->cfg says (source consul-kv or consul-service). The first
 * update arrives through daemon_install once Consul answers; until then the daemon
 * serves its snapshot. Returns 0 or a negative code with err. */
int source_start(ringside *d, rs_error *err);

/* Stop the watches; done(d) runs once every handle is closed. */
void source_stop(consul_source *s, void (*done)(ringside *d));

/* Rebuild from what the watches last said (after a reload changed the file's ring
 * parameters, which KV config overrides). */
void source_refresh(consul_source *s);

/* For RING/INFO: the held update's fingerprint and reason ("" when none). */
const char *source_held_fingerprint(const consul_source *s);
const char *source_held_reason(const consul_source *s);

/* Counters for metrics (0 when s is NULL). */
uint64_t source_updates_held(const consul_source *s);
uint64_t source_updates_rejected(const consul_source *s);
uint64_t source_consul_errors(const consul_source *s);

/* The watches, for status and metrics (NULL when absent). */
const consul_watch *source_kv_watch(const consul_source *s);
const consul_watch *source_health_watch(const consul_source *s);

/* Append "field:value\r\n" lines about the watches (agent, index, errors, last
 * contact, held and rejected updates) for INFO. */
void source_info(const consul_source *s, FILE *f);

#endif
