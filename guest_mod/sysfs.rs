// SPDX-License-Identifier: GPL-2.0

//! The guest's files: a bound device's, in its own directory `/sys/bus/virtio/devices/<device>/`
//! (what the device's copy of the host holds, its counters, a manual request), and the
//! module's, `/sys/kernel/hwconvey/guest/` (the projection knobs, the number of bound devices,
//! and a link per bound device to its directory).
//!
//! Every file is documented in `Documentation/ABI/testing/sysfs-bus-virtio-devices-hwconvey`
//! and `Documentation/ABI/testing/sysfs-kernel-hwconvey`.

use crate::bound::BoundDevices;
use crate::device::Guest;
use crate::proto::inventory::{Cpu, NodeId, Owner};
use crate::proto::message::{Motive, Request, RequestKind, MOTIVE_MANUAL};
use crate::request::send_request;
use crate::sampler::KNOBS;
use core::fmt::Write;
use core::ops::Deref;
use core::sync::atomic::Ordering;
use kernel::{
    prelude::*,
    sync::Arc,
    sysfs::{Attribute, DeviceGroup, Dir, Page, SharedDir, Subdir},
    virtio::virtqueue::Virtqueues,
};

/// What a device's files show: the device's state.
pub(crate) struct FileState {
    shown: Shown,
}

/// The device state the files show: a bound device's, or, in tests, a state without a device.
enum Shown {
    Bound(Arc<Virtqueues<Guest>>),
    Unbound(Arc<Guest>),
}

impl Deref for Shown {
    type Target = Guest;

    fn deref(&self) -> &Guest {
        match self {
            Shown::Bound(vqs) => vqs.handler(),
            Shown::Unbound(guest) => guest,
        }
    }
}

impl FileState {
    fn new(shown: Shown) -> Result<Arc<Self>> {
        Ok(Arc::new(FileState { shown }, GFP_KERNEL)?)
    }

    /// Files showing `guest`, a device's state without a device, for tests of what they show:
    /// a manual request fails (it needs the device's queues).
    #[cfg_attr(not(CONFIG_KUNIT = "y"), expect(dead_code))]
    pub(crate) fn reporting_on(guest: Arc<Guest>) -> Result<Arc<Self>> {
        Self::new(Shown::Unbound(guest))
    }

    /// The device state the files show.
    fn guest(&self) -> &Guest {
        &self.shown
    }
}

/// The files of the device whose queues are `vqs`, for its own directory.
pub(crate) fn device_files(vqs: Arc<Virtqueues<Guest>>) -> Result<DeviceGroup> {
    DeviceGroup::with_subdirs(
        FileState::new(Shown::Bound(vqs))?,
        &DEVICE_ATTRS,
        &DEVICE_SUBDIRS,
    )
}

fn counter(k: &FileState, page: &mut Page<'_>, pick: impl Fn(&Guest) -> u64) -> Result {
    writeln!(page, "{}", pick(k.guest()))?;
    Ok(())
}

fn show_generation(k: &FileState, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", k.guest().generation())?;
    Ok(())
}

fn show_events(k: &FileState, page: &mut Page<'_>) -> Result {
    counter(k, page, |g| g.stats.events.load(Ordering::Relaxed))
}

fn show_received(k: &FileState, page: &mut Page<'_>) -> Result {
    counter(k, page, |g| g.stats.received.load(Ordering::Relaxed))
}

fn show_updates(k: &FileState, page: &mut Page<'_>) -> Result {
    counter(k, page, |g| {
        g.stats
            .snapshots
            .load(Ordering::Relaxed)
            .saturating_add(g.stats.deltas.load(Ordering::Relaxed))
    })
}

fn show_bad(k: &FileState, page: &mut Page<'_>) -> Result {
    counter(k, page, |g| g.stats.bad.load(Ordering::Relaxed))
}

fn show_sent(k: &FileState, page: &mut Page<'_>) -> Result {
    counter(k, page, |g| g.stats.sent.load(Ordering::Relaxed))
}

