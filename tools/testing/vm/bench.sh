#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the test VM (through vm-run): every in-kernel figure of
# make bench, in one VM so that they share its noise. TCG emulates the CPUs:
# absolute times are upper bounds; the ratios to the peer measured in the
# same run are what to read.
#   bench.sh N_LOOPBACK N_REAL_GUEST N_GUESTS
set -eu
cd "$HWC_ROOT"
echo "== loopback latency beside its peer (vdpa_sim_blk)"
tools/testing/vm/bench-latency.sh "${1:-10000}"
echo "== what an idle guest costs"
tools/testing/vm/bench-idle.sh
echo "== many guests on one host"
tools/testing/vm/bench-many-guests.sh "${3:-256}"
echo "== latency across a real VM boundary (nested guest under the patched QEMU, TCG in TCG)"
tools/testing/vm/bench-real-guest.sh "${2:-1000}"
