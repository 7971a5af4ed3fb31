/*
 * The TLS filter (include/duplex/tls_filter.h): handshakes, transfers,
 * verification, closing, time, backpressure and introspection, with a
 * client and a server in one process over memory pairs, pipe pairs and a
 * link of 1-byte deliveries. IDs in comments cite
 * doc/../shared/spec checklist entries (C-, T-, E-, M-, D-, P-).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "harness.h"

/* ---- the test PKI, made once in the suite (before Check forks) ---------- */

enum { CERT_EC, CERT_RSA, CERT_EXPIRED, CERT_FUTURE, CERT_SELF, CERT_UNTRUSTED,
       CERT_CLIENT, CERT_NONAME, CERT_VIA_INTER, CERT_COUNT };

static dx_pki_cert *ca, *ca2, *inter, *certs[CERT_COUNT];

static const char *const server_dns[] = {"localhost", "server.test", NULL};
static const char *const server_ip[] = {"127.0.0.1", NULL};

static void make_pki(void)
{
    dx_pki_opts o = {.key_type = DX_PKI_EC_P256, .common_name = "Test CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &o, &ca, NULL));
    o.common_name = "Other CA";
    H_MUST(dx_pki_issue(NULL, &o, &ca2, NULL));
    dx_pki_opts leaf = {.common_name = "server", .dns_names = server_dns,
                        .ip_addresses = server_ip, .ext_key_usage = DX_PKI_EKU_SERVER};
    H_MUST(dx_pki_issue(ca, &leaf, &certs[CERT_EC], NULL));
    dx_pki_opts rsa = leaf;
    rsa.key_type = DX_PKI_RSA_2048;
    H_MUST(dx_pki_issue(ca, &rsa, &certs[CERT_RSA], NULL));
    dx_pki_opts exp = leaf;
    exp.not_before = -7200;
    exp.not_after = -3600;
    H_MUST(dx_pki_issue(ca, &exp, &certs[CERT_EXPIRED], NULL));
    dx_pki_opts fut = leaf;
    fut.not_before = 3600;
    fut.not_after = 7200;
    H_MUST(dx_pki_issue(ca, &fut, &certs[CERT_FUTURE], NULL));
    H_MUST(dx_pki_issue(NULL, &leaf, &certs[CERT_SELF], NULL));
    H_MUST(dx_pki_issue(ca2, &leaf, &certs[CERT_UNTRUSTED], NULL));
    dx_pki_opts cli = {.common_name = "client", .ext_key_usage = DX_PKI_EKU_CLIENT};
    H_MUST(dx_pki_issue(ca, &cli, &certs[CERT_CLIENT], NULL));
    static const char *const other[] = {"other.test", NULL};
    dx_pki_opts wrong = {.common_name = "other", .dns_names = other};
    H_MUST(dx_pki_issue(ca, &wrong, &certs[CERT_NONAME], NULL));
    dx_pki_opts io = {.common_name = "Intermediate CA", .is_ca = true};
    H_MUST(dx_pki_issue(ca, &io, &inter, NULL));
    H_MUST(dx_pki_issue(inter, &leaf, &certs[CERT_VIA_INTER], NULL));
}

static void free_pki(void)
{
    for (int i = 0; i < CERT_COUNT; i++)
        dx_pki_cert_free(certs[i]);
    dx_pki_cert_free(ca);
    dx_pki_cert_free(ca2);
    dx_pki_cert_free(inter);
    memset(certs, 0, sizeof(certs));
    ca = ca2 = inter = NULL;
}

/* ---- contexts -------------------------------------------------------------- */

typedef struct ctx_opts {
    int cert;          /* CERT_* or -1 for none */
    bool trust_ca;     /* trust ca (else nothing but ca2) */
    const char *min, *max;
    const char *ciphers;
    const char *groups, *sigalgs;
    bool client_order; /* a server that follows the client's order */
    const char *crl;     /* a PEM CRL to check with */
    bool dh_auto;        /* DH parameters chosen by OpenSSL */
} ctx_opts;

static dx_tls_ctx *make_ctx(const ctx_opts *o)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *capem = dx_pki_cert_pem(o->trust_ca ? ca : ca2);
    ck_assert_int_eq(dx_tls_config_add_ca(cfg, capem, strlen(capem)), 0);
    if (o->cert >= 0) {
        const char *c = dx_pki_cert_pem(certs[o->cert]), *k = dx_pki_key_pem(certs[o->cert]);
        ck_assert_int_eq(dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL), 0);
    }
    if (o->min)
        ck_assert_int_eq(dx_tls_config_set_min_version(cfg, o->min), 0);
    if (o->max)
        ck_assert_int_eq(dx_tls_config_set_max_version(cfg, o->max), 0);
    if (o->ciphers)
        ck_assert_int_eq(dx_tls_config_set_ciphers(cfg, o->ciphers), 0);
    if (o->groups)
        ck_assert_int_eq(dx_tls_config_set_groups(cfg, o->groups), 0);
    if (o->sigalgs)
        ck_assert_int_eq(dx_tls_config_set_sigalgs(cfg, o->sigalgs), 0);
    if (o->client_order)
        ck_assert_int_eq(dx_tls_config_set_honor_cipher_order(cfg, false), 0);
    if (o->crl)
        ck_assert_int_eq(dx_tls_config_add_crl(cfg, o->crl, strlen(o->crl)), 0);
    if (o->dh_auto)
        ck_assert_int_eq(dx_tls_config_set_dhparam(cfg, "auto", 4), 0);
    dx_tls_ctx *ctx;
    dx_error *err = NULL;
    int rc = dx_tls_ctx_new(cfg, &ctx, &err);
    ck_assert_msg(rc == 0, "ctx: %s", err ? dx_error_message(err) : "?");
    dx_tls_config_free(cfg);
    return ctx;
}

static dx_tls_ctx *server_ctx(int cert, const char *version)
{
    ctx_opts o = {.cert = cert, .trust_ca = true, .min = version, .max = version};
    return make_ctx(&o);
}

static dx_tls_ctx *client_ctx(const char *version)
{
    ctx_opts o = {.cert = -1, .trust_ca = true, .min = version, .max = version};
    return make_ctx(&o);
}

/* ---- one connection: a client and a server over a channel ------------------ */

typedef struct tside {
    dx_tls *t;
    h_rec rec;
    unsigned secure, sessions, keylogs, timeouts, deadlines, key_updates;
    bool secure_before_session_ok;
    uint8_t session[8192];
    size_t session_len;
    char keylog[8192];
    size_t keylog_len;
    bool trace_hello;
    uint64_t deadline;
    bool destroy_on_secure;
} tside;

typedef struct tpair {
    h_chan ch;
    tside c, s;
    bool direct; /* SecurePair shape: lowers linked without a transport */
    dx_link *link;
    size_t live0;
} tpair;

static void ev_secure(dx_tls *t, void *u)
{
    tside *sd = u;
    ck_assert_ptr_eq(t, sd->t);
    sd->secure++;
    if (sd->destroy_on_secure) {
        dx_tls_destroy(t);
        sd->t = NULL;
    }
}

static void ev_session(dx_tls *t, const uint8_t *sess, size_t len, void *u)
{
    tside *sd = u;
    (void)t;
    ck_assert_msg(sd->secure == 1, "session before secure");
    sd->sessions++;
    ck_assert_uint_le(len, sizeof(sd->session));
    memcpy(sd->session, sess, len);
    sd->session_len = len;
}

static void ev_keylog(dx_tls *t, const char *line, void *u)
{
    tside *sd = u;
    (void)t;
    ck_assert_ptr_null(strchr(line, '\n'));
    sd->keylogs++;
    size_t n = strlen(line);
    if (sd->keylog_len + n + 2 < sizeof(sd->keylog)) {
        memcpy(sd->keylog + sd->keylog_len, line, n);
        sd->keylog_len += n;
        sd->keylog[sd->keylog_len++] = '\n';
        sd->keylog[sd->keylog_len] = '\0';
    }
}

static void ev_trace(dx_tls *t, const char *text, void *u)
{
    tside *sd = u;
    (void)t;
    if (strstr(text, "ClientHello"))
        sd->trace_hello = true;
}

static void ev_timeout(dx_tls *t, void *u)
{
    (void)t;
    ((tside *)u)->timeouts++;
}

static void ev_deadline(dx_tls *t, uint64_t when, void *u)
{
    (void)t;
    tside *sd = u;
    sd->deadlines++;
    sd->deadline = when;
}

static const dx_tls_events tls_events = {
    .on_secure = ev_secure,
    .on_session = ev_session,
    .on_keylog = ev_keylog,
    .on_trace = ev_trace,
    .on_timeout = ev_timeout,
    .on_deadline = ev_deadline,
};

static void side_new(tside *sd, dx_tls_ctx *ctx, dx_tls_role role)
{
    ck_assert_int_eq(dx_tls_new(ctx, role, &sd->t), 0);
    ck_assert_int_eq(dx_tls_set_events(sd->t, &tls_events, sd), 0);
    h_rec_attach(&sd->rec, dx_tls_upper(sd->t));
}

/* Opens a client and a server (not started) over a channel of kind (or
 * joined directly when direct). The contexts keep their own references. */
static void tp_open(tpair *p, h_kind kind, const dx_pair_opts *po, dx_tls_ctx *cctx,
                    dx_tls_ctx *sctx, bool direct)
{
    memset(p, 0, sizeof(*p));
    p->live0 = h_alloc_live();
    side_new(&p->c, cctx, DX_TLS_CLIENT);
    side_new(&p->s, sctx, DX_TLS_SERVER);
    p->direct = direct;
    if (direct) {
        ck_assert_int_eq(dx_link_new(dx_tls_lower(p->c.t), dx_tls_lower(p->s.t), NULL,
                                     NULL, &p->link), 0);
        p->ch.kind = H_MEM;
        return;
    }
    h_chan_open(&p->ch, kind, po);
    ck_assert_int_eq(dx_tls_attach(p->c.t, p->ch.a), 0);
    ck_assert_int_eq(dx_tls_attach(p->s.t, p->ch.b), 0);
}

static void tp_start(tpair *p)
{
    ck_assert_int_eq(dx_tls_start(p->s.t), 0);
    ck_assert_int_eq(dx_tls_start(p->c.t), 0);
}

static bool both_secure(void *arg)
{
    tpair *p = arg;
    return (p->c.secure && p->s.secure) || p->c.rec.errors || p->s.rec.errors;
}

static bool both_closed(void *arg)
{
    tpair *p = arg;
    return p->c.rec.closes && p->s.rec.closes;
}

static void tp_run(tpair *p, bool (*done)(void *), int ms)
{
    h_run(&p->ch, done, p, ms);
}

static void tp_close(tpair *p)
{
    dx_tls_destroy(p->c.t);
    dx_tls_destroy(p->s.t);
    if (p->link)
        dx_link_destroy(p->link);
    h_rec_assert_clean(&p->c.rec);
    h_rec_assert_clean(&p->s.rec);
    h_rec_free(&p->c.rec);
    h_rec_free(&p->s.rec);
    ck_assert_msg(h_alloc_live() == p->live0, "%zu bytes leaked",
                  h_alloc_live() - p->live0);
}

/* A connected pair (over a channel of kind, or joined directly when
 * direct): handshake done, asserted. */
static void tp_connect_as(tpair *p, h_kind kind, const dx_pair_opts *po, dx_tls_ctx *cctx,
                          dx_tls_ctx *sctx, bool direct)
{
    tp_open(p, kind, po, cctx, sctx, direct);
    ck_assert_int_eq(dx_tls_set_servername(p->c.t, "localhost"), 0);
    tp_start(p);
    tp_run(p, both_secure, 10000);
    ck_assert_msg(p->c.secure == 1 && p->s.secure == 1, "handshake: client %s, server %s",
                  p->c.rec.error_name, p->s.rec.error_name);
}

static void tp_connect(tpair *p, h_kind kind, const dx_pair_opts *po, dx_tls_ctx *cctx,
                       dx_tls_ctx *sctx)
{
    tp_connect_as(p, kind, po, cctx, sctx, false);
}

/* ---- transfers ------------------------------------------------------------- */

typedef struct xfer {
    tpair *p;
    dx_stream *from;
    uint64_t seed, total, sent;
    h_rec *to;
    EVP_MD_CTX *sha_out;
    bool ended;
} xfer;

/* Writes the next chunks until the writer is full or everything went. */
static void xfer_pump(xfer *x)
{
    uint8_t buf[7000]; /* not a multiple of the record size */
    while (x->sent < x->total) {
        size_t n = sizeof(buf);
        if (n > x->total - x->sent)
            n = (size_t)(x->total - x->sent);
        h_gen_fill(x->seed, x->sent, buf, n);
        EVP_DigestUpdate(x->sha_out, buf, n);
        int rc = dx_stream_write(x->from, buf, n);
        ck_assert_int_ge(rc, 0);
        x->sent += n;
        if (rc == DX_FULL)
            return;
    }
}

static bool xfers_done(void *arg)
{
    xfer *x = arg;
    for (; x->p; x++) {
        if (x->sent < x->total && dx_stream_write_buffered(x->from) == 0)
            xfer_pump(x);
        if (x->to->received < x->total && !x->to->errors)
            return false;
    }
    return true;
}

/* Moves total bytes each way at once, checking them byte by byte and by
 * SHA-256 on both ends. */
static void transfer_both(tpair *p, uint64_t total)
{
    xfer x[3] = {
        {.p = p, .from = dx_tls_upper(p->c.t), .seed = 11, .total = total, .to = &p->s.rec},
        {.p = p, .from = dx_tls_upper(p->s.t), .seed = 12, .total = total, .to = &p->c.rec},
        {0},
    };
    p->s.rec.verify = true;
    p->s.rec.verify_seed = 11;
    p->c.rec.verify = true;
    p->c.rec.verify_seed = 12;
    p->s.rec.keep_data = p->c.rec.keep_data = true;
    for (int i = 0; i < 2; i++) {
        x[i].sha_out = EVP_MD_CTX_new();
        EVP_DigestInit_ex(x[i].sha_out, EVP_sha256(), NULL);
    }
    xfer_pump(&x[0]);
    xfer_pump(&x[1]);
    ck_assert(h_run(&p->ch, xfers_done, x, 60000));
    for (int i = 0; i < 2; i++) {
        unsigned char a[32], b[32];
        EVP_DigestFinal_ex(x[i].sha_out, a, NULL);
        EVP_MD_CTX_free(x[i].sha_out);
        ck_assert_uint_eq(x[i].to->received, total);
        ck_assert(!x[i].to->mismatch);
        ck_assert_uint_eq(x[i].to->len, total);
        EVP_Digest(x[i].to->data, x[i].to->len, b, NULL, EVP_sha256(), NULL);
        ck_assert_mem_eq(a, b, 32);
    }
}

/* ---- the matrix: versions × key types × channels ------------------------------ */

static const char *const versions[] = {"TLSv1.2", "TLSv1.3"};

/* _i: bit 0 version, bit 1 key type, bits 2-3 channel (mem, pipe, 1-byte). */
START_TEST(transfer_matrix_moves_data_byte_exact)
{
    const char *v = versions[_i & 1];
    int cert = (_i & 2) ? CERT_RSA : CERT_EC;
    int chan = _i >> 2;
    dx_pair_opts one = {.max_chunk = 1};
    dx_tls_ctx *cctx = client_ctx(v), *sctx = server_ctx(cert, v);
    tpair p;
    tp_connect(&p, chan == 1 ? H_PIPE : H_MEM, chan == 2 ? &one : NULL, cctx, sctx);
    ck_assert_str_eq(dx_tls_protocol(p.c.t), v);
    ck_assert_str_eq(dx_tls_protocol(p.s.t), v);
    ck_assert(dx_tls_authorized(p.c.t));
    dx_tls_cipher_info ci, si;
    ck_assert_int_eq(dx_tls_cipher(p.c.t, &ci), 0);
    ck_assert_int_eq(dx_tls_cipher(p.s.t, &si), 0);
    ck_assert_str_eq(ci.name, si.name);
    if (_i & 1)
        ck_assert_str_eq(ci.version, "TLSv1.3");
    else
        ck_assert_ptr_nonnull(strstr(ci.name, cert == CERT_RSA ? "RSA" : "ECDSA"));
    transfer_both(&p, chan == 2 ? 64 * 1024 : 3 * 1024 * 1024);
    dx_tls_stats cs, ss;
    dx_tls_get_stats(p.c.t, &cs);
    dx_tls_get_stats(p.s.t, &ss);
    ck_assert_uint_eq(cs.enc_out, ss.enc_in);
    ck_assert_uint_eq(ss.enc_out, cs.enc_in);
    ck_assert_uint_eq(cs.clear_out, ss.clear_in);
    ck_assert_uint_eq(ss.clear_out, cs.clear_in);
    ck_assert_uint_gt(cs.enc_out, cs.clear_out);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- closing ------------------------------------------------------------------ */

/* D-03, D-05, D-07: end() sends close_notify; the peer sees a clean end,
 * ends its own side (allowHalfOpen false), and both close without error. */
START_TEST(end_sends_close_notify_and_both_close_cleanly)
{
    dx_tls_ctx *cctx = client_ctx(versions[_i]), *sctx = server_ctx(CERT_EC, versions[_i]);
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    p.s.rec.keep_data = true;
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.c.t), "bye", 3), 0);
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(p.c.t)), 0);
    tp_run(&p, both_closed, 5000);
    ck_assert_uint_eq(p.s.rec.received, 3);
    ck_assert_mem_eq(p.s.rec.data, "bye", 3);
    ck_assert_uint_eq(p.s.rec.ends, 1);
    ck_assert_uint_eq(p.c.rec.ends, 1);
    ck_assert_uint_eq(p.s.rec.errors, 0);
    ck_assert_uint_eq(p.c.rec.errors, 0);
    ck_assert_uint_eq(p.c.rec.closes, 1);
    ck_assert_uint_eq(p.s.rec.closes, 1);
    ck_assert(dx_tls_clean_end(p.s.t));
    ck_assert(dx_tls_clean_end(p.c.t));
    /* closed: what was negotiated is gone, the verification outcome stays */
    ck_assert(!dx_tls_is_secure(p.c.t));
    ck_assert_ptr_null(dx_tls_protocol(p.c.t));
    ck_assert(dx_tls_authorized(p.c.t));
    ck_assert_ptr_null(dx_tls_authorization_error(p.c.t));
    ck_assert(!dx_tls_authorized(p.s.t)); /* it asked for no certificate */
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* The side that answers the peer's close_notify by ending (allowHalfOpen
 * false) sends its own close_notify before its cleartext stream finishes
 * and closes: a server that releases the connection in on_close, as
 * servers do, still closes cleanly for the client. Memory pair and
 * pipes, both versions. */
