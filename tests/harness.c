#include "config.h"

#include "harness.h"

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* ---- allocation accounting -------------------------------------------- */

/* Each block carries its size in a header, so frees can be counted. The
 * counters are atomic: tests may run libduplex objects on two threads. */
typedef union {
    size_t size;
    max_align_t align;
} h_hdr;

static atomic_size_t live_bytes, peak_bytes;
static atomic_long fail_from = -1, alloc_count;
static atomic_bool fail_once; /* only the fail_from-th fails */

static bool must_fail(void)
{
    long limit = atomic_load(&fail_from);
    long count = atomic_fetch_add(&alloc_count, 1);
    if (limit < 0)
        return false;
    return atomic_load(&fail_once) ? count == limit : count >= limit;
}

static void *h_malloc(size_t n)
{
    if (must_fail())
        return NULL;
    h_hdr *h = malloc(sizeof(h_hdr) + n);
    if (!h)
        return NULL;
    h->size = n;
    size_t live = atomic_fetch_add(&live_bytes, n) + n;
    size_t peak = atomic_load(&peak_bytes);
    while (live > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, live))
        ;
    return h + 1;
}

static void h_free(void *p)
{
    if (!p)
        return;
    h_hdr *h = (h_hdr *)p - 1;
    atomic_fetch_sub(&live_bytes, h->size);
    free(h);
}

static void *h_realloc(void *p, size_t n)
{
    if (!p)
        return h_malloc(n);
    h_hdr *old = (h_hdr *)p - 1;
    void *q = h_malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, old->size < n ? old->size : n);
    h_free(p);
    return q;
}

/* OpenSSL's own allocations, counted apart (they include its lazily made
 * global tables, so only differences mean something). */
static atomic_size_t ossl_live;
static atomic_bool ossl_failable;

static void *o_malloc(size_t n, const char *file, int line)
{
    (void)file, (void)line;
    if (atomic_load(&ossl_failable) && must_fail())
        return NULL;
    h_hdr *h = malloc(sizeof(h_hdr) + n);
    if (!h)
        return NULL;
    h->size = n;
    atomic_fetch_add(&ossl_live, n);
    return h + 1;
}

static void o_free(void *p, const char *file, int line)
{
    (void)file, (void)line;
    if (!p)
        return;
    h_hdr *h = (h_hdr *)p - 1;
    atomic_fetch_sub(&ossl_live, h->size);
    free(h);
}

static void *o_realloc(void *p, size_t n, const char *file, int line)
{
    if (!p)
        return o_malloc(n, file, line);
    h_hdr *old = (h_hdr *)p - 1;
    void *q = o_malloc(n, file, line);
    if (!q)
        return NULL;
    memcpy(q, p, old->size < n ? old->size : n);
    o_free(p, file, line);
    return q;
}

size_t h_ossl_live(void) { return ossl_live; }

void h_alloc_install(void)
{
    if (!CRYPTO_set_mem_functions(o_malloc, o_realloc, o_free)) {
        fprintf(stderr, "CRYPTO_set_mem_functions: too late\n");
        exit(1);
    }
    int rc = dx_set_allocator(h_malloc, h_realloc, h_free);
    if (rc != 0) {
        fprintf(stderr, "dx_set_allocator: %s\n", dx_strerror(rc));
        exit(1);
    }
}

size_t h_alloc_live(void) { return live_bytes; }
size_t h_alloc_peak(void) { return peak_bytes; }
void h_alloc_reset_peak(void) { peak_bytes = live_bytes; }

void h_alloc_fail_from(long n)
{
    fail_once = false;
    fail_from = n;
    alloc_count = 0;
}

void h_alloc_fail_only(long n)
{
    fail_once = true;
    fail_from = n;
    alloc_count = 0;
}

long h_alloc_count(void) { return alloc_count; }

void h_alloc_fail_openssl(bool on) { ossl_failable = on; }

/* ---- channels ----------------------------------------------------------- */

const char *h_kind_name(h_kind kind)
{
    return kind == H_MEM ? "memory pair" : "pipe pair";
}

void h_chan_open(h_chan *c, h_kind kind, const dx_pair_opts *opts)
{
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    if (kind == H_MEM) {
        ck_assert_int_eq(dx_pair_new(opts, &c->a, &c->b), 0);
        return;
    }
    int ab[2], ba[2];
    ck_assert_int_eq(pipe(ab), 0);
    ck_assert_int_eq(pipe(ba), 0);
    ck_assert_int_eq(dx_fd_stream_new(ba[0], ab[1], DX_FD_CLOSE, &c->a), 0);
    ck_assert_int_eq(dx_fd_stream_new(ab[0], ba[1], DX_FD_CLOSE, &c->b), 0);
}

