/*
 * The byte filters (include/duplex/filter.h, tap.h, netem.h): each
 * behaviour on its own over a memory pair, the stream contract across a
 * filter, and the filters stacked under the TLS filter (TLS over 1-byte
 * fragments, over a 9600-baud line in driven time, tapped on both sides,
 * and failing as it should on flipped bits, truncation, a stall and a
 * reset).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ---- a filter between the test and a memory pair --------------------------
 * DOWN: the test writes the upper stream, the far end of the pair reads.
 * UP: the test writes the far end, the upper stream reads. */

typedef struct fx {
    dx_filter *f;
    dx_stream *near, *far; /* near: the pair end the filter owns */
    h_rec up, fr;
    size_t live0;
} fx;

/* The tap's record: what crossed, per direction. */
typedef struct taplog {
    uint8_t bytes[2][65536];
    size_t len[2];
    unsigned calls[2], ends[2];
    bool gap;            /* an offset that did not follow the last one */
    size_t cuts[2][4096]; /* the offsets where each delivery ended */
    size_t ncuts[2];
    dx_filter *destroy;  /* destroy this filter in the first call */
    size_t flights[64];  /* bytes of consecutive same-direction deliveries */
    int flight_dir[64];
    size_t nflights;
} taplog;

static void tap_rec(dx_filter *f, unsigned dir, uint64_t off, const uint8_t *d, size_t n,
                    void *u)
{
    (void)f;
    taplog *t = u;
    int i = dir == DX_FILTER_DOWN ? 0 : 1;
    ck_assert(dir == DX_FILTER_DOWN || dir == DX_FILTER_UP);
    if (off != t->len[i])
        t->gap = true;
    if (!d) {
        ck_assert_uint_eq(n, 0);
        t->ends[i]++;
        return;
    }
    t->calls[i]++;
    if (t->len[i] + n <= sizeof(t->bytes[i]))
        memcpy(t->bytes[i] + t->len[i], d, n);
    t->len[i] += n;
    if (t->ncuts[i] < 4096)
        t->cuts[i][t->ncuts[i]++] = t->len[i];
    if (t->nflights && t->flight_dir[t->nflights - 1] == i)
        t->flights[t->nflights - 1] += n;
    else if (t->nflights < 64) {
        t->flight_dir[t->nflights] = i;
        t->flights[t->nflights++] = n;
    }
    if (t->destroy) {
        dx_filter *x = t->destroy;
        t->destroy = NULL;
        dx_filter_destroy(x);
    }
}

static void fx_open(fx *x, dx_filter *f, size_t live0)
{
    memset(x, 0, sizeof(*x));
    x->f = f;
    x->live0 = live0;
    dx_stream *a;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &x->far), 0);
    ck_assert_int_eq(dx_filter_attach(f, a), 0);
    x->near = a;
    x->up.keep_data = x->fr.keep_data = true;
    h_rec_attach(&x->up, dx_filter_upper(f));
    h_rec_attach(&x->fr, x->far);
}

static void fx_close(fx *x)
{
    dx_filter_destroy(x->f);
    dx_stream_destroy(x->far);
    h_rec_assert_clean(&x->up);
    h_rec_assert_clean(&x->fr);
    h_rec_free(&x->up);
    h_rec_free(&x->fr);
    ck_assert_msg(h_alloc_live() == x->live0, "%zu bytes leaked", h_alloc_live() - x->live0);
}

/* Drives a filter's clock to its deadlines until it has none, or until
 * limit; returns the time reached. */
static uint64_t drive(dx_filter *f, uint64_t limit)
{
    for (;;) {
        uint64_t d = dx_filter_deadline(f);
        if (d == DX_FILTER_NO_DEADLINE || d > limit)
            return h_fake_now;
        ck_assert_uint_ge(d, h_fake_now);
        h_fake_now = d;
        dx_filter_check_timeouts(f);
    }
}

/* ---- tap ------------------------------------------------------------------- */

START_TEST(tap_reports_each_direction_with_offsets)
{
    size_t live0 = h_alloc_live();
    static taplog t;
    memset(&t, 0, sizeof(t));
    dx_filter *f;
    ck_assert_int_eq(dx_tap_new(tap_rec, &t, &f), 0);
    ck_assert_str_eq(dx_filter_kind(f), "tap");
    ck_assert_ptr_eq(dx_filter_from_stream(dx_filter_upper(f)), f);
    ck_assert_ptr_eq(dx_filter_from_stream(dx_filter_lower(f)), f);
    ck_assert_str_eq(dx_stream_kind(dx_filter_upper(f)), "tap");
    fx x;
    fx_open(&x, f, live0);
    ck_assert_ptr_null(dx_filter_from_stream(x.far));
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), "hello", 5), 0);
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), " there", 6), 0);
    ck_assert_int_eq(dx_stream_write(x.far, "world!", 6), 0);
    ck_assert_uint_eq(t.len[0], 11);
    ck_assert_mem_eq(t.bytes[0], "hello there", 11);
    ck_assert_uint_eq(t.calls[0], 2);
    ck_assert_uint_eq(t.len[1], 6);
    ck_assert_mem_eq(t.bytes[1], "world!", 6);
    ck_assert(!t.gap);
    ck_assert_uint_eq(x.fr.len, 11);
    ck_assert_mem_eq(x.fr.data, "hello there", 11);
    ck_assert_uint_eq(x.up.len, 6);
    ck_assert_uint_eq(dx_filter_bytes_in(f, DX_FILTER_DOWN), 11);
    ck_assert_uint_eq(dx_filter_bytes_out(f, DX_FILTER_UP), 6);
    ck_assert_uint_eq(dx_filter_bytes_out(f, DX_FILTER_BOTH), 0);
    ck_assert_uint_eq(dx_filter_held(f, DX_FILTER_DOWN), 0);
    /* The ends cross too, once each, and both sides close cleanly. */
    ck_assert_int_eq(dx_stream_end(dx_filter_upper(f)), 0);
    ck_assert_uint_eq(t.ends[0], 1);
    ck_assert_uint_eq(x.fr.ends, 1);
    ck_assert_int_eq(dx_stream_end(x.far), 0);
    ck_assert_uint_eq(t.ends[1], 1);
    ck_assert_uint_eq(x.up.ends, 1);
    ck_assert_uint_eq(x.up.closes, 1);
    ck_assert_uint_eq(x.fr.closes, 1);
    ck_assert_uint_eq(x.up.errors + x.fr.errors, 0);
    ck_assert(!t.gap);
    fx_close(&x);
}
END_TEST

START_TEST(hexdump_formats_as_hexdump_c)
{
    uint8_t b[20];
    for (int i = 0; i < 20; i++)
        b[i] = (uint8_t)(0x41 + i);
    b[0] = 0x16;
    b[17] = 0xff;
    const char *want =
        "00000010  16 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |.BCDEFGHIJKLMNOP|\n"
        "00000020  51 ff 53 54                                       |Q.ST|\n";
    char out[256];
    size_t n = dx_hexdump(out, sizeof(out), b, sizeof(b), 16);
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_str_eq(out, want);
    /* Too small: cut, NUL-terminated, the full length returned. */
    char small[10];
    ck_assert_uint_eq(dx_hexdump(small, sizeof(small), b, sizeof(b), 16), strlen(want));
    ck_assert_str_eq(small, "00000010 ");
    ck_assert_uint_eq(dx_hexdump(NULL, 0, b, sizeof(b), 16), strlen(want));
    ck_assert_uint_eq(dx_hexdump(out, sizeof(out), NULL, 0, 0), 0);
    ck_assert_str_eq(out, "");
    /* Offsets past 32 bits take more digits. */
    n = dx_hexdump(out, sizeof(out), b, 1, 0x100000000ull);
    ck_assert_int_eq(strncmp(out, "100000000  16 ", 14), 0);
    ck_assert_uint_eq(n, strlen(out));
}
END_TEST

/* ---- fragment -------------------------------------------------------------- */

static const size_t fixed_sizes[] = {1, 7, 4096};

