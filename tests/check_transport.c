/*
 * The callback transport (include/duplex/transport.h): a stream over
 * user-supplied read, write, shutdown and close functions.
 *
 * The non-blocking form is driven over an in-test fake serial driver: two
 * bounded rings (what the device received, for the stream to read; what
 * the stream wrote, for the device to send) whose read and write return
 * DX_EAGAIN when empty or full, and which count every call. The blocking
 * form is driven over a socketpair whose fds stay blocking.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static void assert_no_leak(void)
{
    ck_assert_msg(h_alloc_live() == 0, "%zu bytes still allocated",
                  h_alloc_live());
}

/* Position of the first ev in the log, or -1. */
static int pos(const h_rec *r, char ev)
{
    const char *p = memchr(r->log, ev, r->nlog);
    return p ? (int)(p - r->log) : -1;
}

static void assert_log(const h_rec *r, const char *want)
{
    ck_assert_msg(r->nlog == strlen(want) && memcmp(r->log, want, r->nlog) == 0,
                  "events %.*s, want %s", (int)r->nlog, r->log, want);
}

/* ---- the fake serial driver ---------------------------------------------- */

#define RING_MAX 65536

typedef struct ring {
    uint8_t buf[RING_MAX];
    size_t cap, head, len;
} ring;

static size_t ring_put(ring *r, const uint8_t *p, size_t n)
{
    size_t room = r->cap - r->len;
    if (n > room)
        n = room;
    for (size_t i = 0; i < n; i++)
        r->buf[(r->head + r->len + i) % r->cap] = p[i];
    r->len += n;
    return n;
}

static size_t ring_get(ring *r, uint8_t *p, size_t n)
{
    if (n > r->len)
        n = r->len;
    for (size_t i = 0; i < n; i++)
        p[i] = r->buf[(r->head + i) % r->cap];
    r->head = (r->head + n) % r->cap;
    r->len -= n;
    return n;
}

typedef struct fake {
    ring rx;              /* received by the device, for the stream to read */
    ring tx;              /* written by the stream, for the device to send */
    bool rx_eof;          /* once rx is empty, read returns 0 */
    uint64_t rx_seed, rx_fed;   /* rx carries h_gen(rx_seed) */
    uint64_t tx_seed, tx_sent;  /* bytes taken out of tx by the device */
    bool tx_verify, tx_mismatch;
    uint8_t out[4096];    /* without tx_verify: what the device sent */
    size_t out_len;
    long read_fail;       /* once rx is empty, read returns this */
    long write_fail;      /* write returns this */
    bool read_overclaim;  /* read says it read cap + 1 bytes */
    bool write_overclaim; /* write says it wrote len + 1 bytes */
    size_t write_max;     /* most bytes per write call; 0: no limit */
    int shutdown_rc;
    /* accounting */
    unsigned reads, writes, shutdowns, closes;
    unsigned after_close;    /* calls made after close */
    unsigned writes_after_shutdown;
    bool eof_returned;
    size_t read_cap_min, read_cap_max;
    uint64_t read_total, written_total;
    uint64_t written_at_shutdown;
} fake;

static fake *fake_new(size_t rx_cap, size_t tx_cap)
{
    fake *f = calloc(1, sizeof(*f));
    ck_assert_ptr_nonnull(f);
    ck_assert(rx_cap >= 1 && rx_cap <= RING_MAX);
    ck_assert(tx_cap >= 1 && tx_cap <= RING_MAX);
    f->rx.cap = rx_cap;
    f->tx.cap = tx_cap;
    f->read_cap_min = (size_t)-1;
    return f;
}

static long fake_read(void *arg, void *buf, size_t cap)
{
    fake *f = arg;
    if (f->closes)
        f->after_close++;
    f->reads++;
    if (cap < f->read_cap_min)
        f->read_cap_min = cap;
    if (cap > f->read_cap_max)
        f->read_cap_max = cap;
    if (f->rx.len == 0) {
        if (f->read_fail)
            return f->read_fail;
        if (f->rx_eof) {
            f->eof_returned = true;
            return 0;
        }
        return DX_EAGAIN;
    }
    size_t n = ring_get(&f->rx, buf, cap);
    f->read_total += n;
    return f->read_overclaim ? (long)cap + 1 : (long)n;
}

static long fake_write(void *arg, const void *buf, size_t len)
{
    fake *f = arg;
    if (f->closes)
        f->after_close++;
    if (f->shutdowns)
        f->writes_after_shutdown++;
    f->writes++;
    if (f->write_fail)
        return f->write_fail;
    size_t n = len;
    if (f->write_max && n > f->write_max)
        n = f->write_max;
    n = ring_put(&f->tx, buf, n);
    if (n == 0)
        return DX_EAGAIN;
    f->written_total += n;
    return f->write_overclaim ? (long)len + 1 : (long)n;
}

static int fake_shutdown(void *arg)
{
    fake *f = arg;
    if (f->closes)
        f->after_close++;
    f->shutdowns++;
    f->written_at_shutdown = f->written_total;
    return f->shutdown_rc;
}

static void fake_close(void *arg)
{
    fake *f = arg;
    f->closes++;
}

static const dx_transport_ops fake_ops = {
    .read = fake_read,
    .write = fake_write,
    .shutdown = fake_shutdown,
    .close = fake_close,
};

/* The device receives up to `upto` bytes in all (as many as rx holds). */
static void fake_feed(fake *f, uint64_t upto)
{
    while (f->rx_fed < upto && f->rx.len < f->rx.cap) {
        uint8_t b[4096];
        size_t n = f->rx.cap - f->rx.len;
        if (n > sizeof(b))
            n = sizeof(b);
        if (n > upto - f->rx_fed)
            n = (size_t)(upto - f->rx_fed);
        h_gen_fill(f->rx_seed, f->rx_fed, b, n);
        ck_assert_uint_eq(ring_put(&f->rx, b, n), n);
        f->rx_fed += n;
    }
}

