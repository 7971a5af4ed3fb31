/*
 * The TLS filter (include/duplex/tls_filter.h): one SSL object between a
 * cleartext (upper) stream and a TLS record (lower) stream.
 *
 * How bytes move. OpenSSL talks to one BIO of ours, never to a socket:
 *  - its reads come straight from the buffers the lower stream's consumer
 *    offers to our write op (f->in.iov), after any prefix bytes (f->inq): no
 *    copy on our side;
 *  - its writes (whole records) are appended to f->outq, which is pushed
 *    to the lower stream's consumer once OpenSSL has returned.
 * All OpenSSL calls happen inside dx_tls_run(), which never runs twice at once
 * for one connection: a write to either stream that arrives while it runs
 * (a peer answering synchronously through a memory pair, say) is refused
 * for the moment (taken = 0) and offered again by the core once dx_tls_run() is
 * over. Two such writes are taken at once instead (take()): cleartext the
 * upper consumer writes from its on_data, which step_read calls between
 * two OpenSSL calls, is encrypted there and then; and TLS bytes that come
 * to the lower stream while the run pushes its records out (the peer's
 * answer) are copied into f->inq, up to IN_MARK, for another turn of the
 * same run. Either saves a copy into a stream buffer and a second run.
 * User callbacks never run inside an OpenSSL call: what OpenSSL
 * reports from inside (keylog lines, sessions, trace) is queued and
 * emitted by dx_tls_run() between calls.
 *
 * Backpressure: cleartext is read from OpenSSL only while the upper
 * consumer wants data, so unread records stay in the lower stream's write
 * buffer; cleartext is encrypted only while f->outq holds less than a
 * record or two, so a slow transport stops the application's writes.
 */
#include "config.h"

#include <duplex/link.h>
#include <duplex/tls_filter.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "alloc.h"
#include "bufq.h"
#include "errors.h"
#include "stream_internal.h"
#include "cert_internal.h"
#include "filter_internal.h"
#include <duplex/tls_server.h>

/* Encrypt more cleartext only while less than this waits to go below. */
#define OUT_MARK ((size_t)2 * 16384)
/* Largest record payload. */
#define RECORD_MAX 16384
/* KeyUpdates a peer may send in a row with no data between, either way
 * (OpenSSL's own bound, which its 3.0 series does not enforce). */
#define MAX_KEY_UPDATES 32u
/* Most TLS bytes taken into f->inq while a run flushes (see take()). */
#define IN_MARK ((size_t)2 * 16384)


static void tls_ref(dx_tls *f) { f->refs++; }

static void free_events(dx_tls *f)
{
    for (tls_event *e = f->evq, *n; e; e = n) {
        n = e->next;
        dx_free(e);
    }
    f->evq = f->evq_tail = NULL;
}

static void free_certs(dx_tls *f)
{
    dx_tls_cert_free(f->peer_cert);
    dx_tls_cert_free(f->local_cert);
    for (size_t i = 0; i < f->chain_len; i++)
        dx_tls_cert_free(f->chain[i]);
    dx_free(f->chain);
    f->peer_cert = f->local_cert = NULL;
    f->chain = NULL;
    f->chain_len = 0;
    f->chain_made = false;
    for (size_t i = 0; i < f->nretired; i++)
        dx_tls_cert_free(f->retired[i]);
    dx_free(f->retired);
    f->retired = NULL;
    f->nretired = 0;
}

/* Frees the OpenSSL side; the connection answers as closed from then on. */
static void drop_ssl(dx_tls *f)
{
    if (f->ssl) {
        SSL_free(f->ssl); /* frees f->bio */
        f->ssl = NULL;
        f->bio = NULL;
    }
    BIO_free(f->trace_bio);
    f->trace_bio = NULL;
    dx_bufq_clear(&f->inq);
    dx_bufq_clear(&f->outq);
    free_events(f);
    if (f->fail_after_flush) { /* destroyed before the flush was over */
        if (f->own_err == f->fail_after_flush)
            f->own_err = NULL;
        dx_error_free(f->fail_after_flush);
        f->fail_after_flush = NULL;
    }
}

static void tls_unref(dx_tls *f)
{
    if (--f->refs > 0)
        return;
    /* A question the application got: a late answer only frees it; one it
     * never got (the connection went first) goes now. */
    dx_tls_pending *asked[] = {f->pending, f->lookup_pending};
    for (size_t i = 0; i < sizeof(asked) / sizeof(asked[0]); i++) {
        if (asked[i] && asked[i]->handed)
            asked[i]->f = NULL;
        else
            dx_free(asked[i]);
    }
    dx_tls_rehandshake_free(f);
    dx_tls_ocsp_release(f);
    SSL_SESSION_free(f->resume_sess);
    dx_tls_ctx_unref(f->sni_ctx);
    dx_error_free(f->sni_err);
    dx_free(f->alpn);
    dx_tls_psk_free(f);
    drop_ssl(f);
    free_certs(f);
    dx_error_free(f->verify_err);
    dx_free(f->servername);
    dx_free(f->host);
    dx_tls_ctx_unref(f->ctx);
    dx_free(f);
    dx_live_dec();
}

/* ---- the clock and deadlines ----------------------------------------- */

static uint64_t mono_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t dx_tls_now(const dx_tls *f) { return f->clock(f->clock_arg); }

/* Closed: no more events, no more deadlines. */
static bool is_closed(const dx_tls *f)
{
    return f->dead || f->failed || (dx_stream_state(f->upper) & DX_STREAM_CLOSED);
}

static uint64_t next_deadline(const dx_tls *f)
{
    uint64_t d = DX_TLS_NO_DEADLINE;
    if (!f->started)
        return d;
    if (!f->hs_done && f->hs_deadline)
        d = f->hs_deadline;
    if (f->idle_deadline && f->idle_deadline < d)
        d = f->idle_deadline;
    if (f->re.cb && f->re.deadline && f->re.deadline < d)
        d = f->re.deadline;
    return d != DX_TLS_NO_DEADLINE && is_closed(f) ? DX_TLS_NO_DEADLINE : d;
}

/* Tells the adapter's hook and on_deadline when the next deadline moved. */
static void tell_deadline(dx_tls *f)
{
    uint64_t d = next_deadline(f);
    if (d == f->told_deadline)
        return;
    f->told_deadline = d;
    if (f->deadline_hook)
        f->deadline_hook(f, d, f->deadline_arg);
    if (f->ev.on_deadline)
        f->ev.on_deadline(f, d, f->user);
}

/* Traffic: the idle timer starts over. */
void dx_tls_activity(dx_tls *f)
{
    if (f->idle_timeout && f->started)
        f->idle_deadline = dx_tls_now(f) + f->idle_timeout;
}

/* ---- errors --------------------------------------------------------------- */


/* Node's name for an X509_V_ERR_* code. */
const char *dx_tls_verify_code_name(long code)
{
    static const struct {
        long code;
        const char *name;
    } names[] = {
        {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, "UNABLE_TO_GET_ISSUER_CERT"},
        {X509_V_ERR_UNABLE_TO_GET_CRL, "UNABLE_TO_GET_CRL"},
        {X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE, "UNABLE_TO_DECRYPT_CERT_SIGNATURE"},
        {X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE, "UNABLE_TO_DECRYPT_CRL_SIGNATURE"},
        {X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY, "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY"},
        {X509_V_ERR_CERT_SIGNATURE_FAILURE, "CERT_SIGNATURE_FAILURE"},
        {X509_V_ERR_CRL_SIGNATURE_FAILURE, "CRL_SIGNATURE_FAILURE"},
        {X509_V_ERR_CERT_NOT_YET_VALID, "CERT_NOT_YET_VALID"},
        {X509_V_ERR_CERT_HAS_EXPIRED, "CERT_HAS_EXPIRED"},
        {X509_V_ERR_CRL_NOT_YET_VALID, "CRL_NOT_YET_VALID"},
        {X509_V_ERR_CRL_HAS_EXPIRED, "CRL_HAS_EXPIRED"},
        {X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD, "ERROR_IN_CERT_NOT_BEFORE_FIELD"},
        {X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD, "ERROR_IN_CERT_NOT_AFTER_FIELD"},
        {X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD, "ERROR_IN_CRL_LAST_UPDATE_FIELD"},
        {X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD, "ERROR_IN_CRL_NEXT_UPDATE_FIELD"},
        {X509_V_ERR_OUT_OF_MEM, "OUT_OF_MEM"},
        {X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, "DEPTH_ZERO_SELF_SIGNED_CERT"},
        {X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, "SELF_SIGNED_CERT_IN_CHAIN"},
        {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"},
        {X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE, "UNABLE_TO_VERIFY_LEAF_SIGNATURE"},
        {X509_V_ERR_CERT_CHAIN_TOO_LONG, "CERT_CHAIN_TOO_LONG"},
        {X509_V_ERR_CERT_REVOKED, "CERT_REVOKED"},
        {X509_V_ERR_INVALID_CA, "INVALID_CA"},
        {X509_V_ERR_PATH_LENGTH_EXCEEDED, "PATH_LENGTH_EXCEEDED"},
        {X509_V_ERR_INVALID_PURPOSE, "INVALID_PURPOSE"},
        {X509_V_ERR_CERT_UNTRUSTED, "CERT_UNTRUSTED"},
        {X509_V_ERR_CERT_REJECTED, "CERT_REJECTED"},
        {X509_V_ERR_HOSTNAME_MISMATCH, "HOSTNAME_MISMATCH"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].code == code)
            return names[i].name;
    return "UNSPECIFIED";
}

bool dx_tls_drain_openssl_errors(void)
{
    bool oom = false;
    unsigned long e;
    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
            oom = true;
    return oom;
}

/* Did an allocation inside OpenSSL fail (the first error it queued, or
 * the last)? */
static bool openssl_out_of_memory(void)
{
    unsigned long first = ERR_peek_error(), last = ERR_peek_last_error();
    return (first && ERR_GET_REASON(first) == ERR_R_MALLOC_FAILURE) ||
           (last && ERR_GET_REASON(last) == ERR_R_MALLOC_FAILURE);
}

/* The error for a failed OpenSSL call: DX_ENOMEM when memory ran out, the
 * verification failure when that is what stopped the handshake, else
 * OpenSSL's reason, else a reset. */
dx_error *dx_tls_ssl_error(dx_tls *f, int sslerr)
{
    unsigned long e = ERR_peek_last_error();
    dx_error *err;
    bool eof = e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
               ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
    if (f->oom || openssl_out_of_memory()) {
        ERR_clear_error();
        return (dx_error *)dx_error_oom();
    }
    /* the application refused the name, or failed the OCSP answer */
    const dx_error *app = f->sni_err ? f->sni_err : f->ocsp.err;
    if (app) {
        ERR_clear_error();
        return dx_tls_or_oom(dx_error_copy(app));
    }
    if (f->psk.err) { /* a PSK answer, or an unknown TLS 1.3 identity */
        ERR_clear_error();
        return dx_tls_or_oom(dx_error_copy(f->psk.err));
    }
    if (eof && !f->hs_done) {
        e = 0; /* the transport went before the handshake: a reset */
        sslerr = SSL_ERROR_SYSCALL;
    }
    /* the chain, the identity, or the stapled OCSP response refused */
    if (f->verify_err && (!e || ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED ||
                          ERR_GET_REASON(e) == SSL_R_INVALID_STATUS_RESPONSE)) {
        err = dx_error_copy(f->verify_err);
        if (err && !dx_error_detail(err)[0])
            dx_error_set_detail(err, "verify result %ld%s%s", f->verify_result,
                                f->alerts[0] ? "; " : "", f->alerts);
    } else if (e) {
        char name[96], text[256];
        dx_tls_openssl_code(e, name, sizeof(name));
        const char *reason = ERR_reason_error_string(e);
        err = dx_error_new(DX_ETLS, name, "tls", "%s", reason ? reason : "TLS error");
        ERR_error_string_n(e, text, sizeof(text));
        if (err)
            dx_error_set_detail(err, "%s%s%s", text, f->alerts[0] ? "; " : "",
                                f->alerts);
    } else if (sslerr == SSL_ERROR_SYSCALL || f->in_eof) {
        err = dx_error_new(DX_ECONNRESET, "ECONNRESET", "tls", "%s",
                           f->hs_done ? "socket hang up"
                                      : "Client network socket disconnected "
                                        "before secure TLS connection was established");
    } else {
        err = dx_error_new(DX_ETLS, "ERR_TLS", "tls", "TLS error %d", sslerr);
    }
    ERR_clear_error();
    return dx_tls_or_oom(err);
}

/* ---- process-wide state ----------------------------------------------------
 * Made once: the BIO method of every connection (freed by OpenSSL's own
 * clean-up at exit) and the SSL ex_data index under which an SSL object
 * names its connection (an SSL made by a user from dx_tls_ctx_openssl()
 * has none there, whatever its app data). */

static CRYPTO_ONCE globals_once = CRYPTO_ONCE_STATIC_INIT;
static BIO_METHOD *bio_method;
static int ssl_index = -1;

static int bio_read(BIO *b, char *out, int outl);
static int bio_write(BIO *b, const char *in, int inl);
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr);
static int bio_create(BIO *b);
static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg);

