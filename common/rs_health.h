/* The health view: which nodes of a ring lookups may return, from per-node health, the
 * health policy and the panic threshold (SPEC 3.3). Health never rebuilds the ring. */
#ifndef RS_HEALTH_H
#define RS_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_ring.h"

typedef enum rs_health_policy {
    RS_HEALTH_SKIP = 0, /* unhealthy candidates are passed over */
    RS_HEALTH_KEEP,     /* the owner is returned anyway, flagged unhealthy */
} rs_health_policy;

typedef struct rs_health_summary {
    uint32_t enabled; /* enabled nodes */
    uint32_t healthy; /* enabled and healthy */
    uint32_t usable;  /* nodes lookups may return */
    bool panic;       /* too few healthy nodes: health ignored */
} rs_health_summary;

/* Fill usable[0..rs_ring_node_count(r)) from healthy[] (indexed like the ring's nodes,
 * 1 = healthy): disabled nodes are never usable; with RS_HEALTH_KEEP, or in panic
 * (healthy / enabled < panic_threshold), every enabled node is usable; otherwise only
 * the healthy ones. summary may be NULL. */
void rs_health_compute(const rs_ring *r, const uint8_t *healthy, rs_health_policy policy,
                       double panic_threshold, uint8_t *usable, rs_health_summary *summary);

/* Parse "skip" / "keep". Returns 0 or -EINVAL. */
int rs_health_policy_from_name(const char *name, rs_health_policy *out);
const char *rs_health_policy_name(rs_health_policy p);

#endif
