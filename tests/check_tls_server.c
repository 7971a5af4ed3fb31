/*
 * The TLS server (include/duplex/tls_server.h), SNI and ALPN: contexts by
 * name (exact and wildcard), synchronous and asynchronous SNI choices,
 * context swaps, ALPN agreement and refusal, server events and the count
 * of open connections. IDs cite the checklist (S-, SV-, T-, CL-, M-).
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "harness.h"
#include "peer.h"

/* ---- the test PKI, made per test case (unchecked fixture) ---------------- */

enum { C_DEFAULT, C_A, C_WILD, C_NEW, C_COUNT };
static dx_pki_cert *ca, *certs[C_COUNT];

static void make_pki(void)
{
    dx_pki_opts o = {.common_name = "Server Test CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &o, &ca, NULL));
    static const char *const dflt[] = {"default.test", NULL};
    static const char *const a[] = {"a.example.com", NULL};
    static const char *const wild[] = {"*.test.com", NULL};
    static const char *const fresh[] = {"default.test", NULL};
    struct {
        const char *cn;
        const char *const *dns;
    } spec[C_COUNT] = {{"default", dflt}, {"a", a}, {"wild", wild}, {"new", fresh}};
    for (int i = 0; i < C_COUNT; i++) {
        dx_pki_opts l = {.common_name = spec[i].cn, .dns_names = spec[i].dns};
        H_MUST(dx_pki_issue(ca, &l, &certs[i], NULL));
    }
}

static void free_pki(void)
{
    for (int i = 0; i < C_COUNT; i++)
        dx_pki_cert_free(certs[i]);
    dx_pki_cert_free(ca);
    memset(certs, 0, sizeof(certs));
    ca = NULL;
}

static dx_tls_ctx *ctx_for(int cert, const char *version)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *capem = dx_pki_cert_pem(ca);
    ck_assert_int_eq(dx_tls_config_add_ca(cfg, capem, strlen(capem)), 0);
    if (cert >= 0) {
        const char *c = dx_pki_cert_pem(certs[cert]), *k = dx_pki_key_pem(certs[cert]);
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

static const char *const versions[] = {"TLSv1.2", "TLSv1.3"};

/* ---- a server and its events -------------------------------------------- */

typedef struct srv_log {
    unsigned secure, client_errors, keylogs, snis;
    char error_name[64];
    char error_servername[256];
    dx_tls_pending *pending; /* kept by an asynchronous SNI choice */
    char sni_name[256];
    int sni_mode;            /* 0 keep for later, 1 answer ctx now, 2 refuse now */
    dx_tls_ctx *sni_ctx;
} srv_log;

static void ev_secure(dx_tls_server *srv, dx_tls *t, void *u)
{
    (void)srv, (void)t;
    ((srv_log *)u)->secure++;
}

static void ev_client_error(dx_tls_server *srv, dx_tls *t, const dx_error *err, void *u)
{
    (void)srv;
    srv_log *l = u;
    l->client_errors++;
    snprintf(l->error_name, sizeof(l->error_name), "%s", dx_error_name(err));
    const char *name = dx_tls_servername(t);
    snprintf(l->error_servername, sizeof(l->error_servername), "%s", name ? name : "");
}

static void ev_keylog(dx_tls_server *srv, dx_tls *t, const char *line, void *u)
{
    (void)srv, (void)t, (void)line;
    ((srv_log *)u)->keylogs++;
}

static void ev_sni(dx_tls_server *srv, dx_tls *t, const char *name, dx_tls_pending *p, void *u)
{
    (void)srv, (void)t;
    srv_log *l = u;
    l->snis++;
    snprintf(l->sni_name, sizeof(l->sni_name), "%s", name);
    if (l->sni_mode == 1)
        dx_tls_sni_done(p, l->sni_ctx);
    else if (l->sni_mode == 2)
        dx_tls_sni_refuse(p, dx_error_new(DX_ETLS, "SNI_REFUSED", NULL, "no such host"));
    else if (l->sni_mode == 3) /* as when memory ran out making the error */
        dx_tls_sni_refuse(p, NULL);
    else
        l->pending = p;
}

static const dx_tls_server_events srv_events = {
    .on_secure_connection = ev_secure,
    .on_client_error = ev_client_error,
    .on_keylog = ev_keylog,
};

/* One client connected to a server through a memory pair. */
typedef struct conn {
    dx_tls *c, *s;
    h_rec rc, rs;
    unsigned c_secure;
    uint8_t session[8192];
    size_t session_len;
} conn;

static void c_secure(dx_tls *t, void *u)
{
    (void)t;
    ((conn *)u)->c_secure++;
}

static void c_session(dx_tls *t, const uint8_t *sess, size_t len, void *u)
{
    (void)t;
    conn *k = u;
    ck_assert_uint_le(len, sizeof(k->session));
    memcpy(k->session, sess, len);
    k->session_len = len;
}

static const dx_tls_events client_events = {.on_secure = c_secure, .on_session = c_session};

static void connect_resume(conn *k, dx_tls_server *srv, dx_tls_ctx *cctx,
                           const char *servername, const char *const *alpn,
                           const uint8_t *resume, size_t resume_len)
{
    memset(k, 0, sizeof(*k));
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &k->c), 0);
    ck_assert_int_eq(dx_tls_set_events(k->c, &client_events, k), 0);
    if (servername)
        ck_assert_int_eq(dx_tls_set_servername(k->c, servername), 0);
    if (alpn)
        ck_assert_int_eq(dx_tls_set_alpn_protocols(k->c, alpn), 0);
    if (resume)
        ck_assert_int_eq(dx_tls_set_session(k->c, resume, resume_len), 0);
    h_rec_attach(&k->rc, dx_tls_upper(k->c));
    ck_assert_int_eq(dx_tls_attach(k->c, a), 0);
    ck_assert_int_eq(dx_tls_server_accept(srv, b, &k->s), 0);
    h_rec_attach(&k->rs, dx_tls_upper(k->s));
    ck_assert_int_eq(dx_tls_start(k->c), 0);
}

static void connect_to(conn *k, dx_tls_server *srv, dx_tls_ctx *cctx, const char *servername,
                       const char *const *alpn)
{
    connect_resume(k, srv, cctx, servername, alpn, NULL, 0);
}

/* A clean close (close_notify both ways), which keeps the session of a
 * server's cache valid (OpenSSL drops the sessions of connections that
 * end otherwise), then conn_close(). */
static void conn_end(conn *k)
{
    if (k->c_secure && !k->rc.errors && !k->rs.errors) {
        ck_assert_int_eq(dx_stream_end(dx_tls_upper(k->c)), 0);
        ck_assert_uint_eq(k->rc.closes, 1);
        ck_assert_uint_eq(k->rs.closes, 1);
    }
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

/* The common name of the certificate the client was served. */
static const char *served_cn(conn *k)
{
    const dx_tls_cert *c = dx_tls_peer_cert(k->c);
    return c ? dx_tls_name_get(dx_tls_cert_subject(c), "CN", 0) : "";
}

/* ---- SNI ------------------------------------------------------------------- */

/* A connection accepted while on_sni was set, whose ClientHello comes
 * after the application cleared the server's events, is served by the
 * name table. */
START_TEST(sni_event_cleared_after_accept_falls_back_to_the_table)
{
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, NULL), *a = ctx_for(C_A, NULL);
    dx_tls_ctx *cctx = ctx_for(-1, NULL);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_add_context(srv, "a.example.com", a), 0);
    srv_log l = {.sni_mode = 1, .sni_ctx = dflt};
    dx_tls_server_events ev = srv_events;
    ev.on_sni = ev_sni;
    ck_assert_int_eq(dx_tls_server_set_events(srv, &ev, &l), 0);
    /* the client is made and the server connection accepted ... */
    conn k;
    memset(&k, 0, sizeof(k));
    dx_stream *x, *y;
    ck_assert_int_eq(dx_pair_new(NULL, &x, &y), 0);
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &k.c), 0);
    ck_assert_int_eq(dx_tls_set_events(k.c, &client_events, &k), 0);
    ck_assert_int_eq(dx_tls_set_servername(k.c, "a.example.com"), 0);
    h_rec_attach(&k.rc, dx_tls_upper(k.c));
    ck_assert_int_eq(dx_tls_attach(k.c, x), 0);
    ck_assert_int_eq(dx_tls_server_accept(srv, y, &k.s), 0);
    h_rec_attach(&k.rs, dx_tls_upper(k.s));
    /* ... then the events go, then the ClientHello comes */
    ck_assert_int_eq(dx_tls_server_set_events(srv, NULL, NULL), 0);
    ck_assert_int_eq(dx_tls_start(k.c), 0);
    ck_assert_uint_eq(k.c_secure, 1);
    ck_assert_uint_eq(l.snis, 0);
    ck_assert_str_eq(served_cn(&k), "a");
    conn_close(&k);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(a);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* SV-08, 3.9: exact and wildcard names choose their contexts; "*" stands
 * for one label; a name nothing matches gets the default context. */
