#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The KVM hook: the host module knows each VM and its vCPU threads, links a
# VM to the hwconvey device its VMM owns (same address space), and pins the
# vCPU threads to the guest's CPUs in-kernel. The VMMs are the patched QEMU
# under KVM, paused before boot (-S): KVM in the test VM creates VMs and
# vCPUs, and their threads exist, but cannot run a nested guest.
#   - each device shows its VM and vCPU threads; two VMs never cross-link;
#   - every vCPU thread runs on one CPU of its guest's allocation, its own;
#   - the VMM agent hot-adds a vCPU for an allocated CPU: the kernel pins the
#     new thread, and the agent leaves pinning to the kernel;
#   - a VM without a device is left alone;
#   - a VM killed: its device has no VM, its allocation is free again, and
#     the other VM keeps its link;
#   - an allocated CPU goes offline: the host replaces it from the CPUs the
#     killed VM freed, and only the vCPU that ran there moves.
. "$(dirname "$0")/lib.sh"

AGENT=$HWC_ROOT/target/debug/hwconvey-vmm-agent
[ -x "$HWC_QEMU" ] || fail "no patched QEMU in HWC_QEMU (make check builds it: tools/testing/build-qemu.sh)"
[ -x "$AGENT" ] || fail "the tools are not built (make check builds them with cargo test)"
[ -c /dev/kvm ] || fail "no /dev/kvm in the test VM"

load_host
echo 2 >$H/initial_cpus
echo 2 >$H/default_quota_cpus
echo 1 >$H/pin_vcpus
echo 1 >$H/release_on_exit
for d in hwc0 hwc1; do
	vdpa dev add name $d mgmtdev faux/hwconvey || fail "vdpa dev add $d"
	bind $d vhost_vdpa
done
vhost() { echo "/dev/$(ls "/sys/bus/vdpa/devices/$1" | grep -m1 '^vhost-vdpa-')"; }

