/*
 * The libuv adapter (include/duplex/uv.h): uv streams under the stream
 * contract (socket pairs, TCP on 127.0.0.1, one-way pipes, Unix sockets),
 * byte-exact transfers with slow readers and bounded memory, half-close,
 * destroy inside callbacks, peers that go away, TLS deadlines on uv
 * timers, and the connect and listen calls with and without TLS. Every
 * test runs its loop until no handle is left and closes it (the handles
 * and the adapter's memory are all released: uv_loop_close() returns 0).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <duplex/uv.h>

#include "harness.h"
#include "peer.h"

/* ---- the loop ------------------------------------------------------------ */

static uv_loop_t loop_storage, *L;
/* Wakes uv_run() every 10 ms so that waits can give up; it does not keep
 * the loop alive. */
static uv_timer_t guard;
static size_t live0;
static unsigned handles_closed; /* test handles whose close callback ran */
static void *closed_data;       /* handle->data seen in the last one */

static void guard_tick(uv_timer_t *t) { (void)t; }

static void loop_open(void)
{
    L = &loop_storage;
    ck_assert_int_eq(uv_loop_init(L), 0);
    uv_timer_init(L, &guard);
    uv_timer_start(&guard, guard_tick, 10, 10);
    uv_unref((uv_handle_t *)&guard);
    handles_closed = 0;
    closed_data = NULL;
    live0 = h_alloc_live();
}

/* Runs the loop until done(arg) or ms pass; returns done(arg). */
static bool run_until(bool (*done)(void *), void *arg, int ms)
{
    int64_t end = h_now_ms() + ms;
    while (!done(arg)) {
        if (h_now_ms() > end)
            return false;
        uv_run(L, UV_RUN_ONCE);
    }
    return true;
}

/* Runs the loop for ms. */
static void run_for(int ms)
{
    int64_t end = h_now_ms() + ms;
    while (h_now_ms() < end)
        uv_run(L, UV_RUN_ONCE);
}

/* Runs the loop until *v reaches n or ms pass. */
typedef struct at_least {
    const unsigned *v;
    unsigned n;
} at_least;

static bool reached(void *arg)
{
    at_least *a = arg;
    return *a->v >= a->n;
}

static bool wait_count(const unsigned *v, unsigned n, int ms)
{
    at_least a = {v, n};
    return run_until(reached, &a, ms);
}

static bool loop_idle(void *arg)
{
    (void)arg;
    return !uv_loop_alive(L);
}

/* Every handle closed and its memory released; the loop closes. */
static void loop_close(void)
{
    ck_assert_msg(run_until(loop_idle, NULL, 10000), "handles or requests still active");
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(L, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(L), 0);
    ck_assert_msg(h_alloc_live() == live0, "%zu bytes still allocated",
                  h_alloc_live() - live0);
}

/* A close callback for the handles the tests make. */
static void test_handle_closed(uv_handle_t *h)
{
    handles_closed++;
    closed_data = h->data;
    free(h);
}

/* SIGPIPE ignored, as every libuv program does (uv.h); restored after. */
static struct sigaction saved_pipe;

static void sig_setup(void)
{
    struct sigaction ign;
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &saved_pipe);
}

static void sig_teardown(void) { sigaction(SIGPIPE, &saved_pipe, NULL); }

static bool rec_closed(void *arg) { return ((h_rec *)arg)->closes > 0; }
static bool rec_ended(void *arg) { return ((h_rec *)arg)->ends > 0; }
static bool rec_ended_or_closed(void *arg)
{
    h_rec *r = arg;
    return r->ends || r->closes;
}

static void assert_log(const h_rec *r, const char *want)
{
    ck_assert_msg(r->nlog == strlen(want) && memcmp(r->log, want, r->nlog) == 0,
                  "events %.*s, want %s", (int)r->nlog, r->log, want);
}

/* ---- connected pairs of uv streams -------------------------------------- */

typedef enum { K_PIPE = 0, K_TCP = 1, K_UNIX = 2, K_COUNT = 3 } kind;
static const char *const kind_names[K_COUNT] = {"socket pair", "TCP", "Unix socket"};

typedef struct upair {
    dx_stream *a, *b; /* a connected, b accepted */
    char err[64];
    char dir[64];
} upair;

static void pair_accepted(dx_uv_listener *l, dx_stream *s, const dx_error *err, void *arg)
{
    upair *p = arg;
    (void)l;
    if (err)
        snprintf(p->err, sizeof(p->err), "accept %s", dx_error_name(err));
    else
        p->b = s;
}

static void pair_connected(dx_stream *s, const dx_error *err, void *arg)
{
    upair *p = arg;
    if (err)
        snprintf(p->err, sizeof(p->err), "connect %s", dx_error_name(err));
    else
        p->a = s;
}

static bool pair_ready(void *arg)
{
    upair *p = arg;
    return (p->a && p->b) || p->err[0];
}

/* A uv pipe handle over fd (which libuv makes non-blocking), from the
 * test's memory. */
static uv_pipe_t *pipe_on(int fd)
{
    uv_pipe_t *p = malloc(sizeof(*p));
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(uv_pipe_init(L, p, 0), 0);
    ck_assert_int_eq(uv_pipe_open(p, fd), 0);
    return p;
}