static void free_globals(void)
{
    BIO_meth_free(bio_method);
    bio_method = NULL;
}

static void make_globals(void)
{
    ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    int type = BIO_get_new_index();
    if (ssl_index < 0 || type <= 0)
        return;
    BIO_METHOD *m = BIO_meth_new(type | BIO_TYPE_SOURCE_SINK, "libduplex");
    if (!m || !BIO_meth_set_read(m, bio_read) || !BIO_meth_set_write(m, bio_write) ||
        !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create) ||
        !OPENSSL_atexit(free_globals)) {
        BIO_meth_free(m);
        return;
    }
    bio_method = m;
}

static bool globals_ready(void)
{
    return CRYPTO_THREAD_run_once(&globals_once, make_globals) && bio_method;
}

static int bio_read(BIO *b, char *out, int outl)
{
    dx_tls *f = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (f->key_updates_in > MAX_KEY_UPDATES) {
        /* a KeyUpdate flood: OpenSSL reads no further, the engine fails
         * the connection once the call returns */
        BIO_set_retry_read(b);
        return -1;
    }
    size_t want = (size_t)outl;
    size_t got = f->inq.bytes ? dx_bufq_take(&f->inq, out, want) : 0;
    while (got < want && f->in.iov && f->in.idx < f->in.n) {
        const dx_iov *v = &f->in.iov[f->in.idx];
        size_t n = v->len - f->in.off;
        if (n > want - got)
            n = want - got;
        memcpy(out + got, (const uint8_t *)v->base + f->in.off, n);
        got += n;
        f->in.off += n;
        f->in.used += n;
        if (f->in.off == v->len) {
            f->in.idx++;
            f->in.off = 0;
        }
    }
    if (got) {
        f->stats.enc_in += got;
        f->got_input = true;
        return (int)got;
    }
    /* Also at the transport's end: OpenSSL would turn an EOF into a fatal
     * error with an alert; the filter tells an end from a truncation
     * itself once OpenSSL asks for more (f->in_eof). */
    BIO_set_retry_read(b);
    return -1;
}

static int bio_write(BIO *b, const char *in, int inl)
{
    dx_tls *f = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (inl <= 0)
        return 0;
    if (dx_bufq_append(&f->outq, in, (size_t)inl) != 0) {
        f->oom = true;
        return -1;
    }
    return inl;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num, (void)ptr;
    /* OpenSSL asks whether kernel TLS is on (BIO_CTRL_GET_KTLS_*, above
     * the others) half a dozen times per record: answered first. */
    if (cmd > BIO_CTRL_WPENDING)
        return 0;
    const dx_tls *f;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        f = BIO_get_data(b);
        return f ? (long)f->inq.bytes : 0;
    case BIO_CTRL_WPENDING:
        f = BIO_get_data(b);
        return f ? (long)f->outq.bytes : 0;
    case BIO_CTRL_EOF:
        f = BIO_get_data(b);
        return f && f->in_eof;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* ---- callbacks OpenSSL makes ------------------------------------------------ */

static dx_tls *of_ssl(const SSL *ssl)
{
    return ssl && ssl_index >= 0 ? SSL_get_ex_data(ssl, ssl_index) : NULL;
}

dx_tls *dx_tls_of_ssl(const SSL *ssl) { return of_ssl(ssl); }

bool dx_tls_queue_event(dx_tls *f, ev_kind kind, const void *data, size_t len)
{
    tls_event *e = dx_malloc(sizeof(*e) + len + 1);
    if (!e)
        return false; /* an event lost to memory shortage */
    e->next = NULL;
    e->kind = kind;
    e->len = len;
    memcpy(e->data, data, len);
    e->data[len] = '\0';
    if (f->evq_tail)
        f->evq_tail->next = e;
    else
        f->evq = e;
    f->evq_tail = e;
    return true;
}

static void keylog_cb(const SSL *ssl, const char *line)
{
    dx_tls *f = of_ssl(ssl);
    if (f && f->ev.on_keylog)
        dx_tls_queue_event(f, EV_KEYLOG, line, strlen(line));
}

void dx_tls_keylog_install(SSL_CTX *ssl) { SSL_CTX_set_keylog_callback(ssl, keylog_cb); }

/* Whether the connection wants key log lines (tls_internal.h). */
static bool wants_keylog(const dx_tls *f)
{
    return f->ev.on_keylog && (!f->server || dx_tls_server_keylog_wanted(f->server, f->ev.on_keylog));
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    dx_tls *f = of_ssl(ssl);
    if (f && f->role == DX_TLS_SERVER && f->server) {
        dx_tls_server_session_new(f->server, ssl, sess);
        return 0;
    }
    /* A client's sessions go to the application (contexts keep none), but
     * not those of a server whose stapled OCSP response did not hold: a
     * resumption would not check it again. */
    if (!f || f->role != DX_TLS_CLIENT || !f->ev.on_session || f->failed || f->ocsp.failed)
        return 0;
    int n = i2d_SSL_SESSION(sess, NULL);
    if (n <= 0)
        return 0;
    uint8_t *buf = dx_malloc((size_t)n), *p = buf;
    if (!buf)
        return 0;
    if (i2d_SSL_SESSION(sess, &p) == n)
        dx_tls_queue_event(f, EV_SESSION, buf, (size_t)n);
    dx_free(buf);
    return 0; /* no reference kept */
}

static void info_cb(const SSL *ssl, int where, int ret)
{
    dx_tls *f = of_ssl(ssl);
    if (!f)
        return;
    if (f->hs_done && (where & (SSL_CB_HANDSHAKE_START | SSL_CB_HANDSHAKE_DONE)))
        dx_tls_rehandshake_info(f, where);
    if (!(where & SSL_CB_ALERT))
        return;
    dx_tls_rehandshake_alert(f, where, ret);
    size_t used = strlen(f->alerts);
    snprintf(f->alerts + used, sizeof(f->alerts) - used, "%salert %s %s",
             used ? ", " : "", (where & SSL_CB_READ) ? "received" : "sent",
             SSL_alert_desc_string_long(ret));
}

/* Records a verification failure (the first one counts). */
void dx_tls_set_verify_error(dx_tls *f, dx_error *err)
{
    if (!f->verify_err)
        f->verify_err = dx_tls_or_oom(err);
    else
        dx_error_free(err);
}

/* Is text an IPv4 or IPv6 address? */
static bool is_ip(const char *text)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, text, buf) == 1 || inet_pton(AF_INET6, text, buf) == 1;
}

/* The name a client checks the server's certificate against. */
static const char *identity_name(const dx_tls *f)
{
    if (f->host)
        return f->host;
    if (f->servername)
        return f->servername;
    return "localhost";
}

/* Runs the identity check on the server's certificate. */
static dx_error *check_identity(dx_tls *f, X509 *leaf)
{
    dx_tls_cert *cert = NULL;
    /* The default check reads only the names; a callback gets it all. */
    int rc = f->identity_cb ? dx_tls_cert_wrap(leaf, &cert) : dx_tls_cert_wrap_names(leaf, &cert);
    if (rc != 0)
        return dx_tls_or_oom(dx_error_new(rc, NULL, "tls", "cannot read the certificate"));
    dx_error *err = NULL;
    const char *host = identity_name(f);
    int refused = f->identity_cb ? f->identity_cb(f, host, cert, &err, f->identity_user)
                                 : dx_tls_check_server_identity(host, cert, &err);
    dx_tls_cert_free(cert);
    if (!refused) {
        dx_error_free(err);
        return NULL;
    }
    if (!err) /* refused without a reason, or no memory for one */
        err = dx_error_new(DX_ETLS, "ERR_TLS_CERT_ALTNAME_INVALID", "tls",
                           "the server's identity was refused");
    return dx_tls_or_oom(err);
}

/* OpenSSL's per-certificate callback: go on past each failure (which
 * stays recorded in the store context). */
static int verify_all(int ok, X509_STORE_CTX *sctx)
{
    (void)ok;
    (void)sctx;
    return 1;
}

/*
 * Replaces OpenSSL's chain check for every connection of a context: runs
 * it, then the identity check on clients, records the outcome for
 * dx_tls_authorized(), and fails the handshake only if unauthorized peers
 * are refused.
 */
static int cert_verify_cb(X509_STORE_CTX *sctx, void *arg)
{
    (void)arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    dx_tls *f = of_ssl(ssl);
    if (!f)
        return X509_verify_cert(sctx);
    /* As Node: every check runs and the last failure is the verdict, so an
     * unknown issuer of a lone certificate reads as
     * UNABLE_TO_VERIFY_LEAF_SIGNATURE, Node's name for it. */
    X509_STORE_CTX_set_verify_cb(sctx, verify_all);
    int ok = X509_verify_cert(sctx);
    long code = X509_STORE_CTX_get_error(sctx);
    if (code == X509_V_ERR_OUT_OF_MEM || (ok <= 0 && openssl_out_of_memory())) {
        /* memory ran out: not the certificate's fault (DX_ENOMEM) */
        f->oom = true;
        return 0;
    }
    if (ok <= 0 && code == X509_V_OK)
        code = X509_V_ERR_UNSPECIFIED;
    if (code != X509_V_OK) {
        dx_tls_set_verify_error(f, dx_error_new(DX_ETLS, dx_tls_verify_code_name(code), "tls",
                                                "%s", X509_verify_cert_error_string(code)));
        f->verify_result = code;
    } else if (f->role == DX_TLS_CLIENT) {
        dx_error *err = check_identity(f, X509_STORE_CTX_get0_cert(sctx));
        if (err) {
            dx_error_default_layer(err, "tls");
            dx_tls_set_verify_error(f, err);
            f->verify_result = X509_V_ERR_HOSTNAME_MISMATCH;
            X509_STORE_CTX_set_error(sctx, X509_V_ERR_HOSTNAME_MISMATCH);
        }
    }
    f->authorized = !f->verify_err;
    if (f->verify_err && f->reject_unauthorized)
        return 0;
    return 1;
}

/* The host name of a ClientHello's server_name extension into out (empty
 * when there is none or it is malformed). */
static void hello_servername(SSL *ssl, char *out, size_t size)
{
    const unsigned char *p;
    size_t len;
    out[0] = '\0';
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) || len < 5)
        return;
    size_t list = (size_t)p[0] << 8 | p[1];
    size_t n = (size_t)p[3] << 8 | p[4];
    if (list + 2 != len || p[2] != TLSEXT_NAMETYPE_host_name || n + 3 > list || n == 0 ||
        n >= size)
        return;
    for (size_t i = 0; i < n; i++)
        if (p[5 + i] <= 0x20 || p[5 + i] >= 0x7f)
            return; /* not a host name */
    memcpy(out, p + 5, n);
    out[n] = '\0';
}

