#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A memory block goes offline and online: the host's inventory and the
# guest's copy follow. A block allocated to the guest that goes offline is
# replaced from the free pool, as close to it as possible.
. "$(dirname "$0")/lib.sh"

M=/sys/devices/system/memory
online_blocks() { cat $H/inventory/online_blocks; }

load_host
load_guest
# The guest's own projection stays out of it (one sample a minute): only the scenario's
# requests are answered.
echo 60000 >$GK/period_ms
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
bind hwc0 virtio_vdpa
G=$(guest_files) || fail "hwc0 on virtio_vdpa: no guest device link in $GK"
in_sync
before=$(online_blocks)
events=$(cat $H/memory_events)
victim=$(offline_a_block) || fail "no memory block could go offline"
in_sync
[ "$(cat $H/memory_events)" -gt "$events" ] || fail "the host saw no memory event"
[ "$(online_blocks)" = $((before - 1)) ] || fail "host: $(online_blocks) blocks online, was $before"
[ "$(cat $G/inventory/online_blocks)" = $((before - 1)) ] || fail "the guest's copy: $(values $G/inventory), $((before - 1)) blocks online on the host"
echo online >$M/memory$victim/state || fail "online memory$victim"
in_sync
[ "$(online_blocks)" = "$before" ] || fail "host: $(online_blocks) blocks online after onlining, want $before"
[ "$(cat $G/inventory/online_blocks)" = "$before" ] || fail "the guest's copy: $(values $G/inventory) after onlining, $before blocks online on the host"
note "block $victim offline and online: host inventory and guest copy (generation $(cat $G/generation)) followed"

# The first block of a node holds the node's own structures and cannot go
# offline; ask for blocks until the guest holds one that can.
realloc=$(cat $H/reallocations)
moved=
for try in 1 2 3; do
	responses=$(cat $G/responses)
	echo "memory 128 node 1" >$G/request
	for i in $(seq 50); do [ "$(cat $G/responses)" -gt "$responses" ] && break; sleep 0.1; done
	in_sync
	[ "$(cat $G/responses)" -gt "$responses" ] && [ "$(cat $G/last_response/kind)" = memory ] &&
		[[ $(cat $G/last_response/status) =~ ^(granted|partial)$ ]] || fail "memory not granted: $(values $G/last_response)"
	last=$(cat $H/hwc0/blocks | tr ',' '\n' | tail -1 | sed 's/.*-//')
	held=$(cat $G/allocation/memory_mib)
	if echo offline >$M/memory$last/state 2>/dev/null; then moved=$last; break; fi
done
[ -n "$moved" ] || fail "none of the guest's blocks ($(cat $H/hwc0/blocks)) could go offline"
in_sync
[ "$(cat $H/reallocations)" = $((realloc + 1)) ] || fail "no replacement: reallocations $(cat $H/reallocations)"
cat $H/hwc0/blocks | tr ',' '\n' | grep -qx "$moved" && fail "block $moved still allocated after going offline"
[ "$(cat $G/allocation/memory_mib)" = "$held" ] || fail "guest copy: $(values $G/allocation), held $held MiB before"
note "the guest's block $moved went offline: replaced (blocks now $(cat $H/hwc0/blocks)); the guest still holds $held MiB"
echo online >$M/memory$moved/state || fail "online memory$moved"
in_sync
vdpa dev del hwc0
unload_all
