// SPDX-License-Identifier: GPL-2.0

//! Writes valid messages as seed inputs for the fuzzers:
//! `cargo run -p hwconvey-proto --features std --example fuzz_seeds -- fuzz/seeds`.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::fs;
use std::path::Path;

use hwconvey_proto::inventory::*;
use hwconvey_proto::message::*;
use hwconvey_proto::run::Run;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/seeds".into());
    let dir = Path::new(&dir);
    let write = |target: &str, name: &str, bytes: &[u8]| {
        fs::create_dir_all(dir.join(target)).unwrap();
        fs::write(dir.join(target).join(name), bytes).unwrap();
    };
    let mut buf = [0u8; MAX_MSG_SIZE];

    let req = Request {
        id: 1,
        kind: RequestKind::Cpus,
        node: NodeId::new(0),
        amount: 2,
        motive: Motive {
            demand: 3500,
            held: 2,
            level: 3000,
            trend: 50,
            horizon: 5,
            source: MOTIVE_PROJECTION,
        },
    };
    let n = encode_request(&req, &mut buf).unwrap();
    write("host_decoder", "request", &buf[..n]);
    let n = encode_ack(42, &mut buf).unwrap();
    write("host_decoder", "ack", &buf[..n]);

    // The guest_decoder target's copy is at generation 10, 16 CPUs, 2 nodes.
    let mut w = DeltaWriter::new(&mut buf, 10, 11).unwrap();
    w.push(&Run::Cpu {
        first: 3,
        count: 1,
        node: NodeId::new(0),
        state: PRESENT,
        owner: Owner::FREE,
    })
    .unwrap();
    w.push(&Run::Mem {
        first: 4,
        count: 2,
        node: NodeId::new(0),
        state: PRESENT | ONLINE,
        owner: Owner(1),
    })
    .unwrap();
    let n = w.finish().unwrap();
    write("guest_decoder", "delta", &buf[..n]);
    let resp = Response {
        id: 1,
        kind: RequestKind::Cpus,
        status: Status::Partial,
        reason: Reason::Quota,
        amount: 1,
        generation: 11,
    };
    let n = encode_response(&resp, &mut buf).unwrap();
    write("guest_decoder", "response", &buf[..n]);
    let mut inv = Inventory::new(Vec::new(), Vec::new(), Vec::new()).unwrap();
    inv.reset(Dims {
        cpus: 4,
        blocks: 2,
        nodes: 1,
        block_size: 128 << 20,
    })
    .unwrap();
    let n = SnapshotEncoder::new(1)
        .next_part(&inv, &mut buf)
        .unwrap()
        .unwrap();
    write("guest_decoder", "snapshot", &buf[..n]);

    // stateful: op bytes (kind, a, b) — hotplug, grants, releases, publishes.
    write(
        "stateful",
        "mixed",
        &[
            0, 3, 0, 5, 1, 0, 2, 4, 1, 5, 2, 0, 3, 9, 2, 5, 3, 1, 4, 2, 1, 5, 5, 1,
        ],
    );
}
