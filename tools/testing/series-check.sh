#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make series-check: every patch of patches/series builds on its own, in series
# order, as a reviewer bisecting the series would build it.
#
# A tree of its own, $HWC_CACHE/series-check/, so the test kernel's tree is not
# touched: the pristine source, then one patch after the other. After each
# patch the test kernel's configuration is merged again (the symbols a patch
# adds appear only from that patch on), and the kernel and its Rust crates are
# built with CLIPPY=1. A patch fails if it does not apply, if the build fails,
# or if the compilers or clippy warn. checkpatch.pl --strict runs on every
# patch as well; its verdicts are printed, not counted (the cover letter
# explains the one note that remains).
#
# The first build is a full one (10 to 20 minutes here); then make rebuilds what
# each patch touches. Ends with "series-check: N passed, N failed".
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

"$here/setup.sh" >&2
debver=$(cat "$HWC_CACHE/src/version")
top=$HWC_CACHE/series-check
src=$top/linux-$debver
out=$top/build
logs=$top/logs
mkdir -p "$top" "$logs"

# A pristine tree: unpacked once; patches left applied by an earlier run are
# reverted, newest first.
if ! [ -f "$src/.hwconvey-unpacked" ]; then
	log "unpacking linux-source-7.3 $debver"
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	dpkg-deb --fsys-tarfile "$HWC_CACHE/src/linux-source-7.3_$debver.deb" |
		tar -xO ./usr/src/linux-source-7.3.tar.xz |
		tar -xJ -C "$src.tmp" --strip-components=1
	mv "$src.tmp" "$src"
	mkdir -p "$src/.hwconvey-applied"
	touch "$src/.hwconvey-unpacked"
fi
applied=$src/.hwconvey-applied
if [ -f "$applied/series" ]; then
	mapfile -t old <"$applied/series"
	for ((i = ${#old[@]} - 1; i >= 0; i--)); do
		patch -d "$src" -p1 -R -s --no-backup-if-mismatch <"$applied/${old[$i]}" ||
			die "could not revert ${old[$i]}: remove $src and run again"
	done
fi
rm -f "$applied"/*
: >"$applied/series"

kmake() { make -C "$src" O="$out" "${KMAKE_VARS[@]}" "$@"; }
checkpatch=$src/scripts/checkpatch.pl

# configure: the test kernel's configuration, as far as this tree knows it.
configure() {
	mkdir -p "$out"
	kmake -s tinyconfig >/dev/null
	"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" \
		"$here/kconfig/hwconvey.config" >/dev/null 2>&1
	kmake -s olddefconfig >/dev/null
}

# build NAME: builds the tree; fails on an error or on a warning of any compiler.
build() {
	local name=$1 start rc
	start=$(date +%s)
	set +e
	kmake -j"$(nproc)" -s CLIPPY=1 bzImage modules >"$logs/$name.log" 2>&1
	rc=$?
	set -e
	if [ $rc != 0 ] || grep -qE '(^|: )(warning|error)(\[[^]]*\])?:' "$logs/$name.log"; then
		grep -E '(^|: )(warning|error)(\[[^]]*\])?:' -A6 "$logs/$name.log" | head -40 >&2
		return 1
	fi
	log "$name built in $(($(date +%s) - start)) s"
}

log "the pristine tree"
configure
build 0000-pristine || die "the pristine tree does not build: see $logs/0000-pristine.log"

passed=0
failed=0
mapfile -t series <"$HWC_ROOT/patches/series"
for p in "${series[@]}"; do
	if ! patch -d "$src" -p1 -s -N --no-backup-if-mismatch <"$HWC_ROOT/patches/$p"; then
		echo "not ok - $p does not apply"
		failed=$((failed + 1))
		break
	fi
	cp "$HWC_ROOT/patches/$p" "$applied/"
	echo "$p" >>"$applied/series"
	verdict=$("$checkpatch" --strict --no-tree "$HWC_ROOT/patches/$p" 2>&1 | grep -E '^total:' || true)
	configure
	if build "${p%.patch}"; then
		echo "ok - $p (checkpatch $verdict)"
		passed=$((passed + 1))
	else
		echo "not ok - $p does not build: see $logs/${p%.patch}.log"
		failed=$((failed + 1))
	fi
done
echo "series-check: $passed passed, $failed failed"
[ $failed = 0 ]
