// SPDX-License-Identifier: GPL-2.0

//! Snapshots and deltas end to end: host inventory → bytes → guest copy.

#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::panic
)]

mod common;

use common::*;
use hwconvey_proto::diff::{diff, Diff};
use hwconvey_proto::error::Error;
use hwconvey_proto::guest::{GuestCopy, Update};
use hwconvey_proto::inventory::*;
use hwconvey_proto::message::{DeltaWriter, MAX_MSG_SIZE};
use hwconvey_proto::run::Run;

fn guest() -> GuestCopy<Vec<Cpu>, Vec<MemBlock>, Vec<Node>> {
    GuestCopy::new(empty(), empty())
}

fn sync(g: &mut GuestCopy<Vec<Cpu>, Vec<MemBlock>, Vec<Node>>, host: &Inv, me: u32, part: usize) {
    let parts = snapshot(host, me, part);
    let n = parts.len();
    for (i, p) in parts.iter().enumerate() {
        let u = g.receive(p).unwrap();
        if i + 1 < n {
            assert_eq!(u, Update::Partial);
        } else {
            assert!(matches!(u, Update::Applied { snapshot: true, .. }));
        }
    }
}

#[test]
fn snapshot_round_trip_any_layout_any_part_size() {
    let mut rng = Rng::new(1);
    for case in 0..200 {
        let cpus = 1 + rng.below(300) as u32;
        let blocks = rng.below(500) as u32;
        let nodes = 1 + rng.below(8) as u32;
        let host = host(cpus, blocks, nodes, 3, &mut rng);
        let part = [96, 200, 1000, MAX_MSG_SIZE][case % 4];
        let mut g = guest();
        sync(&mut g, &host, 2, part);
        assert!(same(g.stored(), &host), "case {case}");
        assert_eq!(g.stored().generation, host.generation);
        assert_eq!(g.me(), Owner(2));
    }
}

#[test]
fn snapshot_diff_counts_my_allocation() {
    let mut rng = Rng::new(2);
    let mut host = host(64, 64, 2, 3, &mut rng);
    let mut g = guest();
    sync(&mut g, &host, 2, MAX_MSG_SIZE);
    // Give guest 2 one more free online CPU and take one of its blocks.
    let free = host
        .cpus()
        .iter()
        .position(|c| c.owner == Owner::FREE && c.online())
        .unwrap() as u32;
    host.cpu_mut(free).unwrap().owner = Owner(2);
    let mine = host
        .blocks()
        .iter()
        .position(|b| b.owner == Owner(2))
        .unwrap() as u32;
    host.block_mut(mine).unwrap().owner = Owner::FREE;
    host.bump_generation();
    let parts = snapshot(&host, 2, MAX_MSG_SIZE);
    let Update::Applied { diff: d, .. } = g.receive(&parts[0]).unwrap() else {
        panic!()
    };
    assert_eq!((d.my_cpus_gained, d.my_blocks_lost), (1, 1));
    assert!(d.allocation_changed());
}

