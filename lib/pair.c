/*
 * The in-memory pair: two streams joined by two bounded byte queues.
 *
 * q[d] holds the bytes written by end d for end 1-d. A write takes what
 * fits under the capacity and then pumps the peer: pump() pushes the queued
 * bytes into the peer's stream for as long as its consumer wants them, and
 * tells the writer when room frees up. pump() never runs twice at once for
 * one end; a nested request makes the running one loop again.
 */
#include "config.h"

#include <duplex/pair.h>

#include "alloc.h"
#include "bufq.h"
#include "stream_internal.h"

typedef struct pair_shared pair_shared;

typedef struct pair_end {
    pair_shared *p;
    int side;
    size_t max_chunk;
    bool held;          /* dx_pair_hold() */
    bool eof_injected;  /* dx_pair_inject_end() */
    bool shut;          /* this end ended its writing */
    bool closed;        /* this end closed */
    bool blocked;       /* a write of this end found the queue full */
    bool pumping;
    bool pump_again;
} pair_end;

struct pair_shared {
    dx_bufq q[2];
    size_t capacity;
    dx_stream *end[2]; /* NULL once that end is released */
    unsigned ends;     /* ends not yet released */
};

static const dx_stream_ops pair_ops;

static pair_end *end_of(dx_stream *s) { return dx_stream_impl(s); }

/* The end that reads what end e writes, or NULL once released. */
static dx_stream *peer_of(pair_end *e) { return e->p->end[1 - e->side]; }

/* Pushes q[1 - r->side] into reader r's stream. */
static void pump(dx_stream *rs)
{
    pair_end *r = end_of(rs);
    if (r->pumping) {
        r->pump_again = true;
        return;
    }
    pair_shared *p = r->p;
    dx_bufq *q = &p->q[1 - r->side];
    dx_stream *ws = p->end[1 - r->side];
    r->pumping = true;
    dx_stream_ref(rs);
    dx_stream_ref(ws);
    do {
        r->pump_again = false;
        while (q->bytes && !r->closed && !r->held &&
               dx_stream_wants_read(rs)) {
            /* The chunk leaves the queue while it is pushed: the reader
             * may close the pair from its callback, which clears it. */
            dx_chunk *c = dx_bufq_pop(q);
            size_t n = c->end - c->start;
            if (r->max_chunk && n > r->max_chunk)
                n = r->max_chunk;
            int rc = dx_stream_push(rs, c->data + c->start, n);
            c->start += n;
            if (c->start < c->end && !r->closed)
                dx_bufq_push_front(q, c);
            else
                dx_free(c);
            if (rc < 0)
                break;
            pair_end *w = ws ? end_of(ws) : NULL;
            if (w && w->blocked && !w->closed) {
                w->blocked = false;
                dx_stream_writable(ws);
            }
        }
        if (!r->closed && !r->held && !q->bytes) {
            pair_end *w = ws ? end_of(ws) : NULL;
            if (r->eof_injected || !w || w->shut || w->closed)
                dx_stream_push_end(rs);
        }
    } while (r->pump_again && !r->closed);
    r->pumping = false;
    dx_stream_unref(ws);
    dx_stream_unref(rs);
}

static int pair_write(dx_stream *s, const dx_iov *iov, size_t n,
                      size_t *taken)
{
    pair_end *e = end_of(s);
    pair_shared *p = e->p;
    dx_stream *rs = peer_of(e);
    if (!rs || end_of(rs)->closed)
        return DX_EPIPE;
    size_t total;
    if (dx_iov_total(iov, n, &total) != 0)
        return DX_EINVAL;
    if (end_of(rs)->eof_injected) {
        *taken = total; /* the reader saw EOF: the bytes go nowhere */
        return 0;
    }
    dx_bufq *q = &p->q[e->side];
    size_t room = p->capacity > q->bytes ? p->capacity - q->bytes : 0;
    size_t k = total < room ? total : room;
    if (k && dx_bufq_appendv(q, iov, n, 0, k) != 0)
        return DX_ENOMEM;
    *taken = k;
    if (k < total)
        e->blocked = true;
    if (k)
        pump(rs);
    return 0;
}

static int pair_shutdown(dx_stream *s)
{
    pair_end *e = end_of(s);
    e->shut = true;
    dx_stream *rs = peer_of(e);
    if (rs)
        pump(rs);
    return 0;
}

