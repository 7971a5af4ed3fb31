/*
 * TLS configuration and context (include/duplex/tls.h). Contexts are
 * proven by real handshakes: SSL objects made from two contexts talk over
 * an OpenSSL BIO pair in the test.
 */
#include "config.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

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

/* The PKI is made once for all tests (key generation is slow under
 * valgrind); each test must leave the library's memory as it found it. */
static size_t live_before_test;

static void leak_setup(void) { live_before_test = h_alloc_live(); }

static void leak_teardown(void)
{
    ck_assert_uint_eq(h_alloc_live(), live_before_test);
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

/* Checks that err has a name and a message that starts with the option
 * ("ciphers: ..."), and frees it. */
static void assert_option_error(dx_error *err, const char *option)
{
    size_t n = strlen(option);
    ck_assert_msg(strncmp(dx_error_message(err), option, n) == 0 &&
                      strncmp(dx_error_message(err) + n, ": ", 2) == 0,
                  "\"%s\" does not name %s", dx_error_message(err), option);
    ck_assert_str_ne(dx_error_name(err), "");
    dx_error_free(err);
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
    uint8_t served[32];     /* SHA-256 of the certificate served */
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
        unsigned n;
        if (x)
            ck_assert_int_eq(X509_digest(x, EVP_sha256(), r.served, &n), 1);
    }
    SSL_free(s);
    SSL_free(c);
    ERR_clear_error();
    return r;
}

/* Builds a context from each configuration (freeing them), runs one
 * handshake between them, and drops both contexts. */
static hs shake(dx_tls_config *server, dx_tls_config *client)
{
    dx_tls_ctx *s = build(server), *c = build(client);
    hs r = handshake(s, c, NULL);
    dx_tls_ctx_unref(s);
    dx_tls_ctx_unref(c);
    return r;
}

/* ---- tests ---- */

START_TEST(each_key_type_serves_a_verified_handshake)
{
    dx_pki_cert *certs[] = {rsa, ec, ed};
    int types[] = {EVP_PKEY_RSA, EVP_PKEY_EC, EVP_PKEY_ED25519};
    hs r = shake(server_config(certs[_i]), client_config(ca));
    ck_assert(r.ok);
    ck_assert_int_eq(r.verify, X509_V_OK);
    ck_assert_int_eq(r.server_key_type, types[_i]);
    ck_assert_str_eq(r.version, "TLSv1.3");
}
END_TEST

/* A server holding an RSA, an ECDSA and an Ed25519 identity serves each to
 * a client whose signature algorithms allow only that one. */
static void assert_serves_each_key_type(dx_tls_ctx *s)
{
    static const struct {
        const char *sigalgs;
        int type;
    } want[] = {{"rsa_pss_rsae_sha256", EVP_PKEY_RSA},
                {"ECDSA+SHA256", EVP_PKEY_EC},
                {"ed25519", EVP_PKEY_ED25519}};
    dx_tls_ctx *c = build(client_config(ca));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        hs r = handshake(s, c, want[i].sigalgs);
        ck_assert_msg(r.ok, "%s", want[i].sigalgs);
        ck_assert_int_eq(r.verify, X509_V_OK);
        ck_assert_int_eq(r.server_key_type, want[i].type);
    }
    dx_tls_ctx_unref(c);
}

/* Several credentials at once: the peer's signature algorithms pick. */
START_TEST(several_credentials_are_chosen_by_the_peer)
{
    dx_tls_config *cfg = server_config(rsa);
    add_cert(cfg, ec);
    add_cert(cfg, ed);
    dx_tls_ctx *s = build(cfg);
    assert_serves_each_key_type(s);
    dx_tls_ctx_unref(s);
}
END_TEST

