/*
 * The stream contract (include/duplex/stream.h, doc/streams.md), each test
 * run over a memory pair and over a real pipe pair.
 */
#include "config.h"

#include <string.h>

#include "harness.h"

#define KIND ((h_kind)(_i % H_KINDS))

static bool both_closed(void *arg)
{
    h_rec *r = arg;
    return r[0].closes && r[1].closes;
}

static bool rec_ended(void *arg) { return ((h_rec *)arg)->ends > 0; }
static bool rec_closed(void *arg) { return ((h_rec *)arg)->closes > 0; }

/* Position of the first ev in the log, or -1. */
static int pos(const h_rec *r, char ev)
{
    const char *p = memchr(r->log, ev, r->nlog);
    return p ? (int)(p - r->log) : -1;
}

static void assert_no_leak(void)
{
    ck_assert_msg(h_alloc_live() == 0, "%zu bytes still allocated",
                  h_alloc_live());
}

/* Data before end, end before close, close exactly once and last. */
START_TEST(event_order_data_end_finish_close)
{
    h_chan c;
    h_chan_open(&c, KIND, NULL);
    h_rec r[2] = {{.keep_data = true}, {.keep_data = true}};
    h_rec_attach(&r[0], c.a);
    h_rec_attach(&r[1], c.b);

    ck_assert_int_eq(dx_stream_write(c.a, "hello", 5), 0);
    ck_assert_int_eq(dx_stream_end(c.a), 0);
    ck_assert_int_eq(dx_stream_write(c.b, "world", 5), 0);
    ck_assert_int_eq(dx_stream_end(c.b), 0);
    ck_assert(h_run(&c, both_closed, r, 5000));

    for (int i = 0; i < 2; i++) {
        h_rec *x = &r[i];
        h_rec_assert_clean(x);
        ck_assert_uint_eq(x->len, 5);
        ck_assert_mem_eq(x->data, i == 0 ? "world" : "hello", 5);
        ck_assert_uint_eq(x->ends, 1);
        ck_assert_uint_eq(x->finishes, 1);
        ck_assert_uint_eq(x->closes, 1);
        ck_assert_uint_eq(x->errors, 0);
        ck_assert_int_lt(pos(x, H_EV_DATA), pos(x, H_EV_END));
        ck_assert_int_lt(pos(x, H_EV_FINISH), pos(x, H_EV_CLOSE));
        ck_assert_int_eq(pos(x, H_EV_CLOSE), (int)x->nlog - 1);
        ck_assert(dx_stream_state(x->s) & DX_STREAM_CLOSED);
        ck_assert(dx_stream_error(x->s) == NULL);
        h_rec_free(x);
    }
    h_chan_close(&c);
    assert_no_leak();
}
END_TEST

/* The peer destroys (not ends) its side: we still get the data it sent,
 * then end; our own end then closes us. */
START_TEST(peer_destroy_gives_data_then_end_then_close)
{
    h_chan c;
    h_chan_open(&c, KIND, NULL);
    h_rec rb = {.keep_data = true};
    h_rec_attach(&rb, c.b);
    ck_assert_int_eq(dx_stream_write(c.a, "bye", 3), 0);
    dx_stream_destroy(c.a);
    c.a = NULL;
    ck_assert(h_run(&c, rec_ended, &rb, 5000));
    ck_assert_uint_eq(rb.len, 3);
    ck_assert_mem_eq(rb.data, "bye", 3);
    ck_assert_uint_eq(rb.closes, 0); /* half-open: our side may still write */
    ck_assert(dx_stream_state(c.b) & DX_STREAM_WRITABLE);
    ck_assert_int_eq(dx_stream_end(c.b), 0);
    ck_assert(h_run(&c, rec_closed, &rb, 5000));
    ck_assert_uint_eq(rb.closes, 1);
    ck_assert_uint_eq(rb.errors, 0);
    ck_assert_int_eq(pos(&rb, H_EV_CLOSE), (int)rb.nlog - 1);
    h_rec_assert_clean(&rb);
    h_rec_free(&rb);
    h_chan_close(&c);
    assert_no_leak();
}
END_TEST

/* Writing towards a destroyed peer fails with EPIPE: error once, then
 * close once, last; later calls report the closed state. */
