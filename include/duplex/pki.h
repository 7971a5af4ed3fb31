/*
 * libduplex: throw-away certificates, made in memory.
 *
 * A certificate authority and the certificates it issues, generated on the
 * spot with OpenSSL: for tests of TLS over in-memory pairs, for demos that
 * must not touch files, and for anything that needs a PKI for a moment.
 * Keys are fresh every time and exist only in memory (and in the PEM text
 * the caller asks for). Never use these for anything that must be trusted
 * beyond the process that made them.
 */
#ifndef DUPLEX_PKI_H
#define DUPLEX_PKI_H

#include <duplex/common.h>
#include <duplex/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dx_pki_key_type {
    DX_PKI_EC_P256 = 0, /* the default */
    DX_PKI_RSA_2048 = 1,
    DX_PKI_ED25519 = 2,
    DX_PKI_EC_P384 = 3,
} dx_pki_key_type;

/* Extended key usages for dx_pki_opts.ext_key_usage. */
#define DX_PKI_EKU_SERVER 0x1u /* TLS Web Server Authentication */
#define DX_PKI_EKU_CLIENT 0x2u /* TLS Web Client Authentication */

typedef struct dx_pki_opts {
    dx_pki_key_type key_type;
    /* Subject common name; NULL for none. */
    const char *common_name;
    /* Subject alternative names, each list NULL-terminated or NULL:
     * DNS names (wildcards allowed), IP addresses (v4 or v6 text), URIs. */
    const char *const *dns_names;
    const char *const *ip_addresses;
    const char *const *uris;
    /* Validity, in seconds relative to now: not_before 0 means 60 seconds
     * ago, not_after 0 means one day from now. Negative values lie in the
     * past (an expired certificate: not_after < 0). */
    int64_t not_before;
    int64_t not_after;
    /* A CA certificate (basicConstraints CA:TRUE, keyCertSign). */
    bool is_ca;
    /* DX_PKI_EKU_* bits; 0 for no extendedKeyUsage extension. */
    unsigned ext_key_usage;
    /* RFC 7633 must-staple: the TLS feature extension with
     * status_request, so that clients that enforce it refuse the
     * certificate without a stapled OCSP response. */
    bool must_staple;
} dx_pki_opts;

typedef struct dx_pki_cert dx_pki_cert;

/*
 * Makes a key of opts->key_type and a certificate for it, signed by issuer
 * (which must be a CA made here), or self-signed when issuer is NULL.
 * opts may be NULL for a self-signed EC P-256 certificate with no names.
 * Returns 0; DX_EINVAL (NULL out, an unknown key type, an issuer that is
 * not a CA, an IP address or name OpenSSL refuses); DX_ENOMEM; DX_EIO if
 * OpenSSL fails otherwise. With err non-NULL, a failure also gives an error
 * object (layer "pki") whose detail holds OpenSSL's reason; the caller
 * frees it with dx_error_free().
 */
DX_EXTERN int dx_pki_issue(const dx_pki_cert *issuer, const dx_pki_opts *opts,
                           dx_pki_cert **out, dx_error **err);

/* The certificate as PEM text, NUL-terminated; lives as long as c. */
DX_EXTERN const char *dx_pki_cert_pem(const dx_pki_cert *c);
/* The private key as PKCS#8 PEM text, unencrypted; lives as long as c. */
DX_EXTERN const char *dx_pki_key_pem(const dx_pki_cert *c);
/* The certificate in DER; *der lives as long as c. 0 or DX_EINVAL. */
DX_EXTERN int dx_pki_cert_der(const dx_pki_cert *c, const uint8_t **der,
                              size_t *len);
/* Frees a certificate and its key (the key's memory is cleared). NULL is
 * ignored. */
DX_EXTERN void dx_pki_cert_free(dx_pki_cert *c);

/* The certificate status of an OCSP response (dx_pki_ocsp_response). */
typedef enum dx_pki_ocsp_status {
    DX_PKI_OCSP_GOOD = 0,
    DX_PKI_OCSP_REVOKED = 1,
    DX_PKI_OCSP_UNKNOWN = 2,
} dx_pki_ocsp_status;

/* No nextUpdate in the response (dx_pki_ocsp_response). */
#define DX_PKI_OCSP_NO_NEXT_UPDATE INT64_MIN

/*
 * Makes a DER OCSP response (RFC 6960: successful, basic, one
 * SingleResponse) about cert, as issuer's own responder: the CertID is
 * made from issuer's name and key with SHA-1, the response is signed with
 * issuer's key (its responder ID is the key's hash; no certificates are
 * included). status: good, revoked (revocation time thisUpdate, no
 * reason) or unknown. this_update and next_update are in seconds
 * relative to now (negative in the past; an expired response has a
 * negative next_update); next_update DX_PKI_OCSP_NO_NEXT_UPDATE leaves
 * nextUpdate out. The caller owns *der and frees it with
 * dx_pki_ocsp_free(). Returns 0; DX_EINVAL (a NULL argument, an issuer
 * that is not a CA, an unknown status); DX_ENOMEM; DX_EIO if OpenSSL
 * fails otherwise.
 */
DX_EXTERN int dx_pki_ocsp_response(const dx_pki_cert *issuer, const dx_pki_cert *cert,
                                   dx_pki_ocsp_status status, int64_t this_update,
                                   int64_t next_update, uint8_t **der, size_t *len);
/* Frees a response of dx_pki_ocsp_response(). NULL is ignored. */
DX_EXTERN void dx_pki_ocsp_free(uint8_t *der);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_PKI_H */
