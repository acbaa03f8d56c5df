/* Blocking Consul HTTP for ringctl: KV reads and check-and-set writes over libcurl's easy
 * interface (a CLI may block; the daemon uses consul.h's multi interface instead). */
#ifndef RS_CONSUL_CLI_H
#define RS_CONSUL_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rs_error.h"

#define CONSUL_CLI_DEFAULT_ADDRESS "http://127.0.0.1:8500"
#define CONSUL_CLI_MAX_ADDRESSES 8

/* Where and how to reach Consul. A NULL field falls back to Consul's environment:
 *   address     CONSUL_HTTP_ADDR (comma-separated list allowed; "host:port" without a
 *               scheme is http, or https when CONSUL_HTTP_SSL=true; "unix:///path" for
 *               an agent's Unix socket), else CONSUL_CLI_DEFAULT_ADDRESS
 *   token_file  CONSUL_HTTP_TOKEN_FILE, else the token itself from CONSUL_HTTP_TOKEN
 *   ca_file     CONSUL_CACERT (CONSUL_CAPATH, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY and
 *               CONSUL_HTTP_SSL_VERIFY=false are honoured too) */
typedef struct consul_cli_settings {
    const char *address;
    const char *token_file;
    const char *ca_file;
} consul_cli_settings;

typedef struct consul_cli consul_cli;

/* An HTTP answer: any status. body is NUL-terminated (owned; consul_reply_free). */
typedef struct consul_reply {
    long status;
    char *body;
    size_t len;
    uint64_t index;    /* X-Consul-Index, 0 when absent */
    bool acl_filtered; /* X-Consul-Results-Filtered-By-ACLs: true */
} consul_reply;

void consul_reply_free(consul_reply *r); /* accepts zeroed */

/* Resolve the settings (reading the token file) and prepare a client. Returns 0, or a
 * negative code with err (bad address, unreadable token file, out of memory). The token
 * is sent as X-Consul-Token and never appears in any message. */
int consul_cli_new(const consul_cli_settings *s, consul_cli **out, rs_error *err);
void consul_cli_free(consul_cli *c); /* accepts NULL */

/* The agent URL requests go to ("http://127.0.0.1:8500"), for messages. */
const char *consul_cli_url(const consul_cli *c);

/* One request: method "GET", "PUT" or "DELETE"; path_query starts with "/v1/". body may
 * be NULL. With several addresses, the next one is tried only when a connection could not
 * be made (the request was never sent), and a working one is kept. Returns 0 when Consul
 * answered (any status: see r->status), or -EIO with err "cannot reach Consul at URL:
 * <why>", -EFBIG (answer over RS_KV_MAX_BODY), -ENOMEM. */
int consul_cli_request(consul_cli *c, const char *method, const char *path_query, const char *body,
                       size_t len, consul_reply *r, rs_error *err);

/* err = "Consul at URL answered HTTP <status> to <METHOD> <path>: <Consul's message>"
 * (message trimmed and made printable, query string left out). Returns -EACCES for 403
 * (ACL: permission denied, token not found), else -EIO. */
int consul_cli_http_error(const consul_cli *c, const char *method, const char *path,
                          const consul_reply *r, rs_error *err);

/* "/v1/kv/<key>" with each path segment of key percent-encoded, then query (may be "" or
 * "?cas=12"). Returns 0, or -ENAMETOOLONG / -ENOMEM. */
int consul_cli_kv_path(const char *key, const char *query, char *out, size_t cap);

/* One KV entry. value is NUL-terminated (owned; consul_kv_free), "" for a null Value. */
typedef struct consul_kv {
    bool exists;
    char *value;
    size_t len;
    uint64_t modify_index;
} consul_kv;

void consul_kv_free(consul_kv *kv); /* accepts zeroed */

/* GET /v1/kv/<key> (consistent read). A missing key gives exists = false and returns 0.
 * Returns 0, or a negative code with err: -EACCES (HTTP 403), -EIO (unreachable, other
 * HTTP errors), -EPROTO (malformed answer), -ENOMEM. */
int consul_cli_kv_get(consul_cli *c, const char *key, consul_kv *out, rs_error *err);

/* PUT value to /v1/kv/<key>?cas=<cas> (cas 0: only if the key does not exist), or DELETE
 * /v1/kv/<key>?cas=<cas> when value is NULL. *done is Consul's answer: false when the key
 * changed since cas (nothing written). Returns 0, or a negative code with err. */
int consul_cli_kv_cas(consul_cli *c, const char *key, const char *value, size_t len, uint64_t cas,
                      bool *done, rs_error *err);

/* GET /v1/kv/<prefix>/?recurse (consistent read): the listing rs_kv_to_membership takes,
 * "[]" for an empty prefix (404). Fails (-EACCES, err) when Consul says the ACL token
 * filtered the listing, since a partial node list must not be mistaken for the ring.
 * Returns 0 or a negative code with err. */
int consul_cli_kv_list(consul_cli *c, const char *prefix, consul_reply *r, rs_error *err);

/* Standard base64 of data[0..len), NUL-terminated, for the caller to free; NULL on ENOMEM. */
char *consul_cli_base64(const char *data, size_t len);

#endif