static void destroy_on_close(h_rec *r, char ev)
{
    tpair *p = r->ctx;
    if (ev == H_EV_CLOSE && p->s.t) {
        dx_tls_destroy(p->s.t); /* with its transport */
        p->s.t = NULL;
        p->ch.b = NULL;
    }
}

static bool client_closed(void *arg) { return ((tpair *)arg)->c.rec.closes > 0; }

START_TEST(close_notify_answer_survives_destroy_in_on_close)
{
    h_kind kind = (h_kind)(_i / 2);
    dx_tls_ctx *cctx = client_ctx(versions[_i % 2]), *sctx = server_ctx(CERT_EC, versions[_i % 2]);
    tpair p;
    tp_connect(&p, kind, NULL, cctx, sctx);
    p.s.rec.ctx = &p;
    p.s.rec.on_event = destroy_on_close;
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.c.t), "bye", 3), 0);
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(p.c.t)), 0);
    tp_run(&p, client_closed, 5000);
    ck_assert_ptr_null(p.s.t); /* released in its on_close */
    ck_assert_uint_eq(p.s.rec.errors, 0);
    ck_assert_msg(p.c.rec.errors == 0, "client: %s", p.c.rec.error_name);
    ck_assert_uint_eq(p.c.rec.ends, 1);
    ck_assert_uint_eq(p.c.rec.closes, 1);
    ck_assert(dx_tls_clean_end(p.c.t));
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST


/* A server that answers and ends from inside on_data, which over a memory
 * pair runs during the client's own write of the request (a QUIT
 * command): the client reads the answer and the close_notify, answers with
 * its own, and both connections close cleanly before that write returns.
 * Both versions. */
static void answer_and_end(h_rec *r, char ev)
{
    if (ev != H_EV_DATA)
        return;
    ck_assert_int_eq(dx_stream_write(r->s, "BYE", 3), 0);
    ck_assert_int_eq(dx_stream_end(r->s), 0);
}

START_TEST(end_from_data_during_peer_write_closes_both)
{
    dx_tls_ctx *cctx = client_ctx(versions[_i]), *sctx = server_ctx(CERT_EC, versions[_i]);
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    p.s.rec.on_event = answer_and_end;
    p.c.rec.keep_data = true;
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.c.t), "QUIT", 4), 0);
    ck_assert_uint_eq(p.c.rec.received, 3);
    ck_assert_mem_eq(p.c.rec.data, "BYE", 3);
    ck_assert_str_eq(p.c.rec.log, "defc");
    ck_assert_str_eq(p.s.rec.log, "dfec");
    ck_assert_uint_eq(p.s.rec.errors + p.c.rec.errors, 0);
    ck_assert(dx_tls_clean_end(p.c.t));
    ck_assert(dx_tls_clean_end(p.s.t));
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* D-06: with allowHalfOpen the server stays writable after the client's
 * end and its "Bye" arrives before its own end. */
START_TEST(half_open_server_writes_after_peer_end)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_allow_half_open(p.s.t, true), 0);
    tp_start(&p);
    tp_run(&p, both_secure, 5000);
    p.c.rec.keep_data = true;
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(p.c.t)), 0);
    ck_assert_uint_eq(p.s.rec.ends, 1);
    ck_assert_uint_eq(p.c.rec.ends, 0);
    ck_assert(dx_stream_state(dx_tls_upper(p.s.t)) & DX_STREAM_WRITABLE);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "Bye", 3), 0);
    ck_assert_uint_eq(p.c.rec.received, 3);
    ck_assert_mem_eq(p.c.rec.data, "Bye", 3);
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(p.s.t)), 0);
    tp_run(&p, both_closed, 5000);
    ck_assert_str_eq(p.c.rec.log, "fdec");
    ck_assert_uint_eq(p.s.rec.errors + p.c.rec.errors, 0);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* D-05: a transport end without close_notify is truncation: an error by
 * default, an unclean end when allowed. */
START_TEST(transport_eof_without_close_notify_is_truncation)
{
    bool allow = _i;
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_allow_truncation(p.c.t, allow), 0);
    tp_start(&p);
    ck_assert(p.c.secure && p.s.secure);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "data", 4), 0);
    ck_assert_int_eq(dx_pair_inject_end(p.ch.a), 0); /* the client's transport sees EOF */
    ck_assert_uint_eq(p.c.rec.received, 4);
    if (allow) {
        ck_assert_uint_eq(p.c.rec.ends, 1);
        ck_assert_uint_eq(p.c.rec.errors, 0);
        ck_assert(!dx_tls_clean_end(p.c.t));
    } else {
        ck_assert_uint_eq(p.c.rec.ends, 0);
        ck_assert_uint_eq(p.c.rec.errors, 1);
        ck_assert_str_eq(p.c.rec.error_name, "ERR_SSL_UNEXPECTED_EOF_WHILE_READING");
        ck_assert_uint_eq(p.c.rec.closes, 1);
    }
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Pitfalls 1, 8: a transport that goes away before the handshake gives
 * ECONNRESET, then close. */
START_TEST(transport_gone_before_handshake_is_econnreset)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_start(p.c.t), 0); /* the server never starts */
    ck_assert_int_eq(dx_pair_inject_destroy(p.ch.a), 0);
    ck_assert_uint_eq(p.c.rec.errors, 1);
    ck_assert_int_eq(p.c.rec.error_code, DX_ECONNRESET);
    ck_assert_str_eq(p.c.rec.error_name, "ECONNRESET");
    ck_assert_uint_eq(p.c.rec.closes, 1);
    ck_assert_uint_eq(p.c.secure, 0);
    const dx_error *e = dx_stream_error(dx_tls_upper(p.c.t));
    ck_assert_ptr_nonnull(strstr(dx_error_message(e), "before secure TLS connection"));
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- verification ----------------------------------------------------------- */

typedef struct vcase {
    int cert;
    const char *servername;
    const char *code;
} vcase;

static const vcase vcases[] = {
    {CERT_UNTRUSTED, "localhost", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"},
    {CERT_EXPIRED, "localhost", "CERT_HAS_EXPIRED"},
    {CERT_FUTURE, "localhost", "CERT_NOT_YET_VALID"},
    {CERT_SELF, "localhost", "DEPTH_ZERO_SELF_SIGNED_CERT"},
    {CERT_EC, "wrong.test", "ERR_TLS_CERT_ALTNAME_INVALID"},
    {CERT_NONAME, NULL, "ERR_TLS_CERT_ALTNAME_INVALID"}, /* "localhost" by default */
};

/* CL-08: a client refuses an unverified server with the verify code. */
START_TEST(client_refuses_unverified_server_with_code)
{
    const vcase *v = &vcases[_i % 6];
    const char *ver = versions[_i / 6];
    dx_tls_ctx *cctx = client_ctx(ver), *sctx = server_ctx(v->cert, ver);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    if (v->servername)
        ck_assert_int_eq(dx_tls_set_servername(p.c.t, v->servername), 0);
    tp_start(&p);
    ck_assert_uint_eq(p.c.secure, 0);
    ck_assert_uint_eq(p.c.rec.errors, 1);
    ck_assert_str_eq(p.c.rec.error_name, v->code);
    ck_assert_str_eq(dx_error_layer(dx_stream_error(dx_tls_upper(p.c.t))), "tls");
    ck_assert_msg(strstr(dx_error_detail(dx_stream_error(dx_tls_upper(p.c.t))), "alert sent"),
                  "%s", dx_error_detail(dx_stream_error(dx_tls_upper(p.c.t))));
    /* The server hears an alert, or the transport going away. */
    ck_assert_uint_eq(p.s.rec.errors, 1);
    ck_assert_uint_eq(p.s.secure, 0);
    ck_assert_uint_eq(p.c.rec.closes + p.s.rec.closes, 2);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* M-02, M-03: with rejectUnauthorized false the same connection proceeds,
 * is not authorized, says why, and carries data. */
START_TEST(unverified_server_allowed_reports_why)
{
    const vcase *v = &vcases[_i];
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(v->cert, NULL);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    if (v->servername)
        ck_assert_int_eq(dx_tls_set_servername(p.c.t, v->servername), 0);
    ck_assert_int_eq(dx_tls_set_reject_unauthorized(p.c.t, false), 0);
    tp_start(&p);
    ck_assert_uint_eq(p.c.secure, 1);
    ck_assert(!dx_tls_authorized(p.c.t));
    ck_assert_str_eq(dx_tls_authorization_error(p.c.t), v->code);
    ck_assert_int_ne(dx_tls_verify_result(p.c.t), 0);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "ok", 2), 0);
    ck_assert_uint_eq(p.c.rec.received, 2);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* CL-11: a user identity check replaces the default: it can accept a name
 * the certificate lacks, and refuse with its own error. */
static int accept_all(dx_tls *t, const char *host, const dx_tls_cert *cert, dx_error **err,
                      void *u)
{
    (void)t, (void)cert, (void)err;
    ck_assert_str_eq(host, "wrong.test");
    (*(int *)u)++;
    return 0;
}

static int refuse_all(dx_tls *t, const char *host, const dx_tls_cert *cert, dx_error **err,
                      void *u)
{
    (void)t, (void)host, (void)cert;
    (*(int *)u)++;
    *err = dx_error_new(DX_ETLS, "PINNING_FAILED", NULL, "pin mismatch");
    return -1;
}

START_TEST(user_identity_check_replaces_the_default)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    int calls = 0;
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_servername(p.c.t, _i ? "localhost" : "wrong.test"), 0);
    ck_assert_int_eq(dx_tls_set_check_identity(p.c.t, _i ? refuse_all : accept_all, &calls), 0);
    tp_start(&p);
    ck_assert_int_eq(calls, 1);
    if (_i) {
        ck_assert_uint_eq(p.c.rec.errors, 1);
        ck_assert_str_eq(p.c.rec.error_name, "PINNING_FAILED");
    } else {
        ck_assert_uint_eq(p.c.secure, 1);
        ck_assert(dx_tls_authorized(p.c.t));
    }
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* S-05, S-06: a server that asks for a client certificate. */
START_TEST(server_requests_client_certificate)
{
    /* _i: 0 client with a trusted cert; 1 none, refused; 2 none, allowed */
    const char *ver = versions[_i / 3];
    int mode = _i % 3;
    ctx_opts co = {.cert = mode == 0 ? CERT_CLIENT : -1, .trust_ca = true, .min = ver, .max = ver};
    dx_tls_ctx *cctx = make_ctx(&co), *sctx = server_ctx(CERT_EC, ver);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_request_cert(p.s.t, true), 0);
    ck_assert_int_eq(dx_tls_set_reject_unauthorized(p.s.t, mode != 2), 0);
    tp_start(&p);
    tp_run(&p, both_secure, 5000);
    if (mode == 0) {
        ck_assert_uint_eq(p.s.secure, 1);
        ck_assert(dx_tls_authorized(p.s.t));
        ck_assert_ptr_null(dx_tls_authorization_error(p.s.t));
    } else if (mode == 1) {
        ck_assert_uint_eq(p.s.secure, 0);
        ck_assert_uint_eq(p.s.rec.errors, 1);
        ck_assert_uint_eq(p.c.rec.errors, 1);
        /* TLS 1.3: the client was secure before the server refused it
         * (pitfall 12). */
        ck_assert_uint_eq(p.c.secure, _i / 3 == 1 ? 1u : 0u);
        if (_i / 3 == 1)
            ck_assert_str_eq(p.c.rec.error_name, "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED");
    } else {
        ck_assert_uint_eq(p.s.secure, 1);
        ck_assert(!dx_tls_authorized(p.s.t));
        ck_assert_str_eq(dx_tls_authorization_error(p.s.t), "UNABLE_TO_GET_ISSUER_CERT");
    }
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* 3.8: versions that do not overlap fail on both sides. */
START_TEST(version_mismatch_fails_both_sides)
{
    dx_tls_ctx *cctx = client_ctx("TLSv1.2"), *sctx = server_ctx(CERT_EC, "TLSv1.3");
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    tp_start(&p);
    ck_assert_uint_eq(p.s.rec.errors, 1);
    ck_assert_uint_eq(p.c.rec.errors, 1);
    ck_assert_str_eq(p.s.rec.error_name, "ERR_SSL_UNSUPPORTED_PROTOCOL");
    ck_assert_str_eq(p.c.rec.error_name, "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION");
    ck_assert_ptr_nonnull(strstr(dx_error_detail(dx_stream_error(dx_tls_upper(p.c.t))),
                                 "alert received"));
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* 3.2: junk instead of a ClientHello fails the server with an SSL reason,
 * and nothing is ever secure. */
START_TEST(junk_instead_of_client_hello_fails_server)
{
    dx_tls_ctx *sctx = server_ctx(CERT_EC, NULL);
    size_t live0 = h_alloc_live();
    dx_tls *s;
    h_rec r = {0};
    ck_assert_int_eq(dx_tls_new(sctx, DX_TLS_SERVER, &s), 0);
    h_rec_attach(&r, dx_tls_upper(s));
    ck_assert_int_eq(dx_tls_start(s), 0);
    const char *junk = _i ? "GET / HTTP/1.1\r\nHost: x\r\n\r\n" : "blah\nblah\nblah\nblah\n";
    dx_stream_write(dx_tls_lower(s), junk, strlen(junk));
    ck_assert_uint_eq(r.errors, 1);
    ck_assert_uint_eq(r.closes, 1);
    ck_assert_int_eq(r.error_code, DX_ETLS);
    ck_assert_msg(strncmp(r.error_name, "ERR_SSL_", 8) == 0, "%s", r.error_name);
    ck_assert(!dx_tls_is_secure(s));
    dx_tls_destroy(s);
    h_rec_assert_clean(&r);
    h_rec_free(&r);
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(sctx);
}
END_TEST


/* ---- events ----------------------------------------------------------------- */

/* E-03, E-04, M-18, CL-12: secure fires once; sessions come only after it
 * (TLS 1.3: the tickets, TLS 1.2: one); one of them resumes a second
 * connection, which then reports reuse. */
START_TEST(session_event_resumes_next_connection)
{
    const char *ver = versions[_i];
    dx_tls_ctx *cctx = client_ctx(ver), *sctx = server_ctx(CERT_EC, ver);
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    /* TLS 1.3 tickets come after the handshake, with the first data. */
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "x", 1), 0);
    ck_assert_uint_ge(p.c.sessions, 1);
    ck_assert_uint_eq(p.s.sessions, 0); /* never on servers */
    ck_assert(!dx_tls_session_reused(p.c.t));
    uint8_t sess[8192];
    size_t len = p.c.session_len;
    memcpy(sess, p.c.session, len);
    tp_close(&p);

    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_servername(p.c.t, "localhost"), 0);
    ck_assert_int_eq(dx_tls_set_session(p.c.t, sess, len), 0);
    /* The client context keeps a copy of the bytes it decoded, until it
     * goes (see the next test). */
    p.live0 += len;
    tp_start(&p);
    ck_assert_uint_eq(p.c.secure, 1);
    ck_assert(dx_tls_session_reused(p.c.t));
    ck_assert(dx_tls_session_reused(p.s.t));
    ck_assert(dx_tls_authorized(p.c.t));
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* The session a context decoded from bytes serves the next connections
 * given the same bytes (each its own copy): they all resume, also after
 * one of them was torn down without close_notify, which marks its own
 * copy as not resumable; other bytes take the place of the first; the
 * copy of the bytes goes with the context. */
START_TEST(session_bytes_resume_many_connections)
{
    const char *ver = versions[_i];
    size_t live_before = h_alloc_live();
    dx_tls_ctx *cctx = client_ctx(ver), *sctx = server_ctx(CERT_EC, ver);
    uint8_t sess[2][8192];
    size_t len[2];
    for (int k = 0; k < 2; k++) {
        tpair p;
        tp_connect(&p, H_MEM, NULL, cctx, sctx);
        ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "x", 1), 0);
        ck_assert_uint_ge(p.c.sessions, 1);
        len[k] = p.c.session_len;
        memcpy(sess[k], p.c.session, len[k]);
        tp_close(&p);
    }
    size_t live_ctx = h_alloc_live();
    for (int round = 0; round < 6; round++) {
        int k = round < 3 ? 0 : 1; /* three from each */
        tpair p;
        tp_open(&p, H_MEM, NULL, cctx, sctx, false);
        ck_assert_int_eq(dx_tls_set_session(p.c.t, sess[k], len[k]), 0);
        tp_start(&p);
        tp_run(&p, both_secure, 10000);
        ck_assert_uint_eq(p.c.secure, 1);
        ck_assert_msg(dx_tls_session_reused(p.c.t), "round %d did not resume", round);
        /* destroyed as is: no close_notify either way */
        dx_tls_destroy(p.c.t);
        dx_tls_destroy(p.s.t);
        h_rec_free(&p.c.rec);
        h_rec_free(&p.s.rec);
        /* the context holds the bytes it decoded last, nothing more */
        ck_assert_uint_eq(h_alloc_live(), live_ctx + len[k]);
    }
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
    ck_assert_uint_eq(h_alloc_live(), live_before);
}
END_TEST

