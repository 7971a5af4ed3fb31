/*
 * tls-pipe: a TLS client and a TLS server in one process, over two pipes.
 *
 *   client dx_tls --(fd stream)-- pipe pair --(fd stream)-- server dx_tls
 *
 * The program makes a throw-away certificate authority and a server
 * certificate for "localhost" in memory (dx_pki), builds a server context
 * that presents the certificate and a client context that trusts the CA,
 * and joins the two connections with two pipe(2)s, each end wrapped as an
 * fd stream. The TLS filters are attached to the fd streams (the
 * TLSSocket shape) and a small poll(2) loop drives everything.
 *
 * The conversation: once the handshake completes, the client sends a
 * message; the server sends it back in upper case; when the whole reply
 * is in, the client ends its side, which sends close_notify; the server,
 * seeing it, ends its own side (the default, Node's allowHalfOpen false),
 * which sends close_notify back. Both connections then close without an
 * error. The program exits 0 only if all of that happened.
 *
 * Time comes from outside: the loop asks the filters for their next
 * deadline, waits at most until then, and calls dx_tls_check_timeouts().
 * Nothing sleeps for a fixed time and nothing touches the network.
 *
 * Build: cc tls-pipe.c $(pkg-config --cflags --libs libduplex)
 */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <duplex/duplex.h>

static const char message[] = "hello over TLS over a pipe pair";

/* What one side of the conversation saw. */
struct side {
    const char *name;
    dx_tls *t;
    char got[256];       /* cleartext received */
    size_t len;
    bool secure;         /* on_secure came */
    bool authorized;     /* dx_tls_authorized() at on_secure */
    bool ended;          /* on_end: the peer's close_notify */
    bool failed;         /* on_error */
    bool closed;         /* on_close */
};

/* One clock for the filters and for the loop that waits on their
 * deadlines: milliseconds of CLOCK_MONOTONIC. */
static uint64_t now_ms(void *arg)
{
    struct timespec ts;
    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- events shared by both sides ---------------------------------------- */

/* The handshake completed on this side. What the connection can tell
 * about itself is read here: once it has closed, the getters answer as
 * before the handshake (NULL, false). */
static void on_secure(dx_tls *t, void *user)
{
    struct side *sd = user;
    dx_tls_cipher_info ci;
    sd->secure = true;
    sd->authorized = dx_tls_authorized(t);
    if (dx_tls_cipher(t, &ci) != 0)
        ci.name = "?";
    printf("%s: secure, %s, %s", sd->name, dx_tls_protocol(t), ci.name);
    if (dx_tls_get_role(t) == DX_TLS_CLIENT) {
        /* The client verified the server: its chain up to the trusted CA,
         * and that its certificate names "localhost". */
        printf(", authorized: %s", sd->authorized ? "yes" : "no");
        if (!sd->authorized)
            printf(" (%s)", dx_tls_authorization_error(t));
    } else {
        /* A server that did not ask for a client certificate has verified
         * nobody: authorized stays false, as in Node. */
        const char *sni = dx_tls_servername(t);
        printf(", client asked for \"%s\"", sni ? sni : "(no SNI)");
    }
    printf("\n");
    if (dx_tls_get_role(t) == DX_TLS_CLIENT) {
        printf("client: sending \"%s\"\n", message);
        if (dx_stream_write(dx_tls_upper(t), message, strlen(message)) < 0)
            sd->failed = true;
    }
}

/* An idle connection (no byte either way for the idle timeout) is given
 * up: failing the cleartext stream fails the connection and, through the
 * link of dx_tls_attach(), the transport. The handle stays the caller's. */
static void on_timeout(dx_tls *t, void *user)
{
    struct side *sd = user;
    fprintf(stderr, "%s: idle for too long, giving up\n", sd->name);
    dx_stream_fail_with(dx_tls_upper(t),
                        dx_error_new(DX_ETIMEDOUT, NULL, "tls-pipe", "idle timeout"));
}

static const dx_tls_events tls_events = {
    .on_secure = on_secure,
    .on_timeout = on_timeout,
};

static void on_end(dx_stream *s, void *user)
{
    struct side *sd = user;
    (void)s;
    sd->ended = true;
    printf("%s: the peer ended its side (%s)\n", sd->name,
           dx_tls_clean_end(sd->t) ? "close_notify" : "no close_notify");
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
    printf("%s: closed\n", sd->name);
}

/* ---- the client's cleartext ------------------------------------------------ */

static void client_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    struct side *sd = user;
    if (len > sizeof(sd->got) - 1 - sd->len)
        len = sizeof(sd->got) - 1 - sd->len;
    memcpy(sd->got + sd->len, data, len);
    sd->len += len;
    /* The whole reply is in: end our side. The filter sends close_notify
     * after everything written before, then ends the transport's write
     * side (here: closes our write end of the pipe). */
    if (sd->len == strlen(message)) {
        printf("client: received \"%.*s\", ending\n", (int)sd->len, sd->got);
        dx_stream_end(s);
    }
}

