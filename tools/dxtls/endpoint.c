/*
 * The endpoint kinds: parsing their text, opening one as a dx_stream on
 * the loop, and listening.
 *
 *   -                       stdin and stdout, as one stream (fdio.c)
 *   echo                    what arrives is sent back (a memory pair whose
 *                           far end writes back what it reads)
 *   exec:COMMAND            /bin/sh -c COMMAND, its stdin and stdout on one
 *                           end of a socket pair (half-close reaches it as
 *                           the end of its input)
 *   tcp:HOST:PORT           a TCP connection (dx_uv_tcp_connect)
 *   tcp-listen:[HOST:]PORT  a TCP listener (dx_uv_tcp_listen)
 *   unix:PATH, unix-listen:PATH   the same on a Unix socket
 *   serial:PATH[,baud=N]    a terminal device in raw mode (fdio.c)
 *   pty                     a new pseudo-terminal, raw, its path printed
 *   fd:N[,M]                inherited descriptors (fdio.c)
 */
#include "config.h"

#include "dxtls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

/* ---- parsing ------------------------------------------------------------ */

static bool parse_uint(const char *s, size_t len, unsigned long max, unsigned long *out)
{
    if (len == 0 || len > 10)
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* "HOST:PORT" or "[V6]:PORT" (host_required) or "PORT". */
static int parse_host_port(const char *s, bool host_required, unsigned min_port, endpoint *e,
                           char *msg, size_t size)
{
    const char *colon = strrchr(s, ':');
    const char *port = s, *host = NULL;
    size_t hlen = 0;
    if (colon) {
        host = s;
        hlen = (size_t)(colon - s);
        port = colon + 1;
        if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
            host++;
            hlen -= 2;
        }
        if (hlen == 0) {
            snprintf(msg, size, "'%s': the host is empty", e->text);
            return -1;
        }
    } else if (host_required) {
        snprintf(msg, size, "'%s': HOST:PORT expected", e->text);
        return -1;
    }
    unsigned long p;
    if (!parse_uint(port, strlen(port), 65535, &p) || p < min_port) {
        snprintf(msg, size, "'%s': the port must be a number from %u to 65535", e->text,
                 min_port);
        return -1;
    }
    e->port = (unsigned)p;
    if (host) {
        e->host = strndup(host, hlen);
        if (!e->host) {
            snprintf(msg, size, "out of memory");
            return -1;
        }
    }
    return 0;
}

static int parse_path(const char *s, endpoint *e, char *msg, size_t size)
{
    struct sockaddr_un sun;
    if (!*s) {
        snprintf(msg, size, "'%s': the path is empty", e->text);
        return -1;
    }
    if ((e->kind == EP_UNIX || e->kind == EP_UNIX_LISTEN) && strlen(s) >= sizeof(sun.sun_path)) {
        snprintf(msg, size, "'%s': a socket path has at most %zu bytes", e->text,
                 sizeof(sun.sun_path) - 1);
        return -1;
    }
    e->path = strdup(s);
    if (!e->path) {
        snprintf(msg, size, "out of memory");
        return -1;
    }
    return 0;
}

static const unsigned long bauds[] = {50,     75,     110,    134,    150,     200,     300,
                                      600,    1200,   1800,   2400,   4800,    9600,    19200,
                                      38400,  57600,  115200, 230400, 460800,  500000,  576000,
                                      921600, 1000000, 1152000, 1500000, 2000000, 2500000,
                                      3000000, 3500000, 4000000};
static const speed_t speeds[] = {B50,     B75,     B110,     B134,     B150,     B200,
                                 B300,    B600,    B1200,    B1800,    B2400,    B4800,
                                 B9600,   B19200,  B38400,   B57600,   B115200,  B230400,
                                 B460800, B500000, B576000,  B921600,  B1000000, B1152000,
                                 B1500000, B2000000, B2500000, B3000000, B3500000, B4000000};

