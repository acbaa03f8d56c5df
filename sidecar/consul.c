/* Consul blocking-query watches: libcurl's multi_socket interface driven by libuv (uv_poll
 * per socket, one uv_timer for curl's timeouts, one uv_timer per watch for rate limit and
 * backoff). Policy (backoff, token bucket) comes from rs_membership. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, explicit_bzero */
#endif
#include "consul.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "rs_membership.h"

#ifndef RINGSIDE_VERSION
#define RINGSIDE_VERSION "unknown"
#endif

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define HASH_LEN 32                  /* SHA-256 */
#define BODY_KEEP_CAP (1024 * 1024)  /* a larger body buffer is freed after use */
#define RETRY_AFTER_MAX_S 3600       /* a longer Retry-After is clamped */
#define MAX_WAIT_MS (10 * 60 * 1000) /* Consul caps ?wait at 10 minutes */
#define SNIPPET_LEN 120              /* bytes of an error body quoted in a message */
#define TOKEN_FILE_READ 4096         /* bytes read from a token file */

typedef enum client_state {
    CLIENT_OPEN,    /* watches run */
    CLIENT_CLOSING, /* transfers cancelled, handles closing; freed in the last close_cb */
} client_state;

typedef enum watch_state {
    WATCH_WAITING,   /* the watch timer is armed (rate limit, backoff or next request) */
    WATCH_IN_FLIGHT, /* the easy handle is in the multi handle */
    WATCH_CLOSED,    /* client closing: timer closing, easy handle gone */
} watch_state;

/* One socket curl wants watched. Lives until its poll handle's close_cb. */
typedef struct sock_ctx {
    uv_poll_t poll;
    consul_client *c;
    curl_socket_t fd;
    struct sock_ctx *prev, *next;
} sock_ctx;

struct consul_watch {
    consul_client *c;
    struct consul_watch *next;
    watch_state state;
    char *name;
    char *path;
    bool is_kv; /* a 404 means "no keys under the prefix" */
    consul_change_cb on_change;
    consul_error_cb on_error;
    void *arg;

    uv_timer_t timer;
    CURL *easy;
    struct curl_slist *headers; /* X-Consul-Token; wiped before it is freed */
    char *url;
    char errbuf[CURL_ERROR_SIZE];

    uint64_t index;        /* what the next request blocks on; 0 = no index */
    unsigned attempt;      /* consecutive errors: the backoff exponent */
    bool retry_pending;    /* the next request is a retry after an error */
    bool throttle_counted; /* this request has been counted as throttled */
    bool leader_read;      /* drop ?stale once: the last stale answer was too old */
    bool sent_stale;       /* the request in flight carries ?stale */
    size_t addr;           /* address of the request in flight */
    rs_bucket bucket;
    unsigned char last_hash[HASH_LEN];
    bool have_hash;

    /* The response in flight. */
    char *body;
    size_t body_len, body_cap;
    bool too_large;
    bool has_index, bad_index, filtered;
    uint64_t hdr_index;
    int64_t hdr_last_contact; /* -1: absent */
    int64_t hdr_retry_after;  /* seconds, -1: absent or not a number */

    consul_watch_stats stats;
};

struct consul_client {
    uv_loop_t *loop;
    consul_settings s;
    client_state state;
    CURLM *multi;
    uv_timer_t curl_timer;
    consul_watch *watches;
    sock_ctx *socks;
    size_t current;   /* address the next request goes to */
    int open_handles; /* uv handles not yet through their close_cb */
    uint64_t rng;
    void (*done)(void *arg);
    void *done_arg;
};

static void on_watch_timer(uv_timer_t *t);
static void check_multi_info(consul_client *c);

/* ---- small helpers -------------------------------------------------------------------- */

static void
client_set_state(consul_client *c, client_state next) {
    /* The only move: OPEN -> CLOSING. */
    assert(c->state == CLIENT_OPEN && next == CLIENT_CLOSING);
    c->state = next;
}

static void
watch_set_state(consul_watch *w, watch_state next) {
    /* WAITING <-> IN_FLIGHT, and either -> CLOSED (once). */
    assert(w->state != WATCH_CLOSED);
    assert(next == WATCH_CLOSED || next != w->state);
    w->state = next;
}

static void
wipe(void *p, size_t n) {
    explicit_bzero(p, n);
}

/* xorshift64*: jitter only, no security need. */
static double
client_random(consul_client *c) {
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0; /* 2^53 */
}

static bool
token_chars_ok(const char *t) {
    /* The token goes into a header line: printable ASCII, no spaces, nothing else. */
    for (const unsigned char *p = (const unsigned char *)t; *p != '\0'; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return false;
        }
    }
    return true;
}

static bool
url_chars_ok(const char *u) {
    for (const unsigned char *p = (const unsigned char *)u; *p != '\0'; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '#') {
            return false;
        }
    }
    return true;
}

