/*
 * OCSP stapling (include/duplex/tls_filter.h): a server asks the
 * application for the response to staple, a client receives it and may
 * verify it.
 *
 * Server. OpenSSL asks for the staple in its status callback, after it
 * chose the certificate to present, and wants the answer at once. The
 * handshake can wait earlier, in the certificate callback, which runs
 * once per full handshake after the ClientHello was read (its
 * status_request parsed, a resumption ruled out) and after the SNI choice
 * was applied in the ClientHello callback: the certificates are those of
 * the context SNI chose. The certificate to present is chosen only after
 * it (by signature algorithm and cipher), so the application is asked
 * about each certificate the context holds (one, usually), the
 * certificate callback returns -1 until every answer came, and the status
 * callback staples the answer for the certificate chosen.
 *
 * Client. The status callback runs once the server's first flight was
 * read: after ServerHelloDone in TLS 1.2, after the server's Finished in
 * TLS 1.3 (where the staple came inside the Certificate message), in both
 * cases after the chain was verified, so the verified chain is there to
 * check the response against. A response that does not hold is recorded
 * as a verification failure; the callback's refusal fails the handshake
 * with a bad_certificate_status_response alert.
 */
#include "config.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "alloc.h"
#include "cert_internal.h"
#include "errors.h"
#include "filter_internal.h"

/* Clock skew allowed on thisUpdate and nextUpdate, in seconds. */
#define OCSP_SKEW 300L

/* ---- options and answers ----------------------------------------------------- */

int dx_tls_set_ocsp(dx_tls *t, unsigned flags)
{
    BEFORE_START(t);
    if (t->role != DX_TLS_CLIENT ||
        (flags & ~(DX_TLS_OCSP_REQUEST | DX_TLS_OCSP_VERIFY | DX_TLS_OCSP_MUST_STAPLE)))
        return DX_EINVAL;
    if (flags & DX_TLS_OCSP_MUST_STAPLE)
        flags |= DX_TLS_OCSP_VERIFY;
    if (flags & DX_TLS_OCSP_VERIFY)
        flags |= DX_TLS_OCSP_REQUEST;
    /* -1: no status_request (OpenSSL's TLSEXT_STATUSTYPE_nothing) */
    SSL_set_tlsext_status_type(t->ssl, (flags & DX_TLS_OCSP_REQUEST) ? TLSEXT_STATUSTYPE_ocsp
                                                                     : -1);
    t->ocsp.flags = flags;
    return 0;
}

int dx_tls_set_ocsp_callback(dx_tls *t, dx_tls_ocsp_cb cb, void *user)
{
    BEFORE_START(t);
    if (t->role != DX_TLS_SERVER)
        return DX_EINVAL;
    t->ocsp.cb = cb;
    t->ocsp.user = cb ? user : NULL;
    return 0;
}

int dx_tls_ocsp_done(dx_tls_pending *p, const void *response, size_t len, dx_error *err)
{
    if (!p || p->kind != PENDING_OCSP ||
        (response && (len == 0 || len > DX_TLS_OCSP_MAX_RESPONSE))) {
        dx_error_free(err);
        return DX_EINVAL;
    }
    dx_tls *f = p->f;
    size_t i = p->index;
    dx_free(p);
    if (!f) { /* the connection went */
        dx_error_free(err);
        return 0;
    }
    tls_ocsp *o = &f->ocsp;
    ocsp_item *it = &o->items[i];
    it->pending = NULL;
    if (f->dead || o->state != SNI_WAITING) {
        /* Destroyed, or another answer already failed the handshake. */
        dx_error_free(err);
        return 0;
    }
    int rc = 0;
    if (err) {
        dx_error_default_layer(err, "tls");
        o->err = err;
        o->state = SNI_FAILED;
    } else {
        if (response) {
            it->resp = dx_malloc(len);
            if (it->resp) {
                memcpy(it->resp, response, len);
                it->len = len;
            } else {
                o->err = (dx_error *)dx_error_oom();
                o->state = SNI_FAILED;
                rc = DX_ENOMEM;
            }
        }
        it->answered = true;
        if (rc == 0 && --o->waiting == 0)
            o->state = SNI_DONE;
    }
    if (o->state != SNI_WAITING)
        dx_tls_run(f); /* the handshake goes on (later, if dx_tls_run() is busy) */
    return rc;
}

