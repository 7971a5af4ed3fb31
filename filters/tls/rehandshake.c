/*
 * Handshakes on an open connection: TLS 1.2 renegotiation (either side
 * starts it; Node's renegotiate(), disableRenegotiation() and the client
 * renegotiation limit) and TLS 1.3 post-handshake client authentication.
 *
 * OpenSSL runs these handshakes inside the SSL_read() and SSL_write() calls
 * of the engine. What it tells from inside (the info callback: a handshake
 * started or ended; the message callback: the client's Finished of a
 * post-handshake authentication) only sets flags here; the engine's step
 * then settles the outcome and queues the caller's callback, which runs
 * outside OpenSSL like every event.
 */
#include "config.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "alloc.h"
#include "errors.h"
#include "filter_internal.h"

#define RENEG_LIMIT_MAX 1000u

static bool open_and_secure(const dx_tls *t)
{
    return t->ssl && t->hs_done && !t->failed && !t->dead && !t->end_requested &&
           !t->notify_sent && !(dx_stream_state(t->upper) & DX_STREAM_CLOSED);
}

/* The peer is verified anew: what the first handshake found no longer
 * counts. */
static void forget_verification(dx_tls *f)
{
    dx_error_free(f->verify_err);
    f->verify_err = NULL;
    f->verify_result = X509_V_OK;
    f->authorized = false;
}

/* ---- options --------------------------------------------------------- */

int dx_tls_disable_renegotiation(dx_tls *t)
{
    if (!t)
        return DX_EINVAL;
    t->re.disabled = true;
    if (t->ssl)
        SSL_set_options(t->ssl, SSL_OP_NO_RENEGOTIATION);
    return 0;
}

int dx_tls_set_client_renegotiation(dx_tls *t, bool allow, unsigned limit, uint64_t window_ms)
{
    if (!t || t->role != DX_TLS_SERVER || limit > RENEG_LIMIT_MAX)
        return DX_EINVAL;
    if (t->started || t->dead)
        return DX_ESTATE;
    t->re.allow_client = allow;
    t->re.limit = limit;
    t->re.window = window_ms;
    return 0;
}

int dx_tls_set_post_handshake_auth(dx_tls *t, bool offer)
{
    if (!t || t->role != DX_TLS_CLIENT)
        return DX_EINVAL;
    if (t->started || t->dead)
        return DX_ESTATE;
    t->re.offer_pha = offer;
    return 0;
}

