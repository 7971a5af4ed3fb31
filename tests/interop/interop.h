/*
 * The interop suite: libduplex against TLS stacks written elsewhere
 * (OpenSSL's s_server and s_client, GnuTLS's gnutls-serv and gnutls-cli,
 * curl, Node.js, Python), each started by the test on loopback or on
 * pipes, and a keylog proof with tshark.
 *
 * THE PROGRAM: tests/interop/interop, one of make check's TESTS. It is a
 * Check runner: every case is a Check test of its own, run in a forked
 * child (whatever CK_FORK says), so that a failed assertion ends that
 * case alone and the peers it started die with it (PR_SET_PDEATHSIG,
 * tests/peer.h). After the run it prints the table (peer, direction,
 * case, result) to standard output and writes it as Markdown to
 * $IX_TABLE (default: interop-table.md in the current directory), from
 * which doc/interop.md is made (scripts/interop-doc). Environment:
 *   IX_ONLY=TEXT   run only the cases whose "peer direction case" holds
 *                  TEXT (several: separated by '|')
 *   IX_TABLE=PATH  where the Markdown table goes
 *   IX_VERBOSE=1   cases print the commands they run and what their
 *                  peers printed
 *   IX_KEEP=1      keep the certificates and the cases' files afterwards
 *
 * A PEER FILE (tests/interop/<peer>.c) defines one function,
 *     void ix_register_<peer>(void);
 * declared below and listed in main.c's table of peers, which calls
 * ix_peer() once, then ix_case() for each case it runs and
 * ix_unsupported() for each cell of the matrix the peer cannot do. Cases
 * run in the order registered; the table lists them in that order.
 *
 * A CASE is a function void fn(const void *arg), run in its own process
 * as a Check test: it asserts with ck_assert*(), may call ix_note() to
 * put a few words in its cell ("TLSv1.3, ECDHE-ECDSA..."), and must leave
 * nothing behind: peers started with h_peer_start*() or ix_spawn() die
 * with the case's process; temporary files go under ix_case_dir(), which
 * is removed after the case.
 *
 * DIRECTION is written "A → B": A is the TLS client, B the server; one of
 * them is "libduplex" (the library driven by this program, IX_LIB) or
 * "dxtls" (the tool, IX_DXTLS), the other is the peer's program.
 *
 * THE LIBDUPLEX SIDE (ix_side, ix_conn): an ix_side holds what outlives
 * one connection (contexts; a server's dx_tls_server with its session
 * cache and ticket keys; a client's last session), made from ix_opts; an
 * ix_conn is one connection over file descriptors (a TCP socket, or a
 * peer's standard output and input), driven by ix_wait(), a poll loop
 * over the connection and, optionally, a peer's output. A conn records
 * what happened (secure, protocol, ALPN, errors by name, the sha256 of
 * what it received, close_notify) for the case to assert.
 *
 * A PEER ON PIPES (TLS over its standard input and output): start it with
 * h_peer_start_fds(&p, argv, NULL, 0, errfd), errfd a file opened on
 * ix_path("stderr") (its diagnostics must not mix with the records), then
 * ix_conn_open(&c, s, p.out, p.in) and set p.in = p.out = -1: the conn
 * owns the pipes from then on (ix_end() closes the peer's input after
 * close_notify), and h_peer_stop() only waits for the peer.
 */
#ifndef DX_TESTS_INTEROP_H
#define DX_TESTS_INTEROP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <check.h>
#include <duplex/duplex.h>

#include "../harness.h"
#include "../peer.h"

/* How long a case waits for any one thing. */
#define IX_WAIT_MS 20000

/* The names of our two sides in directions. */
#define IX_LIB "libduplex"
#define IX_DXTLS "dxtls"

/* ---- registration -------------------------------------------------------------- */

typedef void (*ix_fn)(const void *arg);

/* Declares a peer: its name (the first column) and the command that
 * prints its version (argv, NULL-terminated; its first line goes into the
 * table's header). */
void ix_peer(const char *peer, const char *const *version_argv);
/* A case: fn(arg) runs as a Check test. The strings are copied. */
void ix_case(const char *peer, const char *direction, const char *name, ix_fn fn,
             const void *arg);
/* A cell the peer cannot do: "unsupported by <peer>: <reason>". */
void ix_unsupported(const char *peer, const char *direction, const char *name,
                    const char *reason_fmt, ...) __attribute__((format(printf, 4, 5)));
/* Inside a case: words added to its cell (after "pass"); the last call
 * wins. */
