/*
 * libduplex: the tap filter, and a hex dump.
 *
 * A tap passes every byte through unchanged, in both directions, and
 * reports each stretch to a callback as it crosses: a protocol trace at
 * any layer of a stack (under TLS it sees the records, above it the
 * cleartext). The common calls (streams, attach, destroy) are in
 * <duplex/filter.h>; dx_filter_set_tap() puts the same callback on any
 * other filter.
 *
 *   dx_filter *tap;
 *   dx_tap_new(print_bytes, stderr, &tap);
 *   dx_filter_attach(tap, transport);          transport below the tap
 *   dx_tls_attach(tls, dx_filter_upper(tap));  TLS records traced
 */
#ifndef DUPLEX_TAP_H
#define DUPLEX_TAP_H

#include <duplex/filter.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A new tap filter calling fn (see dx_tap_fn in <duplex/filter.h>: the
 * direction, the offset of the stretch in its direction, the bytes; data
 * NULL and len 0 for the end of a direction) with user. fn may be NULL (a
 * plain pass-through; dx_filter_set_tap() may set one later). Returns 0,
 * DX_EINVAL (NULL out), DX_ENOMEM.
 */
DX_EXTERN int dx_tap_new(dx_tap_fn fn, void *user, dx_filter **out);

/*
 * Formats len bytes as hexdump -C does, 16 a line:
 *
 *   00000010  16 03 01 00 f4 01 00 00  f0 03 03 5c 1a 2b 3c 4d  |...........\.+<M|
 *
 * each line starting with its offset (offset + its index in data, 8 hex
 * digits, more when needed), then the bytes in hex, then the printable
 * ASCII (other bytes as '.'), and ending with '\n'. Writes at most cap
 * bytes into out, always NUL-terminated when cap > 0 (a line that does not
 * fit is cut), and returns the length of the whole dump without the NUL,
 * as snprintf does: call with cap 0 to learn the size. 0 for len 0. out
 * may be NULL when cap is 0; data may be NULL when len is 0.
 */
DX_EXTERN size_t dx_hexdump(char *out, size_t cap, const void *data, size_t len,
                            uint64_t offset);

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_TAP_H */
