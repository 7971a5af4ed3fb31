/* Throw-away certificates made in memory (include/duplex/pki.h), checked
 * with OpenSSL's own verifier. */
#include "config.h"

#include <string.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "harness.h"

static X509 *parse(const dx_pki_cert *c)
{
    BIO *b = BIO_new_mem_buf(dx_pki_cert_pem(c), -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    ck_assert_ptr_nonnull(x);
    return x;
}

/* The X509_V_* result of verifying leaf against ca (hostname optional). */
static int verify(const dx_pki_cert *ca, const dx_pki_cert *leaf, const char *host)
{
    X509_STORE *store = X509_STORE_new();
    X509 *cx = parse(ca), *lx = parse(leaf);
    ck_assert_int_eq(X509_STORE_add_cert(store, cx), 1);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    ck_assert_int_eq(X509_STORE_CTX_init(ctx, store, lx, NULL), 1);
    if (host)
        X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), host, 0);
    X509_verify_cert(ctx);
    int rc = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(cx);
    X509_free(lx);
    return rc;
}

static const char *const dns[] = {"www.example.com", "*.example.net", NULL};
static const char *const ips[] = {"127.0.0.1", "::1", NULL};

START_TEST(issued_certificates_verify_against_their_ca)
{
    static const dx_pki_key_type types[] = {DX_PKI_EC_P256, DX_PKI_RSA_2048,
                                            DX_PKI_ED25519, DX_PKI_EC_P384};
    dx_pki_cert *ca, *leaf;
    dx_pki_opts co = {.key_type = types[_i], .common_name = "Test CA", .is_ca = true};
    ck_assert_int_eq(dx_pki_issue(NULL, &co, &ca, NULL), 0);
    dx_pki_opts lo = {.key_type = types[_i], .common_name = "www.example.com",
                      .dns_names = dns, .ip_addresses = ips,
                      .ext_key_usage = DX_PKI_EKU_SERVER | DX_PKI_EKU_CLIENT};
    ck_assert_int_eq(dx_pki_issue(ca, &lo, &leaf, NULL), 0);
    ck_assert_int_eq(verify(ca, leaf, NULL), X509_V_OK);
    ck_assert_int_eq(verify(ca, leaf, "www.example.com"), X509_V_OK);
    ck_assert_int_eq(verify(ca, leaf, "a.example.net"), X509_V_OK);
    ck_assert_int_eq(verify(ca, leaf, "www.example.org"), X509_V_ERR_HOSTNAME_MISMATCH);

    X509 *x = parse(leaf);
    ck_assert_int_eq(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
    ck_assert_int_eq(X509_check_ip_asc(x, "::1", 0), 1);
    ck_assert(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    ck_assert(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
    ck_assert_int_eq(X509_check_ca(x), 0);
    /* The key is the certificate's, in PKCS#8 PEM. */
    BIO *b = BIO_new_mem_buf(dx_pki_key_pem(leaf), -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(X509_check_private_key(x, k), 1);
    ck_assert_ptr_nonnull(strstr(dx_pki_key_pem(leaf), "BEGIN PRIVATE KEY"));
    EVP_PKEY_free(k);
    BIO_free(b);
    /* DER is the same certificate. */
    const uint8_t *der;
    size_t len;
    ck_assert_int_eq(dx_pki_cert_der(leaf, &der, &len), 0);
    const unsigned char *p = der;
    X509 *y = d2i_X509(NULL, &p, (long)len);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(X509_cmp(x, y), 0);
    X509_free(y);
    X509_free(x);

    x = parse(ca);
    ck_assert_int_eq(X509_check_ca(x), 1);
    X509_free(x);
    dx_pki_cert_free(leaf);
    dx_pki_cert_free(ca);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

START_TEST(validity_can_lie_in_the_past_or_the_future)
{
    dx_pki_cert *ca, *expired, *future, *self;
    dx_pki_opts co = {.is_ca = true, .common_name = "CA"};
    ck_assert_int_eq(dx_pki_issue(NULL, &co, &ca, NULL), 0);
    dx_pki_opts eo = {.common_name = "old", .not_before = -7200, .not_after = -3600};
    ck_assert_int_eq(dx_pki_issue(ca, &eo, &expired, NULL), 0);
    dx_pki_opts fo = {.common_name = "new", .not_before = 3600, .not_after = 7200};
    ck_assert_int_eq(dx_pki_issue(ca, &fo, &future, NULL), 0);
    ck_assert_int_eq(dx_pki_issue(NULL, NULL, &self, NULL), 0);
    ck_assert_int_eq(verify(ca, expired, NULL), X509_V_ERR_CERT_HAS_EXPIRED);
    ck_assert_int_eq(verify(ca, future, NULL), X509_V_ERR_CERT_NOT_YET_VALID);
    ck_assert_int_eq(verify(ca, self, NULL), X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
    dx_pki_cert_free(expired);
    dx_pki_cert_free(future);
    dx_pki_cert_free(self);
    dx_pki_cert_free(ca);
    dx_pki_cert_free(NULL);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

START_TEST(bad_requests_fail_with_a_clear_error)
{
    dx_pki_cert *leaf, *c;
    dx_error *err;
    ck_assert_int_eq(dx_pki_issue(NULL, NULL, &leaf, NULL), 0);
    /* a certificate that is not a CA cannot issue */
    ck_assert_int_eq(dx_pki_issue(leaf, NULL, &c, &err), DX_EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(dx_error_layer(err), "pki");
    ck_assert_str_eq(dx_error_message(err), "the issuer is not a CA");
    dx_error_free(err);
    /* an IP address OpenSSL cannot parse */
    static const char *const bad_ip[] = {"300.1.2.3", NULL};
    dx_pki_opts o = {.ip_addresses = bad_ip};
    ck_assert_int_eq(dx_pki_issue(NULL, &o, &c, &err), DX_EINVAL);
    ck_assert_str_eq(dx_error_message(err), "an IP address was refused");
    dx_error_free(err);
    dx_pki_opts k = {.key_type = (dx_pki_key_type)42};
    ck_assert_int_eq(dx_pki_issue(NULL, &k, &c, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_pki_issue(NULL, NULL, NULL, NULL), DX_EINVAL);
    const uint8_t *der;
    size_t len;
    ck_assert_int_eq(dx_pki_cert_der(NULL, &der, &len), DX_EINVAL);
    ck_assert_ptr_null(dx_pki_cert_pem(NULL));
    dx_pki_cert_free(leaf);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

/* RFC 7633: must_staple adds the TLS feature extension with
 * status_request (5); certificates without it have none. */
START_TEST(must_staple_adds_the_tls_feature)
{
    dx_pki_cert *ca, *plain, *staple;
    dx_pki_opts co = {.is_ca = true, .common_name = "CA"};
    ck_assert_int_eq(dx_pki_issue(NULL, &co, &ca, NULL), 0);
    dx_pki_opts po = {.common_name = "plain"};
    ck_assert_int_eq(dx_pki_issue(ca, &po, &plain, NULL), 0);
    dx_pki_opts so = {.common_name = "staple", .must_staple = true};
    ck_assert_int_eq(dx_pki_issue(ca, &so, &staple, NULL), 0);
    X509 *x = parse(staple);
    TLS_FEATURE *features = X509_get_ext_d2i(x, NID_tlsfeature, NULL, NULL);
    ck_assert_ptr_nonnull(features);
    ck_assert_int_eq(sk_ASN1_INTEGER_num(features), 1);
    ck_assert_int_eq(ASN1_INTEGER_get(sk_ASN1_INTEGER_value(features, 0)), 5);
    TLS_FEATURE_free(features);
    X509_free(x);
    ck_assert_int_eq(verify(ca, staple, NULL), X509_V_OK);
    x = parse(plain);
    ck_assert_int_lt(X509_get_ext_by_NID(x, NID_tlsfeature, -1), 0);
    X509_free(x);
    dx_pki_cert_free(staple);
    dx_pki_cert_free(plain);
    dx_pki_cert_free(ca);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

/* Seconds from now to t (negative in the past). */
static long from_now(const ASN1_GENERALIZEDTIME *t)
{
    int days, secs;
    ck_assert_int_eq(ASN1_TIME_diff(&days, &secs, NULL, t), 1);
    return (long)days * 86400 + secs;
}

/* An OCSP response says what was asked, about the certificate asked,
 * signed by its issuer (OpenSSL's verifier accepts it), with the update
 * times asked; nextUpdate can be left out. Every key type signs. */
START_TEST(ocsp_responses_say_what_was_asked)
{
    static const dx_pki_key_type types[] = {DX_PKI_EC_P256, DX_PKI_RSA_2048, DX_PKI_ED25519};
    static const int codes[] = {V_OCSP_CERTSTATUS_GOOD, V_OCSP_CERTSTATUS_REVOKED,
                                V_OCSP_CERTSTATUS_UNKNOWN};
    dx_pki_cert *ca, *leaf;
    dx_pki_opts co = {.is_ca = true, .common_name = "OCSP CA", .key_type = types[_i / 3]};
    ck_assert_int_eq(dx_pki_issue(NULL, &co, &ca, NULL), 0);
    dx_pki_opts lo = {.common_name = "leaf"};
    ck_assert_int_eq(dx_pki_issue(ca, &lo, &leaf, NULL), 0);
    dx_pki_ocsp_status st = (dx_pki_ocsp_status)(_i % 3);
    bool no_next = st == DX_PKI_OCSP_UNKNOWN;
    uint8_t *der;
    size_t len;
    ck_assert_int_eq(dx_pki_ocsp_response(ca, leaf, st, -120,
                                          no_next ? DX_PKI_OCSP_NO_NEXT_UPDATE : 7200, &der,
                                          &len),
                     0);
    ck_assert_uint_gt(len, 0);
    const unsigned char *p = der;
    OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    ck_assert_ptr_nonnull(r);
    ck_assert(p == der + len);
    ck_assert_int_eq(OCSP_response_status(r), OCSP_RESPONSE_STATUS_SUCCESSFUL);
    OCSP_BASICRESP *bs = OCSP_response_get1_basic(r);
    ck_assert_ptr_nonnull(bs);
    X509 *cx = parse(ca), *lx = parse(leaf);
    X509_STORE *store = X509_STORE_new();
    ck_assert_int_eq(X509_STORE_add_cert(store, cx), 1);
    STACK_OF(X509) *certs = sk_X509_new_null();
    ck_assert_int_gt(sk_X509_push(certs, cx), 0);
    ck_assert_int_eq(OCSP_basic_verify(bs, certs, store, 0), 1);
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, lx, cx);
    int status, reason;
    ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
    ck_assert_int_eq(OCSP_resp_find_status(bs, id, &status, &reason, &rev, &thisupd, &nextupd),
                     1);
    ck_assert_int_eq(status, codes[st]);
    long t = from_now(thisupd);
    ck_assert(t <= -110 && t >= -130);
    if (no_next) {
        ck_assert_ptr_null(nextupd);
    } else {
        long n = from_now(nextupd);
        ck_assert(n >= 7190 && n <= 7200);
    }
    if (st == DX_PKI_OCSP_REVOKED)
        ck_assert_int_eq(ASN1_TIME_compare(rev, thisupd), 0);
    else
        ck_assert_ptr_null(rev);
    ck_assert_int_eq(OCSP_check_validity(thisupd, nextupd, 0, -1), 1);
    OCSP_CERTID_free(id);
    sk_X509_free(certs);
    X509_STORE_free(store);
    X509_free(cx);
    X509_free(lx);
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(r);
    dx_pki_ocsp_free(der);
    dx_pki_cert_free(leaf);
    dx_pki_cert_free(ca);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

/* Past and future responses, and the calls that are refused. */
START_TEST(ocsp_response_times_and_bad_requests)
{
    dx_pki_cert *ca, *leaf;
    dx_pki_opts co = {.is_ca = true, .common_name = "OCSP CA"};
    ck_assert_int_eq(dx_pki_issue(NULL, &co, &ca, NULL), 0);
    ck_assert_int_eq(dx_pki_issue(ca, NULL, &leaf, NULL), 0);
    uint8_t *der = (uint8_t *)"x";
    size_t len = 1;
    /* expired a day ago, and valid only in a day */
    static const int64_t times[2][2] = {{-3 * 86400, -86400}, {86400, 2 * 86400}};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(dx_pki_ocsp_response(ca, leaf, DX_PKI_OCSP_GOOD, times[i][0],
                                              times[i][1], &der, &len),
                         0);
        const unsigned char *p = der;
        OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
        OCSP_BASICRESP *bs = OCSP_response_get1_basic(r);
        ck_assert_ptr_nonnull(bs);
        OCSP_SINGLERESP *single = OCSP_resp_get0(bs, 0);
        int reason;
        ASN1_GENERALIZEDTIME *rev, *thisupd, *nextupd;
        ck_assert_int_eq(OCSP_single_get0_status(single, &reason, &rev, &thisupd, &nextupd),
                         V_OCSP_CERTSTATUS_GOOD);
        long t = from_now(thisupd), n = from_now(nextupd);
        ck_assert(t >= times[i][0] - 10 && t <= times[i][0]);
        ck_assert(n >= times[i][1] - 10 && n <= times[i][1]);
        ck_assert_int_eq(OCSP_check_validity(thisupd, nextupd, 300, -1), 0);
        ERR_clear_error();
        OCSP_BASICRESP_free(bs);
        OCSP_RESPONSE_free(r);
        dx_pki_ocsp_free(der);
    }
    /* refused: no issuer, an issuer that is no CA, no certificate, no
     * place for the answer, an unknown status */
    ck_assert_int_eq(dx_pki_ocsp_response(NULL, leaf, DX_PKI_OCSP_GOOD, 0, 60, &der, &len),
                     DX_EINVAL);
    ck_assert_ptr_null(der);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(dx_pki_ocsp_response(leaf, leaf, DX_PKI_OCSP_GOOD, 0, 60, &der, &len),
                     DX_EINVAL);
    ck_assert_int_eq(dx_pki_ocsp_response(ca, NULL, DX_PKI_OCSP_GOOD, 0, 60, &der, &len),
                     DX_EINVAL);
    ck_assert_int_eq(dx_pki_ocsp_response(ca, leaf, DX_PKI_OCSP_GOOD, 0, 60, NULL, &len),
                     DX_EINVAL);
    ck_assert_int_eq(dx_pki_ocsp_response(ca, leaf, DX_PKI_OCSP_GOOD, 0, 60, &der, NULL),
                     DX_EINVAL);
    ck_assert_int_eq(dx_pki_ocsp_response(ca, leaf, (dx_pki_ocsp_status)3, 0, 60, &der, &len),
                     DX_EINVAL);
    dx_pki_ocsp_free(NULL);
    dx_pki_cert_free(leaf);
    dx_pki_cert_free(ca);
    ck_assert_uint_eq(h_alloc_live(), 0);
}
END_TEST

Suite *pki_suite(void)
{
    Suite *s = suite_create("pki");
    TCase *tc = tcase_create("pki");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, issued_certificates_verify_against_their_ca, 0, 4);
    tcase_add_test(tc, validity_can_lie_in_the_past_or_the_future);
    tcase_add_test(tc, bad_requests_fail_with_a_clear_error);
    tcase_add_test(tc, must_staple_adds_the_tls_feature);
    tcase_add_loop_test(tc, ocsp_responses_say_what_was_asked, 0, 9);
    tcase_add_test(tc, ocsp_response_times_and_bad_requests);
    suite_add_tcase(s, tc);
    return s;
}
