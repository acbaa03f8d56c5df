/* The HTTP endpoint: a bounded HTTP/1.1 server on the daemon's loop (one connection state
 * machine per client, a head parser that never rescans, deadlines from one sweep timer)
 * and the handlers for probes, /v1 JSON and /metrics, all read from the current view. */
#include "http.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "commands.h"
#include "consul.h"
#include "log.h"
#include "rs_buf.h"
#include "rs_hash.h"
#include "server.h"
#include "source.h"

#define HTTP_LINE_MAX (8 * 1024)    /* request line */
#define HTTP_HEAD_MAX (16 * 1024)   /* request line + fields + empty line */
#define HTTP_FIELDS_MAX 64          /* header fields */
#define HTTP_HEAD_TIMEOUT_MS 5000   /* from accept to a complete head */
#define HTTP_WRITE_TIMEOUT_MS 10000 /* to write a whole response */
#define HTTP_LINGER_MS 2000         /* after the response: wait for the client's close */
#define HTTP_STOP_GRACE_MS 1000     /* responses in flight when the daemon stops */
#define HTTP_SWEEP_MS 100           /* deadline resolution */
#define HTTP_MAX_CONNS 1024
#define HTTP_BACKLOG 511
#define HTTP_DISCARD_CHUNK 4096

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Status codes the server sends; counted per code for /metrics. */
static const struct {
    int code;
    const char *reason;
} statuses[] = {
    {200, "OK"},
    {400, "Bad Request"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {503, "Service Unavailable"},
    {505, "HTTP Version Not Supported"},
};
#define N_STATUSES (sizeof(statuses) / sizeof(statuses[0]))

typedef enum hconn_state {
    HC_READING, /* reading the request head (deadline: head timeout) */
    HC_WRITING, /* the response is being written (deadline: write timeout) */
    HC_LINGER,  /* response written, write side shut: discarding input until EOF */
    HC_CLOSED,  /* uv_close issued; freed in on_conn_closed */
} hconn_state;

typedef struct hconn {
    uv_tcp_t tcp; /* first: the handle's data is the conn */
    http_server *h;
    struct hconn *prev, *next;
    hconn_state state;
    bool writing;  /* a uv_write is in flight */
    bool peer_eof; /* the client will send nothing more */
    uint64_t deadline_ms;
    char *head; /* request head so far (NULL once answered) */
    size_t head_len, head_cap;
    size_t scan; /* head bytes already searched for the end of the head */
    rs_buf out;  /* the response; never appended to while a write is in flight */
    uv_write_t wreq;
    uv_shutdown_t sreq;
} hconn;

struct http_server {
    ringside *d;
    uv_tcp_t listener;
    uv_timer_t sweep;
    bool sweep_running;
    bool sweep_closing;
    bool stopping;
    int open_handles; /* listener + sweep */
    void (*done)(ringside *d);
    hconn *conns;
    size_t nconns;     /* open connections (in the list) */
    size_t nclosing;   /* connections whose close callback has not run yet */
    char address[80];  /* as bound */
    double start_unix; /* wall-clock start of the process, seconds */
    uint64_t responses[N_STATUSES];
    uint64_t connections_total;
    uint64_t connections_rejected;
    uint64_t head_timeouts;
    char discard[HTTP_DISCARD_CHUNK]; /* input nobody reads (after the head) */
};

/* A parsed request head: views into the connection's head buffer. */
typedef struct http_request {
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    int minor; /* HTTP/1.<minor> */
    bool has_host;
    bool has_body; /* Content-Length > 0 or any Transfer-Encoding */
    bool head_only;
} http_request;

static void conn_close(hconn *c);
static void conn_flush(hconn *c);
static void maybe_finish(http_server *h);

static uint64_t
now_ms(const http_server *h) {
    return daemon_now_ms(h->d);
}

static void
set_state(hconn *c, hconn_state next) {
    /* Legal moves: READING -> WRITING -> LINGER -> CLOSED, and any -> CLOSED. */
    assert(next > c->state);
    c->state = next;
}

static double
wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ==== the request head: I/O-free ==== */

static bool
is_tchar(unsigned char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static size_t
skip_empty_lines(const char *p, size_t len) {
    /* A server should ignore empty lines before the request line (RFC 9112 §2.2). */
    size_t i = 0;
    while (i < len && (p[i] == '\r' || p[i] == '\n')) {
        i++;
    }
    return i;
}

typedef enum head_progress {
    HEAD_MORE,     /* incomplete and within bounds */
    HEAD_COMPLETE, /* *end is the offset just past the empty line */
    HEAD_LINE_TOO_LONG,
    HEAD_TOO_LARGE,
} head_progress;

/* Look for the end of the head in p[0..len) from *scan on (where the previous call
 * stopped), so a head that trickles in byte by byte is searched once overall. */
static head_progress
head_check(const char *p, size_t len, size_t *scan, size_t *end) {
    size_t start = skip_empty_lines(p, len);
    size_t i = *scan > start ? *scan : start;
    const char *first_nl = memchr(p + start, '\n', len - start);
    if ((first_nl == NULL && len - start > HTTP_LINE_MAX) ||
        (first_nl != NULL && (size_t)(first_nl - p) - start > HTTP_LINE_MAX)) {
        return HEAD_LINE_TOO_LONG;
    }
    while (i < len) {
        const char *nl = memchr(p + i, '\n', len - i);
        if (nl == NULL) {
            i = len;
            break;
        }
        size_t at = (size_t)(nl - p);
        if (at + 1 >= len || (p[at + 1] == '\r' && at + 2 >= len)) {
            i = at; /* the next line is not here yet: look again from this newline */
            break;
        }
        if (p[at + 1] == '\n' || (p[at + 1] == '\r' && p[at + 2] == '\n')) {
            *end = at + (p[at + 1] == '\n' ? 2 : 3);
            return *end > HTTP_HEAD_MAX ? HEAD_TOO_LARGE : HEAD_COMPLETE;
        }
        i = at + 1;
    }
    *scan = i;
    return len > HTTP_HEAD_MAX ? HEAD_TOO_LARGE : HEAD_MORE;
}

/* The next line of p[0..len) from *pos: its bytes without CRLF or LF. Returns false for
 * a CR anywhere but before the LF. */
static bool
next_line(const char *p, size_t len, size_t *pos, const char **line, size_t *line_len) {
    const char *nl = memchr(p + *pos, '\n', len - *pos);
    size_t stop = nl != NULL ? (size_t)(nl - p) : len;
    size_t n = stop - *pos;
    *line = p + *pos;
    if (n > 0 && (*line)[n - 1] == '\r') {
        n--;
    }
    *line_len = n;
    *pos = nl != NULL ? stop + 1 : len;
    return memchr(*line, '\r', n) == NULL;
}

static bool
field_is(const char *name, size_t len, const char *want) {
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

static int
parse_request_line(const char *l, size_t n, http_request *req, const char **why) {
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)l[i])) {
        i++;
    }
    if (i == 0 || i >= n || l[i] != ' ') {
        *why = "malformed request line (expected METHOD SP target SP HTTP/1.x)";
        return 400;
    }
    req->method = l;
    req->method_len = i;
    size_t t = ++i;
    while (i < n && (unsigned char)l[i] > 0x20 && (unsigned char)l[i] < 0x7f) {
        i++;
    }
    if (i == t || i >= n || l[i] != ' ') {
        *why = "malformed request target";
        return 400;
    }
    req->target = l + t;
    req->target_len = i - t;
    const char *v = l + i + 1;
    size_t vn = n - i - 1;
    if (vn != 8 || strncmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9') {
        *why = "malformed HTTP version";
        return 400;
    }
    if (v[5] != '1') {
        *why = "only HTTP/1.x is supported";
        return 505;
    }
    req->minor = v[7] - '0';
    return 0;
}

