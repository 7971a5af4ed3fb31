/*
 * The dxtls tool, end to end: the built ./dxtls run as a process (with
 * tests/peer.h), against itself, against openssl s_client and s_server,
 * and against TLS peers made here with the library, on loopback, pipes,
 * Unix sockets and pseudo-terminals. Certificates come from dx_pki,
 * written to a temporary directory.
 *
 * The --info lines are parsed as JSON and their fields checked.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/pkcs12.h>

#ifdef HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif

#include "harness.h"
#include "peer.h"

#define WAIT_MS 15000

/* ---- where things are ------------------------------------------------------------ */

static const char *builddir(void)
{
    const char *b = getenv("top_builddir");
    return b && *b ? b : ".";
}

static const char *srcdir(void)
{
    const char *s = getenv("top_srcdir");
    return s && *s ? s : ".";
}

static char dxtls_bin[512];

static const char *dxtls_path(void)
{
    if (!dxtls_bin[0])
        snprintf(dxtls_bin, sizeof(dxtls_bin), "%s/dxtls", builddir());
    return dxtls_bin;
}

/* ---- the test PKI, as files --------------------------------------------------------- */

typedef struct files {
    char dir[64];
    char ca[512], ca2[512];
    char srv[512], srv_key[512];
    char cli[512], cli_key[512];
    char other[512], other_key[512];
    char wild[512], wild_key[512];
    char stranger[512], stranger_key[512];
    char crl_revoking[512], crl_empty[512];
    char ocsp_good[512], ocsp_revoked[512];
    char keys48[512], keys47[512];
    char pfx[512];
    char garbage[512];
    char enc_key[512], pass_file[512];
} files;

static files F;
static dx_pki_cert *ca_cert, *srv_cert, *cli_cert;

static void put(char *slot, const char *name, const void *data, size_t len)
{
    snprintf(slot, 512, "%s", h_tmpfile(F.dir, name, data, len));
}

static dx_pki_cert *issue(const dx_pki_cert *issuer, const char *cn, const char *const *dns,
                          const char *const *ips, bool is_ca, unsigned eku)
{
    dx_pki_opts o = {.common_name = cn, .dns_names = dns, .ip_addresses = ips,
                     .is_ca = is_ca, .ext_key_usage = eku};
    dx_pki_cert *c = NULL;
    H_MUST(dx_pki_issue(issuer, &o, &c, NULL));
    return c;
}

static void put_pair(char *cert_slot, char *key_slot, const char *name, const dx_pki_cert *c)
{
    char n[64];
    snprintf(n, sizeof(n), "%s.pem", name);
    put(cert_slot, n, dx_pki_cert_pem(c), (size_t)-1);
    snprintf(n, sizeof(n), "%s.key", name);
    put(key_slot, n, dx_pki_key_pem(c), (size_t)-1);
}

/* A PKCS#12 archive of c under passphrase. */
static void put_pfx(const dx_pki_cert *c, const char *pass)
{
    X509 *x = h_pki_x509(c);
    EVP_PKEY *k = h_pki_key(c);
    PKCS12 *p12 = PKCS12_create(pass, "dxtls", k, x, NULL, 0, 0, 0, 0, 0);
    if (!p12)
        abort();
    unsigned char *der = NULL;
    int len = i2d_PKCS12(p12, &der);
    if (len <= 0)
        abort();
    put(F.pfx, "srv.pfx", der, (size_t)len);
    OPENSSL_free(der);
    PKCS12_free(p12);
    EVP_PKEY_free(k);
    X509_free(x);
}

static void make_files(void)
{
    static const char *const localhost[] = {"localhost", NULL};
    static const char *const loop_ip[] = {"127.0.0.1", NULL};
    static const char *const other[] = {"other.test", NULL};
    static const char *const wild[] = {"*.wild.test", NULL};
    h_tmpdir(F.dir);
    ca_cert = issue(NULL, "dxtls test CA", NULL, NULL, true, 0);
    dx_pki_cert *ca2 = issue(NULL, "another CA", NULL, NULL, true, 0);
    srv_cert = issue(ca_cert, "localhost", localhost, loop_ip, false, DX_PKI_EKU_SERVER);
    cli_cert = issue(ca_cert, "dxtls test client", NULL, NULL, false, DX_PKI_EKU_CLIENT);
    dx_pki_cert *oth = issue(ca_cert, "other.test", other, NULL, false, DX_PKI_EKU_SERVER);
    dx_pki_cert *wil = issue(ca_cert, "*.wild.test", wild, NULL, false, DX_PKI_EKU_SERVER);
    dx_pki_cert *str = issue(ca2, "localhost", localhost, loop_ip, false, DX_PKI_EKU_SERVER);
    put(F.ca, "ca.pem", dx_pki_cert_pem(ca_cert), (size_t)-1);
    put(F.ca2, "ca2.pem", dx_pki_cert_pem(ca2), (size_t)-1);
    put_pair(F.srv, F.srv_key, "srv", srv_cert);
    put_pair(F.cli, F.cli_key, "cli", cli_cert);
    put_pair(F.other, F.other_key, "other", oth);
    put_pair(F.wild, F.wild_key, "wild", wil);
    put_pair(F.stranger, F.stranger_key, "stranger", str);
    const dx_pki_cert *revoked[] = {srv_cert, NULL}, *none[] = {NULL};
    char *crl = h_make_crl(ca_cert, revoked);
    put(F.crl_revoking, "revoking.crl", crl, (size_t)-1);
    free(crl);
    crl = h_make_crl(ca_cert, none);
    put(F.crl_empty, "empty.crl", crl, (size_t)-1);
    free(crl);
    uint8_t *der;
    size_t len;
    H_MUST(dx_pki_ocsp_response(ca_cert, srv_cert, DX_PKI_OCSP_GOOD, -60, 3600, &der, &len));
    put(F.ocsp_good, "good.ocsp", der, len);
    dx_pki_ocsp_free(der);
    H_MUST(dx_pki_ocsp_response(ca_cert, srv_cert, DX_PKI_OCSP_REVOKED, -60, 3600, &der, &len));
    put(F.ocsp_revoked, "revoked.ocsp", der, len);
    dx_pki_ocsp_free(der);
    uint8_t keys[48];
    for (int i = 0; i < 48; i++)
        keys[i] = (uint8_t)(i * 7 + 3);
    put(F.keys48, "keys48", keys, 48);
    put(F.keys47, "keys47", keys, 47);
    put_pfx(srv_cert, "pfx secret");
    put(F.garbage, "garbage", "this is not a session", (size_t)-1);
    /* The server's key encrypted under a passphrase kept in a file. */
    EVP_PKEY *k = h_pki_key(srv_cert);
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || PEM_write_bio_PrivateKey(b, k, EVP_aes_128_cbc(), NULL, 0, NULL,
                                       (void *)"key secret") != 1)
        abort();
    char *pem = h_bio_text(b);
    put(F.enc_key, "enc.key", pem, (size_t)-1);
    free(pem);
    BIO_free(b);
    EVP_PKEY_free(k);
    put(F.pass_file, "pass.txt", "key secret\n", (size_t)-1);
    dx_pki_cert_free(ca2);
    dx_pki_cert_free(oth);
    dx_pki_cert_free(wil);
    dx_pki_cert_free(str);
}

static void free_files(void)
{
    h_tmpdir_remove(F.dir);
    dx_pki_cert_free(ca_cert);
    dx_pki_cert_free(srv_cert);
    dx_pki_cert_free(cli_cert);
    ca_cert = srv_cert = cli_cert = NULL;
}

/* A path in the test directory (rotating buffers). */
static const char *in_dir(const char *name)
{
    static char bufs[4][512];
    static unsigned turn;
    char *b = bufs[turn++ % 4];
    snprintf(b, 512, "%s/%s", F.dir, name);
    return b;
}

/* ---- running dxtls ------------------------------------------------------------------ */

#define MAX_ARGS 64

/* Starts dxtls with the NULL-terminated arguments. */
static void startv(h_peer *p, ...)
{
    const char *argv[MAX_ARGS];
    size_t n = 0;
    argv[n++] = dxtls_path();
    va_list ap;
    va_start(ap, p);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        ck_assert_uint_lt(n, MAX_ARGS - 1);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    h_peer_start(p, argv);
}

static void start_args(h_peer *p, const char *const *args)
{
    const char *argv[MAX_ARGS];
    size_t n = 0;
    argv[n++] = dxtls_path();
    for (; *args; args++) {
        ck_assert_uint_lt(n, MAX_ARGS - 1);
        argv[n++] = *args;
    }
    argv[n] = NULL;
    h_peer_start(p, argv);
}

static bool wait_for(h_peer *p, const char *text)
{
    return h_peer_wait_output(p, text, NULL, 0, WAIT_MS);
}

#define WAIT_FOR(p, text)                                                                     \
    ck_assert_msg(wait_for(p, text), "no \"%s\" in: %s", text, h_peer_output(p))

/* The port a dxtls listening on 127.0.0.1:0 printed. */
static unsigned listening(h_peer *p)
{
    WAIT_FOR(p, "listening on 127.0.0.1:");
    /* The line may still be arriving: wait for its end. */
    const char *at = NULL;
    int64_t end = h_now_ms() + WAIT_MS;
    for (;;) {
        at = strstr(h_peer_output(p), "listening on 127.0.0.1:");
        if (strchr(at, '\n') || h_now_ms() > end)
            break;
        usleep(2000);
    }
    unsigned port = (unsigned)strtoul(at + strlen("listening on 127.0.0.1:"), NULL, 10);
    ck_assert_uint_gt(port, 0);
    return port;
}

/* Stops a process that should be running: SIGTERM, and its exit status. */
static int term(h_peer *p)
{
    ck_assert_int_gt(p->pid, 0);
    kill(p->pid, SIGTERM);
    return h_peer_stop(p, WAIT_MS);
}

static const char *tcp_to(const char *host, unsigned port)
{
    static char bufs[4][64];
    static unsigned turn;
    char *b = bufs[turn++ % 4];
    snprintf(b, 64, "tcp:%s:%u", host, port);
    return b;
}

/* Runs a dxtls client that sends text on its stdin, waits for want in
 * its output (NULL: nothing), closes its stdin and returns its exit
 * status; the output stays in *p (free it). */
static int client_exchange(h_peer *p, const char *const *args, const char *text,
                           const char *want)
{
    start_args(p, args);
    if (text)
        h_peer_write(p, text);
    if (want)
        WAIT_FOR(p, want);
    return h_peer_stop(p, WAIT_MS);
}

/* ---- a small JSON reader, for the --info lines ----------------------------------------- */

typedef struct jv {
    char t; /* 'o' object, 'a' array, 's' string, 'n' number, 'b' boolean, 'z' null */
    char *key;
    char *s;
    double n;
    bool b;
    struct jv *kid, *next;
} jv;

static void jfree(jv *v)
{
    while (v) {
        jv *next = v->next;
        jfree(v->kid);
        free(v->key);
        free(v->s);
        free(v);
        v = next;
    }
}

static const char *jws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    return p;
}

static char *jstring(const char **pp)
{
    const char *p = *pp;
    if (*p != '"')
        return NULL;
    p++;
    size_t cap = 64, n = 0;
    char *out = malloc(cap);
    while (out && *p && *p != '"') {
        char c = *p++;
        if (c == '\\') {
            c = *p++;
            switch (c) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': {
                unsigned v = 0;
                for (int i = 0; i < 4; i++) {
                    char h = p[i];
                    v = v * 16 + (unsigned)(h >= 'a' ? h - 'a' + 10 : h >= 'A' ? h - 'A' + 10
                                                                         : h - '0');
                }
                p += 4;
                c = v < 0x80 ? (char)v : '?';
                break;
            }
            case '\0': free(out); return NULL;
            default: break;
            }
        }
        if (n + 2 > cap) {
            char *o = realloc(out, cap *= 2);
            if (!o) {
                free(out);
                return NULL;
            }
            out = o;
        }
        out[n++] = c;
    }
    if (!out || *p != '"') {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    *pp = p + 1;
    return out;
}

static jv *jvalue(const char **pp);

static jv *jcontainer(const char **pp, char close, char type)
{
    jv *v = calloc(1, sizeof(*v)), **tail = &v->kid;
    v->t = type;
    const char *p = jws(*pp + 1);
    if (*p == close) {
        *pp = p + 1;
        return v;
    }
    for (;;) {
        char *key = NULL;
        if (type == 'o') {
            key = jstring(&p);
            p = jws(p);
            if (!key || *p != ':') {
                free(key);
                jfree(v);
                return NULL;
            }
            p = jws(p + 1);
        }
        jv *k = jvalue(&p);
        if (!k) {
            free(key);
            jfree(v);
            return NULL;
        }
        k->key = key;
        *tail = k;
        tail = &k->next;
        p = jws(p);
        if (*p == ',') {
            p = jws(p + 1);
            continue;
        }
        if (*p != close) {
            jfree(v);
            return NULL;
        }
        *pp = p + 1;
        return v;
    }
}

