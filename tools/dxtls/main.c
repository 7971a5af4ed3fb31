/*
 * dxtls: the command line, the loop, signals, messages and the exit
 * status.
 *
 * Exit status: 0 after a clean close (and after SIGINT or SIGTERM closed
 * the connections), 1 on a TLS failure, 2 on bad usage, 3 on a transport
 * failure. Without a listening endpoint dxtls makes one connection and
 * ends with it; with one it serves connections until a signal, or, when
 * the other endpoint exists once (-, fd:, serial:), until its first
 * connection ends.
 */
#include "config.h"

#include "dxtls.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_HIREDIS
#include <duplex/redis.h>
#endif

static const options *g_opt;
static bool g_progress_shown;

/* ---- messages ------------------------------------------------------------- */

/* write(2) all of it; stderr may share a non-blocking file description
 * with stdin (a terminal), so EAGAIN waits. */
static void write_all(int fd, const char *s, size_t len)
{
    while (len) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, 1000);
            continue;
        }
        if (n <= 0)
            return;
        s += n;
        len -= (size_t)n;
    }
}

static void clear_progress(void)
{
    if (g_progress_shown) {
        write_all(2, "\r\033[K", 4);
        g_progress_shown = false;
    }
}

void emit_raw(const char *text)
{
    clear_progress();
    write_all(2, text, strlen(text));
}

static void vline(const char *fmt, va_list ap)
{
    char buf[2048];
    int n = snprintf(buf, sizeof(buf), "dxtls: ");
    int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(buf) - 2)
        len = sizeof(buf) - 2;
    for (size_t i = (size_t)n; i < len; i++)
        if ((unsigned char)buf[i] < 0x20)
            buf[i] = ' '; /* one line */
    buf[len++] = '\n';
    clear_progress();
    write_all(2, buf, len);
}

