/*
 * OCSP stapling: the server's request for a response to staple, answered
 * now, later, with nothing, with an error or after the connection went;
 * the client's request, the response it receives before secure, its
 * verification against the verified chain, must-staple, and
 * reject_unauthorized. IDs cite the checklist (SV-04, T-10, E-02, 3.12,
 * section 4 item 9). Every behaviour runs in TLS 1.2 and TLS 1.3.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ocsp.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>

#include "harness.h"
#include "peer.h"

static const char *const versions[] = {"TLSv1.2", "TLSv1.3"};

/* ---- the test PKI, made per test case (unchecked fixture) ---------------- */

enum { K_LEAF, K_OTHER, K_STAPLE, K_A, K_RSA, K_SELF, K_ORPHAN, K_COUNT };
static dx_pki_cert *ca, *rogue, *certs[K_COUNT];

static void make_pki(void)
{
    dx_pki_opts o = {.common_name = "OCSP Test CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &o, &ca, NULL));
    dx_pki_opts r = {.common_name = "Rogue CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &r, &rogue, NULL));
    static const char *const name[] = {"ocsp.test", NULL};
    static const char *const a[] = {"a.example.com", NULL};
    struct {
        const char *cn;
        const char *const *dns;
        dx_pki_key_type type;
        bool must_staple;
        int issuer; /* 0 ca, 1 none, 2 rogue */
    } spec[K_COUNT] = {
        [K_LEAF] = {"leaf", name, DX_PKI_EC_P256, false, 0},
        [K_OTHER] = {"other", name, DX_PKI_EC_P256, false, 0},
        [K_STAPLE] = {"staple", name, DX_PKI_EC_P256, true, 0},
        [K_A] = {"a", a, DX_PKI_EC_P256, false, 0},
        [K_RSA] = {"rsa", name, DX_PKI_RSA_2048, false, 0},
        [K_SELF] = {"self", name, DX_PKI_EC_P256, false, 1},
        [K_ORPHAN] = {"orphan", name, DX_PKI_EC_P256, false, 2},
    };
    for (int i = 0; i < K_COUNT; i++) {
        dx_pki_opts l = {.common_name = spec[i].cn, .dns_names = spec[i].dns,
                         .key_type = spec[i].type, .must_staple = spec[i].must_staple,
                         .ext_key_usage = DX_PKI_EKU_SERVER};
        const dx_pki_cert *issuer = spec[i].issuer == 0 ? ca : spec[i].issuer == 2 ? rogue : NULL;
        H_MUST(dx_pki_issue(issuer, &l, &certs[i], NULL));
    }
}

static void free_pki(void)
{
    for (int i = 0; i < K_COUNT; i++)
        dx_pki_cert_free(certs[i]);
    dx_pki_cert_free(ca);
    dx_pki_cert_free(rogue);
    memset(certs, 0, sizeof(certs));
    ca = rogue = NULL;
}

/* A server context with the listed certificates (-1 ends the list),
 * trusting the test CA; version NULL for both. */
static dx_tls_ctx *server_ctx2(int c1, int c2, const char *version)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *capem = dx_pki_cert_pem(ca);
    ck_assert_int_eq(dx_tls_config_add_ca(cfg, capem, strlen(capem)), 0);
    int list[] = {c1, c2};
    for (int i = 0; i < 2; i++) {
        if (list[i] < 0)
            continue;
        const char *c = dx_pki_cert_pem(certs[list[i]]), *k = dx_pki_key_pem(certs[list[i]]);
        ck_assert_int_eq(dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL), 0);
    }
    if (version) {
        ck_assert_int_eq(dx_tls_config_set_min_version(cfg, version), 0);
        ck_assert_int_eq(dx_tls_config_set_max_version(cfg, version), 0);
    }
    dx_tls_ctx *ctx;
    ck_assert_int_eq(dx_tls_ctx_new(cfg, &ctx, NULL), 0);
    dx_tls_config_free(cfg);
    return ctx;
}

static dx_tls_ctx *server_ctx(int cert, const char *version)
{
    return server_ctx2(cert, -1, version);
}

/* A client context trusting the test CA (and extra, if not NULL), with
 * the given signature algorithms (NULL: the defaults). */
static dx_tls_ctx *client_ctx_ex(const char *version, const char *sigalgs,
                                 const dx_pki_cert *extra)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *capem = dx_pki_cert_pem(ca);
    ck_assert_int_eq(dx_tls_config_add_ca(cfg, capem, strlen(capem)), 0);
    if (extra) {
        const char *pem = dx_pki_cert_pem(extra);
        ck_assert_int_eq(dx_tls_config_add_ca(cfg, pem, strlen(pem)), 0);
    }
    if (version) {
        ck_assert_int_eq(dx_tls_config_set_min_version(cfg, version), 0);
        ck_assert_int_eq(dx_tls_config_set_max_version(cfg, version), 0);
    }
    if (sigalgs)
        ck_assert_int_eq(dx_tls_config_set_sigalgs(cfg, sigalgs), 0);
    dx_tls_ctx *ctx;
    ck_assert_int_eq(dx_tls_ctx_new(cfg, &ctx, NULL), 0);
    dx_tls_config_free(cfg);
    return ctx;
}

static dx_tls_ctx *client_ctx(const char *version)
{
    return client_ctx_ex(version, NULL, NULL);
}

/* ---- OCSP responses ------------------------------------------------------- */

typedef struct blob {
    uint8_t *der;
    size_t len;
    bool own; /* made by dx_pki_ocsp_response (else malloc) */
} blob;

static void blob_free(blob *b)
{
    if (b->own)
        dx_pki_ocsp_free(b->der);
    else
        free(b->der);
    memset(b, 0, sizeof(*b));
}

/* A response from the test CA about certs[cert]. */
static blob response(int cert, dx_pki_ocsp_status st, int64_t this_update, int64_t next_update)
{
    blob b = {.own = true};
    ck_assert_int_eq(dx_pki_ocsp_response(ca, certs[cert], st, this_update, next_update,
                                          &b.der, &b.len),
                     0);
    return b;
}

static blob good(int cert) { return response(cert, DX_PKI_OCSP_GOOD, -60, 3600); }

static blob copy_of(const void *data, size_t len)
{
    blob b = {.der = malloc(len), .len = len};
    ck_assert_ptr_nonnull(b.der);
    memcpy(b.der, data, len);
    return b;
}

/* A response about certs[cert] (CertID under the test CA) signed by
 * rogue, which is included in the response or not. */
static blob signed_by_rogue(int cert, bool include)
{
    X509 *leaf = h_pki_x509(certs[cert]), *issuer = h_pki_x509(ca);
    X509 *signer = h_pki_x509(rogue);
    EVP_PKEY *key = h_pki_key(rogue);
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, leaf, issuer);
    ASN1_TIME *thisupd = X509_gmtime_adj(NULL, -60), *nextupd = X509_gmtime_adj(NULL, 3600);
    ck_assert_ptr_nonnull(OCSP_basic_add1_status(bs, id, V_OCSP_CERTSTATUS_GOOD, -1, NULL,
                                                 thisupd, nextupd));
    ck_assert_int_eq(OCSP_basic_sign(bs, signer, key, EVP_sha256(), NULL,
                                     include ? 0 : OCSP_NOCERTS),
                     1);
    OCSP_RESPONSE *r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
    unsigned char *der = NULL;
    int n = i2d_OCSP_RESPONSE(r, &der);
    ck_assert_int_gt(n, 0);
    blob b = copy_of(der, (size_t)n);
    OPENSSL_free(der);
    OCSP_RESPONSE_free(r);
    OCSP_BASICRESP_free(bs);
    OCSP_CERTID_free(id);
    ASN1_TIME_free(thisupd);
    ASN1_TIME_free(nextupd);
    EVP_PKEY_free(key);
    X509_free(leaf);
    X509_free(issuer);
    X509_free(signer);
    return b;
}

/* A responder's refusal (tryLater): no basic response at all. */
static blob try_later(void)
{
    OCSP_RESPONSE *r = OCSP_response_create(OCSP_RESPONSE_STATUS_TRYLATER, NULL);
    unsigned char *der = NULL;
    int n = i2d_OCSP_RESPONSE(r, &der);
    ck_assert_int_gt(n, 0);
    blob b = copy_of(der, (size_t)n);
    OPENSSL_free(der);
    OCSP_RESPONSE_free(r);
    return b;
}

/* Which test certificate c is (by DER), or -1. */
static int cert_index(const dx_tls_cert *c)
{
    const uint8_t *der, *mine;
    size_t len, mlen;
    ck_assert_int_eq(dx_tls_cert_der(c, &der, &len), 0);
    for (int i = 0; i < K_COUNT; i++) {
        ck_assert_int_eq(dx_pki_cert_der(certs[i], &mine, &mlen), 0);
        if (len == mlen && memcmp(der, mine, len) == 0)
            return i;
    }
    return -1;
}

