// SPDX-License-Identifier: GPL-2.0

//! Runs: the 16-byte records that snapshots and deltas are made of.
//!
//! A run describes consecutive components that share everything the protocol
//! tells (node, state, owner; or package, thread and consecutive cores), so a
//! host whose CPUs and blocks are laid out per node, as real hosts are, takes
//! a few hundred runs whatever its size.
//!
//! ```text
//!  0      1      2        4        8        12       16
//!  | kind | a    | b      | first  | count  | c      |
//!  kind 1 CPU      a=state  b=node     c=owner
//!  kind 2 CPU_TOPO a=thread b=package  c=first core id
//!  kind 3 MEM      a=state  b=node     c=owner
//!  kind 4 NODE     a=state  b=0        c=0
//! ```

use super::diff::Diff;
use super::error::{Error, Result};
use super::inventory::{
    component_state_ok, Cpu, Dims, Inventory, MemBlock, Node, NodeId, Owner, PackageId, Table,
    NODE_STATE_MASK, ONLINE, PRESENT,
};
use super::wire::{Reader, Writer};

/// Bytes per run on the wire.
pub const RUN_SIZE: usize = 16;

const KIND_CPU: u8 = 1;
const KIND_CPU_TOPO: u8 = 2;
const KIND_MEM: u8 = 3;
const KIND_NODE: u8 = 4;

/// One run of components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// CPUs `first..first + count`: node, state and owner.
    Cpu {
        /// First CPU id.
        first: u32,
        /// Number of CPUs, at least one.
        count: u32,
        /// NUMA node; `None` (0xffff on the wire) only for CPUs that are not online.
        node: Option<NodeId>,
        /// State bits.
        state: u8,
        /// Owner.
        owner: Owner,
    },
    /// CPUs `first..first + count` sit in one package with the same thread
    /// index, on consecutive cores starting at `core`.
    CpuTopo {
        /// First CPU id.
        first: u32,
        /// Number of CPUs, at least one.
        count: u32,
        /// Package; `None` (0xffff on the wire) when not known.
        package: Option<PackageId>,
        /// SMT thread index.
        thread: u8,
        /// Core id of the first CPU.
        core: u32,
    },
    /// Memory blocks `first..first + count`: node, state and owner.
    Mem {
        /// First block index.
        first: u32,
        /// Number of blocks, at least one.
        count: u32,
        /// NUMA node; `None` (0xffff on the wire) only for blocks that are not online.
        node: Option<NodeId>,
        /// State bits.
        state: u8,
        /// Owner.
        owner: Owner,
    },
    /// Nodes `first..first + count`: state.
    Node {
        /// First node id.
        first: u32,
        /// Number of nodes, at least one.
        count: u32,
        /// Node state bits.
        state: u8,
    },
}

/// `first + count <= limit`, with `count >= 1`, without overflow.
fn span_ok(first: u32, count: u32, limit: u32) -> bool {
    count != 0 && first.checked_add(count).is_some_and(|end| end <= limit)
}

fn node_ok(node: Option<NodeId>, state: u8, dims: &Dims) -> bool {
    match node {
        // Only an online component must have a node.
        None => state & ONLINE == 0,
        Some(node) => u32::from(node.get()) < dims.nodes,
    }
}

