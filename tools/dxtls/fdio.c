/*
 * Descriptors as streams on the loop: the library's fd transport
 * (dx_fd_stream_new, one descriptor to read and one to write) polled with
 * uv_poll handles.
 *
 * The fd stream says which descriptors it waits on and for what
 * (dx_fd_stream_interest); that changes whenever its consumer reads or
 * writes, which may happen in any callback of the loop. So the interest is
 * carried over to the poll handles once per turn of the loop, in a
 * prepare handle that runs just before the loop waits, and again right
 * after each readiness was served. A descriptor that cannot be polled (a
 * regular file, /dev/null: epoll refuses them) is always ready: an idle
 * handle serves it on every turn while the stream wants it.
 *
 * Why not libuv's own handles: they cannot take a regular file or
 * /dev/null, a terminal's hang-up (EIO) ends the input only on TTY
 * handles, and a TTY handle over a pseudo-terminal's master writes
 * blocking. The fd transport handles all of these, and two descriptors as
 * one stream: stdin and stdout, with half-close.
 *
 * Descriptors: a poll handle is stopped before its descriptor is closed,
 * so that a number the kernel hands out again is never still watched.
 * Descriptors 0 to 2 are never closed but pointed at /dev/null, so that
 * later descriptors cannot take their numbers. Their file status flags
 * (O_NONBLOCK) are put back before they are let go: the file description
 * may be shared with the shell.
 */
#include "config.h"

#include "dxtls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fdio fdio;

typedef struct watch {
    uv_poll_t poll;
    fdio *io;
    int fd;
    bool inited;
    bool pollable;
    int events;         /* uv events the poll handle watches */
    unsigned idle_want; /* non-pollable: DX_READABLE/DX_WRITABLE wanted */
} watch;

struct fdio {
    fdio *prev, *next;
    fdio_loop *fl;
    dx_stream *s; /* a reference of ours */
    int rfd, wfd;
    int rflags, wflags; /* file status flags before, -1: unknown */
    unsigned flags;
    watch r, w;         /* w unused when rfd == wfd */
    bool wdone;         /* the separate write descriptor was let go */
    bool down;
    int closing;        /* handles whose close callback is due */
    uv_timer_t linger;  /* FDIO_PTY: waits for the slave to read */
    int slave;          /* FDIO_PTY: the slave, opened at the end */
    int quiet;          /* FDIO_PTY: ticks with nothing left to read */
    uint64_t linger_end;
};

struct fdio_loop {
    uv_loop_t *loop;
    uv_prepare_t prep;
    uv_idle_t idle;
    fdio *head;
    size_t count;
    bool closing;
    int open_handles;
};

static void sync_io(fdio *io);

/* ---- letting descriptors go -------------------------------------------------- */

static void restore_flags(int fd, int flags)
{
    if (fd >= 0 && flags >= 0)
        fcntl(fd, F_SETFL, flags);
}

static void retire(int fd, int flags)
{
    if (fd < 0)
        return;
    restore_flags(fd, flags);
    if (fd > 2) {
        close(fd);
        return;
    }
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, fd);
        close(null);
    }
}

/* ---- the loop's handles ---------------------------------------------------------- */

static void loop_handle_closed(uv_handle_t *h)
{
    fdio_loop *fl = h->data;
    if (--fl->open_handles == 0)
        free(fl);
}

static void prep_cb(uv_prepare_t *h)
{
    fdio_loop *fl = h->data;
    for (fdio *io = fl->head, *next; io; io = next) {
        next = io->next;
        sync_io(io);
    }
}

static bool wants_idle(const fdio *io)
{
    return io->r.idle_want || io->w.idle_want;
}

static void idle_cb(uv_idle_t *h)
{
    fdio_loop *fl = h->data;
    bool more = false;
    for (fdio *io = fl->head, *next; io; io = next) {
        next = io->next;
        if (!wants_idle(io))
            continue;
        dx_stream_ref(io->s);
        if (io->r.idle_want)
            dx_fd_stream_ready(io->s, io->r.fd, io->r.idle_want);
        if (io->w.inited && io->w.idle_want && !io->down)
            dx_fd_stream_ready(io->s, io->w.fd, io->w.idle_want);
        dx_stream_unref(io->s);
        sync_io(io);
    }
    for (fdio *io = fl->head; io; io = io->next)
        more = more || wants_idle(io);
    if (!more)
        uv_idle_stop(&fl->idle);
}

int fdio_loop_new(uv_loop_t *loop, fdio_loop **out)
{
    fdio_loop *fl = calloc(1, sizeof(*fl));
    if (!fl)
        return DX_ENOMEM;
    fl->loop = loop;
    uv_prepare_init(loop, &fl->prep);
    uv_idle_init(loop, &fl->idle);
    fl->prep.data = fl->idle.data = fl;
    fl->open_handles = 2;
    *out = fl;
    return 0;
}

