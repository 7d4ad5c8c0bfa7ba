#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A real CPU load in the VM: the guest's in-kernel sampling sees it, the
# projection asks for CPUs within a few sample periods, the host grants
# within the quota, and the second update shows the new allocation on both
# sides. Then: a request beyond the quota is denied with its reason.
. "$(dirname "$0")/lib.sh"

# On the debug kernel the idle VM alone keeps more than the guest's 2 CPUs
# busy: there is no idle phase to start from.
debug_kernel && skip "needs an idle phase; the debug kernel keeps the VM busy"
load_host
load_guest
# The VM itself keeps about one CPU busy (emulation, the test's own
# processes): start the guest with 2 CPUs so that it is below its target
# utilisation until the load starts.
echo 2 >$H/initial_cpus
echo 4 >$H/default_quota_cpus
echo 200 >$GK/period_ms
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
bind hwc0 virtio_vdpa
G=$(guest_files) || fail "hwc0 on virtio_vdpa: no guest device link in $GK"
in_sync
[ "$(cat $G/allocation/cpus)" = 2 ] || fail "initial allocation: $(values $G/allocation)"
sleep 2
# From here until the load runs, only the shell's own reads (builtins: no process). On a busy
# host the few processes a check starts cost the VM enough CPU time for the sampling to see a
# load, and the projection then rightly asks before the load it is meant to answer.
read -r requests <$H/hwc0/requests
# The projection as of one sample (snap: builtins only), and the record of the recent samples
# (in debugfs: this device's, the only one bound).
snap $G/projection
idle=()
for f in samples busy_mcpu steal_mcpu nr_running mem_used_mib cpu_pressure held_cpus level_mcpu trend_mcpu projected_mcpu proposals; do
	idle+=("$f ${S[$f]}")
done
mapfile -t idle_record <$GD/samples_recent
s0=${S[samples]}
# The first sample whose period can hold the load: read before the load starts, since on a
# busy machine reading it afterwards can take several periods, all of them loaded.
read -r now <$G/projection/samples
s_load=$((now + 1))
# The load runs at nice 10: it is busy time all the same (the sampling counts
# nice time), and the scenario's own reads of the record are not starved.
pids=()
for i in 1 2 3; do nice -n 10 bash -c 'while :; do :; done' & pids+=($!); done
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
[ "$requests" = 0 ] || fail "the idle guest asked for something: $(cat $HD/hwc0/last_request)"
note "idle: ${idle[*]}"
# The idle level: the median of the last idle samples, not their maximum, so that one noisy
# sample of a busy machine does not hide the step. (The record keeps the last 32 samples
# only: a busy machine can take longer than that until the request, so it was read at once.)
idle_busy=$(printf '%s\n' "${idle_record[@]}" | awk -v s0="$s0" '$1 <= s0 && $1 > s0 - 6 {print $3}' |
	sort -n | awk '{v[NR] = $1} END {print NR ? v[int((NR + 1) / 2)] : ""}')
[ -n "$idle_busy" ] || fail "no idle samples in: ${idle_record[*]}"
last=
for i in $(seq 300); do
	[ "$(cat $H/hwc0/requests)" -ge 1 ] && break
	p=$(values $G/projection)
	[ "$p" != "$last" ] && [ -n "${TRACE:-}" ] && echo "  trace: $p"
	last=$p
	sleep 0.05
done
[ "$(cat $H/hwc0/requests)" -ge 1 ] || fail "no request under load: $(values $G/projection)"
# The samples up to the request, read once: the record moves on meanwhile.
rec=$(cat $GD/samples_recent)
note "loaded: $(values $G/projection)"
grep -qE '^id [0-9]+ kind cpus amount [0-9]+ node (-|[0-9]+) motive 1 projection demand [0-9]+ held [0-9]+$' $HD/hwc0/last_request ||
	fail "the first request is not a projected CPU request: $(cat $HD/hwc0/last_request)"
# In-kernel record of the samples: the step is where the load became
# sustained, i.e. the first of the samples before the request that all show
# at least a CPU more than the idle samples did. How many sample periods the
# projection took is reported, not asserted: it is a speed figure, and how
# much CPU an emulated VM gets, and so what its samples show, depends on what
# else runs on the machine (the native projection tests assert the design's
# 3 periods on clean steps). What is asserted: the proposal came from a
# sample taken with the load running, and the load showed in the samples.
asked=$(awk -v s0="$s0" '$1 > s0 && $7 == 1 {print $1; exit}' <<<"$rec")
[ -n "$asked" ] || fail "no proposal after the idle phase (sample $s0) in: $rec"
[ "$asked" -ge "$s_load" ] || fail "the proposal (sample $asked) came before the load (sample $s_load): $rec"
loaded_busy=$(awk -v l="$s_load" -v a="$asked" '$1 >= l && $1 <= a && $3 > m {m = $3} END {print m + 0}' <<<"$rec")
[ "$loaded_busy" -ge $((idle_busy + 1000)) ] ||
	fail "no sample up to the proposal shows the load (max $loaded_busy mCPU, idle $idle_busy): $rec"
step=$(awk -v a="$asked" -v t="$((idle_busy + 1000))" '$1 <= a {n[NR] = $1; b[NR] = $3; last = NR}
	END {s = ""; for (i = last; i >= 1 && b[i] >= t; i--) s = n[i]; print s}' <<<"$rec")
if [ -n "$step" ]; then
	note "step seen at sample $step, request at sample $asked: $((asked - step + 1)) sample period(s) (design target <= 3)"
else
	note "request at sample $asked; no sustained step of a CPU above the idle level ($idle_busy mCPU) in: $(tr '\n' ';' <<<"$rec")"
fi
note "the request: $(cat $HD/hwc0/last_request)"
# The shell may be starved by the load: the guest can have asked again (and
# been denied at its quota) by the time we look, so count grants.
for i in $(seq 50); do [ "$(cat $G/responses)" -ge 1 ] && break; sleep 0.1; done
[ $(( $(cat $H/requests_granted) + $(cat $H/requests_partial) )) -ge 1 ] ||
	fail "nothing granted: $(values $G/last_response)"
in_sync
host_cpus=$(cat $H/hwc0/allocation/cpus)
[ "$host_cpus" -gt 2 ] && [ "$host_cpus" -le 4 ] || fail "host allocation $host_cpus CPUs (quota 4)"
[ "$(cat $G/allocation/cpus)" = "$host_cpus" ] || fail "guest copy $(values $G/allocation), host $host_cpus CPUs"
note "granted $(cat $H/requests_granted) in full, $(cat $H/requests_partial) in part; both sides: $host_cpus CPUs ($(cat $H/hwc0/cpus))"
kill "${pids[@]}"; wait 2>/dev/null
trap - EXIT

echo "$host_cpus" >$H/hwc0/quota_cpus
denied=$(cat $H/requests_denied)
echo "cpus 1" >$G/request
for i in $(seq 50); do [ "$(cat $H/requests_denied)" -gt "$denied" ] && break; sleep 0.1; done
# The answer, as of one answer (the guest's projection may still ask: read its files together).
snap $G/last_response
[ "${S[status]} ${S[reason]}" = "denied quota" ] || fail "beyond quota: $(values $G/last_response)"
note "beyond the quota of $host_cpus: $(values $G/last_response)"
vdpa dev del hwc0
unload_all
