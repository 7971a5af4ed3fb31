/*
 * protocol-test: unit-testing a protocol over an in-memory pair, with TLS
 * in between.
 *
 *   test client dx_tls ==(memory pair)== server dx_tls -- protocol under test
 *
 * The first half of this file is the code under test: a tiny line
 * protocol, written against dx_stream alone. It does not know whether its
 * stream is a TLS connection, a socket or a memory pair; in a real server
 * it would be given the cleartext stream of each accepted connection.
 *
 * The second half tests it the way one tests one's own protocol code: each
 * test puts the protocol behind a real TLS server connection, joined to a
 * TLS client by a memory pair (dx_pair_new), with throw-away certificates
 * made in memory (dx_pki). A memory pair delivers synchronously: a write on
 * one end has reached the other, through both TLS filters, before the
 * write returns, and the handshake has completed (or failed) when
 * dx_tls_start() returns. So the tests need no loop, no timer and no
 * sleep: write a command, then look at the reply. The tests run over TLS
 * 1.2 and over TLS 1.3, and two of them check that a client refuses a
 * server whose certificate it cannot trust, with the error code it gets.
 *
 * The program prints one line per test and exits 1 if any check failed.
 *
 * Build: cc protocol-test.c $(pkg-config --cflags --libs libduplex)
 */
#include <stdio.h>
#include <string.h>

#include <duplex/duplex.h>

/* ==== the code under test ==================================================== */

/*
 * The protocol, one command per line ("\n"-terminated), one reply line per
 * command:
 *   PING         -> PONG
 *   ECHO <text>  -> <text>
 *   QUIT         -> BYE, and the server ends its side
 *   anything else, or a line over PROTO_LINE_MAX bytes, -> ERR <why>
 */
#define PROTO_LINE_MAX 200

struct proto {
    dx_stream *s;
    char line[PROTO_LINE_MAX + 1];
    size_t len;
    bool too_long;     /* the current line went over PROTO_LINE_MAX */
    unsigned commands; /* lines answered */
};

static void proto_reply(struct proto *p, const char *text, size_t len)
{
    dx_iov iov[2] = {{text, len}, {"\n", 1}};
    dx_stream_writev(p->s, iov, 2); /* a failure closes the stream: nothing to do */
}

static void proto_command(struct proto *p)
{
    p->commands++;
    if (p->too_long) {
        proto_reply(p, "ERR line too long", 17);
    } else if (strcmp(p->line, "PING") == 0) {
        proto_reply(p, "PONG", 4);
    } else if (strncmp(p->line, "ECHO ", 5) == 0) {
        proto_reply(p, p->line + 5, p->len - 5);
    } else if (strcmp(p->line, "QUIT") == 0) {
        proto_reply(p, "BYE", 3);
        dx_stream_end(p->s);
    } else {
        proto_reply(p, "ERR unknown command", 19);
    }
}

/* Lines may arrive in any pieces: a command split over several reads, or
 * several commands in one. */
static void proto_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    struct proto *p = user;
    (void)s;
    for (size_t i = 0; i < len && !(dx_stream_state(p->s) & DX_STREAM_CLOSED); i++) {
        if (data[i] == '\n') {
            p->line[p->len] = '\0';
            proto_command(p);
            p->len = 0;
            p->too_long = false;
        } else if (p->len < PROTO_LINE_MAX) {
            p->line[p->len++] = (char)data[i];
        } else {
            p->too_long = true;
        }
    }
}

static const dx_stream_events proto_events = {.on_data = proto_data};

/* Serves the protocol on s. */
static void proto_attach(struct proto *p, dx_stream *s)
{
    memset(p, 0, sizeof(*p));
    p->s = s;
    dx_stream_set_events(s, &proto_events, p);
}

/* ==== the tests ================================================================= */

static int failures;
static const char *current_test, *current_version;

/* A failed check prints where and what, and the run goes on. */
#define CHECK(cond) check((cond), #cond, __LINE__)
#define CHECK_STR(got, want) check_str((got), (want), #got, __LINE__)