void fdio_loop_close(fdio_loop *fl)
{
    if (!fl || fl->closing)
        return;
    fl->closing = true;
    /* Streams still open are torn down first. */
    while (fl->head) {
        fdio *io = fl->head;
        dx_stream_abort(io->s);
        sync_io(io);
    }
    uv_close((uv_handle_t *)&fl->prep, loop_handle_closed);
    uv_close((uv_handle_t *)&fl->idle, loop_handle_closed);
}

/* ---- one stream ----------------------------------------------------------------------- */

static void io_release(fdio *io)
{
    dx_stream_unref(io->s);
    free(io);
}

static void poll_closed(uv_handle_t *h)
{
    watch *w = h->data;
    fdio *io = w->io;
    if (--io->closing == 0 && io->down)
        io_release(io);
}

/* ---- a pseudo-terminal's master, let go once the slave has read ------------ */

static void linger_closed(uv_handle_t *h)
{
    fdio *io = h->data;
    if (--io->closing == 0 && io->down)
        io_release(io);
}

/* Bytes the slave has not read yet (0 when it cannot be told). */
static int slave_unread(const fdio *io)
{
    int n = 0;
    if (io->slave < 0 || ioctl(io->slave, FIONREAD, &n) != 0)
        return 0;
    return n;
}

static void pty_let_go(fdio *io)
{
    if (io->slave >= 0)
        close(io->slave);
    io->slave = -1;
    retire(io->rfd, io->rflags);
    uv_close((uv_handle_t *)&io->linger, linger_closed);
}

/* The slave's count covers only what its line discipline holds: more may
 * wait in the terminal's buffers, which refill it within a moment of each
 * read. The master goes once the count stayed 0 for a few ticks. */
#define PTY_QUIET_TICKS 5

static void linger_tick(uv_timer_t *t)
{
    fdio *io = t->data;
    io->quiet = slave_unread(io) > 0 ? 0 : io->quiet + 1;
    if (io->quiet < PTY_QUIET_TICKS && uv_now(t->loop) < io->linger_end)
        return;
    uv_timer_stop(t);
    pty_let_go(io);
}

/* Keeps the master open while the slave has bytes to read. Returns false
 * when that cannot be told (the master may go now). */
static bool pty_linger(fdio *io)
{
    const char *name = ptsname(io->rfd);
    io->slave = name ? open(name, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC) : -1;
    if (io->slave < 0 || uv_timer_init(io->fl->loop, &io->linger) != 0) {
        if (io->slave >= 0)
            close(io->slave);
        io->slave = -1;
        return false;
    }
    io->linger.data = io;
    io->closing++; /* io lives until the timer's close callback */
    io->linger_end = uv_now(io->fl->loop) + CLOSE_GRACE_MS;
    uv_timer_start(&io->linger, linger_tick, 10, 10);
    return true;
}

static void watch_stop(watch *w)
{
    if (w->inited && w->pollable && w->events) {
        uv_poll_stop(&w->poll);
        w->events = 0;
    }
    w->idle_want = 0;
}

static void teardown(fdio *io)
{
    io->down = true;
    fdio_loop *fl = io->fl;
    if (io->prev)
        io->prev->next = io->next;
    else
        fl->head = io->next;
    if (io->next)
        io->next->prev = io->prev;
    fl->count--;
    if (!fl->head)
        uv_prepare_stop(&fl->prep);
    watch *ws[2] = {&io->r, &io->w};
    for (int i = 0; i < 2; i++) {
        watch_stop(ws[i]);
        if (ws[i]->inited && ws[i]->pollable) {
            io->closing++;
            uv_close((uv_handle_t *)&ws[i]->poll, poll_closed);
        }
    }
    /* The polls are stopped: the descriptors can go. */
    if ((io->flags & (FDIO_CLOSE | FDIO_PTY)) == (FDIO_CLOSE | FDIO_PTY) && pty_linger(io)) {
        /* the master goes once the slave has read (pty_let_go) */
    } else if (io->flags & FDIO_CLOSE) {
        retire(io->rfd, io->rflags);
        if (io->wfd != io->rfd && !io->wdone)
            retire(io->wfd, io->wflags);
    } else {
        restore_flags(io->rfd, io->rflags);
        restore_flags(io->wfd, io->wflags);
    }
    if (io->closing == 0)
        io_release(io);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    watch *w = h->data;
    fdio *io = w->io;
    unsigned ev = 0;
    if (status < 0 || (events & UV_DISCONNECT))
        ev = (w->events & UV_READABLE ? DX_READABLE : 0) |
             (w->events & UV_WRITABLE ? DX_WRITABLE : 0);
    if (events & UV_READABLE)
        ev |= DX_READABLE;
    if (events & UV_WRITABLE)
        ev |= DX_WRITABLE;
    dx_stream_ref(io->s);
    if (ev)
        dx_fd_stream_ready(io->s, w->fd, ev);
    dx_stream_unref(io->s);
    sync_io(io);
}

