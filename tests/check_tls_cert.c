/*
 * Certificate objects and the server identity check
 * (include/duplex/tls_cert.h). Fields are compared with what the test works
 * out through OpenSSL's own calls; certificates with unusual contents are
 * built here with OpenSSL's X509 API, all on one key, so the suite stays
 * fast. IDs are those of the checklist (X-01..X-13, G-01).
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "harness.h"

#define ALTNAME_PREFIX "Hostname/IP does not match certificate's altnames: "

/* ---- certificates built here ---- */

/* The key every certificate built here certifies and is signed with. */
static EVP_PKEY *key;

static void key_setup(void)
{
    key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ck_assert_ptr_nonnull(key);
}

static void key_teardown(void)
{
    EVP_PKEY_free(key);
    key = NULL;
}

/* Adds "KEY=value" attributes (raw UTF-8, no length limits) to a name. */
static void add_attrs(X509_NAME *n, const char *const *attrs, size_t count)
{
    for (size_t i = 0; i < count && attrs[i]; i++) {
        const char *eq = strchr(attrs[i], '=');
        char field[64];
        ck_assert_ptr_nonnull(eq);
        snprintf(field, sizeof(field), "%.*s", (int)(eq - attrs[i]), attrs[i]);
        ck_assert_int_eq(X509_NAME_add_entry_by_txt(n, field, V_ASN1_UTF8STRING,
                                                    (const unsigned char *)eq + 1,
                                                    (int)strlen(eq + 1), -1, 0),
                         1);
    }
}

/* A certificate valid for an hour, self-issued, with these subject
 * attributes (NULL-terminated list, or NULL). */
static X509 *new_x509(const char *const *subject, size_t count)
{
    X509 *x = X509_new();
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(X509_set_version(x, X509_VERSION_3), 1);
    ck_assert_int_eq(ASN1_INTEGER_set(X509_get_serialNumber(x), 0x1234), 1);
    ck_assert_ptr_nonnull(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    ck_assert_ptr_nonnull(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    ck_assert_int_eq(X509_set_pubkey(x, key), 1);
    if (subject)
        add_attrs(X509_get_subject_name(x), subject, count);
    ck_assert_int_eq(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
    return x;
}

/* Signs x, frees it, and reads its DER back as a certificate object. */
static dx_tls_cert *finish(X509 *x)
{
    ck_assert_int_gt(X509_sign(x, key, EVP_sha256()), 0);
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    ck_assert_int_gt(n, 0);
    dx_tls_cert *c = NULL;
    dx_error *err = NULL;
    ck_assert_int_eq(dx_tls_cert_from_der(der, (size_t)n, &c, &err), 0);
    ck_assert_ptr_null(err);
    OPENSSL_free(der);
    X509_free(x);
    return c;
}

static GENERAL_NAME *gn_string(int type, const void *s, size_t n)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *v = ASN1_IA5STRING_new();
    ck_assert_int_eq(ASN1_STRING_set(v, s, (int)n), 1);
    GENERAL_NAME_set0_value(gn, type, v);
    return gn;
}

static GENERAL_NAME *gn_ip_raw(const void *bytes, size_t n)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_OCTET_STRING *v = ASN1_OCTET_STRING_new();
    ck_assert_int_eq(ASN1_OCTET_STRING_set(v, bytes, (int)n), 1);
    GENERAL_NAME_set0_value(gn, GEN_IPADD, v);
    return gn;
}

static GENERAL_NAME *gn_ip(const char *text)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_OCTET_STRING *v = a2i_IPADDRESS(text);
    ck_assert_ptr_nonnull(v);
    GENERAL_NAME_set0_value(gn, GEN_IPADD, v);
    return gn;
}

static GENERAL_NAME *gn_other(const char *oid, int string_type, const char *s)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_TYPE *v = ASN1_TYPE_new();
    ASN1_STRING *str = ASN1_STRING_type_new(string_type);
    ck_assert_int_eq(ASN1_STRING_set(str, s, -1), 1);
    ASN1_TYPE_set(v, string_type, str);
    ck_assert_int_eq(GENERAL_NAME_set0_othername(gn, OBJ_txt2obj(oid, 1), v), 1);
    return gn;
}

static void add_altnames(X509 *x, GENERAL_NAMES *names)
{
    ck_assert_int_eq(X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, 0), 1);
    GENERAL_NAMES_free(names);
}