static bool
has_http_scheme(const char *a) {
    return (strncmp(a, "http://", 7) == 0 && a[7] != '\0') ||
           (strncmp(a, "https://", 8) == 0 && a[8] != '\0');
}

/* Replace every copy of the token in msg (NUL-terminated, capacity cap) by "[token]".
 * Belt and braces: no message is built from the token, but error bodies are quoted. */
static void
redact(char *msg, size_t cap, const char *token) {
    size_t tlen = strlen(token);
    if (tlen == 0) {
        return;
    }
    static const char mark[] = "[token]";
    char *hit;
    char *from = msg;
    while ((hit = strstr(from, token)) != NULL) {
        size_t tail = strlen(hit + tlen);
        size_t head = (size_t)(hit - msg);
        size_t mlen = sizeof(mark) - 1;
        if (head + mlen >= cap) {
            hit[0] = '\0';
            break;
        }
        if (head + mlen + tail >= cap) {
            tail = cap - 1 - head - mlen;
        }
        memmove(hit + mlen, hit + tlen, tail);
        memcpy(hit, mark, mlen);
        hit[mlen + tail] = '\0';
        from = hit + mlen;
    }
}

/* ---- settings ------------------------------------------------------------------------- */

void
consul_settings_init(consul_settings *s) {
    memset(s, 0, sizeof(*s));
    s->stale = true;
    s->wait_ms = 300000;
    s->max_stale_ms = 10000;
    s->rate = 10.0;
    s->burst = 20.0;
    s->backoff_base_ms = 100;
    /* A 1 s cap: SPEC 12 wants recovery within a second of Consul's return; full
     * jitter spreads a fleet's retries over that second. */
    s->backoff_cap_ms = 1000;
    s->connect_timeout_ms = 2000;
}

int
consul_read_token_file(const char *path, char *out, size_t cap, rs_error *err) {
    assert(path != NULL && out != NULL && cap > 0);
    char buf[TOKEN_FILE_READ];
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        rc = -errno;
        return rs_error_set(err, rc, "token file %s: %s", path, strerror(-rc));
    }
    size_t n = 0;
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = -errno;
            rs_error_set(err, rc, "token file %s: %s", path, strerror(-rc));
            goto out;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    size_t end = 0;
    while (end < n && buf[end] != '\n') {
        end++;
    }
    size_t start = 0;
    while (start < end && isspace((unsigned char)buf[start])) {
        start++;
    }
    while (end > start && isspace((unsigned char)buf[end - 1])) {
        end--;
    }
    size_t len = end - start;
    size_t max = cap - 1 < 511 ? cap - 1 : 511;
    if (len > max) {
        rc = rs_error_set(err, -E2BIG, "token file %s: the token is longer than %zu bytes", path,
                          max);
        goto out;
    }
    memcpy(out, buf + start, len);
    out[len] = '\0';
    if (!token_chars_ok(out)) {
        wipe(out, len);
        rc = rs_error_set(err, -EINVAL,
                          "token file %s: the token has characters other than printable ASCII",
                          path);
        goto out;
    }
out:
    wipe(buf, sizeof(buf));
    close(fd);
    return rc;
}

/* Go's strconv.ParseBool, as Consul reads CONSUL_HTTP_SSL. */
static int
parse_bool(const char *v, bool *out) {
    static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static int
copy_env_path(const char *var, char *dst, size_t cap, rs_error *err) {
    const char *v = getenv(var);
    if (v == NULL || v[0] == '\0') {
        return 0;
    }
    if (strlen(v) >= cap) {
        return rs_error_set(err, -ENAMETOOLONG, "%s: longer than %zu bytes", var, cap - 1);
    }
    strcpy(dst, v);
    return 0;
}

/* CONSUL_HTTP_ADDR: "host:port", "http(s)://host:port", several separated by commas. */
static int
parse_env_addresses(const char *v, bool ssl, consul_settings *s, rs_error *err) {
    size_t n = 0;
    const char *p = v;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma != NULL ? comma : p + strlen(p);
        while (p < end && isspace((unsigned char)*p)) {
            p++;
        }
        const char *e = end;
        while (e > p && isspace((unsigned char)e[-1])) {
            e--;
        }
        while (e > p && e[-1] == '/') {
            e--;
        }
        size_t len = (size_t)(e - p);
        if (len == 0) {
            return rs_error_set(err, -EINVAL, "CONSUL_HTTP_ADDR: empty address in the list");
        }
        if (n == CONSUL_MAX_ADDRESSES) {
            return rs_error_set(err, -EINVAL, "CONSUL_HTTP_ADDR: more than %d addresses",
                                CONSUL_MAX_ADDRESSES);
        }
        char addr[sizeof(s->addresses[0])];
        const char *scheme = "";
        if (memmem(p, len, "://", 3) == NULL) {
            scheme = ssl ? "https://" : "http://";
        }
        int w = snprintf(addr, sizeof(addr), "%s%.*s", scheme, (int)len, p);
        if (w < 0 || (size_t)w >= sizeof(addr)) {
            return rs_error_set(err, -ENAMETOOLONG, "CONSUL_HTTP_ADDR: address %zu too long",
                                n + 1);
        }
        if (strncmp(addr, "unix://", 7) == 0) {
            return rs_error_set(err, -EINVAL,
                                "CONSUL_HTTP_ADDR: unix sockets are not supported (%s)", addr);
        }
        if (!has_http_scheme(addr) || !url_chars_ok(addr)) {
            return rs_error_set(err, -EINVAL,
                                "CONSUL_HTTP_ADDR: %s: expected [http[s]://]host:port", addr);
        }
        memcpy(s->addresses[n++], addr, sizeof(addr));
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }
    s->n_addresses = n;
    return 0;
}

