// SPDX-License-Identifier: GPL-2.0

//! hwconvey guest module.
//!
//! Keeps this guest's copy of the host inventory, compares every update with
//! it, samples the guest's own load and asks the host for resources when the
//! projected demand exceeds what the guest holds.

use kernel::{prelude::*, sync::Arc, virtio};

#[path = "../proto/src/kernel.rs"]
pub mod proto;

mod bench;
mod bound;
mod device;
mod driver;
mod receive;
mod request;
mod sampler;
mod sysfs;

use proto::projection::Params;

module! {
    type: HwconveyGuest,
    name: "hwconvey_guest",
    authors: ["hwconvey developers"],
    description: "hwconvey guest: host inventory copy, load projection and resource requests",
    license: "GPL",
    params: {
        period_ms: u32 {
            default: 1000,
            description: "Load sampling period in ms at load time, 10 to 60000 (then: sysfs period_ms)",
        },
    },
}

/// The range of the sampling period, for the module parameter and the sysfs knob alike.
pub(crate) const PERIOD_MS: core::ops::RangeInclusive<u32> = 10..=60_000;

/// Starts sampling at the `period_ms` parameter: a guest that loads the module at boot then
/// samples at the period it is meant to have from the first sample on.
fn initial_period() -> Result {
    let period = module_parameters::period_ms.value();
    if !PERIOD_MS.contains(&period) {
        pr_err!(
            "period_ms={} is outside {}..={}\n",
            period,
            PERIOD_MS.start(),
            PERIOD_MS.end()
        );
        return Err(EINVAL);
    }
    sampler::KNOBS
        .period_ms
        .store(period, core::sync::atomic::Ordering::Relaxed);
    Ok(())
}

#[pin_data]
struct HwconveyGuest {
    /// `/sys/kernel/debug/hwconvey-guest/`, for people and benchmarks, not ABI: `cpus` (the
    /// CPU table of the first bound device's copy, [`sysfs::show_cpu_listing`]),
    /// `samples_recent` (its recent samples, [`sysfs::show_samples_recent`]) and
    /// `bench_roundtrip` ([`bench::BenchFile`]). Dropped first, with the files: they go before
    /// the driver (and its devices) do.
    debugfs: kernel::debugfs::Dir,
    #[pin]
    cpu_listing: kernel::debugfs::File<Arc<bound::BoundDevices>>,
    #[pin]
    samples_recent: kernel::debugfs::File<Arc<bound::BoundDevices>>,
    #[pin]
    bench: kernel::debugfs::File<bench::BenchFile>,
    /// `/sys/kernel/hwconvey/guest/`, with the devices' links: gone before the driver, so that
    /// no device bound during the module's exit gets a link.
    sysfs: sysfs::GuestSysfs,
    #[pin]
    driver: virtio::Registration<driver::GuestDriver>,
    /// The bound devices, which the files, the benchmark and the driver share.
    devices: Arc<bound::BoundDevices>,
}

impl kernel::InPlaceModule for HwconveyGuest {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let params = Params::default();
        pr_info!(
            "ready: projection horizon {} samples, target {}%, waiting for a hwconvey device\n",
            params.horizon,
            params.target / 10
        );
        try_pin_init!(Self {
            devices: bound::BoundDevices::new()?,
            debugfs: kernel::debugfs::Dir::new(c"hwconvey-guest"),
            cpu_listing <- debugfs.read_callback_file(
                c"cpus",
                devices.clone(),
                &|r: &Arc<bound::BoundDevices>, f: &mut kernel::fmt::Formatter<'_>| {
                    sysfs::show_cpu_listing(r, f)
                },
            ),
            samples_recent <- debugfs.read_callback_file(
                c"samples_recent",
                devices.clone(),
                &|r: &Arc<bound::BoundDevices>, f: &mut kernel::fmt::Formatter<'_>| {
                    sysfs::show_samples_recent(r, f)
                },
            ),
            bench <- debugfs.read_write_callback_file(
                c"bench_roundtrip",
                bench::BenchFile::new(devices.clone()),
                &|b: &bench::BenchFile, f: &mut kernel::fmt::Formatter<'_>| b.show(f),
                &|b: &bench::BenchFile, r: &mut kernel::uaccess::UserSliceReader| b.store(r),
            ),
            sysfs: {
                initial_period()?;
                sysfs::GuestSysfs::new(devices.clone())?
            },
            driver <- virtio::Registration::new(c"hwconvey", module, devices.clone()),
        })
    }
}

#[kunit_tests(hwconvey_guest)]
mod tests {
    use super::proto::diff::Diff;
    use super::proto::error::Error;
    use super::proto::guest::Update;
    use super::proto::in_kernel::{new_guest_copy, new_inventory, Text};
    use super::proto::inventory::{Allocation, Dims, NodeId, Owner, ONLINE, PRESENT};
    use super::proto::message::{DeltaWriter, SnapshotEncoder, MAX_MSG_SIZE};
    use super::proto::projection::{Params, Projector, Proposal, Sample};
    use super::proto::run::Run;
    use kernel::prelude::*;

