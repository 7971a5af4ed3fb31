/*
 * The TLS configuration of the run: the client's context, or the server
 * object with its default context, SNI contexts, client verification,
 * ALPN, pre-shared keys, ticket keys and OCSP staple; and the files the
 * options name, read once at start so that a mistake is a usage error
 * (exit status 2) before anything is opened.
 */
#include "config.h"

#include "dxtls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failf(char *msg, size_t size, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int failf(char *msg, size_t size, const char *code, const char *fmt, ...)
{
    int n = snprintf(msg, size, "%s: ", code);
    if (n >= 0 && (size_t)n < size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg + n, size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return EXIT_USAGE;
}

/* Reads a whole file (at most max bytes). Returns 0 or an errno value
 * (EFBIG when larger). */
static int read_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    int err = 0;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            uint8_t *b = realloc(buf, ncap);
            if (!b) {
                err = ENOMEM;
                break;
            }
            buf = b;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n > max) {
            err = EFBIG;
            break;
        }
        if (r == 0) {
            if (ferror(f))
                err = EIO;
            break;
        }
    }
    fclose(f);
    if (err) {
        free(buf);
        return err;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* A key named by an OSSL_STORE URI ("pkcs11:...", "file:..."), not a
 * file of that name. */
static bool is_uri(const char *key)
{
    const char *c = key;
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')))
        return false;
    while (*c && *c != ':' && *c != '/')
        c++;
    return *c == ':' && c - key >= 2 && access(key, F_OK) != 0;
}

/* The text of an error from the library, as "CODE: message (detail)". */
static int ctx_fail(char *msg, size_t size, dx_error *err, int rc)
{
    char text[600];
    if (err)
        error_text(err, text, sizeof(text));
    else
        snprintf(text, sizeof(text), "%s: %s", dx_err_name(rc), dx_strerror(rc));
    snprintf(msg, size, "%s", text);
    dx_error_free(err);
    return EXIT_USAGE;
}

/* A context with the options' protocol settings and trust, presenting
 * cert/key (or pfx), either may be NULL. */
static int make_ctx(const options *o, const char *cert, const char *key, const char *pfx,
                    dx_tls_ctx **out, char *msg, size_t size)
{
    dx_tls_config *cfg;
    *out = NULL;
    int rc = dx_tls_config_new(&cfg);
    if (rc != 0)
        return ctx_fail(msg, size, NULL, rc);
    const char *pass = o->pass_value;
    for (size_t i = 0; rc == 0 && i < o->nca; i++)
        rc = dx_tls_config_add_ca_file(cfg, o->ca[i]);
    for (size_t i = 0; rc == 0 && i < o->ncrl; i++)
        rc = dx_tls_config_add_crl_file(cfg, o->crl[i]);
    if (rc == 0 && o->ciphers)
        rc = dx_tls_config_set_ciphers(cfg, o->ciphers);
    if (rc == 0 && o->ciphersuites)
        rc = dx_tls_config_set_ciphersuites(cfg, o->ciphersuites);
    if (rc == 0 && o->groups)
        rc = dx_tls_config_set_groups(cfg, o->groups);
    if (rc == 0 && o->sigalgs)
        rc = dx_tls_config_set_sigalgs(cfg, o->sigalgs);
    if (rc == 0 && o->min_version)
        rc = dx_tls_config_set_min_version(cfg, o->min_version);
    if (rc == 0 && o->max_version)
        rc = dx_tls_config_set_max_version(cfg, o->max_version);
    if (rc == 0 && pfx)
        rc = dx_tls_config_add_pfx_file(cfg, pfx, pass);
    if (rc == 0 && cert) {
        if (key && is_uri(key)) {
            uint8_t *chain;
            size_t len;
            int err = read_file(cert, 1u << 20, &chain, &len);
            if (err) {
                dx_tls_config_free(cfg);
                return failf(msg, size, "ERR_INVALID_ARG_VALUE", "%s: %s", cert, strerror(err));
            }
            rc = dx_tls_config_add_cert_uri(cfg, chain, len, key, pass);
            free(chain);
        } else {
            rc = dx_tls_config_add_cert_file(cfg, cert, key ? key : cert, pass);
        }
    }
    if (rc != 0) {
        dx_tls_config_free(cfg);
        return ctx_fail(msg, size, NULL, rc);
    }
    dx_error *err = NULL;
    rc = dx_tls_ctx_new(cfg, out, &err);
    dx_tls_config_free(cfg);
    if (rc != 0)
        return ctx_fail(msg, size, err, rc);
    return 0;
}

/* ---- the server's callbacks ---------------------------------------------- */

/* PSK: the key of the identity the client names. Runs inside OpenSSL. */
static int server_psk(dx_tls *t, const char *identity, dx_tls_psk *psk, void *user)
{
    (void)t;
    const options *o = user;
    for (size_t i = 0; identity && i < o->npsk; i++) {
        if (!strcmp(o->psk[i].identity, identity)) {
            memcpy(psk->key, o->psk[i].key, o->psk[i].key_len);
            psk->key_len = o->psk[i].key_len;
            return 0;
        }
    }
    return -1;
}

/* OCSP: the staple of --ocsp-response, for every certificate asked. */
static void server_ocsp(dx_tls_server *srv, dx_tls *t, const dx_tls_cert *cert,
                        const dx_tls_cert *issuer, dx_tls_pending *p, void *user)
{
    (void)srv, (void)t, (void)cert, (void)issuer;
    const tlsconf *tc = user;
    dx_tls_ocsp_done(p, tc->ocsp, tc->ocsp_len, NULL);
}

/* ---- building ------------------------------------------------------------------ */

static int build_server(tlsconf *tc, const options *o, char *msg, size_t size)
{
    int rc = make_ctx(o, o->cert, o->key, o->pfx, &tc->ctx, msg, size);
    if (rc != 0)
        return rc;
    if ((rc = dx_tls_server_new(tc->ctx, &tc->srv)) != 0)
        return ctx_fail(msg, size, NULL, rc);
    for (size_t i = 0; i < o->nsni; i++) {
        dx_tls_ctx *c;
        if ((rc = make_ctx(o, o->sni[i].cert, o->sni[i].key, NULL, &c, msg, size)) != 0)
            return rc;
        rc = dx_tls_server_add_context(tc->srv, o->sni[i].name, c);
        dx_tls_ctx_unref(c);
        if (rc != 0)
            return ctx_fail(msg, size, NULL, rc);
    }
    if (o->request_cert || o->require_cert)
        dx_tls_server_set_request_cert(tc->srv, true, o->require_cert);
    if (o->alpn && (rc = dx_tls_server_set_alpn_protocols(tc->srv, (const char *const *)o->alpn)))
        return failf(msg, size, "ERR_INVALID_ARG_VALUE", "--alpn: %s", dx_strerror(rc));
    if (o->handshake_timeout_set)
        dx_tls_server_set_handshake_timeout(tc->srv, o->handshake_timeout);
    dx_tls_server_set_allow_truncation(tc->srv, o->allow_truncation);
    /* A relay passes the end of each direction on by itself (relay.c). */
    dx_tls_server_set_allow_half_open(tc->srv, true);
    if (o->npsk) {
        dx_tls_server_set_psk_callback(tc->srv, server_psk, (void *)o);
        if (o->psk_hint && (rc = dx_tls_server_set_psk_identity_hint(tc->srv, o->psk_hint)))
            return failf(msg, size, "ERR_INVALID_ARG_VALUE", "--psk-hint: %s", dx_strerror(rc));
    }
    if (o->no_tickets)
        dx_tls_server_set_tickets(tc->srv, false);
    if (o->ticket_keys) {
        uint8_t *keys;
        size_t len;
        int err = read_file(o->ticket_keys, 48, &keys, &len);
        if (err == EFBIG || (!err && len != 48)) {
            free(keys);
            return failf(msg, size, "ERR_INVALID_ARG_VALUE",
                         "--ticket-keys %s: the file must hold exactly 48 bytes", o->ticket_keys);
        }
        if (err)
            return failf(msg, size, "ERR_INVALID_ARG_VALUE", "--ticket-keys %s: %s",
                         o->ticket_keys, strerror(err));
        dx_tls_server_set_ticket_keys(tc->srv, keys);
        explicit_bzero(keys, 48);
        free(keys);
    }
    if (o->ocsp_response) {
        int err = read_file(o->ocsp_response, DX_TLS_OCSP_MAX_RESPONSE, &tc->ocsp, &tc->ocsp_len);
        if (!err && tc->ocsp_len == 0)
            err = ENODATA;
        if (err)
            return failf(msg, size, "ERR_INVALID_ARG_VALUE", "--ocsp-response %s: %s",
                         o->ocsp_response,
                         err == EFBIG ? "larger than a TLS staple can be" : strerror(err));
        dx_tls_server_events ev = {.on_ocsp_request = server_ocsp};
        dx_tls_server_set_events(tc->srv, &ev, tc);
    }
    return 0;
}

static int build_client(tlsconf *tc, const options *o, char *msg, size_t size)
{
    int rc = make_ctx(o, o->cert, o->key, o->pfx, &tc->ctx, msg, size);
    if (rc != 0)
        return rc;
    if (o->session_in) {
        int err = read_file(o->session_in, 1u << 20, &tc->session, &tc->session_len);
        if (err)
            return failf(msg, size, "ERR_INVALID_ARG_VALUE", "--session-in %s: %s",
                         o->session_in, strerror(err));
        /* Checked now, on a connection that never starts. */
        dx_tls *t;
        if ((rc = dx_tls_new(tc->ctx, DX_TLS_CLIENT, &t)) != 0)
            return ctx_fail(msg, size, NULL, rc);
        rc = dx_tls_set_session(t, tc->session, tc->session_len);
        dx_tls_destroy(t);
        if (rc != 0)
            return failf(msg, size, "ERR_INVALID_ARG_VALUE",
                         "--session-in %s: not a TLS session", o->session_in);
    }
    return 0;
}

int tlsconf_build(tlsconf *tc, const options *o, char *msg, size_t size)
{
    memset(tc, 0, sizeof(*tc));
    int rc = o->server ? build_server(tc, o, msg, size) : build_client(tc, o, msg, size);
    if (rc == 0 && o->keylog) {
        int fd = open(o->keylog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0 || !(tc->keylog = fdopen(fd, "a"))) {
            int err = errno;
            if (fd >= 0)
                close(fd);
            rc = failf(msg, size, "ERR_INVALID_ARG_VALUE", "--keylog %s: %s", o->keylog,
                       strerror(err));
        }
    }
    if (rc != 0)
        tlsconf_free(tc);
    return rc;
}

void tlsconf_free(tlsconf *tc)
{
    dx_tls_server_free(tc->srv);
    dx_tls_ctx_unref(tc->ctx);
    if (tc->session)
        explicit_bzero(tc->session, tc->session_len);
    free(tc->session);
    free(tc->ocsp);
    if (tc->keylog)
        fclose(tc->keylog);
    memset(tc, 0, sizeof(*tc));
}
