#!/bin/sh
# Every public function has a man page: it is listed in doc/man/links.txt,
# named in the SYNOPSIS of the page listed there, and every page renders
# without warnings.
set -eu
: "${top_srcdir:=.}"
links="$top_srcdir/doc/man/links.txt"
declared=$(sed -n 's/.*DX_EXTERN[^(]*[ *]\(dx_[a-z0-9_]*\)(.*/\1/p' \
    "$top_srcdir"/include/duplex/*.h | sort -u)
status=0
for f in $declared; do
    page=$(awk -v f="$f" '$2 == f { print $1 }' "$links")
    if [ -z "$page" ]; then
        echo "manpages: $f is in no page (doc/man/links.txt)" >&2
        status=1
        continue
    fi
    # the SYNOPSIS section of the page must name the function
    if ! sed -n '/^\.SH SYNOPSIS/,/^\.SH /p' "$top_srcdir/doc/man/$page" |
            grep -q "$f"; then
        echo "manpages: $f is not in the SYNOPSIS of $page" >&2
        status=1
    fi
done
for p in "$top_srcdir"/doc/man/*.[137]; do
    out=$(groff -man -ww -z "$p" 2>&1) || true
    if [ -n "$out" ]; then
        echo "manpages: $p: $out" >&2
        status=1
    fi
done
[ $status -eq 0 ] && echo "manpages: $(echo "$declared" | wc -w) functions documented"
exit $status
