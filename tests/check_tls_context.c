/*
 * TLS configuration and context (include/duplex/tls.h). Contexts are
 * proven by real handshakes: SSL objects made from two contexts talk over
 * an OpenSSL BIO pair in the test.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "harness.h"

/* ---- a test PKI ---- */

static dx_pki_cert *ca, *other_ca, *rsa, *ec, *ed;

static const char *const localhost[] = {"localhost", NULL};

static dx_pki_cert *leaf(dx_pki_cert *issuer, dx_pki_key_type type)
{
    dx_pki_opts o = {.key_type = type, .common_name = "localhost",
                     .dns_names = localhost, .ext_key_usage = DX_PKI_EKU_SERVER};
    dx_pki_cert *c;
    ck_assert_int_eq(dx_pki_issue(issuer, &o, &c, NULL), 0);
    return c;
}

static void pki_setup(void)
{
    dx_pki_opts co = {.common_name = "Test CA", .is_ca = true};
    ck_assert_int_eq(dx_pki_issue(NULL, &co, &ca, NULL), 0);
    ck_assert_int_eq(dx_pki_issue(NULL, &co, &other_ca, NULL), 0);
    rsa = leaf(ca, DX_PKI_RSA_2048);
    ec = leaf(ca, DX_PKI_EC_P256);
    ed = leaf(ca, DX_PKI_ED25519);
}

static void pki_teardown(void)
{
    dx_pki_cert_free(rsa);
    dx_pki_cert_free(ec);
    dx_pki_cert_free(ed);
    dx_pki_cert_free(ca);
    dx_pki_cert_free(other_ca);
    ck_assert_uint_eq(h_alloc_live(), 0);
}

static const char *pem(const dx_pki_cert *c) { return dx_pki_cert_pem(c); }
static size_t pem_len(const dx_pki_cert *c) { return strlen(dx_pki_cert_pem(c)); }

static void add_cert(dx_tls_config *cfg, const dx_pki_cert *c)
{
    const char *k = dx_pki_key_pem(c);
    ck_assert_int_eq(dx_tls_config_add_cert(cfg, pem(c), pem_len(c), k, strlen(k), NULL), 0);
}

static dx_tls_ctx *build(dx_tls_config *cfg)
{
    dx_tls_ctx *ctx;
    dx_error *err;
    int rc = dx_tls_ctx_new(cfg, &ctx, &err);
    char text[512] = "";
    if (rc != 0 && err)
        dx_error_format(err, text, sizeof(text));
    ck_assert_msg(rc == 0, "dx_tls_ctx_new: %s %s", dx_strerror(rc), text);
    dx_tls_config_free(cfg);
    return ctx;
}

/* A context that fails to build: its error, for inspection. */
static dx_error *build_fails(dx_tls_config *cfg)
{
    dx_tls_ctx *ctx = (dx_tls_ctx *)1;
    dx_error *err = NULL;
    ck_assert_int_eq(dx_tls_ctx_new(cfg, &ctx, &err), DX_ETLS);
    ck_assert_ptr_null(ctx);
    ck_assert_ptr_nonnull(err);
    ck_assert_int_eq(dx_error_code(err), DX_ETLS);
    ck_assert_str_eq(dx_error_layer(err), "tls");
    dx_tls_config_free(cfg);
    return err;
}

static dx_tls_config *server_config(const dx_pki_cert *c)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    add_cert(cfg, c);
    return cfg;
}

static dx_tls_config *client_config(const dx_pki_cert *trust)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_ca(cfg, pem(trust), pem_len(trust)), 0);
    return cfg;
}

/* ---- a raw OpenSSL handshake between two contexts ---- */

typedef struct hs {
    bool ok;
    long verify;            /* client's verify result */
    char version[16];
    char cipher[64];
    char group[32];
    int server_key_type;    /* EVP_PKEY id of the certificate served */
} hs;

