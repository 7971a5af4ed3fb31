/*
 * libduplex: the TLS filter.
 *
 * A dx_tls is one TLS connection with two streams: the upper stream
 * carries cleartext (the application writes and reads it), the lower
 * stream carries TLS records (what is written to it is what came from the
 * peer; what it delivers goes to the peer). It is Node's SecurePair with
 * its cleartext and encrypted streams. Attached to a transport stream
 * (dx_tls_attach), the lower side is wired to it and the upper stream is
 * Node's TLSSocket over any Duplex.
 *
 * LIFE OF A CONNECTION
 *
 *   dx_tls_new()          client or server, over a dx_tls_ctx
 *   dx_tls_set_*()        options (before dx_tls_start)
 *   dx_tls_set_events()   TLS events (secure, session, keylog, ...)
 *   dx_stream_set_events(dx_tls_upper(t), ...)   the cleartext consumer
 *   dx_tls_attach(t, transport) or the caller drives dx_tls_lower(t)
 *   dx_tls_start()        the handshake begins: nothing is sent or read
 *                         before, so no event can be missed
 *   ... data ...
 *   dx_stream_end(upper)  close_notify, then the transport's write side ends
 *   dx_tls_destroy()
 *
 * Writes to the upper stream before the handshake completes are queued
 * and sent after it (dx_stream_write returns 0 or DX_FULL as usual).
 * Bytes written to the lower stream before dx_tls_start() wait for it.
 *
 * The upper stream keeps every contract of dx_stream (stream.h). On top:
 *  - on_end means the peer sent close_notify, or, when truncation is
 *    allowed, that the transport ended without it
 *    (dx_tls_clean_end() tells which). A transport end without
 *    close_notify is otherwise an error, "ERR_SSL_UNEXPECTED_EOF_WHILE_READING".
 *    A transport that ends or goes away before the handshake completed
 *    gives DX_ECONNRESET.
 *  - After the peer's close_notify the connection ends its own side too
 *    (Node's allowHalfOpen false), unless dx_tls_set_allow_half_open().
 *  - dx_stream_end() on the upper stream sends close_notify once all data
 *    before it was sent, then ends the lower stream's output (the link of
 *    dx_tls_attach then ends the transport's write side).
 *  - on_error carries a dx_error. A failure of TLS has layer "tls" and
 *    Node's code string as name (dx_error_name): a verification code such as
 *    "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "CERT_HAS_EXPIRED",
 *    "DEPTH_ZERO_SELF_SIGNED_CERT", "ERR_TLS_CERT_ALTNAME_INVALID", an
 *    OpenSSL reason as "ERR_SSL_<REASON>" (an alert the peer sent:
 *    "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA"), "ERR_TLS_HANDSHAKE_TIMEOUT",
 *    "ECONNRESET"; and as detail OpenSSL's error text, the verify result
 *    and the alerts sent and received. A failure of the transport keeps
 *    its own layer and name ("pair", "fd", ...: EIO, EPIPE, ...).
 *    Memory that ran out, in libduplex or inside OpenSSL, is DX_ENOMEM.
 *    A peer that sends more than 32 KeyUpdates with no data between them
 *    (neither way) fails the connection with
 *    "ERR_SSL_TOO_MANY_KEY_UPDATES" (OpenSSL
 *    bounds empty records and warning alerts itself:
 *    "ERR_SSL_RECORD_TOO_SMALL", "ERR_SSL_TOO_MANY_WARN_ALERTS").
 *  - A failure fails both streams (and, attached, the transport).
 *
 * "secure" (dx_tls_events.on_secure) means the handshake completed on
 * this side. In TLS 1.3 a client is secure before the server has checked
 * its certificate: an error may still follow.
 *
 * THREADS: a connection, its streams and its transport are used from one
 * thread at a time; different connections on the same dx_tls_ctx may run
 * on different threads.
 *
 * TIME comes from outside: the filter reads the clock given by
 * dx_tls_set_clock() (by default CLOCK_MONOTONIC) only when called, never
 * arms a timer itself, and tells its next deadline (dx_tls_deadline(),
 * on_deadline). The host calls dx_tls_check_timeouts() when it is due.
 *
 * LIFETIME: dx_tls_destroy() releases the connection, its streams and the
 * attached transport. dx_stream_destroy() on the upper or lower stream
 * aborts the connection but does not release it; the dx_tls handle and
 * both stream pointers stay valid until dx_tls_destroy().
 */
#ifndef DUPLEX_TLS_FILTER_H
#define DUPLEX_TLS_FILTER_H

#include <duplex/common.h>
#include <duplex/error.h>
#include <duplex/stream.h>
#include <duplex/tls.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dx_tls dx_tls;
/* An answer the handshake waits for (dx_tls_sni_done(), dx_tls_ocsp_done(),
 * ...). */
typedef struct dx_tls_pending dx_tls_pending;
/* The certificate object: <duplex/tls_cert.h>. */
typedef struct dx_tls_cert dx_tls_cert;

typedef enum dx_tls_role { DX_TLS_CLIENT = 0, DX_TLS_SERVER = 1 } dx_tls_role;

/* No deadline (dx_tls_deadline). */
#define DX_TLS_NO_DEADLINE UINT64_MAX
/* Default handshake timeout, as Node's handshakeTimeout: 120 s. */
#define DX_TLS_DEFAULT_HANDSHAKE_TIMEOUT_MS 120000u

/*
 * The TLS events. Any may be NULL. They run from the call that caused
 * them (a write to the lower stream, dx_tls_start, ...), never from
 * inside an OpenSSL call, and any libduplex call is allowed in them,
 * dx_tls_destroy() included.
 */
