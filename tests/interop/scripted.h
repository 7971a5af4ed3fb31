/*
 * Peers written as scripts (tests/interop/peers/): Node.js's tls module and
 * Python's ssl module, which take the same options and print the same JSON
 * line per connection, so one matrix of cases (scripted.c) serves both;
 * node.c and python.c describe each one and what it cannot do.
 *
 * The interpreters: $IX_NODE (default: node in PATH) and $IX_PYTHON
 * (default: /usr/bin/python3 if present, else python3 in PATH).
 */
#ifndef DX_TESTS_INTEROP_SCRIPTED_H
#define DX_TESTS_INTEROP_SCRIPTED_H

#include <stdbool.h>

typedef struct sp_peer {
    const char *name;       /* the table's peer column: "node", "python" */
    const char *program;    /* the interpreter */
    const char *script;     /* under tests/interop/peers/ */
    /* The directions' names of its client and server, over TCP and over
     * its standard input and output. */
    const char *tcp_client, *tcp_server, *stdio_client, *stdio_server;
    /* NULL if it tells a close_notify from a bare EOF over TCP; else why
     * not (over stdio both peers can). */
    const char *no_close_notify_tcp;
    /* NULL if its server resumes TLS 1.3 sessions without tickets (from a
     * session cache); else why not. */
    const char *no_tls13_session_cache;
    /* NULL if it does pre-shared keys, OCSP stapling (both sides), and
     * OCSP stapling as a server over stdio; else why not. */
    const char *no_psk, *no_ocsp, *no_ocsp_stdio_server;
} sp_peer;

/* Registers the whole matrix for the peer: the ix_peer() line, its
 * cases, and an ix_unsupported() row for each cell it cannot do. */
void sp_register(const sp_peer *peer);

#endif
