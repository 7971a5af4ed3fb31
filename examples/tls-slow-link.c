/*
 * tls-slow-link: TLS over a 9600-baud serial line that loses a bit, in
 * memory and in driven time.
 *
 *   client TLS -- fault -- delay 40 ms -- throttle 960 B/s -- pair -- server TLS
 *
 * The filters between the client and its transport make a memory pair
 * behave like a slow, noisy serial line: a throttle at DX_BAUD_8N1(9600)
 * bytes per second, 40 ms of latency each way, and a fault filter that
 * flips one bit where the program says. None of them arms a timer: the
 * program keeps one virtual clock, given to every filter and to both TLS
 * connections, and moves it to the next deadline any of them tells, so
 * seconds of line time pass in microseconds of real time, the same way on
 * every run.
 *
 * It prints how long the handshake took on the line and how many bytes
 * each way, sends a message, then flips one bit of the next record and
 * shows the server refusing it ("ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC")
 * without delivering a byte of it. It exits 0 only if all of that
 * happened.
 *
 * Build: cc tls-slow-link.c $(pkg-config --cflags --libs libduplex)
 */
#include <stdio.h>
#include <string.h>

#include <duplex/duplex.h>

/* ---- the virtual clock ------------------------------------------------------- */

static uint64_t now_ms;
static uint64_t virtual_clock(void *arg)
{
    (void)arg;
    return now_ms;
}

/* ---- what each side saw ------------------------------------------------------- */

struct side {
    bool secure;
    uint64_t secure_at;
    size_t received;
    char error[96];
};

static void on_secure(dx_tls *t, void *user)
{
    (void)t;
    struct side *sd = user;
    sd->secure = true;
    sd->secure_at = now_ms;
}

static void on_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    (void)s;
    (void)data;
    ((struct side *)user)->received += len;
}

static void on_error(dx_stream *s, const dx_error *err, void *user)
{
    (void)s;
    snprintf(((struct side *)user)->error, sizeof(((struct side *)user)->error), "%s",
             dx_error_name(err));
}

static const dx_tls_events tls_events = {.on_secure = on_secure};
static const dx_stream_events app_events = {.on_data = on_data, .on_error = on_error};

/* ---- the stack ------------------------------------------------------------------ */

struct stack {
    dx_tls *client, *server;
    dx_filter *fault, *delay, *line;
    struct side c, s;
};

