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

# files_in DIR SKIP: DIR's files and its subdirectories' (one level down, as
# "<subdirectory>/<file>"), one a line; neither links nor what matches the
# extended regex SKIP (the driver core's and the bus's own files and
# directories). A subdirectory holds files only: a directory in one is
# listed as "<subdirectory>/<directory>/", which no document names.
files_in() {
	local f g
	for f in "$1"/*; do
		[[ ${f##*/} =~ ^($2)$ ]] && continue
		[ -L "$f" ] && continue
		if [ -d "$f" ]; then
			for g in "$f"/*; do
				[ -L "$g" ] && continue
				[ -d "$g" ] && echo "${f##*/}/${g##*/}/"
				[ -f "$g" ] && echo "${f##*/}/${g##*/}"
			done
		elif [ -f "$f" ]; then
			echo "${f##*/}"
		fi
	done
	return 0
}
# abi_check DIR SKIP DOC PREFIX: every file of DIR (files_in DIR SKIP) is
# documented in DOC as "What: PREFIX/<file>", and DOC documents as many files
# under PREFIX as there are: none that DIR lacks. Sets n to the count.
abi_check() {
	local f files
	files=$(files_in "$1" "$2")
	n=0
	for f in $files; do
		grep -qxF "What:		$4/$f" "$3" || fail "$1/$f is not documented in $3"
		n=$((n + 1))
	done
	[ $n = "$(grep -c "^What:		$4/" "$3")" ] ||
		fail "$1 has $n hwconvey files, $3 documents $(grep -c "^What:		$4/" "$3") under $4: $(echo $files)"
}
# Every file either module creates is in the ABI documents, the files of the
# subdirectories (the host's inventory/) too, and every file they document
# exists.
abi=$HWC_ROOT/Documentation/ABI/testing/sysfs-kernel-hwconvey
for f in $(files_in $H '' | sed 's|^|host/|') $(files_in $GK '' | sed 's|^|guest/|'); do
	grep -qxF "What:		/sys/kernel/hwconvey/$f" $abi || fail "/sys/kernel/hwconvey/$f is not documented in $abi"
done
for f in $(grep '^What:' $abi | awk '{print $2}' | grep -v '<'); do
	[ -f "$f" ] || fail "$abi documents $f, which is not there"
done
grep -qxF "What:		/sys/kernel/hwconvey/host/<device>" $abi || fail "the device links are not documented"
grep -qxF "What:		/sys/kernel/hwconvey/guest/<device>" $abi || fail "the guest's device links are not documented"
# On the device, the driver core's files, directories and links are not
# hwconvey's, nor the device of the bus driver it is bound to (virtio_vdpa's
# virtioN, vhost_vdpa's vhost-vdpa-N).
dev_abi=$HWC_ROOT/Documentation/ABI/testing/sysfs-bus-vdpa-devices-hwconvey
VDPA_CORE='uevent|driver_override|power|virtio[0-9]+|vhost-vdpa-[0-9]+'
abi_check /sys/bus/vdpa/devices/hwc0 "$VDPA_CORE" $dev_abi '/sys/bus/vdpa/devices/<device>'
[ "$n" = "$(grep -c '^What:' $dev_abi)" ] || fail "$dev_abi documents $(grep -c '^What:' $dev_abi) files, hwc0 has $n"
on_hwc0=$n
[ -d $H/hwc0/allocation ] && [ -d $H/hwc0/owed ] || fail "hwc0 has no allocation/ or owed/: $(ls $H/hwc0/)"
# The same for the guest's virtio device, beside the virtio core's own files.
virtio_abi=$HWC_ROOT/Documentation/ABI/testing/sysfs-bus-virtio-devices-hwconvey
VIRTIO_CORE='device|vendor|status|features|modalias|uevent|driver_override|power'
abi_check $G "$VIRTIO_CORE" $virtio_abi '/sys/bus/virtio/devices/<device>'
[ "$n" = "$(grep -c '^What:' $virtio_abi)" ] ||
	fail "$virtio_abi documents $(grep -c '^What:' $virtio_abi) files, ${G##*/} has $n"
note "every file documented: $(files_in $H '' | wc -l) in $H, $(files_in $GK '' | wc -l) in $GK," \
	"$on_hwc0 on hwc0, $n on ${G##*/}"

# A file holds one value: one word on one line (a range list is one word, an
# empty one none).
for f in $(files_in $H '' | sed "s|^|$H/|") $(files_in $GK '' | sed "s|^|$GK/|") \
	$(files_in $H/hwc0 "$VDPA_CORE" | sed "s|^|$H/hwc0/|") $(files_in $G "$VIRTIO_CORE|request" | sed "s|^|$G/|"); do
	v=$(cat $f) || fail "$f does not read"
	[ "$(wc -l <$f)" = 1 ] && [[ $v =~ ^[^[:space:]]*$ ]] || fail "$f holds more than one value: '$(cat $f)'"
done
# The guest's copy counts what the host's inventory counts.
for f in cpus online_cpus blocks online_blocks block_mib nodes; do
	[ "$(cat $G/inventory/$f)" = "$(cat $H/inventory/$f)" ] ||
		fail "inventory/$f: the guest's copy $(cat $G/inventory/$f), the host $(cat $H/inventory/$f)"
done
[ "$(cat $H/inventory/online_cpus)" = "$(nproc)" ] || fail "the host's inventory: $(values $H/inventory), nproc $(nproc)"
[ "$(cat $G/allocation/cpus)" = "$(cat $H/hwc0/allocation/cpus)" ] && [ "$(cat $G/allocation/cpus)" = 2 ] &&
	[ "$(cat $G/allocation/memory_mib)" = "$(cat $H/hwc0/allocation/memory_mib)" ] ||
	fail "allocation: the guest's copy $(values $G/allocation), the host $(values $H/hwc0/allocation) (2 CPUs initially)"
