/*
 * dxtls: the TLS filter between two byte channels, on a libuv loop.
 *
 *   dxtls [OPTIONS] CLEAR ENCRYPTED
 *
 * The parts, one file each:
 *   main.c      the command line, the loop, signals, messages, exit status
 *   options.c   the options and --help
 *   endpoint.c  the endpoint kinds: parsing, opening one as a dx_stream,
 *               listening
 *   fdio.c      descriptors (stdio, fd:, pty, serial:) as fd streams polled
 *               from the loop
 *   tlsconf.c   contexts, the server object and the files the options name
 *   relay.c     one connection: its TLS filter, its two endpoints, and the
 *               cleartext pumped between them until both close
 *   info.c      the --info JSON line and the readable summary of `demo`
 *   demo.c      `dxtls demo`
 *
 * Only the library's public API is used.
 */
#ifndef DXTLS_H
#define DXTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include <duplex/duplex.h>
#include <duplex/uv.h>

/* Exit statuses. */
#define EXIT_OK 0
#define EXIT_TLS 1       /* a TLS failure: handshake, verification, ... */
#define EXIT_USAGE 2     /* bad usage: options, endpoints, files they name */
#define EXIT_TRANSPORT 3 /* a transport failure: connect, listen, I/O */

/* How long a connection that is closing waits for the peer's close_notify
 * before it lets go. */
#define CLOSE_GRACE_MS 2000

/* ---- endpoints (endpoint.c) ------------------------------------------- */

typedef enum ep_kind {
    EP_STDIO,       /* - */
    EP_ECHO,        /* echo */
    EP_EXEC,        /* exec:COMMAND */
    EP_TCP,         /* tcp:HOST:PORT */
    EP_TCP_LISTEN,  /* tcp-listen:[HOST:]PORT */
    EP_UNIX,        /* unix:PATH */
    EP_UNIX_LISTEN, /* unix-listen:PATH */
    EP_SERIAL,      /* serial:PATH[,baud=N] */
    EP_PTY,         /* pty */
    EP_FD,          /* fd:N[,M] */
} ep_kind;

typedef struct endpoint {
    ep_kind kind;
    const char *text; /* as given on the command line */
    char *host;       /* tcp, tcp-listen (NULL: every interface) */
    unsigned port;
    char *path;       /* unix, unix-listen, serial */
    char *command;    /* exec */
    unsigned baud;    /* serial */
    int rfd, wfd;     /* fd */
} endpoint;

/* Parses text into *e. On failure returns -1 with a message in msg. */
int ep_parse(const char *text, endpoint *e, char *msg, size_t size);
void ep_free(endpoint *e);
bool ep_listens(const endpoint *e);
/* Whether a new instance can be opened for every connection (echo, exec,
 * tcp, unix, pty); stdio, fd and serial exist once. */
bool ep_repeatable(const endpoint *e);

struct app;

/* One opened (or opening) instance of an endpoint. */
typedef struct ep_inst ep_inst;
/* The outcome of ep_open(): s (the callee's) or err (valid during the
 * call). */
typedef void (*ep_ready_cb)(void *arg, dx_stream *s, const dx_error *err);
/*
 * Opens an instance of e. cb runs exactly once, possibly before this
 * returns, unless the instance is released first. The instance stays
 * until ep_release(), which gives up an open under way and, for exec:,
 * ends the child.
 */
ep_inst *ep_open(struct app *a, const endpoint *e, ep_ready_cb cb, void *arg);
void ep_release(ep_inst *i);

/* A connection came to a listening endpoint: s is the callee's; peer is
 * its address as text ("127.0.0.1:5555", "" for a Unix socket). */
typedef void (*ep_accept_cb)(void *arg, dx_stream *s, const char *peer);
/* Listens; returns 0, or an exit status with *err set (the caller frees
 * it). Prints "listening on ..." unless quiet (always for port 0). */
int ep_listen(struct app *a, const endpoint *e, ep_accept_cb cb, void *arg,
              dx_uv_listener **out, dx_error **err);

/* ---- descriptors on the loop (fdio.c) -------------------------------- */

/* Flags of fdio_open(). */
#define FDIO_CLOSE 0x1u /* the descriptors are ours: closed at the end */
/* rfd (== wfd) is a pseudo-terminal's master. Closing it discards what
 * the slave has not read yet: at the end it stays open until the slave's
 * input is read, the slave hangs up, or CLOSE_GRACE_MS pass. */
#define FDIO_PTY 0x2u

typedef struct fdio_loop fdio_loop;
int fdio_loop_new(uv_loop_t *loop, fdio_loop **out);
/* Closes the loop's handles once no stream is left; frees it from the
 * loop's close callbacks. */
void fdio_loop_close(fdio_loop *fl);
/*
 * A dx_stream reading rfd and writing wfd (-1: that direction unused),
 * polled from the loop (or served on every turn of the loop when the
 * descriptor cannot be polled: a regular file, /dev/null). When its write
 * side has finished, a separate wfd is closed so that its reader sees the
 * end (descriptors 0 to 2 are pointed at /dev/null instead). Returns 0 or
 * a DX_E* code.
 */
int fdio_open(fdio_loop *fl, int rfd, int wfd, unsigned flags, dx_stream **out);

/* ---- options (options.c) ---------------------------------------------- */

typedef struct sni_entry {
    char *name, *cert, *key;
} sni_entry;

