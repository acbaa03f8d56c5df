/* Unix-socket server: one connection state machine per client, a shared read buffer,
 * per-client limits, pub/sub pushes, graceful stop. */
#include "server.h"

#include <assert.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "commands.h"
#include "log.h"
#include "rs_buf.h"
#include "rs_resp.h"

#define READ_CHUNK (64 * 1024)
#define SWEEP_MS 1000
#define CLOSING_GRACE_MS 5000
#define MAX_EXTRA_ARGS 16 /* argv beyond max_keys_per_request the codec accepts */

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

typedef enum conn_state {
    CONN_OPEN,    /* reading and answering */
    CONN_CLOSING, /* not reading; closes once pending output is written */
    CONN_CLOSED,  /* uv_close issued; freed in on_conn_closed */
} conn_state;

typedef struct conn {
    uv_pipe_t pipe; /* first: the handle's data is the conn */
    server *srv;
    struct conn *prev, *next;
    conn_state state;
    bool subscribed;
    bool writing;
    uint64_t last_active_ms;
    uint64_t closing_since_ms;
    char *in; /* unparsed bytes carried between reads (usually NULL) */
    size_t in_len, in_cap;
    rs_buf out;      /* replies not yet handed to the kernel */
    rs_buf inflight; /* bytes of the uv_write in flight */
    uv_write_t wreq;
} conn;

struct server {
    ringside *d;
    uv_pipe_t listener;
    uv_timer_t sweep;
    conn *conns;
    size_t nconns;
    size_t nsubscribers;
    bool listening;
    bool stopping;
    int open_handles; /* listener + sweep timer */
    void (*done)(ringside *d);
    rs_resp_limits limits;
    rs_resp_arg *argv;
    size_t argv_cap;
    char *scratch;
    char readbuf[READ_CHUNK];
    bool readbuf_busy;
};

static void conn_close(conn *c);
static void conn_flush(conn *c);

static void
set_state(conn *c, conn_state next) {
    /* Legal moves: OPEN -> CLOSING -> CLOSED, OPEN -> CLOSED. */
    assert(next > c->state);
    c->state = next;
}

static void update_limits(server *s);

int
server_reconfigure(server *s) {
    size_t cap = s->d->cfg.max_keys_per_request + MAX_EXTRA_ARGS;
    if (cap != s->argv_cap) {
        /* Only used while a request is parsed and answered, never across callbacks. */
        rs_resp_arg *argv = realloc(s->argv, cap * sizeof(*argv));
        if (argv == NULL) {
            return -ENOMEM;
        }
        s->argv = argv;
        s->argv_cap = cap;
    }
    update_limits(s);
    return 0;
}

static void
update_limits(server *s) {
    const rs_config *cfg = &s->d->cfg;
    rs_resp_limits_init(&s->limits);
    s->limits.max_args = cfg->max_keys_per_request + MAX_EXTRA_ARGS;
    if (s->limits.max_args > s->argv_cap) {
        s->limits.max_args = s->argv_cap;
    }
    /* Keys somewhat over max_key_bytes still parse, so they get a friendly error and
     * the connection lives; far beyond it is a protocol error. */
    s->limits.max_bulk_len = (size_t)cfg->max_key_bytes * 2 + 1024;
    s->limits.max_request_len = cfg->max_request_bytes;
}

static void
maybe_done(server *s) {
    if (s->stopping && s->nconns == 0 && s->open_handles == 0 && s->done != NULL) {
        void (*done)(ringside *) = s->done;
        s->done = NULL;
        done(s->d);
    }
}

static void
on_conn_closed(uv_handle_t *h) {
    conn *c = h->data;
    server *s = c->srv;
    free(c->in);
    rs_buf_free(&c->out);
    rs_buf_free(&c->inflight);
    free(c);
    maybe_done(s);
}

static void
conn_unlink(conn *c) {
    server *s = c->srv;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
    s->nconns--;
    if (c->subscribed) {
        s->nsubscribers--;
        c->subscribed = false;
    }
}

