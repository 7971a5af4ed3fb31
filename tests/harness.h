/*
 * Test harness shared by the unit suites: a counting allocator, connected
 * channels of each kind (memory pair, pipe pair), a loop driver, an event
 * recorder that checks the stream contract on every event, and a
 * deterministic byte generator for transfers checked byte by byte.
 */
#ifndef DX_TESTS_HARNESS_H
#define DX_TESTS_HARNESS_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <duplex/duplex.h>

/* ---- allocation accounting ---- */

/* Installs the counting allocator; call before any libduplex object. */
void h_alloc_install(void);
/* Bytes currently allocated by libduplex, and the most since the reset. */
size_t h_alloc_live(void);
size_t h_alloc_peak(void);
void h_alloc_reset_peak(void);
/* Makes the n-th allocation from now (0-based) and every later one fail;
 * n < 0 turns failures off. */
void h_alloc_fail_from(long n);
/* Bytes OpenSSL has allocated and not freed (counted from
 * h_alloc_install() on). */
size_t h_ossl_live(void);
/* Makes the n-th allocation from now (0-based) fail, and no other. */
void h_alloc_fail_only(long n);
/* Allocations made since the last h_alloc_fail_from() or
 * h_alloc_fail_only(). */
long h_alloc_count(void);
/* Whether OpenSSL's allocations count, and fail, with libduplex's in
 * h_alloc_fail_from() and h_alloc_count() (off by default). */
void h_alloc_fail_openssl(bool on);

/* ---- channels ---- */

typedef enum { H_MEM = 0, H_PIPE = 1, H_KINDS = 2 } h_kind;

typedef struct h_chan {
    h_kind kind;
    dx_stream *a, *b;
} h_chan;

/* Opens a connected pair of streams: a memory pair (opts may be NULL) or
 * two pipes with an fd stream at each end. */
void h_chan_open(h_chan *c, h_kind kind, const dx_pair_opts *opts);
/* Destroys both ends (NULL ends are skipped). */
void h_chan_close(h_chan *c);
const char *h_kind_name(h_kind kind);

/*
 * Drives the channel until done(arg) is true or max_ms pass: for pipes a
 * dx_fd_poll() loop over both ends, for memory pairs nothing to drive.
 * Returns done(arg).
 */
bool h_run(h_chan *c, bool (*done)(void *), void *arg, int max_ms);
/* One step of the loop (pipes: one poll of at most timeout_ms). */
void h_step(h_chan *c, int timeout_ms);

/* ---- the event recorder ---- */

/* Event letters in h_rec.log. */
#define H_EV_DATA 'd'
#define H_EV_END 'e'
#define H_EV_DRAIN 'r'
#define H_EV_FINISH 'f'
#define H_EV_ERROR 'x'
#define H_EV_CLOSE 'c'

typedef struct h_rec {
    dx_stream *s;
    char log[4096];     /* event letters; consecutive data collapse to one */
    size_t nlog;
    uint8_t *data;      /* everything received, if keep_data */
    size_t len, cap;
    bool keep_data;
    uint64_t received;  /* bytes received */
    uint64_t verify_seed; /* with verify: bytes must follow h_gen(seed) */
    bool verify;
    bool mismatch;
    unsigned data_events, ends, drains, finishes, errors, closes;
    int error_code;
    char error_name[64];
    unsigned violations; /* contract violations seen */
    char violation[256];
    /* Actions taken inside callbacks. */
    char destroy_on;     /* destroy the stream in this event */
    dx_stream **slot;    /* set to NULL when the recorder destroys */
    bool destroyed;
    bool end_on_end;     /* call dx_stream_end() when on_end arrives */
    size_t max_data_event; /* the largest chunk delivered */
    void (*on_event)(struct h_rec *r, char ev);
    void *ctx;
} h_rec;

/* Attaches a recorder as the stream's consumer. */
void h_rec_attach(h_rec *r, dx_stream *s);
void h_rec_free(h_rec *r);
/* Fails the current test if the recorder saw a contract violation. */
void h_rec_assert_clean(const h_rec *r);

/* A call in a suite's set-up (an unchecked fixture, outside any test,
 * where ck_assert cannot report): a failure aborts the run loudly. */
#define H_MUST(call)                                                           \
    do {                                                                       \
        if ((call) != 0) {                                                     \
            fprintf(stderr, "set-up failed: %s\n", #call);                   \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* ---- deterministic data ---- */

uint8_t h_gen(uint64_t seed, uint64_t index);
/* Fills buf with bytes [offset, offset+len) of stream seed. */
void h_gen_fill(uint64_t seed, uint64_t offset, uint8_t *buf, size_t len);
/* A small PRNG for test decisions. */
uint64_t h_rand(uint64_t *state);

/* Milliseconds from a monotonic clock. */
int64_t h_now_ms(void);
/* A clock the test drives (a dx_tls_clock_fn): it reads h_fake_now. */
extern uint64_t h_fake_now;
uint64_t h_fake_clock(void *arg);

/* ---- certificates for TLS tests ---- */

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* The certificate and the key of a dx_pki certificate, as OpenSSL objects
 * (the caller frees them). */
X509 *h_pki_x509(const dx_pki_cert *c);
EVP_PKEY *h_pki_key(const dx_pki_cert *c);
/* The text in a memory BIO, as a string for free(). */
char *h_bio_text(BIO *b);
/* A context that trusts ca and, when leaf is given (a server's), presents
 * leaf's certificate and key; limited to one version ("TLSv1.2", ...). */
dx_tls_ctx *h_tls_ctx(const dx_pki_cert *ca, const dx_pki_cert *leaf, const char *version);

/* A CRL (PEM, for free()) signed by issuer, revoking the certificates of
 * the NULL-terminated list. */
char *h_make_crl(const dx_pki_cert *issuer, const dx_pki_cert *const *revoked);

/* The suites, one per module (tests/check_*.c). */
Suite *error_suite(void);
Suite *stream_suite(void);
Suite *pair_suite(void);
Suite *link_suite(void);
Suite *transport_suite(void);
Suite *fd_suite(void);
Suite *alloc_suite(void);
Suite *pki_suite(void);
Suite *tls_context_suite(void);
Suite *tls_cert_suite(void);
Suite *tls_filter_suite(void);
Suite *tls_server_suite(void);
Suite *tls_psk_suite(void);
Suite *tls_ocsp_suite(void);
Suite *blocking_suite(void);
Suite *filters_suite(void);
Suite *tls_hostile_suite(void);
Suite *faults_suite(void);
#ifdef HAVE_LIBUV
Suite *uv_suite(void);
Suite *redis_suite(void);
Suite *dxtls_suite(void);
#endif

#endif
