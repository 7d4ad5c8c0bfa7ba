#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Reads the KUnit results of the expected suites and summarises them.

usage: ktap.py DIR SUITE... -- for each SUITE, DIR/ktap-SUITE holds the
suite's KTAP (from /sys/kernel/debug/kunit/SUITE/results). Prints each case
and a closing "N passed, N failed" line; exits 1 if a case failed, a suite
is missing or empty, or a suite's own result is not ok.
"""
import os
import re
import sys

CASE = re.compile(r'^(\s+)(not ok|ok) (\d+) (\S+)(.*)$')
SUITE = re.compile(r'^(not ok|ok) (\d+) (\S+)')


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out, suites = argv[1], argv[2:]
    passed = failed = 0
    bad = []
    for suite in suites:
        path = os.path.join(out, 'ktap-' + suite)
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            bad.append(f'suite {suite}: no results (did the module load?)')
            failed += 1
            continue
        cases = 0
        suite_ok = None
        with open(path, encoding='utf-8', errors='replace') as f:
            lines = f.read().splitlines()
        for line in lines:
            m = CASE.match(line)
            if m:
                cases += 1
                ok = m.group(2) == 'ok'
                skip = '# SKIP' in m.group(5)
                print(f'  {"PASS" if ok else "FAIL"} {suite}.{m.group(4)}{" (skipped)" if skip else ""}')
                if ok:
                    passed += 1
                else:
                    failed += 1
                continue
            m = SUITE.match(line)
            if m and m.group(3) == suite:
                suite_ok = m.group(1) == 'ok'
        if cases == 0:
            bad.append(f'suite {suite}: no test cases ran')
            failed += 1
        elif suite_ok is False:
            bad.append(f'suite {suite}: reported not ok')
        for line in lines:
            if 'ASSERTION FAILED' in line or 'EXPECTATION FAILED' in line or 'Expected' in line:
                print('    ' + line.strip())
    for b in bad:
        print('  ' + b)
    print(f'kunit: {passed} passed, {failed} failed')
    return 0 if failed == 0 and not bad else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv))
