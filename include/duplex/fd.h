/*
 * libduplex: the file-descriptor transport.
 *
 * A stream over a pipe, a socket, a tty or a character device (one fd for
 * both directions, or one to read and one to write) that fits any event
 * loop: dx_fd_stream_interest() says which fds to watch for what, and
 * dx_fd_stream_ready() is the call to make when one is ready. The fds are
 * set to non-blocking mode. EINTR is retried, EAGAIN waits for readiness,
 * short writes keep the rest buffered, EOF becomes on_end, and a write to
 * a closed pipe or socket fails the stream with DX_EPIPE without raising
 * SIGPIPE in the process.
 *
 * dx_fd_poll() is a small poll(2) loop step over many such streams, for
 * programs and tests without an event loop of their own.
 */
#ifndef DUPLEX_FD_H
#define DUPLEX_FD_H

#include <duplex/transport.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Flags for dx_fd_stream_new(). */
#define DX_FD_CLOSE 0x1u /* close the fds when the stream closes */

/*
 * Creates a stream reading rfd and writing wfd (the same fd for a socket
 * or a tty; -1 for a direction not used). dx_stream_end() half-closes:
 * shutdown(SHUT_WR) on a socket, close() of wfd when it is a separate
 * descriptor owned by the stream, nothing more otherwise. With rfd -1 the
 * stream delivers on_end as soon as a consumer attaches; with wfd -1 a
 * write fails the stream with DX_ENOTSUP. The fds stay non-blocking after
 * the stream closes.
 * Returns 0, DX_EINVAL (both fds -1, unknown flags), DX_EBADF (an fd is
 * not open), DX_ENOMEM.
 */
DX_EXTERN int dx_fd_stream_new(int rfd, int wfd, unsigned flags,
                               dx_stream **out);

typedef struct dx_fd_interest {
    int fd;
    unsigned events; /* DX_READABLE | DX_WRITABLE */
} dx_fd_interest;

/*
 * Fills out[0..1] with the fds the stream waits on now and returns how many
 * (0, 1 or 2); fds with no interest are left out, and one fd used both
 * ways is one entry with both bits.
 */
DX_EXTERN size_t dx_fd_stream_interest(const dx_stream *s,
                                       dx_fd_interest out[2]);

/* fd became ready for events. Returns 0, DX_EINVAL, DX_EDESTROYED. */
DX_EXTERN int dx_fd_stream_ready(dx_stream *s, int fd, unsigned events);

/*
 * One step of a poll(2) loop: waits up to timeout_ms (-1: no limit) for
 * any of the n fd streams to become ready, and dispatches. NULL entries,
 * streams that are not fd streams, and closed streams are skipped; with
 * nothing to wait for it just sleeps for the time-out. The streams may be
 * destroyed by the callbacks it runs. Returns the number of ready
 * descriptors served (0 on time-out), or DX_EINVAL (n > 4096, NULL array),
 * DX_ENOMEM, or DX_EIO if poll failed (EINTR counts as a time-out).
 */
DX_EXTERN int dx_fd_poll(dx_stream *const *streams, size_t n, int timeout_ms);

/* True if s was made by dx_fd_stream_new(). */
DX_EXTERN bool dx_is_fd_stream(const dx_stream *s);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_FD_H */
