#!/bin/sh
# Builds the embedded default sandbox image (Debian 12 minbase with a POSIX
# shell and python3) from Debian packages only, as an OCI image layout.
#
#   scripts/build-default-image.sh OUT_DIR
#
# OUT_DIR gets oci-layout, index.json (ref name "sandboxd/default:latest") and
# blobs/sha256/{layer (one gzip tar), config, manifest}.  Idempotent: does
# nothing when OUT_DIR/index.json exists.  The layout is written beside OUT_DIR
# and renamed into place, so an interrupted run leaves no half image.
# Packages come from the machine's configured apt mirror (SBX_DEBIAN_MIRROR
# overrides it).  Needs root (debootstrap).  Takes a few minutes.
set -eu

REF_NAME="sandboxd/default:latest"
SUITE="bookworm"
PACKAGES="python3-minimal"

die() { echo "build-default-image: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUT_DIR"
out=$1
if [ -f "$out/index.json" ]; then
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed"

# The first Debian archive the machine's apt configuration names for the
# suite (not the security archive), from one-line or deb822 sources.
find_mirror() {
    {
        if [ -f /etc/apt/sources.list ]; then
            sed -n 's/^[[:space:]]*deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\)[[:space:]]\{1,\}'"$SUITE"'[[:space:]].*/\2/p' \
                /etc/apt/sources.list
        fi
        for f in /etc/apt/sources.list.d/*.list; do
            [ -f "$f" ] || continue
            sed -n 's/^[[:space:]]*deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\)[[:space:]]\{1,\}'"$SUITE"'[[:space:]].*/\2/p' "$f"
        done
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] || continue
            # deb822 stanzas are separated by blank lines; print the URI of a
            # stanza of type deb whose Suites list holds the suite itself.
            awk -v suite="$SUITE" '
                function flush() {
                    if (uri != "" && isdeb && hassuite) print uri
                    uri = ""; isdeb = 0; hassuite = 0
                }
                /^[[:space:]]*$/ { flush(); next }
                /^#/ { next }
                tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") isdeb = 1 }
                tolower($1) == "uris:" { uri = $2 }
                tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) hassuite = 1 }
                END { flush() }' "$f"
        done
    } | head -n 1
}

mirror=${SBX_DEBIAN_MIRROR:-$(find_mirror)}
[ -n "$mirror" ] || die "no Debian $SUITE mirror in /etc/apt/sources.list{,.d}"

parent=$(dirname "$out")
mkdir -p "$parent"
work=$(mktemp -d "$parent/.default-image.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/rootfs
layout=$work/layout

echo "build-default-image: debootstrap $SUITE from $mirror" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

chroot "$root" /usr/bin/python3 -c 'print(6*7)' | grep -qx 42 || die "python3 does not run in the rootfs"

# Trim what a sandbox never needs: package caches and indexes, docs, man and
# info pages, translations, logs.  /dev is left empty: the runtime provides it
# (and the importer refuses device nodes anyway).
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/usr/share/lintian "$root"/usr/share/linda \
    "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/* "$root"/root/.cache \
    "$root"/debootstrap "$root"/dev/*
find "$root" -name '__pycache__' -type d -prune -exec rm -rf {} +
: >"$root/etc/machine-id"
# The sandbox's resolver configuration is the runtime's business.
rm -f "$root/etc/resolv.conf" "$root/etc/hostname"

# One reproducible layer: sorted names, numeric owners, fixed times.
mkdir -p "$layout/blobs/sha256"
epoch=${SOURCE_DATE_EPOCH:-$(stat -c %Y "$root/var/lib/dpkg/status")}
tar --sort=name --numeric-owner --mtime="@$epoch" --clamp-mtime --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$root" -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -6 "$work/layer.tar"
layer_digest=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
layer_size=$(stat -c %s "$work/layer.tar.gz")
mv "$work/layer.tar.gz" "$layout/blobs/sha256/$layer_digest"

created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
printf '{"created":"%s","architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"%s","created_by":"debootstrap --variant=minbase --include=%s %s"}]}' \
    "$created" "$diff_id" "$created" "$PACKAGES" "$SUITE" >"$work/config.json"
config_digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
config_size=$(stat -c %s "$work/config.json")
mv "$work/config.json" "$layout/blobs/sha256/$config_digest"

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
manifest_digest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
manifest_size=$(stat -c %s "$work/manifest.json")
mv "$work/manifest.json" "$layout/blobs/sha256/$manifest_digest"

printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_digest" "$manifest_size" "$REF_NAME" >"$layout/index.json"

# Rename into place; if another run got there first, its image stands.
[ -d "$out" ] && rmdir "$out" 2>/dev/null || true
if ! mv -T "$layout" "$out" 2>/dev/null; then
    [ -f "$out/index.json" ] && exit 0
    die "cannot create $out"
fi
echo "build-default-image: $out: layer $layer_size bytes, manifest sha256:$manifest_digest" >&2
