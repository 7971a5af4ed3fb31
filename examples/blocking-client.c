/*
 * blocking-client: a blocking TLS client for a simple serial program.
 *
 *   client  ==(pty master)==  raw tty line  ==(pty slave)==  device
 *
 * A small device on a serial line offers a console: it reads commands,
 * one per line, and answers each with one line. Here a pseudo-terminal
 * stands in for the serial line (on a real one, open /dev/ttyUSB0 or
 * similar and set it up the same way, with its speed): the device runs
 * in a child process on the slave side, the client in the parent on the
 * master side. The line is put in raw mode first (cfmakeraw), since a
 * terminal's line discipline would otherwise rewrite TLS bytes (newline
 * translation, echo, ^C). Where no pseudo-terminal can be had, a pipe
 * pair takes its place.
 *
 * Both sides use the blocking API (<duplex/blocking.h>): plain calls that
 * return when their work is done, no event loop and no callbacks, as a
 * program on a small system would be written. Lines are read one byte at
 * a time: the rest of each TLS record waits in the connection's read
 * buffer, so that costs no extra read from the line.
 *
 * The program makes a throw-away certificate authority and a certificate
 * for the device in memory (dx_pki); the client trusts only that CA and
 * checks that the device's certificate names "device.local". It exits 0
 * only if every answer came back as expected and both sides closed with
 * close_notify.
 *
 * Build: cc blocking-client.c $(pkg-config --cflags --libs libduplex)
 */
#define _XOPEN_SOURCE 700 /* posix_openpt, grantpt, unlockpt, ptsname */
#define _DEFAULT_SOURCE   /* cfmakeraw */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <duplex/duplex.h>

/* ---- lines over a blocking connection --------------------------------- */

/* Prints what went wrong on the connection, with the code's name. */
static void report(const char *who, const char *what, dx_blocking *b)
{
    char text[512];
    dx_error_format(dx_blocking_error(b), text, sizeof(text));
    fprintf(stderr, "%s: %s: %s\n", who, what, text);
}

/* Reads one line (without its newline) into line. Returns its length,
 * 0 if the peer closed before a line began, or a negative code. */
static long read_line(dx_blocking *b, char *line, size_t cap)
{
    size_t len = 0;
    for (;;) {
        char c;
        long n = dx_blocking_read(b, &c, 1);
        if (n < 0)
            return n;
        if (n == 0)
            return len ? DX_ECONNRESET : 0; /* no end in the middle of a line */
        if (c == '\n')
            break;
        if (len + 1 < cap)
            line[len++] = c;
    }
    line[len] = '\0';
    return len ? (long)len : -1 /* an empty line: not expected */;
}

/* Writes text and a newline. Returns 0 or a negative code. */
static long write_line(dx_blocking *b, const char *text)
{
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "%s\n", text);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return DX_EINVAL;
    long r = dx_blocking_write(b, buf, (size_t)n);
    return r < 0 ? r : 0;
}

/* One end of the line: the fd to read and the fd to write (the same fd
 * for a tty). */
struct end {
    int rfd, wfd;
};

static void close_end(struct end e)
{
    close(e.rfd);
    if (e.wfd != e.rfd)
        close(e.wfd);
}

/* A connection over the end e in the given role, handed to a dx_blocking
 * that owns both the connection and the fds from then on (NULL on
 * failure: the fds are closed). */
static dx_blocking *open_blocking(dx_tls_ctx *ctx, dx_tls_role role, struct end e)
{
    dx_tls *t;
    dx_blocking *b;
    if (dx_tls_new(ctx, role, &t) != 0) {
        close_end(e);
        return NULL;
    }
    /* Give up on a silent line instead of waiting for ever. */
    dx_tls_set_handshake_timeout(t, 10000);
    dx_tls_set_idle_timeout(t, 10000);
    if ((role == DX_TLS_CLIENT && dx_tls_set_servername(t, "device.local") != 0) ||
        dx_blocking_new_fd(t, e.rfd, e.wfd, DX_BLOCKING_CLOSE_FDS, &b) != 0) {
        dx_tls_destroy(t);
        close_end(e);
        return NULL;
    }
    return b;
}

/* ---- the device: a console with three commands ------------------------ */

static int device(dx_tls_ctx *ctx, struct end e)
{
    dx_blocking *b = open_blocking(ctx, DX_TLS_SERVER, e);
    if (!b)
        return 1;
    int status = 0;
    char line[128], reply[160];
    unsigned commands = 0;
    for (;;) {
        long n = read_line(b, line, sizeof(line));
        if (n == 0)
            break; /* the client's close_notify: the session is over */
        if (n < 0) {
            report("device", "read", b);
            status = 1;
            break;
        }
        commands++;
        if (strcmp(line, "hello") == 0)
            snprintf(reply, sizeof(reply), "hello, this is the device");
        else if (strcmp(line, "count") == 0)
            snprintf(reply, sizeof(reply), "%u commands so far", commands);
        else if (strncmp(line, "echo ", 5) == 0)
            snprintf(reply, sizeof(reply), "%s", line + 5);
        else
            snprintf(reply, sizeof(reply), "unknown command: %s", line);
        if (write_line(b, reply) < 0) {
            report("device", "write", b);
            status = 1;
            break;
        }
    }
    /* After the client's close_notify the connection has sent its own
     * (Node's allowHalfOpen false): close only makes sure it went. */
    if (status == 0 && dx_blocking_close(b, 0) != 0) {
        report("device", "close", b);
        status = 1;
    }
    dx_blocking_free(b);
    return status;
}

/* ---- the client ----------------------------------------------------------- */

