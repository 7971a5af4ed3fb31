/*
 * The keylog proof: a TLS session between libduplex and openssl, captured
 * on the loopback interface by dumpcap, is decrypted by tshark with the
 * key log lines libduplex wrote (NSS format): the application data it
 * shows is what each side sent. The same capture read without the key
 * log shows none of it. Each case runs in a network namespace of its own,
 * so that the capture holds its traffic alone; capturing needs root (or
 * CAP_NET_RAW): a system that refuses it fails the case by name.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "interop.h"

#define PEER "keylog"

typedef struct kspec {
    dx_tls_role role; /* ours */
    const char *version;
    bool dxtls; /* dxtls --keylog is our side (a client) */
} kspec;

static void to_hex(const char *text, char *out)
{
    for (; *text; text++, out += 2)
        sprintf(out, "%02x", (unsigned char)*text);
    *out = '\0';
}

/* What tshark shows as decrypted data of the capture, hex, one record a
 * line; with keylog NULL, no key log is given. */
static char *decrypted(const char *capture, const char *keylog)
{
    h_peer t;
    char opt[700] = "";
    if (keylog)
        snprintf(opt, sizeof(opt), "-o tls.keylog_file:%s", keylog);
    ix_spawn(&t, "tshark -n -r %s %s -Y data -T fields -e data.data 2>%s", capture, opt,
             ix_path("tshark.err"));
    int status = ix_wait_exit(&t);
    ck_assert_msg(status == 0, "tshark exited %d: %s", status, ix_slurp(ix_path("tshark.err"), NULL));
    char *out = strdup(h_peer_output(&t));
    h_peer_free(&t);
    return out;
}

/* The packets in the capture so far that match a display filter. */
static int count(const char *capture, const char *filter)
{
    h_peer t;
    ix_spawn(&t, "tshark -n -r %s -Y '%s' -T fields -e frame.number 2>/dev/null", capture,
             filter);
    ix_wait_exit(&t);
    int n = 0;
    for (const char *q = h_peer_output(&t); *q; q++)
        n += *q == '\n';
    h_peer_free(&t);
    return n;
}

static void keylog_proof(const void *arg)
{
    const kspec *k = arg;
    ix_private_net();
    unsigned port;
    int lfd = -1;
    if (k->role == DX_TLS_SERVER)
        lfd = h_listen_loopback(&port);
    else
        port = ix_port();
    const char *capture = ix_path("capture.pcapng");
    const char *keylog = ix_path("keylog.txt");

    h_peer cap;
    unsigned probe = ix_port();
    ix_spawn(&cap, "dumpcap -i lo -f 'tcp port %u or udp port %u' -w %s", port, probe, capture);
    ck_assert_msg(h_peer_wait_output(&cap, "Capturing on", NULL, 0, IX_WAIT_MS),
                  "capture on lo not permitted or not started: %s", ix_out(&cap));
    /* dumpcap says it captures a little before it does, and hands packets
     * over in batches: UDP probes until one is in the file. */
    int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(u, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)probe),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int64_t until = h_now_ms() + IX_WAIT_MS;
    bool ready = false;
    while (!ready && h_now_ms() < until) {
        sendto(u, "probe", 5, 0, (struct sockaddr *)&to, sizeof(to));
        usleep(100000);
        ready = count(capture, "udp") > 0;
    }
    close(u);
    ck_assert_msg(ready, "the capture on lo saw nothing: %s", ix_out(&cap));

    char ours[96], theirs[96];
    snprintf(ours, sizeof(ours), "libduplex application data %08x\n", (unsigned)getpid());
    snprintf(theirs, sizeof(theirs), "openssl application data %08x\n", (unsigned)getpid());
    h_peer p;
    ix_side *s;
    ix_conn c;
    const char *vflag = !strcmp(k->version, "1.2") ? "-tls1_2" : "-tls1_3";
    if (k->dxtls) {
        /* dxtls's input ends after our line: it sends close_notify, the
         * peer answers, dxtls exits 0. */
        ix_spawn(&p, "openssl s_server -accept 127.0.0.1:%u -cert %s -key %s %s -naccept 1",
                 port, IX->ecdsa.cert, IX->ecdsa.key, vflag);
        ix_expect_output(&p, "ACCEPT");
        h_peer cl;
        ix_spawn(&cl, "%s --ca %s --servername localhost --keylog %s - tcp:127.0.0.1:%u",
                 ix_dxtls(), IX->ca, keylog, port);
        h_peer_write(&p, theirs);
        h_peer_write(&cl, ours);
        ix_expect_output(&cl, theirs);
        ix_expect_output(&p, ours);
        h_peer_close_input(&cl);
        int st = ix_wait_exit(&cl);
        ck_assert_msg(st == 0, "dxtls exited %d: %s", st, ix_out(&cl));
        h_peer_free(&cl);
        ix_stop(&p);
        h_peer_free(&p);
        goto captured;
    }
    if (k->role == DX_TLS_CLIENT) {
        ix_spawn(&p, "openssl s_server -accept 127.0.0.1:%u -cert %s -key %s %s -naccept 1",
                 port, IX->ecdsa.cert, IX->ecdsa.key, vflag);
        ix_expect_output(&p, "ACCEPT");
        s = ix_side_new(&(ix_opts){.role = DX_TLS_CLIENT, .servername = "localhost",
                                   .keylog = keylog});
        ix_conn_open(&c, s, ix_connect(port), -1);
    } else {
        ix_spawn(&p, "openssl s_client -connect 127.0.0.1:%u -servername localhost -CAfile %s "
                     "-verify_return_error %s",
                 port, IX->ca, vflag);
        int fd = h_accept(lfd, IX_WAIT_MS);
        ck_assert_msg(fd >= 0, "%s", ix_out(&p));
        close(lfd);
        s = ix_side_new(&(ix_opts){.role = DX_TLS_SERVER, .cert = &IX->ecdsa, .keylog = keylog});
        ix_conn_open(&c, s, fd, fd);
    }
    ck_assert(ix_wait(&c, &p, ix_is_secure, NULL));
    ix_assert_secure(&c, &p);
    h_peer_write(&p, theirs);
    ix_send(&c, ours, strlen(ours), false);
    ck_assert(ix_wait(&c, &p, ix_has_text, theirs) && !c.failed);
    ix_expect_output(&p, ours);
    ix_end(&c);
    ck_assert(ix_wait(&c, &p, ix_is_ended, NULL));
    ck_assert(c.clean_end);
    ix_conn_free(&c);
    ix_side_free(s);
    ix_stop(&p);
    h_peer_free(&p);
