/* Real peers for interop tests (peer.h). */
#include "config.h"

#include "peer.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "harness.h"

void h_peer_start_fds(h_peer *p, const char *const *argv, const int *fds, int nfds, int errfd)
{
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_le(nfds, 8);
    int in[2], out[2];
    ck_assert_int_eq(pipe(in), 0);
    ck_assert_int_eq(pipe(out), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126); /* the test died before prctl */
#endif
        int copies[8];
        for (int i = 0; i < nfds; i++)
            copies[i] = fcntl(fds[i], F_DUPFD, 64);
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(errfd >= 0 ? errfd : out[1], 2);
        for (int i = 0; i < nfds; i++)
            dup2(copies[i], 3 + i);
        for (int fd = 3 + nfds; fd < 256; fd++)
            close(fd); /* nothing else of the test's leaks into the peer */
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    *p = (h_peer){.pid = pid, .in = in[1], .out = out[0]};
    p->cap = 4096;
    p->output = calloc(1, p->cap);
    ck_assert_ptr_nonnull(p->output);
}

void h_peer_start(h_peer *p, const char *const *argv) { h_peer_start_fds(p, argv, NULL, 0, -1); }

const char *h_peer_output(h_peer *p)
{
    for (;;) {
        if (p->cap - p->len < 2048) {
            p->cap *= 2;
            p->output = realloc(p->output, p->cap);
            ck_assert_ptr_nonnull(p->output);
        }
        ssize_t r = p->out >= 0 ? read(p->out, p->output + p->len, p->cap - 1 - p->len) : -1;
        if (r <= 0)
            break;
        p->len += (size_t)r;
    }
    p->output[p->len] = '\0';
    return p->output;
}

void h_peer_write(h_peer *p, const char *text)
{
    size_t n = strlen(text);
    ck_assert_int_ge(p->in, 0);
    ck_assert_int_eq(write(p->in, text, n), (ssize_t)n);
}

void h_peer_close_input(h_peer *p)
{
    if (p->in >= 0)
        close(p->in);
    p->in = -1;
}

typedef struct wait_text {
    h_peer *p;
    const char *text;
} wait_text;

static bool printed(void *arg)
{
    wait_text *w = arg;
    return strstr(h_peer_output(w->p), w->text) != NULL;
}

bool h_peer_run(h_peer *p, dx_stream **streams, size_t n, bool (*done)(void *), void *arg,
                int ms)
{
    int64_t end = h_now_ms() + ms;
    for (;;) {
        h_peer_output(p);
        if (done(arg))
            return true;
        if (h_now_ms() >= end)
            return false;
        if (n)
            dx_fd_poll(streams, n, 10);
        else {
            struct pollfd pfd = {.fd = p->out, .events = POLLIN};
            poll(&pfd, 1, 10);
        }
    }
}

bool h_peer_wait_output(h_peer *p, const char *text, dx_stream **streams, size_t n, int ms)
{
    wait_text w = {p, text};
    return h_peer_run(p, streams, n, printed, &w, ms);
}

int h_peer_stop(h_peer *p, int ms)
{
    h_peer_close_input(p);
    int status = 0, result = -1;
    if (p->pid <= 0)
        return -1;
    int64_t end = h_now_ms() + ms;
    for (;;) {
        h_peer_output(p);
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            result = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            break;
        }
        if (h_now_ms() >= end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            break;
        }
        usleep(5000);
    }
    h_peer_output(p);
    close(p->out);
    p->out = -1;
    p->pid = 0;
    return result;
}

void h_peer_free(h_peer *p)
{
    if (p->pid > 0)
        h_peer_stop(p, 0);
    free(p->output);
    p->output = NULL;
    p->len = p->cap = 0;
}

static struct sockaddr_in loopback(unsigned port)
{
    return (struct sockaddr_in){.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

int h_listen_loopback(unsigned *port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(s, 0);
    struct sockaddr_in sa = loopback(0);
    ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(s, 8), 0);
    socklen_t len = sizeof(sa);
    ck_assert_int_eq(getsockname(s, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return s;
}

unsigned h_free_port(void)
{
    unsigned port;
    close(h_listen_loopback(&port));
    return port;
}

int h_connect_loopback(unsigned port, int ms)
{
    int64_t end = h_now_ms() + ms;
    for (;;) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(s, 0);
        struct sockaddr_in sa = loopback(port);
        if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return s;
        close(s);
        if (h_now_ms() >= end)
            return -1;
        usleep(20000);
    }
}

int h_accept(int listener, int ms)
{
    struct pollfd pfd = {.fd = listener, .events = POLLIN};
    if (poll(&pfd, 1, ms) != 1)
        return -1;
    return accept4(listener, NULL, NULL, SOCK_CLOEXEC);
}

void h_tmpdir(char dir[64])
{
    snprintf(dir, 64, "/tmp/dx-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

const char *h_tmpfile(const char *dir, const char *name, const void *data, size_t len)
{
    static char paths[4][512];
    static unsigned turn;
    char *path = paths[turn++ % 4];
    snprintf(path, sizeof(paths[0]), "%s/%s", dir, name);
    if (len == (size_t)-1)
        len = strlen(data);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

void h_tmpdir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}
