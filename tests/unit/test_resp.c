/* Unit tests for the RESP2 codec (rs_resp) and the output buffer (rs_buf): every parse
 * case whole, byte-at-a-time, pipelined and followed by trailing bytes; exact encoder bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rs_buf.h"
#include "rs_resp.h"

#define MAXA 8
#define SCRATCH_CAP 256

typedef struct bytes {
    const char *p;
    size_t n;
} bytes;

/* clang-format off */
#define B(s) {(s), sizeof(s) - 1}
/* clang-format on */

typedef struct parse_case {
    const char *name;
    bytes in;
    int rc;
    size_t consumed; /* rc == 0 */
    size_t argc;     /* rc == 0 */
    bytes argv[MAXA];
    const char *msg; /* rc < 0 other than -EAGAIN: the exact error text */
    const rs_resp_limits *lim;
} parse_case;

static const rs_resp_limits lim_small = {
    .max_args = 3, .max_bulk_len = 10, .max_inline_len = 16, .max_request_len = 38};
static const rs_resp_limits lim_req = {
    .max_args = 10, .max_bulk_len = 100, .max_inline_len = 16, .max_request_len = 30};

/* clang-format off */
#define OK(nm, input, cons, n, ...)                                                            \
    {.name = (nm), .in = B(input), .rc = 0, .consumed = (cons), .argc = (n),                   \
     .argv = {__VA_ARGS__}}
#define OKL(nm, input, limits, cons, n, ...)                                                   \
    {.name = (nm), .in = B(input), .rc = 0, .consumed = (cons), .argc = (n),                   \
     .argv = {__VA_ARGS__}, .lim = (limits)}
#define ERR(nm, input, code, text) {.name = (nm), .in = B(input), .rc = (code), .msg = (text)}
#define ERRL(nm, input, limits, code, text)                                                    \
    {.name = (nm), .in = B(input), .rc = (code), .msg = (text), .lim = (limits)}
#define MORE(nm, input) {.name = (nm), .in = B(input), .rc = -EAGAIN}
#define MOREL(nm, input, limits) {.name = (nm), .in = B(input), .rc = -EAGAIN, .lim = (limits)}

