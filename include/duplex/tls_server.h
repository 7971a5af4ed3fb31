/*
 * libduplex: the TLS server.
 *
 * What Node's tls.Server is without a listening socket: a default
 * context, contexts chosen by server name (SNI), defaults for the
 * connections it makes, and server-level events. It accepts any transport
 * stream (dx_tls_server_accept) and gives back a started server-mode TLS
 * filter attached to it.
 *
 * EVENTS: the server sets the TLS events of each connection it accepts
 * (dx_tls_set_events) to its own, which call the server's events below;
 * an application that sets a connection's TLS events itself replaces
 * them. The cleartext stream (dx_tls_upper) is the application's, as for
 * any connection: data waits for its consumer.
 *
 * THREADS: a server and its connections are used from one thread at a
 * time.
 *
 * LIFETIME: dx_tls_server_free() releases the server; connections it
 * accepted go on (each keeps what it needs) and are destroyed by their
 * owner with dx_tls_destroy().
 */
#ifndef DUPLEX_TLS_SERVER_H
#define DUPLEX_TLS_SERVER_H

#include <duplex/tls_filter.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dx_tls_server dx_tls_server;

/* The server's events. Any may be NULL. */
typedef struct dx_tls_server_events {
    /* A handshake completed (Node's secureConnection). */
    void (*on_secure_connection)(dx_tls_server *srv, dx_tls *t, void *user);
    /* A handshake failed (Node's tlsClientError): before the connection's
     * streams report err, while dx_tls_servername() and the rest still
     * answer. */
    void (*on_client_error)(dx_tls_server *srv, dx_tls *t, const dx_error *err,
                            void *user);
    /* A key log line of any connection (Node's keylog). */
    void (*on_keylog)(dx_tls_server *srv, dx_tls *t, const char *line, void *user);
    /*
     * Node's SNICallback: choose the context for servername; answer with
     * dx_tls_sni_done(p, ctx or NULL) or dx_tls_sni_refuse(p, err), now or
     * later. Without
     * it the contexts of dx_tls_server_add_context() decide, and a name
     * none matches gets the default context.
     */
    void (*on_sni)(dx_tls_server *srv, dx_tls *t, const char *servername,
                   dx_tls_pending *p, void *user);
    /*
     * Node's OCSPRequest: a client asked for a stapled OCSP response
     * about cert (the certificate the connection presents, of the context
     * SNI chose; issuer NULL when self-signed or not found). Answer with
     * dx_tls_ocsp_done(p, response or NULL, len, err or NULL), now or
     * later; see dx_tls_set_ocsp_callback(). Connections accepted while
     * it is set ask it; without it nothing is stapled.
     */
    void (*on_ocsp_request)(dx_tls_server *srv, dx_tls *t, const dx_tls_cert *cert,
                            const dx_tls_cert *issuer, dx_tls_pending *p,
                            void *user);
} dx_tls_server_events;

/* A server whose default context is ctx (a reference is taken). Returns
 * 0, DX_EINVAL, DX_ENOMEM. */
DX_EXTERN int dx_tls_server_new(dx_tls_ctx *ctx, dx_tls_server **out);
/* Releases the server (connections go on). NULL is ignored. */
DX_EXTERN void dx_tls_server_free(dx_tls_server *srv);
/* Sets the events and their user pointer (copied; NULL clears). */
DX_EXTERN int dx_tls_server_set_events(dx_tls_server *srv,
                                       const dx_tls_server_events *ev, void *user);

/* Node's setSecureContext(): the default context of connections accepted
 * from now on; those open keep theirs. Returns 0, DX_EINVAL. */
DX_EXTERN int dx_tls_server_set_context(dx_tls_server *srv, dx_tls_ctx *ctx);
/*
 * Node's addContext(): serves hostname with ctx. hostname is a name
 * ("a.example.com") or a pattern where "*" stands for any run of
 * characters other than a dot ("*.example.com" matches "b.example.com",
 * not "a.b.example.com"); case does not matter. The context added last
 * wins when several match. Returns 0, DX_EINVAL, DX_ENOMEM.
 */
DX_EXTERN int dx_tls_server_add_context(dx_tls_server *srv, const char *hostname,
                                        dx_tls_ctx *ctx);