/* Parse a complete head p[0..len) (request line, fields, empty line). Returns 0, or the
 * status to answer (400, 431, 505) with *why. */
static int
parse_head(const char *p, size_t len, http_request *req, const char **why) {
    memset(req, 0, sizeof(*req));
    size_t pos = skip_empty_lines(p, len);
    const char *l;
    size_t n;
    if (!next_line(p, len, &pos, &l, &n)) {
        *why = "stray CR in the request line";
        return 400;
    }
    int rc = parse_request_line(l, n, req, why);
    if (rc != 0) {
        return rc;
    }
    bool have_length = false;
    uint64_t length = 0;
    for (int fields = 0;; fields++) {
        if (!next_line(p, len, &pos, &l, &n)) {
            *why = "stray CR in a header field";
            return 400;
        }
        if (n == 0) {
            break;
        }
        if (fields == HTTP_FIELDS_MAX) {
            *why = "too many header fields (max 64)";
            return 431;
        }
        if (l[0] == ' ' || l[0] == '\t') {
            *why = "obsolete line folding in a header field";
            return 400;
        }
        size_t c = 0;
        while (c < n && is_tchar((unsigned char)l[c])) {
            c++;
        }
        if (c == 0 || c >= n || l[c] != ':') {
            *why = "malformed header field (expected name: value)";
            return 400;
        }
        size_t vs = c + 1, ve = n;
        while (vs < ve && (l[vs] == ' ' || l[vs] == '\t')) {
            vs++;
        }
        while (ve > vs && (l[ve - 1] == ' ' || l[ve - 1] == '\t')) {
            ve--;
        }
        for (size_t k = vs; k < ve; k++) {
            unsigned char ch = (unsigned char)l[k];
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                *why = "control character in a header value";
                return 400;
            }
        }
        if (field_is(l, c, "host")) {
            if (req->has_host) {
                *why = "more than one Host header";
                return 400;
            }
            req->has_host = true;
        } else if (field_is(l, c, "content-length")) {
            uint64_t v = 0;
            if (ve == vs) {
                *why = "empty Content-Length";
                return 400;
            }
            for (size_t k = vs; k < ve; k++) {
                if (l[k] < '0' || l[k] > '9' || v > (UINT64_MAX - 9) / 10) {
                    *why = "invalid Content-Length";
                    return 400;
                }
                v = v * 10 + (uint64_t)(l[k] - '0');
            }
            if (have_length && v != length) {
                *why = "conflicting Content-Length headers";
                return 400;
            }
            have_length = true;
            length = v;
        } else if (field_is(l, c, "transfer-encoding")) {
            req->has_body = true;
        }
    }
    if (length > 0) {
        req->has_body = true;
    }
    if (req->minor >= 1 && !req->has_host) {
        *why = "HTTP/1.1 request without a Host header";
        return 400;
    }
    return 0;
}

static int
hexval(char ch) {
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

/* Percent-decode s[0..n) into out (room for n bytes), '+' as a space (form encoding).
 * Returns the decoded length, or -EINVAL for a malformed escape. */
static long
percent_decode(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 1 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                return -EINVAL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    return (long)o;
}

/* The first parameter named name in query[0..n): its raw (still encoded) value. */
static bool
query_param(const char *q, size_t n, const char *name, const char **val, size_t *vlen) {
    size_t nl = strlen(name);
    size_t i = 0;
    while (i <= n) {
        const char *amp = memchr(q + i, '&', n - i);
        size_t e = amp != NULL ? (size_t)(amp - q) : n;
        const char *eq = memchr(q + i, '=', e - i);
        size_t ke = eq != NULL ? (size_t)(eq - q) : e;
        if (ke - i == nl && memcmp(q + i, name, nl) == 0) {
            *val = eq != NULL ? eq + 1 : q + e;
            *vlen = eq != NULL ? e - ke - 1 : 0;
            return true;
        }
        if (amp == NULL) {
            break;
        }
        i = e + 1;
    }
    return false;
}

/* ==== responses ==== */

static size_t
status_index(int code) {
    for (size_t i = 0; i < N_STATUSES; i++) {
        if (statuses[i].code == code) {
            return i;
        }
    }
    return 0;
}

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_JSON "application/json"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

/* Queue the whole response (status line, fields, body unless HEAD) and start writing it.
 * extra is "" or more header fields, each ending in CRLF. */
static void
respond(hconn *c, const http_request *req, int code, const char *ctype, const char *extra,
        const char *body, size_t len) {
    http_server *h = c->h;
    size_t si = status_index(code);
    assert(statuses[si].code == code);
    h->responses[si]++;
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL ||
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0) {
        date[0] = '\0';
    }
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                     code, statuses[si].reason, date, ctype, len, extra);
    assert(n > 0 && (size_t)n < sizeof(head));
    int rc = rs_buf_append(&c->out, head, (size_t)n);
    if (rc == 0 && (req == NULL || !req->head_only)) {
        rc = rs_buf_append(&c->out, body, len);
    }
    free(c->head);
    c->head = NULL;
    c->head_len = c->head_cap = 0;
    if (rc != 0) {
        conn_close(c);
        return;
    }
    set_state(c, HC_WRITING);
    c->deadline_ms = now_ms(h) + HTTP_WRITE_TIMEOUT_MS;
    conn_flush(c);
}

static void
respond_text(hconn *c, const http_request *req, int code, const char *extra, const char *text) {
    respond(c, req, code, CT_TEXT, extra, text, strlen(text));
}

static void
respond_error(hconn *c, const http_request *req, int code, const char *why) {
    char body[256];
    snprintf(body, sizeof(body), "%d %s: %s\n", code, statuses[status_index(code)].reason, why);
    respond_text(c, req, code, "", body);
}

/* Serialize doc (taking it) and answer with it; NULL doc means out of memory. */
static void
respond_json(hconn *c, const http_request *req, int code, json_t *doc) {
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL) {
        respond_error(c, req, 500, "out of memory");
        return;
    }
    size_t len = strlen(text);
    char *withnl = realloc(text, len + 2);
    if (withnl == NULL) {
        free(text);
        respond_error(c, req, 500, "out of memory");
        return;
    }
    withnl[len] = '\n';
    withnl[len + 1] = '\0';
    respond(c, req, code, CT_JSON, "", withnl, len + 1);
    free(withnl);
}

static void
respond_json_error(hconn *c, const http_request *req, int code, const char *msg) {
    respond_json(c, req, code, json_pack("{s:s}", "error", msg));
}

/* ==== JSON building: one flag for any failed allocation ==== */

typedef struct jb {
    bool oom;
} jb;

/* A JSON string for s; bytes that are not valid UTF-8 become '?' (node ids and keys
 * are bytes; JSON text is UTF-8). */
static json_t *
jstr_n(const char *s, size_t n) {
    json_t *v = json_stringn(s, n);
    if (v != NULL) {
        return v;
    }
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    }
    v = json_stringn(copy, n);
    free(copy);
    return v;
}