typedef struct dx_tls_events {
    /* The handshake completed (Node's secure / secureConnect /
     * secureConnection). dx_tls_authorized() tells whether the peer was
     * verified. */
    void (*on_secure)(dx_tls *t, void *user);
    /* Client: a session that can resume a later connection
     * (dx_tls_set_session). Several may come (TLS 1.3 tickets); never
     * before on_secure. The bytes are valid during the call. */
    void (*on_session)(dx_tls *t, const uint8_t *session, size_t len,
                       void *user);
    /* A line of NSS key log format (SSLKEYLOGFILE), without newline.
     * OpenSSL formats these lines only for contexts where a connection
     * asked for them (this set, at the start or later; or a server's
     * on_keylog): until then they cost nothing. */
    void (*on_keylog)(dx_tls *t, const char *line, void *user);
    /* Protocol trace text (dx_tls_set_trace), one or more lines. */
    void (*on_trace)(dx_tls *t, const char *text, void *user);
    /* The idle timeout passed with no traffic (Node's 'timeout'); the
     * connection stays open. */
    void (*on_timeout)(dx_tls *t, void *user);
    /* The next deadline changed: call dx_tls_check_timeouts() at when (on
     * the filter's clock), or never for DX_TLS_NO_DEADLINE. */
    void (*on_deadline)(dx_tls *t, uint64_t when, void *user);
    /* The handshake failed (Node's tlsClientError on servers): called
     * before the streams report err, while the connection still answers
     * (dx_tls_servername, ...). */
    void (*on_handshake_error)(dx_tls *t, const dx_error *err, void *user);
    /* Client with DX_TLS_OCSP_REQUEST (dx_tls_set_ocsp): the OCSP
     * response the server stapled (DER, valid during the call), or NULL
     * and 0 when it sent none (Node's OCSPResponse). Once, just before
     * on_secure; a failed handshake has none. See dx_tls_set_ocsp(). */
    void (*on_ocsp_response)(dx_tls *t, const uint8_t *response, size_t len,
                             void *user);
} dx_tls_events;

/*
 * A new connection over ctx (which gains a reference) in the given role.
 * Nothing is sent before dx_tls_start(). Returns 0, DX_EINVAL (NULL ctx or
 * out, bad role), DX_ENOMEM.
 */
DX_EXTERN int dx_tls_new(dx_tls_ctx *ctx, dx_tls_role role, dx_tls **out);

/* Aborts the connection if it is open (on_close on both streams) and
 * releases it with its streams and attached transport. Safe from any
 * callback. NULL is ignored. */
DX_EXTERN void dx_tls_destroy(dx_tls *t);

/* The cleartext (upper) and TLS record (lower) streams. Owned by the
 * connection: valid until dx_tls_destroy(). */
DX_EXTERN dx_stream *dx_tls_upper(dx_tls *t);
DX_EXTERN dx_stream *dx_tls_lower(dx_tls *t);
/* The connection of an upper or lower stream, or NULL for other streams. */
DX_EXTERN dx_tls *dx_tls_from_stream(const dx_stream *s);

/* Sets the TLS events and their user pointer (copied). NULL clears.
 * Returns 0 or DX_EINVAL. */
DX_EXTERN int dx_tls_set_events(dx_tls *t, const dx_tls_events *ev,
                                void *user);
DX_EXTERN void *dx_tls_user(const dx_tls *t);

/*
 * The TLSSocket shape: links the lower stream to transport (dx_link), so
 * that records flow to and from it with backpressure and half-close. The
 * connection owns the transport from then on (also on failure other than
 * DX_EINVAL and DX_ESTATE). A transport that already ended or failed is
 * seen at once. Before dx_tls_start(), and with nothing else consuming
 * the lower stream. Returns 0, DX_EINVAL (NULL, already attached, one of
 * the connection's own streams), DX_ESTATE (started or destroyed),
 * DX_ENOMEM.
 *
 * The standalone shape may hand the lower stream (or the upper) to a
 * dx_link of the caller's: the link then owns that handle, and the link
 * and the connection may be destroyed in either order.
 */
DX_EXTERN int dx_tls_attach(dx_tls *t, dx_stream *transport);

/*
 * Hands in TLS bytes that were read from the transport before the filter
 * existed (STARTTLS, protocol sniffing). They are taken before anything
 * written to the lower stream. Before dx_tls_start() only. Copies them.
 * Returns 0, DX_EINVAL, DX_ESTATE (started), DX_ENOMEM.
 */
DX_EXTERN int dx_tls_prefix(dx_tls *t, const void *data, size_t len);

/*
 * Starts the handshake: a client sends its ClientHello, a server reads
 * what came. Errors from here on are reported through the streams.
 * Returns 0, DX_EINVAL, DX_ESTATE (already started or closed).
 */
DX_EXTERN int dx_tls_start(dx_tls *t);

/* ---- options: before dx_tls_start() (else DX_ESTATE) ------------------ */

/*
 * Client: the server name sent in SNI (not sent for an IP address) and
 * checked against the server's certificate. Returns 0, DX_EINVAL (an empty
 * name; a server, "ERR_TLS_SNI_FROM_SERVER" in Node), DX_ESTATE, DX_ENOMEM.
 */
DX_EXTERN int dx_tls_set_servername(dx_tls *t, const char *name);
/*
 * Client: the identity the server's certificate must match when it
 * differs from the servername (Node's host). By default the servername,
 * else "localhost", as in Node. Returns 0, DX_EINVAL (a server, an empty
 * name), DX_ESTATE, DX_ENOMEM.
 */
DX_EXTERN int dx_tls_set_host(dx_tls *t, const char *host);
/*
 * Whether a peer that fails verification is refused (default true).
 * Client: the handshake fails with the verification code. Server: only
 * with dx_tls_set_request_cert(); a client without a certificate is
 * refused too. With false the connection proceeds and
 * dx_tls_authorized() / dx_tls_authorization_error() tell the result.
 */
