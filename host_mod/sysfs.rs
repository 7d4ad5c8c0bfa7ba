// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/hwconvey/host/`: the host's inventory and policy, and a link per device (guest)
//! to the device's own files on the vDPA bus, which are here too.
//!
//! Every file is documented in `Documentation/ABI/testing/sysfs-kernel-hwconvey`, and a
//! device's in `Documentation/ABI/testing/sysfs-bus-vdpa-devices-hwconvey`.

use crate::device::{DevInfo, DeviceLinks, HwcDevice};
use crate::hotplug::{CPU_EVENTS, MEMORY_EVENTS};
use crate::proto::{
    admission::Quota,
    inventory::{Cpu, MemBlock, NodeId, Owner},
    message::{Request, Response},
};
use crate::state::{HostState, Policy};
use crate::Host;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{
    prelude::*,
    sync::Arc,
    sysfs::{Attribute, DeviceGroup, Dir, Page, SharedDir, Subdir, Window},
    vdpa,
};

/// The host's directory and the shared root it lives in, and the host's debugfs directory,
/// where each device gets its listings.
pub(crate) struct HostDir {
    dir: Dir<Host>,
    _root: SharedDir,
    /// debugfs `hwconvey-host/last_publication` ([`show_last_publication`]).
    _last_publication: Pin<KBox<kernel::debugfs::File<Arc<Host>>>>,
    debugfs: kernel::debugfs::Dir,
}

impl HostDir {
    /// The directory devices create theirs in.
    pub(crate) fn dir(&self) -> &Dir<Host> {
        &self.dir
    }
}

fn show_generation(h: &Host, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", h.state.lock().inventory.generation)?;
    Ok(())
}

fn show_events(h: &Host, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", h.events.load(Ordering::Relaxed))?;
    Ok(())
}

fn show_devices(h: &Host, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", h.device_count())?;
    Ok(())
}

fn parse<T: core::str::FromStr + PartialOrd>(text: &str, min: T, max: T) -> Result<T> {
    let v: T = text.trim().parse().map_err(|_| EINVAL)?;
    if v < min || v > max {
        return Err(EINVAL);
    }
    Ok(v)
}

/// A policy knob: shows `get(policy)`, stores a number in `min..=max` with `set`.
macro_rules! policy_file {
    ($show:ident, $store:ident, $min:expr, $max:expr, $get:expr, $set:expr) => {
        fn $show(h: &Host, page: &mut Page<'_>) -> Result {
            let get: fn(&Policy) -> u64 = $get;
            writeln!(page, "{}", get(&h.state.lock().policy))?;
            Ok(())
        }
        fn $store(h: &Host, text: &str) -> Result {
            let set: fn(&mut Policy, u64) = $set;
            let v: u64 = parse(text, $min, $max)?;
            set(&mut h.state.lock().policy, v);
            Ok(())
        }
    };
}

policy_file!(
    show_initial_cpus,
    store_initial_cpus,
    0,
    1024,
    |p| u64::from(p.initial_cpus),
    |p, v| p.initial_cpus = v as u32
);
policy_file!(
    show_enforce,
    store_enforce,
    0,
    1,
    |p| u64::from(p.enforce),
    |p, v| p.enforce = v != 0
);
policy_file!(
    show_release_on_exit,
    store_release_on_exit,
    0,
    1,
    |p| u64::from(p.release_on_exit),
    |p, v| p.release_on_exit = v != 0
);
policy_file!(
    show_pin_vcpus,
    store_pin_vcpus,
    0,
    1,
    |p| u64::from(p.pin_vcpus),
    |p, v| p.pin_vcpus = v != 0
);
policy_file!(
    show_rate_limit,
    store_rate_limit,
    1,
    100_000,
    |p| u64::from(p.rate),
    |p, v| p.rate = v as u32
);
policy_file!(
    show_rate_burst,
    store_rate_burst,
    1,
    100_000,
    |p| u64::from(p.burst),
    |p, v| p.burst = v as u32
);
policy_file!(
    show_default_quota_cpus,
    store_default_quota_cpus,
    0,
    16384,
    |p| u64::from(p.default_quota.max_cpus),
    |p, v| p.default_quota.max_cpus = v as u32
);
policy_file!(
    show_default_quota_memory_mib,
    store_default_quota_memory_mib,
    0,
    1 << 40,
    |p| p.default_quota.max_mem_mib,
    |p, v| p.default_quota.max_mem_mib = v
);

