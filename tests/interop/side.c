/*
 * The interop suite's tools (interop.h): processes, a private network,
 * and the libduplex side of every case, event-driven over fd streams.
 */
#include "config.h"

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "interop.h"

/* ---- hashing and files ------------------------------------------------------------ */

static void hex(const unsigned char *md, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

void ix_sha256(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1)
        abort(); /* also used by the set-up, outside any test */
    hex(md, out);
}

void ix_sha256_file(const char *path, char out[65])
{
    size_t len;
    char *data = ix_slurp(path, &len);
    ix_sha256(data, len, out);
    free(data);
}

char *ix_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    while ((r = fread(buf + n, 1, cap - 1 - n, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            buf = realloc(buf, cap *= 2);
            ck_assert_ptr_nonnull(buf);
        }
    }
    buf[n] = '\0';
    fclose(f);
    if (len)
        *len = n;
    return buf;
}

/* ---- processes -------------------------------------------------------------------- */

const char *ix_dxtls(void)
{
    static char path[512];
    if (!path[0]) {
        const char *b = getenv("top_builddir");
        snprintf(path, sizeof(path), "%s/dxtls", b && *b ? b : ".");
    }
    return path;
}

static bool verbose(void)
{
    const char *v = getenv("IX_VERBOSE");
    return v && *v && strcmp(v, "0") != 0;
}

void ix_spawn(h_peer *p, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)sizeof(cmd) - 8);
    char line[4200];
    snprintf(line, sizeof(line), "exec %s", cmd);
    if (verbose())
        fprintf(stderr, "[%s] $ %s\n", ix_case_dir(), cmd);
    const char *argv[] = {"/bin/sh", "-c", line, NULL};
    h_peer_start(p, argv);
}

void ix_expect_output(h_peer *p, const char *text)
{
    ck_assert_msg(h_peer_wait_output(p, text, NULL, 0, IX_WAIT_MS), "no \"%s\" from the peer: %s",
                  text, ix_out(p));
}

const char *ix_out(h_peer *p)
{
    const char *all = h_peer_output(p);
    size_t n = strlen(all);
    return n > 1500 ? all + n - 1500 : all;
}

int ix_wait_exit(h_peer *p)
{
    int64_t end = h_now_ms() + IX_WAIT_MS;
    while (h_now_ms() < end) {
        int status;
        h_peer_output(p);
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            h_peer_stop(p, 0); /* closes the pipes */
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        usleep(5000);
    }
    return -1;
}

void ix_kill(h_peer *p)
{
    h_peer_stop(p, 0);
    if (verbose())
        fprintf(stderr, "[%s] peer output:\n%s\n", ix_case_dir(), h_peer_output(p));
}

int ix_stop(h_peer *p)
{
    int status = h_peer_stop(p, IX_WAIT_MS);
    if (verbose())
        fprintf(stderr, "[%s] peer output:\n%s\n", ix_case_dir(), h_peer_output(p));
    return status;
}

unsigned ix_dxtls_port(h_peer *p)
{
    ix_expect_output(p, "listening on 127.0.0.1:");
    const char *at = strstr(h_peer_output(p), "listening on 127.0.0.1:");
    unsigned port = 0;
    ck_assert_int_eq(sscanf(at, "listening on 127.0.0.1:%u", &port), 1);
    return port;
}

/* ---- the network ------------------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
    ck_assert_msg(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "%s: %s", path,
                  strerror(errno));
    close(fd);
}

void ix_private_net(void)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (uid == 0) {
        ck_assert_msg(unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET): %s", strerror(errno));
    } else {
        ck_assert_msg(unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0,
                      "unshare(CLONE_NEWUSER|CLONE_NEWNET): %s", strerror(errno));
        char map[64];
        write_file("/proc/self/setgroups", "deny");
        snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
        write_file("/proc/self/uid_map", map);
        snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
        write_file("/proc/self/gid_map", map);
    }
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(s, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    ck_assert_int_eq(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    ck_assert_msg(ioctl(s, SIOCSIFFLAGS, &ifr) == 0, "bringing lo up: %s", strerror(errno));
    close(s);
}

unsigned ix_port(void) { return h_free_port(); }

int ix_connect(unsigned port)
{
    int fd = h_connect_loopback(port, IX_WAIT_MS);
    ck_assert_msg(fd >= 0, "nothing listens on 127.0.0.1:%u", port);
    return fd;
}

/* ---- the libduplex side -------------------------------------------------------------- */

