#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A guest that floods snapshot requests (each one a walk of the whole
# inventory under the host's lock) gets snapshots no faster than its rate
# limit: the others are answered "busy, rate-limited", or covered by a
# snapshot already on its way. Afterwards both sides still agree.
. "$(dirname "$0")/lib.sh"

load_host
load_guest
# The guest's own projection stays out of it (one sample a minute): the flood keeps the VM
# busy, and a CPU request of the projection's would be the last answer instead of a snapshot's.
echo 60000 >$GK/period_ms
echo 5 >$H/rate_limit
echo 5 >$H/rate_burst
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
bind hwc0 virtio_vdpa
G=$(guest_files) || fail "hwc0 on virtio_vdpa: no guest device link in $GK"
in_sync
applied0=$(cat $G/updates_applied)
limited0=$(cat $H/requests_rate_limited)
requests0=$(cat $H/hwc0/requests)
t0=$(date +%s)
# A write fails when the request queue is full: count those that were sent.
sent=0
for i in $(seq 2000); do echo snapshot >$G/request 2>/dev/null && sent=$((sent + 1)); done
[ "$sent" -ge 100 ] || fail "only $sent snapshot requests could be sent"
# Let the last requests be served.
for i in $(seq 50); do
	[ "$(cat $H/hwc0/requests)" -ge $((requests0 + sent)) ] && break
	sleep 0.1
done
secs=$(($(date +%s) - t0 + 1))
in_sync
requests=$(($(cat $H/hwc0/requests) - requests0))
snapshots=$(($(cat $G/updates_applied) - applied0))
limited=$(($(cat $H/requests_rate_limited) - limited0))
[ "$requests" -ge "$sent" ] || fail "the host took only $requests of $sent snapshot requests"
# A token bucket of 5 per second with bursts of 5: at most 5 + 5 s snapshots.
[ "$snapshots" -le $((5 + 5 * secs)) ] || fail "$snapshots snapshots in $secs s for a limit of 5/s"
[ "$snapshots" -ge 1 ] || fail "no snapshot at all"
[ "$limited" -ge 1 ] || fail "nothing was rate-limited"
snap $G/last_response
[ "${S[kind]}" = snapshot ] && [[ ${S[status]} =~ ^(busy|granted)$ ]] ||
	fail "last response: $(values $G/last_response)"
note "$sent snapshot requests in $secs s: $snapshots snapshots sent, $limited answered busy"
# Still one host: a hardware change after the flood reaches the guest.
victim=$(ls -d /sys/devices/system/cpu/cpu[1-9]* | head -1)
echo 0 >$victim/online || fail "offline $victim"
in_sync
echo 1 >$victim/online
in_sync
vdpa dev del hwc0
unload_all
