#!/bin/sh
# Prints one closing line with the Check totals of every unit-test run
# (plain, ASan+UBSan, valgrind), read from the test logs.
total=0 failed=0 runs=""
for log in "$@"; do
    case $log in *.log) ;; *) continue ;; esac
    [ -f "$log" ] || continue
    line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" | tail -n 1)
    [ -n "$line" ] || continue
    c=$(echo "$line" | sed 's/.*Checks: \([0-9]*\).*/\1/')
    f=$(echo "$line" | sed 's/.*Failures: \([0-9]*\).*/\1/')
    e=$(echo "$line" | sed 's/.*Errors: \([0-9]*\).*/\1/')
    total=$((total + c))
    failed=$((failed + f + e))
    runs="$runs $(basename "$log" .log)"
done
echo "unit test runs:$runs"
echo "checks: $((total - failed)) passed, $failed failed"