int dx_tls_get_ocsp_response(const dx_tls *t, const uint8_t **der, size_t *len)
{
    if (!t || !der || !len)
        return DX_EINVAL;
    *der = t->ocsp.resp;
    *len = t->ocsp.len;
    return 0;
}

dx_tls_ocsp_result dx_tls_get_ocsp_result(const dx_tls *t)
{
    return t ? t->ocsp.result : DX_TLS_OCSP_UNCHECKED;
}

void dx_tls_ocsp_release(dx_tls *f)
{
    tls_ocsp *o = &f->ocsp;
    for (size_t i = 0; i < o->n_items; i++) {
        ocsp_item *it = &o->items[i];
        if (it->pending)
            it->pending->f = NULL; /* a late answer only frees it */
        X509_free(it->cert);
        X509_free(it->issuer);
        dx_free(it->resp);
    }
    dx_free(o->items);
    dx_free(o->resp);
    dx_error_free(o->err);
    memset(o, 0, sizeof(*o));
}

/* ---- server: asking, then stapling ------------------------------------------- */

/* The issuer of x: in its chain, else in store; NULL for a self-signed
 * certificate or one whose issuer is in neither. false when memory ran
 * out. */
static bool find_issuer(X509_STORE *store, X509 *x, STACK_OF(X509) *chain, X509 **out)
{
    *out = NULL;
    if (X509_get_extension_flags(x) & EXFLAG_SS)
        return true; /* self-signed: Node gives no issuer either */
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *c = sk_X509_value(chain, i);
        if (X509_check_issued(c, x) == X509_V_OK) {
            if (!X509_up_ref(c))
                return false;
            *out = c;
            return true;
        }
    }
    X509_STORE_CTX *sc = X509_STORE_CTX_new();
    if (!sc)
        return false;
    if (store && X509_STORE_CTX_init(sc, store, NULL, NULL) &&
        X509_STORE_CTX_get1_issuer(out, sc, x) != 1)
        *out = NULL;
    X509_STORE_CTX_free(sc);
    return true;
}

/*
 * The issuers of a context's certificates, found once when the context is
 * built (it does not change afterwards), so that a handshake does not
 * search the trust store (a directory of the system's, maybe) each time.
 * Kept in the SSL_CTX's ex_data.
 */
typedef struct ctx_issuers {
    size_t n;
    struct {
        X509 *cert, *issuer;
    } e[];
} ctx_issuers;

static CRYPTO_ONCE issuers_once = CRYPTO_ONCE_STATIC_INIT;
static int issuers_index = -1;

static void free_issuers(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    ctx_issuers *t = ptr;
    for (size_t i = 0; t && i < t->n; i++) {
        X509_free(t->e[i].cert);
        X509_free(t->e[i].issuer);
    }
    dx_free(t);
}

static void make_issuers_index(void)
{
    issuers_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_issuers);
}

/* Calls each(x, chain, arg) for every certificate x (with its chain) of
 * an SSL object (ctx NULL) or of a context (ssl NULL), and puts OpenSSL's
 * current certificate back as it was. false if each failed. */