/* Does the ClientHello offer TLS 1.3? Such a client sends a random
 * session id (RFC 8446 D.4) unless it resumes a TLS 1.2 session, so its
 * id alone offers nothing. */
static bool hello_offers_tls13(SSL *ssl)
{
    const unsigned char *p;
    size_t len;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &p, &len) || len < 1)
        return false;
    for (size_t i = 1; i + 1 < len && i + 1 <= (size_t)p[0]; i += 2)
        if (p[i] == 0x03 && p[i + 1] == 0x04)
            return true;
    return false;
}

/* The id under which a server's store may hold the session this
 * ClientHello offers: a TLS 1.3 pre-shared key identity short enough to
 * be a session id (stateful tickets), or the TLS 1.2 session id when the
 * client offers no ticket and cannot speak TLS 1.3 with us (a TLS 1.3
 * client's session id is random). 0 when there is none. */
static size_t hello_session_key(SSL *ssl, uint8_t *out)
{
    const unsigned char *p;
    size_t len;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_psk, &p, &len)) {
        if (len < 4)
            return 0;
        size_t n = (size_t)p[2] << 8 | p[3];
        if (n == 0 || n > SSL_MAX_SSL_SESSION_ID_LENGTH || 4 + n > len)
            return 0;
        memcpy(out, p + 4, n);
        return n;
    }
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_session_ticket, &p, &len) && len > 0)
        return 0; /* a ticket: no store */
    int max = SSL_get_max_proto_version(ssl);
    if ((max == 0 || max >= TLS1_3_VERSION) && hello_offers_tls13(ssl))
        return 0;
    len = SSL_client_hello_get0_session_id(ssl, &p);
    if (len == 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH)
        return 0;
    memcpy(out, p, len);
    return len;
}

/* The asynchronous lookup in a server's external store. */
static int session_lookup(dx_tls *f, SSL *ssl, int *al)
{
    if (!f->server || !dx_tls_server_async_lookup(f->server))
        return SSL_CLIENT_HELLO_SUCCESS;
    switch (f->lookup) {
    case SNI_NONE:
        f->lookup_len = hello_session_key(ssl, f->lookup_id);
        if (!f->lookup_len) {
            f->lookup = SNI_DONE;
            return SSL_CLIENT_HELLO_SUCCESS;
        }
        f->lookup_pending = dx_calloc(1, sizeof(*f->lookup_pending));
        if (!f->lookup_pending) {
            f->oom = true;
            *al = SSL_AD_INTERNAL_ERROR;
            return SSL_CLIENT_HELLO_ERROR;
        }
        f->lookup_pending->f = f;
        f->lookup_pending->kind = PENDING_LOOKUP;
        if (!dx_tls_queue_event(f, EV_LOOKUP, "", 0)) {
            dx_free(f->lookup_pending);
            f->lookup_pending = NULL;
            f->oom = true;
            *al = SSL_AD_INTERNAL_ERROR;
            return SSL_CLIENT_HELLO_ERROR;
        }
        f->lookup = SNI_WAITING;
        return SSL_CLIENT_HELLO_RETRY;
    case SNI_WAITING:
        return SSL_CLIENT_HELLO_RETRY;
    default:
        return SSL_CLIENT_HELLO_SUCCESS;
    }
}

/* OpenSSL looks a session up by id: what the external store found, or the
 * server's built-in cache. */
static SSL_SESSION *get_session_cb(SSL *ssl, const unsigned char *id, int len, int *copy)
{
    dx_tls *f = of_ssl(ssl);
    *copy = 0; /* the reference returned is OpenSSL's */
    if (!f || !f->server || len <= 0)
        return NULL;
    if (f->lookup == SNI_DONE && f->resume_sess) {
        SSL_SESSION *s = f->resume_sess;
        f->resume_sess = NULL;
        return s;
    }
    if (dx_tls_server_async_lookup(f->server))
        return NULL;
    return dx_tls_server_session_get(f->server, id, (unsigned)len);
}

/* A server's verification mode for its options. */
static int verify_mode_of(const dx_tls *f)
{
    if (!f->request_cert)
        return SSL_VERIFY_NONE;
    return SSL_VERIFY_PEER | (f->reject_unauthorized ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
}

void dx_tls_apply_client_verification(dx_tls *f)
{
    SSL_set_verify(f->ssl, verify_mode_of(f), NULL);
    size_t len;
    const uint8_t *sid = dx_tls_ctx_session_id_context(
        f->sni_ctx ? f->sni_ctx : f->ctx, f->request_cert, f->reject_unauthorized, &len);
    if (!SSL_set_session_id_context(f->ssl, sid, (unsigned)len))
        ERR_clear_error(); /* cannot fail for a length within bounds */
}

/*
 * Every ClientHello a server reads passes here first: the name is kept
 * (readable also if the handshake then fails), and the application's SNI
 * choice is asked for outside OpenSSL: the handshake is suspended
 * (RETRY) until dx_tls_sni_done() or dx_tls_sni_refuse() answers, then
 * applied.
 */
static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
    (void)arg;
    dx_tls *f = of_ssl(ssl);
    if (!f || f->role != DX_TLS_SERVER)
        return SSL_CLIENT_HELLO_SUCCESS;
    if (!f->hello_seen) {
        f->hello_seen = true;
        hello_servername(ssl, f->sni_name, sizeof(f->sni_name));
        const unsigned char *p;
        size_t len;
        f->offered = (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_session_ticket, &p, &len) &&
                      len > 0) ||
                     SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_psk, &p, &len) ||
                     (SSL_client_hello_get0_session_id(ssl, &p) > 0 &&
                      !hello_offers_tls13(ssl));
    }
    if (f->sni == SNI_NONE && f->sni_resolve && !f->sni_cb && f->sni_name[0]) {
        dx_tls_ctx *ctx = f->sni_resolve(f->sni_resolve_arg, f->sni_name);
        f->sni_ctx = ctx ? dx_tls_ctx_ref(ctx) : NULL;
        f->sni = SNI_DONE;
    }
    switch (f->sni) {
    case SNI_NONE:
        if (!f->sni_cb || !f->sni_name[0])
            return session_lookup(f, ssl, al);
        f->pending = dx_calloc(1, sizeof(*f->pending));
        if (!f->pending) {
            f->oom = true;
            *al = SSL_AD_INTERNAL_ERROR;
            return SSL_CLIENT_HELLO_ERROR;
        }
        f->pending->f = f;
        if (!dx_tls_queue_event(f, EV_SNI, "", 0)) {
            dx_free(f->pending);
            f->pending = NULL;
            f->oom = true;
            *al = SSL_AD_INTERNAL_ERROR;
            return SSL_CLIENT_HELLO_ERROR;
        }
        f->sni = SNI_WAITING;
        return SSL_CLIENT_HELLO_RETRY;
    case SNI_WAITING:
        return SSL_CLIENT_HELLO_RETRY;
    case SNI_DONE:
        if (f->sni_ctx) {
            if (wants_keylog(f))
                dx_tls_ctx_want_keylog(f->sni_ctx);
            if (!SSL_set_SSL_CTX(ssl, dx_tls_ctx_ssl(f->sni_ctx))) {
                *al = SSL_AD_INTERNAL_ERROR;
                return SSL_CLIENT_HELLO_ERROR;
            }
            dx_tls_ctx_client_verify(f->sni_ctx, &f->request_cert, &f->reject_unauthorized);
            dx_tls_apply_client_verification(f);
        }
        f->sni = SNI_APPLIED;
        return session_lookup(f, ssl, al);
    case SNI_APPLIED:
        return session_lookup(f, ssl, al); /* a second ClientHello (TLS 1.3 HRR) */
    case SNI_FAILED:
    default:
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_CLIENT_HELLO_ERROR;
    }
}

/* ALPN chosen by the application: the client's list as strings, and the
 * index it picks. */
static int alpn_choose(dx_tls *f, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen)
{
    size_t count = 0;
    for (size_t i = 0; i < inlen; i += 1 + (size_t)in[i]) {
        if (in[i] == 0 || i + 1 + in[i] > inlen)
            return SSL_TLSEXT_ERR_ALERT_FATAL; /* malformed: OpenSSL checks first */
        count++;
    }
    if (!count)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    /* One block: the pointers, where each entry starts in the list, and
     * the names with their NULs (as many bytes as the list). */
    char **names = dx_malloc(count * (sizeof(char *) + sizeof(size_t)) + inlen);
    if (!names) {
        f->oom = true;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    size_t *where = (size_t *)(names + count);
    char *text = (char *)(where + count);
    size_t k = 0;
    for (size_t i = 0; i < inlen; i += 1 + (size_t)in[i], k++) {
        names[k] = text;
        where[k] = i;
        memcpy(text, in + i + 1, in[i]);
        text += in[i];
        *text++ = '\0';
    }
    int pick = f->alpn_cb(f, (const char *const *)names, count, f->alpn_user);
    int rc = SSL_TLSEXT_ERR_ALERT_FATAL;
    if (pick >= 0 && (size_t)pick < count) {
        *out = in + where[pick] + 1;
        *outlen = in[where[pick]];
        rc = SSL_TLSEXT_ERR_OK;
    }
    dx_free(names);
    return rc;
}

/* ALPN on servers: the first protocol of the server's list the client
 * offered; none in common is fatal (RFC 7301: no_application_protocol). */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)arg;
    dx_tls *f = of_ssl(ssl);
    if (f && f->alpn_cb)
        return alpn_choose(f, out, outlen, in, inlen);
    if (!f || !f->alpn_len)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, f->alpn, (unsigned)f->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

int dx_tls_ctx_prepare(SSL_CTX *ssl)
{
    if (!globals_ready())
        return DX_ENOMEM;
    SSL_CTX_set_cert_verify_callback(ssl, cert_verify_cb, NULL);
    SSL_CTX_set_client_hello_cb(ssl, client_hello_cb, NULL);
    SSL_CTX_set_tlsext_servername_callback(ssl, dx_tls_psk_hello_cb);
    SSL_CTX_set_alpn_select_cb(ssl, alpn_select_cb, NULL);
    SSL_CTX_set_cert_cb(ssl, dx_tls_ocsp_cert_cb, NULL);
    SSL_CTX_set_tlsext_status_cb(ssl, dx_tls_ocsp_status_cb);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ssl, dx_tls_ticket_cb);
    SSL_CTX_sess_set_new_cb(ssl, new_session_cb);
    /* Sessions are kept by servers (dx_tls_server) and by applications
     * (on_session), not by contexts, which connections of unrelated
     * servers may share. */
    SSL_CTX_set_session_cache_mode(ssl, SSL_SESS_CACHE_BOTH | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_get_cb(ssl, get_session_cb);
    SSL_CTX_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return 0;
}

/* ---- the engine ------------------------------------------------------------ */

static bool upper_wants(const dx_tls *f) { return dx_stream_wants_read(f->upper); }

/* Can the connection take TLS bytes from below now? */
static bool can_take_input(const dx_tls *f)
{
    return f->started && !f->dead && !f->failed &&
           (!f->hs_done || (!f->read_done && upper_wants(f)));
}

/* Can it take cleartext now? */
static bool can_take_clear(const dx_tls *f)
{
    return f->hs_done && !f->dead && !f->failed && !f->notify_sent &&
           f->outq.bytes < OUT_MARK;
}

/* A server's verdict on the client: not authorized when it asked for no
 * certificate, or got none (as Node). */
static void settle_server_auth(dx_tls *f)
{
    if (f->role != DX_TLS_SERVER)
        return;
    if (!f->request_cert) {
        f->authorized = false;
        return;
    }
    long v = SSL_get_verify_result(f->ssl);
    if (!SSL_get0_peer_certificate(f->ssl) && !f->verify_err)
        dx_tls_set_verify_error(f, dx_error_new(DX_ETLS, "UNABLE_TO_GET_ISSUER_CERT", "tls",
                                                "the peer sent no certificate"));
    else if (SSL_session_reused(f->ssl) && !f->verify_err && v != X509_V_OK)
        /* resumed: the client's verification when the session was made */
        dx_tls_set_verify_error(f, dx_error_new(DX_ETLS, dx_tls_verify_code_name(v), "tls", "%s",
                                                X509_verify_cert_error_string(v)));
    f->authorized = !f->verify_err;
}