static void
conn_close(conn *c) {
    if (c->state == CONN_CLOSED) {
        return;
    }
    set_state(c, CONN_CLOSED);
    conn_unlink(c);
    uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

/* Stop reading and close once every pending reply is written. */
static void
conn_finish(conn *c) {
    if (c->state != CONN_OPEN) {
        return;
    }
    uv_read_stop((uv_stream_t *)&c->pipe);
    set_state(c, CONN_CLOSING);
    c->closing_since_ms = daemon_now_ms(c->srv->d);
    conn_flush(c);
}

static size_t
unsent(const conn *c) {
    return rs_buf_len(&c->out) + rs_buf_len(&c->inflight);
}

static void
on_write(uv_write_t *req, int status) {
    conn *c = container_of(req, conn, wreq);
    c->writing = false;
    rs_buf_consume(&c->inflight, rs_buf_len(&c->inflight));
    if (c->state == CONN_CLOSED) {
        return;
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_flush(c);
}

static void
conn_flush(conn *c) {
    if (c->state == CONN_CLOSED || c->writing) {
        return;
    }
    while (rs_buf_len(&c->out) > 0) {
        uv_buf_t b = uv_buf_init((char *)rs_buf_data(&c->out), (unsigned)rs_buf_len(&c->out));
        int n = uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
        if (n == UV_EAGAIN) {
            break;
        }
        if (n < 0) {
            conn_close(c);
            return;
        }
        rs_buf_consume(&c->out, (size_t)n);
    }
    if (rs_buf_len(&c->out) > 0) {
        /* The kernel is full: hand the rest to libuv and keep appending to out. */
        rs_buf tmp = c->inflight;
        c->inflight = c->out;
        c->out = tmp;
        uv_buf_t b =
            uv_buf_init((char *)rs_buf_data(&c->inflight), (unsigned)rs_buf_len(&c->inflight));
        if (uv_write(&c->wreq, (uv_stream_t *)&c->pipe, &b, 1, on_write) != 0) {
            conn_close(c);
            return;
        }
        c->writing = true;
        return;
    }
    if (c->state == CONN_CLOSING) {
        conn_close(c);
    }
}

/* Close a client whose unread output passed the limit; true if it was closed. */
static bool
check_output_limit(conn *c) {
    server *s = c->srv;
    if (unsent(c) <= s->d->cfg.max_output_bytes) {
        return false;
    }
    s->d->stats.slow_clients_closed++;
    log_line l;
    log_begin(&l, RS_LOG_WARN, "client_closed");
    log_str(&l, "reason", "output limit: client does not read its replies");
    log_u64(&l, "unsent_bytes", unsent(c));
    log_u64(&l, "limit", s->d->cfg.max_output_bytes);
    log_end(&l);
    conn_close(c);
    return true;
}

/* Parse and answer every complete request in buf; returns bytes consumed. */
static size_t
conn_process(conn *c, const char *buf, size_t len) {
    server *s = c->srv;
    size_t off = 0;
    while (c->state == CONN_OPEN && off < len) {
        rs_resp_cmd cmd;
        rs_resp_error perr;
        size_t used = 0;
        rs_resp_cmd_init(&cmd, s->argv, s->argv_cap, s->scratch, s->limits.max_inline_len);
        int rc = rs_resp_parse(buf + off, len - off, &s->limits, &cmd, &used, &perr);
        if (rc == -EAGAIN) {
            break;
        }
        if (rc != 0) {
            s->d->stats.protocol_errors++;
            s->d->stats.errors++;
            log_line l;
            log_begin(&l, RS_LOG_INFO, "protocol_error");
            log_str(&l, "reason", perr.msg);
            log_end(&l);
            rs_resp_put_errorf(&c->out, "ERR %s", perr.msg);
            conn_finish(c);
            return len;
        }
        off += used;
        if (cmd.argc == 0) {
            continue;
        }
        cmd_client info = {
            .subscribed = c->subscribed, .clients = s->nconns, .subscribers = s->nsubscribers};
        cmd_action act = commands_execute(s->d, &cmd, &info, &c->out);
        switch (act) {
        case CMD_ACT_CLOSE:
            conn_finish(c);
            return len;
        case CMD_ACT_SUBSCRIBE:
            if (!c->subscribed) {
                c->subscribed = true;
                s->nsubscribers++;
            }
            break;
        case CMD_ACT_UNSUBSCRIBE:
            if (c->subscribed) {
                c->subscribed = false;
                s->nsubscribers--;
            }
            break;
        case CMD_ACT_NONE:
            break;
        }
        if (check_output_limit(c)) {
            return len;
        }
    }
    return off;
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    conn *c = h->data;
    server *s = c->srv;
    (void)suggested;
    if (c->in_len == 0 && !s->readbuf_busy) {
        /* Common case: nothing carried over, read into the shared buffer. */
        s->readbuf_busy = true;
        *buf = uv_buf_init(s->readbuf, sizeof(s->readbuf));
        return;
    }
    if (c->in_cap - c->in_len < READ_CHUNK / 4) {
        size_t cap = c->in_cap ? c->in_cap * 2 : READ_CHUNK;
        char *p = realloc(c->in, cap);
        if (p == NULL) {
            *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
            return;
        }
        c->in = p;
        c->in_cap = cap;
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void
on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    conn *c = stream->data;
    server *s = c->srv;
    bool shared = buf->base == s->readbuf;
    if (shared) {
        s->readbuf_busy = false;
    }
    if (nread < 0) {
        /* EOF or error: nothing more will come; answers already queued still go out. */
        if (c->state == CONN_OPEN) {
            conn_finish(c);
        }
        return;
    }
    if (nread == 0 || c->state != CONN_OPEN) {
        return;
    }
    c->last_active_ms = daemon_now_ms(s->d);
    if (shared) {
        size_t used = conn_process(c, buf->base, (size_t)nread);
        size_t left = (size_t)nread - used;
        if (left > 0 && c->state == CONN_OPEN) {
            /* A partial request: keep its bytes until the rest arrives. */
            size_t cap = left > READ_CHUNK ? left : READ_CHUNK;
            char *p = malloc(cap);
            if (p == NULL) {
                conn_close(c);
                return;
            }
            memcpy(p, buf->base + used, left);
            free(c->in);
            c->in = p;
            c->in_len = left;
            c->in_cap = cap;
        }
    } else {
        c->in_len += (size_t)nread;
        size_t used = conn_process(c, c->in, c->in_len);
        if (c->state == CONN_CLOSED) {
            return;
        }
        if (used >= c->in_len) {
            free(c->in);
            c->in = NULL;
            c->in_len = c->in_cap = 0;
        } else if (used > 0) {
            memmove(c->in, c->in + used, c->in_len - used);
            c->in_len -= used;
        }
    }
    conn_flush(c);
}

static bool
peer_allowed(server *s, uv_pipe_t *pipe) {
    const rs_config *cfg = &s->d->cfg;
    if (cfg->n_allow_uids == 0 && cfg->n_allow_gids == 0) {
        return true;
    }
    uv_os_fd_t fd;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (uv_fileno((uv_handle_t *)pipe, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        return false;
    }
    for (size_t i = 0; i < cfg->n_allow_uids; i++) {
        if (cfg->allow_uids[i] == cred.uid) {
            return true;
        }
    }
    for (size_t i = 0; i < cfg->n_allow_gids; i++) {
        if (cfg->allow_gids[i] == cred.gid) {
            return true;
        }
    }
    log_line l;
    log_begin(&l, RS_LOG_WARN, "client_rejected");
    log_str(&l, "reason", "peer credentials not allowed");
    log_u64(&l, "uid", cred.uid);
    log_u64(&l, "gid", cred.gid);
    log_u64(&l, "pid", (uint64_t)cred.pid);
    log_end(&l);
    return false;
}

static void
reject(conn *c, const char *msg) {
    c->srv->d->stats.connections_rejected++;
    rs_resp_put_error(&c->out, msg);
    set_state(c, CONN_CLOSING);
    c->closing_since_ms = daemon_now_ms(c->srv->d);
    conn_flush(c);
}

static void
on_connection(uv_stream_t *listener, int status) {
    server *s = container_of((uv_pipe_t *)listener, server, listener);
    if (status < 0 || s->stopping) {
        return;
    }
    conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return;
    }
    c->srv = s;
    rs_buf_init(&c->out);
    rs_buf_init(&c->inflight);
    uv_pipe_init(s->d->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->nconns++;
    if (uv_accept(listener, (uv_stream_t *)&c->pipe) != 0) {
        conn_close(c);
        return;
    }
    s->d->stats.connections_total++;
    c->last_active_ms = daemon_now_ms(s->d);
    if (s->nconns > s->d->cfg.max_clients) {
        log_msg(RS_LOG_WARN, "client_rejected", "reason", "max number of clients reached");
        reject(c, "ERR max number of clients reached");
        return;
    }
    if (!peer_allowed(s, &c->pipe)) {
        reject(c, "ERR permission denied");
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0) {
        conn_close(c);
    }
}

static void
on_sweep(uv_timer_t *t) {
    server *s = container_of(t, server, sweep);
    uint64_t now = daemon_now_ms(s->d);
    uint32_t idle = s->d->cfg.idle_timeout_ms;
    conn *next;
    for (conn *c = s->conns; c != NULL; c = next) {
        next = c->next;
        if (c->state == CONN_CLOSING && now - c->closing_since_ms > CLOSING_GRACE_MS) {
            conn_close(c); /* a client that never reads its last reply */
        } else if (c->state == CONN_OPEN && idle > 0 && !c->subscribed &&
                   now - c->last_active_ms > idle && unsent(c) == 0) {
            s->d->stats.idle_clients_closed++;
            log_msg(RS_LOG_DEBUG, "client_closed", "reason", "idle timeout");
            conn_close(c);
        }
    }
}

/* A socket file at path: replace it if stale, refuse if a live server answers. */
static int
check_existing_socket(const char *path, rs_error *err) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) {
            return 0;
        }
        snprintf(err->msg, sizeof(err->msg), "%s: %s", path, strerror(errno));
        return -errno;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err->msg, sizeof(err->msg),
                 "%s exists and is not a socket; refusing to replace it", path);
        return -EEXIST;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err->msg, sizeof(err->msg), "socket: %s", strerror(errno));
        return -errno;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    int saved = errno;
    close(fd);
    if (rc == 0) {
        snprintf(err->msg, sizeof(err->msg),
                 "%s: another ringside is already answering on this socket", path);
        return -EADDRINUSE;
    }
    if (saved != ECONNREFUSED && saved != ENOENT) {
        snprintf(err->msg, sizeof(err->msg), "%s: %s", path, strerror(saved));
        return -saved;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(err->msg, sizeof(err->msg), "removing stale socket %s: %s", path, strerror(errno));
        return -errno;
    }
    log_msg(RS_LOG_INFO, "stale_socket_removed", "path", path);
    return 0;
}

