#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make demo: sets up what is missing, builds the test kernel and both
# modules, then boots a VM and runs the narrated scenario in it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
cd "$HWC_ROOT"

"$here/setup.sh"
KDIR=${KDIR:-$("$here/build-kernel.sh")}
export KDIR
"$here/modules.sh"
cargo build -q -p hwconvey-tools
exec "$here/vm-run" --cpus 4 --numa 2 --append movablecore=50% tools/testing/vm/demo.sh
