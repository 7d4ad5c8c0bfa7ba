#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# hwconveyctl on the real tree: its JSON says what the files say (the guest's
# device files through its link, without the virtio core's), a knob it sets
# is set, a bad value comes back with the module's errno and changes nothing,
# a manual request gets its answer, and watch sees a hotplug event.
. "$(dirname "$0")/lib.sh"

CTL=${HWCONVEYCTL:-$HWC_ROOT/target/debug/hwconveyctl}
[ -x "$CTL" ] || fail "$CTL is not built (make check builds it with cargo test)"

load_host
load_guest
# The guest's own projection stays out of it (one sample a minute): the
# request below is the only one, however busy the VM is.
echo 60000 >$GK/period_ms
echo 2 >$H/initial_cpus
echo 3 >$H/default_quota_cpus
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
bind hwc0 virtio_vdpa
G=$(guest_files) || fail "hwc0 on virtio_vdpa: no guest device link in $GK"
v=${G##*/}
wait_copy

json=$("$CTL" --json status) || fail "hwconveyctl --json status"
check() { # check PYTHON-EXPRESSION: about the JSON in $json, as v
	python3 -c "import json, sys; v = json.loads(sys.stdin.read()); sys.exit(0 if ($1) else 1)" <<<"$json" ||
		fail "hwconveyctl JSON: not $1"
}
check "v['host']['generation'] == $(cat $H/generation)"
check "v['guest']['period_ms'] == 60000 and v['guest']['devices'] == 1"
check "list(v['guest']['bound']) == ['$v']"
check "v['guest']['bound']['$v']['generation'] == $(cat $G/generation)"
# Of the virtio device's directory, only hwconvey's files.
check "not {'device', 'vendor', 'status', 'features', 'modalias', 'uevent', 'driver', 'subsystem', 'power'} & set(v['guest']['bound']['$v'])"
# A device's files are hwconvey's: single values, and subdirectories as objects; the
# request file takes writes only and is not read.
check "set(v['guest']['bound']['$v']) == {'generation', 'events', 'messages_received', 'updates_applied', 'bad_messages', 'messages_sent', 'responses', 'last_update_ns', 'last_update_pass_ns', 'sampling_ns', 'allocation', 'inventory', 'last_response', 'projection', 'last_diff'}"
check "len(v['host']['guests']['hwc0']['cpus']) == 2"
check "v['host']['guests']['hwc0']['allocation'] == {'cpus': 2, 'memory_mib': 0}"
check "v['host']['guests']['hwc0']['owed'] == {'cpus': 0, 'blocks': 0}"
check "v['guest']['bound']['$v']['allocation']['cpus'] == len(v['host']['guests']['hwc0']['cpus'])"
check "v['guest']['bound']['$v']['allocation'] == v['host']['guests']['hwc0']['allocation']"
# The host's inventory, file by file, and the guest's copy counts the same.
for f in cpus online_cpus blocks online_blocks block_mib nodes; do
	check "v['host']['inventory']['$f'] == $(cat $H/inventory/$f) == v['guest']['bound']['$v']['inventory']['$f']"
done
check "v['guest']['bound']['$v']['inventory']['my_cpus'] == 2"
# No answer yet: id 0, and names "none" as names.
check "v['guest']['bound']['$v']['last_response'] == {'id': 0, 'kind': 'none', 'status': 'none', 'reason': 'none', 'amount': 0, 'generation': 0}"
check "v['guest']['bound']['$v']['last_diff']['generation'] == v['guest']['bound']['$v']['generation']"
check "v['guest']['bound']['$v']['projection']['samples'] >= 0 and 'projected_mcpu' in v['guest']['bound']['$v']['projection']"
[ "$("$CTL" --json get host/hwc0/allocation/cpus)" = 2 ] || fail "get host/hwc0/allocation/cpus: $("$CTL" --json get host/hwc0/allocation/cpus)"
[ "$("$CTL" --json get guest/$v/allocation)" = '{"cpus":2,"memory_mib":0}' ] ||
	fail "get guest/$v/allocation: $("$CTL" --json get guest/$v/allocation)"
# The CPUs the host lists for the guest are those the guest's copy calls its own.
check "v['host']['guests']['hwc0']['cpus'] == [$(awk '$NF == "mine" {print $2}' $GD/cpus | paste -sd,)]"
"$CTL" guests | grep -qE '^hwc0 +[0-9]+ +1 ' || fail "guests table: $("$CTL" guests)"
note "status: $("$CTL" guests | sed -n 2p)"

"$CTL" set host/hwc0/quota_cpus 4 || fail "set quota_cpus 4"
[ "$(cat $H/hwc0/quota_cpus)" = 4 ] || fail "quota_cpus is $(cat $H/hwc0/quota_cpus)"
err=$("$CTL" set host/rate_limit 0 2>&1) && fail "rate_limit 0 was accepted"
grep -q "(EINVAL)" <<<"$err" || fail "the error does not name EINVAL: $err"
[ "$(cat $H/rate_limit)" = 20 ] || fail "a refused write changed rate_limit to $(cat $H/rate_limit)"
note "set quota_cpus 4; rate_limit 0 refused: ${err#hwconveyctl: }"

err=$("$CTL" request --device virtio999999 cpus 1 2>&1) && fail "a request through a device not bound was accepted"
grep -q "virtio999999" <<<"$err" || fail "the error does not name the device: $err"
answer=$("$CTL" --json request cpus 1) || fail "request cpus 1: $answer"
python3 -c "import json, sys; a = json.loads(sys.argv[1]); sys.exit(a['status'] != 'granted' or a['amount'] != 1)" "$answer" ||
	fail "request answer: $answer"
[ "$(cat $H/hwc0/requests)" -ge 1 ] || fail "the host saw no request"
# The answer printed is the guest's last, file by file, and the one the host recorded.
python3 -c "import json, sys; a = json.loads(sys.argv[1]); sys.exit(sys.argv[2] != ' '.join(f'{k} {a[k]}' for k in ('id', 'kind', 'status', 'reason', 'amount', 'generation')))" \
	"$answer" "$(cat $HD/hwc0/last_response)" || fail "request answer $answer; the host's record: $(cat $HD/hwc0/last_response)"
[ "$(cat $G/last_response/id) $(cat $G/last_response/kind)" = "1 cpus" ] || fail "the guest's last answer: $(values $G/last_response)"
# At its quota the guest is denied, which the exit status says; the answer is printed all
# the same.
"$CTL" set host/hwc0/quota_cpus 3 || fail "set quota_cpus 3"
text=$("$CTL" request cpus 1) && fail "request cpus 1 beyond the quota succeeded: $text"
[ "$text" = "$(cat $HD/hwc0/last_response)" ] && [[ $text =~ ^id\ 2\ kind\ cpus\ status\ denied\ reason\ quota\  ]] ||
	fail "request cpus 1 at the quota printed '$text'; the host answered '$(cat $HD/hwc0/last_response)'"
note "request cpus 1: $answer"

# watch sees the hotplug event and the guest's CPUs change when one of them
# goes offline (the host replaces it), and the guest device applying the
# update. It samples once a minute unless the modules announce a change:
# seeing it within 20 s means it was woken, through poll(2) on the events
# files (the host's, the guest's devices count and each guest device's).
victim=$(tr ',-' '\n\n' <$H/hwc0/cpus | grep -vx 0 | head -1)
[ -n "$victim" ] || fail "no offlinable CPU among $(cat $H/hwc0/cpus)"
events=$(cat $H/events)
"$CTL" --json watch --interval 60000 >/tmp/watch.out 2>/tmp/watch.err &
watcher=$!
# Its first line comes after its first sample, which the change must follow.
wait_until 30 "watch's first sample" grep -qF '"watching":["host/events","guest/devices","guest/'$v'/events"]' /tmp/watch.out
echo 0 >/sys/devices/system/cpu/cpu$victim/online || fail "offline cpu$victim"
[ "$(cat $H/events)" -gt "$events" ] || fail "the host counted no event: $(cat $H/events)"
# seen: waits (up to 20 s) until watch has reported the hotplug event,
# cpu$victim leaving hwc0 and the guest device's new generation.
seen() {
	python3 - "$victim" /tmp/watch.out "$v" <<'PY'
import json, sys, time
victim = int(sys.argv[1])
guest_generation = f"guest/{sys.argv[3]}/generation"
deadline = time.monotonic() + 20
while True:
    events = []
    for line in open(sys.argv[2]):
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line still being written
        if "path" in event:  # not the first line, which names what wakes watch
            events.append(event)
    paths = {e["path"] for e in events}
    moved = any(e["path"] == "host/hwc0/cpus" and victim in (e["old"] or []) and
                victim not in (e["new"] or []) for e in events)
    if "host/cpu_events" in paths and moved and guest_generation in paths:
        sys.exit(0)
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.1)
PY
}
seen
found=$?
kill $watcher
wait $watcher 2>/dev/null
[ $found = 0 ] || fail "watch did not report cpu$victim leaving hwc0 and $v's new generation: $(cat /tmp/watch.out /tmp/watch.err)"
note "watch: $(grep -c '"path"' /tmp/watch.out) changes, among them $(grep '"host/hwc0/cpus"' /tmp/watch.out | head -1)"
echo 1 >/sys/devices/system/cpu/cpu$victim/online || fail "online cpu$victim"

vdpa dev del hwc0
unload_all
"$CTL" status >/dev/null 2>&1 && fail "status succeeded with no module loaded"
true