/* E-01, SV-02, 3.15: both sides log the same TLS 1.3 secrets in NSS key
 * log format. */
START_TEST(keylog_lines_match_on_both_sides)
{
    dx_tls_ctx *cctx = client_ctx("TLSv1.3"), *sctx = server_ctx(CERT_EC, "TLSv1.3");
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    ck_assert_uint_eq(p.c.keylogs, 5);
    ck_assert_uint_eq(p.s.keylogs, 5);
    ck_assert_ptr_nonnull(strstr(p.c.keylog, "CLIENT_HANDSHAKE_TRAFFIC_SECRET "));
    ck_assert_ptr_nonnull(strstr(p.c.keylog, "CLIENT_TRAFFIC_SECRET_0 "));
    ck_assert_ptr_nonnull(strstr(p.c.keylog, "EXPORTER_SECRET "));
    /* The same lines, in each side's order. */
    for (char *line = p.c.keylog; *line;) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        ck_assert_msg(strstr(p.s.keylog, line), "%s", line);
        line = nl + 1;
    }
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Key log lines cost OpenSSL hex formatting of every secret, logged or
 * not: a context installs its key log callback only once a connection on
 * it asks for lines, at its start or by setting on_keylog later, in time
 * for the lines of a handshake under way. */
START_TEST(keylog_callback_only_when_asked)
{
    dx_tls_ctx *cctx = client_ctx("TLSv1.3"), *sctx = server_ctx(CERT_EC, "TLSv1.3");
    SSL_CTX *cssl = dx_tls_ctx_openssl(cctx), *sssl = dx_tls_ctx_openssl(sctx);
    dx_tls_events quiet = tls_events;
    quiet.on_keylog = NULL;
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_events(p.c.t, &quiet, &p.c), 0);
    ck_assert_int_eq(dx_tls_set_events(p.s.t, &quiet, &p.s), 0);
    tp_start(&p);
    tp_run(&p, both_secure, 10000);
    ck_assert_uint_eq(p.c.secure, 1);
    ck_assert_ptr_null(SSL_CTX_get_keylog_callback(cssl));
    ck_assert_ptr_null(SSL_CTX_get_keylog_callback(sssl));
    tp_close(&p);

    /* The client asks once started, before the server's answer came. */
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_events(p.c.t, &quiet, &p.c), 0);
    ck_assert_int_eq(dx_tls_set_events(p.s.t, &quiet, &p.s), 0);
    ck_assert_int_eq(dx_pair_hold(p.ch.a), 0);
    tp_start(&p);
    ck_assert_uint_eq(p.c.secure, 0);
    ck_assert_int_eq(dx_tls_set_events(p.c.t, &tls_events, &p.c), 0);
    ck_assert_ptr_nonnull(SSL_CTX_get_keylog_callback(cssl));
    ck_assert_ptr_null(SSL_CTX_get_keylog_callback(sssl));
    ck_assert_int_eq(dx_pair_release(p.ch.a), 0);
    tp_run(&p, both_secure, 10000);
    ck_assert_uint_eq(p.c.secure, 1);
    ck_assert_uint_eq(p.c.keylogs, 5);
    ck_assert_uint_eq(p.s.keylogs, 0);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* S-03, M-05: the protocol trace goes to on_trace, not to stderr. */
START_TEST(trace_reports_handshake_messages)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_trace(p.c.t, true), 0);
    tp_start(&p);
    ck_assert(p.c.trace_hello);
    ck_assert(!p.s.trace_hello);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Destroying from inside on_secure is safe, and nothing follows. */
START_TEST(destroy_inside_secure_is_safe)
{
    dx_tls_ctx *cctx = client_ctx(versions[_i]), *sctx = server_ctx(CERT_EC, versions[_i]);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    p.c.destroy_on_secure = true;
    tp_start(&p);
    ck_assert_uint_eq(p.c.secure, 1);
    ck_assert_ptr_null(p.c.t);
    ck_assert_uint_eq(p.c.rec.closes, 1);
    /* The server sees the transport go: an error or an end, then close. */
    ck_assert_uint_eq(p.s.rec.closes, 1);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

static void destroy_tls_on_data(h_rec *r, char ev)
{
    if (ev == H_EV_DATA) {
        tside *sd = r->ctx;
        dx_tls_destroy(sd->t);
        sd->t = NULL;
    }
}

/* Destroying from inside on_data (inside the filter's read loop). */
START_TEST(destroy_inside_data_is_safe)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    p.s.rec.on_event = destroy_tls_on_data;
    p.s.rec.ctx = &p.s;
    static uint8_t big[100000];
    /* The write may see the connection fail under it: no status check. */
    dx_stream_write(dx_tls_upper(p.c.t), big, sizeof(big));
    ck_assert_ptr_null(p.s.t);
    ck_assert_uint_eq(p.s.rec.closes, 1);
    ck_assert_uint_eq(p.c.rec.closes, 1);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

static void answer_in_data(h_rec *r, char ev)
{
    if (ev != H_EV_DATA)
        return;
    tside *sd = r->ctx;
    dx_stream *up = dx_tls_upper(sd->t);
    ck_assert_int_eq(dx_stream_write(up, "pong", 4), 0);
    /* encrypted at once: nothing waits in the upper stream's buffer */
    ck_assert_uint_eq(dx_stream_write_buffered(up), 0);
}

/* Destroying from on_data while the answer is read as it comes back,
 * inside the run that is still pushing the request out. _i: bit 0
 * version, bit 1 lowers linked instead of a memory pair. */
START_TEST(destroy_inside_answer_read_during_flush_is_safe)
{
    const char *ver = versions[_i & 1];
    dx_tls_ctx *cctx = client_ctx(ver), *sctx = server_ctx(CERT_EC, ver);
    tpair p;
    tp_connect_as(&p, H_MEM, NULL, cctx, sctx, (_i & 2) != 0);
    p.s.rec.on_event = answer_in_data;
    p.s.rec.ctx = &p.s;
    p.c.rec.on_event = destroy_tls_on_data;
    p.c.rec.ctx = &p.c;
    /* the write may see the connection go under it: no status check */
    dx_stream_write(dx_tls_upper(p.c.t), "ping", 4);
    ck_assert_ptr_null(p.c.t);
    ck_assert_uint_eq(p.c.rec.received, 4);
    ck_assert_uint_eq(p.c.rec.closes, 1);
    p.s.rec.on_event = NULL;
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* A record the client cannot decrypt comes back while the client's run
 * is still pushing its request out (the server's on_data writes it onto
 * the server's transport): the client fails with the record's code, and
 * its alert still reaches the server, which reports it. _i: version. */
static const uint8_t forged_record[] = {0x17, 0x03, 0x03, 0x00, 0x20, 1,  2,  3,  4,  5,
                                        6,    7,    8,    9,    10,   11, 12, 13, 14, 15,
                                        16,   17,   18,   19,   20,   21, 22, 23, 24, 25,
                                        26,   27,   28,   29,   30,   31, 32};

static void forge_answer(h_rec *r, char ev)
{
    if (ev == H_EV_DATA) {
        tpair *p = r->ctx;
        dx_stream_write(p->ch.b, forged_record, sizeof(forged_record));
    }
}

START_TEST(bad_record_read_during_flush_still_alerts_the_peer)
{
    dx_tls_ctx *cctx = client_ctx(versions[_i]), *sctx = server_ctx(CERT_EC, versions[_i]);
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    p.s.rec.ctx = &p;
    p.s.rec.on_event = forge_answer;
    dx_stream_write(dx_tls_upper(p.c.t), "ping", 4); /* fails under the write */
    tp_run(&p, both_closed, 2000);
    ck_assert_str_eq(p.c.rec.error_name, "ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC");
    ck_assert_str_eq(p.s.rec.error_name, "ERR_SSL_SSLV3_ALERT_BAD_RECORD_MAC");
    p.s.rec.on_event = NULL;
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Read ahead turned on in the context's OpenSSL object changes nothing:
 * records held back while the reader pauses all come once it resumes.
 * _i: version. */
START_TEST(read_ahead_in_the_context_holds_back_no_record)
{
    dx_tls_ctx *cctx = client_ctx(versions[_i]), *sctx = server_ctx(CERT_EC, versions[_i]);
    SSL_CTX_set_read_ahead((SSL_CTX *)dx_tls_ctx_openssl(cctx), 1);
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "x", 1), 0); /* tickets first */
    uint64_t base = p.c.rec.received;
    /* paused with no room: the filter stops reading after one record */
    ck_assert_int_eq(dx_stream_set_high_water(dx_tls_upper(p.c.t), 0, 16384), 0);
    ck_assert_int_eq(dx_stream_pause(dx_tls_upper(p.c.t)), 0);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "a", 1), 0);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "b", 1), 0);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "c", 1), 0);
    ck_assert_int_eq(dx_stream_resume(dx_tls_upper(p.c.t)), 0);
    ck_assert_uint_eq(p.c.rec.received - base, 3);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* An answer written from on_data (a request/response server) is encrypted
 * during the write call, and small records take small buffers: the
 * exchange peaks far below one record-sized buffer. _i: bit 0 version,
 * bit 1 SecurePair shape (lowers linked) instead of a memory pair. */
START_TEST(answer_from_data_goes_out_at_once)
{
    const char *ver = versions[_i & 1];
    dx_tls_ctx *cctx = client_ctx(ver), *sctx = server_ctx(CERT_EC, ver);
    tpair p;
    tp_connect_as(&p, H_MEM, NULL, cctx, sctx, (_i & 2) != 0);
    /* TLS 1.3 tickets first, so that only the exchange is measured */
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.c.t), "ping", 4), 0);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "pong", 4), 0);
    p.s.rec.on_event = answer_in_data;
    p.s.rec.ctx = &p.s;
    size_t live = h_alloc_live();
    h_alloc_reset_peak();
    h_alloc_fail_from(-1); /* counts libduplex's allocations from here */
    for (uint64_t k = 1; k <= 10; k++) {
        ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.c.t), "ping", 4), 0);
        ck_assert_uint_eq(p.c.rec.received, 4 * (k + 1)); /* back before the write returned */
    }
    ck_assert_uint_lt(h_alloc_peak() - live, 8192);
    ck_assert_uint_eq(p.s.rec.received, 44);
    if (_i & 2) {
        /* Each side's record buffer is kept for the next, and the answer
         * is read from the peer's buffer as it comes: none per exchange
         * (the first may take each side's buffer). */
        ck_assert_int_le(h_alloc_count(), 2);
        h_alloc_fail_from(-1);
        ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.c.t), "ping", 4), 0);
        ck_assert_uint_eq(p.c.rec.received, 48);
        ck_assert_int_eq(h_alloc_count(), 0);
    }
    p.s.rec.on_event = NULL;
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* An application's own OpenSSL call that failed and left its error queued
 * (here from on_data, and before a write) is no failure of the connection,
 * also when a record then arrives in pieces and OpenSSL must wait for the
 * rest. A real failure with such an error queued still reports its own
 * code. _i: version. */
static void stale_error_in_data(h_rec *r, char ev)
{
    if (ev == H_EV_DATA)
        ERR_raise(r->received & 1 ? ERR_LIB_SYS : ERR_LIB_USER, 42);
}

START_TEST(errors_left_by_the_application_do_not_fail_the_connection)
{
    const char *ver = versions[_i];
    dx_tls_ctx *cctx = client_ctx(ver), *sctx = server_ctx(CERT_EC, ver);
    dx_pair_opts po = {.max_chunk = 7}; /* every record arrives in pieces */
    tpair p;
    tp_connect(&p, H_MEM, &po, cctx, sctx);
    p.c.rec.on_event = stale_error_in_data;
    p.s.rec.on_event = stale_error_in_data;
    static uint8_t msg[3000]; /* the memory pair delivers at once */
    for (int k = 0; k < 4; k++) {
        ERR_raise(ERR_LIB_USER, 7);
        ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.c.t), msg, sizeof(msg)), 0);
        ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), msg, 100 + k), 0);
    }
    ck_assert_uint_eq(p.s.rec.received, 4 * sizeof(msg));
    ck_assert_uint_eq(p.c.rec.received, 4 * 100 + 6);
    ck_assert_uint_eq(p.c.rec.errors + p.s.rec.errors, 0);
    ck_assert_uint_ne(ERR_peek_error(), 0); /* the application's, left alone */
    /* a forged application record: the server's own failure, reported
     * as such with the application's errors still queued */
    ERR_raise(ERR_LIB_USER, 7);
    ck_assert_int_eq(dx_stream_write(dx_tls_lower(p.s.t), forged_record, sizeof(forged_record)),
                     DX_ETLS);
    ck_assert_uint_eq(p.s.rec.errors, 1);
    ck_assert_str_eq(p.s.rec.error_name, "ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC");
    ERR_clear_error();
    p.c.rec.on_event = p.s.rec.on_event = NULL;
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- writing --------------------------------------------------------------- */

/* D-01: writes before the handshake are queued and sent after it, in
 * order, with the end. */
START_TEST(writes_before_handshake_are_sent_after)
{
    dx_tls_ctx *cctx = client_ctx(versions[_i]), *sctx = server_ctx(CERT_EC, versions[_i]);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    p.s.rec.keep_data = true;
    dx_stream *up = dx_tls_upper(p.c.t);
    ck_assert_int_eq(dx_stream_write(up, "hello ", 6), 0);
    ck_assert_int_eq(dx_stream_write(up, "world", 5), 0);
    ck_assert_int_eq(dx_stream_end(up), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(up), 11);
    tp_start(&p);
    ck_assert_uint_eq(p.s.rec.received, 11);
    ck_assert_mem_eq(p.s.rec.data, "hello world", 11);
    ck_assert_uint_eq(p.s.rec.ends, 1);
    tp_run(&p, both_closed, 5000);
    ck_assert_uint_eq(p.c.rec.errors + p.s.rec.errors, 0);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* D-02, pitfall 10: corked small writes become one record, uncorked ones
 * one record each; writev is one record. */
START_TEST(small_writes_coalesce_into_records)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    dx_stream *up = dx_tls_upper(p.c.t);
    dx_tls_stats a, b, c;
    dx_tls_get_stats(p.c.t, &a);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(dx_stream_write(up, "0123456789", 10), 0);
    dx_tls_get_stats(p.c.t, &b);
    dx_stream_cork(up);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(dx_stream_write(up, "0123456789", 10), 0);
    dx_stream_uncork(up);
    dx_tls_get_stats(p.c.t, &c);
    uint64_t plain = b.enc_out - a.enc_out, corked = c.enc_out - b.enc_out;
    /* 100 records of 10 bytes, each with a 22-byte overhead (TLS 1.3 AEAD) */
    ck_assert_uint_ge(plain, 100 * (10 + 20));
    ck_assert_uint_le(corked, 1000 + 30);
    dx_iov v[50];
    for (int i = 0; i < 50; i++)
        v[i] = (dx_iov){"0123456789", 10};
    ck_assert_int_eq(dx_stream_writev(up, v, 50), 0);
    dx_tls_stats d;
    dx_tls_get_stats(p.c.t, &d);
    ck_assert_uint_le(d.enc_out - c.enc_out, 500 + 30);
    ck_assert_uint_eq(p.s.rec.received, 2500);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* M-20, 3.4: the send fragment bounds every record; 511 and 16385 are
 * refused. */
START_TEST(max_send_fragment_bounds_records)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    ck_assert_int_eq(dx_tls_set_max_send_fragment(p.c.t, 511), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_max_send_fragment(p.c.t, 16385), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_max_send_fragment(p.c.t, 512), 0);
    static uint8_t big[20000];
    ck_assert_int_ge(dx_stream_write(dx_tls_upper(p.c.t), big, sizeof(big)), 0);
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(p.c.t)), 0);
    ck_assert_uint_eq(p.s.rec.received, sizeof(big));
    ck_assert_uint_le(p.s.rec.max_data_event, 512);
    ck_assert_uint_eq(p.s.rec.ends, 1);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* 3.4, pitfall 11: a client that stops reading makes the server's writes
 * report full through TLS and the transport; memory stays bounded; after
 * resume every byte arrives. */
static bool received_all(void *arg)
{
    xfer *x = arg;
    return x->to->received >= x->total;
}

START_TEST(paused_reader_pushes_back_on_writer)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_connect(&p, _i ? H_PIPE : H_MEM, NULL, cctx, sctx);
    dx_stream_pause(dx_tls_upper(p.c.t));
    p.c.rec.verify = true;
    p.c.rec.verify_seed = 5;
    dx_stream *up = dx_tls_upper(p.s.t);
    uint8_t buf[16384];
    uint64_t sent = 0;
    size_t base = h_alloc_live();
    int rc = 0;
    for (int i = 0; i < 2000 && rc != DX_FULL; i++) {
        h_gen_fill(5, sent, buf, sizeof(buf));
        rc = dx_stream_write(up, buf, sizeof(buf));
        ck_assert_int_ge(rc, 0);
        sent += sizeof(buf);
        h_step(&p.ch, 1);
    }
    ck_assert_int_eq(rc, DX_FULL);
    ck_assert_uint_lt(sent, 2 * 1024 * 1024);
    ck_assert_uint_eq(p.c.rec.received, 0);
    ck_assert_uint_lt(h_alloc_live() - base, 512 * 1024);
    xfer x = {.p = &p, .to = &p.c.rec, .total = sent};
    dx_stream_resume(dx_tls_upper(p.c.t));
    ck_assert(h_run(&p.ch, received_all, &x, 10000));
    ck_assert_uint_eq(p.c.rec.received, sent);
    ck_assert(!p.c.rec.mismatch);
    ck_assert_uint_ge(p.s.rec.drains, 1);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* D-04, nodejs/node#18973: writes after destroy fail cleanly; zero bytes
 * is not an error. */
