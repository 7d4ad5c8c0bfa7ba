#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the test VM (through vm-run): what an idle guest costs. One
# loopback guest samples its load every second (the default period) for S
# seconds (default 20) while nothing else happens: the guest's cost per
# sample (its in-kernel sampling_ns over its samples) and the host's cost of
# that guest per second (its device worker's work_ns). The goal is at most
# 0.1 % of one CPU for a guest sampling every second.
set -eu
S=${1:-20}
cd "$HWC_ROOT"
. tools/testing/scenarios/lib.sh
load_host
insmod "$GUEST_KO" period_ms=1000 || fail "insmod hwconvey_guest"
vdpa dev add name hwc0 mgmtdev faux/hwconvey
bind hwc0 virtio_vdpa
G=$(guest_files) || fail "hwc0 on virtio_vdpa: no guest device link in $GK"
in_sync
# The first samples set the baseline; the window starts after them.
for i in $(seq 100); do
	[ "$(cat $G/projection/samples)" -ge 2 ] && break
	sleep 0.1
done
[ "$(cat $G/projection/samples)" -ge 2 ] || fail "fewer than 2 samples in 10 s: $(values $G/projection)"
# figures: the samples and proposals, the sampling's and the host's costs, the messages sent.
figures() {
	echo "$(cat $G/projection/samples) $(cat $G/projection/proposals) $(cat $G/sampling_ns) $(cat $H/hwc0/work_ns) $(cat $H/hwc0/work_passes) $(cat $G/messages_sent)"
}
a=$(figures)
t0=$(date +%s%N)
sleep "$S" # the measurement window itself, not a wait for a condition
b=$(figures)
t1=$(date +%s%N)
vdpa dev del hwc0
unload_all
python3 - "$a" "$b" "$t0" "$t1" <<'PY'
import sys
a = [int(x) for x in sys.argv[1].split()]
b = [int(x) for x in sys.argv[2].split()]
secs = (int(sys.argv[4]) - int(sys.argv[3])) / 1e9
samples, proposals, sampling_ns, work_ns, passes, sent = (y - x for x, y in zip(a, b))
if samples < 1:
    sys.exit("no sample was taken in the window")
per = sampling_ns / samples
print(f"  guest sampling: {per / 1000:.1f} us per sample ({samples} samples in {secs:.1f} s, {proposals} proposals, "
      f"{sent} messages sent): {per / 1e9 * 100:.4f} % of one CPU at one sample per second (goal <= 0.1 %)")
print(f"  host, per idle guest: {work_ns / secs / 1000:.1f} us per second in {passes} worker passes: "
      f"{work_ns / secs / 1e9 * 100:.4f} % of one CPU")
PY
