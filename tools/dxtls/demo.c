/*
 * dxtls demo: TLS between two processes joined by a pipe pair, with a
 * certificate authority and certificates made in memory for the run.
 *
 *   client (this process)  --pipe-->  server (a child)
 *                          <--pipe--
 *
 * Both sides verify each other (the server asks for the client's
 * certificate), agree on an ALPN protocol, print what the handshake gave
 * them (the fields of --info), and the client sends a line the server
 * echoes. No files, no network. Each process drives its side with
 * dx_fd_poll(), the library's own small poll loop.
 */
#include "config.h"

#include "dxtls.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEMO_NAME "demo.localhost"
#define DEMO_ALPN "dxtls-demo"
#define DEMO_LIMIT_MS 20000

static const char message[] = "Hello from the client, through TLS over two pipes.";

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void print_summary(const char *who, dx_tls *t)
{
    sbuf b = {0};
    info_text(&b, t, "    ");
    printf("%s: handshake complete\n%s", who, b.failed ? "" : b.s);
    fflush(stdout);
    sb_free(&b);
}

/* ---- one side ---------------------------------------------------------------- */

typedef struct side {
    const char *who;
    dx_tls *t;
    dx_stream *transport;
    bool server, secure, closed, failed, ended;
    char got[256];
    size_t len;
} side;

static void on_secure(dx_tls *t, void *u)
{
    side *sd = u;
    sd->secure = true;
    if (sd->server)
        print_summary(sd->who, t);
}

static void on_data(dx_stream *s, const uint8_t *data, size_t len, void *u)
{
    side *sd = u;
    if (sd->server) {
        if (dx_stream_write(s, data, len) == DX_FULL)
            dx_stream_pause(s);
        return;
    }
    size_t room = sizeof(sd->got) - 1 - sd->len;
    if (len > room)
        len = room;
    memcpy(sd->got + sd->len, data, len);
    sd->len += len;
    if (sd->len == strlen(message)) {
        print_summary(sd->who, sd->t);
        printf("client: sent    \"%s\"\nclient: echoed  \"%.*s\"\n", message, (int)sd->len,
               sd->got);
        fflush(stdout);
        dx_stream_end(s); /* close_notify */
    }
}

static void on_drain(dx_stream *s, void *u)
{
    (void)u;
    dx_stream_resume(s);
}

static void on_end(dx_stream *s, void *u)
{
    side *sd = u;
    sd->ended = true;
    if (sd->server)
        dx_stream_end(s);
}

static void on_error(dx_stream *s, const dx_error *err, void *u)
{
    (void)s;
    side *sd = u;
    char text[1024];
    error_text(err, text, sizeof(text));
    fprintf(stderr, "%s: %s\n", sd->who, text);
    sd->failed = true;
}

static void on_close(dx_stream *s, void *u)
{
    (void)s;
    ((side *)u)->closed = true;
}

static const dx_stream_events clear_events = {
    .on_data = on_data,
    .on_drain = on_drain,
    .on_end = on_end,
    .on_error = on_error,
    .on_close = on_close,
};

static const dx_tls_events tls_events = {.on_secure = on_secure};

/* Runs one side over rfd/wfd until it closed. Returns 0 when it closed
 * cleanly after its work. */
static int run_side(side *sd, dx_tls_ctx *ctx, int rfd, int wfd)
{
    static const char *const alpn[] = {DEMO_ALPN, NULL};
    int rc = dx_fd_stream_new(rfd, wfd, DX_FD_CLOSE, &sd->transport);
    if (rc == 0)
        rc = dx_tls_new(ctx, sd->server ? DX_TLS_SERVER : DX_TLS_CLIENT, &sd->t);
    if (rc == 0 && !sd->server)
        rc = dx_tls_set_servername(sd->t, DEMO_NAME);
    if (rc == 0)
        rc = dx_tls_set_alpn_protocols(sd->t, alpn);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", sd->who, dx_strerror(rc));
        dx_stream_destroy(sd->transport);
        dx_tls_destroy(sd->t);
        return 1;
    }
    dx_tls_set_events(sd->t, &tls_events, sd);
    dx_stream_set_events(dx_tls_upper(sd->t), &clear_events, sd);
    dx_tls_attach(sd->t, sd->transport);
    if (!sd->server)
        dx_stream_write(dx_tls_upper(sd->t), message, strlen(message));
    dx_tls_start(sd->t);
    int64_t end = now_ms() + DEMO_LIMIT_MS;
    while (!sd->closed && now_ms() < end)
        dx_fd_poll(&sd->transport, 1, 100);
    bool clean = sd->closed && !sd->failed && sd->ended && dx_tls_clean_end(sd->t);
    if (!sd->closed)
        fprintf(stderr, "%s: no end within %d ms\n", sd->who, DEMO_LIMIT_MS);
    dx_tls_destroy(sd->t);
    return clean && sd->secure ? 0 : 1;
}

