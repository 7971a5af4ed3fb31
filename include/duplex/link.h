/*
 * libduplex: the link.
 *
 * A link wires two streams both ways: what one delivers is written to the
 * other. Backpressure crosses it (when a write returns DX_FULL the source
 * is paused until on_drain), and so does half-close (on_end of one becomes
 * dx_stream_end() of the other). If either stream fails, the other fails
 * with the same error (dx_stream_fail_with()); if one is aborted without
 * an error before both directions finished, the other is aborted too.
 * When both streams have closed, the link calls its done callback with the
 * first error, or NULL.
 *
 * This is how a filter's lower side is attached to a transport (the
 * TLSSocket shape), how dxtls joins two endpoints, and how a proxy is built.
 */
#ifndef DUPLEX_LINK_H
#define DUPLEX_LINK_H

#include <duplex/stream.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dx_link dx_link;

/*
 * Called once, when both streams have closed. err is the first error
 * either stream failed with, or NULL after a clean close on both sides;
 * it is valid during the call. dx_link_destroy() may be called here.
 */
typedef void (*dx_link_done_cb)(dx_link *l, const dx_error *err, void *user);

/*
 * Links a and b. The link becomes the consumer of both (their events are
 * replaced) and owns both handles: they are released by dx_link_destroy().
 * It also keeps their memory until then, so a stream whose handle is
 * released elsewhere too (the streams of a TLS filter, which
 * dx_tls_destroy() releases) stays valid for the link.
 * Data each had buffered is forwarded at once; a stream that had already
 * closed is seen closed at once. done may be NULL. The caller should not
 * write to linked streams itself (its bytes would interleave).
 * Returns 0, DX_EINVAL (NULL stream, a == b), DX_ENOMEM (then the streams
 * are untouched and still the caller's).
 */
DX_EXTERN int dx_link_new(dx_stream *a, dx_stream *b, dx_link_done_cb done,
                          void *user, dx_link **out);

/*
 * Releases the link and both streams. If they are still open they are
 * aborted, and done is called (with NULL) once both have closed: before
 * this returns, or, when called from inside a callback of one of the
 * streams, right after that callback returns. Safe from inside done and
 * from any stream callback. NULL is ignored.
 */
DX_EXTERN void dx_link_destroy(dx_link *l);

/* Bytes forwarded from a to b, and from b to a. */
DX_EXTERN uint64_t dx_link_bytes_ab(const dx_link *l);
DX_EXTERN uint64_t dx_link_bytes_ba(const dx_link *l);
/* True once both streams have closed. */
DX_EXTERN bool dx_link_is_done(const dx_link *l);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_LINK_H */
