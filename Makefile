# A thin front end over CMake. `make run` and `make test` install the Debian packages they need
# (when run as root; otherwise they print the apt-get command), build, and run.

BUILD_DIR   ?= build
ASAN_DIR    ?= build-asan
CONFIG      ?= conf/server.yaml
BUILD_TYPE  ?= RelWithDebInfo
WERROR      ?= OFF
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS  ?=
FUZZ_DIR    ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
ANALYZE_DIR ?= build-analyze
STRESS      ?=

BUILD_DEPS = build-essential cmake pkg-config libh2o-dev libuv1-dev libyaml-dev libyajl-dev \
             libhiredis-dev libcmocka-dev libssl-dev libcurl4-openssl-dev libsystemd-dev
TEST_DEPS  = python3 curl openssl ca-certificates apache2-utils nghttp2-client redis-server python3-boto3 python3-h2 \
             prometheus slowhttptest

# clang and libFuzzer (libclang_rt.fuzzer-x86_64.a is in libclang-rt-14-dev); llvm-cov for fuzz-coverage
FUZZ_DEPS  = clang-14 libclang-rt-14-dev
COVERAGE_DEPS = llvm-14

.PHONY: all configure build run test test-asan deps test-deps clean format deb deb-focal test-package bench bench-quick \
        fuzz fuzz-build fuzz-deps fuzz-coverage analyze stress

all: build

deps:
	@scripts/ensure-packages.sh $(BUILD_DEPS)

test-deps: deps
	@scripts/ensure-packages.sh $(TEST_DEPS)
	@scripts/ensure-s3rver.sh

# CMake is given the options on every run (it is quick when nothing changed), so that `make test WERROR=ON` after a
# plain `make build` does build with -Werror.
configure:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DWEIR_WERROR=$(WERROR) >/dev/null

build: deps configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/weir -c $(CONFIG)

test: test-deps configure
	cmake --build $(BUILD_DIR) -j $(JOBS)
	cd $(BUILD_DIR) && ctest --output-on-failure $(CTEST_ARGS)

test-asan: test-deps
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DWEIR_SANITIZE=ON -DWEIR_WERROR=$(WERROR)
	cmake --build $(ASAN_DIR) -j $(JOBS)
	cd $(ASAN_DIR) && ctest --output-on-failure $(CTEST_ARGS)

# Fuzzing (tests/fuzz/README.md): every target for FUZZ_SECONDS each (FUZZ_TARGETS="conf http" for some only).
fuzz-deps: deps
	@scripts/ensure-packages.sh $(FUZZ_DEPS)

fuzz-build: fuzz-deps
	cmake -S . -B $(FUZZ_DIR) -DCMAKE_C_COMPILER=clang-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEIR_FUZZ=ON \
	    -DWEIR_BUILD_TESTS=OFF -DWEIR_WERROR=$(WERROR)
	cmake --build $(FUZZ_DIR) -j $(JOBS)

fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Line coverage of weir's code by the seeds and what `make fuzz` found (llvm-cov; report in build-cov/).
fuzz-coverage: fuzz-deps
	@scripts/ensure-packages.sh $(COVERAGE_DEPS)
	tests/fuzz/coverage.sh build-cov $(FUZZ_DIR)/corpus

# Static analysis of src/ and handlers/ with gcc's -fanalyzer; fails on any finding not explained in
# tests/analyze/explained.txt.
analyze: deps
	tests/analyze/run.sh $(ANALYZE_DIR)

# The abuse suite at full scale (tests/stress/): about 25 minutes; writes tests/stress/RESULTS.md and
# tests/stress/results/*.json. The cancellation scenario runs on the ASan build. STRESS="name ..." runs only those.
stress: test-deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DWEIR_SANITIZE=ON -DWEIR_WERROR=$(WERROR)
	cmake --build $(ASAN_DIR) -j $(JOBS) --target weir
	WEIR_BIN=$(CURDIR)/$(BUILD_DIR)/weir /usr/bin/python3 tests/stress/stress.py --scale full --results tests/stress \
	    --asan-bin $(ASAN_DIR)/weir $(STRESS)

format:
	clang-format -i include/weir/*.h src/*.c src/redis/*.c handlers/*.c tests/unit/*.c tests/unit/*.h tests/fuzz/*.c tests/fuzz/*.h

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(ANALYZE_DIR) build-cov

deb:
	packaging/build-deb.sh

deb-focal:
	packaging/build-deb.sh --focal

test-package:
	packaging/test-package.sh

bench:
	bench/run.sh

bench-quick:
	bench/run.sh --quick
