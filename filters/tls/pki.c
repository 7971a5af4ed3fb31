/*
 * Throw-away certificates made in memory with OpenSSL 3 (include/duplex/pki.h).
 */
#include "config.h"

#include <duplex/pki.h>

#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "alloc.h"

struct dx_pki_cert {
    X509 *x509;
    EVP_PKEY *key;
    bool is_ca;
    char *cert_pem;
    char *key_pem;
    uint8_t *der;
    size_t der_len;
};

/* Fails with code, and an error object carrying OpenSSL's reason. */
static int fail(dx_error **err, int code, const char *what)
{
    if (err) {
        unsigned long e = ERR_peek_last_error();
        char reason[256] = "";
        if (e)
            ERR_error_string_n(e, reason, sizeof(reason));
        *err = dx_error_new(code, NULL, "pki", "%s", what);
        if (*err && reason[0])
            dx_error_set_detail(*err, "%s", reason);
    }
    ERR_clear_error();
    return code;
}

static EVP_PKEY *make_key(dx_pki_key_type type)
{
    switch (type) {
    case DX_PKI_EC_P256:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    case DX_PKI_EC_P384:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    case DX_PKI_RSA_2048:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    case DX_PKI_ED25519:
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    }
    return NULL;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (!ext)
        return 0;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* Appends one GENERAL_NAME of type (GEN_DNS, GEN_URI) holding text. */
static int add_ia5_name(GENERAL_NAMES *names, int type, const char *text)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    if (!gn || !s || !ASN1_STRING_set(s, text, (int)strlen(text))) {
        GENERAL_NAME_free(gn);
        ASN1_IA5STRING_free(s);
        return 0;
    }
    GENERAL_NAME_set0_value(gn, type, s);
    if (!sk_GENERAL_NAME_push(names, gn)) {
        GENERAL_NAME_free(gn);
        return 0;
    }
    return 1;
}

static int add_ip_name(GENERAL_NAMES *names, const char *text)
{
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(text);
    if (!ip)
        return 0;
    GENERAL_NAME *gn = GENERAL_NAME_new();
    if (!gn) {
        ASN1_OCTET_STRING_free(ip);
        return 0;
    }
    GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
    if (!sk_GENERAL_NAME_push(names, gn)) {
        GENERAL_NAME_free(gn);
        return 0;
    }
    return 1;
}

/* subjectAltName from the three lists; 1 also when there are none. */
static int add_alt_names(X509 *x, const dx_pki_opts *o, bool *bad_name)
{
    if (!o->dns_names && !o->ip_addresses && !o->uris)
        return 1;
    GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
    int ok = names != NULL;
    for (const char *const *p = o->dns_names; ok && p && *p; p++)
        ok = add_ia5_name(names, GEN_DNS, *p);
    for (const char *const *p = o->uris; ok && p && *p; p++)
        ok = add_ia5_name(names, GEN_URI, *p);
    for (const char *const *p = o->ip_addresses; ok && p && *p; p++)
        if (!(ok = add_ip_name(names, *p)))
            *bad_name = true;
    if (ok && sk_GENERAL_NAME_num(names) > 0)
        ok = X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, 0);
    GENERAL_NAMES_free(names);
    return ok;
}