static hs handshake(dx_tls_ctx *server, dx_tls_ctx *client, const char *client_sigalgs)
{
    hs r = {0};
    SSL *s = SSL_new(dx_tls_ctx_openssl(server));
    SSL *c = SSL_new(dx_tls_ctx_openssl(client));
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_nonnull(c);
    BIO *bs, *bc;
    ck_assert_int_eq(BIO_new_bio_pair(&bs, 0, &bc, 0), 1);
    SSL_set_bio(s, bs, bs);
    SSL_set_bio(c, bc, bc);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    SSL_set_verify(c, SSL_VERIFY_PEER, NULL);
    SSL_set1_host(c, "localhost");
    if (client_sigalgs)
        ck_assert_int_eq(SSL_set1_sigalgs_list(c, client_sigalgs), 1);
    bool sdone = false, cdone = false, failed = false;
    for (int i = 0; i < 100 && !(sdone && cdone) && !failed; i++) {
        if (!cdone) {
            int rc = SSL_do_handshake(c);
            if (rc == 1)
                cdone = true;
            else if (SSL_get_error(c, rc) != SSL_ERROR_WANT_READ)
                failed = true;
        }
        if (!sdone && !failed) {
            int rc = SSL_do_handshake(s);
            if (rc == 1)
                sdone = true;
            else if (SSL_get_error(s, rc) != SSL_ERROR_WANT_READ)
                failed = true;
        }
    }
    r.ok = sdone && cdone && !failed;
    r.verify = SSL_get_verify_result(c);
    if (r.ok) {
        snprintf(r.version, sizeof(r.version), "%s", SSL_get_version(c));
        snprintf(r.cipher, sizeof(r.cipher), "%s", SSL_get_cipher_name(c));
        int g = SSL_get_negotiated_group(c);
        const char *gn = g ? SSL_group_to_name(c, g) : NULL;
        snprintf(r.group, sizeof(r.group), "%s", gn ? gn : "");
        X509 *x = SSL_get0_peer_certificate(c);
        r.server_key_type = x ? EVP_PKEY_get_id(X509_get0_pubkey(x)) : 0;
    }
    SSL_free(s);
    SSL_free(c);
    ERR_clear_error();
    return r;
}

/* ---- tests ---- */

START_TEST(each_key_type_serves_a_verified_handshake)
{
    dx_pki_cert *certs[] = {rsa, ec, ed};
    int types[] = {EVP_PKEY_RSA, EVP_PKEY_EC, EVP_PKEY_ED25519};
    dx_tls_ctx *s = build(server_config(certs[_i]));
    dx_tls_ctx *c = build(client_config(ca));
    hs r = handshake(s, c, NULL);
    ck_assert(r.ok);
    ck_assert_int_eq(r.verify, X509_V_OK);
    ck_assert_int_eq(r.server_key_type, types[_i]);
    ck_assert_str_eq(r.version, "TLSv1.3");
    dx_tls_ctx_unref(s);
    dx_tls_ctx_unref(c);
}
END_TEST

/* Several credentials at once: the peer's signature algorithms pick. */
START_TEST(several_credentials_are_chosen_by_the_peer)
{
    dx_tls_config *cfg = server_config(rsa);
    add_cert(cfg, ec);
    dx_tls_ctx *s = build(cfg);
    dx_tls_ctx *c = build(client_config(ca));
    hs r = handshake(s, c, "rsa_pss_rsae_sha256");
    ck_assert(r.ok);
    ck_assert_int_eq(r.server_key_type, EVP_PKEY_RSA);
    r = handshake(s, c, "ECDSA+SHA256");
    ck_assert(r.ok);
    ck_assert_int_eq(r.server_key_type, EVP_PKEY_EC);
    dx_tls_ctx_unref(s);
    dx_tls_ctx_unref(c);
}
END_TEST

