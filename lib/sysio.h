/* Internal: system-call helpers shared by the fd transport and the
 * blocking API. */
#ifndef DX_LIB_SYSIO_H
#define DX_LIB_SYSIO_H

#include <stddef.h>
#include <sys/types.h>

/*
 * write(2), EINTR retried, without raising SIGPIPE when the reader of a
 * pipe or tty is gone (the call then fails with EPIPE). SIGPIPE is blocked
 * in the calling thread around the call, and one that the call raised is
 * taken off the pending set, so the process never sees it; a SIGPIPE that
 * was already pending stays pending.
 */
ssize_t dx_write_nosigpipe(int fd, const void *buf, size_t len);

#endif
