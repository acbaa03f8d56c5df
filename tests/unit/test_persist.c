/* Snapshot files: atomic write and load, directory creation, damaged and foreign files set
 * aside (bounded), crash leftovers ignored, staleness, and unwritable paths. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, scandir, nftw */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "persist.h"
#include "rs_state.h"

#define RING "main"
#define NOW 1700000000
#define DAY 86400u

typedef struct fx {
    char root[64]; /* the mkdtemp directory, removed at teardown */
    char dir[128]; /* <root>/state: the state dir, absent until written */
} fx;

static int
setup(void **state) {
    fx *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return -1;
    }
    snprintf(f->root, sizeof(f->root), "%s", "/tmp/rs_persist_XXXXXX");
    if (mkdtemp(f->root) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "%s/state", f->root);
    umask(022);
    *state = f;
    return 0;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int
teardown(void **state) {
    fx *f = *state;
    int rc = nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static void
make_state(rs_state *s, const char *ring, uint64_t epoch, int64_t written_at) {
    rs_state_init(s);
    snprintf(s->ring, sizeof(s->ring), "%s", ring);
    snprintf(s->source, sizeof(s->source), "%s", "consul-kv");
    s->epoch = epoch;
    s->kv_index = 100 + epoch;
    s->health_index = 200 + epoch;
    s->written_at = written_at;
    rs_node a = {
        .id = "cache-a", .address = "127.0.0.1:6379", .zone = "z1", .weight = 1, .enabled = true};
    rs_node b = {.id = "cache-b", .address = "127.0.0.2:6379", .weight = 3, .enabled = true};
    assert_int_equal(rs_state_add_node(s, &a, true), 0);
    assert_int_equal(rs_state_add_node(s, &b, false), 0);
}

static void
write_ok(const char *dir, uint64_t epoch, int64_t written_at) {
    rs_state s;
    rs_error err = {{0}};
    make_state(&s, RING, epoch, written_at);
    int rc = persist_write(dir, RING, &s, &err);
    if (rc != 0) {
        fail_msg("persist_write: %d %s", rc, err.msg);
    }
    rs_state_free(&s);
}

static int
load(const char *dir, int64_t now, uint32_t max_age, rs_state *out, rs_error *err) {
    memset(out, 0xa5, sizeof(*out));
    memset(err, 0, sizeof(*err));
    return persist_load(dir, RING, now, max_age, out, err);
}

static void
assert_zeroed(const rs_state *s) {
    static const rs_state zero;
    assert_memory_equal(s, &zero, sizeof(zero));
}

/* Entries of dir other than . and .., sorted, joined by '|'. */
static void
listing(const char *dir, char *out, size_t cap) {
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    assert_true(n >= 0);
    out[0] = '\0';
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0) {
            int w = snprintf(out + used, cap - used, "%s%s", used > 0 ? "|" : "", names[i]->d_name);
            assert_true(w >= 0 && (size_t)w < cap - used);
            used += (size_t)w;
        }
        free(names[i]);
    }
    free(names);
}

static void
put_file(const char *dir, const char *name, const void *data, size_t len) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static char *
get_file(const char *dir, const char *name, size_t *len) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 20, fp);
    fclose(fp);
    return buf;
}

static bool
exists(const char *dir, const char *name) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- tests ---- */

