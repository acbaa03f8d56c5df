/* The Consul watcher against a scripted fake agent (tests/tools/fake_consul.py): blocking-
 * query rules, errors and retries, failover, token handling, close with work in flight. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <uv.h>

#include "consul.h"
#include "rs_membership.h"

#ifndef RS_SOURCE_DIR_DEFAULT
#define RS_SOURCE_DIR_DEFAULT "."
#endif

extern char **environ;

#define KV_PATH "/v1/kv/ringside/t/?recurse"
#define DEADLINE_MS 10000 /* per wait: generous for valgrind, never reached when passing */
#define BACKOFF_BASE 20
#define BACKOFF_CAP 100
#define TOKEN "s3cr3t-t0ken-4f2a"

/* ---- the fake agent ---------------------------------------------------------------------- */

typedef struct fake {
    pid_t pid;
    int port;
} fake;

static int
fake_start(fake *fk, const char *script) {
    const char *src = getenv("RS_SOURCE_DIR");
    if (src == NULL || src[0] == '\0') {
        src = RS_SOURCE_DIR_DEFAULT;
    }
    char tool[PATH_MAX];
    snprintf(tool, sizeof(tool), "%s/tests/tools/fake_consul.py", src);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        return -errno;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    char *argv[] = {"/usr/bin/python3", tool, "--script-json", (char *)script, NULL};
    int rc = posix_spawn(&fk->pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        fk->pid = 0;
        return -rc;
    }
    /* The first line is "PORT <n>". */
    char line[64];
    size_t n = 0;
    while (n + 1 < sizeof(line)) {
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        if (poll(&pfd, 1, 10000) <= 0) {
            break;
        }
        ssize_t r = read(p[0], line + n, 1);
        if (r <= 0) {
            break;
        }
        if (line[n++] == '\n') {
            break;
        }
    }
    line[n] = '\0';
    close(p[0]);
    if (sscanf(line, "PORT %d", &fk->port) != 1) {
        return -EIO;
    }
    return 0;
}

static void
fake_stop(fake *fk) {
    if (fk->pid > 0) {
        kill(fk->pid, SIGTERM);
        waitpid(fk->pid, NULL, 0);
        fk->pid = 0;
    }
}

typedef struct grow {
    char *p;
    size_t n;
} grow;

static size_t
grow_write(char *data, size_t size, size_t nmemb, void *userp) {
    grow *g = userp;
    size_t len = size * nmemb;
    char *q = realloc(g->p, g->n + len + 1);
    if (q == NULL) {
        return 0;
    }
    memcpy(q + g->n, data, len);
    g->n += len;
    q[g->n] = '\0';
    g->p = q;
    return len;
}

/* What the fake recorded: a JSON array (caller json_decref's), NULL on failure. */
static json_t *
fake_requests(const fake *fk) {
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/_requests", fk->port);
    grow g = {0};
    CURL *e = curl_easy_init();
    if (e == NULL) {
        return NULL;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, grow_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &g);
    CURLcode rc = curl_easy_perform(e);
    curl_easy_cleanup(e);
    json_t *j = rc == CURLE_OK && g.p != NULL ? json_loads(g.p, 0, NULL) : NULL;
    free(g.p);
    return j;
}

/* Request i's query parameter: its value ("" when valueless), or NULL when absent. */
static const char *
req_param(json_t *reqs, size_t i, const char *name) {
    json_t *v = json_object_get(json_object_get(json_array_get(reqs, i), "params"), name);
    return v != NULL ? json_string_value(json_array_get(v, 0)) : NULL;
}

static const char *
req_header(json_t *reqs, size_t i, const char *name) {
    json_t *h = json_object_get(json_array_get(reqs, i), "headers");
    const char *k;
    json_t *v;
    json_object_foreach(h, k, v) {
        if (strcasecmp(k, name) == 0) {
            return json_string_value(v);
        }
    }
    return NULL;
}

/* ---- fixture ------------------------------------------------------------------------------ */

#define MAX_ERRORS 16

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t deadline, tick;
    bool expired;
    fake srv;
    consul_settings s;
    consul_client *c;
    consul_watch *w;
    bool close_called;
    int closed_done;
    bool close_in_change;
    /* What the callbacks saw. */
    int changes;
    int last_status;
    uint64_t last_index;
    char *last_body;
    size_t last_len;
    int errors;
    char error_msgs[MAX_ERRORS][256];
    uint64_t error_backoffs[MAX_ERRORS];
} fx;

static void
on_closed(void *arg) {
    fx *f = arg;
    f->closed_done++;
}

