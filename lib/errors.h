/* Internal helpers around dx_error. */
#ifndef DX_LIB_ERRORS_H
#define DX_LIB_ERRORS_H

#include <stdarg.h>

#include <duplex/error.h>

/* The shared error reported when memory for a real one is short. It is
 * never freed (dx_error_free() ignores it). */
const dx_error *dx_error_oom(void);
dx_error *dx_error_vnew(int code, const char *name, const char *layer,
                        const char *fmt, va_list ap);
/* Sets the layer if the error has none yet. */
int dx_error_default_layer(dx_error *e, const char *layer);

/* The DX_E* code for an errno value. */
int dx_errno_to_code(int sys_errno);

#endif
