/*
 * What the fuzz targets share: the deterministic random stream and clock,
 * the certificates, and the server and client endpoints (fuzz.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "fuzz.h"

/* ---- the random stream ------------------------------------------------------
 * A provider with one random generator, "fz", which OpenSSL is told to use
 * for its primary, public and private generators. Its output is a
 * splitmix64 stream whose state the targets reset. */

uint64_t fz_rand_state;

static uint64_t fz_next(void)
{
    uint64_t z = (fz_rand_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void *fz_rng_new(void *provctx, void *parent, const OSSL_DISPATCH *pd)
{
    (void)provctx;
    (void)parent;
    (void)pd;
    int *st = OPENSSL_malloc(sizeof(*st));
    if (st)
        *st = EVP_RAND_STATE_UNINITIALISED;
    return st;
}

static void fz_rng_free(void *v)
{
    OPENSSL_free(v);
}

static int fz_rng_instantiate(void *v, unsigned int strength, int pr, const unsigned char *ps,
                              size_t pslen, const OSSL_PARAM params[])
{
    (void)strength;
    (void)pr;
    (void)ps;
    (void)pslen;
    (void)params;
    *(int *)v = EVP_RAND_STATE_READY;
    return 1;
}

static int fz_rng_uninstantiate(void *v)
{
    *(int *)v = EVP_RAND_STATE_UNINITIALISED;
    return 1;
}

static int fz_rng_generate(void *v, unsigned char *out, size_t outlen, unsigned int strength,
                           int pr, const unsigned char *adin, size_t adinlen)
{
    (void)v;
    (void)strength;
    (void)pr;
    (void)adin;
    (void)adinlen;
    while (outlen) {
        uint64_t r = fz_next();
        size_t n = outlen < 8 ? outlen : 8;
        memcpy(out, &r, n);
        out += n;
        outlen -= n;
    }
    return 1;
}

static int fz_rng_enable_locking(void *v)
{
    (void)v;
    return 1;
}

static int fz_rng_get_ctx_params(void *v, OSSL_PARAM params[])
{
    OSSL_PARAM *p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_STATE);
    if (p && !OSSL_PARAM_set_int(p, *(int *)v))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_STRENGTH);
    if (p && !OSSL_PARAM_set_uint(p, 256))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_MAX_REQUEST);
    if (p && !OSSL_PARAM_set_size_t(p, 1u << 16))
        return 0;
    return 1;
}

static const OSSL_PARAM *fz_rng_gettable(void *v, void *provctx)
{
    (void)v;
    (void)provctx;
    static const OSSL_PARAM known[] = {
        OSSL_PARAM_int(OSSL_RAND_PARAM_STATE, NULL),
        OSSL_PARAM_uint(OSSL_RAND_PARAM_STRENGTH, NULL),
        OSSL_PARAM_size_t(OSSL_RAND_PARAM_MAX_REQUEST, NULL),
        OSSL_PARAM_END,
    };
    return known;
}

typedef void (*fz_fn)(void);
static const OSSL_DISPATCH fz_rng_functions[] = {
    {OSSL_FUNC_RAND_NEWCTX, (fz_fn)fz_rng_new},
    {OSSL_FUNC_RAND_FREECTX, (fz_fn)fz_rng_free},
    {OSSL_FUNC_RAND_INSTANTIATE, (fz_fn)fz_rng_instantiate},
    {OSSL_FUNC_RAND_UNINSTANTIATE, (fz_fn)fz_rng_uninstantiate},
    {OSSL_FUNC_RAND_GENERATE, (fz_fn)fz_rng_generate},
    {OSSL_FUNC_RAND_ENABLE_LOCKING, (fz_fn)fz_rng_enable_locking},
    {OSSL_FUNC_RAND_GETTABLE_CTX_PARAMS, (fz_fn)fz_rng_gettable},
    {OSSL_FUNC_RAND_GET_CTX_PARAMS, (fz_fn)fz_rng_get_ctx_params},
    {0, NULL},
};

static const OSSL_ALGORITHM fz_rng_algs[] = {
    {"fz", "provider=fz-rand", fz_rng_functions, NULL},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM *fz_query(void *provctx, int op, int *no_cache)
{
    (void)provctx;
    *no_cache = 0;
    return op == OSSL_OP_RAND ? fz_rng_algs : NULL;
}

static const OSSL_DISPATCH fz_provider_functions[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (fz_fn)fz_query},
    {0, NULL},
};

