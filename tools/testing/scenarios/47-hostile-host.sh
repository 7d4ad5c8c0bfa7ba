#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A hostile host: crafted messages (hostile-host.py, through the host's
# debugfs "inject") reach the guest driver as if the device sent them. The
# driver rejects each one, counted in bad_messages, and keeps its copy of the
# host, its generation and its last answer; afterwards the next real update
# still applies.
. "$(dirname "$0")/lib.sh"

# The test hook that queues raw messages for a guest is off unless asked for.
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
load_host
out=$( { printf '\1\0\0\0\1\2\0\0\10\0\0\0' >/sys/kernel/debug/hwconvey-host/inject; } 2>&1) &&
	fail "inject worked without the module parameter"
case "$out" in *"not permitted"*) ;; *) fail "inject without the module parameter: $out" ;; esac
rmmod hwconvey_host || fail "rmmod hwconvey_host"
insmod "$HWC_ROOT/host_mod/hwconvey_host.ko" inject=1 || fail "insmod hwconvey_host inject=1"
load_guest
# The guest's own projection stays out of it: nothing else moves its state.
echo 60000 >$GK/period_ms
[ -w /sys/kernel/debug/hwconvey-host/inject ] || fail "no debugfs inject file"
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
bind hwc0 virtio_vdpa
G=$(guest_files) || fail "hwc0 on virtio_vdpa: no guest device link in $GK"
in_sync
# A real request and its answer, which the hostile host then replays.
echo "cpus 1" >$G/request || fail "request"
for i in $(seq 100); do [ "$(cat $G/responses)" -ge 1 ] && break; sleep 0.1; done
# Request ids start at 1: id 0 is no answer yet.
answered=$(cat $G/last_response/id)
[ "$answered" -gt 0 ] 2>/dev/null || fail "no answer to a real request: $(values $G/last_response)"
in_sync
python3 "$(dirname "$0")/hostile-host.py" "$(cat $H/hwc0/guest_id)" "$answered" "$G" || fail "the hostile host's checks"
echo 1 >/sys/kernel/debug/hwconvey-host/bench_push
in_sync
note "$(cat $G/bad_messages) messages rejected; then generation $(cat $G/generation) applied on both sides"