DX_EXTERN int dx_tls_set_reject_unauthorized(dx_tls *t, bool reject);
/* Server: ask the client for a certificate (default false). Returns 0,
 * DX_EINVAL (a client), DX_ESTATE. */
DX_EXTERN int dx_tls_set_request_cert(dx_tls *t, bool request);

/*
 * Client: replaces the server identity check (Node's
 * checkServerIdentity). Called during the handshake, after the chain was
 * verified, with the name to check and the server's certificate. Return 0
 * to accept; anything else refuses the server, with *err as the reason if
 * the callback set it (ownership passes; its name is reported, e.g.
 * "ERR_TLS_CERT_ALTNAME_INVALID"), else "ERR_TLS_CERT_ALTNAME_INVALID".
 * dx_tls_check_server_identity() is the default and may be called from
 * it. The callback must not destroy the connection. cb NULL restores the
 * default. Returns 0, DX_EINVAL (server), DX_ESTATE.
 */
typedef int (*dx_tls_identity_cb)(dx_tls *t, const char *host,
                                  const dx_tls_cert *cert, dx_error **err,
                                  void *user);
DX_EXTERN int dx_tls_set_check_identity(dx_tls *t, dx_tls_identity_cb cb,
                                        void *user);

/*
 * Server: choose the context for the name the client asked for (Node's
 * SNICallback). cb runs once the ClientHello was read, with the name
 * (never NULL; cb is not called when the client sent none) and a pending
 * answer; the handshake waits until dx_tls_sni_done() or
 * dx_tls_sni_refuse() answers it, now from inside cb or later. cb NULL:
 * no choice, the connection's context serves. Returns 0, DX_EINVAL (a
 * client), DX_ESTATE.
 */
typedef void (*dx_tls_sni_cb)(dx_tls *t, const char *servername,
                              dx_tls_pending *p, void *user);
DX_EXTERN int dx_tls_set_sni_callback(dx_tls *t, dx_tls_sni_cb cb, void *user);
/*
 * A pending SNI choice is answered exactly once, by one of these, now or
 * later, also after the connection went (then they only free p and err).
 *
 * dx_tls_sni_done(): serve with ctx (a reference is taken; its
 * certificates, keys and client verification serve), or with the
 * connection's own context when ctx is NULL.
 *
 * dx_tls_sni_refuse(): fail the handshake with err (ownership passes;
 * NULL, as when memory ran out making one, refuses all the same with
 * "ERR_TLS_SNI_REFUSED"); the client gets an unrecognized_name alert.
 *
 * Both return 0, or DX_EINVAL (NULL p, or p an answer of another kind: a
 * session lookup, an OCSP request; err is freed).
 */
DX_EXTERN int dx_tls_sni_done(dx_tls_pending *p, dx_tls_ctx *ctx);
DX_EXTERN int dx_tls_sni_refuse(dx_tls_pending *p, dx_error *err);

/*
 * ALPN (RFC 7301), Node's ALPNProtocols: protocols is a NULL-terminated
 * list of names of 1 to 255 bytes, copied. A client offers them in this
 * order; a server chooses the first of its list that the client offered,
 * and fails the handshake with the no_application_protocol alert when
 * none is (a client that offers nothing gets no protocol). Returns 0,
 * DX_EINVAL (an empty list or name, a name over 255 bytes, an ALPN
 * callback already set), DX_ESTATE, DX_ENOMEM.
 */
DX_EXTERN int dx_tls_set_alpn_protocols(dx_tls *t, const char *const *protocols);
/*
 * Server: the application chooses the protocol (Node's ALPNCallback).
 * cb gets the client's protocols in its order (count >= 1; strings valid
 * during the call) and returns the index of the one to use, or -1 for
 * none, which fails the handshake with the no_application_protocol alert.
 * Not called when the client offers no ALPN. It runs during the
 * handshake, inside OpenSSL: it may read the connection
 * (dx_tls_servername()) but must not write to, end or destroy it. Either
 * this or dx_tls_set_alpn_protocols(), not both (Node's
 * ERR_TLS_ALPN_CALLBACK_WITH_PROTOCOLS). cb NULL removes it. Returns 0,
 * DX_EINVAL (a client, a list already set), DX_ESTATE.
 */
typedef int (*dx_tls_alpn_cb)(dx_tls *t, const char *const *protocols, size_t count,
                              void *user);
DX_EXTERN int dx_tls_set_alpn_callback(dx_tls *t, dx_tls_alpn_cb cb, void *user);

/*
 * PRE-SHARED KEYS (TLS-PSK; Node's pskCallback and pskIdentityHint): both
 * sides hold the same secret key and prove it to each other, with no
 * certificate needed on either side.
 *
 * TLS 1.2 uses a key only with a PSK cipher suite, which the contexts of
 * both sides enable (dx_tls_config_set_ciphers(), e.g.
 * "PSK-AES128-GCM-SHA256" or "ECDHE-PSK-CHACHA20-POLY1305"; the default
 * list has none). TLS 1.3 uses it as an external PSK with a SHA-256 suite
 * (RFC 8446): a connection with a PSK callback puts the SHA-256 suites of
 * its TLS 1.3 list first, so that a server with a certificate, which
 * would otherwise choose TLS_AES_256_GCM_SHA384, can still use the key.
 *
 * The callback fills a dx_tls_psk. The identity is a string of 1 to
 * DX_TLS_PSK_IDENTITY_MAX bytes; the key is 1 to DX_TLS_PSK_KEY_MAX bytes
 * (key_len 0 counts as no key). An identity with no NUL in the array, an
 * empty one, or key_len over DX_TLS_PSK_KEY_MAX fails the handshake with
 * "ERR_INVALID_ARG_VALUE" (as Node's). The key is copied into OpenSSL and
 * the dx_tls_psk is cleared (OPENSSL_cleanse) when the callback returns.
 */