int
consul_settings_from_env(consul_settings *s, rs_error *err) {
    consul_settings t = *s; /* committed only when everything parsed */
    int rc = 0;
    bool ssl = false;
    const char *v = getenv("CONSUL_HTTP_SSL");
    if (v != NULL && v[0] != '\0' && parse_bool(v, &ssl) < 0) {
        rc =
            rs_error_set(err, -EINVAL, "CONSUL_HTTP_SSL: expected true or false, got \"%.32s\"", v);
        goto out;
    }
    v = getenv("CONSUL_HTTP_ADDR");
    if (v != NULL && v[0] != '\0' && (rc = parse_env_addresses(v, ssl, &t, err)) < 0) {
        goto out;
    }
    v = getenv("CONSUL_HTTP_TOKEN");
    if (v != NULL && v[0] != '\0') {
        if (strlen(v) >= sizeof(t.token)) {
            rc = rs_error_set(err, -E2BIG, "CONSUL_HTTP_TOKEN: longer than %zu bytes",
                              sizeof(t.token) - 1);
            goto out;
        }
        if (!token_chars_ok(v)) {
            rc = rs_error_set(err, -EINVAL,
                              "CONSUL_HTTP_TOKEN: characters other than printable ASCII");
            goto out;
        }
        strcpy(t.token, v);
    }
    /* As in Consul's Go API, a token file wins over CONSUL_HTTP_TOKEN. */
    v = getenv("CONSUL_HTTP_TOKEN_FILE");
    if (v != NULL && v[0] != '\0' &&
        (rc = consul_read_token_file(v, t.token, sizeof(t.token), err)) < 0) {
        goto out;
    }
    if ((rc = copy_env_path("CONSUL_CACERT", t.ca_file, sizeof(t.ca_file), err)) < 0 ||
        (rc = copy_env_path("CONSUL_CLIENT_CERT", t.cert_file, sizeof(t.cert_file), err)) < 0 ||
        (rc = copy_env_path("CONSUL_CLIENT_KEY", t.key_file, sizeof(t.key_file), err)) < 0) {
        goto out;
    }
    *s = t;
out:
    wipe(t.token, sizeof(t.token));
    return rc;
}

/* ---- curl <-> libuv glue --------------------------------------------------------------- */

static void
client_maybe_free(consul_client *c) {
    if (c->state != CLIENT_CLOSING || c->open_handles > 0) {
        return;
    }
    void (*done)(void *) = c->done;
    void *arg = c->done_arg;
    wipe(c->s.token, sizeof(c->s.token));
    free(c);
    if (done != NULL) {
        done(arg);
    }
}

static void
on_sock_closed(uv_handle_t *h) {
    sock_ctx *k = container_of((uv_poll_t *)h, sock_ctx, poll);
    consul_client *c = k->c;
    free(k);
    c->open_handles--;
    client_maybe_free(c);
}

static void
sock_close(sock_ctx *k) {
    consul_client *c = k->c;
    if (k->prev != NULL) {
        k->prev->next = k->next;
    } else {
        c->socks = k->next;
    }
    if (k->next != NULL) {
        k->next->prev = k->prev;
    }
    k->prev = k->next = NULL;
    /* Stop now: curl closes the descriptor right after telling us to forget it. */
    uv_poll_stop(&k->poll);
    uv_close((uv_handle_t *)&k->poll, on_sock_closed);
}