static void check(bool ok, const char *what, int line)
{
    if (!ok) {
        failures++;
        printf("  FAILED at line %d (%s, %s): %s\n", line, current_test, current_version,
               what);
    }
}

static void check_str(const char *got, const char *want, const char *what, int line)
{
    if (!got || strcmp(got, want) != 0) {
        failures++;
        printf("  FAILED at line %d (%s, %s): %s is \"%s\", expected \"%s\"\n", line,
               current_test, current_version, what, got ? got : "(null)", want);
    }
}

/* The test's side of the conversation: what came back, and how the
 * connection ended. */
struct client {
    char got[1024];
    size_t len;
    bool ended, closed;
    char error[64];        /* the name of the client's error, if any */
    char server_error[64]; /* the server's handshake error, if any */
};

static void client_data(dx_stream *s, const uint8_t *data, size_t len, void *user)
{
    struct client *c = user;
    (void)s;
    if (len > sizeof(c->got) - 1 - c->len)
        len = sizeof(c->got) - 1 - c->len;
    memcpy(c->got + c->len, data, len);
    c->len += len;
    c->got[c->len] = '\0';
}

static void client_end(dx_stream *s, void *user)
{
    struct client *c = user;
    (void)s;
    c->ended = true;
}

static void client_error(dx_stream *s, const dx_error *err, void *user)
{
    struct client *c = user;
    (void)s;
    snprintf(c->error, sizeof(c->error), "%s", dx_error_name(err));
}

static void client_close(dx_stream *s, void *user)
{
    struct client *c = user;
    (void)s;
    c->closed = true;
}

static const dx_stream_events client_events = {
    .on_data = client_data, .on_end = client_end, .on_error = client_error,
    .on_close = client_close};

/* The server's TLS event for a failed handshake (Node's tlsClientError):
 * the protocol never sees such a connection, but the test wants to know. */
static void server_handshake_error(dx_tls *t, const dx_error *err, void *user)
{
    struct client *c = user;
    (void)t;
    snprintf(c->server_error, sizeof(c->server_error), "%s", dx_error_name(err));
}

static const dx_tls_events server_tls_events = {.on_handshake_error = server_handshake_error};

/* One test's world: a TLS client, a TLS server serving the protocol, and
 * the memory pair between them. */
struct fixture {
    dx_tls *client, *server;
    struct proto proto;
    struct client c;
};

/* Sets up and runs the handshake: when this returns, the handshake is over
 * (f->c.error says whether it failed). Returns 0, or -1 if the objects
 * could not even be made. */
static int fixture_open(struct fixture *f, dx_tls_ctx *client_ctx, dx_tls_ctx *server_ctx,
                        const char *servername)
{
    dx_stream *a, *b;
    memset(f, 0, sizeof(*f));
    if (dx_pair_new(NULL, &a, &b) != 0)
        return -1;
    if (dx_tls_new(client_ctx, DX_TLS_CLIENT, &f->client) != 0 ||
        dx_tls_new(server_ctx, DX_TLS_SERVER, &f->server) != 0) {
        dx_tls_destroy(f->client);
        dx_stream_destroy(a);
        dx_stream_destroy(b);
        return -1;
    }
    dx_tls_set_servername(f->client, servername);
    dx_stream_set_events(dx_tls_upper(f->client), &client_events, &f->c);
    dx_tls_set_events(f->server, &server_tls_events, &f->c);
    proto_attach(&f->proto, dx_tls_upper(f->server));
    /* Each connection owns its end of the pair from here on. */
    if (dx_tls_attach(f->client, a) != 0 || dx_tls_attach(f->server, b) != 0 ||
        dx_tls_start(f->server) != 0 || dx_tls_start(f->client) != 0)
        return -1;
    return 0;
}

/* Sends one line and returns everything that came back meanwhile. */
static const char *ask(struct fixture *f, const char *line)
{
    f->c.len = 0;
    f->c.got[0] = '\0';
    dx_stream *s = dx_tls_upper(f->client);
    dx_stream_write(s, line, strlen(line));
    dx_stream_write(s, "\n", 1);
    return f->c.got;
}