static const dx_stream_events client_events = {
    .on_data = client_data,
    .on_end = on_end,
    .on_error = on_error,
    .on_close = on_close,
};

/* ---- the server's cleartext: an upper-casing echo ---------------------------- */

static void server_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    struct side *sd = user;
    uint8_t upper[1024];
    while (len > 0) {
        size_t n = len < sizeof(upper) ? len : sizeof(upper);
        for (size_t i = 0; i < n; i++)
            upper[i] = (uint8_t)toupper(data[i]);
        int rc = dx_stream_write(s, upper, n);
        if (rc < 0) {
            sd->failed = true;
            return;
        }
        if (rc == DX_FULL)
            dx_stream_pause(s); /* accepted; read no more until on_drain */
        data += n;
        len -= n;
    }
}

static void server_drain(dx_stream *s, void *user)
{
    (void)user;
    dx_stream_resume(s);
}

/* The server does not end its side itself: after the client's
 * close_notify the filter does it, once what was written before has gone
 * (dx_tls_set_allow_half_open() would keep it open). */
static const dx_stream_events server_events = {
    .on_data = server_data,
    .on_drain = server_drain,
    .on_end = on_end,
    .on_error = on_error,
    .on_close = on_close,
};

/* ---- set-up ---------------------------------------------------------------- */

/* A context from a configuration: the CA to trust, or a certificate and
 * key to present. NULL on failure, with the reason printed. */
static dx_tls_ctx *make_ctx(const dx_pki_cert *trust, const dx_pki_cert *present)
{
    dx_tls_config *cfg;
    dx_tls_ctx *ctx = NULL;
    dx_error *err = NULL;
    int rc = dx_tls_config_new(&cfg);
    if (rc != 0) {
        fprintf(stderr, "dx_tls_config_new: %s\n", dx_strerror(rc));
        return NULL;
    }
    if (trust) {
        const char *pem = dx_pki_cert_pem(trust);
        rc = dx_tls_config_add_ca(cfg, pem, strlen(pem));
    }
    if (rc == 0 && present) {
        const char *cert = dx_pki_cert_pem(present), *key = dx_pki_key_pem(present);
        rc = dx_tls_config_add_cert(cfg, cert, strlen(cert), key, strlen(key), NULL);
    }
    if (rc == 0 && (rc = dx_tls_ctx_new(cfg, &ctx, &err)) != 0) {
        char text[512];
        dx_error_format(err, text, sizeof(text));
        fprintf(stderr, "dx_tls_ctx_new: %s\n", err ? text : dx_strerror(rc));
        dx_error_free(err);
    } else if (rc != 0) {
        fprintf(stderr, "TLS configuration: %s\n", dx_strerror(rc));
    }
    dx_tls_config_free(cfg);
    return ctx;
}

/* A connection over ctx, attached to transport, with our events. The
 * connection owns the transport from dx_tls_attach() on. */
static int open_side(struct side *sd, dx_tls_ctx *ctx, dx_tls_role role,
                     const dx_stream_events *events, dx_stream *transport)
{
    int rc = dx_tls_new(ctx, role, &sd->t);
    if (rc != 0) {
        dx_stream_destroy(transport);
        return rc;
    }
    dx_tls_set_events(sd->t, &tls_events, sd);
    dx_tls_set_clock(sd->t, now_ms, NULL);
    dx_tls_set_handshake_timeout(sd->t, 10000);
    dx_tls_set_idle_timeout(sd->t, 10000);
    if (role == DX_TLS_CLIENT &&
        (rc = dx_tls_set_servername(sd->t, "localhost")) != 0) {
        dx_stream_destroy(transport);
        return rc;
    }
    dx_stream_set_events(dx_tls_upper(sd->t), events, sd);
    rc = dx_tls_attach(sd->t, transport);
    if (rc == DX_EINVAL)
        dx_stream_destroy(transport); /* only then is it still ours */
    return rc;
}

/* How long dx_fd_poll() may wait: until the earlier of the two deadlines,
 * or without limit (-1) when there is none. */
static int poll_timeout(const dx_tls *a, const dx_tls *b)
{
    uint64_t d = dx_tls_deadline(a), e = dx_tls_deadline(b), now = now_ms(NULL);
    if (e < d)
        d = e;
    if (d == DX_TLS_NO_DEADLINE)
        return -1;
    if (d <= now)
        return 0;
    return d - now > 60000 ? 60000 : (int)(d - now);
}

