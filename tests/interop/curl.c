/*
 * curl as an HTTPS client of dxtls --server, which runs a small HTTP
 * responder (peers/http-responder.sh) for each connection through its
 * exec: endpoint, and of libduplex itself (this program answers the
 * request). curl runs with -v, which names each TLS message and alert it
 * sends (OUT) and receives (IN): close_notify is seen on both sides.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "interop.h"

#define PEER "curl"
#define TO_DXTLS "curl → " IX_DXTLS
#define TO_LIB "curl → " IX_LIB

typedef enum ckind {
    C_BASIC,
    C_ALPN,
    C_SNI,
    C_CERT_OK,
    C_CERT_MISSING,
    C_CERT_UNTRUSTED,
    C_TICKET,
    C_SESSION_ID,
    C_OCSP,
    C_DOWNLOAD,
    C_UPLOAD,
} ckind;

typedef struct cspec {
    ckind kind;
    const char *version;
    const ix_pair *cert;
} cspec;

static const char *vflags(const char *v)
{
    return !strcmp(v, "1.2") ? "--tlsv1.2 --tls-max 1.2" : "--tlsv1.3";
}

static const char *responder(void)
{
    static char path[512];
    const char *s = getenv("top_srcdir");
    snprintf(path, sizeof(path), "%s/tests/interop/peers/http-responder.sh", s && *s ? s : ".");
    return path;
}

static void assert_close_notify_both(h_peer *p, const char *v)
{
    char in[80], out[80];
    snprintf(in, sizeof(in), "TLSv%s (IN), TLS alert, close notify", v);
    snprintf(out, sizeof(out), "TLSv%s (OUT), TLS alert, close notify", v);
    ix_expect_output(p, in);
    ix_expect_output(p, out);
}

/* ---- curl → dxtls ----------------------------------------------------------------------- */