static const parse_case cases[] = {
    /* multibulk */
    OK("mb ping", "*1\r\n$4\r\nPING\r\n", 14, 1, B("PING")),
    OK("mb lookup", "*2\r\n$6\r\nLOOKUP\r\n$3\r\nfoo\r\n", 25, 2, B("LOOKUP"), B("foo")),
    OK("mb lookupn", "*3\r\n$7\r\nLOOKUPN\r\n$3\r\nkey\r\n$1\r\n3\r\n", 33, 3,
       B("LOOKUPN"), B("key"), B("3")),
    OK("mb empty arg", "*2\r\n$4\r\nPING\r\n$0\r\n\r\n", 20, 2, B("PING"), B("")),
    OK("mb binary key", "*2\r\n$6\r\nLOOKUP\r\n$8\r\na\0b\r\nc\r\n\r\n", 30, 2,
       B("LOOKUP"), B("a\0b\r\nc\r\n")),
    OK("mb all bytes look like frames", "*1\r\n$5\r\n*1\r\n$\r\n", 15, 1, B("*1\r\n$")),
    OK("mb two-digit length", "*1\r\n$12\r\nhello world!\r\n", 23, 1, B("hello world!")),
    OK("mb zero count", "*0\r\n", 4, 0),
    OK("mb null count", "*-1\r\n", 5, 0),
    OK("mb three args", "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", 25, 3, B("a"), B("b"), B("c")),
    OKL("mb request exactly at limit", "*2\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n",
        &lim_small, 38, 2, B("0123456789"), B("0123456789")),
    OKL("mb args exactly at limit", "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", &lim_small, 25, 3,
        B("a"), B("b"), B("c")),

    /* inline */
    OK("inline crlf", "PING\r\n", 6, 1, B("PING")),
    OK("inline lf", "PING\n", 5, 1, B("PING")),
    OK("inline two args", "LOOKUP foo\r\n", 12, 2, B("LOOKUP"), B("foo")),
    OK("inline blanks", "  LOOKUPN\t key   3  \r\n", 22, 3, B("LOOKUPN"), B("key"), B("3")),
    OK("inline empty crlf", "\r\n", 2, 0),
    OK("inline empty lf", "\n", 1, 0),
    OK("inline only blanks", "   \t \r\n", 7, 0),
    OK("inline dquoted", "PING \"hello world\"\r\n", 20, 2, B("PING"), B("hello world")),
    OK("inline dquote escapes", "SET \"a\\\"b\\\\c\\n\\r\\t\\b\\a\\x41\\x7a\"\n", 32, 2,
       B("SET"), B("a\"b\\c\n\r\t\b\aAz")),
    OK("inline hex escapes", "X \"\\x00\\xff\\xFe\"\n", 17, 2, B("X"), B("\0\xff\xfe")),
    OK("inline bad hex is literal x", "X \"\\xZZ\\x4\"\n", 12, 2, B("X"), B("xZZx4")),
    OK("inline unknown escape", "X \"\\q\"\n", 7, 2, B("X"), B("q")),
    OK("inline escaped backslash at end", "X \"a\\\\\"\n", 8, 2, B("X"), B("a\\")),
    OK("inline squoted", "PING 'it\\'s'\n", 13, 2, B("PING"), B("it's")),
    OK("inline squote keeps backslashes", "PING 'a\\nb\\\\c'\n", 15, 2, B("PING"),
       B("a\\nb\\\\c")),
    OK("inline squote with dquote", "X '\"'\n", 6, 2, B("X"), B("\"")),
    OK("inline empty dquoted", "PING \"\"\n", 8, 2, B("PING"), B("")),
    OK("inline empty squoted", "PING ''\n", 8, 2, B("PING"), B("")),
    OK("inline quote mid-word", "PING foo\"bar baz\"\n", 18, 2, B("PING"), B("foobar baz")),
    OK("inline quote at end of line", "PING \"x\"\r\n", 10, 2, B("PING"), B("x")),
    OK("inline nul byte is data", "PING a\0b\n", 9, 2, B("PING"), B("a\0b")),
    OK("inline stray cr is blank", "PING\ra\r\r\n", 9, 2, B("PING"), B("a")),
    OK("inline dollar start", "$4\r\n", 4, 1, B("$4")),
    OKL("inline line exactly at limit", "PING 012345678\r\n", &lim_small, 16, 2, B("PING"),
        B("012345678")),
    OKL("inline args exactly at limit", "a b c\n", &lim_small, 6, 3, B("a"), B("b"), B("c")),

    /* truncated: valid so far */
    MORE("empty buffer", ""),
    MORE("star only", "*"),
    MORE("count no cr", "*12"),
    MORE("count no lf", "*1\r"),
    MORE("no dollar yet", "*1\r\n"),
    MORE("dollar only", "*1\r\n$"),
    MORE("bulk len no lf", "*1\r\n$4\r"),
    MORE("bulk data partial", "*1\r\n$4\r\nPI"),
    MORE("bulk data no crlf", "*1\r\n$4\r\nPING"),
    MORE("bulk data no lf", "*1\r\n$4\r\nPING\r"),
    MORE("second arg missing", "*2\r\n$4\r\nPING\r\n"),
    MORE("minus only", "*-"),
    MORE("inline no newline", "PING"),
    MORE("inline quoted no newline", "PING \"a b"),
    MORE("count at limit", "*1025\r\n"),
    MORE("bulk at limit", "*1\r\n$65536\r\n"),
    MOREL("inline one short of limit", "PING 0123456789", &lim_small),

    /* malformed */
    ERR("count not a number", "*x\r\n", -EPROTO, "Protocol error: invalid multibulk length"),
    ERR("count empty", "*\r\n", -EPROTO, "Protocol error: invalid multibulk length"),
    ERR("count -2", "*-2\r\n", -EPROTO, "Protocol error: invalid multibulk length"),
    ERR("count -0", "*-0\r\n", -EPROTO, "Protocol error: invalid multibulk length"),
    ERR("count -10", "*-10\r\n", -EPROTO, "Protocol error: invalid multibulk length"),
    ERR("count leading zero", "*01\r\n", -EPROTO, "Protocol error: invalid multibulk length"),
    ERR("count plus", "*+1\r\n", -EPROTO, "Protocol error: invalid multibulk length"),
    ERR("count trailing junk", "*1x", -EPROTO, "Protocol error: invalid multibulk length"),
    ERR("count space", "*1 \r\n", -EPROTO, "Protocol error: invalid multibulk length"),
    ERR("count cr without lf", "*1\rx", -EPROTO, "Protocol error: invalid multibulk length"),
    ERR("count lf only", "*1\n", -EPROTO, "Protocol error: invalid multibulk length"),
    ERR("expected dollar", "*1\r\nx", -EPROTO, "Protocol error: expected '$', got 'x'"),
    ERR("expected dollar, control byte", "*1\r\n\x01", -EPROTO,
        "Protocol error: expected '$', got '\\x01'"),
    ERR("expected dollar, got cr", "*1\r\n\r\n", -EPROTO,
        "Protocol error: expected '$', got '\\x0d'"),
    ERR("expected dollar, inline arg", "*2\r\n$4\r\nPING\r\nfoo\r\n", -EPROTO,
        "Protocol error: expected '$', got 'f'"),
    ERR("bulk -1", "*1\r\n$-1\r\n", -EPROTO, "Protocol error: invalid bulk length"),
    ERR("bulk not a number", "*1\r\n$x\r\n", -EPROTO, "Protocol error: invalid bulk length"),
    ERR("bulk empty", "*1\r\n$\r\n", -EPROTO, "Protocol error: invalid bulk length"),
    ERR("bulk leading zero", "*1\r\n$04\r\nPING\r\n", -EPROTO,
        "Protocol error: invalid bulk length"),
    ERR("bulk cr without lf", "*1\r\n$4\rPING", -EPROTO, "Protocol error: invalid bulk length"),
    ERR("bulk data too long", "*1\r\n$4\r\nPINGxx", -EPROTO,
        "Protocol error: expected CRLF after bulk string"),
    ERR("bulk data lf missing", "*1\r\n$4\r\nPING\rx", -EPROTO,
        "Protocol error: expected CRLF after bulk string"),
    ERR("bulk data lf only", "*1\r\n$4\r\nPING\n", -EPROTO,
        "Protocol error: expected CRLF after bulk string"),
    ERR("bulk data too short", "*1\r\n$5\r\nPING\r\n\r\n", -EPROTO,
        "Protocol error: expected CRLF after bulk string"),
    ERR("inline unbalanced dquote", "PING \"hello\n", -EPROTO,
        "Protocol error: unbalanced quotes in request"),
    ERR("inline unbalanced squote", "PING 'hello\r\n", -EPROTO,
        "Protocol error: unbalanced quotes in request"),
    ERR("inline escaped closing quote", "PING \"a\\\"\n", -EPROTO,
        "Protocol error: unbalanced quotes in request"),
    ERR("inline squote: backslash escapes the closing quote", "X 'a\\\\'\n", -EPROTO,
        "Protocol error: unbalanced quotes in request"),
    ERR("inline lone quote", "\"\n", -EPROTO, "Protocol error: unbalanced quotes in request"),
    ERR("inline text after dquote", "PING \"a\"b\n", -EPROTO,
        "Protocol error: closing quote must be followed by a space"),
    ERR("inline text after squote", "PING 'a''b'\n", -EPROTO,
        "Protocol error: closing quote must be followed by a space"),

    /* limits */
    ERR("count too big", "*1026\r\n", -E2BIG, "too many arguments (max 1025)"),
    ERR("count huge, no crlf yet", "*99999", -E2BIG, "too many arguments (max 1025)"),
    ERR("count overflowing", "*99999999999999999999\r\n", -E2BIG,
        "too many arguments (max 1025)"),
    ERR("bulk too big", "*1\r\n$65537\r\n", -E2BIG, "bulk string too long (max 65536 bytes)"),
    ERR("bulk overflowing", "*1\r\n$99999999999999999999\r\n", -E2BIG,
        "bulk string too long (max 65536 bytes)"),
    ERR("bulk 2^64", "*1\r\n$18446744073709551616\r\n", -E2BIG,
        "bulk string too long (max 65536 bytes)"),
    ERRL("too many args (small)", "*4\r\n", &lim_small, -E2BIG, "too many arguments (max 3)"),
    ERRL("bulk too big (small)", "*2\r\n$11\r\n", &lim_small, -E2BIG,
         "bulk string too long (max 10 bytes)"),
    ERRL("request over limit", "*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$1\r\na\r\n",
         &lim_small, -E2BIG, "request too large (max 38 bytes)"),
    ERRL("announced bulk over request limit", "*1\r\n$30\r\n", &lim_req, -E2BIG,
         "request too large (max 30 bytes)"),
    ERRL("announced bulk crlf over request limit", "*1\r\n$20\r\n", &lim_req, -E2BIG,
         "request too large (max 30 bytes)"),
    ERRL("inline line too long, no newline", "PING 0123456789a", &lim_small, -E2BIG,
         "inline request too long (max 16 bytes)"),
    ERRL("inline line too long", "PING 0123456789\r\n", &lim_small, -E2BIG,
         "inline request too long (max 16 bytes)"),
    ERRL("inline too many args", "a b c d\n", &lim_small, -E2BIG, "too many arguments (max 3)"),
};
/* clang-format on */

