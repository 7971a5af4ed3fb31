/*
 * libduplex: certificate objects and the server identity check.
 *
 * A dx_tls_cert is one X.509 certificate, read once and immutable: what
 * Node.js's getPeerCertificate() returns, in C. Every field is worked out
 * when the object is made, so reading is cheap, never fails for want of
 * memory, and is safe from any number of threads at once. Strings and byte
 * arrays that the readers return belong to the object and stay valid until
 * dx_tls_cert_free(). Strings are NUL-terminated UTF-8; readers given a NULL
 * certificate return NULL, 0 or false.
 *
 * Texts follow Node.js byte for byte where Node.js has the field (subject
 * keys, "Aug 14 00:00:00 2017 GMT", "0x10001", colon-separated
 * fingerprints, the subjectaltname string with its escaping), so that code
 * and tests written against Node.js carry over.
 *
 * dx_tls_check_server_identity() is Node's tls.checkServerIdentity(): the
 * RFC 6125 check that a certificate names the host a client meant to reach.
 */
#ifndef DUPLEX_TLS_CERT_H
#define DUPLEX_TLS_CERT_H

#include <duplex/common.h>
#include <duplex/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dx_tls_cert dx_tls_cert;

/* ---- making and freeing ---- */

/*
 * Reads one certificate in DER. der must hold exactly one certificate,
 * with nothing after it. Returns 0 and sets *out, or: DX_EINVAL (NULL der
 * or out, len 0 or above INT_MAX, bytes that are not a certificate),
 * DX_ENOMEM. On failure *out is NULL, nothing is leaked, and, with err
 * non-NULL, *err describes the failure (layer "tls", a Node-style name
 * such as "ERR_OSSL_ASN1_HEADER_TOO_LONG", OpenSSL's error text as detail);
 * the caller frees it with dx_error_free(). The bytes are copied: der may
 * be freed at once.
 */
DX_EXTERN int dx_tls_cert_from_der(const void *der, size_t len,
                                   dx_tls_cert **out, dx_error **err);

/*
 * Reads the first certificate of PEM text (labels CERTIFICATE, X509
 * CERTIFICATE or TRUSTED CERTIFICATE; text before it is skipped, later
 * certificates are ignored). len is the length of the text, which need not
 * be NUL-terminated. Returns and reports as dx_tls_cert_from_der(): no
 * certificate in the text is DX_EINVAL ("ERR_OSSL_PEM_NO_START_LINE").
 */
DX_EXTERN int dx_tls_cert_from_pem(const void *pem, size_t len,
                                   dx_tls_cert **out, dx_error **err);

/* Frees a certificate object and everything its readers returned. NULL is
 * ignored. */
DX_EXTERN void dx_tls_cert_free(dx_tls_cert *c);

/*
 * The OpenSSL X509 behind the object (as void *, so that this header needs
 * no OpenSSL headers), borrowed: valid until dx_tls_cert_free(). Take a
 * reference with X509_up_ref() to keep it longer. Changing it breaks the
 * object's promise of immutability. NULL for a NULL certificate.
 */
DX_EXTERN void *dx_tls_cert_openssl(const dx_tls_cert *c);

/* ---- the encoding ---- */

/* The certificate in DER (Node's raw). Returns 0, or DX_EINVAL for a NULL
 * argument. */
DX_EXTERN int dx_tls_cert_der(const dx_tls_cert *c, const uint8_t **der,
                              size_t *len);

/* ---- subject and issuer ---- */

/*
 * A distinguished name as the ordered list of its attributes: each a key
 * and a UTF-8 value. Keys are OpenSSL's short names ("C", "ST", "L", "O",
 * "OU", "CN", "emailAddress", ...), or the dotted OID for attributes
 * OpenSSL does not know. Repeated keys (two OU) are kept, in order. A
 * dx_tls_name is a view into its certificate and lives as long as it.
 */
typedef struct dx_tls_name dx_tls_name;

/* The subject and the issuer; NULL only for a NULL certificate. */
DX_EXTERN const dx_tls_name *dx_tls_cert_subject(const dx_tls_cert *c);
DX_EXTERN const dx_tls_name *dx_tls_cert_issuer(const dx_tls_cert *c);

/* The number of attributes (0 for an empty or a NULL name). */
DX_EXTERN size_t dx_tls_name_count(const dx_tls_name *n);

/*
 * Attribute i, in the certificate's order: its key, its value, and the
 * value's length in bytes (a value may hold a NUL byte; *value is
 * NUL-terminated all the same). Any of key, value and len may be NULL.
 * Returns 0, or DX_EINVAL for a NULL name or i out of range.
 */
DX_EXTERN int dx_tls_name_entry(const dx_tls_name *n, size_t i,
                                const char **key, const char **value,
                                size_t *len);

/* How many attributes have this key (case-sensitive, as in Node.js). */
DX_EXTERN size_t dx_tls_name_key_count(const dx_tls_name *n, const char *key);