void ix_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Inside a case: a directory of its own, removed after it. */
const char *ix_case_dir(void);
/* Inside a case: a path in ix_case_dir(), valid until the 8th next call. */
const char *ix_path(const char *name);

/* The peers (tests/interop/<peer>.c). */
void ix_register_openssl(void);
void ix_register_gnutls(void);
void ix_register_curl(void);
void ix_register_keylog(void);
void ix_register_node(void);
void ix_register_python(void);

/* ---- the certificates and the data: made once, before any case ------------------- */

typedef struct ix_pair {
    const char *cert; /* PEM file */
    const char *key;  /* PEM file (PKCS#8) */
    const char *chain; /* PEM file: the certificate, then its CA */
    dx_pki_cert *pki; /* the object, for in-memory contexts */
} ix_pair;

typedef struct ix_fixture {
    const char *dir;
    const char *ca;        /* the test CA, PEM: issued every pair below but "untrusted" */
    dx_pki_cert *ca_pki;
    const char *other_ca;  /* another CA, which nobody trusts */
    ix_pair rsa;           /* server: CN localhost, DNS localhost, IP 127.0.0.1; RSA 2048 */
    ix_pair ecdsa;         /* the same names, EC P-256 */
    ix_pair sni;           /* server: "sni.test" (EC P-256), for SNI among contexts */
    ix_pair client;        /* client certificate: CN "interop client", from the CA */
    ix_pair stranger;      /* client certificate from other_ca */
    ix_pair untrusted;     /* server "localhost" from other_ca */
    const char *ocsp_rsa;  /* DER OCSP responses, status good, by the CA */
    const char *ocsp_ecdsa;
    const char *psk_identity;  /* "interop" */
    const char *psk_hex;       /* 32-byte key in hex */
    uint8_t psk_key[32];
    const char *payload;       /* IX_PAYLOAD bytes, a file */
    const uint8_t *payload_data;
    char payload_sha256[65];   /* hex */
    const char *hello_file;    /* a short line, "hello from the peer\n", a file */
    /* IX_PAYLOAD bytes of text (lines of 63 letters and digits), for
     * peers that take only text (gnutls-serv --echo). */
    const char *text_payload;
    const uint8_t *text_payload_data;
    char text_payload_sha256[65];
} ix_fixture;

#define IX_PAYLOAD ((size_t)10 << 20)

extern const ix_fixture *IX;

/* sha256 of a buffer or a file, as lower-case hex. */
void ix_sha256(const void *data, size_t len, char out[65]);
void ix_sha256_file(const char *path, char out[65]);
/* The whole of a file, NUL-terminated (for free()); *len its size. */
char *ix_slurp(const char *path, size_t *len);

/* ---- processes ------------------------------------------------------------------ */

/* The built dxtls ($top_builddir/dxtls). */
const char *ix_dxtls(void);
/* The port a dxtls listening on tcp-listen:127.0.0.1:0 printed. */
unsigned ix_dxtls_port(h_peer *p);

/*
 * Starts a peer through /bin/sh -c "exec CMD", so that CMD may redirect
 * its input or output to files (big transfers go through files); the
 * standard input and output stay on the h_peer's pipes otherwise, and
 * standard error goes with standard output. CMD is printf-formatted.
 */