macro_rules! decision_file {
    ($show:ident, $field:ident) => {
        fn $show(h: &Host, page: &mut Page<'_>) -> Result {
            writeln!(page, "{}", h.state.lock().decisions.$field)?;
            Ok(())
        }
    };
}
decision_file!(show_granted, granted);
decision_file!(show_partial, partial);
decision_file!(show_denied, denied);
decision_file!(show_rate_limited, rate_limited);
decision_file!(show_reallocations, reallocations);
decision_file!(show_shrinks, shrinks);
decision_file!(show_restores, restores);

/// debugfs `hwconvey-host/last_publication`: "generation <g> devices <n> ns <t>", the last
/// publication, and how long queueing it for every device took: a measurement, not a sysfs
/// value.
pub(crate) fn show_last_publication(
    h: &Host,
    f: &mut kernel::fmt::Formatter<'_>,
) -> core::fmt::Result {
    let [generation, devices, ns] = &h.last_publication;
    writeln!(
        f,
        "generation {} devices {} ns {}",
        generation.load(Ordering::Relaxed),
        devices.load(Ordering::Relaxed),
        ns.load(Ordering::Relaxed)
    )
}

fn show_pin_failures(h: &Host, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", h.pin_failures.load(Ordering::Relaxed))?;
    Ok(())
}

fn show_cpu_events(_: &Host, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", CPU_EVENTS.load(Ordering::Relaxed))?;
    Ok(())
}

fn show_memory_events(_: &Host, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", MEMORY_EVENTS.load(Ordering::Relaxed))?;
    Ok(())
}

/// The host's files; its inventory's size is in [`HOST_SUBDIRS`].
pub(crate) static HOST_ATTRS: [Attribute<Host>; 22] = [
    Attribute::ro(c"generation", show_generation),
    Attribute::ro(c"events", show_events),
    Attribute::ro(c"devices", show_devices),
    Attribute::rw(c"initial_cpus", show_initial_cpus, store_initial_cpus),
    Attribute::rw(c"enforce", show_enforce, store_enforce),
    Attribute::rw(c"pin_vcpus", show_pin_vcpus, store_pin_vcpus),
    Attribute::ro(c"pin_failures", show_pin_failures),
    Attribute::rw(
        c"release_on_exit",
        show_release_on_exit,
        store_release_on_exit,
    ),
    Attribute::rw(c"rate_limit", show_rate_limit, store_rate_limit),
    Attribute::rw(c"rate_burst", show_rate_burst, store_rate_burst),
    Attribute::rw(
        c"default_quota_cpus",
        show_default_quota_cpus,
        store_default_quota_cpus,
    ),
    Attribute::rw(
        c"default_quota_memory_mib",
        show_default_quota_memory_mib,
        store_default_quota_memory_mib,
    ),
    Attribute::ro(c"requests_granted", show_granted),
    Attribute::ro(c"requests_partial", show_partial),
    Attribute::ro(c"requests_denied", show_denied),
    Attribute::ro(c"requests_rate_limited", show_rate_limited),
    Attribute::ro(c"reallocations", show_reallocations),
    Attribute::ro(c"shrinks", show_shrinks),
    Attribute::ro(c"restores", show_restores),
    Attribute::ro(c"cpu_events", show_cpu_events),
    Attribute::ro(c"memory_events", show_memory_events),
    Attribute::list(c"free_cpus", show_free_cpus),
];

