/* Quoting and describing JSON values for error messages. */
#include "rs_json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *
rs_json_quote(char *buf, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    buf[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[4];
        size_t n;
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            n = 2;
        } else if (ch < 0x20 || ch >= 0x7f) {
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hex[ch >> 4];
            esc[3] = hex[ch & 15];
            n = 4;
        } else {
            esc[0] = (char)ch;
            n = 1;
        }
        if (o - 1 + n > RS_QUOTE_MAX) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(buf + o, esc, n);
        o += n;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void
rs_json_format_real(char *buf, size_t cap, double d, bool mark_real) {
    if (d == floor(d) && fabs(d) < 1e16) { /* 70000, not 7e+04 */
        snprintf(buf, cap, "%.0f%s", d, mark_real ? ".0" : "");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) {
            break;
        }
    }
    if (mark_real && strpbrk(buf, ".eEn") == NULL) {
        size_t n = strlen(buf);
        if (n + 3 <= cap) {
            memcpy(buf + n, ".0", 3);
        }
    }
}

const char *
rs_json_describe(char *buf, const json_t *v, bool mark_real) {
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return rs_json_quote(buf, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        snprintf(buf, RS_DESCRIBE_CAP, "%lld", (long long)json_integer_value(v));
        return buf;
    case JSON_REAL:
        rs_json_format_real(buf, RS_DESCRIBE_CAP, json_real_value(v), mark_real);
        return buf;
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    case JSON_NULL:
        return "null";
    }
    return "an unknown value";
}

int
rs_json_get_u32(const json_t *v, const char *what, const char *sep, uint32_t min, uint32_t max,
                uint32_t *out, rs_error *err) {
    char d[RS_DESCRIBE_CAP];
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i >= (json_int_t)min && i <= (json_int_t)max) {
            *out = (uint32_t)i;
            return 0;
        }
    }
    return rs_error_set(err, -EINVAL, "%s%s must be an integer between %u and %u, got %s", what,
                        sep, min, max, rs_json_describe(d, v, true));
}

int
rs_json_get_bool(const json_t *v, const char *what, const char *sep, bool *out, rs_error *err) {
    char d[RS_DESCRIBE_CAP];
    if (!json_is_boolean(v)) {
        return rs_error_set(err, -EINVAL, "%s%s must be true or false, got %s", what, sep,
                            rs_json_describe(d, v, true));
    }
    *out = json_is_true(v);
    return 0;
}
