#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Installs what building and testing hwconvey needs on a Debian bookworm
# machine, and fetches the Linux 7.3 source into the cache. Idempotent: every
# step checks first and skips what is already there.
#
# Nothing comes from trixie but the kernel source package, which is only
# downloaded and unpacked, never installed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

BINDGEN_VERSION=0.73.2
VIRTME_NG_VERSION=1.38

debs=(
	rustc-web rust-web-src rust-web-clippy
	clang-19 lld-19 llvm-19 libclang-19-dev
	qemu-system-x86 flex bison bc libelf-dev libssl-dev cpio kmod
	iproute2 make gcc python3-pip busybox-static udev numactl
	zstd xz-utils dwarves
	# The peer benchmark (make bench) drives the simulated disk with fio.
	fio
	# The QEMU of the real-guest tests (build-qemu.sh) builds with these.
	ninja-build pkg-config libglib2.0-dev libnuma-dev python3-venv patch
)

missing=()
for p in "${debs[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing Debian packages: ${missing[*]}"
	sudo_ apt-get update -q
	sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}"
fi

if ! [ -x "$BINDGEN" ] || ! "$BINDGEN" --version 2>/dev/null | grep -q " $BINDGEN_VERSION\$"; then
	log "installing bindgen-cli $BINDGEN_VERSION"
	LIBCLANG_PATH=$LIBCLANG_PATH cargo install --locked --quiet bindgen-cli --version "$BINDGEN_VERSION" \
		--root "$HWC_TOOLS"
fi

if ! [ -x "$VNG" ] || ! "$VNG" --version 2>/dev/null | grep -q "$VIRTME_NG_VERSION"; then
	log "installing virtme-ng $VIRTME_NG_VERSION"
	python3 -m venv "$HWC_TOOLS/venv"
	"$HWC_TOOLS/venv/bin/pip" install -q "virtme-ng==$VIRTME_NG_VERSION"
fi

# The kernel source: Debian's linux-source-7.3 from trixie-backports, fetched
# from whichever Debian mirror this machine already uses.
src_list=/etc/apt/sources.list.d/hwconvey-trixie-backports.sources
if ! [ -f "$src_list" ]; then
	mirror=$(debian_mirror)
	[ -n "$mirror" ] || die "no Debian mirror found in the apt sources"
	log "adding trixie-backports from $mirror (download only, priority 100)"
	sudo_ tee "$src_list" >/dev/null <<EOT
Types: deb
URIs: $mirror
Suites: trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
	sudo_ tee /etc/apt/preferences.d/hwconvey-trixie-backports >/dev/null <<EOT
Package: *
Pin: release n=trixie-backports
Pin-Priority: 100
EOT
	sudo_ apt-get update -q
fi

ver=$(apt-cache madison linux-source-7.3 | awk -F'|' '/trixie-backports/ { gsub(/ /, "", $2); print $2; exit }')
[ -n "$ver" ] || die "linux-source-7.3 not found in trixie-backports"
if ! [ -f "$HWC_CACHE/src/linux-source-7.3_$ver.deb" ]; then
	log "downloading linux-source-7.3 $ver"
	mkdir -p "$HWC_CACHE/src"
	(cd "$HWC_CACHE/src" && apt-get download -q "linux-source-7.3=$ver" &&
		mv linux-source-7.3_*"$(echo "$ver" | sed 's/.*://')"_all.deb "linux-source-7.3_$ver.deb")
fi
echo "$ver" >"$HWC_CACHE/src/version"
log "toolchain ready; kernel source linux-source-7.3 $ver"