/* Defaults of the connections accepted from now on. ALPN: as
 * dx_tls_set_alpn_protocols(); NULL or an empty list offers none. Client
 * certificates: without the server's setting, the default context's
 * (dx_tls_config_set_request_cert()) applies; a context chosen by SNI that
 * sets its own overrides either. All return 0, DX_EINVAL, DX_ENOMEM. */
DX_EXTERN int dx_tls_server_set_request_cert(dx_tls_server *srv, bool request,
                                             bool reject_unauthorized);
DX_EXTERN int dx_tls_server_set_alpn_protocols(dx_tls_server *srv,
                                               const char *const *protocols);
/* As dx_tls_set_allow_half_open() (default false). */
DX_EXTERN int dx_tls_server_set_allow_half_open(dx_tls_server *srv, bool allow);
/* As dx_tls_set_handshake_timeout() (default
 * DX_TLS_DEFAULT_HANDSHAKE_TIMEOUT_MS). */
DX_EXTERN int dx_tls_server_set_handshake_timeout(dx_tls_server *srv, uint64_t ms);
/* As dx_tls_set_allow_truncation() (default false: a transport end
 * without close_notify is an error). */
DX_EXTERN int dx_tls_server_set_allow_truncation(dx_tls_server *srv, bool allow);
/* As dx_tls_set_release_buffers() (default false). */
DX_EXTERN int dx_tls_server_set_release_buffers(dx_tls_server *srv, bool release);
/* As dx_tls_set_alpn_callback() (cb gets each connection and user);
 * either it or an ALPN list, not both (DX_EINVAL). */
DX_EXTERN int dx_tls_server_set_alpn_callback(dx_tls_server *srv, dx_tls_alpn_cb cb,
                                              void *user);
/* As dx_tls_set_client_renegotiation(): refused by default. */
DX_EXTERN int dx_tls_server_set_client_renegotiation(dx_tls_server *srv, bool allow,
                                                     unsigned limit, uint64_t window_ms);
/*
 * Pre-shared keys for the connections accepted from now on (see
 * dx_tls_set_psk_callback()): cb gets the connection and user; NULL
 * removes it. The hint as dx_tls_set_psk_identity_hint() (copied; NULL
 * removes it). Return 0, DX_EINVAL (hint empty or over
 * DX_TLS_PSK_IDENTITY_MAX bytes), DX_ENOMEM.
 */
DX_EXTERN int dx_tls_server_set_psk_callback(dx_tls_server *srv, dx_tls_psk_cb cb,
                                             void *user);
DX_EXTERN int dx_tls_server_set_psk_identity_hint(dx_tls_server *srv, const char *hint);

/*
 * Node's 'connection' with any Duplex: a server-mode connection over
 * transport (owned by the connection from then on, as dx_tls_attach()),
 * with the server's defaults and events, started. Errors of the handshake
 * come as events. Returns 0, DX_EINVAL (NULL), DX_ENOMEM (the transport
 * is then destroyed).
 */
DX_EXTERN int dx_tls_server_accept(dx_tls_server *srv, dx_stream *transport,
                                   dx_tls **out);

/* Connections accepted and not yet closed (Node's connections). */
DX_EXTERN size_t dx_tls_server_connections(const dx_tls_server *srv);

/*
 * Session tickets (RFC 5077; Node's ticketKeys). A server seals tickets
 * with 48 bytes of keys: a 16-byte key name, a 16-byte HMAC-SHA256 key
 * and a 16-byte AES-128-CBC key, made at random by dx_tls_server_new().
 * Servers that share their keys accept each other's tickets. Setting new
 * keys (other than those held) rotates: tickets sealed under the previous keys are still opened
 * (and renewed under the new ones) until the next rotation; older ones
 * fall back to a full handshake. Keys live only in memory; give them to
 * every server of a cluster, never write them to disk.
 * Both return 0 or DX_EINVAL.
 */
DX_EXTERN int dx_tls_server_get_ticket_keys(const dx_tls_server *srv, uint8_t keys[48]);
DX_EXTERN int dx_tls_server_set_ticket_keys(dx_tls_server *srv, const uint8_t keys[48]);
/* Tickets on (the default) or off (SSL_OP_NO_TICKET) for connections
 * accepted from now on. Returns 0 or DX_EINVAL. */
