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

#include <openssl/crypto.h>

#include "harness.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define DX_UNDER_VALGRIND_CHECK 1
#endif
#endif

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

/* ---- TLS: libduplex's and OpenSSL's allocations --------------------------- */

static dx_pki_cert *tls_ca, *tls_leaf;
static dx_tls_ctx *tls_cctx[4], *tls_sctx[4];

static void tls_setup(void)
{
    static const char *const dns[] = {"localhost", NULL};
    dx_pki_opts o = {.key_type = DX_PKI_EC_P256, .common_name = "Alloc CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &o, &tls_ca, NULL));
    dx_pki_opts l = {.common_name = "server", .dns_names = dns,
                     .ext_key_usage = DX_PKI_EKU_SERVER};
    H_MUST(dx_pki_issue(tls_ca, &l, &tls_leaf, NULL));
    for (int v = 2; v <= 3; v++) {
        const char *ver = v == 3 ? "TLSv1.3" : "TLSv1.2";
        for (int server = 0; server < 2; server++) {
            dx_tls_config *cfg;
            H_MUST(dx_tls_config_new(&cfg));
            const char *capem = dx_pki_cert_pem(tls_ca);
            H_MUST(dx_tls_config_add_ca(cfg, capem, strlen(capem)));
            if (server) {
                const char *c = dx_pki_cert_pem(tls_leaf), *k = dx_pki_key_pem(tls_leaf);
                H_MUST(dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL));
            }
            H_MUST(dx_tls_config_set_min_version(cfg, ver));
            H_MUST(dx_tls_config_set_max_version(cfg, ver));
            H_MUST(dx_tls_ctx_new(cfg, server ? &tls_sctx[v] : &tls_cctx[v], NULL));
            dx_tls_config_free(cfg);
        }
    }
}

static void tls_teardown(void)
{
    for (int v = 2; v <= 3; v++) {
        dx_tls_ctx_unref(tls_cctx[v]);
        dx_tls_ctx_unref(tls_sctx[v]);
        tls_cctx[v] = tls_sctx[v] = NULL;
    }
    dx_pki_cert_free(tls_leaf);
    dx_pki_cert_free(tls_ca);
    tls_leaf = tls_ca = NULL;
}

#define TLS_LEN 40000u

typedef struct tls_outcome {
    bool completed;
    bool enomem;       /* some side reported DX_ENOMEM */
    long made;         /* allocations asked for, failed ones included */
    int setup_rc;      /* the first call that failed */
    bool resumed;
    int errors;
    char names[2][64];
} tls_outcome;

/* The codes a run that failed because memory ran out may end with: the
 * side that ran out reports DX_ENOMEM (libduplex's allocation, or
 * OpenSSL's inside a call of the filter), or OpenSSL's own account of
 * it when its failure surfaced as a protocol error of its own (a
 * "malloc failure" or "internal error" reason); its peer sees the
 * connection go: the alert it got, a reset, a truncation. OpenSSL loses
 * the cause of some failures inside certificate verification (a public
 * key that could not be decoded for want of memory is "a decode error"):
 * those end as a verification failure of the peer's certificate. */
static bool acceptable(const char *name, int code)
{
    static const char *const ok[] = {"ECONNRESET", "EPIPE", "ERR_SSL_UNEXPECTED_EOF_WHILE_READING",
                                     "ERR_TLS_HANDSHAKE_TIMEOUT", "UNSPECIFIED",
                                     "CERT_SIGNATURE_FAILURE", "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY",
                                     "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
                                     "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
                                     "ERR_TLS_CERT_ALTNAME_INVALID", NULL};
    if (code == DX_ENOMEM)
        return true;
    if (strncmp(name, "ERR_SSL_", 8) == 0 || strncmp(name, "ERR_OSSL_", 9) == 0)
        return true;
    for (const char *const *p = ok; *p; p++)
        if (strcmp(name, *p) == 0)
            return true;
    return false;
}

