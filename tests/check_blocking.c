/*
 * The blocking API (include/duplex/blocking.h): a client and a server,
 * each a dx_blocking, in two threads (or a forked process where a peer
 * must vanish) over a socketpair, a pipe pair and the callback transport
 * over an in-memory queue; and a client over callbacks that drive an
 * event-driven server in the same thread, for the paths that must be
 * deterministic (a clock driven by hand, allocation failures).
 *
 * Threads other than the test's own never call ck_assert: they record
 * what happened, and the test checks it after joining them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "harness.h"

/* ---- the test PKI, made once per test case (before Check forks) --------- */

enum { CERT_SERVER, CERT_UNTRUSTED, CERT_EXPIRED, CERT_CLIENT, CERT_COUNT };

static dx_pki_cert *ca, *ca2, *certs[CERT_COUNT];

static void make_pki(void)
{
    static const char *const dns[] = {"localhost", NULL};
    dx_pki_opts o = {.key_type = DX_PKI_EC_P256, .common_name = "Test CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &o, &ca, NULL));
    o.common_name = "Other CA";
    H_MUST(dx_pki_issue(NULL, &o, &ca2, NULL));
    dx_pki_opts leaf = {.common_name = "server", .dns_names = dns,
                        .ext_key_usage = DX_PKI_EKU_SERVER};
    H_MUST(dx_pki_issue(ca, &leaf, &certs[CERT_SERVER], NULL));
    H_MUST(dx_pki_issue(ca2, &leaf, &certs[CERT_UNTRUSTED], NULL));
    dx_pki_opts exp = leaf;
    exp.not_before = -7200;
    exp.not_after = -3600;
    H_MUST(dx_pki_issue(ca, &exp, &certs[CERT_EXPIRED], NULL));
    dx_pki_opts cli = {.common_name = "client", .ext_key_usage = DX_PKI_EKU_CLIENT};
    H_MUST(dx_pki_issue(ca, &cli, &certs[CERT_CLIENT], NULL));
}

static void free_pki(void)
{
    for (int i = 0; i < CERT_COUNT; i++)
        dx_pki_cert_free(certs[i]);
    dx_pki_cert_free(ca);
    dx_pki_cert_free(ca2);
    memset(certs, 0, sizeof(certs));
    ca = ca2 = NULL;
}

static const char *const versions[] = {"TLSv1.2", "TLSv1.3"};

/* A context trusting the test CA, presenting cert (-1: none), speaking
 * version only (NULL: any). */
static dx_tls_ctx *make_ctx(int cert, const char *version)
{
    dx_tls_config *cfg;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    const char *capem = dx_pki_cert_pem(ca);
    ck_assert_int_eq(dx_tls_config_add_ca(cfg, capem, strlen(capem)), 0);
    if (cert >= 0) {
        const char *c = dx_pki_cert_pem(certs[cert]), *k = dx_pki_key_pem(certs[cert]);
        ck_assert_int_eq(dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL), 0);
    }
    if (version) {
        ck_assert_int_eq(dx_tls_config_set_min_version(cfg, version), 0);
        ck_assert_int_eq(dx_tls_config_set_max_version(cfg, version), 0);
    }
    dx_tls_ctx *ctx;
    dx_error *err = NULL;
    int rc = dx_tls_ctx_new(cfg, &ctx, &err);
    ck_assert_msg(rc == 0, "ctx: %s", err ? dx_error_message(err) : "?");
    dx_tls_config_free(cfg);
    return ctx;
}

/* ---- a blocking queue: the callback transport between two threads ------ */

#define QCAP 65536

typedef struct queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t buf[QCAP];
    size_t head, len;
    bool closed; /* the writer ended: the reader gets 0 once it is empty */
} queue;