START_TEST(write_after_destroy_and_empty_writes)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    dx_stream *up = dx_tls_upper(p.c.t);
    ck_assert_int_eq(dx_stream_write(up, "", 0), 0);
    dx_stream_destroy(up); /* aborts the connection; the handle lives on */
    ck_assert_uint_eq(p.c.rec.closes, 1);
    ck_assert_uint_eq(p.s.rec.closes, 1);
    ck_assert_int_eq(dx_stream_write(up, "x", 1), DX_EDESTROYED);
    ck_assert_ptr_null(dx_tls_protocol(p.c.t));
    ck_assert_ptr_null(dx_tls_peer_cert(p.c.t));
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- time ------------------------------------------------------------------- */

/* S-04, pitfall 15: the handshake timeout is a deadline the host drives;
 * when it passes the connection fails and the transport goes. */
START_TEST(handshake_timeout_fires_from_driven_clock)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    h_fake_now = 1000;
    ck_assert_int_eq(dx_tls_set_clock(p.c.t, h_fake_clock, NULL), 0);
    ck_assert_int_eq(dx_tls_set_handshake_timeout(p.c.t, 50), 0);
    ck_assert_uint_eq(dx_tls_deadline(p.c.t), DX_TLS_NO_DEADLINE);
    ck_assert_int_eq(dx_tls_start(p.c.t), 0); /* the server never answers */
    ck_assert_uint_eq(dx_tls_deadline(p.c.t), 1050);
    ck_assert_uint_eq(p.c.deadline, 1050);
    h_fake_now = 1049;
    dx_tls_check_timeouts(p.c.t);
    ck_assert_uint_eq(p.c.rec.errors, 0);
    h_fake_now = 1050;
    dx_tls_check_timeouts(p.c.t);
    ck_assert_uint_eq(p.c.rec.errors, 1);
    ck_assert_int_eq(p.c.rec.error_code, DX_ETIMEDOUT);
    ck_assert_str_eq(p.c.rec.error_name, "ERR_TLS_HANDSHAKE_TIMEOUT");
    ck_assert(dx_stream_state(p.ch.a) & DX_STREAM_CLOSED); /* the transport went */
    ck_assert_uint_eq(dx_tls_deadline(p.c.t), DX_TLS_NO_DEADLINE);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* D-12: the idle timeout fires after silence, again after more, is pushed
 * back by traffic, and leaves the connection open. */
START_TEST(idle_timeout_fires_after_silence)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    h_fake_now = 5000;
    ck_assert_int_eq(dx_tls_set_clock(p.s.t, h_fake_clock, NULL), 0);
    ck_assert_int_eq(dx_tls_set_idle_timeout(p.s.t, 100), 0);
    ck_assert_uint_eq(dx_tls_deadline(p.s.t), 5100);
    h_fake_now = 5060;
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.c.t), "x", 1), 0);
    ck_assert_uint_eq(dx_tls_deadline(p.s.t), 5160);
    h_fake_now = 5100;
    dx_tls_check_timeouts(p.s.t);
    ck_assert_uint_eq(p.s.timeouts, 0);
    h_fake_now = 5160;
    dx_tls_check_timeouts(p.s.t);
    ck_assert_uint_eq(p.s.timeouts, 1);
    h_fake_now = 5260;
    dx_tls_check_timeouts(p.s.t);
    ck_assert_uint_eq(p.s.timeouts, 2);
    ck_assert(dx_tls_is_secure(p.s.t));
    ck_assert_int_eq(dx_tls_set_idle_timeout(p.s.t, 0), 0);
    ck_assert_uint_eq(dx_tls_deadline(p.s.t), DX_TLS_NO_DEADLINE);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- shapes -------------------------------------------------------------------- */

/* Pitfall 3, 3.1 delayed attach: bytes read from the transport before the
 * filter existed are handed in first. */
START_TEST(prefix_bytes_read_before_attach_are_used)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    size_t live0 = h_alloc_live();
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    tside c = {0}, sv = {0};
    side_new(&c, cctx, DX_TLS_CLIENT);
    ck_assert_int_eq(dx_tls_attach(c.t, a), 0);
    /* A sniffer reads the first bytes of the ClientHello from b. */
    h_rec sniff = {0};
    sniff.keep_data = true;
    h_rec_attach(&sniff, b);
    ck_assert_int_eq(dx_tls_start(c.t), 0);
    ck_assert_uint_gt(sniff.received, 5);
    ck_assert_uint_eq(sniff.data[0], 0x16); /* a handshake record */
    dx_stream_set_events(b, NULL, NULL);
    side_new(&sv, sctx, DX_TLS_SERVER);
    ck_assert_int_eq(dx_tls_prefix(sv.t, sniff.data, sniff.len), 0);
    ck_assert_int_eq(dx_tls_attach(sv.t, b), 0);
    ck_assert_int_eq(dx_tls_start(sv.t), 0);
    ck_assert_int_eq(dx_tls_prefix(sv.t, "x", 1), DX_ESTATE);
    ck_assert_uint_eq(c.secure, 1);
    ck_assert_uint_eq(sv.secure, 1);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(c.t), "hi", 2), 0);
    ck_assert_uint_eq(sv.rec.received, 2);
    dx_tls_destroy(c.t);
    dx_tls_destroy(sv.t);
    h_rec_free(&sniff);
    h_rec_free(&c.rec);
    h_rec_free(&sv.rec);
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* P-01..P-04: the SecurePair shape: the two lower streams joined directly,
 * no transport at all. */
START_TEST(secure_pair_shape_without_transport)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_RSA, NULL);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, true);
    tp_start(&p);
    ck_assert(p.c.secure && p.s.secure);
    ck_assert_ptr_eq(dx_tls_from_stream(dx_tls_upper(p.c.t)), p.c.t);
    ck_assert_ptr_eq(dx_tls_from_stream(dx_tls_lower(p.s.t)), p.s.t);
    transfer_both(&p, 1024 * 1024);
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(p.c.t)), 0);
    tp_run(&p, both_closed, 1000);
    ck_assert_uint_eq(p.c.rec.errors + p.s.rec.errors, 0);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* 3.1 inception: TLS inside TLS moves data byte-exactly and ends cleanly. */
START_TEST(tls_inside_tls_moves_data_exactly)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair outer, inner;
    tp_connect(&outer, _i ? H_PIPE : H_MEM, NULL, cctx, sctx);
    memset(&inner, 0, sizeof(inner));
    inner.live0 = h_alloc_live();
    inner.ch = outer.ch; /* the loop is the outer channel's */
    side_new(&inner.c, cctx, DX_TLS_CLIENT);
    side_new(&inner.s, sctx, DX_TLS_SERVER);
    h_rec_free(&outer.c.rec);
    h_rec_free(&outer.s.rec);
    memset(&outer.c.rec, 0, sizeof(outer.c.rec));
    memset(&outer.s.rec, 0, sizeof(outer.s.rec));
    /* The inner connection's transports are the outer cleartext streams. */
    ck_assert_int_eq(dx_tls_attach(inner.c.t, dx_tls_upper(outer.c.t)), 0);
    ck_assert_int_eq(dx_tls_attach(inner.s.t, dx_tls_upper(outer.s.t)), 0);
    ck_assert_int_eq(dx_tls_set_servername(inner.c.t, "server.test"), 0);
    tp_start(&inner);
    tp_run(&inner, both_secure, 5000);
    ck_assert(inner.c.secure && inner.s.secure);
    transfer_both(&inner, 512 * 1024);
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(inner.c.t)), 0);
    tp_run(&inner, both_closed, 5000);
    ck_assert_uint_eq(inner.c.rec.errors + inner.s.rec.errors, 0);
    dx_tls_destroy(inner.c.t);
    dx_tls_destroy(inner.s.t);
    h_rec_free(&inner.c.rec);
    h_rec_free(&inner.s.rec);
    outer.live0 = inner.live0 < outer.live0 ? inner.live0 : outer.live0;
    dx_tls_destroy(outer.c.t);
    dx_tls_destroy(outer.s.t);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- introspection -------------------------------------------------------------- */

/* M-08..M-17, 3.14: what each side can tell about the connection. */
START_TEST(introspection_after_handshake)
{
    const char *ver = versions[_i];
    dx_tls_ctx *cctx = client_ctx(ver), *sctx = server_ctx(CERT_EC, ver);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_str_eq(dx_tls_protocol(p.c.t), "unknown");
    uint8_t k1[32], k2[32], k3[32];
    ck_assert_int_eq(dx_tls_export_keying_material(p.c.t, k1, 32, "EXPORTER-test", NULL, 0),
                     DX_ESTATE);
    ck_assert_uint_eq(dx_tls_finished(p.c.t, k1, sizeof(k1)), 0);
    dx_tls_cipher_info ci;
    ck_assert_int_eq(dx_tls_cipher(p.c.t, &ci), DX_ESTATE);
    ck_assert_int_eq(dx_tls_set_servername(p.c.t, "server.test"), 0);
    tp_start(&p);
    ck_assert(p.c.secure && p.s.secure);
    ck_assert_str_eq(dx_tls_servername(p.c.t), "server.test");
    ck_assert_str_eq(dx_tls_servername(p.s.t), "server.test");
    ck_assert_int_eq(dx_tls_get_role(p.s.t), DX_TLS_SERVER);
    /* Finished messages cross over. */
    uint8_t f1[64], f2[64];
    size_t n1 = dx_tls_finished(p.c.t, f1, sizeof(f1));
    size_t n2 = dx_tls_peer_finished(p.s.t, f2, sizeof(f2));
    ck_assert_uint_gt(n1, 0);
    ck_assert_uint_eq(n1, n2);
    ck_assert_mem_eq(f1, f2, n1);
    n1 = dx_tls_finished(p.s.t, f1, sizeof(f1));
    n2 = dx_tls_peer_finished(p.c.t, f2, sizeof(f2));
    ck_assert_uint_eq(n1, n2);
    ck_assert_mem_eq(f1, f2, n1);
    /* Keying material agrees; a context, even empty, changes it. */
    ck_assert_int_eq(dx_tls_export_keying_material(p.c.t, k1, 32, "EXPORTER-test", NULL, 0), 0);
    ck_assert_int_eq(dx_tls_export_keying_material(p.s.t, k2, 32, "EXPORTER-test", NULL, 0), 0);
    ck_assert_mem_eq(k1, k2, 32);
    ck_assert_int_eq(dx_tls_export_keying_material(p.c.t, k3, 32, "EXPORTER-test", "", 0), 0);
    if (_i == 0) /* TLS 1.3 treats no context as an empty one (RFC 8446 7.5) */
        ck_assert(memcmp(k1, k3, 32) != 0);
    ck_assert_int_eq(dx_tls_export_keying_material(p.c.t, k3, 0, "EXPORTER-test", NULL, 0),
                     DX_EINVAL);
    /* Key exchange: X25519 by default, 253 bits as Node reports. */
    dx_tls_kex_info kx;
    ck_assert_int_eq(dx_tls_ephemeral_key(p.c.t, &kx), 0);
    ck_assert_str_eq(kx.type, "ECDH");
    ck_assert_str_eq(kx.name, "X25519");
    ck_assert_int_eq(kx.bits, 253);
    ck_assert_ptr_nonnull(dx_tls_shared_sigalg(p.s.t, 0));
    ck_assert_ptr_nonnull(strstr(dx_tls_shared_sigalg(p.s.t, 0), "+"));
    ck_assert_ptr_null(dx_tls_shared_sigalg(p.s.t, 1000));
    ck_assert_int_eq(dx_tls_cipher(p.s.t, &ci), 0);
    ck_assert_ptr_nonnull(ci.standard_name);
    ck_assert_str_eq(ci.version, _i ? "TLSv1.3" : "TLSv1.2");
    /* Certificates: the client sees the server's and its chain to the CA. */
    ck_assert_ptr_nonnull(dx_tls_peer_cert(p.c.t));
    ck_assert_ptr_null(dx_tls_peer_cert(p.s.t)); /* the client sent none */
    ck_assert_ptr_nonnull(dx_tls_local_cert(p.s.t));
    ck_assert_ptr_null(dx_tls_local_cert(p.c.t));
    /* 3.6: what the client sees is what the server presented. */
    ck_assert_str_eq(dx_tls_cert_fingerprint(dx_tls_peer_cert(p.c.t), DX_TLS_SHA256),
                     dx_tls_cert_fingerprint(dx_tls_local_cert(p.s.t), DX_TLS_SHA256));
    ck_assert_str_eq(dx_tls_name_get(dx_tls_cert_subject(dx_tls_peer_cert(p.c.t)), "CN", 0),
                     "server");
    ck_assert_str_eq(dx_tls_cert_nist_curve(dx_tls_peer_cert(p.c.t)), "P-256");
    ck_assert_uint_eq(dx_tls_peer_chain_length(p.c.t), 2);
    ck_assert(dx_tls_cert_is_ca(dx_tls_peer_chain(p.c.t, 1)));
    ck_assert(dx_tls_cert_is_self_issued(dx_tls_peer_chain(p.c.t, 1)));
    ck_assert_ptr_nonnull(dx_tls_peer_chain(p.c.t, 1));
    ck_assert_ptr_null(dx_tls_peer_chain(p.c.t, 2));
    /* The session as bytes, with the caller's buffer too small first. */
    size_t len = 0;
    ck_assert_int_eq(dx_tls_get_session(p.c.t, NULL, 0, &len), DX_ENOBUFS);
    ck_assert_uint_gt(len, 0);
    uint8_t sess[8192];
    ck_assert_int_eq(dx_tls_get_session(p.c.t, sess, sizeof(sess), &len), 0);
    ck_assert_ptr_nonnull(dx_tls_openssl(p.c.t));
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- misuse ------------------------------------------------------------------- */

START_TEST(calls_out_of_order_are_refused)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    size_t live0 = h_alloc_live();
    dx_tls *c, *s;
    ck_assert_int_eq(dx_tls_new(NULL, DX_TLS_CLIENT, &c), DX_EINVAL);
    ck_assert_int_eq(dx_tls_new(cctx, (dx_tls_role)7, &c), DX_EINVAL);
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &c), 0);
    ck_assert_int_eq(dx_tls_new(sctx, DX_TLS_SERVER, &s), 0);
    ck_assert_int_eq(dx_tls_set_servername(s, "a.test"), DX_EINVAL); /* M-23 */
    ck_assert_int_eq(dx_tls_set_request_cert(c, true), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_session(c, "garbage", 7), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_servername(c, ""), DX_EINVAL);
    ck_assert_int_eq(dx_tls_attach(c, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_attach(c, dx_tls_upper(c)), DX_EINVAL);
    ck_assert_int_eq(dx_tls_start(c), 0);
    ck_assert_int_eq(dx_tls_start(c), DX_ESTATE);
    dx_stream *pa, *pb;
    ck_assert_int_eq(dx_pair_new(NULL, &pa, &pb), 0);
    ck_assert_int_eq(dx_tls_attach(c, pa), DX_ESTATE); /* the transport stays ours */
    dx_stream_destroy(pa);
    dx_stream_destroy(pb);
    ck_assert_int_eq(dx_tls_set_servername(c, "a.test"), DX_ESTATE);
    ck_assert_int_eq(dx_tls_set_reject_unauthorized(c, false), DX_ESTATE);
    ck_assert_int_eq(dx_tls_prefix(c, "x", 1), DX_ESTATE);
    ck_assert_ptr_null(dx_tls_from_stream(NULL));
    ck_assert(!dx_tls_is_secure(c));
    ck_assert(!dx_tls_authorized(NULL));
    ck_assert_ptr_null(dx_tls_protocol(NULL));
    dx_tls_destroy(c);
    dx_tls_destroy(s);
    dx_tls_destroy(NULL);
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* P-06: creating and destroying many connections leaks nothing. */
START_TEST(many_connections_created_and_destroyed)
{
    dx_tls_ctx *sctx = server_ctx(CERT_EC, NULL);
    size_t live0 = h_alloc_live();
    for (int i = 0; i < 2000; i++) {
        dx_tls *t;
        ck_assert_int_eq(dx_tls_new(sctx, i & 1 ? DX_TLS_SERVER : DX_TLS_CLIENT, &t), 0);
        if (i % 3 == 0)
            ck_assert_int_eq(dx_tls_start(t), 0);
        dx_tls_destroy(t);
    }
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(sctx);
}
END_TEST


/* ---- pitfalls (checklist section 2) ---------------------------------------- */

/* Pitfall 5: nothing is written to the transport before dx_tls_start(),
 * so a transport that fails at once is reported through the events. */
START_TEST(no_transport_io_before_start)
{
    dx_tls_ctx *cctx = client_ctx(NULL);
    size_t live0 = h_alloc_live();
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    h_rec peer = {0}, up = {0};
    h_rec_attach(&peer, b);
    dx_tls *c;
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &c), 0);
    ck_assert_int_eq(dx_tls_attach(c, a), 0);
    ck_assert_uint_eq(peer.received, 0);
    dx_stream_destroy(b); /* writes to a now fail with EPIPE */
    h_rec_attach(&up, dx_tls_upper(c));
    ck_assert_int_eq(dx_tls_start(c), 0);
    ck_assert_uint_eq(up.errors, 1);
    ck_assert_uint_eq(up.closes, 1);
    dx_tls_destroy(c);
    h_rec_assert_clean(&up);
    h_rec_free(&up);
    h_rec_free(&peer);
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* Pitfall 2: attaching to a transport that already ended is seen at once. */
START_TEST(attach_to_ended_transport_is_seen)
{
    dx_tls_ctx *cctx = client_ctx(NULL);
    size_t live0 = h_alloc_live();
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_pair_inject_end(a), 0);
    dx_tls *c;
    h_rec up = {0};
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &c), 0);
    h_rec_attach(&up, dx_tls_upper(c));
    ck_assert_int_eq(dx_tls_attach(c, a), 0);
    ck_assert_int_eq(dx_tls_start(c), 0);
    ck_assert_uint_eq(up.errors, 1);
    ck_assert_str_eq(up.error_name, "ECONNRESET");
    ck_assert_uint_eq(up.closes, 1);
    dx_tls_destroy(c);
    dx_stream_destroy(b);
    h_rec_assert_clean(&up);
    h_rec_free(&up);
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* Pitfall 16: the server name is readable in the error callback of a
 * failed handshake. */
