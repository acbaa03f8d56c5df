/* Blocking Consul HTTP for ringctl: address, token and TLS settings from options or
 * Consul's environment, one libcurl easy handle, KV get/list and check-and-set writes. */
#include "consul_cli.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "rs_membership.h"

#define URL_MAX 512
#define TOKEN_MAX 512
#define CONNECT_TIMEOUT_MS 5000L
#define REQUEST_TIMEOUT_MS 30000L

typedef struct agent {
    char url[URL_MAX];       /* "http://127.0.0.1:8500", no trailing '/' */
    char unix_path[URL_MAX]; /* "" unless the agent listens on a Unix socket */
} agent;

struct consul_cli {
    CURL *curl;
    agent agents[CONSUL_CLI_MAX_ADDRESSES];
    size_t n_agents, cur;
    char token[TOKEN_MAX];
    char ca_file[URL_MAX], ca_path[URL_MAX], cert_file[URL_MAX], key_file[URL_MAX];
    bool verify;
    bool global_init;
};

static const char *
env(const char *name) {
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static bool
env_true(const char *name) {
    const char *v = env(name);
    return v != NULL && (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
                         strcasecmp(v, "yes") == 0 || strcasecmp(v, "t") == 0);
}

static bool
env_false(const char *name) {
    const char *v = env(name);
    return v != NULL && (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0 ||
                         strcasecmp(v, "no") == 0 || strcasecmp(v, "f") == 0);
}

/* One address as CONSUL_HTTP_ADDR writes it: "host:port", "http(s)://host:port[/]" or
 * "unix:///path". */
static int
parse_agent(const char *s, size_t len, bool ssl, agent *a, rs_error *err) {
    while (len > 0 && isspace((unsigned char)*s)) {
        s++, len--;
    }
    while (len > 0 && isspace((unsigned char)s[len - 1])) {
        len--;
    }
    while (len > 1 && s[len - 1] == '/' && !(len > 7 && strncmp(s, "unix://", 7) == 0)) {
        len--;
    }
    if (len == 0) {
        return rs_error_set(err, -EINVAL, "Consul address: empty address");
    }
    for (size_t i = 0; i < len; i++) {
        if (!isgraph((unsigned char)s[i])) {
            return rs_error_set(err, -EINVAL,
                                "Consul address \"%.*s\": must not contain spaces or control "
                                "characters",
                                (int)len, s);
        }
    }
    *a = (agent){0};
    if (len > 7 && strncmp(s, "unix://", 7) == 0) {
        if (len - 7 >= sizeof(a->unix_path)) {
            return rs_error_set(err, -ENAMETOOLONG, "Consul address: socket path too long");
        }
        memcpy(a->unix_path, s + 7, len - 7);
        snprintf(a->url, sizeof(a->url), "http://localhost");
        return 0;
    }
    const char *sep = NULL;
    for (size_t i = 0; i + 2 < len; i++) {
        if (memcmp(s + i, "://", 3) == 0) {
            sep = s + i;
            break;
        }
    }
    int n;
    if (sep == NULL) {
        n = snprintf(a->url, sizeof(a->url), "%s://%.*s", ssl ? "https" : "http", (int)len, s);
    } else {
        size_t scheme = (size_t)(sep - s);
        if (!((scheme == 4 && strncasecmp(s, "http", 4) == 0) ||
              (scheme == 5 && strncasecmp(s, "https", 5) == 0))) {
            return rs_error_set(err, -EINVAL,
                                "Consul address \"%.*s\": scheme must be http, https or unix",
                                (int)len, s);
        }
        if ((size_t)(sep + 3 - s) == len) {
            return rs_error_set(err, -EINVAL, "Consul address \"%.*s\": no host", (int)len, s);
        }
        n = snprintf(a->url, sizeof(a->url), "%.*s", (int)len, s);
    }
    if (n < 0 || (size_t)n >= sizeof(a->url)) {
        return rs_error_set(err, -ENAMETOOLONG, "Consul address: too long");
    }
    return 0;
}

/* A token must be one header value: printable ASCII without spaces. The token itself is
 * never quoted in a message. */
static int
check_token(const char *t, size_t len, const char *origin, rs_error *err) {
    if (len == 0) {
        return rs_error_set(err, -EINVAL, "%s: the ACL token is empty", origin);
    }
    if (len >= TOKEN_MAX) {
        return rs_error_set(err, -EINVAL, "%s: the ACL token is too long (max %d bytes)", origin,
                            TOKEN_MAX - 1);
    }
    for (size_t i = 0; i < len; i++) {
        if (!isgraph((unsigned char)t[i])) {
            return rs_error_set(err, -EINVAL,
                                "%s: the ACL token contains spaces or control characters", origin);
        }
    }
    return 0;
}

/* The first line of path, trimmed, as Consul's own CLI reads token files. */
static int
read_token_file(const char *path, char *out, size_t cap, rs_error *err) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return rs_error_set(err, -errno, "token file %s: %s", path, strerror(errno));
    }
    char buf[TOKEN_MAX + 2];
    size_t got = fread(buf, 1, sizeof(buf) - 1, f);
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed) {
        return rs_error_set(err, -EIO, "token file %s: read error", path);
    }
    buf[got] = '\0';
    char *s = buf;
    while (*s != '\0' && isspace((unsigned char)*s)) {
        s++;
    }
    size_t len = strcspn(s, "\r\n");
    while (len > 0 && isspace((unsigned char)s[len - 1])) {
        len--;
    }
    char origin[300];
    snprintf(origin, sizeof(origin), "token file %s", path);
    int rc = check_token(s, len, origin, err);
    if (rc == 0) {
        if (len >= cap) {
            return rs_error_set(err, -EINVAL, "%s: the ACL token is too long", origin);
        }
        memcpy(out, s, len);
        out[len] = '\0';
    }
    return rc;
}