static void curl_to_dxtls(const void *arg)
{
    const cspec *o = arg;
    const char *v = o->version;
    const ix_pair *cert = o->cert ? o->cert : &IX->ecdsa;
    char sx[1024] = "", cx[1024] = "";
    const char *host = "localhost";
    const char *url = "/hello";
    switch (o->kind) {
    case C_ALPN:
        snprintf(sx, sizeof(sx), "--alpn http/1.1");
        break;
    case C_SNI:
        snprintf(sx, sizeof(sx), "--sni sni.test:%s:%s", IX->sni.cert, IX->sni.key);
        host = "sni.test";
        break;
    case C_CERT_OK:
    case C_CERT_MISSING:
    case C_CERT_UNTRUSTED:
        snprintf(sx, sizeof(sx), "--require-cert --ca %s", IX->ca);
        if (o->kind != C_CERT_MISSING) {
            const ix_pair *cc = o->kind == C_CERT_OK ? &IX->client : &IX->stranger;
            snprintf(cx, sizeof(cx), "--cert %s --key %s", cc->cert, cc->key);
        }
        break;
    case C_SESSION_ID:
        snprintf(sx, sizeof(sx), "--no-tickets");
        break;
    case C_OCSP:
        snprintf(sx, sizeof(sx), "--ocsp-response %s",
                 cert == &IX->rsa ? IX->ocsp_rsa : IX->ocsp_ecdsa);
        snprintf(cx, sizeof(cx), "--cert-status");
        break;
    case C_DOWNLOAD:
        url = "/payload";
        snprintf(cx, sizeof(cx), "-o %s", ix_path("received"));
        break;
    case C_UPLOAD:
        url = "/sha256";
        snprintf(cx, sizeof(cx), "--data-binary @%s", IX->payload);
        break;
    default:
        break;
    }
    h_peer srv, cl;
    /* The chain (leaf and CA): curl verifies a staple with the issuer it
     * finds in the chain the server sent. */
    ix_spawn(&srv, "%s --server --cert %s --key %s --verbose %s 'exec:%s %s' "
                   "tcp-listen:127.0.0.1:0",
             ix_dxtls(), o->kind == C_OCSP ? cert->chain : cert->cert, cert->key, sx,
             responder(), IX->payload);
    unsigned port = ix_dxtls_port(&srv);
    char urls[600];
    snprintf(urls, sizeof(urls), "https://%s:%u%s", host, port, url);
    if (o->kind == C_TICKET || o->kind == C_SESSION_ID) /* two connections */
        snprintf(urls + strlen(urls), sizeof(urls) - strlen(urls), " https://%s:%u%s", host,
                 port, url);
    ix_spawn(&cl, "curl -sS -v %s --cacert %s --resolve %s:%u:127.0.0.1 %s %s", vflags(v),
             IX->ca, host, port, cx, urls);
    int status = ix_wait_exit(&cl);
    switch (o->kind) {
    case C_CERT_MISSING:
    case C_CERT_UNTRUSTED: {
        ck_assert_msg(status != 0, "curl got through: %s", ix_out(&cl));
        const char *code = o->kind == C_CERT_MISSING ? "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE"
                                                     : "UNABLE_TO_VERIFY_LEAF_SIGNATURE";
        ix_expect_output(&srv, code);
        ix_note("refused: %s; curl exited %d", code, status);
        goto out;
    }
    default:
        break;
    }
    ck_assert_msg(status == 0, "curl exited %d: %s", status, ix_out(&cl));
    char proto[64];
    snprintf(proto, sizeof(proto), "SSL connection using TLSv%s", v);
    ix_expect_output(&cl, proto);
    switch (o->kind) {
    case C_BASIC:
        /* The body ends with the connection: dxtls's close_notify, then
         * curl's. */
        assert_close_notify_both(&cl, v);
        ix_expect_output(&cl, "hello from the responder");
        ix_note("TLS %s, GET answered; close_notify both ways", v);
        break;
    case C_ALPN:
        ix_expect_output(&cl, "ALPN: server accepted http/1.1");
        ix_note("TLS %s, ALPN http/1.1", v);
        break;
    case C_SNI:
        ix_expect_output(&cl, "subject: CN=sni.test");
        ix_expect_output(&cl, "SSL certificate verify ok");
        ix_note("TLS %s, the certificate of sni.test, verified", v);
        break;
    case C_CERT_OK:
        ix_expect_output(&cl, "hello from the responder");
        ix_note("TLS %s, dxtls verified curl's certificate", v);
        break;
    case C_TICKET:
    case C_SESSION_ID:
        ix_expect_output(&cl, "SSL re-using session ID");
        ix_note("TLS %s, the second connection resumed", v);
        break;
    case C_OCSP:
        ix_expect_output(&cl, "SSL certificate status: good");
        ix_note("TLS %s, curl verified the staple: good", v);
        break;
    case C_DOWNLOAD: {
        char sha[65];
        ix_sha256_file(ix_path("received"), sha);
        ck_assert_str_eq(sha, IX->payload_sha256);
        ix_note("TLS %s, 10 MiB, sha256 checked", v);
        break;
    }
    case C_UPLOAD: {
        char want[80];
        snprintf(want, sizeof(want), "\n%s\n", IX->payload_sha256);
        ix_expect_output(&cl, want);
        ix_note("TLS %s, 10 MiB, the responder's sha256 matches", v);
        break;
    }
    default:
        ck_abort_msg("kind %d", (int)o->kind);
    }
out:
    h_peer_free(&cl);
    ix_kill(&srv);
    h_peer_free(&srv);
}

/* ---- curl → libduplex ------------------------------------------------------------------- */

