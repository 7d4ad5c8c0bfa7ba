// SPDX-License-Identifier: GPL-2.0

//! hwconvey host module.
//!
//! Keeps an inventory of the whole host (CPUs, memory blocks, NUMA nodes)
//! and which parts are allocated to each guest, and tells each guest about
//! it over the hwconvey device.

use core::sync::atomic::{AtomicU32, Ordering};
use kernel::{
    new_mutex,
    prelude::*,
    sync::{aref::ARef, Arc, Mutex},
    time::{Instant, Monotonic},
    vdpa,
};

#[path = "../proto/src/kernel.rs"]
pub mod proto;

mod alloc;
mod device;
mod hotplug;
mod scan;
mod sysfs;

use alloc::{HostState, Publication};
use device::{HwcDevice, Kind};
use proto::{message::DeltaWriter, run::Run};

module! {
    type: HwconveyHost,
    name: "hwconvey_host",
    authors: ["hwconvey developers"],
    description: "hwconvey host: whole-host inventory and guest allocation",
    license: "GPL",
}

/// State shared by the module and every device.
#[pin_data]
pub(crate) struct Host {
    /// The whole host, what each guest holds, and what the guests were told.
    #[pin]
    pub(crate) state: Mutex<HostState>,
    /// The devices, i.e. the guests, that updates go to.
    #[pin]
    devices: Mutex<KVec<ARef<vdpa::Device<HwcDevice>>>>,
    next_guest: AtomicU32,
    /// Generation and time (monotonic ns) of the last `bench_push`.
    #[pin]
    pub(crate) last_push: Mutex<Option<(u64, i64)>>,
    /// `/sys/kernel/hwconvey/host/`, taken out at module exit (it holds a reference to us).
    #[pin]
    pub(crate) sysfs: Mutex<Option<sysfs::HostDir>>,
}

impl Host {
    /// Guest ids start at 1 (owner 0 means free) and end before `u32::MAX` (the host's own
    /// components); past that, no more devices can be created.
    pub(crate) fn next_guest_id(&self) -> Result<u32> {
        self.next_guest
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                n.checked_add(1).filter(|&next| next < u32::MAX)
            })
            .map_err(|_| ENOSPC)
    }

    /// Monotonic time in ns, for the rate limiter.
    pub(crate) fn now_ns() -> u64 {
        u64::try_from(Instant::<Monotonic>::now().as_nanos()).unwrap_or(0)
    }

    /// Sends what changed since the last publication to every device. Called with the state
    /// lock held, right after every change, so that updates go out in generation order.
    pub(crate) fn publish(&self, st: &mut HostState) {
        let publication = match st.publish() {
            Ok(p) => p,
            Err(e) => {
                pr_warn!(
                    "cannot publish generation {}: {:?}\n",
                    st.inventory.generation,
                    e
                );
                Publication::Snapshot
            }
        };
        let devices = self.devices.lock();
        match publication {
            Publication::Nothing => return,
            Publication::Delta(len) => {
                let msg = st.scratch.get(..len).unwrap_or(&[]);
                for dev in devices.iter() {
                    if dev.data().push(msg, Kind::Delta).is_err() {
                        dev.data().resync();
                    }
                }
            }
            Publication::Snapshot => {
                for dev in devices.iter() {
                    dev.data().resync();
                }
            }
        }
        for dev in devices.iter() {
            dev.schedule();
        }
    }

    pub(crate) fn device_added(&self, dev: &vdpa::Device<HwcDevice>) {
        let id = dev.data().guest_id;
        let mut st = self.state.lock();
        match st.add_guest(id, Self::now_ns()) {
            Ok(n) => pr_info!("{}: guest {} starts with {} CPUs\n", dev.name(), id, n),
            Err(e) => pr_warn!(
                "{}: no initial allocation for guest {}: {:?}\n",
                dev.name(),
                id,
                e
            ),
        }
        if self
            .devices
            .lock()
            .push(ARef::from(dev), GFP_KERNEL)
            .is_err()
        {
            pr_warn!(
                "{}: out of memory: the device gets no host updates\n",
                dev.name()
            );
        }
        self.publish(&mut st);
    }

    /// Latency benchmark, host to guest: moves to a new generation whose delta restates CPU 0
    /// unchanged, and sends it to every device. Returns the generation and the time it was
    /// queued; each guest records when it applied it.
    pub(crate) fn bench_push(&self) -> Result<(u64, i64)> {
        let mut buf = [0u8; 64];
        let mut st = self.state.lock();
        let (generation, len) = {
            let inv = &mut st.inventory;
            let cpu0 = *inv.cpus().first().ok_or(ENODEV)?;
            let base = inv.generation;
            let generation = inv.bump_generation();
            let mut w = DeltaWriter::new(&mut buf, base, generation)?;
            w.push(&Run::Cpu {
                first: 0,
                count: 1,
                node: cpu0.node,
                state: cpu0.state,
                owner: cpu0.owner,
            })?;
            (generation, w.finish()?)
        };
        // The delta changes nothing: what the guests were told is the same, one generation on.
        st.published.generation = generation;
        let msg = buf.get(..len).ok_or(EINVAL)?;
        let now = Instant::<Monotonic>::now().as_nanos();
        for dev in self.devices.lock().iter() {
            dev.data().push(msg, Kind::Delta)?;
            dev.schedule();
        }
        drop(st);
        *self.last_push.lock() = Some((generation, now));
        Ok((generation, now))
    }

    pub(crate) fn device_count(&self) -> usize {
        self.devices.lock().len()
    }

    pub(crate) fn device_removed(&self, dev: &vdpa::Device<HwcDevice>) {
        let mut st = self.state.lock();
        self.devices
            .lock()
            .retain(|d| !core::ptr::eq::<vdpa::Device<HwcDevice>>(&**d, dev));
        st.remove_guest(dev.data().guest_id);
        self.publish(&mut st);
    }
}

