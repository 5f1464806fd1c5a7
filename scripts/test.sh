#!/bin/sh
# Builds sandboxd with AddressSanitizer and UndefinedBehaviorSanitizer and
# runs every test: the Check unit and integration tests (ctest), the Azure
# SDK for JS and the e2b SDK against the real server, then the OpenAPI checks and the
# conformance of every reply the tests recorded.  Then the Check tests once
# more against the release build users run (sanitizers can hide what it
# hits), and a warning-free build with clang.  Ends with one line
# "N passed, N failed" over all of them.
set -eu
cd "$(dirname "$0")/.."
root=$PWD
scripts/install-deps.sh --test
scripts/build-default-image.sh build/default-image

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=Debug -DSBX_SANITIZE=ON >/dev/null
cmake --build build-test -j"$(nproc)" >/dev/null

traffic="$root/build-test/traffic.jsonl"
rm -f "$traffic"
export SBX_TRAFFIC_LOG="$traffic"
export SBX_DEFAULT_IMAGE="$root/build/default-image"
log="$root/build-test/test-summary.log"
: >"$log"

passed=0
failed=0
count() { # name status
    if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    echo "$1: $([ "$2" -eq 0 ] && echo ok || echo FAILED)" >>"$log"
}

# ctest: every Check program is one test.
run_ctest() { # build-dir
    set +e
    (cd "$1" && ctest --output-on-failure -j2 --timeout 900) | tee "$1/ctest.log"
    set -e
    total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$1/ctest.log" | tail -1)
    bad=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' "$1/ctest.log" | tail -1)
    total=${total:-0}
    bad=${bad:-1}
    passed=$((passed + total - bad))
    failed=$((failed + bad))
    echo "ctest in $1: $((total - bad)) of $total passed" >>"$log"
}
run_ctest build-test

# Real ARM clients against the real server over HTTPS: the unmodified
# Azure SDK for JS, and the Azure CLI's `az rest`.
set +e
tests/sdk/run.sh "$root/build-test"
count "Azure SDK for JS" $?
tests/sdk/az.sh "$root/build-test"
count "Azure CLI (az rest)" $?
# The unmodified e2b SDK against the E2B-compatible API.
tests/e2b/run.sh "$root/build-test"
count "e2b SDK for JS" $?
set -e

# The OpenAPI description, its examples, ARM lint, and every recorded reply.
set +e
scripts/check-openapi.sh "$traffic" | tee "$root/build-test/openapi.log"
set -e
op=$(tail -1 build-test/openapi.log)
p=$(echo "$op" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
f=$(echo "$op" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
passed=$((passed + ${p:-0}))
failed=$((failed + ${f:-1}))

# The release build (what scripts/run.sh builds), tests included.
unset SBX_TRAFFIC_LOG
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-release -j"$(nproc)" >/dev/null
run_ctest build-release

# clang, every warning an error as with GCC.
set +e
cmake -S . -B build-clang -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    >/dev/null && cmake --build build-clang -j"$(nproc)" >build-clang/build.log 2>&1
rc=$?
set -e
[ "$rc" -eq 0 ] || tail -40 build-clang/build.log
count "clang build" "$rc"

# The code is as clang-format writes it (.clang-format).
set +e
scripts/check-format.sh
rc=$?
set -e
count "clang-format" "$rc"

cat "$log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
