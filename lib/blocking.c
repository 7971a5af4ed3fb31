/*
 * Blocking TLS (include/duplex/blocking.h), written with the public calls
 * of the TLS filter and the streams, as BearSSL's ssl_io.c is written
 * with its engine's.
 *
 * The connection runs in the SecurePair shape and b is the consumer of
 * both of its streams:
 *  - what the transport gives is written to the lower stream (the
 *    connection decrypts it at once and delivers cleartext on the upper
 *    stream);
 *  - what the lower stream delivers (records) is written to the transport
 *    at once when nothing waits before it (for fds, as much as the kernel
 *    takes without blocking), and otherwise queued in b->out;
 *  - what the upper stream delivers (cleartext) goes straight into the
 *    buffer of the dx_blocking_read() under way, or into b->clear; when
 *    b->clear is full the upper stream is paused, the connection stops
 *    taking input, and the transport is no longer read.
 * Every call is a loop (pump) that moves bytes until its goal holds:
 * write what waits, read when there is room and a need, and keep the
 * connection's deadlines. Nothing runs between calls.
 */
#include "config.h"

#include <duplex/blocking.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "bufq.h"
#include "errors.h"
#include "sysio.h"

/* One read from the transport. */
#define IO_SIZE ((size_t)16384)
/* Cleartext handed to the connection at once by a write. */
#define CHUNK ((size_t)65536)
/* Records waiting for the transport above which no more input is read
 * (a write keeps up to two chunks waiting). */
#define OUT_HIGH (4 * CHUNK)
/* Largest read buffer. */
#define READ_BUFFER_MAX ((size_t)16 << 20)

/* What a call waits for. */
typedef enum goal {
    G_HANDSHAKE,  /* secure, and what the handshake sent is written */
    G_READ,       /* cleartext, or the peer's end */
    G_ROOM,       /* room for the next part of a write */
    G_FLUSHED,    /* everything written is on the transport */
    G_CLOSE,      /* close_notify written */
    G_CLOSE_WAIT, /* and the peer's read */
} goal;

struct dx_blocking {
    dx_tls *t;
    dx_stream *upper, *lower;

    /* the transport */
    bool fd;
    dx_blocking_io io;
    void *arg;
    dx_sysfd sys;
    int rfl, wfl; /* the fds' flags before, restored by free */

    dx_tls_clock_fn clock;
    void *clock_arg;
    dx_tls_events uev; /* the caller's TLS events */
    void *uuser;

    dx_bufq out;   /* records waiting for the transport */
    dx_bufq clear; /* cleartext read ahead */
    size_t clear_limit;
    uint8_t *dst; /* the buffer of the read under way */
    size_t dst_len, dst_got;

    bool in_call;     /* a call runs: events must not call in */
    bool started;     /* dx_tls_start() was called */
    bool secure;      /* on_secure came */
    bool peer_ended;  /* the upper stream's end: the peer's close_notify */
    bool lower_ended; /* our close_notify went below */
    bool in_eof;      /* the transport's input ended */
    bool shut;        /* the transport's write side was ended */
    bool out_dead;    /* writes failed after the peer's end: drop records */
    bool paused;      /* the upper stream is paused: b->clear is full */
    bool discard;     /* closing: cleartext is dropped */
    bool idle_fired;  /* on_timeout came during this call */
    bool gave_up;     /* closed before the handshake completed */

    dx_error *err;     /* the connection's failure */
    dx_error *io_err;  /* a transport failure seen inside an event */
    dx_error *soft;    /* the last failure that left the connection usable */
    const dx_error *last;
};

/* ---- errors ----------------------------------------------------------- */

static dx_error *or_oom(dx_error *e) { return e ? e : (dx_error *)dx_error_oom(); }

/* A failure a callback of the transport returned. */
static dx_error *io_error(long code, const char *call)
{
    int c = code < 0 && code >= INT_MIN ? (int)code : DX_EIO;
    dx_error *e = dx_error_new(c, NULL, "transport", "%s", dx_strerror(c));
    dx_error_set_detail(e, "%s returned %ld", call, code);
    return or_oom(e);
}

