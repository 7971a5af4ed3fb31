#!/bin/sh
# A fast pass of the benchmark program (a few milliseconds of each metric):
# it runs, and it reports every metric. No figure is checked here; `make
# bench` measures (doc/performance.md).
set -eu
: "${top_builddir:=.}"
: "${top_srcdir:=.}"
out="$top_builddir/tests/bench/smoke.tmp"
node_args=""
if command -v "${NODE:-node}" >/dev/null 2>&1; then
    node_args="--node $top_srcdir/tests/bench/node-tls.js"
fi
tool_args=""
if [ -x "$top_builddir/dxtls" ]; then
    tool_args="--dxtls $top_builddir/dxtls"
fi
# shellcheck disable=SC2086
"$top_builddir/tests/bench/dxbench" --smoke --out "$top_builddir/tests/bench/smoke-out" \
    $node_args $tool_args >"$out"
cat "$out"
missing=0
check() {
    if ! grep -q "^$1 " "$out"; then
        echo "smoke: no line for: $1" >&2
        missing=$((missing + 1))
    fi
}
check "full handshakes/s ECDSA P-256"
check "full handshakes/s RSA-2048"
check "resumed handshakes/s (tickets)"
check "bulk MB/s 16 KiB writes AES-128-GCM"
check "bulk MB/s 16 KiB writes AES-256-GCM"
check "bulk MB/s 16 KiB writes ChaCha20-Poly1305"
check "64-byte ping-pong round trips/s"
check "64-byte ping-pong round trips/s vs BIO pair"
check "bulk MB/s 16 KiB writes AES-128-GCM vs BIO pair"
check "idle server connection heap, released (B)"
check "idle server connection heap, kept (B)"
check "idle server heap at [0-9]* conns, released (B)"
check "handshakes/s with [0-9]* open / with [0-9]* open"
check "summary:"
if [ -n "$node_args" ]; then
    check "full handshakes/s ECDSA P-256 vs Node"
    check "full handshakes/s RSA-2048 vs Node"
    check "resumed handshakes/s (tickets) vs Node"
    check "bulk MB/s 16 KiB writes AES-128-GCM vs Node"
    check "64-byte ping-pong round trips/s vs Node"
fi
if [ -n "$tool_args" ]; then
    for t in stunnel4 socat; do
        if command -v "$t" >/dev/null 2>&1; then
            check "dxtls MB/s, [0-9]* MiB over TCP, vs $t"
        fi
    done
fi
for f in throughput.dat connections.dat; do
    if [ ! -s "$top_builddir/tests/bench/smoke-out/$f" ]; then
        echo "smoke: $f not written" >&2
        missing=$((missing + 1))
    fi
done
rm -rf "$out" "$top_builddir/tests/bench/smoke-out"
[ "$missing" -eq 0 ]