/* The device sends everything in tx. */
static void fake_drain(fake *f)
{
    while (f->tx.len) {
        uint8_t b[4096], want[4096];
        size_t n = ring_get(&f->tx, b, sizeof(b));
        if (f->tx_verify) {
            h_gen_fill(f->tx_seed, f->tx_sent, want, n);
            if (memcmp(b, want, n) != 0)
                f->tx_mismatch = true;
        } else {
            ck_assert_uint_le(f->out_len + n, sizeof(f->out));
            memcpy(f->out + f->out_len, b, n);
            f->out_len += n;
        }
        f->tx_sent += n;
    }
}

/* What the device is ready for now, as the owner's event loop sees it. */
static unsigned fake_ready(const fake *f)
{
    unsigned ev = 0;
    if (f->rx.len || f->rx_eof || f->read_fail)
        ev |= DX_READABLE;
    if (f->tx.len < f->tx.cap)
        ev |= DX_WRITABLE;
    return ev;
}

static dx_stream *fake_stream(fake *f, unsigned flags)
{
    dx_stream *s = NULL;
    ck_assert_int_eq(dx_transport_new(&fake_ops, f, flags, &s), 0);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(dx_stream_kind(s), "transport");
    ck_assert(dx_is_transport(s));
    ck_assert(!dx_is_fd_stream(s));
    return s;
}

/* ---- the non-blocking form ----------------------------------------------- */

/*
 * Bytes both ways through device buffers of 1 byte (5 kB each way), a
 * prime size and 4 kB (40 kB each way):
 * every byte arrives once and in order both ways, while the interest the
 * stream reports always matches its state (DX_WRITABLE exactly while bytes
 * wait for the device, DX_READABLE exactly until the end of input); the
 * end comes after all data, shutdown after the last byte was written, and
 * close once, last.
 */
START_TEST(nonblocking_transport_carries_bytes_both_ways_exactly)
{
    static const size_t rx_caps[] = {1, 97, 4096};
    static const size_t tx_caps[] = {1, 61, 4096};
    static const uint64_t totals[] = {5000, 40000, 40000};
    const uint64_t total_in = totals[_i], total_out = totals[_i];
    fake *f = fake_new(rx_caps[_i], tx_caps[_i]);
    f->rx_seed = 11;
    f->tx_seed = 12;
    f->tx_verify = true;
    dx_stream *s = fake_stream(f, 0);
    ck_assert_int_eq(dx_stream_set_high_water(s, DX_STREAM_DEFAULT_HWM, 1024), 0);
    h_rec r = {.verify = true, .verify_seed = 11};
    h_rec_attach(&r, s);

    uint64_t rng = 77 + (uint64_t)_i, sent = 0;
    bool waiting = false, ended = false;
    unsigned drains_at = 0, fulls = 0;
    static uint8_t chunk[5000];
    int64_t deadline = h_now_ms() + 20000;
    while (!r.closes) {
        ck_assert_msg(h_now_ms() < deadline, "stuck: in %lu/%lu out %lu/%lu",
                      (unsigned long)r.received, (unsigned long)total_in,
                      (unsigned long)f->tx_sent, (unsigned long)total_out);
        fake_feed(f, total_in);
        if (f->rx_fed == total_in)
            f->rx_eof = true;
        if (waiting && r.drains > drains_at)
            waiting = false;
        if (!waiting && sent < total_out) {
            size_t n = 1 + (size_t)(h_rand(&rng) % sizeof(chunk));
            if (n > total_out - sent)
                n = (size_t)(total_out - sent);
            h_gen_fill(12, sent, chunk, n);
            int rc = dx_stream_write(s, chunk, n);
            ck_assert_int_ge(rc, 0);
            sent += n;
            if (rc == DX_FULL) {
                fulls++;
                waiting = true;
                drains_at = r.drains;
            }
        } else if (sent == total_out && !ended) {
            ck_assert_int_eq(dx_stream_end(s), 0);
            ended = true;
        }
        if (r.closes)
            break;
        unsigned want = dx_transport_interest(s);
        ck_assert_uint_eq(want & ~(DX_READABLE | DX_WRITABLE), 0);
        ck_assert_msg(!!(want & DX_WRITABLE) == (dx_stream_write_buffered(s) > 0),
                      "interest %u with %zu bytes buffered", want,
                      dx_stream_write_buffered(s));
        ck_assert_msg(!!(want & DX_READABLE) == !f->eof_returned,
                      "interest %u, eof returned %d", want, f->eof_returned);
        unsigned ev = want & fake_ready(f);
        if (ev)
            ck_assert_int_eq(dx_transport_ready(s, ev), 0);
        fake_drain(f);
    }
    ck_assert_uint_eq(r.received, total_in);
    ck_assert(!r.mismatch);
    ck_assert_uint_eq(f->tx_sent, total_out);
    ck_assert(!f->tx_mismatch);
    ck_assert_uint_gt(fulls, 0); /* the device did push back */
    ck_assert_uint_eq(r.drains, fulls);
    ck_assert_uint_eq(r.ends, 1);
    ck_assert_uint_eq(r.finishes, 1);
    ck_assert_uint_eq(r.errors, 0);
    ck_assert_uint_eq(r.closes, 1);
    ck_assert_int_eq(pos(&r, H_EV_CLOSE), (int)r.nlog - 1);
    ck_assert_uint_eq(f->shutdowns, 1);
    ck_assert_uint_eq(f->written_at_shutdown, total_out);
    ck_assert_uint_eq(f->writes_after_shutdown, 0);
    ck_assert_uint_eq(f->closes, 1);
    ck_assert_uint_eq(dx_transport_interest(s), 0);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    ck_assert_uint_eq(f->closes, 1);
    ck_assert_uint_eq(f->after_close, 0);
    free(f);
    assert_no_leak();
}
END_TEST

/* DX_READABLE is reported exactly while the consumer wants data: not
 * before a consumer is attached, not while a paused consumer's buffer is
 * at its mark, not after the end of input, not after close. */