static int fz_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                            const OSSL_DISPATCH **out, void **provctx)
{
    (void)handle;
    (void)in;
    *out = fz_provider_functions;
    *provctx = NULL;
    return 1;
}

static OSSL_PROVIDER *fz_provider;

/* ---- the clocks -------------------------------------------------------------- */

/* OpenSSL reads the wall clock with time(): this definition replaces the C
 * library's in the fuzz programs. */
time_t time(time_t *t)
{
    if (t)
        *t = FZ_NOW;
    return FZ_NOW;
}

uint64_t fz_now_ms;

uint64_t fz_clock(void *arg)
{
    (void)arg;
    return fz_now_ms;
}

/* ---- buffers ------------------------------------------------------------------ */

void fz_buf_add(fz_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q)
            abort();
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

void fz_buf_free(fz_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- certificates -------------------------------------------------------------- */

static dx_pki_cert *fz_ca, *fz_leaf, *fz_sni_leaf, *fz_client_leaf;
static uint8_t *fz_ocsp;
static size_t fz_ocsp_len;

static void must(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "fuzz set-up failed: %s: %d\n", what, rc);
        abort();
    }
}

static void free_contexts(void);
static void build_contexts(void);

static void free_pki(void)
{
    free_contexts();
    dx_pki_ocsp_free(fz_ocsp);
    dx_pki_cert_free(fz_client_leaf);
    dx_pki_cert_free(fz_sni_leaf);
    dx_pki_cert_free(fz_leaf);
    dx_pki_cert_free(fz_ca);
    if (fz_provider)
        OSSL_PROVIDER_unload(fz_provider);
    fz_provider = NULL;
}

/* libFuzzer's set-up hook, the same for every target (and called by the
 * replay driver). */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    return 0;
}

void fz_init(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    /* The same OpenSSL configuration on every machine: none. */
    setenv("OPENSSL_CONF", "/dev/null", 1);
    if (!OSSL_PROVIDER_add_builtin(NULL, "fz-rand", fz_provider_init) ||
        !RAND_set_DRBG_type(NULL, "fz", NULL, NULL, NULL) ||
        !(fz_provider = OSSL_PROVIDER_try_load(NULL, "fz-rand", 1))) {
        fprintf(stderr, "fuzz set-up failed: the random provider\n");
        abort();
    }
    fz_rand_state = UINT64_C(0x504b490000000001);
    static const char *const dns[] = {"localhost", "server.test", NULL};
    static const char *const ips[] = {"127.0.0.1", "::1", NULL};
    static const char *const sni_dns[] = {"a.sni.test", "*.sni.test", NULL};
    const int64_t ten_years = INT64_C(10) * 365 * 24 * 3600;
    dx_pki_opts o = {.common_name = "Fuzz CA", .is_ca = true, .not_after = ten_years};
    must(dx_pki_issue(NULL, &o, &fz_ca, NULL), "CA");
    dx_pki_opts l = {.common_name = "localhost", .dns_names = dns, .ip_addresses = ips,
                     .ext_key_usage = DX_PKI_EKU_SERVER, .not_after = ten_years};
    must(dx_pki_issue(fz_ca, &l, &fz_leaf, NULL), "server certificate");
    dx_pki_opts s = {.common_name = "sni", .dns_names = sni_dns, .not_after = ten_years};
    must(dx_pki_issue(fz_ca, &s, &fz_sni_leaf, NULL), "SNI certificate");
    dx_pki_opts c = {.common_name = "client", .ext_key_usage = DX_PKI_EKU_CLIENT,
                     .not_after = ten_years};
    must(dx_pki_issue(fz_ca, &c, &fz_client_leaf, NULL), "client certificate");
    must(dx_pki_ocsp_response(fz_ca, fz_leaf, DX_PKI_OCSP_GOOD, -60, 3600, &fz_ocsp,
                              &fz_ocsp_len),
         "OCSP response");
    build_contexts();
    atexit(free_pki);
}

/* ---- contexts ---------------------------------------------------------------------- */

