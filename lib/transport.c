/*
 * The callback transport: a stream over user-supplied read and write
 * functions, blocking or not. The fd transport (fd.c) is this same stream
 * with read(2) and write(2) behind it.
 */
#include "config.h"

#include <duplex/transport.h>

#include <limits.h>
#include <string.h>

#include "alloc.h"
#include "transport_impl.h"

#define READ_SIZE_DEFAULT ((size_t)16384)
#define READ_SIZE_MAX ((size_t)1 << 20)
/* Reads of up to this size use a buffer on the stack. */
#define READ_STACK_MAX ((size_t)16384)

static transport *tp_of(const dx_stream *s) { return dx_stream_impl(s); }

/* A negative status from a user function as a DX_E* code: one that does
 * not fit an int is no code of ours, and counts as an i/o error. */
static int status_code(long r)
{
    return r < INT_MIN ? DX_EIO : (int)r;
}

static int tp_write(dx_stream *s, const dx_iov *iov, size_t n, size_t *taken)
{
    transport *t = tp_of(s);
    size_t done = 0;
    t->want_write = false;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = iov[i].base;
        size_t left = iov[i].len;
        while (left) {
            long r = t->ops.write(t->arg, p, left);
            if (r == DX_EAGAIN || r == 0) {
                /* Nothing fits now; dx_transport_ready() resumes. */
                t->want_write = true;
                *taken = done;
                return 0;
            }
            if (r < 0) {
                *taken = done;
                return status_code(r);
            }
            if ((size_t)r > left)
                return DX_EIO; /* the function claims more than it got */
            done += (size_t)r;
            p += r;
            left -= (size_t)r;
            if (left && !(t->flags & DX_TRANSPORT_BLOCKING)) {
                /* A short write: the channel is full for now. */
                t->want_write = true;
                *taken = done;
                return 0;
            }
        }
    }
    *taken = done;
    return 0;
}

static int tp_shutdown(dx_stream *s)
{
    transport *t = tp_of(s);
    return t->ops.shutdown ? t->ops.shutdown(t->arg) : 0;
}

static void tp_close(dx_stream *s)
{
    transport *t = tp_of(s);
    if (t->ops.close)
        t->ops.close(t->arg);
}

const dx_stream_ops dx_transport_stream_ops = {
    .name = "transport",
    .write = tp_write,
    .shutdown = tp_shutdown,
    .close = tp_close,
};

const dx_stream_ops dx_fd_stream_ops = {
    .name = "fd",
    .write = tp_write,
    .shutdown = tp_shutdown,
    .close = tp_close,
};

int dx_transport_create(const dx_stream_ops *sops,
                        const dx_transport_ops *ops, void *arg,
                        unsigned flags, size_t extra, dx_stream **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    if (!ops || !ops->read || !ops->write || (flags & ~DX_TRANSPORT_BLOCKING))
        return DX_EINVAL;
    dx_stream *s;
    int rc = dx_stream_new(sops, sizeof(transport) + extra, &s);
    if (rc != 0)
        return rc;
    transport *t = tp_of(s);
    t->ops = *ops;
    t->arg = arg;
    t->flags = flags;
    t->read_size = READ_SIZE_DEFAULT;
    *out = s;
    return 0;
}

int dx_transport_new(const dx_transport_ops *ops, void *arg, unsigned flags,
                     dx_stream **out)
{
    return dx_transport_create(&dx_transport_stream_ops, ops, arg, flags, 0,
                               out);
}

bool dx_is_transport(const dx_stream *s)
{
    if (!s)
        return false;
    const char *k = dx_stream_kind(s);
    return k == dx_transport_stream_ops.name || k == dx_fd_stream_ops.name;
}

/* Reads until the channel is dry, the consumer wants no more, or (blocking
 * form) after one read. */
static void read_some(dx_stream *s, transport *t)
{
    uint8_t stack[READ_STACK_MAX];
    uint8_t *buf = stack;
    if (t->read_size > sizeof(stack)) {
        buf = dx_malloc(t->read_size);
        if (!buf) {
            dx_stream_fail(s, DX_ENOMEM, NULL, NULL);
            return;
        }
    }
    for (;;) {
        unsigned st = dx_stream_state(s);
        if ((st & DX_STREAM_CLOSED) || t->eof || !dx_stream_wants_read(s))
            break;
        long r = t->ops.read(t->arg, buf, t->read_size);
        if (r == DX_EAGAIN)
            break;
        if (r < 0) {
            dx_stream_fail(s, status_code(r), NULL, NULL);
            break;
        }
        if (r == 0) {
            t->eof = true;
            dx_stream_push_end(s);
            break;
        }
        if ((size_t)r > t->read_size) {
            dx_stream_fail(s, DX_EIO, NULL,
                           "read function returned more than asked for");
            break;
        }
        dx_stream_push(s, buf, (size_t)r);
        if (t->flags & DX_TRANSPORT_BLOCKING)
            break;
    }
    if (buf != stack)
        dx_free(buf);
}

int dx_transport_ready(dx_stream *s, unsigned events)
{
    if (!dx_is_transport(s) || (events & ~(DX_READABLE | DX_WRITABLE)))
        return DX_EINVAL;
    if (dx_stream_state(s) & DX_STREAM_CLOSED)
        return DX_EDESTROYED;
    transport *t = tp_of(s);
    dx_stream_ref(s);
    if (events & DX_WRITABLE) {
        t->want_write = false;
        dx_stream_writable(s);
    }
    if ((events & DX_READABLE) && !(dx_stream_state(s) & DX_STREAM_CLOSED))
        read_some(s, t);
    dx_stream_unref(s);
    return 0;
}

unsigned dx_transport_interest(const dx_stream *s)
{
    if (!dx_is_transport(s) || (dx_stream_state(s) & DX_STREAM_CLOSED))
        return 0;
    const transport *t = tp_of(s);
    unsigned ev = 0;
    if (!t->eof && dx_stream_wants_read(s))
        ev |= DX_READABLE;
    if (t->want_write && dx_stream_write_buffered(s))
        ev |= DX_WRITABLE;
    return ev;
}

int dx_transport_set_read_size(dx_stream *s, size_t size)
{
    if (!dx_is_transport(s) || size == 0 || size > READ_SIZE_MAX)
        return DX_EINVAL;
    tp_of(s)->read_size = size;
    return 0;
}

void *dx_transport_extra(dx_stream *s)
{
    return (char *)dx_stream_impl(s) + sizeof(transport);
}
