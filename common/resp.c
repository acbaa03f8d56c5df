/* RESP2 request parser and reply encoders (see rs_resp.h). Pure: no I/O, no allocation
 * while parsing, no globals. */
#include "rs_resp.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* One parse call's inputs, so the helpers share them without long argument lists. */
typedef struct parser {
    const char *buf;
    size_t len;
    const rs_resp_limits *lim;
    rs_resp_cmd *cmd;
    rs_resp_error *err;
    size_t max_args; /* lim->max_args capped by cmd->argv_cap */
} parser;

__attribute__((format(printf, 4, 5))) static int
fail(parser *p, int code, size_t offset, const char *fmt, ...) {
    if (p->err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        p->err->offset = offset;
        if (vsnprintf(p->err->msg, sizeof p->err->msg, fmt, ap) < 0)
            p->err->msg[0] = '\0';
        va_end(ap);
    }
    return code;
}

/* Render byte c for an error message: itself if printable, else \xHH. Keeps messages
 * single-line and printable whatever the client sent. */
static const char *
show_byte(char c, char out[5]) {
    unsigned char u = (unsigned char)c;
    if (u >= 0x20 && u < 0x7f) {
        out[0] = (char)u;
        out[1] = '\0';
    } else {
        (void)snprintf(out, 5, "\\x%02x", u);
    }
    return out;
}

/* ------------------------------------------------------------------------------------ */
/* Multibulk */

/* The buffer ends before `need` bytes: wait for more, unless the request has already
 * reached max_request_len, in which case it can never complete within it. */
static int
need_more(parser *p, size_t need) {
    if (p->len >= p->lim->max_request_len)
        return fail(p, -E2BIG, p->lim->max_request_len, "request too large (max %zu bytes)",
                    p->lim->max_request_len);
    p->cmd->need = need;
    return -EAGAIN;
}

typedef enum len_status { LEN_OK, LEN_MORE, LEN_BAD, LEN_BIG } len_status;

/* Parse "<digits>\r\n" at *pos within avail bytes (or "-1\r\n" when allow_minus_one).
 * On LEN_OK, *out is the value (SIZE_MAX for -1) and *pos is past the CRLF. A value
 * that exceeds max is reported (LEN_BIG) as soon as its digits show it, so a hostile
 * count never makes us wait for its end. *bad is the offset of an offending byte. */
static len_status
parse_len(const char *buf, size_t avail, size_t *pos, bool allow_minus_one, size_t max, size_t *out,
          size_t *bad) {
    size_t i = *pos;
    size_t v = 0;
    size_t ndigits = 0;
    bool minus = false;

    /* Fast path for the shape of nearly every header, one or two digits and CRLF
     * ("*2", "$6", "$15"): the same results as the loop below, in a few instructions. */
    if (i < avail && (avail - i >= 4 || (avail - i == 3 && buf[i + 1] == '\r'))) {
        unsigned d0 = (unsigned char)buf[i] - (unsigned)'0';
        unsigned d1 = (unsigned char)buf[i + 1] - (unsigned)'0';
        if (d0 <= 9 && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
            v = d0;
            i += 3;
        } else if (d0 >= 1 && d0 <= 9 && d1 <= 9 && buf[i + 2] == '\r' && buf[i + 3] == '\n') {
            v = d0 * 10 + d1;
            i += 4;
        }
        if (i != *pos) {
            if (v > max) {
                *bad = *pos;
                return LEN_BIG;
            }
            *pos = i;
            *out = v;
            return LEN_OK;
        }
    }

    if (i < avail && buf[i] == '-') {
        if (!allow_minus_one) {
            *bad = i;
            return LEN_BAD;
        }
        minus = true;
        i++;
    }
    for (;; i++) {
        if (i >= avail)
            return LEN_MORE;
        char c = buf[i];
        if (c == '\r')
            break;
        if (c < '0' || c > '9' || (ndigits == 1 && v == 0) ||
            (minus && (ndigits > 0 || c != '1'))) {
            *bad = i;
            return LEN_BAD; /* not a digit, a leading zero, or a negative other than -1 */
        }
        size_t d = (size_t)(c - '0');
        if (!minus && (d > max || v > (max - d) / 10)) {
            *bad = *pos;
            return LEN_BIG;
        }
        v = v * 10 + d;
        ndigits++;
    }
    if (ndigits == 0) {
        *bad = i;
        return LEN_BAD;
    }
    if (++i >= avail)
        return LEN_MORE;
    if (buf[i] != '\n') {
        *bad = i;
        return LEN_BAD;
    }
    *pos = i + 1;
    *out = minus ? SIZE_MAX : v;
    return LEN_OK;
}