static json_t *
jstr(const char *s) {
    return jstr_n(s, strlen(s));
}

static void
jset(jb *b, json_t *obj, const char *key, json_t *v) {
    if (obj == NULL || v == NULL || json_object_set_new(obj, key, v) != 0) {
        b->oom = true;
    }
}

static void
jappend(jb *b, json_t *arr, json_t *v) {
    if (arr == NULL || v == NULL || json_array_append_new(arr, v) != 0) {
        b->oom = true;
    }
}

static json_t *
jint(uint64_t v) {
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static json_t *
jobj(jb *b) {
    json_t *o = json_object();
    if (o == NULL) {
        b->oom = true;
    }
    return o;
}

static json_t *
jarr(jb *b) {
    json_t *a = json_array();
    if (a == NULL) {
        b->oom = true;
    }
    return a;
}

/* Return doc, or NULL (freeing it) when something failed on the way. */
static json_t *
jfinish(jb *b, json_t *doc) {
    if (b->oom) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* ==== readiness ==== */

/* Ready when lookups would be answered: a ring is loaded and a node is usable. */
static bool
is_ready(const ringside *d, char *why, size_t cap) {
    const view *v = &d->view;
    if (v->ring == NULL) {
        if (d->src != NULL) {
            const consul_watch *w = source_kv_watch(d->src);
            if (w == NULL) {
                w = source_health_watch(d->src);
            }
            const char *e = w != NULL ? consul_watch_get_stats(w)->last_error : "";
            snprintf(why, cap, "no ring loaded: no snapshot, and Consul has not answered yet%s%s",
                     e[0] ? ": " : "", e);
        } else {
            snprintf(why, cap, "no ring loaded");
        }
        return false;
    }
    if (v->health.usable == 0) {
        snprintf(why, cap, "no usable nodes (%u enabled, %u healthy)", v->health.enabled,
                 v->health.healthy);
        return false;
    }
    snprintf(why, cap, "epoch %" PRIu64 ", %u usable nodes", v->epoch, v->health.usable);
    return true;
}

/* ==== handlers ==== */

typedef void (*handler_fn)(hconn *c, const http_request *req, const char *query, size_t qlen);

static void
h_healthz(hconn *c, const http_request *req, const char *q, size_t qlen) {
    respond_text(c, req, 200, "", "ok\n");
}

static void
h_readyz(hconn *c, const http_request *req, const char *q, size_t qlen) {
    char why[512], body[600];
    bool ready = is_ready(c->h->d, why, sizeof(why));
    snprintf(body, sizeof(body), "%s: %s\n", ready ? "ready" : "not ready", why);
    respond_text(c, req, ready ? 200 : 503, "", body);
}

static json_t *
ring_json(jb *b, const ringside *d) {
    const view *v = &d->view;
    const rs_ring_params *p = v->ring ? rs_ring_params_of(v->ring) : NULL;
    json_t *o = jobj(b);
    jset(b, o, "name", jstr(d->cfg.ring_name));
    jset(b, o, "epoch", jint(v->epoch));
    jset(b, o, "fingerprint", jstr(v->ring ? rs_ring_fingerprint(v->ring) : ""));
    jset(b, o, "algorithm", jstr(p ? rs_algorithm_name(p->algorithm) : ""));
    jset(b, o, "hash", jstr(p ? rs_hash_name(p->hash) : ""));
    jset(b, o, "hash_tag", jstr(p ? p->hash_tag : ""));
    jset(b, o, "replicas", jint(p ? p->replicas : 0));
    jset(b, o, "nodes", jint(v->ring ? rs_ring_node_count(v->ring) : 0));
    jset(b, o, "enabled", jint(v->health.enabled));
    jset(b, o, "healthy", jint(v->health.healthy));
    jset(b, o, "usable", jint(v->health.usable));
    jset(b, o, "points", jint(v->ring ? rs_ring_point_count(v->ring) : 0));
    jset(b, o, "imbalance", json_real(v->ring ? rs_ring_imbalance(v->ring) : 0.0));
    jset(b, o, "panic", json_boolean(v->health.panic));
    jset(b, o, "policy", jstr(rs_health_policy_name(v->policy)));
    jset(b, o, "source", jstr(v->source));
    jset(b, o, "consul_index", jint(v->consul_index));
    jset(b, o, "last_change", json_integer(v->last_change));
    jset(b, o, "held", jstr(source_held_fingerprint(d->src)));
    jset(b, o, "held_reason", jstr(source_held_reason(d->src)));
    return o;
}

static void
h_ring(hconn *c, const http_request *req, const char *q, size_t qlen) {
    jb b = {0};
    json_t *doc = ring_json(&b, c->h->d);
    respond_json(c, req, 200, jfinish(&b, doc));
}

static void
h_nodes(hconn *c, const http_request *req, const char *q, size_t qlen) {
    const view *v = &c->h->d->view;
    jb b = {0};
    json_t *arr = jarr(&b);
    size_t n = v->ring ? rs_ring_node_count(v->ring) : 0;
    for (size_t i = 0; i < n && !b.oom; i++) {
        const rs_ring_node *node = rs_ring_node_at(v->ring, i);
        json_t *o = jobj(&b);
        jset(&b, o, "id", jstr(node->id));
        jset(&b, o, "address", jstr(node->address));
        jset(&b, o, "weight", jint(node->weight));
        jset(&b, o, "zone", jstr(node->zone));
        jset(&b, o, "enabled", json_boolean(node->enabled));
        jset(&b, o, "health", jstr(v->healthy[i] ? "passing" : "critical"));
        jset(&b, o, "usable", json_boolean(v->usable[i] != 0));
        jset(&b, o, "points", jint(node->points));
        jset(&b, o, "share", json_real(node->share));
        jappend(&b, arr, o);
    }
    respond_json(c, req, 200, jfinish(&b, arr));
}

static void
h_lookup(hconn *c, const http_request *req, const char *q, size_t qlen) {
    const ringside *d = c->h->d;
    const view *v = &d->view;
    const char *raw;
    size_t rawlen;
    if (q == NULL || !query_param(q, qlen, "key", &raw, &rawlen)) {
        respond_json_error(c, req, 400, "missing parameter: key (GET /v1/lookup?key=...)");
        return;
    }
    char *key = malloc(rawlen + 1);
    if (key == NULL) {
        respond_error(c, req, 500, "out of memory");
        return;
    }
    long klen = percent_decode(raw, rawlen, key);
    if (klen < 0) {
        free(key);
        respond_json_error(c, req, 400, "key: malformed percent-encoding");
        return;
    }
    if ((size_t)klen > d->cfg.max_key_bytes) {
        free(key);
        char msg[96];
        snprintf(msg, sizeof(msg), "key too long (max %u bytes)", d->cfg.max_key_bytes);
        respond_json_error(c, req, 400, msg);
        return;
    }
    if (v->ring == NULL || v->health.usable == 0) {
        free(key);
        jb b = {0};
        json_t *doc = jobj(&b);
        jset(&b, doc, "error", jstr("NORING no usable nodes"));
        jset(&b, doc, "epoch", jint(v->epoch));
        respond_json(c, req, 503, jfinish(&b, doc));
        return;
    }
    /* LOOKUP's answer, and ROUTE's candidates: the replicas in ring order from the owner,
     * each with its health and whether lookups use it. */
    uint32_t hash = rs_ring_hash_key(v->ring, key, (size_t)klen);
    uint32_t answer;
    bool have = rs_ring_candidates(v->ring, hash, v->usable, &answer, 1) == 1;
    uint32_t cand[RS_REPLICAS_MAX];
    size_t n = rs_ring_candidates(v->ring, hash, NULL, cand, rs_ring_params_of(v->ring)->replicas);
    jb b = {0};
    json_t *doc = jobj(&b);
    json_t *k = json_stringn(key, (size_t)klen);
    if (k != NULL) {
        jset(&b, doc, "key", k);
    } else {
        /* Not UTF-8: JSON cannot carry it as a string, so give it in hex. */
        char *hex = malloc((size_t)klen * 2 + 1);
        for (long i = 0; hex != NULL && i < klen; i++) {
            snprintf(hex + i * 2, 3, "%02x", (unsigned char)key[i]);
        }
        jset(&b, doc, "key", json_null());
        jset(&b, doc, "key_hex", hex != NULL ? json_stringn(hex, (size_t)klen * 2) : NULL);
        free(hex);
    }
    free(key);
    jset(&b, doc, "hash", jint(hash));
    jset(&b, doc, "address", have ? jstr(rs_ring_node_at(v->ring, answer)->address) : json_null());
    jset(&b, doc, "node", have ? jstr(rs_ring_node_at(v->ring, answer)->id) : json_null());
    json_t *arr = jarr(&b);
    for (size_t i = 0; i < n; i++) {
        const rs_ring_node *node = rs_ring_node_at(v->ring, cand[i]);
        json_t *o = jobj(&b);
        jset(&b, o, "id", jstr(node->id));
        jset(&b, o, "address", jstr(node->address));
        jset(&b, o, "zone", jstr(node->zone));
        jset(&b, o, "health", jstr(v->healthy[cand[i]] ? "passing" : "critical"));
        jset(&b, o, "usable", json_boolean(v->usable[cand[i]] != 0));
        jappend(&b, arr, o);
    }
    jset(&b, doc, "candidates", arr);
    jset(&b, doc, "epoch", jint(v->epoch));
    respond_json(c, req, have ? 200 : 503, jfinish(&b, doc));
}

static const char *const class_names[6] = {"transport", "1xx", "2xx", "3xx", "4xx", "5xx"};

static json_t *
watch_json(jb *b, const http_server *h, const consul_watch *w) {
    const consul_watch_stats *st = consul_watch_get_stats(w);
    json_t *o = jobj(b);
    jset(b, o, "name", jstr(consul_watch_name(w)));
    jset(b, o, "agent", jstr(st->address ? st->address : ""));
    jset(b, o, "index", jint(st->index));
    jset(b, o, "requests", jint(st->requests));
    json_t *cls = jobj(b);
    for (size_t i = 0; i < 6; i++) {
        jset(b, cls, class_names[i], jint(st->responses_by_class[i]));
    }
    jset(b, o, "responses", cls);
    jset(b, o, "errors", jint(st->errors));
    jset(b, o, "changes", jint(st->changes));
    jset(b, o, "unchanged", jint(st->unchanged));
    jset(b, o, "index_resets", jint(st->index_resets));
    jset(b, o, "retries", jint(st->retries));
    jset(b, o, "throttled", jint(st->throttled));
    jset(b, o, "failovers", jint(st->failovers));
    jset(b, o, "last_backoff_ms", jint(st->last_backoff_ms));
    jset(b, o, "last_contact_ms",
         st->last_contact_ms >= 0 ? json_integer(st->last_contact_ms) : json_null());
    uint64_t now = now_ms(h);
    jset(b, o, "last_success_age_ms",
         st->last_success_ms != 0 && now >= st->last_success_ms ? jint(now - st->last_success_ms)
                                                                : json_null());
    jset(b, o, "last_error", st->last_error[0] ? jstr(st->last_error) : json_null());
    return o;
}

static const char *
source_type(const ringside *d) {
    switch (d->cfg.source) {
    case RS_SOURCE_CONSUL_KV:
        return "consul-kv";
    case RS_SOURCE_CONSUL_SERVICE:
        return "consul-service";
    default:
        return "static";
    }
}

static void
h_status(hconn *c, const http_request *req, const char *q, size_t qlen) {
    const http_server *h = c->h;
    const ringside *d = h->d;
    const stats *st = &d->stats;
    jb b = {0};
    json_t *doc = jobj(&b);
    uint64_t now = now_ms(h);
    char why[512];
    bool ready = is_ready(d, why, sizeof(why));

    jset(&b, doc, "version", jstr(RINGSIDE_VERSION));
    jset(&b, doc, "pid", json_integer(getpid()));
    jset(&b, doc, "uptime_seconds", jint((now - st->started_ms) / 1000));
    jset(&b, doc, "start_time", json_real(h->start_unix));
    jset(&b, doc, "config_file", jstr(d->config_path ? d->config_path : ""));
    jset(&b, doc, "ready", json_boolean(ready));
    jset(&b, doc, "ready_reason", jstr(why));
    jset(&b, doc, "ring", ring_json(&b, d));

    /* The membership source and its watches. */
    json_t *src = jobj(&b);
    jset(&b, src, "type", jstr(source_type(d)));
    json_t *watches = jarr(&b);
    const consul_watch *ws[2] = {source_kv_watch(d->src), source_health_watch(d->src)};
    json_t *errors = jarr(&b);
    for (size_t i = 0; i < 2; i++) {
        if (ws[i] == NULL) {
            continue;
        }
        jappend(&b, watches, watch_json(&b, h, ws[i]));
        const char *e = consul_watch_get_stats(ws[i])->last_error;
        if (e[0] != '\0') {
            json_t *o = jobj(&b);
            char where[64];
            snprintf(where, sizeof(where), "consul watch %s", consul_watch_name(ws[i]));
            jset(&b, o, "where", jstr(where));
            jset(&b, o, "reason", jstr(e));
            jappend(&b, errors, o);
        }
    }
    jset(&b, src, "watches", watches);
    jset(&b, src, "consul_errors", jint(source_consul_errors(d->src)));
    jset(&b, doc, "source", src);

    /* The update the mass-removal guard holds, and the ones it or validation refused. */
    const char *held_fp = source_held_fingerprint(d->src);
    const char *held_reason = source_held_reason(d->src);
    if (held_fp[0] != '\0' || held_reason[0] != '\0') {
        json_t *held = jobj(&b);
        jset(&b, held, "fingerprint", jstr(held_fp));
        jset(&b, held, "reason", jstr(held_reason));
        jset(&b, doc, "held", held);
        json_t *o = jobj(&b);
        jset(&b, o, "where", jstr(held_fp[0] ? "mass-removal guard" : "update"));
        jset(&b, o, "reason", jstr(held_reason));
        jappend(&b, errors, o);
    } else {
        jset(&b, doc, "held", json_null());
    }
    jset(&b, doc, "last_errors", errors);
    json_t *upd = jobj(&b);
    jset(&b, upd, "held", jint(source_updates_held(d->src)));
    jset(&b, upd, "rejected", jint(source_updates_rejected(d->src)));
    jset(&b, doc, "updates", upd);

    json_t *rb = jobj(&b);
    jset(&b, rb, "total", jint(st->rebuilds));
    jset(&b, rb, "last_seconds", json_real(st->last_rebuild_ms / 1000.0));
    jset(&b, rb, "last_moved_fraction", json_real(st->last_moved_fraction));
    jset(&b, doc, "rebuilds", rb);

    json_t *state = jobj(&b);
    jset(&b, state, "dir", jstr(d->cfg.state_dir));
    jset(&b, state, "writes", jint(st->state_writes));
    jset(&b, state, "write_failures", jint(st->state_write_failures));
    jset(&b, doc, "state", state);

    json_t *cfg = jobj(&b);
    jset(&b, cfg, "reloads", jint(st->config_reloads));
    jset(&b, cfg, "reload_failures", jint(st->config_reload_failures));
    jset(&b, doc, "config", cfg);

    json_t *cl = jobj(&b);
    jset(&b, cl, "connected", jint(d->srv ? server_client_count(d->srv) : 0));
    jset(&b, cl, "subscribers", jint(d->srv ? server_subscriber_count(d->srv) : 0));
    jset(&b, cl, "connections_total", jint(st->connections_total));
    jset(&b, cl, "rejected", jint(st->connections_rejected));
    jset(&b, cl, "protocol_errors", jint(st->protocol_errors));
    jset(&b, cl, "slow_clients_closed", jint(st->slow_clients_closed));
    jset(&b, cl, "idle_clients_closed", jint(st->idle_clients_closed));
    jset(&b, doc, "clients", cl);

    json_t *cmds = jobj(&b);
    for (int i = 0; i < CMD_COUNT; i++) {
        jset(&b, cmds, commands_name(i), jint(st->commands[i]));
    }
    jset(&b, doc, "commands", cmds);
    jset(&b, doc, "command_errors", jint(st->errors));

    json_t *hj = jobj(&b);
    jset(&b, hj, "address", jstr(h->address));
    jset(&b, hj, "connected", jint(h->nconns));
    jset(&b, hj, "connections_total", jint(h->connections_total));
    jset(&b, hj, "connections_rejected", jint(h->connections_rejected));
    jset(&b, hj, "head_timeouts", jint(h->head_timeouts));
    jset(&b, doc, "http", hj);
    respond_json(c, req, 200, jfinish(&b, doc));
}

/* ---- /metrics: Prometheus text exposition format 0.0.4 ---- */

typedef struct mb {
    rs_buf out;
    int rc;
    bool labels_open;
} mb;

static void
m_put(mb *m, const char *s, size_t n) {
    m->rc |= rs_buf_append(&m->out, s, n);
}

static void
m_puts(mb *m, const char *s) {
    m_put(m, s, strlen(s));
}

static void m_printf(mb *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
m_printf(mb *m, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        m->rc |= -EINVAL;
        return;
    }
    m_put(m, tmp, (size_t)n);
}

static void
m_family(mb *m, const char *name, const char *type, const char *help) {
    m_printf(m, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
m_begin(mb *m, const char *name) {
    m_puts(m, name);
    m->labels_open = false;
}

/* A label: value escaped as the format says (backslash, double quote, newline). */
static void
m_label(mb *m, const char *key, const char *value) {
    m_puts(m, m->labels_open ? "," : "{");
    m->labels_open = true;
    m_puts(m, key);
    m_puts(m, "=\"");
    const char *run = value;
    for (const char *p = value; *p != '\0'; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        if (esc != NULL) {
            m_put(m, run, (size_t)(p - run));
            m_puts(m, esc);
            run = p + 1;
        }
    }
    m_puts(m, run);
    m_puts(m, "\"");
}

static void
m_close_labels(mb *m) {
    if (m->labels_open) {
        m_puts(m, "}");
        m->labels_open = false;
    }
}

static void
m_u64(mb *m, uint64_t v) {
    m_close_labels(m);
    m_printf(m, " %" PRIu64 "\n", v);
}

static void
m_f(mb *m, double v) {
    m_close_labels(m);
    if (isnan(v)) {
        m_puts(m, " NaN\n");
    } else if (isinf(v)) {
        m_puts(m, v > 0 ? " +Inf\n" : " -Inf\n");
    } else {
        /* The shortest text that reads back as the same double. */
        char tmp[40];
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
            if (strtod(tmp, NULL) == v) {
                break;
            }
        }
        m_printf(m, " %s\n", tmp);
    }
}

/* One unlabelled sample with its HELP and TYPE. */
static void
m_one_u64(mb *m, const char *name, const char *type, const char *help, uint64_t v) {
    m_family(m, name, type, help);
    m_begin(m, name);
    m_u64(m, v);
}

static void
m_one_f(mb *m, const char *name, const char *type, const char *help, double v) {
    m_family(m, name, type, help);
    m_begin(m, name);
    m_f(m, v);
}

static void
metrics_ring(mb *m, const ringside *d) {
    const view *v = &d->view;
    size_t n = v->ring ? rs_ring_node_count(v->ring) : 0;
    m_one_u64(m, "ringside_ring_epoch", "gauge",
              "Epoch of the current ring view (bumped on every ring or health change).", v->epoch);
    m_one_f(m, "ringside_ring_last_change_timestamp_seconds", "gauge",
            "Unix time of the last ring or health change.", (double)v->last_change);
    m_family(m, "ringside_nodes", "gauge", "Nodes of the current ring by state.");
    static const char *const states[] = {"enabled", "disabled", "healthy", "unhealthy", "usable"};
    uint64_t counts[] = {v->health.enabled, n - v->health.enabled, v->health.healthy,
                         v->health.enabled - v->health.healthy, v->health.usable};
    for (size_t i = 0; i < 5; i++) {
        m_begin(m, "ringside_nodes");
        m_label(m, "state", states[i]);
        m_u64(m, counts[i]);
    }
    m_one_u64(m, "ringside_ring_points", "gauge",
              "Points (ketama) or slots (modula) of the current ring.",
              v->ring ? rs_ring_point_count(v->ring) : 0);
    m_family(m, "ringside_ring_imbalance", "gauge",
             "Largest share of an enabled node over its weighted fair share (1 = balanced).");
    if (v->ring != NULL) {
        m_begin(m, "ringside_ring_imbalance");
        m_f(m, rs_ring_imbalance(v->ring));
    }
    m_one_u64(m, "ringside_panic_mode", "gauge",
              "1 while too few nodes are healthy and health is ignored.", v->health.panic);
    m_family(m, "ringside_node_share", "gauge", "Fraction of the key space a node owns.");
    for (size_t i = 0; i < n; i++) {
        const rs_ring_node *node = rs_ring_node_at(v->ring, i);
        m_begin(m, "ringside_node_share");
        m_label(m, "node", node->id);
        m_f(m, node->share);
    }
    m_family(m, "ringside_node_healthy", "gauge", "1 if a node's health checks pass.");
    for (size_t i = 0; i < n; i++) {
        m_begin(m, "ringside_node_healthy");
        m_label(m, "node", rs_ring_node_at(v->ring, i)->id);
        m_u64(m, v->healthy[i] != 0);
    }
    m_family(m, "ringside_node_enabled", "gauge", "1 if a node is enabled (holds points).");
    for (size_t i = 0; i < n; i++) {
        const rs_ring_node *node = rs_ring_node_at(v->ring, i);
        m_begin(m, "ringside_node_enabled");
        m_label(m, "node", node->id);
        m_u64(m, node->enabled);
    }
}

static void
metrics_clients(mb *m, const ringside *d) {
    const stats *st = &d->stats;
    m_family(m, "ringside_lookups_total", "counter",
             "Socket commands answered, by command (lookups and the others).");
    for (int i = 0; i < CMD_COUNT; i++) {
        m_begin(m, "ringside_lookups_total");
        m_label(m, "command", commands_name(i));
        m_u64(m, st->commands[i]);
    }
    m_one_u64(m, "ringside_command_errors_total", "counter",
              "Error replies sent on the socket (NORING, wrong arguments, limits, ...).",
              st->errors);
    m_one_u64(m, "ringside_clients_connected", "gauge", "Clients connected to the socket.",
              d->srv ? server_client_count(d->srv) : 0);
    m_one_u64(m, "ringside_subscribers_connected", "gauge",
              "Socket clients subscribed to ring changes.",
              d->srv ? server_subscriber_count(d->srv) : 0);
    m_one_u64(m, "ringside_connections_total", "counter", "Socket connections accepted.",
              st->connections_total);
    m_one_u64(m, "ringside_clients_rejected_total", "counter",
              "Socket clients turned away (max clients, peer credentials).",
              st->connections_rejected);
    m_one_u64(m, "ringside_protocol_errors_total", "counter",
              "Malformed or oversized socket requests (the connection is closed).",
              st->protocol_errors);
    m_one_u64(m, "ringside_slow_clients_closed_total", "counter",
              "Socket clients closed for not reading their replies.", st->slow_clients_closed);
    m_one_u64(m, "ringside_idle_clients_closed_total", "counter",
              "Socket clients closed after the idle timeout.", st->idle_clients_closed);
}

static void
metrics_consul(mb *m, const http_server *h) {
    const ringside *d = h->d;
    const consul_watch *ws[2] = {source_kv_watch(d->src), source_health_watch(d->src)};
    const consul_watch_stats *st[2];
    for (size_t i = 0; i < 2; i++) {
        st[i] = ws[i] != NULL ? consul_watch_get_stats(ws[i]) : NULL;
    }
    m_family(m, "ringside_consul_requests_total", "counter",
             "Consul requests by watch and outcome (transport error or HTTP status class).");
    for (size_t i = 0; i < 2; i++) {
        for (size_t k = 0; st[i] != NULL && k < 6; k++) {
            if (k == 1 && st[i]->responses_by_class[1] == 0) {
                continue; /* 1xx is never a final answer: only shown if it ever happens */
            }
            m_begin(m, "ringside_consul_requests_total");
            m_label(m, "watch", consul_watch_name(ws[i]));
            m_label(m, "class", class_names[k]);
            m_u64(m, st[i]->responses_by_class[k]);
        }
    }
    m_family(m, "ringside_consul_watch_errors_total", "counter",
             "Failed Consul watch requests (retried after backoff).");
    for (size_t i = 0; i < 2; i++) {
        if (st[i] != NULL) {
            m_begin(m, "ringside_consul_watch_errors_total");
            m_label(m, "watch", consul_watch_name(ws[i]));
            m_u64(m, st[i]->errors);
        }
    }
    m_family(m, "ringside_consul_changes_total", "counter",
             "Consul answers whose content changed (handed to the membership source).");
    for (size_t i = 0; i < 2; i++) {
        if (st[i] != NULL) {
            m_begin(m, "ringside_consul_changes_total");
            m_label(m, "watch", consul_watch_name(ws[i]));
            m_u64(m, st[i]->changes);
        }
    }
    m_family(m, "ringside_consul_index_resets_total", "counter",
             "Times a watch's Consul index went backwards and was reset.");
    for (size_t i = 0; i < 2; i++) {
        if (st[i] != NULL) {
            m_begin(m, "ringside_consul_index_resets_total");
            m_label(m, "watch", consul_watch_name(ws[i]));
            m_u64(m, st[i]->index_resets);
        }
    }
    m_family(m, "ringside_consul_last_contact_seconds", "gauge",
             "X-Consul-LastContact of the watch's last answer: the agent's staleness.");
    for (size_t i = 0; i < 2; i++) {
        if (st[i] != NULL && st[i]->last_contact_ms >= 0) {
            m_begin(m, "ringside_consul_last_contact_seconds");
            m_label(m, "watch", consul_watch_name(ws[i]));
            m_f(m, (double)st[i]->last_contact_ms / 1000.0);
        }
    }
    m_family(m, "ringside_consul_last_success_timestamp_seconds", "gauge",
             "Unix time of the watch's last good answer from Consul.");
    uint64_t now = now_ms(h);
    double wall = wall_now();
    for (size_t i = 0; i < 2; i++) {
        if (st[i] != NULL && st[i]->last_success_ms != 0 && now >= st[i]->last_success_ms) {
            m_begin(m, "ringside_consul_last_success_timestamp_seconds");
            m_label(m, "watch", consul_watch_name(ws[i]));
            m_f(m, wall - (double)(now - st[i]->last_success_ms) / 1000.0);
        }
    }
    m_family(m, "ringside_consul_index", "gauge", "The Consul index a watch blocks on.");
    for (size_t i = 0; i < 2; i++) {
        if (st[i] != NULL) {
            m_begin(m, "ringside_consul_index");
            m_label(m, "watch", consul_watch_name(ws[i]));
            m_u64(m, st[i]->index);
        }
    }
}

static void
metrics_changes(mb *m, const ringside *d) {
    const stats *st = &d->stats;
    m_one_u64(m, "ringside_rebuilds_total", "counter", "New rings built and installed.",
              st->rebuilds);
    m_one_f(m, "ringside_rebuild_seconds", "gauge", "Time the last ring build took.",
            st->last_rebuild_ms / 1000.0);
    m_one_f(m, "ringside_keys_moved_ratio", "gauge",
            "Fraction of the key space whose owner changed with the last ring change.",
            st->last_moved_fraction);
    m_one_u64(m, "ringside_updates_held_total", "counter",
              "Membership updates held (mass-removal guard, or an update that cannot build).",
              source_updates_held(d->src));
    m_one_u64(m, "ringside_update_held", "gauge",
              "1 while an update is held waiting for an operator's confirmation.",
              source_held_fingerprint(d->src)[0] != '\0');
    m_one_u64(m, "ringside_updates_rejected_total", "counter",
              "Membership updates or KV values rejected as invalid.",
              source_updates_rejected(d->src));
    m_one_u64(m, "ringside_state_writes_total", "counter", "State snapshots written.",
              st->state_writes);
    m_one_u64(m, "ringside_state_write_failures_total", "counter",
              "State snapshots that could not be written.", st->state_write_failures);
    m_family(m, "ringside_config_reloads_total", "counter",
             "Config reloads (SIGHUP) by result; a failed one keeps the running config.");
    uint64_t failed = st->config_reload_failures;
    m_begin(m, "ringside_config_reloads_total");
    m_label(m, "result", "success");
    m_u64(m, st->config_reloads > failed ? st->config_reloads - failed : 0);
    m_begin(m, "ringside_config_reloads_total");
    m_label(m, "result", "failure");
    m_u64(m, failed);
}

static void
metrics_http(mb *m, const http_server *h) {
    m_family(m, "ringside_http_requests_total", "counter",
             "HTTP requests answered by status code (this endpoint).");
    for (size_t i = 0; i < N_STATUSES; i++) {
        char code[8];
        snprintf(code, sizeof(code), "%d", statuses[i].code);
        m_begin(m, "ringside_http_requests_total");
        m_label(m, "code", code);
        m_u64(m, h->responses[i]);
    }
    m_one_u64(m, "ringside_http_connections_rejected_total", "counter",
              "HTTP connections turned away (too many open).", h->connections_rejected);
    m_one_u64(m, "ringside_http_head_timeouts_total", "counter",
              "HTTP clients closed for not sending a complete request head in time.",
              h->head_timeouts);
}

static void
h_metrics(hconn *c, const http_request *req, const char *q, size_t qlen) {
    const http_server *h = c->h;
    const ringside *d = h->d;
    mb m = {.rc = 0, .labels_open = false};
    rs_buf_init(&m.out);
    m_family(&m, "ringside_build_info", "gauge", "Build information; the value is always 1.");
    m_begin(&m, "ringside_build_info");
    m_label(&m, "version", RINGSIDE_VERSION);
    m_u64(&m, 1);
    m_one_f(&m, "ringside_process_start_time_seconds", "gauge",
            "Unix time the ringside process started.", h->start_unix);
    metrics_ring(&m, d);
    metrics_clients(&m, d);
    metrics_consul(&m, h);
    metrics_changes(&m, d);
    metrics_http(&m, h);
    if (m.rc != 0) {
        respond_error(c, req, 500, "out of memory");
    } else {
        respond(c, req, 200, CT_METRICS, "", rs_buf_data(&m.out), rs_buf_len(&m.out));
    }
    rs_buf_free(&m.out);
}

static const struct {
    const char *path;
    handler_fn fn;
} routes[] = {
    {"/healthz", h_healthz},  {"/readyz", h_readyz},  {"/metrics", h_metrics},
    {"/v1/ring", h_ring},     {"/v1/nodes", h_nodes}, {"/v1/lookup", h_lookup},
    {"/v1/status", h_status},
};

/* Answer one complete head: the request's status, route and handler. */
static void
conn_handle(hconn *c, size_t end) {
    http_request req;
    const char *why = NULL;
    int code = parse_head(c->head, end, &req, &why);
    if (code != 0) {
        respond_error(c, NULL, code, why);
        return;
    }
    bool get = req.method_len == 3 && memcmp(req.method, "GET", 3) == 0;
    req.head_only = req.method_len == 4 && memcmp(req.method, "HEAD", 4) == 0;
    if (!get && !req.head_only) {
        respond_text(c, &req, 405, "Allow: GET, HEAD\r\n",
                     "405 Method Not Allowed: only GET and HEAD\n");
        return;
    }
    if (req.has_body) {
        respond_error(c, &req, 413, "a GET request takes no body");
        return;
    }
    /* origin-form "/path?query", or absolute-form "http://host/path?query". */
    const char *t = req.target;
    size_t tn = req.target_len;
    if ((tn >= 7 && strncasecmp(t, "http://", 7) == 0) ||
        (tn >= 8 && strncasecmp(t, "https://", 8) == 0)) {
        size_t skip = t[4] == ':' ? 7 : 8;
        const char *slash = memchr(t + skip, '/', tn - skip);
        const char *qm = memchr(t + skip, '?', tn - skip);
        if (slash == NULL || (qm != NULL && qm < slash)) {
            t = "/";
            tn = 1;
        } else {
            tn -= (size_t)(slash - t);
            t = slash;
        }
    }
    if (tn == 0 || t[0] != '/') {
        respond_error(c, &req, 400, "the request target must be a path");
        return;
    }
    const char *qm = memchr(t, '?', tn);
    size_t plen = qm != NULL ? (size_t)(qm - t) : tn;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strlen(routes[i].path) == plen && memcmp(routes[i].path, t, plen) == 0) {
            routes[i].fn(c, &req, qm != NULL ? qm + 1 : NULL, qm != NULL ? tn - plen - 1 : 0);
            return;
        }
    }
    respond_error(c, &req, 404,
                  "no such endpoint (try /metrics, /healthz, /readyz, /v1/ring, "
                  "/v1/nodes, /v1/lookup?key=K, /v1/status)");
}

/* ==== connections ==== */

static void
on_conn_closed(uv_handle_t *handle) {
    hconn *c = handle->data;
    http_server *h = c->h;
    free(c->head);
    rs_buf_free(&c->out);
    free(c);
    h->nclosing--;
    maybe_finish(h);
}

static void
conn_close(hconn *c) {
    if (c->state == HC_CLOSED) {
        return;
    }
    http_server *h = c->h;
    set_state(c, HC_CLOSED);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        h->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
    h->nconns--;
    h->nclosing++;
    if (h->nconns == 0 && h->sweep_running) {
        uv_timer_stop(&h->sweep);
        h->sweep_running = false;
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void
on_shutdown(uv_shutdown_t *req, int status) {
    hconn *c = container_of(req, hconn, sreq);
    if (c->state == HC_CLOSED) {
        return;
    }
    if (status < 0 || c->peer_eof) {
        conn_close(c);
        return;
    }
    /* Close once the client has read the answer and closed its side: closing with its
     * bytes unread would reset the connection and could destroy the answer in flight. */
    set_state(c, HC_LINGER);
    uint64_t deadline = now_ms(c->h) + HTTP_LINGER_MS;
    c->deadline_ms = c->h->stopping && c->deadline_ms < deadline ? c->deadline_ms : deadline;
}

static void
conn_written(hconn *c) {
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
    }
}

static void
on_write(uv_write_t *req, int status) {
    hconn *c = container_of(req, hconn, wreq);
    c->writing = false;
    if (c->state == HC_CLOSED) {
        return;
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    rs_buf_consume(&c->out, rs_buf_len(&c->out));
    conn_written(c);
}

static void
conn_flush(hconn *c) {
    while (rs_buf_len(&c->out) > 0) {
        uv_buf_t b = uv_buf_init((char *)rs_buf_data(&c->out), (unsigned)rs_buf_len(&c->out));
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == UV_EAGAIN) {
            break;
        }
        if (n < 0) {
            conn_close(c);
            return;
        }
        rs_buf_consume(&c->out, (size_t)n);
    }
    if (rs_buf_len(&c->out) == 0) {
        conn_written(c);
        return;
    }
    /* The kernel is full: libuv writes the rest; out stays untouched until on_write. */
    uv_buf_t b = uv_buf_init((char *)rs_buf_data(&c->out), (unsigned)rs_buf_len(&c->out));
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        conn_close(c);
        return;
    }
    c->writing = true;
}

static void
on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
    hconn *c = handle->data;
    (void)suggested;
    if (c->state != HC_READING) {
        *buf = uv_buf_init(c->h->discard, sizeof(c->h->discard));
        return;
    }
    if (c->head_cap == c->head_len) {
        /* Never beyond one byte over the limit: that byte proves the head too large. */
        size_t cap = c->head_cap ? c->head_cap * 2 : 1024;
        if (cap > HTTP_HEAD_MAX + 1) {
            cap = HTTP_HEAD_MAX + 1;
        }
        char *p = cap > c->head_cap ? realloc(c->head, cap) : NULL;
        if (p == NULL) {
            *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
            return;
        }
        c->head = p;
        c->head_cap = cap;
    }
    *buf = uv_buf_init(c->head + c->head_len, (unsigned)(c->head_cap - c->head_len));
}

