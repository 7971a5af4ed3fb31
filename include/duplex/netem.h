/*
 * libduplex: network conditions in memory (fragment, delay, throttle,
 * fault).
 *
 * Filters that make a perfect in-memory link behave like a real one, for
 * tests: re-chunked deliveries, latency, a bandwidth limit (a 9600-baud
 * serial line), and damage placed at chosen bytes (bit flips, lost spans,
 * garbage, stalls, a hang-up, a reset). Each is a dx_filter
 * (<duplex/filter.h>): it stacks under TLS or any other layer, its time
 * is driven from outside (dx_filter_set_clock(),
 * dx_filter_check_timeouts()), and its randomness comes from a seed, so
 * a test that fails fails the same way every run. doc/filters.md shows
 * them together.
 *
 * Each constructor takes dirs, the directions it acts on
 * (DX_FILTER_DOWN, DX_FILTER_UP or DX_FILTER_BOTH); the other direction
 * passes through untouched.
 */
#ifndef DUPLEX_NETEM_H
#define DUPLEX_NETEM_H

#include <duplex/filter.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- fragment -------------------------------------------------------- */

typedef struct dx_fragment_opts {
    unsigned dirs;   /* DX_FILTER_DOWN, DX_FILTER_UP or DX_FILTER_BOTH */
    size_t min, max; /* chunk sizes: min == max gives chunks of that size
                      * (1: byte by byte), min < max sizes drawn uniformly
                      * from [min, max] */
    uint64_t seed;   /* the generator's seed for random sizes */
} dx_fragment_opts;

/*
 * A filter that re-chunks the stream: the bytes of each direction in dirs
 * are delivered in chunks whose boundaries fall at fixed offsets of that
 * direction (the running sum of the sizes), whatever the writes were: a
 * write larger than a chunk is split, and a write that stops short of a
 * boundary is delivered at once as it is (the filter never waits for more
 * bytes), so a boundary also falls where a write ends. The same options
 * give the same boundaries every run. Returns 0, DX_EINVAL (NULL opts or
 * out, dirs not a direction, min 0, min > max), DX_ENOMEM.
 */
DX_EXTERN int dx_fragment_new(const dx_fragment_opts *opts, dx_filter **out);

/* ---- delay and throttle ------------------------------------------------- */

/*
 * A filter that delivers each byte of the directions in dirs ms
 * milliseconds after it was written (the latency of a link), in order;
 * ms 0 passes bytes at once. Timed by the filter's clock: see
 * dx_filter_check_timeouts(). Returns 0, DX_EINVAL (NULL out, dirs not a
 * direction, ms over 10^12), DX_ENOMEM.
 */
DX_EXTERN int dx_delay_new(unsigned dirs, uint64_t ms, dx_filter **out);

/* Bytes per second of a serial line of baud symbols per second with 8N1
 * framing (ten bits a byte): DX_BAUD_8N1(9600) is 960. */
#define DX_BAUD_8N1(baud) ((uint64_t)(baud) / 10u)

/*
 * A filter that limits each direction in dirs to bytes_per_sec, as a
 * line of that speed does: bytes go out one after the other, each taking
 * 1/bytes_per_sec s, and byte k of a burst written at time t (with the
 * line idle) is delivered at t + ceil((k + 1) * 1000 / bytes_per_sec) ms,
 * computed exactly (no drift over a long transfer). The directions are
 * independent lines (full duplex). Timed by the filter's clock. Returns
 * 0, DX_EINVAL (NULL out, dirs not a direction, bytes_per_sec 0 or over
 * 10^12), DX_ENOMEM.
 */
DX_EXTERN int dx_throttle_new(unsigned dirs, uint64_t bytes_per_sec, dx_filter **out);

/* ---- fault -------------------------------------------------------------- */

typedef enum dx_fault_kind {
    DX_FAULT_FLIP = 1,  /* byte at offset XOR mask (mask 0: one random bit) */
    DX_FAULT_DROP,      /* len bytes from offset on are lost */
    DX_FAULT_INJECT,    /* len bytes are inserted before byte offset: data,
                         * or random bytes when data is NULL */
    DX_FAULT_STALL,     /* once offset bytes were delivered, nothing more is
                         * for ms milliseconds (0, or a time past the end
                         * of the clock: ever) */
    DX_FAULT_TRUNCATE,  /* this direction ends after offset bytes; what
                         * follows is swallowed */
    DX_FAULT_END,       /* after offset bytes of this direction the link
                         * hangs up: both directions end (the other after
                         * what it already holds), later writes are
                         * swallowed */
    DX_FAULT_RESET,     /* after offset bytes of this direction both
                         * streams fail with "ECONNRESET" (DX_ECONNRESET);
                         * what is held is lost */
} dx_fault_kind;

typedef struct dx_fault {
    dx_fault_kind kind;
    unsigned dir;        /* DX_FILTER_DOWN or DX_FILTER_UP */
    uint64_t offset;     /* in the bytes written to dir, counted from 0,
                          * dropped ones included and injected ones not */
    uint64_t len;        /* DROP, INJECT: how many bytes */
    const uint8_t *data; /* INJECT: the bytes (copied), or NULL */
    uint8_t mask;        /* FLIP */
    uint64_t ms;         /* STALL */
} dx_fault;

/*
 * A fault filter: passes both directions through unchanged except at the
 * faults added with dx_fault_add(); seed drives the random masks and
 * bytes. Returns 0, DX_EINVAL (NULL out), DX_ENOMEM.
 */
DX_EXTERN int dx_fault_new(uint64_t seed, dx_filter **out);

/*
 * Adds a fault (copied, with its data) to a filter made by dx_fault_new().
 * Faults apply in the order of their offsets (several at one offset in
 * the order they were added). A fault acts as soon as its direction has
 * taken offset bytes from the writer (a FLIP or a DROP then waits for the
 * byte at offset); one added at the offset already reached acts at once,
 * from inside this call (a RESET at offset 0 fails the filter before any
 * byte). One whose offset the direction has passed is refused. Returns 0, DX_EINVAL (NULL, not a fault filter, an
 * unknown kind, dir not exactly one direction, DROP or INJECT with len 0,
 * INJECT over 1 MiB), DX_ESTATE (the offset was passed, or the filter
 * closed), DX_ENOMEM.
 */
DX_EXTERN int dx_fault_add(dx_filter *f, const dx_fault *fault);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_NETEM_H */
