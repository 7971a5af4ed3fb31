/* Internal: shared by the files of the TLS module. */
#ifndef DX_TLS_INTERNAL_H
#define DX_TLS_INTERNAL_H

#include <openssl/ssl.h>

#include <duplex/tls.h>
#include <duplex/tls_filter.h>

/* The context's SSL_CTX (shared; never modified after the build, but
 * for the key log switch below). */
SSL_CTX *dx_tls_ctx_ssl(const dx_tls_ctx *ctx);
/*
 * Key log lines. OpenSSL formats each secret in hex for the key log
 * callback of a context as soon as one is installed, a tenth of a resumed
 * handshake's work, whether or not anyone reads the line. So a context
 * installs it only once one of its connections asks for lines: at the
 * connection's start, when its events change, when SNI moves it to the
 * context, when a server's events ask for them. Once on it stays on.
 */
void dx_tls_ctx_want_keylog(dx_tls_ctx *ctx);
/* filter.c: installs the library's key log callback on ssl. */
void dx_tls_keylog_install(SSL_CTX *ssl);

/* A client session made from its bytes, for one connection: a copy of the
 * one the context made from the same bytes last time, else decoded anew
 * (and kept for next time). Thread-safe. Returns 0 with *out (the caller
 * owns it), DX_EINVAL (not a session), DX_ENOMEM. */
int dx_tls_ctx_session(dx_tls_ctx *ctx, const void *der, size_t len, SSL_SESSION **out);
/* Empties OpenSSL's error queue: was any entry a failed allocation? */
bool dx_tls_drain_openssl_errors(void);

/* The client verification a context sets (dx_tls_config_set_request_cert):
 * false when it sets none. */
bool dx_tls_ctx_client_verify(const dx_tls_ctx *ctx, bool *request, bool *reject);

/* The session id context for a server connection on ctx that asks
 * (request) or not for client certificates, refusing unverified clients
 * (reject) or not: sessions resume only between connections that check
 * clients alike. */
const uint8_t *dx_tls_ctx_session_id_context(const dx_tls_ctx *ctx, bool request, bool reject,
                                             size_t *len);

/* Node's code string for an OpenSSL error: ERR_OSSL_<LIB>_<REASON>, or
 * ERR_SSL_<REASON> for the SSL library. */
void dx_tls_openssl_code(unsigned long e, char *out, size_t size);

/* An error (layer "tls", code DX_ETLS) for the newest OpenSSL error, with
 * a message that starts with option; fallback is the message when OpenSSL
 * said nothing. Clears OpenSSL's error queue. Never NULL. */
dx_error *dx_tls_error_openssl(const char *option, const char *fallback);

/* Prepares a new SSL_CTX for TLS filters: the BIO method of the filter and
 * the callbacks that report to connections (verification, keylog,
 * sessions). 0 or DX_ENOMEM. */
int dx_tls_ctx_prepare(SSL_CTX *ssl);
/* Once a context's certificates and trust are in place: finds the issuer
 * of each certificate for OCSP stapling (filters/tls/ocsp.c). 0 or
 * DX_ENOMEM. */
int dx_tls_ocsp_ctx_ready(SSL_CTX *ssl);

/* Server: a choice of context by name made at once, without waiting
 * (the server's table of dx_tls_server_add_context()); NULL: none. */
void dx_tls_set_sni_resolver(dx_tls *t, dx_tls_ctx *(*fn)(void *arg, const char *name),
                             void *arg);

/* Called once when the connection closes (its upper stream), for an owner
 * that counts connections (the TLS server). */
void dx_tls_set_close_hook(dx_tls *t, void (*hook)(dx_tls *t, void *arg), void *arg);

/* The connection an SSL object belongs to, or NULL (an SSL of the user's). */
dx_tls *dx_tls_of_ssl(const SSL *ssl);

/* The server a connection was accepted by (set by the server), or NULL. */
typedef struct dx_tls_server dx_tls_server;
/* Whether a connection of srv whose on_keylog is cb wants key log lines
 * (the server's own relay wants them when the server has on_keylog). */
bool dx_tls_server_keylog_wanted(const dx_tls_server *srv,
                                 void (*cb)(dx_tls *t, const char *line, void *user));
void dx_tls_set_server(dx_tls *t, dx_tls_server *srv);
dx_tls_server *dx_tls_get_server(const dx_tls *t);
/* Server: whether the client's hello offered a session to resume (a
 * ticket or a TLS 1.3 pre-shared key). */
bool dx_tls_offered_resumption(const dx_tls *t);

/* Session tickets (filters/tls/tickets.c): the callback every context
 * uses to seal and open tickets, with the keys of the connection's server
 * or, for a connection of no server, keys made once per process. */
int dx_tls_ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv,
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc);

/* A server's ticket keys: the current set seals, the previous one still
 * opens (a ticket opened with it is renewed). */
typedef struct dx_tls_ticket_keys {
    uint8_t cur[48], prev[48];
    bool have_prev;
    uint64_t renewed, unknown; /* tickets renewed, tickets no key opens */
} dx_tls_ticket_keys;
dx_tls_ticket_keys *dx_tls_server_ticket_keys(dx_tls_server *srv);
/* Fills keys with fresh random bytes. 0 or DX_ENOMEM-style failure. */
int dx_tls_ticket_keys_init(dx_tls_ticket_keys *keys);

/* The built-in session cache (filters/tls/sessions.c). Times in ms on the
 * server's clock. get returns a new reference or NULL. */
typedef struct dx_tls_session_cache dx_tls_session_cache;
int dx_tls_session_cache_new(size_t max, dx_tls_session_cache **out);
void dx_tls_session_cache_free(dx_tls_session_cache *c);
void dx_tls_session_cache_put(dx_tls_session_cache *c, SSL_SESSION *sess, uint64_t now);
SSL_SESSION *dx_tls_session_cache_get(dx_tls_session_cache *c, const uint8_t *id,
                                      unsigned len, uint64_t now);
void dx_tls_session_cache_remove(dx_tls_session_cache *c, const uint8_t *id, unsigned len);
void dx_tls_session_cache_counts(const dx_tls_session_cache *c, uint64_t *hits,
                                 uint64_t *misses, uint64_t *evictions, size_t *entries);

/* A server's sessions (server.c), for the callbacks of its connections. */
void dx_tls_server_session_new(dx_tls_server *srv, SSL *ssl, SSL_SESSION *sess);
SSL_SESSION *dx_tls_server_session_get(dx_tls_server *srv, const uint8_t *id, unsigned len);
/* With an external store, lookups are asynchronous: the connection asks
 * through the store's get (outside OpenSSL) and waits for
 * dx_tls_session_found(). */
bool dx_tls_server_async_lookup(const dx_tls_server *srv);
void dx_tls_server_lookup(dx_tls_server *srv, const uint8_t *id, size_t len,
                          dx_tls_pending *p);
/* The store answered bytes that are no session: its del forgets them. */
void dx_tls_server_session_bad(dx_tls_server *srv, const uint8_t *id, size_t len);
/* The server's clock now (ms), for the stores of the library. */
uint64_t dx_tls_server_now(const dx_tls_server *srv);

/* Copies of the process defaults (see dx_tls_set_default_ciphers()), for
 * a new configuration, which owns and frees them. */
typedef struct dx_tls_defaults {
    char *ciphers, *groups, *min_version, *max_version;
} dx_tls_defaults;

/* Fills *out with copies. 0, or DX_ENOMEM with nothing to free. */
int dx_tls_defaults_copy(dx_tls_defaults *out);

#endif
