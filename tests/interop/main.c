/*
 * The interop runner (interop.h): the registry of cases, the fixture made
 * once, one forked Check test per case, and the table of results.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "interop.h"

/* The peers, in the order of the table. */
static const struct {
    const char *name;
    void (*reg)(void);
} peers[] = {
    {"openssl", ix_register_openssl},
    {"gnutls", ix_register_gnutls},
    {"curl", ix_register_curl},
    {"keylog", ix_register_keylog},
    {"node", ix_register_node},
    {"python", ix_register_python},
};

/* ---- the registry --------------------------------------------------------------- */

typedef struct ix_row {
    char *peer, *direction, *name;
    char *tcname;   /* the Check test case's name */
    ix_fn fn;       /* NULL: unsupported */
    const void *arg;
    char *reason;   /* unsupported: why */
    char result[512];
    bool ran;
} ix_row;

static ix_row *rows;
static size_t nrows, caprows;

typedef struct ix_peer_row {
    char *name;
    char version[160];
} ix_peer_row;

static ix_peer_row peer_rows[32];
static size_t npeers;

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

static ix_row *add_row(const char *peer, const char *direction, const char *name)
{
    if (nrows == caprows) {
        caprows = caprows ? caprows * 2 : 64;
        rows = realloc(rows, caprows * sizeof(*rows));
        if (!rows)
            abort();
    }
    ix_row *r = &rows[nrows++];
    memset(r, 0, sizeof(*r));
    r->peer = xstrdup(peer);
    r->direction = xstrdup(direction);
    r->name = xstrdup(name);
    return r;
}

/* The first line a command prints, or "" if it cannot be run. */
static void first_line(const char *const *argv, char *out, size_t cap)
{
    out[0] = '\0';
    int fds[2];
    if (pipe(fds) != 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    char buf[4096];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(buf) - 1 && (r = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fds[0]);
    int status;
    if (pid > 0)
        waitpid(pid, &status, 0);
    if (pid <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) == 127)
        return;
    char *line = buf;
    /* Wireshark's tools warn about root first. */
    while (!strncmp(line, "Running as user", 15) && strchr(line, '\n'))
        line = strchr(line, '\n') + 1;
    char *nl = strchr(line, '\n');
    if (nl)
        *nl = '\0';
    size_t len = strlen(line) < cap - 1 ? strlen(line) : cap - 1;
    memcpy(out, line, len);
    out[len] = '\0';
}

void ix_peer(const char *peer, const char *const *version_argv)
{
    if (npeers == sizeof(peer_rows) / sizeof(peer_rows[0]))
        abort();
    ix_peer_row *p = &peer_rows[npeers++];
    p->name = xstrdup(peer);
    first_line(version_argv, p->version, sizeof(p->version));
    if (!p->version[0])
        snprintf(p->version, sizeof(p->version), "not found: %s", version_argv[0]);
}

void ix_case(const char *peer, const char *direction, const char *name, ix_fn fn,
             const void *arg)
{
    ix_row *r = add_row(peer, direction, name);
    r->fn = fn;
    r->arg = arg;
    char tc[512];
    snprintf(tc, sizeof(tc), "%s: %s: %s", peer, direction, name);
    r->tcname = xstrdup(tc);
}

void ix_unsupported(const char *peer, const char *direction, const char *name,
                    const char *reason_fmt, ...)
{
    ix_row *r = add_row(peer, direction, name);
    char reason[384];
    va_list ap;
    va_start(ap, reason_fmt);
    vsnprintf(reason, sizeof(reason), reason_fmt, ap);
    va_end(ap);
    r->reason = xstrdup(reason);
    snprintf(r->result, sizeof(r->result), "unsupported by %s: %s", peer, reason);
}

/* ---- inside a case --------------------------------------------------------------- */

static char fixture_dir[64];
static long current = -1;
static char case_dir[512];

void ix_note(const char *fmt, ...)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/notes/%ld", fixture_dir, current);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

const char *ix_case_dir(void) { return case_dir; }