START_TEST(interest_readable_follows_the_consumers_appetite)
{
    fake *f = fake_new(4096, 4096);
    f->rx_seed = 3;
    dx_stream *s = fake_stream(f, 0);
    ck_assert_int_eq(dx_stream_set_high_water(s, 50, DX_STREAM_DEFAULT_HWM), 0);
    ck_assert_int_eq(dx_transport_set_read_size(s, 40), 0);

    /* No consumer: no interest, and readiness does not make it read. */
    ck_assert_uint_eq(dx_transport_interest(s), 0);
    fake_feed(f, 100);
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(f->reads, 0);

    h_rec r = {.verify = true, .verify_seed = 3};
    h_rec_attach(&r, s);
    ck_assert_uint_eq(dx_transport_interest(s), DX_READABLE);
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(r.received, 100);
    ck_assert_uint_eq(dx_transport_interest(s), DX_READABLE);

    /* Paused: it reads until its buffer reaches the mark (50), then stops
     * wanting. */
    dx_stream_pause(s);
    ck_assert_uint_eq(dx_transport_interest(s), DX_READABLE);
    fake_feed(f, 300);
    unsigned reads = f->reads;
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(f->reads, reads + 2);
    ck_assert_uint_eq(dx_stream_read_buffered(s), 80);
    ck_assert_uint_eq(dx_transport_interest(s), 0);
    ck_assert_uint_eq(r.received, 100);

    dx_stream_resume(s);
    ck_assert_uint_eq(r.received, 180);
    ck_assert_uint_eq(dx_transport_interest(s), DX_READABLE);
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(r.received, 300);

    /* The end of input: nothing more to wait for. */
    f->rx_eof = true;
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(r.ends, 1);
    ck_assert_uint_eq(dx_transport_interest(s), 0);
    reads = f->reads;
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(f->reads, reads); /* no read after EOF */

    ck_assert_int_eq(dx_stream_end(s), 0);
    ck_assert_uint_eq(r.closes, 1);
    ck_assert_uint_eq(dx_transport_interest(s), 0);
    ck_assert(!r.mismatch);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    free(f);
    assert_no_leak();
}
END_TEST

/* DX_WRITABLE is reported exactly while bytes wait for the channel. */
START_TEST(interest_writable_only_while_bytes_wait)
{
    fake *f = fake_new(16, 10);
    dx_stream *s = fake_stream(f, 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    ck_assert_uint_eq(dx_transport_interest(s), DX_READABLE);

    /* Fits entirely: nothing waits. */
    ck_assert_int_eq(dx_stream_write(s, "0123456789", 10), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 0);
    ck_assert_uint_eq(dx_transport_interest(s), DX_READABLE);

    /* The device is full: the bytes wait, and the stream says so. */
    ck_assert_int_eq(dx_stream_write(s, "abcdefghij", 10), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 10);
    ck_assert_uint_eq(dx_transport_interest(s), DX_READABLE | DX_WRITABLE);

    /* A spurious wake-up: still full, still waiting. */
    ck_assert_int_eq(dx_transport_ready(s, DX_WRITABLE), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 10);
    ck_assert_uint_eq(dx_transport_interest(s), DX_READABLE | DX_WRITABLE);

    /* The device sends; the stream writes only when told. */
    fake_drain(f);
    ck_assert_uint_eq(f->tx.len, 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 10);
    ck_assert_int_eq(dx_transport_ready(s, DX_WRITABLE), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 0);
    ck_assert_uint_eq(dx_transport_interest(s), DX_READABLE);
    fake_drain(f);
    ck_assert_uint_eq(f->out_len, 20);
    ck_assert_mem_eq(f->out, "0123456789abcdefghij", 20);

    /* Corked bytes wait for the uncork, not for the channel. */
    dx_stream_cork(s);
    ck_assert_int_eq(dx_stream_write(s, "xyz", 3), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 3);
    ck_assert_uint_eq(dx_transport_interest(s) & DX_WRITABLE, 0);
    dx_stream_uncork(s);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 0);
    fake_drain(f);
    ck_assert_mem_eq(f->out + 20, "xyz", 3);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    free(f);
    assert_no_leak();
}
END_TEST

/* A write function that takes only part of what it is offered: the rest
 * stays in the stream's buffer, later writes queue behind it, and
 * dx_transport_ready(DX_WRITABLE) moves what the channel has room for,
 * until everything went out and on_drain fires. */
START_TEST(short_writes_keep_the_rest_buffered_until_ready_writable)
{
    fake *f = fake_new(16, 4);
    dx_stream *s = fake_stream(f, 0);
    ck_assert_int_eq(dx_stream_set_high_water(s, DX_STREAM_DEFAULT_HWM, 5), 0);
    h_rec r = {0};
    h_rec_attach(&r, s);

    ck_assert_int_eq(dx_stream_write(s, "0123456789", 10), DX_FULL);
    ck_assert_uint_eq(f->writes, 1);
    ck_assert_uint_eq(f->tx.len, 4);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 6);
    ck_assert(dx_transport_interest(s) & DX_WRITABLE);
    /* More writes while it waits only queue behind, without a call. */
    ck_assert_int_eq(dx_stream_write(s, "ab", 2), DX_FULL);
    ck_assert_uint_eq(f->writes, 1);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 8);

    /* Nothing moves until the owner says the channel is writable. */
    fake_drain(f);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 8);
    ck_assert_int_eq(dx_transport_ready(s, DX_WRITABLE), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 4);
    ck_assert_uint_eq(r.drains, 0);
    ck_assert(dx_transport_interest(s) & DX_WRITABLE);
    fake_drain(f);
    ck_assert_int_eq(dx_transport_ready(s, DX_WRITABLE), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 0);
    ck_assert_uint_eq(r.drains, 1);
    ck_assert_uint_eq(dx_transport_interest(s) & DX_WRITABLE, 0);
    fake_drain(f);
    ck_assert_uint_eq(f->out_len, 12);
    ck_assert_mem_eq(f->out, "0123456789ab", 12);

    /* A channel that takes less than offered although it has room (at
     * most 3 bytes a call): one ready(DX_WRITABLE) finishes the rest. */
    f->write_max = 3;
    ck_assert_int_eq(dx_stream_write(s, "ABCD", 4), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 1);
    ck_assert(dx_transport_interest(s) & DX_WRITABLE);
    ck_assert_int_eq(dx_transport_ready(s, DX_WRITABLE), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 0);
    fake_drain(f);
    ck_assert_mem_eq(f->out + 12, "ABCD", 4);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    free(f);
    assert_no_leak();
}
END_TEST

