// SPDX-License-Identifier: GPL-2.0

//! Builds the whole-host inventory from the running kernel.

use kernel::prelude::*;
use kernel::{cpu, memory_block, numa};

use crate::proto::in_kernel::{new_inventory, KInventory};
use crate::proto::inventory::{
    Dims, NodeId, Owner, PackageId, NODE_CPUS, NODE_MEMORY, ONLINE, PRESENT,
};

/// The kernel's node id as the inventory records it: none if there is none, or if it does not
/// fit the protocol's node field (the protocol allows fewer nodes than that anyway).
fn node_id(node: Option<u32>) -> Option<NodeId> {
    node.and_then(|n| NodeId::try_from(n).ok())
}

/// Where an online CPU sits: its node and topology, as the inventory records them.
#[derive(Clone, Copy)]
pub(crate) struct Placement {
    pub(crate) node: Option<NodeId>,
    pub(crate) package: Option<PackageId>,
    pub(crate) core: u32,
    pub(crate) thread: u8,
}

impl Placement {
    /// The placement of `id`, which must be online for its topology to be set up.
    pub(crate) fn of(id: cpu::CpuId) -> Self {
        Self {
            node: node_id(id.node()),
            package: PackageId::try_from(id.package_id()).ok(),
            core: id.core_id(),
            thread: u8::try_from(id.thread_index()).unwrap_or(u8::MAX),
        }
    }
}

/// The nodes of the memory blocks `first..first + count` that the kernel knows, for blocks
/// coming online (the kernel onlines memory a block at a time: `count` is 1 but for a caller
/// that coalesces): one in a hole of the inventory, or beyond its end, has no
/// node recorded yet. At most one entry per memory block of the system.
pub(crate) fn block_nodes(first: u32, count: u32) -> Result<KVec<(u32, Option<NodeId>)>> {
    let end = first.saturating_add(count);
    let mut nodes = KVec::new();
    memory_block::for_each_block(&mut |b| {
        match u32::try_from(b.id) {
            Ok(id) if (first..end).contains(&id) => {
                nodes.push((id, node_id(b.node)), GFP_KERNEL)?
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(nodes)
}

fn state(present: bool, online: bool) -> u8 {
    (if present { PRESENT } else { 0 }) | (if online { ONLINE } else { 0 })
}

/// Enumerates every possible CPU, every memory block and every possible node,
/// all free, at generation 1.
pub(crate) fn scan() -> Result<KInventory> {
    let mut blocks = 0u32;
    memory_block::for_each_block(&mut |b| {
        let next = u32::try_from(b.id)
            .map_err(|_| E2BIG)?
            .checked_add(1)
            .ok_or(E2BIG)?;
        blocks = blocks.max(next);
        Ok(())
    })?;
    let dims = Dims {
        cpus: cpu::nr_cpu_ids(),
        blocks,
        nodes: numa::nr_node_ids(),
        block_size: memory_block::block_size_bytes(),
    };
    let mut inv = new_inventory()?;
    inv.reset(dims)?;

    for id in cpu::possible_cpus() {
        let Some(c) = inv.cpu_mut(id.as_u32()) else {
            continue;
        };
        let (present, online) = (id.is_present(), id.is_online());
        c.state = state(present, online);
        c.node = if present { node_id(id.node()) } else { None };
        c.owner = Owner::FREE;
        if online {
            let p = Placement::of(id);
            c.package = p.package;
            c.core = p.core;
            c.thread = p.thread;
        } else {
            c.package = None;
        }
    }
    // CPUs that are not possible stay "not present, no node".
    for id in 0..dims.cpus {
        if let Some(c) = inv.cpu_mut(id) {
            if c.state == 0 {
                c.node = None;
                c.package = None;
            }
        }
    }

    for i in 0..dims.blocks {
        if let Some(b) = inv.block_mut(i) {
            b.node = None;
        }
    }
    memory_block::for_each_block(&mut |b| {
        let index = u32::try_from(b.id).map_err(|_| E2BIG)?;
        let online = b.state == memory_block::State::Online;
        if let Some(block) = inv.block_mut(index) {
            block.state = state(true, online);
            block.node = node_id(b.node);
            block.owner = Owner::FREE;
        }
        Ok(())
    })?;

    for node in numa::possible_nodes() {
        if let Some(n) = inv.node_mut(node.as_u32()) {
            n.state = PRESENT
                | if node.is_online() { ONLINE } else { 0 }
                | if node.has_memory() { NODE_MEMORY } else { 0 }
                | if node.has_cpus() { NODE_CPUS } else { 0 };
        }
    }
    inv.generation = 1;
    Ok(inv)
}
