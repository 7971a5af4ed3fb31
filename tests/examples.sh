#!/bin/sh
# Every example builds and runs to success.
set -eu
: "${top_builddir:=.}"
for ex in stream-demo tls-pipe blocking-client; do
    echo "== examples/$ex"
    "$top_builddir/examples/$ex"
done