START_TEST(a_certificate_from_another_ca_is_not_verified)
{
    dx_tls_ctx *s = build(server_config(ec));
    dx_tls_ctx *c = build(client_config(other_ca));
    hs r = handshake(s, c, NULL);
    ck_assert(!r.ok);
    ck_assert_int_eq(r.verify, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    dx_tls_ctx_unref(s);
    dx_tls_ctx_unref(c);
}
END_TEST

/* An encrypted key is read with its passphrase, refused without or with
 * a wrong one, and nothing ever asks on a terminal. */
START_TEST(encrypted_keys_need_their_passphrase)
{
    BIO *in = BIO_new_mem_buf(dx_pki_key_pem(ec), -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
    BIO *out = BIO_new(BIO_s_mem());
    ck_assert_int_eq(PEM_write_bio_PKCS8PrivateKey(out, k, EVP_aes_256_cbc(), NULL, 0,
                                                   NULL, (void *)"sesame"), 1);
    char *enc;
    long n = BIO_get_mem_data(out, &enc);
    ck_assert_ptr_nonnull(strstr(enc, "ENCRYPTED PRIVATE KEY"));

    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_cert(cfg, pem(ec), pem_len(ec), enc, (size_t)n, "sesame"), 0);
    dx_tls_ctx *s = build(cfg);
    dx_tls_ctx *c = build(client_config(ca));
    ck_assert(handshake(s, c, NULL).ok);
    dx_tls_ctx_unref(s);
    dx_tls_ctx_unref(c);

    const char *wrong[] = {"wrong", NULL};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
        ck_assert_int_eq(dx_tls_config_add_cert(cfg, pem(ec), pem_len(ec), enc, (size_t)n, wrong[i]), 0);
        dx_error *err = build_fails(cfg);
        ck_assert_msg(strncmp(dx_error_message(err), "key: ", 5) == 0, "%s", dx_error_message(err));
        dx_error_free(err);
    }
    BIO_free(out);
    BIO_free(in);
    EVP_PKEY_free(k);
}
END_TEST

START_TEST(der_certificates_and_keys_are_accepted)
{
    const uint8_t *der;
    size_t len;
    ck_assert_int_eq(dx_pki_cert_der(rsa, &der, &len), 0);
    BIO *in = BIO_new_mem_buf(dx_pki_key_pem(rsa), -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(in, NULL, NULL, NULL);
    unsigned char *kder = NULL;
    int klen = i2d_PrivateKey(k, &kder);
    ck_assert_int_gt(klen, 0);
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_cert(cfg, der, len, kder, (size_t)klen, NULL), 0);
    dx_tls_ctx *s = build(cfg);
    dx_tls_ctx *c = build(client_config(ca));
    hs r = handshake(s, c, NULL);
    ck_assert(r.ok);
    ck_assert_int_eq(r.server_key_type, EVP_PKEY_RSA);
    dx_tls_ctx_unref(s);
    dx_tls_ctx_unref(c);
    OPENSSL_free(kder);
    EVP_PKEY_free(k);
    BIO_free(in);
}
END_TEST

START_TEST(bad_credentials_name_the_option_and_the_cause)
{
    dx_tls_config *cfg;
    /* a key that belongs to another certificate, of the same type */
    dx_pki_cert *ec2 = leaf(ca, DX_PKI_EC_P256);
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *other_key = dx_pki_key_pem(ec2);
    ck_assert_int_eq(dx_tls_config_add_cert(cfg, pem(ec), pem_len(ec), other_key, strlen(other_key), NULL), 0);
    dx_error *err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_OSSL_X509_KEY_VALUES_MISMATCH");
    ck_assert_str_eq(dx_error_message(err), "key: key values mismatch");
    ck_assert_str_ne(dx_error_detail(err), "");
    dx_error_free(err);
    dx_pki_cert_free(ec2);
    /* ... and of another type */
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    other_key = dx_pki_key_pem(rsa);
    ck_assert_int_eq(dx_tls_config_add_cert(cfg, pem(ec), pem_len(ec), other_key, strlen(other_key), NULL), 0);
    err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_OSSL_X509_KEY_TYPE_MISMATCH");
    dx_error_free(err);
    /* not a certificate at all */
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_cert(cfg, "garbage", 7, "junk", 4, NULL), 0);
    err = build_fails(cfg);
    ck_assert_msg(strncmp(dx_error_message(err), "cert: ", 6) == 0, "%s", dx_error_message(err));
    ck_assert_msg(strncmp(dx_error_name(err), "ERR_OSSL_", 9) == 0, "%s", dx_error_name(err));
    dx_error_free(err);
    /* a CA list with nothing in it */
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_ca(cfg, "nothing here", 12), 0);
    err = build_fails(cfg);
    ck_assert_msg(strncmp(dx_error_message(err), "ca: ", 4) == 0, "%s", dx_error_message(err));
    dx_error_free(err);
    ck_assert_uint_eq(h_alloc_live() > 0, 1); /* the PKI is still alive */
}
END_TEST

