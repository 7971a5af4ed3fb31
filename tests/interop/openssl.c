/*
 * OpenSSL's s_server and s_client against libduplex (this program, over
 * TCP on loopback) and against dxtls. The peers run with -msg, so that
 * their output shows each TLS message and alert they sent (">>>") and
 * received ("<<<"): close_notify is seen on both sides by name.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "interop.h"

#define PEER "openssl"

static const char *vflag(const char *v) { return !strcmp(v, "1.2") ? "-tls1_2" : "-tls1_3"; }
static const char *vname(const char *v) { return !strcmp(v, "1.2") ? "TLSv1.2" : "TLSv1.3"; }

/* The peer printed that it received (<<<) or sent (>>>) close_notify. */
static void assert_close_notify(h_peer *p, const char *v, const char *dir)
{
    char text[96];
    snprintf(text, sizeof(text), "%s TLS %s, Alert [length 0002], warning close_notify", dir, v);
    ck_assert_msg(h_peer_wait_output(p, text, NULL, 0, IX_WAIT_MS), "no \"%s\": %s", text,
                  ix_out(p));
}

/* Lines both ways, then our close_notify, answered by the peer's. */
static void exchange_and_close(ix_conn *c, h_peer *p, const char *v)
{
    h_peer_write(p, "hello from the peer\n");
    static const char ours[] = "hello from libduplex\n";
    ix_send(c, ours, strlen(ours), false);
    ck_assert_msg(ix_wait(c, p, ix_has_text, "hello from the peer\n") && !c->failed, "%s; %s",
                  c->error, ix_out(p));
    ck_assert_msg(h_peer_wait_output(p, "hello from libduplex", NULL, 0, IX_WAIT_MS), "%s",
                  ix_out(p));
    ix_end(c);
    ck_assert(ix_wait(c, p, ix_is_ended, NULL));
    ck_assert_msg(c->clean_end && !c->failed, "no close_notify from the peer: %s %s",
                  c->error, ix_out(p));
    assert_close_notify(p, v, "<<<");
    assert_close_notify(p, v, ">>>");
}

/* ---- libduplex → s_server ------------------------------------------------------------ */

typedef enum okind {
    K_BASIC,
    K_ALPN,
    K_SNI,
    K_CERT_OK,
    K_CERT_MISSING,
    K_CERT_UNTRUSTED,
    K_TICKET,
    K_SESSION_ID,
    K_PSK,
    K_OCSP,
    K_TO_PEER,   /* 10 MiB from libduplex to the peer */
    K_FROM_PEER, /* 10 MiB from the peer to libduplex */
    K_UNTRUSTED_SERVER,
    K_WRONG_HOST,
} okind;

typedef struct ospec {
    okind kind;
    const char *version;
    const ix_pair *cert;
} ospec;

static void start_s_server(h_peer *p, unsigned port, const char *v, const ix_pair *cert,
                           const char *extra)
{
    ix_spawn(p, "openssl s_server -accept 127.0.0.1:%u -cert %s -key %s %s %s", port,
             cert->cert, cert->key, vflag(v), extra ? extra : "");
    if (!extra || !strstr(extra, "-quiet"))
        ix_expect_output(p, "ACCEPT");
}

/* One connection of side s to 127.0.0.1:port, secure. */
static void connect_secure(ix_conn *c, ix_side *s, unsigned port, h_peer *p)
{
    ix_conn_open(c, s, ix_connect(port), -1);
    ck_assert(ix_wait(c, p, ix_is_secure, NULL));
    ix_assert_secure(c, p);
}

static void finish(ix_conn *c, ix_side *s, h_peer *p)
{
    ix_conn_free(c);
    ix_side_free(s);
    ix_stop(p);
    h_peer_free(p);
}

/* A refused handshake or a refusal right after it: the error's name. */
static void expect_refusal(ix_conn *c, h_peer *p, const char *name)
{
    ck_assert(ix_wait(c, p, ix_is_secure, NULL));
    if (!c->failed) /* TLS 1.3: the server's verdict comes after our Finished */
        ck_assert(ix_wait(c, p, ix_is_closed, NULL));
    ix_assert_error(c, name, p);
    ix_note("refused: %s", c->error);
}