static void check_servername_on_error(h_rec *r, char ev)
{
    if (ev == H_EV_ERROR) {
        tside *sd = r->ctx;
        const char *name = dx_tls_servername(sd->t);
        ck_assert_ptr_nonnull(name);
        ck_assert_str_eq(name, "server.test");
        sd->keylogs = 1000; /* marks the check as done */
    }
}

START_TEST(servername_readable_in_error_callback)
{
    ctx_opts co = {.cert = -1, .trust_ca = true};
    dx_tls_ctx *cctx = make_ctx(&co), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_servername(p.c.t, "server.test"), 0);
    ck_assert_int_eq(dx_tls_set_request_cert(p.s.t, true), 0);
    p.s.rec.on_event = check_servername_on_error;
    p.s.rec.ctx = &p.s;
    tp_start(&p);
    ck_assert_uint_eq(p.s.rec.errors, 1);
    ck_assert_uint_eq(p.s.keylogs, 1000);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Pitfall 1, nodejs/node#14605: a peer that destroys (not ends) its side
 * is seen by ours: data before it intact, then an error and close. */
START_TEST(peer_destroy_reaches_the_other_side)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_connect(&p, _i ? H_PIPE : H_MEM, NULL, cctx, sctx);
    p.c.rec.keep_data = true;
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "last words", 10), 0);
    dx_tls_destroy(p.s.t); /* and with it its transport */
    p.s.t = NULL;
    p.ch.b = NULL;
    tp_run(&p, both_closed, 5000);
    ck_assert_uint_eq(p.c.rec.received, 10);
    ck_assert_mem_eq(p.c.rec.data, "last words", 10);
    ck_assert_uint_eq(p.c.rec.errors, 1);
    ck_assert_uint_eq(p.c.rec.closes, 1);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST


/* The release-buffers policy: an idle connection holds no record buffers,
 * OpenSSL's or the filter's. */
START_TEST(release_buffers_shrinks_idle_connections)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    size_t held[2], own[2];
    for (int release = 0; release < 2; release++) {
        size_t before = h_ossl_live(), own_before = h_alloc_live();
        tpair p;
        tp_open(&p, H_MEM, NULL, cctx, sctx, false);
        ck_assert_int_eq(dx_tls_set_release_buffers(p.s.t, release), 0);
        ck_assert_int_eq(dx_tls_set_release_buffers(p.c.t, release), 0);
        tp_start(&p);
        ck_assert(p.c.secure && p.s.secure);
        static uint8_t big[64 * 1024];
        ck_assert_int_ge(dx_stream_write(dx_tls_upper(p.c.t), big, sizeof(big)), 0);
        ck_assert_int_ge(dx_stream_write(dx_tls_upper(p.s.t), big, sizeof(big)), 0);
        ck_assert_uint_eq(p.s.rec.received, sizeof(big));
        /* small records last: the buffer kept for the next is a small one */
        ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.c.t), "x", 1), 0);
        ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "y", 1), 0);
        held[release] = h_ossl_live() - before;
        own[release] = h_alloc_live() - own_before;
        tp_close(&p);
    }
    /* Two connections, each side with a read and a write buffer of about
     * 17 KiB released, and the filter's 1 KiB buffer for the next record. */
    ck_assert_msg(held[1] + 2 * 32 * 1024 < held[0], "idle: %zu kept, %zu released",
                  held[0], held[1]);
    ck_assert_msg(own[1] + 2 * 1024 == own[0], "filter's own: %zu kept, %zu released", own[0],
                  own[1]);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST


/* C-02, 3.5: the server's chain reaches the client: with the intermediate
 * it verifies (chain of three), without it the client cannot find the
 * issuer; a chain given in the wrong order is refused when the context is
 * built. */
static dx_tls_ctx *chain_ctx(bool with_inter, bool reversed, dx_error **err)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    char chain[8192];
    const char *leaf = dx_pki_cert_pem(certs[CERT_VIA_INTER]), *mid = dx_pki_cert_pem(inter);
    snprintf(chain, sizeof(chain), "%s%s", reversed ? mid : leaf,
             with_inter ? (reversed ? leaf : mid) : "");
    const char *key = dx_pki_key_pem(certs[CERT_VIA_INTER]);
    ck_assert_int_eq(dx_tls_config_add_cert(cfg, chain, strlen(chain), key, strlen(key), NULL), 0);
    dx_tls_ctx *ctx = NULL;
    dx_tls_ctx_new(cfg, &ctx, err);
    dx_tls_config_free(cfg);
    return ctx;
}

START_TEST(server_chain_with_and_without_intermediate)
{
    dx_tls_ctx *cctx = client_ctx(NULL);
    dx_error *err = NULL;
    ck_assert_ptr_null(chain_ctx(true, true, &err));
    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(strstr(dx_error_message(err), "key"));
    dx_error_free(err);
    for (int with = 0; with < 2; with++) {
        dx_tls_ctx *sctx = chain_ctx(with, false, NULL);
        ck_assert_ptr_nonnull(sctx);
        tpair p;
        tp_open(&p, H_MEM, NULL, cctx, sctx, false);
        ck_assert_int_eq(dx_tls_set_reject_unauthorized(p.c.t, false), 0);
        tp_start(&p);
        ck_assert_uint_eq(p.c.secure, 1);
        if (with) {
            ck_assert(dx_tls_authorized(p.c.t));
            ck_assert_uint_eq(dx_tls_peer_chain_length(p.c.t), 3);
        } else {
            /* Node's name for a missing intermediate */
            ck_assert_str_eq(dx_tls_authorization_error(p.c.t),
                             "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
        }
        tp_close(&p);
        dx_tls_ctx_unref(sctx);
    }
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* A whole chain whose root the client does not trust: the top of the chain
 * has no local issuer, and that is the verdict (the leaf's signature
 * checks out against the intermediate sent). */
START_TEST(server_chain_under_an_untrusted_root)
{
    ctx_opts o = {.cert = -1, .trust_ca = false};
    dx_tls_ctx *cctx = make_ctx(&o), *sctx = chain_ctx(true, false, NULL);
    ck_assert_ptr_nonnull(sctx);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_reject_unauthorized(p.c.t, false), 0);
    tp_start(&p);
    ck_assert_uint_eq(p.c.secure, 1);
    ck_assert(!dx_tls_authorized(p.c.t));
    ck_assert_str_eq(dx_tls_authorization_error(p.c.t), "UNABLE_TO_GET_ISSUER_CERT_LOCALLY");
    ck_assert_int_eq(dx_tls_verify_result(p.c.t), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    tp_close(&p);
    dx_tls_ctx_unref(sctx);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* Pitfall 9: destroying a connection whose transport still holds a write
 * that the peer does not read is safe and frees everything. */
START_TEST(destroy_with_transport_write_pending)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_connect(&p, H_PIPE, NULL, cctx, sctx);
    dx_stream_pause(dx_tls_upper(p.s.t));
    static uint8_t big[256 * 1024];
    int rc = 0;
    for (int i = 0; i < 64 && rc != DX_FULL; i++) {
        rc = dx_stream_write(dx_tls_upper(p.c.t), big, sizeof(big));
        h_step(&p.ch, 1);
    }
    ck_assert_int_eq(rc, DX_FULL);
    ck_assert_uint_gt(dx_stream_write_buffered(p.ch.a), 0);
    dx_tls_destroy(p.c.t);
    p.c.t = NULL;
    p.ch.a = NULL;
    dx_stream_resume(dx_tls_upper(p.s.t));
    tp_run(&p, both_closed, 5000);
    ck_assert_uint_eq(p.s.rec.closes, 1);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST


/* ---- protocol choices (3.8) ----------------------------------------------- */

/* Runs one handshake between contexts made from co and so; returns the
 * pair, handshake done or failed. */
static void handshake_with(tpair *p, const ctx_opts *co, const ctx_opts *so)
{
    size_t live0 = h_alloc_live();
    dx_tls_ctx *cctx = make_ctx(co), *sctx = make_ctx(so);
    tp_open(p, H_MEM, NULL, cctx, sctx, false);
    p->live0 = live0;
    tp_start(p);
    dx_tls_ctx_unref(cctx); /* the connections hold their own references */
    dx_tls_ctx_unref(sctx);
}

/* C-04, C-09, M-08: the shared cipher is chosen identically on both ends;
 * the server's order wins unless it honours the client's. */
START_TEST(cipher_choice_follows_the_preference)
{
    static const char *const want[] = {"ECDHE-ECDSA-AES256-GCM-SHA384",
                                       "ECDHE-ECDSA-AES128-GCM-SHA256"};
    ctx_opts co = {.cert = -1, .trust_ca = true, .max = "TLSv1.2",
                   .ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"};
    ctx_opts so = {.cert = CERT_EC, .trust_ca = true, .max = "TLSv1.2",
                   .ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256",
                   .client_order = _i};
    tpair p;
    handshake_with(&p, &co, &so);
    dx_tls_cipher_info c, s;
    ck_assert_int_eq(dx_tls_cipher(p.c.t, &c), 0);
    ck_assert_int_eq(dx_tls_cipher(p.s.t, &s), 0);
    ck_assert_str_eq(c.name, want[_i]);
    ck_assert_str_eq(s.name, want[_i]);
    ck_assert_str_eq(c.version, "TLSv1.2");
    ck_assert_str_eq(c.standard_name, _i ? "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
                                          : "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
    tp_close(&p);
}
END_TEST

/* 3.8: no shared cipher fails the handshake on both ends. */
START_TEST(no_shared_cipher_fails_both)
{
    ctx_opts co = {.cert = -1, .trust_ca = true, .max = "TLSv1.2",
                   .ciphers = "ECDHE-RSA-AES128-GCM-SHA256"};
    ctx_opts so = {.cert = CERT_EC, .trust_ca = true, .max = "TLSv1.2",
                   .ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"};
    tpair p;
    handshake_with(&p, &co, &so);
    ck_assert_str_eq(p.s.rec.error_name, "ERR_SSL_NO_SHARED_CIPHER");
    ck_assert_str_eq(p.c.rec.error_name, "ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE");
    tp_close(&p);
}
END_TEST

/* C-08, M-09: the group decides the ephemeral key the client sees. */
START_TEST(groups_decide_the_ephemeral_key)
{
    /* In TLS 1.2 the groups also bound the curve of an ECDSA certificate:
     * P-256 stays in the list there. */
    static const struct {
        const char *groups, *version, *name;
        int bits;
    } g[] = {{"P-256", NULL, "prime256v1", 256},
             {"P-384", NULL, "secp384r1", 384},
             {"X25519", NULL, "X25519", 253},
             {"P-256", "TLSv1.2", "prime256v1", 256},
             {"X25519:P-256", "TLSv1.2", "X25519", 253}};
    ctx_opts co = {.cert = -1, .trust_ca = true, .groups = g[_i].groups, .max = g[_i].version};
    ctx_opts so = {.cert = CERT_EC, .trust_ca = true};
    tpair p;
    handshake_with(&p, &co, &so);
    dx_tls_kex_info k;
    ck_assert_int_eq(dx_tls_ephemeral_key(p.c.t, &k), 0);
    ck_assert_str_eq(k.type, "ECDH");
    ck_assert_str_eq(k.name, g[_i].name);
    ck_assert_int_eq(k.bits, g[_i].bits);
    tp_close(&p);
}
END_TEST

/* C-03, M-15: shared signature algorithms; none in common fails. */
START_TEST(sigalgs_shared_or_refused)
{
    ctx_opts co = {.cert = -1, .trust_ca = true, .sigalgs = _i ? "RSA-PSS+SHA256" : "ECDSA+SHA256"};
    ctx_opts so = {.cert = CERT_EC, .trust_ca = true};
    tpair p;
    handshake_with(&p, &co, &so);
    if (_i) {
        ck_assert_uint_eq(p.s.rec.errors, 1);
        ck_assert_uint_eq(p.c.rec.errors, 1);
    } else {
        ck_assert_str_eq(dx_tls_shared_sigalg(p.s.t, 0), "ECDSA+SHA256");
        ck_assert_ptr_null(dx_tls_shared_sigalg(p.s.t, 1));
    }
    tp_close(&p);
}
END_TEST

/* 3.15: TLS 1.2 key log lines (CLIENT_RANDOM) are the same on both sides. */
START_TEST(keylog_tls12_client_random)
{
    dx_tls_ctx *cctx = client_ctx("TLSv1.2"), *sctx = server_ctx(CERT_EC, "TLSv1.2");
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    ck_assert_uint_eq(p.c.keylogs, 1);
    ck_assert_uint_eq(p.s.keylogs, 1);
    ck_assert_str_eq(p.c.keylog, p.s.keylog);
    ck_assert_int_eq(strncmp(p.c.keylog, "CLIENT_RANDOM ", 14), 0);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* M-17: a TLS 1.3 client holds its ticket once one came; servers never. */
START_TEST(ticket_bytes_on_the_client)
{
    dx_tls_ctx *cctx = client_ctx("TLSv1.3"), *sctx = server_ctx(CERT_EC, "TLSv1.3");
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "x", 1), 0);
    uint8_t buf[4096];
    size_t len = 0;
    ck_assert_int_eq(dx_tls_get_ticket(p.c.t, buf, sizeof(buf), &len), 0);
    ck_assert_uint_gt(len, 16);
    ck_assert_int_eq(dx_tls_get_ticket(p.s.t, buf, sizeof(buf), &len), DX_ENOTSUP);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* 3.2: a record with a bad version injected into an open connection fails
 * the receiver with ERR_SSL_WRONG_VERSION_NUMBER; no data is delivered. */
START_TEST(bad_record_mid_connection_fails_receiver)
{
    dx_tls_ctx *cctx = client_ctx(versions[_i]), *sctx = server_ctx(CERT_EC, versions[_i]);
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    static const uint8_t rec[] = {0x17, 0x09, 0x09, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'};
    ck_assert_int_eq(dx_stream_write(dx_tls_lower(p.s.t), rec, sizeof(rec)), DX_ETLS);
    ck_assert_uint_eq(p.s.rec.errors, 1);
    ck_assert_str_eq(p.s.rec.error_name, "ERR_SSL_WRONG_VERSION_NUMBER");
    ck_assert_uint_eq(p.s.rec.received, 0);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST


/* Bad input from the allocator: every allocation of libduplex's that can
 * fail, failing in turn through a connection's making, handshake and
 * close, ends in success or a clean error; nothing leaks. */
START_TEST(allocation_failures_end_cleanly)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    bool succeeded = false;
    for (long n = 0; n < 400 && !succeeded; n++) {
        size_t live0 = h_alloc_live();
        h_alloc_fail_from(n);
        dx_stream *a = NULL, *b = NULL;
        dx_tls *c = NULL, *sv = NULL;
        h_rec rc = {0}, rs = {0};
        if (dx_pair_new(NULL, &a, &b) == 0 && dx_tls_new(cctx, DX_TLS_CLIENT, &c) == 0 &&
            dx_tls_new(sctx, DX_TLS_SERVER, &sv) == 0) {
            h_rec_attach(&rc, dx_tls_upper(c));
            h_rec_attach(&rs, dx_tls_upper(sv));
            int r1 = dx_tls_attach(c, a);
            a = NULL;
            int r2 = dx_tls_attach(sv, b);
            b = NULL;
            if (r1 == 0 && r2 == 0 && dx_tls_start(sv) == 0 && dx_tls_start(c) == 0 &&
                dx_stream_write(dx_tls_upper(c), "ping", 4) >= 0 &&
                dx_stream_end(dx_tls_upper(c)) == 0)
                succeeded = rs.received == 4 && rc.closes && rs.closes && !rc.errors &&
                            !rs.errors;
            /* Each side either worked or failed with a code, once. */
            ck_assert_uint_le(rc.errors, 1);
            ck_assert_uint_le(rs.errors, 1);
        }
        h_alloc_fail_from(-1);
        dx_tls_destroy(c);
        dx_tls_destroy(sv);
        dx_stream_destroy(a);
        dx_stream_destroy(b);
        h_rec_assert_clean(&rc);
        h_rec_assert_clean(&rs);
        h_rec_free(&rc);
        h_rec_free(&rs);
        ck_assert_msg(h_alloc_live() == live0, "n=%ld: %zu bytes leaked", n,
                      h_alloc_live() - live0);
    }
    ck_assert(succeeded);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST


/* In the SecurePair shape the peer answers inside our failure: each side
 * still reports its own error. */
START_TEST(secure_pair_failure_reports_own_error)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_UNTRUSTED, NULL);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, true);
    tp_start(&p);
    ck_assert_str_eq(p.c.rec.error_name, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    ck_assert_str_eq(p.s.rec.error_name, "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA");
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* A refusing identity callback that gives no reason still refuses. */
static int refuse_silently(dx_tls *t, const char *host, const dx_tls_cert *cert,
                           dx_error **err, void *u)
{
    (void)t, (void)host, (void)cert, (void)err, (void)u;
    return 1;
}

START_TEST(identity_refusal_without_reason_refuses)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_check_identity(p.c.t, refuse_silently, NULL), 0);
    tp_start(&p);
    ck_assert_uint_eq(p.c.secure, 0);
    ck_assert_str_eq(p.c.rec.error_name, "ERR_TLS_CERT_ALTNAME_INVALID");
    ck_assert_int_eq(dx_tls_attach(p.c.t, p.ch.a), DX_EINVAL); /* attached already */
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Deadlines exist only between start and close; received bytes count as
 * traffic even before they make a record. */
START_TEST(deadlines_only_while_open)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    h_fake_now = 100;
    ck_assert_int_eq(dx_tls_set_clock(p.s.t, h_fake_clock, NULL), 0);
    ck_assert_int_eq(dx_tls_set_handshake_timeout(p.s.t, 0), 0);
    ck_assert_int_eq(dx_tls_set_idle_timeout(p.s.t, 50), 0);
    ck_assert_uint_eq(dx_tls_deadline(p.s.t), DX_TLS_NO_DEADLINE); /* not started */
    tp_start(&p);
    ck_assert_uint_eq(dx_tls_deadline(p.s.t), 150);
    h_fake_now = 140;
    /* Half a record: bytes arrive, no cleartext yet. */
    static const uint8_t half[] = {0x17, 0x03, 0x03, 0x00, 0x40, 1, 2, 3};
    dx_stream_write(dx_tls_lower(p.s.t), half, sizeof(half));
    ck_assert_uint_eq(dx_tls_deadline(p.s.t), 190);
    dx_stream_abort(dx_tls_upper(p.s.t));
    ck_assert_uint_eq(dx_tls_deadline(p.s.t), DX_TLS_NO_DEADLINE);
    h_fake_now = 1000;
    dx_tls_check_timeouts(p.s.t);
    ck_assert_uint_eq(p.s.timeouts, 0);
    ck_assert_int_eq(dx_tls_attach(p.s.t, p.ch.b), DX_EINVAL);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* The adapters' deadline hook: told every change as on_deadline is (and
 * before it), apart from the TLS events; a last call with no deadline when
 * the connection closes, then never again. */
typedef struct hook_log {
    unsigned calls, finals, after_final, ev_seen_first;
    uint64_t when;
    tside *sd; /* on_deadline's count when the hook ran */
    unsigned ev_deadlines_at_call;
} hook_log;

static void deadline_hook(dx_tls *t, uint64_t when, void *arg)
{
    hook_log *h = arg;
    if (h->finals)
        h->after_final++;
    h->calls++;
    h->when = when;
    if (h->sd)
        h->ev_deadlines_at_call = h->sd->deadlines;
    if (when == DX_TLS_NO_DEADLINE && (dx_stream_state(dx_tls_upper(t)) & DX_STREAM_CLOSED))
        h->finals++;
}

START_TEST(deadline_hook_follows_deadlines)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    hook_log h = {.sd = &p.c};
    h_fake_now = 1000;
    ck_assert_int_eq(dx_tls_set_clock(p.c.t, h_fake_clock, NULL), 0);
    ck_assert_int_eq(dx_tls_set_deadline_hook(NULL, deadline_hook, &h), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_deadline_hook(p.c.t, deadline_hook, &h), 0);
    /* One hook at a time. */
    ck_assert_int_eq(dx_tls_set_deadline_hook(p.c.t, deadline_hook, &h), DX_ESTATE);
    ck_assert_int_eq(dx_tls_set_handshake_timeout(p.c.t, 50), 0);
    ck_assert_uint_eq(h.calls, 0); /* not started: no deadline yet */
    ck_assert_int_eq(dx_tls_start(p.c.t), 0); /* the server never answers */
    ck_assert_uint_eq(h.calls, 1);
    ck_assert_uint_eq(h.when, 1050);
    ck_assert_uint_eq(h.ev_deadlines_at_call, 0); /* before on_deadline */
    ck_assert_uint_eq(p.c.deadlines, 1);
    ck_assert_uint_eq(p.c.deadline, 1050);
    /* Moving the deadline tells it again; checking early changes nothing. */
    h_fake_now = 1010;
    ck_assert_int_eq(dx_tls_set_handshake_timeout(p.c.t, 100), 0);
    ck_assert_uint_eq(h.calls, 2);
    ck_assert_uint_eq(h.when, 1110);
    dx_tls_check_timeouts(p.c.t);
    ck_assert_uint_eq(h.calls, 2);
    /* Without the TLS events the hook still hears (a server replaces the
     * application's events with its own). */
    ck_assert_int_eq(dx_tls_set_events(p.c.t, NULL, NULL), 0);
    h_fake_now = 1020;
    ck_assert_int_eq(dx_tls_set_handshake_timeout(p.c.t, 200), 0);
    ck_assert_uint_eq(h.calls, 3);
    ck_assert_uint_eq(h.when, 1220);
    ck_assert_uint_eq(h.finals, 0);
    h_fake_now = 1220;
    dx_tls_check_timeouts(p.c.t); /* fails: the last call, from the close */
    ck_assert_uint_eq(p.c.rec.errors, 1);
    ck_assert_str_eq(p.c.rec.error_name, "ERR_TLS_HANDSHAKE_TIMEOUT");
    ck_assert_uint_eq(h.finals, 1);
    ck_assert_uint_eq(h.calls, 4);
    ck_assert_uint_eq(h.when, DX_TLS_NO_DEADLINE);
    /* Closed: no new hook, and nothing more for the old one. */
    ck_assert_int_eq(dx_tls_set_deadline_hook(p.c.t, deadline_hook, &h), DX_ESTATE);
    ck_assert_int_eq(dx_tls_set_idle_timeout(p.c.t, 10), 0);
    tp_close(&p);
    ck_assert_uint_eq(h.calls, 4);
    ck_assert_uint_eq(h.after_final, 0);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* The last call comes however the connection closes: destroyed before it
 * started, aborted through its upper stream, or closed cleanly; a hook
 * removed with NULL hears nothing. */
START_TEST(deadline_hook_last_call_on_every_close)
{
    dx_tls_ctx *cctx = client_ctx(_i ? "TLSv1.3" : "TLSv1.2");
    dx_tls_ctx *sctx = server_ctx(CERT_EC, _i ? "TLSv1.3" : "TLSv1.2");
    /* Destroyed before it started. */
    dx_tls *t;
    hook_log h = {0};
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &t), 0);
    ck_assert_int_eq(dx_tls_set_deadline_hook(t, deadline_hook, &h), 0);
    dx_tls_destroy(t);
    ck_assert_uint_eq(h.calls, 1);
    ck_assert_uint_eq(h.finals, 1);
    /* Removed: nothing, not even the last call. */
    hook_log gone = {0};
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &t), 0);
    ck_assert_int_eq(dx_tls_set_deadline_hook(t, deadline_hook, &gone), 0);
    ck_assert_int_eq(dx_tls_set_deadline_hook(t, NULL, NULL), 0);
    ck_assert_int_eq(dx_tls_set_deadline_hook(t, deadline_hook, &h), 0); /* free again */
    ck_assert_int_eq(dx_tls_set_deadline_hook(t, NULL, NULL), 0);
    dx_tls_destroy(t);
    ck_assert_uint_eq(gone.calls, 0);
    ck_assert_uint_eq(h.calls, 1);

    /* Aborted through the upper stream: the last call at the abort. */
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    hook_log ha = {0};
    ck_assert_int_eq(dx_tls_set_deadline_hook(p.s.t, deadline_hook, &ha), 0);
    tp_start(&p);
    dx_stream_abort(dx_tls_upper(p.s.t));
    ck_assert_uint_eq(ha.finals, 1);
    unsigned calls = ha.calls;
    tp_close(&p);
    ck_assert_uint_eq(ha.calls, calls);
    ck_assert_uint_eq(ha.after_final, 0);

    /* A clean close, both ways: the handshake deadline went at secure,
     * the last call comes with the close. */
    hook_log hc = {0}, hs = {0};
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_servername(p.c.t, "localhost"), 0);
    ck_assert_int_eq(dx_tls_set_deadline_hook(p.c.t, deadline_hook, &hc), 0);
    ck_assert_int_eq(dx_tls_set_deadline_hook(p.s.t, deadline_hook, &hs), 0);
    tp_start(&p);
    tp_run(&p, both_secure, 10000);
    ck_assert_uint_eq(p.c.secure, 1);
    /* The server started first: its handshake deadline, then none. (The
     * client may complete within its start over a memory pair, and then
     * never had a deadline to tell.) */
    ck_assert_uint_eq(hs.calls, 2);
    ck_assert_uint_eq(hs.when, DX_TLS_NO_DEADLINE);
    ck_assert(hc.calls == 0 || hc.when == DX_TLS_NO_DEADLINE);
    ck_assert_uint_eq(hc.finals + hs.finals, 0);
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(p.c.t)), 0);
    tp_run(&p, both_closed, 10000);
    ck_assert_uint_eq(p.c.rec.closes, 1);
    ck_assert_uint_eq(p.s.rec.closes, 1);
    ck_assert_uint_eq(p.c.rec.errors + p.s.rec.errors, 0);
    ck_assert_uint_eq(hc.finals, 1);
    ck_assert_uint_eq(hs.finals, 1);
    tp_close(&p);
    ck_assert_uint_eq(hc.after_final + hs.after_final, 0);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST


