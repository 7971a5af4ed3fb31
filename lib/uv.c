/*
 * The libuv adapter: uv_stream_t handles as dx_streams, the deadlines of
 * TLS connections on uv timers, and TCP and Unix connects and listeners
 * that hand out plain streams or TLS connections.
 *
 * Lifetime: the adapter's state lives in the dx_stream's implementation
 * bytes, and the open handle holds one reference to the stream, dropped
 * in libuv's close callback. So every libuv callback finds the state
 * valid, whatever the owner did with its handle meanwhile.
 */
#include "config.h"

#include <duplex/uv.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "alloc.h"
#include "errors.h"

/* The size of each read buffer (libuv suggests 64 KiB). */
#define READ_SIZE ((size_t)65536)
/* The most bytes handed to libuv in one buffer (uv_buf_t lengths are
 * unsigned int). */
#define BUF_MAX ((size_t)1 << 30)
/* Node's default listen backlog. */
#define BACKLOG 511

#define CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* ---- errors ----------------------------------------------------------- */

/* The DX_E* code nearest a libuv error (libuv's codes are negated errno
 * values on POSIX systems; UV_EOF and the UV_EAI_* codes are not). */
static int code_of(int uverr)
{
    if (uverr < 0 && uverr > -1000)
        return dx_errno_to_code(-uverr);
    return DX_EIO;
}

/* An error of layer "uv" named after libuv's error, with what failed as
 * its detail. */