void dx_tls_retire_certs(dx_tls *f)
{
    dx_tls_cert *objs[2] = {f->peer_cert, f->local_cert};
    if (!objs[0] && !objs[1] && !f->chain_made)
        return; /* none was asked for: nothing to keep */
    size_t n = 2 + f->chain_len;
    dx_tls_cert **r = dx_realloc(f->retired, (f->nretired + n) * sizeof(*r));
    if (!r) {
        /* Without room to keep them the old objects stay in place: they
         * describe the first handshake. */
        return;
    }
    f->retired = r;
    for (size_t i = 0; i < 2; i++)
        if (objs[i])
            r[f->nretired++] = objs[i];
    for (size_t i = 0; i < f->chain_len; i++)
        if (f->chain[i])
            r[f->nretired++] = f->chain[i];
    dx_free(f->chain);
    f->peer_cert = f->local_cert = NULL;
    f->chain = NULL;
    f->chain_len = 0;
    f->chain_made = false;
}

/* A client that resumed verified no chain now: the session's result
 * stands, and the name must still match its certificate. */
static void settle_resumed_client(dx_tls *f)
{
    if (f->role != DX_TLS_CLIENT || !SSL_session_reused(f->ssl))
        return;
    X509 *peer = SSL_get0_peer_certificate(f->ssl);
    long v = SSL_get_verify_result(f->ssl);
    if (v != X509_V_OK)
        dx_tls_set_verify_error(f, dx_error_new(DX_ETLS, dx_tls_verify_code_name(v), "tls",
                                                "%s", X509_verify_cert_error_string(v)));
    else if (!peer)
        dx_tls_set_verify_error(f, dx_error_new(DX_ETLS, "UNABLE_TO_GET_ISSUER_CERT", "tls",
                                                "the resumed session has no certificate"));
    else {
        dx_error *err = check_identity(f, peer);
        if (err) {
            dx_error_default_layer(err, "tls");
            dx_tls_set_verify_error(f, err);
        }
    }
    f->authorized = !f->verify_err;
}

bool dx_tls_settle_peer(dx_tls *f)
{
    /* A pre-shared key authenticated both sides: no certificate to check. */
    if (dx_tls_psk_handshake_done(f)) {
        f->authorized = true;
        return true;
    }
    settle_resumed_client(f);
    settle_server_auth(f);
    if (f->role == DX_TLS_CLIENT && f->verify_err && f->reject_unauthorized) {
        dx_tls_fail(f, dx_tls_or_oom(dx_error_copy(f->verify_err)));
        return false;
    }
    return true;
}

static void handshake_done(dx_tls *f)
{
    f->hs_done = true;
    if (!dx_tls_settle_peer(f))
        return;
    if (f->role == DX_TLS_CLIENT && f->min_dh_size) {
        EVP_PKEY *k = NULL;
        if (SSL_get_peer_tmp_key(f->ssl, &k) && k) {
            int bits = EVP_PKEY_get_bits(k);
            bool dh = EVP_PKEY_is_a(k, "DH");
            EVP_PKEY_free(k);
            if (dh && bits < (int)f->min_dh_size) {
                dx_tls_fail(f, dx_tls_or_oom(dx_error_new(
                                   DX_ETLS, "ERR_TLS_DH_PARAM_SIZE", "tls",
                                   "DH parameter size %d is less than %u", bits,
                                   f->min_dh_size)));
                return;
            }
        }
    }
    dx_tls_activity(f);
}

/* Drives the handshake one step. */
static void step_handshake(dx_tls *f)
{
    dx_tls_clear_errors();
    int r = SSL_do_handshake(f->ssl);
    if (r == 1) {
        handshake_done(f);
        return;
    }
    int e = SSL_get_error(f->ssl, r);
    if (e == SSL_ERROR_WANT_CLIENT_HELLO_CB || e == SSL_ERROR_WANT_X509_LOOKUP)
        return; /* an answer is pending (dx_tls_sni_done, dx_tls_ocsp_done) */
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (f->in_eof && !f->inq.bytes)
            dx_tls_fail(f, dx_tls_ssl_error(f, SSL_ERROR_SYSCALL));
        return;
    }
    dx_tls_fail(f, dx_tls_ssl_error(f, e));
}

/* The next piece of cleartext to encrypt: a pointer into the offered
 * buffers when the piece is large or alone, else small pieces gathered
 * into stage. Returns its length (0: nothing). */
static size_t next_clear(dx_tls *f, uint8_t *stage, size_t max, const uint8_t **p,
                         bool *gathered)
{
    *gathered = false;
    if (!f->clear.iov || f->clear.idx >= f->clear.n)
        return 0;
    const dx_iov *v = &f->clear.iov[f->clear.idx];
    size_t left = v->len - f->clear.off;
    if (f->retry_len)
        max = f->retry_len;
    if (left >= max || f->clear.idx + 1 == f->clear.n) {
        *p = (const uint8_t *)v->base + f->clear.off;
        return left < max ? left : max;
    }
    size_t n = 0, idx = f->clear.idx, off = f->clear.off;
    while (n < max && idx < f->clear.n) {
        const dx_iov *w = &f->clear.iov[idx];
        size_t k = w->len - off;
        if (k > max - n)
            k = max - n;
        memcpy(stage + n, (const uint8_t *)w->base + off, k);
        n += k;
        off += k;
        if (off == w->len) {
            idx++;
            off = 0;
        }
    }
    *p = stage;
    *gathered = true;
    return n;
}

static void advance_clear(dx_tls *f, size_t n)
{
    f->clear.used += n;
    while (n) {
        const dx_iov *v = &f->clear.iov[f->clear.idx];
        size_t k = v->len - f->clear.off;
        if (k > n)
            k = n;
        f->clear.off += k;
        n -= k;
        if (f->clear.off == v->len) {
            f->clear.idx++;
            f->clear.off = 0;
        }
    }
}

/* Encrypts the offered cleartext while there is room below. */
static void step_write(dx_tls *f)
{
    uint8_t stage[RECORD_MAX];
    while (can_take_clear(f)) {
        const uint8_t *p;
        bool gathered;
        size_t max = f->max_fragment ? f->max_fragment : RECORD_MAX;
        size_t n = next_clear(f, stage, max, &p, &gathered);
        if (!n)
            return;
        dx_tls_io_begin(f->ssl);
        int r = SSL_write(f->ssl, p, (int)n);
        if (r > 0) {
            f->retry_len = 0;
            f->key_updates_in = 0; /* the peer's KeyUpdates renew keys in use */
            advance_clear(f, (size_t)r);
            f->stats.clear_out += (uint64_t)r;
            dx_tls_activity(f);
            continue;
        }
        int e = dx_tls_io_error(f->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            f->retry_len = n; /* OpenSSL wants the same length again */
            return;
        }
        dx_tls_fail(f, dx_tls_ssl_error(f, e));
        return;
    }
}

/* The transport ended without close_notify after the handshake. */
static void truncated(dx_tls *f)
{
    if (f->allow_truncation) {
        f->read_done = true;
        dx_stream_push_end(f->upper);
        if (!f->allow_half_open && !f->dead)
            dx_stream_end(f->upper);
        return;
    }
    dx_tls_fail(f, dx_tls_or_oom(dx_error_new(DX_ETLS, "ERR_SSL_UNEXPECTED_EOF_WHILE_READING",
                                              "tls", "the transport ended without close_notify "
                                                     "(truncation)")));
}

/* Whether SSL_read() could make progress: bytes to read (prefix bytes,
 * bytes offered to the lower write not yet taken, bytes held inside
 * OpenSSL), the transport's end to tell, or a handshake under way.
 * Without any of these it could only answer SSL_ERROR_WANT_READ, which
 * costs about as much as reading a small record. OpenSSL (without read
 * ahead, which the filter never asks for) takes one record at a time
 * from the BIO, exactly its length, and hands out a record's cleartext
 * before it reads the next: it can hold cleartext only when the last
 * read filled its buffer, and only then is it asked. */
static bool may_read(const dx_tls *f)
{
    return f->inq.bytes || (f->in.iov && f->in.idx < f->in.n) || f->in_eof ||
           SSL_in_init(f->ssl) || (f->read_full && SSL_has_pending(f->ssl));
}

/* Decrypts and delivers cleartext while the upper consumer wants it. */
static void step_read(dx_tls *f)
{
    uint8_t buf[RECORD_MAX];
    while (!f->read_done && !f->failed && !f->dead && upper_wants(f) && may_read(f)) {
        dx_tls_io_begin(f->ssl);
        int r = SSL_read(f->ssl, buf, sizeof(buf));
        if (f->key_updates_in > MAX_KEY_UPDATES) {
            /* a flood of KeyUpdates with no data between them */
            ERR_clear_error();
            dx_tls_fail(f, dx_tls_or_oom(dx_error_new(DX_ETLS, "ERR_SSL_TOO_MANY_KEY_UPDATES",
                                                      "tls", "too many key updates")));
            return;
        }
        f->read_full = r == (int)sizeof(buf);
        if (r > 0) {
            f->key_updates_in = 0;
            f->stats.clear_in += (uint64_t)r;
            dx_tls_activity(f);
            f->delivering = true;
            dx_stream_push(f->upper, buf, (size_t)r);
            f->delivering = false;
            continue;
        }
        int e = dx_tls_io_error(f->ssl, r);
        if (e == SSL_ERROR_WANT_READ && f->in_eof && !f->inq.bytes) {
            /* The transport ended without close_notify: a truncation, or
             * a cut record when part of one is still buffered. */
            if (SSL_has_pending(f->ssl))
                dx_tls_fail(f, dx_tls_or_oom(dx_error_new(
                                   DX_ETLS, "ERR_SSL_UNEXPECTED_EOF_WHILE_READING", "tls",
                                   "the transport ended inside a record")));
            else
                truncated(f);
            return;
        }
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return;
        if (e == SSL_ERROR_ZERO_RETURN) {
            f->read_done = true;
            f->clean_end = true;
            dx_stream_push_end(f->upper);
            if (!f->allow_half_open && !f->dead)
                dx_stream_end(f->upper); /* answers once queued data went */
            return;
        }
        dx_tls_fail(f, dx_tls_ssl_error(f, e));
        return;
    }
}

/* Sends close_notify once the application ended and all it wrote went. */
static void step_shutdown(dx_tls *f)
{
    if (!f->end_requested || f->notify_sent || !f->hs_done || f->failed || f->dead ||
        f->retry_len)
        return;
    /* A renegotiation or post-handshake authentication under way (ours,
     * or the peer's: OpenSSL refuses close_notify in it) finishes first,
     * unless the peer already closed: then it never will, and a peer's
     * handshake in progress leaves no way to send close_notify at all. */
    if ((SSL_in_init(f->ssl) || f->re.cb) && !f->read_done)
        return;
    ERR_clear_error();
    SSL_shutdown(f->ssl); /* 0: sent, peer's not yet seen; both are fine */
    ERR_clear_error();
    f->notify_sent = true;
}

/* All the OpenSSL work that can be done now. */
static void step(dx_tls *f)
{
    if (!f->started || f->failed || f->dead)
        return;
    if (!f->hs_done) {
        /* An upper stream closed before the handshake completed was
         * aborted: the handshake goes no further, even on bytes already
         * taken into f->inq. */
        if (dx_stream_state(f->upper) & DX_STREAM_CLOSED)
            return;
        step_handshake(f);
        if (f->hs_done)
            f->again = true; /* the secure event goes before any data */
        return;
    }
    if (f->key_update) {
        /* A KeyUpdate waits in OpenSSL until a handshake step sends it. */
        f->key_update = false;
        ERR_clear_error();
        if (SSL_do_handshake(f->ssl) != 1) {
            dx_tls_fail(f, dx_tls_ssl_error(f, SSL_ERROR_SSL));
            return;
        }
    }
    if (f->re.want)
        dx_tls_rehandshake_before(f);
    step_write(f);
    step_read(f);
    if (f->oom && !f->failed && !f->dead) {
        /* a callback from inside OpenSSL ran out of memory where OpenSSL's
         * call itself did not fail */
        dx_tls_fail(f, (dx_error *)dx_error_oom());
        return;
    }
    if (f->re.refusal || f->re.done)
        dx_tls_rehandshake_after(f);
    step_shutdown(f);
}

