/*
 * The core shared by the byte filters (tap, fragment, delay, throttle,
 * fault): two streams, a queue of held bytes per direction, the clock and
 * the deadline. The constructors in filters/tap and filters/netem fill a
 * configuration and call dx_filter_create().
 */
#ifndef DX_FILTERS_CORE_INTERNAL_H
#define DX_FILTERS_CORE_INTERNAL_H

#include <duplex/filter.h>
#include <duplex/netem.h>

/* The kinds, in the order of the core's table of stream operations. */
enum { DX_FK_TAP, DX_FK_FRAGMENT, DX_FK_DELAY, DX_FK_THROTTLE, DX_FK_FAULT, DX_FK_COUNT };

/* What one direction does to its bytes. Zero: nothing. */
typedef struct dx_filter_conf {
    uint64_t latency_ms;   /* each byte is held this long */
    uint64_t rate;         /* bytes per second, 0: unlimited */
    size_t cut_min, cut_max; /* chunk sizes, 0: no cutting */
} dx_filter_conf;

/* Makes a filter of kind with conf[0] for DX_FILTER_DOWN and conf[1] for
 * DX_FILTER_UP, and seed for its generator. Returns 0, DX_ENOMEM. */
int dx_filter_create(int kind, const dx_filter_conf conf[2], uint64_t seed,
                     dx_filter **out);
/* The kind given to dx_filter_create(). */
int dx_filter_kind_id(const dx_filter *f);
/* Adds a checked fault (fault.c checks the arguments). Returns 0,
 * DX_ESTATE, DX_ENOMEM. */
int dx_filter_add_fault(dx_filter *f, const dx_fault *fault);

/* SplitMix64 (Steele, Lea, Flood 2014): the filters' generator. */
static inline uint64_t dx_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

#endif
