/*
 * The Redis session store (include/duplex/redis.h) against a real
 * redis-server started by each test on a free loopback port: sessions
 * shared by two servers, AUTH and SELECT, Redis slow, down and back, and
 * garbage under a key. Connections run over memory pairs; the store runs
 * on a libuv loop that the tests drive.
 */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <duplex/redis.h>

#include "harness.h"
#include "peer.h"

/* ---- a redis-server ------------------------------------------------------- */

typedef struct redis {
    h_peer peer;
    unsigned port;
    char url[128];
} redis;

static void redis_start_on(redis *r, unsigned port, const char *password)
{
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%u", port);
    const char *argv[] = {"redis-server", "--port", portbuf, "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no",
                          password ? "--requirepass" : NULL, password, NULL};
    memset(&r->peer, 0, sizeof(r->peer));
    h_peer_start(&r->peer, argv);
    r->port = port;
    int fd = h_connect_loopback(port, 5000);
    ck_assert_int_ge(fd, 0);
    close(fd);
    if (password)
        snprintf(r->url, sizeof(r->url), "redis://:%s@127.0.0.1:%u/3", password, port);
    else
        snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%u", port);
}

static void redis_start(redis *r, const char *password)
{
    redis_start_on(r, h_free_port(), password);
}

static void redis_stop(redis *r)
{
    if (r->peer.pid > 0)
        kill(r->peer.pid, SIGCONT);
    h_peer_stop(&r->peer, 0);
    h_peer_free(&r->peer);
}

/* A synchronous client of the test's own, to look at and change keys. */
static redisContext *redis_sync(const redis *r, const char *password, int db)
{
    redisContext *c = redisConnect("127.0.0.1", (int)r->port);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->err, 0);
    redisReply *rep;
    if (password) {
        rep = redisCommand(c, "AUTH %s", password);
        ck_assert_ptr_nonnull(rep);
        ck_assert_int_eq(rep->type, REDIS_REPLY_STATUS);
        freeReplyObject(rep);
    }
    rep = redisCommand(c, "SELECT %d", db);
    ck_assert_ptr_nonnull(rep);
    freeReplyObject(rep);
    return c;
}

/* The one key under prefix (its name in key), or 0 keys. */
static size_t keys_under(redisContext *c, const char *prefix, char key[256])
{
    redisReply *rep = redisCommand(c, "KEYS %s*", prefix);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, REDIS_REPLY_ARRAY);
    size_t n = rep->elements;
    if (n && key)
        snprintf(key, 256, "%s", rep->element[0]->str);
    freeReplyObject(rep);
    return n;
}

/* ---- the loop --------------------------------------------------------------- */

static uv_loop_t loop;

static void tick(uv_timer_t *t) { (void)t; }