#define DX_TLS_PSK_IDENTITY_MAX 128
#define DX_TLS_PSK_KEY_MAX 256
typedef struct dx_tls_psk {
    char identity[DX_TLS_PSK_IDENTITY_MAX + 1]; /* client: NUL-terminated */
    uint8_t key[DX_TLS_PSK_KEY_MAX];
    size_t key_len;
} dx_tls_psk;
/*
 * Client: name is the server's identity hint (TLS 1.2 when the server
 * sent one), else NULL (always in TLS 1.3); fill identity, key and
 * key_len, and return 0; anything else offers no key. A client that
 * allows TLS 1.3 is asked as it sends its ClientHello (name NULL; a
 * second ClientHello, after a HelloRetryRequest, asks again), and asked
 * again, with the hint, if the server then chooses TLS 1.2 with a PSK
 * suite. Without a key, TLS 1.3 goes on with the server's certificate
 * and TLS 1.2 fails with "ERR_SSL_PSK_IDENTITY_NOT_FOUND".
 *
 * Server: name is the client's identity (in TLS 1.3, asked for each
 * ClientHello that offers it); fill key and key_len and return 0, or
 * refuse it: non-zero is an unknown identity. The handshake then
 * fails with "ERR_SSL_PSK_IDENTITY_NOT_FOUND" and the client gets the
 * unknown_psk_identity alert ("ERR_SSL_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY")
 * - except in TLS 1.3 on a server that has a certificate: RFC 8446
 * (4.2.11) has unknown keys ignored, so the handshake goes on without the
 * key and the server shows its certificate, which the client verifies as
 * usual.
 *
 * A wrong key (the same identity, different bytes) fails the handshake on
 * the side that checks it first. TLS 1.3: the server, on the client's
 * binder, "ERR_SSL_BINDER_DOES_NOT_VERIFY", with the illegal_parameter
 * alert (decrypt_error from OpenSSL 3.4 on). TLS 1.2: the server, on the
 * client's Finished, "ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC", with
 * the bad_record_mac alert.
 *
 * OpenSSL wants the key at once, so the callback runs synchronously,
 * inside OpenSSL, during the handshake (OpenSSL offers no way to answer
 * later): it may read the connection (dx_tls_servername(),
 * dx_tls_get_role(), dx_tls_user(), ...) but must not write to it, end
 * it or destroy it.
 *
 * A handshake that a key authenticated (a TLS 1.2 PSK suite, or TLS 1.3
 * with an external PSK) is authorized on both sides: dx_tls_authorized()
 * is true and dx_tls_authorization_error() NULL, as no certificate was
 * shown and none is to be verified; reject_unauthorized has nothing to
 * refuse and no host name is checked (Node's clients need a
 * checkServerIdentity that accepts a missing certificate; ours do not). A
 * TLS 1.3 client that resumes a session of such a handshake is authorized
 * too. An external PSK handshake is no resumption: dx_tls_session_reused()
 * is false (Node's isSessionReused() says true in TLS 1.3).
 */
typedef int (*dx_tls_psk_cb)(dx_tls *t, const char *name, dx_tls_psk *psk, void *user);
/* Sets (cb NULL: removes) the PSK callback, both roles. Before
 * dx_tls_start(). Returns 0, DX_EINVAL (NULL t), DX_ESTATE. */
DX_EXTERN int dx_tls_set_psk_callback(dx_tls *t, dx_tls_psk_cb cb, void *user);
/*
 * Server: the identity hint sent with TLS 1.2 PSK suites (TLS 1.3 has
 * none), 1 to DX_TLS_PSK_IDENTITY_MAX bytes, copied; NULL removes it.
 * Node reports a hint OpenSSL refuses at each handshake
 * (ERR_TLS_PSK_SET_IDENTIY_HINT_FAILED); here it is refused at once.
 * Before dx_tls_start(). Returns 0, DX_EINVAL (a client, an empty or
 * longer hint), DX_ESTATE, DX_ENOMEM.
 */
DX_EXTERN int dx_tls_set_psk_identity_hint(dx_tls *t, const char *hint);

/* Keep the write side open after the peer's close_notify (Node's
 * allowHalfOpen; default false). */
DX_EXTERN int dx_tls_set_allow_half_open(dx_tls *t, bool allow);
/* Treat a transport end without close_notify as an end, not an error
 * (default false: it is reported as truncation). */
DX_EXTERN int dx_tls_set_allow_truncation(dx_tls *t, bool allow);
/* Release OpenSSL's record buffers whenever the connection is idle
 * (SSL_MODE_RELEASE_BUFFERS), and the 1 KiB buffer the filter otherwise
 * keeps for its next small outgoing record: less memory per idle
 * connection (about 34 KiB), some CPU per record. Default false. */
DX_EXTERN int dx_tls_set_release_buffers(dx_tls *t, bool release);
/* Client: a session from on_session to resume. The context keeps the
 * session it decoded last (with a copy of the bytes, until the context
 * goes): connections resumed from the same bytes skip decoding them, each
 * with a copy of its own. Returns 0, DX_EINVAL (a server, bytes that are
 * not a session), DX_ESTATE, DX_ENOMEM. */
DX_EXTERN int dx_tls_set_session(dx_tls *t, const void *session, size_t len);
/* Client: the smallest DH group size accepted from the server (Node's
 * minDHSize, default 1024); a smaller one fails with
 * "ERR_TLS_DH_PARAM_SIZE". Returns 0, DX_EINVAL (0 bits, a server),
 * DX_ESTATE. */
