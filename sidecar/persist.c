/* Snapshot files on disk: temp file + fsync + rename + directory fsync on write; on load,
 * stale temp files removed and a damaged or foreign snapshot renamed aside, never used. */
#include "persist.h"
#include "rs_error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define SUFFIX ".state.json"
#define TMP_INFIX ".tmp."
#define CORRUPT_INFIX ".corrupt-"
#define SET_ASIDE_TRIES 100
/* Leaves room for "/" and the longest name below, so every path fits PATH_MAX. */
#define DIR_MAX (PATH_MAX - 256)

/* Every file name this module uses for one ring; all fit NAME_MAX by construction
 * (ring <= 63 bytes) and dir + "/" + any of them fits PATH_MAX (checked). */
typedef struct names {
    char target[96];         /* <ring>.state.json */
    char tmp[128];           /* .<ring>.state.json.tmp.<pid> */
    char tmp_prefix[96];     /* .<ring>.state.json.tmp. */
    char corrupt_prefix[96]; /* <ring>.state.json.corrupt- */
} names;

static const char *
errstr(int e, char *buf, size_t cap) {
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(e, buf, cap);
#else
    if (strerror_r(e, buf, cap) != 0) {
        snprintf(buf, cap, "error %d", e);
    }
    return buf;
#endif
}

/* "<step> <dir>/<name>: <strerror(e)>" (or "<step> <dir>: ..." when name is NULL), -e. */
static int
sys_fail(rs_error *err, int e, const char *step, const char *dir, const char *name) {
    char buf[128];
    const char *why = errstr(e, buf, sizeof(buf));
    if (name == NULL) {
        return rs_error_set(err, -e, "%s %s: %s", step, dir, why);
    }
    return rs_error_set(err, -e, "%s %s/%s: %s", step, dir, name, why);
}

static bool
ring_name_valid(const char *ring) {
    size_t len = strnlen(ring, RS_STATE_RING_MAX + 1);
    if (len == 0 || len > RS_STATE_RING_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = ring[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-')) {
            return false;
        }
    }
    return true;
}

static int
make_names(const char *dir, const char *ring, names *n, rs_error *err) {
    if (dir == NULL || dir[0] == '\0') {
        return rs_error_set(err, -EINVAL, "state dir: must not be empty");
    }
    if (ring == NULL || !ring_name_valid(ring)) {
        return rs_error_set(err, -EINVAL,
                            "ring name: must be 1 to %d characters from [A-Za-z0-9_.-]",
                            RS_STATE_RING_MAX);
    }
    size_t dir_len = strnlen(dir, PATH_MAX);
    if (dir_len > DIR_MAX) {
        return rs_error_set(err, -ENAMETOOLONG, "state dir: path too long (%zu bytes, max %d)",
                            dir_len, DIR_MAX);
    }
    /* The buffers are sized for a 63-byte ring name, so these cannot truncate. */
    const int r = RS_STATE_RING_MAX;
    snprintf(n->target, sizeof(n->target), "%.*s" SUFFIX, r, ring);
    snprintf(n->tmp_prefix, sizeof(n->tmp_prefix), ".%.*s" SUFFIX TMP_INFIX, r, ring);
    snprintf(n->tmp, sizeof(n->tmp), ".%.*s" SUFFIX TMP_INFIX "%ld", r, ring, (long)getpid());
    snprintf(n->corrupt_prefix, sizeof(n->corrupt_prefix), "%.*s" SUFFIX CORRUPT_INFIX, r, ring);
    return 0;
}

/* fsync the directory holding path (path without trailing slashes). */
static int
fsync_parent(const char *path, rs_error *err) {
    char parent[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(parent, sizeof(parent), ".");
    } else if (slash == path) {
        snprintf(parent, sizeof(parent), "/");
    } else {
        snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path);
    }
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return sys_fail(err, errno, "open", parent, NULL);
    }
    int rc = fsync(fd) == 0 ? 0 : sys_fail(err, errno, "fsync", parent, NULL);
    close(fd);
    return rc;
}