static void fail_streams(dx_tls *f, dx_error *err);

/* Pushes waiting records to the lower stream's consumer. */
static void flush_out(dx_tls *f)
{
    if (f->flushing)
        return; /* the outer call goes on */
    f->flushing = true;
    while (f->outq.bytes && !f->dead && dx_stream_wants_read(f->lower)) {
        /* The chunk leaves the queue for the push: the reader may destroy
         * the connection while it reads the bytes. */
        dx_chunk *c = dx_bufq_pop(&f->outq);
        size_t n = c->end - c->start;
        f->stats.enc_out += n;
        int r = dx_stream_push(f->lower, c->data + c->start, n);
        if (f->dead) {
            dx_free(c);
            return;
        }
        /* The next record's chunk, unless idle buffers are released */
        if (f->release_buffers)
            dx_free(c);
        else
            dx_bufq_recycle(&f->outq, c);
        dx_tls_activity(f);
        if (r <= 0)
            break;
    }
    f->flushing = false;
    if (!f->outq.bytes && f->notify_sent && !f->lower_ended && !f->dead) {
        f->lower_ended = true;
        dx_stream_push_end(f->lower);
    }
    if (f->fail_after_flush && !f->dead) {
        dx_error *err = f->fail_after_flush;
        f->fail_after_flush = NULL;
        fail_streams(f, err);
    }
}

/* Emits queued events: the secure event first, sessions only after it. */
static void emit_events(dx_tls *f)
{
    if (f->hs_done && !f->secure_emitted && !f->failed) {
        dx_tls_ocsp_tell(f); /* the staple goes just before */
        if (f->dead)
            return;
    }
    /* asked again: the OCSP event may have failed the connection */
    if (f->hs_done && !f->secure_emitted && !f->failed) {
        f->secure_emitted = true;
        if (f->ev.on_secure)
            f->ev.on_secure(f, f->user);
    }
    if (!f->evq) {
        if (!f->dead)
            dx_tls_ocsp_ask(f); /* the certificates the handshake waits about */
        return;
    }
    /* The list is taken whole: a callback may destroy the connection, which
     * frees its queue. Sessions held back wait in a list of their own. */
    tls_event *list = f->evq, *held = NULL, **held_tail = &held;
    f->evq = f->evq_tail = NULL;
    while (list) {
        tls_event *e = list;
        list = e->next;
        e->next = NULL;
        if (f->dead) {
            dx_free(e);
            continue;
        }
        if (e->kind == EV_SESSION && !f->secure_emitted && !f->failed) {
            *held_tail = e;
            held_tail = &e->next;
            continue;
        }
        if (e->kind == EV_KEYLOG && f->ev.on_keylog)
            f->ev.on_keylog(f, (const char *)e->data, f->user);
        else if (e->kind == EV_SESSION && f->ev.on_session && !f->failed)
            f->ev.on_session(f, e->data, e->len, f->user);
        else if (e->kind == EV_TRACE && f->ev.on_trace)
            f->ev.on_trace(f, (const char *)e->data, f->user);
        else if (e->kind == EV_SNI && f->pending && f->sni_cb) {
            f->pending->handed = true;
            f->sni_cb(f, f->sni_name, f->pending, f->sni_user);
        } else if (e->kind == EV_LOOKUP && f->lookup_pending && f->server) {
            f->lookup_pending->handed = true;
            dx_tls_server_lookup(f->server, f->lookup_id, f->lookup_len, f->lookup_pending);
        }
        else if (e->kind == EV_REHANDSHAKE && f->re.cb) {
            dx_tls_done_cb cb = f->re.cb;
            f->re.cb = NULL;
            cb(f, NULL, f->re.cb_user);
        }
        dx_free(e);
    }
    if (!f->dead)
        dx_tls_ocsp_ask(f); /* the certificates the handshake waits about */
    if (f->dead) {
        for (tls_event *e = held, *n; e; e = n) {
            n = e->next;
            dx_free(e);
        }
        return;
    }
    if (held) { /* back in front of anything queued meanwhile */
        *held_tail = f->evq;
        f->evq = held;
        f->evq_tail = NULL;
        for (tls_event *e = f->evq; e; e = e->next)
            f->evq_tail = e;
    }
}

/* Moves trace text from OpenSSL's memory BIO to the event queue. */
static void collect_trace(dx_tls *f)
{
    if (!f->trace_bio)
        return;
    char *text;
    long n = BIO_get_mem_data(f->trace_bio, &text);
    if (n > 0 && f->ev.on_trace)
        dx_tls_queue_event(f, EV_TRACE, text, (size_t)n);
    (void)BIO_reset(f->trace_bio);
}

void dx_tls_run(dx_tls *f)
{
    if (f->running) {
        f->again = true;
        return;
    }
    if (f->dead)
        return;
    tls_ref(f);
    f->running = true;
    do {
        f->again = false;
        f->in_step = true;
        step(f);
        f->in_step = false;
        if (f->got_input) {
            f->got_input = false;
            dx_tls_activity(f);
        }
        collect_trace(f);
        if (!f->dead)
            emit_events(f);
        if (!f->dead) {
            f->loop_flush = true;
            flush_out(f);
            f->loop_flush = false;
        }
    } while (f->again && !f->dead);
    f->running = false;
    if (!f->dead && f->lower_blocked && can_take_input(f)) {
        f->lower_blocked = false;
        dx_stream_writable(f->lower);
    }
    if (!f->dead && f->upper_blocked && can_take_clear(f)) {
        f->upper_blocked = false;
        dx_stream_writable(f->upper);
    }
    if (!f->dead)
        tell_deadline(f);
    tls_unref(f);
}

/* Fails the connection: the alert OpenSSL made goes out first, then both
 * streams fail with err. */
void dx_tls_fail(dx_tls *f, dx_error *err)
{
    if (f->failed || f->dead) {
        dx_error_free(err);
        return;
    }
    f->failed = true;
    tls_ref(f);
    if (!f->hs_done && f->ev.on_handshake_error)
        f->ev.on_handshake_error(f, err, f->user);
    if (f->dead) {
        dx_error_free(err);
        tls_unref(f);
        return;
    }
    if (f->flushing) {
        /* A flush further up the stack is pushing our records out (this
         * failure comes from a read taken during it, see take()): that
         * flush sends the alert on, and the streams fail once it is over
         * (flush_out()). */
        f->own_err = err;
        f->fail_after_flush = err;
        tls_unref(f);
        return;
    }
    fail_streams(f, err);
    tls_unref(f);
}

/* The end of dx_tls_fail(): the alert OpenSSL made goes out first, then
 * both streams fail with err (owned). A peer in the same process may fail
 * in turn and fail our lower stream through the link before we fail ours:
 * f->own_err makes our error the one reported. */
static void fail_streams(dx_tls *f, dx_error *err)
{
    tls_ref(f);
    f->own_err = err;
    flush_out(f);
    f->own_err = NULL;
    dx_error *copy = dx_error_copy(err);
    if (!f->dead)
        dx_stream_fail_with(f->upper, err);
    else
        dx_error_free(err);
    if (!f->dead)
        dx_stream_fail_with(f->lower, copy);
    else
        dx_error_free(copy);
    tls_unref(f);
}

/* ---- the streams ------------------------------------------------------------ */

typedef struct side {
    dx_tls *f;
} side;

static dx_tls *tls_of(dx_stream *s) { return ((side *)dx_stream_impl(s))->f; }

/* After a read done while the run's loop flushes (take()): whether a turn
 * of the loop has work left (what step() does after its read, events to
 * emit, trace text to collect, cleartext still offered), or can be left
 * out. */
static bool turn_has_work(const dx_tls *f)
{
    if (f->dead)
        return false; /* the run ends */
    return f->oom || f->evq || f->trace_bio || f->key_update || f->re.want || f->re.done ||
           f->re.refusal || f->re.cb || f->end_requested || f->read_done || f->failed ||
           (f->clear.iov && f->clear.idx < f->clear.n) || SSL_in_init(f->ssl);
}

/*
 * A write op: takes from iov what OpenSSL consumes now, through o. Refuses
 * (taken 0) while dx_tls_run() is busy or the connection cannot take bytes yet;
 * *blocked then asks dx_tls_run() to have the core offer them again.
 */
static void take(dx_tls *f, offered *o, bool *blocked, bool ready, const dx_iov *iov,
                 size_t n, size_t *taken)
{
    *blocked = true;
    if (o == &f->clear && f->delivering && ready && !f->clear.iov && !f->dead) {
        /* The consumer answers from its on_data, which step_read calls
         * outside any OpenSSL call: the answer is encrypted now, and goes
         * below with what this run flushes. No copy into the upper
         * stream's buffer, no second run. */
        *blocked = false;
        *o = (offered){.iov = iov, .n = n};
        step_write(f);
        bool all = o->idx == n;
        *taken = o->used;
        *o = (offered){0};
        if (!all)
            *blocked = true; /* the run offers the rest again when it ends */
        return;
    }
    if (o == &f->in && f->loop_flush && ready && !f->in_step && !f->inq.bytes && !f->in.iov &&
        f->secure_emitted && !f->evq && !f->failed && !f->dead) {
        /* Records the peer sent back while this run pushes ours from its
         * loop (a peer in the same process answers at once), on an
         * established connection with no event waiting to go first: read
         * now, between two OpenSSL calls, straight from the offered
         * buffers. The loop turns again for what the read may have left
         * to do. What the consumer did not want stays with the core,
         * offered again when the run ends. */
        *blocked = false;
        *o = (offered){.iov = iov, .n = n};
        f->in_step = true;
        step_read(f);
        f->in_step = false;
        bool all = o->idx == n;
        *taken = o->used;
        *o = (offered){0};
        if (f->got_input) {
            f->got_input = false;
            dx_tls_activity(f);
        }
        if (turn_has_work(f))
            f->again = true;
        if (!all)
            *blocked = true;
        return;
    }
    if (o == &f->in && f->flushing && ready && f->inq.bytes < IN_MARK &&
        !(f->in.iov && f->in.idx < f->in.n) && !f->dead) {
        /* Records the peer sent back while this run pushes ours (a peer in
         * the same process answers at once): kept in f->inq, behind
         * nothing still unread, and read by another turn of this run's
         * loop, instead of a second run the core would start once this
         * one is over. */
        size_t total;
        if (dx_iov_total(iov, n, &total) == 0 &&
            dx_bufq_appendv(&f->inq, iov, n, 0, total) == 0) {
            *blocked = false;
            *taken = total;
            f->again = true;
            return;
        }
    }
    if (f->running || !ready)
        return;
    *blocked = false;
    *o = (offered){.iov = iov, .n = n};
    dx_tls_run(f);
    size_t used = o->used;
    bool all = o->idx == n;
    *o = (offered){0};
    *taken = used;
    if (!all) {
        *blocked = true;
        /* Progress, and room for more (dx_tls_run() flushed): the core offers the
         * rest again at once, which it does only when told. */
        dx_stream *s = o == &f->clear ? f->upper : f->lower;
        if (used && (o == &f->clear ? can_take_clear(f) : can_take_input(f)))
            dx_stream_writable(s);
    }
}

static int upper_write(dx_stream *s, const dx_iov *iov, size_t n, size_t *taken)
{
    dx_tls *f = tls_of(s);
    take(f, &f->clear, &f->upper_blocked, can_take_clear(f), iov, n, taken);
    return 0;
}