static void
on_change(consul_watch *w, int status, const char *body, size_t len, uint64_t index, void *arg) {
    fx *f = arg;
    (void)w;
    f->changes++;
    f->last_status = status;
    f->last_index = index;
    free(f->last_body);
    f->last_body = malloc(len + 1);
    assert_non_null(f->last_body);
    memcpy(f->last_body, body, len);
    f->last_body[len] = '\0';
    f->last_len = len;
    if (f->close_in_change) {
        consul_client_close(f->c, on_closed, f);
        f->close_called = true;
    }
}

static void
on_error(consul_watch *w, const char *msg, void *arg) {
    fx *f = arg;
    assert_false(f->close_called); /* nothing is reported once the client closes */
    if (f->errors < MAX_ERRORS) {
        snprintf(f->error_msgs[f->errors], sizeof(f->error_msgs[0]), "%s", msg);
        f->error_backoffs[f->errors] = consul_watch_get_stats(w)->last_backoff_ms;
    }
    f->errors++;
}

static void
on_deadline(uv_timer_t *t) {
    fx *f = t->data;
    f->expired = true;
}

static void
on_tick(uv_timer_t *t) {
    (void)t; /* wakes the loop so that conditions on outside state are re-checked */
}

static int
setup(void **state) {
    fx *f = calloc(1, sizeof(*f));
    if (f == NULL || uv_loop_init(&f->loop) != 0) {
        free(f);
        return -1;
    }
    uv_timer_init(&f->loop, &f->deadline);
    uv_timer_init(&f->loop, &f->tick);
    f->deadline.data = f;
    consul_settings_init(&f->s);
    f->s.wait_ms = 1000;
    f->s.backoff_base_ms = BACKOFF_BASE;
    f->s.backoff_cap_ms = BACKOFF_CAP;
    f->s.connect_timeout_ms = 1000;
    f->s.rate = 1000;
    f->s.burst = 1000;
    *state = f;
    return 0;
}

static int
teardown(void **state) {
    fx *f = *state;
    if (f->c != NULL && !f->close_called) {
        consul_client_close(f->c, on_closed, f);
        f->close_called = true;
    }
    uv_close((uv_handle_t *)&f->deadline, NULL);
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int closed = f->closed_done;
    int expected = f->c != NULL ? 1 : 0;
    int lc = uv_loop_close(&f->loop);
    fake_stop(&f->srv);
    free(f->last_body);
    free(f);
    assert_int_equal(closed, expected);
    assert_int_equal(lc, 0);
    return 0;
}

typedef bool (*cond_fn)(fx *f, const void *arg);

/* Run the loop until cond holds; false if the deadline passed first. */
static bool
run_until(fx *f, cond_fn cond, const void *arg) {
    f->expired = false;
    uv_timer_start(&f->deadline, on_deadline, DEADLINE_MS, 0);
    uv_timer_start(&f->tick, on_tick, 10, 10);
    while (!cond(f, arg) && !f->expired) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&f->deadline);
    uv_timer_stop(&f->tick);
    return cond(f, arg);
}

static int want_n; /* the count the simple conditions wait for */

static bool
cond_changes(fx *f, const void *arg) {
    (void)arg;
    return f->changes >= want_n;
}

static bool
cond_fake_requests(fx *f, const void *arg) {
    (void)arg;
    json_t *r = fake_requests(&f->srv);
    bool ok = r != NULL && json_array_size(r) >= (size_t)want_n;
    json_decref(r);
    return ok;
}

static bool
cond_closed(fx *f, const void *arg) {
    (void)arg;
    return f->closed_done > 0;
}

#define WAIT_CHANGES(f, n) (want_n = (n), assert_true(run_until((f), cond_changes, NULL)))

static void
use_fake(fx *f, const char *script) {
    assert_int_equal(fake_start(&f->srv, script), 0);
    snprintf(f->s.addresses[f->s.n_addresses], sizeof(f->s.addresses[0]), "http://127.0.0.1:%d",
             f->srv.port);
    f->s.n_addresses++;
}

static void
start_watch(fx *f, const char *path) {
    rs_error err = {{0}};
    assert_int_equal(consul_client_new(&f->loop, &f->s, &f->c, &err), 0);
    assert_int_equal(consul_watch_start(f->c, "test", path, on_change, on_error, f, &f->w), 0);
    assert_string_equal(consul_watch_name(f->w), "test");
}

static void
start(fx *f, const char *script) {
    use_fake(f, script);
    start_watch(f, KV_PATH);
}

static const consul_watch_stats *
stats(const fx *f) {
    return consul_watch_get_stats(f->w);
}

