// SPDX-License-Identifier: GPL-2.0

//! Host admission: quotas, the free pool, NUMA placement, rate limits.

#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::panic
)]

mod common;

use common::*;
use hwconvey_proto::admission::*;
use hwconvey_proto::inventory::*;
use hwconvey_proto::message::{Reason, Status};

/// Two nodes of 8 CPUs (0-7 on node 0, 8-15 on node 1), 16 blocks each.
fn two_nodes() -> Inv {
    let mut inv = empty();
    inv.reset(Dims {
        cpus: 16,
        blocks: 32,
        nodes: 2,
        block_size: 128 << 20,
    })
    .unwrap();
    for id in 0..16 {
        *inv.cpu_mut(id).unwrap() = Cpu {
            node: NodeId::new((id / 8) as u16),
            state: PRESENT | ONLINE,
            core: id,
            ..Cpu::default()
        };
    }
    for i in 0..32 {
        *inv.block_mut(i).unwrap() = MemBlock {
            node: NodeId::new((i / 16) as u16),
            state: PRESENT | ONLINE,
            owner: Owner::FREE,
        };
    }
    inv
}

fn dist(a: NodeId, b: NodeId) -> u32 {
    if a == b {
        10
    } else {
        20
    }
}

const BIG: Quota = Quota {
    max_cpus: 64,
    max_mem_mib: 1 << 20,
};

#[test]
fn cpus_come_from_the_preferred_node_first() {
    let inv = two_nodes();
    let mut out = [0u32; 16];
    let plan = plan_cpus(&inv, Owner(5), 10, NodeId::new(1), &BIG, &dist, &mut out);
    assert_eq!(plan.status, Status::Granted);
    assert_eq!(plan.picked, 10);
    // All 8 of node 1 first, then the nearest others.
    assert!(out[..8].iter().all(|&id| (8..16).contains(&id)), "{out:?}");
    assert!(out[8..10].iter().all(|&id| id < 8));
}

#[test]
fn no_preference_means_where_the_guest_already_is() {
    let mut inv = two_nodes();
    inv.cpu_mut(12).unwrap().owner = Owner(5);
    let mut out = [0u32; 2];
    let plan = plan_cpus(&inv, Owner(5), 2, None, &BIG, &dist, &mut out);
    assert_eq!(plan.picked, 2);
    assert!(out.iter().all(|&id| id >= 8 && id != 12), "{out:?}");
}

#[test]
fn quota_limits_and_says_so() {
    let mut inv = two_nodes();
    for id in 0..3 {
        inv.cpu_mut(id).unwrap().owner = Owner(5);
    }
    let quota = Quota {
        max_cpus: 4,
        max_mem_mib: 256,
    };
    let mut out = [0u32; 16];
    let plan = plan_cpus(&inv, Owner(5), 3, NodeId::new(0), &quota, &dist, &mut out);
    assert_eq!(
        (plan.status, plan.reason, plan.picked),
        (Status::Partial, Reason::Quota, 1)
    );
    inv.cpu_mut(3).unwrap().owner = Owner(5);
    let plan = plan_cpus(&inv, Owner(5), 1, NodeId::new(0), &quota, &dist, &mut out);
    assert_eq!((plan.status, plan.reason), (Status::Denied, Reason::Quota));
    // Memory: 256 MiB quota is two blocks.
    let plan = plan_memory(
        &inv,
        Owner(5),
        1000,
        NodeId::new(0),
        &quota,
        &dist,
        &mut out,
    );
    assert_eq!(
        (plan.status, plan.reason, plan.picked),
        (Status::Partial, Reason::Quota, 2)
    );
}

#[test]
fn the_free_pool_limits_and_says_so() {
    let mut inv = two_nodes();
    for id in 0..14 {
        inv.cpu_mut(id).unwrap().owner = Owner(9);
    }
    inv.cpu_mut(15).unwrap().state = PRESENT; // offline: not allocatable
    let mut out = [0u32; 16];
    let plan = plan_cpus(&inv, Owner(5), 4, NodeId::new(0), &BIG, &dist, &mut out);
    assert_eq!(
        (plan.status, plan.reason, plan.picked),
        (Status::Partial, Reason::NoFree, 1)
    );
    assert_eq!(out[0], 14);
}