/* Pitfall 17: an error of the transport reaches the application through
 * the connection's error event, with the transport's code. */
START_TEST(transport_error_reaches_the_application)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    ck_assert_int_eq(dx_pair_inject_error(p.ch.a, DX_EIO), 0);
    ck_assert_uint_eq(p.c.rec.errors, 1);
    ck_assert_int_eq(p.c.rec.error_code, DX_EIO);
    ck_assert_uint_eq(p.c.rec.closes, 1);
    ck_assert_uint_eq(p.s.rec.closes, 1); /* the peer sees its transport go */
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST


/* ---- review regressions ----------------------------------------------------- */

/* 3.5, C-06: a certificate revoked by a CRL the client checks is refused
 * with CERT_REVOKED; an unrevoked one passes the same check. */
START_TEST(revoked_server_certificate_is_refused)
{
    const dx_pki_cert *revoked[] = {certs[CERT_RSA], NULL};
    char *crl = h_make_crl(ca, revoked);
    ctx_opts co = {.cert = -1, .trust_ca = true, .crl = crl};
    tpair p;
    dx_tls_ctx *sctx = server_ctx(_i ? CERT_EC : CERT_RSA, NULL);
    dx_tls_ctx *cctx = make_ctx(&co);
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    tp_start(&p);
    if (_i) {
        ck_assert_uint_eq(p.c.secure, 1);
        ck_assert(dx_tls_authorized(p.c.t));
    } else {
        ck_assert_uint_eq(p.c.rec.errors, 1);
        ck_assert_str_eq(p.c.rec.error_name, "CERT_REVOKED");
    }
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
    free(crl);
}
END_TEST

/* CL-13: a client refuses DH parameters below its minimum with
 * ERR_TLS_DH_PARAM_SIZE; with trace on, a callback that destroys the
 * connection while events are pending is safe (review: emit_events). */
static void destroy_on_trace(dx_tls *t, const char *text, void *u)
{
    (void)text;
    tside *sd = u;
    if (sd->t == t) {
        dx_tls_destroy(t);
        sd->t = NULL;
    }
}

START_TEST(small_dh_group_is_refused)
{
    ctx_opts co = {.cert = -1, .trust_ca = true, .max = "TLSv1.2",
                   .ciphers = "DHE-RSA-AES128-GCM-SHA256"};
    ctx_opts so = {.cert = CERT_RSA, .trust_ca = true, .max = "TLSv1.2",
                   .ciphers = "DHE-RSA-AES128-GCM-SHA256", .dh_auto = true};
    dx_tls_ctx *cctx = make_ctx(&co), *sctx = make_ctx(&so);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_min_dh_size(p.c.t, _i ? 1024 : 8192), 0);
    if (_i == 2) {
        dx_tls_events ev = tls_events;
        ev.on_trace = destroy_on_trace;
        ck_assert_int_eq(dx_tls_set_events(p.c.t, &ev, &p.c), 0);
        ck_assert_int_eq(dx_tls_set_min_dh_size(p.c.t, 8192), 0);
        ck_assert_int_eq(dx_tls_set_trace(p.c.t, true), 0);
    }
    tp_start(&p);
    if (_i == 1) {
        ck_assert_uint_eq(p.c.secure, 1);
        dx_tls_kex_info k;
        ck_assert_int_eq(dx_tls_ephemeral_key(p.c.t, &k), 0);
        ck_assert_str_eq(k.type, "DH");
        ck_assert_int_ge(k.bits, 2048);
    } else if (_i == 0) {
        ck_assert_uint_eq(p.c.secure, 0);
        ck_assert_str_eq(p.c.rec.error_name, "ERR_TLS_DH_PARAM_SIZE");
    } else {
        ck_assert_ptr_null(p.c.t);
    }
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Review 1: the reader of the lower stream may destroy the connection
 * inside on_data and still read the record it was given. */
typedef struct lower_reader {
    dx_tls *t;
    unsigned sum, calls;
} lower_reader;

static void destroy_then_sum(dx_stream *s, const uint8_t *d, size_t n, void *u)
{
    (void)s;
    lower_reader *r = u;
    r->calls++;
    if (r->t) {
        dx_tls_destroy(r->t);
        r->t = NULL;
    }
    for (size_t i = 0; i < n; i++)
        r->sum += d[i];
}

START_TEST(lower_reader_destroys_connection_in_data)
{
    dx_tls_ctx *cctx = client_ctx(NULL);
    size_t live0 = h_alloc_live();
    dx_tls *c;
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &c), 0);
    lower_reader r = {.t = c};
    dx_stream_events ev = {.on_data = destroy_then_sum};
    ck_assert_int_eq(dx_stream_set_events(dx_tls_lower(c), &ev, &r), 0);
    ck_assert_int_eq(dx_tls_start(c), 0);
    ck_assert_uint_eq(r.calls, 1);
    ck_assert_uint_gt(r.sum, 0);
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* Review 4: an identity callback that destroys the upper stream (allowed:
 * only dx_tls_destroy() is not) leaves OpenSSL nothing freed to read. */
static int destroy_upper_and_accept(dx_tls *t, const char *host, const dx_tls_cert *cert,
                                    dx_error **err, void *u)
{
    (void)host, (void)cert, (void)err, (void)u;
    dx_stream_destroy(dx_tls_upper(t));
    return 0;
}

