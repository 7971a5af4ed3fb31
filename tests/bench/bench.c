/*
 * dxbench: libduplex against raw OpenSSL (and Node.js), same process, same
 * run.
 *
 * Every speed figure is the median, over the rounds, of the ratio of two
 * rates measured within one round: libduplex doing a piece of work through
 * its public API, and raw OpenSSL doing the same work at the least cost.
 * The order of the two alternates from round to round. Absolute rates on a
 * shared machine swing by 20%; ratios taken seconds apart do not.
 *
 *  - libduplex: two dx_tls connections, a client and a server, whose lower
 *    streams are joined by a dx_link (the SecurePair shape: no transport
 *    stream between them, so that nothing but the filter is measured). The
 *    application writes to and reads from the upper streams.
 *  - raw OpenSSL, the baseline: a client and a server SSL object joined by
 *    memory BIOs (BIO_s_mem), SSL_do_handshake / SSL_write / SSL_read
 *    called in a tight loop with the bytes moved from one side's output
 *    BIO to the other's input BIO after each call, and no other code.
 *  - raw OpenSSL on a BIO pair (BIO_new_bio_pair), for information: a
 *    stricter baseline than the one asked for, since the client's records
 *    land in the server's read buffer with nothing to move.
 *  - Node.js (with --node): two TLSSockets over an in-memory Duplex pair, in
 *    a child process (tests/bench/node-tls.js) told what to measure over a
 *    pipe, in the same rounds.
 *
 * Memory is counted, not timed: a child process installs counting
 * allocators for OpenSSL (CRYPTO_set_mem_functions) and for libduplex
 * (dx_set_allocator) before either allocates, and reports the heap that
 * destroying an idle established server connection gives back. The speed
 * figures run in the parent with the plain allocators.
 *
 * The dxtls tool (with --dxtls) is measured against stunnel4 and socat:
 * the same transfer over TCP on 127.0.0.1 through each (run_tools()).
 *
 * Usage: dxbench [--quick | --smoke] [--rounds N] [--secs S] [--node SCRIPT]
 *                [--dxtls PATH] [--tool-bytes N] [--out DIR] [--only LIST]
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <duplex/duplex.h>

/* ---- small helpers ------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void tools_reap(void);

static void die(const char *fmt, ...) DX_PRINTF(1, 2);
static void die(const char *fmt, ...)
{
    tools_reap(); /* the processes of the tool comparison, if any */
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dxbench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    if (n <= 0)
        return NAN;
    double *c = xmalloc(sizeof(double) * (size_t)n);
    memcpy(c, v, sizeof(double) * (size_t)n);
    qsort(c, (size_t)n, sizeof(double), cmp_double);
    double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
    free(c);
    return m;
}

/* ---- options ------------------------------------------------------------- */

#define MAX_ROUNDS 64
#define MAX_LEVELS 8

static struct {
    const char *mode;          /* "full", "quick", "smoke" */
    int rounds;                /* rounds per metric */
    double secs;               /* seconds per side per round */
    double sweep_secs;         /* the same for each write size of the sweep */
    size_t levels[MAX_LEVELS]; /* concurrent connections */
    int nlevels;
    size_t mem_conns;          /* idle connections averaged per memory figure */
    const char *node_script;
    const char *node_bin;
    const char *out_dir;
    const char *only;          /* comma-separated metric groups, or NULL */
    const char *profile;       /* --profile METRIC: one measurement, one side */
    const char *dxtls;         /* --dxtls PATH: the tool, for the comparison with others */
    uint64_t tool_bytes;       /* bytes of each transfer of that comparison */
    int profile_impl;
} opt;

static void set_mode(const char *mode)
{
    opt.mode = mode;
    static const size_t full[] = {10, 100, 1000, 10000};
    static const size_t quick[] = {10, 100, 1000};
    static const size_t smoke[] = {10, 20};
    const size_t *lv;
    if (strcmp(mode, "smoke") == 0) {
        opt.rounds = 1;
        opt.secs = 0.004;
        opt.sweep_secs = 0.002;
        opt.mem_conns = 4;
        opt.tool_bytes = (uint64_t)4 << 20;
        lv = smoke;
        opt.nlevels = 2;
    } else if (strcmp(mode, "quick") == 0) {
        opt.rounds = 7;
        opt.secs = 0.06;
        opt.sweep_secs = 0.03;
        opt.mem_conns = 20;
        opt.tool_bytes = (uint64_t)128 << 20;
        lv = quick;
        opt.nlevels = 3;
    } else {
        opt.rounds = 7;
        opt.secs = 0.5;
        opt.sweep_secs = 0.2;
        opt.mem_conns = 100;
        opt.tool_bytes = (uint64_t)1 << 30;
        lv = full;
        opt.nlevels = 4;
    }
    memcpy(opt.levels, lv, sizeof(size_t) * (size_t)opt.nlevels);
}

/* Whether a group of metrics runs ("hs", "resume", "bulk", "ping", "mem",
 * "conns", "sweep", "node"). */
static bool wanted(const char *group)
{
    if (!opt.only)
        return true;
    size_t n = strlen(group);
    for (const char *p = opt.only; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, group, n) == 0)
            return true;
        p += len + (e ? 1 : 0);
    }
    return false;
}

/* ---- results ------------------------------------------------------------- */

typedef enum { T_RATIO_MIN, T_DIFF_MAX, T_INFO } target_kind;

typedef struct result {
    char name[96];
    const char *unit;
    const char *base_name; /* what the ratio is against */
    double dx, base, ratio;
    double lo, hi; /* the spread of the ratios over the rounds (0: none) */
    target_kind kind;
    double target;
} result;

#define MAX_RESULTS 64
static result results[MAX_RESULTS];
static int nresults;

static bool passes(const result *r)
{
    switch (r->kind) {
    case T_RATIO_MIN:
        return r->ratio >= r->target;
    case T_DIFF_MAX:
        return r->dx - r->base <= r->target;
    default:
        return true;
    }
}

static void print_header(void)
{
    printf("%-54s %12s %12s %-12s %8s %11s  %-7s %s\n", "metric", "libduplex", "baseline",
           "(baseline)", "ratio", "target", "verdict", "rounds");
}

static void print_result(const result *r)
{
    char target[32] = "";
    if (r->kind == T_RATIO_MIN)
        snprintf(target, sizeof(target), ">= %.2fx", r->target);
    else if (r->kind == T_DIFF_MAX)
        snprintf(target, sizeof(target), "<= +%.0f B", r->target);
    const char *verdict = r->kind == T_INFO ? "info" : passes(r) ? "PASS" : "SHORT";
    char ratio[24];
    if (r->kind == T_DIFF_MAX)
        snprintf(ratio, sizeof(ratio), "%+.0f B", r->dx - r->base);
    else
        snprintf(ratio, sizeof(ratio), "%.3fx", r->ratio);
    char spread[32] = "";
    if (r->lo > 0)
        snprintf(spread, sizeof(spread), "%.3f..%.3f", r->lo, r->hi);
    printf("%-54s %12.1f %12.1f %-12s %8s %11s  %-7s %s\n", r->name, r->dx, r->base,
           r->base_name, ratio, target, verdict, spread);
    fflush(stdout);
}

static result *add_result(const char *name, const char *unit, const char *base_name,
                          target_kind kind, double target)
{
    if (nresults == MAX_RESULTS)
        die("too many results");
    result *r = &results[nresults++];
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->unit = unit;
    r->base_name = base_name;
    r->kind = kind;
    r->target = target;
    return r;
}

/* ---- certificates --------------------------------------------------------- */

enum { KEY_EC, KEY_RSA, NKEYS };
enum { SUITE_AES128, SUITE_AES256, SUITE_CHACHA, NSUITES };

static const char *const suite_name[NSUITES] = {
    "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"};
static const char *const suite_label[NSUITES] = {"AES-128-GCM", "AES-256-GCM",
                                                 "ChaCha20-Poly1305"};
static const char *const suite_node[NSUITES] = {"aes128", "aes256", "chacha"};

static dx_pki_cert *ca[NKEYS], *leaf[NKEYS];

static void make_pki(void)
{
    static const char *const names[] = {"localhost", NULL};
    for (int k = 0; k < NKEYS; k++) {
        dx_pki_key_type type = k == KEY_EC ? DX_PKI_EC_P256 : DX_PKI_RSA_2048;
        dx_pki_opts o = {.key_type = type, .common_name = "Bench CA", .is_ca = true};
        if (dx_pki_issue(NULL, &o, &ca[k], NULL) != 0)
            die("cannot make a CA");
        dx_pki_opts l = {.key_type = type, .common_name = "localhost", .dns_names = names,
                         .ext_key_usage = DX_PKI_EKU_SERVER};
        if (dx_pki_issue(ca[k], &l, &leaf[k], NULL) != 0)
            die("cannot make a certificate");
    }
}

static void free_pki(void)
{
    for (int k = 0; k < NKEYS; k++) {
        dx_pki_cert_free(leaf[k]);
        dx_pki_cert_free(ca[k]);
        leaf[k] = ca[k] = NULL;
    }
}

/* ---- contexts ---------------------------------------------------------------
 * TLS 1.3 only, X25519 only, one cipher suite; the server holds one
 * certificate, the client trusts both CAs and checks the name
 * "localhost". The raw contexts are made with plain OpenSSL calls: no
 * callbacks, no session cache (the tickets are stateless). */

static dx_tls_ctx *dx_ctx[2][NKEYS][NSUITES]; /* [server?][key][suite] */
static SSL_CTX *raw_ctx[2][NKEYS][NSUITES];

