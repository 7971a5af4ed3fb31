/*
 * The command line: options, endpoints, and --help.
 *
 * Options take their value as the next argument or after '=' (--ca=FILE);
 * they may come before, between or after the two endpoints; "--" ends
 * them. Every mistake is one line with a code (Node's util.parseArgs
 * codes where they fit) and exit status 2.
 */
#include "config.h"

#include "dxtls.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void options_usage(FILE *f)
{
    fputs(
        "usage: dxtls [OPTIONS] CLEAR ENCRYPTED\n"
        "       dxtls demo\n"
        "\n"
        "Puts TLS between two byte channels: cleartext flows on CLEAR, TLS on ENCRYPTED.\n"
        "\n"
        "Endpoints:\n"
        "  -                        standard input and output\n"
        "  echo                     sends back what arrives\n"
        "  exec:COMMAND             /bin/sh -c COMMAND, a child per connection, on its\n"
        "                           standard input and output\n"
        "  tcp:HOST:PORT            a TCP connection ([V6ADDR]:PORT for IPv6)\n"
        "  tcp-listen:[HOST:]PORT   a TCP listener; each connection gets its own TLS\n"
        "                           filter and its own instance of the other endpoint;\n"
        "                           port 0 picks one and prints it\n"
        "  unix:PATH                a Unix socket connection\n"
        "  unix-listen:PATH         a Unix socket listener (as tcp-listen)\n"
        "  serial:PATH[,baud=N]     a serial device or tty, raw, N baud (115200)\n"
        "  pty                      a new pseudo-terminal, raw; its path is printed\n"
        "  fd:N[,M]                 inherited descriptors: read N, write M (N)\n"
        "One endpoint at most listens. -, fd: and serial: exist once: facing a\n"
        "listener they take its first connection, and dxtls ends with it.\n"
        "\n"
        "Role:\n"
        "  --client                 be the TLS client (the default)\n"
        "  --server                 be the TLS server\n"
        "\n"
        "Credentials and trust:\n"
        "  --cert FILE              certificate chain, PEM (leaf first)\n"
        "  --key FILE|URI           its private key, PEM or DER, or an OSSL_STORE URI\n"
        "                           (pkcs11:...); default: the --cert file\n"
        "  --pass PASS              passphrase of the key or PFX: TEXT, pass:TEXT,\n"
        "                           env:VAR or file:PATH\n"
        "  --pfx FILE               PKCS#12 archive: certificate, key and chain\n"
        "  --ca FILE                trust these CAs (PEM) instead of the system's;\n"
        "                           repeatable\n"
        "  --crl FILE               check the peer's chain against these CRLs (PEM);\n"
        "                           repeatable\n"
        "\n"
        "Protocol:\n"
        "  --ciphers LIST           cipher list (TLS_* names are TLS 1.3 suites)\n"
        "  --ciphersuites LIST      TLS 1.3 cipher suites\n"
        "  --groups LIST            key-exchange groups (X25519:P-256)\n"
        "  --sigalgs LIST           signature algorithms\n"
        "  --min-version V          lowest version: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3\n"
        "  --max-version V          highest version\n"
        "  --alpn P1,P2             ALPN protocols, in order of preference\n"
        "  --max-fragment N         largest plaintext per record, 512 to 16384\n"
        "\n"
        "Names:\n"
        "  --servername NAME        client: the SNI name and the name the server's\n"
        "                           certificate must match (default: the host of a\n"
        "                           tcp: endpoint when it is a name; for an address,\n"
        "                           the address is checked and no SNI is sent)\n"
        "  --sni NAME:CERT:KEY      server: serve NAME (a wildcard such as *.example.com\n"
        "                           allowed) with this certificate; repeatable\n"
        "\n"
        "Verification:\n"
        "  --insecure               client: go on with a server that fails verification\n"
        "  --request-cert           server: ask for a client certificate; go on without\n"
        "  --require-cert           server: ask for one and refuse clients without a\n"
        "                           valid one\n"
        "\n"
        "Pre-shared keys:\n"
        "  --psk IDENTITY:HEXKEY    a key (client: the one to offer; server: one it\n"
        "                           knows, repeatable); TLS 1.2 needs PSK ciphers\n"
        "  --psk-hint HINT          server: the identity hint of TLS 1.2\n"
        "\n"
        "Sessions:\n"
        "  --session-out FILE       client: save the session the server gives\n"
        "  --session-in FILE        client: resume that session\n"
        "  --ticket-keys FILE       server: the 48 bytes that seal session tickets\n"
        "  --no-tickets             server: no session tickets\n"
        "  --session-store URL      server: share sessions and ticket keys with the\n"
        "                           other servers on this Redis:\n"
        "                           redis://[:PASSWORD@]HOST[:PORT][/DB]; lookups\n"
        "                           wait 50 ms at most; the ticket keys change every\n"
        "                           12 hours (not with --ticket-keys)\n"
        "\n"
        "OCSP:\n"
        "  --ocsp-response FILE     server: staple this DER OCSP response\n"
        "  --request-ocsp           client: ask for a stapled response and check it\n"
        "\n"
        "Timeouts:\n"
        "  --handshake-timeout MS   fail a handshake that takes longer (default\n"
        "                           120000; 0: no limit)\n"
        "  --idle-timeout MS        close a connection silent for MS (0: never, the\n"
        "                           default)\n"
        "\n"
        "Diagnostics:\n"
        "  --keylog FILE            append the session keys (SSLKEYLOGFILE format)\n"
        "  --trace                  the protocol messages on stderr\n"
        "  --progress               a live line on stderr, when it is a terminal: bytes\n"
        "                           each way and the rate\n"
        "  --info                   after each handshake, one line of JSON on stderr\n"
        "                           with Node's names\n"
        "  --verbose                a line on stderr for each connection\n"
        "  --quiet                  nothing on stderr but errors (and what must be\n"
        "                           known: a pty's path, a port picked for port 0)\n"
        "\n"
        "Other:\n"
        "  --allow-truncation       a transport that ends without close_notify ends the\n"
        "                           connection cleanly (default: it is an error)\n"
        "  --help                   this text\n"
        "  --version                the version\n"
        "\n"
        "Exit status: 0 after a clean close, 1 on a TLS failure (handshake,\n"
        "verification), 2 on bad usage, 3 on a transport failure. SIGINT and SIGTERM\n"
        "close connections with close_notify and exit. See dxtls(1).\n",
        f);
}

