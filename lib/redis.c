/*
 * The Redis session store (include/duplex/redis.h): hiredis's asynchronous
 * API on the libuv loop, lookups bounded by one timer over a list of
 * waiting lookups (all share one timeout, so the list is in deadline
 * order), reconnection with backoff.
 */
#include "config.h"

#include <duplex/redis.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "../filters/tls/tls_internal.h"
#include "alloc.h"

#define MAX_ID 32
#define MAX_PREFIX 256

typedef struct lookup {
    struct lookup *next, *prev; /* the waiting list, oldest first */
    dx_redis_store *rs;
    dx_tls_pending *p; /* NULL once answered */
    uint64_t deadline; /* uv_now() */
    uint8_t id[MAX_ID];
    size_t id_len;
} lookup;

typedef struct attachment {
    struct attachment *next;
    dx_redis_store *rs;
    dx_tls_server *srv;
} attachment;

struct dx_redis_store {
    uv_loop_t *loop;
    char *host, *user, *password;
    int port;
    long db;
    char *prefix;
    uint64_t timeout, backoff_min, backoff_max, backoff;
    redisAsyncContext *ac;
    bool ready, freeing;
    unsigned closing; /* timers still to close */
    uv_timer_t lookup_timer, retry_timer;
    lookup *head, *tail;
    attachment *attached;
    dx_redis_stats stats;
    /* shared ticket keys: keys of period n (cur) and n - 1 (prev) */
    bool tickets;
    uint64_t period;
    dx_tls_clock_fn clock;
    void *clock_arg;
    uv_timer_t tick_timer;
    uint64_t held_period, asking_period;
    bool have_keys, asking;
    uint8_t cur[48], prev[48];
    bool have_prev;
};

/* ---- the URL ------------------------------------------------------------- */

static char *dup_n(const char *s, size_t n)
{
    char *r = dx_malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = 0;
    }
    return r;
}