void h_chan_close(h_chan *c)
{
    dx_stream_destroy(c->a);
    dx_stream_destroy(c->b);
    c->a = c->b = NULL;
}

void h_step(h_chan *c, int timeout_ms)
{
    if (c->kind != H_PIPE)
        return;
    dx_stream *v[2];
    size_t n = 0;
    if (c->a)
        v[n++] = c->a;
    if (c->b)
        v[n++] = c->b;
    int rc = dx_fd_poll(v, n, timeout_ms);
    ck_assert_int_ge(rc, 0);
}

bool h_run(h_chan *c, bool (*done)(void *), void *arg, int max_ms)
{
    int64_t end = h_now_ms() + max_ms;
    while (!done(arg)) {
        if (c->kind != H_PIPE || h_now_ms() > end)
            return done(arg);
        h_step(c, 10);
    }
    return true;
}

/* ---- the recorder --------------------------------------------------------- */

static void violation(h_rec *r, const char *what)
{
    if (r->violations++ == 0)
        snprintf(r->violation, sizeof(r->violation), "%s (events so far: %.*s)",
                 what, (int)r->nlog, r->log);
}

static void note(h_rec *r, char ev)
{
    if (r->closes)
        violation(r, "event after close");
    if (ev == H_EV_DATA && r->nlog && r->log[r->nlog - 1] == H_EV_DATA)
        return;
    if (r->nlog < sizeof(r->log) - 1)
        r->log[r->nlog++] = ev;
}

static bool act(h_rec *r, char ev)
{
    if (r->on_event)
        r->on_event(r, ev);
    if (r->destroy_on == ev && !r->destroyed) {
        r->destroyed = true;
        if (r->slot)
            *r->slot = NULL;
        dx_stream_destroy(r->s);
        return true;
    }
    return false;
}

static void rec_data(dx_stream *s, const uint8_t *d, size_t n, void *u)
{
    h_rec *r = u;
    if (s != r->s)
        violation(r, "callback for another stream");
    if (n == 0)
        violation(r, "empty data event");
    if (r->ends)
        violation(r, "data after end");
    note(r, H_EV_DATA);
    r->data_events++;
    if (n > r->max_data_event)
        r->max_data_event = n;
    if (r->verify && !r->mismatch) {
        uint8_t want[4096];
        for (size_t off = 0; off < n; off += sizeof(want)) {
            size_t k = n - off < sizeof(want) ? n - off : sizeof(want);
            h_gen_fill(r->verify_seed, r->received + off, want, k);
            if (memcmp(want, d + off, k) != 0) {
                r->mismatch = true;
                violation(r, "received bytes differ from those sent");
                break;
            }
        }
    }
    if (r->keep_data) {
        if (r->len + n > r->cap) {
            r->cap = (r->len + n) * 2;
            r->data = realloc(r->data, r->cap);
            ck_assert_ptr_nonnull(r->data);
        }
        memcpy(r->data + r->len, d, n);
        r->len += n;
    }
    r->received += n;
    act(r, H_EV_DATA);
}

static void rec_end(dx_stream *s, void *u)
{
    h_rec *r = u;
    (void)s;
    if (r->ends)
        violation(r, "end twice");
    note(r, H_EV_END);
    r->ends++;
    if (act(r, H_EV_END))
        return;
    if (r->end_on_end)
        dx_stream_end(r->s);
}

static void rec_drain(dx_stream *s, void *u)
{
    h_rec *r = u;
    (void)s;
    note(r, H_EV_DRAIN);
    r->drains++;
    act(r, H_EV_DRAIN);
}

static void rec_finish(dx_stream *s, void *u)
{
    h_rec *r = u;
    (void)s;
    if (r->finishes)
        violation(r, "finish twice");
    note(r, H_EV_FINISH);
    r->finishes++;
    act(r, H_EV_FINISH);
}

static void rec_error(dx_stream *s, const dx_error *e, void *u)
{
    h_rec *r = u;
    (void)s;
    if (r->errors)
        violation(r, "error twice");
    note(r, H_EV_ERROR);
    r->errors++;
    r->error_code = dx_error_code(e);
    snprintf(r->error_name, sizeof(r->error_name), "%s", dx_error_name(e));
    act(r, H_EV_ERROR);
}

static void rec_close(dx_stream *s, void *u)
{
    h_rec *r = u;
    (void)s;
    note(r, H_EV_CLOSE);
    r->closes++;
    act(r, H_EV_CLOSE);
}

static const dx_stream_events rec_events = {
    .on_data = rec_data,
    .on_end = rec_end,
    .on_drain = rec_drain,
    .on_finish = rec_finish,
    .on_error = rec_error,
    .on_close = rec_close,
};

