/* A small growable byte buffer for outgoing data: append at the tail, consume from the
 * front after (possibly partial) writes. Caller-embedded; no I/O. */
#ifndef RS_BUF_H
#define RS_BUF_H

#include <stddef.h>

/* Hard cap on the bytes one buffer may hold; growing beyond it fails with -ENOMEM.
 * Per-client output policy (e.g. "unanswered output per client") belongs to the caller,
 * which can compare rs_buf_len() against its own limit. */
#define RS_BUF_MAX ((size_t)256 * 1024 * 1024)

/* Consuming a buffer down to empty releases its storage when its capacity exceeds this,
 * so one large reply does not pin memory for the rest of a connection's life. */
#define RS_BUF_KEEP ((size_t)64 * 1024)

/* Fields are private: use the functions below. Content is data[head .. head + len). */
typedef struct rs_buf {
    char *data;
    size_t head;
    size_t len;
    size_t cap;
} rs_buf;

/* Initialise an empty buffer; allocates nothing. */
void rs_buf_init(rs_buf *b);

/* Release the storage and leave b empty (re-initialised, so it may be reused).
 * b may be NULL. Pointers previously returned by rs_buf_data() become invalid. */
void rs_buf_free(rs_buf *b);

/* Ensure at least `extra` more bytes can be appended without failing. Returns 0, or
 * -ENOMEM if malloc fails or the total would exceed RS_BUF_MAX; on failure the content
 * is unchanged. May move the content (invalidating rs_buf_data() pointers). */
int rs_buf_reserve(rs_buf *b, size_t extra);

/* Append n bytes from p (p may be NULL when n == 0). Returns 0 or -ENOMEM; on failure
 * nothing is appended. May move the content. */
int rs_buf_append(rs_buf *b, const void *p, size_t n);

/* Drop the first n bytes (n <= rs_buf_len(b); asserted), e.g. after a partial write.
 * Does not move the remaining bytes. When the buffer becomes empty its storage is
 * released if its capacity exceeds RS_BUF_KEEP. */
void rs_buf_consume(rs_buf *b, size_t n);

/* Drop all content, keeping the storage for reuse. */
void rs_buf_clear(rs_buf *b);

/* The unconsumed bytes: rs_buf_len(b) of them starting at rs_buf_data(b). The pointer
 * is valid until the next call that appends, reserves or frees; it is never NULL. */
const char *rs_buf_data(const rs_buf *b);
size_t rs_buf_len(const rs_buf *b);

#endif