static dx_error *uv_error(int uverr, const char *fmt, ...) DX_PRINTF(2, 3);
static dx_error *uv_error(int uverr, const char *fmt, ...)
{
    char name[64], msg[128];
    uv_err_name_r(uverr, name, sizeof(name));
    uv_strerror_r(uverr, msg, sizeof(msg));
    dx_error *e = dx_error_new(code_of(uverr), name, "uv", "%s", msg);
    if (!e)
        return NULL;
    if (fmt) {
        char detail[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        dx_error_set_detail(e, "%s", detail);
    }
    if (uverr < 0 && uverr > -1000)
        dx_error_set_sys_errno(e, -uverr);
    return e;
}

/* ---- connections a listener counts ----------------------------------- */

typedef struct conn_entry {
    struct conn_entry *prev, *next;
    dx_uv_listener *lst; /* NULL while in no list */
    void (*abort)(struct conn_entry *e);
} conn_entry;

struct dx_uv_listener {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_loop_t *loop;
    bool is_unix, closing;
    dx_tls_server *srv;
    dx_uv_accept_cb cb;
    dx_uv_tls_accept_cb tls_cb;
    void *arg;
    conn_entry head; /* a ring of the open connections */
    size_t count;
};

static void entry_add(dx_uv_listener *l, conn_entry *e, void (*abort)(conn_entry *))
{
    e->lst = l;
    e->abort = abort;
    e->next = &l->head;
    e->prev = l->head.prev;
    l->head.prev->next = e;
    l->head.prev = e;
    l->count++;
}

static void entry_remove(conn_entry *e)
{
    if (!e->lst)
        return;
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->lst->count--;
    e->lst = NULL;
    e->prev = e->next = NULL;
}

/* ---- the stream --------------------------------------------------------- */

typedef struct uvs {
    dx_stream *s;
    uv_stream_t *h;        /* NULL once libuv closed it */
    uv_close_cb on_closed; /* the owner's */
    void *saved_data;      /* the owner's handle->data */
    size_t inflight;       /* bytes in uv_write requests */
    size_t queue_max;
    uv_shutdown_t sreq;
    bool shutdown_pending; /* uv_shutdown() issued, its callback not come */
    bool linger;           /* the stream closed: close the handle after it */
    bool closing;          /* uv_close() called */
    conn_entry entry;
} uvs;

/* A write request with its copy of the bytes. */
typedef struct wreq {
    uv_write_t req;
    uvs *u;
    size_t len;
    _Alignas(max_align_t) uint8_t data[];
} wreq;

static const char uv_kind[] = "uv";

static uvs *uvs_of(const dx_stream *s) { return dx_stream_impl(s); }

/* Fails the stream with a libuv error; returns its code. */
static int fail_uv(uvs *u, int uverr, const char *what)
{
    dx_stream_fail_with(u->s, uv_error(uverr, "%s", what));
    return code_of(uverr);
}

static void on_handle_closed(uv_handle_t *hd)
{
    uvs *u = hd->data;
    uv_close_cb cb = u->on_closed;
    hd->data = u->saved_data;
    u->h = NULL;
    dx_stream_unref(u->s); /* the handle's reference: u may be gone */
    if (cb)
        cb(hd);
}

static void close_handle(uvs *u)
{
    if (u->closing || !u->h)
        return;
    u->closing = true;
    uv_close((uv_handle_t *)u->h, on_handle_closed);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    (void)hd, (void)suggested;
    char *p = dx_malloc(READ_SIZE);
    *buf = uv_buf_init(p, p ? (unsigned)READ_SIZE : 0);
}

static void on_read(uv_stream_t *hd, ssize_t n, const uv_buf_t *buf)
{
    uvs *u = hd->data;
    if (n > 0) {
        dx_stream_push(u->s, buf->base, (size_t)n); /* 0: read_stop follows */
    } else if (n == UV_EOF || (n == UV_EIO && hd->type == UV_TTY)) {
        /* (A terminal that hung up reads EIO: its end of input.) */
        uv_read_stop(hd);
        dx_stream_push_end(u->s);
    } else if (n == UV_ENOBUFS) {
        uv_read_stop(hd);
        dx_stream_fail(u->s, DX_ENOMEM, NULL, "no memory for a read buffer");
    } else if (n < 0) {
        uv_read_stop(hd);
        fail_uv(u, (int)n, "read");
    }
    dx_free(buf->base);
}

static void op_read_start(dx_stream *s)
{
    uvs *u = uvs_of(s);
    if (u->closing || !u->h)
        return;
    int r = uv_read_start(u->h, on_alloc, on_read);
    if (r < 0 && r != UV_EALREADY)
        fail_uv(u, r, "read");
}

static void op_read_stop(dx_stream *s)
{
    uvs *u = uvs_of(s);
    if (!u->closing && u->h)
        uv_read_stop(u->h);
}

static void on_written(uv_write_t *req, int status)
{
    wreq *w = CONTAINER(req, wreq, req);
    uvs *u = w->u;
    u->inflight -= w->len;
    dx_free(w);
    if (status == UV_ECANCELED || (dx_stream_state(u->s) & DX_STREAM_CLOSED))
        return;
    if (status < 0)
        fail_uv(u, status, "write");
    else
        dx_stream_writable(u->s); /* room again: the core offers the rest */
}

/* Where a write op stands in the buffers it was offered. */
typedef struct cursor {
    const dx_iov *iov;
    size_t n, i, off;
} cursor;

static void cursor_skip(cursor *c, size_t k)
{
    while (k && c->i < c->n) {
        size_t left = c->iov[c->i].len - c->off;
        if (k < left) {
            c->off += k;
            return;
        }
        k -= left;
        c->i++;
        c->off = 0;
    }
    while (c->i < c->n && c->iov[c->i].len == c->off) {
        c->i++;
        c->off = 0;
    }
}

/*
 * Takes what the kernel takes at once (uv_try_write, no copy) while libuv
 * has nothing queued, then copies what the queue bound allows into one
 * uv_write request. Taking less than offered makes the core keep the rest
 * in its write buffer until on_written calls dx_stream_writable().
 *
 * A request holds all of the rest, or at least half the queue bound: a
 * queue with less room than that and more to take takes nothing until
 * requests complete. Otherwise each completed request would make room for
 * its own size only, the next request would fill just that, and a writer
 * faster than the kernel would break down into requests (and system
 * calls) of a few bytes each, for good.
 */
static int op_write(dx_stream *s, const dx_iov *iov, size_t n, size_t *taken)
{
    uvs *u = uvs_of(s);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += iov[i].len;
    cursor c = {iov, n, 0, 0};
    cursor_skip(&c, 0);
    size_t done = 0;
    /* (libuv refuses it, UV_EAGAIN, while its queue holds unwritten
     * bytes: the order stays.) */
    while (c.i < c.n) {
        uv_buf_t b[16];
        unsigned nb = 0;
        size_t want = 0;
        for (size_t j = c.i; j < c.n && nb < 16; j++) {
            size_t skip = j == c.i ? c.off : 0, len = iov[j].len - skip;
            if (len == 0)
                continue;
            if (len > BUF_MAX)
                len = BUF_MAX;
            b[nb++] = uv_buf_init((char *)iov[j].base + skip, (unsigned)len);
            want += len;
            if (len < iov[j].len - skip)
                break;
        }
        int r = uv_try_write(u->h, b, nb);
        if (r == UV_EAGAIN || r == UV_ENOSYS || r == 0)
            break;
        if (r < 0) {
            *taken = done;
            return fail_uv(u, r, "write");
        }
        done += (size_t)r;
        cursor_skip(&c, (size_t)r);
        if ((size_t)r < want)
            break; /* the kernel is full */
    }
    size_t rest = total - done;
    size_t room = u->queue_max > u->inflight ? u->queue_max - u->inflight : 0;
    if (rest > room && room < u->queue_max / 2)
        room = 0; /* half the queue at least, or all the rest (above) */
    size_t k = rest < room ? rest : room;
    if (k > BUF_MAX)
        k = BUF_MAX;
    if (k) {
        wreq *w = dx_malloc(sizeof(*w) + k);
        if (!w) {
            *taken = done;
            /* With nothing in flight no callback would come back to us. */
            return u->inflight ? 0 : DX_ENOMEM;
        }
        size_t copied = 0;
        while (copied < k) {
            size_t left = iov[c.i].len - c.off, m = k - copied < left ? k - copied : left;
            memcpy(w->data + copied, (const uint8_t *)iov[c.i].base + c.off, m);
            copied += m;
            cursor_skip(&c, m);
        }
        w->u = u;
        w->len = k;
        uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)k);
        int r = uv_write(&w->req, u->h, &b, 1, on_written);
        if (r < 0) {
            dx_free(w);
            *taken = done;
            return fail_uv(u, r, "write");
        }
        u->inflight += k;
        done += k;
    }
    *taken = done;
    return 0;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    uvs *u = CONTAINER(req, uvs, sreq);
    u->shutdown_pending = false;
    if (!(dx_stream_state(u->s) & DX_STREAM_CLOSED)) {
        if (status == UV_ENOTSOCK && u->h && !uv_is_readable(u->h)) {
            /* The write end of a pipe: it ends by closing. */
            dx_stream_abort(u->s);
        } else if (status < 0 && status != UV_ECANCELED && status != UV_ENOTSOCK) {
            /* (ENOTSOCK: a descriptor that cannot half-close; the peer sees
             * the end when the handle closes.) */
            fail_uv(u, status, "shutdown");
        }
        return;
    }
    if (u->linger)
        close_handle(u);
}