impl Run {
    /// Writes the run.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result {
        let (kind, a, b, first, count, c) = match *self {
            Run::Cpu {
                first,
                count,
                node,
                state,
                owner,
            } => (KIND_CPU, state, NodeId::wire(node), first, count, owner.0),
            Run::CpuTopo {
                first,
                count,
                package,
                thread,
                core,
            } => (
                KIND_CPU_TOPO,
                thread,
                PackageId::wire(package),
                first,
                count,
                core,
            ),
            Run::Mem {
                first,
                count,
                node,
                state,
                owner,
            } => (KIND_MEM, state, NodeId::wire(node), first, count, owner.0),
            Run::Node {
                first,
                count,
                state,
            } => (KIND_NODE, state, 0, first, count, 0),
        };
        if w.room() < RUN_SIZE {
            return Err(Error::NoSpace);
        }
        w.u8(kind)?;
        w.u8(a)?;
        w.u16(b)?;
        w.u32(first)?;
        w.u32(count)?;
        w.u32(c)
    }

    /// Reads one run. Checks the encoding only; [`Run::validate`] checks it
    /// against the dimensions.
    pub fn decode(r: &mut Reader<'_>) -> Result<Run> {
        let kind = r.u8()?;
        let a = r.u8()?;
        let b = r.u16()?;
        let first = r.u32()?;
        let count = r.u32()?;
        let c = r.u32()?;
        Ok(match kind {
            KIND_CPU => Run::Cpu {
                first,
                count,
                node: NodeId::new(b),
                state: a,
                owner: Owner(c),
            },
            KIND_CPU_TOPO => Run::CpuTopo {
                first,
                count,
                package: PackageId::new(b),
                thread: a,
                core: c,
            },
            KIND_MEM => Run::Mem {
                first,
                count,
                node: NodeId::new(b),
                state: a,
                owner: Owner(c),
            },
            KIND_NODE => {
                if b != 0 || c != 0 {
                    return Err(Error::Reserved);
                }
                Run::Node {
                    first,
                    count,
                    state: a,
                }
            }
            _ => return Err(Error::RunKind),
        })
    }

    /// Checks the run against the host's dimensions and the state rules.
    pub fn validate(&self, dims: &Dims) -> Result {
        match *self {
            Run::Cpu {
                first,
                count,
                node,
                state,
                owner,
            } => {
                if !span_ok(first, count, dims.cpus) {
                    return Err(Error::Range);
                }
                if !node_ok(node, state, dims) {
                    return Err(Error::Range);
                }
                if !component_state_ok(state, owner) {
                    return Err(Error::State);
                }
            }
            Run::CpuTopo {
                first, count, core, ..
            } => {
                if !span_ok(first, count, dims.cpus) || core.checked_add(count).is_none() {
                    return Err(Error::Range);
                }
            }
            Run::Mem {
                first,
                count,
                node,
                state,
                owner,
            } => {
                if !span_ok(first, count, dims.blocks) {
                    return Err(Error::Range);
                }
                if !node_ok(node, state, dims) {
                    return Err(Error::Range);
                }
                if !component_state_ok(state, owner) {
                    return Err(Error::State);
                }
            }
            Run::Node {
                first,
                count,
                state,
            } => {
                if !span_ok(first, count, dims.nodes) {
                    return Err(Error::Range);
                }
                if state & !NODE_STATE_MASK != 0 || (state & ONLINE != 0 && state & PRESENT == 0) {
                    return Err(Error::State);
                }
            }
        }
        Ok(())
    }

    /// Writes the run into `inv`. The run must have passed [`Run::validate`]
    /// against `inv`'s dimensions; one that did not is ignored, never
    /// written out of bounds.
    pub fn fill<C, M, N>(&self, inv: &mut Inventory<C, M, N>)
    where
        C: Table<Cpu>,
        M: Table<MemBlock>,
        N: Table<Node>,
    {
        match *self {
            Run::Cpu {
                first,
                count,
                node,
                state,
                owner,
            } => {
                for cpu in inv.cpus_mut(first, count).unwrap_or_default() {
                    cpu.node = node;
                    cpu.state = state;
                    cpu.owner = owner;
                }
            }
            Run::CpuTopo {
                first,
                count,
                package,
                thread,
                core,
            } => {
                let mut core = core;
                for cpu in inv.cpus_mut(first, count).unwrap_or_default() {
                    cpu.package = package;
                    cpu.thread = thread;
                    cpu.core = core;
                    core = core.wrapping_add(1);
                }
            }
            Run::Mem {
                first,
                count,
                node,
                state,
                owner,
            } => {
                inv.blocks_mut(first, count)
                    .unwrap_or_default()
                    .fill(MemBlock { node, state, owner });
            }
            Run::Node {
                first,
                count,
                state,
            } => {
                inv.nodes_mut(first, count)
                    .unwrap_or_default()
                    .fill(Node { state });
            }
        }
    }

    /// Writes the run into `inv`, counting what changed for `me` in `diff`.
    /// The run must have passed [`Run::validate`] against `inv`'s dimensions;
    /// one that did not is clipped to the tables, never written out of bounds.
    pub fn apply<C, M, N>(&self, inv: &mut Inventory<C, M, N>, diff: &mut Diff, me: Owner)
    where
        C: Table<Cpu>,
        M: Table<MemBlock>,
        N: Table<Node>,
    {
        match *self {
            Run::Cpu {
                first,
                count,
                node,
                state,
                owner,
            } => {
                for id in span(first, count) {
                    if let Some(cpu) = inv.cpu_mut(id) {
                        let old = *cpu;
                        cpu.node = node;
                        cpu.state = state;
                        cpu.owner = owner;
                        diff.cpu(&old, cpu, me);
                    }
                }
            }
            Run::CpuTopo {
                first,
                count,
                package,
                thread,
                core,
            } => {
                for (i, id) in span(first, count).enumerate() {
                    if let Some(cpu) = inv.cpu_mut(id) {
                        let old = *cpu;
                        cpu.package = package;
                        cpu.thread = thread;
                        cpu.core = core.wrapping_add(i as u32);
                        diff.cpu(&old, cpu, me);
                    }
                }
            }
            Run::Mem {
                first,
                count,
                node,
                state,
                owner,
            } => {
                for index in span(first, count) {
                    if let Some(block) = inv.block_mut(index) {
                        let old = *block;
                        *block = MemBlock { node, state, owner };
                        diff.block(&old, block, me);
                    }
                }
            }
            Run::Node {
                first,
                count,
                state,
            } => {
                for id in span(first, count) {
                    if let Some(n) = inv.node_mut(id) {
                        let old = *n;
                        n.state = state;
                        diff.node(&old, n);
                    }
                }
            }
        }
    }
}

