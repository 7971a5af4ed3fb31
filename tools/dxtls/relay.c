/*
 * One connection: a TLS filter over the encrypted endpoint's stream, and
 * the cleartext pumped between its upper stream and the cleartext
 * endpoint's stream.
 *
 *   CLEAR stream  <== pump ==>  dx_tls upper | dx_tls | lower == link ==> ENCRYPTED stream
 *
 * The TLS side is the library's TLSSocket shape (dx_tls_attach). The
 * cleartext side is pumped here rather than by a dx_link, for what a
 * relay between two peers needs beyond a link:
 *  - when one side has closed cleanly, the other must not wait for an end
 *    that may never come (a terminal on stdin, a child that does not
 *    exit): once the peer's close_notify came and the TLS side closed,
 *    the cleartext side is closed as soon as all of it was written;
 *  - a signal or an idle timeout closes the TLS side with close_notify
 *    from here while the cleartext side is held;
 *  - both sides are held (paused) from the moment each exists until the
 *    other does, so that a failure of either is seen at once, while
 *    their data waits.
 * Backpressure is carried as a link does: a write that returns DX_FULL
 * pauses the source until the destination drains; an end becomes an end.
 * A failure on either side fails the other with the same error (the TLS
 * peer then sees no close_notify: a truncation, as it should).
 */
#include "config.h"

#include "dxtls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Why a side is paused: bits. */
#define HOLD_JOIN 0x1u /* the other side is not there yet */
#define HOLD_FULL 0x2u /* the other side is full: until it drains */
#define HOLD_STOP 0x4u /* closing: its data is not wanted any more */

struct relay {
    app *a;
    relay *prev, *next;
    unsigned id;
    char peer[128];
    ep_inst *inst[2];
    bool opened[2];   /* the side's endpoint was asked for (or given) */
    dx_stream *s[2];  /* [SIDE_CLEAR] the endpoint, [SIDE_ENC] the TLS upper */
    dx_tls *t;
    dx_stream *transport; /* the encrypted endpoint's stream (a reference) */
    uint64_t drained_ms;  /* waited for it to write everything */
    bool closed[2];
    unsigned hold[2];
    bool abort_after_finish[2];
    bool gone_quietly; /* the cleartext side stopped reading after its end */
    bool joined, secure, stopping, finishing, lingering;
    dx_error *err;    /* the first failure */
    int err_status;
    char err_context[160];
    uint64_t bytes[2]; /* [SIDE_CLEAR] out to the TLS peer, [SIDE_ENC] in from it */
    uv_timer_t timer;
};

static void relay_advance(relay *r);
static void relay_done(relay *r);

static const char *prefix(const relay *r, char *buf, size_t size)
{
    if (r->a->one_shot)
        return "";
    snprintf(buf, size, "[%u] ", r->id);
    return buf;
}

/* ---- failures -------------------------------------------------------------- */

static void record(relay *r, const dx_error *err, int status, const char *context)
{
    if (r->err || r->stopping)
        return;
    r->err = dx_error_copy(err);
    if (!r->err)
        r->err = dx_error_new(DX_ENOMEM, NULL, "dxtls", "out of memory");
    r->err_status = status;
    snprintf(r->err_context, sizeof(r->err_context), "%s", context ? context : "");
}

/* ---- holding a side --------------------------------------------------------- */

static void hold_on(relay *r, int i, unsigned why)
{
    if (!r->s[i] || r->closed[i])
        return;
    if (!r->hold[i])
        dx_stream_pause(r->s[i]);
    r->hold[i] |= why;
}

static void hold_off(relay *r, int i, unsigned why)
{
    if (!r->s[i] || !(r->hold[i] & why))
        return;
    r->hold[i] &= ~why;
    if (!r->hold[i] && !r->closed[i])
        dx_stream_resume(r->s[i]);
}

/* ---- the pump ----------------------------------------------------------------- */

