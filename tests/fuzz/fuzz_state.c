/* libFuzzer target for the state snapshot decoder: decodes arbitrary bytes, and the same
 * document resealed with a correct checksum so the content checks are reached too. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "rs_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
zeroed(const rs_state *s) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < sizeof(*s); i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

static void
check_error(int rc, const rs_error *err, const rs_state *out) {
    if (rc != -EINVAL && rc != -EBADMSG && rc != -EPROTONOSUPPORT && rc != -ENOMEM) {
        abort();
    }
    if (!zeroed(out) || err->msg[0] == '\0') {
        abort();
    }
    for (const char *c = err->msg; *c != '\0'; c++) {
        if (*c < 0x20 || *c >= 0x7f) {
            abort();
        }
    }
}

/* A decoded state is valid, and encoding it decodes to the same bytes again. */
static void
check_ok(const rs_state *s) {
    rs_error err;
    rs_state again;
    char *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    if (rs_state_validate(s, &err) != 0 || rs_state_encode(s, &a, &alen) != 0) {
        abort();
    }
    if (rs_state_decode(a, alen, &again, &err) != 0 || rs_state_encode(&again, &b, &blen) != 0) {
        abort();
    }
    if (alen != blen || memcmp(a, b, alen) != 0) {
        abort();
    }
    rs_state_free(&again);
    free(a);
    free(b);
}

static void
run(const char *buf, size_t len) {
    rs_state s;
    rs_error err;
    memset(&err, 0, sizeof(err));
    int rc = rs_state_decode(buf, len, &s, &err);
    if (rc == 0) {
        check_ok(&s);
        rs_state_free(&s);
    } else {
        check_error(rc, &err, &s);
    }
}

/* If the input is a JSON object with a "state" member, give it the right checksum. */
static char *
reseal(const char *buf, size_t len) {
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *state = json_object_get(doc, "state");
    char *canon = state != NULL ? json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    char *text = NULL;
    if (canon != NULL) {
        unsigned char md[SHA256_DIGEST_LENGTH];
        char cks[7 + 2 * SHA256_DIGEST_LENGTH + 1] = "sha256:";
        SHA256((const unsigned char *)canon, strlen(canon), md);
        for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
            snprintf(cks + 7 + 2 * i, 3, "%02x", md[i]);
        }
        json_object_set_new(doc, "checksum", json_string(cks));
        text = json_dumps(doc, JSON_COMPACT);
        free(canon);
    }
    json_decref(doc);
    return text;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    run((const char *)data, size);
    char *sealed = reseal((const char *)data, size);
    if (sealed != NULL) {
        run(sealed, strlen(sealed));
        free(sealed);
    }
    return 0;
}