START_TEST(fragment_cuts_fixed_chunks)
{
    size_t size = fixed_sizes[_i], total = 10000;
    size_t live0 = h_alloc_live();
    dx_filter *f;
    dx_fragment_opts o = {.dirs = DX_FILTER_BOTH, .min = size, .max = size};
    ck_assert_int_eq(dx_fragment_new(&o, &f), 0);
    fx x;
    fx_open(&x, f, live0);
    x.fr.verify = x.up.verify = true;
    x.fr.verify_seed = 1;
    x.up.verify_seed = 2;
    uint8_t *buf = malloc(total);
    h_gen_fill(1, 0, buf, total);
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), buf, total), 0);
    h_gen_fill(2, 0, buf, total);
    ck_assert_int_eq(dx_stream_write(x.far, buf, total), 0);
    free(buf);
    for (int k = 0; k < 2; k++) {
        h_rec *r = k ? &x.up : &x.fr;
        ck_assert_uint_eq(r->received, total);
        ck_assert_uint_eq(r->max_data_event, size);
        ck_assert_uint_eq(r->data_events, (total + size - 1) / size);
    }
    fx_close(&x);
}
END_TEST

/* Runs 3000 bytes through a random fragmenter in writes of write_size,
 * recording where deliveries ended. */
static void random_cuts(uint64_t seed, size_t write_size, taplog *t)
{
    size_t live0 = h_alloc_live();
    memset(t, 0, sizeof(*t));
    dx_filter *f;
    dx_fragment_opts o = {.dirs = DX_FILTER_DOWN, .min = 3, .max = 40, .seed = seed};
    ck_assert_int_eq(dx_fragment_new(&o, &f), 0);
    ck_assert_int_eq(dx_filter_set_tap(f, tap_rec, t), 0);
    fx x;
    fx_open(&x, f, live0);
    uint8_t buf[3000];
    h_gen_fill(5, 0, buf, sizeof(buf));
    for (size_t off = 0; off < sizeof(buf); off += write_size)
        ck_assert_int_ge(dx_stream_write(dx_filter_upper(f), buf + off,
                                         write_size < sizeof(buf) - off ? write_size
                                                                         : sizeof(buf) - off),
                         0);
    ck_assert_uint_eq(x.fr.received, sizeof(buf));
    ck_assert_mem_eq(x.fr.data, buf, sizeof(buf));
    /* The other direction is untouched: one delivery. */
    ck_assert_int_eq(dx_stream_write(x.far, buf, 500), 0);
    ck_assert_uint_eq(x.up.data_events, 1);
    fx_close(&x);
}

START_TEST(fragment_random_cuts_follow_the_seed)
{
    static taplog a, b, c, d;
    random_cuts(42, 3000, &a);
    random_cuts(42, 3000, &b);
    random_cuts(43, 3000, &c);
    /* Same seed, same cuts; a chunk never over max, under min only at the
     * end of the bytes. */
    ck_assert_uint_eq(a.ncuts[0], b.ncuts[0]);
    ck_assert_mem_eq(a.cuts[0], b.cuts[0], a.ncuts[0] * sizeof(size_t));
    size_t prev = 0;
    bool saw_min = false, saw_max = false;
    for (size_t k = 0; k < a.ncuts[0]; k++) {
        size_t n = a.cuts[0][k] - prev;
        prev = a.cuts[0][k];
        ck_assert_uint_le(n, 40);
        if (k + 1 < a.ncuts[0])
            ck_assert_uint_ge(n, 3);
        saw_min |= n < 10;
        saw_max |= n > 33;
    }
    ck_assert(saw_min && saw_max);
    /* Another seed, other cuts. */
    ck_assert(a.ncuts[0] != c.ncuts[0] ||
              memcmp(a.cuts[0], c.cuts[0], a.ncuts[0] * sizeof(size_t)) != 0);
    /* Writes of 1000: every boundary of the single write is kept, and the
     * ends of the writes are boundaries too. */
    random_cuts(42, 1000, &d);
    size_t k = 0;
    for (size_t m = 0; m < d.ncuts[0]; m++) {
        if (k < a.ncuts[0] && d.cuts[0][m] == a.cuts[0][k])
            k++;
        else
            ck_assert(d.cuts[0][m] == 1000 || d.cuts[0][m] == 2000);
    }
    ck_assert_uint_eq(k, a.ncuts[0]);
}
END_TEST

/* ---- delay and throttle ---------------------------------------------------- */

static void note_deadline(dx_filter *f, uint64_t when, void *arg)
{
    (void)f;
    uint64_t *slot = arg;
    slot[0]++;
    slot[1] = when;
}

START_TEST(delay_holds_bytes_for_the_latency)
{
    size_t live0 = h_alloc_live();
    dx_filter *f;
    ck_assert_int_eq(dx_delay_new(DX_FILTER_BOTH, 250, &f), 0);
    h_fake_now = 1000;
    ck_assert_int_eq(dx_filter_set_clock(f, h_fake_clock, NULL), 0);
    uint64_t told[2] = {0, 0};
    ck_assert_int_eq(dx_filter_set_deadline_hook(f, note_deadline, told), 0);
    ck_assert_int_eq(dx_filter_set_deadline_hook(f, note_deadline, told), DX_ESTATE);
    fx x;
    fx_open(&x, f, live0);
    ck_assert_uint_eq(dx_filter_deadline(f), DX_FILTER_NO_DEADLINE);
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), "abc", 3), 0);
    ck_assert_uint_eq(x.fr.received, 0);
    ck_assert_uint_eq(dx_filter_held(f, DX_FILTER_DOWN), 3);
    ck_assert_uint_eq(dx_filter_deadline(f), 1250);
    ck_assert_uint_eq(told[1], 1250);
    h_fake_now = 1100;
    ck_assert_int_eq(dx_stream_write(x.far, "xy", 2), 0); /* due at 1350 */
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), "d", 1), 0); /* due at 1350 */
    h_fake_now = 1249;
    dx_filter_check_timeouts(f);
    ck_assert_uint_eq(x.fr.received, 0);
    h_fake_now = 1250;
    dx_filter_check_timeouts(f);
    ck_assert_uint_eq(x.fr.received, 3);
    ck_assert_uint_eq(x.up.received, 0);
    ck_assert_uint_eq(dx_filter_deadline(f), 1350);
    ck_assert_uint_eq(told[1], 1350);
    h_fake_now = 1400; /* late: everything due goes at once */
    dx_filter_check_timeouts(f);
    ck_assert_uint_eq(x.fr.received, 4);
    ck_assert_mem_eq(x.fr.data, "abcd", 4);
    ck_assert_uint_eq(x.up.received, 2);
    ck_assert_uint_eq(dx_filter_deadline(f), DX_FILTER_NO_DEADLINE);
    ck_assert_uint_eq(told[1], DX_FILTER_NO_DEADLINE);
    /* The end follows the bytes; the upper stream, done both ways, closes
     * cleanly while bytes it wrote are still held, and they still go. */
    ck_assert_int_eq(dx_stream_end(x.far), 0);
    ck_assert_uint_eq(x.up.ends, 1);
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), "efg", 3), 0);
    ck_assert_int_eq(dx_stream_end(dx_filter_upper(f)), 0);
    ck_assert_uint_eq(x.up.closes, 1);
    ck_assert_uint_eq(x.fr.ends, 0);
    ck_assert_uint_eq(drive(f, UINT64_MAX), 1650);
    ck_assert_uint_eq(x.fr.received, 7);
    ck_assert_uint_eq(x.fr.ends, 1);
    ck_assert_uint_eq(x.fr.closes, 1);
    ck_assert_uint_eq(x.up.errors + x.fr.errors, 0);
    unsigned calls = (unsigned)told[0];
    fx_close(&x);
    ck_assert_uint_eq(told[1], DX_FILTER_NO_DEADLINE);
    ck_assert_uint_ge(told[0], calls);
}
END_TEST

START_TEST(throttle_paces_a_9600_baud_line)
{
    size_t live0 = h_alloc_live();
    dx_filter *f;
    ck_assert_uint_eq(DX_BAUD_8N1(9600), 960);
    ck_assert_int_eq(dx_throttle_new(DX_FILTER_DOWN, DX_BAUD_8N1(9600), &f), 0);
    ck_assert_str_eq(dx_filter_kind(f), "throttle");
    h_fake_now = 0;
    ck_assert_int_eq(dx_filter_set_clock(f, h_fake_clock, NULL), 0);
    fx x;
    fx_open(&x, f, live0);
    uint8_t buf[1920];
    h_gen_fill(9, 0, buf, sizeof(buf));
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), buf, sizeof(buf)), 0);
    ck_assert_uint_eq(x.fr.received, 0);
    ck_assert_uint_eq(dx_filter_deadline(f), 2); /* ceil(1000 / 960) */
    ck_assert_uint_eq(drive(f, 500), 500);
    ck_assert_uint_eq(x.fr.received, 480);
    /* Exactly one second a 960 bytes, with no drift. */
    ck_assert_uint_eq(drive(f, UINT64_MAX), 2000);
    ck_assert_uint_eq(x.fr.received, 1920);
    ck_assert_mem_eq(x.fr.data, buf, sizeof(buf));
    /* After a pause of the line, a byte takes its own time again. */
    h_fake_now = 5000;
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), "z", 1), 0);
    ck_assert_uint_eq(dx_filter_deadline(f), 5002);
    /* The other direction is not throttled. */
    ck_assert_int_eq(dx_stream_write(x.far, buf, 1000), 0);
    ck_assert_uint_eq(x.up.received, 1000);
    fx_close(&x);
}
END_TEST

