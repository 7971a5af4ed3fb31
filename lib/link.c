/*
 * The link: two streams wired both ways, with backpressure and half-close
 * carried across and failures propagated.
 */
#include "config.h"

#include <duplex/link.h>

#include "alloc.h"
#include "errors.h"

struct dx_link {
    dx_stream *s[2];
    dx_link_done_cb done;
    void *user;
    dx_error *err;      /* the first failure */
    uint64_t bytes[2];  /* bytes[i]: forwarded from s[i] to the other */
    unsigned refs;      /* the owner's handle, and one per running callback */
    bool closed[2];
    bool paused[2];     /* s[i] paused by the link for backpressure */
    bool done_called;
    bool released;
};

static void link_ref(dx_link *l) { l->refs++; }

static void link_unref(dx_link *l)
{
    if (--l->refs > 0)
        return;
    dx_error_free(l->err);
    dx_free(l);
    dx_live_dec();
}

static int side_of(dx_link *l, dx_stream *s) { return l->s[1] == s; }

/* Releases the handles of both streams and the memory references the link
 * kept on them (a stream may be shared with an object that releases its
 * handle too, such as a TLS filter: the memory outlives both). */
static void release_streams(dx_link *l, dx_stream *a, dx_stream *b)
{
    dx_stream_destroy(a);
    dx_stream_destroy(b);
    dx_stream_unref(a);
    dx_stream_unref(b);
    link_unref(l); /* the reference the streams held */
}

static void on_data(dx_stream *s, const uint8_t *data, size_t len, void *u)
{
    dx_link *l = u;
    int i = side_of(l, s);
    int rc = dx_stream_write(l->s[1 - i], data, len);
    if (rc >= 0)
        l->bytes[i] += len;
    if (rc == DX_FULL && !l->paused[i]) {
        l->paused[i] = true;
        dx_stream_pause(s);
    }
    /* A failed write fails the other stream, whose error handler acts. */
}

static void on_drain(dx_stream *s, void *u)
{
    dx_link *l = u;
    int i = side_of(l, s);
    if (l->paused[1 - i]) {
        l->paused[1 - i] = false;
        dx_stream_resume(l->s[1 - i]);
    }
}

static void on_end(dx_stream *s, void *u)
{
    dx_link *l = u;
    int i = side_of(l, s);
    dx_stream_end(l->s[1 - i]);
}

static void on_error(dx_stream *s, const dx_error *err, void *u)
{
    dx_link *l = u;
    int i = side_of(l, s);
    link_ref(l);
    if (!l->err) {
        l->err = dx_error_copy(err);
        if (!l->err) /* no memory for a copy: report that instead */
            l->err = (dx_error *)dx_error_oom();
    }
    if (!l->closed[1 - i])
        dx_stream_fail_with(l->s[1 - i], dx_error_copy(err));
    link_unref(l);
}

static void on_close(dx_stream *s, void *u)
{
    dx_link *l = u;
    int i = side_of(l, s);
    link_ref(l);
    l->closed[i] = true;
    unsigned st = dx_stream_state(s);
    bool clean = (st & DX_STREAM_ENDED) && (st & DX_STREAM_FINISHED);
    if (!l->closed[1 - i] && !clean)
        dx_stream_abort(l->s[1 - i]); /* aborted: abort the other too */
    if (l->closed[0] && l->closed[1] && !l->done_called) {
        l->done_called = true;
        if (l->done)
            l->done(l, l->err, l->user);
    }
    if (l->released && l->closed[0] && l->closed[1]) {
        /* The streams' last events have run: their handles can go. */
        dx_stream *a = l->s[0], *b = l->s[1];
        l->s[0] = l->s[1] = NULL;
        if (a)
            release_streams(l, a, b);
    }
    link_unref(l);
}

static const dx_stream_events link_events = {
    .on_data = on_data,
    .on_end = on_end,
    .on_drain = on_drain,
    .on_error = on_error,
    .on_close = on_close,
};

int dx_link_new(dx_stream *a, dx_stream *b, dx_link_done_cb done, void *user,
                dx_link **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    if (!a || !b || a == b)
        return DX_EINVAL;
    dx_link *l = dx_calloc(1, sizeof(*l));
    if (!l)
        return DX_ENOMEM;
    dx_live_inc();
    l->s[0] = a;
    l->s[1] = b;
    l->done = done;
    l->user = user;
    l->refs = 2; /* the owner's handle, and the streams' hold on it */
    dx_stream_ref(a);
    dx_stream_ref(b);
    *out = l;
    link_ref(l);
    dx_stream_set_events(a, &link_events, l);
    if (!l->released)
        dx_stream_set_events(b, &link_events, l);
    link_unref(l);
    return 0;
}

void dx_link_destroy(dx_link *l)
{
    if (!l || l->released)
        return;
    l->released = true;
    link_ref(l);
    /* Abort both; their on_close destroys the handles once both ran. */
    for (int i = 0; i < 2; i++)
        if (l->s[i] && !l->closed[i])
            dx_stream_abort(l->s[i]);
    if (l->closed[0] && l->closed[1] && l->s[0]) {
        dx_stream *a = l->s[0], *b = l->s[1];
        l->s[0] = l->s[1] = NULL;
        release_streams(l, a, b);
    }
    link_unref(l);
    link_unref(l); /* the owner's handle */
}

uint64_t dx_link_bytes_ab(const dx_link *l) { return l ? l->bytes[0] : 0; }
uint64_t dx_link_bytes_ba(const dx_link *l) { return l ? l->bytes[1] : 0; }

bool dx_link_is_done(const dx_link *l) { return l && l->done_called; }