DX_EXTERN int dx_tls_set_min_dh_size(dx_tls *t, unsigned bits);

/* The clock, in milliseconds, that timeouts use. NULL restores
 * CLOCK_MONOTONIC. Allowed at any time. */
typedef uint64_t (*dx_tls_clock_fn)(void *arg);
DX_EXTERN int dx_tls_set_clock(dx_tls *t, dx_tls_clock_fn now, void *arg);
/* Handshake timeout in ms (0: none; default
 * DX_TLS_DEFAULT_HANDSHAKE_TIMEOUT_MS), counted from dx_tls_start(), or
 * from this call when made after it. When it passes the connection fails
 * with "ERR_TLS_HANDSHAKE_TIMEOUT" (DX_ETIMEDOUT), which fails and closes
 * the attached transport too (Node destroys the socket). Allowed until
 * the handshake completes (then DX_ESTATE). */
DX_EXTERN int dx_tls_set_handshake_timeout(dx_tls *t, uint64_t ms);
/* Idle timeout in ms (0: none, the default): once started, on_timeout
 * fires after ms with no TLS bytes in either direction, then again after
 * each further ms of silence, until the connection closes. Allowed at any
 * time. */
DX_EXTERN int dx_tls_set_idle_timeout(dx_tls *t, uint64_t ms);
/* The next deadline on the filter's clock, or DX_TLS_NO_DEADLINE. */
DX_EXTERN uint64_t dx_tls_deadline(const dx_tls *t);
/* Reads the clock and handles every deadline that passed. May trigger
 * on_timeout, on_deadline, and the failure of the connection. */
DX_EXTERN void dx_tls_check_timeouts(dx_tls *t);
/*
 * For event-loop adapters (dx_uv_tls_timer() in <duplex/uv.h> is one): a
 * hook told the next deadline, as on_deadline is, but apart from the TLS
 * events, which belong to the application (and which a TLS server sets on
 * the connections it accepts). fn runs whenever the next deadline changes,
 * before on_deadline, with when on the filter's clock or
 * DX_TLS_NO_DEADLINE; it is not told the deadline current when it is set
 * (read dx_tls_deadline() then). Once the connection closes, for whatever
 * reason (a failure, both directions done, an abort, dx_tls_destroy()),
 * fn runs a last time, from inside the close, with DX_TLS_NO_DEADLINE and
 * dx_stream_state(dx_tls_upper(t)) showing DX_STREAM_CLOSED; the hook is
 * then removed and never called again, so the adapter may release its
 * timer there. fn may read the connection and its clock; it must not
 * write to, end or destroy it, nor call dx_tls_check_timeouts() (arm a
 * timer instead). One hook at a time: fn NULL removes it.
 * Returns 0, DX_EINVAL (NULL t), DX_ESTATE (a hook is already set, or the
 * connection is closed or destroyed: fn would never get its last call).
 */
DX_EXTERN int dx_tls_set_deadline_hook(dx_tls *t,
                                       void (*fn)(dx_tls *t, uint64_t when, void *arg),
                                       void *arg);

/* Protocol trace (SSL_trace format, as openssl s_client -trace) to
 * on_trace. It shows handshake contents: keep it for debugging. Allowed
 * while open. Returns 0, DX_EINVAL, DX_ESTATE (closed), DX_ENOMEM,
 * DX_ENOTSUP (OpenSSL built without tracing). */
DX_EXTERN int dx_tls_set_trace(dx_tls *t, bool on);

/*
 * Largest plaintext per record, 512 to 16384 (Node's setMaxSendFragment).
 * Allowed at any time. Returns 0, DX_EINVAL (out of range).
 */
DX_EXTERN int dx_tls_set_max_send_fragment(dx_tls *t, size_t size);

/* ---- handshakes on an open connection ---------------------------------
 * A TLS 1.2 renegotiation or a TLS 1.3 post-handshake authentication
 * verifies the peer anew: during it dx_tls_authorized() is false, and once
 * it completed dx_tls_authorized(), dx_tls_authorization_error() and
 * dx_tls_peer_cert() tell its outcome (certificate objects obtained
 * before stay valid until dx_tls_destroy(); the dx_error of
 * dx_tls_verify_error() until the next such handshake). */

/* Called exactly once for every call that returned 0: err NULL when the
 * handshake completed, else why not. Like the other TLS events it runs
 * from the call that brought the peer's answer (before the starting call
 * returns when the peer answers at once, as a peer in the same process
 * over a memory pair does). When the connection fails or closes first it
 * runs as the connection closes, with the connection's error, or
 * DX_ECANCELED ("ECANCELED") when it was destroyed or ended without one.
 * A peer that does not answer within the handshake timeout
 * (dx_tls_set_handshake_timeout(), checked by dx_tls_check_timeouts())
 * fails the connection with "ERR_TLS_HANDSHAKE_TIMEOUT". An end asked for
 * meanwhile sends close_notify once the handshake is over.
 * dx_tls_destroy() is allowed in it. */
typedef void (*dx_tls_done_cb)(dx_tls *t, const dx_error *err, void *user);

typedef struct dx_tls_renegotiate_opts {
    /* Server: ask the client for a certificate (Node's requestCert). */
    bool request_cert;
    /* Refuse a peer that fails verification (Node's
     * rejectUnauthorized). */
    bool reject_unauthorized;
} dx_tls_renegotiate_opts;

/*
 * TLS 1.2 renegotiation (Node's renegotiate()): a new full handshake on
 * the open connection, either role; data keeps flowing meanwhile. opts
 * NULL keeps the connection's verification settings. A peer that
 * refuses fails the connection ("ERR_SSL_NO_RENEGOTIATION" on this side),
 * as OpenSSL does. Returns 0 (cb will be called), DX_EINVAL (NULL t or
 * cb), DX_ESTATE (the handshake did not complete, the connection is
 * closing or closed, one is already under way, or renegotiation was
 * disabled), DX_ENOTSUP (TLS 1.3, which has no renegotiation:
 * dx_tls_key_update() and dx_tls_request_client_cert() do its jobs).
 */
