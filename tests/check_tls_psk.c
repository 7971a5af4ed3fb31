/*
 * Pre-shared keys (dx_tls_set_psk_callback, dx_tls_set_psk_identity_hint
 * and the server's defaults): TLS 1.2 PSK suites and TLS 1.3 external
 * keys, both roles, with and without certificates; unknown identities,
 * wrong keys, answers that do not fit, the hint, authorization, and
 * openssl s_client / s_server as peers. IDs cite the checklist (K-04,
 * S-10, S-11, CL-07, 3.13).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/opensslv.h>

#include "harness.h"
#include "peer.h"

/* ---- the test PKI, made per test case (unchecked fixture) ---------------- */

static dx_pki_cert *ca, *leaf;

static void make_pki(void)
{
    dx_pki_opts o = {.common_name = "PSK Test CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &o, &ca, NULL));
    static const char *const dns[] = {"localhost", "psk.test", NULL};
    dx_pki_opts l = {.common_name = "server", .dns_names = dns};
    H_MUST(dx_pki_issue(ca, &l, &leaf, NULL));
}

static void free_pki(void)
{
    dx_pki_cert_free(leaf);
    dx_pki_cert_free(ca);
    leaf = ca = NULL;
}

static const char *const versions[] = {"TLSv1.2", "TLSv1.3"};
#define PSK12 "PSK-AES128-GCM-SHA256"

/* A context of one version (NULL: both), with the TLS 1.2 PSK suite and
 * the TLS 1.3 defaults, a certificate or none, trusting the test CA or
 * nothing of ours (no CA added: the system store). */
static const char *groups; /* for the next context made, then reset */

static dx_tls_ctx *psk_ctx_ciphers(const char *version, bool cert, bool trust,
                                   const char *ciphers)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_set_ciphers(cfg, ciphers), 0);
    if (groups)
        ck_assert_int_eq(dx_tls_config_set_groups(cfg, groups), 0);
    groups = NULL;
    if (trust) {
        const char *capem = dx_pki_cert_pem(ca);
        ck_assert_int_eq(dx_tls_config_add_ca(cfg, capem, strlen(capem)), 0);
    }
    if (cert) {
        const char *c = dx_pki_cert_pem(leaf), *k = dx_pki_key_pem(leaf);
        ck_assert_int_eq(dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL), 0);
    }
    if (version) {
        ck_assert_int_eq(dx_tls_config_set_min_version(cfg, version), 0);
        ck_assert_int_eq(dx_tls_config_set_max_version(cfg, version), 0);
    }
    dx_tls_ctx *ctx;
    dx_error *err = NULL;
    int rc = dx_tls_ctx_new(cfg, &ctx, &err);
    ck_assert_msg(rc == 0, "ctx: %s", err ? dx_error_message(err) : "?");
    dx_tls_config_free(cfg);
    return ctx;
}

static dx_tls_ctx *psk_ctx(const char *version, bool cert, bool trust)
{
    return psk_ctx_ciphers(version, cert, trust, PSK12 ":ECDHE-ECDSA-AES128-GCM-SHA256");
}

/* ---- the callbacks -------------------------------------------------------- */

static const uint8_t key1[] = {0x6b, 0x65, 0x79, 0x20, 0x6f, 0x6e, 0x65, 0x00,
                               0x01, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60};
static const uint8_t key2[] = {0x6b, 0x65, 0x79, 0x20, 0x74, 0x77, 0x6f, 0x00,
                               0x01, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60};

/* What one side's callback answers, and what it saw. */
typedef struct keyring {
    const char *identity;    /* client: the identity sent */
    const char *known;       /* server: the one identity known (NULL: any) */
    const uint8_t *key;      /* the key answered */
    size_t key_len;
    bool refuse;             /* answer non-zero */
    bool unterminated;       /* client: an identity with no NUL */
    size_t force_len;        /* answer this key_len instead */
    unsigned calls;
    bool name_null[4];
    char name[4][DX_TLS_PSK_IDENTITY_MAX + 1];
    /* read from the connection inside the callback */
    dx_tls *t;
    dx_tls_role role;
    char servername[64];
    char protocol[16];
} keyring;

static int psk_cb(dx_tls *t, const char *name, dx_tls_psk *psk, void *user)
{
    keyring *k = user;
    unsigned i = k->calls++;
    if (i < 4) {
        k->name_null[i] = name == NULL;
        snprintf(k->name[i], sizeof(k->name[i]), "%s", name ? name : "");
    }
    k->t = t;
    k->role = dx_tls_get_role(t);
    const char *sn = dx_tls_servername(t), *proto = dx_tls_protocol(t);
    snprintf(k->servername, sizeof(k->servername), "%s", sn ? sn : "");
    snprintf(k->protocol, sizeof(k->protocol), "%s", proto ? proto : "");
    if (k->refuse || (k->known && strcmp(name, k->known) != 0))
        return 1;
    if (k->identity)
        snprintf(psk->identity, sizeof(psk->identity), "%s", k->identity);
    if (k->unterminated)
        memset(psk->identity, 'x', sizeof(psk->identity));
    memcpy(psk->key, k->key, k->key_len);
    psk->key_len = k->force_len ? k->force_len : k->key_len;
    return 0;
}

/* ---- a client and a server over a memory pair -------------------------- */

typedef struct side {
    dx_tls *t;
    h_rec rec;
    unsigned secure, hs_errors;
    char hs_error[64], hs_message[128];
    keyring keys;
} side;

typedef struct pconn {
    side c, s;
} pconn;

static void ev_secure(dx_tls *t, void *u)
{
    (void)t;
    ((side *)u)->secure++;
}

static void ev_hs_error(dx_tls *t, const dx_error *err, void *u)
{
    (void)t;
    side *s = u;
    s->hs_errors++;
    snprintf(s->hs_error, sizeof(s->hs_error), "%s", dx_error_name(err));
    snprintf(s->hs_message, sizeof(s->hs_message), "%s", dx_error_message(err));
}

static const dx_tls_events events = {.on_secure = ev_secure,
                                     .on_handshake_error = ev_hs_error};

static void side_open(side *s, dx_tls_ctx *ctx, dx_tls_role role, dx_stream *transport)
{
    ck_assert_int_eq(dx_tls_new(ctx, role, &s->t), 0);
    ck_assert_int_eq(dx_tls_set_events(s->t, &events, s), 0);
    h_rec_attach(&s->rec, dx_tls_upper(s->t));
    s->rec.keep_data = true;
    ck_assert_int_eq(dx_tls_attach(s->t, transport), 0);
}

/* Makes both sides; the callbacks are set with the keyrings as they are
 * then (the caller fills them first), not started. */