START_TEST(a_certificate_from_another_ca_is_not_verified)
{
    hs r = shake(server_config(ec), client_config(other_ca));
    ck_assert(!r.ok);
    ck_assert_int_eq(r.verify, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
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
    ck_assert(shake(cfg, client_config(ca)).ok);

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
    hs r = shake(cfg, client_config(ca));
    ck_assert(r.ok);
    ck_assert_int_eq(r.server_key_type, EVP_PKEY_RSA);
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
    /* a damaged certificate after good ones, in a chain and in a CA list */
    static const char damaged[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    char bad_chain[8192];
    snprintf(bad_chain, sizeof(bad_chain), "%s%s", pem(ec), damaged);
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *k = dx_pki_key_pem(ec);
    ck_assert_int_eq(dx_tls_config_add_cert(cfg, bad_chain, strlen(bad_chain), k, strlen(k), NULL), 0);
    err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_OSSL_PEM_ASN1_LIB");
    assert_option_error(err, "cert");
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_ca(cfg, bad_chain, strlen(bad_chain)), 0);
    err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_OSSL_PEM_ASN1_LIB");
    assert_option_error(err, "ca");
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
    dx_tls_config *client = client_config(ca);
    dx_tls_config_set_max_version(client, "TLSv1.2");
    ck_assert(!shake(cfg, client).ok);
}
END_TEST

START_TEST(groups_and_sigalgs_are_checked_and_applied)
{
    dx_tls_config *cfg = server_config(ec);
    ck_assert_int_eq(dx_tls_config_set_groups(cfg, "P-384"), 0);
    hs r = shake(cfg, client_config(ca));
    ck_assert(r.ok);
    ck_assert_str_eq(r.group, "secp384r1");

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
    dx_tls_config *cfg, *client;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_cert_file(cfg, cert, key, NULL), 0);
    ck_assert_int_eq(dx_tls_config_new(&client), 0);
    ck_assert_int_eq(dx_tls_config_add_ca_file(client, cafile), 0);
    ck_assert(shake(cfg, client).ok);

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
    ck_assert_int_eq(dx_tls_config_add_pfx(cfg, NULL, 1, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_add_pfx(cfg, "x", 0, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_add_pfx_file(cfg, "", NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_add_cert_uri(cfg, "x", 1, "", NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_add_cert_uri(cfg, NULL, 0, "file:/k", NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_add_crl(NULL, "x", 1), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_add_crl_file(cfg, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_set_dhparam(cfg, "auto", 0), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_set_secure_protocol(cfg, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_config_set_allow_partial_trust_chain(NULL, true), DX_EINVAL);
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

/* ---- OpenSSL objects of the test PKI ---- */

static void sha256_of(const dx_pki_cert *c, uint8_t out[32])
{
    X509 *x = h_pki_x509(c);
    unsigned n;
    ck_assert_int_eq(X509_digest(x, EVP_sha256(), out, &n), 1);
    X509_free(x);
}

/* A leaf's PEM followed by its issuer's: a chain for dx_tls_config_add_cert. */
static char *chain_of(const dx_pki_cert *leaf_cert, const dx_pki_cert *issuer)
{
    size_t a = pem_len(leaf_cert), b = pem_len(issuer);
    char *text = malloc(a + b + 1);
    ck_assert_ptr_nonnull(text);
    memcpy(text, pem(leaf_cert), a);
    memcpy(text + a, pem(issuer), b + 1);
    return text;
}

static dx_pki_cert *intermediate(void)
{
    dx_pki_opts o = {.common_name = "Test Intermediate", .is_ca = true};
    dx_pki_cert *c;
    ck_assert_int_eq(dx_pki_issue(ca, &o, &c, NULL), 0);
    return c;
}

/* A PKCS#12 archive (DER) of c's certificate and key, with extra as its
 * chain when not NULL. OPENSSL_free() it. */
static unsigned char *make_pfx(const dx_pki_cert *c, const dx_pki_cert *extra,
                               const char *pass, size_t *len)
{
    X509 *x = h_pki_x509(c);
    EVP_PKEY *k = h_pki_key(c);
    STACK_OF(X509) *chain = NULL;
    if (extra) {
        chain = sk_X509_new_null();
        ck_assert_int_eq(sk_X509_push(chain, h_pki_x509(extra)), 1);
    }
    PKCS12 *p12 = PKCS12_create(pass, "test", k, x, chain, 0, 0, 0, 0, 0);
    ck_assert_ptr_nonnull(p12);
    unsigned char *der = NULL;
    int n = i2d_PKCS12(p12, &der);
    ck_assert_int_gt(n, 0);
    *len = (size_t)n;
    PKCS12_free(p12);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(k);
    X509_free(x);
    return der;
}

/* Domain parameters of an algorithm ("DH" with group "ffdhe2048", "EC"
 * with group "P-256") as PEM, for free(). */
static char *make_params(const char *alg, const char *group)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL);
    ck_assert_ptr_nonnull(pc);
    ck_assert_int_eq(EVP_PKEY_paramgen_init(pc), 1);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
        OSSL_PARAM_construct_end()};
    ck_assert_int_eq(EVP_PKEY_CTX_set_params(pc, params), 1);
    EVP_PKEY *p = NULL;
    ck_assert_int_eq(EVP_PKEY_paramgen(pc, &p), 1);
    BIO *out = BIO_new(BIO_s_mem());
    ck_assert_int_eq(PEM_write_bio_Parameters(out, p), 1);
    char *text = h_bio_text(out);
    BIO_free(out);
    EVP_PKEY_free(p);
    EVP_PKEY_CTX_free(pc);
    return text;
}

/* c's key encrypted with AES-256 under pass, as PKCS#8 PEM for free(). */
static char *encrypted_key(const dx_pki_cert *c, const char *pass)
{
    EVP_PKEY *k = h_pki_key(c);
    BIO *out = BIO_new(BIO_s_mem());
    ck_assert_int_eq(PEM_write_bio_PKCS8PrivateKey(out, k, EVP_aes_256_cbc(), NULL, 0,
                                                   NULL, (void *)pass), 1);
    char *text = h_bio_text(out);
    BIO_free(out);
    EVP_PKEY_free(k);
    return text;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* A fresh directory under /tmp and the paths made in it, removed by
 * tmp_remove(). */
typedef struct tmpdir {
    char dir[64];
    char paths[8][128];
    int n;
} tmpdir;

static void tmp_make(tmpdir *t)
{
    t->n = 0;
    snprintf(t->dir, sizeof(t->dir), "/tmp/dx-tls-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
}

/* The path of name in t (removed, file or directory, by tmp_remove()). */
static const char *tmp_path(tmpdir *t, const char *name)
{
    ck_assert_int_lt(t->n, 8);
    char *dst = t->paths[t->n];
    size_t dl = strlen(t->dir), nl = strlen(name);
    ck_assert_uint_lt(dl + 1 + nl, sizeof(t->paths[0]));
    memcpy(dst, t->dir, dl);
    dst[dl] = '/';
    memcpy(dst + dl + 1, name, nl + 1);
    t->n++;
    return dst;
}

static void tmp_remove(tmpdir *t)
{
    while (t->n > 0)
        remove(t->paths[--t->n]);
    ck_assert_int_eq(rmdir(t->dir), 0);
}

/* ---- PKCS#12, key URIs ---- */

START_TEST(pfx_credentials_carry_their_chain)
{
    dx_pki_cert *inter = intermediate();
    dx_pki_cert *srv = leaf(inter, DX_PKI_EC_P256);
    size_t len;
    unsigned char *der = make_pfx(srv, inter, "sesame", &len);
    tmpdir t;
    tmp_make(&t);
    const char *path = tmp_path(&t, "server.pfx");
    write_file(path, der, len);

    for (int from_file = 0; from_file < 2; from_file++) {
        dx_tls_config *cfg;
        ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
        if (from_file)
            ck_assert_int_eq(dx_tls_config_add_pfx_file(cfg, path, "sesame"), 0);
        else
            ck_assert_int_eq(dx_tls_config_add_pfx(cfg, der, len, "sesame"), 0);
        /* the client trusts the root only: the intermediate came from the
         * archive */
        hs r = shake(cfg, client_config(ca));
        ck_assert(r.ok);
        ck_assert_int_eq(r.verify, X509_V_OK);
    }
    tmp_remove(&t);
    OPENSSL_free(der);
    dx_pki_cert_free(srv);
    dx_pki_cert_free(inter);
}
END_TEST

START_TEST(several_pfx_serve_several_key_types)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    dx_pki_cert *certs[] = {ed, rsa, ec};
    for (int i = 0; i < 3; i++) {
        size_t len;
        unsigned char *der = make_pfx(certs[i], NULL, "pfx", &len);
        ck_assert_int_eq(dx_tls_config_add_pfx(cfg, der, len, "pfx"), 0);
        OPENSSL_free(der);
    }
    dx_tls_ctx *s = build(cfg);
    assert_serves_each_key_type(s);
    dx_tls_ctx_unref(s);
}
END_TEST

START_TEST(pfx_passphrases_are_checked_at_build)
{
    size_t len;
    unsigned char *der = make_pfx(ec, NULL, "sesame", &len);
    const char *wrong[] = {"wrong", NULL};
    for (int i = 0; i < 2; i++) {
        dx_tls_config *cfg;
        ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
        ck_assert_int_eq(dx_tls_config_add_pfx(cfg, der, len, wrong[i]), 0);
        dx_error *err = build_fails(cfg);
        ck_assert_str_eq(dx_error_name(err), "ERR_OSSL_PKCS12_MAC_VERIFY_FAILURE");
        ck_assert_str_eq(dx_error_message(err), "pfx: mac verify failure");
        dx_error_free(err);
    }
    OPENSSL_free(der);

    /* an archive under the empty passphrase opens without one */
    der = make_pfx(ec, NULL, "", &len);
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_pfx(cfg, der, len, NULL), 0);
    ck_assert(shake(cfg, client_config(ca)).ok);
    OPENSSL_free(der);

    /* not an archive; a file that is not there */
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_pfx(cfg, pem(ec), pem_len(ec), NULL), 0);
    dx_error *err = build_fails(cfg);
    ck_assert_msg(strncmp(dx_error_name(err), "ERR_OSSL_", 9) == 0, "%s", dx_error_name(err));
    assert_option_error(err, "pfx");
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_pfx_file(cfg, "/nonexistent/a.pfx", NULL), 0);
    err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_TLS_FILE");
    assert_option_error(err, "pfx");
}
END_TEST

START_TEST(a_key_is_fetched_by_uri)
{
    char *enc = encrypted_key(ec, "sesame");
    tmpdir t;
    tmp_make(&t);
    const char *path = tmp_path(&t, "key.pem");
    write_file(path, enc, strlen(enc));
    char uri[200];
    snprintf(uri, sizeof(uri), "file:%s", path);

    const char *names[] = {uri, path};
    for (int i = 0; i < 2; i++) {
        dx_tls_config *cfg;
        ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
        ck_assert_int_eq(dx_tls_config_add_cert_uri(cfg, pem(ec), pem_len(ec), names[i], "sesame"), 0);
        hs r = shake(cfg, client_config(ca));
        ck_assert(r.ok);
        ck_assert_int_eq(r.server_key_type, EVP_PKEY_EC);
    }

    /* a store with several keys gives its first */
    const char *two = tmp_path(&t, "two.pem");
    char *keys = malloc(strlen(enc) + strlen(dx_pki_key_pem(rsa)) + 1);
    ck_assert_ptr_nonnull(keys);
    strcpy(keys, dx_pki_key_pem(rsa));
    strcat(keys, enc);
    write_file(two, keys, strlen(keys));
    free(keys);
    for (int i = 0; i < 2; i++) {
        const dx_pki_cert *owner = i == 0 ? rsa : ec;
        dx_tls_config *cfg;
        ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
        ck_assert_int_eq(dx_tls_config_add_cert_uri(cfg, pem(owner), pem_len(owner), two, "sesame"), 0);
        dx_tls_ctx *ctx = NULL;
        dx_error *err = NULL;
        ck_assert_int_eq(dx_tls_ctx_new(cfg, &ctx, &err), i == 0 ? 0 : DX_ETLS);
        dx_tls_ctx_unref(ctx);
        dx_error_free(err);
        dx_tls_config_free(cfg);
    }

    /* wrong or missing passphrase, a key of another certificate, no key */
    static const char *const pass[] = {"wrong", NULL, "sesame"};
    for (int i = 0; i < 3; i++) {
        dx_tls_config *cfg;
        ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
        const dx_pki_cert *owner = i == 2 ? rsa : ec;
        ck_assert_int_eq(dx_tls_config_add_cert_uri(cfg, pem(owner), pem_len(owner), uri, pass[i]), 0);
        dx_error *err = build_fails(cfg);
        if (i == 2)
            ck_assert_str_eq(dx_error_name(err), "ERR_OSSL_X509_KEY_TYPE_MISMATCH");
        assert_option_error(err, "key");
    }
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_cert_uri(cfg, pem(ec), pem_len(ec), "file:/nonexistent/key.pem", NULL), 0);
    dx_error *err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_OSSL_SYS_NO_SUCH_FILE_OR_DIRECTORY");
    ck_assert_str_eq(dx_error_message(err), "key: No such file or directory");
    dx_error_free(err);
    /* a file that holds no key */
    const char *cert_only = tmp_path(&t, "cert.pem");
    write_file(cert_only, pem(ec), pem_len(ec));
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_cert_uri(cfg, pem(ec), pem_len(ec), cert_only, NULL), 0);
    err = build_fails(cfg);
    ck_assert_str_eq(dx_error_message(err), "key: no private key found");
    dx_error_free(err);

    tmp_remove(&t);
    struct stat st;
    ck_assert_int_ne(stat(t.dir, &st), 0);
    free(enc);
}
END_TEST

/* PEM, PKCS#12 and a key URI in one configuration, one per key type. */
START_TEST(identities_from_every_source_live_side_by_side)
{
    size_t len;
    unsigned char *der = make_pfx(ec, NULL, "pfx", &len);
    tmpdir t;
    tmp_make(&t);
    const char *path = tmp_path(&t, "ed.pem");
    write_file(path, dx_pki_key_pem(ed), strlen(dx_pki_key_pem(ed)));

    dx_tls_config *cfg = server_config(rsa);
    ck_assert_int_eq(dx_tls_config_add_pfx(cfg, der, len, "pfx"), 0);
    ck_assert_int_eq(dx_tls_config_add_cert_uri(cfg, pem(ed), pem_len(ed), path, NULL), 0);
    dx_tls_ctx *s = build(cfg);
    assert_serves_each_key_type(s);
    dx_tls_ctx_unref(s);
    tmp_remove(&t);
    OPENSSL_free(der);
}
END_TEST

START_TEST(a_second_identity_of_a_type_replaces_the_first)
{
    dx_pki_cert *ec2 = leaf(ca, DX_PKI_EC_P256);
    dx_tls_config *cfg = server_config(ec);
    add_cert(cfg, ec2);
    hs r = shake(cfg, client_config(ca));
    ck_assert(r.ok);
    uint8_t want[32];
    sha256_of(ec2, want);
    ck_assert_mem_eq(r.served, want, 32);
    dx_pki_cert_free(ec2);
}
END_TEST

/* Node: a server context without a certificate can be made (for
 * certificate-less suites); a handshake that needs one then fails. */
START_TEST(a_server_without_a_certificate_still_builds)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    dx_tls_ctx *s = build(cfg);
    dx_tls_ctx *c = build(client_config(ca));
    ck_assert_ptr_null(SSL_CTX_get0_certificate(dx_tls_ctx_openssl(s)));
    ck_assert(!handshake(s, c, NULL).ok);
    dx_tls_ctx_unref(s);
    dx_tls_ctx_unref(c);
}
END_TEST

