/* RESP2 request codec, sans-I/O: parses client requests (multibulk and inline) from a
 * caller-owned byte buffer into borrowed argument views, and encodes replies onto rs_buf. */
#ifndef RS_RESP_H
#define RS_RESP_H

#include <stddef.h>

#include "rs_buf.h"

/* Default limits (see rs_resp_limits). The daemon sets key-size limits separately and
 * answers those with ordinary errors; these only bound what the codec accepts at all. */
#define RS_RESP_DEFAULT_MAX_ARGS ((size_t)1025)
#define RS_RESP_DEFAULT_MAX_BULK_LEN ((size_t)64 * 1024)
#define RS_RESP_DEFAULT_MAX_INLINE_LEN ((size_t)64 * 1024)
#define RS_RESP_DEFAULT_MAX_REQUEST_LEN ((size_t)1024 * 1024)

/* Room for an error message, terminating NUL included. */
#define RS_RESP_ERR_MAX 128

typedef struct rs_resp_limits {
    size_t max_args;        /* arguments per request (further capped by cmd->argv_cap) */
    size_t max_bulk_len;    /* bytes in one multibulk argument */
    size_t max_inline_len;  /* bytes in one inline line, its "\n" or "\r\n" included */
    size_t max_request_len; /* bytes in one multibulk request, from '*' to the last CRLF */
} rs_resp_limits;

/* One argument: a borrowed view, NOT NUL-terminated. ptr is never NULL (even when
 * len == 0) and points either into the parsed buffer or into the cmd's scratch. */
typedef struct rs_resp_arg {
    const char *ptr;
    size_t len;
} rs_resp_arg;

/* A parsed request. The caller provides the storage (no allocation per request): argv
 * with argv_cap slots, and scratch, where inline arguments whose value is not a contiguous
 * run of the input (those using quotes mid-word or escapes such as \" or \x41) are
 * unescaped. A scratch of max_inline_len bytes is always enough; scratch may be NULL with
 * scratch_cap 0, in which case such inline requests fail with -E2BIG. Set up with
 * rs_resp_cmd_init(); argc and need are outputs of rs_resp_parse(). */
typedef struct rs_resp_cmd {
    size_t argc;
    rs_resp_arg *argv;
    size_t argv_cap;
    char *scratch;
    size_t scratch_cap;
    /* After -EAGAIN: the buffer length at which a new call can first make progress
     * (always > the len passed). Callers may wait until that many bytes are buffered
     * instead of re-parsing after every read; calling earlier is harmless. */
    size_t need;
} rs_resp_cmd;

/* Why a request was rejected. msg is one line of printable ASCII (never CR or LF), with
 * no leading '-' or "ERR ": send it as "-ERR <msg>\r\n" (rs_resp_put_errorf) and close
 * the connection. offset is the index in the buffer of the byte the parser objected to. */
typedef struct rs_resp_error {
    size_t offset;
    char msg[RS_RESP_ERR_MAX];
} rs_resp_error;

/* Fill lim with the RS_RESP_DEFAULT_* values. */
void rs_resp_limits_init(rs_resp_limits *lim);

/* Point cmd at caller-owned storage: argv[argv_cap] and scratch[scratch_cap] (scratch may
 * be NULL when scratch_cap is 0). Both must outlive every use of the parsed arguments.
 * Sets argc and need to 0. */
void rs_resp_cmd_init(rs_resp_cmd *cmd, rs_resp_arg *argv, size_t argv_cap, char *scratch,
                      size_t scratch_cap);

/* Parse ONE request from the front of buf[0..len) (buf may be NULL when len == 0).
 * lim NULL means the defaults. err may be NULL.
 *
 * A buffer starting with '*' is a multibulk request "*<n>\r\n" followed by n arguments
 * "$<len>\r\n<len bytes>\r\n" (binary safe). Lengths are decimal digits without sign or
 * leading zeros. "*0\r\n" and "*-1\r\n" are accepted as requests with no command; any
 * other negative length ("$-1" included) is a protocol error. Anything else is an inline
 * request: a line ending in "\n" or "\r\n", split like redis's sdssplitargs: on ASCII
 * whitespace, with "double quotes" (escapes \" \\ \n \r \t \b \a \xHH, any other \c is c)
 * and 'single quotes' (only \' is an escape); a closing quote must be followed by
 * whitespace or the end of the line. A blank line is a request with no command.
 *
 * Returns:
 *   0        a request was parsed; *consumed (>= 1) bytes belong to it. cmd->argc is the
 *            number of arguments, 0 for the no-command forms above (drop the bytes and
 *            parse on). cmd->argv views point into buf (or cmd->scratch) and are valid
 *            while those bytes are, i.e. until the caller discards or moves them.
 *   -EAGAIN  the buffer holds only a prefix of a request that is valid so far; keep the
 *            bytes and call again with more (see cmd->need). *consumed is 0.
 *   -EPROTO  malformed request (bad length, missing CRLF, expected '$', unbalanced
 *            quotes...); err says where and why. *consumed is 0.
 *   -E2BIG   a limit was exceeded: too many arguments, a bulk string too long, a request
 *            or inline line too long, or inline arguments that do not fit cmd->scratch.
 *            Announced sizes are checked as soon as their digits arrive, before any of the
 *            data, and a line that outgrows its limit fails without waiting for its end.
 *            err says which limit. *consumed is 0.
 * Errors are final: the same bytes followed by any others give the same error, so the
 * connection should send err->msg and close. Nothing is allocated. The typical loop:
 *
 *     while ((rc = rs_resp_parse(in, n, &lim, &cmd, &used, &err)) == 0) {
 *         if (cmd.argc > 0) execute(&cmd);
 *         in += used; n -= used;
 *     }
 */
int rs_resp_parse(const char *buf, size_t len, const rs_resp_limits *lim, rs_resp_cmd *cmd,
                  size_t *consumed, rs_resp_error *err);

/* Reply encoders. Each appends one complete RESP2 frame to out, or nothing: they return
 * 0, or -ENOMEM (see rs_buf_reserve) with out unchanged. */

/* "+<s>\r\n" from the NUL-terminated s; any CR or LF in s is replaced by a space. */
int rs_resp_put_simple(rs_buf *out, const char *s);

/* "-<msg>\r\n" from the NUL-terminated msg, which is the text without the leading '-'
 * (e.g. "ERR unknown command", "NORING no usable nodes"). CR and LF become spaces. */
int rs_resp_put_error(rs_buf *out, const char *msg);

/* As rs_resp_put_error, with the text formatted printf-style. Text longer than 1023 bytes
 * is truncated. Returns 0, -ENOMEM, or -EINVAL if the format fails. */
int rs_resp_put_errorf(rs_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ":<v>\r\n" */
int rs_resp_put_integer(rs_buf *out, long long v);

/* "$<len>\r\n<data>\r\n", binary safe (data may be NULL when len == 0). */
int rs_resp_put_bulk(rs_buf *out, const void *data, size_t len);

/* As rs_resp_put_bulk with the NUL-terminated s. */
int rs_resp_put_bulk_str(rs_buf *out, const char *s);

/* The null bulk string "$-1\r\n". */
int rs_resp_put_null(rs_buf *out);

/* An array header "*<n>\r\n"; the caller then appends the n elements. */
int rs_resp_put_array(rs_buf *out, size_t n);

/* The null array "*-1\r\n". */
int rs_resp_put_null_array(rs_buf *out);

#endif
