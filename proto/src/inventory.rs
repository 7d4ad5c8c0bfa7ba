// SPDX-License-Identifier: GPL-2.0

//! The host inventory: every CPU, memory block and NUMA node of the host, and
//! which guest owns each component.
//!
//! A component's index is its identity: `cpus[i]` is Linux CPU `i`,
//! `blocks[i]` is memory block `i` (physical address `i * block_size`),
//! `nodes[i]` is node `i`. The host keeps one inventory for the whole
//! machine; each guest keeps a copy of it, built from snapshots and deltas.

use core::fmt;
use core::num::NonZeroU16;
use core::ops::DerefMut;

use super::error::{Error, Result};

/// Protocol limit on CPUs: a bigger host is refused rather than trusted.
pub const MAX_CPUS: u32 = 16384;
/// Protocol limit on memory blocks (8 TiB in 128 MiB blocks).
pub const MAX_BLOCKS: u32 = 65536;
/// Protocol limit on NUMA nodes.
pub const MAX_NODES: u32 = 1024;

/// Defines a 16-bit id type whose `Option` is two bytes: the id is kept plus one, in a
/// [`NonZeroU16`], and the wire carries the id, or 0xffff for `None`.
macro_rules! u16_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        ///
        /// # Invariants
        ///
        /// The stored value is the id plus one: it is never 0, and the id is never `u16::MAX`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(NonZeroU16);

        impl $name {
            #[doc = concat!("The ", $what, " `id`, or `None` for `u16::MAX`, the one value that ")]
            #[doc = concat!("is not a ", $what, " id.")]
            pub const fn new(id: u16) -> Option<Self> {
                match id.checked_add(1) {
                    // INVARIANT: the stored value is `id + 1`, not 0 since the addition did not
                    // wrap.
                    Some(stored) => match NonZeroU16::new(stored) {
                        Some(stored) => Some(Self(stored)),
                        None => None,
                    },
                    None => None,
                }
            }

            /// The id.
            pub const fn get(self) -> u16 {
                // Never saturates: the stored value is at least 1 (type invariant).
                self.0.get().saturating_sub(1)
            }

            /// The 16 bits that carry `id` on the wire: the id, or 0xffff for `None`. The
            /// decoding is `new`.
            pub(crate) const fn wire(id: Option<Self>) -> u16 {
                match id {
                    Some(id) => id.get(),
                    None => u16::MAX,
                }
            }
        }

        impl TryFrom<u32> for $name {
            type Error = Error;

            /// The id; [`Error::Range`] if it does not fit in 16 bits or is `u16::MAX`.
            fn try_from(id: u32) -> Result<Self> {
                u16::try_from(id)
                    .ok()
                    .and_then(Self::new)
                    .ok_or(Error::Range)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.get(), f)
            }
        }
    };
}

u16_id!(
    /// A NUMA node id, 0 to 65534.
    ///
    /// Where a component may have no node, or a request may name none, the field is an
    /// `Option<NodeId>`, two bytes, so the tables of components, which the host keeps for every
    /// CPU and memory block, do not grow.
    NodeId,
    "node"
);

u16_id!(
    /// A physical package (socket) id, 0 to 65534.
    ///
    /// As [`NodeId`]: a CPU whose topology is not known has `None` in an `Option<PackageId>`.
    PackageId,
    "package"
);

impl NodeId {
    /// The node's id, as an index into the node table.
    pub fn index(self) -> usize {
        usize::from(self.get())
    }

    /// Shows `node` as its id, or "-" for `None`: how sysfs files and logs print a node that
    /// may be absent.
    pub const fn display(node: Option<Self>) -> NodeText {
        NodeText(node)
    }
}

/// A node that may be absent, as text: its id, or "-". Made by [`NodeId::display`].
#[derive(Debug, Clone, Copy)]
pub struct NodeText(Option<NodeId>);

impl fmt::Display for NodeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => fmt::Display::fmt(&id, f),
            None => f.write_str("-"),
        }
    }
}

