#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The demo scenario, inside the test VM (through vm-run): a narrated run of
# what hwconvey does, step by step.
set -u
cd "$HWC_ROOT"

say() { printf '\n== %s\n' "$*"; }
module_log() { # the module's own lines since the last mark, KTAP left out
	dmesg | sed -n "/hwconvey-demo-mark $1/,\$p" | grep -E "hwconvey_(host|guest):" |
		sed 's/^\[[^]]*\] //' | grep -vE '^\s*(ok|not ok|#|KTAP|1\.\.)' | grep -vE ': +(ok|not ok|#|KTAP|1\.\.)'
}
mark=0
next_mark() { mark=$((mark + 1)); echo "hwconvey-demo-mark $mark" >/dev/kmsg; }

say "The machine: $(uname -sr), $(nproc) CPUs online, $(ls -d /sys/devices/system/node/node* | wc -l) NUMA node(s), memory blocks of $((0x$(cat /sys/devices/system/memory/block_size_bytes) >> 20)) MiB"

say "Loading hwconvey_host: it enumerates the whole host"
next_mark
insmod host_mod/hwconvey_host.ko || exit 1
module_log $mark

say "Loading hwconvey_guest: it keeps a copy of what the host tells it and projects its own load"
next_mark
insmod guest_mod/hwconvey_guest.ko || exit 1
module_log $mark

say "Each module ran its KUnit suite at load, in this kernel"
for d in /sys/kernel/debug/kunit/hwconvey_*; do
	printf '  %-16s %s\n' "$(basename "$d")" "$(grep -E '^# [a-z_]+: pass:' "$d/results" | sed 's/^# [a-z_]*: //')"
done

say "Unloading"
rmmod hwconvey_guest && rmmod hwconvey_host && echo "  both modules unloaded cleanly"