static int parse_serial(const char *s, endpoint *e, char *msg, size_t size)
{
    const char *comma = strchr(s, ',');
    size_t plen = comma ? (size_t)(comma - s) : strlen(s);
    e->baud = 115200;
    if (plen == 0) {
        snprintf(msg, size, "'%s': the device path is empty", e->text);
        return -1;
    }
    while (comma) {
        const char *opt = comma + 1;
        comma = strchr(opt, ',');
        size_t olen = comma ? (size_t)(comma - opt) : strlen(opt);
        unsigned long b;
        if (olen > 5 && !strncmp(opt, "baud=", 5) && parse_uint(opt + 5, olen - 5, 4000000, &b)) {
            bool known = false;
            for (size_t i = 0; i < sizeof(bauds) / sizeof(bauds[0]); i++)
                known = known || bauds[i] == b;
            if (!known) {
                snprintf(msg, size, "'%s': %lu is not a standard baud rate", e->text, b);
                return -1;
            }
            e->baud = (unsigned)b;
        } else {
            snprintf(msg, size, "'%s': unknown serial option '%.*s' (baud=N is known)", e->text,
                     (int)olen, opt);
            return -1;
        }
    }
    e->path = strndup(s, plen);
    if (!e->path) {
        snprintf(msg, size, "out of memory");
        return -1;
    }
    return 0;
}

static int parse_fd(const char *s, endpoint *e, char *msg, size_t size)
{
    const char *comma = strchr(s, ',');
    unsigned long r, w;
    if (!parse_uint(s, comma ? (size_t)(comma - s) : strlen(s), INT_MAX, &r) ||
        (comma && !parse_uint(comma + 1, strlen(comma + 1), INT_MAX, &w))) {
        snprintf(msg, size, "'%s': fd:N or fd:N,M expected (descriptor numbers)", e->text);
        return -1;
    }
    e->rfd = (int)r;
    e->wfd = comma ? (int)w : (int)r;
    return 0;
}

int ep_parse(const char *text, endpoint *e, char *msg, size_t size)
{
    memset(e, 0, sizeof(*e));
    e->text = text;
    e->rfd = e->wfd = -1;
    static const struct {
        const char *prefix;
        ep_kind kind;
    } kinds[] = {
        {"exec:", EP_EXEC},     {"tcp:", EP_TCP},
        {"tcp-listen:", EP_TCP_LISTEN}, {"unix:", EP_UNIX},
        {"unix-listen:", EP_UNIX_LISTEN}, {"serial:", EP_SERIAL},
        {"fd:", EP_FD},
    };
    if (!strcmp(text, "-")) {
        e->kind = EP_STDIO;
        return 0;
    }
    if (!strcmp(text, "echo")) {
        e->kind = EP_ECHO;
        return 0;
    }
    if (!strcmp(text, "pty")) {
        e->kind = EP_PTY;
        return 0;
    }
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        size_t n = strlen(kinds[i].prefix);
        if (strncmp(text, kinds[i].prefix, n) != 0)
            continue;
        const char *rest = text + n;
        e->kind = kinds[i].kind;
        switch (e->kind) {
        case EP_EXEC:
            if (!*rest) {
                snprintf(msg, size, "'%s': the command is empty", text);
                return -1;
            }
            e->command = strdup(rest);
            if (!e->command) {
                snprintf(msg, size, "out of memory");
                return -1;
            }
            return 0;
        case EP_TCP:
            return parse_host_port(rest, true, 1, e, msg, size);
        case EP_TCP_LISTEN:
            return parse_host_port(rest, false, 0, e, msg, size);
        case EP_UNIX:
        case EP_UNIX_LISTEN:
            return parse_path(rest, e, msg, size);
        case EP_SERIAL:
            return parse_serial(rest, e, msg, size);
        case EP_FD:
            return parse_fd(rest, e, msg, size);
        default:
            break;
        }
    }
    snprintf(msg, size,
             "unknown endpoint '%s' (one of -, echo, exec:COMMAND, tcp:HOST:PORT, "
             "tcp-listen:[HOST:]PORT, unix:PATH, unix-listen:PATH, serial:PATH[,baud=N], "
             "pty, fd:N[,M])",
             text);
    return -1;
}

void ep_free(endpoint *e)
{
    free(e->host);
    free(e->path);
    free(e->command);
    e->host = e->path = e->command = NULL;
}

bool ep_listens(const endpoint *e)
{
    return e->kind == EP_TCP_LISTEN || e->kind == EP_UNIX_LISTEN;
}

bool ep_repeatable(const endpoint *e)
{
    return e->kind != EP_STDIO && e->kind != EP_FD && e->kind != EP_SERIAL;
}

/* ---- errors -------------------------------------------------------------- */

/* An error named after errno (libuv's names: "ENOENT", ...), with what
 * failed as its detail. */
