/*
 * Real peers for interop tests: a program (openssl s_client, s_server,
 * gnutls-cli, node, python3) started by the test with its standard input
 * and output on pipes, TCP on loopback only, and temporary files.
 *
 * A peer is killed when the test process dies (PR_SET_PDEATHSIG), so a
 * failed assertion leaves nothing running; h_peer_stop() reaps it on the
 * normal path.
 */
#ifndef DX_TESTS_PEER_H
#define DX_TESTS_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <duplex/duplex.h>

typedef struct h_peer {
    pid_t pid;
    int in;       /* its standard input; -1 once closed */
    int out;      /* its standard output and error */
    char *output; /* everything it printed, NUL-terminated */
    size_t len, cap;
} h_peer;

/* Starts argv[0] (looked up in PATH) with argv. Fails the test if it
 * cannot be started. */
void h_peer_start(h_peer *p, const char *const *argv);
/* The same with fds[i] (at most 8) as the peer's descriptor 3 + i, and its
 * standard error on errfd (-1: with its standard output). */
void h_peer_start_fds(h_peer *p, const char *const *argv, const int *fds, int nfds, int errfd);
/* Reads what the peer printed since the last call, without waiting, and
 * returns all of its output so far. */
const char *h_peer_output(h_peer *p);
/* Writes text to its standard input. */
void h_peer_write(h_peer *p, const char *text);
/* Closes its standard input (EOF). */
void h_peer_close_input(h_peer *p);
/*
 * Drives the streams (dx_fd_poll over the n fd streams, which may be 0)
 * and reads the peer's output until done(arg) is true or ms pass. done
 * NULL waits for the peer to print text. Returns whether it happened.
 */
bool h_peer_run(h_peer *p, dx_stream **streams, size_t n, bool (*done)(void *), void *arg,
                int ms);
bool h_peer_wait_output(h_peer *p, const char *text, dx_stream **streams, size_t n, int ms);
/* Waits up to ms for the peer to exit, then kills it, and reaps it.
 * Returns its exit status, or -1 if it had to be killed. */
int h_peer_stop(h_peer *p, int ms);
/* Stops it if it still runs (killed at once) and frees its output. */
void h_peer_free(h_peer *p);

/* A TCP socket listening on 127.0.0.1 at a free port (*port). */
int h_listen_loopback(unsigned *port);
/* A port on 127.0.0.1 free at the time of the call, for a peer that
 * listens. */
unsigned h_free_port(void);
/* A connection to 127.0.0.1:port, retried for up to ms while nothing
 * listens there yet; -1 if none. */
int h_connect_loopback(unsigned port, int ms);
/* Accepts one connection on the listening socket within ms; -1 if none. */
int h_accept(int listener, int ms);

/* A new temporary directory (path in dir), removed with its files by
 * h_tmpdir_remove(). */
void h_tmpdir(char dir[64]);
/* Writes len bytes (len (size_t)-1: a string) to dir/name; returns the
 * path, valid until the next four calls. */
const char *h_tmpfile(const char *dir, const char *name, const void *data, size_t len);
void h_tmpdir_remove(const char *dir);

#endif