static void fixture_close(struct fixture *f)
{
    dx_tls_destroy(f->client);
    dx_tls_destroy(f->server);
}

/* The contexts a test runs with. */
struct setup {
    dx_tls_ctx *server;       /* presents a certificate for service.test */
    dx_tls_ctx *client;       /* trusts the CA that signed it */
    dx_tls_ctx *other_client; /* trusts another CA only */
};

static void test_ping(const struct setup *st)
{
    struct fixture f;
    CHECK(fixture_open(&f, st->client, st->server, "service.test") == 0);
    CHECK_STR(f.c.error, "");
    CHECK_STR(ask(&f, "PING"), "PONG\n");
    fixture_close(&f);
}

static void test_echo(const struct setup *st)
{
    struct fixture f;
    CHECK(fixture_open(&f, st->client, st->server, "service.test") == 0);
    CHECK_STR(ask(&f, "ECHO hello, world"), "hello, world\n");
    CHECK_STR(ask(&f, "ECHO "), "\n");
    fixture_close(&f);
}

/* Each write is a TLS record of its own, delivered to the protocol on its
 * own: commands split across them, and two in one, must still work. */
static void test_commands_in_pieces(const struct setup *st)
{
    struct fixture f;
    CHECK(fixture_open(&f, st->client, st->server, "service.test") == 0);
    dx_stream *s = dx_tls_upper(f.client);
    dx_stream_write(s, "PI", 2);
    CHECK_STR(f.c.got, "");
    dx_stream_write(s, "NG\nEC", 5);
    CHECK_STR(f.c.got, "PONG\n");
    dx_stream_write(s, "HO in pieces\nPING\n", 18);
    CHECK_STR(f.c.got, "PONG\nin pieces\nPONG\n");
    CHECK(f.proto.commands == 3);
    fixture_close(&f);
}

static void test_unknown_command(const struct setup *st)
{
    struct fixture f;
    CHECK(fixture_open(&f, st->client, st->server, "service.test") == 0);
    CHECK_STR(ask(&f, "HELLO"), "ERR unknown command\n");
    CHECK_STR(ask(&f, "ping"), "ERR unknown command\n");
    fixture_close(&f);
}

