#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The management device creates a device; bound to virtio_vdpa, the guest
# driver probes it; the host's snapshot reaches the guest, which applies it
# and acks it; the ack reaches the host. Deleting the device unbinds the
# driver cleanly.
. "$(dirname "$0")/lib.sh"

load_host
load_guest
vdpa mgmtdev show hwconvey | grep -q "max_supported_vqs 2" || fail "vdpa mgmtdev show does not list hwconvey"
mark
vdpa dev add name hwc0 mgmtdev hwconvey || fail "vdpa dev add"
bind hwc0 virtio_vdpa
wait_log 'hwconvey_guest: generation [0-9]+: snapshot applied: host has [0-9]+ online CPUs'
host_cpus=$(since | grep -oE 'snapshot applied: host has [0-9]+' | tail -1 | grep -oE '[0-9]+$')
[ "$host_cpus" = "$(nproc)" ] || fail "the guest's copy has $host_cpus online CPUs, the host $(nproc)"
note "host -> guest: snapshot of $host_cpus CPUs applied"
mark
vdpa dev del hwc0 || fail "vdpa dev del"
wait_log 'hwc0: device for guest [0-9]+ removed: [0-9]+ sent, [0-9]+ received \([0-9]+ requests, [1-9][0-9]* acks\), 0 bad'
wait_log 'hwconvey virtio[0-9]+: unbound: [1-9][0-9]* messages received .*, 0 bad, [1-9][0-9]* sent'
note "guest -> host: ack received; device deleted, driver unbound"
unload_all