static int
copy_setting(char *dst, size_t cap, const char *value, const char *what, rs_error *err) {
    if (value == NULL) {
        dst[0] = '\0';
        return 0;
    }
    if (strlen(value) >= cap) {
        return rs_error_set(err, -ENAMETOOLONG, "%s: path too long", what);
    }
    snprintf(dst, cap, "%s", value);
    return 0;
}

int
consul_cli_new(const consul_cli_settings *s, consul_cli **out, rs_error *err) {
    *out = NULL;
    consul_cli *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return rs_error_set(err, -ENOMEM, "out of memory");
    }
    int rc;
    const char *addr = s->address != NULL ? s->address : env("CONSUL_HTTP_ADDR");
    if (addr == NULL) {
        addr = CONSUL_CLI_DEFAULT_ADDRESS;
    }
    bool ssl = env_true("CONSUL_HTTP_SSL");
    for (const char *p = addr;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (c->n_agents == CONSUL_CLI_MAX_ADDRESSES) {
            rc = rs_error_set(err, -EINVAL, "Consul address: more than %d addresses",
                              CONSUL_CLI_MAX_ADDRESSES);
            goto fail;
        }
        if ((rc = parse_agent(p, len, ssl, &c->agents[c->n_agents], err)) != 0) {
            goto fail;
        }
        c->n_agents++;
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
    }

    const char *token_file = s->token_file != NULL ? s->token_file : env("CONSUL_HTTP_TOKEN_FILE");
    const char *token = env("CONSUL_HTTP_TOKEN");
    if (token_file != NULL) {
        if ((rc = read_token_file(token_file, c->token, sizeof(c->token), err)) != 0) {
            goto fail;
        }
    } else if (token != NULL) {
        if ((rc = check_token(token, strlen(token), "CONSUL_HTTP_TOKEN", err)) != 0) {
            goto fail;
        }
        snprintf(c->token, sizeof(c->token), "%s", token);
    }

    if ((rc = copy_setting(c->ca_file, sizeof(c->ca_file),
                           s->ca_file != NULL ? s->ca_file : env("CONSUL_CACERT"), "CA file",
                           err)) != 0 ||
        (rc = copy_setting(c->ca_path, sizeof(c->ca_path), env("CONSUL_CAPATH"), "CONSUL_CAPATH",
                           err)) != 0 ||
        (rc = copy_setting(c->cert_file, sizeof(c->cert_file), env("CONSUL_CLIENT_CERT"),
                           "CONSUL_CLIENT_CERT", err)) != 0 ||
        (rc = copy_setting(c->key_file, sizeof(c->key_file), env("CONSUL_CLIENT_KEY"),
                           "CONSUL_CLIENT_KEY", err)) != 0) {
        goto fail;
    }
    c->verify = !env_false("CONSUL_HTTP_SSL_VERIFY");

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        rc = rs_error_set(err, -ENOMEM, "cannot initialise libcurl");
        goto fail;
    }
    c->global_init = true;
    if ((c->curl = curl_easy_init()) == NULL) {
        rc = rs_error_set(err, -ENOMEM, "cannot initialise libcurl");
        goto fail;
    }
    *out = c;
    return 0;