static void
on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    hconn *c = stream->data;
    (void)buf;
    if (c->state == HC_CLOSED) {
        return;
    }
    if (nread < 0) {
        c->peer_eof = true;
        /* A client gone before its head is complete gets no answer; one gone after it
         * still gets its answer written, as far as the kernel takes it. */
        if (nread != UV_EOF || c->state != HC_WRITING) {
            conn_close(c);
        }
        return;
    }
    if (c->state != HC_READING || nread == 0) {
        return;
    }
    c->head_len += (size_t)nread;
    size_t end = 0;
    switch (head_check(c->head, c->head_len, &c->scan, &end)) {
    case HEAD_MORE:
        return;
    case HEAD_LINE_TOO_LONG:
        respond_error(c, NULL, 414, "request line longer than 8 KiB");
        return;
    case HEAD_TOO_LARGE:
        respond_error(c, NULL, 431, "request head larger than 16 KiB");
        return;
    case HEAD_COMPLETE:
        conn_handle(c, end);
        return;
    }
}

static void
on_sweep(uv_timer_t *t) {
    http_server *h = container_of(t, http_server, sweep);
    uint64_t now = now_ms(h);
    hconn *next;
    for (hconn *c = h->conns; c != NULL; c = next) {
        next = c->next;
        if (now < c->deadline_ms) {
            continue;
        }
        if (c->state == HC_READING) {
            /* A slow or stalled client: a courtesy 408 if the kernel takes it at once. */
            h->head_timeouts++;
            h->responses[status_index(408)]++;
            static const char r408[] = "HTTP/1.1 408 Request Timeout\r\nContent-Type: " CT_TEXT
                                       "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            uv_buf_t b = uv_buf_init((char *)r408, sizeof(r408) - 1);
            (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
            log_msg(RS_LOG_DEBUG, "http_client_closed", "reason",
                    "request head not complete within 5s");
        } else if (c->state == HC_WRITING) {
            log_msg(RS_LOG_DEBUG, "http_client_closed", "reason",
                    h->stopping ? "stopping" : "response not read within 10s");
        }
        conn_close(c);
    }
}

static void
on_connection(uv_stream_t *listener, int status) {
    http_server *h = container_of((uv_tcp_t *)listener, http_server, listener);
    if (status < 0 || h->stopping) {
        return;
    }
    hconn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return;
    }
    c->h = h;
    rs_buf_init(&c->out);
    uv_tcp_init(h->d->loop, &c->tcp);
    c->tcp.data = c;
    c->next = h->conns;
    if (h->conns != NULL) {
        h->conns->prev = c;
    }
    h->conns = c;
    h->nconns++;
    c->deadline_ms = now_ms(h) + HTTP_HEAD_TIMEOUT_MS;
    if (!h->sweep_running) {
        uv_timer_start(&h->sweep, on_sweep, HTTP_SWEEP_MS, HTTP_SWEEP_MS);
        h->sweep_running = true;
    }
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    h->connections_total++;
    if (h->nconns > HTTP_MAX_CONNS) {
        h->connections_rejected++;
        respond_error(c, NULL, 503, "too many HTTP connections");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
    }
}

