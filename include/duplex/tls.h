/*
 * libduplex: the TLS module.
 *
 * CONFIGURATION AND CONTEXT
 *
 * A dx_tls_config collects options (trust, credentials, versions,
 * ciphers, ...); it is a plain builder that checks only its arguments.
 * dx_tls_ctx_new() turns it into a dx_tls_ctx: one OpenSSL SSL_CTX with
 * every option applied and checked, immutable from then on, reference
 * counted, and safe to share between threads and between any number of
 * connections (Node's SecureContext). A bad option fails the build with an
 * error that names the option and carries OpenSSL's reason.
 *
 * Error names follow Node.js: OpenSSL failures become
 * "ERR_OSSL_<LIBRARY>_<REASON>" ("ERR_SSL_<REASON>" for the SSL library),
 * e.g. "ERR_OSSL_PEM_NO_START_LINE", "ERR_SSL_NO_CIPHER_MATCH"; libduplex's
 * own checks use Node's codes where Node has one
 * ("ERR_TLS_INVALID_PROTOCOL_VERSION").
 */
#ifndef DUPLEX_TLS_H
#define DUPLEX_TLS_H

#include <duplex/common.h>
#include <duplex/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dx_tls_config dx_tls_config;
typedef struct dx_tls_ctx dx_tls_ctx;

/* Defaults, as in Node.js; new configurations start from the process
 * defaults (dx_tls_set_default_ciphers() and its siblings), which start
 * from these. */
#define DX_TLS_DEFAULT_MIN_VERSION "TLSv1.2"
#define DX_TLS_DEFAULT_MAX_VERSION "TLSv1.3"
#define DX_TLS_DEFAULT_SESSION_TIMEOUT 300
/* Node's tls.DEFAULT_ECDH_CURVE: OpenSSL's own choice of groups. */
#define DX_TLS_DEFAULT_GROUPS "auto"
/* Node's default cipher list (crypto.constants.defaultCoreCipherList). */
#define DX_TLS_DEFAULT_CIPHERS                                              \
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:"                  \
    "TLS_AES_128_GCM_SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                   \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"            \
    "ECDHE-ECDSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:"              \
    "ECDHE-RSA-AES128-SHA256:DHE-RSA-AES128-SHA256:"                        \
    "ECDHE-RSA-AES256-SHA384:DHE-RSA-AES256-SHA384:"                        \
    "ECDHE-RSA-AES256-SHA256:DHE-RSA-AES256-SHA256:HIGH:!aNULL:!eNULL:"     \
    "!EXPORT:!DES:!RC4:!MD5:!PSK:!SRP:!CAMELLIA"

/*
 * A new configuration, holding copies of the process defaults of this
 * moment (ciphers, groups, minimum and maximum version; later changes to
 * the defaults do not reach it), honoring the cipher order, a session
 * timeout of DX_TLS_DEFAULT_SESSION_TIMEOUT, and nothing else. The caller
 * owns *out and frees it with dx_tls_config_free(). Returns 0, DX_EINVAL
 * (NULL out), DX_ENOMEM.
 */
DX_EXTERN int dx_tls_config_new(dx_tls_config **out);
/* Frees a configuration; the text of keys, PFX and passphrases is cleared
 * first. Contexts built from it live on. NULL is ignored. */
DX_EXTERN void dx_tls_config_free(dx_tls_config *cfg);

/*
 * Every setter below copies what it is given (the caller keeps its own
 * buffers), returns 0, DX_EINVAL for a NULL configuration or a missing
 * argument, or DX_ENOMEM, and leaves the real check to dx_tls_ctx_new().
 * A setter called twice keeps the last value; the add_ functions add.
 * A configuration is used from one thread at a time.
 */

/*
 * Trust: adds one or more PEM certificates (labels CERTIFICATE, X509
 * CERTIFICATE or TRUSTED CERTIFICATE; several may be concatenated). Once
 * any is added, only these are trusted; without any, the system's default
 * store is used (see dx_tls_get_root_certificates()).
 */
DX_EXTERN int dx_tls_config_add_ca(dx_tls_config *cfg, const void *pem,
                                   size_t len);
/* The same from a PEM file, read when the context is built. */
DX_EXTERN int dx_tls_config_add_ca_file(dx_tls_config *cfg, const char *path);

