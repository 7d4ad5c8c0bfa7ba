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
# Count the cases from the parser's JSON, at every depth (a parameterised
# case is a group of its own): leaves that passed or were skipped pass; any
# other leaf, and every error the parser reported (a missing result line, a
# plan that does not match), fail.
python3 - "$json" <<'PY' || rc=1
import json, sys
passed = failed = skipped = 0
def walk(group):
    """Counts the leaves of group; returns how many passed."""
    global passed, failed, skipped
    ok = 0
    for case in group.get("test_cases", []):
        if case["status"] == "PASS":
            ok += 1
        elif case["status"] == "SKIP":
            skipped += 1
        else:
            failed += 1
    passed += ok
    return ok + sum(walk(sub) for sub in group.get("sub_groups", []))
root = json.load(open(sys.argv[1]))
walk({"test_cases": root.get("test_cases", [])})
# Every suite must pass a case: one that skipped them all proved nothing.
for suite in root.get("sub_groups", []):
    if walk(suite) == 0:
        print(f"  suite {suite['name']}: no case passed")
        failed += 1
# The root's counts include every group's; errors are what the parser could
# not read (a missing result line, a plan that does not match).
errors = root.get("misc", {}).get("errors", 0)
if errors:
    print(f"  the parser reported {errors} error(s) in the KTAP")
failed += errors
print(f"kunit: {passed + skipped} passed ({skipped} skipped), {failed} failed")
sys.exit(1 if failed else 0)
PY
exit $rc