/* A failure that leaves the connection usable: the call returns code. */
static int soft_fail(dx_blocking *b, int code, const char *name, const char *msg)
{
    dx_error_free(b->soft);
    b->soft = dx_error_new(code, name, "blocking", "%s", msg);
    b->last = b->soft ? b->soft : dx_error_oom();
    return code;
}

/* The connection failed: the call returns its code. */
static int hard_code(dx_blocking *b)
{
    b->last = b->err;
    int code = dx_error_code(b->err);
    return code < 0 ? code : DX_EUNKNOWN;
}

/* Records the connection's failure (the first one counts). */
static void note_error(dx_blocking *b, const dx_error *err)
{
    if (!b->err)
        b->err = or_oom(dx_error_copy(err));
}

/* A transport failure seen inside an event; reported by the pump. */
static void set_io_err(dx_blocking *b, dx_error *e)
{
    if (!b->io_err && !b->err)
        b->io_err = e;
    else
        dx_error_free(e);
}

static void shut_transport(dx_blocking *b);

/* Fails the connection with e (owned): the streams fail, the transport's
 * write side ends. */
static void fail_now(dx_blocking *b, dx_error *e)
{
    e = or_oom(e);
    note_error(b, e);
    dx_stream_fail_with(b->upper, e);
    shut_transport(b);
}

static void report_io_err(dx_blocking *b)
{
    if (b->io_err) {
        dx_error *e = b->io_err;
        b->io_err = NULL;
        fail_now(b, e);
    }
}

/* A write to the transport failed. After the peer's close_notify that is
 * no failure of the connection (the peer may have gone already): what
 * waits is dropped. */
static void out_fail(dx_blocking *b, dx_error *e)
{
    dx_bufq_clear(&b->out);
    if (b->peer_ended) {
        dx_error_free(e);
        b->out_dead = true;
        return;
    }
    set_io_err(b, e);
}

/* ---- the clock and deadlines ------------------------------------------------ */

static uint64_t mono_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t now_ms(const dx_blocking *b) { return b->clock(b->clock_arg); }

/* Handles the connection's deadlines that passed. */
static void check_due(dx_blocking *b)
{
    uint64_t d = dx_tls_deadline(b->t);
    if (d != DX_TLS_NO_DEADLINE && now_ms(b) >= d)
        dx_tls_check_timeouts(b->t);
}

/* How long poll() may wait: until the next deadline, or for ever. */
static int poll_timeout(const dx_blocking *b)
{
    uint64_t d = dx_tls_deadline(b->t);
    if (d == DX_TLS_NO_DEADLINE)
        return -1;
    uint64_t now = now_ms(b);
    if (d <= now)
        return 0;
    return d - now > INT_MAX ? INT_MAX : (int)(d - now);
}

/* ---- the transport ------------------------------------------------------ */

/* Writes what it can of data now. fds: without blocking; callbacks: until
 * all went or the callback made no progress. Returns the count written;
 * a failure goes to out_fail(). */
static size_t send_some(dx_blocking *b, const uint8_t *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        dx_error *e = NULL;
        long n = b->fd ? dx_sysfd_write(&b->sys, data + done, len - done, &e)
                       : b->io.write(b->arg, data + done, len - done);
        if (n > 0) {
            done += (size_t)n > len - done ? len - done : (size_t)n;
            continue;
        }
        if (n == DX_EAGAIN || (n == 0 && !b->fd))
            break;
        if (!b->fd)
            e = io_error(n, "write");
        else if (n == 0)
            e = dx_sys_error(b->sys.wsock ? "send" : "write", EIO);
        out_fail(b, e);
        return done;
    }
    return done;
}

/* Writes what waits in b->out, as far as it goes now. */
static void flush_out(dx_blocking *b)
{
    dx_iov v;
    while (!b->io_err && dx_bufq_peekv(&b->out, &v, 1)) {
        size_t n = send_some(b, v.base, v.len);
        dx_bufq_consume(&b->out, n);
        if (n < v.len)
            return;
    }
}

