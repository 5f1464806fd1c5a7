#!/bin/sh
# Installs the Debian packages sandboxd needs to build, run and test.
# Idempotent and quiet when everything is already there.
set -eu

BUILD="build-essential cmake pkg-config clang libmicrohttpd-dev libjansson-dev
libsqlite3-dev libcurl4-openssl-dev libssl-dev uuid-dev check libseccomp-dev
libarchive-dev libnftables-dev libnftnl-dev libmnl-dev openssl ca-certificates"
RUNTIME="iproute2 debootstrap runsc qemu-system-x86 e2fsprogs"
TEST="sqlite3 wrk docker-registry curl jq busybox-static azure-cli procps nftables python3
clang-format"

want="$BUILD $RUNTIME"
[ "${1:-}" = "--test" ] && want="$want $TEST"

missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# Node.js may come from elsewhere than Debian (with npm inside): only ask
# for Debian's when there is no npm at all.
if [ "${1:-}" = "--test" ] && ! command -v npm >/dev/null 2>&1; then
    missing="$missing nodejs npm"
fi
# The microvm driver's guest kernel, from Debian's cloud kernel package.
# Without it only the microvm driver is missing (health says so): not fatal.
kernel() {
    "$(dirname "$0")/microvm-kernel.sh" ||
        echo "install-deps: no guest kernel for the microvm driver (scripts/microvm-kernel.sh)" >&2
}
[ -z "$missing" ] && { kernel; exit 0; }

echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
kernel
