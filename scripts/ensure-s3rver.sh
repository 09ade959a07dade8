#!/bin/sh
# Installs the S3-compatible store the tests and the benchmark run against: s3rver, at the version pinned in
# tests/s3rver/package-lock.json, from the npm registry into tests/s3rver/node_modules (git-ignored). Node.js and npm
# come from Debian's nodejs and npm packages when the machine has neither (any node >= 18 will do). Used by
# `make test-deps` and the benchmark.
set -eu
dir=$(cd "$(dirname "$0")/../tests/s3rver" && pwd)
want=$(sed -n 's/.*"@20minutes\/s3rver": *"\([0-9.]*\)".*/\1/p' "$dir/package.json" | head -n 1)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    "$(dirname "$0")/ensure-packages.sh" nodejs npm
fi
have=$(sed -n 's/^ *"version": *"\([0-9.]*\)".*/\1/p' "$dir/node_modules/@20minutes/s3rver/package.json" 2>/dev/null | head -n 1 || true)
[ "$have" = "$want" ] && exit 0
echo "installing s3rver $want into $dir/node_modules" >&2
cd "$dir"
npm ci --no-audit --no-fund --loglevel=error
