#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the test VM (through vm-run): every scenario in
# tools/testing/scenarios, in order, each in its own shell. Prints TAP as
# kselftest does (version, plan, a line per scenario with its output as
# comments, the totals), then a closing "scenarios: N passed, N failed,
# N skipped" line. A scenario that exits with kselftest's KSFT_SKIP (4) after
# lib.sh's skip() printed its reason was skipped (its premise does not hold
# on this kernel); any other exit status but 0 failed.
set -u
cd "$HWC_ROOT"
export HWC_ROOT
passed=0
failed=0
skipped=0
n=0
ksft_skip=4
scenarios=(tools/testing/scenarios/[0-9]*.sh)
echo "TAP version 13"
echo "1..${#scenarios[@]}"
for s in "${scenarios[@]}"; do
	n=$((n + 1))
	name=$(basename "$s" .sh)
	# A scenario may ask for more time than 300 s ("# timeout: N" in its header);
	# the debug kernel (kmemleak) gets three times as long.
	limit=$(sed -n 's/^# timeout: \([0-9]*\)$/\1/p' "$s" | head -1)
	limit=${limit:-300}
	[ -e /sys/kernel/debug/kmemleak ] && limit=$((limit * 3))
	out=$(timeout "$limit" bash "$s" 2>&1)
	rc=$?
	# Whatever a scenario left behind must not leak into the next one.
	for d in $(ls /sys/bus/vdpa/devices 2>/dev/null); do vdpa dev del "$d" 2>/dev/null; done
	for m in hwconvey_guest hwconvey_host; do
		grep -q "^$m " /proc/modules && rmmod "$m"
	done
	for c in /sys/devices/system/cpu/cpu[0-9]*/online; do
		[ "$(cat "$c")" = 1 ] || echo 1 >"$c"
	done
	for m in /sys/devices/system/memory/memory[0-9]*/state; do
		[ "$(cat "$m")" != offline ] || echo online >"$m" 2>/dev/null
	done
	if [ $rc = 0 ]; then
		echo "ok $n $name"
		passed=$((passed + 1))
	elif [ $rc = $ksft_skip ] && printf '%s\n' "$out" | grep -q '^SKIP: '; then
		echo "ok $n $name # SKIP $(printf '%s\n' "$out" | sed -n 's/^SKIP: //p' | head -1)"
		skipped=$((skipped + 1))
	else
		echo "not ok $n $name"
		failed=$((failed + 1))
	fi
	printf '%s\n' "$out" | sed 's/^/    # /'
done
echo "# Totals: pass:$passed fail:$failed xfail:0 xpass:0 skip:$skipped error:0"
echo "scenarios: $passed passed, $failed failed, $skipped skipped"
[ $failed = 0 ]
