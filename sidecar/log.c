/* Structured logging to stderr: key=value with quoting, or JSON objects. */
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static rs_log_level min_level = RS_LOG_INFO;
static bool json_format = false;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void
log_configure(rs_log_level level, rs_log_format format) {
    min_level = level;
    json_format = format == RS_LOG_JSON;
}

bool
log_enabled(rs_log_level level) {
    return level >= min_level;
}

const char *
log_level_name(rs_log_level level) {
    return (unsigned)level < 4 ? level_names[level] : "info";
}

static void
put(log_line *l, const char *s, size_t n) {
    size_t room = sizeof(l->buf) - 2 - l->len; /* keep room for "}\n" */
    if (n > room) {
        n = room;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void
puts_(log_line *l, const char *s) {
    put(l, s, strlen(s));
}

/* Quote for kv when needed; escape for JSON always. Control bytes become \xHH. */
static void
put_value(log_line *l, const char *v, size_t n, bool quote_always) {
    bool quote = quote_always || n == 0;
    for (size_t i = 0; i < n && !quote; i++) {
        unsigned char c = (unsigned char)v[i];
        quote = c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f;
    }
    if (quote) {
        put(l, "\"", 1);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(l, esc, 2);
        } else if (c < 0x20 || c == 0x7f || (!l->json && c >= 0x80)) {
            snprintf(esc, sizeof(esc), l->json ? "\\u%04x" : "\\x%02x", c);
            puts_(l, esc);
        } else {
            put(l, (const char *)&v[i], 1);
        }
    }
    if (quote) {
        put(l, "\"", 1);
    }
}

static void
put_key(log_line *l, const char *key) {
    if (l->json) {
        puts_(l, ",\"");
        puts_(l, key);
        puts_(l, "\":");
    } else {
        puts_(l, " ");
        puts_(l, key);
        puts_(l, "=");
    }
}

void
log_begin(log_line *l, rs_log_level level, const char *event) {
    l->level = level;
    l->active = log_enabled(level);
    l->json = json_format;
    l->len = 0;
    if (!l->active) {
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    if (l->json) {
        puts_(l, "{\"ts\":\"");
        puts_(l, when);
        puts_(l, "\",\"level\":\"");
        puts_(l, log_level_name(level));
        puts_(l, "\",\"event\":");
        put_value(l, event, strlen(event), true);
    } else {
        puts_(l, "ts=");
        puts_(l, when);
        puts_(l, " level=");
        puts_(l, log_level_name(level));
        puts_(l, " event=");
        put_value(l, event, strlen(event), false);
    }
}

void
log_strn(log_line *l, const char *key, const char *value, size_t len) {
    if (!l->active) {
        return;
    }
    put_key(l, key);
    put_value(l, value ? value : "", value ? len : 0, l->json);
}

void
log_str(log_line *l, const char *key, const char *value) {
    log_strn(l, key, value, value ? strlen(value) : 0);
}

void
log_u64(log_line *l, const char *key, uint64_t value) {
    if (!l->active) {
        return;
    }
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%" PRIu64, value);
    put_key(l, key);
    puts_(l, tmp);
}

void
log_i64(log_line *l, const char *key, int64_t value) {
    if (!l->active) {
        return;
    }
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%" PRId64, value);
    put_key(l, key);
    puts_(l, tmp);
}

void
log_f(log_line *l, const char *key, double value) {
    if (!l->active) {
        return;
    }
    char tmp[48];
    snprintf(tmp, sizeof(tmp), "%.4g", value);
    put_key(l, key);
    puts_(l, tmp);
}

void
log_bool(log_line *l, const char *key, bool value) {
    if (!l->active) {
        return;
    }
    put_key(l, key);
    puts_(l, value ? "true" : "false");
}

void
log_end(log_line *l) {
    if (!l->active) {
        return;
    }
    if (l->json) {
        l->buf[l->len++] = '}';
    }
    l->buf[l->len++] = '\n';
    /* One write per line so concurrent writers never interleave within a line. */
    ssize_t rc = write(STDERR_FILENO, l->buf, l->len);
    (void)rc;
}

void
log_msg(rs_log_level level, const char *event, const char *key, const char *value) {
    log_line l;
    log_begin(&l, level, event);
    if (key != NULL) {
        log_str(&l, key, value);
    }
    log_end(&l);
}