static jv *jvalue(const char **pp)
{
    const char *p = jws(*pp);
    jv *v = NULL;
    if (*p == '{' || *p == '[') {
        *pp = p;
        return jcontainer(pp, *p == '{' ? '}' : ']', *p == '{' ? 'o' : 'a');
    }
    v = calloc(1, sizeof(*v));
    if (*p == '"') {
        v->t = 's';
        if (!(v->s = jstring(&p))) {
            free(v);
            return NULL;
        }
    } else if (!strncmp(p, "true", 4) || !strncmp(p, "false", 5)) {
        v->t = 'b';
        v->b = *p == 't';
        p += v->b ? 4 : 5;
    } else if (!strncmp(p, "null", 4)) {
        v->t = 'z';
        p += 4;
    } else {
        char *end;
        v->t = 'n';
        v->n = strtod(p, &end);
        if (end == p) {
            free(v);
            return NULL;
        }
        p = end;
    }
    *pp = p;
    return v;
}

/* The member at a dotted path ("peerCertificate.subject.CN"), or NULL. */
static const jv *jget(const jv *v, const char *path)
{
    char part[64];
    while (v && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        snprintf(part, sizeof(part), "%.*s", (int)n, path);
        const jv *k = v->t == 'o' ? v->kid : NULL;
        while (k && strcmp(k->key, part))
            k = k->next;
        v = k;
        path = dot ? dot + 1 : path + n;
    }
    return v;
}

static const char *jstr(const jv *root, const char *path)
{
    const jv *v = jget(root, path);
    ck_assert_msg(v && v->t == 's', "%s is not a string", path);
    return v->s;
}

static bool jbool(const jv *root, const char *path)
{
    const jv *v = jget(root, path);
    ck_assert_msg(v && v->t == 'b', "%s is not a boolean", path);
    return v->b;
}

static bool jnull(const jv *root, const char *path)
{
    const jv *v = jget(root, path);
    ck_assert_msg(v != NULL, "%s is missing", path);
    return v->t == 'z';
}

static size_t jcount(const jv *root, const char *path)
{
    const jv *v = jget(root, path);
    ck_assert_msg(v && (v->t == 'o' || v->t == 'a'), "%s is not an object", path);
    size_t n = 0;
    for (const jv *k = v->kid; k; k = k->next)
        n++;
    return n;
}

/* The nth (from 0) --info line of role in text, parsed; fails the test
 * when there is none. */
static jv *info_of(const char *text, const char *role, int nth)
{
    char want[64];
    snprintf(want, sizeof(want), "\"role\":\"%s\"", role);
    for (const char *p = text; (p = strstr(p, "{\"id\":")) != NULL; p++) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char *line = strndup(p, len);
        bool match = strstr(line, want) != NULL;
        if (match && nth-- == 0) {
            const char *q = line;
            jv *v = jvalue(&q);
            ck_assert_msg(v && v->t == 'o' && *jws(q) == '\0', "not one JSON object: %s", line);
            free(line);
            return v;
        }
        free(line);
    }
    ck_abort_msg("no --info line %d of the %s in: %s", nth, role, text);
    return NULL;
}

/* ---- TLS peers made here --------------------------------------------------------------- */

static dx_tls_ctx *ctx_of(const dx_pki_cert *trust, const dx_pki_cert *present, const char *maxv)
{
    dx_tls_config *cfg;
    dx_tls_ctx *ctx = NULL;
    ck_assert_int_eq(dx_tls_config_new(&cfg), 0);
    if (trust) {
        const char *pem = dx_pki_cert_pem(trust);
        ck_assert_int_eq(dx_tls_config_add_ca(cfg, pem, strlen(pem)), 0);
    }
    if (present) {
        const char *c = dx_pki_cert_pem(present), *k = dx_pki_key_pem(present);
        ck_assert_int_eq(dx_tls_config_add_cert(cfg, c, strlen(c), k, strlen(k), NULL), 0);
    }
    if (maxv)
        ck_assert_int_eq(dx_tls_config_set_max_version(cfg, maxv), 0);
    ck_assert_int_eq(dx_tls_ctx_new(cfg, &ctx, NULL), 0);
    dx_tls_config_free(cfg);
    return ctx;
}

/* One TLS connection of ours over a descriptor, its cleartext recorded. */
typedef struct conn {
    dx_tls *t;
    dx_stream *transport;
    h_rec rec;
    bool secure;
    bool echo; /* send back what arrives, end when the peer ends */
    size_t echoed;
} conn;

static void conn_secure(dx_tls *t, void *u)
{
    (void)t;
    ((conn *)u)->secure = true;
}

static const dx_tls_events conn_tls_events = {.on_secure = conn_secure};

static void conn_event(h_rec *r, char ev)
{
    conn *c = r->ctx;
    if (!c->echo)
        return;
    if (ev == H_EV_DATA && r->len > c->echoed) {
        dx_stream_write(r->s, r->data + c->echoed, r->len - c->echoed);
        c->echoed = r->len;
    }
    if (ev == H_EV_END)
        dx_stream_end(r->s);
}

static void conn_open_ex(conn *c, dx_tls_ctx *ctx, dx_tls_role role, int fd, const char *sni,
                         bool half_open)
{
    memset(c, 0, sizeof(*c));
    ck_assert_int_eq(dx_fd_stream_new(fd, fd, DX_FD_CLOSE, &c->transport), 0);
    ck_assert_int_eq(dx_tls_new(ctx, role, &c->t), 0);
    if (sni)
        ck_assert_int_eq(dx_tls_set_servername(c->t, sni), 0);
    ck_assert_int_eq(dx_tls_set_allow_half_open(c->t, half_open), 0);
    dx_tls_set_events(c->t, &conn_tls_events, c);
    c->rec.keep_data = true;
    c->rec.ctx = c;
    c->rec.on_event = conn_event;
    h_rec_attach(&c->rec, dx_tls_upper(c->t));
    ck_assert_int_eq(dx_tls_attach(c->t, c->transport), 0);
    ck_assert_int_eq(dx_tls_start(c->t), 0);
}

static void conn_open(conn *c, dx_tls_ctx *ctx, dx_tls_role role, int fd, const char *sni)
{
    conn_open_ex(c, ctx, role, fd, sni, false);
}

static void conn_close(conn *c)
{
    dx_tls_destroy(c->t);
    h_rec_free(&c->rec);
}

static bool conn_secure_p(void *arg) { return ((conn *)arg)->secure; }
static bool conn_closed_p(void *arg) { return ((conn *)arg)->rec.closes > 0; }
static bool conn_ended_p(void *arg) { return ((conn *)arg)->rec.ends > 0; }

typedef struct conn_wait {
    conn *c;
    const char *text;
} conn_wait;

static bool conn_got(void *arg)
{
    conn_wait *w = arg;
    return w->c->rec.len >= strlen(w->text) &&
           memmem(w->c->rec.data, w->c->rec.len, w->text, strlen(w->text)) != NULL;
}

/* ---- the command line -------------------------------------------------------------------- */

static const char *const option_names[] = {
    "--server", "--client", "--cert", "--key", "--pass", "--pfx", "--ca", "--crl",
    "--ciphers", "--ciphersuites", "--groups", "--sigalgs", "--min-version", "--max-version",
    "--alpn", "--max-fragment", "--servername", "--sni", "--insecure", "--request-cert",
    "--require-cert", "--psk", "--psk-hint", "--session-out", "--session-in",
    "--ticket-keys", "--no-tickets", "--session-store", "--ocsp-response", "--request-ocsp",
    "--handshake-timeout", "--idle-timeout", "--keylog", "--trace", "--progress", "--info",
    "--quiet", "--verbose", "--allow-truncation", "--help", "--version", NULL,
};

static const char *const endpoint_names[] = {
    "exec:COMMAND", "tcp:HOST:PORT", "tcp-listen:[HOST:]PORT", "unix:PATH", "unix-listen:PATH",
    "serial:PATH[,baud=N]", "pty", "fd:N[,M]", "echo", NULL,
};

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - 1 - n, f)) > 0) {
        n += r;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The man page as text, rendered by groff. */
static char *man_text(void)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "groff -man -Tascii -P-cbou '%s/doc/man/dxtls.1' 2>/dev/null",
             srcdir());
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    while ((r = fread(buf + n, 1, cap - 1 - n, f)) > 0) {
        n += r;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    ck_assert_int_eq(pclose(f), 0);
    return buf;
}

/* --help and dxtls(1) name every option, endpoint and exit status. */
START_TEST(help_and_man_page_list_everything)
{
    h_peer p;
    startv(&p, "--help", NULL);
    ck_assert_int_eq(h_peer_stop(&p, WAIT_MS), 0);
    const char *help = h_peer_output(&p);
    char *man = man_text();
    for (const char *const *o = option_names; *o; o++) {
        ck_assert_msg(strstr(help, *o), "--help does not list %s", *o);
        ck_assert_msg(strstr(man, *o), "dxtls(1) does not list %s", *o);
    }
    for (const char *const *e = endpoint_names; *e; e++) {
        ck_assert_msg(strstr(help, *e), "--help does not list %s", *e);
        ck_assert_msg(strstr(man, *e), "dxtls(1) does not list %s", *e);
    }
    static const char *const statuses[] = {"0 after a clean close", "1 on a TLS failure",
                                           "2 on bad usage", "3 on a transport failure", NULL};
    for (const char *const *st = statuses; *st; st++)
        ck_assert_msg(strstr(help, *st), "--help does not say \"%s\"", *st);
    ck_assert_ptr_nonnull(strstr(man, "EXIT STATUS"));
    ck_assert_ptr_nonnull(strstr(man, "EXAMPLES"));
    free(man);
    h_peer_free(&p);
    startv(&p, "--version", NULL);
    ck_assert_int_eq(h_peer_stop(&p, WAIT_MS), 0);
    ck_assert_ptr_nonnull(strstr(h_peer_output(&p), "dxtls " PACKAGE_VERSION));
    h_peer_free(&p);
}
END_TEST

/* --session-store with a client or with --ticket-keys is a bad pair; in a
 * dxtls built without Redis the option itself is refused first. */
#ifdef HAVE_HIREDIS
#define STORE_PAIR_ERROR "ERR_INCOMPATIBLE_OPTION_PAIR"
#else
#define STORE_PAIR_ERROR "ERR_INVALID_ARG_VALUE"
#endif

/* Bad usage: exit status 2 and one line that names the mistake with its
 * code. */
static const struct usage_case {
    const char *args[8];
    const char *code;
} usage_cases[] = {
    {{"--frobnicate", "-", "echo"}, "ERR_PARSE_ARGS_UNKNOWN_OPTION"},
    {{"-"}, "ERR_MISSING_ARGS"},
    {{"-", "echo", "extra"}, "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL"},
    {{"-", "tcp:localhost"}, "ERR_INVALID_ARG_VALUE"},
    {{"-", "tcp:localhost:70000"}, "ERR_INVALID_ARG_VALUE"},
    {{"-", "carrier-pigeon:1"}, "ERR_INVALID_ARG_VALUE"},
    {{"-", "serial:/dev/ttyS0,baud=12345"}, "ERR_INVALID_ARG_VALUE"},
    {{"-", "fd:x"}, "ERR_INVALID_ARG_VALUE"},
    {{"--ca"}, "ERR_PARSE_ARGS_INVALID_OPTION_VALUE"},
    {{"--insecure=yes", "-", "echo"}, "ERR_PARSE_ARGS_INVALID_OPTION_VALUE"},
    {{"--max-fragment", "100", "-", "echo"}, "ERR_INVALID_ARG_VALUE"},
    {{"--idle-timeout", "soon", "-", "echo"}, "ERR_INVALID_ARG_VALUE"},
    {{"--psk", "nokey", "-", "echo"}, "ERR_INVALID_ARG_VALUE"},
    {{"--psk", "id:abc", "-", "echo"}, "ERR_INVALID_ARG_VALUE"},
    {{"--alpn", "h2,,x", "-", "echo"}, "ERR_INVALID_ARG_VALUE"},
    {{"--server", "-", "echo"}, "ERR_MISSING_OPTION"},
    {{"--sni", "a:b:c", "-", "echo"}, "ERR_INCOMPATIBLE_OPTION_PAIR"},
    {{"--server", "--psk", "a:00", "--insecure", "-", "echo"}, "ERR_INCOMPATIBLE_OPTION_PAIR"},
    {{"--psk", "a:00", "--psk", "b:01", "-", "echo"}, "ERR_INCOMPATIBLE_OPTION_PAIR"},
    {{"tcp-listen:0", "unix-listen:/tmp/x"}, "ERR_INVALID_ARG_VALUE"},
    {{"--min-version", "TLSv9", "-", "echo"}, "ERR_TLS_INVALID_PROTOCOL_VERSION"},
    {{"--ciphers", "NO-SUCH-CIPHER", "-", "echo"}, "ERR_SSL_NO_CIPHER_MATCH"},
    {{"--session-store", "redis://127.0.0.1", "-", "echo"}, STORE_PAIR_ERROR},
    {{"--server", "--psk", "a:00", "--session-store=redis://127.0.0.1", "--ticket-keys=k", "-",
      "echo"},
     STORE_PAIR_ERROR},
    {{"--server", "--psk", "a:00", "--session-store", "http://127.0.0.1", "-", "echo"},
     "ERR_INVALID_ARG_VALUE"},
};

