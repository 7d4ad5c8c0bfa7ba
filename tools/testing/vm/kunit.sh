#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs inside the test VM (through vm-run): loads both modules, which runs
# their KUnit suites, copies each suite's KTAP to $HWC_OUT, unloads them.
set -u
cd "$HWC_ROOT"
rc=0
for m in host_mod/hwconvey_host.ko guest_mod/hwconvey_guest.ko; do
	if ! insmod "$m"; then
		echo "insmod $m failed"
		rc=1
	fi
done
for d in /sys/kernel/debug/kunit/hwconvey_* /sys/kernel/debug/kunit/rust_cpuhp /sys/kernel/debug/kunit/rust_sysfs /sys/kernel/debug/kunit/rust_memory_notifier /sys/kernel/debug/kunit/rust_kvm_lifecycle /sys/kernel/debug/kunit/rust_workqueue_disable; do
	[ -d "$d" ] && cp "$d/results" "$HWC_OUT/ktap-$(basename "$d")"
done
dmesg | grep -E 'hwconvey_(host|guest):' | grep -v '^\s*$' | sed 's/^\[[^]]*\] //' | grep -vE '^\s+(ok|not ok|#|KTAP|1\.\.)' || true
for m in hwconvey_guest hwconvey_host; do
	if grep -q "^$m " /proc/modules && ! rmmod "$m"; then
		echo "rmmod $m failed"
		rc=1
	fi
done
exit $rc