/*
 * Credentials: a certificate chain (leaf first, then intermediates; PEM,
 * or a single DER certificate) and its private key (PEM or DER, PKCS#8 or
 * traditional; encrypted keys need the passphrase, NULL otherwise; no
 * terminal is ever asked). Several may be added, one per key type (RSA,
 * ECDSA, Ed25519), from any of the add_cert and add_pfx calls: the
 * handshake picks the one the peer supports. A second one of the same key
 * type replaces the first. A configuration with none still builds (a
 * server can then use only suites without certificates).
 */
DX_EXTERN int dx_tls_config_add_cert(dx_tls_config *cfg, const void *chain,
                                     size_t chain_len, const void *key,
                                     size_t key_len, const char *passphrase);
/* The same from files, read when the context is built. */
DX_EXTERN int dx_tls_config_add_cert_file(dx_tls_config *cfg,
                                          const char *chain_path,
                                          const char *key_path,
                                          const char *passphrase);
/*
 * The same with the key named by an OSSL_STORE URI (Node's
 * privateKeyEngine and privateKeyIdentifier, the OpenSSL 3 way): "file:"
 * URIs and plain paths work with every OpenSSL; "pkcs11:" and others need
 * the provider that serves them, loaded in OpenSSL's default library
 * context. The key is fetched when the context is built; the passphrase
 * (or PIN) is given to the store when it asks, NULL for none. A store that
 * holds several keys gives its first.
 */
DX_EXTERN int dx_tls_config_add_cert_uri(dx_tls_config *cfg,
                                         const void *chain, size_t chain_len,
                                         const char *key_uri,
                                         const char *passphrase);
/*
 * Credentials from a PKCS#12 (PFX) archive in DER: its certificate, its
 * private key, and its other certificates as the chain. passphrase NULL
 * tries both no password and the empty one. Archives protected by legacy
 * algorithms (RC2, 3DES) need OpenSSL's legacy provider.
 */
DX_EXTERN int dx_tls_config_add_pfx(dx_tls_config *cfg, const void *data,
                                    size_t len, const char *passphrase);
/* The same from a file, read when the context is built. */
DX_EXTERN int dx_tls_config_add_pfx_file(dx_tls_config *cfg,
                                         const char *path,
                                         const char *passphrase);

/*
 * Revocation: adds one or more PEM certificate revocation lists. With any
 * CRL, peers' chains are checked against CRLs down to the root (Node's
 * CRL_CHECK|CRL_CHECK_ALL): each certificate of a peer's chain needs a
 * CRL from its issuer, or verification fails with UNABLE_TO_GET_CRL; a
 * revoked one fails it with CERT_REVOKED.
 */
DX_EXTERN int dx_tls_config_add_crl(dx_tls_config *cfg, const void *pem,
                                    size_t len);
/* The same from a PEM file, read when the context is built. */
DX_EXTERN int dx_tls_config_add_crl_file(dx_tls_config *cfg,
                                         const char *path);

/*
 * Also accept a peer whose chain ends at a trusted certificate that is not
 * self-signed (an intermediate, or the leaf itself): Node's
 * allowPartialTrustChain. Off by default.
 */
DX_EXTERN int dx_tls_config_set_allow_partial_trust_chain(dx_tls_config *cfg,
                                                          bool allow);

/*
 * Trust the system's default store as well as the CAs added (Node's
 * NODE_EXTRA_CA_CERTS and addCACert extend the defaults where "ca"
 * replaces them). Without CAs added the system store is used anyway.
 * Off by default. Returns 0, DX_EINVAL.
 */
DX_EXTERN int dx_tls_config_set_system_trust(dx_tls_config *cfg, bool also);

/*
 * Ciphers, with Node's semantics: names that start with "TLS_" are TLS 1.3
 * cipher suites, everything else is an OpenSSL cipher string for TLS 1.2
 * and below; a list that names no TLS 1.3 suite leaves the 1.3 defaults.
 * Names are upper-case, as OpenSSL spells them. Replaces the process
 * default (DX_TLS_DEFAULT_CIPHERS unless changed).
 */
DX_EXTERN int dx_tls_config_set_ciphers(dx_tls_config *cfg, const char *list);
/* TLS 1.3 cipher suites alone ("TLS_AES_128_GCM_SHA256:..."), applied
 * after the ciphers. */
DX_EXTERN int dx_tls_config_set_ciphersuites(dx_tls_config *cfg,
                                             const char *list);
