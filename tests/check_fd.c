/*
 * The fd transport (include/duplex/fd.h): pipes, sockets and a pseudo-
 * terminal, SIGPIPE, EAGAIN and short writes, EINTR, EOF and half-close,
 * the interest an event loop watches, dx_fd_poll(), and the ownership of
 * the descriptors.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <termios.h>
#include <unistd.h>

#include "harness.h"

static void assert_no_leak(void)
{
    ck_assert_msg(h_alloc_live() == 0, "%zu bytes still allocated",
                  h_alloc_live());
}

static void assert_log(const h_rec *r, const char *want)
{
    ck_assert_msg(r->nlog == strlen(want) && memcmp(r->log, want, r->nlog) == 0,
                  "events %.*s, want %s", (int)r->nlog, r->log, want);
}

static bool fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

static bool fd_is_closed(int fd)
{
    errno = 0;
    return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

static bool fd_is_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    ck_assert_int_ge(fl, 0);
    return (fl & O_NONBLOCK) != 0;
}

static void set_nonblocking(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    ck_assert_int_ge(fl, 0);
    fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
    ck_assert_int_eq(fcntl(fd, F_SETFL, fl), 0);
}

/* Runs dx_fd_poll() over v until done(arg) or max_ms pass. */
static bool poll_until(dx_stream *const *v, size_t n, bool (*done)(void *),
                       void *arg, int max_ms)
{
    int64_t end = h_now_ms() + max_ms;
    while (!done(arg)) {
        if (h_now_ms() > end)
            return false;
        ck_assert_int_ge(dx_fd_poll(v, n, 10), 0);
    }
    return true;
}

static bool rec_ended(void *arg) { return ((h_rec *)arg)->ends > 0; }
static bool rec_closed(void *arg) { return ((h_rec *)arg)->closes > 0; }

typedef struct want_bytes {
    h_rec *r;
    uint64_t n;
} want_bytes;

static bool got_bytes(void *arg)
{
    want_bytes *w = arg;
    return w->r->received >= w->n;
}

/* ---- SIGPIPE -------------------------------------------------------------- */

/* SIGPIPE at its default action (which kills the process) and unblocked,
 * whatever the runner set; restored afterwards. */
typedef struct sigpipe_saved {
    struct sigaction action;
    sigset_t mask;
} sigpipe_saved;

static void sigpipe_default(sigpipe_saved *saved)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    ck_assert_int_eq(sigaction(SIGPIPE, &dfl, &saved->action), 0);
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &pipe_set, &saved->mask), 0);
}

static void sigpipe_restore(const sigpipe_saved *saved)
{
    pthread_sigmask(SIG_SETMASK, &saved->mask, NULL);
    sigaction(SIGPIPE, &saved->action, NULL);
}

static bool sigpipe_pending(void)
{
    sigset_t pending;
    ck_assert_int_eq(sigpending(&pending), 0);
    return sigismember(&pending, SIGPIPE) == 1;
}

static bool sigpipe_blocked(void)
{
    sigset_t cur;
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, NULL, &cur), 0);
    return sigismember(&cur, SIGPIPE) == 1;
}

static void assert_epipe_error(dx_stream *s, const h_rec *r, const char *call)
{
    ck_assert_uint_eq(r->errors, 1);
    ck_assert_int_eq(r->error_code, DX_EPIPE);
    ck_assert_str_eq(r->error_name, "EPIPE");
    ck_assert_uint_eq(r->closes, 1);
    const dx_error *e = dx_stream_error(s);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(dx_error_code(e), DX_EPIPE);
    ck_assert_str_eq(dx_error_name(e), "EPIPE");
    ck_assert_str_eq(dx_error_layer(e), "fd");
    ck_assert_int_eq(dx_error_sys_errno(e), EPIPE);
    ck_assert_msg(strstr(dx_error_detail(e), call) != NULL,
                  "detail \"%s\" does not name %s", dx_error_detail(e), call);
}

/* A write to a pipe whose reader is gone fails the stream with DX_EPIPE,
 * and the process gets no SIGPIPE: with the default action the test
 * process would be killed, and none is left pending either. */
START_TEST(write_to_pipe_without_reader_fails_with_epipe_and_no_sigpipe)
{
    sigpipe_saved saved;
    sigpipe_default(&saved);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(close(p[0]), 0);
    dx_stream *s;
    ck_assert_int_eq(dx_fd_stream_new(-1, p[1], DX_FD_CLOSE, &s), 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    ck_assert_int_eq(dx_stream_write(s, "x", 1), DX_EPIPE);
    ck_assert(!sigpipe_pending());
    ck_assert(!sigpipe_blocked());
    assert_log(&r, "exc"); /* write-only: the end came on attach */
    assert_epipe_error(s, &r, "write");
    ck_assert(fd_is_closed(p[1])); /* DX_FD_CLOSE: closed with the stream */
    ck_assert_int_eq(dx_stream_write(s, "x", 1), DX_EDESTROYED);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    sigpipe_restore(&saved);
    assert_no_leak();
}
END_TEST

/* With SIGPIPE blocked by the application, the library neither unblocks it
 * nor leaves one of its own pending, and a SIGPIPE the application already
 * had pending stays pending (_i 1). */
START_TEST(epipe_leaves_the_applications_sigpipe_state_alone)
{
    sigpipe_saved saved;
    sigpipe_default(&saved);
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &pipe_set, NULL), 0);
    ck_assert(!sigpipe_pending());
    if (_i == 1) {
        ck_assert_int_eq(raise(SIGPIPE), 0);
        ck_assert(sigpipe_pending());
    }
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(close(p[0]), 0);
    dx_stream *s;
    ck_assert_int_eq(dx_fd_stream_new(-1, p[1], DX_FD_CLOSE, &s), 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    ck_assert_int_eq(dx_stream_write(s, "x", 1), DX_EPIPE);
    ck_assert(sigpipe_blocked());
    ck_assert_int_eq(sigpipe_pending(), _i == 1);
    if (_i == 1) {
        const struct timespec zero = {0, 0};
        ck_assert_int_eq(sigtimedwait(&pipe_set, NULL, &zero), SIGPIPE);
        ck_assert(!sigpipe_pending());
    }
    assert_epipe_error(s, &r, "write");
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    sigpipe_restore(&saved);
    assert_no_leak();
}
END_TEST

