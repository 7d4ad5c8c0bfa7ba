#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The device across VMMs that come and go (97-real-guest.sh has the guest's
# side; these VMMs are the patched QEMU paused before boot, holding the
# device through /dev/vhost-vdpa-N as any VMM does):
#   - a VMM is killed: the device loses its owner and the guest's allocation
#     goes back to the free pool (release_on_exit);
#   - a new VMM takes the same device: its guest starts with the initial
#     allocation again;
#   - with release_on_exit off, a departed VMM's allocation stays;
#   - the device then serves the next guest, a driver in the host itself,
#     which sees that allocation.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/real-guest.sh"

load_host
echo 1 >$H/initial_cpus
echo 2 >$H/default_quota_cpus
echo 1 >$H/release_on_exit
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
bind hwc0 vhost_vdpa
free_start=$(grep -c ' free$' $HD/cpus)

# takes PID: the device's owner is QEMU PID.
takes() { wait_until 30 "QEMU $1 taking the device (owner $(cat $H/hwc0/owner_pid))" eval "[ \"\$(cat $H/hwc0/owner_pid)\" = $1 ]"; }
# killed PID: QEMU PID is killed; the host shows the owner gone once it has
# applied release_on_exit.
killed() {
	kill -9 "$1"
	rm -f "$GDIR/paused.pid"
	wait_until 30 "the device losing its owner after QEMU $1 was killed" eval "[ \"\$(cat $H/hwc0/owner_pid)\" = none ]"
}

first=$(vmm_paused hwc0) || fail "no paused QEMU: $first"
takes "$first"
killed "$first"
[ "$(cat $H/hwc0/allocation/cpus) $(cat $H/hwc0/allocation/memory_mib)" = "0 0" ] || fail "after the kill the guest holds $(values $H/hwc0/allocation)"
[ "$(grep -c ' free$' $HD/cpus)" = $((free_start + 1)) ] || fail "the guest's CPU is not free again"
note "QEMU $first killed: the device has no owner, the guest's CPU is free"

second=$(vmm_paused hwc0) || fail "no paused QEMU: $second"
takes "$second"
[ "$(cat $H/hwc0/allocation/cpus) $(cat $H/hwc0/allocation/memory_mib)" = "1 0" ] ||
	fail "a new VMM on the device: its guest holds $(values $H/hwc0/allocation), not the initial allocation"
note "a new VMM (QEMU $second) took the device: its guest starts with $(values $H/hwc0/allocation)"

echo 0 >$H/release_on_exit
held=$(values $H/hwc0/allocation)
killed "$second"
[ "$(values $H/hwc0/allocation)" = "$held" ] || fail "release_on_exit 0: the guest went from $held to $(values $H/hwc0/allocation)"
note "release_on_exit 0: after QEMU $second was killed the guest keeps $held"

# The next guest: a driver in the host itself. Its projection stays out of
# it (one sample a minute): on a busy VM it would ask for the CPU its quota
# leaves, and the allocation checked is the one the departed VMM left.
load_guest
echo 60000 >$GK/period_ms
bind hwc0 virtio_vdpa
G=$(guest_files) || fail "hwc0 on virtio_vdpa: no guest device link in $GK"
in_sync
[ "$(values $G/allocation)" = "$held" ] || fail "the next guest sees $(values $G/allocation), not $held"
note "the device serves the next guest (loopback), which holds $(values $G/allocation)"
vdpa dev del hwc0 || fail "vdpa dev del"
unload_all