START_TEST(add_context_chooses_by_name)
{
    const char *v = versions[_i];
    size_t live0 = h_alloc_live();
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, v), *a = ctx_for(C_A, v), *w = ctx_for(C_WILD, v);
    dx_tls_ctx *cctx = ctx_for(-1, v);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_add_context(srv, "a.example.com", a), 0);
    ck_assert_int_eq(dx_tls_server_add_context(srv, "*.test.com", w), 0);
    static const struct {
        const char *name, *cn;
        bool ok;
    } cases[] = {
        {"a.example.com", "a", true},   {"A.Example.COM", "a", true},
        {"b.test.com", "wild", true},   {"a.b.test.com", "default", false},
        {"default.test", "default", true}, {"unknown.test", "default", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        conn k;
        connect_to(&k, srv, cctx, cases[i].name, NULL);
        ck_assert_msg(k.c_secure == cases[i].ok, "%s", cases[i].name);
        if (cases[i].ok) {
            ck_assert_str_eq(served_cn(&k), cases[i].cn);
            ck_assert_str_eq(dx_tls_servername(k.s), cases[i].name);
        } else {
            ck_assert_str_eq(k.rc.error_name, "ERR_TLS_CERT_ALTNAME_INVALID");
        }
        conn_close(&k);
    }
    ck_assert_uint_eq(dx_tls_server_connections(srv), 0);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(a);
    dx_tls_ctx_unref(w);
    dx_tls_ctx_unref(cctx);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* S-08: an SNI choice made later: the handshake waits for it, then goes
 * on with the chosen context; made at once it works the same. */
START_TEST(asynchronous_sni_choice)
{
    const char *v = versions[_i / 2];
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, v), *a = ctx_for(C_A, v), *cctx = ctx_for(-1, v);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    srv_log l = {.sni_mode = _i % 2, .sni_ctx = a};
    dx_tls_server_events ev = srv_events;
    ev.on_sni = ev_sni;
    ck_assert_int_eq(dx_tls_server_set_events(srv, &ev, &l), 0);
    conn k;
    connect_to(&k, srv, cctx, "a.example.com", NULL);
    ck_assert_uint_eq(l.snis, 1);
    ck_assert_str_eq(l.sni_name, "a.example.com");
    if (l.sni_mode == 0) {
        ck_assert_uint_eq(k.c_secure, 0); /* waiting */
        ck_assert_ptr_nonnull(l.pending);
        ck_assert_str_eq(dx_tls_servername(k.s), "a.example.com");
        ck_assert_int_eq(dx_tls_sni_done(l.pending, a), 0);
    }
    ck_assert_uint_eq(k.c_secure, 1);
    ck_assert_uint_eq(l.secure, 1);
    ck_assert_str_eq(served_cn(&k), "a");
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.c), "hi", 2), 0);
    ck_assert_uint_eq(k.rs.received, 2);
    conn_close(&k);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(a);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* 3.9, pitfall 16: an SNI choice that fails fails the handshake; the
 * server's client-error event still reads the name. i 1: a refusal with
 * no error object (memory ran out making one) refuses all the same. */
START_TEST(sni_refusal_fails_with_name_readable)
{
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, NULL), *cctx = ctx_for(-1, NULL);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    srv_log l = {.sni_mode = 2 + _i};
    const char *name = _i ? "ERR_TLS_SNI_REFUSED" : "SNI_REFUSED";
    dx_tls_server_events ev = srv_events;
    ev.on_sni = ev_sni;
    ck_assert_int_eq(dx_tls_server_set_events(srv, &ev, &l), 0);
    conn k;
    connect_to(&k, srv, cctx, "nobody.test", NULL);
    ck_assert_uint_eq(l.client_errors, 1);
    ck_assert_str_eq(l.error_name, name);
    ck_assert_str_eq(l.error_servername, "nobody.test");
    ck_assert_str_eq(k.rs.error_name, name);
    ck_assert_str_eq(k.rc.error_name, "ERR_SSL_TLSV1_UNRECOGNIZED_NAME");
    ck_assert_uint_eq(k.c_secure, 0);
    conn_close(&k);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* An SNI answer that comes after the connection was destroyed is safe. */
START_TEST(sni_answer_after_destroy)
{
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, NULL), *cctx = ctx_for(-1, NULL);
    size_t live0 = h_alloc_live();
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    srv_log l = {.sni_mode = 0};
    dx_tls_server_events ev = srv_events;
    ev.on_sni = ev_sni;
    ck_assert_int_eq(dx_tls_server_set_events(srv, &ev, &l), 0);
    conn k;
    connect_to(&k, srv, cctx, "late.test", NULL);
    ck_assert_ptr_nonnull(l.pending);
    conn_close(&k);
    ck_assert_uint_eq(dx_tls_server_connections(srv), 0);
    ck_assert_int_eq(dx_tls_sni_done(l.pending, dflt), 0);
    ck_assert_int_eq(dx_tls_sni_done(NULL, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_sni_refuse(NULL, NULL), DX_EINVAL);
    dx_tls_server_free(srv);
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* An SNI answer that comes after dx_tls_destroy() while the caller's own
 * link still holds the connection's lower stream (so the connection is
 * freed only later) only frees the answer. */
static void keep_sni(dx_tls *t, const char *name, dx_tls_pending *p, void *u)
{
    (void)t, (void)name;
    *(dx_tls_pending **)u = p;
}

START_TEST(sni_answer_while_destroyed_connection_is_held)
{
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, NULL), *cctx = ctx_for(-1, NULL);
    size_t live0 = h_alloc_live();
    dx_tls *c, *s;
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &c), 0);
    ck_assert_int_eq(dx_tls_new(dflt, DX_TLS_SERVER, &s), 0);
    dx_tls_pending *p = NULL;
    ck_assert_int_eq(dx_tls_set_sni_callback(s, keep_sni, &p), 0);
    ck_assert_int_eq(dx_tls_set_servername(c, "late.test"), 0);
    dx_link *link;
    ck_assert_int_eq(dx_link_new(dx_tls_lower(c), dx_tls_lower(s), NULL, NULL, &link), 0);
    ck_assert_int_eq(dx_tls_start(s), 0);
    ck_assert_int_eq(dx_tls_start(c), 0);
    ck_assert_ptr_nonnull(p);
    dx_tls_destroy(s); /* the link still holds its lower stream */
    ck_assert_int_eq(dx_tls_sni_done(p, NULL), 0);
    dx_link_destroy(link);
    dx_tls_destroy(c);
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* T-08, 3.1: the SNI callback of a standalone server connection (no
 * server object). */
static void standalone_sni(dx_tls *t, const char *name, dx_tls_pending *p, void *u)
{
    (void)t;
    ck_assert_str_eq(name, "a.example.com");
    dx_tls_sni_done(p, u);
}

START_TEST(standalone_connection_sni_callback)
{
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, NULL), *a = ctx_for(C_A, NULL), *cctx = ctx_for(-1, NULL);
    size_t live0 = h_alloc_live();
    dx_stream *x, *y;
    ck_assert_int_eq(dx_pair_new(NULL, &x, &y), 0);
    dx_tls *c, *s;
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &c), 0);
    ck_assert_int_eq(dx_tls_new(dflt, DX_TLS_SERVER, &s), 0);
    ck_assert_int_eq(dx_tls_set_sni_callback(c, standalone_sni, a), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_sni_callback(s, standalone_sni, a), 0);
    ck_assert_int_eq(dx_tls_set_servername(c, "a.example.com"), 0);
    h_rec rc = {0}, rs = {0};
    h_rec_attach(&rc, dx_tls_upper(c));
    h_rec_attach(&rs, dx_tls_upper(s));
    ck_assert_int_eq(dx_tls_attach(c, x), 0);
    ck_assert_int_eq(dx_tls_attach(s, y), 0);
    ck_assert_int_eq(dx_tls_start(s), 0);
    ck_assert_int_eq(dx_tls_start(c), 0);
    ck_assert(dx_tls_is_secure(c));
    ck_assert(dx_tls_authorized(c));
    ck_assert_str_eq(dx_tls_name_get(dx_tls_cert_subject(dx_tls_peer_cert(c)), "CN", 0), "a");
    dx_tls_destroy(c);
    dx_tls_destroy(s);
    h_rec_free(&rc);
    h_rec_free(&rs);
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(a);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* SV-14, 3.9: setSecureContext serves new connections with the new
 * context while an open one keeps streaming. */
START_TEST(set_context_swaps_for_new_connections)
{
    dx_tls_ctx *old = ctx_for(C_DEFAULT, NULL), *fresh = ctx_for(C_NEW, NULL);
    dx_tls_ctx *cctx = ctx_for(-1, NULL);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(old, &srv), 0);
    conn k1, k2;
    connect_to(&k1, srv, cctx, "default.test", NULL);
    ck_assert_str_eq(served_cn(&k1), "default");
    ck_assert_int_eq(dx_tls_server_set_context(srv, fresh), 0);
    connect_to(&k2, srv, cctx, "default.test", NULL);
    ck_assert_str_eq(served_cn(&k2), "new");
    ck_assert_uint_eq(dx_tls_server_connections(srv), 2);
    static uint8_t big[200000];
    ck_assert_int_ge(dx_stream_write(dx_tls_upper(k1.s), big, sizeof(big)), 0);
    ck_assert_uint_eq(k1.rc.received, sizeof(big));
    conn_close(&k1);
    ck_assert_uint_eq(dx_tls_server_connections(srv), 1);
    /* The server goes; its open connection carries on. */
    dx_tls_server_free(srv);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k2.c), "still", 5), 0);
    ck_assert_uint_eq(k2.rs.received, 5);
    conn_close(&k2);
    dx_tls_ctx_unref(old);
    dx_tls_ctx_unref(fresh);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* Every allocation of libduplex's failing in turn through a connection a
 * server accepts and an asynchronous SNI choice (the question lost to
 * the shortage included) ends in success or a clean error; nothing leaks. */
START_TEST(allocation_failures_through_sni_end_cleanly)
{
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, NULL), *a = ctx_for(C_A, NULL);
    dx_tls_ctx *cctx = ctx_for(-1, NULL);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    srv_log l = {.sni_mode = 1, .sni_ctx = a};
    dx_tls_server_events ev = srv_events;
    ev.on_sni = ev_sni;
    ck_assert_int_eq(dx_tls_server_set_events(srv, &ev, &l), 0);
    bool succeeded = false;
    for (long n = 0; n < 1000 && !succeeded; n++) {
        size_t live0 = h_alloc_live();
        h_alloc_fail_from(n);
        dx_stream *x = NULL, *y = NULL;
        dx_tls *c = NULL, *s = NULL;
        h_rec rc = {0}, rs = {0};
        if (dx_pair_new(NULL, &x, &y) == 0 && dx_tls_new(cctx, DX_TLS_CLIENT, &c) == 0) {
            h_rec_attach(&rc, dx_tls_upper(c));
            int r1 = dx_tls_set_servername(c, "a.example.com");
            int r2 = dx_tls_attach(c, x);
            x = NULL;
            int r3 = dx_tls_server_accept(srv, y, &s);
            y = NULL;
            if (r3 == 0)
                h_rec_attach(&rs, dx_tls_upper(s));
            if (r1 == 0 && r2 == 0 && r3 == 0 && dx_tls_start(c) == 0 &&
                dx_stream_write(dx_tls_upper(c), "ping", 4) >= 0)
                succeeded = rs.received == 4 && !rc.errors && !rs.errors;
            ck_assert_uint_le(rc.errors, 1);
            ck_assert_uint_le(rs.errors, 1);
        }
        h_alloc_fail_from(-1);
        dx_tls_destroy(c);
        dx_tls_destroy(s);
        dx_stream_destroy(x);
        dx_stream_destroy(y);
        h_rec_assert_clean(&rc);
        h_rec_assert_clean(&rs);
        h_rec_free(&rc);
        h_rec_free(&rs);
        ck_assert_msg(h_alloc_live() == live0, "n=%ld: %zu bytes leaked", n,
                      h_alloc_live() - live0);
    }
    ck_assert(succeeded);
    ck_assert_uint_ge(l.snis, 1);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(a);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* ---- ALPN ------------------------------------------------------------------ */

