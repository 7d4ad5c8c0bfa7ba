#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the test VM (through vm-run): N loopback guests on one host
# (default 256). Prints the kernel memory each device takes (both ends: the
# host's device and the guest driver bound to it through virtio_vdpa), then,
# for R host CPUs going offline (default 5), the time from the CPU going
# offline to the last guest's acknowledgement (timestamps in the kernel on the
# monotonic clock) and the host's time per guest to queue the publication,
# and at last what a second round of as many devices, added and deleted,
# leaves behind.
set -eu
N=${1:-256}
R=${2:-5}
cd "$HWC_ROOT"
. tools/testing/scenarios/lib.sh
. tools/testing/scenarios/many-guests.sh
load_host
insmod "$GUEST_KO" period_ms=60000 || fail "insmod hwconvey_guest"
echo 0 >$H/initial_cpus
# Requests are denied (no generation changes): only the CPU going offline moves anything.
echo 0 >$H/enforce
k0=$(kernel_kib)
s0=$(slab_kib)
add_guests "$N"
all_acked "$(cat $H/generation)" "$N" 300
k1=$(kernel_kib)
s1=$(slab_kib)
victim=$(for c in /sys/devices/system/cpu/cpu[1-9]*; do [ "$(cat "$c/online")" = 1 ] && echo "${c##*cpu}"; done | head -1)
[ -n "$victim" ] || fail "no CPU but cpu0 is online"
reach=()
per_guest=()
for r in $(seq "$R"); do
	t0=$(monotonic_ns)
	echo 0 >"/sys/devices/system/cpu/cpu$victim/online"
	gen=$(cat $H/generation)
	# A measurement, in debugfs: "generation <g> devices <n> ns <t>".
	read -r _ _ _ devices _ pub_ns <$HD/last_publication
	all_acked "$gen" "$N" 300
	reach+=($(($(last_ack_ns "$N") - t0)))
	per_guest+=($((pub_ns / devices)))
	echo 1 >"/sys/devices/system/cpu/cpu$victim/online"
	all_acked "$(cat $H/generation)" "$N" 300
done
del_guests "$N"
# What the kernel gives back is measured on a second round: the allocators
# keep some of what the first round took.
k2=$(kernel_kib)
add_guests "$N"
all_acked "$(cat $H/generation)" "$N" 300
del_guests "$N"
k3=$(kernel_kib)
unload_all
python3 - "$N" "$k0" "$k1" "$k2" "$k3" "$s0" "$s1" "${reach[*]}" "${per_guest[*]}" <<'PY'
import statistics, sys
n, k0, k1, k2, k3, s0, s1 = map(int, sys.argv[1:8])
reach = [int(x) for x in sys.argv[8].split()]
per = [int(x) for x in sys.argv[9].split()]
print(f"  {n} guests: kernel memory per device {(k1 - k0) / n:.1f} KiB (slab {(s1 - s0) / n:.1f} KiB); "
      f"a second round of {n} added and deleted leaves {k3 - k2} KiB more ({(k3 - k2) / n:.1f} KiB per device)")
print(f"  a host CPU offline reaches the last of {n} guests (applied and acknowledged): "
      f"median {statistics.median(reach) / 1e6:.1f} ms  max {max(reach) / 1e6:.1f} ms  ({len(reach)} times)")
print(f"  host time to queue one publication, per guest: median {statistics.median(per) / 1000:.2f} us  "
      f"max {max(per) / 1000:.2f} us")
PY