#define NCASES (sizeof cases / sizeof cases[0])

typedef struct parsed {
    int rc;
    size_t consumed;
    size_t argc;
    size_t need;
    bytes argv[RS_RESP_DEFAULT_MAX_ARGS];
    rs_resp_error err;
} parsed;

/* Parse a private heap copy of exactly n bytes (so ASan sees any over-read), record the
 * result, and check the invariants every call must satisfy. */
static void
parse_copy(const char *in, size_t n, size_t off, const rs_resp_limits *lim, parsed *out,
           char *copy_of_args) {
    char *buf = malloc(n > 0 ? n : 1);
    assert_non_null(buf);
    if (n > 0)
        memcpy(buf, in + off, n);
    rs_resp_arg argv[RS_RESP_DEFAULT_MAX_ARGS];
    char scratch[SCRATCH_CAP];
    rs_resp_cmd cmd;
    rs_resp_cmd_init(&cmd, argv, RS_RESP_DEFAULT_MAX_ARGS, scratch, sizeof scratch);

    out->rc = rs_resp_parse(buf, n, lim, &cmd, &out->consumed, &out->err);
    out->argc = cmd.argc;
    out->need = cmd.need;
    if (out->rc == 0) {
        assert_true(out->consumed >= 1 && out->consumed <= n);
        size_t used = 0;
        for (size_t i = 0; i < cmd.argc; i++) {
            const char *p = argv[i].ptr;
            size_t l = argv[i].len;
            assert_non_null(p);
            uintptr_t a = (uintptr_t)p, b0 = (uintptr_t)buf, s0 = (uintptr_t)scratch;
            bool in_buf = a >= b0 && a <= b0 + out->consumed && l <= b0 + out->consumed - a;
            bool in_scratch = a >= s0 && a <= s0 + sizeof scratch && l <= s0 + sizeof scratch - a;
            assert_true(in_buf || in_scratch);
            memcpy(copy_of_args + used, p, l);
            out->argv[i].p = copy_of_args + used;
            out->argv[i].n = l;
            used += l;
        }
    } else {
        assert_int_equal(out->consumed, 0);
        assert_int_equal(out->argc, 0);
    }
    if (out->rc == -EAGAIN) {
        assert_true(out->need > n);
    } else if (out->rc < 0) {
        assert_true(out->rc == -EPROTO || out->rc == -E2BIG);
        assert_true(out->err.msg[0] != '\0');
        for (const char *c = out->err.msg; *c; c++)
            assert_true(*c >= 0x20 && *c < 0x7f);
        assert_true(out->err.offset <= n);
    }
    free(buf);
}

static void
expect_case(const parse_case *c, const parsed *r) {
    if (r->rc != c->rc)
        fail_msg("%s: rc %d, expected %d (%s)", c->name, r->rc, c->rc, r->err.msg);
    if (c->rc == 0) {
        if (r->consumed != c->consumed)
            fail_msg("%s: consumed %zu, expected %zu", c->name, r->consumed, c->consumed);
        if (r->argc != c->argc)
            fail_msg("%s: argc %zu, expected %zu", c->name, r->argc, c->argc);
        for (size_t i = 0; i < c->argc; i++) {
            if (r->argv[i].n != c->argv[i].n || memcmp(r->argv[i].p, c->argv[i].p, c->argv[i].n))
                fail_msg("%s: argv[%zu] is '%.*s' (%zu bytes)", c->name, i, (int)r->argv[i].n,
                         r->argv[i].p, r->argv[i].n);
        }
    } else if (c->msg != NULL) {
        assert_string_equal(r->err.msg, c->msg);
    }
}

