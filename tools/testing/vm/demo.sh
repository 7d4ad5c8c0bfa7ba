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

H=/sys/kernel/hwconvey/host
G=/sys/kernel/hwconvey/guest
show() { for f in "$@"; do printf '  %-40s %s\n' "${f#/sys/kernel/}" "$(cat "$f")"; done; }

say "Creating a hwconvey device for one guest: the host module is a vDPA management device"
vdpa mgmtdev show hwconvey | sed 's/^/  /'
next_mark
vdpa dev add name hwc0 mgmtdev hwconvey
# In loopback the device drives our own guest driver through virtio_vdpa; a
# VMM would open it through vhost_vdpa (/dev/vhost-vdpa-N) instead.
drv=$(basename "$(readlink /sys/bus/vdpa/devices/hwc0/driver 2>/dev/null)" 2>/dev/null)
if [ "$drv" != virtio_vdpa ]; then
	[ -z "$drv" ] || echo hwc0 >/sys/bus/vdpa/drivers/$drv/unbind
	echo virtio_vdpa >/sys/bus/vdpa/devices/hwc0/driver_override
	echo hwc0 >/sys/bus/vdpa/drivers/virtio_vdpa/bind
fi
for i in $(seq 100); do [ "$(cat $G/generation)" != none ] && break; sleep 0.1; done
module_log $mark
say "Both sides agree, as sysfs shows"
show $H/generation $H/inventory $H/hwc0/guest_id $H/hwc0/messages_sent $H/hwc0/acks \
	$G/generation $G/allocation $G/updates_applied

say "The guest asks for 2 CPUs on node 1 by hand; the host answers (allocation comes next)"
next_mark
echo "cpus 2 node 1" >$G/request
for i in $(seq 50); do [ "$(cat $G/responses)" -ge 1 ] && break; sleep 0.1; done
module_log $mark
show $H/hwc0/requests $G/last_response

say "Deleting the device"
next_mark
vdpa dev del hwc0
module_log $mark

say "Unloading"
rmmod hwconvey_guest && rmmod hwconvey_host && echo "  both modules unloaded cleanly"