static int upper_shutdown(dx_stream *s)
{
    dx_tls *f = tls_of(s);
    f->end_requested = true;
    if (f->running && !f->dead) {
        /* Ended from a callback the engine runs (the answer to the peer's
         * close_notify, Node's allowHalfOpen false, is one; never from
         * inside OpenSSL): close_notify goes below now, before this stream
         * finishes and may close, so that a consumer releasing the
         * connection in on_close does not take it away unsent. */
        step_shutdown(f);
        flush_out(f);
    }
    dx_tls_run(f);
    return 0;
}

static void upper_read_start(dx_stream *s) { dx_tls_run(tls_of(s)); }

/*
 * One stream closed: what happens to the other. A failure crosses over
 * (our own, while dx_tls_fail() is sending its alert). An upper stream that
 * closed after both its ends (peer's close_notify read, our end asked
 * for) leaves the lower stream to send the close_notify and finish on its
 * own, so that nothing buffered is lost; so does a lower
 * stream that ended both ways at the transport (the upper stream still
 * delivers what it holds, then the end or the truncation). Anything else
 * is an abort: the other stream goes too, and an upper stream still
 * reading fails with ECONNRESET.
 */
static void side_closed(dx_tls *f, dx_stream *self, dx_stream *other)
{
    if (dx_stream_state(other) & DX_STREAM_CLOSED)
        return;
    const dx_error *err = dx_stream_error(self);
    if (err) {
        dx_stream_fail_with(other, dx_error_copy(f->own_err ? f->own_err : err));
        return;
    }
    if (self == f->upper) {
        if (!(f->end_requested && f->read_done))
            dx_stream_abort(other);
        return;
    }
    if (f->in_eof && f->lower_ended)
        return;
    if (!f->read_done) {
        dx_tls_fail(f, dx_tls_or_oom(dx_error_new(
                           DX_ECONNRESET, "ECONNRESET", "tls", "%s",
                           f->hs_done ? "socket hang up"
                                      : "Client network socket disconnected before secure "
                                        "TLS connection was established")));
        return;
    }
    if (dx_stream_state(other) & DX_STREAM_WRITABLE) {
        /* Half-open, still writing: what it writes can no longer go. */
        dx_tls_fail(f, dx_tls_or_oom(dx_error_new(DX_EPIPE, "EPIPE", "tls",
                                                  "the transport went before this side ended")));
        return;
    }
    dx_stream_abort(other);
}

/* A stream closed, maybe inside an OpenSSL call (a user callback during
 * the handshake): the buffers it offered are gone, so OpenSSL gets no more
 * of them, and cleartext no longer goes anywhere. */
static void forget_offers(dx_tls *f)
{
    f->in = (offered){0};
    f->clear = (offered){0};
}

static void upper_close(dx_stream *s)
{
    dx_tls *f = tls_of(s);
    if (!f)
        return; /* a constructor that failed half-way */
    forget_offers(f);
    /* Nothing more is read for a closed upper stream: TLS bytes taken
     * while a run flushed go too, also from under an OpenSSL call that
     * called back into the application (bio_read finds nothing more). */
    dx_bufq_clear(&f->inq);
    tls_ref(f);
    if (f->deadline_hook) {
        /* The last word to the adapter's timer, before any callback of the
         * application: no deadline, ever again. */
        void (*hook)(dx_tls *, uint64_t, void *) = f->deadline_hook;
        f->deadline_hook = NULL;
        hook(f, DX_TLS_NO_DEADLINE, f->deadline_arg);
    }
    dx_tls_rehandshake_closed(f, dx_stream_error(s));
    if (f->close_hook) {
        void (*hook)(dx_tls *, void *) = f->close_hook;
        f->close_hook = NULL;
        hook(f, f->close_arg);
    }
    side_closed(f, s, f->lower);
    tls_unref(f);
}

static void side_release(dx_stream *s)
{
    if (tls_of(s))
        tls_unref(tls_of(s));
}

static int lower_write(dx_stream *s, const dx_iov *iov, size_t n, size_t *taken)
{
    dx_tls *f = tls_of(s);
    if (f->read_done) {
        /* After the peer's close_notify (or an allowed truncation) nothing
         * more is read: what comes is dropped, so that the end of the
         * transport can still arrive. */
        for (size_t i = 0; i < n; i++)
            *taken += iov[i].len;
        return 0;
    }
    take(f, &f->in, &f->lower_blocked, can_take_input(f), iov, n, taken);
    return 0;
}

static int lower_shutdown(dx_stream *s)
{
    dx_tls *f = tls_of(s);
    f->in_eof = true; /* before dx_tls_start(), it waits for it */
    dx_tls_run(f);
    return 0;
}

static void lower_read_start(dx_stream *s) { dx_tls_run(tls_of(s)); }

static void lower_close(dx_stream *s)
{
    dx_tls *f = tls_of(s);
    if (!f)
        return;
    forget_offers(f);
    tls_ref(f);
    side_closed(f, s, f->upper);
    tls_unref(f);
}

static const dx_stream_ops upper_ops = {
    .name = "tls",
    .write = upper_write,
    .shutdown = upper_shutdown,
    .read_start = upper_read_start,
    .close = upper_close,
    .release = side_release,
};

static const dx_stream_ops lower_ops = {
    .name = "tls",
    .write = lower_write,
    .shutdown = lower_shutdown,
    .read_start = lower_read_start,
    .close = lower_close,
    .release = side_release,
};

/* ---- public calls ------------------------------------------------------------ */

int dx_tls_new(dx_tls_ctx *ctx, dx_tls_role role, dx_tls **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    if (!ctx || (role != DX_TLS_CLIENT && role != DX_TLS_SERVER))
        return DX_EINVAL;
    SSL_CTX *sctx = dx_tls_ctx_ssl(ctx);
    if (!globals_ready()) /* made with the context: cannot fail here */
        return DX_ENOMEM;
    BIO_METHOD *m = bio_method;
    dx_tls *f = dx_calloc(1, sizeof(*f));
    if (!f)
        return DX_ENOMEM;
    dx_live_inc();
    f->refs = 1;
    f->ctx = dx_tls_ctx_ref(ctx);
    f->role = role;
    f->reject_unauthorized = true;
    if (role == DX_TLS_SERVER)
        dx_tls_ctx_client_verify(ctx, &f->request_cert, &f->reject_unauthorized);
    f->min_dh_size = 1024;
    f->clock = mono_ms;
    f->hs_timeout = DX_TLS_DEFAULT_HANDSHAKE_TIMEOUT_MS;
    f->told_deadline = DX_TLS_NO_DEADLINE;
    ERR_clear_error();
    f->ssl = SSL_new(sctx);
    f->bio = f->ssl ? BIO_new(m) : NULL;
    int rc = dx_stream_new(&upper_ops, sizeof(side), &f->upper);
    if (rc == 0)
        rc = dx_stream_new(&lower_ops, sizeof(side), &f->lower);
    if (!f->ssl || !f->bio || rc != 0) {
        BIO_free(f->bio);
        f->bio = NULL;
        if (f->upper)
            dx_stream_destroy(f->upper);
        if (f->lower)
            dx_stream_destroy(f->lower);
        ERR_clear_error();
        tls_unref(f);
        return DX_ENOMEM;
    }
    ((side *)dx_stream_impl(f->upper))->f = f;
    ((side *)dx_stream_impl(f->lower))->f = f;
    f->refs += 2;
    /* The connection keeps the memory of both streams beyond their handles
     * (a user may destroy a stream handle or hand it to a link). */
    dx_stream_ref(f->upper);
    dx_stream_ref(f->lower);
    BIO_set_data(f->bio, f);
    SSL_set_bio(f->ssl, f->bio, f->bio);
    if (!SSL_set_ex_data(f->ssl, ssl_index, f)) {
        ERR_clear_error();
        dx_tls_destroy(f);
        return DX_ENOMEM;
    }
    SSL_set_info_callback(f->ssl, info_cb);
    /* always on: it counts the peer's KeyUpdates (and serves the trace and
     * post-handshake authentication) */
    SSL_set_msg_callback_arg(f->ssl, f);
    SSL_set_msg_callback(f->ssl, msg_cb);
    /* One record at a time from the BIO, whatever the context says: the
     * read loop relies on it (may_read()), and what OpenSSL has not taken
     * stays with the lower stream's backpressure. */
    SSL_set_read_ahead(f->ssl, 0);
    if (role == DX_TLS_SERVER && dx_tls_ctx_honor_cipher_order(ctx))
        SSL_set_options(f->ssl, SSL_OP_CIPHER_SERVER_PREFERENCE);
    *out = f;
    return 0;
}

void dx_tls_destroy(dx_tls *t)
{
    if (!t || t->dead)
        return;
    tls_ref(t);
    /* Abort first (on_close on both streams), then release. */
    t->dead = true;
    dx_stream_abort(t->upper);
    dx_stream_abort(t->lower);
    dx_stream *upper = t->upper, *lower = t->lower;
    if (t->link) {
        dx_link_destroy(t->link); /* releases lower's handle and the transport */
        t->link = NULL;
    } else {
        dx_stream_destroy(lower);
    }
    dx_stream_destroy(upper);
    if (!t->in_step)
        drop_ssl(t); /* else when the OpenSSL call has returned */
    dx_stream_unref(upper);
    dx_stream_unref(lower);
    tls_unref(t);
    tls_unref(t); /* the handle */
}

dx_stream *dx_tls_upper(dx_tls *t) { return t ? t->upper : NULL; }
dx_stream *dx_tls_lower(dx_tls *t) { return t ? t->lower : NULL; }

dx_tls *dx_tls_from_stream(const dx_stream *s)
{
    const dx_stream_ops *ops = dx_stream_ops_of(s);
    if (ops != &upper_ops && ops != &lower_ops)
        return NULL;
    return ((side *)dx_stream_impl(s))->f;
}

int dx_tls_set_events(dx_tls *t, const dx_tls_events *ev, void *user)
{
    if (!t)
        return DX_EINVAL;
    if (ev)
        t->ev = *ev;
    else
        memset(&t->ev, 0, sizeof(t->ev));
    t->user = user;
    if (t->started && wants_keylog(t)) {
        dx_tls_ctx_want_keylog(t->ctx);
        dx_tls_ctx_want_keylog(t->sni_ctx);
    }
    return 0;
}

void *dx_tls_user(const dx_tls *t) { return t ? t->user : NULL; }

int dx_tls_attach(dx_tls *t, dx_stream *transport)
{
    if (!t || !transport || t->link || transport == t->upper || transport == t->lower)
        return DX_EINVAL;
    if (t->started || t->dead)
        return DX_ESTATE;
    /* t->link is set before the link wires the streams, so that a callback
     * that destroys the connection from inside sees it. */
    int rc = dx_link_new(t->lower, transport, NULL, NULL, &t->link);
    if (rc != 0)
        dx_stream_destroy(transport);
    return rc;
}

int dx_tls_prefix(dx_tls *t, const void *data, size_t len)
{
    if (!t || (len && !data))
        return DX_EINVAL;
    if (t->started || t->dead)
        return DX_ESTATE;
    return dx_bufq_append(&t->inq, data, len) == 0 ? 0 : DX_ENOMEM;
}

int dx_tls_start(dx_tls *t)
{
    if (!t)
        return DX_EINVAL;
    if (t->started || t->dead || t->failed ||
        (dx_stream_state(t->upper) & DX_STREAM_CLOSED))
        return DX_ESTATE;
    t->started = true;
    if (t->role == DX_TLS_CLIENT) {
        SSL_set_connect_state(t->ssl);
        if (t->servername && !is_ip(t->servername) &&
            !SSL_set_tlsext_host_name(t->ssl, t->servername)) {
            dx_tls_fail(t, dx_tls_ssl_error(t, SSL_ERROR_SSL));
            return 0;
        }
        SSL_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
        if (t->alpn_len && SSL_set_alpn_protos(t->ssl, t->alpn, (unsigned)t->alpn_len) != 0) {
            dx_tls_fail(t, dx_tls_or_oom(dx_error_new(DX_ENOMEM, NULL, "tls", "ALPN refused")));
            return 0;
        }
    } else {
        SSL_set_accept_state(t->ssl);
        dx_tls_apply_client_verification(t);
    }
    dx_tls_rehandshake_start(t);
    if (dx_tls_psk_start(t) != 0) {
        ERR_clear_error();
        dx_tls_fail(t, (dx_error *)dx_error_oom());
        return 0;
    }
    if (t->release_buffers)
        SSL_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);
    if (wants_keylog(t))
        dx_tls_ctx_want_keylog(t->ctx);
    if (t->hs_timeout)
        t->hs_deadline = dx_tls_now(t) + t->hs_timeout;
    dx_tls_activity(t);
    dx_tls_run(t);
    return 0;
}

