#!/bin/sh
# Fetches the guest kernel of the microvm driver from Debian's cloud kernel
# package (by name, through apt) and extracts, into DIR (default
# /var/cache/sandboxd/microvm-kernel), vmlinuz and the few modules the guest
# needs that this kernel does not build in (virtio, virtio-mmio, virtio-blk,
# virtio-console, overlayfs), with modules.list in load order, and those of
# the guest's network card (virtio-net), with modules-net.list: the guest
# agent loads those only when the sandbox gets a network link, so a boot
# without one does not pay for them.  Idempotent; a directory made before
# modules-net.list existed is completed from the same package.
set -eu

DIR="${1:-${SANDBOXD_MICROVM_KERNEL:-/var/cache/sandboxd/microvm-kernel}}"
[ -f "$DIR/vmlinuz" ] && [ -f "$DIR/modules.list" ] && [ -f "$DIR/modules-net.list" ] && exit 0

pkg=$(cat "$DIR/package" 2>/dev/null || true)
[ -n "$pkg" ] || pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
if [ -z "$pkg" ]; then
    apt-get update -qq >/dev/null
    pkg=$(apt-cache depends linux-image-cloud-amd64 |
        sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
fi
[ -n "$pkg" ] || { echo "microvm-kernel: no linux-image-cloud-amd64 package" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null)
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x"
mods=$(ls -d "$tmp"/x/lib/modules/*/kernel)
mkdir -p "$DIR.new"
cp "$tmp"/x/boot/vmlinuz-* "$DIR.new/vmlinuz"
: >"$DIR.new/modules.list"
# Load order: each after what it depends on.
for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_mmio \
    drivers/block/virtio_blk drivers/char/virtio_console fs/overlayfs/overlay; do
    [ -f "$mods/$m.ko" ] || continue # built in
    cp "$mods/$m.ko" "$DIR.new/"
    basename "$m.ko" >>"$DIR.new/modules.list"
done
: >"$DIR.new/modules-net.list"
for m in net/core/failover drivers/net/net_failover drivers/net/virtio_net; do
    [ -f "$mods/$m.ko" ] || continue
    cp "$mods/$m.ko" "$DIR.new/"
    basename "$m.ko" >>"$DIR.new/modules-net.list"
done
echo "$pkg" >"$DIR.new/package"
rm -rf "$DIR"
mv "$DIR.new" "$DIR"
echo "microvm-kernel: $pkg in $DIR" >&2
