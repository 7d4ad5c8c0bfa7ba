# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the scenario tests, sourced by each scenario inside the test
# VM. A scenario is a script whose exit status is its verdict; "fail" says
# why before it exits.

HOST_KO=$HWC_ROOT/host_mod/hwconvey_host.ko
GUEST_KO=$HWC_ROOT/guest_mod/hwconvey_guest.ko
# The guest's knob directory: its knobs, "devices" and a link per bound device.
GK=/sys/kernel/hwconvey/guest
# G: the guest's per-device files, through that device's link in $GK
# ($GK/virtioN -> /sys/bus/virtio/devices/virtioN/). A scenario sets it once
# its device is bound: G=$(guest_files) || fail ...
G=
H=/sys/kernel/hwconvey/host
# The modules' debugfs files: listings (a line per CPU), records (the host's
# $HD/<device>/last_request and last_response, the guest's samples_recent)
# and measurements ($HD/last_publication): not sysfs values.
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

# guest_links: the device links in $GK, a path a line (nothing without one).
guest_links() {
	local l
	for l in "$GK"/*; do
		[ -L "$l" ] && echo "$l"
	done
	return 0
}
# one_guest_link: $GK holds exactly one device link, and its device's files
# are there through it.
one_guest_link() {
	local links
	links=$(guest_links)
	[ -n "$links" ] && [ "$(wc -l <<<"$links")" = 1 ] && [ -f "$links/generation" ]
}
# guest_files [SECONDS]: waits (up to SECONDS, 10 by default) until the guest
# driver has bound exactly one device, whose link is in $GK, and prints the
# link's path ($GK/virtioN): the directory of that device's files. Run in a
# command substitution, it says why it failed on stderr; the caller fails:
#   G=$(guest_files) || fail "no guest device"
guest_files() {
	wait_until "${1:-10}" "exactly one device link in $GK" one_guest_link >&2
	guest_links
}
# no_guest_device: the guest driver has no device bound: no link in $GK, and
# $GK/devices reads 0.
no_guest_device() {
	[ -z "$(guest_links)" ] && [ "$(cat $GK/devices)" = 0 ]
}

# virtio_bound: how many virtio devices the driver core has bound to the
# guest driver.
virtio_bound() {
	local d n=0
	for d in /sys/bus/virtio/drivers/hwconvey/virtio*; do
		[ -e "$d" ] && n=$((n + 1))
	done
	echo "$n"
}

# has_copy: the guest driver holds a copy of the host (it applied a snapshot)
# on device $G: its generation is above 0 (0 before the first snapshot). No
# G, no device or no file: no copy.
has_copy() {
	local g
	[ -n "${G:-}" ] && g=$(cat "$G/generation" 2>/dev/null) && [ "$g" -gt 0 ] 2>/dev/null
}
# wait_copy [SECONDS]: waits until the guest has a copy of the host.
wait_copy() { wait_until "${1:-10}" "no snapshot applied in the guest" has_copy; }

# guest_online_cpus: the online CPUs the guest's copy counts.
guest_online_cpus() { cat $G/inventory/online_cpus; }

# A sysfs file holds one value; values that belong together are the files of
# a subdirectory ($G/last_response/, $H/hwc0/allocation/, ...).
# values DIR: DIR's files as "name=value" words on one line, for messages.
values() {
	local f v out=
	for f in "$1"/*; do
		[ -f "$f" ] || continue
		v=$(cat "$f" 2>/dev/null) || v='<unreadable>'
		out+="${f##*/}=$v "
	done
	echo "${out% }"
}
# snap DIR [STAMP]: reads the files of subdirectory DIR into the associative
# array S (S[<file>]=<value>) as one state: files read one after the other
# may show two, so STAMP, a file that changes with the state (DIR/id if there
# is one, as in last_response/, else DIR/generation, as in last_diff/, else
# DIR/samples, as in projection/, else the generation of the directory
# above), reads the same before and after. Tries 20 times, then fails the
# scenario. Only builtins: it starts no process.
declare -A S
snap() {
	local dir=$1 stamp=${2:-} f a b i
	if [ -z "$stamp" ]; then
		for f in "$dir/id" "$dir/generation" "$dir/samples" "$dir/../generation"; do
			if [ -f "$f" ]; then stamp=$f; break; fi
		done
	fi
	[ -n "$stamp" ] || fail "snap $dir: no file tells its state"
	for ((i = 0; i < 20; i++)); do
		S=()
		read -r a <"$stamp" || fail "snap $dir: $stamp does not read"
		for f in "$dir"/*; do
			if [ -f "$f" ]; then read -r "S[${f##*/}]" <"$f"; fi
		done
		read -r b <"$stamp" || fail "snap $dir: $stamp does not read"
		[ "$a" = "$b" ] && return 0
	done
	fail "snap $dir: $stamp moved during each of 20 reads"
}

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

# in_sync: waits up to 5 s until the guest's copy (on device $G) is at the
# host's generation.
in_sync() {
	[ -n "${G:-}" ] || fail "in_sync: no guest device (G=\$(guest_files) first)"
	for i in $(seq 50); do
		[ "$(cat $G/generation)" = "$(cat $H/generation)" ] && return 0
		sleep 0.1
	done
	fail "guest at generation $(cat $G/generation), host at $(cat $H/generation)"
}