static void ctx_note(tls_outcome *o, int rc)
{
    if (rc == DX_ENOMEM)
        o->enomem = true;
    if (rc < 0 && !o->setup_rc)
        o->setup_rc = rc;
}

/* One TLS connection over a memory pair: a handshake, TLS_LEN bytes each
 * way, both ends; allocations fail from the n-th on. */
/* The rich runs: a session from an earlier run, resumed. */
static uint8_t tls_session[4][8192];
static size_t tls_session_len[4];
static const uint8_t tls_ticket_keys[48] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
static const char *const tls_alpn[] = {"h2", "http/1.1", NULL};

typedef struct tls_side_user {
    int v;
    unsigned sessions;
    bool resumed;
    char alpn[16];
} tls_side_user;

static void tls_on_secure(dx_tls *t, void *u)
{
    tls_side_user *su = u;
    su->resumed = dx_tls_session_reused(t);
    const char *a = dx_tls_alpn_protocol(t);
    snprintf(su->alpn, sizeof(su->alpn), "%s", a ? a : "");
}

/* Whether new sessions replace the one the rich runs offer. Off during a
 * sweep: every run then offers the same bytes, and the client context's
 * copy of their decoded session stays the one counted before the sweep. */
static bool tls_recording = true;

static void tls_on_session(dx_tls *t, const uint8_t *sess, size_t len, void *u)
{
    (void)t;
    tls_side_user *su = u;
    su->sessions++;
    if (tls_recording && len <= sizeof(tls_session[0])) {
        memcpy(tls_session[su->v], sess, len);
        tls_session_len[su->v] = len;
    }
}

static const dx_tls_events tls_client_events = {.on_secure = tls_on_secure,
                                                .on_session = tls_on_session};