[ "$(cat $H/hwc0/owed/cpus) $(cat $H/hwc0/owed/blocks)" = "0 0" ] || fail "hwc0 is owed $(values $H/hwc0/owed)"
# No VM in loopback.
[ "$(cat $H/hwc0/vm) $(cat $H/hwc0/vm_vcpus)" = "none 0" ] || fail "hwc0: vm $(cat $H/hwc0/vm), vm_vcpus $(cat $H/hwc0/vm_vcpus)"
# No answer yet: id 0, no kind, status or reason, all numbers 0.
[ "$(values $G/last_response)" = "amount=0 generation=0 id=0 kind=none reason=none status=none" ] ||
	fail "before any request: $(values $G/last_response)"
[ "$(cat $HD/hwc0/last_request)" = none ] && [ "$(cat $HD/hwc0/last_response)" = none ] ||
	fail "the host records a request before any: $(cat $HD/hwc0/last_request); $(cat $HD/hwc0/last_response)"

# What names a VMM's processes or its VM is root's only; what a guest asked
# for and was answered is in debugfs, root's only too.
for f in owner_pid vm vm_vcpus; do
	[ "$(stat -c %a $H/hwc0/$f)" = 400 ] || fail "$H/hwc0/$f has mode $(stat -c %a $H/hwc0/$f), not 400"
	setpriv --reuid=65534 --regid=65534 --clear-groups cat $H/hwc0/$f >/dev/null 2>&1 &&
		fail "an unprivileged user read $H/hwc0/$f"
done
for f in $HD/hwc0/last_request $HD/hwc0/last_response; do
	setpriv --reuid=65534 --regid=65534 --clear-groups cat $f >/dev/null 2>&1 &&
		fail "an unprivileged user read $f"
done
for f in allocation/cpus allocation/memory_mib owed/cpus owed/blocks; do
	setpriv --reuid=65534 --regid=65534 --clear-groups cat $H/hwc0/$f >/dev/null ||
		fail "an unprivileged user cannot read $H/hwc0/$f"
done
# The request file takes writes only.
[ "$(stat -c %a $G/request)" = 200 ] || fail "$G/request has mode $(stat -c %a $G/request), not 200"
cat $G/request >/dev/null 2>&1 && fail "$G/request can be read"

sent=$(cat $G/messages_sent)
for bad in "cpus 0" "cpus -1" "cpus 2 node" "cpus 2 node x" "memory" "bogus 1" "snapshot 3" "cpus 99999999999"; do
	if echo "$bad" >$G/request 2>/dev/null; then fail "writing '$bad' succeeded"; fi
done
[ "$(cat $G/messages_sent)" = "$sent" ] || fail "bad writes sent messages"
[ "$(cat $H/hwc0/requests)" = 0 ] && [ "$(cat $HD/hwc0/last_request)" = none ] ||
	fail "bad writes reached the host: $(cat $H/hwc0/requests) requests, the last $(cat $HD/hwc0/last_request)"
[ "$(cat $G/responses)" = 0 ] && [ "$(cat $G/last_response/id)" = 0 ] ||
	fail "bad writes were answered: $(cat $G/responses) responses, the last $(values $G/last_response)"
note "8 malformed requests refused with an error, nothing sent"

echo "cpus 2 node 1" >$G/request || fail "writing a request failed"
for i in $(seq 50); do [ "$(cat $G/responses)" -ge 1 ] && break; sleep 0.1; done
[ "$(cat $H/hwc0/requests)" = 1 ] || fail "host saw $(cat $H/hwc0/requests) requests"
[ "$(cat $G/responses)" = 1 ] || fail "guest got $(cat $G/responses) responses"
[ "$(cat $G/messages_sent)" -gt "$sent" ] || fail "the request was not counted as sent: $(cat $G/messages_sent)"
# The host took the request as written: 2 CPUs on node 1, by hand.
grep -qE '^id 1 kind cpus amount 2 node 1 motive 0 manual demand [0-9]+ held [0-9]+$' $HD/hwc0/last_request ||
	fail "the host's last request: $(cat $HD/hwc0/last_request)"
# Its answer, as the guest has it, file by file; and as the host recorded it.
snap $G/last_response
[ "${S[id]}" = 1 ] && [ "${S[kind]}" = cpus ] && [[ ${S[status]} =~ ^(granted|partial|denied|busy)$ ]] &&
	[[ ${S[reason]} =~ ^[a-z-]+$ ]] && [[ ${S[amount]} =~ ^[0-9]+$ ]] && [[ ${S[generation]} =~ ^[0-9]+$ ]] ||
	fail "last_response: $(values $G/last_response)"
answer="id ${S[id]} kind ${S[kind]} status ${S[status]} reason ${S[reason]} amount ${S[amount]} generation ${S[generation]}"
[ "$(cat $HD/hwc0/last_response)" = "$answer" ] ||
	fail "the host answered '$(cat $HD/hwc0/last_response)', the guest has '$answer'"
[ "$(cat $H/hwc0/bad_messages)" = 0 ] && [ "$(cat $G/bad_messages)" = 0 ] || fail "bad messages counted"
note "request -> host ($(cat $HD/hwc0/last_request)), response -> guest: $answer"
vdpa dev del hwc0
[ ! -e $G ] && [ ! -L $G ] || fail "${G##*/}'s guest link outlived hwc0"
no_guest_device || fail "guest still reports a device: links $(guest_links | xargs), devices $(cat $GK/devices)"
unload_all
[ ! -e /sys/kernel/hwconvey ] || fail "/sys/kernel/hwconvey left behind"
