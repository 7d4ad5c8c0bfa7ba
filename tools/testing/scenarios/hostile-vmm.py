#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""A VMM that drives a hwconvey device's rings by hand, through vhost-vdpa.

Usage: hostile-vmm.py /dev/vhost-vdpa-N /sys/kernel/hwconvey/host

It does what QEMU does to hand the device to a guest (owner, features, its
memory in the device's IOTLB, the rings, DRIVER_OK), then plays the guest's
driver itself, writing descriptors, available indices and kicks into its own
memory. Each case opens the device afresh, so each starts from a reset.

A well-formed request is served (the host counts it, the used ring gives the
chain back). Each attack must break the request queue (bad_chains counts it)
with nothing of the chain taken (messages_received does not move), and the
next well-formed request, after a reset, is served again. A driver that
resets and starts the device in a loop gets snapshots (each a walk of the
whole inventory under the host's lock) no faster than the host's rate limit,
and one that then behaves gets its snapshot. Exits non-zero at the first
check that fails; waits on counters with a bounded timeout.
"""
import ctypes
import fcntl
import mmap
import os
import struct
import sys
import time

# linux/vhost.h
VHOST = 0xAF


def _io(nr):
    return (VHOST << 8) | nr


def _iow(nr, size):
    return (1 << 30) | (size << 16) | (VHOST << 8) | nr


def _ior(nr, size):
    return (2 << 30) | (size << 16) | (VHOST << 8) | nr


VHOST_GET_FEATURES = _ior(0x00, 8)
VHOST_SET_FEATURES = _iow(0x00, 8)
VHOST_SET_OWNER = _io(0x01)
VHOST_SET_VRING_NUM = _iow(0x10, 8)
VHOST_SET_VRING_ADDR = _iow(0x11, 40)
VHOST_SET_VRING_BASE = _iow(0x12, 8)
VHOST_SET_VRING_KICK = _iow(0x20, 8)
VHOST_SET_BACKEND_FEATURES = _iow(0x25, 8)
VHOST_GET_BACKEND_FEATURES = _ior(0x26, 8)
VHOST_VDPA_SET_STATUS = _iow(0x72, 1)
VHOST_VDPA_SET_VRING_ENABLE = _iow(0x75, 8)
VHOST_BACKEND_F_IOTLB_MSG_V2 = 1
VHOST_IOTLB_MSG_V2 = 2
VHOST_IOTLB_UPDATE = 2
VHOST_ACCESS_RW = 3

# virtio
STATUS_ACK, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK = 1, 2, 4, 8
F_VERSION_1, F_ACCESS_PLATFORM = 32, 33
DESC_F_NEXT, DESC_F_WRITE, DESC_F_INDIRECT = 1, 2, 4

# hwconvey (Documentation/protocol.rst)
EVENTQ, REQUESTQ = 0, 1
F_DELTA, F_REQUEST, F_ACK = 0, 1, 2
MSG_SNAPSHOT, MSG_REQUEST, KIND_SNAPSHOT, NODE_ANY = 0x01, 0x81, 3, 0xFFFF
MAX_MSG_SIZE = 4096
MAX_CHAIN = 16

RING = 64
MEM = 1 << 20
DESC, AVAIL, USED, BUF, TABLE = 0x0000, 0x1000, 0x2000, 0x4000, 0x8000
# The event queue, and its buffers.
EDESC, EAVAIL, EUSED, EBUF, EVENTS = 0x10000, 0x11000, 0x12000, 0x20000, 8
TIMEOUT = 30


def request(rid):
    """A snapshot request: the smallest message a guest sends."""
    body = struct.pack("<IBBHIIIIiHH", rid, KIND_SNAPSHOT, 0, NODE_ANY, 0, 0, 0, 0, 0, 0, 0)
    return struct.pack("<BBHI", 1, MSG_REQUEST, 0, 8 + len(body)) + body


class Fail(Exception):
    pass


class Device:
    """The device opened by this process as its VMM, with its request queue set up."""

    def __init__(self, path, sysdir, events=False, delta=True):
        self.sysdir = sysdir
        self.fd = os.open(path, os.O_RDWR)
        self.memfd = os.memfd_create("hostile-vmm")
        os.ftruncate(self.memfd, MEM)
        self.mem = mmap.mmap(self.memfd, MEM, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._anchor = ctypes.c_char.from_buffer(self.mem)
        self.base = ctypes.addressof(self._anchor)
        self.kick_fd = os.eventfd(0)
        self.event_kick_fd = os.eventfd(0)
        fcntl.ioctl(self.fd, VHOST_SET_OWNER)
        backend = self._get_u64(VHOST_GET_BACKEND_FEATURES)
        if not backend & (1 << VHOST_BACKEND_F_IOTLB_MSG_V2):
            raise Fail("vhost-vdpa offers no IOTLB v2 messages")
        self._set_u64(VHOST_SET_BACKEND_FEATURES, 1 << VHOST_BACKEND_F_IOTLB_MSG_V2)
        offered = self._get_u64(VHOST_GET_FEATURES)
        want = sum(1 << b for b in (F_VERSION_1, F_ACCESS_PLATFORM, F_REQUEST, F_ACK))
        if delta:
            want |= 1 << F_DELTA
        if offered & want != want:
            raise Fail(f"the device offers features {offered:#x}, short of {want:#x}")
        self._status(STATUS_ACK | STATUS_DRIVER)
        self._set_u64(VHOST_SET_FEATURES, want)
        self._status(STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK)
        # The driver's memory, at IOVA = its own address (as a VMM in VA mode maps guest RAM).
        msg = struct.pack("<IIQQQBB", VHOST_IOTLB_MSG_V2, 0, self.base, MEM, self.base,
                          VHOST_ACCESS_RW, VHOST_IOTLB_UPDATE)
        os.write(self.fd, msg.ljust(72, b"\0"))
        rings = [(REQUESTQ, DESC, AVAIL, USED, self.kick_fd)]
        if events:
            rings.append((EVENTQ, EDESC, EAVAIL, EUSED, self.event_kick_fd))
        for q, desc, avail, used, kick in rings:
            fcntl.ioctl(self.fd, VHOST_SET_VRING_NUM, struct.pack("<II", q, RING))
            fcntl.ioctl(self.fd, VHOST_SET_VRING_BASE, struct.pack("<II", q, 0))
            fcntl.ioctl(self.fd, VHOST_SET_VRING_ADDR,
                        struct.pack("<IIQQQQ", q, 0, self.base + desc, self.base + used,
                                    self.base + avail, 0))
            fcntl.ioctl(self.fd, VHOST_SET_VRING_KICK, struct.pack("<Ii", q, kick))
            fcntl.ioctl(self.fd, VHOST_VDPA_SET_VRING_ENABLE, struct.pack("<II", q, 1))
        if events:
            # Buffers for the device's messages, as the guest driver posts them.
            for k in range(EVENTS):
                self.desc(k, EBUF + k * MAX_MSG_SIZE, MAX_MSG_SIZE, DESC_F_WRITE, table=EDESC)
                struct.pack_into("<H", self.mem, EAVAIL + 4 + 2 * k, k)
            struct.pack_into("<H", self.mem, EAVAIL + 2, EVENTS)
        self._status(STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK)
        self.avail_idx = 0

    def close(self):
        os.close(self.fd)
        os.close(self.kick_fd)
        os.close(self.event_kick_fd)
        del self._anchor
        self.mem.close()
        os.close(self.memfd)

    def _get_u64(self, req):
        return struct.unpack("<Q", fcntl.ioctl(self.fd, req, b"\0" * 8))[0]

    def _set_u64(self, req, v):
        fcntl.ioctl(self.fd, req, struct.pack("<Q", v))

    def _status(self, s):
        fcntl.ioctl(self.fd, VHOST_VDPA_SET_STATUS, struct.pack("<B", s))

    def desc(self, i, off, length, flags=0, nxt=0, table=DESC):
        struct.pack_into("<QIHH", self.mem, table + 16 * i, self.base + off, length, flags, nxt)

    def put(self, off, data):
        self.mem[off:off + len(data)] = data

    def publish(self, head, idx=None):
        """Makes chain `head` available (or sets the available index to `idx`) and kicks."""
        if idx is None:
            struct.pack_into("<H", self.mem, AVAIL + 4 + 2 * (self.avail_idx % RING), head)
            self.avail_idx = (self.avail_idx + 1) & 0xFFFF
            idx = self.avail_idx
        struct.pack_into("<H", self.mem, AVAIL + 2, idx)
        os.eventfd_write(self.kick_fd, 1)

    def used_idx(self):
        return struct.unpack_from("<H", self.mem, USED + 2)[0]

    def events_used(self):
        return struct.unpack_from("<H", self.mem, EUSED + 2)[0]

    def first_event_type(self):
        """The type of the first message the device wrote into the event queue."""
        head = struct.unpack_from("<I", self.mem, EUSED + 4)[0]
        return self.mem[EBUF + head * MAX_MSG_SIZE + 1]

    def kick_events(self):
        os.eventfd_write(self.event_kick_fd, 1)

    def counter(self, name):
        with open(os.path.join(self.sysdir, name)) as f:
            return int(f.read())

    def wait(self, what, cond):
        deadline = time.monotonic() + TIMEOUT
        while not cond():
            if time.monotonic() > deadline:
                raise Fail(f"no {what} within {TIMEOUT} s")
            time.sleep(0.01)


def served(dev, what, head):
    """Publishes chain `head` and checks it is served: counted and given back."""
    got = dev.counter("messages_received")
    used = dev.used_idx()
    dev.publish(head)
    dev.wait(f"{what} served", lambda: dev.counter("messages_received") == got + 1)
    dev.wait(f"{what} given back", lambda: dev.used_idx() == (used + 1) & 0xFFFF)


def refused(dev, what, head=None, idx=None):
    """Publishes an attack and checks it broke the queue with nothing taken."""
    got = dev.counter("messages_received")
    bad = dev.counter("bad_chains")
    used = dev.used_idx()
    dev.publish(head, idx)
    dev.wait(f"refusal of {what}", lambda: dev.counter("bad_chains") == bad + 1)
    if dev.counter("messages_received") != got:
        raise Fail(f"{what}: the host took {dev.counter('messages_received') - got} message(s)")
    if dev.used_idx() != used:
        raise Fail(f"{what}: the used index moved from {used} to {dev.used_idx()}")
    print(f"  {what}: refused, nothing taken")


def session(path, sysdir, case):
    dev = Device(path, sysdir)
    try:
        case(dev)
    finally:
        dev.close()


def well_formed(dev):
    msg = request(1)
    dev.put(BUF, msg)
    dev.desc(0, BUF, len(msg))
    served(dev, "a well-formed request", 0)
    print("  a well-formed request: served and given back")


def indirect(dev):
    msg = request(2)
    dev.put(BUF, msg)
    dev.desc(0, BUF, len(msg), table=TABLE)
    dev.desc(0, TABLE, 16, DESC_F_INDIRECT)
    refused(dev, "an indirect descriptor (not negotiated)", head=0)


def chain_of(dev, head, n):
    """The request split over n one-byte buffers, the last holding the rest."""
    msg = request(3)
    dev.put(BUF, msg)
    for k in range(n - 1):
        dev.desc(head + k, BUF + k, 1, DESC_F_NEXT, head + k + 1)
    dev.desc(head + n - 1, BUF + n - 1, len(msg) - (n - 1))


def long_chains(dev):
    chain_of(dev, 0, MAX_CHAIN)
    served(dev, f"a chain of {MAX_CHAIN} buffers", 0)
    print(f"  a chain of {MAX_CHAIN} buffers: served")
    chain_of(dev, 20, MAX_CHAIN + 1)
    refused(dev, f"a chain of {MAX_CHAIN + 1} buffers", head=20)


def index_jump(dev):
    msg = request(4)
    dev.put(BUF, msg)
    dev.desc(0, BUF, len(msg))
    for k in range(RING):
        struct.pack_into("<H", dev.mem, AVAIL + 4 + 2 * k, 0)
    # One behind the device's index: 65535 chains "available" in a ring of 64.
    refused(dev, "an available index 65535 ahead", idx=0xFFFF)


def knob(host, name):
    with open(os.path.join(host, name)) as f:
        return int(f.read())


def reset_storm(path, sysdir, host, rounds=20):
    """Starts the device again and again: the snapshots follow the host's rate, not the VMM's."""
    rate, burst = knob(host, "rate_limit"), knob(host, "rate_burst")
    snaps0, held0 = knob(sysdir, "snapshots"), knob(sysdir, "snapshots_deferred")
    t0 = time.monotonic()
    for _ in range(rounds):
        passes = knob(sysdir, "snapshots") + knob(sysdir, "snapshots_deferred")
        dev = Device(path, sysdir, events=True)
        try:
            dev.kick_events()
            # The device's worker ran for this start: it queued a snapshot or held it back.
            dev.wait("a pass of the device", lambda: knob(sysdir, "snapshots") +
                     knob(sysdir, "snapshots_deferred") > passes)
        finally:
            dev.close()
    secs = time.monotonic() - t0
    snaps = knob(sysdir, "snapshots") - snaps0
    held = knob(sysdir, "snapshots_deferred") - held0
    bound = burst + rate * secs + 1
    if snaps > bound:
        raise Fail(f"{snaps} snapshots for {rounds} starts in {secs:.1f} s, at {rate}/s "
                   f"with bursts of {burst}")
    if rounds > bound and held < rounds - bound:
        raise Fail(f"only {held} snapshots held back of {rounds} starts in {secs:.1f} s")
    print(f"  {rounds} starts in {secs:.2f} s: {snaps} snapshots, {held} held back "
          f"(at most {bound:.0f} allowed)")


def no_deltas(path, sysdir, host, updates=20):
    """A driver that takes no deltas gets every update as a snapshot, but no faster than the
    rate limit: the host publishes an update after each pass of the device."""
    rate, burst = knob(host, "rate_limit"), knob(host, "rate_burst")
    dev = Device(path, sysdir, events=True, delta=False)
    try:
        dev.kick_events()
        snaps0, held0 = knob(sysdir, "snapshots"), knob(sysdir, "snapshots_deferred")
        t0 = time.monotonic()
        for _ in range(updates):
            passes = knob(sysdir, "work_passes")
            with open(os.path.join(host, "bench_push"), "w") as f:
                f.write("1")
            dev.wait("a pass after an update", lambda: knob(sysdir, "work_passes") > passes)
        secs = time.monotonic() - t0
    finally:
        dev.close()
    snaps = knob(sysdir, "snapshots") - snaps0
    held = knob(sysdir, "snapshots_deferred") - held0
    bound = burst + rate * secs + 1
    if snaps > bound:
        raise Fail(f"{snaps} snapshots for {updates} updates in {secs:.2f} s without deltas, "
                   f"at {rate}/s with bursts of {burst}")
    print(f"  {updates} updates to a driver without deltas in {secs:.2f} s: {snaps} snapshots, "
          f"{held} held back (at most {bound:.0f} allowed)")


def recovers(dev):
    """A driver that behaves, asking for a snapshot at sampling pace, gets one."""
    deadline = time.monotonic() + TIMEOUT
    rid = 100
    while dev.events_used() == 0:
        if time.monotonic() > deadline:
            raise Fail(f"no snapshot within {TIMEOUT} s after the storm")
        msg = request(rid)
        dev.put(BUF, msg)
        dev.desc(rid % RING, BUF, len(msg))
        dev.publish(rid % RING)
        dev.kick_events()
        rid += 1
        # The guest driver asks again at its sampling period; this is that period.
        t = time.monotonic() + 0.5
        while dev.events_used() == 0 and time.monotonic() < t:
            time.sleep(0.01)
    if dev.first_event_type() != MSG_SNAPSHOT:
        raise Fail(f"the first message after the storm is of type {dev.first_event_type():#x}")
    print(f"  after the storm: a snapshot, {rid - 100} request(s) later")


def main():
    path, host = sys.argv[1], sys.argv[2]
    sysdir = os.path.join(host, "hwc0")
    try:
        for case in (well_formed, indirect, long_chains, index_jump, well_formed):
            session(path, sysdir, case)
        reset_storm(path, sysdir, host)
        no_deltas(path, sysdir, host)
        dev = Device(path, sysdir, events=True)
        try:
            recovers(dev)
        finally:
            dev.close()
        bad = int(open(os.path.join(sysdir, "bad_messages")).read())
        if bad != 0:
            raise Fail(f"{bad} bad messages: the attacks were not stopped at the ring")
    except (Fail, OSError) as e:
        print(f"FAIL: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