/// Reference model: the diff of a delta, counted by comparing full copies.
#[test]
fn delta_diff_matches_reference() {
    let mut rng = Rng::new(3);
    for _ in 0..300 {
        let mut host = host(40, 40, 2, 3, &mut rng);
        let mut g = guest();
        sync(&mut g, &host, 1, MAX_MSG_SIZE);
        let before = {
            let mut c = empty();
            c.copy_from(&host).unwrap();
            c
        };
        let base = host.generation;
        let gen = base + 1;
        let mut buf = [0u8; MAX_MSG_SIZE];
        let mut w = DeltaWriter::new(&mut buf, base, gen).unwrap();
        for _ in 0..1 + rng.below(6) {
            let first = rng.below(40) as u32;
            let count = 1 + rng.below(u64::from(40 - first)) as u32;
            let online = rng.chance(600);
            let run = if rng.chance(500) {
                Run::Cpu {
                    first,
                    count,
                    node: NodeId::new(rng.below(2) as u16),
                    state: if online { PRESENT | ONLINE } else { PRESENT },
                    owner: if online {
                        Owner(rng.below(4) as u32)
                    } else {
                        Owner::FREE
                    },
                }
            } else {
                Run::Mem {
                    first,
                    count,
                    node: NodeId::new(rng.below(2) as u16),
                    state: if online { PRESENT | ONLINE } else { PRESENT },
                    owner: if online {
                        Owner(rng.below(4) as u32)
                    } else {
                        Owner::FREE
                    },
                }
            };
            w.push(&run).unwrap();
            run.apply(&mut host, &mut Diff::default(), Owner(1));
        }
        host.generation = gen;
        let n = w.finish().unwrap();
        let Update::Applied {
            diff: got,
            generation,
            snapshot,
        } = g.receive(&buf[..n]).unwrap()
        else {
            panic!()
        };
        assert!(!snapshot);
        assert_eq!(generation, gen);
        assert!(same(g.stored(), &host));
        // Runs may overlap, so a component can be counted per run that
        // touched it; compare net allocation change, which must agree.
        let want = diff(&before, &host, Owner(1));
        let net = |d: &Diff| {
            (
                d.my_cpus_gained as i64 - d.my_cpus_lost as i64,
                d.my_blocks_gained as i64 - d.my_blocks_lost as i64,
            )
        };
        assert_eq!(net(&got), net(&want));
        assert_eq!(
            before.allocation(Owner(1)).cpus as i64 + net(&want).0,
            host.allocation(Owner(1)).cpus as i64
        );
    }
}

#[test]
fn delta_with_gap_is_refused_and_changes_nothing() {
    let mut rng = Rng::new(4);
    let host = host(16, 16, 1, 2, &mut rng);
    let mut g = guest();
    // Before any snapshot: a delta is a gap.
    let mut buf = [0u8; 256];
    let run = Run::Cpu {
        first: 0,
        count: 1,
        node: NodeId::new(0),
        state: PRESENT,
        owner: Owner::FREE,
    };
    let mut w = DeltaWriter::new(&mut buf, host.generation, host.generation + 1).unwrap();
    w.push(&run).unwrap();
    let n = w.finish().unwrap();
    assert_eq!(g.receive(&buf[..n]), Err(Error::Gap));
    sync(&mut g, &host, 1, MAX_MSG_SIZE);
    for (base, gen, err) in [
        (host.generation + 1, host.generation + 2, Error::Gap),
        (host.generation - 1, host.generation, Error::Stale),
        (host.generation, host.generation, Error::Stale),
    ] {
        let mut w = DeltaWriter::new(&mut buf, base, gen).unwrap();
        w.push(&run).unwrap();
        let n = w.finish().unwrap();
        assert_eq!(g.receive(&buf[..n]), Err(err));
        assert!(same(g.stored(), &host));
        assert_eq!(g.stored().generation, host.generation);
    }
}

#[test]
fn snapshot_parts_out_of_order_are_refused() {
    let mut rng = Rng::new(5);
    let host = host(200, 300, 4, 3, &mut rng);
    let parts = snapshot(&host, 1, 128);
    assert!(parts.len() > 3);
    let mut g = guest();
    assert_eq!(g.receive(&parts[1]), Err(Error::Sequence));
    assert_eq!(g.receive(&parts[0]), Ok(Update::Partial));
    assert_eq!(g.receive(&parts[2]), Err(Error::Sequence));
    // The assembly survives the rejection: the right part still fits.
    assert_eq!(g.receive(&parts[1]), Ok(Update::Partial));
    assert!(!g.synced());
}

#[test]
fn snapshot_that_does_not_cover_everything_is_refused() {
    let mut rng = Rng::new(6);
    let host = host(8, 8, 1, 1, &mut rng);
    let parts = snapshot(&host, 1, MAX_MSG_SIZE);
    assert_eq!(parts.len(), 1);
    // Drop the last run (a node run) and fix up the length.
    let mut short = parts[0].clone();
    short.truncate(short.len() - 16);
    let len = short.len() as u32;
    short[4..8].copy_from_slice(&len.to_le_bytes());
    let mut g = guest();
    assert_eq!(g.receive(&short), Err(Error::Coverage));
    assert!(!g.synced());
}