/* ---- options ------------------------------------------------------------------ */

static int set_name(dx_tls *t, char **slot, const char *name)
{
    BEFORE_START(t);
    if (!name || !*name)
        return DX_EINVAL;
    char *c = dx_strdup(name);
    if (!c)
        return DX_ENOMEM;
    dx_free(*slot);
    *slot = c;
    return 0;
}

int dx_tls_set_servername(dx_tls *t, const char *name)
{
    if (t && t->role == DX_TLS_SERVER)
        return DX_EINVAL;
    return set_name(t, t ? &t->servername : NULL, name);
}

int dx_tls_set_host(dx_tls *t, const char *host)
{
    if (t && t->role == DX_TLS_SERVER)
        return DX_EINVAL;
    return set_name(t, t ? &t->host : NULL, host);
}

int dx_tls_set_reject_unauthorized(dx_tls *t, bool reject)
{
    BEFORE_START(t);
    t->reject_unauthorized = reject;
    return 0;
}

int dx_tls_set_request_cert(dx_tls *t, bool request)
{
    BEFORE_START(t);
    if (t->role != DX_TLS_SERVER)
        return DX_EINVAL;
    t->request_cert = request;
    return 0;
}

int dx_tls_set_check_identity(dx_tls *t, dx_tls_identity_cb cb, void *user)
{
    BEFORE_START(t);
    if (t->role != DX_TLS_CLIENT)
        return DX_EINVAL;
    t->identity_cb = cb;
    t->identity_user = user;
    return 0;
}

void dx_tls_set_server(dx_tls *t, dx_tls_server *srv) { t->server = srv; }
dx_tls_server *dx_tls_get_server(const dx_tls *t) { return t->server; }
bool dx_tls_offered_resumption(const dx_tls *t) { return t->offered && !t->psk.external; }

void dx_tls_set_close_hook(dx_tls *t, void (*hook)(dx_tls *t, void *arg), void *arg)
{
    t->close_hook = hook;
    t->close_arg = arg;
}

void dx_tls_set_sni_resolver(dx_tls *t, dx_tls_ctx *(*fn)(void *arg, const char *name),
                             void *arg)
{
    t->sni_resolve = fn;
    t->sni_resolve_arg = arg;
}

int dx_tls_set_sni_callback(dx_tls *t, dx_tls_sni_cb cb, void *user)
{
    BEFORE_START(t);
    if (t->role != DX_TLS_SERVER)
        return DX_EINVAL;
    t->sni_cb = cb;
    t->sni_user = user;
    return 0;
}

/* Takes the answer to a pending SNI choice: the connection, or NULL when
 * it went (p is freed either way). */
static dx_tls *take_sni_answer(dx_tls_pending *p)
{
    dx_tls *f = p->f;
    dx_free(p);
    if (f)
        f->pending = NULL; /* also when destroyed: f is freed later */
    if (!f || f->dead)
        return NULL;
    return f;
}

int dx_tls_sni_done(dx_tls_pending *p, dx_tls_ctx *ctx)
{
    if (!p || p->kind != PENDING_SNI)
        return DX_EINVAL;
    dx_tls *f = take_sni_answer(p);
    if (!f)
        return 0;
    f->sni_ctx = ctx ? dx_tls_ctx_ref(ctx) : NULL;
    f->sni = SNI_DONE;
    dx_tls_run(f); /* the handshake goes on (later, if dx_tls_run() is busy now) */
    return 0;
}

int dx_tls_sni_refuse(dx_tls_pending *p, dx_error *err)
{
    if (!p || p->kind != PENDING_SNI) {
        dx_error_free(err);
        return DX_EINVAL;
    }
    dx_tls *f = take_sni_answer(p);
    if (!f) {
        dx_error_free(err);
        return 0;
    }
    /* Without an error, or memory for one, the name is refused all the
     * same. */
    if (!err)
        err = dx_tls_or_oom(dx_error_new(DX_ETLS, "ERR_TLS_SNI_REFUSED", "tls",
                                         "the server refused the name %s", f->sni_name));
    dx_error_default_layer(err, "tls");
    f->sni_err = err;
    f->sni = SNI_FAILED;
    dx_tls_run(f);
    return 0;
}

int dx_tls_session_found(dx_tls_pending *p, const void *session, size_t len)
{
    if (!p || p->kind != PENDING_LOOKUP)
        return DX_EINVAL;
    dx_tls *f = p->f;
    dx_free(p);
    if (f)
        f->lookup_pending = NULL; /* also when destroyed: f is freed later */
    if (!f || f->dead)
        return 0;
    if (session && len && len <= 0x7fffffff) {
        const unsigned char *q = session;
        f->resume_sess = d2i_SSL_SESSION(NULL, &q, (long)len);
        ERR_clear_error(); /* bytes that are no session: a full handshake */
        if (!f->resume_sess && f->server)
            dx_tls_server_session_bad(f->server, f->lookup_id, f->lookup_len);
    }
    f->lookup = SNI_DONE;
    dx_tls_run(f);
    return 0;
}

int dx_tls_set_alpn_protocols(dx_tls *t, const char *const *protocols)
{
    BEFORE_START(t);
    if (!protocols || !protocols[0] || t->alpn_cb)
        return DX_EINVAL;
    size_t len = 0;
    for (const char *const *p = protocols; *p; p++) {
        size_t n = strlen(*p);
        if (n == 0 || n > 255 || len + 1 + n > 0xffff)
            return DX_EINVAL;
        len += 1 + n;
    }
    uint8_t *wire = dx_malloc(len), *w = wire;
    if (!wire)
        return DX_ENOMEM;
    for (const char *const *p = protocols; *p; p++) {
        size_t n = strlen(*p);
        *w++ = (uint8_t)n;
        memcpy(w, *p, n);
        w += n;
    }
    dx_free(t->alpn);
    t->alpn = wire;
    t->alpn_len = len;
    return 0;
}

int dx_tls_set_alpn_callback(dx_tls *t, dx_tls_alpn_cb cb, void *user)
{
    BEFORE_START(t);
    if (t->role != DX_TLS_SERVER || (cb && t->alpn))
        return DX_EINVAL;
    t->alpn_cb = cb;
    t->alpn_user = user;
    return 0;
}

int dx_tls_set_allow_half_open(dx_tls *t, bool allow)
{
    BEFORE_START(t);
    t->allow_half_open = allow;
    return 0;
}

int dx_tls_set_allow_truncation(dx_tls *t, bool allow)
{
    BEFORE_START(t);
    t->allow_truncation = allow;
    return 0;
}

int dx_tls_set_release_buffers(dx_tls *t, bool release)
{
    BEFORE_START(t);
    t->release_buffers = release;
    return 0;
}

int dx_tls_set_session(dx_tls *t, const void *session, size_t len)
{
    BEFORE_START(t);
    if (t->role != DX_TLS_CLIENT || !session || !len || len > 0x7fffffff)
        return DX_EINVAL;
    SSL_SESSION *s;
    int rc = dx_tls_ctx_session(t->ctx, session, len, &s);
    if (rc != 0)
        return rc;
    int ok = SSL_set_session(t->ssl, s);
    SSL_SESSION_free(s);
    /* bytes that are no session, or no memory to read them */
    bool oom = dx_tls_drain_openssl_errors();
    return ok ? 0 : oom ? DX_ENOMEM : DX_EINVAL;
}

int dx_tls_set_min_dh_size(dx_tls *t, unsigned bits)
{
    BEFORE_START(t);
    if (bits == 0 || t->role != DX_TLS_CLIENT)
        return DX_EINVAL;
    t->min_dh_size = bits;
    return 0;
}

int dx_tls_set_clock(dx_tls *t, dx_tls_clock_fn now, void *arg)
{
    if (!t)
        return DX_EINVAL;
    t->clock = now ? now : mono_ms;
    t->clock_arg = now ? arg : NULL;
    return 0;
}

int dx_tls_set_handshake_timeout(dx_tls *t, uint64_t ms)
{
    if (!t)
        return DX_EINVAL;
    if (t->hs_done || t->dead)
        return DX_ESTATE;
    t->hs_timeout = ms;
    if (t->started) {
        t->hs_deadline = ms ? dx_tls_now(t) + ms : 0;
        tell_deadline(t);
    }
    return 0;
}

int dx_tls_set_idle_timeout(dx_tls *t, uint64_t ms)
{
    if (!t)
        return DX_EINVAL;
    t->idle_timeout = ms;
    t->idle_deadline = 0;
    dx_tls_activity(t);
    if (!t->dead)
        tell_deadline(t);
    return 0;
}

int dx_tls_set_deadline_hook(dx_tls *t, void (*fn)(dx_tls *t, uint64_t when, void *arg),
                             void *arg)
{
    if (!t)
        return DX_EINVAL;
    if (!fn) {
        t->deadline_hook = NULL;
        t->deadline_arg = NULL;
        return 0;
    }
    /* A closed connection would never give the last call; a second hook
     * would take the first one's last call away from it. */
    if (t->dead || t->deadline_hook || (dx_stream_state(t->upper) & DX_STREAM_CLOSED))
        return DX_ESTATE;
    t->deadline_hook = fn;
    t->deadline_arg = arg;
    return 0;
}

uint64_t dx_tls_deadline(const dx_tls *t)
{
    return t ? next_deadline(t) : DX_TLS_NO_DEADLINE;
}

void dx_tls_check_timeouts(dx_tls *t)
{
    if (!t || !t->started || is_closed(t))
        return;
    tls_ref(t);
    uint64_t now = dx_tls_now(t);
    if (t->started && !t->hs_done && t->hs_deadline && now >= t->hs_deadline) {
        dx_error *err = dx_error_new(DX_ETIMEDOUT, "ERR_TLS_HANDSHAKE_TIMEOUT", "tls",
                                     "TLS handshake timeout");
        dx_tls_fail(t, dx_tls_or_oom(err));
    }
    if (!t->dead && !t->failed && t->re.cb && t->re.deadline && now >= t->re.deadline) {
        /* a peer that never answers our renegotiation or certificate
         * request: as a first handshake that takes too long */
        dx_error *err = dx_error_new(DX_ETIMEDOUT, "ERR_TLS_HANDSHAKE_TIMEOUT", "tls",
                                     "TLS handshake timeout (on the open connection)");
        dx_tls_fail(t, dx_tls_or_oom(err));
    }
    if (!t->dead && !t->failed && t->idle_deadline && now >= t->idle_deadline) {
        t->idle_deadline = now + t->idle_timeout;
        if (t->ev.on_timeout)
            t->ev.on_timeout(t, t->user);
    }
    if (!t->dead)
        tell_deadline(t);
    tls_unref(t);
}

/* Called for every record header and handshake message, both ways: what
 * it does not need returns at once (the connection comes as the
 * callback's argument, not from the SSL's ex data). */
static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg)
{
    dx_tls *f = arg;
    if (content_type != SSL3_RT_HANDSHAKE && !f->trace_bio)
        return;
#ifndef OPENSSL_NO_SSL_TRACE
    if (f->trace_bio)
        SSL_trace(write_p, version, content_type, buf, len, ssl, f->trace_bio);
#else
    (void)version, (void)ssl;
#endif
    if (content_type != SSL3_RT_HANDSHAKE)
        return;
    /* KeyUpdates read since the last cleartext: OpenSSL 3.0 sets no bound */
    if (!write_p && f->hs_done && len >= 1 && ((const uint8_t *)buf)[0] == SSL3_MT_KEY_UPDATE)
        f->key_updates_in++;
    if (dx_tls_rehandshake_wants_msgs(f))
        dx_tls_rehandshake_msg(f, write_p, content_type, buf, len);
}

