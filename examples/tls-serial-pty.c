/*
 * tls-serial-pty: TLS over a pseudo-terminal standing in for a serial line,
 * event-driven.
 *
 *   server dx_tls --(fd stream)-- pty master ==raw line== pty slave --(fd stream)-- client dx_tls
 *
 * A pseudo-terminal pair behaves like the two ends of a serial cable: what
 * is written on one end is read on the other, through a terminal line
 * discipline. Both ends are set up as a serial port is: raw mode
 * (cfmakeraw: no echo, no line editing, no newline translation, no signal
 * characters, 8 data bits, so that TLS records pass unchanged), a speed
 * (cfsetspeed: on a pseudo-terminal it is only recorded, on a real port it
 * sets the baud rate, and both ends must agree), and CLOCAL (ignore the
 * modem control lines, which a three-wire cable does not have). On a real
 * line, open /dev/ttyUSB0 or /dev/ttyS0 with O_RDWR | O_NOCTTY instead of
 * the pty and set it up with the same function.
 *
 * Unlike examples/blocking-client.c, which runs the same kind of line with
 * the blocking API in two processes, this one is event-driven: both ends
 * live in one process, each an fd stream under a TLS filter, and a single
 * dx_fd_poll() loop drives them, waiting at most until the filters' next
 * deadline. That is the shape of a program that serves several lines (or
 * a line and a socket) at once.
 *
 * The server, on the master, answers each line it receives with the line
 * numbered; the client, on the slave, sends a few lines, each once the
 * answer to the previous one came, and ends after the last answer. The
 * program exits 0 only if every answer was right and both sides closed
 * with close_notify. Where no pseudo-terminal can be had, a pipe pair
 * takes its place.
 *
 * Build: cc tls-serial-pty.c $(pkg-config --cflags --libs libduplex)
 */
#define _XOPEN_SOURCE 700 /* posix_openpt, grantpt, unlockpt, ptsname */
#define _DEFAULT_SOURCE   /* cfmakeraw, cfsetspeed */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <duplex/duplex.h>

static const char *const script[] = {
    "hello over a serial line",
    "TLS records hold every byte value: only a raw line passes them unchanged",
    "goodbye",
};
#define NLINES (sizeof(script) / sizeof(script[0]))

/* ---- the line: a pseudo-terminal pair set up as a serial port ---------------- */

/* Raw mode at `speed`, as a serial port carrying TLS needs. 0 or -1. */
static int setup_line(int fd, speed_t speed)
{
    struct termios tio;
    if (tcgetattr(fd, &tio) != 0)
        return -1;
    cfmakeraw(&tio);              /* 8 bits, no processing of any byte */
    tio.c_cflag |= CLOCAL | CREAD; /* no modem lines; the receiver on */
    tio.c_cc[VMIN] = 1;           /* reads return what came, */
    tio.c_cc[VTIME] = 0;          /* without an inter-byte timer */
    if (cfsetspeed(&tio, speed) != 0)
        return -1;
    return tcsetattr(fd, TCSANOW, &tio);
}

/* Opens a pseudo-terminal pair, both ends raw at 115200 baud. Returns 0
 * with the master in *master and the slave in *slave, or -1. */
static int open_line(int *master, int *slave)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0)
        return -1;
    char *name;
    int s = -1;
    if (grantpt(m) != 0 || unlockpt(m) != 0 || !(name = ptsname(m)) ||
        (s = open(name, O_RDWR | O_NOCTTY)) < 0 || setup_line(s, B115200) != 0 ||
        setup_line(m, B115200) != 0) {
        if (s >= 0)
            close(s);
        close(m);
        return -1;
    }
    *master = m;
    *slave = s;
    return 0;
}

/* ---- lines of text over a stream ------------------------------------------------ */

/* What one side saw, and its partial line. */
struct side {
    const char *name;
    dx_tls *t;
    char line[256];
    size_t len;
    unsigned lines;   /* complete lines received */
    bool wrong;       /* an answer that was not the one expected */
    bool secure, authorized, ended, failed, closed;
};

static int write_line(dx_stream *s, const char *text)
{
    dx_iov iov[2] = {{text, strlen(text)}, {"\n", 1}};
    int rc = dx_stream_writev(s, iov, 2); /* one write, one TLS record */
    return rc < 0 ? rc : 0;
}