fn show_sampling_ns(k: &FileState, page: &mut Page<'_>) -> Result {
    counter(k, page, |g| g.stats.sampling_ns.load(Ordering::Relaxed))
}

fn show_responses(k: &FileState, page: &mut Page<'_>) -> Result {
    counter(k, page, |g| g.stats.responses.load(Ordering::Relaxed))
}

/// Parses `cpus N [node X]`, `memory MIB [node X]` or `snapshot`; without a node, any node
/// will do (`None`).
fn parse_request(text: &str) -> Result<(RequestKind, u32, Option<NodeId>)> {
    let mut words = text.split_ascii_whitespace();
    let kind = match words.next() {
        Some("cpus") => RequestKind::Cpus,
        Some("memory") => RequestKind::Memory,
        Some("snapshot") => {
            return words
                .next()
                .map_or(Ok((RequestKind::Snapshot, 0, None)), |_| Err(EINVAL))
        }
        _ => return Err(EINVAL),
    };
    let amount: u32 = words.next().ok_or(EINVAL)?.parse().map_err(|_| EINVAL)?;
    if amount == 0 {
        return Err(EINVAL);
    }
    let node = match (words.next(), words.next()) {
        (None, _) => None,
        // 65535 parses but is no node id: refused, as any other number out of range.
        (Some("node"), Some(n)) => Some(n.parse::<u16>().ok().and_then(NodeId::new).ok_or(EINVAL)?),
        _ => return Err(EINVAL),
    };
    if words.next().is_some() {
        return Err(EINVAL);
    }
    Ok((kind, amount, node))
}

fn store_request(k: &FileState, text: &str) -> Result {
    let (kind, amount, node) = parse_request(text)?;
    // A request needs the device's queues.
    let Shown::Bound(vqs) = &k.shown else {
        return Err(ENODEV);
    };
    let (cpus, mib) = vqs.handler().allocation();
    let held = match kind {
        RequestKind::Memory => u32::try_from(mib).unwrap_or(u32::MAX),
        _ => cpus,
    };
    let req = Request {
        id: vqs.handler().next_request.fetch_add(1, Ordering::Relaxed),
        kind,
        node,
        amount,
        motive: Motive {
            held,
            source: MOTIVE_MANUAL,
            ..Motive::default()
        },
    };
    send_request(vqs, &req)
}

fn show_last_update_ns(k: &FileState, page: &mut Page<'_>) -> Result {
    let (_, ns) = k.guest().last_update();
    writeln!(page, "{ns}")?;
    Ok(())
}

fn show_applied_pass_ns(k: &FileState, page: &mut Page<'_>) -> Result {
    let ns = k.guest().applied_pass_ns();
    writeln!(page, "{ns}")?;
    Ok(())
}

/// A projection knob: a number in `min..=max` that must also make valid parameters.
macro_rules! knob_file {
    ($show:ident, $store:ident, $field:ident, $min:expr, $max:expr) => {
        fn $show(_: &BoundDevices, page: &mut Page<'_>) -> Result {
            writeln!(page, "{}", KNOBS.$field.load(Ordering::Relaxed))?;
            Ok(())
        }
        fn $store(_: &BoundDevices, text: &str) -> Result {
            let v: u32 = text.trim().parse().map_err(|_| EINVAL)?;
            if !($min..=$max).contains(&v) {
                return Err(EINVAL);
            }
            let old = KNOBS.$field.swap(v, Ordering::Relaxed);
            if KNOBS.params().is_err() {
                KNOBS.$field.store(old, Ordering::Relaxed);
                return Err(EINVAL);
            }
            Ok(())
        }
    };
}

knob_file!(
    show_period,
    store_period,
    period_ms,
    *crate::PERIOD_MS.start(),
    *crate::PERIOD_MS.end()
);
knob_file!(show_horizon, store_horizon, horizon, 0, 1000);
knob_file!(show_target, store_target, target, 1, 1000);
knob_file!(show_hysteresis, store_hysteresis, hysteresis, 0, 1000);

