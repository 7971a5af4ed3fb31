/*
 * stream-demo: bytes across a memory pair, a link and a real pipe pair.
 *
 *   client ==(memory pair)== link ==(pipe pair)== echo server
 *
 * The client writes a message and ends its side; the echo server, at the
 * far end of two pipes, sends back everything it receives and ends when
 * the client has. The link in the middle forwards both ways with
 * backpressure and half-close. A poll(2) loop drives the pipes; the memory
 * pair needs no driving at all.
 *
 * Build: cc stream-demo.c $(pkg-config --cflags --libs libduplex)
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <duplex/duplex.h>

struct client {
    char got[256];
    size_t len;
    int closed;
};

static void client_data(dx_stream *s, const uint8_t *d, size_t n, void *u)
{
    struct client *c = u;
    (void)s;
    if (n > sizeof(c->got) - 1 - c->len)
        n = sizeof(c->got) - 1 - c->len;
    memcpy(c->got + c->len, d, n);
    c->len += n;
}

static void client_end(dx_stream *s, void *u)
{
    (void)s;
    (void)u;
    printf("client: the echo server ended its side\n");
}

static void client_error(dx_stream *s, const dx_error *e, void *u)
{
    char text[256];
    (void)s;
    (void)u;
    dx_error_format(e, text, sizeof(text));
    fprintf(stderr, "client: %s\n", text);
}

static void client_close(dx_stream *s, void *u)
{
    (void)s;
    ((struct client *)u)->closed = 1;
}

/* The echo server: what arrives goes back; its end ends ours. */
static void echo_data(dx_stream *s, const uint8_t *d, size_t n, void *u)
{
    (void)u;
    if (dx_stream_write(s, d, n) == DX_FULL)
        dx_stream_pause(s); /* resumed on drain */
}

static void echo_drain(dx_stream *s, void *u)
{
    (void)u;
    dx_stream_resume(s);
}

static void echo_end(dx_stream *s, void *u)
{
    (void)u;
    dx_stream_end(s);
}

static void link_done(dx_link *l, const dx_error *err, void *u)
{
    (void)u;
    printf("link: done (%s), %llu bytes client->server, %llu back\n",
           err ? dx_error_name(err) : "clean",
           (unsigned long long)dx_link_bytes_ab(l),
           (unsigned long long)dx_link_bytes_ba(l));
}

int main(void)
{
    const char msg[] = "hello across a memory pair and a pipe pair";
    dx_stream *client, *wire, *near, *far;
    dx_link *link;
    int up[2], down[2], rc;

    if ((rc = dx_pair_new(NULL, &client, &wire)) != 0) {
        fprintf(stderr, "dx_pair_new: %s\n", dx_strerror(rc));
        return 1;
    }
    if (pipe(up) != 0 || pipe(down) != 0) {
        perror("pipe");
        return 1;
    }
    /* near writes up[1] and reads down[0]; far the other way round. */
    if ((rc = dx_fd_stream_new(down[0], up[1], DX_FD_CLOSE, &near)) != 0 ||
        (rc = dx_fd_stream_new(up[0], down[1], DX_FD_CLOSE, &far)) != 0) {
        fprintf(stderr, "dx_fd_stream_new: %s\n", dx_strerror(rc));
        return 1;
    }
    if ((rc = dx_link_new(wire, near, link_done, NULL, &link)) != 0) {
        fprintf(stderr, "dx_link_new: %s\n", dx_strerror(rc));
        return 1;
    }

    struct client c = {.len = 0};
    dx_stream_events ce = {.on_data = client_data, .on_end = client_end,
                           .on_error = client_error, .on_close = client_close};
    dx_stream_events ee = {.on_data = echo_data, .on_drain = echo_drain,
                           .on_end = echo_end};
    dx_stream_set_events(client, &ce, &c);
    dx_stream_set_events(far, &ee, NULL);

    printf("client: sending \"%s\"\n", msg);
    dx_stream_write(client, msg, strlen(msg));
    dx_stream_end(client);

    dx_stream *pipes[2] = {near, far};
    for (int i = 0; i < 1000 && !c.closed; i++)
        if (dx_fd_poll(pipes, 2, 1000) < 0)
            break;

    printf("client: received \"%.*s\"\n", (int)c.len, c.got);
    int ok = c.closed && c.len == strlen(msg) && memcmp(c.got, msg, c.len) == 0;
    printf("%s\n", ok ? "ok: the message came back intact" : "FAILED");

    dx_link_destroy(link);
    dx_stream_destroy(client);
    dx_stream_destroy(far);
    return ok ? 0 : 1;
}
