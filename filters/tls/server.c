/*
 * The TLS server (include/duplex/tls_server.h): a default context, a table
 * of contexts by server name, defaults and events for the connections it
 * accepts over any transport.
 */
#include "config.h"

#include <duplex/tls_server.h>

#include <ctype.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "alloc.h"
#include "tls_internal.h"

typedef struct ctx_entry {
    struct ctx_entry *next;
    char *pattern;
    dx_tls_ctx *ctx;
} ctx_entry;

struct dx_tls_server {
    unsigned refs; /* the handle, and one per open connection */
    dx_tls_ctx *ctx;
    ctx_entry *contexts; /* the newest first */
    dx_tls_server_events ev;
    void *user;
    bool request_set, request_cert, reject_unauthorized, allow_half_open, timeout_set;
    bool allow_truncation, release_buffers;
    bool client_reneg;
    unsigned reneg_limit;
    uint64_t reneg_window;
    dx_tls_alpn_cb alpn_cb;
    void *alpn_user;
    uint64_t handshake_timeout;
    char **alpn; /* NULL-terminated, or NULL */
    size_t open;
    bool no_tickets;
    dx_tls_ticket_keys keys;
    dx_tls_server_stats stats;
    dx_tls_session_cache *cache;
    dx_tls_session_store store;
    void *store_arg;
    bool external;
    dx_tls_clock_fn clock;
    void *clock_arg;
    dx_tls_psk_cb psk_cb;
    void *psk_user;
    char *psk_hint;
};

static uint64_t mono_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t now_ms(const dx_tls_server *srv) { return srv->clock(srv->clock_arg); }

uint64_t dx_tls_server_now(const dx_tls_server *srv) { return now_ms(srv); }

dx_tls_ticket_keys *dx_tls_server_ticket_keys(dx_tls_server *srv) { return &srv->keys; }

static void free_alpn(char **list)
{
    for (char **p = list; p && *p; p++)
        dx_free(*p);
    dx_free(list);
}

static void server_unref(dx_tls_server *srv)
{
    if (--srv->refs > 0)
        return;
    for (ctx_entry *e = srv->contexts, *n; e; e = n) {
        n = e->next;
        dx_free(e->pattern);
        dx_tls_ctx_unref(e->ctx);
        dx_free(e);
    }
    free_alpn(srv->alpn);
    dx_free(srv->psk_hint);
    dx_tls_session_cache_free(srv->cache);
    dx_tls_ctx_unref(srv->ctx);
    OPENSSL_cleanse(&srv->keys, sizeof(srv->keys));
    dx_free(srv);
    dx_live_dec();
}

int dx_tls_server_new(dx_tls_ctx *ctx, dx_tls_server **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    if (!ctx)
        return DX_EINVAL;
    dx_tls_server *srv = dx_calloc(1, sizeof(*srv));
    if (!srv)
        return DX_ENOMEM;
    dx_live_inc();
    srv->refs = 1;
    srv->clock = mono_ms;
    if (dx_tls_ticket_keys_init(&srv->keys) != 0 ||
        dx_tls_session_cache_new(DX_TLS_SESSION_CACHE_DEFAULT, &srv->cache) != 0) {
        dx_free(srv);
        dx_live_dec();
        return DX_ENOMEM;
    }
    srv->ctx = dx_tls_ctx_ref(ctx);
    srv->reject_unauthorized = true;
    *out = srv;
    return 0;
}

void dx_tls_server_free(dx_tls_server *srv)
{
    if (!srv)
        return;
    /* Connections outlive the handle: they hear from the server no more. */
    memset(&srv->ev, 0, sizeof(srv->ev));
    srv->user = NULL;
    server_unref(srv);
}

int dx_tls_server_set_events(dx_tls_server *srv, const dx_tls_server_events *ev,
                             void *user)
{
    if (!srv)
        return DX_EINVAL;
    if (ev)
        srv->ev = *ev;
    else
        memset(&srv->ev, 0, sizeof(srv->ev));
    srv->user = user;
    if (srv->ev.on_keylog) {
        dx_tls_ctx_want_keylog(srv->ctx);
        for (ctx_entry *e = srv->contexts; e; e = e->next)
            dx_tls_ctx_want_keylog(e->ctx);
    }
    return 0;
}

int dx_tls_server_set_context(dx_tls_server *srv, dx_tls_ctx *ctx)
{
    if (!srv || !ctx)
        return DX_EINVAL;
    dx_tls_ctx_ref(ctx);
    dx_tls_ctx_unref(srv->ctx);
    srv->ctx = ctx;
    if (srv->ev.on_keylog)
        dx_tls_ctx_want_keylog(ctx);
    return 0;
}