/* The same over a socket whose peer is gone (send with MSG_NOSIGNAL). */
START_TEST(write_to_socket_without_peer_fails_with_epipe_and_no_sigpipe)
{
    sigpipe_saved saved;
    sigpipe_default(&saved);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(close(sv[1]), 0);
    dx_stream *s;
    ck_assert_int_eq(dx_fd_stream_new(sv[0], sv[0], DX_FD_CLOSE, &s), 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    ck_assert_int_eq(dx_stream_write(s, "x", 1), DX_EPIPE);
    ck_assert(!sigpipe_pending());
    assert_log(&r, "xc");
    assert_epipe_error(s, &r, "send");
    ck_assert(fd_is_closed(sv[0]));
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    sigpipe_restore(&saved);
    assert_no_leak();
}
END_TEST

/* ---- EAGAIN, short writes, EOF, half-close ------------------------------ */

/*
 * 4 MB written at once into a pipe nobody reads yet: the kernel takes what
 * fits, the write returns DX_FULL, the rest waits in the stream's buffer,
 * and the stream asks to be told when the pipe is writable. Driving
 * dx_fd_poll() while the other end reads delivers every byte in order.
 */
START_TEST(large_write_to_full_pipe_waits_in_buffer_and_arrives_in_order)
{
    const size_t total = (size_t)4 << 20;
    const uint64_t seed = 99;
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    dx_stream *w, *rd;
    ck_assert_int_eq(dx_fd_stream_new(-1, p[1], DX_FD_CLOSE, &w), 0);
    ck_assert_int_eq(dx_fd_stream_new(p[0], -1, DX_FD_CLOSE, &rd), 0);
    h_rec rw = {0}, rr = {.verify = true, .verify_seed = seed};
    h_rec_attach(&rw, w);
    h_rec_attach(&rr, rd);

    uint8_t *buf = malloc(total);
    ck_assert_ptr_nonnull(buf);
    h_gen_fill(seed, 0, buf, total);
    ck_assert_int_eq(dx_stream_write(w, buf, total), DX_FULL);
    memset(buf, 0, total); /* the stream kept its own copy */
    free(buf);

    size_t buffered = dx_stream_write_buffered(w);
    int in_pipe = 0;
    ck_assert_int_eq(ioctl(p[0], FIONREAD, &in_pipe), 0);
    ck_assert_int_gt(in_pipe, 0);
    ck_assert_uint_eq(buffered + (size_t)in_pipe, total);
    dx_fd_interest in[2];
    ck_assert_uint_eq(dx_fd_stream_interest(w, in), 1);
    ck_assert_int_eq(in[0].fd, p[1]);
    ck_assert_uint_eq(in[0].events, DX_WRITABLE);
    ck_assert_uint_eq(rr.received, 0);

    dx_stream *v[2] = {w, rd};
    want_bytes all = {&rr, total};
    ck_assert(poll_until(v, 2, got_bytes, &all, 20000));
    ck_assert_uint_eq(dx_stream_write_buffered(w), 0);
    ck_assert_uint_eq(rw.drains, 1);
    ck_assert_uint_eq(dx_fd_stream_interest(w, in), 0);
    ck_assert_int_eq(dx_stream_end(w), 0);
    ck_assert(poll_until(v, 2, rec_ended, &rr, 5000));
    ck_assert_uint_eq(rr.received, total);
    ck_assert(!rr.mismatch);
    ck_assert_uint_eq(rw.finishes, 1);
    ck_assert_uint_eq(rw.closes, 1);
    ck_assert_uint_eq(rw.errors + rr.errors, 0);
    h_rec_assert_clean(&rw);
    h_rec_assert_clean(&rr);
    dx_stream_destroy(w);
    dx_stream_destroy(rd);
    assert_no_leak();
}
END_TEST

/* The peer writes and closes (a pipe, _i 0; a socket, _i 1): the data,
 * then on_end. Our write side stays open until we end it; then the stream
 * closes and, with DX_FD_CLOSE, so does its descriptor. */
START_TEST(peer_closing_gives_data_then_end)
{
    int fds[2], rfd, wfd, peer;
    if (_i == 0) {
        ck_assert_int_eq(pipe(fds), 0);
        rfd = fds[0];
        wfd = -1;
        peer = fds[1];
    } else {
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
        rfd = wfd = fds[0];
        peer = fds[1];
    }
    dx_stream *s;
    ck_assert_int_eq(dx_fd_stream_new(rfd, wfd, DX_FD_CLOSE, &s), 0);
    h_rec r = {.keep_data = true};
    h_rec_attach(&r, s);
    ck_assert_int_eq(write(peer, "last words", 10), 10);
    ck_assert_int_eq(close(peer), 0);
    ck_assert(poll_until(&s, 1, rec_ended, &r, 5000));
    ck_assert_uint_eq(r.len, 10);
    ck_assert_mem_eq(r.data, "last words", 10);
    assert_log(&r, "de");
    ck_assert_uint_eq(r.closes, 0);
    ck_assert(dx_stream_state(s) & DX_STREAM_WRITABLE);
    ck_assert(fd_is_open(rfd));
    ck_assert_int_eq(dx_stream_end(s), 0);
    assert_log(&r, "defc");
    ck_assert(fd_is_closed(rfd)); /* closed with the stream, before destroy */
    ck_assert_uint_eq(r.errors, 0);
    h_rec_assert_clean(&r);
    h_rec_free(&r);
    dx_stream_destroy(s);
    assert_no_leak();
}
END_TEST

/* dx_stream_end() on a socket shuts down its write side: the peer reads
 * the data and then EOF, while our read side goes on working. */
START_TEST(end_on_socket_half_closes_and_reading_goes_on)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    dx_stream *s;
    ck_assert_int_eq(dx_fd_stream_new(sv[0], sv[0], 0, &s), 0);
    h_rec r = {.keep_data = true};
    h_rec_attach(&r, s);
    ck_assert_int_eq(dx_stream_write(s, "request", 7), 0);
    ck_assert_int_eq(dx_stream_end(s), 0);
    ck_assert_uint_eq(r.finishes, 1);

    char got[16];
    ck_assert_int_eq(recv(sv[1], got, sizeof(got), MSG_DONTWAIT), 7);
    ck_assert_mem_eq(got, "request", 7);
    /* EOF, not "nothing yet": without the shutdown this would be EAGAIN. */
    ck_assert_int_eq(recv(sv[1], got, sizeof(got), MSG_DONTWAIT), 0);

    ck_assert_int_eq(write(sv[1], "response", 8), 8);
    want_bytes eight = {&r, 8};
    ck_assert(poll_until(&s, 1, got_bytes, &eight, 5000));
    ck_assert_mem_eq(r.data, "response", 8);
    ck_assert_uint_eq(r.closes, 0);
    ck_assert_int_eq(shutdown(sv[1], SHUT_WR), 0);
    ck_assert(poll_until(&s, 1, rec_closed, &r, 5000));
    assert_log(&r, "fdec");
    ck_assert_uint_eq(r.errors, 0);
    /* Without DX_FD_CLOSE the descriptor is still the caller's. */
    ck_assert(fd_is_open(sv[0]));
    h_rec_assert_clean(&r);
    h_rec_free(&r);
    dx_stream_destroy(s);
    ck_assert(fd_is_open(sv[0]));
    close(sv[0]);
    close(sv[1]);
    assert_no_leak();
}
END_TEST