/* ---- tests: the blocking-query loop ----------------------------------------------------- */

static void
test_first_response_delivered(void **state) {
    fx *f = *state;
    start(f, "[{\"index\": 7, \"last_contact\": 3, \"body\": \"[{\\\"Key\\\":\\\"a\\\"}]\"}]");
    WAIT_CHANGES(f, 1);
    assert_int_equal(f->last_status, 200);
    assert_string_equal(f->last_body, "[{\"Key\":\"a\"}]");
    assert_int_equal(f->last_len, strlen("[{\"Key\":\"a\"}]"));
    assert_int_equal(f->last_index, 7);
    const consul_watch_stats *st = stats(f);
    assert_int_equal(st->changes, 1);
    assert_int_equal(st->index, 7);
    assert_int_equal(st->last_contact_ms, 3);
    assert_true(st->last_success_ms > 0);
    assert_int_equal(st->responses_by_class[2], 1);
    assert_int_equal(st->errors, 0);
    assert_string_equal(st->last_error, "");
    assert_string_equal(st->address, f->s.addresses[0]);

    json_t *r = fake_requests(&f->srv);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(json_array_get(r, 0), "path")),
                        "/v1/kv/ringside/t/");
    assert_non_null(req_param(r, 0, "recurse"));
    assert_null(req_param(r, 0, "index")); /* no index yet: not sent */
    assert_string_equal(req_param(r, 0, "wait"), "1000ms");
    assert_string_equal(req_param(r, 0, "stale"), "");
    assert_null(req_header(r, 0, "X-Consul-Token")); /* no token configured */
    json_decref(r);
}

static void
test_unchanged_not_delivered(void **state) {
    fx *f = *state;
    start(f, "[{\"index\": 7, \"body\": \"A\"}, {\"index\": 8, \"body\": \"A\"},"
             " {\"index\": 9, \"body\": \"B\"}]");
    WAIT_CHANGES(f, 2);
    assert_string_equal(f->last_body, "B");
    assert_int_equal(f->last_index, 9);
    assert_int_equal(stats(f)->unchanged, 1);
    assert_int_equal(stats(f)->changes, 2);
    json_t *r = fake_requests(&f->srv);
    assert_true(json_array_size(r) >= 3);
    assert_string_equal(req_param(r, 1, "index"), "7");
    assert_string_equal(req_param(r, 2, "index"), "8");
    json_decref(r);
}

static void
test_index_never_below_one(void **state) {
    fx *f = *state;
    /* An index of 0 is a Consul bug: the watcher clamps it to 1 rather than send index=0
     * (which would never block). */
    start(f, "[{\"index\": 0, \"body\": \"A\"}, {\"index\": 12, \"body\": \"B\"},"
             " {\"index\": 13, \"body\": \"C\"}]");
    WAIT_CHANGES(f, 3);
    json_t *r = fake_requests(&f->srv);
    assert_null(req_param(r, 0, "index"));
    assert_string_equal(req_param(r, 1, "index"), "1");
    assert_string_equal(req_param(r, 2, "index"), "12");
    json_decref(r);
}

static void
test_index_backwards_resets(void **state) {
    fx *f = *state;
    /* 10 -> 5: reset to 0, the body counts as new even though it hashes the same, and the
     * next request carries no index (Consul's rule); that answer (5, same body) is then
     * unchanged and the one after blocks on 5 again. */
    start(f, "[{\"index\": 10, \"body\": \"A\"}, {\"index\": 5, \"body\": \"A\"},"
             " {\"index\": 5, \"body\": \"A\"}, {\"index\": 6, \"body\": \"B\"}]");
    WAIT_CHANGES(f, 3);
    const consul_watch_stats *st = stats(f);
    assert_int_equal(st->index_resets, 1);
    assert_int_equal(st->unchanged, 1);
    assert_string_equal(f->last_body, "B");
    json_t *r = fake_requests(&f->srv);
    assert_string_equal(req_param(r, 1, "index"), "10");
    assert_null(req_param(r, 2, "index"));
    assert_string_equal(req_param(r, 3, "index"), "5");
    json_decref(r);
}

static void
test_no_stale_param_when_off(void **state) {
    fx *f = *state;
    f->s.stale = false;
    f->s.wait_ms = 2500;
    start(f, "[{\"index\": 3, \"body\": \"A\"}]");
    WAIT_CHANGES(f, 1);
    json_t *r = fake_requests(&f->srv);
    assert_null(req_param(r, 0, "stale"));
    assert_string_equal(req_param(r, 0, "wait"), "2500ms");
    json_decref(r);
}

