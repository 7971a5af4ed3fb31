/* Internal: core calls for the library's own stream implementations. */
#ifndef DX_LIB_STREAM_INTERNAL_H
#define DX_LIB_STREAM_INTERNAL_H

#include <duplex/stream.h>

/* Caps the bytes of each on_data (0: no cap); larger pushes are split. */
void dx_stream_set_max_delivery(dx_stream *s, size_t max);
/* The implementation's table: tells a library's own streams apart. */
const dx_stream_ops *dx_stream_ops_of(const dx_stream *s);

#endif