static void
test_write_then_load(void **state) {
    fx *f = *state;
    char nested[256], list[512];
    snprintf(nested, sizeof(nested), "%s/a/b", f->dir); /* missing parents are made too */
    rs_state s, d;
    rs_error err = {{0}};
    make_state(&s, RING, 7, NOW - 10);
    assert_int_equal(persist_write(nested, RING, &s, &err), 0);

    struct stat st;
    assert_int_equal(stat(nested, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0750);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/" RING ".state.json", nested);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    listing(nested, list, sizeof(list));
    assert_string_equal(list, RING ".state.json");

    assert_int_equal(load(nested, NOW, DAY, &d, &err), 0);
    assert_int_equal(d.epoch, 7);
    assert_int_equal(d.kv_index, 107);
    assert_int_equal(d.health_index, 207);
    assert_int_equal(d.written_at, NOW - 10);
    assert_int_equal(d.n_nodes, 2);
    assert_string_equal(d.nodes[0].node.id, "cache-a");
    assert_string_equal(d.nodes[0].node.zone, "z1");
    assert_true(d.nodes[0].healthy);
    assert_string_equal(d.nodes[1].node.address, "127.0.0.2:6379");
    assert_int_equal(d.nodes[1].node.weight, 3);
    assert_false(d.nodes[1].healthy);
    assert_string_equal(d.source, "consul-kv");
    rs_state_free(&d);

    /* A trailing slash on the dir is fine. */
    char slash[300];
    snprintf(slash, sizeof(slash), "%s/", nested);
    assert_int_equal(persist_write(slash, RING, &s, &err), 0);
    assert_int_equal(load(slash, NOW, 0, &d, &err), 0);
    rs_state_free(&d);
    rs_state_free(&s);
}

static void
test_overwrite_keeps_one_file(void **state) {
    fx *f = *state;
    char list[512];
    for (uint64_t e = 1; e <= 5; e++) {
        write_ok(f->dir, e, NOW);
    }
    listing(f->dir, list, sizeof(list));
    assert_string_equal(list, RING ".state.json");
    rs_state d;
    rs_error err;
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), 0);
    assert_int_equal(d.epoch, 5);
    rs_state_free(&d);
}

static void
test_no_snapshot(void **state) {
    fx *f = *state;
    rs_state d;
    rs_error err;
    /* No dir: -ENOENT, and loading does not create it. */
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), -ENOENT);
    assert_zeroed(&d);
    assert_non_null(strstr(err.msg, "does not exist"));
    assert_false(exists(f->root, "state"));
    /* Empty dir: -ENOENT. */
    assert_int_equal(mkdir(f->dir, 0750), 0);
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "no snapshot at "));
    /* Another ring's snapshot is not ours. */
    rs_state s;
    make_state(&s, "other", 1, NOW);
    assert_int_equal(persist_write(f->dir, "other", &s, &err), 0);
    rs_state_free(&s);
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), -ENOENT);
}

/* Damage the snapshot with fn, load, and check it was set aside under the expected name. */
static void
expect_set_aside(fx *f, int64_t now, int code, const char *reason, const char *aside) {
    rs_state d;
    rs_error err;
    char list[512];
    int rc = load(f->dir, now, DAY, &d, &err);
    if (rc != code || strstr(err.msg, reason) == NULL || strstr(err.msg, aside) == NULL ||
        strstr(err.msg, "set aside as") == NULL) {
        fail_msg("rc %d msg '%s', expected %d, '%s' and '%s'", rc, err.msg, code, reason, aside);
    }
    assert_zeroed(&d);
    assert_true(exists(f->dir, aside));
    assert_false(exists(f->dir, RING ".state.json"));
    /* Next start: nothing to load, and the set-aside file is never picked up. */
    assert_int_equal(load(f->dir, now, DAY, &d, &err), -ENOENT);
    listing(f->dir, list, sizeof(list));
    assert_non_null(strstr(list, aside));
}

static void
test_truncated_set_aside(void **state) {
    fx *f = *state;
    write_ok(f->dir, 3, NOW);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/" RING ".state.json", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    expect_set_aside(f, NOW + 5, -EINVAL, "not valid JSON", RING ".state.json.corrupt-1700000005");
    /* The message names the snapshot path too. */
    rs_state d;
    rs_error err;
    write_ok(f->dir, 4, NOW);
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(load(f->dir, NOW + 6, DAY, &d, &err), -EINVAL);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, ": empty"));
}

