/* Consul blocking-query watches over libcurl's multi interface inside the libuv loop: no
 * thread ever blocks on HTTP. One consul_client holds the agent addresses, TLS and ACL
 * settings; each consul_watch follows one endpoint by Consul's blocking-query rules. */
#ifndef RS_CONSUL_H
#define RS_CONSUL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "rs_error.h"

#define CONSUL_MAX_ADDRESSES 8

typedef struct consul_settings {
    char addresses[CONSUL_MAX_ADDRESSES][256]; /* "http://127.0.0.1:8500", "https://..." */
    size_t n_addresses;
    char token[512];     /* ACL token ("" = none); sent as X-Consul-Token, never logged */
    char ca_file[256];   /* CA bundle for https ("" = system default) */
    char cert_file[256]; /* client certificate (optional) */
    char key_file[256];
    bool stale;            /* ?stale reads */
    uint32_t wait_ms;      /* blocking query wait, e.g. 300000 */
    uint32_t max_stale_ms; /* X-Consul-LastContact beyond this: the data is not trusted */
    double rate;           /* watch loop token bucket: requests per second ... */
    double burst;          /* ... and burst */
    uint64_t backoff_base_ms, backoff_cap_ms; /* errors: 100 ms .. 1 s by default */
    uint32_t connect_timeout_ms;
} consul_settings;

/* Defaults: no address, stale, wait 5 min, max stale 10 s, rate 10/s burst 20, backoff
 * 100 ms .. 1 s, connect timeout 2 s. */
void consul_settings_init(consul_settings *s);

/* Fill what Consul's environment variables say (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,
 * CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY,
 * CONSUL_HTTP_SSL) over s. CONSUL_HTTP_ADDR may omit the scheme (http assumed, https
 * with CONSUL_HTTP_SSL=true) and may list several addresses separated by commas.
 * Returns 0 or a negative code with err (e.g. an unreadable token file). */
int consul_settings_from_env(consul_settings *s, rs_error *err);

/* Read an ACL token file (first line, trimmed, at most 511 bytes). 0 or -errno. */
int consul_read_token_file(const char *path, char *out, size_t cap, rs_error *err);

typedef struct consul_client consul_client;
typedef struct consul_watch consul_watch;

/* Counters per watch, for INFO and metrics. */
typedef struct consul_watch_stats {
    uint64_t requests;
    uint64_t responses_by_class[6]; /* index: status / 100 (0 = transport error) */
    uint64_t errors;
    uint64_t changes;         /* bodies handed to on_change */
    uint64_t unchanged;       /* good answer, content identical to the last delivered: no
                                 callback (a blocking query that timed out counts too) */
    uint64_t index_resets;    /* index went backwards */
    int64_t last_contact_ms;  /* X-Consul-LastContact of the last response, -1 unknown */
    uint64_t last_success_ms; /* loop time of the last good response, 0 never */
    uint64_t index;           /* X-Consul-Index we block on */
    char last_error[256];     /* "" when the last request succeeded */
    const char *address;      /* the agent used last */
    /* Added by the watcher's implementation: */
    uint64_t retries;         /* requests sent after an error's backoff */
    uint64_t last_backoff_ms; /* delay armed after the last error (Retry-After or backoff) */
    uint64_t throttled;       /* requests that had to wait for the token bucket */
    uint64_t failovers;       /* moves to the next agent address */
} consul_watch_stats;

/* A new body for the watched endpoint (content differs from the last one delivered).
 * status is the HTTP status (200, or 404 for an empty KV prefix: body is then "[]").
 * body is valid during the call only. */
typedef void (*consul_change_cb)(consul_watch *w, int status, const char *body, size_t len,
                                 uint64_t index, void *arg);
/* A failure the watch will retry after backoff (transport error, 5xx, 429, 403, ACL-
 * filtered results, a stale answer, a body too large); message says what happened and
 * never contains the token. */
typedef void (*consul_error_cb)(consul_watch *w, const char *message, void *arg);

/* Create a client on loop (curl_global_init must have been called by main). The
 * settings are copied. Returns 0 or a negative code with err. */
int consul_client_new(uv_loop_t *loop, const consul_settings *s, consul_client **out,
                      rs_error *err);

/* Start watching path (e.g. "/v1/kv/ringside/sessions/?recurse" or
 * "/v1/health/service/redis-cache"); the watch adds index, wait and stale parameters.
 * The first callback comes after the first successful response. */
int consul_watch_start(consul_client *c, const char *name, const char *path,
                       consul_change_cb on_change, consul_error_cb on_error, void *arg,
                       consul_watch **out);

const consul_watch_stats *consul_watch_get_stats(const consul_watch *w);
const char *consul_watch_name(const consul_watch *w);

/* Stop every watch and release the client; done runs once all handles are closed. */
void consul_client_close(consul_client *c, void (*done)(void *arg), void *arg);

#endif
