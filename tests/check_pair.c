/* The in-memory pair and its test controls (include/duplex/pair.h). */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "harness.h"

static void no_leak(void)
{
    ck_assert_msg(h_alloc_live() == 0, "%zu bytes leaked", h_alloc_live());
}

/* A reader that destroys its end inside on_data may still read the bytes
 * it was given, whether they come straight from the pair's queue (the
 * pair cut them by max_chunk) or from the stream's read buffer (paused,
 * then resumed). */
typedef struct gone {
    dx_stream **self;
    unsigned sum, calls;
} gone;

static void destroy_then_read(dx_stream *s, const uint8_t *d, size_t n, void *u)
{
    gone *g = u;
    g->calls++;
    dx_stream_destroy(s);
    *g->self = NULL;
    for (size_t i = 0; i < n; i++)
        g->sum += d[i];
}

START_TEST(data_stays_readable_when_the_reader_destroys_itself)
{
    dx_pair_opts o = {.max_chunk = 10};
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(&o, &a, &b), 0);
    gone g = {.self = &b};
    dx_stream_events ev = {.on_data = destroy_then_read};
    if (_i)
        dx_stream_pause(b);
    ck_assert_int_eq(dx_stream_set_events(b, &ev, &g), 0);
    uint8_t buf[100];
    memset(buf, 1, sizeof(buf));
    dx_stream_write(a, buf, sizeof(buf));
    if (_i) {
        ck_assert_uint_eq(g.calls, 0);
        dx_stream_resume(b);
    }
    ck_assert_uint_eq(g.calls, 1);
    ck_assert_uint_eq(g.sum, 10);
    ck_assert_ptr_null(b);
    dx_stream_destroy(a);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

START_TEST(max_chunk_limits_every_delivery)
{
    dx_pair_opts o = {.max_chunk = 3};
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(&o, &a, &b), 0);
    h_rec rb = {.keep_data = true};
    h_rec_attach(&rb, b);
    uint8_t buf[100];
    h_gen_fill(7, 0, buf, sizeof(buf));
    ck_assert_int_eq(dx_stream_write(a, buf, sizeof(buf)), 0);
    ck_assert_uint_eq(rb.len, 100);
    ck_assert_mem_eq(rb.data, buf, 100);
    ck_assert_uint_eq(rb.max_data_event, 3);
    ck_assert_uint_eq(rb.data_events, 34);
    /* Also for bytes that waited in b's buffer while it was paused. */
    ck_assert_int_eq(dx_pair_set_max_chunk(b, 1), 0);
    dx_stream_pause(b);
    ck_assert_int_eq(dx_stream_write(a, buf, 50), 0);
    dx_stream_resume(b);
    ck_assert_uint_eq(rb.len, 150);
    ck_assert_uint_eq(rb.data_events, 84);
    ck_assert_mem_eq(rb.data + 100, buf, 50);
    h_rec_assert_clean(&rb);
    h_rec_free(&rb);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    no_leak();
}
END_TEST

START_TEST(hold_keeps_bytes_in_the_pair_until_release)
{
    dx_pair_opts o = {.capacity = 100};
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(&o, &a, &b), 0);
    h_rec ra = {0}, rb = {.keep_data = true};
    h_rec_attach(&ra, a);
    h_rec_attach(&rb, b);
    ck_assert_int_eq(dx_pair_hold(b), 0);
    uint8_t buf[1000];
    h_gen_fill(9, 0, buf, sizeof(buf));
    dx_stream_set_high_water(a, DX_STREAM_DEFAULT_HWM, 500);
    ck_assert_int_eq(dx_stream_write(a, buf, sizeof(buf)), DX_FULL);
    ck_assert_uint_eq(rb.len, 0);
    /* The pair holds its capacity; the writer keeps the rest. */
    ck_assert_uint_eq(dx_stream_write_buffered(a), 900);
    ck_assert_int_eq(dx_stream_end(a), 0);
    ck_assert_uint_eq(rb.ends, 0);
    ck_assert_int_eq(dx_pair_release(b), 0);
    ck_assert_uint_eq(rb.len, 1000);
    ck_assert_mem_eq(rb.data, buf, 1000);
    ck_assert_uint_eq(rb.ends, 1);
    ck_assert_uint_eq(ra.drains, 1);
    ck_assert_uint_eq(ra.finishes, 1);
    h_rec_assert_clean(&ra);
    h_rec_assert_clean(&rb);
    h_rec_free(&rb);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    no_leak();
}
END_TEST

