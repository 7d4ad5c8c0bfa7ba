#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Builds the QEMU that hands the hwconvey device to a real guest: Debian's
# qemu 10.0.2 source (bookworm-backports) with patches/qemu/ applied, which
# lets vhost-vdpa-device-pci attach a virtio device whose id QEMU has no
# model for. Only what the real-guest tests need is built: the x86_64 system
# emulator with TCG, KVM and vhost-vdpa; no docs, no GUI, no tools.
#
# The build lives in the cache, keyed by the source tarball, the series and
# this script's configure line; when the key matches, nothing runs. Prints
# the emulator's path on stdout. Stock QEMU (Debian's qemu-system-x86) stays
# what everything else uses.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

QEMU_VERSION=10.0.2
# meson and pycotap as QEMU 10.0's pythondeps.toml pins them: Debian's orig
# tarball leaves out the wheels that configure would otherwise install.
MESON_VERSION=1.5.0
PYCOTAP_VERSION=1.3.1

CONFIGURE_ARGS=(
	--target-list=x86_64-softmmu
	--without-default-features
	--enable-tcg --enable-kvm --enable-vhost-kernel --enable-vhost-vdpa
	# host-nodes= on memory backends: the agent binds hot-added RAM to a node.
	--enable-numa
	--disable-docs --disable-werror --disable-download
	--disable-install-blobs
	# Debian's +ds tarball carries no firmware: SeaBIOS and the option ROMs
	# (pvh.bin, linuxboot_dma.bin) come from the installed qemu-system-data.
	--firmwarepath=/usr/share/qemu:/usr/share/seabios
)

qcache=$HWC_CACHE/qemu
srcdir=$qcache/src
tarball=$srcdir/qemu_$QEMU_VERSION+ds.orig.tar.xz
build=$qcache/build
bin=$build/qemu-system-x86_64

# The source: the deb-src line for bookworm-backports comes from the Debian
# mirror this machine already uses, as setup.sh does for the kernel.
src_list=/etc/apt/sources.list.d/hwconvey-bookworm-backports-src.sources
if ! [ -f "$tarball" ]; then
	if ! [ -f "$src_list" ]; then
		mirror=$(debian_mirror)
		[ -n "$mirror" ] || die "no Debian mirror found in the apt sources"
		log "adding bookworm-backports sources from $mirror"
		sudo_ tee "$src_list" >/dev/null <<EOT
Types: deb-src
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
		# stdout is this script's answer (the emulator's path): apt's chatter goes aside.
		sudo_ apt-get update -q >&2
	fi
	ver=$(apt-cache madison qemu | awk -F'|' '/bookworm-backports\/main Sources/ { gsub(/ /, "", $2); print $2 }' |
		grep "^1:$QEMU_VERSION+" | head -1 || true)
	[ -n "$ver" ] || die "qemu $QEMU_VERSION not found in bookworm-backports' sources"
	log "downloading qemu $ver (orig tarball)"
	mkdir -p "$srcdir"
	# Only the orig tarball is used: the Debian packaging around it may be
	# gone from the pool when a newer revision replaced it.
	(cd "$srcdir" && apt-get source --download-only -q "qemu=$ver" >/dev/null 2>&1) || true
	[ -f "$tarball" ] || die "apt-get source did not bring $(basename "$tarball")"
fi

series_hash=$(cd "$HWC_ROOT/patches/qemu" && cat series $(cat series) | sha256sum | cut -c1-16)
config_key="src=$(sha256sum "$tarball" | cut -c1-16) config=$(printf '%s\n' "${CONFIGURE_ARGS[@]}" | sha256sum | cut -c1-16)"
key="qemu $QEMU_VERSION $config_key series=$series_hash"
if [ -x "$bin" ] && [ "$(cat "$build/.hwconvey-stamp" 2>/dev/null)" = "$key" ]; then
	log "QEMU up to date ($key)"
	echo "$bin"
	exit 0
fi

venv=$HWC_TOOLS/qemu-venv
if ! [ -x "$venv/bin/meson" ] || [ "$("$venv/bin/meson" --version)" != "$MESON_VERSION" ]; then
	log "installing meson $MESON_VERSION and pycotap $PYCOTAP_VERSION for QEMU's build"
	python3 -m venv "$venv"
	"$venv/bin/pip" install -q "meson==$MESON_VERSION" "pycotap==$PYCOTAP_VERSION"
fi

# The tree is unpacked afresh for every series; tar keeps the archive's
# timestamps, so an existing build only recompiles what the series touches.
# A new source or configure line starts the build from scratch.
log "unpacking and patching QEMU $QEMU_VERSION"
[ "$(cat "$build/.hwconvey-config" 2>/dev/null)" = "$config_key" ] || rm -rf "$build"
rm -rf "$qcache/tree"
mkdir -p "$qcache/tree"
tar -xJf "$tarball" -C "$qcache/tree" --strip-components=1 --no-same-owner
while read -r p; do
	[ -n "$p" ] || continue
	patch -d "$qcache/tree" -p1 -s --no-backup-if-mismatch <"$HWC_ROOT/patches/qemu/$p" ||
		die "patches/qemu/$p does not apply to qemu $QEMU_VERSION"
done <"$HWC_ROOT/patches/qemu/series"
# tar restored the archive's timestamps: the files a series patches, now or
# in the build's last series, are touched so that the build recompiles them
# (also the ones a dropped patch no longer changes).
touched=$(cd "$HWC_ROOT/patches/qemu" && cat $(cat series) | sed -n 's|^+++ b/||p' | sort -u)
for f in $touched $(cat "$build/.hwconvey-touched" 2>/dev/null); do
	[ -f "$qcache/tree/$f" ] && touch "$qcache/tree/$f"
done
# Debian's +ds tarball has no edk2 images, but QEMU's meson lists them
# whenever bzip2 is installed. Empty stand-ins satisfy configure; only the
# emulator is built, so nothing ever unpacks them.
for f in $(grep -oE "'edk2-[a-z0-9_-]+\.fd'" "$qcache/tree/pc-bios/meson.build" | tr -d "'"); do
	[ -f "$qcache/tree/pc-bios/$f.bz2" ] || bzip2 -c </dev/null >"$qcache/tree/pc-bios/$f.bz2"
done

log "configuring and building QEMU ($key)"
start=$(date +%s)
if ! [ -f "$build/build.ninja" ]; then
	mkdir -p "$build"
	(cd "$build" && "$qcache/tree/configure" --python="$venv/bin/python3" "${CONFIGURE_ARGS[@]}" >configure.log 2>&1) ||
		{ tail -n 30 "$build/configure.log" >&2; die "QEMU's configure failed"; }
	echo "$config_key" >"$build/.hwconvey-config"
fi
ninja -C "$build" qemu-system-x86_64 >"$build/ninja.log" 2>&1 ||
	{ tail -n 40 "$build/ninja.log" >&2; die "QEMU's build failed"; }
# Run from its build tree, QEMU looks for firmware in qemu-bundle/ under the
# firmware path: there, the system's firmware is what it finds.
for fw in /usr/share/qemu /usr/share/seabios; do
	mkdir -p "$build/qemu-bundle$(dirname "$fw")"
	ln -sfn "$fw" "$build/qemu-bundle$fw"
done
log "QEMU built in $(($(date +%s) - start)) s"
echo "$touched" >"$build/.hwconvey-touched"
echo "$key" >"$build/.hwconvey-stamp"
echo "$bin"
