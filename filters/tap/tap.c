/*
 * The tap filter (include/duplex/tap.h): the core with nothing but a tap,
 * and the hex dump its callbacks usually print with.
 */
#include "config.h"

#include <duplex/tap.h>

#include <stdio.h>
#include <string.h>

#include "../core/filter_internal.h"

int dx_tap_new(dx_tap_fn fn, void *user, dx_filter **out)
{
    if (!out)
        return DX_EINVAL;
    static const dx_filter_conf none[2];
    int rc = dx_filter_create(DX_FK_TAP, none, 0, out);
    if (rc == 0)
        dx_filter_set_tap(*out, fn, user);
    return rc;
}

/* Appends n bytes of s to out (within cap, keeping room for the NUL) and
 * counts them in *total. */
static void put(char *out, size_t cap, size_t *total, const char *s, size_t n)
{
    if (*total + 1 < cap) {
        size_t room = cap - 1 - *total;
        memcpy(out + *total, s, n < room ? n : room);
    }
    *total += n;
}

size_t dx_hexdump(char *out, size_t cap, const void *data, size_t len, uint64_t offset)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = data;
    size_t total = 0;
    for (size_t at = 0; at < len; at += 16) {
        char line[96];
        int k = snprintf(line, sizeof(line), "%08llx ", (unsigned long long)(offset + at));
        size_t n = k > 0 ? (size_t)k : 0;
        size_t cnt = len - at < 16 ? len - at : 16;
        for (size_t b = 0; b < 16; b++) {
            if (b == 8)
                line[n++] = ' ';
            line[n++] = ' ';
            if (b < cnt) {
                line[n++] = hex[p[at + b] >> 4];
                line[n++] = hex[p[at + b] & 15];
            } else {
                line[n++] = ' ';
                line[n++] = ' ';
            }
        }
        line[n++] = ' ';
        line[n++] = ' ';
        line[n++] = '|';
        for (size_t b = 0; b < cnt; b++) {
            uint8_t c = p[at + b];
            line[n++] = c >= 0x20 && c < 0x7f ? (char)c : '.';
        }
        line[n++] = '|';
        line[n++] = '\n';
        put(out, cap, &total, line, n);
    }
    if (cap)
        out[total < cap ? total : cap - 1] = '\0';
    return total;
}