static dx_tls_ctx *dx_context(bool server, int key, int suite)
{
    dx_tls_ctx **slot = &dx_ctx[server][server ? key : 0][suite];
    if (*slot)
        return *slot;
    dx_tls_config *cfg;
    if (dx_tls_config_new(&cfg) != 0)
        die("config");
    int rc = dx_tls_config_set_min_version(cfg, "TLSv1.3");
    rc |= dx_tls_config_set_max_version(cfg, "TLSv1.3");
    rc |= dx_tls_config_set_groups(cfg, "X25519");
    rc |= dx_tls_config_set_ciphersuites(cfg, suite_name[suite]);
    if (server) {
        const char *c = dx_pki_cert_pem(leaf[key]), *k = dx_pki_key_pem(leaf[key]);
        rc |= dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL);
    } else {
        for (int i = 0; i < NKEYS; i++) {
            const char *c = dx_pki_cert_pem(ca[i]);
            rc |= dx_tls_config_add_ca(cfg, c, strlen(c));
        }
    }
    dx_error *err = NULL;
    if (rc != 0 || dx_tls_ctx_new(cfg, slot, &err) != 0)
        die("context: %s", err ? dx_error_message(err) : "a setter failed");
    dx_tls_config_free(cfg);
    return *slot;
}

static X509 *pem_x509(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!x)
        die("PEM certificate");
    return x;
}

static EVP_PKEY *pem_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!k)
        die("PEM key");
    return k;
}

static SSL_CTX *raw_context(bool server, int key, int suite)
{
    SSL_CTX **slot = &raw_ctx[server][server ? key : 0][suite];
    if (*slot)
        return *slot;
    SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!c || !SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) ||
        !SSL_CTX_set1_groups_list(c, "X25519") || !SSL_CTX_set_ciphersuites(c, suite_name[suite]))
        die("raw context");
    if (server) {
        X509 *x = pem_x509(dx_pki_cert_pem(leaf[key]));
        EVP_PKEY *k = pem_key(dx_pki_key_pem(leaf[key]));
        if (!SSL_CTX_use_certificate(c, x) || !SSL_CTX_use_PrivateKey(c, k))
            die("raw context: certificate");
        X509_free(x);
        EVP_PKEY_free(k);
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_session_id_context(c, (const unsigned char *)"dxbench", 7);
    } else {
        X509_STORE *st = SSL_CTX_get_cert_store(c);
        for (int i = 0; i < NKEYS; i++) {
            X509 *x = pem_x509(dx_pki_cert_pem(ca[i]));
            if (!X509_STORE_add_cert(st, x))
                die("raw context: trust");
            X509_free(x);
        }
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    }
    *slot = c;
    return c;
}

static void free_contexts(void)
{
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < NKEYS; k++)
            for (int u = 0; u < NSUITES; u++) {
                dx_tls_ctx_unref(dx_ctx[s][k][u]);
                SSL_CTX_free(raw_ctx[s][k][u]);
                dx_ctx[s][k][u] = NULL;
                raw_ctx[s][k][u] = NULL;
            }
}

/* ---- libduplex: a client and a server joined by a link --------------------- */

typedef struct dpair {
    dx_tls *c, *s;
    dx_link *link;
    unsigned secure;        /* on_secure, both sides */
    unsigned errors;
    char error[96];
    uint64_t c_rx, s_rx;    /* cleartext each side received */
    bool echo;              /* the server writes back what it reads */
    uint8_t session[4096];  /* the last session the client got */
    size_t session_len;
} dpair;

static void dp_secure(dx_tls *t, void *u)
{
    (void)t;
    ((dpair *)u)->secure++;
}

static void dp_session(dx_tls *t, const uint8_t *sess, size_t len, void *u)
{
    (void)t;
    dpair *p = u;
    if (len <= sizeof(p->session)) {
        memcpy(p->session, sess, len);
        p->session_len = len;
    }
}

static void dp_error(dx_stream *s, const dx_error *err, void *u)
{
    (void)s;
    dpair *p = u;
    if (!p->errors++)
        snprintf(p->error, sizeof(p->error), "%s", dx_error_name(err));
}

static void dp_client_data(dx_stream *s, const uint8_t *d, size_t len, void *u)
{
    (void)s, (void)d;
    ((dpair *)u)->c_rx += len;
}

static void dp_server_data(dx_stream *s, const uint8_t *d, size_t len, void *u)
{
    dpair *p = u;
    p->s_rx += len;
    if (p->echo && dx_stream_write(s, d, len) < 0)
        p->errors++;
}

static const dx_tls_events dp_events = {.on_secure = dp_secure};
static const dx_tls_events dp_events_session = {.on_secure = dp_secure,
                                                .on_session = dp_session};
static const dx_stream_events dp_client_up = {.on_data = dp_client_data, .on_error = dp_error};
static const dx_stream_events dp_server_up = {.on_data = dp_server_data, .on_error = dp_error};

/* Opens a connected pair: both handshakes complete before it returns (the
 * link delivers synchronously). session (or NULL) resumes; keep_session
 * makes the client keep the sessions it gets. */
static void dp_open(dpair *p, dx_tls_ctx *cctx, dx_tls_ctx *sctx, const uint8_t *session,
                    size_t session_len, bool keep_session, bool release)
{
    memset(p, 0, sizeof(*p));
    if (dx_tls_new(cctx, DX_TLS_CLIENT, &p->c) != 0 || dx_tls_new(sctx, DX_TLS_SERVER, &p->s) != 0)
        die("dx_tls_new");
    dx_tls_set_events(p->c, keep_session ? &dp_events_session : &dp_events, p);
    dx_tls_set_events(p->s, &dp_events, p);
    if (session && dx_tls_set_session(p->c, session, session_len) != 0)
        die("dx_tls_set_session");
    if (release) {
        dx_tls_set_release_buffers(p->c, true);
        dx_tls_set_release_buffers(p->s, true);
    }
    dx_stream_set_events(dx_tls_upper(p->c), &dp_client_up, p);
    dx_stream_set_events(dx_tls_upper(p->s), &dp_server_up, p);
    if (dx_link_new(dx_tls_lower(p->c), dx_tls_lower(p->s), NULL, NULL, &p->link) != 0)
        die("dx_link_new");
    dx_tls_start(p->s);
    dx_tls_start(p->c);
    if (p->secure != 2 || p->errors)
        die("libduplex handshake: %u secure, error %s", p->secure, p->error);
}

static void dp_close(dpair *p)
{
    dx_tls_destroy(p->c);
    dx_tls_destroy(p->s);
    dx_link_destroy(p->link);
    p->c = p->s = NULL;
    p->link = NULL;
}

/* The implementations measured: libduplex, raw OpenSSL on memory BIOs (the
 * baseline), Node.js, raw OpenSSL on a BIO pair. */
enum { IMPL_DX, IMPL_RAW, IMPL_NODE, IMPL_PAIR, NIMPL };

static const char *const impl_label[NIMPL] = {"libduplex", "raw OpenSSL", "Node",
                                              "raw OpenSSL, BIO pair"};

/* ---- raw OpenSSL: a client and a server SSL object ---------------------------
 * Joined as the benchmark's baseline asks, by memory BIOs (BIO_s_mem), each
 * side reading from one and writing to another, with the bytes moved
 * between them in a tight loop after every call (rp_move()); or, a
 * stricter baseline, by a BIO pair (BIO_new_bio_pair), where the client's
 * writes land in the server's read buffer with nothing to move. */

typedef struct rpair {
    SSL *c, *s;
    BIO *c_out, *s_in, *s_out, *c_in; /* memory BIOs; NULL with a BIO pair */
} rpair;