/*
 * The value of the idx-th attribute (from 0) with this key, or NULL when
 * there is none: dx_tls_name_get(subject, "OU", 1) is the second OU. A
 * value that holds a NUL byte reads short here; dx_tls_name_entry() gives
 * its length.
 */
DX_EXTERN const char *dx_tls_name_get(const dx_tls_name *n, const char *key,
                                      size_t idx);

/* ---- validity ---- */

/*
 * notBefore and notAfter as Node prints them: "Aug 14 00:00:00 2017 GMT"
 * (the day padded with a space), or "Bad time value" for a malformed time.
 */
DX_EXTERN const char *dx_tls_cert_valid_from(const dx_tls_cert *c);
DX_EXTERN const char *dx_tls_cert_valid_to(const dx_tls_cert *c);

/*
 * notBefore and notAfter in seconds since 1970-01-01 00:00:00 UTC (negative
 * before it). Either pointer may be NULL. Returns 0; DX_EINVAL for a NULL
 * certificate; DX_EPROTO when a time in the certificate is malformed (then
 * both read as 0).
 */
DX_EXTERN int dx_tls_cert_validity(const dx_tls_cert *c, int64_t *not_before,
                                   int64_t *not_after);

/* ---- identifiers ---- */

/* The serial number in upper-case hex without leading zero bytes
 * ("0A1B..."; "0" for zero, a leading '-' if negative). */
DX_EXTERN const char *dx_tls_cert_serial(const dx_tls_cert *c);

typedef enum dx_tls_digest {
    DX_TLS_SHA1 = 0,   /* Node's fingerprint */
    DX_TLS_SHA256 = 1, /* fingerprint256 */
    DX_TLS_SHA512 = 2, /* fingerprint512 */
} dx_tls_digest;

/* The digest of the DER as colon-separated upper-case hex pairs
 * ("AB:01:..."). NULL for a NULL certificate or an unknown digest. */
DX_EXTERN const char *dx_tls_cert_fingerprint(const dx_tls_cert *c,
                                              dx_tls_digest digest);

/* ---- extensions ---- */

/* The extended key usages, as dotted OIDs ("1.3.6.1.5.5.7.3.1" for TLS
 * servers), in the certificate's order; 0 when it has no such extension. */
DX_EXTERN size_t dx_tls_cert_ext_key_usage_count(const dx_tls_cert *c);
/* The i-th of them, or NULL when i is out of range. */
DX_EXTERN const char *dx_tls_cert_ext_key_usage(const dx_tls_cert *c, size_t i);

/*
 * Whether basicConstraints says CA:TRUE; whether the subject and the issuer
 * are the same name (RFC 5280's self-issued, which every self-signed
 * certificate is).
 */
DX_EXTERN bool dx_tls_cert_is_ca(const dx_tls_cert *c);
DX_EXTERN bool dx_tls_cert_is_self_issued(const dx_tls_cert *c);

/* The kinds of name in subjectAltName and in authorityInfoAccess: the
 * GeneralName choices of RFC 5280, numbered as its tags. */
typedef enum dx_tls_altname_type {
    DX_TLS_ALTNAME_OTHER = 0, /* otherName */
    DX_TLS_ALTNAME_EMAIL = 1,
    DX_TLS_ALTNAME_DNS = 2,
    DX_TLS_ALTNAME_X400 = 3,
    DX_TLS_ALTNAME_DIRNAME = 4,
    DX_TLS_ALTNAME_EDIPARTY = 5,
    DX_TLS_ALTNAME_URI = 6,
    DX_TLS_ALTNAME_IP = 7,
    DX_TLS_ALTNAME_RID = 8, /* registeredID */
} dx_tls_altname_type;

/*
 * One name, owned by its certificate. value is NUL-terminated and never
 * NULL; len counts its bytes, which for DNS, email and URI names are the
 * certificate's bytes exactly, NUL bytes included. The other kinds read:
 * IP, the address in canonical text ("127.0.0.1", "fe80::1",
 * "::ffff:1.2.3.4"), or "" when its length is neither 4 nor 16 bytes;
 * DIRNAME, the name in RFC 2253 form ("CN=x,O=y"); RID, the dotted OID;
 * OTHER, "UPN:user@example.com" for the kinds Node prints (UPN,
 * SmtpUTF8Mailbox, XmppAddr, SRVName, NAIRealm), else "<unsupported>";
 * X400 and EDIPARTY, "<unsupported>".
 */
typedef struct dx_tls_altname {
    dx_tls_altname_type type;
    const char *value;
    size_t len;
} dx_tls_altname;

/*
 * Subject alternative names as Node's subjectaltname string:
 * "DNS:a.com, IP Address:1.2.3.4, URI:http://a.com/", or NULL when the
 * certificate has no such extension or OpenSSL cannot read it. A name that
 * holds a comma, a quote, a backslash or a byte outside printable ASCII is
 * written as a JSON string, as Node.js does ('DNS:"good.com\u0000evil.com"'),
 * so the list is never truncated or ambiguous (CVE-2009-2408). IPv6
 * addresses read as Node prints them ("FE80:0:0:0:0:0:0:1").
 */