/* A slow line and a small capacity push back on the writer, who gets
 * DX_FULL and then on_drain; a paused reader stops delivery and its
 * deadline until it resumes. */
START_TEST(throttle_backpressure_reaches_the_writer)
{
    size_t live0 = h_alloc_live();
    dx_filter *f;
    ck_assert_int_eq(dx_throttle_new(DX_FILTER_BOTH, 1000, &f), 0);
    ck_assert_int_eq(dx_filter_set_capacity(f, 0), DX_EINVAL);
    ck_assert_int_eq(dx_filter_set_capacity(f, 100), 0);
    h_fake_now = 0;
    ck_assert_int_eq(dx_filter_set_clock(f, h_fake_clock, NULL), 0);
    fx x;
    fx_open(&x, f, live0);
    dx_stream *up = dx_filter_upper(f);
    ck_assert_int_eq(dx_stream_set_high_water(up, 16384, 100), 0);
    uint8_t buf[1000];
    h_gen_fill(3, 0, buf, sizeof(buf));
    ck_assert_int_eq(dx_stream_write(up, buf, sizeof(buf)), DX_FULL);
    ck_assert_uint_eq(dx_filter_held(f, DX_FILTER_DOWN), 100);
    ck_assert_uint_eq(dx_stream_write_buffered(up), 900);
    /* More room lets the writer go on at once. */
    ck_assert_int_eq(dx_filter_set_capacity(f, 150), 0);
    ck_assert_uint_eq(dx_filter_held(f, DX_FILTER_DOWN), 150);
    ck_assert_uint_eq(dx_stream_write_buffered(up), 850);
    ck_assert_int_eq(dx_filter_set_capacity(f, 100), 0);
    ck_assert_uint_eq(drive(f, 500), 500);
    ck_assert_uint_eq(x.fr.received, 500);
    ck_assert_uint_eq(x.up.drains, 0);
    ck_assert_uint_le(dx_filter_held(f, DX_FILTER_DOWN), 100);
    drive(f, UINT64_MAX);
    ck_assert_uint_eq(x.fr.received, 1000);
    ck_assert_mem_eq(x.fr.data, buf, sizeof(buf));
    /* A paused reader with a read mark of 0 takes one delivery into its
     * buffer, then the filter holds the rest and tells no deadline until
     * it resumes; then what fell due meanwhile comes at once. */
    ck_assert_int_eq(dx_stream_set_high_water(up, 0, 100), 0);
    ck_assert_int_eq(dx_stream_pause(up), 0);
    ck_assert_int_eq(dx_stream_write(x.far, buf, 50), 0);
    h_fake_now += 1000;
    dx_filter_check_timeouts(f);
    ck_assert_uint_eq(dx_stream_read_buffered(up), 50);
    ck_assert_int_eq(dx_stream_write(x.far, buf + 50, 50), 0);
    ck_assert_uint_eq(dx_filter_deadline(f), DX_FILTER_NO_DEADLINE);
    h_fake_now += 5000;
    dx_filter_check_timeouts(f);
    ck_assert_uint_eq(x.up.received, 0);
    ck_assert_uint_eq(dx_filter_held(f, DX_FILTER_UP), 50);
    ck_assert_int_eq(dx_stream_resume(up), 0);
    ck_assert_uint_eq(x.up.received, 100);
    ck_assert_mem_eq(x.up.data, buf, 100);
    ck_assert_uint_eq(x.up.drains, 1);
    fx_close(&x);
}
END_TEST

/* ---- fault ----------------------------------------------------------------- */

static void add_fault(dx_filter *f, dx_fault_kind kind, unsigned dir, uint64_t off,
                      uint64_t len, const char *data, uint8_t mask, uint64_t ms)
{
    dx_fault ft = {.kind = kind, .dir = dir, .offset = off, .len = len,
                   .data = (const uint8_t *)data, .mask = mask, .ms = ms};
    ck_assert_int_eq(dx_fault_add(f, &ft), 0);
}

/* A fault filter with one fault of kind at off, between the test and a
 * memory pair. */
static dx_filter *fx_one_fault(fx *x, dx_fault_kind kind, unsigned dir, uint64_t off)
{
    size_t live0 = h_alloc_live();
    dx_filter *f;
    ck_assert_int_eq(dx_fault_new(1, &f), 0);
    add_fault(f, kind, dir, off, 0, NULL, 0, 0);
    fx_open(x, f, live0);
    return f;
}

/* The same damage whatever the writes: in one piece (_i 0) or byte by
 * byte (_i 1). */
START_TEST(fault_flips_drops_and_injects_at_offsets)
{
    size_t live0 = h_alloc_live();
    dx_filter *f;
    ck_assert_int_eq(dx_fault_new(7, &f), 0);
    add_fault(f, DX_FAULT_FLIP, DX_FILTER_DOWN, 3, 0, NULL, 0x20, 0);
    add_fault(f, DX_FAULT_DROP, DX_FILTER_DOWN, 10, 5, NULL, 0, 0);
    add_fault(f, DX_FAULT_INJECT, DX_FILTER_DOWN, 20, 3, "XYZ", 0, 0);
    add_fault(f, DX_FAULT_INJECT, DX_FILTER_DOWN, 20, 2, "!?", 0, 0);
    add_fault(f, DX_FAULT_FLIP, DX_FILTER_UP, 0, 0, NULL, 0, 0); /* a random bit */
    fx x;
    fx_open(&x, f, live0);
    const char *in = "abcdefghijklmnopqrstuvwxyz";
    if (_i == 0) {
        ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), in, 26), 0);
    } else {
        for (int k = 0; k < 26; k++)
            ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), in + k, 1), 0);
    }
    const char *want = "abcDefghijpqrstXYZ!?uvwxyz";
    ck_assert_uint_eq(x.fr.received, strlen(want));
    ck_assert_mem_eq(x.fr.data, want, strlen(want));
    ck_assert_uint_eq(dx_filter_bytes_in(f, DX_FILTER_DOWN), 26);
    ck_assert_uint_eq(dx_filter_bytes_out(f, DX_FILTER_DOWN), 26);
    ck_assert_int_eq(dx_stream_write(x.far, "A", 1), 0);
    ck_assert_uint_eq(x.up.received, 1);
    uint8_t diff = (uint8_t)(x.up.data[0] ^ 'A');
    ck_assert(diff && !(diff & (diff - 1))); /* one bit */
    /* Faults behind the offset are refused. */
    dx_fault late = {.kind = DX_FAULT_FLIP, .dir = DX_FILTER_DOWN, .offset = 5};
    ck_assert_int_eq(dx_fault_add(f, &late), DX_ESTATE);
    fx_close(&x);
}
END_TEST

START_TEST(fault_random_bytes_follow_the_seed)
{
    uint8_t got[3][16];
    for (int k = 0; k < 3; k++) {
        size_t live0 = h_alloc_live();
        dx_filter *f;
        ck_assert_int_eq(dx_fault_new(k == 2 ? 100 : 99, &f), 0);
        add_fault(f, DX_FAULT_INJECT, DX_FILTER_UP, 0, 16, NULL, 0, 0);
        fx x;
        fx_open(&x, f, live0);
        ck_assert_uint_eq(x.up.received, 16); /* offset 0 is reached: at once */
        ck_assert_int_eq(dx_stream_write(x.far, "q", 1), 0);
        ck_assert_uint_eq(x.up.received, 17);
        memcpy(got[k], x.up.data, 16);
        ck_assert_int_eq(x.up.data[16], 'q');
        fx_close(&x);
    }
    ck_assert_mem_eq(got[0], got[1], 16);
    ck_assert(memcmp(got[0], got[2], 16) != 0);
}
END_TEST