static tls_outcome tls_run(int v, long n, bool once, bool rich)
{
    tls_outcome o = {0};
    static uint8_t buf[TLS_LEN];
    h_rec r[2] = {{.verify = true, .verify_seed = 21}, {.verify = true, .verify_seed = 20}};
    dx_tls *t[2] = {NULL, NULL};
    dx_stream *a = NULL, *b = NULL;
    h_fake_now = 1000;
    if (once)
        h_alloc_fail_only(n);
    else
        h_alloc_fail_from(n);
    int rc = dx_pair_new(NULL, &a, &b);
    ctx_note(&o, rc);
    dx_tls_server *srv = NULL;
    tls_side_user su = {.v = v};
    if (rc == 0) {
        rc = dx_tls_new(tls_cctx[v], DX_TLS_CLIENT, &t[0]);
        ctx_note(&o, rc);
        if (rc == 0 && !rich) {
            rc = dx_tls_new(tls_sctx[v], DX_TLS_SERVER, &t[1]);
            ctx_note(&o, rc);
        }
        if (rc == 0) {
            rc = dx_tls_attach(t[0], a);
            a = NULL; /* owned from here */
            ctx_note(&o, rc);
        }
        if (rc == 0 && !rich) {
            rc = dx_tls_attach(t[1], b);
            b = NULL;
            ctx_note(&o, rc);
        }
        if (rc == 0) {
            rc = dx_tls_set_servername(t[0], "localhost");
            ctx_note(&o, rc);
        }
        if (rc == 0 && rich) {
            /* a server object with an SNI context and ALPN; a client that
             * offers ALPN and resumes a session of an earlier run */
            rc = dx_tls_set_events(t[0], &tls_client_events, &su);
            if (rc == 0)
                rc = dx_tls_set_alpn_protocols(t[0], tls_alpn);
            if (rc == 0 && tls_session_len[v])
                rc = dx_tls_set_session(t[0], tls_session[v], tls_session_len[v]);
            if (rc == 0)
                rc = dx_tls_server_new(tls_sctx[v], &srv);
            if (rc == 0)
                rc = dx_tls_server_set_ticket_keys(srv, tls_ticket_keys);
            if (rc == 0)
                rc = dx_tls_server_add_context(srv, "localhost", tls_sctx[v]);
            if (rc == 0)
                rc = dx_tls_server_set_alpn_protocols(srv, tls_alpn);
            ctx_note(&o, rc);
        }
    }
    if (rc == 0 && rich) {
        dx_tls_start(t[0]); /* the ClientHello waits in the pair */
        dx_stream *tb = b;
        b = NULL;
        rc = dx_tls_server_accept(srv, tb, &t[1]); /* owns tb, also on failure */
        ctx_note(&o, rc);
    }
    if (rc == 0) {
        for (int i = 0; i < 2; i++) {
            dx_tls_set_clock(t[i], h_fake_clock, NULL);
            h_rec_attach(&r[i], dx_tls_upper(t[i]));
        }
        if (!rich) {
            ck_assert_int_eq(dx_tls_start(t[1]), 0);
            ck_assert_int_eq(dx_tls_start(t[0]), 0);
        }
        for (int i = 0; i < 2; i++) {
            h_gen_fill(20 + (uint64_t)i, 0, buf, sizeof(buf));
            int w = dx_stream_write(dx_tls_upper(t[i]), buf, sizeof(buf));
            ck_assert_msg(w == 0 || w == DX_FULL || w == DX_ENOMEM || r[i].errors,
                          "n=%ld: write %d: %s (%.*s)", n, i, dx_err_name(w), (int)r[i].nlog, r[i].log);
            ctx_note(&o, w);
        }
        for (int i = 0; i < 2; i++)
            ctx_note(&o, dx_stream_end(dx_tls_upper(t[i])));
        /* a run stuck for want of memory: the handshake timeout ends it */
        if (!r[0].closes || !r[1].closes) {
            h_fake_now += DX_TLS_DEFAULT_HANDSHAKE_TIMEOUT_MS + 1;
            dx_tls_check_timeouts(t[0]);
            dx_tls_check_timeouts(t[1]);
        }
        for (int i = 0; i < 2; i++) {
            h_rec_assert_clean(&r[i]);
            ck_assert_msg(!r[i].mismatch, "n=%ld: corrupted data", n);
            if (r[i].errors) {
                o.errors++;
                ck_assert_msg(acceptable(r[i].error_name, r[i].error_code),
                              "n=%ld: %s failed with %s", n, i ? "server" : "client",
                              r[i].error_name);
                if (r[i].error_code == DX_ENOMEM)
                    o.enomem = true;
                snprintf(o.names[i], sizeof(o.names[i]), "%s", r[i].error_name);
            }
        }
        o.completed = !r[0].errors && !r[1].errors && r[0].received == TLS_LEN &&
                      r[1].received == TLS_LEN && r[0].closes && r[1].closes;
        if (o.completed && rich && n < 0) {
            ck_assert_str_eq(su.alpn, "h2");
            if (!su.resumed)
                ck_assert_uint_gt(su.sessions, 0);
        }
        o.resumed = su.resumed;
        if (!o.completed)
            ck_assert_msg(r[0].closes && r[1].closes, "n=%ld: a side never closed (%.*s / %.*s)",
                          n, (int)r[0].nlog, r[0].log, (int)r[1].nlog, r[1].log);
    }
    o.made = h_alloc_count();
    h_alloc_fail_from(-1);
    dx_tls_destroy(t[0]);
    dx_tls_destroy(t[1]);
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    dx_tls_server_free(srv);
    return o;
}

/* Fail the n-th allocation, libduplex's or OpenSSL's, for every n (that
 * one alone, or from it on) through a TLS handshake, a transfer both ways and the ends: each run
 * completes, or ends with both sides closed and the acceptable errors
 * above, nothing corrupted, nothing leaked by either allocator. OpenSSL's
 * lazily made tables are warmed up by a first clean run. Under valgrind
 * every 37th n is tried (DX_TEST_SAMPLE=k sets another step). */
