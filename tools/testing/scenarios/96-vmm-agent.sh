#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The whole loop with a VMM in it. The guest driver (in loopback) asks for a
# CPU and memory; the host grants them; hwconvey-vmm-agent gives the VM that
# stands for the guest (a real QEMU, paused before boot: its vCPU threads and
# QMP are real) a vCPU per allocated host CPU, pins each vCPU thread to its
# CPU, and adds RAM bound to the node of the allocated memory. When an
# allocated CPU goes offline and the host replaces it, the agent re-pins.
. "$(dirname "$0")/lib.sh"

AGENT=$HWC_ROOT/target/debug/hwconvey-vmm-agent
CTL=$HWC_ROOT/target/debug/hwconveyctl
[ -x "$AGENT" ] && [ -x "$CTL" ] || fail "the tools are not built (make check builds them with cargo test)"

load_host
load_guest
# The guest's own projection stays out of it (one sample a minute): the
# requests below are the only ones.
echo 60000 >$GK/period_ms
echo 2 >$H/initial_cpus
echo 3 >$H/default_quota_cpus
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
bind hwc0 virtio_vdpa
G=$(guest_files) || fail "hwc0 on virtio_vdpa: no guest device link in $GK"
wait_copy

d=$(mktemp -d)
qemu-system-x86_64 -M pc -accel tcg,thread=multi -cpu qemu64 -smp 1,maxcpus=4 \
	-m 128M,slots=2,maxmem=1G -nodefaults -display none -S -name vm,debug-threads=on \
	-qmp "unix:$d/qmp.sock,server=on,wait=off" >"$d/qemu.log" 2>&1 &
qpid=$!
stop_qemu() { kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null; }
trap stop_qemu EXIT
for i in $(seq 300); do [ -S "$d/qmp.sock" ] && break; kill -0 $qpid 2>/dev/null || break; sleep 0.1; done
[ -S "$d/qmp.sock" ] || fail "QEMU did not start: $(cat "$d/qemu.log")"
agent() { "$AGENT" --qmp "$d/qmp.sock" --device hwc0 --once 2>&1; }

# vcpu_pins: "<vCPU index>:<CPUs its thread may run on>", by index.
vcpu_pins() {
	for t in /proc/$qpid/task/*; do
		[[ $(cat "$t/comm") =~ ^CPU\ ([0-9]+)/TCG$ ]] || continue
		echo "${BASH_REMATCH[1]}:$(awk '/^Cpus_allowed_list/ {print $2}' "$t/status")"
	done | sort -n
}
# allocated: the guest's CPUs, one per line.
allocated() {
	tr ',' '\n' <$H/hwc0/cpus | awk -F- '{ for (c = $1; c <= ($2 == "" ? $1 : $2); c++) print c }'
}
# pins_follow WHEN: one vCPU per allocated CPU, each pinned to its own.
pins_follow() {
	[ "$(vcpu_pins | cut -d: -f2 | sort -n | paste -sd,)" = "$(allocated | paste -sd,)" ] ||
		fail "$1: vCPU pins $(vcpu_pins | paste -sd' ') but the allocation is $(cat $H/hwc0/cpus)"
}

out=$(agent) || fail "agent: $out"
pins_follow "at start"
note "start: CPUs $(cat $H/hwc0/cpus); agent: $(echo "$out" | sed 's/^hwc0: //' | paste -sd';')"

answer=$("$CTL" request cpus 1) || fail "request cpus 1: $answer"
[ "$(allocated | wc -l)" = 3 ] || fail "the grant left the guest with CPUs $(cat $H/hwc0/cpus)"
out=$(agent) || fail "agent: $out"
grep -q "add vCPU hwc-vcpu-1" <<<"$out" || fail "the agent did not add a second vCPU: $out"
pins_follow "after the grant"
note "granted one CPU: $(cat $H/hwc0/cpus); the VM has 3 vCPUs, pinned $(vcpu_pins | paste -sd' ')"

answer=$("$CTL" request memory 128) || fail "request memory 128: $answer"
block=$(tr ',-' '\n\n' <$H/hwc0/blocks | head -1)
node=$(ls -d /sys/devices/system/memory/memory$block/node* | sed 's/.*node//')
out=$(agent) || fail "agent: $out"
grep -q "add 128 MiB as hwc-mem-0, bound to host nodes \[$node\]" <<<"$out" ||
	fail "the agent did not add 128 MiB on node $node (block $block): $out"
note "granted 128 MiB (block $block, node $node); agent: $(echo "$out" | sed 's/^hwc0: //')"

victim=$(allocated | sed -n 2p)
before=$(vcpu_pins)
echo 0 >/sys/devices/system/cpu/cpu$victim/online || fail "offline cpu$victim"
# The host published the offline before the write returned: the guest's copy
# must reach that generation (not an earlier update still on its way).
in_sync
out=$(agent) || fail "agent after the hotplug: $out"
pins_follow "after cpu$victim went offline"
# Stable pins: only the vCPU that was on cpu$victim moved.
moved=$(diff <(echo "$before") <(vcpu_pins) | grep -c '^<')
[ "$moved" = 1 ] && grep -q ":$victim\$" <<<"$(diff <(echo "$before") <(vcpu_pins) | grep '^<')" ||
	fail "pins went from $(echo "$before" | paste -sd' ') to $(vcpu_pins | paste -sd' ')"
note "cpu$victim offline: the host moved the guest to $(cat $H/hwc0/cpus); the agent re-pinned: $(vcpu_pins | paste -sd' ')"
echo 1 >/sys/devices/system/cpu/cpu$victim/online

out=$(agent) || fail "a settled VM: $out"
[ -z "$out" ] || fail "the agent changed a settled VM: $out"
stop_qemu
trap - EXIT
vdpa dev del hwc0 || fail "vdpa dev del"
unload_all
