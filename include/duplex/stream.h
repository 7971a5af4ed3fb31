/*
 * libduplex: the duplex stream.
 *
 * A dx_stream is one end of a duplex byte channel. Its consumer writes to
 * it (dx_stream_write, dx_stream_end, dx_stream_destroy) and receives its
 * events (data, end, drain, finish, error, close) through callbacks. In-memory
 * pairs, file descriptors, callback transports, libuv streams and each side
 * of a filter all implement this one interface.
 *
 * THE CONTRACT (doc/streams.md has the long form)
 *
 *  - Data is delivered in order, each byte once, and all of it before
 *    on_end. on_end means the other side finished writing; the stream may
 *    still be written to (half-close). on_finish means everything written
 *    and the end were accepted by the layer below.
 *  - on_error fires at most once; on_close fires exactly once and is the
 *    last event. After on_error, on_close follows. A stream closes when it
 *    fails, when it is destroyed, or when both directions are done (on_end
 *    delivered and on_finish delivered).
 *  - Callbacks run synchronously from the call that caused them (a write
 *    into a memory pair delivers on the peer before returning), but never
 *    re-enter a callback of the same stream: an event that becomes due
 *    while one of the stream's callbacks runs is delivered after that
 *    callback returns, in order.
 *  - Any call, dx_stream_destroy() included, is safe from inside any
 *    callback of any stream.
 *  - Backpressure: dx_stream_write() returns DX_FULL when the write buffer
 *    is not empty and at or above its high-water mark; on_drain says when
 *    it has emptied. A paused stream stops reading from its source once its
 *    read buffer reaches the read high-water mark. Memory stays bounded by
 *    the marks.
 *
 * A stream is "flowing" while a consumer is attached and it is not paused:
 * then data and the end are delivered as they come.
 *
 * THREADS: a stream and everything attached to it are used from one thread
 * at a time. Different streams may live on different threads.
 *
 * LIFETIME: the handle returned by a constructor stays valid until the
 * owner calls dx_stream_destroy(), also after on_close. dx_stream_destroy()
 * aborts the stream if it is still open (on_close then fires, during the
 * call or, if called from inside a callback of the stream, right after
 * that callback returns) and releases the handle. The handle is one
 * reference to the stream's memory; dx_stream_ref() and dx_stream_unref()
 * add and drop others (they keep the memory, not the handle, valid).
 */
#ifndef DUPLEX_STREAM_H
#define DUPLEX_STREAM_H

#include <duplex/common.h>
#include <duplex/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dx_stream dx_stream;

/* Default high-water marks, as in Node.js: 16 KiB each way. */
#define DX_STREAM_DEFAULT_HWM ((size_t)16384)
/* Default limit of the write buffer: a write that would take the buffer
 * past it fails with DX_ENOBUFS and accepts nothing. */
#define DX_STREAM_DEFAULT_WRITE_LIMIT ((size_t)64 << 20)

/*
 * The consumer's callbacks. Any may be NULL. user is the pointer given to
 * dx_stream_set_events(). Pointers passed to a callback are valid only
 * during it.
 */
typedef struct dx_stream_events {
    /* len > 0 bytes arrived. */
    void (*on_data)(dx_stream *s, const uint8_t *data, size_t len, void *user);
    /* The other side ended its writing; no more data will come. */
    void (*on_end)(dx_stream *s, void *user);
    /* The write buffer, which had reached its high-water mark, is empty. */
    void (*on_drain)(dx_stream *s, void *user);
    /* After dx_stream_end(): all data and the end were accepted below. */
    void (*on_finish)(dx_stream *s, void *user);
    /* The stream failed; on_close follows. */
    void (*on_error)(dx_stream *s, const dx_error *err, void *user);
    /* The last event. The handle stays valid until dx_stream_destroy(). */
    void (*on_close)(dx_stream *s, void *user);
} dx_stream_events;

