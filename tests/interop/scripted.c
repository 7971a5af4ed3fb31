/*
 * The matrix of cases for the scripted peers (scripted.h): libduplex as
 * client and as server against the peer's server and client, over TCP on
 * loopback and over the peer's standard input and output.
 *
 * The peer prints one JSON line per connection (on standard error, which
 * goes to a file when standard output carries TLS); the case reads it back
 * and checks what the peer saw: version, ALPN, SNI, the certificate it
 * verified, resumption, the bytes it received and their sha256, and our
 * close_notify.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "interop.h"
#include "scripted.h"

/* ---- a case's parameters ------------------------------------------------------------ */

typedef struct sp_case {
    const sp_peer *peer;
    const char *version; /* "TLSv1.2", "TLSv1.3" */
    const ix_pair *cert; /* the server's certificate */
    bool stdio;          /* over the peer's standard input and output */
    int variant;         /* what the case function makes of it */
} sp_case;

static const char *short_version(const char *v) { return !strcmp(v, "TLSv1.2") ? "1.2" : "1.3"; }

/* ---- the peer's JSON lines ------------------------------------------------------------ */

/*
 * The value of "key" in a one-line JSON object: a string without its
 * quotes (the peers' strings hold no escapes that matter here), or the text
 * of true, false, null or a number. False if there is no such key.
 */
static bool json_get(const char *line, const char *key, char *out, size_t cap)
{
    char pat[80];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *v = strstr(line, pat);
    if (!v)
        return false;
    v += strlen(pat);
    const char *end;
    if (*v == '"') {
        v++;
        for (end = v; *end && *end != '"'; end++)
            if (*end == '\\' && end[1])
                end++;
    } else {
        end = v + strcspn(v, ",}");
    }
    size_t n = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

/* ---- a run: the peer, our side, our connection ------------------------------------------ */

typedef struct sp_run {
    const sp_case *k;
    h_peer p;
    bool peer_is_server;
    unsigned port;
    int lfd;                /* our listener, for a peer client over TCP */
    char report_path[600];  /* over stdio, the peer's JSON lines go there */
    const char *report;     /* report_path, or NULL over TCP */
    char *text;
    ix_side *side;
    ix_conn c;
    bool open;
} sp_run;

static const char *srcdir(void)
{
    const char *s = getenv("top_srcdir");
    return s && *s ? s : ".";
}

/*
 * Starts the peer as server or client of k's version, trusting the test
 * CA, over k's transport, with extra options (printf format).
 */
static void peer_start(sp_run *r, const sp_case *k, bool server, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void peer_start(sp_run *r, const sp_case *k, bool server, const char *fmt, ...)
{
    memset(r, 0, sizeof(*r));
    r->k = k;
    r->lfd = -1;
    r->peer_is_server = server;
    char extra[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(extra, sizeof(extra), fmt, ap);
    va_end(ap);
    char transport[64];
    if (k->stdio) {
        snprintf(transport, sizeof(transport), "--stdio");
        snprintf(r->report_path, sizeof(r->report_path), "%s", ix_path("report.json"));
        r->report = r->report_path;
    } else if (server) {
        r->port = ix_port();
        snprintf(transport, sizeof(transport), "--listen %u", r->port);
    } else {
        r->lfd = h_listen_loopback(&r->port);
        snprintf(transport, sizeof(transport), "--connect %u", r->port);
    }
    ix_spawn(&r->p, "%s %s/tests/interop/peers/%s --%s %s --min-version %s --max-version %s "
                    "--ca %s %s%s%s",
             k->peer->program, srcdir(), k->peer->script, server ? "server" : "client",
             transport, k->version, k->version, IX->ca, extra, r->report ? " 2>" : "",
             r->report ? r->report : "");
}

/* Our side's next connection to or from the peer (o: the side's options,
 * used for the first one). */
static void lib_open(sp_run *r, const ix_opts *o)
{
    if (!r->side) {
        ix_opts v = *o;
        v.min_version = v.max_version = r->k->version;
        r->side = ix_side_new(&v);
    }
    int rfd, wfd;
    if (r->k->stdio) {
        ck_assert_msg(r->p.out >= 0, "one connection over stdio");
        rfd = r->p.out; /* the connection owns the pipes from here */
        wfd = r->p.in;
        r->p.out = r->p.in = -1;
    } else if (r->peer_is_server) {
        rfd = wfd = ix_connect(r->port);
    } else {
        rfd = wfd = h_accept(r->lfd, IX_WAIT_MS);
        ck_assert_msg(rfd >= 0, "the peer did not connect: %s", ix_out(&r->p));
    }
    ix_conn_open(&r->c, r->side, rfd, wfd);
    r->open = true;
}

static void lib_close(sp_run *r)
{
    if (r->open)
        ix_conn_free(&r->c);
    r->open = false;
}

/* Everything the peer printed (over TCP) or reported (over stdio). */
static const char *peer_text(sp_run *r)
{
    if (!r->report)
        return h_peer_output(&r->p);
    free(r->text);
    r->text = access(r->report, R_OK) == 0 ? ix_slurp(r->report, NULL) : NULL;
    return r->text ? r->text : "";
}

/* The end of it, for failure messages (as ix_out). */
static const char *peer_tail(sp_run *r)
{
    const char *all = peer_text(r);
    size_t n = strlen(all);
    return n > 1500 ? all + n - 1500 : all;
}

/* h_peer for ix_wait: none over stdio, where its output is the connection. */
static h_peer *pp(sp_run *r) { return r->k->stdio ? NULL : &r->p; }

/* Waits for the peer to exit, which it does once done with its
 * connections; fails the case if it does not or fails. */
static void peer_exit(sp_run *r)
{
    int status = ix_stop(&r->p);
    ck_assert_msg(status == 0, "the peer exited with %d: %s", status, peer_tail(r));
}

/* The peer's report of its n-th connection (0-based). */
static void peer_line(sp_run *r, int n, char *line, size_t cap)
{
    const char *text = peer_text(r);
    int seen = 0;
    for (const char *s = text; *s;) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        if (!strncmp(s, "{\"peer\":", 8) && !memmem(s, len, "\"listening\"", 11) &&
            seen++ == n) {
            ck_assert_uint_lt(len, cap);
            memcpy(line, s, len);
            line[len] = '\0';
            return;
        }
        s += len + (nl ? 1 : 0);
    }
    ck_abort_msg("no report of connection %d from the peer: %s", n, peer_tail(r));
}

/* A field of the report equals want ("true", "TLSv1.3", ...). */
static void expect(const char *line, const char *key, const char *want)
{
    char v[256];
    ck_assert_msg(json_get(line, key, v, sizeof(v)), "no %s in %s", key, line);
    ck_assert_msg(!strcmp(v, want), "%s is %s, not %s, in %s", key, v, want, line);
}

/*
 * The peer's connection n went well: ok, k's version, `received` bytes
 * (with that sha256 if not NULL), and our close_notify seen where the peer
 * can tell.
 */
static void peer_ok(sp_run *r, int n, uint64_t received, const char *sha256, char *line,
                    size_t cap)
{
    peer_line(r, n, line, cap);
    expect(line, "ok", "true");
    expect(line, "protocol", r->k->version);
    char num[32];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)received);
    expect(line, "received", num);
    if (sha256)
        expect(line, "sha256", sha256);
    if (r->k->stdio || !r->k->peer->no_close_notify_tcp)
        expect(line, "close_notify", "true");
}

