#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Both sides report in sysfs. A manual request written to the guest's
# request file reaches the host, which answers; the answer reaches the
# guest. Bad writes fail with EINVAL and send nothing.
. "$(dirname "$0")/lib.sh"

load_host
load_guest
# The guest's own projection stays out of it (one sample a minute): the
# request below is the only one, however busy the VM is.
echo 60000 >$GK/period_ms
# The emulated VM keeps about one CPU busy by itself: with 2 CPUs the guest's
# own projection stays quiet and the only request is the one below.
echo 2 >$H/initial_cpus
echo 3 >$H/default_quota_cpus
[ -d $GK ] && [ -d $H ] || fail "missing $GK or $H"
no_guest_device || fail "the guest reports a device before any: links $(guest_links | xargs), devices $(cat $GK/devices)"
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
bind hwc0 virtio_vdpa
G=$(guest_files) || fail "hwc0 on virtio_vdpa: no guest device link in $GK"
wait_copy
[ "$(cat $H/devices)" = 1 ] || fail "host devices: $(cat $H/devices)"
[ "$(cat $GK/devices)" = 1 ] || fail "guest devices: $(cat $GK/devices)"
[ "$(cat $G/generation)" = "$(cat $H/generation)" ] ||
	fail "guest generation $(cat $G/generation), host $(cat $H/generation)"
[ "$(cat $H/hwc0/guest_id)" -ge 1 ] || fail "guest_id $(cat $H/hwc0/guest_id)"
[ "$(cat $H/hwc0/running)" = 1 ] || fail "hwc0 not running"
for i in $(seq 50); do [ "$(cat $H/hwc0/acks)" -ge 1 ] && break; sleep 0.1; done
[ "$(cat $H/hwc0/acks)" -ge 1 ] || fail "the host got no ack"
[ "$(cat $H/hwc0/last_ack)" = "$(cat $H/generation)" ] || fail "last ack $(cat $H/hwc0/last_ack)"
note "generation $(cat $G/generation) on both sides; $(cat $H/hwc0/acks) ack(s)"

# Lists are served a piece per read(2): read 5 bytes at a time, each is the
# same text as one whole read at the same generation.
for f in $H/free_cpus $HD/cpus $H/hwc0/cpus $H/hwc0/blocks $GD/cpus; do
	for try in 1 2 3 4 5; do
		gen=$(cat $H/generation)
		whole=$(cat $f)
		pieces=$(dd if=$f bs=5 status=none)
		[ "$gen" = "$(cat $H/generation)" ] && break
	done
	[ "$pieces" = "$whole" ] || fail "$f read 5 bytes at a time: '$pieces'; whole: '$whole'"
done
grep -qE '^cpu 0 node [0-9]+ ' $HD/cpus || fail "the host's CPU table: $(cat $HD/cpus)"

# A device's files are on the vDPA device; the host's directory links to it.
[ -L $H/hwc0 ] && [ "$(readlink -f $H/hwc0)" = "$(readlink -f /sys/bus/vdpa/devices/hwc0)" ] ||
	fail "$H/hwc0 is not a link to the vDPA device: $(ls -ld $H/hwc0)"
# The guest's files are on its virtio device (hwc0's, on virtio_vdpa); the
# guest's directory links to it, by the device's name on the virtio bus.
v=${G##*/}
[ -L $G ] && [ "$(readlink -f $G)" = "$(readlink -f /sys/bus/virtio/devices/$v)" ] &&
	[ "$(readlink -f $G)" = "$(readlink -f /sys/bus/vdpa/devices/hwc0/$v)" ] ||
	fail "$G is not a link to hwc0's virtio device: $(ls -ld $G)"

# Every file either module creates is in the ABI documents.
abi=$HWC_ROOT/Documentation/ABI/testing/sysfs-kernel-hwconvey
for f in $(ls $H | sed 's|^|host/|') $(ls $GK | sed 's|^|guest/|'); do
	[ -d "$H/${f#host/}" ] && continue
	[ -L "$GK/${f#guest/}" ] && continue
	grep -qxF "What:		/sys/kernel/hwconvey/$f" $abi || fail "/sys/kernel/hwconvey/$f is not documented in $abi"
done
grep -qxF "What:		/sys/kernel/hwconvey/host/<device>" $abi || fail "the device links are not documented"
grep -qxF "What:		/sys/kernel/hwconvey/guest/<device>" $abi || fail "the guest's device links are not documented"
# On the device, the driver core's files, directories and links are not hwconvey's.
dev_abi=$HWC_ROOT/Documentation/ABI/testing/sysfs-bus-vdpa-devices-hwconvey
n=0
for f in $(ls /sys/bus/vdpa/devices/hwc0/); do
	p=/sys/bus/vdpa/devices/hwc0/$f
	case $f in uevent | driver_override) continue ;; esac
	[ -f $p ] && ! [ -L $p ] || continue
	grep -qxF "What:		/sys/bus/vdpa/devices/<device>/$f" $dev_abi || fail "$p is not documented in $dev_abi"
	n=$((n + 1))