/* Runs the loop until done(arg) or ms pass; returns done(arg). */
static bool spin(bool (*done)(void *), void *arg, int ms)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, tick, 2, 2);
    int64_t end = h_now_ms() + ms;
    bool ok;
    while (!(ok = done && done(arg)) && h_now_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

static bool is_connected(void *arg) { return dx_redis_store_connected(arg); }
static bool never(void *arg) { (void)arg; return false; }

/* Tests about sharing wait for Redis however slow the machine (valgrind,
 * other work): the store's 50 ms lookup timeout is the subject of its own
 * test, not of these. */
#define PATIENT_MS 10000u

static void loop_open(void) { ck_assert_int_eq(uv_loop_init(&loop), 0); }

static void loop_close(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

/* ---- TLS ------------------------------------------------------------------------ */

static dx_pki_cert *ca, *leaf;

static void make_pki(void)
{
    dx_pki_opts o = {.common_name = "Redis Test CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &o, &ca, NULL));
    static const char *const names[] = {"default.test", NULL};
    dx_pki_opts l = {.common_name = "default", .dns_names = names};
    H_MUST(dx_pki_issue(ca, &l, &leaf, NULL));
}

static void free_pki(void)
{
    dx_pki_cert_free(leaf);
    dx_pki_cert_free(ca);
    leaf = ca = NULL;
}

static dx_tls_ctx *ctx_for(bool server, const char *version)
{
    return h_tls_ctx(ca, server ? leaf : NULL, version);
}

static const char *const versions[] = {"TLSv1.2", "TLSv1.3"};

typedef struct conn {
    dx_tls *c, *s;
    h_rec rc, rs;
    unsigned secure;
    uint8_t session[8192];
    size_t session_len;
} conn;

static void c_secure(dx_tls *t, void *u)
{
    (void)t;
    ((conn *)u)->secure++;
}

static void c_session(dx_tls *t, const uint8_t *sess, size_t len, void *u)
{
    (void)t;
    conn *k = u;
    ck_assert_uint_le(len, sizeof(k->session));
    memcpy(k->session, sess, len);
    k->session_len = len;
}

static const dx_tls_events client_events = {.on_secure = c_secure, .on_session = c_session};

static bool handshake_done(void *arg)
{
    conn *k = arg;
    return k->secure || k->rc.errors || k->rs.errors;
}

/*
 * A client connected to srv, offering the session in *sess (len *len, 0:
 * none), the loop run until the handshake is done. Returns whether the
 * session was reused; the session to offer next is left in sess. *ms: how
 * long the handshake took.
 */
static bool one_connection(dx_tls_server *srv, dx_tls_ctx *cctx, uint8_t *sess, size_t *len,
                           int64_t *ms)
{
    conn k;
    memset(&k, 0, sizeof(k));
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &k.c), 0);
    ck_assert_int_eq(dx_tls_set_events(k.c, &client_events, &k), 0);
    ck_assert_int_eq(dx_tls_set_servername(k.c, "default.test"), 0);
    if (*len)
        ck_assert_int_eq(dx_tls_set_session(k.c, sess, *len), 0);
    h_rec_attach(&k.rc, dx_tls_upper(k.c));
    ck_assert_int_eq(dx_tls_attach(k.c, a), 0);
    int64_t start = h_now_ms();
    ck_assert_int_eq(dx_tls_server_accept(srv, b, &k.s), 0);
    h_rec_attach(&k.rs, dx_tls_upper(k.s));
    ck_assert_int_eq(dx_tls_start(k.c), 0);
    ck_assert(spin(handshake_done, &k, 30000)); /* waited for, not timed */
    if (ms)
        *ms = h_now_ms() - start;
    ck_assert_uint_eq(k.secure, 1);
    ck_assert_uint_eq(k.rc.errors, 0);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(k.s), "x", 1), 0);
    bool reused = dx_tls_session_reused(k.c);
    ck_assert_int_eq(dx_tls_session_reused(k.s), reused);
    if (k.session_len) {
        memcpy(sess, k.session, k.session_len);
        *len = k.session_len;
    } else { /* a TLS 1.2 resumption brings no new session event */
        ck_assert_int_eq(dx_tls_get_session(k.c, sess, 8192, len), 0);
    }
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(k.c)), 0);
    ck_assert_uint_eq(k.rs.closes, 1);
    dx_tls_destroy(k.c);
    dx_tls_destroy(k.s);
    h_rec_free(&k.rc);
    h_rec_free(&k.rs);
    return reused;
}

typedef struct puts_seen {
    dx_redis_store *rs;
    redisContext *sync;
    const char *prefix;
} puts_seen;

/* The SET of the last session reached Redis. */
static bool stored(void *arg)
{
    puts_seen *p = arg;
    return keys_under(p->sync, p->prefix, NULL) > 0;
}

static dx_tls_server *server_on(dx_tls_ctx *ctx, dx_redis_store *rs)
{
    dx_tls_server *srv;
    ck_assert_int_eq(dx_tls_server_new(ctx, &srv), 0);
    ck_assert_int_eq(dx_tls_server_set_tickets(srv, false), 0);
    ck_assert_int_eq(dx_redis_store_attach(rs, srv), 0);
    return srv;
}

/* ---- the tests -------------------------------------------------------------------- */

/* Two servers with a store each (as two processes would be) share one
 * Redis: a session made on one resumes on the other; its key is under the
 * prefix and expires with the session timeout (300 s). */