/* Ends the transport's write side, once. */
static void shut_transport(dx_blocking *b)
{
    if (b->shut)
        return;
    b->shut = true;
    dx_error *e = NULL;
    int rc;
    if (b->fd) {
        rc = dx_sysfd_shutdown(&b->sys, &e);
    } else {
        rc = b->io.shutdown ? b->io.shutdown(b->arg) : 0;
        if (rc < 0)
            e = io_error(rc, "shutdown");
    }
    if (rc < 0 && !b->err)
        out_fail(b, e);
    else
        dx_error_free(e);
}

/* After our close_notify went: the transport's write side ends. */
static void settle(dx_blocking *b)
{
    if (b->lower_ended && !b->out.bytes && !b->io_err)
        shut_transport(b);
}

static void input_end(dx_blocking *b)
{
    b->in_eof = true;
    (void)dx_stream_end(b->lower);
}

/* Can the transport be read now? */
static bool can_read(const dx_blocking *b)
{
    return b->started && !b->in_eof && !b->err && !b->io_err &&
           (dx_stream_state(b->lower) & DX_STREAM_WRITABLE) &&
           dx_stream_write_buffered(b->lower) == 0 && b->out.bytes < OUT_HIGH;
}

/* One read of the transport (of an fd without blocking), handed to the
 * connection. What it cannot take now stays in the lower stream's write
 * buffer, and the transport is not read again before the connection took
 * it. */
static void read_in(dx_blocking *b)
{
    uint8_t in[IO_SIZE];
    dx_error *e = NULL;
    long n = b->fd ? dx_sysfd_read(&b->sys, in, sizeof(in), &e)
                   : b->io.read(b->arg, in, sizeof(in));
    if (n > 0) /* a failure of the write closed the stream: seen */
        (void)dx_stream_write(b->lower, in, (size_t)n > sizeof(in) ? sizeof(in) : (size_t)n);
    else if (n == 0)
        input_end(b);
    else if (n != DX_EAGAIN)
        set_io_err(b, b->fd ? e : io_error(n, "read"));
}

/* Nothing can move and the goal is not reached: say why, and give up. */
static void stuck(dx_blocking *b)
{
    if (dx_stream_write_buffered(b->lower) && b->paused)
        fail_now(b, dx_error_new(DX_ENOBUFS, NULL, "blocking",
                                 "the connection must read the peer's messages to go on, "
                                 "but unread cleartext fills the read buffer"));
    else if (b->in_eof)
        fail_now(b, dx_error_new(DX_ECONNRESET, "ECONNRESET", "blocking",
                                 "the transport ended while the connection still needed "
                                 "the peer"));
    else
        fail_now(b, dx_error_new(DX_ESTATE, NULL, "blocking",
                                 "the connection cannot go on"));
}

/* One step over fds: wait with poll() for what can move, until the next
 * deadline, and move it. */
static void step_fd(dx_blocking *b)
{
    bool want_out = b->out.bytes > 0;
    bool want_in = can_read(b);
    if (!want_out && !want_in) {
        stuck(b);
        return;
    }
    struct pollfd p[2];
    nfds_t n = 0;
    int ri = -1, wi = -1;
    if (want_in) {
        p[n] = (struct pollfd){.fd = b->sys.rfd, .events = POLLIN};
        ri = (int)n++;
    }
    if (want_out) {
        if (ri >= 0 && b->sys.wfd == b->sys.rfd) {
            p[ri].events |= POLLOUT;
            wi = ri;
        } else {
            p[n] = (struct pollfd){.fd = b->sys.wfd, .events = POLLOUT};
            wi = (int)n++;
        }
    }
    int r = poll(p, n, poll_timeout(b));
    if (r < 0 && errno != EINTR) {
        set_io_err(b, dx_sys_error("poll", errno));
        return;
    }
    if (r > 0 && wi >= 0 && (p[wi].revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL)))
        flush_out(b);
    if (r > 0 && ri >= 0 && (p[ri].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL)) &&
        can_read(b))
        read_in(b);
    check_due(b);
}

/* One step over callbacks: write what waits, else read. */
static void step_io(dx_blocking *b)
{
    if (b->out.bytes) {
        flush_out(b);
        check_due(b);
        return;
    }
    if (!can_read(b)) {
        stuck(b);
        return;
    }
    check_due(b);
    if (b->err || b->idle_fired)
        return;
    read_in(b);
    check_due(b);
}