static void watch_set(fdio *io, watch *w, unsigned want)
{
    if (!w->inited)
        return;
    if (!w->pollable) {
        w->idle_want = want;
        if (want)
            uv_idle_start(&io->fl->idle, idle_cb);
        return;
    }
    int ev = (want & DX_READABLE ? UV_READABLE : 0) | (want & DX_WRITABLE ? UV_WRITABLE : 0);
    if (ev == w->events)
        return;
    if (ev == 0)
        uv_poll_stop(&w->poll);
    else if (uv_poll_start(&w->poll, ev, on_poll) != 0) {
        /* Cannot be watched after all: served on every turn instead. */
        uv_poll_stop(&w->poll);
        w->events = 0;
        w->pollable = false;
        io->closing++;
        uv_close((uv_handle_t *)&w->poll, poll_closed);
        watch_set(io, w, want);
        return;
    }
    w->events = ev;
}

/* Carries the stream's state over to the poll handles. */
static void sync_io(fdio *io)
{
    if (io->down)
        return;
    unsigned st = dx_stream_state(io->s);
    if (st & DX_STREAM_CLOSED) {
        teardown(io);
        return;
    }
    if ((st & DX_STREAM_FINISHED) && io->wfd != io->rfd && !io->wdone && io->wfd >= 0) {
        /* Its reader sees the end only once the descriptor is let go. */
        watch_stop(&io->w);
        if (io->flags & FDIO_CLOSE)
            retire(io->wfd, io->wflags);
        io->wdone = true;
    }
    dx_fd_interest in[2];
    size_t n = dx_fd_stream_interest(io->s, in);
    unsigned rwant = 0, wwant = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i].fd == io->rfd)
            rwant |= in[i].events;
        else if (in[i].fd == io->wfd && !io->wdone)
            wwant |= in[i].events;
    }
    watch_set(io, &io->r, rwant);
    if (io->wfd != io->rfd && !io->wdone)
        watch_set(io, &io->w, wwant);
}

static int watch_init(fdio *io, watch *w, int fd)
{
    w->io = io;
    w->fd = fd;
    if (fd < 0)
        return 0;
    w->inited = true;
    int r = uv_poll_init(io->fl->loop, &w->poll, fd);
    if (r == 0) {
        w->pollable = true;
        w->poll.data = w;
        return 0;
    }
    if (r == UV_EPERM) { /* a regular file, /dev/null */
        w->pollable = false;
        return 0;
    }
    w->inited = false;
    return DX_EBADF;
}

int fdio_open(fdio_loop *fl, int rfd, int wfd, unsigned flags, dx_stream **out)
{
    *out = NULL;
    if (!fl || fl->closing)
        return DX_ESTATE;
    int rflags = rfd >= 0 ? fcntl(rfd, F_GETFL) : -1;
    int wflags = wfd >= 0 ? fcntl(wfd, F_GETFL) : -1;
    if ((rfd >= 0 && rflags < 0) || (wfd >= 0 && wflags < 0))
        return DX_EBADF;
    fdio *io = calloc(1, sizeof(*io));
    if (!io)
        return DX_ENOMEM;
    /* Inherited descriptors are not passed on to children (exec:), which
     * would keep them open after dxtls let them go. */
    if (rfd > 2)
        fcntl(rfd, F_SETFD, fcntl(rfd, F_GETFD) | FD_CLOEXEC);
    if (wfd > 2)
        fcntl(wfd, F_SETFD, fcntl(wfd, F_GETFD) | FD_CLOEXEC);
    io->fl = fl;
    io->rfd = rfd;
    io->wfd = wfd;
    io->rflags = rflags;
    io->wflags = wflags;
    io->flags = flags;
    io->slave = -1;
    int rc = dx_fd_stream_new(rfd, wfd, 0, &io->s);
    if (rc != 0) {
        restore_flags(rfd, rflags);
        restore_flags(wfd, wflags);
        free(io);
        return rc;
    }
    dx_stream_ref(io->s); /* ours, for reading its state after the owner let go */
    if ((rc = watch_init(io, &io->r, rfd)) != 0 ||
        (wfd != rfd && (rc = watch_init(io, &io->w, wfd)) != 0)) {
        io->down = true;
        restore_flags(rfd, rflags);
        restore_flags(wfd, wflags);
        dx_stream_destroy(io->s);
        if (io->r.inited && io->r.pollable) {
            io->closing++;
            uv_close((uv_handle_t *)&io->r.poll, poll_closed);
        } else {
            io_release(io);
        }
        return rc;
    }
    io->next = fl->head;
    if (fl->head)
        fl->head->prev = io;
    fl->head = io;
    fl->count++;
    uv_prepare_start(&fl->prep, prep_cb);
    *out = io->s;
    return 0;
}