START_TEST(write_to_gone_peer_fails_once_with_epipe)
{
    h_chan c;
    h_chan_open(&c, KIND, NULL);
    h_rec rb = {0};
    h_rec_attach(&rb, c.b);
    dx_stream_destroy(c.a);
    c.a = NULL;
    int rc = dx_stream_write(c.b, "x", 1);
    ck_assert_int_eq(rc, DX_EPIPE);
    ck_assert(h_run(&c, rec_closed, &rb, 5000));
    ck_assert_uint_eq(rb.errors, 1);
    ck_assert_int_eq(rb.error_code, DX_EPIPE);
    ck_assert_str_eq(rb.error_name, "EPIPE");
    ck_assert_uint_eq(rb.closes, 1);
    ck_assert_int_lt(pos(&rb, H_EV_ERROR), pos(&rb, H_EV_CLOSE));
    ck_assert_int_eq(pos(&rb, H_EV_CLOSE), (int)rb.nlog - 1);
    ck_assert_int_eq(dx_stream_write(c.b, "y", 1), DX_EDESTROYED);
    ck_assert_int_eq(dx_stream_end(c.b), DX_EDESTROYED);
    ck_assert_ptr_nonnull(dx_stream_error(c.b));
    ck_assert_int_eq(dx_error_code(dx_stream_error(c.b)), DX_EPIPE);
    ck_assert_str_eq(dx_error_layer(dx_stream_error(c.b)),
                     KIND == H_MEM ? "pair" : "fd");
    h_rec_assert_clean(&rb);
    h_chan_close(&c);
    assert_no_leak();
}
END_TEST

/* ---- destroy from inside every callback ---- */

static const char destroy_events[] = {H_EV_DATA,   H_EV_END,   H_EV_DRAIN,
                                      H_EV_FINISH, H_EV_ERROR, H_EV_CLOSE};
#define N_DESTROY_EVENTS 6

typedef struct destroy_case {
    h_chan *c;
    char ev;
    bool peer;     /* destroy the peer stream rather than the stream itself */
    bool peer_gone;
} destroy_case;

static void destroy_peer_hook(h_rec *r, char ev)
{
    destroy_case *dc = r->ctx;
    if (ev == dc->ev && !dc->peer_gone) {
        dc->peer_gone = true;
        dx_stream_destroy(dc->c->a);
        dc->c->a = NULL;
    }
}

static bool scenario_over(void *arg)
{
    h_rec *r = arg; /* r[0]: a, r[1]: b */
    return (r[1].closes || r[1].destroyed) && (r[0].closes || !r[0].s);
}

/*
 * b sees every event kind: it writes more than the channel holds while a
 * is paused (DX_FULL, later drain), a sends data and ends (data, end), b
 * ends (finish, then close). For the error case a is destroyed first and
 * b's write fails.
 */
START_TEST(destroy_inside_each_callback_is_safe)
{
    int variant = _i / H_KINDS;
    char ev = destroy_events[variant % N_DESTROY_EVENTS];
    bool peer = variant >= N_DESTROY_EVENTS;
    h_chan c;
    h_chan_open(&c, KIND, NULL);
    h_rec r[2] = {{0}, {0}};
    destroy_case dc = {.c = &c, .ev = ev, .peer = peer};
    h_rec_attach(&r[0], c.a);
    if (peer) {
        r[1].on_event = destroy_peer_hook;
        r[1].ctx = &dc;
    } else {
        r[1].destroy_on = ev;
        r[1].slot = &c.b;
    }
    h_rec_attach(&r[1], c.b);

    static uint8_t big[200000];
    if (ev == H_EV_ERROR) {
        dx_stream_destroy(c.a);
        c.a = NULL;
        r[0].s = NULL;
        dx_stream_write(c.b, big, sizeof(big));
    } else {
        dx_stream_pause(c.a);
        ck_assert_int_eq(dx_stream_write(c.b, big, sizeof(big)), DX_FULL);
        /* With peer destruction these may meet a destroyed stream. */
        int rc = c.a ? dx_stream_write(c.a, "hi", 2) : 0;
        ck_assert(rc == 0 || (peer && rc == DX_EDESTROYED));
        if (c.a) {
            rc = dx_stream_end(c.a);
            ck_assert(rc == 0 || (peer && rc == DX_EDESTROYED));
        }
        h_run(&c, rec_ended, &r[1], 2000);
        if (c.b)
            dx_stream_end(c.b);
        if (c.a)
            dx_stream_resume(c.a);
        if (c.a && !peer)
            dx_stream_end(c.a); /* already ended: must not disturb */
    }
    if (dc.peer_gone)
        r[0].s = NULL;
    ck_assert(h_run(&c, scenario_over, r, 5000));
    /* The event did happen, the callback destroyed, and nothing followed. */
    if (peer)
        ck_assert_msg(dc.peer_gone, "event %c never came", ev);
    else
        ck_assert_msg(r[1].destroyed, "event %c never came (log %.*s)", ev,
                      (int)r[1].nlog, r[1].log);
    ck_assert_uint_eq(r[1].closes, 1);
    ck_assert_int_eq(pos(&r[1], H_EV_CLOSE), (int)r[1].nlog - 1);
    h_rec_assert_clean(&r[1]);
    h_rec_assert_clean(&r[0]);
    h_chan_close(&c);
    assert_no_leak();
}
END_TEST

/* ---- backpressure ---- */

typedef struct bp_state {
    h_rec *w, *r;
    unsigned drains_before;
    uint64_t sent;
} bp_state;