static bool digits(const char *s, size_t n, long max, long *out)
{
    if (n == 0 || n > 9)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

static int parse_url(dx_redis_store *rs, const char *url)
{
    static const char scheme[] = "redis://";
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return DX_EINVAL;
    const char *s = url + sizeof(scheme) - 1;
    /* The user information ends at the last '@': a password may hold '@'
     * and '/'; a host holds neither. */
    const char *at = strrchr(s, '@');
    const char *slash = strchr(at ? at + 1 : s, '/');
    if (at) {
        const char *colon = memchr(s, ':', (size_t)(at - s));
        if (!colon || colon + 1 == at)
            return DX_EINVAL;
        if (colon > s && !(rs->user = dup_n(s, (size_t)(colon - s))))
            return DX_ENOMEM;
        if (!(rs->password = dup_n(colon + 1, (size_t)(at - colon - 1))))
            return DX_ENOMEM;
        s = at + 1;
    }
    const char *end = slash ? slash : s + strlen(s);
    const char *host = s, *host_end, *port = NULL;
    if (*s == '[') {
        const char *close = memchr(s, ']', (size_t)(end - s));
        if (!close)
            return DX_EINVAL;
        host = s + 1;
        host_end = close;
        if (close + 1 < end) {
            if (close[1] != ':')
                return DX_EINVAL;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', (size_t)(end - s));
        host_end = colon ? colon : end;
        if (colon)
            port = colon + 1;
    }
    if (host_end == host)
        return DX_EINVAL;
    long v = 6379;
    if (port && !digits(port, (size_t)(end - port), 65535, &v))
        return DX_EINVAL;
    if (v == 0)
        return DX_EINVAL;
    rs->port = (int)v;
    rs->db = 0;
    if (slash && slash[1] && !digits(slash + 1, strlen(slash + 1), 1000000, &rs->db))
        return DX_EINVAL;
    if (!(rs->host = dup_n(host, (size_t)(host_end - host))))
        return DX_ENOMEM;
    return 0;
}

/* ---- lookups --------------------------------------------------------------- */

static void unlink_lookup(dx_redis_store *rs, lookup *l)
{
    if (l->prev)
        l->prev->next = l->next;
    else if (rs->head == l)
        rs->head = l->next;
    else
        return; /* not in the list */
    if (l->next)
        l->next->prev = l->prev;
    else
        rs->tail = l->prev;
    l->next = l->prev = NULL;
}

static void on_lookup_timer(uv_timer_t *t);

static void arm_timer(dx_redis_store *rs)
{
    if (rs->freeing)
        return;
    if (!rs->head) {
        uv_timer_stop(&rs->lookup_timer);
        return;
    }
    uint64_t now = uv_now(rs->loop);
    uint64_t d = rs->head->deadline > now ? rs->head->deadline - now : 0;
    uv_timer_start(&rs->lookup_timer, on_lookup_timer, d, 0);
}

/* Answers l (once) and takes it off the list. */
static void answer(lookup *l, const void *der, size_t len)
{
    dx_redis_store *rs = l->rs;
    dx_tls_pending *p = l->p;
    unlink_lookup(rs, l);
    l->p = NULL;
    if (p)
        dx_tls_session_found(p, der, len);
}

static void on_lookup_timer(uv_timer_t *t)
{
    dx_redis_store *rs = t->data;
    uint64_t now = uv_now(rs->loop);
    while (rs->head && rs->head->deadline <= now) {
        rs->stats.timeouts++;
        answer(rs->head, NULL, 0); /* the reply, if any, frees it */
    }
    arm_timer(rs);
}

static void on_get_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    redisReply *reply = r;
    lookup *l = priv;
    dx_redis_store *rs = l->rs;
    if (l->p) {
        if (reply && reply->type == REDIS_REPLY_STRING && reply->len > 0) {
            rs->stats.hits++;
            answer(l, reply->str, (size_t)reply->len);
        } else {
            if (!reply || reply->type != REDIS_REPLY_NIL)
                rs->stats.errors++;
            else
                rs->stats.misses++;
            answer(l, NULL, 0);
        }
        arm_timer(rs);
    }
    dx_free(l);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    redisReply *reply = r;
    dx_redis_store *rs = priv;
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        rs->stats.errors++;
}

static int key_of(const dx_redis_store *rs, const uint8_t *id, size_t id_len,
                  char key[MAX_PREFIX + 2 + 2 * MAX_ID + 1])
{
    int n = snprintf(key, MAX_PREFIX + 3, "%ss:", rs->prefix);
    for (size_t i = 0; i < id_len; i++)
        n += snprintf(key + n, 3, "%02x", id[i]);
    return n;
}

static void store_get(void *arg, const uint8_t *id, size_t id_len, dx_tls_pending *p)
{
    attachment *a = arg;
    dx_redis_store *rs = a->rs;
    rs->stats.gets++;
    if (!rs->ac || !rs->ready || id_len > MAX_ID || rs->freeing) {
        rs->stats.unavailable++;
        dx_tls_session_found(p, NULL, 0);
        return;
    }
    lookup *l = dx_calloc(1, sizeof(*l));
    if (!l) {
        rs->stats.unavailable++;
        dx_tls_session_found(p, NULL, 0);
        return;
    }
    l->rs = rs;
    l->p = p;
    memcpy(l->id, id, id_len);
    l->id_len = id_len;
    char key[MAX_PREFIX + 2 + 2 * MAX_ID + 1];
    int kn = key_of(rs, id, id_len, key);
    if (redisAsyncCommand(rs->ac, on_get_reply, l, "GET %b", key, (size_t)kn) != REDIS_OK) {
        dx_free(l);
        rs->stats.errors++;
        dx_tls_session_found(p, NULL, 0);
        return;
    }
    l->deadline = uv_now(rs->loop) + rs->timeout;
    l->prev = rs->tail;
    if (rs->tail)
        rs->tail->next = l;
    else
        rs->head = l;
    rs->tail = l;
    if (rs->head == l)
        arm_timer(rs);
}

static void store_put(void *arg, const uint8_t *id, size_t id_len, const uint8_t *der,
                      size_t len, uint64_t expires)
{
    attachment *a = arg;
    dx_redis_store *rs = a->rs;
    if (!rs->ac || !rs->ready || id_len > MAX_ID || rs->freeing)
        return;
    uint64_t now = dx_tls_server_now(a->srv);
    if (expires <= now)
        return;
    char key[MAX_PREFIX + 2 + 2 * MAX_ID + 1];
    int kn = key_of(rs, id, id_len, key);
    char px[24];
    snprintf(px, sizeof(px), "%llu", (unsigned long long)(expires - now));
    if (redisAsyncCommand(rs->ac, on_reply, rs, "SET %b %b PX %s", key, (size_t)kn, der, len,
                          px) == REDIS_OK)
        rs->stats.puts++;
    else
        rs->stats.errors++;
}

int dx_redis_store_delete(dx_redis_store *rs, const uint8_t *id, size_t id_len)
{
    if (!rs || !id || id_len == 0 || id_len > MAX_ID)
        return DX_EINVAL;
    if (!rs->ac || !rs->ready || rs->freeing)
        return DX_ESTATE;
    char key[MAX_PREFIX + 2 + 2 * MAX_ID + 1];
    int kn = key_of(rs, id, id_len, key);
    if (redisAsyncCommand(rs->ac, on_reply, rs, "DEL %b", key, (size_t)kn) != REDIS_OK)
        return DX_ENOMEM;
    rs->stats.dels++;
    return 0;
}

static void store_del(void *arg, const uint8_t *id, size_t id_len)
{
    attachment *a = arg;
    a->rs->stats.bad++;
    dx_redis_store_delete(a->rs, id, id_len);
}

static const dx_tls_session_store store_ops = {
    .put = store_put,
    .get = store_get,
    .del = store_del,
};

/* ---- ticket keys ------------------------------------------------------------- */

static uint64_t wall_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void apply_keys(dx_redis_store *rs, dx_tls_server *srv)
{
    if (!rs->have_keys)
        return;
    uint8_t held[48];
    dx_tls_server_get_ticket_keys(srv, held);
    if (memcmp(held, rs->cur, 48) != 0) {
        if (rs->have_prev)
            dx_tls_server_set_ticket_keys(srv, rs->prev);
        dx_tls_server_set_ticket_keys(srv, rs->cur);
    }
    OPENSSL_cleanse(held, sizeof(held));
}

typedef struct key_ask {
    dx_redis_store *rs;
    uint64_t n;
    bool is_prev;
} key_ask;

/* The replies to GET tk:n-1 then GET tk:n, in that order. */
static void on_key_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    redisReply *reply = r;
    key_ask *k = priv;
    dx_redis_store *rs = k->rs;
    bool ok = reply && reply->type == REDIS_REPLY_STRING && reply->len == 48;
    if (reply && !ok && reply->type != REDIS_REPLY_NIL)
        rs->stats.errors++;
    if (!reply)
        rs->stats.errors++;
    if (k->is_prev) {
        if (ok && !rs->freeing) {
            memcpy(rs->prev, reply->str, 48);
            rs->have_prev = true;
        } else {
            rs->have_prev = false;
        }
    } else {
        rs->asking = false;
        if (ok && !rs->freeing && k->n == rs->asking_period) {
            memcpy(rs->cur, reply->str, 48);
            rs->have_keys = true;
            rs->held_period = k->n;
            rs->stats.key_sets++;
            for (attachment *a = rs->attached; a; a = a->next)
                apply_keys(rs, a->srv);
        }
    }
    dx_free(k);
}