tmp=$(mktemp -d)
pids=()
# gone PID: waits (bounded) until process PID, not a child of this shell, has
# exited (a zombie nobody reaps in the test VM counts as exited).
gone() {
	local i
	for i in $(seq 150); do
		[ -d "/proc/$1" ] || return 0
		[ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ] || return 0
		sleep 0.2
	done
	return 1
}
stop_all() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; gone "$p"; done; rm -rf "$tmp"; }
trap stop_all EXIT
# vmm NAME VCPUS [DEVICE]: a paused QEMU under KVM; prints its pid.
vmm() {
	local dev=()
	[ -z "${3:-}" ] || dev=(-device "vhost-vdpa-device-pci,vhostdev=$(vhost "$3"),disable-legacy=on")
	"$HWC_QEMU" -name "$1,debug-threads=on" -machine pc,memory-backend=ram -accel kvm \
		-smp "$2,maxcpus=4" -m 128M,slots=2,maxmem=1G \
		-object memory-backend-memfd,id=ram,size=128M,share=on \
		-nodefaults -display none -S -qmp "unix:$tmp/$1.sock,server=on,wait=off" "${dev[@]}" \
		>"$tmp/$1.log" 2>&1 &
	echo $!
}
# vcpu_pins PID: "<vCPU index>:<CPUs its thread may run on>", by index.
vcpu_pins() {
	for t in /proc/$1/task/*; do
		[[ $(cat "$t/comm") =~ ^CPU\ ([0-9]+)/KVM$ ]] || continue
		echo "${BASH_REMATCH[1]}:$(awk '/^Cpus_allowed_list/ {print $2}' "$t/status")"
	done | sort -n
}
allocated() {
	tr ',' '\n' <$H/$1/cpus | awk -F- 'NF { for (c = $1; c <= ($2 == "" ? $1 : $2); c++) print c }'
}
wait_for() { # wait_for SECONDS WHAT CMD...
	local end=$((SECONDS + $1)) what=$2
	shift 2
	until "$@"; do [ $SECONDS -lt $end ] || fail "$what"; sleep 0.2; done
}
# pins_ok DEV PID: each vCPU on one allocated CPU of its own; with as many
# vCPUs as CPUs, together the allocation.
pins_ok() {
	local pins cpus n
	pins=$(vcpu_pins "$2" | cut -d: -f2)
	cpus=$(allocated "$1")
	n=$(($(wc -l <<<"$pins") < $(wc -l <<<"$cpus") ? $(wc -l <<<"$pins") : $(wc -l <<<"$cpus")))
	[ "$(sort -nu <<<"$pins" | grep -cxF -f <(echo "$cpus"))" = "$n" ] &&
		[ "$(sort -u <<<"$pins" | wc -l)" = "$(wc -l <<<"$pins")" ]
}
# pinned_to_allocation DEV PID WHEN: waits (bounded) until pins_ok holds.
pinned_to_allocation() {
	wait_for 10 "$3: vCPUs of $1's VM pinned $(vcpu_pins "$2" | paste -sd' '), allocation $(allocated "$1" | paste -sd,)" \
		pins_ok "$1" "$2"
}

all=$(awk '/^Cpus_allowed_list/ {print $2}' /proc/self/status)
threads() { vcpu_pins "$1" | wc -l; }
a=$(vmm vma 2 hwc0); pids+=("$a")
b=$(vmm vmb 1 hwc1); pids+=("$b")
c=$(vmm vmc 1); pids+=("$c")
# has_vm DEV N: DEV names a VM (its number) with N vCPUs.
has_vm() { [[ $(cat $H/$1/vm) =~ ^[0-9]+$ ]] && [ "$(cat $H/$1/vm_vcpus)" = "$2" ]; }
for d in hwc0:2 hwc1:1; do
	wait_for 60 "${d%:*} shows no VM with ${d#*:} vCPUs: vm $(cat $H/${d%:*}/vm), vm_vcpus $(cat $H/${d%:*}/vm_vcpus); QEMU: $(cat $tmp/*.log)" \
		has_vm "${d%:*}" "${d#*:}"
done
[ "$(cat $H/hwc0/owner_pid)" = "$a" ] && [ "$(cat $H/hwc1/owner_pid)" = "$b" ] ||
	fail "owners: hwc0 $(cat $H/hwc0/owner_pid) (QEMU $a), hwc1 $(cat $H/hwc1/owner_pid) (QEMU $b)"
[ "$(cat $H/hwc0/vm)" != "$(cat $H/hwc1/vm)" ] || fail "hwc0 and hwc1 name the same VM: $(cat $H/hwc0/vm)"
# The vCPU threads the devices list are the VMs' own, one per vCPU.
for d in hwc0 hwc1; do
	[ "$(grep -c '^vcpu ' $HD/$d/vcpus)" = "$(cat $H/$d/vm_vcpus)" ] ||
		fail "$d lists $(grep -c '^vcpu ' $HD/$d/vcpus) vCPU threads, its VM has $(cat $H/$d/vm_vcpus): $(cat $HD/$d/vcpus)"
done
for t in $(awk '{print $4}' $HD/hwc0/vcpus); do [ -d /proc/$a/task/$t ] || fail "hwc0 lists thread $t, not QEMU $a's"; done
for t in $(awk '{print $4}' $HD/hwc1/vcpus); do [ -d /proc/$b/task/$t ] || fail "hwc1 lists thread $t, not QEMU $b's"; done
pinned_to_allocation hwc0 "$a" "at start"
pinned_to_allocation hwc1 "$b" "at start"
wait_for 60 "VM c has no vCPU thread" eval "[ \"\$(threads $c)\" = 1 ]"
[ "$(vcpu_pins "$c" | cut -d: -f2 | sort -u)" = "$all" ] || fail "the VM without a device was pinned: $(vcpu_pins "$c" | paste -sd' ')"
note "hwc0: VM $(cat $H/hwc0/vm) with $(cat $H/hwc0/vm_vcpus) vCPUs, pins $(vcpu_pins $a | paste -sd' ');" \
	"hwc1: VM $(cat $H/hwc1/vm) with $(cat $H/hwc1/vm_vcpus) vCPUs, pins $(vcpu_pins $b | paste -sd' ')"

# VM b has one vCPU for two allocated CPUs: the agent hot-adds one, which the
# kernel pins; the agent itself pins nothing.
out=$("$AGENT" --qmp "$tmp/vmb.sock" --device hwc1 --once 2>&1) || fail "agent: $out"
grep -q "add vCPU" <<<"$out" || fail "the agent added no vCPU: $out"
grep -q "^hwc1: pin vCPU" <<<"$out" && fail "the agent pinned where the kernel does: $out"
wait_for 10 "the hot-added vCPU of VM b is not pinned: $(vcpu_pins $b | paste -sd' ')" \
	eval "[ \"\$(vcpu_pins $b | wc -l)\" = 2 ] && [ \"\$(vcpu_pins $b | cut -d: -f2 | sort -n | paste -sd,)\" = \"\$(allocated hwc1 | paste -sd,)\" ]"
has_vm hwc1 2 || fail "hwc1: vm $(cat $H/hwc1/vm), vm_vcpus $(cat $H/hwc1/vm_vcpus)"
note "the agent hot-added a vCPU to VM b; the kernel pinned it: $(vcpu_pins $b | paste -sd' ')"

# vm_killed PID DEV [OTHER]: QEMU PID is killed: DEV has no VM and no owner,
# its CPUs are free; OTHER keeps its VM.
vm_killed() {
	local held free
	held=$(allocated "$2" | wc -l)
	free=$(grep -c ' free$' $HD/cpus)
	kill -9 "$1"
	gone "$1" || fail "QEMU $1 did not exit"
	# The VM and the owner go only once the host acted on them: wait for both.
	wait_for 30 "$2 still shows a VM or an owner: $(cat $H/$2/vm), $(cat $H/$2/owner_pid)" \
		eval "[ \"\$(cat $H/$2/vm)\" = none ] && [ \"\$(cat $H/$2/owner_pid)\" = none ]"
	[ "$(cat $H/$2/owner_pid)" = none ] || fail "$2 owner $(cat $H/$2/owner_pid) after its VMM was killed"
	[ "$(cat $H/$2/vm_vcpus)" = 0 ] || fail "$2 has no VM but counts $(cat $H/$2/vm_vcpus) vCPUs"
	[ "$(cat $H/$2/allocation/cpus) $(cat $H/$2/allocation/memory_mib)" = "0 0" ] || fail "$2 still holds $(values $H/$2/allocation)"
	[ "$(grep -c ' free$' $HD/cpus)" = $((free + held)) ] ||
		fail "free CPUs $(grep -c ' free$' $HD/cpus), $((free + held)) expected"
	[ -z "${3:-}" ] || [[ $(cat $H/$3/vm) =~ ^[0-9]+$ ]] || fail "$3 lost its VM with $2's: $(cat $H/$3/vm)"
	note "QEMU $1 killed: $2 has no VM, its $held CPUs are free${3:+; $3 keeps VM $(cat $H/$3/vm)}"
}
freed=$(allocated hwc1)
vm_killed "$b" hwc1 hwc0

# An allocated CPU of VM a's goes offline: the host replaces it from the free
# pool, and only the vCPU that ran there moves.
victim=$(allocated hwc0 | grep -vx 0 | head -1)
[ -n "$victim" ] || fail "hwc0 holds no CPU but CPU 0: $(cat $H/hwc0/cpus)"
before=$(vcpu_pins "$a")
echo 0 >/sys/devices/system/cpu/cpu$victim/online || fail "offline cpu$victim"
[ "$(allocated hwc0 | wc -l)" = "$(echo "$before" | wc -l)" ] || fail "no replacement for cpu$victim: $(cat $H/hwc0/cpus)"
allocated hwc0 | grep -qxF -f <(echo "$freed") || fail "hwc0's replacement ($(cat $H/hwc0/cpus)) is none of the freed CPUs ($(echo $freed))"
pinned_to_allocation hwc0 "$a" "after cpu$victim went offline"
moved=$(diff <(echo "$before") <(vcpu_pins "$a") | grep -c '^<')
[ "$moved" = 1 ] || fail "pins went from $(echo "$before" | paste -sd' ') to $(vcpu_pins "$a" | paste -sd' ')"
note "cpu$victim offline: hwc0 now $(cat $H/hwc0/cpus), pins $(vcpu_pins $a | paste -sd' ')"
echo 1 >/sys/devices/system/cpu/cpu$victim/online || fail "online cpu$victim"

vm_killed "$a" hwc0
[ "$(cat $H/pin_failures)" = 0 ] || fail "$(cat $H/pin_failures) pins failed"

stop_all
trap - EXIT
for d in hwc0 hwc1; do vdpa dev del $d || fail "vdpa dev del $d"; done
unload_all
