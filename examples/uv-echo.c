/*
 * uv-echo: a TLS echo server and a TLS client over TCP on 127.0.0.1, in
 * one process, on one libuv loop.
 *
 *   client dx_tls --(uv TCP stream)-- 127.0.0.1:PORT --(uv TCP stream)-- server dx_tls
 *
 * The program makes a throw-away certificate authority and a server
 * certificate for "localhost" in memory (dx_pki), a server context that
 * presents the certificate and a client context that trusts the CA. The
 * server is a dx_tls_server listening with dx_uv_tls_listen() (Node's
 * tls.createServer().listen()) on a port the system picks; the client
 * comes from dx_uv_tls_connect() (Node's tls.connect()) to "localhost",
 * which resolves the name, connects, and makes the name the connection's
 * SNI and the name its certificate check expects.
 *
 * The conversation: the client sends a few lines; the server sends back
 * whatever it receives; once all of it came back, the client ends its
 * side (close_notify); the server's side ends in answer, and both
 * connections close without an error. The client then stops the listener,
 * and the loop, left with nothing to do, returns. The program exits 0 only
 * if all of that happened.
 *
 * Deadlines (a handshake timeout here) run on uv timers; nothing sleeps.
 *
 * Build: cc uv-echo.c $(pkg-config --cflags --libs libduplex libuv)
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <duplex/duplex.h>
#include <duplex/uv.h>

static const char *const lines[] = {
    "first line\n",
    "a second, longer line, to show that pieces add up\n",
    "and the last one\n",
};

/* ---- the server: each connection echoes what it receives ------------------- */

struct server {
    dx_tls_server *srv;
    dx_uv_listener *l;
    unsigned accepted, closed, failed;
};

/* Each accepted connection's cleartext consumer. */
struct echo {
    struct server *server;
    dx_tls *t;
};

static void echo_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    (void)user;
    /* Back it goes. DX_FULL: accepted, but the connection holds enough;
     * read no more until on_drain. */
    if (dx_stream_write(s, data, len) == DX_FULL)
        dx_stream_pause(s);
}

static void echo_drain(dx_stream *s, void *user)
{
    (void)user;
    dx_stream_resume(s);
}

static void echo_error(dx_stream *s, const dx_error *err, void *user)
{
    struct echo *e = user;
    char text[512];
    (void)s;
    e->server->failed++;
    dx_error_format(err, text, sizeof(text));
    fprintf(stderr, "server: connection failed: %s\n", text);
}

/* The server does not end a connection itself: after the client's
 * close_notify the filter answers with its own (Node's allowHalfOpen
 * false), and the connection closes. It is released here, with its
 * transport and its timer. */
static void echo_close(dx_stream *s, void *user)
{
    struct echo *e = user;
    (void)s;
    e->server->closed++;
    printf("server: connection closed\n");
    dx_tls_destroy(e->t);
    free(e);
}

static const dx_stream_events echo_events = {
    .on_data = echo_data,
    .on_drain = echo_drain,
    .on_error = echo_error,
    .on_close = echo_close,
};

/* The listener hands over each connection: accepted by the dx_tls_server
 * (its defaults and events), started, its deadlines on the loop. */
static void on_accept(dx_uv_listener *l, dx_tls *t, const dx_error *err, void *arg)
{
    struct server *server = arg;
    (void)l;
    if (err) {
        fprintf(stderr, "server: accept: %s\n", dx_error_name(err));
        return;
    }
    struct echo *e = calloc(1, sizeof(*e));
    if (!e) {
        dx_tls_destroy(t);
        return;
    }
    e->server = server;
    e->t = t;
    server->accepted++;
    dx_stream_set_events(dx_tls_upper(t), &echo_events, e);
}

/* Node's secureConnection: the handshake of an accepted connection
 * completed. */
static void on_secure_connection(dx_tls_server *srv, dx_tls *t, void *user)
{
    const char *sni = dx_tls_servername(t);
    (void)srv, (void)user;
    printf("server: secure, %s, client asked for \"%s\"\n", dx_tls_protocol(t),
           sni ? sni : "(no SNI)");
}

