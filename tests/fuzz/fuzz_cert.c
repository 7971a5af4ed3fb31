/*
 * Fuzz target: the certificate object (tls_cert.h) built from arbitrary
 * DER, and from the same bytes as PEM text. Every reader runs on what
 * was built, every string is read to its end, and the server identity
 * check runs against a set of host names and against each name the
 * certificate holds.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static volatile size_t sink;

static void str(const char *s)
{
    if (s)
        sink += strlen(s);
}

static void bytes(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sink += p[i];
}

static void name(const dx_tls_name *n)
{
    size_t count = dx_tls_name_count(n);
    for (size_t i = 0; i < count; i++) {
        const char *k = NULL, *v = NULL;
        size_t len = 0;
        if (dx_tls_name_entry(n, i, &k, &v, &len) != 0)
            abort();
        str(k);
        bytes((const uint8_t *)v, len + 1); /* NUL-terminated after len bytes */
        sink += dx_tls_name_key_count(n, k);
        str(dx_tls_name_get(n, k, 0));
        str(dx_tls_name_get(n, k, 1));
    }
    str(dx_tls_name_get(n, "CN", 0));
    if (dx_tls_name_entry(n, count, NULL, NULL, NULL) == 0)
        abort();
}

static void identity(const char *host, const dx_tls_cert *c)
{
    dx_error *err = NULL;
    int rc = dx_tls_check_server_identity(host, c, &err);
    if (rc == 0 && err)
        abort();
    if (rc != 0 && !err)
        abort();
    if (err)
        str(dx_error_message(err));
    dx_error_free(err);
}

static const char *const hosts[] = {
    "localhost", "LOCALHOST.", "a.example.com", "example.com", "x.y.example.com",
    "127.0.0.1", "::1", "0:0:0:0:0:0:0:1", "fe80::1%eth0", "1.2.3.4",
    "xn--bcher-kva.example", "a..b", "*.example.com", ".", "", "a.b.c.d.e.f",
};

static void read_all(const dx_tls_cert *c)
{
    const uint8_t *p;
    size_t n;
    if (dx_tls_cert_der(c, &p, &n) != 0)
        abort();
    bytes(p, n);
    name(dx_tls_cert_subject(c));
    name(dx_tls_cert_issuer(c));
    str(dx_tls_cert_valid_from(c));
    str(dx_tls_cert_valid_to(c));
    int64_t nb, na;
    (void)dx_tls_cert_validity(c, &nb, &na);
    str(dx_tls_cert_serial(c));
    str(dx_tls_cert_fingerprint(c, DX_TLS_SHA1));
    str(dx_tls_cert_fingerprint(c, DX_TLS_SHA256));
    str(dx_tls_cert_fingerprint(c, DX_TLS_SHA512));
    size_t k = dx_tls_cert_ext_key_usage_count(c);
    for (size_t i = 0; i <= k; i++)
        str(dx_tls_cert_ext_key_usage(c, i));
    sink += dx_tls_cert_is_ca(c) + dx_tls_cert_is_self_issued(c);
    str(dx_tls_cert_subjectaltname(c));
    size_t a = dx_tls_cert_altname_count(c);
    for (size_t i = 0; i < a; i++) {
        const dx_tls_altname *an = dx_tls_cert_altname(c, i);
        if (!an || !an->value)
            abort();
        bytes((const uint8_t *)an->value, an->len + 1);
        if ((an->type == DX_TLS_ALTNAME_DNS || an->type == DX_TLS_ALTNAME_IP) &&
            strlen(an->value) == an->len)
            identity(an->value, c);
    }
    if (dx_tls_cert_altname(c, a))
        abort();
    size_t ia = dx_tls_cert_info_access_count(c);
    for (size_t i = 0; i < ia; i++) {
        const dx_tls_access *ac = dx_tls_cert_info_access(c, i);
        if (!ac)
            abort();
        str(ac->method);
        bytes((const uint8_t *)ac->location.value, ac->location.len + 1);
    }
    if (dx_tls_cert_info_access(c, ia))
        abort();
    str(dx_tls_cert_key_type(c));
    sink += (size_t)dx_tls_cert_key_bits(c);
    str(dx_tls_cert_modulus(c));
    str(dx_tls_cert_exponent(c));
    str(dx_tls_cert_asn1_curve(c));
    str(dx_tls_cert_nist_curve(c));
    if (dx_tls_cert_pubkey(c, &p, &n) != 0)
        abort();
    bytes(p, n);
    if (dx_tls_cert_spki(c, &p, &n) != 0)
        abort();
    bytes(p, n);
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++)
        identity(hosts[i], c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dx_tls_cert *c = NULL;
    dx_error *err = NULL;
    int rc = dx_tls_cert_from_der(data, size, &c, &err);
    if ((rc == 0) != (c != NULL) || (rc == 0 && err) || (rc != 0 && size && !err))
        abort();
    if (c)
        read_all(c);
    dx_tls_cert_free(c);
    dx_error_free(err);
    c = NULL;
    err = NULL;
    rc = dx_tls_cert_from_pem(data, size, &c, &err);
    if ((rc == 0) != (c != NULL))
        abort();
    if (c)
        read_all(c);
    dx_tls_cert_free(c);
    dx_error_free(err);
    return 0;
}