/// debugfs `hwconvey-guest/samples_recent`: the first bound device's recent samples, a line
/// each, oldest first: "<n> busy_mcpu <b> projected_mcpu <p> proposed <0|1>".
pub(crate) fn show_samples_recent(
    devices: &BoundDevices,
    f: &mut kernel::fmt::Formatter<'_>,
) -> core::fmt::Result {
    let vqs = devices.first().map_err(|_| core::fmt::Error)?;
    write_samples_recent(vqs.handler(), f).map_err(|_| core::fmt::Error)
}

/// The recent samples of `guest` ([`show_samples_recent`]).
pub(crate) fn write_samples_recent(guest: &Guest, page: &mut impl Write) -> Result {
    let s = guest.sampler.lock();
    let mut recent: KVec<crate::sampler::Past> = KVec::new();
    for p in s.history.iter().filter(|p| p.n > 0) {
        recent.push(*p, GFP_KERNEL)?;
    }
    drop(s);
    // At most HISTORY entries: a selection sort keeps core's sort out of the module.
    for i in 0..recent.len() {
        let mut min = i;
        for j in i + 1..recent.len() {
            if recent.get(j).map(|p| p.n) < recent.get(min).map(|p| p.n) {
                min = j;
            }
        }
        recent.swap(i, min);
    }
    for p in recent.iter() {
        writeln!(
            page,
            "{} busy_mcpu {} projected_mcpu {} proposed {}",
            p.n,
            p.busy_mcpu,
            p.projected_mcpu,
            u8::from(p.proposed)
        )?;
    }
    Ok(())
}

/// debugfs `hwconvey-guest/cpus`: the stored copy's CPU table ([`write_cpu_table`]), a line per
/// CPU, of the first bound device: a listing for people, not a sysfs value.
pub(crate) fn show_cpu_listing(
    devices: &BoundDevices,
    f: &mut kernel::fmt::Formatter<'_>,
) -> core::fmt::Result {
    let vqs = devices.first().map_err(|_| core::fmt::Error)?;
    write_cpu_listing(vqs.handler(), f).map_err(|_| core::fmt::Error)
}

/// The stored copy's CPU table ([`write_cpu_table`]).
fn write_cpu_listing(guest: &Guest, w: &mut impl Write) -> Result {
    // A copy, taken under the lock that applying the host's updates needs (in one go, so that
    // an update cannot grow the table in between): the rendering, at every read(2) of a long
    // list, runs without it.
    let (cpus, me) = guest.with_copy(|copy| -> Result<_> {
        let mut cpus = KVVec::with_capacity(copy.stored().cpus().len(), GFP_KERNEL)?;
        for c in copy.stored().cpus() {
            // Within the capacity reserved above.
            let _ = cpus.push_within_capacity(*c);
        }
        Ok((cpus, copy.me()))
    })?;
    write_cpu_table(w, &cpus, me)
}

/// One line per online CPU of `cpus`: "cpu <id> node <n|-> <free|mine|guest <g>|host>", where
/// `me` is this guest.
pub(crate) fn write_cpu_table(w: &mut impl Write, cpus: &[Cpu], me: Owner) -> Result {
    for (i, c) in cpus.iter().enumerate().filter(|(_, c)| c.online()) {
        let node = NodeId::display(c.node);
        if c.owner == me {
            writeln!(w, "cpu {i} node {node} mine")?;
        } else if c.owner == Owner::FREE {
            writeln!(w, "cpu {i} node {node} free")?;
        } else if c.owner == Owner::HOST {
            writeln!(w, "cpu {i} node {node} host")?;
        } else {
            writeln!(w, "cpu {i} node {node} guest {}", c.owner.0)?;
        }
    }
    Ok(())
}

/// Writes `n` and a newline: a file's one value.
fn value(page: &mut Page<'_>, n: impl core::fmt::Display) -> Result {
    writeln!(page, "{n}")?;
    Ok(())
}

