#!/bin/sh
# Builds sandboxd with AddressSanitizer and UndefinedBehaviorSanitizer and
# runs every test: Check unit and integration tests (ctest), then the
# OpenAPI checks and the conformance of recorded replies.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
if [ -x scripts/build-default-image.sh ]; then
    scripts/build-default-image.sh build/default-image
fi
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DSBX_SANITIZE=ON >/dev/null
cmake --build build-test -j"$(nproc)" >/dev/null
traffic="$PWD/build-test/traffic.jsonl"
rm -f "$traffic"
export SBX_TRAFFIC_LOG="$traffic"
export SBX_DEFAULT_IMAGE="$PWD/build/default-image"
(cd build-test && ctest --output-on-failure -j2 --timeout 600)
if [ -x scripts/check-openapi.sh ]; then
    scripts/check-openapi.sh "$traffic"
fi