void dx_tls_rehandshake_start(dx_tls *f)
{
    if (f->role == DX_TLS_CLIENT && f->re.offer_pha)
        SSL_set_post_handshake_auth(f->ssl, 1);
    if (f->role == DX_TLS_SERVER && f->re.allow_client)
        SSL_set_options(f->ssl, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
    /* A renegotiation is a full handshake: a server that asks for a
     * certificate gets one, and both verify each other anew. */
    if (f->role == DX_TLS_SERVER)
        SSL_set_options(f->ssl, SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
    if (f->re.disabled)
        SSL_set_options(f->ssl, SSL_OP_NO_RENEGOTIATION);
}

/* ---- starting one ------------------------------------------------------ */

int dx_tls_renegotiate(dx_tls *t, const dx_tls_renegotiate_opts *opts, dx_tls_done_cb cb,
                       void *user)
{
    if (!t || !cb)
        return DX_EINVAL;
    if (!open_and_secure(t) || t->re.cb || t->re.disabled)
        return DX_ESTATE;
    if (SSL_version(t->ssl) >= TLS1_3_VERSION)
        return DX_ENOTSUP;
    ERR_clear_error();
    if (!SSL_renegotiate(t->ssl)) {
        ERR_clear_error();
        return DX_ESTATE;
    }
    /* Only once it is sure to happen: a refusal leaves the settings. */
    if (opts) {
        t->reject_unauthorized = opts->reject_unauthorized;
        if (t->role == DX_TLS_SERVER) {
            t->request_cert = opts->request_cert;
            dx_tls_apply_client_verification(t);
        }
    }
    t->re.cb = cb;
    t->re.cb_user = user;
    t->re.pha = false;
    t->re.want = true;
    t->re.deadline = t->hs_timeout ? dx_tls_now(t) + t->hs_timeout : 0;
    dx_tls_run(t);
    return 0;
}

int dx_tls_request_client_cert(dx_tls *t, dx_tls_done_cb cb, void *user)
{
    if (!t || !cb || t->role != DX_TLS_SERVER)
        return DX_EINVAL;
    if (!open_and_secure(t) || t->re.cb)
        return DX_ESTATE;
    if (SSL_version(t->ssl) < TLS1_3_VERSION)
        return DX_ENOTSUP;
    bool was = t->request_cert;
    t->request_cert = true;
    dx_tls_apply_client_verification(t);
    ERR_clear_error();
    if (!SSL_verify_client_post_handshake(t->ssl)) {
        unsigned long e = ERR_peek_last_error();
        ERR_clear_error();
        t->request_cert = was;
        dx_tls_apply_client_verification(t);
        return ERR_GET_REASON(e) == SSL_R_EXTENSION_NOT_RECEIVED ? DX_ENOTSUP : DX_ESTATE;
    }
    forget_verification(t);
    t->re.cb = cb;
    t->re.cb_user = user;
    t->re.pha = true;
    t->re.want = true;
    t->re.deadline = t->hs_timeout ? dx_tls_now(t) + t->hs_timeout : 0;
    dx_tls_run(t);
    return 0;
}

/* ---- what OpenSSL tells ------------------------------------------------- */

/* A client renegotiation on a server that allows them: within the limit?
 * The times of the last `limit` ones are kept in a ring. */
static void count_client_renegotiation(dx_tls *f)
{
    unsigned limit = f->re.limit ? f->re.limit : DX_TLS_CLIENT_RENEG_LIMIT;
    uint64_t window = f->re.window ? f->re.window : DX_TLS_CLIENT_RENEG_WINDOW_MS;
    uint64_t now = dx_tls_now(f);
    if (!f->re.times) {
        f->re.times = dx_calloc(limit, sizeof(*f->re.times));
        if (!f->re.times) {
            f->oom = true;
            return;
        }
    }
    if (f->re.ntimes == limit && now - f->re.times[f->re.next] < window) {
        f->re.refusal = dx_error_new(DX_ETLS, "ERR_TLS_SESSION_ATTACK", "tls",
                                     "TLS session renegotiation attack detected: more than "
                                     "%u renegotiations in %llu ms",
                                     limit, (unsigned long long)window);
        if (!f->re.refusal)
            f->oom = true;
        return;
    }
    f->re.times[f->re.next] = now;
    f->re.next = (f->re.next + 1) % limit;
    if (f->re.ntimes < limit)
        f->re.ntimes++;
}

void dx_tls_rehandshake_info(dx_tls *f, int where)
{
    if (SSL_version(f->ssl) >= TLS1_3_VERSION)
        return; /* TLS 1.3 has no renegotiation */
    bool ours = f->re.cb && !f->re.pha;
    if (where & SSL_CB_HANDSHAKE_START) {
        if (!ours && !f->re.peer_start) {
            f->re.peer_start = true;
            if (f->role == DX_TLS_SERVER)
                count_client_renegotiation(f);
        }
        forget_verification(f);
    }
    if ((where & SSL_CB_HANDSHAKE_DONE) && !SSL_renegotiate_pending(f->ssl)) {
        f->re.peer_start = false;
        f->re.done = true;
    }
}

/* The alert OpenSSL sends when it refuses a renegotiation the peer asked
 * for, because this side disabled them. */
void dx_tls_rehandshake_alert(dx_tls *f, int where, int ret)
{
    if (!(where & SSL_CB_WRITE_ALERT) || (ret & 0xff) != SSL_AD_NO_RENEGOTIATION ||
        !f->re.disabled || f->re.refusal)
        return;
    f->re.refusal = dx_error_new(DX_ETLS, "ERR_TLS_RENEGOTIATION_DISABLED", "tls",
                                 "TLS session renegotiation disabled for this socket");
    if (!f->re.refusal)
        f->oom = true;
}

void dx_tls_rehandshake_msg(dx_tls *f, int write_p, int type, const void *buf, size_t len)
{
    (void)type;
    if (!write_p && f->re.pha && f->re.cb && len >= 1 &&
        ((const unsigned char *)buf)[0] == SSL3_MT_FINISHED)
        f->re.done = true;
}

bool dx_tls_rehandshake_wants_msgs(const dx_tls *f) { return f->re.pha && f->re.cb; }

/* ---- in the engine's step ------------------------------------------------ */

void dx_tls_rehandshake_before(dx_tls *f)
{
    if (!f->re.want)
        return;
    /* The HelloRequest, ClientHello or CertificateRequest goes out now;
     * the rest comes through the reads. */
    f->re.want = false;
    ERR_clear_error();
    int r = SSL_do_handshake(f->ssl);
    if (r != 1) {
        int e = SSL_get_error(f->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            dx_tls_fail(f, dx_tls_ssl_error(f, e));
    }
}

void dx_tls_rehandshake_after(dx_tls *f)
{
    if (f->failed || f->dead)
        return;
    if (f->re.refusal) {
        dx_error *err = f->re.refusal;
        f->re.refusal = NULL;
        dx_tls_fail(f, err);
        return;
    }
    if (!f->re.done)
        return;
    f->re.done = false;
    dx_tls_retire_certs(f);
    if (!dx_tls_settle_peer(f))
        return;
    if (f->re.cb) {
        f->re.pha = false;
        dx_tls_queue_event(f, EV_REHANDSHAKE, "", 0);
        f->again = true; /* once it is reported: an end that waited for it */
    }
}

void dx_tls_rehandshake_closed(dx_tls *f, const dx_error *err)
{
    dx_tls_done_cb cb = f->re.cb;
    if (!cb)
        return;
    f->re.cb = NULL;
    f->re.pha = false;
    dx_error *e = err ? dx_error_copy(err)
                      : dx_error_new(DX_ECANCELED, "ECANCELED", "tls",
                                     "the connection closed before the handshake completed");
    cb(f, e ? e : dx_error_oom(), f->re.cb_user);
    dx_error_free(e);
}

void dx_tls_rehandshake_free(dx_tls *f)
{
    dx_free(f->re.times);
    f->re.times = NULL;
    dx_error_free(f->re.refusal);
    f->re.refusal = NULL;
}
