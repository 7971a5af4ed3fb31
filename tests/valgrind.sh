#!/bin/sh
# Runs the unit suites under valgrind memcheck: any error or leak fails.
# Check's fork mode is off so that every test runs in the process valgrind
# watches.
set -eu
: "${top_builddir:=.}"
: "${VALGRIND:=valgrind}"
CK_FORK=no
CK_TIMEOUT_MULTIPLIER=30
export CK_FORK CK_TIMEOUT_MULTIPLIER
exec "$VALGRIND" --quiet --error-exitcode=99 --leak-check=full \
    --show-leak-kinds=all --errors-for-leak-kinds=all \
    --track-origins=yes "$top_builddir/tests/unit"