static bool drained_or_caught_up(void *arg)
{
    bp_state *st = arg;
    return st->w->drains > st->drains_before || st->r->received == st->sent;
}

/* A paused reader and a writer pushing 100 MB: the writer is told to stop
 * (DX_FULL) while memory stays within the marks, nothing is delivered while
 * paused, and every byte arrives in order once the reader resumes. */
START_TEST(backpressure_bounds_memory_over_100mb)
{
    const uint64_t total = (uint64_t)100 << 20;
    const size_t chunk = 65536;
    const uint64_t seed = 42;
    /* pair capacity 64 KiB + reader buffer 16 KiB + writer buffer up to one
     * chunk over 16 KiB, plus chunk headers and the channel itself. */
    const size_t bound = 320 * 1024;
    static uint8_t buf[65536];

    h_chan c;
    h_chan_open(&c, KIND, NULL);
    h_rec r[2] = {{0}, {.verify = true, .verify_seed = seed}};
    h_rec_attach(&r[0], c.a);
    h_rec_attach(&r[1], c.b);
    h_alloc_reset_peak();
    bp_state st = {.w = &r[0], .r = &r[1]};
    unsigned fulls = 0;

    dx_stream_pause(c.b);
    while (st.sent < total) {
        uint64_t seen = r[1].received;
        while (st.sent < total) {
            size_t n = total - st.sent < chunk ? (size_t)(total - st.sent) : chunk;
            h_gen_fill(seed, st.sent, buf, n);
            int rc = dx_stream_write(c.a, buf, n);
            ck_assert_int_ge(rc, 0);
            st.sent += n;
            if (rc == DX_FULL) {
                fulls++;
                break;
            }
            h_step(&c, 0);
        }
        for (int k = 0; k < 3; k++)
            h_step(&c, 0); /* the paused reader may buffer up to its mark */
        ck_assert_uint_eq(r[1].received, seen);
        ck_assert_uint_le(dx_stream_read_buffered(c.b), DX_STREAM_DEFAULT_HWM + chunk);
        ck_assert_msg(h_alloc_peak() <= bound, "peak %zu > %zu", h_alloc_peak(), bound);
        st.drains_before = r[0].drains;
        dx_stream_resume(c.b);
        ck_assert(h_run(&c, drained_or_caught_up, &st, 5000));
        dx_stream_pause(c.b);
    }
    dx_stream_resume(c.b);
    ck_assert_int_eq(dx_stream_end(c.a), 0);
    ck_assert(h_run(&c, rec_ended, &r[1], 10000));
    ck_assert_uint_eq(r[1].received, total);
    ck_assert(!r[1].mismatch);
    ck_assert_uint_gt(fulls, 100);
    ck_assert_msg(h_alloc_peak() <= bound, "peak %zu > %zu", h_alloc_peak(), bound);
    h_rec_assert_clean(&r[0]);
    h_rec_assert_clean(&r[1]);
    h_chan_close(&c);
    assert_no_leak();
}
END_TEST

/* ---- no byte lost or reordered: a property over many seeds ---- */

typedef struct prop_side {
    dx_stream *s;
    h_rec *own;       /* recorder of this stream (drains, reading) */
    uint64_t seed, total, sent;
    unsigned corks;
    bool waiting;     /* a write returned DX_FULL */
    unsigned drains_at;
    bool ended;
} prop_side;

static void prop_act(prop_side *p, uint64_t *rng)
{
    uint64_t x = h_rand(rng) % 16;
    if (p->ended)
        x = 13 + x % 3; /* done writing: only pause or resume the reader */
    if (p->waiting && p->own->drains > p->drains_at)
        p->waiting = false;
    if (x < 9) {
        if (p->waiting) {
            while (p->corks) {
                p->corks--;
                dx_stream_uncork(p->s);
            }
            return;
        }
        if (p->sent == p->total) {
            while (p->corks) {
                p->corks--;
                dx_stream_uncork(p->s);
            }
            ck_assert_int_eq(dx_stream_end(p->s), 0);
            p->ended = true;
            return;
        }
        uint8_t buf[3000];
        size_t n = 1 + h_rand(rng) % sizeof(buf);
        if (n > p->total - p->sent)
            n = (size_t)(p->total - p->sent);
        h_gen_fill(p->seed, p->sent, buf, n);
        int rc;
        if (n > 2 && (h_rand(rng) & 1)) {
            dx_iov v[2] = {{buf, n / 3}, {buf + n / 3, n - n / 3}};
            rc = dx_stream_writev(p->s, v, 2);
        } else {
            rc = dx_stream_write(p->s, buf, n);
        }
        ck_assert_int_ge(rc, 0);
        p->sent += n;
        if (rc == DX_FULL) {
            p->waiting = true;
            p->drains_at = p->own->drains;
        }
    } else if (x < 11) {
        if (p->corks < 3) {
            p->corks++;
            dx_stream_cork(p->s);
        }
    } else if (x < 13) {
        if (p->corks) {
            p->corks--;
            dx_stream_uncork(p->s);
        }
    } else if (x < 14) {
        dx_stream_pause(p->s);
    } else {
        dx_stream_resume(p->s);
    }
}

