#!/bin/sh
# Create-to-first-command through the unmodified e2b SDK against sandboxd's
# E2B-compatible API, beside the same through the ARM API, in one run
# (bench/e2b_bench.mjs).  Starts its own sandboxd with its local agent.
#
# Usage: bench/e2b_bench.sh [BUILD_DIR]   (a Release build holding sandboxd)
# Environment: N (50 runs each), SBX_DEFAULT_IMAGE (default
#   build/default-image).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${1:-$here/../build-rel}
[ -x "$bin_dir/sandboxd" ] || { echo "usage: $0 BUILD_DIR (no sandboxd in $bin_dir)" >&2; exit 2; }
image=${SBX_DEFAULT_IMAGE:-$here/../build/default-image}
(cd "$here/../tests/e2b" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

work=$(mktemp -d)
pid=
cleanup() {
    [ -z "$pid" ] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
"$bin_dir/sandboxd" --listen 127.0.0.1:0 --e2b-listen 127.0.0.1:0 --data-dir "$work/data" \
    --default-image "$image" 2>"$work/log" &
pid=$!
i=0
until grep -q "E2B-compatible API" "$work/log" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -lt 200 ] || { cat "$work/log" >&2; exit 1; }
    sleep 0.1
done
arm_port=$(sed -n 's/.*listening on http:[^ ]* (port \([0-9]*\)).*/\1/p' "$work/log" | head -1)
e2b_port=$(sed -n 's/.*E2B-compatible API on http:[^ ]* (port \([0-9]*\)).*/\1/p' "$work/log" | head -1)
ARM_URL="http://127.0.0.1:$arm_port" E2B_URL="http://127.0.0.1:$e2b_port" \
    TOKEN_FILE="$work/data/dev-token" node "$here/e2b_bench.mjs"
