/*
 * The stream core: buffers, event order, backpressure and lifetime for
 * every dx_stream, whatever moves its bytes.
 *
 * All events are emitted by dispatch(), which never runs twice at once for
 * one stream: an event that becomes due while a callback of the stream is
 * running is left pending, and the outer dispatch() emits it when the
 * callback returns. That one rule gives the ordering guarantees of the
 * contract (data before end, error before close, close last, nothing after
 * close) and makes destroy safe from any callback.
 *
 * Memory is reference counted: the owner's handle is one reference,
 * dispatch() takes one for as long as it runs, implementations take their
 * own. The stream is freed when the last one goes.
 */
#include "config.h"

#include <duplex/stream.h>

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include "alloc.h"
#include "bufq.h"
#include "errors.h"
#include "stream_internal.h"

/* Most buffers handed to an implementation's write in one call. */
#define DX_WRITE_IOV_MAX 64

struct dx_stream {
    const dx_stream_ops *ops;
    dx_stream_events ev;
    void *user;
    unsigned refs;
    unsigned cork;
    size_t max_delivery;       /* most bytes per on_data; 0: no limit */
    dx_bufq rq, wq;
    size_t read_hwm, write_hwm, write_limit;
    dx_error *err;

    /* consumer side */
    unsigned attached : 1;     /* dx_stream_set_events() with events */
    unsigned paused : 1;       /* dx_stream_pause() */
    unsigned released : 1;     /* dx_stream_destroy() was called */
    /* read side */
    unsigned read_ended : 1;   /* the implementation pushed the end */
    unsigned end_emitted : 1;  /* on_end delivered */
    unsigned reading : 1;      /* read_start told, read_stop not since */
    /* write side */
    unsigned write_ended : 1;  /* dx_stream_end() was called */
    unsigned shutdown_called : 1;
    unsigned shutdown_done : 1;
    unsigned finish_emitted : 1;
    unsigned need_drain : 1;   /* a write returned DX_FULL */
    unsigned in_write : 1;     /* inside ops->write */
    unsigned write_again : 1;  /* dx_stream_writable() during ops->write */
    /* failure and close */
    unsigned errored : 1;
    unsigned error_emitted : 1;
    unsigned closed : 1;       /* ops->close was called */
    unsigned close_emitted : 1;
    /* dispatch */
    unsigned in_dispatch : 1;
    unsigned redo : 1;

    _Alignas(max_align_t) unsigned char impl[];
};

static void dispatch(dx_stream *s);
static void flush(dx_stream *s);

/* ---- lifetime ---------------------------------------------------------- */

int dx_stream_new(const dx_stream_ops *ops, size_t impl_size, dx_stream **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    if (!ops || !ops->close || impl_size > ((size_t)1 << 30))
        return DX_EINVAL;
    dx_stream *s = dx_calloc(1, sizeof(*s) + impl_size);
    if (!s)
        return DX_ENOMEM;
    s->ops = ops;
    s->refs = 1;
    s->read_hwm = DX_STREAM_DEFAULT_HWM;
    s->write_hwm = DX_STREAM_DEFAULT_HWM;
    s->write_limit = DX_STREAM_DEFAULT_WRITE_LIMIT;
    dx_live_inc();
    *out = s;
    return 0;
}

void *dx_stream_impl(const dx_stream *s)
{
    return s ? (void *)s->impl : NULL;
}

dx_stream *dx_stream_from_impl(void *impl)
{
    return impl ? (dx_stream *)((char *)impl - offsetof(dx_stream, impl))
                : NULL;
}

void dx_stream_ref(dx_stream *s)
{
    if (s)
        s->refs++;
}

void dx_stream_unref(dx_stream *s)
{
    if (!s || --s->refs > 0)
        return;
    if (s->ops->release)
        s->ops->release(s);
    dx_bufq_clear(&s->rq);
    dx_bufq_clear(&s->wq);
    dx_error_free(s->err);
    dx_free(s);
    dx_live_dec();
}

/* Enters the closed state: drops the buffers and releases the layer below.
 * The close event itself is emitted by dispatch(). */
