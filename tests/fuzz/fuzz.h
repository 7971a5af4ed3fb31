/*
 * What the fuzz targets share (tests/fuzz/common.c): a deterministic
 * process, and a TLS server and a TLS client set up the same way by the
 * targets and by the program that records their seed corpora.
 *
 * Determinism: every input must give the same run, so that a crash found
 * once is found again from its file alone, and so that recorded
 * handshakes stay valid as inputs. Three things would vary between runs:
 *  - OpenSSL's random numbers: fz_init() replaces OpenSSL's random
 *    generators by one seeded stream (fz_rand_state), which each target
 *    resets at the start of every input; key shares, randoms, ticket keys
 *    and signatures then repeat exactly;
 *  - the wall clock, which OpenSSL reads with time() (certificate
 *    validity, session times): this program defines time() itself, fixed
 *    at FZ_NOW;
 *  - the filter's own clock: every connection uses fz_clock(), which
 *    reads fz_now_ms.
 * The certificates are made by dx_pki at start-up under these rules, so
 * they are the same bytes in every run.
 */
#ifndef DX_TESTS_FUZZ_H
#define DX_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <duplex/duplex.h>

/* The libFuzzer entry points (set-up in common.c, the same for every
 * target; the input in each target); the replay driver (replay.c) calls
 * them too. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 2026-01-01 00:00:00 UTC: what time() returns in the fuzz programs. */
#define FZ_NOW ((time_t)1767225600)

/* Once per process: the random stream, the certificates. Aborts on failure. */
void fz_init(void);

/* The state of the random stream behind OpenSSL's generators. */
extern uint64_t fz_rand_state;
#define FZ_SEED_SERVER UINT64_C(0x5345525645520001)
#define FZ_SEED_CLIENT UINT64_C(0x434c49454e540001)

/* The filter's clock (a dx_tls_clock_fn): fz_now_ms. */
extern uint64_t fz_now_ms;
uint64_t fz_clock(void *arg);

/* A growable byte buffer. */
typedef struct fz_buf {
    uint8_t *p;
    size_t len, cap;
} fz_buf;
void fz_buf_add(fz_buf *b, const void *p, size_t n);
void fz_buf_free(fz_buf *b);

/*
 * The input of the server and client targets: a header, then the bytes
 * the peer sends, handed over in chunks.
 *   byte 0  options (FZ_SRV_* or FZ_CLI_*)
 *   byte 1  actions (FZ_ACT_*)
 *   byte 2  chunk size: 0 writes all at once, n writes n bytes at a time
 */
#define FZ_HEADER 3

/* Versions, both sides (options & FZ_VERSION_MASK). */
#define FZ_VERSION_MASK 0x03u
#define FZ_V_ANY 0x00u  /* TLS 1.2 and 1.3 */
#define FZ_V_12 0x01u   /* TLS 1.2 only */
#define FZ_V_13 0x02u   /* TLS 1.3 only */
#define FZ_V_ALL 0x03u  /* from TLS 1.0 */

/* Server options. */
#define FZ_SRV_REQUEST_CERT 0x04u /* ask for a client certificate */
#define FZ_SRV_SNI_LATER 0x08u    /* SNI answered after the chunk, not at once */
#define FZ_SRV_ALPN 0x10u         /* ALPN h2, http/1.1 */
#define FZ_SRV_OCSP 0x20u         /* staple an OCSP response, answered later */
#define FZ_SRV_PSK 0x40u          /* a PSK callback and PSK suites */
#define FZ_SRV_STORE 0x80u        /* an external session store, answered later */

/* Client options. */
#define FZ_CLI_SERVERNAME 0x04u /* send SNI "localhost" */
#define FZ_CLI_CERT 0x08u       /* hold a client certificate */
#define FZ_CLI_ALPN 0x10u       /* offer h2, http/1.1 */
#define FZ_CLI_OCSP 0x20u       /* request and verify a staple */
#define FZ_CLI_NOVERIFY 0x40u   /* reject_unauthorized false */
#define FZ_CLI_PHA 0x80u        /* offer post-handshake authentication */

/* Actions, both sides. */
#define FZ_ACT_HELLO 0x01u     /* write a line once secure */
#define FZ_ACT_ECHO 0x02u      /* write back what arrives */
#define FZ_ACT_EOF 0x04u       /* the transport ends after the input */
#define FZ_ACT_TIMEOUT 0x08u   /* the clock jumps 10 minutes after the input */
#define FZ_ACT_END 0x10u       /* end the cleartext side after the input */
#define FZ_ACT_REHANDSHAKE 0x20u /* once secure: renegotiate (1.2) or key update (1.3) */
#define FZ_ACT_PAUSE 0x40u     /* the cleartext reader is paused until the end */
#define FZ_ACT_HALF_OPEN 0x80u /* allow half-open and truncation */

/*
 * One endpoint over a memory pair: the connection on one end, and on the
 * other the end that the peer's bytes are written to (fz_ep_feed) and
 * whose deliveries are the connection's output (kept in out when
 * keep_out).
 */
typedef struct fz_ep {
    dx_tls_role role;
    unsigned opts, acts;
    dx_tls_server *srv;
    dx_tls_ctx *ctx;
    dx_tls *t;
    dx_stream *wire; /* the peer's end of the pair */
    fz_buf out;
    int keep_out;
    dx_tls_pending *sni, *sess, *ocsp[2];
    size_t nocsp;
    uint8_t session[4096]; /* the last session a client got */
    size_t session_len;
    int secure, rehandshake_started;
    fz_buf clear; /* cleartext received */
} fz_ep;

/* Opens a server or a client endpoint with these options and actions; a
 * client starts (its ClientHello goes to out). session: a session for a
 * client to offer, or NULL. */
void fz_server_open(fz_ep *e, unsigned opts, unsigned acts);
void fz_client_open(fz_ep *e, unsigned opts, unsigned acts, const uint8_t *session,
                    size_t session_len);
/* Hands the peer's bytes to the connection, then answers what waits. */
void fz_ep_feed(fz_ep *e, const uint8_t *p, size_t n);
/* The end-of-input actions (EOF, timeout, end). */
void fz_ep_finish(fz_ep *e);
/* Destroys the connection and the server, and answers what still waits. */
void fz_ep_close(fz_ep *e);

/* A context: a server's (with the server certificate) or a client's
 * (without one), for the versions of opts (FZ_V_*), trusting the test CA. */
dx_tls_ctx *fz_ctx(int server, unsigned opts);

/* Two random streams, the server's and the client's, for programs that
 * run both sides: fz_streams_reset() sets both to their targets' seeds
 * and uses the server's; fz_use_stream() switches (0 server, 1 client). */
void fz_streams_reset(void);
void fz_use_stream(int side);

/*
 * Runs a handshake between a server endpoint s and a client endpoint c
 * that were opened (with keep_out set) one after the other, the server
 * first: each side's bytes go to the other until neither has more; after
 * a few rounds the client's end-of-input actions run (fz_ep_finish).
 * With two_streams each side draws from its own random stream, as in its
 * own target: what one sent is then a valid input of the other's target.
 * The bytes each received are added to to_server and to_client (either
 * may be NULL).
 */
void fz_exchange(fz_ep *s, fz_ep *c, int two_streams, fz_buf *to_server, fz_buf *to_client);
/* The session the external store of FZ_SRV_STORE answers lookups with
 * (copied; NULL for none). */
void fz_store_set(const uint8_t *session, size_t len);

/* Runs one server or client target input. */
void fz_run_endpoint(dx_tls_role role, const uint8_t *data, size_t size);

#endif
