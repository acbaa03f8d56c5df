/* The HTTP endpoint (SPEC §7): probes, JSON introspection and Prometheus metrics on a
 * TCP address, served from the daemon's loop. A small, bounded HTTP/1.1 server: GET and
 * HEAD only, one request per connection, every response with Content-Length. */
#ifndef RS_HTTP_H
#define RS_HTTP_H

#include "daemon.h"
#include "rs_error.h"

typedef struct http_server http_server;

/* Start listening on d->cfg.http_address ("host:port": an IPv4 literal, an IPv6 literal
 * in brackets, or "localhost"; port 0 picks a free one) and store the server in
 * d->http. With http.enabled false nothing listens, d->http stays NULL and 0 is
 * returned. Returns 0, or a negative code with err saying what and why ("http.address
 * 127.0.0.1:9317: address already in use"); nothing is left open on failure. */
int http_start(ringside *d, rs_error *err);

/* Stop accepting and close every connection: those still sending a request at once,
 * those being answered once their response is written (1 s at most). Once every handle
 * is closed the server frees itself, sets d->http to NULL and calls done(d) once (done
 * may be NULL). h must not be used after the call. */
void http_stop(http_server *h, void (*done)(ringside *d));

/* The address actually bound ("127.0.0.1:9317", "[::1]:9317"): the configured one with
 * a port 0 resolved. Valid until http_stop. */
const char *http_bound_address(const http_server *h);

#endif