START_TEST(fault_truncate_ends_one_direction)
{
    fx x;
    dx_filter *f = fx_one_fault(&x, DX_FAULT_TRUNCATE, DX_FILTER_DOWN, 5);
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), "0123456789", 10), 0);
    ck_assert_uint_eq(x.fr.received, 5);
    ck_assert_uint_eq(x.fr.ends, 1);
    /* Later writes are swallowed; the other direction goes on. */
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), "more", 4), 0);
    ck_assert_uint_eq(x.fr.received, 5);
    ck_assert_uint_eq(dx_filter_bytes_in(f, DX_FILTER_DOWN), 14);
    ck_assert_int_eq(dx_stream_write(x.far, "back", 4), 0);
    ck_assert_uint_eq(x.up.received, 4);
    ck_assert_uint_eq(x.up.errors + x.fr.errors, 0);
    fx_close(&x);
}
END_TEST

START_TEST(fault_end_hangs_up_both_ways)
{
    fx x;
    dx_filter *f = fx_one_fault(&x, DX_FAULT_END, DX_FILTER_DOWN, 4);
    ck_assert_int_eq(dx_stream_write(x.far, "up", 2), 0);
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), "abcdefg", 7), 0);
    ck_assert_uint_eq(x.fr.received, 4);
    ck_assert_uint_eq(x.fr.ends, 1);
    ck_assert_uint_eq(x.up.received, 2);
    ck_assert_uint_eq(x.up.ends, 1);
    ck_assert_int_eq(dx_stream_write(x.far, "lost", 4), 0);
    ck_assert_uint_eq(x.up.received, 2);
    ck_assert_uint_eq(x.up.errors + x.fr.errors, 0);
    /* Both ends finish: everything closes cleanly. */
    ck_assert_int_eq(dx_stream_end(dx_filter_upper(f)), 0);
    ck_assert_int_eq(dx_stream_end(x.far), 0);
    ck_assert_uint_eq(x.up.closes, 1);
    ck_assert_uint_eq(x.fr.closes, 1);
    fx_close(&x);
}
END_TEST

START_TEST(fault_reset_fails_both_streams)
{
    fx x;
    dx_filter *f = fx_one_fault(&x, DX_FAULT_RESET, DX_FILTER_UP, 3);
    ck_assert_int_eq(dx_stream_write(x.far, "abcdef", 6), 0);
    ck_assert_uint_eq(x.up.received, 3);
    ck_assert_uint_eq(x.up.errors, 1);
    ck_assert_int_eq(x.up.error_code, DX_ECONNRESET);
    ck_assert_str_eq(x.up.error_name, "ECONNRESET");
    ck_assert_str_eq(dx_error_layer(dx_stream_error(dx_filter_upper(f))), "fault");
    ck_assert_uint_eq(x.up.closes, 1);
    /* The lower stream failed too, and with it the transport: the far end
     * sees its peer go. */
    ck_assert(dx_stream_state(dx_filter_lower(f)) & DX_STREAM_ERRORED);
    ck_assert_uint_eq(x.fr.ends, 1);
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), "x", 1), DX_EDESTROYED);
    fx_close(&x);
}
END_TEST

START_TEST(fault_stall_holds_then_resumes)
{
    size_t live0 = h_alloc_live();
    dx_filter *f;
    ck_assert_int_eq(dx_fault_new(1, &f), 0);
    add_fault(f, DX_FAULT_STALL, DX_FILTER_DOWN, 2, 0, NULL, 0, 100);
    add_fault(f, DX_FAULT_STALL, DX_FILTER_DOWN, 4, 0, NULL, 0, UINT64_MAX - 10); /* for ever */
    h_fake_now = 50;
    ck_assert_int_eq(dx_filter_set_clock(f, h_fake_clock, NULL), 0);
    fx x;
    fx_open(&x, f, live0);
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), "abcdef", 6), 0);
    ck_assert_uint_eq(x.fr.received, 2);
    ck_assert_uint_eq(dx_filter_deadline(f), 150);
    h_fake_now = 149;
    dx_filter_check_timeouts(f);
    ck_assert_uint_eq(x.fr.received, 2);
    h_fake_now = 150;
    dx_filter_check_timeouts(f);
    ck_assert_uint_eq(x.fr.received, 4);
    ck_assert_uint_eq(dx_filter_deadline(f), DX_FILTER_NO_DEADLINE);
    h_fake_now = 1000000;
    dx_filter_check_timeouts(f);
    ck_assert_uint_eq(x.fr.received, 4);
    ck_assert_uint_eq(dx_filter_held(f, DX_FILTER_DOWN), 2);
    fx_close(&x);
}
END_TEST

