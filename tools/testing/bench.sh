#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make bench: prints the benchmark figures against the targets of the
# design: the protocol core natively (cargo bench), then the loopback
# latency of the real device in the test VM beside its peer, vdpa_sim_blk,
# and across a real VM boundary (tools/testing/vm/bench.sh).
# BENCH_N sets the number of loopback messages per measurement (default 10000),
# BENCH_REAL_N those across the real boundary (default 1000), BENCH_GUESTS the
# guests on one host (default 256).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
cd "$HWC_ROOT"

"$here/setup.sh"
log "protocol core (native)"
cargo bench -q -p hwconvey-proto --features std 2>&1 | grep -vE '^\s*$|Finished|Running'
"$here/modules.sh"
HWC_QEMU=${HWC_QEMU:-$("$here/build-qemu.sh")}
KDIR=${KDIR:-$("$here/build-kernel.sh")}
export HWC_QEMU KDIR
cargo build -q -p hwconvey-tools
log "in-kernel latency in the VM (TCG: emulated CPUs; absolute figures are upper bounds)"
HWC_VM_TIMEOUT=${HWC_VM_TIMEOUT:-3000} "$here/vm-run" --cpus 4 --numa 2 \
	tools/testing/vm/bench.sh "${BENCH_N:-10000}" "${BENCH_REAL_N:-1000}" "${BENCH_GUESTS:-256}"
