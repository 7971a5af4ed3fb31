/*
 * tls-in-tls: TLS inside TLS, through a TLS proxy.
 *
 *   client:  inner dx_tls --(outer upper)-- outer dx_tls --+
 *                                                          | memory pair 1
 *   proxy:                   link --(upper)-- outer dx_tls --+
 *                              |
 *                              | memory pair 2
 *   backend:                 inner dx_tls -- upper: the service
 *
 * The client opens a TLS connection to a proxy (the outer connection) and,
 * through it, a second TLS connection to a backend behind the proxy (the
 * inner connection), end to end: the proxy terminates the outer TLS and
 * forwards the cleartext it gets, which is the inner connection's TLS
 * records, to the backend, without being able to read or change them.
 * This is what an HTTPS proxy does with CONNECT, or a TLS tunnel.
 *
 * In libduplex a connection's transport can be any dx_stream, so the inner
 * connection is attached to the upper (cleartext) stream of the outer one,
 * and the proxy's forwarding is a dx_link between its cleartext stream and
 * its connection to the backend, carrying backpressure and half-close. Two
 * memory pairs stand in for the two network connections: delivery is
 * synchronous, so everything below happens inside the calls that start
 * it, and no loop is needed.
 *
 * The two servers have certificates from two different authorities, and
 * the client trusts each only for its own layer: the proxy CA for the
 * outer connection, the backend CA for the inner one. The inner layer is
 * held to TLS 1.2 while the outer one speaks TLS 1.3, to show that the
 * layers are independent. The program prints both layers' protocol,
 * cipher and server name, sends a message to the backend, reads its answer
 * and ends; the ends cross the proxy, every connection closes with
 * close_notify, and the program exits 0 only if all of that happened.
 *
 * Build: cc tls-in-tls.c $(pkg-config --cflags --libs libduplex)
 */
#include <stdio.h>
#include <string.h>

#include <duplex/duplex.h>

static const char message[] = "hello, backend: this went through a proxy it cannot read";
static const char prefix[] = "backend got: ";

/* What one connection saw. */
struct side {
    const char *name;
    dx_tls *t;
    char got[256];
    size_t len;
    bool secure, authorized, ended, failed, closed;
};

/* ---- events ------------------------------------------------------------------ */

/* Prints what a client learned about its server: the protocol, the
 * cipher, and the names in the server's certificate. Read here: once the
 * connection has closed those getters answer as before the handshake. */
static void on_secure(dx_tls *t, void *user)
{
    struct side *sd = user;
    sd->secure = true;
    sd->authorized = dx_tls_authorized(t);
    if (dx_tls_get_role(t) != DX_TLS_CLIENT)
        return;
    dx_tls_cipher_info ci;
    if (dx_tls_cipher(t, &ci) != 0)
        ci.name = "?";
    const dx_tls_cert *peer = dx_tls_peer_cert(t);
    const char *cn = dx_tls_name_get(dx_tls_cert_subject(peer), "CN", 0);
    const char *san = dx_tls_cert_subjectaltname(peer);
    printf("%s: %s, %s, server \"%s\" (%s), verified: %s\n", sd->name, dx_tls_protocol(t),
           ci.name, cn ? cn : "?", san ? san : "no altnames", sd->authorized ? "yes" : "no");
}

static const dx_tls_events tls_events = {.on_secure = on_secure};

static void on_end(dx_stream *s, void *user)
{
    struct side *sd = user;
    (void)s;
    sd->ended = true;
}

static void on_error(dx_stream *s, const dx_error *err, void *user)
{
    struct side *sd = user;
    char text[512];
    (void)s;
    sd->failed = true;
    dx_error_format(err, text, sizeof(text));
    fprintf(stderr, "%s: %s\n", sd->name, text);
}

static void on_close(dx_stream *s, void *user)
{
    struct side *sd = user;
    (void)s;
    sd->closed = true;
}

/* The backend's service: answers each piece with the prefix and the
 * piece. */
static void backend_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    struct side *sd = user;
    dx_iov iov[2] = {{prefix, strlen(prefix)}, {data, len}};
    if (dx_stream_writev(s, iov, 2) < 0)
        sd->failed = true;
}

static const dx_stream_events backend_events = {
    .on_data = backend_data, .on_end = on_end, .on_error = on_error, .on_close = on_close};

/* The client's end-to-end cleartext: the backend's answer. Once all of it
 * came, the client ends: close_notify to the backend. */
static void client_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    struct side *sd = user;
    if (len > sizeof(sd->got) - 1 - sd->len)
        len = sizeof(sd->got) - 1 - sd->len;
    memcpy(sd->got + sd->len, data, len);
    sd->len += len;
    sd->got[sd->len] = '\0';
    if (sd->len == strlen(prefix) + strlen(message)) {
        printf("inner: received \"%s\", ending\n", sd->got);
        dx_stream_end(s);
    }
}

