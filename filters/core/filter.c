/*
 * The core of the byte filters (include/duplex/filter.h): two streams and,
 * per direction, a queue of the bytes taken from the writing stream and
 * not yet delivered by the other.
 *
 * Direction i (0: DX_FILTER_DOWN, 1: DX_FILTER_UP) reads what is written
 * to stream s[i] and delivers it on s[1 - i] (s[0] is the upper stream,
 * s[1] the lower). A write takes what fits under the capacity into
 * segments, each stamped with when it may go (the clock at the write plus
 * the latency; with a rate, when the line starts sending it, byte by byte
 * after that); the faults of the direction are applied as the bytes are
 * taken (flips, drops, injected bytes, and the points where a stall, a
 * truncation, a hang-up or a reset happens, kept as empty segments that
 * act when delivery reaches them). pump() delivers what is due, cut at
 * the fragment boundaries, while the reader wants data, and tells the
 * writer when room freed up. pump() never runs twice at once for one
 * direction; a nested request makes the running one loop again. The
 * queues are freed only outside pump(), since a delivery may read a
 * segment while its consumer closes the filter.
 */
#include "config.h"

#include <duplex/link.h>

#include <string.h>
#include <time.h>

#include "alloc.h"
#include "errors.h"
#include "filter_internal.h"
#include "stream_internal.h"

enum { ACT_NONE, ACT_STALL, ACT_TRUNCATE, ACT_END, ACT_RESET };

typedef struct seg {
    struct seg *next;
    uint64_t t_ms;    /* with a rate: when the line starts sending it (whole
                       * ms), else when it was taken */
    uint64_t t_frac;  /* with a rate: plus t_frac / rate ms */
    uint64_t latency; /* then each byte waits this long */
    size_t pos, len;  /* bytes delivered, bytes in all */
    int action;       /* ACT_*: what happens once delivery reaches it */
    uint64_t action_ms, action_off;
    uint8_t data[];
} seg;

typedef struct fdir {
    dx_filter_conf conf;
    seg *head, *tail;
    size_t held;         /* bytes in the segments, not yet delivered */
    uint64_t in_off;     /* bytes taken from the writer */
    uint64_t out_off;    /* bytes delivered */
    uint64_t next_cut;   /* the next fragment boundary (an out offset) */
    uint64_t tx_ms, tx_frac; /* with a rate: the line is busy until then */
    uint64_t drop_left;  /* bytes still to drop */
    uint64_t stall_until; /* 0: not stalled; UINT64_MAX: for ever */
    uint8_t flip;        /* XOR for the next byte taken */
    dx_fault *faults;    /* by offset; the first next_fault were applied */
    size_t nfaults, fault_cap, next_fault;
    bool blocked;        /* a write found no room */
    bool in_ended;       /* the writer ended */
    bool discard;        /* past a truncation: what comes is swallowed */
    bool eof_after;      /* the link hung up: end after what is held */
    bool out_ended;      /* the end was delivered */
    bool out_closed;     /* the delivering stream closed */
    bool pumping, pump_again;
} fdir;

struct dx_filter {
    unsigned refs;
    int kind;
    dx_stream *s[2];
    fdir d[2];
    dx_link *link;
    size_t capacity;
    dx_filter_clock_fn clock;
    void *clock_arg;
    void (*hook)(dx_filter *f, uint64_t when, void *arg);
    void *hook_arg;
    uint64_t told;
    dx_tap_fn tap;
    void *tap_user;
    uint64_t rng;
    bool dead;   /* dx_filter_destroy() was called */
    bool closed; /* both streams closed */
};

typedef struct side {
    dx_filter *f;
    int j; /* 0 upper, 1 lower */
} side;

static const char *const kind_names[DX_FK_COUNT] = {"tap", "fragment", "delay", "throttle",
                                                    "fault"};

static void pump(dx_filter *f, int i);

static void filter_ref(dx_filter *f) { f->refs++; }

static void clear_queue(fdir *d)
{
    for (seg *g = d->head, *n; g; g = n) {
        n = g->next;
        dx_free(g);
    }
    d->head = d->tail = NULL;
    d->held = 0;
}

static void filter_unref(dx_filter *f)
{
    if (--f->refs > 0)
        return;
    for (int i = 0; i < 2; i++) {
        clear_queue(&f->d[i]);
        for (size_t k = 0; k < f->d[i].nfaults; k++)
            dx_free((void *)f->d[i].faults[k].data);
        dx_free(f->d[i].faults);
    }
    dx_free(f);
    dx_live_dec();
}