static void
test_bad_checksum_set_aside(void **state) {
    fx *f = *state;
    write_ok(f->dir, 7, NOW);
    size_t len;
    char *text = get_file(f->dir, RING ".state.json", &len);
    char *at = memmem(text, len, "\"epoch\": 7", 10);
    assert_non_null(at);
    at[9] = '8';
    put_file(f->dir, RING ".state.json", text, len);
    free(text);
    expect_set_aside(f, NOW, -EBADMSG, "checksum mismatch", RING ".state.json.corrupt-1700000000");
}

static void
test_foreign_and_other_ring_set_aside(void **state) {
    fx *f = *state;
    static const char config[] = "{\"ring\": \"main\", \"consul\": {\"address\": \"x\"}}\n";
    assert_int_equal(mkdir(f->dir, 0750), 0);
    put_file(f->dir, RING ".state.json", config, sizeof(config) - 1);
    expect_set_aside(f, NOW, -EINVAL, "not a ringside state file",
                     RING ".state.json.corrupt-1700000000");

    /* A valid snapshot of another ring copied into place. */
    rs_state s;
    rs_error err;
    make_state(&s, "other", 1, NOW);
    assert_int_equal(persist_write(f->dir, "other", &s, &err), 0);
    rs_state_free(&s);
    size_t len;
    char *text = get_file(f->dir, "other.state.json", &len);
    put_file(f->dir, RING ".state.json", text, len);
    free(text);
    expect_set_aside(f, NOW + 1, -EINVAL, "holds ring \"other\", not \"main\"",
                     RING ".state.json.corrupt-1700000001");

    /* A newer format version. */
    static const char v2[] = "{\"format\": 2, \"checksum\": \"sha256:00\", \"state\": {}}";
    put_file(f->dir, RING ".state.json", v2, sizeof(v2) - 1);
    expect_set_aside(f, NOW + 2, -EPROTONOSUPPORT, "unsupported state format 2",
                     RING ".state.json.corrupt-1700000002");
}

static void
test_set_aside_bounded(void **state) {
    fx *f = *state;
    char list[1024];
    assert_int_equal(mkdir(f->dir, 0750), 0);
    /* Two in the same second get distinct names. */
    put_file(f->dir, RING ".state.json", "x", 1);
    expect_set_aside(f, 100, -EINVAL, "not valid JSON", RING ".state.json.corrupt-100");
    put_file(f->dir, RING ".state.json", "y", 1);
    expect_set_aside(f, 100, -EINVAL, "not valid JSON", RING ".state.json.corrupt-100.1");
    for (int64_t t = 101; t <= 104; t++) {
        put_file(f->dir, RING ".state.json", "z", 1);
        char name[64];
        snprintf(name, sizeof(name), RING ".state.json.corrupt-%lld", (long long)t);
        expect_set_aside(f, t, -EINVAL, "not valid JSON", name);
    }
    /* Only the newest RS_PERSIST_CORRUPT_KEEP stay; other rings' files are untouched. */
    put_file(f->dir, "other.state.json.corrupt-1", "o", 1);
    put_file(f->dir, RING ".state.json", "w", 1);
    expect_set_aside(f, 105, -EINVAL, "not valid JSON", RING ".state.json.corrupt-105");
    listing(f->dir, list, sizeof(list));
    assert_string_equal(list, RING ".state.json.corrupt-103|" RING ".state.json.corrupt-104|" RING
                                   ".state.json.corrupt-105|other.state.json.corrupt-1");
}