/* S-01, CL-09, M-21, RFC 7301: the server's first choice among what the
 * client offers; nothing in common is fatal; no offer, no protocol. */
START_TEST(alpn_agreement_and_refusal)
{
    const char *v = versions[_i / 4];
    int mode = _i % 4;
    static const char *const server_list[] = {"h2", "http/1.1", NULL};
    static const char *const client_lists[][4] = {
        {"http/1.1", "h2", NULL},  /* both: the server's order wins */
        {"http/1.1", NULL},        /* one in common */
        {"spdy/3", "imap", NULL},  /* nothing in common */
        {NULL},                    /* the client offers nothing */
    };
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, v), *cctx = ctx_for(-1, v);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_set_alpn_protocols(srv, server_list), 0);
    srv_log l = {0};
    ck_assert_int_eq(dx_tls_server_set_events(srv, &srv_events, &l), 0);
    conn k;
    connect_to(&k, srv, cctx, "default.test", mode == 3 ? NULL : client_lists[mode]);
    if (mode == 2) {
        ck_assert_uint_eq(k.c_secure, 0);
        ck_assert_str_eq(k.rc.error_name, "ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL");
        ck_assert_uint_eq(l.client_errors, 1);
    } else {
        ck_assert_uint_eq(k.c_secure, 1);
        ck_assert_uint_eq(l.secure, 1);
        const char *want = mode == 0 ? "h2" : mode == 1 ? "http/1.1" : NULL;
        if (want) {
            ck_assert_str_eq(dx_tls_alpn_protocol(k.c), want);
            ck_assert_str_eq(dx_tls_alpn_protocol(k.s), want);
        } else {
            ck_assert_ptr_null(dx_tls_alpn_protocol(k.c));
            ck_assert_ptr_null(dx_tls_alpn_protocol(k.s));
        }
    }
    conn_close(&k);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST

START_TEST(alpn_lists_are_checked)
{
    dx_tls_ctx *cctx = ctx_for(-1, NULL);
    dx_tls *c;
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &c), 0);
    char long_name[300];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    const char *const too_long[] = {"h2", long_name, NULL};
    const char *const empty_name[] = {"", NULL};
    const char *const empty[] = {NULL};
    ck_assert_int_eq(dx_tls_set_alpn_protocols(c, too_long), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_alpn_protocols(c, empty_name), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_alpn_protocols(c, empty), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_alpn_protocols(c, NULL), DX_EINVAL);
    ck_assert_ptr_null(dx_tls_alpn_protocol(c));
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(cctx, &srv), 0);
    ck_assert_int_eq(dx_tls_server_set_alpn_protocols(srv, too_long), DX_EINVAL);
    ck_assert_int_eq(dx_tls_server_add_context(srv, "", cctx), DX_EINVAL);
    dx_tls_server *none;
    ck_assert_int_eq(dx_tls_server_new(NULL, &none), DX_EINVAL);
    ck_assert_ptr_null(none);
    dx_tls_server_free(srv);
    dx_tls_destroy(c);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* ---- server events ---------------------------------------------------------- */

/* A server has its contexts (the default and those for SNI) format key log
 * lines only while it has on_keylog: the relay every accepted connection
 * carries does not ask by itself. */
START_TEST(server_keylog_only_when_asked)
{
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, "TLSv1.3"), *actx = ctx_for(C_A, "TLSv1.3");
    dx_tls_ctx *cctx = ctx_for(-1, "TLSv1.3");
    SSL_CTX *dssl = dx_tls_ctx_openssl(dflt), *assl = dx_tls_ctx_openssl(actx);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_add_context(srv, "a.example.com", actx), 0);
    srv_log l = {0};
    dx_tls_server_events quiet = srv_events;
    quiet.on_keylog = NULL;
    ck_assert_int_eq(dx_tls_server_set_events(srv, &quiet, &l), 0);
    conn k;
    connect_to(&k, srv, cctx, "a.example.com", NULL);
    ck_assert_uint_eq(l.secure, 1);
    ck_assert_ptr_null(SSL_CTX_get_keylog_callback(dssl));
    ck_assert_ptr_null(SSL_CTX_get_keylog_callback(assl));
    conn_close(&k);
    ck_assert_int_eq(dx_tls_server_set_events(srv, &srv_events, &l), 0);
    ck_assert_ptr_nonnull(SSL_CTX_get_keylog_callback(dssl));
    ck_assert_ptr_nonnull(SSL_CTX_get_keylog_callback(assl));
    connect_to(&k, srv, cctx, "a.example.com", NULL);
    ck_assert_uint_eq(l.secure, 2);
    ck_assert_uint_eq(l.keylogs, 5);
    ck_assert_str_eq(served_cn(&k), "a");
    conn_close(&k);
    /* a context chosen later by the application's SNI callback */
    dx_tls_ctx *nctx = ctx_for(C_NEW, "TLSv1.3");
    SSL_CTX *nssl = dx_tls_ctx_openssl(nctx);
    l.sni_mode = 1;
    l.sni_ctx = nctx;
    dx_tls_server_events with_sni = srv_events;
    with_sni.on_sni = ev_sni;
    ck_assert_int_eq(dx_tls_server_set_events(srv, &with_sni, &l), 0);
    ck_assert_ptr_null(SSL_CTX_get_keylog_callback(nssl));
    connect_to(&k, srv, cctx, "default.test", NULL);
    ck_assert_uint_eq(l.secure, 3);
    ck_assert_str_eq(served_cn(&k), "new");
    ck_assert_ptr_nonnull(SSL_CTX_get_keylog_callback(nssl));
    ck_assert_uint_eq(l.keylogs, 10);
    conn_close(&k);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(actx);
    dx_tls_ctx_unref(nctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* SV-02, SV-06, SV-07, SV-11: events and the count of open connections;
 * junk instead of a ClientHello is a client error. */
START_TEST(server_events_and_connection_count)
{
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, "TLSv1.3"), *cctx = ctx_for(-1, "TLSv1.3");
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    srv_log l = {0};
    ck_assert_int_eq(dx_tls_server_set_events(srv, &srv_events, &l), 0);
    conn k[3];
    for (int i = 0; i < 3; i++)
        connect_to(&k[i], srv, cctx, "default.test", NULL);
    ck_assert_uint_eq(l.secure, 3);
    ck_assert_uint_eq(l.keylogs, 15);
    ck_assert_uint_eq(dx_tls_server_connections(srv), 3);
    conn_close(&k[0]);
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(k[1].c)), 0); /* a clean close */
    ck_assert_uint_eq(dx_tls_server_connections(srv), 1);
    /* junk */
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    dx_tls *s;
    ck_assert_int_eq(dx_tls_server_accept(srv, b, &s), 0);
    ck_assert_uint_eq(dx_tls_server_connections(srv), 2);
    dx_stream_write(a, "GET / HTTP/1.0\r\n\r\n", 18);
    ck_assert_uint_eq(l.client_errors, 1);
    ck_assert_str_eq(l.error_name, "ERR_SSL_HTTP_REQUEST");
    ck_assert_uint_eq(dx_tls_server_connections(srv), 1);
    dx_tls_destroy(s);
    dx_stream_destroy(a);
    conn_close(&k[1]);
    conn_close(&k[2]);
    ck_assert_uint_eq(dx_tls_server_connections(srv), 0);
    ck_assert_int_eq(dx_tls_server_accept(srv, NULL, &s), DX_EINVAL);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST


/* ---- tickets ------------------------------------------------------------ */

/* Connects, waits for the session (TLS 1.3 tickets come with data), and
 * keeps it in *sess. Returns whether the handshake resumed. */
static bool one_connection(dx_tls_server *srv, dx_tls_ctx *cctx, const uint8_t *offer,
                           size_t offer_len, uint8_t *sess, size_t *sess_len)
{
    conn k;
    connect_resume(&k, srv, cctx, "default.test", NULL, offer, offer_len);
    ck_assert_uint_eq(k.c_secure, 1);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.s), "x", 1), 0);
    bool reused = dx_tls_session_reused(k.c);
    ck_assert_int_eq(dx_tls_session_reused(k.s), reused);
    if (sess && k.session_len) {
        memcpy(sess, k.session, k.session_len);
        *sess_len = k.session_len;
    } else if (sess) { /* a TLS 1.2 resumption brings no new session event */
        ck_assert_int_eq(dx_tls_get_session(k.c, sess, 8192, sess_len), 0);
    }
    conn_end(&k);
    conn_close(&k);
    return reused;
}

/* K-07, SV-12, SV-15, 3.10: servers that share ticket keys resume each
 * other's sessions; others fall back to a full handshake, counted. */
START_TEST(shared_ticket_keys_resume_across_servers)
{
    const char *v = versions[_i];
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, v), *cctx = ctx_for(-1, v);
    dx_tls_server *s1, *s2, *s3;
    ck_assert_int_eq(dx_tls_server_new(dflt, &s1), 0);
    ck_assert_int_eq(dx_tls_server_new(dflt, &s2), 0);
    ck_assert_int_eq(dx_tls_server_new(dflt, &s3), 0);
    uint8_t keys[48], back[48];
    ck_assert_int_eq(dx_tls_server_get_ticket_keys(s1, keys), 0);
    ck_assert_int_eq(dx_tls_server_set_ticket_keys(s2, keys), 0);
    ck_assert_int_eq(dx_tls_server_get_ticket_keys(s2, back), 0);
    ck_assert_mem_eq(keys, back, 48);
    uint8_t sess[8192];
    size_t len;
    ck_assert(!one_connection(s1, cctx, NULL, 0, sess, &len));
    ck_assert(one_connection(s2, cctx, sess, len, NULL, NULL));
    ck_assert(!one_connection(s3, cctx, sess, len, NULL, NULL));
    dx_tls_server_stats st;
    dx_tls_server_get_stats(s2, &st);
    ck_assert_uint_eq(st.resumed, 1);
    ck_assert_uint_eq(st.handshakes, 1);
    dx_tls_server_get_stats(s3, &st);
    ck_assert_uint_eq(st.resumed, 0);
    ck_assert_uint_eq(st.resume_failures, 1);
    ck_assert_uint_eq(st.tickets_unknown, 1);
    dx_tls_server_free(s1);
    dx_tls_server_free(s2);
    dx_tls_server_free(s3);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* Rotation: a ticket under the previous keys still resumes (and comes
 * back renewed); one from two rotations back does not. */