DX_EXTERN const char *dx_tls_cert_subjectaltname(const dx_tls_cert *c);
/* The same names one by one, in the certificate's order; 0 when none. */
DX_EXTERN size_t dx_tls_cert_altname_count(const dx_tls_cert *c);
/* The i-th of them, or NULL when i is out of range. */
DX_EXTERN const dx_tls_altname *dx_tls_cert_altname(const dx_tls_cert *c,
                                                    size_t i);

/*
 * One authorityInfoAccess entry: the access method ("OCSP", "CA Issuers",
 * or the dotted OID of another) and where (usually a URI). Node's
 * infoAccess key is method + " - URI".
 */
typedef struct dx_tls_access {
    const char *method;
    dx_tls_altname location;
} dx_tls_access;

/* The authorityInfoAccess entries in the certificate's order; 0 when
 * none. */
DX_EXTERN size_t dx_tls_cert_info_access_count(const dx_tls_cert *c);
/* The i-th of them, or NULL when i is out of range. */
DX_EXTERN const dx_tls_access *dx_tls_cert_info_access(const dx_tls_cert *c,
                                                       size_t i);

/* ---- the public key ---- */

/*
 * The key's type in Node's names: "rsa", "rsa-pss", "dsa", "ec",
 * "ed25519", "ed448", ..., or OpenSSL's name in lower case for others;
 * NULL when OpenSSL cannot decode the key.
 */
DX_EXTERN const char *dx_tls_cert_key_type(const dx_tls_cert *c);
/* Its size in bits as OpenSSL counts them (2048 for RSA-2048, 256 for
 * P-256 and Ed25519), or 0 when unknown. */
DX_EXTERN int dx_tls_cert_key_bits(const dx_tls_cert *c);

/* RSA keys: the modulus in upper-case hex without leading zeros, and the
 * public exponent as "0x10001". NULL for other keys. */
DX_EXTERN const char *dx_tls_cert_modulus(const dx_tls_cert *c);
DX_EXTERN const char *dx_tls_cert_exponent(const dx_tls_cert *c);

/* EC keys: the curve's OpenSSL short name ("prime256v1") and its NIST name
 * ("P-256"). NULL for other keys, and the NIST name for curves without
 * one. */
DX_EXTERN const char *dx_tls_cert_asn1_curve(const dx_tls_cert *c);
DX_EXTERN const char *dx_tls_cert_nist_curve(const dx_tls_cert *c);

/*
 * Node's pubkey: for RSA keys the DER SubjectPublicKeyInfo, for EC keys the
 * encoded point (0x04 || X || Y). Other keys have none: *data is NULL and
 * *len 0. Returns 0, or DX_EINVAL for a NULL argument.
 */
DX_EXTERN int dx_tls_cert_pubkey(const dx_tls_cert *c, const uint8_t **data,
                                 size_t *len);

/*
 * The DER SubjectPublicKeyInfo of any key, as the certificate holds it:
 * what public-key pins hash. Returns 0, or DX_EINVAL for a NULL argument.
 */
DX_EXTERN int dx_tls_cert_spki(const dx_tls_cert *c, const uint8_t **data,
                               size_t *len);

/* ---- the server identity check ---- */

/*
 * Whether cert names host, with the rules of Node's
 * tls.checkServerIdentity() (RFC 6125):
 *
 * - one trailing dot of host is ignored, and letters compare without case;
 * - an IP address (v4, or v6 with an optional %zone) matches only an
 *   "IP Address" name with the same address (so "::1" and
 *   "0:0:0:0:0:0:0:1" are the same), never a DNS name nor the CN;
 * - otherwise the DNS names are used if there are any, else the subject's
 *   CNs; URI names are never used (CVE-2021-44531);
 * - a wildcard is only the whole or part of the left-most label of a name
 *   with at least three labels ("*.a.com", "w*.a.com"), stands for exactly
 *   one non-empty label, and is taken literally in a label holding an
 *   A-label ("xn--"); names with a byte outside 0x21-0x7f never match.
 *
 * Returns 0 when the certificate names host; DX_EINVAL for a NULL host or
 * cert; DX_ETLS when it does not. Then, if err is not NULL, *err is set
 * (the caller frees it): code DX_ETLS, name "ERR_TLS_CERT_ALTNAME_INVALID",
 * layer "tls", and Node's message: "Hostname/IP does not match
 * certificate's altnames: " followed by Node's reason, one of
 *   "Host: a.com. is not in the cert's altnames: DNS:b.com"
 *   "Host: a.com. is not cert's CN: b.com"
 *   "IP: 1.2.3.4 is not in the cert's list: 1.2.3.5, ::1"
 *   "Cert does not contain a DNS name"
 * A message longer than an error object holds (255 bytes) is cut and ends
 * in "...". DX_EINVAL also gives an error object (code DX_EINVAL, layer
 * "tls"); on success *err is NULL.
 */
DX_EXTERN int dx_tls_check_server_identity(const char *host,
                                           const dx_tls_cert *cert,
                                           dx_error **err);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_TLS_CERT_H */
