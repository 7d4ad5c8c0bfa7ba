#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Builds the hwconvey test kernel: Debian's linux-source-7.3 with patches/
# applied and tools/testing/kconfig/ merged onto tinyconfig.
#
# The tree lives in the cache, outside the checkout:
#   $HWC_CACHE/linux-<version>/          source, with the series applied
#   $HWC_CACHE/build-<version>-<variant>/ object tree (O=), KDIR for modules
# A stamp in the object tree records the key (source version, series hash,
# config hash) of its last successful build; when it matches, nothing runs.
# When the series changes, only the patches from the first changed one on are
# reverted and re-applied, so make rebuilds only what they touch.
#
# Prints the object tree's path on stdout. HWC_KCONFIG=debug selects the debug
# variant (KASAN, kmemleak, lockdep).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

variant=${HWC_KCONFIG:-normal}
fragments=("$here/kconfig/hwconvey.config")
case "$variant" in
normal) ;;
debug) fragments+=("$here/kconfig/debug.config") ;;
*) die "HWC_KCONFIG must be 'normal' or 'debug', not '$variant'" ;;
esac

[ -f "$HWC_CACHE/src/version" ] || die "no kernel source: run tools/testing/setup.sh"
debver=$(cat "$HWC_CACHE/src/version")
src=$HWC_CACHE/linux-$debver
out=$HWC_CACHE/build-$debver-$variant

series_hash=$(cd "$HWC_ROOT/patches" && cat series $(cat series) | sha256sum | cut -c1-16)
config_hash=$(cat "${fragments[@]}" | sha256sum | cut -c1-16)
key="$debver series=$series_hash config=$config_hash"

if [ -f "$out/.hwconvey-stamp" ] && [ "$(cat "$out/.hwconvey-stamp")" = "$key" ] &&
	[ -f "$out/arch/x86/boot/bzImage" ]; then
	log "kernel up to date ($key)"
	echo "$out"
	exit 0
fi

# Unpack the pristine source once per Debian version.
if ! [ -f "$src/.hwconvey-unpacked" ]; then
	log "unpacking linux-source-7.3 $debver"
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	deb=$HWC_CACHE/src/linux-source-7.3_$debver.deb
	dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/src/linux-source-7.3.tar.xz |
		tar -xJ -C "$src.tmp" --strip-components=1
	mv "$src.tmp" "$src"
	mkdir -p "$src/.hwconvey-applied"
	touch "$src/.hwconvey-unpacked"
fi

# Bring the applied series in line with patches/series.
applied=$src/.hwconvey-applied
mapfile -t old < <(cat "$applied/series" 2>/dev/null || true)
mapfile -t new < "$HWC_ROOT/patches/series"
keep=0
while [ $keep -lt ${#old[@]} ] && [ $keep -lt ${#new[@]} ] &&
	[ "${old[$keep]}" = "${new[$keep]}" ] &&
	cmp -s "$applied/${old[$keep]}" "$HWC_ROOT/patches/${new[$keep]}"; do
	keep=$((keep + 1))
done
for ((i = ${#old[@]} - 1; i >= keep; i--)); do
	log "reverting ${old[$i]}"
	patch -d "$src" -p1 -R -s --no-backup-if-mismatch <"$applied/${old[$i]}" ||
		die "could not revert ${old[$i]}: remove $src and run again"
	rm -f "$applied/${old[$i]}"
	printf '%s\n' "${old[@]:0:$i}" | sed '/^$/d' >"$applied/series"
done
for ((i = keep; i < ${#new[@]}; i++)); do
	log "applying ${new[$i]}"
	patch -d "$src" -p1 -s -N --no-backup-if-mismatch <"$HWC_ROOT/patches/${new[$i]}" ||
		die "${new[$i]} does not apply to linux-source-7.3 $debver"
	cp "$HWC_ROOT/patches/${new[$i]}" "$applied/"
	printf '%s\n' "${new[@]:0:$((i + 1))}" >"$applied/series"
done

kmake() { make -C "$src" O="$out" "${KMAKE_VARS[@]}" "$@"; }

mkdir -p "$out"
# Regenerate .config only when the fragments changed: an unchanged config
# must not look new to make.
if ! [ -f "$out/.hwconvey-config" ] || [ "$(cat "$out/.hwconvey-config")" != "$config_hash" ]; then
	log "configuring ($variant): tinyconfig + ${fragments[*]##*/}"
	kmake -s rustavailable >/dev/null || die "Rust toolchain not usable: see 'make rustavailable'"
	kmake -s tinyconfig >/dev/null
	"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "${fragments[@]}" >/dev/null
	kmake -s olddefconfig >/dev/null
	echo "$config_hash" >"$out/.hwconvey-config"
fi

# Every option the fragments ask for must be in the final config.
bad=0
while read -r line; do
	case "$line" in
	CONFIG_*=*)
		grep -qx "$line" "$out/.config" || { log "config lost: $line"; bad=1; } ;;
	"# CONFIG_"*" is not set")
		opt=${line#\# }; opt=${opt%% *}
		! grep -q "^$opt=[ym]" "$out/.config" || { log "config forced on: $opt"; bad=1; } ;;
	esac
done < <(cat "${fragments[@]}")
if [ $bad != 0 ]; then
	rm -f "$out/.hwconvey-config"
	die "the kernel config does not have what hwconvey needs (see above)"
fi

log "building $out ($key)"
start=$(date +%s)
kmake -j"$(nproc)" -s bzImage modules
log "kernel built in $(($(date +%s) - start)) s"
echo "$key" >"$out/.hwconvey-stamp"
echo "$out"