static const dx_tls_server_events server_events = {
    .on_secure_connection = on_secure_connection,
};

/* ---- the client --------------------------------------------------------------- */

struct client {
    struct server *server; /* to stop the listener when done */
    dx_tls *t;
    char got[512];
    size_t len, want;
    bool secure, authorized, ended, failed, closed;
};

static void client_secure(dx_tls *t, void *user)
{
    struct client *c = user;
    dx_tls_cipher_info ci;
    c->secure = true;
    c->authorized = dx_tls_authorized(t);
    if (dx_tls_cipher(t, &ci) != 0)
        ci.name = "?";
    printf("client: secure, %s, %s, authorized: %s\n", dx_tls_protocol(t), ci.name,
           c->authorized ? "yes" : dx_tls_authorization_error(t));
}

static const dx_tls_events client_tls_events = {.on_secure = client_secure};

static void client_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    struct client *c = user;
    if (len > sizeof(c->got) - c->len)
        len = sizeof(c->got) - c->len;
    memcpy(c->got + c->len, data, len);
    c->len += len;
    if (c->len == c->want) {
        printf("client: all %zu bytes came back, ending\n", c->len);
        dx_stream_end(s); /* close_notify once everything before went */
    }
}

static void client_end(dx_stream *s, void *user)
{
    struct client *c = user;
    (void)s;
    c->ended = true;
    printf("client: the server ended its side (%s)\n",
           dx_tls_clean_end(c->t) ? "close_notify" : "no close_notify");
}

static void client_error(dx_stream *s, const dx_error *err, void *user)
{
    struct client *c = user;
    char text[512];
    (void)s;
    c->failed = true;
    dx_error_format(err, text, sizeof(text));
    fprintf(stderr, "client: %s\n", text);
}

/* Done: the listener goes too (connections it handed out would go on),
 * so that the loop has nothing left and returns. */
static void client_close(dx_stream *s, void *user)
{
    struct client *c = user;
    (void)s;
    c->closed = true;
    printf("client: closed\n");
    dx_uv_listener_close(c->server->l, false);
    c->server->l = NULL;
}

static const dx_stream_events client_events = {
    .on_data = client_data,
    .on_end = client_end,
    .on_error = client_error,
    .on_close = client_close,
};

/* Node's secureConnect callback, one step earlier: the TCP connection is
 * made and the TLS connection over it is ready but not started. Options
 * and events go on here; it starts when this returns. */
static void on_connect(dx_tls *t, const dx_error *err, void *arg)
{
    struct client *c = arg;
    if (err) {
        char text[512];
        dx_error_format(err, text, sizeof(text));
        fprintf(stderr, "client: %s\n", text); /* "uv: ECONNREFUSED: ..." */
        c->failed = true;
        dx_uv_listener_close(c->server->l, false);
        c->server->l = NULL;
        return;
    }
    c->t = t;
    printf("client: connected, SNI \"%s\"\n", dx_tls_servername(t));
    dx_tls_set_events(t, &client_tls_events, c);
    dx_tls_set_handshake_timeout(t, 10000);
    dx_stream_set_events(dx_tls_upper(t), &client_events, c);
    /* Written before the handshake: queued, sent once it completes. */
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        dx_stream_write(dx_tls_upper(t), lines[i], strlen(lines[i]));
        c->want += strlen(lines[i]);
    }
}

/* ---- set-up ------------------------------------------------------------------- */

/* A context that trusts a CA, or one that presents a certificate. */
static dx_tls_ctx *make_ctx(const dx_pki_cert *trust, const dx_pki_cert *present)
{
    dx_tls_config *cfg;
    dx_tls_ctx *ctx = NULL;
    if (dx_tls_config_new(&cfg) != 0)
        return NULL;
    int rc = 0;
    if (trust) {
        const char *pem = dx_pki_cert_pem(trust);
        rc = dx_tls_config_add_ca(cfg, pem, strlen(pem));
    }
    if (rc == 0 && present) {
        const char *cert = dx_pki_cert_pem(present), *key = dx_pki_key_pem(present);
        rc = dx_tls_config_add_cert(cfg, cert, strlen(cert), key, strlen(key), NULL);
    }
    if (rc == 0)
        rc = dx_tls_ctx_new(cfg, &ctx, NULL);
    if (rc != 0)
        fprintf(stderr, "TLS configuration: %s\n", dx_strerror(rc));
    dx_tls_config_free(cfg);
    return ctx;
}

