#!/bin/sh
# Every example builds and runs to success; when the suite runs under
# valgrind (configure's --enable-valgrind-tests, the default), each runs a
# second time under memcheck, children included, and any error or leak
# fails it.
set -eu
: "${top_builddir:=.}"
: "${EXAMPLES_VALGRIND:=}"
examples="stream-demo tls-pipe blocking-client tls-child tls-serial-pty protocol-test tls-in-tls starttls tls-slow-link"
# uv-echo is built when configure found libuv.
grep -q '^#define HAVE_LIBUV 1' "$top_builddir/config.h" && examples="$examples uv-echo"
for ex in $examples; do
    echo "== examples/$ex"
    "$top_builddir/examples/$ex"
    if [ -n "$EXAMPLES_VALGRIND" ]; then
        echo "== examples/$ex under valgrind"
        "$EXAMPLES_VALGRIND" --quiet --error-exitcode=99 --leak-check=full \
            --show-leak-kinds=all --errors-for-leak-kinds=all --trace-children=yes \
            "$top_builddir/examples/$ex" >/dev/null
    fi
done