static const char *cn_of(const dx_tls_cert *c)
{
    const char *cn = c ? dx_tls_name_get(dx_tls_cert_subject(c), "CN", 0) : NULL;
    return cn ? cn : "(none)";
}

/* ---- a server that staples ------------------------------------------------ */

enum { ANSWER_NOW, NONE_NOW, LATER, FAIL_NOW, BY_CERT };

typedef struct srv_log {
    int mode;
    blob answer;             /* what ANSWER_NOW staples */
    bool oom_allowed;        /* allocations fail on purpose */
    unsigned asks, secure, client_errors, snis;
    char cert_cn[4][64], issuer_cn[4][64];
    int cert_idx[4];
    dx_tls_pending *pending[4]; /* kept by LATER */
    size_t npending;
    char error_name[96];
    int sni_mode;            /* 0 none (contexts decide), 1 keep for later */
    dx_tls_pending *sni_pending;
} srv_log;

static void ev_ocsp(dx_tls_server *srv, dx_tls *t, const dx_tls_cert *cert,
                    const dx_tls_cert *issuer, dx_tls_pending *p, void *u)
{
    (void)srv;
    srv_log *l = u;
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(cert);
    unsigned k = l->asks++ % 4;
    snprintf(l->cert_cn[k], sizeof(l->cert_cn[k]), "%s", cn_of(cert));
    snprintf(l->issuer_cn[k], sizeof(l->issuer_cn[k]), "%s", cn_of(issuer));
    l->cert_idx[k] = cert_index(cert);
    switch (l->mode) {
    case ANSWER_NOW: {
        int rc = dx_tls_ocsp_done(p, l->answer.der, l->answer.len, NULL);
        ck_assert(rc == 0 || (rc == DX_ENOMEM && l->oom_allowed));
        break;
    }
    case NONE_NOW:
        ck_assert_int_eq(dx_tls_ocsp_done(p, NULL, 0, NULL), 0);
        break;
    case FAIL_NOW:
        ck_assert_int_eq(dx_tls_ocsp_done(p, NULL, 0,
                                          dx_error_new(DX_EIO, "OCSP_FETCH_FAILED", NULL,
                                                       "the responder is down")),
                         0);
        break;
    case BY_CERT: {
        ck_assert_int_ge(l->cert_idx[k], 0);
        blob b = good(l->cert_idx[k]);
        ck_assert_int_eq(dx_tls_ocsp_done(p, b.der, b.len, NULL), 0);
        blob_free(&b);
        break;
    }
    default:
        ck_assert_uint_lt(l->npending, 4);
        l->pending[l->npending++] = p;
        break;
    }
}

static void ev_secure(dx_tls_server *srv, dx_tls *t, void *u)
{
    (void)srv, (void)t;
    ((srv_log *)u)->secure++;
}

static void ev_client_error(dx_tls_server *srv, dx_tls *t, const dx_error *err, void *u)
{
    (void)srv, (void)t;
    srv_log *l = u;
    l->client_errors++;
    snprintf(l->error_name, sizeof(l->error_name), "%s", dx_error_name(err));
}

static void ev_sni(dx_tls_server *srv, dx_tls *t, const char *name, dx_tls_pending *p, void *u)
{
    (void)srv, (void)t, (void)name;
    srv_log *l = u;
    l->snis++;
    l->sni_pending = p;
}

static const dx_tls_server_events srv_events = {
    .on_secure_connection = ev_secure,
    .on_client_error = ev_client_error,
    .on_ocsp_request = ev_ocsp,
};

static dx_tls_server *make_server(dx_tls_ctx *ctx, srv_log *l)
{
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(ctx, &srv), 0);
    dx_tls_server_events ev = srv_events;
    if (l->sni_mode)
        ev.on_sni = ev_sni;
    ck_assert_int_eq(dx_tls_server_set_events(srv, &ev, l), 0);
    return srv;
}

/* ---- a client ------------------------------------------------------------- */

typedef struct conn {
    dx_tls *c, *s;
    h_rec rc, rs;
    char order[16];  /* 'O' the OCSP response, 'S' secure */
    unsigned secure, responses, sessions;
    uint8_t resp[8192];
    size_t resp_len;
    bool resp_null;
    char error_name[96];
    uint8_t session[8192];
    size_t session_len;
} conn;

static void order_add(conn *k, char c)
{
    size_t n = strlen(k->order);
    ck_assert_uint_lt(n + 1, sizeof(k->order));
    k->order[n] = c;
}

static void c_secure(dx_tls *t, void *u)
{
    (void)t;
    conn *k = u;
    k->secure++;
    order_add(k, 'S');
}

static void c_ocsp(dx_tls *t, const uint8_t *resp, size_t len, void *u)
{
    conn *k = u;
    k->responses++;
    order_add(k, 'O');
    ck_assert(!dx_tls_is_secure(t) || k->secure == 0);
    k->resp_null = resp == NULL;
    ck_assert_uint_le(len, sizeof(k->resp));
    ck_assert(resp || len == 0);
    if (resp)
        memcpy(k->resp, resp, len);
    k->resp_len = len;
}

static void c_session(dx_tls *t, const uint8_t *sess, size_t len, void *u)
{
    (void)t;
    conn *k = u;
    k->sessions++;
    ck_assert_uint_le(len, sizeof(k->session));
    memcpy(k->session, sess, len);
    k->session_len = len;
}

static void c_error(dx_tls *t, const dx_error *err, void *u)
{
    (void)t;
    conn *k = u;
    snprintf(k->error_name, sizeof(k->error_name), "%s", dx_error_name(err));
}

static const dx_tls_events client_events = {
    .on_secure = c_secure,
    .on_session = c_session,
    .on_handshake_error = c_error,
    .on_ocsp_response = c_ocsp,
};

typedef struct opts {
    unsigned flags;
    bool allow_unauthorized;
    const char *servername;
    const uint8_t *session;
    size_t session_len;
} opts;

/* A client with o connected to srv through a memory pair (started). */
static void connect_to(conn *k, dx_tls_server *srv, dx_tls_ctx *cctx, const opts *o)
{
    memset(k, 0, sizeof(*k));
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &k->c), 0);
    ck_assert_int_eq(dx_tls_set_events(k->c, &client_events, k), 0);
    ck_assert_int_eq(dx_tls_set_servername(k->c, o->servername ? o->servername : "ocsp.test"),
                     0);
    if (o->flags)
        ck_assert_int_eq(dx_tls_set_ocsp(k->c, o->flags), 0);
    if (o->allow_unauthorized)
        ck_assert_int_eq(dx_tls_set_reject_unauthorized(k->c, false), 0);
    if (o->session)
        ck_assert_int_eq(dx_tls_set_session(k->c, o->session, o->session_len), 0);
    h_rec_attach(&k->rc, dx_tls_upper(k->c));
    ck_assert_int_eq(dx_tls_attach(k->c, a), 0);
    ck_assert_int_eq(dx_tls_server_accept(srv, b, &k->s), 0);
    h_rec_attach(&k->rs, dx_tls_upper(k->s));
    ck_assert_int_eq(dx_tls_start(k->c), 0);
}

static void conn_close(conn *k)
{
    dx_tls_destroy(k->c);
    dx_tls_destroy(k->s);
    h_rec_assert_clean(&k->rc);
    h_rec_assert_clean(&k->rs);
    h_rec_free(&k->rc);
    h_rec_free(&k->rs);
}

/* The client received exactly b before secure. */
static void assert_stapled(const conn *k, const blob *b)
{
    ck_assert_uint_eq(k->responses, 1);
    ck_assert(!k->resp_null);
    ck_assert_uint_eq(k->resp_len, b->len);
    ck_assert_mem_eq(k->resp, b->der, b->len);
    ck_assert_str_eq(k->order, "OS");
    const uint8_t *der;
    size_t len;
    ck_assert_int_eq(dx_tls_get_ocsp_response(k->c, &der, &len), 0);
    ck_assert_uint_eq(len, b->len);
    ck_assert_mem_eq(der, b->der, len);
}

static void assert_no_staple(const conn *k)
{
    ck_assert_uint_eq(k->responses, 1);
    ck_assert(k->resp_null);
    ck_assert_uint_eq(k->resp_len, 0);
    ck_assert_str_eq(k->order, "OS");
    const uint8_t *der = (const uint8_t *)"x";
    size_t len = 1;
    ck_assert_int_eq(dx_tls_get_ocsp_response(k->c, &der, &len), 0);
    ck_assert_ptr_null(der);
    ck_assert_uint_eq(len, 0);
}

/* ---- the staple reaches the client ---------------------------------------- */

/* SV-04, T-10, E-02, 3.12: the server is asked about the certificate it
 * presents (with its issuer), answers at once or later, and the client
 * gets the bytes before secure. */