static void do_close(dx_stream *s)
{
    if (s->closed)
        return;
    s->closed = 1;
    s->reading = 0;
    /* A delivery may be reading a chunk of rq: dispatch() frees it after. */
    if (!s->in_dispatch)
        dx_bufq_clear(&s->rq);
    dx_bufq_clear(&s->wq);
    dx_stream_ref(s);
    s->ops->close(s);
    dx_stream_unref(s);
}

static void set_error(dx_stream *s, dx_error *err)
{
    if (s->errored || s->closed) {
        dx_error_free(err);
        return;
    }
    if (!err)
        err = (dx_error *)dx_error_oom();
    dx_error_default_layer(err, s->ops->name);
    s->err = err;
    s->errored = 1;
    do_close(s);
}

void dx_stream_fail_with(dx_stream *s, dx_error *err)
{
    if (!s) {
        dx_error_free(err);
        return;
    }
    dx_stream_ref(s);
    set_error(s, err);
    dispatch(s);
    dx_stream_unref(s);
}

void dx_stream_fail(dx_stream *s, int code, const char *name, const char *fmt,
                    ...)
{
    if (!s || s->errored || s->closed)
        return;
    va_list ap;
    va_start(ap, fmt);
    dx_error *e = dx_error_vnew(code, name, s->ops->name, fmt, ap);
    va_end(ap);
    dx_stream_fail_with(s, e);
}

static void fail_code(dx_stream *s, int code)
{
    dx_stream_fail(s, code, NULL, NULL);
}

void dx_stream_abort(dx_stream *s)
{
    if (!s || s->closed)
        return;
    dx_stream_ref(s);
    do_close(s);
    dispatch(s);
    dx_stream_unref(s);
}

void dx_stream_destroy_with_error(dx_stream *s, dx_error *err)
{
    if (!s || s->released) {
        dx_error_free(err);
        return;
    }
    s->released = 1;
    dx_stream_ref(s);
    set_error(s, err);
    do_close(s);
    dispatch(s);
    dx_stream_unref(s);
    dx_stream_unref(s); /* the owner's handle */
}

void dx_stream_destroy(dx_stream *s)
{
    if (!s || s->released)
        return;
    s->released = 1;
    dx_stream_ref(s);
    do_close(s);
    dispatch(s);
    dx_stream_unref(s);
    dx_stream_unref(s); /* the owner's handle */
}

/* ---- events ------------------------------------------------------------ */

const dx_stream_ops *dx_stream_ops_of(const dx_stream *s) { return s ? s->ops : NULL; }

void dx_stream_set_max_delivery(dx_stream *s, size_t max)
{
    s->max_delivery = max;
}

static bool want_read(const dx_stream *s)
{
    if (!s->attached || s->closed || s->read_ended)
        return false;
    size_t mark = s->read_hwm ? s->read_hwm : 1;
    return s->rq.bytes < mark;
}

static bool flowing(const dx_stream *s)
{
    return s->attached && !s->paused && !s->closed;
}

/* Tells the implementation about a change in the consumer's appetite.
 * Runs outside the dispatch loop, so that data pushed from read_start can
 * take the direct path to on_data. */
static void update_reading(dx_stream *s)
{
    for (;;) {
        bool want = want_read(s);
        if (want == (bool)s->reading)
            return;
        s->reading = want;
        if (want) {
            if (s->ops->read_start)
                s->ops->read_start(s);
        } else {
            if (s->ops->read_stop)
                s->ops->read_stop(s);
        }
    }
}

/* One pass over everything that may be due, in contract order. Returns
 * false when the pass stopped early because a callback changed the state
 * (the caller runs another pass). */