static void run_free(sp_run *r)
{
    lib_close(r);
    ix_side_free(r->side);
    if (r->lfd >= 0)
        close(r->lfd);
    h_peer_free(&r->p);
    free(r->text);
}

/* ---- what both sides do on a connection ---------------------------------------------- */

static const char hello[] = "hello from libduplex\n";

/* Our line, echoed by the peer (--echo), then close_notify each way. */
static void echo_and_close(sp_run *r)
{
    ix_conn *c = &r->c;
    ck_assert(ix_wait(c, pp(r), ix_is_secure, NULL));
    ix_assert_secure(c, pp(r));
    ck_assert_str_eq(c->protocol, r->k->version);
    ix_send(c, hello, strlen(hello), false);
    ck_assert_msg(ix_wait(c, pp(r), ix_has_text, (void *)hello) && !c->failed, "%s %s; %s",
                  c->error, c->error_msg, peer_tail(r));
    ix_end(c);
    ck_assert(ix_wait(c, pp(r), ix_is_closed, NULL));
    ck_assert_msg(c->clean_end && !c->failed, "no close_notify from the peer: %s %s; %s",
                  c->error, c->error_msg, peer_tail(r));
    ck_assert_uint_eq(c->received, strlen(hello));
}

/* Our line, echoed by the peer, then the transport cut without
 * close_notify; the peer's report goes to line. */