fail:
    consul_cli_free(c);
    return rc;
}

void
consul_cli_free(consul_cli *c) {
    if (c == NULL) {
        return;
    }
    if (c->curl != NULL) {
        curl_easy_cleanup(c->curl);
    }
    if (c->global_init) {
        curl_global_cleanup();
    }
    /* The token leaves no copy behind in freed memory. */
    memset(c->token, 0, sizeof(c->token));
    free(c);
}

const char *
consul_cli_url(const consul_cli *c) {
    const agent *a = &c->agents[c->cur];
    return a->unix_path[0] != '\0' ? a->unix_path : a->url;
}

void
consul_reply_free(consul_reply *r) {
    free(r->body);
    *r = (consul_reply){0};
}

typedef struct sink {
    consul_reply *r;
    size_t cap;
    bool too_big;
} sink;

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg) {
    sink *s = arg;
    size_t n = size * nmemb;
    if (s->r->len + n > RS_KV_MAX_BODY) {
        s->too_big = true;
        return 0; /* aborts the transfer */
    }
    if (s->r->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->r->len + n + 1) {
            cap *= 2;
        }
        char *b = realloc(s->r->body, cap);
        if (b == NULL) {
            return 0;
        }
        s->r->body = b;
        s->cap = cap;
    }
    memcpy(s->r->body + s->r->len, data, n);
    s->r->len += n;
    s->r->body[s->r->len] = '\0';
    return n;
}

/* "Name: value\r\n" matching name case-insensitively: the value, trimmed, else NULL. */
static const char *
header_value(const char *line, size_t n, const char *name, size_t *vlen) {
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':') {
        return NULL;
    }
    const char *v = line + nl + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (end > v && isspace((unsigned char)end[-1])) {
        end--;
    }
    *vlen = (size_t)(end - v);
    return v;
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg) {
    consul_reply *r = arg;
    size_t n = size * nmemb, vlen;
    const char *v;
    if ((v = header_value(data, n, "X-Consul-Index", &vlen)) != NULL) {
        uint64_t idx = 0;
        for (size_t i = 0; i < vlen && isdigit((unsigned char)v[i]) && idx < UINT64_MAX / 10; i++) {
            idx = idx * 10 + (uint64_t)(v[i] - '0');
        }
        r->index = idx;
    } else if ((v = header_value(data, n, "X-Consul-Results-Filtered-By-ACLs", &vlen)) != NULL) {
        r->acl_filtered = vlen == 4 && strncasecmp(v, "true", 4) == 0;
    }
    return n;
}

/* Errors where the request never reached Consul, so another agent may be tried. */
static bool
not_sent(CURLcode rc) {
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
           rc == CURLE_COULDNT_RESOLVE_PROXY;
}

