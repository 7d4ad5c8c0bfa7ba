#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the test VM (through vm-run): the loopback latency benchmark.
# One hwconvey device bound to virtio_vdpa; N host-to-guest updates, each
# sent when the previous one was applied (one-way latency: queued by the
# host -> applied by the guest, both timestamps taken in the kernel on the
# monotonic clock), then N guest requests, each sent when the previous one
# was answered (round trip, measured in the guest driver).
set -eu
N=${1:-10000}
cd "$HWC_ROOT"
. tools/testing/scenarios/lib.sh
load_host
load_guest
vdpa dev add name hwc0 mgmtdev hwconvey
bind hwc0 virtio_vdpa
for i in $(seq 100); do [ "$(cat /sys/kernel/hwconvey/guest/generation)" != none ] && break; sleep 0.1; done
python3 - "$N" <<'PY'
import sys
n = int(sys.argv[1])
H = '/sys/kernel/hwconvey/host/bench_push'
G = '/sys/kernel/hwconvey/guest/last_update'
def fields(path):
    with open(path) as f:
        w = f.read().split()
    return int(w[1]), int(w[3])
lat = []
for _ in range(n):
    with open(H, 'w') as f:
        f.write('1')
    gen, t0 = fields(H)
    while True:
        g, t1 = fields(G)
        if g == gen:
            break
    lat.append(t1 - t0)
lat.sort()
pct = lambda q: lat[(len(lat) - 1) * q // 100]
print(f"host->guest one-way: n {n} p50 {pct(50) / 1000:.1f} us  p99 {pct(99) / 1000:.1f} us  max {lat[-1] / 1000:.1f} us")
PY
echo "$N" >/sys/kernel/hwconvey/guest/bench_roundtrip
read -r _ n _ p50 _ p99 _ max </sys/kernel/hwconvey/guest/bench_roundtrip
awk -v n="$n" -v a="$p50" -v b="$p99" -v c="$max" \
	'BEGIN { printf "guest->host->guest request round trip: n %d p50 %.1f us  p99 %.1f us  max %.1f us\n", n, a / 1000, b / 1000, c / 1000 }'
vdpa dev del hwc0
unload_all
