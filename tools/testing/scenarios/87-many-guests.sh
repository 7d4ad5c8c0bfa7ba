#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# timeout: 900
#
# 256 loopback guests on one host. Every device registers, its guest driver
# binds and applies the host's snapshot, and the device has its own files,
# linked from the guest's directory; a host CPU going offline and online
# again reaches every one of them (each acknowledges the generation); the
# host's last publication went to all of them. Deleting the first takes its
# link and files and leaves the others'. Then all are deleted: the host and
# the guest count none; a second round of as many devices, added and deleted,
# leaves the kernel holding no more memory than after the first, within
# 8 KiB a device (the allocators' noise between rounds reaches 1.2 MiB; a
# device takes about 120 KiB). On the debug kernel (64 devices), KASAN keeps
# freed objects in quarantine: there the count is kmemleak's, at the end of
# make check.
# The guests sample rarely (period_ms=60000), start with no CPU, and the host
# answers every request with a denial (enforce 0, which changes no
# generation), so that only the host's hotplug changes move anything.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/many-guests.sh"
N=${HWC_GUESTS:-$(debug_kernel && echo 64 || echo 256)}

load_host
insmod "$GUEST_KO" period_ms=60000 || fail "insmod hwconvey_guest period_ms=60000"
echo 0 >$H/initial_cpus
echo 0 >$H/enforce
before=$(kernel_kib)
add_guests "$N"
[ "$(cat $H/devices)" = "$N" ] || fail "the host counts $(cat $H/devices) devices, not $N"
all_acked "$(cat $H/generation)" "$N" 180
# Each device has its own files, through its own link in $GK.
wait_until 10 "$N device links in $GK" eval '[ "$(guest_link_count)" = "$N" ]'
[ "$(cat $GK/devices)" = "$N" ] && [ "$(virtio_bound)" = "$N" ] ||
	fail "the guest counts $(cat $GK/devices) devices, the driver core $(virtio_bound) bound, not $N"
[ "$(guests_linked "$N")" = "$N" ] || fail "only $(guests_linked "$N") of $N guests have their own files with a copy"
added=$(kernel_kib)
note "$N guests in sync at generation $(cat $H/generation); the kernel holds $(((added - before) / N)) KiB more per device"

victim=$(for c in /sys/devices/system/cpu/cpu[1-9]*; do [ "$(cat "$c/online")" = 1 ] && echo "${c##*cpu}"; done | head -1)
[ -n "$victim" ] || fail "no CPU but cpu0 is online"
gen=$(cat $H/generation)
echo 0 >"/sys/devices/system/cpu/cpu$victim/online" || fail "cpu$victim offline"
[ "$(cat $H/generation)" -gt "$gen" ] || fail "cpu$victim offline did not change the host's generation"
gen=$(cat $H/generation)
all_acked "$gen" "$N" 180
# A measurement, in debugfs: "generation <g> devices <n> ns <t>".
read -r _ pub_gen _ pub_devices _ pub_ns <$HD/last_publication
[ "$pub_gen" = "$gen" ] && [ "$pub_devices" = "$N" ] ||
	fail "last publication: $(cat $HD/last_publication), expected generation $gen to $N devices"
grep -q "^cpu $victim " $GD/cpus && fail "a guest's copy still lists cpu$victim online"
note "cpu$victim offline: all $N guests applied generation $gen; queueing it took the host $((pub_ns / N)) ns per guest"
echo 1 >"/sys/devices/system/cpu/cpu$victim/online" || fail "cpu$victim online"
gen=$(cat $H/generation)
all_acked "$gen" "$N" 180
grep -q "^cpu $victim " $GD/cpus || fail "the guest's copy does not list cpu$victim online again"

# Deleting the first device takes its link and files, and only those: every
# other device keeps its own, and the guest counts the devices still bound.
first=$(echo /sys/bus/vdpa/devices/hwcg1/virtio*)
first=${first##*/}
[ -L "$GK/$first" ] || fail "hwcg1's virtio device '$first' has no link in $GK"
vdpa dev del hwcg1 || fail "vdpa dev del hwcg1"
[ ! -e "$GK/$first" ] && [ ! -L "$GK/$first" ] || fail "hwcg1's link $GK/$first outlived the device"
[ "$(cat $GK/devices)" = $((N - 1)) ] && [ "$(virtio_bound)" = $((N - 1)) ] ||
	fail "with hwcg1 gone the guest counts $(cat $GK/devices) devices, the driver core $(virtio_bound) bound, not $((N - 1))"
[ "$(guest_link_count)" = $((N - 1)) ] || fail "with hwcg1 gone $GK holds $(guest_link_count) device links, not $((N - 1))"
[ "$(guests_linked "$N" 2)" = $((N - 1)) ] ||
	fail "with hwcg1 gone only $(guests_linked "$N" 2) of the other $((N - 1)) guests have their own files"
del_guests "$N" 2
no_guest_device || fail "with no device left the guest counts $(cat $GK/devices) devices, links $(guest_links | head -3 | xargs)"
[ "$(cat $H/devices)" = 0 ] || fail "the host still counts $(cat $H/devices) devices"
[ -z "$(ls /sys/bus/vdpa/devices)" ] || fail "vDPA devices left: $(ls /sys/bus/vdpa/devices)"
# The allocators keep some of what the first devices took (slab pages, lazily
# freed vmalloc areas), so what the kernel gives back is measured on a second
# round of as many devices: it must end where the first ended.
warm=$(kernel_kib)
add_guests "$N"
all_acked "$(cat $H/generation)" "$N" 180
del_guests "$N"
# Freeing is partly deferred (RCU, lazily purged vmalloc areas, idle workers
# exiting): a leak stays, so the measure is taken again for up to 10 s until
# it is within bounds.
for i in $(seq 10); do
	after=$(kernel_kib)
	[ $((after - warm)) -le $((N * 8)) ] && break
	sleep 1
done
note "deleted: the kernel holds $((after - warm)) KiB more after a second round of $N devices (KiB: $before before, $added with the first $N, $warm after them, $after after the second round)"
debug_kernel || [ $((after - warm)) -le $((N * 8)) ] ||
	fail "$((after - warm)) KiB not given back after a second round of $N devices"
unload_all
