/*
 * GnuTLS's gnutls-serv and gnutls-cli against libduplex (this program,
 * over TCP on loopback) and against dxtls.
 *
 * gnutls-serv has no option to listen on one address: it binds every
 * address of the machine. Each case that runs it first moves into a
 * network namespace of its own (ix_private_net()), where only a loopback
 * interface exists, and starts everything there.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "interop.h"

#define PEER "gnutls"
#define TO_SERV IX_LIB " → gnutls-serv"
#define FROM_CLI "gnutls-cli → " IX_LIB

typedef enum gkind {
    G_BASIC,
    G_PEER_CLOSES,
    G_ALPN,
    G_SNI,
    G_CERT_OK,
    G_CERT_MISSING,
    G_CERT_UNTRUSTED,
    G_TICKET,
    G_SESSION_ID,
    G_PSK,
    G_OCSP,
    G_TO_PEER,
    G_FROM_PEER,
    G_ECHO,
    G_UNTRUSTED_SERVER,
    G_WRONG_HOST,
} gkind;

typedef struct gspec {
    gkind kind;
    const char *version;
    const ix_pair *cert;
} gspec;

static const char *vname(const char *v) { return !strcmp(v, "1.2") ? "TLSv1.2" : "TLSv1.3"; }

static const char *priority(const char *v, bool psk)
{
    static char buf[128];
    snprintf(buf, sizeof(buf), "NORMAL:-VERS-ALL:+VERS-TLS%s%s", v, psk ? ":+PSK:+ECDHE-PSK" : "");
    return buf;
}

static void lines(ix_conn *c, h_peer *p, const char *peer_line)
{
    h_peer_write(p, peer_line);
    static const char ours[] = "hello from libduplex\n";
    ix_send(c, ours, strlen(ours), false);
    ck_assert_msg(ix_wait(c, p, ix_has_text, (void *)peer_line) && !c->failed, "%s; %s",
                  c->error, ix_out(p));
    ck_assert_msg(h_peer_wait_output(p, "hello from libduplex", NULL, 0, IX_WAIT_MS), "%s",
                  ix_out(p));
}

/* ---- libduplex → gnutls-serv ---------------------------------------------------------- */