const char *ix_path(const char *name)
{
    static char paths[8][600];
    static unsigned turn;
    char *p = paths[turn++ % 8];
    snprintf(p, sizeof(paths[0]), "%s/%s", case_dir, name);
    return p;
}

static bool selected(const ix_row *r)
{
    const char *only = getenv("IX_ONLY");
    if (!only || !*only)
        return true;
    char hay[1024];
    snprintf(hay, sizeof(hay), "%s %s %s", r->peer, r->direction, r->name);
    char *list = xstrdup(only), *save = NULL;
    bool hit = false;
    for (char *w = strtok_r(list, "|", &save); w && !hit; w = strtok_r(NULL, "|", &save))
        hit = strstr(hay, w) != NULL;
    free(list);
    return hit;
}

START_TEST(run_case)
{
    current = _i;
    ix_row *r = &rows[_i];
    snprintf(case_dir, sizeof(case_dir), "%s/case-%d", fixture_dir, _i);
    ck_assert_int_eq(mkdir(case_dir, 0700), 0);
    r->fn(r->arg);
}
END_TEST

/* ---- the fixture ------------------------------------------------------------------ */

static ix_fixture fixture;
const ix_fixture *IX = &fixture;

static const char *put(const char *name, const void *data, size_t len)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", fixture_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "interop: cannot write %s\n", path);
        abort();
    }
    return xstrdup(path);
}

static ix_pair pair(const dx_pki_cert *issuer, const char *name, dx_pki_key_type type,
                    const char *cn, const char *const *dns, const char *const *ips, unsigned eku)
{
    dx_pki_opts o = {.key_type = type, .common_name = cn, .dns_names = dns,
                     .ip_addresses = ips, .ext_key_usage = eku};
    ix_pair p = {0};
    H_MUST(dx_pki_issue(issuer, &o, &p.pki, NULL));
    char n[128];
    snprintf(n, sizeof(n), "%s.pem", name);
    p.cert = put(n, dx_pki_cert_pem(p.pki), strlen(dx_pki_cert_pem(p.pki)));
    snprintf(n, sizeof(n), "%s.key", name);
    p.key = put(n, dx_pki_key_pem(p.pki), strlen(dx_pki_key_pem(p.pki)));
    snprintf(n, sizeof(n), "%s-chain.pem", name);
    const char *leaf = dx_pki_cert_pem(p.pki), *ca = dx_pki_cert_pem(issuer);
    size_t ll = strlen(leaf), cl = strlen(ca);
    char *both = malloc(ll + cl);
    if (!both)
        abort();
    memcpy(both, leaf, ll);
    memcpy(both + ll, ca, cl);
    p.chain = put(n, both, ll + cl);
    free(both);
    return p;
}

static const char *ocsp_file(const char *name, const dx_pki_cert *cert)
{
    uint8_t *der;
    size_t len;
    H_MUST(dx_pki_ocsp_response(fixture.ca_pki, cert, DX_PKI_OCSP_GOOD, -60, 86400, &der,
                                &len));
    const char *path = put(name, der, len);
    dx_pki_ocsp_free(der);
    return path;
}