/* ---- revocation and partial chains ---- */

static dx_tls_ctx *client_with_crls(const char *const *crls)
{
    dx_tls_config *cfg = client_config(ca);
    for (; *crls; crls++)
        ck_assert_int_eq(dx_tls_config_add_crl(cfg, *crls, strlen(*crls)), 0);
    return build(cfg);
}

START_TEST(revoked_certificates_fail_verification)
{
    const dx_pki_cert *revoked[] = {ec, NULL};
    char *crl = h_make_crl(ca, revoked);
    dx_tls_ctx *s_ec = build(server_config(ec)), *s_rsa = build(server_config(rsa));

    /* without the CRL, both verify */
    dx_tls_ctx *c = build(client_config(ca));
    ck_assert(handshake(s_ec, c, NULL).ok);
    dx_tls_ctx_unref(c);

    tmpdir t;
    tmp_make(&t);
    const char *path = tmp_path(&t, "ca.crl");
    write_file(path, crl, strlen(crl));
    for (int from_file = 0; from_file < 2; from_file++) {
        dx_tls_config *cfg = client_config(ca);
        if (from_file)
            ck_assert_int_eq(dx_tls_config_add_crl_file(cfg, path), 0);
        else
            ck_assert_int_eq(dx_tls_config_add_crl(cfg, crl, strlen(crl)), 0);
        c = build(cfg);
        hs r = handshake(s_ec, c, NULL);
        ck_assert(!r.ok);
        ck_assert_int_eq(r.verify, X509_V_ERR_CERT_REVOKED);
        r = handshake(s_rsa, c, NULL);
        ck_assert(r.ok);
        ck_assert_int_eq(r.verify, X509_V_OK);
        dx_tls_ctx_unref(c);
    }
    tmp_remove(&t);
    dx_tls_ctx_unref(s_ec);
    dx_tls_ctx_unref(s_rsa);
    free(crl);
}
END_TEST