static void lib_to_serv(const void *arg)
{
    const gspec *o = arg;
    const char *v = o->version;
    ix_private_net();
    unsigned port = ix_port();
    const ix_pair *cert = o->cert ? o->cert : &IX->ecdsa;
    ix_opts opts = {.role = DX_TLS_CLIENT, .servername = "localhost"};
    static const char *const alpn[] = {"h2", "http/1.1", NULL};
    char extra[1024] = "";
    bool psk = false;
    switch (o->kind) {
    case G_ALPN:
        snprintf(extra, sizeof(extra), "--alpn http/1.1");
        opts.alpn = alpn;
        break;
    case G_SNI: /* a second certificate, chosen by its name */
        snprintf(extra, sizeof(extra), "--x509certfile %s --x509keyfile %s", IX->sni.cert,
                 IX->sni.key);
        opts.servername = "sni.test";
        break;
    case G_CERT_OK:
    case G_CERT_MISSING:
    case G_CERT_UNTRUSTED:
        snprintf(extra, sizeof(extra), "--require-client-cert --verify-client-cert --x509cafile %s",
                 IX->ca);
        opts.cert = o->kind == G_CERT_OK ? &IX->client
                    : o->kind == G_CERT_UNTRUSTED ? &IX->stranger : NULL;
        break;
    case G_SESSION_ID:
        snprintf(extra, sizeof(extra), "--noticket");
        break;
    case G_PSK: {
        char line[256];
        snprintf(line, sizeof(line), "%s:%s\n", IX->psk_identity, IX->psk_hex);
        FILE *f = fopen(ix_path("psk.passwd"), "w");
        ck_assert_ptr_nonnull(f);
        fputs(line, f);
        fclose(f);
        snprintf(extra, sizeof(extra), "--pskpasswd %s", ix_path("psk.passwd"));
        opts.psk = true;
        psk = true;
        break;
    }
    case G_OCSP:
        snprintf(extra, sizeof(extra), "--ocsp-response %s",
                 cert == &IX->rsa ? IX->ocsp_rsa : IX->ocsp_ecdsa);
        opts.request_ocsp = true;
        break;
    case G_UNTRUSTED_SERVER:
        cert = &IX->untrusted;
        break;
    case G_WRONG_HOST:
        opts.servername = "wrong.test";
        break;
    default:
        break;
    }
    h_peer p;
    ix_spawn(&p, "gnutls-serv --echo --crlf -p %u --x509certfile %s --x509keyfile %s "
                 "--priority %s %s",
             port, cert->cert, cert->key, priority(v, psk), extra);
    ix_side *s = ix_side_new(&opts);
    ix_conn c;
    ix_conn_open(&c, s, ix_connect(port), -1);
    ck_assert(ix_wait(&c, &p, ix_is_secure, NULL));
    if (o->kind == G_CERT_MISSING || o->kind == G_CERT_UNTRUSTED ||
        o->kind == G_UNTRUSTED_SERVER || o->kind == G_WRONG_HOST) {
        if (!c.failed)
            ck_assert(ix_wait(&c, &p, ix_is_closed, NULL));
        const char *want =
            o->kind == G_UNTRUSTED_SERVER ? "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
            : o->kind == G_WRONG_HOST     ? "ERR_TLS_CERT_ALTNAME_INVALID"
            : o->kind == G_CERT_MISSING
                ? (!strcmp(v, "1.2") ? "ERR_SSL_TLSV1_ALERT_DECODE_ERROR"
                                     : "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED")
                : "ERR_SSL_TLSV1_ALERT_ACCESS_DENIED";
        ix_assert_error(&c, want, &p);
        ix_note("refused: %s", c.error);
        goto out;
    }
    ix_assert_secure(&c, &p);
    ck_assert_str_eq(c.protocol, vname(v));
    switch (o->kind) {
    case G_BASIC:
    case G_ALPN:
    case G_SNI:
    case G_CERT_OK:
    case G_PSK:
    case G_OCSP: {
        static const char ours[] = "hello from libduplex\n";
        ix_send(&c, ours, strlen(ours), false);
        ck_assert_msg(ix_wait(&c, &p, ix_has_text, "hello from libduplex\n") && !c.failed,
                      "no echo: %s; %s", c.error, ix_out(&p));
        ix_end(&c);
        ck_assert(ix_wait(&c, &p, ix_is_ended, NULL));
        ck_assert_msg(c.clean_end && !c.failed, "no close_notify from gnutls-serv: %s",
                      c.error);
        if (o->kind == G_ALPN) {
            ck_assert_str_eq(c.alpn, "http/1.1");
            ix_note("%s, ALPN %s", c.protocol, c.alpn);
        } else if (o->kind == G_SNI) {
            ck_assert_str_eq(c.peer_cn, "sni.test");
            ck_assert(c.authorized);
            ix_note("%s, the certificate of %s", c.protocol, c.peer_cn);
        } else if (o->kind == G_CERT_OK) {
            ix_expect_output(&p, "interop client");
            ix_note("%s, the peer verified our certificate", c.protocol);
        } else if (o->kind == G_PSK) {
            ck_assert_str_eq(c.peer_cn, "");
            ix_note("%s, %s, no certificate", c.protocol, c.cipher);
        } else if (o->kind == G_OCSP) {
            ck_assert_msg(c.ocsp_result == DX_TLS_OCSP_GOOD, "OCSP result %d",
                          (int)c.ocsp_result);
            ix_note("%s, staple verified: good", c.protocol);
        } else {
            ix_note("%s, %s, echoed; close_notify both ways", c.protocol, c.cipher);
        }
        break;
    }
    case G_TICKET:
    case G_SESSION_ID: {
        static const char ours[] = "first\n";
        ix_send(&c, ours, strlen(ours), false);
        ck_assert(ix_wait(&c, &p, ix_has_text, "first\n") && !c.failed);
        ck_assert(ix_side_has_session(s));
        ix_end(&c);
        ck_assert(ix_wait(&c, &p, ix_is_ended, NULL));
        ck_assert(c.clean_end);
        ix_conn_free(&c);
        ix_side_resume(s, true);
        ix_conn_open(&c, s, ix_connect(port), -1);
        ck_assert(ix_wait(&c, &p, ix_is_secure, NULL));
        ix_assert_secure(&c, &p);
        ck_assert_msg(c.reused, "not resumed: %s", ix_out(&p));
        ix_note("%s, resumed", c.protocol);
        break;
    }
    case G_ECHO: {
        /* The echo server takes text only: lines of letters. */
        ix_send(&c, IX->text_payload_data, IX_PAYLOAD, true);
        uint64_t want = IX_PAYLOAD;
        ck_assert(ix_wait(&c, &p, ix_has_bytes, &want));
        ck_assert(ix_wait(&c, &p, ix_is_ended, NULL));
        ck_assert_msg(c.clean_end && !c.failed, "%s", c.error);
        ck_assert_uint_eq(c.received, IX_PAYLOAD);
        ck_assert_str_eq(c.received_sha256, IX->text_payload_sha256);
        ix_note("%s, 10 MiB of text sent and echoed back, sha256 checked", c.protocol);
        break;
    }
    default:
        ck_abort_msg("kind %d", (int)o->kind);
    }
out:
    ix_conn_free(&c);
    ix_side_free(s);
    ix_kill(&p);
    h_peer_free(&p);
}