#[test]
fn invalid_requests_are_denied() {
    let inv = two_nodes();
    let mut out = [0u32; 4];
    for plan in [
        plan_cpus(&inv, Owner(5), 0, NodeId::new(0), &BIG, &dist, &mut out),
        plan_cpus(&inv, Owner(5), 1, NodeId::new(2), &BIG, &dist, &mut out),
        plan_cpus(&inv, Owner::FREE, 1, NodeId::new(0), &BIG, &dist, &mut out),
        plan_cpus(&inv, Owner::HOST, 1, NodeId::new(0), &BIG, &dist, &mut out),
        plan_memory(&inv, Owner(5), 0, NodeId::new(0), &BIG, &dist, &mut out),
    ] {
        assert_eq!(
            (plan.status, plan.reason),
            (Status::Denied, Reason::Invalid)
        );
    }
}

#[test]
fn release_gives_back_away_from_home_first() {
    let mut inv = two_nodes();
    for id in [0, 1, 2, 9] {
        inv.cpu_mut(id).unwrap().owner = Owner(5);
    }
    let mut out = [0u32; 4];
    let plan = plan_release_cpus(&inv, Owner(5), 2, &mut out);
    assert_eq!(plan.status, Status::Granted);
    assert_eq!(&out[..2], &[9, 2]);
    let plan = plan_release_cpus(&inv, Owner(5), 9, &mut out);
    assert_eq!(
        (plan.status, plan.reason, plan.picked),
        (Status::Partial, Reason::NotHeld, 4)
    );
}

#[test]
fn token_bucket_limits_rate_and_refills() {
    let mut tb = TokenBucket::new(10, 3, 0);
    assert!((0..3).all(|_| tb.take(0)));
    assert!(!tb.take(0));
    // 10 per second: one token after 100 ms, not before.
    assert!(!tb.take(99_000_000));
    assert!(tb.take(100_000_000));
    // Never more than the burst, however long the pause.
    let n = (0..10).filter(|_| tb.take(100_000_000_000)).count();
    assert_eq!(n, 3);
}

#[test]
fn token_bucket_refills_however_often_it_is_asked() {
    // 1 per second, asked every half millisecond (a peer that kicks the device in a loop):
    // each call refills less than a thousandth of a token, which must still add up.
    let mut tb = TokenBucket::new(1, 1, 0);
    assert!(tb.take(0));
    let got = (1..=2_200u64).filter(|i| tb.take(i * 500_000)).count();
    assert_eq!(got, 1);
    // And at 20 per second, 1049 us make 20 thousandths: the 49 us left count next time.
    let mut tb = TokenBucket::new(20, 1, 0);
    assert!(tb.take(0));
    assert!(!tb.take(49_951_000));
    assert!(tb.take(50_000_000));
}

#[test]
fn random_plans_never_pick_unavailable_components() {
    let mut rng = Rng::new(21);
    for _ in 0..200 {
        let inv = host(64, 64, 4, 3, &mut rng);
        let guest = Owner(1 + rng.below(3) as u32);
        let quota = Quota {
            max_cpus: rng.below(40) as u32,
            max_mem_mib: rng.below(40) * 128,
        };
        let mut out = [0u32; 64];
        let want = 1 + rng.below(20) as u32;
        let node = NodeId::new(rng.below(4) as u16);
        let held = inv.allocation(guest);
        let plan = plan_cpus(&inv, guest, want, node, &quota, &dist, &mut out);
        let picked = &out[..plan.picked];
        assert!(picked.len() <= want as usize);
        assert!(held.cpus + plan.picked as u32 <= quota.max_cpus.max(held.cpus));
        let mut seen = std::collections::HashSet::new();
        for &id in picked {
            let c = inv.cpus()[id as usize];
            assert!(c.owner == Owner::FREE && c.online());
            assert!(seen.insert(id));
        }
        let plan = plan_memory(&inv, guest, want * 100, node, &quota, &dist, &mut out);
        for &i in &out[..plan.picked] {
            let b = inv.blocks()[i as usize];
            assert!(b.owner == Owner::FREE && b.online());
        }
    }
}