/* Signature algorithms ("ECDSA+SHA256:RSA-PSS+SHA256:ed25519"). */
DX_EXTERN int dx_tls_config_set_sigalgs(dx_tls_config *cfg, const char *list);
/* Key-exchange groups (Node's ecdhCurve): "X25519:P-256", or "auto" for
 * OpenSSL's defaults (the built-in process default). */
DX_EXTERN int dx_tls_config_set_groups(dx_tls_config *cfg, const char *list);
/*
 * Diffie-Hellman parameters for the DHE suites of TLS 1.2 and below
 * (Node's dhparam): PEM ("DH PARAMETERS", as openssl dhparam writes them)
 * or DER, of 1024 bits or more; or the 4 bytes "auto" for OpenSSL's
 * built-in RFC 7919 groups (SSL_CTX_set_dh_auto()). Without it, DHE suites
 * are not used. Unlike Node, which drops bad parameters silently, the
 * build refuses them: smaller than 1024 bits with "ERR_TLS_DH_PARAM_SIZE",
 * undecodable or not DH with the reason.
 */
DX_EXTERN int dx_tls_config_set_dhparam(dx_tls_config *cfg, const void *pem,
                                        size_t len);
/* Lowest protocol version: "TLSv1", "TLSv1.1", "TLSv1.2" or "TLSv1.3".
 * Replaces the process default. */
DX_EXTERN int dx_tls_config_set_min_version(dx_tls_config *cfg,
                                            const char *version);
/* Highest protocol version, the same names. Replaces the process
 * default. */
DX_EXTERN int dx_tls_config_set_max_version(dx_tls_config *cfg,
                                            const char *version);
/*
 * Node's secureProtocol, for compatibility: an OpenSSL method name.
 * "TLS_method" allows every version OpenSSL allows, "SSLv23_method" up to
 * TLS 1.2, "TLSv1_method", "TLSv1_1_method", "TLSv1_2_method" and
 * "TLSv1_3_method" exactly that one; the "_server_method" and
 * "_client_method" forms also restrict the context to that role. SSLv2 and
 * SSLv3 names and unknown names are refused
 * ("ERR_TLS_INVALID_PROTOCOL_METHOD"), and so is a configuration that also
 * sets a minimum or maximum version ("ERR_TLS_PROTOCOL_VERSION_CONFLICT").
 */
DX_EXTERN int dx_tls_config_set_secure_protocol(dx_tls_config *cfg,
                                                const char *method);
/* Servers choose by their own cipher order (the default for servers). */
DX_EXTERN int dx_tls_config_set_honor_cipher_order(dx_tls_config *cfg,
                                                   bool honor);
/* Extra SSL_OP_* bits (Node's secureOptions), or-ed into the defaults. */
DX_EXTERN int dx_tls_config_set_secure_options(dx_tls_config *cfg,
                                               uint64_t options);
/* Server session id context, 1 to 32 bytes (DX_EINVAL otherwise). Sessions
 * resume only on contexts with the same one; the default is "libduplex".
 */
DX_EXTERN int dx_tls_config_set_session_id_context(dx_tls_config *cfg,
                                                   const void *id, size_t len);
/* Session lifetime in seconds (default 300; 1 to 2^31-1, DX_EINVAL
 * otherwise). */
DX_EXTERN int dx_tls_config_set_session_timeout(dx_tls_config *cfg,
                                                unsigned seconds);
/*
 * Servers: whether connections served with this context ask the client
 * for a certificate, and refuse one that fails verification (Node's
 * requestCert and rejectUnauthorized, per context). Unset by default.
 * When set it is the default of dx_tls_set_request_cert() and
 * dx_tls_set_reject_unauthorized() for connections made on the context,
 * and it applies when SNI chooses the context, so that one name may
 * require client certificates while others do not. Returns 0 or DX_EINVAL.
 */
DX_EXTERN int dx_tls_config_set_request_cert(dx_tls_config *cfg, bool request,
                                             bool reject_unauthorized);

/*
 * Builds a context from cfg, which stays the caller's and may be freed or
 * changed at once. Files and key URIs are read now. Returns 0 with *out
 * holding one reference (drop it with dx_tls_ctx_unref()), DX_EINVAL (NULL
 * cfg or out), DX_ENOMEM, or DX_ETLS when an option is refused; then, if
 * err is not NULL, *err describes it: layer "tls", a Node-style name, a
 * message that starts with the option ("ciphers: no cipher match"), and
 * OpenSSL's full error text as detail. The caller frees *err. On failure
 * *out is NULL and nothing is leaked.
 */
