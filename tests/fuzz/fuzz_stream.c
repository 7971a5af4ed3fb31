/*
 * Fuzz target: the stream API driven by arbitrary call sequences. Two
 * stream ends X and Y are connected one of three ways, chosen by the
 * input: a memory pair; two memory pairs joined by a link; or the
 * cleartext sides of a TLS client and server over a memory pair. The rest
 * of the input is a program of calls on X and Y (write, writev, end,
 * destroy, pause, resume, cork, uncork, unshift, marks, limits), on the
 * memory pairs underneath (hold, release, chunk size, and the injected
 * faults: EOF, error, destroyed transport), and of calls made from inside
 * the event callbacks (destroy, write, end).
 *
 * Every event is checked against the stream contract (stream.h): no event
 * after on_close, on_close exactly once, on_error at most once and before
 * on_close, no data after on_end, and the bytes that arrive are those
 * written, in order. When nothing failed or was cut, everything written
 * arrives. A breach aborts, as a crash does.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

enum { M_PAIR, M_LINK, M_TLS, M_COUNT };

typedef struct end {
    dx_stream *s;        /* the end under test; NULL once destroyed */
    int gone;            /* handle released */
    unsigned closes, errors, ends, drains, finishes;
    uint64_t sent;       /* bytes accepted by writes on this end */
    uint64_t offered;    /* the most bytes ever handed to writes (a failed
                          * write may have delivered part of its bytes) */
    uint64_t received;   /* bytes delivered to this end's consumer */
    int corks;
    int mixed;           /* unshifted bytes were delivered: no byte check */
    char destroy_on;     /* destroy from inside this event ('d','e','r','f','x','c') */
    int echo;            /* write back what arrives */
    int end_on_end;      /* end when the peer ends */
    struct end *peer;
} end;

static struct {
    int mode;
    end x, y;
    dx_stream *under[2]; /* pair ends to inject faults on */
    dx_stream *extra[2]; /* pair ends owned here besides X and Y (link mode) */
    dx_link *link;
    dx_tls *tc, *ts;
    dx_tls_ctx *cc, *sc;
    int faulted;         /* something cut the exchange short */
} g;

static uint8_t byte_at(uint64_t i)
{
    return (uint8_t)(i * 131 + (i >> 7) + 7);
}

static void breach(const char *what)
{
    fprintf(stderr, "stream contract breached: %s\n", what);
    abort();
}

static void do_write(end *e, size_t n, int vec);

static void release_end(end *e)
{
    if (e->gone)
        return;
    e->gone = 1;
    /* for a TLS connection's stream this aborts the connection, which
     * keeps owning it */
    dx_stream_destroy(e->s);
}

static void maybe_destroy(end *e, char ev)
{
    if (e->destroy_on == ev && !e->gone) {
        e->destroy_on = 0;
        g.faulted = 1;
        release_end(e);
    }
}

static void ev_data(dx_stream *s, const uint8_t *p, size_t n, void *u)
{
    (void)s;
    end *e = u;
    if (e->closes)
        breach("data after close");
    if (e->ends)
        breach("data after end");
    if (n == 0)
        breach("empty data event");
    if (!e->mixed && !e->peer->mixed) {
        for (size_t i = 0; i < n; i++)
            if (p[i] != byte_at(e->received + i))
                breach("bytes out of order");
    }
    e->received += n;
    if (e->mixed)
        ; /* the count includes unshifted bytes */
    else if (e->received > e->peer->offered)
        breach("more bytes than were written");
    /* both ends echoing would play ping-pong for ever: up to a bound */
    if (e->echo && !e->gone && e->sent < 262144)
        do_write(e, n, 0);
    maybe_destroy(e, 'd');
}

static void ev_end(dx_stream *s, void *u)
{
    end *e = u;
    if (e->closes)
        breach("end after close");
    if (e->ends++)
        breach("two ends");
    if (e->end_on_end && !e->gone)
        (void)dx_stream_end(s);
    maybe_destroy(e, 'e');
}

static void ev_drain(dx_stream *s, void *u)
{
    (void)s;
    end *e = u;
    if (e->closes)
        breach("drain after close");
    e->drains++;
    maybe_destroy(e, 'r');
}

static void ev_finish(dx_stream *s, void *u)
{
    (void)s;
    end *e = u;
    if (e->closes)
        breach("finish after close");
    if (e->finishes++)
        breach("two finishes");
    maybe_destroy(e, 'f');
}

static void ev_error(dx_stream *s, const dx_error *err, void *u)
{
    (void)s;
    end *e = u;
    if (!err)
        breach("error event without an error");
    if (e->closes)
        breach("error after close");
    if (e->errors++)
        breach("two errors");
    g.faulted = 1;
    maybe_destroy(e, 'x');
}

