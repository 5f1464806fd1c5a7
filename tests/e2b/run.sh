#!/bin/sh
# Runs the unmodified e2b SDK (npm, version locked in package-lock.json)
# against the sandboxd in the binary directory given (or $SBX_BIN_DIR), with
# its E2B-compatible API over HTTPS: installs the locked packages, makes a
# throw-away CA and server certificate, and runs `node --test`.  Sandboxes
# run on the local agent, from $SBX_DEFAULT_IMAGE when set.
# Usage: tests/e2b/run.sh BUILD_DIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${1:-${SBX_BIN_DIR:-}}
[ -n "$bin_dir" ] || { echo "usage: $0 BUILD_DIR (the directory holding sandboxd)" >&2; exit 2; }
bin_dir=$(cd "$bin_dir" && pwd)
[ -x "$bin_dir/sandboxd" ] || { echo "$0: no sandboxd in $bin_dir" >&2; exit 2; }

(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

tls_dir=$(mktemp -d)
trap 'rm -rf "$tls_dir"' EXIT INT TERM
"$here/../sdk/certs.sh" "$tls_dir"

cd "$here"
SBX_BIN_DIR="$bin_dir" SBX_TLS_DIR="$tls_dir" NODE_EXTRA_CA_CERTS="$tls_dir/ca.pem" \
    node --test --test-reporter=spec --test-concurrency=1 e2b.test.mjs
