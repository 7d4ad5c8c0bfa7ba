// SPDX-License-Identifier: GPL-2.0

//! What an update changed, in the host and in this guest's allocation.

use super::inventory::{Cpu, Inventory, MemBlock, Node, Owner, Table, ONLINE, PRESENT};

/// Counts of what changed between two versions of the inventory, seen from
/// one guest (`me`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Diff {
    /// CPUs that became present.
    pub cpus_added: u32,
    /// CPUs that stopped being present.
    pub cpus_removed: u32,
    /// CPUs that came online.
    pub cpus_onlined: u32,
    /// CPUs that went offline.
    pub cpus_offlined: u32,
    /// CPUs that moved between owners other than `me`.
    pub cpus_reassigned: u32,
    /// CPUs whose node or topology changed.
    pub cpus_moved: u32,
    /// CPUs `me` gained.
    pub my_cpus_gained: u32,
    /// CPUs `me` lost.
    pub my_cpus_lost: u32,
    /// Memory blocks that became present.
    pub blocks_added: u32,
    /// Memory blocks that stopped being present.
    pub blocks_removed: u32,
    /// Memory blocks that came online.
    pub blocks_onlined: u32,
    /// Memory blocks that went offline.
    pub blocks_offlined: u32,
    /// Memory blocks that moved between owners other than `me`.
    pub blocks_reassigned: u32,
    /// Memory blocks `me` gained.
    pub my_blocks_gained: u32,
    /// Memory blocks `me` lost.
    pub my_blocks_lost: u32,
    /// Nodes whose state changed.
    pub nodes_changed: u32,
}

fn bump(n: &mut u32) {
    *n = n.saturating_add(1);
}

/// Counts one component's change in the fields given.
struct Fields<'a> {
    added: &'a mut u32,
    removed: &'a mut u32,
    onlined: &'a mut u32,
    offlined: &'a mut u32,
    reassigned: &'a mut u32,
    gained: &'a mut u32,
    lost: &'a mut u32,
}

impl Fields<'_> {
    fn account(self, old_state: u8, old_owner: Owner, new_state: u8, new_owner: Owner, me: Owner) {
        let was = |bit| old_state & bit != 0;
        let is = |bit| new_state & bit != 0;
        match (was(PRESENT), is(PRESENT)) {
            (false, true) => bump(self.added),
            (true, false) => bump(self.removed),
            _ => {}
        }
        match (was(ONLINE), is(ONLINE)) {
            (false, true) => bump(self.onlined),
            (true, false) => bump(self.offlined),
            _ => {}
        }
        if old_owner != new_owner {
            if new_owner == me {
                bump(self.gained);
            } else if old_owner == me {
                bump(self.lost);
            } else {
                bump(self.reassigned);
            }
        }
    }
}

impl Diff {
    /// Accounts one CPU going from `old` to `new`.
    pub fn cpu(&mut self, old: &Cpu, new: &Cpu, me: Owner) {
        Fields {
            added: &mut self.cpus_added,
            removed: &mut self.cpus_removed,
            onlined: &mut self.cpus_onlined,
            offlined: &mut self.cpus_offlined,
            reassigned: &mut self.cpus_reassigned,
            gained: &mut self.my_cpus_gained,
            lost: &mut self.my_cpus_lost,
        }
        .account(old.state, old.owner, new.state, new.owner, me);
        if old.node != new.node
            || old.package != new.package
            || old.core != new.core
            || old.thread != new.thread
        {
            bump(&mut self.cpus_moved);
        }
    }

    /// Accounts one memory block going from `old` to `new`.
    pub fn block(&mut self, old: &MemBlock, new: &MemBlock, me: Owner) {
        Fields {
            added: &mut self.blocks_added,
            removed: &mut self.blocks_removed,
            onlined: &mut self.blocks_onlined,
            offlined: &mut self.blocks_offlined,
            reassigned: &mut self.blocks_reassigned,
            gained: &mut self.my_blocks_gained,
            lost: &mut self.my_blocks_lost,
        }
        .account(old.state, old.owner, new.state, new.owner, me);
    }

    /// Accounts one node going from `old` to `new`.
    pub fn node(&mut self, old: &Node, new: &Node) {
        if old != new {
            bump(&mut self.nodes_changed);
        }
    }

    /// Whether `me`'s allocation changed.
    pub const fn allocation_changed(&self) -> bool {
        self.my_cpus_gained != 0
            || self.my_cpus_lost != 0
            || self.my_blocks_gained != 0
            || self.my_blocks_lost != 0
    }

    /// Whether anything changed at all.
    pub fn any(&self) -> bool {
        *self != Diff::default()
    }
}

/// Compares two inventories component by component. A component that exists
/// in only one of them is compared with an absent (default) one.
pub fn diff<C, M, N, C2, M2, N2>(
    old: &Inventory<C, M, N>,
    new: &Inventory<C2, M2, N2>,
    me: Owner,
) -> Diff
where
    C: Table<Cpu>,
    M: Table<MemBlock>,
    N: Table<Node>,
    C2: Table<Cpu>,
    M2: Table<MemBlock>,
    N2: Table<Node>,
{
    /// Calls `f` for each index where the two tables differ; an index in
    /// only one of them is compared with an absent (default) component.
    fn changed<T: Copy + Default + PartialEq>(a: &[T], b: &[T], mut f: impl FnMut(&T, &T)) {
        for (x, y) in a.iter().zip(b.iter()) {
            if x != y {
                f(x, y);
            }
        }
        let absent = T::default();
        for x in a.get(b.len()..).unwrap_or_default() {
            f(x, &absent);
        }
        for y in b.get(a.len()..).unwrap_or_default() {
            f(&absent, y);
        }
    }
    let mut d = Diff::default();
    changed(old.cpus(), new.cpus(), |o, n| d.cpu(o, n, me));
    changed(old.blocks(), new.blocks(), |o, n| d.block(o, n, me));
    changed(old.nodes(), new.nodes(), |o, n| d.node(o, n));
    d
}