captured:;
    /* dumpcap gets packets in batches: wait until both ends (FIN or RST) are in the
     * file, as a stop now would drop the batch under way. */
    int64_t end = h_now_ms() + IX_WAIT_MS;
    int64_t started = h_now_ms();
    int ends = 0;
    while ((ends = count(capture, "tcp.flags.fin==1 or tcp.flags.reset==1")) < 2 &&
           h_now_ms() < end)
        usleep(100000);
    int64_t waited = h_now_ms() - started;
    kill(cap.pid, SIGTERM); /* dumpcap writes its last packets and exits */
    int status = ix_wait_exit(&cap);
    char capinfo[512];
    snprintf(capinfo, sizeof(capinfo), "%d ends after %lld ms; dumpcap exited %d: %s", ends,
             (long long)waited, status, ix_out(&cap));
    h_peer_free(&cap);

    size_t len;
    char *lines = ix_slurp(keylog, &len);
    ck_assert_msg(len > 0, "no key log lines");
    if (!strcmp(k->version, "1.3"))
        ck_assert_msg(strstr(lines, "CLIENT_TRAFFIC_SECRET_0 ") &&
                          strstr(lines, "SERVER_TRAFFIC_SECRET_0 "),
                      "%s", lines);
    else
        ck_assert_msg(strstr(lines, "CLIENT_RANDOM "), "%s", lines);
    free(lines);

    char hex_ours[200], hex_theirs[200];
    to_hex(ours, hex_ours);
    to_hex(theirs, hex_theirs);
    char *with = decrypted(capture, keylog);
    char *without = decrypted(capture, NULL);
    ck_assert_msg(strstr(with, hex_ours) && strstr(with, hex_theirs),
                  "tshark did not decrypt both sides' data with our key log: [%s]; %s", with,
                  capinfo);
    ck_assert_msg(!strstr(without, hex_ours) && !strstr(without, hex_theirs),
                  "the data is visible without the key log: [%s]", without);
    free(with);
    free(without);
    ix_note("TLS %s: tshark decrypted both sides' application data with our key log, "
            "and none without it", k->version);
}

void ix_register_keylog(void)
{
    ix_peer(PEER, (const char *const[]){"tshark", "--version", NULL});
    static const kspec specs[] = {
        {DX_TLS_CLIENT, "1.3", false},
        {DX_TLS_SERVER, "1.3", false},
        {DX_TLS_CLIENT, "1.2", false},
        {DX_TLS_SERVER, "1.2", false},
#ifdef HAVE_LIBUV
        {DX_TLS_CLIENT, "1.3", true},
#endif
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        char name[128];
        snprintf(name, sizeof(name), "TLS %s: a capture decrypted by tshark with our key log",
                 specs[i].version);
        ix_case(PEER,
                specs[i].dxtls                     ? IX_DXTLS " → s_server"
                : specs[i].role == DX_TLS_CLIENT ? IX_LIB " → s_server"
                                                   : "s_client → " IX_LIB,
                name, keylog_proof, &specs[i]);
    }
}
