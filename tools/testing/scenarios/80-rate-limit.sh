#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A request flood is rate-limited (answered "busy, rate-limited") and the
# host stays responsive: during the flood it still publishes a hardware
# change to the guest at once.
. "$(dirname "$0")/lib.sh"

load_host
load_guest
# The guest's own projection stays out of it (one sample a minute): only the scenario's
# requests are answered.
echo 60000 >$GK/period_ms
echo 5 >$H/rate_limit
echo 5 >$H/rate_burst
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
bind hwc0 virtio_vdpa
G=$(guest_files) || fail "hwc0 on virtio_vdpa: no guest device link in $GK"
for i in $(seq 50); do [ "$(cat $G/generation)" = "$(cat $H/generation)" ] && break; sleep 0.1; done
(for i in $(seq 3000); do echo "cpus 1" >$G/request 2>/dev/null; done) &
flood=$!
sleep 1
victim=$(ls -d /sys/devices/system/cpu/cpu[1-9]* | head -1)
t0=$(date +%s%N)
echo 0 >$victim/online || fail "offline $victim"
gen=$(cat $H/generation)
for i in $(seq 100); do [ "$(cat $G/generation)" -ge "$gen" ] && break; sleep 0.02; done
t1=$(date +%s%N)
[ "$(cat $G/generation)" -ge "$gen" ] || fail "during the flood the guest did not get generation $gen"
echo 1 >$victim/online
wait $flood
limited=$(cat $H/requests_rate_limited)
granted=$(( $(cat $H/requests_granted) + $(cat $H/requests_partial) + $(cat $H/requests_denied) ))
[ "$limited" -gt 0 ] || fail "nothing was rate-limited"
[ "$granted" -le $((5 + 5 * 60)) ] || fail "$granted requests were admitted past a limit of 5/s"
# The last answer, as of one answer (the last of the flood's may still arrive).
snap $G/last_response
[ "${S[id]}" -gt 0 ] && [[ ${S[status]} =~ ^(busy|granted|partial|denied)$ ]] ||
	fail "last response: $(values $G/last_response)"
note "flood of 3000: $limited rate-limited, $granted admitted; a CPU going offline reached the guest in $(( (t1 - t0) / 1000000 )) ms"
vdpa dev del hwc0
unload_all