START_TEST(sessions_shared_by_two_servers_resume)
{
    const char *v = versions[_i];
    loop_open();
    redis r;
    redis_start(&r, NULL);
    dx_tls_ctx *sctx = ctx_for(true, v), *cctx = ctx_for(false, v);
    dx_redis_store *r1, *r2;
    ck_assert_int_eq(dx_redis_store_new(&loop, r.url, &r1), 0);
    ck_assert_int_eq(dx_redis_store_new(&loop, r.url, &r2), 0);
    ck_assert_int_eq(dx_redis_store_set_timeout(r1, PATIENT_MS), 0);
    ck_assert_int_eq(dx_redis_store_set_timeout(r2, PATIENT_MS), 0);
    ck_assert_int_eq(dx_redis_store_set_prefix(r1, "cluster-a:"), 0);
    ck_assert_int_eq(dx_redis_store_set_prefix(r2, "cluster-a:"), 0);
    ck_assert(spin(is_connected, r1, 5000));
    ck_assert(spin(is_connected, r2, 5000));
    dx_tls_server *s1 = server_on(sctx, r1), *s2 = server_on(sctx, r2);
    redisContext *sync = redis_sync(&r, NULL, 0);
    uint8_t sess[8192];
    size_t len = 0;
    ck_assert(!one_connection(s1, cctx, sess, &len, NULL));
    puts_seen ps = {r1, sync, "cluster-a:s:"};
    ck_assert(spin(stored, &ps, 2000));
    char key[256];
    ck_assert_uint_ge(keys_under(sync, "cluster-a:s:", key), 1);
    redisReply *rep = redisCommand(sync, "PTTL %s", key);
    ck_assert_int_eq(rep->type, REDIS_REPLY_INTEGER);
    ck_assert_int_gt(rep->integer, 290000);
    ck_assert_int_le(rep->integer, 300000);
    freeReplyObject(rep);
    ck_assert(one_connection(s2, cctx, sess, &len, NULL));
    ck_assert(one_connection(s1, cctx, sess, &len, NULL));
    dx_redis_stats st;
    dx_redis_store_get_stats(r2, &st);
    ck_assert_uint_eq(st.gets, 1);
    ck_assert_uint_eq(st.hits, 1);
    ck_assert_uint_eq(st.timeouts + st.errors + st.unavailable + st.bad, 0);
    dx_redis_store_get_stats(r1, &st);
    ck_assert_uint_ge(st.puts, 1);
    ck_assert_uint_eq(st.connects, 1);
    dx_tls_server_stats ss;
    dx_tls_server_get_stats(s2, &ss);
    ck_assert_uint_eq(ss.resumed, 1);
    /* after the store is freed the server uses its own cache again */
    dx_redis_store_free(r1);
    dx_redis_store_free(r2);
    len = 0;
    ck_assert(!one_connection(s1, cctx, sess, &len, NULL));
    ck_assert(one_connection(s1, cctx, sess, &len, NULL));
    dx_tls_server_free(s1);
    dx_tls_server_free(s2);
    redisFree(sync);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
    redis_stop(&r);
    loop_close();
}
END_TEST

/* AUTH and SELECT from the URL: the sessions land in database 3; a wrong
 * password never connects, and handshakes are full ones, counted. */
START_TEST(password_and_database)
{
    loop_open();
    redis r;
    redis_start(&r, "s3c@r/et"); /* the userinfo ends at the last @ */
    dx_tls_ctx *sctx = ctx_for(true, "TLSv1.2"), *cctx = ctx_for(false, "TLSv1.2");
    dx_redis_store *good, *bad;
    ck_assert_int_eq(dx_redis_store_new(&loop, r.url, &good), 0);
    ck_assert_int_eq(dx_redis_store_set_timeout(good, PATIENT_MS), 0);
    char wrong[128];
    snprintf(wrong, sizeof(wrong), "redis://:nope@127.0.0.1:%u", r.port);
    ck_assert_int_eq(dx_redis_store_new(&loop, wrong, &bad), 0);
    ck_assert_int_eq(dx_redis_store_set_backoff(bad, 10, 20), 0);
    ck_assert(spin(is_connected, good, 5000));
    dx_tls_server *s1 = server_on(sctx, good), *s2 = server_on(sctx, bad);
    uint8_t sess[8192];
    size_t len = 0;
    ck_assert(!one_connection(s1, cctx, sess, &len, NULL));
    redisContext *sync = redis_sync(&r, "s3c@r/et", 3);
    puts_seen ps = {good, sync, DX_REDIS_DEFAULT_PREFIX "s:"};
    ck_assert(spin(stored, &ps, 2000));
    ck_assert(one_connection(s1, cctx, sess, &len, NULL));
    redisFree(sync);
    sync = redis_sync(&r, "s3c@r/et", 0);
    ck_assert_uint_eq(keys_under(sync, DX_REDIS_DEFAULT_PREFIX, NULL), 0);
    redisFree(sync);
    spin(never, NULL, 100);
    ck_assert(!dx_redis_store_connected(bad));
    ck_assert(!one_connection(s2, cctx, sess, &len, NULL));
    dx_redis_stats st;
    dx_redis_store_get_stats(bad, &st);
    ck_assert_uint_eq(st.connects, 0);
    ck_assert_uint_ge(st.connect_failures, 2); /* tried again, with backoff */
    ck_assert_uint_ge(st.errors, 1);
    ck_assert_uint_eq(st.hits, 0);
    dx_redis_store_free(good);
    dx_redis_store_free(bad);
    dx_tls_server_free(s1);
    dx_tls_server_free(s2);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
    redis_stop(&r);
    loop_close();
}
END_TEST

