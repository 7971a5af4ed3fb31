/*
 * Internal: the connection object of the TLS filter, shared by filter.c
 * (the engine and the streams) and the files that add one feature each
 * to it. Only files of filters/tls include it.
 */
#ifndef DX_TLS_FILTER_INTERNAL_H
#define DX_TLS_FILTER_INTERNAL_H

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <duplex/link.h>
#include <duplex/tls_filter.h>

#include "bufq.h"
#include "tls_internal.h"

/* ---- queued TLS events -------------------------------------------------- */

typedef enum ev_kind {
    EV_KEYLOG,
    EV_SESSION,
    EV_TRACE,
    EV_SNI,
    EV_LOOKUP,
    EV_REHANDSHAKE, /* ours completed: call re.cb */
} ev_kind;

/* Where the SNI choice stands. */
typedef enum sni_state { SNI_NONE, SNI_WAITING, SNI_DONE, SNI_APPLIED, SNI_FAILED } sni_state;

/* A pending answer: outlives the connection if the user answers late. */
typedef enum pending_kind { PENDING_SNI, PENDING_LOOKUP, PENDING_OCSP } pending_kind;
struct dx_tls_pending {
    dx_tls *f; /* NULL once the connection is gone */
    bool handed;       /* given to the application, which must answer it */
    pending_kind kind; /* what answers it: dx_tls_sni_*, dx_tls_session_found,
                        * dx_tls_ocsp_done */
    size_t index;      /* PENDING_OCSP: which certificate (tls_ocsp.items) */
};

/* OCSP stapling (ocsp.c). A server asks the application about each
 * certificate it may present and keeps the answers until the status
 * callback staples the one for the certificate chosen. */
typedef struct ocsp_item {
    X509 *cert, *issuer;     /* references; issuer NULL when not found */
    dx_tls_pending *pending; /* handed to the application, not yet answered */
    bool asked, answered;
    uint8_t *resp;           /* the answer: DER, or NULL for no staple */
    size_t len;
} ocsp_item;

typedef struct tls_ocsp {
    /* client */
    unsigned flags;            /* DX_TLS_OCSP_* */
    uint8_t *resp;             /* the staple received, or NULL */
    size_t len;
    dx_tls_ocsp_result result;
    bool failed;               /* the staple did not hold: no sessions */
    bool told;                 /* on_ocsp_response emitted */
    /* server */
    dx_tls_ocsp_cb cb;
    void *user;
    sni_state state;           /* NONE, WAITING, DONE, FAILED */
    ocsp_item *items;
    size_t n_items, waiting;
    dx_error *err;             /* the answer that failed the handshake */
} tls_ocsp;

typedef struct tls_event {
    struct tls_event *next;
    ev_kind kind;
    size_t len;
    uint8_t data[]; /* NUL-terminated for text */
} tls_event;

/* Pre-shared keys (psk.c). */
typedef struct tls_psk {
    dx_tls_psk_cb cb;
    void *user;
    char *hint;          /* server: the identity hint, or NULL */
    bool given;          /* a key went to OpenSSL */
    bool refused;        /* server: the callback knew an identity not */
    bool authenticated;  /* a key authenticated the handshake */
    bool external;       /* ... as an external key: no resumption */
    dx_error *err;       /* the failure a callback answer caused */
    char identity[DX_TLS_PSK_IDENTITY_MAX + 1]; /* client: the TLS 1.3 one sent */
} tls_psk;

/* ---- the connection ----------------------------------------------------- */

/* Buffers a stream's core offers to our write op, and how far we got. */
typedef struct offered {
    const dx_iov *iov;
    size_t n, idx, off, used;
} offered;

struct dx_tls {
    unsigned refs; /* the handle, one per stream, one per running call */
    dx_tls_ctx *ctx;
    SSL *ssl;
    BIO *bio;
    dx_tls_role role;
    dx_stream *upper, *lower;
    dx_link *link;
    dx_tls_events ev;
    void *user;

    /* input: prefix bytes, then the buffers offered to the lower write */
    dx_bufq inq;
    offered in;
    /* output: records waiting to be pushed below */
    dx_bufq outq;
    /* cleartext offered to the upper write */
    offered clear;
    size_t retry_len; /* length of an SSL_write to repeat, 0 if none */

    tls_event *evq, *evq_tail;

    /* options */
    char *servername, *host;
    bool reject_unauthorized, request_cert, allow_half_open, allow_truncation;
    bool release_buffers, trace;
    unsigned min_dh_size;
    size_t max_fragment;
    dx_tls_identity_cb identity_cb;
    void *identity_user;
    dx_tls_clock_fn clock;
    void *clock_arg;
    uint64_t hs_timeout, idle_timeout;
    uint64_t hs_deadline, idle_deadline, told_deadline;
    BIO *trace_bio;

