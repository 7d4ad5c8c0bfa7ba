# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the scenario tests, sourced by each scenario inside the test
# VM. A scenario is a script whose exit status is its verdict; "fail" says
# why before it exits.

HOST_KO=$HWC_ROOT/host_mod/hwconvey_host.ko
GUEST_KO=$HWC_ROOT/guest_mod/hwconvey_guest.ko
G=/sys/kernel/hwconvey/guest
H=/sys/kernel/hwconvey/host
# The modules' debugfs listings (a line per CPU: not sysfs values).
GD=/sys/kernel/debug/hwconvey-guest
HD=/sys/kernel/debug/hwconvey-host

fail() { echo "FAIL: $*"; exit 1; }
# skip: the scenario's premise does not hold on this kernel; says why.
skip() { echo "SKIP: $*"; exit 4; } # kselftest's KSFT_SKIP
# debug_kernel: true on the debug variant (HWC_KCONFIG=debug: KASAN,
# kmemleak, lockdep), which runs several times slower.
debug_kernel() { [ -e /sys/kernel/debug/kmemleak ]; }
# SLOW: how many times longer the bounds of waits are on this kernel (3 on the
# debug kernel). It stretches how long a wait may take, never what it asserts.
SLOW=1
if debug_kernel; then SLOW=3; fi
note() { echo "  $*"; }

# wait_until SECONDS WHAT CMD...: waits until CMD succeeds, trying every
# 0.1 s; after SECONDS (times SLOW) of the clock (however slow CMD is), fails
# saying WHAT did not happen. Scenarios wait on state (sysfs, counters), never
# on the wording of the kernel log.
wait_until() {
	local t=$(($1 * SLOW)) what=$2 end=$((SECONDS + $1 * SLOW))
	shift 2
	until "$@"; do
		[ $SECONDS -lt $end ] || fail "$what: not within $t s"
		sleep 0.1
	done
}

# has_copy: the guest driver holds a copy of the host (it applied a snapshot).
has_copy() {
	local g
	g=$(cat $G/generation 2>/dev/null) && [ -n "$g" ] && [ "$g" != none ]
}
# wait_copy [SECONDS]: waits until the guest has a copy of the host.
wait_copy() { wait_until "${1:-10}" "no snapshot applied in the guest" has_copy; }

# guest_online_cpus: the online CPUs the guest's copy counts.
guest_online_cpus() { awk '{print $4}' $G/inventory; }

# at_least FILE N: FILE holds a number >= N.
at_least() {
	local v
	v=$(cat "$1" 2>/dev/null) && [ "$v" -ge "$2" ] 2>/dev/null
}

# offline_a_block: takes offline the highest-numbered memory block that can
# go offline and prints its number, or fails (status 1) if none can (the
# first block of a node holds the node's own structures and cannot).
offline_a_block() {
	local m
	for m in $(ls -d /sys/devices/system/memory/memory[0-9]* | sort -V | tac); do
		if echo offline >"$m/state" 2>/dev/null; then
			echo "${m##*/memory}"
			return 0
		fi
	done
	return 1
}

loaded() { grep -q "^$1 " /proc/modules; }
load() { loaded "$1" || insmod "$HWC_ROOT/$2" || fail "insmod $2"; }
load_host() { load hwconvey_host host_mod/hwconvey_host.ko; }
load_guest() { load hwconvey_guest guest_mod/hwconvey_guest.ko; }
unload_all() {
	! loaded hwconvey_guest || rmmod hwconvey_guest || fail "rmmod hwconvey_guest"
	! loaded hwconvey_host || rmmod hwconvey_host || fail "rmmod hwconvey_host"
}

# bound_driver DEV: the vDPA bus driver DEV is bound to, or nothing.
bound_driver() {
	local l
	l=$(readlink "/sys/bus/vdpa/devices/$1/driver" 2>/dev/null) || return 0
	basename "$l"
}

# bind DEV DRIVER: moves vDPA device DEV to DRIVER (virtio_vdpa or
# vhost_vdpa).
bind() {
	local cur
	cur=$(bound_driver "$1")
	[ "$cur" = "$2" ] && return 0
	[ -z "$cur" ] || echo "$1" >"/sys/bus/vdpa/drivers/$cur/unbind" || fail "unbind $1 from $cur"
	echo "$2" >"/sys/bus/vdpa/devices/$1/driver_override"
	echo "$1" >"/sys/bus/vdpa/drivers/$2/bind" || fail "bind $1 to $2"
	[ "$(bound_driver "$1")" = "$2" ] || fail "$1 is bound to '$(bound_driver "$1")', not $2"
}

# vhost_chardev DEV: the /dev/vhost-vdpa-N of DEV (bound to vhost_vdpa),
# created if udev did not.
vhost_chardev() {
	local chr
	chr=$(ls "/sys/bus/vdpa/devices/$1/" | grep -m1 -E '^vhost-vdpa-[0-9]+$') || fail "no vhost-vdpa device under $1"
	udevadm settle 2>/dev/null || true
	[ -c "/dev/$chr" ] || mknod "/dev/$chr" c $(tr ':' ' ' <"/sys/bus/vdpa/devices/$1/$chr/dev")
	[ -c "/dev/$chr" ] || fail "/dev/$chr is not a character device"
	echo "/dev/$chr"
}

# in_sync: waits up to 5 s until the guest's copy is at the host's generation.
in_sync() {
	for i in $(seq 50); do
		[ "$(cat $G/generation)" = "$(cat $H/generation)" ] && return 0
		sleep 0.1
	done
	fail "guest at generation $(cat $G/generation), host at $(cat $H/generation)"
}