done
[ $n = "$(grep -c '^What:' $dev_abi)" ] || fail "hwc0 has $n hwconvey files, $dev_abi documents $(grep -c '^What:' $dev_abi)"
# The same for the guest's virtio device, beside the virtio core's own files.
virtio_abi=$HWC_ROOT/Documentation/ABI/testing/sysfs-bus-virtio-devices-hwconvey
n=0
for f in $(ls $G/); do
	p=$G/$f
	case $f in device | vendor | status | features | modalias | uevent | driver_override) continue ;; esac
	[ -f $p ] && ! [ -L $p ] || continue
	grep -qxF "What:		/sys/bus/virtio/devices/<device>/$f" $virtio_abi || fail "$p is not documented in $virtio_abi"
	n=$((n + 1))
done
[ $n = "$(grep -c '^What:' $virtio_abi)" ] ||
	fail "${G##*/} has $n hwconvey files, $virtio_abi documents $(grep -c '^What:' $virtio_abi)"

# What names a VMM's processes or what a guest asked for is root's only.
for f in owner_pid vm last_request last_response; do
	[ "$(stat -c %a $H/hwc0/$f)" = 400 ] || fail "$H/hwc0/$f has mode $(stat -c %a $H/hwc0/$f), not 400"
	setpriv --reuid=65534 --regid=65534 --clear-groups cat $H/hwc0/$f >/dev/null 2>&1 &&
		fail "an unprivileged user read $H/hwc0/$f"
done
setpriv --reuid=65534 --regid=65534 --clear-groups cat $H/hwc0/allocation >/dev/null ||
	fail "an unprivileged user cannot read $H/hwc0/allocation"

sent=$(cat $G/messages_sent)
for bad in "cpus 0" "cpus -1" "cpus 2 node" "cpus 2 node x" "memory" "bogus 1" "snapshot 3" "cpus 99999999999"; do
	if echo "$bad" >$G/request 2>/dev/null; then fail "writing '$bad' succeeded"; fi
done
[ "$(cat $G/messages_sent)" = "$sent" ] || fail "bad writes sent messages"
[ "$(cat $G/request)" = none ] || fail "bad writes changed the last request: $(cat $G/request)"
note "8 malformed requests refused with an error, nothing sent"

echo "cpus 2 node 1" >$G/request || fail "writing a request failed"
for i in $(seq 50); do [ "$(cat $G/responses)" -ge 1 ] && break; sleep 0.1; done
[ "$(cat $H/hwc0/requests)" = 1 ] || fail "host saw $(cat $H/hwc0/requests) requests"
[ "$(cat $G/responses)" = 1 ] || fail "guest got $(cat $G/responses) responses"
cat $G/last_response | grep -qE '^id 1 kind cpus status [a-z-]+ reason [a-z-]+ amount [0-9]+ generation [0-9]+$' ||
	fail "last_response: $(cat $G/last_response)"
[ "$(cat $G/request)" = "cpus 2" ] || fail "request file shows $(cat $G/request)"
[ "$(cat $H/hwc0/bad_messages)" = 0 ] && [ "$(cat $G/bad_messages)" = 0 ] || fail "bad messages counted"
note "request -> host, response -> guest: $(cat $G/last_response)"
vdpa dev del hwc0
[ ! -e $G ] && [ ! -L $G ] || fail "${G##*/}'s guest link outlived hwc0"
no_guest_device || fail "guest still reports a device: links $(guest_links | xargs), devices $(cat $GK/devices)"
unload_all
[ ! -e /sys/kernel/hwconvey ] || fail "/sys/kernel/hwconvey left behind"
