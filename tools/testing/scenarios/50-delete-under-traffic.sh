#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Deleting the device, and unloading the modules, while the guest floods
# the host with requests: the writers see errors once the device is gone,
# the kernel logs no warning (vm-run fails the run if it does), and
# everything unloads.
. "$(dirname "$0")/lib.sh"

load_host
load_guest
for round in 1 2 3; do
	vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
	bind hwc0 virtio_vdpa
	G=$(guest_files) || fail "round $round: no guest device link in $GK"
	wait_copy
	pids=()
	for w in 1 2 3; do
		(for i in $(seq 2000); do echo "cpus 1" >$G/request 2>/dev/null || true; done) &
		pids+=($!)
	done
	sleep 0.5
	reqs=$(cat /sys/kernel/hwconvey/host/hwc0/requests)
	[ "$reqs" -gt 0 ] || fail "round $round: no traffic reached the host"
	case $round in
	1|2) vdpa dev del hwc0 || fail "vdpa dev del under traffic" ;;
	3) rmmod hwconvey_host || fail "rmmod hwconvey_host under traffic" ;;
	esac
	wait "${pids[@]}"
	[ ! -e /sys/bus/vdpa/devices/hwc0 ] || fail "hwc0 still exists"
	[ ! -e $G ] && [ ! -L $G ] || fail "round $round: ${G##*/}'s guest link outlived hwc0"
	no_guest_device || fail "round $round: the guest still has a device: links $(guest_links | xargs), devices $(cat $GK/devices)"
	note "round $round: deleted with requests in flight ($reqs handled before)"
	load_host
done
unload_all
