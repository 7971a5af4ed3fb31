/* Error codes, their names, and error objects. */
#include "config.h"

#include <duplex/error.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "errors.h"

#define DX_ERR_TEXT 256

struct dx_error {
    int code;
    int sys_errno;
    char name[64];
    char layer[32];
    char message[DX_ERR_TEXT];
    char detail[DX_ERR_TEXT];
};

const char *dx_strerror(int code)
{
    switch (code) {
#define DX_ERR_MSG_(e, v, name, msg) \
    case v:                          \
        return msg;
        DX_ERRNO_MAP(DX_ERR_MSG_)
#undef DX_ERR_MSG_
    default:
        return "unknown error";
    }
}

const char *dx_err_name(int code)
{
    switch (code) {
#define DX_ERR_NAME_(e, v, name, msg) \
    case v:                           \
        return name;
        DX_ERRNO_MAP(DX_ERR_NAME_)
#undef DX_ERR_NAME_
    default:
        return "UNKNOWN";
    }
}

/* The error handed out when there is no memory for a real one. */
static const dx_error oom_error = {
    .code = DX_ENOMEM, .name = "ENOMEM", .layer = "", .message = "out of memory",
};

const dx_error *dx_error_oom(void) { return &oom_error; }

int dx_error_code(const dx_error *e) { return e ? e->code : DX_EINVAL; }
const char *dx_error_name(const dx_error *e) { return e ? e->name : ""; }
const char *dx_error_message(const dx_error *e) { return e ? e->message : ""; }
const char *dx_error_layer(const dx_error *e) { return e ? e->layer : ""; }
const char *dx_error_detail(const dx_error *e) { return e ? e->detail : ""; }
int dx_error_sys_errno(const dx_error *e) { return e ? e->sys_errno : 0; }

size_t dx_error_format(const dx_error *e, char *buf, size_t size)
{
    if (!e)
        e = &oom_error;
    int n;
    if (e->detail[0])
        n = snprintf(buf, size, "%s%s%s: %s (%s)", e->layer,
                     e->layer[0] ? ": " : "", e->name, e->message, e->detail);
    else
        n = snprintf(buf, size, "%s%s%s: %s", e->layer,
                     e->layer[0] ? ": " : "", e->name, e->message);
    return n < 0 ? 0 : (size_t)n;
}

static void copy_text(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

dx_error *dx_error_vnew(int code, const char *name, const char *layer,
                        const char *fmt, va_list ap)
{
    dx_error *e = dx_calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->code = code;
    copy_text(e->name, sizeof(e->name), name ? name : dx_err_name(code));
    copy_text(e->layer, sizeof(e->layer), layer);
    if (fmt)
        vsnprintf(e->message, sizeof(e->message), fmt, ap);
    else
        copy_text(e->message, sizeof(e->message), dx_strerror(code));
    return e;
}

dx_error *dx_error_new(int code, const char *name, const char *layer,
                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dx_error *e = dx_error_vnew(code, name, layer, fmt, ap);
    va_end(ap);
    return e;
}

int dx_error_set_detail(dx_error *e, const char *fmt, ...)
{
    if (!e)
        return DX_EINVAL;
    if (!fmt) {
        e->detail[0] = '\0';
        return 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->detail, sizeof(e->detail), fmt, ap);
    va_end(ap);
    return 0;
}

int dx_error_set_sys_errno(dx_error *e, int sys_errno)
{
    if (!e)
        return DX_EINVAL;
    e->sys_errno = sys_errno;
    return 0;
}

int dx_error_default_layer(dx_error *e, const char *layer)
{
    if (!e || e == &oom_error)
        return DX_EINVAL;
    if (!e->layer[0])
        copy_text(e->layer, sizeof(e->layer), layer);
    return 0;
}

dx_error *dx_error_copy(const dx_error *e)
{
    if (!e)
        return NULL;
    dx_error *c = dx_malloc(sizeof(*c));
    if (c)
        memcpy(c, e, sizeof(*c));
    return c;
}

void dx_error_free(dx_error *e)
{
    if (e && e != &oom_error)
        dx_free(e);
}

int dx_errno_to_code(int sys_errno)
{
    switch (sys_errno) {
    case 0:
        return 0;
    case EINVAL:
        return DX_EINVAL;
    case ENOMEM:
        return DX_ENOMEM;
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return DX_EAGAIN;
    case ENOBUFS:
        return DX_ENOBUFS;
    case EPIPE:
        return DX_EPIPE;
    case ECONNRESET:
    case ECONNABORTED:
        return DX_ECONNRESET;
    case ECANCELED:
        return DX_ECANCELED;
    case ETIMEDOUT:
        return DX_ETIMEDOUT;
    case EPROTO:
        return DX_EPROTO;
    case EBADF:
        return DX_EBADF;
    case ENOTSUP:
        return DX_ENOTSUP;
    default:
        return DX_EIO;
    }
}