static void ask_keys(dx_redis_store *rs)
{
    if (!rs->tickets || !rs->ac || !rs->ready || rs->asking || rs->freeing)
        return;
    uint64_t n = rs->clock(rs->clock_arg) / rs->period;
    if (rs->have_keys && n == rs->held_period)
        return;
    uint8_t fresh[48];
    if (RAND_bytes(fresh, sizeof(fresh)) != 1)
        return;
    key_ask *kp = dx_calloc(1, sizeof(*kp)), *kc = dx_calloc(1, sizeof(*kc));
    if (!kp || !kc) {
        dx_free(kp);
        dx_free(kc);
        return;
    }
    kp->rs = kc->rs = rs;
    kp->n = kc->n = n;
    kp->is_prev = true;
    char key[MAX_PREFIX + 32], prev[MAX_PREFIX + 32], px[24];
    snprintf(key, sizeof(key), "%stk:%llu", rs->prefix, (unsigned long long)n);
    snprintf(prev, sizeof(prev), "%stk:%llu", rs->prefix, (unsigned long long)(n - 1));
    snprintf(px, sizeof(px), "%llu", (unsigned long long)(3 * rs->period));
    /* The first server to ask makes the period's keys; all read the same. */
    redisAsyncCommand(rs->ac, on_reply, rs, "SET %s %b NX PX %s", key, fresh, sizeof(fresh),
                      px);
    OPENSSL_cleanse(fresh, sizeof(fresh));
    if (redisAsyncCommand(rs->ac, on_key_reply, kp, "GET %s", prev) != REDIS_OK) {
        dx_free(kp);
        dx_free(kc);
        return;
    }
    if (redisAsyncCommand(rs->ac, on_key_reply, kc, "GET %s", key) != REDIS_OK) {
        dx_free(kc);
        return;
    }
    rs->asking = true;
    rs->asking_period = n;
}