struct ix_side {
    ix_opts o;
    dx_tls_ctx *ctx, *sni_ctx;
    dx_tls_server *srv;
    ix_conn *current; /* the server's connection being made */
    uint8_t *ocsp;
    size_t ocsp_len;
    FILE *keylog;
    uint8_t *session; /* client: the last session received */
    size_t session_len;
    bool resume;
};

static dx_tls_ctx *make_ctx(const ix_opts *o, const ix_pair *cert)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    if (!o->no_trust)
        ck_assert_int_eq(dx_tls_config_add_ca_file(cfg, IX->ca), 0);
    if (cert)
        ck_assert_int_eq(dx_tls_config_add_cert_file(cfg, cert->cert, cert->key, NULL), 0);
    if (o->min_version)
        ck_assert_int_eq(dx_tls_config_set_min_version(cfg, o->min_version), 0);
    if (o->max_version)
        ck_assert_int_eq(dx_tls_config_set_max_version(cfg, o->max_version), 0);
    if (o->ciphers)
        ck_assert_int_eq(dx_tls_config_set_ciphers(cfg, o->ciphers), 0);
    dx_tls_ctx *ctx = NULL;
    dx_error *err = NULL;
    int rc = dx_tls_ctx_new(cfg, &ctx, &err);
    ck_assert_msg(rc == 0, "dx_tls_ctx_new: %s", err ? dx_error_message(err) : dx_strerror(rc));
    dx_tls_config_free(cfg);
    return ctx;
}

static void on_keylog_line(ix_side *s, const char *line)
{
    if (s->keylog) {
        fprintf(s->keylog, "%s\n", line);
        fflush(s->keylog);
    }
}

static int psk_cb(dx_tls *t, const char *name, dx_tls_psk *psk, void *user)
{
    (void)user;
    if (dx_tls_get_role(t) == DX_TLS_CLIENT) {
        snprintf(psk->identity, sizeof(psk->identity), "%s", IX->psk_identity);
    } else if (!name || strcmp(name, IX->psk_identity) != 0) {
        return -1;
    }
    memcpy(psk->key, IX->psk_key, sizeof(IX->psk_key));
    psk->key_len = sizeof(IX->psk_key);
    return 0;
}

static void conn_secure(ix_conn *c);
static void conn_handshake_error(ix_conn *c, const dx_error *err);

static void srv_secure(dx_tls_server *srv, dx_tls *t, void *user)
{
    (void)srv;
    ix_side *s = user;
    if (s->current && s->current->t == t)
        conn_secure(s->current);
}

static void srv_client_error(dx_tls_server *srv, dx_tls *t, const dx_error *err, void *user)
{
    (void)srv;
    ix_side *s = user;
    if (s->current && s->current->t == t)
        conn_handshake_error(s->current, err);
}

static void srv_keylog(dx_tls_server *srv, dx_tls *t, const char *line, void *user)
{
    (void)srv;
    (void)t;
    on_keylog_line(user, line);
}

static void srv_ocsp(dx_tls_server *srv, dx_tls *t, const dx_tls_cert *cert,
                     const dx_tls_cert *issuer, dx_tls_pending *p, void *user)
{
    (void)srv;
    (void)t;
    (void)cert;
    (void)issuer;
    ix_side *s = user;
    dx_tls_ocsp_done(p, s->ocsp, s->ocsp_len, NULL);
}

