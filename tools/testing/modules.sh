#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Builds host_mod/hwconvey_host.ko and guest_mod/hwconvey_guest.ko against
# KDIR (default: the cached test kernel, built first if needed). Extra
# arguments go to make (e.g. "clean", or CLIPPY=1).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

KDIR=${KDIR:-$("$here/build-kernel.sh")}
[ -f "$KDIR/Module.symvers" ] || die "KDIR=$KDIR is not a built kernel tree"
grep -q '^CONFIG_RUST=y' "$KDIR/.config" || die "KDIR=$KDIR has no Rust support"
make -C "$KDIR" M="$HWC_ROOT" "${KMAKE_VARS[@]}" -j"$(nproc)" "${@:-modules}" >&2
if [ $# -eq 0 ]; then
	ls "$HWC_ROOT"/host_mod/hwconvey_host.ko "$HWC_ROOT"/guest_mod/hwconvey_guest.ko >/dev/null
	log "modules built against $KDIR"
fi
