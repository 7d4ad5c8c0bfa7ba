#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The management device creates a device; bound to virtio_vdpa, the guest
# driver probes it; the host's snapshot reaches the guest, which applies it
# and acks it; the ack reaches the host. Deleting the device unbinds the
# driver cleanly.
. "$(dirname "$0")/lib.sh"

load_host
load_guest
vdpa mgmtdev show faux/hwconvey | grep -q "max_supported_vqs 2" || fail "vdpa mgmtdev show does not list hwconvey"
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
bind hwc0 virtio_vdpa
G=$(guest_files) || fail "hwc0 on virtio_vdpa: no guest device link in $GK"
[ "$(cat $GK/devices)" = 1 ] || fail "the guest counts $(cat $GK/devices) devices, not 1"
wait_copy
# inventory/online_cpus: the guest's copy counts the host's online CPUs.
host_cpus=$(guest_online_cpus)
[ "$host_cpus" = "$(nproc)" ] || fail "the guest's copy has $host_cpus online CPUs, the host $(nproc): $(values $G/inventory)"
note "host -> guest: snapshot of $host_cpus CPUs applied"
# The guest acks what it applied; the ack reaches the host.
wait_until 5 "no ack reached the host" at_least $H/hwc0/acks 1
[ "$(cat $H/hwc0/bad_messages) $(cat $G/bad_messages)" = "0 0" ] ||
	fail "bad messages: host $(cat $H/hwc0/bad_messages), guest $(cat $G/bad_messages)"
vdpa dev del hwc0 || fail "vdpa dev del"
[ ! -e $H/hwc0 ] && [ ! -L $H/hwc0 ] || fail "hwc0's host link outlived the device"
[ ! -e /sys/bus/vdpa/devices/hwc0 ] || fail "hwc0 outlived its deletion"
[ "$(cat $H/devices)" = 0 ] || fail "host devices after the delete: $(cat $H/devices)"
# The device's link and files went with it: the guest has no device.
[ ! -e $G ] && [ ! -L $G ] || fail "${G##*/}'s guest link outlived the device"
no_guest_device || fail "the guest still reports a device: links $(guest_links | xargs), devices $(cat $GK/devices)"
note "guest -> host: ack received; device deleted, driver unbound"
unload_all
