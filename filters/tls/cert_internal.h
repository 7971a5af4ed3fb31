/* Internal: certificate objects for the files of the TLS module. */
#ifndef DX_TLS_CERT_INTERNAL_H
#define DX_TLS_CERT_INTERNAL_H

#include <openssl/x509.h>

#include <duplex/tls_cert.h>

/*
 * Makes a certificate object over x (a peer's or a context's certificate),
 * taking a reference of its own: the caller keeps its reference and may
 * free x at once. OpenSSL's error queue is left as it was. Returns 0,
 * DX_EINVAL for a NULL argument, or DX_ENOMEM; *out is NULL on failure.
 */
int dx_tls_cert_wrap(X509 *x, dx_tls_cert **out);

/* The same with only the subject and the subject alternative names read
 * (the other getters answer as for a certificate without them): what the
 * default server identity check needs, at a tenth of the cost. For
 * objects that stay inside the library. */
int dx_tls_cert_wrap_names(X509 *x, dx_tls_cert **out);

/* The X509 behind c, borrowed (valid until dx_tls_cert_free()). */
X509 *dx_tls_cert_x509_internal(const dx_tls_cert *c);

#endif
