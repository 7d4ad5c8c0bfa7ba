#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make check: everything that proves hwconvey works, from a fresh machine.
#   1. set-up (toolchain, kernel source) and the test kernel, cached;
#   2. native tests of the protocol core and tools (cargo test), clippy,
#      and a bounded fuzz run;
#   3. both modules, built against the test kernel, and again under clippy;
#   4. in a VM: load both modules, read back every KUnit suite, then run
#      the scenario tests (tools/testing/scenarios).
# Ends with "check: N passed, N failed".
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
cd "$HWC_ROOT"

SUITES=(hwconvey_host hwconvey_guest rust_cpuhp rust_sysfs rust_memory_notifier rust_kvm_lifecycle rust_workqueue_disable)
passed=0
failed=0
tally() { # tally FILE: adds up "N passed; M failed" of cargo and our own lines
	local p f
	p=$(grep -oE '([0-9]+) passed' "$1" | awk '{s += $1} END {print s + 0}')
	f=$(grep -oE '([0-9]+) failed' "$1" | awk '{s += $1} END {print s + 0}')
	passed=$((passed + p))
	failed=$((failed + f))
}
logs=$(mktemp -d "${TMPDIR:-/tmp}/hwconvey-check.XXXXXX")
# A failed check keeps its logs (the VM's console, dmesg, kmemleak report).
trap 'if [ $? = 0 ]; then rm -rf "$logs"; else log "logs kept in $logs"; fi' EXIT

"$here/setup.sh"
KDIR=${KDIR:-$("$here/build-kernel.sh")}
# The QEMU that hands the device to the real guests of the scenarios.
HWC_QEMU=${HWC_QEMU:-$("$here/build-qemu.sh")}
export KDIR HWC_QEMU

log "native tests"
cargo test --workspace --all-features 2>&1 | tee "$logs/cargo" | grep -E '^test result|FAILED|panicked' || true
tally "$logs/cargo"
grep -q '^test result: ok' "$logs/cargo" || failed=$((failed + 1))
# The programs the scenarios run (the agent, the hostile VMM).
cargo build --workspace --bins -q
cargo clippy --workspace --all-features --all-targets -q -- -D warnings

log "bounded fuzz run"
"$here/fuzz.sh" short

log "modules"
"$here/modules.sh"
# The modules again, through clippy-driver: any warning fails the check.
log "clippy on the modules"
touch host_mod/hwconvey_host.rs guest_mod/hwconvey_guest.rs
"$here/modules.sh" CLIPPY=1 >"$logs/clippy" 2>&1 || true
if grep -qE '^(warning|error)' "$logs/clippy"; then
	grep -E '^(warning|error)' -A6 "$logs/clippy"
	log "clippy reported problems in the modules"
	failed=$((failed + 1))
fi

if [ "${HWC_KCONFIG:-normal}" = debug ]; then
	# The real guests boot the normal kernel, with a guest module built for it:
	# a debug kernel under TCG inside the debug test VM does not come up in
	# the VM's time (the guest module is the same code either way).
	HWC_GUEST_KDIR=${HWC_GUEST_KDIR:-$(HWC_KCONFIG=normal "$here/build-kernel.sh")}
	HWC_GUEST_KO=${HWC_GUEST_KO:-$("$here/guest-module.sh" "$HWC_GUEST_KDIR")}
	export HWC_GUEST_KDIR HWC_GUEST_KO
	# The debug kernel runs the same scenarios several times slower.
	HWC_VM_TIMEOUT=${HWC_VM_TIMEOUT:-7200}
fi

log "KUnit suites and scenarios in the VM"
set +e
# movablecore: half the memory in ZONE_MOVABLE, so that memory blocks can go
# offline in the memory hotplug scenario.
# The scenarios with real guests boot nested VMs: the VM's limit covers theirs.
HWC_VM_TIMEOUT=${HWC_VM_TIMEOUT:-3000} "$here/vm-run" --cpus 4 --numa 2 --append movablecore=50% \
	--keep "$logs/vm" tools/testing/vm/check.sh
vm_rc=$?
set -e
# The kernel's own KTAP parser reads the suites (an O= build links its source).
ksrc=$KDIR
[ -e "$KDIR/source" ] && ksrc=$(readlink -f "$KDIR/source")
set +e
"$here/kunit-results.sh" "$ksrc" "$logs/vm" "${SUITES[@]}" | tee "$logs/kunit"
kunit_rc=${PIPESTATUS[0]}
set -e
grep -E "^kunit: " "$logs/kunit" >"$logs/kunit-summary" || echo "kunit: 0 passed, 1 failed" >"$logs/kunit-summary"
# A verdict of the parser that no case carries (it could not read the KTAP).
if [ "$kunit_rc" != 0 ] && ! grep -qE ' [1-9][0-9]* failed' "$logs/kunit-summary"; then
	log "the KUnit results did not parse"
	failed=$((failed + 1))
fi
tally "$logs/kunit-summary"
if [ -s "$logs/vm/scenarios" ]; then
	grep -E '^(ok|not ok) ' "$logs/vm/scenarios" | sed 's/^/  /'
	grep -E '^scenarios: ' "$logs/vm/scenarios" | tee "$logs/scenarios-summary"
	tally "$logs/scenarios-summary"
else
	log "no scenario results"
	failed=$((failed + 1))
fi
[ $vm_rc = 0 ] || { log "the VM run failed (exit $vm_rc)"; failed=$((failed + 1)); }

echo "check: $passed passed, $failed failed"
[ "$failed" = 0 ]