/* A paused consumer stops reads: once the read buffer is at its mark the
 * read function is not called again, however often the channel says it
 * is readable; resuming delivers the buffered bytes first, in order. */
START_TEST(paused_consumer_stops_reads_at_the_mark)
{
    fake *f = fake_new(RING_MAX, 16);
    f->rx_seed = 21;
    dx_stream *s = fake_stream(f, 0);
    ck_assert_int_eq(dx_transport_set_read_size(s, 1000), 0);
    h_rec r = {.verify = true, .verify_seed = 21};
    h_rec_attach(&r, s);
    dx_stream_pause(s);
    fake_feed(f, 50000);

    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    /* 17 reads of 1000 bytes pass the 16384-byte mark. */
    ck_assert_uint_eq(f->reads, 17);
    ck_assert_uint_eq(dx_stream_read_buffered(s), 17000);
    ck_assert_uint_eq(r.received, 0);
    ck_assert_uint_eq(dx_transport_interest(s), 0);
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(f->reads, 17);
    ck_assert_uint_eq(f->rx.len, 50000 - 17000);

    dx_stream_resume(s);
    ck_assert_uint_eq(r.received, 17000);
    ck_assert_uint_eq(dx_transport_interest(s), DX_READABLE);
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(r.received, 50000);
    ck_assert(!r.mismatch);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    free(f);
    assert_no_leak();
}
END_TEST

/* read returning 0 is the end of input: on_end comes after every byte
 * read before it, also when the consumer was paused at the time, and the
 * read function is not called again. */
START_TEST(eof_gives_end_after_all_data)
{
    fake *f = fake_new(8192, 16);
    f->rx_seed = 5;
    dx_stream *s = fake_stream(f, 0);
    h_rec r = {.verify = true, .verify_seed = 5};
    h_rec_attach(&r, s);
    dx_stream_pause(s);
    fake_feed(f, 5000);
    f->rx_eof = true;
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert(f->eof_returned);
    ck_assert_uint_eq(r.ends, 0); /* paused: neither data nor end yet */
    ck_assert_uint_eq(r.received, 0);
    ck_assert_uint_eq(dx_transport_interest(s), 0);
    dx_stream_resume(s);
    ck_assert_uint_eq(r.received, 5000);
    ck_assert_uint_eq(r.ends, 1);
    assert_log(&r, "de");
    unsigned reads = f->reads;
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(f->reads, reads);
    /* Half-open: the write side still works. */
    ck_assert(!(dx_stream_state(s) & DX_STREAM_CLOSED));
    ck_assert_int_eq(dx_stream_write(s, "ok", 2), 0);
    fake_drain(f);
    ck_assert_mem_eq(f->out, "ok", 2);
    ck_assert(!r.mismatch);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    ck_assert_uint_eq(f->closes, 1);
    free(f);
    assert_no_leak();
}
END_TEST

/* A read that returns a DX_E* code fails the stream with that code, once:
 * the data read before it is delivered, then on_error, then on_close, and
 * nothing is read after. */
START_TEST(read_error_fails_the_stream_once_with_its_code)
{
    fake *f = fake_new(4096, 16);
    f->rx_seed = 8;
    dx_stream *s = fake_stream(f, 0);
    h_rec r = {.verify = true, .verify_seed = 8};
    h_rec_attach(&r, s);
    fake_feed(f, 500);
    f->read_fail = DX_ECONNRESET;
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(r.received, 500);
    assert_log(&r, "dxc");
    ck_assert_uint_eq(r.errors, 1);
    ck_assert_int_eq(r.error_code, DX_ECONNRESET);
    ck_assert_str_eq(r.error_name, "ECONNRESET");
    const dx_error *e = dx_stream_error(s);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(dx_error_code(e), DX_ECONNRESET);
    ck_assert_str_eq(dx_error_layer(e), "transport");
    ck_assert_uint_eq(f->closes, 1);
    unsigned reads = f->reads;
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE | DX_WRITABLE),
                     DX_EDESTROYED);
    ck_assert_uint_eq(f->reads, reads);
    ck_assert_uint_eq(dx_transport_interest(s), 0);
    ck_assert_int_eq(dx_stream_write(s, "x", 1), DX_EDESTROYED);
    ck_assert_uint_eq(r.errors, 1);
    ck_assert_uint_eq(r.closes, 1);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    ck_assert_uint_eq(f->closes, 1);
    ck_assert_uint_eq(f->after_close, 0);
    free(f);
    assert_no_leak();
}
END_TEST

/* A write or a shutdown that returns a DX_E* code fails the stream: at
 * once (_i 0), later while finishing buffered bytes (_i 1), or at the
 * end (_i 2). */
START_TEST(write_or_shutdown_error_fails_the_stream)
{
    fake *f = fake_new(16, 4);
    dx_stream *s = fake_stream(f, 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    int want;
    if (_i == 0) {
        want = DX_EPIPE;
        f->write_fail = DX_EPIPE;
        ck_assert_int_eq(dx_stream_write(s, "abc", 3), DX_EPIPE);
    } else if (_i == 1) {
        want = DX_EIO;
        ck_assert_int_eq(dx_stream_write(s, "0123456789", 10), 0);
        ck_assert_uint_eq(dx_stream_write_buffered(s), 6);
        fake_drain(f);
        f->write_fail = DX_EIO;
        ck_assert_uint_eq(r.errors, 0);
        ck_assert_int_eq(dx_transport_ready(s, DX_WRITABLE), 0);
    } else {
        want = DX_ETIMEDOUT;
        f->shutdown_rc = DX_ETIMEDOUT;
        ck_assert_int_eq(dx_stream_write(s, "abc", 3), 0);
        dx_stream_end(s);
        ck_assert_uint_eq(f->shutdowns, 1);
        ck_assert_uint_eq(r.finishes, 0);
    }
    ck_assert_uint_eq(r.errors, 1);
    ck_assert_int_eq(r.error_code, want);
    ck_assert_str_eq(r.error_name, dx_err_name(want));
    assert_log(&r, "xc");
    ck_assert(dx_stream_state(s) & DX_STREAM_ERRORED);
    ck_assert(dx_stream_state(s) & DX_STREAM_CLOSED);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 0);
    ck_assert_uint_eq(f->closes, 1);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    ck_assert_uint_eq(f->closes, 1);
    ck_assert_uint_eq(f->after_close, 0);
    free(f);
    assert_no_leak();
}
END_TEST