START_TEST(bad_usage_exits_2_with_one_line)
{
    const struct usage_case *c = &usage_cases[_i];
    h_peer p;
    start_args(&p, c->args);
    ck_assert_int_eq(h_peer_stop(&p, WAIT_MS), 2);
    const char *out = h_peer_output(&p);
    ck_assert_msg(!strncmp(out, "dxtls: ", 7), "%s", out);
    ck_assert_msg(strstr(out, c->code), "want %s in: %s", c->code, out);
    const char *nl = strchr(out, '\n');
    ck_assert_msg(nl && nl[1] == '\0', "not one line: %s", out);
    h_peer_free(&p);
}
END_TEST

/* Files the options name are read at start: a mistake there is bad
 * usage too. */
START_TEST(bad_files_exit_2)
{
    const char *cases[][10] = {
        {"--ca", in_dir("missing.pem"), "-", "echo", NULL},
        {"--server", "--cert", F.srv, "--key", F.cli_key, "echo", "-", NULL},
        {"--session-in", F.garbage, "-", "echo", NULL},
        {"--server", "--cert", F.srv, "--key", F.srv_key, "--ticket-keys", F.keys47, "echo",
         "-"},
        {"--server", "--pfx", F.pfx, "--pass", "wrong", "echo", "-", NULL},
        {"--server", "--pfx", F.pfx, "--pass", "env:DXTLS_NO_SUCH_VARIABLE", "echo", "-"},
        {"--keylog", in_dir("no/such/dir/keys"), "-", "echo", NULL},
#ifdef HAVE_HIREDIS
        {"--server", "--psk", "a:00", "--session-store", "redis://:secret@127.0.0.1:99999",
         "echo", "-", NULL},
#endif
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[11] = {0};
        memcpy(args, cases[i], sizeof(cases[i]));
        h_peer p;
        start_args(&p, args);
        ck_assert_int_eq(h_peer_stop(&p, WAIT_MS), 2);
        const char *out = h_peer_output(&p);
        const char *nl = strchr(out, '\n');
        ck_assert_msg(!strncmp(out, "dxtls: ", 7) && nl && nl[1] == '\0', "case %zu: %s", i,
                      out);
        ck_assert_msg(!strstr(out, "secret"), "a password shown: %s", out); /* --session-store */
        h_peer_free(&p);
    }
}
END_TEST

START_TEST(demo_shows_both_sides_and_exits_0)
{
    h_peer p;
    startv(&p, "demo", NULL);
    int status = h_peer_stop(&p, WAIT_MS);
    const char *out = h_peer_output(&p);
    ck_assert_msg(status == 0, "%s", out);
    const char *srv = strstr(out, "server: handshake complete");
    const char *cli = strstr(out, "client: handshake complete");
    ck_assert_msg(srv && cli && srv < cli, "%s", out);
    ck_assert_ptr_nonnull(strstr(srv, "authorized      yes"));
    ck_assert_ptr_nonnull(strstr(cli, "authorized      yes"));
    ck_assert_ptr_nonnull(strstr(cli, "ALPN protocol   dxtls-demo"));
    ck_assert_ptr_nonnull(strstr(cli, "peer            CN=demo.localhost"));
    ck_assert_ptr_nonnull(strstr(srv, "peer            CN=dxtls demo client"));
    ck_assert_ptr_nonnull(strstr(out, "client: echoed  \"Hello from the client"));
    ck_assert_ptr_nonnull(strstr(out, "demo: ok"));
    h_peer_free(&p);
}
END_TEST

/* ---- the roles and the --info line ---------------------------------------------------- */

static const char *const versions[] = {"TLSv1.2", "TLSv1.3"};

START_TEST(client_and_server_over_tcp_report_node_fields)
{
    const char *v = versions[_i];
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "--max-version", v, "--info",
           "echo", "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    const char *args[] = {"--ca", F.ca, "--info", "-", tcp_to("localhost", port), NULL};
    int status = client_exchange(&cl, args, "ping over TLS\n", "ping over TLS\n");
    const char *out = h_peer_output(&cl);
    ck_assert_msg(status == 0, "client: %s", out);
    jv *c = info_of(out, "client", 0);
    ck_assert_str_eq(jstr(c, "protocol"), v);
    ck_assert_str_ne(jstr(c, "cipher.name"), "");
    ck_assert_str_ne(jstr(c, "cipher.standardName"), "");
    ck_assert_str_eq(jstr(c, "cipher.version"), strcmp(v, "TLSv1.3") ? "TLSv1.2" : "TLSv1.3");
    ck_assert(!jbool(c, "alpnProtocol"));
    ck_assert_str_eq(jstr(c, "servername"), "localhost");
    ck_assert(jbool(c, "authorized"));
    ck_assert(jnull(c, "authorizationError"));
    ck_assert(!jbool(c, "sessionReused"));
    ck_assert_str_eq(jstr(c, "peerCertificate.subject.CN"), "localhost");
    ck_assert_str_eq(jstr(c, "peerCertificate.issuer.CN"), "dxtls test CA");
    ck_assert_str_eq(jstr(c, "peerCertificate.subjectaltname"),
                     "DNS:localhost, IP Address:127.0.0.1");
    /* The fields the certificate object gives. */
    dx_tls_cert *x;
    const uint8_t *der;
    size_t len;
    ck_assert_int_eq(dx_pki_cert_der(srv_cert, &der, &len), 0);
    ck_assert_int_eq(dx_tls_cert_from_der(der, len, &x, NULL), 0);
    ck_assert_str_eq(jstr(c, "peerCertificate.serialNumber"), dx_tls_cert_serial(x));
    ck_assert_str_eq(jstr(c, "peerCertificate.fingerprint256"),
                     dx_tls_cert_fingerprint(x, DX_TLS_SHA256));
    ck_assert_str_eq(jstr(c, "peerCertificate.valid_from"), dx_tls_cert_valid_from(x));
    ck_assert_str_eq(jstr(c, "peerCertificate.valid_to"), dx_tls_cert_valid_to(x));
    dx_tls_cert_free(x);
    ck_assert_str_eq(jstr(c, "ephemeralKeyInfo.type"), "ECDH");
    ck_assert_str_eq(jstr(c, "ephemeralKeyInfo.name"), "X25519");
    ck_assert(jget(c, "ephemeralKeyInfo.size")->n > 0);
    jfree(c);
    h_peer_free(&cl);

    /* The server's line: the name it was asked for, no client
     * certificate. */
    WAIT_FOR(&srv, "\"role\":\"server\"");
    ck_assert_int_eq(term(&srv), 0);
    jv *s = info_of(h_peer_output(&srv), "server", 0);
    ck_assert_str_eq(jstr(s, "protocol"), v);
    ck_assert_str_eq(jstr(s, "servername"), "localhost");
    ck_assert(!jbool(s, "authorized"));
    ck_assert_uint_eq(jcount(s, "peerCertificate"), 0);
    jfree(s);
    h_peer_free(&srv);
}
END_TEST

/* Sessions saved by one client resume in the next. */
START_TEST(session_out_then_in_resumes)
{
    const char *v = versions[_i];
    const char *sess = in_dir(_i ? "session13" : "session12");
    unlink(sess);
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "--max-version", v, "--info",
           "echo", "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    const char *first[] = {"--ca", F.ca, "--info", "--session-out", sess, "-",
                           tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, first, "one\n", "one\n"), 0);
    jv *c = info_of(h_peer_output(&cl), "client", 0);
    ck_assert(!jbool(c, "sessionReused"));
    jfree(c);
    h_peer_free(&cl);
    struct stat st;
    ck_assert_int_eq(stat(sess, &st), 0);
    ck_assert_int_gt(st.st_size, 0);
    ck_assert_int_eq(st.st_mode & 077, 0); /* secrets: the owner's alone */

    const char *second[] = {"--ca", F.ca, "--info", "--session-in", sess, "-",
                            tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, second, "two\n", "two\n"), 0);
    c = info_of(h_peer_output(&cl), "client", 0);
    ck_assert(jbool(c, "sessionReused"));
    ck_assert(jbool(c, "authorized"));
    ck_assert_str_eq(jstr(c, "protocol"), v);
    jfree(c);
    h_peer_free(&cl);
    WAIT_FOR(&srv, "\"sessionReused\":true");
    ck_assert_int_eq(term(&srv), 0);
    jv *s = info_of(h_peer_output(&srv), "server", 1);
    ck_assert(jbool(s, "sessionReused"));
    jfree(s);
    h_peer_free(&srv);
}
END_TEST

/* Servers that share --ticket-keys accept each other's tickets; others
 * do not. */
START_TEST(ticket_keys_shared_between_servers)
{
    const char *sess = in_dir("session-tk");
    unlink(sess);
    h_peer a, b, c, cl;
    startv(&a, "--server", "--cert", F.srv, "--key", F.srv_key, "--ticket-keys", F.keys48,
           "echo", "tcp-listen:127.0.0.1:0", NULL);
    startv(&b, "--server", "--cert", F.srv, "--key", F.srv_key, "--ticket-keys", F.keys48,
           "echo", "tcp-listen:127.0.0.1:0", NULL);
    startv(&c, "--server", "--cert", F.srv, "--key", F.srv_key, "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    unsigned pa = listening(&a), pb = listening(&b), pc = listening(&c);
    const char *first[] = {"--ca", F.ca, "--session-out", sess, "-", tcp_to("localhost", pa),
                           NULL};
    ck_assert_int_eq(client_exchange(&cl, first, "a\n", "a\n"), 0);
    h_peer_free(&cl);
    const char *to_b[] = {"--ca", F.ca, "--info", "--session-in", sess, "-",
                          tcp_to("localhost", pb), NULL};
    ck_assert_int_eq(client_exchange(&cl, to_b, "b\n", "b\n"), 0);
    jv *j = info_of(h_peer_output(&cl), "client", 0);
    ck_assert(jbool(j, "sessionReused"));
    jfree(j);
    h_peer_free(&cl);
    const char *to_c[] = {"--ca", F.ca, "--info", "--session-in", sess, "-",
                          tcp_to("localhost", pc), NULL};
    ck_assert_int_eq(client_exchange(&cl, to_c, "c\n", "c\n"), 0);
    j = info_of(h_peer_output(&cl), "client", 0);
    ck_assert(!jbool(j, "sessionReused"));
    jfree(j);
    h_peer_free(&cl);
    ck_assert_int_eq(term(&a), 0);
    ck_assert_int_eq(term(&b), 0);
    ck_assert_int_eq(term(&c), 0);
    h_peer_free(&a);
    h_peer_free(&b);
    h_peer_free(&c);
}
END_TEST

/* --no-tickets: a TLS 1.2 client gets no ticket to resume with (the
 * session id still resumes on the same server). */
START_TEST(no_tickets_sends_no_ticket)
{
    const char *sess = in_dir("session-nt");
    unlink(sess);
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "--no-tickets",
           "--max-version", "TLSv1.2", "echo", "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    const char *first[] = {"--ca", F.ca, "--session-out", sess, "-", tcp_to("localhost", port),
                           NULL};
    ck_assert_int_eq(client_exchange(&cl, first, "a\n", "a\n"), 0);
    h_peer_free(&cl);
    /* The saved session holds no ticket: the session ticket extension's
     * type (0x0023) followed by a length is absent from its id-based
     * form; it resumes by id here. */
    const char *again[] = {"--ca", F.ca, "--info", "--session-in", sess, "-",
                           tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, again, "b\n", "b\n"), 0);
    jv *j = info_of(h_peer_output(&cl), "client", 0);
    ck_assert(jbool(j, "sessionReused"));
    jfree(j);
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
    /* The same session does not resume at a server whose cache never
     * saw it, which a ticket would have allowed. */
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "--no-tickets",
           "--max-version", "TLSv1.2", "echo", "tcp-listen:127.0.0.1:0", NULL);
    port = listening(&srv);
    const char *other[] = {"--ca", F.ca, "--info", "--session-in", sess, "-",
                           tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, other, "c\n", "c\n"), 0);
    j = info_of(h_peer_output(&cl), "client", 0);
    ck_assert(!jbool(j, "sessionReused"));
    jfree(j);
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
}
END_TEST

