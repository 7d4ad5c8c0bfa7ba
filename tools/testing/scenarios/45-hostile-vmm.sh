#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A VMM that drives the device's rings by hand (hostile-vmm.py, through
# /dev/vhost-vdpa-N, as QEMU hands the device to a guest): a well-formed
# request is served; an indirect descriptor the driver did not negotiate, a
# chain of more buffers than the device allows and an available index far
# ahead each stop the queue, counted in bad_chains, with nothing taken; after
# a reset the device serves again. Starting the device in a loop gets no more
# snapshots than the rate limit (1/s here) allows.
. "$(dirname "$0")/lib.sh"

load_host
echo 1 >$H/rate_limit
echo 1 >$H/rate_burst
vdpa dev add name hwc0 mgmtdev hwconvey || fail "vdpa dev add"
bind hwc0 vhost_vdpa
chr=$(ls /sys/bus/vdpa/devices/hwc0/ | grep -E '^vhost-vdpa-[0-9]+$' | head -1)
[ -n "$chr" ] || fail "no vhost-vdpa device under hwc0"
udevadm settle 2>/dev/null || true
[ -c "/dev/$chr" ] || mknod "/dev/$chr" c $(tr ':' ' ' <"/sys/bus/vdpa/devices/hwc0/$chr/dev")
python3 "$(dirname "$0")/hostile-vmm.py" "/dev/$chr" $H || fail "the hostile VMM's checks"
note "$(cat $H/hwc0/bad_chains) queues stopped, $(cat $H/hwc0/messages_received) messages served, $(cat $H/hwc0/snapshots) snapshots"