#define PROP_SEEDS 40

START_TEST(random_chunking_pausing_and_corking_lose_nothing)
{
    uint64_t seed = 1000 + (uint64_t)(_i / H_KINDS);
    uint64_t rng = seed;
    static const size_t caps[] = {1, 7, 100, 4096, 65536};
    static const size_t chunks[] = {0, 1, 3, 1000};
    static const size_t reads[] = {1, 5, 100, 16384};
    dx_pair_opts o = {.capacity = caps[h_rand(&rng) % 5],
                      .max_chunk = chunks[h_rand(&rng) % 4]};
    h_chan c;
    h_chan_open(&c, KIND, &o);
    if (KIND == H_PIPE) {
        dx_transport_set_read_size(c.a, reads[h_rand(&rng) % 4]);
        dx_transport_set_read_size(c.b, reads[h_rand(&rng) % 4]);
    }
    h_rec r[2] = {{.verify = true, .verify_seed = seed * 2 + 1},
                  {.verify = true, .verify_seed = seed * 2}};
    prop_side side[2] = {
        {.s = c.a, .own = &r[0], .seed = seed * 2, .total = h_rand(&rng) % 150000},
        {.s = c.b, .own = &r[1], .seed = seed * 2 + 1, .total = h_rand(&rng) % 150000},
    };
    if (h_rand(&rng) % 4 == 0)
        dx_stream_set_high_water(c.a, h_rand(&rng) % 3, h_rand(&rng) % 100);
    h_rec_attach(&r[0], c.a);
    h_rec_attach(&r[1], c.b);

    int64_t deadline = h_now_ms() + 20000;
    while (!(side[0].ended && side[1].ended)) {
        ck_assert_msg(h_now_ms() < deadline, "stuck: sent %lu/%lu %lu/%lu",
                      (unsigned long)side[0].sent, (unsigned long)side[0].total,
                      (unsigned long)side[1].sent, (unsigned long)side[1].total);
        prop_act(&side[h_rand(&rng) & 1], &rng);
        h_step(&c, 0);
    }
    dx_stream_resume(c.a);
    dx_stream_resume(c.b);
    ck_assert(h_run(&c, both_closed, r, 10000));
    for (int i = 0; i < 2; i++) {
        h_rec_assert_clean(&r[i]);
        ck_assert(!r[i].mismatch);
        ck_assert_uint_eq(r[i].received, side[1 - i].total);
        ck_assert_uint_eq(r[i].ends, 1);
        ck_assert_uint_eq(r[i].closes, 1);
        ck_assert_uint_eq(r[i].errors, 0);
        if (KIND == H_MEM && o.max_chunk)
            ck_assert_uint_le(r[i].max_data_event, o.max_chunk);
    }
    h_chan_close(&c);
    assert_no_leak();
}
END_TEST

/* ---- half-close, writes after end, early bytes ---- */

START_TEST(half_close_in_each_direction)
{
    bool a_first = _i / H_KINDS == 0;
    h_chan c;
    h_chan_open(&c, KIND, NULL);
    h_rec r[2] = {{.keep_data = true}, {.keep_data = true}};
    h_rec_attach(&r[0], c.a);
    h_rec_attach(&r[1], c.b);
    dx_stream *first = a_first ? c.a : c.b, *second = a_first ? c.b : c.a;
    h_rec *rf = a_first ? &r[0] : &r[1], *rs = a_first ? &r[1] : &r[0];

    ck_assert_int_eq(dx_stream_end(first), 0);
    ck_assert(h_run(&c, rec_ended, rs, 5000));
    ck_assert_uint_eq(rf->closes + rs->closes, 0);
    /* The side that saw the end still writes, and the ended side reads. */
    ck_assert_int_eq(dx_stream_write(second, "still here", 10), 0);
    ck_assert_int_eq(dx_stream_end(second), 0);
    ck_assert(h_run(&c, both_closed, r, 5000));
    ck_assert_uint_eq(rf->len, 10);
    ck_assert_mem_eq(rf->data, "still here", 10);
    ck_assert_uint_eq(rs->len, 0);
    for (int i = 0; i < 2; i++) {
        h_rec_assert_clean(&r[i]);
        ck_assert_uint_eq(r[i].closes, 1);
        h_rec_free(&r[i]);
    }
    h_chan_close(&c);
    assert_no_leak();
}
END_TEST