/* Adds data to the side's partial line and calls got_line() for each line
 * completed (without its newline). */
static void take_lines(dx_stream *s, struct side *sd, const uint8_t *data, size_t len,
                       void (*got_line)(dx_stream *, struct side *, const char *))
{
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n') {
            if (sd->len + 1 < sizeof(sd->line))
                sd->line[sd->len++] = (char)data[i];
            continue;
        }
        sd->line[sd->len] = '\0';
        sd->len = 0;
        sd->lines++;
        got_line(s, sd, sd->line);
    }
}

/* ---- the server: numbers each line ----------------------------------------------- */

static void server_line(dx_stream *s, struct side *sd, const char *line)
{
    char answer[300];
    snprintf(answer, sizeof(answer), "%u: %s", sd->lines, line);
    if (write_line(s, answer) != 0)
        sd->failed = true;
}

static void server_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    take_lines(s, user, data, len, server_line);
}

/* ---- the client: one line at a time -------------------------------------------- */

static void client_line(dx_stream *s, struct side *sd, const char *line)
{
    char want[300];
    printf("client: < %s\n", line);
    if (sd->lines > NLINES) {
        sd->wrong = true; /* more answers than questions */
        return;
    }
    snprintf(want, sizeof(want), "%u: %s", sd->lines, script[sd->lines - 1]);
    if (strcmp(line, want) != 0)
        sd->wrong = true;
    if (sd->lines < NLINES) {
        printf("client: > %s\n", script[sd->lines]);
        if (write_line(s, script[sd->lines]) != 0)
            sd->failed = true;
    } else {
        dx_stream_end(s); /* close_notify; the server answers with its own */
    }
}

static void client_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    take_lines(s, user, data, len, client_line);
}

/* ---- events common to both ------------------------------------------------------- */

