#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""A hostile host for the guest driver: crafted messages through the host's debugfs `inject`.

Usage: hostile-host.py GUEST_ID ANSWERED_ID GUEST_FILES

ANSWERED_ID is a request of the guest's that the host has answered already. GUEST_FILES is
the guest driver's directory of files for that device: its link in /sys/kernel/hwconvey/guest
(/sys/kernel/hwconvey/guest/virtioN, to /sys/bus/virtio/devices/virtioN/).

The guest driver (hwconvey_guest, bound to the device of guest GUEST_ID) must reject every
message below: count it in bad_messages, and keep its stored copy, its generation and its last
response as they were. Messages are built from Documentation/protocol.rst, not from the
project's encoder, so that an encoder bug cannot hide a decoder bug. Waits on counters with a
bounded timeout; exits non-zero at the first check that fails.
"""
import os
import struct
import sys
import time

INJECT = "/sys/kernel/debug/hwconvey-host/inject"
H = "/sys/kernel/hwconvey/host"
# The guest device's files (GUEST_FILES), set by main.
G = None
TIMEOUT = 30

SNAPSHOT, DELTA, RESPONSE = 0x01, 0x02, 0x03
LAST = 1
RUN_CPU = 1
PRESENT, ONLINE = 1, 2


class Fail(Exception):
    pass


def read(path):
    with open(path) as f:
        return f.read().strip()


def read_dir(path):
    """The files of subdirectory `path` (one value a file), as sorted (name, value) pairs."""
    return tuple((name, read(os.path.join(path, name))) for name in sorted(os.listdir(path)))


def header(ty, body, flags=0, length=None, version=1):
    n = 8 + len(body) if length is None else length
    return struct.pack("<BBHI", version, ty, flags, n) + body


def run(kind, a, b, first, count, c):
    return struct.pack("<BBHIII", kind, a, b, first, count, c)


def delta(base, generation, *runs):
    return header(DELTA, struct.pack("<QQ", base, generation) + b"".join(runs))


def snapshot(generation, guest, cpus, blocks, nodes, *runs, part=0, flags=LAST):
    body = struct.pack("<QIHHIIIIQ", generation, guest, part, 0, cpus, blocks, nodes, 0,
                       128 << 20)
    return header(SNAPSHOT, body + b"".join(runs), flags=flags)


def response(rid, generation):
    return header(RESPONSE, struct.pack("<IBBHIIQ", rid, 1, 1, 0, 4, 0, generation))


def state():
    """What a hostile message must not change: the generation, and every file of the copy's
    inventory, the last answer and the allocation. Not the last diff: a refused delta makes
    the guest ask for a snapshot, and the host's answer, at the same generation, leaves the
    copy as it was but is an applied update whose diff is empty."""
    return (read(f"{G}/generation"), read_dir(f"{G}/inventory"), read_dir(f"{G}/last_response"),
            read_dir(f"{G}/allocation"))


def rejected(guest, what, msg):
    bad = int(read(f"{G}/bad_messages"))
    before = state()
    with open(INJECT, "wb", buffering=0) as f:
        f.write(struct.pack("<I", guest) + msg)
    deadline = time.monotonic() + TIMEOUT
    while int(read(f"{G}/bad_messages")) == bad:
        if time.monotonic() > deadline:
            raise Fail(f"{what}: not rejected within {TIMEOUT} s (the guest took it?)")
        time.sleep(0.01)
    if int(read(f"{G}/bad_messages")) != bad + 1:
        raise Fail(f"{what}: {int(read(f'{G}/bad_messages')) - bad} rejections for one message")
    if state() != before:
        raise Fail(f"{what}: the guest changed from {before} to {state()}")
    print(f"  {what}: rejected, nothing changed")


def main():
    global G
    if len(sys.argv) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    guest, answered, G = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    cpus, blocks, nodes = (int(read(f"{H}/inventory/{f}")) for f in ("cpus", "blocks", "nodes"))
    gen = int(read(f"{G}/generation"))
    cpu0 = run(RUN_CPU, PRESENT | ONLINE, 0, 0, 1, 0)
    cases = [
        ("a message of protocol version 2",
         header(DELTA, struct.pack("<QQ", gen, gen + 1) + cpu0, version=2)),
        ("a length field that is not the message's",
         header(DELTA, struct.pack("<QQ", gen, gen + 1) + cpu0, length=100)),
        ("an unknown message type", header(0x7F, b"")),
        ("a message shorter than its header", header(DELTA, b"")[:6]),
        ("a delta past the stored generation (a gap)",
         delta(gen + 5, gen + 6, cpu0)),
        ("a delta that does not move the generation", delta(gen, gen, cpu0)),
        ("a delta run past the last CPU",
         delta(gen, gen + 1, run(RUN_CPU, PRESENT | ONLINE, 0, cpus, 1, 0))),
        ("a CPU online but not present",
         delta(gen, gen + 1, run(RUN_CPU, ONLINE, 0, 0, 1, 0))),
        ("a guest holding an offline CPU",
         delta(gen, gen + 1, run(RUN_CPU, PRESENT, 0, 0, 1, guest))),
        ("a CPU on a node that does not exist",
         delta(gen, gen + 1, run(RUN_CPU, PRESENT | ONLINE, nodes, 0, 1, 0))),
        ("a snapshot of 20000 CPUs", snapshot(gen + 1, guest, 20000, blocks, nodes)),
        ("a snapshot that leaves CPUs out",
         snapshot(gen + 1, guest, cpus, 0, nodes, run(RUN_CPU, PRESENT | ONLINE, 0, 0, 1, 0))),
        ("a snapshot for no guest (id 0)", snapshot(gen + 1, 0, cpus, blocks, nodes)),
        ("an answer to a request never sent", response(0x7FFF0000, gen)),
        ("an answer to request 0, which no driver sends", response(0, gen)),
        ("an answer to a request answered already", response(answered, gen)),
    ]
    try:
        for what, msg in cases:
            rejected(guest, what, msg)
    except (Fail, OSError) as e:
        print(f"FAIL: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
