/* Internal: the callback transport's state, shared with the fd transport. */
#ifndef DX_LIB_TRANSPORT_IMPL_H
#define DX_LIB_TRANSPORT_IMPL_H

#include <duplex/transport.h>

typedef struct transport {
    dx_transport_ops ops;
    void *arg;
    unsigned flags;
    size_t read_size;
    bool want_write; /* the channel was full: wait for DX_WRITABLE */
    bool eof;        /* read returned 0 */
} transport;

extern const dx_stream_ops dx_transport_stream_ops;
extern const dx_stream_ops dx_fd_stream_ops;

/* Creates a transport stream with sops as its stream operations and extra
 * zeroed bytes of state after the transport's (dx_transport_extra()). */
int dx_transport_create(const dx_stream_ops *sops, const dx_transport_ops *ops,
                        void *arg, unsigned flags, size_t extra,
                        dx_stream **out);
void *dx_transport_extra(dx_stream *s);

#endif