int main(void)
{
    static const char *const names[] = {"localhost", NULL};
    dx_pki_opts ca_opts = {.common_name = "uv-echo demo CA", .is_ca = true};
    dx_pki_opts srv_opts = {.common_name = "localhost", .dns_names = names,
                            .ext_key_usage = DX_PKI_EKU_SERVER};
    dx_pki_cert *ca = NULL, *cert = NULL;
    dx_tls_ctx *sctx = NULL, *cctx = NULL;
    struct server server = {0};
    struct client client = {.server = &server};
    uv_loop_t loop;
    dx_error *err = NULL;
    int status = 1, rc;

    /* libuv writes with write(2): a peer gone raises SIGPIPE, which every
     * libuv program ignores. */
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&loop) != 0)
        return 1;

    /* 1. A throw-away PKI and the two contexts. */
    if ((rc = dx_pki_issue(NULL, &ca_opts, &ca, NULL)) != 0 ||
        (rc = dx_pki_issue(ca, &srv_opts, &cert, NULL)) != 0) {
        fprintf(stderr, "dx_pki_issue: %s\n", dx_strerror(rc));
        goto out;
    }
    if (!(sctx = make_ctx(NULL, cert)) || !(cctx = make_ctx(ca, NULL)))
        goto out;

    /* 2. The server: a dx_tls_server listening on 127.0.0.1, port 0 (the
     * system picks one; dx_uv_listener_port() says which). */
    if ((rc = dx_tls_server_new(sctx, &server.srv)) != 0) {
        fprintf(stderr, "dx_tls_server_new: %s\n", dx_strerror(rc));
        goto out;
    }
    dx_tls_server_set_events(server.srv, &server_events, &server);
    dx_tls_server_set_handshake_timeout(server.srv, 10000);
    if (dx_uv_tls_listen(&loop, server.srv, "127.0.0.1", 0, on_accept, &server, &server.l,
                         &err) != 0) {
        char text[512];
        dx_error_format(err, text, sizeof(text));
        fprintf(stderr, "listen: %s\n", text); /* "uv: EADDRINUSE: ..." */
        dx_error_free(err);
        goto out;
    }
    unsigned port = dx_uv_listener_port(server.l);
    printf("server: listening on 127.0.0.1:%u\n", port);

    /* 3. The client: "localhost" is resolved, connected to, sent as SNI
     * and checked against the server's certificate. */
    if ((rc = dx_uv_tls_connect(&loop, cctx, "localhost", port, on_connect, &client, NULL)) !=
        0) {
        fprintf(stderr, "dx_uv_tls_connect: %s\n", dx_strerror(rc));
        dx_uv_listener_close(server.l, false);
        goto out;
    }

    /* 4. The loop runs until nothing is left: both connections closed and
     * released, the listener closed. */
    uv_run(&loop, UV_RUN_DEFAULT);

    /* 5. The verdict. */
    bool ok = client.secure && client.authorized && client.len == client.want &&
              client.ended && !client.failed && client.closed && server.accepted == 1 &&
              server.closed == 1 && !server.failed;
    if (ok) {
        size_t off = 0;
        for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
            size_t n = strlen(lines[i]);
            ok = ok && memcmp(client.got + off, lines[i], n) == 0;
            off += n;
        }
    }
    printf("%s\n", ok ? "ok: echoed over TLS on TCP, both sides closed with close_notify"
                      : "FAILED");
    status = ok ? 0 : 1;

out:
    /* The client's connection is the application's: released last. Then
     * the loop runs once more for what its release closes. */
    dx_tls_destroy(client.t);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "handles left open on the loop\n");
        status = 1;
    }
    dx_tls_server_free(server.srv);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
    dx_pki_cert_free(cert);
    dx_pki_cert_free(ca);
    return status;
}