static dx_tls_ctx *build_ctx(const dx_pki_cert *leaf, unsigned opts, int psk)
{
    dx_tls_config *cfg;
    must(dx_tls_config_new(&cfg), "config");
    const char *ca = dx_pki_cert_pem(fz_ca);
    must(dx_tls_config_add_ca(cfg, ca, strlen(ca)), "add_ca");
    if (leaf) {
        const char *c = dx_pki_cert_pem(leaf), *k = dx_pki_key_pem(leaf);
        must(dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL), "add_cert");
    }
    switch (opts & FZ_VERSION_MASK) {
    case FZ_V_12:
        must(dx_tls_config_set_min_version(cfg, "TLSv1.2"), "min");
        must(dx_tls_config_set_max_version(cfg, "TLSv1.2"), "max");
        break;
    case FZ_V_13:
        must(dx_tls_config_set_min_version(cfg, "TLSv1.3"), "min");
        break;
    case FZ_V_ALL:
        must(dx_tls_config_set_min_version(cfg, "TLSv1"), "min");
        break;
    default:
        break;
    }
    if (psk)
        must(dx_tls_config_set_ciphers(cfg, "ECDHE-ECDSA-AES128-GCM-SHA256:"
                                            "PSK-AES128-GCM-SHA256:ECDHE-PSK-CHACHA20-POLY1305"),
             "ciphers");
    dx_tls_ctx *ctx;
    must(dx_tls_ctx_new(cfg, &ctx, NULL), "context");
    dx_tls_config_free(cfg);
    return ctx;
}

/* Contexts cost more to build than a handshake: every one the targets use
 * is built once, in fz_init(), always in the same order (building one
 * draws random numbers). They keep no state from one connection to the
 * next that changes a handshake: the filter keeps sessions per server,
 * not in OpenSSL's cache. */
enum { K_SERVER, K_SNI, K_CLIENT, K_CLIENT_CERT, K_COUNT };
static dx_tls_ctx *ctx_cache[K_COUNT][4][2];

static const dx_pki_cert *kind_leaf(int kind)
{
    switch (kind) {
    case K_SERVER: return fz_leaf;
    case K_SNI: return fz_sni_leaf;
    case K_CLIENT_CERT: return fz_client_leaf;
    default: return NULL;
    }
}

static void build_contexts(void)
{
    for (int k = 0; k < K_COUNT; k++)
        for (unsigned v = 0; v < 4; v++)
            for (int psk = 0; psk < 2; psk++)
                ctx_cache[k][v][psk] = build_ctx(kind_leaf(k), v, psk);
}

static void free_contexts(void)
{
    for (int k = 0; k < K_COUNT; k++)
        for (unsigned v = 0; v < 4; v++)
            for (int psk = 0; psk < 2; psk++) {
                dx_tls_ctx_unref(ctx_cache[k][v][psk]);
                ctx_cache[k][v][psk] = NULL;
            }
}

/* A new reference to a context of the cache. */
static dx_tls_ctx *make_ctx(const dx_pki_cert *leaf, unsigned opts, int psk)
{
    int kind = leaf == fz_leaf ? K_SERVER
             : leaf == fz_sni_leaf ? K_SNI
             : leaf == fz_client_leaf ? K_CLIENT_CERT : K_CLIENT;
    return dx_tls_ctx_ref(ctx_cache[kind][opts & FZ_VERSION_MASK][psk != 0]);
}

/* ---- the endpoints -------------------------------------------------------------------- */

static const char *const alpn[] = {"h2", "http/1.1", NULL};
static const char hello[] = "GET / HTTP/1.0\r\n\r\n";

static void wire_data(dx_stream *s, const uint8_t *p, size_t n, void *u)
{
    (void)s;
    fz_ep *e = u;
    if (e->keep_out)
        fz_buf_add(&e->out, p, n);
}

static const dx_stream_events wire_events = {.on_data = wire_data};

static void clear_data(dx_stream *s, const uint8_t *p, size_t n, void *u)
{
    fz_ep *e = u;
    if (e->clear.len < 65536)
        fz_buf_add(&e->clear, p, n);
    if (e->acts & FZ_ACT_ECHO)
        (void)dx_stream_write(s, p, n);
}

static const dx_stream_events clear_events = {.on_data = clear_data};

static void rehandshake_done(dx_tls *t, const dx_error *err, void *u)
{
    (void)t;
    (void)err;
    (void)u;
}

static void on_secure(fz_ep *e)
{
    e->secure++;
    if ((e->acts & FZ_ACT_HELLO) && e->secure == 1)
        (void)dx_stream_write(dx_tls_upper(e->t), hello, sizeof(hello) - 1);
    if ((e->acts & FZ_ACT_REHANDSHAKE) && !e->rehandshake_started) {
        e->rehandshake_started = 1;
        const char *proto = dx_tls_protocol(e->t);
        if (proto && strcmp(proto, "TLSv1.3") != 0) {
            (void)dx_tls_renegotiate(e->t, NULL, rehandshake_done, e);
        } else if (e->role == DX_TLS_SERVER &&
                   dx_tls_request_client_cert(e->t, rehandshake_done, e) == 0) {
            /* post-handshake authentication under way */
        } else {
            (void)dx_tls_key_update(e->t, true);
        }
    }
}

