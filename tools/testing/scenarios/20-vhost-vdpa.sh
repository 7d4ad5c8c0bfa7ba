#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The same device bound to vhost_vdpa yields a /dev/vhost-vdpa-N character
# device (what a VMM opens to hand it to a guest), whose owner the host
# reports; moved back to virtio_vdpa, the guest driver probes it again from
# scratch.
. "$(dirname "$0")/lib.sh"

load_host
load_guest
vdpa dev add name hwc0 mgmtdev faux/hwconvey || fail "vdpa dev add"
bind hwc0 vhost_vdpa
chr=$(vhost_chardev hwc0) || fail "$chr"
chr=${chr#/dev/}
note "bound to vhost_vdpa: /dev/$chr"
# A VMM opens it and takes ownership (VHOST_SET_OWNER): vhost-vdpa binds the
# device to the VMM's address space, and the host reports which process owns
# it; closing the file unbinds it.
[ "$(cat $H/hwc0/owner_pid)" = none ] || fail "owner_pid before any owner: $(cat $H/hwc0/owner_pid)"
out=$(python3 - "/dev/$chr" $H/hwc0/owner_pid <<'PY'
import fcntl, os, sys
VHOST_SET_OWNER = 0xAF01
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.ioctl(fd, VHOST_SET_OWNER)
owner = open(sys.argv[2]).read().strip()
os.close(fd)
after = open(sys.argv[2]).read().strip()
print(f"pid {os.getpid()} owner_pid {owner} after close {after}")
sys.exit(0 if owner == str(os.getpid()) and after == "none" else 1)
PY
) || fail "owner_pid did not follow VHOST_SET_OWNER and close: $out"
note "VHOST_SET_OWNER: $out"
# A VMM maps its memory into the device's IOTLB (the device works on the
# VMM's virtual addresses: shared file-backed memory, as QEMU's), then goes
# away. Its mappings must go with it: a driver bound afterwards reaches its
# rings through the default passthrough again, not through the VMM's ranges.
out=$(python3 - "/dev/$chr" <<'PY'
import ctypes, fcntl, mmap, os, struct, sys
VHOST_SET_OWNER = 0xAF01
VHOST_IOTLB_MSG, VHOST_IOTLB_UPDATE, VHOST_ACCESS_RW = 1, 2, 3
size = 1 << 20
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.ioctl(fd, VHOST_SET_OWNER)
mfd = os.memfd_create("hwconvey-vmm")
os.ftruncate(mfd, size)
mem = mmap.mmap(mfd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
# struct vhost_msg { int type; struct vhost_iotlb_msg iotlb (at 8); padding to 72 }
msg = struct.pack("<i4xQQQBB", VHOST_IOTLB_MSG, 0, size, addr, VHOST_ACCESS_RW,
                  VHOST_IOTLB_UPDATE).ljust(72, b"\0")
n = os.write(fd, msg)
os.close(fd)
print(f"mapped iova 0..{size:#x} to {addr:#x}: {n} bytes written")
sys.exit(0 if n == len(msg) else 1)
PY
) || fail "the IOTLB update was refused: $out"
note "a VMM $out, then closed the device"
no_guest_device || fail "the guest has a device while hwc0 is on vhost_vdpa: links $(guest_links | xargs), devices $(cat $GK/devices)"
bind hwc0 virtio_vdpa
G=$(guest_files) || fail "hwc0 back on virtio_vdpa: no guest device link in $GK"
wait_copy
note "back on virtio_vdpa: the guest driver got a fresh snapshot through the passthrough IOTLB"
vdpa dev del hwc0 || fail "vdpa dev del"
unload_all