static CURLcode
perform(consul_cli *c, const agent *a, const char *method, const char *path_query, const char *body,
        size_t len, struct curl_slist *headers, sink *s, char *errbuf) {
    CURL *h = c->curl;
    char url[URL_MAX * 3];
    snprintf(url, sizeof(url), "%s%s", a->url, path_query);
    curl_easy_reset(h);
    errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, REQUEST_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, s->r);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ringctl");
    if (a->unix_path[0] != '\0') {
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, a->unix_path);
    }
    if (c->ca_file[0] != '\0') {
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    }
    if (c->ca_path[0] != '\0') {
        curl_easy_setopt(h, CURLOPT_CAPATH, c->ca_path);
    }
    if (c->cert_file[0] != '\0') {
        curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
    }
    if (c->key_file[0] != '\0') {
        curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
    }
    if (!c->verify) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (body != NULL || strcmp(method, "PUT") == 0) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body != NULL ? body : "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        }
    }
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &s->r->status);
    }
    return rc;
}

static bool
add_header(struct curl_slist **list, const char *h) {
    struct curl_slist *l = curl_slist_append(*list, h);
    if (l == NULL) {
        return false;
    }
    *list = l;
    return true;
}

int
consul_cli_request(consul_cli *c, const char *method, const char *path_query, const char *body,
                   size_t len, consul_reply *r, rs_error *err) {
    *r = (consul_reply){0};
    struct curl_slist *headers = NULL;
    char hdr[TOKEN_MAX + 32];
    int rc = 0;
    /* Content-Type keeps libcurl from announcing a form; "Expect:" avoids a 1 s stall on
     * larger PUTs. */
    bool ok =
        add_header(&headers, "Content-Type: application/json") && add_header(&headers, "Expect:");
    if (ok && c->token[0] != '\0') {
        snprintf(hdr, sizeof(hdr), "X-Consul-Token: %s", c->token);
        ok = add_header(&headers, hdr);
        memset(hdr, 0, sizeof(hdr));
    }
    if (!ok) {
        curl_slist_free_all(headers);
        return rs_error_set(err, -ENOMEM, "out of memory");
    }

    assert(c->n_agents > 0);
    char tried[1024];
    tried[0] = '\0';
    size_t start = c->cur;
    for (size_t k = 0; k < c->n_agents; k++) {
        size_t i = (start + k) % c->n_agents;
        char errbuf[CURL_ERROR_SIZE];
        sink s = {.r = r};
        consul_reply_free(r); /* a partial answer from the agent tried before */
        CURLcode cc = perform(c, &c->agents[i], method, path_query, body, len, headers, &s, errbuf);
        if (cc == CURLE_OK) {
            c->cur = i;
            if (r->body == NULL && (r->body = calloc(1, 1)) == NULL) {
                rc = rs_error_set(err, -ENOMEM, "out of memory");
            }
            goto out;
        }
        if (s.too_big) {
            rc = rs_error_set(err, -EFBIG, "Consul at %s sent more than %u bytes",
                              consul_cli_url(c), (unsigned)RS_KV_MAX_BODY);
            goto out;
        }
        const char *why = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(cc);
        const agent *a = &c->agents[i];
        size_t used = strlen(tried);
        snprintf(tried + used, sizeof(tried) - used, "%s%s: %s", used ? "; " : "",
                 a->unix_path[0] ? a->unix_path : a->url, why);
        if (!not_sent(cc)) {
            break;
        }
    }
    rc = rs_error_set(err, -EIO, "cannot reach Consul at %s", tried);
out:
    curl_slist_free_all(headers);
    if (rc != 0) {
        consul_reply_free(r);
    }
    return rc;
}