typedef struct psk_entry {
    char identity[DX_TLS_PSK_IDENTITY_MAX + 1];
    uint8_t key[DX_TLS_PSK_KEY_MAX];
    size_t key_len;
} psk_entry;

typedef struct options {
    bool server;
    const char *cert, *key, *pass, *pfx;
    const char **ca, **crl;
    size_t nca, ncrl;
    const char *ciphers, *ciphersuites, *groups, *sigalgs;
    const char *min_version, *max_version;
    char **alpn; /* NULL-terminated, or NULL */
    size_t max_fragment;
    const char *servername;
    sni_entry *sni;
    size_t nsni;
    bool insecure, request_cert, require_cert;
    psk_entry *psk;
    size_t npsk;
    const char *psk_hint;
    const char *session_out, *session_in, *ticket_keys;
    const char *session_store; /* --session-store URL */
    bool no_tickets;
    const char *ocsp_response;
    bool request_ocsp;
    bool handshake_timeout_set;
    uint64_t handshake_timeout, idle_timeout;
    const char *keylog;
    bool trace, progress, info, quiet, verbose, allow_truncation;
    char *pass_value; /* --pass resolved (pass:, env:, file:) */
    endpoint clear, encrypted;
} options;

/* What parsing decided. */
typedef enum parse_result { PARSE_RUN, PARSE_HELP, PARSE_VERSION, PARSE_DEMO, PARSE_ERROR } parse_result;

/* Parses argv into *o. PARSE_ERROR comes with a message (one line, with
 * its code) in msg. */
parse_result options_parse(int argc, char **argv, options *o, char *msg, size_t size);
void options_free(options *o);
void options_usage(FILE *f);

/* ---- TLS configuration (tlsconf.c) ------------------------------------ */

typedef struct tlsconf {
    dx_tls_ctx *ctx;      /* the client's context, or the server's default */
    dx_tls_server *srv;   /* servers */
    uint8_t *session;     /* --session-in */
    size_t session_len;
    uint8_t *ocsp;        /* --ocsp-response */
    size_t ocsp_len;
    FILE *keylog;         /* --keylog */
} tlsconf;

/* Builds contexts and reads the files the options name. Returns 0, or
 * EXIT_USAGE with a message (one line, with its code) in msg. */
int tlsconf_build(tlsconf *tc, const options *o, char *msg, size_t size);
void tlsconf_free(tlsconf *tc);

/* ---- one connection (relay.c) ----------------------------------------- */

typedef struct relay relay;

/* Sides of a relay. */
#define SIDE_CLEAR 0
#define SIDE_ENC 1

/* A new connection; it opens what it is not given: with s (a stream
 * accepted on the endpoint of side), the other endpoint; without, the
 * encrypted endpoint and then the cleartext one. peer may be NULL. */
relay *relay_new(struct app *a, int side, dx_stream *s, const char *peer);
/* Closes the connection: close_notify when it is secure and open, an
 * abort otherwise; the peer's close_notify is awaited CLOSE_GRACE_MS at
 * most. */
void relay_stop(relay *r);
/* Aborts it at once. */
void relay_abort(relay *r);
/* Cleartext moved: out to the TLS peer, in from it. */
void relay_bytes(const relay *r, uint64_t *out, uint64_t *in);
/* The next in the application's list (app.relays), or NULL. */
relay *relay_next(const relay *r);

/* ---- the application (main.c) ----------------------------------------- */

typedef struct app {
    uv_loop_t *loop;
    options *opt;
    tlsconf tls;
    fdio_loop *fdio;
    relay *relays; /* a ring through relay's links; NULL when none */
    size_t nrelays;
    unsigned next_id;
    dx_uv_listener *listener;
    struct dx_redis_store *store; /* --session-store */
    int listen_side;   /* SIDE_CLEAR or SIDE_ENC, -1: none */
    bool one_shot;     /* the tool ends with its (first) connection */
    bool stopping;     /* a signal came, or the tool is ending */
    int status;
    uint64_t done_out, done_in; /* bytes of connections that ended */
} app;

/* A relay ended with status (EXIT_*), having moved out and in bytes of
 * cleartext. */
void app_relay_done(app *a, int status, uint64_t out, uint64_t in);

/* Messages on stderr, one line each (the progress line is redrawn around
 * them). note: information, only with --verbose; notice: shown unless
 * --quiet; complain: errors, always. */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void complain(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* What the user needs to go on (a pty's path, the port picked for port
 * 0): always shown. */
void announce(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Raw text on stderr (--trace). */
void emit_raw(const char *text);

/* "CODE: message (detail)" of an error, on one line. */
void error_text(const dx_error *err, char *buf, size_t size);
/* The same with a context after the code: "CODE: context: message
 * (detail)" (context NULL or "": none). */
void error_line(char *buf, size_t size, const dx_error *err, const char *context);

/* ---- reports (info.c) ------------------------------------------------- */

/* A growing string. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool failed;
} sbuf;
void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_json_str(sbuf *b, const char *s); /* a JSON string, or null for NULL */
void sb_free(sbuf *b);

/* The --info line of a connection whose handshake completed (Node's
 * names), without a newline. ocsp: whether the client asked for a
 * staple. */
void info_json(sbuf *b, dx_tls *t, unsigned id, bool ocsp);
/* The same fields, readable, one per line, each line starting with
 * indent. */
void info_text(sbuf *b, dx_tls *t, const char *indent);

/* ---- demo (demo.c) ---------------------------------------------------- */

int demo_main(void);

#endif
