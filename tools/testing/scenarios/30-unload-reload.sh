#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Unloading either module with a live device is clean, and so is loading it
# again: the guest module leaves (the device stays, unbound) and comes back
# (it probes again); the host module leaves, which deletes its devices
# under the guest driver, and comes back. Loaded while a CPU goes off and on
# line, the host's inventory ends where the kernel is.
. "$(dirname "$0")/lib.sh"

for round in 1 2 3; do
	load_host
	load_guest
	vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "round $round: vdpa dev add"
	bind hwc0 virtio_vdpa
	G=$(guest_files) || fail "round $round: no guest device link in $GK"
	V=/sys/bus/virtio/devices/${G##*/}
	wait_copy
	rmmod hwconvey_guest || fail "round $round: rmmod hwconvey_guest with a bound device"
	[ ! -e $GK ] || fail "round $round: the guest's knob directory outlived its module"
	# The virtio device stays (virtio_vdpa still has hwc0), unbound: without hwconvey's files.
	[ -d $V ] || fail "round $round: the virtio device ${V##*/} went away with the driver"
	[ ! -e $V/generation ] || fail "round $round: the guest's device files outlived its module"
	[ -e /sys/bus/vdpa/devices/hwc0 ] || fail "round $round: the device went away with the driver"
	# The device stopped when its driver left: no queue runs.
	wait_until 5 "round $round: hwc0 still running without a driver" \
		grep -qx 0 $H/hwc0/running
	load_guest
	bind hwc0 virtio_vdpa
	G=$(guest_files) || fail "round $round: the reloaded guest driver has no device link in $GK"
	V=/sys/bus/virtio/devices/${G##*/}
	wait_copy
	rmmod hwconvey_host || fail "round $round: rmmod hwconvey_host with a live device"
	[ ! -e /sys/bus/vdpa/devices/hwc0 ] || fail "round $round: hwc0 survived its management device"
	[ ! -e $H ] || fail "round $round: the host's files outlived its module"
	# Its driver was unbound on the way: the guest has no device, nor its files.
	no_guest_device || fail "round $round: the guest kept a deleted device: links $(guest_links | xargs), devices $(cat $GK/devices)"
	[ ! -e $V ] || fail "round $round: the virtio device ${V##*/} outlived the deleted hwc0"
	unload_all
done
note "3 rounds of unload/reload with live devices"

# Loaded while a CPU goes off and on line: whatever the timing against the
# module's scan and its hotplug registrations, its inventory ends where the
# kernel is (no guest: every online CPU is free).
cpu=/sys/devices/system/cpu/cpu3/online
[ -w $cpu ] || skip "no cpu3 that can go offline"
toggler=
trap '[ -n "$toggler" ] && kill "$toggler" 2>/dev/null; echo 1 >$cpu' EXIT
for round in 1 2 3 4 5 6; do
	(for i in $(seq 20); do echo 0 >$cpu; echo 1 >$cpu; done; echo $((round % 2)) >$cpu) &
	toggler=$!
	load_host
	wait $toggler
	toggler=
	[ "$(cat $H/free_cpus)" = "$(cat /sys/devices/system/cpu/online)" ] ||
		fail "round $round: the host has CPUs $(cat $H/free_cpus) online, the kernel $(cat /sys/devices/system/cpu/online)"
	unload_all
done
echo 1 >$cpu
note "6 loads while cpu3 went off and on line: the inventory followed"
