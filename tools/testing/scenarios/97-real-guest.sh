#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 900
#
# Claim 1 across a real VM boundary. The hwconvey device goes to a VMM
# through /dev/vhost-vdpa-N; QEMU (patched: patches/qemu/) hands it to a
# guest that boots the test kernel, whose hwconvey_guest binds to it as a
# virtio-pci device. Every step asserts state on both sides of the boundary
# (and QEMU's own report that it could read the rings back when it stopped):
#   - the guest's copy reaches the host's generation, and its allocation and
#     view of the host's CPUs equal what the host shows for the device;
#   - a host CPU and a host memory block go offline and online: the deltas
#     reach the guest, its diff counts them, the host's replacement shows;
#   - a real load in the guest: its projection asks for a CPU, the host
#     grants it, hwconvey-vmm-agent hot-adds a vCPU into the running guest,
#     the guest onlines it, and nproc, the guest's allocation and the host's
#     agree; the same for memory, with MemTotal growing by the grant;
#   - inside the guest the driver is unloaded and reloaded 20 times (each
#     time its copy reaches the host's generation again), then unbound and
#     bound 10 times while requests are in flight (each unbind resets the
#     device): the host counts no malformed message, both sides agree;
#   - the guest powers off: the device loses its owner and (release_on_exit)
#     the guest's allocation goes back to the free pool.
# 98-real-guest-lifecycle.sh goes on with VMMs that come and go.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/real-guest.sh"

load_host
# Two CPUs at start (CPU 0, which cannot go offline, may be one), one more
# to grant.
echo 2 >$H/initial_cpus
echo 3 >$H/default_quota_cpus
echo 256 >$H/default_quota_memory_mib
echo 1 >$H/release_on_exit
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
bind hwc0 vhost_vdpa
gid=$(cat $H/hwc0/guest_id)
free_before=$(grep -c ' free$' $HD/cpus)

guest_start hwc0 2
[ "$(cat $H/hwc0/owner_pid)" = "$(guest_pid)" ] ||
	fail "owner_pid $(cat $H/hwc0/owner_pid), QEMU is pid $(guest_pid)"