/* ---- set-up --------------------------------------------------------------------- */

static dx_tls_ctx *make_ctx(const dx_pki_cert *ca, const dx_pki_cert *cert, bool server)
{
    dx_tls_config *cfg;
    dx_tls_ctx *ctx = NULL;
    dx_error *err = NULL;
    if (dx_tls_config_new(&cfg) != 0)
        return NULL;
    const char *ca_pem = dx_pki_cert_pem(ca), *pem = dx_pki_cert_pem(cert),
               *key = dx_pki_key_pem(cert);
    int rc = dx_tls_config_add_ca(cfg, ca_pem, strlen(ca_pem));
    if (rc == 0)
        rc = dx_tls_config_add_cert(cfg, pem, strlen(pem), key, strlen(key), NULL);
    if (rc == 0 && server)
        rc = dx_tls_config_set_request_cert(cfg, true, true);
    if (rc == 0 && (rc = dx_tls_ctx_new(cfg, &ctx, &err)) != 0) {
        char text[1024];
        error_text(err, text, sizeof(text));
        fprintf(stderr, "dxtls demo: %s\n", text);
        dx_error_free(err);
    }
    dx_tls_config_free(cfg);
    return ctx;
}

int demo_main(void)
{
    static const char *const names[] = {DEMO_NAME, NULL};
    dx_pki_opts ca_opts = {.common_name = "dxtls demo CA", .is_ca = true};
    dx_pki_opts srv_opts = {.common_name = DEMO_NAME, .dns_names = names,
                            .ext_key_usage = DX_PKI_EKU_SERVER};
    dx_pki_opts cli_opts = {.common_name = "dxtls demo client",
                            .ext_key_usage = DX_PKI_EKU_CLIENT};
    dx_pki_cert *ca = NULL, *srv = NULL, *cli = NULL;
    dx_tls_ctx *sctx = NULL, *cctx = NULL;
    int c2s[2] = {-1, -1}, s2c[2] = {-1, -1};
    int status = 1;

    if (dx_pki_issue(NULL, &ca_opts, &ca, NULL) != 0 ||
        dx_pki_issue(ca, &srv_opts, &srv, NULL) != 0 ||
        dx_pki_issue(ca, &cli_opts, &cli, NULL) != 0) {
        fprintf(stderr, "dxtls demo: cannot make the certificates\n");
        goto out;
    }
    if (!(sctx = make_ctx(ca, srv, true)) || !(cctx = make_ctx(ca, cli, false)))
        goto out;
    if (pipe2(c2s, O_CLOEXEC) != 0 || pipe2(s2c, O_CLOEXEC) != 0) {
        perror("dxtls demo: pipe");
        goto out;
    }
    printf("dxtls demo: a TLS client and server in two processes joined by a pipe pair,\n"
           "with a CA, a server certificate for \"" DEMO_NAME "\" and a client certificate\n"
           "made in memory for this run. No files, no network.\n\n");
    fflush(stdout);

    pid_t pid = fork();
    if (pid < 0) {
        perror("dxtls demo: fork");
        goto out;
    }
    if (pid == 0) {
        /* The server. */
        side sd = {.who = "server", .server = true};
        close(c2s[1]);
        close(s2c[0]);
        status = run_side(&sd, sctx, c2s[0], s2c[1]);
        if (status == 0)
            printf("server: closed with close_notify\n");
        fflush(stdout);
        c2s[0] = c2s[1] = s2c[0] = s2c[1] = -1;
        goto out;
    }
    side sd = {.who = "client"};
    close(c2s[0]);
    close(s2c[1]);
    status = run_side(&sd, cctx, s2c[0], c2s[1]);
    c2s[0] = c2s[1] = s2c[0] = s2c[1] = -1;
    int wst;
    if (status != 0)
        kill(pid, SIGTERM);
    if (waitpid(pid, &wst, 0) != pid || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0)
        status = 1;
    if (status == 0 && sd.len == strlen(message) && !memcmp(sd.got, message, sd.len))
        printf("client: closed with close_notify\n\ndemo: ok\n");
    else {
        status = 1;
        printf("\ndemo: FAILED\n");
    }

out:
    for (int i = 0; i < 2; i++) {
        if (c2s[i] >= 0)
            close(c2s[i]);
        if (s2c[i] >= 0)
            close(s2c[i]);
    }
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
    dx_pki_cert_free(cli);
    dx_pki_cert_free(srv);
    dx_pki_cert_free(ca);
    fflush(stdout);
    return status;
}