static int op_shutdown(dx_stream *s)
{
    uvs *u = uvs_of(s);
    int r = uv_shutdown(&u->sreq, u->h, on_shutdown);
    if (r < 0)
        return fail_uv(u, r, "shutdown");
    u->shutdown_pending = true;
    return 0;
}

static void op_close(dx_stream *s)
{
    uvs *u = uvs_of(s);
    entry_remove(&u->entry);
    if (u->closing || !u->h)
        return;
    uv_read_stop(u->h);
    if (u->shutdown_pending && !(dx_stream_state(s) & DX_STREAM_ERRORED)) {
        /* libuv accepted the end: let it write everything and shut down
         * first. */
        u->linger = true;
        return;
    }
    close_handle(u);
}

static const dx_stream_ops uv_ops = {
    .name = uv_kind,
    .write = op_write,
    .shutdown = op_shutdown,
    .read_start = op_read_start,
    .read_stop = op_read_stop,
    .close = op_close,
};

/* A handle that cannot write: dx_stream_write() returns DX_ENOTSUP and the
 * end finishes at once. */
static const dx_stream_ops uv_ro_ops = {
    .name = uv_kind,
    .read_start = op_read_start,
    .read_stop = op_read_stop,
    .close = op_close,
};

int dx_uv_stream_new(uv_stream_t *h, uv_close_cb on_closed, dx_stream **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    if (!h)
        return DX_EINVAL;
    uv_handle_type ty = uv_handle_get_type((uv_handle_t *)h);
    if ((ty != UV_TCP && ty != UV_NAMED_PIPE && ty != UV_TTY) ||
        uv_is_closing((uv_handle_t *)h))
        return DX_EINVAL;
    dx_stream *s;
    int rc = dx_stream_new(uv_is_writable(h) ? &uv_ops : &uv_ro_ops, sizeof(uvs), &s);
    if (rc != 0)
        return rc;
    uvs *u = uvs_of(s);
    u->s = s;
    u->h = h;
    u->on_closed = on_closed;
    u->saved_data = h->data;
    u->queue_max = DX_UV_DEFAULT_WRITE_QUEUE;
    h->data = u;
    dx_stream_ref(s); /* the open handle's */
    uv_read_stop(h);  /* reading starts when a consumer wants data */
    if (!uv_is_readable(h))
        dx_stream_push_end(s); /* nothing to read: the input ends at once */
    *out = s;
    return 0;
}

bool dx_is_uv_stream(const dx_stream *s)
{
    return s && dx_stream_kind(s) == uv_kind;
}