static bool
same_result(const parsed *a, const parsed *b) {
    if (a->rc != b->rc || a->consumed != b->consumed || a->argc != b->argc)
        return false;
    for (size_t i = 0; i < a->argc; i++)
        if (a->argv[i].n != b->argv[i].n || memcmp(a->argv[i].p, b->argv[i].p, a->argv[i].n))
            return false;
    if (a->rc != 0 && a->rc != -EAGAIN &&
        (strcmp(a->err.msg, b->err.msg) != 0 || a->err.offset != b->err.offset))
        return false;
    return true;
}

static char args_a[1 << 16], args_b[1 << 16];
static parsed res_a, res_b;

static void
test_cases_whole(void **state) {
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        parse_copy(cases[i].in.p, cases[i].in.n, 0, cases[i].lim, &res_a, args_a);
        expect_case(&cases[i], &res_a);
    }
}

/* Feeding growing prefixes gives -EAGAIN until the first prefix that decides, and from
 * there on exactly the whole-buffer result. A complete request is decided by its last
 * byte, never earlier. */
static void
test_cases_byte_at_a_time(void **state) {
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        const parse_case *c = &cases[i];
        parse_copy(c->in.p, c->in.n, 0, c->lim, &res_a, args_a);
        bool decided = false;
        for (size_t k = 0; k <= c->in.n; k++) {
            parse_copy(c->in.p, k, 0, c->lim, &res_b, args_b);
            if (!decided && res_b.rc == -EAGAIN)
                continue;
            if (!decided && c->rc == 0 && k != c->consumed)
                fail_msg("%s: decided at %zu bytes, expected %zu", c->name, k, c->consumed);
            decided = true;
            if (!same_result(&res_a, &res_b))
                fail_msg("%s: prefix of %zu bytes gives rc %d (%s), whole gives %d", c->name, k,
                         res_b.rc, res_b.err.msg, res_a.rc);
        }
    }
}

/* A decided result does not depend on what follows: the case followed by more bytes
 * (another copy of itself, or junk) gives the same result, and for a request the
 * following copy then parses identically. */
static void
test_cases_followed_by_more(void **state) {
    (void)state;
    static char twice[1024];
    for (size_t i = 0; i < NCASES; i++) {
        const parse_case *c = &cases[i];
        if (c->rc == -EAGAIN)
            continue;
        assert_true(2 * c->in.n + 3 <= sizeof twice);
        memcpy(twice, c->in.p, c->in.n);
        memcpy(twice + c->in.n, c->in.p, c->in.n);
        parse_copy(twice, 2 * c->in.n, 0, c->lim, &res_a, args_a);
        expect_case(c, &res_a);
        if (c->rc == 0) {
            assert_int_equal(c->consumed, c->in.n);
            parse_copy(twice, c->in.n, c->in.n, c->lim, &res_b, args_b);
            expect_case(c, &res_b);
        }
        memcpy(twice + c->in.n, "\0\r\n", 3);
        parse_copy(twice, c->in.n + 3, 0, c->lim, &res_a, args_a);
        expect_case(c, &res_a);
    }
}

/* All default-limit requests from the table, back to back in one buffer, then a
 * truncated request: each parses in turn from the remaining bytes. */
static void
test_pipelined(void **state) {
    (void)state;
    static char stream[8192];
    size_t n = 0;
    for (size_t i = 0; i < NCASES; i++) {
        if (cases[i].rc != 0 || cases[i].lim != NULL)
            continue;
        memcpy(stream + n, cases[i].in.p, cases[i].in.n);
        n += cases[i].in.n;
    }
    memcpy(stream + n, "*2\r\n$4\r\nPI", 11);
    n += 11;

    size_t off = 0;
    for (size_t i = 0; i < NCASES; i++) {
        if (cases[i].rc != 0 || cases[i].lim != NULL)
            continue;
        parse_copy(stream, n - off, off, NULL, &res_a, args_a);
        expect_case(&cases[i], &res_a);
        off += res_a.consumed;
    }
    parse_copy(stream, n - off, off, NULL, &res_a, args_a);
    assert_int_equal(res_a.rc, -EAGAIN);
    assert_int_equal(n - off, 11);
}

/* Like a connection: bytes arrive in uneven chunks into an input buffer; after each read
 * parse every complete request, then shift the unconsumed rest to the front. */
