#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A hostile host: crafted messages (hostile-host.py, through the host's
# debugfs "inject") reach the guest driver as if the device sent them. The
# driver rejects each one, counted in bad_messages, and keeps its copy of the
# host, its generation and its last answer; afterwards the next real update
# still applies.
. "$(dirname "$0")/lib.sh"

load_host
load_guest
# The guest's own projection stays out of it: nothing else moves its state.
echo 60000 >$G/period_ms
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
[ -w /sys/kernel/debug/hwconvey-host/inject ] || fail "no debugfs inject file"
vdpa dev add name hwc0 mgmtdev hwconvey || fail "vdpa dev add"
bind hwc0 virtio_vdpa
in_sync
python3 "$(dirname "$0")/hostile-host.py" "$(cat $H/hwc0/guest_id)" || fail "the hostile host's checks"
echo 1 >$H/bench_push
in_sync
note "$(cat $G/bad_messages) messages rejected; then generation $(cat $G/generation) applied on both sides"