    /* verification */
    bool authorized;
    long verify_result;
    dx_error *verify_err;
    char alerts[96]; /* alerts sent and received, for error details */

    /* state */
    bool started, hs_done, secure_emitted, failed, dead;
    bool oom; /* an allocation of ours failed under OpenSSL */
    bool key_update; /* a KeyUpdate to send */
    unsigned key_updates_in; /* the peer's KeyUpdates since data moved */
    bool got_input; /* bytes went to OpenSSL: the idle timer starts over */
    const dx_error *own_err; /* during dx_tls_fail(): the error being reported */
    dx_error *fail_after_flush; /* a failure waiting for the flush under way */
    bool running, again, in_step, flushing;
    bool loop_flush;      /* dx_tls_run()'s loop is flushing (see take()) */
    bool delivering;      /* step_read is handing cleartext to the consumer */
    bool read_full;       /* the last SSL_read() filled its buffer: OpenSSL may
                           * hold more of the record */
    bool in_eof;          /* the transport ended (lower stream's end) */
    bool read_done;       /* upper end pushed */
    bool clean_end;       /* close_notify received */
    bool end_requested;   /* upper stream's end: send close_notify */
    bool notify_sent, lower_ended;
    bool lower_blocked, upper_blocked;
    dx_tls_stats stats;

    /* SNI and ALPN */
    dx_tls_sni_cb sni_cb;
    void *sni_user;
    dx_tls_ctx *(*sni_resolve)(void *arg, const char *name);
    void *sni_resolve_arg;
    sni_state sni;
    dx_tls_pending *pending;
    dx_tls_ctx *sni_ctx;
    dx_error *sni_err;
    char sni_name[256];
    bool hello_seen, offered;
    sni_state lookup; /* the session lookup: NONE, WAITING, DONE */
    dx_tls_pending *lookup_pending;
    SSL_SESSION *resume_sess; /* what the store found */
    uint8_t lookup_id[SSL_MAX_SSL_SESSION_ID_LENGTH];
    size_t lookup_len;
    uint8_t *alpn; /* wire format */
    size_t alpn_len;
    dx_tls_alpn_cb alpn_cb;
    void *alpn_user;
    char alpn_sel[256];

    /* handshakes on an open connection (rehandshake.c) */
    struct {
        dx_tls_done_cb cb; /* ours under way, until it is called */
        void *cb_user;
        bool want;       /* dx_tls_renegotiate(): start in the next step */
        bool pha;        /* ours is a post-handshake authentication */
        bool done;       /* OpenSSL completed a handshake: settle it */
        bool peer_start; /* the peer started one (renegotiation) */
        bool disabled, allow_client, offer_pha;
        unsigned limit;        /* client renegotiations per window */
        uint64_t window;       /* ms */
        uint64_t *times;       /* when the last ones came, a ring */
        unsigned ntimes, next; /* entries used, the oldest */
        dx_error *refusal;     /* why a peer's handshake fails the connection */
        uint64_t deadline;     /* ours must be over by then (0: no limit) */
    } re;
    /* certificate objects replaced by a later handshake, kept until the
     * connection is released */
    dx_tls_cert **retired;
    size_t nretired;

    void (*close_hook)(dx_tls *t, void *arg);
    void *close_arg;
    /* an adapter's timer (dx_tls_set_deadline_hook) */
    void (*deadline_hook)(dx_tls *t, uint64_t when, void *arg);
    void *deadline_arg;
    dx_tls_server *server;

    tls_ocsp ocsp;

    /* certificate objects made on request */
    dx_tls_cert *peer_cert, *local_cert, **chain;
    size_t chain_len;
    bool chain_made;
    char sigalg[64];

    tls_psk psk;
};

/* ---- the engine (filter.c), for the feature files ----------------------- */

/* Does all the OpenSSL work that can be done now and emits what it
 * queued; a call made while it runs makes it go round once more. */
void dx_tls_run(dx_tls *f);
/* Fails the connection with err (owned): the alert goes out, then both
 * streams fail. */
void dx_tls_fail(dx_tls *f, dx_error *err);
/* Queues an event for dx_tls_run() to emit outside OpenSSL; text data is
 * NUL-terminated. A shortage of memory loses the event (false). */
bool dx_tls_queue_event(dx_tls *f, ev_kind kind, const void *data, size_t len);
/* The error for a failed OpenSSL call (SSL_get_error's code). */
dx_error *dx_tls_ssl_error(dx_tls *f, int sslerr);
/* Node's name for an X509_V_ERR_* code. */
const char *dx_tls_verify_code_name(long code);
/* Records a verification failure (owned; the first one counts). */
void dx_tls_set_verify_error(dx_tls *f, dx_error *err);
/* The connection's clock, in ms. */
uint64_t dx_tls_now(const dx_tls *f);
/* Traffic: the idle timer starts over. */
void dx_tls_activity(dx_tls *f);