int dx_tls_server_add_context(dx_tls_server *srv, const char *hostname, dx_tls_ctx *ctx)
{
    if (!srv || !hostname || !*hostname || !ctx)
        return DX_EINVAL;
    ctx_entry *e = dx_calloc(1, sizeof(*e));
    if (!e || !(e->pattern = dx_strdup(hostname))) {
        dx_free(e);
        return DX_ENOMEM;
    }
    e->ctx = dx_tls_ctx_ref(ctx);
    e->next = srv->contexts;
    srv->contexts = e;
    if (srv->ev.on_keylog)
        dx_tls_ctx_want_keylog(ctx);
    return 0;
}

/* Node's addContext pattern: "*" is any run of characters but a dot; the
 * rest matches itself, ignoring case. */
static bool matches(const char *pat, const char *name)
{
    for (; *pat; pat++, name++) {
        if (*pat == '*') {
            for (const char *n = name;; n++) {
                if (matches(pat + 1, n))
                    return true;
                if (!*n || *n == '.')
                    return false;
            }
        }
        if (tolower((unsigned char)*pat) != tolower((unsigned char)*name))
            return false;
    }
    return !*name;
}

static dx_tls_ctx *context_for(const dx_tls_server *srv, const char *name)
{
    for (const ctx_entry *e = srv->contexts; e; e = e->next)
        if (matches(e->pattern, name))
            return e->ctx;
    return NULL;
}

static int copy_alpn(char ***slot, const char *const *protocols)
{
    size_t n = 0;
    while (protocols && protocols[n])
        n++;
    char **list = NULL;
    if (n) {
        if (!(list = dx_calloc(n + 1, sizeof(*list))))
            return DX_ENOMEM;
        for (size_t i = 0; i < n; i++)
            if (!(list[i] = dx_strdup(protocols[i]))) {
                free_alpn(list);
                return DX_ENOMEM;
            }
    }
    free_alpn(*slot);
    *slot = list;
    return 0;
}

int dx_tls_server_set_request_cert(dx_tls_server *srv, bool request, bool reject)
{
    if (!srv)
        return DX_EINVAL;
    srv->request_set = true;
    srv->request_cert = request;
    srv->reject_unauthorized = reject;
    return 0;
}

int dx_tls_server_set_alpn_protocols(dx_tls_server *srv, const char *const *protocols)
{
    if (!srv || (protocols && protocols[0] && srv->alpn_cb))
        return DX_EINVAL;
    size_t total = 0;
    for (size_t i = 0; protocols && protocols[i]; i++) {
        size_t n = strlen(protocols[i]);
        total += 1 + n;
        if (n == 0 || n > 255 || total > 0xffff)
            return DX_EINVAL;
    }
    return copy_alpn(&srv->alpn, protocols);
}

int dx_tls_server_set_alpn_callback(dx_tls_server *srv, dx_tls_alpn_cb cb, void *user)
{
    if (!srv || (cb && srv->alpn))
        return DX_EINVAL;
    srv->alpn_cb = cb;
    srv->alpn_user = user;
    return 0;
}

int dx_tls_server_set_allow_truncation(dx_tls_server *srv, bool allow)
{
    if (!srv)
        return DX_EINVAL;
    srv->allow_truncation = allow;
    return 0;
}

int dx_tls_server_set_release_buffers(dx_tls_server *srv, bool release)
{
    if (!srv)
        return DX_EINVAL;
    srv->release_buffers = release;
    return 0;
}

int dx_tls_server_set_client_renegotiation(dx_tls_server *srv, bool allow, unsigned limit,
                                           uint64_t window_ms)
{
    if (!srv || limit > 1000)
        return DX_EINVAL;
    srv->client_reneg = allow;
    srv->reneg_limit = limit;
    srv->reneg_window = window_ms;
    return 0;
}

int dx_tls_server_set_allow_half_open(dx_tls_server *srv, bool allow)
{
    if (!srv)
        return DX_EINVAL;
    srv->allow_half_open = allow;
    return 0;
}

int dx_tls_server_set_handshake_timeout(dx_tls_server *srv, uint64_t ms)
{
    if (!srv)
        return DX_EINVAL;
    srv->handshake_timeout = ms;
    srv->timeout_set = true;
    return 0;
}

int dx_tls_server_set_psk_callback(dx_tls_server *srv, dx_tls_psk_cb cb, void *user)
{
    if (!srv)
        return DX_EINVAL;
    srv->psk_cb = cb;
    srv->psk_user = cb ? user : NULL;
    return 0;
}

int dx_tls_server_set_psk_identity_hint(dx_tls_server *srv, const char *hint)
{
    if (!srv || (hint && (!*hint || strlen(hint) > DX_TLS_PSK_IDENTITY_MAX)))
        return DX_EINVAL;
    char *copy = NULL;
    if (hint && !(copy = dx_strdup(hint)))
        return DX_ENOMEM;
    dx_free(srv->psk_hint);
    srv->psk_hint = copy;
    return 0;
}