static void cut_after_echo(sp_run *r, char *line, size_t cap)
{
    ck_assert(ix_wait(&r->c, pp(r), ix_is_secure, NULL));
    ix_send(&r->c, hello, strlen(hello), false);
    ck_assert(ix_wait(&r->c, pp(r), ix_has_text, (void *)hello));
    dx_stream_destroy(r->c.transport);
    peer_exit(r);
    peer_line(r, 0, line, cap);
}

/* A connection that fails: waits for our side to give up or the
 * connection to close, and returns what our side reported. */
static const char *refused(sp_run *r)
{
    ix_conn *c = &r->c;
    /* A TLS 1.3 client learns of a refusal after its handshake: it reads. */
    ck_assert(ix_wait(c, pp(r), ix_is_secure, NULL));
    if (!c->failed)
        ix_send(c, hello, strlen(hello), false);
    ck_assert(ix_wait(c, pp(r), ix_is_closed, NULL));
    ck_assert_msg(c->failed || !c->clean_end, "the connection went on: %s", peer_tail(r));
    return c->failed ? c->error : "closed without close_notify";
}

static void note_secure(const ix_conn *c, const char *extra)
{
    ix_note("%s, %s%s%s", c->protocol, c->cipher, extra ? "; " : "", extra ? extra : "");
}

/* ---- the cases: libduplex as client ---------------------------------------------------- */

static ix_opts client_opts(void)
{
    return (ix_opts){.role = DX_TLS_CLIENT, .servername = "localhost"};
}

/* A line echoed and close_notify both ways, over either transport. */
static void lib_client_basic(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, true, "--cert %s --key %s --echo", k->cert->cert, k->cert->key);
    ix_opts o = client_opts();
    lib_open(&r, &o);
    echo_and_close(&r);
    ck_assert(r.c.authorized);
    peer_exit(&r);
    char line[2048];
    peer_ok(&r, 0, strlen(hello), NULL, line, sizeof(line));
    note_secure(&r.c, NULL);
    run_free(&r);
}

/* ALPN: we offer an unknown protocol and http/1.1, the peer h2 and
 * http/1.1: both settle on http/1.1. */
static void lib_client_alpn(const void *arg)
{
    const sp_case *k = arg;
    static const char *const ours[] = {"x-unknown", "http/1.1", NULL};
    sp_run r;
    peer_start(&r, k, true, "--cert %s --key %s --echo --alpn h2,http/1.1", k->cert->cert,
               k->cert->key);
    ix_opts o = client_opts();
    o.alpn = ours;
    lib_open(&r, &o);
    echo_and_close(&r);
    ck_assert_str_eq(r.c.alpn, "http/1.1");
    peer_exit(&r);
    char line[2048];
    peer_ok(&r, 0, strlen(hello), NULL, line, sizeof(line));
    expect(line, "alpn", "http/1.1");
    note_secure(&r.c, "ALPN http/1.1");
    run_free(&r);
}

/* SNI: the peer serves sni.test from a context of its own. */
static void lib_client_sni(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, true, "--cert %s --key %s --sni sni.test:%s:%s --echo", k->cert->cert,
               k->cert->key, IX->sni.cert, IX->sni.key);
    ix_opts o = client_opts();
    o.servername = "sni.test";
    lib_open(&r, &o);
    echo_and_close(&r);
    ck_assert_str_eq(r.c.peer_cn, "sni.test");
    ck_assert(r.c.authorized);
    peer_exit(&r);
    char line[2048];
    peer_ok(&r, 0, strlen(hello), NULL, line, sizeof(line));
    expect(line, "servername", "sni.test");
    note_secure(&r.c, "sni.test's certificate");
    run_free(&r);
}

/* The peer insists on a client certificate: ours (variant 0), none (1),
 * one from a CA it does not trust (2). */
static void lib_client_cert(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, true, "--cert %s --key %s --require-cert --echo", k->cert->cert,
               k->cert->key);
    ix_opts o = client_opts();
    o.cert = k->variant == 0 ? &IX->client : k->variant == 2 ? &IX->stranger : NULL;
    lib_open(&r, &o);
    char line[2048];
    if (k->variant == 0) {
        echo_and_close(&r);
        peer_exit(&r);
        peer_ok(&r, 0, strlen(hello), NULL, line, sizeof(line));
        expect(line, "authorized", "true");
        expect(line, "peer_cn", "interop client");
        note_secure(&r.c, "the peer verified ours");
    } else {
        const char *ours = refused(&r);
        peer_exit(&r);
        peer_line(&r, 0, line, sizeof(line));
        expect(line, "ok", "false");
        char theirs[128] = "";
        json_get(line, "verify_error", theirs, sizeof(theirs));
        if (!theirs[0] || !strcmp(theirs, "null"))
            json_get(line, "error", theirs, sizeof(theirs));
        ix_note("refused; we got %s, the peer %s", ours, theirs);
    }
    run_free(&r);
}