static int
make_parent_dir(const char *path, rs_error *err) {
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) {
        return 0;
    }
    *slash = '\0';
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err->msg, sizeof(err->msg), "creating %s: %s", dir, strerror(errno));
        return -errno;
    }
    return 0;
}

int
server_start(ringside *d, rs_error *err) {
    const rs_config *cfg = &d->cfg;
    server *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return -ENOMEM;
    }
    s->d = d;
    s->argv_cap = cfg->max_keys_per_request + MAX_EXTRA_ARGS;
    s->argv = calloc(s->argv_cap, sizeof(*s->argv));
    rs_resp_limits_init(&s->limits);
    s->scratch = malloc(s->limits.max_inline_len);
    if (s->argv == NULL || s->scratch == NULL) {
        free(s->argv);
        free(s->scratch);
        free(s);
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return -ENOMEM;
    }
    update_limits(s);
    int rc;
    if ((rc = make_parent_dir(cfg->socket_path, err)) != 0 ||
        (rc = check_existing_socket(cfg->socket_path, err)) != 0) {
        free(s->argv);
        free(s->scratch);
        free(s);
        return rc;
    }
    uv_pipe_init(d->loop, &s->listener, 0);
    s->listener.data = s;
    /* Bind with a tight umask so the socket is never briefly open to others. */
    mode_t old = umask(0177);
    rc = uv_pipe_bind(&s->listener, cfg->socket_path);
    umask(old);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
    }
    if (rc == 0 && chmod(cfg->socket_path, cfg->socket_mode) != 0) {
        rc = -errno;
    }
    if (rc == 0 && cfg->socket_group[0] != '\0') {
        struct group *g = getgrnam(cfg->socket_group);
        if (g == NULL) {
            snprintf(err->msg, sizeof(err->msg), "listen.group: no group named '%s'",
                     cfg->socket_group);
            rc = -ENOENT;
        } else if (chown(cfg->socket_path, (uid_t)-1, g->gr_gid) != 0) {
            rc = -errno;
        }
    }
    if (rc != 0) {
        if (err->msg[0] == '\0') {
            snprintf(err->msg, sizeof(err->msg), "listening on %s: %s", cfg->socket_path,
                     uv_strerror(rc));
        }
        /* Nothing else runs yet: finish closing the listener right here. */
        uv_close((uv_handle_t *)&s->listener, NULL);
        uv_run(d->loop, UV_RUN_NOWAIT);
        server_free(s);
        return rc;
    }
    s->open_handles = 1;
    d->srv = s;
    s->listening = true;
    uv_timer_init(d->loop, &s->sweep);
    s->sweep.data = s;
    s->open_handles++;
    uv_timer_start(&s->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    return 0;
}