/// A file of the host's `inventory/`: `$name` shows what `$value` counts in the inventory `$inv`.
macro_rules! inventory_file {
    ($name:literal, |$inv:ident| $value:expr) => {
        Attribute::ro($name, |h: &Host, page: &mut Page<'_>| {
            let st = h.state.lock();
            let $inv = &st.inventory;
            let n = $value;
            drop(st);
            value(page, n)
        })
    };
}

/// The host inventory's size and what of it is online.
static INVENTORY: [Attribute<Host>; 6] = [
    inventory_file!(c"cpus", |inv| inv.dims().cpus),
    inventory_file!(c"online_cpus", |inv| inv
        .cpus()
        .iter()
        .filter(|c| c.online())
        .count()),
    inventory_file!(c"blocks", |inv| inv.dims().blocks),
    inventory_file!(c"online_blocks", |inv| inv
        .blocks()
        .iter()
        .filter(|b| b.online())
        .count()),
    inventory_file!(c"block_mib", |inv| inv.block_mib()),
    inventory_file!(c"nodes", |inv| inv.dims().nodes),
];

/// The host's subdirectories.
pub(crate) static HOST_SUBDIRS: [Subdir<Host>; 1] = [Subdir::new(c"inventory", &INVENTORY)];

/// Writes the indices of `ids` as a range list ("0-2,5") and a newline.
fn write_ranges(w: &mut impl Write, ids: impl Iterator<Item = usize>) -> Result {
    // Tables are bounded by the protocol limits (16384 CPUs, 65536 blocks): every index fits.
    crate::proto::idlist::write(w, ids.filter_map(|i| u32::try_from(i).ok()))?;
    writeln!(w)?;
    Ok(())
}

/// The online CPUs `owner` holds, as a range list: `free_cpus` and `<device>/cpus`.
pub(crate) fn write_cpus_of(w: &mut impl Write, cpus: &[Cpu], owner: Owner) -> Result {
    let ids = cpus
        .iter()
        .enumerate()
        .filter(|(_, c)| c.online() && c.owner == owner)
        .map(|(i, _)| i);
    write_ranges(w, ids)
}

/// The memory blocks `owner` holds, as a range list: `<device>/blocks`.
pub(crate) fn write_blocks_of(w: &mut impl Write, blocks: &[MemBlock], owner: Owner) -> Result {
    let ids = blocks
        .iter()
        .enumerate()
        .filter(|(_, b)| b.owner == owner)
        .map(|(i, _)| i);
    write_ranges(w, ids)
}

/// One line per online CPU: "cpu <id> node <n|-> <free|guest <g>>": the host's CPU listing.
pub(crate) fn write_cpu_table(w: &mut impl Write, cpus: &[Cpu]) -> Result {
    for (i, c) in cpus.iter().enumerate().filter(|(_, c)| c.online()) {
        let node = NodeId::display(c.node);
        if c.owner == Owner::FREE {
            writeln!(w, "cpu {i} node {node} free")?;
        } else {
            writeln!(w, "cpu {i} node {node} guest {}", c.owner.0)?;
        }
    }
    Ok(())
}

/// A copy of one of the inventory's tables, taken under the state lock: a list is rendered
/// again at every `read(2)`, and any user may read it in a loop, so only the copy, never the
/// rendering, holds the lock that the guests' requests and the hotplug callbacks need.
fn copy_table<T: Copy>(h: &Host, table: fn(&HostState) -> &[T]) -> Result<KVVec<T>> {
    // Allocated outside the lock, for the size the table had; if it grew meanwhile (memory
    // past the end came online), its new tail waits for the next read.
    let len = table(&h.state.lock()).len();
    let mut copy = KVVec::with_capacity(len, GFP_KERNEL)?;
    let st = h.state.lock();
    for item in table(&st).iter().take(len) {
        copy.push_within_capacity(*item).map_err(|_| ENOMEM)?;
    }
    Ok(copy)
}

fn cpus(st: &HostState) -> &[Cpu] {
    st.inventory.cpus()
}

fn blocks(st: &HostState) -> &[MemBlock] {
    st.inventory.blocks()
}