/* Node's CRL_CHECK_ALL: the intermediate is checked as well as the leaf,
 * and each needs a CRL from its issuer. */
START_TEST(crls_are_checked_down_to_the_root)
{
    dx_pki_cert *inter = intermediate();
    dx_pki_cert *srv = leaf(inter, DX_PKI_EC_P256);
    const dx_pki_cert *none[] = {NULL}, *inter_revoked[] = {inter, NULL};
    char *root_crl = h_make_crl(ca, none), *root_revokes = h_make_crl(ca, inter_revoked);
    char *inter_crl = h_make_crl(inter, none);
    char *chain = chain_of(srv, inter);
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *k = dx_pki_key_pem(srv);
    ck_assert_int_eq(dx_tls_config_add_cert(cfg, chain, strlen(chain), k, strlen(k), NULL), 0);
    dx_tls_ctx *s = build(cfg);

    const char *both[] = {root_crl, inter_crl, NULL};
    dx_tls_ctx *c = client_with_crls(both);
    hs r = handshake(s, c, NULL);
    ck_assert(r.ok);
    ck_assert_int_eq(r.verify, X509_V_OK);
    dx_tls_ctx_unref(c);

    const char *revoking[] = {root_revokes, inter_crl, NULL};
    c = client_with_crls(revoking);
    r = handshake(s, c, NULL);
    ck_assert(!r.ok);
    ck_assert_int_eq(r.verify, X509_V_ERR_CERT_REVOKED);
    dx_tls_ctx_unref(c);

    const char *root_only[] = {root_crl, NULL};
    c = client_with_crls(root_only);
    r = handshake(s, c, NULL);
    ck_assert(!r.ok);
    ck_assert_int_eq(r.verify, X509_V_ERR_UNABLE_TO_GET_CRL);
    dx_tls_ctx_unref(c);

    dx_tls_ctx_unref(s);
    free(chain);
    free(root_crl);
    free(root_revokes);
    free(inter_crl);
    dx_pki_cert_free(srv);
    dx_pki_cert_free(inter);
}
END_TEST

START_TEST(bad_crls_are_refused)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_crl(cfg, pem(ca), pem_len(ca)), 0);
    dx_error *err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_OSSL_PEM_NO_START_LINE");
    assert_option_error(err, "crl");
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_add_crl_file(cfg, "/nonexistent/ca.crl"), 0);
    err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_TLS_FILE");
    assert_option_error(err, "crl");
}
END_TEST

START_TEST(partial_trust_chains_are_opt_in)
{
    dx_pki_cert *inter = intermediate();
    dx_pki_cert *srv = leaf(inter, DX_PKI_EC_P256);
    char *chain = chain_of(srv, inter);
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *k = dx_pki_key_pem(srv);
    ck_assert_int_eq(dx_tls_config_add_cert(cfg, chain, strlen(chain), k, strlen(k), NULL), 0);
    dx_tls_ctx *s = build(cfg);

    /* the client trusts the intermediate alone */
    dx_tls_ctx *c = build(client_config(inter));
    hs r = handshake(s, c, NULL);
    ck_assert(!r.ok);
    ck_assert_int_eq(r.verify, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT);
    dx_tls_ctx_unref(c);

    cfg = client_config(inter);
    ck_assert_int_eq(dx_tls_config_set_allow_partial_trust_chain(cfg, true), 0);
    c = build(cfg);
    r = handshake(s, c, NULL);
    ck_assert(r.ok);
    ck_assert_int_eq(r.verify, X509_V_OK);
    dx_tls_ctx_unref(c);

    dx_tls_ctx_unref(s);
    free(chain);
    dx_pki_cert_free(srv);
    dx_pki_cert_free(inter);
}
END_TEST

/* ---- Diffie-Hellman parameters ---- */

/* 512-bit parameters, made once with `openssl dhparam 512`. */
static const char dh512[] =
    "-----BEGIN DH PARAMETERS-----\n"
    "MEYCQQCegC9B+MMHmYdLDaURw9bmLtxGxcTb6YoRD0BnuqEvpyyXmI68Tfv6nHOb\n"
    "Kqw+bZY+939DAo+rqCu9qc2NGaF/AgEC\n"
    "-----END DH PARAMETERS-----\n";

#define DHE_CIPHER "DHE-RSA-AES128-GCM-SHA256"

/* A TLS 1.2 handshake that can only use a DHE suite, against a server
 * with the given dhparam (NULL for none). */
static hs dhe_handshake(const void *dhparam, size_t len)
{
    dx_tls_config *server = server_config(rsa), *client = client_config(ca);
    ck_assert_int_eq(dx_tls_config_set_ciphers(server, DHE_CIPHER), 0);
    if (dhparam)
        ck_assert_int_eq(dx_tls_config_set_dhparam(server, dhparam, len), 0);
    ck_assert_int_eq(dx_tls_config_set_max_version(client, "TLSv1.2"), 0);
    ck_assert_int_eq(dx_tls_config_set_ciphers(client, DHE_CIPHER), 0);
    return shake(server, client);
}