/* Server: the verification mode and the session id context that follow
 * from request_cert and reject_unauthorized (and the SNI context). */
void dx_tls_apply_client_verification(dx_tls *f);
/* After a handshake: settles the outcome of the peer's verification (a
 * resumed session's result, a client that sent no certificate) and fails
 * the connection if it must. Returns false if it failed. */
bool dx_tls_settle_peer(dx_tls *f);
/* Retires the certificate objects made so far (they stay valid until the
 * connection is released); the next getter makes them anew. */
void dx_tls_retire_certs(dx_tls *f);

/* rehandshake.c: hooks of the engine. */
/* In dx_tls_start(): options that go to the SSL object. */
void dx_tls_rehandshake_start(dx_tls *f);
/* The info callback saw a handshake start or end after the first one. */
void dx_tls_rehandshake_info(dx_tls *f, int where);
/* The info callback saw an alert (ret as OpenSSL gives it). */
void dx_tls_rehandshake_alert(dx_tls *f, int where, int ret);
/* The message callback saw a handshake message (post-handshake auth). */
void dx_tls_rehandshake_msg(dx_tls *f, int write_p, int type, const void *buf, size_t len);
/* In every step, before and after the reads and writes. */
void dx_tls_rehandshake_before(dx_tls *f);
void dx_tls_rehandshake_after(dx_tls *f);
/* The connection closes: a callback still waiting gets its error. */
void dx_tls_rehandshake_closed(dx_tls *f, const dx_error *err);
/* Whether the message callback is needed. */
bool dx_tls_rehandshake_wants_msgs(const dx_tls *f);
void dx_tls_rehandshake_free(dx_tls *f);

/* ---- pre-shared keys (psk.c) --------------------------------------------- */

/* dx_tls_start(): installs the PSK callbacks on the SSL object. 0 or
 * DX_ENOMEM. */
int dx_tls_psk_start(dx_tls *f);
/* Every context's servername callback: it runs once a ClientHello was
 * processed (after any SNI context switch and the TLS 1.3 PSK choice),
 * sets a server's identity hint and refuses an unknown TLS 1.3 identity
 * when no certificate can serve instead. Leaves SNI as without it. */
int dx_tls_psk_hello_cb(SSL *ssl, int *al, void *arg);
/* The handshake completed: whether a key authenticated it. */
bool dx_tls_psk_handshake_done(dx_tls *f);
void dx_tls_psk_free(dx_tls *f);

/* ---- OCSP stapling (ocsp.c), called by the engine ------------------------ */

/* The certificate and status callbacks every context installs. */
int dx_tls_ocsp_cert_cb(SSL *ssl, void *arg);
int dx_tls_ocsp_status_cb(SSL *ssl, void *arg);
/* Asks the application about each certificate the handshake waits about
 * (from the engine's event emission, outside OpenSSL). */
void dx_tls_ocsp_ask(dx_tls *f);
/* Client: on_ocsp_response, once, before on_secure. */
void dx_tls_ocsp_tell(dx_tls *f);
/* Releases what the connection holds (late answers only free their p). */
void dx_tls_ocsp_release(dx_tls *f);

/* The guard of a setter allowed only before dx_tls_start(). */
#define BEFORE_START(t)                                                        \
    do {                                                                       \
        if (!(t))                                                              \
            return DX_EINVAL;                                                  \
        if ((t)->started || (t)->dead)                                         \
            return DX_ESTATE;                                                  \
    } while (0)

/* Empties OpenSSL's error queue before an SSL call whose failure
 * SSL_get_error() will read (it needs the queue empty). The queue almost
 * always is already, and looking costs a tenth of clearing. */
static inline void dx_tls_clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* Readies the error queue for an SSL_read() or SSL_write() (the calls
 * made for every record, where even looking at the queue is a tenth of
 * the cost of a small record): inside a handshake it is emptied first;
 * on an established connection the call goes at once, and a failure is
 * read with dx_tls_io_error(), which tells stale errors apart. */
static inline void dx_tls_io_begin(SSL *ssl)
{
    if (SSL_in_init(ssl))
        dx_tls_clear_errors();
}

/* SSL_get_error() for a call readied by dx_tls_io_begin(). OpenSSL enters
 * its failed state (SSL_in_init() true) on every fatal error; an error
 * queued while the connection is still established came from elsewhere
 * before the call (an application's own OpenSSL call, from a callback):
 * it is dropped, and the call's own outcome read again. */
static inline int dx_tls_io_error(SSL *ssl, int r)
{
    int e = SSL_get_error(ssl, r);
    if ((e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL) && !SSL_in_init(ssl) &&
        ERR_peek_error() != 0) {
        ERR_clear_error();
        e = SSL_get_error(ssl, r);
    }
    return e;
}

static inline dx_error *dx_tls_or_oom(dx_error *e)
{
    return e ? e : (dx_error *)dx_error_oom();
}

#endif