static void
test_kv_404_is_empty_listing(void **state) {
    fx *f = *state;
    start(f, "[{\"status\": 404, \"index\": 9}]");
    WAIT_CHANGES(f, 1);
    assert_int_equal(f->last_status, 404);
    assert_string_equal(f->last_body, "[]");
    assert_int_equal(f->last_index, 9);
    assert_int_equal(stats(f)->responses_by_class[4], 1);
    assert_int_equal(f->errors, 0);
}

static void
test_404_elsewhere_is_error(void **state) {
    fx *f = *state;
    use_fake(f, "[{\"status\": 404, \"body\": \"no such service\"},"
                " {\"index\": 2, \"body\": \"[]\"}]");
    start_watch(f, "/v1/health/service/redis-cache");
    WAIT_CHANGES(f, 1);
    assert_int_equal(f->errors, 1);
    assert_non_null(strstr(f->error_msgs[0], "HTTP 404"));
    assert_non_null(strstr(f->error_msgs[0], "no such service"));
    assert_int_equal(f->last_status, 200);
}

static void
test_garbage_is_delivered_verbatim(void **state) {
    fx *f = *state;
    /* The watcher is content-agnostic: validating JSON is the membership parser's job. */
    start(f, "[{\"index\": 2, \"action\": \"garbage\", \"body\": \"[{\\\"Key\\\": \"}]");
    WAIT_CHANGES(f, 1);
    assert_string_equal(f->last_body, "[{\"Key\": ");
}

static void
test_two_watches_share_a_client(void **state) {
    fx *f = *state;
    use_fake(f, "{\"paths\": {\"/v1/kv/ringside/t/\": [{\"index\": 4, \"body\": \"kv\"}],"
                " \"/v1/health/service/c\": [{\"index\": 8, \"body\": \"health\"}]}}");
    start_watch(f, KV_PATH);
    consul_watch *h = NULL;
    assert_int_equal(
        consul_watch_start(f->c, "health", "/v1/health/service/c", on_change, on_error, f, &h), 0);
    WAIT_CHANGES(f, 2);
    assert_int_equal(stats(f)->changes, 1);
    assert_int_equal(consul_watch_get_stats(h)->changes, 1);
    assert_int_equal(consul_watch_get_stats(h)->index, 8);
    assert_int_equal(stats(f)->index, 4);
}

static void
test_rate_limited_by_bucket(void **state) {
    fx *f = *state;
    f->s.rate = 4; /* a token every 250 ms, none saved up beyond one */
    f->s.burst = 1;
    start(f, "[{\"index\": 1, \"body\": \"A\"}, {\"index\": 2, \"body\": \"B\"},"
             " {\"index\": 3, \"body\": \"C\"}]");
    WAIT_CHANGES(f, 3);
    assert_true(stats(f)->throttled >= 1);
    assert_int_equal(stats(f)->errors, 0);
}

/* ---- tests: errors and retries ---------------------------------------------------------- */

static void
test_server_error_then_retry(void **state) {
    fx *f = *state;
    start(f, "[{\"index\": 5, \"body\": \"A\"}, {\"status\": 500, \"body\": \"No cluster leader\"},"
             " {\"index\": 6, \"body\": \"B\"}]");
    WAIT_CHANGES(f, 2);
    assert_int_equal(f->errors, 1);
    assert_non_null(strstr(f->error_msgs[0], "HTTP 500"));
    assert_non_null(strstr(f->error_msgs[0], "No cluster leader"));
    const consul_watch_stats *st = stats(f);
    assert_int_equal(st->errors, 1);
    assert_int_equal(st->responses_by_class[5], 1);
    assert_int_equal(st->responses_by_class[2], 2);
    /* The retry went out from the backoff timer, after a delay within [base, cap]. */
    assert_int_equal(st->retries, 1);
    assert_in_range(f->error_backoffs[0], BACKOFF_BASE, BACKOFF_CAP);
    assert_int_equal(st->failovers, 0); /* one address: nowhere to go */
    assert_string_equal(st->last_error, "");
    json_t *r = fake_requests(&f->srv);
    assert_string_equal(req_param(r, 1, "index"), "5");
    /* After a 5xx the agent may have lost its data: the retry asks without an index
     * (an immediate answer), and the unchanged content is not delivered twice. */
    assert_null(req_param(r, 2, "index"));
    json_decref(r);
}