/* ---- helpers ------------------------------------------------------------- */

typedef struct parser {
    options *o;
    char *msg;
    size_t size;
} parser;

static int fail(parser *p, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(parser *p, const char *code, const char *fmt, ...)
{
    int n = snprintf(p->msg, p->size, "%s: ", code);
    if (n < 0 || (size_t)n >= p->size)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->msg + n, p->size - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static int parse_ms(parser *p, const char *name, const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (!isdigit((unsigned char)*v) || *end || errno || n > 86400000ULL * 365)
        return fail(p, "ERR_INVALID_ARG_VALUE", "%s: '%s' is not a number of milliseconds",
                    name, v);
    *out = n;
    return 0;
}

static int push_str(parser *p, const char ***list, size_t *n, const char *v)
{
    const char **l = realloc(*list, (*n + 1) * sizeof(*l));
    if (!l)
        return fail(p, "ENOMEM", "out of memory");
    l[(*n)++] = v;
    *list = l;
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int parse_psk(parser *p, const char *v)
{
    const char *colon = strrchr(v, ':');
    size_t idlen = colon ? (size_t)(colon - v) : 0;
    const char *hex = colon ? colon + 1 : "";
    size_t hlen = strlen(hex);
    if (!colon || idlen == 0 || idlen > DX_TLS_PSK_IDENTITY_MAX)
        return fail(p, "ERR_INVALID_ARG_VALUE",
                    "--psk: IDENTITY:HEXKEY expected, the identity 1 to %d bytes",
                    DX_TLS_PSK_IDENTITY_MAX);
    if (hlen == 0 || hlen % 2 || hlen / 2 > DX_TLS_PSK_KEY_MAX)
        return fail(p, "ERR_INVALID_ARG_VALUE",
                    "--psk: the key must be 1 to %d bytes in hexadecimal", DX_TLS_PSK_KEY_MAX);
    psk_entry *l = realloc(p->o->psk, (p->o->npsk + 1) * sizeof(*l));
    if (!l)
        return fail(p, "ENOMEM", "out of memory");
    p->o->psk = l;
    psk_entry *e = &l[p->o->npsk];
    memset(e, 0, sizeof(*e));
    memcpy(e->identity, v, idlen);
    for (size_t i = 0; i < hlen / 2; i++) {
        int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            memset(e, 0, sizeof(*e));
            return fail(p, "ERR_INVALID_ARG_VALUE", "--psk: the key is not hexadecimal");
        }
        e->key[i] = (uint8_t)(hi << 4 | lo);
    }
    e->key_len = hlen / 2;
    p->o->npsk++;
    return 0;
}

static int parse_sni(parser *p, const char *v)
{
    const char *c1 = strchr(v, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c1 || !c2 || c1 == v || c2 == c1 + 1 || !c2[1])
        return fail(p, "ERR_INVALID_ARG_VALUE", "--sni: NAME:CERT:KEY expected, got '%s'", v);
    sni_entry *l = realloc(p->o->sni, (p->o->nsni + 1) * sizeof(*l));
    if (!l)
        return fail(p, "ENOMEM", "out of memory");
    p->o->sni = l;
    sni_entry *e = &l[p->o->nsni];
    e->name = strndup(v, (size_t)(c1 - v));
    e->cert = strndup(c1 + 1, (size_t)(c2 - c1 - 1));
    e->key = strdup(c2 + 1);
    p->o->nsni++;
    if (!e->name || !e->cert || !e->key)
        return fail(p, "ENOMEM", "out of memory");
    return 0;
}

static int parse_alpn(parser *p, const char *v)
{
    size_t n = 1;
    for (const char *c = v; *c; c++)
        n += *c == ',';
    for (char **a = p->o->alpn; a && *a; a++)
        free(*a);
    free(p->o->alpn);
    p->o->alpn = calloc(n + 1, sizeof(char *));
    if (!p->o->alpn)
        return fail(p, "ENOMEM", "out of memory");
    const char *s = v;
    for (size_t i = 0; i < n; i++) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0 || len > 255)
            return fail(p, "ERR_INVALID_ARG_VALUE",
                        "--alpn: each protocol name has 1 to 255 bytes, got '%s'", v);
        if (!(p->o->alpn[i] = strndup(s, len)))
            return fail(p, "ENOMEM", "out of memory");
        s = e ? e + 1 : s + len;
    }
    return 0;
}