/* Redis stopped (SIGSTOP: slow, the connection up), then gone (killed),
 * then back on the same port: every handshake completes, full ones within
 * the timeout while Redis cannot answer, each failure counted, and
 * resumption comes back. */
START_TEST(redis_slow_down_and_back)
{
    const char *v = versions[_i];
    loop_open();
    redis r;
    redis_start(&r, NULL);
    dx_tls_ctx *sctx = ctx_for(true, v), *cctx = ctx_for(false, v);
    dx_redis_store *rs;
    ck_assert_int_eq(dx_redis_store_new(&loop, r.url, &rs), 0);
    ck_assert_int_eq(dx_redis_store_set_backoff(rs, 20, 50), 0);
    ck_assert_int_eq(dx_redis_store_set_timeout(rs, PATIENT_MS), 0);
    ck_assert(spin(is_connected, rs, 5000));
    dx_tls_server *srv = server_on(sctx, rs);
    uint8_t sess[8192];
    size_t len = 0;
    int64_t ms;
    ck_assert(!one_connection(srv, cctx, sess, &len, NULL));
    redisContext *sync = redis_sync(&r, NULL, 0);
    puts_seen ps = {rs, sync, DX_REDIS_DEFAULT_PREFIX "s:"};
    ck_assert(spin(stored, &ps, 2000));
    redisFree(sync);
    ck_assert(one_connection(srv, cctx, sess, &len, NULL));
    /* slow: lookups time out after 50 ms */
    ck_assert_int_eq(dx_redis_store_set_timeout(rs, 50), 0);
    ck_assert_int_eq(kill(r.peer.pid, SIGSTOP), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert(!one_connection(srv, cctx, sess, &len, &ms));
        ck_assert_int_ge(ms, 40);
        ck_assert_int_lt(ms, 1000);
    }
    dx_redis_stats st;
    dx_redis_store_get_stats(rs, &st);
    ck_assert_uint_eq(st.timeouts, 3);
    /* down: answered at once or as errors */
    unsigned port = r.port;
    redis_stop(&r);
    spin(never, NULL, 100);
    for (int i = 0; i < 3; i++) {
        ck_assert(!one_connection(srv, cctx, sess, &len, &ms));
        ck_assert_int_lt(ms, 1000);
    }
    dx_redis_store_get_stats(rs, &st);
    ck_assert_uint_ge(st.unavailable, 3);
    ck_assert_uint_ge(st.connect_failures, 1);
    ck_assert(!dx_redis_store_connected(rs));
    /* back: the store reconnects, sessions are stored and resume again */
    redis_start_on(&r, port, NULL);
    ck_assert(spin(is_connected, rs, 5000));
    ck_assert_int_eq(dx_redis_store_set_timeout(rs, PATIENT_MS), 0);
    ck_assert(!one_connection(srv, cctx, sess, &len, NULL));
    sync = redis_sync(&r, NULL, 0);
    ps.sync = sync;
    ck_assert(spin(stored, &ps, 2000));
    redisFree(sync);
    ck_assert(one_connection(srv, cctx, sess, &len, NULL));
    dx_redis_store_get_stats(rs, &st);
    ck_assert_uint_eq(st.connects, 2);
    dx_tls_server_stats ss;
    dx_tls_server_get_stats(srv, &ss);
    ck_assert_uint_eq(ss.resumed, 2);
    ck_assert_uint_eq(ss.handshakes, 10);
    dx_redis_store_free(rs);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
    redis_stop(&r);
    loop_close();
}
END_TEST