/// A bound device's files; those whose values belong together are in [`DEVICE_SUBDIRS`].
pub(crate) static DEVICE_ATTRS: [Attribute<FileState>; 11] = [
    Attribute::ro(c"generation", show_generation),
    Attribute::ro(c"events", show_events),
    Attribute::ro(c"messages_received", show_received),
    Attribute::ro(c"updates_applied", show_updates),
    Attribute::ro(c"bad_messages", show_bad),
    Attribute::ro(c"messages_sent", show_sent),
    Attribute::ro(c"responses", show_responses),
    Attribute::wo(c"request", store_request),
    Attribute::ro(c"last_update_ns", show_last_update_ns),
    Attribute::ro(c"last_update_pass_ns", show_applied_pass_ns),
    Attribute::ro(c"sampling_ns", show_sampling_ns),
];

/// A file of a device's subdirectory: `$name` shows the number `$value` computes from `$k`,
/// the [`FileState`].
macro_rules! value_file {
    ($name:expr, |$k:ident| $value:expr) => {
        Attribute::ro($name, |$k: &FileState, page: &mut Page<'_>| {
            // Computed first: a lock `$value` takes is dropped before the formatting.
            let n = $value;
            value(page, n)
        })
    };
}

/// What this guest holds per the device's copy.
static ALLOCATION: [Attribute<FileState>; 2] = [
    value_file!(c"cpus", |k| k.guest().allocation().0),
    value_file!(c"memory_mib", |k| k.guest().allocation().1),
];

/// The device's copy of the host, counted.
static INVENTORY: [Attribute<FileState>; 8] = [
    value_file!(c"cpus", |k| k.guest().with_copy(|c| c.stored().dims().cpus)),
    value_file!(c"online_cpus", |k| k.guest().with_copy(|c| c
        .stored()
        .cpus()
        .iter()
        .filter(|c| c.online())
        .count())),
    value_file!(c"my_cpus", |k| k.guest().with_copy(|c| c
        .stored()
        .cpus()
        .iter()
        .filter(|cpu| cpu.owner == c.me())
        .count())),
    value_file!(c"blocks", |k| k
        .guest()
        .with_copy(|c| c.stored().dims().blocks)),
    value_file!(c"online_blocks", |k| k.guest().with_copy(|c| c
        .stored()
        .blocks()
        .iter()
        .filter(|b| b.online())
        .count())),
    value_file!(c"my_blocks", |k| k.guest().with_copy(|c| c
        .stored()
        .blocks()
        .iter()
        .filter(|b| b.owner == c.me())
        .count())),
    value_file!(c"block_mib", |k| k
        .guest()
        .with_copy(|c| c.stored().block_mib())),
    value_file!(c"nodes", |k| k
        .guest()
        .with_copy(|c| c.stored().dims().nodes)),
];

/// The host's last answer; before the first, `id` 0, `kind`, `status` and `reason` "none".
static LAST_RESPONSE: [Attribute<FileState>; 6] = [
    value_file!(c"id", |k| k.guest().last_response().map_or(0, |r| r.id)),
    value_file!(c"kind", |k| k
        .guest()
        .last_response()
        .map_or("none", |r| r.kind.name())),
    value_file!(c"status", |k| k
        .guest()
        .last_response()
        .map_or("none", |r| r.status.name())),
    value_file!(c"reason", |k| k
        .guest()
        .last_response()
        .map_or("none", |r| r.reason.name())),
    value_file!(c"amount", |k| k
        .guest()
        .last_response()
        .map_or(0, |r| r.amount)),
    value_file!(c"generation", |k| k
        .guest()
        .last_response()
        .map_or(0, |r| r.generation)),
];