/* An extension holding exactly these DER bytes. */
static void add_raw_ext(X509 *x, int nid, const unsigned char *der, size_t n)
{
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    ck_assert_int_eq(ASN1_OCTET_STRING_set(os, der, (int)n), 1);
    X509_EXTENSION *ext = X509_EXTENSION_create_by_NID(NULL, nid, 0, os);
    ck_assert_ptr_nonnull(ext);
    ck_assert_int_eq(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(os);
}

static X509 *parse_pem(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    ck_assert_ptr_nonnull(x);
    return x;
}

static dx_tls_cert *from_pki(const dx_pki_cert *p)
{
    dx_tls_cert *c = NULL;
    const char *pem = dx_pki_cert_pem(p);
    ck_assert_int_eq(dx_tls_cert_from_pem(pem, strlen(pem), &c, NULL), 0);
    return c;
}

/* Colon-separated upper-case hex, as Node writes fingerprints. */
static void colon_hex(const unsigned char *p, size_t n, char *out)
{
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        sprintf(out + strlen(out), i ? ":%02X" : "%02X", p[i]);
}

static void assert_bytes(const uint8_t *got, size_t got_len, const void *want,
                         size_t want_len)
{
    ck_assert_uint_eq(got_len, want_len);
    ck_assert_int_eq(memcmp(got, want, want_len), 0);
}

/* The DER SubjectPublicKeyInfo of a key, through OpenSSL. */
static void assert_spki(const dx_tls_cert *c, EVP_PKEY *k)
{
    unsigned char *spki = NULL;
    int n = i2d_PUBKEY(k, &spki);
    const uint8_t *p;
    size_t len;
    ck_assert_int_eq(dx_tls_cert_spki(c, &p, &len), 0);
    assert_bytes(p, len, spki, (size_t)n);
    OPENSSL_free(spki);
}

static void assert_altname(const dx_tls_cert *c, size_t i, dx_tls_altname_type type,
                           const char *value, size_t len)
{
    const dx_tls_altname *a = dx_tls_cert_altname(c, i);
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(a->type, type);
    ck_assert_uint_eq(a->len, len);
    ck_assert_int_eq(memcmp(a->value, value, len), 0);
    ck_assert_int_eq(a->value[len], '\0');
}

/* ---- a test PKI made with dx_pki ---- */

static dx_pki_cert *ca, *rsa, *ec256, *ec384, *ed;
static const char *const dns[] = {"www.example.com", "*.example.net", NULL};
static const char *const ips[] = {"127.0.0.1", "::1", NULL};

static dx_pki_cert *leaf(dx_pki_key_type type)
{
    dx_pki_opts o = {.key_type = type, .common_name = "www.example.com",
                     .dns_names = dns, .ip_addresses = ips,
                     .ext_key_usage = DX_PKI_EKU_SERVER | DX_PKI_EKU_CLIENT};
    dx_pki_cert *c;
    ck_assert_int_eq(dx_pki_issue(ca, &o, &c, NULL), 0);
    return c;
}

static void pki_setup(void)
{
    dx_pki_opts co = {.common_name = "Test CA", .is_ca = true};
    ck_assert_int_eq(dx_pki_issue(NULL, &co, &ca, NULL), 0);
    rsa = leaf(DX_PKI_RSA_2048);
    ec256 = leaf(DX_PKI_EC_P256);
    ec384 = leaf(DX_PKI_EC_P384);
    ed = leaf(DX_PKI_ED25519);
}

static void pki_teardown(void)
{
    dx_pki_cert_free(rsa);
    dx_pki_cert_free(ec256);
    dx_pki_cert_free(ec384);
    dx_pki_cert_free(ed);
    dx_pki_cert_free(ca);
}

/* ---- fields ---- */

/* ..X-09, X-12: an RSA leaf, field by field. */
START_TEST(rsa_certificate_fields_match_openssl)
{
    size_t base = h_alloc_live();
    dx_tls_cert *c = from_pki(rsa);
    X509 *x = parse_pem(dx_pki_cert_pem(rsa));

    /* X-01 raw: the certificate's own DER */
    const uint8_t *der, *p;
    size_t der_len, len;
    ck_assert_int_eq(dx_pki_cert_der(rsa, &der, &der_len), 0);
    ck_assert_int_eq(dx_tls_cert_der(c, &p, &len), 0);
    assert_bytes(p, len, der, der_len);
    ck_assert_int_eq(X509_cmp(dx_tls_cert_openssl(c), x), 0);

    /* */
    ck_assert_uint_eq(dx_tls_name_count(dx_tls_cert_subject(c)), 1);
    ck_assert_str_eq(dx_tls_name_get(dx_tls_cert_subject(c), "CN", 0), "www.example.com");
    ck_assert_str_eq(dx_tls_name_get(dx_tls_cert_issuer(c), "CN", 0), "Test CA");

    /* X-05 serial */
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = BN_bn2hex(bn);
    ck_assert_str_eq(dx_tls_cert_serial(c), hex);
    OPENSSL_free(hex);
    BN_free(bn);

    /* fingerprints */
    const EVP_MD *mds[] = {EVP_sha1(), EVP_sha256(), EVP_sha512()};
    const size_t lengths[] = {59, 95, 191};
    for (int i = 0; i < 3; i++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n;
        char want[EVP_MAX_MD_SIZE * 3 + 1];
        ck_assert_int_eq(X509_digest(x, mds[i], md, &n), 1);
        colon_hex(md, n, want);
        ck_assert_str_eq(dx_tls_cert_fingerprint(c, (dx_tls_digest)i), want);
        ck_assert_uint_eq(strlen(want), lengths[i]);
    }
    ck_assert_ptr_null(dx_tls_cert_fingerprint(c, (dx_tls_digest)3));

    /* X-04 validity: Node's text and seconds since the epoch */
    BIO *b = BIO_new(BIO_s_mem());
    char *text;
    ASN1_TIME_print(b, X509_get0_notBefore(x));
    long n = BIO_get_mem_data(b, &text);
    ck_assert_int_eq(strncmp(dx_tls_cert_valid_from(c), text, (size_t)n), 0);
    ck_assert_uint_eq(strlen(dx_tls_cert_valid_from(c)), (size_t)n);
    BIO_free(b);
    ck_assert_int_eq(strcmp(dx_tls_cert_valid_to(c) + strlen(dx_tls_cert_valid_to(c)) - 4,
                            " GMT"), 0);
    int64_t nb, na;
    ck_assert_int_eq(dx_tls_cert_validity(c, &nb, &na), 0);
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    int days, secs;
    ck_assert_int_eq(ASN1_TIME_diff(&days, &secs, epoch, X509_get0_notBefore(x)), 1);
    ck_assert_int_eq(nb, (int64_t)days * 86400 + secs);
    ck_assert_int_eq(na - nb, 86400 + 60);
    ASN1_TIME_free(epoch);

    /* X-08 extended key usage */
    ck_assert_uint_eq(dx_tls_cert_ext_key_usage_count(c), 2);
    ck_assert_str_eq(dx_tls_cert_ext_key_usage(c, 0), "1.3.6.1.5.5.7.3.1");
    ck_assert_str_eq(dx_tls_cert_ext_key_usage(c, 1), "1.3.6.1.5.5.7.3.2");
    ck_assert_ptr_null(dx_tls_cert_ext_key_usage(c, 2));

    /* X-09 alternative names, as a string and one by one */
    ck_assert_str_eq(dx_tls_cert_subjectaltname(c),
                     "DNS:www.example.com, DNS:*.example.net, "
                     "IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
    ck_assert_uint_eq(dx_tls_cert_altname_count(c), 4);
    assert_altname(c, 0, DX_TLS_ALTNAME_DNS, "www.example.com", 15);
    assert_altname(c, 1, DX_TLS_ALTNAME_DNS, "*.example.net", 13);
    assert_altname(c, 2, DX_TLS_ALTNAME_IP, "127.0.0.1", 9);
    assert_altname(c, 3, DX_TLS_ALTNAME_IP, "::1", 3);
    ck_assert_ptr_null(dx_tls_cert_altname(c, 4));
    ck_assert_uint_eq(dx_tls_cert_info_access_count(c), 0);

    /* X-12 the RSA key */
    EVP_PKEY *k = X509_get0_pubkey(x);
    BIGNUM *mod = NULL;
    ck_assert_int_eq(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &mod), 1);
    hex = BN_bn2hex(mod);
    ck_assert_str_eq(dx_tls_cert_modulus(c), hex);
    ck_assert_uint_eq(strlen(dx_tls_cert_modulus(c)) * 4, 2048);
    OPENSSL_free(hex);
    BN_free(mod);
    ck_assert_str_eq(dx_tls_cert_exponent(c), "0x10001");
    ck_assert_str_eq(dx_tls_cert_key_type(c), "rsa");
    ck_assert_int_eq(dx_tls_cert_key_bits(c), 2048);
    ck_assert_ptr_null(dx_tls_cert_asn1_curve(c));
    ck_assert_ptr_null(dx_tls_cert_nist_curve(c));
    unsigned char *spki = NULL;
    int spki_len = i2d_PUBKEY(k, &spki);
    ck_assert_int_eq(dx_tls_cert_pubkey(c, &p, &len), 0);
    assert_bytes(p, len, spki, (size_t)spki_len);
    OPENSSL_free(spki);
    assert_spki(c, k);

    ck_assert(!dx_tls_cert_is_ca(c));
    ck_assert(!dx_tls_cert_is_self_issued(c));
    X509_free(x);
    dx_tls_cert_free(c);

    c = from_pki(ca);
    ck_assert(dx_tls_cert_is_ca(c));
    ck_assert(dx_tls_cert_is_self_issued(c));
    ck_assert_ptr_null(dx_tls_cert_subjectaltname(c));
    ck_assert_uint_eq(dx_tls_cert_altname_count(c), 0);
    ck_assert_uint_eq(dx_tls_cert_ext_key_usage_count(c), 0);
    dx_tls_cert_free(c);
    ck_assert_uint_eq(h_alloc_live(), base);
}
END_TEST

/* EC keys name their curve and give the point as pubkey. */
START_TEST(ec_certificate_fields_match_openssl)
{
    static const struct {
        const char *asn1, *nist;
        int bits;
        size_t point;
    } want[] = {{"prime256v1", "P-256", 256, 65}, {"secp384r1", "P-384", 384, 97}};
    size_t base = h_alloc_live();
    dx_pki_cert *pc = _i == 0 ? ec256 : ec384;
    dx_tls_cert *c = from_pki(pc);
    X509 *x = parse_pem(dx_pki_cert_pem(pc));
    EVP_PKEY *k = X509_get0_pubkey(x);

    ck_assert_str_eq(dx_tls_cert_key_type(c), "ec");
    ck_assert_int_eq(dx_tls_cert_key_bits(c), want[_i].bits);
    ck_assert_int_eq(dx_tls_cert_key_bits(c), EVP_PKEY_get_bits(k));
    ck_assert_str_eq(dx_tls_cert_asn1_curve(c), want[_i].asn1);
    ck_assert_str_eq(dx_tls_cert_nist_curve(c), want[_i].nist);
    ck_assert_ptr_null(dx_tls_cert_modulus(c));
    ck_assert_ptr_null(dx_tls_cert_exponent(c));

    unsigned char point[128];
    size_t point_len;
    ck_assert_int_eq(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                                     point, sizeof(point), &point_len),
                     1);
    const uint8_t *p;
    size_t len;
    ck_assert_int_eq(dx_tls_cert_pubkey(c, &p, &len), 0);
    assert_bytes(p, len, point, point_len);
    ck_assert_uint_eq(len, want[_i].point);
    ck_assert_uint_eq(p[0], 0x04);
    assert_spki(c, k);
    X509_free(x);
    dx_tls_cert_free(c);
    ck_assert_uint_eq(h_alloc_live(), base);
}
END_TEST

