/* libFuzzer target for the configuration parser: parses arbitrary bytes as a config file
 * and checks the parser's contract on success and on failure. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rs_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_message(const rs_error *err) {
    if (err->msg[0] == '\0' || strnlen(err->msg, sizeof(err->msg)) == sizeof(err->msg)) {
        abort();
    }
    for (const char *c = err->msg; *c != '\0'; c++) {
        if (*c < 0x20 || *c >= 0x7f) {
            abort();
        }
    }
}

/* Everything a successful parse promises. */
static void
check_config(const rs_config *c) {
    rs_error err;
    if (rs_ring_params_validate(&c->params, &err) != 0) {
        abort();
    }
    if (c->n_nodes > RS_NODES_MAX || (c->n_nodes == 0) != (c->nodes == NULL)) {
        abort();
    }
    if (c->source == RS_SOURCE_STATIC && c->n_nodes == 0) {
        abort();
    }
    for (size_t i = 0; i < c->n_nodes; i++) {
        const rs_node *n = &c->nodes[i].node;
        if (rs_node_validate(n, &err) != 0) {
            abort();
        }
        for (size_t j = 0; j < i && c->n_nodes <= 256; j++) {
            if (strcmp(n->id, c->nodes[j].node.id) == 0) {
                abort();
            }
        }
    }
    if (c->socket_mode > 0777 || c->n_allow_uids > RS_CONFIG_MAX_IDS ||
        c->n_allow_gids > RS_CONFIG_MAX_IDS || c->max_key_bytes > c->max_request_bytes) {
        abort();
    }
    if (!(c->panic_threshold >= 0 && c->panic_threshold <= 1) ||
        !(c->consul.max_removal_fraction > 0 && c->consul.max_removal_fraction <= 1)) {
        abort();
    }
    if (c->consul.wait_ms < 1000 || c->consul.wait_ms > 600000 || c->ring_name[0] == '\0') {
        abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* An exact-size heap copy, so reading one byte past the input is an ASan report. */
    char *buf = malloc(size > 0 ? size : 1);
    if (buf == NULL) {
        return 0;
    }
    if (size > 0) {
        memcpy(buf, data, size);
    }
    rs_config c;
    rs_error err;
    memset(&c, 0xa5, sizeof(c));
    int rc = rs_config_parse(size > 0 ? buf : NULL, size, &c, &err);
    if (rc == 0) {
        check_config(&c);
        /* Parsing is a function of the bytes: a second parse agrees. */
        rs_config again;
        if (rs_config_parse(buf, size, &again, &err) != 0 || again.n_nodes != c.n_nodes ||
            strcmp(again.ring_name, c.ring_name) != 0) {
            abort();
        }
        rs_config_free(&again);
    } else if (rc == -EINVAL || rc == -ENOMEM) {
        check_message(&err);
        if (c.nodes != NULL || c.n_nodes != 0) {
            abort();
        }
    } else {
        abort();
    }
    rs_config_free(&c);
    rs_config_free(&c);

    /* Durations: the fuzzer's bytes as a string. */
    char s[64];
    size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;
    memcpy(s, data, n);
    s[n] = '\0';
    uint64_t ms;
    rc = rs_duration_parse(s, &ms);
    if (rc != 0 && rc != -EINVAL) {
        abort();
    }
    free(buf);
    return 0;
}
