#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the test VM (through vm-run): the loopback latency benchmark,
# beside its peer. One hwconvey device and one vdpa_sim_blk device (the
# kernel's own software vDPA device: a kernel worker serves its virtqueue)
# are both bound to virtio_vdpa, so both are driven the same way: a driver
# posts buffers and kicks, the device's worker answers, the driver's callback
# completes the request. Measured in rounds that alternate, so that all three
# see the same noise of the emulated machine:
#   - peer: 512-byte O_DIRECT reads of the simulated disk with fio (psync,
#     queue depth 1), latency as fio reports it (submission to completion);
#   - round trip: guest request -> grant -> second update applied, timed in
#     the guest driver;
#   - one-way: host update queued -> applied by the guest, both timestamps
#     taken in the kernel on the monotonic clock.
# Each figure is the median over the rounds of that round's p50 (or p99);
# the ratios are ours / peer, the design's goal being <= 1.0 for the round
# trip and <= 0.5 for one way.
set -eu
N=${1:-10000}
ROUNDS=${BENCH_ROUNDS:-10}
cd "$HWC_ROOT"
. tools/testing/scenarios/lib.sh
command -v fio >/dev/null || fail "fio is not installed (tools/testing/setup.sh installs it)"
load_host
load_guest
vdpa dev add name hwc0 mgmtdev faux/hwconvey
bind hwc0 virtio_vdpa
vdpa dev add name blk0 mgmtdev vdpasim_blk
bind blk0 virtio_vdpa
# hwc0's virtio device is the guest driver's only one (blk0's is virtio_blk's).
G=$(guest_files) || fail "hwc0 on virtio_vdpa: no guest device link in $GK"
disk=
for i in $(seq 100); do
	disk=$(ls /sys/bus/vdpa/devices/blk0/virtio*/block 2>/dev/null | head -1)
	[ -n "$disk" ] && [ -b "/dev/$disk" ] && has_copy && break
	sleep 0.1
done
[ -n "$disk" ] && [ -b "/dev/$disk" ] || fail "vdpa_sim_blk gave no block device"
# The round trips: grant and release of one CPU in turn, each answered and
# followed by its update. The guest's own projection sleeps and the rate limit
# is lifted, so that what is measured is the transport and the admission, not
# the policy.
echo 60000 >$GK/period_ms
echo 100000 >/sys/kernel/hwconvey/host/rate_burst
echo 100000 >/sys/kernel/hwconvey/host/rate_limit
python3 - "$N" "$ROUNDS" "/dev/$disk" "$G" <<'PY'
import json, os, statistics, subprocess, sys, time
n, rounds, disk, guest = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
per = max(1, n // rounds)
PUSH = '/sys/kernel/debug/hwconvey-host/bench_push'
GENERATION = f'{guest}/generation'
APPLIED_NS = f'{guest}/last_update_ns'
RT = '/sys/kernel/debug/hwconvey-guest/bench_roundtrip'
SENT = '/sys/kernel/hwconvey/host/hwc0/last_sent_ns'
PASS = f'{guest}/last_update_pass_ns'

def num(path):
    with open(path) as f:
        return int(f.read())

def pct(samples, q):
    s = sorted(samples)
    return s[(len(s) - 1) * q // 100]

def fields(path):
    with open(path) as f:
        w = f.read().split()
    return int(w[1]), int(w[3])

stages = {'worker': [], 'notify': [], 'apply': []}
def one_way():
    lat = []
    for _ in range(per):
        with open(PUSH, 'w') as f:
            f.write('1')
        gen, t0 = fields(PUSH)
        deadline = time.monotonic() + 10
        while True:
            # When the copy reached its generation: read between two reads of the generation,
            # which must be the push's both times.
            if num(GENERATION) == gen:
                t1 = num(APPLIED_NS)
                if num(GENERATION) == gen:
                    break
            if time.monotonic() > deadline:
                sys.exit(f"generation {gen} not applied within 10 s")
            # The host's worker was queued on this CPU: let it run rather than poll over it
            # (fio, the peer, sleeps in its read instead).
            os.sched_yield()
        lat.append(t1 - t0)
        # Where the time went: queued -> written into the ring by the host's worker ->
        # the guest driver's work pass that took it started -> applied.
        sent, started = num(SENT), num(PASS)
        if t0 <= sent <= started <= t1:
            stages['worker'].append(sent - t0)
            stages['notify'].append(started - sent)
            stages['apply'].append(t1 - started)
    return pct(lat, 50), pct(lat, 99)

granted = 0
def round_trip():
    global granted
    with open(RT, 'w') as f:
        f.write(str(per))
    with open(RT) as f:
        w = f.read().split()
    r = dict(zip(w[0::2], w[1::2]))
    if int(r['n']) != per:
        sys.exit(f"bench_roundtrip ran {r['n']} requests, not {per}")
    granted += int(r['granted'])
    return int(r['p50_ns']), int(r['p99_ns'])

def peer():
    out = subprocess.run(
        ['fio', '--name=peer', f'--filename={disk}', '--rw=randread', '--bs=512',
         '--direct=1', '--ioengine=psync', '--iodepth=1', f'--io_size={per * 512}',
         '--size=64M', '--norandommap', '--lat_percentiles=1',
         '--percentile_list=50:99', '--output-format=json'],
        check=True, capture_output=True, text=True).stdout
    job = json.loads(out)['jobs'][0]['read']
    if job['total_ios'] != per:
        sys.exit(f"fio read {job['total_ios']} blocks, not {per}")
    p = job['lat_ns']['percentile']
    return int(p['50.000000']), int(p['99.000000'])

figures = {'peer': [], 'rt': [], 'ow': []}
for _ in range(rounds):
    figures['peer'].append(peer())
    figures['rt'].append(round_trip())
    figures['ow'].append(one_way())

med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v))
       for k, v in figures.items()}
peer50, peer99 = med['peer']
names = {
    'peer': 'peer: vdpa_sim_blk 512 B O_DIRECT read (fio psync, qd 1)',
    'rt': 'round trip: request, grant, second update applied',
    'ow': 'one-way: host update queued -> applied by the guest',
}
print(f"{rounds} alternating rounds of {per} each (median over rounds)")
for k in ('peer', 'rt', 'ow'):
    p50, p99 = med[k]
    line = f"  {names[k]:<56} p50 {p50 / 1000:7.1f} us  p99 {p99 / 1000:7.1f} us"
    if k != 'peer':
        line += f"   ratio to peer p50 {p50 / peer50:.2f}  p99 {p99 / peer99:.2f}"
    print(line)
for k in ('rt', 'ow'):
    r50 = [a / b[0] for (a, _), b in zip(figures[k], figures['peer'])]
    r99 = [a / b[1] for (_, a), b in zip(figures[k], figures['peer'])]
    print(f"  {k} ratio per round: p50 {min(r50):.2f}..{max(r50):.2f}  p99 {min(r99):.2f}..{max(r99):.2f}")
if stages['worker']:
    print(f"  one-way by stage ({len(stages['worker'])} updates):")
    for k, what in (('worker', "queued -> written into the guest's ring by the host's worker"),
                    ('notify', "written -> the guest driver's work pass started"),
                    ('apply', "pass started -> update decoded and applied")):
        print(f"    {what:<62} p50 {pct(stages[k], 50) / 1000:7.1f} us  p99 {pct(stages[k], 99) / 1000:7.1f} us")
total = per * rounds
if granted < total * 9 // 10:
    sys.exit(f"only {granted} of {total} requests were granted")
PY
vdpa dev del blk0
vdpa dev del hwc0
unload_all