START_TEST(ticket_key_rotation_keeps_one_previous_set)
{
    const char *v = versions[_i];
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, v), *cctx = ctx_for(-1, v);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    uint8_t k2[48], k3[48];
    memset(k2, 2, sizeof(k2));
    memset(k3, 3, sizeof(k3));
    uint8_t old[8192], renewed[8192];
    size_t old_len, renewed_len;
    ck_assert(!one_connection(srv, cctx, NULL, 0, old, &old_len));
    ck_assert_int_eq(dx_tls_server_set_ticket_keys(srv, k2), 0);
    ck_assert(one_connection(srv, cctx, old, old_len, renewed, &renewed_len));
    dx_tls_server_stats st;
    dx_tls_server_get_stats(srv, &st);
    ck_assert_uint_eq(st.tickets_renewed, 1);
    ck_assert_int_eq(dx_tls_server_set_ticket_keys(srv, k3), 0);
    ck_assert(!one_connection(srv, cctx, old, old_len, NULL, NULL));
    ck_assert(one_connection(srv, cctx, renewed, renewed_len, NULL, NULL));
    dx_tls_server_get_stats(srv, &st);
    ck_assert_uint_eq(st.resume_failures, 1);
    ck_assert_uint_eq(st.resumed, 2);
    ck_assert_int_eq(dx_tls_server_set_ticket_keys(NULL, k3), DX_EINVAL);
    ck_assert_int_eq(dx_tls_server_get_ticket_keys(srv, NULL), DX_EINVAL);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* C-20: tickets off: no ticket is issued (TLS 1.2), and the session still
 * resumes from the server's session cache. */
START_TEST(tickets_can_be_turned_off)
{
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, "TLSv1.2"), *cctx = ctx_for(-1, "TLSv1.2");
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_set_tickets(srv, false), 0);
    conn k;
    connect_to(&k, srv, cctx, "default.test", NULL);
    ck_assert_uint_eq(k.c_secure, 1);
    uint8_t buf[4096];
    size_t n;
    ck_assert_int_eq(dx_tls_get_ticket(k.c, buf, sizeof(buf), &n), DX_ENOTSUP);
    uint8_t sess[8192];
    size_t len = k.session_len;
    memcpy(sess, k.session, len);
    conn_end(&k);
    conn_close(&k);
    ck_assert(one_connection(srv, cctx, sess, len, NULL, NULL));
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* ---- sessions by id ------------------------------------------------------- */

/* K-06, K-09: with tickets off, sessions resume from the server's own
 * cache, bounded (LRU) and expiring after the session timeout; counted. */
START_TEST(builtin_cache_resumes_evicts_and_expires)
{
    const char *v = versions[_i];
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, v), *cctx = ctx_for(-1, v);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_set_tickets(srv, false), 0);
    ck_assert_int_eq(dx_tls_server_set_session_cache_size(srv, 2), 0);
    h_fake_now = 1000000;
    ck_assert_int_eq(dx_tls_server_set_clock(srv, h_fake_clock, NULL), 0);
    uint8_t s1[8192], s2[8192], s3[8192];
    size_t l1, l2, l3;
    ck_assert(!one_connection(srv, cctx, NULL, 0, s1, &l1));
    ck_assert(one_connection(srv, cctx, s1, l1, NULL, NULL));
    dx_tls_server_stats st;
    dx_tls_server_get_stats(srv, &st);
    ck_assert_uint_eq(st.cache_hits, 1);
    /* two more sessions: the least recently used (s1) goes */
    ck_assert(!one_connection(srv, cctx, NULL, 0, s2, &l2));
    ck_assert(!one_connection(srv, cctx, NULL, 0, s3, &l3));
    dx_tls_server_get_stats(srv, &st);
    ck_assert_uint_ge(st.cache_evictions, 1);
    ck_assert_uint_le(st.cache_entries, 2);
    ck_assert(one_connection(srv, cctx, s3, l3, s3, &l3));
    ck_assert(!one_connection(srv, cctx, s1, l1, NULL, NULL));
    /* past the session timeout (300 s) nothing resumes */
    ck_assert(!one_connection(srv, cctx, NULL, 0, s3, &l3));
    h_fake_now += 301 * 1000;
    ck_assert(!one_connection(srv, cctx, s3, l3, NULL, NULL));
    dx_tls_server_get_stats(srv, &st);
    ck_assert_uint_ge(st.cache_misses, 2);
    ck_assert_uint_ge(st.resume_failures, 2);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* An external store (Node's newSession/resumeSession). */
typedef struct ext_store {
    uint8_t id[32], der[8192], asked[32];
    size_t id_len, len, asked_len;
    unsigned puts, gets, dels;
    dx_tls_pending *p;
    int mode; /* 0 answer at once, 1 keep for later */
} ext_store;

static void ext_put(void *arg, const uint8_t *id, size_t id_len, const uint8_t *der,
                    size_t len, uint64_t expires)
{
    ext_store *x = arg;
    ck_assert_uint_le(id_len, sizeof(x->id));
    ck_assert_uint_le(len, sizeof(x->der));
    ck_assert_uint_gt(expires, 0);
    memcpy(x->id, id, id_len);
    x->id_len = id_len;
    memcpy(x->der, der, len);
    x->len = len;
    x->puts++;
}

static void ext_get(void *arg, const uint8_t *id, size_t id_len, dx_tls_pending *p)
{
    ext_store *x = arg;
    x->gets++;
    ck_assert_uint_le(id_len, sizeof(x->asked));
    memcpy(x->asked, id, id_len);
    x->asked_len = id_len;
    bool have = id_len == x->id_len && memcmp(id, x->id, id_len) == 0;
    if (x->mode == 1)
        x->p = p;
    else
        dx_tls_session_found(p, have ? x->der : NULL, have ? x->len : 0);
}

static void ext_del(void *arg, const uint8_t *id, size_t id_len)
{
    ext_store *x = arg;
    ck_assert_uint_eq(id_len, x->asked_len); /* the id looked up */
    ck_assert_mem_eq(id, x->asked, id_len);
    x->dels++;
}

static const dx_tls_session_store ext_ops = {.put = ext_put, .get = ext_get, .del = ext_del};

/* SV-03, SV-05, 3.10: new sessions go to the store; lookups answered at
 * once or later (the handshake waits) resume; an answer of nothing or of
 * garbage is a full handshake, and garbage goes to the store's del. */
START_TEST(external_store_answers_now_or_later)
{
    const char *v = versions[_i / 2];
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, v), *cctx = ctx_for(-1, v);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_set_tickets(srv, false), 0);
    ext_store x = {.mode = _i % 2};
    ck_assert_int_eq(dx_tls_server_set_session_store(srv, &ext_ops, &x), 0);
    uint8_t s1[8192];
    size_t l1;
    ck_assert(!one_connection(srv, cctx, NULL, 0, s1, &l1));
    ck_assert_uint_ge(x.puts, 1);
    conn k;
    connect_resume(&k, srv, cctx, "default.test", NULL, s1, l1);
    ck_assert_uint_eq(x.gets, 1);
    if (x.mode == 1) {
        ck_assert_uint_eq(k.c_secure, 0); /* waiting for the store */
        ck_assert_int_eq(dx_tls_session_found(x.p, x.der, x.len), 0);
    }
    ck_assert_uint_eq(k.c_secure, 1);
    ck_assert(dx_tls_session_reused(k.s));
    conn_end(&k);
    conn_close(&k);
    /* garbage from the store: a full handshake */
    x.mode = 1;
    connect_resume(&k, srv, cctx, "default.test", NULL, s1, l1);
    ck_assert_uint_eq(x.dels, 0);
    ck_assert_int_eq(dx_tls_session_found(x.p, "garbage", 7), 0);
    ck_assert_uint_eq(x.dels, 1); /* the store is told to forget it */
    ck_assert_uint_eq(k.c_secure, 1);
    ck_assert(!dx_tls_session_reused(k.s));
    conn_close(&k);
    /* an answer after the connection went */
    connect_resume(&k, srv, cctx, "default.test", NULL, s1, l1);
    conn_close(&k);
    ck_assert_int_eq(dx_tls_session_found(x.p, NULL, 0), 0);
    ck_assert_int_eq(dx_tls_session_found(NULL, NULL, 0), DX_EINVAL);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* A server that verifies clients resumes their sessions too (a session id
 * context is set by default), by ticket and by id. */
START_TEST(resumption_with_client_certificates)
{
    const char *v = versions[_i / 2];
    bool tickets = _i % 2;
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, v), *cctx = ctx_for(C_A, v); /* the client has a cert */
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_set_request_cert(srv, true, true), 0);
    ck_assert_int_eq(dx_tls_server_set_tickets(srv, tickets), 0);
    uint8_t s1[8192];
    size_t l1;
    ck_assert(!one_connection(srv, cctx, NULL, 0, s1, &l1));
    ck_assert(one_connection(srv, cctx, s1, l1, NULL, NULL));
    dx_tls_server_stats st;
    dx_tls_server_get_stats(srv, &st);
    ck_assert_uint_eq(st.resumed, 1);
    /* setting the keys already held rotates nothing */
    uint8_t keys[48];
    ck_assert_int_eq(dx_tls_server_get_ticket_keys(srv, keys), 0);
    ck_assert_int_eq(dx_tls_server_set_ticket_keys(srv, keys), 0);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* S-13, S-04: the server's half-open and handshake-timeout defaults reach
 * the connections it accepts. */
