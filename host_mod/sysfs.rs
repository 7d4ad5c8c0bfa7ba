// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/hwconvey/host/`: the host's inventory and one directory per device (guest).
//!
//! Every file is documented in `Documentation/ABI/testing/sysfs-kernel-hwconvey`.

use crate::device::DevInfo;
use crate::Host;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::{
    prelude::*,
    sync::Arc,
    sysfs::{Attribute, Dir, Page, SharedDir},
};

/// The host's directory and the shared root it lives in.
pub(crate) struct HostDir {
    dir: Dir<Host>,
    _root: SharedDir,
}

impl HostDir {
    /// The directory devices create theirs in.
    pub(crate) fn dir(&self) -> &Dir<Host> {
        &self.dir
    }
}

fn show_generation(h: &Host, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", h.inventory.lock().generation)?;
    Ok(())
}

fn show_inventory(h: &Host, page: &mut Page<'_>) -> Result {
    let inv = h.inventory.lock();
    let d = inv.dims();
    let cpus = inv.cpus().iter().filter(|c| c.online()).count();
    let blocks = inv.blocks().iter().filter(|b| b.online()).count();
    writeln!(
        page,
        "cpus {} online {} blocks {} online {} block_mib {} nodes {}",
        d.cpus,
        cpus,
        d.blocks,
        blocks,
        inv.block_mib(),
        d.nodes
    )?;
    Ok(())
}

fn show_devices(h: &Host, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", h.device_count())?;
    Ok(())
}

fn show_bench_push(h: &Host, page: &mut Page<'_>) -> Result {
    match *h.last_push.lock() {
        Some((generation, ns)) => writeln!(page, "generation {generation} ns {ns}")?,
        None => writeln!(page, "none")?,
    }
    Ok(())
}

fn store_bench_push(h: &Host, text: &str) -> Result {
    if text != "1" {
        return Err(EINVAL);
    }
    h.bench_push().map(|_| ())
}

static HOST_ATTRS: [Attribute<Host>; 4] = [
    Attribute::ro(c"generation", show_generation),
    Attribute::ro(c"inventory", show_inventory),
    Attribute::ro(c"devices", show_devices),
    Attribute::rw(c"bench_push", show_bench_push, store_bench_push),
];

fn num(page: &mut Page<'_>, c: &AtomicU64) -> Result {
    writeln!(page, "{}", c.load(Ordering::Relaxed))?;
    Ok(())
}

fn show_guest_id(d: &DevInfo, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", d.guest_id)?;
    Ok(())
}

fn show_running(d: &DevInfo, page: &mut Page<'_>) -> Result {
    writeln!(page, "{}", u8::from(d.running.load(Ordering::Relaxed)))?;
    Ok(())
}

fn show_sent(d: &DevInfo, p: &mut Page<'_>) -> Result {
    num(p, &d.sent)
}
fn show_received(d: &DevInfo, p: &mut Page<'_>) -> Result {
    num(p, &d.received)
}
fn show_requests(d: &DevInfo, p: &mut Page<'_>) -> Result {
    num(p, &d.requests)
}
fn show_acks(d: &DevInfo, p: &mut Page<'_>) -> Result {
    num(p, &d.acks)
}
fn show_last_ack(d: &DevInfo, p: &mut Page<'_>) -> Result {
    num(p, &d.last_ack)
}
fn show_bad(d: &DevInfo, p: &mut Page<'_>) -> Result {
    num(p, &d.bad)
}
fn show_dropped(d: &DevInfo, p: &mut Page<'_>) -> Result {
    num(p, &d.dropped)
}

static DEVICE_ATTRS: [Attribute<DevInfo>; 9] = [
    Attribute::ro(c"guest_id", show_guest_id),
    Attribute::ro(c"running", show_running),
    Attribute::ro(c"messages_sent", show_sent),
    Attribute::ro(c"messages_received", show_received),
    Attribute::ro(c"requests", show_requests),
    Attribute::ro(c"acks", show_acks),
    Attribute::ro(c"last_ack", show_last_ack),
    Attribute::ro(c"bad_messages", show_bad),
    Attribute::ro(c"dropped_updates", show_dropped),
];

/// Creates `/sys/kernel/hwconvey/host/`.
pub(crate) fn host_dir(host: &Arc<Host>) -> Result<HostDir> {
    let root = SharedDir::get(c"hwconvey")?;
    let dir = Dir::new(&root, c"host", host.clone(), &HOST_ATTRS)?;
    Ok(HostDir { dir, _root: root })
}

/// Creates `/sys/kernel/hwconvey/host/<device>/`.
pub(crate) fn device_dir(
    parent: &HostDir,
    name: &CStr,
    info: &Arc<DevInfo>,
) -> Result<Dir<DevInfo>> {
    Dir::new(parent.dir(), name, info.clone(), &DEVICE_ATTRS)
}