START_TEST(staple_reaches_client_before_secure)
{
    const char *v = versions[_i / 2];
    bool later = _i % 2;
    size_t live0 = h_alloc_live();
    dx_tls_ctx *sctx = server_ctx(K_LEAF, v), *cctx = client_ctx(v);
    srv_log l = {.mode = later ? LATER : ANSWER_NOW, .answer = good(K_LEAF)};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_REQUEST});
    ck_assert_uint_eq(l.asks, 1);
    ck_assert_str_eq(l.cert_cn[0], "leaf");
    ck_assert_int_eq(l.cert_idx[0], K_LEAF);
    ck_assert_str_eq(l.issuer_cn[0], "OCSP Test CA");
    if (later) {
        ck_assert_uint_eq(k.secure, 0); /* the handshake waits */
        ck_assert_uint_eq(k.responses, 0);
        ck_assert_uint_eq(l.secure, 0);
        ck_assert_uint_eq(l.npending, 1);
        ck_assert_int_eq(dx_tls_ocsp_done(l.pending[0], l.answer.der, l.answer.len, NULL), 0);
    }
    ck_assert_uint_eq(k.secure, 1);
    ck_assert_uint_eq(l.secure, 1);
    assert_stapled(&k, &l.answer);
    ck_assert(dx_tls_authorized(k.c));
    ck_assert_int_eq(dx_tls_get_ocsp_result(k.c), DX_TLS_OCSP_UNCHECKED); /* no VERIFY */
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.c), "ping", 4), 0);
    ck_assert_uint_eq(k.rs.received, 4);
    conn_close(&k);
    dx_tls_server_free(srv);
    blob_free(&l.answer);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* 3.12: without requestOCSP the server is never asked and the client
 * hears nothing; a server without the event staples nothing, and the
 * client that asked gets NULL. */
START_TEST(no_request_no_question)
{
    const char *v = versions[_i];
    dx_tls_ctx *sctx = server_ctx(K_LEAF, v), *cctx = client_ctx(v);
    srv_log l = {.mode = ANSWER_NOW, .answer = good(K_LEAF)};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    connect_to(&k, srv, cctx, &(opts){0});
    ck_assert_uint_eq(k.secure, 1);
    ck_assert_uint_eq(l.asks, 0);
    ck_assert_uint_eq(k.responses, 0);
    ck_assert_str_eq(k.order, "S");
    conn_close(&k);
    /* the server has no on_ocsp_request */
    dx_tls_server_events ev = srv_events;
    ev.on_ocsp_request = NULL;
    ck_assert_int_eq(dx_tls_server_set_events(srv, &ev, &l), 0);
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_REQUEST});
    ck_assert_uint_eq(k.secure, 1);
    assert_no_staple(&k);
    conn_close(&k);
    dx_tls_server_free(srv);
    blob_free(&l.answer);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* 3.12: callback(null, null): the answer "none", now or later, reaches
 * the client as NULL. */
START_TEST(answer_none_gives_client_null)
{
    const char *v = versions[_i / 2];
    bool later = _i % 2;
    dx_tls_ctx *sctx = server_ctx(K_LEAF, v), *cctx = client_ctx(v);
    srv_log l = {.mode = later ? LATER : NONE_NOW};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_REQUEST});
    ck_assert_uint_eq(l.asks, 1);
    if (later) {
        ck_assert_uint_eq(k.secure, 0);
        ck_assert_int_eq(dx_tls_ocsp_done(l.pending[0], NULL, 0, NULL), 0);
    }
    ck_assert_uint_eq(k.secure, 1);
    assert_no_staple(&k);
    conn_close(&k);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* An answer that comes late: the client's early writes wait, time passes
 * (under the handshake timeout), other calls run the engine; then the
 * handshake completes and the early data arrives. Past the timeout the
 * handshake fails and a later answer is only freed. */
START_TEST(late_answer_after_traffic_and_time)
{
    const char *v = versions[_i];
    dx_tls_ctx *sctx = server_ctx(K_LEAF, v), *cctx = client_ctx(v);
    srv_log l = {.mode = LATER, .answer = good(K_LEAF)};
    dx_tls_server *srv = make_server(sctx, &l);
    h_fake_now = 10000;
    ck_assert_int_eq(dx_tls_server_set_clock(srv, h_fake_clock, NULL), 0);
    ck_assert_int_eq(dx_tls_server_set_handshake_timeout(srv, 5000), 0);
    conn k;
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_VERIFY});
    ck_assert_uint_eq(l.npending, 1);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.c), "early", 5), 0);
    h_fake_now += 4000;
    dx_tls_check_timeouts(k.s);
    ck_assert_uint_eq(dx_tls_deadline(k.s), 15000);
    ck_assert_uint_eq(k.secure, 0);
    ck_assert_uint_eq(k.rs.received, 0);
    ck_assert_uint_eq(l.client_errors, 0);
    ck_assert_int_eq(dx_tls_ocsp_done(l.pending[0], l.answer.der, l.answer.len, NULL), 0);
    ck_assert_uint_eq(k.secure, 1);
    assert_stapled(&k, &l.answer);
    ck_assert_int_eq(dx_tls_get_ocsp_result(k.c), DX_TLS_OCSP_GOOD);
    ck_assert_uint_eq(k.rs.received, 5);
    conn_close(&k);
    /* too late: the handshake timed out first */
    l.npending = 0;
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_REQUEST});
    ck_assert_uint_eq(l.npending, 1);
    h_fake_now += 5000;
    dx_tls_check_timeouts(k.s);
    ck_assert_str_eq(l.error_name, "ERR_TLS_HANDSHAKE_TIMEOUT");
    ck_assert_int_eq(dx_tls_ocsp_done(l.pending[0], l.answer.der, l.answer.len, NULL), 0);
    ck_assert_uint_eq(k.secure, 0);
    conn_close(&k);
    dx_tls_server_free(srv);
    blob_free(&l.answer);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* SV-04: callback(err) fails the handshake on both sides, the server
 * reporting err (Node destroys the socket with it). */
START_TEST(failed_answer_fails_both_sides)
{
    const char *v = versions[_i / 2];
    bool later = _i % 2;
    dx_tls_ctx *sctx = server_ctx(K_LEAF, v), *cctx = client_ctx(v);
    srv_log l = {.mode = later ? LATER : FAIL_NOW};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_REQUEST});
    if (later) {
        ck_assert_uint_eq(l.client_errors, 0);
        ck_assert_int_eq(dx_tls_ocsp_done(l.pending[0], NULL, 0,
                                          dx_error_new(DX_EIO, "OCSP_FETCH_FAILED", NULL,
                                                       "the responder is down")),
                         0);
    }
    ck_assert_uint_eq(l.client_errors, 1);
    ck_assert_str_eq(l.error_name, "OCSP_FETCH_FAILED");
    ck_assert_str_eq(k.rs.error_name, "OCSP_FETCH_FAILED");
    ck_assert_str_eq(k.error_name, "ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR");
    ck_assert_str_eq(k.rc.error_name, "ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR");
    ck_assert_uint_eq(k.secure, 0);
    ck_assert_uint_eq(k.responses, 0);
    const dx_error *e = dx_stream_error(dx_tls_upper(k.s));
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(dx_error_layer(e), "tls");
    ck_assert_str_eq(dx_error_message(e), "the responder is down");
    conn_close(&k);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* An answer after the connection was destroyed only frees it; answers of
 * the wrong kind or shape are refused and leave p pending. */