/* Pre-shared keys: no certificate anywhere; TLS 1.2 with a PSK suite. */
START_TEST(psk_without_certificates)
{
    const char *v = versions[_i];
    const char *ciphers = _i ? "TLS_AES_128_GCM_SHA256" : "PSK-AES128-GCM-SHA256";
    h_peer srv, cl;
    startv(&srv, "--server", "--psk", "other:0102030405060708", "--psk",
           "dxtls-client:00112233445566778899aabbccddeeff", "--psk-hint", "dxtls hint",
           "--ciphers", ciphers, "--max-version", v, "--info", "echo", "tcp-listen:127.0.0.1:0",
           NULL);
    unsigned port = listening(&srv);
    const char *good[] = {"--psk", "dxtls-client:00112233445566778899AABBCCDDEEFF", "--ciphers",
                          ciphers, "--max-version", v, "--info", "--trace", "-",
                          tcp_to("127.0.0.1", port), NULL};
    int status = client_exchange(&cl, good, "keyed\n", "keyed\n");
    ck_assert_msg(status == 0, "%s", h_peer_output(&cl));
    if (_i == 0) /* the hint, "dxtls hint", in the ServerKeyExchange of TLS 1.2 */
        ck_assert_ptr_nonnull(
            strstr(h_peer_output(&cl), "psk_identity_hint (len=10): 6478746C732068696E74"));
    jv *c = info_of(h_peer_output(&cl), "client", 0);
    ck_assert_str_eq(jstr(c, "protocol"), v);
    ck_assert(jbool(c, "authorized"));
    ck_assert_uint_eq(jcount(c, "peerCertificate"), 0);
    jfree(c);
    h_peer_free(&cl);
    /* A wrong key fails the handshake. */
    const char *bad[] = {"--psk", "dxtls-client:00112233445566778899aabbccddee00", "--ciphers",
                         ciphers, "--max-version", v, "-", tcp_to("127.0.0.1", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, bad, NULL, NULL), 1);
    ck_assert_ptr_nonnull(strstr(h_peer_output(&cl), "dxtls: ERR_SSL_"));
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
}
END_TEST

/* --sni serves names (and a wildcard) with their own certificates; other
 * names get the default one. */
START_TEST(sni_chooses_the_certificate)
{
    char other[1100], wild[1100];
    snprintf(other, sizeof(other), "other.test:%s:%s", F.other, F.other_key);
    snprintf(wild, sizeof(wild), "*.wild.test:%s:%s", F.wild, F.wild_key);
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "--sni", other, "--sni", wild,
           "echo", "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    const char *names[][2] = {{"other.test", "other.test"},
                              {"a.wild.test", "*.wild.test"},
                              {"localhost", "localhost"}};
    for (int i = 0; i < 3; i++) {
        const char *args[] = {"--ca", F.ca, "--servername", names[i][0], "--info", "-",
                              tcp_to("127.0.0.1", port), NULL};
        ck_assert_int_eq(client_exchange(&cl, args, "sni\n", "sni\n"), 0);
        jv *c = info_of(h_peer_output(&cl), "client", 0);
        ck_assert_str_eq(jstr(c, "servername"), names[i][0]);
        ck_assert_str_eq(jstr(c, "peerCertificate.subject.CN"), names[i][1]);
        ck_assert(jbool(c, "authorized"));
        jfree(c);
        h_peer_free(&cl);
    }
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
}
END_TEST

START_TEST(alpn_chooses_and_refuses)
{
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "--alpn", "h2,http/1.1",
           "--info", "echo", "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    const char *h1[] = {"--ca", F.ca, "--alpn", "spdy/3,http/1.1", "--info", "-",
                        tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, h1, "alpn\n", "alpn\n"), 0);
    jv *c = info_of(h_peer_output(&cl), "client", 0);
    ck_assert_str_eq(jstr(c, "alpnProtocol"), "http/1.1");
    jfree(c);
    h_peer_free(&cl);
    const char *none[] = {"--ca", F.ca, "--info", "-", tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, none, "alpn\n", "alpn\n"), 0);
    c = info_of(h_peer_output(&cl), "client", 0);
    ck_assert(!jbool(c, "alpnProtocol"));
    jfree(c);
    h_peer_free(&cl);
    const char *wrong[] = {"--ca", F.ca, "--alpn", "gopher", "-", tcp_to("localhost", port),
                           NULL};
    ck_assert_int_eq(client_exchange(&cl, wrong, NULL, NULL), 1);
    ck_assert_ptr_nonnull(strstr(h_peer_output(&cl), "NO_APPLICATION_PROTOCOL"));
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    /* The server goes on after a refused client, and says why. */
    ck_assert_ptr_nonnull(strstr(h_peer_output(&srv), "NO_APPLICATION_PROTOCOL"));
    h_peer_free(&srv);
}
END_TEST

/* The server staples its --ocsp-response; a --request-ocsp client checks
 * it. */
START_TEST(ocsp_staple_requested_and_checked)
{
    h_peer srv, cl;
    const char *resp = _i ? F.ocsp_revoked : F.ocsp_good;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "--ocsp-response", resp,
           "echo", "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    const char *args[] = {"--ca", F.ca, "--request-ocsp", "--info", "-",
                          tcp_to("localhost", port), NULL};
    if (_i == 0) {
        ck_assert_int_eq(client_exchange(&cl, args, "stapled\n", "stapled\n"), 0);
        jv *c = info_of(h_peer_output(&cl), "client", 0);
        ck_assert_str_eq(jstr(c, "ocspStatus"), "good");
        ck_assert(jbool(c, "authorized"));
        jfree(c);
    } else {
        ck_assert_int_eq(client_exchange(&cl, args, NULL, NULL), 1);
        ck_assert_ptr_nonnull(strstr(h_peer_output(&cl), "dxtls: CERT_REVOKED: "));
    }
    h_peer_free(&cl);
    /* Without --request-ocsp nothing is asked, nothing checked. */
    const char *plain[] = {"--ca", F.ca, "--info", "-", tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, plain, "plain\n", "plain\n"), 0);
    jv *c = info_of(h_peer_output(&cl), "client", 0);
    ck_assert_ptr_null(jget(c, "ocspStatus"));
    jfree(c);
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
}
END_TEST

/* --require-cert refuses clients without a valid certificate and goes
 * on; --request-cert accepts them, unauthorized. */
START_TEST(client_certificates_required_or_requested)
{
    bool require = _i == 0;
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "--ca", F.ca,
           require ? "--require-cert" : "--request-cert", "--info", "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    const char *bare[] = {"--ca", F.ca, "--max-version", "TLSv1.2", "-",
                          tcp_to("localhost", port), NULL};
    if (require) {
        ck_assert_int_eq(client_exchange(&cl, bare, NULL, NULL), 1);
        ck_assert_ptr_nonnull(strstr(h_peer_output(&cl), "dxtls: ERR_SSL_"));
    } else {
        ck_assert_int_eq(client_exchange(&cl, bare, "bare\n", "bare\n"), 0);
    }
    h_peer_free(&cl);
    const char *with[] = {"--ca", F.ca, "--cert", F.cli, "--key", F.cli_key, "-",
                          tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, with, "with\n", "with\n"), 0);
    h_peer_free(&cl);
    WAIT_FOR(&srv, "dxtls test client");
    ck_assert_int_eq(term(&srv), 0);
    const char *out = h_peer_output(&srv);
    if (require) {
        ck_assert_msg(strstr(out, "dxtls: [1] ") != NULL, "%s", out); /* the refusal, one line */
        jv *s = info_of(out, "server", 0);
        ck_assert(jbool(s, "authorized"));
        ck_assert_str_eq(jstr(s, "peerCertificate.subject.CN"), "dxtls test client");
        jfree(s);
    } else {
        jv *s = info_of(out, "server", 0);
        ck_assert(!jbool(s, "authorized"));
        ck_assert_uint_eq(jcount(s, "peerCertificate"), 0);
        jfree(s);
        s = info_of(out, "server", 1);
        ck_assert(jbool(s, "authorized"));
        ck_assert_str_eq(jstr(s, "peerCertificate.subject.CN"), "dxtls test client");
        jfree(s);
    }
    h_peer_free(&srv);
}
END_TEST

/* A server that fails verification: exit 1 and its code; --insecure goes
 * on and says why in --info. */
START_TEST(verification_failures_exit_1)
{
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.stranger, "--key", F.stranger_key, "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    const char *untrusted[] = {"--ca", F.ca, "-", tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, untrusted, NULL, NULL), 1);
    const char *out = h_peer_output(&cl);
    ck_assert_msg(strstr(out, "dxtls: UNABLE_TO_VERIFY_LEAF_SIGNATURE: TLS handshake failed"),
                  "%s", out);
    ck_assert_ptr_eq(strchr(out, '\n'), out + strlen(out) - 1); /* one line */
    h_peer_free(&cl);
    const char *insecure[] = {"--ca", F.ca, "--insecure", "--info", "-",
                              tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, insecure, "anyway\n", "anyway\n"), 0);
    jv *c = info_of(h_peer_output(&cl), "client", 0);
    ck_assert(!jbool(c, "authorized"));
    ck_assert_str_eq(jstr(c, "authorizationError"), "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    jfree(c);
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);

    /* The wrong name. */
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    port = listening(&srv);
    const char *wrong[] = {"--ca", F.ca, "--servername", "elsewhere.test", "-",
                           tcp_to("127.0.0.1", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, wrong, NULL, NULL), 1);
    ck_assert_ptr_nonnull(strstr(h_peer_output(&cl), "dxtls: ERR_TLS_CERT_ALTNAME_INVALID: "));
    h_peer_free(&cl);
    /* An address checks the certificate's IP names, and sends no SNI. */
    const char *by_ip[] = {"--ca", F.ca, "--info", "-", tcp_to("127.0.0.1", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, by_ip, "ip\n", "ip\n"), 0);
    c = info_of(h_peer_output(&cl), "client", 0);
    ck_assert(jbool(c, "authorized"));
    ck_assert(!jbool(c, "servername"));
    jfree(c);
    h_peer_free(&cl);
    /* A revoked certificate, by CRL. */
    const char *crl[] = {"--ca", F.ca, "--crl", F.crl_revoking, "-", tcp_to("localhost", port),
                         NULL};
    ck_assert_int_eq(client_exchange(&cl, crl, NULL, NULL), 1);
    ck_assert_ptr_nonnull(strstr(h_peer_output(&cl), "dxtls: CERT_REVOKED: "));
    h_peer_free(&cl);
    const char *crl_ok[] = {"--ca", F.ca, "--crl", F.crl_empty, "-", tcp_to("localhost", port),
                            NULL};
    ck_assert_int_eq(client_exchange(&cl, crl_ok, "crl\n", "crl\n"), 0);
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
}
END_TEST

/* The protocol options reach the handshake. */
START_TEST(protocol_options_shape_the_handshake)
{
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "--info", "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    const char *t12[] = {"--ca", F.ca, "--max-version", "TLSv1.2", "--ciphers",
                         "ECDHE-ECDSA-AES128-GCM-SHA256", "--groups", "P-256", "--sigalgs",
                         "ECDSA+SHA256", "--info", "-", tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, t12, "t12\n", "t12\n"), 0);
    jv *c = info_of(h_peer_output(&cl), "client", 0);
    ck_assert_str_eq(jstr(c, "protocol"), "TLSv1.2");
    ck_assert_str_eq(jstr(c, "cipher.name"), "ECDHE-ECDSA-AES128-GCM-SHA256");
    ck_assert_str_eq(jstr(c, "cipher.standardName"), "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
    ck_assert_str_eq(jstr(c, "ephemeralKeyInfo.name"), "prime256v1");
    jfree(c);
    h_peer_free(&cl);
    const char *t13[] = {"--ca", F.ca, "--min-version", "TLSv1.3", "--ciphersuites",
                         "TLS_CHACHA20_POLY1305_SHA256", "--info", "-",
                         tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, t13, "t13\n", "t13\n"), 0);
    c = info_of(h_peer_output(&cl), "client", 0);
    ck_assert_str_eq(jstr(c, "cipher.name"), "TLS_CHACHA20_POLY1305_SHA256");
    jfree(c);
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
    /* No version in common. */
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "--max-version", "TLSv1.2",
           "echo", "tcp-listen:127.0.0.1:0", NULL);
    port = listening(&srv);
    const char *only13[] = {"--ca", F.ca, "--min-version", "TLSv1.3", "-",
                            tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, only13, NULL, NULL), 1);
    ck_assert_ptr_nonnull(strstr(h_peer_output(&cl), "dxtls: ERR_SSL_"));
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
}
END_TEST

/* Credentials from a PKCS#12 archive, its passphrase from the
 * environment. */