/* Our client refuses the peer: a certificate from a CA we do not trust
 * (variant 0), a name that is not the one we asked for (1). */
static void lib_client_refuses(const void *arg)
{
    const sp_case *k = arg;
    const ix_pair *cert = k->variant == 0 ? &IX->untrusted : k->cert;
    const char *code = k->variant == 0 ? "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
                                       : "ERR_TLS_CERT_ALTNAME_INVALID";
    sp_run r;
    peer_start(&r, k, true, "--cert %s --key %s --echo", cert->cert, cert->key);
    ix_opts o = client_opts();
    if (k->variant == 1)
        o.servername = "wrong.test";
    lib_open(&r, &o);
    ck_assert(ix_wait(&r.c, pp(&r), ix_is_closed, NULL));
    ix_assert_error(&r.c, code, pp(&r));
    ck_assert(!r.c.secure);
    peer_exit(&r);
    char line[2048];
    peer_line(&r, 0, line, sizeof(line));
    expect(line, "ok", "false");
    char theirs[128] = "";
    json_get(line, "error", theirs, sizeof(theirs));
    ix_note("%s; the peer got %s", code, theirs);
    run_free(&r);
}

/* Two connections; the second resumes the first's session: by ticket
 * (variant 0) or from the peer's session cache (1: no tickets; session
 * ids in TLS 1.2, stateful tickets in TLS 1.3). */
static void lib_client_resume(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, true, "--cert %s --key %s --echo --connections 2%s", k->cert->cert,
               k->cert->key, k->variant ? " --no-tickets" : "");
    ix_opts o = client_opts();
    lib_open(&r, &o);
    echo_and_close(&r);
    ck_assert(!r.c.reused);
    ck_assert(ix_side_has_session(r.side));
    lib_close(&r);
    ix_side_resume(r.side, true);
    lib_open(&r, &o);
    echo_and_close(&r);
    ck_assert_msg(r.c.reused, "not resumed: %s", peer_tail(&r));
    peer_exit(&r);
    char line[2048];
    peer_ok(&r, 0, strlen(hello), NULL, line, sizeof(line));
    expect(line, "resumed", "false");
    peer_ok(&r, 1, strlen(hello), NULL, line, sizeof(line));
    expect(line, "resumed", "true");
    note_secure(&r.c, "resumed");
    run_free(&r);
}

/* 10 MiB: we send (variant 0) or the peer does (1); sha256 compared. */
static void transfer(sp_run *r, int variant)
{
    ix_conn *c = &r->c;
    ck_assert(ix_wait(c, pp(r), ix_is_secure, NULL));
    ix_assert_secure(c, pp(r));
    int64_t t0 = h_now_ms();
    if (variant == 0) {
        ix_send(c, IX->payload_data, IX_PAYLOAD, true);
    } else {
        uint64_t n = IX_PAYLOAD;
        ck_assert(ix_wait(c, pp(r), ix_has_bytes, &n));
        ix_end(c);
    }
    ck_assert(ix_wait(c, pp(r), ix_is_closed, NULL));
    int64_t ms = h_now_ms() - t0;
    ck_assert_msg(c->clean_end && !c->failed, "%s %s; %s", c->error, c->error_msg,
                  peer_tail(r));
    peer_exit(r);
    char line[2048];
    if (variant == 0) {
        peer_ok(r, 0, IX_PAYLOAD, IX->payload_sha256, line, sizeof(line));
    } else {
        ck_assert_uint_eq(c->received, IX_PAYLOAD);
        ck_assert_str_eq(c->received_sha256, IX->payload_sha256);
        peer_ok(r, 0, 0, NULL, line, sizeof(line));
    }
    ix_note("%s, %s; 10 MiB in %lld ms", c->protocol, c->cipher, (long long)ms);
}

static void lib_client_transfer(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, true, "--cert %s --key %s%s%s", k->cert->cert, k->cert->key,
               k->variant ? " --send " : "", k->variant ? IX->payload : "");
    ix_opts o = client_opts();
    lib_open(&r, &o);
    transfer(&r, k->variant);
    run_free(&r);
}

