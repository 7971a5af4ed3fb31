/* Internal: system-call helpers shared by the fd transport and the
 * blocking API. */
#ifndef DX_LIB_SYSIO_H
#define DX_LIB_SYSIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <duplex/error.h>

/*
 * write(2), EINTR retried, without raising SIGPIPE when the reader of a
 * pipe or tty is gone (the call then fails with EPIPE). SIGPIPE is blocked
 * in the calling thread around the call, and one that the call raised is
 * taken off the pending set, so the process never sees it; a SIGPIPE that
 * was already pending stays pending.
 */
ssize_t dx_write_nosigpipe(int fd, const void *buf, size_t len);

/* Whether fd is an open socket. */
bool dx_fd_is_socket(int fd);

/* The failure of a system call: the DX_E* code of sys_errno (its name the
 * code's), layer "fd", detail "<call>: <strerror>", and the errno. Never
 * NULL: the shared out-of-memory error when memory is short. */
dx_error *dx_sys_error(const char *call, int sys_errno);

/* The fds of a byte transport over read(2) and write(2), both made
 * non-blocking by the owner. rfd and wfd may be the same fd. */
typedef struct dx_sysfd {
    int rfd, wfd; /* -1 once closed */
    bool wsock;   /* wfd is a socket: send() with MSG_NOSIGNAL, shutdown() */
    bool own;     /* the fds are closed by the transport */
} dx_sysfd;

/* Sets f up over rfd and wfd (wfd may be -1). */
void dx_sysfd_init(dx_sysfd *f, int rfd, int wfd, bool own);
/* One read(2) of at most cap bytes, EINTR retried. Returns the count
 * read; 0 at the end of input (EIO from a terminal, its hang-up, is the
 * end too); DX_EAGAIN when nothing can be read without blocking; or
 * another DX_E* code with *err set to the failure (dx_sys_error(), the
 * caller owns it). */
long dx_sysfd_read(dx_sysfd *f, void *buf, size_t cap, dx_error **err);
/* One write of at most len bytes to wfd: send() with MSG_NOSIGNAL to a
 * socket, dx_write_nosigpipe() otherwise, so SIGPIPE is never raised.
 * Returns the count written; DX_EAGAIN when nothing can be written without
 * blocking; or another DX_E* code (DX_EPIPE when the reader is gone) with
 * *err set to the failure, which the caller owns. wfd must be open. */
long dx_sysfd_write(dx_sysfd *f, const void *buf, size_t len, dx_error **err);
/* Ends the write side: shutdown(SHUT_WR) on a socket (ENOTCONN, a peer
 * already gone, is no failure); a wfd of its own that the transport owns
 * is closed, which is the end for the reader of a pipe. Nothing when wfd
 * is closed. Returns 0, or a DX_E* code with *err set (caller owns it). */
int dx_sysfd_shutdown(dx_sysfd *f, dx_error **err);
/* Closes the fds the transport owns (each once), and forgets them. */
void dx_sysfd_close(dx_sysfd *f);

#endif