/* dx_stream_end() calls shutdown once, only after every buffered byte went
 * to the channel; on_finish follows it. */
START_TEST(shutdown_runs_once_after_buffered_data_is_written)
{
    fake *f = fake_new(16, 10);
    dx_stream *s = fake_stream(f, 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    ck_assert_int_eq(dx_stream_write(s, "ABCDEFGHIJKLMNOPQRSTUVWXY", 25), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 15);
    ck_assert_int_eq(dx_stream_end(s), 0);
    ck_assert_uint_eq(f->shutdowns, 0);
    ck_assert_uint_eq(r.finishes, 0);

    fake_drain(f);
    ck_assert_int_eq(dx_transport_ready(s, DX_WRITABLE), 0);
    ck_assert_uint_eq(f->shutdowns, 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 5);
    fake_drain(f);
    ck_assert_int_eq(dx_transport_ready(s, DX_WRITABLE), 0);
    ck_assert_uint_eq(f->shutdowns, 1);
    ck_assert_uint_eq(f->written_at_shutdown, 25);
    ck_assert_uint_eq(r.finishes, 1);
    fake_drain(f);
    ck_assert_uint_eq(f->out_len, 25);
    ck_assert_mem_eq(f->out, "ABCDEFGHIJKLMNOPQRSTUVWXY", 25);

    /* Never again. */
    ck_assert_int_eq(dx_transport_ready(s, DX_WRITABLE), 0);
    ck_assert_int_eq(dx_stream_end(s), DX_EWRITEAFTEREND);
    ck_assert_uint_eq(f->shutdowns, 1);
    ck_assert_uint_eq(f->writes_after_shutdown, 0);
    ck_assert_uint_eq(r.finishes, 1);
    ck_assert_uint_eq(r.closes, 0); /* the read side is still open */
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    ck_assert_uint_eq(f->shutdowns, 1);
    ck_assert_uint_eq(f->closes, 1);
    free(f);
    assert_no_leak();
}
END_TEST

/* The close function runs exactly once, whichever way the stream closes:
 * destroyed while open (with or without a consumer), failed and then
 * destroyed, or closed by both directions ending and then destroyed. */
START_TEST(close_runs_once_on_destroy_after_error_and_after_both_ends)
{
    fake *f = fake_new(16, 16);
    dx_stream *s = fake_stream(f, 0);
    h_rec r = {0};
    if (_i != 1)
        h_rec_attach(&r, s);
    switch (_i) {
    case 0: /* destroyed while open */
    case 1: /* ... with no consumer */
        break;
    case 2: /* failed first */
        f->write_fail = DX_EIO;
        ck_assert_int_eq(dx_stream_write(s, "x", 1), DX_EIO);
        ck_assert_uint_eq(f->closes, 1);
        ck_assert_uint_eq(r.closes, 1);
        break;
    case 3: /* both directions done */
        f->rx_eof = true;
        ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
        ck_assert_int_eq(dx_stream_end(s), 0);
        ck_assert_uint_eq(r.closes, 1);
        ck_assert_uint_eq(f->closes, 1);
        ck_assert_uint_eq(r.errors, 0);
        break;
    }
    dx_stream_destroy(s);
    ck_assert_uint_eq(f->closes, 1);
    ck_assert_uint_eq(f->after_close, 0);
    if (_i != 1) {
        ck_assert_uint_eq(r.closes, 1);
        ck_assert_int_eq(pos(&r, H_EV_CLOSE), (int)r.nlog - 1);
        h_rec_assert_clean(&r);
    }
    free(f);
    assert_no_leak();
}
END_TEST

/* The consumer destroys the stream inside on_data: reading stops at once,
 * close runs once, and the transport's functions are not called again. */
START_TEST(destroy_inside_on_data_stops_reading)
{
    fake *f = fake_new(4096, 16);
    f->rx_seed = 2;
    dx_stream *s = fake_stream(f, 0);
    ck_assert_int_eq(dx_transport_set_read_size(s, 100), 0);
    h_rec r = {.destroy_on = H_EV_DATA, .slot = &s};
    h_rec_attach(&r, s);
    fake_feed(f, 3000);
    dx_stream *keep = s;
    ck_assert_int_eq(dx_transport_ready(keep, DX_READABLE), 0);
    ck_assert(r.destroyed);
    ck_assert_ptr_null(s);
    ck_assert_uint_eq(f->reads, 1);
    ck_assert_uint_eq(r.received, 100);
    ck_assert_uint_eq(r.closes, 1);
    ck_assert_uint_eq(f->closes, 1);
    ck_assert_uint_eq(f->after_close, 0);
    h_rec_assert_clean(&r);
    free(f);
    assert_no_leak();
}
END_TEST

/* dx_transport_set_read_size() bounds the cap of every read: with 1 every
 * byte still arrives, in order; 1 MiB is the largest size accepted. */
START_TEST(read_size_limits_each_read)
{
    fake *f = fake_new(4096, 16);
    f->rx_seed = 13;
    dx_stream *s = fake_stream(f, 0);
    ck_assert_int_eq(dx_transport_set_read_size(s, 0), DX_EINVAL);
    ck_assert_int_eq(dx_transport_set_read_size(s, ((size_t)1 << 20) + 1),
                     DX_EINVAL);
    ck_assert_int_eq(dx_transport_set_read_size(s, (size_t)-1), DX_EINVAL);
    ck_assert_int_eq(dx_transport_set_read_size(s, 1), 0);
    h_rec r = {.verify = true, .verify_seed = 13};
    h_rec_attach(&r, s);
    fake_feed(f, 3000);
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(r.received, 3000);
    ck_assert_uint_eq(f->reads, 3001); /* 3000 bytes, then DX_EAGAIN */
    ck_assert_uint_eq(f->read_cap_min, 1);
    ck_assert_uint_eq(f->read_cap_max, 1);
    ck_assert_uint_eq(r.max_data_event, 1);

    ck_assert_int_eq(dx_transport_set_read_size(s, (size_t)1 << 20), 0);
    fake_feed(f, 7000);
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(r.received, 7000);
    ck_assert_uint_eq(f->read_cap_max, (size_t)1 << 20);
    ck_assert(!r.mismatch);

    /* Not a transport. */
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_transport_set_read_size(a, 16), DX_EINVAL);
    ck_assert_int_eq(dx_transport_set_read_size(NULL, 16), DX_EINVAL);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    free(f);
    assert_no_leak();
}
END_TEST