START_TEST(writes_after_end_fail_clearly)
{
    h_chan c;
    h_chan_open(&c, KIND, NULL);
    h_rec r[2] = {{0}, {0}};
    h_rec_attach(&r[0], c.a);
    h_rec_attach(&r[1], c.b);
    ck_assert_int_eq(dx_stream_end(c.a), 0);
    ck_assert_int_eq(dx_stream_write(c.a, "late", 4), DX_EWRITEAFTEREND);
    dx_iov v = {"late", 4};
    ck_assert_int_eq(dx_stream_writev(c.a, &v, 1), DX_EWRITEAFTEREND);
    ck_assert_int_eq(dx_stream_end(c.a), DX_EWRITEAFTEREND);
    ck_assert_str_eq(dx_err_name(DX_EWRITEAFTEREND), "ERR_STREAM_WRITE_AFTER_END");
    ck_assert(!(dx_stream_state(c.a) & DX_STREAM_WRITABLE));
    ck_assert_int_eq(dx_stream_end(c.b), 0);
    ck_assert(h_run(&c, both_closed, r, 5000));
    ck_assert_uint_eq(r[1].received, 0);
    ck_assert_int_eq(dx_stream_write(c.a, "x", 1), DX_EDESTROYED);
    ck_assert_int_eq(dx_stream_write(c.b, "x", 1), DX_EDESTROYED);
    h_rec_assert_clean(&r[0]);
    h_rec_assert_clean(&r[1]);
    h_chan_close(&c);
    assert_no_leak();
}
END_TEST

static bool got_bytes(void *arg)
{
    h_rec *r = arg;
    return r->len >= 10;
}

START_TEST(bytes_before_a_consumer_are_delivered_first)
{
    h_chan c;
    h_chan_open(&c, KIND, NULL);
    ck_assert_int_eq(dx_stream_write(c.a, "early", 5), 0);
    /* Bytes put back (a sniffer read them) come before the rest. */
    ck_assert_int_eq(dx_stream_unshift(c.b, "pre:", 4), 0);
    ck_assert_uint_eq(dx_stream_read_buffered(c.b), 4);
    h_rec rb = {.keep_data = true};
    h_rec_attach(&rb, c.b);
    ck_assert_int_eq(dx_stream_write(c.a, "+", 1), 0);
    ck_assert(h_run(&c, got_bytes, &rb, 5000));
    ck_assert_uint_eq(rb.len, 10);
    ck_assert_mem_eq(rb.data, "pre:early+", 10);
    h_rec_assert_clean(&rb);
    h_rec_free(&rb);
    h_chan_close(&c);
    assert_no_leak();
}
END_TEST

START_TEST(unshift_while_paused_goes_first_and_not_after_end)
{
    h_chan c;
    h_chan_open(&c, KIND, NULL);
    h_rec rb = {.keep_data = true};
    h_rec_attach(&rb, c.b);
    dx_stream_pause(c.b);
    ck_assert(dx_stream_is_paused(c.b));
    ck_assert_int_eq(dx_stream_write(c.a, "world", 5), 0);
    for (int k = 0; k < 5; k++)
        h_step(&c, 10);
    ck_assert_uint_eq(rb.len, 0);
    ck_assert_int_eq(dx_stream_unshift(c.b, "hello", 5), 0);
    dx_stream_resume(c.b);
    ck_assert(h_run(&c, got_bytes, &rb, 5000));
    ck_assert_mem_eq(rb.data, "helloworld", 10);
    ck_assert_int_eq(dx_stream_end(c.a), 0);
    ck_assert(h_run(&c, rec_ended, &rb, 5000));
    ck_assert_int_eq(dx_stream_unshift(c.b, "x", 1), DX_ESTATE);
    ck_assert_int_eq(dx_stream_unshift(NULL, "x", 1), DX_EINVAL);
    h_rec_assert_clean(&rb);
    h_rec_free(&rb);
    h_chan_close(&c);
    assert_no_leak();
}
END_TEST

START_TEST(zero_length_writes_are_not_errors)
{
    h_chan c;
    h_chan_open(&c, KIND, NULL);
    h_rec r[2] = {{0}, {0}};
    h_rec_attach(&r[0], c.a);
    h_rec_attach(&r[1], c.b);
    ck_assert_int_eq(dx_stream_write(c.a, "", 0), 0);
    ck_assert_int_eq(dx_stream_write(c.a, NULL, 0), 0);
    ck_assert_int_eq(dx_stream_writev(c.a, NULL, 0), 0);
    ck_assert_int_eq(dx_stream_write(c.a, NULL, 1), DX_EINVAL);
    ck_assert_int_eq(dx_stream_end(c.a), 0);
    ck_assert_int_eq(dx_stream_end(c.b), 0);
    ck_assert(h_run(&c, both_closed, r, 5000));
    ck_assert_uint_eq(r[1].data_events, 0);
    ck_assert_uint_eq(r[1].errors + r[0].errors, 0);
    h_rec_assert_clean(&r[0]);
    h_rec_assert_clean(&r[1]);
    h_chan_close(&c);
    assert_no_leak();
}
END_TEST

/* ---- memory-pair-only properties of the core ---- */

