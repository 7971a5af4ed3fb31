/*
 * starttls: STARTTLS over a plain-text stream.
 *
 *   client --(fd stream)-- socketpair --(fd stream)-- server
 *            plain text, then a TLS filter on the same stream
 *
 * Many protocols (SMTP, IMAP, POP3, LDAP, XMPP, ...) begin in plain text
 * and switch to TLS on request: the client sends STARTTLS, the server
 * answers OK, and from the next byte on both sides speak TLS on the same
 * connection. With libduplex each side reads the plain-text part itself,
 * as the consumer of its transport stream, and then puts a TLS filter on
 * that stream with dx_tls_attach(), which makes the filter the transport's
 * consumer from then on.
 *
 * The one subtle point is the bytes a side has read past the command it
 * switches on. They are not plain text: they belong to TLS (a client that
 * did not wait for OK already sent its ClientHello), and they must never
 * be taken as further plain-text commands, which is how servers that
 * obeyed commands injected after STARTTLS were attacked (CVE-2011-0411).
 * Each side here hands whatever its line reader holds past the command to
 * its filter with dx_tls_prefix(), before dx_tls_start().
 *
 * Part 1: a client asks for the capabilities, sends STARTTLS, waits for OK,
 * and logs in over TLS; both sides then close with close_notify. A client
 * that waits for OK leaves nothing past the command.
 *
 * Part 2: a man in the middle sends "STARTTLS" and a command in one
 * packet. The server reads both at once, answers OK, and hands the
 * command to its TLS filter as the first bytes of the handshake, where it
 * is refused: it is never answered as a command.
 *
 * Both sides live in one process over a socketpair(2), driven by one
 * dx_fd_poll() loop. The program exits 0 only if both parts went as
 * described.
 *
 * Build: cc starttls.c $(pkg-config --cflags --libs libduplex)
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <duplex/duplex.h>

/* One side of a conversation of lines. */
struct peer {
    const char *name;
    dx_stream *transport;
    dx_tls_ctx *ctx;
    dx_tls *t;          /* NULL while in plain text */
    char in[512];       /* bytes read and not yet taken as lines */
    size_t len;
    /* What to do with a line, in plain text and over TLS. */
    void (*plain_line)(struct peer *p, const char *line);
    void (*secure_line)(struct peer *p, const char *line);
    size_t prefixed;    /* bytes handed to dx_tls_prefix() */
    unsigned caps;      /* "CAPS" answers received */
    bool secure, authorized, logged_in, ended, closed;
    char error[64];     /* the name of the error that failed the side, if any */
};

/* Writes a line; a failure shows up as the stream's error. */
static void send_line(dx_stream *s, const char *text)
{
    dx_iov iov[2] = {{text, strlen(text)}, {"\n", 1}};
    dx_stream_writev(s, iov, 2);
}

/* The stream this side speaks on now: the transport, or the cleartext of
 * its TLS filter. */
static dx_stream *stream_of(struct peer *p)
{
    return p->t ? dx_tls_upper(p->t) : p->transport;
}

/* Appends data to the reader and calls handle for each complete line.
 * Stops as soon as the side has switched to TLS: what is left in p->in is
 * then not plain text. */
static void take_lines(struct peer *p, const uint8_t *data, size_t len,
                       void (*handle)(struct peer *, const char *))
{
    if (len > sizeof(p->in) - p->len) {
        dx_stream_fail_with(stream_of(p),
                            dx_error_new(DX_EPROTO, "ELINETOOLONG", "starttls", "line too long"));
        return;
    }
    memcpy(p->in + p->len, data, len);
    p->len += len;
    bool was_plain = !p->t;
    char *nl;
    while ((nl = memchr(p->in, '\n', p->len)) != NULL) {
        char line[sizeof(p->in)];
        size_t n = (size_t)(nl - p->in);
        memcpy(line, p->in, n);
        line[n] = '\0';
        p->len -= n + 1;
        memmove(p->in, nl + 1, p->len);
        handle(p, line);
        if (was_plain && p->t)
            return; /* switched: the rest went to TLS */
    }
}

/* ---- the switch ---------------------------------------------------------------- */

static void on_secure(dx_tls *t, void *user);
static const dx_tls_events tls_events = {.on_secure = on_secure};
static const dx_stream_events secure_events;

/* Puts a TLS filter on the transport, in the given role. Whatever the
 * line reader holds past the command is the start of TLS: it goes in
 * first. From dx_tls_attach() on the filter is the transport's consumer
 * and owns it. Called from inside the transport's on_data. */