START_TEST(pfx_with_passphrase_from_the_environment)
{
    setenv("DXTLS_TEST_PASS", "pfx secret", 1);
    h_peer srv, cl;
    startv(&srv, "--server", "--pfx", F.pfx, "--pass", "env:DXTLS_TEST_PASS", "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    const char *args[] = {"--ca", F.ca, "--info", "-", tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, args, "pfx\n", "pfx\n"), 0);
    jv *c = info_of(h_peer_output(&cl), "client", 0);
    ck_assert(jbool(c, "authorized"));
    jfree(c);
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
    unsetenv("DXTLS_TEST_PASS");
}
END_TEST

/* A key named by an OSSL_STORE URI, encrypted, its passphrase read from
 * a file (the first line); the wrong passphrase is bad usage. */
START_TEST(key_by_uri_with_passphrase_from_a_file)
{
    char uri[600], pass[600];
    snprintf(uri, sizeof(uri), "file:%s", F.enc_key);
    snprintf(pass, sizeof(pass), "file:%s", F.pass_file);
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.srv, "--key", uri, "--pass", pass, "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    const char *args[] = {"--ca", F.ca, "-", tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, args, "uri\n", "uri\n"), 0);
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
    startv(&srv, "--server", "--cert", F.srv, "--key", uri, "--pass", "pass:wrong", "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    ck_assert_int_eq(h_peer_stop(&srv, WAIT_MS), 2);
    h_peer_free(&srv);
}
END_TEST

/* ---- many connections -------------------------------------------------------------------- */

#define MANY 50
#define MANY_BYTES 8192

START_TEST(listener_serves_fifty_clients_at_once)
{
    h_peer srv;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    dx_tls_ctx *ctx = ctx_of(ca_cert, NULL, NULL);
    conn *cs = calloc(MANY, sizeof(*cs));
    dx_stream *ts[MANY];
    uint8_t *payload = malloc(MANY_BYTES);
    /* All connect first, then all talk. */
    for (int i = 0; i < MANY; i++) {
        int fd = h_connect_loopback(port, WAIT_MS);
        ck_assert_int_ge(fd, 0);
        conn_open(&cs[i], ctx, DX_TLS_CLIENT, fd, "localhost");
        ts[i] = cs[i].transport;
        h_gen_fill((uint64_t)i + 1, 0, payload, MANY_BYTES);
        ck_assert_int_ge(dx_stream_write(dx_tls_upper(cs[i].t), payload, MANY_BYTES), 0);
        ck_assert_int_eq(dx_stream_end(dx_tls_upper(cs[i].t)), 0);
    }
    int64_t end = h_now_ms() + 4 * WAIT_MS;
    int closed = 0;
    while (closed < MANY && h_now_ms() < end) {
        dx_fd_poll(ts, MANY, 20);
        closed = 0;
        for (int i = 0; i < MANY; i++)
            closed += cs[i].rec.closes > 0;
    }
    ck_assert_int_eq(closed, MANY);
    for (int i = 0; i < MANY; i++) {
        ck_assert_msg(cs[i].rec.errors == 0, "client %d: %s", i, cs[i].rec.error_name);
        ck_assert_uint_eq(cs[i].rec.len, MANY_BYTES);
        h_gen_fill((uint64_t)i + 1, 0, payload, MANY_BYTES);
        ck_assert_msg(!memcmp(cs[i].rec.data, payload, MANY_BYTES), "client %d: echo differs", i);
        ck_assert(dx_tls_clean_end(cs[i].t));
        h_rec_assert_clean(&cs[i].rec);
        conn_close(&cs[i]);
    }
    free(payload);
    free(cs);
    dx_tls_ctx_unref(ctx);
    ck_assert_int_eq(term(&srv), 0);
    ck_assert_msg(!strstr(h_peer_output(&srv), "ERR"), "%s", h_peer_output(&srv));
    h_peer_free(&srv);
}
END_TEST

/* The resident memory of a process, in KiB (0 when unknown). */
static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = 0;
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmRSS:", 6))
            kib = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kib;
}

/* Backpressure from end to end: a child that writes 8 MiB as fast as it
 * can, TLS over TCP, and a client whose standard output is not read for a
 * while. Neither dxtls holds the data: their memory stays put; then all
 * of it arrives. */
START_TEST(backpressure_holds_from_child_to_stdout)
{
    const size_t total = 8u << 20;
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "exec:exec head -c %zu /dev/zero", total);
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, cmd, "tcp-listen:127.0.0.1:0",
           NULL);
    unsigned port = listening(&srv);
    startv(&cl, "--ca", F.ca, "-", tcp_to("localhost", port), NULL);
    /* The first bytes show that the flow started; then nothing is read
     * for a while. */
    char buf[65536];
    int64_t end = h_now_ms() + WAIT_MS;
    ssize_t first = -1;
    while (first <= 0 && h_now_ms() < end) {
        struct pollfd pfd = {.fd = cl.out, .events = POLLIN};
        poll(&pfd, 1, 50);
        first = read(cl.out, buf, 1);
    }
    ck_assert_int_eq(first, 1);
    long c0 = rss_kib(cl.pid), s0 = rss_kib(srv.pid);
    usleep(500 * 1000);
    long c1 = rss_kib(cl.pid), s1 = rss_kib(srv.pid);
    ck_assert_msg(c1 - c0 < 4096 && s1 - s0 < 4096, "memory grew: client %ld -> %ld KiB, "
                  "server %ld -> %ld KiB", c0, c1, s0, s1);
    /* Now all of it, byte for byte (zeros). */
    size_t got = 1;
    bool zeros = true;
    end = h_now_ms() + 4 * WAIT_MS;
    while (got < total) {
        struct pollfd pfd = {.fd = cl.out, .events = POLLIN};
        poll(&pfd, 1, 50);
        ssize_t r = read(cl.out, buf, sizeof(buf));
        if (r == 0 || h_now_ms() > end)
            break;
        for (ssize_t i = 0; i < r; i++)
            zeros = zeros && buf[i] == 0;
        if (r > 0)
            got += (size_t)r;
    }
    ck_assert_uint_eq(got, total);
    ck_assert(zeros);
    ck_assert_int_eq(h_peer_stop(&cl, WAIT_MS), 0);
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
}
END_TEST

/* ---- every endpoint kind ------------------------------------------------------------------- */

/* exec: a child per connection, two at once. */
START_TEST(exec_runs_a_child_per_connection)
{
    h_peer srv;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key,
           "exec:echo child $$; exec cat", "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    dx_tls_ctx *ctx = ctx_of(ca_cert, NULL, NULL);
    conn a, b;
    conn_open(&a, ctx, DX_TLS_CLIENT, h_connect_loopback(port, WAIT_MS), "localhost");
    conn_open(&b, ctx, DX_TLS_CLIENT, h_connect_loopback(port, WAIT_MS), "localhost");
    dx_stream *ts[2] = {a.transport, b.transport};
    dx_stream_write(dx_tls_upper(a.t), "first\n", 6);
    dx_stream_write(dx_tls_upper(b.t), "second\n", 7);
    conn_wait wa = {&a, "first\n"}, wb = {&b, "second\n"};
    ck_assert(h_peer_run(&srv, ts, 2, conn_got, &wa, WAIT_MS));
    ck_assert(h_peer_run(&srv, ts, 2, conn_got, &wb, WAIT_MS));
    /* Each saw its own child. */
    ck_assert(!strncmp((char *)a.rec.data, "child ", 6) && !strncmp((char *)b.rec.data, "child ", 6));
    long pa = strtol((char *)a.rec.data + 6, NULL, 10), pb = strtol((char *)b.rec.data + 6, NULL, 10);
    ck_assert_int_gt(pa, 0);
    ck_assert_int_gt(pb, 0);
    ck_assert_int_ne(pa, pb);
    /* The end of its input ends the child, whose end ends the
     * connection. */
    dx_stream_end(dx_tls_upper(a.t));
    dx_stream_end(dx_tls_upper(b.t));
    ck_assert(h_peer_run(&srv, ts, 2, conn_closed_p, &a, WAIT_MS));
    ck_assert(h_peer_run(&srv, ts, 2, conn_closed_p, &b, WAIT_MS));
    ck_assert(dx_tls_clean_end(a.t) && dx_tls_clean_end(b.t));
    ck_assert_uint_eq(a.rec.errors + b.rec.errors, 0);
    /* The children are gone (reaped by dxtls). */
    int64_t end = h_now_ms() + WAIT_MS;
    while ((kill((pid_t)pa, 0) == 0 || kill((pid_t)pb, 0) == 0) && h_now_ms() < end)
        usleep(5000);
    ck_assert_int_eq(kill((pid_t)pa, 0), -1);
    ck_assert_int_eq(kill((pid_t)pb, 0), -1);
    conn_close(&a);
    conn_close(&b);
    dx_tls_ctx_unref(ctx);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
}
END_TEST

/* A child that answers without reading its input, and exits: what the
 * client still sends is dropped, and the connection closes cleanly. */
START_TEST(exec_child_that_does_not_read_closes_cleanly)
{
    h_peer srv;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "exec:echo bye",
           "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    dx_tls_ctx *ctx = ctx_of(ca_cert, NULL, NULL);
    conn c;
    /* Half-open, so that it may go on sending after the server's end. */
    conn_open_ex(&c, ctx, DX_TLS_CLIENT, h_connect_loopback(port, WAIT_MS), "localhost", true);
    /* More than the socket to the child holds, sent once the child is
     * gone. */
    conn_wait w = {&c, "bye\n"};
    ck_assert(h_peer_run(&srv, &c.transport, 1, conn_got, &w, WAIT_MS));
    ck_assert(h_peer_run(&srv, &c.transport, 1, conn_ended_p, &c, WAIT_MS));
    size_t n = 1u << 20;
    uint8_t *big = calloc(1, n);
    ck_assert_int_ge(dx_stream_write(dx_tls_upper(c.t), big, n), 0);
    ck_assert_int_eq(dx_stream_end(dx_tls_upper(c.t)), 0);
    ck_assert(h_peer_run(&srv, &c.transport, 1, conn_closed_p, &c, WAIT_MS));
    ck_assert_uint_eq(c.rec.errors, 0);
    ck_assert_uint_eq(c.rec.len, 4);
    ck_assert(dx_tls_clean_end(c.t));
    free(big);
    conn_close(&c);
    dx_tls_ctx_unref(ctx);
    ck_assert_int_eq(term(&srv), 0);
    ck_assert_msg(!strstr(h_peer_output(&srv), "EPIPE"), "%s", h_peer_output(&srv));
    h_peer_free(&srv);
}
END_TEST

/* exec: on the encrypted side: TLS to a child process (openssl s_server
 * over its stdin and stdout would need a socket; the child here is
 * another dxtls, the server, over its stdio). */
START_TEST(exec_carries_tls_to_a_child)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "exec:exec %s --server --cert %s --key %s --quiet echo -",
             dxtls_path(), F.srv, F.srv_key);
    h_peer cl;
    const char *args[] = {"--ca", F.ca, "--servername", "localhost", "--info", "-", cmd, NULL};
    int status = client_exchange(&cl, args, "to the child\n", "to the child\n");
    ck_assert_msg(status == 0, "%s", h_peer_output(&cl));
    jv *c = info_of(h_peer_output(&cl), "client", 0);
    ck_assert(jbool(c, "authorized"));
    jfree(c);
    h_peer_free(&cl);
}
END_TEST

START_TEST(unix_listen_and_unix_connect)
{
    const char *path = in_dir("dxtls.sock");
    char listen_ep[600], connect_ep[600];
    snprintf(listen_ep, sizeof(listen_ep), "unix-listen:%s", path);
    snprintf(connect_ep, sizeof(connect_ep), "unix:%s", path);
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "echo", listen_ep, NULL);
    WAIT_FOR(&srv, "listening on ");
    const char *args[] = {"--ca", F.ca, "--servername", "localhost", "-", connect_ep, NULL};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(client_exchange(&cl, args, "unix\n", "unix\n"), 0);
        h_peer_free(&cl);
    }
    ck_assert_int_eq(term(&srv), 0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), -1); /* removed */
    h_peer_free(&srv);
}
END_TEST

/* stunnel's client mode: the cleartext side listens, each connection is
 * carried over its own TLS connection. */
START_TEST(client_mode_listens_on_cleartext)
{
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    unsigned sport = listening(&srv);
    startv(&cl, "--client", "--ca", F.ca, "tcp-listen:127.0.0.1:0", tcp_to("localhost", sport),
           NULL);
    unsigned cport = listening(&cl);
    int fds[3];
    for (int i = 0; i < 3; i++)
        ck_assert_int_ge(fds[i] = h_connect_loopback(cport, WAIT_MS), 0);
    for (int i = 0; i < 3; i++) {
        char msg[32];
        snprintf(msg, sizeof(msg), "plain %d\n", i);
        ck_assert_int_eq(write(fds[i], msg, strlen(msg)), (ssize_t)strlen(msg));
        shutdown(fds[i], SHUT_WR);
    }
    for (int i = 0; i < 3; i++) {
        char got[64] = "", want[32];
        size_t n = 0;
        snprintf(want, sizeof(want), "plain %d\n", i);
        int64_t end = h_now_ms() + WAIT_MS;
        for (;;) {
            struct pollfd p = {.fd = fds[i], .events = POLLIN};
            poll(&p, 1, 50);
            ssize_t r = p.revents ? read(fds[i], got + n, sizeof(got) - 1 - n) : -1;
            if (r == 0 || h_now_ms() > end)
                break; /* the end: the echo came back and the server closed */
            if (r > 0)
                n += (size_t)r;
        }
        got[n] = '\0';
        ck_assert_str_eq(got, want);
        close(fds[i]);
    }
    ck_assert_int_eq(term(&cl), 0);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&cl);
    h_peer_free(&srv);
}
END_TEST