/* ==== the server's life ==== */

static void
on_handle_closed(uv_handle_t *handle) {
    http_server *h = handle->data;
    h->open_handles--;
    maybe_finish(h);
}

static void
maybe_finish(http_server *h) {
    if (!h->stopping || h->nconns > 0) {
        return;
    }
    if (!h->sweep_closing) {
        h->sweep_closing = true;
        uv_close((uv_handle_t *)&h->sweep, on_handle_closed);
    }
    /* libuv runs close callbacks in no promised order: wait for every one of them. */
    if (h->open_handles == 0 && h->nclosing == 0) {
        ringside *d = h->d;
        void (*done)(ringside *) = h->done;
        h->done = NULL;
        d->http = NULL;
        free(h);
        if (done != NULL) {
            done(d);
        }
    }
}

/* "host:port" with an IPv4 literal, an [IPv6] literal or localhost. */
static int
parse_listen_address(const char *s, struct sockaddr_storage *ss, rs_error *err) {
    char host[64];
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host)) {
            return rs_error_set(err, -EINVAL, "http.address %s: expected [IPv6]:port", s);
        }
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof(host)) {
            return rs_error_set(err, -EINVAL, "http.address %s: expected host:port", s);
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    char *endp;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &endp, 10);
    if (colon[1] < '0' || colon[1] > '9' || *endp != '\0' || errno != 0 || port > 65535) {
        return rs_error_set(err, -EINVAL, "http.address %s: port must be 0..65535", s);
    }
    if (strcmp(host, "localhost") == 0) {
        snprintf(host, sizeof(host), "127.0.0.1");
    }
    if (s[0] == '[') {
        if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) != 0) {
            return rs_error_set(err, -EINVAL, "http.address %s: not an IPv6 address", s);
        }
    } else if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) != 0) {
        return rs_error_set(err, -EINVAL,
                            "http.address %s: host must be an IPv4 address, an [IPv6] address "
                            "or localhost",
                            s);
    }
    return 0;
}

