/*
 * libduplex: the byte filters (tap, fragment, delay, throttle, fault).
 *
 * A dx_filter is an object with two streams, as the TLS filter is: bytes
 * written to the upper stream come out of the lower stream, and bytes
 * written to the lower stream come out of the upper stream, each direction
 * passed through the filter's transform (observed, cut up, held back,
 * paced or damaged). The constructors are in <duplex/tap.h> (dx_tap_new)
 * and <duplex/netem.h> (dx_fragment_new, dx_delay_new, dx_throttle_new,
 * dx_fault_new); everything else is common to all of them and lives here.
 *
 * DIRECTIONS. DX_FILTER_DOWN is what is written to the upper stream and
 * delivered by the lower one (towards the transport); DX_FILTER_UP is what
 * is written to the lower stream and delivered by the upper one (towards
 * the application). Options and counters name one direction or both
 * (DX_FILTER_BOTH).
 *
 * STACKING. A filter is placed between two layers like the TLS filter:
 * dx_filter_attach() links its lower stream to a transport, and a layer
 * above uses dx_filter_upper() as its transport (dx_tls_attach(t,
 * dx_filter_upper(f)) runs TLS over the filter). Any number of filters
 * stack that way, and a filter may sit above a TLS filter too (a tap on
 * the cleartext).
 *
 * THE STREAMS keep every contract of dx_stream (stream.h): data before
 * the end, the end of one direction is not the close, on_error at most
 * once, on_close exactly once and last, destroy safe from any callback.
 * A direction holds at most its capacity (dx_filter_set_capacity(),
 * default DX_FILTER_DEFAULT_CAPACITY) of bytes accepted and not yet
 * delivered: a writer beyond it gets DX_FULL and later on_drain, and a
 * reader on the other side that takes no more (paused, once its read
 * buffer reached its mark) stops the filter's delivery, so backpressure
 * crosses the filter end to end. Nothing accepted before the
 * end is lost (unless a fault says so). dx_stream_end() on one stream
 * ends the output of the other once everything before it was delivered.
 * A failure of either stream fails the other with the same error; a
 * stream destroyed (aborted) before both its directions finished aborts
 * the other; a stream that closed cleanly (its end delivered, its own end
 * taken) leaves the other to deliver what the filter still holds, then
 * the end. Errors the filter raises have the filter's kind as layer
 * ("tap", "fragment", "delay", "throttle", "fault"), which is also the
 * streams' dx_stream_kind().
 *
 * TIME comes from outside, as in the TLS filter: a filter that holds bytes
 * back (delay, throttle, a fault's stall) reads the clock given by
 * dx_filter_set_clock() (by default CLOCK_MONOTONIC, in milliseconds) only
 * when called, never arms a timer, and tells its next deadline
 * (dx_filter_deadline(), the deadline hook). The host calls
 * dx_filter_check_timeouts() when it is due. A test that drives the clock
 * by hand runs a slow link (9600 baud, seconds of latency) in no real
 * time at all: set the clock to the next deadline, check, repeat.
 *
 * RANDOMNESS: the filters that draw random numbers (random fragment
 * sizes, random flips and injected bytes of the fault filter) use a
 * SplitMix64 generator seeded from their options: the same seed and the
 * same input give the same output, on every platform.
 *
 * THREADS: a filter, its streams and what they are linked to are used
 * from one thread at a time.
 *
 * LIFETIME: dx_filter_destroy() releases the filter, its two streams and
 * an attached transport. dx_stream_destroy() on either stream aborts the
 * filter but does not release it; both stream pointers stay valid until
 * dx_filter_destroy(). A stream handed to a link of the caller's (or to
 * dx_tls_attach()) is released by whichever of the two goes last.
 */
#ifndef DUPLEX_FILTER_H
#define DUPLEX_FILTER_H

#include <duplex/common.h>
#include <duplex/error.h>
#include <duplex/stream.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dx_filter dx_filter;

/* Directions, as bits. */
#define DX_FILTER_DOWN 0x1u /* upper -> lower */
#define DX_FILTER_UP 0x2u   /* lower -> upper */
#define DX_FILTER_BOTH 0x3u

/* No deadline (dx_filter_deadline). */
#define DX_FILTER_NO_DEADLINE UINT64_MAX
/* Default bytes held per direction, accepted and not yet delivered. */
#define DX_FILTER_DEFAULT_CAPACITY ((size_t)65536)

/* The clock, in milliseconds: the same shape as dx_tls_clock_fn, so that
 * one function can drive a filter and a TLS connection stacked on it. */
typedef uint64_t (*dx_filter_clock_fn)(void *arg);

/*
 * The upper and lower streams. Owned by the filter: valid until
 * dx_filter_destroy(). NULL for a NULL filter.
 */
DX_EXTERN dx_stream *dx_filter_upper(dx_filter *f);
DX_EXTERN dx_stream *dx_filter_lower(dx_filter *f);
/* The filter of an upper or lower stream, or NULL for other streams. */
DX_EXTERN dx_filter *dx_filter_from_stream(const dx_stream *s);
/* The filter's kind: "tap", "fragment", "delay", "throttle", "fault";
 * "" for NULL. Static storage. */
DX_EXTERN const char *dx_filter_kind(const dx_filter *f);

