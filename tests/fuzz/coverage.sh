#!/bin/bash
# Line coverage of weir's code (src/, handlers/) by the fuzz corpora, with clang's source-based coverage:
#   tests/fuzz/coverage.sh BUILD_DIR [CORPUS_ROOT]     (`make fuzz-coverage`: build-cov and build-fuzz/corpus)
# builds the replay executables with -fprofile-instr-generate -fcoverage-mapping (no sanitizer), replays the committed
# seeds and, when given, CORPUS_ROOT/NAME (what `make fuzz` found), and writes BUILD_DIR/coverage.txt: one table for
# all targets together, then one per target.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="$1"
extra="${2:-}"
targets=$(ls tests/fuzz/corpus)
rm -rf "$dir"
cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang-14 -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_C_FLAGS="-fprofile-instr-generate -fcoverage-mapping" -DCMAKE_EXE_LINKER_FLAGS="-fprofile-instr-generate" > /dev/null
# shellcheck disable=SC2046
cmake --build "$dir" -j "$(nproc 2>/dev/null || echo 2)" --target $(for t in $targets; do echo "fuzz_$t"; done) > "$dir/build.log"
mkdir -p "$dir/prof"
objects=()
for t in $targets; do
    corpora=("tests/fuzz/corpus/$t")
    [ -n "$extra" ] && [ -d "$extra/$t" ] && [ -n "$(ls -A "$extra/$t")" ] && corpora+=("$extra/$t")
    LLVM_PROFILE_FILE="$dir/prof/$t.profraw" "$dir/tests/fuzz/fuzz_$t" "${corpora[@]}" 2> "$dir/replay-$t.log" ||
        { tail -20 "$dir/replay-$t.log"; exit 1; }
    tail -1 "$dir/replay-$t.log"
    llvm-profdata-14 merge -sparse "$dir/prof/$t.profraw" -o "$dir/prof/$t.profdata"
    objects+=(-object "$dir/tests/fuzz/fuzz_$t")
done
llvm-profdata-14 merge -sparse "$dir"/prof/*.profraw -o "$dir/prof/all.profdata"
{
    echo "== all fuzz targets together"
    llvm-cov-14 report -instr-profile "$dir/prof/all.profdata" "${objects[@]:1}" src handlers
    for t in $targets; do
        echo
        echo "== $t"
        llvm-cov-14 report -instr-profile "$dir/prof/$t.profdata" "$dir/tests/fuzz/fuzz_$t" src handlers | tail -1
    done
} > "$dir/coverage.txt"
cat "$dir/coverage.txt"
