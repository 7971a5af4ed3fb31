/*
 * The link (include/duplex/link.h). Two channels joined by a link:
 *
 *   x ==(memory pair)== y1 <=link=> x2 ==(memory pair or pipe pair)== y
 *
 * x and y are the ends the tests talk through.
 */
#include "config.h"

#include <string.h>

#include "harness.h"

#define KIND ((h_kind)(_i % H_KINDS))

typedef struct lk {
    h_chan c1, c2; /* c1: x = c1.a, y1 = c1.b; c2: x2 = c2.a, y = c2.b */
    dx_link *l;
    unsigned dones;
    int done_code; /* 0: clean */
    bool destroy_in_done;
} lk;

/* Destroys the link, which releases the two streams it owns. */
static void lk_destroy_link(lk *k)
{
    dx_link_destroy(k->l);
    k->l = NULL;
    k->c1.b = k->c2.a = NULL;
}

static void done_cb(dx_link *l, const dx_error *err, void *u)
{
    lk *k = u;
    /* k->l is NULL when the link was destroyed before it finished, or
     * when done comes during dx_link_new() itself */
    ck_assert(k->l == NULL || l == k->l);
    k->dones++;
    k->done_code = err ? dx_error_code(err) : 0;
    if (k->destroy_in_done)
        lk_destroy_link(k);
}

static void lk_open(lk *k, h_kind kind)
{
    memset(k, 0, sizeof(*k));
    h_chan_open(&k->c1, H_MEM, NULL);
    h_chan_open(&k->c2, kind, NULL);
    ck_assert_int_eq(dx_link_new(k->c1.b, k->c2.a, done_cb, k, &k->l), 0);
}

/* The link owns y1 and x2. */
static void lk_close(lk *k)
{
    lk_destroy_link(k);
    dx_stream_destroy(k->c1.a);
    dx_stream_destroy(k->c2.b);
    ck_assert_msg(h_alloc_live() == 0, "%zu bytes leaked", h_alloc_live());
}

typedef struct both {
    h_rec *rx, *ry;
    lk *k;
} both;

static bool both_closed(void *arg)
{
    both *b = arg;
    return b->rx->closes && b->ry->closes && b->k->dones;
}

START_TEST(forwards_both_ways_byte_exact)
{
    const size_t total = 1 << 20;
    lk k;
    lk_open(&k, KIND);
    h_rec rx = {.verify = true, .verify_seed = 2}, ry = {.verify = true, .verify_seed = 1};
    h_rec_attach(&rx, k.c1.a);
    h_rec_attach(&ry, k.c2.b);
    static uint8_t buf[16384];
    size_t sent_x = 0, sent_y = 0;
    both b = {&rx, &ry, &k};
    while (sent_x < total || sent_y < total) {
        if (sent_x < total) {
            h_gen_fill(1, sent_x, buf, sizeof(buf));
            ck_assert_int_ge(dx_stream_write(k.c1.a, buf, sizeof(buf)), 0);
            sent_x += sizeof(buf);
        }
        if (sent_y < total) {
            h_gen_fill(2, sent_y, buf, sizeof(buf));
            ck_assert_int_ge(dx_stream_write(k.c2.b, buf, sizeof(buf)), 0);
            sent_y += sizeof(buf);
        }
        /* respect backpressure: let the pipes drain what is buffered */
        while (dx_stream_write_buffered(k.c2.b) > 65536 ||
               dx_stream_write_buffered(k.c1.a) > 65536)
            h_step(&k.c2, 10);
    }
    dx_stream_end(k.c1.a);
    dx_stream_end(k.c2.b);
    ck_assert(h_run(&k.c2, both_closed, &b, 10000));
    ck_assert_uint_eq(rx.received, total);
    ck_assert_uint_eq(ry.received, total);
    ck_assert(!rx.mismatch && !ry.mismatch);
    ck_assert_uint_eq(k.dones, 1);
    ck_assert_int_eq(k.done_code, 0);
    ck_assert(dx_link_is_done(k.l));
    ck_assert_uint_eq(dx_link_bytes_ab(k.l), total);
    ck_assert_uint_eq(dx_link_bytes_ba(k.l), total);
    h_rec_assert_clean(&rx);
    h_rec_assert_clean(&ry);
    lk_close(&k);
}
END_TEST

static bool ry_ended(void *arg) { return ((h_rec *)arg)->ends > 0; }

START_TEST(half_close_crosses_the_link)
{
    lk k;
    lk_open(&k, KIND);
    h_rec rx = {.keep_data = true}, ry = {0};
    h_rec_attach(&rx, k.c1.a);
    h_rec_attach(&ry, k.c2.b);
    both b = {&rx, &ry, &k};
    dx_stream_end(k.c1.a);
    ck_assert(h_run(&k.c2, ry_ended, &ry, 5000));
    ck_assert_uint_eq(k.dones, 0);
    ck_assert_int_eq(dx_stream_write(k.c2.b, "reply", 5), 0);
    dx_stream_end(k.c2.b);
    ck_assert(h_run(&k.c2, both_closed, &b, 5000));
    ck_assert_uint_eq(rx.len, 5);
    ck_assert_mem_eq(rx.data, "reply", 5);
    ck_assert_int_eq(k.done_code, 0);
    h_rec_assert_clean(&rx);
    h_rec_assert_clean(&ry);
    h_rec_free(&rx);
    lk_close(&k);
}
END_TEST

