// SPDX-License-Identifier: GPL-2.0

//! hwconvey host module.
//!
//! Keeps an inventory of the whole host (CPUs, memory blocks, NUMA nodes)
//! and which parts are allocated to each guest, and tells each guest about
//! it over the hwconvey device.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::{
    cpu::CpuId,
    cpumask::CpumaskVar,
    mm::Mm,
    new_mutex,
    prelude::*,
    sync::{aref::ARef, Arc, Mutex, SetOnce},
    sysfs::Notifier,
    task::Task,
    time::{Instant, Monotonic},
    uaccess::UserSliceReader,
    vdpa,
};

#[path = "../proto/src/kernel.rs"]
pub mod proto;

mod device;
mod hotplug;
mod inventory;
mod state;
mod sysfs;
mod vms;

use device::{HwcDevice, Kind};
use proto::{
    message::{DeltaWriter, MAX_MSG_SIZE},
    placement::{place, Place},
    run::Run,
};
use state::{HostState, Publication};

module! {
    type: HwconveyHost,
    name: "hwconvey_host",
    authors: ["hwconvey developers"],
    description: "hwconvey host: whole-host inventory and guest allocation",
    license: "GPL",
    params: {
        inject: bool {
            default: false,
            description: "Let root queue raw messages for a guest through debugfs (for tests)",
        },
    },
}

/// State shared by the module and every device.
///
/// Lock order: `pin_lock`, then `state`, then `devices`, then `vms`; `last_push` and `sysfs`
/// nest under none of them, and a device's own `links` lock nests under the host's `sysfs`
/// (when a device gets its link).
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
    /// The VMs KVM told of, and their vCPU threads.
    #[pin]
    pub(crate) vms: Mutex<vms::Vms>,
    /// Serialises [`Host::pin_vcpus`], so that pins are applied in the order they were planned.
    #[pin]
    pin_lock: Mutex<()>,
    /// vCPU threads the scheduler refused to pin (`set_cpus_allowed_ptr` failed).
    pub(crate) pin_failures: AtomicU64,
    /// The last publication that went out: its generation, how many devices it went to, and
    /// how long queueing it for all of them took (ns). Written under the state lock.
    pub(crate) last_publication: [AtomicU64; 3],
    /// Changes a watcher wants to see (publications, answers, devices and their drivers and
    /// VMMs coming and going), counted in the `events` file, whose pollers [`Host::changed`]
    /// wakes once the host's directory exists.
    pub(crate) events: AtomicU64,
    pub(crate) events_notifier: SetOnce<Notifier>,
}

/// One vCPU thread to move, planned under the locks and applied after them.
struct PinJob {
    vm: kernel::kvm::VmId,
    /// The VM's address space, which the thread must still run in when it is moved.
    mm: ARef<Mm>,
    vcpu: u32,
    thread: ARef<Task>,
    cpus: CpumaskVar,
}

impl PinJob {
    fn new(vm: kernel::kvm::VmId, mm: &ARef<Mm>, vcpu: &vms::Vcpu, cpus: CpumaskVar) -> Self {
        Self {
            vm,
            mm: mm.clone(),
            vcpu: vcpu.id,
            thread: vcpu.thread.clone(),
            cpus,
        }
    }
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

    /// Counts a change and wakes those who poll the `events` file. Any lock may be held.
    pub(crate) fn changed(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
        if let Some(n) = self.events_notifier.as_ref() {
            n.notify();
        }
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
        let start = Instant::<Monotonic>::now();
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
        let took = u64::try_from(start.elapsed().as_nanos()).unwrap_or(0);
        let [generation, count, ns] = &self.last_publication;
        generation.store(st.inventory.generation, Ordering::Relaxed);
        count.store(devices.len() as u64, Ordering::Relaxed);
        ns.store(took, Ordering::Relaxed);
        self.changed();
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
        drop(st);
        // The link to the device's files from the host's directory (the host module's part,
        // not the device's: device code does not reach into sysfs).
        if let Some(parent) = self.sysfs.lock().as_ref() {
            match sysfs::device_links(parent, dev) {
                Ok(links) => *dev.data().links.lock() = Some(links),
                Err(e) => pr_warn!("{}: no debugfs listing: {:?}\n", dev.name(), e),
            }
        }
        // Once its files exist, so that a woken watcher finds them.
        self.changed();
    }

    /// The VMM of `dev` took it (`bound`) or went away: applies [`state::Policy::release_on_exit`]
    /// and tells every guest what changed.
    pub(crate) fn owner_changed(&self, dev: &vdpa::Device<HwcDevice>, bound: bool) {
        let id = dev.data().guest_id;
        let mut st = self.state.lock();
        if bound {
            if let Some(n) = st.owner_came(id) {
                pr_info!(
                    "{}: a new VMM: guest {} starts again with {} CPUs\n",
                    dev.name(),
                    id,
                    n
                );
            }
        } else if st.owner_left(id) {
            pr_info!(
                "{}: its VMM went away: guest {}'s allocation is free again\n",
                dev.name(),
                id
            );
        }
        self.publish(&mut st);
    }

    /// Whether the VM of address space `mm_id` owns a device.
    pub(crate) fn owns_a_device(&self, mm_id: usize) -> bool {
        self.devices
            .lock()
            .iter()
            .any(|d| d.data().stats.owner_mm.load(Ordering::Acquire) == mm_id)
    }