static void upair_open(upair *p, kind k)
{
    memset(p, 0, sizeof(*p));
    if (k == K_PIPE) {
        int fds[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        ck_assert_int_eq(dx_uv_stream_new((uv_stream_t *)pipe_on(fds[0]), test_handle_closed,
                                          &p->a), 0);
        ck_assert_int_eq(dx_uv_stream_new((uv_stream_t *)pipe_on(fds[1]), test_handle_closed,
                                          &p->b), 0);
        return;
    }
    dx_uv_listener *l;
    dx_uv_connect *c;
    if (k == K_TCP) {
        ck_assert_int_eq(dx_uv_tcp_listen(L, "127.0.0.1", 0, pair_accepted, p, &l, NULL), 0);
        unsigned port = dx_uv_listener_port(l);
        ck_assert_uint_gt(port, 0);
        ck_assert_int_eq(dx_uv_tcp_connect(L, "127.0.0.1", port, pair_connected, p, &c), 0);
    } else {
        h_tmpdir(p->dir);
        char path[128];
        snprintf(path, sizeof(path), "%s/sock", p->dir);
        ck_assert_int_eq(dx_uv_unix_listen(L, path, pair_accepted, p, &l, NULL), 0);
        ck_assert_uint_eq(dx_uv_listener_port(l), 0);
        ck_assert_int_eq(dx_uv_unix_connect(L, path, pair_connected, p, &c), 0);
    }
    ck_assert_ptr_nonnull(c);
    ck_assert_msg(run_until(pair_ready, p, 5000), "no connection");
    ck_assert_msg(!p->err[0], "%s", p->err);
    ck_assert_uint_eq(dx_uv_listener_connections(l), 1);
    dx_uv_listener_close(l, false); /* the connection goes on */
}

static void upair_close(upair *p)
{
    dx_stream_destroy(p->a);
    dx_stream_destroy(p->b);
    p->a = p->b = NULL;
}

static void upair_cleanup(upair *p)
{
    if (p->dir[0])
        h_tmpdir_remove(p->dir);
}

/* ---- writing with backpressure ---------------------------------------------- */

typedef struct pump {
    dx_stream *s;
    uint64_t seed, total, sent;
    unsigned fulls;
    size_t max_buffered;
    bool end_after, ended;
} pump;

static bool pump_was_full(void *arg) { return ((pump *)arg)->fulls > 0; }

/* Writes chunks until the stream is full or everything went (then ends,
 * if asked). */
static void pump_run(pump *p)
{
    uint8_t buf[7000]; /* not a power of two */
    while (p->sent < p->total) {
        size_t n = sizeof(buf);
        if (n > p->total - p->sent)
            n = (size_t)(p->total - p->sent);
        h_gen_fill(p->seed, p->sent, buf, n);
        int rc = dx_stream_write(p->s, buf, n);
        ck_assert_msg(rc >= 0, "write: %s", dx_err_name(rc));
        p->sent += n;
        size_t b = dx_stream_write_buffered(p->s);
        if (b > p->max_buffered)
            p->max_buffered = b;
        if (rc == DX_FULL) {
            p->fulls++;
            return;
        }
    }
    if (p->end_after && !p->ended) {
        p->ended = true;
        ck_assert_int_eq(dx_stream_end(p->s), 0);
    }
}

/* A recorder that pumps on drain and, when slow, takes one chunk per tick
 * of a timer (paused in between). */
typedef struct side {
    h_rec rec;
    pump pump;
    bool slow;
    unsigned ticks;
} side;

static void side_event(h_rec *r, char ev)
{
    side *sd = r->ctx;
    if (ev == H_EV_DRAIN)
        pump_run(&sd->pump);
    if (ev == H_EV_DATA && sd->slow)
        dx_stream_pause(r->s);
}

static void side_attach(side *sd, dx_stream *s, uint64_t write_seed, uint64_t total,
                        uint64_t read_seed)
{
    memset(sd, 0, sizeof(*sd));
    sd->rec.ctx = sd;
    sd->rec.on_event = side_event;
    sd->rec.verify = true;
    sd->rec.verify_seed = read_seed;
    h_rec_attach(&sd->rec, s);
    sd->pump = (pump){.s = s, .seed = write_seed, .total = total};
}

/* The slow readers' timer: one chunk each per tick. */
static side *slow_sides[2];

static void slow_tick(uv_timer_t *t)
{
    (void)t;
    for (int i = 0; i < 2; i++) {
        side *sd = slow_sides[i];
        if (sd && sd->slow && !sd->rec.closes && !sd->rec.destroyed) {
            sd->ticks++;
            dx_stream_resume(sd->rec.s);
        }
    }
}

/* ---- the stream ------------------------------------------------------------- */

/* The handle passes to the stream and comes back through the close
 * callback with the caller's data; bad handles are refused untouched. */
START_TEST(stream_takes_the_handle_and_gives_it_back)
{
    loop_open();
    dx_stream *s = (dx_stream *)&s;
    ck_assert_int_eq(dx_uv_stream_new(NULL, NULL, &s), DX_EINVAL);
    ck_assert_ptr_null(s);
    int fds[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    uv_pipe_t *p = pipe_on(fds[0]);
    ck_assert_int_eq(dx_uv_stream_new((uv_stream_t *)p, NULL, NULL), DX_EINVAL);
    /* Not a stream handle. */
    uv_timer_t *tm = malloc(sizeof(*tm));
    uv_timer_init(L, tm);
    ck_assert_int_eq(dx_uv_stream_new((uv_stream_t *)tm, NULL, &s), DX_EINVAL);
    uv_close((uv_handle_t *)tm, test_handle_closed);
    /* A closing handle. */
    uv_pipe_t *q = pipe_on(fds[1]);
    uv_close((uv_handle_t *)q, test_handle_closed);
    ck_assert_int_eq(dx_uv_stream_new((uv_stream_t *)q, NULL, &s), DX_EINVAL);
    ck_assert_ptr_null(s);
    ck_assert(run_until(loop_idle, NULL, 1000) || handles_closed == 2);
    ck_assert_uint_eq(handles_closed, 2);

    int marker;
    p->data = &marker;
    ck_assert_int_eq(dx_uv_stream_new((uv_stream_t *)p, test_handle_closed, &s), 0);
    ck_assert_ptr_ne(p->data, &marker); /* the adapter's while it wraps */
    ck_assert(dx_is_uv_stream(s));
    ck_assert(!dx_is_uv_stream(NULL));
    ck_assert_str_eq(dx_stream_kind(s), "uv");
    ck_assert_ptr_eq(dx_uv_stream_handle(s), (uv_stream_t *)p);
    ck_assert_ptr_null(dx_uv_stream_handle(NULL));
    ck_assert_int_eq(dx_uv_stream_set_write_queue(s, 0), DX_EINVAL);
    ck_assert_int_eq(dx_uv_stream_set_write_queue(NULL, 10), DX_EINVAL);
    ck_assert_int_eq(dx_uv_stream_set_write_queue(s, 1000), 0);
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert(!dx_is_uv_stream(a));
    ck_assert_ptr_null(dx_uv_stream_handle(a));
    ck_assert_int_eq(dx_uv_stream_set_write_queue(a, 10), DX_EINVAL);
    dx_stream_destroy(a);
    dx_stream_destroy(b);

    h_rec r = {0};
    h_rec_attach(&r, s);
    dx_stream_destroy(s);
    ck_assert_uint_eq(r.closes, 1);
    /* libuv closes the handle from the loop: the callback comes there,
     * with the caller's data back in place. */
    ck_assert_uint_eq(handles_closed, 2);
    loop_close();
    ck_assert_uint_eq(handles_closed, 3);
    ck_assert_ptr_eq(closed_data, &marker);
    h_rec_assert_clean(&r);
    h_rec_free(&r);
}
END_TEST

/* Megabytes each way at once, checked byte by byte, both ends ended:
 * every event in contract order, memory bounded by the marks. */
START_TEST(transfer_both_ways_byte_exact)
{
    kind k = (kind)_i;
    loop_open();
    upair p;
    upair_open(&p, k);
    side a, b;
    const uint64_t total = 3u << 20;
    side_attach(&a, p.a, 11, total, 22);
    side_attach(&b, p.b, 22, total, 11);
    a.pump.end_after = b.pump.end_after = true;
    h_alloc_reset_peak();
    size_t base = h_alloc_live();
    pump_run(&a.pump);
    pump_run(&b.pump);
    ck_assert_msg(run_until(rec_closed, &a.rec, 30000) && run_until(rec_closed, &b.rec, 30000),
                  "%s: a %.*s, b %.*s", kind_names[k], (int)a.rec.nlog, a.rec.log,
                  (int)b.rec.nlog, b.rec.log);
    ck_assert_uint_eq(a.rec.received, total);
    ck_assert_uint_eq(b.rec.received, total);
    for (int i = 0; i < 2; i++) {
        h_rec *r = i ? &b.rec : &a.rec;
        h_rec_assert_clean(r);
        ck_assert_uint_eq(r->errors, 0);
        ck_assert_uint_eq(r->ends, 1);
        ck_assert_uint_eq(r->finishes, 1);
        ck_assert_uint_eq(r->closes, 1);
        ck_assert_int_eq(r->log[r->nlog - 1], H_EV_CLOSE);
    }
    /* Each writer held at most its mark and one chunk; libuv at most the
     * queue bound; readers one read and their mark. */
    ck_assert_uint_le(a.pump.max_buffered, DX_STREAM_DEFAULT_HWM + 7000);
    ck_assert_uint_le(b.pump.max_buffered, DX_STREAM_DEFAULT_HWM + 7000);
    ck_assert_msg(h_alloc_peak() - base < 640 * 1024, "peak %zu bytes",
                  h_alloc_peak() - base);
    upair_close(&p);
    loop_close();
    upair_cleanup(&p);
    h_rec_free(&a.rec);
    h_rec_free(&b.rec);
}
END_TEST

/* A slow reader: the writer is held back (DX_FULL, later drain), the
 * paused reader stops reading at its mark, memory stays bounded whatever
 * the amount, and every byte arrives. Also with a small write queue. */
START_TEST(slow_reader_holds_the_writer_back)
{
    kind k = (kind)(_i % K_COUNT);
    size_t queue = _i >= K_COUNT ? 4096 : DX_UV_DEFAULT_WRITE_QUEUE;
    loop_open();
    upair p;
    upair_open(&p, k);
    if (queue != DX_UV_DEFAULT_WRITE_QUEUE)
        ck_assert_int_eq(dx_uv_stream_set_write_queue(p.a, queue), 0);
    /* Kernel buffers that cannot grow: loopback TCP's autotuning could
     * otherwise take the whole transfer and never hold the writer back. */
    int small = 64 * 1024;
    ck_assert_int_eq(uv_send_buffer_size((uv_handle_t *)dx_uv_stream_handle(p.a), &small), 0);
    small = 64 * 1024;
    ck_assert_int_eq(uv_recv_buffer_size((uv_handle_t *)dx_uv_stream_handle(p.b), &small), 0);
    side w, r;
    const uint64_t total = 4u << 20;
    side_attach(&w, p.a, 5, total, 6);
    side_attach(&r, p.b, 6, 0, 5);
    w.pump.end_after = true;
    r.slow = true;
    dx_stream_pause(p.b);
    h_alloc_reset_peak();
    size_t base = h_alloc_live();
    pump_run(&w.pump);
    /* The reader takes nothing: the writer fills up and stops (waited for,
     * not timed: under valgrind the kernel's buffers fill slowly). */
    ck_assert(run_until(pump_was_full, &w.pump, 20000));
    run_for(100);
    uint64_t sent = w.pump.sent;
    ck_assert_uint_lt(sent, total);
    run_for(50);
    ck_assert_uint_eq(w.pump.sent, sent); /* held back */
    ck_assert_uint_eq(r.rec.received, 0);
    ck_assert_uint_le(dx_stream_read_buffered(p.b), DX_STREAM_DEFAULT_HWM + 65536);
    /* Now one chunk per tick. */
    uv_timer_t tick;
    uv_timer_init(L, &tick);
    slow_sides[0] = &r;
    uv_timer_start(&tick, slow_tick, 1, 1);
    ck_assert_msg(run_until(rec_ended, &r.rec, 60000), "reader got %llu of %llu",
                  (unsigned long long)r.rec.received, (unsigned long long)total);
    uv_timer_stop(&tick);
    uv_close((uv_handle_t *)&tick, NULL);
    slow_sides[0] = NULL;
    ck_assert_uint_eq(r.rec.received, total);
    ck_assert_uint_gt(w.rec.drains, 0);
    ck_assert_uint_eq(w.rec.finishes, 1);
    ck_assert_uint_le(w.pump.max_buffered, DX_STREAM_DEFAULT_HWM + 7000);
    ck_assert_msg(h_alloc_peak() - base < 512 * 1024, "%s: peak %zu bytes", kind_names[k],
                  h_alloc_peak() - base);
    /* The reader ends too: both close cleanly. */
    dx_stream_resume(p.b);
    ck_assert_int_eq(dx_stream_end(p.b), 0);
    ck_assert(run_until(rec_closed, &w.rec, 5000) && run_until(rec_closed, &r.rec, 5000));
    ck_assert_uint_eq(w.rec.errors + r.rec.errors, 0);
    h_rec_assert_clean(&w.rec);
    h_rec_assert_clean(&r.rec);
    upair_close(&p);
    loop_close();
    upair_cleanup(&p);
    h_rec_free(&w.rec);
    h_rec_free(&r.rec);
}
END_TEST

/* A writer faster than its reader: once libuv's queue is full, it is
 * refilled only when half of it is free, in requests of that size, not
 * in the few bytes each completed request leaves room for (which would
 * cost a request and a system call each: the silly window syndrome). */
START_TEST(full_queue_is_refilled_in_large_requests)
{
    kind k = (kind)_i;
    loop_open();
    upair p;
    upair_open(&p, k);
    side w, r;
    const uint64_t total = 16u << 20;
    side_attach(&w, p.a, 3, total, 4);
    side_attach(&r, p.b, 4, 0, 3);
    w.pump.end_after = true;
    h_alloc_fail_from(-1);
    pump_run(&w.pump);
    ck_assert_msg(run_until(rec_ended, &r.rec, 60000), "reader got %llu of %llu",
                  (unsigned long long)r.rec.received, (unsigned long long)total);
    ck_assert_uint_eq(r.rec.received, total);
    ck_assert_uint_gt(w.pump.fulls, 0);
    /* Requests of a few hundred bytes would take one allocation each (the
     * request and its copy): over a hundred thousand for these 16 MiB.
     * Write buffers, reads and requests of kilobytes take far fewer. */
    long allocs = h_alloc_count();
    ck_assert_msg(allocs < (long)(total / 1024), "%s: %ld allocations", kind_names[k], allocs);
    dx_stream_end(p.b);
    ck_assert(run_until(rec_closed, &w.rec, 5000) && run_until(rec_closed, &r.rec, 5000));
    h_rec_assert_clean(&w.rec);
    h_rec_assert_clean(&r.rec);
    upair_close(&p);
    loop_close();
    upair_cleanup(&p);
    h_rec_free(&w.rec);
    h_rec_free(&r.rec);
}
END_TEST

/* Half-close: one side ends and keeps reading; the other, having seen the
 * end, still writes, then ends; both close without an error. */
START_TEST(half_close_keeps_the_other_direction)
{
    kind k = (kind)_i;
    loop_open();
    upair p;
    upair_open(&p, k);
    side a, b;
    side_attach(&a, p.a, 1, 1000, 2);
    side_attach(&b, p.b, 2, 300000, 1);
    a.pump.end_after = true;
    pump_run(&a.pump); /* a: 1000 bytes and the end */
    ck_assert(run_until(rec_ended, &b.rec, 5000));
    ck_assert_uint_eq(b.rec.received, 1000);
    ck_assert_uint_eq(a.rec.closes, 0); /* still reading */
    ck_assert(dx_stream_state(p.b) & DX_STREAM_WRITABLE);
    b.pump.end_after = true;
    pump_run(&b.pump); /* after the end came: 300000 bytes and the end */
    ck_assert(run_until(rec_closed, &a.rec, 5000) && run_until(rec_closed, &b.rec, 5000));
    ck_assert_uint_eq(a.rec.received, 300000);
    assert_log(&a.rec, a.rec.drains ? "frdec" : "fdec");
    ck_assert_uint_eq(b.rec.errors, 0);
    ck_assert_uint_eq(b.rec.finishes, 1);
    h_rec_assert_clean(&a.rec);
    h_rec_assert_clean(&b.rec);
    upair_close(&p);
    loop_close();
    upair_cleanup(&p);
    h_rec_free(&a.rec);
    h_rec_free(&b.rec);
}
END_TEST

/* Destroy from inside each callback: the peer sees the end (or a reset),
 * nothing runs after close, and the loop ends with every handle closed. */
START_TEST(destroy_inside_callbacks)
{
    static const char evs[] = {H_EV_DATA, H_EV_END, H_EV_FINISH, H_EV_DRAIN, H_EV_CLOSE};
    kind k = (kind)(_i % K_COUNT);
    char ev = evs[_i / K_COUNT];
    loop_open();
    upair p;
    upair_open(&p, k);
    side a, b;
    side_attach(&a, p.a, 3, 200000, 4);
    side_attach(&b, p.b, 4, ev == H_EV_DRAIN ? 400000 : 5000, 3);
    b.rec.destroy_on = ev;
    b.rec.slot = &p.b;
    b.pump.end_after = ev == H_EV_FINISH || ev == H_EV_CLOSE;
    a.pump.end_after = ev == H_EV_END || ev == H_EV_CLOSE;
    if (ev == H_EV_DRAIN) {
        /* b fills up (small kernel buffers), then drains when a reads. */
        int small = 4096;
        uv_send_buffer_size((uv_handle_t *)dx_uv_stream_handle(p.b), &small);
        small = 4096;
        uv_recv_buffer_size((uv_handle_t *)dx_uv_stream_handle(p.a), &small);
        dx_stream_pause(p.a);
    }
    pump_run(&a.pump);
    pump_run(&b.pump);
    if (ev == H_EV_DRAIN) {
        run_for(50);
        ck_assert_uint_ge(b.pump.fulls, 1);
        dx_stream_resume(p.a);
    }
    ck_assert_msg(run_until(rec_closed, &b.rec, 10000), "%s %c: %.*s", kind_names[k], ev,
                  (int)b.rec.nlog, b.rec.log);
    ck_assert(b.rec.destroyed);
    ck_assert_ptr_null(p.b);
    /* The other side hears of it: an end, or a reset if it was writing. */
    ck_assert_msg(run_until(rec_ended_or_closed, &a.rec, 10000), "%.*s", (int)a.rec.nlog,
                  a.rec.log);
    h_rec_assert_clean(&a.rec);
    h_rec_assert_clean(&b.rec);
    unsigned closes = b.rec.closes;
    upair_close(&p);
    loop_close();
    ck_assert_uint_eq(b.rec.closes, closes);
    upair_cleanup(&p);
    h_rec_free(&a.rec);
    h_rec_free(&b.rec);
}
END_TEST

/* A peer that resets the connection: the stream fails with libuv's name
 * for it, layer "uv". */
typedef struct raw_peer {
    uv_tcp_t *server, *conn;
} raw_peer;

static void raw_accept(uv_stream_t *server, int status)
{
    raw_peer *rp = server->data;
    ck_assert_int_eq(status, 0);
    rp->conn = malloc(sizeof(*rp->conn));
    uv_tcp_init(L, rp->conn);
    ck_assert_int_eq(uv_accept(server, (uv_stream_t *)rp->conn), 0);
}

static bool raw_accepted(void *arg) { return ((raw_peer *)arg)->conn != NULL; }

typedef struct conn_result {
    dx_stream *s;
    dx_tls *t;
    bool called;
    int code;
    char name[64], layer[32], detail[256];
} conn_result;

static void keep_error(conn_result *c, const dx_error *err)
{
    c->code = dx_error_code(err);
    snprintf(c->name, sizeof(c->name), "%s", dx_error_name(err));
    snprintf(c->layer, sizeof(c->layer), "%s", dx_error_layer(err));
    snprintf(c->detail, sizeof(c->detail), "%s", dx_error_detail(err));
}

static void result_cb(dx_stream *s, const dx_error *err, void *arg)
{
    conn_result *c = arg;
    c->called = true;
    c->s = s;
    if (err)
        keep_error(c, err);
}

static bool result_called(void *arg) { return ((conn_result *)arg)->called; }

START_TEST(peer_reset_fails_the_stream_with_the_uv_name)
{
    loop_open();
    raw_peer rp = {0};
    rp.server = malloc(sizeof(*rp.server));
    uv_tcp_init(L, rp.server);
    rp.server->data = &rp;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    ck_assert_int_eq(uv_tcp_bind(rp.server, (const struct sockaddr *)&sa, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)rp.server, 8, raw_accept), 0);
    int len = sizeof(sa);
    uv_tcp_getsockname(rp.server, (struct sockaddr *)&sa, &len);
    conn_result c = {0};
    ck_assert_int_eq(dx_uv_tcp_connect(L, "127.0.0.1", ntohs(sa.sin_port), result_cb, &c, NULL),
                     0);
    ck_assert(run_until(result_called, &c, 5000) && run_until(raw_accepted, &rp, 5000));
    ck_assert_ptr_nonnull(c.s);
    h_rec r = {0};
    h_rec_attach(&r, c.s);
    ck_assert_int_eq(dx_stream_write(c.s, "hello", 5), 0);
    ck_assert_int_eq(uv_tcp_close_reset(rp.conn, test_handle_closed), 0);
    uv_close((uv_handle_t *)rp.server, test_handle_closed);
    ck_assert(run_until(rec_closed, &r, 5000));
    assert_log(&r, "xc");
    ck_assert_str_eq(r.error_name, "ECONNRESET");
    ck_assert_int_eq(r.error_code, DX_ECONNRESET);
    ck_assert_str_eq(dx_error_layer(dx_stream_error(c.s)), "uv");
    ck_assert_str_eq(dx_error_detail(dx_stream_error(c.s)), "read");
    ck_assert_int_eq(dx_error_sys_errno(dx_stream_error(c.s)), ECONNRESET);
    /* After the failure: writes refused, nothing else happens. */
    ck_assert_int_eq(dx_stream_write(c.s, "x", 1), DX_EDESTROYED);
    dx_stream_destroy(c.s);
    loop_close();
    ck_assert_uint_eq(handles_closed, 2);
    h_rec_assert_clean(&r);
    h_rec_free(&r);
}
END_TEST

/* Writing to a socket whose peer went away: EPIPE from libuv, no signal
 * reaching the process (ignored, as libuv programs do). */
START_TEST(write_to_a_peer_gone_fails_with_epipe)
{
    loop_open();
    int fds[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    dx_stream *s;
    ck_assert_int_eq(dx_uv_stream_new((uv_stream_t *)pipe_on(fds[0]), test_handle_closed, &s), 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    close(fds[1]);
    /* The first write may go before the kernel tells; a later one fails. */
    int rc = 0;
    for (int i = 0; i < 100 && rc >= 0; i++)
        rc = dx_stream_write(s, "data", 4);
    if (rc >= 0)
        run_until(rec_closed, &r, 5000);
    ck_assert_uint_eq(r.errors, 1);
    ck_assert_msg(!strcmp(r.error_name, "EPIPE") || !strcmp(r.error_name, "ECONNRESET"),
                  "%s", r.error_name);
    ck_assert_str_eq(dx_error_layer(dx_stream_error(s)), "uv");
    ck_assert_str_eq(dx_error_detail(dx_stream_error(s)), "write");
    ck_assert_uint_eq(r.closes, 1);
    dx_stream_destroy(s);
    loop_close();
    ck_assert_uint_eq(handles_closed, 1);
    h_rec_assert_clean(&r);
    h_rec_free(&r);
}
END_TEST

/* A one-way pipe (uv_pipe): the write end's input ends at once, the read
 * end refuses writes; ending the writer closes it, and the reader gets
 * every byte, then the end. */
START_TEST(one_way_pipe_streams)
{
    loop_open();
    int fds[2];
    ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
    dx_stream *rd, *wr;
    ck_assert_int_eq(dx_uv_stream_new((uv_stream_t *)pipe_on(fds[0]), test_handle_closed, &rd), 0);
    ck_assert_int_eq(dx_uv_stream_new((uv_stream_t *)pipe_on(fds[1]), test_handle_closed, &wr), 0);
    ck_assert_int_eq(dx_stream_write(rd, "x", 1), DX_ENOTSUP);
    side r, w;
    side_attach(&r, rd, 0, 0, 9);
    side_attach(&w, wr, 9, 1u << 20, 0);
    ck_assert_uint_eq(w.rec.ends, 1); /* nothing to read there */
    w.pump.end_after = true;
    pump_run(&w.pump);
    ck_assert(run_until(rec_ended, &r.rec, 10000));
    ck_assert_uint_eq(r.rec.received, 1u << 20);
    ck_assert(run_until(rec_closed, &w.rec, 5000));
    ck_assert_uint_eq(w.rec.errors, 0);
    ck_assert_uint_eq(w.rec.finishes, 1);
    ck_assert_int_eq(dx_stream_end(rd), 0); /* read-only: finishes at once */
    ck_assert(run_until(rec_closed, &r.rec, 5000));
    assert_log(&r.rec, "defc");
    h_rec_assert_clean(&r.rec);
    h_rec_assert_clean(&w.rec);
    dx_stream_destroy(rd);
    dx_stream_destroy(wr);
    loop_close();
    ck_assert_uint_eq(handles_closed, 2);
    h_rec_free(&r.rec);
    h_rec_free(&w.rec);
}
END_TEST

/* A TTY handle over a pseudo-terminal in raw mode: bytes go unchanged
 * both ways through the master (a pipe handle); ending the terminal's
 * side cannot half-close a terminal (no error, the write side is done);
 * when the master goes the terminal reads EIO, its end of input, and the
 * stream closes cleanly. */
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

static bool both_got(void *arg)
{
    side **sd = arg;
    return sd[0]->rec.received >= sd[0]->pump.total && sd[1]->rec.received >= sd[1]->pump.total;
}

START_TEST(tty_stream_over_a_pseudo_terminal)
{
    loop_open();
    int m, sl;
    open_raw_pty(&m, &sl);
    uv_tty_t *tty = malloc(sizeof(*tty));
    ck_assert_ptr_nonnull(tty);
    ck_assert_int_eq(uv_tty_init(L, tty, sl, 1), 0);
    uv_os_fd_t own;
    ck_assert_int_eq(uv_fileno((uv_handle_t *)tty, &own), 0);
    if (own != sl)
        close(sl); /* libuv reopened the terminal and works on its own descriptor */
    dx_stream *ts, *ms;
    ck_assert_int_eq(dx_uv_stream_new((uv_stream_t *)tty, test_handle_closed, &ts), 0);
    ck_assert_int_eq(dx_uv_stream_new((uv_stream_t *)pipe_on(m), test_handle_closed, &ms), 0);
    const uint64_t total = 20000;
    side t, mm;
    side_attach(&t, ts, 31, total, 32);
    side_attach(&mm, ms, 32, total, 31);
    t.pump.end_after = true;
    pump_run(&t.pump);
    pump_run(&mm.pump);
    side *both[2] = {&t, &mm};
    ck_assert_msg(run_until(both_got, both, 10000), "terminal got %llu, master %llu",
                  (unsigned long long)t.rec.received, (unsigned long long)mm.rec.received);
    ck_assert_uint_eq(t.rec.finishes, 1);
    ck_assert_uint_eq(t.rec.errors, 0);
    /* The master goes: the terminal hangs up. */
    dx_stream_destroy(ms);
    ck_assert(run_until(rec_closed, &t.rec, 10000));
    ck_assert_uint_eq(t.rec.ends, 1);
    ck_assert_uint_eq(t.rec.errors, 0);
    ck_assert_int_eq(t.rec.log[t.rec.nlog - 1], H_EV_CLOSE);
    h_rec_assert_clean(&t.rec);
    h_rec_assert_clean(&mm.rec);
    dx_stream_destroy(ts);
    loop_close();
    ck_assert_uint_eq(handles_closed, 2);
    h_rec_free(&t.rec);
    h_rec_free(&mm.rec);
}
END_TEST

/* What libuv accepted is written even when the stream is destroyed right
 * after on_finish: the handle stays open until the shutdown went. */
START_TEST(destroy_after_finish_loses_nothing)
{
    kind k = (kind)_i;
    loop_open();
    upair p;
    upair_open(&p, k);
    const uint64_t total = 1u << 20;
    /* Room in libuv's queue for everything: all of it is taken at once. */
    ck_assert_int_eq(dx_uv_stream_set_write_queue(p.a, 2u << 20), 0);
    side a, b;
    side_attach(&a, p.a, 7, total, 8);
    side_attach(&b, p.b, 8, 0, 7);
    a.rec.destroy_on = H_EV_FINISH;
    a.rec.slot = &p.a;
    a.pump.end_after = true;
    dx_stream_pause(p.b); /* nothing is read yet */
    pump_run(&a.pump);
    ck_assert_uint_eq(a.pump.fulls, 0);
    ck_assert_uint_eq(a.rec.finishes, 1); /* handed to libuv ... */
    ck_assert(a.rec.destroyed);           /* ... and destroyed */
    unsigned closed = handles_closed;
    run_for(50);
    ck_assert_uint_eq(handles_closed, closed); /* the handle waits */
    dx_stream_resume(p.b);
    ck_assert(run_until(rec_ended, &b.rec, 10000));
    ck_assert_uint_eq(b.rec.received, total);
    ck_assert_uint_eq(b.rec.errors, 0);
    h_rec_assert_clean(&a.rec);
    h_rec_assert_clean(&b.rec);
    upair_close(&p);
    loop_close();
    upair_cleanup(&p);
    h_rec_free(&a.rec);
    h_rec_free(&b.rec);
}
END_TEST

/* ---- connecting and listening ------------------------------------------------ */

/* A port nothing listens on: ECONNREFUSED, with the address. */
START_TEST(connect_to_a_closed_port_is_refused)
{
    loop_open();
    unsigned port = h_free_port();
    conn_result c = {0};
    dx_uv_connect *req = NULL;
    ck_assert_int_eq(dx_uv_tcp_connect(L, "127.0.0.1", port, result_cb, &c, &req), 0);
    ck_assert_ptr_nonnull(req);
    ck_assert(!c.called); /* never from inside the call */
    ck_assert(run_until(result_called, &c, 5000));
    ck_assert_ptr_null(c.s);
    ck_assert_str_eq(c.name, "ECONNREFUSED");
    ck_assert_str_eq(c.layer, "uv");
    char want[64];
    snprintf(want, sizeof(want), "connect 127.0.0.1:%u", port);
    ck_assert_str_eq(c.detail, want);
    loop_close();
}
END_TEST

/* Bad arguments are refused at once; a name that does not resolve, a Unix
 * path with nothing behind it, and a cancelled connect come to the
 * callback with libuv's names. */
START_TEST(connect_failures_carry_uv_names)
{
    loop_open();
    conn_result c = {0};
    dx_uv_connect *req = (dx_uv_connect *)&c;
    ck_assert_int_eq(dx_uv_tcp_connect(NULL, "127.0.0.1", 1, result_cb, &c, &req), DX_EINVAL);
    ck_assert_ptr_null(req);
    ck_assert_int_eq(dx_uv_tcp_connect(L, NULL, 1, result_cb, &c, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_uv_tcp_connect(L, "127.0.0.1", 0, result_cb, &c, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_uv_tcp_connect(L, "127.0.0.1", 65536, result_cb, &c, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_uv_tcp_connect(L, "127.0.0.1", 1, NULL, &c, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_uv_unix_connect(L, "", result_cb, &c, NULL), DX_EINVAL);
    char longpath[200];
    memset(longpath, 'x', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    ck_assert_int_eq(dx_uv_unix_connect(L, longpath, result_cb, &c, NULL), DX_EINVAL);
    ck_assert(!c.called);

    ck_assert_int_eq(dx_uv_tcp_connect(L, "nosuch.invalid", 443, result_cb, &c, NULL), 0);
    ck_assert(run_until(result_called, &c, 20000));
    ck_assert_ptr_null(c.s);
    ck_assert_msg(!strncmp(c.name, "EAI_", 4), "%s", c.name);
    ck_assert_str_eq(c.layer, "uv");
    ck_assert_str_eq(c.detail, "getaddrinfo nosuch.invalid");

    char dir[64];
    h_tmpdir(dir);
    char path[128];
    snprintf(path, sizeof(path), "%s/none", dir);
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(dx_uv_unix_connect(L, path, result_cb, &c, NULL), 0);
    ck_assert(run_until(result_called, &c, 5000));
    ck_assert_str_eq(c.name, "ENOENT");
    ck_assert_str_eq(c.detail + strlen("connect "), path);

    /* Cancelled while connecting, and while resolving. */
    unsigned port = h_free_port();
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(dx_uv_tcp_connect(L, "127.0.0.1", port, result_cb, &c, &req), 0);
    dx_uv_connect_cancel(req);
    dx_uv_connect_cancel(req); /* once is enough */
    ck_assert(!c.called);
    ck_assert(run_until(result_called, &c, 5000));
    ck_assert_str_eq(c.name, "ECANCELED");
    ck_assert_int_eq(c.code, DX_ECANCELED);
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(dx_uv_tcp_connect(L, "localhost", port, result_cb, &c, &req), 0);
    dx_uv_connect_cancel(req);
    ck_assert(run_until(result_called, &c, 5000));
    ck_assert_str_eq(c.name, "ECANCELED");
    dx_uv_connect_cancel(NULL);
    loop_close();
    h_tmpdir_remove(dir);
}
END_TEST

static void count_accepts(dx_uv_listener *l, dx_stream *s, const dx_error *err, void *arg)
{
    (void)l, (void)err;
    dx_stream **slot = arg;
    *slot = s;
}

/* Listening where someone else does: EADDRINUSE as an error object; bad
 * arguments refused; a listener closed on a Unix socket removes its
 * file. */
START_TEST(listen_failures_and_unix_socket_file)
{
    loop_open();
    dx_stream *got = NULL;
    dx_uv_listener *l1, *l2 = (dx_uv_listener *)&got;
    dx_error *err = NULL;
    ck_assert_int_eq(dx_uv_tcp_listen(L, "127.0.0.1", 0, count_accepts, &got, &l1, &err), 0);
    ck_assert_ptr_null(err);
    unsigned port = dx_uv_listener_port(l1);
    int rc = dx_uv_tcp_listen(L, "127.0.0.1", port, count_accepts, &got, &l2, &err);
    ck_assert_int_lt(rc, 0);
    ck_assert_ptr_null(l2);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(dx_error_name(err), "EADDRINUSE");
    ck_assert_str_eq(dx_error_layer(err), "uv");
    dx_error_free(err);
    ck_assert_int_eq(dx_uv_tcp_listen(L, "127.0.0.1", 70000, count_accepts, &got, &l2, &err),
                     DX_EINVAL);
    ck_assert_int_eq(dx_uv_tcp_listen(L, "127.0.0.1", 0, NULL, &got, &l2, &err), DX_EINVAL);
    ck_assert_int_eq(dx_uv_tcp_listen(L, "127.0.0.1", 0, count_accepts, &got, NULL, &err),
                     DX_EINVAL);
    ck_assert_int_eq(dx_uv_tls_listen(L, NULL, "127.0.0.1", 0, NULL, NULL, &l2, &err), DX_EINVAL);
    /* A name resolves; an address not of this machine cannot be bound. */
    ck_assert_int_eq(dx_uv_tcp_listen(L, "localhost", 0, count_accepts, &got, &l2, NULL), 0);
    ck_assert_uint_gt(dx_uv_listener_port(l2), 0);
    dx_uv_listener_close(l2, false);
    ck_assert_int_lt(dx_uv_tcp_listen(L, "192.0.2.1", 0, count_accepts, &got, &l2, &err), 0);
    ck_assert_str_eq(dx_error_name(err), "EADDRNOTAVAIL");
    dx_error_free(err);
    dx_uv_listener_close(l1, false);
    dx_uv_listener_close(NULL, true);
    ck_assert_uint_eq(dx_uv_listener_port(NULL), 0);
    ck_assert_uint_eq(dx_uv_listener_connections(NULL), 0);

    char dir[64], path[128];
    h_tmpdir(dir);
    snprintf(path, sizeof(path), "%s/sock", dir);
    ck_assert_int_eq(dx_uv_unix_listen(L, path, count_accepts, &got, &l1, NULL), 0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    ck_assert_int_lt(dx_uv_unix_listen(L, path, count_accepts, &got, &l2, &err), 0);
    ck_assert_str_eq(dx_error_name(err), "EADDRINUSE");
    dx_error_free(err);
    ck_assert_int_eq(stat(path, &st), 0); /* the other listener's file stays */
    dx_uv_listener_close(l1, false);
    loop_close();
    ck_assert_int_ne(stat(path, &st), 0);
    ck_assert_ptr_null(got);
    h_tmpdir_remove(dir);
}
END_TEST

/* ---- TLS -------------------------------------------------------------------- */

static dx_pki_cert *ca, *leaf;

static void make_pki(void)
{
    dx_pki_opts o = {.common_name = "uv Test CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &o, &ca, NULL));
    static const char *const dns[] = {"localhost", NULL};
    static const char *const ips[] = {"127.0.0.1", NULL};
    dx_pki_opts l = {.common_name = "localhost", .dns_names = dns, .ip_addresses = ips};
    H_MUST(dx_pki_issue(ca, &l, &leaf, NULL));
}

static void free_pki(void)
{
    dx_pki_cert_free(leaf);
    dx_pki_cert_free(ca);
    leaf = ca = NULL;
}

static const char *const versions[] = {"TLSv1.2", "TLSv1.3"};

static dx_tls_ctx *make_ctx(bool server, const char *version)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    if (server) {
        const char *c = dx_pki_cert_pem(leaf), *k = dx_pki_key_pem(leaf);
        ck_assert_int_eq(dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL), 0);
    } else {
        const char *c = dx_pki_cert_pem(ca);
        ck_assert_int_eq(dx_tls_config_add_ca(cfg, c, strlen(c)), 0);
    }
    if (version) {
        ck_assert_int_eq(dx_tls_config_set_min_version(cfg, version), 0);
        ck_assert_int_eq(dx_tls_config_set_max_version(cfg, version), 0);
    }
    dx_tls_ctx *ctx;
    ck_assert_int_eq(dx_tls_ctx_new(cfg, &ctx, NULL), 0);
    dx_tls_config_free(cfg);
    return ctx;
}

/* An echo server: what a connection receives it sends back, with
 * backpressure; it ends when the client ends and releases the connection
 * when it closes. */
typedef struct echo_srv {
    dx_tls_server *srv;
    dx_uv_listener *l;
    unsigned accepted, secure, closed, errors, client_errors, accept_errors;
    char servername[256], error_name[64], client_error[64];
    bool aborts_no_error; /* every close came without an error */
} echo_srv;

typedef struct echo_conn {
    dx_tls *t;
    echo_srv *es;
} echo_conn;

static void echo_data(dx_stream *s, const uint8_t *d, size_t n, void *u)
{
    (void)u;
    if (dx_stream_write(s, d, n) == DX_FULL)
        dx_stream_pause(s);
}

static void echo_drain(dx_stream *s, void *u)
{
    (void)u;
    dx_stream_resume(s);
}

static void echo_error(dx_stream *s, const dx_error *err, void *u)
{
    (void)s;
    echo_conn *c = u;
    c->es->errors++;
    snprintf(c->es->error_name, sizeof(c->es->error_name), "%s", dx_error_name(err));
}

static void echo_close(dx_stream *s, void *u)
{
    (void)s;
    echo_conn *c = u;
    c->es->closed++;
    dx_tls_destroy(c->t);
    free(c);
}

static const dx_stream_events echo_events = {
    .on_data = echo_data,
    .on_drain = echo_drain,
    .on_error = echo_error,
    .on_close = echo_close,
};

static void echo_accept(dx_uv_listener *l, dx_tls *t, const dx_error *err, void *arg)
{
    echo_srv *es = arg;
    (void)l;
    if (err) {
        es->accept_errors++;
        return;
    }
    es->accepted++;
    echo_conn *c = calloc(1, sizeof(*c));
    c->t = t;
    c->es = es;
    ck_assert_int_eq(dx_stream_set_events(dx_tls_upper(t), &echo_events, c), 0);
}

static void srv_secure(dx_tls_server *srv, dx_tls *t, void *u)
{
    (void)srv;
    echo_srv *es = u;
    es->secure++;
    const char *name = dx_tls_servername(t);
    snprintf(es->servername, sizeof(es->servername), "%s", name ? name : "(none)");
}

static void srv_client_error(dx_tls_server *srv, dx_tls *t, const dx_error *err, void *u)
{
    (void)srv, (void)t;
    echo_srv *es = u;
    es->client_errors++;
    snprintf(es->client_error, sizeof(es->client_error), "%s", dx_error_name(err));
}

static const dx_tls_server_events echo_srv_events = {
    .on_secure_connection = srv_secure,
    .on_client_error = srv_client_error,
};

/* Listens on 127.0.0.1 (path NULL) or a Unix socket. */
static void echo_listen(echo_srv *es, dx_tls_ctx *sctx, const char *path)
{
    memset(es, 0, sizeof(*es));
    ck_assert_int_eq(dx_tls_server_new(sctx, &es->srv), 0);
    ck_assert_int_eq(dx_tls_server_set_events(es->srv, &echo_srv_events, es), 0);
    dx_error *err = NULL;
    int rc = path ? dx_uv_tls_listen_unix(L, es->srv, path, echo_accept, es, &es->l, &err)
                  : dx_uv_tls_listen(L, es->srv, "127.0.0.1", 0, echo_accept, es, &es->l, &err);
    ck_assert_msg(rc == 0, "listen: %s", dx_error_name(err));
}

/* A client: sends total bytes, expects them back, then ends. */
typedef struct client {
    conn_result res;
    dx_tls *t;
    side sd;
    uint64_t total;
    unsigned secure;
    char protocol[16];
    bool authorized;
    const char *set_servername; /* in the callback */
    uint64_t hs_timeout;
} client;

static void cl_secure(dx_tls *t, void *u)
{
    client *c = u;
    c->secure++;
    c->authorized = dx_tls_authorized(t);
    snprintf(c->protocol, sizeof(c->protocol), "%s", dx_tls_protocol(t));
}

static const dx_tls_events client_events = {.on_secure = cl_secure};

static void cl_event(h_rec *r, char ev)
{
    client *c = r->ctx;
    if (ev == H_EV_DRAIN)
        pump_run(&c->sd.pump);
    if (ev == H_EV_DATA && c->total && r->received == c->total)
        dx_stream_end(r->s);
}

static void cl_connected(dx_tls *t, const dx_error *err, void *arg)
{
    client *c = arg;
    c->res.called = true;
    if (err) {
        keep_error(&c->res, err);
        return;
    }
    c->t = t;
    ck_assert(!dx_tls_is_secure(t));
    ck_assert_int_eq(dx_tls_set_events(t, &client_events, c), 0);
    if (c->set_servername)
        ck_assert_int_eq(dx_tls_set_servername(t, c->set_servername), 0);
    if (c->hs_timeout)
        ck_assert_int_eq(dx_tls_set_handshake_timeout(t, c->hs_timeout), 0);
    dx_stream *up = dx_tls_upper(t);
    memset(&c->sd, 0, sizeof(c->sd));
    c->sd.rec.ctx = c;
    c->sd.rec.on_event = cl_event;
    c->sd.rec.verify = true;
    c->sd.rec.verify_seed = 77;
    h_rec_attach(&c->sd.rec, up);
    c->sd.pump = (pump){.s = up, .seed = 77, .total = c->total};
    pump_run(&c->sd.pump); /* queued until the handshake completes */
}

static bool client_called(void *arg) { return ((client *)arg)->res.called; }
static bool client_closed(void *arg)
{
    client *c = arg;
    return c->res.called && (!c->t || c->sd.rec.closes);
}

static void client_free(client *c)
{
    dx_tls_destroy(c->t);
    c->t = NULL;
    h_rec_assert_clean(&c->sd.rec);
    h_rec_free(&c->sd.rec);
}

/* Node's tls.connect() and createServer().listen() over TCP: the name
 * from the host (SNI "localhost"; none for an address, checked against
 * the certificate's IP), the handshake, an echo of a megabyte byte for
 * byte, a clean close; the listener counts the connection while open. */
START_TEST(tls_echo_over_tcp)
{
    const char *version = versions[_i % 2];
    const char *host = _i / 2 ? "127.0.0.1" : "localhost";
    loop_open();
    dx_tls_ctx *sctx = make_ctx(true, version), *cctx = make_ctx(false, NULL);
    echo_srv es;
    echo_listen(&es, sctx, NULL);
    client c = {.total = 1u << 20};
    ck_assert_int_eq(dx_uv_tls_connect(L, cctx, host, dx_uv_listener_port(es.l), cl_connected,
                                       &c, NULL), 0);
    ck_assert(run_until(client_called, &c, 5000));
    ck_assert_msg(c.t, "connect: %s", c.res.name);
    ck_assert_msg(run_until(client_closed, &c, 30000), "client: %.*s", (int)c.sd.rec.nlog,
                  c.sd.rec.log);
    ck_assert_uint_eq(c.secure, 1);
    ck_assert(c.authorized);
    ck_assert_str_eq(c.protocol, version);
    ck_assert_uint_eq(c.sd.rec.received, c.total);
    ck_assert_msg(c.sd.rec.errors == 0, "client error %s (%.*s)", c.sd.rec.error_name,
                  (int)c.sd.rec.nlog, c.sd.rec.log);
    ck_assert_uint_eq(c.sd.rec.ends, 1);
    ck_assert_uint_eq(es.accepted, 1);
    ck_assert_uint_eq(es.secure, 1);
    ck_assert_str_eq(es.servername, _i / 2 ? "(none)" : "localhost");
    ck_assert(dx_tls_clean_end(c.t));
    client_free(&c);
    /* The server's side closes on its own (close_notify both ways). */
    ck_assert(wait_count(&es.closed, 1, 5000));
    ck_assert_uint_eq(es.errors, 0);
    ck_assert_uint_eq(dx_uv_listener_connections(es.l), 0);
    dx_uv_listener_close(es.l, false);
    dx_tls_server_free(es.srv);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
    loop_close();
}
END_TEST

/* The same over a Unix socket: no name from a path; the callback sets
 * the one the certificate carries. */
START_TEST(tls_echo_over_unix_socket)
{
    const char *version = versions[_i];
    loop_open();
    char dir[64], path[128];
    h_tmpdir(dir);
    snprintf(path, sizeof(path), "%s/tls.sock", dir);
    dx_tls_ctx *sctx = make_ctx(true, version), *cctx = make_ctx(false, NULL);
    echo_srv es;
    echo_listen(&es, sctx, path);
    ck_assert_uint_eq(dx_uv_listener_port(es.l), 0);
    client c = {.total = 300000, .set_servername = "localhost"};
    ck_assert_int_eq(dx_uv_tls_connect_unix(L, cctx, path, cl_connected, &c, NULL), 0);
    ck_assert(run_until(client_closed, &c, 30000));
    ck_assert_msg(c.t, "connect: %s", c.res.name);
    ck_assert_uint_eq(c.secure, 1);
    ck_assert(c.authorized);
    ck_assert_str_eq(c.protocol, version);
    ck_assert_uint_eq(c.sd.rec.received, c.total);
    ck_assert_str_eq(es.servername, "localhost");
    client_free(&c);
    ck_assert(wait_count(&es.closed, 1, 5000));
    ck_assert_uint_eq(es.errors, 0);
    dx_uv_listener_close(es.l, false);
    dx_tls_server_free(es.srv);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
    loop_close();
    h_tmpdir_remove(dir);
}
END_TEST

/* A TLS connect to a closed port fails through the callback, with no
 * connection made. */
START_TEST(tls_connect_refused)
{
    loop_open();
    dx_tls_ctx *cctx = make_ctx(false, NULL);
    client c = {0};
    ck_assert_int_eq(dx_uv_tls_connect(L, NULL, "127.0.0.1", 1, cl_connected, &c, NULL),
                     DX_EINVAL);
    ck_assert_int_eq(dx_uv_tls_connect(L, cctx, "127.0.0.1", h_free_port(), cl_connected, &c,
                                       NULL), 0);
    ck_assert(run_until(client_called, &c, 5000));
    ck_assert_ptr_null(c.t);
    ck_assert_str_eq(c.res.name, "ECONNREFUSED");
    ck_assert_str_eq(c.res.layer, "uv");
    dx_tls_ctx_unref(cctx);
    loop_close();
}
END_TEST

/* A silent peer: the handshake timeout fires from a uv timer on a real
 * loop, on the client (set in the connect callback) and on the server
 * (the server's default); the transports go with the connections. */
static void silent_accept(dx_uv_listener *l, dx_stream *s, const dx_error *err, void *arg)
{
    (void)l, (void)err;
    h_rec *r = arg;
    h_rec_attach(r, s); /* reads and says nothing */
}

START_TEST(handshake_timeout_fires_from_a_uv_timer)
{
    loop_open();
    dx_tls_ctx *sctx = make_ctx(true, NULL), *cctx = make_ctx(false, NULL);
    /* Client side: a plain listener that never answers. */
    h_rec silent = {0};
    dx_uv_listener *pl;
    ck_assert_int_eq(dx_uv_tcp_listen(L, "127.0.0.1", 0, silent_accept, &silent, &pl, NULL), 0);
    client c = {.hs_timeout = 150};
    int64_t t0 = h_now_ms();
    ck_assert_int_eq(dx_uv_tls_connect(L, cctx, "localhost", dx_uv_listener_port(pl),
                                       cl_connected, &c, NULL), 0);
    ck_assert(run_until(client_closed, &c, 10000));
    int64_t took = h_now_ms() - t0;
    ck_assert_str_eq(c.sd.rec.error_name, "ERR_TLS_HANDSHAKE_TIMEOUT");
    ck_assert_int_eq(c.sd.rec.error_code, DX_ETIMEDOUT);
    ck_assert_msg(took >= 140 && took < 3000, "took %lld ms", (long long)took);
    ck_assert_uint_eq(c.secure, 0);
    /* The transport closed: the silent peer sees its end. */
    ck_assert(run_until(rec_ended_or_closed, &silent, 5000));
    client_free(&c);

    /* Server side: a client that connects and sends nothing. */
    echo_srv es;
    echo_listen(&es, sctx, NULL);
    ck_assert_int_eq(dx_tls_server_set_handshake_timeout(es.srv, 100), 0);
    conn_result raw = {0};
    ck_assert_int_eq(dx_uv_tcp_connect(L, "127.0.0.1", dx_uv_listener_port(es.l), result_cb,
                                       &raw, NULL), 0);
    ck_assert(run_until(result_called, &raw, 5000));
    ck_assert_ptr_nonnull(raw.s);
    h_rec rr = {0};
    h_rec_attach(&rr, raw.s);
    t0 = h_now_ms();
    ck_assert(run_until(rec_ended, &rr, 10000));
    took = h_now_ms() - t0;
    ck_assert_msg(took < 3000, "took %lld ms", (long long)took);
    ck_assert_uint_eq(es.client_errors, 1);
    ck_assert_str_eq(es.client_error, "ERR_TLS_HANDSHAKE_TIMEOUT");
    ck_assert_uint_eq(dx_uv_listener_connections(es.l), 0);
    dx_stream_destroy(raw.s);
    dx_stream_destroy(silent.s);
    dx_uv_listener_close(pl, false);
    dx_uv_listener_close(es.l, false);
    dx_tls_server_free(es.srv);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
    loop_close();
    h_rec_free(&silent);
    h_rec_free(&rr);
}
END_TEST

/* The listener counts its open connections; closed, it takes no more while
 * the open ones go on; closed with abort, it aborts them (no error). */
static bool all_secure(void *arg)
{
    client *c = arg;
    for (int i = 0; i < 3; i++)
        if (!c[i].secure)
            return false;
    return true;
}

START_TEST(listener_counts_and_closes)
{
    loop_open();
    dx_tls_ctx *sctx = make_ctx(true, NULL), *cctx = make_ctx(false, NULL);
    echo_srv es;
    echo_listen(&es, sctx, NULL);
    unsigned port = dx_uv_listener_port(es.l);
    client c[3];
    memset(c, 0, sizeof(c));
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(dx_uv_tls_connect(L, cctx, "localhost", port, cl_connected, &c[i],
                                           NULL), 0);
    ck_assert(run_until(all_secure, c, 10000));
    ck_assert(wait_count(&es.secure, 3, 5000));
    ck_assert_uint_eq(dx_uv_listener_connections(es.l), 3);
    ck_assert_uint_eq(dx_tls_server_connections(es.srv), 3);
    /* One goes (close_notify both ways). */
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(c[0].t)), 0);
    ck_assert(wait_count(&es.closed, 1, 5000));
    ck_assert(run_until(client_closed, &c[0], 5000));
    ck_assert_uint_eq(c[0].sd.rec.errors, 0);
    ck_assert_uint_eq(dx_uv_listener_connections(es.l), 2);
    /* Closed: no new connection, the open ones still echo. */
    dx_uv_listener_close(es.l, false);
    client late = {0};
    ck_assert_int_eq(dx_uv_tls_connect(L, cctx, "127.0.0.1", port, cl_connected, &late, NULL),
                     0);
    ck_assert(run_until(client_called, &late, 5000));
    ck_assert_str_eq(late.res.name, "ECONNREFUSED");
    c[1].total = 50000;
    c[1].sd.pump.total = 50000;
    pump_run(&c[1].sd.pump);
    ck_assert(run_until(client_closed, &c[1], 10000));
    ck_assert_uint_eq(c[1].sd.rec.received, 50000);
    ck_assert_uint_eq(c[1].sd.rec.errors, 0);
    client_free(&c[0]);
    client_free(&c[1]);
    /* c[2] stays open. */
    ck_assert_uint_eq(c[2].sd.rec.closes, 0);
    ck_assert_uint_eq(es.errors, 0);

    /* A second listener, closed with abort: its connections go at once. */
    echo_srv es2;
    echo_listen(&es2, sctx, NULL);
    client d[3];
    memset(d, 0, sizeof(d));
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(dx_uv_tls_connect(L, cctx, "127.0.0.1", dx_uv_listener_port(es2.l),
                                           cl_connected, &d[i], NULL), 0);
    ck_assert(run_until(all_secure, d, 10000));
    ck_assert(wait_count(&es2.accepted, 3, 5000));
    ck_assert_uint_eq(dx_uv_listener_connections(es2.l), 3);
    dx_uv_listener_close(es2.l, true);
    ck_assert_uint_eq(es2.closed, 3); /* at once */
    ck_assert_uint_eq(es2.errors, 0);
    for (int i = 0; i < 3; i++) {
        ck_assert(run_until(client_closed, &d[i], 5000));
        client_free(&d[i]);
    }
    ck_assert_uint_eq(es2.closed, 3);
    client_free(&c[2]);
    ck_assert(wait_count(&es.closed, 3, 5000));
    dx_tls_server_free(es.srv);
    dx_tls_server_free(es2.srv);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
    loop_close();
}
END_TEST

/* A plain listener counts streams, and aborts them when closed so. */
START_TEST(plain_listener_counts_streams)
{
    loop_open();
    dx_stream *got = NULL;
    dx_uv_listener *l;
    ck_assert_int_eq(dx_uv_tcp_listen(L, NULL, 0, count_accepts, &got, &l, NULL), 0);
    conn_result c = {0};
    ck_assert_int_eq(dx_uv_tcp_connect(L, "127.0.0.1", dx_uv_listener_port(l), result_cb, &c,
                                       NULL), 0);
    ck_assert(run_until(result_called, &c, 5000));
    for (int i = 0; i < 500 && !got; i++)
        uv_run(L, UV_RUN_ONCE);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(dx_uv_listener_connections(l), 1);
    h_rec r = {0}, rc = {0};
    h_rec_attach(&r, got);
    h_rec_attach(&rc, c.s);
    dx_uv_listener_close(l, true);
    assert_log(&r, "c");
    ck_assert(run_until(rec_ended, &rc, 5000));
    dx_stream_destroy(got);
    dx_stream_destroy(c.s);
    loop_close();
    h_rec_assert_clean(&r);
    h_rec_assert_clean(&rc);
    h_rec_free(&r);
    h_rec_free(&rc);
}
END_TEST

/* dx_uv_tls_timer on any connection: the idle timeout fires from the loop
 * on the loop's clock, the timer goes when the connection is destroyed,
 * and the calls refuse what they cannot do. */
typedef struct idle_log {
    unsigned timeouts;
    uint64_t at[4];
} idle_log;

static void idle_timeout(dx_tls *t, void *u)
{
    idle_log *il = u;
    if (il->timeouts < 4)
        il->at[il->timeouts] = uv_now(L);
    il->timeouts++;
    (void)t;
}

static bool two_timeouts(void *arg) { return ((idle_log *)arg)->timeouts >= 2; }

START_TEST(tls_timer_drives_the_idle_timeout)
{
    loop_open();
    dx_tls_ctx *cctx = make_ctx(false, NULL);
    dx_tls *t;
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &t), 0);
    ck_assert_int_eq(dx_uv_tls_timer(NULL, t), DX_EINVAL);
    ck_assert_int_eq(dx_uv_tls_timer(L, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_uv_tls_timer(L, t), 0);
    ck_assert_int_eq(dx_uv_tls_timer(L, t), DX_ESTATE); /* one timer */
    ck_assert_uint_eq(dx_uv_now(L), uv_now(L));
    idle_log il = {0};
    dx_tls_events ev = {.on_timeout = idle_timeout};
    ck_assert_int_eq(dx_tls_set_events(t, &ev, &il), 0);
    ck_assert_int_eq(dx_tls_set_handshake_timeout(t, 0), 0);
    ck_assert_int_eq(dx_tls_set_idle_timeout(t, 40), 0);
    /* Over a memory pair whose other end never answers. */
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_tls_attach(t, a), 0);
    ck_assert_int_eq(dx_tls_start(t), 0);
    uint64_t start = uv_now(L);
    ck_assert(run_until(two_timeouts, &il, 5000));
    ck_assert_uint_ge(il.at[0] - start, 40);
    ck_assert_uint_ge(il.at[1] - il.at[0], 40);
    ck_assert(dx_stream_state(dx_tls_upper(t)) & DX_STREAM_WRITABLE); /* still open */
    dx_tls_destroy(t); /* the timer is closed with it */
    dx_stream_destroy(b);
    /* Closed: no timer for it. */
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &t), 0);
    dx_stream_abort(dx_tls_upper(t));
    ck_assert_int_eq(dx_uv_tls_timer(L, t), DX_ESTATE);
    dx_tls_destroy(t);
    dx_tls_ctx_unref(cctx);
    loop_close();
}
END_TEST

Suite *uv_suite(void)
{
    Suite *s = suite_create("uv");
    TCase *tc = tcase_create("stream");
    tcase_add_checked_fixture(tc, sig_setup, sig_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, stream_takes_the_handle_and_gives_it_back);
    tcase_add_loop_test(tc, transfer_both_ways_byte_exact, 0, K_COUNT);
    tcase_add_loop_test(tc, slow_reader_holds_the_writer_back, 0, 2 * K_COUNT);
    tcase_add_loop_test(tc, full_queue_is_refilled_in_large_requests, 0, K_COUNT);
    tcase_add_loop_test(tc, half_close_keeps_the_other_direction, 0, K_COUNT);
    tcase_add_loop_test(tc, destroy_inside_callbacks, 0, 5 * K_COUNT);
    tcase_add_test(tc, peer_reset_fails_the_stream_with_the_uv_name);
    tcase_add_test(tc, write_to_a_peer_gone_fails_with_epipe);
    tcase_add_test(tc, one_way_pipe_streams);
    tcase_add_test(tc, tty_stream_over_a_pseudo_terminal);
    tcase_add_loop_test(tc, destroy_after_finish_loses_nothing, 0, K_COUNT);
    suite_add_tcase(s, tc);

    tc = tcase_create("net");
    tcase_add_checked_fixture(tc, sig_setup, sig_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, connect_to_a_closed_port_is_refused);
    tcase_add_test(tc, connect_failures_carry_uv_names);
    tcase_add_test(tc, listen_failures_and_unix_socket_file);
    tcase_add_test(tc, plain_listener_counts_streams);
    suite_add_tcase(s, tc);

    tc = tcase_create("tls");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_add_checked_fixture(tc, sig_setup, sig_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, tls_echo_over_tcp, 0, 4);
    tcase_add_loop_test(tc, tls_echo_over_unix_socket, 0, 2);
    tcase_add_test(tc, tls_connect_refused);
    tcase_add_test(tc, handshake_timeout_fires_from_a_uv_timer);
    tcase_add_test(tc, listener_counts_and_closes);
    tcase_add_test(tc, tls_timer_drives_the_idle_timeout);
    suite_add_tcase(s, tc);
    return s;
}