/* ---- gnutls-cli → libduplex ----------------------------------------------------------- */

static void cli_to_lib(const void *arg)
{
    const gspec *o = arg;
    const char *v = o->version;
    ix_opts opts = {.role = DX_TLS_SERVER, .cert = o->cert ? o->cert : &IX->ecdsa};
    static const char *const alpn[] = {"http/1.1", NULL};
    char extra[1024] = "";
    const char *host = "localhost";
    bool psk = false;
    switch (o->kind) {
    case G_ALPN:
        opts.alpn = alpn;
        snprintf(extra, sizeof(extra), "--alpn h2 --alpn http/1.1");
        break;
    case G_SNI:
        opts.sni = &IX->sni;
        snprintf(extra, sizeof(extra), "--sni-hostname sni.test --verify-hostname sni.test");
        break;
    case G_CERT_OK:
    case G_CERT_MISSING:
    case G_CERT_UNTRUSTED:
        opts.require_cert = true;
        if (o->kind != G_CERT_MISSING) {
            const ix_pair *cc = o->kind == G_CERT_OK ? &IX->client : &IX->stranger;
            snprintf(extra, sizeof(extra), "--x509certfile %s --x509keyfile %s", cc->cert,
                     cc->key);
        }
        break;
    case G_TICKET:
        snprintf(extra, sizeof(extra), "--resume");
        break;
    case G_SESSION_ID:
        opts.no_tickets = true;
        snprintf(extra, sizeof(extra), "--resume --noticket");
        break;
    case G_PSK:
        opts.psk = true;
        psk = true;
        snprintf(extra, sizeof(extra), "--pskusername %s --pskkey %s", IX->psk_identity,
                 IX->psk_hex);
        break;
    case G_OCSP:
        opts.ocsp = opts.cert == &IX->rsa ? IX->ocsp_rsa : IX->ocsp_ecdsa;
        /* GnuTLS 3.7 calls dx_pki's responses invalid ("The received
         * OCSP status response is invalid"): they name the responder by
         * key hash and carry no certificate, and GnuTLS looks signers up
         * in its trust list by name only. --insecure lets it go on, and
         * the case checks that the staple it saved is ours. */
        snprintf(extra, sizeof(extra), "--insecure --save-ocsp %s", ix_path("ocsp.der"));
        break;
    case G_TO_PEER:
        snprintf(extra, sizeof(extra), "--logfile %s > %s", ix_path("log"), ix_path("received"));
        break;
    case G_FROM_PEER:
        snprintf(extra, sizeof(extra), "< %s", IX->payload);
        break;
    default:
        break;
    }
    ix_side *s = ix_side_new(&opts);
    unsigned port;
    int lfd = h_listen_loopback(&port);
    h_peer p;
    ix_spawn(&p, "gnutls-cli --x509cafile %s --priority %s -p %u %s %s", IX->ca, priority(v, psk),
             port, host, extra);
    int rounds = o->kind == G_TICKET || o->kind == G_SESSION_ID ? 2 : 1;
    for (int round = 0; round < rounds; round++) {
        int fd = h_accept(lfd, IX_WAIT_MS);
        ck_assert_msg(fd >= 0, "%s", ix_out(&p));
        ix_conn c;
        ix_conn_open(&c, s, fd, fd);
        ck_assert(ix_wait(&c, &p, ix_is_secure, NULL));
        if (o->kind == G_CERT_MISSING || o->kind == G_CERT_UNTRUSTED) {
            if (!c.failed)
                ck_assert(ix_wait(&c, &p, ix_is_closed, NULL));
            ix_assert_error(&c, o->kind == G_CERT_MISSING
                                    ? "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE"
                                    : "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
                            &p);
            ix_note("refused: %s", c.error);
            ix_conn_free(&c);
            break;
        }
        ix_assert_secure(&c, &p);
        ck_assert_str_eq(c.protocol, vname(v));
        switch (o->kind) {
        case G_BASIC:
        case G_ALPN:
        case G_SNI:
        case G_CERT_OK:
        case G_PSK:
        case G_OCSP:
            lines(&c, &p, "hello from the peer\n");
            /* We close first: gnutls-cli reports our close_notify and
             * exits without answering it. */
            ix_end(&c);
            ix_expect_output(&p, "- Peer has closed the GnuTLS connection");
            ck_assert(ix_wait(&c, &p, ix_is_closed, NULL));
            ck_assert(!c.clean_end);
            if (o->kind == G_ALPN) {
                ck_assert_str_eq(c.alpn, "http/1.1");
                ix_note("%s, ALPN %s", c.protocol, c.alpn);
            } else if (o->kind == G_SNI) {
                ck_assert_str_eq(c.servername, "sni.test");
                ix_note("%s, the context of %s", c.protocol, c.servername);
            } else if (o->kind == G_CERT_OK) {
                ck_assert_str_eq(c.peer_cn, "interop client");
                ck_assert(c.authorized);
                ix_note("%s, client %s verified", c.protocol, c.peer_cn);
            } else if (o->kind == G_PSK) {
                ck_assert(c.authorized);
                ix_note("%s, %s", c.protocol, c.cipher);
            } else if (o->kind == G_OCSP) {
                ix_stop(&p);
                size_t len;
                char *der = ix_slurp(ix_path("ocsp.der"), &len);
                size_t want_len;
                char *want = ix_slurp(opts.ocsp, &want_len);
                ck_assert_uint_eq(len, want_len);
                ck_assert(memcmp(der, want, len) == 0);
                free(der);
                free(want);
                ix_note("%s, the peer got our staple byte for byte (and called it invalid: "
                        "it went on with --insecure)",
                        c.protocol);
            } else {
                ix_note("%s, %s; gnutls-cli saw our close_notify and closed without one",
                        c.protocol, c.cipher);
            }
            break;
        case G_PEER_CLOSES:
            lines(&c, &p, "hello from the peer\n");
            h_peer_close_input(&p);
            ck_assert(ix_wait(&c, &p, ix_is_ended, NULL));
            ck_assert_msg(c.clean_end && !c.failed, "%s", c.error);
            ix_note("%s, gnutls-cli's input ended: its close_notify came", c.protocol);
            break;
        case G_TICKET:
        case G_SESSION_ID:
            if (round == 0) {
                ck_assert(!c.reused);
                /* gnutls-cli --resume closes with close_notify, then reconnects. */
                ck_assert(ix_wait(&c, &p, ix_is_ended, NULL));
                ck_assert_msg(c.clean_end, "%s", c.error);
                ix_end(&c);
                ix_wait(&c, &p, ix_is_closed, NULL);
            } else {
                ck_assert_msg(c.reused, "not resumed: %s", ix_out(&p));
                ix_expect_output(&p, "This is a resumed session");
                ix_note("%s, resumed on both sides", c.protocol);
            }
            break;
        case G_TO_PEER: {
            ix_send(&c, IX->payload_data, IX_PAYLOAD, true);
            ck_assert(ix_wait(&c, &p, ix_is_sent, NULL));
            ck_assert(ix_wait(&c, &p, ix_is_closed, NULL));
            ix_stop(&p);
            size_t len;
            char *got = ix_slurp(ix_path("received"), &len);
            ck_assert_uint_eq(len, IX_PAYLOAD);
            char sha[65];
            ix_sha256(got, len, sha);
            free(got);
            ck_assert_str_eq(sha, IX->payload_sha256);
            ix_note("%s, 10 MiB, sha256 checked", c.protocol);
            break;
        }
        case G_FROM_PEER:
            ck_assert(ix_wait(&c, &p, ix_is_ended, NULL));
            ck_assert_msg(c.clean_end && !c.failed, "%s", c.error);
            ck_assert_uint_eq(c.received, IX_PAYLOAD);
            ck_assert_str_eq(c.received_sha256, IX->payload_sha256);
            ix_note("%s, 10 MiB, sha256 checked, then its close_notify", c.protocol);
            break;
        default:
            ck_abort_msg("kind %d", (int)o->kind);
        }
        ix_conn_free(&c);
    }
    close(lfd);
    ix_side_free(s);
    ix_stop(&p);
    h_peer_free(&p);
}