uv_stream_t *dx_uv_stream_handle(const dx_stream *s)
{
    return dx_is_uv_stream(s) ? uvs_of(s)->h : NULL;
}

int dx_uv_stream_set_write_queue(dx_stream *s, size_t max)
{
    if (!dx_is_uv_stream(s) || max == 0)
        return DX_EINVAL;
    uvs_of(s)->queue_max = max;
    return 0;
}

/* ---- TLS deadlines on uv timers ------------------------------------------ */

uint64_t dx_uv_now(void *loop)
{
    return uv_now((const uv_loop_t *)loop);
}

typedef struct tls_timer {
    uv_timer_t timer;
    dx_tls *t; /* NULL after the connection's last call */
    conn_entry entry;
} tls_timer;

static void timer_closed(uv_handle_t *hd)
{
    dx_free(CONTAINER(hd, tls_timer, timer));
}

static void timer_due(uv_timer_t *tm)
{
    tls_timer *x = CONTAINER(tm, tls_timer, timer);
    if (x->t)
        dx_tls_check_timeouts(x->t); /* may close t, and x with it */
}

static void timer_arm(tls_timer *x, uint64_t when)
{
    uint64_t now = uv_now(x->timer.loop);
    uv_timer_start(&x->timer, timer_due, when > now ? when - now : 0, 0);
}

static void deadline_hook(dx_tls *t, uint64_t when, void *arg)
{
    tls_timer *x = arg;
    if (!x->t)
        return;
    if (when != DX_TLS_NO_DEADLINE) {
        timer_arm(x, when);
        return;
    }
    uv_timer_stop(&x->timer);
    if (dx_stream_state(dx_tls_upper(t)) & DX_STREAM_CLOSED) {
        /* The connection's last call: the timer goes with it. */
        x->t = NULL;
        entry_remove(&x->entry);
        uv_close((uv_handle_t *)&x->timer, timer_closed);
    }
}

static int timer_new(uv_loop_t *loop, dx_tls *t, tls_timer **out)
{
    if (!loop || !t)
        return DX_EINVAL;
    tls_timer *x = dx_calloc(1, sizeof(*x));
    if (!x)
        return DX_ENOMEM;
    int rc = dx_tls_set_deadline_hook(t, deadline_hook, x);
    if (rc != 0) {
        dx_free(x);
        return rc;
    }
    uv_timer_init(loop, &x->timer);
    x->t = t;
    dx_tls_set_clock(t, dx_uv_now, loop);
    uint64_t d = dx_tls_deadline(t);
    if (d != DX_TLS_NO_DEADLINE)
        timer_arm(x, d);
    if (out)
        *out = x;
    return 0;
}

int dx_uv_tls_timer(uv_loop_t *loop, dx_tls *t)
{
    return timer_new(loop, t, NULL);
}

/* ---- handles the adapter makes --------------------------------------------- */

static void free_handle(uv_handle_t *hd) { dx_free(hd); }

/* A stream over a handle of the adapter's own. On failure the handle is
 * closed and freed. */
static int own_stream(uv_stream_t *h, dx_stream **out)
{
    int rc = dx_uv_stream_new(h, free_handle, out);
    if (rc != 0)
        uv_close((uv_handle_t *)h, free_handle);
    return rc;
}

static bool is_ip(const char *host)
{
    unsigned char buf[16];
    return uv_inet_pton(AF_INET, host, buf) == 0 || uv_inet_pton(AF_INET6, host, buf) == 0;
}

/* An IPv4 or IPv6 address in text with a port. Returns 0 or a libuv error. */
static int numeric_addr(const char *host, unsigned port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
        return 0;
    return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss);
}

static void set_port(struct sockaddr *sa, unsigned port)
{
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
    else if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
}

/* "127.0.0.1:443" or "[::1]:443". */
static void addr_text(const struct sockaddr *sa, char *buf, size_t size)
{
    char ip[64] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof(ip));
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
        snprintf(buf, size, "%s:%u", ip, port);
    } else {
        uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof(ip));
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
        snprintf(buf, size, "[%s]:%u", ip, port);
    }
}

static bool unix_path_fits(const char *path)
{
    struct sockaddr_un sun;
    return path && *path && strlen(path) < sizeof(sun.sun_path);
}

/* ---- connecting ------------------------------------------------------------- */

struct dx_uv_connect {
    uv_loop_t *loop;
    dx_uv_connect_cb cb;
    dx_uv_tls_connect_cb tls_cb;
    void *arg;
    dx_tls_ctx *ctx; /* TLS: a reference */
    char *name;      /* the host or the path */
    unsigned port;
    bool is_unix, canceled, done;
    bool resolving;
    uv_getaddrinfo_t gai;
    struct addrinfo *ai, *next; /* what the name resolved to, the next to try */
    struct sockaddr_storage numeric;
    uv_connect_t creq;
    uv_stream_t *h; /* the attempt's handle */
    int last_err;
    char where[300]; /* the address of the last attempt, for errors */
};

