// SPDX-License-Identifier: GPL-2.0

//! Test support: a seeded generator of host layouts.

#![allow(
    dead_code,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used
)]

use hwconvey_proto::inventory::*;

pub type Inv = Inventory<Vec<Cpu>, Vec<MemBlock>, Vec<Node>>;

/// xorshift64*: deterministic, seedable, good enough to vary test inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

pub fn empty() -> Inv {
    Inv::new(Vec::new(), Vec::new(), Vec::new()).unwrap()
}

/// A host laid out as real ones are: nodes own consecutive CPUs (thread 0 of
/// every core, then thread 1) and consecutive memory blocks; a few owners.
pub fn host(cpus: u32, blocks: u32, nodes: u32, guests: u32, rng: &mut Rng) -> Inv {
    let mut inv = empty();
    inv.reset(Dims {
        cpus,
        blocks,
        nodes,
        block_size: 128 << 20,
    })
    .unwrap();
    inv.generation = 1 + rng.below(1000);
    let threads = 2;
    let per_node = (cpus / nodes).max(1);
    for id in 0..cpus {
        let node =
            ((id % (cpus / threads).max(1)) / (per_node / threads).max(1)).min(nodes - 1) as u16;
        let (node, package) = (NodeId::new(node), PackageId::new(node));
        let c = inv.cpu_mut(id).unwrap();
        c.node = node;
        c.state = PRESENT | ONLINE;
        c.thread = (id / (cpus / threads).max(1)) as u8;
        c.package = package;
        c.core = id % (cpus / threads).max(1);
        c.owner = if guests > 0 && rng.chance(300) {
            Owner(1 + rng.below(u64::from(guests)) as u32)
        } else {
            Owner::FREE
        };
        if rng.chance(20) {
            c.state = PRESENT;
            c.owner = Owner::FREE;
        }
    }
    let per_node_blocks = (blocks / nodes).max(1);
    for index in 0..blocks {
        let b = inv.block_mut(index).unwrap();
        b.node = NodeId::new((index / per_node_blocks).min(nodes - 1) as u16);
        b.state = PRESENT | ONLINE;
        b.owner = if guests > 0 && rng.chance(300) {
            Owner(1 + rng.below(u64::from(guests)) as u32)
        } else {
            Owner::FREE
        };
    }
    for id in 0..nodes {
        inv.node_mut(id).unwrap().state = PRESENT | ONLINE | NODE_CPUS | NODE_MEMORY;
    }
    inv
}

/// Whether two inventories hold the same components.
pub fn same(a: &Inv, b: &Inv) -> bool {
    a.dims() == b.dims()
        && a.cpus() == b.cpus()
        && a.blocks() == b.blocks()
        && a.nodes() == b.nodes()
}

/// Encodes a full snapshot of `inv` for `guest` in parts of at most `part`
/// bytes.
pub fn snapshot(inv: &Inv, guest: u32, part: usize) -> Vec<Vec<u8>> {
    let mut enc = hwconvey_proto::message::SnapshotEncoder::new(guest);
    let mut out = Vec::new();
    loop {
        let mut buf = vec![0u8; part];
        match enc.next_part(inv, &mut buf).unwrap() {
            Some(n) => {
                buf.truncate(n);
                out.push(buf);
            }
            None => return out,
        }
    }
}