static bool emit_pending(dx_stream *s)
{
    if (!s->attached)
        return true; /* everything waits for a consumer, close included */
    if (s->errored && !s->error_emitted) {
        s->error_emitted = 1;
        if (s->ev.on_error)
            s->ev.on_error(s, s->err, s->user);
    }
    if (s->closed) {
        if (!s->close_emitted) {
            s->close_emitted = 1;
            if (s->ev.on_close)
                s->ev.on_close(s, s->user);
        }
        return true;
    }
    while (flowing(s) && s->rq.head) {
        /* The slice leaves the queue before the callback, which may unshift
         * or push more; an emptied chunk is freed only after it. */
        dx_chunk *c = s->rq.head;
        size_t n = c->end - c->start;
        if (s->max_delivery && n > s->max_delivery)
            n = s->max_delivery;
        const uint8_t *p = c->data + c->start;
        bool last = n == c->end - c->start;
        if (last)
            dx_bufq_pop(&s->rq);
        else
            dx_bufq_consume_keep(&s->rq, n);
        if (s->ev.on_data)
            s->ev.on_data(s, p, n, s->user);
        if (last)
            dx_free(c);
        if (s->closed)
            return false;
    }
    if (flowing(s) && s->read_ended && !s->end_emitted && !s->rq.head) {
        s->end_emitted = 1;
        if (s->ev.on_end)
            s->ev.on_end(s, s->user);
        if (s->closed)
            return false;
    }
    if (s->need_drain && s->wq.bytes == 0 && s->attached) {
        s->need_drain = 0;
        if (s->ev.on_drain)
            s->ev.on_drain(s, s->user);
        if (s->closed)
            return false;
    }
    if (s->shutdown_done && !s->finish_emitted && s->attached) {
        s->finish_emitted = 1;
        if (s->ev.on_finish)
            s->ev.on_finish(s, s->user);
        if (s->closed)
            return false;
    }
    if (s->end_emitted && s->finish_emitted) {
        do_close(s); /* both directions are done */
        return false;
    }
    return true;
}

static void dispatch(dx_stream *s)
{
    if (s->in_dispatch) {
        s->redo = 1;
        return;
    }
    /* Nothing due and the consumer's appetite unchanged, the common case
     * after a write or a direct push: no pass. */
    if (s->attached && !s->rq.head && !s->errored && !s->closed && !s->read_ended &&
        !s->need_drain && !s->shutdown_done && (bool)s->reading == want_read(s))
        return;
    dx_stream_ref(s);
    s->in_dispatch = 1;
    do {
        s->redo = 0;
        if (!emit_pending(s))
            s->redo = 1;
    } while (s->redo);
    s->in_dispatch = 0;
    if (s->closed)
        dx_bufq_clear(&s->rq);
    update_reading(s);
    dx_stream_unref(s);
}

int dx_stream_set_events(dx_stream *s, const dx_stream_events *ev, void *user)
{
    if (!s)
        return DX_EINVAL;
    if (ev) {
        s->ev = *ev;
        s->attached = 1;
    } else {
        memset(&s->ev, 0, sizeof(s->ev));
        s->attached = 0;
    }
    s->user = user;
    dispatch(s);
    return 0;
}

void *dx_stream_user(const dx_stream *s) { return s ? s->user : NULL; }

/* ---- reading ----------------------------------------------------------- */

int dx_stream_push(dx_stream *s, const void *data, size_t len)
{
    if (!s || (len && !data))
        return DX_EINVAL;
    if (s->closed || s->read_ended)
        return 0;
    if (len == 0)
        return want_read(s);
    dx_stream_ref(s);
    if (!s->in_dispatch && flowing(s) && !s->rq.head &&
        (!s->max_delivery || len <= s->max_delivery)) {
        /* The direct path: the consumer reads the implementation's buffer. */
        s->in_dispatch = 1;
        if (s->ev.on_data)
            s->ev.on_data(s, data, len, s->user);
        s->in_dispatch = 0;
    } else if (dx_bufq_append(&s->rq, data, len) != 0) {
        fail_code(s, DX_ENOMEM);
        dx_stream_unref(s);
        return DX_ENOMEM;
    }
    dispatch(s);
    int r = want_read(s);
    if (!r && s->reading) {
        /* The implementation stops until read_start: read_stop now, also
         * when this push comes from inside a callback of the stream,
         * whose dispatch may empty the buffer before it looks at the
         * appetite again and would then see no change to tell. */
        s->reading = 0;
        if (s->ops->read_stop)
            s->ops->read_stop(s);
    }
    dx_stream_unref(s);
    return r;
}

void dx_stream_push_end(dx_stream *s)
{
    if (!s || s->closed || s->read_ended)
        return;
    s->read_ended = 1;
    dispatch(s);
}