static void ev_close(dx_stream *s, void *u)
{
    (void)s;
    end *e = u;
    if (e->closes++)
        breach("two closes");
    maybe_destroy(e, 'c');
}

static const dx_stream_events events = {ev_data, ev_end, ev_drain, ev_finish, ev_error, ev_close};

static void link_done(dx_link *l, const dx_error *err, void *u)
{
    (void)l;
    (void)err;
    (void)u;
}

static void setup(int mode, size_t capacity, size_t max_chunk)
{
    memset(&g, 0, sizeof(g));
    g.mode = mode;
    g.x.peer = &g.y;
    g.y.peer = &g.x;
    dx_pair_opts o = {.capacity = capacity, .max_chunk = max_chunk};
    dx_stream *a, *b;
    if (dx_pair_new(&o, &a, &b) != 0)
        abort();
    if (mode == M_PAIR) {
        g.x.s = a;
        g.y.s = b;
        g.under[0] = a;
        g.under[1] = b;
    } else if (mode == M_LINK) {
        dx_stream *c, *d;
        if (dx_pair_new(&o, &c, &d) != 0)
            abort();
        g.x.s = a;
        g.y.s = d;
        g.under[0] = b;
        g.under[1] = c;
        if (dx_link_new(b, c, link_done, NULL, &g.link) != 0)
            abort();
    } else {
        fz_rand_state = FZ_SEED_CLIENT;
        g.cc = fz_ctx(0, 0);
        g.sc = fz_ctx(1, 0);
        if (dx_tls_new(g.cc, DX_TLS_CLIENT, &g.tc) != 0 ||
            dx_tls_new(g.sc, DX_TLS_SERVER, &g.ts) != 0)
            abort();
        dx_tls_set_clock(g.tc, fz_clock, NULL);
        dx_tls_set_clock(g.ts, fz_clock, NULL);
        dx_tls_set_allow_half_open(g.tc, true);
        dx_tls_set_allow_half_open(g.ts, true);
        g.under[0] = a;
        g.under[1] = b;
        if (dx_tls_attach(g.tc, a) != 0 || dx_tls_attach(g.ts, b) != 0)
            abort();
        g.x.s = dx_tls_upper(g.tc);
        g.y.s = dx_tls_upper(g.ts);
    }
    dx_stream_set_events(g.x.s, &events, &g.x);
    dx_stream_set_events(g.y.s, &events, &g.y);
    if (mode == M_TLS) {
        dx_tls_start(g.ts);
        dx_tls_start(g.tc);
    }
}

static void teardown(void)
{
    if (g.mode == M_TLS) {
        dx_tls_destroy(g.tc);
        dx_tls_destroy(g.ts);
        dx_tls_ctx_unref(g.cc);
        dx_tls_ctx_unref(g.sc);
        g.x.gone = g.y.gone = 1;
    } else {
        release_end(&g.x);
        release_end(&g.y);
        dx_link_destroy(g.link);
    }
    if (g.x.closes != 1 || g.y.closes != 1)
        breach("a stream did not close exactly once");
}

static const int codes[] = {DX_EIO, DX_EPIPE, DX_ECONNRESET, DX_ETIMEDOUT, DX_ENOMEM};