/* With no read fd the stream has nothing to read: on_end comes as soon as
 * a consumer attaches, and writing works. */
START_TEST(write_only_stream_ends_as_soon_as_a_consumer_attaches)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    dx_stream *s;
    ck_assert_int_eq(dx_fd_stream_new(-1, p[1], DX_FD_CLOSE, &s), 0);
    dx_fd_interest in[2];
    ck_assert_uint_eq(dx_fd_stream_interest(s, in), 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    assert_log(&r, "e");
    ck_assert_uint_eq(dx_fd_stream_interest(s, in), 0);
    ck_assert_int_eq(dx_stream_write(s, "hi", 2), 0);
    char got[4];
    ck_assert_int_eq(read(p[0], got, sizeof(got)), 2);
    ck_assert_mem_eq(got, "hi", 2);
    ck_assert_int_eq(dx_stream_end(s), 0);
    assert_log(&r, "efc");
    ck_assert_int_eq(read(p[0], got, sizeof(got)), 0); /* EOF */
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    close(p[0]);
    assert_no_leak();
}
END_TEST

/* With no write fd a write fails the stream with DX_ENOTSUP; the end of
 * such a stream finishes at once. */
START_TEST(write_on_read_only_stream_fails_with_enotsup)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    dx_stream *s;
    ck_assert_int_eq(dx_fd_stream_new(p[0], -1, 0, &s), 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    ck_assert_int_eq(dx_stream_end(s), 0);
    ck_assert_uint_eq(r.finishes, 1);
    dx_stream_destroy(s);

    ck_assert_int_eq(dx_fd_stream_new(p[0], -1, 0, &s), 0);
    h_rec r2 = {0};
    h_rec_attach(&r2, s);
    ck_assert_int_eq(dx_stream_write(s, "x", 1), DX_ENOTSUP);
    ck_assert_uint_eq(r2.errors, 1);
    ck_assert_int_eq(r2.error_code, DX_ENOTSUP);
    ck_assert_str_eq(dx_error_layer(dx_stream_error(s)), "fd");
    assert_log(&r2, "xc");
    h_rec_assert_clean(&r);
    h_rec_assert_clean(&r2);
    dx_stream_destroy(s);
    close(p[0]);
    close(p[1]);
    assert_no_leak();
}
END_TEST

/* ---- EINTR ---------------------------------------------------------------- */

/*
 * The fds of a stream are non-blocking, and read(2) or write(2) on a
 * non-blocking pipe never fails with EINTR, so to reach the retry the test
 * makes the descriptor blocking again behind the stream's back. A SIGALRM
 * handler installed without SA_RESTART then ticks every 20 ms while the
 * call is blocked; the third tick makes the call able to finish (it
 * writes to, or drains, the other end of the pipe). Until then every tick
 * that lands in the blocked call makes it fail with EINTR, which the
 * stream must retry: without the retry the stream would fail with DX_EIO.
 */