static void connect_free(dx_uv_connect *c)
{
    if (c->ai)
        uv_freeaddrinfo(c->ai);
    dx_tls_ctx_unref(c->ctx);
    dx_free(c->name);
    dx_free(c);
}

/* Calls the callback with an error (owned here) and releases the request. */
static void connect_fail(dx_uv_connect *c, dx_error *err)
{
    c->done = true;
    const dx_error *e = err ? err : dx_error_oom();
    if (c->tls_cb)
        c->tls_cb(NULL, e, c->arg);
    else
        c->cb(NULL, e, c->arg);
    dx_error_free(err);
    connect_free(c);
}

static void connect_fail_uv(dx_uv_connect *c, int uverr)
{
    if (uverr == UV_ECANCELED || c->canceled)
        connect_fail(c, uv_error(UV_ECANCELED, "connect %s", c->where));
    else
        connect_fail(c, uv_error(uverr, "connect %s", c->where));
}

static void connect_fail_code(dx_uv_connect *c, int code)
{
    connect_fail(c, dx_error_new(code, NULL, "uv", "connect %s: %s", c->where,
                                 dx_strerror(code)));
}

static void try_next(dx_uv_connect *c);

static void on_attempt_closed(uv_handle_t *hd)
{
    dx_uv_connect *c = hd->data;
    dx_free(hd);
    c->h = NULL;
    if (c->canceled)
        connect_fail_uv(c, UV_ECANCELED);
    else
        try_next(c);
}

/* The transport is connected: hand it over, plain or under TLS. */
static void connected(dx_uv_connect *c)
{
    uv_stream_t *h = c->h;
    c->h = NULL;
    h->data = NULL;
    dx_stream *s;
    int rc = own_stream(h, &s);
    if (rc != 0) {
        connect_fail_code(c, rc);
        return;
    }
    c->done = true;
    if (!c->ctx) {
        c->cb(s, NULL, c->arg);
        connect_free(c);
        return;
    }
    dx_tls *t;
    rc = dx_tls_new(c->ctx, DX_TLS_CLIENT, &t);
    if (rc != 0) {
        dx_stream_destroy(s);
        connect_fail_code(c, rc);
        return;
    }
    tls_timer *x = NULL;
    if (!c->is_unix)
        rc = is_ip(c->name) ? dx_tls_set_host(t, c->name) : dx_tls_set_servername(t, c->name);
    if (rc == 0)
        rc = timer_new(c->loop, t, &x);
    if (rc != 0) {
        dx_stream_destroy(s);
    } else {
        rc = dx_tls_attach(t, s); /* s is t's from here on */
    }
    if (rc != 0) {
        dx_tls_destroy(t);
        connect_fail_code(c, rc);
        return;
    }
    c->tls_cb(t, NULL, c->arg);
    /* x stays until the loop closes it: x->t says whether t is still there
     * (its last call clears it). */
    if (x->t)
        dx_tls_start(t); /* DX_ESTATE if the callback started it */
    connect_free(c);
}

static void on_connected(uv_connect_t *req, int status)
{
    dx_uv_connect *c = CONTAINER(req, dx_uv_connect, creq);
    if (status == 0 && !c->canceled) {
        connected(c);
        return;
    }
    c->last_err = status ? status : UV_ECANCELED;
    if (!uv_is_closing((uv_handle_t *)c->h)) /* (a cancel closed it already) */
        uv_close((uv_handle_t *)c->h, on_attempt_closed);
}

/* Connects to one address: the outcome comes to on_connected (a failure
 * that libuv sees at once too, through on_attempt_closed). Returns 0 or
 * DX_ENOMEM. */
static int attempt_tcp(dx_uv_connect *c, const struct sockaddr *sa)
{
    addr_text(sa, c->where, sizeof(c->where));
    uv_tcp_t *tcp = dx_malloc(sizeof(*tcp));
    if (!tcp)
        return DX_ENOMEM;
    uv_tcp_init(c->loop, tcp);
    tcp->data = c;
    c->h = (uv_stream_t *)tcp;
    int r = uv_tcp_connect(&c->creq, tcp, sa, on_connected);
    if (r < 0) {
        c->last_err = r;
        uv_close((uv_handle_t *)tcp, on_attempt_closed);
    }
    return 0;
}

