/* Snapshot files: atomic write of <dir>/<ring>.state.json and a load that refuses damaged,
 * foreign or stale files. Plain blocking POSIX; no logging: codes and messages go back. */
#ifndef RS_PERSIST_H
#define RS_PERSIST_H

#include <stdint.h>

#include "rs_ring.h"
#include "rs_state.h"

#define RS_PERSIST_CORRUPT_KEEP 3 /* set-aside files kept per ring; older ones are deleted */

/* Write s as the snapshot of ring_name in dir, atomically and durably: the text goes to
 * <dir>/.<ring>.state.json.tmp.<pid> (created exclusively, mode 0640 less the umask),
 * is fsync'd, renamed over <dir>/<ring>.state.json, and dir is fsync'd. After a crash at
 * any point the snapshot is the previous one or the new one, never a mix. dir is created
 * (with missing parents, mode 0750) when absent. A temp file left with our own pid by an
 * earlier process (pid reuse, e.g. pid 1 in a container) is replaced.
 * ring_name must be 1..RS_STATE_RING_MAX characters from [A-Za-z0-9_.-] and equal
 * s->ring; s must pass rs_state_validate. Blocking: call it off the event loop thread or
 * accept the fsync latency.
 * Returns 0, or with err filled (step and path: "fsync /x/.r.state.json.tmp.7: No space
 * left on device") and the temp file removed: -EINVAL bad ring name or state,
 * -ENAMETOOLONG dir too long, -ENOMEM, or the -errno of the failing system call. If only
 * the final directory fsync fails, the new snapshot is in place but may not survive a
 * power loss. */
int persist_write(const char *dir, const char *ring_name, const rs_state *s, rs_error *err);

/* Load the snapshot of ring_name from dir into *out (free with rs_state_free). First
 * removes leftover temp files <dir>/.<ring>.state.json.tmp.* (a crash mid-write; they are
 * never loaded). now is the current unix time (injectable for tests); max_age_s 0 means
 * no age limit. A written_at in the future (clock skew) is accepted and counts as age 0:
 * the snapshot is still the last known ring and is reconciled with Consul right after.
 * Returns 0 on success; otherwise *out is zeroed (but see -ESTALE) and err filled:
 *   -ENOENT  no snapshot (no dir or no file);
 *   -EINVAL, -EBADMSG, -EPROTONOSUPPORT  the file is corrupt, foreign (including a state
 *            of another ring), larger than RS_STATE_MAX_BYTES, has a bad checksum or an
 *            unsupported format: it is renamed to <ring>.state.json.corrupt-<now>[.<k>]
 *            in dir (at most RS_PERSIST_CORRUPT_KEEP such files are kept, oldest deleted)
 *            and err says "<path> set aside as <new name>: <reason>", so the next load
 *            returns -ENOENT;
 *   -ESTALE  now - written_at > max_age_s: the file stays in place, err gives its age,
 *            and *out still holds the decoded state (the caller must rs_state_free it):
 *            too old to serve, its epoch still bounds the next one from below;
 *   -ENAMETOOLONG, -ENOMEM, or the -errno of a failing open/read (file left in place).
 * A path that exists but is not a regular file is reported as -EINVAL and left alone. */
int persist_load(const char *dir, const char *ring_name, int64_t now, uint32_t max_age_s,
                 rs_state *out, rs_error *err);

#endif