static volatile sig_atomic_t ticks;
static int tick_fd = -1;      /* the test's own end of the pipe */
static int tick_action;       /* 1: write "wake" and close; 2: drain */
static volatile sig_atomic_t tick_drained;

static void on_tick(int sig)
{
    (void)sig;
    int saved = errno;
    if (++ticks == 3 && tick_fd >= 0) {
        if (tick_action == 1) {
            ssize_t n = write(tick_fd, "wake", 4);
            (void)n;
            close(tick_fd);
            tick_fd = -1;
        } else if (tick_action == 2) {
            static char sink[65536];
            ssize_t n = read(tick_fd, sink, sizeof(sink));
            if (n > 0)
                tick_drained += (sig_atomic_t)n;
        }
    }
    errno = saved;
}

typedef struct ticker {
    struct sigaction old;
    sigset_t mask;
} ticker;

static void ticker_start(ticker *t, int fd, int action)
{
    ticks = 0;
    tick_drained = 0;
    tick_fd = fd;
    tick_action = action;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_tick;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: interrupted calls fail with EINTR */
    ck_assert_int_eq(sigaction(SIGALRM, &sa, &t->old), 0);
    sigset_t alrm;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &alrm, &t->mask), 0);
    struct itimerval it = {{0, 20000}, {0, 20000}};
    ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
}

static void ticker_stop(ticker *t)
{
    struct itimerval off;
    memset(&off, 0, sizeof(off));
    setitimer(ITIMER_REAL, &off, NULL);
    pthread_sigmask(SIG_SETMASK, &t->mask, NULL);
    sigaction(SIGALRM, &t->old, NULL);
    tick_action = 0;
}

START_TEST(read_interrupted_by_a_signal_is_retried)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    dx_stream *s;
    ck_assert_int_eq(dx_fd_stream_new(p[0], -1, DX_FD_CLOSE, &s), 0);
    set_nonblocking(p[0], false);
    h_rec r = {.keep_data = true};
    h_rec_attach(&r, s);
    ticker t;
    ticker_start(&t, p[1], 1);
    /* Blocks in read(2) until the third tick writes and closes. */
    int rc = dx_fd_stream_ready(s, p[0], DX_READABLE);
    ticker_stop(&t);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(r.errors == 0, "the stream failed: %s (%s)", r.error_name,
                  dx_error_detail(dx_stream_error(s)));
    ck_assert_int_ge(ticks, 3);
    ck_assert_uint_eq(r.len, 4);
    ck_assert_mem_eq(r.data, "wake", 4);
    assert_log(&r, "de");
    h_rec_assert_clean(&r);
    h_rec_free(&r);
    dx_stream_destroy(s);
    assert_no_leak();
}
END_TEST

START_TEST(write_interrupted_by_a_signal_is_retried)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    dx_stream *s;
    ck_assert_int_eq(dx_fd_stream_new(-1, p[1], DX_FD_CLOSE, &s), 0);
    /* Fill the pipe to the last byte. */
    static const uint8_t zeros[65536];
    size_t filled = 0;
    for (size_t step = sizeof(zeros); step; step = step > 1 ? 1 : 0) {
        for (;;) {
            ssize_t n = write(p[1], zeros, step);
            if (n < 0) {
                ck_assert_int_eq(errno, EAGAIN);
                break;
            }
            filled += (size_t)n;
        }
    }
    ck_assert_uint_gt(filled, 0);
    set_nonblocking(p[1], false);
    set_nonblocking(p[0], true);
    h_rec r = {0};
    h_rec_attach(&r, s);
    ticker t;
    ticker_start(&t, p[0], 2);
    /* Blocks in write(2) until the third tick drains the pipe. */
    int rc = dx_stream_write(s, "!", 1);
    ticker_stop(&t);
    ck_assert_msg(rc == 0, "write returned %s (%s)", dx_err_name(rc),
                  dx_error_detail(dx_stream_error(s)));
    ck_assert_uint_eq(r.errors, 0);
    ck_assert_int_ge(ticks, 3);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 0);
    ck_assert_int_gt(tick_drained, 0);
    /* The rest of the pipe: the filler, then the byte. */
    size_t rest = 0;
    uint8_t buf[65536], last = 0;
    for (;;) {
        ssize_t n = read(p[0], buf, sizeof(buf));
        if (n <= 0)
            break;
        rest += (size_t)n;
        last = buf[n - 1];
    }
    ck_assert_uint_eq((size_t)tick_drained + rest, filled + 1);
    ck_assert_int_eq(last, '!');
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    close(p[0]);
    assert_no_leak();
}
END_TEST

/* A poll(2) interrupted by a signal counts as a time-out: dx_fd_poll()
 * returns 0 long before its time-out, and the stream goes on working. */
START_TEST(poll_interrupted_by_a_signal_counts_as_timeout)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    dx_stream *s;
    ck_assert_int_eq(dx_fd_stream_new(p[0], -1, DX_FD_CLOSE, &s), 0);
    h_rec r = {.keep_data = true};
    h_rec_attach(&r, s);
    ticker t;
    ticker_start(&t, -1, 0);
    int64_t t0 = h_now_ms();
    int rc = dx_fd_poll(&s, 1, 10000);
    int64_t took = h_now_ms() - t0;
    ticker_stop(&t);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_ge(ticks, 1);
    ck_assert_msg(took < 5000, "poll took %ld ms", (long)took);
    ck_assert_int_eq(write(p[1], "x", 1), 1);
    ck_assert_int_eq(dx_fd_poll(&s, 1, 5000), 1);
    ck_assert_uint_eq(r.len, 1);
    ck_assert_uint_eq(r.errors, 0);
    h_rec_assert_clean(&r);
    h_rec_free(&r);
    dx_stream_destroy(s);
    close(p[1]);
    assert_no_leak();
}
END_TEST