/* ---- events of the streams and the connection --------------------------- */

/* Lets the connection deliver again once the read buffer has room. */
static void refill(dx_blocking *b)
{
    if (b->paused && b->clear.bytes < b->clear_limit) {
        b->paused = false;
        dx_stream_resume(b->upper);
    }
}

static void up_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    dx_blocking *b = user;
    if (b->discard)
        return;
    if (b->dst && !b->clear.bytes) {
        size_t n = b->dst_len - b->dst_got;
        if (n > len)
            n = len;
        memcpy(b->dst + b->dst_got, data, n);
        b->dst_got += n;
        data += n;
        len -= n;
    }
    if (len && dx_bufq_append(&b->clear, data, len) != 0) {
        set_io_err(b, or_oom(dx_error_new(DX_ENOMEM, NULL, "blocking", NULL)));
        return;
    }
    if (!b->paused && b->clear.bytes >= b->clear_limit) {
        b->paused = true;
        dx_stream_pause(s);
    }
}

static void up_end(dx_stream *s, void *user)
{
    (void)s;
    ((dx_blocking *)user)->peer_ended = true;
}

static void any_error(dx_stream *s, const dx_error *err, void *user)
{
    (void)s;
    note_error(user, err);
}

static void low_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    (void)s;
    dx_blocking *b = user;
    if (b->out_dead || b->io_err)
        return;
    if (!b->out.bytes) {
        size_t n = send_some(b, data, len);
        data += n;
        len -= n;
    }
    if (len && !b->out_dead && !b->io_err && dx_bufq_append(&b->out, data, len) != 0)
        set_io_err(b, or_oom(dx_error_new(DX_ENOMEM, NULL, "blocking", NULL)));
}

static void low_end(dx_stream *s, void *user)
{
    (void)s;
    ((dx_blocking *)user)->lower_ended = true;
}

static const dx_stream_events upper_events = {
    .on_data = up_data,
    .on_end = up_end,
    .on_error = any_error,
};

static const dx_stream_events lower_events = {
    .on_data = low_data,
    .on_end = low_end,
    .on_error = any_error,
};

static void ev_secure(dx_tls *t, void *u)
{
    dx_blocking *b = u;
    b->secure = true;
    if (b->uev.on_secure)
        b->uev.on_secure(t, b->uuser);
}

static void ev_session(dx_tls *t, const uint8_t *session, size_t len, void *u)
{
    dx_blocking *b = u;
    if (b->uev.on_session)
        b->uev.on_session(t, session, len, b->uuser);
}

static void ev_keylog(dx_tls *t, const char *line, void *u)
{
    dx_blocking *b = u;
    if (b->uev.on_keylog)
        b->uev.on_keylog(t, line, b->uuser);
}

static void ev_trace(dx_tls *t, const char *text, void *u)
{
    dx_blocking *b = u;
    if (b->uev.on_trace)
        b->uev.on_trace(t, text, b->uuser);
}

static void ev_timeout(dx_tls *t, void *u)
{
    dx_blocking *b = u;
    b->idle_fired = true;
    if (b->uev.on_timeout)
        b->uev.on_timeout(t, b->uuser);
}

static void ev_deadline(dx_tls *t, uint64_t when, void *u)
{
    dx_blocking *b = u;
    if (b->uev.on_deadline)
        b->uev.on_deadline(t, when, b->uuser);
}

static void ev_handshake_error(dx_tls *t, const dx_error *err, void *u)
{
    dx_blocking *b = u;
    if (b->uev.on_handshake_error)
        b->uev.on_handshake_error(t, err, b->uuser);
}

static void ev_ocsp_response(dx_tls *t, const uint8_t *response, size_t len, void *u)
{
    dx_blocking *b = u;
    if (b->uev.on_ocsp_response)
        b->uev.on_ocsp_response(t, response, len, b->uuser);
}

/* Every member of dx_tls_events has its forwarder here. */
static const dx_tls_events tls_events = {
    .on_secure = ev_secure,
    .on_session = ev_session,
    .on_keylog = ev_keylog,
    .on_trace = ev_trace,
    .on_timeout = ev_timeout,
    .on_deadline = ev_deadline,
    .on_handshake_error = ev_handshake_error,
    .on_ocsp_response = ev_ocsp_response,
};

