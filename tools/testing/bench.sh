#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make bench: prints the benchmark figures against the targets of the
# design: the protocol core natively (cargo bench), then the loopback
# latency of the real device in the test VM (tools/testing/vm/bench-latency.sh).
# BENCH_N sets the number of messages per latency measurement (default 10000).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
cd "$HWC_ROOT"

"$here/setup.sh"
log "protocol core (native)"
cargo bench -q -p hwconvey-proto --features std 2>&1 | grep -vE '^\s*$|Finished|Running'
"$here/modules.sh"
log "loopback latency in the VM (TCG: emulated CPUs, figures are upper bounds)"
"$here/vm-run" --cpus 4 --numa 2 tools/testing/vm/bench-latency.sh "${BENCH_N:-10000}"
log "latency across a real VM boundary (a guest under the patched QEMU, nested TCG: upper bounds)"
HWC_QEMU=${HWC_QEMU:-$("$here/build-qemu.sh")}
KDIR=${KDIR:-$("$here/build-kernel.sh")}
export HWC_QEMU KDIR
cargo build -q -p hwconvey-tools
HWC_VM_TIMEOUT=${HWC_VM_TIMEOUT:-3000} "$here/vm-run" --cpus 4 --numa 2 tools/testing/vm/bench-real-guest.sh "${BENCH_REAL_N:-1000}"