static int client(dx_tls_ctx *ctx, struct end e)
{
    static const struct {
        const char *command, *answer;
    } script[] = {
        {"hello", "hello, this is the device"},
        {"echo over a serial line, through TLS", "over a serial line, through TLS"},
        {"count", "3 commands so far"},
        {"reboot", "unknown command: reboot"},
    };
    dx_blocking *b = open_blocking(ctx, DX_TLS_CLIENT, e);
    if (!b)
        return 1;
    int status = 1;
    /* The handshake would come with the first write; made explicit here
     * to show what was agreed. */
    if (dx_blocking_handshake(b) != 0) {
        report("client", "handshake", b);
        goto out;
    }
    dx_tls *t = dx_blocking_tls(b);
    dx_tls_cipher_info ci;
    if (dx_tls_cipher(t, &ci) != 0)
        ci.name = "?";
    printf("client: %s, %s, device verified: %s\n", dx_tls_protocol(t), ci.name,
           dx_tls_authorized(t) ? "yes" : "no");
    for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
        char line[160];
        printf("> %s\n", script[i].command);
        if (write_line(b, script[i].command) < 0) {
            report("client", "write", b);
            goto out;
        }
        long n = read_line(b, line, sizeof(line));
        if (n <= 0) {
            if (n < 0)
                report("client", "read", b);
            else
                fprintf(stderr, "client: the device closed early\n");
            goto out;
        }
        printf("< %s\n", line);
        if (strcmp(line, script[i].answer) != 0) {
            fprintf(stderr, "client: expected \"%s\"\n", script[i].answer);
            goto out;
        }
    }
    /* close_notify, and wait for the device's. */
    if (dx_blocking_close(b, DX_BLOCKING_WAIT_PEER) != 0) {
        report("client", "close", b);
        goto out;
    }
    printf("client: closed, device's close_notify received: %s\n",
           dx_tls_clean_end(t) ? "yes" : "no");
    status = dx_tls_clean_end(t) ? 0 : 1;
out:
    dx_blocking_free(b);
    return status;
}

/* ---- set-up ------------------------------------------------------------------ */

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

/* A pseudo-terminal pair in raw mode: the master is the client's end,
 * the slave the device's. Returns 0, or -1 if none can be had here. */
static int open_pty(struct end *line, struct end *dev)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0)
        return -1;
    char *name;
    int s = -1;
    struct termios tio;
    if (grantpt(m) != 0 || unlockpt(m) != 0 || !(name = ptsname(m)) ||
        (s = open(name, O_RDWR | O_NOCTTY)) < 0 || tcgetattr(s, &tio) != 0) {
        if (s >= 0)
            close(s);
        close(m);
        return -1;
    }
    /* Raw: no echo, no line editing, no newline or signal processing,
     * 8-bit clean; what a serial line carrying TLS needs. */
    cfmakeraw(&tio);
    if (tcsetattr(s, TCSANOW, &tio) != 0) {
        close(s);
        close(m);
        return -1;
    }
    *line = (struct end){m, m};
    *dev = (struct end){s, s};
    return 0;
}

/* Two pipes, one each way. Returns 0 or -1. */
static int open_pipes(struct end *line, struct end *dev)
{
    int to_dev[2], to_line[2];
    if (pipe(to_dev) != 0)
        return -1;
    if (pipe(to_line) != 0) {
        close(to_dev[0]);
        close(to_dev[1]);
        return -1;
    }
    *line = (struct end){to_line[0], to_dev[1]};
    *dev = (struct end){to_dev[0], to_line[1]};
    return 0;
}

int main(void)
{
    static const char *const names[] = {"device.local", NULL};
    dx_pki_opts ca_opts = {.common_name = "blocking-client demo CA", .is_ca = true};
    dx_pki_opts dev_opts = {.common_name = "device.local", .dns_names = names,
                            .ext_key_usage = DX_PKI_EKU_SERVER};
    dx_pki_cert *ca = NULL, *devcert = NULL;
    dx_tls_ctx *cctx = NULL, *sctx = NULL;
    int status = 1;
    struct end line, dev;

    if (dx_pki_issue(NULL, &ca_opts, &ca, NULL) != 0 ||
        dx_pki_issue(ca, &dev_opts, &devcert, NULL) != 0) {
        fprintf(stderr, "cannot make the demo certificates\n");
        goto out;
    }
    if (!(sctx = make_ctx(NULL, devcert)) || !(cctx = make_ctx(ca, NULL)))
        goto out;

    /* The serial line. */
    if (open_pty(&line, &dev) == 0) {
        printf("line: a pseudo-terminal in raw mode\n");
    } else if (open_pipes(&line, &dev) == 0) {
        printf("line: no pseudo-terminal here, a pipe pair instead\n");
    } else {
        perror("pipe");
        goto out;
    }
    fflush(stdout); /* before fork: nothing printed twice */

    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        close_end(line);
        close_end(dev);
        goto out;
    }
    if (pid == 0) {
        /* The device: it frees what it inherited and leaves with exit(),
         * which lets OpenSSL release its own memory too (stdout was
         * flushed before the fork, so nothing is printed twice). */
        close_end(line);
        int rc = device(sctx, dev);
        dx_tls_ctx_unref(cctx);
        dx_tls_ctx_unref(sctx);
        dx_pki_cert_free(devcert);
        dx_pki_cert_free(ca);
        exit(rc);
    }
    close_end(dev);
    status = client(cctx, line);
    int wstatus;
    if (waitpid(pid, &wstatus, 0) != pid || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        fprintf(stderr, "the device failed\n");
        status = 1;
    }
    printf("%s\n", status == 0 ? "ok" : "FAILED");
out:
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
    dx_pki_cert_free(devcert);
    dx_pki_cert_free(ca);
    return status;
}
