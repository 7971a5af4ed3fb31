#!/bin/sh
# Every example builds and runs to success.
set -eu
: "${top_builddir:=.}"
examples="stream-demo tls-pipe blocking-client tls-child tls-serial-pty protocol-test tls-in-tls starttls"
# uv-echo is built when configure found libuv.
grep -q '^#define HAVE_LIBUV 1' "$top_builddir/config.h" && examples="$examples uv-echo"
for ex in $examples; do
    echo "== examples/$ex"
    "$top_builddir/examples/$ex"
done
