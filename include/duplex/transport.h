/*
 * libduplex: the callback transport.
 *
 * A stream made of user-supplied read, write, shutdown and close
 * functions: the way a serial driver, a custom bus or any byte channel
 * without a file descriptor plugs in.
 *
 * Two forms:
 *  - non-blocking (the default): read and write return DX_EAGAIN when they
 *    would block; the owner calls dx_transport_ready() when the channel
 *    becomes readable or writable, and dx_transport_interest() tells which
 *    of the two the stream is waiting for.
 *  - blocking (DX_TRANSPORT_BLOCKING): write blocks until it has written
 *    something, read blocks until it has read something. Writes complete
 *    inside dx_stream_write(); each dx_transport_ready(s, DX_READABLE)
 *    performs one blocking read and delivers what it read.
 *
 * Either way, every byte passes through the stream core, with the same
 * events, buffering and contract as any other dx_stream.
 */
#ifndef DUPLEX_TRANSPORT_H
#define DUPLEX_TRANSPORT_H

#include <duplex/stream.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Readiness bits for dx_transport_ready() and dx_transport_interest(). */
#define DX_READABLE 0x1u
#define DX_WRITABLE 0x2u

/* Flags for dx_transport_new(). */
#define DX_TRANSPORT_BLOCKING 0x1u

typedef struct dx_transport_ops {
    /*
     * Reads up to cap bytes into buf. Returns the count (> 0), 0 at end of
     * input, DX_EAGAIN if nothing can be read now (non-blocking form), or
     * another negative DX_E* code, which fails the stream. Required.
     */
    long (*read)(void *arg, void *buf, size_t cap);
    /*
     * Writes up to len bytes. Returns the count written (may be short),
     * DX_EAGAIN (or 0) if nothing can be written now, or a negative DX_E*
     * code, which fails the stream. Required. In the blocking form a
     * DX_EAGAIN or 0 also means "no progress now": the stream then waits
     * for dx_transport_ready(s, DX_WRITABLE) like the non-blocking form.
     */
    long (*write)(void *arg, const void *buf, size_t len);
    /* Ends the write side (half-close). Optional; 0 or a DX_E* code. */
    int (*shutdown)(void *arg);
    /* Releases the channel; called once when the stream closes. Optional. */
    void (*close)(void *arg);
} dx_transport_ops;

/*
 * Creates a stream over ops. ops is copied; arg is passed to each
 * function. flags: 0 or DX_TRANSPORT_BLOCKING. Returns 0, DX_EINVAL (no
 * read or write function, unknown flags), DX_ENOMEM.
 */
DX_EXTERN int dx_transport_new(const dx_transport_ops *ops, void *arg,
                               unsigned flags, dx_stream **out);

/*
 * Tells the stream that the channel is ready: DX_READABLE reads (in the
 * non-blocking form until read says DX_EAGAIN or the consumer wants no
 * more; in the blocking form once), DX_WRITABLE writes what is buffered.
 * Returns 0, DX_EINVAL (not a transport stream), DX_EDESTROYED after close.
 * Runs the consumer's callbacks.
 */
DX_EXTERN int dx_transport_ready(dx_stream *s, unsigned events);

/*
 * The readiness the stream waits for now: DX_READABLE while the consumer
 * wants data and input has not ended, DX_WRITABLE while bytes wait for the
 * channel. 0 after close.
 */
DX_EXTERN unsigned dx_transport_interest(const dx_stream *s);

/* Size of the buffer each read fills (default 16384). Returns 0, or
 * DX_EINVAL outside 1..1 MiB or for a stream that is not a transport. */
DX_EXTERN int dx_transport_set_read_size(dx_stream *s, size_t size);

/* True if s was made by dx_transport_new() or dx_fd_stream_new(): the
 * calls of this header work on both. */
DX_EXTERN bool dx_is_transport(const dx_stream *s);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_TRANSPORT_H */
