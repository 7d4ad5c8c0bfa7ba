#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# guest-module.sh KDIR: builds hwconvey_guest.ko against the kernel tree KDIR
# in a copy of its sources under the cache, so that the repository's own
# build stays the test kernel's; prints the module's path. The debug
# kernel's check boots its real guests from the normal kernel with it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

[ $# = 1 ] || die "usage: $0 KDIR"
kdir=$1
[ -f "$kdir/Module.symvers" ] || die "KDIR=$kdir is not a built kernel tree"
out=$HWC_CACHE/guest-module-$(basename "$kdir")
rm -rf "$out"
mkdir -p "$out"
cp -r "$HWC_ROOT/guest_mod" "$HWC_ROOT/proto" "$out/"
# The repository's objects are the test kernel's: none may be reused.
find "$out" \( -name '*.o' -o -name '*.ko' -o -name '*.mod' -o -name '*.mod.c' \
	-o -name '.*.cmd' -o -name 'modules.order' -o -name 'Module.symvers' \) -delete
echo 'obj-m += guest_mod/' >"$out/Kbuild"
make -C "$kdir" M="$out" "${KMAKE_VARS[@]}" -j"$(nproc)" modules >&2
ls "$out/guest_mod/hwconvey_guest.ko"