    /// The device of guest `id`.
    pub(crate) fn device(&self, id: u32) -> Option<ARef<vdpa::Device<HwcDevice>>> {
        self.devices
            .lock()
            .iter()
            .find(|d| d.data().guest_id == id)
            .cloned()
    }

    /// The device whose owner has address space `mm_id`, i.e. the one that VM owns.
    pub(crate) fn device_of(&self, mm_id: usize) -> Option<ARef<vdpa::Device<HwcDevice>>> {
        self.devices
            .lock()
            .iter()
            .find(|d| d.data().stats.owner_mm.load(Ordering::Acquire) == mm_id)
            .cloned()
    }

    /// KVM destroys the VM of address space `mm_id`: as when its VMM leaves, its guest's
    /// allocation goes back to the free pool ([`state::Policy::release_on_exit`]).
    pub(crate) fn vm_destroyed(&self, mm_id: usize) {
        let Some(dev) = self.device_of(mm_id) else {
            return;
        };
        let mut st = self.state.lock();
        if st.owner_left(dev.data().guest_id) {
            pr_info!(
                "{}: its VM was destroyed: guest {}'s allocation is free again\n",
                dev.name(),
                dev.data().guest_id
            );
        }
        self.publish(&mut st);
        drop(st);
        // What it held may have gone to guests that had shrunk.
        self.pin_vcpus();
    }

    /// Pins every vCPU thread of each device's VM to the CPUs allocated to the device's guest:
    /// one CPU per vCPU, stably ([`proto::placement`]); vCPUs beyond the allocation share it.
    ///
    /// Called in process context with none of the host's locks held, after every change that
    /// can move a pin: an allocation published, a vCPU created or moved to another thread, a
    /// VMM that took a device.
    pub(crate) fn pin_vcpus(&self) {
        let _serial = self.pin_lock.lock();
        let jobs = match self.plan_pins() {
            Ok(jobs) => jobs,
            Err(e) => {
                pr_warn!("cannot plan vCPU pins: {:?}\n", e);
                return;
            }
        };
        // The scheduler may sleep to move a running thread: no lock of ours but the pinning
        // one is held.
        for job in jobs.iter() {
            // A recorded thread that called execve() since, or is exiting, runs in another
            // address space or none: it is no longer the VM's to move.
            if !job.thread.uses_mm(&job.mm) {
                continue;
            }
            if job.thread.set_cpus_allowed(&job.cpus).is_err() {
                self.pin_failures.fetch_add(1, Ordering::Relaxed);
                // Planned again at the next change.
                if let Some(vm) = self.vms.lock().list.iter_mut().find(|v| v.id == job.vm) {
                    if let Some(c) = vm.vcpus.iter_mut().find(|c| c.id == job.vcpu) {
                        c.applied = false;
                    }
                }
            }
        }
    }