static void
test_stream_in_chunks(void **state) {
    (void)state;
    static const char stream[] = "*2\r\n$6\r\nLOOKUP\r\n$3\r\nfoo\r\n"
                                 "PING\r\n"
                                 "\r\n"
                                 "*0\r\n"
                                 "MLOOKUP a \"b c\" 'd'\n"
                                 "*3\r\n$7\r\nLOOKUPN\r\n$4\r\nk\r\nx\r\n$1\r\n2\r\n";
    static const char *const expect[] = {"LOOKUP|foo", "PING", "MLOOKUP|a|b c|d",
                                         "LOOKUPN|k\r\nx|2"};
    const size_t total = sizeof stream - 1;

    for (size_t chunk = 1; chunk <= 9; chunk++) {
        char in[256];
        size_t have = 0, fed = 0, seen = 0;
        rs_resp_arg argv[8];
        char scratch[64];
        rs_resp_cmd cmd;
        rs_resp_cmd_init(&cmd, argv, 8, scratch, sizeof scratch);
        while (fed < total || have > 0) {
            size_t step = fed + chunk <= total ? chunk : total - fed;
            memcpy(in + have, stream + fed, step);
            have += step;
            fed += step;
            size_t off = 0, used = 0;
            int rc;
            while ((rc = rs_resp_parse(in + off, have - off, NULL, &cmd, &used, NULL)) == 0) {
                off += used;
                if (cmd.argc == 0)
                    continue;
                char joined[64];
                size_t j = 0;
                for (size_t a = 0; a < cmd.argc; a++) {
                    if (a > 0)
                        joined[j++] = '|';
                    memcpy(joined + j, argv[a].ptr, argv[a].len);
                    j += argv[a].len;
                }
                joined[j] = '\0';
                assert_true(seen < 4);
                assert_string_equal(joined, expect[seen]);
                seen++;
            }
            assert_int_equal(rc, -EAGAIN);
            memmove(in, in + off, have - off);
            have -= off;
            if (fed == total)
                break;
        }
        assert_int_equal(seen, 4);
        assert_int_equal(have, 0);
    }
}

/* The -EAGAIN hint: while bulk data trickles in, need is the exact end of the request. */
static void
test_need_hint(void **state) {
    (void)state;
    const char req[] = "*2\r\n$4\r\nPING\r\n$5\r\nhello\r\n";
    rs_resp_arg argv[4];
    rs_resp_cmd cmd;
    size_t used = 99;
    rs_resp_cmd_init(&cmd, argv, 4, NULL, 0);
    assert_int_equal(rs_resp_parse(req, 19, NULL, &cmd, &used, NULL), -EAGAIN);
    assert_int_equal(cmd.need, sizeof req - 1);
    assert_int_equal(used, 0);
    assert_int_equal(rs_resp_parse(req, 3, NULL, &cmd, &used, NULL), -EAGAIN);
    assert_int_equal(cmd.need, 4);
    assert_int_equal(rs_resp_parse(req, sizeof req - 1, NULL, &cmd, &used, NULL), 0);
    assert_int_equal(used, sizeof req - 1);
    assert_int_equal(rs_resp_parse("PI", 2, NULL, &cmd, &used, NULL), -EAGAIN);
    assert_int_equal(cmd.need, 3);
}

/* Arguments that are plain runs of the input are views into it; only unescaped ones use
 * the scratch, and a scratch too small is a clean -E2BIG. */
static void
test_inline_scratch(void **state) {
    (void)state;
    const char line[] = "A \"b c\" 'd' e\"f\" \"g\\\"h\" \"i\\\\\"\n";
    rs_resp_arg argv[8];
    char scratch[8];
    rs_resp_cmd cmd;
    size_t used = 0;
    rs_resp_error err;
    rs_resp_cmd_init(&cmd, argv, 8, scratch, sizeof scratch);
    assert_int_equal(rs_resp_parse(line, sizeof line - 1, NULL, &cmd, &used, &err), 0);
    assert_int_equal(cmd.argc, 6);
    assert_ptr_equal(argv[0].ptr, line);     /* A */
    assert_ptr_equal(argv[1].ptr, line + 3); /* b c */
    assert_ptr_equal(argv[2].ptr, line + 9); /* d */
    assert_ptr_equal(argv[3].ptr, scratch);  /* ef */
    assert_memory_equal(argv[3].ptr, "ef", 2);
    assert_ptr_equal(argv[4].ptr, scratch + 2); /* g"h */
    assert_memory_equal(argv[4].ptr, "g\"h", 3);
    assert_ptr_equal(argv[5].ptr, line + strlen(line) - 5); /* i\ : the run "i\" */
    assert_memory_equal(argv[5].ptr, "i\\", 2);

    /* 4 bytes of scratch: "ef" fits, "g\"h" does not. */
    rs_resp_cmd_init(&cmd, argv, 8, scratch, 4);
    assert_int_equal(rs_resp_parse(line, sizeof line - 1, NULL, &cmd, &used, &err), -E2BIG);
    assert_string_equal(err.msg, "inline arguments too long to unescape (max 4 bytes)");
    assert_int_equal(cmd.argc, 0);
    assert_int_equal(used, 0);

    /* No scratch at all: plain inline requests still work. */
    rs_resp_cmd_init(&cmd, argv, 8, NULL, 0);
    assert_int_equal(rs_resp_parse("LOOKUP \"k\"\n", 11, NULL, &cmd, &used, &err), 0);
    assert_int_equal(cmd.argc, 2);
    assert_int_equal(rs_resp_parse("LOOKUP \"k\\n\"\n", 13, NULL, &cmd, &used, &err), -E2BIG);
}

/* The effective argument limit is the smaller of lim->max_args and argv_cap. */
static void
test_argv_cap(void **state) {
    (void)state;
    rs_resp_arg argv[2];
    rs_resp_cmd cmd;
    size_t used = 0;
    rs_resp_error err;
    rs_resp_cmd_init(&cmd, argv, 2, NULL, 0);
    assert_int_equal(rs_resp_parse("*3\r\n", 4, NULL, &cmd, &used, &err), -E2BIG);
    assert_string_equal(err.msg, "too many arguments (max 2)");
    assert_int_equal(rs_resp_parse("a b c\n", 6, NULL, &cmd, &used, &err), -E2BIG);
    assert_string_equal(err.msg, "too many arguments (max 2)");
    assert_int_equal(rs_resp_parse("a b\n", 4, NULL, &cmd, &used, &err), 0);
    assert_int_equal(cmd.argc, 2);
}