/* A read function that says it read more than it was asked for fails the
 * stream with DX_EIO, and nothing of that read is delivered. */
START_TEST(read_claiming_more_than_asked_fails_with_eio)
{
    fake *f = fake_new(4096, 16);
    dx_stream *s = fake_stream(f, 0);
    ck_assert_int_eq(dx_transport_set_read_size(s, 64), 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    fake_feed(f, 1000);
    f->read_overclaim = true;
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(f->reads, 1);
    ck_assert_uint_eq(r.received, 0);
    ck_assert_uint_eq(r.errors, 1);
    ck_assert_int_eq(r.error_code, DX_EIO);
    assert_log(&r, "xc");
    ck_assert_uint_eq(f->closes, 1);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    ck_assert_uint_eq(f->closes, 1);
    free(f);
    assert_no_leak();
}
END_TEST

/* The same for a write function that claims more than it was offered. */
START_TEST(write_claiming_more_than_offered_fails_with_eio)
{
    fake *f = fake_new(16, 4096);
    f->write_overclaim = true;
    dx_stream *s = fake_stream(f, 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    ck_assert_int_eq(dx_stream_write(s, "abc", 3), DX_EIO);
    ck_assert_uint_eq(r.errors, 1);
    ck_assert_int_eq(r.error_code, DX_EIO);
    assert_log(&r, "xc");
    ck_assert_uint_eq(f->closes, 1);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    free(f);
    assert_no_leak();
}
END_TEST

static long never_read(void *arg, void *buf, size_t cap)
{
    (void)arg, (void)buf, (void)cap;
    return DX_EAGAIN;
}

static long never_write(void *arg, const void *buf, size_t len)
{
    (void)arg, (void)buf, (void)len;
    return DX_EAGAIN;
}

START_TEST(bad_arguments_give_einval)
{
    static int dummy;
    dx_stream *const bogus = (dx_stream *)(void *)&dummy;
    dx_stream *s = bogus;
    const dx_transport_ops no_read = {.write = never_write};
    const dx_transport_ops no_write = {.read = never_read};
    const dx_transport_ops minimal = {.read = never_read, .write = never_write};

    ck_assert_int_eq(dx_transport_new(NULL, NULL, 0, &s), DX_EINVAL);
    ck_assert_ptr_null(s);
    s = bogus;
    ck_assert_int_eq(dx_transport_new(&no_read, NULL, 0, &s), DX_EINVAL);
    ck_assert_ptr_null(s);
    s = bogus;
    ck_assert_int_eq(dx_transport_new(&no_write, NULL, 0, &s), DX_EINVAL);
    ck_assert_ptr_null(s);
    s = bogus;
    ck_assert_int_eq(dx_transport_new(&minimal, NULL, 0x2, &s), DX_EINVAL);
    ck_assert_ptr_null(s);
    s = bogus;
    ck_assert_int_eq(dx_transport_new(&minimal, NULL,
                                      DX_TRANSPORT_BLOCKING | 0x80000000u, &s),
                     DX_EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(dx_transport_new(&minimal, NULL, 0, NULL), DX_EINVAL);
    assert_no_leak();

    /* Memory short. */
    s = bogus;
    h_alloc_fail_from(0);
    ck_assert_int_eq(dx_transport_new(&minimal, NULL, 0, &s), DX_ENOMEM);
    h_alloc_fail_from(-1);
    ck_assert_ptr_null(s);

    /* shutdown and close are optional, in both forms. */
    ck_assert_int_eq(dx_transport_new(&minimal, NULL, 0, &s), 0);
    ck_assert_int_eq(dx_stream_end(s), 0);
    dx_stream_destroy(s);
    ck_assert_int_eq(dx_transport_new(&minimal, NULL, DX_TRANSPORT_BLOCKING, &s), 0);
    dx_stream_destroy(s);
    assert_no_leak();
}
END_TEST

/* dx_transport_ready() refuses what is not a transport stream, unknown
 * event bits, and a transport stream that has closed. */
START_TEST(ready_refuses_non_transports_and_closed_streams)
{
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    h_rec ra = {0};
    h_rec_attach(&ra, a);
    ck_assert(!dx_is_transport(a));
    ck_assert(!dx_is_transport(NULL));
    ck_assert_int_eq(dx_transport_ready(a, DX_READABLE), DX_EINVAL);
    ck_assert_int_eq(dx_transport_ready(a, DX_WRITABLE), DX_EINVAL);
    ck_assert_int_eq(dx_transport_ready(NULL, DX_READABLE), DX_EINVAL);
    ck_assert_uint_eq(dx_transport_interest(a), 0);
    ck_assert_uint_eq(dx_transport_interest(NULL), 0);
    ck_assert_uint_eq(ra.nlog, 0);

    fake *f = fake_new(16, 16);
    dx_stream *s = fake_stream(f, 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    ck_assert_int_eq(dx_transport_ready(s, 0x4), DX_EINVAL);
    ck_assert_int_eq(dx_transport_ready(s, 0), 0);
    ck_assert_uint_eq(f->reads + f->writes, 0);
    dx_stream_abort(s);
    ck_assert_uint_eq(r.closes, 1);
    ck_assert_uint_eq(f->closes, 1);
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), DX_EDESTROYED);
    ck_assert_int_eq(dx_transport_ready(s, DX_WRITABLE), DX_EDESTROYED);
    ck_assert_uint_eq(dx_transport_interest(s), 0);
    ck_assert_uint_eq(f->reads + f->writes, 0);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    ck_assert_uint_eq(f->closes, 1);
    free(f);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    assert_no_leak();
}
END_TEST

/* In the blocking form a write function that makes no progress (DX_EAGAIN)
 * leaves the rest buffered, to be finished by ready(DX_WRITABLE). */
START_TEST(blocking_write_without_progress_waits_for_ready_writable)
{
    fake *f = fake_new(16, 4);
    f->write_max = 3;
    dx_stream *s = fake_stream(f, DX_TRANSPORT_BLOCKING);
    h_rec r = {0};
    h_rec_attach(&r, s);
    /* 3 bytes, then 1 (the ring is full at 4), then nothing. */
    ck_assert_int_eq(dx_stream_write(s, "0123456789", 10), 0);
    ck_assert_uint_eq(f->writes, 3);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 6);
    ck_assert(dx_transport_interest(s) & DX_WRITABLE);
    fake_drain(f);
    ck_assert_int_eq(dx_transport_ready(s, DX_WRITABLE), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 2);
    fake_drain(f);
    ck_assert_int_eq(dx_transport_ready(s, DX_WRITABLE), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 0);
    ck_assert_uint_eq(dx_transport_interest(s) & DX_WRITABLE, 0);
    fake_drain(f);
    ck_assert_uint_eq(f->out_len, 10);
    ck_assert_mem_eq(f->out, "0123456789", 10);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    free(f);
    assert_no_leak();
}
END_TEST

/*
 * read and write return a long; a negative value fails the stream. One
 * that does not fit an int (a driver passing on a 64-bit status, or a
 * plain bug) must fail it too, with a negative code: it must not become
 * an error whose code is 0, nor a write that silently took nothing and
 * never asks to be retried. Everything is observed first and asserted
 * after the cleanup, so a failure here cannot leak into other tests.
 */
#if LONG_MAX > INT_MAX
static long status_value;

static long status_read(void *arg, void *buf, size_t cap)
{
    (void)arg, (void)buf, (void)cap;
    return status_value;
}

static long status_write(void *arg, const void *buf, size_t len)
{
    (void)arg, (void)buf, (void)len;
    return status_value;
}
#endif

START_TEST(status_beyond_int_range_still_fails_the_stream)
{
#if LONG_MAX > INT_MAX
    static const long values[] = {-((long)1 << 32), (long)INT_MIN - 1};
    status_value = values[_i];
    const dx_transport_ops ops = {.read = status_read, .write = status_write};
    dx_stream *s;

    /* read */
    ck_assert_int_eq(dx_transport_new(&ops, NULL, 0, &s), 0);
    h_rec rr = {0};
    h_rec_attach(&rr, s);
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    int read_code = dx_error_code(dx_stream_error(s));
    bool read_failed = dx_stream_state(s) & DX_STREAM_ERRORED;
    unsigned read_errors = rr.errors;
    dx_stream_destroy(s);

    /* write */
    ck_assert_int_eq(dx_transport_new(&ops, NULL, 0, &s), 0);
    h_rec rw = {0};
    h_rec_attach(&rw, s);
    int write_rc = dx_stream_write(s, "abc", 3);
    bool write_failed = dx_stream_state(s) & DX_STREAM_ERRORED;
    size_t write_buffered = dx_stream_write_buffered(s);
    unsigned write_interest = dx_transport_interest(s);
    dx_stream_destroy(s);
    assert_no_leak();

    bool read_ok = read_failed && read_errors == 1 && read_code < 0;
    bool write_ok = write_failed && write_rc < 0;
    ck_assert_msg(read_ok && write_ok,
                  "status %ld: read: failed %d, on_error %u, code %d; write: "
                  "dx_stream_write gave %d, failed %d, %zu bytes left "
                  "buffered, interest %u",
                  status_value, read_failed, read_errors, read_code, write_rc,
                  write_failed, write_buffered, write_interest);
#endif
}
END_TEST

/* ---- the blocking form over a blocking socketpair ---------------------- */

typedef struct sock_chan {
    int fd;
    size_t write_max; /* most bytes per write(2); 0: no limit */
    unsigned reads, writes, shutdowns, closes;
} sock_chan;

static long sock_read(void *arg, void *buf, size_t cap)
{
    sock_chan *c = arg;
    c->reads++;
    ssize_t n;
    do
        n = read(c->fd, buf, cap);
    while (n < 0 && errno == EINTR);
    return n < 0 ? DX_EIO : (long)n;
}

static long sock_write(void *arg, const void *buf, size_t len)
{
    sock_chan *c = arg;
    c->writes++;
    if (c->write_max && len > c->write_max)
        len = c->write_max;
    ssize_t n;
    do
        n = write(c->fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n < 0 ? (errno == EPIPE ? DX_EPIPE : DX_EIO) : (long)n;
}

static int sock_shutdown(void *arg)
{
    sock_chan *c = arg;
    c->shutdowns++;
    return shutdown(c->fd, SHUT_WR) == 0 ? 0 : DX_EIO;
}

static void sock_close(void *arg)
{
    sock_chan *c = arg;
    c->closes++;
    close(c->fd);
    c->fd = -1;
}

static const dx_transport_ops sock_ops = {
    .read = sock_read,
    .write = sock_write,
    .shutdown = sock_shutdown,
    .close = sock_close,
};

/* Reads exactly len bytes from fd without waiting: they must be there. */
static void recv_now(int fd, uint8_t *buf, size_t len)
{
    size_t have = 0;
    while (have < len) {
        ssize_t n = recv(fd, buf + have, len - have, MSG_DONTWAIT);
        ck_assert_msg(n > 0, "only %zu of %zu bytes were there (errno %d)",
                      have, len, n < 0 ? errno : 0);
        have += (size_t)n;
    }
}

/* A write completes inside dx_stream_write(), however many calls of the
 * write function it takes: when the call returns, the peer can read every
 * byte without waiting. */
START_TEST(blocking_write_completes_inside_the_write_call)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    sock_chan c = {.fd = sv[0], .write_max = 4096};
    dx_stream *s;
    ck_assert_int_eq(dx_transport_new(&sock_ops, &c, DX_TRANSPORT_BLOCKING, &s), 0);
    h_rec r = {0};
    h_rec_attach(&r, s);
    static uint8_t buf[32768], got[32768];
    h_gen_fill(31, 0, buf, sizeof(buf));
    ck_assert_int_eq(dx_stream_write(s, buf, sizeof(buf)), 0);
    ck_assert_uint_eq(c.writes, 8);
    ck_assert_uint_eq(dx_stream_write_buffered(s), 0);
    ck_assert_uint_eq(dx_transport_interest(s) & DX_WRITABLE, 0);
    recv_now(sv[1], got, sizeof(got));
    ck_assert_mem_eq(got, buf, sizeof(buf));
    ck_assert_uint_eq(r.drains + r.errors, 0);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    ck_assert_uint_eq(c.closes, 1);
    close(sv[1]);
    assert_no_leak();
}
END_TEST

/* Each dx_transport_ready(DX_READABLE) performs exactly one read and
 * delivers it; the end of input gives on_end; dx_stream_end() shuts the
 * channel down, and the peer reads EOF. */
START_TEST(blocking_ready_readable_reads_once_per_call)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    sock_chan c = {.fd = sv[0]};
    dx_stream *s;
    ck_assert_int_eq(dx_transport_new(&sock_ops, &c, DX_TRANSPORT_BLOCKING, &s), 0);
    ck_assert_int_eq(dx_transport_set_read_size(s, 4), 0);
    h_rec r = {.keep_data = true};
    h_rec_attach(&r, s);
    ck_assert_uint_eq(dx_transport_interest(s), DX_READABLE);
    ck_assert_int_eq(write(sv[1], "0123456789", 10), 10);

    static const size_t after[] = {4, 8, 10};
    for (unsigned k = 0; k < 3; k++) {
        ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
        ck_assert_uint_eq(c.reads, k + 1);
        ck_assert_uint_eq(r.len, after[k]);
        ck_assert_uint_eq(r.data_events, k + 1);
    }
    ck_assert_mem_eq(r.data, "0123456789", 10);

    ck_assert_int_eq(shutdown(sv[1], SHUT_WR), 0);
    ck_assert_int_eq(dx_transport_ready(s, DX_READABLE), 0);
    ck_assert_uint_eq(c.reads, 4);
    ck_assert_uint_eq(r.ends, 1);
    ck_assert_uint_eq(dx_transport_interest(s), 0);

    /* Our end: the peer sees EOF; both directions done, the stream closes. */
    ck_assert_int_eq(dx_stream_write(s, "bye", 3), 0);
    ck_assert_int_eq(dx_stream_end(s), 0);
    ck_assert_uint_eq(c.shutdowns, 1);
    uint8_t got[8];
    recv_now(sv[1], got, 3);
    ck_assert_mem_eq(got, "bye", 3);
    ck_assert_int_eq(recv(sv[1], got, sizeof(got), MSG_DONTWAIT), 0);
    ck_assert_uint_eq(r.finishes, 1);
    ck_assert_uint_eq(r.closes, 1);
    ck_assert_uint_eq(c.closes, 1);
    assert_log(&r, "defc");
    h_rec_assert_clean(&r);
    h_rec_free(&r);
    dx_stream_destroy(s);
    ck_assert_uint_eq(c.closes, 1);
    close(sv[1]);
    assert_no_leak();
}
END_TEST

