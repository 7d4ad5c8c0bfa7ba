#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the test VM (through vm-run) for make check: the KUnit suites
# (vm/kunit.sh), then the scenario tests (vm/scenarios.sh), whose TAP goes to
# $HWC_OUT/scenarios as well.
set -u
here=$(cd "$(dirname "$0")" && pwd)
rc=0
"$here/kunit.sh" || rc=1
"$here/scenarios.sh" | tee "$HWC_OUT/scenarios"
[ "${PIPESTATUS[0]}" = 0 ] || rc=1
exit $rc
