/* Socket commands (docs/protocol.md): one parsed request in, one RESP reply out, read
 * from the daemon's current view. No I/O: the server writes the reply. */
#ifndef RS_COMMANDS_H
#define RS_COMMANDS_H

#include <stdbool.h>

#include "daemon.h"
#include "rs_buf.h"
#include "rs_resp.h"

enum {
    CMD_PING,
    CMD_LOOKUP,
    CMD_LOOKUPN,
    CMD_MLOOKUP,
    CMD_ROUTE,
    CMD_RING,
    CMD_NODES,
    CMD_DUMP,
    CMD_SUBSCRIBE,
    CMD_UNSUBSCRIBE,
    CMD_INFO,
    CMD_COMMAND,
    CMD_QUIT,
    CMD_UNKNOWN,
    CMD_COUNT
};

/* What the connection must do after the reply. */
typedef enum cmd_action {
    CMD_ACT_NONE,
    CMD_ACT_CLOSE,       /* QUIT: flush, then close */
    CMD_ACT_SUBSCRIBE,   /* the connection is now a subscriber */
    CMD_ACT_UNSUBSCRIBE, /* no longer a subscriber */
} cmd_action;

typedef struct cmd_client {
    bool subscribed;
    size_t clients;     /* connected clients, for INFO */
    size_t subscribers; /* for INFO */
} cmd_client;

/* Execute cmd (argc >= 1) against d's view, appending exactly one reply to out. Returns
 * the follow-up action. Counts the command and any error reply in d->stats. A reply
 * that cannot be buffered (out of memory) returns CMD_ACT_CLOSE. */
cmd_action commands_execute(ringside *d, const rs_resp_cmd *cmd, const cmd_client *client,
                            rs_buf *out);

/* The push a subscriber receives on a change: ["message","ring","<epoch> <fp>"]. */
int commands_put_ring_message(const ringside *d, rs_buf *out);

const char *commands_name(int cmd);

#endif
