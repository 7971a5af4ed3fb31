/* System-call helpers shared by the fd transport and the blocking API. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "sysio.h"

ssize_t dx_write_nosigpipe(int fd, const void *buf, size_t len)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t n;
    do
        n = write(fd, buf, len);
    while (n < 0 && errno == EINTR);
    int err = errno;
    if (n < 0 && err == EPIPE && !was_pending) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return n;
}

bool dx_fd_is_socket(int fd)
{
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

dx_error *dx_sys_error(const char *call, int sys_errno)
{
    dx_error *e = dx_error_new(dx_errno_to_code(sys_errno), NULL, "fd", NULL);
    if (!e)
        return (dx_error *)dx_error_oom();
    dx_error_set_detail(e, "%s: %s", call, strerror(sys_errno));
    dx_error_set_sys_errno(e, sys_errno);
    return e;
}

/* The code of a failed call, with its error in *err. */
static int sys_fail(const char *call, int sys_errno, dx_error **err)
{
    *err = dx_sys_error(call, sys_errno);
    return dx_errno_to_code(sys_errno);
}

void dx_sysfd_init(dx_sysfd *f, int rfd, int wfd, bool own)
{
    f->rfd = rfd;
    f->wfd = wfd;
    f->wsock = dx_fd_is_socket(wfd);
    f->own = own;
}

long dx_sysfd_read(dx_sysfd *f, void *buf, size_t cap, dx_error **err)
{
    ssize_t n;
    do
        n = read(f->rfd, buf, cap);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        return (long)n;
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK)
        return DX_EAGAIN;
    if (e == EIO && isatty(f->rfd))
        return 0; /* a terminal hung up: the end of input */
    return sys_fail("read", e, err);
}

long dx_sysfd_write(dx_sysfd *f, const void *buf, size_t len, dx_error **err)
{
    ssize_t n;
    if (f->wsock) {
        do
            n = send(f->wfd, buf, len, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
    } else {
        n = dx_write_nosigpipe(f->wfd, buf, len);
    }
    if (n >= 0)
        return (long)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return DX_EAGAIN;
    return sys_fail(f->wsock ? "send" : "write", errno, err);
}

int dx_sysfd_shutdown(dx_sysfd *f, dx_error **err)
{
    if (f->wfd < 0)
        return 0;
    if (f->wsock) {
        if (shutdown(f->wfd, SHUT_WR) != 0 && errno != ENOTCONN)
            return sys_fail("shutdown", errno, err);
    } else if (f->wfd != f->rfd && f->own) {
        close(f->wfd);
        f->wfd = -1;
    }
    return 0;
}

void dx_sysfd_close(dx_sysfd *f)
{
    if (f->own) {
        if (f->rfd >= 0)
            close(f->rfd);
        if (f->wfd >= 0 && f->wfd != f->rfd)
            close(f->wfd);
    }
    f->rfd = f->wfd = -1;
}