typedef struct bp {
    h_rec *ry;
    uint64_t sent;
    unsigned drains_before;
    h_rec *rx;
} bp;

static bool caught_up(void *arg)
{
    bp *p = arg;
    return p->ry->received == p->sent || p->rx->drains > p->drains_before;
}

/* A paused reader at one end makes the writer at the other end see DX_FULL,
 * through the link, with memory bounded. */
START_TEST(backpressure_crosses_the_link)
{
    const uint64_t total = 10u << 20;
    lk k;
    lk_open(&k, KIND);
    h_rec rx = {0}, ry = {.verify = true, .verify_seed = 5};
    h_rec_attach(&rx, k.c1.a);
    h_rec_attach(&ry, k.c2.b);
    h_alloc_reset_peak();
    static uint8_t buf[32768];
    bp p = {.ry = &ry, .rx = &rx};
    unsigned fulls = 0;
    dx_stream_pause(k.c2.b);
    while (p.sent < total) {
        uint64_t seen = ry.received;
        int rc;
        do {
            h_gen_fill(5, p.sent, buf, sizeof(buf));
            rc = dx_stream_write(k.c1.a, buf, sizeof(buf));
            ck_assert_int_ge(rc, 0);
            p.sent += sizeof(buf);
            h_step(&k.c2, 0);
        } while (rc != DX_FULL && p.sent < total);
        fulls += rc == DX_FULL;
        ck_assert_uint_eq(ry.received, seen);
        p.drains_before = rx.drains;
        dx_stream_resume(k.c2.b);
        ck_assert(h_run(&k.c2, caught_up, &p, 5000));
        dx_stream_pause(k.c2.b);
    }
    dx_stream_resume(k.c2.b);
    dx_stream_end(k.c1.a);
    ck_assert(h_run(&k.c2, ry_ended, &ry, 5000));
    ck_assert_uint_eq(ry.received, total);
    ck_assert(!ry.mismatch);
    ck_assert_uint_gt(fulls, 10);
    /* two pairs of 64 KiB, four read buffers and two write buffers of
     * 16 KiB, one 32 KiB write over the mark, and the objects */
    ck_assert_msg(h_alloc_peak() < 512 * 1024, "peak %zu", h_alloc_peak());
    h_rec_assert_clean(&ry);
    lk_close(&k);
}
END_TEST

/* A failure on one linked stream fails the other with the same error. */
START_TEST(failure_propagates_with_the_same_error)
{
    lk k;
    lk_open(&k, H_MEM);
    h_rec rx = {0}, ry = {0};
    h_rec_attach(&rx, k.c1.a);
    h_rec_attach(&ry, k.c2.b);
    ck_assert_int_eq(dx_pair_inject_error(k.c2.a, DX_ECONNRESET), 0);
    ck_assert_uint_eq(k.dones, 1);
    ck_assert_int_eq(k.done_code, DX_ECONNRESET);
    ck_assert(dx_stream_state(k.c1.b) & DX_STREAM_ERRORED);
    ck_assert_int_eq(dx_error_code(dx_stream_error(k.c1.b)), DX_ECONNRESET);
    ck_assert_uint_eq(rx.ends, 1); /* the far ends see their peer gone */
    ck_assert_uint_eq(ry.ends, 1);
    h_rec_assert_clean(&rx);
    h_rec_assert_clean(&ry);
    lk_close(&k);
}
END_TEST

START_TEST(abort_propagates_without_error)
{
    lk k;
    lk_open(&k, H_MEM);
    h_rec rx = {0}, ry = {0};
    h_rec_attach(&rx, k.c1.a);
    h_rec_attach(&ry, k.c2.b);
    ck_assert_int_eq(dx_pair_inject_destroy(k.c2.a), 0);
    ck_assert_uint_eq(k.dones, 1);
    ck_assert_int_eq(k.done_code, 0);
    ck_assert(dx_stream_state(k.c1.b) & DX_STREAM_CLOSED);
    ck_assert_uint_eq(rx.ends, 1);
    lk_close(&k);
}
END_TEST

START_TEST(destroying_the_link_mid_transfer_releases_everything)
{
    lk k;
    lk_open(&k, KIND);
    h_rec rx = {0}, ry = {0};
    h_rec_attach(&rx, k.c1.a);
    h_rec_attach(&ry, k.c2.b);
    uint8_t buf[50000] = {0};
    dx_stream_write(k.c1.a, buf, sizeof(buf));
    lk_destroy_link(&k);
    ck_assert_uint_eq(k.dones, 1);
    ck_assert_int_eq(k.done_code, 0);
    ck_assert(h_run(&k.c2, ry_ended, &ry, 5000));
    ck_assert_uint_eq(rx.ends, 1);
    h_rec_assert_clean(&rx);
    h_rec_assert_clean(&ry);
    lk_close(&k);
}
END_TEST

