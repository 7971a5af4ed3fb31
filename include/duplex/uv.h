/*
 * libduplex: the libuv adapter.
 *
 * Any uv_stream_t (TCP, pipe, TTY) as a dx_stream; the deadlines of TLS
 * connections on uv timers; and on top of both, what Node's tls.connect()
 * and tls.createServer().listen() do, for TCP and Unix sockets. Built
 * when libduplex was configured with libuv (the header is then installed;
 * the umbrella <duplex/duplex.h> does not include it, so that programs
 * without libuv are not affected). Link with libuv too
 * (pkg-config --libs libduplex libuv).
 *
 * THE STREAM. dx_uv_stream_new() wraps a handle the caller initialized
 * (and connected or accepted). The stream keeps the contract of dx_stream
 * (stream.h), with libuv as the layer below:
 *  - Reading follows the consumer: uv_read_start() while it wants data,
 *    uv_read_stop() when it pauses or its read buffer reaches the mark, so
 *    that a slow reader pushes back on the peer through the kernel. The
 *    end of input (UV_EOF) becomes on_end.
 *  - Writing: what the kernel takes at once goes with uv_try_write(); the
 *    rest is copied into uv_write() requests, at most the stream's write
 *    queue bound (DX_UV_DEFAULT_WRITE_QUEUE, dx_uv_stream_set_write_queue())
 *    at a time. Beyond it the stream's write buffer fills and
 *    dx_stream_write() returns DX_FULL; on_drain comes once libuv's
 *    requests completed and the buffer was handed over. So on_drain and
 *    on_finish mean that libuv has accepted the bytes (and the end), and
 *    memory stays bounded by the write buffer's mark, one write, and the
 *    queue bound.
 *  - dx_stream_end() queues uv_shutdown() behind the pending writes.
 *  - A failure of libuv fails the stream with a dx_error whose layer is
 *    "uv" and whose name is libuv's error name (uv_err_name(): "EPIPE",
 *    "ECONNRESET", ...), the message uv_strerror(), the detail the
 *    operation, and the code the nearest DX_E* (DX_EIO when none is
 *    nearer).
 *  - When the stream closes, the handle is closed with uv_close(). A
 *    stream whose end was handed to libuv (dx_stream_end(), all of its
 *    bytes taken) keeps the handle open after it closed until libuv has
 *    written everything and shut the write side down, as close(2) lets the
 *    kernel finish a socket: nothing accepted is lost, whether the stream
 *    closed because both directions were done or was destroyed. A stream
 *    that fails, or is destroyed before its end, closes the handle at
 *    once: what libuv still held is dropped (Node's destroy()).
 *
 * OWNERSHIP, the libuv way: the handle's memory is the caller's; the
 * adapter closes the handle and then calls the caller's close callback,
 * where the caller frees it. The handles the convenience calls below make
 * are the adapter's, freed by it. Either way the dx_stream handle is the
 * owner's, released with dx_stream_destroy() as any stream's; the
 * adapter's memory lives on, if needed, until libuv's close callback.
 *
 * SIGPIPE: libuv writes with write(2); a write to a peer that went away
 * raises SIGPIPE, which kills a process that does not ignore it. Every
 * libuv program (Node too) ignores it: signal(SIGPIPE, SIG_IGN) at start.
 *
 * THREADS: a stream, its handle and its loop are used from the loop's
 * thread.
 */
#ifndef DUPLEX_UV_H
#define DUPLEX_UV_H

#include <uv.h>

#include <duplex/common.h>
#include <duplex/error.h>
#include <duplex/stream.h>
#include <duplex/tls_filter.h>
#include <duplex/tls_server.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Default bound of the bytes held in libuv's write requests per stream. */
#define DX_UV_DEFAULT_WRITE_QUEUE ((size_t)65536)

/* ---- the stream --------------------------------------------------------- */

/*
 * A stream over handle, a TCP, pipe or TTY handle initialized by the
 * caller on its loop (connected, accepted or opened on a descriptor), not
 * closing. The handle passes to the adapter: it reads and writes it and
 * closes it when the stream closes; on_closed (may be NULL) runs from
 * libuv's close callback, after the stream's last use of the handle, so
 * that the caller can free its memory there. Until then handle->data is
 * the adapter's; the caller's value is put back before on_closed runs.
 * A handle that cannot read (uv_is_readable() false: the write end of a
 * pipe) gives a stream whose input ends at once; one that cannot write
 * gives a read-only stream (dx_stream_write() returns DX_ENOTSUP).
 *
 * Returns 0, DX_EINVAL (NULL handle or out, a handle of another type, a
 * closing handle), DX_ENOMEM. On failure the handle stays the caller's,
 * untouched.
 */
DX_EXTERN int dx_uv_stream_new(uv_stream_t *handle, uv_close_cb on_closed,
                               dx_stream **out);