DX_EXTERN int dx_tls_renegotiate(dx_tls *t, const dx_tls_renegotiate_opts *opts,
                                 dx_tls_done_cb cb, void *user);

/* Node's disableRenegotiation(): from now on a renegotiation the peer
 * starts fails the connection with "ERR_TLS_RENEGOTIATION_DISABLED", and
 * dx_tls_renegotiate() returns DX_ESTATE. Allowed at any time. Returns 0
 * or DX_EINVAL. */
DX_EXTERN int dx_tls_disable_renegotiation(dx_tls *t);

/* Node's tls.CLIENT_RENEG_LIMIT and tls.CLIENT_RENEG_WINDOW. */
#define DX_TLS_CLIENT_RENEG_LIMIT 3u
#define DX_TLS_CLIENT_RENEG_WINDOW_MS 600000u
/*
 * Server: renegotiations the client starts. Refused by default (OpenSSL's
 * default: the client gets a no_renegotiation alert, which fails it).
 * With allow they are accepted, at most limit of them in any window_ms
 * on the connection's clock (0 for either: DX_TLS_CLIENT_RENEG_LIMIT,
 * DX_TLS_CLIENT_RENEG_WINDOW_MS); one more fails the connection with
 * "ERR_TLS_SESSION_ATTACK". Returns 0, DX_EINVAL (a client, limit over
 * 1000), DX_ESTATE (started).
 */
DX_EXTERN int dx_tls_set_client_renegotiation(dx_tls *t, bool allow, unsigned limit,
                                              uint64_t window_ms);

/* Client: offer TLS 1.3 post-handshake authentication (default false), so
 * that the server may ask for the certificate of the connection's context
 * at any time (dx_tls_request_client_cert). Returns 0, DX_EINVAL (a
 * server), DX_ESTATE (started). */
DX_EXTERN int dx_tls_set_post_handshake_auth(dx_tls *t, bool offer);

/*
 * Server: asks the client for its certificate now, in TLS 1.3 (beyond
 * Node): the certificate is verified as with dx_tls_set_request_cert(),
 * and with reject_unauthorized (the connection's setting) a client that
 * sends none or fails verification fails the connection. Returns 0 (cb
 * will be called), DX_EINVAL (NULL t or cb, a client), DX_ESTATE (the
 * handshake did not complete, closing or closed, one already under way),
 * DX_ENOTSUP (not TLS 1.3, or the client did not offer post-handshake
 * authentication).
 */
DX_EXTERN int dx_tls_request_client_cert(dx_tls *t, dx_tls_done_cb cb, void *user);

/*
 * TLS 1.3 KeyUpdate (beyond Node): the next records go under fresh keys,
 * and with request_peer the peer is asked to update its own. Sent at once.
 * Returns 0, DX_EINVAL, DX_ESTATE (before the handshake, after close, or
 * not TLS 1.3: "ERR_SSL_WRONG_SSL_VERSION" in Node's terms).
 */
DX_EXTERN int dx_tls_key_update(dx_tls *t, bool request_peer);

/* ---- OCSP stapling (RFC 6066 status_request, RFC 6960, RFC 7633) --------
 * A server staples a signed OCSP response about its certificate to the
 * handshake; the client asks for it, and may check it. */

#define DX_TLS_OCSP_REQUEST     0x1u /* ask for a staple */
#define DX_TLS_OCSP_VERIFY      0x2u /* verify a staple that came (implies REQUEST) */
#define DX_TLS_OCSP_MUST_STAPLE 0x4u /* enforce RFC 7633 must-staple (implies
                                      * REQUEST and VERIFY) */

/*
 * Client (Node's requestOCSP, and beyond): flags is 0 or DX_TLS_OCSP_*
 * bits. REQUEST sends status_request in the ClientHello; the response
 * comes to on_ocsp_response and dx_tls_get_ocsp_response().
 *
 * VERIFY checks a response that came, once the server's chain was
 * verified: it must parse as a successful basic OCSP response, be signed
 * by the certificate's issuer or a responder the issuer delegated to
 * (OCSP signing), with the chain verified against the context's trust
 * store; hold a status for the server's certificate; and be current
 * (thisUpdate not in the future, nextUpdate not past, with 5 minutes of
 * clock skew allowed either way; a response without nextUpdate is taken
 * as current). A failure refuses the server as a failed chain check
 * does: with reject_unauthorized (the default) the handshake fails with
 * the code below and the server gets a bad_certificate_status_response
 * alert; without it the connection goes on, unauthorized, and
 * dx_tls_authorization_error() tells the code. The codes:
 *   "CERT_REVOKED"                    the status is revoked (as Node's
 *                                     verify code)
 *   "ERR_TLS_OCSP_STATUS_UNKNOWN"     the responder does not know it
 *   "ERR_TLS_OCSP_INVALID_RESPONSE"   not an OCSP response, a responder
 *                                     error status, no basic response,
 *                                     bad update times
 *   "ERR_TLS_OCSP_BAD_SIGNATURE"      the signature does not verify, or
 *                                     the signer may not speak for the
 *                                     issuer
 *   "ERR_TLS_OCSP_WRONG_CERTIFICATE"  no status for the server's
 *                                     certificate
 *   "ERR_TLS_OCSP_EXPIRED"            nextUpdate has passed
 *   "ERR_TLS_OCSP_NOT_YET_VALID"      thisUpdate is in the future
 *   "ERR_TLS_OCSP_MISSING"            must-staple, and no staple came
 * The check is skipped when the chain or identity check failed first
 * (that failure is the one reported) and on resumed sessions, which send
 * no certificate (the check made when the session was made stands). A
 * connection whose staple failed gives no sessions (on_session): a
 * resumption would skip the check. No staple is no failure, unless
 * MUST_STAPLE is set and the server's certificate has the TLS feature
 * extension with status_request (RFC 7633 must-staple).
 *
 * Returns 0, DX_EINVAL (a server; unknown bits), DX_ESTATE.
 */
