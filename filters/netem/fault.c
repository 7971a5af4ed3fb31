/*
 * The fault filter (include/duplex/netem.h): the core passing bytes
 * through, with the faults it was given applied at their offsets.
 */
#include "config.h"

#include <duplex/netem.h>

#include "../core/filter_internal.h"

/* Largest injection: bounds what one fault can add to memory. */
#define INJECT_MAX ((uint64_t)1 << 20)

int dx_fault_new(uint64_t seed, dx_filter **out)
{
    if (!out)
        return DX_EINVAL;
    static const dx_filter_conf none[2];
    return dx_filter_create(DX_FK_FAULT, none, seed, out);
}

int dx_fault_add(dx_filter *f, const dx_fault *fault)
{
    if (!f || !fault || dx_filter_kind_id(f) != DX_FK_FAULT)
        return DX_EINVAL;
    if (fault->dir != DX_FILTER_DOWN && fault->dir != DX_FILTER_UP)
        return DX_EINVAL;
    switch (fault->kind) {
    case DX_FAULT_FLIP:
    case DX_FAULT_STALL:
    case DX_FAULT_TRUNCATE:
    case DX_FAULT_END:
    case DX_FAULT_RESET:
        break;
    case DX_FAULT_DROP:
        if (fault->len == 0)
            return DX_EINVAL;
        break;
    case DX_FAULT_INJECT:
        if (fault->len == 0 || fault->len > INJECT_MAX)
            return DX_EINVAL;
        break;
    default:
        return DX_EINVAL;
    }
    return dx_filter_add_fault(f, fault);
}