static dx_error *sys_error(int err, const char *detail)
{
    char name[64], text[128];
    uv_err_name_r(uv_translate_sys_error(err), name, sizeof(name));
    uv_strerror_r(uv_translate_sys_error(err), text, sizeof(text));
    dx_error *e = dx_error_new(DX_EIO, name, "dxtls", "%s", text);
    if (e && detail)
        dx_error_set_detail(e, "%s", detail);
    if (e)
        dx_error_set_sys_errno(e, err);
    return e;
}

static dx_error *uv_fail(int uverr, const char *detail)
{
    char name[64], text[128];
    uv_err_name_r(uverr, name, sizeof(name));
    uv_strerror_r(uverr, text, sizeof(text));
    dx_error *e = dx_error_new(DX_EIO, name, "uv", "%s", text);
    if (e)
        dx_error_set_detail(e, "%s", detail);
    return e;
}

/* ---- instances ------------------------------------------------------------ */

typedef struct child child;

struct ep_inst {
    app *a;
    const endpoint *e;
    ep_ready_cb cb;
    void *arg;
    bool released;
    bool connecting;     /* a connect's callback is still to come */
    dx_uv_connect *conn;
    child *kid;
};

struct child {
    uv_process_t proc;
    ep_inst *inst; /* NULL once released or exited */
    bool exited;
};

static void inst_free_if_done(ep_inst *i)
{
    if (i->released && !i->connecting)
        free(i);
}

/* Hands s (or err) to the owner, once. */
static void deliver(ep_inst *i, dx_stream *s, dx_error *err)
{
    i->cb(i->arg, s, s ? NULL : err);
    dx_error_free(err);
}

static void deliver_err(ep_inst *i, dx_error *err)
{
    if (!err)
        err = dx_error_new(DX_ENOMEM, NULL, "dxtls", "out of memory");
    deliver(i, NULL, err);
}

/* ---- echo ------------------------------------------------------------------- */

static void echo_data(dx_stream *s, const uint8_t *data, size_t len, void *u)
{
    (void)u;
    if (dx_stream_write(s, data, len) == DX_FULL)
        dx_stream_pause(s);
}

static void echo_drain(dx_stream *s, void *u)
{
    (void)u;
    dx_stream_resume(s);
}

static void echo_end(dx_stream *s, void *u)
{
    (void)u;
    dx_stream_end(s);
}

static void echo_close(dx_stream *s, void *u)
{
    (void)u;
    dx_stream_destroy(s);
}

static const dx_stream_events echo_events = {
    .on_data = echo_data,
    .on_end = echo_end,
    .on_drain = echo_drain,
    .on_close = echo_close,
};

static void open_echo(ep_inst *i)
{
    dx_stream *near, *far;
    int rc = dx_pair_new(NULL, &near, &far);
    if (rc != 0) {
        deliver_err(i, dx_error_new(rc, NULL, "dxtls", "%s", dx_strerror(rc)));
        return;
    }
    dx_stream_set_events(far, &echo_events, NULL);
    deliver(i, near, NULL);
}

/* ---- exec ------------------------------------------------------------------- */

static void child_closed(uv_handle_t *h) { free(h); }

static void child_exit(uv_process_t *p, int64_t status, int sig)
{
    child *k = (child *)p;
    k->exited = true;
    if (sig)
        note("child %d ended by signal %d", p->pid, sig);
    else
        note("child %d exited with status %lld", p->pid, (long long)status);
    if (k->inst)
        k->inst->kid = NULL;
    uv_close((uv_handle_t *)p, child_closed);
}

static void free_handle(uv_handle_t *h) { free(h); }