static void lib_to_s_server(const void *arg)
{
    const ospec *o = arg;
    const char *v = o->version;
    unsigned port = ix_port();
    h_peer p;
    ix_opts opts = {.role = DX_TLS_CLIENT, .servername = "localhost"};
    const ix_pair *cert = o->cert ? o->cert : &IX->ecdsa;
    char extra[1024] = "-naccept 1 -msg";
    static const char *const alpn[] = {"h2", "http/1.1", NULL};
    switch (o->kind) {
    case K_BASIC:
        break;
    case K_ALPN:
        snprintf(extra, sizeof(extra), "-naccept 1 -msg -alpn http/1.1,h2");
        opts.alpn = alpn;
        break;
    case K_SNI:
        snprintf(extra, sizeof(extra), "-naccept 1 -msg -servername sni.test -cert2 %s -key2 %s",
                 IX->sni.cert, IX->sni.key);
        opts.servername = "sni.test";
        break;
    case K_CERT_OK:
    case K_CERT_MISSING:
    case K_CERT_UNTRUSTED:
        snprintf(extra, sizeof(extra), "-naccept 1 -msg -Verify 1 -verify_return_error -CAfile %s",
                 IX->ca);
        opts.cert = o->kind == K_CERT_OK ? &IX->client
                    : o->kind == K_CERT_UNTRUSTED ? &IX->stranger : NULL;
        break;
    case K_TICKET:
        snprintf(extra, sizeof(extra), "-naccept 2");
        break;
    case K_SESSION_ID:
        snprintf(extra, sizeof(extra), "-naccept 2 -no_ticket");
        break;
    case K_PSK:
        snprintf(extra, sizeof(extra), "-naccept 1 -msg -nocert -psk %s -psk_identity %s%s",
                 IX->psk_hex, IX->psk_identity,
                 !strcmp(v, "1.2") ? " -cipher PSK-AES128-GCM-SHA256" : "");
        opts.psk = true;
        break;
    case K_OCSP:
        snprintf(extra, sizeof(extra), "-naccept 1 -msg -status_file %s",
                 cert == &IX->rsa ? IX->ocsp_rsa : IX->ocsp_ecdsa);
        opts.request_ocsp = true;
        break;
    case K_TO_PEER:
        snprintf(extra, sizeof(extra), "-naccept 1 -quiet > %s 2>%s", ix_path("received"),
                 ix_path("stderr"));
        break;
    case K_FROM_PEER: /* s_server's stdin stops at 16 KiB from a file: -WWW serves it */
        snprintf(extra, sizeof(extra), "-naccept 1 -quiet -WWW");
        break;
    case K_UNTRUSTED_SERVER:
        cert = &IX->untrusted;
        break;
    case K_WRONG_HOST:
        opts.servername = "wrong.test";
        break;
    }
    if (o->kind == K_PSK)
        ix_spawn(&p, "openssl s_server -accept 127.0.0.1:%u %s %s", port, vflag(v), extra);
    else if (o->kind == K_FROM_PEER)
        ix_spawn(&p, "sh -c 'cd %s && exec openssl s_server -accept 127.0.0.1:%u -cert %s "
                     "-key %s %s %s'",
                 IX->dir, port, cert->cert, cert->key, vflag(v), extra);
    else
        start_s_server(&p, port, v, cert, extra);
    if (o->kind == K_PSK)
        ix_expect_output(&p, "ACCEPT");
    /* With -quiet nothing says ACCEPT: ix_connect() waits for the port. */
    ix_side *s = ix_side_new(&opts);
    ix_conn c;
    if (o->kind == K_CERT_MISSING || o->kind == K_CERT_UNTRUSTED ||
        o->kind == K_UNTRUSTED_SERVER || o->kind == K_WRONG_HOST) {
        ix_conn_open(&c, s, ix_connect(port), -1);
        const char *want =
            o->kind == K_UNTRUSTED_SERVER ? "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
            : o->kind == K_WRONG_HOST     ? "ERR_TLS_CERT_ALTNAME_INVALID"
            : o->kind == K_CERT_UNTRUSTED
                ? (!strcmp(v, "1.2") ? "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA"
                                     : "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA")
                : (!strcmp(v, "1.2") ? "ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE"
                                     : "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED");
        expect_refusal(&c, &p, want);
        finish(&c, s, &p);
        return;
    }
    connect_secure(&c, s, port, &p);
    ck_assert_str_eq(c.protocol, vname(v));
    switch (o->kind) {
    case K_BASIC:
        ck_assert(c.authorized);
        exchange_and_close(&c, &p, v);
        ix_note("%s, %s", c.protocol, c.cipher);
        break;
    case K_ALPN:
        ck_assert_str_eq(c.alpn, "http/1.1");
        ix_note("%s, ALPN %s", c.protocol, c.alpn);
        break;
    case K_SNI:
        ck_assert_str_eq(c.peer_cn, "sni.test");
        ck_assert(c.authorized);
        ix_note("%s, the certificate of %s", c.protocol, c.peer_cn);
        break;
    case K_CERT_OK:
        exchange_and_close(&c, &p, v);
        ix_expect_output(&p, "subject=CN = interop client");
        ix_note("%s, the peer verified our certificate", c.protocol);
        break;
    case K_PSK:
        ck_assert(c.authorized);
        ck_assert_str_eq(c.peer_cn, "");
        exchange_and_close(&c, &p, v);
        ix_note("%s, %s, no certificate", c.protocol, c.cipher);
        break;
    case K_OCSP:
        ck_assert_msg(c.ocsp_result == DX_TLS_OCSP_GOOD, "OCSP result %d",
                      (int)c.ocsp_result);
        ix_note("%s, staple verified: good", c.protocol);
        break;
    case K_TICKET:
    case K_SESSION_ID: {
        h_peer_write(&p, "first\n");
        ck_assert(ix_wait(&c, &p, ix_has_text, "first\n") && !c.failed);
        ck_assert(ix_side_has_session(s));
        ck_assert(!c.reused);
        ix_end(&c);
        ck_assert(ix_wait(&c, &p, ix_is_ended, NULL));
        ck_assert(c.clean_end);
        ix_conn_free(&c);
        ix_side_resume(s, true);
        connect_secure(&c, s, port, &p);
        ck_assert_msg(c.reused, "not resumed: %s", ix_out(&p));
        ix_note("%s, resumed", c.protocol);
        break;
    }
    case K_TO_PEER: {
        ix_send(&c, IX->payload_data, IX_PAYLOAD, true);
        ck_assert(ix_wait(&c, &p, ix_is_ended, NULL));
        ck_assert_msg(c.clean_end && !c.failed, "%s", c.error);
        ck_assert_int_eq(ix_stop(&p), 0);
        char sha[65];
        ix_sha256_file(ix_path("received"), sha);
        ck_assert_str_eq(sha, IX->payload_sha256);
        ix_note("%s, 10 MiB, sha256 %.16s...", c.protocol, sha);
        break;
    }
    case K_FROM_PEER: {
        static const char get[] = "GET /payload.bin HTTP/1.0\r\n\r\n";
        ix_send(&c, get, strlen(get), false);
        ck_assert(ix_wait(&c, &p, ix_is_ended, NULL));
        ck_assert_msg(c.clean_end && !c.failed, "%s", c.error);
        /* The body follows s_server's header: hash the two together. */
        const char *body = strstr((const char *)c.data, "\r\n\r\n");
        ck_assert_ptr_nonnull(body);
        size_t head = (size_t)(body + 4 - (const char *)c.data);
        ck_assert_uint_eq(c.received, head + IX_PAYLOAD);
        uint8_t *whole = malloc(head + IX_PAYLOAD);
        ck_assert_ptr_nonnull(whole);
        memcpy(whole, c.data, head);
        memcpy(whole + head, IX->payload_data, IX_PAYLOAD);
        char sha[65];
        ix_sha256(whole, head + IX_PAYLOAD, sha);
        free(whole);
        ck_assert_str_eq(c.received_sha256, sha);
        ix_note("%s, 10 MiB (s_server -WWW), sha256 checked", c.protocol);
        break;
    }
    default:
        ck_abort_msg("kind %d", (int)o->kind);
    }
    finish(&c, s, &p);
}

