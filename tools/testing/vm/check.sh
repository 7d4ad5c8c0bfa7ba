#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the test VM (through vm-run) for make check: the KUnit suites
# (vm/kunit.sh), then the scenario tests (vm/scenarios.sh), whose TAP goes to
# $HWC_OUT/scenarios as well. On a kernel with kmemleak (HWC_KCONFIG=debug),
# everything allocated while the modules ran must have been freed once they
# are unloaded.
set -u
here=$(cd "$(dirname "$0")" && pwd)
leaks=/sys/kernel/debug/kmemleak
rc=0
# Forget what boot left: only what the tests allocate counts.
[ -w $leaks ] && echo clear >$leaks
"$here/kunit.sh" || rc=1
"$here/scenarios.sh" | tee "$HWC_OUT/scenarios"
[ "${PIPESTATUS[0]}" = 0 ] || rc=1
if [ -w $leaks ]; then
	# Two scans: an object must look unreferenced twice to be reported.
	echo scan >$leaks
	sleep 1
	echo scan >$leaks
	n=$(grep -c '^unreferenced object' $leaks)
	echo "kmemleak: $n unreferenced objects after the tests"
	if [ "$n" != 0 ]; then
		head -100 $leaks
		rc=1
	fi
fi
exit $rc