static void make_fixture(void)
{
    static const char *const localhost[] = {"localhost", NULL};
    static const char *const loop_ip[] = {"127.0.0.1", NULL};
    static const char *const sni[] = {"sni.test", NULL};
    snprintf(fixture_dir, sizeof(fixture_dir), "/tmp/dx-interop-XXXXXX");
    if (!mkdtemp(fixture_dir))
        abort();
    char notes[600];
    snprintf(notes, sizeof(notes), "%s/notes", fixture_dir);
    H_MUST(mkdir(notes, 0700));
    fixture.dir = fixture_dir;

    dx_pki_opts ca_opts = {.common_name = "libduplex interop CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &ca_opts, &fixture.ca_pki, NULL));
    fixture.ca = put("ca.pem", dx_pki_cert_pem(fixture.ca_pki),
                     strlen(dx_pki_cert_pem(fixture.ca_pki)));
    dx_pki_cert *other = NULL;
    dx_pki_opts other_opts = {.common_name = "untrusted CA", .is_ca = true};
    H_MUST(dx_pki_issue(NULL, &other_opts, &other, NULL));
    fixture.other_ca = put("other-ca.pem", dx_pki_cert_pem(other),
                           strlen(dx_pki_cert_pem(other)));

    fixture.rsa = pair(fixture.ca_pki, "rsa", DX_PKI_RSA_2048, "localhost", localhost, loop_ip,
                       DX_PKI_EKU_SERVER);
    fixture.ecdsa = pair(fixture.ca_pki, "ecdsa", DX_PKI_EC_P256, "localhost", localhost,
                         loop_ip, DX_PKI_EKU_SERVER);
    fixture.sni = pair(fixture.ca_pki, "sni", DX_PKI_EC_P256, "sni.test", sni, NULL,
                       DX_PKI_EKU_SERVER);
    fixture.client = pair(fixture.ca_pki, "client", DX_PKI_EC_P256, "interop client", NULL,
                          NULL, DX_PKI_EKU_CLIENT);
    fixture.stranger = pair(other, "stranger", DX_PKI_EC_P256, "stranger client", NULL, NULL,
                            DX_PKI_EKU_CLIENT);
    fixture.untrusted = pair(other, "untrusted", DX_PKI_EC_P256, "localhost", localhost,
                             loop_ip, DX_PKI_EKU_SERVER);
    fixture.ocsp_rsa = ocsp_file("rsa.ocsp.der", fixture.rsa.pki);
    fixture.ocsp_ecdsa = ocsp_file("ecdsa.ocsp.der", fixture.ecdsa.pki);
    dx_pki_cert_free(other);

    fixture.psk_identity = "interop";
    static char hex[65];
    for (int i = 0; i < 32; i++) {
        fixture.psk_key[i] = (uint8_t)(0xa0 + i * 7);
        snprintf(hex + 2 * i, 3, "%02x", fixture.psk_key[i]);
    }
    fixture.psk_hex = hex;

    uint8_t *payload = malloc(IX_PAYLOAD);
    if (!payload)
        abort();
    h_gen_fill(8, 0, payload, IX_PAYLOAD);
    fixture.payload_data = payload;
    fixture.payload = put("payload.bin", payload, IX_PAYLOAD);
    ix_sha256(payload, IX_PAYLOAD, fixture.payload_sha256);
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t *text = malloc(IX_PAYLOAD);
    if (!text)
        abort();
    for (size_t i = 0; i < IX_PAYLOAD; i++)
        text[i] = i % 64 == 63 ? '\n' : (uint8_t)alphabet[payload[i] % 64];
    fixture.text_payload_data = text;
    fixture.text_payload = put("payload.txt", text, IX_PAYLOAD);
    ix_sha256(text, IX_PAYLOAD, fixture.text_payload_sha256);
    static const char hello[] = "hello from the peer\n";
    fixture.hello_file = put("hello.txt", hello, strlen(hello));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_fixture(void)
{
    const char *keep = getenv("IX_KEEP");
    if (keep && *keep && strcmp(keep, "0") != 0) {
        printf("files kept in %s\n", fixture_dir);
        return;
    }
    if (fixture_dir[0])
        nftw(fixture_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- the table ------------------------------------------------------------------- */

static void read_note(size_t i, char *out, size_t cap)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/notes/%zu", fixture_dir, i);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    fclose(f);
}

/* Table cells hold no '|' nor newline. */
static void clean_cell(char *s)
{
    for (; *s; s++)
        if (*s == '|' || *s == '\n' || *s == '\r' || *s == '\t')
            *s = *s == '|' ? '/' : ' ';
}

static void collect(SRunner *sr)
{
    int n = srunner_ntests_run(sr);
    TestResult **res = srunner_results(sr);
    for (int k = 0; k < n; k++) {
        const char *tc = tr_tcname(res[k]);
        for (size_t i = 0; i < nrows; i++) {
            ix_row *r = &rows[i];
            if (!r->fn || !r->tcname || strcmp(r->tcname, tc) != 0)
                continue;
            r->ran = true;
            char note[400];
            read_note(i, note, sizeof(note));
            if (tr_rtype(res[k]) == CK_PASS)
                snprintf(r->result, sizeof(r->result), "pass%s%s", note[0] ? ": " : "",
                         note);
            else
                snprintf(r->result, sizeof(r->result), "FAIL: %s (%s:%d)", tr_msg(res[k]),
                         tr_lfile(res[k]) ? tr_lfile(res[k]) : "?", tr_lno(res[k]));
            clean_cell(r->result);
        }
    }
    free(res);
}

static void print_table(FILE *f, bool markdown)
{
    if (markdown) {
        fprintf(f, "Peers:\n\n");
        for (size_t i = 0; i < npeers; i++)
            fprintf(f, "- %s: `%s`\n", peer_rows[i].name, peer_rows[i].version);
        fprintf(f, "\n| peer | direction | case | result |\n|---|---|---|---|\n");
    } else {
        for (size_t i = 0; i < npeers; i++)
            fprintf(f, "peer %s: %s\n", peer_rows[i].name, peer_rows[i].version);
        fprintf(f, "%-8s  %-28s  %-44s  %s\n", "peer", "direction", "case", "result");
    }
    size_t pass = 0, fail = 0, unsupported = 0;
    for (size_t i = 0; i < nrows; i++) {
        ix_row *r = &rows[i];
        if (!selected(r) || (r->fn && !r->ran))
            continue;
        if (!r->fn)
            unsupported++;
        else if (!strncmp(r->result, "pass", 4))
            pass++;
        else
            fail++;
        if (markdown)
            fprintf(f, "| %s | %s | %s | %s |\n", r->peer, r->direction, r->name, r->result);
        else
            fprintf(f, "%-8s  %-28s  %-44s  %s\n", r->peer, r->direction, r->name, r->result);
    }
    fprintf(f, "%s%zu passed, %zu failed, %zu unsupported by their peer\n", markdown ? "\n" : "",
            pass, fail, unsupported);
}

/*
 * The runner is the subreaper of everything the cases start: a program a
 * peer started itself (dxtls's children) and left behind when its case
 * died comes here, and is ended and reaped at the end of the run.
 */
static void kill_children(pid_t self)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char path[300], buf[512];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')'); /* after the command's name */
        int ppid = 0;
        char state;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == self)
            kill((pid_t)atoi(e->d_name), SIGKILL);
    }
    if (d)
        closedir(d);
}