static bool want_io(SSL *ssl, int r)
{
    int e = SSL_get_error(ssl, r);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Moves what one side wrote to the other's memory BIO: the client's
 * (to_server) or the server's. */
static void rp_move(rpair *p, bool to_server)
{
    if (!p->c_out)
        return;
    static uint8_t buf[4 * 16384];
    BIO *from = to_server ? p->c_out : p->s_out, *to = to_server ? p->s_in : p->c_in;
    while (BIO_ctrl_pending(from)) {
        int n = BIO_read(from, buf, sizeof(buf));
        if (n <= 0 || BIO_write(to, buf, n) != n)
            die("raw: moving bytes");
    }
}

static void rp_open(rpair *p, int impl, SSL_CTX *cctx, SSL_CTX *sctx, SSL_SESSION *session,
                    bool release)
{
    memset(p, 0, sizeof(*p));
    p->c = SSL_new(cctx);
    p->s = SSL_new(sctx);
    if (!p->c || !p->s)
        die("raw: SSL_new");
    if (impl == IMPL_PAIR) {
        BIO *bc, *bs;
        if (!BIO_new_bio_pair(&bc, 0, &bs, 0))
            die("raw: BIO_new_bio_pair");
        SSL_set_bio(p->c, bc, bc);
        SSL_set_bio(p->s, bs, bs);
    } else {
        p->c_in = BIO_new(BIO_s_mem());
        p->c_out = BIO_new(BIO_s_mem());
        p->s_in = BIO_new(BIO_s_mem());
        p->s_out = BIO_new(BIO_s_mem());
        if (!p->c_in || !p->c_out || !p->s_in || !p->s_out)
            die("raw: BIO_new");
        SSL_set_bio(p->c, p->c_in, p->c_out);
        SSL_set_bio(p->s, p->s_in, p->s_out);
    }
    SSL_set_connect_state(p->c);
    SSL_set_accept_state(p->s);
    if (!SSL_set1_host(p->c, "localhost"))
        die("raw: SSL_set1_host");
    if (session && !SSL_set_session(p->c, session))
        die("raw: SSL_set_session");
    if (release) {
        SSL_set_mode(p->c, SSL_MODE_RELEASE_BUFFERS);
        SSL_set_mode(p->s, SSL_MODE_RELEASE_BUFFERS);
    }
    bool cd = false, sd = false;
    for (int i = 0; i < 16 && !(cd && sd); i++) {
        if (!cd) {
            int r = SSL_do_handshake(p->c);
            if (r == 1)
                cd = true;
            else if (!want_io(p->c, r))
                die("raw: client handshake");
            rp_move(p, true);
        }
        if (!sd) {
            int r = SSL_do_handshake(p->s);
            if (r == 1)
                sd = true;
            else if (!want_io(p->s, r))
                die("raw: server handshake");
            rp_move(p, false);
        }
    }
    if (!cd || !sd)
        die("raw: handshake did not complete");
    /* The client takes the tickets the server sent, as the libduplex client
     * does while its reader waits for data. */
    char b;
    int r = SSL_read(p->c, &b, 1);
    if (r > 0 || !want_io(p->c, r))
        die("raw: reading the tickets");
}

static void rp_close(rpair *p)
{
    /* Freed as after a shutdown, so that OpenSSL does not mark the
     * session that resumes the next connections as not resumable. */
    SSL_set_shutdown(p->c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(p->c); /* and its BIOs */
    SSL_free(p->s);
    p->c = p->s = NULL;
}

/* Moves everything the server can read now into buf; returns the bytes. */
static uint64_t rp_drain(SSL *ssl, uint8_t *buf, size_t cap)
{
    uint64_t got = 0;
    for (;;) {
        int r = SSL_read(ssl, buf, (int)cap);
        if (r > 0) {
            got += (uint64_t)r;
            continue;
        }
        if (!want_io(ssl, r))
            die("raw: SSL_read");
        return got;
    }
}

/* Writes len bytes from c and reads them on s: with memory BIOs a write
 * at a time, each moved and read; with a BIO pair, reading whenever the
 * pair is full. */
static uint64_t rp_write_all(rpair *p, const uint8_t *data, size_t len, uint8_t *buf, size_t cap)
{
    uint64_t got = 0;
    size_t off = 0;
    while (off < len) {
        int r = SSL_write(p->c, data + off, (int)(len - off));
        if (r > 0) {
            off += (size_t)r;
            if (p->c_out) {
                rp_move(p, true);
                got += rp_drain(p->s, buf, cap);
            }
            continue;
        }
        if (!want_io(p->c, r))
            die("raw: SSL_write");
        got += rp_drain(p->s, buf, cap);
    }
    return got + rp_drain(p->s, buf, cap);
}

/* ---- the measurements ---------------------------------------------------------
 * Each returns a rate (per second) for one implementation, measured for
 * about secs seconds. impl: 0 libduplex, 1 raw OpenSSL, 2 Node. */



static double node_measure(const char *fmt, ...) DX_PRINTF(1, 2);

/* Operations (or bytes) done by the last measurement: --profile prints it,
 * so that a profiler's counts can be divided by it. */
static double last_ops, last_secs;

/* Sessions to resume with, made once from a full handshake. */
static uint8_t dx_session[4096];
static size_t dx_session_len;
static SSL_SESSION *raw_session;

static void make_sessions(void)
{
    if (!dx_session_len) {
        dpair p;
        dp_open(&p, dx_context(false, KEY_EC, SUITE_AES128), dx_context(true, KEY_EC, SUITE_AES128),
                NULL, 0, true, false);
        if (!p.session_len)
            die("libduplex: no session");
        memcpy(dx_session, p.session, p.session_len);
        dx_session_len = p.session_len;
        dp_close(&p);
        /* the bytes resume */
        dp_open(&p, dx_context(false, KEY_EC, SUITE_AES128), dx_context(true, KEY_EC, SUITE_AES128),
                dx_session, dx_session_len, false, false);
        if (!dx_tls_session_reused(p.c))
            die("libduplex: the session does not resume");
        dp_close(&p);
    }
    if (!raw_session) {
        rpair p;
        rp_open(&p, IMPL_RAW, raw_context(false, KEY_EC, SUITE_AES128),
                raw_context(true, KEY_EC, SUITE_AES128), NULL, false);
        raw_session = SSL_get1_session(p.c);
        if (!raw_session || !SSL_SESSION_is_resumable(raw_session))
            die("raw: no resumable session");
        rp_close(&p);
        rp_open(&p, IMPL_RAW, raw_context(false, KEY_EC, SUITE_AES128),
                raw_context(true, KEY_EC, SUITE_AES128), raw_session, false);
        if (!SSL_session_reused(p.c))
            die("raw: the session does not resume");
        rp_close(&p);
    }
}

typedef struct hs_arg {
    int key;
    bool resume;
} hs_arg;

static double m_handshakes(int impl, const void *argp, double secs)
{
    const hs_arg *a = argp;
    if (impl == IMPL_NODE)
        return a->resume ? node_measure("resumed %f\n", secs)
                         : node_measure("full %s %f\n", a->key == KEY_EC ? "ec" : "rsa", secs);
    unsigned long n = 0;
    double t0 = now_s(), t;
    if (impl == IMPL_DX) {
        dx_tls_ctx *cc = dx_context(false, a->key, SUITE_AES128);
        dx_tls_ctx *sc = dx_context(true, a->key, SUITE_AES128);
        do {
            dpair p;
            dp_open(&p, cc, sc, a->resume ? dx_session : NULL, a->resume ? dx_session_len : 0,
                    false, false);
            dp_close(&p);
            n++;
        } while ((t = now_s()) - t0 < secs);
    } else {
        SSL_CTX *cc = raw_context(false, a->key, SUITE_AES128);
        SSL_CTX *sc = raw_context(true, a->key, SUITE_AES128);
        do {
            rpair p;
            rp_open(&p, impl, cc, sc, a->resume ? raw_session : NULL, false);
            rp_close(&p);
            n++;
        } while ((t = now_s()) - t0 < secs);
    }
    last_ops = (double)n;
    last_secs = t - t0;
    return (double)n / (t - t0);
}

typedef struct bulk_arg {
    int suite;
    size_t size;
    bool cork; /* libduplex: corks around each 16 KiB of writes */
} bulk_arg;

static uint8_t bulk_src[65536];
static uint8_t bulk_dst[16384];

/* Cleartext bytes per second from client to server, written size bytes
 * at a time. */
static double m_bulk(int impl, const void *argp, double secs)
{
    const bulk_arg *a = argp;
    if (impl == IMPL_NODE)
        return node_measure("bulk %s %zu %f\n", suite_node[a->suite], a->size, secs);
    /* enough writes between two looks at the clock to make it cheap */
    unsigned batch = a->size >= 16384 ? 8 : a->size >= 1024 ? 64 : 256;
    uint64_t bytes = 0;
    double t0, t;
    if (impl == IMPL_DX) {
        dpair p;
        dp_open(&p, dx_context(false, KEY_EC, a->suite), dx_context(true, KEY_EC, a->suite), NULL,
                0, false, false);
        dx_stream *up = dx_tls_upper(p.c);
        /* corked: the writes of each 16 KiB go out as one record */
        unsigned per_cork = a->cork && a->size < 16384 ? (unsigned)(16384 / a->size) : 1;
        t0 = now_s();
        do {
            for (unsigned i = 0; i < batch; i += per_cork) {
                if (per_cork > 1)
                    dx_stream_cork(up);
                for (unsigned k = 0; k < per_cork; k++)
                    if (dx_stream_write(up, bulk_src, a->size) < 0)
                        die("libduplex: write");
                if (per_cork > 1)
                    dx_stream_uncork(up);
            }
        } while ((t = now_s()) - t0 < secs);
        bytes = p.s_rx;
        if (p.errors)
            die("libduplex: bulk: %s", p.error);
        dp_close(&p);
    } else {
        rpair p;
        rp_open(&p, impl, raw_context(false, KEY_EC, a->suite), raw_context(true, KEY_EC, a->suite),
                NULL, false);
        t0 = now_s();
        do {
            for (unsigned i = 0; i < batch; i++)
                bytes += rp_write_all(&p, bulk_src, a->size, bulk_dst, sizeof(bulk_dst));
        } while ((t = now_s()) - t0 < secs);
        rp_close(&p);
    }
    last_ops = (double)bytes;
    last_secs = t - t0;
    return (double)bytes / (t - t0);
}

/* 64-byte round trips per second: the client writes 64 bytes, the server
 * reads them and writes them back, the client reads them. */
static double m_pingpong(int impl, const void *argp, double secs)
{
    (void)argp;
    if (impl == IMPL_NODE)
        return node_measure("pingpong %f\n", secs);
    static const uint8_t msg[64] = "ping";
    unsigned long n = 0;
    double t0, t;
    if (impl == IMPL_DX) {
        dpair p;
        dp_open(&p, dx_context(false, KEY_EC, SUITE_AES128), dx_context(true, KEY_EC, SUITE_AES128),
                NULL, 0, false, false);
        p.echo = true;
        dx_stream *up = dx_tls_upper(p.c);
        t0 = now_s();
        do {
            for (int i = 0; i < 128; i++) {
                uint64_t before = p.c_rx;
                if (dx_stream_write(up, msg, sizeof(msg)) < 0 || p.c_rx != before + sizeof(msg))
                    die("libduplex: ping-pong");
            }
            n += 128;
        } while ((t = now_s()) - t0 < secs);
        dp_close(&p);
    } else {
        rpair p;
        rp_open(&p, impl, raw_context(false, KEY_EC, SUITE_AES128),
                raw_context(true, KEY_EC, SUITE_AES128), NULL, false);
        uint8_t buf[16384];
        t0 = now_s();
        do {
            for (int i = 0; i < 128; i++) {
                if (SSL_write(p.c, msg, sizeof(msg)) != (int)sizeof(msg))
                    die("raw: ping");
                rp_move(&p, true);
                int r = SSL_read(p.s, buf, sizeof(buf));
                if (r != (int)sizeof(msg) || SSL_write(p.s, buf, r) != r)
                    die("raw: echo");
                rp_move(&p, false);
                if (SSL_read(p.c, buf, sizeof(buf)) != (int)sizeof(msg))
                    die("raw: pong");
            }
            n += 128;
        } while ((t = now_s()) - t0 < secs);
        rp_close(&p);
    }
    last_ops = (double)n;
    last_secs = t - t0;
    return (double)n / (t - t0);
}

/* ---- rounds ------------------------------------------------------------------ */

typedef double (*measure_fn)(int impl, const void *arg, double secs);

typedef struct rounds_out {
    double med[NIMPL];   /* median rate of each implementation */
    double ratio[NIMPL]; /* median of libduplex / that one, within a round */
    double lo[NIMPL], hi[NIMPL]; /* the smallest and largest of those ratios */
    bool node, pair;             /* which of Node and the BIO pair ran */
} rounds_out;

/* Slices of a round: each side runs this long, then the others, in turn. */
#define SLICE_SECS 0.025

/*
 * Runs fn for each implementation in use and takes the medians. A round
 * gives each side secs of work, cut in slices of SLICE_SECS that take
 * turns (the order alternating from slice to slice), so that what else the
 * machine does falls on every side alike; its rate per side is the work
 * of all its slices over their time. A first, unrecorded pass warms up.
 */
static rounds_out run_rounds(measure_fn fn, const void *arg, bool with_node, bool with_pair,
                             double secs)
{
    int impls[NIMPL], nimpl = 0;
    impls[nimpl++] = IMPL_DX;
    impls[nimpl++] = IMPL_RAW;
    if (with_node)
        impls[nimpl++] = IMPL_NODE;
    if (with_pair)
        impls[nimpl++] = IMPL_PAIR;
    double rate[NIMPL][MAX_ROUNDS], ratio[NIMPL][MAX_ROUNDS];
    for (int j = 0; j < nimpl; j++)
        fn(impls[j], arg, secs / 4);
    int slices = secs > SLICE_SECS ? (int)(secs / SLICE_SECS + 0.5) : 1;
    for (int r = 0; r < opt.rounds; r++) {
        double ops[NIMPL] = {0}, took[NIMPL] = {0};
        for (int k = 0; k < slices; k++) {
            for (int j = 0; j < nimpl; j++) {
                int i = impls[(r + k) % 2 ? nimpl - 1 - j : j];
                double got = fn(i, arg, secs / slices);
                if (i == IMPL_NODE) { /* the script times itself */
                    ops[i] += got * secs / slices;
                    took[i] += secs / slices;
                } else {
                    ops[i] += last_ops;
                    took[i] += last_secs;
                }
            }
        }
        for (int j = 0; j < nimpl; j++)
            rate[impls[j]][r] = ops[impls[j]] / took[impls[j]];
        for (int j = 0; j < nimpl; j++)
            ratio[impls[j]][r] = rate[IMPL_DX][r] / rate[impls[j]][r];
    }
    rounds_out o;
    memset(&o, 0, sizeof(o));
    for (int j = 0; j < nimpl; j++) {
        int i = impls[j];
        o.med[i] = median(rate[i], opt.rounds);
        o.ratio[i] = median(ratio[i], opt.rounds);
        o.lo[i] = o.hi[i] = ratio[i][0];
        for (int r = 1; r < opt.rounds; r++) {
            o.lo[i] = ratio[i][r] < o.lo[i] ? ratio[i][r] : o.lo[i];
            o.hi[i] = ratio[i][r] > o.hi[i] ? ratio[i][r] : o.hi[i];
        }
    }
    o.node = with_node;
    o.pair = with_pair;
    return o;
}

/* Prints a metric's rows: against raw OpenSSL (its target), against raw
 * OpenSSL on a BIO pair (a stricter baseline, for information), against
 * Node (node_target, when Node ran). Rates are divided by scale. */
static void report(const rounds_out *o, const char *name, const char *unit, double scale,
                   double raw_target, double node_target)
{
    static const struct {
        int impl;
        const char *suffix, *base;
    } rows[] = {{IMPL_RAW, "", "raw OpenSSL"},
                {IMPL_PAIR, " vs BIO pair", "BIO pair"},
                {IMPL_NODE, " vs Node", "Node"}};
    for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
        int i = rows[k].impl;
        if ((i == IMPL_NODE && !o->node) || (i == IMPL_PAIR && !o->pair))
            continue;
        char full[96];
        snprintf(full, sizeof(full), "%s%s", name, rows[k].suffix);
        double target = i == IMPL_RAW ? raw_target : node_target;
        result *r = add_result(full, unit, rows[k].base, i == IMPL_PAIR ? T_INFO : T_RATIO_MIN,
                               target);
        r->dx = o->med[IMPL_DX] / scale, r->base = o->med[i] / scale, r->ratio = o->ratio[i];
        r->lo = o->lo[i], r->hi = o->hi[i];
        print_result(r);
    }
}

/* ---- Node.js, in a child process ------------------------------------------------ */

static struct {
    pid_t pid;
    FILE *to, *from;
    bool up;
    char dir[64];
} node;

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        die("cannot write %s", path);
}