/// Owns the host's sysfs directory; dropping it removes the directory, which breaks the
/// reference cycle between the host and its directory.
struct SysfsOwner(Arc<Host>);

impl Drop for SysfsOwner {
    fn drop(&mut self) {
        self.0.sysfs.lock().take();
    }
}

#[pin_data]
struct HwconveyHost {
    // Dropped first: no hardware events once the devices go.
    #[pin]
    cpus: kernel::cpuhp::Registration<hotplug::Hotplug>,
    #[pin]
    memory: kernel::memory_notifier::Registration<hotplug::Hotplug>,
    // Deleting the devices removes their directories before the host's.
    #[pin]
    mgmt: vdpa::MgmtRegistration<HwcDevice>,
    sysfs: SysfsOwner,
}

impl kernel::InPlaceModule for HwconveyHost {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let host = Self::host();
        try_pin_init!(Self {
            sysfs: {
                let host = host?;
                let dir = sysfs::host_dir(&host)?;
                *host.sysfs.lock() = Some(dir);
                SysfsOwner(host)
            },
            // Initialised fields are in scope: devices get the host `sysfs` holds.
            mgmt <- vdpa::MgmtRegistration::new(c"hwconvey", sysfs.0.clone()),
            memory <- kernel::memory_notifier::Registration::new(hotplug::Hotplug::new(&sysfs.0)),
            cpus <- kernel::cpuhp::Registration::new(
                c"hwconvey:online",
                hotplug::Hotplug::new(&sysfs.0),
                false,
            ),
        })
    }
}

impl HwconveyHost {
    fn host() -> Result<Arc<Host>> {
        let inventory = scan::scan()?;
        let d = inventory.dims();
        let online_cpus = inventory.cpus().iter().filter(|c| c.online()).count();
        let online_blocks = inventory.blocks().iter().filter(|b| b.online()).count();
        pr_info!(
            "inventory generation {}: {} CPUs ({} online), {} memory blocks of {} MiB ({} online), {} nodes\n",
            inventory.generation,
            d.cpus,
            online_cpus,
            d.blocks,
            inventory.block_mib(),
            online_blocks,
            d.nodes
        );
        let state = HostState::new(inventory)?;
        Arc::pin_init(
            try_pin_init!(Host {
                state <- new_mutex!(state),
                devices <- new_mutex!(KVec::new()),
                next_guest: AtomicU32::new(1),
                last_push <- new_mutex!(None),
                sysfs <- new_mutex!(None),
            }),
            GFP_KERNEL,
        )
    }
}