/* ---- s_client → libduplex ------------------------------------------------------------ */

static void s_client_to_lib(const void *arg)
{
    const ospec *o = arg;
    const char *v = o->version;
    ix_opts opts = {.role = DX_TLS_SERVER, .cert = o->cert ? o->cert : &IX->ecdsa};
    char extra[1024] = "-msg";
    static const char *const alpn[] = {"http/1.1", NULL};
    const char *sn = "localhost";
    switch (o->kind) {
    case K_ALPN:
        opts.alpn = alpn;
        snprintf(extra, sizeof(extra), "-msg -alpn h2,http/1.1");
        break;
    case K_SNI:
        opts.sni = &IX->sni;
        sn = "sni.test";
        break;
    case K_CERT_OK:
    case K_CERT_MISSING:
    case K_CERT_UNTRUSTED:
        opts.require_cert = true;
        if (o->kind != K_CERT_MISSING) {
            const ix_pair *cc = o->kind == K_CERT_OK ? &IX->client : &IX->stranger;
            snprintf(extra, sizeof(extra), "-msg -cert %s -key %s", cc->cert, cc->key);
        }
        break;
    case K_TICKET:
        snprintf(extra, sizeof(extra), "-sess_out %s", ix_path("session"));
        break;
    case K_SESSION_ID:
        opts.no_tickets = true;
        snprintf(extra, sizeof(extra), "-sess_out %s", ix_path("session"));
        break;
    case K_PSK:
        opts.psk = true;
        snprintf(extra, sizeof(extra), "-msg -psk %s -psk_identity %s%s", IX->psk_hex,
                 IX->psk_identity, !strcmp(v, "1.2") ? " -cipher PSK-AES128-GCM-SHA256" : "");
        break;
    case K_OCSP:
        opts.ocsp = opts.cert == &IX->rsa ? IX->ocsp_rsa : IX->ocsp_ecdsa;
        snprintf(extra, sizeof(extra), "-status");
        break;
    case K_TO_PEER:
        snprintf(extra, sizeof(extra), "-quiet > %s 2>%s", ix_path("received"),
                 ix_path("stderr"));
        break;
    case K_FROM_PEER:
        snprintf(extra, sizeof(extra), "-quiet -no_ign_eof -nocommands < %s", IX->payload);
        break;
    default:
        break;
    }
    ix_side *s = ix_side_new(&opts);
    int rounds = o->kind == K_TICKET || o->kind == K_SESSION_ID ? 2 : 1;
    for (int round = 0; round < rounds; round++) {
        unsigned port;
        int lfd = h_listen_loopback(&port);
        h_peer p;
        if (round == 1)
            snprintf(extra, sizeof(extra), "-sess_in %s", ix_path("session"));
        ix_spawn(&p, "openssl s_client -connect 127.0.0.1:%u -servername %s -CAfile %s "
                     "-verify_return_error %s %s",
                 port, sn, IX->ca, vflag(v), extra);
        int fd = h_accept(lfd, IX_WAIT_MS);
        ck_assert_msg(fd >= 0, "%s", ix_out(&p));
        close(lfd);
        ix_conn c;
        ix_conn_open(&c, s, fd, fd);
        ck_assert(ix_wait(&c, &p, ix_is_secure, NULL));
        if (o->kind == K_CERT_MISSING || o->kind == K_CERT_UNTRUSTED) {
            if (!c.failed)
                ck_assert(ix_wait(&c, &p, ix_is_closed, NULL));
            ix_assert_error(&c, o->kind == K_CERT_MISSING
                                    ? "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE"
                                    : "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
                            &p);
            ix_note("refused: %s", c.error);
            ix_conn_free(&c);
            ix_stop(&p);
            h_peer_free(&p);
            break;
        }
        ix_assert_secure(&c, &p);
        ck_assert_str_eq(c.protocol, vname(v));
        switch (o->kind) {
        case K_BASIC:
            ck_assert_str_eq(c.servername, "localhost");
            ix_expect_output(&p, "Verify return code: 0 (ok)");
            exchange_and_close(&c, &p, v);
            ix_note("%s, %s", c.protocol, c.cipher);
            break;
        case K_ALPN:
            ck_assert_str_eq(c.alpn, "http/1.1");
            ix_expect_output(&p, "ALPN protocol: http/1.1");
            exchange_and_close(&c, &p, v);
            ix_note("%s, ALPN %s", c.protocol, c.alpn);
            break;
        case K_SNI:
            ck_assert_str_eq(c.servername, "sni.test");
            ix_expect_output(&p, "CN = sni.test");
            ix_expect_output(&p, "Verify return code: 0 (ok)");
            exchange_and_close(&c, &p, v);
            ix_note("%s, the context of %s", c.protocol, c.servername);
            break;
        case K_CERT_OK:
            ck_assert_str_eq(c.peer_cn, "interop client");
            ck_assert(c.authorized);
            exchange_and_close(&c, &p, v);
            ix_note("%s, client %s verified", c.protocol, c.peer_cn);
            break;
        case K_PSK:
            ck_assert(c.authorized);
            exchange_and_close(&c, &p, v);
            ix_note("%s, %s", c.protocol, c.cipher);
            break;
        case K_OCSP:
            ix_expect_output(&p, "OCSP Response Status: successful");
            ix_expect_output(&p, "Cert Status: good");
            ix_note("%s, the peer read the staple: good", c.protocol);
            break;
        case K_TICKET:
        case K_SESSION_ID:
            h_peer_write(&p, "line\n");
            ck_assert(ix_wait(&c, &p, ix_has_text, "line\n") && !c.failed);
            if (round == 1) {
                ck_assert_msg(c.reused, "not resumed: %s", ix_out(&p));
                ix_expect_output(&p, "Reused, TLSv1.");
                ix_note("%s, resumed on both sides", c.protocol);
            }
            /* A session survives only a connection closed cleanly. */
            ix_end(&c);
            ck_assert(ix_wait(&c, &p, ix_is_ended, NULL));
            ck_assert(c.clean_end);
            break;
        case K_TO_PEER: {
            ix_send(&c, IX->payload_data, IX_PAYLOAD, true);
            ck_assert(ix_wait(&c, &p, ix_is_ended, NULL));
            ck_assert_msg(c.clean_end && !c.failed, "%s", c.error);
            ck_assert_int_eq(ix_stop(&p), 0);
            char sha[65];
            ix_sha256_file(ix_path("received"), sha);
            ck_assert_str_eq(sha, IX->payload_sha256);
            ix_note("%s, 10 MiB, sha256 %.16s...", c.protocol, sha);
            break;
        }
        case K_FROM_PEER:
            ck_assert(ix_wait(&c, &p, ix_is_ended, NULL));
            ck_assert_msg(c.clean_end && !c.failed, "%s", c.error);
            ck_assert_uint_eq(c.received, IX_PAYLOAD);
            ck_assert_str_eq(c.received_sha256, IX->payload_sha256);
            ix_note("%s, 10 MiB, sha256 %.16s...", c.protocol, c.received_sha256);
            break;
        default:
            ck_abort_msg("kind %d", (int)o->kind);
        }
        ix_conn_free(&c);
        ix_stop(&p);
        h_peer_free(&p);
    }
    ix_side_free(s);
}