static void
test_crash_leftovers(void **state) {
    fx *f = *state;
    char list[512];
    /* kill -9 mid-write: a good snapshot (epoch 5) and a half-written temp (epoch 6). */
    write_ok(f->dir, 5, NOW);
    rs_state s;
    make_state(&s, RING, 6, NOW);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(rs_state_encode(&s, &text, &len), 0);
    put_file(f->dir, "." RING ".state.json.tmp.99999", text, len / 2);
    put_file(f->dir, "." RING ".state.json.tmp.1", text, len); /* even a complete one */
    put_file(f->dir, ".other.state.json.tmp.1", text, len);    /* not ours: left alone */
    free(text);

    rs_state d;
    rs_error err;
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), 0);
    assert_int_equal(d.epoch, 5);
    rs_state_free(&d);
    listing(f->dir, list, sizeof(list));
    assert_string_equal(list, ".other.state.json.tmp.1|" RING ".state.json");

    /* A temp file with our own pid (a predecessor with the same pid) does not block writes. */
    char own[64];
    snprintf(own, sizeof(own), "." RING ".state.json.tmp.%ld", (long)getpid());
    put_file(f->dir, own, "partial", 7);
    assert_int_equal(persist_write(f->dir, RING, &s, &err), 0);
    assert_false(exists(f->dir, own));
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), 0);
    assert_int_equal(d.epoch, 6);
    rs_state_free(&d);
    rs_state_free(&s);

    /* Only temp files and no snapshot: nothing is loaded. */
    snprintf(list, sizeof(list), "%s/" RING ".state.json", f->dir);
    assert_int_equal(unlink(list), 0);
    put_file(f->dir, "." RING ".state.json.tmp.4242", "{", 1);
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), -ENOENT);
    assert_false(exists(f->dir, "." RING ".state.json.tmp.4242"));
}

static void
test_stale(void **state) {
    fx *f = *state;
    rs_state d;
    rs_error err;
    write_ok(f->dir, 9, NOW - DAY - 1);
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), -ESTALE);
    assert_int_equal(d.epoch, 9); /* handed over anyway: its epoch is a floor */
    rs_state_free(&d);
    assert_non_null(strstr(err.msg, "snapshot is 86401 s old (max 86400 s)"));
    assert_true(exists(f->dir, RING ".state.json")); /* left in place */
    /* Exactly at the limit, or no limit: loaded. */
    assert_int_equal(load(f->dir, NOW - 1, DAY, &d, &err), 0);
    rs_state_free(&d);
    assert_int_equal(load(f->dir, NOW, 0, &d, &err), 0);
    rs_state_free(&d);
    /* Written in the future (clock skew): accepted. */
    write_ok(f->dir, 10, NOW + 3600);
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), 0);
    assert_int_equal(d.epoch, 10);
    rs_state_free(&d);
}

static void
test_unwritable(void **state) {
    fx *f = *state;
    rs_state s, d;
    rs_error err = {{0}};
    make_state(&s, RING, 1, NOW);
    /* A regular file where a directory should be: ENOTDIR even for root. */
    char file[256], under[300];
    snprintf(file, sizeof(file), "%s/plainfile", f->root);
    put_file(f->root, "plainfile", "x", 1);
    snprintf(under, sizeof(under), "%s/sub/state", file);
    assert_int_equal(persist_write(under, RING, &s, &err), -ENOTDIR);
    assert_non_null(strstr(err.msg, "open "));
    assert_non_null(strstr(err.msg, file));
    assert_non_null(strstr(err.msg, "Not a directory"));
    assert_int_equal(load(under, NOW, DAY, &d, &err), -ENOTDIR);
    assert_non_null(strstr(err.msg, "Not a directory"));
    /* The dir itself is a file. */
    assert_int_equal(persist_write(file, RING, &s, &err), -ENOTDIR);
    assert_non_null(strstr(err.msg, "open "));
    rs_state_free(&s);
}

