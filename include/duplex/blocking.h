/*
 * libduplex: blocking TLS, for programs without an event loop.
 *
 * A dx_blocking drives one TLS connection (dx_tls, <duplex/tls_filter.h>)
 * over a blocking transport with plain calls that return when their work
 * is done or failed: handshake, read, write, close. It is meant for small
 * programs and small systems (a serial console, a command-line client, a
 * test tool); it uses no thread, no global state and no event loop, and
 * it is written only with the library's public calls: the connection is
 * driven in the SecurePair shape, records read from the transport are
 * written to the connection's lower stream and the records it delivers
 * are written to the transport.
 *
 * TWO TRANSPORTS
 *
 *  - Callbacks (dx_blocking_new): read and write functions that block, as
 *    a serial driver's or a socket's do.
 *  - File descriptors (dx_blocking_new_fd): one fd for both directions (a
 *    socket, a tty, a serial device) or one to read and one to write (a
 *    pipe pair). Waiting is done with poll(2), so that the connection's
 *    deadlines (handshake timeout, idle timeout) are kept while a call
 *    waits; a call that waits to write also reads what arrives meanwhile.
 *    EINTR is retried; a write to a closed pipe, tty or socket fails with
 *    DX_EPIPE and never raises SIGPIPE (MSG_NOSIGNAL on sockets, SIGPIPE
 *    blocked in the calling thread around writes to other fds).
 *
 * USE
 *
 *   dx_tls_new(ctx, DX_TLS_CLIENT, &t);
 *   dx_tls_set_servername(t, "example.com");     options, as usual
 *   dx_blocking_new_fd(t, fd, fd, 0, &b);        b owns t from here
 *   dx_blocking_write(b, "hello\n", 6);          the handshake comes first
 *   n = dx_blocking_read(b, buf, sizeof(buf));   > 0 bytes, 0 at the end
 *   dx_blocking_close(b, 0);                     close_notify
 *   dx_blocking_free(b);                         releases t too
 *
 * The connection is made and configured by the caller (dx_tls_new and the
 * dx_tls_set_* options), is neither started nor attached, and nothing
 * consumes its streams: dx_blocking_new*() takes it over and from then on
 * owns it. It replaces the connection's TLS events and clock with its own
 * (set yours with dx_blocking_set_events() and dx_blocking_set_clock(),
 * which forward them), and becomes the consumer of both of its streams.
 * Between calls the connection's getters (dx_tls_protocol,
 * dx_tls_peer_cert, dx_tls_authorized, ...) and the calls that start
 * something on it (dx_tls_renegotiate, dx_tls_key_update,
 * dx_tls_request_client_cert) may be used on dx_blocking_tls(): what they
 * send is written to the transport at once (over fds, as far as it takes
 * it without waiting; a failure is reported by the next call), the rest
 * during the next call, which also runs their callbacks. Its streams must
 * not be touched and it must not be destroyed but through
 * dx_blocking_free().
 *
 * RETURN CODES: every function returns 0 (or a count) or a negative DX_E*
 * code, and every failure leaves a dx_error (dx_blocking_error()) whose
 * name is the precise code string: a TLS failure has Node's code
 * ("UNABLE_TO_VERIFY_LEAF_SIGNATURE", "CERT_HAS_EXPIRED",
 * "ERR_TLS_HANDSHAKE_TIMEOUT", "ERR_SSL_WRONG_VERSION_NUMBER",
 * "ERR_SSL_UNEXPECTED_EOF_WHILE_READING", "ECONNRESET", ...) with layer
 * "tls", as the filter reports it; a failure of the fd transport has the
 * errno name ("EPIPE", "ECONNRESET", "EIO", ...), layer "fd" and the
 * system call in the detail; a failure reported by a callback has
 * dx_err_name() of its code and layer "transport"; the blocking layer's
 * own errors have layer "blocking".
 *
 * Codes: DX_EINVAL (bad arguments), DX_ESTATE (a call from inside a TLS
 * event of the connection, or a connection that was started before it was
 * handed over), DX_ETLS (TLS failed: handshake, verification, a bad
 * record, the peer's alert, a truncation), DX_ECONNRESET (the transport
 * ended or was reset before the handshake completed, or while the
 * connection still needed the peer), DX_ETIMEDOUT (a deadline: see TIME),
 * DX_EWRITEAFTEREND (a write after dx_blocking_close() or after the
 * peer's close_notify), DX_ENOBUFS (see MEMORY), DX_ENOMEM, and the
 * transport's codes (DX_EPIPE, DX_EIO, ...).
 *
 * A failure of the connection is final: every later call returns the
 * same code and error. The exceptions, which leave the connection usable,
 * are DX_EINVAL, DX_ESTATE from inside an event, DX_EWRITEAFTEREND, and
 * DX_ETIMEDOUT from an idle timeout in a handshake, read or close.
 *
 * TIME: the connection's deadlines are dx_tls_set_handshake_timeout()
 * (default 120 s) and dx_tls_set_idle_timeout() (default none), set on
 * the connection before it is handed over (or between calls), on the
 * clock of dx_blocking_set_clock() (default CLOCK_MONOTONIC).
 *  - When the handshake timeout passes the connection fails with
 *    DX_ETIMEDOUT, named "ERR_TLS_HANDSHAKE_TIMEOUT".
 *  - When the idle timeout passes with no TLS byte either way, a
 *    handshake, read or close that is waiting returns DX_ETIMEDOUT
 *    ("ETIMEDOUT", layer "blocking") and the connection stays open: the
 *    call may be made again. A write that stalls that long (the peer does
 *    not read) fails the connection with the same code, since part of its
 *    data may have gone.
 * With the fd transport the deadlines are kept while a call waits. With
 * the callback transport they can only be checked when a callback
 * returns: a read callback that returns DX_EAGAIN after waiting a while
 * without data (a serial port's read timeout, say) lets them be checked
 * as often as that; one that blocks until data comes keeps them from
 * passing while it blocks.
 *
 * MEMORY stays bounded whatever the peer does. Cleartext read ahead of
 * dx_blocking_read() is kept up to dx_blocking_set_read_buffer() bytes
 * (default DX_BLOCKING_DEFAULT_READ_BUFFER), plus at most one record
 * decrypted when the buffer filled; then the connection stops reading
 * from the transport until the application reads. The memory it takes is
 * given back as it is read: a connection with nothing waiting holds no
 * buffers. Writes are handed to the connection 64 KiB at a time, the
 * next part once the records of the last have mostly gone (at most about
 * 128 KiB of records wait). One case cannot be served within that
 * bound: a write that cannot complete until the peer's handshake messages
 * are read (a TLS 1.2 renegotiation under way) while unread cleartext
 * fills the read buffer; the write then fails the connection with
 * DX_ENOBUFS instead of waiting forever.
 *
 * DEADLOCK: as with any blocking socket, two peers that both write large
 * amounts without reading in between can block each other for good once
 * the transport's buffers and the read buffer are full. Exchange data in
 * turns, or read in between.
 *
 * THREADS: a dx_blocking and its connection are used from one thread at a
 * time. The fd transport's writes block SIGPIPE in the calling thread only
 * for the duration of the write.
 */