/* A key whose value is no session is a miss: a full handshake, counted as
 * bad, and the key deleted. A lookup that Redis answers after the store
 * was freed, or after the connection went, harms nothing. */
START_TEST(garbage_in_a_key_is_a_miss)
{
    loop_open();
    redis r;
    redis_start(&r, NULL);
    dx_tls_ctx *sctx = ctx_for(true, "TLSv1.2"), *cctx = ctx_for(false, "TLSv1.2");
    dx_redis_store *rs;
    ck_assert_int_eq(dx_redis_store_new(&loop, r.url, &rs), 0);
    ck_assert_int_eq(dx_redis_store_set_timeout(rs, PATIENT_MS), 0);
    ck_assert(spin(is_connected, rs, 5000));
    dx_tls_server *srv = server_on(sctx, rs);
    uint8_t sess[8192];
    size_t len = 0;
    ck_assert(!one_connection(srv, cctx, sess, &len, NULL));
    redisContext *sync = redis_sync(&r, NULL, 0);
    puts_seen ps = {rs, sync, DX_REDIS_DEFAULT_PREFIX "s:"};
    ck_assert(spin(stored, &ps, 2000));
    char key[256];
    ck_assert_uint_eq(keys_under(sync, DX_REDIS_DEFAULT_PREFIX "s:", key), 1);
    freeReplyObject(redisCommand(sync, "SET %s garbage", key));
    ck_assert(!one_connection(srv, cctx, sess, &len, NULL));
    dx_redis_stats st;
    dx_redis_store_get_stats(rs, &st);
    ck_assert_uint_eq(st.bad, 1);
    ck_assert_uint_eq(st.dels, 1);
    redisReply *rep = redisCommand(sync, "EXISTS %s", key);
    ck_assert_int_eq(rep->integer, 0);
    freeReplyObject(rep);
    /* a list under the key: an error reply, a miss */
    ck_assert(spin(stored, &ps, 2000));
    ck_assert_uint_eq(keys_under(sync, DX_REDIS_DEFAULT_PREFIX "s:", key), 1);
    freeReplyObject(redisCommand(sync, "DEL %s", key));
    freeReplyObject(redisCommand(sync, "RPUSH %s a", key));
    ck_assert(!one_connection(srv, cctx, sess, &len, NULL));
    dx_redis_store_get_stats(rs, &st);
    ck_assert_uint_ge(st.errors, 1);
    redisFree(sync);
    ck_assert_int_eq(dx_redis_store_delete(rs, NULL, 0), DX_EINVAL);
    ck_assert_int_eq(dx_redis_store_delete(rs, (const uint8_t *)"x", 33), DX_EINVAL);
    dx_redis_store_free(rs);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
    redis_stop(&r);
    loop_close();
}
END_TEST

/* Lookups still waiting when the store is freed are answered with none:
 * the handshake completes as a full one. */
START_TEST(free_answers_waiting_lookups)
{
    loop_open();
    redis r;
    redis_start(&r, NULL);
    dx_tls_ctx *sctx = ctx_for(true, "TLSv1.2"), *cctx = ctx_for(false, "TLSv1.2");
    dx_redis_store *rs;
    ck_assert_int_eq(dx_redis_store_new(&loop, r.url, &rs), 0);
    ck_assert_int_eq(dx_redis_store_set_timeout(rs, 10000), 0);
    ck_assert(spin(is_connected, rs, 5000));
    dx_tls_server *srv = server_on(sctx, rs);
    uint8_t sess[8192];
    size_t len = 0;
    ck_assert(!one_connection(srv, cctx, sess, &len, NULL));
    ck_assert_int_eq(kill(r.peer.pid, SIGSTOP), 0);
    conn k;
    memset(&k, 0, sizeof(k));
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &k.c), 0);
    ck_assert_int_eq(dx_tls_set_events(k.c, &client_events, &k), 0);
    ck_assert_int_eq(dx_tls_set_servername(k.c, "default.test"), 0);
    ck_assert_int_eq(dx_tls_set_session(k.c, sess, len), 0);
    h_rec_attach(&k.rc, dx_tls_upper(k.c));
    ck_assert_int_eq(dx_tls_attach(k.c, a), 0);
    ck_assert_int_eq(dx_tls_server_accept(srv, b, &k.s), 0);
    h_rec_attach(&k.rs, dx_tls_upper(k.s));
    ck_assert_int_eq(dx_tls_start(k.c), 0);
    spin(never, NULL, 50);
    ck_assert_uint_eq(k.secure, 0); /* waiting for Redis */
    dx_redis_store_free(rs);
    ck_assert_uint_eq(k.secure, 1);
    ck_assert(!dx_tls_session_reused(k.s));
    dx_tls_destroy(k.c);
    dx_tls_destroy(k.s);
    h_rec_free(&k.rc);
    h_rec_free(&k.rs);
    dx_tls_server_free(srv);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
    redis_stop(&r);
    loop_close();
}
END_TEST