static void open_exec(ep_inst *i)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        deliver_err(i, sys_error(errno, "socketpair"));
        return;
    }
    child *k = calloc(1, sizeof(*k));
    uv_pipe_t *pipe = calloc(1, sizeof(*pipe));
    if (!k || !pipe) {
        free(k);
        free(pipe);
        close(sv[0]);
        close(sv[1]);
        deliver_err(i, NULL);
        return;
    }
    char *args[] = {"/bin/sh", "-c", i->e->command, NULL};
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_INHERIT_FD;
    stdio[0].data.fd = sv[1];
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = sv[1];
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    uv_process_options_t po;
    memset(&po, 0, sizeof(po));
    po.exit_cb = child_exit;
    po.file = "/bin/sh";
    po.args = args;
    po.stdio = stdio;
    po.stdio_count = 3;
    int r = uv_spawn(i->a->loop, &k->proc, &po);
    close(sv[1]);
    if (r < 0) {
        uv_close((uv_handle_t *)&k->proc, child_closed);
        close(sv[0]);
        free(pipe);
        deliver_err(i, uv_fail(r, "spawn /bin/sh"));
        return;
    }
    note("started child %d: /bin/sh -c %s", k->proc.pid, i->e->command);
    k->inst = i;
    i->kid = k;
    dx_stream *s;
    uv_pipe_init(i->a->loop, pipe, 0);
    r = uv_pipe_open(pipe, sv[0]);
    int rc = r == 0 ? dx_uv_stream_new((uv_stream_t *)pipe, free_handle, &s) : DX_EIO;
    if (rc != 0) {
        uv_close((uv_handle_t *)pipe, free_handle);
        if (r != 0)
            close(sv[0]);
        deliver_err(i, r ? uv_fail(r, "uv_pipe_open")
                         : dx_error_new(rc, NULL, "dxtls", "%s", dx_strerror(rc)));
        return;
    }
    deliver(i, s, NULL);
}

/* ---- tcp and unix ---------------------------------------------------------------- */

static void connected(dx_stream *s, const dx_error *err, void *arg)
{
    ep_inst *i = arg;
    i->connecting = false;
    i->conn = NULL;
    if (i->released) {
        dx_stream_destroy(s);
        free(i);
        return;
    }
    if (s) {
        deliver(i, s, NULL);
        return;
    }
    deliver_err(i, dx_error_copy(err));
}

static void open_connect(ep_inst *i)
{
    int rc;
    i->connecting = true;
    if (i->e->kind == EP_TCP)
        rc = dx_uv_tcp_connect(i->a->loop, i->e->host, i->e->port, connected, i, &i->conn);
    else
        rc = dx_uv_unix_connect(i->a->loop, i->e->path, connected, i, &i->conn);
    if (rc != 0) {
        i->connecting = false;
        deliver_err(i, dx_error_new(rc, NULL, "dxtls", "%s", dx_strerror(rc)));
    }
}

/* ---- serial, pty, stdio, fd ---------------------------------------------------------- */

static void open_fds(ep_inst *i, int rfd, int wfd, unsigned flags)
{
    dx_stream *s;
    int rc = fdio_open(i->a->fdio, rfd, wfd, flags, &s);
    if (rc != 0) {
        if (flags & FDIO_CLOSE) {
            close(rfd);
            if (wfd != rfd)
                close(wfd);
        }
        deliver_err(i, dx_error_new(rc, NULL, "dxtls", "%s", dx_strerror(rc)));
        return;
    }
    deliver(i, s, NULL);
}

static void open_serial(ep_inst *i)
{
    int fd = open(i->e->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        deliver_err(i, sys_error(errno, "open"));
        return;
    }
    struct termios tio;
    if (!isatty(fd) || tcgetattr(fd, &tio) != 0) {
        int err = isatty(fd) ? errno : ENOTTY;
        close(fd);
        deliver_err(i, sys_error(err, "not a terminal"));
        return;
    }
    speed_t sp = B115200;
    for (size_t k = 0; k < sizeof(bauds) / sizeof(bauds[0]); k++)
        if (bauds[k] == i->e->baud)
            sp = speeds[k];
    cfmakeraw(&tio);
    tio.c_cflag |= CLOCAL | CREAD;
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    if (cfsetispeed(&tio, sp) != 0 || cfsetospeed(&tio, sp) != 0 ||
        tcsetattr(fd, TCSANOW, &tio) != 0) {
        int err = errno;
        close(fd);
        deliver_err(i, sys_error(err, "tcsetattr"));
        return;
    }
    open_fds(i, fd, fd, FDIO_CLOSE);
}

static void open_pty(ep_inst *i)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    const char *name = NULL;
    struct termios tio;
    if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0 || !(name = ptsname(m)) ||
        tcgetattr(m, &tio) != 0) {
        int err = errno;
        if (m >= 0)
            close(m);
        deliver_err(i, sys_error(err, "posix_openpt"));
        return;
    }
    /* On the master the terminal's settings are the slave's: raw, so that
     * bytes pass unchanged. */
    cfmakeraw(&tio);
    tcsetattr(m, TCSANOW, &tio);
    announce("pty: %s", name);
    open_fds(i, m, m, FDIO_CLOSE | FDIO_PTY);
}