#[kunit_tests(hwconvey_host)]
mod tests {
    use super::proto::admission::{plan_cpus, Quota};
    use super::proto::guest::Update;
    use super::proto::in_kernel::new_guest_copy;
    use super::proto::inventory::{Owner, ONLINE};
    use super::proto::message::Status;
    use super::proto::message::{decode_guest_msg, SnapshotEncoder, MAX_MSG_SIZE, NODE_ANY};
    use super::scan::scan;
    use kernel::prelude::*;

    #[test]
    fn inventory_matches_the_running_kernel() -> Result {
        let inv = scan()?;
        let online = inv.cpus().iter().filter(|c| c.online()).count();
        assert_eq!(online, kernel::cpu::num_online_cpus() as usize);
        assert_eq!(inv.dims().cpus, kernel::cpu::nr_cpu_ids());
        assert_eq!(inv.dims().nodes, kernel::numa::nr_node_ids());
        assert_eq!(
            inv.dims().block_size,
            kernel::memory_block::block_size_bytes()
        );
        // Online components sit on a real node; nothing is allocated yet.
        for c in inv.cpus().iter().filter(|c| c.online()) {
            assert!(u32::from(c.node) < inv.dims().nodes);
        }
        assert!(inv.blocks().iter().any(|b| b.state & ONLINE != 0));
        assert!(inv.cpus().iter().all(|c| !c.owner.is_guest()));
        Ok(())
    }

    #[test]
    fn snapshot_of_this_host_round_trips() -> Result {
        let host = scan()?;
        let mut copy = new_guest_copy()?;
        let mut enc = SnapshotEncoder::new(7);
        let mut buf = KVec::from_elem(0u8, MAX_MSG_SIZE, GFP_KERNEL)?;
        let mut last = None;
        while let Some(n) = enc.next_part(&host, &mut buf)? {
            last = Some(copy.receive(buf.get(..n).ok_or(EINVAL)?)?);
        }
        assert!(matches!(last, Some(Update::Applied { snapshot: true, .. })));
        assert!(copy.stored().cpus() == host.cpus());
        assert!(copy.stored().blocks() == host.blocks());
        assert!(copy.stored().nodes() == host.nodes());
        assert_eq!(copy.me(), Owner(7));
        Ok(())
    }

    #[test]
    fn admission_grants_only_free_online_cpus() -> Result {
        let mut host = scan()?;
        // Give guest 1 every other online CPU, keep CPU 0 for the host.
        for id in 0..host.dims().cpus {
            if let Some(c) = host.cpu_mut(id) {
                if c.online() {
                    c.owner = if id == 0 {
                        Owner::HOST
                    } else if id % 2 == 1 {
                        Owner(1)
                    } else {
                        Owner::FREE
                    };
                }
            }
        }
        let free = host
            .cpus()
            .iter()
            .filter(|c| c.online() && c.owner == Owner::FREE)
            .count();
        let mut out = KVec::from_elem(0u32, 64, GFP_KERNEL)?;
        let quota = Quota {
            max_cpus: 1024,
            max_mem_mib: 0,
        };
        let plan = plan_cpus(
            &host,
            Owner(2),
            64,
            NODE_ANY,
            &quota,
            &|a, b| u32::from(a != b),
            &mut out,
        );
        assert_eq!(plan.picked, free.min(64));
        let granted = plan.status == Status::Granted;
        assert_eq!(granted, free >= 64);
        for &id in out.iter().take(plan.picked) {
            let c = host.cpus().get(id as usize).ok_or(EINVAL)?;
            assert!(c.online() && c.owner == Owner::FREE);
        }
        Ok(())
    }

    #[test]
    fn hostile_guest_bytes_are_rejected_in_kernel() -> Result {
        // xorshift: varied bytes without a random source in the test.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut buf = [0u8; 64];
        let mut rejected = 0;
        for round in 0..10_000u32 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Make some of them well framed, so the body checks run too.
            let len = 8 + (round as usize % 56);
            buf[0] = 1;
            buf[1] = if round % 2 == 0 { 0x81 } else { 0x82 };
            buf[4..8].copy_from_slice(&(len as u32).to_le_bytes());
            if decode_guest_msg(&buf[..len]).is_err() {
                rejected += 1;
            }
        }
        assert!(rejected > 9_000);
        Ok(())
    }
}
