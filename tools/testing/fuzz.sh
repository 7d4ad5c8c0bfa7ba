#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# fuzz.sh [short|long|SECONDS]: runs the libFuzzer targets in fuzz/ on the
# stable toolchain (coverage instrumentation through LLVM's sancov pass, with
# overflow checks and debug assertions on, so arithmetic overflow is a
# crash too). "short" (make check) gives each target 20 s, "long" 30 min.
# Prints each target's executions and result; exits non-zero on a crash,
# whose input is saved under fuzz/artifacts/.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

case "${1:-short}" in
short) secs=20 ;;
long) secs=1800 ;;
*[!0-9]*) die "usage: fuzz.sh [short|long|SECONDS]" ;;
*) secs=$1 ;;
esac

export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the flags off build scripts.
triple=$(rustc -vV | sed -n 's/^host: //p')
target_dir=$HWC_CACHE/fuzz-target
cargo build -q --release --manifest-path "$HWC_ROOT/fuzz/Cargo.toml" --target-dir "$target_dir" \
	--target "$triple" --bins
bins=$target_dir/$triple/release

rc=0
for t in host_decoder guest_decoder stateful; do
	corpus=$HWC_ROOT/fuzz/corpus/$t
	artifacts=$HWC_ROOT/fuzz/artifacts/$t/
	mkdir -p "$corpus" "$artifacts"
	logf=$(mktemp)
	if "$bins/$t" -max_total_time="$secs" -max_len=4096 \
		-artifact_prefix="$artifacts" -print_final_stats=1 "$corpus" "$HWC_ROOT/fuzz/seeds/$t" \
		>"$logf" 2>&1; then
		result=ok
	else
		result=CRASH
		rc=1
		grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$logf" | head -n 10 >&2
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logf")
	printf '[hwconvey] fuzz %-14s %10s execs in %ss: %s\n' "$t" "${execs:-?}" "$secs" "$result" >&2
	rm -f "$logf"
done
exit $rc