static void srv_secure(dx_tls_server *srv, dx_tls *t, void *u)
{
    (void)srv;
    (void)t;
    on_secure(u);
}

static void srv_sni(dx_tls_server *srv, dx_tls *t, const char *name, dx_tls_pending *p,
                    void *u)
{
    (void)srv;
    (void)t;
    (void)name;
    fz_ep *e = u;
    if (e->sni)
        abort(); /* one SNI choice per handshake */
    e->sni = p;
}

static void srv_ocsp(dx_tls_server *srv, dx_tls *t, const dx_tls_cert *cert,
                     const dx_tls_cert *issuer, dx_tls_pending *p, void *u)
{
    (void)srv;
    (void)t;
    (void)cert;
    (void)issuer;
    fz_ep *e = u;
    if (e->nocsp == 2)
        abort(); /* one per certificate of the context: it holds one */
    e->ocsp[e->nocsp++] = p;
}

static int srv_psk(dx_tls *t, const char *name, dx_tls_psk *psk, void *u)
{
    (void)t;
    (void)u;
    if (!name || strcmp(name, "fuzz") != 0)
        return -1;
    memset(psk->key, 0x42, 32);
    psk->key_len = 32;
    return 0;
}

/* The external session store: one session, looked up later. */
static struct {
    uint8_t id[64], session[4096];
    size_t id_len, len;
} store;

static void store_put(void *arg, const uint8_t *id, size_t id_len, const uint8_t *s,
                      size_t len, uint64_t expires)
{
    (void)arg;
    (void)expires;
    if (id_len > sizeof(store.id) || len > sizeof(store.session))
        return;
    memcpy(store.id, id, id_len);
    store.id_len = id_len;
    memcpy(store.session, s, len);
    store.len = len;
}

static void store_get(void *arg, const uint8_t *id, size_t id_len, dx_tls_pending *p)
{
    (void)id;
    (void)id_len;
    fz_ep *e = arg;
    if (e->sess)
        abort(); /* one lookup at a time */
    e->sess = p;
}

static void store_del(void *arg, const uint8_t *id, size_t id_len)
{
    (void)arg;
    if (id_len == store.id_len && memcmp(id, store.id, id_len) == 0)
        store.len = store.id_len = 0;
}

static const dx_tls_session_store store_ops = {store_put, store_get, store_del};

static dx_tls_ctx *sni_ctx_for(unsigned opts)
{
    return make_ctx(fz_sni_leaf, opts, 0);
}

void fz_server_open(fz_ep *e, unsigned opts, unsigned acts)
{
    e->role = DX_TLS_SERVER;
    e->opts = opts;
    e->acts = acts;
    memset(&store, 0, sizeof(store));
    e->ctx = make_ctx(fz_leaf, opts, (opts & FZ_SRV_PSK) != 0);
    must(dx_tls_server_new(e->ctx, &e->srv), "server");
    dx_tls_ctx *sni = sni_ctx_for(opts);
    must(dx_tls_server_add_context(e->srv, "*.sni.test", sni), "add_context");
    dx_tls_ctx_unref(sni);
    must(dx_tls_server_set_clock(e->srv, fz_clock, NULL), "clock");
    must(dx_tls_server_set_handshake_timeout(e->srv, 30000), "timeout");
    must(dx_tls_server_set_client_renegotiation(e->srv, true, 2, 0), "renegotiation");
    if (opts & FZ_SRV_REQUEST_CERT)
        must(dx_tls_server_set_request_cert(e->srv, true, true), "request_cert");
    if (opts & FZ_SRV_ALPN)
        must(dx_tls_server_set_alpn_protocols(e->srv, alpn), "alpn");
    if (opts & FZ_SRV_PSK) {
        must(dx_tls_server_set_psk_callback(e->srv, srv_psk, e), "psk");
        must(dx_tls_server_set_psk_identity_hint(e->srv, "fuzz hint"), "hint");
    }
    if (opts & FZ_SRV_STORE)
        must(dx_tls_server_set_session_store(e->srv, &store_ops, e), "store");
    if (acts & FZ_ACT_HALF_OPEN) {
        must(dx_tls_server_set_allow_half_open(e->srv, true), "half_open");
        must(dx_tls_server_set_allow_truncation(e->srv, true), "truncation");
    }
    dx_tls_server_events ev = {.on_secure_connection = srv_secure};
    if (opts & FZ_SRV_SNI_LATER)
        ev.on_sni = srv_sni;
    if (opts & FZ_SRV_OCSP)
        ev.on_ocsp_request = srv_ocsp;
    must(dx_tls_server_set_events(e->srv, &ev, e), "events");
    dx_stream *a, *b;
    must(dx_pair_new(NULL, &a, &b), "pair");
    e->wire = b;
    must(dx_stream_set_events(b, &wire_events, e), "wire events");
    must(dx_tls_server_accept(e->srv, a, &e->t), "accept");
    dx_stream *up = dx_tls_upper(e->t);
    if (acts & FZ_ACT_PAUSE)
        dx_stream_pause(up);
    must(dx_stream_set_events(up, &clear_events, e), "upper events");
}