static void p_data(relay *r, int i, const uint8_t *data, size_t len)
{
    int o = 1 - i;
    if (!r->joined || r->closed[o])
        return; /* the other side is gone: dropped */
    int rc = dx_stream_write(r->s[o], data, len);
    if (rc >= 0)
        r->bytes[i] += len;
    if (rc == DX_FULL)
        hold_on(r, i, HOLD_FULL);
}

static void p_drain(relay *r, int i)
{
    hold_off(r, 1 - i, HOLD_FULL);
}

static void halfclose_due(uv_timer_t *tm);
static void linger(relay *r);

static void p_end(relay *r, int i)
{
    int o = 1 - i;
    if (!r->s[o] || r->closed[o])
        return;
    dx_stream_end(r->s[o]);
    ep_kind k = r->a->opt->clear.kind;
    if (i == SIDE_ENC && !r->closed[SIDE_CLEAR] &&
        (k == EP_STDIO || k == EP_FD || k == EP_SERIAL || k == EP_PTY) && !r->lingering &&
        !r->finishing) {
        /* The peer is done sending. A descriptor (a terminal, a line) may
         * never end its input: what it still sends is taken for a while,
         * then the connection closes. */
        r->lingering = true;
        uv_timer_start(&r->timer, halfclose_due, CLOSE_GRACE_MS, 0);
    }
}

static void p_finish(relay *r, int i)
{
    if (r->abort_after_finish[i])
        dx_stream_abort(r->s[i]);
}

static void p_error(relay *r, int i, const dx_error *err)
{
    int code = dx_error_code(err);
    if (i == SIDE_CLEAR && (code == DX_EPIPE || code == DX_ECONNRESET) &&
        (dx_stream_state(r->s[i]) & DX_STREAM_ENDED)) {
        /* A child (or a socket's peer) that finished its output and went
         * away without reading all of its input: the end of that
         * direction, not a failure of the connection. */
        r->gone_quietly = true;
        return;
    }
    if (i == SIDE_ENC)
        record(r, err, strcmp(dx_error_layer(err), "tls") ? EXIT_TRANSPORT : EXIT_TLS,
               "connection");
    else
        record(r, err, EXIT_TRANSPORT, r->a->opt->clear.text);
    int o = 1 - i;
    if (r->s[o] && !r->closed[o])
        dx_stream_fail_with(r->s[o], dx_error_copy(err));
}

static void linger_due(uv_timer_t *tm)
{
    relay *r = tm->data;
    r->lingering = false;
    for (int i = 0; i < 2; i++)
        if (r->s[i] && !r->closed[i])
            dx_stream_abort(r->s[i]);
}

static void halfclose_due(uv_timer_t *tm)
{
    relay *r = tm->data;
    r->lingering = false;
    dx_stream *up = r->s[SIDE_ENC];
    if (r->closed[SIDE_ENC] || r->closed[SIDE_CLEAR])
        return;
    hold_on(r, SIDE_CLEAR, HOLD_STOP);
    if (dx_stream_state(up) & DX_STREAM_WRITABLE)
        dx_stream_end(up); /* close_notify */
    linger(r);
}

static void linger(relay *r)
{
    if (r->lingering || r->finishing)
        return;
    r->lingering = true;
    uv_timer_start(&r->timer, linger_due, CLOSE_GRACE_MS, 0);
}

static void p_close(relay *r, int i)
{
    r->closed[i] = true;
    r->hold[i] = 0;
    int o = 1 - i;
    unsigned st = dx_stream_state(r->s[i]);
    bool clean = ((st & DX_STREAM_ENDED) && (st & DX_STREAM_FINISHED)) ||
                 (i == SIDE_CLEAR && r->gone_quietly);
    if (r->s[o] && !r->closed[o]) {
        if (!clean) {
            dx_stream_abort(r->s[o]);
        } else if (i == SIDE_ENC) {
            /* TLS closed with close_notify both ways: the cleartext side
             * was ended; it goes once that end was written. */
            if (dx_stream_state(r->s[o]) & DX_STREAM_FINISHED)
                dx_stream_abort(r->s[o]);
            else
                r->abort_after_finish[o] = true;
        } else {
            /* The cleartext side is done: the TLS side was ended (our
             * close_notify); the peer's answer is awaited a while. */
            if (dx_stream_state(r->s[o]) & DX_STREAM_WRITABLE)
                dx_stream_end(r->s[o]);
            hold_off(r, o, HOLD_JOIN | HOLD_FULL);
            linger(r);
        }
    }
    if (!r->s[o] || r->closed[o])
        relay_done(r);
}

