/*
 * The fd transport: the callback transport with read(2) and write(2)
 * behind it, non-blocking, for any event loop.
 */
#include "config.h"

#include <duplex/fd.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include "alloc.h"
#include "errors.h"
#include "sysio.h"
#include "transport_impl.h"

typedef struct fd_state {
    dx_stream *s;
    dx_sysfd sys;
} fd_state;

/* Fails the stream with a system call's failure, and returns its code. */
static long fail(fd_state *f, long code, dx_error *err)
{
    dx_stream_fail_with(f->s, err);
    return code;
}

static long fd_read(void *arg, void *buf, size_t cap)
{
    fd_state *f = arg;
    dx_error *err = NULL;
    long n = dx_sysfd_read(&f->sys, buf, cap, &err);
    return err ? fail(f, n, err) : n;
}

static long fd_write(void *arg, const void *buf, size_t len)
{
    fd_state *f = arg;
    if (f->sys.wfd < 0)
        return DX_ENOTSUP;
    dx_error *err = NULL;
    long n = dx_sysfd_write(&f->sys, buf, len, &err);
    return err ? fail(f, n, err) : n;
}

static int fd_shutdown(void *arg)
{
    fd_state *f = arg;
    dx_error *err = NULL;
    int rc = dx_sysfd_shutdown(&f->sys, &err);
    return err ? (int)fail(f, rc, err) : rc;
}

static void fd_close(void *arg)
{
    fd_state *f = arg;
    dx_sysfd_close(&f->sys);
}

static const dx_transport_ops fd_ops = {
    .read = fd_read,
    .write = fd_write,
    .shutdown = fd_shutdown,
    .close = fd_close,
};

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return DX_EBADF;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return dx_errno_to_code(errno);
    return 0;
}

int dx_fd_stream_new(int rfd, int wfd, unsigned flags, dx_stream **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    if ((rfd < 0 && wfd < 0) || (flags & ~DX_FD_CLOSE))
        return DX_EINVAL;
    /* Both fds are checked before either is changed. */
    if ((rfd >= 0 && fcntl(rfd, F_GETFL) < 0) ||
        (wfd >= 0 && fcntl(wfd, F_GETFL) < 0))
        return DX_EBADF;
    int rc;
    if ((rfd >= 0 && (rc = set_nonblocking(rfd)) != 0) ||
        (wfd >= 0 && (rc = set_nonblocking(wfd)) != 0))
        return rc;
    dx_stream *s;
    rc = dx_transport_create(&dx_fd_stream_ops, &fd_ops, NULL, 0,
                             sizeof(fd_state), &s);
    if (rc != 0)
        return rc;
    fd_state *f = dx_transport_extra(s);
    f->s = s;
    dx_sysfd_init(&f->sys, rfd, wfd, flags & DX_FD_CLOSE);
    transport *t = dx_stream_impl(s);
    t->arg = f;
    if (rfd < 0) {
        t->eof = true;
        dx_stream_push_end(s); /* write-only: there is nothing to read */
    }
    *out = s;
    return 0;
}

bool dx_is_fd_stream(const dx_stream *s)
{
    return s && dx_stream_kind(s) == dx_fd_stream_ops.name;
}

static fd_state *fd_of(const dx_stream *s)
{
    return dx_transport_extra((dx_stream *)s);
}

size_t dx_fd_stream_interest(const dx_stream *s, dx_fd_interest out[2])
{
    if (!dx_is_fd_stream(s) || !out)
        return 0;
    const fd_state *f = fd_of(s);
    unsigned ev = dx_transport_interest(s);
    size_t n = 0;
    if ((ev & DX_READABLE) && f->sys.rfd >= 0)
        out[n++] = (dx_fd_interest){f->sys.rfd, DX_READABLE};
    if ((ev & DX_WRITABLE) && f->sys.wfd >= 0) {
        if (n && out[0].fd == f->sys.wfd)
            out[0].events |= DX_WRITABLE;
        else
            out[n++] = (dx_fd_interest){f->sys.wfd, DX_WRITABLE};
    }
    return n;
}

int dx_fd_stream_ready(dx_stream *s, int fd, unsigned events)
{
    if (!dx_is_fd_stream(s))
        return DX_EINVAL;
    const fd_state *f = fd_of(s);
    unsigned ev = 0;
    if (fd == f->sys.rfd)
        ev |= events & DX_READABLE;
    if (fd == f->sys.wfd)
        ev |= events & DX_WRITABLE;
    return dx_transport_ready(s, ev);
}

#define POLL_SMALL 16

int dx_fd_poll(dx_stream *const *streams, size_t n, int timeout_ms)
{
    if (n && !streams)
        return DX_EINVAL;
    if (n > 4096)
        return DX_EINVAL;
    /* Small sets (the usual case) need no allocation. */
    struct pollfd pfd_small[2 * POLL_SMALL];
    size_t owner_small[2 * POLL_SMALL];
    struct pollfd *pfd = pfd_small;
    size_t *owner = owner_small;
    if (n > POLL_SMALL) {
        pfd = dx_calloc(2 * n, sizeof(*pfd));
        owner = dx_calloc(2 * n, sizeof(*owner));
        if (!pfd || !owner) {
            dx_free(pfd);
            dx_free(owner);
            return DX_ENOMEM;
        }
    }
    size_t np = 0;
    for (size_t i = 0; i < n; i++) {
        if (!dx_is_fd_stream(streams[i]))
            continue;
        dx_fd_interest in[2];
        size_t k = dx_fd_stream_interest(streams[i], in);
        for (size_t j = 0; j < k; j++) {
            pfd[np].fd = in[j].fd;
            pfd[np].events = (short)(((in[j].events & DX_READABLE) ? POLLIN : 0) |
                                     ((in[j].events & DX_WRITABLE) ? POLLOUT : 0));
            owner[np] = i;
            np++;
        }
    }
    int r = poll(pfd, (nfds_t)np, timeout_ms);
    if (r < 0) {
        int err = errno;
        if (pfd != pfd_small) {
            dx_free(pfd);
            dx_free(owner);
        }
        return err == EINTR ? 0 : DX_EIO;
    }
    /* Callbacks may destroy any of the streams: hold them all. */
    for (size_t i = 0; i < n; i++)
        dx_stream_ref(streams[i]);
    int served = 0;
    for (size_t j = 0; j < np && r > 0; j++) {
        short re = pfd[j].revents;
        if (!re)
            continue;
        unsigned ev = 0;
        if (re & (POLLIN | POLLHUP | POLLERR | POLLNVAL))
            ev |= pfd[j].events & POLLIN ? DX_READABLE : 0;
        if (re & (POLLOUT | POLLHUP | POLLERR | POLLNVAL))
            ev |= pfd[j].events & POLLOUT ? DX_WRITABLE : 0;
        dx_stream *s = streams[owner[j]];
        if (ev && !(dx_stream_state(s) & DX_STREAM_CLOSED)) {
            dx_fd_stream_ready(s, pfd[j].fd, ev);
            served++;
        }
    }
    for (size_t i = 0; i < n; i++)
        dx_stream_unref(streams[i]);
    if (pfd != pfd_small) {
        dx_free(pfd);
        dx_free(owner);
    }
    return served;
}