START_TEST(bad_cipher_lists_are_refused_as_node_refuses_them)
{
    static const char *const bad[] = {"FOOBARBAZ", "TLS_not_a_cipher", "aes256-sha"};
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_set_ciphers(cfg, bad[_i]), 0);
    dx_error *err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_SSL_NO_CIPHER_MATCH");
    ck_assert_str_eq(dx_error_message(err), "ciphers: no cipher match");
    dx_error_free(err);
}
END_TEST

/* One cipher string, Node's way: TLS_ names for 1.3, the rest for 1.2. */
START_TEST(one_cipher_list_serves_both_versions)
{
    dx_tls_config *cfg = server_config(rsa);
    ck_assert_int_eq(dx_tls_config_set_ciphers(cfg, "TLS_CHACHA20_POLY1305_SHA256:ECDHE-RSA-AES256-GCM-SHA384"), 0);
    dx_tls_ctx *s = build(cfg);
    dx_tls_ctx *c13 = build(client_config(ca));
    cfg = client_config(ca);
    ck_assert_int_eq(dx_tls_config_set_max_version(cfg, "TLSv1.2"), 0);
    dx_tls_ctx *c12 = build(cfg);
    hs r = handshake(s, c13, NULL);
    ck_assert(r.ok);
    ck_assert_str_eq(r.version, "TLSv1.3");
    ck_assert_str_eq(r.cipher, "TLS_CHACHA20_POLY1305_SHA256");
    r = handshake(s, c12, NULL);
    ck_assert(r.ok);
    ck_assert_str_eq(r.version, "TLSv1.2");
    ck_assert_str_eq(r.cipher, "ECDHE-RSA-AES256-GCM-SHA384");
    dx_tls_ctx_unref(s);
    dx_tls_ctx_unref(c13);
    dx_tls_ctx_unref(c12);
}
END_TEST

START_TEST(versions_are_checked_and_applied)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_set_min_version(cfg, "TLSv9"), 0);
    dx_error *err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_TLS_INVALID_PROTOCOL_VERSION");
    ck_assert_str_eq(dx_error_message(err), "minVersion: \"TLSv9\" is not a supported TLS protocol version");
    dx_error_free(err);
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    dx_tls_config_set_min_version(cfg, "TLSv1.3");
    dx_tls_config_set_max_version(cfg, "TLSv1.2");
    err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_TLS_PROTOCOL_VERSION_CONFLICT");
    dx_error_free(err);

    /* a 1.3-only server and a 1.2-only client do not meet */
    cfg = server_config(ec);
    dx_tls_config_set_min_version(cfg, "TLSv1.3");
    dx_tls_ctx *s = build(cfg);
    cfg = client_config(ca);
    dx_tls_config_set_max_version(cfg, "TLSv1.2");
    dx_tls_ctx *c = build(cfg);
    ck_assert(!handshake(s, c, NULL).ok);
    dx_tls_ctx_unref(s);
    dx_tls_ctx_unref(c);
}
END_TEST

START_TEST(groups_and_sigalgs_are_checked_and_applied)
{
    dx_tls_config *cfg = server_config(ec);
    ck_assert_int_eq(dx_tls_config_set_groups(cfg, "P-384"), 0);
    dx_tls_ctx *s = build(cfg);
    dx_tls_ctx *c = build(client_config(ca));
    hs r = handshake(s, c, NULL);
    ck_assert(r.ok);
    ck_assert_str_eq(r.group, "secp384r1");
    dx_tls_ctx_unref(s);
    dx_tls_ctx_unref(c);

    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    dx_tls_config_set_groups(cfg, "not-a-curve");
    dx_error *err = build_fails(cfg);
    ck_assert_msg(strncmp(dx_error_message(err), "ecdhCurve: ", 11) == 0, "%s", dx_error_message(err));
    dx_error_free(err);
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    dx_tls_config_set_sigalgs(cfg, "RSA+NOPE");
    err = build_fails(cfg);
    ck_assert_msg(strncmp(dx_error_message(err), "sigalgs: ", 9) == 0, "%s", dx_error_message(err));
    dx_error_free(err);
}
END_TEST

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/dx-tls-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

