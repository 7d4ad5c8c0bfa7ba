#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# kunit-results.sh KSRC DIR SUITE...: reads the KUnit results the VM copied
# out (DIR/ktap-SUITE, each suite's debugfs "results" KTAP) with the kernel's
# own parser, tools/testing/kunit/kunit.py in KSRC, and ends with
# "kunit: N passed, N failed". A suite with no results is a failed test. Exits
# non-zero if anything failed.
set -euo pipefail

[ $# -ge 3 ] || { echo "usage: $0 KSRC DIR SUITE..." >&2; exit 2; }
ksrc=$1 dir=$2
shift 2

# Each results file is a KTAP document of one suite ("1..1", "ok 1 SUITE");
# kunit.py parse reads one document, so they become the subtests of one.
ktap=$(mktemp "${TMPDIR:-/tmp}/kunit.XXXXXX")
json=$ktap.json
trap 'rm -f "$ktap" "$json"' EXIT
{
	echo "KTAP version 1"
	echo "1..$#"
	i=0
	for suite in "$@"; do
		i=$((i + 1))
		f=$dir/ktap-$suite
		if [ -s "$f" ]; then
			sed -E -e '/^(KTAP version 1|1\.\.1|# Totals: .*)$/d' \
				-e "s/^(not ok|ok) 1 /\1 $i /" "$f"
		else
			echo "not ok $i $suite # no results: did the module load?"
		fi
	done
} >"$ktap"

rc=0
python3 "$ksrc/tools/testing/kunit/kunit.py" parse --json="$json" "$ktap" || rc=$?
# Count the cases from the parser's JSON: the suites' cases, and the suites
# that reported no cases (they are the root's own test cases).
python3 - "$json" <<'PY' || rc=1
import json, sys
root = json.load(open(sys.argv[1]))
cases = list(root["test_cases"])
for suite in root["sub_groups"]:
    cases += suite["test_cases"]
passed = sum(case["status"] in ("PASS", "SKIP") for case in cases)
failed = len(cases) - passed
print(f"kunit: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
exit $rc