void ix_spawn(h_peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Waits for the peer to print text (without a connection to drive);
 * fails the case with the peer's output if it does not. */
void ix_expect_output(h_peer *p, const char *text);
/* The end of what the peer printed (at most 1500 bytes), for failure
 * messages, which Check cannot carry much longer. */
const char *ix_out(h_peer *p);
/* Waits for the peer to exit (up to IX_WAIT_MS, then kills it) and
 * returns its status (-1: killed). */
int ix_stop(h_peer *p);
/* Waits up to IX_WAIT_MS for the peer to exit by itself, its standard
 * input left open; its exit status, or -1 if it still runs. */
int ix_wait_exit(h_peer *p);
/* Kills a peer that never exits by itself (a server), and reaps it. */
void ix_kill(h_peer *p);

/*
 * Moves the case into a network namespace of its own, with only its own
 * loopback interface up: for peers that cannot bind to 127.0.0.1 alone
 * (gnutls-serv listens on every address). Everything the case starts
 * afterwards shares it. Unprivileged, a user namespace comes first.
 * Fails the case if the system refuses.
 */
void ix_private_net(void);

/* A port on 127.0.0.1 for a peer server, and a wait until it accepts
 * connections: the connected socket (the probe connection is the one to
 * use, so servers that serve one client are fine). */
unsigned ix_port(void);
int ix_connect(unsigned port);

/* ---- the libduplex side --------------------------------------------------------- */

typedef struct ix_opts {
    dx_tls_role role;
    /* Our certificate: none (client), or a pair of IX. */
    const ix_pair *cert;
    /* Trust: the test CA unless no_trust (then nothing is trusted). */
    bool no_trust;
    /* "TLSv1.2" / "TLSv1.3"; NULL: the library's default. */
    const char *min_version, *max_version;
    /* Client: SNI and identity name (NULL: none sent, "localhost" checked
     * only if check_name). */
    const char *servername;
    /* ALPN protocols, NULL-terminated, or NULL. */
    const char *const *alpn;
    /* Server: ask for a client certificate; refuse clients without a
     * valid one (require_cert implies request_cert). */
    bool request_cert, require_cert;
    /* Server: an SNI context for this pair's DNS name ("sni.test"). */
    const ix_pair *sni;
    /* Both: the PSK of IX (identity, key). TLS 1.2 uses psk_ciphers. */
    bool psk;
    const char *ciphers;
    /* Server: staple this DER OCSP file. Client: ask for a staple and
     * verify it. */
    const char *ocsp;
    bool request_ocsp;
    /* Server: no session tickets (resumption by session id only). */
    bool no_tickets;
    /* Append key log lines (NSS format) to this file. */
    const char *keylog;
    /* Client: do not stop at a certificate that fails verification. */
    bool insecure;
} ix_opts;

typedef struct ix_side ix_side;

ix_side *ix_side_new(const ix_opts *o);
void ix_side_free(ix_side *s);
/* Client: offer the last session it received on the next connection. */
void ix_side_resume(ix_side *s, bool on);
/* Client: whether a session was received. */
bool ix_side_has_session(const ix_side *s);

typedef struct ix_conn {
    ix_side *side;
    dx_tls *t;
    dx_stream *transport;
    /* What happened. */
    bool secure, ended, closed, failed;
    char error[96];          /* the error's name (code), when failed */
    char error_msg[256];
    char protocol[16];
    char cipher[64];
    char alpn[32];
    char servername[64];     /* server: the SNI name the client sent */
    char peer_cn[128];       /* the peer certificate's subject CN, if any */
    bool authorized, reused, clean_end;
    bool ocsp_stapled;
    dx_tls_ocsp_result ocsp_result;
    uint64_t received;
    char received_sha256[65]; /* of everything received, once ended */
    uint8_t *data;           /* the first IX_KEEP bytes received */
    size_t len;
    /* Sending from memory with backpressure (ix_send). */
    const uint8_t *src;
    size_t src_len, src_off;
    bool end_after_send;
    void *sha; /* running hash */
} ix_conn;
#define IX_KEEP 65536

/* A connection of side s over rfd (read) and wfd (written; the same fd,
 * or -1, for a socket). The conn owns the fds from here: they are closed by
 * ix_conn_free(). Client connections send servername if set. */
void ix_conn_open(ix_conn *c, ix_side *s, int rfd, int wfd);
/* Sends len bytes (kept by the caller until sent), then ends with
 * close_notify if end. Data goes as the peer takes it, during ix_wait. */
void ix_send(ix_conn *c, const void *data, size_t len, bool end);
/* Ends our side: close_notify. */
void ix_end(ix_conn *c);
/*
 * Drives c (NULL: nothing) and reads p's output (NULL: none) until
 * done(c, arg) or IX_WAIT_MS pass. Returns done's last answer.
 */
bool ix_wait(ix_conn *c, h_peer *p, bool (*done)(ix_conn *c, void *arg), void *arg);
/* Predicates for ix_wait. */
bool ix_is_secure(ix_conn *c, void *arg);   /* secure or failed */
bool ix_is_closed(ix_conn *c, void *arg);   /* closed (both ways done) or failed */
bool ix_is_ended(ix_conn *c, void *arg);    /* the peer ended, or failed */
bool ix_has_text(ix_conn *c, void *text);   /* received text, or failed/ended */
bool ix_has_bytes(ix_conn *c, void *n);     /* received *(uint64_t *)n, or failed/ended */
bool ix_is_sent(ix_conn *c, void *arg);     /* all of ix_send written, or failed */
/* Fails the case unless c is secure and not failed (with p's output). */
void ix_assert_secure(ix_conn *c, h_peer *p);
/* Fails the case unless c failed with that error name. */
void ix_assert_error(ix_conn *c, const char *name, h_peer *p);
void ix_conn_free(ix_conn *c);

#endif