START_TEST(bad_arguments_are_refused)
{
    dx_filter *f = (dx_filter *)1;
    dx_fragment_opts o = {.dirs = DX_FILTER_BOTH, .min = 0, .max = 4};
    ck_assert_int_eq(dx_fragment_new(&o, &f), DX_EINVAL);
    ck_assert_ptr_null(f);
    o.min = 5;
    ck_assert_int_eq(dx_fragment_new(&o, &f), DX_EINVAL);
    o.min = 1;
    o.dirs = 4;
    ck_assert_int_eq(dx_fragment_new(&o, &f), DX_EINVAL);
    ck_assert_int_eq(dx_fragment_new(NULL, &f), DX_EINVAL);
    ck_assert_int_eq(dx_throttle_new(DX_FILTER_BOTH, 0, &f), DX_EINVAL);
    ck_assert_int_eq(dx_throttle_new(0, 10, &f), DX_EINVAL);
    ck_assert_int_eq(dx_delay_new(8, 10, &f), DX_EINVAL);
    ck_assert_int_eq(dx_delay_new(DX_FILTER_UP, UINT64_MAX, &f), DX_EINVAL);
    ck_assert_int_eq(dx_tap_new(NULL, NULL, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_fault_new(0, NULL), DX_EINVAL);
    ck_assert_ptr_null(dx_filter_upper(NULL));
    ck_assert_str_eq(dx_filter_kind(NULL), "");
    ck_assert_uint_eq(dx_filter_deadline(NULL), DX_FILTER_NO_DEADLINE);
    dx_filter_check_timeouts(NULL);
    dx_filter_destroy(NULL);

    size_t live0 = h_alloc_live();
    dx_filter *tap, *fault;
    ck_assert_int_eq(dx_tap_new(NULL, NULL, &tap), 0);
    ck_assert_int_eq(dx_fault_new(0, &fault), 0);
    dx_fault ft = {.kind = DX_FAULT_FLIP, .dir = DX_FILTER_DOWN};
    ck_assert_int_eq(dx_fault_add(tap, &ft), DX_EINVAL);
    ft.dir = DX_FILTER_BOTH;
    ck_assert_int_eq(dx_fault_add(fault, &ft), DX_EINVAL);
    ft.dir = DX_FILTER_UP;
    ft.kind = 99;
    ck_assert_int_eq(dx_fault_add(fault, &ft), DX_EINVAL);
    ft.kind = DX_FAULT_DROP;
    ck_assert_int_eq(dx_fault_add(fault, &ft), DX_EINVAL);
    ft.kind = DX_FAULT_INJECT;
    ft.len = (1u << 20) + 1;
    ck_assert_int_eq(dx_fault_add(fault, &ft), DX_EINVAL);
    ck_assert_int_eq(dx_fault_add(fault, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_filter_attach(tap, dx_filter_upper(tap)), DX_EINVAL);
    ck_assert_int_eq(dx_filter_attach(tap, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_filter_attach(tap, dx_filter_upper(fault)), 0);
    ck_assert_int_eq(dx_filter_attach(tap, dx_filter_lower(fault)), DX_EINVAL);
    dx_filter_destroy(tap);
    dx_filter_destroy(fault);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* ---- the contract across a filter ------------------------------------------ */

/* The tap destroys the filter in its first call: the bytes are not
 * delivered, both streams and the transport close, nothing leaks. */
START_TEST(destroy_from_the_tap_is_safe)
{
    size_t live0 = h_alloc_live();
    static taplog t;
    memset(&t, 0, sizeof(t));
    dx_filter *f;
    ck_assert_int_eq(dx_tap_new(tap_rec, &t, &f), 0);
    t.destroy = f;
    fx x;
    fx_open(&x, f, live0);
    ck_assert_int_eq(dx_stream_write(x.far, "boom", 4), 0);
    ck_assert_uint_eq(t.calls[1], 1);
    ck_assert_uint_eq(x.up.received, 0);
    ck_assert_uint_eq(x.up.closes, 1);
    ck_assert_uint_eq(x.fr.ends, 1);
    h_rec_assert_clean(&x.up);
    dx_stream_destroy(x.far);
    h_rec_assert_clean(&x.fr);
    h_rec_free(&x.up);
    h_rec_free(&x.fr);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* The reader destroys its stream from on_data, in each filter kind: the
 * other side is aborted (the transport sees its peer go), no event comes
 * after close, and the filter is released later. */
START_TEST(destroy_from_data_aborts_the_other_side)
{
    size_t live0 = h_alloc_live();
    dx_filter *f = NULL;
    dx_fragment_opts o = {.dirs = DX_FILTER_BOTH, .min = 2, .max = 2};
    switch (_i) {
    case 0: ck_assert_int_eq(dx_tap_new(NULL, NULL, &f), 0); break;
    case 1: ck_assert_int_eq(dx_fragment_new(&o, &f), 0); break;
    case 2: ck_assert_int_eq(dx_delay_new(DX_FILTER_BOTH, 0, &f), 0); break;
    case 3: ck_assert_int_eq(dx_throttle_new(DX_FILTER_BOTH, 1000000, &f), 0); break;
    default: ck_assert_int_eq(dx_fault_new(0, &f), 0); break;
    }
    h_fake_now = 0;
    dx_filter_set_clock(f, h_fake_clock, NULL);
    fx x;
    fx_open(&x, f, live0);
    x.up.destroy_on = H_EV_DATA;
    ck_assert_int_eq(dx_stream_write(x.far, "abcdef", 6), 0);
    drive(f, UINT64_MAX);
    ck_assert(x.up.destroyed);
    ck_assert_uint_eq(x.up.closes, 1);
    ck_assert_uint_eq(x.fr.ends, 1);
    ck_assert(dx_stream_state(dx_filter_lower(f)) & DX_STREAM_CLOSED);
    ck_assert_int_eq(dx_stream_write(x.far, "x", 1), DX_EPIPE);
    fx_close(&x);
}
END_TEST

/* Corked writes on the upper stream reach the far side as one delivery:
 * cork crosses a filter. */
START_TEST(corked_writes_cross_as_one)
{
    size_t live0 = h_alloc_live();
    static taplog t;
    memset(&t, 0, sizeof(t));
    dx_filter *f;
    ck_assert_int_eq(dx_tap_new(tap_rec, &t, &f), 0);
    fx x;
    fx_open(&x, f, live0);
    dx_stream *up = dx_filter_upper(f);
    dx_stream_cork(up);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(dx_stream_write(up, "abc", 3), 0);
    ck_assert_uint_eq(x.fr.received, 0);
    dx_stream_uncork(up);
    ck_assert_uint_eq(t.calls[0], 1);
    ck_assert_uint_eq(x.fr.data_events, 1);
    ck_assert_uint_eq(x.fr.received, 9);
    fx_close(&x);
}
END_TEST

/* A failure of the transport reaches the reader above once, with the
 * transport's code and layer, then the close. */
START_TEST(transport_error_crosses_once)
{
    size_t live0 = h_alloc_live();
    dx_filter *f;
    ck_assert_int_eq(dx_delay_new(DX_FILTER_BOTH, 10, &f), 0);
    fx x;
    fx_open(&x, f, live0);
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), "held", 4), 0);
    ck_assert_int_eq(dx_pair_inject_error(x.near, DX_EIO), 0);
    ck_assert_uint_eq(x.up.errors, 1);
    ck_assert_int_eq(x.up.error_code, DX_EIO);
    ck_assert_str_eq(dx_error_layer(dx_stream_error(dx_filter_upper(f))), "pair");
    ck_assert_uint_eq(dx_filter_held(f, DX_FILTER_DOWN), 0);
    ck_assert_uint_eq(x.up.closes, 1);
    ck_assert_uint_eq(dx_filter_deadline(f), DX_FILTER_NO_DEADLINE);
    fx_close(&x);
}
END_TEST

static void tell(dx_filter *f, uint64_t when, void *arg)
{
    (void)f;
    uint64_t *slot = arg;
    slot[0]++;
    slot[1] = when;
}

/* Once both streams closed cleanly the deadline hook gets its last call
 * and no hook can be set any more. */
START_TEST(deadline_hook_last_call_on_clean_close)
{
    size_t live0 = h_alloc_live();
    dx_filter *f;
    ck_assert_int_eq(dx_delay_new(DX_FILTER_BOTH, 30, &f), 0);
    h_fake_now = 0;
    ck_assert_int_eq(dx_filter_set_clock(f, h_fake_clock, NULL), 0);
    uint64_t told[2] = {0, 0};
    ck_assert_int_eq(dx_filter_set_deadline_hook(f, tell, told), 0);
    fx x;
    fx_open(&x, f, live0);
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(f), "q", 1), 0);
    ck_assert_uint_eq(told[1], 30);
    ck_assert_int_eq(dx_stream_end(dx_filter_upper(f)), 0);
    ck_assert_int_eq(dx_stream_end(x.far), 0);
    drive(f, UINT64_MAX);
    ck_assert_uint_eq(h_fake_now, 30);
    ck_assert(dx_stream_state(dx_filter_upper(f)) & DX_STREAM_CLOSED);
    ck_assert(dx_stream_state(dx_filter_lower(f)) & DX_STREAM_CLOSED);
    ck_assert_uint_eq(told[1], DX_FILTER_NO_DEADLINE);
    uint64_t calls = told[0];
    ck_assert_int_eq(dx_filter_set_deadline_hook(f, tell, told), DX_ESTATE);
    fx_close(&x);
    ck_assert_uint_eq(told[0], calls);
    ck_assert_uint_eq(x.up.errors + x.fr.errors, 0);
}
END_TEST

/* Every allocation of a filter's making and traffic failing in turn ends
 * in success or a clean error, once, and nothing leaks; for each kind. */
START_TEST(allocation_failures_end_cleanly)
{
    bool succeeded = false;
    for (long n = 0; n < 200 && !succeeded; n++) {
        size_t live0 = h_alloc_live();
        h_fake_now = 0;
        h_alloc_fail_from(n);
        dx_stream *a = NULL, *b = NULL;
        dx_filter *f = NULL;
        h_rec up = {0}, fr = {0};
        dx_fragment_opts o = {.dirs = DX_FILTER_BOTH, .min = 1, .max = 9, .seed = 3};
        int rc = dx_pair_new(NULL, &a, &b);
        if (rc == 0) {
            switch (_i) {
            case 0: rc = dx_tap_new(NULL, NULL, &f); break;
            case 1: rc = dx_fragment_new(&o, &f); break;
            case 2: rc = dx_delay_new(DX_FILTER_BOTH, 5, &f); break;
            case 3: rc = dx_throttle_new(DX_FILTER_BOTH, 100, &f); break;
            default: rc = dx_fault_new(3, &f); break;
            }
        }
        if (rc == 0 && _i == 4) {
            dx_fault ft = {.kind = DX_FAULT_INJECT, .dir = DX_FILTER_DOWN, .offset = 2,
                           .len = 3, .data = (const uint8_t *)"XYZ"};
            rc = dx_fault_add(f, &ft);
        }
        if (rc == 0) {
            dx_filter_set_clock(f, h_fake_clock, NULL);
            h_rec_attach(&up, dx_filter_upper(f));
            h_rec_attach(&fr, b);
            rc = dx_filter_attach(f, a);
            a = NULL;
            if (rc == 0 && dx_stream_write(dx_filter_upper(f), "hello", 5) >= 0 &&
                dx_stream_write(b, "world", 5) >= 0 && dx_stream_end(dx_filter_upper(f)) == 0 &&
                dx_stream_end(b) == 0) {
                drive(f, UINT64_MAX);
                succeeded = fr.received == (_i == 4 ? 8u : 5u) && up.received == 5 &&
                            up.closes && fr.closes && !up.errors && !fr.errors;
            }
            ck_assert_uint_le(up.errors, 1);
            ck_assert_uint_le(fr.errors, 1);
        }
        h_alloc_fail_from(-1);
        dx_filter_destroy(f);
        dx_stream_destroy(a);
        dx_stream_destroy(b);
        h_rec_assert_clean(&up);
        h_rec_assert_clean(&fr);
        h_rec_free(&up);
        h_rec_free(&fr);
        ck_assert_msg(h_alloc_live() == live0, "n=%ld: %zu bytes leaked", n,
                      h_alloc_live() - live0);
    }
    ck_assert(succeeded);
}
END_TEST