static dx_filter *filter_of(dx_stream *s) { return ((side *)dx_stream_impl(s))->f; }

/* ---- the clock and the deadline ------------------------------------- */

static uint64_t mono_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Filters that hold bytes back read the clock; the others never do. */
static bool timed(const dx_filter *f) { return f->kind >= DX_FK_DELAY; }

static uint64_t now_of(const dx_filter *f) { return timed(f) ? f->clock(f->clock_arg) : 0; }

/* Bytes of g that are due at now. */
static size_t ready(const fdir *d, const seg *g, uint64_t now)
{
    size_t left = g->len - g->pos;
    if (now < g->t_ms || now - g->t_ms < g->latency)
        return 0;
    uint64_t rate = d->conf.rate;
    if (!rate)
        return left;
    /* Byte c - 1 is done once t_frac + c * 1000 <= e * rate. */
    uint64_t e = now - g->t_ms - g->latency;
    if (e > ((uint64_t)g->len * 1000u + g->t_frac) / rate + 1)
        return left;
    uint64_t budget = e * rate;
    if (budget < g->t_frac)
        return 0;
    uint64_t c = (budget - g->t_frac) / 1000u;
    if (c > g->len)
        c = g->len;
    return c > g->pos ? (size_t)(c - g->pos) : 0;
}

/* When the next byte of g falls due. */
static uint64_t release_of(const fdir *d, const seg *g)
{
    uint64_t rate = d->conf.rate;
    if (!rate)
        return g->t_ms + g->latency;
    uint64_t need = g->t_frac + (uint64_t)(g->pos + 1) * 1000u;
    return g->t_ms + g->latency + (need + rate - 1) / rate;
}

static uint64_t next_deadline(const dx_filter *f)
{
    uint64_t best = DX_FILTER_NO_DEADLINE;
    if (f->closed || f->dead || !timed(f))
        return best;
    for (int i = 0; i < 2; i++) {
        const fdir *d = &f->d[i];
        if (d->out_closed || d->out_ended || !d->head)
            continue;
        if (d->stall_until) {
            if (d->stall_until < best)
                best = d->stall_until;
            continue;
        }
        const seg *g = d->head;
        if (g->pos == g->len || !dx_stream_wants_read(f->s[1 - i]))
            continue;
        uint64_t r = release_of(d, g);
        if (r < best)
            best = r;
    }
    return best;
}

static void tell_deadline(dx_filter *f)
{
    if (!f->hook)
        return;
    uint64_t d = next_deadline(f);
    if (d == f->told)
        return;
    f->told = d;
    f->hook(f, d, f->hook_arg);
}

/* The last word to the hook: no deadline, ever again. */
static void hook_last(dx_filter *f)
{
    if (!f->hook)
        return;
    void (*fn)(dx_filter *, uint64_t, void *) = f->hook;
    f->hook = NULL;
    fn(f, DX_FILTER_NO_DEADLINE, f->hook_arg);
}

/* ---- taking bytes -------------------------------------------------------- */

/* Appends a segment of len bytes (data, or random bytes when data is
 * NULL; none for an action), scheduled at now. */
static int queue_seg(dx_filter *f, fdir *d, const uint8_t *data, size_t len, int action,
                     uint64_t now, seg **out)
{
    seg *g = dx_malloc(sizeof(*g) + len);
    if (!g)
        return DX_ENOMEM;
    memset(g, 0, sizeof(*g));
    g->len = len;
    g->action = action;
    g->latency = d->conf.latency_ms;
    if (data)
        memcpy(g->data, data, len);
    else
        for (size_t k = 0; k < len; k++)
            g->data[k] = (uint8_t)dx_splitmix64(&f->rng);
    uint64_t rate = d->conf.rate;
    if (rate && len) {
        if (now > d->tx_ms) {
            d->tx_ms = now;
            d->tx_frac = 0;
        }
        g->t_ms = d->tx_ms;
        g->t_frac = d->tx_frac;
        uint64_t fr = d->tx_frac + (uint64_t)len * 1000u;
        d->tx_ms += fr / rate;
        d->tx_frac = fr % rate;
    } else {
        g->t_ms = now;
    }
    if (d->tail)
        d->tail->next = g;
    else
        d->head = g;
    d->tail = g;
    d->held += len;
    if (out)
        *out = g;
    return 0;
}