/* --pass: TEXT, pass:TEXT, env:VAR or file:PATH (its first line). */
static int resolve_pass(parser *p, const char *v)
{
    const char *val = v;
    char line[1024];
    if (!strncmp(v, "pass:", 5)) {
        val = v + 5;
    } else if (!strncmp(v, "env:", 4)) {
        val = getenv(v + 4);
        if (!val)
            return fail(p, "ERR_INVALID_ARG_VALUE", "--pass: the variable %s is not set",
                        v + 4);
    } else if (!strncmp(v, "file:", 5)) {
        FILE *f = fopen(v + 5, "r");
        if (!f)
            return fail(p, "ERR_INVALID_ARG_VALUE", "--pass: %s: %s", v + 5, strerror(errno));
        if (!fgets(line, sizeof(line), f))
            line[0] = '\0';
        fclose(f);
        line[strcspn(line, "\r\n")] = '\0';
        val = line;
    }
    free(p->o->pass_value);
    p->o->pass_value = strdup(val);
    explicit_bzero(line, sizeof(line));
    if (!p->o->pass_value)
        return fail(p, "ENOMEM", "out of memory");
    return 0;
}

/* ---- the table -------------------------------------------------------------- */

enum {
    O_SERVER, O_CLIENT, O_CERT, O_KEY, O_PASS, O_PFX, O_CA, O_CRL, O_CIPHERS, O_CIPHERSUITES,
    O_GROUPS, O_SIGALGS, O_MIN_VERSION, O_MAX_VERSION, O_ALPN, O_MAX_FRAGMENT, O_SERVERNAME,
    O_SNI, O_INSECURE, O_REQUEST_CERT, O_REQUIRE_CERT, O_PSK, O_PSK_HINT, O_SESSION_OUT,
    O_SESSION_IN, O_TICKET_KEYS, O_NO_TICKETS, O_SESSION_STORE, O_OCSP_RESPONSE, O_REQUEST_OCSP,
    O_HANDSHAKE_TIMEOUT, O_IDLE_TIMEOUT, O_KEYLOG, O_TRACE, O_PROGRESS, O_INFO, O_QUIET,
    O_VERBOSE, O_ALLOW_TRUNCATION, O_HELP, O_VERSION,
};

