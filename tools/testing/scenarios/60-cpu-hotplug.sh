#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# An allocated CPU goes offline: the host replaces it NUMA-locally from the
# free pool, and the guest's stored copy and diff show it. Online again:
# the host and the guest's copy both count it. With no free CPU left on any
# node, the guest shrinks instead.
. "$(dirname "$0")/lib.sh"

node_of() { basename "$(ls -d /sys/devices/system/cpu/cpu$1/node* 2>/dev/null)" | tr -dc 0-9; }
cpu_online() { echo "$2" >/sys/devices/system/cpu/cpu$1/online || fail "cpu$1 online=$2"; }

load_host
load_guest
# The guest's own projection stays out of it (one sample a minute): only this
# test moves its CPUs. (On a busy VM, the debug kernel's, it asked for the
# CPUs the test needs free.)
echo 60000 >$GK/period_ms
echo 2 >$H/initial_cpus
echo 4 >$H/default_quota_cpus
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
bind hwc0 virtio_vdpa
G=$(guest_files) || fail "hwc0 on virtio_vdpa: no guest device link in $GK"
in_sync
echo "cpus 1 node 1" >$G/request
for i in $(seq 50); do [ "$(cat $G/responses)" -ge 1 ] && break; sleep 0.1; done
in_sync
held=$(cat $H/hwc0/cpus)
note "guest 1 holds CPUs $held ($(values $G/allocation))"
victim=$(grep -E " node 1 guest [0-9]+$" $HD/cpus | head -1 | awk '{print $2}')
[ -n "$victim" ] || fail "the guest got no CPU on node 1: $(cat $HD/cpus)"
free_same_node=$(grep -E " node 1 free$" $HD/cpus | head -1 | awk '{print $2}')
[ -n "$free_same_node" ] || fail "no free CPU left on node 1 to replace with"
realloc=$(cat $H/reallocations)
cpu_online "$victim" 0
in_sync
[ "$(cat $H/reallocations)" = $((realloc + 1)) ] || fail "reallocations: $(cat $H/reallocations)"
grep -qE "^cpu $victim " $HD/cpus && fail "offline cpu $victim still listed online"
grep -qE "^cpu $free_same_node node 1 guest " $HD/cpus || fail "cpu $free_same_node (node 1) was not given to the guest: $(cat $HD/cpus)"
[ "$(cat $G/allocation/cpus)" = "$(echo "$held" | tr ',' '\n' | awk -F- '{n += ($2 == "" ? 1 : $2 - $1 + 1)} END {print n}')" ] ||
	fail "the guest's copy has $(values $G/allocation) after the replacement"
[ "$(guest_online_cpus)" = 3 ] || fail "the guest's copy: $(values $G/inventory), want 3 online CPUs"
# The last update (the copy's generation) lost one of the guest's CPUs and gained another.
snap $G/last_diff
[ "${S[generation]}" = "$(cat $G/generation)" ] && [ "${S[my_cpus_gained]}" = 1 ] && [ "${S[my_cpus_lost]}" = 1 ] ||
	fail "guest last_diff: $(values $G/last_diff); generation $(cat $G/generation)"
grep -qx "cpu $free_same_node node 1 mine" $GD/cpus || fail "the guest's copy does not show cpu $free_same_node as its own: $(cat $GD/cpus)"
grep -q "^cpu $victim " $GD/cpus && fail "the guest's copy still lists cpu $victim online"
note "cpu $victim offline: replaced by cpu $free_same_node on the same node; guest diff: 1 gained, 1 lost"
cpu_online "$victim" 1
in_sync
grep -qE "^cpu $victim node 1 free$" $HD/cpus || fail "cpu $victim is not back as free: $(cat $HD/cpus)"
[ "$(guest_online_cpus)" = 4 ] || fail "the guest's copy: $(values $G/inventory), want 4 online CPUs"
note "cpu $victim online again: free, and the guest's copy counts 4 online CPUs"

# No free CPU anywhere: the guest shrinks.
echo 0 >$H/default_quota_cpus
others=$(grep -E " free$" $HD/cpus | awk '{print $2}' | grep -v '^0$')
mine=$(grep -E " guest [0-9]+$" $HD/cpus | awk '{print $2}' | grep -v '^0$' | head -1)
[ -n "$mine" ] || fail "the guest holds no CPU that can go offline"
for c in $others; do cpu_online "$c" 0; done
shrinks=$(cat $H/shrinks)
before=$(cat $G/allocation/cpus)
cpu_online "$mine" 0
in_sync
[ "$(cat $H/shrinks)" = $((shrinks + 1)) ] || fail "shrinks: $(cat $H/shrinks)"
[ "$(cat $G/allocation/cpus)" = $((before - 1)) ] || fail "guest allocation $(values $G/allocation), was $before CPUs"
note "no free CPU: cpu $mine offline shrinks the guest from $before to $((before - 1)) CPUs"
[ "$(cat $H/hwc0/owed/cpus) $(cat $H/hwc0/owed/blocks)" = "1 0" ] || fail "owed after the shrink: $(values $H/hwc0/owed)"
# Capacity returns: the guest gets back what it lost, before any other use of the CPU.
restores=$(cat $H/restores)
cpu_online "$mine" 1
in_sync
[ "$(cat $H/restores)" = $((restores + 1)) ] || fail "restores: $(cat $H/restores)"
[ "$(cat $H/hwc0/owed/cpus) $(cat $H/hwc0/owed/blocks)" = "0 0" ] || fail "owed after the restore: $(values $H/hwc0/owed)"
[ "$(cat $G/allocation/cpus)" = "$before" ] || fail "guest allocation $(values $G/allocation) after the restore, held $before CPUs"
grep -qE "^cpu $mine node [0-9]+ guest " $HD/cpus || fail "cpu $mine did not go back to the guest: $(cat $HD/cpus)"
note "cpu $mine online again: restored to the guest, back to $before CPUs"
for c in $others; do cpu_online "$c" 1; done
in_sync
vdpa dev del hwc0
unload_all