static void end_orphans(void)
{
    /* Killing one may hand us its own children: a few rounds. */
    for (int round = 0; round < 100; round++) {
        kill_children(getpid());
        pid_t r;
        while ((r = waitpid(-1, NULL, WNOHANG)) > 0)
            ;
        if (r < 0) /* ECHILD: nothing left */
            return;
        usleep(20000);
    }
}

int main(void)
{
#ifdef PR_SET_CHILD_SUBREAPER
    prctl(PR_SET_CHILD_SUBREAPER, 1);
#endif
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (EVP_default_properties_is_fips_enabled(NULL))
        fprintf(stderr, "interop: FIPS mode\n");
    make_fixture();
    for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++)
        peers[i].reg();

    Suite *s = suite_create("interop");
    for (size_t i = 0; i < nrows; i++) {
        ix_row *r = &rows[i];
        if (!r->fn || !selected(r))
            continue;
        TCase *tc = tcase_create(r->tcname);
        tcase_set_timeout(tc, 120);
        tcase_add_loop_test(tc, run_case, (int)i, (int)i + 1);
        suite_add_tcase(s, tc);
    }
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK); /* a case per process, whatever CK_FORK says */
    srunner_run_all(sr, CK_ENV);
    collect(sr);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    end_orphans();

    printf("\n");
    print_table(stdout, false);
    const char *table = getenv("IX_TABLE");
    if (!table || !*table)
        table = "interop-table.md";
    FILE *f = fopen(table, "w");
    if (f) {
        print_table(f, true);
        fclose(f);
        printf("table written to %s\n", table);
    } else {
        fprintf(stderr, "interop: cannot write %s: %s\n", table, strerror(errno));
        failed++;
    }
    remove_fixture();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