static char *pem_of(int (*write)(BIO *, const void *), const void *obj)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (b && write(b, obj) > 0) {
        char *data;
        long n = BIO_get_mem_data(b, &data);
        out = dx_malloc((size_t)n + 1);
        if (out) {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(b);
    return out;
}

static int write_cert(BIO *b, const void *x) { return PEM_write_bio_X509(b, (X509 *)x); }

static int write_key(BIO *b, const void *k)
{
    return PEM_write_bio_PrivateKey(b, (EVP_PKEY *)k, NULL, NULL, 0, NULL, NULL);
}

static int set_serial(X509 *x)
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return 0;
    raw[0] &= 0x7f; /* positive */
    BIGNUM *bn = BN_bin2bn(raw, sizeof(raw), NULL);
    int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

int dx_pki_issue(const dx_pki_cert *issuer, const dx_pki_opts *opts,
                 dx_pki_cert **out, dx_error **err)
{
    static const dx_pki_opts defaults = {0};
    if (err)
        *err = NULL;
    if (!out)
        return fail(err, DX_EINVAL, "no place for the certificate");
    *out = NULL;
    const dx_pki_opts *o = opts ? opts : &defaults;
    if ((unsigned)o->key_type > DX_PKI_EC_P384)
        return fail(err, DX_EINVAL, "unknown key type");
    if (issuer && !issuer->is_ca)
        return fail(err, DX_EINVAL, "the issuer is not a CA");

    dx_pki_cert *c = dx_calloc(1, sizeof(*c));
    if (!c)
        return fail(err, DX_ENOMEM, "out of memory");
    dx_live_inc();
    c->is_ca = o->is_ca;
    int code = DX_EIO;
    const char *what = "key generation failed";
    bool bad_name = false;
    c->key = make_key(o->key_type);
    c->x509 = X509_new();
    if (!c->key || !c->x509)
        goto failed;

    X509 *x = c->x509;
    X509 *ix = issuer ? issuer->x509 : x;
    EVP_PKEY *ikey = issuer ? issuer->key : c->key;
    what = "certificate construction failed";
    long nb = o->not_before ? (long)o->not_before : -60;
    long na = o->not_after ? (long)o->not_after : 86400;
    if (!X509_set_version(x, X509_VERSION_3) || !set_serial(x) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), nb) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), na) ||
        !X509_set_pubkey(x, c->key))
        goto failed;
    X509_NAME *name = X509_get_subject_name(x);
    if (o->common_name &&
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                    (const unsigned char *)o->common_name, -1,
                                    -1, 0)) {
        code = DX_EINVAL;
        what = "the common name was refused";
        goto failed;
    }
    if (!X509_set_issuer_name(x, X509_get_subject_name(ix)))
        goto failed;

    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ix, x, NULL, NULL, 0);
    const char *usage = o->is_ca ? "critical,keyCertSign,cRLSign"
                        : o->key_type == DX_PKI_RSA_2048
                            ? "critical,digitalSignature,keyEncipherment"
                            : "critical,digitalSignature";
    char eku[64] = "";
    if (o->ext_key_usage & DX_PKI_EKU_SERVER)
        strcat(eku, "serverAuth");
    if (o->ext_key_usage & DX_PKI_EKU_CLIENT)
        strcat(eku, eku[0] ? ",clientAuth" : "clientAuth");
    if (!add_ext(x, &ctx, NID_basic_constraints,
                 o->is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE") ||
        !add_ext(x, &ctx, NID_key_usage, usage) ||
        !add_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
        (issuer && !add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always")) ||
        (eku[0] && !add_ext(x, &ctx, NID_ext_key_usage, eku)) ||
        (o->must_staple && !add_ext(x, &ctx, NID_tlsfeature, "status_request")))
        goto failed;
    if (!add_alt_names(x, o, &bad_name)) {
        if (bad_name) {
            code = DX_EINVAL;
            what = "an IP address was refused";
        }
        goto failed;
    }
    /* Ed25519 signs without a separate digest. */
    const EVP_MD *md = EVP_PKEY_get_id(ikey) == EVP_PKEY_ED25519 ? NULL
                                                                 : EVP_sha256();
    what = "signing failed";
    if (X509_sign(x, ikey, md) <= 0)
        goto failed;

    what = "encoding failed";
    c->cert_pem = pem_of(write_cert, x);
    c->key_pem = pem_of(write_key, c->key);
    int n = i2d_X509(x, NULL);
    if (n > 0 && (c->der = dx_malloc((size_t)n)) != NULL) {
        unsigned char *p = c->der;
        c->der_len = (size_t)i2d_X509(x, &p);
    }
    if (!c->cert_pem || !c->key_pem || !c->der)
        goto failed;
    *out = c;
    return 0;

failed:
    dx_pki_cert_free(c);
    return fail(err, code, what);
}

const char *dx_pki_cert_pem(const dx_pki_cert *c) { return c ? c->cert_pem : NULL; }

const char *dx_pki_key_pem(const dx_pki_cert *c) { return c ? c->key_pem : NULL; }

int dx_pki_cert_der(const dx_pki_cert *c, const uint8_t **der, size_t *len)
{
    if (!c || !der || !len)
        return DX_EINVAL;
    *der = c->der;
    *len = c->der_len;
    return 0;
}

void dx_pki_cert_free(dx_pki_cert *c)
{
    if (!c)
        return;
    X509_free(c->x509);
    EVP_PKEY_free(c->key);
    dx_free(c->cert_pem);
    if (c->key_pem) {
        OPENSSL_cleanse(c->key_pem, strlen(c->key_pem));
        dx_free(c->key_pem);
    }
    dx_free(c->der);
    dx_free(c);
    dx_live_dec();
}

/* ---- OCSP responses ------------------------------------------------------- */

/* A time offset from now (seconds) as an ASN1_TIME, or NULL. */
static ASN1_TIME *time_from_now(int64_t secs)
{
    return X509_time_adj_ex(NULL, (int)(secs / 86400), (long)(secs % 86400), NULL);
}

int dx_pki_ocsp_response(const dx_pki_cert *issuer, const dx_pki_cert *cert,
                         dx_pki_ocsp_status status, int64_t this_update,
                         int64_t next_update, uint8_t **der, size_t *len)
{
    if (der)
        *der = NULL;
    if (len)
        *len = 0;
    if (!issuer || !cert || !der || !len || !issuer->is_ca ||
        (unsigned)status > DX_PKI_OCSP_UNKNOWN)
        return DX_EINVAL;
    static const int codes[] = {V_OCSP_CERTSTATUS_GOOD, V_OCSP_CERTSTATUS_REVOKED,
                                V_OCSP_CERTSTATUS_UNKNOWN};
    int rc = DX_EIO;
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    OCSP_RESPONSE *resp = NULL;
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, cert->x509, issuer->x509);
    ASN1_TIME *thisupd = time_from_now(this_update);
    ASN1_TIME *nextupd = next_update == DX_PKI_OCSP_NO_NEXT_UPDATE
                             ? NULL
                             : time_from_now(next_update);
    if (!bs || !id || !thisupd || (next_update != DX_PKI_OCSP_NO_NEXT_UPDATE && !nextupd))
        goto done;
    if (!OCSP_basic_add1_status(bs, id, codes[status], -1,
                                status == DX_PKI_OCSP_REVOKED ? thisupd : NULL,
                                thisupd, nextupd))
        goto done;
    /* Ed25519 signs without a separate digest. */
    const EVP_MD *md = EVP_PKEY_get_id(issuer->key) == EVP_PKEY_ED25519 ? NULL
                                                                       : EVP_sha256();
    if (!OCSP_basic_sign(bs, issuer->x509, issuer->key, md, NULL,
                         OCSP_NOCERTS | OCSP_RESPID_KEY))
        goto done;
    resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
    int n = resp ? i2d_OCSP_RESPONSE(resp, NULL) : -1;
    if (n <= 0)
        goto done;
    unsigned char *buf = dx_malloc((size_t)n), *p = buf;
    if (!buf) {
        rc = DX_ENOMEM;
        goto done;
    }
    if (i2d_OCSP_RESPONSE(resp, &p) != n) {
        dx_free(buf);
        goto done;
    }
    dx_live_inc();
    *der = buf;
    *len = (size_t)n;
    rc = 0;
done:
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(bs);
    OCSP_CERTID_free(id);
    ASN1_TIME_free(thisupd);
    ASN1_TIME_free(nextupd);
    ERR_clear_error();
    return rc;
}

void dx_pki_ocsp_free(uint8_t *der)
{
    if (!der)
        return;
    dx_free(der);
    dx_live_dec();
}
