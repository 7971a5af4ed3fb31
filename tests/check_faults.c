/*
 * The fault campaign: a TLS client and server (TLS 1.2 and TLS 1.3)
 * connected through a fault filter (<duplex/netem.h>) and a seeded
 * fragmenting filter, in driven time, with one fault per run: a flipped
 * bit, a dropped span, injected garbage, a stall, a truncation, a hang-up,
 * a reset, or a pause shorter than every timeout, in either direction, at every byte offset of the handshake
 * flights and of the close_notify exchange and at a stride through a
 * transfer of 8 KiB each way. Every run must end (both sides closed
 * within bounded driven time), each side either receiving exactly the
 * bytes sent and a clean end or failing with an error from the set
 * written down for the fault kind, with only a prefix of the sent bytes
 * delivered, at most one error and exactly one close per side, and every
 * byte of memory given back. A run where TLS carries on as if nothing
 * happened must fall in a place explained in tolerated() (after a pause
 * it must, everywhere). The counts are
 * printed as "faults: N injected, N survived" per kind and version, the
 * figure of doc/reliability.md.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define ON_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#endif
#endif
#ifndef ON_VALGRIND
#define ON_VALGRIND() false
#endif
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN true
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN true
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN false
#endif

/* ---- the plan -------------------------------------------------------------- */

/* The kinds; "pause" is a stall that ends (PAUSE_MS, shorter than every
 * timeout): after it, everything must arrive intact. */
enum { N_KINDS = 8, PAUSE = 7 };
static const dx_fault_kind kinds[N_KINDS] = {
    DX_FAULT_FLIP, DX_FAULT_DROP, DX_FAULT_INJECT, DX_FAULT_STALL,
    DX_FAULT_TRUNCATE, DX_FAULT_END, DX_FAULT_RESET, DX_FAULT_STALL,
};
static const char *const kind_names[N_KINDS] = {
    "flip", "drop", "inject", "stall", "truncate", "end", "reset", "pause",
};
#define PAUSE_MS 5000u
static const char *const versions[] = {"TLSv1.2", "TLSv1.3"};

/* Span lengths of DROP and INJECT, chosen by the offset. */
static const uint64_t span_lens[] = {1, 3, 16, 200};

/* Driven time: the handshake timeout of both sides, the idle timeout after
 * which the test destroys a side (as a Node application does on
 * 'timeout'), and the bound every run must end within. */
#define HS_TIMEOUT_MS 10000u
#define IDLE_MS 30000u
#define TIME_BOUND_MS (HS_TIMEOUT_MS + 2u * IDLE_MS)

/* The application: each side writes DATA_LEN bytes (in these writes) as
 * soon as it is secure; the client ends once it has the server's bytes,
 * and the server ends when the client's close_notify arrives. */
#define DATA_LEN 8192u
static const size_t writes[] = {1000, 3000, 4192};
#define SEED_C2S 31u
#define SEED_S2C 32u

/* Every offset of the handshake flights and of the close_notify records;
 * one in DATA_STRIDE through the application records; under valgrind one
 * run in VALGRIND_SAMPLE of those, in the ASan build one in ASAN_SAMPLE
 * (DX_FAULTS_SAMPLE overrides both). */
#define DATA_STRIDE 11u
#define VALGRIND_SAMPLE 47u
#define ASAN_SAMPLE 3u

/* ---- certificates and contexts ------------------------------------------------ */

static dx_pki_cert *ca, *leaf;

