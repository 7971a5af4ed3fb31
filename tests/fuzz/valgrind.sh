#!/bin/sh
# Replays every fuzz corpus under valgrind memcheck: any error or leak fails.
set -eu
: "${top_builddir:=.}"
: "${VALGRIND:=valgrind}"
for t in server client cert stream session; do
    echo "== replay-$t under valgrind"
    "$VALGRIND" --quiet --error-exitcode=99 --leak-check=full \
        --show-leak-kinds=all --errors-for-leak-kinds=all \
        "$top_builddir/tests/fuzz/replay-$t"
done