/* pty: a new pseudo-terminal, its path printed; TLS over it. */
START_TEST(pty_endpoint_carries_tls)
{
    h_peer srv;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "echo", "pty", NULL);
    WAIT_FOR(&srv, "dxtls: pty: /dev/");
    char path[256];
    int64_t end = h_now_ms() + WAIT_MS;
    const char *at;
    while (!strchr(at = strstr(h_peer_output(&srv), "pty: ") + 5, '\n') && h_now_ms() < end)
        usleep(2000);
    snprintf(path, sizeof(path), "%.*s", (int)strcspn(at, "\n"), at);
    int fd = open(path, O_RDWR | O_NOCTTY);
    ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
    struct termios tio;
    ck_assert_int_eq(tcgetattr(fd, &tio), 0);
    ck_assert_int_eq(tio.c_lflag & (ICANON | ECHO), 0); /* raw */
    dx_tls_ctx *ctx = ctx_of(ca_cert, NULL, NULL);
    conn c;
    conn_open(&c, ctx, DX_TLS_CLIENT, fd, "localhost");
    uint8_t big[20000];
    h_gen_fill(9, 0, big, sizeof(big));
    dx_stream_write(dx_tls_upper(c.t), big, sizeof(big));
    dx_stream_end(dx_tls_upper(c.t));
    ck_assert(h_peer_run(&srv, &c.transport, 1, conn_closed_p, &c, WAIT_MS));
    ck_assert_msg(c.rec.len == sizeof(big), "got %zu, errors %u %s; %s", c.rec.len,
                  c.rec.errors, c.rec.error_name, h_peer_output(&srv));
    ck_assert(!memcmp(c.rec.data, big, sizeof(big)));
    ck_assert(dx_tls_clean_end(c.t));
    conn_close(&c);
    dx_tls_ctx_unref(ctx);
    /* One connection, no listener: it is done. */
    ck_assert_int_eq(h_peer_stop(&srv, WAIT_MS), 0);
    h_peer_free(&srv);
}
END_TEST

/* serial: a terminal device, raw at the baud rate asked; a
 * pseudo-terminal's slave stands in for the serial line, a TLS server of
 * ours on its master. */
START_TEST(serial_endpoint_over_a_terminal)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    ck_assert_int_ge(m, 0);
    ck_assert_int_eq(grantpt(m), 0);
    ck_assert_int_eq(unlockpt(m), 0);
    char ep[300];
    snprintf(ep, sizeof(ep), "serial:%s,baud=9600", ptsname(m));
    struct termios tio;
    ck_assert_int_eq(tcgetattr(m, &tio), 0);
    cfmakeraw(&tio);
    ck_assert_int_eq(tcsetattr(m, TCSANOW, &tio), 0);
    dx_tls_ctx *ctx = ctx_of(NULL, srv_cert, NULL);
    conn s;
    conn_open(&s, ctx, DX_TLS_SERVER, m, NULL);
    s.echo = false;
    h_peer cl;
    startv(&cl, "--ca", F.ca, "--servername", "localhost", "-", ep, NULL);
    h_peer_write(&cl, "over the line\n");
    conn_wait w = {&s, "over the line\n"};
    ck_assert(h_peer_run(&cl, &s.transport, 1, conn_got, &w, WAIT_MS));
    /* The line was set as asked (the master reads the slave's settings). */
    ck_assert_int_eq(tcgetattr(m, &tio), 0);
    ck_assert_int_eq(cfgetospeed(&tio), B9600);
    dx_stream_write(dx_tls_upper(s.t), "and back\n", 9);
    ck_assert(h_peer_wait_output(&cl, "and back\n", &s.transport, 1, WAIT_MS));
    dx_stream_end(dx_tls_upper(s.t)); /* close_notify: the client's side ends */
    h_peer_close_input(&cl);
    ck_assert(h_peer_run(&cl, &s.transport, 1, conn_closed_p, &s, WAIT_MS));
    ck_assert_int_eq(h_peer_stop(&cl, WAIT_MS), 0);
    ck_assert(dx_tls_clean_end(s.t));
    conn_close(&s);
    dx_tls_ctx_unref(ctx);
    h_peer_free(&cl);
}
END_TEST

/* Starts dxtls with fds[i] as its descriptor 3 + i, and stderr on
 * errfd (-1: with stdout, as h_peer_start). */
static void start_with_fds(h_peer *p, const char *const *args, const int *fds, int nfds,
                           int errfd)
{
    const char *argv[MAX_ARGS];
    size_t n = 0;
    argv[n++] = dxtls_path();
    for (; *args; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    h_peer_start_fds(p, argv, fds, nfds, errfd);
}

/* Reads fd (non-blocking) into buf until it holds want or the end came,
 * serving the stream s meanwhile. Returns the bytes read. */
static size_t read_until(int fd, char *buf, size_t cap, const char *want, dx_stream *s)
{
    size_t n = 0;
    int64_t end = h_now_ms() + WAIT_MS;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    while (h_now_ms() < end) {
        dx_fd_poll(&s, 1, 10);
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r == 0)
            break;
        if (r > 0)
            n += (size_t)r;
        buf[n] = '\0';
        if (want && strstr(buf, want))
            break;
    }
    buf[n] = '\0';
    return n;
}

/* fd:N and fd:N,M: inherited descriptors. TLS on a socket (fd:3) with
 * the cleartext on stdio; then the cleartext on two pipes (fd:3,4) and
 * TLS on a socket (fd:5). Our server echoes. */
START_TEST(fd_endpoint_uses_inherited_descriptors)
{
    dx_tls_ctx *ctx = ctx_of(NULL, srv_cert, NULL);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    conn s;
    conn_open(&s, ctx, DX_TLS_SERVER, sv[0], NULL);
    s.echo = true;
    h_peer p;
    const char *one[] = {"--ca", F.ca, "--servername", "localhost", "-", "fd:3", NULL};
    start_with_fds(&p, one, &sv[1], 1, -1);
    close(sv[1]);
    h_peer_write(&p, "through fd 3\n");
    ck_assert_msg(h_peer_wait_output(&p, "through fd 3\n", &s.transport, 1, WAIT_MS), "%s",
                  h_peer_output(&p));
    h_peer_close_input(&p); /* close_notify, answered */
    ck_assert(h_peer_run(&p, &s.transport, 1, conn_closed_p, &s, WAIT_MS));
    ck_assert_int_eq(h_peer_stop(&p, WAIT_MS), 0);
    ck_assert(dx_tls_clean_end(s.t));
    conn_close(&s);
    h_peer_free(&p);

    int to[2], from[2];
    ck_assert_int_eq(pipe(to), 0);
    ck_assert_int_eq(pipe(from), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    conn_open(&s, ctx, DX_TLS_SERVER, sv[0], NULL);
    s.echo = true;
    const char *two[] = {"--ca", F.ca, "--servername", "localhost", "fd:3,4", "fd:5", NULL};
    int fds[3] = {to[0], from[1], sv[1]};
    start_with_fds(&p, two, fds, 3, -1);
    close(to[0]);
    close(from[1]);
    close(sv[1]);
    ck_assert_int_eq(write(to[1], "through fd 3, back on fd 4\n", 28), 28);
    close(to[1]); /* the end of the cleartext input: close_notify */
    char got[128];
    /* The echo, then the end: dxtls lets go of fd 4 once the server's
     * close_notify came. */
    read_until(from[0], got, sizeof(got), NULL, s.transport);
    ck_assert_str_eq(got, "through fd 3, back on fd 4\n");
    ck_assert(h_peer_run(&p, &s.transport, 1, conn_closed_p, &s, WAIT_MS));
    ck_assert_int_eq(h_peer_stop(&p, WAIT_MS), 0);
    ck_assert(dx_tls_clean_end(s.t));
    close(from[0]);
    conn_close(&s);
    dx_tls_ctx_unref(ctx);
    h_peer_free(&p);
}
END_TEST

/* ---- real peers -------------------------------------------------------------------------- */

START_TEST(openssl_s_client_against_dxtls_server)
{
    h_peer srv, sc;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "--info", "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    char connect[64];
    snprintf(connect, sizeof(connect), "127.0.0.1:%u", port);
    const char *argv[] = {"openssl", "s_client", "-connect", connect, "-CAfile", F.ca,
                          "-servername", "localhost", "-verify_return_error", NULL};
    h_peer_start(&sc, argv);
    ck_assert_msg(h_peer_wait_output(&sc, "Verify return code: 0 (ok)", NULL, 0, WAIT_MS), "%s",
                  h_peer_output(&sc));
    size_t before = sc.len;
    h_peer_write(&sc, "from s_client\n");
    /* s_client prints what it receives: the echo. */
    int64_t end = h_now_ms() + WAIT_MS;
    while (!strstr(h_peer_output(&sc) + before, "from s_client") && h_now_ms() < end)
        usleep(5000);
    ck_assert_msg(strstr(h_peer_output(&sc) + before, "from s_client"), "%s",
                  h_peer_output(&sc));
    h_peer_stop(&sc, WAIT_MS);
    h_peer_free(&sc);
    WAIT_FOR(&srv, "\"role\":\"server\"");
    ck_assert_int_eq(term(&srv), 0);
    jv *s = info_of(h_peer_output(&srv), "server", 0);
    ck_assert_str_eq(jstr(s, "servername"), "localhost");
    jfree(s);
    h_peer_free(&srv);
}
END_TEST

START_TEST(dxtls_client_against_openssl_s_server)
{
    const char *v = versions[_i];
    char port[16];
    snprintf(port, sizeof(port), "%u", h_free_port());
    h_peer ss, cl;
    const char *argv[] = {"openssl", "s_server", "-accept", port, "-cert", F.srv, "-key",
                          F.srv_key, _i ? "-tls1_3" : "-tls1_2", "-rev", "-naccept", "1", NULL};
    h_peer_start(&ss, argv);
    ck_assert_msg(h_peer_wait_output(&ss, "ACCEPT", NULL, 0, WAIT_MS), "%s", h_peer_output(&ss));
    const char *args[] = {"--ca", F.ca, "--info", "-", tcp_to("localhost", (unsigned)atoi(port)),
                          NULL};
    start_args(&cl, args);
    h_peer_write(&cl, "reversed\n");
    WAIT_FOR(&cl, "desrever");
    int status = h_peer_stop(&cl, WAIT_MS);
    ck_assert_msg(status == 0, "%s", h_peer_output(&cl));
    jv *c = info_of(h_peer_output(&cl), "client", 0);
    ck_assert_str_eq(jstr(c, "protocol"), v);
    ck_assert(jbool(c, "authorized"));
    jfree(c);
    h_peer_free(&cl);
    h_peer_stop(&ss, WAIT_MS);
    h_peer_free(&ss);
}
END_TEST

/* ---- closing --------------------------------------------------------------------------------- */

/* SIGTERM closes a client's connection with close_notify: our server
 * sees a clean end; exit status 0. */
START_TEST(sigterm_closes_with_close_notify)
{
    unsigned port;
    int lfd = h_listen_loopback(&port);
    h_peer cl;
    startv(&cl, "--ca", F.ca, "-", tcp_to("localhost", port), NULL);
    int fd = h_accept(lfd, WAIT_MS);
    ck_assert_int_ge(fd, 0);
    close(lfd);
    dx_tls_ctx *ctx = ctx_of(NULL, srv_cert, NULL);
    conn s;
    conn_open(&s, ctx, DX_TLS_SERVER, fd, NULL);
    h_peer_write(&cl, "before the signal\n");
    conn_wait w = {&s, "before the signal\n"};
    ck_assert(h_peer_run(&cl, &s.transport, 1, conn_got, &w, WAIT_MS));
    kill(cl.pid, SIGTERM);
    ck_assert(h_peer_run(&cl, &s.transport, 1, conn_closed_p, &s, WAIT_MS));
    ck_assert_uint_eq(s.rec.ends, 1);
    ck_assert_uint_eq(s.rec.errors, 0);
    ck_assert(dx_tls_clean_end(s.t));
    ck_assert_int_eq(h_peer_stop(&cl, WAIT_MS), 0);
    conn_close(&s);
    dx_tls_ctx_unref(ctx);
    h_peer_free(&cl);
}
END_TEST

/* SIGINT on a server with open connections: each gets close_notify. */
START_TEST(sigint_closes_server_connections_with_close_notify)
{
    h_peer srv;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    dx_tls_ctx *ctx = ctx_of(ca_cert, NULL, NULL);
    conn a, b;
    conn_open(&a, ctx, DX_TLS_CLIENT, h_connect_loopback(port, WAIT_MS), "localhost");
    conn_open(&b, ctx, DX_TLS_CLIENT, h_connect_loopback(port, WAIT_MS), "localhost");
    dx_stream *ts[2] = {a.transport, b.transport};
    dx_stream_write(dx_tls_upper(a.t), "a\n", 2);
    dx_stream_write(dx_tls_upper(b.t), "b\n", 2);
    conn_wait wa = {&a, "a\n"}, wb = {&b, "b\n"};
    ck_assert(h_peer_run(&srv, ts, 2, conn_got, &wa, WAIT_MS));
    ck_assert(h_peer_run(&srv, ts, 2, conn_got, &wb, WAIT_MS));
    kill(srv.pid, SIGINT);
    /* The server's close_notify ends our side; ours answers. */
    a.echo = b.echo = true;
    ck_assert(h_peer_run(&srv, ts, 2, conn_closed_p, &a, WAIT_MS));
    ck_assert(h_peer_run(&srv, ts, 2, conn_closed_p, &b, WAIT_MS));
    ck_assert(dx_tls_clean_end(a.t) && dx_tls_clean_end(b.t));
    ck_assert_uint_eq(a.rec.errors + b.rec.errors, 0);
    ck_assert_int_eq(h_peer_stop(&srv, WAIT_MS), 0);
    conn_close(&a);
    conn_close(&b);
    dx_tls_ctx_unref(ctx);
    h_peer_free(&srv);
}
END_TEST

/* --idle-timeout closes a silent connection with close_notify. */
START_TEST(idle_timeout_closes_with_close_notify)
{
    h_peer srv;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "--idle-timeout", "300",
           "echo", "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    dx_tls_ctx *ctx = ctx_of(ca_cert, NULL, NULL);
    conn c;
    conn_open(&c, ctx, DX_TLS_CLIENT, h_connect_loopback(port, WAIT_MS), "localhost");
    c.echo = true;
    ck_assert(h_peer_run(&srv, &c.transport, 1, conn_secure_p, &c, WAIT_MS));
    int64_t t0 = h_now_ms();
    ck_assert(h_peer_run(&srv, &c.transport, 1, conn_closed_p, &c, WAIT_MS));
    ck_assert_int_ge(h_now_ms() - t0, 250);
    ck_assert(dx_tls_clean_end(c.t));
    ck_assert_uint_eq(c.rec.errors, 0);
    conn_close(&c);
    dx_tls_ctx_unref(ctx);
    ck_assert_int_eq(term(&srv), 0);
    ck_assert_ptr_nonnull(strstr(h_peer_output(&srv), "idle for 300 ms"));
    h_peer_free(&srv);
}
END_TEST

/* --handshake-timeout: a server that never answers fails the client
 * with the code, exit 1. */
START_TEST(handshake_timeout_exits_1)
{
    unsigned port;
    int lfd = h_listen_loopback(&port);
    h_peer cl;
    startv(&cl, "--ca", F.ca, "--handshake-timeout", "200", "-", tcp_to("127.0.0.1", port),
           NULL);
    int fd = h_accept(lfd, WAIT_MS);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(h_peer_stop(&cl, WAIT_MS), 1);
    ck_assert_ptr_nonnull(strstr(h_peer_output(&cl), "dxtls: ERR_TLS_HANDSHAKE_TIMEOUT: "));
    close(fd);
    close(lfd);
    h_peer_free(&cl);
}
END_TEST

/* A transport that ends without close_notify is a failure, unless
 * --allow-truncation. */
START_TEST(truncation_fails_unless_allowed)
{
    bool allow = _i == 1;
    unsigned port;
    int lfd = h_listen_loopback(&port);
    h_peer cl;
    if (allow)
        startv(&cl, "--ca", F.ca, "--allow-truncation", "-", tcp_to("localhost", port), NULL);
    else
        startv(&cl, "--ca", F.ca, "-", tcp_to("localhost", port), NULL);
    int fd = h_accept(lfd, WAIT_MS);
    ck_assert_int_ge(fd, 0);
    close(lfd);
    dx_tls_ctx *ctx = ctx_of(NULL, srv_cert, NULL);
    conn s;
    conn_open(&s, ctx, DX_TLS_SERVER, dup(fd), NULL);
    dx_stream_write(dx_tls_upper(s.t), "cut short\n", 10);
    ck_assert(h_peer_wait_output(&cl, "cut short\n", &s.transport, 1, WAIT_MS));
    /* The transport's write side ends without close_notify. */
    shutdown(fd, SHUT_WR);
    h_peer_close_input(&cl);
    int status = h_peer_stop(&cl, WAIT_MS);
    if (allow)
        ck_assert_msg(status == 0, "%s", h_peer_output(&cl));
    else {
        ck_assert_int_eq(status, 1);
        ck_assert_ptr_nonnull(
            strstr(h_peer_output(&cl), "dxtls: ERR_SSL_UNEXPECTED_EOF_WHILE_READING: "));
    }
    close(fd);
    conn_close(&s);
    dx_tls_ctx_unref(ctx);
    h_peer_free(&cl);
}
END_TEST

/* Nothing to connect to: exit status 3 and the transport's code. */
START_TEST(unreachable_endpoints_exit_3)
{
    unsigned busy_port;
    int busy = h_listen_loopback(&busy_port);
    char refused[64], listen_busy[64];
    snprintf(refused, sizeof(refused), "tcp:127.0.0.1:%u", h_free_port());
    snprintf(listen_busy, sizeof(listen_busy), "tcp-listen:127.0.0.1:%u", busy_port);
    const struct {
        const char *args[8];
        const char *code;
    } cases[] = {
        {{"--insecure", "-", refused}, "dxtls: ECONNREFUSED: "},
        {{"--insecure", "-", "unix:/nonexistent/dxtls.sock"}, "dxtls: ENOENT: "},
        {{"--insecure", "-", "serial:/nonexistent/ttyS9"}, "dxtls: ENOENT: "},
        {{"--insecure", "-", "serial:/dev/null"}, "dxtls: ENOTTY: "},
        {{"--insecure", "-", "fd:77"}, "dxtls: EBADF: "},
        {{"--insecure", "echo", listen_busy}, "dxtls: EADDRINUSE: "},
        {{"--insecure", "exec:cat", refused}, "dxtls: ECONNREFUSED: "},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        h_peer p;
        start_args(&p, cases[i].args);
        ck_assert_int_eq(h_peer_stop(&p, WAIT_MS), 3);
        const char *out = h_peer_output(&p);
        ck_assert_msg(!strncmp(out, cases[i].code, strlen(cases[i].code)), "want %s: %s",
                      cases[i].code, out);
        ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "one line: %s", out);
        h_peer_free(&p);
    }
    close(busy);
}
END_TEST