START_TEST(ed25519_certificate_has_its_type_and_bits_and_no_node_pubkey)
{
    size_t base = h_alloc_live();
    dx_tls_cert *c = from_pki(ed);
    X509 *x = parse_pem(dx_pki_cert_pem(ed));
    EVP_PKEY *k = X509_get0_pubkey(x);
    ck_assert_str_eq(dx_tls_cert_key_type(c), "ed25519");
    ck_assert_int_eq(dx_tls_cert_key_bits(c), 256);
    ck_assert_int_eq(dx_tls_cert_key_bits(c), EVP_PKEY_get_bits(k));
    ck_assert_ptr_null(dx_tls_cert_modulus(c));
    ck_assert_ptr_null(dx_tls_cert_asn1_curve(c));
    const uint8_t *p = (const uint8_t *)"x";
    size_t len = 1;
    ck_assert_int_eq(dx_tls_cert_pubkey(c, &p, &len), 0);
    ck_assert_ptr_null(p);
    ck_assert_uint_eq(len, 0);
    assert_spki(c, k);
    ck_assert_int_eq(dx_tls_cert_spki(c, &p, &len), 0);
    ck_assert_uint_eq(len, 44);
    X509_free(x);
    dx_tls_cert_free(c);
    ck_assert_uint_eq(h_alloc_live(), base);
}
END_TEST

/* order, repeated keys, UTF-8 from any string type, unknown
 * attributes by OID, values with a NUL byte. */
START_TEST(names_keep_order_repeats_and_utf8)
{
    static const char *const subject[] = {
        "C=HU", "O=Example", "OU=One", "OU=Two",
        "CN=\xc3\x81" "d\xc3\xa1" "m Lippai", "emailAddress=adam@example.com",
        "1.2.3.4.5=private",
    };
    X509 *x = new_x509(subject, 7);
    /* "Ádám" as a BMPString (UTF-16BE) */
    static const unsigned char bmp[] = {0, 0xc1, 0, 'd', 0, 0xe1, 0, 'm'};
    ck_assert_int_eq(X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_localityName,
                                                V_ASN1_BMPSTRING, bmp, sizeof(bmp), -1, 0),
                     1);
    ck_assert_int_eq(X509_NAME_add_entry_by_NID(X509_get_subject_name(x),
                                                NID_pseudonym, V_ASN1_UTF8STRING,
                                                (const unsigned char *)"a\0b", 3, -1, 0),
                     1);
    static const char *const issuer[] = {"O=Issuer Org", "CN=Issuer"};
    X509_NAME *in = X509_NAME_new();
    add_attrs(in, issuer, 2);
    ck_assert_int_eq(X509_set_issuer_name(x, in), 1);
    X509_NAME_free(in);
    dx_tls_cert *c = finish(x);

    const dx_tls_name *s = dx_tls_cert_subject(c);
    static const char *const keys[] = {"C", "O", "OU", "OU", "CN", "emailAddress",
                                       "1.2.3.4.5", "L", "pseudonym"};
    static const char *const values[] = {
        "HU", "Example", "One", "Two", "\xc3\x81" "d\xc3\xa1" "m Lippai",
        "adam@example.com", "private", "\xc3\x81" "d\xc3\xa1" "m", "a"};
    ck_assert_uint_eq(dx_tls_name_count(s), 9);
    for (size_t i = 0; i < 9; i++) {
        const char *k, *v;
        size_t len;
        ck_assert_int_eq(dx_tls_name_entry(s, i, &k, &v, &len), 0);
        ck_assert_str_eq(k, keys[i]);
        ck_assert_str_eq(v, values[i]);
        ck_assert_uint_eq(len, i == 8 ? 3 : strlen(values[i]));
    }
    const char *v;
    size_t len;
    ck_assert_int_eq(dx_tls_name_entry(s, 8, NULL, &v, &len), 0);
    ck_assert_int_eq(memcmp(v, "a\0b", 4), 0);
    ck_assert_int_eq(dx_tls_name_entry(s, 9, NULL, NULL, NULL), DX_EINVAL);
    ck_assert_uint_eq(dx_tls_name_key_count(s, "OU"), 2);
    ck_assert_uint_eq(dx_tls_name_key_count(s, "ou"), 0);
    ck_assert_str_eq(dx_tls_name_get(s, "OU", 0), "One");
    ck_assert_str_eq(dx_tls_name_get(s, "OU", 1), "Two");
    ck_assert_ptr_null(dx_tls_name_get(s, "OU", 2));
    ck_assert_str_eq(dx_tls_name_get(s, "CN", 0), "\xc3\x81" "d\xc3\xa1" "m Lippai");
    ck_assert_ptr_null(dx_tls_name_get(s, "ST", 0));

    const dx_tls_name *is = dx_tls_cert_issuer(c);
    ck_assert_uint_eq(dx_tls_name_count(is), 2);
    ck_assert_str_eq(dx_tls_name_get(is, "O", 0), "Issuer Org");
    ck_assert_str_eq(dx_tls_name_get(is, "CN", 0), "Issuer");
    ck_assert(!dx_tls_cert_is_self_issued(c));
    dx_tls_cert_free(c);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

/* A certificate with a name of every kind OpenSSL can write, several of
 * them ones Node.js escapes, and authorityInfoAccess. */