/* ---- the pump ----------------------------------------------------------------- */

static bool reached(const dx_blocking *b, goal g)
{
    size_t out = b->out.bytes;
    switch (g) {
    case G_HANDSHAKE:
        return b->secure && !out;
    case G_READ:
        return b->dst_got || b->clear.bytes || b->peer_ended;
    case G_ROOM:
        return !dx_stream_write_buffered(b->upper) && out < CHUNK;
    case G_FLUSHED:
        return !dx_stream_write_buffered(b->upper) && !out;
    case G_CLOSE:
        return b->lower_ended && !out;
    case G_CLOSE_WAIT:
        return b->lower_ended && !out && b->peer_ended;
    }
    return false;
}

/* Moves bytes until the goal holds (0) or the call fails (a code). */
static int pump(dx_blocking *b, goal g)
{
    for (;;) {
        report_io_err(b);
        if (g == G_READ && reached(b, g))
            return 0;
        if (b->err) {
            if (b->fd && b->out.bytes && !b->out_dead)
                flush_out(b); /* the alert, if the kernel takes it now */
            dx_bufq_clear(&b->out);
            shut_transport(b);
            dx_error_free(b->io_err);
            b->io_err = NULL;
            return hard_code(b);
        }
        if (reached(b, g)) {
            settle(b);
            if (!b->io_err)
                return 0;
            continue;
        }
        if (b->idle_fired) {
            b->idle_fired = false;
            if (g == G_ROOM || g == G_FLUSHED) {
                fail_now(b, dx_error_new(DX_ETIMEDOUT, NULL, "blocking",
                                         "the write stalled for the idle timeout"));
                continue;
            }
            return soft_fail(b, DX_ETIMEDOUT, NULL, "no traffic for the idle timeout");
        }
        refill(b);
        if (b->fd)
            step_fd(b);
        else
            step_io(b);
        settle(b);
    }
}

/* ---- public calls --------------------------------------------------------------- */

static int take_over(dx_tls *t, dx_blocking **out)
{
    dx_stream *up = dx_tls_upper(t), *low = dx_tls_lower(t);
    if (!up || !low || dx_stream_user(up) || dx_stream_user(low))
        return DX_EINVAL;
    dx_blocking *b = dx_calloc(1, sizeof(*b));
    if (!b)
        return DX_ENOMEM;
    dx_live_inc();
    b->t = t;
    b->upper = up;
    b->lower = low;
    b->sys.rfd = b->sys.wfd = -1;
    b->clock = mono_ms;
    b->clear_limit = DX_BLOCKING_DEFAULT_READ_BUFFER;
    *out = b;
    return 0;
}

/* Becomes the consumer of the connection's streams and events, once the
 * transport is known. */
static void wire(dx_blocking *b)
{
    dx_tls_set_events(b->t, &tls_events, b);
    dx_tls_set_clock(b->t, NULL, NULL);
    /* A paused upper stream holds at most one delivery of its own. */
    dx_stream_set_high_water(b->upper, 0, DX_STREAM_DEFAULT_HWM);
    dx_stream_set_events(b->upper, &upper_events, b);
    dx_stream_set_events(b->lower, &lower_events, b);
}

int dx_blocking_new(dx_tls *t, const dx_blocking_io *io, void *arg, dx_blocking **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    if (!t || !io || !io->read || !io->write)
        return DX_EINVAL;
    dx_blocking *b;
    int rc = take_over(t, &b);
    if (rc != 0)
        return rc;
    b->io = *io;
    b->arg = arg;
    wire(b);
    *out = b;
    return 0;
}