static void
test_429_honours_retry_after(void **state) {
    fx *f = *state;
    start(f, "[{\"status\": 429, \"retry_after\": 1}, {\"status\": 429},"
             " {\"index\": 3, \"body\": \"A\"}]");
    WAIT_CHANGES(f, 1);
    assert_int_equal(f->errors, 2);
    assert_non_null(strstr(f->error_msgs[0], "429"));
    assert_int_equal(f->error_backoffs[0], 1000);                     /* Retry-After: 1 */
    assert_in_range(f->error_backoffs[1], BACKOFF_BASE, BACKOFF_CAP); /* own backoff */
    assert_int_equal(stats(f)->retries, 2);
    assert_int_equal(stats(f)->responses_by_class[4], 2);
}

static void
test_acl_filtered_is_error(void **state) {
    fx *f = *state;
    start(f, "[{\"index\": 4, \"filtered\": true, \"body\": \"partial\"},"
             " {\"index\": 4, \"body\": \"full\"}]");
    WAIT_CHANGES(f, 1);
    assert_int_equal(f->errors, 1);
    assert_non_null(strstr(f->error_msgs[0], "filtered by ACLs"));
    assert_string_equal(f->last_body, "full"); /* the partial listing never came through */
    assert_int_equal(stats(f)->changes, 1);
    json_t *r = fake_requests(&f->srv);
    assert_null(req_param(r, 1, "index")); /* the rejected answer's index was not taken */
    json_decref(r);
}

static void
test_stale_beyond_max_is_error(void **state) {
    fx *f = *state;
    f->s.max_stale_ms = 100;
    start(f, "[{\"index\": 4, \"last_contact\": 50, \"body\": \"A\"},"
             " {\"index\": 5, \"last_contact\": 5000, \"body\": \"B\"},"
             " {\"index\": 5, \"last_contact\": 0, \"body\": \"B\"},"
             " {\"index\": 6, \"last_contact\": 7, \"body\": \"C\"}]");
    WAIT_CHANGES(f, 3);
    assert_int_equal(f->errors, 1);
    assert_non_null(strstr(f->error_msgs[0], "stale answer (last contact 5000 ms)"));
    assert_string_equal(f->last_body, "C");
    assert_int_equal(stats(f)->last_contact_ms, 7);
    json_t *r = fake_requests(&f->srv);
    assert_non_null(req_param(r, 1, "stale"));
    assert_null(req_param(r, 2, "stale")); /* the retry asks the leader */
    assert_string_equal(req_param(r, 2, "index"), "4");
    assert_non_null(req_param(r, 3, "stale")); /* and stale reads resume after it */
    json_decref(r);
}

static void
test_truncated_body_is_error(void **state) {
    fx *f = *state;
    start(f, "[{\"index\": 4, \"action\": \"truncate\", \"body\": \"[{\\\"Key\\\"\"},"
             " {\"index\": 4, \"body\": \"whole\"}]");
    WAIT_CHANGES(f, 1);
    assert_int_equal(f->errors, 1);
    assert_string_equal(f->last_body, "whole");
    assert_int_equal(stats(f)->responses_by_class[0], 1);
}

static void
test_connection_reset_is_error(void **state) {
    fx *f = *state;
    start(f, "[{\"action\": \"reset\"}, {\"index\": 2, \"body\": \"A\"}]");
    WAIT_CHANGES(f, 1);
    assert_int_equal(f->errors, 1);
    assert_int_equal(stats(f)->responses_by_class[0], 1);
}

static void
test_body_too_large_is_error(void **state) {
    fx *f = *state;
    char script[256];
    /* Without Content-Length (the write callback stops it) and with one (curl does). */
    snprintf(script, sizeof(script),
             "[{\"index\": 2, \"body_size\": %u, \"action\": \"no_length\"},"
             " {\"index\": 2, \"body_size\": %u}, {\"index\": 2, \"body\": \"small\"}]",
             RS_KV_MAX_BODY + 1, RS_KV_MAX_BODY + 1);
    start(f, script);
    WAIT_CHANGES(f, 1);
    assert_int_equal(f->errors, 2);
    assert_non_null(strstr(f->error_msgs[0], "larger than 32 MiB"));
    assert_non_null(strstr(f->error_msgs[1], "larger than 32 MiB"));
    assert_string_equal(f->last_body, "small");
}

static void
test_missing_index_header_is_error(void **state) {
    fx *f = *state;
    start(f, "[{\"body\": \"A\"}, {\"index\": \"12x\", \"body\": \"A\"},"
             " {\"index\": 3, \"body\": \"A\"}]");
    WAIT_CHANGES(f, 1);
    assert_int_equal(f->errors, 2);
    assert_non_null(strstr(f->error_msgs[0], "no X-Consul-Index"));
    assert_non_null(strstr(f->error_msgs[1], "malformed X-Consul-Index"));
}

