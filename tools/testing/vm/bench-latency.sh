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
# Round trips: grant and release of one CPU in turn, each answered and followed by its
# update. The guest's own projection sleeps and the rate limit is lifted, so that what is
# measured is the transport and the admission, not the policy.
echo 60000 >/sys/kernel/hwconvey/guest/period_ms
echo 100000 >/sys/kernel/hwconvey/host/rate_burst
echo 100000 >/sys/kernel/hwconvey/host/rate_limit
sleep 0.2
echo "$N" >/sys/kernel/hwconvey/guest/bench_roundtrip
read -r _ n _ granted _ p50 _ p99 _ max </sys/kernel/hwconvey/guest/bench_roundtrip
awk -v n="$n" -v g="$granted" -v a="$p50" -v b="$p99" -v c="$max" \
	'BEGIN { printf "guest->host->guest request, grant and second update applied: n %d (%d granted) p50 %.1f us  p99 %.1f us  max %.1f us\n", n, g, a / 1000, b / 1000, c / 1000 }'
[ "$granted" -ge $((N * 9 / 10)) ] || { echo "only $granted of $N requests were granted"; exit 1; }
vdpa dev del hwc0
unload_all
