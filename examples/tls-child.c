/*
 * tls-child: TLS to a child process over pipes.
 *
 *   parent: client dx_tls --(fd stream)-- two pipes --(stdin, stdout)-- child: server dx_tls
 *
 * The parent starts a child process, here the same program run again with
 * "--child", whose standard input and output are pipes, and speaks TLS to
 * it: the child is a TLS server on its stdio, the way a helper program, a
 * sandboxed worker or a command behind dxtls's exec: endpoint is. Any
 * program that reads TLS on stdin and writes it on stdout would do.
 *
 * The parent makes a throw-away certificate authority and a certificate for
 * "worker.local" in memory (dx_pki), and hands the certificate and its key
 * to the child through a third pipe, which the child finds as fd 3: no
 * file, no command-line argument and no environment variable ever holds
 * the key. The parent trusts only that CA and checks that the child's
 * certificate names "worker.local".
 *
 * The conversation: the parent sends 256 KiB, more than a pipe holds, and
 * the child sends everything back as it comes, so that both directions
 * fill up and wait for each other: backpressure crosses the pipes and the
 * TLS filters both ways. Once all of it came back, the parent ends its side
 * (close_notify); the child ends its own in answer, closes stdout and
 * exits. The parent checks every byte, both close_notify, and the child's
 * exit status, and exits 0 only if all is well.
 *
 * Each process drives its one fd stream with dx_fd_poll(), waiting at most
 * until the connection's next deadline (a handshake timeout, so that a
 * child that never answers cannot hang the parent). The child writes its
 * messages on stderr: its stdout is the TLS channel.
 *
 * Build: cc tls-child.c $(pkg-config --cflags --libs libduplex)
 */
#define _POSIX_C_SOURCE 200809L

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <duplex/duplex.h>

#define TOTAL ((size_t)256 * 1024) /* bytes the parent sends */
#define CHUNK ((size_t)16 * 1024)  /* per write */

/* The byte at offset i of what the parent sends: a pattern that a lost,
 * doubled or reordered byte would break. */
static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 7 + i / 251);
}

/* What one process saw of its connection. */
struct side {
    const char *name;
    dx_tls *t;
    size_t sent, received; /* cleartext bytes */
    bool mismatch;         /* a byte came back wrong */
    bool secure, authorized, ended, failed, closed;
};

/* ---- events shared by both processes ---------------------------------------- */

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
    if (dx_tls_get_role(t) == DX_TLS_CLIENT) {
        const dx_tls_cert *peer = dx_tls_peer_cert(t);
        const char *cn = dx_tls_name_get(dx_tls_cert_subject(peer), "CN", 0);
        printf("parent: secure, %s, %s, child is \"%s\", verified: %s\n",
               dx_tls_protocol(t), ci.name, cn ? cn : "?",
               sd->authorized ? "yes" : "no");
    } else {
        fprintf(stderr, "child: secure, %s, %s\n", dx_tls_protocol(t), ci.name);
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

/* A context that trusts `trust` (PEM) and presents cert and key (PEM);
 * either may be NULL. NULL on failure, with the reason on stderr. */
static dx_tls_ctx *make_ctx(const char *trust, const char *cert, const char *key)
{
    dx_tls_config *cfg;
    dx_tls_ctx *ctx = NULL;
    dx_error *err = NULL;
    if (dx_tls_config_new(&cfg) != 0)
        return NULL;
    int rc = 0;
    if (trust)
        rc = dx_tls_config_add_ca(cfg, trust, strlen(trust));
    if (rc == 0 && cert)
        rc = dx_tls_config_add_cert(cfg, cert, strlen(cert), key, strlen(key), NULL);
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

/* Milliseconds of CLOCK_MONOTONIC: the filters' clock and the loop's. */
static uint64_t now_ms(void *arg)
{
    struct timespec ts;
    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A connection in the given role over transport, which it owns from
 * dx_tls_attach() on (also when this fails, but for DX_EINVAL). */
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
    if (role == DX_TLS_CLIENT && (rc = dx_tls_set_servername(sd->t, "worker.local")) != 0) {
        dx_stream_destroy(transport);
        return rc;
    }
    dx_stream_set_events(dx_tls_upper(sd->t), events, sd);
    rc = dx_tls_attach(sd->t, transport);
    if (rc == DX_EINVAL)
        dx_stream_destroy(transport);
    return rc != 0 ? rc : dx_tls_start(sd->t);
}

/* Drives one connection over one fd stream until it closed: wait for the
 * pipes or the next deadline, dispatch, handle what is due. */
static int run(struct side *sd, dx_stream *transport)
{
    while (!sd->closed) {
        uint64_t deadline = dx_tls_deadline(sd->t), now = now_ms(NULL);
        int timeout = deadline == DX_TLS_NO_DEADLINE ? -1
                      : deadline <= now                ? 0
                      : deadline - now > 60000         ? 60000
                                                       : (int)(deadline - now);
        int rc = dx_fd_poll(&transport, 1, timeout);
        if (rc < 0) {
            fprintf(stderr, "%s: dx_fd_poll: %s\n", sd->name, dx_strerror(rc));
            return rc;
        }
        dx_tls_check_timeouts(sd->t);
    }
    return 0;
}

/* ---- the child: a TLS echo server on its stdin and stdout ---------------------- */

static void child_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    struct side *sd = user;
    sd->received += len;
    /* Send it back. Past the high-water mark the bytes are still taken,
     * but we read no more until they have gone (on_drain). */
    int rc = dx_stream_write(s, data, len);
    if (rc == DX_FULL)
        dx_stream_pause(s);
    else if (rc < 0)
        sd->failed = true;
}

static void child_drain(dx_stream *s, void *user)
{
    (void)user;
    dx_stream_resume(s);
}

/* The child never ends its side itself: after the parent's close_notify
 * the filter does it, once the echo written before has gone. */
static const dx_stream_events child_events = {
    .on_data = child_data,
    .on_drain = child_drain,
    .on_end = on_end,
    .on_error = on_error,
    .on_close = on_close,
};

/* Reads fd to its end into a new NUL-terminated buffer (free() it). */
static char *read_all(int fd, size_t *len)
{
    size_t cap = 4096;
    char *buf = malloc(cap);
    *len = 0;
    while (buf) {
        if (cap - *len < 2) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger)
                break;
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + *len, cap - *len - 1);
        if (n == 0) {
            buf[*len] = '\0';
            return buf;
        }
        if (n < 0)
            break;
        *len += (size_t)n;
    }
    free(buf);
    return NULL;
}