static int
parse_multibulk(parser *p, size_t *consumed) {
    const char *buf = p->buf;
    size_t limit = p->lim->max_request_len;
    /* Never look past the request limit: whatever lies beyond it cannot be ours. */
    size_t avail = p->len < limit ? p->len : limit;
    size_t pos = 1;
    size_t n = 0;
    size_t bad = 0;
    char shown[5];

    switch (parse_len(buf, avail, &pos, true, p->max_args, &n, &bad)) {
    case LEN_OK:
        break;
    case LEN_MORE:
        return need_more(p, avail + 1);
    case LEN_BAD:
        return fail(p, -EPROTO, bad, "Protocol error: invalid multibulk length");
    case LEN_BIG:
        return fail(p, -E2BIG, bad, "too many arguments (max %zu)", p->max_args);
    }
    if (n == SIZE_MAX || n == 0) {
        *consumed = pos;
        return 0;
    }

    for (size_t i = 0; i < n; i++) {
        if (pos >= avail)
            return need_more(p, avail + 1);
        if (buf[pos] != '$')
            return fail(p, -EPROTO, pos, "Protocol error: expected '$', got '%s'",
                        show_byte(buf[pos], shown));
        pos++;
        size_t blen = 0;
        switch (parse_len(buf, avail, &pos, false, p->lim->max_bulk_len, &blen, &bad)) {
        case LEN_OK:
            break;
        case LEN_MORE:
            return need_more(p, avail + 1);
        case LEN_BAD:
            return fail(p, -EPROTO, bad, "Protocol error: invalid bulk length");
        case LEN_BIG:
            return fail(p, -E2BIG, bad, "bulk string too long (max %zu bytes)",
                        p->lim->max_bulk_len);
        }
        /* pos <= avail <= limit, so limit - pos cannot wrap. */
        if (blen > limit - pos || limit - pos - blen < 2)
            return fail(p, -E2BIG, pos, "request too large (max %zu bytes)", limit);
        size_t end = pos + blen;
        if (end < avail && buf[end] != '\r')
            return fail(p, -EPROTO, end, "Protocol error: expected CRLF after bulk string");
        if (end + 1 < avail && buf[end + 1] != '\n')
            return fail(p, -EPROTO, end + 1, "Protocol error: expected CRLF after bulk string");
        if (end + 2 > avail)
            return need_more(p, end + 2);
        p->cmd->argv[i].ptr = buf + pos;
        p->cmd->argv[i].len = blen;
        pos = end + 2;
    }
    p->cmd->argc = n;
    *consumed = pos;
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Inline */

static bool
is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static int
hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The byte that the quoted text s[0..n) (n >= 1) starts with, after escapes, into *out;
 * returns how many input bytes it took. In 'single quotes' only \' is an escape; in
 * "double quotes" \xHH, \n \r \t \b \a, and \c for any other c mean c. */
static size_t
unescape(const char *s, size_t n, bool single, char *out) {
    *out = s[0];
    if (s[0] != '\\' || n < 2)
        return 1;
    if (single) {
        if (s[1] != '\'')
            return 1;
        *out = '\'';
        return 2;
    }
    int hi, lo;
    if (s[1] == 'x' && n >= 4 && (hi = hex_value(s[2])) >= 0 && (lo = hex_value(s[3])) >= 0) {
        *out = (char)(unsigned char)(hi * 16 + lo);
        return 4;
    }
    static const char from[] = "nrtba", to[] = "\n\r\t\b\a";
    const char *e = s[1] != '\0' ? strchr(from, s[1]) : NULL;
    *out = e != NULL ? to[e - from] : s[1];
    return 2;
}

/* Builds one inline argument. While the value is a contiguous run of the input it stays
 * a view into buf; at the first byte that breaks the run (an escape, a quote mid-word) the
 * value so far is copied into scratch and built on there. */
typedef struct arg_builder {
    const char *ptr;
    size_t len;
    bool copied;
} arg_builder;

static int
ab_push(parser *p, arg_builder *ab, size_t *scratch_used, const char *src, char c) {
    rs_resp_cmd *cmd = p->cmd;
    size_t room = cmd->scratch_cap - *scratch_used;

    if (!ab->copied) {
        if (ab->len == 0)
            ab->ptr = src;
        if (src == ab->ptr + ab->len && *src == c) {
            ab->len++;
            return 0;
        }
        if (room <= ab->len)
            goto full;
        memcpy(cmd->scratch + *scratch_used, ab->ptr, ab->len);
        ab->ptr = cmd->scratch + *scratch_used;
        ab->copied = true;
    } else if (room <= ab->len) {
        goto full;
    }
    cmd->scratch[*scratch_used + ab->len] = c;
    ab->len++;
    return 0;

full:
    return fail(p, -E2BIG, (size_t)(src - p->buf),
                "inline arguments too long to unescape (max %zu bytes)", cmd->scratch_cap);
}

/* Split line[0..end) into arguments like redis's sdssplitargs. */
static int
split_inline(parser *p, size_t end) {
    const char *line = p->buf;
    size_t scratch_used = 0;
    size_t i = 0;
    int rc;

    for (;;) {
        while (i < end && is_blank(line[i]))
            i++;
        if (i >= end)
            return 0;
        if (p->cmd->argc >= p->max_args)
            return fail(p, -E2BIG, i, "too many arguments (max %zu)", p->max_args);

        arg_builder ab = {.ptr = line + i, .len = 0, .copied = false};
        bool dquote = false, squote = false, done = false;
        while (!done) {
            if (dquote || squote) {
                if (i >= end)
                    return fail(p, -EPROTO, i, "Protocol error: unbalanced quotes in request");
                char c = line[i];
                if (c == (dquote ? '"' : '\'')) {
                    if (i + 1 < end && !is_blank(line[i + 1]))
                        return fail(p, -EPROTO, i + 1,
                                    "Protocol error: closing quote must be followed by a space");
                    i++;
                    done = true;
                    continue;
                }
                char v = c;
                size_t width = unescape(line + i, end - i, squote, &v);
                if ((rc = ab_push(p, &ab, &scratch_used, line + i, v)) < 0)
                    return rc;
                i += width;
            } else if (i >= end || is_blank(line[i])) {
                done = true;
            } else if (line[i] == '"') {
                dquote = true;
                i++;
            } else if (line[i] == '\'') {
                squote = true;
                i++;
            } else {
                if ((rc = ab_push(p, &ab, &scratch_used, line + i, line[i])) < 0)
                    return rc;
                i++;
            }
        }
        p->cmd->argv[p->cmd->argc].ptr = ab.ptr;
        p->cmd->argv[p->cmd->argc].len = ab.len;
        p->cmd->argc++;
        if (ab.copied)
            scratch_used += ab.len;
    }
}

static int
parse_inline(parser *p, size_t *consumed) {
    size_t max = p->lim->max_inline_len;
    size_t scan = p->len < max ? p->len : max;
    const char *nl = memchr(p->buf, '\n', scan);

    if (nl == NULL) {
        if (p->len >= max)
            return fail(p, -E2BIG, scan, "inline request too long (max %zu bytes)", max);
        p->cmd->need = p->len + 1;
        return -EAGAIN;
    }
    size_t end = (size_t)(nl - p->buf);
    int rc = split_inline(p, end);
    if (rc < 0) {
        p->cmd->argc = 0;
        return rc;
    }
    *consumed = end + 1;
    return 0;
}

/* ------------------------------------------------------------------------------------ */

void
rs_resp_limits_init(rs_resp_limits *lim) {
    assert(lim != NULL);
    lim->max_args = RS_RESP_DEFAULT_MAX_ARGS;
    lim->max_bulk_len = RS_RESP_DEFAULT_MAX_BULK_LEN;
    lim->max_inline_len = RS_RESP_DEFAULT_MAX_INLINE_LEN;
    lim->max_request_len = RS_RESP_DEFAULT_MAX_REQUEST_LEN;
}

void
rs_resp_cmd_init(rs_resp_cmd *cmd, rs_resp_arg *argv, size_t argv_cap, char *scratch,
                 size_t scratch_cap) {
    assert(cmd != NULL && (argv != NULL || argv_cap == 0) && (scratch != NULL || scratch_cap == 0));
    cmd->argc = 0;
    cmd->argv = argv;
    cmd->argv_cap = argv_cap;
    cmd->scratch = scratch;
    cmd->scratch_cap = scratch_cap;
    cmd->need = 0;
}

int
rs_resp_parse(const char *buf, size_t len, const rs_resp_limits *lim, rs_resp_cmd *cmd,
              size_t *consumed, rs_resp_error *err) {
    assert(cmd != NULL && consumed != NULL && (buf != NULL || len == 0));
    rs_resp_limits defaults;
    if (lim == NULL) {
        rs_resp_limits_init(&defaults);
        lim = &defaults;
    }
    parser p = {
        .buf = buf,
        .len = len,
        .lim = lim,
        .cmd = cmd,
        .err = err,
        .max_args = lim->max_args < cmd->argv_cap ? lim->max_args : cmd->argv_cap,
    };
    *consumed = 0;
    cmd->argc = 0;
    cmd->need = 0;
    if (err != NULL) {
        err->offset = 0;
        err->msg[0] = '\0';
    }
    if (len == 0) {
        cmd->need = 1;
        return -EAGAIN;
    }
    if (buf[0] == '*')
        return parse_multibulk(&p, consumed);
    return parse_inline(&p, consumed);
}

/* ------------------------------------------------------------------------------------ */
/* Encoders */

/* Append a "<type><text>\r\n" line with CR and LF in text replaced by spaces, so a
 * message can never break the framing. */
static int
put_line(rs_buf *out, char type, const char *text, size_t len) {
    if (len > SIZE_MAX - 3)
        return -ENOMEM;
    int rc = rs_buf_reserve(out, len + 3);
    if (rc < 0)
        return rc;
    (void)rs_buf_append(out, &type, 1);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\r' || text[i] == '\n') {
            (void)rs_buf_append(out, text + start, i - start);
            (void)rs_buf_append(out, " ", 1);
            start = i + 1;
        }
    }
    (void)rs_buf_append(out, text + start, len - start);
    (void)rs_buf_append(out, "\r\n", 2);
    return 0;
}