/* Applies the faults placed at the direction's current input offset. */
static int apply_faults(dx_filter *f, fdir *d, uint64_t now)
{
    while (d->next_fault < d->nfaults && d->faults[d->next_fault].offset == d->in_off) {
        const dx_fault *ft = &d->faults[d->next_fault++];
        if (d->discard)
            continue;
        int rc = 0;
        seg *g = NULL;
        switch (ft->kind) {
        case DX_FAULT_FLIP:
            d->flip ^= ft->mask ? ft->mask
                                : (uint8_t)(1u << (dx_splitmix64(&f->rng) % 8u));
            break;
        case DX_FAULT_DROP:
            d->drop_left += ft->len;
            break;
        case DX_FAULT_INJECT:
            rc = queue_seg(f, d, ft->data, (size_t)ft->len, ACT_NONE, now, NULL);
            break;
        default: {
            int act = ft->kind == DX_FAULT_STALL      ? ACT_STALL
                      : ft->kind == DX_FAULT_TRUNCATE ? ACT_TRUNCATE
                      : ft->kind == DX_FAULT_END      ? ACT_END
                                                      : ACT_RESET;
            rc = queue_seg(f, d, NULL, 0, act, now, &g);
            if (rc == 0) {
                g->action_ms = ft->ms;
                g->action_off = ft->offset;
                if (act != ACT_STALL)
                    d->discard = true;
            }
            break;
        }
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

static uint64_t next_fault_offset(const fdir *d)
{
    return d->next_fault < d->nfaults ? d->faults[d->next_fault].offset : UINT64_MAX;
}

/* The write operation of stream s[i]: direction i takes what fits. */
static int take(dx_filter *f, int i, const dx_iov *iov, size_t n, size_t *taken)
{
    fdir *d = &f->d[i];
    if (d->out_closed && !d->discard)
        return DX_EPIPE; /* the reader is gone (during its close) */
    uint64_t now = now_of(f);
    int rc = 0;
    for (size_t k = 0; k < n && rc == 0; k++) {
        const uint8_t *p = iov[k].base;
        size_t left = iov[k].len;
        while (left) {
            if ((rc = apply_faults(f, d, now)) != 0)
                break;
            if (d->discard) {
                *taken += left;
                d->in_off += left;
                left = 0;
                break;
            }
            uint64_t lim = next_fault_offset(d) - d->in_off;
            size_t m = left < lim ? left : (size_t)lim;
            if (d->drop_left) {
                if (m > d->drop_left)
                    m = (size_t)d->drop_left;
                d->drop_left -= m;
                d->flip = 0;
            } else {
                size_t room = f->capacity > d->held ? f->capacity - d->held : 0;
                if (m > room)
                    m = room;
                if (m == 0) {
                    d->blocked = true;
                    goto out;
                }
                seg *g;
                if ((rc = queue_seg(f, d, p, m, ACT_NONE, now, &g)) != 0)
                    break;
                g->data[0] ^= d->flip;
                d->flip = 0;
            }
            d->in_off += m;
            *taken += m;
            p += m;
            left -= m;
        }
    }
    if (rc == 0)
        rc = apply_faults(f, d, now); /* those placed right after these bytes */
out:
    if (rc == 0)
        pump(f, i);
    return rc;
}

/* ---- delivering ------------------------------------------------------------ */

static size_t draw_cut(dx_filter *f, const fdir *d)
{
    size_t lo = d->conf.cut_min, hi = d->conf.cut_max;
    if (hi <= lo)
        return lo;
    return lo + (size_t)(dx_splitmix64(&f->rng) % (uint64_t)(hi - lo + 1));
}

static void act(dx_filter *f, int i, const seg *g, uint64_t now)
{
    fdir *d = &f->d[i];
    switch (g->action) {
    case ACT_STALL:
        /* 0, or past the end of the clock: for ever. */
        d->stall_until = g->action_ms && g->action_ms < UINT64_MAX - now ? now + g->action_ms
                                                                          : UINT64_MAX;
        break;
    case ACT_END: {
        fdir *o = &f->d[1 - i];
        o->discard = true;
        o->eof_after = true;
        d->eof_after = true;
        pump(f, 1 - i);
        break;
    }
    case ACT_TRUNCATE:
        d->eof_after = true;
        break;
    case ACT_RESET: {
        dx_error *e = dx_error_new(DX_ECONNRESET, "ECONNRESET", kind_names[f->kind],
                                   "connection reset (fault after byte %llu)",
                                   (unsigned long long)g->action_off);
        dx_stream_fail_with(f->s[1 - i], e);
        break;
    }
    default:
        break;
    }
}

static unsigned dir_bit(int i) { return i == 0 ? DX_FILTER_DOWN : DX_FILTER_UP; }

static void pump(dx_filter *f, int i)
{
    fdir *d = &f->d[i];
    if (d->pumping) {
        d->pump_again = true;
        return;
    }
    dx_stream *in = f->s[i], *out = f->s[1 - i];
    d->pumping = true;
    filter_ref(f);
    dx_stream_ref(in);
    dx_stream_ref(out);
    do {
        d->pump_again = false;
        while (!d->out_closed && !d->out_ended && d->head) {
            seg *g = d->head;
            if (g->pos == g->len) {
                d->head = g->next;
                if (!d->head)
                    d->tail = NULL;
                if (g->action)
                    act(f, i, g, now_of(f));
                dx_free(g);
                continue;
            }
            if (d->stall_until) {
                if (now_of(f) < d->stall_until)
                    break;
                d->stall_until = 0;
            }
            if (!dx_stream_wants_read(out))
                break;
            size_t n = ready(d, g, now_of(f));
            if (!n)
                break;
            if (d->conf.cut_min) {
                while (d->next_cut <= d->out_off)
                    d->next_cut += draw_cut(f, d);
                if (n > d->next_cut - d->out_off)
                    n = (size_t)(d->next_cut - d->out_off);
            }
            const uint8_t *p = g->data + g->pos;
            uint64_t off = d->out_off;
            g->pos += n;
            d->held -= n;
            d->out_off += n;
            if (f->tap) {
                f->tap(f, dir_bit(i), off, p, n, f->tap_user);
                if (d->out_closed)
                    break;
            }
            dx_stream_push(out, p, n);
            if (d->blocked && !(dx_stream_state(in) & DX_STREAM_CLOSED)) {
                d->blocked = false;
                dx_stream_writable(in);
            }
        }
        if (!d->out_closed && !d->out_ended && !d->head && (d->in_ended || d->eof_after)) {
            d->out_ended = true;
            if (f->tap)
                f->tap(f, dir_bit(i), d->out_off, NULL, 0, f->tap_user);
            if (!d->out_closed)
                dx_stream_push_end(out);
        }
    } while (d->pump_again && !d->out_closed);
    d->pumping = false;
    if (d->out_closed)
        clear_queue(d);
    tell_deadline(f);
    dx_stream_unref(out);
    dx_stream_unref(in);
    filter_unref(f);
}

/* ---- the stream operations ---------------------------------------------- */

static int side_write(dx_stream *s, const dx_iov *iov, size_t n, size_t *taken)
{
    side *sd = dx_stream_impl(s);
    return take(sd->f, sd->j, iov, n, taken);
}

static int side_shutdown(dx_stream *s)
{
    side *sd = dx_stream_impl(s);
    sd->f->d[sd->j].in_ended = true;
    pump(sd->f, sd->j);
    return 0;
}

static void side_read_start(dx_stream *s)
{
    side *sd = dx_stream_impl(s);
    pump(sd->f, 1 - sd->j);
}

/*
 * Stream s[j] closed. What it was to deliver goes nowhere now. The other
 * stream: fails with the same error, is aborted if s[j] was, or, when s[j]
 * closed cleanly (its end delivered and its own end taken), delivers what
 * direction j still holds, then the end.
 */
static void side_close(dx_stream *s)
{
    side *sd = dx_stream_impl(s);
    dx_filter *f = sd->f;
    if (!f)
        return; /* a constructor that failed half-way */
    int j = sd->j;
    filter_ref(f);
    fdir *dout = &f->d[1 - j];
    dout->out_closed = true;
    if (!dout->pumping)
        clear_queue(dout);
    f->d[j].in_ended = true;
    dx_stream *other = f->s[1 - j];
    if (!(dx_stream_state(other) & DX_STREAM_CLOSED)) {
        const dx_error *err = dx_stream_error(s);
        unsigned st = dx_stream_state(s);
        if (err)
            dx_stream_fail_with(other, dx_error_copy(err));
        else if (!((st & DX_STREAM_ENDED) && (st & DX_STREAM_FINISHED)))
            dx_stream_abort(other);
        else
            pump(f, j);
    }
    if (!f->closed && (dx_stream_state(f->s[0]) & DX_STREAM_CLOSED) &&
        (dx_stream_state(f->s[1]) & DX_STREAM_CLOSED)) {
        f->closed = true;
        hook_last(f);
    }
    filter_unref(f);
}

static void side_release(dx_stream *s)
{
    dx_filter *f = filter_of(s);
    if (f)
        filter_unref(f);
}

#define FILTER_OPS(kind_name)                                                                  \
    {                                                                                          \
        .name = kind_name, .write = side_write, .shutdown = side_shutdown,                     \
        .read_start = side_read_start, .close = side_close, .release = side_release,           \
    }

static const dx_stream_ops filter_ops[DX_FK_COUNT] = {
    FILTER_OPS("tap"),   FILTER_OPS("fragment"), FILTER_OPS("delay"),
    FILTER_OPS("throttle"), FILTER_OPS("fault"),
};

/* ---- the calls -------------------------------------------------------------- */

int dx_filter_create(int kind, const dx_filter_conf conf[2], uint64_t seed, dx_filter **out)
{
    *out = NULL;
    dx_filter *f = dx_calloc(1, sizeof(*f));
    if (!f)
        return DX_ENOMEM;
    dx_live_inc();
    f->refs = 1;
    f->kind = kind;
    f->d[0].conf = conf[0];
    f->d[1].conf = conf[1];
    f->capacity = DX_FILTER_DEFAULT_CAPACITY;
    f->clock = mono_ms;
    f->rng = seed;
    f->told = DX_FILTER_NO_DEADLINE;
    int rc = dx_stream_new(&filter_ops[kind], sizeof(side), &f->s[0]);
    if (rc == 0)
        rc = dx_stream_new(&filter_ops[kind], sizeof(side), &f->s[1]);
    if (rc != 0) {
        dx_stream_destroy(f->s[0]);
        filter_unref(f);
        return DX_ENOMEM;
    }
    for (int j = 0; j < 2; j++) {
        side *sd = dx_stream_impl(f->s[j]);
        sd->f = f;
        sd->j = j;
        /* The filter keeps the memory of both streams beyond their handles
         * (a link of the caller's may release one). */
        dx_stream_ref(f->s[j]);
        f->refs++;
    }
    *out = f;
    return 0;
}

int dx_filter_kind_id(const dx_filter *f) { return f->kind; }

void dx_filter_destroy(dx_filter *f)
{
    if (!f || f->dead)
        return;
    filter_ref(f);
    f->dead = true;
    dx_stream_abort(f->s[0]);
    dx_stream_abort(f->s[1]);
    if (f->link) {
        dx_link_destroy(f->link); /* releases the lower handle and the transport */
        f->link = NULL;
    } else {
        dx_stream_destroy(f->s[1]);
    }
    dx_stream_destroy(f->s[0]);
    f->closed = true;
    hook_last(f);
    dx_stream_unref(f->s[0]);
    dx_stream_unref(f->s[1]);
    filter_unref(f);
    filter_unref(f); /* the handle */
}

dx_stream *dx_filter_upper(dx_filter *f) { return f ? f->s[0] : NULL; }
dx_stream *dx_filter_lower(dx_filter *f) { return f ? f->s[1] : NULL; }

dx_filter *dx_filter_from_stream(const dx_stream *s)
{
    const dx_stream_ops *ops = dx_stream_ops_of(s);
    for (int k = 0; ops && k < DX_FK_COUNT; k++)
        if (ops == &filter_ops[k])
            return ((side *)dx_stream_impl(s))->f;
    return NULL;
}

const char *dx_filter_kind(const dx_filter *f) { return f ? kind_names[f->kind] : ""; }

int dx_filter_attach(dx_filter *f, dx_stream *transport)
{
    if (!f || !transport || f->link || transport == f->s[0] || transport == f->s[1])
        return DX_EINVAL;
    if (f->dead || (dx_stream_state(f->s[1]) & DX_STREAM_CLOSED))
        return DX_ESTATE;
    /* f->link is set before the link wires the streams, so that a callback
     * that destroys the filter from inside sees it. */
    int rc = dx_link_new(f->s[1], transport, NULL, NULL, &f->link);
    if (rc != 0)
        dx_stream_destroy(transport);
    return rc;
}

int dx_filter_set_capacity(dx_filter *f, size_t bytes)
{
    if (!f || bytes == 0)
        return DX_EINVAL;
    f->capacity = bytes;
    /* More room: a writer that was refused may go on. */
    for (int i = 0; i < 2; i++)
        if (f->d[i].blocked && f->d[i].held < bytes &&
            !(dx_stream_state(f->s[i]) & DX_STREAM_CLOSED)) {
            f->d[i].blocked = false;
            dx_stream_writable(f->s[i]);
        }
    return 0;
}

int dx_filter_set_clock(dx_filter *f, dx_filter_clock_fn now, void *arg)
{
    if (!f)
        return DX_EINVAL;
    f->clock = now ? now : mono_ms;
    f->clock_arg = now ? arg : NULL;
    return 0;
}

uint64_t dx_filter_deadline(const dx_filter *f)
{
    return f ? next_deadline(f) : DX_FILTER_NO_DEADLINE;
}

void dx_filter_check_timeouts(dx_filter *f)
{
    if (!f || f->dead || f->closed)
        return;
    filter_ref(f);
    pump(f, 0);
    if (!f->dead)
        pump(f, 1);
    filter_unref(f);
}

int dx_filter_set_deadline_hook(dx_filter *f, void (*fn)(dx_filter *f, uint64_t when, void *arg),
                                void *arg)
{
    if (!f)
        return DX_EINVAL;
    if (!fn) {
        f->hook = NULL;
        f->hook_arg = NULL;
        return 0;
    }
    if (f->hook || f->dead || f->closed)
        return DX_ESTATE;
    f->hook = fn;
    f->hook_arg = arg;
    f->told = next_deadline(f);
    return 0;
}

int dx_filter_set_tap(dx_filter *f, dx_tap_fn fn, void *user)
{
    if (!f)
        return DX_EINVAL;
    f->tap = fn;
    f->tap_user = fn ? user : NULL;
    return 0;
}

static const fdir *dir_of(const dx_filter *f, unsigned dir)
{
    if (!f || (dir != DX_FILTER_DOWN && dir != DX_FILTER_UP))
        return NULL;
    return &f->d[dir == DX_FILTER_DOWN ? 0 : 1];
}

uint64_t dx_filter_bytes_in(const dx_filter *f, unsigned dir)
{
    const fdir *d = dir_of(f, dir);
    return d ? d->in_off : 0;
}

uint64_t dx_filter_bytes_out(const dx_filter *f, unsigned dir)
{
    const fdir *d = dir_of(f, dir);
    return d ? d->out_off : 0;
}

size_t dx_filter_held(const dx_filter *f, unsigned dir)
{
    const fdir *d = dir_of(f, dir);
    return d ? d->held : 0;
}

int dx_filter_add_fault(dx_filter *f, const dx_fault *ft)
{
    int i = ft->dir == DX_FILTER_DOWN ? 0 : 1;
    fdir *d = &f->d[i];
    if (f->dead || f->closed || d->out_closed || ft->offset < d->in_off)
        return DX_ESTATE;
    if (d->nfaults == d->fault_cap) {
        size_t cap = d->fault_cap ? d->fault_cap * 2 : 8;
        dx_fault *nf = dx_realloc(d->faults, cap * sizeof(*nf));
        if (!nf)
            return DX_ENOMEM;
        d->faults = nf;
        d->fault_cap = cap;
    }
    dx_fault c = *ft;
    c.data = NULL;
    if (ft->kind == DX_FAULT_INJECT && ft->data) {
        uint8_t *copy = dx_malloc((size_t)ft->len);
        if (!copy)
            return DX_ENOMEM;
        memcpy(copy, ft->data, (size_t)ft->len);
        c.data = copy;
    }
    /* After every fault at the same offset: they apply in the order added. */
    size_t at = d->nfaults;
    while (at > d->next_fault && d->faults[at - 1].offset > c.offset)
        at--;
    memmove(&d->faults[at + 1], &d->faults[at], (d->nfaults - at) * sizeof(*d->faults));
    d->faults[at] = c;
    d->nfaults++;
    if (c.offset == d->in_off) {
        filter_ref(f);
        int rc = apply_faults(f, d, now_of(f));
        if (rc == 0)
            pump(f, i);
        else
            dx_stream_fail(f->s[i], rc, NULL, NULL);
        filter_unref(f);
    }
    return 0;
}