START_TEST(destroying_the_link_from_done_is_safe)
{
    lk k;
    lk_open(&k, H_MEM);
    k.destroy_in_done = true;
    h_rec rx = {0}, ry = {0};
    h_rec_attach(&rx, k.c1.a);
    h_rec_attach(&ry, k.c2.b);
    dx_stream_end(k.c1.a);
    dx_stream_end(k.c2.b);
    ck_assert_uint_eq(k.dones, 1);
    ck_assert_ptr_null(k.l);
    h_rec_assert_clean(&rx);
    h_rec_assert_clean(&ry);
    lk_close(&k);
}
END_TEST

static void destroy_link_hook(h_rec *r, char ev)
{
    lk *k = r->ctx;
    if (ev == H_EV_DATA && k->l)
        lk_destroy_link(k);
}

/* From a callback of a linked stream's peer, while the link is writing. */
START_TEST(destroying_the_link_from_a_stream_callback_is_safe)
{
    lk k;
    lk_open(&k, H_MEM);
    h_rec rx = {0}, ry = {.on_event = destroy_link_hook, .ctx = &k};
    h_rec_attach(&rx, k.c1.a);
    h_rec_attach(&ry, k.c2.b);
    ck_assert_int_eq(dx_stream_write(k.c1.a, "boom", 4), 0);
    ck_assert_ptr_null(k.l);
    ck_assert_uint_eq(k.dones, 1);
    ck_assert_uint_eq(rx.ends, 1);
    h_rec_assert_clean(&rx);
    h_rec_assert_clean(&ry);
    lk_close(&k);
}
END_TEST

START_TEST(link_refuses_bad_arguments)
{
    dx_stream *a, *b;
    dx_link *l;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_link_new(a, a, NULL, NULL, &l), DX_EINVAL);
    ck_assert_int_eq(dx_link_new(a, NULL, NULL, NULL, &l), DX_EINVAL);
    ck_assert_int_eq(dx_link_new(a, b, NULL, NULL, NULL), DX_EINVAL);
    ck_assert_uint_eq(dx_link_bytes_ab(NULL), 0);
    ck_assert(!dx_link_is_done(NULL));
    dx_link_destroy(NULL);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

/* Bytes that arrived before the link existed are forwarded first, and a
 * stream that had already closed is seen closed at once. */
START_TEST(link_replays_what_came_before)
{
    h_chan c1, c2;
    h_chan_open(&c1, H_MEM, NULL);
    h_chan_open(&c2, H_MEM, NULL);
    ck_assert_int_eq(dx_stream_unshift(c1.b, "early ", 6), 0);
    h_rec ry = {.keep_data = true};
    h_rec_attach(&ry, c2.b);
    dx_link *l;
    lk k = {0};
    ck_assert_int_eq(dx_link_new(c1.b, c2.a, done_cb, &k, &l), 0);
    k.l = l;
    dx_stream_write(c1.a, "late", 4);
    ck_assert_uint_eq(ry.len, 10);
    ck_assert_mem_eq(ry.data, "early late", 10);
    dx_link_destroy(l);
    h_rec_free(&ry);
    dx_stream_destroy(c1.a);
    dx_stream_destroy(c2.b);

    h_chan_open(&c1, H_MEM, NULL);
    h_chan_open(&c2, H_MEM, NULL);
    ck_assert_int_eq(dx_pair_inject_destroy(c1.b), 0);
    memset(&k, 0, sizeof(k));
    ck_assert_int_eq(dx_link_new(c1.b, c2.a, done_cb, &k, &l), 0);
    ck_assert_uint_eq(k.dones, 1);
    dx_link_destroy(l);
    dx_stream_destroy(c1.a);
    dx_stream_destroy(c2.b);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

Suite *link_suite(void)
{
    Suite *s = suite_create("link");
    TCase *tc = tcase_create("link");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, forwards_both_ways_byte_exact, 0, H_KINDS);
    tcase_add_loop_test(tc, half_close_crosses_the_link, 0, H_KINDS);
    tcase_add_loop_test(tc, backpressure_crosses_the_link, 0, H_KINDS);
    tcase_add_test(tc, failure_propagates_with_the_same_error);
    tcase_add_test(tc, abort_propagates_without_error);
    tcase_add_loop_test(tc, destroying_the_link_mid_transfer_releases_everything, 0, H_KINDS);
    tcase_add_test(tc, destroying_the_link_from_done_is_safe);
    tcase_add_test(tc, destroying_the_link_from_a_stream_callback_is_safe);
    tcase_add_test(tc, link_refuses_bad_arguments);
    tcase_add_test(tc, link_replays_what_came_before);
    suite_add_tcase(s, tc);
    return s;
}