int
consul_cli_http_error(const consul_cli *c, const char *method, const char *path,
                      const consul_reply *r, rs_error *err) {
    /* Consul's message is plain text ("Permission denied", "ACL not found"); keep one
     * trimmed line of it. */
    const char *m = r->body != NULL ? r->body : "";
    size_t len = r->len;
    while (len > 0 && isspace((unsigned char)*m)) {
        m++, len--;
    }
    size_t line = 0;
    while (line < len && m[line] != '\n' && m[line] != '\r') {
        line++;
    }
    const char *q = strchr(path, '?');
    int plen = q != NULL ? (int)(q - path) : (int)strlen(path);
    return rs_error_set(err, r->status == 403 ? -EACCES : -EIO,
                        "Consul at %s answered HTTP %ld to %s %.*s%s%.*s", consul_cli_url(c),
                        r->status, method, plen, path, line ? ": " : "",
                        (int)(line > 160 ? 160 : line), m);
}

int
consul_cli_kv_path(const char *key, const char *query, char *out, size_t cap) {
    size_t used = (size_t)snprintf(out, cap, "/v1/kv/");
    const char *p = key;
    for (;;) {
        size_t seg = strcspn(p, "/");
        char *esc = curl_easy_escape(NULL, p, (int)seg);
        if (esc == NULL) {
            return -ENOMEM;
        }
        int n = snprintf(out + used, cap - used, "%s%s", esc, p[seg] == '/' ? "/" : "");
        curl_free(esc);
        if (n < 0 || (size_t)n >= cap - used) {
            return -ENAMETOOLONG;
        }
        used += (size_t)n;
        if (p[seg] == '\0') {
            break;
        }
        p += seg + 1;
    }
    int n = snprintf(out + used, cap - used, "%s", query);
    return n < 0 || (size_t)n >= cap - used ? -ENAMETOOLONG : 0;
}

void
consul_kv_free(consul_kv *kv) {
    free(kv->value);
    *kv = (consul_kv){0};
}

static int
b64_digit(unsigned char ch) {
    if (ch >= 'A' && ch <= 'Z') {
        return ch - 'A';
    }
    if (ch >= 'a' && ch <= 'z') {
        return ch - 'a' + 26;
    }
    if (ch >= '0' && ch <= '9') {
        return ch - '0' + 52;
    }
    return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/* Standard base64 (padding optional) into a new NUL-terminated buffer. */
static int
b64_decode(const char *in, size_t n, char **out, size_t *len) {
    while (n > 0 && in[n - 1] == '=') {
        n--;
    }
    if (n % 4 == 1) {
        return -EINVAL;
    }
    char *buf = malloc(n / 4 * 3 + 3);
    if (buf == NULL) {
        return -ENOMEM;
    }
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        int d = b64_digit((unsigned char)in[i]);
        if (d < 0) {
            free(buf);
            return -EINVAL;
        }
        acc = (acc << 6) | (uint32_t)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    buf[o] = '\0';
    *out = buf;
    *len = o;
    return 0;
}

char *
consul_cli_base64(const char *data, size_t len) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (out == NULL) {
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)data;
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < len ? (uint32_t)s[i + 1] << 8 : 0);
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