/* ---- dxtls ------------------------------------------------------------------------------ */

#ifdef HAVE_LIBUV
/* dxtls → gnutls-serv --echo: a line echoed; dxtls's input ends, it sends
 * close_notify, gnutls-serv answers, dxtls exits 0. */
static void dxtls_to_serv(const void *arg)
{
    const gspec *o = arg;
    ix_private_net();
    unsigned port = ix_port();
    h_peer srv, cl;
    ix_spawn(&srv, "gnutls-serv --echo -p %u --x509certfile %s --x509keyfile %s --priority %s",
             port, o->cert->cert, o->cert->key, priority(o->version, false));
    ix_expect_output(&srv, "listening on IPv4");
    ix_spawn(&cl, "%s --ca %s --servername localhost --info - tcp:127.0.0.1:%u", ix_dxtls(),
             IX->ca, port);
    h_peer_write(&cl, "hello from dxtls\n");
    ix_expect_output(&cl, "hello from dxtls");
    char proto[40];
    snprintf(proto, sizeof(proto), "\"protocol\":\"%s\"", vname(o->version));
    ix_expect_output(&cl, proto);
    h_peer_close_input(&cl);
    int status = ix_stop(&cl);
    ck_assert_msg(status == 0, "dxtls exited %d: %s", status, ix_out(&cl));
    ix_note("%s, echoed; dxtls exited 0 (close_notify both ways)", vname(o->version));
    h_peer_free(&cl);
    ix_kill(&srv);
    h_peer_free(&srv);
}