static void remove_files(const char *dir)
{
    static const char *const names[] = {"ca-ec.pem", "ca-rsa.pem", "ec.pem",
                                        "ec.key",    "rsa.pem",    "rsa.key"};
    char path[256];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void node_start(void)
{
    snprintf(node.dir, sizeof(node.dir), "/tmp/dxbench.XXXXXX");
    if (!mkdtemp(node.dir))
        die("mkdtemp: %s", strerror(errno));
    write_file(node.dir, "ca-ec.pem", dx_pki_cert_pem(ca[KEY_EC]));
    write_file(node.dir, "ca-rsa.pem", dx_pki_cert_pem(ca[KEY_RSA]));
    write_file(node.dir, "ec.pem", dx_pki_cert_pem(leaf[KEY_EC]));
    write_file(node.dir, "ec.key", dx_pki_key_pem(leaf[KEY_EC]));
    write_file(node.dir, "rsa.pem", dx_pki_cert_pem(leaf[KEY_RSA]));
    write_file(node.dir, "rsa.key", dx_pki_key_pem(leaf[KEY_RSA]));
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        die("pipe: %s", strerror(errno));
    fflush(NULL);
    node.pid = fork();
    if (node.pid < 0)
        die("fork: %s", strerror(errno));
    if (node.pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execlp(opt.node_bin, opt.node_bin, opt.node_script, node.dir, (char *)NULL);
        fprintf(stderr, "dxbench: cannot run %s: %s\n", opt.node_bin, strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    node.to = fdopen(in[1], "w");
    node.from = fdopen(out[0], "r");
    char line[256];
    if (!node.to || !node.from || !fgets(line, sizeof(line), node.from) ||
        strncmp(line, "ready", 5) != 0) {
        fprintf(stderr, "dxbench: the Node script did not start; no comparison with Node\n");
        node.up = false;
    } else {
        node.up = true;
    }
    remove_files(node.dir); /* read by the script before it said ready */
}

static void node_stop(void)
{
    if (!node.pid)
        return;
    if (node.to) {
        fprintf(node.to, "quit\n");
        fclose(node.to);
    }
    if (node.from)
        fclose(node.from);
    int st;
    waitpid(node.pid, &st, 0);
    node.pid = 0;
    node.up = false;
}

static double node_measure(const char *fmt, ...)
{
    if (!node.up)
        return NAN;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(node.to, fmt, ap);
    va_end(ap);
    fflush(node.to);
    char line[256];
    if (!fgets(line, sizeof(line), node.from))
        die("the Node script stopped answering");
    char *end;
    double v = strtod(line, &end);
    if (end == line)
        die("the Node script answered: %s", line);
    return v;
}

/* ---- concurrent connections: handshake rate with N open ----------------------------
 * A pool of N established connections (resumed handshakes build it, with
 * idle record buffers released, as a server holding many would); then, for
 * secs, each full handshake opens a new connection in place of the oldest,
 * which is destroyed: the rate with N open. */

typedef struct pool {
    int impl;
    size_t n, cap, next;
    dpair **dp;
    rpair *rp;
} pool;

static void pool_add(pool *p, bool resume)
{
    if (p->n == p->cap)
        die("pool full");
    size_t i = p->n++;
    if (p->impl == IMPL_DX) {
        p->dp[i] = xmalloc(sizeof(dpair));
        dp_open(p->dp[i], dx_context(false, KEY_EC, SUITE_AES128),
                dx_context(true, KEY_EC, SUITE_AES128), resume ? dx_session : NULL,
                resume ? dx_session_len : 0, false, true);
    } else {
        rp_open(&p->rp[i], IMPL_RAW, raw_context(false, KEY_EC, SUITE_AES128),
                raw_context(true, KEY_EC, SUITE_AES128), resume ? raw_session : NULL, true);
    }
}

static void pool_drop_last(pool *p)
{
    size_t i = --p->n;
    if (p->impl == IMPL_DX) {
        dp_close(p->dp[i]);
        free(p->dp[i]);
        p->dp[i] = NULL;
    } else {
        rp_close(&p->rp[i]);
    }
}

static void pool_resize(pool *p, size_t n)
{
    while (p->n < n)
        pool_add(p, true);
    while (p->n > n)
        pool_drop_last(p);
    p->next = 0;
}

static double pool_churn(pool *p, double secs)
{
    unsigned long count = 0;
    double t0 = now_s(), t;
    do {
        size_t i = p->next++ % p->n;
        if (p->impl == IMPL_DX) {
            dp_close(p->dp[i]);
            dp_open(p->dp[i], dx_context(false, KEY_EC, SUITE_AES128),
                    dx_context(true, KEY_EC, SUITE_AES128), NULL, 0, false, true);
        } else {
            rp_close(&p->rp[i]);
            rp_open(&p->rp[i], IMPL_RAW, raw_context(false, KEY_EC, SUITE_AES128),
                    raw_context(true, KEY_EC, SUITE_AES128), NULL, true);
        }
        count++;
    } while ((t = now_s()) - t0 < secs);
    return (double)count / (t - t0);
}

/* rate[impl][level] medians; scale[impl]: median of rate(largest) / rate(smallest). */
static double conn_rate[2][MAX_LEVELS], conn_scale[2], conn_lo[2], conn_hi[2];

static void run_conns(void)
{
    size_t maxn = opt.levels[opt.nlevels - 1];
    double rate[2][MAX_LEVELS][MAX_ROUNDS], scale[2][MAX_ROUNDS];
    for (int r = 0; r < opt.rounds; r++) {
        for (int j = 0; j < 2; j++) {
            int impl = r % 2 ? 1 - j : j;
            pool p = {.impl = impl, .cap = maxn};
            if (impl == IMPL_DX)
                p.dp = xmalloc(sizeof(dpair *) * maxn);
            else
                p.rp = xmalloc(sizeof(rpair) * maxn);
            /* ascending in even rounds, descending in odd ones */
            for (int k = 0; k < opt.nlevels; k++) {
                int l = r % 2 ? opt.nlevels - 1 - k : k;
                pool_resize(&p, opt.levels[l]);
                rate[impl][l][r] = pool_churn(&p, opt.secs);
            }
            pool_resize(&p, 0);
            free(p.dp);
            free(p.rp);
            scale[impl][r] = rate[impl][opt.nlevels - 1][r] / rate[impl][0][r];
        }
    }
    for (int i = 0; i < 2; i++) {
        for (int l = 0; l < opt.nlevels; l++)
            conn_rate[i][l] = median(rate[i][l], opt.rounds);
        conn_scale[i] = median(scale[i], opt.rounds);
        conn_lo[i] = conn_hi[i] = scale[i][0];
        for (int r = 1; r < opt.rounds; r++) {
            conn_lo[i] = scale[i][r] < conn_lo[i] ? scale[i][r] : conn_lo[i];
            conn_hi[i] = scale[i][r] > conn_hi[i] ? scale[i][r] : conn_hi[i];
        }
    }
}

/* ---- memory, in a child process with counting allocators -------------------------- */

typedef union {
    size_t size;
    max_align_t align;
} mhdr;

static size_t live_dx, live_ossl;

static void *count_alloc(size_t n, size_t *live)
{
    mhdr *h = malloc(sizeof(mhdr) + n);
    if (!h)
        return NULL;
    h->size = n;
    *live += n;
    return h + 1;
}

static void count_free(void *p, size_t *live)
{
    if (!p)
        return;
    mhdr *h = (mhdr *)p - 1;
    *live -= h->size;
    free(h);
}

static void *count_realloc(void *p, size_t n, size_t *live)
{
    if (!p)
        return count_alloc(n, live);
    mhdr *h = (mhdr *)p - 1;
    size_t old = h->size;
    mhdr *q = realloc(h, sizeof(mhdr) + n);
    if (!q)
        return NULL;
    q->size = n;
    *live = *live - old + n;
    return q + 1;
}

static void *dx_m(size_t n) { return count_alloc(n, &live_dx); }
static void *dx_r(void *p, size_t n) { return count_realloc(p, n, &live_dx); }
static void dx_f(void *p) { count_free(p, &live_dx); }
static void *o_m(size_t n, const char *f, int l)
{
    (void)f, (void)l;
    return count_alloc(n, &live_ossl);
}
static void *o_r(void *p, size_t n, const char *f, int l)
{
    (void)f, (void)l;
    return count_realloc(p, n, &live_ossl);
}
static void o_f(void *p, const char *f, int l)
{
    (void)f, (void)l;
    count_free(p, &live_ossl);
}

/*
 * One server connection with a raw OpenSSL client as its peer (the same
 * client for both servers, so that only the server differs). The client
 * talks through memory BIOs; the raw server too; the libduplex server's
 * lower stream is fed by this code and delivers to it, as any transport
 * would.
 */
typedef struct mconn {
    SSL *c;
    BIO *c_rd, *c_wr; /* what the client reads, what it wrote */
    SSL *rs;
    BIO *rs_rd, *rs_wr;
    dx_tls *ds;
    bool ds_secure;
    unsigned errors;
} mconn;

static void mc_secure(dx_tls *t, void *u)
{
    (void)t;
    ((mconn *)u)->ds_secure = true;
}

static void mc_lower_data(dx_stream *s, const uint8_t *d, size_t len, void *u)
{
    (void)s;
    if (BIO_write(((mconn *)u)->c_rd, d, (int)len) != (int)len)
        die("memory: BIO_write");
}

static void mc_upper_data(dx_stream *s, const uint8_t *d, size_t len, void *u)
{
    if (dx_stream_write(s, d, len) < 0) /* echo */
        ((mconn *)u)->errors++;
}

static void mc_error(dx_stream *s, const dx_error *err, void *u)
{
    (void)s;
    fprintf(stderr, "dxbench: memory: %s\n", dx_error_name(err));
    ((mconn *)u)->errors++;
}

static const dx_tls_events mc_events = {.on_secure = mc_secure};
static const dx_stream_events mc_lower = {.on_data = mc_lower_data, .on_error = mc_error};
static const dx_stream_events mc_upper = {.on_data = mc_upper_data, .on_error = mc_error};

/* Moves what the client wrote to the server, lets the server work, and its
 * answer back. Returns whether anything moved. */
static bool mc_pump(mconn *m)
{
    uint8_t buf[20000];
    bool moved = false;
    int n;
    while ((n = BIO_read(m->c_wr, buf, sizeof(buf))) > 0) {
        moved = true;
        if (m->ds) {
            if (dx_stream_write(dx_tls_lower(m->ds), buf, (size_t)n) < 0)
                die("memory: lower write");
        } else if (BIO_write(m->rs_rd, buf, n) != n) {
            die("memory: BIO_write");
        }
    }
    if (m->rs) {
        if (!SSL_is_init_finished(m->rs)) {
            int r = SSL_do_handshake(m->rs);
            if (r != 1 && !want_io(m->rs, r))
                die("memory: raw server handshake");
        }
        if (SSL_is_init_finished(m->rs)) {
            int r;
            while ((r = SSL_read(m->rs, buf, sizeof(buf))) > 0)
                if (SSL_write(m->rs, buf, r) != r)
                    die("memory: raw echo");
        }
        while ((n = BIO_read(m->rs_wr, buf, sizeof(buf))) > 0) {
            moved = true;
            if (BIO_write(m->c_rd, buf, n) != n)
                die("memory: BIO_write");
        }
    }
    return moved;
}

static void mc_open(mconn *m, int impl, bool release)
{
    memset(m, 0, sizeof(*m));
    m->c = SSL_new(raw_context(false, KEY_EC, SUITE_AES128));
    m->c_rd = BIO_new(BIO_s_mem());
    m->c_wr = BIO_new(BIO_s_mem());
    if (!m->c || !m->c_rd || !m->c_wr)
        die("memory: client");
    SSL_set_bio(m->c, m->c_rd, m->c_wr);
    SSL_set_connect_state(m->c);
    SSL_set1_host(m->c, "localhost");
    SSL_set_mode(m->c, SSL_MODE_RELEASE_BUFFERS);
    if (impl == IMPL_DX) {
        if (dx_tls_new(dx_context(true, KEY_EC, SUITE_AES128), DX_TLS_SERVER, &m->ds) != 0)
            die("memory: dx_tls_new");
        dx_tls_set_events(m->ds, &mc_events, m);
        dx_tls_set_release_buffers(m->ds, release);
        dx_stream_set_events(dx_tls_upper(m->ds), &mc_upper, m);
        dx_stream_set_events(dx_tls_lower(m->ds), &mc_lower, m);
        dx_tls_start(m->ds);
    } else {
        m->rs = SSL_new(raw_context(true, KEY_EC, SUITE_AES128));
        m->rs_rd = BIO_new(BIO_s_mem());
        m->rs_wr = BIO_new(BIO_s_mem());
        if (!m->rs || !m->rs_rd || !m->rs_wr)
            die("memory: raw server");
        SSL_set_bio(m->rs, m->rs_rd, m->rs_wr);
        SSL_set_accept_state(m->rs);
        if (release)
            SSL_set_mode(m->rs, SSL_MODE_RELEASE_BUFFERS);
    }
    bool done = false;
    for (int i = 0; i < 32 && !done; i++) {
        int r = SSL_do_handshake(m->c);
        if (r != 1 && !want_io(m->c, r))
            die("memory: client handshake");
        bool moved = mc_pump(m);
        bool server_done = m->ds ? m->ds_secure : SSL_is_init_finished(m->rs);
        done = r == 1 && server_done && !moved;
    }
    if (!done || m->errors)
        die("memory: handshake did not complete");
    /* One 64-byte exchange: the connection has carried data. */
    static const uint8_t msg[64] = "hello";
    uint8_t buf[256];
    if (SSL_write(m->c, msg, sizeof(msg)) != (int)sizeof(msg))
        die("memory: client write");
    mc_pump(m);
    mc_pump(m);
    if (SSL_read(m->c, buf, sizeof(buf)) != (int)sizeof(msg) || m->errors)
        die("memory: echo");
}

/* Frees the server side only. */
static void mc_close_server(mconn *m)
{
    if (m->ds) {
        dx_tls_destroy(m->ds);
        m->ds = NULL;
    } else {
        SSL_free(m->rs); /* frees its BIOs */
        m->rs = NULL;
    }
}

static void mc_close_client(mconn *m)
{
    SSL_free(m->c);
    m->c = NULL;
}

/* Bytes given back per idle server connection when n of them are destroyed,
 * each established with a raw client; *own the part that was libduplex's own
 * memory. */
static double idle_server_heap(int impl, bool release, size_t n, double *own)
{
    mconn *m = xmalloc(sizeof(mconn) * n);
    for (size_t i = 0; i < n; i++)
        mc_open(&m[i], impl, release);
    size_t dx0 = live_dx, o0 = live_ossl;
    for (size_t i = 0; i < n; i++)
        mc_close_server(&m[i]);
    double per = (double)((dx0 - live_dx) + (o0 - live_ossl)) / (double)n;
    if (own)
        *own = (double)(dx0 - live_dx) / (double)n;
    for (size_t i = 0; i < n; i++)
        mc_close_client(&m[i]);
    free(m);
    return per;
}

/* What the child sends back. */
typedef struct mem_report {
    double idle[2][2]; /* [impl][release] bytes per idle server connection */
    double own[2];     /* libduplex's own part, [release] */
    double level[2][MAX_LEVELS]; /* [impl] with release, at each level */
    bool ok;
} mem_report;

static void memory_child(int fd)
{
    if (!CRYPTO_set_mem_functions(o_m, o_r, o_f) || dx_set_allocator(dx_m, dx_r, dx_f) != 0)
        die("cannot install the counting allocators");
    make_pki();
    mem_report rep;
    memset(&rep, 0, sizeof(rep));
    /* A warm-up connection of each kind: lazily made tables of OpenSSL and
     * of the contexts do not count. */
    for (int impl = 0; impl < 2; impl++)
        idle_server_heap(impl, true, 2, NULL);
    for (int release = 0; release < 2; release++) {
        double v[2][MAX_ROUNDS];
        double own[MAX_ROUNDS];
        for (int r = 0; r < opt.rounds; r++)
            for (int j = 0; j < 2; j++) {
                int impl = r % 2 ? 1 - j : j;
                v[impl][r] = idle_server_heap(impl, release, opt.mem_conns,
                                              impl == IMPL_DX ? &own[r] : NULL);
            }
        for (int impl = 0; impl < 2; impl++)
            rep.idle[impl][release] = median(v[impl], opt.rounds);
        rep.own[release] = median(own, opt.rounds);
    }
    if (wanted("conns"))
        for (int l = 0; l < opt.nlevels; l++)
            for (int impl = 0; impl < 2; impl++)
                rep.level[impl][l] = idle_server_heap(impl, true, opt.levels[l], NULL);
    free_contexts();
    free_pki();
    rep.ok = true;
    if (write(fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
        _exit(1);
    _exit(0);
}

static mem_report run_memory(void)
{
    int fds[2];
    if (pipe(fds) != 0)
        die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        memory_child(fds[1]);
    }
    close(fds[1]);
    mem_report rep;
    memset(&rep, 0, sizeof(rep));
    ssize_t got = read(fds[0], &rep, sizeof(rep));
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    if (got != (ssize_t)sizeof(rep) || !rep.ok || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("the memory measurement failed");
    return rep;
}

/* ---- the dxtls tool against stunnel and socat ------------------------------------------
 * What users would otherwise run to put TLS in front of a TCP service. For
 * each tool the same tool at both ends, all on 127.0.0.1:
 *
 *   source --TCP--> tool as TLS client --TLS--> tool as TLS server --TCP--> sink
 *
 * The source and the sink are this process (one poll loop, 256 KiB reads
 * and writes); the tools are started for each transfer, once both listen
 * (seen in /proc/net/tcp: a probe connection would go through them), and
 * stopped after it. The rate is the bytes over the time from the source's
 * connect to the sink's last byte. TLS 1.3, X25519, TLS_AES_128_GCM_SHA256
 * and the ECDSA P-256 certificate for all: by their own options where they
 * have one (dxtls, stunnel) and by an OpenSSL configuration file
 * (OPENSSL_CONF, its system_default section) for all three; the first
 * transfer of each tool checks in the server's log that this suite was the
 * one used. Otherwise each tool runs as installed, with its defaults.
 * Every process started is stopped and waited for, also when something
 * fails (die()); they are killed with this process if it dies
 * (PR_SET_PDEATHSIG). */

enum { TOOL_DXTLS, TOOL_STUNNEL, TOOL_SOCAT, NTOOLS };
static const char *const tool_label[NTOOLS] = {"dxtls", "stunnel4", "socat"};

#define MAX_CHILDREN 4

static struct {
    char dir[64]; /* certificates, configurations, logs */
    pid_t pid[MAX_CHILDREN];
    int npid;
    double cpu;   /* CPU seconds of the tools reaped last */
} tl;

/* Stops the tools' processes and waits for them: SIGTERM, then SIGKILL
 * after 3 s. Adds their CPU time to tl.cpu. */
static void tools_reap(void)
{
    for (int i = 0; i < tl.npid; i++)
        kill(tl.pid[i], SIGTERM);
    double until = now_s() + 3;
    for (int i = 0; i < tl.npid; i++) {
        for (;;) {
            int st;
            struct rusage ru;
            pid_t r = wait4(tl.pid[i], &st, now_s() < until ? WNOHANG : 0, &ru);
            if (r == tl.pid[i] || (r < 0 && errno != EINTR)) {
                if (r == tl.pid[i])
                    tl.cpu += (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                              (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
                break;
            }
            if (r == 0 && now_s() >= until) {
                kill(tl.pid[i], SIGKILL);
                continue; /* the blocking wait follows */
            }
            if (r == 0)
                usleep(2000);
        }
    }
    tl.npid = 0;
}

/* Starts argv[0] (searched in PATH) with stdin and stdout on /dev/null and
 * stderr into log, OPENSSL_CONF set. */
static void tool_spawn(char *const argv[], const char *log, const char *conf)
{
    if (tl.npid == MAX_CHILDREN)
        die("too many processes");
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int null = open("/dev/null", O_RDWR);
        int err = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (null < 0 || err < 0)
            _exit(127);
        dup2(null, 0);
        dup2(null, 1);
        dup2(err, 2);
        setenv("OPENSSL_CONF", conf, 1);
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    tl.pid[tl.npid++] = pid;
}

static bool tool_installed(const char *name)
{
    if (strchr(name, '/'))
        return access(name, X_OK) == 0;
    const char *path = getenv("PATH");
    char buf[512];
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        const char *e = strchr(p, ':');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, p, name);
        if (access(buf, X_OK) == 0)
            return true;
        p += len + (e ? 1 : 0);
    }
    return false;
}

/* A TCP port free on 127.0.0.1 at the time of asking. */
static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("cannot find a free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

/* Whether something listens on 127.0.0.1:port. */
static bool listening(unsigned port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f)
        die("/proc/net/tcp: %s", strerror(errno));
    char line[256];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        unsigned long addr;
        unsigned p, st;
        if (sscanf(line, " %*u: %lx:%x %*x:%*x %x", &addr, &p, &st) == 3 && p == port &&
            st == 0x0A && (addr == 0x0100007FUL || addr == 0))
            found = true;
    }
    fclose(f);
    return found;
}

static void show_log(const char *log)
{
    FILE *f = fopen(log, "r");
    char line[512];
    while (f && fgets(line, sizeof(line), f))
        fprintf(stderr, "  %s: %s", log, line);
    if (f)
        fclose(f);
}

/* Waits until both ports listen; dies if a tool exits first. */
static void tools_wait_listening(unsigned a, unsigned b, const char *log_a, const char *log_b)
{
    double until = now_s() + 10;
    while (!listening(a) || !listening(b)) {
        for (int i = 0; i < tl.npid; i++) {
            int st;
            if (waitpid(tl.pid[i], &st, WNOHANG) == tl.pid[i]) {
                tl.pid[i] = tl.pid[--tl.npid];
                show_log(log_a);
                show_log(log_b);
                die("a tool exited before it listened");
            }
        }
        if (now_s() > until) {
            show_log(log_a);
            show_log(log_b);
            die("the tools did not listen within 10 s");
        }
        usleep(5000);
    }
}

static void tools_files(void)
{
    snprintf(tl.dir, sizeof(tl.dir), "/tmp/dxbench-tools.XXXXXX");
    if (!mkdtemp(tl.dir))
        die("mkdtemp: %s", strerror(errno));
    write_file(tl.dir, "ca.pem", dx_pki_cert_pem(ca[KEY_EC]));
    write_file(tl.dir, "cert.pem", dx_pki_cert_pem(leaf[KEY_EC]));
    write_file(tl.dir, "key.pem", dx_pki_key_pem(leaf[KEY_EC]));
    write_file(tl.dir, "openssl.cnf",
               "openssl_conf = openssl_init\n"
               "[openssl_init]\nssl_conf = ssl_sect\n"
               "[ssl_sect]\nsystem_default = system_default_sect\n"
               "[system_default_sect]\nMinProtocol = TLSv1.3\n"
               "Ciphersuites = TLS_AES_128_GCM_SHA256\nGroups = X25519\n");
}

static void tools_files_remove(void)
{
    static const char *const names[] = {"ca.pem",      "cert.pem",    "key.pem",
                                        "openssl.cnf", "client.conf", "server.conf",
                                        "client.log",  "server.log"};
    char path[256];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tl.dir, names[i]);
        unlink(path);
    }
    rmdir(tl.dir);
}

/* Starts the server and the client of one tool: the client listens on
 * cport, the server on sport and connects to the sink on kport. */
static void tools_start(int tool, unsigned cport, unsigned sport, unsigned kport)
{
    char conf[128], clog[128], slog[128], ca_f[128], cert_f[128], key_f[128];
    snprintf(conf, sizeof(conf), "%s/openssl.cnf", tl.dir);
    snprintf(clog, sizeof(clog), "%s/client.log", tl.dir);
    snprintf(slog, sizeof(slog), "%s/server.log", tl.dir);
    snprintf(ca_f, sizeof(ca_f), "%s/ca.pem", tl.dir);
    snprintf(cert_f, sizeof(cert_f), "%s/cert.pem", tl.dir);
    snprintf(key_f, sizeof(key_f), "%s/key.pem", tl.dir);
    char a1[512], a2[512];
    if (tool == TOOL_DXTLS) {
        snprintf(a1, sizeof(a1), "tcp:127.0.0.1:%u", kport);
        snprintf(a2, sizeof(a2), "tcp-listen:127.0.0.1:%u", sport);
        char *sv[] = {(char *)opt.dxtls, "--server", "--info", "--cert", cert_f, "--key", key_f,
                      "--min-version", "TLSv1.3", "--ciphersuites", "TLS_AES_128_GCM_SHA256",
                      "--groups", "X25519", a1, a2, NULL};
        tool_spawn(sv, slog, conf);
        char b1[512], b2[512];
        snprintf(b1, sizeof(b1), "tcp-listen:127.0.0.1:%u", cport);
        snprintf(b2, sizeof(b2), "tcp:127.0.0.1:%u", sport);
        char *cv[] = {(char *)opt.dxtls, "--client", "--quiet", "--ca", ca_f, "--servername",
                      "localhost", "--min-version", "TLSv1.3", "--ciphersuites",
                      "TLS_AES_128_GCM_SHA256", "--groups", "X25519", b1, b2, NULL};
        tool_spawn(cv, clog, conf);
    } else if (tool == TOOL_STUNNEL) {
        char text[1024], sconf[128], cconf[128];
        const char *tls = "sslVersionMin = TLSv1.3\nciphersuites = TLS_AES_128_GCM_SHA256\n"
                          "curves = X25519\n";
        snprintf(text, sizeof(text),
                 "foreground = yes\npid =\ndebug = info\n[server]\naccept = 127.0.0.1:%u\n"
                 "connect = 127.0.0.1:%u\ncert = %s\nkey = %s\n%s",
                 sport, kport, cert_f, key_f, tls);
        write_file(tl.dir, "server.conf", text);
        snprintf(text, sizeof(text),
                 "foreground = yes\npid =\ndebug = notice\n[client]\nclient = yes\n"
                 "accept = 127.0.0.1:%u\nconnect = 127.0.0.1:%u\nCAfile = %s\n"
                 "verifyChain = yes\ncheckHost = localhost\n%s",
                 cport, sport, ca_f, tls);
        write_file(tl.dir, "client.conf", text);
        snprintf(sconf, sizeof(sconf), "%s/server.conf", tl.dir);
        snprintf(cconf, sizeof(cconf), "%s/client.conf", tl.dir);
        char *sv[] = {"stunnel4", sconf, NULL};
        tool_spawn(sv, slog, conf);
        char *cv[] = {"stunnel4", cconf, NULL};
        tool_spawn(cv, clog, conf);
    } else {
        snprintf(a1, sizeof(a1),
                 "OPENSSL-LISTEN:%u,bind=127.0.0.1,reuseaddr,cert=%s,key=%s,verify=0", sport,
                 cert_f, key_f);
        snprintf(a2, sizeof(a2), "TCP:127.0.0.1:%u", kport);
        char *sv[] = {"socat", "-d", "-d", a1, a2, NULL};
        tool_spawn(sv, slog, conf);
        char b1[512], b2[512];
        snprintf(b1, sizeof(b1), "TCP-LISTEN:%u,bind=127.0.0.1,reuseaddr", cport);
        snprintf(b2, sizeof(b2), "OPENSSL:127.0.0.1:%u,cafile=%s,commonname=localhost", sport,
                 ca_f);
        char *cv[] = {"socat", b1, b2, NULL};
        tool_spawn(cv, clog, conf);
    }
    tools_wait_listening(cport, sport, clog, slog);
}

/* Moves total bytes from the source to the sink through the tools
 * listening on cport; returns bytes per second. */
static double tools_transfer(unsigned cport, int sink_l, uint64_t total)
{
    static uint8_t buf[262144];
    memset(buf, 'x', sizeof(buf));
    int src = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cport),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    double t0 = now_s();
    if (src < 0 ||
        (connect(src, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS))
        die("connect to the tool: %s", strerror(errno));
    int sink = -1;
    uint64_t sent = 0, got = 0;
    /* a generous bound: 10 MB/s */
    double until = t0 + 10 + (double)total / 10e6;
    while (got < total) {
        struct pollfd p[2];
        int n = 0;
        if (sent < total)
            p[n++] = (struct pollfd){.fd = src, .events = POLLOUT};
        p[n++] = (struct pollfd){.fd = sink < 0 ? sink_l : sink, .events = POLLIN};
        if (poll(p, (nfds_t)n, 1000) < 0 && errno != EINTR)
            die("poll: %s", strerror(errno));
        if (now_s() > until)
            die("the transfer through %s stalled: %" PRIu64 " of %" PRIu64 " bytes arrived",
                "the tools", got, total);
        for (int i = 0; i < n; i++) {
            if (!p[i].revents)
                continue;
            if (p[i].fd == src) {
                size_t want = total - sent < sizeof(buf) ? (size_t)(total - sent) : sizeof(buf);
                ssize_t w = write(src, buf, want);
                if (w > 0)
                    sent += (uint64_t)w;
                else if (w < 0 && errno != EAGAIN && errno != EINTR)
                    die("write to the tool: %s", strerror(errno));
            } else if (p[i].fd == sink_l) {
                sink = accept4(sink_l, NULL, NULL, SOCK_NONBLOCK);
                if (sink < 0 && errno != EAGAIN && errno != EINTR)
                    die("accept: %s", strerror(errno));
            } else {
                ssize_t r = read(sink, buf, sizeof(buf));
                if (r > 0)
                    got += (uint64_t)r;
                else if (r == 0)
                    die("the tool closed after %" PRIu64 " of %" PRIu64 " bytes", got, total);
                else if (errno != EAGAIN && errno != EINTR)
                    die("read from the tool: %s", strerror(errno));
            }
        }
    }
    double t = now_s() - t0;
    close(src);
    close(sink);
    return (double)total / t;
}

/* Whether the server's log names the suite. */
static bool log_names_suite(void)
{
    char path[128], line[1024];
    snprintf(path, sizeof(path), "%s/server.log", tl.dir);
    FILE *f = fopen(path, "r");
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f))
        found = strstr(line, "TLS_AES_128_GCM_SHA256") != NULL;
    if (f)
        fclose(f);
    return found;
}