START_TEST(answer_after_destroy_and_bad_answers)
{
    const char *v = versions[_i];
    dx_tls_ctx *sctx = server_ctx(K_LEAF, v), *cctx = client_ctx(v);
    size_t live0 = h_alloc_live();
    srv_log l = {.mode = LATER, .answer = good(K_LEAF), .sni_mode = 1};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_REQUEST});
    /* the SNI question first; an OCSP answer does not answer it */
    ck_assert_ptr_nonnull(l.sni_pending);
    ck_assert_int_eq(dx_tls_ocsp_done(l.sni_pending, NULL, 0, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_sni_done(l.sni_pending, NULL), 0);
    ck_assert_uint_eq(l.npending, 1);
    dx_tls_pending *p = l.pending[0];
    ck_assert_int_eq(dx_tls_sni_done(p, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_sni_refuse(p, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_session_found(p, NULL, 0), DX_EINVAL);
    ck_assert_int_eq(dx_tls_ocsp_done(p, l.answer.der, 0, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_ocsp_done(p, l.answer.der, DX_TLS_OCSP_MAX_RESPONSE + 1,
                                      dx_error_new(DX_EIO, "X", NULL, "freed")),
                     DX_EINVAL);
    ck_assert_int_eq(dx_tls_ocsp_done(NULL, NULL, 0, NULL), DX_EINVAL);
    ck_assert_uint_eq(k.secure, 0);
    conn_close(&k);
    ck_assert_uint_eq(dx_tls_server_connections(srv), 0);
    ck_assert_int_eq(dx_tls_ocsp_done(p, l.answer.der, l.answer.len, NULL), 0);
    /* the same with a failure as the late answer */
    l.npending = 0;
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_REQUEST});
    ck_assert_int_eq(dx_tls_sni_done(l.sni_pending, NULL), 0);
    ck_assert_uint_eq(l.npending, 1);
    conn_close(&k);
    ck_assert_int_eq(dx_tls_ocsp_done(l.pending[0], NULL, 0,
                                      dx_error_new(DX_EIO, "LATE", NULL, "freed")),
                     0);
    dx_tls_server_free(srv);
    blob_free(&l.answer);
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* The server's OCSP event goes away while an answer is awaited: the
 * answer still completes the handshake; a server freed meanwhile too. */
START_TEST(answer_outlives_the_server)
{
    const char *v = versions[_i];
    dx_tls_ctx *sctx = server_ctx(K_LEAF, v), *cctx = client_ctx(v);
    srv_log l = {.mode = LATER, .answer = good(K_LEAF)};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_VERIFY});
    ck_assert_uint_eq(l.npending, 1);
    dx_tls_server_free(srv);
    ck_assert_int_eq(dx_tls_ocsp_done(l.pending[0], l.answer.der, l.answer.len, NULL), 0);
    ck_assert_uint_eq(k.secure, 1);
    ck_assert_int_eq(dx_tls_get_ocsp_result(k.c), DX_TLS_OCSP_GOOD);
    conn_close(&k);
    blob_free(&l.answer);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* ---- SNI and the certificates asked about -------------------------------- */

/* SV-04 with SV-08: the certificate asked about is the one of the context
 * SNI chose (by name, or by an asynchronous choice), and the staple the
 * client verifies is for it. */
START_TEST(sni_context_certificate_is_asked_about)
{
    const char *v = versions[_i / 2];
    bool async_sni = _i % 2;
    dx_tls_ctx *dflt = server_ctx(K_LEAF, v), *a = server_ctx(K_A, v), *cctx = client_ctx(v);
    srv_log l = {.mode = LATER, .sni_mode = async_sni};
    dx_tls_server *srv = make_server(dflt, &l);
    ck_assert_int_eq(dx_tls_server_add_context(srv, "a.example.com", a), 0);
    conn k;
    connect_to(&k, srv, cctx,
               &(opts){.flags = DX_TLS_OCSP_VERIFY, .servername = "a.example.com"});
    if (async_sni) {
        ck_assert_uint_eq(l.snis, 1);
        ck_assert_uint_eq(l.asks, 0); /* SNI first */
        ck_assert_int_eq(dx_tls_sni_done(l.sni_pending, a), 0);
    }
    ck_assert_uint_eq(l.asks, 1);
    ck_assert_str_eq(l.cert_cn[0], "a");
    ck_assert_int_eq(l.cert_idx[0], K_A);
    blob b = good(K_A);
    ck_assert_int_eq(dx_tls_ocsp_done(l.pending[0], b.der, b.len, NULL), 0);
    ck_assert_uint_eq(k.secure, 1);
    assert_stapled(&k, &b);
    ck_assert_int_eq(dx_tls_get_ocsp_result(k.c), DX_TLS_OCSP_GOOD);
    ck_assert(dx_tls_authorized(k.c));
    ck_assert_str_eq(cn_of(dx_tls_peer_cert(k.c)), "a");
    conn_close(&k);
    blob_free(&b);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(a);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* A context with an ECDSA and an RSA certificate: the handshake chooses
 * between them after the question, so both are asked about, and the
 * staple sent is the one for the certificate presented. */
START_TEST(every_certificate_of_the_context_is_asked_about)
{
    const char *v = versions[_i / 2];
    bool want_rsa = _i % 2;
    dx_tls_ctx *sctx = server_ctx2(K_LEAF, K_RSA, v);
    dx_tls_ctx *cctx = client_ctx_ex(v, want_rsa ? "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"
                                                 : "ecdsa_secp256r1_sha256",
                                     NULL);
    srv_log l = {.mode = BY_CERT};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_VERIFY});
    ck_assert_uint_eq(l.asks, 2);
    ck_assert_int_ne(l.cert_idx[0], l.cert_idx[1]);
    ck_assert(l.cert_idx[0] == K_LEAF || l.cert_idx[0] == K_RSA);
    ck_assert(l.cert_idx[1] == K_LEAF || l.cert_idx[1] == K_RSA);
    ck_assert_uint_eq(k.secure, 1);
    ck_assert_str_eq(cn_of(dx_tls_peer_cert(k.c)), want_rsa ? "rsa" : "leaf");
    /* the staple holds for the certificate presented: it is that one's */
    ck_assert_int_eq(dx_tls_get_ocsp_result(k.c), DX_TLS_OCSP_GOOD);
    ck_assert(dx_tls_authorized(k.c));
    conn_close(&k);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* TLS 1.3 HelloRetryRequest: the server wants another key share, the
 * client sends a second ClientHello; the question is asked once and the
 * answer, given later, is stapled in the handshake that completes. */
START_TEST(hello_retry_keeps_the_answer)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *c = dx_pki_cert_pem(certs[K_LEAF]), *k = dx_pki_key_pem(certs[K_LEAF]);
    ck_assert_int_eq(dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL), 0);
    ck_assert_int_eq(dx_tls_config_set_min_version(cfg, "TLSv1.3"), 0);
    ck_assert_int_eq(dx_tls_config_set_groups(cfg, "P-256"), 0);
    dx_tls_ctx *sctx;
    ck_assert_int_eq(dx_tls_ctx_new(cfg, &sctx, NULL), 0);
    dx_tls_config_free(cfg);
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *capem = dx_pki_cert_pem(ca);
    ck_assert_int_eq(dx_tls_config_add_ca(cfg, capem, strlen(capem)), 0);
    ck_assert_int_eq(dx_tls_config_set_groups(cfg, "X25519:P-256"), 0); /* a share for X25519 */
    dx_tls_ctx *cctx;
    ck_assert_int_eq(dx_tls_ctx_new(cfg, &cctx, NULL), 0);
    dx_tls_config_free(cfg);
    srv_log l = {.mode = LATER, .answer = good(K_LEAF)};
    dx_tls_server *srv = make_server(sctx, &l);
    conn kc;
    connect_to(&kc, srv, cctx, &(opts){.flags = DX_TLS_OCSP_VERIFY});
    ck_assert_uint_eq(l.asks, 1);
    ck_assert_int_eq(dx_tls_ocsp_done(l.pending[0], l.answer.der, l.answer.len, NULL), 0);
    ck_assert_uint_eq(l.asks, 1);
    ck_assert_msg(kc.secure == 1, "%s", kc.rc.error_name);
    dx_tls_kex_info kex;
    ck_assert_int_eq(dx_tls_ephemeral_key(kc.c, &kex), 0);
    ck_assert_str_eq(kex.name, "prime256v1"); /* the retried share */
    assert_stapled(&kc, &l.answer);
    ck_assert_int_eq(dx_tls_get_ocsp_result(kc.c), DX_TLS_OCSP_GOOD);
    conn_close(&kc);
    dx_tls_server_free(srv);
    blob_free(&l.answer);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* A PKCS#12 archive of certs[cert] with the CA in its chain. */
static void make_pfx(int cert, uint8_t **out, size_t *len)
{
    X509 *leaf = h_pki_x509(certs[cert]), *cax = h_pki_x509(ca);
    EVP_PKEY *key = h_pki_key(certs[cert]);
    STACK_OF(X509) *chain = sk_X509_new_null();
    ck_assert_int_gt(sk_X509_push(chain, cax), 0);
    PKCS12 *p12 = PKCS12_create("secret", "leaf", key, leaf, chain, 0, 0, 0, 0, 0);
    ck_assert_ptr_nonnull(p12);
    unsigned char *der = NULL;
    int n = i2d_PKCS12(p12, &der);
    ck_assert_int_gt(n, 0);
    *out = malloc((size_t)n);
    ck_assert_ptr_nonnull(*out);
    memcpy(*out, der, (size_t)n);
    *len = (size_t)n;
    OPENSSL_free(der);
    PKCS12_free(p12);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    X509_free(leaf);
}

/* SV-04, 3.12: the issuer comes from the certificate's chain (PEM chain,
 * PKCS#12 archive), else from the context's trust store; it is NULL for
 * a self-signed certificate and for one whose issuer is in neither. */
