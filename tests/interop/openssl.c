/*
 * OpenSSL's s_server and s_client against libduplex (this program, over
 * TCP on loopback) and against dxtls. The peers run with -msg, so that
 * their output shows each TLS message and alert they sent (">>>") and
 * received ("<<<"): close_notify is seen on both sides by name.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "interop.h"

#define PEER "openssl"

typedef struct ocase {
    const char *version; /* "1.2" or "1.3" */
    const ix_pair *cert;
} ocase;

static const char *vflag(const char *v) { return !strcmp(v, "1.2") ? "-tls1_2" : "-tls1_3"; }
static const char *vname(const char *v) { return !strcmp(v, "1.2") ? "TLSv1.2" : "TLSv1.3"; }

/* The peer printed that it received (<<<) or sent (>>>) close_notify. */
static void assert_close_notify(h_peer *p, const char *v, const char *dir)
{
    char text[96];
    snprintf(text, sizeof(text), "%s TLS %s, Alert [length 0002], warning close_notify", dir, v);
    ck_assert_msg(h_peer_wait_output(p, text, NULL, 0, IX_WAIT_MS), "no \"%s\": %s", text,
                  h_peer_output(p));
}

/* Lines both ways, then our close_notify, answered by the peer's. */
static void exchange_and_close(ix_conn *c, h_peer *p, const char *v)
{
    h_peer_write(p, "hello from the peer\n");
    static const char ours[] = "hello from libduplex\n";
    ix_send(c, ours, strlen(ours), false);
    ck_assert_msg(ix_wait(c, p, ix_has_text, "hello from the peer\n") && !c->failed, "%s; %s",
                  c->error, h_peer_output(p));
    ck_assert_msg(h_peer_wait_output(p, "hello from libduplex", NULL, 0, IX_WAIT_MS), "%s",
                  h_peer_output(p));
    ix_end(c);
    ck_assert(ix_wait(c, p, ix_is_ended, NULL));
    ck_assert_msg(c->clean_end && !c->failed, "no close_notify from the peer: %s %s",
                  c->error, h_peer_output(p));
    assert_close_notify(p, v, "<<<");
    assert_close_notify(p, v, ">>>");
}

static void note_conn(const ix_conn *c) { ix_note("%s, %s", c->protocol, c->cipher); }

/* ---- libduplex → s_server ------------------------------------------------------------ */

static void start_s_server(h_peer *p, unsigned port, const char *v, const ix_pair *cert,
                           const char *extra)
{
    ix_spawn(p, "openssl s_server -accept 127.0.0.1:%u -cert %s -key %s %s -msg %s", port,
             cert->cert, cert->key, vflag(v), extra ? extra : "");
    ix_expect_output(p, "ACCEPT");
}

static void lib_to_s_server_basic(const void *arg)
{
    const ocase *oc = arg;
    unsigned port = ix_port();
    h_peer p;
    start_s_server(&p, port, oc->version, oc->cert, "-naccept 1");
    ix_side *s = ix_side_new(&(ix_opts){.role = DX_TLS_CLIENT, .servername = "localhost"});
    ix_conn c;
    ix_conn_open(&c, s, ix_connect(port), -1);
    ck_assert(ix_wait(&c, &p, ix_is_secure, NULL));
    ix_assert_secure(&c, &p);
    ck_assert_str_eq(c.protocol, vname(oc->version));
    ck_assert(c.authorized);
    exchange_and_close(&c, &p, oc->version);
    note_conn(&c);
    ix_conn_free(&c);
    ix_side_free(s);
    ix_stop(&p);
    h_peer_free(&p);
}

/* ---- s_client → libduplex ------------------------------------------------------------ */

static void s_client_to_lib_basic(const void *arg)
{
    const ocase *oc = arg;
    unsigned port;
    int lfd = h_listen_loopback(&port);
    h_peer p;
    ix_spawn(&p, "openssl s_client -connect 127.0.0.1:%u -servername localhost -CAfile %s "
                 "-verify_return_error %s -msg",
             port, IX->ca, vflag(oc->version));
    int fd = h_accept(lfd, IX_WAIT_MS);
    ck_assert_int_ge(fd, 0);
    close(lfd);
    ix_side *s = ix_side_new(&(ix_opts){.role = DX_TLS_SERVER, .cert = oc->cert});
    ix_conn c;
    ix_conn_open(&c, s, fd, fd);
    ck_assert(ix_wait(&c, &p, ix_is_secure, NULL));
    ix_assert_secure(&c, &p);
    ck_assert_str_eq(c.protocol, vname(oc->version));
    ck_assert_str_eq(c.servername, "localhost");
    ix_expect_output(&p, "Verify return code: 0 (ok)");
    exchange_and_close(&c, &p, oc->version);
    note_conn(&c);
    ix_conn_free(&c);
    ix_side_free(s);
    ck_assert_int_eq(ix_stop(&p), 0);
    h_peer_free(&p);
}

void ix_register_openssl(void)
{
    ix_peer(PEER, (const char *const[]){"openssl", "version", NULL});
    static ocase basics[4];
    static const char *const names[] = {"TLS 1.2, RSA", "TLS 1.2, ECDSA", "TLS 1.3, RSA",
                                        "TLS 1.3, ECDSA"};
    for (int i = 0; i < 4; i++) {
        basics[i] = (ocase){i < 2 ? "1.2" : "1.3", i % 2 ? &IX->ecdsa : &IX->rsa};
        char name[96];
        snprintf(name, sizeof(name), "%s: lines both ways, close_notify both sides", names[i]);
        ix_case(PEER, IX_LIB " → s_server", name, lib_to_s_server_basic, &basics[i]);
        ix_case(PEER, "s_client → " IX_LIB, name, s_client_to_lib_basic, &basics[i]);
    }
}