static bool each_cert(SSL *ssl, SSL_CTX *ctx,
                      bool (*each)(X509 *x, STACK_OF(X509) *chain, void *arg), void *arg)
{
    X509 *orig = ssl ? SSL_get_certificate(ssl) : SSL_CTX_get0_certificate(ctx);
    bool ok = true;
    long op = SSL_CERT_SET_FIRST;
    while (ok && (ssl ? SSL_set_current_cert(ssl, op) : SSL_CTX_set_current_cert(ctx, op))) {
        op = SSL_CERT_SET_NEXT;
        STACK_OF(X509) *chain = NULL;
        X509 *x;
        if (ssl) {
            x = SSL_get_certificate(ssl);
            SSL_get0_chain_certs(ssl, &chain);
        } else {
            x = SSL_CTX_get0_certificate(ctx);
            SSL_CTX_get0_chain_certs(ctx, &chain);
        }
        ok = x && each(x, chain, arg);
    }
    /* Back to the certificate that was current. */
    op = SSL_CERT_SET_FIRST;
    while (orig && (ssl ? SSL_set_current_cert(ssl, op) : SSL_CTX_set_current_cert(ctx, op)) &&
           (ssl ? SSL_get_certificate(ssl) : SSL_CTX_get0_certificate(ctx)) != orig)
        op = SSL_CERT_SET_NEXT;
    return ok;
}

static bool count_cert(X509 *x, STACK_OF(X509) *chain, void *arg)
{
    (void)x, (void)chain;
    (*(size_t *)arg)++;
    return true;
}

typedef struct issuers_build {
    ctx_issuers *t;
    size_t max;
    X509_STORE *store;
} issuers_build;

static bool add_issuer(X509 *x, STACK_OF(X509) *chain, void *arg)
{
    issuers_build *b = arg;
    ctx_issuers *t = b->t;
    if (t->n == b->max || !X509_up_ref(x))
        return false;
    t->e[t->n].cert = x;
    t->e[t->n].issuer = NULL;
    t->n++;
    return find_issuer(b->store, x, chain, &t->e[t->n - 1].issuer);
}

int dx_tls_ocsp_ctx_ready(SSL_CTX *ctx)
{
    if (!CRYPTO_THREAD_run_once(&issuers_once, make_issuers_index) || issuers_index < 0)
        return DX_ENOMEM;
    size_t n = 0;
    each_cert(NULL, ctx, count_cert, &n);
    if (n == 0)
        return 0;
    issuers_build b = {dx_calloc(1, sizeof(ctx_issuers) + n * sizeof(b.t->e[0])), n,
                       SSL_CTX_get_cert_store(ctx)};
    if (!b.t)
        return DX_ENOMEM;
    bool ok = each_cert(NULL, ctx, add_issuer, &b) && b.t->n == n &&
              SSL_CTX_set_ex_data(ctx, issuers_index, b.t);
    ERR_clear_error();
    if (!ok) {
        free_issuers(NULL, b.t, NULL, 0, 0, NULL);
        return DX_ENOMEM;
    }
    return 0;
}

typedef struct collecting {
    tls_ocsp *o;
    size_t max;
    const ctx_issuers *known;
    X509_STORE *store;
} collecting;

static bool collect_one(X509 *x, STACK_OF(X509) *chain, void *arg)
{
    collecting *c = arg;
    tls_ocsp *o = c->o;
    if (o->n_items == c->max || !X509_up_ref(x))
        return false;
    ocsp_item *it = &o->items[o->n_items++];
    it->cert = x;
    for (size_t i = 0; c->known && i < c->known->n; i++)
        if (c->known->e[i].cert == x) { /* found when the context was built */
            it->issuer = c->known->e[i].issuer;
            return !it->issuer || X509_up_ref(it->issuer);
        }
    return find_issuer(c->store, x, chain, &it->issuer);
}

/* The certificates the connection may present (those of the context SNI
 * chose), each with its issuer. */
static bool collect(dx_tls *f, SSL *ssl)
{
    size_t n = 0;
    each_cert(ssl, NULL, count_cert, &n);
    if (n == 0)
        return true;
    tls_ocsp *o = &f->ocsp;
    o->items = dx_calloc(n, sizeof(*o->items));
    if (!o->items)
        return false;
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    collecting c = {o, n, issuers_index >= 0 ? SSL_CTX_get_ex_data(ctx, issuers_index) : NULL,
                    SSL_CTX_get_cert_store(ctx)};
    return each_cert(ssl, NULL, collect_one, &c);
}

/*
 * Every context's certificate callback. On a server whose client asked
 * for a staple in a full handshake: collects the certificates, has
 * dx_tls_ocsp_ask() put the question to the application outside OpenSSL,
 * and suspends the handshake (-1) until every answer came; 0 fails it.
 */
