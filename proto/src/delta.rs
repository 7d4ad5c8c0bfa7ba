// SPDX-License-Identifier: GPL-2.0

//! Deltas computed by comparison: the host changes its inventory freely and,
//! when it publishes, compares it with what it published last. Changed
//! components become runs; consecutive ones with the same new values share
//! one, so one hotplug event costs one run whatever the host's size.

use super::error::{Error, Result};
use super::inventory::{Cpu, Inventory, MemBlock, Node, Table};
use super::message::DeltaWriter;
use super::run::Run;

/// Writes into `w` the runs that turn `old` into `new`. Both must have the
/// same dimensions (a change of dimensions needs a snapshot). Returns how
/// many runs it wrote; [`Error::NoSpace`] means the delta does not fit in one
/// message and a snapshot should be sent instead.
pub fn write_delta<C, M, N, C2, M2, N2>(
    old: &Inventory<C, M, N>,
    new: &Inventory<C2, M2, N2>,
    w: &mut DeltaWriter<'_>,
) -> Result<usize>
where
    C: Table<Cpu>,
    M: Table<MemBlock>,
    N: Table<Node>,
    C2: Table<Cpu>,
    M2: Table<MemBlock>,
    N2: Table<Node>,
{
    if old.dims() != new.dims() {
        return Err(Error::Range);
    }
    let before = w.runs();
    let (oc, nc) = (old.cpus(), new.cpus());

    // Node, state and owner of CPUs.
    let key = |c: &Cpu| (c.node, c.state, c.owner);
    for_each_changed(
        oc,
        nc,
        |a, b| key(a) != key(b),
        |x, y| key(x) == key(y),
        |first, count, c| {
            w.push(&Run::Cpu {
                first,
                count,
                node: c.node,
                state: c.state,
                owner: c.owner,
            })
        },
    )?;

    // Topology: a run continues while package and thread match and cores
    // are consecutive.
    let topo = |c: &Cpu| (c.package, c.thread, c.core);
    let mut pending: Option<(u32, u32, Cpu)> = None;
    for (i, (a, b)) in oc.iter().zip(nc.iter()).enumerate() {
        let i = u32::try_from(i).map_err(|_| Error::TooLarge)?;
        let changed = topo(a) != topo(b);
        if let Some((first, count, head)) = pending {
            let next_core = head.core.checked_add(count);
            let continues = changed
                && first.checked_add(count) == Some(i)
                && b.package == head.package
                && b.thread == head.thread
                && next_core == Some(b.core);
            if continues {
                pending = Some((first, count.saturating_add(1), head));
                continue;
            }
            w.push(&Run::CpuTopo {
                first,
                count,
                package: head.package,
                thread: head.thread,
                core: head.core,
            })?;
            pending = None;
        }
        if changed {
            pending = Some((i, 1, *b));
        }
    }
    if let Some((first, count, head)) = pending {
        w.push(&Run::CpuTopo {
            first,
            count,
            package: head.package,
            thread: head.thread,
            core: head.core,
        })?;
    }

    for_each_changed(
        old.blocks(),
        new.blocks(),
        |a, b| a != b,
        |x, y| x == y,
        |first, count, b| {
            w.push(&Run::Mem {
                first,
                count,
                node: b.node,
                state: b.state,
                owner: b.owner,
            })
        },
    )?;
    for_each_changed(
        old.nodes(),
        new.nodes(),
        |a, b| a != b,
        |x, y| x == y,
        |first, count, n| {
            w.push(&Run::Node {
                first,
                count,
                state: n.state,
            })
        },
    )?;
    Ok(w.runs().saturating_sub(before))
}

/// Calls `emit(first, count, value)` for each maximal span of consecutive
/// indices where `changed(old, new)` holds and the new values are `same`.
fn for_each_changed<T: Copy>(
    old: &[T],
    new: &[T],
    changed: impl Fn(&T, &T) -> bool,
    same: impl Fn(&T, &T) -> bool,
    mut emit: impl FnMut(u32, u32, &T) -> Result,
) -> Result {
    let mut pending: Option<(u32, u32, T)> = None;
    for (i, (a, b)) in old.iter().zip(new.iter()).enumerate() {
        let i = u32::try_from(i).map_err(|_| Error::TooLarge)?;
        let c = changed(a, b);
        if let Some((first, count, head)) = pending {
            if c && same(&head, b) {
                pending = Some((first, count.saturating_add(1), head));
                continue;
            }
            emit(first, count, &head)?;
            pending = None;
        }
        if c {
            pending = Some((i, 1, *b));
        }
    }
    if let Some((first, count, head)) = pending {
        emit(first, count, &head)?;
    }
    Ok(())
}
