#!/bin/sh
# Builds and runs the fuzz targets (tests/fuzz/fuzz_*.c); make runs it:
#
#   make fuzz            build with libFuzzer, ASan and UBSan, run each target
#                        FUZZ_SECONDS (default 60) one after the other, then
#                        merge what they found into tests/fuzz/corpus/
#                        (FUZZ_MERGE=no keeps the tree as it is)
#   make fuzz-build      only build them (tests/fuzz/fuzz-<target>)
#   make fuzz-merge      only merge (what earlier runs left in
#                        tests/fuzz/work/ and the corpus itself)
#   make fuzz-coverage   build the replay drivers with clang's source-based
#                        coverage, replay every corpus, and report the line
#                        coverage of each source file of lib/ and filters/
#
# FUZZ_TARGETS chooses the targets (default: all). The library's sources are
# compiled into each program with the same instrumentation as the target.
# Everything is built under $top_builddir/tests/fuzz/.
set -eu

mode=${1:-run}
: "${top_srcdir:=.}"
: "${top_builddir:=.}"
: "${FUZZ_CC:=}"
: "${FUZZ_SECONDS:=60}"
: "${FUZZ_MERGE:=yes}"
: "${FUZZ_TARGETS:=server client cert stream session}"
: "${FUZZ_SOURCES:?the library sources}"
: "${FUZZ_CFLAGS:=}"
: "${FUZZ_LIBS:=-lssl -lcrypto}"
: "${LLVM_PROFDATA:=llvm-profdata}"
: "${LLVM_COV:=llvm-cov}"

if [ -z "$FUZZ_CC" ]; then
    echo "fuzz: no compiler with libFuzzer (configure looks for clang; set FUZZ_CC)" >&2
    exit 1
fi

src=$top_srcdir
out=$top_builddir/tests/fuzz
mkdir -p "$out"

# The most bytes an input may have, per target.
max_len() {
    case $1 in
        server | client) echo 8192 ;;
        cert | session) echo 4096 ;;
        stream) echo 512 ;;
        *) echo 4096 ;;
    esac
}

includes="-I$src/include -I$top_builddir -I$src/lib -I$src/tests/fuzz"
common_flags="-std=c11 -g -pthread $includes $FUZZ_CFLAGS"

# compile <objdir> <flags> <source> -> prints the object; recompiles when the
# source or any header is newer than the object.
newest_header=""
compile() {
    objdir=$1 flags=$2 file=$3
    obj=$objdir/$(echo "$file" | tr '/' '_' | sed 's/\.c$/.o/')
    if [ ! -f "$obj" ] || [ "$src/$file" -nt "$obj" ] || [ "$newest_header" -nt "$obj" ] ||
        [ "$top_builddir/config.h" -nt "$obj" ]; then
        # shellcheck disable=SC2086
        $FUZZ_CC $common_flags $flags -c "$src/$file" -o "$obj" || exit 1
    fi
    echo "$obj"
}