START_TEST(server_defaults_reach_accepted_connections)
{
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, NULL), *cctx = ctx_for(-1, NULL);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_set_allow_half_open(srv, true), 0);
    h_fake_now = 5000;
    ck_assert_int_eq(dx_tls_server_set_clock(srv, h_fake_clock, NULL), 0);
    ck_assert_int_eq(dx_tls_server_set_handshake_timeout(srv, 40), 0);
    conn k;
    connect_to(&k, srv, cctx, "default.test", NULL);
    ck_assert_uint_eq(k.c_secure, 1);
    /* half-open: after the client's end the server still writes */
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(k.c)), 0);
    ck_assert_uint_eq(k.rs.ends, 1);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.s), "late", 4), 0);
    ck_assert_uint_eq(k.rc.received, 4);
    conn_close(&k);
    /* a server connection whose client never speaks times out at 40 ms */
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    dx_tls *s;
    ck_assert_int_eq(dx_tls_server_accept(srv, b, &s), 0);
    ck_assert_uint_eq(dx_tls_deadline(s), 5040);
    srv_log l = {0};
    ck_assert_int_eq(dx_tls_server_set_events(srv, &srv_events, &l), 0);
    h_fake_now = 5040;
    dx_tls_check_timeouts(s);
    ck_assert_uint_eq(l.client_errors, 1);
    ck_assert_str_eq(l.error_name, "ERR_TLS_HANDSHAKE_TIMEOUT");
    ck_assert_int_eq(dx_tls_server_set_allow_half_open(NULL, true), DX_EINVAL);
    ck_assert_int_eq(dx_tls_server_set_handshake_timeout(NULL, 1), DX_EINVAL);
    dx_tls_destroy(s);
    dx_stream_destroy(a);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* ---- ALPN chosen by the application ------------------------------------------ */

typedef struct alpn_pick {
    unsigned calls;
    char seen[128];
    char servername[64];
    int answer; /* the index to return */
} alpn_pick;

static int pick_alpn(dx_tls *t, const char *const *protocols, size_t count, void *u)
{
    alpn_pick *a = u;
    a->calls++;
    a->seen[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        strcat(a->seen, protocols[i]);
        strcat(a->seen, i + 1 < count ? "," : "");
    }
    snprintf(a->servername, sizeof(a->servername), "%s",
             dx_tls_servername(t) ? dx_tls_servername(t) : "");
    return a->answer;
}

/* Node's ALPNCallback, on the server and on a standalone connection: it
 * sees the client's list and the name, its index is the protocol, -1
 * fails with no_application_protocol; it and a list exclude each other.
 * i: bit 0 version, bit 1 refuse. */
START_TEST(alpn_callback_chooses_the_protocol)
{
    const char *v = versions[_i & 1];
    bool refuse = _i & 2;
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, v), *cctx = ctx_for(-1, v);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    alpn_pick a = {.answer = refuse ? -1 : 1};
    ck_assert_int_eq(dx_tls_server_set_alpn_callback(srv, pick_alpn, &a), 0);
    static const char *const list[] = {"h2", NULL};
    ck_assert_int_eq(dx_tls_server_set_alpn_protocols(srv, list), DX_EINVAL);
    srv_log l = {0};
    ck_assert_int_eq(dx_tls_server_set_events(srv, &srv_events, &l), 0);
    static const char *const offer[] = {"spdy/3", "imap", "h2", NULL};
    conn k;
    connect_to(&k, srv, cctx, "default.test", offer);
    ck_assert_uint_eq(a.calls, 1);
    ck_assert_str_eq(a.seen, "spdy/3,imap,h2");
    ck_assert_str_eq(a.servername, "default.test");
    if (refuse) {
        ck_assert_uint_eq(k.c_secure, 0);
        ck_assert_str_eq(k.rc.error_name, "ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL");
        ck_assert_uint_eq(l.client_errors, 1);
    } else {
        ck_assert_str_eq(dx_tls_alpn_protocol(k.c), "imap");
        ck_assert_str_eq(dx_tls_alpn_protocol(k.s), "imap");
    }
    conn_close(&k);
    /* A client that offers nothing: no call, no protocol. */
    connect_to(&k, srv, cctx, "default.test", NULL);
    ck_assert_uint_eq(a.calls, 1);
    ck_assert_uint_eq(k.c_secure, 1);
    ck_assert_ptr_null(dx_tls_alpn_protocol(k.s));
    conn_close(&k);
    /* On a connection: a list then a callback, and the other way round. */
    dx_tls *t;
    ck_assert_int_eq(dx_tls_new(dflt, DX_TLS_SERVER, &t), 0);
    ck_assert_int_eq(dx_tls_set_alpn_protocols(t, list), 0);
    ck_assert_int_eq(dx_tls_set_alpn_callback(t, pick_alpn, &a), DX_EINVAL);
    dx_tls_destroy(t);
    ck_assert_int_eq(dx_tls_new(dflt, DX_TLS_SERVER, &t), 0);
    ck_assert_int_eq(dx_tls_set_alpn_callback(t, pick_alpn, &a), 0);
    ck_assert_int_eq(dx_tls_set_alpn_protocols(t, list), DX_EINVAL);
    dx_tls_destroy(t);
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &t), 0);
    ck_assert_int_eq(dx_tls_set_alpn_callback(t, pick_alpn, &a), DX_EINVAL);
    dx_tls_destroy(t);
    ck_assert_int_eq(dx_tls_server_set_alpn_callback(srv, NULL, NULL), 0);
    ck_assert_int_eq(dx_tls_server_set_alpn_protocols(srv, list), 0);
    ck_assert_int_eq(dx_tls_server_set_alpn_callback(srv, pick_alpn, &a), DX_EINVAL);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* ---- client certificates per SNI context ------------------------------------------ */

static dx_tls_ctx *ctx_requesting(int cert, const char *version)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *capem = dx_pki_cert_pem(ca);
    ck_assert_int_eq(dx_tls_config_add_ca(cfg, capem, strlen(capem)), 0);
    const char *c = dx_pki_cert_pem(certs[cert]), *k = dx_pki_key_pem(certs[cert]);
    ck_assert_int_eq(dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL), 0);
    ck_assert_int_eq(dx_tls_config_set_min_version(cfg, version), 0);
    ck_assert_int_eq(dx_tls_config_set_max_version(cfg, version), 0);
    ck_assert_int_eq(dx_tls_config_set_request_cert(cfg, true, true), 0);
    ck_assert_int_eq(dx_tls_config_set_request_cert(NULL, true, true), DX_EINVAL);
    dx_tls_ctx *ctx;
    ck_assert_int_eq(dx_tls_ctx_new(cfg, &ctx, NULL), 0);
    dx_tls_config_free(cfg);
    return ctx;
}

static void sni_strict_name(dx_tls_server *srv, dx_tls *t, const char *name, dx_tls_pending *p,
                            void *u)
{
    (void)srv, (void)t;
    srv_log *l = u;
    l->snis++;
    dx_tls_sni_done(p, strcmp(name, "a.example.com") ? NULL : l->sni_ctx);
}

/* One name requires client certificates, the others do not: the context
 * SNI chooses (from the table, or by on_sni later) decides. i: bit 0
 * version, bit 1 on_sni. */
START_TEST(client_certificate_required_per_sni_context)
{
    const char *v = versions[_i & 1];
    bool by_callback = _i & 2;
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, v), *a = ctx_requesting(C_A, v);
    dx_tls_ctx *anon = ctx_for(-1, v), *withcert = ctx_for(C_NEW, v);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_add_context(srv, "a.example.com", a), 0);
    srv_log l = {.sni_ctx = a};
    if (by_callback) {
        dx_tls_server_events ev = srv_events;
        ev.on_sni = sni_strict_name;
        ck_assert_int_eq(dx_tls_server_set_events(srv, &ev, &l), 0);
    }
    conn k;
    /* the default name: no certificate asked for */
    connect_to(&k, srv, anon, "default.test", NULL);
    ck_assert_uint_eq(k.c_secure, 1);
    ck_assert_uint_eq(k.rs.errors, 0);
    ck_assert(!dx_tls_authorized(k.s));
    ck_assert_ptr_null(dx_tls_peer_cert(k.s));
    conn_close(&k);
    /* the strict name, with a certificate: verified */
    connect_to(&k, srv, withcert, "a.example.com", NULL);
    ck_assert_uint_eq(k.c_secure, 1);
    ck_assert_str_eq(served_cn(&k), "a");
    ck_assert(dx_tls_authorized(k.s));
    ck_assert_str_eq(dx_tls_name_get(dx_tls_cert_subject(dx_tls_peer_cert(k.s)), "CN", 0),
                     "new");
    conn_close(&k);
    /* the strict name, without: refused */
    connect_to(&k, srv, anon, "a.example.com", NULL);
    ck_assert_uint_eq(k.rs.errors, 1);
    ck_assert_uint_eq(k.rc.errors, 1);
    if (!strcmp(v, "TLSv1.3"))
        ck_assert_str_eq(k.rc.error_name, "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED");
    conn_close(&k);
    /* a server-wide setting is the default; the context SNI chose, which
     * sets its own, still decides */
    ck_assert_int_eq(dx_tls_server_set_request_cert(srv, true, false), 0);
    connect_to(&k, srv, anon, "default.test", NULL);
    ck_assert_uint_eq(k.c_secure, 1);
    ck_assert_uint_eq(k.rs.errors, 0);
    ck_assert_str_eq(dx_tls_authorization_error(k.s), "UNABLE_TO_GET_ISSUER_CERT");
    conn_close(&k);
    connect_to(&k, srv, anon, "a.example.com", NULL);
    ck_assert_uint_eq(k.rs.errors, 1);
    conn_close(&k);
    ck_assert_uint_eq(l.snis, by_callback ? 5u : 0u);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(a);
    dx_tls_ctx_unref(anon);
    dx_tls_ctx_unref(withcert);
}
END_TEST

/* Copies the client's session, then ends and closes the connection
 * cleanly (so that the server keeps the session). */
static size_t keep_and_close(conn *k, uint8_t out[8192])
{
    ck_assert_uint_gt(k->session_len, 0);
    size_t n = k->session_len;
    memcpy(out, k->session, n);
    conn_end(k);
    conn_close(k);
    return n;
}

/* A session made where clients are not checked, or checked more loosely,
 * resumes nothing where they are: a client without a certificate that
 * resumes its session under a name that requires one gets a full
 * handshake and is refused; sessions made under that name resume there.
 * i: bit 0 version, bit 1 tickets off. The same between a server that lets
 * unverified clients through and one that refuses them. */