fn show_free_cpus(h: &Host, w: &mut Window<'_>) -> Result {
    write_cpus_of(w, &copy_table(h, cpus)?, Owner::FREE)
}

/// debugfs `hwconvey-host/cpus`: the host's CPU table ([`write_cpu_table`]), a line per CPU:
/// a listing for people, not a sysfs value.
pub(crate) fn show_cpu_listing(h: &Host, f: &mut kernel::fmt::Formatter<'_>) -> core::fmt::Result {
    let cpus = copy_table(h, cpus).map_err(|_| core::fmt::Error)?;
    write_cpu_table(f, &cpus).map_err(|_| core::fmt::Error)
}

fn num(page: &mut Page<'_>, c: &AtomicU64) -> Result {
    writeln!(page, "{}", c.load(Ordering::Relaxed))?;
    Ok(())
}

fn show_guest_id(d: &DevInfo, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", d.guest_id)?;
    Ok(())
}

fn show_owner_pid(d: &DevInfo, page: &mut Page<'_>) -> Result {
    match d.owner.load(Ordering::Relaxed) {
        0 => writeln!(page, "none")?,
        pid => writeln!(page, "{pid}")?,
    }
    Ok(())
}

fn show_running(d: &DevInfo, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", u8::from(d.running.load(Ordering::Relaxed)))?;
    Ok(())
}

/// A file showing one of the device's counters.
macro_rules! counter_file {
    ($($show:ident: $field:ident),* $(,)?) => {
        $(
            fn $show(d: &DevInfo, p: &mut Page<'_>) -> Result {
                num(p, &d.$field)
            }
        )*
    };
}
counter_file!(
    show_sent: sent,
    show_received: received,
    show_requests: requests,
    show_acks: acks,
    show_last_ack: last_ack,
    show_last_ack_ns: last_ack_ns,
    show_last_sent_ns: last_sent_ns,
    show_bad: bad,
    show_bad_chains: bad_chains,
    show_snapshots: snapshots,
    show_snapshots_deferred: snapshots_deferred,
    show_dropped: dropped,
    show_work_passes: work_passes,
    show_work_ns: work_ns,
);

fn host_of(d: &DevInfo) -> Result<&Host> {
    d.host.as_deref().ok_or(ENODEV)
}

/// Passes of the device's worker skipped because its VMM's address space is gone.
fn show_ownerless_passes(d: &DevInfo, page: &mut Page<'_>) -> Result {
    let dev = host_of(d)?.device(d.guest_id).ok_or(ENODEV)?;
    writeln!(page, "{}", dev.ownerless_passes())?;
    Ok(())
}

/// The number of the VM that owns the device, or "none".
fn show_vm(d: &DevInfo, page: &mut Page<'_>) -> Result {
    let mm_id = d.owner_mm.load(Ordering::Acquire);
    let vms = host_of(d)?.vms.lock();
    match (mm_id != 0).then(|| vms.by_mm(mm_id)).flatten() {
        Some(vm) => writeln!(page, "{}", vm.seq)?,
        None => writeln!(page, "none")?,
    }
    Ok(())
}

/// Most vCPUs [`show_vcpu_listing`] lists: a line each.
const VCPU_LINES: usize = 64;

/// One vCPU as [`show_vcpu_listing`] lists it: its id, its thread, where the host placed it and
/// whether the thread runs there.
pub(crate) type VcpuLine = (u32, i32, Option<crate::proto::placement::Place>, bool);

/// debugfs `hwconvey-host/<device>/vcpus`: the VM's vCPUs, a line each: "vcpu <id> thread
/// <tid> cpus <cpu>", where <cpu> is the CPU the host pinned the thread to, "shared" (all of
/// the guest's CPUs: the VM has more vCPUs than the guest holds CPUs) or "-" (not pinned). At
/// most [`VCPU_LINES`] lines, then "... <n> more".
pub(crate) fn show_vcpu_listing(
    d: &DevInfo,
    f: &mut kernel::fmt::Formatter<'_>,
) -> core::fmt::Result {
    write_vcpu_listing(d, f).map_err(|_| core::fmt::Error)
}