static void
test_token_sent_and_never_shown(void **state) {
    fx *f = *state;
    snprintf(f->s.token, sizeof(f->s.token), "%s", TOKEN);
    start(f, "[{\"status\": 403, \"body\": \"ACL not found: " TOKEN "\"},"
             " {\"index\": 2, \"body\": \"A\"}]");
    WAIT_CHANGES(f, 1);
    assert_int_equal(f->errors, 1);
    assert_non_null(strstr(f->error_msgs[0], "403"));
    assert_null(strstr(f->error_msgs[0], TOKEN));
    assert_non_null(strstr(f->error_msgs[0], "[token]")); /* quoted body, redacted */
    json_t *r = fake_requests(&f->srv);
    assert_true(json_array_size(r) >= 2);
    for (size_t i = 0; i < json_array_size(r); i++) {
        assert_string_equal(req_header(r, i, "X-Consul-Token"), TOKEN);
        assert_null(
            strstr(json_string_value(json_object_get(json_array_get(r, i), "query")), TOKEN));
    }
    json_decref(r);
}

static void
test_failover_to_next_address(void **state) {
    fx *f = *state;
    /* A bound socket that does not listen: connections to it are refused. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t sl = sizeof(sin);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &sl), 0);
    snprintf(f->s.addresses[0], sizeof(f->s.addresses[0]), "http://127.0.0.1:%d",
             ntohs(sin.sin_port));
    f->s.n_addresses = 1;
    use_fake(f, "[{\"index\": 2, \"body\": \"A\"}, {\"index\": 3, \"body\": \"B\"}]");
    start_watch(f, KV_PATH);
    WAIT_CHANGES(f, 2);
    close(s);
    assert_int_equal(f->errors, 1);
    assert_non_null(strstr(f->error_msgs[0], f->s.addresses[0]));
    const consul_watch_stats *st = stats(f);
    assert_int_equal(st->failovers, 1);
    assert_int_equal(st->responses_by_class[0], 1);
    assert_string_equal(st->address, f->s.addresses[1]);
    /* After the move it stays: both answers came from the second agent. */
    json_t *r = fake_requests(&f->srv);
    assert_int_equal(json_array_size(r) >= 2, 1);
    assert_string_equal(req_param(r, 1, "index"), "2");
    json_decref(r);
}

/* ---- tests: closing ------------------------------------------------------------------------ */

static void
test_close_with_request_in_flight(void **state) {
    fx *f = *state;
    start(f, "[{\"index\": 2, \"body\": \"A\"}, {\"index\": 3, \"body\": \"B\","
             " \"delay_ms\": 20000}]");
    WAIT_CHANGES(f, 1);
    want_n = 2; /* the second, blocking request has reached the agent */
    assert_true(run_until(f, cond_fake_requests, NULL));
    assert_int_equal(stats(f)->requests, 2);
    consul_client_close(f->c, on_closed, f);
    f->close_called = true;
    assert_true(run_until(f, cond_closed, NULL));
    assert_int_equal(f->closed_done, 1);
    assert_int_equal(f->errors, 0); /* a cancelled transfer is not an error */
    /* teardown: uv_loop_close() == 0 */
}

static void
test_close_from_change_callback(void **state) {
    fx *f = *state;
    f->close_in_change = true;
    start(f, "[{\"index\": 2, \"body\": \"A\"}]");
    WAIT_CHANGES(f, 1);
    assert_true(f->close_called);
    assert_true(run_until(f, cond_closed, NULL));
    assert_int_equal(f->changes, 1);
}

static void
test_close_before_first_request(void **state) {
    fx *f = *state;
    snprintf(f->s.addresses[0], sizeof(f->s.addresses[0]), "http://127.0.0.1:1");
    f->s.n_addresses = 1;
    start_watch(f, KV_PATH); /* the first request waits for the next loop turn */
    consul_client_close(f->c, on_closed, f);
    f->close_called = true;
    assert_int_equal(consul_watch_start(f->c, "late", KV_PATH, on_change, on_error, f, NULL),
                     -ESHUTDOWN);
    assert_true(run_until(f, cond_closed, NULL));
    assert_int_equal(f->errors, 0);
}

/* ---- tests: settings ---------------------------------------------------------------------- */

