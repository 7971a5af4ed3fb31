/*
 * Records the seed corpora of the server, client and session targets:
 * real handshakes between a client and a server set up exactly as the
 * targets set them up (tests/fuzz/common.c), each side drawing from its
 * own random stream as it does in its target. What the client sent is a
 * server input, what the server sent a client input: replayed, each makes
 * the target go through the same handshake, application data and close.
 *
 *   record <directory>
 *
 * writes <directory>/server/, <directory>/client/ and
 * <directory>/session/ (the sessions the clients got).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static const char *outdir;

/* Which random stream is in use: 0 the server's, 1 the client's. */
static uint64_t states[2];
static int current;

static void use(int side)
{
    states[current] = fz_rand_state;
    fz_rand_state = states[side];
    current = side;
}

static void write_file(const char *target, const char *name, unsigned h0, unsigned h1,
                       unsigned chunk, const uint8_t *p, size_t n, int header)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", outdir, target);
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    if (header) {
        uint8_t h[FZ_HEADER] = {(uint8_t)h0, (uint8_t)h1, (uint8_t)chunk};
        fwrite(h, 1, sizeof(h), f);
    }
    fwrite(p, 1, n, f);
    if (fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

typedef struct rec {
    const char *name;
    unsigned sopts, sacts, copts, cacts;
    int resume; /* a second connection offers the first one's session */
} rec;

/* One connection; returns the session the client got (copied to sess). */
static size_t one(const rec *r, const char *name, const uint8_t *offer, size_t offer_len,
                  uint8_t *sess, size_t cap)
{
    fz_ep s, c;
    memset(&s, 0, sizeof(s));
    memset(&c, 0, sizeof(c));
    s.keep_out = c.keep_out = 1;
    fz_now_ms = 1000;
    states[0] = FZ_SEED_SERVER;
    states[1] = FZ_SEED_CLIENT;
    current = 0;
    fz_rand_state = states[0];
    fz_server_open(&s, r->sopts, r->sacts);
    use(1);
    fz_client_open(&c, r->copts, r->cacts, offer, offer_len);
    fz_buf to_server = {0}, to_client = {0};
    for (int round = 0; round < 64; round++) {
        if (round == 8) {
            /* the exchange has settled: the client closes */
            use(1);
            fz_ep_finish(&c);
        }
        if (!c.out.len && !s.out.len) {
            if (round >= 8)
                break;
            continue;
        }
        if (c.out.len) {
            fz_buf b = c.out;
            memset(&c.out, 0, sizeof(c.out));
            fz_buf_add(&to_server, b.p, b.len);
            use(0);
            fz_ep_feed(&s, b.p, b.len);
            fz_buf_free(&b);
        }
        if (s.out.len) {
            fz_buf b = s.out;
            memset(&s.out, 0, sizeof(s.out));
            fz_buf_add(&to_client, b.p, b.len);
            use(1);
            fz_ep_feed(&c, b.p, b.len);
            fz_buf_free(&b);
        }
    }
    if (!c.secure || !s.secure) {
        fprintf(stderr, "record: %s: the handshake did not complete (client %d, server %d)\n",
                name, c.secure, s.secure);
        exit(1);
    }
    char file[256];
    write_file("server", name, r->sopts, r->sacts, 0, to_server.p, to_server.len, 1);
    /* the client target offers no session: a resumed exchange is no
     * input for it */
    if (!offer)
        write_file("client", name, r->copts, r->cacts, 0, to_client.p, to_client.len, 1);
    /* the same bytes in small pieces: records cut anywhere */
    snprintf(file, sizeof(file), "%s-chunked", name);
    write_file("server", file, r->sopts, r->sacts, 7, to_server.p, to_server.len, 1);
    if (!offer)
        write_file("client", file, r->copts, r->cacts, 5, to_client.p, to_client.len, 1);
    size_t n = 0;
    if (c.session_len && c.session_len <= cap) {
        memcpy(sess, c.session, c.session_len);
        n = c.session_len;
        write_file("session", name, 0, 0, 0, sess, n, 0);
    }
    use(1);
    fz_ep_close(&c);
    use(0);
    fz_ep_close(&s);
    fz_buf_free(&to_server);
    fz_buf_free(&to_client);
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: record <directory>\n");
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0777) != 0 && errno != EEXIST) {
        perror(outdir);
        return 1;
    }
    fz_init();
    static const rec recs[] = {
        {"default", 0, FZ_ACT_ECHO, 0, FZ_ACT_HELLO | FZ_ACT_END, 1},
        {"tls12", FZ_V_12, FZ_ACT_ECHO, FZ_V_12, FZ_ACT_HELLO | FZ_ACT_END, 1},
        {"tls13", FZ_V_13, FZ_ACT_ECHO, FZ_V_13, FZ_ACT_HELLO | FZ_ACT_END, 1},
        {"sni", FZ_SRV_SNI_LATER, FZ_ACT_ECHO, FZ_CLI_SERVERNAME, FZ_ACT_HELLO | FZ_ACT_END, 0},
        {"sni-contexts", 0, FZ_ACT_ECHO, FZ_CLI_SERVERNAME, FZ_ACT_HELLO | FZ_ACT_END, 0},
        {"alpn", FZ_SRV_ALPN, FZ_ACT_ECHO, FZ_CLI_ALPN, FZ_ACT_HELLO | FZ_ACT_END, 0},
        {"ocsp", FZ_SRV_OCSP, FZ_ACT_ECHO, FZ_CLI_OCSP, FZ_ACT_HELLO | FZ_ACT_END, 0},
        {"ocsp12", FZ_V_12 | FZ_SRV_OCSP, FZ_ACT_ECHO, FZ_V_12 | FZ_CLI_OCSP,
         FZ_ACT_HELLO | FZ_ACT_END, 0},
        {"client-cert", FZ_SRV_REQUEST_CERT, FZ_ACT_ECHO, FZ_CLI_CERT,
         FZ_ACT_HELLO | FZ_ACT_END, 0},
        {"client-cert12", FZ_V_12 | FZ_SRV_REQUEST_CERT, FZ_ACT_ECHO, FZ_V_12 | FZ_CLI_CERT,
         FZ_ACT_HELLO | FZ_ACT_END, 0},
        {"store12", FZ_V_12 | FZ_SRV_STORE, FZ_ACT_ECHO, FZ_V_12, FZ_ACT_HELLO | FZ_ACT_END, 1},
        {"store13", FZ_V_13 | FZ_SRV_STORE, FZ_ACT_ECHO, FZ_V_13, FZ_ACT_HELLO | FZ_ACT_END, 1},
        {"renegotiate", FZ_V_12, FZ_ACT_ECHO | FZ_ACT_REHANDSHAKE, FZ_V_12,
         FZ_ACT_HELLO | FZ_ACT_END, 0},
        {"renegotiate-client", FZ_V_12, FZ_ACT_ECHO, FZ_V_12,
         FZ_ACT_HELLO | FZ_ACT_END | FZ_ACT_REHANDSHAKE, 0},
        {"key-update", FZ_V_13, FZ_ACT_ECHO | FZ_ACT_REHANDSHAKE, FZ_V_13,
         FZ_ACT_HELLO | FZ_ACT_END | FZ_ACT_REHANDSHAKE, 0},
        {"pha", FZ_V_13, FZ_ACT_ECHO | FZ_ACT_REHANDSHAKE, FZ_V_13 | FZ_CLI_PHA | FZ_CLI_CERT,
         FZ_ACT_HELLO | FZ_ACT_END, 0},
        {"half-open", 0, FZ_ACT_ECHO | FZ_ACT_HALF_OPEN, 0,
         FZ_ACT_HELLO | FZ_ACT_END | FZ_ACT_HALF_OPEN, 0},
        {"paused", 0, FZ_ACT_ECHO | FZ_ACT_PAUSE, 0, FZ_ACT_HELLO | FZ_ACT_END, 0},
        {"everything", FZ_SRV_SNI_LATER | FZ_SRV_ALPN | FZ_SRV_OCSP | FZ_SRV_REQUEST_CERT |
                           FZ_SRV_STORE,
         FZ_ACT_ECHO, FZ_CLI_ALPN | FZ_CLI_OCSP | FZ_CLI_CERT | FZ_CLI_PHA,
         FZ_ACT_HELLO | FZ_ACT_END, 1},
    };
    for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
        const rec *r = &recs[i];
        uint8_t sess[4096];
        size_t n = one(r, r->name, NULL, 0, sess, sizeof(sess));
        if (r->resume) {
            if (n == 0) {
                fprintf(stderr, "record: %s: no session to resume\n", r->name);
                return 1;
            }
            char name[256];
            snprintf(name, sizeof(name), "%s-resumed", r->name);
            uint8_t sess2[4096];
            one(r, name, sess, n, sess2, sizeof(sess2));
        }
    }
    return 0;
}
