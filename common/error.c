/* rs_error formatting and hex decoding. */
#include "rs_error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

int
rs_error_set(rs_error *err, int code, const char *fmt, ...) {
    if (err == NULL) {
        return code;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    for (unsigned char *c = (unsigned char *)err->msg; *c != '\0'; c++) {
        if (*c < 0x20 || *c >= 0x7f) {
            *c = '?';
        }
    }
    return code;
}

static int
hex_digit(int c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

long
rs_hex_decode(const char *hex, size_t n, char *out) {
    if (n % 2 != 0) {
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex_digit((unsigned char)hex[i]);
        int lo = hex_digit((unsigned char)hex[i + 1]);
        if (hi < 0 || lo < 0) {
            return -EINVAL;
        }
        out[i / 2] = (char)(hi << 4 | lo);
    }
    return (long)(n / 2);
}