static void
format_bound(http_server *h) {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[64] = "?";
    int port = 0;
    if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            snprintf(h->address, sizeof(h->address), "[%s]:%d", ip, port);
            return;
        }
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    snprintf(h->address, sizeof(h->address), "%s:%d", ip, port);
}

static void
on_failed_listener_closed(uv_handle_t *handle) {
    free(handle->data);
}

int
http_start(ringside *d, rs_error *err) {
    d->http = NULL;
    if (!d->cfg.http_enabled) {
        log_msg(RS_LOG_INFO, "http_disabled", "reason", "http.enabled is false");
        return 0;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    int rc = parse_listen_address(d->cfg.http_address, &ss, err);
    if (rc != 0) {
        return rc;
    }
    http_server *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    h->d = d;
    h->start_unix = wall_now() - (double)(daemon_now_ms(d) - d->stats.started_ms) / 1000.0;
    uv_tcp_init(d->loop, &h->listener);
    h->listener.data = h;
    rc = uv_tcp_bind(&h->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0) {
        /* libuv reports a bind's EADDRINUSE from listen. */
        rc = uv_listen((uv_stream_t *)&h->listener, HTTP_BACKLOG, on_connection);
    }
    if (rc != 0) {
        rs_error_set(err, rc, "http.address %s: %s%s", d->cfg.http_address, uv_strerror(rc),
                     rc == UV_EADDRINUSE ? " (another process listens there: change http.address "
                                           "or set http.enabled to false)"
                                         : "");
        /* Freed by the close callback when the loop next runs. */
        uv_close((uv_handle_t *)&h->listener, on_failed_listener_closed);
        return rc;
    }
    uv_timer_init(d->loop, &h->sweep);
    h->sweep.data = h;
    h->open_handles = 2;
    format_bound(h);
    d->http = h;
    log_msg(RS_LOG_INFO, "http_listening", "address", h->address);
    return 0;
}

void
http_stop(http_server *h, void (*done)(ringside *d)) {
    assert(!h->stopping);
    h->stopping = true;
    h->done = done;
    uv_close((uv_handle_t *)&h->listener, on_handle_closed);
    uint64_t cut = now_ms(h) + HTTP_STOP_GRACE_MS;
    hconn *next;
    for (hconn *c = h->conns; c != NULL; c = next) {
        next = c->next;
        if (c->state == HC_WRITING) {
            c->deadline_ms = c->deadline_ms < cut ? c->deadline_ms : cut;
        } else {
            conn_close(c); /* not answered yet, or answered already */
        }
    }
    maybe_finish(h);
}

const char *
http_bound_address(const http_server *h) {
    return h->address;
}