/*
 * Links the lower stream to transport (dx_link), so that what the filter
 * sends down is written to the transport and what the transport delivers
 * goes up through the filter, with backpressure and half-close. The filter
 * owns the transport from then on (also when this fails with DX_ENOMEM).
 * Once per filter, with nothing else consuming the lower stream. Returns
 * 0, DX_EINVAL (NULL, already attached, one of the filter's own streams:
 * the transport stays the caller's), DX_ESTATE (the filter was destroyed
 * or its lower stream closed: the transport stays the caller's), DX_ENOMEM.
 */
DX_EXTERN int dx_filter_attach(dx_filter *f, dx_stream *transport);

/*
 * Aborts the filter if it is open (on_close on both streams; bytes held are
 * dropped), tells the deadline hook DX_FILTER_NO_DEADLINE, and releases the
 * filter with its streams and attached transport. Safe from any callback,
 * the tap's included. NULL is ignored.
 */
DX_EXTERN void dx_filter_destroy(dx_filter *f);

/*
 * Bytes each direction holds at most (accepted, not yet delivered); a
 * writer that finds it full keeps the rest in its stream's write buffer.
 * 1 or more; allowed at any time (a smaller value holds back new writes
 * until the filter has delivered enough; a larger one lets a writer that
 * was held back go on at once, so this may trigger the events of the
 * streams and of the layers linked to them). Bytes a fault injects are not
 * counted against it. Returns 0, DX_EINVAL (NULL, 0).
 */
DX_EXTERN int dx_filter_set_capacity(dx_filter *f, size_t bytes);

/* The clock timed filters read (milliseconds). NULL restores
 * CLOCK_MONOTONIC. Allowed at any time; set it before the first write so
 * that every byte is scheduled on it. Returns 0, DX_EINVAL (NULL f). */
DX_EXTERN int dx_filter_set_clock(dx_filter *f, dx_filter_clock_fn now, void *arg);

/*
 * The next time, on the filter's clock, at which dx_filter_check_timeouts()
 * has something to do (the next held byte falls due, a stall ends), or
 * DX_FILTER_NO_DEADLINE: nothing held, nothing timed, a reader that takes
 * no more for now (paused with its read buffer at its mark: its
 * resumption delivers), or a closed filter. Does not read the clock.
 */
DX_EXTERN uint64_t dx_filter_deadline(const dx_filter *f);

/*
 * Reads the clock and delivers every byte that fell due, in both
 * directions. May trigger the events of both streams (on_data, on_end,
 * on_drain, on_error, on_close, and through them of the layers above and
 * below) and the tap. Nothing happens before the deadline. NULL is ignored.
 */
DX_EXTERN void dx_filter_check_timeouts(dx_filter *f);

/*
 * For the host's event loop: fn is told the next deadline whenever it
 * changes (when is on the filter's clock, or DX_FILTER_NO_DEADLINE); it is
 * not told the deadline current when it is set (read dx_filter_deadline()
 * then). When the filter closes (both streams closed, or
 * dx_filter_destroy()) fn runs a last time with DX_FILTER_NO_DEADLINE and
 * is removed, so the host may release its timer there. fn may read the
 * filter and its clock; it must not write to, end or destroy either stream
 * or the filter, nor call dx_filter_check_timeouts() (arm a timer
 * instead). One hook at a time; fn NULL removes it. Returns 0, DX_EINVAL
 * (NULL f), DX_ESTATE (a hook is already set, or the filter closed).
 */
DX_EXTERN int dx_filter_set_deadline_hook(dx_filter *f,
                                          void (*fn)(dx_filter *f, uint64_t when, void *arg),
                                          void *arg);

/*
 * The tap of any filter: fn is called with every stretch of bytes as the
 * filter delivers it (after the filter's own transform: what the next
 * layer receives), dir DX_FILTER_DOWN or DX_FILTER_UP, offset the count
 * of bytes that direction delivered before them; and once per direction,
 * with data NULL and len 0, when its end is delivered. Called just before
 * the bytes reach the stream's consumer, from the call that delivers them
 * (a write to the other stream, dx_filter_check_timeouts(), a resume). fn
 * may call anything, dx_filter_destroy() included (then the bytes are not
 * delivered). fn NULL removes it. dx_tap_new() (<duplex/tap.h>) is a
 * filter with nothing but a tap. Returns 0, DX_EINVAL (NULL f).
 */
typedef void (*dx_tap_fn)(dx_filter *f, unsigned dir, uint64_t offset,
                          const uint8_t *data, size_t len, void *user);
DX_EXTERN int dx_filter_set_tap(dx_filter *f, dx_tap_fn fn, void *user);

/* Counters of one direction (DX_FILTER_DOWN or DX_FILTER_UP; 0 for any
 * other value or NULL): bytes accepted from the writer (dropped ones
 * included), bytes delivered to the reader (injected ones included), and
 * bytes held now (accepted or injected, not yet delivered). */
DX_EXTERN uint64_t dx_filter_bytes_in(const dx_filter *f, unsigned dir);
DX_EXTERN uint64_t dx_filter_bytes_out(const dx_filter *f, unsigned dir);
DX_EXTERN size_t dx_filter_held(const dx_filter *f, unsigned dir);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_FILTER_H */