static void start_tls(struct peer *p, dx_tls_role role)
{
    int rc = dx_tls_new(p->ctx, role, &p->t);
    if (rc != 0) {
        dx_stream_fail_with(p->transport, dx_error_new(rc, NULL, "starttls", "no TLS"));
        return;
    }
    dx_tls_set_events(p->t, &tls_events, p);
    dx_tls_set_handshake_timeout(p->t, 10000);
    if (role == DX_TLS_CLIENT)
        dx_tls_set_servername(p->t, "mail.example");
    dx_stream_set_events(dx_tls_upper(p->t), &secure_events, p);
    if (p->len > 0 && (rc = dx_tls_prefix(p->t, p->in, p->len)) == 0) {
        p->prefixed = p->len;
        p->len = 0;
    }
    if (rc != 0 || (rc = dx_tls_attach(p->t, p->transport)) != 0 ||
        (rc = dx_tls_start(p->t)) != 0)
        dx_stream_fail_with(stream_of(p), dx_error_new(rc, NULL, "starttls", "no TLS"));
}

/* ---- the server ------------------------------------------------------------------ */

static void server_plain_line(struct peer *p, const char *line)
{
    if (strcmp(line, "CAPA") == 0) {
        send_line(p->transport, "CAPS STARTTLS");
    } else if (strcmp(line, "STARTTLS") == 0) {
        send_line(p->transport, "OK");
        start_tls(p, DX_TLS_SERVER);
    } else {
        send_line(p->transport, "ERR say STARTTLS first");
    }
}

static void server_secure_line(struct peer *p, const char *line)
{
    char user[64], answer[128];
    if (sscanf(line, "LOGIN %63s %*s", user) == 1) {
        p->logged_in = true;
        snprintf(answer, sizeof(answer), "WELCOME %s", user);
        send_line(dx_tls_upper(p->t), answer);
    } else {
        send_line(dx_tls_upper(p->t), "ERR unknown command");
    }
}

/* ---- the client --------------------------------------------------------------------- */

static void client_plain_line(struct peer *p, const char *line)
{
    printf("client: < %s\n", line);
    if (strcmp(line, "CAPS STARTTLS") == 0) {
        p->caps++;
        printf("client: > STARTTLS\n");
        send_line(p->transport, "STARTTLS");
    } else if (strcmp(line, "OK") == 0) {
        start_tls(p, DX_TLS_CLIENT);
    } else {
        /* No STARTTLS offered: a client that needs TLS gives up. */
        dx_stream_fail_with(p->transport, dx_error_new(DX_EPROTO, "ENOSTARTTLS", "starttls",
                                                       "no STARTTLS: %s", line));
    }
}

static void client_secure_line(struct peer *p, const char *line)
{
    printf("client: < %s (over TLS)\n", line);
    if (strcmp(line, "WELCOME alice") == 0)
        p->logged_in = true;
    dx_stream_end(dx_tls_upper(p->t)); /* close_notify; done */
}

/* ---- the man in the middle: records what the server answers ------------------ */

static void attacker_line(struct peer *p, const char *line)
{
    if (strcmp(line, "OK") == 0)
        printf("attacker: < OK\n");
    else if (strncmp(line, "CAPS", 4) == 0)
        p->caps++; /* the injected command was obeyed */
}

/* ---- events -------------------------------------------------------------------------- */

static void plain_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    struct peer *p = user;
    (void)s;
    take_lines(p, data, len, p->plain_line);
}

static void secure_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    struct peer *p = user;
    (void)s;
    take_lines(p, data, len, p->secure_line);
}

static void on_secure(dx_tls *t, void *user)
{
    struct peer *p = user;
    dx_tls_cipher_info ci;
    p->secure = true;
    p->authorized = dx_tls_authorized(t);
    if (dx_tls_cipher(t, &ci) != 0)
        ci.name = "?";
    printf("%s: secure, %s, %s", p->name, dx_tls_protocol(t), ci.name);
    if (dx_tls_get_role(t) == DX_TLS_CLIENT) {
        printf(", server verified: %s\n", p->authorized ? "yes" : "no");
        printf("client: > LOGIN alice ******** (over TLS)\n");
        send_line(dx_tls_upper(t), "LOGIN alice hunter2");
    } else {
        printf(", %zu bytes came past the command\n", p->prefixed);
    }
}

static void on_end(dx_stream *s, void *user)
{
    struct peer *p = user;
    p->ended = true;
    if (!p->t)
        dx_stream_end(s); /* plain text: the peer hung up; so do we */
}

static void on_error(dx_stream *s, const dx_error *err, void *user)
{
    struct peer *p = user;
    (void)s;
    snprintf(p->error, sizeof(p->error), "%s", dx_error_name(err));
}

static void on_close(dx_stream *s, void *user)
{
    struct peer *p = user;
    (void)s;
    p->closed = true;
}

static const dx_stream_events plain_events = {
    .on_data = plain_data, .on_end = on_end, .on_error = on_error, .on_close = on_close};
static const dx_stream_events secure_events = {
    .on_data = secure_data, .on_end = on_end, .on_error = on_error, .on_close = on_close};

/* ---- set-up ------------------------------------------------------------------------- */