/*
 * Attaches the consumer: copies *ev and user. A non-NULL ev attaches even
 * if all its callbacks are NULL (events without a callback are dropped);
 * NULL detaches. A stream does not read from its source before a consumer
 * is attached, and every event waits for one: what happened before (data
 * pushed early, the end, an error, drain, finish, the close) is delivered
 * on attach, before this call returns (data and the end only if the stream
 * is not paused). A failure drops undelivered data: an error that came
 * before the attach is reported, the data before it is not.
 * Returns 0, DX_EINVAL for a NULL stream.
 */
DX_EXTERN int dx_stream_set_events(dx_stream *s, const dx_stream_events *ev,
                                   void *user);
/* The user pointer given to dx_stream_set_events(), or NULL. */
DX_EXTERN void *dx_stream_user(const dx_stream *s);

/*
 * Writes len bytes. Zero bytes is not an error (and does nothing). The
 * bytes are handed to the layer below at once when it can take them;
 * what it cannot take yet is copied into the stream's write buffer, so
 * data may be reused as soon as the call returns.
 *
 * Returns 0 (accepted), DX_FULL (accepted; the write buffer is not empty
 * and at or above its high-water mark: wait for on_drain), or an error
 * with nothing accepted: DX_EWRITEAFTEREND after dx_stream_end(),
 * DX_EDESTROYED after close, DX_ENOBUFS if the write buffer would then
 * hold more than the write limit, DX_ENOMEM, DX_ENOTSUP for a read-only
 * stream, DX_EINVAL for a NULL stream, NULL data with len > 0 or a NULL
 * iov with iovcnt > 0. A failure of the layer below (for instance
 * DX_EPIPE) is returned too, and the stream then fails with it (on_error,
 * on_close); part of the bytes may have gone below before it failed.
 * A callback the write causes may end this stream (a peer in the same
 * process that answers at once and ends): the end is carried out when
 * the write returns, and a stream that then finishes and closes cleanly
 * still returns 0.
 *
 * May trigger: on_error and on_close of this stream, and the events of
 * other streams (a memory pair delivers to its peer).
 */
DX_EXTERN int dx_stream_write(dx_stream *s, const void *data, size_t len);
/* The same for iovcnt buffers, taken as one write (all or nothing). */
DX_EXTERN int dx_stream_writev(dx_stream *s, const dx_iov *iov, size_t iovcnt);

/*
 * Ends the write side (half-close) once everything written before has
 * been handed below; on_finish then fires. Ending uncorks (the cork count
 * drops to zero). Reading goes on until on_end. On a read-only stream the
 * end finishes at once. Returns 0, DX_EWRITEAFTEREND if already ended,
 * DX_EDESTROYED after close, DX_EINVAL for NULL.
 */
DX_EXTERN int dx_stream_end(dx_stream *s);

/*
 * Aborts the stream if it is still open (buffered data is dropped; the
 * layer below is released; on_close fires) and releases the handle. Safe
 * from any callback. NULL is ignored.
 */
DX_EXTERN void dx_stream_destroy(dx_stream *s);

/*
 * As dx_stream_destroy(), but if the stream is still open it first fails
 * with err (on_error, then on_close). Takes ownership of err in every case
 * (it is freed if the stream is NULL or already closed); a NULL err
 * reports DX_ENOMEM. An err without a layer gets the stream's kind.
 */
DX_EXTERN void dx_stream_destroy_with_error(dx_stream *s, dx_error *err);

/*
 * Flow control of the read side. While paused no on_data or on_end is
 * delivered; arriving data is buffered up to the read high-water mark and
 * then the stream stops reading from its source, which pushes back on the
 * writer at the other end. dx_stream_resume() delivers what was buffered
 * before it returns. Both return 0, or DX_EINVAL for NULL; on a closed
 * stream they only set the flag.
 */
DX_EXTERN int dx_stream_pause(dx_stream *s);
DX_EXTERN int dx_stream_resume(dx_stream *s);
DX_EXTERN bool dx_stream_is_paused(const dx_stream *s);