START_TEST(inject_end_gives_eof_after_sent_bytes_and_tells_no_one_else)
{
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    h_rec ra = {0}, rb = {.keep_data = true};
    h_rec_attach(&ra, a);
    h_rec_attach(&rb, b);
    dx_stream_pause(b);
    ck_assert_int_eq(dx_stream_write(a, "before", 6), 0);
    ck_assert_int_eq(dx_pair_inject_end(b), 0);
    ck_assert_uint_eq(rb.ends, 0); /* paused: nothing yet */
    dx_stream_resume(b);
    ck_assert_uint_eq(rb.len, 6);
    ck_assert_mem_eq(rb.data, "before", 6);
    ck_assert_uint_eq(rb.ends, 1);
    /* The writer was not told: it writes on, into the void. */
    ck_assert_int_eq(dx_stream_write(a, "after", 5), 0);
    ck_assert_uint_eq(rb.len, 6);
    ck_assert_uint_eq(ra.ends + ra.errors + ra.closes, 0);
    ck_assert(dx_stream_state(a) & DX_STREAM_WRITABLE);
    h_rec_assert_clean(&ra);
    h_rec_assert_clean(&rb);
    h_rec_free(&rb);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    no_leak();
}
END_TEST

START_TEST(inject_error_fails_that_end_and_gives_the_peer_eof)
{
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    h_rec ra = {0}, rb = {0};
    h_rec_attach(&ra, a);
    h_rec_attach(&rb, b);
    ck_assert_int_eq(dx_pair_inject_error(b, 5), DX_EINVAL);
    ck_assert_int_eq(dx_pair_inject_error(b, DX_ECONNRESET), 0);
    ck_assert_uint_eq(rb.errors, 1);
    ck_assert_int_eq(rb.error_code, DX_ECONNRESET);
    ck_assert_str_eq(rb.error_name, "ECONNRESET");
    ck_assert_str_eq(dx_error_layer(dx_stream_error(b)), "pair");
    ck_assert_uint_eq(rb.closes, 1);
    ck_assert_uint_eq(ra.ends, 1);
    ck_assert_uint_eq(ra.errors, 0);
    ck_assert_int_eq(dx_stream_write(a, "x", 1), DX_EPIPE);
    ck_assert_uint_eq(ra.errors, 1);
    ck_assert_int_eq(dx_pair_inject_error(b, DX_EIO), DX_EDESTROYED);
    ck_assert_int_eq(dx_pair_inject_end(b), DX_EDESTROYED);
    ck_assert_int_eq(dx_pair_inject_destroy(b), DX_EDESTROYED);
    h_rec_assert_clean(&ra);
    h_rec_assert_clean(&rb);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    no_leak();
}
END_TEST

START_TEST(inject_destroy_closes_without_error)
{
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    h_rec ra = {.keep_data = true}, rb = {0};
    h_rec_attach(&ra, a);
    h_rec_attach(&rb, b);
    ck_assert_int_eq(dx_stream_write(b, "last", 4), 0);
    ck_assert_int_eq(dx_pair_inject_destroy(b), 0);
    ck_assert_uint_eq(rb.closes, 1);
    ck_assert_uint_eq(rb.errors, 0);
    ck_assert_uint_eq(ra.len, 4);
    ck_assert_uint_eq(ra.ends, 1);
    h_rec_assert_clean(&ra);
    h_rec_assert_clean(&rb);
    h_rec_free(&ra);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    no_leak();
}
END_TEST