/* ---- diagnostics ---------------------------------------------------------------------------- */

START_TEST(keylog_and_trace)
{
    const char *keylog = in_dir("keys.log");
    unlink(keylog);
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    const char *args[] = {"--ca", F.ca, "--keylog", keylog, "--trace", "-",
                          tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, args, "traced\n", "traced\n"), 0);
    const char *out = h_peer_output(&cl);
    ck_assert_msg(strstr(out, "ClientHello") && strstr(out, "ServerHello"), "%s", out);
    char *log = slurp(keylog);
    ck_assert_msg(strstr(log, "CLIENT_HANDSHAKE_TRAFFIC_SECRET ") &&
                      strstr(log, "CLIENT_TRAFFIC_SECRET_0 "),
                  "%s", log);
    struct stat st;
    ck_assert_int_eq(stat(keylog, &st), 0);
    ck_assert_int_eq(st.st_mode & 077, 0);
    free(log);
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
}
END_TEST

/* --max-fragment: records of at most N bytes of plaintext, seen in the
 * receiver's trace. */
START_TEST(max_fragment_limits_records)
{
    h_peer srv, cl;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "--max-version", "TLSv1.2",
           "--trace", "echo", "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    char line[3001];
    memset(line, 'x', 3000);
    line[2999] = '\n';
    line[3000] = '\0';
    const char *args[] = {"--ca", F.ca, "--max-fragment", "512", "-", tcp_to("localhost", port),
                          NULL};
    start_args(&cl, args);
    h_peer_write(&cl, line);
    int64_t end = h_now_ms() + WAIT_MS;
    while (h_peer_output(&cl), cl.len < 3000 && h_now_ms() < end)
        usleep(5000);
    ck_assert_int_eq(h_peer_stop(&cl, WAIT_MS), 0);
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    /* The server received the 3000 bytes in records of at most 512
     * bytes (plus 24 of GCM overhead): at least 6 of them. */
    const char *t = h_peer_output(&srv);
    int records = 0;
    for (const char *p = t; (p = strstr(p, "Received Record")) != NULL; p++) {
        const char *ct = strstr(p, "Content Type = ApplicationData");
        const char *next = strstr(p + 1, "Received Record");
        if (!ct || (next && ct > next))
            continue;
        const char *len = strstr(ct, "Length = ");
        ck_assert_ptr_nonnull(len);
        ck_assert_int_le(atoi(len + 9), 512 + 24);
        records++;
    }
    ck_assert_int_ge(records, 6);
    h_peer_free(&srv);
}
END_TEST

/* --progress: a live line when stderr is a terminal, nothing otherwise. */
START_TEST(progress_line_on_a_terminal)
{
    h_peer srv;
    startv(&srv, "--server", "--cert", F.srv, "--key", F.srv_key, "echo",
           "tcp-listen:127.0.0.1:0", NULL);
    unsigned port = listening(&srv);
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    ck_assert_int_ge(m, 0);
    ck_assert_int_eq(grantpt(m), 0);
    ck_assert_int_eq(unlockpt(m), 0);
    int sl = open(ptsname(m), O_RDWR | O_NOCTTY);
    ck_assert_int_ge(sl, 0);
    const char *args[] = {"--ca", F.ca, "--progress", "-", tcp_to("localhost", port), NULL};
    h_peer cl;
    start_with_fds(&cl, args, NULL, 0, sl);
    close(sl);
    h_peer_write(&cl, "progress\n");
    ck_assert(wait_for(&cl, "progress\n"));
    /* Its terminal shows the line, redrawn in place. */
    char term_out[4096];
    size_t n = 0;
    int64_t end = h_now_ms() + WAIT_MS;
    fcntl(m, F_SETFL, O_NONBLOCK);
    while (h_now_ms() < end) {
        ssize_t r = read(m, term_out + n, sizeof(term_out) - 1 - n);
        if (r > 0)
            n += (size_t)r;
        term_out[n] = '\0';
        if (strstr(term_out, "in 9 B"))
            break;
        usleep(10000);
    }
    ck_assert_msg(strstr(term_out, "\r\033[Kdxtls: out 9 B") && strstr(term_out, "in 9 B"), "%s",
                  term_out);
    ck_assert_int_eq(h_peer_stop(&cl, WAIT_MS), 0);
    close(m);
    h_peer_free(&cl);
    /* Not a terminal: no progress line. */
    const char *args2[] = {"--ca", F.ca, "--progress", "-", tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, args2, "quiet\n", "quiet\n"), 0);
    ck_assert_str_eq(h_peer_output(&cl), "quiet\n");
    h_peer_free(&cl);
    ck_assert_int_eq(term(&srv), 0);
    h_peer_free(&srv);
}
END_TEST

/* The tool itself under valgrind: a server with children and a failed
 * handshake, and a client, both without an error or a leak. */
START_TEST(valgrind_finds_nothing)
{
    const char *vg = getenv("VALGRIND");
    if (!vg || !*vg)
        vg = "valgrind";
    char libtool[600];
    snprintf(libtool, sizeof(libtool), "%s/libtool", builddir());
    const char *vg_srv[] = {libtool, "--mode=execute", vg, "--quiet", "--error-exitcode=99",
                            "--leak-check=full", "--show-leak-kinds=all",
                            "--errors-for-leak-kinds=all", dxtls_path(), "--server", "--cert",
                            F.srv, "--key", F.srv_key, "--ca", F.ca, "--info", "exec:cat",
                            "tcp-listen:127.0.0.1:0", NULL};
    h_peer srv, cl;
    h_peer_start(&srv, vg_srv);
    unsigned port = listening(&srv);
    const char *vg_cl[] = {libtool, "--mode=execute", vg, "--quiet", "--error-exitcode=99",
                           "--leak-check=full", "--show-leak-kinds=all",
                           "--errors-for-leak-kinds=all", dxtls_path(), "--ca", F.ca, "--info",
                           "-", tcp_to("localhost", port), NULL};
    h_peer_start(&cl, vg_cl);
    h_peer_write(&cl, "under valgrind\n");
    WAIT_FOR(&cl, "under valgrind\n");
    int status = h_peer_stop(&cl, 4 * WAIT_MS);
    ck_assert_msg(status == 0, "%s", h_peer_output(&cl));
    h_peer_free(&cl);
    const char *refused[] = {"--ca", F.ca2, "-", tcp_to("localhost", port), NULL};
    ck_assert_int_eq(client_exchange(&cl, refused, NULL, NULL), 1);
    h_peer_free(&cl);
    kill(srv.pid, SIGTERM);
    status = h_peer_stop(&srv, 4 * WAIT_MS);
    ck_assert_msg(status == 0, "%s", h_peer_output(&srv));
    h_peer_free(&srv);
}
END_TEST