static void pc_open(pconn *p, dx_tls_ctx *cctx, dx_tls_ctx *sctx)
{
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    side_open(&p->c, cctx, DX_TLS_CLIENT, a);
    side_open(&p->s, sctx, DX_TLS_SERVER, b);
    ck_assert_int_eq(dx_tls_set_servername(p->c.t, "psk.test"), 0);
}

static void pc_start(pconn *p)
{
    ck_assert_int_eq(dx_tls_start(p->s.t), 0);
    ck_assert_int_eq(dx_tls_start(p->c.t), 0);
}

/* Both sides with their callbacks, started. */
static void pc_connect(pconn *p, dx_tls_ctx *cctx, dx_tls_ctx *sctx)
{
    pc_open(p, cctx, sctx);
    ck_assert_int_eq(dx_tls_set_psk_callback(p->c.t, psk_cb, &p->c.keys), 0);
    ck_assert_int_eq(dx_tls_set_psk_callback(p->s.t, psk_cb, &p->s.keys), 0);
    pc_start(p);
}

static void pc_close(pconn *p)
{
    dx_tls_destroy(p->c.t);
    dx_tls_destroy(p->s.t);
    h_rec_assert_clean(&p->c.rec);
    h_rec_assert_clean(&p->s.rec);
    h_rec_free(&p->c.rec);
    h_rec_free(&p->s.rec);
}

/* The usual keyrings: client "client1" with key1, a server that knows
 * "client1" with key1. */
static void usual_keys(pconn *p)
{
    memset(p, 0, sizeof(*p));
    p->c.keys = (keyring){.identity = "client1", .key = key1, .key_len = sizeof(key1)};
    p->s.keys = (keyring){.known = "client1", .key = key1, .key_len = sizeof(key1)};
}

static void assert_echo(pconn *p)
{
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p->c.t), "ping", 4), 0);
    ck_assert_uint_eq(p->s.rec.received, 4);
    ck_assert_int_eq(memcmp(p->s.rec.data, "ping", 4), 0);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p->s.t), "pong!", 5), 0);
    ck_assert_uint_eq(p->c.rec.received, 5);
    ck_assert_int_eq(memcmp(p->c.rec.data, "pong!", 5), 0);
}

static const char *cipher_of(dx_tls *t)
{
    dx_tls_cipher_info ci;
    ck_assert_int_eq(dx_tls_cipher(t, &ci), 0);
    return ci.name;
}

/* ---- handshakes ------------------------------------------------------------ */

/* K-04, S-10, CL-07, 3.13 (psk-circuit): no certificate on either side
 * (the client refuses unauthorized peers, the default); the key
 * authenticates both, data goes both ways. TLS 1.2 with the PSK suite,
 * TLS 1.3 with the external key on a SHA-256 suite. The server's
 * callback gets the identity; both callbacks read their connection. */