START_TEST(identity_callback_destroying_upper_is_safe)
{
    dx_tls_ctx *cctx = client_ctx(versions[_i]), *sctx = server_ctx(CERT_EC, versions[_i]);
    tpair p;
    dx_pair_opts po = {.max_chunk = 3000}; /* records arrive through the buffers */
    tp_open(&p, H_MEM, &po, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_check_identity(p.c.t, destroy_upper_and_accept, NULL), 0);
    tp_start(&p);
    ck_assert_uint_eq(p.c.rec.closes, 1);
    ck_assert_uint_eq(p.c.secure, 0);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Review 5: SSL objects a user makes from the context, with app data of
 * their own, are not mistaken for connections by the context's callbacks. */
START_TEST(own_ssl_objects_on_a_context_are_left_alone)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    SSL *c = SSL_new(dx_tls_ctx_openssl(cctx)), *sv = SSL_new(dx_tls_ctx_openssl(sctx));
    char junk[8] = "junk";
    SSL_set_app_data(c, junk);
    SSL_set_app_data(sv, junk);
    BIO *b1, *b2;
    ck_assert_int_eq(BIO_new_bio_pair(&b1, 0, &b2, 0), 1);
    SSL_set_bio(c, b1, b1);
    SSL_set_bio(sv, b2, b2);
    SSL_set_connect_state(c);
    SSL_set_accept_state(sv);
    SSL_set_verify(c, SSL_VERIFY_PEER, NULL);
    SSL_set_tlsext_host_name(c, "localhost");
    int rc = 0, rs = 0;
    for (int i = 0; i < 20 && (rc != 1 || rs != 1); i++) {
        rc = SSL_do_handshake(c);
        rs = SSL_do_handshake(sv);
    }
    ck_assert_int_eq(rc, 1);
    ck_assert_int_eq(rs, 1);
    ck_assert_str_eq(junk, "junk");
    SSL_free(c);
    SSL_free(sv);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Review 6: a connection destroyed by its own error callback while it is
 * attached to a transport that already failed leaks nothing. */
static void destroy_tls_on_error(h_rec *r, char ev)
{
    if (ev == H_EV_ERROR) {
        tside *sd = r->ctx;
        dx_tls_destroy(sd->t);
        sd->t = NULL;
    }
}

START_TEST(destroy_during_attach_to_failed_transport)
{
    dx_tls_ctx *cctx = client_ctx(NULL);
    size_t live0 = h_alloc_live();
    dx_stream *a, *b;
    ck_assert_int_eq(dx_pair_new(NULL, &a, &b), 0);
    ck_assert_int_eq(dx_pair_inject_error(a, DX_EIO), 0);
    tside sd = {0};
    side_new(&sd, cctx, DX_TLS_CLIENT);
    sd.rec.on_event = destroy_tls_on_error;
    sd.rec.ctx = &sd;
    dx_tls_attach(sd.t, a);
    ck_assert_ptr_null(sd.t);
    dx_stream_destroy(b);
    h_rec_free(&sd.rec);
    ck_assert_uint_eq(h_alloc_live(), live0);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* Review 8: one large write goes through whole, with no other event to
 * push it along. */
START_TEST(large_single_write_is_not_stalled)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    static uint8_t big[100000];
    ck_assert_int_ge(dx_stream_write(dx_tls_upper(p.c.t), big, sizeof(big)), 0);
    ck_assert_uint_eq(p.s.rec.received, sizeof(big));
    ck_assert_uint_eq(dx_stream_write_buffered(dx_tls_upper(p.c.t)), 0);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Review 9: bytes after the peer's close_notify are dropped, so the
 * transport's end still comes through and the connection closes. */
/* A relay between two lower streams that carries data but not the end. */
static void relay_data(dx_stream *s, const uint8_t *d, size_t n, void *u)
{
    (void)s;
    dx_stream_write(u, d, n);
}

START_TEST(bytes_after_close_notify_are_dropped)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    memset(&p, 0, sizeof(p));
    p.live0 = h_alloc_live();
    side_new(&p.c, cctx, DX_TLS_CLIENT); /* no transport: the test relays */
    side_new(&p.s, sctx, DX_TLS_SERVER);
    dx_stream *cl = dx_tls_lower(p.c.t), *sl = dx_tls_lower(p.s.t);
    dx_stream_events ev = {.on_data = relay_data};
    ck_assert_int_eq(dx_stream_set_events(cl, &ev, sl), 0);
    ck_assert_int_eq(dx_stream_set_events(sl, &ev, cl), 0);
    ck_assert_int_eq(dx_tls_set_allow_half_open(p.s.t, true), 0);
    tp_start(&p);
    ck_assert(p.c.secure && p.s.secure);
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(p.c.t)), 0);
    ck_assert_uint_eq(p.s.rec.ends, 1); /* close_notify came, the end did not */
    ck_assert_int_eq(dx_stream_write(sl, "junk after", 10), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(sl), 0);
    ck_assert_int_eq(dx_stream_end(sl), 0);
    ck_assert_uint_eq(p.s.rec.errors, 0);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Review 10: the secure event comes before the first data, even when the
 * last handshake message and data arrive in one delivery. */
static void data_after_secure(h_rec *r, char ev)
{
    tside *sd = r->ctx;
    if (ev == H_EV_DATA)
        ck_assert_msg(sd->secure == 1, "data before secure");
}

START_TEST(secure_comes_before_data)
{
    dx_tls_ctx *cctx = client_ctx(versions[_i]), *sctx = server_ctx(CERT_EC, versions[_i]);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    p.s.rec.on_event = data_after_secure;
    p.s.rec.ctx = &p.s;
    p.c.rec.on_event = data_after_secure;
    p.c.rec.ctx = &p.c;
    /* Everything written before the handshake leaves with its last flight. */
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.c.t), "early", 5), 0);
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "early", 5), 0);
    ck_assert_int_eq(dx_pair_hold(p.ch.b), 0);
    ck_assert_int_eq(dx_pair_hold(p.ch.a), 0);
    tp_start(&p);
    for (int i = 0; i < 10 && !(p.c.rec.received && p.s.rec.received); i++) {
        ck_assert_int_eq(dx_pair_release(p.ch.b), 0);
        ck_assert_int_eq(dx_pair_hold(p.ch.b), 0);
        ck_assert_int_eq(dx_pair_release(p.ch.a), 0);
        ck_assert_int_eq(dx_pair_hold(p.ch.a), 0);
    }
    dx_pair_release(p.ch.a);
    dx_pair_release(p.ch.b);
    ck_assert_uint_eq(p.s.rec.received, 5);
    ck_assert_uint_eq(p.c.rec.received, 5);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Review 11: with truncation allowed the peer gets no alert, and a
 * half-open side keeps writing after the unclean end. */
START_TEST(allowed_truncation_keeps_half_open_writes)
{
    dx_tls_ctx *cctx = client_ctx(NULL), *sctx = server_ctx(CERT_EC, NULL);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_allow_truncation(p.s.t, true), 0);
    ck_assert_int_eq(dx_tls_set_allow_half_open(p.s.t, true), 0);
    tp_start(&p);
    ck_assert_int_eq(dx_pair_inject_end(p.ch.b), 0); /* the server sees EOF */
    ck_assert_uint_eq(p.s.rec.ends, 1);
    ck_assert(!dx_tls_clean_end(p.s.t));
    p.c.rec.keep_data = true;
    ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "still here", 10), 0);
    ck_assert_uint_eq(p.c.rec.received, 10);
    ck_assert_uint_eq(p.c.rec.errors + p.s.rec.errors, 0);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Review 12, 13: a client's context keeps no sessions of its own, and many
 * contexts work side by side. */
START_TEST(client_context_keeps_no_sessions)
{
    dx_tls_ctx *sctx = server_ctx(CERT_EC, "TLSv1.3");
    dx_tls_ctx *many[150];
    for (int i = 0; i < 150; i++)
        many[i] = client_ctx("TLSv1.3");
    dx_tls_ctx *cctx = many[149];
    for (int i = 0; i < 5; i++) {
        tpair p;
        tp_connect(&p, H_MEM, NULL, cctx, sctx);
        ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "x", 1), 0);
        ck_assert_uint_ge(p.c.sessions, 1);
        tp_close(&p);
    }
    ck_assert_int_eq(SSL_CTX_sess_number(dx_tls_ctx_openssl(cctx)), 0);
    for (int i = 0; i < 150; i++)
        dx_tls_ctx_unref(many[i]);
    dx_tls_ctx_unref(sctx);
}
END_TEST


/* TLS 1.3 KeyUpdate: sent at once (the peer's trace shows it), data flows
 * on both ways under the new keys; refused before the handshake and in
 * TLS 1.2. */
static void count_key_updates(dx_tls *t, const char *text, void *u)
{
    (void)t;
    tside *sd = u;
    for (const char *p = text; (p = strstr(p, "KeyUpdate")); p += 9)
        sd->key_updates++;
}

START_TEST(key_update_renews_keys)
{
    const char *v = versions[_i];
    dx_tls_ctx *cctx = client_ctx(v), *sctx = server_ctx(CERT_EC, v);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_key_update(p.c.t, false), DX_ESTATE);
    dx_tls_events ev = tls_events;
    ev.on_trace = count_key_updates;
    ck_assert_int_eq(dx_tls_set_events(p.s.t, &ev, &p.s), 0);
    ck_assert_int_eq(dx_tls_set_events(p.c.t, &ev, &p.c), 0);
    tp_start(&p);
    ck_assert(p.c.secure && p.s.secure);
    ck_assert_int_eq(dx_tls_set_trace(p.s.t, true), 0);
    ck_assert_int_eq(dx_tls_set_trace(p.c.t, true), 0);
    if (_i == 0) {
        ck_assert_int_eq(dx_tls_key_update(p.c.t, true), DX_ESTATE);
    } else {
        ck_assert_int_eq(dx_tls_key_update(p.c.t, true), 0);
        ck_assert_uint_ge(p.s.key_updates, 1); /* the server read it */
        ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.s.t), "after", 5), 0);
        ck_assert_uint_eq(p.c.rec.received, 5);
        ck_assert_int_eq(dx_stream_write(dx_tls_upper(p.c.t), "more", 4), 0);
        ck_assert_uint_eq(p.s.rec.received, 4);
    }
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- suite ------------------------------------------------------------------- */

/* ---- handshakes on an open connection ----------------------------------------- */

typedef struct done_log {
    unsigned calls;
    char name[64];
    dx_tls *t;
    bool destroy; /* destroy the connection inside the callback */
} done_log;

static void on_done(dx_tls *t, const dx_error *err, void *u)
{
    done_log *d = u;
    d->calls++;
    d->t = t;
    snprintf(d->name, sizeof(d->name), "%s", err ? dx_error_name(err) : "");
    if (d->destroy)
        dx_tls_destroy(t);
}

static bool done_called(void *arg) { return ((done_log *)arg)->calls > 0; }

static void run_until_done(tpair *p, done_log *d, int ms) { h_run(&p->ch, done_called, d, ms); }

static bool client_failed(void *arg) { return ((tpair *)arg)->c.rec.errors > 0; }

/* Node's renegotiate(): either side starts it (i: 0 the server, 1 the
 * client, on a server that allows it), the callback comes once, data
 * keeps flowing across it, and the peer is verified anew. */
START_TEST(renegotiation_from_either_side)
{
    dx_tls_ctx *cctx = client_ctx("TLSv1.2"), *sctx = server_ctx(CERT_EC, "TLSv1.2");
    tpair p;
    tp_open(&p, H_PIPE, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_servername(p.c.t, "localhost"), 0);
    ck_assert_int_eq(dx_tls_set_client_renegotiation(p.s.t, true, 0, 0), 0);
    tp_start(&p);
    tp_run(&p, both_secure, 5000);
    ck_assert(dx_tls_authorized(p.c.t));
    dx_tls *by = _i ? p.c.t : p.s.t;
    uint8_t fin0[64], fin1[64];
    size_t n0 = dx_tls_finished(by, fin0, sizeof(fin0));
    done_log d = {0};
    ck_assert_int_eq(dx_tls_renegotiate(by, NULL, on_done, &d), 0);
    ck_assert_uint_eq(d.calls, 0); /* never from inside the call */
    ck_assert_int_eq(dx_tls_renegotiate(by, NULL, on_done, &d), DX_ESTATE);
    transfer_both(&p, 200000);
    run_until_done(&p, &d, 5000);
    ck_assert_uint_eq(d.calls, 1);
    ck_assert_str_eq(d.name, "");
    ck_assert_ptr_eq(d.t, by);
    size_t n1 = dx_tls_finished(by, fin1, sizeof(fin1));
    ck_assert(n0 != n1 || memcmp(fin0, fin1, n0) != 0); /* a new handshake */
    ck_assert(dx_tls_authorized(p.c.t));
    ck_assert_ptr_nonnull(dx_tls_peer_cert(p.c.t));
    ck_assert(dx_tls_is_secure(p.s.t));
    /* And again, now that the first completed. */
    d.calls = 0;
    ck_assert_int_eq(dx_tls_renegotiate(by, NULL, on_done, &d), 0);
    run_until_done(&p, &d, 5000);
    ck_assert_uint_eq(d.calls, 1);
    ck_assert_str_eq(d.name, "");
    ck_assert_uint_eq(p.c.secure, 1); /* no second secure event */
    ck_assert_uint_eq(p.c.rec.errors + p.s.rec.errors, 0);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* An end asked for while a renegotiation is under way: i 0, the server
 * renegotiates and ends: its close_notify goes once the renegotiation is
 * over; 1, the client ends before it answers the server's HelloRequest:
 * the renegotiation never completes (ECANCELED), the close is clean all
 * the same. */
START_TEST(end_during_renegotiation_closes_cleanly)
{
    dx_tls_ctx *cctx = client_ctx("TLSv1.2"), *sctx = server_ctx(CERT_EC, "TLSv1.2");
    tpair p;
    tp_connect(&p, H_PIPE, NULL, cctx, sctx);
    done_log d = {0};
    ck_assert_int_eq(dx_tls_renegotiate(p.s.t, NULL, on_done, &d), 0);
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(_i ? p.c.t : p.s.t)), 0);
    tp_run(&p, both_closed, 5000);
    ck_assert_uint_eq(p.c.rec.errors + p.s.rec.errors, 0);
    ck_assert_uint_eq(p.c.rec.ends, 1);
    ck_assert_uint_eq(p.s.rec.ends, 1);
    ck_assert(dx_tls_clean_end(p.c.t));
    ck_assert(dx_tls_clean_end(p.s.t));
    ck_assert_uint_eq(d.calls, 1);
    ck_assert_str_eq(d.name, _i ? "ECANCELED" : "");
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* A server renegotiates to ask for the client's certificate (Node's
 * renegotiate({requestCert, rejectUnauthorized})): i 0 the client has a
 * trusted one; 1 none, refused; 2 none, allowed. */