/* mkdir -p dir with mode 0750, each new directory made durable in its parent. */
static int
make_dirs(const char *dir, rs_error *err) {
    char path[PATH_MAX];
    size_t len = strlen(dir);
    memcpy(path, dir, len + 1);
    while (len > 1 && path[len - 1] == '/') {
        path[--len] = '\0';
    }
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0') {
            continue;
        }
        char c = path[i];
        path[i] = '\0';
        if (mkdir(path, 0750) == 0) {
            int rc = fsync_parent(path, err);
            if (rc != 0) {
                return rc;
            }
        } else if (errno != EEXIST) {
            return sys_fail(err, errno, "mkdir", path, NULL);
        }
        path[i] = c;
    }
    return 0;
}

static int
open_dir(const char *dir, bool create, rs_error *err) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 && errno == ENOENT && create) {
        int rc = make_dirs(dir, err);
        if (rc != 0) {
            return rc;
        }
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (dfd < 0) {
        return sys_fail(err, errno, "open", dir, NULL);
    }
    return dfd;
}

static int
write_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int
persist_write(const char *dir, const char *ring_name, const rs_state *s, rs_error *err) {
    names n;
    char *text = NULL;
    size_t len = 0;
    int dfd = -1, fd = -1, rc;
    bool tmp_exists = false;

    if ((rc = make_names(dir, ring_name, &n, err)) != 0 || (rc = rs_state_validate(s, err)) != 0) {
        return rc;
    }
    if (strcmp(s->ring, ring_name) != 0) {
        return rs_error_set(err, -EINVAL, "state of ring \"%s\" written as ring \"%s\"", s->ring,
                            ring_name);
    }
    if ((rc = rs_state_encode(s, &text, &len)) != 0) {
        return rs_error_set(err, rc, "encode state: %s",
                            rc == -ENOMEM ? "out of memory" : "invalid");
    }
    if ((dfd = open_dir(dir, true, err)) < 0) {
        rc = dfd;
        goto out;
    }
    for (int attempt = 0;; attempt++) {
        fd = openat(dfd, n.tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0640);
        if (fd >= 0) {
            break;
        }
        /* Same pid, so no live writer owns it: a crashed predecessor's file. */
        if (errno == EEXIST && attempt == 0 && unlinkat(dfd, n.tmp, 0) == 0) {
            continue;
        }
        rc = sys_fail(err, errno, "create", dir, n.tmp);
        goto out;
    }
    tmp_exists = true;
    if ((rc = write_all(fd, text, len)) != 0) {
        rc = sys_fail(err, -rc, "write", dir, n.tmp);
        goto out;
    }
    if (fsync(fd) != 0) {
        rc = sys_fail(err, errno, "fsync", dir, n.tmp);
        goto out;
    }
    int crc = close(fd);
    fd = -1;
    if (crc != 0) {
        rc = sys_fail(err, errno, "close", dir, n.tmp);
        goto out;
    }
    if (renameat(dfd, n.tmp, dfd, n.target) != 0) {
        rc = sys_fail(err, errno, "rename", dir, n.tmp);
        goto out;
    }
    tmp_exists = false;
    if (fsync(dfd) != 0) {
        rc = sys_fail(err, errno, "fsync", dir, NULL);
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
    }
    if (tmp_exists) {
        unlinkat(dfd, n.tmp, 0);
    }
    if (dfd >= 0) {
        close(dfd);
    }
    free(text);
    return rc;
}