START_TEST(resumption_cannot_skip_a_client_check)
{
    const char *v = versions[_i & 1];
    bool tickets = !(_i & 2);
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, v), *a = ctx_requesting(C_A, v);
    dx_tls_ctx *anon = ctx_for(-1, v), *withcert = ctx_for(C_NEW, v);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_add_context(srv, "a.example.com", a), 0);
    ck_assert_int_eq(dx_tls_server_set_tickets(srv, tickets), 0);
    conn k;
    uint8_t sess[8192];
    size_t sess_len;
    /* a session under the open name, without a certificate */
    connect_to(&k, srv, anon, "default.test", NULL);
    ck_assert_uint_eq(k.c_secure, 1);
    sess_len = keep_and_close(&k, sess);
    /* it resumes under the open name ... */
    connect_resume(&k, srv, anon, "default.test", NULL, sess, sess_len);
    ck_assert(dx_tls_session_reused(k.s));
    conn_end(&k);
    conn_close(&k);
    /* ... not under the strict one: a full handshake, which refuses */
    connect_resume(&k, srv, anon, "a.example.com", NULL, sess, sess_len);
    ck_assert_uint_eq(k.rs.errors, 1);
    ck_assert(!dx_tls_is_secure(k.s));
    conn_close(&k);
    /* a session made under the strict name, with a certificate, resumes
     * there, and the client counts as verified */
    connect_to(&k, srv, withcert, "a.example.com", NULL);
    ck_assert(dx_tls_authorized(k.s));
    sess_len = keep_and_close(&k, sess);
    connect_resume(&k, srv, withcert, "a.example.com", NULL, sess, sess_len);
    ck_assert(dx_tls_session_reused(k.s));
    ck_assert(dx_tls_authorized(k.s));
    ck_assert_str_eq(dx_tls_name_get(dx_tls_cert_subject(dx_tls_peer_cert(k.s)), "CN", 0), "new");
    conn_end(&k);
    conn_close(&k);
    /* a lenient server (request, let unverified clients through) and a
     * strict one on the same context: the lenient one's sessions do not
     * resume on the strict one */
    dx_tls_server *lax, *strict;
    ck_assert_int_eq(dx_tls_server_new(dflt, &lax), 0);
    ck_assert_int_eq(dx_tls_server_new(dflt, &strict), 0);
    ck_assert_int_eq(dx_tls_server_set_request_cert(lax, true, false), 0);
    ck_assert_int_eq(dx_tls_server_set_request_cert(strict, true, true), 0);
    uint8_t keys[48];
    ck_assert_int_eq(dx_tls_server_get_ticket_keys(lax, keys), 0);
    ck_assert_int_eq(dx_tls_server_set_ticket_keys(strict, keys), 0);
    ck_assert_int_eq(dx_tls_server_set_tickets(lax, true), 0);
    ck_assert_int_eq(dx_tls_server_set_tickets(strict, true), 0);
    connect_to(&k, lax, anon, "default.test", NULL);
    ck_assert_uint_eq(k.c_secure, 1);
    ck_assert(!dx_tls_authorized(k.s));
    sess_len = keep_and_close(&k, sess);
    connect_resume(&k, lax, anon, "default.test", NULL, sess, sess_len);
    ck_assert(dx_tls_session_reused(k.s));
    ck_assert(!dx_tls_authorized(k.s));
    conn_end(&k);
    conn_close(&k);
    connect_resume(&k, strict, anon, "default.test", NULL, sess, sess_len);
    ck_assert_uint_eq(k.rs.errors, 1);
    conn_close(&k);
    dx_tls_server_free(lax);
    dx_tls_server_free(strict);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(a);
    dx_tls_ctx_unref(anon);
    dx_tls_ctx_unref(withcert);
}
END_TEST

/* The server's settings for truncation, record buffers and client
 * renegotiation reach the connections it accepts. */
static void on_reneg(dx_tls *t, const dx_error *err, void *u)
{
    (void)t;
    char *name = u;
    snprintf(name, 64, "%s", err ? dx_error_name(err) : "ok");
}

START_TEST(server_connection_policies_reach_accepted_connections)
{
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, "TLSv1.2"), *cctx = ctx_for(-1, "TLSv1.2");
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    conn k;
    char reneg[64] = "";
    /* defaults: a client renegotiation is refused; buffers kept */
    connect_to(&k, srv, cctx, "default.test", NULL);
    ck_assert(!(SSL_get_mode(dx_tls_openssl(k.s)) & SSL_MODE_RELEASE_BUFFERS));
    ck_assert_int_eq(dx_tls_renegotiate(k.c, NULL, on_reneg, reneg), 0);
    ck_assert_str_eq(reneg, "ERR_SSL_NO_RENEGOTIATION");
    conn_close(&k);
    ck_assert_int_eq(dx_tls_server_set_allow_truncation(srv, true), 0);
    ck_assert_int_eq(dx_tls_server_set_release_buffers(srv, true), 0);
    ck_assert_int_eq(dx_tls_server_set_client_renegotiation(srv, true, 1, 60000), 0);
    ck_assert_int_eq(dx_tls_server_set_client_renegotiation(srv, true, 1001, 1), DX_EINVAL);
    connect_to(&k, srv, cctx, "default.test", NULL);
    ck_assert(SSL_get_mode(dx_tls_openssl(k.s)) & SSL_MODE_RELEASE_BUFFERS);
    ck_assert_int_eq(dx_tls_renegotiate(k.c, NULL, on_reneg, reneg), 0);
    ck_assert_str_eq(reneg, "ok");
    ck_assert_int_eq(dx_tls_renegotiate(k.c, NULL, on_reneg, reneg), 0);
    ck_assert_str_ne(reneg, "ok"); /* the server went */
    ck_assert_str_eq(k.rs.error_name, "ERR_TLS_SESSION_ATTACK");
    conn_close(&k);
    /* truncation allowed: the transport's end is an end */
    connect_to(&k, srv, cctx, "default.test", NULL);
    dx_tls *c = k.c;
    k.c = NULL;
    dx_tls_destroy(c); /* the client's transport goes without close_notify */
    ck_assert_uint_eq(k.rs.ends, 1);
    ck_assert_uint_eq(k.rs.errors, 0);
    ck_assert(!dx_tls_clean_end(k.s));
    conn_close(&k);
    ck_assert_int_eq(dx_tls_server_set_allow_truncation(NULL, true), DX_EINVAL);
    ck_assert_int_eq(dx_tls_server_set_release_buffers(NULL, true), DX_EINVAL);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* ---- real peers: openssl s_client and s_server ----------------------------- */

typedef struct echo {
    dx_tls *t;
    char got[256];
    size_t len;
} echo;

/* The server side of the tests: echoes each line in upper case. */
static void echo_data(dx_stream *s, const uint8_t *d, size_t n, void *u)
{
    echo *e = u;
    char up[256];
    size_t k = n < sizeof(up) ? n : sizeof(up);
    for (size_t i = 0; i < k; i++)
        up[i] = (char)toupper(d[i]);
    if (e->len + k < sizeof(e->got)) {
        memcpy(e->got + e->len, d, k);
        e->len += k;
    }
    dx_stream_write(s, up, k);
}

/* Our server on a loopback socket, taking every connection a peer makes. */
enum { MAX_CONNS = 16 };
typedef struct tcp_server {
    int listener;
    unsigned port;
    dx_tls_server *srv;
    dx_tls *t[MAX_CONNS];
    dx_stream *sock[MAX_CONNS];
    echo e[MAX_CONNS];
    size_t n;
} tcp_server;

static void tcp_server_open(tcp_server *ts, dx_tls_server *srv)
{
    *ts = (tcp_server){.srv = srv};
    ts->listener = h_listen_loopback(&ts->port);
}

/* Accepts what came, then serves for up to ms. */
static void tcp_server_step(tcp_server *ts, int ms)
{
    int fd;
    while (ts->n < MAX_CONNS && (fd = h_accept(ts->listener, 0)) >= 0) {
        size_t i = ts->n++;
        ck_assert_int_eq(dx_fd_stream_new(fd, fd, DX_FD_CLOSE, &ts->sock[i]), 0);
        ck_assert_int_eq(dx_tls_server_accept(ts->srv, ts->sock[i], &ts->t[i]), 0);
        ts->e[i].t = ts->t[i];
        dx_stream_events ev = {.on_data = echo_data};
        dx_stream_set_events(dx_tls_upper(ts->t[i]), &ev, &ts->e[i]);
    }
    dx_fd_poll(ts->sock, ts->n, ms);
}

typedef struct serve_until {
    tcp_server *ts;
    h_peer *peer;
    const char *text;
    size_t count; /* how many times text must appear */
} serve_until;

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static bool served(void *arg)
{
    serve_until *u = arg;
    tcp_server_step(u->ts, 10);
    return count_of(h_peer_output(u->peer), u->text) >= u->count;
}

/* Serves until the peer printed text count times, or ms passed. */
static bool serve_until_output(tcp_server *ts, h_peer *peer, const char *text, size_t count,
                               int ms)
{
    serve_until u = {ts, peer, text, count};
    return h_peer_run(peer, NULL, 0, served, &u, ms);
}

static void tcp_server_close(tcp_server *ts)
{
    for (size_t i = 0; i < ts->n; i++)
        dx_tls_destroy(ts->t[i]);
    close(ts->listener);
}

/* S-01, SV-08 with a peer nobody here wrote: openssl s_client asks for a
 * name and protocols over TCP on loopback; the server picks the context
 * and the protocol, and echoes what the client types. */
START_TEST(openssl_s_client_gets_sni_context_and_alpn)
{
    char dir[64];
    h_tmpdir(dir);
    const char *capath = h_tmpfile(dir, "ca.pem", dx_pki_cert_pem(ca), (size_t)-1);
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, NULL), *a = ctx_for(C_A, NULL);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_add_context(srv, "a.example.com", a), 0);
    static const char *const protos[] = {"h2", "http/1.1", NULL};
    ck_assert_int_eq(dx_tls_server_set_alpn_protocols(srv, protos), 0);
    tcp_server ts;
    tcp_server_open(&ts, srv);
    char to[64];
    snprintf(to, sizeof(to), "127.0.0.1:%u", ts.port);
    h_peer peer;
    const char *argv[] = {"openssl", "s_client", "-connect", to, "-servername",
                          "a.example.com", "-alpn", "http/1.1,h2", "-CAfile", capath,
                          "-verify_return_error", "-verify_hostname", "a.example.com", NULL};
    h_peer_start(&peer, argv);
    /* Type a line once the handshake is done; wait for the echo. */
    ck_assert_msg(serve_until_output(&ts, &peer, "Verify return code", 1, 15000), "s_client: %s",
                  h_peer_output(&peer));
    h_peer_write(&peer, "hello from s_client\n");
    ck_assert_msg(serve_until_output(&ts, &peer, "HELLO FROM S_CLIENT", 1, 15000),
                  "s_client said: %s", h_peer_output(&peer));
    const char *output = h_peer_output(&peer);
    ck_assert_ptr_nonnull(strstr(output, "ALPN protocol: h2"));
    ck_assert_ptr_nonnull(strstr(output, "Verify return code: 0 (ok)"));
    ck_assert_uint_eq(ts.n, 1);
    dx_tls *t = ts.t[0];
    ck_assert_str_eq(dx_tls_servername(t), "a.example.com");
    ck_assert_str_eq(dx_tls_alpn_protocol(t), "h2");
    ck_assert_str_eq(dx_tls_name_get(dx_tls_cert_subject(dx_tls_local_cert(t)), "CN", 0), "a");
    ck_assert_uint_eq(ts.e[0].len, 20);
    /* EOF on its input: s_client closes; ours sees the end. */
    h_peer_close_input(&peer);
    int64_t end = h_now_ms() + 5000;
    while (h_now_ms() < end && !(dx_stream_state(dx_tls_upper(t)) & DX_STREAM_ENDED))
        tcp_server_step(&ts, 20);
    ck_assert(dx_stream_state(dx_tls_upper(t)) & DX_STREAM_ENDED);
    ck_assert_int_eq(h_peer_stop(&peer, 5000), 0);
    h_peer_free(&peer);
    tcp_server_close(&ts);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(a);
    h_tmpdir_remove(dir);
}
END_TEST

