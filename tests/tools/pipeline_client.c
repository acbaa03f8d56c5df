/* Test tool: pipelines LOOKUPs to ringside through hiredis (redisAppendCommand, then one
 * redisGetReply per request) and prints or checks the answers, in order. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#define LINE_MAX_BYTES 65536
#define TIMEOUT_S 20

typedef struct request {
    char *key;      /* decoded key bytes (malloc'd) */
    size_t key_len; /* bytes in key */
    char *expect;   /* expected reply text, or NULL to print the reply */
} request;

static void
usage(FILE *f) {
    fprintf(f, "usage: pipeline_client SOCKET < requests\n"
               "\n"
               "Reads one request per line on stdin: HEXKEY [EXPECTED]. The key is hex-encoded\n"
               "(\"-\" is the empty key). Sends every request as LOOKUP in one pipeline, then\n"
               "reads the replies in order. A reply is written as its text (bulk or status),\n"
               "\"-<text>\" (error), \"(nil)\" or \"(type N)\". Without EXPECTED the reply is\n"
               "printed, one line per request; with it, mismatches are reported on stderr.\n"
               "Exit: 0 all replies as expected, 1 mismatch or connection failure, 2 usage.\n");
}

static int
hex_nibble(int c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decode hex text[0..len) into a malloc'd buffer; returns 0, or -1 if not valid hex. */
static int
hex_decode(const char *text, size_t len, char **out, size_t *out_len) {
    *out = NULL;
    if (len == 1 && text[0] == '-') {
        len = 0;
    }
    if (len % 2 != 0) {
        return -1;
    }
    char *buf = malloc(len / 2 + 1);
    if (buf == NULL) {
        return -1;
    }
    for (size_t i = 0; i < len; i += 2) {
        int hi = hex_nibble((unsigned char)text[i]), lo = hex_nibble((unsigned char)text[i + 1]);
        if (hi < 0 || lo < 0) {
            free(buf);
            return -1;
        }
        buf[i / 2] = (char)(hi * 16 + lo);
    }
    *out = buf;
    *out_len = len / 2;
    return 0;
}

/* The reply as one line of text (malloc'd), as described in usage(). */
static char *
reply_text(const redisReply *r) {
    char small[64];
    const char *s = small;
    size_t len;
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        s = r->str;
        len = r->len;
        break;
    case REDIS_REPLY_ERROR:
        len = (size_t)r->len + 1;
        {
            char *t = malloc(len + 1);
            if (t != NULL) {
                t[0] = '-';
                memcpy(t + 1, r->str, r->len);
                t[len] = '\0';
            }
            return t;
        }
    case REDIS_REPLY_NIL:
        s = "(nil)";
        len = strlen(s);
        break;
    default:
        len = (size_t)snprintf(small, sizeof(small), "(type %d)", r->type);
        break;
    }
    char *t = malloc(len + 1);
    if (t != NULL) {
        memcpy(t, s, len);
        t[len] = '\0';
    }
    return t;
}

/* Read the requests from f into *out (malloc'd array of *n). Returns 0 or -1. */
static int
read_requests(FILE *f, request **out, size_t *n) {
    static char line[LINE_MAX_BYTES];
    request *v = NULL;
    size_t nv = 0, cap = 0;
    int rc = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        if (len == 0) {
            continue;
        }
        if (nv == cap) {
            cap = cap ? cap * 2 : 1024;
            request *grown = realloc(v, cap * sizeof(*v));
            if (grown == NULL) {
                goto out;
            }
            v = grown;
        }
        char *space = strchr(line, ' ');
        size_t key_hex_len = space != NULL ? (size_t)(space - line) : len;
        request *r = &v[nv];
        r->expect = NULL;
        if (hex_decode(line, key_hex_len, &r->key, &r->key_len) != 0) {
            fprintf(stderr, "pipeline_client: line %zu: key is not hex: %s\n", nv + 1, line);
            goto out;
        }
        if (space != NULL && (r->expect = strdup(space + 1)) == NULL) {
            free(r->key);
            goto out;
        }
        nv++;
    }
    rc = 0;
out:
    if (rc != 0) {
        for (size_t i = 0; i < nv; i++) {
            free(v[i].key);
            free(v[i].expect);
        }
        free(v);
        v = NULL;
        nv = 0;
    }
    *out = v;
    *n = nv;
    return rc;
}

int
main(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc != 2) {
        usage(stderr);
        return 2;
    }
    request *reqs = NULL;
    size_t n = 0;
    redisContext *c = NULL;
    int status = 1;
    size_t mismatches = 0;
    if (read_requests(stdin, &reqs, &n) != 0) {
        goto out;
    }
    struct timeval tv = {.tv_sec = TIMEOUT_S, .tv_usec = 0};
    c = redisConnectUnixWithTimeout(argv[1], tv);
    if (c == NULL || c->err) {
        fprintf(stderr, "pipeline_client: connect %s: %s\n", argv[1], c ? c->errstr : "no memory");
        goto out;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        fprintf(stderr, "pipeline_client: set timeout: %s\n", c->errstr);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (redisAppendCommand(c, "LOOKUP %b", reqs[i].key, reqs[i].key_len) != REDIS_OK) {
            fprintf(stderr, "pipeline_client: append: %s\n", c->errstr);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL) {
            fprintf(stderr, "pipeline_client: reply %zu of %zu: %s\n", i + 1, n, c->errstr);
            goto out;
        }
        char *text = reply_text(r);
        freeReplyObject(r);
        if (text == NULL) {
            fprintf(stderr, "pipeline_client: out of memory\n");
            goto out;
        }
        if (reqs[i].expect == NULL) {
            printf("%s\n", text);
        } else if (strcmp(text, reqs[i].expect) != 0) {
            if (mismatches++ < 10) {
                fprintf(stderr, "pipeline_client: request %zu: expected '%s', got '%s'\n", i + 1,
                        reqs[i].expect, text);
            }
        }
        free(text);
    }
    if (mismatches > 0) {
        fprintf(stderr, "pipeline_client: %zu of %zu replies differ\n", mismatches, n);
    } else {
        status = 0;
    }
out:
    if (c != NULL) {
        redisFree(c);
    }
    for (size_t i = 0; i < n; i++) {
        free(reqs[i].key);
        free(reqs[i].expect);
    }
    free(reqs);
    if (fflush(stdout) != 0) {
        status = 1;
    }
    return status;
}