static void on_secure(dx_tls *t, void *user)
{
    struct side *sd = user;
    dx_tls_cipher_info ci;
    /* What the connection tells about the session is read here: once it
     * has closed, those getters answer as before the handshake. */
    sd->secure = true;
    sd->authorized = dx_tls_authorized(t);
    if (dx_tls_cipher(t, &ci) != 0)
        ci.name = "?";
    printf("%s: secure, %s, %s\n", sd->name, dx_tls_protocol(t), ci.name);
    if (dx_tls_get_role(t) == DX_TLS_CLIENT) {
        printf("client: > %s\n", script[0]);
        if (write_line(dx_tls_upper(t), script[0]) != 0)
            sd->failed = true;
    }
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

static const dx_stream_events server_events = {
    .on_data = server_data, .on_end = on_end, .on_error = on_error, .on_close = on_close};
static const dx_stream_events client_events = {
    .on_data = client_data, .on_end = on_end, .on_error = on_error, .on_close = on_close};

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

static uint64_t now_ms(void *arg)
{
    struct timespec ts;
    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A connection over an fd stream on rfd and wfd (the same fd for a tty),
 * which it owns from then on, closing the fds when it closes. */
static int open_side(struct side *sd, dx_tls_ctx *ctx, dx_tls_role role,
                     const dx_stream_events *events, int rfd, int wfd, dx_stream **transport)
{
    int rc = dx_fd_stream_new(rfd, wfd, DX_FD_CLOSE, transport);
    if (rc != 0) {
        close(rfd);
        if (wfd != rfd)
            close(wfd);
        return rc;
    }
    if ((rc = dx_tls_new(ctx, role, &sd->t)) != 0) {
        dx_stream_destroy(*transport);
        return rc;
    }
    dx_tls_set_events(sd->t, &tls_events, sd);
    dx_tls_set_clock(sd->t, now_ms, NULL);
    dx_tls_set_handshake_timeout(sd->t, 10000); /* a dead line fails, not hangs */
    if (role == DX_TLS_CLIENT && (rc = dx_tls_set_servername(sd->t, "line.local")) != 0) {
        dx_stream_destroy(*transport);
        return rc;
    }
    dx_stream_set_events(dx_tls_upper(sd->t), events, sd);
    rc = dx_tls_attach(sd->t, *transport);
    if (rc == DX_EINVAL)
        dx_stream_destroy(*transport);
    return rc;
}

int main(void)
{
    static const char *const names[] = {"line.local", NULL};
    dx_pki_opts ca_opts = {.common_name = "tls-serial-pty demo CA", .is_ca = true};
    dx_pki_opts srv_opts = {.common_name = "line.local", .dns_names = names,
                            .ext_key_usage = DX_PKI_EKU_SERVER};
    dx_pki_cert *ca = NULL, *srv = NULL;
    dx_tls_ctx *cctx = NULL, *sctx = NULL;
    struct side server = {.name = "server"}, client = {.name = "client"};
    dx_stream *lines[2] = {NULL, NULL};
    int status = 1, rc;

    /* 1. Certificates and contexts: the server presents a certificate for
     * "line.local", the client trusts only the CA that signed it. */
    if (dx_pki_issue(NULL, &ca_opts, &ca, NULL) != 0 ||
        dx_pki_issue(ca, &srv_opts, &srv, NULL) != 0) {
        fprintf(stderr, "cannot make the demo certificates\n");
        goto out;
    }
    if (!(sctx = make_ctx(NULL, srv)) || !(cctx = make_ctx(ca, NULL)))
        goto out;

    /* 2. The line, and a TLS connection on each end. */
    int sr, sw, cr, cw; /* the server's and the client's fds */
    int master, slave, to_client[2], to_server[2];
    if (open_line(&master, &slave) == 0) {
        printf("line: a pseudo-terminal pair, both ends raw at 115200 baud\n");
        sr = sw = master;
        cr = cw = slave;
    } else if (pipe(to_client) == 0) {
        if (pipe(to_server) != 0) {
            perror("pipe");
            close(to_client[0]);
            close(to_client[1]);
            goto out;
        }
        printf("line: no pseudo-terminal here, a pipe pair instead\n");
        sr = to_server[0];
        sw = to_client[1];
        cr = to_client[0];
        cw = to_server[1];
    } else {
        perror("pipe");
        goto out;
    }
    if ((rc = open_side(&server, sctx, DX_TLS_SERVER, &server_events, sr, sw, &lines[0])) != 0) {
        close(cr);
        if (cw != cr)
            close(cw);
        fprintf(stderr, "server: %s\n", dx_strerror(rc));
        goto out;
    }
    if ((rc = open_side(&client, cctx, DX_TLS_CLIENT, &client_events, cr, cw, &lines[1])) != 0 ||
        (rc = dx_tls_start(server.t)) != 0 || (rc = dx_tls_start(client.t)) != 0) {
        fprintf(stderr, "setting up: %s\n", dx_strerror(rc));
        goto out;
    }

    /* 3. One loop for both ends: wait for either fd or the earlier
     * deadline, dispatch, handle what is due. A tty does not report an end
     * of input as a pipe does: each connection closes once close_notify
     * went both ways. */
    while (!(server.closed && client.closed)) {
        uint64_t d = dx_tls_deadline(server.t), e = dx_tls_deadline(client.t);
        uint64_t now = now_ms(NULL);
        if (e < d)
            d = e;
        int timeout = d == DX_TLS_NO_DEADLINE ? -1
                      : d <= now              ? 0
                      : d - now > 60000       ? 60000
                                              : (int)(d - now);
        if ((rc = dx_fd_poll(lines, 2, timeout)) < 0) {
            fprintf(stderr, "dx_fd_poll: %s\n", dx_strerror(rc));
            break;
        }
        dx_tls_check_timeouts(server.t);
        dx_tls_check_timeouts(client.t);
    }

    bool ok = server.secure && client.secure && client.authorized &&
              client.lines == NLINES && !client.wrong && server.lines == NLINES &&
              client.ended && server.ended && dx_tls_clean_end(client.t) &&
              dx_tls_clean_end(server.t) && !client.failed && !server.failed;
    printf("%s\n", ok ? "ok: every line answered, both sides closed with close_notify"
                      : "FAILED");
    status = ok ? 0 : 1;
out:
    /* The client's end first: the master of a pty whose slave is gone
     * reads EIO, which no one is waiting for any more. */
    dx_tls_destroy(client.t);
    dx_tls_destroy(server.t);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
    dx_pki_cert_free(srv);
    dx_pki_cert_free(ca);
    return status;
}