/// `first..first + count`, saturating.
pub fn span(first: u32, count: u32) -> core::ops::Range<u32> {
    first..first.saturating_add(count)
}

/// Decodes runs from a byte slice whose length is a multiple of
/// [`RUN_SIZE`]. Yields an error (once, then stops) on a bad run.
#[derive(Clone, Debug)]
pub struct Runs<'a> {
    r: Reader<'a>,
}

impl<'a> Runs<'a> {
    /// Runs over `bytes`; fails unless the length is a whole number of runs.
    pub fn new(bytes: &'a [u8]) -> Result<Self> {
        if !bytes.len().is_multiple_of(RUN_SIZE) {
            return Err(Error::Length);
        }
        Ok(Self {
            r: Reader::new(bytes),
        })
    }

    /// Number of runs left.
    pub fn len(&self) -> usize {
        self.r.remaining() / RUN_SIZE
    }

    /// Whether no runs are left.
    pub fn is_empty(&self) -> bool {
        self.r.remaining() == 0
    }
}

impl Iterator for Runs<'_> {
    type Item = Result<Run>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.remaining() == 0 {
            return None;
        }
        let run = Run::decode(&mut self.r);
        if run.is_err() {
            // Stop after the first error.
            let _ = self.r.bytes(self.r.remaining());
        }
        Some(run)
    }
}

/// Which table a run encoder walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// CPU state and owner.
    Cpus,
    /// CPU topology.
    Topology,
    /// Memory blocks.
    Blocks,
    /// Nodes.
    Nodes,
}