START_TEST(handshake_and_echo_without_certificates)
{
    const char *v = versions[_i];
    bool tls13 = _i == 1;
    dx_tls_ctx *cctx = psk_ctx(v, false, false), *sctx = psk_ctx(v, false, false);
    pconn p;
    usual_keys(&p);
    pc_connect(&p, cctx, sctx);
    ck_assert_msg(p.c.secure == 1 && p.s.secure == 1, "client %s, server %s", p.c.rec.error_name,
                  p.s.rec.error_name);
    ck_assert_str_eq(dx_tls_protocol(p.c.t), v);
    /* TLS 1.3: the first SHA-256 suite of the server's default list */
    ck_assert_str_eq(cipher_of(p.c.t), tls13 ? "TLS_CHACHA20_POLY1305_SHA256" : PSK12);
    ck_assert_str_eq(cipher_of(p.s.t), tls13 ? "TLS_CHACHA20_POLY1305_SHA256" : PSK12);
    assert_echo(&p);
    /* the server saw the identity, once; the client had no hint */
    ck_assert_uint_eq(p.s.keys.calls, 1);
    ck_assert_str_eq(p.s.keys.name[0], "client1");
    ck_assert_uint_eq(p.c.keys.calls, 1);
    ck_assert(p.c.keys.name_null[0]);
    /* reading the connection inside the callbacks works */
    ck_assert_ptr_eq(p.s.keys.t, p.s.t);
    ck_assert_int_eq(p.s.keys.role, DX_TLS_SERVER);
    ck_assert_str_eq(p.s.keys.servername, "psk.test");
    ck_assert_str_eq(p.s.keys.protocol, "unknown");
    ck_assert_ptr_eq(p.c.keys.t, p.c.t);
    ck_assert_int_eq(p.c.keys.role, DX_TLS_CLIENT);
    ck_assert_str_eq(p.c.keys.servername, "psk.test");
    /* authorized by the key; nothing shown, nothing resumed */
    ck_assert(dx_tls_authorized(p.c.t));
    ck_assert(dx_tls_authorized(p.s.t));
    ck_assert_ptr_null(dx_tls_authorization_error(p.c.t));
    ck_assert_ptr_null(dx_tls_authorization_error(p.s.t));
    ck_assert_ptr_null(dx_tls_peer_cert(p.c.t));
    ck_assert_ptr_null(dx_tls_peer_cert(p.s.t));
    ck_assert(!dx_tls_session_reused(p.c.t));
    ck_assert(!dx_tls_session_reused(p.s.t));
    pc_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* K-04: the largest identity (128 bytes) and key (256 bytes) go through
 * whole, on both versions. */
START_TEST(largest_identity_and_key)
{
    const char *v = versions[_i];
    dx_tls_ctx *cctx = psk_ctx(v, false, false), *sctx = psk_ctx(v, false, false);
    char id[DX_TLS_PSK_IDENTITY_MAX + 1];
    for (size_t i = 0; i < DX_TLS_PSK_IDENTITY_MAX; i++)
        id[i] = (char)('a' + i % 26);
    id[DX_TLS_PSK_IDENTITY_MAX] = '\0';
    uint8_t key[DX_TLS_PSK_KEY_MAX];
    h_gen_fill(7, 0, key, sizeof(key));
    pconn p;
    memset(&p, 0, sizeof(p));
    p.c.keys = (keyring){.identity = id, .key = key, .key_len = sizeof(key)};
    p.s.keys = (keyring){.known = id, .key = key, .key_len = sizeof(key)};
    pc_connect(&p, cctx, sctx);
    ck_assert_msg(p.c.secure == 1 && p.s.secure == 1, "client %s, server %s", p.c.rec.error_name,
                  p.s.rec.error_name);
    ck_assert_str_eq(p.s.keys.name[0], id);
    assert_echo(&p);
    pc_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* S-11, CL-07: the server's hint reaches the client's callback in TLS 1.2;
 * TLS 1.3 has none (NULL). A client that allows both versions is asked
 * for its ClientHello (NULL), then again with the hint when the server
 * chooses TLS 1.2. Without a hint the client gets NULL in TLS 1.2 too. The
 * ECDHE-PSK suites, whose ServerKeyExchange always carries a hint field,
 * behave the same. */
START_TEST(identity_hint_in_tls12_only)
{
    /* 0: TLS 1.2, 1: TLS 1.3, 2: client of both versions, server 1.2,
     * 3: TLS 1.2 without hint, 4 and 5: 0 and 3 with ECDHE-PSK */
    const char *cv = _i == 1 ? "TLSv1.3" : _i == 2 ? NULL : "TLSv1.2";
    const char *sv = _i == 1 ? "TLSv1.3" : "TLSv1.2";
    const char *ciphers = _i >= 4 ? "ECDHE-PSK-CHACHA20-POLY1305" : PSK12;
    dx_tls_ctx *cctx = psk_ctx_ciphers(cv, false, false, ciphers),
               *sctx = psk_ctx_ciphers(sv, false, false, ciphers);
    pconn p;
    usual_keys(&p);
    pc_open(&p, cctx, sctx);
    ck_assert_int_eq(dx_tls_set_psk_callback(p.c.t, psk_cb, &p.c.keys), 0);
    ck_assert_int_eq(dx_tls_set_psk_callback(p.s.t, psk_cb, &p.s.keys), 0);
    if (_i != 3 && _i != 5)
        ck_assert_int_eq(dx_tls_set_psk_identity_hint(p.s.t, "hint-1"), 0);
    pc_start(&p);
    ck_assert_msg(p.c.secure == 1 && p.s.secure == 1, "client %s, server %s", p.c.rec.error_name,
                  p.s.rec.error_name);
    if (_i != 1)
        ck_assert_str_eq(cipher_of(p.c.t), _i >= 4 ? "ECDHE-PSK-CHACHA20-POLY1305" : PSK12);
    switch (_i) {
    case 0:
    case 4:
        ck_assert_uint_eq(p.c.keys.calls, 1);
        ck_assert(!p.c.keys.name_null[0]);
        ck_assert_str_eq(p.c.keys.name[0], "hint-1");
        break;
    case 1:
        ck_assert_uint_eq(p.c.keys.calls, 1);
        ck_assert(p.c.keys.name_null[0]);
        break;
    case 2:
        ck_assert_uint_eq(p.c.keys.calls, 2);
        ck_assert(p.c.keys.name_null[0]);
        ck_assert_str_eq(p.c.keys.name[1], "hint-1");
        ck_assert_str_eq(dx_tls_protocol(p.c.t), "TLSv1.2");
        break;
    default:
        ck_assert_uint_eq(p.c.keys.calls, 1);
        ck_assert(p.c.keys.name_null[0]);
    }
    assert_echo(&p);
    pc_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* TLS 1.3 with a HelloRetryRequest (the client's key share is for a group
 * the server does not take): both callbacks are asked again for the
 * second ClientHello, with the hash the first fixed, and the key serves. */
START_TEST(tls13_key_after_hello_retry)
{
    groups = "P-256:X25519";
    dx_tls_ctx *cctx = psk_ctx("TLSv1.3", false, false);
    groups = "X25519";
    dx_tls_ctx *sctx = psk_ctx("TLSv1.3", false, false);
    pconn p;
    usual_keys(&p);
    pc_connect(&p, cctx, sctx);
    ck_assert_msg(p.c.secure == 1 && p.s.secure == 1, "client %s, server %s", p.c.rec.error_name,
                  p.s.rec.error_name);
    dx_tls_kex_info kex;
    ck_assert_int_eq(dx_tls_ephemeral_key(p.c.t, &kex), 0);
    ck_assert_str_eq(kex.name, "X25519");
    ck_assert_uint_eq(p.c.keys.calls, 2);
    ck_assert(p.c.keys.name_null[0] && p.c.keys.name_null[1]);
    ck_assert_uint_eq(p.s.keys.calls, 2);
    ck_assert(dx_tls_authorized(p.c.t));
    assert_echo(&p);
    pc_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* S-11: a hint survives the context a server chooses by name (the switch
 * replaces the SSL object's certificate data, where OpenSSL keeps it). */
START_TEST(identity_hint_survives_sni_context)
{
    dx_tls_ctx *cctx = psk_ctx("TLSv1.2", false, false);
    dx_tls_ctx *dflt = psk_ctx("TLSv1.2", false, false), *named = psk_ctx("TLSv1.2", true, false);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(dflt, &srv), 0);
    ck_assert_int_eq(dx_tls_server_add_context(srv, "psk.test", named), 0);
    pconn p;
    usual_keys(&p);
    ck_assert_int_eq(dx_tls_server_set_psk_callback(srv, psk_cb, &p.s.keys), 0);
    ck_assert_int_eq(dx_tls_server_set_psk_identity_hint(srv, "after-sni"), 0);
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    side_open(&p.c, cctx, DX_TLS_CLIENT, a);
    ck_assert_int_eq(dx_tls_set_servername(p.c.t, "psk.test"), 0);
    ck_assert_int_eq(dx_tls_set_psk_callback(p.c.t, psk_cb, &p.c.keys), 0);
    ck_assert_int_eq(dx_tls_server_accept(srv, b, &p.s.t), 0);
    h_rec_attach(&p.s.rec, dx_tls_upper(p.s.t));
    p.s.rec.keep_data = true;
    ck_assert_int_eq(dx_tls_start(p.c.t), 0);
    ck_assert_msg(p.c.secure == 1, "client %s", p.c.rec.error_name);
    ck_assert_str_eq(p.c.keys.name[0], "after-sni");
    ck_assert_str_eq(cipher_of(p.c.t), PSK12);
    pc_close(&p);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(dflt);
    dx_tls_ctx_unref(named);
}
END_TEST

/* ---- failures ------------------------------------------------------------- */

/* S-10, 3.13 (psk-errors): an identity the server does not know fails the
 * handshake with the unknown_psk_identity alert, on both versions (TLS
 * 1.3: the server has no certificate to go on with). The server's
 * callback saw the identity; the server's handshake-error event names
 * the reason. */
START_TEST(unknown_identity_fails_with_alert)
{
    const char *v = versions[_i];
    dx_tls_ctx *cctx = psk_ctx(v, false, false), *sctx = psk_ctx(v, false, false);
    pconn p;
    usual_keys(&p);
    p.c.keys.identity = "stranger";
    pc_connect(&p, cctx, sctx);
    ck_assert_uint_eq(p.c.secure + p.s.secure, 0);
    ck_assert_str_eq(p.s.keys.name[0], "stranger");
    ck_assert_str_eq(p.s.rec.error_name, "ERR_SSL_PSK_IDENTITY_NOT_FOUND");
    ck_assert_str_eq(p.s.hs_error, "ERR_SSL_PSK_IDENTITY_NOT_FOUND");
    ck_assert_str_eq(p.s.hs_message, "psk identity not found");
    ck_assert_str_eq(p.c.rec.error_name, "ERR_SSL_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY");
    ck_assert_str_eq(p.c.hs_error, "ERR_SSL_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY");
    pc_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* RFC 8446 4.2.11: in TLS 1.3 a server with a certificate ignores an
 * unknown identity and shows its certificate, which the client then
 * verifies: trusted, the handshake completes, authorized by the
 * certificate; untrusted, the client refuses it. */
START_TEST(unknown_identity_tls13_falls_back_to_certificate)
{
    bool trusted = _i == 0;
    dx_tls_ctx *cctx = psk_ctx("TLSv1.3", false, trusted),
               *sctx = psk_ctx("TLSv1.3", true, false);
    pconn p;
    usual_keys(&p);
    p.c.keys.identity = "stranger";
    pc_connect(&p, cctx, sctx);
    ck_assert_uint_eq(p.s.keys.calls, 1);
    if (trusted) {
        ck_assert_msg(p.c.secure == 1 && p.s.secure == 1, "client %s, server %s",
                      p.c.rec.error_name, p.s.rec.error_name);
        ck_assert_ptr_nonnull(dx_tls_peer_cert(p.c.t));
        ck_assert(dx_tls_authorized(p.c.t));
        ck_assert(!dx_tls_authorized(p.s.t)); /* no client certificate asked */
        assert_echo(&p);
    } else {
        ck_assert_uint_eq(p.c.secure, 0);
        ck_assert_str_eq(p.c.rec.error_name, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    }
    pc_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* K-04: a TLS 1.3 server with a certificate that knows the identity uses
 * the key and shows no certificate, although its own list puts
 * TLS_AES_256_GCM_SHA384 first (the connection moves its SHA-256 suites
 * first: a key from the callbacks is bound to SHA-256). */
START_TEST(tls13_key_used_by_server_with_certificate)
{
    dx_tls_ctx *cctx = psk_ctx("TLSv1.3", false, false), *sctx = psk_ctx("TLSv1.3", true, false);
    pconn p;
    usual_keys(&p);
    pc_connect(&p, cctx, sctx);
    ck_assert_msg(p.c.secure == 1 && p.s.secure == 1, "client %s, server %s", p.c.rec.error_name,
                  p.s.rec.error_name);
    ck_assert_ptr_null(dx_tls_peer_cert(p.c.t));
    ck_assert_str_eq(cipher_of(p.s.t), "TLS_CHACHA20_POLY1305_SHA256");
    ck_assert(dx_tls_authorized(p.c.t));
    ck_assert(dx_tls_authorized(p.s.t));
    pc_close(&p);
    /* Without a PSK callback the same server chooses its first suite. */
    memset(&p, 0, sizeof(p));
    dx_tls_ctx *trusting = psk_ctx("TLSv1.3", false, true);
    pc_open(&p, trusting, sctx);
    pc_start(&p);
    ck_assert_uint_eq(p.c.secure, 1);
    ck_assert_str_eq(cipher_of(p.s.t), "TLS_AES_256_GCM_SHA384");
    pc_close(&p);
    dx_tls_ctx_unref(trusting);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* 3.13 (psk-errors): the right identity with a different key fails
 * cleanly on both sides: TLS 1.3 on the server's check of the binder,
 * TLS 1.2 on the server's reading of the client's Finished. */
START_TEST(wrong_key_fails)
{
    bool tls13 = _i == 1;
    dx_tls_ctx *cctx = psk_ctx(versions[_i], false, false),
               *sctx = psk_ctx(versions[_i], false, false);
    pconn p;
    usual_keys(&p);
    p.c.keys.key = key2;
    pc_connect(&p, cctx, sctx);
    ck_assert_uint_eq(p.c.secure + p.s.secure, 0);
    ck_assert_uint_eq(p.s.keys.calls, 1);
    if (tls13) {
        ck_assert_str_eq(p.s.rec.error_name, "ERR_SSL_BINDER_DOES_NOT_VERIFY");
#if OPENSSL_VERSION_NUMBER >= 0x30400000L
        ck_assert_str_eq(p.c.rec.error_name, "ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR");
#else
        ck_assert_str_eq(p.c.rec.error_name, "ERR_SSL_SSLV3_ALERT_ILLEGAL_PARAMETER");
#endif
    } else {
        ck_assert_str_eq(p.s.rec.error_name, "ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC");
        ck_assert_str_eq(p.c.rec.error_name, "ERR_SSL_SSLV3_ALERT_BAD_RECORD_MAC");
    }
    ck_assert_str_eq(p.s.hs_error, p.s.rec.error_name);
    pc_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* K-04: answers that do not fit fail the handshake with Node's
 * ERR_INVALID_ARG_VALUE on the side that gave them, never overflow
 * (run under ASan and valgrind): a client identity without NUL, an empty
 * one, a client key and a server key over 256 bytes; both versions. */
START_TEST(answers_that_do_not_fit_fail)
{
    int what = _i / 2;
    const char *v = versions[_i % 2];
    dx_tls_ctx *cctx = psk_ctx(v, false, false), *sctx = psk_ctx(v, false, false);
    pconn p;
    usual_keys(&p);
    static const char *const messages[] = {"PSK identity exceeds 128 bytes",
                                           "PSK identity is empty",
                                           "Pre-shared key exceeds 256 bytes",
                                           "Pre-shared key exceeds 256 bytes"};
    switch (what) {
    case 0:
        p.c.keys.unterminated = true;
        break;
    case 1:
        p.c.keys.identity = "";
        break;
    case 2:
        p.c.keys.force_len = DX_TLS_PSK_KEY_MAX + 1;
        break;
    default:
        p.s.keys.force_len = DX_TLS_PSK_KEY_MAX + 1;
    }
    pc_connect(&p, cctx, sctx);
    ck_assert_uint_eq(p.c.secure + p.s.secure, 0);
    side *guilty = what == 3 ? &p.s : &p.c, *other = what == 3 ? &p.c : &p.s;
    ck_assert_str_eq(guilty->rec.error_name, "ERR_INVALID_ARG_VALUE");
    ck_assert_str_eq(guilty->hs_error, "ERR_INVALID_ARG_VALUE");
    ck_assert_str_eq(guilty->hs_message, messages[what]);
    ck_assert_uint_eq(other->rec.errors, 1); /* told by an alert */
    ck_assert_str_ne(other->rec.error_name, "ERR_INVALID_ARG_VALUE");
    pc_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* CL-07: a client callback that offers nothing: TLS 1.2 fails on the
 * client with ERR_SSL_PSK_IDENTITY_NOT_FOUND; TLS 1.3 offers no key and a
 * server without certificate cannot go on. The server's callback is never
 * asked. */
START_TEST(client_without_key)
{
    bool tls13 = _i == 1;
    dx_tls_ctx *cctx = psk_ctx(versions[_i], false, false),
               *sctx = psk_ctx(versions[_i], false, false);
    pconn p;
    usual_keys(&p);
    p.c.keys.refuse = true;
    pc_connect(&p, cctx, sctx);
    ck_assert_uint_eq(p.c.secure + p.s.secure, 0);
    ck_assert_uint_eq(p.c.keys.calls, 1);
    ck_assert_uint_eq(p.s.keys.calls, 0);
    if (tls13) {
        ck_assert_uint_eq(p.s.rec.errors, 1);
        ck_assert_uint_eq(p.c.rec.errors, 1);
    } else {
        ck_assert_str_eq(p.c.rec.error_name, "ERR_SSL_PSK_IDENTITY_NOT_FOUND");
    }
    pc_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- options ----------------------------------------------------------------- */

START_TEST(setters_check_their_arguments)
{
    dx_tls_ctx *ctx = psk_ctx(NULL, false, false);
    dx_tls *c, *s;
    ck_assert_int_eq(dx_tls_new(ctx, DX_TLS_CLIENT, &c), 0);
    ck_assert_int_eq(dx_tls_new(ctx, DX_TLS_SERVER, &s), 0);
    keyring k = {0};
    ck_assert_int_eq(dx_tls_set_psk_callback(NULL, psk_cb, &k), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_psk_callback(c, psk_cb, &k), 0);
    ck_assert_int_eq(dx_tls_set_psk_callback(c, NULL, NULL), 0);
    ck_assert_int_eq(dx_tls_set_psk_identity_hint(NULL, "h"), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_psk_identity_hint(c, "h"), DX_EINVAL); /* a client */
    ck_assert_int_eq(dx_tls_set_psk_identity_hint(s, ""), DX_EINVAL);
    char hint[DX_TLS_PSK_IDENTITY_MAX + 2];
    memset(hint, 'h', sizeof(hint) - 1);
    hint[sizeof(hint) - 1] = '\0';
    ck_assert_int_eq(dx_tls_set_psk_identity_hint(s, hint), DX_EINVAL); /* 129 bytes */
    hint[DX_TLS_PSK_IDENTITY_MAX] = '\0';
    ck_assert_int_eq(dx_tls_set_psk_identity_hint(s, hint), 0); /* 128 */
    ck_assert_int_eq(dx_tls_set_psk_identity_hint(s, "shorter"), 0);
    ck_assert_int_eq(dx_tls_set_psk_identity_hint(s, NULL), 0);
    ck_assert_int_eq(dx_tls_set_psk_identity_hint(s, "kept"), 0);
    /* after the start: too late */
    ck_assert_int_eq(dx_tls_start(c), 0);
    ck_assert_int_eq(dx_tls_start(s), 0);
    ck_assert_int_eq(dx_tls_set_psk_callback(c, psk_cb, &k), DX_ESTATE);
    ck_assert_int_eq(dx_tls_set_psk_identity_hint(s, "late"), DX_ESTATE);
    dx_tls_destroy(c);
    dx_tls_destroy(s);
    /* the server's */
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(ctx, &srv), 0);
    ck_assert_int_eq(dx_tls_server_set_psk_callback(NULL, psk_cb, &k), DX_EINVAL);
    ck_assert_int_eq(dx_tls_server_set_psk_identity_hint(NULL, "h"), DX_EINVAL);
    ck_assert_int_eq(dx_tls_server_set_psk_identity_hint(srv, ""), DX_EINVAL);
    hint[DX_TLS_PSK_IDENTITY_MAX] = 'h';
    ck_assert_int_eq(dx_tls_server_set_psk_identity_hint(srv, hint), DX_EINVAL);
    ck_assert_int_eq(dx_tls_server_set_psk_identity_hint(srv, "h"), 0);
    ck_assert_int_eq(dx_tls_server_set_psk_identity_hint(srv, NULL), 0);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(ctx);
}
END_TEST

/* A removed callback is no callback: the handshake fails (no key, no
 * certificate) and the removed callback is not asked. */
START_TEST(removed_callback_is_not_called)
{
    dx_tls_ctx *cctx = psk_ctx("TLSv1.3", false, false), *sctx = psk_ctx("TLSv1.3", false, false);
    pconn p;
    usual_keys(&p);
    pc_open(&p, cctx, sctx);
    ck_assert_int_eq(dx_tls_set_psk_callback(p.c.t, psk_cb, &p.c.keys), 0);
    ck_assert_int_eq(dx_tls_set_psk_callback(p.s.t, psk_cb, &p.s.keys), 0);
    ck_assert_int_eq(dx_tls_set_psk_callback(p.s.t, NULL, NULL), 0);
    pc_start(&p);
    ck_assert_uint_eq(p.c.secure + p.s.secure, 0);
    ck_assert_uint_eq(p.c.keys.calls, 1);
    ck_assert_uint_eq(p.s.keys.calls, 0);
    pc_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- the server's defaults ---------------------------------------------- */

typedef struct srv_count {
    unsigned secure, errors;
    char error[64];
} srv_count;

static void srv_secure(dx_tls_server *srv, dx_tls *t, void *u)
{
    (void)srv, (void)t;
    ((srv_count *)u)->secure++;
}

static void srv_error(dx_tls_server *srv, dx_tls *t, const dx_error *err, void *u)
{
    (void)srv, (void)t;
    srv_count *c = u;
    c->errors++;
    snprintf(c->error, sizeof(c->error), "%s", dx_error_name(err));
}

/* Accepts a client over a memory pair; the client gets the usual key. */
static void accept_client(pconn *p, dx_tls_server *srv, dx_tls_ctx *cctx)
{
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    side_open(&p->c, cctx, DX_TLS_CLIENT, a);
    ck_assert_int_eq(dx_tls_set_servername(p->c.t, "psk.test"), 0);
    ck_assert_int_eq(dx_tls_set_psk_callback(p->c.t, psk_cb, &p->c.keys), 0);
    ck_assert_int_eq(dx_tls_server_accept(srv, b, &p->s.t), 0);
    h_rec_attach(&p->s.rec, dx_tls_upper(p->s.t));
    p->s.rec.keep_data = true;
    ck_assert_int_eq(dx_tls_start(p->c.t), 0);
}

/* S-10, S-11 on the server: the callback and the hint set on the server
 * reach the connections it accepts (the callback gets each connection
 * and the user pointer given with it); an unknown identity is the
 * server's client error; an external key is counted neither as a
 * resumption nor as a failed one; clearing them reaches the next ones. */
START_TEST(server_defaults_reach_accepted_connections)
{
    const char *v = versions[_i];
    bool tls13 = _i == 1;
    dx_tls_ctx *cctx = psk_ctx(v, false, false), *sctx = psk_ctx(v, false, false);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(sctx, &srv), 0);
    srv_count sc = {0};
    dx_tls_server_events sev = {.on_secure_connection = srv_secure,
                                .on_client_error = srv_error};
    ck_assert_int_eq(dx_tls_server_set_events(srv, &sev, &sc), 0);
    keyring server_keys = {.known = "client1", .key = key1, .key_len = sizeof(key1)};
    ck_assert_int_eq(dx_tls_server_set_psk_callback(srv, psk_cb, &server_keys), 0);
    ck_assert_int_eq(dx_tls_server_set_psk_identity_hint(srv, "server-hint"), 0);

    pconn p;
    usual_keys(&p);
    accept_client(&p, srv, cctx);
    ck_assert_msg(p.c.secure == 1, "client %s", p.c.rec.error_name);
    ck_assert_uint_eq(sc.secure, 1);
    ck_assert_uint_eq(server_keys.calls, 1);
    ck_assert_ptr_eq(server_keys.t, p.s.t);
    ck_assert_str_eq(server_keys.name[0], "client1");
    if (tls13)
        ck_assert(p.c.keys.name_null[0]);
    else
        ck_assert_str_eq(p.c.keys.name[0], "server-hint");
    ck_assert(dx_tls_authorized(p.s.t));
    assert_echo(&p);
    pc_close(&p);

    usual_keys(&p);
    p.c.keys.identity = "stranger";
    accept_client(&p, srv, cctx);
    ck_assert_uint_eq(p.c.secure, 0);
    ck_assert_uint_eq(sc.errors, 1);
    ck_assert_str_eq(sc.error, "ERR_SSL_PSK_IDENTITY_NOT_FOUND");
    ck_assert_str_eq(p.c.rec.error_name, "ERR_SSL_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY");
    pc_close(&p);

    dx_tls_server_stats st;
    dx_tls_server_get_stats(srv, &st);
    ck_assert_uint_eq(st.accepted, 2);
    ck_assert_uint_eq(st.handshakes, 1);
    ck_assert_uint_eq(st.resumed, 0);
    ck_assert_uint_eq(st.resume_failures, 0);

    /* Cleared: no hint any more (TLS 1.2), then no callback at all. */
    ck_assert_int_eq(dx_tls_server_set_psk_identity_hint(srv, NULL), 0);
    usual_keys(&p);
    accept_client(&p, srv, cctx);
    ck_assert_uint_eq(p.c.secure, 1);
    ck_assert(p.c.keys.name_null[0]);
    pc_close(&p);
    ck_assert_int_eq(dx_tls_server_set_psk_callback(srv, NULL, NULL), 0);
    unsigned calls = server_keys.calls;
    usual_keys(&p);
    accept_client(&p, srv, cctx);
    ck_assert_uint_eq(p.c.secure, 0);
    ck_assert_uint_eq(server_keys.calls, calls);
    pc_close(&p);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- resumption ------------------------------------------------------------- */

typedef struct ticket {
    uint8_t data[8192];
    size_t len;
} ticket;

static void keep_ticket(dx_tls *t, const uint8_t *s, size_t n, void *u)
{
    (void)t;
    ticket *k = u;
    ck_assert_uint_le(n, sizeof(k->data));
    memcpy(k->data, s, n);
    k->len = n;
}

/* A TLS 1.3 ticket from a connection a key authenticated resumes it: the
 * client is authorized (the session has no certificate: the key stood for
 * it), the handshake is a resumption, not an external key. */
START_TEST(tls13_ticket_of_psk_connection_resumes)
{
    dx_tls_ctx *cctx = psk_ctx("TLSv1.3", false, false), *sctx = psk_ctx("TLSv1.3", false, false);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(sctx, &srv), 0);
    keyring server_keys = {.known = "client1", .key = key1, .key_len = sizeof(key1)};
    ck_assert_int_eq(dx_tls_server_set_psk_callback(srv, psk_cb, &server_keys), 0);
    ticket tk = {0};
    for (int round = 0; round < 2; round++) {
        pconn p;
        usual_keys(&p);
        dx_stream *a, *b;
        ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
        ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &p.c.t), 0);
        dx_tls_events ev = {.on_session = keep_ticket};
        ck_assert_int_eq(dx_tls_set_events(p.c.t, &ev, &tk), 0);
        h_rec_attach(&p.c.rec, dx_tls_upper(p.c.t));
        ck_assert_int_eq(dx_tls_attach(p.c.t, a), 0);
        ck_assert_int_eq(dx_tls_set_psk_callback(p.c.t, psk_cb, &p.c.keys), 0);
        if (round == 1)
            ck_assert_int_eq(dx_tls_set_session(p.c.t, tk.data, tk.len), 0);
        ck_assert_int_eq(dx_tls_server_accept(srv, b, &p.s.t), 0);
        h_rec_attach(&p.s.rec, dx_tls_upper(p.s.t));
        ck_assert_int_eq(dx_tls_start(p.c.t), 0);
        ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "t", 1), 0); /* tickets come */
        ck_assert(dx_tls_is_secure(p.c.t));
        ck_assert_uint_gt(tk.len, 0);
        ck_assert(dx_tls_authorized(p.c.t));
        ck_assert_int_eq(dx_tls_session_reused(p.c.t), round == 1);
        ck_assert_int_eq(dx_tls_session_reused(p.s.t), round == 1);
        pc_close(&p);
    }
    dx_tls_server_stats st;
    dx_tls_server_get_stats(srv, &st);
    ck_assert_uint_eq(st.resumed, 1);
    ck_assert_uint_eq(st.resume_failures, 0);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- allocation failures ------------------------------------------------ */

/* Every allocation of libduplex's failing in turn, through the setters
 * and a PSK handshake with a hint: success or a clean error, no leak. */
START_TEST(allocation_failures_end_cleanly)
{
    dx_tls_ctx *cctx = psk_ctx("TLSv1.2", false, false), *sctx = psk_ctx("TLSv1.2", false, false);
    bool succeeded = false;
    for (long n = 0; n < 400 && !succeeded; n++) {
        size_t live0 = h_alloc_live();
        pconn p;
        usual_keys(&p);
        dx_stream *a = NULL, *b = NULL;
        dx_tls_server *srv = NULL;
        h_alloc_fail_from(n);
        if (dx_pair_new(NULL, &a, &b) == 0 && dx_tls_new(cctx, DX_TLS_CLIENT, &p.c.t) == 0 &&
            dx_tls_server_new(sctx, &srv) == 0 &&
            dx_tls_server_set_psk_callback(srv, psk_cb, &p.s.keys) == 0 &&
            dx_tls_server_set_psk_identity_hint(srv, "hint") == 0 &&
            dx_tls_set_psk_callback(p.c.t, psk_cb, &p.c.keys) == 0) {
            dx_tls_set_events(p.c.t, &events, &p.c);
            h_rec_attach(&p.c.rec, dx_tls_upper(p.c.t));
            int r1 = dx_tls_attach(p.c.t, a);
            a = NULL;
            int r2 = dx_tls_server_accept(srv, b, &p.s.t);
            b = NULL;
            if (r1 == 0 && r2 == 0) {
                h_rec_attach(&p.s.rec, dx_tls_upper(p.s.t));
                if (dx_tls_start(p.c.t) == 0 && dx_stream_write(dx_tls_upper(p.c.t), "ping", 4) >= 0)
                    succeeded = p.s.rec.received == 4 && !strcmp(p.c.keys.name[0], "hint");
            }
            ck_assert_uint_le(p.c.rec.errors, 1);
            ck_assert_uint_le(p.s.rec.errors, 1);
        }
        h_alloc_fail_from(-1);
        dx_tls_destroy(p.c.t);
        dx_tls_destroy(p.s.t);
        dx_tls_server_free(srv);
        dx_stream_destroy(a);
        dx_stream_destroy(b);
        h_rec_assert_clean(&p.c.rec);
        h_rec_assert_clean(&p.s.rec);
        h_rec_free(&p.c.rec);
        h_rec_free(&p.s.rec);
        ck_assert_msg(h_alloc_live() == live0, "n=%ld: %zu bytes leaked", n,
                      h_alloc_live() - live0);
    }
    ck_assert(succeeded);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- real peers: openssl s_server and s_client ------------------------- */

/* key1 as openssl's -psk wants it. */
#define KEY1_HEX "6b6579206f6e650001ff102030405060"

static bool secure_and_printed(void *arg)
{
    void **v = arg;
    return dx_tls_is_secure(v[0]) && strstr(h_peer_output(v[1]), v[2]);
}

static bool received(void *arg)
{
    void **v = arg;
    h_rec *r = v[0];
    return r->received >= *(size_t *)v[1] || r->errors;
}

static bool lower_closed(void *arg)
{
    return (dx_stream_state(dx_tls_lower(arg)) & DX_STREAM_CLOSED) != 0;
}

/* 3.13 (sequential/psk-client), CL-07: our client, with no certificate
 * anywhere, against openssl s_server -psk -nocert: the handshake, the
 * cipher both report, data both ways; in TLS 1.2 the client's callback
 * gets s_server's hint. */
START_TEST(our_client_with_openssl_s_server)
{
    const char *v = versions[_i];
    bool tls13 = _i == 1;
    char port[16], accept[32];
    snprintf(port, sizeof(port), "%u", h_free_port());
    snprintf(accept, sizeof(accept), "127.0.0.1:%s", port);
    const char *argv12[] = {"openssl", "s_server", "-accept", accept, "-naccept", "1",
                            "-nocert", "-psk", KEY1_HEX, "-psk_identity", "client1",
                            "-psk_hint", "hint-x", "-tls1_2", "-cipher", PSK12, NULL};
    const char *argv13[] = {"openssl", "s_server", "-accept", accept, "-naccept", "1",
                            "-nocert", "-psk", KEY1_HEX, "-psk_identity", "client1",
                            "-tls1_3", NULL};
    h_peer peer;
    h_peer_start(&peer, tls13 ? argv13 : argv12);
    ck_assert_msg(h_peer_wait_output(&peer, "ACCEPT", NULL, 0, 10000), "s_server: %s",
                  h_peer_output(&peer));

    dx_tls_ctx *cctx = psk_ctx(v, false, false);
    int fd = h_connect_loopback((unsigned)atoi(port), 5000);
    ck_assert_int_ge(fd, 0);
    dx_stream *sock;
    ck_assert_int_eq(dx_fd_stream_new(fd, fd, DX_FD_CLOSE, &sock), 0);
    side c = {0};
    c.keys = (keyring){.identity = "client1", .key = key1, .key_len = sizeof(key1)};
    side_open(&c, cctx, DX_TLS_CLIENT, sock);
    ck_assert_int_eq(dx_tls_set_psk_callback(c.t, psk_cb, &c.keys), 0);
    ck_assert_int_eq(dx_tls_start(c.t), 0);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(c.t), "ping from ours\n", 15), 0);
    void *until[] = {c.t, &peer, "ping from ours"};
    ck_assert_msg(h_peer_run(&peer, &sock, 1, secure_and_printed, until, 10000),
                  "s_server: %s; client: %s", h_peer_output(&peer), c.rec.error_name);
    h_peer_write(&peer, "pong from s_server\n");
    size_t want = 19;
    void *got[] = {&c.rec, &want};
    ck_assert_msg(h_peer_run(&peer, &sock, 1, received, got, 10000), "s_server: %s",
                  h_peer_output(&peer));
    ck_assert_uint_eq(c.rec.received, 19);
    ck_assert_int_eq(memcmp(c.rec.data, "pong from s_server\n", 19), 0);

    const char *cipher = tls13 ? "TLS_CHACHA20_POLY1305_SHA256" : PSK12;
    char line[96];
    snprintf(line, sizeof(line), "CIPHER is %s", cipher);
    ck_assert_msg(strstr(h_peer_output(&peer), line), "s_server: %s", h_peer_output(&peer));
    ck_assert_str_eq(cipher_of(c.t), cipher);
    ck_assert_str_eq(dx_tls_protocol(c.t), v);
    ck_assert(dx_tls_authorized(c.t));
    ck_assert_ptr_null(dx_tls_peer_cert(c.t));
    ck_assert_uint_eq(c.keys.calls, 1);
    if (tls13)
        ck_assert(c.keys.name_null[0]);
    else
        ck_assert_str_eq(c.keys.name[0], "hint-x");

    dx_stream_end(dx_tls_upper(c.t));
    h_peer_run(&peer, &sock, 1, lower_closed, c.t, 5000);
    ck_assert_int_eq(h_peer_stop(&peer, 5000), 0);
    h_peer_free(&peer);
    dx_tls_destroy(c.t);
    h_rec_assert_clean(&c.rec);
    h_rec_free(&c.rec);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* Our server over loopback: each line it reads is sent back upper-cased. */
typedef struct echo_server {
    int listener;
    dx_stream *sock;
    dx_tls *t;
    h_peer *peer;
    const char *text;
} echo_server;

static void upcase_echo(dx_stream *s, const uint8_t *d, size_t n, void *u)
{
    (void)u;
    char up[256];
    size_t k = n < sizeof(up) ? n : sizeof(up);
    for (size_t i = 0; i < k; i++)
        up[i] = (char)(d[i] >= 'a' && d[i] <= 'z' ? d[i] - 'a' + 'A' : d[i]);
    dx_stream_write(s, up, k);
}

static bool serve_until(void *arg)
{
    echo_server *es = arg;
    if (!es->t) {
        int fd = h_accept(es->listener, 0);
        if (fd >= 0)
            ck_assert_int_eq(dx_fd_stream_new(fd, fd, DX_FD_CLOSE, &es->sock), 0);
    }
    if (es->sock && !es->t)
        return true; /* the caller accepts it */
    if (es->sock)
        dx_fd_poll(&es->sock, 1, 10);
    return es->text && strstr(h_peer_output(es->peer), es->text);
}

/* 3.13 (psk-server), S-10, S-11: openssl s_client -psk against our
 * server without certificate: the server's callback gets s_client's
 * identity, s_client reports the hint (TLS 1.2) and the cipher our side
 * reports, and reads our echo. */
START_TEST(openssl_s_client_with_our_server)
{
    const char *v = versions[_i];
    bool tls13 = _i == 1;
    dx_tls_ctx *sctx = psk_ctx(v, false, false);
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(sctx, &srv), 0);
    keyring keys = {.known = "client1", .key = key1, .key_len = sizeof(key1)};
    ck_assert_int_eq(dx_tls_server_set_psk_callback(srv, psk_cb, &keys), 0);
    ck_assert_int_eq(dx_tls_server_set_psk_identity_hint(srv, "hint-x"), 0);
    unsigned port;
    echo_server es = {.listener = h_listen_loopback(&port)};
    char to[32];
    snprintf(to, sizeof(to), "127.0.0.1:%u", port);
    const char *argv12[] = {"openssl", "s_client", "-connect", to, "-psk", KEY1_HEX,
                            "-psk_identity", "client1", "-tls1_2", "-cipher", PSK12, NULL};
    const char *argv13[] = {"openssl", "s_client", "-connect", to, "-psk", KEY1_HEX,
                            "-psk_identity", "client1", "-tls1_3", NULL};
    h_peer peer;
    h_peer_start(&peer, tls13 ? argv13 : argv12);
    es.peer = &peer;
    ck_assert_msg(h_peer_run(&peer, NULL, 0, serve_until, &es, 10000), "s_client: %s",
                  h_peer_output(&peer));
    ck_assert_int_eq(dx_tls_server_accept(srv, es.sock, &es.t), 0);
    dx_stream_events ev = {.on_data = upcase_echo};
    dx_stream_set_events(dx_tls_upper(es.t), &ev, NULL);
    const char *cipher = tls13 ? "TLS_CHACHA20_POLY1305_SHA256" : PSK12;
    char line[96];
    snprintf(line, sizeof(line), "%s, Cipher is %s", v, cipher);
    es.text = line;
    ck_assert_msg(h_peer_run(&peer, NULL, 0, serve_until, &es, 10000), "s_client: %s",
                  h_peer_output(&peer));
    h_peer_write(&peer, "hello from s_client\n");
    es.text = "HELLO FROM S_CLIENT";
    ck_assert_msg(h_peer_run(&peer, NULL, 0, serve_until, &es, 10000), "s_client: %s",
                  h_peer_output(&peer));
    ck_assert_str_eq(cipher_of(es.t), cipher);
    ck_assert_str_eq(dx_tls_protocol(es.t), v);
    ck_assert(dx_tls_authorized(es.t));
    ck_assert_uint_eq(keys.calls, 1);
    ck_assert_str_eq(keys.name[0], "client1");
    if (!tls13)
        ck_assert_ptr_nonnull(strstr(h_peer_output(&peer), "PSK identity hint: hint-x"));
    /* EOF on its input: s_client closes; ours sees the end. */
    h_peer_close_input(&peer);
    int64_t end = h_now_ms() + 5000;
    while (h_now_ms() < end && !(dx_stream_state(dx_tls_upper(es.t)) & DX_STREAM_ENDED))
        dx_fd_poll(&es.sock, 1, 20);
    ck_assert(dx_stream_state(dx_tls_upper(es.t)) & DX_STREAM_ENDED);
    ck_assert_int_eq(h_peer_stop(&peer, 5000), 0);
    h_peer_free(&peer);
    dx_tls_destroy(es.t);
    close(es.listener);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(sctx);
}
END_TEST

Suite *tls_psk_suite(void)
{
    Suite *s = suite_create("tls_psk");
    TCase *tc = tcase_create("handshake");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, handshake_and_echo_without_certificates, 0, 2);
    tcase_add_loop_test(tc, largest_identity_and_key, 0, 2);
    tcase_add_loop_test(tc, identity_hint_in_tls12_only, 0, 6);
    tcase_add_test(tc, identity_hint_survives_sni_context);
    tcase_add_test(tc, tls13_key_after_hello_retry);
    tcase_add_test(tc, tls13_key_used_by_server_with_certificate);
    tcase_add_test(tc, tls13_ticket_of_psk_connection_resumes);
    suite_add_tcase(s, tc);
    tc = tcase_create("failures");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, unknown_identity_fails_with_alert, 0, 2);
    tcase_add_loop_test(tc, unknown_identity_tls13_falls_back_to_certificate, 0, 2);
    tcase_add_loop_test(tc, wrong_key_fails, 0, 2);
    tcase_add_loop_test(tc, answers_that_do_not_fit_fail, 0, 8);
    tcase_add_loop_test(tc, client_without_key, 0, 2);
    tcase_add_test(tc, removed_callback_is_not_called);
    tcase_add_test(tc, allocation_failures_end_cleanly);
    suite_add_tcase(s, tc);
    tc = tcase_create("options");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, setters_check_their_arguments);
    tcase_add_loop_test(tc, server_defaults_reach_accepted_connections, 0, 2);
    suite_add_tcase(s, tc);
    tc = tcase_create("peer");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, our_client_with_openssl_s_server, 0, 2);
    tcase_add_loop_test(tc, openssl_s_client_with_our_server, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}