/* ---- dxtls ------------------------------------------------------------------------------ */

#ifdef HAVE_LIBUV
/* dxtls → s_server: lines both ways; dxtls's input ends, it sends
 * close_notify, the peer answers, dxtls exits 0. */
static void dxtls_to_s_server(const void *arg)
{
    const ospec *o = arg;
    unsigned port = ix_port();
    h_peer srv, cl;
    start_s_server(&srv, port, o->version, o->cert, "-naccept 1 -msg");
    ix_spawn(&cl, "%s --ca %s --servername localhost --info - tcp:127.0.0.1:%u", ix_dxtls(),
             IX->ca, port);
    h_peer_write(&cl, "hello from dxtls\n");
    ix_expect_output(&srv, "hello from dxtls");
    h_peer_write(&srv, "hello from the peer\n");
    ix_expect_output(&cl, "hello from the peer");
    char proto[40];
    snprintf(proto, sizeof(proto), "\"protocol\":\"%s\"", vname(o->version));
    ix_expect_output(&cl, proto);
    h_peer_close_input(&cl);
    assert_close_notify(&srv, o->version, "<<<");
    assert_close_notify(&srv, o->version, ">>>");
    int status = ix_stop(&cl);
    ck_assert_msg(status == 0, "dxtls exited %d: %s", status, ix_out(&cl));
    ix_note("%s, dxtls exited 0 (clean close)", vname(o->version));
    h_peer_free(&cl);
    ix_stop(&srv);
    h_peer_free(&srv);
}