/* A line over the limit is refused, and the next one is served. */
static void test_line_too_long(const struct setup *st)
{
    struct fixture f;
    char line[PROTO_LINE_MAX + 50];
    memset(line, 'x', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\0';
    CHECK(fixture_open(&f, st->client, st->server, "service.test") == 0);
    CHECK_STR(ask(&f, line), "ERR line too long\n");
    CHECK_STR(ask(&f, "PING"), "PONG\n");
    fixture_close(&f);
}

/* QUIT: the reply, then the server's close_notify; our end answers with
 * ours and both connections close without an error. */
static void test_quit_closes_cleanly(const struct setup *st)
{
    struct fixture f;
    CHECK(fixture_open(&f, st->client, st->server, "service.test") == 0);
    CHECK_STR(ask(&f, "QUIT"), "BYE\n");
    CHECK(f.c.ended);
    CHECK(dx_tls_clean_end(f.client));
    CHECK(f.c.closed);
    CHECK_STR(f.c.error, "");
    CHECK(dx_stream_state(dx_tls_upper(f.server)) & DX_STREAM_CLOSED);
    fixture_close(&f);
}

/* A client that does not trust the server's CA refuses it: the handshake
 * fails with the verification code, the server hears of it through the
 * client's alert, and the protocol never sees a byte. */
static void test_untrusted_server_is_refused(const struct setup *st)
{
    struct fixture f;
    CHECK(fixture_open(&f, st->other_client, st->server, "service.test") == 0);
    CHECK_STR(f.c.error, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    CHECK_STR(f.c.server_error, "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA");
    CHECK(f.c.closed);
    CHECK(f.proto.commands == 0);
    CHECK(dx_stream_write(dx_tls_upper(f.client), "PING\n", 5) == DX_EDESTROYED);
    fixture_close(&f);
}

/* A trusted certificate for another name is refused too. */
static void test_wrong_name_is_refused(const struct setup *st)
{
    struct fixture f;
    CHECK(fixture_open(&f, st->client, st->server, "other.test") == 0);
    CHECK_STR(f.c.error, "ERR_TLS_CERT_ALTNAME_INVALID");
    CHECK(f.c.closed);
    CHECK(f.proto.commands == 0);
    fixture_close(&f);
}

static const struct {
    const char *name;
    void (*run)(const struct setup *);
} tests[] = {
    {"ping", test_ping},
    {"echo", test_echo},
    {"commands in pieces", test_commands_in_pieces},
    {"unknown command", test_unknown_command},
    {"line too long", test_line_too_long},
    {"quit closes cleanly", test_quit_closes_cleanly},
    {"untrusted server is refused", test_untrusted_server_is_refused},
    {"wrong name is refused", test_wrong_name_is_refused},
};

/* ---- set-up: certificates and contexts, made once ------------------------------ */

/* A context pinned to one protocol version that trusts `trust` and/or
 * presents `present`. NULL on failure. */
static dx_tls_ctx *make_ctx(const char *version, const dx_pki_cert *trust,
                            const dx_pki_cert *present)
{
    dx_tls_config *cfg;
    dx_tls_ctx *ctx = NULL;
    if (dx_tls_config_new(&cfg) != 0)
        return NULL;
    int rc = dx_tls_config_set_min_version(cfg, version);
    if (rc == 0)
        rc = dx_tls_config_set_max_version(cfg, version);
    if (rc == 0 && trust) {
        const char *pem = dx_pki_cert_pem(trust);
        rc = dx_tls_config_add_ca(cfg, pem, strlen(pem));
    }
    if (rc == 0 && present) {
        const char *cert = dx_pki_cert_pem(present), *key = dx_pki_key_pem(present);
        rc = dx_tls_config_add_cert(cfg, cert, strlen(cert), key, strlen(key), NULL);
    }
    if (rc == 0)
        dx_tls_ctx_new(cfg, &ctx, NULL);
    dx_tls_config_free(cfg);
    return ctx;
}

int main(void)
{
    static const char *const versions[] = {"TLSv1.2", "TLSv1.3"};
    static const char *const names[] = {"service.test", NULL};
    dx_pki_opts ca_opts = {.common_name = "protocol-test CA", .is_ca = true};
    dx_pki_opts other_opts = {.common_name = "some other CA", .is_ca = true};
    dx_pki_opts srv_opts = {.common_name = "service.test", .dns_names = names,
                            .ext_key_usage = DX_PKI_EKU_SERVER};
    dx_pki_cert *ca = NULL, *other_ca = NULL, *srv = NULL;

    if (dx_pki_issue(NULL, &ca_opts, &ca, NULL) != 0 ||
        dx_pki_issue(NULL, &other_opts, &other_ca, NULL) != 0 ||
        dx_pki_issue(ca, &srv_opts, &srv, NULL) != 0) {
        printf("cannot make the test certificates\n");
        failures++;
    }
    for (size_t v = 0; v < 2 && ca && other_ca && srv; v++) {
        struct setup st = {
            .server = make_ctx(versions[v], NULL, srv),
            .client = make_ctx(versions[v], ca, NULL),
            .other_client = make_ctx(versions[v], other_ca, NULL),
        };
        current_version = versions[v];
        bool made = st.server && st.client && st.other_client;
        if (!made) {
            printf("cannot make the %s contexts\n", versions[v]);
            failures++;
        }
        for (size_t i = 0; made && i < sizeof(tests) / sizeof(tests[0]); i++) {
            int before = failures;
            current_test = tests[i].name;
            tests[i].run(&st);
            printf("%s %s: %s\n", failures == before ? "ok  " : "FAIL", versions[v],
                   tests[i].name);
        }
        dx_tls_ctx_unref(st.server);
        dx_tls_ctx_unref(st.client);
        dx_tls_ctx_unref(st.other_client);
    }
    dx_pki_cert_free(srv);
    dx_pki_cert_free(other_ca);
    dx_pki_cert_free(ca);
    printf("%s\n", failures ? "FAILED" : "ok: all tests passed");
    return failures ? 1 : 0;
}
