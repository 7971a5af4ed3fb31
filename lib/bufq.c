#include "config.h"

#include "bufq.h"

#include <string.h>

#include <duplex/error.h>

#include "alloc.h"

int dx_iov_total(const dx_iov *iov, size_t n, size_t *total)
{
    size_t t = 0;
    if (n && !iov)
        return DX_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (iov[i].len && !iov[i].base)
            return DX_EINVAL;
        if (iov[i].len > (size_t)-1 - t)
            return DX_EINVAL;
        t += iov[i].len;
    }
    *total = t;
    return 0;
}

/* The first bytes of an empty queue, when they are few, go into a small
 * chunk: most queues hold one short record or write at a time and empty
 * at once, and a block this size comes from the allocator's fastest path
 * (glibc's thread cache ends at 1032 bytes) where a record-sized one does
 * not. What follows, if it does not fit, starts a record-sized chunk. */
#define SMALL_CHUNK ((size_t)1024 - sizeof(dx_chunk))

static dx_chunk *chunk_new(dx_bufq *q, size_t need, bool first)
{
    size_t cap = first && need <= SMALL_CHUNK ? SMALL_CHUNK
                 : need < DX_BUFQ_CHUNK      ? DX_BUFQ_CHUNK
                                             : need;
    dx_chunk *c;
    if (cap == SMALL_CHUNK && q->spare) {
        c = q->spare;
        q->spare = NULL;
    } else {
        if (cap > (size_t)-1 - sizeof(dx_chunk))
            return NULL;
        c = dx_malloc(sizeof(dx_chunk) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
    }
    c->next = NULL;
    c->start = c->end = 0;
    return c;
}

void dx_bufq_recycle(dx_bufq *q, dx_chunk *c)
{
    if (!q->spare && c->cap == SMALL_CHUNK)
        q->spare = c;
    else
        dx_free(c);
}

void dx_bufq_drop_spare(dx_bufq *q)
{
    dx_free(q->spare);
    q->spare = NULL;
}

/* Copies up to max bytes of iov (after skip) to dst; returns the count. */
static size_t gather(uint8_t *dst, const dx_iov *iov, size_t n, size_t *skip,
                     size_t *idx, size_t max)
{
    size_t done = 0;
    while (*idx < n && done < max) {
        const dx_iov *v = &iov[*idx];
        if (*skip >= v->len) {
            *skip -= v->len;
            (*idx)++;
            continue;
        }
        size_t take = v->len - *skip;
        if (take > max - done)
            take = max - done;
        memcpy(dst + done, (const uint8_t *)v->base + *skip, take);
        done += take;
        *skip += take;
    }
    return done;
}

int dx_bufq_appendv(dx_bufq *q, const dx_iov *iov, size_t n, size_t skip,
                    size_t max)
{
    size_t total;
    if (dx_iov_total(iov, n, &total) != 0 || skip > total)
        return DX_EINVAL;
    size_t want = total - skip;
    if (want > max)
        want = max;
    if (want == 0)
        return 0;
    dx_chunk *t = q->tail;
    size_t room = t ? t->cap - t->end : 0;
    if (want > room && t && t->cap < DX_BUFQ_CHUNK)
        room = 0; /* a small chunk is not split across: the bytes go whole */
    dx_chunk *extra = NULL;
    if (want > room) {
        extra = chunk_new(q, want - room, !t);
        if (!extra)
            return DX_ENOMEM;
    }
    size_t idx = 0, done = 0;
    if (room) {
        size_t k = gather(t->data + t->end, iov, n, &skip, &idx,
                          want < room ? want : room);
        t->end += k;
        done += k;
    }
    if (extra) {
        extra->end = gather(extra->data, iov, n, &skip, &idx, want - done);
        done += extra->end;
        if (t)
            t->next = extra;
        else
            q->head = extra;
        q->tail = extra;
    }
    q->bytes += done;
    return 0;
}

int dx_bufq_append(dx_bufq *q, const void *data, size_t len)
{
    /* One buffer into the room of the last chunk, or into an empty queue:
     * the common cases, without the gathering of appendv. */
    dx_chunk *t = q->tail;
    if (len && data && (t ? t->cap - t->end >= len : true)) {
        if (!t) {
            t = chunk_new(q, len, true);
            if (!t)
                return DX_ENOMEM;
            q->head = q->tail = t;
        }
        memcpy(t->data + t->end, data, len);
        t->end += len;
        q->bytes += len;
        return 0;
    }
    dx_iov v = {data, len};
    return dx_bufq_appendv(q, &v, 1, 0, len);
}

int dx_bufq_prependv(dx_bufq *q, const dx_iov *iov, size_t n, size_t skip)
{
    size_t total;
    if (dx_iov_total(iov, n, &total) != 0 || skip > total)
        return DX_EINVAL;
    size_t want = total - skip;
    if (want == 0)
        return 0;
    dx_chunk *c = chunk_new(q, want, false);
    if (!c)
        return DX_ENOMEM;
    size_t idx = 0;
    c->end = gather(c->data, iov, n, &skip, &idx, want);
    c->next = q->head;
    q->head = c;
    if (!q->tail)
        q->tail = c;
    q->bytes += want;
    return 0;
}

size_t dx_bufq_peekv(const dx_bufq *q, dx_iov *iov, size_t max)
{
    size_t k = 0;
    for (dx_chunk *c = q->head; c && k < max; c = c->next) {
        if (c->end == c->start)
            continue;
        iov[k].base = c->data + c->start;
        iov[k].len = c->end - c->start;
        k++;
    }
    return k;
}

void dx_bufq_consume(dx_bufq *q, size_t n)
{
    while (n && q->head) {
        dx_chunk *c = q->head;
        size_t have = c->end - c->start;
        size_t k = n < have ? n : have;
        c->start += k;
        q->bytes -= k;
        n -= k;
        if (c->start == c->end) {
            q->head = c->next;
            if (!q->head)
                q->tail = NULL;
            dx_free(c);
        }
    }
}

void dx_bufq_clear(dx_bufq *q)
{
    dx_chunk *c = q->head;
    while (c) {
        dx_chunk *next = c->next;
        dx_free(c);
        c = next;
    }
    q->head = q->tail = NULL;
    q->bytes = 0;
    dx_bufq_drop_spare(q);
}

dx_chunk *dx_bufq_pop(dx_bufq *q)
{
    dx_chunk *c = q->head;
    if (!c)
        return NULL;
    q->head = c->next;
    if (!q->head)
        q->tail = NULL;
    c->next = NULL;
    q->bytes -= c->end - c->start;
    return c;
}

void dx_bufq_push_front(dx_bufq *q, dx_chunk *c)
{
    c->next = q->head;
    q->head = c;
    if (!q->tail)
        q->tail = c;
    q->bytes += c->end - c->start;
}

void dx_bufq_consume_keep(dx_bufq *q, size_t n)
{
    q->head->start += n;
    q->bytes -= n;
}

size_t dx_bufq_take(dx_bufq *q, void *dst, size_t len)
{
    size_t got = 0;
    dx_iov v;
    while (got < len && dx_bufq_peekv(q, &v, 1)) {
        size_t n = v.len < len - got ? v.len : len - got;
        memcpy((uint8_t *)dst + got, v.base, n);
        dx_bufq_consume(q, n);
        got += n;
    }
    return got;
}