int dx_blocking_new_fd(dx_tls *t, int rfd, int wfd, unsigned flags, dx_blocking **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    if (!t || rfd < 0 || wfd < 0 || (flags & ~DX_BLOCKING_CLOSE_FDS))
        return DX_EINVAL;
    int rfl = fcntl(rfd, F_GETFL), wfl = fcntl(wfd, F_GETFL);
    if (rfl < 0 || wfl < 0)
        return DX_EBADF;
    if (!dx_tls_upper(t) || dx_stream_user(dx_tls_upper(t)) || dx_stream_user(dx_tls_lower(t)))
        return DX_EINVAL;
    if (fcntl(rfd, F_SETFL, rfl | O_NONBLOCK) < 0 ||
        (wfd != rfd && fcntl(wfd, F_SETFL, wfl | O_NONBLOCK) < 0)) {
        int code = dx_errno_to_code(errno);
        fcntl(rfd, F_SETFL, rfl);
        return code;
    }
    dx_blocking *b;
    int rc = take_over(t, &b);
    if (rc != 0) {
        fcntl(rfd, F_SETFL, rfl);
        fcntl(wfd, F_SETFL, wfl);
        return rc;
    }
    b->fd = true;
    dx_sysfd_init(&b->sys, rfd, wfd, flags & DX_BLOCKING_CLOSE_FDS);
    b->rfl = rfl;
    b->wfl = wfl;
    wire(b);
    *out = b;
    return 0;
}

void dx_blocking_free(dx_blocking *b)
{
    if (!b)
        return;
    dx_tls_destroy(b->t);
    if (b->fd) {
        if (!b->sys.own) {
            fcntl(b->sys.rfd, F_SETFL, b->rfl);
            if (b->sys.wfd != b->sys.rfd)
                fcntl(b->sys.wfd, F_SETFL, b->wfl);
        }
        dx_sysfd_close(&b->sys); /* closes them if they are its own */
    }
    dx_bufq_clear(&b->out);
    dx_bufq_clear(&b->clear);
    dx_error_free(b->err);
    dx_error_free(b->io_err);
    dx_error_free(b->soft);
    dx_free(b);
    dx_live_dec();
}

dx_tls *dx_blocking_tls(const dx_blocking *b) { return b ? b->t : NULL; }

int dx_blocking_set_events(dx_blocking *b, const dx_tls_events *ev, void *user)
{
    if (!b)
        return DX_EINVAL;
    if (ev)
        b->uev = *ev;
    else
        memset(&b->uev, 0, sizeof(b->uev));
    b->uuser = user;
    return 0;
}

int dx_blocking_set_clock(dx_blocking *b, dx_tls_clock_fn now, void *arg)
{
    if (!b)
        return DX_EINVAL;
    b->clock = now ? now : mono_ms;
    b->clock_arg = now ? arg : NULL;
    return dx_tls_set_clock(b->t, now, arg);
}

int dx_blocking_set_read_buffer(dx_blocking *b, size_t size)
{
    if (!b || size < 1 || size > READ_BUFFER_MAX)
        return DX_EINVAL;
    b->clear_limit = size;
    return 0;
}

size_t dx_blocking_pending(const dx_blocking *b) { return b ? b->clear.bytes : 0; }

const dx_error *dx_blocking_error(const dx_blocking *b) { return b ? b->last : NULL; }

/* Every call starts here: no call from inside the connection's events. */
static int enter(dx_blocking *b)
{
    if (b->in_call)
        return soft_fail(b, DX_ESTATE, NULL,
                         "a blocking call from inside an event of the connection");
    b->in_call = true;
    b->idle_fired = false;
    return 0;
}

static int handshake(dx_blocking *b)
{
    if (b->err)
        return hard_code(b);
    if (b->secure)
        return 0;
    if (!b->started) {
        b->started = true;
        if (dx_tls_start(b->t) != 0) {
            fail_now(b, dx_error_new(DX_ESTATE, NULL, "blocking",
                                     "the connection was started before it was handed over"));
            return hard_code(b);
        }
    }
    return pump(b, G_HANDSHAKE);
}

int dx_blocking_handshake(dx_blocking *b)
{
    if (!b)
        return DX_EINVAL;
    int rc = enter(b);
    if (rc != 0)
        return rc;
    rc = handshake(b);
    b->in_call = false;
    return rc;
}

/* Copies read-ahead cleartext to buf. */
static size_t take_clear(dx_blocking *b, void *buf, size_t len)
{
    size_t n = dx_bufq_take(&b->clear, buf, len);
    if (n)
        refill(b);
    return n;
}