int dx_tls_ocsp_cert_cb(SSL *ssl, void *arg)
{
    (void)arg;
    dx_tls *f = dx_tls_of_ssl(ssl);
    if (!f || f->role != DX_TLS_SERVER)
        return 1;
    tls_ocsp *o = &f->ocsp;
    switch (o->state) {
    case SNI_NONE:
        if (!o->cb || SSL_get_tlsext_status_type(ssl) != TLSEXT_STATUSTYPE_ocsp)
            return 1;
        if (!collect(f, ssl)) {
            ERR_clear_error();
            f->oom = true;
            return 0;
        }
        ERR_clear_error();
        o->waiting = o->n_items;
        o->state = o->n_items ? SNI_WAITING : SNI_DONE;
        return o->n_items ? -1 : 1;
    case SNI_WAITING:
        return -1;
    case SNI_FAILED:
        return 0;
    default:
        return 1;
    }
}

void dx_tls_ocsp_ask(dx_tls *f)
{
    tls_ocsp *o = &f->ocsp;
    for (size_t i = 0; i < o->n_items; i++) {
        if (o->state != SNI_WAITING || f->dead || f->failed)
            return;
        ocsp_item *it = &o->items[i];
        if (it->asked)
            continue;
        dx_tls_pending *p = dx_calloc(1, sizeof(*p));
        dx_tls_cert *cert = NULL, *issuer = NULL;
        if (!p || dx_tls_cert_wrap(it->cert, &cert) != 0 ||
            (it->issuer && dx_tls_cert_wrap(it->issuer, &issuer) != 0)) {
            dx_free(p);
            dx_tls_cert_free(cert);
            o->err = (dx_error *)dx_error_oom();
            o->state = SNI_FAILED;
            dx_tls_run(f); /* fails the handshake */
            return;
        }
        p->f = f;
        p->kind = PENDING_OCSP;
        p->index = i;
        it->asked = true;
        it->pending = p;
        o->cb(f, cert, issuer, p, o->user);
        dx_tls_cert_free(cert);
        dx_tls_cert_free(issuer);
    }
}

/* The status callback of a server: staples the answer for the certificate
 * OpenSSL chose. */