START_TEST(dh_parameters_enable_dhe)
{
    ck_assert(!dhe_handshake(NULL, 0).ok);
    char *ffdhe2048 = make_params("DH", "ffdhe2048");
    /* the same in DER */
    BIO *in = BIO_new_mem_buf(ffdhe2048, -1);
    EVP_PKEY *p = PEM_read_bio_Parameters(in, NULL);
    ck_assert_ptr_nonnull(p);
    unsigned char *der = NULL;
    int der_len = i2d_KeyParams(p, &der);
    ck_assert_int_gt(der_len, 0);
    const void *params[] = {ffdhe2048, der, "auto"};
    size_t lens[] = {strlen(ffdhe2048), (size_t)der_len, 4};
    for (int i = 0; i < 3; i++) {
        hs r = dhe_handshake(params[i], lens[i]);
        ck_assert_msg(r.ok, "dhparam %d", i);
        ck_assert_str_eq(r.cipher, DHE_CIPHER);
        ck_assert_str_eq(r.version, "TLSv1.2");
    }
    OPENSSL_free(der);
    EVP_PKEY_free(p);
    BIO_free(in);
    free(ffdhe2048);
}
END_TEST

START_TEST(small_or_foreign_dh_parameters_are_refused)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_set_dhparam(cfg, dh512, strlen(dh512)), 0);
    dx_error *err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_TLS_DH_PARAM_SIZE");
    ck_assert_str_eq(dx_error_message(err), "dhparam: DH parameter is less than 1024 bits (512)");
    dx_error_free(err);

    char *p256 = make_params("EC", "P-256");
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_set_dhparam(cfg, p256, strlen(p256)), 0);
    err = build_fails(cfg);
    ck_assert_str_eq(dx_error_message(err), "dhparam: EC parameters are not DH parameters");
    dx_error_free(err);
    free(p256);

    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    ck_assert_int_eq(dx_tls_config_set_dhparam(cfg, "automatic", 9), 0);
    assert_option_error(build_fails(cfg), "dhparam");
}
END_TEST

/* ---- secureProtocol ---- */

START_TEST(secure_protocol_names_map_to_versions)
{
    static const struct {
        const char *name;
        int min, max;
        char role; /* any, server, client */
    } methods[] = {
        {"TLS_method", 0, TLS1_3_VERSION, 'a'},
        {"TLS_server_method", 0, TLS1_3_VERSION, 's'},
        {"TLS_client_method", 0, TLS1_3_VERSION, 'c'},
        {"SSLv23_method", TLS1_2_VERSION, TLS1_2_VERSION, 'a'},
        {"SSLv23_server_method", TLS1_2_VERSION, TLS1_2_VERSION, 's'},
        {"TLSv1_method", TLS1_VERSION, TLS1_VERSION, 'a'},
        {"TLSv1_1_client_method", TLS1_1_VERSION, TLS1_1_VERSION, 'c'},
        {"TLSv1_2_method", TLS1_2_VERSION, TLS1_2_VERSION, 'a'},
        {"TLSv1_2_server_method", TLS1_2_VERSION, TLS1_2_VERSION, 's'},
        {"TLSv1_3_method", TLS1_3_VERSION, TLS1_3_VERSION, 'a'},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        dx_tls_config *cfg;
        ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
        ck_assert_int_eq(dx_tls_config_set_secure_protocol(cfg, methods[i].name), 0);
        dx_tls_ctx *ctx = build(cfg);
        SSL_CTX *ssl = dx_tls_ctx_openssl(ctx);
        ck_assert_msg(SSL_CTX_get_min_proto_version(ssl) == methods[i].min &&
                          SSL_CTX_get_max_proto_version(ssl) == methods[i].max,
                      "%s", methods[i].name);
        const SSL_METHOD *m = SSL_CTX_get_ssl_method(ssl);
        ck_assert(m == (methods[i].role == 's'   ? TLS_server_method()
                        : methods[i].role == 'c' ? TLS_client_method()
                                                 : TLS_method()));
        dx_tls_ctx_unref(ctx);
    }
}
END_TEST

START_TEST(a_forced_protocol_is_negotiated_and_restricts_the_role)
{
    dx_tls_config *cfg = server_config(ec);
    ck_assert_int_eq(dx_tls_config_set_secure_protocol(cfg, "TLSv1_2_method"), 0);
    hs r = shake(cfg, client_config(ca));
    ck_assert(r.ok);
    ck_assert_str_eq(r.version, "TLSv1.2");

    /* a client-only context cannot serve, but can connect */
    cfg = server_config(ec);
    ck_assert_int_eq(dx_tls_config_set_secure_protocol(cfg, "TLS_client_method"), 0);
    ck_assert(!shake(cfg, client_config(ca)).ok);
    cfg = client_config(ca);
    ck_assert_int_eq(dx_tls_config_set_secure_protocol(cfg, "TLS_client_method"), 0);
    ck_assert(shake(server_config(ec), cfg).ok);
}
END_TEST