static int attempt_unix(dx_uv_connect *c)
{
    snprintf(c->where, sizeof(c->where), "%s", c->name);
    uv_pipe_t *p = dx_malloc(sizeof(*p));
    if (!p)
        return DX_ENOMEM;
    uv_pipe_init(c->loop, p, 0);
    p->data = c;
    c->h = (uv_stream_t *)p;
    uv_pipe_connect(&c->creq, p, c->name, on_connected);
    return 0;
}

/* The next address of the name, or the outcome. */
static void try_next(dx_uv_connect *c)
{
    while (c->next) {
        struct addrinfo *ai = c->next;
        c->next = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        set_port(ai->ai_addr, c->port);
        if (attempt_tcp(c, ai->ai_addr) != 0)
            connect_fail_code(c, DX_ENOMEM);
        return;
    }
    connect_fail_uv(c, c->last_err ? c->last_err : UV_EAI_NONAME);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    dx_uv_connect *c = CONTAINER(req, dx_uv_connect, gai);
    c->resolving = false;
    c->ai = c->next = res;
    if (c->canceled || status == UV_ECANCELED) {
        connect_fail_uv(c, UV_ECANCELED);
        return;
    }
    if (status < 0) {
        connect_fail(c, uv_error(status, "getaddrinfo %s", c->name));
        return;
    }
    try_next(c);
}

static int connect_new(uv_loop_t *loop, dx_tls_ctx *ctx, const char *name, unsigned port,
                       bool is_unix, dx_uv_connect_cb cb, dx_uv_tls_connect_cb tls_cb,
                       void *arg, dx_uv_connect **out)
{
    if (out)
        *out = NULL;
    if (!loop || !name || (!cb && !tls_cb))
        return DX_EINVAL;
    if (is_unix ? !unix_path_fits(name) : (!*name || port == 0 || port > 65535))
        return DX_EINVAL;
    dx_uv_connect *c = dx_calloc(1, sizeof(*c));
    if (!c)
        return DX_ENOMEM;
    c->name = dx_strdup(name);
    if (!c->name) {
        dx_free(c);
        return DX_ENOMEM;
    }
    c->loop = loop;
    c->cb = cb;
    c->tls_cb = tls_cb;
    c->arg = arg;
    c->port = port;
    c->is_unix = is_unix;
    c->ctx = ctx ? dx_tls_ctx_ref(ctx) : NULL;
    snprintf(c->where, sizeof(c->where), "%s:%u", name, port);
    int rc = 0;
    if (is_unix) {
        rc = attempt_unix(c);
    } else if (numeric_addr(name, port, &c->numeric) == 0) {
        /* An address: no resolver thread. */
        rc = attempt_tcp(c, (const struct sockaddr *)&c->numeric);
    } else {
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_ADDRCONFIG;
        int r = uv_getaddrinfo(loop, &c->gai, on_resolved, name, NULL, &hints);
        if (r < 0) {
            connect_free(c);
            return code_of(r);
        }
        c->resolving = true;
    }
    if (rc != 0) {
        connect_free(c);
        return rc;
    }
    if (out)
        *out = c;
    return 0;
}

int dx_uv_tcp_connect(uv_loop_t *loop, const char *host, unsigned port, dx_uv_connect_cb cb,
                      void *arg, dx_uv_connect **out)
{
    if (!cb) {
        if (out)
            *out = NULL;
        return DX_EINVAL;
    }
    return connect_new(loop, NULL, host, port, false, cb, NULL, arg, out);
}

int dx_uv_unix_connect(uv_loop_t *loop, const char *path, dx_uv_connect_cb cb, void *arg,
                       dx_uv_connect **out)
{
    if (!cb) {
        if (out)
            *out = NULL;
        return DX_EINVAL;
    }
    return connect_new(loop, NULL, path, 0, true, cb, NULL, arg, out);
}

int dx_uv_tls_connect(uv_loop_t *loop, dx_tls_ctx *ctx, const char *host, unsigned port,
                      dx_uv_tls_connect_cb cb, void *arg, dx_uv_connect **out)
{
    if (!ctx || !cb) {
        if (out)
            *out = NULL;
        return DX_EINVAL;
    }
    return connect_new(loop, ctx, host, port, false, NULL, cb, arg, out);
}

int dx_uv_tls_connect_unix(uv_loop_t *loop, dx_tls_ctx *ctx, const char *path,
                           dx_uv_tls_connect_cb cb, void *arg, dx_uv_connect **out)
{
    if (!ctx || !cb) {
        if (out)
            *out = NULL;
        return DX_EINVAL;
    }
    return connect_new(loop, ctx, path, 0, true, NULL, cb, arg, out);
}