static void
on_poll(uv_poll_t *p, int status, int events) {
    sock_ctx *k = container_of(p, sock_ctx, poll);
    consul_client *c = k->c;
    if (c->state != CLIENT_OPEN) {
        return;
    }
    int flags = 0;
    if (status < 0) {
        /* Let curl read or write the socket itself: it then reports the real cause
         * ("Connection reset by peer") instead of a bare poll error. */
        flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
    } else {
        flags |= (events & UV_READABLE) ? CURL_CSELECT_IN : 0;
        flags |= (events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0;
    }
    int running;
    /* May close k (CURL_POLL_REMOVE): k is not touched after this. */
    curl_multi_socket_action(c->multi, k->fd, flags, &running);
    check_multi_info(c);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching one socket. */
static int
on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    (void)easy;
    consul_client *c = userp;
    sock_ctx *k = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (k != NULL) {
            sock_close(k);
        }
        return 0;
    }
    if (c->state != CLIENT_OPEN) {
        return 0;
    }
    if (k == NULL) {
        k = calloc(1, sizeof(*k));
        if (k == NULL) {
            return -1;
        }
        if (uv_poll_init_socket(c->loop, &k->poll, fd) != 0) {
            free(k);
            return -1;
        }
        c->open_handles++;
        k->c = c;
        k->fd = fd;
        k->next = c->socks;
        if (c->socks != NULL) {
            c->socks->prev = k;
        }
        c->socks = k;
        curl_multi_assign(c->multi, fd, k);
    }
    int events = 0;
    events |= (what & CURL_POLL_IN) ? UV_READABLE : 0;
    events |= (what & CURL_POLL_OUT) ? UV_WRITABLE : 0;
    return uv_poll_start(&k->poll, events, on_poll) == 0 ? 0 : -1;
}

static void
on_curl_timer_fired(uv_timer_t *t) {
    consul_client *c = container_of(t, consul_client, curl_timer);
    if (c->state != CLIENT_OPEN) {
        return;
    }
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(c);
}

/* CURLMOPT_TIMERFUNCTION: curl must not be called from here, so even 0 ms goes through
 * the timer (it fires on the next loop iteration). */
static int
on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
    (void)multi;
    consul_client *c = userp;
    if (c->state != CLIENT_OPEN) {
        return 0;
    }
    if (timeout_ms < 0) {
        uv_timer_stop(&c->curl_timer);
        return 0;
    }
    return uv_timer_start(&c->curl_timer, on_curl_timer_fired, (uint64_t)timeout_ms, 0) == 0 ? 0
                                                                                             : -1;
}

/* ---- responses --------------------------------------------------------------------------- */

static size_t
on_body(char *data, size_t size, size_t nmemb, void *userp) {
    consul_watch *w = userp;
    size_t n = size * nmemb;
    if (n > RS_KV_MAX_BODY - w->body_len) {
        w->too_large = true;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (w->body_len + n + 1 > w->body_cap) {
        size_t cap = w->body_cap != 0 ? w->body_cap : 16 * 1024;
        while (cap < w->body_len + n + 1) {
            cap *= 2;
        }
        if (cap > (size_t)RS_KV_MAX_BODY + 1) {
            cap = (size_t)RS_KV_MAX_BODY + 1;
        }
        char *b = realloc(w->body, cap);
        if (b == NULL) {
            return 0;
        }
        w->body = b;
        w->body_cap = cap;
    }
    memcpy(w->body + w->body_len, data, n);
    w->body_len += n;
    w->body[w->body_len] = '\0';
    return n;
}

/* A non-negative decimal that fills v[0..len) exactly. */
static bool
parse_u64(const char *v, size_t len, uint64_t *out) {
    if (len == 0 || len > 20) {
        return false;
    }
    uint64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return false;
        }
        uint64_t d = (uint64_t)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10) {
            return false;
        }
        x = x * 10 + d;
    }
    *out = x;
    return true;
}

static bool
header_is(const char *line, size_t len, const char *name, const char **value, size_t *vlen) {
    size_t n = strlen(name);
    if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0) {
        return false;
    }
    const char *v = line + n + 1;
    const char *e = line + len;
    while (v < e && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t')) {
        e--;
    }
    *value = v;
    *vlen = (size_t)(e - v);
    return true;
}

static void
response_reset(consul_watch *w) {
    w->body_len = 0;
    if (w->body != NULL) {
        w->body[0] = '\0';
    }
    w->too_large = false;
    w->has_index = false;
    w->bad_index = false;
    w->filtered = false;
    w->hdr_index = 0;
    w->hdr_last_contact = -1;
    w->hdr_retry_after = -1;
}

static size_t
on_header(char *line, size_t size, size_t nmemb, void *userp) {
    consul_watch *w = userp;
    size_t len = size * nmemb;
    const char *v;
    size_t vlen;
    uint64_t x;
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        response_reset(w); /* a new status line: an interim (1xx) answer came before */
    } else if (header_is(line, len, "X-Consul-Index", &v, &vlen)) {
        w->has_index = true;
        w->bad_index = !parse_u64(v, vlen, &w->hdr_index);
    } else if (header_is(line, len, "X-Consul-LastContact", &v, &vlen)) {
        w->hdr_last_contact = parse_u64(v, vlen, &x) && x <= INT64_MAX ? (int64_t)x : -1;
    } else if (header_is(line, len, "X-Consul-Results-Filtered-By-ACLs", &v, &vlen)) {
        w->filtered = vlen == 4 && strncasecmp(v, "true", 4) == 0;
    } else if (header_is(line, len, "Retry-After", &v, &vlen)) {
        /* Seconds only; an HTTP-date falls back to our own backoff. */
        if (parse_u64(v, vlen, &x)) {
            w->hdr_retry_after = x > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : (int64_t)x;
        }
    }
    return len;
}

