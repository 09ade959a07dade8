#!/usr/bin/env bash
# make bench / make bench-quick: installs what the benchmark needs, builds weir and the bare-loop harness in Release
# (build-release/; calc_loop is a CMake target outside `all`), then runs bench/bench.py, which starts every server
# itself, drives the load, draws the figures and writes bench/results/<date>/ (and, for a full run, bench/RESULTS.md).
#
#   bench/run.sh [--quick] [bench.py options, e.g. --only exp1,exp5]
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '[bench] %s\n' "$*"; }

step "packages"
make -s deps
scripts/ensure-packages.sh apache2-utils nghttp2-client gnuplot-nox python3 python3-flask python3-aiohttp h2o \
    redis-server redis-tools util-linux procps python3-boto3 valgrind
scripts/ensure-s3rver.sh

step "building weir and the bare-loop harness bench/calc_loop (Release) in build-release/"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DWEIR_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" --target weir calc_loop >/dev/null

# ab -c 1000 and 10,000 h2load connections need file descriptors: take the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
step "open-file limit $(ulimit -n); $(nproc) cpu(s)"

# The script and the load generators share the load core; servers are pinned to cpu 0 by bench.py.
if [ "$(nproc)" -ge 2 ]; then
    exec taskset -c 1 /usr/bin/python3 bench/bench.py "$@"
fi
exec /usr/bin/python3 bench/bench.py "$@"