ix_side *ix_side_new(const ix_opts *o)
{
    ix_side *s = calloc(1, sizeof(*s));
    ck_assert_ptr_nonnull(s);
    s->o = *o;
    if (o->psk && !o->ciphers && (!o->min_version || strcmp(o->min_version, "TLSv1.3") != 0))
        s->o.ciphers = "PSK-AES128-GCM-SHA256:ECDHE-PSK-AES128-CBC-SHA256:"
                       "PSK-AES256-GCM-SHA384:DEFAULT";
    s->ctx = make_ctx(&s->o, o->cert);
    if (o->keylog) {
        s->keylog = fopen(o->keylog, "a");
        ck_assert_msg(s->keylog != NULL, "%s: %s", o->keylog, strerror(errno));
    }
    if (o->role == DX_TLS_SERVER) {
        ck_assert_int_eq(dx_tls_server_new(s->ctx, &s->srv), 0);
        if (o->sni) {
            s->sni_ctx = make_ctx(&s->o, o->sni);
            ck_assert_int_eq(dx_tls_server_add_context(s->srv, "sni.test", s->sni_ctx), 0);
        }
        if (o->request_cert || o->require_cert)
            ck_assert_int_eq(dx_tls_server_set_request_cert(s->srv, true, o->require_cert), 0);
        if (o->alpn)
            ck_assert_int_eq(dx_tls_server_set_alpn_protocols(s->srv, o->alpn), 0);
        if (o->psk)
            ck_assert_int_eq(dx_tls_server_set_psk_callback(s->srv, psk_cb, s), 0);
        if (o->no_tickets)
            ck_assert_int_eq(dx_tls_server_set_tickets(s->srv, false), 0);
        if (o->ocsp)
            s->ocsp = (uint8_t *)ix_slurp(o->ocsp, &s->ocsp_len);
        dx_tls_server_events ev = {
            .on_secure_connection = srv_secure,
            .on_client_error = srv_client_error,
            .on_keylog = srv_keylog,
            .on_ocsp_request = o->ocsp ? srv_ocsp : NULL,
        };
        ck_assert_int_eq(dx_tls_server_set_events(s->srv, &ev, s), 0);
    }
    return s;
}

void ix_side_free(ix_side *s)
{
    if (!s)
        return;
    dx_tls_server_free(s->srv);
    dx_tls_ctx_unref(s->ctx);
    dx_tls_ctx_unref(s->sni_ctx);
    if (s->keylog)
        fclose(s->keylog);
    free(s->ocsp);
    free(s->session);
    free(s);
}

void ix_side_resume(ix_side *s, bool on) { s->resume = on; }

bool ix_side_has_session(const ix_side *s) { return s->session != NULL; }

/* ---- a connection -------------------------------------------------------------------- */

static void fail_with(ix_conn *c, const dx_error *err)
{
    if (c->failed)
        return;
    c->failed = true;
    snprintf(c->error, sizeof(c->error), "%s", err ? dx_error_name(err) : "?");
    if (err)
        dx_error_format(err, c->error_msg, sizeof(c->error_msg));
}

static void conn_secure(ix_conn *c)
{
    c->secure = true;
    snprintf(c->protocol, sizeof(c->protocol), "%s",
             dx_tls_protocol(c->t) ? dx_tls_protocol(c->t) : "");
    dx_tls_cipher_info ci;
    if (dx_tls_cipher(c->t, &ci) == 0)
        snprintf(c->cipher, sizeof(c->cipher), "%s", ci.name);
    const char *a = dx_tls_alpn_protocol(c->t);
    snprintf(c->alpn, sizeof(c->alpn), "%s", a ? a : "");
    const char *sn = dx_tls_servername(c->t);
    snprintf(c->servername, sizeof(c->servername), "%s", sn ? sn : "");
    const dx_tls_cert *pc = dx_tls_peer_cert(c->t);
    const char *cn = pc ? dx_tls_name_get(dx_tls_cert_subject(pc), "CN", 0) : NULL;
    snprintf(c->peer_cn, sizeof(c->peer_cn), "%s", cn ? cn : "");
    c->authorized = dx_tls_authorized(c->t);
    c->reused = dx_tls_session_reused(c->t);
    if (dx_tls_get_role(c->t) == DX_TLS_CLIENT && c->side->o.request_ocsp) {
        const uint8_t *der = NULL;
        size_t len = 0;
        dx_tls_get_ocsp_response(c->t, &der, &len);
        c->ocsp_stapled = der != NULL;
        c->ocsp_result = dx_tls_get_ocsp_result(c->t);
    }
}

static void conn_handshake_error(ix_conn *c, const dx_error *err) { fail_with(c, err); }

static void cl_secure(dx_tls *t, void *u)
{
    (void)t;
    conn_secure(u);
}

static void cl_session(dx_tls *t, const uint8_t *session, size_t len, void *u)
{
    (void)t;
    ix_conn *c = u;
    ix_side *s = c->side;
    free(s->session);
    s->session = malloc(len);
    ck_assert_ptr_nonnull(s->session);
    memcpy(s->session, session, len);
    s->session_len = len;
}

static void cl_keylog(dx_tls *t, const char *line, void *u)
{
    (void)t;
    on_keylog_line(((ix_conn *)u)->side, line);
}