static void
arm_timer(consul_watch *w, uint64_t delay_ms) {
    int rc = uv_timer_start(&w->timer, on_watch_timer, delay_ms, 0);
    assert(rc == 0); /* only fails on a closing handle, which a WAITING watch never has */
    (void)rc;
}

/* The next request goes to another agent: transport errors and 5xx. Several watches may
 * fail on the same agent at once; only the first one moves the shared cursor. */
static void
client_failover(consul_client *c, consul_watch *w) {
    if (c->s.n_addresses > 1 && c->current == w->addr) {
        c->current = (c->current + 1) % c->s.n_addresses;
        w->stats.failovers++;
    }
}

enum { NO_FAILOVER = 0, FAILOVER = 1 };

/* An error: report it, keep the index, and retry after retry_after_ms (>= 0) or the
 * jittered backoff. The callback comes last: it may close the client. */
static void
watch_fail(consul_watch *w, int failover, int64_t retry_after_ms, const char *msg) {
    consul_client *c = w->c;
    assert(w->state == WATCH_WAITING);
    if (failover == FAILOVER) {
        client_failover(c, w);
        /* The agent failed or vanished: it may come back with less data and a lower
         * index (dev agent, rebuilt cluster, restored snapshot). Re-read without an
         * index so its first answer is immediate; the content hash keeps an unchanged
         * answer from reaching on_change. */
        w->index = 0;
        w->stats.index = 0;
    }
    uint64_t delay = retry_after_ms >= 0 ? (uint64_t)retry_after_ms
                                         : rs_backoff_ms(w->attempt, c->s.backoff_base_ms,
                                                         c->s.backoff_cap_ms, client_random(c));
    if (w->attempt < 64) {
        w->attempt++;
    }
    w->retry_pending = true;
    w->stats.errors++;
    w->stats.last_backoff_ms = delay;
    snprintf(w->stats.last_error, sizeof(w->stats.last_error), "%s", msg);
    redact(w->stats.last_error, sizeof(w->stats.last_error), c->s.token);
    arm_timer(w, delay);
    if (w->on_error != NULL) {
        w->on_error(w, w->stats.last_error, w->arg);
    }
}

/* The first line of an error body, for the message. */
static void
body_snippet(const consul_watch *w, char *out, size_t cap) {
    size_t n = 0;
    while (n < w->body_len && n + 1 < cap && n < SNIPPET_LEN && w->body[n] != '\n' &&
           w->body[n] != '\r') {
        n++;
    }
    memcpy(out, w->body != NULL ? w->body : "", n);
    out[n] = '\0';
}

static void
watch_http_error(consul_watch *w, long status) {
    consul_client *c = w->c;
    const char *addr = c->s.addresses[w->addr];
    char snippet[SNIPPET_LEN + 1];
    rs_error e;
    body_snippet(w, snippet, sizeof(snippet));
    const char *sep = snippet[0] != '\0' ? ": " : "";
    if (status == 429) {
        int64_t ra = w->hdr_retry_after >= 0 ? w->hdr_retry_after * 1000 : -1;
        rs_error_set(&e, 0, "%s: HTTP 429 too many requests%s%s", addr, sep, snippet);
        watch_fail(w, NO_FAILOVER, ra, e.msg);
    } else if (status >= 500) {
        rs_error_set(&e, 0, "%s: HTTP %ld%s%s", addr, status, sep, snippet);
        watch_fail(w, FAILOVER, -1, e.msg);
    } else if (status == 403) {
        rs_error_set(&e, 0, "%s: HTTP 403 permission denied (check the ACL token)%s%s", addr, sep,
                     snippet);
        watch_fail(w, NO_FAILOVER, -1, e.msg);
    } else {
        rs_error_set(&e, 0, "%s: unexpected HTTP %ld%s%s", addr, status, sep, snippet);
        watch_fail(w, NO_FAILOVER, -1, e.msg);
    }
}