static const struct opt {
    const char *name;
    int id;
    const char *arg; /* NULL: a flag */
} table[] = {
    {"server", O_SERVER, NULL},
    {"client", O_CLIENT, NULL},
    {"cert", O_CERT, "FILE"},
    {"key", O_KEY, "FILE|URI"},
    {"pass", O_PASS, "PASS"},
    {"pfx", O_PFX, "FILE"},
    {"ca", O_CA, "FILE"},
    {"crl", O_CRL, "FILE"},
    {"ciphers", O_CIPHERS, "LIST"},
    {"ciphersuites", O_CIPHERSUITES, "LIST"},
    {"groups", O_GROUPS, "LIST"},
    {"sigalgs", O_SIGALGS, "LIST"},
    {"min-version", O_MIN_VERSION, "V"},
    {"max-version", O_MAX_VERSION, "V"},
    {"alpn", O_ALPN, "P1,P2"},
    {"max-fragment", O_MAX_FRAGMENT, "N"},
    {"servername", O_SERVERNAME, "NAME"},
    {"sni", O_SNI, "NAME:CERT:KEY"},
    {"insecure", O_INSECURE, NULL},
    {"request-cert", O_REQUEST_CERT, NULL},
    {"require-cert", O_REQUIRE_CERT, NULL},
    {"psk", O_PSK, "IDENTITY:HEXKEY"},
    {"psk-hint", O_PSK_HINT, "HINT"},
    {"session-out", O_SESSION_OUT, "FILE"},
    {"session-in", O_SESSION_IN, "FILE"},
    {"ticket-keys", O_TICKET_KEYS, "FILE"},
    {"no-tickets", O_NO_TICKETS, NULL},
    {"session-store", O_SESSION_STORE, "URL"},
    {"ocsp-response", O_OCSP_RESPONSE, "FILE"},
    {"request-ocsp", O_REQUEST_OCSP, NULL},
    {"handshake-timeout", O_HANDSHAKE_TIMEOUT, "MS"},
    {"idle-timeout", O_IDLE_TIMEOUT, "MS"},
    {"keylog", O_KEYLOG, "FILE"},
    {"trace", O_TRACE, NULL},
    {"progress", O_PROGRESS, NULL},
    {"info", O_INFO, NULL},
    {"quiet", O_QUIET, NULL},
    {"verbose", O_VERBOSE, NULL},
    {"allow-truncation", O_ALLOW_TRUNCATION, NULL},
    {"help", O_HELP, NULL},
    {"version", O_VERSION, NULL},
};