static bool
has_prefix(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Parse "<digits>" or "<digits>.<digits>" (what follows the corrupt prefix). */
static bool
parse_stamp(const char *s, unsigned long long *t, unsigned long long *k) {
    char *end;
    if (*s < '0' || *s > '9') {
        return false;
    }
    errno = 0;
    *t = strtoull(s, &end, 10);
    *k = 0;
    if (errno != 0) {
        return false;
    }
    if (*end == '.') {
        if (end[1] < '0' || end[1] > '9') {
            return false;
        }
        *k = strtoull(end + 1, &end, 10);
        if (errno != 0) {
            return false;
        }
    }
    return *end == '\0';
}

typedef struct aside {
    unsigned long long t, k;
    char name[128];
} aside;

static int
aside_newest_first(const void *a, const void *b) {
    const aside *x = a, *y = b;
    if (x->t != y->t) {
        return x->t > y->t ? -1 : 1;
    }
    return x->k > y->k ? -1 : x->k < y->k;
}

/* One pass over dir: remove temp files, and set-aside files beyond the newest keep (if
 * prune). Best effort: a failure here never fails the load. */
static void
sweep(int dfd, const names *n, bool temps, bool prune) {
    int fd = dup(dfd);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    aside *v = NULL;
    size_t nv = 0, cap = 0;
    if (d == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    rewinddir(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (temps && has_prefix(e->d_name, n->tmp_prefix)) {
            unlinkat(dfd, e->d_name, 0);
            continue;
        }
        unsigned long long t, k;
        if (!prune || !has_prefix(e->d_name, n->corrupt_prefix) ||
            !parse_stamp(e->d_name + strlen(n->corrupt_prefix), &t, &k) ||
            strlen(e->d_name) >= sizeof(v->name)) {
            continue;
        }
        if (nv == cap) {
            size_t ncap = cap == 0 ? 8 : 2 * cap;
            aside *grown = realloc(v, ncap * sizeof(*v));
            if (grown == NULL) {
                break;
            }
            v = grown;
            cap = ncap;
        }
        v[nv].t = t;
        v[nv].k = k;
        memcpy(v[nv].name, e->d_name, strlen(e->d_name) + 1);
        nv++;
    }
    closedir(d);
    if (nv > RS_PERSIST_CORRUPT_KEEP) {
        qsort(v, nv, sizeof(*v), aside_newest_first);
        for (size_t i = RS_PERSIST_CORRUPT_KEEP; i < nv; i++) {
            unlinkat(dfd, v[i].name, 0);
        }
    }
    free(v);
}

/* Rename the snapshot aside and fill err with where it went and why; returns code. */
static int
set_aside(int dfd, const char *dir, const names *n, int64_t now, int code, const char *reason,
          rs_error *err) {
    char name[128];
    char buf[128];
    long long t = now < 0 ? 0 : (long long)now;
    int e = 0;
    for (int k = 0; k < SET_ASIDE_TRIES; k++) {
        if (k == 0) {
            snprintf(name, sizeof(name), "%s%lld", n->corrupt_prefix, t);
        } else {
            snprintf(name, sizeof(name), "%s%lld.%d", n->corrupt_prefix, t, k);
        }
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            e = EEXIST;
            continue;
        }
        e = renameat(dfd, n->target, dfd, name) == 0 ? 0 : errno;
        break;
    }
    if (e != 0) {
        return rs_error_set(err, code, "%s/%s: %s; could not set it aside: %s", dir, n->target,
                            reason, errstr(e, buf, sizeof(buf)));
    }
    fsync(dfd); /* best effort: a lost rename only means we set it aside again next time */
    sweep(dfd, n, false, true);
    return rs_error_set(err, code, "%s/%s set aside as %s: %s", dir, n->target, name, reason);
}

/* Read the whole file (at most RS_STATE_MAX_BYTES + 1 bytes, so an oversize is seen). */
static int
read_all(int fd, off_t size_hint, char **out, size_t *len) {
    size_t cap = (size_t)size_hint + 1, used = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        return -ENOMEM;
    }
    for (;;) {
        if (used == cap) {
            if (cap > RS_STATE_MAX_BYTES) {
                break;
            }
            size_t ncap = cap * 2 > RS_STATE_MAX_BYTES + 1 ? RS_STATE_MAX_BYTES + 1 : cap * 2;
            char *grown = realloc(buf, ncap);
            if (grown == NULL) {
                free(buf);
                return -ENOMEM;
            }
            buf = grown;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + used, cap - used);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            free(buf);
            return -e;
        }
        if (r == 0) {
            break;
        }
        used += (size_t)r;
    }
    *out = buf;
    *len = used;
    return 0;
}