START_TEST(bad_secure_protocols_are_refused_as_node_refuses_them)
{
    static const struct {
        const char *name, *message;
    } bad[] = {
        {"SSLv2_method", "secureProtocol: SSLv2 methods disabled"},
        {"SSLv2_client_method", "secureProtocol: SSLv2 methods disabled"},
        {"SSLv3_method", "secureProtocol: SSLv3 methods disabled"},
        {"SSLv3_server_method", "secureProtocol: SSLv3 methods disabled"},
        {"blargh", "secureProtocol: Unknown method: blargh"},
        {"TLSv1_4_method", "secureProtocol: Unknown method: TLSv1_4_method"},
        {"_method", "secureProtocol: Unknown method: _method"},
        {"TLSv1_2", "secureProtocol: Unknown method: TLSv1_2"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dx_tls_config *cfg;
        ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
        ck_assert_int_eq(dx_tls_config_set_secure_protocol(cfg, bad[i].name), 0);
        dx_error *err = build_fails(cfg);
        ck_assert_str_eq(dx_error_name(err), "ERR_TLS_INVALID_PROTOCOL_METHOD");
        ck_assert_str_eq(dx_error_message(err), bad[i].message);
        dx_error_free(err);
    }
    /* with minVersion or maxVersion: Node's conflict */
    for (int i = 0; i < 2; i++) {
        dx_tls_config *cfg;
        ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
        ck_assert_int_eq(dx_tls_config_set_secure_protocol(cfg, "TLSv1_2_method"), 0);
        if (i == 0)
            ck_assert_int_eq(dx_tls_config_set_min_version(cfg, "TLSv1.2"), 0);
        else
            ck_assert_int_eq(dx_tls_config_set_max_version(cfg, "TLSv1.3"), 0);
        dx_error *err = build_fails(cfg);
        ck_assert_str_eq(dx_error_name(err), "ERR_TLS_PROTOCOL_VERSION_CONFLICT");
        ck_assert_str_eq(dx_error_message(err),
                         i == 0 ? "secureProtocol: \"TLSv1_2_method\" conflicts with minVersion \"TLSv1.2\""
                                : "secureProtocol: \"TLSv1_2_method\" conflicts with maxVersion \"TLSv1.3\"");
        dx_error_free(err);
    }
}
END_TEST

/* ---- process defaults ---- */

/* The first TLS 1.2 cipher of a context's list. */
static const char *first_legacy_cipher(dx_tls_ctx *ctx)
{
    STACK_OF(SSL_CIPHER) *sk = SSL_CTX_get_ciphers(dx_tls_ctx_openssl(ctx));
    for (int i = 0; i < sk_SSL_CIPHER_num(sk); i++) {
        const char *name = SSL_CIPHER_get_name(sk_SSL_CIPHER_value(sk, i));
        if (strncmp(name, "TLS_", 4) != 0)
            return name;
    }
    return "";
}

static bool has_cipher(dx_tls_ctx *ctx, const char *name)
{
    STACK_OF(SSL_CIPHER) *sk = SSL_CTX_get_ciphers(dx_tls_ctx_openssl(ctx));
    for (int i = 0; i < sk_SSL_CIPHER_num(sk); i++)
        if (strcmp(SSL_CIPHER_get_name(sk_SSL_CIPHER_value(sk, i)), name) == 0)
            return true;
    return false;
}

START_TEST(contexts_use_nodes_default_ciphers)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    dx_tls_ctx *ctx = build(cfg);
    /* OpenSSL's own default starts with ECDHE-ECDSA-AES256-GCM-SHA384 and
     * has CAMELLIA */
    ck_assert_str_eq(first_legacy_cipher(ctx), "ECDHE-RSA-AES128-GCM-SHA256");
    ck_assert(!has_cipher(ctx, "CAMELLIA256-SHA"));
    ck_assert(has_cipher(ctx, "TLS_CHACHA20_POLY1305_SHA256"));
    dx_tls_ctx_unref(ctx);
}
END_TEST

START_TEST(new_configs_start_from_the_process_defaults)
{
    dx_tls_config *before;
    ck_assert_int_eq(dx_tls_config_new(&before), 0);
    ck_assert_int_eq(dx_tls_set_default_ciphers("ECDHE-ECDSA-AES128-SHA"), 0);
    /* P-256 too: a TLS 1.2 client must offer the curve of the ECDSA
     * certificate */
    ck_assert_int_eq(dx_tls_set_default_groups("P-384:P-256"), 0);
    ck_assert_int_eq(dx_tls_set_default_max_version("TLSv1.2"), 0);
    ck_assert_int_eq(dx_tls_set_default_min_version("TLSv1.1"), 0);
    dx_tls_ctx *s = build(server_config(ec)), *c = build(client_config(ca));
    hs r = handshake(s, c, NULL);
    ck_assert(r.ok);
    ck_assert_str_eq(r.version, "TLSv1.2");
    ck_assert_str_eq(r.cipher, "ECDHE-ECDSA-AES128-SHA");
    ck_assert_str_eq(r.group, "secp384r1");
    ck_assert_int_eq(SSL_CTX_get_min_proto_version(dx_tls_ctx_openssl(c)), TLS1_1_VERSION);
    dx_tls_ctx_unref(c);

    /* the configuration's own settings win */
    dx_tls_config *cfg = client_config(ca);
    ck_assert_int_eq(dx_tls_config_set_max_version(cfg, "TLSv1.3"), 0);
    ck_assert_int_eq(dx_tls_config_set_groups(cfg, "X25519"), 0);
    ck_assert_int_eq(dx_tls_config_set_ciphers(cfg, "ECDHE-ECDSA-AES256-SHA"), 0);
    c = build(cfg);
    ck_assert_str_eq(first_legacy_cipher(c), "ECDHE-ECDSA-AES256-SHA");
    ck_assert_int_eq(SSL_CTX_get_max_proto_version(dx_tls_ctx_openssl(c)), TLS1_3_VERSION);
    dx_tls_ctx_unref(c);

    /* a configuration made before keeps what it copied */
    ck_assert_int_eq(dx_tls_config_add_ca(before, pem(ca), pem_len(ca)), 0);
    c = build(before);
    ck_assert_str_eq(first_legacy_cipher(c), "ECDHE-RSA-AES128-GCM-SHA256");
    ck_assert_int_eq(SSL_CTX_get_max_proto_version(dx_tls_ctx_openssl(c)), TLS1_3_VERSION);
    r = handshake(s, c, NULL);
    ck_assert(r.ok);
    ck_assert_str_eq(r.version, "TLSv1.2");
    /* by its own "auto" order, which puts P-256 before P-384 */
    ck_assert_str_eq(r.group, "secp256r1");
    dx_tls_ctx_unref(c);
    dx_tls_ctx_unref(s);

    /* a bad default fails the build, naming the option */
    ck_assert_int_eq(dx_tls_set_default_min_version("TLSv9"), 0);
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    dx_error *err = build_fails(cfg);
    ck_assert_str_eq(dx_error_name(err), "ERR_TLS_INVALID_PROTOCOL_VERSION");
    assert_option_error(err, "minVersion");
    ck_assert_int_eq(dx_tls_set_default_ciphers("FOOBARBAZ"), 0);
    ck_assert_int_eq(dx_tls_set_default_min_version(NULL), 0);
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    assert_option_error(build_fails(cfg), "ciphers");

    /* NULL restores the built-in defaults */
    ck_assert_int_eq(dx_tls_set_default_ciphers(NULL), 0);
    ck_assert_int_eq(dx_tls_set_default_groups(NULL), 0);
    ck_assert_int_eq(dx_tls_set_default_max_version(NULL), 0);
    ck_assert_int_eq(dx_tls_set_default_min_version(NULL), 0);
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    c = build(cfg);
    SSL_CTX *ssl = dx_tls_ctx_openssl(c);
    ck_assert_str_eq(first_legacy_cipher(c), "ECDHE-RSA-AES128-GCM-SHA256");
    ck_assert_int_eq(SSL_CTX_get_min_proto_version(ssl), TLS1_2_VERSION);
    ck_assert_int_eq(SSL_CTX_get_max_proto_version(ssl), TLS1_3_VERSION);
    dx_tls_ctx_unref(c);
}
END_TEST

/* ---- module-level lists ---- */

