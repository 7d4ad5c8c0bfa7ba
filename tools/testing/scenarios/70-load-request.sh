#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A real CPU load in the VM: the guest's in-kernel sampling sees it, the
# projection asks for CPUs within a few sample periods, the host grants
# within the quota, and the second update shows the new allocation on both
# sides. Then: a request beyond the quota is denied with its reason.
. "$(dirname "$0")/lib.sh"

G=/sys/kernel/hwconvey/guest
H=/sys/kernel/hwconvey/host
in_sync() {
	for i in $(seq 50); do
		[ "$(cat $G/generation)" = "$(cat $H/generation)" ] && return 0
		sleep 0.1
	done
	fail "guest at generation $(cat $G/generation), host at $(cat $H/generation)"
}
field() { tr ' ' '\n' <"$1" | grep -A1 -x "$2" | tail -1; }

load_host
load_guest
# The VM itself keeps about one CPU busy (emulation, the test's own
# processes): start the guest with 2 CPUs so that it is below its target
# utilisation until the load starts.
echo 2 >$H/initial_cpus
echo 4 >$H/default_quota_cpus
echo 200 >$G/period_ms
vdpa dev add name hwc0 mgmtdev hwconvey || fail "vdpa dev add"
bind hwc0 virtio_vdpa
in_sync
[ "$(field $G/allocation cpus)" = 2 ] || fail "initial allocation: $(cat $G/allocation)"
sleep 2
[ "$(cat $H/hwc0/requests)" = 0 ] || fail "the idle guest asked for something: $(cat $H/hwc0/last_request)"
s0=$(field $G/projection samples)
note "idle: $(cat $G/projection)"

pids=()
for i in 1 2 3; do (while :; do :; done) & pids+=($!); done
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
last=
for i in $(seq 300); do
	[ "$(cat $H/hwc0/requests)" -ge 1 ] && break
	p=$(cat $G/projection)
	[ "$p" != "$last" ] && [ -n "${TRACE:-}" ] && echo "  trace: $p"
	last=$p
	sleep 0.05
done
[ "$(cat $H/hwc0/requests)" -ge 1 ] || fail "no request under load: $(cat $G/projection)"
s1=$(field $G/projection samples)
note "loaded: $(cat $G/projection)"
grep -qE '^id [0-9]+ kind cpus amount [0-9]+ node [0-9]+ motive 1 ' $H/hwc0/last_request ||
	fail "the first request is not a projected CPU request: $(cat $H/hwc0/last_request)"
# In-kernel record of the samples: the step is the first sample after the
# load started whose busy time is a CPU above the idle level; the request
# must come within 3 sample periods of it (the design's target).
idle_busy=$(awk -v s0="$s0" '$1 <= s0 {b = $3} END {print b + 0}' $G/samples_recent)
step=$(awk -v s0="$s0" -v ib="$idle_busy" '$1 > s0 && $3 >= ib + 1000 {print $1; exit}' $G/samples_recent)
asked=$(awk -v s0="$s0" '$1 > s0 && $7 == 1 {print $1; exit}' $G/samples_recent)
[ -n "$step" ] && [ -n "$asked" ] || fail "no step or no proposal in: $(cat $G/samples_recent)"
[ $((asked - step)) -le 2 ] || fail "the request came $((asked - step + 1)) sample periods into the step: $(cat $G/samples_recent)"
note "step seen at sample $step, request at sample $asked: $((asked - step + 1)) sample period(s) (target <= 3)"
note "the request: $(cat $H/hwc0/last_request)"
for i in $(seq 50); do [ "$(cat $G/responses)" -ge 1 ] && break; sleep 0.1; done
grep -qE 'status (granted|partial)' $G/last_response || fail "not granted: $(cat $G/last_response)"
in_sync
host_cpus=$(field $H/hwc0/allocation cpus)
[ "$host_cpus" -gt 2 ] && [ "$host_cpus" -le 4 ] || fail "host allocation $host_cpus CPUs (quota 4)"
[ "$(field $G/allocation cpus)" = "$host_cpus" ] || fail "guest copy $(cat $G/allocation), host $host_cpus CPUs"
note "granted: $(cat $G/last_response); both sides: $host_cpus CPUs ($(cat $H/hwc0/cpus))"
kill "${pids[@]}"; wait 2>/dev/null
trap - EXIT

echo "$host_cpus" >$H/hwc0/quota_cpus
denied=$(cat $H/requests_denied)
echo "cpus 1" >$G/request
for i in $(seq 50); do [ "$(cat $H/requests_denied)" -gt "$denied" ] && break; sleep 0.1; done
grep -qE 'status denied reason quota' $G/last_response || fail "beyond quota: $(cat $G/last_response)"
note "beyond the quota of $host_cpus: $(cat $G/last_response)"
vdpa dev del hwc0
unload_all