# The guest's device files are on its virtio device, which its link names.
gdev=${G##*/}
[ "$(gsh cat /sys/bus/virtio/devices/$gdev/device)" = 0x0038 ] ||
	fail "the guest's $gdev is not the hwconvey device: $(gsh ls -l /sys/bus/virtio/devices/)"
[ "$(gsh readlink -f $G)" = "$(gsh readlink -f /sys/bus/virtio/devices/$gdev)" ] ||
	fail "the guest's $G is not a link to its $gdev: $(gsh ls -l $GK)"
guest_in_sync
guest_agrees "at boot"
note "the guest's copy is at generation $(cat $H/generation); it holds $(values $H/hwc0/allocation), CPUs $(cat $H/hwc0/cpus)"

# A host CPU of the guest's goes offline: the host replaces it, NUMA-near;
# the delta reaches the guest, whose diff counts the loss and the gain.
victim=$(range_list $H/hwc0/cpus | grep -vx 0 | head -1)
applied=$(gfield updates_applied)
echo 0 >/sys/devices/system/cpu/cpu$victim/online || fail "offline cpu$victim"
guest_in_sync
guest_agrees "after cpu$victim went offline"
range_list $H/hwc0/cpus | grep -qx "$victim" && fail "cpu$victim is still the guest's"
# cpus_offlined, my_cpus_lost, my_cpus_gained of the last update's diff.
diff=$(gdiff cpus_offlined my_cpus_lost my_cpus_gained) && [ "$diff" = "1 1 1" ] ||
	fail "the guest's diff: $diff; $(gvalues last_diff)"
[ "$(gfield updates_applied)" -gt "$applied" ] || fail "the guest applied no update"
note "cpu$victim offline: the guest now holds CPU $(cat $H/hwc0/cpus); its diff: $(gvalues last_diff)"
echo 1 >/sys/devices/system/cpu/cpu$victim/online || fail "online cpu$victim"
guest_in_sync
diff=$(gdiff cpus_onlined) && [ "$diff" = 1 ] || fail "the guest's diff: $diff; $(gvalues last_diff)"

# A host memory block goes offline and online.
M=/sys/devices/system/memory
block=$(offline_a_block) || fail "no memory block could go offline"
guest_in_sync
diff=$(gdiff blocks_offlined) && [ "$diff" = 1 ] || fail "the guest's diff: $diff; $(gvalues last_diff)"
echo online >$M/memory$block/state || fail "online memory$block"
guest_in_sync
diff=$(gdiff blocks_onlined) && [ "$diff" = 1 ] || fail "the guest's diff: $diff; $(gvalues last_diff)"
guest_agrees "after memory$block went offline and online"
note "memory$block offline and online: the guest's diff counted both"

# A real load in the guest: its own projection asks for a CPU. The guest
# samples every 100 ms and projects 5 samples ahead.
gsh "echo 100 >$GK/period_ms" || fail "period_ms"
responses=$(gfield responses)
gsh 'for i in 1 2 3; do (while :; do :; done) & echo $! >>/tmp/load.pids; done' || fail "load"
granted_third() { [ "$(range_list $H/hwc0/cpus | wc -l)" = 3 ]; }
end=$((SECONDS + 120))
until granted_third; do
	[ $SECONDS -lt $end ] || fail "no CPU granted to the guest's projection within 120 s:" \
		"host: requests $(cat $H/hwc0/requests), last request $(cat $HD/hwc0/last_request)," \
		"last response $(cat $HD/hwc0/last_response), CPUs $(cat $H/hwc0/cpus), free $(cat $H/free_cpus);" \
		"guest: $(gvalues projection); last samples: $(gsh tail -4 $GD/samples_recent | tr '\n' ';')"
	sleep 0.3
done
# The projection sleeps before the load goes, so that it cannot hand the CPU back.
gsh "echo 60000 >$GK/period_ms" || fail "period_ms"
loaded=$(gsh "grep ' proposed 1\$' $GD/samples_recent | tail -1")
gsh 'kill $(cat /tmp/load.pids)' || fail "stopping the load"
guest_in_sync
[ "$(gfield responses)" -gt "$responses" ] || fail "the guest got no response"
# Once granted, further proposals may be denied (quota): the note says what the guest holds
# and counts the answers, the last of which need not be the grant.
note "under load the guest asked and got a third CPU ($(range_list $H/hwc0/cpus | paste -sd' '));" \
	"$(($(gfield responses) - responses)) answer(s), the last: $(gvalues last_response);" \
	"the last sample that proposed: $loaded"

# The VMM agent gives the running guest a vCPU for it; the guest onlines it.
out=$("$AGENT" --qmp "$GDIR/qmp.sock" --device hwc0 --once 2>&1) || fail "agent: $out"
wait_until 120 "the hot-added vCPU in the guest" gsh test -e /sys/devices/system/cpu/cpu2/online
gsh 'echo 1 >/sys/devices/system/cpu/cpu2/online' || fail "the guest could not online cpu2"
[ "$(gsh nproc)" = 3 ] || fail "guest nproc $(gsh nproc)"
guest_agrees "after the vCPU hot-add"
[ "$(gfield allocation/cpus)" = 3 ] || fail "guest allocation $(gvalues allocation)"
note "the agent hot-added a vCPU; the guest runs $(gsh nproc) CPUs and holds $(gvalues allocation)"

# Memory: a request by hand, the grant, a DIMM hot-added, onlined.
kb_before=$(gsh awk "'/^MemTotal/ {print \$2}'" /proc/meminfo)
gsh "echo 'memory 128' >$G/request" || fail "memory request"
wait_until 60 "the memory grant" eval '[ "$(cat $H/hwc0/allocation/memory_mib)" = 128 ]'
guest_in_sync
guest_agrees "after the memory grant"
out=$("$AGENT" --qmp "$GDIR/qmp.sock" --device hwc0 --once 2>&1) || fail "agent: $out"
# The glob is the guest's: the whole command line runs there.
wait_until 120 "the hot-added memory in the guest" \
	gsh 'grep -q offline /sys/devices/system/memory/memory*/state 2>/dev/null'
gsh 'for s in $(grep -l offline /sys/devices/system/memory/memory*/state); do echo online >$s; done' ||
	fail "the guest could not online its new memory"
kb_after=$(gsh awk "'/^MemTotal/ {print \$2}'" /proc/meminfo)
[ $((kb_after - kb_before)) = $((128 * 1024)) ] ||
	fail "MemTotal grew from $kb_before to $kb_after kB, not by 128 MiB"
note "the agent hot-added 128 MiB; the guest's MemTotal grew from $kb_before to $kb_after kB"

# The driver, 20 times unloaded and reloaded, in one command in the guest:
# after each reload its copy must reach the host's generation within 30 s
# (read through the device's link, which comes back with the same name: the
# virtio device stays).
# (5 times under the debug kernel: the guest runs the normal kernel either
# way, and the host's side of a resync is the same each time.)
reloads=20
debug_kernel && reloads=5
bad=$(cat $H/hwc0/bad_messages)
gen=$(cat $H/generation)
reload="rmmod hwconvey_guest && insmod /hwconvey_guest.ko period_ms=60000 || { echo reload \$i failed; exit 1; }"
synced="n=0; until [ \"\$(cat $G/generation)\" -ge $gen ] 2>/dev/null; do n=\$((n + 1)); [ \$n -le $((300 * SLOW)) ] || { echo reload \$i: at \$(cat $G/generation), host at $gen; exit 1; }; sleep 0.1; done"
out=$("$GVM" run "$GDIR" --timeout $((400 * SLOW)) "for i in \$(seq $reloads); do $reload; $synced; done" 2>&1) ||
	fail "reloads in the guest: $out"
guest_in_sync
[ "$(cat $H/hwc0/bad_messages)" = "$bad" ] || fail "the host counted $(($(cat $H/hwc0/bad_messages) - bad)) bad messages"
[ "$(cat $H/hwc0/running)" = 1 ] || fail "the device is not running after the reloads"
guest_agrees "after $reloads reloads"
note "$reloads unloads and reloads in the guest: each resynced, no bad message"

D=/sys/bus/virtio/drivers/hwconvey
requests=$(cat $H/hwc0/requests)
gsh "(while :; do echo 'cpus 1' >$G/request; echo snapshot >$G/request; done) >/dev/null 2>&1 & echo \$! >/tmp/requests.pid" ||
	fail "request loop"
out=$(gsh "for i in \$(seq 10); do echo $gdev >$D/unbind && echo $gdev >$D/bind || { echo reset \$i failed; exit 1; }; done" 2>&1) ||
	fail "resets in the guest: $out"
gsh 'kill $(cat /tmp/requests.pid)' || fail "stopping the request loop"
guest_in_sync
guest_agrees "after 10 resets under traffic"
[ "$(cat $H/hwc0/requests)" -gt "$requests" ] || fail "no request reached the host during the resets"
[ "$(cat $H/hwc0/bad_messages)" = "$bad" ] || fail "the host counted $(($(cat $H/hwc0/bad_messages) - bad)) bad messages"
note "10 resets with requests in flight: $(($(cat $H/hwc0/requests) - requests)) requests, no bad message; both sides agree"

# The guest powers off: the device loses its owner, the allocation is freed.
guest_stop
# QEMU stops the device before it exits, reading the rings' state back: the
# device must give it (VHOST_VDPA_SUSPEND, then VHOST_GET_VRING_BASE).
grep -q "ring restore failed" "$GDIR/qemu.log" && fail "QEMU could not read the rings' state: $(cat "$GDIR/qemu.log")"
# The owner goes first, the allocation right after: wait for all of it.
released() {
	[ "$(cat $H/hwc0/owner_pid)" = none ] && [ "$(cat $H/hwc0/allocation/cpus) $(cat $H/hwc0/allocation/memory_mib)" = "0 0" ] &&
		[ "$(grep -c ' free$' $HD/cpus)" = $((free_before + 2)) ]
}
wait_until 30 "after poweroff: owner $(cat $H/hwc0/owner_pid), allocation $(values $H/hwc0/allocation), $(grep -c ' free$' $HD/cpus) CPUs free ($((free_before + 2)) expected)" released
note "the guest powered off: no owner, its CPUs and memory are free again"
vdpa dev del hwc0 || fail "vdpa dev del"
unload_all
