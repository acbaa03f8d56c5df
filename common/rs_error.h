/* Errors that carry where and why, and small helpers shared by the parsers. */
#ifndef RS_ERROR_H
#define RS_ERROR_H

#include <stddef.h>

/* An error's text: where and why ("nodes[3] (cache-b): weight must be ..."). */
typedef struct rs_error {
    char msg[256];
} rs_error;

/* Format the message into err (which may be NULL) and return code, so that error paths
 * read `return rs_error_set(err, -EINVAL, "...", ...);`. Bytes outside printable ASCII
 * become '?': messages quote hostile input and end up in logs and replies. */
int rs_error_set(rs_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Decode n hex digits (n even, either case) into out, which has room for n / 2 bytes.
 * Returns the number of bytes written, or -EINVAL for an odd count or a non-hex digit. */
long rs_hex_decode(const char *hex, size_t n, char *out);

#endif