#ifndef DUPLEX_BLOCKING_H
#define DUPLEX_BLOCKING_H

#include <duplex/common.h>
#include <duplex/error.h>
#include <duplex/tls_filter.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dx_blocking dx_blocking;

/* Cleartext read ahead of dx_blocking_read(), by default. */
#define DX_BLOCKING_DEFAULT_READ_BUFFER ((size_t)16384)

/*
 * The callback transport. arg is the pointer given to dx_blocking_new().
 */
typedef struct dx_blocking_io {
    /*
     * Reads up to len bytes into buf, waiting until at least one byte
     * came. Returns the count (> 0), 0 at the end of input (the peer
     * closed), DX_EAGAIN when it waited for a while and nothing came (the
     * deadlines are then checked and read is called again), or another
     * negative DX_E* code, which fails the connection. Required.
     */
    long (*read)(void *arg, void *buf, size_t len);
    /*
     * Writes up to len bytes from buf, waiting as needed. Returns the
     * count written (> 0; the rest is offered again), 0 or DX_EAGAIN when
     * it waited for a while and could write nothing (the deadlines are
     * checked and it is called again), or another negative DX_E* code,
     * which fails the connection (unless the peer's close_notify was
     * already read: then the rest is dropped). Required.
     */
    long (*write)(void *arg, const void *buf, size_t len);
    /*
     * Ends the write side of the transport (a half-close), called once
     * after this side's close_notify was written, or after the connection
     * failed. Optional (NULL: nothing is done). Returns 0 or a negative
     * DX_E* code, treated as a failed write.
     */
    int (*shutdown)(void *arg);
} dx_blocking_io;