START_TEST(issuer_from_chain_store_or_none)
{
    const char *v = versions[_i / 5];
    int shape = _i % 5;
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_set_min_version(cfg, v), 0);
    ck_assert_int_eq(dx_tls_config_set_max_version(cfg, v), 0);
    const char *expect = "OCSP Test CA";
    int cert = K_LEAF;
    uint8_t *pfx = NULL;
    size_t pfx_len = 0;
    char chain[8192];
    const char *key = dx_pki_key_pem(certs[K_LEAF]), *capem = dx_pki_cert_pem(ca);
    switch (shape) {
    case 0: /* the CA in the trust store, the leaf alone */
        ck_assert_int_eq(dx_tls_config_add_ca(cfg, capem, strlen(capem)), 0);
        ck_assert_int_eq(dx_tls_config_add_cert(cfg, dx_pki_cert_pem(certs[K_LEAF]),
                                                strlen(dx_pki_cert_pem(certs[K_LEAF])), key,
                                                strlen(key), NULL),
                         0);
        break;
    case 1: /* the CA in the chain, nothing trusted */
        snprintf(chain, sizeof(chain), "%s%s", dx_pki_cert_pem(certs[K_LEAF]), dx_pki_cert_pem(ca));
        ck_assert_int_eq(
            dx_tls_config_add_cert(cfg, chain, strlen(chain), key, strlen(key), NULL), 0);
        break;
    case 2: /* a PKCS#12 archive with the CA */
        make_pfx(K_LEAF, &pfx, &pfx_len);
        ck_assert_int_eq(dx_tls_config_add_pfx(cfg, pfx, pfx_len, "secret"), 0);
        break;
    case 3: /* self-signed */
        cert = K_SELF;
        expect = "(none)";
        break;
    default: /* issued by a CA the server does not know */
        cert = K_ORPHAN;
        expect = "(none)";
        ck_assert_int_eq(dx_tls_config_add_ca(cfg, capem, strlen(capem)), 0);
        break;
    }
    if (shape >= 3) {
        const char *c = dx_pki_cert_pem(certs[cert]), *k = dx_pki_key_pem(certs[cert]);
        ck_assert_int_eq(dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL), 0);
    }
    dx_tls_ctx *sctx;
    ck_assert_int_eq(dx_tls_ctx_new(cfg, &sctx, NULL), 0);
    dx_tls_config_free(cfg);
    free(pfx);
    dx_tls_ctx *cctx = client_ctx(v);
    srv_log l = {.mode = NONE_NOW};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    connect_to(&k, srv, cctx,
               &(opts){.flags = DX_TLS_OCSP_REQUEST, .allow_unauthorized = shape >= 3});
    ck_assert_uint_eq(k.secure, 1);
    ck_assert_uint_eq(l.asks, 1);
    ck_assert_int_eq(l.cert_idx[0], cert);
    ck_assert_str_eq(l.issuer_cn[0], expect);
    ck_assert(dx_tls_authorized(k.c) == (shape < 3));
    conn_close(&k);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* T-08, 3.12: a standalone server connection (no dx_tls_server) staples
 * with its own callback; the calls check their role and time. */
typedef struct standalone {
    blob answer;
    dx_tls_pending *p;
    unsigned asks;
    char issuer_cn[64];
} standalone;

static void standalone_ocsp(dx_tls *t, const dx_tls_cert *cert, const dx_tls_cert *issuer,
                            dx_tls_pending *p, void *u)
{
    (void)t;
    standalone *s = u;
    s->asks++;
    ck_assert_str_eq(cn_of(cert), "leaf");
    snprintf(s->issuer_cn, sizeof(s->issuer_cn), "%s", cn_of(issuer));
    s->p = p;
}

START_TEST(standalone_connection_staples)
{
    const char *v = versions[_i];
    dx_tls_ctx *sctx = server_ctx(K_LEAF, v), *cctx = client_ctx(v);
    size_t live0 = h_alloc_live();
    standalone st = {.answer = good(K_LEAF)};
    dx_stream *x, *y;
    ck_assert_int_eq(dx_pair_new(NULL, &x, &y), 0);
    dx_tls *c, *s;
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &c), 0);
    ck_assert_int_eq(dx_tls_new(sctx, DX_TLS_SERVER, &s), 0);
    /* roles */
    ck_assert_int_eq(dx_tls_set_ocsp_callback(c, standalone_ocsp, &st), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_ocsp(s, DX_TLS_OCSP_REQUEST), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_ocsp(c, 0x8u), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_ocsp(NULL, DX_TLS_OCSP_REQUEST), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_ocsp_callback(NULL, standalone_ocsp, &st), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_ocsp_callback(s, standalone_ocsp, &st), 0);
    ck_assert_int_eq(dx_tls_set_ocsp(c, DX_TLS_OCSP_VERIFY), 0);
    ck_assert_int_eq(dx_tls_set_servername(c, "ocsp.test"), 0);
    conn k;
    memset(&k, 0, sizeof(k));
    ck_assert_int_eq(dx_tls_set_events(c, &client_events, &k), 0);
    h_rec_attach(&k.rc, dx_tls_upper(c));
    h_rec_attach(&k.rs, dx_tls_upper(s));
    ck_assert_int_eq(dx_tls_attach(c, x), 0);
    ck_assert_int_eq(dx_tls_attach(s, y), 0);
    ck_assert_int_eq(dx_tls_start(s), 0);
    ck_assert_int_eq(dx_tls_start(c), 0);
    ck_assert_int_eq(dx_tls_set_ocsp(c, 0), DX_ESTATE);
    ck_assert_int_eq(dx_tls_set_ocsp_callback(s, NULL, NULL), DX_ESTATE);
    ck_assert_uint_eq(st.asks, 1);
    ck_assert_str_eq(st.issuer_cn, "OCSP Test CA");
    ck_assert(!dx_tls_is_secure(c));
    ck_assert_int_eq(dx_tls_ocsp_done(st.p, st.answer.der, st.answer.len, NULL), 0);
    ck_assert(dx_tls_is_secure(c));
    k.c = c;
    assert_stapled(&k, &st.answer);
    ck_assert_int_eq(dx_tls_get_ocsp_result(c), DX_TLS_OCSP_GOOD);
    /* the server side has no response of its own */
    const uint8_t *der;
    size_t len;
    ck_assert_int_eq(dx_tls_get_ocsp_response(s, &der, &len), 0);
    ck_assert_ptr_null(der);
    ck_assert_int_eq(dx_tls_get_ocsp_response(NULL, &der, &len), DX_EINVAL);
    ck_assert_int_eq(dx_tls_get_ocsp_response(c, NULL, &len), DX_EINVAL);
    ck_assert_int_eq(dx_tls_get_ocsp_result(NULL), DX_TLS_OCSP_UNCHECKED);
    dx_tls_destroy(c);
    dx_tls_destroy(s);
    h_rec_free(&k.rc);
    h_rec_free(&k.rs);
    blob_free(&st.answer);
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* ---- verification --------------------------------------------------------- */

enum {
    V_GOOD, V_NO_NEXT_UPDATE, V_AHEAD, V_BEHIND, V_REVOKED, V_UNKNOWN, V_EXPIRED, V_NOT_YET,
    V_TAMPERED, V_ROGUE_NOCERT, V_ROGUE_UNTRUSTED, V_ROGUE_TRUSTED, V_OTHER_CERT,
    V_GARBAGE, V_TRY_LATER, V_COUNT
};

static const struct {
    const char *name;  /* the client's error, NULL when it holds */
    dx_tls_ocsp_result result;
} verdicts[V_COUNT] = {
    [V_GOOD] = {NULL, DX_TLS_OCSP_GOOD},
    [V_NO_NEXT_UPDATE] = {NULL, DX_TLS_OCSP_GOOD},
    [V_AHEAD] = {NULL, DX_TLS_OCSP_GOOD},
    [V_BEHIND] = {NULL, DX_TLS_OCSP_GOOD},
    [V_REVOKED] = {"CERT_REVOKED", DX_TLS_OCSP_REVOKED},
    [V_UNKNOWN] = {"ERR_TLS_OCSP_STATUS_UNKNOWN", DX_TLS_OCSP_UNKNOWN},
    [V_EXPIRED] = {"ERR_TLS_OCSP_EXPIRED", DX_TLS_OCSP_INVALID},
    [V_NOT_YET] = {"ERR_TLS_OCSP_NOT_YET_VALID", DX_TLS_OCSP_INVALID},
    [V_TAMPERED] = {"ERR_TLS_OCSP_BAD_SIGNATURE", DX_TLS_OCSP_INVALID},
    [V_ROGUE_NOCERT] = {"ERR_TLS_OCSP_BAD_SIGNATURE", DX_TLS_OCSP_INVALID},
    [V_ROGUE_UNTRUSTED] = {"ERR_TLS_OCSP_BAD_SIGNATURE", DX_TLS_OCSP_INVALID},
    [V_ROGUE_TRUSTED] = {"ERR_TLS_OCSP_BAD_SIGNATURE", DX_TLS_OCSP_INVALID},
    [V_OTHER_CERT] = {"ERR_TLS_OCSP_WRONG_CERTIFICATE", DX_TLS_OCSP_INVALID},
    [V_GARBAGE] = {"ERR_TLS_OCSP_INVALID_RESPONSE", DX_TLS_OCSP_INVALID},
    [V_TRY_LATER] = {"ERR_TLS_OCSP_INVALID_RESPONSE", DX_TLS_OCSP_INVALID},
};