static void
test_write_failure_cleans_up(void **state) {
    fx *f = *state;
    rs_state s, d;
    rs_error err = {{0}};
    char list[512];
    write_ok(f->dir, 1, NOW);
    /* A file size limit makes write() fail (EFBIG) like a full disk would (ENOSPC). */
    struct rlimit old, small = {.rlim_cur = 64, .rlim_max = RLIM_INFINITY};
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small.rlim_max = old.rlim_max;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    make_state(&s, RING, 2, NOW);
    int rc = persist_write(f->dir, RING, &s, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, -EFBIG);
    char want[300];
    snprintf(want, sizeof(want), "write %s/." RING ".state.json.tmp.%ld: File too large", f->dir,
             (long)getpid());
    if (strcmp(err.msg, want) != 0) {
        fail_msg("got '%s', want '%s'", err.msg, want);
    }
    /* The temp file is gone and the previous snapshot is intact. */
    listing(f->dir, list, sizeof(list));
    assert_string_equal(list, RING ".state.json");
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), 0);
    assert_int_equal(d.epoch, 1);
    rs_state_free(&d);
    rs_state_free(&s);
}

static void
test_bad_arguments(void **state) {
    fx *f = *state;
    rs_state s, d;
    rs_error err = {{0}};
    make_state(&s, RING, 1, NOW);
    assert_int_equal(persist_write(f->dir, "../x", &s, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "ring name"));
    assert_int_equal(persist_write(f->dir, "", &s, &err), -EINVAL);
    assert_int_equal(persist_write("", RING, &s, &err), -EINVAL);
    assert_int_equal(persist_write(f->dir, "other", &s, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "state of ring \"main\" written as ring \"other\""));
    s.nodes[1].node.weight = 0;
    assert_int_equal(persist_write(f->dir, RING, &s, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "state.nodes[1]: weight"));
    assert_false(exists(f->root, "state")); /* nothing was created */
    s.nodes[1].node.weight = 1;

    char long_dir[PATH_MAX + 10];
    memset(long_dir, 'd', sizeof(long_dir) - 1);
    long_dir[0] = '/';
    long_dir[sizeof(long_dir) - 1] = '\0';
    assert_int_equal(persist_write(long_dir, RING, &s, &err), -ENAMETOOLONG);
    assert_int_equal(load(long_dir, NOW, DAY, &d, &err), -ENAMETOOLONG);
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), -ENOENT);
    memset(&err, 0, sizeof(err));
    assert_int_equal(persist_load(f->dir, "a/b", NOW, DAY, &d, &err), -EINVAL);
    rs_state_free(&s);
}

static void
test_odd_files(void **state) {
    fx *f = *state;
    rs_state d;
    rs_error err;
    char path[PATH_MAX];
    assert_int_equal(mkdir(f->dir, 0750), 0);
    snprintf(path, sizeof(path), "%s/" RING ".state.json", f->dir);

    /* A directory or a FIFO at the path: refused, left alone, and no hang. */
    assert_int_equal(mkdir(path, 0750), 0);
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_int_equal(rmdir(path), 0);
    assert_int_equal(mkfifo(path, 0640), 0);
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), -EINVAL);
    assert_true(exists(f->dir, RING ".state.json"));
    assert_int_equal(unlink(path), 0);

    /* Oversize (sparse) file: set aside without being read. */
    int fd = open(path, O_CREAT | O_WRONLY, 0640);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)RS_STATE_MAX_BYTES + 1), 0);
    close(fd);
    expect_set_aside(f, NOW, -EINVAL, "too large", RING ".state.json.corrupt-1700000000");

    /* A symlink to a good snapshot is followed (operators may link state in). */
    write_ok(f->dir, 2, NOW);
    char target[PATH_MAX];
    snprintf(target, sizeof(target), "%s/real.json", f->dir);
    assert_int_equal(rename(path, target), 0);
    assert_int_equal(symlink("real.json", path), 0);
    assert_int_equal(load(f->dir, NOW, DAY, &d, &err), 0);
    assert_int_equal(d.epoch, 2);
    rs_state_free(&d);
}

int
main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_then_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overwrite_keeps_one_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_set_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_checksum_set_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_and_other_ring_set_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_aside_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure_cleans_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