/* Flags of dx_blocking_new_fd(). */
#define DX_BLOCKING_CLOSE_FDS 0x1u /* dx_blocking_free() closes the fds */

/* Flags of dx_blocking_close(). */
#define DX_BLOCKING_WAIT_PEER 0x1u /* wait for the peer's close_notify */

/*
 * Takes over the connection t (see USE) over the callback transport io
 * (copied) with arg. Nothing is read or written before the first call.
 * Returns 0, DX_EINVAL (NULL t, io or out, a read or write function
 * missing, or streams of t that already have a consumer), DX_ENOMEM. On
 * failure t is left as it was and stays the caller's.
 */
DX_EXTERN int dx_blocking_new(dx_tls *t, const dx_blocking_io *io, void *arg,
                              dx_blocking **out);

/*
 * The same over file descriptors: rfd is read and wfd written (the same fd
 * for a socket or a tty). Both are put in non-blocking mode (their flags
 * are restored by dx_blocking_free(), which also closes them with
 * DX_BLOCKING_CLOSE_FDS; otherwise they stay the caller's). When the
 * connection has sent its close_notify, or failed, the write side ends:
 * shutdown(SHUT_WR) on a socket, close() of a separate wfd with
 * DX_BLOCKING_CLOSE_FDS, nothing else otherwise. Returns 0, DX_EINVAL
 * (NULL t or out, a negative fd, unknown flags, streams of t that already
 * have a consumer), DX_EBADF (an fd is not open), DX_ENOMEM. On failure t
 * and the fds are left as they were.
 */
DX_EXTERN int dx_blocking_new_fd(dx_tls *t, int rfd, int wfd, unsigned flags,
                                 dx_blocking **out);

/*
 * Releases b and its connection (dx_tls_destroy(): a connection still
 * open is aborted without close_notify: call dx_blocking_close() first
 * for a clean end), restores the fds' flags or closes them. Not from
 * inside a TLS event of the connection. NULL is ignored.
 */
DX_EXTERN void dx_blocking_free(dx_blocking *b);

/* The connection, for its getters and for the calls that start something
 * on it (see USE). Valid until dx_blocking_free(). NULL for NULL. */
DX_EXTERN dx_tls *dx_blocking_tls(const dx_blocking *b);

/*
 * The TLS events the caller wants (copied, with user; NULL clears): they
 * are forwarded with the connection and user, from inside the call that
 * caused them. They may read the connection but must not call
 * dx_blocking_* functions (DX_ESTATE), destroy the connection or use its
 * streams. Allowed at any time. Returns 0 or DX_EINVAL.
 */
DX_EXTERN int dx_blocking_set_events(dx_blocking *b, const dx_tls_events *ev,
                                     void *user);

/*
 * The clock, in milliseconds, of the connection's deadlines and of the
 * waits on them (NULL: CLOCK_MONOTONIC, the default). It is set on the
 * connection too (dx_tls_set_clock). Allowed at any time. Returns 0 or
 * DX_EINVAL.
 */