fn write_vcpu_listing(d: &DevInfo, page: &mut impl Write) -> Result {
    let mm_id = d.owner_mm.load(Ordering::Acquire);
    let vms = host_of(d)?.vms.lock();
    let Some(vm) = (mm_id != 0).then(|| vms.by_mm(mm_id)).flatten() else {
        return Ok(());
    };
    write_vcpus(
        page,
        vm.vcpus.len(),
        vm.vcpus
            .iter()
            .map(|c| (c.id, c.thread.pid(), c.place, c.applied)),
    )
}

/// Writes [`show_vcpu_listing`]'s lines for `count` vCPUs, given in `vcpus`.
pub(crate) fn write_vcpus(
    w: &mut impl Write,
    count: usize,
    vcpus: impl Iterator<Item = VcpuLine>,
) -> Result {
    for (id, tid, place, applied) in vcpus.take(VCPU_LINES) {
        write!(w, "vcpu {id} thread {tid} cpus ")?;
        match (place, applied) {
            (Some(crate::proto::placement::Place::Cpu(cpu)), true) => writeln!(w, "{cpu}")?,
            (Some(crate::proto::placement::Place::Shared), true) => writeln!(w, "shared")?,
            _ => writeln!(w, "-")?,
        }
    }
    if let Some(more) = count.checked_sub(VCPU_LINES).filter(|n| *n > 0) {
        writeln!(w, "... {more} more")?;
    }
    Ok(())
}

fn show_cpus(d: &DevInfo, w: &mut Window<'_>) -> Result {
    write_cpus_of(w, &copy_table(host_of(d)?, cpus)?, Owner(d.guest_id))
}

fn show_blocks(d: &DevInfo, w: &mut Window<'_>) -> Result {
    write_blocks_of(w, &copy_table(host_of(d)?, blocks)?, Owner(d.guest_id))
}

fn quota(d: &DevInfo) -> Result<Quota> {
    let st = host_of(d)?.state.lock();
    st.guest(d.guest_id).map(|g| g.quota).ok_or(ENODEV)
}

fn set_quota(d: &DevInfo, f: impl FnOnce(&mut Quota)) -> Result {
    let mut st = host_of(d)?.state.lock();
    let g = st.guest_mut(d.guest_id).ok_or(ENODEV)?;
    f(&mut g.quota);
    Ok(())
}

fn show_quota_cpus(d: &DevInfo, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", quota(d)?.max_cpus)?;
    Ok(())
}

fn store_quota_cpus(d: &DevInfo, text: &str) -> Result {
    let v: u32 = parse(text, 0, 16384)?;
    set_quota(d, |q| q.max_cpus = v)
}

fn show_quota_memory(d: &DevInfo, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", quota(d)?.max_mem_mib)?;
    Ok(())
}

fn store_quota_memory(d: &DevInfo, text: &str) -> Result {
    let v: u64 = parse(text, 0, 1 << 40)?;
    set_quota(d, |q| q.max_mem_mib = v)
}

/// debugfs `hwconvey-host/<device>/last_request`: the guest's last request, "id <n> kind <k>
/// amount <n> node <n|-> motive <source> <name> demand <d> held <h>", or "none": a record for
/// people, not a sysfs value.
pub(crate) fn show_last_request(
    d: &DevInfo,
    f: &mut kernel::fmt::Formatter<'_>,
) -> core::fmt::Result {
    let st = host_of(d).map_err(|_| core::fmt::Error)?.state.lock();
    match st.guest(d.guest_id).and_then(|g| g.last_request) {
        Some(Request {
            id,
            kind,
            node,
            amount,
            motive,
        }) => writeln!(
            f,
            "id {id} kind {} amount {amount} node {} motive {} {} demand {} held {}",
            kind.name(),
            NodeId::display(node),
            motive.source,
            motive.source_name(),
            motive.demand,
            motive.held
        ),
        None => writeln!(f, "none"),
    }
}

