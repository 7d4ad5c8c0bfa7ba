// SPDX-License-Identifier: GPL-2.0

//! The host's admission: what a request gets, and which components.
//!
//! Planning reads the inventory and writes the chosen component ids into a
//! caller buffer; it changes nothing. The host then applies the plan under its
//! lock (owner changes, a generation bump, a delta), so a plan that turns out
//! impossible is simply dropped.

use super::inventory::{Cpu, Inventory, MemBlock, Node, NodeId, Owner, Table};
use super::message::{Reason, Status};

/// What one guest may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// CPUs.
    pub max_cpus: u32,
    /// Memory, in MiB.
    pub max_mem_mib: u64,
}

/// The outcome of planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// What the request gets.
    pub status: Status,
    /// Why it does not get more.
    pub reason: Reason,
    /// How many ids were written to the output buffer.
    pub picked: usize,
}

impl Plan {
    const fn denied(reason: Reason) -> Self {
        Self {
            status: Status::Denied,
            reason,
            picked: 0,
        }
    }

    fn of(picked: usize, want: usize, limited_by: Reason) -> Self {
        if picked == 0 {
            Self::denied(limited_by)
        } else if picked < want {
            Self {
                status: Status::Partial,
                reason: limited_by,
                picked,
            }
        } else {
            Self {
                status: Status::Granted,
                reason: Reason::None,
                picked,
            }
        }
    }
}