size_t dx_tls_server_connections(const dx_tls_server *srv) { return srv ? srv->open : 0; }

int dx_tls_server_get_ticket_keys(const dx_tls_server *srv, uint8_t keys[48])
{
    if (!srv || !keys)
        return DX_EINVAL;
    memcpy(keys, srv->keys.cur, 48);
    return 0;
}

int dx_tls_server_set_ticket_keys(dx_tls_server *srv, const uint8_t keys[48])
{
    if (!srv || !keys)
        return DX_EINVAL;
    if (memcmp(keys, srv->keys.cur, 48) == 0)
        return 0; /* the keys held: nothing rotates */
    memcpy(srv->keys.prev, srv->keys.cur, 48);
    srv->keys.have_prev = true;
    memcpy(srv->keys.cur, keys, 48);
    return 0;
}

int dx_tls_server_set_tickets(dx_tls_server *srv, bool enabled)
{
    if (!srv)
        return DX_EINVAL;
    srv->no_tickets = !enabled;
    return 0;
}

void dx_tls_server_get_stats(const dx_tls_server *srv, dx_tls_server_stats *out)
{
    if (!out)
        return;
    if (!srv) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = srv->stats;
    out->tickets_renewed = srv->keys.renewed;
    out->tickets_unknown = srv->keys.unknown;
    size_t entries;
    dx_tls_session_cache_counts(srv->cache, &out->cache_hits, &out->cache_misses,
                                &out->cache_evictions, &entries);
    out->cache_entries = entries;
}

int dx_tls_server_set_session_cache_size(dx_tls_server *srv, size_t max)
{
    if (!srv)
        return DX_EINVAL;
    dx_tls_session_cache *c;
    if (dx_tls_session_cache_new(max, &c) != 0)
        return DX_ENOMEM;
    dx_tls_session_cache_free(srv->cache);
    srv->cache = c;
    return 0;
}

int dx_tls_server_set_clock(dx_tls_server *srv, dx_tls_clock_fn now, void *arg)
{
    if (!srv)
        return DX_EINVAL;
    srv->clock = now ? now : mono_ms;
    srv->clock_arg = now ? arg : NULL;
    return 0;
}

int dx_tls_server_set_session_store(dx_tls_server *srv, const dx_tls_session_store *store,
                                    void *arg)
{
    if (!srv || (store && (!store->put || !store->get)))
        return DX_EINVAL;
    srv->external = store != NULL;
    if (store)
        srv->store = *store;
    srv->store_arg = arg;
    return 0;
}

bool dx_tls_server_async_lookup(const dx_tls_server *srv) { return srv->external; }


void dx_tls_server_lookup(dx_tls_server *srv, const uint8_t *id, size_t len,
                          dx_tls_pending *p)
{
    srv->store.get(srv->store_arg, id, len, p);
}

void dx_tls_server_session_bad(dx_tls_server *srv, const uint8_t *id, size_t len)
{
    if (srv->external && srv->store.del)
        srv->store.del(srv->store_arg, id, len);
}

void dx_tls_server_session_new(dx_tls_server *srv, SSL *ssl, SSL_SESSION *sess)
{
    /* A TLS 1.3 session sent as a ticket lives in the ticket alone. */
    if (SSL_version(ssl) == TLS1_3_VERSION && !(SSL_get_options(ssl) & SSL_OP_NO_TICKET))
        return;
    uint64_t now = now_ms(srv);
    if (!srv->external) {
        dx_tls_session_cache_put(srv->cache, sess, now);
        return;
    }
    unsigned id_len;
    const unsigned char *id = SSL_SESSION_get_id(sess, &id_len);
    int n = i2d_SSL_SESSION(sess, NULL);
    if (n <= 0 || !id_len)
        return;
    unsigned char *der = dx_malloc((size_t)n), *q = der;
    if (!der)
        return;
    if (i2d_SSL_SESSION(sess, &q) == n)
        srv->store.put(srv->store_arg, id, id_len, der, (size_t)n,
                       now + (uint64_t)SSL_SESSION_get_timeout(sess) * 1000u);
    OPENSSL_cleanse(der, (size_t)n);
    dx_free(der);
}

SSL_SESSION *dx_tls_server_session_get(dx_tls_server *srv, const uint8_t *id, unsigned len)
{
    return dx_tls_session_cache_get(srv->cache, id, len, now_ms(srv));
}

/* ---- the connections' events, as the server's -------------------------- */

static void on_secure(dx_tls *t, void *u)
{
    dx_tls_server *srv = u;
    srv->stats.handshakes++;
    if (dx_tls_session_reused(t))
        srv->stats.resumed++;
    else if (dx_tls_offered_resumption(t))
        srv->stats.resume_failures++;
    if (srv->ev.on_secure_connection)
        srv->ev.on_secure_connection(srv, t, srv->user);
}