static uint64_t earliest(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* Moves the clock from deadline to deadline until done() or nothing is
 * due. */
static void run(struct stack *k, bool (*done)(struct stack *))
{
    while (!done(k)) {
        uint64_t d = earliest(earliest(dx_filter_deadline(k->line), dx_filter_deadline(k->delay)),
                              earliest(dx_tls_deadline(k->client), dx_tls_deadline(k->server)));
        if (d == UINT64_MAX)
            return;
        if (d > now_ms)
            now_ms = d;
        dx_filter_check_timeouts(k->line);
        dx_filter_check_timeouts(k->delay);
        dx_tls_check_timeouts(k->client);
        dx_tls_check_timeouts(k->server);
    }
}

static bool handshake_done(struct stack *k)
{
    return (k->c.secure && k->s.secure) || k->c.error[0] || k->s.error[0];
}

static size_t want_received;
static bool message_arrived(struct stack *k)
{
    return k->s.received >= want_received || k->s.error[0];
}

static bool server_failed(struct stack *k) { return k->s.error[0] != '\0'; }

static dx_tls_ctx *make_ctx(const dx_pki_cert *ca, const dx_pki_cert *cert)
{
    dx_tls_config *cfg;
    dx_tls_ctx *ctx = NULL;
    if (dx_tls_config_new(&cfg) != 0)
        return NULL;
    const char *pem = dx_pki_cert_pem(ca);
    int rc = dx_tls_config_add_ca(cfg, pem, strlen(pem));
    if (rc == 0 && cert) {
        const char *c = dx_pki_cert_pem(cert), *key = dx_pki_key_pem(cert);
        rc = dx_tls_config_add_cert(cfg, c, strlen(c), key, strlen(key), NULL);
    }
    if (rc == 0)
        dx_tls_ctx_new(cfg, &ctx, NULL);
    dx_tls_config_free(cfg);
    return ctx;
}

/* Builds client TLS -- fault -- delay -- throttle -- pair -- server TLS. */
static int build(struct stack *k, dx_tls_ctx *cctx, dx_tls_ctx *sctx)
{
    dx_stream *a, *b;
    if (dx_tls_new(cctx, DX_TLS_CLIENT, &k->client) != 0 ||
        dx_tls_new(sctx, DX_TLS_SERVER, &k->server) != 0 ||
        dx_fault_new(2026, &k->fault) != 0 ||
        dx_delay_new(DX_FILTER_BOTH, 40, &k->delay) != 0 ||
        dx_throttle_new(DX_FILTER_BOTH, DX_BAUD_8N1(9600), &k->line) != 0 ||
        dx_pair_new(NULL, &a, &b) != 0)
        return -1;
    dx_tls_set_servername(k->client, "localhost");
    dx_tls_set_events(k->client, &tls_events, &k->c);
    dx_tls_set_events(k->server, &tls_events, &k->s);
    dx_stream_set_events(dx_tls_upper(k->client), &app_events, &k->c);
    dx_stream_set_events(dx_tls_upper(k->server), &app_events, &k->s);
    /* One clock for all. */
    dx_tls_set_clock(k->client, virtual_clock, NULL);
    dx_tls_set_clock(k->server, virtual_clock, NULL);
    dx_filter_set_clock(k->fault, virtual_clock, NULL);
    dx_filter_set_clock(k->delay, virtual_clock, NULL);
    dx_filter_set_clock(k->line, virtual_clock, NULL);
    /* From the bottom up: each layer's transport is the upper stream of
     * the one below. */
    if (dx_tls_attach(k->server, b) != 0 || dx_filter_attach(k->line, a) != 0 ||
        dx_filter_attach(k->delay, dx_filter_upper(k->line)) != 0 ||
        dx_filter_attach(k->fault, dx_filter_upper(k->delay)) != 0 ||
        dx_tls_attach(k->client, dx_filter_upper(k->fault)) != 0)
        return -1;
    return 0;
}

int main(void)
{
    static const char *const names[] = {"localhost", NULL};
    dx_pki_opts ca_opts = {.common_name = "Serial CA", .is_ca = true};
    dx_pki_opts leaf_opts = {.common_name = "device", .dns_names = names,
                             .ext_key_usage = DX_PKI_EKU_SERVER};
    dx_pki_cert *ca = NULL, *leaf = NULL;
    struct stack k;
    memset(&k, 0, sizeof(k));
    int status = 1;
    if (dx_pki_issue(NULL, &ca_opts, &ca, NULL) != 0 ||
        dx_pki_issue(ca, &leaf_opts, &leaf, NULL) != 0) {
        fprintf(stderr, "tls-slow-link: no certificates\n");
        goto out;
    }
    dx_tls_ctx *cctx = make_ctx(ca, NULL), *sctx = make_ctx(ca, leaf);
    int rc = cctx && sctx ? build(&k, cctx, sctx) : -1;
    dx_tls_ctx_unref(cctx);
    dx_tls_ctx_unref(sctx);
    if (rc != 0) {
        fprintf(stderr, "tls-slow-link: could not build the stack\n");
        goto out;
    }

    /* The handshake, on the line. */
    now_ms = 0;
    dx_tls_start(k.server);
    dx_tls_start(k.client);
    run(&k, handshake_done);
    if (!k.c.secure || !k.s.secure) {
        fprintf(stderr, "tls-slow-link: handshake failed: %s%s\n", k.c.error, k.s.error);
        goto out;
    }
    printf("handshake: %s, client secure after %llu ms of line time, server after %llu ms\n",
           dx_tls_protocol(k.client), (unsigned long long)k.c.secure_at,
           (unsigned long long)k.s.secure_at);
    printf("line: %llu bytes to the server, %llu to the client\n",
           (unsigned long long)dx_filter_bytes_out(k.line, DX_FILTER_DOWN),
           (unsigned long long)dx_filter_bytes_out(k.line, DX_FILTER_UP));

    /* A message: 960 bytes take a second on the line, plus the latency. */
    char msg[960];
    memset(msg, 'm', sizeof(msg));
    uint64_t t0 = now_ms;
    want_received = sizeof(msg);
    dx_stream_write(dx_tls_upper(k.client), msg, sizeof(msg));
    run(&k, message_arrived);
    printf("message: %zu bytes arrived after %llu ms\n", k.s.received,
           (unsigned long long)(now_ms - t0));
    bool message_ok = k.s.received == sizeof(msg) && now_ms - t0 >= 1040;

    /* One flipped bit in the next record, 10 bytes after its 5-byte
     * header: the server must refuse the record and deliver none of it. */
    dx_fault flip = {.kind = DX_FAULT_FLIP, .dir = DX_FILTER_DOWN,
                     .offset = dx_filter_bytes_in(k.fault, DX_FILTER_DOWN) + 5 + 10,
                     .mask = 0x01};
    dx_fault_add(k.fault, &flip);
    size_t before = k.s.received;
    dx_stream_write(dx_tls_upper(k.client), "this record is damaged", 22);
    run(&k, server_failed);
    printf("damaged record: server %s, %zu bytes of it delivered\n",
           k.s.error[0] ? k.s.error : "accepted it", k.s.received - before);
    if (message_ok && strcmp(k.s.error, "ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC") == 0 &&
        k.s.received == before)
        status = 0;
out:
    dx_tls_destroy(k.client);
    dx_tls_destroy(k.server);
    dx_filter_destroy(k.fault);
    dx_filter_destroy(k.delay);
    dx_filter_destroy(k.line);
    dx_pki_cert_free(leaf);
    dx_pki_cert_free(ca);
    return status;
}
