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
    fz_streams_reset();
    fz_server_open(&s, r->sopts, r->sacts);
    fz_use_stream(1);
    fz_client_open(&c, r->copts, r->cacts, offer, offer_len);
    fz_buf to_server = {0}, to_client = {0};
    fz_exchange(&s, &c, 1, &to_server, &to_client);
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
    fz_use_stream(1);
    fz_ep_close(&c);
    fz_use_stream(0);
    fz_ep_close(&s);
    fz_buf_free(&to_server);
    fz_buf_free(&to_client);
    return n;
}

/* Certificates of every kind dx_pki makes, in DER (and one in PEM). */
static void write_certs(void)
{
    static const char *const dns[] = {"localhost", "*.example.com", "xn--bcher-kva.example", NULL};
    static const char *const ips[] = {"127.0.0.1", "fe80::1", "::ffff:1.2.3.4", NULL};
    static const char *const uris[] = {"https://example.com/a,b", "spiffe://x/y", NULL};
    struct {
        const char *name;
        dx_pki_opts o;
        int signed_by_ca;
    } kinds[] = {
        {"ca", {.common_name = "Seed CA", .is_ca = true}, 0},
        {"ec", {.common_name = "ec", .dns_names = dns, .ip_addresses = ips,
                .ext_key_usage = DX_PKI_EKU_SERVER}, 1},
        {"rsa", {.key_type = DX_PKI_RSA_2048, .common_name = "rsa", .dns_names = dns}, 1},
        {"ed25519", {.key_type = DX_PKI_ED25519, .common_name = "ed", .uris = uris}, 1},
        {"p384", {.key_type = DX_PKI_EC_P384, .common_name = "p384", .must_staple = true,
                  .ext_key_usage = DX_PKI_EKU_SERVER | DX_PKI_EKU_CLIENT}, 1},
        {"expired", {.common_name = "old", .not_before = -7200, .not_after = -3600}, 1},
        {"noname", {0}, 0},
    };
    dx_pki_cert *ca = NULL;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        dx_pki_cert *c;
        if (dx_pki_issue(kinds[i].signed_by_ca ? ca : NULL, &kinds[i].o, &c, NULL) != 0) {
            fprintf(stderr, "record: certificate %s\n", kinds[i].name);
            exit(1);
        }
        const uint8_t *der;
        size_t len;
        dx_pki_cert_der(c, &der, &len);
        write_file("cert", kinds[i].name, 0, 0, 0, der, len, 0);
        if (i == 1) {
            const char *pem = dx_pki_cert_pem(c);
            write_file("cert", "ec.pem", 0, 0, 0, (const uint8_t *)pem, strlen(pem), 0);
        }
        if (i == 0)
            ca = c;
        else
            dx_pki_cert_free(c);
    }
    dx_pki_cert_free(ca);
}

/* Programs of the stream target (fuzz_stream.c): mode, capacity, chunk,
 * then (operation << 1 | end, argument) pairs. */
static void write_streams(void)
{
    static const struct {
        const char *name;
        uint8_t bytes[40];
        size_t len;
    } progs[] = {
        /* write both ways, end both */
        {"pair-write-end", {0, 0, 0, 0 << 1, 40, 0 << 1 | 1, 3, 2 << 1, 0, 2 << 1 | 1, 0}, 11},
        {"link-write-end", {1, 0, 0, 0 << 1, 40, 0 << 1 | 1, 3, 2 << 1, 0, 2 << 1 | 1, 0}, 11},
        {"tls-write-end", {2, 0, 0, 0 << 1, 40, 0 << 1 | 1, 3, 2 << 1, 0, 2 << 1 | 1, 0}, 11},
        /* a paused reader, a small pair, then resume */
        {"pair-backpressure", {0, 1, 7, 4 << 1 | 1, 0, 0 << 1, 255, 0 << 1, 255, 5 << 1 | 1, 0}, 11},
        {"tls-backpressure", {2, 1, 7, 4 << 1 | 1, 0, 0 << 1, 255, 0 << 1, 255, 5 << 1 | 1, 0}, 11},
        /* corked small writes, writev, uncork */
        {"tls-cork", {2, 0, 0, 6 << 1, 0, 0 << 1, 2, 1 << 1, 9, 0 << 1, 5, 7 << 1, 0}, 13},
        /* faults: held delivery, then an injected error */
        {"pair-hold-error", {0, 0, 0, 19 << 1 | 1, 0, 0 << 1, 30, 17 << 1 | 1, 1, 20 << 1 | 1, 0}, 11},
        {"tls-inject-end", {2, 0, 0, 0 << 1, 10, 16 << 1 | 1, 0, 0 << 1 | 1, 10}, 9},
        {"link-inject-destroy", {1, 0, 0, 0 << 1, 10, 18 << 1, 0, 0 << 1 | 1, 10}, 9},
        /* destroy from inside callbacks: on data, on end */
        {"pair-destroy-in-data", {0, 0, 0, 12 << 1 | 1, 0, 0 << 1, 10, 0 << 1, 10}, 9},
        {"tls-destroy-in-end", {2, 0, 0, 12 << 1 | 1, 1, 2 << 1, 0, 0 << 1 | 1, 3}, 9},
        /* echo and end on end, unshift, high-water marks */
        {"link-echo", {1, 0, 3, 11 << 1 | 1, 3, 0 << 1, 20, 8 << 1, 4, 9 << 1 | 1, 0, 2 << 1, 0}, 13},
        /* the handshake held until a timeout */
        {"tls-held-timeout", {2, 0, 0, 19 << 1, 0, 22 << 1, 200, 20 << 1, 0}, 9},
    };
    for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++)
        write_file("stream", progs[i].name, 0, 0, 0, progs[i].bytes, progs[i].len, 0);
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
    write_certs();
    write_streams();
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