int
consul_cli_kv_get(consul_cli *c, const char *key, consul_kv *out, rs_error *err) {
    *out = (consul_kv){0};
    char path[URL_MAX * 2];
    if (consul_cli_kv_path(key, "", path, sizeof(path)) != 0) {
        return rs_error_set(err, -ENAMETOOLONG, "KV key too long: %s", key);
    }
    consul_reply r;
    int rc = consul_cli_request(c, "GET", path, NULL, 0, &r, err);
    if (rc != 0) {
        return rc;
    }
    json_t *doc = NULL;
    if (r.status == 404) {
        rc = 0;
        goto out;
    }
    if (r.status != 200) {
        rc = consul_cli_http_error(c, "GET", path, &r, err);
        goto out;
    }
    json_error_t jerr;
    doc = json_loadb(r.body, r.len, 0, &jerr);
    json_t *e = json_is_array(doc) ? json_array_get(doc, 0) : NULL;
    json_t *k = json_object_get(e, "Key"), *v = json_object_get(e, "Value"),
           *mi = json_object_get(e, "ModifyIndex");
    if (!json_is_string(k) || strcmp(json_string_value(k), key) != 0 ||
        !(json_is_string(v) || json_is_null(v)) || !json_is_integer(mi) ||
        json_integer_value(mi) < 1) {
        rc = rs_error_set(err, -EPROTO, "Consul at %s: unexpected answer to GET %s",
                          consul_cli_url(c), path);
        goto out;
    }
    if (json_is_null(v)) {
        out->value = calloc(1, 1);
        rc = out->value == NULL ? rs_error_set(err, -ENOMEM, "out of memory") : 0;
    } else {
        rc = b64_decode(json_string_value(v), json_string_length(v), &out->value, &out->len);
        if (rc != 0) {
            rc = rs_error_set(err, rc, "Consul at %s: the value of %s is not base64",
                              consul_cli_url(c), key);
        }
    }
    if (rc == 0) {
        out->exists = true;
        out->modify_index = (uint64_t)json_integer_value(mi);
    }
out:
    json_decref(doc);
    consul_reply_free(&r);
    if (rc != 0) {
        consul_kv_free(out);
    }
    return rc;
}

int
consul_cli_kv_cas(consul_cli *c, const char *key, const char *value, size_t len, uint64_t cas,
                  bool *done, rs_error *err) {
    *done = false;
    char query[40], path[URL_MAX * 2];
    snprintf(query, sizeof(query), "?cas=%llu", (unsigned long long)cas);
    if (consul_cli_kv_path(key, query, path, sizeof(path)) != 0) {
        return rs_error_set(err, -ENAMETOOLONG, "KV key too long: %s", key);
    }
    const char *method = value != NULL ? "PUT" : "DELETE";
    consul_reply r;
    int rc = consul_cli_request(c, method, path, value, len, &r, err);
    if (rc != 0) {
        return rc;
    }
    const char *b = r.body;
    size_t n = r.len;
    while (n > 0 && isspace((unsigned char)b[n - 1])) {
        n--;
    }
    if (r.status != 200) {
        rc = consul_cli_http_error(c, method, path, &r, err);
    } else if (n == 4 && memcmp(b, "true", 4) == 0) {
        *done = true;
    } else if (!(n == 5 && memcmp(b, "false", 5) == 0)) {
        rc = rs_error_set(err, -EPROTO, "Consul at %s: unexpected answer to %s %s: %.*s",
                          consul_cli_url(c), method, key, (int)(n > 80 ? 80 : n), b);
    }
    consul_reply_free(&r);
    return rc;
}

int
consul_cli_kv_list(consul_cli *c, const char *prefix, consul_reply *r, rs_error *err) {
    char path[URL_MAX * 2];
    char key[URL_MAX];
    if ((size_t)snprintf(key, sizeof(key), "%s/", prefix) >= sizeof(key) ||
        consul_cli_kv_path(key, "?recurse", path, sizeof(path)) != 0) {
        return rs_error_set(err, -ENAMETOOLONG, "KV prefix too long: %s", prefix);
    }
    int rc = consul_cli_request(c, "GET", path, NULL, 0, r, err);
    if (rc != 0) {
        return rc;
    }
    if (r->status == 404) {
        free(r->body);
        r->body = strdup("[]");
        r->len = 2;
        r->status = 200;
        if (r->body == NULL) {
            consul_reply_free(r);
            return rs_error_set(err, -ENOMEM, "out of memory");
        }
    } else if (r->status != 200) {
        rc = consul_cli_http_error(c, "GET", path, r, err);
    } else if (r->acl_filtered) {
        rc = rs_error_set(err, -EACCES,
                          "Consul at %s left keys under %s/ out of the listing because the ACL "
                          "token may not read them (X-Consul-Results-Filtered-By-ACLs); use a "
                          "token with read access to the whole prefix",
                          consul_cli_url(c), prefix);
    }
    if (rc != 0) {
        consul_reply_free(r);
    }
    return rc;
}
