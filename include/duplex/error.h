/*
 * libduplex: error codes and error objects.
 *
 * Status codes are negative int values, stable across releases: a code is
 * never renumbered, new codes are only appended. dx_err_name() gives each a
 * stable code string; where Node.js has a name for the same condition it is
 * used ("EPIPE", "ERR_STREAM_WRITE_AFTER_END", ...).
 *
 * An error object (dx_error) describes one failure of one stream: its code,
 * its stable code string (which a filter may make more precise than
 * dx_err_name() of the code, as TLS does with "CERT_HAS_EXPIRED"), a
 * human-readable message, the name of the layer that raised it ("pair",
 * "fd", "link", ...), and an optional detail (for instance the system call
 * that failed and its errno).
 */
#ifndef DUPLEX_ERROR_H
#define DUPLEX_ERROR_H

#include <duplex/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The codes, with their stable name and message. X(ENUM, value, "name",
 * "message"); the list is public so that bindings can generate tables.
 */
#define DX_ERRNO_MAP(X)                                                      \
    X(DX_EINVAL, -1, "EINVAL", "invalid argument")                          \
    X(DX_ENOMEM, -2, "ENOMEM", "out of memory")                             \
    X(DX_EAGAIN, -3, "EAGAIN", "resource temporarily unavailable")          \
    X(DX_ENOBUFS, -4, "ENOBUFS", "write buffer limit reached")              \
    X(DX_EPIPE, -5, "EPIPE", "broken pipe")                                 \
    X(DX_ECONNRESET, -6, "ECONNRESET", "connection reset by peer")          \
    X(DX_ECANCELED, -7, "ECANCELED", "operation canceled")                  \
    X(DX_EIO, -8, "EIO", "i/o error")                                       \
    X(DX_ETIMEDOUT, -9, "ETIMEDOUT", "timed out")                           \
    X(DX_EPROTO, -10, "EPROTO", "protocol error")                           \
    X(DX_ENOTSUP, -11, "ENOTSUP", "operation not supported by this stream") \
    X(DX_EWRITEAFTEREND, -12, "ERR_STREAM_WRITE_AFTER_END",                 \
      "write after end")                                                    \
    X(DX_EDESTROYED, -13, "ERR_STREAM_DESTROYED",                           \
      "stream is closed or destroyed")                                      \
    X(DX_ESTATE, -14, "ERR_INVALID_STATE", "operation not valid in this state") \
    X(DX_EBADF, -15, "EBADF", "bad file descriptor")                        \
    X(DX_EUNKNOWN, -16, "UNKNOWN", "unknown error")                         \
    X(DX_ETLS, -17, "ERR_TLS", "TLS error")

enum dx_errno {
#define DX_ERRNO_ENUM_(e, v, name, msg) e = v,
    DX_ERRNO_MAP(DX_ERRNO_ENUM_)
#undef DX_ERRNO_ENUM_
};

/*
 * Non-error status of dx_stream_write() and dx_stream_writev(): the data
 * was accepted, but the stream's write buffer is now not empty and at or
 * above its high-water mark; stop writing until on_drain.
 */
#define DX_FULL 1

/* The message for a code: "broken pipe". Unknown codes give
 * "unknown error". Static storage; never NULL. */
DX_EXTERN const char *dx_strerror(int code);

/* The stable code string for a code: "EPIPE". Unknown codes give
 * "UNKNOWN". Static storage; never NULL. */
DX_EXTERN const char *dx_err_name(int code);

typedef struct dx_error dx_error;

/* Readers. None returns NULL: strings that were not set, and every string
 * of a NULL error, read as ""; dx_error_code(NULL) is DX_EINVAL. Strings
 * live as long as the error. */
DX_EXTERN int dx_error_code(const dx_error *e);
DX_EXTERN const char *dx_error_name(const dx_error *e);
DX_EXTERN const char *dx_error_message(const dx_error *e);
DX_EXTERN const char *dx_error_layer(const dx_error *e);
DX_EXTERN const char *dx_error_detail(const dx_error *e);
/* The errno of the system call behind the error, or 0. */
DX_EXTERN int dx_error_sys_errno(const dx_error *e);

/*
 * Writes "layer: NAME: message (detail)" into buf (always NUL-terminated
 * when size > 0), leaving out "layer: " and " (detail)" when they are
 * empty, and returns the length the full text needs, as snprintf does.
 * A NULL error formats as the out-of-memory error.
 */
DX_EXTERN size_t dx_error_format(const dx_error *e, char *buf, size_t size);

/*
 * Makes an error object, for implementers of streams and filters and for
 * callers of dx_stream_destroy_with_error(). name may be NULL for
 * dx_err_name(code); fmt may be NULL for dx_strerror(code); layer may be
 * NULL for "". Texts are copied and truncated: the name to 63 bytes, the
 * layer to 31, the message and the detail to 255.
 *
 * Returns NULL only when memory is short. The calls that take ownership of
 * an error (dx_stream_fail_with(), dx_stream_destroy_with_error()) accept
 * NULL and report DX_ENOMEM instead, so their callers need not check.
 */
DX_EXTERN dx_error *dx_error_new(int code, const char *name, const char *layer,
                                 const char *fmt, ...) DX_PRINTF(4, 5);
/* Sets the detail text; returns 0 or DX_EINVAL for a NULL error. */
DX_EXTERN int dx_error_set_detail(dx_error *e, const char *fmt, ...)
    DX_PRINTF(2, 3);
/* Records the errno of a failed system call. 0, or DX_EINVAL for NULL. */
DX_EXTERN int dx_error_set_sys_errno(dx_error *e, int sys_errno);
/* A deep copy, or NULL when memory is short or e is NULL. */
DX_EXTERN dx_error *dx_error_copy(const dx_error *e);
/* Frees an error made by dx_error_new() or dx_error_copy(); NULL is fine. */
DX_EXTERN void dx_error_free(dx_error *e);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_ERROR_H */