DX_EXTERN int dx_tls_ctx_new(const dx_tls_config *cfg, dx_tls_ctx **out,
                             dx_error **err);
/* Takes a reference (thread-safe); returns ctx. NULL gives NULL. */
DX_EXTERN dx_tls_ctx *dx_tls_ctx_ref(dx_tls_ctx *ctx);
/* Drops a reference (thread-safe); the last frees. NULL is ignored. */
DX_EXTERN void dx_tls_ctx_unref(dx_tls_ctx *ctx);

/*
 * The context's OpenSSL SSL_CTX (as void *, so that this header needs no
 * OpenSSL headers), for reading it or making SSL objects of one's own; NULL
 * for a NULL ctx. It lives as long as the context and is shared: changing
 * it breaks the context's promise of immutability.
 */
DX_EXTERN void *dx_tls_ctx_openssl(const dx_tls_ctx *ctx);

/* Whether servers built on ctx choose by their own cipher order; false for
 * a NULL ctx. */
DX_EXTERN bool dx_tls_ctx_honor_cipher_order(const dx_tls_ctx *ctx);

/*
 * PROCESS DEFAULTS
 *
 * What new configurations start from (Node's tls.DEFAULT_CIPHERS,
 * tls.DEFAULT_ECDH_CURVE, tls.DEFAULT_MIN_VERSION, tls.DEFAULT_MAX_VERSION
 * and --tls-cipher-list). Each call copies its text, checked when a
 * context is built as if it had been set on the configuration; NULL
 * restores the built-in default (the DX_TLS_DEFAULT_ macros). Configurations
 * that exist already keep what they copied. Like dx_set_allocator(), these
 * calls are not thread-safe: make them at start-up, before any thread makes
 * configurations. A default other than the built-in one holds memory from
 * the library's allocator: restore it (NULL) before dx_set_allocator().
 * Each returns 0 or DX_ENOMEM.
 */
/* The cipher list (see dx_tls_config_set_ciphers()). */
DX_EXTERN int dx_tls_set_default_ciphers(const char *list);
/* The key-exchange groups (see dx_tls_config_set_groups()). */
DX_EXTERN int dx_tls_set_default_groups(const char *list);
/* The lowest protocol version (see dx_tls_config_set_min_version()). */
DX_EXTERN int dx_tls_set_default_min_version(const char *version);
/* The highest protocol version (see dx_tls_config_set_max_version()). */
DX_EXTERN int dx_tls_set_default_max_version(const char *version);

/*
 * LISTS
 *
 * An immutable list of strings returned to the caller, who owns it and
 * frees it with dx_tls_list_free(); the strings live as long as the list.
 */
typedef struct dx_tls_list dx_tls_list;

/* The number of strings; 0 for NULL. */
DX_EXTERN size_t dx_tls_list_count(const dx_tls_list *list);
/* String i (from 0), NUL-terminated; NULL when i is out of range or list
 * is NULL. */
DX_EXTERN const char *dx_tls_list_get(const dx_tls_list *list, size_t i);
/* Frees a list and its strings. NULL is ignored. */
DX_EXTERN void dx_tls_list_free(dx_tls_list *list);

/*
 * The names of the ciphers this OpenSSL can negotiate at its configured
 * security level (Node's tls.getCiphers()): lower-case, sorted, each once;
 * TLS 1.3 suites start with "tls_". Upper-cased, each is accepted by
 * dx_tls_config_set_ciphers(). Returns 0 with a new list in *out (the
 * caller frees it), DX_EINVAL (NULL out), DX_ENOMEM.
 */
DX_EXTERN int dx_tls_get_ciphers(dx_tls_list **out);

/*
 * The certificates a context without dx_tls_config_add_ca() trusts (Node's
 * tls.rootCertificates): the system's default store as OpenSSL finds it,
 * the file and the hashed directories it names, or those the environment
 * variables SSL_CERT_FILE and SSL_CERT_DIR name, as OpenSSL reads them.
 * libduplex ships no bundle of its own. Each certificate is one PEM text
 * ("-----BEGIN CERTIFICATE-----..."), once, however many places hold it.
 * A missing store gives an empty list. The store is read at each call.
 * Returns 0 with a new list in *out (the caller frees it), DX_EINVAL (NULL
 * out), DX_ENOMEM.
 */
DX_EXTERN int dx_tls_get_root_certificates(dx_tls_list **out);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_TLS_H */