DX_EXTERN int dx_tls_set_ocsp(dx_tls *t, unsigned flags);

/*
 * Server (Node's OCSPRequest): cb is asked for the OCSP response to
 * staple when a client sends status_request in a full handshake (never
 * when it did not ask, nor on a resumption, which sends no certificate).
 * It gets the certificate the server presents, of the context chosen by
 * SNI, and its issuer: found in the certificate's chain, else in the
 * context's trust store (once, when the context was built); NULL when the
 * certificate is self-signed or the issuer is in neither. Both are valid
 * during the call. It answers p with
 * dx_tls_ocsp_done(), now from inside cb or later: the handshake waits.
 * A context that holds several certificates (RSA and ECDSA side by side)
 * does not know yet which one the handshake will present: cb is called
 * once per certificate, each with its own p, the handshake waits for
 * every answer, and the answer for the one presented is stapled. cb runs
 * outside OpenSSL: any call is allowed in it, dx_tls_destroy() included.
 * cb NULL staples nothing. Returns 0, DX_EINVAL (a client), DX_ESTATE.
 */
typedef void (*dx_tls_ocsp_cb)(dx_tls *t, const dx_tls_cert *cert,
                               const dx_tls_cert *issuer, dx_tls_pending *p,
                               void *user);
DX_EXTERN int dx_tls_set_ocsp_callback(dx_tls *t, dx_tls_ocsp_cb cb, void *user);

/* Largest response a server staples: what a TLS 1.3 Certificate entry
 * extension can carry. */
#define DX_TLS_OCSP_MAX_RESPONSE 65531u

/*
 * Answers a pending OCSP request, exactly once (also after the connection
 * went: then it only frees p). response: the DER OCSP response to staple
 * (copied; its contents are not checked), or NULL for no staple. err
 * non-NULL fails the handshake with err (ownership passes; the client
 * gets an internal_error alert). Returns 0; DX_EINVAL (NULL p, p of
 * another kind, len 0 with a response, a response over
 * DX_TLS_OCSP_MAX_RESPONSE bytes: p is not answered, err is freed);
 * DX_ENOMEM (no memory for the copy: p is answered, the handshake fails).
 */
DX_EXTERN int dx_tls_ocsp_done(dx_tls_pending *p, const void *response, size_t len,
                               dx_error *err);

/*
 * Client: the OCSP response the server stapled (DER), or *der NULL and
 * *len 0 when none came (yet). Set while the handshake runs, before
 * on_ocsp_response; stays readable until dx_tls_destroy(), also after a
 * failed handshake. Returns 0 or DX_EINVAL.
 */
DX_EXTERN int dx_tls_get_ocsp_response(const dx_tls *t, const uint8_t **der,
                                       size_t *len);

/* What DX_TLS_OCSP_VERIFY found (dx_tls_get_ocsp_result). */
typedef enum dx_tls_ocsp_result {
    DX_TLS_OCSP_UNCHECKED = 0, /* not checked: no VERIFY flag, not yet, a
                                * resumed session, or the chain failed first */
    DX_TLS_OCSP_NO_STAPLE,     /* the server stapled nothing */
    DX_TLS_OCSP_GOOD,          /* a valid response, status good */
    DX_TLS_OCSP_REVOKED,       /* a valid response, status revoked */
    DX_TLS_OCSP_UNKNOWN,       /* a valid response, status unknown */
    DX_TLS_OCSP_INVALID,       /* a response that does not hold (the error
                                * tells why) */
} dx_tls_ocsp_result;
/* Client: the outcome of the check, readable until dx_tls_destroy(). */
DX_EXTERN dx_tls_ocsp_result dx_tls_get_ocsp_result(const dx_tls *t);

/* ---- state and introspection -----------------------------------------
 * What was negotiated (protocol, cipher, keys, certificates, finished
 * messages, session, keying material) is readable once the handshake
 * completed and while the connection is open; after it closed those
 * getters answer as before the handshake (NULL, false, 0, DX_ESTATE), as
 * Node's return null after destroy. The verification outcome, the server
 * name, the role, the counters and dx_tls_clean_end() stay readable until
 * dx_tls_destroy(). */

DX_EXTERN dx_tls_role dx_tls_get_role(const dx_tls *t);
/* True once the handshake completed and until the connection closed. */
DX_EXTERN bool dx_tls_is_secure(const dx_tls *t);
/* Whether the peer's certificate was verified (chain and, on a client,
 * identity). */
DX_EXTERN bool dx_tls_authorized(const dx_tls *t);
/* Why not (Node's authorizationError): a code such as
 * "UNABLE_TO_VERIFY_LEAF_SIGNATURE" or "ERR_TLS_CERT_ALTNAME_INVALID", or
 * NULL when authorized or nothing was checked. */
DX_EXTERN const char *dx_tls_authorization_error(const dx_tls *t);
/* The error object behind it (message, detail), or NULL. */
DX_EXTERN const dx_error *dx_tls_verify_error(const dx_tls *t);
/* OpenSSL's verify result (X509_V_OK is 0). */
DX_EXTERN long dx_tls_verify_result(const dx_tls *t);

/* "TLSv1.3", "TLSv1.2", ...; "unknown" before the handshake completed;
 * NULL once closed (Node's getProtocol). */