    /// Plans where every tracked vCPU thread goes: the CPUs of its VM's guest when the VM owns
    /// a device and pinning is on, else back to every CPU if the host pinned it before (its
    /// VMM let go of the device, or pinning was switched off). Marks the plan applied.
    fn plan_pins(&self) -> Result<KVec<PinJob>> {
        let mut jobs = KVec::new();
        let st = self.state.lock();
        let devices = self.devices.lock();
        let mut vms = self.vms.lock();
        for vm in vms.list.iter_mut() {
            let (id, mm) = (vm.id, vm.mm().clone());
            let guest = devices
                .iter()
                .map(|d| d.data())
                .find(|d| d.stats.owner_mm.load(Ordering::Acquire) == vm.mm_id())
                .map(|d| d.guest_id);
            let cpus = match guest.filter(|_| st.policy.pin_vcpus) {
                Some(id) => st.guest_cpus(id)?,
                None => KVec::new(),
            };
            if cpus.is_empty() {
                // Nothing to run on, or not ours to place: undo what the host did.
                for vcpu in vm.vcpus.iter_mut().filter(|c| c.place.is_some()) {
                    let mut mask = CpumaskVar::new_zero(GFP_KERNEL)?;
                    mask.setall();
                    jobs.push(PinJob::new(id, &mm, vcpu, mask), GFP_KERNEL)?;
                    vcpu.place = None;
                    vcpu.applied = true;
                }
                vm.placed_on.clear();
                continue;
            }
            let mut current = KVec::with_capacity(vm.vcpus.len(), GFP_KERNEL)?;
            for c in vm.vcpus.iter() {
                let pinned = match c.place {
                    Some(Place::Cpu(cpu)) => Some(cpu),
                    _ => None,
                };
                current.push(pinned, GFP_KERNEL)?;
            }
            let mut taken = KVec::from_elem(false, cpus.len(), GFP_KERNEL)?;
            let mut out = KVec::from_elem(Place::Shared, vm.vcpus.len(), GFP_KERNEL)?;
            place(&current, &cpus, &mut taken, &mut out).map_err(|_| EINVAL)?;
            let same_cpus = vm.placed_on[..] == cpus[..];
            for (vcpu, p) in vm.vcpus.iter_mut().zip(out.iter()) {
                // A shared vCPU follows the allocation; a pinned one only its own CPU.
                if vcpu.applied && vcpu.place == Some(*p) && (*p != Place::Shared || same_cpus) {
                    continue;
                }
                let mut mask = CpumaskVar::new_zero(GFP_KERNEL)?;
                let on: &[u32] = match p {
                    Place::Cpu(cpu) => core::slice::from_ref(cpu),
                    Place::Shared => &cpus,
                };
                for &cpu in on {
                    mask.set(CpuId::from_u32(cpu).ok_or(EINVAL)?);
                }
                vcpu.place = Some(*p);
                vcpu.applied = true;
                jobs.push(PinJob::new(id, &mm, vcpu, mask), GFP_KERNEL)?;
            }
            vm.placed_on = cpus;
        }
        Ok(jobs)
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
            // As in a publication: a device that cannot take the delta gets a snapshot, and
            // the other devices still get it.
            if dev.data().push(msg, Kind::Delta).is_err() {
                dev.data().resync();
            }
            dev.schedule();
        }
        drop(st);
        *self.last_push.lock() = Some((generation, now));
        self.changed();
        Ok((generation, now))
    }

    /// `bench_push` in debugfs, read: the generation of the last push and when it was queued.
    fn show_last_push(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        match *self.last_push.lock() {
            Some((generation, ns)) => writeln!(f, "generation {generation} ns {ns}"),
            None => writeln!(f, "none"),
        }
    }

    /// `bench_push` in debugfs, written: "1" pushes ([`Host::bench_push`]); anything else is
    /// refused.
    fn store_bench_push(&self, r: &mut UserSliceReader) -> Result {
        let mut buf = [0u8; 8];
        let text = buf.get_mut(..r.len()).ok_or(EINVAL)?;
        r.read_slice(text)?;
        if core::str::from_utf8(text).map_err(|_| EINVAL)?.trim() != "1" {
            return Err(EINVAL);
        }
        self.bench_push().map(|_| ())
    }

    pub(crate) fn device_count(&self) -> usize {
        self.devices.lock().len()
    }

    /// The files of a device, on the vDPA device ([`vdpa::SoftDevice::attributes`]).
    pub(crate) fn device_attributes(
        &self,
        info: &Arc<device::DevInfo>,
    ) -> Result<kernel::sysfs::DeviceGroup> {
        sysfs::device_group(info)
    }

    pub(crate) fn device_removed(&self, dev: &vdpa::Device<HwcDevice>) {
        let mut st = self.state.lock();
        self.devices
            .lock()
            .retain(|d| !core::ptr::eq::<vdpa::Device<HwcDevice>>(&**d, dev));
        st.remove_guest(dev.data().guest_id);
        self.publish(&mut st);
        drop(st);
        self.changed();
        // What it held may have gone to guests that had shrunk.
        self.pin_vcpus();
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
    /// `/sys/kernel/debug/hwconvey-host/`, for people, tests and benchmarks, not ABI: `cpus`
    /// (the CPU table, [`sysfs::show_cpu_listing`]), `<device>/vcpus` (made with the device's
    /// files), `inject` ([`Host::inject`]) and `bench_push` ([`Host::bench_push`]).
    debugfs: kernel::debugfs::Dir,
    #[pin]
    cpu_listing: kernel::debugfs::File<Arc<Host>>,
    #[pin]
    inject: kernel::debugfs::File<Arc<Host>>,
    #[pin]
    bench_push: kernel::debugfs::File<Arc<Host>>,
    // Dropped first: no KVM events once the rest goes.
    #[pin]
    kvm: kernel::kvm::Registration<vms::KvmEvents>,
    // Then no hardware events once the devices go.
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
            sysfs: SysfsOwner(host?),
            debugfs: kernel::debugfs::Dir::new(c"hwconvey-host"),
            // Initialised fields are in scope: the callbacks get the host `sysfs` holds.
            memory <- kernel::memory_notifier::Registration::new(hotplug::Hotplug::new(&sysfs.0)),
            cpus <- kernel::cpuhp::Registration::new(
                c"hwconvey:online",
                hotplug::Hotplug::new(&sysfs.0),
                false,
            ),
            // A change between the first scan and the registrations reached no callback: scan
            // again, now that they catch everything. No one can see the host yet.
            _: {
                sysfs.0.rescan()?;
                let dir = sysfs::host_dir(&sysfs.0, debugfs.clone())?;
                *sysfs.0.sysfs.lock() = Some(dir);
            },
            mgmt <- vdpa::MgmtRegistration::new(c"hwconvey", sysfs.0.clone()),
            kvm <- kernel::kvm::Registration::new(vms::KvmEvents::new(&sysfs.0)),
            cpu_listing <- debugfs.read_callback_file(
                c"cpus",
                sysfs.0.clone(),
                &|host: &Arc<Host>, f: &mut kernel::fmt::Formatter<'_>| {
                    sysfs::show_cpu_listing(host, f)
                },
            ),
            inject <- debugfs.write_callback_file(
                c"inject",
                sysfs.0.clone(),
                &|host: &Arc<Host>, r: &mut UserSliceReader| host.inject(r),
            ),
            bench_push <- debugfs.read_write_callback_file(
                c"bench_push",
                sysfs.0.clone(),
                &|host: &Arc<Host>, f: &mut kernel::fmt::Formatter<'_>| host.show_last_push(f),
                &|host: &Arc<Host>, r: &mut UserSliceReader| host.store_bench_push(r),
            ),
        })
    }
}