int main(void)
{
    static const char *const names[] = {"localhost", NULL};
    dx_pki_opts ca_opts = {.common_name = "tls-pipe demo CA", .is_ca = true};
    dx_pki_opts srv_opts = {.common_name = "localhost", .dns_names = names,
                            .ext_key_usage = DX_PKI_EKU_SERVER};
    dx_pki_cert *ca = NULL, *srv = NULL;
    dx_tls_ctx *cctx = NULL, *sctx = NULL;
    struct side client = {.name = "client"}, server = {.name = "server"};
    dx_stream *ct = NULL, *st = NULL;
    int c2s[2], s2c[2], rc;
    int status = 1;

    /* 1. A throw-away PKI: a CA and a server certificate it signed. */
    if ((rc = dx_pki_issue(NULL, &ca_opts, &ca, NULL)) != 0 ||
        (rc = dx_pki_issue(ca, &srv_opts, &srv, NULL)) != 0) {
        fprintf(stderr, "dx_pki_issue: %s\n", dx_strerror(rc));
        goto out;
    }

    /* 2. Contexts: the server presents its certificate, the client trusts
     * the CA (and only it). Both can serve any number of connections. */
    if (!(sctx = make_ctx(NULL, srv)) || !(cctx = make_ctx(ca, NULL)))
        goto out;

    /* 3. Two pipes, one per direction; each end becomes one fd stream that
     * reads one pipe and writes the other, and closes both when done. */
    if (pipe(c2s) != 0 || pipe(s2c) != 0) {
        perror("pipe");
        goto out;
    }
    if ((rc = dx_fd_stream_new(s2c[0], c2s[1], DX_FD_CLOSE, &ct)) != 0 ||
        (rc = dx_fd_stream_new(c2s[0], s2c[1], DX_FD_CLOSE, &st)) != 0) {
        fprintf(stderr, "dx_fd_stream_new: %s\n", dx_strerror(rc));
        dx_stream_destroy(ct);
        goto out;
    }

    /* 4. A TLS connection on each fd stream (the TLSSocket shape). Nothing
     * is sent or read before dx_tls_start(), so no event can be missed. */
    if ((rc = open_side(&server, sctx, DX_TLS_SERVER, &server_events, st)) != 0) {
        dx_stream_destroy(ct); /* not handed to a connection yet */
        fprintf(stderr, "setting up the server: %s\n", dx_strerror(rc));
        goto out;
    }
    if ((rc = open_side(&client, cctx, DX_TLS_CLIENT, &client_events, ct)) != 0) {
        fprintf(stderr, "setting up the client: %s\n", dx_strerror(rc));
        goto out;
    }
    if ((rc = dx_tls_start(server.t)) != 0 || (rc = dx_tls_start(client.t)) != 0) {
        fprintf(stderr, "dx_tls_start: %s\n", dx_strerror(rc));
        goto out;
    }

    /* 5. The loop: wait for the pipes or the next deadline, dispatch, and
     * let the filters handle what is due. The fd streams belong to the
     * connections now, but stay valid until dx_tls_destroy(). */
    dx_stream *fds[2] = {ct, st};
    while (!(client.closed && server.closed)) {
        dx_fd_interest in[2];
        int timeout = poll_timeout(client.t, server.t);
        if (timeout < 0 && dx_fd_stream_interest(ct, in) == 0 &&
            dx_fd_stream_interest(st, in) == 0) {
            fprintf(stderr, "stuck: nothing to wait for\n");
            break;
        }
        if ((rc = dx_fd_poll(fds, 2, timeout)) < 0) {
            fprintf(stderr, "dx_fd_poll: %s\n", dx_strerror(rc));
            break;
        }
        dx_tls_check_timeouts(client.t);
        dx_tls_check_timeouts(server.t);
    }

    /* 6. Full success: the reply is the message in upper case, each side
     * saw the other's close_notify, nothing failed, the server verified. */
    char want[sizeof(message)];
    for (size_t i = 0; i < sizeof(message); i++)
        want[i] = (char)toupper((unsigned char)message[i]);
    bool ok = client.secure && server.secure && client.authorized &&
              client.len == strlen(want) && memcmp(client.got, want, client.len) == 0 &&
              client.ended && server.ended && dx_tls_clean_end(client.t) &&
              dx_tls_clean_end(server.t) && !client.failed && !server.failed &&
              client.closed && server.closed;
    printf("%s\n", ok ? "ok: echoed in upper case, both sides closed with close_notify"
                      : "FAILED");
    status = ok ? 0 : 1;

out:
    /* dx_tls_destroy() releases each connection with its transport. */
    dx_tls_destroy(client.t);
    dx_tls_destroy(server.t);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
    dx_pki_cert_free(srv);
    dx_pki_cert_free(ca);
    return status;
}