/* Whether s is a libuv stream. */
DX_EXTERN bool dx_is_uv_stream(const dx_stream *s);

/*
 * The handle under a libuv stream (to read addresses, set TCP options,
 * ...; reading, writing, shutting down or closing it yourself breaks the
 * stream), until libuv's close callback: NULL afterwards and for other
 * streams.
 */
DX_EXTERN uv_stream_t *dx_uv_stream_handle(const dx_stream *s);

/*
 * Sets the bound of the bytes the stream keeps in libuv's write requests
 * (default DX_UV_DEFAULT_WRITE_QUEUE; at least one request's worth always
 * goes). Returns 0, DX_EINVAL (not a libuv stream, max 0).
 */
DX_EXTERN int dx_uv_stream_set_write_queue(dx_stream *s, size_t max);

/* ---- TLS deadlines on uv timers ----------------------------------------- */

/* The loop's clock (uv_now()) as a dx_tls_clock_fn: loop is the
 * uv_loop_t. For dx_tls_set_clock() and dx_tls_server_set_clock(). */
DX_EXTERN uint64_t dx_uv_now(void *loop);

/*
 * Schedules the deadlines of t (handshake and idle timeouts) on a uv timer
 * of loop: sets the connection's clock to the loop's (dx_uv_now), arms
 * the timer for dx_tls_deadline() and each later deadline (through
 * dx_tls_set_deadline_hook()), and calls dx_tls_check_timeouts() when one
 * is due. The timer goes with the connection: once it closes or is
 * destroyed the timer is closed and freed. Call it before dx_tls_start(),
 * so that the deadlines are counted on the loop's clock from the start
 * (a deadline set before on another clock keeps its value). The
 * application's TLS events are left alone. Returns 0, DX_EINVAL (NULL),
 * DX_ESTATE (the connection is closed, or already has a deadline hook),
 * DX_ENOMEM.
 */
DX_EXTERN int dx_uv_tls_timer(uv_loop_t *loop, dx_tls *t);

/* ---- connecting ---------------------------------------------------------- */

/* A connection being made; valid until its callback has returned. */
typedef struct dx_uv_connect dx_uv_connect;

/*
 * The outcome of a plain connect: s is a connected libuv stream, the
 * callee's (release it with dx_stream_destroy()), and err NULL; or s NULL
 * and err why not (valid during the call). arg is the caller's.
 */
typedef void (*dx_uv_connect_cb)(dx_stream *s, const dx_error *err, void *arg);

/*
 * The outcome of a TLS connect: t is a client connection over the
 * connected transport, with its deadlines on the loop (dx_uv_tls_timer)
 * and its server name set, and not yet started: set its options
 * (dx_tls_set_session(), dx_tls_set_alpn_protocols(), ...), its TLS events
 * and its cleartext consumer here; it is started (dx_tls_start()) when the
 * callback returns, unless the callback started or destroyed it. The
 * connection is the callee's: release it with dx_tls_destroy(). Or t NULL
 * and err why not (valid during the call).
 */
typedef void (*dx_uv_tls_connect_cb)(dx_tls *t, const dx_error *err, void *arg);

/*
 * Connects to host (a name, resolved with uv_getaddrinfo(), or an IPv4 or
 * IPv6 address) and port over TCP, trying each address the name has in
 * turn, and calls cb once, from the loop, never from inside this call.
 * Failures reach cb as a dx_error of layer "uv" named after libuv's error:
 * "ECONNREFUSED", "ETIMEDOUT", "ENETUNREACH", "EAI_NONAME" (no such
 * host), ... with detail "connect 127.0.0.1:1" or "getaddrinfo NAME".
 * *out (out may be NULL) is the request, for dx_uv_connect_cancel().
 * Returns 0 (cb will be called), DX_EINVAL (NULL loop, host or cb, port 0
 * or above 65535), DX_ENOMEM.
 */
DX_EXTERN int dx_uv_tcp_connect(uv_loop_t *loop, const char *host, unsigned port,
                                dx_uv_connect_cb cb, void *arg, dx_uv_connect **out);
/* The same for the Unix socket at path ("ENOENT", "ECONNREFUSED", ...).
 * DX_EINVAL also for an empty path or one too long for a socket address. */
DX_EXTERN int dx_uv_unix_connect(uv_loop_t *loop, const char *path, dx_uv_connect_cb cb,
                                 void *arg, dx_uv_connect **out);

/*
 * Node's tls.connect(): dx_uv_tcp_connect(), then a client connection of
 * ctx (which gains a reference) over the stream. The server name (SNI and
 * the certificate check) is host when host is a name; when it is an IP
 * address no SNI is sent and the certificate is checked against the
 * address (dx_tls_set_host()). The callback may change either. Returns
 * as dx_uv_tcp_connect(), DX_EINVAL also for a NULL ctx.
 */