void note(const char *fmt, ...)
{
    if (!g_opt || !g_opt->verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
}

void notice(const char *fmt, ...)
{
    if (g_opt && g_opt->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
}

void announce(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
}

void complain(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
}

void error_line(char *buf, size_t size, const dx_error *err, const char *context)
{
    const char *detail = dx_error_detail(err);
    snprintf(buf, size, "%s: %s%s%s%s%s%s", dx_error_name(err), context ? context : "",
             context && *context ? ": " : "", dx_error_message(err), *detail ? " (" : "",
             detail, *detail ? ")" : "");
}

void error_text(const dx_error *err, char *buf, size_t size)
{
    error_line(buf, size, err, NULL);
}

/* ---- progress ------------------------------------------------------------------ */

static uv_timer_t progress_timer;
static bool progress_on;
static uint64_t last_out, last_in, last_ms;

static void human(char *buf, size_t size, double v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%.0f %s", v, units[u]);
    else
        snprintf(buf, size, "%.1f %s", v, units[u]);
}

static void progress_totals(app *a, uint64_t *out, uint64_t *in)
{
    *out = a->done_out;
    *in = a->done_in;
    for (relay *r = a->relays; r; r = relay_next(r)) {
        uint64_t o, i;
        relay_bytes(r, &o, &i);
        *out += o;
        *in += i;
    }
}

static void progress_draw(app *a)
{
    uint64_t out, in, now = uv_now(a->loop);
    progress_totals(a, &out, &in);
    double secs = now > last_ms ? (double)(now - last_ms) / 1000.0 : 0;
    char o[32], i[32], ro[32], ri[32], line[200];
    human(o, sizeof(o), (double)out);
    human(i, sizeof(i), (double)in);
    human(ro, sizeof(ro), secs > 0 ? (double)(out - last_out) / secs : 0);
    human(ri, sizeof(ri), secs > 0 ? (double)(in - last_in) / secs : 0);
    snprintf(line, sizeof(line), "\r\033[Kdxtls: out %s (%s/s)  in %s (%s/s)  %zu open", o, ro,
             i, ri, a->nrelays);
    last_out = out;
    last_in = in;
    last_ms = now;
    write_all(2, line, strlen(line));
    g_progress_shown = true;
}

static void progress_tick(uv_timer_t *t)
{
    progress_draw(t->data);
}

static void progress_start(app *a)
{
    if (!a->opt->progress || !isatty(2))
        return;
    uv_timer_init(a->loop, &progress_timer);
    progress_timer.data = a;
    uv_timer_start(&progress_timer, progress_tick, 250, 250);
    uv_unref((uv_handle_t *)&progress_timer);
    progress_on = true;
    last_ms = uv_now(a->loop);
}

static void progress_stop(app *a)
{
    if (!progress_on)
        return;
    progress_on = false;
    progress_draw(a);
    write_all(2, "\n", 1);
    g_progress_shown = false;
    uv_close((uv_handle_t *)&progress_timer, NULL);
}

/* ---- the application ------------------------------------------------------------- */

static uv_signal_t sig_int, sig_term;

/* ---- the session store ------------------------------------------------------- */

#ifdef HAVE_HIREDIS
/* --session-store: the server's sessions, and its ticket keys unless
 * --no-tickets, shared through Redis. Returns 0, or an exit status with
 * the message in msg. The URL is not repeated: it may hold a password. */
static int store_open(app *a, char *msg, size_t size)
{
    const options *o = a->opt;
    int rc = dx_redis_store_new(a->loop, o->session_store, &a->store);
    if (rc == DX_EINVAL) {
        snprintf(msg, size, "ERR_INVALID_ARG_VALUE: --session-store: not a "
                            "redis://[:PASSWORD@]HOST[:PORT][/DB] URL");
        return EXIT_USAGE;
    }
    if (rc == 0)
        rc = dx_redis_store_attach(a->store, a->tls.srv);
    if (rc == 0 && !o->no_tickets)
        rc = dx_redis_store_share_ticket_keys(a->store, DX_REDIS_DEFAULT_TICKET_PERIOD_MS);
    if (rc != 0) {
        snprintf(msg, size, "ENOMEM: --session-store: cannot make the store");
        return EXIT_TRANSPORT;
    }
    return 0;
}

static void store_close(app *a)
{
    if (!a->store)
        return;
    dx_redis_stats st;
    dx_redis_store_get_stats(a->store, &st);
    note("session store: %llu lookups, %llu found, %llu missing, %llu timed out, %llu while "
         "down, %llu errors; %llu sessions stored; %llu connections, %llu failed",
         (unsigned long long)st.gets, (unsigned long long)st.hits,
         (unsigned long long)st.misses, (unsigned long long)st.timeouts,
         (unsigned long long)st.unavailable, (unsigned long long)st.errors,
         (unsigned long long)st.puts, (unsigned long long)st.connects,
         (unsigned long long)st.connect_failures);
    dx_redis_store_free(a->store);
    a->store = NULL;
}
#else
static void store_close(app *a) { (void)a; }
#endif

static void app_shutdown(app *a)
{
    a->stopping = true;
    store_close(a);
    if (a->listener) {
        dx_uv_listener_close(a->listener, false);
        a->listener = NULL;
    }
    if (!uv_is_closing((uv_handle_t *)&sig_int)) {
        uv_close((uv_handle_t *)&sig_int, NULL);
        uv_close((uv_handle_t *)&sig_term, NULL);
    }
    progress_stop(a);
}

void app_relay_done(app *a, int status, uint64_t out, uint64_t in)
{
    a->done_out += out;
    a->done_in += in;
    if (a->one_shot) {
        a->status = status;
        app_shutdown(a);
    } else if (a->stopping && a->nrelays == 0) {
        app_shutdown(a);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    app *a = h->data;
    if (a->stopping) {
        /* A second signal: no more waiting. */
        for (relay *r = a->relays, *next; r; r = next) {
            next = relay_next(r);
            relay_abort(r);
        }
        return;
    }
    note("%s: closing", signum == SIGINT ? "SIGINT" : "SIGTERM");
    a->stopping = true;
    if (a->listener) {
        dx_uv_listener_close(a->listener, false);
        a->listener = NULL;
    }
    if (!a->relays) {
        app_shutdown(a);
        return;
    }
    for (relay *r = a->relays, *next; r; r = next) {
        next = relay_next(r);
        relay_stop(r);
    }
}

static void on_accept(void *arg, dx_stream *s, const char *peer)
{
    app *a = arg;
    if (a->stopping) {
        dx_stream_destroy(s);
        return;
    }
    if (a->one_shot && a->listener) {
        /* The other endpoint exists once: this connection is the only one. */
        dx_uv_listener_close(a->listener, false);
        a->listener = NULL;
    }
    relay_new(a, a->listen_side, s, peer);
}

static void free_closed(uv_handle_t *h) { free(h); }

/* Children that outlived their connection (SIGTERM sent) hold their
 * handle, allocated on its own; nothing else should be left. */
static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, h->type == UV_PROCESS ? free_closed : NULL);
}

static int run(options *o)
{
    app a;
    char msg[1024];
    memset(&a, 0, sizeof(a));
    a.opt = o;
    a.listen_side = -1;
    int rc = tlsconf_build(&a.tls, o, msg, sizeof(msg));
    if (rc != 0) {
        complain("%s", msg);
        return rc;
    }
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0 || fdio_loop_new(&loop, &a.fdio) != 0) {
        complain("ENOMEM: cannot make the event loop");
        tlsconf_free(&a.tls);
        return EXIT_TRANSPORT;
    }
    a.loop = &loop;
    if (a.tls.srv)
        dx_tls_server_set_clock(a.tls.srv, dx_uv_now, &loop);

    uv_signal_init(&loop, &sig_int);
    uv_signal_init(&loop, &sig_term);
    sig_int.data = sig_term.data = &a;
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_unref((uv_handle_t *)&sig_int);
    uv_unref((uv_handle_t *)&sig_term);
    progress_start(&a);

#ifdef HAVE_HIREDIS
    if (o->session_store && (rc = store_open(&a, msg, sizeof(msg))) != 0) {
        complain("%s", msg);
        a.status = rc;
        app_shutdown(&a);
    }
#endif

    const endpoint *lst = ep_listens(&o->clear) ? &o->clear
                          : ep_listens(&o->encrypted) ? &o->encrypted
                                                      : NULL;
    if (a.stopping) {
        /* nothing to serve: the session store could not be made */
    } else if (lst) {
        a.listen_side = lst == &o->clear ? SIDE_CLEAR : SIDE_ENC;
        const endpoint *other = lst == &o->clear ? &o->encrypted : &o->clear;
        a.one_shot = !ep_repeatable(other);
        dx_error *err = NULL;
        rc = ep_listen(&a, lst, on_accept, &a, &a.listener, &err);
        if (rc != 0) {
            char line[1024];
            error_line(line, sizeof(line), err, lst->text);
            complain("%s", line);
            dx_error_free(err);
            a.status = rc;
            app_shutdown(&a);
        }
    } else {
        a.one_shot = true;
        relay_new(&a, -1, NULL, NULL);
    }

    uv_run(&loop, UV_RUN_DEFAULT);

    /* Whatever is left (a child's handle, the loop's own) closes now. */
    progress_stop(&a);
    fdio_loop_close(a.fdio);
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        complain("EBUSY: handles left on the loop");
    tlsconf_free(&a.tls);
    return a.status;
}

int main(int argc, char **argv)
{
    /* libuv writes with write(2): a peer gone would raise SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    options o;
    char msg[1024];
    int status;
    switch (options_parse(argc, argv, &o, msg, sizeof(msg))) {
    case PARSE_HELP:
        options_usage(stdout);
        status = EXIT_OK;
        break;
    case PARSE_VERSION:
        printf("dxtls %s (libduplex %s, libuv %s)\n", PACKAGE_VERSION, dx_version_string(),
               uv_version_string());
        status = EXIT_OK;
        break;
    case PARSE_DEMO:
        status = demo_main();
        break;
    case PARSE_ERROR:
        complain("%s", msg);
        status = EXIT_USAGE;
        break;
    default:
        g_opt = &o;
        status = run(&o);
        g_opt = NULL;
        break;
    }
    options_free(&o);
    return status;
}