/* Destroys a filter in one event of a recorder (r->ctx). */
typedef struct destroy_at {
    dx_filter *f;
    char ev;
} destroy_at;

static void destroy_filter_on(h_rec *r, char ev)
{
    destroy_at *d = r->ctx;
    if (ev == d->ev && d->f) {
        dx_filter *f = d->f;
        d->f = NULL;
        dx_filter_destroy(f);
    }
}

static const char destroy_events[] = {H_EV_DATA, H_EV_END, H_EV_FINISH, H_EV_ERROR, H_EV_CLOSE};

/* dx_filter_destroy() from inside each event of the upper stream's
 * consumer: the event is the last but close, close comes once, the far
 * end sees its peer go, nothing leaks. */
START_TEST(filter_destroy_inside_each_event)
{
    size_t live0 = h_alloc_live();
    char ev = destroy_events[_i];
    dx_filter *f;
    ck_assert_int_eq(dx_delay_new(DX_FILTER_BOTH, 0, &f), 0);
    h_fake_now = 0;
    dx_filter_set_clock(f, h_fake_clock, NULL);
    h_rec up = {0}, fr = {0};
    destroy_at at = {.f = f, .ev = ev};
    up.ctx = &at;
    up.on_event = destroy_filter_on;
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_filter_attach(f, a), 0);
    h_rec_attach(&up, dx_filter_upper(f));
    h_rec_attach(&fr, b);
    if (ev == H_EV_ERROR) {
        ck_assert_int_eq(dx_pair_inject_error(a, DX_EIO), 0);
    } else {
        ck_assert_int_eq(dx_stream_write(b, "data", 4), 0);
        ck_assert_int_eq(dx_stream_end(b), 0);
        if (at.f) /* not yet destroyed (in on_finish or on_close) */
            ck_assert_int_eq(dx_stream_end(dx_filter_upper(f)), 0);
    }
    ck_assert_ptr_null(at.f); /* it ran */
    ck_assert_uint_eq(up.closes, 1);
    ck_assert_int_eq(up.log[up.nlog - 1], H_EV_CLOSE);
    if (ev != H_EV_CLOSE)
        ck_assert_int_eq(up.log[up.nlog - 2], ev);
    ck_assert(fr.ends || fr.errors || fr.closes);
    dx_stream_destroy(b);
    h_rec_assert_clean(&up);
    h_rec_assert_clean(&fr);
    h_rec_free(&up);
    h_rec_free(&fr);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* ---- stacked under TLS ----------------------------------------------------- */

static dx_pki_cert *ca, *leaf;

static void make_pki(void)
{
    static const char *const dns[] = {"localhost", NULL};
    dx_pki_opts o = {.key_type = DX_PKI_EC_P256, .common_name = "Filters CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &o, &ca, NULL));
    dx_pki_opts l = {.common_name = "server", .dns_names = dns,
                     .ext_key_usage = DX_PKI_EKU_SERVER};
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
    return h_tls_ctx(ca, server ? leaf : NULL, version);
}

/* A TLS client over a filter, over a memory pair, to a TLS server:
 *   client upper | client TLS | filter | pair | server TLS | server upper */
typedef struct tstack {
    dx_tls *c, *s;
    dx_filter *f;     /* the filter under the client (the top of fs) */
    dx_filter *fs[4]; /* the filters from the client down */
    size_t nf;
    h_rec cr, sr;
    unsigned c_secure, s_secure;
    uint64_t c_secure_at, s_secure_at;
    size_t live0;
} tstack;

static void on_secure(dx_tls *t, void *u)
{
    tstack *k = u;
    if (t == k->c) {
        k->c_secure++;
        k->c_secure_at = h_fake_now;
    } else {
        k->s_secure++;
        k->s_secure_at = h_fake_now;
    }
}

static const dx_tls_events stack_events = {.on_secure = on_secure};

/* The same over a stack of n filters, fs[0] under the client. */
static void ts_open_stack(tstack *k, int version, dx_filter *const *fs, size_t n, size_t live0)
{
    memset(k, 0, sizeof(*k));
    k->live0 = live0;
    k->f = fs[0];
    k->nf = n;
    memcpy(k->fs, fs, n * sizeof(*fs));
    dx_tls_ctx *cctx = make_ctx(false, versions[version]);
    dx_tls_ctx *sctx = make_ctx(true, versions[version]);
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &k->c), 0);
    ck_assert_int_eq(dx_tls_new(sctx, DX_TLS_SERVER, &k->s), 0);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
    ck_assert_int_eq(dx_tls_set_servername(k->c, "localhost"), 0);
    dx_tls_set_events(k->c, &stack_events, k);
    dx_tls_set_events(k->s, &stack_events, k);
    dx_tls_set_clock(k->c, h_fake_clock, NULL);
    dx_tls_set_clock(k->s, h_fake_clock, NULL);
    for (size_t i = 0; i < n; i++)
        dx_filter_set_clock(fs[i], h_fake_clock, NULL);
    k->cr.keep_data = k->sr.keep_data = true;
    h_rec_attach(&k->cr, dx_tls_upper(k->c));
    h_rec_attach(&k->sr, dx_tls_upper(k->s));
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_tls_attach(k->c, dx_filter_upper(fs[0])), 0);
    for (size_t i = 0; i + 1 < n; i++)
        ck_assert_int_eq(dx_filter_attach(fs[i], dx_filter_upper(fs[i + 1])), 0);
    ck_assert_int_eq(dx_filter_attach(fs[n - 1], a), 0);
    ck_assert_int_eq(dx_tls_attach(k->s, b), 0);
}

static void ts_open(tstack *k, int version, dx_filter *f, size_t live0)
{
    ts_open_stack(k, version, &f, 1, live0);
}

static uint64_t min3(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t m = a < b ? a : b;
    return m < c ? m : c;
}

/* Drives the shared fake clock to the next deadline of the filter or
 * either TLS side until done or nothing is due. */
static void ts_drive(tstack *k, bool (*done)(tstack *))
{
    while (!done(k)) {
        uint64_t d = min3(DX_FILTER_NO_DEADLINE, dx_tls_deadline(k->c), dx_tls_deadline(k->s));
        for (size_t i = 0; i < k->nf; i++)
            if (dx_filter_deadline(k->fs[i]) < d)
                d = dx_filter_deadline(k->fs[i]);
        if (d == UINT64_MAX)
            return;
        if (d > h_fake_now)
            h_fake_now = d;
        for (size_t i = 0; i < k->nf; i++)
            dx_filter_check_timeouts(k->fs[i]);
        dx_tls_check_timeouts(k->c);
        dx_tls_check_timeouts(k->s);
    }
}

static bool ts_secure(tstack *k)
{
    return (k->c_secure && k->s_secure) || k->cr.errors || k->sr.errors;
}

static void ts_start(tstack *k)
{
    ck_assert_int_eq(dx_tls_start(k->s), 0);
    ck_assert_int_eq(dx_tls_start(k->c), 0);
    ts_drive(k, ts_secure);
    ck_assert_msg(k->c_secure && k->s_secure, "handshake: client %s, server %s",
                  k->cr.error_name, k->sr.error_name);
}

static void ts_close(tstack *k)
{
    dx_tls_destroy(k->c);
    dx_tls_destroy(k->s);
    for (size_t i = 0; i < k->nf; i++)
        dx_filter_destroy(k->fs[i]);
    h_rec_assert_clean(&k->cr);
    h_rec_assert_clean(&k->sr);
    h_rec_free(&k->cr);
    h_rec_free(&k->sr);
    ck_assert_msg(h_alloc_live() == k->live0, "%zu bytes leaked", h_alloc_live() - k->live0);
}

static bool ts_closed(tstack *k) { return k->cr.closes && k->sr.closes; }

static uint64_t received_target;
static bool ts_received(tstack *k)
{
    return (k->cr.received >= received_target && k->sr.received >= received_target) ||
           k->cr.errors || k->sr.errors;
}