void dx_uv_connect_cancel(dx_uv_connect *c)
{
    if (!c || c->done || c->canceled)
        return;
    c->canceled = true;
    if (c->resolving) {
        /* Either it is cancelled (on_resolved gets UV_ECANCELED) or it is
         * running and on_resolved sees the flag. */
        uv_cancel((uv_req_t *)&c->gai);
    } else if (c->h && !uv_is_closing((uv_handle_t *)c->h)) {
        uv_close((uv_handle_t *)c->h, on_attempt_closed); /* on_connected: ECANCELED */
    }
}

/* ---- listening ------------------------------------------------------------------ */

static void listener_closed(uv_handle_t *hd)
{
    dx_free(CONTAINER(hd, dx_uv_listener, h));
}

static void abort_plain(conn_entry *e)
{
    dx_stream_abort(CONTAINER(e, uvs, entry)->s);
}

static void abort_tls(conn_entry *e)
{
    tls_timer *x = CONTAINER(e, tls_timer, entry);
    if (x->t)
        dx_stream_abort(dx_tls_upper(x->t));
}

static void accept_failed(dx_uv_listener *l, dx_error *err)
{
    const dx_error *e = err ? err : dx_error_oom();
    if (l->tls_cb)
        l->tls_cb(l, NULL, e, l->arg);
    else
        l->cb(l, NULL, e, l->arg);
    dx_error_free(err);
}

static void on_connection(uv_stream_t *server, int status)
{
    dx_uv_listener *l = CONTAINER(server, dx_uv_listener, h.stream);
    if (status < 0) {
        accept_failed(l, uv_error(status, "accept"));
        return;
    }
    uv_stream_t *h = dx_malloc(l->is_unix ? sizeof(uv_pipe_t) : sizeof(uv_tcp_t));
    if (!h) {
        accept_failed(l, dx_error_new(DX_ENOMEM, NULL, "uv", "accept: out of memory"));
        return;
    }
    if (l->is_unix)
        uv_pipe_init(l->loop, (uv_pipe_t *)h, 0);
    else
        uv_tcp_init(l->loop, (uv_tcp_t *)h);
    int r = uv_accept(server, h);
    if (r < 0) {
        uv_close((uv_handle_t *)h, free_handle);
        accept_failed(l, uv_error(r, "accept"));
        return;
    }
    dx_stream *s;
    int rc = own_stream(h, &s);
    if (rc != 0) {
        accept_failed(l, dx_error_new(rc, NULL, "uv", "accept: %s", dx_strerror(rc)));
        return;
    }
    if (!l->srv) {
        entry_add(l, &uvs_of(s)->entry, abort_plain);
        l->cb(l, s, NULL, l->arg);
        return;
    }
    dx_tls *t;
    rc = dx_tls_server_accept(l->srv, s, &t); /* s is t's (or gone) */
    tls_timer *x = NULL;
    if (rc == 0 && (rc = timer_new(l->loop, t, &x)) != 0)
        dx_tls_destroy(t);
    if (rc != 0) {
        accept_failed(l, dx_error_new(rc, NULL, "uv", "accept: %s", dx_strerror(rc)));
        return;
    }
    if (x->t) /* (a transport that failed at once closed it already) */
        entry_add(l, &x->entry, abort_tls);
    l->tls_cb(l, t, NULL, l->arg);
}