/* Resumption with a peer nobody here wrote, tickets on or off (i odd):
 * in TLS 1.2 openssl s_client -reconnect connects six times with the
 * session of the first (a ticket, or the session id); in TLS 1.3, where
 * s_client -reconnect leaves before the tickets come, a second s_client
 * resumes from the session the first one saved (-sess_out, -sess_in). */
START_TEST(openssl_s_client_resumes)
{
    const char *v = versions[_i / 2];
    bool tickets = _i % 2 == 0, tls13 = strcmp(v, "TLSv1.3") == 0;
    char dir[64];
    h_tmpdir(dir);
    const char *capath = h_tmpfile(dir, "ca.pem", dx_pki_cert_pem(ca), (size_t)-1);
    char sess[600];
    snprintf(sess, sizeof(sess), "%s/session.pem", dir);
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, v);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_set_tickets(srv, tickets), 0);
    tcp_server ts;
    tcp_server_open(&ts, srv);
    char to[64];
    snprintf(to, sizeof(to), "127.0.0.1:%u", ts.port);
    size_t expect_conns = tls13 ? 2 : 6, expect_resumed = tls13 ? 1 : 5;
    h_peer peer;
    if (!tls13) {
        const char *argv[] = {"openssl", "s_client", "-connect", to, "-reconnect", "-CAfile",
                              capath, "-verify_return_error", NULL};
        h_peer_start(&peer, argv);
        ck_assert_msg(serve_until_output(&ts, &peer, "Reused, TLSv1.2", 5, 20000),
                      "s_client said: %s", h_peer_output(&peer));
        ck_assert_int_eq(h_peer_stop(&peer, 5000), 0);
    } else {
        for (int round = 0; round < 2; round++) {
            const char *argv[] = {"openssl", "s_client", "-connect", to, "-CAfile", capath,
                                  "-verify_return_error", round ? "-sess_in" : "-sess_out",
                                  sess, NULL};
            h_peer_start(&peer, argv);
            h_peer_write(&peer, "line\n");
            ck_assert_msg(serve_until_output(&ts, &peer, "LINE", 1, 15000), "s_client said: %s",
                          h_peer_output(&peer));
            ck_assert_int_eq(h_peer_stop(&peer, 5000), 0);
            ck_assert_ptr_nonnull(strstr(h_peer_output(&peer), round ? "Reused, TLSv1.3"
                                                                     : "New, TLSv1.3"));
            if (!round)
                h_peer_free(&peer);
        }
    }
    h_peer_free(&peer);
    ck_assert_uint_eq(ts.n, expect_conns);
    dx_tls_server_stats st;
    dx_tls_server_get_stats(srv, &st);
    ck_assert_uint_eq(st.accepted, expect_conns);
    ck_assert_uint_eq(st.resumed, expect_resumed);
    ck_assert_uint_eq(st.resume_failures, 0);
    if (!tickets)
        ck_assert_uint_eq(st.cache_hits, expect_resumed);
    else
        ck_assert_uint_eq(st.cache_hits, 0);
    tcp_server_close(&ts);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    h_tmpdir_remove(dir);
}
END_TEST

/* Our client resumes with openssl s_server: the session from on_session,
 * handed to a second connection, is taken. */
typedef struct resume_client {
    uint8_t session[8192];
    size_t session_len;
} resume_client;

static void keep_session(dx_tls *t, const uint8_t *s, size_t n, void *u)
{
    (void)t;
    resume_client *rc = u;
    if (n <= sizeof(rc->session)) {
        memcpy(rc->session, s, n);
        rc->session_len = n;
    }
}

typedef struct client_wait {
    dx_tls *t;
    resume_client *rc;
    h_peer *peer;
    const char *ping;
} client_wait;

static bool got_session_and_echo(void *arg)
{
    client_wait *w = arg;
    /* A TLS 1.2 resumption brings no new session. */
    bool session = w->rc->session_len > 0 ||
                   (dx_tls_session_reused(w->t) && !strcmp(dx_tls_protocol(w->t), "TLSv1.2"));
    return session && strstr(h_peer_output(w->peer), w->ping);
}

START_TEST(our_client_resumes_with_openssl_s_server)
{
    const char *v = versions[_i];
    char dir[64];
    h_tmpdir(dir);
    const char *cert = h_tmpfile(dir, "cert.pem", dx_pki_cert_pem(certs[C_DEFAULT]), (size_t)-1);
    char certpath[512];
    snprintf(certpath, sizeof(certpath), "%s", cert);
    const char *key = h_tmpfile(dir, "key.pem", dx_pki_key_pem(certs[C_DEFAULT]), (size_t)-1);
    char port[16];
    snprintf(port, sizeof(port), "%u", h_free_port());
    h_peer peer;
    const char *argv[] = {"openssl", "s_server", "-accept", port, "-cert", certpath, "-key", key,
                          strcmp(v, "TLSv1.3") ? "-tls1_2" : "-tls1_3", "-naccept", "2", NULL};
    h_peer_start(&peer, argv);
    ck_assert_msg(h_peer_wait_output(&peer, "ACCEPT", NULL, 0, 10000), "s_server: %s",
                  h_peer_output(&peer));
    dx_tls_ctx *cctx = ctx_for(-1, NULL);
    resume_client rc = {0};
    for (int round = 0; round < 2; round++) {
        int fd = h_connect_loopback((unsigned)atoi(port), 5000);
        ck_assert_int_ge(fd, 0);
        dx_stream *sock;
        ck_assert_int_eq(dx_fd_stream_new(fd, fd, DX_FD_CLOSE, &sock), 0);
        dx_tls *t;
        ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &t), 0);
        ck_assert_int_eq(dx_tls_set_servername(t, "default.test"), 0);
        dx_tls_events tev = {.on_session = keep_session};
        dx_tls_set_events(t, &tev, &rc);
        if (round == 1)
            ck_assert_int_eq(dx_tls_set_session(t, rc.session, rc.session_len), 0);
        rc.session_len = 0;
        h_rec r = {0};
        h_rec_attach(&r, dx_tls_upper(t));
        ck_assert_int_eq(dx_tls_attach(t, sock), 0);
        ck_assert_int_eq(dx_tls_start(t), 0);
        char ping[32];
        snprintf(ping, sizeof(ping), "ping from ours %d\n", round);
        ck_assert_int_eq(dx_stream_write(dx_tls_upper(t), ping, strlen(ping)), 0);
        client_wait w = {t, &rc, &peer, ping};
        ck_assert_msg(h_peer_run(&peer, &sock, 1, got_session_and_echo, &w, 10000),
                      "s_server: %s", h_peer_output(&peer));
        ck_assert(dx_tls_authorized(t));
        ck_assert_str_eq(dx_tls_protocol(t), v);
        ck_assert_int_eq(dx_tls_session_reused(t), round == 1);
        dx_stream_end(dx_tls_upper(t));
        int64_t end = h_now_ms() + 3000;
        while (h_now_ms() < end && !(dx_stream_state(dx_tls_lower(t)) & DX_STREAM_CLOSED))
            dx_fd_poll(&sock, 1, 10);
        h_rec_assert_clean(&r);
        dx_tls_destroy(t);
        h_rec_free(&r);
    }
    ck_assert_int_eq(h_peer_stop(&peer, 5000), 0);
    h_peer_free(&peer);
    dx_tls_ctx_unref(cctx);
    h_tmpdir_remove(dir);
}
END_TEST

/* ---- renegotiation and post-handshake authentication with real peers -------- */

typedef struct done_flag {
    unsigned calls;
    char name[64];
} done_flag;

static void flag_done(dx_tls *t, const dx_error *err, void *u)
{
    (void)t;
    done_flag *d = u;
    d->calls++;
    snprintf(d->name, sizeof(d->name), "%s", err ? dx_error_name(err) : "");
}

typedef struct serve_done {
    tcp_server *ts;
    done_flag *d;
} serve_done;

static bool served_done(void *arg)
{
    serve_done *u = arg;
    tcp_server_step(u->ts, 10);
    return u->d->calls > 0;
}

/*
 * openssl s_client against our server, which lets clients renegotiate:
 * i 0, s_client renegotiates (its R command, TLS 1.2); 1, our server
 * renegotiates asking for s_client's certificate (TLS 1.2); 2, our server
 * asks for it after the handshake (TLS 1.3, s_client -enable_pha). Lines
 * still echo afterwards.
 */