#[test]
fn hostile_bytes_never_panic_and_change_nothing() {
    let mut rng = Rng::new(7);
    let host = host(64, 64, 2, 3, &mut rng);
    let mut g = guest();
    sync(&mut g, &host, 1, MAX_MSG_SIZE);
    let valid = snapshot(&host, 1, 512);
    let mut rejected = 0;
    for i in 0..20_000 {
        let mut msg = if i % 2 == 0 {
            valid[rng.below(valid.len() as u64) as usize].clone()
        } else {
            (0..rng.below(300)).map(|_| rng.next() as u8).collect()
        };
        for _ in 0..1 + rng.below(4) {
            if !msg.is_empty() {
                let at = rng.below(msg.len() as u64) as usize;
                msg[at] ^= 1 << rng.below(8);
            }
        }
        let mut before = empty();
        before.copy_from(g.stored()).unwrap();
        if g.receive(&msg).is_err() {
            rejected += 1;
            assert!(same(g.stored(), &before));
            assert_eq!(g.stored().generation, before.generation);
        }
    }
    assert!(rejected > 10_000);
}

/// The host side of a storm: random hotplug and ownership changes, each
/// published as a delta computed by comparison (or a snapshot when it does
/// not fit), some lost on the way; the guest asks for a snapshot on a gap.
/// At the end the guest's copy equals the host's inventory.
#[test]
fn storm_with_lost_updates_converges() {
    use hwconvey_proto::delta::write_delta;
    let mut rng = Rng::new(8);
    let mut host = host(128, 256, 4, 3, &mut rng);
    let mut published = empty();
    published.copy_from(&host).unwrap();
    let mut g = guest();
    sync(&mut g, &host, 2, MAX_MSG_SIZE);
    let (mut deltas, mut snapshots, mut gaps) = (0, 0, 0);
    for _ in 0..1000 {
        // One event: a CPU or a block goes offline (freed) or online.
        for _ in 0..1 + rng.below(3) {
            if rng.chance(500) {
                let c = host.cpu_mut(rng.below(128) as u32).unwrap();
                if c.online() {
                    c.state = PRESENT;
                    c.owner = Owner::FREE;
                } else {
                    c.state = PRESENT | ONLINE;
                    c.owner = Owner(rng.below(4) as u32);
                }
            } else {
                let b = host.block_mut(rng.below(256) as u32).unwrap();
                b.state ^= ONLINE;
                b.owner = if b.online() {
                    Owner(rng.below(4) as u32)
                } else {
                    Owner::FREE
                };
            }
        }
        let base = published.generation;
        host.generation = base + 1;
        let mut buf = [0u8; MAX_MSG_SIZE];
        let mut w = DeltaWriter::new(&mut buf, base, host.generation).unwrap();
        let fits = write_delta(&published, &host, &mut w).is_ok();
        published.copy_from(&host).unwrap();
        if rng.chance(50) {
            continue; // lost
        }
        let result = if fits {
            let n = w.finish().unwrap();
            assert!(n <= 8 + 16 + 3 * 16, "one event, {n} bytes");
            deltas += 1;
            g.receive(&buf[..n])
        } else {
            snapshots += 1;
            sync(&mut g, &host, 2, MAX_MSG_SIZE);
            Ok(Update::Partial)
        };
        if result == Err(Error::Gap) {
            gaps += 1;
            sync(&mut g, &host, 2, MAX_MSG_SIZE);
        } else {
            result.unwrap();
        }
        assert!(same(g.stored(), &host));
    }
    assert!(
        deltas > 900 && gaps > 10,
        "{deltas} deltas, {snapshots} snapshots, {gaps} gaps"
    );
}