static void pair_read_start(dx_stream *s) { pump(s); }

static void pair_close(dx_stream *s)
{
    pair_end *e = end_of(s);
    pair_shared *p = e->p;
    e->closed = true;
    /* What the peer sent us is dropped; what we sent it stays for it. */
    dx_bufq_clear(&p->q[1 - e->side]);
    dx_stream *ps = peer_of(e);
    if (!ps)
        return;
    pair_end *pe = end_of(ps);
    dx_stream_ref(ps);
    pump(ps); /* delivers the rest, then EOF */
    if (pe->blocked && !pe->closed) {
        pe->blocked = false;
        dx_stream_writable(ps); /* its pending writes now fail: EPIPE */
    }
    dx_stream_unref(ps);
}

static void pair_release(dx_stream *s)
{
    pair_end *e = end_of(s);
    pair_shared *p = e->p;
    p->end[e->side] = NULL;
    if (--p->ends == 0) {
        dx_bufq_clear(&p->q[0]);
        dx_bufq_clear(&p->q[1]);
        dx_free(p);
    }
}

static const dx_stream_ops pair_ops = {
    .name = "pair",
    .write = pair_write,
    .shutdown = pair_shutdown,
    .read_start = pair_read_start,
    .close = pair_close,
    .release = pair_release,
};

int dx_pair_new(const dx_pair_opts *opts, dx_stream **a, dx_stream **b)
{
    if (!a || !b)
        return DX_EINVAL;
    *a = *b = NULL;
    pair_shared *p = dx_calloc(1, sizeof(*p));
    if (!p)
        return DX_ENOMEM;
    p->capacity = opts && opts->capacity ? opts->capacity
                                         : DX_PAIR_DEFAULT_CAPACITY;
    dx_stream *s[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        int rc = dx_stream_new(&pair_ops, sizeof(pair_end), &s[i]);
        if (rc != 0) {
            if (s[0])
                dx_stream_destroy(s[0]); /* releases p with it */
            else
                dx_free(p);
            return rc;
        }
        pair_end *e = end_of(s[i]);
        e->p = p;
        e->side = i;
        e->max_chunk = opts ? opts->max_chunk : 0;
        dx_stream_set_max_delivery(s[i], e->max_chunk);
        p->end[i] = s[i];
        p->ends++;
    }
    *a = s[0];
    *b = s[1];
    return 0;
}

bool dx_is_pair(const dx_stream *s)
{
    return s && dx_stream_kind(s) == pair_ops.name;
}

static pair_end *checked(dx_stream *s)
{
    return dx_is_pair(s) ? end_of(s) : NULL;
}

int dx_pair_set_max_chunk(dx_stream *s, size_t max_chunk)
{
    pair_end *e = checked(s);
    if (!e)
        return DX_EINVAL;
    e->max_chunk = max_chunk;
    dx_stream_set_max_delivery(s, max_chunk);
    return 0;
}

int dx_pair_hold(dx_stream *s)
{
    pair_end *e = checked(s);
    if (!e)
        return DX_EINVAL;
    e->held = true;
    return 0;
}

int dx_pair_release(dx_stream *s)
{
    pair_end *e = checked(s);
    if (!e)
        return DX_EINVAL;
    e->held = false;
    pump(s);
    return 0;
}

int dx_pair_inject_end(dx_stream *s)
{
    pair_end *e = checked(s);
    if (!e)
        return DX_EINVAL;
    if (e->closed)
        return DX_EDESTROYED;
    /* Bytes already sent are delivered first, then the end; what the peer
     * writes from now on is discarded (pair_write). */
    e->eof_injected = true;
    pump(s);
    return 0;
}

int dx_pair_inject_error(dx_stream *s, int code)
{
    pair_end *e = checked(s);
    if (!e || code >= 0)
        return DX_EINVAL;
    if (e->closed)
        return DX_EDESTROYED;
    dx_stream_fail(s, code, NULL, "%s (injected)", dx_strerror(code));
    return 0;
}

int dx_pair_inject_destroy(dx_stream *s)
{
    pair_end *e = checked(s);
    if (!e)
        return DX_EINVAL;
    if (e->closed)
        return DX_EDESTROYED;
    dx_stream_abort(s);
    return 0;
}