/* We cut the transport without close_notify: the peer says so. */
static void lib_client_truncates(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, true, "--cert %s --key %s --echo", k->cert->cert, k->cert->key);
    ix_opts o = client_opts();
    lib_open(&r, &o);
    char line[2048];
    cut_after_echo(&r, line, sizeof(line));
    expect(line, "received", "21");
    expect(line, "close_notify", "false");
    ix_note("the peer saw a bare EOF");
    run_free(&r);
}

/* A pre-shared key, the peer's server having a certificate too. */
static void lib_client_psk(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, true, "--cert %s --key %s --psk %s:%s --echo", k->cert->cert,
               k->cert->key, IX->psk_identity, IX->psk_hex);
    ix_opts o = client_opts();
    o.psk = true;
    lib_open(&r, &o);
    echo_and_close(&r);
    ck_assert(r.c.authorized);
    ck_assert_str_eq(r.c.peer_cn, "");
    peer_exit(&r);
    char line[2048];
    peer_ok(&r, 0, strlen(hello), NULL, line, sizeof(line));
    note_secure(&r.c, "no certificate");
    run_free(&r);
}

/* The peer staples an OCSP response; we ask for it and verify it. */
static void lib_client_ocsp(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, true, "--cert %s --key %s --ocsp %s --echo", IX->ecdsa.cert,
               IX->ecdsa.key, IX->ocsp_ecdsa);
    ix_opts o = client_opts();
    o.request_ocsp = true;
    lib_open(&r, &o);
    echo_and_close(&r);
    ck_assert(r.c.ocsp_stapled);
    ck_assert_msg(r.c.ocsp_result == DX_TLS_OCSP_GOOD, "OCSP result %d", (int)r.c.ocsp_result);
    peer_exit(&r);
    char line[2048];
    peer_ok(&r, 0, strlen(hello), NULL, line, sizeof(line));
    note_secure(&r.c, "staple verified: good");
    run_free(&r);
}

/* ---- the cases: libduplex as server ----------------------------------------------------- */

static ix_opts server_opts(const sp_case *k)
{
    return (ix_opts){.role = DX_TLS_SERVER, .cert = k->cert};
}

/* The peer client's options: its name for us, unless extra says. */
#define PEER_CLIENT "--servername localhost"

static void peer_client_basic(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, false, PEER_CLIENT " --echo");
    ix_opts o = server_opts(k);
    lib_open(&r, &o);
    echo_and_close(&r);
    ck_assert_str_eq(r.c.servername, "localhost");
    peer_exit(&r);
    char line[2048];
    peer_ok(&r, 0, strlen(hello), NULL, line, sizeof(line));
    expect(line, "authorized", "true");
    note_secure(&r.c, NULL);
    run_free(&r);
}

static void peer_client_alpn(const void *arg)
{
    const sp_case *k = arg;
    static const char *const ours[] = {"h2", "http/1.1", NULL};
    sp_run r;
    peer_start(&r, k, false, PEER_CLIENT " --echo --alpn x-unknown,http/1.1");
    ix_opts o = server_opts(k);
    o.alpn = ours;
    lib_open(&r, &o);
    echo_and_close(&r);
    ck_assert_str_eq(r.c.alpn, "http/1.1");
    peer_exit(&r);
    char line[2048];
    peer_ok(&r, 0, strlen(hello), NULL, line, sizeof(line));
    expect(line, "alpn", "http/1.1");
    note_secure(&r.c, "ALPN http/1.1");
    run_free(&r);
}

/* SNI: our server picks its sni.test context for the peer that asks. */
static void peer_client_sni(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, false, "--servername sni.test --echo");
    ix_opts o = server_opts(k);
    o.sni = &IX->sni;
    lib_open(&r, &o);
    echo_and_close(&r);
    ck_assert_str_eq(r.c.servername, "sni.test");
    peer_exit(&r);
    char line[2048];
    peer_ok(&r, 0, strlen(hello), NULL, line, sizeof(line));
    expect(line, "peer_cn", "sni.test");
    expect(line, "authorized", "true");
    note_secure(&r.c, "sni.test's context");
    run_free(&r);
}

/* Our server insists on a client certificate; the peer shows ours
 * (variant 0), none (1), one from a CA we do not trust (2). */