static blob staple_for(int verdict)
{
    switch (verdict) {
    case V_GOOD:
        return good(K_LEAF);
    case V_NO_NEXT_UPDATE:
        return response(K_LEAF, DX_PKI_OCSP_GOOD, -60, DX_PKI_OCSP_NO_NEXT_UPDATE);
    case V_AHEAD: /* thisUpdate ahead, within the 5 minutes of skew allowed */
        return response(K_LEAF, DX_PKI_OCSP_GOOD, 120, 3600);
    case V_BEHIND: /* nextUpdate past, within the 5 minutes of skew allowed */
        return response(K_LEAF, DX_PKI_OCSP_GOOD, -3600, -120);
    case V_REVOKED:
        return response(K_LEAF, DX_PKI_OCSP_REVOKED, -60, 3600);
    case V_UNKNOWN:
        return response(K_LEAF, DX_PKI_OCSP_UNKNOWN, -60, 3600);
    case V_EXPIRED:
        return response(K_LEAF, DX_PKI_OCSP_GOOD, -7200, -600);
    case V_NOT_YET:
        return response(K_LEAF, DX_PKI_OCSP_GOOD, 600, 7200);
    case V_TAMPERED: {
        blob b = good(K_LEAF);
        b.der[b.len - 1] ^= 0x01; /* the last byte of the signature */
        return b;
    }
    case V_ROGUE_NOCERT:
        return signed_by_rogue(K_LEAF, false);
    case V_ROGUE_UNTRUSTED:
    case V_ROGUE_TRUSTED:
        return signed_by_rogue(K_LEAF, true);
    case V_OTHER_CERT:
        return good(K_OTHER);
    case V_GARBAGE:
        return copy_of("this is not an OCSP response", 28);
    default:
        return try_later();
    }
}

/* Section 4 item 9: the stapled response is checked against the verified
 * chain; what does not hold refuses the server with a stable code, and
 * the server hears bad_certificate_status_response. */
START_TEST(staple_verification_verdicts)
{
    const char *v = versions[_i / V_COUNT];
    int verdict = _i % V_COUNT;
    dx_tls_ctx *sctx = server_ctx(K_LEAF, v);
    dx_tls_ctx *cctx = client_ctx_ex(v, NULL, verdict == V_ROGUE_TRUSTED ? rogue : NULL);
    srv_log l = {.mode = ANSWER_NOW, .answer = staple_for(verdict)};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_VERIFY});
    ck_assert_uint_eq(l.asks, 1);
    ck_assert_int_eq(dx_tls_get_ocsp_result(k.c), verdicts[verdict].result);
    const uint8_t *der;
    size_t len;
    ck_assert_int_eq(dx_tls_get_ocsp_response(k.c, &der, &len), 0);
    ck_assert_uint_eq(len, l.answer.len); /* what came, also after a failure */
    ck_assert_mem_eq(der, l.answer.der, len);
    if (!verdicts[verdict].name) {
        ck_assert_msg(k.secure == 1, "%s", k.rc.error_name);
        assert_stapled(&k, &l.answer);
        ck_assert(dx_tls_authorized(k.c));
        ck_assert_ptr_null(dx_tls_authorization_error(k.c));
    } else {
        ck_assert_uint_eq(k.secure, 0);
        ck_assert_uint_eq(k.responses, 0);
        ck_assert_str_eq(k.error_name, verdicts[verdict].name);
        ck_assert_str_eq(k.rc.error_name, verdicts[verdict].name);
        const dx_error *e = dx_stream_error(dx_tls_upper(k.c));
        ck_assert_str_eq(dx_error_layer(e), "tls");
        ck_assert_str_eq(l.error_name, "ERR_SSL_TLSV1_BAD_CERTIFICATE_STATUS_RESPONSE");
        ck_assert_uint_eq(l.secure, 0);
    }
    conn_close(&k);
    dx_tls_server_free(srv);
    blob_free(&l.answer);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* RFC 7633: a must-staple certificate without a staple is refused under
 * MUST_STAPLE (which alone also asks and verifies), accepted with VERIFY
 * alone; a staple that holds passes; a certificate without the feature
 * needs none. */
START_TEST(must_staple_enforced)
{
    const char *v = versions[_i / 5];
    int c = _i % 5;
    static const struct {
        int cert;
        unsigned flags;
        bool staple;
        const char *error;
        dx_tls_ocsp_result result;
    } cases[5] = {
        {K_STAPLE, DX_TLS_OCSP_MUST_STAPLE, true, NULL, DX_TLS_OCSP_GOOD},
        {K_STAPLE, DX_TLS_OCSP_MUST_STAPLE, false, "ERR_TLS_OCSP_MISSING",
         DX_TLS_OCSP_NO_STAPLE},
        {K_STAPLE, DX_TLS_OCSP_VERIFY, false, NULL, DX_TLS_OCSP_NO_STAPLE},
        {K_LEAF, DX_TLS_OCSP_MUST_STAPLE, false, NULL, DX_TLS_OCSP_NO_STAPLE},
        {K_STAPLE, DX_TLS_OCSP_REQUEST, false, NULL, DX_TLS_OCSP_UNCHECKED},
    };
    dx_tls_ctx *sctx = server_ctx(cases[c].cert, v), *cctx = client_ctx(v);
    srv_log l = {.mode = cases[c].staple ? ANSWER_NOW : NONE_NOW,
                 .answer = good(cases[c].cert)};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    connect_to(&k, srv, cctx, &(opts){.flags = cases[c].flags});
    ck_assert_uint_eq(l.asks, 1); /* MUST_STAPLE alone asked */
    ck_assert_int_eq(dx_tls_get_ocsp_result(k.c), cases[c].result);
    if (cases[c].error) {
        ck_assert_uint_eq(k.secure, 0);
        ck_assert_str_eq(k.rc.error_name, cases[c].error);
        ck_assert_str_eq(l.error_name, "ERR_SSL_TLSV1_BAD_CERTIFICATE_STATUS_RESPONSE");
    } else {
        ck_assert_msg(k.secure == 1, "%s", k.rc.error_name);
        ck_assert(dx_tls_authorized(k.c));
    }
    conn_close(&k);
    dx_tls_server_free(srv);
    blob_free(&l.answer);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* reject_unauthorized false: a staple that does not hold lets the
 * connection through, unauthorized, with the reason; no session is given
 * out (a resumption would not check again), where a good staple gives
 * some. */
START_TEST(unauthorized_staple_allowed_reports_why)
{
    const char *v = versions[_i / 3];
    int c = _i % 3; /* 0 revoked, 1 must-staple missing, 2 good */
    int cert = c == 1 ? K_STAPLE : K_LEAF;
    dx_tls_ctx *sctx = server_ctx(cert, v), *cctx = client_ctx(v);
    srv_log l = {.mode = c == 1 ? NONE_NOW : ANSWER_NOW,
                 .answer = c == 0 ? response(K_LEAF, DX_PKI_OCSP_REVOKED, -60, 3600)
                                  : good(cert)};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    connect_to(&k, srv, cctx,
               &(opts){.flags = DX_TLS_OCSP_MUST_STAPLE, .allow_unauthorized = true});
    ck_assert_uint_eq(k.secure, 1);
    ck_assert_uint_eq(l.secure, 1);
    if (c == 2) {
        ck_assert(dx_tls_authorized(k.c));
        ck_assert_int_eq(dx_tls_verify_result(k.c), X509_V_OK);
    } else {
        ck_assert(!dx_tls_authorized(k.c));
        ck_assert_str_eq(dx_tls_authorization_error(k.c),
                         c == 0 ? "CERT_REVOKED" : "ERR_TLS_OCSP_MISSING");
        ck_assert_int_eq(dx_tls_verify_result(k.c), c == 0 ? X509_V_ERR_CERT_REVOKED
                                                           : X509_V_ERR_OCSP_VERIFY_FAILED);
        ck_assert_int_eq(dx_tls_get_ocsp_result(k.c),
                         c == 0 ? DX_TLS_OCSP_REVOKED : DX_TLS_OCSP_NO_STAPLE);
    }
    /* traffic both ways brings TLS 1.3 tickets */
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.s), "pong", 4), 0);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.c), "ping", 4), 0);
    ck_assert_uint_eq(k.rc.received, 4);
    if (c == 2)
        ck_assert_uint_ge(k.sessions, 1);
    else
        ck_assert_uint_eq(k.sessions, 0);
    conn_close(&k);
    dx_tls_server_free(srv);
    blob_free(&l.answer);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* A chain that fails first is the reason reported; the staple is then
 * not checked. */