static int child_main(void)
{
    struct side sd = {.name = "child"};
    dx_stream *transport = NULL;
    dx_tls_ctx *ctx = NULL;
    int status = 1;

    /* 1. The credentials, from fd 3: the certificate's PEM, a NUL, the
     * key's PEM, a NUL. */
    size_t len;
    char *creds = read_all(3, &len);
    close(3);
    size_t cert_len = creds ? strlen(creds) : 0;
    if (!creds || cert_len + 1 >= len) {
        fprintf(stderr, "child: no credentials on fd 3\n");
        free(creds);
        return 1;
    }
    ctx = make_ctx(NULL, creds, creds + cert_len + 1);
    memset(creds, 0, len); /* the key: keep it no longer than needed */
    free(creds);
    if (!ctx)
        return 1;

    /* 2. An fd stream on stdin and stdout. It closes them when it closes,
     * and ends stdout (the parent sees EOF) when the connection ends. */
    int rc = dx_fd_stream_new(STDIN_FILENO, STDOUT_FILENO, DX_FD_CLOSE, &transport);
    if (rc != 0 ||
        (rc = open_side(&sd, ctx, DX_TLS_SERVER, &child_events, transport)) != 0) {
        fprintf(stderr, "child: setting up: %s\n", dx_strerror(rc));
        goto out;
    }

    /* 3. Serve until the connection closed. */
    if (run(&sd, transport) == 0 && sd.ended && !sd.failed) {
        fprintf(stderr, "child: echoed %zu bytes, closing\n", sd.received);
        status = 0;
    }
out:
    dx_tls_destroy(sd.t);
    dx_tls_ctx_unref(ctx);
    return status;
}

/* ---- the parent: a TLS client that writes to the child and checks the echo ---- */

/* Writes the next chunks until the stream's buffer is full or all is
 * sent; then ends our side (close_notify after the data). */
static void pump(dx_stream *s, struct side *sd)
{
    uint8_t chunk[CHUNK];
    while (sd->sent < TOTAL) {
        size_t n = TOTAL - sd->sent < CHUNK ? TOTAL - sd->sent : CHUNK;
        for (size_t i = 0; i < n; i++)
            chunk[i] = pattern(sd->sent + i);
        int rc = dx_stream_write(s, chunk, n);
        if (rc < 0) {
            sd->failed = true;
            return;
        }
        sd->sent += n;
        if (rc == DX_FULL)
            return; /* go on in on_drain */
    }
}

static void parent_drain(dx_stream *s, void *user)
{
    pump(s, user);
}

static void parent_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    struct side *sd = user;
    for (size_t i = 0; i < len; i++)
        if (data[i] != pattern(sd->received + i))
            sd->mismatch = true;
    sd->received += len;
    if (sd->received == TOTAL) {
        printf("parent: all %zu bytes came back, ending\n", sd->received);
        dx_stream_end(s);
    }
}

static const dx_stream_events parent_events = {
    .on_data = parent_data,
    .on_drain = parent_drain,
    .on_end = on_end,
    .on_error = on_error,
    .on_close = on_close,
};

/* A pipe whose fds are closed on exec: the child gets only those it is
 * given on purpose. */
static int cloexec_pipe(int p[2])
{
    if (pipe(p) != 0)
        return -1;
    fcntl(p[0], F_SETFD, FD_CLOEXEC);
    fcntl(p[1], F_SETFD, FD_CLOEXEC);
    return 0;
}