impl Host {
    /// Queues bytes for a guest as if they were a message of the host's: the test of a guest
    /// driver against a hostile host (debugfs, root only, and only with the module parameter
    /// `inject`). The write is the guest id (`u32`,
    /// little endian), then the message, at most [`MAX_MSG_SIZE`] bytes, taken as it is.
    fn inject(&self, r: &mut UserSliceReader) -> Result {
        // A test hook: off unless the module was loaded with `inject=1`.
        if !module_parameters::inject.value() {
            return Err(EPERM);
        }
        let len = r.len();
        if !(4..=4 + MAX_MSG_SIZE).contains(&len) {
            return Err(EINVAL);
        }
        let mut buf = KVec::from_elem(0u8, len, GFP_KERNEL)?;
        r.read_slice(&mut buf)?;
        let (id, msg) = buf.split_at(4);
        let id = u32::from_le_bytes(id.try_into().map_err(|_| EINVAL)?);
        let devices = self.devices.lock();
        let dev = devices
            .iter()
            .find(|d| d.data().guest_id == id)
            .ok_or(ENODEV)?;
        // As a response: queued whatever the device's state, ahead of nothing it would drop.
        dev.data().push(msg, Kind::Response)?;
        dev.schedule();
        Ok(())
    }

    /// Builds the inventory again, under the state lock, before any guest or file exists. A
    /// hotplug callback that runs meanwhile waits for the lock and applies its change on top;
    /// one that ran before is kept as it reported ([`HostState::rebuilt`]): either way, what
    /// a callback reports is newer than what the scan saw.
    fn rescan(&self) -> Result {
        // The scan runs under the lock: a callback that came after it read some state must
        // wait to apply its change, or the new inventory would overwrite it.
        let mut st = self.state.lock();
        *st = st.rebuilt(inventory::scan()?)?;
        Ok(())
    }
}

impl HwconveyHost {
    fn host() -> Result<Arc<Host>> {
        let inventory = inventory::scan()?;
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
        let mut state = HostState::new(inventory)?;
        // Until the inventory is built again after the hotplug registrations.
        state.reported = Some(state::Reported::default());
        Host::new(state)
    }
}

impl Host {
    /// A host with `state`, no device, and no sysfs directory yet.
    fn new(state: HostState) -> Result<Arc<Self>> {
        Arc::pin_init(
            try_pin_init!(Host {
                state <- new_mutex!(state),
                devices <- new_mutex!(KVec::new()),
                next_guest: AtomicU32::new(1),
                last_push <- new_mutex!(None),
                sysfs <- new_mutex!(None),
                vms <- new_mutex!(vms::Vms::default()),
                pin_lock <- new_mutex!(()),
                pin_failures: AtomicU64::new(0),
                last_publication: [const { AtomicU64::new(0) }; 3],
                events: AtomicU64::new(0),
                events_notifier: SetOnce::new(),
            }),
            GFP_KERNEL,
        )
    }
}