START_TEST(renegotiation_asks_for_client_certificate)
{
    int mode = _i;
    ctx_opts co = {.cert = mode == 0 ? CERT_CLIENT : -1, .trust_ca = true, .min = "TLSv1.2",
                   .max = "TLSv1.2"};
    dx_tls_ctx *cctx = make_ctx(&co), *sctx = server_ctx(CERT_EC, "TLSv1.2");
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    ck_assert_ptr_null(dx_tls_peer_cert(p.s.t));
    ck_assert(!dx_tls_authorized(p.s.t));
    done_log d = {0};
    dx_tls_renegotiate_opts o = {.request_cert = true, .reject_unauthorized = mode != 2};
    ck_assert_int_eq(dx_tls_renegotiate(p.s.t, &o, on_done, &d), 0);
    run_until_done(&p, &d, 5000);
    ck_assert_uint_eq(d.calls, 1);
    if (mode == 0) {
        ck_assert_str_eq(d.name, "");
        ck_assert(dx_tls_authorized(p.s.t));
        const dx_tls_cert *c = dx_tls_peer_cert(p.s.t);
        ck_assert_ptr_nonnull(c);
        ck_assert_str_eq(dx_tls_name_get(dx_tls_cert_subject(c), "CN", 0), "client");
    } else if (mode == 1) {
        ck_assert_str_ne(d.name, "");
        ck_assert_uint_eq(p.s.rec.errors, 1);
        ck_assert_str_eq(d.name, p.s.rec.error_name);
        ck_assert_uint_eq(p.c.rec.errors, 1);
    } else {
        ck_assert_str_eq(d.name, "");
        ck_assert(!dx_tls_authorized(p.s.t));
        ck_assert_str_eq(dx_tls_authorization_error(p.s.t), "UNABLE_TO_GET_ISSUER_CERT");
        ck_assert(dx_tls_is_secure(p.s.t));
    }
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Client-initiated renegotiation is refused by default: the client's
 * callback gets the refusal, and it fails as OpenSSL fails it. */
START_TEST(client_renegotiation_refused_by_default)
{
    dx_tls_ctx *cctx = client_ctx("TLSv1.2"), *sctx = server_ctx(CERT_EC, "TLSv1.2");
    tpair p;
    tp_connect(&p, H_MEM, NULL, cctx, sctx);
    done_log d = {0};
    ck_assert_int_eq(dx_tls_renegotiate(p.c.t, NULL, on_done, &d), 0);
    run_until_done(&p, &d, 5000);
    ck_assert_uint_eq(d.calls, 1);
    ck_assert_str_eq(d.name, "ERR_SSL_NO_RENEGOTIATION");
    ck_assert_uint_eq(p.c.rec.errors, 1);
    ck_assert_str_eq(p.c.rec.error_name, "ERR_SSL_NO_RENEGOTIATION");
    tp_close(&p);
    ck_assert_uint_eq(d.calls, 1);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* CLIENT_RENEG_LIMIT per CLIENT_RENEG_WINDOW, on the connection's clock:
 * two in the window pass, a third fails the server with
 * ERR_TLS_SESSION_ATTACK; after the window they pass again. */
START_TEST(client_renegotiation_limit_per_window)
{
    dx_tls_ctx *cctx = client_ctx("TLSv1.2"), *sctx = server_ctx(CERT_EC, "TLSv1.2");
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    h_fake_now = 5000;
    ck_assert_int_eq(dx_tls_set_clock(p.s.t, h_fake_clock, NULL), 0);
    ck_assert_int_eq(dx_tls_set_client_renegotiation(p.s.t, true, 2, 1000), 0);
    ck_assert_int_eq(dx_tls_set_client_renegotiation(p.c.t, true, 2, 1000), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_client_renegotiation(p.s.t, true, 1001, 1000), DX_EINVAL);
    tp_start(&p);
    tp_run(&p, both_secure, 5000);
    done_log d = {0};
    /* at 5000, 5500: fine; at 6100 the one of 5000 left the window */
    const uint64_t at[] = {5000, 5500, 6100};
    for (int i = 0; i < 3; i++) {
        h_fake_now = at[i];
        ck_assert_int_eq(dx_tls_renegotiate(p.c.t, NULL, on_done, &d), 0);
        run_until_done(&p, &d, 5000);
        ck_assert_uint_eq(d.calls, 1);
        ck_assert_str_eq(d.name, "");
        d.calls = 0;
    }
    /* 6200: the third within [5200, 6200] */
    h_fake_now = 6200;
    ck_assert_int_eq(dx_tls_renegotiate(p.c.t, NULL, on_done, &d), 0);
    run_until_done(&p, &d, 5000);
    ck_assert_uint_eq(d.calls, 1);
    ck_assert_str_ne(d.name, "");
    ck_assert_uint_eq(p.s.rec.errors, 1);
    ck_assert_str_eq(p.s.rec.error_name, "ERR_TLS_SESSION_ATTACK");
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Node's disableRenegotiation(): the side that disabled it fails with
 * ERR_TLS_RENEGOTIATION_DISABLED when the peer tries; its own calls are
 * refused. i: 0 the client disabled, 1 the server (which allows client
 * renegotiation otherwise). */
START_TEST(disabled_renegotiation_fails_the_peer_attempt)
{
    dx_tls_ctx *cctx = client_ctx("TLSv1.2"), *sctx = server_ctx(CERT_EC, "TLSv1.2");
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_client_renegotiation(p.s.t, true, 0, 0), 0);
    tp_start(&p);
    tp_run(&p, both_secure, 5000);
    dx_tls *off = _i ? p.s.t : p.c.t, *other = _i ? p.c.t : p.s.t;
    h_rec *off_rec = _i ? &p.s.rec : &p.c.rec;
    ck_assert_int_eq(dx_tls_disable_renegotiation(off), 0);
    done_log d = {0}, mine = {0};
    ck_assert_int_eq(dx_tls_renegotiate(off, NULL, on_done, &mine), DX_ESTATE);
    ck_assert_int_eq(dx_tls_renegotiate(other, NULL, on_done, &d), 0);
    run_until_done(&p, &d, 5000);
    ck_assert_uint_eq(d.calls, 1);
    ck_assert_str_eq(d.name, "ERR_SSL_NO_RENEGOTIATION");
    ck_assert_uint_eq(off_rec->errors, 1);
    ck_assert_str_eq(off_rec->error_name, "ERR_TLS_RENEGOTIATION_DISABLED");
    ck_assert_uint_eq(mine.calls, 0);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* The callback comes exactly once, also when the connection goes first:
 * i 0 destroyed (ECANCELED), 1 the peer destroyed (the connection's
 * error), 2 destroyed from inside the callback's own call is safe. */
START_TEST(renegotiation_callback_when_the_connection_goes)
{
    dx_tls_ctx *cctx = client_ctx("TLSv1.2"), *sctx = server_ctx(CERT_EC, "TLSv1.2");
    tpair p;
    tp_connect(&p, H_PIPE, NULL, cctx, sctx);
    done_log d = {.destroy = _i == 2};
    /* Over pipes nothing moves until the loop runs: the HelloRequest waits
     * in the pipe. */
    ck_assert_int_eq(dx_tls_renegotiate(p.s.t, NULL, on_done, &d), 0);
    ck_assert_msg(d.calls == 0, "called: %s", d.name);
    if (_i == 1) {
        dx_tls_destroy(p.c.t); /* and its end of the pipes */
        p.c.t = NULL;
        p.ch.a = NULL;
        run_until_done(&p, &d, 5000);
        ck_assert_uint_eq(d.calls, 1);
        ck_assert_str_eq(d.name, p.s.rec.error_name);
        ck_assert_str_ne(d.name, "");
    } else {
        dx_tls_destroy(p.s.t);
        p.s.t = NULL;
        p.ch.b = NULL;
        ck_assert_uint_eq(d.calls, 1);
        ck_assert_str_eq(d.name, "ECANCELED");
    }
    tp_close(&p);
    ck_assert_uint_eq(d.calls, 1);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* A peer that never answers a renegotiation (RFC 5246 lets a client
 * ignore HelloRequest) or a certificate request: once the handshake
 * timeout passed, the connection fails with ERR_TLS_HANDSHAKE_TIMEOUT and
 * the callback gets it. Over pipes the peer answers nothing while the
 * loop does not run. i: 0 renegotiation (TLS 1.2), 1 post-handshake
 * authentication (TLS 1.3). */
START_TEST(unanswered_handshake_on_open_connection_times_out)
{
    const char *v = _i ? "TLSv1.3" : "TLSv1.2";
    dx_tls_ctx *cctx = client_ctx(v), *sctx = server_ctx(CERT_EC, v);
    tpair p;
    tp_open(&p, H_PIPE, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_servername(p.c.t, "localhost"), 0);
    ck_assert_int_eq(dx_tls_set_post_handshake_auth(p.c.t, true), 0);
    h_fake_now = 1000;
    ck_assert_int_eq(dx_tls_set_clock(p.s.t, h_fake_clock, NULL), 0);
    ck_assert_int_eq(dx_tls_set_handshake_timeout(p.s.t, 500), 0);
    tp_start(&p);
    tp_run(&p, both_secure, 5000);
    ck_assert_uint_eq(dx_tls_deadline(p.s.t), DX_TLS_NO_DEADLINE);
    done_log d = {0};
    if (_i)
        ck_assert_int_eq(dx_tls_request_client_cert(p.s.t, on_done, &d), 0);
    else
        ck_assert_int_eq(dx_tls_renegotiate(p.s.t, NULL, on_done, &d), 0);
    ck_assert_uint_eq(dx_tls_deadline(p.s.t), 1500);
    h_fake_now = 1499;
    dx_tls_check_timeouts(p.s.t);
    ck_assert_uint_eq(d.calls, 0);
    h_fake_now = 1500;
    dx_tls_check_timeouts(p.s.t);
    ck_assert_uint_eq(d.calls, 1);
    ck_assert_str_eq(d.name, "ERR_TLS_HANDSHAKE_TIMEOUT");
    ck_assert_str_eq(p.s.rec.error_name, "ERR_TLS_HANDSHAKE_TIMEOUT");
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Calls that cannot start a handshake say why and never call back. */
START_TEST(rehandshake_calls_out_of_state)
{
    dx_tls_ctx *cctx = client_ctx(versions[_i]), *sctx = server_ctx(CERT_EC, versions[_i]);
    tpair p;
    tp_open(&p, H_MEM, NULL, cctx, sctx, false);
    done_log d = {0};
    ck_assert_int_eq(dx_tls_renegotiate(NULL, NULL, on_done, &d), DX_EINVAL);
    ck_assert_int_eq(dx_tls_renegotiate(p.c.t, NULL, NULL, &d), DX_EINVAL);
    ck_assert_int_eq(dx_tls_renegotiate(p.c.t, NULL, on_done, &d), DX_ESTATE);
    ck_assert_int_eq(dx_tls_request_client_cert(p.c.t, on_done, &d), DX_EINVAL);
    ck_assert_int_eq(dx_tls_request_client_cert(p.s.t, on_done, &d), DX_ESTATE);
    ck_assert_int_eq(dx_tls_set_post_handshake_auth(p.s.t, true), DX_EINVAL);
    ck_assert_int_eq(dx_tls_disable_renegotiation(NULL), DX_EINVAL);
    ck_assert_int_eq(dx_tls_set_servername(p.c.t, "localhost"), 0);
    tp_start(&p);
    ck_assert_int_eq(dx_tls_set_post_handshake_auth(p.c.t, true), DX_ESTATE);
    ck_assert_int_eq(dx_tls_set_client_renegotiation(p.s.t, true, 0, 0), DX_ESTATE);
    tp_run(&p, both_secure, 5000);
    if (_i == 1) {
        ck_assert_int_eq(dx_tls_renegotiate(p.c.t, NULL, on_done, &d), DX_ENOTSUP);
        ck_assert_int_eq(dx_tls_renegotiate(p.s.t, NULL, on_done, &d), DX_ENOTSUP);
        /* The client did not offer post-handshake authentication. */
        ck_assert_int_eq(dx_tls_request_client_cert(p.s.t, on_done, &d), DX_ENOTSUP);
    } else {
        ck_assert_int_eq(dx_tls_request_client_cert(p.s.t, on_done, &d), DX_ENOTSUP);
    }
    dx_stream_end(dx_tls_upper(p.c.t));
    ck_assert_int_eq(dx_tls_renegotiate(p.c.t, NULL, on_done, &d), DX_ESTATE);
    tp_run(&p, both_closed, 5000);
    ck_assert_int_eq(dx_tls_renegotiate(p.s.t, NULL, on_done, &d), DX_ESTATE);
    ck_assert_uint_eq(d.calls, 0);
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* TLS 1.3 post-handshake authentication (beyond Node): i 0 a trusted
 * certificate comes; 1 none, refused; 2 none, allowed; 3 an untrusted
 * one, refused. Data flows across it. */
START_TEST(post_handshake_client_authentication)
{
    int mode = _i;
    int cert = mode == 0 ? CERT_CLIENT : mode == 3 ? CERT_UNTRUSTED : -1;
    ctx_opts co = {.cert = cert, .trust_ca = true, .min = "TLSv1.3", .max = "TLSv1.3"};
    dx_tls_ctx *cctx = make_ctx(&co), *sctx = server_ctx(CERT_EC, "TLSv1.3");
    tpair p;
    tp_open(&p, H_PIPE, NULL, cctx, sctx, false);
    ck_assert_int_eq(dx_tls_set_servername(p.c.t, "localhost"), 0);
    ck_assert_int_eq(dx_tls_set_post_handshake_auth(p.c.t, true), 0);
    ck_assert_int_eq(dx_tls_set_reject_unauthorized(p.s.t, mode != 2), 0);
    tp_start(&p);
    tp_run(&p, both_secure, 5000);
    ck_assert_ptr_null(dx_tls_peer_cert(p.s.t));
    done_log d = {0};
    ck_assert_int_eq(dx_tls_request_client_cert(p.s.t, on_done, &d), 0);
    ck_assert_int_eq(dx_tls_request_client_cert(p.s.t, on_done, &d), DX_ESTATE);
    if (mode == 0 || mode == 2)
        transfer_both(&p, 100000);
    run_until_done(&p, &d, 5000);
    ck_assert_uint_eq(d.calls, 1);
    switch (mode) {
    case 0:
        ck_assert_str_eq(d.name, "");
        ck_assert(dx_tls_authorized(p.s.t));
        ck_assert_str_eq(dx_tls_name_get(dx_tls_cert_subject(dx_tls_peer_cert(p.s.t)), "CN", 0),
                         "client");
        break;
    case 1:
        ck_assert_str_eq(d.name, p.s.rec.error_name);
        ck_assert_uint_eq(p.s.rec.errors, 1);
        h_run(&p.ch, client_failed, &p, 5000);
        ck_assert_str_eq(p.c.rec.error_name, "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED");
        break;
    case 2:
        ck_assert_str_eq(d.name, "");
        ck_assert(!dx_tls_authorized(p.s.t));
        ck_assert_str_eq(dx_tls_authorization_error(p.s.t), "UNABLE_TO_GET_ISSUER_CERT");
        break;
    default:
        ck_assert_str_eq(d.name, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
        ck_assert_str_eq(p.s.rec.error_name, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
        break;
    }
    tp_close(&p);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

Suite *tls_filter_suite(void)
{
    Suite *s = suite_create("tls_filter");
    TCase *tc = tcase_create("transfer");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, transfer_matrix_moves_data_byte_exact, 0, 12);
    suite_add_tcase(s, tc);
    tc = tcase_create("close");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_add_loop_test(tc, end_sends_close_notify_and_both_close_cleanly, 0, 2);
    tcase_add_loop_test(tc, end_from_data_during_peer_write_closes_both, 0, 2);
    tcase_add_loop_test(tc, close_notify_answer_survives_destroy_in_on_close, 0, 4);
    tcase_add_test(tc, half_open_server_writes_after_peer_end);
    tcase_add_loop_test(tc, transport_eof_without_close_notify_is_truncation, 0, 2);
    tcase_add_test(tc, transport_gone_before_handshake_is_econnreset);
    suite_add_tcase(s, tc);
    tc = tcase_create("verify");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_add_loop_test(tc, client_refuses_unverified_server_with_code, 0, 12);
    tcase_add_loop_test(tc, unverified_server_allowed_reports_why, 0, 6);
    tcase_add_loop_test(tc, user_identity_check_replaces_the_default, 0, 2);
    tcase_add_test(tc, identity_refusal_without_reason_refuses);
    tcase_add_loop_test(tc, server_requests_client_certificate, 0, 6);
    tcase_add_test(tc, version_mismatch_fails_both_sides);
    tcase_add_test(tc, server_chain_with_and_without_intermediate);
    tcase_add_test(tc, server_chain_under_an_untrusted_root);
    tcase_add_loop_test(tc, junk_instead_of_client_hello_fails_server, 0, 2);
    suite_add_tcase(s, tc);
    tc = tcase_create("events");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_add_loop_test(tc, session_event_resumes_next_connection, 0, 2);
    tcase_add_loop_test(tc, session_bytes_resume_many_connections, 0, 2);
    tcase_add_test(tc, keylog_lines_match_on_both_sides);
    tcase_add_test(tc, keylog_callback_only_when_asked);
    tcase_add_test(tc, trace_reports_handshake_messages);
    tcase_add_loop_test(tc, destroy_inside_secure_is_safe, 0, 2);
    tcase_add_test(tc, destroy_inside_data_is_safe);
    tcase_add_loop_test(tc, answer_from_data_goes_out_at_once, 0, 4);
    tcase_add_loop_test(tc, destroy_inside_answer_read_during_flush_is_safe, 0, 4);
    tcase_add_loop_test(tc, bad_record_read_during_flush_still_alerts_the_peer, 0, 2);
    tcase_add_loop_test(tc, read_ahead_in_the_context_holds_back_no_record, 0, 2);
    tcase_add_loop_test(tc, errors_left_by_the_application_do_not_fail_the_connection, 0, 2);
    suite_add_tcase(s, tc);
    tc = tcase_create("write");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, writes_before_handshake_are_sent_after, 0, 2);
    tcase_add_test(tc, small_writes_coalesce_into_records);
    tcase_add_test(tc, max_send_fragment_bounds_records);
    tcase_add_loop_test(tc, paused_reader_pushes_back_on_writer, 0, 2);
    tcase_add_test(tc, write_after_destroy_and_empty_writes);
    tcase_add_test(tc, release_buffers_shrinks_idle_connections);
    suite_add_tcase(s, tc);
    tc = tcase_create("time");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_add_test(tc, handshake_timeout_fires_from_driven_clock);
    tcase_add_test(tc, idle_timeout_fires_after_silence);
    tcase_add_test(tc, deadlines_only_while_open);
    tcase_add_test(tc, deadline_hook_follows_deadlines);
    tcase_add_loop_test(tc, deadline_hook_last_call_on_every_close, 0, 2);
    suite_add_tcase(s, tc);
    tc = tcase_create("shapes");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, prefix_bytes_read_before_attach_are_used);
    tcase_add_test(tc, secure_pair_shape_without_transport);
    tcase_add_test(tc, secure_pair_failure_reports_own_error);
    tcase_add_loop_test(tc, tls_inside_tls_moves_data_exactly, 0, 2);
    suite_add_tcase(s, tc);
    tc = tcase_create("protocol");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_add_loop_test(tc, cipher_choice_follows_the_preference, 0, 2);
    tcase_add_test(tc, no_shared_cipher_fails_both);
    tcase_add_loop_test(tc, groups_decide_the_ephemeral_key, 0, 5);
    tcase_add_loop_test(tc, sigalgs_shared_or_refused, 0, 2);
    tcase_add_test(tc, keylog_tls12_client_random);
    tcase_add_test(tc, ticket_bytes_on_the_client);
    tcase_add_loop_test(tc, key_update_renews_keys, 0, 2);
    tcase_add_loop_test(tc, bad_record_mid_connection_fails_receiver, 0, 2);
    suite_add_tcase(s, tc);
    tc = tcase_create("pitfalls");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_add_test(tc, no_transport_io_before_start);
    tcase_add_test(tc, attach_to_ended_transport_is_seen);
    tcase_add_test(tc, servername_readable_in_error_callback);
    tcase_add_test(tc, destroy_with_transport_write_pending);
    tcase_add_test(tc, allocation_failures_end_cleanly);
    tcase_add_test(tc, transport_error_reaches_the_application);
    tcase_add_loop_test(tc, peer_destroy_reaches_the_other_side, 0, 2);
    suite_add_tcase(s, tc);
    tc = tcase_create("review");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, revoked_server_certificate_is_refused, 0, 2);
    tcase_add_loop_test(tc, small_dh_group_is_refused, 0, 3);
    tcase_add_test(tc, lower_reader_destroys_connection_in_data);
    tcase_add_loop_test(tc, identity_callback_destroying_upper_is_safe, 0, 2);
    tcase_add_test(tc, own_ssl_objects_on_a_context_are_left_alone);
    tcase_add_test(tc, destroy_during_attach_to_failed_transport);
    tcase_add_test(tc, large_single_write_is_not_stalled);
    tcase_add_test(tc, bytes_after_close_notify_are_dropped);
    tcase_add_loop_test(tc, secure_comes_before_data, 0, 2);
    tcase_add_test(tc, allowed_truncation_keeps_half_open_writes);
    tcase_add_test(tc, client_context_keeps_no_sessions);
    suite_add_tcase(s, tc);
    tc = tcase_create("introspection");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_add_loop_test(tc, introspection_after_handshake, 0, 2);
    tcase_add_test(tc, calls_out_of_order_are_refused);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, many_connections_created_and_destroyed);
    suite_add_tcase(s, tc);
    tc = tcase_create("rehandshake");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_add_loop_test(tc, renegotiation_from_either_side, 0, 2);
    tcase_add_loop_test(tc, renegotiation_asks_for_client_certificate, 0, 3);
    tcase_add_loop_test(tc, end_during_renegotiation_closes_cleanly, 0, 2);
    tcase_add_test(tc, client_renegotiation_refused_by_default);
    tcase_add_test(tc, client_renegotiation_limit_per_window);
    tcase_add_loop_test(tc, disabled_renegotiation_fails_the_peer_attempt, 0, 2);
    tcase_add_loop_test(tc, renegotiation_callback_when_the_connection_goes, 0, 3);
    tcase_add_loop_test(tc, rehandshake_calls_out_of_state, 0, 2);
    tcase_add_loop_test(tc, unanswered_handshake_on_open_connection_times_out, 0, 2);
    tcase_add_loop_test(tc, post_handshake_client_authentication, 0, 4);
    suite_add_tcase(s, tc);
    return s;
}