static dx_tls_ctx *make_ctx(const dx_pki_cert *trust, const dx_pki_cert *present)
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

/* A connected socketpair, an fd stream on each end, plain-text events on
 * both. Returns 0 or -1. */
static int connect_peers(struct peer *a, struct peer *b)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        perror("socketpair");
        return -1;
    }
    if (dx_fd_stream_new(sv[0], sv[0], DX_FD_CLOSE, &a->transport) != 0 ||
        dx_fd_stream_new(sv[1], sv[1], DX_FD_CLOSE, &b->transport) != 0) {
        dx_stream_destroy(a->transport);
        return -1;
    }
    dx_stream_set_events(a->transport, &plain_events, a);
    dx_stream_set_events(b->transport, &plain_events, b);
    return 0;
}

/* Drives both transports until both peers closed: at most 100 polls of
 * at most 100 ms, and the TLS deadlines (a handshake timeout). */
static void run(struct peer *a, struct peer *b)
{
    dx_stream *fds[2] = {a->transport, b->transport};
    for (int steps = 0; !(a->closed && b->closed) && steps < 100; steps++) {
        dx_fd_poll(fds, 2, 100);
        if (a->t)
            dx_tls_check_timeouts(a->t);
        if (b->t)
            dx_tls_check_timeouts(b->t);
    }
}

/* Releases a side: its filter with the transport, or the transport alone. */
static void release(struct peer *p)
{
    if (p->t)
        dx_tls_destroy(p->t);
    else
        dx_stream_destroy(p->transport);
}

int main(void)
{
    static const char *const names[] = {"mail.example", NULL};
    dx_pki_opts ca_opts = {.common_name = "starttls demo CA", .is_ca = true};
    dx_pki_opts srv_opts = {.common_name = "mail.example", .dns_names = names,
                            .ext_key_usage = DX_PKI_EKU_SERVER};
    dx_pki_cert *ca = NULL, *srv = NULL;
    dx_tls_ctx *cctx = NULL, *sctx = NULL;
    int status = 1;

    if (dx_pki_issue(NULL, &ca_opts, &ca, NULL) != 0 ||
        dx_pki_issue(ca, &srv_opts, &srv, NULL) != 0) {
        fprintf(stderr, "cannot make the demo certificates\n");
        goto out;
    }
    if (!(sctx = make_ctx(NULL, srv)) || !(cctx = make_ctx(ca, NULL)))
        goto out;

    /* Part 1: a client that asks for STARTTLS and waits for OK. */
    printf("-- part 1: STARTTLS, then a login over TLS\n");
    struct peer server = {.name = "server", .ctx = sctx,
                          .plain_line = server_plain_line, .secure_line = server_secure_line};
    struct peer client = {.name = "client", .ctx = cctx,
                          .plain_line = client_plain_line, .secure_line = client_secure_line};
    if (connect_peers(&client, &server) != 0)
        goto out;
    printf("client: > CAPA\n");
    send_line(client.transport, "CAPA");
    run(&client, &server);
    bool ok1 = client.caps == 1 && client.secure && client.authorized && server.secure &&
               client.logged_in && server.logged_in && server.prefixed == 0 &&
               client.prefixed == 0 && client.ended && server.ended && client.closed &&
               server.closed && dx_tls_clean_end(client.t) && dx_tls_clean_end(server.t) &&
               !client.error[0] && !server.error[0];
    if (client.error[0] || server.error[0])
        fprintf(stderr, "part 1: client error \"%s\", server error \"%s\"\n", client.error,
                server.error);
    release(&client);
    release(&server);

    /* Part 2: a command injected right behind STARTTLS, in the same
     * packet, by a man in the middle who then reads what comes back. */
    printf("-- part 2: a command injected behind STARTTLS\n");
    struct peer victim = {.name = "server", .ctx = sctx,
                          .plain_line = server_plain_line, .secure_line = server_secure_line};
    struct peer attacker = {.name = "attacker", .plain_line = attacker_line};
    if (connect_peers(&attacker, &victim) != 0)
        goto out;
    printf("attacker: > STARTTLS\\nCAPA\\n, in one write\n");
    send_line(attacker.transport, "STARTTLS\nCAPA");
    run(&attacker, &victim);
    printf("server: took the %zu bytes past STARTTLS as TLS, and refused them: %s\n",
           victim.prefixed, victim.error);
    bool ok2 = victim.prefixed == strlen("CAPA\n") && attacker.caps == 0 && !victim.secure &&
               strncmp(victim.error, "ERR_SSL_", 8) == 0 && attacker.closed && victim.closed;
    release(&attacker);
    release(&victim);

    printf("%s\n", ok1 && ok2 ? "ok" : "FAILED");
    status = ok1 && ok2 ? 0 : 1;
out:
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
    dx_pki_cert_free(srv);
    dx_pki_cert_free(ca);
    return status;
}