static void cli_secure(dx_tls *t, void *u)
{
    (void)t;
    on_secure(u);
}

static void cli_session(dx_tls *t, const uint8_t *s, size_t len, void *u)
{
    (void)t;
    fz_ep *e = u;
    if (len <= sizeof(e->session)) {
        memcpy(e->session, s, len);
        e->session_len = len;
    }
}

void fz_client_open(fz_ep *e, unsigned opts, unsigned acts, const uint8_t *session,
                    size_t session_len)
{
    e->role = DX_TLS_CLIENT;
    e->opts = opts;
    e->acts = acts;
    e->ctx = make_ctx((opts & FZ_CLI_CERT) ? fz_client_leaf : NULL, opts, 0);
    must(dx_tls_new(e->ctx, DX_TLS_CLIENT, &e->t), "client");
    dx_tls *t = e->t;
    must(dx_tls_set_clock(t, fz_clock, NULL), "clock");
    must(dx_tls_set_handshake_timeout(t, 30000), "timeout");
    if (opts & FZ_CLI_SERVERNAME)
        must(dx_tls_set_servername(t, "a.sni.test"), "servername");
    if (opts & FZ_CLI_ALPN)
        must(dx_tls_set_alpn_protocols(t, alpn), "alpn");
    if (opts & FZ_CLI_OCSP)
        must(dx_tls_set_ocsp(t, DX_TLS_OCSP_VERIFY), "ocsp");
    if (opts & FZ_CLI_NOVERIFY)
        must(dx_tls_set_reject_unauthorized(t, false), "reject");
    if (opts & FZ_CLI_PHA)
        must(dx_tls_set_post_handshake_auth(t, true), "pha");
    if (acts & FZ_ACT_HALF_OPEN) {
        must(dx_tls_set_allow_half_open(t, true), "half_open");
        must(dx_tls_set_allow_truncation(t, true), "truncation");
    }
    if (session && session_len)
        (void)dx_tls_set_session(t, session, session_len);
    dx_tls_events ev = {.on_secure = cli_secure, .on_session = cli_session};
    must(dx_tls_set_events(t, &ev, e), "events");
    dx_stream *a, *b;
    must(dx_pair_new(NULL, &a, &b), "pair");
    e->wire = b;
    must(dx_stream_set_events(b, &wire_events, e), "wire events");
    must(dx_tls_attach(t, a), "attach");
    dx_stream *up = dx_tls_upper(t);
    if (acts & FZ_ACT_PAUSE)
        dx_stream_pause(up);
    must(dx_stream_set_events(up, &clear_events, e), "upper events");
    must(dx_tls_start(t), "start");
}

/* Answers what the server waits for: SNI (the SNI context for its names,
 * a refusal for names that start with "x", else the default), OCSP
 * staples, session lookups. */
static void answer(fz_ep *e)
{
    if (e->sni) {
        dx_tls_pending *p = e->sni;
        e->sni = NULL;
        const char *name = e->t ? dx_tls_servername(e->t) : NULL;
        size_t n = name ? strlen(name) : 0;
        if (name && name[0] == 'x') {
            dx_tls_sni_refuse(p, NULL);
        } else if (n >= 9 && strcmp(name + n - 9, ".sni.test") == 0) {
            dx_tls_ctx *sni = sni_ctx_for(e->opts);
            dx_tls_sni_done(p, sni);
            dx_tls_ctx_unref(sni);
        } else {
            dx_tls_sni_done(p, NULL);
        }
    }
    while (e->nocsp) {
        dx_tls_pending *p = e->ocsp[--e->nocsp];
        dx_tls_ocsp_done(p, fz_ocsp, fz_ocsp_len, NULL);
    }
    if (e->sess) {
        dx_tls_pending *p = e->sess;
        e->sess = NULL;
        dx_tls_session_found(p, store.len ? store.session : NULL, store.len);
    }
}

