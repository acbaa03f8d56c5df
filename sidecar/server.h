/* The Unix-socket server: accepts app connections, parses RESP requests, answers them
 * from the daemon's current view, enforces per-client limits, pushes ring changes. */
#ifndef RS_SERVER_H
#define RS_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon.h"

/* Create the socket (replacing a stale file, refusing when a live ringside answers on
 * it), apply mode/group, and start accepting. Returns 0 or a negative code with err. */
int server_start(ringside *d, rs_error *err);

/* Stop accepting, let every connection finish its pending replies, then close. done()
 * runs once everything is closed (within the deadline the daemon sets). */
void server_stop(server *s, void (*done)(ringside *d));

/* Close every connection now (the stop deadline passed). */
void server_force_close(server *s);

/* Take the limits of a reloaded config (keys per request, key and request bytes).
 * Returns 0, or -ENOMEM with the previous limits kept. */
int server_reconfigure(server *s);

/* Push "<epoch> <fingerprint>" to every SUBSCRIBE ring client. */
void server_publish(server *s);

/* Free the server after its handles have closed (or when server_start failed). */
void server_free(server *s);

size_t server_client_count(const server *s);
size_t server_subscriber_count(const server *s);

#endif