static void cl_handshake_error(dx_tls *t, const dx_error *err, void *u)
{
    (void)t;
    conn_handshake_error(u, err);
}

static const dx_tls_events client_events = {
    .on_secure = cl_secure,
    .on_session = cl_session,
    .on_keylog = cl_keylog,
    .on_handshake_error = cl_handshake_error,
};

static void pump(ix_conn *c)
{
    dx_stream *up = dx_tls_upper(c->t);
    while (c->src && c->src_off < c->src_len && !c->failed && !c->closed) {
        size_t n = c->src_len - c->src_off;
        if (n > 65536)
            n = 65536;
        int rc = dx_stream_write(up, c->src + c->src_off, n);
        if (rc < 0 && rc != DX_FULL) {
            ck_assert_msg(c->failed, "dx_stream_write: %s", dx_strerror(rc));
            return;
        }
        c->src_off += n;
        if (rc == DX_FULL)
            return; /* on_drain goes on */
    }
    if (c->src && c->src_off == c->src_len && c->end_after_send && !c->failed) {
        c->end_after_send = false;
        dx_stream_end(up);
    }
}

static void up_data(dx_stream *s, const uint8_t *data, size_t len, void *u)
{
    (void)s;
    ix_conn *c = u;
    if (c->len < IX_KEEP) {
        size_t n = len < IX_KEEP - c->len ? len : IX_KEEP - c->len;
        memcpy(c->data + c->len, data, n);
        c->len += n;
        c->data[c->len] = '\0';
    }
    c->received += len;
    EVP_DigestUpdate(c->sha, data, len);
}