/// Component state bit: the component exists (a possible CPU may not).
pub const PRESENT: u8 = 1 << 0;
/// Component state bit: the component is online. Implies [`PRESENT`].
pub const ONLINE: u8 = 1 << 1;
/// Node state bit: the node has memory.
pub const NODE_MEMORY: u8 = 1 << 2;
/// Node state bit: the node has CPUs.
pub const NODE_CPUS: u8 = 1 << 3;
/// Every state bit a component may carry.
pub const COMPONENT_STATE_MASK: u8 = PRESENT | ONLINE;
/// Every state bit a node may carry.
pub const NODE_STATE_MASK: u8 = PRESENT | ONLINE | NODE_MEMORY | NODE_CPUS;

/// Who a component belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Owner(pub u32);

impl Owner {
    /// In the free pool: the host may allocate it.
    pub const FREE: Owner = Owner(0);
    /// Kept by the host for itself, never allocated.
    pub const HOST: Owner = Owner(u32::MAX);

    /// The owner for guest `id`, or `None` when `id` is one of the reserved
    /// values.
    pub const fn guest(id: u32) -> Option<Owner> {
        if id == 0 || id == u32::MAX {
            None
        } else {
            Some(Owner(id))
        }
    }

    /// Whether a guest owns the component.
    pub const fn is_guest(self) -> bool {
        self.0 != 0 && self.0 != u32::MAX
    }
}

/// Whether `state` is a valid component state owned by `owner`.
pub const fn component_state_ok(state: u8, owner: Owner) -> bool {
    if state & !COMPONENT_STATE_MASK != 0 {
        return false;
    }
    if state & ONLINE != 0 && state & PRESENT == 0 {
        return false;
    }
    // A guest holds online components only: going offline releases them.
    !(owner.is_guest() && state & ONLINE == 0)
}

/// One CPU. Its id is its index in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cpu {
    /// NUMA node; `None` for a CPU that is not present or sits on no node.
    pub node: Option<NodeId>,
    /// [`PRESENT`] and [`ONLINE`] bits.
    pub state: u8,
    /// SMT thread index within its core.
    pub thread: u8,
    /// Physical package; `None` while the topology is not known.
    pub package: Option<PackageId>,
    /// Core id within the package.
    pub core: u32,
    /// Who the CPU is allocated to.
    pub owner: Owner,
}

// The host keeps one entry per possible CPU and per memory block, and a guest copy of both:
// the typed ids must cost nothing over the 16-bit fields they replaced.
const _: () = assert!(core::mem::size_of::<Cpu>() <= 16);
const _: () = assert!(core::mem::size_of::<MemBlock>() <= 8);

impl Cpu {
    /// Whether the CPU is online.
    pub const fn online(&self) -> bool {
        self.state & ONLINE != 0
    }
}

/// One memory block. Its index is its position in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemBlock {
    /// NUMA node; `None` for a block that is not present or sits on no node.
    pub node: Option<NodeId>,
    /// [`PRESENT`] and [`ONLINE`] bits.
    pub state: u8,
    /// Who the block is allocated to.
    pub owner: Owner,
}

impl MemBlock {
    /// Whether the block is online.
    pub const fn online(&self) -> bool {
        self.state & ONLINE != 0
    }
}

/// One NUMA node. Its id is its index in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Node {
    /// [`NODE_STATE_MASK`] bits.
    pub state: u8,
}

/// Storage for one table of the inventory: a growable slice.
///
/// The crate never allocates: the kernel modules implement this for `KVec`,
/// the tools for `Vec`.
pub trait Table<T: Copy + Default>: DerefMut<Target = [T]> {
    /// Resizes to `len` entries, new ones `T::default()`.
    fn resize_to(&mut self, len: usize) -> Result;
}

#[cfg(feature = "std")]
impl<T: Copy + Default> Table<T> for std::vec::Vec<T> {
    fn resize_to(&mut self, len: usize) -> Result {
        let more = len.saturating_sub(self.len());
        self.try_reserve_exact(more).map_err(|_| Error::NoMemory)?;
        self.resize(len, T::default());
        Ok(())
    }
}

