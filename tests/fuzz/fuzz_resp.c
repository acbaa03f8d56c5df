/* libFuzzer target for the RESP2 request parser: parses arbitrary input request after
 * request, under default and tiny limits, and checks the parser's invariants. */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rs_buf.h"
#include "rs_resp.h"

#define ARGV_CAP 1100
#define SCRATCH_CAP RS_RESP_DEFAULT_MAX_INLINE_LEN

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static rs_resp_arg argv_a[ARGV_CAP], argv_b[ARGV_CAP];
static char scratch_a[SCRATCH_CAP], scratch_b[SCRATCH_CAP];

static bool
inside(const char *p, size_t len, const char *base, size_t n) {
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)base;
    return a >= b && a <= b + n && len <= b + n - a;
}

/* The request as a canonical multibulk frame, to compare parses and to round-trip. */
static void
encode(rs_buf *out, const rs_resp_cmd *cmd) {
    rs_buf_clear(out);
    if (rs_resp_put_array(out, cmd->argc) < 0)
        abort();
    for (size_t i = 0; i < cmd->argc; i++)
        if (rs_resp_put_bulk(out, cmd->argv[i].ptr, cmd->argv[i].len) < 0)
            abort();
}

static bool
same(const rs_buf *a, const rs_buf *b) {
    return rs_buf_len(a) == rs_buf_len(b) &&
           memcmp(rs_buf_data(a), rs_buf_data(b), rs_buf_len(a)) == 0;
}

static void
check_error(int rc, const rs_resp_error *err, size_t len) {
    if (rc != -EPROTO && rc != -E2BIG)
        abort();
    if (err->msg[0] == '\0' || err->offset > len)
        abort();
    for (const char *c = err->msg; *c; c++)
        if (*c < 0x20 || *c >= 0x7f)
            abort();
}

static void
run(const char *buf, size_t size, const rs_resp_limits *lim, size_t argv_cap, size_t scratch_cap,
    rs_buf *enc_a, rs_buf *enc_b) {
    rs_resp_cmd cmd, again;
    rs_resp_error err;
    rs_resp_limits roomy;
    size_t off = 0, used = 0, used2 = 0;

    rs_resp_cmd_init(&cmd, argv_a, argv_cap, scratch_a, scratch_cap);
    rs_resp_cmd_init(&again, argv_b, ARGV_CAP, scratch_b, SCRATCH_CAP);
    roomy.max_args = ARGV_CAP;
    roomy.max_bulk_len = SIZE_MAX;
    roomy.max_inline_len = SIZE_MAX;
    roomy.max_request_len = SIZE_MAX;

    for (;;) {
        const char *p = buf + off;
        size_t n = size - off;
        int rc = rs_resp_parse(p, n, lim, &cmd, &used, &err);
        if (rc == -EAGAIN) {
            if (used != 0 || cmd.argc != 0 || cmd.need <= n)
                abort();
            return;
        }
        if (rc < 0) {
            if (used != 0 || cmd.argc != 0)
                abort();
            check_error(rc, &err, n);
            return;
        }
        if (rc != 0 || used < 1 || used > n)
            abort();
        size_t max_args = lim->max_args < argv_cap ? lim->max_args : argv_cap;
        if (cmd.argc > max_args)
            abort();
        if (p[0] == '*' ? used > lim->max_request_len : used > lim->max_inline_len)
            abort();
        for (size_t i = 0; i < cmd.argc; i++) {
            const rs_resp_arg *a = &cmd.argv[i];
            if (a->ptr == NULL)
                abort();
            if (!inside(a->ptr, a->len, p, used) && !inside(a->ptr, a->len, scratch_a, scratch_cap))
                abort();
            if (p[0] == '*' && a->len > lim->max_bulk_len)
                abort();
        }
        encode(enc_a, &cmd);

        /* Decided by exactly its own bytes: the same request alone parses the same... */
        if (rs_resp_parse(p, used, lim, &again, &used2, &err) != 0 || used2 != used)
            abort();
        encode(enc_b, &again);
        if (!same(enc_a, enc_b))
            abort();
        /* ...and one byte less is only a prefix. */
        if (rs_resp_parse(p, used - 1, lim, &again, &used2, &err) != -EAGAIN)
            abort();
        /* The canonical encoding parses back to the same arguments. */
        if (cmd.argc > 0) {
            rc = rs_resp_parse(rs_buf_data(enc_a), rs_buf_len(enc_a), &roomy, &again, &used2, &err);
            if (rc != 0 || used2 != rs_buf_len(enc_a))
                abort();
            encode(enc_b, &again);
            if (!same(enc_a, enc_b))
                abort();
        }
        off += used;
    }
}

/* Error and status texts can never break the framing, whatever bytes they hold. */
static void
check_line_encoders(const char *buf, size_t size, rs_buf *out) {
    size_t n = size < 512 ? size : 512;
    char text[513];
    memcpy(text, buf, n);
    text[n] = '\0';
    size_t tlen = strlen(text);
    for (int kind = 0; kind < 2; kind++) {
        rs_buf_clear(out);
        int rc = kind == 0 ? rs_resp_put_error(out, text) : rs_resp_put_simple(out, text);
        if (rc != 0 || rs_buf_len(out) != tlen + 3)
            abort();
        const char *d = rs_buf_data(out);
        if (d[0] != (kind == 0 ? '-' : '+') || d[tlen + 1] != '\r' || d[tlen + 2] != '\n')
            abort();
        if (memchr(d, '\r', tlen + 1) != NULL || memchr(d, '\n', tlen + 1) != NULL)
            abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* An exact-size heap copy, so reading one byte past the input is an ASan report. */
    char *buf = malloc(size > 0 ? size : 1);
    if (buf == NULL)
        return 0;
    if (size > 0)
        memcpy(buf, data, size);
    rs_buf enc_a, enc_b;
    rs_buf_init(&enc_a);
    rs_buf_init(&enc_b);

    rs_resp_limits lim;
    rs_resp_limits_init(&lim);
    run(buf, size, &lim, ARGV_CAP, SCRATCH_CAP, &enc_a, &enc_b);

    /* Tiny limits picked by the last bytes, so every limit path is reachable. */
    if (size >= 4) {
        const uint8_t *t = data + size - 4;
        lim.max_args = t[0] % 6;
        lim.max_bulk_len = t[1] % 24;
        lim.max_inline_len = t[2] % 48;
        lim.max_request_len = t[3] % 96;
        run(buf, size, &lim, 1 + t[0] % 5, t[1] % 16, &enc_a, &enc_b);
    }

    check_line_encoders(buf, size, &enc_a);
    rs_buf_free(&enc_a);
    rs_buf_free(&enc_b);
    free(buf);
    return 0;
}
