/* Structured logging: one line per event on stderr, key=value (default) or JSON,
 * filtered by level. Build a line with log_begin, add fields, emit with log_end. */
#ifndef RS_LOG_H
#define RS_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "rs_config.h"

typedef struct log_line {
    rs_log_level level;
    bool active; /* false when filtered out: field calls are then no-ops */
    bool json;
    size_t len;
    char buf[4096];
} log_line;

/* Process-wide settings (the daemon has one log); defaults: info, kv. */
void log_configure(rs_log_level level, rs_log_format format);
bool log_enabled(rs_log_level level);
const char *log_level_name(rs_log_level level);

/* Start a line for an event ("ring_change", "state_written", ...). */
void log_begin(log_line *l, rs_log_level level, const char *event);
void log_str(log_line *l, const char *key, const char *value);
void log_strn(log_line *l, const char *key, const char *value, size_t len);
void log_u64(log_line *l, const char *key, uint64_t value);
void log_i64(log_line *l, const char *key, int64_t value);
void log_f(log_line *l, const char *key, double value);
void log_bool(log_line *l, const char *key, bool value);
/* Write the line (truncated at the buffer's end, never split) to stderr. */
void log_end(log_line *l);

/* One-call form for simple events: log_msg(RS_LOG_ERROR, "startup_failed", "reason", s). */
void log_msg(rs_log_level level, const char *event, const char *key, const char *value);

#endif