int
rs_resp_put_simple(rs_buf *out, const char *s) {
    assert(out != NULL && s != NULL);
    return put_line(out, '+', s, strlen(s));
}

int
rs_resp_put_error(rs_buf *out, const char *msg) {
    assert(out != NULL && msg != NULL);
    return put_line(out, '-', msg, strlen(msg));
}

int
rs_resp_put_errorf(rs_buf *out, const char *fmt, ...) {
    assert(out != NULL && fmt != NULL);
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    return put_line(out, '-', text, strlen(text));
}

/* Append a fixed frame formatted into a small stack buffer (headers, integers). */
__attribute__((format(printf, 2, 3))) static int
put_fmt(rs_buf *out, const char *fmt, ...) {
    char tmp[48];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    assert(n > 0 && (size_t)n < sizeof tmp);
    return rs_buf_append(out, tmp, (size_t)n);
}

int
rs_resp_put_integer(rs_buf *out, long long v) {
    assert(out != NULL);
    return put_fmt(out, ":%lld\r\n", v);
}

int
rs_resp_put_bulk(rs_buf *out, const void *data, size_t len) {
    assert(out != NULL && (data != NULL || len == 0));
    /* By hand rather than snprintf: this header is on every lookup reply. */
    char hdr[32];
    int n = 0;
    hdr[n++] = '$';
    if (len < 100) {
        if (len >= 10)
            hdr[n++] = (char)('0' + len / 10);
        hdr[n++] = (char)('0' + len % 10);
    } else {
        char digits[24];
        size_t nd = 0;
        size_t v = len;
        do {
            digits[nd++] = (char)('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (nd > 0) {
            hdr[n++] = digits[--nd];
        }
    }
    hdr[n++] = '\r';
    hdr[n++] = '\n';
    if (len < 100) {
        /* Short values (every address): the frame in one append instead of three. */
        char frame[5 + 99 + 2]; /* "$99\r\n", the value, "\r\n" */
        memcpy(frame, hdr, (size_t)n);
        if (len > 0)
            memcpy(frame + n, data, len);
        frame[(size_t)n + len] = '\r';
        frame[(size_t)n + len + 1] = '\n';
        return rs_buf_append(out, frame, (size_t)n + len + 2);
    }
    if (len > SIZE_MAX - (size_t)n - 2)
        return -ENOMEM;
    int rc = rs_buf_reserve(out, (size_t)n + len + 2);
    if (rc < 0)
        return rc;
    (void)rs_buf_append(out, hdr, (size_t)n);
    (void)rs_buf_append(out, data, len);
    (void)rs_buf_append(out, "\r\n", 2);
    return 0;
}

int
rs_resp_put_bulk_str(rs_buf *out, const char *s) {
    assert(s != NULL);
    return rs_resp_put_bulk(out, s, strlen(s));
}

int
rs_resp_put_null(rs_buf *out) {
    assert(out != NULL);
    return rs_buf_append(out, "$-1\r\n", 5);
}

int
rs_resp_put_array(rs_buf *out, size_t n) {
    assert(out != NULL);
    return put_fmt(out, "*%zu\r\n", n);
}

int
rs_resp_put_null_array(rs_buf *out) {
    assert(out != NULL);
    return rs_buf_append(out, "*-1\r\n", 5);
}