/* An endless line or bulk header never makes the parser wait forever. */
static void
test_unterminated_never_waits_forever(void **state) {
    (void)state;
    static char junk[RS_RESP_DEFAULT_MAX_INLINE_LEN + 10];
    memset(junk, 'a', sizeof junk);
    rs_resp_arg argv[4];
    rs_resp_cmd cmd;
    size_t used = 0;
    rs_resp_error err;
    rs_resp_cmd_init(&cmd, argv, 4, NULL, 0);
    assert_int_equal(
        rs_resp_parse(junk, RS_RESP_DEFAULT_MAX_INLINE_LEN - 1, NULL, &cmd, &used, &err), -EAGAIN);
    assert_int_equal(rs_resp_parse(junk, RS_RESP_DEFAULT_MAX_INLINE_LEN, NULL, &cmd, &used, &err),
                     -E2BIG);
    assert_string_equal(err.msg, "inline request too long (max 65536 bytes)");
    assert_int_equal(rs_resp_parse(junk, sizeof junk, NULL, &cmd, &used, &err), -E2BIG);

    /* Digits without end: the value outgrows the limit long before 20 digits. */
    memset(junk, '1', sizeof junk);
    junk[0] = '*';
    assert_int_equal(rs_resp_parse(junk, 5, NULL, &cmd, &used, &err), -E2BIG);
    memcpy(junk, "*1\r\n$", 5);
    assert_int_equal(rs_resp_parse(junk, 11, NULL, &cmd, &used, &err), -E2BIG);
    memset(junk, '0', sizeof junk);
    memcpy(junk, "*1\r\n$", 5);
    assert_int_equal(rs_resp_parse(junk, 7, NULL, &cmd, &used, &err), -EPROTO);
}

/* A large multibulk request in the defaults: many args, each bulk at the limit. */
static void
test_large_request(void **state) {
    (void)state;
    const size_t nargs = 15, blen = RS_RESP_DEFAULT_MAX_BULK_LEN;
    size_t cap = 32 + nargs * (blen + 32);
    char *req = malloc(cap);
    assert_non_null(req);
    rs_buf out;
    rs_buf_init(&out);
    assert_int_equal(rs_resp_put_array(&out, nargs), 0);
    for (size_t i = 0; i < nargs; i++) {
        memset(req, (int)('a' + i), blen);
        assert_int_equal(rs_resp_put_bulk(&out, req, blen), 0);
    }
    size_t n = rs_buf_len(&out);
    assert_true(n < RS_RESP_DEFAULT_MAX_REQUEST_LEN);
    memcpy(req, rs_buf_data(&out), n);

    rs_resp_arg argv[16];
    rs_resp_cmd cmd;
    size_t used = 0;
    rs_resp_cmd_init(&cmd, argv, 16, NULL, 0);
    assert_int_equal(rs_resp_parse(req, n - 1, NULL, &cmd, &used, NULL), -EAGAIN);
    assert_int_equal(cmd.need, n);
    assert_int_equal(rs_resp_parse(req, n, NULL, &cmd, &used, NULL), 0);
    assert_int_equal(used, n);
    assert_int_equal(cmd.argc, nargs);
    for (size_t i = 0; i < nargs; i++) {
        assert_int_equal(argv[i].len, blen);
        assert_int_equal(argv[i].ptr[0], 'a' + (int)i);
        assert_int_equal(argv[i].ptr[blen - 1], 'a' + (int)i);
    }

    /* 16 such args cannot fit in 1 MiB: rejected at the header of the one that overflows. */
    rs_buf_clear(&out);
    assert_int_equal(rs_resp_put_array(&out, 17), 0);
    for (size_t i = 0; i < 16; i++) {
        memset(req, 'z', blen);
        assert_int_equal(rs_resp_put_bulk(&out, req, blen), 0);
    }
    rs_resp_cmd_init(&cmd, argv, 16, NULL, 0);
    rs_resp_error err;
    int rc = rs_resp_parse(rs_buf_data(&out), rs_buf_len(&out), NULL, &cmd, &used, &err);
    assert_int_equal(rc, -E2BIG);
    assert_true(strcmp(err.msg, "too many arguments (max 16)") == 0); /* argv_cap first */
    rs_resp_arg big_argv[32];
    rs_resp_cmd_init(&cmd, big_argv, 32, NULL, 0);
    rc = rs_resp_parse(rs_buf_data(&out), rs_buf_len(&out), NULL, &cmd, &used, &err);
    assert_int_equal(rc, -E2BIG);
    assert_string_equal(err.msg, "request too large (max 1048576 bytes)");
    assert_true(err.offset < RS_RESP_DEFAULT_MAX_REQUEST_LEN);
    rs_buf_free(&out);
    free(req);
}

/* ------------------------------------------------------------------------------------ */
/* Encoders: expected bytes written out by hand from the RESP2 spec. */

static void
expect_buf(rs_buf *b, const char *want, size_t n) {
    if (rs_buf_len(b) != n || memcmp(rs_buf_data(b), want, n) != 0)
        fail_msg("buffer holds %zu bytes '%.*s', expected %zu '%.*s'", rs_buf_len(b),
                 (int)rs_buf_len(b), rs_buf_data(b), n, (int)n, want);
    rs_buf_clear(b);
}
#define EXPECT(b, lit) expect_buf((b), (lit), sizeof(lit) - 1)