/* gnutls-cli → dxtls --server: lines both ways; gnutls-cli's input ends,
 * it sends close_notify, dxtls exits 0 (a clean end). */
static void cli_to_dxtls(const void *arg)
{
    const gspec *o = arg;
    h_peer srv, cl;
    ix_spawn(&srv, "%s --server --cert %s --key %s - tcp-listen:127.0.0.1:0", ix_dxtls(),
             o->cert->cert, o->cert->key);
    ix_expect_output(&srv, "listening on 127.0.0.1:");
    unsigned port = 0;
    ck_assert_int_eq(sscanf(strstr(h_peer_output(&srv), "listening on 127.0.0.1:"),
                            "listening on 127.0.0.1:%u", &port),
                     1);
    ix_spawn(&cl, "gnutls-cli --x509cafile %s --priority %s -p %u localhost", IX->ca,
             priority(o->version, false), port);
    ix_expect_output(&cl, "Handshake was completed");
    h_peer_write(&cl, "hello from the peer\n");
    ix_expect_output(&srv, "hello from the peer");
    h_peer_write(&srv, "hello from dxtls\n");
    ix_expect_output(&cl, "hello from dxtls");
    h_peer_close_input(&cl);
    int status = ix_wait_exit(&srv);
    ck_assert_msg(status == 0, "dxtls exited %d: %s", status, ix_out(&srv));
    ix_note("TLS %s, gnutls-cli's close_notify came; dxtls exited 0", o->version);
    ix_stop(&cl);
    h_peer_free(&cl);
    h_peer_free(&srv);
}
#endif

/* ---- the matrix ------------------------------------------------------------------------- */

static gspec *spec(gkind kind, const char *v, const ix_pair *cert)
{
    static gspec specs[128];
    static size_t n;
    if (n == 128)
        abort();
    specs[n] = (gspec){kind, v, cert};
    return &specs[n++];
}

static void add(const char *dir, const char *v, const char *name, ix_fn fn, gspec *o)
{
    char full[160];
    snprintf(full, sizeof(full), "TLS %s, %s", v, name);
    ix_case(PEER, dir, full, fn, o);
}

