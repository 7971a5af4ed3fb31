#!/bin/sh
# The shared library exports only dx_ symbols, and exports every function
# that the public headers declare.
set -eu
: "${top_builddir:=.}"
: "${top_srcdir:=.}"
lib="$top_builddir/.libs/libduplex.so"
[ -f "$lib" ] || { echo "exports: $lib not built" >&2; exit 1; }

exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ { print $3 }' | sort -u)
bad=$(printf '%s\n' "$exported" | grep -v '^dx_' || true)
if [ -n "$bad" ]; then
    echo "exports: symbols without the dx_ prefix:" >&2
    printf '  %s\n' $bad >&2
    exit 1
fi

# <duplex/uv.h> is built only when configure found libuv, <duplex/redis.h>
# only when it found hiredis (and libuv).
headers=$(ls "$top_srcdir"/include/duplex/*.h)
grep -q '^#define HAVE_LIBUV 1' "$top_builddir/config.h" ||
    headers=$(printf '%s\n' "$headers" | grep -v '/uv\.h$')
grep -q '^#define HAVE_HIREDIS 1' "$top_builddir/config.h" ||
    headers=$(printf '%s\n' "$headers" | grep -v '/redis\.h$')
declared=$(sed -n 's/.*DX_EXTERN[^(]*[ *]\(dx_[a-z0-9_]*\)(.*/\1/p' \
    $headers | sort -u)
missing=$(printf '%s\n' "$declared" | while read -r f; do
    printf '%s\n' "$exported" | grep -qx "$f" || echo "$f"
done)
if [ -n "$missing" ]; then
    echo "exports: declared but not exported:" >&2
    printf '  %s\n' $missing >&2
    exit 1
fi
extra=$(printf '%s\n' "$exported" | while read -r f; do
    printf '%s\n' "$declared" | grep -qx "$f" || echo "$f"
done)
if [ -n "$extra" ]; then
    echo "exports: exported but not declared in a public header:" >&2
    printf '  %s\n' $extra >&2
    exit 1
fi
n=$(printf '%s\n' "$declared" | wc -l)
[ "$n" -ge 60 ] || { echo "exports: only $n declared functions found" >&2; exit 1; }
echo "exports: $n functions, all dx_, all declared"