Suite *transport_suite(void)
{
    Suite *s = suite_create("transport");
    TCase *nb = tcase_create("nonblocking");
    tcase_set_timeout(nb, 30);
    tcase_add_loop_test(nb, nonblocking_transport_carries_bytes_both_ways_exactly, 0, 3);
    tcase_add_test(nb, interest_readable_follows_the_consumers_appetite);
    tcase_add_test(nb, interest_writable_only_while_bytes_wait);
    tcase_add_test(nb, short_writes_keep_the_rest_buffered_until_ready_writable);
    tcase_add_test(nb, paused_consumer_stops_reads_at_the_mark);
    tcase_add_test(nb, eof_gives_end_after_all_data);
    tcase_add_test(nb, read_error_fails_the_stream_once_with_its_code);
    tcase_add_loop_test(nb, write_or_shutdown_error_fails_the_stream, 0, 3);
    tcase_add_test(nb, shutdown_runs_once_after_buffered_data_is_written);
    tcase_add_loop_test(nb, close_runs_once_on_destroy_after_error_and_after_both_ends, 0, 4);
    tcase_add_test(nb, destroy_inside_on_data_stops_reading);
    tcase_add_test(nb, read_size_limits_each_read);
    tcase_add_test(nb, read_claiming_more_than_asked_fails_with_eio);
    tcase_add_test(nb, write_claiming_more_than_offered_fails_with_eio);
    tcase_add_test(nb, bad_arguments_give_einval);
    tcase_add_test(nb, ready_refuses_non_transports_and_closed_streams);
    tcase_add_loop_test(nb, status_beyond_int_range_still_fails_the_stream, 0, 2);
    suite_add_tcase(s, nb);

    TCase *bl = tcase_create("blocking");
    tcase_set_timeout(bl, 30);
    tcase_add_test(bl, blocking_write_without_progress_waits_for_ready_writable);
    tcase_add_test(bl, blocking_write_completes_inside_the_write_call);
    tcase_add_test(bl, blocking_ready_readable_reads_once_per_call);
    suite_add_tcase(s, bl);
    return s;
}