static int server_status(dx_tls *f, SSL *ssl)
{
    tls_ocsp *o = &f->ocsp;
    X509 *x = SSL_get_certificate(ssl);
    const ocsp_item *found = NULL;
    for (size_t i = 0; x && i < o->n_items && !found; i++)
        if (o->items[i].cert == x || X509_cmp(o->items[i].cert, x) == 0)
            found = &o->items[i];
    if (!found || !found->resp)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned char *copy = OPENSSL_malloc(found->len);
    if (!copy) {
        f->oom = true;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    memcpy(copy, found->resp, found->len);
    if (!SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)found->len)) {
        OPENSSL_free(copy);
        f->oom = true;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ---- client: receiving and checking ------------------------------------------ */

static dx_error *ocsp_error(const char *code, const char *message)
{
    return dx_tls_or_oom(dx_error_new(DX_ETLS, code, "tls", "%s", message));
}

/* An error whose detail is OpenSSL's reason for the failure. */
static dx_error *ocsp_error_openssl(const char *code, const char *message)
{
    unsigned long e = ERR_peek_last_error();
    dx_error *err = ocsp_error(code, message);
    if (e && err != dx_error_oom()) {
        char text[256];
        ERR_error_string_n(e, text, sizeof(text));
        dx_error_set_detail(err, "%s", text);
    }
    return err;
}

/* RFC 7633: does x carry the TLS feature status_request? An extension
 * that cannot be read counts as one that does. */
static bool must_staple(X509 *x)
{
    if (X509_get_ext_by_NID(x, NID_tlsfeature, -1) < 0)
        return false;
    TLS_FEATURE *features = X509_get_ext_d2i(x, NID_tlsfeature, NULL, NULL);
    if (!features)
        return true;
    bool yes = false;
    for (int i = 0; i < sk_ASN1_INTEGER_num(features); i++)
        if (ASN1_INTEGER_get(sk_ASN1_INTEGER_value(features, i)) ==
            TLSEXT_TYPE_status_request)
            yes = true;
    TLS_FEATURE_free(features);
    return yes;
}

/* The status in bs for leaf (issued by issuer), whatever hash its CertID
 * was made with; NULL if there is none. */
static OCSP_SINGLERESP *find_status(OCSP_BASICRESP *bs, X509 *leaf, X509 *issuer)
{
    for (int i = 0; i < OCSP_resp_count(bs); i++) {
        OCSP_SINGLERESP *single = OCSP_resp_get0(bs, i);
        OCSP_CERTID *cid = (OCSP_CERTID *)OCSP_SINGLERESP_get0_id(single);
        ASN1_OBJECT *md_oid = NULL;
        if (!cid || !OCSP_id_get0_info(NULL, &md_oid, NULL, NULL, cid) || !md_oid)
            continue;
        const EVP_MD *md = EVP_get_digestbyobj(md_oid);
        if (!md)
            continue;
        OCSP_CERTID *mine = OCSP_cert_to_id(md, leaf, issuer);
        bool same = mine && OCSP_id_cmp(mine, cid) == 0;
        OCSP_CERTID_free(mine);
        if (same)
            return single;
    }
    return NULL;
}

/* Checks the staple against the verified chain; NULL when it holds. */
static dx_error *check_staple(dx_tls *f, SSL *ssl, dx_tls_ocsp_result *result)
{
    tls_ocsp *o = &f->ocsp;
    STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
    X509 *leaf = chain && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
    if (!leaf) {
        *result = DX_TLS_OCSP_UNCHECKED; /* nothing was verified to check against */
        return NULL;
    }
    if (!o->resp) {
        *result = DX_TLS_OCSP_NO_STAPLE;
        if ((o->flags & DX_TLS_OCSP_MUST_STAPLE) && must_staple(leaf))
            return ocsp_error("ERR_TLS_OCSP_MISSING",
                              "the server's certificate requires a stapled OCSP "
                              "response (must-staple) and none came");
        return NULL;
    }
    *result = DX_TLS_OCSP_INVALID;
    dx_error *err = NULL;
    OCSP_BASICRESP *bs = NULL;
    const unsigned char *p = o->resp;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)o->len);
    if (!resp || p != o->resp + o->len) {
        err = ocsp_error_openssl("ERR_TLS_OCSP_INVALID_RESPONSE",
                                 "the stapled OCSP response cannot be read");
        goto done;
    }
    int rstatus = OCSP_response_status(resp);
    if (rstatus != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        err = dx_tls_or_oom(dx_error_new(DX_ETLS, "ERR_TLS_OCSP_INVALID_RESPONSE", "tls",
                                         "the stapled OCSP response is an error: %s",
                                         OCSP_response_status_str(rstatus)));
        goto done;
    }
    bs = OCSP_response_get1_basic(resp);
    if (!bs) {
        err = ocsp_error_openssl("ERR_TLS_OCSP_INVALID_RESPONSE",
                                 "the stapled OCSP response is not a basic response");
        goto done;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl));
    ERR_clear_error();
    if (OCSP_basic_verify(bs, chain, store, 0) <= 0) {
        err = ocsp_error_openssl("ERR_TLS_OCSP_BAD_SIGNATURE",
                                 "the stapled OCSP response is not signed by the "
                                 "certificate's issuer or its responder");
        goto done;
    }
    X509 *issuer = sk_X509_num(chain) > 1 ? sk_X509_value(chain, 1) : leaf;
    OCSP_SINGLERESP *single = find_status(bs, leaf, issuer);
    if (!single) {
        err = ocsp_error("ERR_TLS_OCSP_WRONG_CERTIFICATE",
                         "the stapled OCSP response holds no status for the "
                         "server's certificate");
        goto done;
    }
    int reason;
    ASN1_GENERALIZEDTIME *revoked_at, *this_update, *next_update;
    int status = OCSP_single_get0_status(single, &reason, &revoked_at, &this_update,
                                         &next_update);
    ERR_clear_error();
    if (!OCSP_check_validity(this_update, next_update, OCSP_SKEW, -1)) {
        int why = ERR_GET_REASON(ERR_peek_last_error());
        if (why == OCSP_R_STATUS_EXPIRED)
            err = ocsp_error("ERR_TLS_OCSP_EXPIRED",
                             "the stapled OCSP response has expired (nextUpdate passed)");
        else if (why == OCSP_R_STATUS_NOT_YET_VALID)
            err = ocsp_error("ERR_TLS_OCSP_NOT_YET_VALID",
                             "the stapled OCSP response is not yet valid (thisUpdate "
                             "in the future)");
        else
            err = ocsp_error_openssl("ERR_TLS_OCSP_INVALID_RESPONSE",
                                     "the stapled OCSP response has bad update times");
        goto done;
    }
    switch (status) {
    case V_OCSP_CERTSTATUS_GOOD:
        *result = DX_TLS_OCSP_GOOD;
        break;
    case V_OCSP_CERTSTATUS_REVOKED:
        *result = DX_TLS_OCSP_REVOKED;
        err = ocsp_error("CERT_REVOKED", "certificate revoked (stapled OCSP response)");
        break;
    case V_OCSP_CERTSTATUS_UNKNOWN:
        *result = DX_TLS_OCSP_UNKNOWN;
        err = ocsp_error("ERR_TLS_OCSP_STATUS_UNKNOWN",
                         "the OCSP responder does not know the server's certificate");
        break;
    default:
        err = ocsp_error("ERR_TLS_OCSP_INVALID_RESPONSE",
                         "the stapled OCSP response has no valid status");
        break;
    }