/* Sends total bytes each way and checks them. */
static void ts_transfer(tstack *k, size_t total)
{
    uint8_t *buf = malloc(total);
    k->sr.verify = k->cr.verify = true;
    k->sr.verify_seed = 21;
    k->cr.verify_seed = 22;
    h_gen_fill(21, 0, buf, total);
    ck_assert_int_ge(dx_stream_write(dx_tls_upper(k->c), buf, total), 0);
    h_gen_fill(22, 0, buf, total);
    ck_assert_int_ge(dx_stream_write(dx_tls_upper(k->s), buf, total), 0);
    free(buf);
    received_target = total;
    ts_drive(k, ts_received);
    ck_assert_uint_eq(k->sr.received, total);
    ck_assert_uint_eq(k->cr.received, total);
}

/* A connected client and server with a fault filter (seed 5) under the
 * client, no fault yet. */
static dx_filter *ts_over_fault(tstack *k, int version)
{
    size_t live0 = h_alloc_live();
    dx_filter *f;
    ck_assert_int_eq(dx_fault_new(5, &f), 0);
    ts_open(k, version, f, live0);
    ts_start(k);
    return f;
}

/* TLS survives records delivered one byte at a time, both ways. */
START_TEST(tls_over_one_byte_fragments)
{
    size_t live0 = h_alloc_live();
    static taplog t;
    memset(&t, 0, sizeof(t));
    dx_filter *f;
    dx_fragment_opts o = {.dirs = DX_FILTER_BOTH, .min = 1, .max = 1};
    ck_assert_int_eq(dx_fragment_new(&o, &f), 0);
    ck_assert_int_eq(dx_filter_set_tap(f, tap_rec, &t), 0);
    tstack k;
    ts_open(&k, _i, f, live0);
    ts_start(&k);
    ts_transfer(&k, 20000);
    /* Every delivery was one byte. */
    ck_assert_uint_eq(t.calls[0], dx_filter_bytes_out(f, DX_FILTER_DOWN));
    ck_assert_uint_eq(t.calls[1], dx_filter_bytes_out(f, DX_FILTER_UP));
    ck_assert_uint_gt(t.calls[0], 20000);
    /* A clean close through it. */
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(k.c)), 0);
    ck_assert_uint_eq(k.cr.closes, 1);
    ck_assert_uint_eq(k.sr.closes, 1);
    ck_assert_uint_eq(k.cr.errors + k.sr.errors, 0);
    ts_close(&k);
}
END_TEST

static uint64_t at_9600(size_t bytes) { return ((uint64_t)bytes * 1000u + 959u) / 960u; }

/* The handshake over a 9600-baud line takes its time in driven time: each
 * flight waits for the one before it, and takes ceil(bytes * 1000 / 960)
 * ms on the line; then 9600 bytes of data take ten seconds more. */
START_TEST(tls_over_9600_baud_takes_line_time)
{
    size_t live0 = h_alloc_live();
    static taplog t;
    memset(&t, 0, sizeof(t));
    dx_filter *f;
    ck_assert_int_eq(dx_throttle_new(DX_FILTER_BOTH, DX_BAUD_8N1(9600), &f), 0);
    ck_assert_int_eq(dx_filter_set_tap(f, tap_rec, &t), 0);
    h_fake_now = 1000;
    tstack k;
    ts_open(&k, _i, f, live0);
    ck_assert_int_eq(dx_tls_start(k.s), 0);
    ck_assert_int_eq(dx_tls_start(k.c), 0);
    size_t flights_at_secure = 0;
    while (!k.c_secure && !k.cr.errors && !k.sr.errors) {
        uint64_t d = min3(dx_filter_deadline(f), dx_tls_deadline(k.c), dx_tls_deadline(k.s));
        ck_assert_uint_ne(d, UINT64_MAX);
        h_fake_now = d;
        dx_filter_check_timeouts(f);
        flights_at_secure = t.nflights;
    }
    ck_assert_uint_eq(k.cr.errors + k.sr.errors, 0);
    uint64_t want = 1000;
    for (size_t i = 0; i < flights_at_secure; i++)
        want += at_9600(t.flights[i]);
    ck_assert_uint_eq(flights_at_secure, _i == 0 ? 4 : 2); /* TLS 1.2: two round trips */
    ck_assert_uint_eq(k.c_secure_at, want);
    ck_assert_uint_gt(k.c_secure_at - 1000, 1000); /* over a second of line time */
    ts_drive(&k, ts_secure);
    ck_assert_uint_eq(k.s_secure, 1);
    /* Data: 9600 bytes of cleartext and their record overhead. */
    uint64_t t0 = h_fake_now;
    uint64_t down0 = dx_filter_bytes_in(f, DX_FILTER_DOWN);
    ts_transfer(&k, 9600);
    uint64_t sent = dx_filter_bytes_in(f, DX_FILTER_DOWN) - down0;
    ck_assert_uint_ge(h_fake_now - t0, at_9600(sent) - 1);
    ck_assert_uint_ge(h_fake_now - t0, 10000);
    ts_close(&k);
}
END_TEST

/* The filters stack with each other and with TLS: a tap, random
 * fragments, latency and a fast line, with 100 000 bytes each way and a
 * clean close, in driven time. */
START_TEST(tls_over_a_stack_of_filters)
{
    size_t live0 = h_alloc_live();
    static taplog t;
    memset(&t, 0, sizeof(t));
    dx_filter *fs[4];
    dx_fragment_opts o = {.dirs = DX_FILTER_BOTH, .min = 1, .max = 300, .seed = 77};
    ck_assert_int_eq(dx_tap_new(tap_rec, &t, &fs[0]), 0);
    ck_assert_int_eq(dx_fragment_new(&o, &fs[1]), 0);
    ck_assert_int_eq(dx_delay_new(DX_FILTER_BOTH, 25, &fs[2]), 0);
    ck_assert_int_eq(dx_throttle_new(DX_FILTER_BOTH, 1000000, &fs[3]), 0);
    h_fake_now = 0;
    tstack k;
    ts_open_stack(&k, _i, fs, 4, live0);
    ts_start(&k);
    ck_assert_uint_ge(k.c_secure_at, 50); /* a round trip at least */
    uint64_t t0 = h_fake_now;
    ts_transfer(&k, 100000);
    ck_assert_uint_ge(h_fake_now - t0, 100 + 25); /* 100 kB at 1 MB/s, then latency */
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(k.c)), 0);
    ts_drive(&k, ts_closed);
    ck_assert_uint_eq(k.cr.closes, 1);
    ck_assert_uint_eq(k.sr.closes, 1);
    ck_assert_uint_eq(k.cr.errors + k.sr.errors, 0);
    ck_assert(dx_tls_clean_end(k.c) && dx_tls_clean_end(k.s));
    /* The tap saw every byte the line carried, and both ends. */
    ck_assert_uint_eq(t.len[0], dx_filter_bytes_out(fs[3], DX_FILTER_DOWN));
    ck_assert_uint_eq(t.len[1], dx_filter_bytes_out(fs[3], DX_FILTER_UP));
    ck_assert_uint_eq(t.ends[0] + t.ends[1], 2);
    ck_assert(!t.gap);
    ts_close(&k);
}
END_TEST

static bool mem_has(const uint8_t *h, size_t hn, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= hn; i++)
        if (memcmp(h + i, needle, n) == 0)
            return true;
    return false;
}