int
persist_load(const char *dir, const char *ring_name, int64_t now, uint32_t max_age_s, rs_state *out,
             rs_error *err) {
    names n;
    rs_state s;
    rs_error derr;
    struct stat st;
    char *text = NULL;
    size_t len = 0;
    int dfd = -1, fd = -1, rc;

    memset(out, 0, sizeof(*out));
    memset(&s, 0, sizeof(s));
    if ((rc = make_names(dir, ring_name, &n, err)) != 0) {
        return rc;
    }
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        if (errno == ENOENT) {
            return rs_error_set(err, -ENOENT, "no snapshot: %s does not exist", dir);
        }
        return sys_fail(err, errno, "open", dir, NULL);
    }
    sweep(dfd, &n, true, false);
    /* O_NONBLOCK: a FIFO planted at the path must not hang the start. */
    fd = openat(dfd, n.target, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        rc = errno == ENOENT ? rs_error_set(err, -ENOENT, "no snapshot at %s/%s", dir, n.target)
                             : sys_fail(err, errno, "open", dir, n.target);
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        rc = sys_fail(err, errno, "stat", dir, n.target);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = rs_error_set(err, -EINVAL, "%s/%s: not a regular file; left in place", dir, n.target);
        goto out;
    }
    if (st.st_size > (off_t)RS_STATE_MAX_BYTES) {
        snprintf(derr.msg, sizeof(derr.msg), "too large: %lld bytes (max %zu)",
                 (long long)st.st_size, RS_STATE_MAX_BYTES);
        rc = set_aside(dfd, dir, &n, now, -EINVAL, derr.msg, err);
        goto out;
    }
    if ((rc = read_all(fd, st.st_size, &text, &len)) != 0) {
        rc = rc == -ENOMEM ? rs_error_set(err, rc, "read %s/%s: out of memory", dir, n.target)
                           : sys_fail(err, -rc, "read", dir, n.target);
        goto out;
    }
    close(fd);
    fd = -1;
    rc = rs_state_decode(text, len, &s, &derr);
    if (rc == -EINVAL || rc == -EBADMSG || rc == -EPROTONOSUPPORT) {
        rc = set_aside(dfd, dir, &n, now, rc, derr.msg, err);
        goto out;
    }
    if (rc != 0) {
        rc = rs_error_set(err, rc, "%s/%s: %s", dir, n.target, derr.msg);
        goto out;
    }
    if (strcmp(s.ring, ring_name) != 0) {
        snprintf(derr.msg, sizeof(derr.msg), "holds ring \"%s\", not \"%s\"", s.ring, ring_name);
        rc = set_aside(dfd, dir, &n, now, -EINVAL, derr.msg, err);
        goto out;
    }
    int64_t age = now > s.written_at ? now - s.written_at : 0;
    if (max_age_s != 0 && age > (int64_t)max_age_s) {
        rc = rs_error_set(err, -ESTALE, "%s/%s: snapshot is %lld s old (max %u s); not loaded", dir,
                          n.target, (long long)age, max_age_s);
        *out = s; /* for its epoch: the next one must still be higher */
        memset(&s, 0, sizeof(s));
        goto out;
    }
    *out = s;
    memset(&s, 0, sizeof(s));
    rc = 0;
out:
    rs_state_free(&s);
    free(text);
    if (fd >= 0) {
        close(fd);
    }
    close(dfd);
    return rc;
}