/// debugfs `hwconvey-host/<device>/last_response`: the host's last answer to the guest, "id <n>
/// kind <k> status <s> reason <r> amount <n> generation <g>", or "none".
pub(crate) fn show_last_response(
    d: &DevInfo,
    f: &mut kernel::fmt::Formatter<'_>,
) -> core::fmt::Result {
    let st = host_of(d).map_err(|_| core::fmt::Error)?.state.lock();
    match st.guest(d.guest_id).and_then(|g| g.last_response) {
        Some(Response {
            id,
            kind,
            status,
            reason,
            amount,
            generation,
        }) => writeln!(
            f,
            "id {id} kind {} status {} reason {} amount {amount} generation {generation}",
            kind.name(),
            status.name(),
            reason.name()
        ),
        None => writeln!(f, "none"),
    }
}

/// Writes `n` and a newline: a file's one value.
fn value(page: &mut Page<'_>, n: impl core::fmt::Display) -> Result {
    writeln!(page, "{n}")?;
    Ok(())
}

/// The number of vCPUs of the VM that owns the device, 0 without one.
fn show_vm_vcpus(d: &DevInfo, page: &mut Page<'_>) -> Result {
    let mm_id = d.owner_mm.load(Ordering::Acquire);
    let vms = host_of(d)?.vms.lock();
    let vcpus = (mm_id != 0)
        .then(|| vms.by_mm(mm_id))
        .flatten()
        .map_or(0, |vm| vm.vcpus.len());
    value(page, vcpus)
}

/// A device's files; those whose values belong together are in [`DEVICE_SUBDIRS`].
pub(crate) static DEVICE_ATTRS: [Attribute<DevInfo>; 24] = [
    Attribute::list(c"cpus", show_cpus),
    Attribute::list(c"blocks", show_blocks),
    Attribute::rw(c"quota_cpus", show_quota_cpus, store_quota_cpus),
    Attribute::rw(c"quota_memory_mib", show_quota_memory, store_quota_memory),
    Attribute::ro(c"guest_id", show_guest_id),
    Attribute::ro(c"running", show_running),
    Attribute::ro_private(c"owner_pid", show_owner_pid),
    Attribute::ro_private(c"vm", show_vm),
    Attribute::ro_private(c"vm_vcpus", show_vm_vcpus),
    Attribute::ro(c"messages_sent", show_sent),
    Attribute::ro(c"messages_received", show_received),
    Attribute::ro(c"requests", show_requests),
    Attribute::ro(c"acks", show_acks),
    Attribute::ro(c"last_ack", show_last_ack),
    Attribute::ro(c"last_ack_ns", show_last_ack_ns),
    Attribute::ro(c"last_sent_ns", show_last_sent_ns),
    Attribute::ro(c"bad_messages", show_bad),
    Attribute::ro(c"bad_chains", show_bad_chains),
    Attribute::ro(c"ownerless_passes", show_ownerless_passes),
    Attribute::ro(c"snapshots", show_snapshots),
    Attribute::ro(c"snapshots_deferred", show_snapshots_deferred),
    Attribute::ro(c"dropped_updates", show_dropped),
    Attribute::ro(c"work_passes", show_work_passes),
    Attribute::ro(c"work_ns", show_work_ns),
];

/// What the guest holds.
static ALLOCATION: [Attribute<DevInfo>; 2] = [
    Attribute::ro(c"cpus", |d: &DevInfo, page: &mut Page<'_>| {
        let cpus = host_of(d)?
            .state
            .lock()
            .inventory
            .allocation(Owner(d.guest_id))
            .cpus;
        value(page, cpus)
    }),
    Attribute::ro(c"memory_mib", |d: &DevInfo, page: &mut Page<'_>| {
        let mib = host_of(d)?
            .state
            .lock()
            .inventory
            .allocation(Owner(d.guest_id))
            .mem_mib;
        value(page, mib)
    }),
];