static X509 *rich_x509(void)
{
    X509 *x = new_x509(NULL, 0);
    GENERAL_NAMES *g = sk_GENERAL_NAME_new_null();
    static const unsigned char v6[16] = {0xfe, 0x80, [15] = 1};
    X509_NAME *dir = X509_NAME_new();
    static const char *const dir_attrs[] = {"CN=x", "O=y"};
    add_attrs(dir, dir_attrs, 2);
    X509_NAME *dir_utf8 = X509_NAME_new();
    static const char *const dir_utf8_attrs[] = {"CN=\xc3\x81" "d\xc3\xa1" "m"};
    add_attrs(dir_utf8, dir_utf8_attrs, 1);
    GENERAL_NAME *rid = GENERAL_NAME_new();
    GENERAL_NAME_set0_value(rid, GEN_RID, OBJ_txt2obj("1.2.3.4", 1));
    GENERAL_NAME *dn = GENERAL_NAME_new(), *dn8 = GENERAL_NAME_new();
    GENERAL_NAME_set0_value(dn, GEN_DIRNAME, dir);
    GENERAL_NAME_set0_value(dn8, GEN_DIRNAME, dir_utf8);
    GENERAL_NAME *all[] = {
        gn_string(GEN_DNS, "good.com\0evil.com", 17),
        gn_string(GEN_DNS, "a,b", 3),
        gn_string(GEN_DNS, "q\"b\\'", 5),
        gn_string(GEN_DNS, "\xff\x1f", 2),
        gn_string(GEN_EMAIL, "x@y.com", 7),
        gn_string(GEN_URI, "http://h/p?q=1", 14),
        gn_ip_raw(v6, 16),
        gn_ip_raw("\x01\x02\x03\x04\x05", 5),
        rid,
        dn,
        dn8,
        gn_other("1.3.6.1.4.1.311.20.2.3", V_ASN1_UTF8STRING, "user@example.com"),
        gn_other("1.3.6.1.4.1.311.20.2.3", V_ASN1_UTF8STRING, "a,\xc3\xa1"),
        gn_other("1.3.6.1.5.5.7.8.7", V_ASN1_IA5STRING, "_imap.example.com"),
        gn_other("1.2.3.4.5", V_ASN1_UTF8STRING, "private"),
        gn_other("1.3.6.1.4.1.311.20.2.3", V_ASN1_IA5STRING, "wrong type"),
        gn_string(GEN_DNS, "it's", 4),
        gn_other("1.3.6.1.4.1.311.20.2.3", V_ASN1_UTF8STRING, "tab\there"),
    };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        ck_assert_int_gt(sk_GENERAL_NAME_push(g, all[i]), 0);
    add_altnames(x, g);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(
        NULL, NULL, NID_info_access,
        "OCSP;URI:http://ocsp.example.com/,caIssuers;URI:http://ca.example.com/ca.crt,"
        "OCSP;URI:http://ocsp2.example.com/");
    ck_assert_ptr_nonnull(ext);
    ck_assert_int_eq(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
    return x;
}

/* every kind of name, printed as Node prints it; names that could
 * break the list are JSON strings (CVE-2009-2408: never truncated). */
START_TEST(altnames_are_escaped_as_node_escapes_them)
{
    dx_tls_cert *c = finish(rich_x509());

    ck_assert_str_eq(dx_tls_cert_subjectaltname(c),
                     "DNS:\"good.com\\u0000evil.com\", "
                     "DNS:\"a\\u002cb\", "
                     "DNS:\"q\\\"b\\\\'\", "
                     "DNS:\"\\u00ff\\u001f\", "
                     "email:x@y.com, "
                     "URI:http://h/p?q=1, "
                     "IP Address:FE80:0:0:0:0:0:0:1, "
                     "IP Address:<invalid length=5>, "
                     "Registered ID:1.2.3.4, "
                     "DirName:\"O=y\\u002cCN=x\", "
                     "DirName:CN=\xc3\x81" "d\xc3\xa1" "m, "
                     "othername:UPN:user@example.com, "
                     "othername:\"UPN:a\\u002c\xc3\xa1\", "
                     "othername:SRVName:_imap.example.com, "
                     "othername:<unsupported>, "
                     "othername:<unsupported>, "
                     "DNS:\"it's\", "
                     "othername:\"UPN:tab\\u0009here\"");
    ck_assert_uint_eq(dx_tls_cert_altname_count(c), 18);
    assert_altname(c, 0, DX_TLS_ALTNAME_DNS, "good.com\0evil.com", 17);
    assert_altname(c, 1, DX_TLS_ALTNAME_DNS, "a,b", 3);
    assert_altname(c, 3, DX_TLS_ALTNAME_DNS, "\xff\x1f", 2);
    assert_altname(c, 4, DX_TLS_ALTNAME_EMAIL, "x@y.com", 7);
    assert_altname(c, 5, DX_TLS_ALTNAME_URI, "http://h/p?q=1", 14);
    assert_altname(c, 6, DX_TLS_ALTNAME_IP, "fe80::1", 7);
    assert_altname(c, 7, DX_TLS_ALTNAME_IP, "", 0);
    assert_altname(c, 8, DX_TLS_ALTNAME_RID, "1.2.3.4", 7);
    assert_altname(c, 9, DX_TLS_ALTNAME_DIRNAME, "O=y,CN=x", 8);
    assert_altname(c, 11, DX_TLS_ALTNAME_OTHER, "UPN:user@example.com", 20);
    assert_altname(c, 13, DX_TLS_ALTNAME_OTHER, "SRVName:_imap.example.com", 25);
    assert_altname(c, 14, DX_TLS_ALTNAME_OTHER, "<unsupported>", 13);
    assert_altname(c, 15, DX_TLS_ALTNAME_OTHER, "<unsupported>", 13);
    assert_altname(c, 17, DX_TLS_ALTNAME_OTHER, "UPN:tab\there", 12);
    dx_tls_cert_free(c);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

/* kinds OpenSSL cannot print, and an alternative-name extension
 * OpenSSL cannot read at all (a name of type 23, as in Node's
 * test-tls-cert-ext-encoding), leave a usable object; reading the
 * certificate leaves the caller's OpenSSL error queue alone. */
START_TEST(unusual_altname_types_do_not_break_the_object)
{
    static const char *const cn[] = {"CN=local.host"};
    /* x400Address [3] {}, ediPartyName [5] { partyName [1] UTF8 "x" },
     * dNSName "a.com" */
    static const unsigned char odd[] = {0x30, 0x10, 0xa3, 0x00, 0xa5, 0x05,
                                        0xa1, 0x03, 0x0c, 0x01, 'x', 0x82,
                                        0x05, 'a', '.', 'c', 'o', 'm'};
    X509 *x = new_x509(cn, 1);
    add_raw_ext(x, NID_subject_alt_name, odd, sizeof(odd));
    dx_tls_cert *c = finish(x);
    ck_assert_str_eq(dx_tls_cert_subjectaltname(c),
                     "X400Name:<unsupported>, EdiPartyName:<unsupported>, DNS:a.com");
    assert_altname(c, 0, DX_TLS_ALTNAME_X400, "<unsupported>", 13);
    assert_altname(c, 1, DX_TLS_ALTNAME_EDIPARTY, "<unsupported>", 13);
    ck_assert_int_eq(dx_tls_check_server_identity("a.com", c, NULL), 0);
    dx_tls_cert_free(c);

    static const unsigned char type23[] = {0x30, 0x0c, 0x97, 0x0a, 'l', 'o', 'c', 'a',
                                           'l', '.', 'h', 'o', 's', 't'};
    x = new_x509(cn, 1);
    add_raw_ext(x, NID_subject_alt_name, type23, sizeof(type23));
    ERR_raise_data(ERR_LIB_USER, 42, "the caller's own error");
    unsigned long mine = ERR_peek_last_error();
    c = finish(x);
    ck_assert_uint_eq(ERR_peek_error(), mine);
    ck_assert_uint_eq(ERR_peek_last_error(), mine);
    ERR_clear_error();
    ck_assert_ptr_null(dx_tls_cert_subjectaltname(c));
    ck_assert_uint_eq(dx_tls_cert_altname_count(c), 0);
    /* as in Node.js, a certificate without readable names falls back to
     * its CN */
    ck_assert_int_eq(dx_tls_check_server_identity("local.host", c, NULL), 0);
    dx_tls_cert_free(c);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

/* */
START_TEST(info_access_lists_methods_and_locations)
{
    dx_tls_cert *c = finish(rich_x509());
    static const char *const method[] = {"OCSP", "CA Issuers", "OCSP"};
    static const char *const uri[] = {"http://ocsp.example.com/", "http://ca.example.com/ca.crt",
                                      "http://ocsp2.example.com/"};
    ck_assert_uint_eq(dx_tls_cert_info_access_count(c), 3);
    for (size_t i = 0; i < 3; i++) {
        const dx_tls_access *a = dx_tls_cert_info_access(c, i);
        ck_assert_str_eq(a->method, method[i]);
        ck_assert_int_eq(a->location.type, DX_TLS_ALTNAME_URI);
        ck_assert_str_eq(a->location.value, uri[i]);
        ck_assert_uint_eq(a->location.len, strlen(uri[i]));
    }
    ck_assert_ptr_null(dx_tls_cert_info_access(c, 3));
    dx_tls_cert_free(c);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

/* Node's text for times of both ASN.1 types, and seconds before
 * 1970 and after 2038; a malformed time reads as Node shows it. */
START_TEST(validity_reads_as_node_prints_it)
{
    X509 *x = new_x509(NULL, 0);
    ck_assert_int_eq(ASN1_TIME_set_string(X509_getm_notBefore(x), "170814000000Z"), 1);
    ck_assert_int_eq(ASN1_TIME_set_string(X509_getm_notAfter(x), "21000101000000Z"), 1);
    dx_tls_cert *c = finish(x);
    ck_assert_str_eq(dx_tls_cert_valid_from(c), "Aug 14 00:00:00 2017 GMT");
    ck_assert_str_eq(dx_tls_cert_valid_to(c), "Jan  1 00:00:00 2100 GMT");
    int64_t nb, na;
    ck_assert_int_eq(dx_tls_cert_validity(c, &nb, &na), 0);
    ck_assert_int_eq(nb, 1502668800);
    ck_assert_int_eq(na, INT64_C(4102444800));
    ck_assert_int_eq(dx_tls_cert_validity(c, NULL, NULL), 0);
    dx_tls_cert_free(c);

    x = new_x509(NULL, 0);
    ck_assert_int_eq(ASN1_TIME_set_string(X509_getm_notBefore(x), "600229123456Z"), 1);
    c = finish(x);
    ck_assert_str_eq(dx_tls_cert_valid_from(c), "Feb 29 12:34:56 1960 GMT");
    ck_assert_int_eq(dx_tls_cert_validity(c, &nb, NULL), 0);
    ck_assert_int_eq(nb, -310476304);
    dx_tls_cert_free(c);

    x = new_x509(NULL, 0);
    ck_assert_int_eq(ASN1_STRING_set(X509_getm_notBefore(x), "ZZZZZZZZZZZZZ", 13), 1);
    c = finish(x);
    ck_assert_str_eq(dx_tls_cert_valid_from(c), "Bad time value");
    nb = na = 7;
    ck_assert_int_eq(dx_tls_cert_validity(c, &nb, &na), DX_EPROTO);
    ck_assert_int_eq(nb, 0);
    ck_assert_int_eq(na, 0);
    dx_tls_cert_free(c);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

/* Makes a certificate object from der with the n-th allocation failing,
 * for every n until one succeeds: each failure is DX_ENOMEM and leaks
 * nothing. Returns how many failed. */
static long shortage(const uint8_t *der, size_t len)
{
    size_t base = h_alloc_live();
    long failures = 0;
    for (long n = 0;; n++) {
        dx_error *err = NULL;
        dx_tls_cert *c = (dx_tls_cert *)&err;
        h_alloc_fail_from(n);
        int rc = dx_tls_cert_from_der(der, len, &c, &err);
        h_alloc_fail_from(-1);
        if (rc == 0) {
            ck_assert_ptr_null(err);
            dx_tls_cert_free(c);
            return failures;
        }
        failures++;
        ck_assert_int_eq(rc, DX_ENOMEM);
        ck_assert_ptr_null(c);
        dx_error_free(err);
        ck_assert_msg(h_alloc_live() == base, "n=%ld: %zu bytes leaked", n,
                      h_alloc_live() - base);
    }
}

/* The object keeps nothing of its input, owns its memory through the
 * library's allocator, and a shortage at any allocation fails cleanly. */
START_TEST(the_object_owns_its_memory_and_survives_shortage)
{
    size_t base = h_alloc_live();
    const uint8_t *der;
    size_t len;
    ck_assert_int_eq(dx_pki_cert_der(rsa, &der, &len), 0);
    uint8_t *copy = malloc(len);
    memcpy(copy, der, len);
    dx_tls_cert *c;
    ck_assert_int_eq(dx_tls_cert_from_der(copy, len, &c, NULL), 0);
    memset(copy, 0, len);
    free(copy);
    ck_assert_uint_gt(h_alloc_live(), base);
    ck_assert_str_eq(dx_tls_name_get(dx_tls_cert_subject(c), "CN", 0), "www.example.com");
    ck_assert_str_eq(dx_tls_cert_exponent(c), "0x10001");
    dx_tls_cert_free(c);
    ck_assert_uint_eq(h_alloc_live(), base);

    ck_assert_int_gt(shortage(der, len), 10);

    X509 *x = rich_x509();
    ck_assert_int_gt(X509_sign(x, key, EVP_sha256()), 0);
    unsigned char *rich = NULL;
    int n = i2d_X509(x, &rich);
    ck_assert_int_gt(shortage(rich, (size_t)n), 30);
    OPENSSL_free(rich);
    X509_free(x);
    ck_assert_uint_eq(h_alloc_live(), base);
}
END_TEST

/* The live bytes a refused construction must come back to. */
static size_t refused_base;

static void assert_refused(int rc, dx_tls_cert *c, dx_error *err, const char *name_prefix,
                           const char *message_prefix)
{
    ck_assert_int_eq(rc, DX_EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(err);
    ck_assert_int_eq(dx_error_code(err), DX_EINVAL);
    ck_assert_str_eq(dx_error_layer(err), "tls");
    if (strncmp(name_prefix, "ERR_OSSL_", 9) == 0)
        ck_assert_str_ne(dx_error_detail(err), "");
    ck_assert_msg(strncmp(dx_error_name(err), name_prefix, strlen(name_prefix)) == 0,
                  "name %s", dx_error_name(err));
    ck_assert_msg(strncmp(dx_error_message(err), message_prefix, strlen(message_prefix)) == 0,
                  "message %s", dx_error_message(err));
    dx_error_free(err);
    ck_assert_uint_eq(h_alloc_live(), refused_base);
}

START_TEST(garbage_is_refused_with_a_clear_error)
{
    dx_tls_cert *c;
    dx_error *err;
    uint8_t junk[300];
    ERR_clear_error();
    refused_base = h_alloc_live();
    h_gen_fill(7, 0, junk, sizeof(junk));
    junk[0] = 0x30; /* a SEQUENCE, so that OpenSSL reads on */
    int rc = dx_tls_cert_from_der(junk, sizeof(junk), &c, &err);
    assert_refused(rc, c, err, "ERR_OSSL_ASN1_", "not a DER certificate: ");
    ck_assert_uint_eq(ERR_peek_error(), 0);

    dx_pki_cert *p;
    ck_assert_int_eq(dx_pki_issue(NULL, NULL, &p, NULL), 0);
    refused_base = h_alloc_live();
    const uint8_t *der;
    size_t len;
    ck_assert_int_eq(dx_pki_cert_der(p, &der, &len), 0);
    /* OpenSSL's root cause names the error */
    rc = dx_tls_cert_from_der(der, len / 2, &c, &err);
    assert_refused(rc, c, err, "ERR_OSSL_ASN1_TOO_LONG", "not a DER certificate: too long");
    /* the caller's errors stay as they were */
    ERR_raise(ERR_LIB_USER, 7);
    unsigned long mine = ERR_peek_last_error();
    rc = dx_tls_cert_from_der(der, len / 2, &c, &err);
    assert_refused(rc, c, err, "ERR_OSSL_ASN1_", "not a DER certificate: ");
    ck_assert_uint_eq(ERR_peek_error(), mine);
    ck_assert_uint_eq(ERR_peek_last_error(), mine);
    ERR_clear_error();
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, der, len);
    longer[len] = 0;
    rc = dx_tls_cert_from_der(longer, len + 1, &c, &err);
    free(longer);
    assert_refused(rc, c, err, "EINVAL", "bytes follow the certificate");

    rc = dx_tls_cert_from_pem("hello", 5, &c, &err);
    assert_refused(rc, c, err, "ERR_OSSL_PEM_NO_START_LINE", "not a PEM certificate: ");
    const char *key_pem = dx_pki_key_pem(p);
    rc = dx_tls_cert_from_pem(key_pem, strlen(key_pem), &c, &err);
    assert_refused(rc, c, err, "ERR_OSSL_PEM_NO_START_LINE", "not a PEM certificate");
    /* a damaged body */
    char *bad = strdup(dx_pki_cert_pem(p));
    memcpy(strchr(bad, '\n') + 20, "!!!!", 4);
    rc = dx_tls_cert_from_pem(bad, strlen(bad), &c, &err);
    assert_refused(rc, c, err, "ERR_OSSL_", "not a PEM certificate");
    free(bad);
    /* an encrypted PEM is refused without asking for a passphrase */
    static const char enc[] = "-----BEGIN CERTIFICATE-----\n"
                              "Proc-Type: 4,ENCRYPTED\n"
                              "DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n"
                              "AAAAAAAAAAAAAAAAAAAAAA==\n"
                              "-----END CERTIFICATE-----\n";
    rc = dx_tls_cert_from_pem(enc, sizeof(enc) - 1, &c, &err);
    assert_refused(rc, c, err, "ERR_OSSL_PEM_BAD_PASSWORD_READ", "not a PEM certificate");

    rc = dx_tls_cert_from_der(der, 0, &c, &err);
    assert_refused(rc, c, err, "EINVAL", "no certificate given");
    rc = dx_tls_cert_from_pem(NULL, 10, &c, &err);
    assert_refused(rc, c, err, "EINVAL", "no certificate given");
    ck_assert_int_eq(dx_tls_cert_from_der(der, len, NULL, &err), DX_EINVAL);
    ck_assert_str_eq(dx_error_message(err), "no place for the certificate");
    dx_error_free(err);
    ck_assert_int_eq(dx_tls_cert_from_der(der, (size_t)INT_MAX + 1, &c, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_cert_from_der(junk, sizeof(junk), &c, NULL), DX_EINVAL);
    ck_assert_ptr_null(c);
    dx_pki_cert_free(p);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

/* K-15: the PEM labels Node accepts, text around the certificate, and the
 * first of several certificates. */
START_TEST(pem_labels_and_surroundings_are_accepted)
{
    dx_pki_cert *p, *q;
    ck_assert_int_eq(dx_pki_issue(NULL, NULL, &p, NULL), 0);
    ck_assert_int_eq(dx_pki_issue(NULL, NULL, &q, NULL), 0);
    const uint8_t *der;
    size_t len;
    ck_assert_int_eq(dx_pki_cert_der(p, &der, &len), 0);
    const char *pem = dx_pki_cert_pem(p);
    const char *body = strchr(pem, '\n') + 1;
    size_t body_len = (size_t)(strstr(pem, "-----END") - body);
    static const char *const labels[] = {"CERTIFICATE", "X509 CERTIFICATE"};
    char text[8192];
    for (int i = 0; i < 2; i++) {
        snprintf(text, sizeof(text), "subject=whatever\n-----BEGIN %s-----\n%.*s-----END %s-----\n%s",
                 labels[i], (int)body_len, body, labels[i], dx_pki_cert_pem(q));
        dx_tls_cert *c;
        ck_assert_int_eq(dx_tls_cert_from_pem(text, strlen(text), &c, NULL), 0);
        const uint8_t *got;
        size_t got_len;
        ck_assert_int_eq(dx_tls_cert_der(c, &got, &got_len), 0);
        assert_bytes(got, got_len, der, len);
        dx_tls_cert_free(c);
    }
    /* TRUSTED CERTIFICATE: trust settings are not part of the DER */
    X509 *x = parse_pem(pem);
    ck_assert_int_eq(X509_add1_trust_object(x, OBJ_nid2obj(NID_server_auth)), 1);
    BIO *b = BIO_new(BIO_s_mem());
    ck_assert_int_eq(PEM_write_bio_X509_AUX(b, x), 1);
    char *trusted;
    long n = BIO_get_mem_data(b, &trusted);
    ck_assert_ptr_nonnull(strstr(trusted, "TRUSTED CERTIFICATE"));
    dx_tls_cert *c;
    ck_assert_int_eq(dx_tls_cert_from_pem(trusted, (size_t)n, &c, NULL), 0);
    const uint8_t *got;
    size_t got_len;
    ck_assert_int_eq(dx_tls_cert_der(c, &got, &got_len), 0);
    assert_bytes(got, got_len, der, len);
    dx_tls_cert_free(c);
    BIO_free(b);
    X509_free(x);
    dx_pki_cert_free(p);
    dx_pki_cert_free(q);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

START_TEST(null_and_out_of_range_reads_are_safe)
{
    const uint8_t *p;
    size_t len;
    int64_t t;
    ck_assert_ptr_null(dx_tls_cert_openssl(NULL));
    ck_assert_int_eq(dx_tls_cert_der(NULL, &p, &len), DX_EINVAL);
    ck_assert_int_eq(dx_tls_cert_pubkey(NULL, &p, &len), DX_EINVAL);
    ck_assert_int_eq(dx_tls_cert_spki(NULL, &p, &len), DX_EINVAL);
    ck_assert_int_eq(dx_tls_cert_validity(NULL, &t, &t), DX_EINVAL);
    ck_assert_ptr_null(dx_tls_cert_subject(NULL));
    ck_assert_ptr_null(dx_tls_cert_issuer(NULL));
    ck_assert_uint_eq(dx_tls_name_count(NULL), 0);
    ck_assert_int_eq(dx_tls_name_entry(NULL, 0, NULL, NULL, NULL), DX_EINVAL);
    ck_assert_uint_eq(dx_tls_name_key_count(NULL, "CN"), 0);
    ck_assert_ptr_null(dx_tls_name_get(NULL, "CN", 0));
    ck_assert_ptr_null(dx_tls_cert_valid_from(NULL));
    ck_assert_ptr_null(dx_tls_cert_valid_to(NULL));
    ck_assert_ptr_null(dx_tls_cert_serial(NULL));
    ck_assert_ptr_null(dx_tls_cert_fingerprint(NULL, DX_TLS_SHA256));
    ck_assert_uint_eq(dx_tls_cert_ext_key_usage_count(NULL), 0);
    ck_assert_ptr_null(dx_tls_cert_ext_key_usage(NULL, 0));
    ck_assert(!dx_tls_cert_is_ca(NULL));
    ck_assert(!dx_tls_cert_is_self_issued(NULL));
    ck_assert_ptr_null(dx_tls_cert_subjectaltname(NULL));
    ck_assert_uint_eq(dx_tls_cert_altname_count(NULL), 0);
    ck_assert_ptr_null(dx_tls_cert_altname(NULL, 0));
    ck_assert_uint_eq(dx_tls_cert_info_access_count(NULL), 0);
    ck_assert_ptr_null(dx_tls_cert_info_access(NULL, 0));
    ck_assert_ptr_null(dx_tls_cert_key_type(NULL));
    ck_assert_int_eq(dx_tls_cert_key_bits(NULL), 0);
    ck_assert_ptr_null(dx_tls_cert_modulus(NULL));
    ck_assert_ptr_null(dx_tls_cert_exponent(NULL));
    ck_assert_ptr_null(dx_tls_cert_asn1_curve(NULL));
    ck_assert_ptr_null(dx_tls_cert_nist_curve(NULL));
    dx_tls_cert_free(NULL);

    dx_tls_cert *c = finish(new_x509(NULL, 0));
    ck_assert_int_eq(dx_tls_cert_der(c, NULL, &len), DX_EINVAL);
    ck_assert_int_eq(dx_tls_cert_der(c, &p, NULL), DX_EINVAL);
    ck_assert_uint_eq(dx_tls_name_count(dx_tls_cert_subject(c)), 0);
    ck_assert_ptr_null(dx_tls_name_get(dx_tls_cert_subject(c), NULL, 0));
    ck_assert_uint_eq(dx_tls_name_key_count(dx_tls_cert_subject(c), NULL), 0);
    ck_assert_str_eq(dx_tls_cert_serial(c), "1234");
    dx_tls_cert_free(c);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

/* ---- G-01: the server identity check ---- */

typedef struct san {
    int type;      /* GEN_DNS, GEN_URI, GEN_IPADD; 0 ends the list */
    const char *v; /* text; with len, raw bytes */
    size_t len;
} san;

#define DNS(s) {GEN_DNS, (s), 0}
#define URI(s) {GEN_URI, (s), 0}
#define IP(s) {GEN_IPADD, (s), 0}

typedef struct id_case {
    const char *host;
    const char *subject[4];
    san sans[3];
    const char *reason; /* Node's reason, or NULL for a match */
} id_case;

/* Node's test-tls-check-server-identity.js table, case by case (its three
 * non-string hosts are the NULL host below), then more of G-01. */
static const id_case id_cases[] = {
    /* basic CN handling */
    {"a.com", {"CN=a.com"}, {{0}}, NULL},
    {"a.com", {"CN=A.COM"}, {{0}}, NULL},
    {"a.com", {"CN=b.com"}, {{0}}, "Host: a.com. is not cert's CN: b.com"},
    {"a.com", {"CN=a.com."}, {{0}}, NULL},
    {"a.com", {"CN=.a.com"}, {{0}}, "Host: a.com. is not cert's CN: .a.com"},
    {"false", {"CN=a.com"}, {{0}}, "Host: false. is not cert's CN: a.com"},
    /* an IP address only matches an IP Address name */
    {"8.8.8.8", {"CN=8.8.8.8"}, {{0}}, "IP: 8.8.8.8 is not in the cert's list: "},
    {"8.8.8.8", {"CN=8.8.8.8"}, {DNS("8.8.8.8")}, "IP: 8.8.8.8 is not in the cert's list: "},
    {"8.8.8.8", {"CN=8.8.8.8"}, {URI("http://8.8.8.8/")},
     "IP: 8.8.8.8 is not in the cert's list: "},
    {"8.8.8.8", {"CN=8.8.8.8"}, {IP("8.8.8.8")}, NULL},
    /* not a CIDR (8.8.8.0/24 is 8 bytes, no address) */
    {"8.8.8.8", {"CN=8.8.8.8"}, {{GEN_IPADD, "\x08\x08\x08\x00\xff\xff\xff\x00", 8}},
     "IP: 8.8.8.8 is not in the cert's list: "},
    /* wildcards in the CN */
    {"b.a.com", {"CN=*.a.com"}, {{0}}, NULL},
    {"ba.com", {"CN=*.a.com"}, {{0}}, "Host: ba.com. is not cert's CN: *.a.com"},
    {"\n.b.com", {"CN=*n.b.com"}, {{0}}, "Host: \n.b.com. is not cert's CN: *n.b.com"},
    {"b.a.com", {"CN=*.a.com"}, {DNS("omg.com")},
     "Host: b.a.com. is not in the cert's altnames: DNS:omg.com"},
    {"b.a.com", {"CN=b*b.a.com"}, {{0}}, "Host: b.a.com. is not cert's CN: b*b.a.com"},
    /* empty certificate, empty subject */
    {"a.com", {NULL}, {{0}}, "Cert does not contain a DNS name"},
    {"a.com", {NULL}, {DNS("a.com")}, NULL},
    {"a.b.a.com", {NULL}, {URI("http://a.b.a.com/")}, "Cert does not contain a DNS name"},
    /* several CNs */
    {"foo.com", {"CN=foo.com", "CN=bar.com"}, {{0}}, NULL},
    /* DNS names and CN */
    {"a.com", {"CN=b.com"}, {DNS("*")}, "Host: a.com. is not in the cert's altnames: DNS:*"},
    {"a.com", {"CN=b.com"}, {DNS("*.com")},
     "Host: a.com. is not in the cert's altnames: DNS:*.com"},
    {"a.co.uk", {"CN=b.com"}, {DNS("*.co.uk")}, NULL},
    {"a.com", {"CN=a.com"}, {DNS("*.a.com")},
     "Host: a.com. is not in the cert's altnames: DNS:*.a.com"},
    {"a.com", {"CN=b.com"}, {DNS("*.a.com")},
     "Host: a.com. is not in the cert's altnames: DNS:*.a.com"},
    {"a.com", {"CN=b.com"}, {DNS("a.com")}, NULL},
    {"a.com", {"CN=b.com"}, {DNS("A.COM")}, NULL},
    /* DNS names */
    {"a.com", {NULL}, {DNS("*.a.com")}, "Host: a.com. is not in the cert's altnames: DNS:*.a.com"},
    {"b.a.com", {NULL}, {DNS("*.a.com")}, NULL},
    {"c.b.a.com", {NULL}, {DNS("*.a.com")},
     "Host: c.b.a.com. is not in the cert's altnames: DNS:*.a.com"},
    {"b.a.com", {NULL}, {DNS("*b.a.com")}, NULL},
    {"a-cb.a.com", {NULL}, {DNS("*b.a.com")}, NULL},
    {"a.b.a.com", {NULL}, {DNS("*b.a.com")},
     "Host: a.b.a.com. is not in the cert's altnames: DNS:*b.a.com"},
    {"a.b.a.com", {NULL}, {DNS("*b.a.com"), DNS("a.b.a.com")}, NULL},
    /* URI names are never used (CVE-2021-44531) */
    {"a.b.a.com", {NULL}, {URI("http://*.b.a.com/")}, "Cert does not contain a DNS name"},
    /* IP addresses */
    {"a.b.a.com", {NULL}, {IP("127.0.0.1")}, "Cert does not contain a DNS name"},
    {"127.0.0.1", {NULL}, {IP("127.0.0.1")}, NULL},
    {"127.0.0.2", {NULL}, {IP("127.0.0.1")},
     "IP: 127.0.0.2 is not in the cert's list: 127.0.0.1"},
    {"127.0.0.1", {NULL}, {DNS("a.com")}, "IP: 127.0.0.1 is not in the cert's list: "},
    {"localhost", {"CN=localhost"}, {DNS("a.com")},
     "Host: localhost. is not in the cert's altnames: DNS:a.com"},
    /* IDNA: no wildcard inside an A-label */
    {"xn--bcher-kva.example.com", {"CN=*.example.com"}, {{0}}, NULL},
    {"xn--bcher-kva.example.com", {"CN=xn--*.example.com"}, {{0}},
     "Host: xn--bcher-kva.example.com. is not cert's CN: xn--*.example.com"},

    /* canonical IPv6 and IPv4-mapped addresses (test-tls-canonical-ip) */
    {"::1", {NULL}, {IP("::1")}, NULL},
    {"0:0:0:0:0:0:0:1", {NULL}, {IP("::1")}, NULL},
    {"FE80::1", {NULL}, {IP("fe80:0:0:0:0:0:0:1")}, NULL},
    {"fe80::1%eth0", {NULL}, {IP("fe80::1")}, NULL},
    {"fe80::2", {NULL}, {IP("fe80:0:0:0:0:0:0:1"), IP("10.0.0.1")},
     "IP: fe80::2 is not in the cert's list: fe80::1, 10.0.0.1"},
    {"::ffff:127.0.0.1", {NULL}, {IP("::ffff:7f00:1")}, NULL},
    {"127.0.0.1", {NULL}, {IP("::ffff:127.0.0.1")},
     "IP: 127.0.0.1 is not in the cert's list: ::ffff:127.0.0.1"},
    {"::ffff:127.0.0.1", {NULL}, {IP("127.0.0.1")},
     "IP: ::ffff:127.0.0.1 is not in the cert's list: 127.0.0.1"},
    {"127.0.0.1.", {NULL}, {IP("127.0.0.1")}, NULL},
    {"127.0.0.01", {"CN=127.0.0.01"}, {{0}}, NULL}, /* not an address: a name */
    /* a trailing dot, letters in any case */
    {"a.com.", {NULL}, {DNS("a.com")}, NULL},
    {"A.Com", {NULL}, {DNS("a.COM")}, NULL},
    {"b.a.com", {NULL}, {DNS("*.a.com.")}, NULL},
    /* as in Node.js: one dot goes for the message, one for the match */
    {"a.com..", {NULL}, {DNS("a.com")}, NULL},
    /* a wildcard: left-most, once, for one non-empty label */
    {"a.b.com", {NULL}, {DNS("a.*.com")}, "Host: a.b.com. is not in the cert's altnames: DNS:a.*.com"},
    {"ab.a.com", {NULL}, {DNS("**.a.com")},
     "Host: ab.a.com. is not in the cert's altnames: DNS:**.a.com"},
    {".a.com", {NULL}, {DNS("*.a.com")}, "Host: .a.com. is not in the cert's altnames: DNS:*.a.com"},
    {"b.a.com", {NULL}, {DNS("b.a..com")}, "Host: b.a.com. is not in the cert's altnames: DNS:b.a..com"},
    /* any DNS name, even an empty one, puts the CN aside */
    {"b.a.com", {"CN=b.a.com"}, {DNS("")}, "Host: b.a.com. is not in the cert's altnames: DNS:"},
    /* ... and IP Address names do not */
    {"a.com", {"CN=a.com"}, {IP("1.2.3.4")}, NULL},
    /* a URI is not used beside DNS names either */
    {"a.com", {"CN=a.com"}, {DNS("x.com"), URI("http://a.com/")},
     "Host: a.com. is not in the cert's altnames: DNS:x.com, URI:http://a.com/"},
    /* CVE-2009-2408: a NUL byte neither truncates nor matches */
    {"good.com", {NULL}, {{GEN_DNS, "good.com\0evil.com", 17}},
     "Host: good.com. is not in the cert's altnames: DNS:\"good.com\\u0000evil.com\""},
    {"evil.com", {NULL}, {{GEN_DNS, "good.com\0evil.com", 17}},
     "Host: evil.com. is not in the cert's altnames: DNS:\"good.com\\u0000evil.com\""},
    /* names outside printable ASCII never match */
    {"b\xc3\xbc" "cher.example", {NULL}, {DNS("b\xc3\xbc" "cher.example")},
     "Host: b\xc3\xbc" "cher.example. is not in the cert's altnames: "
     "DNS:\"b\\u00c3\\u00bccher.example\""},
    {"b\xc3\xbc" "cher.example", {"CN=b\xc3\xbc" "cher.example"}, {{0}},
     "Host: b\xc3\xbc" "cher.example. is not cert's CN: b\xc3\xbc" "cher.example"},
    /* several CNs: any of them, and all in the message */
    {"bar.com", {"CN=foo.com", "CN=bar.com"}, {{0}}, NULL},
    {"baz.com", {"CN=foo.com", "CN=bar.com"}, {{0}},
     "Host: baz.com. is not cert's CN: foo.com,bar.com"},
    {"a.com", {"CN="}, {{0}}, "Cert does not contain a DNS name"},
};

static dx_tls_cert *case_cert(const id_case *t)
{
    size_t nsub = 0;
    while (nsub < 4 && t->subject[nsub])
        nsub++;
    X509 *x = new_x509(t->subject, nsub);
    if (t->sans[0].type) {
        GENERAL_NAMES *g = sk_GENERAL_NAME_new_null();
        for (size_t i = 0; i < 3 && t->sans[i].type; i++) {
            const san *s = &t->sans[i];
            GENERAL_NAME *gn = s->type == GEN_IPADD
                                   ? (s->len ? gn_ip_raw(s->v, s->len) : gn_ip(s->v))
                                   : gn_string(s->type, s->v, s->len ? s->len : strlen(s->v));
            ck_assert_int_gt(sk_GENERAL_NAME_push(g, gn), 0);
        }
        add_altnames(x, g);
    }
    return finish(x);
}

START_TEST(identity_is_checked_as_node_checks_it)
{
    const id_case *t = &id_cases[_i];
    dx_tls_cert *c = case_cert(t);
    dx_error *err = NULL;
    int rc = dx_tls_check_server_identity(t->host, c, &err);
    ck_assert_int_eq(dx_tls_check_server_identity(t->host, c, NULL), rc);
    if (!t->reason) {
        ck_assert_msg(rc == 0, "case %d (%s): %s", _i, t->host, dx_error_message(err));
        ck_assert_ptr_null(err);
    } else {
        char want[512];
        snprintf(want, sizeof(want), ALTNAME_PREFIX "%s", t->reason);
        ck_assert_msg(rc == DX_ETLS, "case %d (%s) matched", _i, t->host);
        ck_assert_int_eq(dx_error_code(err), DX_ETLS);
        ck_assert_str_eq(dx_error_name(err), "ERR_TLS_CERT_ALTNAME_INVALID");
        ck_assert_str_eq(dx_error_layer(err), "tls");
        ck_assert_str_eq(dx_error_message(err), want);
        dx_error_free(err);
    }
    dx_tls_cert_free(c);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

/* G-01 on a real leaf made by dx_pki, and the arguments. */
START_TEST(identity_of_an_issued_certificate_and_bad_arguments)
{
    size_t base = h_alloc_live();
    dx_tls_cert *c = from_pki(ec256);
    ck_assert_int_eq(dx_tls_check_server_identity("www.example.com", c, NULL), 0);
    ck_assert_int_eq(dx_tls_check_server_identity("x.example.net", c, NULL), 0);
    ck_assert_int_eq(dx_tls_check_server_identity("127.0.0.1", c, NULL), 0);
    ck_assert_int_eq(dx_tls_check_server_identity("::1", c, NULL), 0);
    dx_error *err = NULL;
    ck_assert_int_eq(dx_tls_check_server_identity("example.net", c, &err), DX_ETLS);
    ck_assert_str_eq(dx_error_message(err),
                     ALTNAME_PREFIX "Host: example.net. is not in the cert's altnames: "
                                    "DNS:www.example.com, DNS:*.example.net, "
                                    "IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1");
    dx_error_free(err);
    ck_assert_int_eq(dx_tls_check_server_identity("10.0.0.1", c, &err), DX_ETLS);
    ck_assert_str_eq(dx_error_message(err),
                     ALTNAME_PREFIX "IP: 10.0.0.1 is not in the cert's list: 127.0.0.1, ::1");
    dx_error_free(err);

    ck_assert_int_eq(dx_tls_check_server_identity(NULL, c, &err), DX_EINVAL);
    ck_assert_int_eq(dx_error_code(err), DX_EINVAL);
    ck_assert_str_eq(dx_error_layer(err), "tls");
    dx_error_free(err);
    ck_assert_int_eq(dx_tls_check_server_identity("a.com", NULL, &err), DX_EINVAL);
    ck_assert_int_eq(dx_error_code(err), DX_EINVAL);
    dx_error_free(err);
    ck_assert_int_eq(dx_tls_check_server_identity(NULL, NULL, NULL), DX_EINVAL);
    dx_tls_cert_free(c);
    ck_assert_uint_eq(h_alloc_live(), base);
}
END_TEST

static bool valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        size_t more = ch < 0x80 ? 0 : (ch & 0xe0) == 0xc0 ? 1 : (ch & 0xf0) == 0xe0 ? 2 : 3;
        if (more && i + more >= n)
            return false;
        for (size_t k = 1; k <= more; k++)
            if (((unsigned char)s[i + k] & 0xc0) != 0x80)
                return false;
        i += more + 1;
    }
    return true;
}

/* A message longer than an error object holds is cut between characters
 * and ends in "...". */
START_TEST(long_identity_messages_are_cut_cleanly)
{
    char cn[4][160];
    const char *subject[4];
    for (int i = 0; i < 4; i++) {
        strcpy(cn[i], "CN=");
        for (int k = 0; k < 70; k++)
            strcat(cn[i], "\xc3\xa9"); /* é */
        subject[i] = cn[i];
    }
    for (int shift = 0; shift < 2; shift++) {
        dx_tls_cert *c = finish(new_x509(subject, 4));
        dx_error *err = NULL;
        const char *host = shift ? "ab.example" : "a.example";
        ck_assert_int_eq(dx_tls_check_server_identity(host, c, &err), DX_ETLS);
        const char *m = dx_error_message(err);
        size_t n = strlen(m);
        ck_assert_uint_ge(n, 250);
        ck_assert_uint_le(n, 255);
        ck_assert_str_eq(m + n - 3, "...");
        ck_assert(valid_utf8(m, n - 3));
        ck_assert_int_eq(strncmp(m, ALTNAME_PREFIX "Host: ", strlen(ALTNAME_PREFIX) + 6), 0);
        dx_error_free(err);
        dx_tls_cert_free(c);
    }
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

Suite *tls_cert_suite(void)
{
    Suite *s = suite_create("tls_cert");
    TCase *fields = tcase_create("fields");
    tcase_set_timeout(fields, 60);
    tcase_add_unchecked_fixture(fields, pki_setup, pki_teardown);
    tcase_add_unchecked_fixture(fields, key_setup, key_teardown);
    tcase_add_test(fields, rsa_certificate_fields_match_openssl);
    tcase_add_loop_test(fields, ec_certificate_fields_match_openssl, 0, 2);
    tcase_add_test(fields, ed25519_certificate_has_its_type_and_bits_and_no_node_pubkey);
    tcase_add_test(fields, the_object_owns_its_memory_and_survives_shortage);
    tcase_add_test(fields, identity_of_an_issued_certificate_and_bad_arguments);
    suite_add_tcase(s, fields);

    TCase *built = tcase_create("built");
    tcase_add_unchecked_fixture(built, key_setup, key_teardown);
    tcase_add_test(built, names_keep_order_repeats_and_utf8);
    tcase_add_test(built, altnames_are_escaped_as_node_escapes_them);
    tcase_add_test(built, unusual_altname_types_do_not_break_the_object);
    tcase_add_test(built, info_access_lists_methods_and_locations);
    tcase_add_test(built, validity_reads_as_node_prints_it);
    tcase_add_test(built, garbage_is_refused_with_a_clear_error);
    tcase_add_test(built, pem_labels_and_surroundings_are_accepted);
    tcase_add_test(built, null_and_out_of_range_reads_are_safe);
    tcase_add_test(built, long_identity_messages_are_cut_cleanly);
    suite_add_tcase(s, built);

    TCase *identity = tcase_create("identity");
    tcase_add_unchecked_fixture(identity, key_setup, key_teardown);
    tcase_add_loop_test(identity, identity_is_checked_as_node_checks_it, 0,
                        (int)(sizeof(id_cases) / sizeof(id_cases[0])));
    suite_add_tcase(s, identity);
    return s;
}