    #[test]
    fn fixed_point_projection_answers_a_step_in_three_samples() {
        let mut p = Projector::new(Params::default());
        let held = Allocation {
            cpus: 2,
            mem_mib: 1024,
        };
        let idle = Sample {
            busy_mcpu: 400,
            nr_running: 1,
            mem_used_mib: 300,
            ..Sample::default()
        };
        for _ in 0..20 {
            assert_eq!(p.sample(&idle, held, 128), None);
        }
        // Six runnable tasks on two saturated CPUs.
        let busy = Sample {
            busy_mcpu: 2000,
            nr_running: 6,
            mem_used_mib: 300,
            ..Sample::default()
        };
        let asked = (0..3).find_map(|_| p.sample(&busy, held, 128));
        assert!(matches!(asked, Some(Proposal::Cpus(n, _)) if n >= 3));
    }

    #[test]
    fn deltas_apply_diff_and_refuse_gaps() -> Result {
        // A host of 8 CPUs and 8 blocks, all free, sent as a snapshot.
        let mut host = new_inventory()?;
        host.reset(Dims {
            cpus: 8,
            blocks: 8,
            nodes: 1,
            block_size: 128 << 20,
        })?;
        for id in 0..8 {
            if let Some(c) = host.cpu_mut(id) {
                c.node = NodeId::new(0);
                c.state = PRESENT | ONLINE;
            }
            if let Some(b) = host.block_mut(id) {
                b.node = NodeId::new(0);
                b.state = PRESENT | ONLINE;
            }
        }
        if let Some(n) = host.node_mut(0) {
            n.state = PRESENT | ONLINE;
        }
        host.generation = 5;
        let mut copy = new_guest_copy()?;
        let mut buf = KVec::from_elem(0u8, MAX_MSG_SIZE, GFP_KERNEL)?;
        let n = SnapshotEncoder::new(3)
            .next_part(&host, &mut buf)?
            .ok_or(EINVAL)?;
        copy.receive(buf.get(..n).ok_or(EINVAL)?)?;

        // The host gives CPUs 2-3 to this guest (3).
        let run = Run::Cpu {
            first: 2,
            count: 2,
            node: NodeId::new(0),
            state: PRESENT | ONLINE,
            owner: Owner(3),
        };
        let mut w = DeltaWriter::new(&mut buf, 5, 6)?;
        w.push(&run)?;
        let n = w.finish()?;
        let update = copy.receive(buf.get(..n).ok_or(EINVAL)?)?;
        let Update::Applied {
            generation,
            diff,
            snapshot: false,
        } = update
        else {
            return Err(EINVAL);
        };
        assert_eq!(generation, 6);
        assert_eq!(
            diff,
            Diff {
                my_cpus_gained: 2,
                ..Diff::default()
            }
        );
        assert_eq!(copy.stored().allocation(Owner(3)).cpus, 2);

        // A delta from generation 7 is a gap: refused, nothing changes.
        let mut w = DeltaWriter::new(&mut buf, 7, 8)?;
        w.push(&run)?;
        let n = w.finish()?;
        assert_eq!(copy.receive(buf.get(..n).ok_or(EINVAL)?), Err(Error::Gap));
        assert_eq!(copy.stored().generation, 6);
        Ok(())
    }

    /// The guest's CPU listing (debugfs `cpus`) holds the largest host the design targets, a line per online
    /// CPU with its owner as this guest sees it: far more than a page.
    #[test]
    fn cpu_table_holds_the_largest_host() -> Result {
        let mut inv = new_inventory()?;
        inv.make_large_host()?;
        let me = Owner(3);
        for id in (0..inv.dims().cpus).step_by(3) {
            inv.cpu_mut(id).ok_or(EINVAL)?.owner = me;
        }
        let mut text = Text::default();
        crate::sysfs::write_cpu_table(&mut text, inv.cpus(), me)?;
        let text = text.as_str().map_err(|_| EINVAL)?;
        assert!(text.len() > kernel::page::PAGE_SIZE);
        let online = inv.cpus().iter().filter(|c| c.online()).count();
        assert_eq!(text.lines().count(), online);
        let mine = inv
            .cpus()
            .iter()
            .filter(|c| c.online() && c.owner == me)
            .count();
        assert_eq!(text.lines().filter(|l| l.ends_with(" mine")).count(), mine);
        Ok(())
    }