/* A writer blocked on a full pair fails with EPIPE when the reader goes. */
START_TEST(blocked_writer_fails_when_the_reader_goes)
{
    dx_pair_opts o = {.capacity = 10};
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(&o, &a, &b), 0);
    h_rec ra = {0}, rb = {0};
    h_rec_attach(&ra, a);
    h_rec_attach(&rb, b);
    dx_stream_pause(b);
    dx_stream_set_high_water(b, 0, DX_STREAM_DEFAULT_HWM);
    ck_assert_int_eq(dx_stream_write(a, "0123456789012345678901234567890", 31), 0);
    ck_assert_uint_gt(dx_stream_write_buffered(a), 0);
    dx_stream_destroy(b);
    ck_assert_uint_eq(ra.errors, 1);
    ck_assert_int_eq(ra.error_code, DX_EPIPE);
    ck_assert_uint_eq(ra.closes, 1);
    h_rec_assert_clean(&ra);
    dx_stream_destroy(a);
    no_leak();
}
END_TEST

START_TEST(controls_refuse_streams_that_are_not_pairs)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    dx_stream *f;
    ck_assert_int_eq(dx_fd_stream_new(p[0], p[1], DX_FD_CLOSE, &f), 0);
    ck_assert(!dx_is_pair(f));
    ck_assert(!dx_is_pair(NULL));
    ck_assert_int_eq(dx_pair_hold(f), DX_EINVAL);
    ck_assert_int_eq(dx_pair_release(f), DX_EINVAL);
    ck_assert_int_eq(dx_pair_set_max_chunk(f, 1), DX_EINVAL);
    ck_assert_int_eq(dx_pair_inject_end(f), DX_EINVAL);
    ck_assert_int_eq(dx_pair_inject_error(f, DX_EIO), DX_EINVAL);
    ck_assert_int_eq(dx_pair_inject_destroy(NULL), DX_EINVAL);
    ck_assert_int_eq(dx_pair_new(NULL, NULL, &f), DX_EINVAL);
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert(dx_is_pair(a) && dx_is_pair(b));
    dx_stream_destroy(f);
    dx_stream_destroy(b); /* ends are released in either order */
    dx_stream_destroy(a);
    no_leak();
}
END_TEST

/* With nobody attached, nothing is read: the bytes wait in the pair (then
 * in the writer) and arrive whole when a consumer attaches. */
START_TEST(no_reading_before_a_consumer_attaches)
{
    dx_pair_opts o = {.capacity = 8};
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(&o, &a, &b), 0);
    ck_assert_int_eq(dx_stream_write(a, "0123456789", 10), 0);
    ck_assert_uint_eq(dx_stream_read_buffered(b), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(a), 2);
    h_rec rb = {.keep_data = true};
    h_rec_attach(&rb, b);
    ck_assert_uint_eq(rb.len, 10);
    ck_assert_mem_eq(rb.data, "0123456789", 10);
    ck_assert_uint_eq(dx_stream_write_buffered(a), 0);
    h_rec_free(&rb);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    no_leak();
}
END_TEST

Suite *pair_suite(void)
{
    Suite *s = suite_create("pair");
    TCase *tc = tcase_create("controls");
    tcase_add_test(tc, max_chunk_limits_every_delivery);
    tcase_add_loop_test(tc, data_stays_readable_when_the_reader_destroys_itself, 0, 2);
    tcase_add_test(tc, hold_keeps_bytes_in_the_pair_until_release);
    tcase_add_test(tc, inject_end_gives_eof_after_sent_bytes_and_tells_no_one_else);
    tcase_add_test(tc, inject_error_fails_that_end_and_gives_the_peer_eof);
    tcase_add_test(tc, inject_destroy_closes_without_error);
    tcase_add_test(tc, blocked_writer_fails_when_the_reader_goes);
    tcase_add_test(tc, controls_refuse_streams_that_are_not_pairs);
    tcase_add_test(tc, no_reading_before_a_consumer_attaches);
    suite_add_tcase(s, tc);
    return s;
}
