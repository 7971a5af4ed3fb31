/*
 * Pre-shared keys (include/duplex/tls_filter.h, "PRE-SHARED KEYS"): the
 * application's callback answers OpenSSL's PSK callbacks, set on each SSL
 * object: on servers the one callback of TLS 1.2 and TLS 1.3 (OpenSSL
 * turns its key into a TLS 1.3 session bound to TLS_AES_128_GCM_SHA256,
 * so SHA-256); on clients the TLS 1.2 callback and the TLS 1.3 session
 * callback, whose session is made here the same way.
 *
 * OpenSSL wants the key during the call, so the application's callback
 * runs inside OpenSSL; what it answers is checked before any byte of it
 * reaches OpenSSL's buffers, and our copy is cleared at once.
 */
#include "config.h"

#include <duplex/tls_filter.h>

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>

#include "alloc.h"
#include "errors.h"
#include "filter_internal.h"

/* Records the failure an answer caused, reported instead of OpenSSL's
 * internal error (the first one counts). */
static void psk_fail(dx_tls *f, const char *message)
{
    if (!f->psk.err)
        f->psk.err = dx_tls_or_oom(
            dx_error_new(DX_ETLS, "ERR_INVALID_ARG_VALUE", "tls", "%s", message));
}

#define STR_(x) #x
#define STR(x) STR_(x)

/* Is the suite's handshake hash SHA-256? */
static bool sha256_suite(const SSL_CIPHER *c)
{
    const EVP_MD *md = SSL_CIPHER_get_handshake_digest(c);
    return md && EVP_MD_get_type(md) == NID_sha256;
}

/* Asks the application for the client's key (hint: the server's, or
 * NULL). Returns the key's length with p filled, 0 for no key, or -1 for
 * an answer that does not fit (f->psk.err says why). */
static int ask_client(dx_tls *f, const char *hint, dx_tls_psk *p)
{
    memset(p, 0, sizeof(*p));
    if (f->psk.cb(f, hint, p, f->psk.user) != 0 || p->key_len == 0 || f->dead)
        return 0;
    size_t idlen = strnlen(p->identity, sizeof(p->identity));
    if (idlen == sizeof(p->identity)) {
        psk_fail(f, "PSK identity exceeds " STR(DX_TLS_PSK_IDENTITY_MAX) " bytes");
        return -1;
    }
    if (idlen == 0) {
        psk_fail(f, "PSK identity is empty");
        return -1;
    }
    if (p->key_len > DX_TLS_PSK_KEY_MAX) {
        psk_fail(f, "Pre-shared key exceeds " STR(DX_TLS_PSK_KEY_MAX) " bytes");
        return -1;
    }
    return (int)p->key_len;
}

/*
 * TLS 1.3: OpenSSL asks a client for an external key as it builds a
 * ClientHello (md: the hash a HelloRetryRequest fixed, else NULL). The
 * session is made here rather than by OpenSSL's PSK client callback so
 * that it carries the connection's session id context (our contexts set
 * one): a session without it is refused once the server took the key
 * ("attempt to reuse session in different context"). Returns 1 (with or
 * without a session) or 0 to fail the handshake.
 */
static int use_session_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id,
                          size_t *idlen, SSL_SESSION **sess)
{
    *sess = NULL;
    dx_tls *f = dx_tls_of_ssl(ssl);
    if (!f || !f->psk.cb || f->dead)
        return 1;
    dx_tls_psk p;
    int len = ask_client(f, NULL, &p);
    static const unsigned char aes128gcm_sha256[] = {0x13, 0x01};
    const SSL_CIPHER *cipher = len > 0 ? SSL_CIPHER_find(ssl, aes128gcm_sha256) : NULL;
    SSL_SESSION *cur = SSL_get_session(ssl), *s = NULL;
    int ok = len >= 0;
    if (cipher && (!md || EVP_MD_get_type(md) == NID_sha256)) {
        unsigned ctx_len = 0;
        const unsigned char *ctx = cur ? SSL_SESSION_get0_id_context(cur, &ctx_len) : NULL;
        s = SSL_SESSION_new();
        if (!s || !SSL_SESSION_set1_master_key(s, p.key, p.key_len) ||
            !SSL_SESSION_set_cipher(s, cipher) ||
            !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION) ||
            (ctx_len && !SSL_SESSION_set1_id_context(s, ctx, ctx_len))) {
            SSL_SESSION_free(s);
            s = NULL;
            f->oom = true;
            ok = 0;
        }
    }
    if (s) {
        memcpy(f->psk.identity, p.identity, sizeof(f->psk.identity));
        *id = (const unsigned char *)f->psk.identity; /* OpenSSL copies it */
        *idlen = strlen(f->psk.identity);
        *sess = s;
        f->psk.given = true;
    }
    OPENSSL_cleanse(&p, sizeof(p));
    return ok;
}

