#!/usr/bin/env bash
# make bench / make bench-quick: installs what the benchmark needs, builds weir in Release (build-release/) and the
# bare-loop harness, then runs bench/bench.py, which starts every server itself, drives the load, draws the figures
# and writes bench/results/<date>/ (and, for a full run, bench/RESULTS.md).
#
#   bench/run.sh [--quick] [bench.py options, e.g. --only exp1,exp5]
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '[bench] %s\n' "$*"; }

step "packages"
make -s deps
scripts/ensure-packages.sh apache2-utils nghttp2-client gnuplot-nox python3 python3-flask python3-aiohttp h2o \
    redis-server redis-tools util-linux procps

step "building weir (Release) in build-release/"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DWEIR_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" >/dev/null

step "building bench/calc_loop.c against build-release/libweir_core.a"
mkdir -p build-release/bench
PKGS="libh2o libuv yaml-0.1 yajl hiredis openssl"
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -Wall -Wextra -DH2O_USE_LIBUV=1 -D_GNU_SOURCE -Iinclude $(pkg-config --cflags $PKGS) \
    bench/calc_loop.c build-release/libweir_core.a $(pkg-config --libs $PKGS) -lssl -lcrypto -lpthread -lm \
    -o build-release/bench/calc_loop

# ab -c 1000 and 10,000 h2load connections need file descriptors: take the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
step "open-file limit $(ulimit -n); $(nproc) cpu(s)"

# The script and the load generators share the load core; servers are pinned to cpu 0 by bench.py.
if [ "$(nproc)" -ge 2 ]; then
    exec taskset -c 1 /usr/bin/python3 bench/bench.py "$@"
fi
exec /usr/bin/python3 bench/bench.py "$@"