static void on_tick_timer(uv_timer_t *t) { ask_keys(t->data); }

int dx_redis_store_share_ticket_keys(dx_redis_store *rs, uint64_t period_ms)
{
    if (!rs || rs->freeing || (period_ms && period_ms < 1000))
        return DX_EINVAL;
    rs->tickets = period_ms != 0;
    if (!rs->tickets) {
        uv_timer_stop(&rs->tick_timer);
        return 0;
    }
    if (period_ms != rs->period)
        rs->have_keys = false;
    rs->period = period_ms;
    uv_timer_start(&rs->tick_timer, on_tick_timer, DX_REDIS_TICKET_CHECK_MS,
                   DX_REDIS_TICKET_CHECK_MS);
    ask_keys(rs);
    return 0;
}

int dx_redis_store_set_clock(dx_redis_store *rs, dx_tls_clock_fn now, void *arg)
{
    if (!rs)
        return DX_EINVAL;
    rs->clock = now ? now : wall_ms;
    rs->clock_arg = now ? arg : NULL;
    return 0;
}

/* ---- hiredis on libuv ------------------------------------------------------------ */

/*
 * hiredis's events on a uv_poll_t, as <hiredis/adapters/libuv.h> does,
 * except for one thing: when libuv reports an error on the socket (a
 * refused connection, a reset), that adapter drops the report and hiredis
 * never learns that the connection is gone; here hiredis reads or writes
 * as it asked to and finds the error itself.
 */
typedef struct uv_events {
    uv_poll_t handle;
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    int events;
} uv_events;

