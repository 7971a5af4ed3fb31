/*
 * Allocation failure: the allocator is swappable, and when it fails every
 * call ends in a clean DX_ENOMEM (or success), never a crash or a leak, and
 * never corrupted data.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define KIND ((h_kind)(_i % H_KINDS))

START_TEST(allocator_cannot_be_swapped_under_live_objects)
{
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_set_allocator(malloc, realloc, free), DX_ESTATE);
    ck_assert_int_eq(dx_set_allocator(NULL, realloc, free), DX_EINVAL);
    dx_stream_destroy(a);
    ck_assert_int_eq(dx_set_allocator(malloc, realloc, free), DX_ESTATE);
    dx_stream_destroy(b);
    ck_assert_uint_eq(h_alloc_live(), 0);
    h_alloc_install(); /* succeeds again now that nothing is alive */
}
END_TEST

typedef struct outcome {
    bool completed;   /* the whole transfer went through */
    int first_error;  /* first failure seen (0: none) */
    bool saw_enomem;
} outcome;

/* An allocation failure shows as DX_ENOMEM where it happened, and as the
 * peer's departure (EPIPE, a closed stream) elsewhere: nothing else. */
static void note_rc(outcome *o, int rc)
{
    if (rc >= 0)
        return;
    ck_assert_msg(rc == DX_ENOMEM || rc == DX_EPIPE || rc == DX_EDESTROYED,
                  "unexpected %s", dx_err_name(rc));
    if (rc == DX_ENOMEM)
        o->saw_enomem = true;
    if (!o->first_error)
        o->first_error = rc;
}

static void link_done(dx_link *l, const dx_error *err, void *u)
{
    (void)l;
    if (err)
        note_rc(u, dx_error_code(err));
}

static bool link_finished(void *arg) { return dx_link_is_done(arg); }

static bool closed_or_stuck(void *arg)
{
    h_rec *r = arg;
    return (r[0].closes && r[1].closes) || r[0].errors || r[1].errors;
}

/* One run of a transfer both ways plus close, with allocations failing from
 * the n-th on. Returns what happened. */
static outcome transfer_with_failures(h_kind kind, long n, bool via_link)
{
    outcome o = {0};
    uint8_t buf[40000];
    h_alloc_fail_from(n);
    h_chan c = {.kind = kind};
    h_chan other = {.kind = H_MEM};
    dx_link *l = NULL;
    dx_stream *tb = NULL; /* the end b's data goes to and from */
    int rc;
    if (kind == H_MEM)
        rc = dx_pair_new(NULL, &c.a, &c.b);
    else {
        int ab[2], ba[2];
        ck_assert_int_eq(pipe(ab), 0);
        ck_assert_int_eq(pipe(ba), 0);
        rc = dx_fd_stream_new(ba[0], ab[1], DX_FD_CLOSE, &c.a);
        if (rc == 0)
            rc = dx_fd_stream_new(ab[0], ba[1], DX_FD_CLOSE, &c.b);
        else
            close(ba[0]), close(ab[1]);
        if (rc != 0)
            close(ab[0]), close(ba[1]);
    }
    note_rc(&o, rc);
    if (rc == 0 && via_link) {
        rc = dx_pair_new(NULL, &other.a, &other.b);
        if (rc == 0) {
            rc = dx_link_new(c.b, other.a, link_done, &o, &l);
            if (rc == 0)
                tb = other.b; /* talk to the far end of the link */
            else
                dx_stream_destroy(other.a), dx_stream_destroy(other.b);
        }
        note_rc(&o, rc);
    }
    h_rec r[2] = {{.verify = true, .verify_seed = 11},
                  {.verify = true, .verify_seed = 10}};
    if (!tb)
        tb = c.b;
    if (o.first_error == 0) {
        h_rec_attach(&r[0], c.a);
        h_rec_attach(&r[1], tb);
        h_gen_fill(10, 0, buf, sizeof(buf));
        note_rc(&o, dx_stream_write(c.a, buf, sizeof(buf)));
        h_gen_fill(11, 0, buf, sizeof(buf));
        note_rc(&o, dx_stream_write(tb, buf, sizeof(buf)));
        note_rc(&o, dx_stream_end(c.a));
        note_rc(&o, dx_stream_end(tb));
        h_run(&c, closed_or_stuck, r, 2000);
        for (int i = 0; i < 2; i++) {
            h_rec_assert_clean(&r[i]); /* never corrupted, contract kept */
            ck_assert(!r[i].mismatch);
            if (r[i].errors)
                note_rc(&o, r[i].error_code);
        }
        o.completed = r[0].closes && r[1].closes && !r[0].errors &&
                      !r[1].errors && r[0].received == sizeof(buf) &&
                      r[1].received == sizeof(buf);
    }
    if (l && !o.completed)
        h_run(&c, link_finished, l, 2000);
    /* A run that did not complete said why: ENOMEM where it happened. */
    if (!o.completed)
        ck_assert_msg(o.saw_enomem, "n=%ld: incomplete, but no ENOMEM reported", n);
    if (o.first_error)
        ck_assert_msg(o.saw_enomem, "n=%ld failed with %s, never ENOMEM", n,
                      dx_err_name(o.first_error));
    h_alloc_fail_from(-1);
    if (l) {
        dx_link_destroy(l);
        dx_stream_destroy(c.a);
        dx_stream_destroy(other.b);
    } else {
        h_chan_close(&c);
    }
    ck_assert_msg(h_alloc_live() == 0, "n=%ld: %zu bytes leaked", n, h_alloc_live());
    return o;
}

/* Fail the n-th allocation, for every n, until a run needs no more. */
START_TEST(every_failing_allocation_ends_cleanly)
{
    bool via_link = _i >= H_KINDS;
    long n = 0;
    for (;; n++) {
        int64_t t0 = h_now_ms();
        outcome o = transfer_with_failures(KIND, n, via_link);
        if (getenv("DX_TEST_DEBUG"))
            fprintf(stderr, "n=%ld completed=%d err=%s %lld ms\n", n, o.completed,
                    dx_err_name(o.first_error), (long long)(h_now_ms() - t0));
        if (o.completed && o.first_error == 0)
            break;
        ck_assert_msg(n < 1000, "no clean run after %ld failures", n);
    }
    ck_assert_int_gt(n, 1); /* the sweep did exercise failures */
}
END_TEST

Suite *alloc_suite(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("failure");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, allocator_cannot_be_swapped_under_live_objects);
    tcase_add_loop_test(tc, every_failing_allocation_ends_cleanly, 0, 2 * H_KINDS);
    suite_add_tcase(s, tc);
    return s;
}