done:
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    ERR_clear_error();
    return err;
}

/* The status callback of a client: keeps the staple and, if asked to,
 * checks it. 1 goes on, 0 refuses the server, -1 is out of memory. */
static int client_status(dx_tls *f, SSL *ssl)
{
    tls_ocsp *o = &f->ocsp;
    const unsigned char *der = NULL;
    long n = SSL_get_tlsext_status_ocsp_resp(ssl, &der);
    dx_free(o->resp);
    o->resp = NULL;
    o->len = 0;
    if (der && n > 0) {
        if (!(o->resp = dx_malloc((size_t)n))) {
            f->oom = true;
            return -1;
        }
        memcpy(o->resp, der, (size_t)n);
        o->len = (size_t)n;
    }
    if (!(o->flags & DX_TLS_OCSP_VERIFY))
        return 1;
    if (SSL_session_reused(ssl) || f->verify_err) {
        o->result = DX_TLS_OCSP_UNCHECKED;
        return 1;
    }
    dx_error *err = check_staple(f, ssl, &o->result);
    if (!err)
        return 1;
    o->failed = true;
    dx_tls_set_verify_error(f, err);
    f->verify_result = o->result == DX_TLS_OCSP_REVOKED ? X509_V_ERR_CERT_REVOKED
                                                        : X509_V_ERR_OCSP_VERIFY_FAILED;
    SSL_set_verify_result(ssl, f->verify_result);
    f->authorized = false;
    return f->reject_unauthorized ? 0 : 1;
}

int dx_tls_ocsp_status_cb(SSL *ssl, void *arg)
{
    (void)arg;
    dx_tls *f = dx_tls_of_ssl(ssl);
    if (SSL_is_server(ssl))
        return f ? server_status(f, ssl) : SSL_TLSEXT_ERR_NOACK;
    return f ? client_status(f, ssl) : 1;
}

void dx_tls_ocsp_tell(dx_tls *f)
{
    tls_ocsp *o = &f->ocsp;
    if (f->role != DX_TLS_CLIENT || !(o->flags & DX_TLS_OCSP_REQUEST) || o->told)
        return;
    o->told = true;
    if (f->ev.on_ocsp_response)
        f->ev.on_ocsp_response(f, o->resp, o->len, f->user);
}