void h_rec_attach(h_rec *r, dx_stream *s)
{
    r->s = s;
    ck_assert_int_eq(dx_stream_set_events(s, &rec_events, r), 0);
}

void h_rec_free(h_rec *r)
{
    free(r->data);
    r->data = NULL;
    r->len = r->cap = 0;
}

void h_rec_assert_clean(const h_rec *r)
{
    ck_assert_msg(r->violations == 0, "contract violation: %s", r->violation);
}

/* ---- data ------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint8_t h_gen(uint64_t seed, uint64_t index)
{
    return (uint8_t)(splitmix(seed * 0x100000001b3ull ^ (index >> 3)) >>
                     ((index & 7) * 8));
}

void h_gen_fill(uint64_t seed, uint64_t offset, uint8_t *buf, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint64_t idx = offset + i;
        uint64_t w = splitmix(seed * 0x100000001b3ull ^ (idx >> 3));
        for (unsigned k = (unsigned)(idx & 7); k < 8 && i < len; k++, i++)
            buf[i] = (uint8_t)(w >> (k * 8));
    }
}

uint64_t h_rand(uint64_t *state)
{
    *state = splitmix(*state);
    return *state;
}

int64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t h_fake_now;

uint64_t h_fake_clock(void *arg)
{
    (void)arg;
    return h_fake_now;
}

/* ---- certificates for TLS tests ---------------------------------------- */

X509 *h_pki_x509(const dx_pki_cert *c)
{
    BIO *b = BIO_new_mem_buf(dx_pki_cert_pem(c), -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    ck_assert_ptr_nonnull(x);
    return x;
}

EVP_PKEY *h_pki_key(const dx_pki_cert *c)
{
    BIO *b = BIO_new_mem_buf(dx_pki_key_pem(c), -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    ck_assert_ptr_nonnull(k);
    return k;
}

char *h_bio_text(BIO *b)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *text = strndup(data, (size_t)n);
    ck_assert_ptr_nonnull(text);
    return text;
}

char *h_make_crl(const dx_pki_cert *issuer, const dx_pki_cert *const *revoked)
{
    X509 *ix = h_pki_x509(issuer);
    EVP_PKEY *k = h_pki_key(issuer);
    X509_CRL *crl = X509_CRL_new();
    ck_assert_ptr_nonnull(crl);
    ck_assert_int_eq(X509_CRL_set_version(crl, 1), 1); /* v2 */
    ck_assert_int_eq(X509_CRL_set_issuer_name(crl, X509_get_subject_name(ix)), 1);
    time_t now = time(NULL);
    ASN1_TIME *last = ASN1_TIME_adj(NULL, now, -1, 0), *next = ASN1_TIME_adj(NULL, now, 1, 0);
    ck_assert_int_eq(X509_CRL_set1_lastUpdate(crl, last), 1);
    ck_assert_int_eq(X509_CRL_set1_nextUpdate(crl, next), 1);
    for (; *revoked; revoked++) {
        X509 *rx = h_pki_x509(*revoked);
        X509_REVOKED *r = X509_REVOKED_new();
        ck_assert_int_eq(X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(rx)), 1);
        ck_assert_int_eq(X509_REVOKED_set_revocationDate(r, last), 1);
        ck_assert_int_eq(X509_CRL_add0_revoked(crl, r), 1);
        X509_free(rx);
    }
    ck_assert_int_eq(X509_CRL_sort(crl), 1);
    ck_assert_int_gt(X509_CRL_sign(crl, k, EVP_sha256()), 0);
    BIO *out = BIO_new(BIO_s_mem());
    ck_assert_int_eq(PEM_write_bio_X509_CRL(out, crl), 1);
    char *text = h_bio_text(out);
    BIO_free(out);
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    X509_CRL_free(crl);
    EVP_PKEY_free(k);
    X509_free(ix);
    return text;
}

dx_tls_ctx *h_tls_ctx(const dx_pki_cert *ca, const dx_pki_cert *leaf, const char *version)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *capem = dx_pki_cert_pem(ca);
    ck_assert_int_eq(dx_tls_config_add_ca(cfg, capem, strlen(capem)), 0);
    if (leaf) {
        const char *c = dx_pki_cert_pem(leaf), *k = dx_pki_key_pem(leaf);
        ck_assert_int_eq(dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL), 0);
    }
    ck_assert_int_eq(dx_tls_config_set_min_version(cfg, version), 0);
    ck_assert_int_eq(dx_tls_config_set_max_version(cfg, version), 0);
    dx_tls_ctx *ctx;
    ck_assert_int_eq(dx_tls_ctx_new(cfg, &ctx, NULL), 0);
    dx_tls_config_free(cfg);
    return ctx;
}