static int apply(parser *p, const struct opt *d, const char *v)
{
    options *o = p->o;
    switch (d->id) {
    case O_SERVER: o->server = true; break;
    case O_CLIENT: o->server = false; break;
    case O_CERT: o->cert = v; break;
    case O_KEY: o->key = v; break;
    case O_PASS: o->pass = v; return resolve_pass(p, v);
    case O_PFX: o->pfx = v; break;
    case O_CA: return push_str(p, &o->ca, &o->nca, v);
    case O_CRL: return push_str(p, &o->crl, &o->ncrl, v);
    case O_CIPHERS: o->ciphers = v; break;
    case O_CIPHERSUITES: o->ciphersuites = v; break;
    case O_GROUPS: o->groups = v; break;
    case O_SIGALGS: o->sigalgs = v; break;
    case O_MIN_VERSION: o->min_version = v; break;
    case O_MAX_VERSION: o->max_version = v; break;
    case O_ALPN: return parse_alpn(p, v);
    case O_MAX_FRAGMENT: {
        uint64_t n;
        if (parse_ms(p, "--max-fragment", v, &n) != 0 || n < 512 || n > 16384)
            return fail(p, "ERR_INVALID_ARG_VALUE",
                        "--max-fragment: '%s' is not a number from 512 to 16384", v);
        o->max_fragment = (size_t)n;
        break;
    }
    case O_SERVERNAME:
        if (!*v)
            return fail(p, "ERR_INVALID_ARG_VALUE", "--servername: the name is empty");
        o->servername = v;
        break;
    case O_SNI: return parse_sni(p, v);
    case O_INSECURE: o->insecure = true; break;
    case O_REQUEST_CERT: o->request_cert = true; break;
    case O_REQUIRE_CERT: o->require_cert = true; break;
    case O_PSK: return parse_psk(p, v);
    case O_PSK_HINT:
        if (!*v || strlen(v) > DX_TLS_PSK_IDENTITY_MAX)
            return fail(p, "ERR_INVALID_ARG_VALUE", "--psk-hint: 1 to %d bytes",
                        DX_TLS_PSK_IDENTITY_MAX);
        o->psk_hint = v;
        break;
    case O_SESSION_OUT: o->session_out = v; break;
    case O_SESSION_IN: o->session_in = v; break;
    case O_TICKET_KEYS: o->ticket_keys = v; break;
    case O_NO_TICKETS: o->no_tickets = true; break;
    case O_SESSION_STORE:
#ifdef HAVE_HIREDIS
        if (strncmp(v, "redis://", 8) != 0)
            return fail(p, "ERR_INVALID_ARG_VALUE",
                        "--session-store: not a redis://[:PASSWORD@]HOST[:PORT][/DB] URL");
        o->session_store = v;
        break;
#else
        return fail(p, "ERR_INVALID_ARG_VALUE",
                    "--session-store: this dxtls was built without Redis (hiredis)");
#endif
    case O_OCSP_RESPONSE: o->ocsp_response = v; break;
    case O_REQUEST_OCSP: o->request_ocsp = true; break;
    case O_HANDSHAKE_TIMEOUT:
        o->handshake_timeout_set = true;
        return parse_ms(p, "--handshake-timeout", v, &o->handshake_timeout);
    case O_IDLE_TIMEOUT: return parse_ms(p, "--idle-timeout", v, &o->idle_timeout);
    case O_KEYLOG: o->keylog = v; break;
    case O_TRACE: o->trace = true; break;
    case O_PROGRESS: o->progress = true; break;
    case O_INFO: o->info = true; break;
    case O_QUIET: o->quiet = true; break;
    case O_VERBOSE: o->verbose = true; break;
    case O_ALLOW_TRUNCATION: o->allow_truncation = true; break;
    default: break;
    }
    return 0;
}

/* Options that belong to one role. */
static int check_roles(parser *p)
{
    options *o = p->o;
    const char *server_only = o->nsni ? "--sni"
                              : o->request_cert ? "--request-cert"
                              : o->require_cert ? "--require-cert"
                              : o->psk_hint ? "--psk-hint"
                              : o->ticket_keys ? "--ticket-keys"
                              : o->no_tickets ? "--no-tickets"
                              : o->session_store ? "--session-store"
                              : o->ocsp_response ? "--ocsp-response"
                              : NULL;
    const char *client_only = o->servername ? "--servername"
                              : o->insecure ? "--insecure"
                              : o->session_out ? "--session-out"
                              : o->session_in ? "--session-in"
                              : o->request_ocsp ? "--request-ocsp"
                              : NULL;
    if (!o->server && server_only)
        return fail(p, "ERR_INCOMPATIBLE_OPTION_PAIR", "%s is for servers (--server)",
                    server_only);
    if (o->server && client_only)
        return fail(p, "ERR_INCOMPATIBLE_OPTION_PAIR", "%s is for clients, not with --server",
                    client_only);
    if (!o->server && o->npsk > 1)
        return fail(p, "ERR_INCOMPATIBLE_OPTION_PAIR",
                    "a client offers one --psk; servers may know several");
    if (o->server && !o->cert && !o->pfx && !o->npsk)
        return fail(p, "ERR_MISSING_OPTION",
                    "--server needs a certificate (--cert and --key, or --pfx) or --psk");
    if (o->key && !o->cert)
        return fail(p, "ERR_MISSING_OPTION", "--key needs --cert");
    if (o->cert && o->pfx)
        return fail(p, "ERR_INCOMPATIBLE_OPTION_PAIR", "--cert and --pfx: give one");
    if (o->request_cert && o->require_cert)
        return fail(p, "ERR_INCOMPATIBLE_OPTION_PAIR", "--request-cert and --require-cert: give one");
    if (o->session_store && o->ticket_keys)
        return fail(p, "ERR_INCOMPATIBLE_OPTION_PAIR",
                    "--session-store shares the ticket keys through Redis: no --ticket-keys");
    if (o->quiet && o->verbose)
        return fail(p, "ERR_INCOMPATIBLE_OPTION_PAIR", "--quiet and --verbose: give one");
    if (ep_listens(&o->clear) && ep_listens(&o->encrypted))
        return fail(p, "ERR_INVALID_ARG_VALUE", "one endpoint at most may listen");
    return 0;
}

