#!/bin/sh
# Draws the charts of doc/performance.md from the data `make bench` wrote.
# Usage: charts.sh BENCH_OUT_DIR DEST_DIR
# Copies the data and the report to DEST_DIR, then draws there, with
# gnuplot, throughput.svg (MB/s against write size for libduplex, raw
# OpenSSL and Node, and libduplex corked) and connections.svg (handshake rate and heap per idle
# server connection against the number of open connections).
set -eu
src=${1:?usage: charts.sh BENCH_OUT_DIR DEST_DIR}
dest=${2:?usage: charts.sh BENCH_OUT_DIR DEST_DIR}
gnuplot=${GNUPLOT:-gnuplot}
if ! command -v "$gnuplot" >/dev/null 2>&1; then
    echo "charts: gnuplot not found (scripts/install-deps installs it)" >&2
    exit 1
fi
for f in throughput.dat connections.dat report.txt; do
    if [ ! -s "$src/$f" ]; then
        echo "charts: $src/$f is missing: run make bench first" >&2
        exit 1
    fi
done
mkdir -p "$dest"
cp "$src/throughput.dat" "$src/connections.dat" "$src/report.txt" "$dest/"
cd "$dest"

"$gnuplot" <<'PLOT'
set terminal svg size 760,500 dynamic font "sans,12" background rgb "white"
set datafile missing "nan"
set key below horizontal
set grid
set logscale x 2
set xtics ("64" 64, "256" 256, "1 Ki" 1024, "4 Ki" 4096, "16 Ki" 16384, "64 Ki" 65536)
set xrange [48:88000]
set xlabel "bytes per write"
set ylabel "MB/s of cleartext (AES-128-GCM, TLS 1.3)"
set output "throughput.svg"
set title "Throughput against write size, client and server in one process"
plot "throughput.dat" using 1:2 with linespoints lw 2 pt 7 title "libduplex", \
     "throughput.dat" using 1:3 with linespoints lw 2 pt 5 title "raw OpenSSL", \
     "throughput.dat" using 1:4 with linespoints lw 2 pt 9 title "Node.js TLSSocket", \
     "throughput.dat" using 1:5 with linespoints lw 2 dt 2 pt 6 title "libduplex, corked per 16 KiB"
PLOT

"$gnuplot" <<'PLOT'
set terminal svg size 760,500 dynamic font "sans,12" background rgb "white"
set key below horizontal
set grid
set logscale x 10
set xrange [6:16000]
set xtics ("10" 10, "100" 100, "1,000" 1000, "10,000" 10000)
set xlabel "connections open in the process"
set ylabel "full handshakes/s (ECDSA P-256)"
set y2label "heap per idle server connection (KiB)"
set yrange [0:*]
set y2range [0:*]
set ytics nomirror
set y2tics
set output "connections.svg"
set title "Handshake rate and memory against open connections"
plot "connections.dat" using 1:2 axes x1y1 with linespoints lw 2 pt 7 title "libduplex handshakes/s", \
     "connections.dat" using 1:3 axes x1y1 with linespoints lw 2 pt 5 title "raw OpenSSL handshakes/s", \
     "connections.dat" using 1:($4/1024) axes x1y2 with linespoints lw 2 dt 2 pt 6 title "libduplex heap (KiB)", \
     "connections.dat" using 1:($5/1024) axes x1y2 with linespoints lw 2 dt 2 pt 4 title "raw OpenSSL heap (KiB)"
PLOT
echo "charts: wrote $dest/throughput.svg and $dest/connections.svg"
