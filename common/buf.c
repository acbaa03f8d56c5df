/* Growable output byte buffer (see rs_buf.h). */
#include "rs_buf.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RS_BUF_MIN_CAP ((size_t)256)

void
rs_buf_init(rs_buf *b) {
    assert(b != NULL);
    b->data = NULL;
    b->head = 0;
    b->len = 0;
    b->cap = 0;
}

void
rs_buf_free(rs_buf *b) {
    if (b == NULL)
        return;
    free(b->data);
    rs_buf_init(b);
}

int
rs_buf_reserve(rs_buf *b, size_t extra) {
    assert(b != NULL);
    if (extra > RS_BUF_MAX - b->len)
        return -ENOMEM;
    size_t need = b->len + extra;
    if (extra <= b->cap - b->head - b->len)
        return 0;
    /* Reclaim the consumed front before growing: partial writes leave a gap there. */
    if (b->head > 0) {
        if (b->len > 0)
            memmove(b->data, b->data + b->head, b->len);
        b->head = 0;
        if (need <= b->cap)
            return 0;
    }
    size_t cap = b->cap < RS_BUF_MIN_CAP ? RS_BUF_MIN_CAP : b->cap;
    while (cap < need)
        cap = cap > RS_BUF_MAX / 2 ? RS_BUF_MAX : cap * 2;
    char *data = realloc(b->data, cap);
    if (data == NULL)
        return -ENOMEM;
    b->data = data;
    b->cap = cap;
    return 0;
}

int
rs_buf_append(rs_buf *b, const void *p, size_t n) {
    assert(b != NULL && (p != NULL || n == 0));
    if (n == 0)
        return 0;
    int rc = rs_buf_reserve(b, n);
    if (rc < 0)
        return rc;
    memcpy(b->data + b->head + b->len, p, n);
    b->len += n;
    return 0;
}

void
rs_buf_consume(rs_buf *b, size_t n) {
    assert(b != NULL && n <= b->len);
    b->len -= n;
    b->head = b->len == 0 ? 0 : b->head + n;
    if (b->len == 0 && b->cap > RS_BUF_KEEP)
        rs_buf_free(b);
}

void
rs_buf_clear(rs_buf *b) {
    assert(b != NULL);
    b->head = 0;
    b->len = 0;
}

const char *
rs_buf_data(const rs_buf *b) {
    assert(b != NULL);
    return b->data != NULL ? b->data + b->head : "";
}

size_t
rs_buf_len(const rs_buf *b) {
    assert(b != NULL);
    return b->len;
}