static void peer_client_cert(const void *arg)
{
    const sp_case *k = arg;
    const ix_pair *cert = k->variant == 0 ? &IX->client : k->variant == 2 ? &IX->stranger : NULL;
    sp_run r;
    if (cert)
        peer_start(&r, k, false, PEER_CLIENT " --echo --cert %s --key %s", cert->cert,
                   cert->key);
    else
        peer_start(&r, k, false, PEER_CLIENT " --echo");
    ix_opts o = server_opts(k);
    o.require_cert = true;
    lib_open(&r, &o);
    char line[2048];
    if (k->variant == 0) {
        echo_and_close(&r);
        ck_assert(r.c.authorized);
        ck_assert_str_eq(r.c.peer_cn, "interop client");
        peer_exit(&r);
        peer_ok(&r, 0, strlen(hello), NULL, line, sizeof(line));
        note_secure(&r.c, "we verified the peer's");
    } else {
        ck_assert(ix_wait(&r.c, pp(&r), ix_is_closed, NULL));
        ck_assert_msg(r.c.failed, "accepted: %s", peer_tail(&r));
        peer_exit(&r);
        peer_line(&r, 0, line, sizeof(line));
        expect(line, "ok", "false");
        char theirs[128] = "";
        json_get(line, "error", theirs, sizeof(theirs));
        ix_note("refused with %s; the peer got %s", r.c.error, theirs);
    }
    run_free(&r);
}

/* The peer connects twice and resumes: by ticket (variant 0) or from our
 * session cache (1). */
static void peer_client_resume(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, false, PEER_CLIENT " --echo --connections 2");
    ix_opts o = server_opts(k);
    o.no_tickets = k->variant == 1;
    lib_open(&r, &o);
    echo_and_close(&r);
    ck_assert(!r.c.reused);
    lib_close(&r);
    lib_open(&r, &o);
    echo_and_close(&r);
    ck_assert_msg(r.c.reused, "not resumed: %s", peer_tail(&r));
    peer_exit(&r);
    char line[2048];
    peer_ok(&r, 1, strlen(hello), NULL, line, sizeof(line));
    expect(line, "resumed", "true");
    note_secure(&r.c, "resumed");
    run_free(&r);
}

static void peer_client_transfer(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, false, PEER_CLIENT "%s%s", k->variant ? " --send " : "",
               k->variant ? IX->payload : "");
    ix_opts o = server_opts(k);
    lib_open(&r, &o);
    transfer(&r, k->variant);
    run_free(&r);
}

static void peer_client_truncates(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, false, PEER_CLIENT " --echo");
    ix_opts o = server_opts(k);
    lib_open(&r, &o);
    char line[2048];
    cut_after_echo(&r, line, sizeof(line));
    expect(line, "close_notify", "false");
    ix_note("the peer saw a bare EOF");
    run_free(&r);
}

static void peer_client_psk(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, false, PEER_CLIENT " --psk %s:%s --echo", IX->psk_identity, IX->psk_hex);
    ix_opts o = server_opts(k);
    o.psk = true;
    lib_open(&r, &o);
    echo_and_close(&r);
    peer_exit(&r);
    char line[2048];
    peer_ok(&r, 0, strlen(hello), NULL, line, sizeof(line));
    expect(line, "peer_cn", "null");
    note_secure(&r.c, NULL);
    run_free(&r);
}

/* We staple an OCSP response; the peer asks for it and gets its bytes. */
static void peer_client_ocsp(const void *arg)
{
    const sp_case *k = arg;
    sp_run r;
    peer_start(&r, k, false, PEER_CLIENT " --request-ocsp --echo");
    ix_opts o = server_opts(k);
    o.cert = &IX->ecdsa;
    o.ocsp = IX->ocsp_ecdsa;
    lib_open(&r, &o);
    echo_and_close(&r);
    peer_exit(&r);
    char line[2048], sha[65];
    peer_ok(&r, 0, strlen(hello), NULL, line, sizeof(line));
    ix_sha256_file(IX->ocsp_ecdsa, sha);
    expect(line, "ocsp_sha256", sha);
    note_secure(&r.c, "the peer got our staple");
    run_free(&r);
}

/* ---- dxtls, with the peer as its child on pipes ----------------------------------------- */

#ifdef HAVE_LIBUV
/*
 * dxtls between our pipes (cleartext) and the peer over stdio (exec:):
 * a line goes through dxtls and the peer (--echo) and comes back; our
 * input ends, dxtls sends close_notify, the peer answers and reports, and
 * dxtls exits 0.
 */