static void ev_poll(uv_poll_t *h, int status, int events)
{
    uv_events *p = h->data;
    int ev = status < 0 ? p->events : events;
    if (p->ac && (ev & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void ev_update(uv_events *p, int events)
{
    p->events = events;
    if (events)
        uv_poll_start(&p->handle, events, ev_poll);
    else
        uv_poll_stop(&p->handle);
}

static void ev_add_read(void *d) { ev_update(d, ((uv_events *)d)->events | UV_READABLE); }
static void ev_del_read(void *d) { ev_update(d, ((uv_events *)d)->events & ~UV_READABLE); }
static void ev_add_write(void *d) { ev_update(d, ((uv_events *)d)->events | UV_WRITABLE); }
static void ev_del_write(void *d) { ev_update(d, ((uv_events *)d)->events & ~UV_WRITABLE); }

static void ev_closed(uv_handle_t *h) { dx_free(h->data); }

static void ev_cleanup(void *d)
{
    uv_events *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->handle, ev_closed);
}

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    uv_events *p = dx_calloc(1, sizeof(*p));
    if (!p)
        return REDIS_ERR;
    if (uv_poll_init_socket(loop, &p->handle, ac->c.fd) != 0) {
        dx_free(p);
        return REDIS_ERR;
    }
    p->handle.data = p;
    p->ac = ac;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    ac->ev.data = p;
    return REDIS_OK;
}

/* ---- the connection ---------------------------------------------------------- */

static void connect_now(dx_redis_store *rs);

static void on_retry_timer(uv_timer_t *t) { connect_now(t->data); }

static void retry_later(dx_redis_store *rs);

/* A connection not up in time is dropped (also one whose refusal libuv
 * reported to hiredis's adapter as a poll error, which it ignores). */
static void on_connect_timer(uv_timer_t *t)
{
    dx_redis_store *rs = t->data;
    if (rs->ready || !rs->ac)
        return;
    redisAsyncContext *ac = rs->ac;
    rs->ac = NULL;
    redisAsyncFree(ac);
    retry_later(rs);
}

static void retry_later(dx_redis_store *rs)
{
    rs->ready = false;
    rs->asking = false;
    rs->ac = NULL;
    if (rs->freeing)
        return;
    rs->stats.connect_failures++;
    uv_timer_stop(&rs->retry_timer);
    uv_timer_start(&rs->retry_timer, on_retry_timer, rs->backoff, 0);
    rs->backoff = rs->backoff * 2 > rs->backoff_max ? rs->backoff_max : rs->backoff * 2;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    dx_redis_store *rs = ac->data;
    if (status != REDIS_OK && rs->ac == ac)
        retry_later(rs); /* hiredis frees ac */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    dx_redis_store *rs = ac->data;
    if (rs->ac == ac)
        retry_later(rs);
}

/* The last of AUTH and SELECT (or a PING): the connection serves. */
static void on_ready(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    dx_redis_store *rs = priv;
    if (!reply || rs->ac != ac)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        rs->stats.errors++;
        redisAsyncDisconnect(ac); /* on_disconnect retries */
        return;
    }
    rs->ready = true;
    uv_timer_stop(&rs->retry_timer);
    rs->stats.connects++;
    rs->backoff = rs->backoff_min;
    ask_keys(rs);
}

/* AUTH or SELECT refused: the connection is of no use. */
static void on_setup(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    dx_redis_store *rs = priv;
    if (reply && reply->type == REDIS_REPLY_ERROR && rs->ac == ac) {
        rs->stats.errors++;
        redisAsyncDisconnect(ac);
    }
}