#define SIDE_EVENTS(name, side)                                                          \
    static void name##_data(dx_stream *s, const uint8_t *d, size_t n, void *u)           \
    {                                                                                    \
        (void)s;                                                                         \
        p_data(u, side, d, n);                                                           \
    }                                                                                    \
    static void name##_end(dx_stream *s, void *u)                                        \
    {                                                                                    \
        (void)s;                                                                         \
        p_end(u, side);                                                                  \
    }                                                                                    \
    static void name##_drain(dx_stream *s, void *u)                                      \
    {                                                                                    \
        (void)s;                                                                         \
        p_drain(u, side);                                                                \
    }                                                                                    \
    static void name##_finish(dx_stream *s, void *u)                                     \
    {                                                                                    \
        (void)s;                                                                         \
        p_finish(u, side);                                                               \
    }                                                                                    \
    static void name##_error(dx_stream *s, const dx_error *e, void *u)                   \
    {                                                                                    \
        (void)s;                                                                         \
        p_error(u, side, e);                                                             \
    }                                                                                    \
    static void name##_close(dx_stream *s, void *u)                                      \
    {                                                                                    \
        (void)s;                                                                         \
        p_close(u, side);                                                                \
    }                                                                                    \
    static const dx_stream_events name##_events = {                                      \
        .on_data = name##_data,                                                          \
        .on_end = name##_end,                                                            \
        .on_drain = name##_drain,                                                        \
        .on_finish = name##_finish,                                                      \
        .on_error = name##_error,                                                        \
        .on_close = name##_close,                                                        \
    };

SIDE_EVENTS(clear, SIDE_CLEAR)
SIDE_EVENTS(upper, SIDE_ENC)

/* A side's stream arrived: held until the other one is there. */
static void take(relay *r, int i, dx_stream *s)
{
    r->s[i] = s;
    r->opened[i] = true;
    hold_on(r, i, HOLD_JOIN);
    dx_stream_set_events(s, i == SIDE_CLEAR ? &clear_events : &upper_events, r);
}

static void join(relay *r)
{
    r->joined = true;
    hold_off(r, SIDE_CLEAR, HOLD_JOIN);
    hold_off(r, SIDE_ENC, HOLD_JOIN);
}

/* ---- the TLS events ---------------------------------------------------------------- */

static void t_secure(dx_tls *t, void *u)
{
    relay *r = u;
    const options *o = r->a->opt;
    char p[32];
    r->secure = true;
    if (o->info) {
        sbuf b = {0};
        info_json(&b, t, r->id, !o->server && o->request_ocsp);
        sb_add(&b, "\n");
        if (!b.failed)
            emit_raw(b.s); /* one write: the line stays whole */
        sb_free(&b);
    }
    dx_tls_cipher_info ci = {0};
    dx_tls_cipher(t, &ci);
    note("%ssecure: %s, %s%s%s", prefix(r, p, sizeof(p)), dx_tls_protocol(t),
         ci.name ? ci.name : "?", dx_tls_session_reused(t) ? ", resumed" : "",
         dx_tls_authorized(t) ? ", authorized" : "");
}