/* The peer's close_notify was read: our answer goes if it can now. */
static long at_end(dx_blocking *b)
{
    if (b->fd && !b->err)
        flush_out(b);
    if (!b->err && !b->io_err)
        settle(b);
    dx_error_free(b->io_err); /* after the end a transport failure is moot */
    b->io_err = NULL;
    return 0;
}

static long do_read(dx_blocking *b, void *buf, size_t len)
{
    if (!buf || !len)
        return soft_fail(b, DX_EINVAL, NULL, "a read needs a buffer");
    if (len > LONG_MAX)
        len = LONG_MAX;
    size_t n = take_clear(b, buf, len);
    if (n)
        return (long)n;
    if (b->peer_ended)
        return at_end(b);
    int rc = handshake(b);
    if (rc < 0)
        return rc;
    b->dst = buf;
    b->dst_len = len;
    b->dst_got = 0;
    rc = pump(b, G_READ);
    b->dst = NULL;
    n = b->dst_got ? b->dst_got : take_clear(b, buf, len);
    if (n)
        return (long)n;
    if (b->peer_ended)
        return at_end(b);
    return rc < 0 ? rc : hard_code(b);
}

long dx_blocking_read(dx_blocking *b, void *buf, size_t len)
{
    if (!b)
        return DX_EINVAL;
    int rc = enter(b);
    if (rc != 0)
        return rc;
    long r = do_read(b, buf, len);
    b->in_call = false;
    return r;
}

static long do_write(dx_blocking *b, const void *buf, size_t len)
{
    if ((!buf && len) || len > LONG_MAX)
        return soft_fail(b, DX_EINVAL, NULL, "a write needs a buffer of at most LONG_MAX bytes");
    int rc = handshake(b);
    if (rc < 0)
        return rc;
    if (!(dx_stream_state(b->upper) & DX_STREAM_WRITABLE))
        return soft_fail(b, DX_EWRITEAFTEREND, NULL,
                         "this side was closed (dx_blocking_close, or the peer's close_notify)");
    const uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        if ((rc = pump(b, G_ROOM)) < 0)
            return rc;
        size_t n = len - done < CHUNK ? len - done : CHUNK;
        rc = dx_stream_write(b->upper, p + done, n);
        if (rc < 0) {
            report_io_err(b);
            if (b->err)
                return hard_code(b);
            if (rc == DX_EWRITEAFTEREND)
                return soft_fail(b, rc, NULL,
                                 "this side was closed (the peer's close_notify)");
            fail_now(b, dx_error_new(rc, NULL, "blocking", "the connection refused the write"));
            return hard_code(b);
        }
        done += n;
    }
    if ((rc = pump(b, G_FLUSHED)) < 0)
        return rc;
    return (long)len;
}

long dx_blocking_write(dx_blocking *b, const void *buf, size_t len)
{
    if (!b)
        return DX_EINVAL;
    int rc = enter(b);
    if (rc != 0)
        return rc;
    long r = do_write(b, buf, len);
    b->in_call = false;
    return r;
}

static int do_close(dx_blocking *b, unsigned flags)
{
    if (flags & ~DX_BLOCKING_WAIT_PEER)
        return soft_fail(b, DX_EINVAL, NULL, "unknown flags");
    if (b->gave_up)
        return 0;
    if (b->err)
        return hard_code(b);
    if (!b->secure) {
        /* No close_notify before the handshake: give the connection up. */
        b->started = true;
        b->gave_up = true;
        fail_now(b, dx_error_new(DX_ECANCELED, NULL, "blocking",
                                 "closed before the handshake completed"));
        dx_bufq_clear(&b->out);
        return 0;
    }
    if (dx_stream_state(b->upper) & DX_STREAM_WRITABLE)
        (void)dx_stream_end(b->upper);
    int rc = pump(b, G_CLOSE);
    if (rc < 0 || !(flags & DX_BLOCKING_WAIT_PEER))
        return rc;
    b->discard = true;
    dx_bufq_clear(&b->clear);
    return pump(b, G_CLOSE_WAIT);
}

int dx_blocking_close(dx_blocking *b, unsigned flags)
{
    if (!b)
        return DX_EINVAL;
    int rc = enter(b);
    if (rc != 0)
        return rc;
    rc = do_close(b, flags);
    b->in_call = false;
    return rc;
}