/// The last sample and what the projection made of it.
static PROJECTION: [Attribute<FileState>; 11] = [
    value_file!(c"samples", |k| k.guest().sampler.lock().report.samples),
    value_file!(c"busy_mcpu", |k| k
        .guest()
        .sampler
        .lock()
        .report
        .sample
        .busy_mcpu),
    value_file!(c"steal_mcpu", |k| k
        .guest()
        .sampler
        .lock()
        .report
        .sample
        .steal_mcpu),
    value_file!(c"nr_running", |k| k
        .guest()
        .sampler
        .lock()
        .report
        .sample
        .nr_running),
    value_file!(c"mem_used_mib", |k| k
        .guest()
        .sampler
        .lock()
        .report
        .sample
        .mem_used_mib),
    value_file!(c"cpu_pressure", |k| k
        .guest()
        .sampler
        .lock()
        .report
        .sample
        .cpu_pressure),
    value_file!(c"held_cpus", |k| k.guest().sampler.lock().report.held_cpus),
    value_file!(c"level_mcpu", |k| k.guest().sampler.lock().report.cpu_level),
    value_file!(c"trend_mcpu", |k| k.guest().sampler.lock().report.cpu_trend),
    value_file!(c"projected_mcpu", |k| k
        .guest()
        .sampler
        .lock()
        .report
        .cpu_projected),
    value_file!(c"proposals", |k| k.guest().sampler.lock().report.proposals),
];

/// A file of `last_diff/`: the field `$field` of the last applied update's diff, 0 before the
/// first.
macro_rules! diff_file {
    ($field:ident) => {
        value_file!(kernel::c_str!(stringify!($field)), |k| k
            .guest()
            .last_diff()
            .map_or(0, |(_, d)| d.$field))
    };
}

/// What the last applied update changed; before the first, all 0.
static LAST_DIFF: [Attribute<FileState>; 17] = [
    value_file!(c"generation", |k| k
        .guest()
        .last_diff()
        .map_or(0, |(g, _)| g)),
    diff_file!(cpus_added),
    diff_file!(cpus_removed),
    diff_file!(cpus_onlined),
    diff_file!(cpus_offlined),
    diff_file!(cpus_reassigned),
    diff_file!(cpus_moved),
    diff_file!(my_cpus_gained),
    diff_file!(my_cpus_lost),
    diff_file!(blocks_added),
    diff_file!(blocks_removed),
    diff_file!(blocks_onlined),
    diff_file!(blocks_offlined),
    diff_file!(blocks_reassigned),
    diff_file!(my_blocks_gained),
    diff_file!(my_blocks_lost),
    diff_file!(nodes_changed),
];

/// A bound device's subdirectories: values that belong together, one a file. Files of one
/// subdirectory read one after the other may show two states: a reader that needs one reads
/// the `generation` (or `id`) file before and after.
pub(crate) static DEVICE_SUBDIRS: [Subdir<FileState>; 5] = [
    Subdir::new(c"allocation", &ALLOCATION),
    Subdir::new(c"inventory", &INVENTORY),
    Subdir::new(c"last_response", &LAST_RESPONSE),
    Subdir::new(c"projection", &PROJECTION),
    Subdir::new(c"last_diff", &LAST_DIFF),
];
fn show_devices(devices: &BoundDevices, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", devices.count())?;
    Ok(())
}

/// The module's files: the projection knobs, which every device's sampler follows, and the
/// number of bound devices.
pub(crate) static MODULE_ATTRS: [Attribute<BoundDevices>; 5] = [
    Attribute::ro(c"devices", show_devices),
    Attribute::rw(c"period_ms", show_period, store_period),
    Attribute::rw(c"horizon", show_horizon, store_horizon),
    Attribute::rw(c"target", show_target, store_target),
    Attribute::rw(c"hysteresis", show_hysteresis, store_hysteresis),
];

/// The module's directory, `/sys/kernel/hwconvey/guest/`, which [`BoundDevices`] keeps (with
/// its links) while this lives. Dropped before the module's driver registration goes away.
pub(crate) struct GuestSysfs {
    devices: Arc<BoundDevices>,
    _root: SharedDir,
}

impl GuestSysfs {
    /// The module's directory, for `devices`.
    pub(crate) fn new(devices: Arc<BoundDevices>) -> Result<Self> {
        let root = SharedDir::get(c"hwconvey")?;
        let dir = Dir::new(&root, c"guest", devices.clone(), &MODULE_ATTRS)?;
        let notifier = dir.notifier(c"devices")?;
        devices.open(dir, notifier);
        Ok(Self {
            devices,
            _root: root,
        })
    }
}

impl Drop for GuestSysfs {
    fn drop(&mut self) {
        // The directory goes before the shared root it is in.
        self.devices.close();
    }
}