/// A per-guest token bucket: `rate` requests per second on average, bursts of
/// up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    rate: u32,
    burst: u32,
    /// Tokens in thousandths.
    milli_tokens: u64,
    last_ns: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_ns`.
    pub const fn new(rate: u32, burst: u32, now_ns: u64) -> Self {
        Self {
            rate,
            burst,
            milli_tokens: (burst as u64).saturating_mul(1000),
            last_ns: now_ns,
        }
    }

    /// Changes the rate and burst, keeping the tokens (capped at the burst).
    pub fn set(&mut self, rate: u32, burst: u32) {
        self.rate = rate;
        self.burst = burst;
        self.milli_tokens = self.milli_tokens.min(u64::from(burst).saturating_mul(1000));
    }

    /// Takes one token at time `now_ns`, if there is one.
    pub fn take(&mut self, now_ns: u64) -> bool {
        let elapsed_us = now_ns.saturating_sub(self.last_ns) / 1000;
        let rate = u64::from(self.rate);
        // `rate` tokens per second = `rate` thousandths per millisecond: refill in whole
        // microseconds, in 64 bits (no 128-bit division in the kernel), saturating.
        let refill = elapsed_us.saturating_mul(rate) / 1000;
        let cap = u64::from(self.burst).saturating_mul(1000);
        self.milli_tokens = self.milli_tokens.saturating_add(refill).min(cap);
        if rate == 0 || self.milli_tokens == cap {
            // A full bucket saves no time for later.
            self.last_ns = self.last_ns.max(now_ns);
        } else {
            // Only the time the refill accounts for is spent: calls closer together than a
            // thousandth of a token still add up, however often a peer makes them.
            let spent_us = refill.saturating_mul(1000).checked_div(rate).unwrap_or(0);
            self.last_ns = self.last_ns.saturating_add(spent_us.saturating_mul(1000));
        }
        if self.milli_tokens >= 1000 {
            self.milli_tokens = self.milli_tokens.saturating_sub(1000);
            true
        } else {
            false
        }
    }
}

/// The node holding most of `guest`'s CPUs (the lowest such id), used when a request names
/// none; `None` if the guest holds no CPU on any of the first `nodes` nodes.
fn home_node(cpus: &[Cpu], guest: Owner, nodes: usize) -> Option<NodeId> {
    let mut best = (0usize, None);
    for node in (0..nodes).map_while(|id| u16::try_from(id).ok().and_then(NodeId::new)) {
        let n = cpus
            .iter()
            .filter(|c| c.owner == guest && c.node == Some(node))
            .count();
        if n > best.0 {
            best = (n, Some(node));
        }
    }
    best.1
}

/// Whether `node` is absent (any node) or one of the host's `nodes`.
fn node_valid(node: Option<NodeId>, nodes: u32) -> bool {
    node.is_none_or(|n| u32::from(n.get()) < nodes)
}

/// Picks components for which `eligible` holds, nearest to `from` first
/// (by `distance`; all at the same distance when `from` is `None`, and one on
/// no node farthest), lowest index first within a distance, into `out` until
/// it has `want` ids. Returns how many it picked.
fn pick_nearest<T>(
    items: &[T],
    node_of: impl Fn(&T) -> Option<NodeId>,
    eligible: impl Fn(&T) -> bool,
    from: Option<NodeId>,
    distance: &impl Fn(NodeId, NodeId) -> u32,
    want: usize,
    out: &mut [u32],
) -> usize {
    let want = want.min(out.len());
    let dist = |t: &T| match (from, node_of(t)) {
        (None, _) => 0,
        (Some(from), Some(to)) => distance(from, to),
        (Some(_), None) => u32::MAX,
    };
    let mut picked = 0usize;
    let mut floor: Option<u32> = None;
    while picked < want {
        // The next distance band with an eligible component.
        let Some(band) = items
            .iter()
            .filter(|t| eligible(t))
            .map(dist)
            .filter(|d| floor.is_none_or(|f| *d > f))
            .min()
        else {
            break;
        };
        for (i, t) in items.iter().enumerate() {
            if picked >= want {
                break;
            }
            if eligible(t) && dist(t) == band {
                if let (Some(slot), Ok(id)) = (out.get_mut(picked), u32::try_from(i)) {
                    *slot = id;
                    picked = picked.saturating_add(1);
                }
            }
        }
        floor = Some(band);
    }
    picked
}

/// Plans a grant of `want` CPUs to `guest`, NUMA-local to `node` first (or to
/// where the guest already runs when `node` is `None`). Chosen CPU ids go to
/// `out`.
pub fn plan_cpus<C, M, N>(
    inv: &Inventory<C, M, N>,
    guest: Owner,
    want: u32,
    node: Option<NodeId>,
    quota: &Quota,
    distance: &impl Fn(NodeId, NodeId) -> u32,
    out: &mut [u32],
) -> Plan
where
    C: Table<Cpu>,
    M: Table<MemBlock>,
    N: Table<Node>,
{
    if want == 0 || !guest.is_guest() || !node_valid(node, inv.dims().nodes) {
        return Plan::denied(Reason::Invalid);
    }
    let held = inv.allocation(guest).cpus;
    let room = quota.max_cpus.saturating_sub(held);
    if room == 0 {
        return Plan::denied(Reason::Quota);
    }
    let (target, limit) = if room < want {
        (room, Reason::Quota)
    } else {
        (want, Reason::NoFree)
    };
    let from = node.or_else(|| home_node(inv.cpus(), guest, inv.nodes().len()));
    let picked = pick_nearest(
        inv.cpus(),
        |c| c.node,
        |c| c.owner == Owner::FREE && c.online(),
        from,
        distance,
        target as usize,
        out,
    );
    let limit = if picked < target as usize {
        Reason::NoFree
    } else {
        limit
    };
    Plan::of(picked, want as usize, limit)
}

/// Plans a grant of `want_mib` MiB (rounded up to whole blocks) to `guest`.
/// Chosen block indices go to `out`; `Plan::picked` counts blocks.
pub fn plan_memory<C, M, N>(
    inv: &Inventory<C, M, N>,
    guest: Owner,
    want_mib: u32,
    node: Option<NodeId>,
    quota: &Quota,
    distance: &impl Fn(NodeId, NodeId) -> u32,
    out: &mut [u32],
) -> Plan
where
    C: Table<Cpu>,
    M: Table<MemBlock>,
    N: Table<Node>,
{
    let block_mib = inv.block_mib();
    if want_mib == 0 || block_mib == 0 || !guest.is_guest() || !node_valid(node, inv.dims().nodes) {
        return Plan::denied(Reason::Invalid);
    }
    let want = u64::from(want_mib).div_ceil(block_mib);
    let held = inv
        .allocation(guest)
        .mem_mib
        .checked_div(block_mib)
        .unwrap_or(0);
    let room = quota
        .max_mem_mib
        .checked_div(block_mib)
        .unwrap_or(0)
        .saturating_sub(held);
    if room == 0 {
        return Plan::denied(Reason::Quota);
    }
    let (target, limit) = if room < want {
        (room, Reason::Quota)
    } else {
        (want, Reason::NoFree)
    };
    let from = node.or_else(|| home_node(inv.cpus(), guest, inv.nodes().len()));
    let target = usize::try_from(target).unwrap_or(usize::MAX);
    let picked = pick_nearest(
        inv.blocks(),
        |b| b.node,
        |b| b.owner == Owner::FREE && b.online(),
        from,
        distance,
        target,
        out,
    );
    let limit = if picked < target {
        Reason::NoFree
    } else {
        limit
    };
    Plan::of(picked, usize::try_from(want).unwrap_or(usize::MAX), limit)
}

/// Plans giving back `count` of `guest`'s CPUs: the ones farthest from its
/// home node, highest ids first, so what it keeps stays together.
pub fn plan_release_cpus<C, M, N>(
    inv: &Inventory<C, M, N>,
    guest: Owner,
    count: u32,
    out: &mut [u32],
) -> Plan
where
    C: Table<Cpu>,
    M: Table<MemBlock>,
    N: Table<Node>,
{
    if count == 0 || !guest.is_guest() {
        return Plan::denied(Reason::Invalid);
    }
    let home = home_node(inv.cpus(), guest, inv.nodes().len());
    let want = (count as usize).min(out.len());
    let mut picked = 0usize;
    // Away from home first, then at home; each from the highest id down.
    for away in [true, false] {
        for (i, c) in inv.cpus().iter().enumerate().rev() {
            if picked >= want {
                break;
            }
            if c.owner == guest && (c.node != home) == away {
                if let (Some(slot), Ok(id)) = (out.get_mut(picked), u32::try_from(i)) {
                    *slot = id;
                    picked = picked.saturating_add(1);
                }
            }
        }
    }
    Plan::of(picked, count as usize, Reason::NotHeld)
}
