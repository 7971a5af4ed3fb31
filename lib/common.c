/* Version information and the pluggable allocator. */
#include "config.h"

#include <duplex/common.h>
#include <duplex/error.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

unsigned dx_version(void) { return DX_VERSION_HEX; }

const char *dx_version_string(void) { return PACKAGE_VERSION; }

static void *(*malloc_fn)(size_t) = malloc;
static void *(*realloc_fn)(void *, size_t) = realloc;
static void (*free_fn)(void *) = free;
static atomic_long live_objects;

void dx_live_inc(void) { atomic_fetch_add(&live_objects, 1); }
void dx_live_dec(void) { atomic_fetch_sub(&live_objects, 1); }

int dx_set_allocator(void *(*m)(size_t), void *(*r)(void *, size_t),
                     void (*f)(void *))
{
    if (!m || !r || !f)
        return DX_EINVAL;
    if (atomic_load(&live_objects) != 0)
        return DX_ESTATE;
    malloc_fn = m;
    realloc_fn = r;
    free_fn = f;
    return 0;
}

void *dx_malloc(size_t n) { return malloc_fn(n ? n : 1); }

void *dx_calloc(size_t n, size_t size)
{
    if (size && n > (size_t)-1 / size)
        return NULL;
    void *p = dx_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *dx_realloc(void *p, size_t n) { return realloc_fn(p, n ? n : 1); }

void dx_free(void *p)
{
    if (p)
        free_fn(p);
}

char *dx_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = dx_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