static void open_fd(ep_inst *i)
{
    if (fcntl(i->e->rfd, F_GETFL) < 0 || fcntl(i->e->wfd, F_GETFL) < 0) {
        deliver_err(i, sys_error(EBADF, "not an open descriptor"));
        return;
    }
    open_fds(i, i->e->rfd, i->e->wfd, FDIO_CLOSE);
}

ep_inst *ep_open(app *a, const endpoint *e, ep_ready_cb cb, void *arg)
{
    ep_inst *i = calloc(1, sizeof(*i));
    if (!i) {
        dx_error *err = dx_error_new(DX_ENOMEM, NULL, "dxtls", "out of memory");
        cb(arg, NULL, err);
        dx_error_free(err);
        return NULL;
    }
    i->a = a;
    i->e = e;
    i->cb = cb;
    i->arg = arg;
    switch (e->kind) {
    case EP_STDIO:
        open_fds(i, 0, 1, FDIO_CLOSE);
        break;
    case EP_ECHO:
        open_echo(i);
        break;
    case EP_EXEC:
        open_exec(i);
        break;
    case EP_TCP:
    case EP_UNIX:
        open_connect(i);
        break;
    case EP_SERIAL:
        open_serial(i);
        break;
    case EP_PTY:
        open_pty(i);
        break;
    case EP_FD:
        open_fd(i);
        break;
    default:
        deliver_err(i, dx_error_new(DX_EINVAL, NULL, "dxtls", "cannot be opened"));
        break;
    }
    return i;
}

void ep_release(ep_inst *i)
{
    if (!i || i->released)
        return;
    i->released = true;
    if (i->kid) {
        child *k = i->kid;
        k->inst = NULL;
        i->kid = NULL;
        if (!k->exited) {
            uv_process_kill(&k->proc, SIGTERM);
            /* A child that outlives its connection does not hold the
             * program. */
            uv_unref((uv_handle_t *)&k->proc);
        }
    }
    if (i->connecting)
        dx_uv_connect_cancel(i->conn); /* connected() frees i */
    inst_free_if_done(i);
}

/* ---- listening ----------------------------------------------------------------------- */

static struct {
    ep_accept_cb cb;
    void *arg;
} listening;

static void accepted(dx_uv_listener *l, dx_stream *s, const dx_error *err, void *arg)
{
    (void)l, (void)arg;
    if (err) {
        char text[512];
        error_text(err, text, sizeof(text));
        complain("%s", text);
        return;
    }
    char peer[128] = "";
    uv_stream_t *h = dx_uv_stream_handle(s);
    if (h && h->type == UV_TCP) {
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        char ip[64];
        if (uv_tcp_getpeername((uv_tcp_t *)h, (struct sockaddr *)&ss, &len) == 0) {
            if (ss.ss_family == AF_INET) {
                uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
                snprintf(peer, sizeof(peer), "%s:%u", ip,
                         ntohs(((struct sockaddr_in *)&ss)->sin_port));
            } else if (ss.ss_family == AF_INET6) {
                uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
                snprintf(peer, sizeof(peer), "[%s]:%u", ip,
                         ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
            }
        }
    }
    listening.cb(listening.arg, s, peer);
}

int ep_listen(app *a, const endpoint *e, ep_accept_cb cb, void *arg, dx_uv_listener **out,
              dx_error **err)
{
    listening.cb = cb;
    listening.arg = arg;
    int rc;
    if (e->kind == EP_TCP_LISTEN)
        rc = dx_uv_tcp_listen(a->loop, e->host, e->port, accepted, NULL, out, err);
    else
        rc = dx_uv_unix_listen(a->loop, e->path, accepted, NULL, out, err);
    if (rc != 0) {
        if (!*err)
            *err = dx_error_new(rc, NULL, "dxtls", "%s: %s", e->text, dx_strerror(rc));
        return EXIT_TRANSPORT;
    }
    if (e->kind == EP_UNIX_LISTEN) {
        notice("listening on %s", e->path);
    } else {
        const char *h = e->host ? e->host : "*";
        bool v6 = strchr(h, ':') != NULL;
        if (e->port == 0)
            announce("listening on %s%s%s:%u", v6 ? "[" : "", h, v6 ? "]" : "",
                     dx_uv_listener_port(*out));
        else
            notice("listening on %s%s%s:%u", v6 ? "[" : "", h, v6 ? "]" : "",
                   dx_uv_listener_port(*out));
    }
    return 0;
}