static const dx_stream_events client_events = {
    .on_data = client_data, .on_end = on_end, .on_error = on_error, .on_close = on_close};

/* ---- set-up ---------------------------------------------------------------------- */

/* A context that trusts `trust` and/or presents `present`; max_version may
 * be NULL for the default. NULL on failure. */
static dx_tls_ctx *make_ctx(const dx_pki_cert *trust, const dx_pki_cert *present,
                            const char *max_version)
{
    dx_tls_config *cfg;
    dx_tls_ctx *ctx = NULL;
    dx_error *err = NULL;
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
    if (rc == 0 && max_version)
        rc = dx_tls_config_set_max_version(cfg, max_version);
    if (rc == 0)
        rc = dx_tls_ctx_new(cfg, &ctx, &err);
    if (rc != 0) {
        char text[512];
        dx_error_format(err, text, sizeof(text));
        fprintf(stderr, "TLS context: %s\n", err ? text : dx_strerror(rc));
    }
    dx_error_free(err);
    dx_tls_config_free(cfg);
    return ctx;
}

/* A connection attached to transport, which it owns from then on (but
 * for DX_EINVAL); events, if not NULL, on its cleartext stream; a client
 * asks for servername. Not started. */
static int open_side(struct side *sd, dx_tls_ctx *ctx, dx_tls_role role,
                     const char *servername, const dx_stream_events *events,
                     dx_stream *transport)
{
    int rc = dx_tls_new(ctx, role, &sd->t);
    if (rc == 0 && servername)
        rc = dx_tls_set_servername(sd->t, servername);
    if (rc != 0) {
        dx_stream_destroy(transport);
        return rc;
    }
    dx_tls_set_events(sd->t, &tls_events, sd);
    if (events)
        dx_stream_set_events(dx_tls_upper(sd->t), events, sd);
    rc = dx_tls_attach(sd->t, transport);
    if (rc == DX_EINVAL)
        dx_stream_destroy(transport);
    return rc;
}

/* Whether a connection has closed. The outer connections' cleartext
 * streams have consumers of their own (the inner client, the proxy's
 * link), so their state is read rather than their events. */
static bool closed(dx_tls *t)
{
    return dx_stream_state(dx_tls_upper(t)) & DX_STREAM_CLOSED;
}

/* A CA and a server certificate it signed for name. */
static int issue(const char *ca_name, const char *name, dx_pki_cert **ca, dx_pki_cert **cert)
{
    const char *const names[] = {name, NULL};
    dx_pki_opts ca_opts = {.common_name = ca_name, .is_ca = true};
    dx_pki_opts opts = {.common_name = name, .dns_names = names,
                        .ext_key_usage = DX_PKI_EKU_SERVER};
    int rc = dx_pki_issue(NULL, &ca_opts, ca, NULL);
    return rc != 0 ? rc : dx_pki_issue(*ca, &opts, cert, NULL);
}