/* The port a dxtls listening on port 0 printed. */
static unsigned dxtls_port(h_peer *p)
{
    ix_expect_output(p, "listening on 127.0.0.1:");
    const char *at = strstr(ix_out(p), "listening on 127.0.0.1:");
    unsigned port = 0;
    ck_assert_int_eq(sscanf(at, "listening on 127.0.0.1:%u", &port), 1);
    return port;
}

/* s_client → dxtls --server: lines both ways; dxtls's input ends, it
 * sends close_notify, s_client answers, dxtls exits 0. */
static void s_client_to_dxtls(const void *arg)
{
    const ospec *o = arg;
    h_peer srv, cl;
    ix_spawn(&srv, "%s --server --cert %s --key %s --info - tcp-listen:127.0.0.1:0", ix_dxtls(),
             o->cert->cert, o->cert->key);
    unsigned port = dxtls_port(&srv);
    ix_spawn(&cl, "openssl s_client -connect 127.0.0.1:%u -servername localhost -CAfile %s "
                  "-verify_return_error %s -msg",
             port, IX->ca, vflag(o->version));
    ix_expect_output(&cl, "Verify return code: 0 (ok)");
    h_peer_write(&cl, "hello from the peer\n");
    ix_expect_output(&srv, "hello from the peer");
    h_peer_write(&srv, "hello from dxtls\n");
    ix_expect_output(&cl, "hello from dxtls");
    h_peer_close_input(&srv);
    assert_close_notify(&cl, o->version, "<<<");
    assert_close_notify(&cl, o->version, ">>>");
    int status = ix_stop(&srv);
    ck_assert_msg(status == 0, "dxtls exited %d: %s", status, ix_out(&srv));
    ix_note("%s, dxtls exited 0 (clean close)", vname(o->version));
    ix_stop(&cl);
    h_peer_free(&cl);
    h_peer_free(&srv);
}
#endif