/// What the guest lost with nothing free to replace it, and is owed.
static OWED: [Attribute<DevInfo>; 2] = [
    Attribute::ro(c"cpus", |d: &DevInfo, page: &mut Page<'_>| {
        let st = host_of(d)?.state.lock();
        let cpus = st.guest(d.guest_id).map_or(0, |g| g.owed.cpus);
        drop(st);
        value(page, cpus)
    }),
    Attribute::ro(c"blocks", |d: &DevInfo, page: &mut Page<'_>| {
        let st = host_of(d)?.state.lock();
        let blocks = st.guest(d.guest_id).map_or(0, |g| g.owed.blocks);
        drop(st);
        value(page, blocks)
    }),
];

/// A device's subdirectories: values that belong together, one a file.
pub(crate) static DEVICE_SUBDIRS: [Subdir<DevInfo>; 2] = [
    Subdir::new(c"allocation", &ALLOCATION),
    Subdir::new(c"owed", &OWED),
];

/// Creates `/sys/kernel/hwconvey/host/`.
pub(crate) fn host_dir(host: &Arc<Host>, debugfs: kernel::debugfs::Dir) -> Result<HostDir> {
    let root = SharedDir::get(c"hwconvey")?;
    let dir = Dir::with_subdirs(&root, c"host", host.clone(), &HOST_ATTRS, &HOST_SUBDIRS)?;
    // The host's first directory is its only one: a later one (none is made) would not
    // replace it.
    host.events_notifier.populate(dir.notifier(c"events")?);
    let last_publication = KBox::pin_init(
        debugfs.read_callback_file(
            c"last_publication",
            host.clone(),
            &|h: &Arc<Host>, f: &mut kernel::fmt::Formatter<'_>| show_last_publication(h, f),
        ),
        GFP_KERNEL,
    )?;
    Ok(HostDir {
        dir,
        _root: root,
        _last_publication: last_publication,
        debugfs,
    })
}

/// The files of a device, on the vDPA device: `/sys/bus/vdpa/devices/<device>/`.
pub(crate) fn device_group(info: &Arc<DevInfo>) -> Result<DeviceGroup> {
    DeviceGroup::with_subdirs(info.clone(), &DEVICE_ATTRS, &DEVICE_SUBDIRS)
}

/// What debugfs files render into.
type Fmt<'a> = kernel::fmt::Formatter<'a>;

/// Links `/sys/kernel/hwconvey/host/<device>` to the files of `dev`, and makes the device's
/// debugfs listings.
pub(crate) fn device_links(parent: &HostDir, dev: &vdpa::Device<HwcDevice>) -> Result<DeviceLinks> {
    let info = &dev.data().stats;
    let debugfs = parent.debugfs.subdir(dev.name());
    // The callbacks are told apart by their types: a closure each.
    let vcpus = KBox::pin_init(
        debugfs.read_callback_file(
            c"vcpus",
            info.clone(),
            &|d: &Arc<DevInfo>, f: &mut Fmt<'_>| show_vcpu_listing(d, f),
        ),
        GFP_KERNEL,
    )?;
    let last_request = KBox::pin_init(
        debugfs.read_callback_file(
            c"last_request",
            info.clone(),
            &|d: &Arc<DevInfo>, f: &mut Fmt<'_>| show_last_request(d, f),
        ),
        GFP_KERNEL,
    )?;
    let last_response = KBox::pin_init(
        debugfs.read_callback_file(
            c"last_response",
            info.clone(),
            &|d: &Arc<DevInfo>, f: &mut Fmt<'_>| show_last_response(d, f),
        ),
        GFP_KERNEL,
    )?;
    // A device named like one of the host's files gets no link, but its listings.
    let link = parent
        .dir()
        .link(dev.name(), dev.as_dev())
        .inspect_err(|e| {
            pr_warn!(
                "{}: no link in /sys/kernel/hwconvey/host: {:?}\n",
                dev.name(),
                e
            )
        })
        .ok();
    Ok(DeviceLinks {
        _link: link,
        _listings: [vcpus, last_request, last_response],
        _debugfs: debugfs,
    })
}