static void on_keylog(dx_tls *t, const char *line, void *u)
{
    dx_tls_server *srv = u;
    if (srv->ev.on_keylog)
        srv->ev.on_keylog(srv, t, line, srv->user);
}

bool dx_tls_server_keylog_wanted(const dx_tls_server *srv,
                                 void (*cb)(dx_tls *t, const char *line, void *user))
{
    return cb != on_keylog || srv->ev.on_keylog;
}

static void on_handshake_error(dx_tls *t, const dx_error *err, void *u)
{
    dx_tls_server *srv = u;
    if (srv->ev.on_client_error)
        srv->ev.on_client_error(srv, t, err, srv->user);
}

static void on_sni(dx_tls *t, const char *name, dx_tls_pending *p, void *u)
{
    dx_tls_server *srv = u;
    if (srv->ev.on_sni)
        srv->ev.on_sni(srv, t, name, p, srv->user);
    else /* cleared since the connection was accepted: the table decides */
        dx_tls_sni_done(p, context_for(srv, name));
}

static dx_tls_ctx *resolve_sni(void *u, const char *name) { return context_for(u, name); }

static void on_ocsp(dx_tls *t, const dx_tls_cert *cert, const dx_tls_cert *issuer,
                    dx_tls_pending *p, void *u)
{
    dx_tls_server *srv = u;
    if (srv->ev.on_ocsp_request)
        srv->ev.on_ocsp_request(srv, t, cert, issuer, p, srv->user);
    else
        dx_tls_ocsp_done(p, NULL, 0, NULL); /* the event went meanwhile */
}

static void on_closed(dx_tls *t, void *u)
{
    (void)t;
    dx_tls_server *srv = u;
    srv->open--;
    server_unref(srv);
}

static const dx_tls_events server_events = {
    .on_secure = on_secure,
    .on_keylog = on_keylog,
    .on_handshake_error = on_handshake_error,
};

int dx_tls_server_accept(dx_tls_server *srv, dx_stream *transport, dx_tls **out)
{
    if (out)
        *out = NULL;
    if (!srv || !transport || !out)
        return DX_EINVAL;
    dx_tls *t;
    int rc = dx_tls_new(srv->ctx, DX_TLS_SERVER, &t);
    if (rc != 0) {
        dx_stream_destroy(transport);
        return rc;
    }
    dx_tls_set_events(t, &server_events, srv);
    dx_tls_set_server(t, srv);
    if (srv->no_tickets)
        SSL_set_options(dx_tls_openssl(t), SSL_OP_NO_TICKET);
    srv->stats.accepted++;
    if (srv->request_set) {
        dx_tls_set_request_cert(t, srv->request_cert);
        dx_tls_set_reject_unauthorized(t, srv->reject_unauthorized);
    }
    dx_tls_set_allow_half_open(t, srv->allow_half_open);
    dx_tls_set_allow_truncation(t, srv->allow_truncation);
    dx_tls_set_release_buffers(t, srv->release_buffers);
    dx_tls_set_client_renegotiation(t, srv->client_reneg, srv->reneg_limit, srv->reneg_window);
    if (srv->timeout_set)
        dx_tls_set_handshake_timeout(t, srv->handshake_timeout);
    /* A name is looked up in the table at once; only the application's
     * choice makes the handshake wait. */
    if (srv->ev.on_sni)
        dx_tls_set_sni_callback(t, on_sni, srv);
    else if (srv->contexts)
        dx_tls_set_sni_resolver(t, resolve_sni, srv);
    if (srv->ev.on_ocsp_request)
        dx_tls_set_ocsp_callback(t, on_ocsp, srv);
    dx_tls_set_clock(t, srv->clock, srv->clock_arg);
    if (srv->alpn_cb)
        dx_tls_set_alpn_callback(t, srv->alpn_cb, srv->alpn_user);
    dx_tls_set_psk_callback(t, srv->psk_cb, srv->psk_user);
    if ((srv->alpn && (rc = dx_tls_set_alpn_protocols(t, (const char *const *)srv->alpn)) != 0) ||
        (srv->psk_hint && (rc = dx_tls_set_psk_identity_hint(t, srv->psk_hint)) != 0)) {
        dx_tls_destroy(t);
        dx_stream_destroy(transport);
        return rc;
    }
    srv->refs++;
    srv->open++;
    dx_tls_set_close_hook(t, on_closed, srv);
    if ((rc = dx_tls_attach(t, transport)) != 0) {
        dx_tls_destroy(t);
        return rc;
    }
    *out = t;
    dx_tls_start(t);
    return 0;
}