/* One transfer through one tool: its rate, and the CPU seconds of both of
 * its processes in *cpu. */
static double tools_once(int tool, int sink_l, unsigned kport, uint64_t total, bool check,
                         double *cpu)
{
    unsigned cport = free_port(), sport = free_port();
    while (sport == cport)
        sport = free_port();
    tools_start(tool, cport, sport, kport);
    double rate = tools_transfer(cport, sink_l, total);
    tl.cpu = 0;
    tools_reap();
    *cpu = tl.cpu;
    if (check && !log_names_suite()) {
        char path[128];
        snprintf(path, sizeof(path), "%s/server.log", tl.dir);
        show_log(path);
        die("%s: the server's log does not show TLS_AES_128_GCM_SHA256", tool_label[tool]);
    }
    return rate;
}

static void run_tools(void)
{
    bool have[NTOOLS] = {true, tool_installed("stunnel4"), tool_installed("socat")};
    if (!opt.dxtls || !tool_installed(opt.dxtls)) {
        printf("dxtls against stunnel4 and socat: no dxtls (--dxtls PATH); not measured\n");
        return;
    }
    for (int t = 1; t < NTOOLS; t++)
        if (!have[t])
            printf("dxtls against %s: %s is not installed (scripts/install-deps); not "
                   "measured\n",
                   tool_label[t], tool_label[t]);
    if (!have[TOOL_STUNNEL] && !have[TOOL_SOCAT])
        return;
    tools_files();
    int sink_l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (sink_l < 0 || bind(sink_l, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(sink_l, 4) != 0 || getsockname(sink_l, (struct sockaddr *)&a, &len) != 0)
        die("sink: %s", strerror(errno));
    unsigned kport = ntohs(a.sin_port);
    uint64_t total = opt.tool_bytes;
    double rate[NTOOLS][MAX_ROUNDS], cpu[NTOOLS][MAX_ROUNDS], ratio[NTOOLS][MAX_ROUNDS];
    /* a first, smaller transfer each, unrecorded, checks the suite */
    for (int t = 0; t < NTOOLS; t++) {
        double c;
        if (have[t])
            tools_once(t, sink_l, kport, total / 16 ? total / 16 : total, true, &c);
    }
    for (int r = 0; r < opt.rounds; r++) {
        for (int j = 0; j < NTOOLS; j++) {
            int t = r % 2 ? NTOOLS - 1 - j : j;
            if (have[t])
                rate[t][r] = tools_once(t, sink_l, kport, total, false, &cpu[t][r]);
        }
        for (int t = 1; t < NTOOLS; t++)
            ratio[t][r] = rate[TOOL_DXTLS][r] / rate[t][r];
    }
    close(sink_l);
    tools_files_remove();
    char size[32];
    if (total >= (uint64_t)1 << 30)
        snprintf(size, sizeof(size), "%.0f GiB", (double)total / (1 << 30));
    else
        snprintf(size, sizeof(size), "%.0f MiB", (double)total / (1 << 20));
    for (int t = 1; t < NTOOLS; t++) {
        if (!have[t])
            continue;
        char name[96];
        snprintf(name, sizeof(name), "dxtls MB/s, %s over TCP, vs %s", size, tool_label[t]);
        result *res = add_result(name, "MB/s", tool_label[t], T_RATIO_MIN, 1.0);
        res->dx = median(rate[TOOL_DXTLS], opt.rounds) / 1e6;
        res->base = median(rate[t], opt.rounds) / 1e6;
        res->ratio = median(ratio[t], opt.rounds);
        res->lo = res->hi = ratio[t][0];
        for (int r = 1; r < opt.rounds; r++) {
            res->lo = ratio[t][r] < res->lo ? ratio[t][r] : res->lo;
            res->hi = ratio[t][r] > res->hi ? ratio[t][r] : res->hi;
        }
        print_result(res);
    }
    printf("  CPU seconds per GiB, both processes of each tool (median):");
    for (int t = 0; t < NTOOLS; t++) {
        if (!have[t])
            continue;
        double per[MAX_ROUNDS];
        for (int r = 0; r < opt.rounds; r++)
            per[r] = cpu[t][r] / ((double)total / (1 << 30));
        printf(" %s %.2f", tool_label[t], median(per, opt.rounds));
    }
    printf("\n");
    fflush(stdout);
}

/* ---- output files ------------------------------------------------------------------ */

static FILE *out_file(const char *name)
{
    if (!opt.out_dir)
        return NULL;
    mkdir(opt.out_dir, 0777);
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", opt.out_dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s: %s", path, strerror(errno));
    return f;
}