/* TLS 1.2: OpenSSL asks a client for the key of a PSK suite, with the
 * server's hint. Returns the key's length, 0 for none, or more than
 * max_psk_len to fail the handshake. */
static unsigned client_cb(SSL *ssl, const char *hint, char *identity,
                          unsigned max_identity_len, unsigned char *key,
                          unsigned max_psk_len)
{
    dx_tls *f = dx_tls_of_ssl(ssl);
    /* OpenSSL also calls it for a ClientHello that use_session_cb gave no
     * key to: the application was asked already. */
    if (!f || !f->psk.cb || f->dead || SSL_get_state(ssl) == TLS_ST_CW_CLNT_HELLO)
        return 0;
    dx_tls_psk p;
    int len = ask_client(f, hint, &p);
    unsigned out = 0;
    if (len < 0 || strlen(p.identity) > max_identity_len || p.key_len > max_psk_len) {
        out = max_psk_len + 1;
    } else if (len > 0) {
        memcpy(identity, p.identity, strlen(p.identity) + 1);
        memcpy(key, p.key, p.key_len);
        out = (unsigned)p.key_len;
        f->psk.given = true;
    }
    OPENSSL_cleanse(&p, sizeof(p));
    return out;
}

/* OpenSSL asks a server for the key of the client's identity. */
static unsigned server_cb(SSL *ssl, const char *identity, unsigned char *key,
                          unsigned max_psk_len)
{
    dx_tls *f = dx_tls_of_ssl(ssl);
    if (!f || !f->psk.cb || f->dead)
        return 0;
    dx_tls_psk p;
    memset(&p, 0, sizeof(p));
    unsigned out = 0;
    int rc = f->psk.cb(f, identity ? identity : "", &p, f->psk.user);
    if (f->dead) {
        out = 0;
    } else if (rc != 0 || p.key_len == 0) {
        f->psk.refused = true; /* TLS 1.2: OpenSSL sends unknown_psk_identity */
    } else if (p.key_len > DX_TLS_PSK_KEY_MAX || p.key_len > max_psk_len) {
        psk_fail(f, "Pre-shared key exceeds " STR(DX_TLS_PSK_KEY_MAX) " bytes");
        out = max_psk_len + 1;
    } else {
        memcpy(key, p.key, p.key_len);
        out = (unsigned)p.key_len;
        f->psk.given = true;
    }
    OPENSSL_cleanse(&p, sizeof(p));
    return out;
}

/*
 * The SHA-256 suites of the connection's TLS 1.3 list go first, the rest
 * keeping their order: OpenSSL binds a key from the PSK callbacks to
 * SHA-256, and a server that chose a SHA-384 suite would ignore it (it
 * reorders so by itself only on servers without a certificate).
 */
static int prefer_sha256(SSL *ssl)
{
    STACK_OF(SSL_CIPHER) *sk = SSL_get_ciphers(ssl);
    char list[1024];
    size_t used = 0;
    bool other_first = false, seen_other = false;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; sk && i < sk_SSL_CIPHER_num(sk); i++) {
            const SSL_CIPHER *c = sk_SSL_CIPHER_value(sk, i);
            if (strcmp(SSL_CIPHER_get_version(c), "TLSv1.3") != 0)
                continue;
            bool sha256 = sha256_suite(c);
            if (pass == 0) {
                if (!sha256)
                    seen_other = true;
                else if (seen_other)
                    other_first = true;
            }
            if (sha256 != (pass == 0))
                continue;
            const char *name = SSL_CIPHER_get_name(c);
            size_t n = strlen(name);
            if (used + n + 2 > sizeof(list))
                return 0; /* cannot be: five suites exist */
            if (used)
                list[used++] = ':';
            memcpy(list + used, name, n);
            used += n;
        }
    }
    list[used] = '\0';
    if (!other_first)
        return 0; /* already in that order, or nothing to order */
    return SSL_set_ciphersuites(ssl, list) ? 0 : DX_ENOMEM;
}