/* ---- a pseudo-terminal ---------------------------------------------------- */

typedef struct two_recs {
    h_rec *a, *b;
    uint64_t n;
} two_recs;

static bool both_got(void *arg)
{
    two_recs *t = arg;
    return t->a->received >= t->n && t->b->received >= t->n;
}

/* Opens a pseudo-terminal: *m the master, *sl the terminal side in raw
 * mode (no echo, no line discipline), as a serial line would be set up. */
static void open_raw_pty(int *m, int *sl)
{
    *m = posix_openpt(O_RDWR | O_NOCTTY);
    ck_assert_int_ge(*m, 0);
    ck_assert_int_eq(grantpt(*m), 0);
    ck_assert_int_eq(unlockpt(*m), 0);
    const char *name = ptsname(*m);
    ck_assert_ptr_nonnull(name);
    *sl = open(name, O_RDWR | O_NOCTTY);
    ck_assert_int_ge(*sl, 0);
    struct termios tio;
    ck_assert_int_eq(tcgetattr(*sl, &tio), 0);
    cfmakeraw(&tio);
    ck_assert_int_eq(tcsetattr(*sl, TCSANOW, &tio), 0);
}

/* A pty in raw mode is a character device that carries every byte value
 * unchanged both ways (no echo, no CR/LF translation, no signals). */
START_TEST(pty_carries_raw_bytes_both_ways)
{
    const size_t total = 20000;
    int m, sl;
    open_raw_pty(&m, &sl);
    struct stat st;
    ck_assert_int_eq(fstat(sl, &st), 0);
    ck_assert(S_ISCHR(st.st_mode));
    ck_assert(isatty(sl));

    dx_stream *ms, *ss;
    ck_assert_int_eq(dx_fd_stream_new(m, m, DX_FD_CLOSE, &ms), 0);
    ck_assert_int_eq(dx_fd_stream_new(sl, sl, DX_FD_CLOSE, &ss), 0);
    h_rec rm = {.verify = true, .verify_seed = 2};
    h_rec rs = {.verify = true, .verify_seed = 1};
    h_rec_attach(&rm, ms);
    h_rec_attach(&rs, ss);
    uint8_t *buf = malloc(total);
    ck_assert_ptr_nonnull(buf);
    h_gen_fill(1, 0, buf, total);
    ck_assert_int_ge(dx_stream_write(ms, buf, total), 0);
    h_gen_fill(2, 0, buf, total);
    ck_assert_int_ge(dx_stream_write(ss, buf, total), 0);
    free(buf);

    dx_stream *v[2] = {ms, ss};
    two_recs both = {&rm, &rs, total};
    ck_assert_msg(poll_until(v, 2, both_got, &both, 10000),
                  "master got %lu, slave got %lu of %zu",
                  (unsigned long)rm.received, (unsigned long)rs.received, total);
    ck_assert_uint_eq(rm.received, total);
    ck_assert_uint_eq(rs.received, total);
    ck_assert(!rm.mismatch);
    ck_assert(!rs.mismatch);
    ck_assert_uint_eq(rm.errors + rs.errors, 0);
    h_rec_assert_clean(&rm);
    h_rec_assert_clean(&rs);
    dx_stream_destroy(ss);
    dx_stream_destroy(ms);
    ck_assert(fd_is_closed(m));
    ck_assert(fd_is_closed(sl));
    assert_no_leak();
}
END_TEST

static bool rec_ended_cb(void *arg) { return ((h_rec *)arg)->ends > 0; }
static bool got_three(void *arg) { return ((h_rec *)arg)->len >= 3; }

/* When the terminal side of a pty goes away, reading the master fails with
 * EIO: that hang-up is the end of input, not an error. */
START_TEST(pty_hangup_is_the_end_of_input)
{
    int m, sl;
    open_raw_pty(&m, &sl);
    ck_assert_int_eq(write(sl, "bye", 3), 3);
    dx_stream *ms;
    ck_assert_int_eq(dx_fd_stream_new(m, m, DX_FD_CLOSE, &ms), 0);
    h_rec rm = {.keep_data = true};
    h_rec_attach(&rm, ms);
    dx_stream *v[1] = {ms};
    ck_assert(poll_until(v, 1, got_three, &rm, 5000));
    close(sl);
    ck_assert(poll_until(v, 1, rec_ended_cb, &rm, 5000));
    ck_assert_mem_eq(rm.data, "bye", 3);
    ck_assert_uint_eq(rm.errors, 0);
    ck_assert_uint_eq(rm.ends, 1);
    h_rec_assert_clean(&rm);
    h_rec_free(&rm);
    dx_stream_destroy(ms);
    assert_no_leak();
}
END_TEST

/* A refused constructor leaves the fds as they were. */
START_TEST(refused_constructor_leaves_the_fds_alone)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    int closed_fd = dup(p[1]);
    close(closed_fd);
    dx_stream *s;
    ck_assert_int_eq(dx_fd_stream_new(p[0], closed_fd, 0, &s), DX_EBADF);
    ck_assert_int_eq(fcntl(p[0], F_GETFL) & O_NONBLOCK, 0);
    close(p[0]);
    close(p[1]);
    assert_no_leak();
}
END_TEST