int dx_tls_set_trace(dx_tls *t, bool on)
{
    if (!t)
        return DX_EINVAL;
    if (!t->ssl || is_closed(t))
        return DX_ESTATE;
#ifndef OPENSSL_NO_SSL_TRACE
    if (on && !t->trace_bio) {
        t->trace_bio = BIO_new(BIO_s_mem());
        if (!t->trace_bio)
            return DX_ENOMEM;
    } else if (!on && t->trace_bio) {
        BIO_free(t->trace_bio);
        t->trace_bio = NULL;
    }
    t->trace = on;
    return 0;
#else
    (void)on;
    return DX_ENOTSUP;
#endif
}

int dx_tls_set_max_send_fragment(dx_tls *t, size_t size)
{
    if (!t || size < 512 || size > 16384)
        return DX_EINVAL;
    if (!t->ssl)
        return DX_ESTATE;
    if (!SSL_set_max_send_fragment(t->ssl, (long)size))
        return DX_EINVAL;
    t->max_fragment = size;
    return 0;
}

/* ---- introspection --------------------------------------------------------- */

/* Open and past the handshake? */
static bool live(const dx_tls *t)
{
    return t && t->ssl && !t->dead && !(dx_stream_state(t->upper) & DX_STREAM_CLOSED);
}

static bool secure(const dx_tls *t) { return live(t) && t->hs_done; }

dx_tls_role dx_tls_get_role(const dx_tls *t) { return t ? t->role : DX_TLS_CLIENT; }

bool dx_tls_is_secure(const dx_tls *t) { return secure(t); }

bool dx_tls_authorized(const dx_tls *t)
{
    /* Readable after close, until dx_tls_destroy(), as Node's authorized. */
    return t && t->hs_done && !t->dead && t->authorized;
}

const char *dx_tls_authorization_error(const dx_tls *t)
{
    return t && t->verify_err && !t->dead ? dx_error_name(t->verify_err) : NULL;
}

const dx_error *dx_tls_verify_error(const dx_tls *t)
{
    return t && !t->dead ? t->verify_err : NULL;
}

long dx_tls_verify_result(const dx_tls *t)
{
    return t && t->ssl ? SSL_get_verify_result(t->ssl) : X509_V_OK;
}

const char *dx_tls_protocol(const dx_tls *t)
{
    if (!live(t))
        return NULL;
    return t->hs_done ? SSL_get_version(t->ssl) : "unknown";
}

int dx_tls_cipher(const dx_tls *t, dx_tls_cipher_info *out)
{
    if (!t || !out)
        return DX_EINVAL;
    const SSL_CIPHER *c = secure(t) ? SSL_get_current_cipher(t->ssl) : NULL;
    if (!c)
        return DX_ESTATE;
    out->name = SSL_CIPHER_get_name(c);
    out->standard_name = SSL_CIPHER_standard_name(c);
    out->version = SSL_CIPHER_get_version(c);
    return 0;
}

int dx_tls_ephemeral_key(const dx_tls *t, dx_tls_kex_info *out)
{
    if (!t || !out)
        return DX_EINVAL;
    if (!secure(t))
        return DX_ESTATE;
    EVP_PKEY *k = NULL;
    if (!SSL_get_peer_tmp_key(t->ssl, &k) || !k) {
        ERR_clear_error();
        return DX_ENOTSUP;
    }
    out->bits = EVP_PKEY_get_bits(k);
    if (EVP_PKEY_is_a(k, "DH")) {
        out->type = "DH";
        out->name = NULL;
    } else {
        out->type = "ECDH";
        int nid = SSL_get_negotiated_group(t->ssl);
        const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
        if (EVP_PKEY_is_a(k, "X25519"))
            sn = "X25519";
        else if (EVP_PKEY_is_a(k, "X448"))
            sn = "X448";
        out->name = sn;
    }
    EVP_PKEY_free(k);
    return 0;
}

const char *dx_tls_servername(const dx_tls *t)
{
    if (!t || t->dead)
        return NULL;
    if (t->role == DX_TLS_CLIENT)
        return t->servername;
    return t->sni_name[0] ? t->sni_name : NULL;
}

int dx_tls_key_update(dx_tls *t, bool request_peer)
{
    if (!t)
        return DX_EINVAL;
    if (!secure(t) || t->failed || t->notify_sent || SSL_version(t->ssl) != TLS1_3_VERSION)
        return DX_ESTATE;
    if (!SSL_key_update(t->ssl, request_peer ? SSL_KEY_UPDATE_REQUESTED
                                             : SSL_KEY_UPDATE_NOT_REQUESTED)) {
        ERR_clear_error();
        return DX_ESTATE;
    }
    t->key_update = true;
    dx_tls_run(t);
    return 0;
}

const char *dx_tls_alpn_protocol(const dx_tls *t)
{
    if (!secure(t))
        return NULL;
    const unsigned char *p;
    unsigned n;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    if (!n)
        return NULL;
    dx_tls *m = (dx_tls *)t; /* a cache of the answer */
    memcpy(m->alpn_sel, p, n);
    m->alpn_sel[n] = '\0';
    return m->alpn_sel;
}

const dx_tls_cert *dx_tls_peer_cert(dx_tls *t)
{
    if (!secure(t))
        return NULL;
    if (!t->peer_cert) {
        X509 *x = SSL_get0_peer_certificate(t->ssl);
        if (x && dx_tls_cert_wrap(x, &t->peer_cert) != 0)
            t->peer_cert = NULL;
    }
    return t->peer_cert;
}

/* Builds the chain objects once: the verified chain, else the sent one. */
static void make_chain(dx_tls *t)
{
    if (t->chain_made)
        return;
    STACK_OF(X509) *sk = SSL_get0_verified_chain(t->ssl);
    if (!sk || sk_X509_num(sk) == 0)
        sk = SSL_get_peer_cert_chain(t->ssl);
    int n = sk ? sk_X509_num(sk) : 0;
    bool add_leaf = false;
    X509 *leaf = SSL_get0_peer_certificate(t->ssl);
    /* A server's sent chain omits the client's own certificate. */
    if (leaf && (n == 0 || X509_cmp(sk_X509_value(sk, 0), leaf) != 0))
        add_leaf = true;
    size_t total = (size_t)n + (add_leaf ? 1 : 0);
    if (total == 0) {
        t->chain_made = true;
        return;
    }
    t->chain = dx_calloc(total, sizeof(*t->chain));
    if (!t->chain)
        return;
    size_t k = 0;
    if (add_leaf && dx_tls_cert_wrap(leaf, &t->chain[k]) == 0)
        k++;
    for (int i = 0; i < n; i++)
        if (dx_tls_cert_wrap(sk_X509_value(sk, i), &t->chain[k]) == 0)
            k++;
    t->chain_len = k;
    t->chain_made = true;
}

size_t dx_tls_peer_chain_length(dx_tls *t)
{
    if (!secure(t))
        return 0;
    make_chain(t);
    return t->chain_len;
}

const dx_tls_cert *dx_tls_peer_chain(dx_tls *t, size_t index)
{
    if (!secure(t))
        return NULL;
    make_chain(t);
    return index < t->chain_len ? t->chain[index] : NULL;
}

const dx_tls_cert *dx_tls_local_cert(dx_tls *t)
{
    if (!secure(t))
        return NULL;
    if (!t->local_cert) {
        X509 *x = SSL_get_certificate(t->ssl);
        if (x && dx_tls_cert_wrap(x, &t->local_cert) != 0)
            t->local_cert = NULL;
    }
    return t->local_cert;
}

size_t dx_tls_finished(const dx_tls *t, void *buf, size_t cap)
{
    if (!secure(t))
        return 0;
    return SSL_get_finished(t->ssl, buf, cap);
}

size_t dx_tls_peer_finished(const dx_tls *t, void *buf, size_t cap)
{
    if (!secure(t))
        return 0;
    return SSL_get_peer_finished(t->ssl, buf, cap);
}

const char *dx_tls_shared_sigalg(dx_tls *t, size_t index)
{
    if (!secure(t) || index > 0x7fffffff)
        return NULL;
    int sign, hash;
    if (SSL_get_shared_sigalgs(t->ssl, (int)index, &sign, &hash, NULL, NULL, NULL) <= 0)
        return NULL;
    const char *s = sign == EVP_PKEY_RSA_PSS ? "RSA-PSS"
                    : sign == EVP_PKEY_RSA   ? "RSA"
                    : sign == EVP_PKEY_EC    ? "ECDSA"
                                             : OBJ_nid2sn(sign);
    if (sign == EVP_PKEY_ED25519 || sign == EVP_PKEY_ED448 || hash == NID_undef)
        snprintf(t->sigalg, sizeof(t->sigalg), "%s", s ? s : "UNKNOWN");
    else
        snprintf(t->sigalg, sizeof(t->sigalg), "%s+%s", s ? s : "UNKNOWN",
                 OBJ_nid2sn(hash));
    return t->sigalg;
}

int dx_tls_export_keying_material(const dx_tls *t, void *out, size_t len,
                                  const char *label, const void *context,
                                  size_t context_len)
{
    if (!t || !out || !len || !label || (context_len && !context))
        return DX_EINVAL;
    if (!secure(t))
        return DX_ESTATE;
    int ok = SSL_export_keying_material(t->ssl, out, len, label, strlen(label),
                                        context, context_len, context != NULL);
    ERR_clear_error();
    return ok == 1 ? 0 : DX_ETLS;
}

/* Copies a DER encoding into the caller's buffer. */
static int copy_out(const unsigned char *der, size_t n, void *buf, size_t cap,
                    size_t *len)
{
    if (len)
        *len = n;
    if (n > cap)
        return DX_ENOBUFS;
    if (n)
        memcpy(buf, der, n);
    return 0;
}

int dx_tls_get_session(const dx_tls *t, void *buf, size_t cap, size_t *len)
{
    if (!t || (cap && !buf))
        return DX_EINVAL;
    SSL_SESSION *s = secure(t) ? SSL_get_session(t->ssl) : NULL;
    if (!s)
        return DX_ESTATE;
    int n = i2d_SSL_SESSION(s, NULL);
    if (n <= 0)
        return DX_ENOMEM;
    unsigned char *der = dx_malloc((size_t)n), *p = der;
    if (!der)
        return DX_ENOMEM;
    i2d_SSL_SESSION(s, &p);
    int rc = copy_out(der, (size_t)n, buf, cap, len);
    dx_free(der);
    return rc;
}

int dx_tls_get_ticket(const dx_tls *t, void *buf, size_t cap, size_t *len)
{
    if (!t || (cap && !buf))
        return DX_EINVAL;
    SSL_SESSION *s = secure(t) ? SSL_get_session(t->ssl) : NULL;
    if (!s)
        return DX_ESTATE;
    if (t->role != DX_TLS_CLIENT || !SSL_SESSION_has_ticket(s))
        return DX_ENOTSUP;
    const unsigned char *tick;
    size_t n;
    SSL_SESSION_get0_ticket(s, &tick, &n);
    return copy_out(tick, n, buf, cap, len);
}

bool dx_tls_session_reused(const dx_tls *t)
{
    return secure(t) && SSL_session_reused(t->ssl) && !t->psk.external;
}

bool dx_tls_clean_end(const dx_tls *t) { return t && (t->clean_end || !t->read_done); }

void dx_tls_get_stats(const dx_tls *t, dx_tls_stats *out)
{
    if (!out)
        return;
    if (t)
        *out = t->stats;
    else
        memset(out, 0, sizeof(*out));
}

void *dx_tls_openssl(const dx_tls *t) { return live(t) ? t->ssl : NULL; }