/* Corked small writes reach the layer below as one piece. */
START_TEST(cork_coalesces_small_writes)
{
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    h_rec rb = {.keep_data = true};
    h_rec_attach(&rb, b);
    dx_stream_cork(a);
    dx_stream_cork(a);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(dx_stream_write(a, "0123456789", 10), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(a), 1000);
    dx_stream_uncork(a);
    ck_assert_uint_eq(rb.data_events, 0); /* nested: still corked */
    dx_stream_uncork(a);
    ck_assert_uint_eq(rb.data_events, 1);
    ck_assert_uint_eq(rb.len, 1000);
    ck_assert_uint_eq(dx_stream_write_buffered(a), 0);
    /* writev is one write: one delivery */
    dx_iov v[3] = {{"ab", 2}, {"cd", 2}, {"ef", 2}};
    ck_assert_int_eq(dx_stream_writev(a, v, 3), 0);
    ck_assert_uint_eq(rb.data_events, 2);
    ck_assert_mem_eq(rb.data + 1000, "abcdef", 6);
    dx_stream_uncork(a); /* unbalanced uncork is ignored */
    h_rec_assert_clean(&rb);
    h_rec_free(&rb);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    assert_no_leak();
}
END_TEST

START_TEST(high_water_marks_and_buffered_counts)
{
    dx_pair_opts o = {.capacity = 10};
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(&o, &a, &b), 0);
    h_rec ra = {0}, rb = {.keep_data = true};
    h_rec_attach(&ra, a);
    h_rec_attach(&rb, b);
    dx_stream_pause(b);
    ck_assert_int_eq(dx_stream_set_high_water(a, DX_STREAM_DEFAULT_HWM, 20), 0);
    ck_assert_int_eq(dx_stream_set_high_water(b, 0, DX_STREAM_DEFAULT_HWM), 0);
    /* b buffers at most one delivery while paused (read mark 0): 10 bytes
     * sit in b's buffer, the next 10 in the pair, the rest in a's buffer. */
    ck_assert_int_eq(dx_stream_write(a, "0123456789abcde", 15), 0);
    ck_assert_uint_eq(dx_stream_read_buffered(b), 10);
    ck_assert_uint_eq(dx_stream_write_buffered(a), 0);
    ck_assert_int_eq(dx_stream_set_high_water(a, DX_STREAM_DEFAULT_HWM, 16), 0);
    ck_assert_int_eq(dx_stream_write(a, "fghijklmnopqrstuvwxyz", 21), DX_FULL);
    ck_assert_uint_eq(dx_stream_write_buffered(a), 16);
    ck_assert_uint_eq(ra.drains, 0);
    dx_stream_resume(b);
    ck_assert_uint_eq(dx_stream_write_buffered(a), 0);
    ck_assert_uint_eq(ra.drains, 1);
    ck_assert_uint_eq(rb.len, 36);
    ck_assert_mem_eq(rb.data, "0123456789abcdefghijklmnopqrstuvwxyz", 36);
    /* A zero write mark: anything that must wait reports DX_FULL. */
    dx_stream_pause(b);
    ck_assert_int_eq(dx_stream_set_high_water(a, DX_STREAM_DEFAULT_HWM, 0), 0);
    ck_assert_int_eq(dx_stream_write(a, "0123456789", 10), 0);
    ck_assert_int_eq(dx_stream_write(a, "0123456789", 10), 0);
    ck_assert_int_eq(dx_stream_write(a, "x", 1), DX_FULL);
    ck_assert_int_eq(dx_stream_set_high_water(NULL, 0, 0), DX_EINVAL);
    h_rec_assert_clean(&ra);
    h_rec_assert_clean(&rb);
    h_rec_free(&rb);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    assert_no_leak();
}
END_TEST

START_TEST(write_limit_refuses_and_accepts_nothing)
{
    dx_pair_opts o = {.capacity = 10};
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(&o, &a, &b), 0);
    h_rec rb = {.keep_data = true};
    h_rec_attach(&rb, b);
    dx_stream_pause(b);
    ck_assert_int_eq(dx_stream_set_write_limit(a, 100), 0);
    uint8_t big[200] = {0};
    ck_assert_int_eq(dx_stream_write(a, big, sizeof(big)), DX_ENOBUFS);
    ck_assert_uint_eq(dx_stream_write_buffered(a), 0);
    ck_assert_int_eq(dx_stream_write(a, "ok", 2), 0);
    dx_stream_resume(b);
    ck_assert_uint_eq(rb.len, 2);
    ck_assert(!(dx_stream_state(a) & DX_STREAM_ERRORED));
    ck_assert_int_eq(dx_stream_set_write_limit(a, 0), 0); /* no limit */
    dx_stream_pause(b);
    dx_stream_set_high_water(b, 0, DX_STREAM_DEFAULT_HWM);
    dx_stream_set_high_water(a, DX_STREAM_DEFAULT_HWM, 50);
    ck_assert_int_eq(dx_stream_write(a, big, sizeof(big)), DX_FULL);
    ck_assert_uint_eq(dx_stream_write_buffered(a), 180);
    h_rec_free(&rb);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    assert_no_leak();
}
END_TEST

