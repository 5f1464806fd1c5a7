#!/bin/sh
# Runs the Azure SDK for JavaScript tests against the sandboxd in the binary
# directory given (or $SBX_BIN_DIR): installs the locked npm packages, makes
# a throw-away CA and server certificate, and runs `node --test`.
# Usage: tests/sdk/run.sh BUILD_DIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${1:-${SBX_BIN_DIR:-}}
[ -n "$bin_dir" ] || { echo "usage: $0 BUILD_DIR (the directory holding sandboxd)" >&2; exit 2; }
bin_dir=$(cd "$bin_dir" && pwd)
[ -x "$bin_dir/sandboxd" ] || { echo "$0: no sandboxd in $bin_dir" >&2; exit 2; }

(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

tls_dir=$(mktemp -d)
trap 'rm -rf "$tls_dir"' EXIT INT TERM
"$here/certs.sh" "$tls_dir"

# Node reads NODE_EXTRA_CA_CERTS only when it starts, so the CA is made
# before node runs; the SDK then trusts it like any other.
cd "$here"
SBX_BIN_DIR="$bin_dir" SBX_TLS_DIR="$tls_dir" NODE_EXTRA_CA_CERTS="$tls_dir/ca.pem" \
    node --test --test-reporter=spec sdk.test.mjs
