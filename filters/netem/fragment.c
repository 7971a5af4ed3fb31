/*
 * The fragment filter (include/duplex/netem.h): the core cutting each
 * chosen direction at fixed or random chunk boundaries.
 */
#include "config.h"

#include <duplex/netem.h>

#include "../core/filter_internal.h"

int dx_fragment_new(const dx_fragment_opts *opts, dx_filter **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    if (!opts || opts->dirs == 0 || (opts->dirs & ~DX_FILTER_BOTH) || opts->min == 0 ||
        opts->min > opts->max)
        return DX_EINVAL;
    dx_filter_conf conf[2] = {{0}, {0}};
    for (int i = 0; i < 2; i++)
        if (opts->dirs & (i == 0 ? DX_FILTER_DOWN : DX_FILTER_UP)) {
            conf[i].cut_min = opts->min;
            conf[i].cut_max = opts->max;
        }
    return dx_filter_create(DX_FK_FRAGMENT, conf, opts->seed, out);
}