static void curl_to_lib(const void *arg)
{
    const cspec *o = arg;
    const char *v = o->version;
    unsigned port;
    int lfd = h_listen_loopback(&port);
    h_peer cl;
    ix_spawn(&cl, "curl -sS -v %s --cacert %s https://localhost:%u/hello", vflags(v), IX->ca,
             port);
    int fd = h_accept(lfd, IX_WAIT_MS);
    ck_assert_msg(fd >= 0, "%s", ix_out(&cl));
    close(lfd);
    ix_side *s = ix_side_new(&(ix_opts){.role = DX_TLS_SERVER, .cert = o->cert});
    ix_conn c;
    ix_conn_open(&c, s, fd, fd);
    ck_assert(ix_wait(&c, &cl, ix_has_text, "\r\n\r\n"));
    ix_assert_secure(&c, &cl);
    ck_assert_msg(!strncmp((const char *)c.data, "GET /hello HTTP/1.1\r\n", 21), "%s", c.data);
    /* No length: the body ends with the connection, so curl reads our
     * close_notify before it sends its own. */
    static const char resp[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n"
                               "\r\nhello from libduplex\n";
    ix_send(&c, resp, strlen(resp), true);
    ck_assert(ix_wait(&c, &cl, ix_is_ended, NULL));
    ck_assert_msg(c.clean_end && !c.failed, "%s: %s", c.error, ix_out(&cl));
    ck_assert_int_eq(ix_wait_exit(&cl), 0);
    ix_expect_output(&cl, "hello from libduplex");
    assert_close_notify_both(&cl, v);
    ix_note("%s, %s; close_notify both ways", c.protocol, c.cipher);
    ix_conn_free(&c);
    ix_side_free(s);
    h_peer_free(&cl);
}

/* ---- the matrix ------------------------------------------------------------------------- */

static cspec *spec(ckind kind, const char *v, const ix_pair *cert)
{
    static cspec specs[64];
    static size_t n;
    if (n == 64)
        abort();
    specs[n] = (cspec){kind, v, cert};
    return &specs[n++];
}

static void add(const char *dir, const char *v, const char *name, ix_fn fn, cspec *o)
{
    char full[160];
    snprintf(full, sizeof(full), "TLS %s, %s", v, name);
    ix_case(PEER, dir, full, fn, o);
}

void ix_register_curl(void)
{
    ix_peer(PEER, (const char *const[]){"curl", "--version", NULL});
    static const char *const vs[] = {"1.2", "1.3"};
    for (int i = 0; i < 2; i++) {
        const char *v = vs[i];
        char full[160];
        add(TO_LIB, v, "RSA: GET, close_notify both sides", curl_to_lib,
            spec(C_BASIC, v, &IX->rsa));
        add(TO_LIB, v, "ECDSA: GET, close_notify both sides", curl_to_lib,
            spec(C_BASIC, v, &IX->ecdsa));
#ifdef HAVE_LIBUV
        add(TO_DXTLS, v, "RSA: GET, close_notify both sides", curl_to_dxtls,
            spec(C_BASIC, v, &IX->rsa));
        add(TO_DXTLS, v, "ECDSA: GET, close_notify both sides", curl_to_dxtls,
            spec(C_BASIC, v, &IX->ecdsa));
        add(TO_DXTLS, v, "ALPN", curl_to_dxtls, spec(C_ALPN, v, NULL));
        add(TO_DXTLS, v, "SNI chooses among contexts", curl_to_dxtls, spec(C_SNI, v, NULL));
        add(TO_DXTLS, v, "client certificate accepted", curl_to_dxtls, spec(C_CERT_OK, v, NULL));
        add(TO_DXTLS, v, "client certificate missing: refused", curl_to_dxtls,
            spec(C_CERT_MISSING, v, NULL));
        add(TO_DXTLS, v, "client certificate untrusted: refused", curl_to_dxtls,
            spec(C_CERT_UNTRUSTED, v, NULL));
        add(TO_DXTLS, v, "resumption by ticket", curl_to_dxtls, spec(C_TICKET, v, NULL));
        add(TO_DXTLS, v,
            i == 0 ? "resumption by session id" : "resumption by session id (a stateful ticket)",
            curl_to_dxtls, spec(C_SESSION_ID, v, NULL));
        snprintf(full, sizeof(full), "TLS %s, PSK", v);
        ix_unsupported(PEER, TO_DXTLS, full, "curl has no option for TLS pre-shared keys");
        add(TO_DXTLS, v, "OCSP stapling (--cert-status)", curl_to_dxtls, spec(C_OCSP, v, NULL));
        add(TO_DXTLS, v, "10 MiB dxtls → curl (GET), sha256", curl_to_dxtls,
            spec(C_DOWNLOAD, v, NULL));
        add(TO_DXTLS, v, "10 MiB curl → dxtls (POST), sha256", curl_to_dxtls,
            spec(C_UPLOAD, v, NULL));
#endif
    }
}