/// Compresses one table of an inventory into runs, from a position on.
///
/// Used by the snapshot encoder, which resumes where a full buffer stopped.
pub fn next_run(
    cpus: &[Cpu],
    blocks: &[MemBlock],
    nodes: &[Node],
    table: Section,
    at: usize,
) -> Option<Run> {
    match table {
        Section::Cpus => {
            let head = cpus.get(at)?;
            let len = cpus
                .get(at..)?
                .iter()
                .take_while(|c| {
                    c.node == head.node && c.state == head.state && c.owner == head.owner
                })
                .count();
            Some(Run::Cpu {
                first: at as u32,
                count: len as u32,
                node: head.node,
                state: head.state,
                owner: head.owner,
            })
        }
        Section::Topology => {
            let head = cpus.get(at)?;
            let len = cpus
                .get(at..)?
                .iter()
                .enumerate()
                .take_while(|(i, c)| {
                    c.package == head.package
                        && c.thread == head.thread
                        && u32::try_from(*i)
                            .ok()
                            .and_then(|i| head.core.checked_add(i))
                            == Some(c.core)
                })
                .count();
            Some(Run::CpuTopo {
                first: at as u32,
                count: len as u32,
                package: head.package,
                thread: head.thread,
                core: head.core,
            })
        }
        Section::Blocks => {
            let head = blocks.get(at)?;
            let len = blocks.get(at..)?.iter().take_while(|b| *b == head).count();
            Some(Run::Mem {
                first: at as u32,
                count: len as u32,
                node: head.node,
                state: head.state,
                owner: head.owner,
            })
        }
        Section::Nodes => {
            let head = nodes.get(at)?;
            let len = nodes.get(at..)?.iter().take_while(|n| *n == head).count();
            Some(Run::Node {
                first: at as u32,
                count: len as u32,
                state: head.state,
            })
        }
    }
}

