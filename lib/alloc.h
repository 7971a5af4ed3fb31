/* Internal: the library's allocator (see dx_set_allocator()). */
#ifndef DX_LIB_ALLOC_H
#define DX_LIB_ALLOC_H

#include <stddef.h>

void *dx_malloc(size_t n);
void *dx_calloc(size_t n, size_t size);
void *dx_realloc(void *p, size_t n);
void dx_free(void *p);
char *dx_strdup(const char *s);

/* Objects that own memory from the allocator count themselves here, so
 * that dx_set_allocator() can refuse to swap it under them. */
void dx_live_inc(void);
void dx_live_dec(void);

#define DX_UNUSED(x) ((void)(x))

#endif