DX_EXTERN int dx_tls_server_set_tickets(dx_tls_server *srv, bool enabled);

/*
 * Sessions by id (resumption without tickets, and TLS 1.3 stateful
 * tickets): by default a built-in cache of at most
 * DX_TLS_SESSION_CACHE_DEFAULT sessions, the least recently used going
 * first, each expiring after the context's session timeout on the
 * server's clock. dx_tls_server_set_session_cache_size() changes the
 * bound (0: no cache).
 */
#define DX_TLS_SESSION_CACHE_DEFAULT 20480u
/* Replaces the cache by an empty one of at most max sessions (0: none).
 * Returns 0, DX_EINVAL, DX_ENOMEM. */
DX_EXTERN int dx_tls_server_set_session_cache_size(dx_tls_server *srv, size_t max);
/* The clock of the cache and of the connections accepted from now on
 * (their deadlines), in milliseconds (NULL: CLOCK_MONOTONIC). */
DX_EXTERN int dx_tls_server_set_clock(dx_tls_server *srv, dx_tls_clock_fn now, void *arg);

/*
 * An external store instead (Node's newSession and resumeSession events;
 * a cluster's shared cache): put keeps a new session (DER bytes, valid
 * during the call) until expires (ms on the server's clock); it runs
 * during the handshake, inside OpenSSL, and must not call the connection;
 * it completes on its own (nothing waits for it: a session the store
 * failed to keep is a full handshake later). get looks one up and answers
 * with dx_tls_session_found(), at once or later: the handshake waits (a
 * store bounds the wait itself, as the Redis store of <duplex/redis.h>
 * does). del, optional (NULL or left out of an initializer), forgets a
 * session: the server calls it when get answered bytes that are no
 * session, from dx_tls_session_found() (outside OpenSSL), so that the
 * store drops what is stored under that id. put and get are required.
 * store NULL restores the built-in cache. Returns 0, DX_EINVAL.
 */
typedef struct dx_tls_session_store {
    void (*put)(void *arg, const uint8_t *id, size_t id_len, const uint8_t *session,
                size_t len, uint64_t expires);
    void (*get)(void *arg, const uint8_t *id, size_t id_len, dx_tls_pending *p);
    void (*del)(void *arg, const uint8_t *id, size_t id_len);
} dx_tls_session_store;
DX_EXTERN int dx_tls_server_set_session_store(dx_tls_server *srv,
                                              const dx_tls_session_store *store,
                                              void *arg);
/* Answers a lookup, exactly once (also after the connection went): the
 * session's DER bytes, or NULL for none (a full handshake; bytes that are
 * no session count as none). Returns 0, DX_EINVAL (NULL p, or p an SNI
 * choice). */
DX_EXTERN int dx_tls_session_found(dx_tls_pending *p, const void *session, size_t len);

/* Counters since the server was made (the cache's since its size was last
 * set). A resumption failure is a client that offered a session (a ticket,
 * a TLS 1.3 pre-shared key, or a session id from a client that does not
 * offer TLS 1.3, whose id is otherwise random) and got a full handshake
 * (Node's silent fallback, counted); a handshake with an external
 * pre-shared key (dx_tls_server_set_psk_callback()) is neither a
 * resumption nor a failed one. Connections whose TLS events the application
 * replaced are not counted in handshakes, resumed and resume_failures. */
typedef struct dx_tls_server_stats {
    uint64_t accepted;        /* connections accepted */
    uint64_t handshakes;      /* handshakes completed */
    uint64_t resumed;         /* of them, resumptions */
    uint64_t resume_failures; /* offered a session, got a full handshake */
    uint64_t tickets_renewed; /* opened with the previous keys, sealed anew */
    uint64_t tickets_unknown; /* sealed with keys no longer held */
    uint64_t cache_hits, cache_misses, cache_evictions; /* built-in cache */
    uint64_t cache_entries;
} dx_tls_server_stats;
DX_EXTERN void dx_tls_server_get_stats(const dx_tls_server *srv, dx_tls_server_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_TLS_SERVER_H */