static void
test_encoders(void **state) {
    (void)state;
    rs_buf b;
    rs_buf_init(&b);

    assert_int_equal(rs_resp_put_simple(&b, "PONG"), 0);
    EXPECT(&b, "+PONG\r\n");
    assert_int_equal(rs_resp_put_simple(&b, ""), 0);
    EXPECT(&b, "+\r\n");
    assert_int_equal(rs_resp_put_simple(&b, "a\r\nb\n"), 0);
    EXPECT(&b, "+a  b \r\n");

    assert_int_equal(rs_resp_put_error(&b, "ERR unknown command"), 0);
    EXPECT(&b, "-ERR unknown command\r\n");
    assert_int_equal(rs_resp_put_error(&b, "NORING no usable nodes"), 0);
    EXPECT(&b, "-NORING no usable nodes\r\n");
    assert_int_equal(rs_resp_put_error(&b, "ERR bad\r\n-ERR injected\r\n"), 0);
    EXPECT(&b, "-ERR bad  -ERR injected  \r\n");
    assert_int_equal(rs_resp_put_errorf(&b, "ERR key too long (max %d bytes)", 8192), 0);
    EXPECT(&b, "-ERR key too long (max 8192 bytes)\r\n");
    assert_int_equal(rs_resp_put_errorf(&b, "ERR %s", "Protocol error: x\ny"), 0);
    EXPECT(&b, "-ERR Protocol error: x y\r\n");

    assert_int_equal(rs_resp_put_integer(&b, 0), 0);
    EXPECT(&b, ":0\r\n");
    assert_int_equal(rs_resp_put_integer(&b, 42), 0);
    EXPECT(&b, ":42\r\n");
    assert_int_equal(rs_resp_put_integer(&b, -1), 0);
    EXPECT(&b, ":-1\r\n");
    assert_int_equal(rs_resp_put_integer(&b, LLONG_MAX), 0);
    EXPECT(&b, ":9223372036854775807\r\n");
    assert_int_equal(rs_resp_put_integer(&b, LLONG_MIN), 0);
    EXPECT(&b, ":-9223372036854775808\r\n");

    assert_int_equal(rs_resp_put_bulk(&b, "foo", 3), 0);
    EXPECT(&b, "$3\r\nfoo\r\n");
    assert_int_equal(rs_resp_put_bulk(&b, "", 0), 0);
    EXPECT(&b, "$0\r\n\r\n");
    assert_int_equal(rs_resp_put_bulk(&b, NULL, 0), 0);
    EXPECT(&b, "$0\r\n\r\n");
    assert_int_equal(rs_resp_put_bulk(&b, "a\0\r\n", 4), 0);
    EXPECT(&b, "$4\r\na\0\r\n\r\n");
    assert_int_equal(rs_resp_put_bulk_str(&b, "127.0.0.1:6379"), 0);
    EXPECT(&b, "$14\r\n127.0.0.1:6379\r\n");
    assert_int_equal(rs_resp_put_null(&b), 0);
    EXPECT(&b, "$-1\r\n");

    assert_int_equal(rs_resp_put_array(&b, 0), 0);
    EXPECT(&b, "*0\r\n");
    assert_int_equal(rs_resp_put_array(&b, 1025), 0);
    EXPECT(&b, "*1025\r\n");
    assert_int_equal(rs_resp_put_null_array(&b), 0);
    EXPECT(&b, "*-1\r\n");

    /* A SUBSCRIBE push and a nested array, frame after frame. */
    assert_int_equal(rs_resp_put_array(&b, 3), 0);
    assert_int_equal(rs_resp_put_bulk_str(&b, "message"), 0);
    assert_int_equal(rs_resp_put_bulk_str(&b, "ring"), 0);
    assert_int_equal(rs_resp_put_bulk_str(&b, "7 1a2b"), 0);
    assert_int_equal(rs_resp_put_array(&b, 2), 0);
    assert_int_equal(rs_resp_put_array(&b, 2), 0);
    assert_int_equal(rs_resp_put_bulk_str(&b, "a"), 0);
    assert_int_equal(rs_resp_put_integer(&b, 1), 0);
    assert_int_equal(rs_resp_put_null(&b), 0);
    EXPECT(&b, "*3\r\n$7\r\nmessage\r\n$4\r\nring\r\n$6\r\n7 1a2b\r\n"
               "*2\r\n*2\r\n$1\r\na\r\n:1\r\n$-1\r\n");

    /* Failure appends nothing. */
    assert_int_equal(rs_resp_put_simple(&b, "x"), 0);
    assert_int_equal(rs_resp_put_bulk(&b, "x", RS_BUF_MAX), -ENOMEM);
    assert_int_equal(rs_resp_put_bulk(&b, "x", SIZE_MAX), -ENOMEM);
    EXPECT(&b, "+x\r\n");

    rs_buf_free(&b);
}

/* Encoding arguments as a multibulk request parses back to the same arguments. */
static void
test_encode_parse_roundtrip(void **state) {
    (void)state;
    static const bytes args[] = {B("MLOOKUP"), B(""), B("a\0b"), B("\r\n"), B("*1\r\n$1\r\n")};
    const size_t n = sizeof args / sizeof args[0];
    rs_buf b;
    rs_buf_init(&b);
    assert_int_equal(rs_resp_put_array(&b, n), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rs_resp_put_bulk(&b, args[i].p, args[i].n), 0);
    rs_resp_arg argv[8];
    rs_resp_cmd cmd;
    size_t used = 0;
    rs_resp_cmd_init(&cmd, argv, 8, NULL, 0);
    assert_int_equal(rs_resp_parse(rs_buf_data(&b), rs_buf_len(&b), NULL, &cmd, &used, NULL), 0);
    assert_int_equal(used, rs_buf_len(&b));
    assert_int_equal(cmd.argc, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(argv[i].len, args[i].n);
        assert_memory_equal(argv[i].ptr, args[i].p, args[i].n);
    }
    rs_buf_free(&b);
}

