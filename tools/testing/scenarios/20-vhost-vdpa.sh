#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The same device bound to vhost_vdpa yields a /dev/vhost-vdpa-N character
# device (what a VMM opens to hand it to a guest); moved back to
# virtio_vdpa, the guest driver probes it again from scratch.
. "$(dirname "$0")/lib.sh"

load_host
load_guest
vdpa dev add name hwc0 mgmtdev hwconvey || fail "vdpa dev add"
bind hwc0 vhost_vdpa
chr=$(ls /sys/bus/vdpa/devices/hwc0/ | grep -E '^vhost-vdpa-[0-9]+$' | head -1)
[ -n "$chr" ] || fail "no vhost-vdpa device under hwc0"
udevadm settle 2>/dev/null || true
[ -c "/dev/$chr" ] || mknod "/dev/$chr" c $(tr ':' ' ' <"/sys/bus/vdpa/devices/hwc0/$chr/dev")
[ -c "/dev/$chr" ] || fail "/dev/$chr is not a character device"
note "bound to vhost_vdpa: /dev/$chr"
mark
bind hwc0 virtio_vdpa
wait_log 'hwconvey_guest: generation [0-9]+: snapshot applied'
note "back on virtio_vdpa: the guest driver got a fresh snapshot"
vdpa dev del hwc0 || fail "vdpa dev del"
unload_all