DX_EXTERN int dx_uv_tls_connect(uv_loop_t *loop, dx_tls_ctx *ctx, const char *host,
                                unsigned port, dx_uv_tls_connect_cb cb, void *arg,
                                dx_uv_connect **out);
/* The same over the Unix socket at path; no server name is set (the
 * certificate is checked against "localhost" unless the callback sets a
 * name). */
DX_EXTERN int dx_uv_tls_connect_unix(uv_loop_t *loop, dx_tls_ctx *ctx, const char *path,
                                     dx_uv_tls_connect_cb cb, void *arg,
                                     dx_uv_connect **out);

/*
 * Gives up a connect whose callback has not run yet (while the name is
 * resolved or the connection is being made): the callback comes, from the
 * loop, with "ECANCELED" (DX_ECANCELED). NULL is ignored; so is a request
 * whose callback is running. After the callback the request is gone: do
 * not call this then.
 */
DX_EXTERN void dx_uv_connect_cancel(dx_uv_connect *c);

/* ---- listening ----------------------------------------------------------- */

/* A listening TCP or Unix socket. */
typedef struct dx_uv_listener dx_uv_listener;

/*
 * A connection came: s is a libuv stream over it, the callee's (release it
 * with dx_stream_destroy()); err NULL. Or s NULL and err why accepting
 * failed (valid during the call); the listener goes on.
 */
typedef void (*dx_uv_accept_cb)(dx_uv_listener *l, dx_stream *s, const dx_error *err,
                                void *arg);
/*
 * A TLS connection came: t was accepted by the server
 * (dx_tls_server_accept(): the server's defaults and events, started) with
 * its deadlines on the loop; it is the callee's (release it with
 * dx_tls_destroy()); set its cleartext consumer here. Or t NULL and err
 * why accepting failed.
 */
typedef void (*dx_uv_tls_accept_cb)(dx_uv_listener *l, dx_tls *t, const dx_error *err,
                                    void *arg);

/*
 * Listens on host and port over TCP: host an IPv4 or IPv6 address or a
 * name (resolved now, with the first address used), or NULL for every
 * interface (IPv6 and IPv4 where the system has both, else IPv4); port 0
 * picks a free one (dx_uv_listener_port()). cb runs for every connection,
 * from the loop. On failure *err (err may be NULL) receives a dx_error of
 * layer "uv" named after libuv's error ("EADDRINUSE", "EACCES",
 * "EADDRNOTAVAIL", "EAI_NONAME", ...), the caller's to free. Returns 0,
 * DX_EINVAL (NULL loop, cb or out, port above 65535), DX_ENOMEM, or the
 * code of the failure.
 */
DX_EXTERN int dx_uv_tcp_listen(uv_loop_t *loop, const char *host, unsigned port,
                               dx_uv_accept_cb cb, void *arg, dx_uv_listener **out,
                               dx_error **err);
/* The same on a Unix socket created at path (which must not exist: else
 * "EADDRINUSE"); the file is removed when the listener closes. */
DX_EXTERN int dx_uv_unix_listen(uv_loop_t *loop, const char *path, dx_uv_accept_cb cb,
                                void *arg, dx_uv_listener **out, dx_error **err);

/*
 * Node's tls.createServer().listen(): as dx_uv_tcp_listen(), each
 * connection accepted by srv and given its timer (dx_uv_tls_timer()).
 * The server's clock becomes the loop's (dx_tls_server_set_clock() with
 * dx_uv_now), for its session cache and the deadlines of its connections.
 * srv must outlive the listener.
 */
DX_EXTERN int dx_uv_tls_listen(uv_loop_t *loop, dx_tls_server *srv, const char *host,
                               unsigned port, dx_uv_tls_accept_cb cb, void *arg,
                               dx_uv_listener **out, dx_error **err);
/* The same on a Unix socket. */
DX_EXTERN int dx_uv_tls_listen_unix(uv_loop_t *loop, dx_tls_server *srv, const char *path,
                                    dx_uv_tls_accept_cb cb, void *arg,
                                    dx_uv_listener **out, dx_error **err);

/* The port the listener is bound to; 0 for a Unix socket or NULL. */
DX_EXTERN unsigned dx_uv_listener_port(const dx_uv_listener *l);

/*
 * Connections the listener handed out that have not closed yet (Node's
 * server.connections): for a TLS listener, TLS connections whose cleartext
 * stream is open; for a plain one, streams not closed. 0 for NULL.
 */
DX_EXTERN size_t dx_uv_listener_connections(const dx_uv_listener *l);

/*
 * Stops listening and releases the listener (its handle closes from the
 * loop; l must not be used after the call). Its connections go on (Node's
 * server.close()) unless abort_connections, which aborts each of them as
 * dx_stream_abort() does (on_close, no error), leaving their handles to
 * their owners. Allowed from any callback. NULL is ignored.
 */
DX_EXTERN void dx_uv_listener_close(dx_uv_listener *l, bool abort_connections);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_UV_H */
