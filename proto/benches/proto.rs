// SPDX-License-Identifier: GPL-2.0

//! Benchmarks of the protocol core, printed against the design targets.
//!
//! `cargo bench -p hwconvey-proto` (or `make bench`). Figures, not pass/fail:
//! each line says the measured value, the target, and whether it is met.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use std::hint::black_box;
use std::time::Instant;

use hwconvey_proto::delta::write_delta;
use hwconvey_proto::guest::GuestCopy;
use hwconvey_proto::inventory::*;
use hwconvey_proto::message::{
    decode_host_msg, DeltaWriter, HostMsg, SnapshotEncoder, MAX_MSG_SIZE,
};
use hwconvey_proto::projection::{Params, Projector, Sample};

type Inv = Inventory<Vec<Cpu>, Vec<MemBlock>, Vec<Node>>;

fn empty() -> Inv {
    Inv::new(Vec::new(), Vec::new(), Vec::new()).unwrap()
}

/// The largest host the design targets ([`Inventory::make_large_host`]),
/// with 16 guests each holding a range of CPUs and blocks.
fn large_host() -> Inv {
    let mut inv = empty();
    inv.make_large_host().unwrap();
    let cores = inv.dims().cpus / 2;
    for id in 0..inv.dims().cpus {
        let core = id % cores;
        if core % 512 < 256 {
            inv.cpu_mut(id).unwrap().owner = Owner(1 + core / 512);
        }
    }
    for i in 0..inv.dims().blocks {
        if i % 1024 < 512 {
            inv.block_mut(i).unwrap().owner = Owner(1 + i / 1024);
        }
    }
    inv
}

/// Runs `f` `n` times, returns the per-run times in ns, sorted.
fn time(n: usize, mut f: impl FnMut()) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as u64
        })
        .collect();
    v.sort_unstable();
    v
}

fn pct(v: &[u64], p: usize) -> u64 {
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn report(what: &str, value: f64, unit: &str, target: f64) {
    let verdict = if value <= target { "meets" } else { "MISSES" };
    println!("{what:<52} {value:>10.1} {unit:<6} target <= {target} {unit}: {verdict}");
}

fn main() {
    let host = large_host();

    // Full snapshot: size, and encode + decode (apply into a guest copy).
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut enc = SnapshotEncoder::new(1);
    loop {
        let mut buf = vec![0u8; MAX_MSG_SIZE];
        match enc.next_part(&host, &mut buf).unwrap() {
            Some(n) => {
                buf.truncate(n);
                parts.push(buf);
            }
            None => break,
        }
    }
    let bytes: usize = parts.iter().map(Vec::len).sum();
    println!(
        "snapshot of 8192 CPUs + 16384 blocks + 64 nodes: {} parts",
        parts.len()
    );
    report("full snapshot size", bytes as f64 / 1024.0, "KiB", 16.0);

    // The wire: encode every part, and decode and validate it as the
    // guest does before applying anything.
    let mut buf = vec![0u8; MAX_MSG_SIZE];
    let dims = host.dims();
    let t = time(500, || {
        let mut enc = SnapshotEncoder::new(1);
        while let Some(n) = enc.next_part(black_box(&host), &mut buf).unwrap() {
            let HostMsg::Snapshot(_, runs) = decode_host_msg(&buf[..n]).unwrap() else {
                panic!()
            };
            for run in runs {
                run.unwrap().validate(&dims).unwrap();
            }
        }
    });
    report(
        "full snapshot encode + decode, p50",
        pct(&t, 50) as f64 / 1000.0,
        "us",
        50.0,
    );
    println!("  (p99 {} us)", pct(&t, 99) / 1000);

    // Applying it: the guest fills its staging tables, diffs them against
    // its stored copy and swaps (24576 components).
    let mut copy = GuestCopy::new(empty(), empty());
    let t = time(200, || {
        let mut enc = SnapshotEncoder::new(1);
        while let Some(n) = enc.next_part(black_box(&host), &mut buf).unwrap() {
            copy.receive(&buf[..n]).unwrap();
        }
    });
    assert!(copy.stored().cpus() == host.cpus());
    println!(
        "  full snapshot encode + decode + apply + diff into the guest copy: p50 {} us, p99 {} us",
        pct(&t, 50) / 1000,
        pct(&t, 99) / 1000
    );

    // Delta for one hotplug event: an allocated CPU goes offline and a free
    // one on its node replaces it.
    let mut after = empty();
    after.copy_from(&host).unwrap();
    after.cpu_mut(5).unwrap().state = PRESENT;
    after.cpu_mut(5).unwrap().owner = Owner::FREE;
    after.cpu_mut(300).unwrap().owner = Owner(1);
    after.generation = 2;
    let mut dbuf = [0u8; MAX_MSG_SIZE];
    let mut w = DeltaWriter::new(&mut dbuf, 1, 2).unwrap();
    write_delta(&host, &after, &mut w).unwrap();
    let n = w.finish().unwrap();
    report(
        "delta, CPU offline + NUMA-local replacement",
        n as f64,
        "bytes",
        64.0,
    );
    let t = time(200, || {
        let mut w = DeltaWriter::new(&mut dbuf, 1, 2).unwrap();
        write_delta(black_box(&host), black_box(&after), &mut w).unwrap();
        black_box(w.finish().unwrap());
    });
    println!(
        "  (computing that delta by comparison over the whole host: p50 {} us)",
        pct(&t, 50) / 1000
    );

    // Projection: one sample, whatever the CPU count (the per-CPU part is
    // the kernel summing its counters).
    let mut p = Projector::new(Params::default());
    let held = Allocation {
        cpus: 64,
        mem_mib: 65536,
    };
    let mut i = 0u32;
    let rounds = 1_000_000;
    let start = Instant::now();
    for _ in 0..rounds {
        i = i.wrapping_add(7919);
        let s = Sample {
            busy_mcpu: 30_000 + i % 20_000,
            nr_running: 40,
            mem_used_mib: 20_000 + u64::from(i % 1000),
            ..Sample::default()
        };
        black_box(p.sample(black_box(&s), held, 128));
    }
    let per = start.elapsed().as_nanos() as f64 / f64::from(rounds);
    report("projection update, per sample (all CPUs)", per, "ns", 200.0);
}