START_TEST(chain_failure_comes_first)
{
    const char *v = versions[_i];
    dx_tls_ctx *sctx = server_ctx(K_ORPHAN, v), *cctx = client_ctx(v);
    srv_log l = {.mode = ANSWER_NOW, .answer = copy_of("garbage", 7)};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_VERIFY, .allow_unauthorized = true});
    ck_assert_uint_eq(k.secure, 1);
    ck_assert_str_eq(dx_tls_authorization_error(k.c), "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    ck_assert_int_eq(dx_tls_get_ocsp_result(k.c), DX_TLS_OCSP_UNCHECKED);
    assert_stapled(&k, &l.answer);
    conn_close(&k);
    /* refused, the chain's code */
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_VERIFY});
    ck_assert_str_eq(k.rc.error_name, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    conn_close(&k);
    dx_tls_server_free(srv);
    blob_free(&l.answer);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* Resumption sends no certificate: the server is not asked, the client
 * gets NULL and nothing is checked, must-staple included. */
START_TEST(resumption_asks_nothing)
{
    const char *v = versions[_i];
    dx_tls_ctx *sctx = server_ctx(K_STAPLE, v), *cctx = client_ctx(v);
    srv_log l = {.mode = ANSWER_NOW, .answer = good(K_STAPLE)};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_MUST_STAPLE});
    ck_assert_uint_eq(k.secure, 1);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.s), "x", 1), 0);
    uint8_t sess[8192];
    size_t len = k.session_len;
    if (len)
        memcpy(sess, k.session, len);
    else
        ck_assert_int_eq(dx_tls_get_session(k.c, sess, sizeof(sess), &len), 0);
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(k.c)), 0);
    conn_close(&k);
    ck_assert_uint_eq(l.asks, 1);
    connect_to(&k, srv, cctx,
               &(opts){.flags = DX_TLS_OCSP_MUST_STAPLE, .session = sess, .session_len = len});
    ck_assert_uint_eq(k.secure, 1);
    ck_assert(dx_tls_session_reused(k.c));
    ck_assert_uint_eq(l.asks, 1);
    assert_no_staple(&k);
    ck_assert_int_eq(dx_tls_get_ocsp_result(k.c), DX_TLS_OCSP_UNCHECKED);
    ck_assert(dx_tls_authorized(k.c));
    conn_close(&k);
    dx_tls_server_free(srv);
    blob_free(&l.answer);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* The callback may destroy the connection: from on_ocsp_response (secure
 * never comes), and from the server's question. */
static void destroy_in_response(dx_tls *t, const uint8_t *r, size_t n, void *u)
{
    (void)r, (void)n;
    conn *k = u;
    k->responses++;
    dx_tls_destroy(t);
    k->c = NULL;
}

static void destroy_in_question(dx_tls_server *srv, dx_tls *t, const dx_tls_cert *cert,
                                const dx_tls_cert *issuer, dx_tls_pending *p, void *u)
{
    (void)srv, (void)cert, (void)issuer;
    srv_log *l = u;
    l->asks++;
    l->pending[l->npending++] = p;
    dx_tls_destroy(t);
}

START_TEST(destroy_inside_ocsp_callbacks)
{
    const char *v = versions[_i];
    dx_tls_ctx *sctx = server_ctx(K_LEAF, v), *cctx = client_ctx(v);
    size_t live0 = h_alloc_live();
    srv_log l = {.mode = ANSWER_NOW, .answer = good(K_LEAF)};
    dx_tls_server *srv = make_server(sctx, &l);
    conn k;
    memset(&k, 0, sizeof(k));
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &k.c), 0);
    dx_tls_events ev = client_events;
    ev.on_ocsp_response = destroy_in_response;
    ck_assert_int_eq(dx_tls_set_events(k.c, &ev, &k), 0);
    ck_assert_int_eq(dx_tls_set_ocsp(k.c, DX_TLS_OCSP_VERIFY), 0);
    ck_assert_int_eq(dx_tls_set_servername(k.c, "ocsp.test"), 0);
    ck_assert_int_eq(dx_tls_attach(k.c, a), 0);
    ck_assert_int_eq(dx_tls_server_accept(srv, b, &k.s), 0);
    ck_assert_int_eq(dx_tls_start(k.c), 0);
    ck_assert_uint_eq(k.responses, 1);
    ck_assert_ptr_null(k.c);
    ck_assert_uint_eq(k.secure, 0);
    dx_tls_destroy(k.s);
    /* the server's question destroys its connection */
    l.asks = 0;
    dx_tls_server_events sev = srv_events;
    sev.on_ocsp_request = destroy_in_question;
    ck_assert_int_eq(dx_tls_server_set_events(srv, &sev, &l), 0);
    connect_to(&k, srv, cctx, &(opts){.flags = DX_TLS_OCSP_REQUEST});
    ck_assert_uint_eq(l.asks, 1);
    ck_assert_str_eq(k.rc.error_name, "ECONNRESET");
    ck_assert_int_eq(dx_tls_ocsp_done(l.pending[0], NULL, 0, NULL), 0);
    dx_tls_destroy(k.c);
    h_rec_free(&k.rc);
    h_rec_free(&k.rs);
    ck_assert_uint_eq(dx_tls_server_connections(srv), 0);
    dx_tls_server_free(srv);
    blob_free(&l.answer);
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* Every allocation of libduplex's, failing in turn through a stapled and
 * verified handshake, ends in success or a clean error; nothing leaks. */
