# SPDX-License-Identifier: GPL-2.0
#
# Helpers for many loopback guests on one host, sourced after lib.sh by the
# scenario and the benchmark that run them. Files are read with the shell's
# own "read", not cat: a poll over hundreds of devices must not fork hundreds
# of processes under TCG.

# add_guests N: hwconvey devices hwcg1..hwcgN, each bound to virtio_vdpa
# (moved there with the shell's own redirections if another driver took it).
add_guests() {
	local i d
	for i in $(seq "$1"); do
		vdpa dev add name "hwcg$i" mgmtdev faux/hwconvey || fail "vdpa dev add hwcg$i"
		d=/sys/bus/vdpa/devices/hwcg$i
		[ -e "/sys/bus/vdpa/drivers/virtio_vdpa/hwcg$i" ] && continue
		[ -e "$d/driver" ] && { echo "hwcg$i" >"$d/driver/unbind" || fail "unbind hwcg$i"; }
		echo virtio_vdpa >"$d/driver_override"
		echo "hwcg$i" >/sys/bus/vdpa/drivers/virtio_vdpa/bind || fail "bind hwcg$i to virtio_vdpa"
	done
}

# del_guests N [FIRST]: deletes hwcgFIRST..hwcgN (FIRST: 1).
del_guests() {
	local i
	for i in $(seq "${2:-1}" "$1"); do
		vdpa dev del "hwcg$i" || fail "vdpa dev del hwcg$i"
	done
}

# acked GEN N: how many of hwcg1..hwcgN acknowledged generation GEN or later
# (their guest driver applied it).
acked() {
	local i v n=0
	for i in $(seq "$2"); do
		read -r v <"$H/hwcg$i/last_ack" || v=0
		[ "$v" -ge "$1" ] && n=$((n + 1))
	done
	echo "$n"
}

# all_acked GEN N SECONDS: waits until all N acknowledged GEN.
all_acked() {
	local end=$((SECONDS + $3)) got
	while got=$(acked "$1" "$2") && [ "$got" -lt "$2" ]; do
		[ $SECONDS -lt $end ] || fail "$got of $2 guests applied generation $1 within $3 s"
		sleep 0.2
	done
}

# guest_link_count: how many device links the guest's $GK holds.
guest_link_count() {
	local l n=0
	for l in "$GK"/*; do
		[ -L "$l" ] && n=$((n + 1))
	done
	echo "$n"
}

# guests_linked N [FIRST]: how many of hwcgFIRST..hwcgN (FIRST: 1) have their
# own guest files with a copy: a link in $GK named after the device's virtio
# device (virtio_vdpa's, under the vDPA device), to that device's directory,
# whose generation is above 0.
guests_linked() {
	local i v g n=0
	for i in $(seq "${2:-1}" "$1"); do
		for v in "/sys/bus/vdpa/devices/hwcg$i"/virtio*; do
			[ -L "$GK/${v##*/}" ] && [ "$GK/${v##*/}/generation" -ef "$v/generation" ] &&
				read -r g <"$GK/${v##*/}/generation" && [ "$g" -gt 0 ] 2>/dev/null && n=$((n + 1))
		done
	done
	echo "$n"
}

# last_ack_ns N: the latest time (monotonic ns) any of hwcg1..hwcgN acknowledged.
last_ack_ns() {
	local i v max=0
	for i in $(seq "$1"); do
		read -r v <"$H/hwcg$i/last_ack_ns"
		[ "$v" -gt "$max" ] && max=$v
	done
	echo "$max"
}

# kernel_kib: memory the kernel holds (KiB): what is in use, less the page
# cache and the processes' own pages, after dropping what can be dropped.
kernel_kib() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
	awk '/^(MemTotal|MemFree|Buffers|Cached|AnonPages):/ { v[$1] = $2 }
		END { print v["MemTotal:"] - v["MemFree:"] - v["Buffers:"] - v["Cached:"] - v["AnonPages:"] }' /proc/meminfo
}

# slab_kib: slab memory (reclaimable and not), KiB.
slab_kib() { awk '/^Slab:/ { print $2 }' /proc/meminfo; }

# monotonic_ns: now on CLOCK_MONOTONIC, the clock of the kernel's timestamps.
monotonic_ns() { python3 -c 'import time; print(time.monotonic_ns())'; }
