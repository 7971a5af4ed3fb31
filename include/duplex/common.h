/*
 * libduplex: common definitions shared by every module.
 *
 * Every public symbol carries the dx_ prefix (DX_ for macros and enum
 * values). Functions return 0 or a negative DX_E* code (see error.h)
 * unless documented otherwise, and report results through out-parameters.
 */
#ifndef DUPLEX_COMMON_H
#define DUPLEX_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(DX_BUILDING_LIBRARY) && defined(__GNUC__)
#define DX_EXTERN __attribute__((visibility("default")))
#else
#define DX_EXTERN
#endif

#if defined(__GNUC__)
#define DX_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define DX_PRINTF(fmt, args)
#endif

#define DX_VERSION_MAJOR 0
#define DX_VERSION_MINOR 1
#define DX_VERSION_PATCH 0
/* (major << 16) | (minor << 8) | patch, for compile-time comparisons. */
#define DX_VERSION_HEX \
    ((DX_VERSION_MAJOR << 16) | (DX_VERSION_MINOR << 8) | DX_VERSION_PATCH)

/* The version of the library that is running, as DX_VERSION_HEX. */
DX_EXTERN unsigned dx_version(void);
/* The same as a string, "0.1.0". Static storage. */
DX_EXTERN const char *dx_version_string(void);

/*
 * A scatter/gather element: len bytes at base. Used by dx_stream_writev()
 * and by stream implementations.
 */
typedef struct dx_iov {
    const void *base;
    size_t len;
} dx_iov;

/*
 * Replaces the allocator that libduplex uses for all of its own memory.
 * All three functions must be given; they behave like malloc, realloc and
 * free (realloc(NULL, n) allocates, free(NULL) does nothing). Call it once,
 * before any libduplex object exists; it is not thread-safe.
 *
 * Returns 0, or DX_EINVAL if a function is missing, or DX_ESTATE if
 * libduplex objects are still alive (their memory came from the allocator
 * in place, so it cannot be swapped under them).
 *
 * A NULL return is handled everywhere: the call that needed the memory
 * fails with DX_ENOMEM and nothing that was already accepted is lost.
 */
DX_EXTERN int dx_set_allocator(void *(*malloc_fn)(size_t),
                               void *(*realloc_fn)(void *, size_t),
                               void (*free_fn)(void *));

#ifdef __cplusplus
}
#endif

#endif /* DUPLEX_COMMON_H */
