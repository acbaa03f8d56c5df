/* libFuzzer target for Consul membership: feeds arbitrary bytes to the KV listing parser
 * (twice, with the same memo) and to the health listing parser and health gating, and
 * checks their contracts. A leading digit picks another prefix ("" or "r"); a leading '~'
 * makes the rest the (base64-encoded) value of a node, the config and the confirm key,
 * which mutations of a whole listing rarely reach. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_membership.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_printable(const char *s, size_t cap) {
    if (strnlen(s, cap) == cap) {
        abort();
    }
    for (const char *c = s; *c != '\0'; c++) {
        if (*c < 0x20 || *c >= 0x7f) {
            abort();
        }
    }
}

static void
check_error(int rc, const rs_error *err, const rs_membership *m) {
    if (rc != -EINVAL && rc != -ENOMEM) {
        abort();
    }
    if (err->msg[0] == '\0') {
        abort();
    }
    check_printable(err->msg, sizeof(err->msg));
    if (m->nodes != NULL || m->healthy != NULL || m->n_nodes != 0 || m->n_rejections != 0) {
        abort();
    }
}

/* Everything a successful parse promises. */
static void
check_membership(const rs_membership *m) {
    rs_error err;
    if (rs_ring_params_validate(&m->params, &err) != 0) {
        abort();
    }
    if (m->n_nodes > RS_NODES_MAX || (m->n_nodes == 0) != (m->nodes == NULL) ||
        (m->n_nodes == 0) != (m->healthy == NULL)) {
        abort();
    }
    for (size_t i = 0; i < m->n_nodes; i++) {
        if (rs_node_validate(&m->nodes[i], &err) != 0 || m->healthy[i] > 1) {
            abort();
        }
        if (i > 0 && strcmp(m->nodes[i - 1].id, m->nodes[i].id) >= 0) {
            abort(); /* sorted, unique */
        }
    }
    if (!(m->max_removal_fraction > 0 && m->max_removal_fraction <= 1)) {
        abort();
    }
    size_t fp = strnlen(m->confirm, sizeof(m->confirm));
    if (fp != 0 && fp != RS_FINGERPRINT_LEN) {
        abort();
    }
    if (m->n_rejections > RS_KV_MAX_REJECTIONS || m->n_rejections > m->n_rejections_total ||
        (m->n_rejections < RS_KV_MAX_REJECTIONS && m->n_rejections != m->n_rejections_total)) {
        abort();
    }
    for (size_t i = 0; i < m->n_rejections; i++) {
        check_printable(m->rejections[i].key, sizeof(m->rejections[i].key));
        check_printable(m->rejections[i].reason, sizeof(m->rejections[i].reason));
        if (m->rejections[i].reason[0] == '\0') {
            abort();
        }
    }
    /* Whatever was accepted builds a ring, or fails for set-level reasons only. */
    if (m->n_nodes > 0 && m->n_nodes <= 64) {
        rs_ring *r = NULL;
        int rc = rs_ring_build(&m->params, m->nodes, m->n_nodes, &r, &err);
        if (rc != 0 && rc != -EINVAL && rc != -E2BIG) {
            abort();
        }
        if (rc == 0) {
            rs_error gerr;
            (void)rs_guard_holds(r, m, m->max_removal_fraction, &gerr);
            check_printable(gerr.msg, sizeof(gerr.msg));
        }
        rs_ring_unref(r);
    }
}

static bool
same_nodes(const rs_membership *a, const rs_membership *b) {
    if (a->n_nodes != b->n_nodes) {
        return false;
    }
    for (size_t i = 0; i < a->n_nodes; i++) {
        if (strcmp(a->nodes[i].id, b->nodes[i].id) != 0 ||
            strcmp(a->nodes[i].address, b->nodes[i].address) != 0 ||
            strcmp(a->nodes[i].zone, b->nodes[i].zone) != 0 ||
            a->nodes[i].weight != b->nodes[i].weight ||
            a->nodes[i].enabled != b->nodes[i].enabled) {
            return false;
        }
    }
    return true;
}