static void
test_client_new_rejects_bad_settings(void **state) {
    fx *f = *state;
    consul_client *c = NULL;
    rs_error err = {{0}};
    consul_settings s;
    consul_settings_init(&s);
    assert_int_equal(consul_client_new(&f->loop, &s, &c, &err), -EINVAL); /* no address */
    assert_null(c);
    s.n_addresses = 1;
    snprintf(s.addresses[0], sizeof(s.addresses[0]), "ftp://127.0.0.1:8500");
    assert_int_equal(consul_client_new(&f->loop, &s, &c, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "ftp://"));
    snprintf(s.addresses[0], sizeof(s.addresses[0]), "http://127.0.0.1:8500");
    s.wait_ms = 0;
    assert_int_equal(consul_client_new(&f->loop, &s, &c, &err), -EINVAL);
    s.wait_ms = 11 * 60 * 1000;
    assert_int_equal(consul_client_new(&f->loop, &s, &c, &err), -EINVAL);
    s.wait_ms = 1000;
    snprintf(s.token, sizeof(s.token), "abc\r\nX-Evil: 1"); /* header injection */
    assert_int_equal(consul_client_new(&f->loop, &s, &c, &err), -EINVAL);
    assert_null(strstr(err.msg, "abc"));
    assert_null(c);
    s.token[0] = '\0';
    assert_int_equal(consul_client_new(&f->loop, &s, &f->c, &err), 0);
    assert_int_equal(consul_watch_start(f->c, "x", "v1/kv/no-slash", on_change, on_error, f, NULL),
                     -EINVAL);
    assert_int_equal(consul_watch_start(f->c, "x", "/v1/kv/a b", on_change, on_error, f, NULL),
                     -EINVAL);
}

static int
write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (fp == NULL) {
        return -1;
    }
    fputs(text, fp);
    return fclose(fp);
}

static void
test_read_token_file(void **state) {
    (void)state;
    char dir[] = "/tmp/rs_consul_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/token", dir);
    char big[700];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    static const struct {
        const char *content;
        int rc;
        const char *token;
    } cases[] = {
        {"abc-123\n", 0, "abc-123"},
        {"  abc-123 \r\nsecond line\n", 0, "abc-123"},
        {"abc-123", 0, "abc-123"},
        {"", 0, ""},
        {"\n", 0, ""},
        {"ab cd\n", -EINVAL, NULL},
        {"ab\x01z\n", -EINVAL, NULL},
        {NULL, -E2BIG, NULL}, /* big */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(write_file(path, cases[i].content != NULL ? cases[i].content : big), 0);
        char out[512] = "unchanged";
        rs_error err = {{0}};
        int rc = consul_read_token_file(path, out, sizeof(out), &err);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0) {
            assert_string_equal(out, cases[i].token);
        } else {
            assert_non_null(strstr(err.msg, path));
            assert_null(strstr(err.msg, "ab cd")); /* no token text, raw or sanitised */
            assert_null(strstr(err.msg, "ab?z"));
            assert_null(strstr(err.msg, "xxxxxxxx"));
        }
    }
    unlink(path);
    rs_error err = {{0}};
    char out[512];
    assert_int_equal(consul_read_token_file(path, out, sizeof(out), &err), -ENOENT);
    assert_non_null(strstr(err.msg, path));
    rmdir(dir);
}

static void
clear_env(void) {
    static const char *const vars[] = {
        "CONSUL_HTTP_ADDR",   "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_CACERT",
        "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY", "CONSUL_HTTP_SSL",
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        unsetenv(vars[i]);
    }
}

/* Field by field: struct copies need not carry padding. */
static void
assert_settings_equal(const consul_settings *a, const consul_settings *b) {
    assert_int_equal(a->n_addresses, b->n_addresses);
    for (size_t i = 0; i < a->n_addresses; i++) {
        assert_string_equal(a->addresses[i], b->addresses[i]);
    }
    assert_string_equal(a->token, b->token);
    assert_string_equal(a->ca_file, b->ca_file);
    assert_string_equal(a->cert_file, b->cert_file);
    assert_string_equal(a->key_file, b->key_file);
    assert_int_equal(a->stale, b->stale);
    assert_int_equal(a->wait_ms, b->wait_ms);
}