bool dx_stream_wants_read(const dx_stream *s)
{
    return s && s->reading && want_read(s);
}

int dx_stream_pause(dx_stream *s)
{
    if (!s)
        return DX_EINVAL;
    s->paused = 1;
    dispatch(s);
    return 0;
}

int dx_stream_resume(dx_stream *s)
{
    if (!s)
        return DX_EINVAL;
    s->paused = 0;
    dispatch(s);
    return 0;
}

bool dx_stream_is_paused(const dx_stream *s) { return s && s->paused; }

int dx_stream_unshift(dx_stream *s, const void *data, size_t len)
{
    if (!s || (len && !data))
        return DX_EINVAL;
    if (s->closed)
        return DX_EDESTROYED;
    if (s->end_emitted)
        return DX_ESTATE;
    dx_iov v = {data, len};
    if (dx_bufq_prependv(&s->rq, &v, 1, 0) != 0)
        return DX_ENOMEM;
    dispatch(s);
    return 0;
}

/* ---- writing ----------------------------------------------------------- */

/* Offers iov to the implementation; returns its status, with *taken set. */
static int offer(dx_stream *s, const dx_iov *iov, size_t n, size_t *taken)
{
    *taken = 0;
    s->in_write = 1;
    int rc = s->ops->write(s, iov, n, taken);
    s->in_write = 0;
    return rc;
}

/* Hands the write buffer to the implementation, then the end once it is
 * empty. */
static void flush(dx_stream *s)
{
    if (s->in_write) {
        s->write_again = 1;
        return;
    }
    if (s->closed)
        return;
    dx_stream_ref(s);
    while (s->wq.bytes && !s->cork && !s->closed) {
        dx_iov iov[DX_WRITE_IOV_MAX];
        size_t n = dx_bufq_peekv(&s->wq, iov, DX_WRITE_IOV_MAX), taken;
        s->write_again = 0;
        int rc = offer(s, iov, n, &taken);
        if (s->closed)
            break;
        if (rc < 0) {
            fail_code(s, rc);
            break;
        }
        dx_bufq_consume(&s->wq, taken);
        if (taken == 0 && !s->write_again)
            break;
    }
    if (!s->closed && s->write_ended && !s->wq.bytes && !s->cork &&
        !s->shutdown_called) {
        s->shutdown_called = 1;
        int rc = s->ops->shutdown ? s->ops->shutdown(s) : 0;
        if (rc < 0)
            fail_code(s, rc);
        else if (!s->closed)
            s->shutdown_done = 1;
    }
    dispatch(s);
    dx_stream_unref(s);
}

void dx_stream_writable(dx_stream *s)
{
    if (s)
        flush(s);
}

static int write_total(dx_stream *s, const dx_iov *iov, size_t iovcnt, size_t total);

int dx_stream_writev(dx_stream *s, const dx_iov *iov, size_t iovcnt)
{
    size_t total;
    if (!s || dx_iov_total(iov, iovcnt, &total) != 0)
        return DX_EINVAL;
    return write_total(s, iov, iovcnt, total);
}