static void
watch_success(consul_watch *w, long status) {
    consul_client *c = w->c;
    const char *addr = c->s.addresses[w->addr];
    rs_error e;
    w->stats.last_contact_ms = w->hdr_last_contact;
    if (!w->has_index || w->bad_index) {
        rs_error_set(&e, 0, "%s: %s X-Consul-Index header", addr,
                     w->has_index ? "malformed" : "no");
        watch_fail(w, NO_FAILOVER, -1, e.msg);
        return;
    }
    if (w->filtered) {
        rs_error_set(&e, 0,
                     "%s: results filtered by ACLs (the token cannot read everything; a partial "
                     "listing is not used)",
                     addr);
        watch_fail(w, NO_FAILOVER, -1, e.msg);
        return;
    }
    if (w->sent_stale && w->hdr_last_contact > (int64_t)c->s.max_stale_ms) {
        /* The follower that answered is too far behind: ask the leader next time. */
        w->leader_read = true;
        rs_error_set(&e, 0,
                     "%s: stale answer (last contact %" PRId64 " ms); the limit is %" PRIu32
                     " ms, retrying without ?stale",
                     addr, w->hdr_last_contact, c->s.max_stale_ms);
        watch_fail(w, NO_FAILOVER, -1, e.msg);
        return;
    }

    /* Consul's rules: an index of 0 is a Consul bug, clamp it to 1; an index that went
     * backwards (snapshot restore, new cluster) resets ours to 0 and the body counts as
     * new even if it hashes the same. */
    uint64_t index = w->hdr_index > 0 ? w->hdr_index : 1;
    bool reset = index < w->index;
    if (reset) {
        w->stats.index_resets++;
        w->index = 0;
    } else {
        w->index = index;
    }

    const char *body = w->body != NULL ? w->body : "";
    size_t len = w->body_len;
    if (status == 404) {
        body = "[]";
        len = 2;
    }
    unsigned char hash[HASH_LEN];
    unsigned int hlen = 0;
    bool hashed = EVP_Digest(body, len, hash, &hlen, EVP_sha256(), NULL) == 1;
    bool same = !reset && hashed && w->have_hash && memcmp(hash, w->last_hash, HASH_LEN) == 0;

    w->attempt = 0;
    w->leader_read = false;
    w->stats.last_error[0] = '\0';
    w->stats.last_success_ms = uv_now(c->loop);
    w->stats.index = w->index;
    arm_timer(w, 0); /* the bucket decides when the next request really goes out */

    if (same) {
        w->stats.unchanged++;
        return;
    }
    w->have_hash = hashed;
    if (hashed) {
        memcpy(w->last_hash, hash, HASH_LEN);
    }
    w->stats.changes++;
    w->on_change(w, (int)status, body, len, w->hdr_index, w->arg);
}

static void
watch_done(consul_watch *w, CURLcode res) {
    consul_client *c = w->c;
    watch_set_state(w, WATCH_WAITING);
    long status = 0;
    if (res == CURLE_OK) {
        curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status);
    }
    long cls = status / 100;
    w->stats.responses_by_class[cls >= 0 && cls <= 5 ? cls : 0]++;

    if (res != CURLE_OK) {
        rs_error e;
        const char *addr = c->s.addresses[w->addr];
        if (w->too_large || res == CURLE_FILESIZE_EXCEEDED) {
            rs_error_set(&e, 0, "%s: response larger than %u MiB", addr,
                         RS_KV_MAX_BODY / (1024u * 1024u));
        } else {
            rs_error_set(&e, 0, "%s: %s", addr,
                         w->errbuf[0] != '\0' ? w->errbuf : curl_easy_strerror(res));
        }
        watch_fail(w, FAILOVER, -1, e.msg);
    } else if (status == 200 || (status == 404 && w->is_kv)) {
        watch_success(w, status);
    } else {
        watch_http_error(w, status);
    }
    /* w and c may be closing now (a callback closed the client): touch neither. */
}

/* ---- requests ----------------------------------------------------------------------------- */

static int
build_url(consul_watch *w) {
    consul_client *c = w->c;
    const char *addr = c->s.addresses[w->addr];
    const char *sep = strchr(w->path, '?') == NULL ? "?" : "&";
    size_t plen = strlen(w->path);
    if (plen > 0 && (w->path[plen - 1] == '?' || w->path[plen - 1] == '&')) {
        sep = "";
    }
    char index[40] = "";
    if (w->index > 0) { /* never index=0: that is "don't block" */
        snprintf(index, sizeof(index), "index=%" PRIu64 "&", w->index);
    }
    const char *stale = w->sent_stale ? "&stale" : "";
    size_t cap = strlen(addr) + plen + strlen(index) + 64;
    char *url = malloc(cap);
    if (url == NULL) {
        return -ENOMEM;
    }
    snprintf(url, cap, "%s%s%s%swait=%" PRIu32 "ms%s", addr, w->path, sep, index, c->s.wait_ms,
             stale);
    free(w->url);
    w->url = url;
    return 0;
}

static void
watch_send(consul_watch *w) {
    consul_client *c = w->c;
    rs_error e;
    assert(w->state == WATCH_WAITING);
    w->addr = c->current;
    w->sent_stale = c->s.stale && !w->leader_read;
    w->stats.address = c->s.addresses[w->addr];
    w->errbuf[0] = '\0';
    response_reset(w);
    if (w->body_cap > BODY_KEEP_CAP) {
        free(w->body);
        w->body = NULL;
        w->body_cap = 0;
    }
    if (build_url(w) < 0) {
        rs_error_set(&e, 0, "%s: out of memory", w->stats.address);
        watch_fail(w, NO_FAILOVER, -1, e.msg);
        return;
    }
    CURLMcode mc = CURLM_OK;
    if (curl_easy_setopt(w->easy, CURLOPT_URL, w->url) != CURLE_OK ||
        (mc = curl_multi_add_handle(c->multi, w->easy)) != CURLM_OK) {
        rs_error_set(&e, 0, "%s: cannot start the request: %s", w->stats.address,
                     mc != CURLM_OK ? curl_multi_strerror(mc) : "bad URL");
        watch_fail(w, NO_FAILOVER, -1, e.msg);
        return;
    }
    watch_set_state(w, WATCH_IN_FLIGHT);
    w->stats.requests++;
    if (w->retry_pending) {
        w->stats.retries++;
        w->retry_pending = false;
    }
    w->throttle_counted = false;
}