/// How many of each component the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dims {
    /// Possible CPUs.
    pub cpus: u32,
    /// Memory blocks (present or not, the highest index plus one).
    pub blocks: u32,
    /// Possible NUMA nodes.
    pub nodes: u32,
    /// Bytes per memory block.
    pub block_size: u64,
}

impl Dims {
    /// Checks the dimensions against the protocol limits.
    pub const fn validate(&self) -> Result {
        if self.cpus > MAX_CPUS || self.blocks > MAX_BLOCKS || self.nodes > MAX_NODES {
            return Err(Error::TooLarge);
        }
        if self.nodes == 0 || self.cpus == 0 {
            return Err(Error::Range);
        }
        // Block sizes are powers of two of at least one page.
        if !self.block_size.is_power_of_two() || self.block_size < 4096 {
            return Err(Error::Range);
        }
        Ok(())
    }
}

/// What a guest holds, in the units requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Allocation {
    /// Online CPUs owned.
    pub cpus: u32,
    /// Online memory owned, in MiB.
    pub mem_mib: u64,
}

/// The whole-host inventory with a generation number.
///
/// # Invariants
///
/// `cpus`, `blocks` and `nodes` have `dims.cpus`, `dims.blocks` and
/// `dims.nodes` entries.
pub struct Inventory<C, M, N> {
    /// Changes whenever anything a guest is told changes; never goes back.
    pub generation: u64,
    dims: Dims,
    cpus: C,
    blocks: M,
    nodes: N,
}