/* Writes n bytes of e's stream, in one write or as three buffers. */
static void do_write(end *e, size_t n, int vec)
{
    /* its own buffer: callbacks of this write may write too */
    if (n > 70000)
        n = 70000;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        abort();
    /* A write delivers before it returns, and callbacks it causes may
     * write on this end too: the bytes' place in the stream is taken
     * first. */
    uint64_t start = e->sent;
    e->sent += n;
    if (e->offered < e->sent)
        e->offered = e->sent;
    for (size_t i = 0; i < n; i++)
        buf[i] = byte_at(start + i);
    int rc;
    if (vec) {
        dx_iov iov[3] = {{buf, n / 3}, {buf + n / 3, n / 3}, {buf + 2 * (n / 3), n - 2 * (n / 3)}};
        rc = dx_stream_writev(e->s, iov, 3);
    } else {
        rc = dx_stream_write(e->s, buf, n);
    }
    if (rc == DX_ENOBUFS) {
        /* refused before anything was delivered: the place is free again */
        e->sent = start;
    } else if (rc != 0 && rc != DX_FULL) {
        g.faulted = 1;
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    fz_now_ms = 1000;
    int mode = data[0] % M_COUNT;
    size_t capacity = (size_t)data[1] * 257; /* 0: the default */
    size_t max_chunk = data[2];
    setup(mode, capacity, max_chunk);
    size_t i = 3;
    while (i + 1 < size) {
        unsigned op = data[i], arg = data[i + 1];
        i += 2;
        end *e = (op & 1) ? &g.y : &g.x;
        dx_stream *under = g.under[(op & 1)];
        op >>= 1;
        if (e->gone && (op % 26 < 16 || g.mode == M_PAIR))
            continue;
        switch (op % 26) {
        case 0: do_write(e, (size_t)arg * arg + 1, 0); break;
        case 1: do_write(e, (size_t)arg * 16, 1); break;
        case 2: (void)dx_stream_end(e->s); break;
        case 3: g.faulted = 1; release_end(e); break;
        case 4: dx_stream_pause(e->s); break;
        case 5: dx_stream_resume(e->s); break;
        case 6: dx_stream_cork(e->s); e->corks++; break;
        case 7: dx_stream_uncork(e->s); if (e->corks) e->corks--; break;
        case 8: {
            uint8_t b[16];
            memset(b, arg, sizeof(b));
            e->mixed = 1; /* delivered before the call returns */
            (void)dx_stream_unshift(e->s, b, 1 + arg % 16);
            break;
        }
        case 9: (void)dx_stream_set_high_water(e->s, (size_t)arg * 64, (size_t)arg * 128); break;
        case 10: (void)dx_stream_set_write_limit(e->s, (size_t)arg * 1024); break;
        case 11: e->echo = arg & 1; e->end_on_end = (arg >> 1) & 1; break;
        case 12: e->destroy_on = "derfxc"[arg % 6]; break;
        case 13: g.faulted = 1; dx_stream_abort(e->s); break;
        case 14:
            g.faulted = 1;
            e->gone = 1;
            dx_stream_destroy_with_error(e->s, dx_error_new(codes[arg % 5], NULL, "fuzz", "fuzz"));
            break;
        case 15: (void)dx_stream_write_buffered(e->s); (void)dx_stream_read_buffered(e->s);
                 (void)dx_stream_state(e->s); (void)dx_stream_error(e->s); break;
        /* the memory pairs underneath: allowed while their owner lives */
        case 16: if (!under) break; g.faulted = 1; (void)dx_pair_inject_end(under); break;
        case 17: if (!under) break; g.faulted = 1; (void)dx_pair_inject_error(under, codes[arg % 5]); break;
        case 18: if (!under) break; g.faulted = 1; (void)dx_pair_inject_destroy(under); break;
        case 19: (void)dx_pair_hold(under); break;
        case 20: (void)dx_pair_release(under); break;
        case 21: (void)dx_pair_set_max_chunk(under, arg); break;
        case 22:
            if (g.mode == M_TLS) {
                fz_now_ms += (uint64_t)arg * 1000;
                dx_tls_check_timeouts((op & 1) ? g.ts : g.tc);
            }
            break;
        case 23:
            if (g.mode == M_TLS)
                (void)dx_tls_key_update((op & 1) ? g.ts : g.tc, arg & 1);
            break;
        case 24:
            if (g.mode == M_TLS)
                (void)dx_tls_set_max_send_fragment((op & 1) ? g.ts : g.tc, 512 + (size_t)arg * 60);
            break;
        case 25:
            if (g.mode == M_LINK && g.link) {
                g.faulted = 1;
                dx_link_destroy(g.link);
                g.link = NULL;
                g.under[0] = g.under[1] = NULL;
            }
            break;
        }
    }
    /* Let everything flow, then check that nothing was lost. */
    for (int k = 0; k < 2; k++) {
        end *e = k ? &g.y : &g.x;
        if (g.under[k] && !(g.mode == M_PAIR && e->gone))
            (void)dx_pair_release(g.under[k]);
        /* a callback may destroy the stream at any of these calls */
        while (!e->gone && e->corks > 0) {
            e->corks--;
            dx_stream_uncork(e->s);
        }
        if (!e->gone)
            dx_stream_resume(e->s);
    }
    if (!g.faulted && !g.x.mixed && !g.y.mixed && !g.x.gone && !g.y.gone &&
        !g.x.errors && !g.y.errors && !g.x.closes && !g.y.closes &&
        (g.x.received != g.y.sent || g.y.received != g.x.sent)) {
        fprintf(stderr, "x sent %llu, y received %llu; y sent %llu, x received %llu\n",
                (unsigned long long)g.x.sent, (unsigned long long)g.y.received,
                (unsigned long long)g.y.sent, (unsigned long long)g.x.received);
        breach("bytes lost");
    }
    teardown();
    return 0;
}