static void
on_watch_timer(uv_timer_t *t) {
    consul_watch *w = container_of(t, consul_watch, timer);
    if (w->state != WATCH_WAITING || w->c->state != CLIENT_OPEN) {
        return;
    }
    /* Rate limit: a token per request, else wait for one (no sleeping). */
    uint64_t wait = rs_bucket_take(&w->bucket, uv_now(w->c->loop));
    if (wait > 0) {
        if (!w->throttle_counted) {
            w->stats.throttled++;
            w->throttle_counted = true;
        }
        arm_timer(w, wait);
        return;
    }
    watch_send(w);
}

static void
check_multi_info(consul_client *c) {
    CURLMsg *msg;
    int left;
    /* A callback may close the client (and clean up the multi handle): re-check. */
    while (c->state == CLIENT_OPEN && (msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        CURL *easy = msg->easy_handle;
        CURLcode res = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        curl_multi_remove_handle(c->multi, easy);
        consul_watch *w = (consul_watch *)priv;
        watch_done(w, res);
    }
}

/* ---- client and watches -------------------------------------------------------------------- */

int
consul_client_new(uv_loop_t *loop, const consul_settings *s, consul_client **out, rs_error *err) {
    assert(loop != NULL && s != NULL && out != NULL);
    *out = NULL;
    if (s->n_addresses == 0 || s->n_addresses > CONSUL_MAX_ADDRESSES) {
        return rs_error_set(err, -EINVAL, "consul: between 1 and %d addresses needed, got %zu",
                            CONSUL_MAX_ADDRESSES, s->n_addresses);
    }
    for (size_t i = 0; i < s->n_addresses; i++) {
        const char *a = s->addresses[i];
        if (memchr(a, '\0', sizeof(s->addresses[i])) == NULL || !has_http_scheme(a) ||
            !url_chars_ok(a)) {
            return rs_error_set(err, -EINVAL,
                                "consul: address %zu: expected http://host:port or "
                                "https://host:port, got \"%.64s\"",
                                i + 1, a);
        }
    }
    if (s->wait_ms == 0 || s->wait_ms > MAX_WAIT_MS) {
        return rs_error_set(err, -EINVAL, "consul: wait must be between 1 ms and 10 min");
    }
    if (!(s->rate > 0) || !(s->burst >= 1)) {
        return rs_error_set(err, -EINVAL, "consul: rate must be > 0 and burst >= 1");
    }
    if (s->backoff_base_ms == 0 || s->backoff_cap_ms < s->backoff_base_ms) {
        return rs_error_set(err, -EINVAL, "consul: backoff must satisfy 0 < base <= cap");
    }
    if (memchr(s->token, '\0', sizeof(s->token)) == NULL || !token_chars_ok(s->token)) {
        return rs_error_set(err, -EINVAL,
                            "consul: the ACL token has characters other than printable ASCII");
    }
    consul_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return rs_error_set(err, -ENOMEM, "consul: out of memory");
    }
    c->loop = loop;
    c->s = *s;
    for (size_t i = 0; i < c->s.n_addresses; i++) {
        char *a = c->s.addresses[i];
        size_t n = strlen(a);
        while (n > 0 && a[n - 1] == '/') {
            a[--n] = '\0';
        }
    }
    c->state = CLIENT_OPEN;
    c->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
    if (c->rng == 0) {
        c->rng = 0x9E3779B97F4A7C15ULL;
    }
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        free(c);
        return rs_error_set(err, -ENOMEM, "consul: curl_multi_init failed");
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    uv_timer_init(loop, &c->curl_timer);
    c->open_handles = 1;
    *out = c;
    return 0;
}