/* ---- ticket keys ------------------------------------------------------------------ */

typedef struct two_servers {
    dx_tls_server *a, *b;
    uint8_t want_not[48]; /* keys to move away from */
} two_servers;

/* Both servers hold the same keys, other than want_not. */
static bool same_new_keys(void *arg)
{
    two_servers *t = arg;
    uint8_t ka[48], kb[48];
    dx_tls_server_get_ticket_keys(t->a, ka);
    dx_tls_server_get_ticket_keys(t->b, kb);
    return memcmp(ka, kb, 48) == 0 && memcmp(ka, t->want_not, 48) != 0;
}

static void rotate(two_servers *t, uint64_t period)
{
    dx_tls_server_get_ticket_keys(t->a, t->want_not);
    h_fake_now += period;
    ck_assert(spin(same_new_keys, t, 3000));
}

/* Two servers with a store each share ticket keys through Redis: one set
 * per period of a driven clock, made by whichever asked first. A ticket of
 * the previous period resumes on either server; one from two periods back
 * does not. */
START_TEST(ticket_keys_shared_and_rotated)
{
    const char *v = versions[_i];
    const uint64_t period = 3600u * 1000u;
    loop_open();
    redis r;
    redis_start(&r, NULL);
    dx_tls_ctx *sctx = ctx_for(true, v), *cctx = ctx_for(false, v);
    h_fake_now = 100 * period + 5;
    dx_redis_store *r1, *r2;
    ck_assert_int_eq(dx_redis_store_new(&loop, r.url, &r1), 0);
    ck_assert_int_eq(dx_redis_store_new(&loop, r.url, &r2), 0);
    ck_assert_int_eq(dx_redis_store_set_timeout(r1, PATIENT_MS), 0);
    ck_assert_int_eq(dx_redis_store_set_timeout(r2, PATIENT_MS), 0);
    two_servers t;
    memset(&t, 0, sizeof(t));
    ck_assert_int_eq(dx_tls_server_new(sctx, &t.a), 0);
    ck_assert_int_eq(dx_tls_server_new(sctx, &t.b), 0);
    dx_redis_store *stores[2] = {r1, r2};
    dx_tls_server *srvs[2] = {t.a, t.b};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(dx_tls_server_set_clock(srvs[i], h_fake_clock, NULL), 0);
        ck_assert_int_eq(dx_redis_store_set_clock(stores[i], h_fake_clock, NULL), 0);
        ck_assert_int_eq(dx_redis_store_share_ticket_keys(stores[i], period), 0);
        ck_assert_int_eq(dx_redis_store_attach(stores[i], srvs[i]), 0);
    }
    ck_assert(spin(same_new_keys, &t, 5000));
    redisContext *sync = redis_sync(&r, NULL, 0);
    char key[256];
    ck_assert_uint_eq(keys_under(sync, DX_REDIS_DEFAULT_PREFIX "tk:", key), 1);
    ck_assert_str_eq(key, DX_REDIS_DEFAULT_PREFIX "tk:100");
    uint8_t old[8192], cur[8192];
    size_t old_len = 0, cur_len = 0;
    ck_assert(!one_connection(t.a, cctx, old, &old_len, NULL));
    uint8_t keep[8192];
    size_t keep_len = old_len;
    memcpy(keep, old, old_len);
    ck_assert(one_connection(t.b, cctx, old, &old_len, NULL)); /* shared */
    /* next period: the ticket of the previous one still resumes */
    rotate(&t, period);
    memcpy(old, keep, keep_len);
    old_len = keep_len;
    ck_assert(one_connection(t.b, cctx, old, &old_len, NULL));
    ck_assert(!one_connection(t.a, cctx, cur, &cur_len, NULL));
    /* two periods on: the first ticket is refused, the newer resumes */
    rotate(&t, period);
    memcpy(old, keep, keep_len);
    old_len = keep_len;
    ck_assert(!one_connection(t.a, cctx, old, &old_len, NULL));
    memcpy(old, keep, keep_len);
    old_len = keep_len;
    ck_assert(!one_connection(t.b, cctx, old, &old_len, NULL));
    ck_assert(one_connection(t.b, cctx, cur, &cur_len, NULL));
    dx_tls_server_stats st;
    dx_tls_server_get_stats(t.b, &st);
    ck_assert_uint_ge(st.tickets_renewed, 1);
    ck_assert_uint_ge(st.tickets_unknown, 1);
    ck_assert_uint_ge(keys_under(sync, DX_REDIS_DEFAULT_PREFIX "tk:", NULL), 2);
    redisReply *rep = redisCommand(sync, "PTTL " DX_REDIS_DEFAULT_PREFIX "tk:102");
    ck_assert_int_gt(rep->integer, (long long)(2 * period));
    freeReplyObject(rep);
    redisFree(sync);
    ck_assert_int_eq(dx_redis_store_share_ticket_keys(r1, 999), DX_EINVAL);
    ck_assert_int_eq(dx_redis_store_share_ticket_keys(r1, 0), 0);
    dx_redis_store_free(r1);
    dx_redis_store_free(r2);
    dx_tls_server_free(t.a);
    dx_tls_server_free(t.b);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
    redis_stop(&r);
    loop_close();
}
END_TEST