/* ---- main ---------------------------------------------------------------------------- */

static void usage(void);

static int profile_one(void)
{
    static const struct {
        const char *name;
        measure_fn fn;
        hs_arg hs;
        bulk_arg bulk;
    } table[] = {
        {"hs-ec", m_handshakes, {.key = KEY_EC}, {0, 0, false}},
        {"hs-rsa", m_handshakes, {.key = KEY_RSA}, {0, 0, false}},
        {"resume", m_handshakes, {.key = KEY_EC, .resume = true}, {0, 0, false}},
        {"bulk-aes128", m_bulk, {0, false}, {SUITE_AES128, 16384, false}},
        {"bulk-aes256", m_bulk, {0, false}, {SUITE_AES256, 16384, false}},
        {"bulk-chacha", m_bulk, {0, false}, {SUITE_CHACHA, 16384, false}},
        {"ping", m_pingpong, {0, false}, {0, 0, false}},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(opt.profile, table[i].name) != 0)
            continue;
        make_pki();
        make_sessions();
        const void *arg = table[i].fn == m_bulk ? (const void *)&table[i].bulk
                                                : (const void *)&table[i].hs;
        double rate = table[i].fn(opt.profile_impl, arg, opt.secs);
        printf("%s %s: %.0f operations, %.1f per second\n", opt.profile,
               impl_label[opt.profile_impl], last_ops, rate);
        SSL_SESSION_free(raw_session);
        free_contexts();
        free_pki();
        return 0;
    }
    usage();
    return 2;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: dxbench [--quick | --smoke] [--rounds N] [--secs S] [--node SCRIPT]\n"
            "               [--dxtls PATH] [--tool-bytes N] [--out DIR] [--only GROUPS]\n"
            "       dxbench --profile METRIC dx|raw|pair [--secs S]\n"
            "GROUPS: comma-separated among hs,resume,bulk,ping,mem,conns,sweep,tools\n"
            "--dxtls: the dxtls program, measured against stunnel4 and socat (tools),\n"
            "         --tool-bytes bytes at a time (1 GiB; quick 128 MiB, smoke 4 MiB)\n"
            "METRIC: hs-ec, hs-rsa, resume, bulk-aes128, bulk-aes256, bulk-chacha, ping;\n"
            "        runs that measurement once on one side (for a profiler) and prints\n"
            "        the operations done\n");
    exit(2);
}

