/* Health policy: healthy flags + policy + panic threshold -> the usable mask. */
#include "rs_health.h"

#include <errno.h>
#include <string.h>

void
rs_health_compute(const rs_ring *r, const uint8_t *healthy, rs_health_policy policy,
                  double panic_threshold, uint8_t *usable, rs_health_summary *summary) {
    size_t n = rs_ring_node_count(r);
    rs_health_summary s = {0};
    for (size_t i = 0; i < n; i++) {
        if (rs_ring_node_at(r, i)->enabled) {
            s.enabled++;
            s.healthy += healthy[i] != 0;
        }
    }
    s.panic = s.enabled > 0 && (double)s.healthy < panic_threshold * (double)s.enabled;
    bool all = policy == RS_HEALTH_KEEP || s.panic;
    for (size_t i = 0; i < n; i++) {
        bool enabled = rs_ring_node_at(r, i)->enabled;
        usable[i] = enabled && (all || healthy[i]);
        s.usable += usable[i];
    }
    if (summary != NULL) {
        *summary = s;
    }
}

int
rs_health_policy_from_name(const char *name, rs_health_policy *out) {
    if (name != NULL && strcmp(name, "skip") == 0) {
        *out = RS_HEALTH_SKIP;
        return 0;
    }
    if (name != NULL && strcmp(name, "keep") == 0) {
        *out = RS_HEALTH_KEEP;
        return 0;
    }
    return -EINVAL;
}

const char *
rs_health_policy_name(rs_health_policy p) {
    return p == RS_HEALTH_KEEP ? "keep" : "skip";
}