static void finish_hash(ix_conn *c)
{
    if (c->received_sha256[0])
        return;
    unsigned char md[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(c->sha, md, &n);
    hex(md, c->received_sha256);
}

static void up_end(dx_stream *s, void *u)
{
    (void)s;
    ix_conn *c = u;
    c->ended = true;
    c->clean_end = dx_tls_clean_end(c->t);
    finish_hash(c);
}

static void up_drain(dx_stream *s, void *u)
{
    (void)s;
    pump(u);
}

static void up_error(dx_stream *s, const dx_error *err, void *u)
{
    (void)s;
    fail_with(u, err);
}

static void up_close(dx_stream *s, void *u)
{
    (void)s;
    ix_conn *c = u;
    c->closed = true;
}

static const dx_stream_events upper_events = {
    .on_data = up_data,
    .on_end = up_end,
    .on_drain = up_drain,
    .on_error = up_error,
    .on_close = up_close,
};

void ix_conn_open(ix_conn *c, ix_side *s, int rfd, int wfd)
{
    memset(c, 0, sizeof(*c));
    c->side = s;
    if (wfd < 0)
        wfd = rfd;
    c->data = malloc(IX_KEEP + 1);
    ck_assert_ptr_nonnull(c->data);
    c->data[0] = '\0';
    c->sha = EVP_MD_CTX_new();
    ck_assert_ptr_nonnull(c->sha);
    ck_assert(EVP_DigestInit_ex(c->sha, EVP_sha256(), NULL) == 1);
    ck_assert_int_eq(dx_fd_stream_new(rfd, wfd, DX_FD_CLOSE, &c->transport), 0);
    const ix_opts *o = &s->o;
    if (o->role == DX_TLS_SERVER) {
        s->current = c;
        ck_assert_int_eq(dx_tls_server_accept(s->srv, c->transport, &c->t), 0);
    } else {
        ck_assert_int_eq(dx_tls_new(s->ctx, DX_TLS_CLIENT, &c->t), 0);
        if (o->servername)
            ck_assert_int_eq(dx_tls_set_servername(c->t, o->servername), 0);
        if (o->alpn)
            ck_assert_int_eq(dx_tls_set_alpn_protocols(c->t, o->alpn), 0);
        if (o->psk)
            ck_assert_int_eq(dx_tls_set_psk_callback(c->t, psk_cb, s), 0);
        if (o->request_ocsp)
            ck_assert_int_eq(dx_tls_set_ocsp(c->t, DX_TLS_OCSP_VERIFY), 0);
        if (o->insecure)
            ck_assert_int_eq(dx_tls_set_reject_unauthorized(c->t, false), 0);
        if (s->resume && s->session)
            ck_assert_int_eq(dx_tls_set_session(c->t, s->session, s->session_len), 0);
        ck_assert_int_eq(dx_tls_set_events(c->t, &client_events, c), 0);
        ck_assert_int_eq(dx_tls_attach(c->t, c->transport), 0);
    }
    ck_assert_int_eq(dx_stream_set_events(dx_tls_upper(c->t), &upper_events, c), 0);
    if (o->role == DX_TLS_CLIENT)
        ck_assert_int_eq(dx_tls_start(c->t), 0);
}

void ix_send(ix_conn *c, const void *data, size_t len, bool end)
{
    c->src = data;
    c->src_len = len;
    c->src_off = 0;
    c->end_after_send = end;
    pump(c);
}

void ix_end(ix_conn *c)
{
    if (c->src && c->src_off < c->src_len) {
        c->end_after_send = true;
        return;
    }
    dx_stream_end(dx_tls_upper(c->t));
}

bool ix_wait(ix_conn *c, h_peer *p, bool (*done)(ix_conn *c, void *arg), void *arg)
{
    int64_t end = h_now_ms() + IX_WAIT_MS;
    for (;;) {
        if (p)
            h_peer_output(p); /* keeps reading, so that the peer never blocks */
        if (done(c, arg))
            return true;
        int64_t left = end - h_now_ms();
        if (left <= 0)
            return false;
        struct pollfd pfd[3];
        dx_fd_interest in[2];
        size_t n = 0, ni = 0;
        if (c && c->transport && !c->closed) {
            ni = dx_fd_stream_interest(c->transport, in);
            for (size_t i = 0; i < ni; i++)
                pfd[n++] = (struct pollfd){
                    .fd = in[i].fd,
                    .events = (short)(((in[i].events & DX_READABLE) ? POLLIN : 0) |
                                      ((in[i].events & DX_WRITABLE) ? POLLOUT : 0))};
        }
        if (p && p->out >= 0)
            pfd[n++] = (struct pollfd){.fd = p->out, .events = POLLIN};
        int r = poll(pfd, n, left < 50 ? (int)left : 50);
        if (r <= 0 || !c)
            continue;
        for (size_t i = 0; i < ni && !c->closed; i++) {
            unsigned ev = 0;
            if (pfd[i].revents & POLLIN)
                ev |= DX_READABLE;
            if (pfd[i].revents & POLLOUT)
                ev |= DX_WRITABLE;
            if (pfd[i].revents & (POLLHUP | POLLERR | POLLNVAL))
                ev |= in[i].events;
            if (ev)
                dx_fd_stream_ready(c->transport, pfd[i].fd, ev);
        }
    }
}

bool ix_is_secure(ix_conn *c, void *arg)
{
    (void)arg;
    return c->secure || c->failed || c->closed;
}

bool ix_is_closed(ix_conn *c, void *arg)
{
    (void)arg;
    return c->closed || c->failed;
}

bool ix_is_ended(ix_conn *c, void *arg)
{
    (void)arg;
    return c->ended || c->failed || c->closed;
}

bool ix_has_text(ix_conn *c, void *text)
{
    return (c->len && strstr((const char *)c->data, text)) || c->failed || c->ended ||
           c->closed;
}

bool ix_has_bytes(ix_conn *c, void *n)
{
    return c->received >= *(uint64_t *)n || c->failed || c->ended || c->closed;
}

bool ix_is_sent(ix_conn *c, void *arg)
{
    (void)arg;
    return (c->src && c->src_off == c->src_len && !c->end_after_send) || c->failed ||
           c->closed;
}

void ix_assert_secure(ix_conn *c, h_peer *p)
{
    ck_assert_msg(c->secure && !c->failed, "not secure: %s %s; peer: %s", c->error,
                  c->error_msg, p ? ix_out(p) : "");
}

void ix_assert_error(ix_conn *c, const char *name, h_peer *p)
{
    ck_assert_msg(c->failed && !strcmp(c->error, name), "expected %s, got %s (%s); peer: %s",
                  name, c->failed ? c->error : "no failure", c->error_msg,
                  p ? ix_out(p) : "");
}

void ix_conn_free(ix_conn *c)
{
    if (c->side && c->side->current == c)
        c->side->current = NULL;
    dx_tls_destroy(c->t);
    c->t = NULL;
    if (c->sha)
        EVP_MD_CTX_free(c->sha);
    c->sha = NULL;
    free(c->data);
    c->data = NULL;
}