static void connect_now(dx_redis_store *rs)
{
    if (rs->freeing)
        return;
    redisAsyncContext *ac = redisAsyncConnect(rs->host, rs->port);
    if (!ac) {
        retry_later(rs);
        return;
    }
    if (ac->err || ev_attach(ac, rs->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        retry_later(rs);
        return;
    }
    ac->data = rs;
    rs->ac = ac;
    uv_timer_start(&rs->retry_timer, on_connect_timer, DX_REDIS_CONNECT_TIMEOUT_MS, 0);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Queued at once: hiredis sends them when connected, in order. */
    if (rs->password) {
        if (rs->user)
            redisAsyncCommand(ac, on_setup, rs, "AUTH %s %s", rs->user, rs->password);
        else
            redisAsyncCommand(ac, on_setup, rs, "AUTH %s", rs->password);
    }
    if (rs->db)
        redisAsyncCommand(ac, on_setup, rs, "SELECT %ld", rs->db);
    redisAsyncCommand(ac, on_ready, rs, "PING");
}

/* ---- the store ------------------------------------------------------------------ */

static void free_memory(dx_redis_store *rs)
{
    for (attachment *a = rs->attached, *n; a; a = n) {
        n = a->next;
        dx_free(a);
    }
    dx_free(rs->host);
    dx_free(rs->user);
    if (rs->password)
        OPENSSL_cleanse(rs->password, strlen(rs->password));
    dx_free(rs->password);
    dx_free(rs->prefix);
    OPENSSL_cleanse(rs->cur, sizeof(rs->cur));
    OPENSSL_cleanse(rs->prev, sizeof(rs->prev));
    dx_free(rs);
    dx_live_dec();
}

static void on_timer_closed(uv_handle_t *h)
{
    dx_redis_store *rs = h->data;
    if (--rs->closing == 0)
        free_memory(rs);
}

int dx_redis_store_new(uv_loop_t *loop, const char *url, dx_redis_store **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    if (!loop || !url)
        return DX_EINVAL;
    dx_redis_store *rs = dx_calloc(1, sizeof(*rs));
    if (!rs)
        return DX_ENOMEM;
    dx_live_inc();
    int rc = parse_url(rs, url);
    if (rc == 0 && !(rs->prefix = dx_strdup(DX_REDIS_DEFAULT_PREFIX)))
        rc = DX_ENOMEM;
    if (rc != 0) {
        free_memory(rs);
        return rc;
    }
    rs->loop = loop;
    rs->timeout = DX_REDIS_DEFAULT_TIMEOUT_MS;
    rs->backoff_min = rs->backoff = DX_REDIS_DEFAULT_BACKOFF_MIN_MS;
    rs->backoff_max = DX_REDIS_DEFAULT_BACKOFF_MAX_MS;
    rs->clock = wall_ms;
    rs->period = DX_REDIS_DEFAULT_TICKET_PERIOD_MS;
    uv_timer_init(loop, &rs->lookup_timer);
    uv_timer_init(loop, &rs->retry_timer);
    uv_timer_init(loop, &rs->tick_timer);
    rs->lookup_timer.data = rs->retry_timer.data = rs->tick_timer.data = rs;
    connect_now(rs);
    *out = rs;
    return 0;
}

void dx_redis_store_free(dx_redis_store *rs)
{
    if (!rs)
        return;
    rs->freeing = true;
    for (attachment *a = rs->attached; a; a = a->next)
        dx_tls_server_set_session_store(a->srv, NULL, NULL);
    if (rs->ac) {
        redisAsyncContext *ac = rs->ac;
        rs->ac = NULL;
        redisAsyncFree(ac); /* the waiting lookups get NULL replies: none */
    }
    while (rs->head)
        answer(rs->head, NULL, 0);
    rs->closing = 3;
    uv_close((uv_handle_t *)&rs->tick_timer, on_timer_closed);
    uv_close((uv_handle_t *)&rs->lookup_timer, on_timer_closed);
    uv_close((uv_handle_t *)&rs->retry_timer, on_timer_closed);
}

int dx_redis_store_set_prefix(dx_redis_store *rs, const char *prefix)
{
    if (!rs || !prefix || !*prefix || strlen(prefix) > MAX_PREFIX)
        return DX_EINVAL;
    char *p = dx_strdup(prefix);
    if (!p)
        return DX_ENOMEM;
    dx_free(rs->prefix);
    rs->prefix = p;
    return 0;
}

int dx_redis_store_set_timeout(dx_redis_store *rs, uint64_t ms)
{
    if (!rs || ms == 0)
        return DX_EINVAL;
    rs->timeout = ms;
    return 0;
}

int dx_redis_store_set_backoff(dx_redis_store *rs, uint64_t min_ms, uint64_t max_ms)
{
    if (!rs || min_ms == 0 || min_ms > max_ms)
        return DX_EINVAL;
    rs->backoff_min = rs->backoff = min_ms;
    rs->backoff_max = max_ms;
    return 0;
}

int dx_redis_store_attach(dx_redis_store *rs, dx_tls_server *srv)
{
    if (!rs || !srv || rs->freeing)
        return DX_EINVAL;
    attachment *a = rs->attached;
    while (a && a->srv != srv)
        a = a->next;
    if (!a) {
        if (!(a = dx_calloc(1, sizeof(*a))))
            return DX_ENOMEM;
        a->rs = rs;
        a->srv = srv;
        a->next = rs->attached;
        rs->attached = a;
    }
    if (rs->tickets)
        apply_keys(rs, srv);
    return dx_tls_server_set_session_store(srv, &store_ops, a);
}

bool dx_redis_store_connected(const dx_redis_store *rs) { return rs && rs->ac && rs->ready; }

void dx_redis_store_get_stats(const dx_redis_store *rs, dx_redis_stats *out)
{
    if (!out)
        return;
    if (!rs)
        memset(out, 0, sizeof(*out));
    else
        *out = rs->stats;
}