static void
test_settings_from_env(void **state) {
    (void)state;
    clear_env();
    consul_settings s;
    rs_error err = {{0}};
    consul_settings_init(&s);
    assert_true(s.stale);
    assert_int_equal(s.wait_ms, 300000);
    assert_int_equal(s.max_stale_ms, 10000);
    assert_int_equal(s.backoff_base_ms, 100);
    assert_int_equal(s.backoff_cap_ms, 1000);
    assert_int_equal(s.connect_timeout_ms, 2000);

    /* Nothing set: nothing changes. */
    snprintf(s.addresses[0], sizeof(s.addresses[0]), "http://keep:8500");
    s.n_addresses = 1;
    assert_int_equal(consul_settings_from_env(&s, &err), 0);
    assert_int_equal(s.n_addresses, 1);
    assert_string_equal(s.addresses[0], "http://keep:8500");

    setenv("CONSUL_HTTP_ADDR", "127.0.0.1:8500, https://b.example:8501/ ,c:1", 1);
    setenv("CONSUL_HTTP_TOKEN", "env-token", 1);
    setenv("CONSUL_CACERT", "/etc/consul/ca.pem", 1);
    setenv("CONSUL_CLIENT_CERT", "/etc/consul/cli.pem", 1);
    setenv("CONSUL_CLIENT_KEY", "/etc/consul/cli-key.pem", 1);
    assert_int_equal(consul_settings_from_env(&s, &err), 0);
    assert_int_equal(s.n_addresses, 3);
    assert_string_equal(s.addresses[0], "http://127.0.0.1:8500");
    assert_string_equal(s.addresses[1], "https://b.example:8501");
    assert_string_equal(s.addresses[2], "http://c:1");
    assert_string_equal(s.token, "env-token");
    assert_string_equal(s.ca_file, "/etc/consul/ca.pem");
    assert_string_equal(s.cert_file, "/etc/consul/cli.pem");
    assert_string_equal(s.key_file, "/etc/consul/cli-key.pem");

    setenv("CONSUL_HTTP_SSL", "true", 1);
    setenv("CONSUL_HTTP_ADDR", "127.0.0.1:8501", 1);
    assert_int_equal(consul_settings_from_env(&s, &err), 0);
    assert_int_equal(s.n_addresses, 1);
    assert_string_equal(s.addresses[0], "https://127.0.0.1:8501");

    /* A token file wins over CONSUL_HTTP_TOKEN, as in Consul's API. */
    char dir[] = "/tmp/rs_consul_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/token", dir);
    assert_int_equal(write_file(path, "file-token\n"), 0);
    setenv("CONSUL_HTTP_TOKEN_FILE", path, 1);
    assert_int_equal(consul_settings_from_env(&s, &err), 0);
    assert_string_equal(s.token, "file-token");

    /* Errors leave the settings as they were. */
    consul_settings before = s;
    unlink(path);
    assert_int_equal(consul_settings_from_env(&s, &err), -ENOENT);
    assert_non_null(strstr(err.msg, path));
    assert_settings_equal(&s, &before);
    unsetenv("CONSUL_HTTP_TOKEN_FILE");
    rmdir(dir);

    static const char *const bad[][2] = {
        {"CONSUL_HTTP_SSL", "maybe"},
        {"CONSUL_HTTP_ADDR", "unix:///run/consul.sock"},
        {"CONSUL_HTTP_ADDR", "a:1,,b:2"},
        {"CONSUL_HTTP_ADDR", "a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9"},
        {"CONSUL_HTTP_ADDR", "ftp://a:1"},
        {"CONSUL_HTTP_TOKEN", "bad token"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        clear_env();
        setenv(bad[i][0], bad[i][1], 1);
        assert_int_equal(consul_settings_from_env(&s, &err), -EINVAL);
        assert_settings_equal(&s, &before);
        assert_non_null(strstr(err.msg, bad[i][0]));
    }
    assert_null(strstr(err.msg, "bad token")); /* the token is never quoted */
    clear_env();
}

int
main(void) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_first_response_delivered),
        T(test_unchanged_not_delivered),
        T(test_index_never_below_one),
        T(test_index_backwards_resets),
        T(test_no_stale_param_when_off),
        T(test_kv_404_is_empty_listing),
        T(test_404_elsewhere_is_error),
        T(test_garbage_is_delivered_verbatim),
        T(test_two_watches_share_a_client),
        T(test_rate_limited_by_bucket),
        T(test_server_error_then_retry),
        T(test_429_honours_retry_after),
        T(test_acl_filtered_is_error),
        T(test_stale_beyond_max_is_error),
        T(test_truncated_body_is_error),
        T(test_connection_reset_is_error),
        T(test_body_too_large_is_error),
        T(test_missing_index_header_is_error),
        T(test_token_sent_and_never_shown),
        T(test_failover_to_next_address),
        T(test_close_with_request_in_flight),
        T(test_close_from_change_callback),
        T(test_close_before_first_request),
        T(test_client_new_rejects_bad_settings),
        T(test_read_token_file),
        T(test_settings_from_env),
    };
#undef T
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