START_TEST(supported_ciphers_are_listed_as_node_lists_them)
{
    dx_tls_list *l;
    ck_assert_int_eq(dx_tls_get_ciphers(&l), 0);
    size_t n = dx_tls_list_count(l);
    ck_assert_uint_ge(n, 20);
    static const char *const expected[] = {
        "tls_aes_256_gcm_sha384", "tls_chacha20_poly1305_sha256",
        "tls_aes_128_gcm_sha256", "tls_aes_128_ccm_sha256",
        "tls_aes_128_ccm_8_sha256", "ecdhe-rsa-aes128-gcm-sha256",
        "aes128-gcm-sha256", "aes128-sha"};
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = dx_tls_list_get(l, i);
        for (const char *p = name; *p; p++)
            ck_assert_msg(!isupper((unsigned char)*p), "%s", name);
        if (i > 0)
            ck_assert_msg(strcmp(dx_tls_list_get(l, i - 1), name) < 0,
                          "%s before %s", dx_tls_list_get(l, i - 1), name);
        for (size_t k = 0; k < sizeof(expected) / sizeof(expected[0]); k++)
            found += strcmp(name, expected[k]) == 0;
        /* upper-cased, each is a cipher list of its own */
        char upper[64];
        size_t j = 0;
        for (; name[j] && j + 1 < sizeof(upper); j++)
            upper[j] = (char)toupper((unsigned char)name[j]);
        upper[j] = '\0';
        dx_tls_config *cfg = client_config(ca);
        ck_assert_int_eq(dx_tls_config_set_ciphers(cfg, upper), 0);
        dx_tls_ctx_unref(build(cfg));
    }
    ck_assert_uint_eq(found, sizeof(expected) / sizeof(expected[0]));
    ck_assert_ptr_null(dx_tls_list_get(l, n));
    dx_tls_list_free(l);
}
END_TEST

/* Sets an environment variable for the test; restore_env() puts back the
 * old value. */
typedef struct saved_env {
    const char *name;
    char *value;
} saved_env;

static saved_env set_env(const char *name, const char *value)
{
    const char *old = getenv(name);
    saved_env s = {name, old ? strdup(old) : NULL};
    ck_assert_int_eq(setenv(name, value, 1), 0);
    return s;
}

static void restore_env(saved_env *s)
{
    if (s->value)
        ck_assert_int_eq(setenv(s->name, s->value, 1), 0);
    else
        ck_assert_int_eq(unsetenv(s->name), 0);
    free(s->value);
}

static bool list_has(const dx_tls_list *l, const char *text)
{
    for (size_t i = 0; i < dx_tls_list_count(l); i++)
        if (strcmp(dx_tls_list_get(l, i), text) == 0)
            return true;
    return false;
}

START_TEST(root_certificates_are_the_default_store)
{
    dx_pki_opts o = {.common_name = "Directory CA", .is_ca = true};
    dx_pki_cert *dir_ca, *stray;
    ck_assert_int_eq(dx_pki_issue(NULL, &o, &dir_ca, NULL), 0);
    o.common_name = "Stray CA";
    ck_assert_int_eq(dx_pki_issue(NULL, &o, &stray, NULL), 0);
    dx_pki_cert *dir_leaf = leaf(dir_ca, DX_PKI_EC_P256);

    /* a bundle that holds ca twice, and a hashed directory with dir_ca
     * under its hash and a stray CA under another name */
    tmpdir t;
    tmp_make(&t);
    const char *bundle = tmp_path(&t, "bundle.pem");
    char *twice = chain_of(ca, ca);
    write_file(bundle, twice, strlen(twice));
    free(twice);
    const char *certs = tmp_path(&t, "certs");
    ck_assert_int_eq(mkdir(certs, 0700), 0);
    X509 *x = h_pki_x509(dir_ca);
    char name[32];
    snprintf(name, sizeof(name), "certs/%08lx.0", X509_subject_name_hash(x));
    X509_free(x);
    write_file(tmp_path(&t, name), pem(dir_ca), pem_len(dir_ca));
    write_file(tmp_path(&t, "certs/stray.pem"), pem(stray), pem_len(stray));
    char dirs[200];
    snprintf(dirs, sizeof(dirs), "/nonexistent:%s", certs);
    /* tmp_remove() removes in reverse order: files first, then certs/ */
    saved_env fe = set_env("SSL_CERT_FILE", bundle), de = set_env("SSL_CERT_DIR", dirs);

    dx_tls_list *l;
    ck_assert_int_eq(dx_tls_get_root_certificates(&l), 0);
    ck_assert_uint_eq(dx_tls_list_count(l), 2);
    ck_assert(list_has(l, pem(ca)));
    ck_assert(list_has(l, pem(dir_ca)));
    dx_tls_list_free(l);

    /* and a context without CAs trusts exactly those */
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    dx_tls_ctx *c = build(cfg);
    dx_tls_ctx *s1 = build(server_config(ec)), *s2 = build(server_config(dir_leaf));
    hs r = handshake(s1, c, NULL);
    ck_assert(r.ok);
    ck_assert_int_eq(r.verify, X509_V_OK);
    r = handshake(s2, c, NULL);
    ck_assert(r.ok);
    ck_assert_int_eq(r.verify, X509_V_OK);
    dx_tls_ctx_unref(s2);
    dx_tls_ctx_unref(c);

    /* an added CA replaces the system store, unless it is asked for too */
    dx_pki_cert *stray_leaf = leaf(stray, DX_PKI_EC_P256);
    dx_tls_ctx *s3 = build(server_config(stray_leaf));
    for (int also = 0; also < 2; also++) {
        ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
        ck_assert_int_eq(dx_tls_config_add_ca(cfg, pem(stray), pem_len(stray)), 0);
        ck_assert_int_eq(dx_tls_config_set_system_trust(cfg, also), 0);
        c = build(cfg);
        r = handshake(s3, c, NULL);
        ck_assert(r.ok);
        ck_assert_int_eq(r.verify, X509_V_OK);
        r = handshake(s1, c, NULL);
        ck_assert_int_eq(r.ok, also);
        dx_tls_ctx_unref(c);
    }
    ck_assert_int_eq(dx_tls_config_set_system_trust(NULL, true), DX_EINVAL);
    dx_tls_ctx_unref(s3);
    dx_tls_ctx_unref(s1);
    dx_pki_cert_free(stray_leaf);

    /* no store at all */
    ck_assert_int_eq(setenv("SSL_CERT_FILE", "/nonexistent/bundle.pem", 1), 0);
    ck_assert_int_eq(setenv("SSL_CERT_DIR", "/nonexistent", 1), 0);
    ck_assert_int_eq(dx_tls_get_root_certificates(&l), 0);
    ck_assert_uint_eq(dx_tls_list_count(l), 0);
    dx_tls_list_free(l);

    restore_env(&fe);
    restore_env(&de);
    tmp_remove(&t);
    dx_pki_cert_free(dir_leaf);
    dx_pki_cert_free(dir_ca);
    dx_pki_cert_free(stray);

    /* the system's store: certificates, each once */
    ck_assert_int_eq(dx_tls_get_root_certificates(&l), 0);
    size_t n = dx_tls_list_count(l);
    ck_assert_uint_gt(n, 0);
    for (size_t i = 0; i < n; i++) {
        const char *p = dx_tls_list_get(l, i);
        ck_assert_int_eq(strncmp(p, "-----BEGIN CERTIFICATE-----\n", 28), 0);
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(dx_tls_list_get(l, j), p);
    }
    dx_tls_list_free(l);
}
END_TEST

