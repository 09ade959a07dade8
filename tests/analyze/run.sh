#!/bin/bash
# Static analysis of weir's sources (src/, handlers/): gcc's -fanalyzer over a clean build of the server and its core
# library, then check.py fails on any finding that explained.txt does not explain (and on explanations that no longer
# match a finding). Usage: tests/analyze/run.sh [BUILD_DIR]   (default build-analyze; `make analyze`)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${1:-build-analyze}"
log="$dir/analyze.log"
# A new tree each time, so that every file is compiled (the findings are compiler warnings). Debug: assert() stays, so
# that the analyzer knows the invariants it states.
rm -rf "$dir"
cmake -S . -B "$dir" -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Debug -DWEIR_BUILD_TESTS=OFF -DWEIR_ANALYZE=ON > /dev/null
cmake --build "$dir" -j "$(nproc 2>/dev/null || echo 2)" > "$log" 2>&1 || { cat "$log"; exit 1; }
# the analysis ran on every source of src/ and handlers/ (a build that analysed nothing would find nothing)
analyzed=$(grep -c -E '^\[ *[0-9]+%\] Building C object .*/(src|handlers)/' "$log" || true)
expected=$(ls src/*.c src/redis/*.c handlers/*.c | wc -l)
if [ "$analyzed" -ne "$expected" ]; then
    echo "analyze: $analyzed of the $expected files of src/ (src/redis/ included) and handlers/ were compiled with -fanalyzer" >&2
    exit 1
fi
python3 tests/analyze/check.py "$log" tests/analyze/explained.txt