/// A table that refuses to grow past a shared element budget, to make the guest's
/// allocations fail on demand.
struct Capped<T> {
    v: Vec<T>,
    cap: std::rc::Rc<std::cell::Cell<usize>>,
}

impl<T> std::ops::Deref for Capped<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.v
    }
}

impl<T> std::ops::DerefMut for Capped<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.v
    }
}

impl<T: Copy + Default> Table<T> for Capped<T> {
    fn resize_to(&mut self, len: usize) -> hwconvey_proto::error::Result {
        if len > self.cap.get() {
            return Err(Error::NoMemory);
        }
        self.v.resize(len, T::default());
        Ok(())
    }
}

#[test]
fn snapshot_interrupted_by_a_failed_reset_is_not_completed() {
    let cap = std::rc::Rc::new(std::cell::Cell::new(usize::MAX));
    fn table<T>(cap: &std::rc::Rc<std::cell::Cell<usize>>) -> Capped<T> {
        Capped {
            v: Vec::new(),
            cap: cap.clone(),
        }
    }
    let inv = || Inventory::new(table(&cap), table(&cap), table(&cap)).unwrap();
    let mut g = GuestCopy::new(inv(), inv());
    let mut rng = Rng::new(11);
    let a = host(200, 300, 2, 3, &mut rng);
    let first = snapshot(&a, 1, MAX_MSG_SIZE);
    assert_eq!(first.len(), 1, "the first snapshot fits one message");
    assert!(matches!(
        g.receive(&first[0]).unwrap(),
        Update::Applied { snapshot: true, .. }
    ));
    let stored_gen = g.stored().generation;

    // Snapshot A (several parts) starts; then part 0 of B, too large to allocate.
    let mut a2 = host(200, 300, 2, 3, &mut rng);
    a2.generation = stored_gen + 5;
    let parts_a = snapshot(&a2, 1, 200);
    assert!(parts_a.len() > 2);
    assert_eq!(g.receive(&parts_a[0]).unwrap(), Update::Partial);
    let b = host(400, 300, 2, 3, &mut rng);
    let parts_b = snapshot(&b, 1, 200);
    cap.set(300);
    assert_eq!(g.receive(&parts_b[0]), Err(Error::NoMemory));
    cap.set(usize::MAX);

    // The rest of A must not be assembled onto the half-reset staging copy.
    for p in &parts_a[1..] {
        assert_eq!(g.receive(p), Err(Error::Sequence));
    }
    assert_eq!(g.stored().generation, stored_gen);
    assert!(g.synced());
    // A new snapshot still goes through.
    for (i, p) in parts_a.iter().enumerate() {
        let u = g.receive(p).unwrap();
        assert_eq!(matches!(u, Update::Applied { .. }), i + 1 == parts_a.len());
    }
    assert_eq!(g.stored().generation, a2.generation);
}

#[test]
fn deltas_not_negotiated_are_refused_and_change_nothing() {
    let mut rng = Rng::new(12);
    let mut host = host(32, 32, 2, 2, &mut rng);
    let mut g = guest();
    g.refuse_deltas();
    sync(&mut g, &host, 1, MAX_MSG_SIZE);
    let before = host.generation;
    let free = host
        .cpus()
        .iter()
        .position(|c| c.owner == Owner::FREE && c.online())
        .unwrap() as u32;
    host.cpu_mut(free).unwrap().owner = Owner(1);
    host.bump_generation();
    let mut buf = [0u8; 256];
    let c = host.cpus()[free as usize];
    let mut w = DeltaWriter::new(&mut buf, before, host.generation).unwrap();
    w.push(&Run::Cpu {
        first: free,
        count: 1,
        node: c.node,
        state: c.state,
        owner: c.owner,
    })
    .unwrap();
    let n = w.finish().unwrap();
    assert_eq!(g.receive(&buf[..n]), Err(Error::MessageType));
    assert_eq!(g.stored().generation, before);
    // The same change as a snapshot is applied.
    sync(&mut g, &host, 1, MAX_MSG_SIZE);
    assert!(same(g.stored(), &host));
}