static int
setup_easy(consul_watch *w) {
    consul_client *c = w->c;
    const consul_settings *s = &c->s;
    CURL *e = curl_easy_init();
    if (e == NULL) {
        return -ENOMEM;
    }
    w->easy = e;
    if (s->token[0] != '\0') {
        char line[sizeof(s->token) + 32];
        snprintf(line, sizeof(line), "X-Consul-Token: %s", s->token);
        w->headers = curl_slist_append(NULL, line);
        wipe(line, sizeof(line));
        if (w->headers == NULL) {
            return -ENOMEM;
        }
    }
    /* Consul may hold a blocking query up to wait + wait/16 (jitter); 5 s more for the
     * answer to travel. */
    long timeout = (long)s->wait_ms + (long)(s->wait_ms / 16) + 5000;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK) {                                                                      \
            rc = curl_easy_setopt(e, opt, val);                                                    \
        }                                                                                          \
    } while (0)
    SET(CURLOPT_PRIVATE, (void *)w);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_TIMEOUT_MS, timeout);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)s->connect_timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)RS_KV_MAX_BODY);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)w);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)w);
    SET(CURLOPT_ERRORBUFFER, w->errbuf);
    SET(CURLOPT_USERAGENT, "ringside/" RINGSIDE_VERSION);
    /* Keepalive probes notice a dead agent during a long blocking query. */
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_KEEPIDLE, 30L);
    SET(CURLOPT_TCP_KEEPINTVL, 10L);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (s->ca_file[0] != '\0') {
        SET(CURLOPT_CAINFO, s->ca_file);
    }
    if (s->cert_file[0] != '\0') {
        SET(CURLOPT_SSLCERT, s->cert_file);
    }
    if (s->key_file[0] != '\0') {
        SET(CURLOPT_SSLKEY, s->key_file);
    }
    if (w->headers != NULL) {
        SET(CURLOPT_HTTPHEADER, w->headers);
    }
#undef SET
    return rc == CURLE_OK ? 0 : -EINVAL;
}

static void
watch_free(consul_watch *w) {
    if (w == NULL) {
        return;
    }
    if (w->easy != NULL) {
        curl_easy_cleanup(w->easy);
    }
    for (struct curl_slist *h = w->headers; h != NULL; h = h->next) {
        wipe(h->data, strlen(h->data));
    }
    curl_slist_free_all(w->headers);
    free(w->url);
    free(w->body);
    free(w->name);
    free(w->path);
    free(w);
}

int
consul_watch_start(consul_client *c, const char *name, const char *path, consul_change_cb on_change,
                   consul_error_cb on_error, void *arg, consul_watch **out) {
    assert(c != NULL && name != NULL && path != NULL && on_change != NULL);
    if (out != NULL) {
        *out = NULL;
    }
    if (c->state != CLIENT_OPEN) {
        return -ESHUTDOWN;
    }
    if (path[0] != '/' || !url_chars_ok(path)) {
        return -EINVAL;
    }
    consul_watch *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return -ENOMEM;
    }
    w->c = c;
    w->state = WATCH_WAITING;
    w->on_change = on_change;
    w->on_error = on_error;
    w->arg = arg;
    w->name = strdup(name);
    w->path = strdup(path);
    w->is_kv = strncmp(path, "/v1/kv/", 7) == 0;
    w->stats.last_contact_ms = -1;
    w->stats.address = c->s.addresses[c->current];
    response_reset(w);
    int rc = w->name == NULL || w->path == NULL ? -ENOMEM : setup_easy(w);
    if (rc < 0) {
        watch_free(w);
        return rc;
    }
    rs_bucket_init(&w->bucket, c->s.rate, c->s.burst, uv_now(c->loop));
    uv_timer_init(c->loop, &w->timer);
    c->open_handles++;
    w->next = c->watches;
    c->watches = w;
    /* The first request goes out from the timer: nothing re-enters the caller. */
    arm_timer(w, 0);
    if (out != NULL) {
        *out = w;
    }
    return 0;
}

const consul_watch_stats *
consul_watch_get_stats(const consul_watch *w) {
    return &w->stats;
}

const char *
consul_watch_name(const consul_watch *w) {
    return w->name;
}

static void
on_watch_timer_closed(uv_handle_t *h) {
    consul_watch *w = container_of((uv_timer_t *)h, consul_watch, timer);
    consul_client *c = w->c;
    watch_free(w);
    c->open_handles--;
    client_maybe_free(c);
}

static void
on_curl_timer_closed(uv_handle_t *h) {
    consul_client *c = container_of((uv_timer_t *)h, consul_client, curl_timer);
    c->open_handles--;
    client_maybe_free(c);
}

void
consul_client_close(consul_client *c, void (*done)(void *arg), void *arg) {
    assert(c != NULL);
    client_set_state(c, CLIENT_CLOSING);
    c->done = done;
    c->done_arg = arg;
    /* Cancel transfers first: curl may ask to forget their sockets (closing polls). */
    for (consul_watch *w = c->watches; w != NULL; w = w->next) {
        if (w->state == WATCH_IN_FLIGHT) {
            curl_multi_remove_handle(c->multi, w->easy);
        }
        watch_set_state(w, WATCH_CLOSED);
        uv_close((uv_handle_t *)&w->timer, on_watch_timer_closed);
    }
    c->watches = NULL; /* each watch is freed in its timer's close_cb */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    /* Sockets curl did not hand back during cleanup (its idle connections). */
    while (c->socks != NULL) {
        sock_close(c->socks);
    }
    uv_close((uv_handle_t *)&c->curl_timer, on_curl_timer_closed);
}
