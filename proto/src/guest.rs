// SPDX-License-Identifier: GPL-2.0

//! The guest's copy of the host inventory, and how updates are applied to it.
//!
//! A snapshot arrives in parts and is assembled into a staging copy; only a
//! complete, consistent snapshot replaces the stored copy. A delta applies to
//! the stored copy only when its base is the stored generation; otherwise the
//! guest has missed something and must ask for a snapshot. A snapshot is
//! authoritative whatever its generation: it is how the guest resynchronises,
//! also after a host restart or a corrupted generation. Every message is
//! validated in full before anything is written, so a rejected message
//! changes nothing.

use super::diff::{diff, Diff};
use super::error::{Error, Result};
use super::inventory::{Cpu, Dims, Inventory, MemBlock, Node, Owner, Table};
use super::message::{decode_host_msg, DeltaHeader, HostMsg, Response, SnapshotPart};
use super::run::{Run, Runs};

/// Where an assembly in progress is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Assembly {
    generation: u64,
    guest: u32,
    dims: Dims,
    next_part: u16,
    next_cpu: u32,
    next_block: u32,
    next_node: u32,
}

/// What a received message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// A snapshot part was accepted; more parts follow.
    Partial,
    /// The stored copy moved to `generation`; `diff` says what changed.
    Applied {
        /// The new stored generation.
        generation: u64,
        /// What changed.
        diff: Diff,
        /// Whether it was a full snapshot (else a delta).
        snapshot: bool,
    },
    /// A response to one of this guest's requests.
    Response(Response),
}

/// The guest's view of the host.
pub struct GuestCopy<C, M, N> {
    stored: Inventory<C, M, N>,
    staging: Inventory<C, M, N>,
    me: Owner,
    synced: bool,
    /// Whether deltas were negotiated (`F_DELTA`); without it, the host sends only snapshots.
    deltas: bool,
    assembly: Option<Assembly>,
}

impl<C, M, N> GuestCopy<C, M, N>
where
    C: Table<Cpu>,
    M: Table<MemBlock>,
    N: Table<Node>,
{
    /// An empty copy over two sets of tables (stored and staging).
    pub fn new(stored: Inventory<C, M, N>, staging: Inventory<C, M, N>) -> Self {
        Self {
            stored,
            staging,
            me: Owner::FREE,
            synced: false,
            deltas: true,
            assembly: None,
        }
    }

    /// Refuses deltas from now on (`F_DELTA` was not negotiated): the host must send snapshots.
    pub fn refuse_deltas(&mut self) {
        self.deltas = false;
    }

    /// The stored copy.
    pub const fn stored(&self) -> &Inventory<C, M, N> {
        &self.stored
    }

    /// Who this guest is to the host (learned from snapshots).
    pub const fn me(&self) -> Owner {
        self.me
    }

    /// Whether a complete snapshot has been applied.
    pub const fn synced(&self) -> bool {
        self.synced
    }

    /// Forgets the stored copy's validity (after a device reset): the next
    /// update must be a snapshot.
    pub fn desync(&mut self) {
        self.synced = false;
        self.assembly = None;
    }

    /// Applies one message from the host.
    pub fn receive(&mut self, msg: &[u8]) -> Result<Update> {
        match decode_host_msg(msg)? {
            HostMsg::Snapshot(part, runs) => self.snapshot_part(&part, runs),
            HostMsg::Delta(hdr, runs) => self.delta(&hdr, runs),
            HostMsg::Response(resp) => Ok(Update::Response(resp)),
        }
    }

    fn snapshot_part(&mut self, part: &SnapshotPart, runs: Runs<'_>) -> Result<Update> {
        if Owner::guest(part.guest).is_none() {
            return Err(Error::Range);
        }
        let mut asm = if part.part == 0 {
            Assembly {
                generation: part.generation,
                guest: part.guest,
                dims: part.dims,
                next_part: 0,
                next_cpu: 0,
                next_block: 0,
                next_node: 0,
            }
        } else {
            match self.assembly {
                Some(a)
                    if a.generation == part.generation
                        && a.guest == part.guest
                        && a.dims == part.dims
                        && a.next_part == part.part =>
                {
                    a
                }
                _ => return Err(Error::Sequence),
            }
        };

        // First pass: check every run and the coverage cursors, writing nothing.
        for run in runs.clone() {
            let run = run?;
            run.validate(&asm.dims)?;
            let (next, first, count) = match run {
                Run::Cpu { first, count, .. } => (&mut asm.next_cpu, first, count),
                Run::Mem { first, count, .. } => (&mut asm.next_block, first, count),
                Run::Node { first, count, .. } => (&mut asm.next_node, first, count),
                // Topology may come in any order: validate() bounded it.
                Run::CpuTopo { .. } => continue,
            };
            if first != *next {
                return Err(Error::Coverage);
            }
            *next = first.checked_add(count).ok_or(Error::Range)?;
        }
        let d = asm.dims;
        if part.last
            && (asm.next_cpu != d.cpus || asm.next_block != d.blocks || asm.next_node != d.nodes)
        {
            return Err(Error::Coverage);
        }
        asm.next_part = asm.next_part.checked_add(1).ok_or(Error::Sequence)?;

        // Second pass: write into the staging copy. Part 0 abandons any assembly in progress
        // before it touches the staging copy: if the reset fails half-way, no later part of
        // either snapshot may build on what is left.
        if part.part == 0 {
            self.assembly = None;
            self.staging.reset(asm.dims)?;
        }
        let me = Owner(asm.guest);
        for run in runs.flatten() {
            run.fill(&mut self.staging);
        }
        if !part.last {
            self.assembly = Some(asm);
            return Ok(Update::Partial);
        }
        self.staging.generation = asm.generation;
        let changes = diff(&self.stored, &self.staging, me);
        self.stored.swap(&mut self.staging);
        self.me = me;
        self.synced = true;
        self.assembly = None;
        Ok(Update::Applied {
            generation: asm.generation,
            diff: changes,
            snapshot: true,
        })
    }

    fn delta(&mut self, hdr: &DeltaHeader, runs: Runs<'_>) -> Result<Update> {
        if !self.deltas {
            return Err(Error::MessageType);
        }
        // With no copy to apply it to, any delta is a gap: only a snapshot helps.
        if !self.synced {
            return Err(Error::Gap);
        }
        if hdr.generation <= hdr.base {
            return Err(Error::Stale);
        }
        if hdr.generation <= self.stored.generation {
            return Err(Error::Stale);
        }
        if hdr.base != self.stored.generation {
            return Err(Error::Gap);
        }
        let dims = self.stored.dims();
        for run in runs.clone() {
            run?.validate(&dims)?;
        }
        let mut changes = Diff::default();
        for run in runs.flatten() {
            run.apply(&mut self.stored, &mut changes, self.me);
        }
        self.stored.generation = hdr.generation;
        Ok(Update::Applied {
            generation: hdr.generation,
            diff: changes,
            snapshot: false,
        })
    }
}