START_TEST(tls_every_failing_allocation_ends_cleanly)
{
    int v = _i % 2 ? 3 : 2;
    bool once = _i % 4 >= 2;
    bool rich = _i >= 4;
    h_alloc_fail_openssl(true);
    tls_outcome warm = tls_run(v, -1, false, rich);
    ck_assert(warm.completed);
    warm = tls_run(v, -1, false, rich);
    ck_assert(warm.completed);
    ck_assert(warm.resumed == rich); /* the rich runs resume the first one's session */
    tls_recording = false;
    warm = tls_run(v, -1, false, rich); /* the session the sweep offers, decoded */
    ck_assert(warm.completed);
    ck_assert(warm.resumed == rich);
    /* OpenSSL keeps per-thread state (its error queue, whose data
     * buffers stay for reuse): released before each count */
    OPENSSL_thread_stop();
    size_t live0 = h_alloc_live(), ossl0 = h_ossl_live();
    long step = 1;
    const char *e = getenv("DX_TEST_SAMPLE");
    if (e && atol(e) > 0)
        step = atol(e);
#ifdef DX_UNDER_VALGRIND_CHECK
    if (step == 1 && RUNNING_ON_VALGRIND)
        step = 37;
#endif
    long n = 0, runs = 0, completed = 0, failed_enomem = 0;
    for (;; n += step, runs++) {
        tls_outcome o = tls_run(v, n, once, rich);
        long made = o.made;
        if (getenv("DX_TEST_DEBUG"))
            fprintf(stderr, "n=%ld completed=%d %s %s %s\n", n, o.completed, o.names[0],
                    o.names[1], o.setup_rc ? dx_err_name(o.setup_rc) : "");
        OPENSSL_thread_stop();
        ck_assert_msg(h_alloc_live() == live0, "n=%ld: %zu bytes of libduplex leaked", n,
                      h_alloc_live() - live0);
        ck_assert_msg(h_ossl_live() <= ossl0, "n=%ld: %zu bytes of OpenSSL leaked", n,
                      h_ossl_live() - ossl0);
        if (o.completed)
            completed++;
        if (o.enomem)
            failed_enomem++;
        if (made <= n)
            break; /* the n-th allocation was never made: the sweep is over */
        ck_assert_msg(n < 200000, "no end after %ld", n);
    }
    h_alloc_fail_openssl(false);
    tls_recording = true;
    /* OpenSSL's allocations were counted (a resumed TLS 1.2 handshake,
     * with its session decoded already, makes the fewest) */
    ck_assert_int_gt(n, rich && v == 2 ? 400 : 1000);
    /* Runs that failed name the cause, DX_ENOMEM on the side that ran
     * out, in at least 40% of the cases (about 55% when the n-th alone
     * fails, all of them when every later one fails too): where OpenSSL
     * loses the cause, the side reports OpenSSL's "internal error" or
     * the certificate's failure, and its peer the alert. */
    ck_assert_msg(failed_enomem * 5 >= (runs - completed) * 2,
                  "%ld of %ld failed runs with DX_ENOMEM", failed_enomem, runs - completed);
    fprintf(stderr, "alloc: TLS %s%s, %s: %ld allocation points (every %ld-th tried), %ld "
                    "completed anyway, %ld with DX_ENOMEM\n", v == 3 ? "1.3" : "1.2",
            rich ? " (server object, SNI, ALPN, resumption)" : "", once ? "the n-th only" : "from the n-th on", n, step, completed, failed_enomem);
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
    TCase *tls = tcase_create("tls");
    tcase_add_unchecked_fixture(tls, tls_setup, tls_teardown);
    tcase_set_timeout(tls, 300);
    tcase_add_loop_test(tls, tls_every_failing_allocation_ends_cleanly, 0, 8);
    suite_add_tcase(s, tls);
    return s;
}