/* The same case with libduplex as client (to gnutls-serv) and as server
 * (from gnutls-cli). */
static void add_both(const char *v, const char *name, gkind kind)
{
    add(TO_SERV, v, name, lib_to_serv, spec(kind, v, NULL));
    add(FROM_CLI, v, name, cli_to_lib, spec(kind, v, NULL));
}

void ix_register_gnutls(void)
{
    ix_peer(PEER, (const char *const[]){"gnutls-cli", "--version", NULL});
    static const char *const vs[] = {"1.2", "1.3"};
    for (int i = 0; i < 2; i++) {
        const char *v = vs[i];
        char full[160];
        add(TO_SERV, v, "RSA: echo, close_notify both sides", lib_to_serv,
            spec(G_BASIC, v, &IX->rsa));
        add(FROM_CLI, v, "RSA: lines both ways, our close_notify seen", cli_to_lib,
            spec(G_BASIC, v, &IX->rsa));
        add(TO_SERV, v, "ECDSA: echo, close_notify both sides", lib_to_serv,
            spec(G_BASIC, v, &IX->ecdsa));
        add(FROM_CLI, v, "ECDSA: lines both ways, our close_notify seen", cli_to_lib,
            spec(G_BASIC, v, &IX->ecdsa));
        add(FROM_CLI, v, "the peer's close_notify", cli_to_lib, spec(G_PEER_CLOSES, v, NULL));
        snprintf(full, sizeof(full), "TLS %s, close_notify answered", v);
        ix_unsupported(PEER, FROM_CLI, full,
                       "gnutls-cli exits on the server's close_notify without sending one");
        add_both(v, "ALPN", G_ALPN);
        add_both(v, "SNI chooses among contexts", G_SNI);
        add_both(v, "client certificate accepted", G_CERT_OK);
        add_both(v, "client certificate missing: refused", G_CERT_MISSING);
        add_both(v, "client certificate untrusted: refused", G_CERT_UNTRUSTED);
        add_both(v, "resumption by ticket", G_TICKET);
        if (i == 0) {
            add(TO_SERV, v, "resumption by session id", lib_to_serv,
                spec(G_SESSION_ID, v, NULL));
            add(FROM_CLI, v, "resumption by session id", cli_to_lib,
                spec(G_SESSION_ID, v, NULL));
        } else {
            ix_unsupported(PEER, TO_SERV, "TLS 1.3, resumption by session id",
                           "gnutls-serv resumes TLS 1.3 sessions by tickets only "
                           "(--noticket leaves none)");
            add(FROM_CLI, v, "resumption by session id (a stateful ticket)", cli_to_lib,
                spec(G_SESSION_ID, v, NULL));
        }
        add_both(v, "PSK", G_PSK);
        add_both(v, "OCSP stapling", G_OCSP);
        add(TO_SERV, v, "10 MiB each way through --echo, sha256", lib_to_serv,
            spec(G_ECHO, v, NULL));
        add(FROM_CLI, v, "10 MiB libduplex → peer, sha256", cli_to_lib,
            spec(G_TO_PEER, v, NULL));
        add(FROM_CLI, v, "10 MiB peer → libduplex, sha256", cli_to_lib,
            spec(G_FROM_PEER, v, NULL));
        add(TO_SERV, v, "untrusted server certificate: refused", lib_to_serv,
            spec(G_UNTRUSTED_SERVER, v, NULL));
        add(TO_SERV, v, "wrong host name: refused", lib_to_serv, spec(G_WRONG_HOST, v, NULL));
    }
#ifdef HAVE_LIBUV
    for (int i = 0; i < 4; i++) {
        const char *v = vs[i / 2];
        const ix_pair *cert = i % 2 ? &IX->ecdsa : &IX->rsa;
        const char *kt = i % 2 ? "ECDSA" : "RSA";
        char name[128];
        snprintf(name, sizeof(name), "TLS %s, %s: lines, close_notify", v, kt);
        ix_case(PEER, IX_DXTLS " → gnutls-serv", name, dxtls_to_serv, spec(G_BASIC, v, cert));
        ix_case(PEER, "gnutls-cli → " IX_DXTLS, name, cli_to_dxtls, spec(G_BASIC, v, cert));
    }
#endif
}