static void dxtls_exec(const void *arg)
{
    const sp_case *k = arg;
    bool dxtls_server = k->variant == 1;
    char peer[2048];
    snprintf(peer, sizeof(peer), "%s %s/tests/interop/peers/%s --%s --stdio --min-version %s "
             "--max-version %s --ca %s --echo %s",
             k->peer->program, srcdir(), k->peer->script, dxtls_server ? "client" : "server",
             k->version, k->version, IX->ca, dxtls_server ? "--servername localhost" : "");
    size_t n = strlen(peer);
    if (!dxtls_server)
        snprintf(peer + n, sizeof(peer) - n, "--cert %s --key %s", k->cert->cert, k->cert->key);
    h_peer p;
    if (dxtls_server)
        ix_spawn(&p, "%s --server --cert %s --key %s --info - exec:'%s'", ix_dxtls(),
                 k->cert->cert, k->cert->key, peer);
    else
        ix_spawn(&p, "%s --ca %s --servername localhost --info - exec:'%s'", ix_dxtls(), IX->ca,
                 peer);
    static const char line[] = "hello through dxtls\n";
    h_peer_write(&p, line);
    ix_expect_output(&p, "hello through dxtls");
    char proto[40];
    snprintf(proto, sizeof(proto), "\"protocol\":\"%s\"", k->version);
    ix_expect_output(&p, proto);
    h_peer_close_input(&p);
    int status = ix_stop(&p);
    ck_assert_msg(status == 0, "dxtls exited %d: %s", status, ix_out(&p));
    /* The peer's line, among dxtls's output. */
    const char *rep = strstr(h_peer_output(&p), "{\"peer\":");
    ck_assert_msg(rep != NULL, "no report from the peer: %s", ix_out(&p));
    char buf[2048];
    snprintf(buf, sizeof(buf), "%.*s", (int)strcspn(rep, "\n"), rep);
    expect(buf, "ok", "true");
    expect(buf, "protocol", k->version);
    expect(buf, "received", "20");
    expect(buf, "close_notify", "true");
    ix_note("%s, dxtls exited 0 (clean close), the peer saw close_notify", k->version);
    h_peer_free(&p);
}
#endif

/* ---- registration ------------------------------------------------------------------------ */

static const sp_case *keep(const sp_case *k)
{
    sp_case *copy = malloc(sizeof(*copy));
    if (!copy)
        abort();
    *copy = *k;
    return copy;
}

typedef struct sp_dir {
    char client[64], server[64]; /* "libduplex → tls.Server" and the reverse */
} sp_dir;

static sp_dir dirs(const sp_peer *p, bool stdio)
{
    sp_dir d;
    snprintf(d.client, sizeof(d.client), IX_LIB " → %s", stdio ? p->stdio_server : p->tcp_server);
    snprintf(d.server, sizeof(d.server), "%s → " IX_LIB, stdio ? p->stdio_client : p->tcp_client);
    return d;
}

/* A case in each direction. */
static void both(const sp_peer *p, bool stdio, const char *name, ix_fn lib_client,
                 ix_fn peer_client, sp_case k)
{
    sp_dir d = dirs(p, stdio);
    k.peer = p;
    k.stdio = stdio;
    ix_case(p->name, d.client, name, lib_client, keep(&k));
    ix_case(p->name, d.server, name, peer_client, keep(&k));
}

