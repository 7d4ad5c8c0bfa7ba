# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the scenarios with a real guest (tools/testing/guest-vm),
# sourced after lib.sh. One guest at a time, in $GDIR; it is killed when the
# scenario exits, whatever the verdict.

GVM=$HWC_ROOT/tools/testing/guest-vm
AGENT=$HWC_ROOT/target/debug/hwconvey-vmm-agent
[ -x "$HWC_QEMU" ] || fail "no patched QEMU in HWC_QEMU (make check builds it: tools/testing/build-qemu.sh)"
[ -x "$AGENT" ] || fail "the tools are not built (make check builds them with cargo test)"
GDIR=$(mktemp -d)
trap '"$GVM" stop "$GDIR" --kill >/dev/null 2>&1; [ -f "$GDIR/paused.pid" ] && kill -9 "$(cat "$GDIR/paused.pid")" 2>/dev/null; rm -rf "$GDIR"' EXIT

# guest_link: prints the device link in the guest's $GK when it holds exactly
# one (the device's files are there through it); fails (status 1) otherwise.
# The virtio bus in the guest numbered the device as it found it: the link
# is looked for, not assumed.
guest_link() {
	local links
	links=$(gsh "for l in $GK/*; do [ -L \"\$l\" ] && [ -f \"\$l/generation\" ] && echo \"\$l\"; done; true") ||
		return 1
	[ -n "$links" ] && [ "$(wc -l <<<"$links")" = 1 ] && echo "$links"
}
has_guest_link() { guest_link >/dev/null; }

# guest_start DEV [VCPUS]: boots a guest with vDPA device DEV (bound to
# vhost_vdpa) and VCPUS vCPUs (1), up to 4, and sets G to the guest's files
# of the device, in the guest: its link in the guest's $GK.
guest_start() {
	local v
	v=$(ls "/sys/bus/vdpa/devices/$1" | grep -m1 '^vhost-vdpa-') || fail "$1 has no vhost-vdpa device"
	# The guest's own projection stays out of it (one sample a minute) until a
	# scenario tests it. A boot may stall for 300 s (three times that in all),
	# stretched as every wait is on the debug kernel.
	out=$("$GVM" start "$GDIR" --vhost "/dev/$v" --cpus "${2:-1}" --max-cpus 4 --memory 256 --max-memory 1024 \
		--timeout $((300 * SLOW)) --module-args period_ms=60000 2>&1) ||
		fail "the guest did not start: $out"
	note "$out"
	wait_until 60 "the hwconvey device's link in the guest's $GK" has_guest_link
	G=$(guest_link) || fail "the guest's $GK: $(gsh ls -l $GK)"
}
guest_pid() { cat "$GDIR/qemu.pid"; }
# vmm_paused DEV: a VMM that holds DEV (bound to vhost_vdpa) without booting:
# the patched QEMU, paused before boot; prints its pid.
vmm_paused() {
	local v
	v=$(ls "/sys/bus/vdpa/devices/$1" | grep -m1 '^vhost-vdpa-') || fail "$1 has no vhost-vdpa device"
	"$HWC_QEMU" -machine q35,memory-backend=ram -accel tcg -m 128M \
		-object memory-backend-memfd,id=ram,size=128M,share=on -nodefaults -display none -S \
		-device "vhost-vdpa-device-pci,vhostdev=/dev/$v,disable-legacy=on" >"$GDIR/paused.log" 2>&1 &
	echo $! >"$GDIR/paused.pid"
	echo $!
}
# guest_stop [--kill]: powers the guest off (or kills QEMU), waits for QEMU.
guest_stop() { "$GVM" stop "$GDIR" "$@" || fail "the guest did not stop"; }
# gsh CMD...: runs a command line in the guest, prints its output.
gsh() { "$GVM" run "$GDIR" --timeout $((120 * SLOW)) "$*"; }
# gfield FILE...: the guest's device files ($G/FILE, in the guest: "generation",
# "last_diff/cpus_onlined"), read in one command, their values on one line.
gfield() {
	local out
	out=$(gsh "cd $G && cat $*") || return 1
	echo $out
}
# gvalues DIR: the files of the guest's device subdirectory $G/DIR (in the
# guest) as "name=value" words on one line, for messages.
gvalues() {
	local out
	out=$(gsh "cd $G/$1 && for f in *; do echo \$f=\$(cat \$f); done") || return 1
	echo $out
}
# gdiff FIELD...: the values of the guest's last_diff/FIELD on one line, read
# in one command between the copy's generation and last_diff/generation,
# read before and after. Fails (status 1, saying why) unless all four are
# the host's generation: the diff is that of the update that brought the
# copy to the host's generation, read as of one state.
gdiff() {
	local f files="generation last_diff/generation" out g
	for f in "$@"; do files+=" last_diff/$f"; done
	out=($(gfield $files last_diff/generation generation)) || return 1
	g=$(cat $H/generation)
	if [ "${out[0]} ${out[1]} ${out[-2]} ${out[-1]}" != "$g $g $g $g" ]; then
		echo "generation ${out[0]} then ${out[-1]}, last_diff/generation ${out[1]} then ${out[-2]}, host $g"
		return 1
	fi
	echo "${out[@]:2:$#}"
}
# range_list FILE: the ids of a range-list file ("0-2,5"), one per line.
range_list() {
	tr ',' '\n' <"$1" | awk -F- 'NF { for (c = $1; c <= ($2 == "" ? $1 : $2); c++) print c }'
}

# guest_in_sync: waits until the guest's copy is at the host's generation.
guest_in_sync() {
	local end=$((SECONDS + 60))
	until [ "$(gfield generation)" = "$(cat $H/generation)" ]; do
		[ $SECONDS -lt $end ] ||
			fail "guest copy at generation $(gfield generation), host at $(cat $H/generation), after 60 s"
		sleep 0.3
	done
}

# guest_agrees WHEN: the guest's allocation and its view of every host CPU
# equal what the host shows (the guest says "mine" where the host names it).
guest_agrees() {
	local gid hc gc
	gid=$(cat $H/hwc0/guest_id)
	[ "$(gfield allocation/cpus allocation/memory_mib)" = "$(cat $H/hwc0/allocation/cpus) $(cat $H/hwc0/allocation/memory_mib)" ] ||
		fail "$1: guest allocation '$(gvalues allocation)', host '$(values $H/hwc0/allocation)'"
	hc=$(cat $HD/cpus)
	gc=$(gsh cat "$GD/cpus" | sed "s/ mine\$/ guest $gid/")
	[ "$gc" = "$hc" ] || fail "$1: guest view of the CPUs differs: $(diff <(echo "$hc") <(echo "$gc") | tr '\n' ' ')"
}