/*
 * Puts bytes back at the front of the read buffer, to be delivered before
 * anything else (the bytes a protocol sniffer or a STARTTLS exchange read
 * too early). They are copied. Delivered at once if the stream is flowing
 * and no callback of it is running. Returns 0, DX_ENOMEM, DX_EINVAL,
 * DX_ESTATE after on_end was delivered, DX_EDESTROYED after close.
 */
DX_EXTERN int dx_stream_unshift(dx_stream *s, const void *data, size_t len);

/*
 * Corking: while the cork count is above zero, writes only go into the
 * write buffer; the last dx_stream_uncork() hands all of it to the layer
 * below in one call, so that many small writes become one (one TLS record
 * instead of many). Nested calls count; uncork at zero, and NULL, are
 * ignored. dx_stream_end() uncorks.
 */
DX_EXTERN void dx_stream_cork(dx_stream *s);
DX_EXTERN void dx_stream_uncork(dx_stream *s);

/* Bytes in the write buffer, not yet accepted below. 0 after close. */
DX_EXTERN size_t dx_stream_write_buffered(const dx_stream *s);
/* Bytes in the read buffer, not yet delivered to the consumer. */
DX_EXTERN size_t dx_stream_read_buffered(const dx_stream *s);

/*
 * Sets the high-water marks (0 is allowed: then every write that cannot
 * be taken at once returns DX_FULL, and a paused stream buffers at most
 * what one read of its source gives). Returns 0 or DX_EINVAL.
 */
DX_EXTERN int dx_stream_set_high_water(dx_stream *s, size_t read_hwm,
                                       size_t write_hwm);
/* Sets the hard limit of the write buffer (0 means no limit). Returns 0, or
 * DX_EINVAL for NULL. */
DX_EXTERN int dx_stream_set_write_limit(dx_stream *s, size_t limit);

/* State flags returned by dx_stream_state(). CLOSED is set from the moment
 * the stream closes, before on_close is delivered; READABLE and WRITABLE
 * are then cleared. */
#define DX_STREAM_READABLE 0x01u /* on_end not yet delivered */
#define DX_STREAM_WRITABLE 0x02u /* dx_stream_end() not yet called */
#define DX_STREAM_ENDED 0x04u    /* on_end delivered */
#define DX_STREAM_FINISHED 0x08u /* on_finish delivered */
#define DX_STREAM_ERRORED 0x10u  /* on_error delivered or pending */
#define DX_STREAM_CLOSED 0x20u   /* closed: no further events */
#define DX_STREAM_PAUSED 0x40u   /* paused by the consumer */
DX_EXTERN unsigned dx_stream_state(const dx_stream *s);

/* The error the stream failed with, or NULL. Valid until destroy. */
DX_EXTERN const dx_error *dx_stream_error(const dx_stream *s);

/* The kind of stream, from its implementation: "pair", "fd", ... ("" for
 * NULL or an implementation without a name). Static storage. */
DX_EXTERN const char *dx_stream_kind(const dx_stream *s);

/* ------------------------------------------------------------------------
 * For implementers: how a transport or a filter becomes a dx_stream.
 *
 * The implementation fills a dx_stream_ops table (static storage) and
 * creates the stream with dx_stream_new(). The core keeps the write
 * buffer, the read buffer, the event order, corking, the marks and the
 * lifetime; the implementation only moves bytes:
 *
 *  - write: the core offers bytes; the implementation takes what it can
 *    without blocking and says how much (*taken). Taking less than offered
 *    means "full": it then calls dx_stream_writable() when it can take
 *    more (also from inside its own write). Returning a negative code fails
 *    the stream with it. NULL makes a read-only stream: dx_stream_write()
 *    returns DX_ENOTSUP.
 *  - shutdown: called once, after dx_stream_end() and after every buffered
 *    byte was taken: end the write side below, synchronously. 0, or a
 *    negative code that fails the stream. NULL: nothing to do.
 *  - read_start / read_stop: the consumer wants data, or wants no more for
 *    now (they alternate, starting with read_start). The implementation
 *    delivers what it reads with dx_stream_push(), also from inside
 *    read_start, and the end of input with dx_stream_push_end().
 *  - close: called once when the stream closes for any reason. Release the
 *    layer below (close the fd, tell the peer). No core call that delivers
 *    (push, push_end, fail) has any effect afterwards.
 *  - release: called once just before the memory is freed (optional).
 *
 * Only close is required. The implementation's state lives in impl_size
 * bytes allocated with the stream (dx_stream_impl()).
 *
 * Callbacks of the consumer run inside push, push_end, fail and writable:
 * the consumer may destroy the stream there. The memory stays valid until
 * the implementation's own function returns only if it holds a reference
 * (dx_stream_ref() before, dx_stream_unref() after); it can then tell from
 * dx_stream_state() & DX_STREAM_CLOSED that it must stop.
 * --------------------------------------------------------------------- */