/* A listing of the three keys, each with value data[0..size) in base64. Caller frees. */
static char *
value_listing(const uint8_t *data, size_t size, size_t *len) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char *const keys[] = {"ringside/sessions/nodes/x", "ringside/sessions/config",
                                       "ringside/sessions/confirm"};
    size_t enc = (size + 2) / 3 * 4;
    char *out = malloc(3 * (enc + 64) + 2);
    if (out == NULL) {
        return NULL;
    }
    size_t o = 0;
    out[o++] = '[';
    for (size_t k = 0; k < 3; k++) {
        o += (size_t)sprintf(out + o, "%s{\"Key\":\"%s\",\"Value\":\"", k > 0 ? "," : "", keys[k]);
        for (size_t i = 0; i < size; i += 3) {
            uint32_t w = (uint32_t)data[i] << 16;
            w |= i + 1 < size ? (uint32_t)data[i + 1] << 8 : 0;
            w |= i + 2 < size ? data[i + 2] : 0;
            out[o++] = alphabet[w >> 18 & 63];
            out[o++] = alphabet[w >> 12 & 63];
            out[o++] = i + 1 < size ? alphabet[w >> 6 & 63] : '=';
            out[o++] = i + 2 < size ? alphabet[w & 63] : '=';
        }
        out[o++] = '"';
        out[o++] = '}';
    }
    out[o++] = ']';
    *len = o;
    return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *prefix = "ringside/sessions";
    char *buf;
    if (size > 0 && data[0] >= '0' && data[0] <= '9') {
        prefix = data[0] == '0' ? "" : "r";
        data++;
        size--;
    }
    if (size > 0 && data[0] == '~') {
        buf = value_listing(data + 1, size - 1, &size);
    } else {
        /* An exact-size heap copy, so reading one byte past the input is an ASan report. */
        buf = malloc(size > 0 ? size : 1);
        if (buf != NULL && size > 0) {
            memcpy(buf, data, size);
        }
    }
    if (buf == NULL) {
        return 0;
    }
    const char *body = size > 0 ? buf : NULL;
    rs_ring_params base;
    rs_ring_params_init(&base);

    rs_kv_memo *memo = NULL;
    if (rs_kv_memo_new(&memo) != 0) {
        free(buf);
        return 0;
    }
    rs_membership m1, m2;
    rs_error err;
    memset(&m1, 0xa5, sizeof(m1));
    int rc1 = rs_kv_to_membership(memo, body, size, prefix, &base, 0.5, &m1, &err);
    if (rc1 == 0) {
        check_membership(&m1);
    } else {
        check_error(rc1, &err, &m1);
    }
    /* Again with the memo the first call left: a listing is its own last good value, so
     * the result is the same. */
    memset(&m2, 0x5a, sizeof(m2));
    int rc2 = rs_kv_to_membership(memo, body, size, prefix, &base, 0.5, &m2, &err);
    if (rc2 != rc1 && rc1 != -ENOMEM && rc2 != -ENOMEM) {
        abort();
    }
    if (rc2 == 0) {
        check_membership(&m2);
        if (rc1 == 0 &&
            (!same_nodes(&m1, &m2) || m1.force != m2.force || strcmp(m1.confirm, m2.confirm) != 0 ||
             m1.n_rejections_total != m2.n_rejections_total)) {
            abort();
        }
    } else {
        check_error(rc2, &err, &m2);
    }

    /* The same bytes as a health listing gating the KV membership. */
    if (rc1 == 0) {
        rs_membership gated;
        if (rs_membership_copy(&m1, &gated) == 0) {
            int rc = rs_membership_apply_health(&gated, body, size, &err);
            if (rc != 0 && rc != -EINVAL && rc != -ENOMEM) {
                abort();
            }
            for (size_t i = 0; i < gated.n_nodes; i++) {
                if (gated.healthy[i] > 1) {
                    abort();
                }
            }
            rs_membership_free(&gated);
        }
    }
    rs_membership_free(&m1);
    rs_membership_free(&m2);
    rs_membership_free(&m2);
    rs_kv_memo_free(memo);

    /* And as a service's health listing. */
    rs_membership h;
    memset(&h, 0xa5, sizeof(h));
    int rc = rs_health_to_membership(body, size, &base, &h, &err);
    if (rc == 0) {
        check_membership(&h);
    } else {
        check_error(rc, &err, &h);
    }
    rs_membership_free(&h);
    free(buf);
    return 0;
}
