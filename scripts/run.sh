#!/bin/sh
# Builds sandboxd and starts it on its embedded defaults: 127.0.0.1:8080,
# plain HTTP, data in ./sandboxd-data, one local sandbox-agent.
# Extra arguments go to sandboxd (see ./build/sandboxd --help).
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ -x scripts/build-default-image.sh ]; then
    scripts/build-default-image.sh build/default-image
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSBX_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
exec ./build/sandboxd "$@"