START_TEST(allocation_failures_while_stapling_end_cleanly)
{
    dx_tls_ctx *sctx = server_ctx(K_LEAF, NULL), *cctx = client_ctx(NULL);
    srv_log l = {.mode = ANSWER_NOW, .answer = good(K_LEAF), .oom_allowed = true};
    dx_tls_server *srv = make_server(sctx, &l);
    bool succeeded = false;
    for (long n = 0; n < 1000 && !succeeded; n++) {
        size_t live0 = h_alloc_live();
        h_alloc_fail_from(n);
        dx_stream *a = NULL, *b = NULL;
        conn k;
        memset(&k, 0, sizeof(k));
        if (dx_pair_new(NULL, &a, &b) == 0 && dx_tls_new(cctx, DX_TLS_CLIENT, &k.c) == 0) {
            dx_tls_set_events(k.c, &client_events, &k);
            h_rec_attach(&k.rc, dx_tls_upper(k.c));
            int r1 = dx_tls_set_ocsp(k.c, DX_TLS_OCSP_VERIFY) |
                     dx_tls_set_servername(k.c, "ocsp.test");
            int r2 = dx_tls_attach(k.c, a);
            a = NULL;
            int r3 = dx_tls_server_accept(srv, b, &k.s);
            b = NULL;
            if (r3 == 0)
                h_rec_attach(&k.rs, dx_tls_upper(k.s));
            if (r1 == 0 && r2 == 0 && r3 == 0 && dx_tls_start(k.c) == 0 &&
                dx_stream_write(dx_tls_upper(k.c), "ping", 4) >= 0)
                succeeded = k.rs.received == 4 && !k.rc.errors && !k.rs.errors &&
                            dx_tls_get_ocsp_result(k.c) == DX_TLS_OCSP_GOOD;
            ck_assert_uint_le(k.rc.errors, 1);
            ck_assert_uint_le(k.rs.errors, 1);
        }
        h_alloc_fail_from(-1);
        dx_tls_destroy(k.c);
        dx_tls_destroy(k.s);
        dx_stream_destroy(a);
        dx_stream_destroy(b);
        h_rec_assert_clean(&k.rc);
        h_rec_assert_clean(&k.rs);
        h_rec_free(&k.rc);
        h_rec_free(&k.rs);
        ck_assert_msg(h_alloc_live() == live0, "n=%ld: %zu bytes leaked", n,
                      h_alloc_live() - live0);
    }
    ck_assert(succeeded);
    dx_tls_server_free(srv);
    blob_free(&l.answer);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* ---- real peers ------------------------------------------------------------ */

/* Our server on a loopback socket, serving the one connection a peer
 * makes, until the peer printed text. */
typedef struct tcp_one {
    int listener;
    dx_tls_server *srv;
    dx_stream *sock;
    dx_tls *t;
    h_peer *peer;
    const char *text;
} tcp_one;

static bool serve_until_text(void *arg)
{
    tcp_one *o = arg;
    int fd;
    if (!o->sock && (fd = h_accept(o->listener, 0)) >= 0) {
        ck_assert_int_eq(dx_fd_stream_new(fd, fd, DX_FD_CLOSE, &o->sock), 0);
        ck_assert_int_eq(dx_tls_server_accept(o->srv, o->sock, &o->t), 0);
    }
    if (o->sock)
        dx_fd_poll(&o->sock, 1, 10);
    return strstr(h_peer_output(o->peer), o->text) != NULL;
}

/* SV-04 with a client nobody here wrote: openssl s_client -status gets
 * the staple our server's event gives (good or revoked), or none. */
START_TEST(openssl_s_client_gets_the_staple)
{
    const char *v = versions[_i / 3];
    int what = _i % 3; /* 0 good, 1 revoked, 2 none */
    char dir[64];
    h_tmpdir(dir);
    const char *capath = h_tmpfile(dir, "ca.pem", dx_pki_cert_pem(ca), (size_t)-1);
    dx_tls_ctx *sctx = server_ctx(K_LEAF, v);
    srv_log l = {.mode = what == 2 ? NONE_NOW : ANSWER_NOW,
                 .answer = response(K_LEAF, what == 1 ? DX_PKI_OCSP_REVOKED : DX_PKI_OCSP_GOOD,
                                    -60, 3600)};
    dx_tls_server *srv = make_server(sctx, &l);
    tcp_one o = {.srv = srv, .text = "Verify return code"};
    unsigned port;
    o.listener = h_listen_loopback(&port);
    char to[64];
    snprintf(to, sizeof(to), "127.0.0.1:%u", port);
    h_peer peer;
    const char *argv[] = {"openssl", "s_client", "-connect", to, "-servername", "ocsp.test",
                          "-status", "-CAfile", capath, "-verify_return_error",
                          strcmp(v, "TLSv1.3") ? "-tls1_2" : "-tls1_3", NULL};
    h_peer_start(&peer, argv);
    o.peer = &peer;
    ck_assert_msg(h_peer_run(&peer, NULL, 0, serve_until_text, &o, 15000), "s_client: %s",
                  h_peer_output(&peer));
    const char *out = h_peer_output(&peer);
    ck_assert_uint_eq(l.asks, 1);
    ck_assert_ptr_nonnull(strstr(out, "Verify return code: 0 (ok)"));
    if (what == 2) {
        ck_assert_msg(strstr(out, "OCSP response: no response sent"), "%s", out);
    } else {
        ck_assert_msg(strstr(out, "OCSP Response Status: successful (0x0)"), "%s", out);
        ck_assert_msg(strstr(out, what ? "Cert Status: revoked" : "Cert Status: good"), "%s",
                      out);
    }
    ck_assert(dx_tls_is_secure(o.t));
    h_peer_close_input(&peer);
    ck_assert_int_ge(h_peer_stop(&peer, 5000), 0);
    h_peer_free(&peer);
    dx_tls_destroy(o.t);
    close(o.listener);
    dx_tls_server_free(srv);
    blob_free(&l.answer);
    dx_tls_ctx_unref(sctx);
    h_tmpdir_remove(dir);
}
END_TEST

typedef struct client_done {
    dx_tls *t;
    h_peer *peer;
} client_done;

static bool echoed_or_failed(void *arg)
{
    client_done *w = arg;
    return dx_stream_error(dx_tls_upper(w->t)) ||
           strstr(h_peer_output(w->peer), "ping from ours");
}

/* Section 4 item 9 with a server nobody here wrote: openssl s_server
 * -status_file staples a response our client verifies (good, revoked),
 * or staples nothing to a must-staple certificate. */
START_TEST(our_client_verifies_openssl_s_server_staple)
{
    const char *v = versions[_i / 3];
    int what = _i % 3; /* 0 good, 1 revoked, 2 must-staple without a staple */
    int cert = what == 2 ? K_STAPLE : K_LEAF;
    char dir[64];
    h_tmpdir(dir);
    char certpath[512], keypath[512], resppath[512];
    snprintf(certpath, sizeof(certpath), "%s",
             h_tmpfile(dir, "cert.pem", dx_pki_cert_pem(certs[cert]), (size_t)-1));
    snprintf(keypath, sizeof(keypath), "%s",
             h_tmpfile(dir, "key.pem", dx_pki_key_pem(certs[cert]), (size_t)-1));
    blob b = response(cert, what == 1 ? DX_PKI_OCSP_REVOKED : DX_PKI_OCSP_GOOD, -60, 3600);
    snprintf(resppath, sizeof(resppath), "%s", h_tmpfile(dir, "ocsp.der", b.der, b.len));
    char port[16];
    snprintf(port, sizeof(port), "%u", h_free_port());
    const char *tls = strcmp(v, "TLSv1.3") ? "-tls1_2" : "-tls1_3";
    const char *with[] = {"openssl", "s_server", "-accept", port, "-cert", certpath, "-key",
                          keypath, tls, "-naccept", "1", "-status_file", resppath, NULL};
    const char *without[] = {"openssl", "s_server", "-accept", port, "-cert", certpath, "-key",
                             keypath, tls, "-naccept", "1", NULL};
    h_peer peer;
    h_peer_start(&peer, what == 2 ? without : with);
    ck_assert_msg(h_peer_wait_output(&peer, "ACCEPT", NULL, 0, 10000), "s_server: %s",
                  h_peer_output(&peer));
    dx_tls_ctx *cctx = client_ctx(NULL);
    int fd = h_connect_loopback((unsigned)atoi(port), 5000);
    ck_assert_int_ge(fd, 0);
    dx_stream *sock;
    ck_assert_int_eq(dx_fd_stream_new(fd, fd, DX_FD_CLOSE, &sock), 0);
    conn k;
    memset(&k, 0, sizeof(k));
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &k.c), 0);
    ck_assert_int_eq(dx_tls_set_servername(k.c, "ocsp.test"), 0);
    ck_assert_int_eq(dx_tls_set_ocsp(k.c, what == 2 ? DX_TLS_OCSP_MUST_STAPLE : DX_TLS_OCSP_VERIFY),
                     0);
    ck_assert_int_eq(dx_tls_set_events(k.c, &client_events, &k), 0);
    h_rec_attach(&k.rc, dx_tls_upper(k.c));
    ck_assert_int_eq(dx_tls_attach(k.c, sock), 0);
    ck_assert_int_eq(dx_tls_start(k.c), 0);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.c), "ping from ours\n", 15), 0);
    client_done w = {k.c, &peer};
    ck_assert_msg(h_peer_run(&peer, &sock, 1, echoed_or_failed, &w, 10000), "s_server: %s",
                  h_peer_output(&peer));
    if (what == 0) {
        ck_assert_msg(k.secure == 1, "%s", k.rc.error_name);
        assert_stapled(&k, &b);
        ck_assert_int_eq(dx_tls_get_ocsp_result(k.c), DX_TLS_OCSP_GOOD);
        ck_assert(dx_tls_authorized(k.c));
        ck_assert_str_eq(dx_tls_protocol(k.c), v);
        dx_stream_end(dx_tls_upper(k.c));
    } else {
        ck_assert_uint_eq(k.secure, 0);
        ck_assert_str_eq(k.rc.error_name, what == 1 ? "CERT_REVOKED" : "ERR_TLS_OCSP_MISSING");
        ck_assert_int_eq(dx_tls_get_ocsp_result(k.c),
                         what == 1 ? DX_TLS_OCSP_REVOKED : DX_TLS_OCSP_NO_STAPLE);
    }
    int64_t end = h_now_ms() + 3000;
    while (h_now_ms() < end && !(dx_stream_state(dx_tls_lower(k.c)) & DX_STREAM_CLOSED))
        dx_fd_poll(&sock, 1, 10);
    dx_tls_destroy(k.c);
    h_rec_assert_clean(&k.rc);
    h_rec_free(&k.rc);
    ck_assert_int_ge(h_peer_stop(&peer, 5000), -1);
    h_peer_free(&peer);
    blob_free(&b);
    dx_tls_ctx_unref(cctx);
    h_tmpdir_remove(dir);
}
END_TEST

Suite *tls_ocsp_suite(void)
{
    Suite *s = suite_create("tls_ocsp");
    TCase *tc = tcase_create("stapling");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, staple_reaches_client_before_secure, 0, 4);
    tcase_add_loop_test(tc, no_request_no_question, 0, 2);
    tcase_add_loop_test(tc, answer_none_gives_client_null, 0, 4);
    tcase_add_loop_test(tc, late_answer_after_traffic_and_time, 0, 2);
    tcase_add_loop_test(tc, failed_answer_fails_both_sides, 0, 4);
    tcase_add_loop_test(tc, answer_after_destroy_and_bad_answers, 0, 2);
    tcase_add_loop_test(tc, answer_outlives_the_server, 0, 2);
    tcase_add_loop_test(tc, sni_context_certificate_is_asked_about, 0, 4);
    tcase_add_loop_test(tc, every_certificate_of_the_context_is_asked_about, 0, 4);
    tcase_add_test(tc, hello_retry_keeps_the_answer);
    tcase_add_loop_test(tc, issuer_from_chain_store_or_none, 0, 10);
    tcase_add_loop_test(tc, standalone_connection_staples, 0, 2);
    tcase_add_loop_test(tc, destroy_inside_ocsp_callbacks, 0, 2);
    tcase_add_test(tc, allocation_failures_while_stapling_end_cleanly);
    suite_add_tcase(s, tc);
    tc = tcase_create("verification");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, staple_verification_verdicts, 0, 2 * V_COUNT);
    tcase_add_loop_test(tc, must_staple_enforced, 0, 10);
    tcase_add_loop_test(tc, unauthorized_staple_allowed_reports_why, 0, 6);
    tcase_add_loop_test(tc, chain_failure_comes_first, 0, 2);
    tcase_add_loop_test(tc, resumption_asks_nothing, 0, 2);
    suite_add_tcase(s, tc);
    tc = tcase_create("peer");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, openssl_s_client_gets_the_staple, 0, 6);
    tcase_add_loop_test(tc, our_client_verifies_openssl_s_server_staple, 0, 6);
    suite_add_tcase(s, tc);
    return s;
}