static void make_pki(void)
{
    static const char *const dns[] = {"localhost", NULL};
    dx_pki_opts o = {.key_type = DX_PKI_ED25519, .common_name = "Faults CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &o, &ca, NULL));
    dx_pki_opts l = {.key_type = DX_PKI_ED25519, .common_name = "server", .dns_names = dns,
                     .ext_key_usage = DX_PKI_EKU_SERVER};
    H_MUST(dx_pki_issue(ca, &l, &leaf, NULL));
}

static void free_pki(void)
{
    dx_pki_cert_free(leaf);
    dx_pki_cert_free(ca);
    leaf = ca = NULL;
}

static dx_tls_ctx *make_ctx(bool server, const char *version)
{
    return h_tls_ctx(ca, server ? leaf : NULL, version);
}

/* ---- one connection -------------------------------------------------------------
 *   client upper | client TLS | fault | fragment | pair | server TLS | server upper
 * DOWN (index 0) is client -> server, UP (index 1) server -> client. */

typedef struct layout {
    uint8_t bytes[2][32768]; /* the reference run's records, each way */
    size_t len[2];
    size_t hs[2];            /* bytes each way before the first data write */
    size_t rec[2][64];       /* record starts */
    size_t nrec[2];
    size_t data_at[2], data_end[2]; /* the record of the application's bytes */
} layout;

typedef struct fconn {
    dx_tls *c, *s;
    dx_filter *fault, *frag;
    h_rec cr, sr;
    unsigned c_secure, s_secure;
    unsigned idle[2]; /* idle timeouts the test acted on: client, server */
    size_t sent[2];   /* bytes accepted by dx_stream_write: client, server */
    size_t hs[2];     /* bytes_in of each direction at its first data write */
    layout *ref;      /* the reference run: tap the fault filter into it */
} fconn;

static void write_all(fconn *k, int side)
{
    dx_stream *up = dx_tls_upper(side == 0 ? k->c : k->s);
    uint8_t buf[4192];
    uint64_t seed = side == 0 ? SEED_C2S : SEED_S2C;
    k->hs[side] = dx_filter_bytes_in(k->fault, side == 0 ? DX_FILTER_DOWN : DX_FILTER_UP);
    for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
        h_gen_fill(seed, k->sent[side], buf, writes[i]);
        int rc = dx_stream_write(up, buf, writes[i]);
        if (rc < 0)
            return;
        k->sent[side] += writes[i];
    }
}

static void on_secure(dx_tls *t, void *u)
{
    fconn *k = u;
    if (t == k->c) {
        k->c_secure++;
        write_all(k, 0);
    } else {
        k->s_secure++;
        write_all(k, 1);
    }
}

/* The idle timeout: the application gives up on the connection. */
static void on_timeout(dx_tls *t, void *u)
{
    fconn *k = u;
    k->idle[t == k->c ? 0 : 1]++;
    dx_stream_destroy_with_error(dx_tls_upper(t),
                                 dx_error_new(DX_ETIMEDOUT, "IDLE_TIMEOUT", "test",
                                              "no traffic for %u ms", IDLE_MS));
}

static const dx_tls_events fc_events = {.on_secure = on_secure, .on_timeout = on_timeout};

/* The client ends once it has everything the server sent. */
static void client_event(h_rec *r, char ev)
{
    if (ev == H_EV_DATA && r->received == DATA_LEN)
        dx_stream_end(r->s);
}

static void ref_tap(dx_filter *f, unsigned dir, uint64_t off, const uint8_t *d, size_t n,
                    void *u)
{
    (void)f;
    layout *l = u;
    int i = dir == DX_FILTER_DOWN ? 0 : 1;
    if (!d || off + n > sizeof(l->bytes[i]))
        return;
    memcpy(l->bytes[i] + off, d, n);
    if (off + n > l->len[i])
        l->len[i] = off + n;
}

static void fc_open(fconn *k, dx_tls_ctx *cctx, dx_tls_ctx *sctx, uint64_t seed)
{
    memset(k, 0, sizeof(*k));
    h_fake_now = 0;
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &k->c), 0);
    ck_assert_int_eq(dx_tls_new(sctx, DX_TLS_SERVER, &k->s), 0);
    ck_assert_int_eq(dx_tls_set_servername(k->c, "localhost"), 0);
    dx_tls_set_events(k->c, &fc_events, k);
    dx_tls_set_events(k->s, &fc_events, k);
    dx_tls *both[2] = {k->c, k->s};
    for (int i = 0; i < 2; i++) {
        dx_tls_set_clock(both[i], h_fake_clock, NULL);
        ck_assert_int_eq(dx_tls_set_handshake_timeout(both[i], HS_TIMEOUT_MS), 0);
        ck_assert_int_eq(dx_tls_set_idle_timeout(both[i], IDLE_MS), 0);
    }
    ck_assert_int_eq(dx_fault_new(seed, &k->fault), 0);
    dx_fragment_opts fo = {.dirs = DX_FILTER_BOTH, .min = 1, .max = 700, .seed = seed};
    ck_assert_int_eq(dx_fragment_new(&fo, &k->frag), 0);
    dx_filter_set_clock(k->fault, h_fake_clock, NULL);
    dx_filter_set_clock(k->frag, h_fake_clock, NULL);
    k->cr.verify = k->sr.verify = true;
    k->sr.verify_seed = SEED_C2S;
    k->cr.verify_seed = SEED_S2C;
    k->cr.on_event = client_event;
    h_rec_attach(&k->cr, dx_tls_upper(k->c));
    h_rec_attach(&k->sr, dx_tls_upper(k->s));
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_tls_attach(k->c, dx_filter_upper(k->fault)), 0);
    ck_assert_int_eq(dx_filter_attach(k->fault, dx_filter_upper(k->frag)), 0);
    ck_assert_int_eq(dx_filter_attach(k->frag, a), 0);
    ck_assert_int_eq(dx_tls_attach(k->s, b), 0);
}

