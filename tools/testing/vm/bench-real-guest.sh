#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the test VM (through vm-run): latency across a real VM
# boundary. The hwconvey device goes to a guest booted under the patched QEMU
# (tools/testing/guest-vm), nested in the test VM and emulated (TCG inside
# TCG): the figures are upper bounds, far above what KVM would show.
#   - host update -> applied and acknowledged by the guest: N pushes, each when
#     the previous one was acknowledged, timed in the host (the two kernels'
#     clocks differ, so the one-way time is bounded by the time to the ack);
#   - guest request -> grant -> second update applied: N round trips timed in
#     the guest's kernel, as in the loopback benchmark.
set -eu
N=${1:-1000}
cd "$HWC_ROOT"
. tools/testing/scenarios/lib.sh
. tools/testing/scenarios/real-guest.sh
load_host
echo 1 >$H/initial_cpus
echo 2 >$H/default_quota_cpus
vdpa dev add name hwc0 mgmtdev faux/hwconvey
bind hwc0 vhost_vdpa
guest_start hwc0
guest_in_sync
python3 - "$N" <<'PY'
import sys, time
n = int(sys.argv[1])
push = '/sys/kernel/debug/hwconvey-host/bench_push'
ack = '/sys/kernel/hwconvey/host/hwc0/last_ack'
lat = []
for _ in range(n):
    t0 = time.monotonic_ns()
    with open(push, 'w') as f:
        f.write('1')
    with open(push) as f:
        gen = int(f.read().split()[1])
    deadline = time.monotonic() + 10
    while True:
        with open(ack) as f:
            if int(f.read()) >= gen:
                break
        if time.monotonic() > deadline:
            sys.exit(f"generation {gen} not acknowledged within 10 s")
    lat.append(time.monotonic_ns() - t0)
lat.sort()
pct = lambda q: lat[(len(lat) - 1) * q // 100]
print(f"real guest: host update -> applied and acknowledged: n {n} p50 {pct(50) / 1000:.1f} us  p99 {pct(99) / 1000:.1f} us  max {lat[-1] / 1000:.1f} us")
PY
echo 100000 >$H/rate_burst
echo 100000 >$H/rate_limit
RT=/sys/kernel/debug/hwconvey-guest/bench_roundtrip
"$GVM" run "$GDIR" --timeout 900 "echo $N >$RT" || fail "bench_roundtrip in the guest"
read -r _ n _ granted _ p50 _ p99 _ max <<<"$(gsh "cat $RT")"
awk -v n="$n" -v g="$granted" -v a="$p50" -v b="$p99" -v c="$max" \
	'BEGIN { printf "real guest: request, grant and second update applied: n %d (%d granted) p50 %.1f us  p99 %.1f us  max %.1f us\n", n, g, a / 1000, b / 1000, c / 1000 }'
[ "$granted" -ge $((N * 9 / 10)) ] || { echo "only $granted of $N requests were granted"; exit 1; }
guest_stop
vdpa dev del hwc0
unload_all