START_TEST(lists_refuse_bad_arguments)
{
    ck_assert_int_eq(dx_tls_get_ciphers(NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_get_root_certificates(NULL), DX_EINVAL);
    ck_assert_uint_eq(dx_tls_list_count(NULL), 0);
    ck_assert_ptr_null(dx_tls_list_get(NULL, 0));
    dx_tls_list_free(NULL);
}
END_TEST

/* ---- allocation failure ---- */

typedef struct alloc_case {
    char *crl, *dh, *bundle;
    unsigned char *pfx;
    size_t pfx_len;
} alloc_case;

/* Everything the module allocates for, once; 0 or DX_ENOMEM, with all of
 * it freed again either way. */
static int everything_once(const alloc_case *a)
{
    dx_tls_config *cfg = NULL;
    dx_tls_ctx *ctx = NULL;
    dx_tls_list *ciphers = NULL, *roots = NULL;
    dx_error *err = NULL;
    const char *k = dx_pki_key_pem(rsa);
    int rc = dx_tls_set_default_groups("P-256:X25519");
    if (!rc)
        rc = dx_tls_config_new(&cfg);
    if (!rc)
        rc = dx_tls_config_add_ca_file(cfg, a->bundle);
    if (!rc)
        rc = dx_tls_config_add_cert(cfg, pem(rsa), pem_len(rsa), k, strlen(k), NULL);
    if (!rc)
        rc = dx_tls_config_add_pfx(cfg, a->pfx, a->pfx_len, "pfx");
    if (!rc)
        rc = dx_tls_config_add_crl(cfg, a->crl, strlen(a->crl));
    if (!rc)
        rc = dx_tls_config_set_dhparam(cfg, a->dh, strlen(a->dh));
    if (!rc)
        rc = dx_tls_config_set_secure_protocol(cfg, "TLSv1_2_server_method");
    if (!rc)
        rc = dx_tls_config_set_ciphers(cfg, "TLS_AES_128_GCM_SHA256:ECDHE-RSA-AES128-GCM-SHA256");
    if (!rc)
        rc = dx_tls_ctx_new(cfg, &ctx, &err);
    if (!rc)
        rc = dx_tls_get_ciphers(&ciphers);
    if (!rc)
        rc = dx_tls_get_root_certificates(&roots);
    if (!rc)
        ck_assert_uint_eq(dx_tls_list_count(roots), 1);
    ck_assert_ptr_null(err);
    dx_tls_list_free(roots);
    dx_tls_list_free(ciphers);
    dx_tls_ctx_unref(ctx);
    dx_tls_config_free(cfg);
    ck_assert_int_eq(dx_tls_set_default_groups(NULL), 0);
    return rc;
}

START_TEST(allocation_failures_fail_cleanly)
{
    const dx_pki_cert *none[] = {NULL};
    alloc_case a = {.crl = h_make_crl(ca, none), .dh = make_params("DH", "ffdhe2048")};
    a.pfx = make_pfx(ec, NULL, "pfx", &a.pfx_len);
    tmpdir t;
    tmp_make(&t);
    const char *bundle = tmp_path(&t, "ca.pem");
    write_file(bundle, pem(ca), pem_len(ca));
    a.bundle = (char *)bundle;
    saved_env fe = set_env("SSL_CERT_FILE", bundle), de = set_env("SSL_CERT_DIR", "/nonexistent");

    size_t base = h_alloc_live();
    int rc = DX_ENOMEM;
    long n = 0;
    for (; rc == DX_ENOMEM; n++) {
        h_alloc_fail_from(n);
        rc = everything_once(&a);
        h_alloc_fail_from(-1);
        ck_assert_msg(rc == 0 || rc == DX_ENOMEM, "allocation %ld: %s", n, dx_err_name(rc));
        ck_assert_uint_eq(h_alloc_live(), base);
    }
    ck_assert_int_gt(n, 30); /* the run went through many failure points */

    restore_env(&fe);
    restore_env(&de);
    tmp_remove(&t);
    OPENSSL_free(a.pfx);
    free(a.crl);
    free(a.dh);
}
END_TEST

Suite *tls_context_suite(void)
{
    Suite *s = suite_create("tls_context");
    TCase *tc = tcase_create("context");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, pki_setup, pki_teardown);
    tcase_add_checked_fixture(tc, leak_setup, leak_teardown);
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
    tcase_add_test(tc, pfx_credentials_carry_their_chain);
    tcase_add_test(tc, several_pfx_serve_several_key_types);
    tcase_add_test(tc, pfx_passphrases_are_checked_at_build);
    tcase_add_test(tc, a_key_is_fetched_by_uri);
    tcase_add_test(tc, identities_from_every_source_live_side_by_side);
    tcase_add_test(tc, a_second_identity_of_a_type_replaces_the_first);
    tcase_add_test(tc, a_server_without_a_certificate_still_builds);
    tcase_add_test(tc, revoked_certificates_fail_verification);
    tcase_add_test(tc, crls_are_checked_down_to_the_root);
    tcase_add_test(tc, bad_crls_are_refused);
    tcase_add_test(tc, partial_trust_chains_are_opt_in);
    tcase_add_test(tc, dh_parameters_enable_dhe);
    tcase_add_test(tc, small_or_foreign_dh_parameters_are_refused);
    tcase_add_test(tc, secure_protocol_names_map_to_versions);
    tcase_add_test(tc, a_forced_protocol_is_negotiated_and_restricts_the_role);
    tcase_add_test(tc, bad_secure_protocols_are_refused_as_node_refuses_them);
    tcase_add_test(tc, contexts_use_nodes_default_ciphers);
    tcase_add_test(tc, new_configs_start_from_the_process_defaults);
    tcase_add_test(tc, supported_ciphers_are_listed_as_node_lists_them);
    tcase_add_test(tc, root_certificates_are_the_default_store);
    tcase_add_test(tc, lists_refuse_bad_arguments);
    tcase_add_test(tc, allocation_failures_fail_cleanly);
    suite_add_tcase(s, tc);
    return s;
}
