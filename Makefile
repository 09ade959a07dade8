# A thin front end over CMake. `make run` and `make test` install the Debian packages they need
# (when run as root; otherwise they print the apt-get command), build, and run.

BUILD_DIR   ?= build
ASAN_DIR    ?= build-asan
CONFIG      ?= conf/server.yaml
BUILD_TYPE  ?= RelWithDebInfo
WERROR      ?= OFF
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS  ?=

BUILD_DEPS = build-essential cmake pkg-config libh2o-dev libuv1-dev libyaml-dev libyajl-dev \
             libhiredis-dev libcmocka-dev libssl-dev libcurl4-openssl-dev libsystemd-dev
TEST_DEPS  = python3 curl openssl ca-certificates apache2-utils nghttp2-client redis-server python3-boto3 python3-h2

.PHONY: all configure build run test test-asan deps test-deps clean format deb deb-focal test-package bench bench-quick

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

format:
	clang-format -i include/weir/*.h src/*.c src/redis/*.c handlers/*.c tests/unit/*.c tests/unit/*.h

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)

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