DX_EXTERN int dx_blocking_set_clock(dx_blocking *b, dx_tls_clock_fn now,
                                    void *arg);

/*
 * How much cleartext may wait for dx_blocking_read() before the
 * connection stops reading from the transport: 1 byte to 16 MiB
 * (default DX_BLOCKING_DEFAULT_READ_BUFFER). Allowed at any time.
 * Returns 0 or DX_EINVAL.
 */
DX_EXTERN int dx_blocking_set_read_buffer(dx_blocking *b, size_t size);

/*
 * Runs the handshake to its end: starts the connection, sends and reads
 * until this side is secure and what it had to send is written. Called
 * by the first read, write or close if the application does not call it.
 * A completed handshake returns 0 at once. The outcome of verification
 * is read on the connection (dx_tls_authorized(), dx_tls_peer_cert()).
 * In TLS 1.3 a client is secure before the server has checked its
 * certificate: a refusal then comes as the error of a later read.
 * Returns 0 or a code of RETURN CODES.
 */
DX_EXTERN int dx_blocking_handshake(dx_blocking *b);

/*
 * Reads cleartext into buf: returns at once with what was read ahead,
 * else waits until some comes and returns it (at most len bytes, and
 * possibly fewer than what the peer wrote at once: the rest is kept for
 * the next read). Returns the count (> 0), 0 once the peer's close_notify
 * was read (again at every later read; with dx_tls_set_allow_truncation()
 * also when the transport ended without one: dx_tls_clean_end() tells),
 * or a negative code: DX_EINVAL for a NULL buf or len 0, else those of
 * RETURN CODES ("ERR_SSL_UNEXPECTED_EOF_WHILE_READING" when the transport
 * ended without close_notify). Cleartext that came before a failure is
 * read first. Renegotiations, KeyUpdates, session tickets and
 * post-handshake authentication requests that come with the data are
 * handled here, inside the connection. len above LONG_MAX reads at most
 * LONG_MAX.
 */
DX_EXTERN long dx_blocking_read(dx_blocking *b, void *buf, size_t len);

/*
 * Writes all len bytes of buf: encrypts them, and returns once every
 * record is written to the transport (what the peer sends meanwhile is
 * read ahead, up to the read buffer). Returns len (0 for len 0, after the
 * handshake), or a negative code: DX_EINVAL (NULL buf with len > 0, len
 * above LONG_MAX), DX_EWRITEAFTEREND (after dx_blocking_close() or, unless
 * the connection allows half-open, after the peer's close_notify), else
 * those of RETURN CODES. On failure part of buf may have been sent.
 */
DX_EXTERN long dx_blocking_write(dx_blocking *b, const void *buf, size_t len);

/*
 * Ends this side: everything written goes, then close_notify, then the
 * transport's write side ends (see dx_blocking_new_fd; the shutdown
 * callback). Reading may go on until the peer's close_notify, which
 * DX_BLOCKING_WAIT_PEER waits for here, dropping any cleartext that comes
 * before it (and what was read ahead). Before the handshake completed
 * there is nothing to close: the connection is given up (later calls
 * return DX_ECANCELED) and the transport's write side ends; it returns 0.
 * A second close returns 0 at once (or waits for the peer as asked).
 * Returns 0, DX_EINVAL (unknown flags), or a code of RETURN CODES (with
 * DX_BLOCKING_WAIT_PEER, "ERR_SSL_UNEXPECTED_EOF_WHILE_READING" for a
 * peer that closes the transport without close_notify).
 */
DX_EXTERN int dx_blocking_close(dx_blocking *b, unsigned flags);

/* Cleartext bytes a dx_blocking_read() would return now without waiting. */
DX_EXTERN size_t dx_blocking_pending(const dx_blocking *b);

/*
 * The error of the last call that failed, or NULL if none did. Owned by b:
 * valid until the next call on b that fails, or dx_blocking_free().
 */
DX_EXTERN const dx_error *dx_blocking_error(const dx_blocking *b);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_BLOCKING_H */
