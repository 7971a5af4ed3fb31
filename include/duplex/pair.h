/*
 * libduplex: the in-memory pair.
 *
 * Two connected streams: what one end writes, the other end reads. Each
 * direction holds at most `capacity` bytes; a writer whose bytes do not fit
 * keeps them in its own write buffer (and gets DX_FULL once that reaches
 * its high-water mark), so a paused reader pushes back on the writer
 * exactly as a socket would. Delivery is
 * synchronous: a write delivers on the peer before it returns (unless the
 * peer is paused or held), which makes tests deterministic.
 *
 * The test controls make the pair behave like a hostile link: deliver at
 * most N bytes per on_data, hold delivery and release it later, make an end
 * see EOF, an error, or its transport destroyed. Users test their own
 * protocols with it; libduplex's own tests use it everywhere.
 */
#ifndef DUPLEX_PAIR_H
#define DUPLEX_PAIR_H

#include <duplex/stream.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Default bytes held per direction. */
#define DX_PAIR_DEFAULT_CAPACITY ((size_t)65536)

typedef struct dx_pair_opts {
    /* Bytes held per direction; 0 means DX_PAIR_DEFAULT_CAPACITY. */
    size_t capacity;
    /* Most bytes per on_data on either end; 0 means no limit. */
    size_t max_chunk;
} dx_pair_opts;

/*
 * Creates a connected pair. opts may be NULL for the defaults. *a and *b
 * are independent handles, each released with dx_stream_destroy(); the
 * shared state is freed with the second. Returns 0, DX_EINVAL (NULL a or
 * b), DX_ENOMEM.
 *
 * The controls below return 0, DX_EINVAL if s is not a pair end (or the
 * code is not a negative DX_E* code), DX_EDESTROYED if s has closed.
 *
 * Destroying one end (or its closing for any reason) gives the other end
 * the data already sent, then on_end; writes to it afterwards fail with
 * DX_EPIPE.
 */
DX_EXTERN int dx_pair_new(const dx_pair_opts *opts, dx_stream **a,
                          dx_stream **b);

/* Sets the most bytes per on_data on end s (0: no limit). */
DX_EXTERN int dx_pair_set_max_chunk(dx_stream *s, size_t max_chunk);

/*
 * Holds delivery to end s: bytes written by the peer stay in the pair (and,
 * past the capacity, in the peer's write buffer) until dx_pair_release(),
 * which delivers them before it returns.
 */
DX_EXTERN int dx_pair_hold(dx_stream *s);
DX_EXTERN int dx_pair_release(dx_stream *s);

/* End s sees EOF after the bytes already sent, as if the peer had ended;
 * the peer is not told and may keep writing into the void. */
DX_EXTERN int dx_pair_inject_end(dx_stream *s);
/* End s fails with code (a DX_E* code) as if its transport had failed;
 * the peer then sees EOF. */
DX_EXTERN int dx_pair_inject_error(dx_stream *s, int code);
/* End s closes as if its transport had been destroyed (no error); the
 * peer then sees EOF. */
DX_EXTERN int dx_pair_inject_destroy(dx_stream *s);

/* True if s is an end of a memory pair. */
DX_EXTERN bool dx_is_pair(const dx_stream *s);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_PAIR_H */