/* ------------------------------------------------------------------------------------ */
/* rs_buf */

static void
test_buf_basics(void **state) {
    (void)state;
    rs_buf b;
    rs_buf_init(&b);
    assert_int_equal(rs_buf_len(&b), 0);
    assert_non_null(rs_buf_data(&b));
    assert_int_equal(rs_buf_append(&b, NULL, 0), 0);
    assert_int_equal(rs_buf_len(&b), 0);
    assert_int_equal(rs_buf_append(&b, "hello", 5), 0);
    assert_int_equal(rs_buf_append(&b, " world", 6), 0);
    assert_int_equal(rs_buf_len(&b), 11);
    assert_memory_equal(rs_buf_data(&b), "hello world", 11);

    rs_buf_consume(&b, 0);
    assert_memory_equal(rs_buf_data(&b), "hello world", 11);
    rs_buf_consume(&b, 6);
    assert_int_equal(rs_buf_len(&b), 5);
    assert_memory_equal(rs_buf_data(&b), "world", 5);
    assert_int_equal(rs_buf_append(&b, "!", 1), 0);
    assert_memory_equal(rs_buf_data(&b), "world!", 6);
    rs_buf_consume(&b, 6);
    assert_int_equal(rs_buf_len(&b), 0);

    rs_buf_clear(&b);
    assert_int_equal(rs_buf_len(&b), 0);
    rs_buf_free(&b);
    assert_int_equal(rs_buf_len(&b), 0);
    assert_int_equal(rs_buf_append(&b, "again", 5), 0); /* usable after free */
    assert_memory_equal(rs_buf_data(&b), "again", 5);
    rs_buf_free(&b);
    rs_buf_free(NULL);
}

/* Grow through many sizes while consuming from the front, as partial writes do; the
 * content must always be exactly the bytes appended minus those consumed. */
static void
test_buf_growth_and_consume(void **state) {
    (void)state;
    rs_buf b;
    rs_buf_init(&b);
    size_t next_in = 0, next_out = 0;
    unsigned char chunk[1000];
    for (int round = 0; round < 2000; round++) {
        size_t add = (size_t)(round * 7919 % 1000);
        for (size_t i = 0; i < add; i++)
            chunk[i] = (unsigned char)((next_in + i) % 251);
        assert_int_equal(rs_buf_append(&b, chunk, add), 0);
        next_in += add;
        size_t take = (size_t)(round * 104729 % 1100);
        if (take > rs_buf_len(&b))
            take = rs_buf_len(&b);
        const unsigned char *d = (const unsigned char *)rs_buf_data(&b);
        for (size_t i = 0; i < rs_buf_len(&b); i++)
            if (d[i] != (unsigned char)((next_out + i) % 251))
                fail_msg("round %d: byte %zu wrong", round, i);
        rs_buf_consume(&b, take);
        next_out += take;
        assert_int_equal(rs_buf_len(&b), next_in - next_out);
    }
    assert_true(b.cap < 8 * 1024); /* the consumed front was reused, not grown past */
    rs_buf_free(&b);
}

static void
test_buf_limits(void **state) {
    (void)state;
    rs_buf b;
    rs_buf_init(&b);
    assert_int_equal(rs_buf_append(&b, "abc", 3), 0);
    assert_int_equal(rs_buf_reserve(&b, SIZE_MAX), -ENOMEM);
    assert_int_equal(rs_buf_reserve(&b, RS_BUF_MAX), -ENOMEM);
    assert_int_equal(rs_buf_reserve(&b, RS_BUF_MAX - 2), -ENOMEM);
    assert_int_equal(rs_buf_append(&b, "x", SIZE_MAX), -ENOMEM);
    assert_int_equal(rs_buf_len(&b), 3);
    assert_memory_equal(rs_buf_data(&b), "abc", 3);
    assert_int_equal(rs_buf_reserve(&b, 1000), 0);
    assert_true(b.cap >= 1003);
    rs_buf_free(&b);

    /* A big buffer consumed to empty gives its memory back; a small one keeps it. */
    static char big[RS_BUF_KEEP + 1];
    memset(big, 'q', sizeof big);
    assert_int_equal(rs_buf_append(&b, big, sizeof big), 0);
    assert_true(b.cap > RS_BUF_KEEP);
    rs_buf_consume(&b, 10);
    assert_non_null(b.data);
    rs_buf_consume(&b, sizeof big - 10);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    assert_int_equal(rs_buf_append(&b, "z", 1), 0);
    rs_buf_consume(&b, 1);
    assert_non_null(b.data);
    rs_buf_free(&b);
}

int
main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases_whole),
        cmocka_unit_test(test_cases_byte_at_a_time),
        cmocka_unit_test(test_cases_followed_by_more),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_stream_in_chunks),
        cmocka_unit_test(test_need_hint),
        cmocka_unit_test(test_inline_scratch),
        cmocka_unit_test(test_argv_cap),
        cmocka_unit_test(test_unterminated_never_waits_forever),
        cmocka_unit_test(test_large_request),
        cmocka_unit_test(test_encoders),
        cmocka_unit_test(test_encode_parse_roundtrip),
        cmocka_unit_test(test_buf_basics),
        cmocka_unit_test(test_buf_growth_and_consume),
        cmocka_unit_test(test_buf_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