find_newest_header() {
    newest_header=$(ls -t "$src"/include/duplex/*.h "$src"/lib/*.h "$src"/filters/*/*.h \
        "$src"/tests/fuzz/*.h | head -n 1)
}

lib_objects() {
    objdir=$1 flags=$2
    objs=""
    for f in $FUZZ_SOURCES; do
        case $f in *.c) ;; *) continue ;; esac
        objs="$objs $(compile "$objdir" "$flags -DDX_BUILDING_LIBRARY" "$f")"
    done
    echo "$objs"
}

build_fuzz() {
    objdir=$out/obj-fuzz
    mkdir -p "$objdir"
    find_newest_header
    flags="-O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all"
    libobjs=$(lib_objects "$objdir" "$flags")
    common=$(compile "$objdir" "$flags" tests/fuzz/common.c)
    for t in $FUZZ_TARGETS; do
        obj=$(compile "$objdir" "$flags" "tests/fuzz/fuzz_$t.c")
        echo "  CCLD     tests/fuzz/fuzz-$t"
        # shellcheck disable=SC2086
        $FUZZ_CC -fsanitize=fuzzer,address,undefined -pthread -o "$out/fuzz-$t" \
            "$obj" "$common" $libobjs $FUZZ_LIBS
    done
}

# merge <target>: the corpus in the tree becomes its named files (seeds and
# reproducers of fixed bugs, kept as they are) and the fewest of the
# fuzzers' finds (named by their SHA-1) that reach every edge the corpus
# and the work directory reach (edges only, not hit counts: a small corpus).
merge() {
    t=$1
    corpus=$src/tests/fuzz/corpus/$t
    work=$out/work/$t
    tmp=$out/merge/$t
    rm -rf "$tmp"
    mkdir -p "$tmp" "$work"
    for f in "$corpus"/*; do
        [ -f "$f" ] || continue
        if ! basename "$f" | grep -Eq '^[0-9a-f]{40}$'; then cp "$f" "$tmp/"; fi
    done
    "$out/fuzz-$t" -merge=1 -use_counters=0 -max_len="$(max_len "$t")" "$tmp" "$corpus" "$work" \
        >"$out/merge-$t.log" 2>&1
    find "$corpus" -type f -regextype posix-extended -regex '.*/[0-9a-f]{40}' -delete
    for f in "$tmp"/*; do
        if basename "$f" | grep -Eq '^[0-9a-f]{40}$'; then cp "$f" "$corpus/"; fi
    done
    rm -rf "$tmp"
}

merge_all() {
    build_fuzz
    for t in $FUZZ_TARGETS; do
        merge "$t"
        echo "$t: $(find "$src/tests/fuzz/corpus/$t" -type f | wc -l) corpus files"
    done
}

run_fuzz() {
    build_fuzz
    summary=$out/fuzz-summary.txt
    : >"$summary"
    status=0
    for t in $FUZZ_TARGETS; do
        corpus=$src/tests/fuzz/corpus/$t
        work=$out/work/$t
        mkdir -p "$corpus" "$work" "$out/artifacts"
        log=$out/fuzz-$t.log
        echo "== fuzz-$t: $FUZZ_SECONDS s, max_len $(max_len "$t")"
        rc=0
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
            "$out/fuzz-$t" -max_total_time="$FUZZ_SECONDS" -max_len="$(max_len "$t")" \
            -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$out/artifacts/$t-" "$work" "$corpus" >"$log" 2>&1 || rc=$?
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | sed 's/cov: //')
        if [ "$rc" -ne 0 ]; then
            echo "fuzz-$t FAILED (exit $rc): see $log and $out/artifacts/" | tee -a "$summary"
            grep -m 5 -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" || true
            status=1
            continue
        fi
        [ "$FUZZ_MERGE" = yes ] && merge "$t"
        files=$(find "$corpus" -type f | wc -l)
        printf '%-8s %6s s %10s executions %8s/s  %5s edges  %4s corpus files\n' \
            "$t" "$FUZZ_SECONDS" "$execs" "$((execs / FUZZ_SECONDS))" "$cov" "$files" |
            tee -a "$summary"
    done
    echo "== summary ($summary)"
    cat "$summary"
    return $status
}

coverage() {
    objdir=$out/obj-cov
    mkdir -p "$objdir" "$out/profiles"
    find_newest_header
    flags="-O0 -fprofile-instr-generate -fcoverage-mapping"
    libobjs=$(lib_objects "$objdir" "$flags")
    common=$(compile "$objdir" "$flags" tests/fuzz/common.c)
    rm -f "$out"/profiles/*.profraw
    bins=""
    for t in $FUZZ_TARGETS; do
        obj=$(compile "$objdir" "$flags" "tests/fuzz/fuzz_$t.c")
        robj=$objdir/replay-$t.o
        # shellcheck disable=SC2086
        $FUZZ_CC $common_flags $flags "-DFZ_TARGET=\"$t\"" -c "$src/tests/fuzz/replay.c" -o "$robj"
        # shellcheck disable=SC2086
        $FUZZ_CC -fprofile-instr-generate -pthread -o "$out/cov-$t" "$robj" "$obj" "$common" \
            $libobjs $FUZZ_LIBS
        echo "== cov-$t"
        LLVM_PROFILE_FILE="$out/profiles/$t.profraw" top_srcdir=$src "$out/cov-$t"
        "$LLVM_PROFDATA" merge -sparse "$out/profiles/$t.profraw" -o "$out/profiles/$t.profdata"
        bins="$bins $out/cov-$t"
    done
    "$LLVM_PROFDATA" merge -sparse "$out"/profiles/*.profraw -o "$out/profiles/all.profdata"
    files=""
    for f in $FUZZ_SOURCES; do
        case $f in *.c) files="$files $src/$f" ;; esac
    done
    first=""
    objects=""
    for b in $bins; do
        if [ -z "$first" ]; then first=$b; else objects="$objects -object $b"; fi
    done
    report=$out/coverage.txt
    {
        echo "Line coverage of the library by the corpora of: $FUZZ_TARGETS"
        # shellcheck disable=SC2086
        "$LLVM_COV" report "$first" $objects -instr-profile="$out/profiles/all.profdata" \
            -show-region-summary=false -show-branch-summary=false $files
        echo
        echo "Per target (all library files):"
        for t in $FUZZ_TARGETS; do
            # shellcheck disable=SC2086
            line=$("$LLVM_COV" report "$out/cov-$t" -instr-profile="$out/profiles/$t.profdata" \
                -show-region-summary=false -show-branch-summary=false $files | tail -n 1)
            echo "$t: $line"
        done
    } | sed "s|$(printf '%s/' "$src" | sed 's/[].[*^$|\\/]/\\&/g')||g" >"$report"
    cat "$report"
    # shellcheck disable=SC2086
    "$LLVM_COV" show "$first" $objects -instr-profile="$out/profiles/all.profdata" \
        -format=html -output-dir="$out/coverage-html" $files >/dev/null 2>&1 || true
    echo "== $report; annotated sources in $out/coverage-html/index.html"
}

case $mode in
    build) build_fuzz ;;
    merge) merge_all ;;
    run) run_fuzz ;;
    coverage) coverage ;;
    *)
        echo "usage: fuzz.sh build|run|merge|coverage" >&2
        exit 2
        ;;
esac
