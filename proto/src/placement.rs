// SPDX-License-Identifier: GPL-2.0

//! Where a VM's vCPUs run: one allocated host CPU per vCPU, stably.
//!
//! The host pins the threads that run a guest's vCPUs to the CPUs allocated to that guest. A
//! vCPU keeps the CPU it has while that CPU stays allocated, so that a change of the allocation
//! (a replaced CPU, a grant, a shrink) moves only the vCPUs it must: their caches and the
//! guest's view of its CPUs' performance stay put. The rest take the free allocated CPUs in
//! order. A VM with more vCPUs than allocated CPUs runs the surplus anywhere in the allocation.
//!
//! Nothing here allocates: callers pass the buffers, sized to the input.

use super::error::{Error, Result};

/// Where one vCPU is to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// On this host CPU alone.
    Cpu(u32),
    /// Anywhere in the allocation: the VM has more vCPUs than allocated CPUs.
    Shared,
}

/// Places vCPUs on `cpus`, the allocated CPUs in ascending order without repeats.
///
/// `current[i]` is the CPU vCPU `i` is pinned to now, if any; `out[i]` gets where it is to run.
/// `taken` is scratch space, one flag per allocated CPU. Fails with [`Error::NoSpace`] if the
/// buffers are not sized to the input, and with [`Error::State`] if `cpus` is not strictly
/// ascending; `out` is then left as it was.
pub fn place(
    current: &[Option<u32>],
    cpus: &[u32],
    taken: &mut [bool],
    out: &mut [Place],
) -> Result<()> {
    if out.len() != current.len() || taken.len() != cpus.len() {
        return Err(Error::NoSpace);
    }
    if cpus.windows(2).any(|w| w.first() >= w.last()) {
        return Err(Error::State);
    }
    taken.fill(false);
    // Whose CPU stays: the first vCPU (by index) pinned to a CPU that is still allocated.
    for (slot, cur) in out.iter_mut().zip(current) {
        *slot = Place::Shared;
        let Some(cpu) = *cur else { continue };
        if let Ok(i) = cpus.binary_search(&cpu) {
            if let Some(t) = taken.get_mut(i).filter(|t| !**t) {
                *t = true;
                *slot = Place::Cpu(cpu);
            }
        }
    }
    // The others take the free CPUs in ascending order, while there are any.
    let mut free = cpus.iter().zip(taken.iter()).filter(|(_, t)| !**t);
    for (slot, cur) in out.iter_mut().zip(current) {
        let keeps = matches!((*slot, *cur), (Place::Cpu(a), Some(b)) if a == b);
        if !keeps {
            if let Some((cpu, _)) = free.next() {
                *slot = Place::Cpu(*cpu);
            }
        }
    }
    Ok(())
}
