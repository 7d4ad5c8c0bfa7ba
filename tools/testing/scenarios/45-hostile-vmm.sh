#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A VMM that drives the device's rings by hand (tools/testing/hostile-vmm,
# on rust-vmm's vhost and vm-memory crates, through /dev/vhost-vdpa-N as QEMU
# hands the device to a guest): well-formed requests are served; zero-length
# and one-byte buffers, chains past 16 buffers, descriptor loops, indices
# past the ring, addresses outside the mappings, indirect tables of every
# size, available indices far ahead, features never offered, a VMM that
# exits with the device open elsewhere, reset storms and a driver without
# deltas are each refused or held to the rate limit (1/s here), counted,
# with nothing taken. While each attack is in place, a sysfs read and a CPU
# off and on line finish within 1 s (or 5 times what they took before any
# attack, if more), and another guest still receives updates.
. "$(dirname "$0")/lib.sh"

VMM=$HWC_ROOT/target/debug/hostile-vmm
[ -w /sys/devices/system/cpu/cpu3/online ] || skip "no cpu3 that can go offline (the host's responsiveness test)"
[ -x "$VMM" ] || fail "the hostile VMM is not built (make check builds it: cargo build --workspace --bins)"
load_host
load_guest
# The other guest's projection stays out of it.
echo 60000 >$GK/period_ms
echo 1 >$H/rate_limit
echo 1 >$H/rate_burst
# The other guest, in this kernel: it must keep receiving updates.
vdpa dev add name hwc1 mgmtdev faux/hwconvey || fail "vdpa dev add hwc1"
bind hwc1 virtio_vdpa
G=$(guest_files) || fail "hwc1 on virtio_vdpa: no guest device link in $GK"
in_sync
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add hwc0"
bind hwc0 vhost_vdpa
chr=$(vhost_chardev hwc0) || fail "$chr"
# hwc0 (added after hwc1) may have been bound to virtio_vdpa for a moment:
# now hwc1 is the guest driver's only device again.
[ "$(guest_links)" = "$G" ] || fail "the guest's devices besides hwc1's ${G##*/}: $(guest_links | xargs)"
"$VMM" "$chr" hwc0 hwc1 || fail "the hostile VMM's checks"
note "hwc0: $(cat $H/hwc0/bad_chains) queues stopped, $(cat $H/hwc0/messages_received) messages served, $(cat $H/hwc0/snapshots) snapshots; hwc1 at generation $(cat $G/generation) with the host"
