/* Describing JSON input in error messages: quoted, escaped, bounded. Shared by the
 * parsers of config files, KV values and Consul listings. */
#ifndef RS_JSON_H
#define RS_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <stdint.h>

#include <jansson.h>

#include "rs_error.h"

#define RS_QUOTE_MAX 40                 /* printable characters of a quoted value */
#define RS_QUOTE_CAP (RS_QUOTE_MAX + 8) /* room rs_json_quote needs */
#define RS_DESCRIBE_CAP 48              /* room rs_json_describe needs */

/* s[0..len) in double quotes, '"' and '\' escaped, bytes outside printable ASCII as
 * \xHH, cut with "..." after about RS_QUOTE_MAX characters. buf has RS_QUOTE_CAP bytes.
 * Returns buf. */
const char *rs_json_quote(char *buf, const char *s, size_t len);

/* The shortest text that reads back as d exactly (70000, not 7e+04). With mark_real,
 * always with a '.' or an exponent, so that 1.0 never reads as the integer 1. */
void rs_json_format_real(char *buf, size_t cap, double d, bool mark_real);

/* What a JSON value is, for "must be X, got <this>": numbers and strings by value
 * (quoted), the rest by kind ("an object", "null"). buf has RS_DESCRIBE_CAP bytes; the
 * result is buf or a constant string. */
const char *rs_json_describe(char *buf, const json_t *v, bool mark_real);

/* Typed reads with the shared error wording: "<what><sep> must be an integer between
 * MIN and MAX, got <value>" / "... must be true or false, got <value>". sep is ":" for
 * JSON paths ("ring.replicas: must ...") and "" for field names. 0 or -EINVAL. */
int rs_json_get_u32(const json_t *v, const char *what, const char *sep, uint32_t min, uint32_t max,
                    uint32_t *out, rs_error *err);
int rs_json_get_bool(const json_t *v, const char *what, const char *sep, bool *out, rs_error *err);

#endif