static void t_session(dx_tls *t, const uint8_t *session, size_t len, void *u)
{
    (void)t;
    relay *r = u;
    const char *path = r->a->opt->session_out;
    if (!path)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0;
    for (size_t off = 0; ok && off < len;) {
        ssize_t n = write(fd, session + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0;
        off += ok ? (size_t)n : 0;
    }
    if (fd >= 0 && close(fd) != 0)
        ok = false;
    if (!ok)
        complain("ERR_INVALID_ARG_VALUE: --session-out %s: %s", path, strerror(errno));
}

static void t_keylog(dx_tls *t, const char *line, void *u)
{
    (void)t;
    relay *r = u;
    FILE *f = r->a->tls.keylog;
    if (f) {
        fprintf(f, "%s\n", line);
        fflush(f);
    }
}

static void t_trace(dx_tls *t, const char *text, void *u)
{
    (void)t, (void)u;
    emit_raw(text);
}

static void t_timeout(dx_tls *t, void *u)
{
    (void)t;
    relay *r = u;
    char p[32];
    notice("%sidle for %llu ms: closing", prefix(r, p, sizeof(p)),
           (unsigned long long)r->a->opt->idle_timeout);
    relay_stop(r);
}

static void t_handshake_error(dx_tls *t, const dx_error *err, void *u)
{
    (void)t;
    record(u, err, EXIT_TLS, "TLS handshake failed");
}

static const dx_tls_events tls_events = {
    .on_secure = t_secure,
    .on_session = t_session,
    .on_keylog = t_keylog,
    .on_trace = t_trace,
    .on_timeout = t_timeout,
    .on_handshake_error = t_handshake_error,
};

static int client_psk(dx_tls *t, const char *hint, dx_tls_psk *psk, void *user)
{
    (void)t, (void)hint;
    const options *o = user;
    memcpy(psk->identity, o->psk[0].identity, sizeof(psk->identity));
    memcpy(psk->key, o->psk[0].key, o->psk[0].key_len);
    psk->key_len = o->psk[0].key_len;
    return 0;
}

static bool is_ip(const char *host)
{
    unsigned char buf[16];
    return uv_inet_pton(AF_INET, host, buf) == 0 || uv_inet_pton(AF_INET6, host, buf) == 0;
}

/* The client's settings, before it starts. */
static int client_setup(relay *r, dx_tls *t)
{
    const options *o = r->a->opt;
    int rc = 0;
    const char *name = o->servername;
    if (!name && o->encrypted.kind == EP_TCP) {
        if (is_ip(o->encrypted.host))
            rc = dx_tls_set_host(t, o->encrypted.host);
        else
            name = o->encrypted.host;
    }
    if (rc == 0 && name)
        rc = dx_tls_set_servername(t, name);
    if (rc == 0)
        rc = dx_tls_set_reject_unauthorized(t, !o->insecure);
    if (rc == 0 && o->alpn)
        rc = dx_tls_set_alpn_protocols(t, (const char *const *)o->alpn);
    if (rc == 0 && r->a->tls.session)
        rc = dx_tls_set_session(t, r->a->tls.session, r->a->tls.session_len);
    if (rc == 0 && o->npsk)
        rc = dx_tls_set_psk_callback(t, client_psk, (void *)o);
    if (rc == 0 && o->request_ocsp)
        rc = dx_tls_set_ocsp(t, DX_TLS_OCSP_REQUEST | DX_TLS_OCSP_VERIFY);
    if (rc == 0 && o->handshake_timeout_set)
        rc = dx_tls_set_handshake_timeout(t, o->handshake_timeout);
    if (rc == 0)
        rc = dx_tls_set_allow_truncation(t, o->allow_truncation);
    if (rc == 0)
        rc = dx_tls_set_allow_half_open(t, true);
    return rc;
}

/* The TLS connection over the encrypted endpoint's stream s (taken). */
static void make_tls(relay *r, dx_stream *s)
{
    app *a = r->a;
    const options *o = a->opt;
    dx_tls *t = NULL;
    int rc;
    dx_stream_ref(s);
    r->transport = s;
    if (o->server) {
        rc = dx_tls_server_accept(a->tls.srv, s, &t); /* started; s is t's */
        if (rc == 0)
            dx_uv_tls_timer(a->loop, t); /* (DX_ESTATE if it failed at once) */
    } else {
        rc = dx_tls_new(a->tls.ctx, DX_TLS_CLIENT, &t);
        if (rc != 0)
            dx_stream_destroy(s);
        else if ((rc = dx_uv_tls_timer(a->loop, t)) == 0 && (rc = client_setup(r, t)) == 0)
            rc = dx_tls_attach(t, s); /* s is t's from here, also on failure */
        else
            dx_stream_destroy(s);
    }
    if (rc == 0) {
        dx_tls_set_events(t, &tls_events, r);
        if (o->idle_timeout)
            dx_tls_set_idle_timeout(t, o->idle_timeout);
        if (o->max_fragment)
            dx_tls_set_max_send_fragment(t, o->max_fragment);
        if (o->trace && (rc = dx_tls_set_trace(t, true)) == DX_ENOTSUP)
            complain("ENOTSUP: --trace: this OpenSSL was built without tracing");
        rc = 0;
    }
    if (rc != 0) {
        dx_tls_destroy(t);
        dx_error *e = dx_error_new(rc, NULL, "tls", "%s", dx_strerror(rc));
        record(r, e, EXIT_TLS, "TLS set-up");
        dx_error_free(e);
        if (r->s[SIDE_CLEAR] && !r->closed[SIDE_CLEAR])
            dx_stream_abort(r->s[SIDE_CLEAR]);
        else
            relay_done(r);
        return;
    }
    r->t = t;
    take(r, SIDE_ENC, dx_tls_upper(t));
    if (!o->server && !r->closed[SIDE_ENC])
        dx_tls_start(t);
}

/* ---- opening the endpoints ---------------------------------------------------------- */

static void opened(relay *r, int side, dx_stream *s, const dx_error *err)
{
    if (r->finishing) {
        dx_stream_destroy(s);
        return;
    }
    if (!s) {
        const endpoint *e = side == SIDE_CLEAR ? &r->a->opt->clear : &r->a->opt->encrypted;
        record(r, err, EXIT_TRANSPORT, e->text);
        int o = 1 - side;
        if (r->s[o] && !r->closed[o])
            dx_stream_abort(r->s[o]);
        else
            relay_done(r);
        return;
    }
    if (side == SIDE_ENC)
        make_tls(r, s);
    else
        take(r, SIDE_CLEAR, s);
    relay_advance(r);
}

static void clear_opened(void *arg, dx_stream *s, const dx_error *err)
{
    opened(arg, SIDE_CLEAR, s, err);
}

static void enc_opened(void *arg, dx_stream *s, const dx_error *err)
{
    opened(arg, SIDE_ENC, s, err);
}

/* The encrypted endpoint first (nothing is started for a connection that
 * cannot be made), then the cleartext one, then the pump. */
static void relay_advance(relay *r)
{
    if (r->finishing || r->stopping)
        return;
    const options *o = r->a->opt;
    if (!r->opened[SIDE_ENC]) {
        r->opened[SIDE_ENC] = true;
        r->inst[SIDE_ENC] = ep_open(r->a, &o->encrypted, enc_opened, r);
        return;
    }
    if (!r->s[SIDE_ENC] || r->closed[SIDE_ENC])
        return;
    if (!r->opened[SIDE_CLEAR]) {
        r->opened[SIDE_CLEAR] = true;
        r->inst[SIDE_CLEAR] = ep_open(r->a, &o->clear, clear_opened, r);
        return;
    }
    if (r->s[SIDE_CLEAR] && !r->joined && !r->closed[SIDE_CLEAR])
        join(r);
}

/* ---- life and end ----------------------------------------------------------------------- */

static void relay_free(uv_handle_t *h)
{
    free(h->data);
}

#define DRAIN_STEP_MS 10

static void finish(uv_timer_t *tm)
{
    relay *r = tm->data;
    app *a = r->a;
    char p[32];
    int status = EXIT_OK;
    /* A connection that ended well lets its transport write everything
     * (the last records, close_notify) before it is released: a stream
     * that is destroyed drops what it still holds. */
    unsigned st = r->transport ? dx_stream_state(r->transport) : DX_STREAM_CLOSED;
    if (!r->err && !(st & (DX_STREAM_FINISHED | DX_STREAM_CLOSED)) &&
        r->drained_ms < CLOSE_GRACE_MS) {
        r->drained_ms += DRAIN_STEP_MS;
        uv_timer_start(&r->timer, finish, DRAIN_STEP_MS, 0);
        return;
    }
    if (r->err) {
        char line[1024];
        status = r->err_status;
        error_line(line, sizeof(line), r->err, r->err_context);
        complain("%s%s", prefix(r, p, sizeof(p)), line);
    }
    note("%sclosed: %llu bytes out, %llu in", prefix(r, p, sizeof(p)),
         (unsigned long long)r->bytes[SIDE_CLEAR], (unsigned long long)r->bytes[SIDE_ENC]);
    ep_release(r->inst[SIDE_CLEAR]);
    ep_release(r->inst[SIDE_ENC]);
    dx_tls_destroy(r->t); /* with its transport */
    dx_stream_unref(r->transport);
    dx_stream_destroy(r->s[SIDE_CLEAR]);
    dx_error_free(r->err);
    if (r->prev)
        r->prev->next = r->next;
    else
        a->relays = r->next;
    if (r->next)
        r->next->prev = r->prev;
    a->nrelays--;
    uint64_t out = r->bytes[SIDE_CLEAR], in = r->bytes[SIDE_ENC];
    uv_close((uv_handle_t *)&r->timer, relay_free);
    app_relay_done(a, status, out, in);
}

static void relay_done(relay *r)
{
    if (r->finishing)
        return;
    r->finishing = true;
    r->lingering = false;
    uv_timer_start(&r->timer, finish, 0, 0);
}

relay *relay_new(app *a, int side, dx_stream *s, const char *peer)
{
    relay *r = calloc(1, sizeof(*r));
    if (!r) {
        complain("ENOMEM: out of memory");
        dx_stream_destroy(s);
        return NULL;
    }
    r->a = a;
    r->id = ++a->next_id;
    uv_timer_init(a->loop, &r->timer);
    r->timer.data = r;
    r->next = a->relays;
    if (a->relays)
        a->relays->prev = r;
    a->relays = r;
    a->nrelays++;
    char p[32];
    if (s) {
        snprintf(r->peer, sizeof(r->peer), "%s", peer && *peer ? peer : "a local client");
        note("%sconnection from %s", prefix(r, p, sizeof(p)), r->peer);
        if (side == SIDE_ENC)
            make_tls(r, s);
        else
            take(r, SIDE_CLEAR, s);
    }
    relay_advance(r);
    return r;
}

void relay_abort(relay *r)
{
    if (r->finishing)
        return;
    r->stopping = true;
    bool any = false;
    for (int i = 0; i < 2; i++)
        if (r->s[i] && !r->closed[i]) {
            any = true;
            dx_stream_abort(r->s[i]);
        }
    if (!any)
        relay_done(r);
}

void relay_stop(relay *r)
{
    if (r->finishing || r->stopping)
        return;
    dx_stream *up = r->s[SIDE_ENC];
    if (!r->secure || !up || r->closed[SIDE_ENC]) {
        relay_abort(r);
        return;
    }
    r->stopping = true;
    /* Whatever the cleartext side still sends is not wanted; the TLS side
     * flows, so that the peer's close_notify is read. */
    hold_on(r, SIDE_CLEAR, HOLD_STOP);
    hold_off(r, SIDE_ENC, HOLD_JOIN);
    if (dx_stream_state(up) & DX_STREAM_WRITABLE)
        dx_stream_end(up); /* close_notify */
    linger(r);
}

void relay_bytes(const relay *r, uint64_t *out, uint64_t *in)
{
    *out = r->bytes[SIDE_CLEAR];
    *in = r->bytes[SIDE_ENC];
}

relay *relay_next(const relay *r)
{
    return r->next;
}