/* Binds the TCP handle to host and port. Returns 0 or a libuv error. */
static int bind_tcp(dx_uv_listener *l, const char *host, unsigned port, char *where,
                    size_t wsize)
{
    struct sockaddr_storage ss;
    if (!host) {
        /* Every interface: IPv6 with IPv4 mapped, or IPv4 alone. */
        snprintf(where, wsize, "[::]:%u", port);
        numeric_addr("::", port, &ss);
        int r = uv_tcp_bind(&l->h.tcp, (const struct sockaddr *)&ss, 0);
        if (r != UV_EAFNOSUPPORT)
            return r;
        host = "0.0.0.0";
    }
    snprintf(where, wsize, "%s:%u", host, port);
    if (numeric_addr(host, port, &ss) != 0) {
        uv_getaddrinfo_t req;
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_ADDRCONFIG;
        int r = uv_getaddrinfo(l->loop, &req, NULL, host, NULL, &hints); /* synchronous */
        if (r < 0)
            return r;
        struct addrinfo *ai = req.addrinfo;
        while (ai && ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            ai = ai->ai_next;
        if (!ai) {
            uv_freeaddrinfo(req.addrinfo);
            return UV_EAI_NONAME;
        }
        memset(&ss, 0, sizeof(ss));
        memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
        uv_freeaddrinfo(req.addrinfo);
        set_port((struct sockaddr *)&ss, port);
    }
    return uv_tcp_bind(&l->h.tcp, (const struct sockaddr *)&ss, 0);
}

static int listen_new(uv_loop_t *loop, dx_tls_server *srv, const char *host, unsigned port,
                      const char *path, dx_uv_accept_cb cb, dx_uv_tls_accept_cb tls_cb,
                      void *arg, dx_uv_listener **out, dx_error **err)
{
    if (err)
        *err = NULL;
    if (out)
        *out = NULL;
    if (!loop || !out || (!cb && !tls_cb) || port > 65535 || (tls_cb && !srv))
        return DX_EINVAL;
    if (path && !unix_path_fits(path))
        return DX_EINVAL;
    dx_uv_listener *l = dx_calloc(1, sizeof(*l));
    if (!l)
        return DX_ENOMEM;
    l->loop = loop;
    l->srv = srv;
    l->cb = cb;
    l->tls_cb = tls_cb;
    l->arg = arg;
    l->is_unix = path != NULL;
    l->head.next = l->head.prev = &l->head;
    char where[300];
    int r;
    if (path) {
        snprintf(where, sizeof(where), "%s", path);
        uv_pipe_init(loop, &l->h.pipe, 0);
        r = uv_pipe_bind(&l->h.pipe, path);
    } else {
        uv_tcp_init(loop, &l->h.tcp);
        r = bind_tcp(l, host, port, where, sizeof(where));
    }
    if (r == 0)
        r = uv_listen(&l->h.stream, BACKLOG, on_connection);
    if (r < 0) {
        if (err)
            *err = uv_error(r, "listen %s", where);
        l->closing = true;
        uv_close(&l->h.handle, listener_closed);
        return code_of(r);
    }
    if (srv)
        dx_tls_server_set_clock(srv, dx_uv_now, loop);
    *out = l;
    return 0;
}

int dx_uv_tcp_listen(uv_loop_t *loop, const char *host, unsigned port, dx_uv_accept_cb cb,
                     void *arg, dx_uv_listener **out, dx_error **err)
{
    if (!cb) {
        if (out)
            *out = NULL;
        if (err)
            *err = NULL;
        return DX_EINVAL;
    }
    return listen_new(loop, NULL, host, port, NULL, cb, NULL, arg, out, err);
}

int dx_uv_unix_listen(uv_loop_t *loop, const char *path, dx_uv_accept_cb cb, void *arg,
                      dx_uv_listener **out, dx_error **err)
{
    if (!cb || !path) {
        if (out)
            *out = NULL;
        if (err)
            *err = NULL;
        return DX_EINVAL;
    }
    return listen_new(loop, NULL, NULL, 0, path, cb, NULL, arg, out, err);
}

int dx_uv_tls_listen(uv_loop_t *loop, dx_tls_server *srv, const char *host, unsigned port,
                     dx_uv_tls_accept_cb cb, void *arg, dx_uv_listener **out, dx_error **err)
{
    if (!cb) {
        if (out)
            *out = NULL;
        if (err)
            *err = NULL;
        return DX_EINVAL;
    }
    return listen_new(loop, srv, host, port, NULL, NULL, cb, arg, out, err);
}

int dx_uv_tls_listen_unix(uv_loop_t *loop, dx_tls_server *srv, const char *path,
                          dx_uv_tls_accept_cb cb, void *arg, dx_uv_listener **out,
                          dx_error **err)
{
    if (!cb || !path) {
        if (out)
            *out = NULL;
        if (err)
            *err = NULL;
        return DX_EINVAL;
    }
    return listen_new(loop, srv, NULL, 0, path, NULL, cb, arg, out, err);
}

unsigned dx_uv_listener_port(const dx_uv_listener *l)
{
    if (!l || l->is_unix)
        return 0;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

size_t dx_uv_listener_connections(const dx_uv_listener *l)
{
    return l ? l->count : 0;
}

void dx_uv_listener_close(dx_uv_listener *l, bool abort_connections)
{
    if (!l || l->closing)
        return;
    l->closing = true;
    /* Each abort takes its entry out; callbacks may take others. */
    while (abort_connections && l->head.next != &l->head) {
        conn_entry *e = l->head.next;
        entry_remove(e);
        e->abort(e);
    }
    while (l->head.next != &l->head)
        entry_remove(l->head.next);
    uv_close(&l->h.handle, listener_closed);
}