START_TEST(openssl_s_client_renegotiation_and_client_auth)
{
    char dir[64];
    h_tmpdir(dir);
    char capath[600], certpath[600], keypath[600];
    snprintf(capath, sizeof(capath), "%s", h_tmpfile(dir, "ca.pem", dx_pki_cert_pem(ca), (size_t)-1));
    snprintf(certpath, sizeof(certpath), "%s",
             h_tmpfile(dir, "cert.pem", dx_pki_cert_pem(certs[C_NEW]), (size_t)-1));
    snprintf(keypath, sizeof(keypath), "%s",
             h_tmpfile(dir, "key.pem", dx_pki_key_pem(certs[C_NEW]), (size_t)-1));
    const char *v = _i == 2 ? "TLSv1.3" : "TLSv1.2";
    dx_tls_ctx *dflt = ctx_for(C_DEFAULT, v);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_set_client_renegotiation(srv, true, 0, 0), 0);
    tcp_server ts;
    tcp_server_open(&ts, srv);
    char to[64];
    snprintf(to, sizeof(to), "127.0.0.1:%u", ts.port);
    h_peer peer;
    const char *argv[] = {"openssl", "s_client", "-connect", to, "-CAfile", capath,
                          "-verify_return_error", "-cert", certpath, "-key", keypath,
                          _i == 2 ? "-enable_pha" : "-tls1_2", NULL};
    h_peer_start(&peer, argv);
    ck_assert_msg(serve_until_output(&ts, &peer, "Verify return code", 1, 15000), "s_client: %s",
                  h_peer_output(&peer));
    dx_tls *t = ts.t[0];
    ck_assert_ptr_null(dx_tls_peer_cert(t));
    uint8_t fin0[64], fin1[64];
    size_t n0 = dx_tls_finished(t, fin0, sizeof(fin0));
    done_flag d = {0};
    if (_i == 0) {
        h_peer_write(&peer, "R\n");
        ck_assert_msg(serve_until_output(&ts, &peer, "RENEGOTIATING", 1, 10000),
                      "s_client: %s", h_peer_output(&peer));
    } else {
        dx_tls_renegotiate_opts o = {.request_cert = true, .reject_unauthorized = true};
        if (_i == 1)
            ck_assert_int_eq(dx_tls_renegotiate(t, &o, flag_done, &d), 0);
        else
            ck_assert_int_eq(dx_tls_request_client_cert(t, flag_done, &d), 0);
        serve_done u = {&ts, &d};
        ck_assert_msg(h_peer_run(&peer, NULL, 0, served_done, &u, 10000), "s_client: %s",
                      h_peer_output(&peer));
        ck_assert_str_eq(d.name, "");
        ck_assert(dx_tls_authorized(t));
        ck_assert_str_eq(dx_tls_name_get(dx_tls_cert_subject(dx_tls_peer_cert(t)), "CN", 0),
                         "new");
    }
    h_peer_write(&peer, "after\n");
    ck_assert_msg(serve_until_output(&ts, &peer, "AFTER", 1, 10000), "s_client: %s",
                  h_peer_output(&peer));
    if (_i < 2) { /* a new handshake: new Finished messages */
        size_t n1 = dx_tls_finished(t, fin1, sizeof(fin1));
        ck_assert(n0 != n1 || memcmp(fin0, fin1, n0) != 0);
    }
    ck_assert_uint_eq(dx_stream_error(dx_tls_upper(t)) != NULL, 0);
    ck_assert_int_eq(h_peer_stop(&peer, 5000), 0);
    h_peer_free(&peer);
    tcp_server_close(&ts);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(dflt);
    h_tmpdir_remove(dir);
}
END_TEST

typedef struct client_done {
    done_flag *d;
    h_peer *peer;
    const char *text;
} client_done;

static bool done_and_printed(void *arg)
{
    client_done *w = arg;
    return (!w->d || w->d->calls) && (!w->text || strstr(h_peer_output(w->peer), w->text));
}

/*
 * Our client against openssl s_server: i 0, our client renegotiates
 * (s_server -client_renegotiation, TLS 1.2); 1, s_server renegotiates (its
 * r command); 2, s_server asks for our certificate after the handshake
 * (its c command, TLS 1.3) and verifies it.
 */
START_TEST(our_client_renegotiation_and_client_auth_with_openssl_s_server)
{
    char dir[64];
    h_tmpdir(dir);
    char capath[600], certpath[600], keypath[600];
    snprintf(capath, sizeof(capath), "%s", h_tmpfile(dir, "ca.pem", dx_pki_cert_pem(ca), (size_t)-1));
    snprintf(certpath, sizeof(certpath), "%s",
             h_tmpfile(dir, "cert.pem", dx_pki_cert_pem(certs[C_DEFAULT]), (size_t)-1));
    snprintf(keypath, sizeof(keypath), "%s",
             h_tmpfile(dir, "key.pem", dx_pki_key_pem(certs[C_DEFAULT]), (size_t)-1));
    char port[16];
    snprintf(port, sizeof(port), "%u", h_free_port());
    h_peer peer;
    const char *argv[] = {"openssl", "s_server", "-accept", port, "-cert", certpath, "-key",
                          keypath, "-CAfile", capath, "-naccept", "1",
                          _i == 2 ? "-tls1_3" : "-tls1_2",
                          _i == 0 ? "-client_renegotiation" : NULL, NULL};
    h_peer_start(&peer, argv);
    ck_assert_msg(h_peer_wait_output(&peer, "ACCEPT", NULL, 0, 10000), "s_server: %s",
                  h_peer_output(&peer));
    dx_tls_ctx *cctx = ctx_for(C_NEW, NULL);
    int fd = h_connect_loopback((unsigned)atoi(port), 5000);
    ck_assert_int_ge(fd, 0);
    dx_stream *sock;
    ck_assert_int_eq(dx_fd_stream_new(fd, fd, DX_FD_CLOSE, &sock), 0);
    dx_tls *t;
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &t), 0);
    ck_assert_int_eq(dx_tls_set_servername(t, "default.test"), 0);
    ck_assert_int_eq(dx_tls_set_post_handshake_auth(t, true), 0);
    h_rec r = {0};
    h_rec_attach(&r, dx_tls_upper(t));
    ck_assert_int_eq(dx_tls_attach(t, sock), 0);
    ck_assert_int_eq(dx_tls_start(t), 0);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(t), "first\n", 6), 0);
    client_done w = {NULL, &peer, "first"};
    ck_assert_msg(h_peer_run(&peer, &sock, 1, done_and_printed, &w, 10000), "s_server: %s",
                  h_peer_output(&peer));
    uint8_t fin0[64], fin1[64];
    size_t n0 = dx_tls_finished(t, fin0, sizeof(fin0));
    done_flag d = {0};
    if (_i == 0) {
        ck_assert_int_eq(dx_tls_renegotiate(t, NULL, flag_done, &d), 0);
        w = (client_done){&d, &peer, NULL};
        ck_assert_msg(h_peer_run(&peer, &sock, 1, done_and_printed, &w, 10000), "s_server: %s",
                      h_peer_output(&peer));
        ck_assert_str_eq(d.name, "");
        ck_assert(dx_tls_authorized(t));
    } else {
        h_peer_write(&peer, _i == 1 ? "r\n" : "c\n");
        w = (client_done){NULL, &peer, _i == 1 ? "SSL_do_handshake -> 1" : "depth=0 CN = new"};
        ck_assert_msg(h_peer_run(&peer, &sock, 1, done_and_printed, &w, 10000), "s_server: %s",
                      h_peer_output(&peer));
    }
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(t), "second\n", 7), 0);
    w = (client_done){NULL, &peer, "second"};
    ck_assert_msg(h_peer_run(&peer, &sock, 1, done_and_printed, &w, 10000), "s_server: %s",
                  h_peer_output(&peer));
    if (_i < 2) {
        size_t n1 = dx_tls_finished(t, fin1, sizeof(fin1));
        ck_assert(n0 != n1 || memcmp(fin0, fin1, n0) != 0);
    }
    ck_assert_uint_eq(r.errors, 0);
    dx_tls_destroy(t);
    h_rec_assert_clean(&r);
    h_rec_free(&r);
    h_peer_stop(&peer, 5000);
    h_peer_free(&peer);
    dx_tls_ctx_unref(cctx);
    h_tmpdir_remove(dir);
}
END_TEST

Suite *tls_server_suite(void)
{
    Suite *s = suite_create("tls_server");
    TCase *tc = tcase_create("sni");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, add_context_chooses_by_name, 0, 2);
    tcase_add_test(tc, sni_event_cleared_after_accept_falls_back_to_the_table);
    tcase_add_loop_test(tc, asynchronous_sni_choice, 0, 4);
    tcase_add_loop_test(tc, sni_refusal_fails_with_name_readable, 0, 2);
    tcase_add_test(tc, sni_answer_after_destroy);
    tcase_add_test(tc, sni_answer_while_destroyed_connection_is_held);
    tcase_add_test(tc, allocation_failures_through_sni_end_cleanly);
    tcase_add_test(tc, standalone_connection_sni_callback);
    tcase_add_test(tc, set_context_swaps_for_new_connections);
    tcase_add_loop_test(tc, client_certificate_required_per_sni_context, 0, 4);
    tcase_add_loop_test(tc, resumption_cannot_skip_a_client_check, 0, 4);
    suite_add_tcase(s, tc);
    tc = tcase_create("alpn");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_add_loop_test(tc, alpn_agreement_and_refusal, 0, 8);
    tcase_add_test(tc, alpn_lists_are_checked);
    tcase_add_loop_test(tc, alpn_callback_chooses_the_protocol, 0, 4);
    suite_add_tcase(s, tc);
    tc = tcase_create("events");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_add_test(tc, server_events_and_connection_count);
    tcase_add_test(tc, server_keylog_only_when_asked);
    suite_add_tcase(s, tc);
    tc = tcase_create("tickets");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_add_loop_test(tc, shared_ticket_keys_resume_across_servers, 0, 2);
    tcase_add_loop_test(tc, ticket_key_rotation_keeps_one_previous_set, 0, 2);
    tcase_add_test(tc, tickets_can_be_turned_off);
    tcase_add_loop_test(tc, builtin_cache_resumes_evicts_and_expires, 0, 2);
    tcase_add_loop_test(tc, external_store_answers_now_or_later, 0, 4);
    tcase_add_loop_test(tc, resumption_with_client_certificates, 0, 4);
    tcase_add_test(tc, server_defaults_reach_accepted_connections);
    tcase_add_test(tc, server_connection_policies_reach_accepted_connections);
    suite_add_tcase(s, tc);
    tc = tcase_create("peer");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, openssl_s_client_gets_sni_context_and_alpn);
    tcase_add_loop_test(tc, openssl_s_client_resumes, 0, 4);
    tcase_add_loop_test(tc, our_client_resumes_with_openssl_s_server, 0, 2);
    tcase_add_loop_test(tc, openssl_s_client_renegotiation_and_client_auth, 0, 3);
    tcase_add_loop_test(tc, our_client_renegotiation_and_client_auth_with_openssl_s_server, 0,
                        3);
    suite_add_tcase(s, tc);
    return s;
}