int dx_tls_psk_start(dx_tls *f)
{
    if (!f->psk.cb)
        return 0;
    if (f->role == DX_TLS_CLIENT) {
        SSL_set_psk_use_session_callback(f->ssl, use_session_cb);
        SSL_set_psk_client_callback(f->ssl, client_cb);
    } else
        SSL_set_psk_server_callback(f->ssl, server_cb);
    return prefer_sha256(f->ssl);
}

int dx_tls_psk_hello_cb(SSL *ssl, int *al, void *arg)
{
    (void)arg;
    dx_tls *f = dx_tls_of_ssl(ssl);
    if (!f || f->role != DX_TLS_SERVER)
        return SSL_TLSEXT_ERR_NOACK; /* what OpenSSL does without a callback */
    /* The hint lives in the SSL's certificate data, which an SNI context
     * switch replaced: set it now, before the ServerKeyExchange. */
    if (f->psk.hint && !SSL_use_psk_identity_hint(ssl, f->psk.hint)) {
        f->oom = true;
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    /* TLS 1.3: OpenSSL ignores an unknown identity and goes on to a
     * certificate; with none it would fail with handshake_failure. */
    if (f->psk.refused && SSL_version(ssl) == TLS1_3_VERSION && !SSL_session_reused(ssl) &&
        !SSL_get_certificate(ssl)) {
        if (!f->psk.err)
            f->psk.err = dx_tls_or_oom(dx_error_new(DX_ETLS, "ERR_SSL_PSK_IDENTITY_NOT_FOUND",
                                                    "tls", "psk identity not found"));
        *al = SSL_AD_UNKNOWN_PSK_IDENTITY;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

bool dx_tls_psk_handshake_done(dx_tls *f)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(f->ssl);
    bool reused = SSL_session_reused(f->ssl) != 0;
    bool auth, external;
    if (!c)
        return false;
    if (SSL_version(f->ssl) < TLS1_3_VERSION) {
        /* A PSK suite: the key authenticated this handshake, or the one
         * whose session it resumes. */
        auth = SSL_CIPHER_get_auth_nid(c) == NID_auth_psk;
        external = auth && !reused;
    } else if (f->role == DX_TLS_CLIENT) {
        /* A TLS 1.3 server shows a certificate unless a key stands for
         * it: an external key (a session without ticket), or a ticket of
         * a connection an external key authenticated. */
        SSL_SESSION *s = SSL_get_session(f->ssl);
        auth = reused && !SSL_get0_peer_certificate(f->ssl);
        external = auth && f->psk.given && s && !SSL_SESSION_has_ticket(s);
    } else {
        /* The server's key was taken: the session is ours, of SHA-256,
         * and no client certificate came with it. */
        auth = external = f->psk.given && reused && sha256_suite(c) &&
                          !SSL_get0_peer_certificate(f->ssl);
    }
    f->psk.authenticated = auth;
    f->psk.external = external;
    return auth;
}

void dx_tls_psk_free(dx_tls *f)
{
    dx_free(f->psk.hint);
    f->psk.hint = NULL;
    dx_error_free(f->psk.err);
    f->psk.err = NULL;
}

/* ---- public calls -------------------------------------------------------- */

int dx_tls_set_psk_callback(dx_tls *t, dx_tls_psk_cb cb, void *user)
{
    if (!t)
        return DX_EINVAL;
    if (t->started || t->dead)
        return DX_ESTATE;
    t->psk.cb = cb;
    t->psk.user = cb ? user : NULL;
    return 0;
}

int dx_tls_set_psk_identity_hint(dx_tls *t, const char *hint)
{
    if (!t)
        return DX_EINVAL;
    if (t->started || t->dead)
        return DX_ESTATE;
    if (t->role != DX_TLS_SERVER ||
        (hint && (!*hint || strlen(hint) > DX_TLS_PSK_IDENTITY_MAX)))
        return DX_EINVAL;
    char *copy = NULL;
    if (hint && !(copy = dx_strdup(hint)))
        return DX_ENOMEM;
    dx_free(t->psk.hint);
    t->psk.hint = copy;
    return 0;
}