DX_EXTERN const char *dx_tls_protocol(const dx_tls *t);

/* Node's getCipher(). Every getter below returns DX_EINVAL for a NULL
 * connection or out-parameter. */
typedef struct dx_tls_cipher_info {
    const char *name;          /* OpenSSL name, "TLS_AES_256_GCM_SHA384" */
    const char *standard_name; /* IANA name */
    const char *version;       /* lowest protocol of the suite, "TLSv1.3" */
} dx_tls_cipher_info;
/* Returns 0, DX_EINVAL, DX_ESTATE before the handshake or after close. */
DX_EXTERN int dx_tls_cipher(const dx_tls *t, dx_tls_cipher_info *out);

/* Node's getEphemeralKeyInfo(), on both roles: the peer's key-exchange
 * key. type "ECDH" (name "X25519", "prime256v1", ...) or "DH" (name
 * NULL); bits its size. Returns 0, DX_ENOTSUP when there was none (plain
 * RSA key exchange), DX_ESTATE. */
typedef struct dx_tls_kex_info {
    const char *type;
    const char *name;
    int bits;
} dx_tls_kex_info;
DX_EXTERN int dx_tls_ephemeral_key(const dx_tls *t, dx_tls_kex_info *out);

/* The server name: sent (client) or received (server, as soon as the
 * ClientHello was read, also during a failure). NULL if none. */
DX_EXTERN const char *dx_tls_servername(const dx_tls *t);

/* The protocol ALPN chose (Node's alpnProtocol), NULL if none, before the
 * handshake or after close. Valid until the next call. */
DX_EXTERN const char *dx_tls_alpn_protocol(const dx_tls *t);

/*
 * The peer's certificate (Node's getPeerCertificate()), NULL if it sent
 * none, before the handshake or after close. Owned by the connection,
 * valid until dx_tls_destroy().
 */
DX_EXTERN const dx_tls_cert *dx_tls_peer_cert(dx_tls *t);
/*
 * The certificate chain of the peer (Node's getPeerCertificate(true)):
 * index 0 is the peer's certificate, then its issuers up to the root as
 * verified, or as sent when verification did not complete. Its length
 * through dx_tls_peer_chain_length(). NULL out of range.
 */
DX_EXTERN size_t dx_tls_peer_chain_length(dx_tls *t);
DX_EXTERN const dx_tls_cert *dx_tls_peer_chain(dx_tls *t, size_t index);
/* The certificate this side presented (Node's getCertificate()), NULL if
 * none. */
DX_EXTERN const dx_tls_cert *dx_tls_local_cert(dx_tls *t);

/*
 * The last Finished message sent / received (Node's getFinished,
 * getPeerFinished; tls-unique, RFC 5929). Copies up to cap bytes to buf
 * and returns the full length, 0 before the handshake.
 */
DX_EXTERN size_t dx_tls_finished(const dx_tls *t, void *buf, size_t cap);
DX_EXTERN size_t dx_tls_peer_finished(const dx_tls *t, void *buf, size_t cap);

/* The shared signature algorithms, in the order of preference, as
 * "ECDSA+SHA256" or "RSA-PSS+SHA256" (Node's getSharedSigalgs): the
 * index-th, or NULL past the end. Valid until the next call. */
DX_EXTERN const char *dx_tls_shared_sigalg(dx_tls *t, size_t index);

/*
 * RFC 5705 keying material (Node's exportKeyingMaterial): len > 0 bytes
 * into out for label; context may be NULL: up to TLS 1.2 no context
 * differs from an empty one, TLS 1.3 (RFC 8446 7.5) treats them alike.
 * Returns 0, DX_EINVAL, DX_ESTATE before the handshake
 * ("ERR_TLS_INVALID_STATE" in Node), DX_ETLS.
 */
DX_EXTERN int dx_tls_export_keying_material(const dx_tls *t, void *out,
                                            size_t len, const char *label,
                                            const void *context,
                                            size_t context_len);

/*
 * The current session as bytes (Node's getSession()); in TLS 1.3 prefer
 * on_session: the session right after the handshake is not resumable.
 * Copies up to cap bytes and sets *len to the full length. Returns 0,
 * DX_ENOBUFS (cap too small; *len says how much is needed), DX_EINVAL,
 * DX_ESTATE, DX_ENOMEM.
 */
DX_EXTERN int dx_tls_get_session(const dx_tls *t, void *buf, size_t cap,
                                 size_t *len);
/* Client: the session ticket (Node's getTLSTicket()), as above;
 * DX_ENOTSUP if there is none. */
DX_EXTERN int dx_tls_get_ticket(const dx_tls *t, void *buf, size_t cap,
                                size_t *len);
/* Whether the handshake resumed a session (Node's isSessionReused). */
DX_EXTERN bool dx_tls_session_reused(const dx_tls *t);

/* False if the connection closed without the peer's close_notify
 * (truncation allowed), true otherwise. */
DX_EXTERN bool dx_tls_clean_end(const dx_tls *t);

/* Byte counters (Node's bytesWritten of CryptoStream, both sides). */
typedef struct dx_tls_stats {
    uint64_t clear_in;  /* cleartext delivered on the upper stream */
    uint64_t clear_out; /* cleartext written by the application, sent */
    uint64_t enc_in;    /* TLS bytes taken from the lower stream */
    uint64_t enc_out;   /* TLS bytes delivered by the lower stream */
} dx_tls_stats;
DX_EXTERN void dx_tls_get_stats(const dx_tls *t, dx_tls_stats *out);

/* The OpenSSL SSL object (as void *), NULL after close. For reading:
 * changing it, or calling SSL_read/SSL_write on it, breaks the filter. */
DX_EXTERN void *dx_tls_openssl(const dx_tls *t);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_TLS_FILTER_H */