impl Run {
    /// Number of components the run covers.
    pub const fn count(&self) -> u32 {
        match *self {
            Run::Cpu { count, .. }
            | Run::CpuTopo { count, .. }
            | Run::Mem { count, .. }
            | Run::Node { count, .. } => count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims() -> Dims {
        Dims {
            cpus: 8,
            blocks: 16,
            nodes: 2,
            block_size: 128 << 20,
        }
    }

    #[test]
    fn round_trip_every_kind() -> Result {
        let runs = [
            Run::Cpu {
                first: 0,
                count: 4,
                node: NodeId::new(1),
                state: PRESENT | ONLINE,
                owner: Owner(3),
            },
            Run::CpuTopo {
                first: 4,
                count: 4,
                package: PackageId::new(1),
                thread: 1,
                core: 10,
            },
            Run::Mem {
                first: 3,
                count: 13,
                node: NodeId::new(0),
                state: PRESENT,
                owner: Owner::FREE,
            },
            Run::Node {
                first: 0,
                count: 2,
                state: PRESENT | ONLINE,
            },
        ];
        for run in runs {
            let mut buf = [0u8; RUN_SIZE];
            run.encode(&mut Writer::new(&mut buf))?;
            let mut r = Reader::new(&buf);
            assert_eq!(Run::decode(&mut r)?, run);
            r.finish()?;
            run.validate(&dims())?;
        }
        Ok(())
    }

    #[test]
    fn validation_rejects() {
        let d = dims();
        let cpu = |first, count, node, state, owner| Run::Cpu {
            first,
            count,
            node,
            state,
            owner,
        };
        assert_eq!(
            cpu(0, 0, NodeId::new(0), PRESENT, Owner::FREE).validate(&d),
            Err(Error::Range)
        );
        assert_eq!(
            cpu(7, 2, NodeId::new(0), PRESENT, Owner::FREE).validate(&d),
            Err(Error::Range)
        );
        assert_eq!(
            cpu(u32::MAX, 2, NodeId::new(0), PRESENT, Owner::FREE).validate(&d),
            Err(Error::Range)
        );
        assert_eq!(
            cpu(0, 1, NodeId::new(2), PRESENT, Owner::FREE).validate(&d),
            Err(Error::Range)
        );
        assert_eq!(
            cpu(0, 1, None, PRESENT | ONLINE, Owner::FREE).validate(&d),
            Err(Error::Range)
        );
        assert_eq!(cpu(0, 1, None, PRESENT, Owner::FREE).validate(&d), Ok(()));
        assert_eq!(cpu(0, 1, None, 0, Owner::FREE).validate(&d), Ok(()));
        assert_eq!(
            cpu(0, 1, NodeId::new(0), PRESENT, Owner(4)).validate(&d),
            Err(Error::State)
        );
        assert_eq!(
            cpu(0, 1, NodeId::new(0), ONLINE, Owner::FREE).validate(&d),
            Err(Error::State)
        );
        let topo = Run::CpuTopo {
            first: 0,
            count: 2,
            package: PackageId::new(0),
            thread: 0,
            core: u32::MAX,
        };
        assert_eq!(topo.validate(&d), Err(Error::Range));
        assert_eq!(
            Run::Node {
                first: 1,
                count: 1,
                state: 0x80
            }
            .validate(&d),
            Err(Error::State)
        );
    }

    /// The node and package fields are 0xffff on the wire for `None`, as they were before
    /// they had types; any other value is an id, checked against the node count.
    #[test]
    fn absent_ids_are_0xffff_on_the_wire() -> Result {
        let mut buf = [0u8; RUN_SIZE];
        let run = Run::Mem {
            first: 0,
            count: 1,
            node: None,
            state: PRESENT,
            owner: Owner::FREE,
        };
        run.encode(&mut Writer::new(&mut buf))?;
        assert_eq!(buf.get(2..4), Some(&[0xff, 0xff][..]));
        assert_eq!(Run::decode(&mut Reader::new(&buf))?, run);
        let topo = Run::CpuTopo {
            first: 0,
            count: 1,
            package: None,
            thread: 0,
            core: 0,
        };
        topo.encode(&mut Writer::new(&mut buf))?;
        assert_eq!(buf.get(2..4), Some(&[0xff, 0xff][..]));
        assert_eq!(Run::decode(&mut Reader::new(&buf))?, topo);
        // Node 0xfffe is an id, far beyond the two nodes of `dims()`.
        buf = [
            KIND_CPU, PRESENT, 0xfe, 0xff, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
        ];
        let run = Run::decode(&mut Reader::new(&buf))?;
        assert!(matches!(run, Run::Cpu { node: Some(n), .. } if n.get() == 0xfffe));
        assert_eq!(run.validate(&dims()), Err(Error::Range));
        Ok(())
    }

    #[test]
    fn decode_rejects_unknown_kind_and_reserved() {
        let mut buf = [0u8; RUN_SIZE];
        buf[0] = 9;
        assert_eq!(Run::decode(&mut Reader::new(&buf)), Err(Error::RunKind));
        buf[0] = KIND_NODE;
        buf[2] = 1;
        assert_eq!(Run::decode(&mut Reader::new(&buf)), Err(Error::Reserved));
        assert_eq!(
            Run::decode(&mut Reader::new(&buf[..15])),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn runs_iterator_needs_whole_runs() {
        assert!(Runs::new(&[0u8; 17]).is_err());
        let bytes = [0u8; 32];
        let mut runs = Runs::new(&bytes).ok();
        assert_eq!(
            runs.as_mut().and_then(Iterator::next),
            Some(Err(Error::RunKind))
        );
        assert_eq!(runs.as_mut().and_then(Iterator::next), None);
    }

    #[test]
    fn compresses_consecutive_cpus() {
        let on = |owner| Cpu {
            node: NodeId::new(0),
            state: PRESENT | ONLINE,
            owner,
            ..Cpu::default()
        };
        let cpus = [on(Owner(1)), on(Owner(1)), on(Owner(2)), on(Owner(1))];
        let runs: [Option<Run>; 3] =
            [0, 2, 3].map(|at| next_run(&cpus, &[], &[], Section::Cpus, at));
        assert_eq!(
            runs.map(|r| r.map(|r| r.count())),
            [Some(2), Some(1), Some(1)]
        );
        assert_eq!(next_run(&cpus, &[], &[], Section::Cpus, 4), None);
    }
}
