/*
 * A hostile peer: bad input and faults fed to the TLS filter, each with the
 * error it must end in. The peer is the test itself, writing records to a
 * connection's lower stream by hand, through a second connection whose
 * bytes it cuts or corrupts on the way, or through a raw OpenSSL object
 * over memory BIOs whose records it rewrites (floods of records OpenSSL
 * itself would never send). Every case checks that the connection fails
 * once with a stable code on each side it has, delivers no cleartext from
 * a corrupted record, stays within a memory bound, and leaks nothing.
 *
 * The sweeps (a cut at every byte offset of a handshake, a bit flipped at
 * every offset, both directions, TLS 1.2 and 1.3) run one handshake per
 * offset, in about 4 s in all. Under valgrind (RUNNING_ON_VALGRIND, from
 * the valgrind package's header) they try every 23rd offset only, which
 * still reaches every record and most fields; DX_TEST_SAMPLE=k sets
 * another step.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#include "harness.h"

/* Every k-th offset under valgrind (DX_TEST_SAMPLE overrides). */
static size_t sample_step(void)
{
    const char *e = getenv("DX_TEST_SAMPLE");
    if (e && atoi(e) > 0)
        return (size_t)atoi(e);
    return RUNNING_ON_VALGRIND ? 23 : 1;
}

/* ---- the PKI and contexts, made once ------------------------------------ */

static dx_pki_cert *ca, *leaf;
static const char *const dns[] = {"localhost", NULL};

static void make_pki(void)
{
    dx_pki_opts o = {.key_type = DX_PKI_EC_P256, .common_name = "Hostile CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &o, &ca, NULL));
    dx_pki_opts l = {.common_name = "server", .dns_names = dns,
                     .ext_key_usage = DX_PKI_EKU_SERVER};
    H_MUST(dx_pki_issue(ca, &l, &leaf, NULL));
}

static void free_pki(void)
{
    dx_pki_cert_free(leaf);
    dx_pki_cert_free(ca);
    leaf = ca = NULL;
}

static const char *vname(int v) { return v == 3 ? "TLSv1.3" : "TLSv1.2"; }

static dx_tls_ctx *make_ctx(bool server, int v)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *capem = dx_pki_cert_pem(ca);
    ck_assert_int_eq(dx_tls_config_add_ca(cfg, capem, strlen(capem)), 0);
    if (server) {
        const char *c = dx_pki_cert_pem(leaf), *k = dx_pki_key_pem(leaf);
        ck_assert_int_eq(dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL), 0);
    }
    ck_assert_int_eq(dx_tls_config_set_min_version(cfg, vname(v)), 0);
    ck_assert_int_eq(dx_tls_config_set_max_version(cfg, vname(v)), 0);
    dx_tls_ctx *ctx;
    dx_error *err = NULL;
    int rc = dx_tls_ctx_new(cfg, &ctx, &err);
    ck_assert_msg(rc == 0, "ctx: %s", err ? dx_error_message(err) : "?");
    dx_tls_config_free(cfg);
    return ctx;
}

/* ---- a growable byte buffer ------------------------------------------------ */

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