/* URLs: the forms of the header, and what is refused. */
START_TEST(urls)
{
    loop_open();
    static const char *const good[] = {
        "redis://127.0.0.1:1", "redis://localhost", "redis://:pw@127.0.0.1:2/5",
        "redis://user:pw@127.0.0.1:3/", "redis://[::1]:4", NULL};
    static const char *const bad[] = {
        "http://127.0.0.1", "redis://", "redis://:6379", "redis://h:0", "redis://h:65536",
        "redis://h:x", "redis://h/x", "redis://pw@h", "redis://:@h", "redis://[::1",
        "redis://h/1/2", NULL};
    dx_redis_store *rs;
    for (int i = 0; good[i]; i++) {
        ck_assert_msg(dx_redis_store_new(&loop, good[i], &rs) == 0, "%s", good[i]);
        dx_redis_store_free(rs);
    }
    for (int i = 0; bad[i]; i++) {
        ck_assert_msg(dx_redis_store_new(&loop, bad[i], &rs) == DX_EINVAL, "%s", bad[i]);
        ck_assert_ptr_null(rs);
    }
    ck_assert_int_eq(dx_redis_store_new(NULL, good[0], &rs), DX_EINVAL);
    ck_assert_int_eq(dx_redis_store_new(&loop, NULL, &rs), DX_EINVAL);
    ck_assert_int_eq(dx_redis_store_new(&loop, good[0], NULL), DX_EINVAL);
    ck_assert_int_eq(dx_redis_store_new(&loop, good[0], &rs), 0);
    ck_assert_int_eq(dx_redis_store_set_prefix(rs, ""), DX_EINVAL);
    ck_assert_int_eq(dx_redis_store_set_timeout(rs, 0), DX_EINVAL);
    ck_assert_int_eq(dx_redis_store_set_backoff(rs, 10, 5), DX_EINVAL);
    ck_assert_int_eq(dx_redis_store_attach(rs, NULL), DX_EINVAL);
    dx_redis_store_free(rs);
    dx_redis_store_free(NULL);
    loop_close();
}
END_TEST

Suite *redis_suite(void)
{
    Suite *s = suite_create("redis");
    TCase *tc = tcase_create("store");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, urls);
    tcase_add_loop_test(tc, sessions_shared_by_two_servers_resume, 0, 2);
    tcase_add_test(tc, password_and_database);
    tcase_add_loop_test(tc, redis_slow_down_and_back, 0, 2);
    tcase_add_test(tc, garbage_in_a_key_is_a_miss);
    tcase_add_test(tc, free_answers_waiting_lookups);
    tcase_add_loop_test(tc, ticket_keys_shared_and_rotated, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}
