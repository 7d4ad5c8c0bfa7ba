// SPDX-License-Identifier: GPL-2.0

//! Keeps the inventory current: CPU and memory hotplug events change it, re-allocate what the
//! guests lose, and publish the update.

use crate::{inventory::Placement, Host};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{
    cpu::CpuId,
    cpuhp::CpuHotplug,
    memory_block,
    memory_notifier::{Event, MemoryHotplug},
    page::PAGE_SIZE,
    prelude::*,
    sync::Arc,
};

/// Hardware events seen, for sysfs.
pub(crate) static CPU_EVENTS: AtomicU64 = AtomicU64::new(0);
/// Memory events seen (online and offline of a range), for sysfs.
pub(crate) static MEMORY_EVENTS: AtomicU64 = AtomicU64::new(0);

/// Receives the hotplug events for the host.
pub(crate) struct Hotplug {
    host: Arc<Host>,
}

impl Hotplug {
    pub(crate) fn new(host: &Arc<Host>) -> Self {
        Self { host: host.clone() }
    }

    fn cpu(&self, cpu: CpuId, online: bool) -> Result {
        CPU_EVENTS.fetch_add(1, Ordering::Relaxed);
        let mut st = self.host.state.lock();
        let before = st.inventory.generation;
        // A CPU coming online brings its node and topology: it may not have been present
        // when the inventory was built.
        let placement = online.then(|| Placement::of(cpu));
        st.cpu_changed(cpu.as_u32(), placement)?;
        if st.inventory.generation != before {
            pr_info!(
                "CPU {} {}: generation {}\n",
                cpu.as_u32(),
                if online { "online" } else { "going offline" },
                st.inventory.generation
            );
        }
        self.host.publish(&mut st);
        drop(st);
        // The kernel's own workqueues re-affine their workers from CPU hotplug callbacks too.
        self.host.pin_vcpus();
        Ok(())
    }
}

impl CpuHotplug for Hotplug {
    fn online(&self, cpu: CpuId) -> Result {
        // Never stop a CPU from coming up over our bookkeeping.
        let _ = self.cpu(cpu, true);
        Ok(())
    }

    fn offline(&self, cpu: CpuId) -> Result {
        let _ = self.cpu(cpu, false);
        Ok(())
    }
}

impl MemoryHotplug for Hotplug {
    fn event(&self, event: Event, start_pfn: usize, nr_pages: usize) -> Result {
        let online = match event {
            Event::Online => true,
            Event::Offline => false,
            // Transitions that have not happened yet, or did not: nothing changed.
            _ => return Ok(()),
        };
        MEMORY_EVENTS.fetch_add(1, Ordering::Relaxed);
        let block = memory_block::block_size_bytes().max(1) as u64;
        let start = (start_pfn as u64).saturating_mul(PAGE_SIZE as u64);
        let len = (nr_pages as u64).saturating_mul(PAGE_SIZE as u64);
        let first = u32::try_from(start / block).unwrap_or(u32::MAX);
        let count = u32::try_from(len.div_ceil(block)).unwrap_or(u32::MAX);
        // Where blocks coming online sit, looked up before the state lock: the walk of the
        // memory bus takes its own locks.
        let nodes = if online {
            crate::inventory::block_nodes(first, count).unwrap_or_default()
        } else {
            KVec::new()
        };
        let mut st = self.host.state.lock();
        if let Err(e) = st.blocks_changed(first, count, online, &nodes) {
            pr_warn!(
                "memory blocks {}..{}: not recorded ({:?}): the inventory may be stale\n",
                first,
                first.saturating_add(count),
                e
            );
        }
        pr_info!(
            "memory blocks {}..{} {}: generation {}\n",
            first,
            first.saturating_add(count),
            if online { "online" } else { "offline" },
            st.inventory.generation
        );
        self.host.publish(&mut st);
        drop(st);
        self.host.pin_vcpus();
        Ok(())
    }
}
