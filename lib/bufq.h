/*
 * Internal: a queue of bytes kept in a list of chunks. Small appends are
 * coalesced into the last chunk; chunks are freed as soon as they are
 * consumed, so an idle queue holds no memory. A few bytes put into an
 * empty queue take a small chunk (1 KiB), anything more a chunk of at
 * least DX_BUFQ_CHUNK.
 */
#ifndef DX_LIB_BUFQ_H
#define DX_LIB_BUFQ_H

#include <stddef.h>
#include <stdint.h>

#include <duplex/common.h>

/* Smallest chunk allocated past the first small one: one full TLS record. */
#define DX_BUFQ_CHUNK ((size_t)16384)

typedef struct dx_chunk {
    struct dx_chunk *next;
    size_t start, end, cap;
    uint8_t data[];
} dx_chunk;

typedef struct dx_bufq {
    dx_chunk *head, *tail;
    size_t bytes;
    dx_chunk *spare; /* a small chunk kept by dx_bufq_recycle(), or NULL */
} dx_bufq;

/* Appends the bytes of iov[0..n), skipping the first `skip` bytes, taking at
 * most `max` bytes. All or nothing: returns 0 or DX_ENOMEM with the queue
 * unchanged. */
int dx_bufq_appendv(dx_bufq *q, const dx_iov *iov, size_t n, size_t skip,
                    size_t max);
int dx_bufq_append(dx_bufq *q, const void *data, size_t len);
/* Puts the bytes in front of everything queued. 0 or DX_ENOMEM. */
int dx_bufq_prependv(dx_bufq *q, const dx_iov *iov, size_t n, size_t skip);
/* Fills up to max iov entries with the queued bytes, in order; returns the
 * count. */
size_t dx_bufq_peekv(const dx_bufq *q, dx_iov *iov, size_t max);
/* Drops the first n bytes (n <= q->bytes). */
void dx_bufq_consume(dx_bufq *q, size_t n);
/* Frees everything, the spare chunk too. */
void dx_bufq_clear(dx_bufq *q);

/* Total length of an iov array. Returns DX_EINVAL on overflow or a NULL
 * base with a length, 0 on success. */
int dx_iov_total(const dx_iov *iov, size_t n, size_t *total);



/* Drops the first n bytes, which lie in the first chunk, without freeing
 * it even if it empties (n < its length keeps it non-empty anyway). */
void dx_bufq_consume_keep(dx_bufq *q, size_t n);
/* Detaches the first chunk (caller frees it with dx_free()); NULL if empty. */
dx_chunk *dx_bufq_pop(dx_bufq *q);
/* Puts a detached chunk back in front. */
void dx_bufq_push_front(dx_bufq *q, dx_chunk *c);
/* Takes back a detached chunk that was read: kept as the queue's spare if
 * it is a small one and there is none yet (the next small append into the
 * empty queue uses it instead of allocating), else freed. */
void dx_bufq_recycle(dx_bufq *q, dx_chunk *c);
/* Frees the spare chunk, if any. */
void dx_bufq_drop_spare(dx_bufq *q);

/* Copies the first bytes queued, up to len, to dst and drops them (their
 * chunks are freed as they empty); returns the count. */
size_t dx_bufq_take(dx_bufq *q, void *dst, size_t len);
#endif