START_TEST(files_are_read_when_the_context_is_built)
{
    char *cert = write_temp(pem(ec)), *key = write_temp(dx_pki_key_pem(ec));
    char *cafile = write_temp(pem(ca));
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_cert_file(cfg, cert, key, NULL), 0);
    dx_tls_ctx *s = build(cfg);
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_ca_file(cfg, cafile), 0);
    dx_tls_ctx *c = build(cfg);
    ck_assert(handshake(s, c, NULL).ok);
    dx_tls_ctx_unref(s);
    dx_tls_ctx_unref(c);

    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_ca_file(cfg, "/nonexistent/ca.pem"), 0);
    dx_error *err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_TLS_FILE");
    ck_assert_str_eq(dx_error_message(err), "ca: cannot read /nonexistent/ca.pem");
    dx_error_free(err);
    unlink(cert);
    unlink(key);
    unlink(cafile);
    free(cert);
    free(key);
    free(cafile);
}
END_TEST

START_TEST(setters_refuse_bad_arguments)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_ca(NULL, "x", 1), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_add_ca(cfg, NULL, 1), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_add_cert(cfg, "x", 1, NULL, 0, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_set_ciphers(cfg, NULL), DX_EINVAL);
    uint8_t id[33] = {0};
    ck_assert_int_eq(dx_tls_config_set_session_id_context(cfg, id, 33), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_set_session_id_context(cfg, id, 32), 0);
    ck_assert_int_eq(dx_tls_config_set_session_timeout(cfg, 0), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_set_session_timeout(cfg, 600), 0);
    ck_assert_int_eq(dx_tls_config_set_honor_cipher_order(NULL, true), DX_EINVAL);
    ck_assert_int_eq(dx_tls_ctx_new(NULL, NULL, NULL), DX_EINVAL);
    dx_tls_ctx *ctx = build(cfg);
    ck_assert_int_eq(SSL_CTX_get_timeout(dx_tls_ctx_openssl(ctx)), 600);
    ck_assert(dx_tls_ctx_honor_cipher_order(ctx));
    dx_tls_ctx_unref(ctx);
    dx_tls_ctx_unref(NULL);
    ck_assert_ptr_null(dx_tls_ctx_openssl(NULL));
}
END_TEST

/* One context, many threads: handshakes and references at once. */
typedef struct worker {
    dx_tls_ctx *s, *c;
    int ok;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 5; i++) {
        dx_tls_ctx *s = dx_tls_ctx_ref(w->s);
        dx_tls_ctx *c = dx_tls_ctx_ref(w->c);
        hs r = handshake(s, c, NULL);
        w->ok += r.ok && r.verify == X509_V_OK;
        dx_tls_ctx_unref(s);
        dx_tls_ctx_unref(c);
    }
    return NULL;
}

START_TEST(a_context_is_shared_safely_between_threads)
{
    dx_tls_ctx *s = build(server_config(ec));
    dx_tls_ctx *c = build(client_config(ca));
    pthread_t t[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){s, c, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(w[i].ok, 5);
    }
    dx_tls_ctx_unref(s);
    dx_tls_ctx_unref(c);
}
END_TEST

Suite *tls_context_suite(void)
{
    Suite *s = suite_create("tls_context");
    TCase *tc = tcase_create("context");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, pki_setup, pki_teardown);
    tcase_add_loop_test(tc, each_key_type_serves_a_verified_handshake, 0, 3);
    tcase_add_test(tc, several_credentials_are_chosen_by_the_peer);
    tcase_add_test(tc, a_certificate_from_another_ca_is_not_verified);
    tcase_add_test(tc, encrypted_keys_need_their_passphrase);
    tcase_add_test(tc, der_certificates_and_keys_are_accepted);
    tcase_add_test(tc, bad_credentials_name_the_option_and_the_cause);
    tcase_add_loop_test(tc, bad_cipher_lists_are_refused_as_node_refuses_them, 0, 3);
    tcase_add_test(tc, one_cipher_list_serves_both_versions);
    tcase_add_test(tc, versions_are_checked_and_applied);
    tcase_add_test(tc, groups_and_sigalgs_are_checked_and_applied);
    tcase_add_test(tc, files_are_read_when_the_context_is_built);
    tcase_add_test(tc, setters_refuse_bad_arguments);
    tcase_add_test(tc, a_context_is_shared_safely_between_threads);
    suite_add_tcase(s, tc);
    return s;
}