    /// Every file of the guest holds one value (one word on one line) and fits what sysfs gives
    /// it with a copy of the largest host the design targets (8192 CPUs, 16384 memory blocks, 64
    /// nodes) and every number at its widest; the recent samples, a line each, are in debugfs.
    #[test]
    fn every_file_fits_on_the_largest_host() -> Result {
        use super::device::Guest;
        use super::proto::message::Response;
        use super::sampler::{Past, HISTORY};
        use super::sysfs::{FileState, DEVICE_ATTRS, DEVICE_SUBDIRS, MODULE_ATTRS};
        use core::sync::atomic::Ordering;
        use kernel::sync::Arc;

        let me = Owner(u32::MAX - 1);
        let mut host = new_inventory()?;
        host.make_large_host()?;
        for id in (0..host.dims().cpus).step_by(2) {
            host.cpu_mut(id).ok_or(EINVAL)?.owner = me;
        }
        host.generation = u64::MAX - 1;
        let guest = Arc::pin_init(Guest::new(true, true, true), GFP_KERNEL)?;
        {
            let mut r = guest.received.lock();
            let mut buf = KVec::from_elem(0u8, MAX_MSG_SIZE, GFP_KERNEL)?;
            let mut snapshot = SnapshotEncoder::new(me.0);
            let mut parts = 0;
            while let Some(n) = snapshot.next_part(&host, &mut buf)? {
                r.copy.receive(buf.get(..n).ok_or(EINVAL)?)?;
                parts += 1;
            }
            assert!(parts > 1);
            assert_eq!(r.copy.stored().dims().cpus, 8192);
            r.generation = u64::MAX;
            r.held_cpus = u32::MAX;
            r.held_mib = u64::MAX;
            r.updated_ns = i64::MIN;
            r.applied_pass_ns = i64::MIN;
            let widest = u32::MAX;
            r.last_diff = Some((
                u64::MAX,
                Diff {
                    cpus_added: widest,
                    cpus_removed: widest,
                    cpus_onlined: widest,
                    cpus_offlined: widest,
                    cpus_reassigned: widest,
                    cpus_moved: widest,
                    my_cpus_gained: widest,
                    my_cpus_lost: widest,
                    blocks_added: widest,
                    blocks_removed: widest,
                    blocks_onlined: widest,
                    blocks_offlined: widest,
                    blocks_reassigned: widest,
                    my_blocks_gained: widest,
                    my_blocks_lost: widest,
                    nodes_changed: widest,
                },
            ));
        }
        guest.requests.lock().last_response = Some(Response::WIDEST);
        {
            let mut s = guest.sampler.lock();
            s.report.samples = u64::MAX;
            s.report.sample = Sample {
                busy_mcpu: u32::MAX,
                steal_mcpu: u32::MAX,
                nr_running: u32::MAX,
                mem_used_mib: u64::MAX,
                cpu_pressure: u32::MAX,
            };
            s.report.held_cpus = u32::MAX;
            s.report.cpu_level = u64::MAX;
            s.report.cpu_trend = i64::MIN;
            s.report.cpu_projected = u64::MAX;
            s.report.proposals = u64::MAX;
            for (i, p) in s.history.iter_mut().enumerate() {
                *p = Past {
                    n: u64::MAX - HISTORY as u64 + i as u64,
                    busy_mcpu: u32::MAX,
                    projected_mcpu: u64::MAX,
                    proposed: true,
                };
            }
        }
        for c in [
            &guest.stats.received,
            &guest.stats.snapshots,
            &guest.stats.deltas,
            &guest.stats.responses,
            &guest.stats.bad,
            &guest.stats.sent,
            &guest.stats.events,
            &guest.stats.sampling_ns,
        ] {
            c.store(u64::MAX, Ordering::Relaxed);
        }

        // The recent samples, a line each, in debugfs.
        let mut text = Text::default();
        super::sysfs::write_samples_recent(&guest, &mut text)?;
        assert_eq!(text.as_str().map_err(|_| EINVAL)?.lines().count(), HISTORY);

        let files = FileState::reporting_on(guest)?;
        // The files are as sysfs takes them: no name twice, no subdirectory named like a file.
        drop(kernel::sysfs::DeviceGroup::with_subdirs(
            files.clone(),
            &DEVICE_ATTRS,
            &DEVICE_SUBDIRS,
        )?);
        // The room sysfs gives an ordinary file's text.
        let mut page = KVec::from_elem(0u8, kernel::sysfs::PAGE_TEXT, GFP_KERNEL)?;
        let all = Iterator::chain(
            DEVICE_ATTRS.iter(),
            DEVICE_SUBDIRS.iter().flat_map(|d| d.attributes().iter()),
        );
        let (mut shown, mut written) = (0, 0);
        for attr in all {
            assert!(!attr.is_list());
            if !attr.is_readable() {
                written += 1;
                continue;
            }
            match attr.render(&files, &mut page) {
                Ok(n) => {
                    // One value, one line.
                    let text = page.get(..n).ok_or(EINVAL)?;
                    assert!(n > 1 && text.iter().filter(|&&b| b == b'\n').count() == 1);
                    assert!(!text.contains(&b' '));
                    shown += 1;
                }
                Err(e) => {
                    pr_err!("{:?} does not render: {e:?}\n", attr.name());
                    return Err(e);
                }
            }
        }
        // Every file was rendered: the request is the only one written.
        assert_eq!(written, 1);
        assert_eq!(
            shown + written,
            DEVICE_ATTRS.len()
                + DEVICE_SUBDIRS
                    .iter()
                    .map(|d| d.attributes().len())
                    .sum::<usize>()
        );
        // The module's files: the knobs and a count.
        let devices = crate::bound::BoundDevices::new()?;
        for attr in MODULE_ATTRS.iter() {
            assert!(!attr.is_list());
            assert!(attr.render(&devices, &mut page)? > 0);
        }
        Ok(())
    }
}