/* ---- interest and dx_fd_poll() ------------------------------------------- */

/* One fd used both ways is one entry with both bits; two fds are two
 * entries; an fd with no interest is left out. */
START_TEST(interest_merges_one_fd_used_both_ways)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    dx_stream *s;
    ck_assert_int_eq(dx_fd_stream_new(sv[0], sv[0], DX_FD_CLOSE, &s), 0);
    dx_fd_interest in[2];
    ck_assert_uint_eq(dx_fd_stream_interest(s, in), 0); /* no consumer */
    h_rec r = {0};
    h_rec_attach(&r, s);
    ck_assert_uint_eq(dx_fd_stream_interest(s, in), 1);
    ck_assert_int_eq(in[0].fd, sv[0]);
    ck_assert_uint_eq(in[0].events, DX_READABLE);

    /* More than the socket holds: the rest waits. */
    const size_t big = (size_t)1 << 20;
    uint8_t *buf = calloc(1, big);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(dx_stream_write(s, buf, big), DX_FULL);
    free(buf);
    ck_assert_uint_eq(dx_fd_stream_interest(s, in), 1);
    ck_assert_int_eq(in[0].fd, sv[0]);
    ck_assert_uint_eq(in[0].events, DX_READABLE | DX_WRITABLE);

    /* Paused with a full read buffer: only the write interest is left. */
    dx_stream_pause(s);
    static uint8_t chunk[20000];
    ck_assert_int_eq(write(sv[1], chunk, sizeof(chunk)), (int)sizeof(chunk));
    ck_assert_int_eq(dx_fd_stream_ready(s, sv[0], DX_READABLE), 0);
    ck_assert_uint_ge(dx_stream_read_buffered(s), DX_STREAM_DEFAULT_HWM);
    ck_assert_uint_eq(dx_fd_stream_interest(s, in), 1);
    ck_assert_int_eq(in[0].fd, sv[0]);
    ck_assert_uint_eq(in[0].events, DX_WRITABLE);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    ck_assert_uint_eq(dx_fd_stream_interest(NULL, in), 0);
    close(sv[1]);

    /* Two pipes: one entry per fd. */
    int ab[2], ba[2];
    ck_assert_int_eq(pipe(ab), 0);
    ck_assert_int_eq(pipe(ba), 0);
    ck_assert_int_eq(dx_fd_stream_new(ba[0], ab[1], DX_FD_CLOSE, &s), 0);
    h_rec r2 = {0};
    h_rec_attach(&r2, s);
    buf = calloc(1, big);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(dx_stream_write(s, buf, big), DX_FULL);
    free(buf);
    ck_assert_uint_eq(dx_fd_stream_interest(s, in), 2);
    ck_assert_int_eq(in[0].fd, ba[0]);
    ck_assert_uint_eq(in[0].events, DX_READABLE);
    ck_assert_int_eq(in[1].fd, ab[1]);
    ck_assert_uint_eq(in[1].events, DX_WRITABLE);
    h_rec_assert_clean(&r2);
    dx_stream_destroy(s);
    close(ab[0]);
    close(ba[1]);
    assert_no_leak();
}
END_TEST

static long idle_read(void *arg, void *buf, size_t cap)
{
    (void)buf, (void)cap;
    ++*(unsigned *)arg;
    return DX_EAGAIN;
}

static long idle_write(void *arg, const void *buf, size_t len)
{
    (void)buf, (void)len;
    ++*(unsigned *)arg;
    return DX_EAGAIN;
}

/* dx_fd_poll() skips NULL entries, streams that are not fd streams and
 * closed streams, returns 0 on a time-out, and refuses bad arguments. */
START_TEST(poll_skips_null_and_foreign_streams_and_times_out)
{
    dx_stream *a, *b, *t, *s;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    unsigned calls = 0;
    const dx_transport_ops idle = {.read = idle_read, .write = idle_write};
    ck_assert_int_eq(dx_transport_new(&idle, &calls, 0, &t), 0);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(dx_fd_stream_new(p[0], -1, DX_FD_CLOSE, &s), 0);
    h_rec ra = {0}, rt = {0}, rs = {.keep_data = true};
    h_rec_attach(&ra, a);
    h_rec_attach(&rt, t);
    h_rec_attach(&rs, s);
    dx_stream *v[5] = {NULL, a, t, s, NULL};

    ck_assert_int_eq(dx_fd_poll(v, 5, 0), 0);
    int64_t t0 = h_now_ms();
    ck_assert_int_eq(dx_fd_poll(v, 5, 50), 0);
    ck_assert_int_ge(h_now_ms() - t0, 40);

    ck_assert_int_eq(write(p[1], "x", 1), 1);
    ck_assert_int_eq(dx_fd_poll(v, 5, 1000), 1);
    ck_assert_uint_eq(rs.len, 1);
    ck_assert_uint_eq(calls, 0);
    ck_assert_uint_eq(ra.nlog + rt.nlog, 0);

    /* A closed stream is skipped, though its fd (not closed: the test
     * keeps a copy) would be ready. */
    int dupfd = dup(p[0]);
    ck_assert_int_ge(dupfd, 0);
    dx_stream_abort(s);
    ck_assert_int_eq(write(p[1], "y", 1), 1);
    ck_assert_int_eq(dx_fd_poll(v, 5, 0), 0);
    ck_assert_uint_eq(rs.len, 1);

    /* Nothing to wait for: it sleeps for the time-out. */
    t0 = h_now_ms();
    ck_assert_int_eq(dx_fd_poll(NULL, 0, 20), 0);
    ck_assert_int_ge(h_now_ms() - t0, 15);
    ck_assert_int_eq(dx_fd_poll(NULL, 1, 0), DX_EINVAL);
    static dx_stream *many[4097];
    ck_assert_int_eq(dx_fd_poll(many, 4097, 0), DX_EINVAL);
    ck_assert_int_eq(dx_fd_poll(many, 4096, 0), 0);

    ck_assert_int_eq(dx_fd_stream_ready(a, p[0], DX_READABLE), DX_EINVAL);
    ck_assert_int_eq(dx_fd_stream_ready(t, p[0], DX_READABLE), DX_EINVAL);
    ck_assert_int_eq(dx_fd_stream_ready(NULL, p[0], DX_READABLE), DX_EINVAL);
    ck_assert_int_eq(dx_fd_stream_ready(s, p[0], DX_READABLE), DX_EDESTROYED);
    dx_fd_interest in[2];
    ck_assert_uint_eq(dx_fd_stream_interest(t, in), 0);
    ck_assert_uint_eq(dx_fd_stream_interest(a, in), 0);
    ck_assert_uint_eq(dx_fd_stream_interest(s, NULL), 0);
    h_rec_assert_clean(&ra);
    h_rec_assert_clean(&rt);
    h_rec_assert_clean(&rs);
    h_rec_free(&rs);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    dx_stream_destroy(t);
    dx_stream_destroy(s);
    close(dupfd);
    close(p[1]);
    assert_no_leak();
}
END_TEST

