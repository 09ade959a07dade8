#!/bin/bash
# Runs every fuzz target built in BUILD_DIR (a WEIR_FUZZ=ON build) for SECONDS each, one after the other:
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
# Each target starts from its committed seeds (tests/fuzz/corpus/NAME, only read) and from what earlier runs found
# (BUILD_DIR/corpus/NAME, where libFuzzer writes new entries), with tests/fuzz/NAME.dict when there is one and the
# libFuzzer flags of tests/fuzz/NAME.options (one line) when there are. Crashes, leaks and timeouts are written to
# BUILD_DIR/crashes/NAME/; logs to BUILD_DIR/logs/NAME.log. Exits 1 when any target found something.
# FUZZ_FLAGS adds libFuzzer flags to every run (for example FUZZ_FLAGS=-jobs=2).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(cd "$1" && pwd)"
seconds="$2"
shift 2
if [ $# -eq 0 ]; then
    set -- $(cd "$build/tests/fuzz" && ls fuzz_* | sed 's/^fuzz_//' | sort)
fi
[ $# -gt 0 ] || { echo "run.sh: no fuzz target in $build/tests/fuzz" >&2; exit 1; }

failed=()
for t in "$@"; do
    exe="$build/tests/fuzz/fuzz_$t"
    seeds="$here/corpus/$t"
    [ -x "$exe" ] || { echo "run.sh: no target $t ($exe)" >&2; failed+=("$t"); continue; }
    [ -n "$(ls -A "$seeds" 2>/dev/null)" ] || { echo "run.sh: $t has no seed corpus ($seeds)" >&2; failed+=("$t"); continue; }
    mkdir -p "$build/corpus/$t" "$build/crashes/$t" "$build/logs"
    args=(-max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$build/crashes/$t/")
    [ -f "$here/$t.dict" ] && args+=(-dict="$here/$t.dict")
    [ -f "$here/$t.options" ] && read -r -a opts < "$here/$t.options" && args+=("${opts[@]}")
    # shellcheck disable=SC2206
    extra=(${FUZZ_FLAGS:-})
    echo "== fuzz $t for ${seconds}s: $exe ${args[*]} ${extra[*]} $build/corpus/$t $seeds"
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
    LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$here/../lsan.supp:print_suppressions=0}" \
        "$exe" "${args[@]}" "${extra[@]}" "$build/corpus/$t" "$seeds" > "$build/logs/$t.log" 2>&1
    rc=$?
    grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss_mb)' "$build/logs/$t.log" | tail -4
    if [ $rc -ne 0 ]; then
        echo "!! $t failed (exit $rc): see $build/logs/$t.log and $build/crashes/$t/" >&2
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*check failed)' "$build/logs/$t.log" | head -5 >&2
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: $# target(s) ran ${seconds}s each, nothing found"