int main(int argc, char **argv)
{
    set_mode("full");
    uint64_t tool_bytes = 0;
    opt.node_bin = getenv("NODE") ? getenv("NODE") : "node";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            set_mode("quick");
        } else if (strcmp(a, "--smoke") == 0) {
            set_mode("smoke");
        } else if (strcmp(a, "--rounds") == 0 && v) {
            opt.rounds = atoi(v);
            i++;
        } else if (strcmp(a, "--secs") == 0 && v) {
            opt.secs = atof(v);
            i++;
        } else if (strcmp(a, "--node") == 0 && v) {
            opt.node_script = *v ? v : NULL;
            i++;
        } else if (strcmp(a, "--out") == 0 && v) {
            opt.out_dir = v;
            i++;
        } else if (strcmp(a, "--dxtls") == 0 && v) {
            opt.dxtls = *v ? v : NULL;
            i++;
        } else if (strcmp(a, "--tool-bytes") == 0 && v) {
            tool_bytes = strtoull(v, NULL, 0);
            i++;
        } else if (strcmp(a, "--only") == 0 && v) {
            opt.only = v;
            i++;
        } else if (strcmp(a, "--profile") == 0 && v && i + 2 < argc) {
            opt.profile = v;
            opt.profile_impl = strcmp(argv[i + 2], "raw") == 0    ? IMPL_RAW
                               : strcmp(argv[i + 2], "pair") == 0 ? IMPL_PAIR
                                                                  : IMPL_DX;
            i += 2;
        } else {
            usage();
        }
    }
    if (tool_bytes)
        opt.tool_bytes = tool_bytes;
    if (opt.rounds < 1 || opt.rounds > MAX_ROUNDS || !(opt.secs > 0))
        usage();
    signal(SIGPIPE, SIG_IGN);
    if (opt.profile)
        return profile_one();

    printf("dxbench (%s mode): %d rounds, %.3f s per side per round; libduplex %s, %s\n",
           opt.mode, opt.rounds, opt.secs, dx_version_string(), OpenSSL_version(OPENSSL_VERSION));
    printf("libduplex: client and server dx_tls joined by a dx_link on their lower streams; "
           "raw OpenSSL: two SSL objects on memory BIOs, bytes moved after each call "
           "(\"vs BIO pair\": on a BIO pair, for information)\n");
    fflush(stdout);


    mem_report mem;
    memset(&mem, 0, sizeof(mem));
    bool did_mem = wanted("mem");
    if (did_mem)
        mem = run_memory();

    make_pki();
    memset(bulk_src, 'x', sizeof(bulk_src));
    if (opt.node_script)
        node_start();
    bool with_node = node.up;
    make_sessions();
    print_header();

    if (wanted("hs")) {
        static const char *const label[NKEYS] = {"ECDSA P-256", "RSA-2048"};
        for (int k = 0; k < NKEYS; k++) {
            hs_arg a = {.key = k};
            rounds_out o = run_rounds(m_handshakes, &a, with_node, true, opt.secs);
            char name[96];
            snprintf(name, sizeof(name), "full handshakes/s %s", label[k]);
            report(&o, name, "/s", 1, 0.97, 1.4);
        }
    }
    if (wanted("resume")) {
        hs_arg a = {.key = KEY_EC, .resume = true};
        rounds_out o = run_rounds(m_handshakes, &a, with_node, true, opt.secs);
        report(&o, "resumed handshakes/s (tickets)", "/s", 1, 0.95, 2.5);
    }
    if (wanted("bulk")) {
        for (int s = 0; s < NSUITES; s++) {
            bulk_arg a = {.suite = s, .size = 16384};
            rounds_out o = run_rounds(m_bulk, &a, with_node, true, opt.secs);
            char name[96];
            snprintf(name, sizeof(name), "bulk MB/s 16 KiB writes %s", suite_label[s]);
            report(&o, name, "MB/s", 1e6, 0.95, 2.5);
        }
    }
    if (wanted("ping")) {
        rounds_out o = run_rounds(m_pingpong, NULL, with_node, true, opt.secs);
        report(&o, "64-byte ping-pong round trips/s", "/s", 1, 0.85, 5.0);
    }
    if (did_mem) {
        result *r = add_result("idle server connection heap, released (B)", "B", "raw OpenSSL",
                               T_DIFF_MAX, 2048);
        r->dx = mem.idle[IMPL_DX][1], r->base = mem.idle[IMPL_RAW][1];
        r->ratio = r->dx / r->base;
        print_result(r);
        r = add_result("idle server connection heap, kept (B)", "B", "raw OpenSSL", T_INFO, 0);
        r->dx = mem.idle[IMPL_DX][0], r->base = mem.idle[IMPL_RAW][0];
        r->ratio = r->dx / r->base;
        print_result(r);
        printf("  (of which libduplex's own allocations: %.0f B released, %.0f B kept)\n",
               mem.own[1], mem.own[0]);
    }
    if (wanted("conns")) {
        run_conns();
        size_t maxn = opt.levels[opt.nlevels - 1];
        char name[96];
        if (did_mem) {
            snprintf(name, sizeof(name), "idle server heap at %zu conns, released (B)", maxn);
            result *r = add_result(name, "B", "raw OpenSSL", T_DIFF_MAX, 2048);
            r->dx = mem.level[IMPL_DX][opt.nlevels - 1];
            r->base = mem.level[IMPL_RAW][opt.nlevels - 1];
            r->ratio = r->dx / r->base;
            print_result(r);
        }
        snprintf(name, sizeof(name), "handshakes/s with %zu open / with %zu open", maxn,
                 opt.levels[0]);
        result *r = add_result(name, "", "libduplex", T_RATIO_MIN, 0.90);
        r->dx = conn_rate[IMPL_DX][opt.nlevels - 1], r->base = conn_rate[IMPL_DX][0];
        r->ratio = conn_scale[IMPL_DX];
        r->lo = conn_lo[IMPL_DX], r->hi = conn_hi[IMPL_DX];
        print_result(r);
        snprintf(name, sizeof(name), "raw OpenSSL, the same (reference)");
        r = add_result(name, "", "raw OpenSSL", T_INFO, 0);
        r->dx = conn_rate[IMPL_RAW][opt.nlevels - 1], r->base = conn_rate[IMPL_RAW][0];
        r->ratio = conn_scale[IMPL_RAW];
        r->lo = conn_lo[IMPL_RAW], r->hi = conn_hi[IMPL_RAW];
        print_result(r);
        FILE *f = out_file("connections.dat");
        if (f) {
            fprintf(f, "# connections  hs/s-libduplex  hs/s-raw  heap-libduplex  heap-raw"
                       "  (heap: bytes per idle server connection, buffers released)\n");
            for (int l = 0; l < opt.nlevels; l++)
                fprintf(f, "%zu %.1f %.1f %.0f %.0f\n", opt.levels[l], conn_rate[IMPL_DX][l],
                        conn_rate[IMPL_RAW][l], mem.level[IMPL_DX][l], mem.level[IMPL_RAW][l]);
            fclose(f);
        }
    }
    if (wanted("sweep")) {
        FILE *f = out_file("throughput.dat");
        if (f)
            fprintf(f, "# write-size  MB/s-libduplex  MB/s-raw  MB/s-node  MB/s-libduplex-corked"
                       "  (AES-128-GCM)\n");
        printf("throughput against write size, AES-128-GCM (MB/s; corked: libduplex with "
               "dx_stream_cork() around each 16 KiB of writes):\n");
        printf("  %8s %12s %12s %12s %10s %12s\n", "size", "libduplex", "raw OpenSSL", "Node",
               "dx/raw", "corked");
        for (size_t size = 64; size <= 65536; size *= 2) {
            bulk_arg a = {.suite = SUITE_AES128, .size = size};
            rounds_out o = run_rounds(m_bulk, &a, with_node, false, opt.sweep_secs);
            double corked = o.med[IMPL_DX];
            if (size < 16384) {
                bulk_arg c = a;
                c.cork = true;
                corked = run_rounds(m_bulk, &c, false, false, opt.sweep_secs).med[IMPL_DX];
            }
            printf("  %8zu %12.1f %12.1f %12.1f %9.3fx %12.1f\n", size, o.med[IMPL_DX] / 1e6,
                   o.med[IMPL_RAW] / 1e6, with_node ? o.med[IMPL_NODE] / 1e6 : NAN,
                   o.ratio[IMPL_RAW], corked / 1e6);
            fflush(stdout);
            if (f)
                fprintf(f, "%zu %.2f %.2f %.2f %.2f\n", size, o.med[IMPL_DX] / 1e6,
                        o.med[IMPL_RAW] / 1e6, with_node ? o.med[IMPL_NODE] / 1e6 : NAN,
                        corked / 1e6);
        }
        if (f)
            fclose(f);
    }

    if (wanted("tools"))
        run_tools();

    int shortfalls = 0;
    for (int i = 0; i < nresults; i++)
        if (!passes(&results[i]))
            shortfalls++;
    int targets = 0;
    for (int i = 0; i < nresults; i++)
        targets += results[i].kind != T_INFO;
    printf("summary: %d of %d targets met%s\n", targets - shortfalls, targets,
           shortfalls ? "; short:" : "");
    for (int i = 0; i < nresults; i++)
        if (!passes(&results[i]))
            printf("  SHORT: %s\n", results[i].name);
    if (opt.node_script && !with_node)
        printf("  (no comparison with Node: the script did not start)\n");

    node_stop();
    SSL_SESSION_free(raw_session);
    free_contexts();
    free_pki();
    return 0;
}