START_TEST(state_flags_follow_the_lifecycle)
{
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    h_rec ra = {0}, rb = {0};
    h_rec_attach(&ra, a);
    h_rec_attach(&rb, b);
    ck_assert_uint_eq(dx_stream_state(a), DX_STREAM_READABLE | DX_STREAM_WRITABLE);
    dx_stream_pause(a);
    ck_assert(dx_stream_state(a) & DX_STREAM_PAUSED);
    dx_stream_resume(a);
    dx_stream_end(a);
    ck_assert_uint_eq(dx_stream_state(a), DX_STREAM_READABLE | DX_STREAM_FINISHED);
    ck_assert_uint_eq(dx_stream_state(b), DX_STREAM_WRITABLE | DX_STREAM_ENDED);
    dx_stream_end(b);
    ck_assert_uint_eq(dx_stream_state(a),
                      DX_STREAM_ENDED | DX_STREAM_FINISHED | DX_STREAM_CLOSED);
    ck_assert_str_eq(dx_stream_kind(a), "pair");
    ck_assert_ptr_eq(dx_stream_user(a), &ra);
    ck_assert_uint_eq(dx_stream_state(NULL), 0);
    ck_assert_str_eq(dx_stream_kind(NULL), "");
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    dx_stream_destroy(NULL);
    assert_no_leak();
}
END_TEST

/* A stream that failed before anyone listened reports it on attach: the
 * state at attach time is replayed, never lost. */
START_TEST(error_before_attach_is_replayed)
{
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_pair_inject_error(b, DX_ECONNRESET), 0);
    h_rec rb = {0};
    h_rec_attach(&rb, b);
    ck_assert_uint_eq(rb.errors, 1);
    ck_assert_int_eq(rb.error_code, DX_ECONNRESET);
    ck_assert_uint_eq(rb.closes, 1);
    h_rec_assert_clean(&rb);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    assert_no_leak();
}
END_TEST

/* dx_stream_destroy_with_error reports the given error, once. */
START_TEST(destroy_with_error_reports_it)
{
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    h_rec ra = {0}, rb = {0};
    h_rec_attach(&ra, a);
    h_rec_attach(&rb, b);
    dx_stream_destroy_with_error(a, dx_error_new(DX_ETIMEDOUT, NULL, "app",
                                                 "idle for %d s", 30));
    ck_assert_uint_eq(ra.errors, 1);
    ck_assert_int_eq(ra.error_code, DX_ETIMEDOUT);
    ck_assert_uint_eq(ra.closes, 1);
    ck_assert_uint_eq(rb.ends, 1); /* the peer sees EOF */
    h_rec_assert_clean(&ra);
    h_rec_assert_clean(&rb);
    dx_stream_destroy(b);
    assert_no_leak();
}
END_TEST

/* An end asked for from a callback that runs during the stream's own
 * write (a peer in the same process answering at once, as memory pairs
 * and TLS filters do) is carried out when the write returns: the shutdown
 * runs and on_finish comes, also when nothing is left buffered. The
 * implementation below takes everything and asks for the end from inside
 * its write, as such a callback would. */
typedef struct nested {
    bool end_inside;
    int end_rc;
    unsigned shutdowns;
} nested;

static int nested_write(dx_stream *s, const dx_iov *iov, size_t n, size_t *taken)
{
    nested *x = *(nested **)dx_stream_impl(s);
    for (size_t i = 0; i < n; i++)
        *taken += iov[i].len;
    if (x->end_inside) {
        x->end_inside = false;
        x->end_rc = dx_stream_end(s);
    }
    return 0;
}

static int nested_shutdown(dx_stream *s)
{
    nested *x = *(nested **)dx_stream_impl(s);
    x->shutdowns++;
    return 0;
}

static void nested_close(dx_stream *s) { (void)s; }

static const dx_stream_ops nested_ops = {
    .name = "nested", .write = nested_write, .shutdown = nested_shutdown,
    .close = nested_close};

START_TEST(end_during_own_write_shuts_down_when_it_returns)
{
    nested x = {.end_inside = true};
    dx_stream *s;
    ck_assert_int_eq(dx_stream_new(&nested_ops, sizeof(nested *), &s), 0);
    *(nested **)dx_stream_impl(s) = &x;
    h_rec r = {0};
    h_rec_attach(&r, s);
    ck_assert_int_eq(dx_stream_write(s, "QUIT", 4), 0);
    ck_assert_int_eq(x.end_rc, 0);
    ck_assert_uint_eq(x.shutdowns, 1);
    ck_assert_uint_eq(r.finishes, 1);
    ck_assert(!(dx_stream_state(s) & DX_STREAM_WRITABLE));
    ck_assert_int_eq(dx_stream_write(s, "x", 1), DX_EWRITEAFTEREND);
    h_rec_assert_clean(&r);
    dx_stream_destroy(s);
    ck_assert_uint_eq(x.shutdowns, 1);
    assert_no_leak();
}
END_TEST

