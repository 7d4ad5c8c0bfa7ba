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
GK=/sys/kernel/hwconvey/guest
# The guest's files of its device, through the device's link in $GK: set once bound.
G=
HD=/sys/kernel/debug/hwconvey-host
# show FILE...: each file's value; a subdirectory's files (values that belong together) on one
# line, as "name=value" words.
show() {
	local f g v
	for f in "$@"; do
		if [ -d "$f" ]; then
			v=
			for g in "$f"/*; do v+="${g##*/}=$(cat "$g") "; done
		else
			v=$(cat "$f")
		fi
		printf '  %-40s %s\n' "${f#/sys/kernel/}" "$v"
	done
}

say "Creating a hwconvey device for one guest: the host module is a vDPA management device"
vdpa mgmtdev show faux/hwconvey | sed 's/^/  /'
# The VM keeps about one CPU busy by itself (emulation): start the guest
# with 2 CPUs so that it sits below its target utilisation until the load.
echo 2 >$H/initial_cpus
next_mark
vdpa dev add name hwc0 mgmtdev faux/hwconvey
# In loopback the device drives our own guest driver through virtio_vdpa; a
# VMM would open it through vhost_vdpa (/dev/vhost-vdpa-N) instead.
drv=$(basename "$(readlink /sys/bus/vdpa/devices/hwc0/driver 2>/dev/null)" 2>/dev/null)
if [ "$drv" != virtio_vdpa ]; then
	[ -z "$drv" ] || echo hwc0 >/sys/bus/vdpa/drivers/$drv/unbind
	echo virtio_vdpa >/sys/bus/vdpa/devices/hwc0/driver_override
	echo hwc0 >/sys/bus/vdpa/drivers/virtio_vdpa/bind
fi
# The guest driver links its device's files (on the virtio device) from $GK.
for i in $(seq 100); do
	for l in $GK/*; do [ -L "$l" ] && G=$l; done
	[ -n "$G" ] && [ "$(cat $G/generation 2>/dev/null)" -gt 0 ] 2>/dev/null && break
	sleep 0.1
done
module_log $mark
say "Both sides agree, as sysfs shows"
show $H/generation $H/inventory $H/hwc0/guest_id $H/hwc0/messages_sent $H/hwc0/acks \
	$GK/devices $G/generation $G/allocation $G/updates_applied

wait_for() { for i in $(seq "${2:-100}"); do eval "$1" && return 0; sleep 0.1; done; return 1; }
synced() { [ "$(cat $G/generation)" = "$(cat $H/generation)" ]; }

say "What each side holds: the host gave the new guest $(cat $H/initial_cpus) CPU(s), NUMA-local"
show $H/hwc0/cpus $H/hwc0/quota_cpus $G/allocation
cat $HD/cpus | sed 's/^/  /'

say "The guest asks by hand for one more CPU, on node 1; then that CPU goes offline"
echo 3 >$H/hwc0/quota_cpus
next_mark
echo "cpus 1 node 1" >$G/request
wait_for '[ "$(cat $G/responses)" -ge 1 ]' && wait_for synced
victim=$(grep -E " node 1 guest [0-9]+$" $HD/cpus | head -1 | awk '{print $2}')
module_log $mark
show $G/last_response $H/hwc0/cpus
if [ -n "$victim" ]; then
	say "CPU $victim goes offline: the host replaces it from the free pool on the same node"
	next_mark
	echo 0 >/sys/devices/system/cpu/cpu$victim/online
	wait_for synced
	module_log $mark
	show $H/hwc0/cpus $H/reallocations $G/allocation
	say "CPU $victim comes back: free again, and the guest's copy counts it"
	next_mark
	echo 1 >/sys/devices/system/cpu/cpu$victim/online
	wait_for synced
	module_log $mark
fi

say "A real load in the guest: it samples itself every 200 ms, projects, and asks"
echo 200 >$GK/period_ms
echo 4 >$H/hwc0/quota_cpus
before=$(cat $H/hwc0/requests)
next_mark
pids=()
for i in 1 2 3; do (while :; do :; done) & pids+=($!); done
wait_for '[ "$(cat $H/hwc0/requests)" -gt "$before" ]' 150
wait_for synced
module_log $mark
kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null
show $G/projection $HD/hwc0/last_request $G/last_response $H/hwc0/cpus $G/allocation

say "Beyond its quota, the guest is told no, and why"
echo "cpus 1" >$G/request
sleep 1
show $G/last_response

CTL=$HWC_ROOT/target/debug/hwconveyctl
if [ -x "$CTL" ]; then
	say "The same state through hwconveyctl: the host's guests, and the guest's own view as JSON"
	"$CTL" guests | sed 's/^/  /'
	"$CTL" --json get guest/${G##*/}/allocation | sed 's/^/  guest allocation: /'
	"$CTL" --json get guest/${G##*/}/last_diff | sed 's/^/  guest last diff: /'
fi

AGENT=$HWC_ROOT/target/debug/hwconvey-vmm-agent
if [ -x "$AGENT" ]; then
	say "The VMM's side: hwconvey-vmm-agent gives the VM what the host allocated (a paused QEMU stands for it)"
	qd=$(mktemp -d)
	qemu-system-x86_64 -M pc -accel tcg,thread=multi -cpu qemu64 -smp 1,maxcpus=8 -m 128M \
		-nodefaults -display none -S -name demo,debug-threads=on \
		-qmp "unix:$qd/qmp.sock,server=on,wait=off" >/dev/null 2>&1 &
	qpid=$!
	for i in $(seq 100); do [ -S "$qd/qmp.sock" ] && break; sleep 0.1; done
	"$AGENT" --qmp "$qd/qmp.sock" --device hwc0 --once 2>&1 | sed 's/^/  /'
	for t in /proc/$qpid/task/*; do
		[[ $(cat "$t/comm") =~ ^CPU\ ([0-9]+)/TCG$ ]] &&
			echo "  vCPU ${BASH_REMATCH[1]} runs on host CPU $(awk '/^Cpus_allowed_list/ {print $2}' "$t/status")"
	done | sort -n -k2
	kill "$qpid"; wait "$qpid" 2>/dev/null
fi

say "Deleting the device"
next_mark
vdpa dev del hwc0
module_log $mark

say "Unloading"
rmmod hwconvey_guest && rmmod hwconvey_host && echo "  both modules unloaded cleanly"