/* ---- the matrix ------------------------------------------------------------------------- */

#define TO_S_SERVER IX_LIB " → s_server"
#define FROM_S_CLIENT "s_client → " IX_LIB

static void both(const char *name, okind kind, const char *v, const ix_pair *cert)
{
    static ospec specs[128];
    static size_t n;
    if (n == 128)
        abort();
    ospec *o = &specs[n++];
    *o = (ospec){kind, v, cert};
    char full[160];
    snprintf(full, sizeof(full), "TLS %s, %s", v, name);
    ix_case(PEER, TO_S_SERVER, full, lib_to_s_server, o);
    ix_case(PEER, FROM_S_CLIENT, full, s_client_to_lib, o);
}

static void client_only(const char *name, okind kind, const char *v)
{
    static ospec specs[16];
    static size_t n;
    ospec *o = &specs[n++];
    *o = (ospec){kind, v, NULL};
    char full[160];
    snprintf(full, sizeof(full), "TLS %s, %s", v, name);
    ix_case(PEER, TO_S_SERVER, full, lib_to_s_server, o);
}

void ix_register_openssl(void)
{
    ix_peer(PEER, (const char *const[]){"openssl", "version", NULL});
    static const char *const vs[] = {"1.2", "1.3"};
    for (int i = 0; i < 2; i++) {
        const char *v = vs[i];
        both("RSA: lines both ways, close_notify both sides", K_BASIC, v, &IX->rsa);
        both("ECDSA: lines both ways, close_notify both sides", K_BASIC, v, &IX->ecdsa);
        both("ALPN", K_ALPN, v, NULL);
        both("SNI chooses among contexts", K_SNI, v, NULL);
        both("client certificate accepted", K_CERT_OK, v, NULL);
        both("client certificate missing: refused", K_CERT_MISSING, v, NULL);
        both("client certificate untrusted: refused", K_CERT_UNTRUSTED, v, NULL);
        both("resumption by ticket", K_TICKET, v, NULL);
        both(!strcmp(v, "1.2") ? "resumption by session id"
                               : "resumption by session id (a stateful ticket)",
             K_SESSION_ID, v, NULL);
        both("PSK", K_PSK, v, NULL);
        both("OCSP stapling", K_OCSP, v, NULL);
        both("10 MiB libduplex → peer, sha256", K_TO_PEER, v, NULL);
        both("10 MiB peer → libduplex, sha256", K_FROM_PEER, v, NULL);
        client_only("untrusted server certificate: refused", K_UNTRUSTED_SERVER, v);
        client_only("wrong host name: refused", K_WRONG_HOST, v);
    }
#ifdef HAVE_LIBUV
    static ospec dx[4];
    for (int i = 0; i < 4; i++) {
        dx[i] = (ospec){K_BASIC, vs[i / 2], i % 2 ? &IX->ecdsa : &IX->rsa};
        char name[128];
        snprintf(name, sizeof(name), "TLS %s, %s: lines both ways, close_notify both sides",
                 dx[i].version, i % 2 ? "ECDSA" : "RSA");
        ix_case(PEER, IX_DXTLS " → s_server", name, dxtls_to_s_server, &dx[i]);
        ix_case(PEER, "s_client → " IX_DXTLS, name, s_client_to_dxtls, &dx[i]);
    }
#endif
}