/* An implementation that pushes from inside its consumer's on_data (a
 * filter whose answer comes back synchronously, as a TLS filter's records
 * do through a memory pair and a link) fills the read buffer while the
 * stream is still delivering; dx_stream_push() then says stop (0). The
 * buffer empties in the same delivery, so the appetite is back before the
 * core looks at it again: read_stop and then read_start must still come,
 * or the implementation waits for ever with bytes that were never pushed. */
typedef struct refill {
    unsigned starts, stops;
    bool waiting;   /* push said stop: nothing more until read_start */
    size_t left;    /* bytes still to push */
    size_t delivered;
} refill;

static void refill_push(dx_stream *s, refill *x)
{
    static const uint8_t chunk[1000];
    while (x->left && !x->waiting) {
        x->left -= sizeof(chunk);
        if (dx_stream_push(s, chunk, sizeof(chunk)) == 0)
            x->waiting = true;
    }
}

static void refill_start(dx_stream *s)
{
    refill *x = *(refill **)dx_stream_impl(s);
    x->starts++;
    x->waiting = false;
    refill_push(s, x);
}

static void refill_stop(dx_stream *s)
{
    refill *x = *(refill **)dx_stream_impl(s);
    x->stops++;
}

static void refill_close(dx_stream *s) { (void)s; }

static const dx_stream_ops refill_ops = {
    .name = "refill", .read_start = refill_start, .read_stop = refill_stop,
    .close = refill_close};

static void refill_data(dx_stream *s, const uint8_t *p, size_t n, void *u)
{
    (void)p;
    refill *x = u;
    x->delivered += n;
    /* the implementation goes on pushing from inside the delivery */
    refill_push(s, x);
}

START_TEST(push_refused_inside_a_delivery_is_resumed)
{
    refill x = {.left = 20000};
    dx_stream *s;
    ck_assert_int_eq(dx_stream_new(&refill_ops, sizeof(refill *), &s), 0);
    *(refill **)dx_stream_impl(s) = &x;
    ck_assert_int_eq(dx_stream_set_high_water(s, 4096, 4096), 0);
    dx_stream_events ev = {.on_data = refill_data};
    ck_assert_int_eq(dx_stream_set_events(s, &ev, &x), 0);
    ck_assert_uint_eq(x.left, 0);
    ck_assert_uint_eq(x.delivered, 20000);
    ck_assert(!x.waiting || x.starts > 1);
    ck_assert_uint_eq(x.starts, x.stops + 1); /* they alternate */
    ck_assert_uint_gt(x.stops, 0);
    dx_stream_destroy(s);
    assert_no_leak();
}
END_TEST

Suite *stream_suite(void)
{
    Suite *s = suite_create("stream");
    TCase *tc = tcase_create("contract");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, event_order_data_end_finish_close, 0, H_KINDS);
    tcase_add_loop_test(tc, peer_destroy_gives_data_then_end_then_close, 0, H_KINDS);
    tcase_add_loop_test(tc, write_to_gone_peer_fails_once_with_epipe, 0, H_KINDS);
    tcase_add_loop_test(tc, destroy_inside_each_callback_is_safe, 0,
                        H_KINDS * N_DESTROY_EVENTS * 2);
    tcase_add_loop_test(tc, backpressure_bounds_memory_over_100mb, 0, H_KINDS);
    tcase_add_loop_test(tc, random_chunking_pausing_and_corking_lose_nothing, 0,
                        H_KINDS * PROP_SEEDS);
    tcase_add_loop_test(tc, half_close_in_each_direction, 0, H_KINDS * 2);
    tcase_add_loop_test(tc, writes_after_end_fail_clearly, 0, H_KINDS);
    tcase_add_loop_test(tc, bytes_before_a_consumer_are_delivered_first, 0, H_KINDS);
    tcase_add_loop_test(tc, unshift_while_paused_goes_first_and_not_after_end, 0, H_KINDS);
    tcase_add_loop_test(tc, zero_length_writes_are_not_errors, 0, H_KINDS);
    suite_add_tcase(s, tc);

    TCase *core = tcase_create("core");
    tcase_add_test(core, cork_coalesces_small_writes);
    tcase_add_test(core, high_water_marks_and_buffered_counts);
    tcase_add_test(core, write_limit_refuses_and_accepts_nothing);
    tcase_add_test(core, state_flags_follow_the_lifecycle);
    tcase_add_test(core, error_before_attach_is_replayed);
    tcase_add_test(core, destroy_with_error_reports_it);
    tcase_add_test(core, end_during_own_write_shuts_down_when_it_returns);
    tcase_add_test(core, push_refused_inside_a_delivery_is_resumed);
    suite_add_tcase(s, core);
    return s;
}