int main(void)
{
    dx_pki_cert *proxy_ca = NULL, *proxy_cert = NULL, *backend_ca = NULL, *backend_cert = NULL;
    dx_tls_ctx *outer_cctx = NULL, *inner_cctx = NULL, *proxy_ctx = NULL, *backend_ctx = NULL;
    struct side outer = {.name = "outer"}, inner = {.name = "inner"};
    struct side proxy = {.name = "proxy"}, backend = {.name = "backend"};
    dx_stream *c1 = NULL, *p1 = NULL, *p2 = NULL, *b2 = NULL; /* the two pairs' ends */
    dx_link *forward = NULL;
    int status = 1, rc;

    /* 1. Two authorities, two server certificates, four contexts. The
     * client's inner context allows at most TLS 1.2. */
    if (issue("proxy CA", "proxy.example", &proxy_ca, &proxy_cert) != 0 ||
        issue("backend CA", "backend.example", &backend_ca, &backend_cert) != 0) {
        fprintf(stderr, "cannot make the demo certificates\n");
        goto out;
    }
    if (!(proxy_ctx = make_ctx(NULL, proxy_cert, NULL)) ||
        !(backend_ctx = make_ctx(NULL, backend_cert, NULL)) ||
        !(outer_cctx = make_ctx(proxy_ca, NULL, NULL)) ||
        !(inner_cctx = make_ctx(backend_ca, NULL, "TLSv1.2")))
        goto out;

    /* 2. The two network connections: client to proxy, proxy to backend. */
    if ((rc = dx_pair_new(NULL, &c1, &p1)) != 0 || (rc = dx_pair_new(NULL, &p2, &b2)) != 0) {
        fprintf(stderr, "dx_pair_new: %s\n", dx_strerror(rc));
        dx_stream_destroy(c1);
        dx_stream_destroy(p1);
        goto out;
    }

    /* 3. The proxy: a TLS server on its client connection, whose cleartext
     * is linked to its backend connection. A real proxy would choose the
     * backend first (from the SNI name, or a CONNECT line read before
     * linking). */
    if ((rc = open_side(&proxy, proxy_ctx, DX_TLS_SERVER, NULL, NULL, p1)) != 0 ||
        (rc = dx_link_new(dx_tls_upper(proxy.t), p2, NULL, NULL, &forward)) != 0) {
        fprintf(stderr, "proxy: %s\n", dx_strerror(rc));
        dx_stream_destroy(p2);
        dx_stream_destroy(b2);
        dx_stream_destroy(c1);
        goto out;
    }
    p2 = NULL; /* the link's now */

    /* 4. The backend: a TLS server on its end of the proxy's connection. */
    if ((rc = open_side(&backend, backend_ctx, DX_TLS_SERVER, NULL, &backend_events, b2)) != 0) {
        fprintf(stderr, "backend: %s\n", dx_strerror(rc));
        dx_stream_destroy(c1);
        goto out;
    }

    /* 5. The client: the outer connection on its network connection, the
     * inner one on the outer one's cleartext stream, each checking its own
     * server's name. */
    if ((rc = open_side(&outer, outer_cctx, DX_TLS_CLIENT, "proxy.example", NULL, c1)) != 0 ||
        (rc = open_side(&inner, inner_cctx, DX_TLS_CLIENT, "backend.example", &client_events,
                        dx_tls_upper(outer.t))) != 0) {
        fprintf(stderr, "client: %s\n", dx_strerror(rc));
        goto out;
    }

    /* 6. Start the servers, then the client's two layers. The outer
     * handshake runs to the proxy; the inner ClientHello, written to the
     * outer cleartext stream, crosses it and the proxy to the backend.
     * Over memory pairs both handshakes have completed when the last call
     * returns. */
    if (dx_tls_start(proxy.t) != 0 || dx_tls_start(backend.t) != 0 ||
        dx_tls_start(outer.t) != 0 || dx_tls_start(inner.t) != 0) {
        fprintf(stderr, "dx_tls_start failed\n");
        goto out;
    }

    /* 7. The message. The backend's answer, and the client's end once it
     * has all of it, happen inside this call. */
    printf("inner: sending \"%s\"\n", message);
    if (dx_stream_write(dx_tls_upper(inner.t), message, strlen(message)) < 0)
        goto out;

    /* 8. The client's end (in client_data) closed the inner connection
     * with close_notify both ways; its transport, the outer cleartext
     * stream, ended with it, which closed the outer connection, the
     * proxy's link and both pairs in turn. */
    printf("proxy: forwarded %llu bytes to the backend and %llu back, none of them readable\n",
           (unsigned long long)dx_link_bytes_ab(forward),
           (unsigned long long)dx_link_bytes_ba(forward));
    char want[sizeof(prefix) + sizeof(message)];
    snprintf(want, sizeof(want), "%s%s", prefix, message);
    bool ok = outer.secure && outer.authorized && inner.secure && inner.authorized &&
              strcmp(inner.got, want) == 0 && inner.ended && backend.ended &&
              dx_tls_clean_end(inner.t) && dx_tls_clean_end(backend.t) &&
              dx_tls_clean_end(outer.t) && dx_tls_clean_end(proxy.t) && inner.closed &&
              backend.closed && closed(outer.t) && closed(proxy.t) && dx_link_is_done(forward) &&
              !outer.failed && !inner.failed && !proxy.failed && !backend.failed;
    printf("%s\n", ok ? "ok: the answer came back through both layers, all four closed "
                        "with close_notify"
                      : "FAILED");
    status = ok ? 0 : 1;
out:
    /* The inner client before the outer one, whose cleartext stream is its
     * transport. */
    dx_tls_destroy(inner.t);
    dx_tls_destroy(outer.t);
    dx_tls_destroy(backend.t);
    dx_link_destroy(forward);
    dx_tls_destroy(proxy.t);
    dx_tls_ctx_unref(outer_cctx);
    dx_tls_ctx_unref(inner_cctx);
    dx_tls_ctx_unref(proxy_ctx);
    dx_tls_ctx_unref(backend_ctx);
    dx_pki_cert_free(proxy_cert);
    dx_pki_cert_free(proxy_ca);
    dx_pki_cert_free(backend_cert);
    dx_pki_cert_free(backend_ca);
    return status;
}