void sp_register(const sp_peer *p)
{
    static const char *const versions[] = {"TLSv1.2", "TLSv1.3"};
    char name[160];
    for (int t = 0; t < 2; t++) {
        bool stdio = t == 1;
        const char *via = stdio ? "stdio" : "TCP";
        for (int v = 0; v < 2; v++) {
            const char *ver = versions[v];
            for (int e = 0; e < 2; e++) {
                const ix_pair *cert = e ? &IX->ecdsa : &IX->rsa;
                snprintf(name, sizeof(name), "TLS %s, %s, %s: a line each way, close_notify",
                         short_version(ver), e ? "ECDSA" : "RSA", via);
                both(p, stdio, name, lib_client_basic, peer_client_basic,
                     (sp_case){.version = ver, .cert = cert});
            }
            sp_case k = {.version = ver, .cert = &IX->ecdsa};
            snprintf(name, sizeof(name), "TLS %s, %s: ALPN", short_version(ver), via);
            both(p, stdio, name, lib_client_alpn, peer_client_alpn, k);
            snprintf(name, sizeof(name), "TLS %s, %s: SNI chooses the context",
                     short_version(ver), via);
            both(p, stdio, name, lib_client_sni, peer_client_sni, k);
            static const char *const certs[] = {"accepted", "missing", "untrusted"};
            for (int c = 0; c < 3; c++) {
                k.variant = c;
                snprintf(name, sizeof(name), "TLS %s, %s: client certificate required, %s",
                         short_version(ver), via, certs[c]);
                both(p, stdio, name, lib_client_cert, peer_client_cert, k);
            }
            if (!stdio)
                for (int s = 0; s < 2; s++) {
                    k.variant = s;
                    snprintf(name, sizeof(name), "TLS %s, TCP: resumption, %s",
                             short_version(ver),
                             s ? (v ? "session cache (no tickets)" : "session id")
                               : "session ticket");
                    if (s && v && p->no_tls13_session_cache) {
                        sp_dir d = dirs(p, stdio);
                        ix_unsupported(p->name, d.client, name, "%s", p->no_tls13_session_cache);
                        k.peer = p;
                        ix_case(p->name, d.server, name, peer_client_resume, keep(&k));
                    } else {
                        both(p, stdio, name, lib_client_resume, peer_client_resume, k);
                    }
                }
            sp_dir d = dirs(p, stdio);
            k.variant = 0;
            snprintf(name, sizeof(name), "TLS %s, %s: PSK", short_version(ver), via);
            if (!p->no_psk)
                both(p, stdio, name, lib_client_psk, peer_client_psk, k);
            snprintf(name, sizeof(name), "TLS %s, %s: OCSP stapling", short_version(ver), via);
            if (p->no_ocsp) {
                /* below, once for both versions */
            } else if (stdio && p->no_ocsp_stdio_server) {
                ix_unsupported(p->name, d.client, name, "%s", p->no_ocsp_stdio_server);
                k.peer = p;
                k.stdio = stdio;
                ix_case(p->name, d.server, name, peer_client_ocsp, keep(&k));
            } else {
                both(p, stdio, name, lib_client_ocsp, peer_client_ocsp, k);
            }
            static const char *const refusals[] = {"untrusted certificate", "wrong host name"};
            for (int f = 0; f < 2; f++) {
                k.variant = f;
                k.peer = p;
                k.stdio = stdio;
                snprintf(name, sizeof(name), "TLS %s, %s: our client refuses: %s",
                         short_version(ver), via, refusals[f]);
                ix_case(p->name, d.client, name, lib_client_refuses, keep(&k));
            }
        }
        sp_dir d = dirs(p, stdio);
        const char *missing[2][2] = {{"PSK", p->no_psk}, {"OCSP stapling", p->no_ocsp}};
        for (int m = 0; m < 2; m++) {
            if (!missing[m][1])
                continue;
            snprintf(name, sizeof(name), "TLS 1.2 and 1.3, %s: %s", via, missing[m][0]);
            ix_unsupported(p->name, d.client, name, "%s", missing[m][1]);
            ix_unsupported(p->name, d.server, name, "%s", missing[m][1]);
        }
        sp_case k = {.version = "TLSv1.3", .cert = &IX->ecdsa};
        for (int x = 0; x < 2; x++) {
            k.variant = x;
            snprintf(name, sizeof(name), "TLS 1.3, %s: 10 MiB %s, sha256", via,
                     x ? "from the peer" : "to the peer");
            both(p, stdio, name, lib_client_transfer, peer_client_transfer, k);
        }
        snprintf(name, sizeof(name), "TLS 1.3, %s: close_notify seen by the peer, "
                 "a bare EOF told apart", via);
#ifdef HAVE_LIBUV
        if (stdio)
            for (int x = 0; x < 2; x++) {
                k.variant = x;
                k.peer = p;
                k.stdio = true;
                char dir[96];
                snprintf(dir, sizeof(dir), x ? "%s → " IX_DXTLS : IX_DXTLS " → %s",
                         x ? p->stdio_client : p->stdio_server);
                ix_case(p->name, dir, "TLS 1.3, dxtls running the peer (exec:): a line, "
                        "close_notify", dxtls_exec, keep(&k));
            }
#endif
        if (stdio || !p->no_close_notify_tcp)
            both(p, stdio, name, lib_client_truncates, peer_client_truncates, k);
        else {
            ix_unsupported(p->name, d.client, name, "%s", p->no_close_notify_tcp);
            ix_unsupported(p->name, d.server, name, "%s", p->no_close_notify_tcp);
        }
    }
}