/* dx_stream_writev() once the buffers are known good and total long. */
static int write_total(dx_stream *s, const dx_iov *iov, size_t iovcnt, size_t total)
{
    if (s->closed)
        return DX_EDESTROYED;
    if (s->write_ended)
        return DX_EWRITEAFTEREND;
    if (!s->ops->write)
        return DX_ENOTSUP;
    if (total == 0)
        return s->wq.bytes && s->wq.bytes >= s->write_hwm ? DX_FULL : 0;
    if (s->write_limit &&
        (s->wq.bytes > s->write_limit || total > s->write_limit - s->wq.bytes))
        return DX_ENOBUFS;

    dx_stream_ref(s);
    size_t taken = 0;
    int rc = 0;
    bool direct = !s->wq.bytes && !s->cork && !s->in_write;
    if (direct) {
        /* The direct path: no copy unless the layer below is full. */
        s->write_again = 0;
        rc = offer(s, iov, iovcnt, &taken);
    }
    if (rc < 0) {
        fail_code(s, rc);
        goto out;
    }
    if (s->closed) {
        /* The layer below failed (or a callback destroyed the stream). */
        rc = s->err ? dx_error_code(s->err) : DX_EDESTROYED;
        goto out;
    }
    if (taken < total) {
        /* After a direct offer, anything in the buffer was written from a
         * callback during the offer, after these bytes: they go in front. */
        int arc = direct && s->wq.bytes
                      ? dx_bufq_prependv(&s->wq, iov, iovcnt, taken)
                      : dx_bufq_appendv(&s->wq, iov, iovcnt, taken,
                                        total - taken);
        if (arc != 0) {
            /* Part of the write is below already: the stream cannot go on
             * without losing bytes, so it fails loudly. */
            rc = arc;
            fail_code(s, arc);
            goto out;
        }
    }
    /* Bytes written from a callback during the offer wait in the buffer:
     * offer them now if the layer below has room. An end asked for from
     * a callback during the offer waits too, even with nothing buffered:
     * the shutdown is due now. */
    if (!s->cork && ((s->wq.bytes && (s->write_again || taken == total)) ||
                     (s->write_ended && !s->shutdown_called && !s->wq.bytes)))
        flush(s);
    if (s->closed)
        /* Closed cleanly (both directions done, the end asked for from a
         * callback during the write): every byte was taken. */
        rc = s->err ? dx_error_code(s->err)
             : s->end_emitted && s->finish_emitted ? 0
                                                   : DX_EDESTROYED;
    else if (s->wq.bytes && s->wq.bytes >= s->write_hwm) {
        s->need_drain = 1;
        rc = DX_FULL;
    }
out:
    dispatch(s);
    dx_stream_unref(s);
    return rc;
}

int dx_stream_write(dx_stream *s, const void *data, size_t len)
{
    if (!s || (len && !data))
        return DX_EINVAL;
    dx_iov v = {data, len};
    return write_total(s, &v, 1, len);
}

int dx_stream_end(dx_stream *s)
{
    if (!s)
        return DX_EINVAL;
    if (s->closed)
        return DX_EDESTROYED;
    if (s->write_ended)
        return DX_EWRITEAFTEREND;
    s->write_ended = 1;
    s->cork = 0;
    flush(s);
    return 0;
}

void dx_stream_cork(dx_stream *s)
{
    if (s)
        s->cork++;
}

void dx_stream_uncork(dx_stream *s)
{
    if (!s || s->cork == 0)
        return;
    if (--s->cork == 0)
        flush(s);
}

/* ---- configuration and state ------------------------------------------- */

size_t dx_stream_write_buffered(const dx_stream *s)
{
    return s ? s->wq.bytes : 0;
}

size_t dx_stream_read_buffered(const dx_stream *s)
{
    return s ? s->rq.bytes : 0;
}

int dx_stream_set_high_water(dx_stream *s, size_t read_hwm, size_t write_hwm)
{
    if (!s)
        return DX_EINVAL;
    s->read_hwm = read_hwm;
    s->write_hwm = write_hwm;
    dispatch(s);
    return 0;
}

int dx_stream_set_write_limit(dx_stream *s, size_t limit)
{
    if (!s)
        return DX_EINVAL;
    s->write_limit = limit;
    return 0;
}

unsigned dx_stream_state(const dx_stream *s)
{
    if (!s)
        return 0;
    unsigned st = 0;
    if (!s->end_emitted && !s->closed)
        st |= DX_STREAM_READABLE;
    if (!s->write_ended && !s->closed)
        st |= DX_STREAM_WRITABLE;
    if (s->end_emitted)
        st |= DX_STREAM_ENDED;
    if (s->finish_emitted)
        st |= DX_STREAM_FINISHED;
    if (s->errored)
        st |= DX_STREAM_ERRORED;
    if (s->closed)
        st |= DX_STREAM_CLOSED;
    if (s->paused)
        st |= DX_STREAM_PAUSED;
    return st;
}

const dx_error *dx_stream_error(const dx_stream *s)
{
    return s ? s->err : NULL;
}

const char *dx_stream_kind(const dx_stream *s)
{
    return s && s->ops->name ? s->ops->name : "";
}