/* A tap above the TLS client sees cleartext; a tap below it sees records. */
START_TEST(taps_over_and_under_tls_show_cleartext_and_records)
{
    size_t live0 = h_alloc_live();
    static taplog above, below;
    memset(&above, 0, sizeof(above));
    memset(&below, 0, sizeof(below));
    dx_filter *under, *over;
    ck_assert_int_eq(dx_tap_new(tap_rec, &below, &under), 0);
    tstack k;
    ts_open(&k, _i, under, live0);
    ck_assert_int_eq(dx_tap_new(tap_rec, &above, &over), 0);
    /* The upper tap over the client's cleartext: the application writes to
     * its upper stream. The TLS upper stream gets a new consumer. */
    h_rec app;
    memset(&app, 0, sizeof(app));
    app.keep_data = true;
    ck_assert_int_eq(dx_filter_attach(over, dx_tls_upper(k.c)), 0);
    h_rec_attach(&app, dx_filter_upper(over));
    ts_start(&k);
    const char *secret = "the secret cleartext";
    ck_assert_int_eq(dx_stream_write(dx_filter_upper(over), secret, strlen(secret)), 0);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.s), "reply in clear", 14), 0);
    ck_assert_uint_eq(k.sr.received, strlen(secret));
    ck_assert_uint_eq(app.received, 14);
    ck_assert_uint_eq(above.len[0], strlen(secret));
    ck_assert_mem_eq(above.bytes[0], secret, strlen(secret));
    ck_assert_mem_eq(above.bytes[1], "reply in clear", 14);
    ck_assert(!mem_has(below.bytes[0], below.len[0], secret));
    ck_assert(!mem_has(below.bytes[1], below.len[1], "reply in clear"));
    /* Below: TLS records, the handshake first. */
    ck_assert_uint_eq(below.bytes[0][0], 0x16);
    ck_assert_uint_eq(below.bytes[1][0], 0x16);
    ck_assert_uint_gt(below.len[0], strlen(secret) + 5);
    char dump[256];
    dx_hexdump(dump, sizeof(dump), below.bytes[0], 3, 0);
    ck_assert_int_eq(strncmp(dump, "00000000  16 03 0", 17), 0);
    dx_filter_destroy(over);
    h_rec_assert_clean(&app);
    h_rec_free(&app);
    ts_close(&k);
}
END_TEST

/* One flipped bit in an application record: the receiver fails with the
 * record MAC error and delivers none of the record's plaintext. */
START_TEST(flipped_bit_fails_the_record_mac)
{
    tstack k;
    dx_filter *f = ts_over_fault(&k, _i);
    uint64_t at = dx_filter_bytes_in(f, DX_FILTER_DOWN);
    add_fault(f, DX_FAULT_FLIP, DX_FILTER_DOWN, at + 5 + 12, 0, NULL, 0x04, 0);
    /* The connection fails during the write (the peer is in-process). */
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.c), "attack at dawn, not at dusk", 27),
                     DX_ETLS);
    ck_assert_uint_eq(k.sr.errors, 1);
    ck_assert_str_eq(k.sr.error_name, "ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC");
    ck_assert_uint_eq(k.sr.received, 0);
    ck_assert_uint_eq(k.sr.closes, 1);
    /* The client hears of it (the server's alert). */
    ck_assert_uint_eq(k.cr.errors, 1);
    ck_assert_str_eq(k.cr.error_name, "ERR_SSL_SSLV3_ALERT_BAD_RECORD_MAC");
    ts_close(&k);
}
END_TEST

/* The server's records cut mid-record and the stream ended: the client
 * reports truncation, not an end. */
START_TEST(truncation_is_reported_by_tls)
{
    tstack k;
    dx_filter *f = ts_over_fault(&k, _i);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.s), "first", 5), 0);
    ck_assert_uint_eq(k.cr.received, 5);
    uint64_t at = dx_filter_bytes_in(f, DX_FILTER_UP);
    add_fault(f, DX_FAULT_TRUNCATE, DX_FILTER_UP, at + 9, 0, NULL, 0, 0);
    /* The server hears of it during its write: the client's failure closes
     * the transport, and the server sees it end without close_notify. */
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.s), "second", 6), DX_ETLS);
    ck_assert_str_eq(k.sr.error_name, "ERR_SSL_UNEXPECTED_EOF_WHILE_READING");
    ck_assert_uint_eq(k.cr.received, 5);
    ck_assert_uint_eq(k.cr.ends, 0);
    ck_assert_uint_eq(k.cr.errors, 1);
    ck_assert_str_eq(k.cr.error_name, "ERR_SSL_UNEXPECTED_EOF_WHILE_READING");
    ts_close(&k);
}
END_TEST

/* A link that stalls before the ClientHello: the handshake timeout fires
 * in driven time. */
START_TEST(stall_lets_the_handshake_timeout_fire)
{
    size_t live0 = h_alloc_live();
    dx_filter *f;
    ck_assert_int_eq(dx_fault_new(5, &f), 0);
    h_fake_now = 10000;
    tstack k;
    ts_open(&k, _i, f, live0);
    ck_assert_int_eq(dx_tls_set_handshake_timeout(k.c, 3000), 0);
    add_fault(f, DX_FAULT_STALL, DX_FILTER_DOWN, 0, 0, NULL, 0, 0);
    ck_assert_int_eq(dx_tls_start(k.s), 0);
    ck_assert_int_eq(dx_tls_start(k.c), 0);
    ck_assert_uint_gt(dx_filter_held(f, DX_FILTER_DOWN), 0); /* the ClientHello */
    ck_assert_uint_eq(dx_filter_deadline(f), DX_FILTER_NO_DEADLINE);
    ts_drive(&k, ts_secure);
    ck_assert_uint_eq(h_fake_now, 13000);
    ck_assert_uint_eq(k.cr.errors, 1);
    ck_assert_str_eq(k.cr.error_name, "ERR_TLS_HANDSHAKE_TIMEOUT");
    ck_assert_uint_eq(k.c_secure + k.s_secure, 0);
    ts_close(&k);
}
END_TEST

/* A reset under an open connection reaches the application as
 * ECONNRESET. */
START_TEST(reset_reaches_tls_as_econnreset)
{
    tstack k;
    dx_filter *f = ts_over_fault(&k, _i);
    add_fault(f, DX_FAULT_RESET, DX_FILTER_UP, dx_filter_bytes_in(f, DX_FILTER_UP), 0, NULL, 0, 0);
    ck_assert_uint_eq(k.cr.errors, 1);
    ck_assert_int_eq(k.cr.error_code, DX_ECONNRESET);
    ck_assert_str_eq(k.cr.error_name, "ECONNRESET");
    ck_assert_uint_eq(k.cr.closes, 1);
    /* The server sees its transport end without close_notify. */
    ck_assert_uint_eq(k.sr.errors, 1);
    ck_assert_str_eq(k.sr.error_name, "ERR_SSL_UNEXPECTED_EOF_WHILE_READING");
    ts_close(&k);
}
END_TEST

Suite *filters_suite(void)
{
    Suite *s = suite_create("filters");
    TCase *tc = tcase_create("filters");
    tcase_add_test(tc, tap_reports_each_direction_with_offsets);
    tcase_add_test(tc, hexdump_formats_as_hexdump_c);
    tcase_add_loop_test(tc, fragment_cuts_fixed_chunks, 0, 3);
    tcase_add_test(tc, fragment_random_cuts_follow_the_seed);
    tcase_add_test(tc, delay_holds_bytes_for_the_latency);
    tcase_add_test(tc, throttle_paces_a_9600_baud_line);
    tcase_add_test(tc, throttle_backpressure_reaches_the_writer);
    tcase_add_loop_test(tc, fault_flips_drops_and_injects_at_offsets, 0, 2);
    tcase_add_test(tc, fault_random_bytes_follow_the_seed);
    tcase_add_test(tc, fault_truncate_ends_one_direction);
    tcase_add_test(tc, fault_end_hangs_up_both_ways);
    tcase_add_test(tc, fault_reset_fails_both_streams);
    tcase_add_test(tc, fault_stall_holds_then_resumes);
    tcase_add_test(tc, bad_arguments_are_refused);
    tcase_add_test(tc, destroy_from_the_tap_is_safe);
    tcase_add_loop_test(tc, destroy_from_data_aborts_the_other_side, 0, 5);
    tcase_add_test(tc, corked_writes_cross_as_one);
    tcase_add_loop_test(tc, filter_destroy_inside_each_event, 0, 5);
    tcase_add_test(tc, transport_error_crosses_once);
    tcase_add_test(tc, deadline_hook_last_call_on_clean_close);
    tcase_add_loop_test(tc, allocation_failures_end_cleanly, 0, 5);
    suite_add_tcase(s, tc);

    tc = tcase_create("under_tls");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, tls_over_one_byte_fragments, 0, 2);
    tcase_add_loop_test(tc, tls_over_9600_baud_takes_line_time, 0, 2);
    tcase_add_loop_test(tc, tls_over_a_stack_of_filters, 0, 2);
    tcase_add_loop_test(tc, taps_over_and_under_tls_show_cleartext_and_records, 0, 2);
    tcase_add_loop_test(tc, flipped_bit_fails_the_record_mac, 0, 2);
    tcase_add_loop_test(tc, truncation_is_reported_by_tls, 0, 2);
    tcase_add_loop_test(tc, stall_lets_the_handshake_timeout_fire, 0, 2);
    tcase_add_loop_test(tc, reset_reaches_tls_as_econnreset, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}