/* Writes text and its NUL to a blocking fd. */
static bool write_string(int fd, const char *text)
{
    size_t len = strlen(text) + 1;
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n < 0)
            return false;
        text += n;
        len -= (size_t)n;
    }
    return true;
}

static void close_pipe(int p[2])
{
    close(p[0]);
    close(p[1]);
}

/* Starts `self --child` with its stdin reading to_child, its stdout
 * writing from_child and its fd 3 reading creds. Returns its pid, or -1. */
static pid_t spawn_child(const char *self, int to_child[2], int from_child[2], int creds[2])
{
    fflush(stdout); /* nothing printed twice */
    pid_t pid = fork();
    if (pid == 0) {
        /* dup2() clears close-on-exec on the copies. The pipes were made
         * after fds 0 to 2, so none of them is already 0, 1 or 3. */
        if (dup2(to_child[0], STDIN_FILENO) < 0 || dup2(from_child[1], STDOUT_FILENO) < 0 ||
            dup2(creds[0], 3) < 0)
            _exit(127);
        execlp(self, self, "--child", (char *)NULL);
        perror("exec");
        _exit(127);
    }
    return pid;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--child") == 0)
        return child_main();

    static const char *const names[] = {"worker.local", NULL};
    dx_pki_opts ca_opts = {.common_name = "tls-child demo CA", .is_ca = true};
    dx_pki_opts child_opts = {.common_name = "worker.local", .dns_names = names,
                              .ext_key_usage = DX_PKI_EKU_SERVER};
    dx_pki_cert *ca = NULL, *cert = NULL;
    dx_tls_ctx *ctx = NULL;
    struct side sd = {.name = "parent"};
    dx_stream *transport = NULL;
    int to_child[2], from_child[2], creds[2];
    int status = 1, rc;

    /* 1. A throw-away PKI, and a client context that trusts only its CA. */
    if (dx_pki_issue(NULL, &ca_opts, &ca, NULL) != 0 ||
        dx_pki_issue(ca, &child_opts, &cert, NULL) != 0) {
        fprintf(stderr, "cannot make the demo certificates\n");
        goto out;
    }
    if (!(ctx = make_ctx(dx_pki_cert_pem(ca), NULL, NULL)))
        goto out;

    /* 2. Three pipes, and the child. */
    if (cloexec_pipe(to_child) != 0)
        goto out;
    if (cloexec_pipe(from_child) != 0) {
        close_pipe(to_child);
        goto out;
    }
    if (cloexec_pipe(creds) != 0) {
        close_pipe(to_child);
        close_pipe(from_child);
        goto out;
    }
    pid_t pid = spawn_child(argv[0], to_child, from_child, creds);
    /* The child's ends are the child's: closing ours lets each side see
     * EOF when the other closes its end. */
    close(to_child[0]);
    close(from_child[1]);
    close(creds[0]);
    if (pid < 0) {
        perror("fork");
        close(to_child[1]);
        close(from_child[0]);
        close(creds[1]);
        goto out;
    }

    /* 3. The child's credentials down the third pipe, then its end. They
     * fit in the pipe, so this does not wait for the child. */
    bool sent = write_string(creds[1], dx_pki_cert_pem(cert)) &&
                write_string(creds[1], dx_pki_key_pem(cert));
    close(creds[1]);

    /* 4. The TLS client on an fd stream over the other two pipes. */
    if (!sent ||
        (rc = dx_fd_stream_new(from_child[0], to_child[1], DX_FD_CLOSE, &transport)) != 0) {
        fprintf(stderr, "parent: cannot talk to the child\n");
        close(from_child[0]);
        close(to_child[1]);
    } else if ((rc = open_side(&sd, ctx, DX_TLS_CLIENT, &parent_events, transport)) != 0) {
        fprintf(stderr, "parent: setting up: %s\n", dx_strerror(rc));
    } else {
        /* The first chunk is written at once and waits for the handshake;
         * the rest follow, each time the stream drained. */
        pump(dx_tls_upper(sd.t), &sd);
        run(&sd, transport);
    }
    /* Releasing the connection closes our pipe ends: a child that is
     * still waiting sees EOF and leaves. */
    bool clean = sd.t && dx_tls_clean_end(sd.t);
    dx_tls_destroy(sd.t);
    sd.t = NULL;

    /* 5. The child's exit status. */
    int wstatus;
    bool child_ok = waitpid(pid, &wstatus, 0) == pid && WIFEXITED(wstatus) &&
                    WEXITSTATUS(wstatus) == 0;
    bool ok = sd.secure && sd.authorized && sd.received == TOTAL && !sd.mismatch &&
              sd.ended && clean && !sd.failed && sd.closed && child_ok;
    printf("%s\n", ok ? "ok: every byte came back, both sides closed with close_notify"
                      : "FAILED");
    status = ok ? 0 : 1;
out:
    dx_tls_destroy(sd.t);
    dx_tls_ctx_unref(ctx);
    dx_pki_cert_free(cert);
    dx_pki_cert_free(ca);
    return status;
}
