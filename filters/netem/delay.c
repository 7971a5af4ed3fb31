/*
 * The delay and throttle filters (include/duplex/netem.h): the core
 * holding each byte of the chosen directions for a latency, or pacing them
 * at a rate.
 */
#include "config.h"

#include <duplex/netem.h>

#include "../core/filter_internal.h"

/* Fastest line a throttle models, and longest latency (about 31 years):
 * keep the core's arithmetic in range. */
#define RATE_MAX 1000000000000u
#define LATENCY_MAX 1000000000000u

static int timed_new(int kind, unsigned dirs, uint64_t latency, uint64_t rate,
                     dx_filter **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    if (dirs == 0 || (dirs & ~DX_FILTER_BOTH))
        return DX_EINVAL;
    dx_filter_conf conf[2] = {{0}, {0}};
    for (int i = 0; i < 2; i++)
        if (dirs & (i == 0 ? DX_FILTER_DOWN : DX_FILTER_UP)) {
            conf[i].latency_ms = latency;
            conf[i].rate = rate;
        }
    return dx_filter_create(kind, conf, 0, out);
}

int dx_delay_new(unsigned dirs, uint64_t ms, dx_filter **out)
{
    if (ms > LATENCY_MAX) {
        if (out)
            *out = NULL;
        return DX_EINVAL;
    }
    return timed_new(DX_FK_DELAY, dirs, ms, 0, out);
}

int dx_throttle_new(unsigned dirs, uint64_t bytes_per_sec, dx_filter **out)
{
    if (bytes_per_sec == 0 || bytes_per_sec > RATE_MAX) {
        if (out)
            *out = NULL;
        return DX_EINVAL;
    }
    return timed_new(DX_FK_THROTTLE, dirs, 0, bytes_per_sec, out);
}