dx_tls_ctx *fz_ctx(int server, unsigned opts)
{
    return make_ctx(server ? fz_leaf : NULL, opts, 0);
}

void fz_store_set(const uint8_t *session, size_t len)
{
    if (!session || len > sizeof(store.session)) {
        store.len = 0;
        return;
    }
    memcpy(store.session, session, len);
    store.len = len;
}

/* The random streams of fz_exchange(): 0 the server's, 1 the client's. */
static uint64_t states[2];
static int current;

void fz_streams_reset(void)
{
    states[0] = FZ_SEED_SERVER;
    states[1] = FZ_SEED_CLIENT;
    current = 0;
    fz_rand_state = states[0];
}

void fz_use_stream(int side)
{
    states[current] = fz_rand_state;
    fz_rand_state = states[side];
    current = side;
}

static void use(int two, int side)
{
    if (two)
        fz_use_stream(side);
}

void fz_exchange(fz_ep *s, fz_ep *c, int two, fz_buf *to_server, fz_buf *to_client)
{
    for (int round = 0; round < 64; round++) {
        if (round == 8) {
            /* the exchange has settled: the client's closing actions */
            use(two, 1);
            fz_ep_finish(c);
        }
        if (!c->out.len && !s->out.len) {
            if (round >= 8)
                break;
            continue;
        }
        if (c->out.len) {
            fz_buf b = c->out;
            memset(&c->out, 0, sizeof(c->out));
            if (to_server)
                fz_buf_add(to_server, b.p, b.len);
            use(two, 0);
            fz_ep_feed(s, b.p, b.len);
            fz_buf_free(&b);
        }
        if (s->out.len) {
            fz_buf b = s->out;
            memset(&s->out, 0, sizeof(s->out));
            if (to_client)
                fz_buf_add(to_client, b.p, b.len);
            use(two, 1);
            fz_ep_feed(c, b.p, b.len);
            fz_buf_free(&b);
        }
    }
}

void fz_ep_feed(fz_ep *e, const uint8_t *p, size_t n)
{
    (void)dx_stream_write(e->wire, p, n);
    answer(e);
}

void fz_ep_finish(fz_ep *e)
{
    dx_stream *up = dx_tls_upper(e->t);
    if (e->acts & FZ_ACT_PAUSE)
        dx_stream_resume(up);
    if (e->acts & FZ_ACT_END)
        (void)dx_stream_end(up);
    if (e->acts & FZ_ACT_EOF)
        (void)dx_stream_end(e->wire);
    if (e->acts & FZ_ACT_TIMEOUT) {
        fz_now_ms += 600000;
        dx_tls_check_timeouts(e->t);
    }
    answer(e);
}

void fz_ep_close(fz_ep *e)
{
    dx_tls_destroy(e->t);
    e->t = NULL;
    answer(e);
    dx_stream_destroy(e->wire);
    dx_tls_server_free(e->srv);
    dx_tls_ctx_unref(e->ctx);
    fz_buf_free(&e->out);
    fz_buf_free(&e->clear);
    memset(&store, 0, sizeof(store));
}

void fz_run_endpoint(dx_tls_role role, const uint8_t *data, size_t size)
{
    if (size < FZ_HEADER)
        return;
    unsigned opts = data[0], acts = data[1];
    size_t chunk = data[2];
    data += FZ_HEADER;
    size -= FZ_HEADER;
    fz_now_ms = 1000;
    fz_ep e;
    memset(&e, 0, sizeof(e));
    if (role == DX_TLS_SERVER) {
        fz_rand_state = FZ_SEED_SERVER;
        fz_server_open(&e, opts, acts);
    } else {
        fz_rand_state = FZ_SEED_CLIENT;
        fz_client_open(&e, opts, acts, NULL, 0);
    }
    if (chunk == 0)
        chunk = size;
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        fz_ep_feed(&e, data + off, n);
    }
    fz_ep_finish(&e);
    /* FZ_VERBOSE=1: how far each input went (to check recorded inputs) */
    const char *v = getenv("FZ_VERBOSE");
    if (v && *v == '1')
        fprintf(stderr, "secure %d, cleartext %zu bytes\n", e.secure, e.clear.len);
    fz_ep_close(&e);
}
