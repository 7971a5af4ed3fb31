/*
 * Servers' sessions by id: the built-in bounded cache (least recently
 * used goes first, entries expire after the session timeout on the
 * server's clock, counters of hits, misses and evictions).
 */
#include "config.h"

#include <string.h>

#include "alloc.h"
#include "tls_internal.h"

typedef struct entry {
    struct entry *prev, *next; /* the LRU list, most recent first */
    struct entry *hnext;       /* the bucket's chain */
    SSL_SESSION *sess;
    uint64_t expires;
    unsigned id_len;
    uint8_t id[SSL_MAX_SSL_SESSION_ID_LENGTH];
} entry;

struct dx_tls_session_cache {
    entry **buckets;
    size_t nbuckets, count, max;
    entry *head, *tail;
    uint64_t hits, misses, evictions;
};

static size_t hash_id(const uint8_t *id, unsigned len, size_t n)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (unsigned i = 0; i < len; i++)
        h = (h ^ id[i]) * 1099511628211u;
    return (size_t)(h % n);
}

int dx_tls_session_cache_new(size_t max, dx_tls_session_cache **out)
{
    dx_tls_session_cache *c = dx_calloc(1, sizeof(*c));
    if (!c)
        return DX_ENOMEM;
    c->max = max;
    c->nbuckets = 1024;
    c->buckets = dx_calloc(c->nbuckets, sizeof(*c->buckets));
    if (!c->buckets) {
        dx_free(c);
        return DX_ENOMEM;
    }
    *out = c;
    return 0;
}

static void unlink_entry(dx_tls_session_cache *c, entry *e)
{
    entry **pp = &c->buckets[hash_id(e->id, e->id_len, c->nbuckets)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    c->count--;
    SSL_SESSION_free(e->sess);
    dx_free(e);
}

void dx_tls_session_cache_free(dx_tls_session_cache *c)
{
    if (!c)
        return;
    while (c->head)
        unlink_entry(c, c->head);
    dx_free(c->buckets);
    dx_free(c);
}

static entry *find(dx_tls_session_cache *c, const uint8_t *id, unsigned len)
{
    for (entry *e = c->buckets[hash_id(id, len, c->nbuckets)]; e; e = e->hnext)
        if (e->id_len == len && memcmp(e->id, id, len) == 0)
            return e;
    return NULL;
}

void dx_tls_session_cache_put(dx_tls_session_cache *c, SSL_SESSION *sess, uint64_t now)
{
    unsigned len;
    const unsigned char *id = SSL_SESSION_get_id(sess, &len);
    if (!c->max || len == 0 || len > SSL_MAX_SSL_SESSION_ID_LENGTH)
        return;
    entry *old = find(c, id, len);
    if (old)
        unlink_entry(c, old);
    while (c->count >= c->max) {
        unlink_entry(c, c->tail);
        c->evictions++;
    }
    entry *e = dx_calloc(1, sizeof(*e));
    if (!e)
        return; /* not cached: a later full handshake */
    SSL_SESSION_up_ref(sess);
    e->sess = sess;
    e->expires = now + (uint64_t)SSL_SESSION_get_timeout(sess) * 1000u;
    e->id_len = len;
    memcpy(e->id, id, len);
    size_t b = hash_id(id, len, c->nbuckets);
    e->hnext = c->buckets[b];
    c->buckets[b] = e;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    else
        c->tail = e;
    c->head = e;
    c->count++;
}

SSL_SESSION *dx_tls_session_cache_get(dx_tls_session_cache *c, const uint8_t *id,
                                      unsigned len, uint64_t now)
{
    entry *e = find(c, id, len);
    if (e && now >= e->expires) {
        unlink_entry(c, e);
        e = NULL;
    }
    if (!e) {
        c->misses++;
        return NULL;
    }
    c->hits++;
    if (e != c->head) { /* most recently used */
        e->prev->next = e->next;
        if (e->next)
            e->next->prev = e->prev;
        else
            c->tail = e->prev;
        e->prev = NULL;
        e->next = c->head;
        c->head->prev = e;
        c->head = e;
    }
    SSL_SESSION_up_ref(e->sess);
    return e->sess;
}

void dx_tls_session_cache_remove(dx_tls_session_cache *c, const uint8_t *id, unsigned len)
{
    entry *e = find(c, id, len);
    if (e)
        unlink_entry(c, e);
}

void dx_tls_session_cache_counts(const dx_tls_session_cache *c, uint64_t *hits,
                                 uint64_t *misses, uint64_t *evictions, size_t *entries)
{
    *hits = c->hits;
    *misses = c->misses;
    *evictions = c->evictions;
    *entries = c->count;
}