typedef struct dx_stream_ops {
    const char *name;
    int (*write)(dx_stream *s, const dx_iov *iov, size_t iovcnt, size_t *taken);
    int (*shutdown)(dx_stream *s);
    void (*read_start)(dx_stream *s);
    void (*read_stop)(dx_stream *s);
    void (*close)(dx_stream *s);
    void (*release)(dx_stream *s);
} dx_stream_ops;

/*
 * Creates a stream over ops with impl_size zeroed bytes of implementation
 * state. The new stream is not reading (read_start comes when a consumer
 * wants data). Returns 0, DX_EINVAL (NULL ops, no close), DX_ENOMEM.
 */
DX_EXTERN int dx_stream_new(const dx_stream_ops *ops, size_t impl_size,
                            dx_stream **out);
/* The implementation's state, impl_size bytes. */
DX_EXTERN void *dx_stream_impl(const dx_stream *s);
/* The stream whose dx_stream_impl() is impl. */
DX_EXTERN dx_stream *dx_stream_from_impl(void *impl);

/*
 * Delivers len bytes read from the layer below (len 0 does nothing). If the
 * consumer is flowing and no callback of this stream runs, on_data gets
 * the caller's buffer directly; otherwise the bytes are copied into the
 * read buffer. Returns 1 if the stream wants more now, 0 if the
 * implementation should stop reading until read_start (paused, buffer at
 * the mark, closed; read_stop is called too), DX_ENOMEM if the bytes could
 * not be buffered (the stream then fails with DX_ENOMEM), DX_EINVAL.
 */
DX_EXTERN int dx_stream_push(dx_stream *s, const void *data, size_t len);
/* The layer below has no more data (EOF). on_end follows the data. */
DX_EXTERN void dx_stream_push_end(dx_stream *s);
/* The layer below can take more: the core offers the write buffer again. */
DX_EXTERN void dx_stream_writable(dx_stream *s);
/* True while the consumer wants data (between read_start and read_stop). */
DX_EXTERN bool dx_stream_wants_read(const dx_stream *s);
/*
 * Fails the stream (on_error, then on_close) with a new error made as by
 * dx_error_new() with the stream's kind as layer. Ignored if the stream
 * already failed or closed. fmt may be NULL.
 */
DX_EXTERN void dx_stream_fail(dx_stream *s, int code, const char *name,
                              const char *fmt, ...) DX_PRINTF(4, 5);
/* The same with an error object, whose ownership passes to the stream
 * (NULL reports DX_ENOMEM). Consumers may call it too, to fail a stream
 * without releasing the handle. */
DX_EXTERN void dx_stream_fail_with(dx_stream *s, dx_error *err);
/*
 * Closes the stream now if it is still open, without an error: buffered
 * data is dropped, the layer below is released, on_close fires. Unlike
 * dx_stream_destroy() the handle stays valid. For implementers whose layer
 * below went away, and for consumers that abort a stream they keep.
 */
DX_EXTERN void dx_stream_abort(dx_stream *s);
/* References keeping the memory valid across calls that may call back. */
DX_EXTERN void dx_stream_ref(dx_stream *s);
DX_EXTERN void dx_stream_unref(dx_stream *s);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_STREAM_H */