parse_result options_parse(int argc, char **argv, options *o, char *msg, size_t size)
{
    parser p = {o, msg, size};
    memset(o, 0, sizeof(*o));
    o->clear.rfd = o->clear.wfd = o->encrypted.rfd = o->encrypted.wfd = -1;
    if (argc == 2 && !strcmp(argv[1], "demo"))
        return PARSE_DEMO;
    const char *pos[2];
    int npos = 0;
    bool dashdash = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (dashdash || a[0] != '-' || !strcmp(a, "-")) {
            if (npos == 2) {
                fail(&p, "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL",
                     "unexpected argument '%s': dxtls [OPTIONS] CLEAR ENCRYPTED", a);
                return PARSE_ERROR;
            }
            pos[npos++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            dashdash = true;
            continue;
        }
        if (!strcmp(a, "-h"))
            return PARSE_HELP;
        const char *name = a[1] == '-' ? a + 2 : a + 1;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt *d = NULL;
        for (size_t k = 0; k < sizeof(table) / sizeof(table[0]); k++)
            if (strlen(table[k].name) == nlen && !strncmp(table[k].name, name, nlen))
                d = &table[k];
        if (!d || a[1] != '-') {
            fail(&p, "ERR_PARSE_ARGS_UNKNOWN_OPTION",
                 "unknown option '%s' (dxtls --help lists them)", a);
            return PARSE_ERROR;
        }
        if (d->id == O_HELP)
            return PARSE_HELP;
        if (d->id == O_VERSION)
            return PARSE_VERSION;
        const char *v = NULL;
        if (d->arg) {
            if (eq)
                v = eq + 1;
            else if (i + 1 < argc)
                v = argv[++i];
            else {
                fail(&p, "ERR_PARSE_ARGS_INVALID_OPTION_VALUE", "option '--%s %s' needs a value",
                     d->name, d->arg);
                return PARSE_ERROR;
            }
        } else if (eq) {
            fail(&p, "ERR_PARSE_ARGS_INVALID_OPTION_VALUE", "option '--%s' takes no value",
                 d->name);
            return PARSE_ERROR;
        }
        if (apply(&p, d, v) != 0)
            return PARSE_ERROR;
    }
    if (npos < 2) {
        fail(&p, "ERR_MISSING_ARGS",
             "two endpoints are needed: dxtls [OPTIONS] CLEAR ENCRYPTED (dxtls --help)");
        return PARSE_ERROR;
    }
    char why[400];
    if (ep_parse(pos[0], &o->clear, why, sizeof(why)) != 0 ||
        ep_parse(pos[1], &o->encrypted, why, sizeof(why)) != 0) {
        fail(&p, "ERR_INVALID_ARG_VALUE", "%s", why);
        return PARSE_ERROR;
    }
    if (check_roles(&p) != 0)
        return PARSE_ERROR;
    return PARSE_RUN;
}

void options_free(options *o)
{
    free(o->ca);
    free(o->crl);
    for (char **a = o->alpn; a && *a; a++)
        free(*a);
    free(o->alpn);
    for (size_t i = 0; i < o->nsni; i++) {
        free(o->sni[i].name);
        free(o->sni[i].cert);
        free(o->sni[i].key);
    }
    free(o->sni);
    if (o->psk)
        explicit_bzero(o->psk, o->npsk * sizeof(*o->psk));
    free(o->psk);
    if (o->pass_value) {
        explicit_bzero(o->pass_value, strlen(o->pass_value));
        free(o->pass_value);
    }
    ep_free(&o->clear);
    ep_free(&o->encrypted);
    memset(o, 0, sizeof(*o));
}