impl<C, M, N> Inventory<C, M, N>
where
    C: Table<Cpu>,
    M: Table<MemBlock>,
    N: Table<Node>,
{
    /// An empty inventory (generation 0, no components) over the given tables.
    pub fn new(mut cpus: C, mut blocks: M, mut nodes: N) -> Result<Self> {
        cpus.resize_to(0)?;
        blocks.resize_to(0)?;
        nodes.resize_to(0)?;
        Ok(Self {
            generation: 0,
            dims: Dims::default(),
            cpus,
            blocks,
            nodes,
        })
    }

    /// Resizes the tables to `dims`, keeping what fits. Fails, and changes
    /// nothing that was valid, if the dimensions are beyond the limits.
    pub fn set_dims(&mut self, dims: Dims) -> Result {
        dims.validate()?;
        self.cpus.resize_to(dims.cpus as usize)?;
        self.blocks.resize_to(dims.blocks as usize)?;
        self.nodes.resize_to(dims.nodes as usize)?;
        self.dims = dims;
        Ok(())
    }

    /// Makes this the largest host the design targets, all of it present,
    /// online and free, at generation 1: 8192 CPUs (64 nodes x 64 cores x
    /// 2 threads, thread 0 of every core first, as x86 enumerates them),
    /// 16384 memory blocks of 128 MiB (256 per node), 64 nodes. The
    /// benchmarks and the tests that measure the code at that size start
    /// from it.
    pub fn make_large_host(&mut self) -> Result {
        const CPUS: u32 = 8192;
        const BLOCKS: u32 = 16384;
        const NODES: u32 = 64;
        const CORES: u32 = CPUS / 2;
        const CORES_PER_NODE: u32 = CORES / NODES;
        const BLOCKS_PER_NODE: u32 = BLOCKS / NODES;
        self.reset(Dims {
            cpus: CPUS,
            blocks: BLOCKS,
            nodes: NODES,
            block_size: 128 << 20,
        })?;
        for id in 0..CPUS {
            let core = id % CORES;
            let node = core / CORES_PER_NODE;
            *self.cpu_mut(id).ok_or(Error::Range)? = Cpu {
                node: Some(NodeId::try_from(node)?),
                state: PRESENT | ONLINE,
                thread: u8::try_from(id / CORES).map_err(|_| Error::Range)?,
                package: Some(PackageId::try_from(node / 4)?),
                core,
                owner: Owner::FREE,
            };
        }
        for i in 0..BLOCKS {
            *self.block_mut(i).ok_or(Error::Range)? = MemBlock {
                node: Some(NodeId::try_from(i / BLOCKS_PER_NODE)?),
                state: PRESENT | ONLINE,
                owner: Owner::FREE,
            };
        }
        for n in 0..NODES {
            self.node_mut(n).ok_or(Error::Range)?.state =
                PRESENT | ONLINE | NODE_CPUS | NODE_MEMORY;
        }
        self.generation = 1;
        Ok(())
    }

    /// Resizes to `dims` with every component reset to its default: not
    /// present, on no node, no package, free.
    pub fn reset(&mut self, dims: Dims) -> Result {
        dims.validate()?;
        self.cpus.resize_to(0)?;
        self.blocks.resize_to(0)?;
        self.nodes.resize_to(0)?;
        self.dims = Dims::default();
        self.set_dims(dims)?;
        self.generation = 0;
        Ok(())
    }

    /// The dimensions.
    pub const fn dims(&self) -> Dims {
        self.dims
    }

    /// All CPUs, indexed by id.
    pub fn cpus(&self) -> &[Cpu] {
        &self.cpus
    }

    /// All memory blocks, indexed by block index.
    pub fn blocks(&self) -> &[MemBlock] {
        &self.blocks
    }

    /// All nodes, indexed by node id.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// CPUs `first..first + count`, mutable, or `None` if out of range.
    pub fn cpus_mut(&mut self, first: u32, count: u32) -> Option<&mut [Cpu]> {
        let end = first.checked_add(count)?;
        self.cpus.get_mut(first as usize..end as usize)
    }

    /// Blocks `first..first + count`, mutable, or `None` if out of range.
    pub fn blocks_mut(&mut self, first: u32, count: u32) -> Option<&mut [MemBlock]> {
        let end = first.checked_add(count)?;
        self.blocks.get_mut(first as usize..end as usize)
    }

    /// Nodes `first..first + count`, mutable, or `None` if out of range.
    pub fn nodes_mut(&mut self, first: u32, count: u32) -> Option<&mut [Node]> {
        let end = first.checked_add(count)?;
        self.nodes.get_mut(first as usize..end as usize)
    }

    /// CPU `id`, mutable.
    pub fn cpu_mut(&mut self, id: u32) -> Option<&mut Cpu> {
        self.cpus.get_mut(id as usize)
    }

    /// Block `index`, mutable.
    pub fn block_mut(&mut self, index: u32) -> Option<&mut MemBlock> {
        self.blocks.get_mut(index as usize)
    }

    /// Node `id`, mutable.
    pub fn node_mut(&mut self, id: u32) -> Option<&mut Node> {
        self.nodes.get_mut(id as usize)
    }

    /// Bytes per memory block, in MiB.
    pub const fn block_mib(&self) -> u64 {
        self.dims.block_size >> 20
    }

    /// What `owner` holds: online CPUs and online memory.
    pub fn allocation(&self, owner: Owner) -> Allocation {
        let cpus = self
            .cpus
            .iter()
            .filter(|c| c.owner == owner && c.online())
            .count();
        let blocks = self
            .blocks
            .iter()
            .filter(|b| b.owner == owner && b.online())
            .count();
        Allocation {
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
            mem_mib: (blocks as u64).saturating_mul(self.block_mib()),
        }
    }

    /// Moves the generation forward by one, returning the new value.
    pub fn bump_generation(&mut self) -> u64 {
        self.generation = self.generation.wrapping_add(1);
        self.generation
    }

    /// Copies everything from `other`, resizing as needed.
    pub fn copy_from<C2, M2, N2>(&mut self, other: &Inventory<C2, M2, N2>) -> Result
    where
        C2: Table<Cpu>,
        M2: Table<MemBlock>,
        N2: Table<Node>,
    {
        self.set_dims(other.dims)?;
        // Same lengths after `set_dims`; element-wise copies keep a panic path (a length
        // mismatch in `copy_from_slice`) out of kernel code.
        for (d, s) in self.cpus.iter_mut().zip(other.cpus.iter()) {
            *d = *s;
        }
        for (d, s) in self.blocks.iter_mut().zip(other.blocks.iter()) {
            *d = *s;
        }
        for (d, s) in self.nodes.iter_mut().zip(other.nodes.iter()) {
            *d = *s;
        }
        self.generation = other.generation;
        Ok(())
    }

    /// Swaps contents with `other` (same table types), in O(1).
    pub fn swap(&mut self, other: &mut Self) {
        core::mem::swap(self, other);
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    type Inv = Inventory<Vec<Cpu>, Vec<MemBlock>, Vec<Node>>;

    #[test]
    fn owners() {
        assert_eq!(Owner::guest(0), None);
        assert_eq!(Owner::guest(u32::MAX), None);
        assert!(Owner::guest(3).is_some_and(Owner::is_guest));
        assert!(!Owner::FREE.is_guest() && !Owner::HOST.is_guest());
    }

    #[test]
    fn node_ids() {
        assert_eq!(NodeId::new(u16::MAX), None);
        assert_eq!(NodeId::new(0).map(NodeId::get), Some(0));
        assert_eq!(
            NodeId::new(u16::MAX - 1).map(NodeId::get),
            Some(u16::MAX - 1)
        );
        assert!(NodeId::new(1) < NodeId::new(2));
        assert_eq!(NodeId::new(7).map(NodeId::index), Some(7));
        assert_eq!(NodeId::try_from(65534u32).map(NodeId::get), Ok(65534));
        assert_eq!(NodeId::try_from(65535u32), Err(Error::Range));
        assert_eq!(NodeId::try_from(1u32 << 16), Err(Error::Range));
        assert_eq!(NodeId::wire(None), 0xffff);
        assert_eq!(NodeId::wire(NodeId::new(3)), 3);
        assert_eq!(PackageId::new(u16::MAX), None);
        assert_eq!(PackageId::wire(PackageId::new(2)), 2);
        assert_eq!(PackageId::wire(None), 0xffff);
        assert_eq!(core::mem::size_of::<Option<NodeId>>(), 2);
        assert_eq!(core::mem::size_of::<Option<PackageId>>(), 2);
        assert_eq!(std::format!("{}", NodeId::display(NodeId::new(12))), "12");
        assert_eq!(std::format!("{}", NodeId::display(None)), "-");
    }

    #[test]
    fn states() {
        assert!(component_state_ok(PRESENT | ONLINE, Owner(5)));
        assert!(!component_state_ok(PRESENT, Owner(5)));
        assert!(component_state_ok(PRESENT, Owner::FREE));
        assert!(!component_state_ok(ONLINE, Owner::FREE));
        assert!(!component_state_ok(1 << 5, Owner::FREE));
    }

    #[test]
    fn dims_are_bounded() {
        let ok = Dims {
            cpus: 4,
            blocks: 8,
            nodes: 1,
            block_size: 128 << 20,
        };
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(
            Dims {
                cpus: MAX_CPUS + 1,
                ..ok
            }
            .validate(),
            Err(Error::TooLarge)
        );
        assert_eq!(
            Dims {
                block_size: 3 << 20,
                ..ok
            }
            .validate(),
            Err(Error::Range)
        );
        assert_eq!(Dims { nodes: 0, ..ok }.validate(), Err(Error::Range));
    }

    #[test]
    fn allocation_counts_online_only() -> Result {
        let mut inv = Inv::new(Vec::new(), Vec::new(), Vec::new())?;
        inv.set_dims(Dims {
            cpus: 4,
            blocks: 4,
            nodes: 1,
            block_size: 128 << 20,
        })?;
        for id in 0..3 {
            *inv.cpu_mut(id).ok_or(Error::Range)? = Cpu {
                state: PRESENT | ONLINE,
                owner: Owner(7),
                ..Cpu::default()
            };
        }
        *inv.block_mut(1).ok_or(Error::Range)? = MemBlock {
            node: NodeId::new(0),
            state: PRESENT | ONLINE,
            owner: Owner(7),
        };
        *inv.block_mut(2).ok_or(Error::Range)? = MemBlock {
            node: NodeId::new(0),
            state: PRESENT,
            owner: Owner(7),
        };
        assert_eq!(
            inv.allocation(Owner(7)),
            Allocation {
                cpus: 3,
                mem_mib: 128
            }
        );
        Ok(())
    }
}