#ifdef HAVE_HIREDIS
/* ---- --session-store: a cluster on one Redis ----------------------------------------- */

/* A redis-server of the test's own on a free loopback port, without
 * persistence. */
/* Starts a redis-server on port (0: a free one); returns its port. */
static unsigned redis_start_on(h_peer *p, unsigned port)
{
    if (!port)
        port = h_free_port();
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%u", port);
    const char *argv[] = {"redis-server", "--port", portbuf, "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", NULL};
    h_peer_start(p, argv);
    int fd = h_connect_loopback(port, WAIT_MS);
    ck_assert_int_ge(fd, 0);
    close(fd);
    return port;
}

static unsigned redis_start(h_peer *p) { return redis_start_on(p, 0); }

/* Whether want stores are connected to the Redis on port and, with
 * tickets, the ticket keys are there. */
static bool redis_ready(unsigned port, int want, bool tickets)
{
    redisContext *c = redisConnect("127.0.0.1", (int)port);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->err, 0);
    bool ready = false;
    redisReply *r = redisCommand(c, "INFO clients");
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *at = strstr(r->str, "connected_clients:");
        ready = at && atoi(at + strlen("connected_clients:")) >= want + 1;
    }
    freeReplyObject(r);
    if (ready && tickets) {
        r = redisCommand(c, "KEYS dx:tls:tk:*");
        ready = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0;
        freeReplyObject(r);
    }
    redisFree(c);
    return ready;
}

/* One client connection of ours: offers sess (if any), sends a line and
 * waits for its echo (by then a TLS 1.3 server's tickets have come), and
 * keeps the latest session the server gave. */
typedef struct rclient {
    conn c;
    uint8_t sess[8192];
    size_t sess_len;
    bool got;
    bool reused;
    int64_t handshake_ms;
} rclient;

static void rc_secure(dx_tls *t, void *u)
{
    rclient *r = u;
    r->c.secure = true;
    r->reused = dx_tls_session_reused(t);
}

static void rc_session(dx_tls *t, const uint8_t *sess, size_t len, void *u)
{
    (void)t;
    rclient *r = u;
    if (len <= sizeof(r->sess)) {
        memcpy(r->sess, sess, len);
        r->sess_len = len;
    }
}

static const dx_tls_events rc_events = {.on_secure = rc_secure, .on_session = rc_session};

static bool rc_echoed(void *arg)
{
    rclient *r = arg;
    return r->c.rec.len >= 5 && !memcmp(r->c.rec.data, "ping\n", 5);
}

/* A connection to the server p listening on port; true when it was a
 * resumption. */
static bool rc_connect(rclient *r, h_peer *p, unsigned port, dx_tls_ctx *ctx)
{
    conn *c = &r->c;
    memset(c, 0, sizeof(*c));
    int fd = h_connect_loopback(port, WAIT_MS);
    ck_assert_int_ge(fd, 0);
    int64_t start = h_now_ms();
    ck_assert_int_eq(dx_fd_stream_new(fd, fd, DX_FD_CLOSE, &c->transport), 0);
    ck_assert_int_eq(dx_tls_new(ctx, DX_TLS_CLIENT, &c->t), 0);
    ck_assert_int_eq(dx_tls_set_servername(c->t, "localhost"), 0);
    if (r->sess_len)
        ck_assert_int_eq(dx_tls_set_session(c->t, r->sess, r->sess_len), 0);
    dx_tls_set_events(c->t, &rc_events, r);
    c->rec.keep_data = true;
    h_rec_attach(&c->rec, dx_tls_upper(c->t));
    ck_assert_int_eq(dx_tls_attach(c->t, c->transport), 0);
    ck_assert_int_eq(dx_tls_start(c->t), 0);
    ck_assert_msg(h_peer_run(p, &c->transport, 1, conn_secure_p, c, WAIT_MS),
                  "no handshake: %s; %s", c->rec.error_name, h_peer_output(p));
    r->handshake_ms = h_now_ms() - start;
    dx_stream_write(dx_tls_upper(c->t), "ping\n", 5);
    ck_assert(h_peer_run(p, &c->transport, 1, rc_echoed, r, WAIT_MS));
    dx_stream_end(dx_tls_upper(c->t));
    ck_assert(h_peer_run(p, &c->transport, 1, conn_closed_p, c, WAIT_MS));
    ck_assert_msg(c->rec.errors == 0, "%s", c->rec.error_name);
    bool reused = r->reused;
    conn_close(c);
    return reused;
}

#define CLUSTER_RUNS 200

/* Two dxtls servers sharing one Redis: a client alternating between
 * them resumes every time after its first connection, by session id
 * (--no-tickets) and by ticket, in TLS 1.2 and 1.3. With Redis stopped
 * (SIGSTOP) or gone, handshakes still complete, as full ones, within
 * the lookup timeout; with Redis back, resumption comes back. */
START_TEST(session_store_shares_sessions_between_servers)
{
    bool tickets = _i & 1;
    const char *v = (_i & 2) ? "TLSv1.3" : "TLSv1.2";
    h_peer redis, a, b;
    unsigned rport = redis_start(&redis);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%u", rport);
    const char *argv[16];
    size_t n = 0;
    const char *common[] = {"--server", "--cert", F.srv, "--key", F.srv_key,
                            "--session-store", url, "--verbose", NULL};
    for (const char *const *c = common; *c; c++)
        argv[n++] = *c;
    if (!tickets)
        argv[n++] = "--no-tickets";
    argv[n++] = "echo";
    argv[n++] = "tcp-listen:127.0.0.1:0";
    argv[n] = NULL;
    start_args(&a, argv);
    start_args(&b, argv);
    unsigned pa = listening(&a), pb = listening(&b);
    int64_t end = h_now_ms() + WAIT_MS;
    while (!redis_ready(rport, 2, tickets) && h_now_ms() < end)
        usleep(10000);
    ck_assert(redis_ready(rport, 2, tickets));
    usleep(300 * 1000); /* a store reads the ticket keys as it connects */

    dx_tls_ctx *ctx = ctx_of(ca_cert, NULL, v);
    rclient *r = calloc(1, sizeof(*r));
    int resumed = 0;
    for (int i = 0; i < CLUSTER_RUNS; i++) {
        bool to_a = i % 2 == 0;
        bool reused = rc_connect(r, to_a ? &a : &b, to_a ? pa : pb, ctx);
        if (i == 0)
            ck_assert(!reused);
        else if (reused)
            resumed++;
    }
    /* at least 99% */
    ck_assert_msg(resumed * 100 >= (CLUSTER_RUNS - 1) * 99, "%s %s: %d of %d resumed", v,
                  tickets ? "tickets" : "session ids", resumed, CLUSTER_RUNS - 1);

    /* Redis stopped: full handshakes, none waiting much past the 50 ms
     * timeout (without tickets: with them, the keys are still held). */
    kill(redis.pid, SIGSTOP);
    int64_t slow_max = 0;
    for (int i = 0; i < 6; i++) {
        bool to_a = i % 2 == 0;
        bool reused = rc_connect(r, to_a ? &a : &b, to_a ? pa : pb, ctx);
        if (!tickets)
            ck_assert(!reused);
        if (r->handshake_ms > slow_max)
            slow_max = r->handshake_ms;
    }
    ck_assert_int_lt(slow_max, 50 + 1000);
    kill(redis.pid, SIGCONT);
    /* Redis gone: at once. */
    kill(redis.pid, SIGTERM);
    h_peer_stop(&redis, WAIT_MS);
    int64_t down_max = 0;
    for (int i = 0; i < 6; i++) {
        bool to_a = i % 2 == 0;
        bool reused = rc_connect(r, to_a ? &a : &b, to_a ? pa : pb, ctx);
        if (!tickets && i % 2 == 1)
            ck_assert(!reused); /* the other server never saw the session */
        if (r->handshake_ms > down_max)
            down_max = r->handshake_ms;
    }
    ck_assert_int_lt(down_max, 1000);
    /* Redis back on its port: the stores reconnect (backoff up to 5 s),
     * and sessions are shared again. */
    h_peer_free(&redis);
    ck_assert_uint_eq(redis_start_on(&redis, rport), rport);
    end = h_now_ms() + 15000;
    while (!redis_ready(rport, 2, false) && h_now_ms() < end)
        usleep(20000);
    ck_assert(redis_ready(rport, 2, false));
    usleep(300 * 1000);
    int back = 0;
    for (int i = 0; i < 10; i++) {
        bool to_a = i % 2 == 0;
        if (rc_connect(r, to_a ? &a : &b, to_a ? pa : pb, ctx) && i > 0)
            back++;
    }
    ck_assert_int_ge(back, 9 - (tickets ? 0 : 1));
    free(r);
    dx_tls_ctx_unref(ctx);
    ck_assert_int_eq(term(&a), 0);
    ck_assert_int_eq(term(&b), 0);
    ck_assert_msg(strstr(h_peer_output(&a), "session store:"), "%s", h_peer_output(&a));
    h_peer_free(&a);
    h_peer_free(&b);
    h_peer_free(&redis);
}
END_TEST
#endif

Suite *dxtls_suite(void)
{
    Suite *s = suite_create("dxtls");
    TCase *tc = tcase_create("command line");
    tcase_add_unchecked_fixture(tc, make_files, free_files);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, help_and_man_page_list_everything);
    tcase_add_loop_test(tc, bad_usage_exits_2_with_one_line, 0,
                        (int)(sizeof(usage_cases) / sizeof(usage_cases[0])));
    tcase_add_test(tc, bad_files_exit_2);
    tcase_add_test(tc, demo_shows_both_sides_and_exits_0);
    suite_add_tcase(s, tc);

    tc = tcase_create("tls");
    tcase_add_unchecked_fixture(tc, make_files, free_files);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, client_and_server_over_tcp_report_node_fields, 0, 2);
    tcase_add_loop_test(tc, session_out_then_in_resumes, 0, 2);
    tcase_add_test(tc, ticket_keys_shared_between_servers);
    tcase_add_test(tc, no_tickets_sends_no_ticket);
#ifdef HAVE_HIREDIS
    tcase_add_loop_test(tc, session_store_shares_sessions_between_servers, 0, 4);
#endif
    tcase_add_loop_test(tc, psk_without_certificates, 0, 2);
    tcase_add_test(tc, sni_chooses_the_certificate);
    tcase_add_test(tc, alpn_chooses_and_refuses);
    tcase_add_loop_test(tc, ocsp_staple_requested_and_checked, 0, 2);
    tcase_add_loop_test(tc, client_certificates_required_or_requested, 0, 2);
    tcase_add_test(tc, verification_failures_exit_1);
    tcase_add_test(tc, protocol_options_shape_the_handshake);
    tcase_add_test(tc, pfx_with_passphrase_from_the_environment);
    tcase_add_test(tc, key_by_uri_with_passphrase_from_a_file);
    tcase_add_test(tc, listener_serves_fifty_clients_at_once);
    tcase_add_test(tc, backpressure_holds_from_child_to_stdout);
    suite_add_tcase(s, tc);

    tc = tcase_create("endpoints");
    tcase_add_unchecked_fixture(tc, make_files, free_files);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, exec_runs_a_child_per_connection);
    tcase_add_test(tc, exec_child_that_does_not_read_closes_cleanly);
    tcase_add_test(tc, exec_carries_tls_to_a_child);
    tcase_add_test(tc, unix_listen_and_unix_connect);
    tcase_add_test(tc, client_mode_listens_on_cleartext);
    tcase_add_test(tc, pty_endpoint_carries_tls);
    tcase_add_test(tc, serial_endpoint_over_a_terminal);
    tcase_add_test(tc, fd_endpoint_uses_inherited_descriptors);
    tcase_add_test(tc, openssl_s_client_against_dxtls_server);
    tcase_add_loop_test(tc, dxtls_client_against_openssl_s_server, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("closing");
    tcase_add_unchecked_fixture(tc, make_files, free_files);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, sigterm_closes_with_close_notify);
    tcase_add_test(tc, sigint_closes_server_connections_with_close_notify);
    tcase_add_test(tc, idle_timeout_closes_with_close_notify);
    tcase_add_test(tc, handshake_timeout_exits_1);
    tcase_add_loop_test(tc, truncation_fails_unless_allowed, 0, 2);
    tcase_add_test(tc, unreachable_endpoints_exit_3);
    tcase_add_test(tc, keylog_and_trace);
    tcase_add_test(tc, max_fragment_limits_records);
    tcase_add_test(tc, progress_line_on_a_terminal);
    suite_add_tcase(s, tc);

    const char *vg = getenv("VALGRIND");
    if (!vg || strcmp(vg, "no") != 0) {
        tc = tcase_create("valgrind");
        tcase_add_unchecked_fixture(tc, make_files, free_files);
        tcase_set_timeout(tc, 300);
        tcase_add_test(tc, valgrind_finds_nothing);
        suite_add_tcase(s, tc);
    }
    return s;
}