static uint64_t earliest(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* Starts both sides and drives the clock from deadline to deadline until
 * both have closed. Returns false if nothing is due while a side is still
 * open (a hang) or the bound is passed. */
static bool fc_run(fconn *k)
{
    dx_tls_start(k->s);
    dx_tls_start(k->c);
    while (!(k->cr.closes && k->sr.closes)) {
        uint64_t d = earliest(earliest(dx_tls_deadline(k->c), dx_tls_deadline(k->s)),
                              earliest(dx_filter_deadline(k->fault),
                                       dx_filter_deadline(k->frag)));
        if (d == UINT64_MAX || d > TIME_BOUND_MS)
            return false;
        if (d > h_fake_now)
            h_fake_now = d;
        dx_filter_check_timeouts(k->fault);
        dx_filter_check_timeouts(k->frag);
        dx_tls_check_timeouts(k->c);
        dx_tls_check_timeouts(k->s);
    }
    return true;
}

static void fc_destroy(fconn *k)
{
    dx_tls_destroy(k->c);
    dx_tls_destroy(k->s);
    dx_filter_destroy(k->fault);
    dx_filter_destroy(k->frag);
    h_rec_free(&k->cr);
    h_rec_free(&k->sr);
}

/* ---- the reference run: no fault ------------------------------------------------ */

static void parse_records(layout *l)
{
    for (int i = 0; i < 2; i++) {
        size_t at = 0;
        l->nrec[i] = 0;
        while (at + 5 <= l->len[i] && l->nrec[i] < 64) {
            l->rec[i][l->nrec[i]++] = at;
            size_t len = (size_t)l->bytes[i][at + 3] << 8 | l->bytes[i][at + 4];
            if (len > DATA_LEN / 2) {
                ck_assert_uint_eq(l->data_end[i], 0); /* one such record */
                l->data_at[i] = at;
                l->data_end[i] = at + 5 + len;
            }
            at += 5 + len;
        }
        ck_assert_uint_eq(at, l->len[i]);
        ck_assert_uint_ge(l->data_at[i], l->hs[i]);
        ck_assert_uint_gt(l->data_end[i], 0);
    }
}

static void reference(layout *l, dx_tls_ctx *cctx, dx_tls_ctx *sctx)
{
    size_t live0 = h_alloc_live();
    memset(l, 0, sizeof(*l));
    fconn k;
    fc_open(&k, cctx, sctx, 1);
    ck_assert_int_eq(dx_filter_set_tap(k.fault, ref_tap, l), 0);
    ck_assert(fc_run(&k));
    ck_assert_uint_eq(k.cr.errors + k.sr.errors + k.idle[0] + k.idle[1], 0);
    ck_assert_uint_eq(k.cr.received, DATA_LEN);
    ck_assert_uint_eq(k.sr.received, DATA_LEN);
    ck_assert(dx_tls_clean_end(k.c) && dx_tls_clean_end(k.s));
    ck_assert_uint_eq(h_fake_now, 0); /* nothing waited */
    l->hs[0] = k.hs[0];
    l->hs[1] = k.hs[1];
    h_rec_assert_clean(&k.cr);
    h_rec_assert_clean(&k.sr);
    fc_destroy(&k);
    ck_assert_uint_eq(h_alloc_live(), live0);
    parse_records(l);
}

/* ---- one run and its verdict ---------------------------------------------------- */

typedef struct tally {
    unsigned injected, survived, tolerated, idle, failed;
    char names[32][64]; /* the error names seen, with counts */
    unsigned counts[32];
    unsigned nnames;
    char first_failure[512];
} tally;

static void note_name(tally *t, const char *name)
{
    for (unsigned i = 0; i < t->nnames; i++)
        if (strcmp(t->names[i], name) == 0) {
            t->counts[i]++;
            return;
        }
    if (t->nnames < 32) {
        snprintf(t->names[t->nnames], sizeof(t->names[0]), "%s", name);
        t->counts[t->nnames++] = 1;
    }
}

/* Where an offset falls in the reference run of direction d: before the
 * record that carries the application's bytes (the handshake flights, and
 * in TLS 1.3 the server's session tickets), in that record's header,
 * explicit nonce (TLS 1.2) or tag, in its payload, or after it (the
 * close_notify). */
typedef enum region { R_HANDSHAKE, R_EDGE, R_DATA, R_CLOSE } region;
static const char *const region_names[] = {"handshake", "edge", "data", "close"};

static region region_of(const layout *l, int d, size_t off)
{
    if (off < l->data_at[d])
        return R_HANDSHAKE;
    if (off >= l->data_end[d])
        return R_CLOSE;
    if (off < l->data_at[d] + 5 + 8 || off >= l->data_end[d] - 16)
        return R_EDGE;
    return R_DATA;
}

/* ---- what each fault may do ---------------------------------------------------
 * The error names a side may end with, per fault kind. Besides its own,
 * every kind may leave a side with what a peer that failed or hung up
 * looks like (PEER_GONE): its transport reset (ECONNRESET), a write to a
 * transport the peer already closed (EPIPE), or the transport's end
 * without close_notify (ERR_SSL_UNEXPECTED_EOF_WHILE_READING). */
#define PEER_GONE "ECONNRESET", "EPIPE", "ERR_SSL_UNEXPECTED_EOF_WHILE_READING"

/* Damage (flip, drop, inject) in an application or close_notify record:
 * the record's MAC or tag fails (or the peer's alert saying so), or its
 * header no longer reads as one (version, length, type), or a length
 * grown or bytes lost leave the receiver waiting until its idle timeout. */
static const char *const record_damage[] = {
    PEER_GONE,
    "ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC", "ERR_SSL_SSLV3_ALERT_BAD_RECORD_MAC",
    "ERR_SSL_WRONG_VERSION_NUMBER", "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION",
    "ERR_SSL_PACKET_LENGTH_TOO_LONG", "ERR_SSL_TLSV1_ALERT_RECORD_OVERFLOW",
    "ERR_SSL_BAD_RECORD_TYPE", "ERR_SSL_SSLV3_ALERT_UNEXPECTED_MESSAGE",
    "ERR_SSL_TLSV1_ALERT_DECODE_ERROR",
    /* OpenSSL 3.0, TLS 1.2 with AES-GCM: a record whose length shrank
     * below its explicit nonce and tag (24 bytes) fails as internal_error
     * (the cipher refuses its AAD in tls1_enc()) */
    "ERR_SSL_INTERNAL_ERROR", "ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR",
    "IDLE_TIMEOUT",
    NULL,
};

/* Damage in the handshake flights fails whichever of OpenSSL's checks the
 * bytes reach first: any OpenSSL reason (an "ERR_SSL_" name: parsing,
 * signatures, Finished, the peer's alert), a verification code of the
 * damaged certificate, or, where a length grew or bytes were lost, the
 * handshake or idle timeout. */
static const char *const handshake_damage[] = {
    PEER_GONE,
    "CERT_SIGNATURE_FAILURE", "CERT_HAS_EXPIRED", "CERT_NOT_YET_VALID",
    "ERROR_IN_CERT_NOT_BEFORE_FIELD", "ERROR_IN_CERT_NOT_AFTER_FIELD",
    "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY", "ERR_TLS_CERT_ALTNAME_INVALID",
    /* Node's name for a verification that failed without a code (the
     * damaged certificate could not be processed at all) */
    "UNSPECIFIED",
    "ERR_TLS_HANDSHAKE_TIMEOUT", "IDLE_TIMEOUT",
    NULL,
};

/* A stall: the handshake timeout, or once both sides are secure the
 * test's idle timeout, ends the side left waiting. */
static const char *const stall_set[] = {
    PEER_GONE, "ERR_TLS_HANDSHAKE_TIMEOUT", "IDLE_TIMEOUT", NULL,
};

/* A truncation or a hang-up: the end of the transport without
 * close_notify (PEER_GONE's ERR_SSL_UNEXPECTED_EOF_WHILE_READING), and on
 * the other side the reset its failing peer leaves. A reset: ECONNRESET,
 * and the end its failing peer leaves. */
static const char *const eof_set[] = {PEER_GONE, NULL};

static bool in_set(const char *const *set, const char *name)
{
    for (; *set; set++)
        if (strcmp(*set, name) == 0)
            return true;
    return false;
}

static bool expected(int kind_index, region reg, const char *name)
{
    if (kind_index == PAUSE)
        return false; /* no error at all */
    switch (kinds[kind_index]) {
    case DX_FAULT_FLIP:
    case DX_FAULT_DROP:
    case DX_FAULT_INJECT:
        if (reg != R_HANDSHAKE)
            return in_set(record_damage, name);
        return strncmp(name, "ERR_SSL_", 8) == 0 || in_set(handshake_damage, name);
    case DX_FAULT_STALL:
        return in_set(stall_set, name);
    default:
        return in_set(eof_set, name);
    }
}

/*
 * Why a run where both sides carried on intact is right, or NULL. Two
 * places only:
 *  - the offset is the length of the direction: the fault waits for a
 *    byte (or a count of bytes) that never comes, so nothing is damaged;
 *  - (and for a pause, everywhere: that is its point)
 *  - a flip at offset 2, the low byte of the first record's version: the
 *    first record each way is read before a version is agreed, and
 *    OpenSSL checks only its major byte there (RFC 8446 5.1: ignored;
 *    RFC 5246 E.1: any 0x03XX).
 */
static const char *tolerated(const layout *l, int kind_index, int d, size_t off)
{
    dx_fault_kind kind = kinds[kind_index];
    if (kind_index == PAUSE)
        return "a pause: the link resumes before any timeout";
    if (off == l->len[d])
        return "past the last byte";
    if (kind == DX_FAULT_FLIP && off == 2)
        return "the first record's minor version";
    return NULL;
}

/* Checks one side; returns NULL or what is wrong. */
static const char *side_verdict(fconn *k, int side, int kind, region reg, tally *t,
                                bool *ok)
{
    h_rec *r = side == 0 ? &k->cr : &k->sr;
    size_t peer_sent = k->sent[1 - side];
    *ok = false;
    if (r->violations)
        return r->violation;
    if (r->closes != 1)
        return "not closed exactly once";
    if (r->errors > 1)
        return "more than one error";
    if (r->received > peer_sent)
        return "more bytes than were sent";
    if (r->errors == 0) {
        if (r->received == DATA_LEN && r->ends == 1 && k->sent[side] == DATA_LEN) {
            *ok = true;
            return NULL;
        }
        return "closed without error before the exchange completed";
    }
    note_name(t, r->error_name);
    if (strcmp(r->error_name, "IDLE_TIMEOUT") == 0 && !k->idle[side])
        return "IDLE_TIMEOUT without the idle timeout";
    if (!expected(kind, reg, r->error_name))
        return r->error_name;
    return NULL;
}

/* ---- the campaign ------------------------------------------------------------- */

static unsigned sample_every(void)
{
    const char *e = getenv("DX_FAULTS_SAMPLE");
    if (e && atoi(e) > 0)
        return (unsigned)atoi(e);
    if (ON_VALGRIND())
        return VALGRIND_SAMPLE;
    return UNDER_ASAN ? ASAN_SAMPLE : 1;
}

/* Whether offset off of direction d is one the campaign hits: every
 * offset but in the records' payloads after the handshake, one in
 * DATA_STRIDE there. */
static bool planned(const layout *l, int d, size_t off)
{
    return region_of(l, d, off) != R_DATA || (off - l->data_at[d]) % DATA_STRIDE == 0;
}

static void campaign(int version, int kind_index)
{
    dx_tls_ctx *cctx = make_ctx(false, versions[version]);
    dx_tls_ctx *sctx = make_ctx(true, versions[version]);
    /* The reference layout of each version, made once per process (the
     * same bytes each way on every run: Ed25519 signatures are
     * deterministic and the rest is fixed-size, so offsets mean the same;
     * checked by making it twice). */
    static layout layouts[2], again;
    static bool have_layout[2];
    layout *lp = &layouts[version];
    if (!have_layout[version]) {
        reference(lp, cctx, sctx);
        reference(&again, cctx, sctx);
        for (int d = 0; d < 2; d++) {
            ck_assert_uint_eq(again.len[d], lp->len[d]);
            ck_assert_uint_eq(again.nrec[d], lp->nrec[d]);
            ck_assert_mem_eq(again.rec[d], lp->rec[d], lp->nrec[d] * sizeof(lp->rec[d][0]));
        }
        have_layout[version] = true;
    }
    const layout *l = lp;
    static tally t;
    memset(&t, 0, sizeof(t));
    unsigned every = sample_every(), n = 0;
    dx_fault_kind kind = kinds[kind_index];
    /* DX_FAULTS_ONLY="<dir 0|1> <offset>" replays one offset. */
    const char *o = getenv("DX_FAULTS_ONLY");
    int only_dir = 0;
    size_t only_off = 0;
    bool only = o && sscanf(o, "%d %zu", &only_dir, &only_off) == 2;
    if (getenv("DX_FAULTS_VERBOSE"))
        for (int d = 0; d < 2; d++) {
            fprintf(stderr, "%s %s: %zu bytes, handshake %zu, records at", versions[version],
                    d == 0 ? "c->s" : "s->c", l->len[d], l->hs[d]);
            for (size_t i = 0; i < l->nrec[d]; i++)
                fprintf(stderr, " %zu:%02x", l->rec[d][i], l->bytes[d][l->rec[d][i]]);
            fprintf(stderr, "\n");
        }
    for (int d = 0; d < 2; d++) {
        for (size_t off = 0; off <= l->len[d]; off++) {
            if (only && (d != only_dir || off != only_off))
                continue;
            if (!only && (!planned(l, d, off) || n++ % every != 0))
                continue;
            size_t live0 = h_alloc_live();
            uint64_t seed = ((uint64_t)version << 40) ^ ((uint64_t)kind_index << 32) ^
                            ((uint64_t)d << 24) ^ off;
            fconn k;
            fc_open(&k, cctx, sctx, seed);
            dx_fault f = {.kind = kind, .dir = d == 0 ? DX_FILTER_DOWN : DX_FILTER_UP,
                          .offset = off};
            if (kind == DX_FAULT_DROP || kind == DX_FAULT_INJECT)
                f.len = span_lens[off % 4];
            if (kind_index == PAUSE)
                f.ms = PAUSE_MS;
            ck_assert_int_eq(dx_fault_add(k.fault, &f), 0);
            t.injected++;
            bool ended = fc_run(&k);
            const char *why = NULL;
            bool ok[2] = {false, false};
            region reg = region_of(l, d, off);
            if (!ended)
                why = "the run did not end";
            for (int side = 0; side < 2; side++) {
                const char *w = side_verdict(&k, side, kind_index, reg, &t, &ok[side]);
                if (!why)
                    why = w;
            }
            fc_destroy(&k);
            if (!why && h_alloc_live() != live0)
                why = "memory not given back";
            if (!why && ok[0] && ok[1]) {
                if (tolerated(l, kind_index, d, off))
                    t.tolerated++;
                else
                    why = "TLS carried on intact where it should not have";
            }
            if (why) {
                t.failed++;
                if (!t.first_failure[0])
                    snprintf(t.first_failure, sizeof(t.first_failure),
                             "%s %s %s at %zu: %s (client %s, server %s)", versions[version],
                             kind_names[kind_index], d == 0 ? "c->s" : "s->c", off, why,
                             k.cr.error_name, k.sr.error_name);
            } else {
                t.survived++;
            }
            if (getenv("DX_FAULTS_VERBOSE"))
                fprintf(stderr, "RUN %s %s %s %zu %s client=%s%s server=%s%s why=%s\n",
                        versions[version], kind_names[kind_index], d == 0 ? "c->s" : "s->c",
                        off, region_names[reg],
                        ok[0] ? "OK" : k.cr.error_name, k.cr.errors ? "" : "-",
                        ok[1] ? "OK" : k.sr.error_name, k.sr.errors ? "" : "-",
                        why ? why : "");
        }
    }
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
    printf("faults: %s %s: %u injected, %u survived (%u carried on intact)\n",
           versions[version], kind_names[kind_index], t.injected, t.survived, t.tolerated);
    if (getenv("DX_FAULTS_VERBOSE"))
        for (unsigned i = 0; i < t.nnames; i++)
            printf("    %s %u\n", t.names[i], t.counts[i]);
    fflush(stdout);
    ck_assert_msg(t.failed == 0, "%u of %u runs broke an invariant; first: %s", t.failed,
                  t.injected, t.first_failure);
}

START_TEST(fault_campaign)
{
    campaign(_i / N_KINDS, _i % N_KINDS);
}
END_TEST

Suite *faults_suite(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("campaign");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, fault_campaign, 0, 2 * N_KINDS);
    suite_add_tcase(s, tc);
    return s;
}