typedef struct destroy_other {
    dx_stream **victims[2];
    size_t nvictims;
} destroy_other;

static void destroy_victims(h_rec *r, char ev)
{
    destroy_other *d = r->ctx;
    if (ev != H_EV_DATA)
        return;
    for (size_t i = 0; i < d->nvictims; i++) {
        dx_stream *v = *d->victims[i];
        *d->victims[i] = NULL;
        dx_stream_destroy(v);
    }
    d->nvictims = 0;
}

/*
 * Two fd streams, both readable, in one dx_fd_poll() array; the first
 * one's on_data destroys the second (_i 0), or the second and itself
 * (_i 1), or the first is the second's victim (_i 2). The array still
 * holds the destroyed handles during the call: dx_fd_poll() must keep them
 * valid and skip what closed (ASan and valgrind watch the memory).
 */
START_TEST(poll_survives_a_callback_destroying_another_stream)
{
    int p[2], q[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(pipe(q), 0);
    dx_stream *x, *y;
    ck_assert_int_eq(dx_fd_stream_new(p[0], -1, DX_FD_CLOSE, &x), 0);
    ck_assert_int_eq(dx_fd_stream_new(q[0], -1, DX_FD_CLOSE, &y), 0);
    h_rec rx = {.keep_data = true}, ry = {.keep_data = true};
    destroy_other d = {0};
    dx_stream *v[2] = {x, y};
    h_rec *killer = &rx;
    if (_i == 0) {
        d.victims[0] = &y;
        d.nvictims = 1;
    } else if (_i == 1) {
        d.victims[0] = &y;
        d.victims[1] = &x;
        d.nvictims = 2;
    } else {
        /* y serves first and destroys x, which comes after it. */
        v[0] = y;
        v[1] = x;
        killer = &ry;
        d.victims[0] = &x;
        d.nvictims = 1;
    }
    killer->on_event = destroy_victims;
    killer->ctx = &d;
    h_rec_attach(&rx, x);
    h_rec_attach(&ry, y);
    ck_assert_int_eq(write(p[1], "a", 1), 1);
    ck_assert_int_eq(write(q[1], "b", 1), 1);

    int served = dx_fd_poll(v, 2, 1000);
    ck_assert_int_eq(served, 1);
    h_rec *victim = _i == 2 ? &rx : &ry;
    ck_assert_uint_eq(killer->len, 1);
    ck_assert_uint_eq(victim->len, 0);
    ck_assert_uint_eq(victim->closes, 1);
    ck_assert_uint_eq(killer->closes, _i == 1 ? 1 : 0);
    ck_assert_uint_eq(rx.errors + ry.errors, 0);
    h_rec_assert_clean(&rx);
    h_rec_assert_clean(&ry);
    h_rec_free(&rx);
    h_rec_free(&ry);
    dx_stream_destroy(x); /* NULL once destroyed */
    dx_stream_destroy(y);
    close(p[1]);
    close(q[1]);
    assert_no_leak();
}
END_TEST

/* ---- the descriptors: ownership and bad arguments ------------------------ */

START_TEST(fd_close_flag_closes_the_fds_and_without_it_they_stay_open)
{
    int p[2], sv[2], q[2];
    dx_stream *s;

    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(dx_fd_stream_new(p[0], p[1], DX_FD_CLOSE, &s), 0);
    ck_assert(fd_is_nonblocking(p[0]));
    ck_assert(fd_is_nonblocking(p[1]));
    dx_stream_destroy(s);
    ck_assert(fd_is_closed(p[0]));
    ck_assert(fd_is_closed(p[1]));

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(dx_fd_stream_new(sv[0], sv[0], DX_FD_CLOSE, &s), 0);
    dx_stream_destroy(s);
    ck_assert(fd_is_closed(sv[0]));
    char c;
    ck_assert_int_eq(recv(sv[1], &c, 1, MSG_DONTWAIT), 0); /* the peer sees EOF */
    close(sv[1]);

    ck_assert_int_eq(pipe(q), 0);
    ck_assert_int_eq(dx_fd_stream_new(q[0], q[1], 0, &s), 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    ck_assert_int_eq(dx_stream_end(s), 0); /* a pipe it does not own: */
    ck_assert(fd_is_open(q[1]));            /* not closed by the end */
    dx_stream_destroy(s);
    ck_assert(fd_is_open(q[0]));
    ck_assert(fd_is_open(q[1]));
    /* They stay non-blocking, and still work. */
    ck_assert(fd_is_nonblocking(q[0]));
    ck_assert(fd_is_nonblocking(q[1]));
    ck_assert_int_eq(write(q[1], "z", 1), 1);
    ck_assert_int_eq(read(q[0], &c, 1), 1);
    close(q[0]);
    close(q[1]);
    assert_no_leak();
}
END_TEST

START_TEST(bad_arguments_are_refused)
{
    static int dummy;
    dx_stream *const bogus = (dx_stream *)(void *)&dummy;
    dx_stream *s = bogus;
    int p[2], gone[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(pipe(gone), 0);
    close(gone[0]);
    close(gone[1]);

    ck_assert_int_eq(dx_fd_stream_new(-1, -1, 0, &s), DX_EINVAL);
    ck_assert_ptr_null(s);
    s = bogus;
    ck_assert_int_eq(dx_fd_stream_new(p[0], p[1], 0x2, &s), DX_EINVAL);
    ck_assert_ptr_null(s);
    s = bogus;
    ck_assert_int_eq(dx_fd_stream_new(p[0], p[1], DX_FD_CLOSE | 0x100u, &s),
                     DX_EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(dx_fd_stream_new(p[0], p[1], 0, NULL), DX_EINVAL);
    s = bogus;
    ck_assert_int_eq(dx_fd_stream_new(gone[0], -1, 0, &s), DX_EBADF);
    ck_assert_ptr_null(s);
    s = bogus;
    ck_assert_int_eq(dx_fd_stream_new(-1, gone[1], 0, &s), DX_EBADF);
    ck_assert_ptr_null(s);
    s = bogus;
    ck_assert_int_eq(dx_fd_stream_new(p[0], gone[1], DX_FD_CLOSE, &s), DX_EBADF);
    ck_assert_ptr_null(s);
    ck_assert(fd_is_open(p[0])); /* a refused stream owns nothing */
    assert_no_leak();

    /* Memory short: refused, and the fds are still the caller's. */
    s = bogus;
    h_alloc_fail_from(0);
    ck_assert_int_eq(dx_fd_stream_new(p[0], p[1], DX_FD_CLOSE, &s), DX_ENOMEM);
    h_alloc_fail_from(-1);
    ck_assert_ptr_null(s);
    ck_assert(fd_is_open(p[0]));
    ck_assert(fd_is_open(p[1]));

    /* What an fd stream is. */
    ck_assert_int_eq(dx_fd_stream_new(p[0], p[1], DX_FD_CLOSE, &s), 0);
    ck_assert(dx_is_fd_stream(s));
    ck_assert(dx_is_transport(s));
    ck_assert_str_eq(dx_stream_kind(s), "fd");
    ck_assert(!dx_is_fd_stream(NULL));
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert(!dx_is_fd_stream(a));
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    dx_stream_destroy(s);
    assert_no_leak();
}
END_TEST

Suite *fd_suite(void)
{
    Suite *s = suite_create("fd");
    TCase *sig = tcase_create("sigpipe");
    tcase_set_timeout(sig, 30);
    tcase_add_test(sig, write_to_pipe_without_reader_fails_with_epipe_and_no_sigpipe);
    tcase_add_loop_test(sig, epipe_leaves_the_applications_sigpipe_state_alone, 0, 2);
    tcase_add_test(sig, write_to_socket_without_peer_fails_with_epipe_and_no_sigpipe);
    suite_add_tcase(s, sig);

    TCase *io = tcase_create("io");
    tcase_set_timeout(io, 30);
    tcase_add_test(io, large_write_to_full_pipe_waits_in_buffer_and_arrives_in_order);
    tcase_add_loop_test(io, peer_closing_gives_data_then_end, 0, 2);
    tcase_add_test(io, end_on_socket_half_closes_and_reading_goes_on);
    tcase_add_test(io, write_only_stream_ends_as_soon_as_a_consumer_attaches);
    tcase_add_test(io, write_on_read_only_stream_fails_with_enotsup);
    tcase_add_test(io, read_interrupted_by_a_signal_is_retried);
    tcase_add_test(io, write_interrupted_by_a_signal_is_retried);
    tcase_add_test(io, poll_interrupted_by_a_signal_counts_as_timeout);
    tcase_add_test(io, pty_carries_raw_bytes_both_ways);
    tcase_add_test(io, pty_hangup_is_the_end_of_input);
    suite_add_tcase(s, io);

    TCase *loop = tcase_create("loop");
    tcase_set_timeout(loop, 30);
    tcase_add_test(loop, interest_merges_one_fd_used_both_ways);
    tcase_add_test(loop, poll_skips_null_and_foreign_streams_and_times_out);
    tcase_add_loop_test(loop, poll_survives_a_callback_destroying_another_stream, 0, 3);
    suite_add_tcase(s, loop);

    TCase *own = tcase_create("ownership");
    tcase_set_timeout(own, 30);
    tcase_add_test(own, fd_close_flag_closes_the_fds_and_without_it_they_stay_open);
    tcase_add_test(own, bad_arguments_are_refused);
    tcase_add_test(own, refused_constructor_leaves_the_fds_alone);
    suite_add_tcase(s, own);
    return s;
}