static void buf_add(buf *b, const void *d, size_t n)
{
    if (!n)
        return;
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void buf_take(buf *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

static void buf_free(buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- one connection of ours, its lower stream driven by the test ----------- */

typedef struct conn {
    dx_tls *t;
    h_rec rec;        /* the cleartext side */
    buf out;          /* records it sent, not yet taken */
    uint64_t sent;    /* all bytes it sent */
    bool out_end;     /* it ended its output (close_notify went) */
    bool out_gone;    /* its lower stream closed */
    bool in_ended;    /* the test ended its input */
    unsigned secure;
} conn;

static void low_data(dx_stream *s, const uint8_t *d, size_t n, void *u)
{
    (void)s;
    conn *c = u;
    buf_add(&c->out, d, n);
    c->sent += n;
}

static void low_end(dx_stream *s, void *u)
{
    (void)s;
    ((conn *)u)->out_end = true;
}

static void low_error(dx_stream *s, const dx_error *e, void *u)
{
    (void)s, (void)e, (void)u;
}

static void low_close(dx_stream *s, void *u)
{
    (void)s;
    ((conn *)u)->out_gone = true;
}

static const dx_stream_events low_events = {
    .on_data = low_data, .on_end = low_end, .on_error = low_error, .on_close = low_close};

static void ev_secure(dx_tls *t, void *u)
{
    (void)t;
    ((conn *)u)->secure++;
}

static const dx_tls_events conn_events = {.on_secure = ev_secure};

static void conn_open(conn *c, dx_tls_ctx *ctx, dx_tls_role role)
{
    memset(c, 0, sizeof(*c));
    ck_assert_int_eq(dx_tls_new(ctx, role, &c->t), 0);
    ck_assert_int_eq(dx_tls_set_events(c->t, &conn_events, c), 0);
    ck_assert_int_eq(dx_tls_set_clock(c->t, h_fake_clock, NULL), 0);
    c->rec.keep_data = true;
    h_rec_attach(&c->rec, dx_tls_upper(c->t));
    ck_assert_int_eq(dx_stream_set_events(dx_tls_lower(c->t), &low_events, c), 0);
    if (role == DX_TLS_CLIENT)
        ck_assert_int_eq(dx_tls_set_servername(c->t, "localhost"), 0);
}

/* Hands bytes from the peer to the connection. */
static void conn_feed(conn *c, const void *d, size_t n)
{
    if (c->in_ended || c->out_gone || !n)
        return;
    int rc = dx_stream_write(dx_tls_lower(c->t), d, n);
    ck_assert_msg(rc == 0 || rc == DX_FULL || rc == DX_EDESTROYED || rc == DX_EPIPE ||
                      rc < 0,
                  "feed: %d", rc);
}

/* The transport ended towards the connection. */
static bool conn_eof(conn *c)
{
    if (c->in_ended || c->out_gone)
        return false;
    c->in_ended = true;
    dx_stream_end(dx_tls_lower(c->t));
    return true;
}

static void conn_close(conn *c)
{
    dx_tls_destroy(c->t);
    c->t = NULL;
    h_rec_free(&c->rec);
    buf_free(&c->out);
}

static bool conn_failed(const conn *c) { return c->rec.errors > 0; }

/* The connection failed once, with one of the codes (a NULL-ended list). */
static void assert_failed_with(const conn *c, const char *const *names, const char *what)
{
    ck_assert_msg(c->rec.errors == 1, "%s: %u errors (events %.*s)", what, c->rec.errors,
                  (int)c->rec.nlog, c->rec.log);
    for (const char *const *n = names; *n; n++)
        if (strcmp(c->rec.error_name, *n) == 0)
            return;
    ck_abort_msg("%s: failed with %s", what, c->rec.error_name);
}

/* ---- two connections of ours, the test in the middle ---------------------- */

typedef struct mitm {
    conn c, s;
    /* per direction (0: client to server, 1: server to client) */
    uint64_t passed[2];
    uint64_t cut[2];       /* the transport dies after this many bytes */
    uint64_t flip[2];      /* the byte whose bit (flip % 8) is flipped */
    bool dead;             /* the cut happened */
    buf log[2];            /* what each side sent, as it sent it */
} mitm;

#define NONE UINT64_MAX

static void mitm_open(mitm *m, dx_tls_ctx *cctx, dx_tls_ctx *sctx)
{
    memset(m, 0, sizeof(*m));
    conn_open(&m->c, cctx, DX_TLS_CLIENT);
    conn_open(&m->s, sctx, DX_TLS_SERVER);
    m->cut[0] = m->cut[1] = m->flip[0] = m->flip[1] = NONE;
}

/* Moves what one side sent to the other, cut or corrupted on the way. */
static bool mitm_move(mitm *m, int dir)
{
    conn *from = dir ? &m->s : &m->c, *to = dir ? &m->c : &m->s;
    bool moved = false;
    if (from->out.len && !m->dead) {
        size_t n = from->out.len;
        if (m->cut[dir] != NONE && m->passed[dir] + n > m->cut[dir])
            n = (size_t)(m->cut[dir] - m->passed[dir]);
        buf_add(&m->log[dir], from->out.p, n);
        uint64_t at = m->flip[dir];
        if (at != NONE && at >= m->passed[dir] && at < m->passed[dir] + n)
            from->out.p[at - m->passed[dir]] ^= (uint8_t)(1u << (at % 8));
        m->passed[dir] += n;
        conn_feed(to, from->out.p, n);
        if (m->passed[dir] == m->cut[dir]) {
            m->dead = true; /* the transport is gone, both ways */
            conn_eof(&m->c);
            conn_eof(&m->s);
        }
        buf_take(&from->out, from->out.len);
        moved = true;
    } else if (from->out.len) {
        buf_take(&from->out, from->out.len);
    }
    /* a side that closed or ended its output: the other sees the end */
    if ((from->out_gone || from->out_end) && !from->out.len && conn_eof(to))
        moved = true;
    return moved;
}

static void mitm_pump(mitm *m)
{
    for (int i = 0; i < 10000; i++)
        if (!mitm_move(m, 0) && !mitm_move(m, 1))
            return;
    ck_abort_msg("the connections never settled (%llu %llu bytes)", (unsigned long long)m->passed[0], (unsigned long long)m->passed[1]);
}

static void mitm_start(mitm *m)
{
    ck_assert_int_eq(dx_tls_start(m->s.t), 0);
    ck_assert_int_eq(dx_tls_start(m->c.t), 0);
    mitm_pump(m);
}

/* Time passes beyond any handshake timeout. */
static void mitm_time_out(mitm *m)
{
    h_fake_now += DX_TLS_DEFAULT_HANDSHAKE_TIMEOUT_MS + 1;
    dx_tls_check_timeouts(m->c.t);
    dx_tls_check_timeouts(m->s.t);
    mitm_pump(m);
}

static void mitm_close(mitm *m)
{
    conn_close(&m->c);
    conn_close(&m->s);
    buf_free(&m->log[0]);
    buf_free(&m->log[1]);
}

/* A clean handshake: the bytes each way until both sides are secure. */
static void measure_handshake(dx_tls_ctx *cctx, dx_tls_ctx *sctx, uint64_t total[2])
{
    mitm m;
    mitm_open(&m, cctx, sctx);
    mitm_start(&m);
    ck_assert(m.c.secure && m.s.secure);
    total[0] = m.passed[0];
    total[1] = m.passed[1];
    mitm_close(&m);
}

/* ---- the suite's fixtures ---------------------------------------------------- */

static dx_tls_ctx *cctx[4], *sctx[4]; /* by version: [2], [3] */

static void setup(void)
{
    make_pki();
    for (int v = 2; v <= 3; v++) {
        cctx[v] = make_ctx(false, v);
        sctx[v] = make_ctx(true, v);
    }
}

static void teardown(void)
{
    for (int v = 2; v <= 3; v++) {
        dx_tls_ctx_unref(cctx[v]);
        dx_tls_ctx_unref(sctx[v]);
        cctx[v] = sctx[v] = NULL;
    }
    free_pki();
}

#define VER (_i % 2 ? 3 : 2)

/* ---- codes seen, for the record ----------------------------------------- */

typedef struct tally {
    char name[64][64];
    unsigned count[64];
    unsigned n;
} tally;

static void tally_add(tally *t, const char *name)
{
    for (unsigned i = 0; i < t->n; i++)
        if (strcmp(t->name[i], name) == 0) {
            t->count[i]++;
            return;
        }
    ck_assert_uint_lt(t->n, 64);
    snprintf(t->name[t->n], sizeof(t->name[0]), "%s", name);
    t->count[t->n++] = 1;
}

static void tally_print(const tally *t, const char *what)
{
    if (!getenv("DX_TEST_VERBOSE"))
        return;
    fprintf(stderr, "%s:", what);
    for (unsigned i = 0; i < t->n; i++)
        fprintf(stderr, " %s=%u", t->name[i], t->count[i]);
    fprintf(stderr, "\n");
}

/* ---- truncation at every byte offset of the handshake --------------------- */

static const char *const cut_codes[] = {"ECONNRESET", "ERR_SSL_UNEXPECTED_EOF_WHILE_READING",
                                        NULL};

/* The transport dies after k bytes of one direction, for every k inside
 * the handshake: both sides fail, as a reset before they were secure, as
 * a truncation after; neither delivers anything. */
START_TEST(handshake_cut_at_every_offset)
{
    int v = VER, dir = _i / 2;
    uint64_t total[2];
    measure_handshake(cctx[v], sctx[v], total);
    size_t step = sample_step();
    tally t = {0};
    unsigned runs = 0;
    for (uint64_t k = 0; k < total[dir]; k += step, runs++) {
        size_t live0 = h_alloc_live();
        mitm m;
        mitm_open(&m, cctx[v], sctx[v]);
        m.cut[dir] = k;
        mitm_start(&m);
        if (!m.dead) {
            /* this handshake was shorter (signatures vary in length) */
            ck_assert_uint_ge(k + 4, total[dir]);
            mitm_close(&m);
            continue;
        }
        char what[64];
        snprintf(what, sizeof(what), "%s dir %d cut at %llu", vname(v), dir,
                 (unsigned long long)k);
        assert_failed_with(&m.c, cut_codes, what);
        assert_failed_with(&m.s, cut_codes, what);
        ck_assert_uint_eq(m.c.rec.received + m.s.rec.received, 0);
        h_rec_assert_clean(&m.c.rec);
        h_rec_assert_clean(&m.s.rec);
        tally_add(&t, m.c.rec.error_name);
        tally_add(&t, m.s.rec.error_name);
        mitm_close(&m);
        ck_assert_uint_eq(h_alloc_live(), live0);
    }
    char what[64];
    snprintf(what, sizeof(what), "cut %s dir %d: %u offsets of %llu", vname(v), dir, runs,
             (unsigned long long)total[dir]);
    tally_print(&t, what);
}
END_TEST

/* ---- a bit flipped at every byte offset of the handshake ------------------- */

/* The records of a byte stream: is offset k inside a record header, and
 * at which place of it? -1 for a body byte. */
static int header_pos(const uint8_t *p, size_t len, uint64_t k, uint8_t *type)
{
    size_t at = 0;
    while (at + 5 <= len) {
        size_t rl = (size_t)p[at + 3] << 8 | p[at + 4];
        if (k < at + 5) {
            *type = p[at];
            return (int)(k - at);
        }
        if (k < at + 5 + rl) {
            *type = p[at];
            return -1;
        }
        at += 5 + rl;
    }
    return -1;
}

static const char *const flip_codes[] = {
    "ECONNRESET",
    "ERR_SSL_UNEXPECTED_EOF_WHILE_READING",
    "ERR_TLS_HANDSHAKE_TIMEOUT",
    /* a corrupted certificate */
    "CERT_SIGNATURE_FAILURE", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "ERR_TLS_CERT_ALTNAME_INVALID", "CERT_NOT_YET_VALID",
    "CERT_HAS_EXPIRED", "ERROR_IN_CERT_NOT_BEFORE_FIELD", "ERROR_IN_CERT_NOT_AFTER_FIELD",
    "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY", "INVALID_PURPOSE", "INVALID_CA",
    "UNSPECIFIED", /* as Node, for a verification code it has no name for */
    NULL};

/* A bit flipped anywhere in the handshake: the handshake fails on both
 * sides with an error, or, for the few bits no one checks (the version
 * field of a cleartext record's header), completes with intact data.
 * A flip that makes a record longer than sent leaves the receiver
 * waiting: the handshake timeout ends it. */
START_TEST(handshake_bit_flip_at_every_offset)
{
    static const char ping[] = "ping from the client", pong[] = "pong from the server";
    int v = VER, dir = _i / 2;
    uint64_t total[2];
    measure_handshake(cctx[v], sctx[v], total);
    size_t step = sample_step();
    tally t = {0};
    unsigned runs = 0, completed = 0;
    for (uint64_t k = 0; k < total[dir]; k += step, runs++) {
        size_t live0 = h_alloc_live();
        mitm m;
        mitm_open(&m, cctx[v], sctx[v]);
        m.flip[dir] = k;
        mitm_start(&m);
        /* what a client and a server do once secure: a message each way,
         * then the end; a peer still waiting is ended by the handshake
         * timeout, and past that by the transport going away */
        if (m.c.secure && !conn_failed(&m.c))
            dx_stream_write(dx_tls_upper(m.c.t), ping, sizeof(ping));
        if (m.s.secure && !conn_failed(&m.s))
            dx_stream_write(dx_tls_upper(m.s.t), pong, sizeof(pong));
        dx_stream_end(dx_tls_upper(m.c.t));
        dx_stream_end(dx_tls_upper(m.s.t));
        mitm_pump(&m);
        if (!m.c.rec.closes || !m.s.rec.closes)
            mitm_time_out(&m);
        if (!m.c.rec.closes || !m.s.rec.closes) {
            m.dead = true;
            conn_eof(&m.c);
            conn_eof(&m.s);
            mitm_pump(&m);
        }
        if (m.log[dir].len <= k) {
            /* this handshake was shorter (signatures vary in length) */
            ck_assert_uint_ge(k + 4, total[dir]);
            mitm_close(&m);
            continue;
        }
        uint8_t type = 0;
        int hp = header_pos(m.log[dir].p, m.log[dir].len, k, &type);
        char what[96];
        snprintf(what, sizeof(what), "%s dir %d flip at %llu (header %d, type %u)", vname(v),
                 dir, (unsigned long long)k, hp, type);
        h_rec_assert_clean(&m.c.rec);
        h_rec_assert_clean(&m.s.rec);
        ck_assert_msg(m.c.rec.closes && m.s.rec.closes, "%s: not closed", what);
        /* nothing but the bytes sent, and all of them when no error */
        ck_assert(m.s.rec.len <= sizeof(ping) && m.c.rec.len <= sizeof(pong));
        ck_assert(!m.s.rec.len || memcmp(m.s.rec.data, ping, m.s.rec.len) == 0);
        ck_assert(!m.c.rec.len || memcmp(m.c.rec.data, pong, m.c.rec.len) == 0);
        if (!conn_failed(&m.c) && !conn_failed(&m.s)) {
            /* only an unchecked field of a cleartext record */
            ck_assert_msg((hp == 1 || hp == 2) && type != 23, "%s: completed", what);
            ck_assert(m.s.rec.len == sizeof(ping) && m.c.rec.len == sizeof(pong));
            completed++;
        } else {
            /* A side may see nothing wrong: a corrupted record after its
             * handshake (a TLS 1.3 ticket) that only its peer reads. It
             * then got everything, and the peer's close_notify. */
            for (int i = 0; i < 2; i++) {
                conn *c = i ? &m.s : &m.c;
                if (conn_failed(c))
                    continue;
                ck_assert_msg(c->rec.len == (i ? sizeof(ping) : sizeof(pong)) &&
                                  dx_tls_clean_end(c->t),
                              "%s: only the %s failed (%s)", what, i ? "client" : "server",
                              (i ? &m.c : &m.s)->rec.error_name);
            }
            for (int i = 0; i < 2; i++) {
                const char *name = (i ? &m.s : &m.c)->rec.error_name;
                if (!conn_failed(i ? &m.s : &m.c))
                    continue;
                tally_add(&t, name);
                bool ok = strncmp(name, "ERR_SSL_", 8) == 0;
                for (const char *const *n = flip_codes; *n && !ok; n++)
                    ok = strcmp(name, *n) == 0;
                ck_assert_msg(ok, "%s: %s failed with %s", what, i ? "server" : "client", name);
            }
        }
        mitm_close(&m);
        ck_assert_uint_eq(h_alloc_live(), live0);
    }
    char what[96];
    snprintf(what, sizeof(what), "flip %s dir %d: %u offsets of %llu, %u completed", vname(v),
             dir, runs, (unsigned long long)total[dir], completed);
    tally_print(&t, what);
}
END_TEST

/* ---- a bit flipped in application records ------------------------------- */

#define APP_LEN 40000u /* three records: 16384, 16384, 7232 */

/* After a clean handshake the client sends APP_LEN bytes and ends; a bit
 * flipped in a record (its header or its body) fails the server with
 * "ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC" or a framing error after
 * it delivered exactly the records before the corrupted one, and the
 * client gets the server's alert. Every header byte is tried, and body
 * bytes at a stride (every 61st, and the first and last of each). */
START_TEST(application_record_bit_flips)
{
    int v = VER;
    static uint8_t data[APP_LEN];
    h_gen_fill(7, 0, data, sizeof(data));
    /* where the records fall: one clean run */
    mitm ref;
    mitm_open(&ref, cctx[v], sctx[v]);
    mitm_start(&ref);
    ck_assert(ref.c.secure && ref.s.secure);
    uint64_t base = ref.passed[0];
    ck_assert_int_ge(dx_stream_write(dx_tls_upper(ref.c.t), data, sizeof(data)), 0);
    mitm_pump(&ref);
    ck_assert_uint_eq(ref.s.rec.len, APP_LEN);
    size_t app_bytes = (size_t)(ref.passed[0] - base);
    uint8_t *rec = malloc(app_bytes);
    memcpy(rec, ref.log[0].p + base, app_bytes);
    mitm_close(&ref);
    size_t nrec = 0, starts[8];
    for (size_t at = 0; at + 5 <= app_bytes; at += 5 + ((size_t)rec[at + 3] << 8 | rec[at + 4]))
        starts[nrec++] = at;
    ck_assert_uint_eq(nrec, 3);
    tally t = {0};
    unsigned runs = 0;
    size_t stride = 61 * sample_step();
    for (size_t off = 0; off < app_bytes; off++) {
        size_t r = 0;
        while (r + 1 < nrec && off >= starts[r + 1])
            r++;
        size_t in_rec = off - starts[r];
        size_t rlen = 5 + ((size_t)rec[starts[r] + 3] << 8 | rec[starts[r] + 4]);
        if (in_rec >= 5 && in_rec != 5 && in_rec + 1 != rlen && in_rec % stride != 0)
            continue;
        runs++;
        size_t live0 = h_alloc_live();
        mitm m;
        mitm_open(&m, cctx[v], sctx[v]);
        mitm_start(&m);
        ck_assert(m.c.secure && m.s.secure);
        m.flip[0] = m.passed[0] + off;
        ck_assert_int_ge(dx_stream_write(dx_tls_upper(m.c.t), data, sizeof(data)), 0);
        dx_stream_end(dx_tls_upper(m.c.t));
        mitm_pump(&m);
        if (!m.c.rec.closes || !m.s.rec.closes) {
            m.dead = true;
            conn_eof(&m.c);
            conn_eof(&m.s);
            mitm_pump(&m);
        }
        char what[96];
        snprintf(what, sizeof(what), "%s record %zu byte %zu", vname(v), r, in_rec);
        h_rec_assert_clean(&m.s.rec);
        h_rec_assert_clean(&m.c.rec);
        ck_assert_msg(conn_failed(&m.s), "%s: the server did not fail", what);
        ck_assert_msg(conn_failed(&m.c), "%s: the client did not fail", what);
        /* the records before, whole; nothing of the corrupted one */
        ck_assert_msg(m.s.rec.len == r * 16384u, "%s: %zu bytes delivered", what, m.s.rec.len);
        ck_assert(!m.s.rec.len || memcmp(m.s.rec.data, data, m.s.rec.len) == 0);
        ck_assert_msg(strncmp(m.s.rec.error_name, "ERR_SSL_", 8) == 0, "%s: server: %s", what,
                      m.s.rec.error_name);
        ck_assert_msg(strncmp(m.c.rec.error_name, "ERR_SSL_", 8) == 0 ||
                          strcmp(m.c.rec.error_name, "ECONNRESET") == 0,
                      "%s: client: %s", what, m.c.rec.error_name);
        if (in_rec >= 5)
            ck_assert_str_eq(m.s.rec.error_name, "ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC");
        tally_add(&t, m.s.rec.error_name);
        tally_add(&t, m.c.rec.error_name);
        mitm_close(&m);
        ck_assert_uint_eq(h_alloc_live(), live0);
    }
    free(rec);
    char what[64];
    snprintf(what, sizeof(what), "app flips %s: %u offsets of %zu", vname(v), runs, app_bytes);
    tally_print(&t, what);
}
END_TEST

/* ---- bytes that are no TLS, fed by hand ------------------------------------- */

/* One connection of ours (started), fed bytes, then the transport ends. */
static void feed_and_end(conn *c, const void *d, size_t n, bool eof)
{
    conn_feed(c, d, n);
    if (eof)
        conn_eof(c);
}

typedef struct bad_input {
    const char *what;
    const uint8_t *bytes;
    size_t len;
    const char *code; /* the server's error */
} bad_input;

static const uint8_t garbage[] = "\x01\x02\x03\x04\x05\x06\x07\x08 not TLS at all \xff\xfe";
static const uint8_t http_get[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
static const uint8_t http_post[] = "POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
static const uint8_t http_connect[] = "CONNECT localhost:443 HTTP/1.1\r\n\r\n";
/* SSLv2-format ClientHellos: msg-length with the top bit, type 1, a
 * version, cipher-spec, session-id and challenge lengths, the specs, the
 * challenge. One asks for SSL 2.0, one for TLS 1.0 in the old format. */
static const uint8_t sslv2_v2[] = {0x80, 0x1c, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00,
                                   0x00, 0x10, 0x07, 0x00, 0xc0,
                                   1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t sslv2_tls[] = {0x80, 0x1c, 0x01, 0x03, 0x01, 0x00, 0x03, 0x00, 0x00,
                                    0x00, 0x10, 0x00, 0x00, 0x2f,
                                    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
/* record headers: a handshake record longer than any record may be, and
 * a handshake message claiming 16 MB */
static const uint8_t huge_record[] = {0x16, 0x03, 0x01, 0x48, 0x01};
static const uint8_t huge_message[] = {0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff};
/* a flood of empty handshake records (40) */
#define E5 0x16, 0x03, 0x01, 0x00, 0x00
#define E40 E5, E5, E5, E5, E5, E5, E5, E5, E5, E5
static const uint8_t empty_hs[] = {E40, E40, E40, E40};

/* warning alerts (user_canceled) in cleartext before any hello, 10 */
#define W7 0x15, 0x03, 0x01, 0x00, 0x02, 0x01, 0x5a
static const uint8_t warn_flood[] = {W7, W7, W7, W7, W7, W7, W7, W7, W7, W7};

static const bad_input bad_inputs[] = {
    /* refused at the first: no alert is expected before a hello */
    {"warning alerts before the hello", warn_flood, sizeof(warn_flood),
     "ERR_SSL_UNEXPECTED_MESSAGE"},
    {"garbage", garbage, sizeof(garbage) - 1, "ERR_SSL_WRONG_VERSION_NUMBER"},
    {"HTTP GET", http_get, sizeof(http_get) - 1, "ERR_SSL_HTTP_REQUEST"},
    {"HTTP POST", http_post, sizeof(http_post) - 1, "ERR_SSL_HTTP_REQUEST"},
    {"HTTP CONNECT", http_connect, sizeof(http_connect) - 1, "ERR_SSL_HTTPS_PROXY_REQUEST"},
    {"SSLv2 hello", sslv2_v2, sizeof(sslv2_v2), "ERR_SSL_UNKNOWN_PROTOCOL"},
    {"SSLv2-format TLS hello", sslv2_tls, sizeof(sslv2_tls), "ERR_SSL_UNSUPPORTED_PROTOCOL"},
    {"record over the size limit", huge_record, sizeof(huge_record),
     "ERR_SSL_PACKET_LENGTH_TOO_LONG"},
    {"16 MB handshake message", huge_message, sizeof(huge_message),
     "ERR_SSL_EXCESSIVE_MESSAGE_SIZE"},
    {"40 empty handshake records", empty_hs, sizeof(empty_hs), "ERR_SSL_RECORD_TOO_SMALL"},
};
#define N_BAD (sizeof(bad_inputs) / sizeof(bad_inputs[0]))

/* A server fed something that is no ClientHello fails at once (before any
 * end of the transport) with the code that says what came; the peer gets
 * no more than an alert. Both versions, since the reasons differ. */
START_TEST(server_refuses_what_is_no_client_hello)
{
    const bad_input *b = &bad_inputs[_i / 2];
    int v = VER;
    size_t live0 = h_alloc_live();
    conn s;
    conn_open(&s, sctx[v], DX_TLS_SERVER);
    ck_assert_int_eq(dx_tls_start(s.t), 0);
    feed_and_end(&s, b->bytes, b->len, false);
    if (!conn_failed(&s)) /* a message announced, never complete */
        conn_eof(&s);
    const char *codes[] = {b->code, NULL};
    char what[96];
    snprintf(what, sizeof(what), "%s, %s", b->what, vname(v));
    assert_failed_with(&s, codes, what);
    ck_assert_uint_le(s.sent, 7); /* at most one alert */
    ck_assert(s.out_gone);
    conn_close(&s);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* A client whose server answers with no TLS: an HTTP server, garbage. */
START_TEST(client_refuses_what_is_no_server_hello)
{
    static const uint8_t http_reply[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    const uint8_t *in = _i / 2 ? garbage : http_reply;
    size_t len = _i / 2 ? sizeof(garbage) - 1 : sizeof(http_reply) - 1;
    int v = VER;
    size_t live0 = h_alloc_live();
    conn c;
    conn_open(&c, cctx[v], DX_TLS_CLIENT);
    ck_assert_int_eq(dx_tls_start(c.t), 0);
    ck_assert_uint_gt(c.sent, 0); /* the ClientHello */
    feed_and_end(&c, in, len, false);
    const char *codes[] = {"ERR_SSL_WRONG_VERSION_NUMBER", NULL};
    assert_failed_with(&c, codes, _i / 2 ? "garbage" : "HTTP reply");
    conn_close(&c);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* A ClientHello fed one byte per second to a server, or a server's flight
 * to a client: the handshake timeout fires on time, whatever the
 * trickle, and the peer sees the transport go. */
START_TEST(handshake_fed_one_byte_per_second_times_out)
{
    int v = VER;
    bool to_client = _i >= 2; /* the server's flight trickles to the client */
    size_t live0 = h_alloc_live();
    mitm m;
    mitm_open(&m, cctx[v], sctx[v]);
    conn *slow = to_client ? &m.c : &m.s, *other = to_client ? &m.s : &m.c;
    ck_assert_int_eq(dx_tls_set_handshake_timeout(slow->t, 10000), 0);
    h_fake_now = 1000000;
    ck_assert_int_eq(dx_tls_start(m.s.t), 0);
    ck_assert_int_eq(dx_tls_start(m.c.t), 0);
    if (to_client)
        mitm_move(&m, 0); /* the ClientHello goes at once */
    buf flight = {0};
    buf_add(&flight, other->out.p, other->out.len);
    buf_take(&other->out, other->out.len);
    ck_assert_uint_gt(flight.len, 100);
    size_t i = 0;
    for (; i < flight.len && !conn_failed(slow); i++) {
        conn_feed(slow, flight.p + i, 1);
        h_fake_now += 1000;
        dx_tls_check_timeouts(slow->t);
    }
    const char *codes[] = {"ERR_TLS_HANDSHAKE_TIMEOUT", NULL};
    assert_failed_with(slow, codes, "trickle");
    ck_assert_uint_eq(i, 10); /* ten bytes in ten seconds */
    /* the peer sees the transport go */
    mitm_pump(&m);
    const char *ccodes[] = {"ECONNRESET", NULL};
    assert_failed_with(other, ccodes, "trickle, peer");
    buf_free(&flight);
    mitm_close(&m);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* ---- a raw OpenSSL client, and records sealed by hand ------------------------ */

typedef struct raw {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rb, *wb;
    bool server;
    uint8_t secret[32]; /* its first application traffic secret */
    bool have_secret;
} raw;

static int raw_index = -1;

static int unhex(const char *h, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned x;
        if (sscanf(h + 2 * i, "%2x", &x) != 1)
            return -1;
        out[i] = (uint8_t)x;
    }
    return 0;
}

static void raw_keylog(const SSL *ssl, const char *line)
{
    raw *r = SSL_get_ex_data(ssl, raw_index);
    const char *tag = r->server ? "SERVER_TRAFFIC_SECRET_0 " : "CLIENT_TRAFFIC_SECRET_0 ";
    if (strncmp(line, tag, strlen(tag)) != 0)
        return;
    const char *sp = strchr(line + strlen(tag), ' ');
    if (sp && strlen(sp + 1) == 64 && unhex(sp + 1, r->secret, 32) == 0)
        r->have_secret = true;
}

static void raw_open(raw *r, int v, bool server)
{
    memset(r, 0, sizeof(*r));
    r->server = server;
    if (raw_index < 0)
        raw_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    r->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    ck_assert_ptr_nonnull(r->ctx);
    int ver = v == 3 ? TLS1_3_VERSION : TLS1_2_VERSION;
    SSL_CTX_set_min_proto_version(r->ctx, ver);
    SSL_CTX_set_max_proto_version(r->ctx, ver);
    ck_assert_int_eq(SSL_CTX_set_ciphersuites(r->ctx, "TLS_AES_128_GCM_SHA256"), 1);
    SSL_CTX_set_verify(r->ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_keylog_callback(r->ctx, raw_keylog);
    if (server) {
        X509 *x = h_pki_x509(leaf);
        EVP_PKEY *k = h_pki_key(leaf);
        ck_assert_int_eq(SSL_CTX_use_certificate(r->ctx, x), 1);
        ck_assert_int_eq(SSL_CTX_use_PrivateKey(r->ctx, k), 1);
        X509_free(x);
        EVP_PKEY_free(k);
        SSL_CTX_set_num_tickets(r->ctx, 0); /* its first record is ours to seal */
    }
    r->ssl = SSL_new(r->ctx);
    r->rb = BIO_new(BIO_s_mem());
    r->wb = BIO_new(BIO_s_mem());
    SSL_set_bio(r->ssl, r->rb, r->wb);
    SSL_set_ex_data(r->ssl, raw_index, r);
    if (server) {
        SSL_set_accept_state(r->ssl);
    } else {
        SSL_set_connect_state(r->ssl);
        SSL_set_tlsext_host_name(r->ssl, "localhost");
    }
}

static void raw_close(raw *r)
{
    SSL_free(r->ssl);
    SSL_CTX_free(r->ctx);
    ERR_clear_error();
}

/* Moves bytes between the raw peer and our connection until neither has
 * more; the raw peer reads what comes (its cleartext is dropped). */
static void raw_pump(raw *r, conn *s)
{
    for (int i = 0; i < 1000; i++) {
        bool moved = false;
        if (s->out.len) {
            BIO_write(r->rb, s->out.p, (int)s->out.len);
            buf_take(&s->out, s->out.len);
            moved = true;
        }
        if (!SSL_is_init_finished(r->ssl))
            SSL_do_handshake(r->ssl);
        else {
            uint8_t junk[4096];
            while (SSL_read(r->ssl, junk, sizeof(junk)) > 0)
                ;
        }
        ERR_clear_error();
        char *p;
        long n = BIO_get_mem_data(r->wb, &p);
        if (n > 0) {
            conn_feed(s, p, (size_t)n);
            (void)BIO_reset(r->wb);
            moved = true;
        }
        if (!moved)
            return;
    }
    ck_abort_msg("never settled");
}

/* HKDF-Expand-Label of TLS 1.3 (SHA-256). */
static void expand_label(const uint8_t *secret, const char *label, uint8_t *out, size_t n)
{
    uint8_t info[64];
    size_t ll = 6 + strlen(label), k = 0;
    info[k++] = (uint8_t)(n >> 8);
    info[k++] = (uint8_t)n;
    info[k++] = (uint8_t)ll;
    memcpy(info + k, "tls13 ", 6);
    memcpy(info + k + 6, label, strlen(label));
    k += ll;
    info[k++] = 0; /* no context */
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, 32),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, k),
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_end()};
    ck_assert_int_eq(EVP_KDF_derive(kc, out, n, params), 1);
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
}

/* The client's TLS 1.3 record protection, by hand: a record of any inner
 * content, empty ones included (OpenSSL never sends those). */
typedef struct sealer {
    uint8_t secret[32];
    uint64_t seq;
} sealer;

static void seal(sealer *z, uint8_t type, const uint8_t *pt, size_t n, buf *out)
{
    uint8_t key[16], iv[12], inner[256], hdr[5], tag[16], ct[256];
    expand_label(z->secret, "key", key, 16);
    expand_label(z->secret, "iv", iv, 12);
    for (int i = 0; i < 8; i++)
        iv[11 - i] ^= (uint8_t)(z->seq >> (8 * i));
    z->seq++;
    ck_assert_uint_lt(n, sizeof(inner) - 1);
    if (n)
        memcpy(inner, pt, n);
    inner[n] = type;
    size_t len = n + 1 + 16;
    hdr[0] = 0x17, hdr[1] = 0x03, hdr[2] = 0x03, hdr[3] = (uint8_t)(len >> 8),
    hdr[4] = (uint8_t)len;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int ol;
    ck_assert_int_eq(EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, key, iv), 1);
    ck_assert_int_eq(EVP_EncryptUpdate(c, NULL, &ol, hdr, 5), 1);
    ck_assert_int_eq(EVP_EncryptUpdate(c, ct, &ol, inner, (int)n + 1), 1);
    ck_assert_int_eq(EVP_EncryptFinal_ex(c, ct + ol, &ol), 1);
    ck_assert_int_eq(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag), 1);
    EVP_CIPHER_CTX_free(c);
    buf_add(out, hdr, 5);
    buf_add(out, ct, n + 1);
    buf_add(out, tag, 16);
}

typedef enum flood_kind { FLOOD_EMPTY, FLOOD_WARN, FLOOD_KEY_UPDATE, FLOOD_KEY_UPDATE_REQ,
                          FLOOD_KINDS } flood_kind;

static const char *const flood_name[] = {"empty records", "warning alerts", "KeyUpdates",
                                         "KeyUpdates asking for one back"};
static const char *const flood_code[] = {"ERR_SSL_RECORD_TOO_SMALL",
                                         "ERR_SSL_TOO_MANY_WARN_ALERTS",
                                         "ERR_SSL_TOO_MANY_KEY_UPDATES",
                                         "ERR_SSL_TOO_MANY_KEY_UPDATES"};

/* A TLS 1.3 peer floods our server, or our client, with records that
 * carry nothing: ours fails with OpenSSL's bound (32 empty records, 5 warning
 * alerts) or the filter's (32 KeyUpdates in a row, which OpenSSL 3.0
 * does not bound), having used bounded memory. The flood is 10,000 records long: what the
 * server did not read once it failed is not kept. */
START_TEST(tls13_floods_are_bounded)
{
    flood_kind kind = (flood_kind)(_i % FLOOD_KINDS);
    bool ours_client = _i >= FLOOD_KINDS; /* the raw peer is the server */
    size_t live0 = h_alloc_live();
    raw r;
    raw_open(&r, 3, ours_client);
    conn s;
    conn_open(&s, ours_client ? cctx[3] : sctx[3], ours_client ? DX_TLS_CLIENT : DX_TLS_SERVER);
    ck_assert_int_eq(dx_tls_start(s.t), 0);
    raw_pump(&r, &s);
    ck_assert(SSL_is_init_finished(r.ssl) && s.secure);
    ck_assert(r.have_secret);
    h_alloc_reset_peak();
    sealer z = {.seq = 0};
    memcpy(z.secret, r.secret, 32);
    unsigned sent = 0;
    for (; sent < 10000 && !conn_failed(&s); sent++) {
        buf rec = {0};
        static const uint8_t warn[] = {1, 90};             /* user_canceled */
        static const uint8_t ku[] = {24, 0, 0, 1, 0};      /* not requested */
        static const uint8_t ku_req[] = {24, 0, 0, 1, 1};  /* requested */
        switch (kind) {
        case FLOOD_EMPTY:
            seal(&z, 23, NULL, 0, &rec);
            break;
        case FLOOD_WARN:
            seal(&z, 21, warn, sizeof(warn), &rec);
            break;
        case FLOOD_KEY_UPDATE:
        case FLOOD_KEY_UPDATE_REQ:
            seal(&z, 22, kind == FLOOD_KEY_UPDATE ? ku : ku_req, 5, &rec);
            expand_label(z.secret, "traffic upd", z.secret, 32);
            z.seq = 0;
            break;
        default:
            break;
        }
        conn_feed(&s, rec.p, rec.len);
        buf_free(&rec);
    }
    const char *codes[] = {flood_code[kind], NULL};
    assert_failed_with(&s, codes, flood_name[kind]);
    ck_assert_uint_le(sent, 40);
    ck_assert_uint_eq(s.rec.received, 0);
    ck_assert_uint_lt(h_alloc_peak() - live0, 64 * 1024);
    ck_assert(s.out_gone); /* the transport goes */
    /* OpenSSL's alert reaches the client; a KeyUpdate flood, which the
     * filter bounds itself, ends the transport without one */
    raw_pump(&r, &s);
    bool alerted = SSL_get_shutdown(r.ssl) & SSL_RECEIVED_SHUTDOWN;
    ck_assert(alerted == (kind == FLOOD_EMPTY || kind == FLOOD_WARN));
    conn_close(&s);
    raw_close(&r);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* The TLS 1.2 record protection of AES-128-GCM, by hand, for one side:
 * records OpenSSL never sends (empty ones), or never sends in a row
 * (warning alerts). */
typedef struct sealer12 {
    uint8_t key[16], salt[4];
    uint64_t seq;
} sealer12;

/* The write key and salt of the raw peer's side, from its key block
 * (TLS1-PRF over the master secret, "key expansion", server random,
 * client random: the MAC keys are empty, then the two keys, then the two
 * salts). */
static void sealer12_init(sealer12 *z, const raw *r)
{
    SSL_SESSION *sess = SSL_get_session(r->ssl);
    ck_assert_ptr_nonnull(sess);
    ck_assert_str_eq(SSL_CIPHER_get_name(SSL_SESSION_get0_cipher(sess)),
                     "ECDHE-ECDSA-AES128-GCM-SHA256");
    uint8_t ms[48], seed[13 + 2 * SSL3_RANDOM_SIZE], block[40];
    ck_assert_uint_eq(SSL_SESSION_get_master_key(sess, ms, sizeof(ms)), sizeof(ms));
    memcpy(seed, "key expansion", 13);
    ck_assert_uint_eq(SSL_get_server_random(r->ssl, seed + 13, SSL3_RANDOM_SIZE),
                      SSL3_RANDOM_SIZE);
    ck_assert_uint_eq(SSL_get_client_random(r->ssl, seed + 13 + SSL3_RANDOM_SIZE,
                                            SSL3_RANDOM_SIZE),
                      SSL3_RANDOM_SIZE);
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "TLS1-PRF", NULL);
    ck_assert_ptr_nonnull(kdf);
    EVP_KDF_CTX *kc = EVP_KDF_CTX_new(kdf);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, ms, sizeof(ms)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, sizeof(seed)),
        OSSL_PARAM_construct_end()};
    ck_assert_int_eq(EVP_KDF_derive(kc, block, sizeof(block), params), 1);
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
    memcpy(z->key, block + (r->server ? 16 : 0), 16);
    memcpy(z->salt, block + 32 + (r->server ? 4 : 0), 4);
    /* the peer's Finished, the first record after its ChangeCipherSpec,
     * was sequence number 0 */
    z->seq = 1;
}

static void seal12(sealer12 *z, uint8_t type, const uint8_t *pt, size_t n, buf *out)
{
    uint8_t nonce[12], aad[13], hdr[5], explicit_[8], tag[16], ct[256];
    ck_assert_uint_lt(n, sizeof(ct));
    for (int i = 0; i < 8; i++)
        explicit_[7 - i] = aad[7 - i] = (uint8_t)(z->seq >> (8 * i));
    z->seq++;
    memcpy(nonce, z->salt, 4);
    memcpy(nonce + 4, explicit_, 8);
    aad[8] = type, aad[9] = 0x03, aad[10] = 0x03, aad[11] = (uint8_t)(n >> 8),
    aad[12] = (uint8_t)n;
    size_t len = 8 + n + 16;
    hdr[0] = type, hdr[1] = 0x03, hdr[2] = 0x03, hdr[3] = (uint8_t)(len >> 8),
    hdr[4] = (uint8_t)len;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int ol = 0;
    ck_assert_int_eq(EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, z->key, nonce), 1);
    ck_assert_int_eq(EVP_EncryptUpdate(c, NULL, &ol, aad, sizeof(aad)), 1);
    if (n)
        ck_assert_int_eq(EVP_EncryptUpdate(c, ct, &ol, pt, (int)n), 1);
    ck_assert_int_eq(EVP_EncryptFinal_ex(c, ct + (n ? ol : 0), &ol), 1);
    ck_assert_int_eq(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag), 1);
    EVP_CIPHER_CTX_free(c);
    buf_add(out, hdr, 5);
    buf_add(out, explicit_, 8);
    buf_add(out, ct, n);
    buf_add(out, tag, 16);
}

/* A TLS 1.2 peer (AES-128-GCM) floods our server, or our client, with
 * 10,000 encrypted records that carry nothing: empty application data
 * records, or warning alerts (user_canceled). Ours fails with OpenSSL's
 * bound (32 empty records, 5 warning alerts in a row) having used bounded
 * memory, delivers nothing of the flood, and its alert reaches the peer.
 * The keys come from the raw peer's session (master secret, randoms); a
 * record of data sealed with them first shows they are right. */
START_TEST(tls12_floods_are_bounded)
{
    flood_kind kind = (flood_kind)(_i % 2); /* FLOOD_EMPTY or FLOOD_WARN */
    bool ours_client = _i >= 2;             /* the raw peer is the server */
    size_t live0 = h_alloc_live();
    raw r;
    raw_open(&r, 2, ours_client);
    ck_assert_int_eq(SSL_set_cipher_list(r.ssl, "ECDHE-ECDSA-AES128-GCM-SHA256"), 1);
    conn s;
    conn_open(&s, ours_client ? cctx[2] : sctx[2], ours_client ? DX_TLS_CLIENT : DX_TLS_SERVER);
    ck_assert_int_eq(dx_tls_start(s.t), 0);
    raw_pump(&r, &s);
    ck_assert(SSL_is_init_finished(r.ssl) && s.secure);
    ck_assert_int_eq(SSL_version(r.ssl), TLS1_2_VERSION);
    sealer12 z;
    sealer12_init(&z, &r);
    /* the keys are right: one record of data comes through */
    static const uint8_t hello[] = "sealed by hand";
    buf rec = {0};
    seal12(&z, 23, hello, sizeof(hello), &rec);
    conn_feed(&s, rec.p, rec.len);
    buf_free(&rec);
    ck_assert_msg(!conn_failed(&s), "hand-sealed data: %s", s.rec.error_name);
    ck_assert_uint_eq(s.rec.len, sizeof(hello));
    ck_assert_mem_eq(s.rec.data, hello, sizeof(hello));
    uint64_t received0 = s.rec.received;
    h_alloc_reset_peak();
    unsigned sent = 0;
    for (; sent < 10000 && !conn_failed(&s); sent++) {
        static const uint8_t warn[] = {1, 90}; /* warning, user_canceled */
        if (kind == FLOOD_EMPTY)
            seal12(&z, 23, NULL, 0, &rec);
        else
            seal12(&z, 21, warn, sizeof(warn), &rec);
        conn_feed(&s, rec.p, rec.len);
        buf_free(&rec);
    }
    const char *codes[] = {flood_code[kind], NULL};
    assert_failed_with(&s, codes, flood_name[kind]);
    /* OpenSSL fails at the 33rd empty record, at the 5th alert */
    ck_assert_uint_eq(sent, kind == FLOOD_EMPTY ? 33 : 5);
    ck_assert_uint_eq(s.rec.received, received0);
    ck_assert_uint_eq(s.rec.len, sizeof(hello));
    ck_assert_uint_lt(h_alloc_peak() - live0, 64 * 1024);
    ck_assert(s.out_gone); /* the transport goes */
    raw_pump(&r, &s);      /* OpenSSL's fatal alert reaches the peer */
    ck_assert(SSL_get_shutdown(r.ssl) & SSL_RECEIVED_SHUTDOWN);
    conn_close(&s);
    raw_close(&r);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* The same KeyUpdate flood, asking each time for one back, arriving in
 * one piece (10,000 records in one write): the connection stops reading
 * at the bound, so it answers no more than 33 of them. */
START_TEST(key_update_flood_in_one_write)
{
    size_t live0 = h_alloc_live();
    raw r;
    raw_open(&r, 3, false);
    conn s;
    conn_open(&s, sctx[3], DX_TLS_SERVER);
    ck_assert_int_eq(dx_tls_start(s.t), 0);
    raw_pump(&r, &s);
    ck_assert(SSL_is_init_finished(r.ssl) && s.secure && r.have_secret);
    sealer z = {.seq = 0};
    memcpy(z.secret, r.secret, 32);
    buf flood = {0};
    static const uint8_t ku_req[] = {24, 0, 0, 1, 1};
    for (int i = 0; i < 10000; i++) {
        seal(&z, 22, ku_req, sizeof(ku_req), &flood);
        expand_label(z.secret, "traffic upd", z.secret, 32);
        z.seq = 0;
    }
    uint64_t sent0 = s.sent;
    conn_feed(&s, flood.p, flood.len);
    const char *codes[] = {"ERR_SSL_TOO_MANY_KEY_UPDATES", NULL};
    assert_failed_with(&s, codes, "KeyUpdates in one write");
    /* each answer is one record: 5 of header, 5 of KeyUpdate, 1 of type,
     * 16 of tag */
    ck_assert_uint_le(s.sent - sent0, 33 * 27);
    buf_free(&flood);
    conn_close(&s);
    raw_close(&r);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* A peer that renews keys while data moves is no flood: 100 KeyUpdates
 * from a server (each asking for ours in return) between writes of our
 * client's, during a long upload the server never answers. */
START_TEST(key_updates_between_writes_are_no_flood)
{
    size_t live0 = h_alloc_live();
    raw r;
    raw_open(&r, 3, true);
    conn c;
    conn_open(&c, cctx[3], DX_TLS_CLIENT);
    ck_assert_int_eq(dx_tls_start(c.t), 0);
    raw_pump(&r, &c);
    ck_assert(SSL_is_init_finished(r.ssl) && c.secure);
    static uint8_t chunk[1000];
    for (int i = 0; i < 100; i++) {
        ck_assert_int_ge(dx_stream_write(dx_tls_upper(c.t), chunk, sizeof(chunk)), 0);
        raw_pump(&r, &c);
        ck_assert_int_eq(SSL_key_update(r.ssl, SSL_KEY_UPDATE_REQUESTED), 1);
        ck_assert_int_eq(SSL_do_handshake(r.ssl), 1);
        raw_pump(&r, &c);
        ck_assert_msg(!conn_failed(&c), "after %d: %s", i, c.rec.error_name);
    }
    conn_close(&c);
    raw_close(&r);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* A TLS 1.2 server asks our client to renegotiate, again and again (50
 * HelloRequests, each answered by a full handshake): the client follows
 * each, keeps its memory flat (what the 10th renegotiation held, the
 * 50th holds), and the connection still carries data. A client that
 * disabled renegotiation (Node's disableRenegotiation) fails at the
 * first with ERR_TLS_RENEGOTIATION_DISABLED. */
START_TEST(renegotiation_flood_from_a_server)
{
    bool disabled = _i == 1;
    size_t live0 = h_alloc_live();
    raw r;
    raw_open(&r, 2, true);
    conn c;
    conn_open(&c, cctx[2], DX_TLS_CLIENT);
    if (disabled)
        ck_assert_int_eq(dx_tls_disable_renegotiation(c.t), 0);
    ck_assert_int_eq(dx_tls_start(c.t), 0);
    raw_pump(&r, &c);
    ck_assert(SSL_is_init_finished(r.ssl) && c.secure);
    size_t live10 = 0;
    int done = 0;
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(SSL_renegotiate(r.ssl), 1);
        SSL_do_handshake(r.ssl); /* the HelloRequest */
        ERR_clear_error();
        raw_pump(&r, &c);
        if (disabled) {
            const char *codes[] = {"ERR_TLS_RENEGOTIATION_DISABLED", NULL};
            assert_failed_with(&c, codes, "renegotiation disabled");
            ck_assert(c.out_gone);
            break;
        }
        ck_assert_msg(!conn_failed(&c), "renegotiation %d: %s", i, c.rec.error_name);
        if (SSL_renegotiate_pending(r.ssl) == 0)
            done++;
        if (i == 9)
            live10 = h_alloc_live();
    }
    if (disabled) {
        conn_close(&c);
        raw_close(&r);
        ck_assert_uint_eq(h_alloc_live(), live0);
        return;
    }
    ck_assert_uint_le(h_alloc_live(), live10);
    ck_assert_int_eq(done, 50);
    /* data still flows from the server */
    static const char msg[] = "still here";
    ck_assert_int_eq(SSL_write(r.ssl, msg, sizeof(msg)), (int)sizeof(msg));
    raw_pump(&r, &c);
    ck_assert_uint_eq(c.rec.len, sizeof(msg));
    ck_assert_mem_eq(c.rec.data, msg, sizeof(msg));
    conn_close(&c);
    raw_close(&r);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* A TLS 1.2 client renegotiates again and again: a server that refuses
 * client renegotiation (the default) answers the first with a
 * no_renegotiation warning, which the OpenSSL client answers with a
 * fatal alert; one that allows 3 per window fails the 4th with
 * ERR_TLS_SESSION_ATTACK. Either way the flood stops early. */
START_TEST(renegotiation_flood_from_a_client)
{
    bool allowed = _i == 1;
    size_t live0 = h_alloc_live();
    raw r;
    raw_open(&r, 2, false);
    conn s;
    conn_open(&s, sctx[2], DX_TLS_SERVER);
    if (allowed)
        ck_assert_int_eq(dx_tls_set_client_renegotiation(s.t, true, 3, 600000), 0);
    ck_assert_int_eq(dx_tls_start(s.t), 0);
    raw_pump(&r, &s);
    ck_assert(SSL_is_init_finished(r.ssl) && s.secure);
    int i = 0;
    for (; i < 50 && !conn_failed(&s); i++) {
        if (!SSL_renegotiate(r.ssl))
            break; /* the raw client gave up after a refusal */
        SSL_do_handshake(r.ssl);
        ERR_clear_error();
        raw_pump(&r, &s);
    }
    if (allowed) {
        const char *codes[] = {"ERR_TLS_SESSION_ATTACK", NULL};
        assert_failed_with(&s, codes, "renegotiation flood");
        ck_assert_int_eq(i, 4);
        ck_assert(s.out_gone);
    } else {
        /* the OpenSSL client answers the refusal with a fatal alert */
        const char *codes[] = {"ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE", NULL};
        assert_failed_with(&s, codes, "refused renegotiation");
        ck_assert_int_eq(i, 1);
    }
    conn_close(&s);
    raw_close(&r);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* A record header announcing more than a record may hold, once the
 * connection is secure: refused from the header alone, before its body
 * came, on either side. */
START_TEST(oversized_record_after_the_handshake)
{
    int v = VER;
    bool to_client = _i >= 2;
    size_t live0 = h_alloc_live();
    mitm m;
    mitm_open(&m, cctx[v], sctx[v]);
    mitm_start(&m);
    ck_assert(m.c.secure && m.s.secure);
    static const uint8_t hdr[] = {0x17, 0x03, 0x03, 0x48, 0x01}; /* 18433 bytes */
    conn *to = to_client ? &m.c : &m.s;
    conn_feed(to, hdr, sizeof(hdr));
    const char *codes[] = {"ERR_SSL_PACKET_LENGTH_TOO_LONG", "ERR_SSL_ENCRYPTED_LENGTH_TOO_LONG",
                           NULL};
    assert_failed_with(to, codes, "oversized record");
    mitm_pump(&m); /* the alert goes to the peer */
    conn *peer = to_client ? &m.s : &m.c;
    const char *pcodes[] = {"ERR_SSL_TLSV1_ALERT_RECORD_OVERFLOW", NULL};
    assert_failed_with(peer, pcodes, "oversized record, peer");
    mitm_close(&m);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

/* A ClientHello as large as its extensions may make it (one extension of
 * nearly 64 KiB, over five records): our server reads it whole and
 * completes the handshake, its memory back to where it was afterwards. */
static int big_ext_add(SSL *s, unsigned int type, unsigned int context,
                       const unsigned char **out, size_t *outlen, X509 *x, size_t chainidx,
                       int *al, void *arg)
{
    (void)s, (void)type, (void)context, (void)x, (void)chainidx, (void)al;
    static uint8_t big[65000];
    memset(big, 0x5a, sizeof(big));
    *out = big;
    *outlen = *(size_t *)arg;
    return 1;
}

START_TEST(client_hello_of_the_maximum_size)
{
    int v = VER;
    size_t live0 = h_alloc_live();
    raw r;
    raw_open(&r, v, false);
    static size_t ext_len = 65000;
    ck_assert_int_eq(SSL_CTX_add_custom_ext(r.ctx, 0x7a7a, SSL_EXT_CLIENT_HELLO, big_ext_add,
                                            NULL, &ext_len, NULL, NULL), 1);
    SSL_free(r.ssl);
    r.ssl = SSL_new(r.ctx);
    r.rb = BIO_new(BIO_s_mem());
    r.wb = BIO_new(BIO_s_mem());
    SSL_set_bio(r.ssl, r.rb, r.wb);
    SSL_set_ex_data(r.ssl, raw_index, &r);
    SSL_set_connect_state(r.ssl);
    conn s;
    conn_open(&s, sctx[v], DX_TLS_SERVER);
    ck_assert_int_eq(dx_tls_start(s.t), 0);
    SSL_do_handshake(r.ssl);
    ERR_clear_error();
    char *p;
    long n = BIO_get_mem_data(r.wb, &p);
    ck_assert_int_gt(n, 65000); /* the ClientHello, over several records */
    ck_assert_int_lt(n, 65536 + 5 * 5 + 1024);
    raw_pump(&r, &s);
    ck_assert_msg(s.secure && SSL_is_init_finished(r.ssl), "%s", s.rec.error_name);
    ck_assert(!conn_failed(&s));
    conn_close(&s);
    raw_close(&r);
    ck_assert_uint_eq(h_alloc_live(), live0);
}
END_TEST

Suite *tls_hostile_suite(void)
{
    Suite *s = suite_create("tls_hostile");
    TCase *tc = tcase_create("sweeps");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, handshake_cut_at_every_offset, 0, 4);
    tcase_add_loop_test(tc, handshake_bit_flip_at_every_offset, 0, 4);
    tcase_add_loop_test(tc, application_record_bit_flips, 0, 2);
    suite_add_tcase(s, tc);
    TCase *bad = tcase_create("bad_input");
    tcase_add_unchecked_fixture(bad, setup, teardown);
    tcase_add_loop_test(bad, server_refuses_what_is_no_client_hello, 0, 2 * (int)N_BAD);
    tcase_add_loop_test(bad, client_refuses_what_is_no_server_hello, 0, 4);
    tcase_add_loop_test(bad, handshake_fed_one_byte_per_second_times_out, 0, 4);
    tcase_add_loop_test(bad, tls13_floods_are_bounded, 0, 2 * FLOOD_KINDS);
    tcase_add_loop_test(bad, tls12_floods_are_bounded, 0, 4);
    tcase_add_test(bad, key_update_flood_in_one_write);
    tcase_add_test(bad, key_updates_between_writes_are_no_flood);
    tcase_add_loop_test(bad, renegotiation_flood_from_a_server, 0, 2);
    tcase_add_loop_test(bad, renegotiation_flood_from_a_client, 0, 2);
    tcase_add_loop_test(bad, oversized_record_after_the_handshake, 0, 4);
    tcase_add_loop_test(bad, client_hello_of_the_maximum_size, 0, 2);
    suite_add_tcase(s, bad);
    return s;
}