#[kunit_tests(hwconvey_host)]
mod tests {
    use super::inventory::{scan, Placement};
    use super::proto::admission::{plan_cpus, Quota};
    use super::proto::guest::Update;
    use super::proto::idlist;
    use super::proto::in_kernel::new_guest_copy;
    use super::proto::in_kernel::{new_inventory, KGuestCopy, KInventory, Text};
    use super::proto::inventory::{Cpu, MemBlock, NodeId, PackageId, PRESENT};
    use super::proto::inventory::{Owner, ONLINE};
    use super::proto::message::{decode_guest_msg, SnapshotEncoder, MAX_MSG_SIZE};
    use super::proto::message::{Motive, Request, RequestKind};
    use super::proto::message::{Response, Status};
    use super::state::{HostState, Publication};
    use super::sysfs::{
        write_blocks_of, write_cpu_table, write_cpus_of, write_vcpus, DEVICE_ATTRS, DEVICE_SUBDIRS,
        HOST_ATTRS, HOST_SUBDIRS,
    };
    use kernel::prelude::*;
    use kernel::sysfs::Window;
    use kernel::time::{Instant, Monotonic};

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
        let nodes = inv.dims().nodes;
        for c in inv.cpus().iter().filter(|c| c.online()) {
            assert!(c.node.is_some_and(|n| u32::from(n.get()) < nodes));
        }
        assert!(inv.blocks().iter().any(|b| b.state & ONLINE != 0));
        assert!(inv.cpus().iter().all(|c| !c.owner.is_guest()));
        Ok(())
    }

    #[test]
    fn snapshot_of_this_host_round_trips() -> Result {
        let host = scan()?;
        let mut copy = new_guest_copy()?;
        let (last, _, _) = send_snapshot(&host, 7, &mut copy)?;
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
            None,
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

    /// Renders a file's whole text.
    fn render(f: impl FnOnce(&mut Text) -> Result) -> Result<Text> {
        let mut t = Text::default();
        f(&mut t)?;
        Ok(t)
    }

    /// The CPU table shows a CPU on no node with "-", not a number that looks like a node.
    #[test]
    fn cpu_table_shows_no_node_as_a_dash() -> Result {
        let on = |node| Cpu {
            node,
            state: PRESENT | ONLINE,
            ..Cpu::default()
        };
        let cpus = [
            on(NodeId::new(2)),
            Cpu {
                owner: Owner(4),
                ..on(None)
            },
        ];
        let text = render(|w| write_cpu_table(w, &cpus))?;
        assert_eq!(
            text.as_str().map_err(|_| EINVAL)?,
            "cpu 0 node 2 free\ncpu 1 node - guest 4\n"
        );
        Ok(())
    }

    /// Sends a full snapshot of `inv` to `copy`, as the device does, part by part; returns
    /// what the last part did, the number of parts and their bytes.
    fn send_snapshot(
        inv: &KInventory,
        guest: u32,
        copy: &mut KGuestCopy,
    ) -> Result<(Option<Update>, usize, usize)> {
        let mut enc = SnapshotEncoder::new(guest);
        let mut buf = KVec::from_elem(0u8, MAX_MSG_SIZE, GFP_KERNEL)?;
        let (mut last, mut parts, mut bytes) = (None, 0, 0);
        while let Some(n) = enc.next_part(inv, &mut buf)? {
            last = Some(copy.receive(buf.get(..n).ok_or(EINVAL)?)?);
            parts += 1;
            bytes += n;
        }
        Ok((last, parts, bytes))
    }

    /// The host of the size the design targets ([`Inventory::make_large_host`]).
    ///
    /// [`Inventory::make_large_host`]: super::proto::inventory::Inventory::make_large_host
    fn large_inventory() -> Result<KInventory> {
        let mut inv = new_inventory()?;
        inv.make_large_host()?;
        Ok(inv)
    }

    fn us_since(t: Instant<Monotonic>) -> i64 {
        t.elapsed().as_micros_ceil()
    }

    /// The host's own paths (state, initial allocation, publication, snapshot, replacement of a
    /// CPU going offline, admission, the sysfs range lists) on the largest host the design
    /// targets, with 16 guests of 256 CPUs: none fails, and their times are printed.
    #[test]
    fn large_host_in_kernel() -> Result {
        let t = Instant::<Monotonic>::now();
        let mut st = HostState::new(large_inventory()?)?;
        let t_state = us_since(t);

        st.policy.initial_cpus = 256;
        st.policy.default_quota = Quota {
            max_cpus: 512,
            max_mem_mib: 1 << 20,
        };
        let t = Instant::<Monotonic>::now();
        for id in 1..=16 {
            assert_eq!(st.add_guest(id, 0)?, 256);
        }
        let t_guests = us_since(t);
        let t = Instant::<Monotonic>::now();
        let first = st.publish()?;
        let t_publish = us_since(t);
        assert!(!matches!(first, Publication::Nothing));

        // What a guest that resyncs gets: the whole inventory, in parts.
        let t = Instant::<Monotonic>::now();
        let mut copy = new_guest_copy()?;
        let (_, parts, bytes) = send_snapshot(&st.inventory, 1, &mut copy)?;
        let t_snapshot = us_since(t);
        assert!(copy.stored().cpus() == st.inventory.cpus());
        assert!(copy.stored().blocks() == st.inventory.blocks());

        // One of guest 1's CPUs goes offline: replaced near it, and the delta is small.
        let victim = st
            .inventory
            .cpus()
            .iter()
            .position(|c| c.owner == Owner(1))
            .ok_or(EINVAL)? as u32;
        let t = Instant::<Monotonic>::now();
        st.cpu_changed(victim, None)?;
        let delta = st.publish()?;
        let t_offline = us_since(t);
        let Publication::Delta(len) = delta else {
            return Err(EINVAL);
        };
        assert!(len <= 64);
        let update = copy.receive(st.scratch.get(..len).ok_or(EINVAL)?)?;
        assert!(matches!(
            update,
            Update::Applied {
                snapshot: false,
                ..
            }
        ));
        assert_eq!(st.decisions.reallocations, 1);
        let held = |st: &HostState, id| {
            st.inventory
                .cpus()
                .iter()
                .filter(|c| c.owner == Owner(id))
                .count()
        };
        assert_eq!(held(&st, 1), 256);

        // Admission of 64 more CPUs for guest 2, NUMA-local.
        let req = Request {
            id: 1,
            kind: RequestKind::Cpus,
            node: None,
            amount: 64,
            motive: Motive::default(),
        };
        let t = Instant::<Monotonic>::now();
        let resp = st.admit(2, &req, 0)?;
        let t_admit = us_since(t);
        assert_eq!(resp.status, Status::Granted);
        assert_eq!(held(&st, 2), 320);

        // The per-device range lists that sysfs shows.
        let t = Instant::<Monotonic>::now();
        for id in 1..=16 {
            let text = render(|w| write_cpus_of(w, st.inventory.cpus(), Owner(id)))?;
            let held = idlist::parse(text.as_str().map_err(|_| EINVAL)?, u32::MAX).count_ids()?;
            assert_eq!(held, st.guest_cpus(id)?.len() as u64);
        }
        let t_render = us_since(t);

        pr_info!(
            "large host (8192 CPUs, 16384 blocks, 64 nodes, 16 guests): state {t_state} us, \
             16 initial allocations {t_guests} us, first publication {t_publish} us, \
             snapshot {parts} parts {bytes} bytes encoded and applied {t_snapshot} us, \
             CPU offline replaced and published {t_offline} us ({len} bytes), \
             admission of 64 CPUs {t_admit} us, 16 CPU lists rendered {t_render} us\n"
        );
        Ok(())
    }

    /// The sysfs files that list CPUs or blocks hold the largest host at its most fragmented
    /// (every other CPU and block to a guest, the rest free): far more than a page, every entry
    /// is there, and read a window at a time, as sysfs serves them, they make up the same text.
    #[test]
    fn list_files_hold_the_largest_fragmented_host() -> Result {
        let mut inv = large_inventory()?;
        let (cpus, blocks) = (inv.dims().cpus, inv.dims().blocks);
        for id in (0..cpus).step_by(2) {
            inv.cpu_mut(id).ok_or(EINVAL)?.owner = Owner(1);
        }
        for index in (0..blocks).step_by(2) {
            inv.block_mut(index).ok_or(EINVAL)?.owner = Owner(1);
        }
        let online = inv.cpus().iter().filter(|c| c.online()).count();
        let mine = inv
            .cpus()
            .iter()
            .filter(|c| c.online() && c.owner == Owner(1))
            .count();
        let free = inv
            .cpus()
            .iter()
            .filter(|c| c.online() && c.owner == Owner::FREE)
            .count();
        assert!(mine > 1000 && free > 1000);

        let t = Instant::<Monotonic>::now();
        let guest_cpus = render(|w| write_cpus_of(w, inv.cpus(), Owner(1)))?;
        let free_cpus = render(|w| write_cpus_of(w, inv.cpus(), Owner::FREE))?;
        let guest_blocks = render(|w| write_blocks_of(w, inv.blocks(), Owner(1)))?;
        let table = render(|w| write_cpu_table(w, inv.cpus()))?;
        let t_render = us_since(t);

        for list in [&guest_cpus, &free_cpus, &guest_blocks, &table] {
            assert!(list.0.len() > kernel::page::PAGE_SIZE);
        }
        // Served as sysfs serves a list attribute, a window per read(2): the pieces, of a page
        // or of an odd size, make up the whole text.
        type Render<'a> = &'a dyn Fn(&mut Window<'_>) -> Result;
        let lists: [(&Text, Render<'_>); 2] = [
            (&guest_blocks, &|w| {
                write_blocks_of(w, inv.blocks(), Owner(1))
            }),
            (&table, &|w| write_cpu_table(w, inv.cpus())),
        ];
        for (whole, render) in lists {
            for size in [kernel::page::PAGE_SIZE, 1000] {
                let mut pieces = KVVec::new();
                let mut buf = KVec::from_elem(0u8, size, GFP_KERNEL)?;
                loop {
                    let mut w = Window::new(pieces.len(), &mut buf);
                    let done = match render(&mut w) {
                        Ok(()) => true,
                        Err(_) if w.is_full() => false,
                        Err(e) => return Err(e),
                    };
                    let n = w.written();
                    pieces.extend_from_slice(buf.get(..n).ok_or(EINVAL)?, GFP_KERNEL)?;
                    if done || n == 0 {
                        break;
                    }
                }
                assert!(pieces.as_slice() == whole.0.as_slice());
            }
        }
        let count = |t: &Text| -> Result<u64> {
            let text = t.as_str().map_err(|_| EINVAL)?;
            Ok(idlist::parse(text, u32::MAX).count_ids()?)
        };
        assert_eq!(count(&guest_cpus)?, mine as u64);
        assert_eq!(count(&free_cpus)?, free as u64);
        assert_eq!(count(&guest_blocks)?, u64::from(blocks.div_ceil(2)));
        let table_text = table.as_str().map_err(|_| EINVAL)?;
        let lines = table_text.lines().count();
        assert_eq!(lines, online);
        let guest_lines = table_text
            .lines()
            .filter(|l| l.ends_with(" guest 1"))
            .count();
        assert_eq!(guest_lines, mine);

        pr_info!(
            "fragmented large host: cpus list {} bytes, free_cpus {} bytes, blocks {} bytes, \
             CPU table {} bytes, rendered in {t_render} us\n",
            guest_cpus.0.len(),
            free_cpus.0.len(),
            guest_blocks.0.len(),
            table.0.len()
        );
        Ok(())
    }

    /// No sysfs file of the host or of a device fails for want of room on the largest host the
    /// design targets, fragmented (every other CPU and block to one guest): an ordinary file
    /// renders whole into the page a read gets, a list renders its first page.
    #[test]
    fn every_file_fits_on_the_largest_host() -> Result {
        let mut st = HostState::new(large_inventory()?)?;
        st.add_guest(1, 0)?;
        let d = st.inventory.dims();
        for id in (0..d.cpus).step_by(2) {
            st.inventory.cpu_mut(id).ok_or(EINVAL)?.owner = Owner(1);
        }
        for index in (0..d.blocks).step_by(2) {
            st.inventory.block_mut(index).ok_or(EINVAL)?.owner = Owner(1);
        }
        // The longest request and answer there are (debugfs records, not files: the state
        // behind the files is at its widest all the same).
        let guest = st.guest_mut(1).ok_or(EINVAL)?;
        guest.last_request = Some(Request {
            id: u32::MAX,
            kind: RequestKind::ReleaseMemory,
            node: NodeId::new(u16::MAX - 1),
            amount: u32::MAX,
            motive: Motive {
                demand: u32::MAX,
                held: u32::MAX,
                level: u32::MAX,
                trend: i32::MIN,
                horizon: u16::MAX,
                source: u16::MAX,
            },
        });
        guest.last_response = Some(Response::WIDEST);
        let host = super::Host::new(st)?;
        let dev = kernel::sync::Arc::new(
            super::device::DevInfo {
                guest_id: 1,
                host: Some(host.clone()),
                ..Default::default()
            },
            GFP_KERNEL,
        )?;
        // The room sysfs gives an ordinary file's text.
        let mut page = KVec::from_elem(0u8, kernel::sysfs::PAGE_TEXT, GFP_KERNEL)?;
        // What each rendered: an ordinary file, a list, or nothing for want of a bound vDPA
        // device (the file that reads its rings' state), which a `DevInfo` alone lacks.
        let (mut pages, mut lists) = (0, 0);
        let mut unbound = KVec::new();
        let mut tally = |name: &'static CStr, is_list: bool, rendered: Result<usize>| -> Result {
            match rendered {
                Ok(_) if is_list => lists += 1,
                Ok(_) => pages += 1,
                Err(e) if e == ENODEV => unbound.push(name, GFP_KERNEL)?,
                Err(e) => {
                    pr_err!("{name:?} does not render: {e:?}\n");
                    return Err(e);
                }
            }
            Ok(())
        };
        let host_files = Iterator::chain(
            HOST_ATTRS.iter(),
            HOST_SUBDIRS.iter().flat_map(|d| d.attributes().iter()),
        );
        // An ordinary file holds one value: one word on one line.
        let one_value = |text: &[u8]| {
            !text.contains(&b' ') && text.iter().filter(|&&b| b == b'\n').count() == 1
        };
        for attr in host_files {
            let rendered = attr.render(&host, &mut page);
            if let (Ok(n), false) = (&rendered, attr.is_list()) {
                assert!(one_value(page.get(..*n).ok_or(EINVAL)?));
            }
            tally(attr.name(), attr.is_list(), rendered)?;
        }
        let device_files = Iterator::chain(
            DEVICE_ATTRS.iter(),
            DEVICE_SUBDIRS.iter().flat_map(|d| d.attributes().iter()),
        );
        for attr in device_files {
            let rendered = attr.render(&dev, &mut page);
            if let (Ok(n), false) = (&rendered, attr.is_list()) {
                assert!(one_value(page.get(..*n).ok_or(EINVAL)?));
            }
            tally(attr.name(), attr.is_list(), rendered)?;
        }
        let host_all = HOST_ATTRS.len()
            + HOST_SUBDIRS
                .iter()
                .map(|d| d.attributes().len())
                .sum::<usize>();
        let device_all = DEVICE_ATTRS.len()
            + DEVICE_SUBDIRS
                .iter()
                .map(|d| d.attributes().len())
                .sum::<usize>();
        let all = host_all + device_all;
        // Every file rendered: the lists (`free_cpus`, a device's `cpus` and `blocks`), one
        // that needs a bound device, and the rest a page each.
        assert_eq!((pages, lists), (all - 4, 3));
        assert!(unbound.as_slice() == [c"ownerless_passes"]);
        // The files are as sysfs takes them: no name twice, no subdirectory named like a file.
        let root = kernel::sysfs::SharedDir::get(c"hwconvey_host_test")?;
        drop(kernel::sysfs::Dir::with_subdirs(
            &root,
            c"host",
            host.clone(),
            &HOST_ATTRS,
            &HOST_SUBDIRS,
        )?);
        drop(super::sysfs::device_group(&dev)?);

        // `vcpus` lists nothing without a VM: its widest text, for the most vCPUs a VM can
        // have at the widest ids and thread ids, is checked apart.
        let widest = (0..4096u32).map(|i| {
            (
                u32::MAX - i,
                i32::MAX,
                Some(super::proto::placement::Place::Cpu(u32::MAX)),
                true,
            )
        });
        let vcpus = render(|w| write_vcpus(w, 4096, widest))?;
        assert!(vcpus.0.len() <= kernel::sysfs::PAGE_TEXT);
        assert!(vcpus
            .as_str()
            .map_err(|_| EINVAL)?
            .ends_with("... 4032 more\n"));
        Ok(())
    }

    /// A guest that shrank because nothing could replace what went offline gets it back when
    /// capacity returns: a CPU another guest releases, a memory block coming back online.
    #[test]
    fn shrunk_guest_is_restored() -> Result {
        let mut st = HostState::new(large_inventory()?)?;
        st.policy.initial_cpus = 0;
        st.policy.default_quota = Quota {
            max_cpus: 8192,
            max_mem_mib: 1 << 30,
        };
        st.add_guest(1, 0)?;
        st.add_guest(2, 0)?;
        // Guest 1 holds 4 CPUs and 2 blocks, guest 2 everything else: the free pool is empty.
        let d = st.inventory.dims();
        for id in 0..d.cpus {
            st.inventory.cpu_mut(id).ok_or(EINVAL)?.owner = Owner(if id < 4 { 1 } else { 2 });
        }
        for i in 0..d.blocks {
            st.inventory.block_mut(i).ok_or(EINVAL)?.owner = Owner(if i < 2 { 1 } else { 2 });
        }
        let held_cpus = |st: &HostState| {
            st.inventory
                .cpus()
                .iter()
                .filter(|c| c.owner == Owner(1))
                .count()
        };
        let held_blocks = |st: &HostState| {
            st.inventory
                .blocks()
                .iter()
                .filter(|b| b.owner == Owner(1))
                .count()
        };

        st.cpu_changed(1, None)?;
        assert_eq!(st.decisions.shrinks, 1);
        assert_eq!(held_cpus(&st), 3);
        assert_eq!(st.guest(1).ok_or(EINVAL)?.owed.cpus, 1);
        let req = Request {
            id: 1,
            kind: RequestKind::ReleaseCpus,
            node: None,
            amount: 1,
            motive: Motive::default(),
        };
        let generation = st.inventory.generation;
        assert_eq!(st.admit(2, &req, 0)?.status, Status::Granted);
        assert_eq!(held_cpus(&st), 4);
        assert_eq!(st.guest(1).ok_or(EINVAL)?.owed.cpus, 0);
        assert_eq!(st.decisions.restores, 1);
        assert!(st.inventory.generation > generation);

        st.blocks_changed(1, 1, false, &[])?;
        assert_eq!(held_blocks(&st), 1);
        assert_eq!(st.guest(1).ok_or(EINVAL)?.owed.blocks, 1);
        st.blocks_changed(1, 1, true, &[])?;
        assert_eq!(held_blocks(&st), 2);
        assert_eq!(st.guest(1).ok_or(EINVAL)?.owed.blocks, 0);
        assert_eq!(st.decisions.restores, 2);
        Ok(())
    }

    /// A CPU that was possible but not present when the inventory was built, then hot-added:
    /// online, it is present and on its node, and the snapshot that carries it is one that a
    /// guest accepts; admission may then grant it.
    #[test]
    fn hot_added_cpu_is_published_present_on_its_node() -> Result {
        let mut inv = large_inventory()?;
        let hot = 8191;
        *inv.cpu_mut(hot).ok_or(EINVAL)? = Cpu {
            node: None,
            state: 0,
            thread: 0,
            package: None,
            core: 0,
            owner: Owner::FREE,
        };
        let mut st = HostState::new(inv)?;
        let placement = Placement {
            node: NodeId::new(63),
            package: PackageId::new(15),
            core: 4095,
            thread: 1,
        };
        st.cpu_changed(hot, Some(placement))?;
        let c = *st.inventory.cpus().get(hot as usize).ok_or(EINVAL)?;
        assert_eq!(c.state, PRESENT | ONLINE);
        assert_eq!(c.node, NodeId::new(63));
        let mut copy = new_guest_copy()?;
        send_snapshot(&st.inventory, 1, &mut copy)?;
        assert!(copy.stored().cpus() == st.inventory.cpus());
        Ok(())
    }

    /// Memory coming online in a hole of the inventory and past its end: present and on its
    /// node, published as a delta a guest accepts, then (the dimensions grew) as a snapshot
    /// a guest accepts.
    #[test]
    fn hot_added_memory_is_published_present_on_its_node() -> Result {
        let mut inv = large_inventory()?;
        let hole = 100;
        *inv.block_mut(hole).ok_or(EINVAL)? = MemBlock {
            node: None,
            state: 0,
            owner: Owner::FREE,
        };
        let mut st = HostState::new(inv)?;
        let end = st.inventory.dims().blocks;
        let mut copy = new_guest_copy()?;
        send_snapshot(&st.published, 1, &mut copy)?;

        st.blocks_changed(hole, 1, true, &[(hole, NodeId::new(3))])?;
        let b = *st.inventory.blocks().get(hole as usize).ok_or(EINVAL)?;
        assert_eq!((b.state, b.node), (PRESENT | ONLINE, NodeId::new(3)));
        let Publication::Delta(len) = st.publish()? else {
            return Err(EINVAL);
        };
        copy.receive(st.scratch.get(..len).ok_or(EINVAL)?)?;

        // Past the end, with one block left absent between.
        let node = NodeId::new(63);
        st.blocks_changed(end + 1, 2, true, &[(end + 1, node), (end + 2, node)])?;
        assert_eq!(st.inventory.dims().blocks, end + 3);
        let blocks = st.inventory.blocks();
        let absent = *blocks.get(end as usize).ok_or(EINVAL)?;
        assert_eq!((absent.state, absent.node), (0, None));
        for b in blocks.get(end as usize + 1..).ok_or(EINVAL)? {
            assert_eq!(
                (b.state, b.node, b.owner),
                (PRESENT | ONLINE, node, Owner::FREE)
            );
        }
        assert!(matches!(st.publish()?, Publication::Snapshot));
        send_snapshot(&st.published, 1, &mut copy)?;
        assert!(copy.stored().blocks() == st.inventory.blocks());
        assert_eq!(copy.stored().dims(), st.inventory.dims());
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