static queue *queue_new(void)
{
    queue *q = calloc(1, sizeof(*q));
    ck_assert_ptr_nonnull(q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    return q;
}

static void queue_free(queue *q)
{
    if (!q)
        return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

/* One end of a callback transport: the queue it reads and the one it
 * writes. */
typedef struct qend {
    queue *rq, *wq;
} qend;

static long q_read(void *arg, void *buf, size_t len)
{
    queue *q = ((qend *)arg)->rq;
    pthread_mutex_lock(&q->mu);
    while (!q->len && !q->closed)
        pthread_cond_wait(&q->cv, &q->mu);
    size_t n = q->len < len ? q->len : len;
    for (size_t i = 0; i < n; i++)
        ((uint8_t *)buf)[i] = q->buf[(q->head + i) % QCAP];
    q->head = (q->head + n) % QCAP;
    q->len -= n;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return (long)n;
}

static long q_write(void *arg, const void *buf, size_t len)
{
    queue *q = ((qend *)arg)->wq;
    pthread_mutex_lock(&q->mu);
    while (q->len == QCAP)
        pthread_cond_wait(&q->cv, &q->mu);
    size_t n = QCAP - q->len < len ? QCAP - q->len : len;
    for (size_t i = 0; i < n; i++)
        q->buf[(q->head + q->len + i) % QCAP] = ((const uint8_t *)buf)[i];
    q->len += n;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return (long)n;
}

static int q_shutdown(void *arg)
{
    queue *q = ((qend *)arg)->wq;
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static const dx_blocking_io queue_io = {q_read, q_write, q_shutdown};

/* ---- channels ------------------------------------------------------------- */

typedef enum { K_SOCKET, K_PIPE, K_QUEUE, K_KINDS } kind;

static const char *const kind_names[] = {"socketpair", "pipe pair", "callback queue"};

/* One end: fds, or queues. */
typedef struct ep {
    kind k;
    int rfd, wfd;
    qend q;
} ep;

typedef struct chan {
    ep c, s;
    queue *q[2];
} chan;

static void chan_open(chan *ch, kind k)
{
    memset(ch, 0, sizeof(*ch));
    ch->c.k = ch->s.k = k;
    if (k == K_SOCKET) {
        int sv[2];
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        ch->c.rfd = ch->c.wfd = sv[0];
        ch->s.rfd = ch->s.wfd = sv[1];
    } else if (k == K_PIPE) {
        int c2s[2], s2c[2];
        ck_assert_int_eq(pipe(c2s), 0);
        ck_assert_int_eq(pipe(s2c), 0);
        ch->c.rfd = s2c[0];
        ch->c.wfd = c2s[1];
        ch->s.rfd = c2s[0];
        ch->s.wfd = s2c[1];
    } else {
        ch->q[0] = queue_new();
        ch->q[1] = queue_new();
        ch->c.q = (qend){.rq = ch->q[1], .wq = ch->q[0]};
        ch->s.q = (qend){.rq = ch->q[0], .wq = ch->q[1]};
        ch->c.rfd = ch->c.wfd = ch->s.rfd = ch->s.wfd = -1;
    }
}

/* The fds are closed by dx_blocking_free() (DX_BLOCKING_CLOSE_FDS); the
 * queues here. */
static void chan_close(chan *ch)
{
    queue_free(ch->q[0]);
    queue_free(ch->q[1]);
}

/* ---- one side, run in a thread or in the test ------------------------------ */

typedef struct side side;
typedef int (*script_fn)(side *sd, dx_blocking *b);

struct side {
    /* set-up */
    const char *who;
    dx_tls_role role;
    dx_tls_ctx *ctx;
    ep e;
    uint64_t hs_timeout; /* 0: 30 s */
    size_t read_buffer;  /* 0: the default */
    bool pha;            /* client: offer post-handshake authentication */
    bool half_open;      /* dx_tls_set_allow_half_open() */
    script_fn script;
    size_t total;        /* bytes each way */
    uint64_t seed_out, seed_in;
    int mode;            /* what a script does differently */
    void *shared;        /* state shared with the other side */
    /* results */
    int rc;              /* 0, or the code of the step that failed */
    char step[64];       /* that step */
    char name[64], layer[32];
    char protocol[16];
    bool authorized, clean_end;
    uint8_t digest[32];
    uint64_t received;
    size_t max_pending;
    unsigned key_updates, done_calls;
    char done_name[64];
    long extra[8];       /* script-specific observations */
    pthread_t th;
};

/* A step failed: record it. Returns rc. */
static int failed_at(side *sd, dx_blocking *b, const char *step, long rc)
{
    const dx_error *e = dx_blocking_error(b);
    sd->rc = rc < 0 ? (int)rc : DX_EUNKNOWN;
    snprintf(sd->step, sizeof(sd->step), "%s", step);
    snprintf(sd->name, sizeof(sd->name), "%s", e ? dx_error_name(e) : "(no error object)");
    snprintf(sd->layer, sizeof(sd->layer), "%s", e ? dx_error_layer(e) : "");
    return sd->rc;
}

#define TRY(sd, b, what, call)                                                 \
    do {                                                                       \
        long r_ = (call);                                                      \
        if (r_ < 0)                                                            \
            return failed_at(sd, b, what, r_);                                 \
    } while (0)

/* A check inside a script: a failure is recorded as DX_EUNKNOWN. */
#define EXPECT(sd, b, what, cond)                                              \
    do {                                                                       \
        (void)(b);                                                             \
        if (!(cond)) {                                                         \
            (sd)->rc = DX_EUNKNOWN;                                            \
            snprintf((sd)->step, sizeof((sd)->step), "%s", what);            \
            return (sd)->rc;                                                   \
        }                                                                      \
    } while (0)

static void run_side(side *sd)
{
    dx_tls *t;
    dx_blocking *b = NULL;
    snprintf(sd->step, sizeof(sd->step), "set-up");
    sd->rc = dx_tls_new(sd->ctx, sd->role, &t);
    if (sd->rc != 0)
        return;
    if (sd->role == DX_TLS_CLIENT) {
        dx_tls_set_servername(t, "localhost");
        if (sd->pha)
            dx_tls_set_post_handshake_auth(t, true);
    }
    dx_tls_set_handshake_timeout(t, sd->hs_timeout ? sd->hs_timeout : 30000);
    dx_tls_set_allow_half_open(t, sd->half_open);
    if (sd->e.k == K_QUEUE)
        sd->rc = dx_blocking_new(t, &queue_io, &sd->e.q, &b);
    else
        sd->rc = dx_blocking_new_fd(t, sd->e.rfd, sd->e.wfd, DX_BLOCKING_CLOSE_FDS, &b);
    if (sd->rc != 0) {
        dx_tls_destroy(t);
        return;
    }
    if (sd->read_buffer)
        dx_blocking_set_read_buffer(b, sd->read_buffer);
    snprintf(sd->step, sizeof(sd->step), "script");
    sd->rc = sd->script(sd, b);
    if (sd->rc == 0)
        sd->step[0] = '\0';
    sd->clean_end = dx_tls_clean_end(t);
    dx_blocking_free(b);
}

static void *side_thread(void *arg)
{
    run_side(arg);
    return NULL;
}

static void start_side(side *sd) { ck_assert_int_eq(pthread_create(&sd->th, NULL, side_thread, sd), 0); }
static void join_side(side *sd) { ck_assert_int_eq(pthread_join(sd->th, NULL), 0); }
/* The server on a thread of its own, the client on this one. */
static void run_both(side *c, side *s)
{
    start_side(s);
    run_side(c);
    join_side(s);
}

#define ASSERT_OK(sd)                                                           \
    ck_assert_msg((sd)->rc == 0, "%s failed at %s: %s %s (%s)", (sd)->who, (sd)->step, \
                  dx_err_name((sd)->rc), (sd)->name, (sd)->layer)

/* ---- transfers ------------------------------------------------------------ */

/* Writes total bytes of h_gen(seed) in writes of many sizes, some larger
 * than the peer's read buffer and than a record. */
static int send_stream(side *sd, dx_blocking *b, uint64_t seed, size_t total)
{
    static const size_t sizes[] = {1, 100, 16384, 200000, 7, 65539, 3000};
    uint8_t *buf = malloc(200000);
    if (!buf)
        return failed_at(sd, b, "malloc", DX_ENOMEM);
    size_t off = 0, i = 0;
    while (off < total) {
        size_t n = sizes[i++ % 7];
        if (n > total - off)
            n = total - off;
        h_gen_fill(seed, off, buf, n);
        long r = dx_blocking_write(b, buf, n);
        if (r != (long)n) {
            free(buf);
            return failed_at(sd, b, "write", r < 0 ? r : DX_EUNKNOWN);
        }
        off += n;
    }
    free(buf);
    return 0;
}

/* Reads total bytes with reads of many sizes (most smaller than a
 * record) into a SHA-256. */
static int recv_stream(side *sd, dx_blocking *b, size_t total)
{
    static const size_t sizes[] = {7, 1000, 16384, 3, 50000, 1, 4096};
    uint8_t *buf = malloc(50000);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!buf || !md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        free(buf);
        EVP_MD_CTX_free(md);
        return failed_at(sd, b, "sha", DX_ENOMEM);
    }
    size_t i = 0;
    while (sd->received < total) {
        size_t n = sizes[i++ % 7];
        if (n > total - sd->received)
            n = total - sd->received;
        long r = dx_blocking_read(b, buf, n);
        if (r <= 0) {
            free(buf);
            EVP_MD_CTX_free(md);
            return failed_at(sd, b, r == 0 ? "read: early end" : "read", r < 0 ? r : DX_EUNKNOWN);
        }
        EVP_DigestUpdate(md, buf, (size_t)r);
        sd->received += (uint64_t)r;
        size_t pending = dx_blocking_pending(b);
        if (pending > sd->max_pending)
            sd->max_pending = pending;
    }
    EVP_DigestFinal_ex(md, sd->digest, NULL);
    EVP_MD_CTX_free(md);
    free(buf);
    return 0;
}

/* The SHA-256 of total bytes of h_gen(seed). */
static void expected_digest(uint64_t seed, size_t total, uint8_t out[32])
{
    uint8_t buf[65536];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ck_assert_ptr_nonnull(md);
    ck_assert(EVP_DigestInit_ex(md, EVP_sha256(), NULL));
    for (size_t off = 0; off < total; off += sizeof(buf)) {
        size_t n = total - off < sizeof(buf) ? total - off : sizeof(buf);
        h_gen_fill(seed, off, buf, n);
        EVP_DigestUpdate(md, buf, n);
    }
    EVP_DigestFinal_ex(md, out, NULL);
    EVP_MD_CTX_free(md);
}

static void note_handshake(side *sd, dx_blocking *b)
{
    dx_tls *t = dx_blocking_tls(b);
    const char *p = dx_tls_protocol(t);
    snprintf(sd->protocol, sizeof(sd->protocol), "%s", p ? p : "(null)");
    sd->authorized = dx_tls_authorized(t);
}

/* Client: handshake, send, receive, close; then the server's close_notify
 * gives read() 0. */
static int client_transfer(side *sd, dx_blocking *b)
{
    TRY(sd, b, "handshake", dx_blocking_handshake(b));
    note_handshake(sd, b);
    TRY(sd, b, "handshake again", dx_blocking_handshake(b));
    int rc = send_stream(sd, b, sd->seed_out, sd->total);
    if (rc)
        return rc;
    if ((rc = recv_stream(sd, b, sd->total)))
        return rc;
    TRY(sd, b, "close", dx_blocking_close(b, 0));
    uint8_t c;
    long r = dx_blocking_read(b, &c, 1);
    TRY(sd, b, "read the end", r);
    EXPECT(sd, b, "read the end gives 0", r == 0);
    EXPECT(sd, b, "read after the end gives 0", dx_blocking_read(b, &c, 1) == 0);
    return 0;
}

/* Server: receive, send back, read the client's close_notify (read() 0),
 * close. */
static int server_transfer(side *sd, dx_blocking *b)
{
    TRY(sd, b, "handshake", dx_blocking_handshake(b));
    note_handshake(sd, b);
    int rc = recv_stream(sd, b, sd->total);
    if (rc)
        return rc;
    if ((rc = send_stream(sd, b, sd->seed_out, sd->total)))
        return rc;
    uint8_t c;
    long r = dx_blocking_read(b, &c, 1);
    TRY(sd, b, "read the end", r);
    EXPECT(sd, b, "read the end gives 0", r == 0);
    TRY(sd, b, "close", dx_blocking_close(b, 0));
    return 0;
}

static void sides_init(side *c, side *s, const chan *ch, dx_tls_ctx *cctx, dx_tls_ctx *sctx)
{
    memset(c, 0, sizeof(*c));
    memset(s, 0, sizeof(*s));
    c->who = "client";
    c->role = DX_TLS_CLIENT;
    c->ctx = cctx;
    c->e = ch->c;
    s->who = "server";
    s->role = DX_TLS_SERVER;
    s->ctx = sctx;
    s->e = ch->s;
}

/* Handshakes in both versions and a byte-exact transfer of 2 MiB each way
 * over each transport: writes of many sizes (up to 200 KB, beyond the
 * reader's 8 KiB read buffer), reads smaller than records, read ahead
 * bounded by the read buffer plus one record; then close_notify both ways,
 * read() 0 on both sides, clean ends. */
START_TEST(handshake_and_transfer_both_ways)
{
    kind k = (kind)(_i % K_KINDS);
    const char *v = versions[_i / K_KINDS];
    size_t total = (size_t)2 << 20;
    dx_tls_ctx *cctx = make_ctx(-1, v), *sctx = make_ctx(CERT_SERVER, v);
    chan ch;
    chan_open(&ch, k);
    side c, s;
    sides_init(&c, &s, &ch, cctx, sctx);
    c.script = client_transfer;
    s.script = server_transfer;
    c.total = s.total = total;
    c.seed_out = 11;
    s.seed_out = 22;
    c.read_buffer = s.read_buffer = 8192;
    run_both(&c, &s);
    ASSERT_OK(&c);
    ASSERT_OK(&s);
    ck_assert_str_eq(c.protocol, v);
    ck_assert_str_eq(s.protocol, v);
    ck_assert_msg(c.authorized, "%s", kind_names[k]);
    uint8_t want[32];
    expected_digest(11, total, want);
    ck_assert_uint_eq(s.received, total);
    ck_assert_mem_eq(s.digest, want, 32);
    expected_digest(22, total, want);
    ck_assert_uint_eq(c.received, total);
    ck_assert_mem_eq(c.digest, want, 32);
    ck_assert_uint_le(c.max_pending, 8192 + 16384);
    ck_assert_uint_le(s.max_pending, 8192 + 16384);
    ck_assert(c.clean_end);
    ck_assert(s.clean_end);
    chan_close(&ch);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- closing ---------------------------------------------------------------- */

/* Client: handshake, "bye", close waiting for the server's close_notify;
 * then reads give 0 and writes ERR_STREAM_WRITE_AFTER_END. */
static int client_close_wait(side *sd, dx_blocking *b)
{
    TRY(sd, b, "write", dx_blocking_write(b, "bye", 3));
    TRY(sd, b, "close", dx_blocking_close(b, DX_BLOCKING_WAIT_PEER));
    uint8_t c;
    EXPECT(sd, b, "read after close gives 0", dx_blocking_read(b, &c, 1) == 0);
    TRY(sd, b, "close again", dx_blocking_close(b, DX_BLOCKING_WAIT_PEER));
    long r = dx_blocking_write(b, "x", 1);
    EXPECT(sd, b, "write after close", r == DX_EWRITEAFTEREND);
    snprintf(sd->name, sizeof(sd->name), "%s", dx_error_name(dx_blocking_error(b)));
    return 0;
}

/* Whether the transport under the side's connection reached its end
 * (the peer ended its write side) within 5 s: read on the fd itself, or
 * the queue's state. */
static long transport_ended(side *sd)
{
    int64_t until = h_now_ms() + 5000;
    while (sd->e.k == K_QUEUE && h_now_ms() < until) {
        queue *q = sd->e.q.rq;
        pthread_mutex_lock(&q->mu);
        bool closed = q->closed;
        pthread_mutex_unlock(&q->mu);
        if (closed)
            return 1;
        usleep(1000);
    }
    while (sd->e.k != K_QUEUE && h_now_ms() < until) {
        uint8_t buf[256];
        ssize_t n = read(sd->e.rfd, buf, sizeof(buf));
        if (n == 0)
            return 1;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return 0;
        if (n < 0)
            usleep(1000);
    }
    return 0;
}

/* Server: reads "bye" and the end (the client's close_notify), sees that
 * the transport then ended too, and finds writing refused. */
static int server_after_client_close(side *sd, dx_blocking *b)
{
    uint8_t buf[16];
    long r;
    size_t got = 0;
    while (got < 3) {
        r = dx_blocking_read(b, buf + got, sizeof(buf) - got);
        TRY(sd, b, "read", r);
        EXPECT(sd, b, "data before the end", r > 0);
        got += (size_t)r;
    }
    EXPECT(sd, b, "bye", memcmp(buf, "bye", 3) == 0);
    r = dx_blocking_read(b, buf, sizeof(buf));
    TRY(sd, b, "read the end", r);
    EXPECT(sd, b, "the end", r == 0);
    r = dx_blocking_write(b, "late", 4);
    EXPECT(sd, b, "write after the peer's end", r == DX_EWRITEAFTEREND);
    snprintf(sd->name, sizeof(sd->name), "%s", dx_error_name(dx_blocking_error(b)));
    sd->extra[0] = transport_ended(sd);
    TRY(sd, b, "close", dx_blocking_close(b, 0));
    return 0;
}

/* close(DX_BLOCKING_WAIT_PEER) returns once the peer's close_notify came;
 * after close_notify the transport's write side ends (shutdown on a
 * socket, the write end closed on a pipe, the shutdown callback); reads
 * after the end give 0, writes after it ERR_STREAM_WRITE_AFTER_END on both
 * sides (the server's side was ended by the client's close_notify, Node's
 * allowHalfOpen false). */
START_TEST(close_waits_for_the_peer_and_ends_writing)
{
    kind k = (kind)_i;
    dx_tls_ctx *cctx = make_ctx(-1, NULL), *sctx = make_ctx(CERT_SERVER, NULL);
    chan ch;
    chan_open(&ch, k);
    side c, s;
    sides_init(&c, &s, &ch, cctx, sctx);
    c.script = client_close_wait;
    s.script = server_after_client_close;
    run_both(&c, &s);
    ASSERT_OK(&c);
    ASSERT_OK(&s);
    ck_assert_str_eq(c.name, "ERR_STREAM_WRITE_AFTER_END");
    ck_assert_str_eq(s.name, "ERR_STREAM_WRITE_AFTER_END");
    ck_assert_msg(s.extra[0] == 1, "the client's write side did not end (%s)", kind_names[k]);
    ck_assert(c.clean_end && s.clean_end);
    chan_close(&ch);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- a gate between two threads ----------------------------------------------- */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
} gate;

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gate_wait(gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

/* ---- a peer that vanishes -------------------------------------------------- */

/* A child process that runs fn(arg), says so on a pipe and waits; a
 * thread of the test then kills it (SIGKILL from outside: no clean-up,
 * no exit handlers, no report from valgrind, as a crashed peer). The
 * thread works on its own copy of the pid, so that a test that fails
 * before reap() leaves nothing dangling, and the child dies with the
 * test process. */
typedef struct vanisher {
    pid_t pid;
    int ready;
    pthread_t th;
} vanisher;

static int vanish_fd = -1; /* in the child: where to say it is done */

static void vanish_now(void)
{
    ssize_t n = write(vanish_fd, "x", 1);
    (void)n;
    for (;;)
        pause();
}

static void *killer(void *arg)
{
    vanisher v = *(vanisher *)arg;
    free(arg);
    char c;
    ssize_t n = read(v.ready, &c, 1);
    (void)n;
    if (v.pid > 0)
        kill(v.pid, SIGKILL);
    return NULL;
}

static void spawn_vanishing(vanisher *v, void (*fn)(void *), void *arg)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t parent = getpid();
    v->pid = fork();
    ck_assert_int_ge(v->pid, 0);
    if (v->pid == 0) {
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126); /* the test died before prctl */
#endif
        close(p[0]);
        vanish_fd = p[1];
        fn(arg);
        vanish_now();
    }
    (void)parent;
    close(p[1]);
    v->ready = p[0];
    vanisher *copy = malloc(sizeof(*copy));
    ck_assert_ptr_nonnull(copy);
    *copy = *v;
    ck_assert_int_eq(pthread_create(&v->th, NULL, killer, copy), 0);
}

static void reap(vanisher *v)
{
    int status;
    ck_assert_int_eq(pthread_join(v->th, NULL), 0);
    close(v->ready);
    ck_assert_int_eq(waitpid(v->pid, &status, 0), v->pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* The peer reads the start of the ClientHello and dies. */
static void read_a_little(void *arg)
{
    int fd = *(int *)arg;
    uint8_t buf[16];
    ssize_t n = read(fd, buf, sizeof(buf));
    (void)n;
}

/* The peer completes the handshake, sends 1000 bytes (mode 3: reads the
 * client's close_notify, half-open) and dies without close_notify. */
static void serve_then_die(void *arg)
{
    side *sd = arg;
    run_side(sd);
}

static int server_send_then_vanish(side *sd, dx_blocking *b)
{
    uint8_t buf[1000];
    h_gen_fill(5, 0, buf, sizeof(buf));
    if (sd->mode == 3) {
        /* Half-open: the client's close_notify is read, none is sent. */
        long r = dx_blocking_read(b, buf, sizeof(buf));
        TRY(sd, b, "read the end", r);
    } else {
        TRY(sd, b, "write", dx_blocking_write(b, buf, sizeof(buf)));
    }
    vanish_now(); /* with the connection open */
    return 0;
}

/* A peer process that dies. i % 4: 0, before the handshake completed: the
 * client's handshake fails with ECONNRESET (the transport ended or was
 * reset: the socket had unread bytes); 1, after it: the data that came is
 * read, then the read fails with the truncation error; 2, the same with
 * truncation allowed: the read gives 0 and the end is not clean; 3, while
 * the client closes waiting for the peer: the truncation error. i / 4:
 * the version. */
START_TEST(vanished_peer_is_reset_or_truncation)
{
    int mode = _i % 4;
    const char *ver = versions[_i / 4];
    dx_tls_ctx *cctx = make_ctx(-1, ver), *sctx = make_ctx(CERT_SERVER, ver);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    dx_tls *t;
    dx_blocking *b;
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &t), 0);
    ck_assert_int_eq(dx_tls_set_servername(t, "localhost"), 0);
    ck_assert_int_eq(dx_tls_set_allow_truncation(t, mode == 2), 0);
    ck_assert_int_eq(dx_blocking_new_fd(t, sv[0], sv[0], DX_BLOCKING_CLOSE_FDS, &b), 0);
    vanisher v;
    side s = {.who = "server", .role = DX_TLS_SERVER, .ctx = sctx,
              .e = {.k = K_SOCKET, .rfd = sv[1], .wfd = sv[1]},
              .script = server_send_then_vanish, .mode = mode, .half_open = true};
    if (mode == 0)
        spawn_vanishing(&v, read_a_little, &sv[1]);
    else
        spawn_vanishing(&v, serve_then_die, &s);
    close(sv[1]);
    uint8_t buf[2000], want[1000];
    long r;
    switch (mode) {
    case 0:
        ck_assert_int_eq(dx_blocking_handshake(b), DX_ECONNRESET);
        ck_assert_str_eq(dx_error_name(dx_blocking_error(b)), "ECONNRESET");
        ck_assert_int_eq(dx_blocking_read(b, buf, 1), DX_ECONNRESET);
        break;
    case 1:
    case 2: {
        size_t got = 0;
        while (got < 1000 && (r = dx_blocking_read(b, buf + got, sizeof(buf) - got)) > 0)
            got += (size_t)r;
        ck_assert_uint_eq(got, 1000);
        h_gen_fill(5, 0, want, sizeof(want));
        ck_assert_mem_eq(buf, want, 1000);
        r = dx_blocking_read(b, buf, sizeof(buf));
        if (mode == 1) {
            ck_assert_int_eq(r, DX_ETLS);
            ck_assert_str_eq(dx_error_name(dx_blocking_error(b)),
                             "ERR_SSL_UNEXPECTED_EOF_WHILE_READING");
            ck_assert_str_eq(dx_error_layer(dx_blocking_error(b)), "tls");
            ck_assert_int_eq(dx_blocking_write(b, "x", 1), DX_ETLS);
        } else {
            ck_assert_int_eq(r, 0);
            ck_assert(!dx_tls_clean_end(dx_blocking_tls(b)));
            ck_assert_int_eq(dx_blocking_close(b, 0), 0);
        }
        break;
    }
    default:
        ck_assert_int_eq(dx_blocking_handshake(b), 0);
        ck_assert_int_eq(dx_blocking_close(b, DX_BLOCKING_WAIT_PEER), DX_ETLS);
        ck_assert_str_eq(dx_error_name(dx_blocking_error(b)),
                         "ERR_SSL_UNEXPECTED_EOF_WHILE_READING");
        break;
    }
    reap(&v);
    dx_blocking_free(b);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* The server sends close_notify and goes at once (its fds closed); the
 * client reads later: read() gives 0 although its own close_notify can no
 * longer be written (EPIPE, after the end: no failure), and close is
 * clean. */
static int server_close_and_go(side *sd, dx_blocking *b)
{
    TRY(sd, b, "handshake", dx_blocking_handshake(b));
    TRY(sd, b, "write", dx_blocking_write(b, "last", 4));
    TRY(sd, b, "close", dx_blocking_close(b, 0));
    return 0;
}

static int client_read_late(side *sd, dx_blocking *b)
{
    TRY(sd, b, "handshake", dx_blocking_handshake(b));
    gate_wait(sd->shared); /* the server is gone */
    char buf[16];
    long r = dx_blocking_read(b, buf, sizeof(buf));
    TRY(sd, b, "read", r);
    EXPECT(sd, b, "last", r == 4 && memcmp(buf, "last", 4) == 0);
    r = dx_blocking_read(b, buf, sizeof(buf));
    TRY(sd, b, "read the end", r);
    EXPECT(sd, b, "the end", r == 0);
    TRY(sd, b, "close", dx_blocking_close(b, DX_BLOCKING_WAIT_PEER));
    return 0;
}

START_TEST(peer_gone_after_close_notify_ends_cleanly)
{
    kind k = (kind)_i;
    dx_tls_ctx *cctx = make_ctx(-1, NULL), *sctx = make_ctx(CERT_SERVER, NULL);
    chan ch;
    chan_open(&ch, k);
    side c, s;
    sides_init(&c, &s, &ch, cctx, sctx);
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    c.shared = &g;
    c.script = client_read_late;
    s.script = server_close_and_go;
    start_side(&c);
    run_side(&s); /* frees the server: its fds close */
    gate_open(&g);
    join_side(&c);
    ASSERT_OK(&c);
    ASSERT_OK(&s);
    ck_assert(c.clean_end);
    chan_close(&ch);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- verification ------------------------------------------------------------ */

static int just_handshake(side *sd, dx_blocking *b)
{
    TRY(sd, b, "handshake", dx_blocking_handshake(b));
    note_handshake(sd, b);
    uint8_t c;
    TRY(sd, b, "read", dx_blocking_read(b, &c, 1));
    return 0;
}

/* A client refuses a server that fails verification: its handshake fails
 * with DX_ETLS and the verification code as name; the server hears the
 * alert. i: the server's certificate (untrusted, expired) x versions. */
START_TEST(verification_failure_has_its_code)
{
    static const struct {
        int cert;
        const char *code;
    } cases[] = {{CERT_UNTRUSTED, "UNABLE_TO_VERIFY_LEAF_SIGNATURE"},
                 {CERT_EXPIRED, "CERT_HAS_EXPIRED"}};
    int which = _i % 2;
    const char *v = versions[_i / 2];
    dx_tls_ctx *cctx = make_ctx(-1, v), *sctx = make_ctx(cases[which].cert, v);
    chan ch;
    chan_open(&ch, K_SOCKET);
    side c, s;
    sides_init(&c, &s, &ch, cctx, sctx);
    c.script = s.script = just_handshake;
    run_both(&c, &s);
    ck_assert_int_eq(c.rc, DX_ETLS);
    ck_assert_str_eq(c.step, "handshake");
    ck_assert_str_eq(c.name, cases[which].code);
    ck_assert_str_eq(c.layer, "tls");
    ck_assert_int_eq(s.rc, DX_ETLS);
    ck_assert_msg(strncmp(s.name, "ERR_SSL_", 8) == 0 && strstr(s.name, "ALERT"), "%s", s.name);
    chan_close(&ch);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- time ----------------------------------------------------------------------- */

/* The handshake timeout against a peer that never answers, over fds: the
 * call returns DX_ETIMEDOUT named ERR_TLS_HANDSHAKE_TIMEOUT after the
 * timeout (poll waited for the deadline), and so do later calls.
 * i 0: a client against a silent server; 1: a server whose client sends
 * nothing. */
START_TEST(handshake_timeout_against_a_silent_peer)
{
    dx_tls_ctx *ctx = _i == 0 ? make_ctx(-1, NULL) : make_ctx(CERT_SERVER, NULL);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    dx_tls *t;
    dx_blocking *b;
    ck_assert_int_eq(dx_tls_new(ctx, _i == 0 ? DX_TLS_CLIENT : DX_TLS_SERVER, &t), 0);
    ck_assert_int_eq(dx_tls_set_handshake_timeout(t, 300), 0);
    ck_assert_int_eq(dx_blocking_new_fd(t, sv[0], sv[0], 0, &b), 0);
    int64_t t0 = h_now_ms();
    ck_assert_int_eq(dx_blocking_handshake(b), DX_ETIMEDOUT);
    int64_t took = h_now_ms() - t0;
    ck_assert_int_ge(took, 300);
    ck_assert_int_lt(took, 20000);
    ck_assert_str_eq(dx_error_name(dx_blocking_error(b)), "ERR_TLS_HANDSHAKE_TIMEOUT");
    ck_assert_str_eq(dx_error_layer(dx_blocking_error(b)), "tls");
    uint8_t c;
    ck_assert_int_eq(dx_blocking_read(b, &c, 1), DX_ETIMEDOUT);
    ck_assert_int_eq(dx_blocking_write(b, "x", 1), DX_ETIMEDOUT);
    ck_assert_int_eq(dx_blocking_close(b, 0), DX_ETIMEDOUT);
    ck_assert_str_eq(dx_error_name(dx_blocking_error(b)), "ERR_TLS_HANDSHAKE_TIMEOUT");
    /* The client's ClientHello went; the write side was ended on failure. */
    if (_i == 0) {
        uint8_t buf[4096];
        ssize_t n = read(sv[1], buf, sizeof(buf));
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(buf[0], 0x16); /* a handshake record */
    }
    dx_blocking_free(b);
    /* Without DX_BLOCKING_CLOSE_FDS the fd stays open, in blocking mode
     * again. */
    ck_assert_int_eq(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
    close(sv[0]);
    close(sv[1]);
    dx_tls_ctx_unref(ctx);
}
END_TEST

/* Client with an idle timeout: a read with nothing coming returns
 * ETIMEDOUT and the connection stays usable. */
static int client_idle(side *sd, dx_blocking *b)
{
    TRY(sd, b, "handshake", dx_blocking_handshake(b));
    int64_t t0 = h_now_ms(); /* no later than the timer's start */
    dx_tls_set_idle_timeout(dx_blocking_tls(b), 200);
    uint8_t buf[16];
    long r = dx_blocking_read(b, buf, sizeof(buf));
    sd->extra[0] = r;
    sd->extra[1] = h_now_ms() - t0;
    snprintf(sd->name, sizeof(sd->name), "%s", dx_error_name(dx_blocking_error(b)));
    snprintf(sd->layer, sizeof(sd->layer), "%s", dx_error_layer(dx_blocking_error(b)));
    gate_open(sd->shared);
    r = dx_blocking_read(b, buf, sizeof(buf));
    TRY(sd, b, "read after the timeout", r);
    EXPECT(sd, b, "late data", r == 4 && memcmp(buf, "late", 4) == 0);
    dx_tls_set_idle_timeout(dx_blocking_tls(b), 0);
    TRY(sd, b, "close", dx_blocking_close(b, DX_BLOCKING_WAIT_PEER));
    return 0;
}

static int server_late(side *sd, dx_blocking *b)
{
    TRY(sd, b, "handshake", dx_blocking_handshake(b));
    gate_wait(sd->shared);
    TRY(sd, b, "write", dx_blocking_write(b, "late", 4));
    uint8_t c;
    long r = dx_blocking_read(b, &c, 1);
    TRY(sd, b, "read the end", r);
    EXPECT(sd, b, "the end", r == 0);
    return 0;
}

/* The idle timeout (dx_tls_set_idle_timeout) makes a waiting read return
 * DX_ETIMEDOUT ("ETIMEDOUT") after that long without traffic; the
 * connection stays open and the next read gets what comes. Over each
 * fd transport; the callback transport's case is
 * callback_deadlines_follow_the_given_clock. */
START_TEST(idle_timeout_returns_from_a_read)
{
    kind k = (kind)_i;
    dx_tls_ctx *cctx = make_ctx(-1, NULL), *sctx = make_ctx(CERT_SERVER, NULL);
    chan ch;
    chan_open(&ch, k);
    side c, s;
    sides_init(&c, &s, &ch, cctx, sctx);
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    c.shared = s.shared = &g;
    c.script = client_idle;
    s.script = server_late;
    run_both(&c, &s);
    ASSERT_OK(&c);
    ASSERT_OK(&s);
    ck_assert_int_eq(c.extra[0], DX_ETIMEDOUT);
    ck_assert_int_ge(c.extra[1], 200);
    ck_assert_str_eq(c.name, "ETIMEDOUT");
    ck_assert_str_eq(c.layer, "blocking");
    chan_close(&ch);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Client: with an idle timeout, a write the server does not read stalls
 * and fails the connection. */
static int client_stalled_write(side *sd, dx_blocking *b)
{
    TRY(sd, b, "handshake", dx_blocking_handshake(b));
    int64_t t0 = h_now_ms(); /* no later than the timer's start */
    dx_tls_set_idle_timeout(dx_blocking_tls(b), 200);
    size_t len = (size_t)8 << 20;
    uint8_t *buf = calloc(1, len);
    EXPECT(sd, b, "malloc", buf);
    long r = dx_blocking_write(b, buf, len);
    free(buf);
    sd->extra[0] = r;
    sd->extra[1] = h_now_ms() - t0;
    snprintf(sd->name, sizeof(sd->name), "%s", dx_error_name(dx_blocking_error(b)));
    snprintf(sd->layer, sizeof(sd->layer), "%s", dx_error_layer(dx_blocking_error(b)));
    uint8_t c;
    sd->extra[2] = dx_blocking_read(b, &c, 1); /* the failure is final */
    gate_open(sd->shared);
    return 0;
}

static int server_not_reading(side *sd, dx_blocking *b)
{
    TRY(sd, b, "handshake", dx_blocking_handshake(b));
    gate_wait(sd->shared);
    return 0;
}

/* A write that stalls for the idle timeout (the peer reads nothing) fails
 * the connection with DX_ETIMEDOUT; later calls return it too. */
START_TEST(idle_timeout_fails_a_stalled_write)
{
    kind k = (kind)_i;
    dx_tls_ctx *cctx = make_ctx(-1, NULL), *sctx = make_ctx(CERT_SERVER, NULL);
    chan ch;
    chan_open(&ch, k);
    side c, s;
    sides_init(&c, &s, &ch, cctx, sctx);
    gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    c.shared = s.shared = &g;
    c.script = client_stalled_write;
    s.script = server_not_reading;
    run_both(&c, &s);
    ASSERT_OK(&c);
    ASSERT_OK(&s);
    ck_assert_int_eq(c.extra[0], DX_ETIMEDOUT);
    ck_assert_int_ge(c.extra[1], 200);
    ck_assert_str_eq(c.name, "ETIMEDOUT");
    ck_assert_str_eq(c.layer, "blocking");
    ck_assert_int_eq(c.extra[2], DX_ETIMEDOUT);
    chan_close(&ch);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- handshakes on an open connection, through read ----------------------------- */

static void on_done(dx_tls *t, const dx_error *err, void *user)
{
    (void)t;
    side *sd = user;
    sd->done_calls++;
    snprintf(sd->done_name, sizeof(sd->done_name), "%s", err ? dx_error_name(err) : "");
}

static void count_key_updates(dx_tls *t, const char *text, void *user)
{
    (void)t;
    side *sd = user;
    for (const char *p = text; (p = strstr(p, "KeyUpdate")); p += 9)
        sd->key_updates++;
}

/* Sends msg and reads back its echo. */
static int round_trip(side *sd, dx_blocking *b, const char *msg)
{
    size_t n = strlen(msg), got = 0;
    char buf[64];
    TRY(sd, b, "write", dx_blocking_write(b, msg, n));
    while (got < n) {
        long r = dx_blocking_read(b, buf + got, n - got);
        TRY(sd, b, "read the echo", r);
        EXPECT(sd, b, "echo before the end", r > 0);
        got += (size_t)r;
    }
    EXPECT(sd, b, "echo", memcmp(buf, msg, n) == 0);
    return 0;
}

/* The server starts a handshake on the open connection (mode 0: TLS 1.2
 * renegotiation; 1: TLS 1.3 KeyUpdate asking the client to update too;
 * 2: TLS 1.3 post-handshake client authentication) between round trips;
 * the client only reads and echoes. */
static int server_rehandshake(side *sd, dx_blocking *b)
{
    dx_tls *t = dx_blocking_tls(b);
    dx_tls_events ev = {.on_trace = count_key_updates};
    dx_blocking_set_events(b, &ev, sd);
    int rc = round_trip(sd, b, "one");
    if (rc)
        return rc;
    if (sd->mode == 0)
        TRY(sd, b, "renegotiate", dx_tls_renegotiate(t, NULL, on_done, sd));
    else if (sd->mode == 1) {
        TRY(sd, b, "trace", dx_tls_set_trace(t, true));
        TRY(sd, b, "key update", dx_tls_key_update(t, true));
    } else
        TRY(sd, b, "request cert", dx_tls_request_client_cert(t, on_done, sd));
    if ((rc = round_trip(sd, b, "two")) || (rc = round_trip(sd, b, "three")))
        return rc;
    sd->authorized = dx_tls_authorized(t);
    TRY(sd, b, "close", dx_blocking_close(b, DX_BLOCKING_WAIT_PEER));
    return 0;
}

static int client_echo(side *sd, dx_blocking *b)
{
    if (sd->mode == 1) {
        dx_tls_events ev = {.on_trace = count_key_updates};
        dx_blocking_set_events(b, &ev, sd);
        TRY(sd, b, "handshake", dx_blocking_handshake(b));
        TRY(sd, b, "trace", dx_tls_set_trace(dx_blocking_tls(b), true));
    }
    char buf[64];
    for (;;) {
        long r = dx_blocking_read(b, buf, sizeof(buf));
        TRY(sd, b, "read", r);
        if (r == 0)
            break;
        TRY(sd, b, "echo", dx_blocking_write(b, buf, (size_t)r));
    }
    TRY(sd, b, "close", dx_blocking_close(b, 0));
    return 0;
}

/* Renegotiation, KeyUpdate and post-handshake authentication just work
 * through read() on the side that did not start them, over fds and over
 * callbacks. i: mode (3) x transport (socketpair, callback queue). */
START_TEST(handshakes_on_an_open_connection_work_through_read)
{
    int mode = _i % 3;
    kind k = _i / 3 ? K_QUEUE : K_SOCKET;
    const char *v = mode == 0 ? "TLSv1.2" : "TLSv1.3";
    dx_tls_ctx *cctx = make_ctx(mode == 2 ? CERT_CLIENT : -1, v);
    dx_tls_ctx *sctx = make_ctx(CERT_SERVER, v);
    chan ch;
    chan_open(&ch, k);
    side c, s;
    sides_init(&c, &s, &ch, cctx, sctx);
    c.script = client_echo;
    s.script = server_rehandshake;
    c.mode = s.mode = mode;
    c.pha = mode == 2;
    run_both(&c, &s);
    ASSERT_OK(&c);
    ASSERT_OK(&s);
    if (mode == 1) {
        ck_assert_uint_ge(s.key_updates, 2); /* sent, and the client's answer */
        ck_assert_uint_ge(c.key_updates, 2); /* read, and its own sent */
    } else {
        ck_assert_uint_eq(s.done_calls, 1);
        ck_assert_str_eq(s.done_name, "");
    }
    if (mode == 2)
        ck_assert(s.authorized);
    chan_close(&ch);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- reads and the read buffer ------------------------------------------------- */

static int server_one_record(side *sd, dx_blocking *b)
{
    uint8_t buf[10000];
    h_gen_fill(7, 0, buf, sizeof(buf));
    TRY(sd, b, "write", dx_blocking_write(b, buf, sizeof(buf)));
    uint8_t c;
    long r = dx_blocking_read(b, &c, 1);
    TRY(sd, b, "read the end", r);
    EXPECT(sd, b, "the end", r == 0);
    return 0;
}

static int client_small_reads(side *sd, dx_blocking *b)
{
    uint8_t buf[10000], want[10000];
    EXPECT(sd, b, "nothing pending before", dx_blocking_pending(b) == 0);
    long r = dx_blocking_read(b, buf, 10);
    TRY(sd, b, "first read", r);
    sd->extra[0] = r;
    sd->extra[1] = (long)dx_blocking_pending(b);
    size_t got = (size_t)r;
    while (got < sizeof(buf)) {
        r = dx_blocking_read(b, buf + got, 333);
        TRY(sd, b, "read", r);
        EXPECT(sd, b, "no early end", r > 0);
        got += (size_t)r;
    }
    h_gen_fill(7, 0, want, sizeof(want));
    EXPECT(sd, b, "the bytes", memcmp(buf, want, sizeof(buf)) == 0);
    TRY(sd, b, "close", dx_blocking_close(b, DX_BLOCKING_WAIT_PEER));
    return 0;
}

/* A read smaller than a record returns what fits; the rest of the record
 * waits (dx_blocking_pending) and the next reads return it without
 * waiting. */
START_TEST(small_reads_keep_the_rest_of_a_record)
{
    dx_tls_ctx *cctx = make_ctx(-1, NULL), *sctx = make_ctx(CERT_SERVER, NULL);
    chan ch;
    chan_open(&ch, K_PIPE);
    side c, s;
    sides_init(&c, &s, &ch, cctx, sctx);
    c.script = client_small_reads;
    s.script = server_one_record;
    run_both(&c, &s);
    ASSERT_OK(&c);
    ASSERT_OK(&s);
    ck_assert_int_eq(c.extra[0], 10);
    ck_assert_int_eq(c.extra[1], 9990);
    chan_close(&ch);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Both sides write at once (the client 1 MiB, the server 600 KB, more
 * than the transport holds) before reading: a write over fds reads ahead
 * what comes meanwhile, up to the read buffer (here 768 KiB on the
 * client, the default on the server), so the server's write completes
 * while the client writes, and the client's once the server reads. */
static int client_write_while_peer_writes(side *sd, dx_blocking *b)
{
    int rc = send_stream(sd, b, 31, (size_t)1 << 20);
    if (rc)
        return rc;
    sd->extra[0] = (long)dx_blocking_pending(b);
    if ((rc = recv_stream(sd, b, 600000)))
        return rc;
    TRY(sd, b, "close", dx_blocking_close(b, DX_BLOCKING_WAIT_PEER));
    return 0;
}

static int server_write_then_read(side *sd, dx_blocking *b)
{
    int rc = send_stream(sd, b, 32, 600000);
    if (rc)
        return rc;
    if ((rc = recv_stream(sd, b, (size_t)1 << 20)))
        return rc;
    uint8_t c;
    long r = dx_blocking_read(b, &c, 1);
    TRY(sd, b, "read the end", r);
    EXPECT(sd, b, "the end", r == 0);
    return 0;
}

START_TEST(writes_read_ahead_within_the_read_buffer)
{
    kind k = (kind)_i;
    dx_tls_ctx *cctx = make_ctx(-1, NULL), *sctx = make_ctx(CERT_SERVER, NULL);
    chan ch;
    chan_open(&ch, k);
    side c, s;
    sides_init(&c, &s, &ch, cctx, sctx);
    c.script = client_write_while_peer_writes;
    s.script = server_write_then_read;
    c.read_buffer = 768 << 10;
    run_both(&c, &s);
    ASSERT_OK(&c);
    ASSERT_OK(&s);
    /* The client's write read the server's data ahead, no more than the
     * buffer and a record. */
    ck_assert_int_gt(c.extra[0], 0);
    ck_assert_int_le(c.extra[0], (768 << 10) + 16384);
    uint8_t want[32];
    expected_digest(32, 600000, want);
    ck_assert_mem_eq(c.digest, want, 32);
    expected_digest(31, (size_t)1 << 20, want);
    ck_assert_mem_eq(s.digest, want, 32);
    chan_close(&ch);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* The client writes 2 MiB with a 4 KiB read buffer while the server
 * writes 300 KB before reading: the client's write reads ahead no more
 * than its buffer and a record, so both block (the documented deadlock of
 * two writers) until the client's idle timeout fails its write. */
static int client_bounded_write(side *sd, dx_blocking *b)
{
    TRY(sd, b, "handshake", dx_blocking_handshake(b));
    dx_tls_set_idle_timeout(dx_blocking_tls(b), 500);
    int rc = send_stream(sd, b, 41, (size_t)2 << 20);
    sd->extra[0] = rc;
    sd->extra[1] = (long)dx_blocking_pending(b);
    return 0;
}

static int server_write_first(side *sd, dx_blocking *b)
{
    dx_tls_set_idle_timeout(dx_blocking_tls(b), 10000);
    long r = send_stream(sd, b, 42, 300000);
    sd->extra[0] = r;
    sd->rc = 0;
    return 0;
}

START_TEST(read_ahead_stops_at_the_read_buffer)
{
    kind k = (kind)_i;
    dx_tls_ctx *cctx = make_ctx(-1, NULL), *sctx = make_ctx(CERT_SERVER, NULL);
    chan ch;
    chan_open(&ch, k);
    side c, s;
    sides_init(&c, &s, &ch, cctx, sctx);
    c.script = client_bounded_write;
    s.script = server_write_first;
    c.read_buffer = 4096;
    run_both(&c, &s);
    ASSERT_OK(&c);
    ck_assert_int_eq(c.extra[0], DX_ETIMEDOUT);
    ck_assert_int_gt(c.extra[1], 0);
    ck_assert_int_le(c.extra[1], 4096 + 16384);
    /* The server's write failed once the client gave up. */
    ck_assert_int_lt(s.extra[0], 0);
    chan_close(&ch);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- an event-driven server in the same thread, behind callbacks ---------------- */

/* The client's callbacks drive a server dx_tls (SecurePair shape) that
 * echoes: what the client writes is written to the server's lower
 * stream, what that stream delivers is queued for the client's reads. A
 * read that finds nothing advances the hand-driven clock and returns
 * DX_EAGAIN, as a serial port's read timeout would. */
typedef struct inproc {
    dx_tls *s;
    uint8_t *buf;
    size_t len, cap, off;
    bool s_closed;  /* the server delivers no more */
    uint64_t now;   /* the clock of both sides, in ms */
    unsigned step;  /* ms a read that found nothing advances it */
    unsigned waits; /* such reads */
    bool refuse;    /* the transport fails writes with DX_EIO */
} inproc;

static uint64_t ip_clock(void *arg) { return ((inproc *)arg)->now; }

static void ip_lower_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    (void)s;
    inproc *ip = user;
    if (ip->cap - ip->len < len) {
        size_t cap = ip->cap ? ip->cap : 4096;
        while (cap - ip->len < len)
            cap *= 2;
        uint8_t *p = realloc(ip->buf, cap);
        if (!p)
            return;
        ip->buf = p;
        ip->cap = cap;
    }
    memcpy(ip->buf + ip->len, data, len);
    ip->len += len;
}

static void ip_lower_gone(dx_stream *s, void *user)
{
    (void)s;
    ((inproc *)user)->s_closed = true;
}

static void ip_lower_error(dx_stream *s, const dx_error *e, void *user)
{
    (void)s, (void)e;
    ((inproc *)user)->s_closed = true;
}

static void ip_upper_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    (void)user;
    dx_stream_write(s, data, len); /* echo */
}

static const dx_stream_events ip_lower_events = {
    .on_data = ip_lower_data, .on_end = ip_lower_gone, .on_close = ip_lower_gone,
    .on_error = ip_lower_error};
static const dx_stream_events ip_upper_events = {.on_data = ip_upper_data};

static long ip_read(void *arg, void *buf, size_t len)
{
    inproc *ip = arg;
    if (ip->off == ip->len) {
        if (ip->s_closed)
            return 0;
        ip->waits++;
        ip->now += ip->step;
        return DX_EAGAIN;
    }
    size_t n = ip->len - ip->off < len ? ip->len - ip->off : len;
    memcpy(buf, ip->buf + ip->off, n);
    ip->off += n;
    if (ip->off == ip->len)
        ip->off = ip->len = 0;
    return (long)n;
}

static long ip_write(void *arg, const void *buf, size_t len)
{
    inproc *ip = arg;
    if (ip->refuse)
        return DX_EIO;
    if (ip->s_closed)
        return DX_EPIPE;
    if (ip->s && dx_stream_write(dx_tls_lower(ip->s), buf, len) < 0)
        return DX_EPIPE;
    return (long)len;
}

static int ip_shutdown(void *arg)
{
    inproc *ip = arg;
    if (ip->s)
        dx_stream_end(dx_tls_lower(ip->s));
    return 0;
}

static const dx_blocking_io ip_io = {ip_read, ip_write, ip_shutdown};

/* Makes the server (started unless silent) and the client over it.
 * Returns 0 or the code of the step that failed (allocation failures). */
static int ip_open_with(inproc *ip, dx_tls_ctx *cctx, dx_tls_ctx *sctx, bool silent,
                        void (*setup_server)(dx_tls *s), dx_blocking **out)
{
    memset(ip, 0, sizeof(*ip));
    ip->step = 100;
    ip->now = 1000000;
    *out = NULL;
    int rc;
    if (!silent) {
        if ((rc = dx_tls_new(sctx, DX_TLS_SERVER, &ip->s)) != 0)
            return rc;
        dx_tls_set_clock(ip->s, ip_clock, ip);
        if (setup_server)
            setup_server(ip->s);
        dx_stream_set_events(dx_tls_lower(ip->s), &ip_lower_events, ip);
        dx_stream_set_events(dx_tls_upper(ip->s), &ip_upper_events, ip);
        if ((rc = dx_tls_start(ip->s)) != 0)
            return rc;
    }
    dx_tls *t;
    if ((rc = dx_tls_new(cctx, DX_TLS_CLIENT, &t)) != 0)
        return rc;
    dx_tls_set_servername(t, "localhost");
    if ((rc = dx_blocking_new(t, &ip_io, ip, out)) != 0) {
        dx_tls_destroy(t);
        return rc;
    }
    return dx_blocking_set_clock(*out, ip_clock, ip);
}

static int ip_open(inproc *ip, dx_tls_ctx *cctx, dx_tls_ctx *sctx, bool silent, dx_blocking **out)
{
    return ip_open_with(ip, cctx, sctx, silent, NULL, out);
}

static void ip_close(inproc *ip, dx_blocking *b)
{
    dx_blocking_free(b);
    dx_tls_destroy(ip->s);
    free(ip->buf);
}

/* The server staples fixed bytes (the client only asks, it does not
 * verify them). */
static const uint8_t staple[] = {0x30, 0x03, 0x0a, 0x01, 0x00};

static void staple_now(dx_tls *t, const dx_tls_cert *cert, const dx_tls_cert *issuer,
                       dx_tls_pending *p, void *user)
{
    (void)t, (void)cert, (void)issuer, (void)user;
    dx_tls_ocsp_done(p, staple, sizeof(staple), NULL);
}

static void stapling_server(dx_tls *s) { dx_tls_set_ocsp_callback(s, staple_now, NULL); }

static void got_staple(dx_tls *t, const uint8_t *resp, size_t len, void *u)
{
    (void)t;
    side *sd = u;
    sd->extra[0]++;
    sd->extra[1] = (long)len;
    sd->extra[2] = resp && len == sizeof(staple) && !memcmp(resp, staple, len);
}

/* Every TLS event the caller sets reaches it through the blocking object,
 * the OCSP response among them. */
START_TEST(events_reach_the_caller)
{
    dx_tls_ctx *cctx = make_ctx(-1, NULL), *sctx = make_ctx(CERT_SERVER, NULL);
    inproc ip;
    dx_blocking *b;
    ck_assert_int_eq(ip_open_with(&ip, cctx, sctx, false, stapling_server, &b), 0);
    ck_assert_int_eq(dx_tls_set_ocsp(dx_blocking_tls(b), DX_TLS_OCSP_REQUEST), 0);
    side sd = {0};
    dx_tls_events ev = {.on_ocsp_response = got_staple};
    ck_assert_int_eq(dx_blocking_set_events(b, &ev, &sd), 0);
    ck_assert_int_eq(dx_blocking_handshake(b), 0);
    ck_assert_int_eq(sd.extra[0], 1);
    ck_assert_int_eq(sd.extra[1], (long)sizeof(staple));
    ck_assert_int_eq(sd.extra[2], 1);
    ck_assert_int_eq(dx_blocking_close(b, 0), 0);
    ip_close(&ip, b);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Over callbacks, the deadlines are kept on the given clock each time the
 * read callback returns DX_EAGAIN: a handshake timeout against a silent
 * peer (i 0), an idle timeout in a read that then goes on (i 1). No real
 * time passes. */
START_TEST(callback_deadlines_follow_the_given_clock)
{
    dx_tls_ctx *cctx = make_ctx(-1, NULL), *sctx = make_ctx(CERT_SERVER, NULL);
    inproc ip;
    dx_blocking *b;
    ck_assert_int_eq(ip_open(&ip, cctx, sctx, _i == 0, &b), 0);
    dx_tls *t = dx_blocking_tls(b);
    uint8_t buf[16];
    if (_i == 0) {
        ck_assert_int_eq(dx_tls_set_handshake_timeout(t, 1000), 0);
        ck_assert_int_eq(dx_blocking_handshake(b), DX_ETIMEDOUT);
        ck_assert_str_eq(dx_error_name(dx_blocking_error(b)), "ERR_TLS_HANDSHAKE_TIMEOUT");
        ck_assert_uint_eq(ip.waits, 10); /* 10 x 100 ms */
    } else {
        ck_assert_int_eq(dx_blocking_handshake(b), 0);
        ck_assert_int_eq(dx_tls_set_idle_timeout(t, 500), 0);
        unsigned w0 = ip.waits;
        ck_assert_int_eq(dx_blocking_read(b, buf, sizeof(buf)), DX_ETIMEDOUT);
        ck_assert_str_eq(dx_error_name(dx_blocking_error(b)), "ETIMEDOUT");
        ck_assert_uint_eq(ip.waits - w0, 5);
        /* Still open: an echo comes back. */
        ck_assert_int_eq(dx_blocking_write(b, "ping", 4), 4);
        ck_assert_int_eq(dx_blocking_read(b, buf, sizeof(buf)), 4);
        ck_assert_mem_eq(buf, "ping", 4);
        ck_assert_int_eq(dx_blocking_close(b, DX_BLOCKING_WAIT_PEER), 0);
        ck_assert(dx_tls_clean_end(t));
    }
    ip_close(&ip, b);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* A write callback that fails fails the connection with its code, layer
 * "transport"; later calls report the same. */
START_TEST(callback_failure_is_reported)
{
    dx_tls_ctx *cctx = make_ctx(-1, NULL), *sctx = make_ctx(CERT_SERVER, NULL);
    inproc ip;
    dx_blocking *b;
    ck_assert_int_eq(ip_open(&ip, cctx, sctx, false, &b), 0);
    ck_assert_int_eq(dx_blocking_handshake(b), 0);
    ip.refuse = true;
    ck_assert_int_eq(dx_blocking_write(b, "x", 1), DX_EIO);
    const dx_error *e = dx_blocking_error(b);
    ck_assert_str_eq(dx_error_name(e), "EIO");
    ck_assert_str_eq(dx_error_layer(e), "transport");
    uint8_t c;
    ck_assert_int_eq(dx_blocking_read(b, &c, 1), DX_EIO);
    ck_assert_int_eq(dx_blocking_close(b, 0), DX_EIO);
    ip_close(&ip, b);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* A write that cannot complete before the peer's handshake messages are
 * read (the client renegotiates, TLS 1.2) while the server's unread data
 * fills the read buffer fails the connection with DX_ENOBUFS instead of
 * waiting for ever or buffering without bound. */
START_TEST(write_needing_input_with_a_full_read_buffer_is_enobufs)
{
    dx_tls_ctx *cctx = make_ctx(-1, "TLSv1.2"), *sctx = make_ctx(CERT_SERVER, "TLSv1.2");
    inproc ip;
    dx_blocking *b;
    ck_assert_int_eq(ip_open(&ip, cctx, sctx, false, &b), 0);
    ck_assert_int_eq(dx_blocking_handshake(b), 0);
    ck_assert_int_eq(dx_blocking_set_read_buffer(b, 1000), 0);
    /* 64 KB the client does not read, then the client renegotiates: the
     * server's answer comes after the data. */
    uint8_t data[65536];
    memset(data, 'd', sizeof(data));
    ck_assert_int_ge(dx_stream_write(dx_tls_upper(ip.s), data, sizeof(data)), 0);
    side sd = {0};
    ck_assert_int_eq(dx_tls_renegotiate(dx_blocking_tls(b), NULL, on_done, &sd), 0);
    ck_assert_int_eq(dx_blocking_write(b, "x", 1), DX_ENOBUFS);
    ck_assert_str_eq(dx_error_name(dx_blocking_error(b)), "ENOBUFS");
    ck_assert_str_eq(dx_error_layer(dx_blocking_error(b)), "blocking");
    ck_assert_uint_le(dx_blocking_pending(b), 1000 + 16384);
    ck_assert_uint_eq(sd.done_calls, 1); /* the renegotiation failed with it */
    ck_assert_str_eq(sd.done_name, "ENOBUFS");
    ip_close(&ip, b);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Read-ahead takes memory only while it holds cleartext. The server
 * sends data, the client (read buffer 64 KiB) reads it 1000 bytes at a
 * time. i 0 and 1 (TLS 1.2, 1.3): 1 MiB, and the client's first read of
 * 1 byte leaves most of a record waiting, and so does each read from the
 * transport after it. i 2 (TLS 1.2): 60000 bytes, then the client
 * renegotiates and writes, which reads all of them ahead to reach the
 * server's answer. The library's memory grows by what waits, stays within
 * the read buffer and the chunks of the queues on the way, and is back
 * where it was once everything was read. */
static void renegotiating_server(dx_tls *s) { dx_tls_set_client_renegotiation(s, true, 0, 0); }

START_TEST(read_ahead_memory_is_released_once_drained)
{
    bool reneg = _i == 2;
    const char *v = versions[_i & 1];
    dx_tls_ctx *cctx = make_ctx(-1, v), *sctx = make_ctx(CERT_SERVER, v);
    inproc ip;
    dx_blocking *b;
    ck_assert_int_eq(ip_open_with(&ip, cctx, sctx, false, reneg ? renegotiating_server : NULL, &b),
                     0);
    ck_assert_int_eq(dx_blocking_set_read_buffer(b, 65536), 0);
    uint8_t buf[1000];
    /* Settled: the handshake and its tickets are done on both sides, and
     * so is a first renegotiation (the server keeps its times). */
    side sd = {0};
    ck_assert_int_eq(dx_blocking_handshake(b), 0);
    if (reneg)
        ck_assert_int_eq(dx_tls_renegotiate(dx_blocking_tls(b), NULL, on_done, &sd), 0);
    ck_assert_int_eq(dx_blocking_write(b, "ping", 4), 4);
    ck_assert_int_eq(dx_blocking_read(b, buf, sizeof(buf)), 4);
    size_t total = reneg ? 60000 : (size_t)1 << 20;
    uint8_t *data = malloc(total + 1), *got = malloc(total + 1);
    ck_assert_ptr_nonnull(data);
    ck_assert_ptr_nonnull(got);
    h_gen_fill(51, 0, data, total);
    size_t live0 = h_alloc_live();
    ck_assert_int_ge(dx_stream_write(dx_tls_upper(ip.s), data, total), 0);
    ck_assert_uint_eq(dx_stream_write_buffered(dx_tls_upper(ip.s)), 0);
    ck_assert_uint_eq(h_alloc_live(), live0); /* all of it went to ip.buf */
    h_alloc_reset_peak();
    size_t n = 0;
    if (reneg) {
        ck_assert_int_eq(dx_tls_renegotiate(dx_blocking_tls(b), NULL, on_done, &sd), 0);
        ck_assert_int_eq(dx_blocking_write(b, "x", 1), 1);
        ck_assert_uint_eq(sd.done_calls, 2);
        ck_assert_str_eq(sd.done_name, "");
        ck_assert_uint_eq(dx_blocking_pending(b), total);
        data[total++] = 'x'; /* its echo follows */
    } else {
        ck_assert_int_eq(dx_blocking_read(b, got, 1), 1);
        n = 1;
        ck_assert_uint_gt(dx_blocking_pending(b), 0);
    }
    ck_assert_uint_ge(h_alloc_live() - live0, dx_blocking_pending(b));
    size_t most = 0;
    while (n < total) {
        size_t want = total - n < sizeof(buf) ? total - n : sizeof(buf);
        long r = dx_blocking_read(b, got + n, want);
        ck_assert_int_gt(r, 0);
        n += (size_t)r;
        if (dx_blocking_pending(b) > most)
            most = dx_blocking_pending(b);
    }
    ck_assert_mem_eq(got, data, total);
    ck_assert_uint_le(most, 65536 + 16384);
    /* What waits, within the read buffer, and the queues' chunks on the
     * way (transport input, records, handshake messages: 16 KiB each). */
    ck_assert_uint_le(h_alloc_peak() - live0, 65536 + 6 * 16384);
    ck_assert_uint_eq(dx_blocking_pending(b), 0);
    ck_assert_uint_eq(h_alloc_live(), live0);
    free(data);
    free(got);
    ck_assert_int_eq(dx_blocking_close(b, 0), 0);
    ip_close(&ip, b);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* Every allocation of the library failing in turn: each call either
 * succeeds or returns a code with an error object; nothing leaks. */
START_TEST(allocation_failures_fail_calls_cleanly)
{
    dx_tls_ctx *cctx = make_ctx(-1, NULL), *sctx = make_ctx(CERT_SERVER, NULL);
    bool completed = false;
    for (long n = 0; !completed; n++) {
        ck_assert_int_lt(n, 20000);
        size_t live0 = h_alloc_live();
        inproc ip;
        dx_blocking *b = NULL;
        h_alloc_fail_from(n);
        int rc = ip_open(&ip, cctx, sctx, false, &b);
        if (rc == 0) {
            uint8_t buf[8];
            dx_tls_set_idle_timeout(dx_blocking_tls(b), 5000);
            long r = dx_blocking_write(b, "hello", 5);
            if (r == 5)
                r = dx_blocking_read(b, buf, sizeof(buf));
            if (r > 0)
                r = dx_blocking_close(b, DX_BLOCKING_WAIT_PEER);
            ck_assert_msg(r >= 0 || dx_blocking_error(b), "no error object at %ld", n);
            completed = r == 0 && h_alloc_count() <= n; /* nothing refused */
        }
        h_alloc_fail_from(-1);
        ip_close(&ip, b);
        ck_assert_uint_eq(h_alloc_live(), live0);
    }
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* ---- contract details -------------------------------------------------------- */

static void call_from_event(dx_tls *t, void *user)
{
    (void)t;
    side *sd = user;
    dx_blocking *b = sd->shared;
    sd->extra[0] = dx_blocking_write(b, "x", 1);
    sd->extra[1] = dx_blocking_handshake(b);
}

/* Arguments and states a caller gets wrong are refused with DX_EINVAL or
 * DX_ESTATE and an error object; calls from inside an event are refused;
 * a connection that already has a consumer is not taken over. */
START_TEST(misuse_is_refused)
{
    dx_tls_ctx *cctx = make_ctx(-1, NULL), *sctx = make_ctx(CERT_SERVER, NULL);
    dx_tls *t;
    dx_blocking *b;
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &t), 0);
    ck_assert_int_eq(dx_blocking_new(t, &ip_io, NULL, NULL), DX_EINVAL);
    ck_assert_int_eq(dx_blocking_new(NULL, &ip_io, NULL, &b), DX_EINVAL);
    ck_assert_ptr_null(b);
    dx_blocking_io half = {ip_read, NULL, NULL};
    ck_assert_int_eq(dx_blocking_new(t, &half, NULL, &b), DX_EINVAL);
    ck_assert_int_eq(dx_blocking_new_fd(t, -1, 1, 0, &b), DX_EINVAL);
    ck_assert_int_eq(dx_blocking_new_fd(t, 0, 1, 0x80, &b), DX_EINVAL);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    close(p[1]);
    ck_assert_int_eq(dx_blocking_new_fd(t, p[0], p[1], 0, &b), DX_EBADF);
    ck_assert_int_eq(fcntl(p[0], F_GETFL) & O_NONBLOCK, 0); /* left as it was */
    close(p[0]);
    /* A connection whose stream has a consumer is not taken over. */
    dx_stream_events none = {0};
    int marker;
    ck_assert_int_eq(dx_stream_set_events(dx_tls_upper(t), &none, &marker), 0);
    ck_assert_int_eq(dx_blocking_new(t, &ip_io, NULL, &b), DX_EINVAL);
    dx_tls_destroy(t);

    inproc ip;
    ck_assert_int_eq(ip_open(&ip, cctx, sctx, false, &b), 0);
    ck_assert_ptr_null(dx_blocking_error(b));
    uint8_t c;
    ck_assert_int_eq(dx_blocking_read(b, NULL, 1), DX_EINVAL);
    ck_assert_str_eq(dx_error_name(dx_blocking_error(b)), "EINVAL");
    ck_assert_int_eq(dx_blocking_read(b, &c, 0), DX_EINVAL);
    ck_assert_int_eq(dx_blocking_write(b, NULL, 1), DX_EINVAL);
    ck_assert_int_eq(dx_blocking_close(b, 0x80), DX_EINVAL);
    ck_assert_int_eq(dx_blocking_set_read_buffer(b, 0), DX_EINVAL);
    ck_assert_int_eq(dx_blocking_set_read_buffer(b, ((size_t)16 << 20) + 1), DX_EINVAL);
    ck_assert_int_eq(dx_blocking_set_read_buffer(b, 1), 0);
    side sd = {.shared = b};
    dx_tls_events ev = {.on_secure = call_from_event};
    ck_assert_int_eq(dx_blocking_set_events(b, &ev, &sd), 0);
    ck_assert_int_eq(dx_blocking_write(b, NULL, 0), 0); /* the handshake only */
    ck_assert_int_eq(sd.extra[0], DX_ESTATE);
    ck_assert_int_eq(sd.extra[1], DX_ESTATE);
    ck_assert_int_eq(dx_blocking_set_events(b, NULL, NULL), 0);
    /* The connection is fine after them. */
    ck_assert_int_eq(dx_blocking_write(b, "abc", 3), 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(dx_blocking_read(b, &c, 1), 1);
        ck_assert_int_eq(c, "abc"[i]);
    }
    ck_assert_int_eq(dx_blocking_close(b, DX_BLOCKING_WAIT_PEER), 0);
    ip_close(&ip, b);

    ck_assert_int_eq(dx_blocking_handshake(NULL), DX_EINVAL);
    ck_assert_int_eq(dx_blocking_read(NULL, &c, 1), DX_EINVAL);
    ck_assert_int_eq(dx_blocking_write(NULL, &c, 1), DX_EINVAL);
    ck_assert_int_eq(dx_blocking_close(NULL, 0), DX_EINVAL);
    ck_assert_ptr_null(dx_blocking_error(NULL));
    ck_assert_ptr_null(dx_blocking_tls(NULL));
    ck_assert_uint_eq(dx_blocking_pending(NULL), 0);
    dx_blocking_free(NULL);
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
}
END_TEST

/* A close before the handshake sends nothing, gives the connection up
 * (later calls: ECANCELED) and ends the transport's write side; a second
 * close returns 0. A connection started before it was handed over is
 * refused at the handshake. */
START_TEST(close_before_the_handshake_gives_up)
{
    dx_tls_ctx *cctx = make_ctx(-1, NULL);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    dx_tls *t;
    dx_blocking *b;
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &t), 0);
    ck_assert_int_eq(dx_blocking_new_fd(t, sv[0], sv[0], DX_BLOCKING_CLOSE_FDS, &b), 0);
    ck_assert_int_eq(dx_blocking_close(b, 0), 0);
    ck_assert_int_eq(dx_blocking_close(b, DX_BLOCKING_WAIT_PEER), 0);
    uint8_t c;
    ck_assert_int_eq(dx_blocking_read(b, &c, 1), DX_ECANCELED);
    ck_assert_str_eq(dx_error_name(dx_blocking_error(b)), "ECANCELED");
    ck_assert_int_eq(dx_blocking_handshake(b), DX_ECANCELED);
    ck_assert_int_eq(read(sv[1], &c, 1), 0); /* nothing sent, write side ended */
    dx_blocking_free(b);
    close(sv[1]);

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &t), 0);
    ck_assert_int_eq(dx_tls_start(t), 0);
    ck_assert_int_eq(dx_blocking_new_fd(t, sv[0], sv[0], DX_BLOCKING_CLOSE_FDS, &b), 0);
    ck_assert_int_eq(dx_blocking_handshake(b), DX_ESTATE);
    ck_assert_str_eq(dx_error_layer(dx_blocking_error(b)), "blocking");
    dx_blocking_free(b);
    close(sv[1]);
    dx_tls_ctx_unref(cctx);
}
END_TEST

/* A write to a pipe whose reader is gone fails with EPIPE (layer "fd",
 * errno in the error) without raising SIGPIPE, whose default action
 * would end the process. */
START_TEST(write_to_a_closed_pipe_is_epipe_without_sigpipe)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL}, saved;
    sigemptyset(&dfl.sa_mask);
    ck_assert_int_eq(sigaction(SIGPIPE, &dfl, &saved), 0);
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    ck_assert_int_eq(pthread_sigmask(SIG_UNBLOCK, &pipe_set, &old), 0);
    dx_tls_ctx *cctx = make_ctx(-1, NULL);
    int in[2], out[2];
    ck_assert_int_eq(pipe(in), 0);
    ck_assert_int_eq(pipe(out), 0);
    close(out[0]); /* nobody will read what the client writes */
    dx_tls *t;
    dx_blocking *b;
    ck_assert_int_eq(dx_tls_new(cctx, DX_TLS_CLIENT, &t), 0);
    ck_assert_int_eq(dx_blocking_new_fd(t, in[0], out[1], DX_BLOCKING_CLOSE_FDS, &b), 0);
    ck_assert_int_eq(dx_blocking_handshake(b), DX_EPIPE);
    const dx_error *e = dx_blocking_error(b);
    ck_assert_str_eq(dx_error_name(e), "EPIPE");
    ck_assert_str_eq(dx_error_layer(e), "fd");
    ck_assert_int_eq(dx_error_sys_errno(e), EPIPE);
    sigset_t pending;
    ck_assert_int_eq(sigpending(&pending), 0);
    ck_assert(!sigismember(&pending, SIGPIPE));
    dx_blocking_free(b);
    close(in[1]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    sigaction(SIGPIPE, &saved, NULL);
    dx_tls_ctx_unref(cctx);
}
END_TEST

Suite *blocking_suite(void)
{
    Suite *s = suite_create("blocking");
    TCase *tc = tcase_create("transfer");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, handshake_and_transfer_both_ways, 0, 2 * K_KINDS);
    tcase_add_loop_test(tc, writes_read_ahead_within_the_read_buffer, 0, 2);
    tcase_add_test(tc, small_reads_keep_the_rest_of_a_record);
    tcase_add_loop_test(tc, read_ahead_stops_at_the_read_buffer, 0, K_KINDS - 1);
    suite_add_tcase(s, tc);
    tc = tcase_create("close");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, close_waits_for_the_peer_and_ends_writing, 0, K_KINDS);
    tcase_add_loop_test(tc, vanished_peer_is_reset_or_truncation, 0, 8);
    tcase_add_loop_test(tc, peer_gone_after_close_notify_ends_cleanly, 0, 2);
    tcase_add_test(tc, close_before_the_handshake_gives_up);
    tcase_add_test(tc, write_to_a_closed_pipe_is_epipe_without_sigpipe);
    suite_add_tcase(s, tc);
    tc = tcase_create("verify");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_add_loop_test(tc, verification_failure_has_its_code, 0, 4);
    suite_add_tcase(s, tc);
    tc = tcase_create("time");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, handshake_timeout_against_a_silent_peer, 0, 2);
    tcase_add_loop_test(tc, idle_timeout_returns_from_a_read, 0, 2);
    tcase_add_loop_test(tc, idle_timeout_fails_a_stalled_write, 0, K_KINDS - 1);
    tcase_add_test(tc, events_reach_the_caller);
    tcase_add_loop_test(tc, callback_deadlines_follow_the_given_clock, 0, 2);
    suite_add_tcase(s, tc);
    tc = tcase_create("rehandshake");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, handshakes_on_an_open_connection_work_through_read, 0, 6);
    suite_add_tcase(s, tc);
    tc = tcase_create("contract");
    tcase_add_unchecked_fixture(tc, make_pki, free_pki);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, misuse_is_refused);
    tcase_add_test(tc, callback_failure_is_reported);
    tcase_add_test(tc, write_needing_input_with_a_full_read_buffer_is_enobufs);
    tcase_add_test(tc, allocation_failures_fail_calls_cleanly);
    tcase_add_loop_test(tc, read_ahead_memory_is_released_once_drained, 0, 3);
    suite_add_tcase(s, tc);
    return s;
}