static void
on_server_handle_closed(uv_handle_t *h) {
    server *s = h->data;
    s->open_handles--;
    maybe_done(s);
}

void
server_stop(server *s, void (*done)(ringside *d)) {
    s->stopping = true;
    s->done = done;
    if (s->listening) {
        s->listening = false;
        uv_close((uv_handle_t *)&s->listener, on_server_handle_closed);
        uv_close((uv_handle_t *)&s->sweep, on_server_handle_closed);
    }
    conn *next;
    for (conn *c = s->conns; c != NULL; c = next) {
        next = c->next;
        if (c->state == CONN_OPEN) {
            conn_finish(c);
        }
    }
    maybe_done(s);
}

void
server_force_close(server *s) {
    while (s->conns != NULL) {
        conn_close(s->conns);
    }
}

void
server_publish(server *s) {
    conn *next;
    for (conn *c = s->conns; c != NULL; c = next) {
        next = c->next;
        if (c->subscribed && c->state == CONN_OPEN) {
            if (commands_put_ring_message(s->d, &c->out) != 0) {
                conn_close(c);
                continue;
            }
            if (!check_output_limit(c)) {
                conn_flush(c);
            }
        }
    }
}

size_t
server_client_count(const server *s) {
    return s->nconns;
}

size_t
server_subscriber_count(const server *s) {
    return s->nsubscribers;
}

void
server_free(server *s) {
    if (s != NULL) {
        free(s->argv);
        free(s->scratch);
        free(s);
    }
}
