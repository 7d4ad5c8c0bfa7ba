// SPDX-License-Identifier: GPL-2.0

//! The hwconvey device as a software vDPA device: one per guest.
//!
//! Host to guest, the device queues messages in a bounded outbox and copies them into the
//! buffers the driver places in the event queue. Guest to host, it reads each chain of the
//! request queue into a bounded buffer and decodes it. Nothing in the rings is trusted: a chain
//! that is too long, too short or malformed is counted and dropped, and changes nothing.
//!
//! A guest may be hostile: it cannot make the host queue more than [`OUTBOX_MAX`] messages for
//! it (besides the parts of one snapshot), hold the device's worker for more than
//! [`REQUEST_BUDGET`] requests at a time, nor get snapshots (a walk of the whole inventory under
//! the host's lock) faster than its rate limit, whether it asks for them or makes them due by
//! starting the device again and again.

use crate::proto::{
    device::{
        CONFIG_GENERATION, CONFIG_GUEST_ID, CONFIG_MAX_MSG_SIZE, CONFIG_SIZE, EVENTQ, FEATURES,
        F_ACK, F_DELTA, F_REQUEST, NUM_QUEUES, REQUESTQ, VIRTIO_ID_HWCONVEY,
    },
    error::Error as ProtoError,
    inventory::NodeId,
    message::{decode_guest_msg, GuestMsg, RequestKind, SnapshotEncoder, Status, MAX_MSG_SIZE},
};
use crate::Host;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use kernel::{
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
    sysfs::{DeviceGroup, Link},
    time::{Instant, Monotonic},
    vdpa::{self, Queues},
};

/// Messages waiting for event-queue buffers, per device, besides the parts of one snapshot. A
/// guest that does not post buffers cannot make the host hold more than this; past it, the outbox is dropped and the guest gets a
/// fresh snapshot once it posts buffers again.
const OUTBOX_MAX: usize = 64;

/// Request-queue chains one pass of the device's worker takes; if more are waiting, the worker
/// runs again later, so that one guest cannot keep it (and the host's state lock) to itself.
const REQUEST_BUDGET: usize = 32;

/// Event-queue chains one pass of the device's worker takes, for the same reason: a full
/// outbox and one snapshot's parts fit in it.
const EVENT_BUDGET: usize = 2 * OUTBOX_MAX;

/// What one device shows in sysfs: its guest and counters, readable without locks.
#[derive(Default)]
pub(crate) struct DevInfo {
    pub(crate) guest_id: u32,
    /// For the files that show or set the guest's allocation and quota.
    pub(crate) host: Option<Arc<Host>>,
    pub(crate) running: AtomicBool,
    /// The process whose address space the device's rings live in (the VMM,
    /// through vhost-vdpa's `bind_mm`), or 0.
    pub(crate) owner: AtomicI32,
    /// The identity (address) of the owner's address space, or 0: never dereferenced. The
    /// vDPA device keeps that `mm` grabbed while it is bound, so no other address space can
    /// have the address meanwhile. It names the owner's KVM VM ([`crate::vms`]).
    pub(crate) owner_mm: AtomicUsize,
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) acks: AtomicU64,
    pub(crate) bad: AtomicU64,
    /// Malformed descriptor chains (or available indices), each of which broke its queue
    /// until the driver resets the device: ring-level errors, where `bad` counts messages.
    pub(crate) bad_chains: AtomicU64,
    /// Snapshots queued for the guest, and the times one was held back because the guest had
    /// no token left (it comes at the next pass that finds one).
    pub(crate) snapshots: AtomicU64,
    pub(crate) snapshots_deferred: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) last_ack: AtomicU64,
    /// When (monotonic ns) `last_ack` arrived.
    pub(crate) last_ack_ns: AtomicU64,
    /// When (monotonic ns) the device's worker last wrote a message into the guest's ring.
    pub(crate) last_sent_ns: AtomicU64,
    /// Passes of the device's worker, and the time they took in ns: what this guest costs
    /// the host beyond the publications every guest gets.
    pub(crate) work_passes: AtomicU64,
    pub(crate) work_ns: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What a queued message is: a resync drops updates, which the snapshot supersedes, but keeps
/// responses, since every request the device takes gets its answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Delta,
    SnapshotPart,
    Response,
}

struct Outgoing {
    kind: Kind,
    bytes: KVec<u8>,
}

struct Outbox {
    msgs: KVec<Outgoing>,
    /// The guest must get a full snapshot before any further update.
    resync: bool,
    /// The snapshot to come is one the driver's own behaviour made due (it started the device,
    /// or takes no deltas) without asking: it costs one of the guest's request tokens.
    charge: bool,
}

impl Outbox {
    /// Drops the queued updates: a snapshot will replace them.
    fn drop_updates(&mut self) {
        self.msgs.retain(|m| m.kind == Kind::Response);
        self.resync = true;
    }

    /// Whether a snapshot is on its way to the guest, or about to be.
    fn snapshot_pending(&self) -> bool {
        self.resync || self.msgs.iter().any(|m| m.kind == Kind::SnapshotPart)
    }
}

/// The link to a device's files from the host's directory, and the device's debugfs listing.
pub(crate) struct DeviceLinks {
    pub(crate) _link: Option<Link>,
    /// debugfs `hwconvey-host/<device>/`: `vcpus`, `last_request` and `last_response`, and
    /// their directory.
    pub(crate) _listings: [Pin<KBox<kernel::debugfs::File<Arc<DevInfo>>>>; 3],
    pub(crate) _debugfs: kernel::debugfs::Dir,
}

/// One hwconvey device, i.e. one guest.
#[pin_data]
pub(crate) struct HwcDevice {
    host: Arc<Host>,
    pub(crate) guest_id: u32,
    #[pin]
    outbox: Mutex<Outbox>,
    /// The link to the device's files (on the vDPA device, [`vdpa::SoftDevice::attributes`])
    /// and its debugfs listing; the host module makes them once the device is added, and they
    /// go when it is removed.
    #[pin]
    pub(crate) links: Mutex<Option<DeviceLinks>>,
    /// Scratch space for one request; `process` calls never overlap.
    #[pin]
    scratch: Mutex<KBox<[u8; MAX_MSG_SIZE]>>,
    pub(crate) stats: Arc<DevInfo>,
}

impl HwcDevice {
    /// Queues a message for the guest; the caller schedules delivery.
    ///
    /// Past [`OUTBOX_MAX`] (a guest that posts no buffers) the queued updates are dropped for a
    /// snapshot once buffers are back; if responses alone fill the outbox, the oldest goes.
    pub(crate) fn push(&self, msg: &[u8], kind: Kind) -> Result {
        let mut out = self.outbox.lock();
        if kind != Kind::Response && out.resync {
            // The snapshot to come covers it.
            return Ok(());
        }
        // The parts of a snapshot on its way do not count: a snapshot larger than the outbox
        // must still go out whole while the host keeps changing.
        let queued = out
            .msgs
            .iter()
            .filter(|m| m.kind != Kind::SnapshotPart)
            .count();
        if queued >= OUTBOX_MAX {
            bump(&self.stats.dropped);
            out.drop_updates();
            if kind != Kind::Response {
                return Ok(());
            }
            if out.msgs.len() >= OUTBOX_MAX {
                // Only responses are left (the snapshot parts went with the updates).
                let _ = out.msgs.remove(0);
            }
        }
        let mut bytes = KVec::with_capacity(msg.len(), GFP_KERNEL)?;
        bytes.extend_from_slice(msg, GFP_KERNEL)?;
        out.msgs.push(Outgoing { kind, bytes }, GFP_KERNEL)?;
        Ok(())
    }

    /// Makes the guest get a full snapshot before any further update.
    pub(crate) fn resync(&self) {
        self.outbox.lock().drop_updates();
    }

    /// Counts a rejected message and logs it, ever more rarely: a hostile guest must not be
    /// able to flood the host's log.
    fn reject(&self, what: &str, e: ProtoError) {
        let n = self.stats.bad.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 8 || n.is_power_of_two() {
            pr_warn!(
                "guest {}: rejected {} ({} so far): {}\n",
                self.guest_id,
                what,
                n,
                e.name()
            );
        }
    }

    /// Replaces the pending updates with a full snapshot of what the guests were last told
    /// (later deltas start from there); pending responses go first.
    ///
    /// A snapshot the driver made due without asking ([`Outbox::charge`]) takes one of the
    /// guest's request tokens. Without one, the snapshot stays due and this returns how many
    /// ms until the next token: the caller tries again then (and at the guest's next kick or
    /// the next publication). The host's own resyncs (an outbox the driver let overflow, a
    /// change that fits no delta) and granted requests cost nothing more.
    fn queue_snapshot(&self) -> Result<Option<u32>> {
        let mut st = self.host.state.lock();
        let charged = self.outbox.lock().charge;
        let retry_ms = 1000 / st.policy.rate.max(1) + 1;
        if charged && !st.take_token(self.guest_id, Host::now_ns())? {
            bump(&self.stats.snapshots_deferred);
            return Ok(Some(retry_ms));
        }
        let inv = &st.published;
        let mut parts = KVec::new();
        let mut enc = SnapshotEncoder::new(self.guest_id);
        let mut buf = KVec::from_elem(0u8, MAX_MSG_SIZE, GFP_KERNEL)?;
        while let Some(len) = enc.next_part(inv, &mut buf)? {
            let mut bytes = KVec::with_capacity(len, GFP_KERNEL)?;
            bytes.extend_from_slice(buf.get(..len).ok_or(EINVAL)?, GFP_KERNEL)?;
            parts.push(
                Outgoing {
                    kind: Kind::SnapshotPart,
                    bytes,
                },
                GFP_KERNEL,
            )?;
        }
        // Swap under the state lock: a publication after this one goes after the snapshot.
        let mut out = self.outbox.lock();
        if out.charge && !charged {
            // The driver reset or started the device meanwhile: the snapshot it needs now is
            // its own to pay for.
            return Ok(Some(0));
        }
        out.msgs.retain(|m| m.kind == Kind::Response);
        for part in parts {
            out.msgs.push(part, GFP_KERNEL)?;
        }
        out.resync = false;
        out.charge = false;
        drop(out);
        drop(st);
        bump(&self.stats.snapshots);
        Ok(None)
    }

    fn handle(&self, msg: &[u8], features: u64) {
        let msg = match decode_guest_msg(msg) {
            Ok(msg) => msg,
            Err(e) => return self.reject("a message", e),
        };
        match msg {
            GuestMsg::Ack(_) if features & (1 << F_ACK) == 0 => {
                self.reject("an ack", ProtoError::MessageType)
            }
            GuestMsg::Ack(generation) => {
                // Generations only move forward, and never past what the guests were told.
                let told = self.host.state.lock().published.generation;
                if generation > told || generation < self.stats.last_ack.load(Ordering::Relaxed) {
                    return self.reject("an ack", ProtoError::Range);
                }
                bump(&self.stats.acks);
                self.stats.last_ack.store(generation, Ordering::Relaxed);
                self.stats
                    .last_ack_ns
                    .store(Host::now_ns(), Ordering::Relaxed);
            }
            GuestMsg::Request(_) if features & (1 << F_REQUEST) == 0 => {
                self.reject("a request", ProtoError::MessageType)
            }
            GuestMsg::Request(req) => {
                let n = self.stats.requests.fetch_add(1, Ordering::Relaxed) + 1;
                // A guest may flood: log the first requests, then ever more rarely.
                if n <= 8 || n.is_power_of_two() {
                    pr_info!(
                        "guest {}: request {} for {} {} (node {})\n",
                        self.guest_id,
                        req.id,
                        req.amount,
                        req.kind.name(),
                        NodeId::display(req.node)
                    );
                }
                // A snapshot already on its way answers this one too.
                if req.kind == RequestKind::Snapshot && self.outbox.lock().snapshot_pending() {
                    return;
                }
                let mut st = self.host.state.lock();
                let before = st.inventory.generation;
                let resp = match st.admit(self.guest_id, &req, crate::Host::now_ns()) {
                    Ok(resp) => resp,
                    // The guest is gone (its device is being removed): nobody to answer.
                    Err(_) => return,
                };
                if req.kind == RequestKind::Snapshot && resp.status == Status::Granted {
                    let mut out = self.outbox.lock();
                    out.drop_updates();
                    // Paid: admission took a token.
                    out.charge = false;
                } else {
                    // The answer first, then the update that reflects it.
                    let queued = crate::state::HostState::encode(&resp).and_then(|(buf, len)| {
                        self.push(buf.get(..len).unwrap_or(&[]), Kind::Response)
                    });
                    if queued.is_err() {
                        bump(&self.stats.dropped);
                        self.resync();
                    }
                }
                self.host.publish(&mut st);
                let changed = st.inventory.generation != before;
                drop(st);
                // An answer is news even when nothing changed hands, but not a "busy": those
                // come as fast as a guest asks, and would make every watcher read everything.
                if resp.status != Status::Busy {
                    self.host.changed();
                }
                // Denials and rate-limited requests change nothing: no pinning pass for them.
                if changed {
                    self.host.pin_vcpus();
                }
            }
        }
    }

    /// Takes up to [`REQUEST_BUDGET`] chains from the request queue; returns whether it left
    /// some for the next pass.
    fn drain_requests(&self, queues: &mut Queues<'_>) -> bool {
        let features = queues.driver_features();
        let mut scratch = self.scratch.lock();
        let more = queues.with(usize::from(REQUESTQ), |q| {
            for _ in 0..REQUEST_BUDGET {
                let mut chain = match q.pop() {
                    Ok(Some(chain)) => chain,
                    Ok(None) => return false,
                    Err(_) => {
                        bump(&self.stats.bad_chains);
                        return false;
                    }
                };
                let n = chain.readable();
                if n > MAX_MSG_SIZE {
                    self.reject("a chain", ProtoError::TooLarge);
                    continue;
                }
                let Some(buf) = scratch.get_mut(..n) else {
                    continue;
                };
                let read = chain.read(buf);
                if read.is_ok() {
                    bump(&self.stats.received);
                }
                match read {
                    Ok(got) if got == n => {
                        drop(chain);
                        self.handle(scratch.get(..n).unwrap_or(&[]), features);
                    }
                    Ok(_) => self.reject("a chain", ProtoError::Truncated),
                    // Buffers outside the driver's mappings: the queue stopped there.
                    Err(_) => {
                        bump(&self.stats.bad_chains);
                        return false;
                    }
                }
            }
            true
        });
        more.unwrap_or(false)
    }

    /// Copies queued messages into the event queue's buffers; returns whether it stopped with
    /// messages and buffers left (the caller then runs again at once), and in how many ms a
    /// snapshot held back for lack of a token can go.
    ///
    /// The outbox lock only ever covers the message list, never the ring: ring accesses copy
    /// from and to the owner's memory, which a VMM can make wait indefinitely (userfaultfd),
    /// and the host's publication path takes the outbox lock with the state lock held.
    fn fill_events(&self, queues: &mut Queues<'_>) -> (bool, Option<u32>) {
        let resync = {
            let mut out = self.outbox.lock();
            // A driver that did not accept deltas gets every update as a snapshot, at its
            // expense.
            if queues.driver_features() & (1 << F_DELTA) == 0
                && out.msgs.iter().any(|m| m.kind == Kind::Delta)
            {
                out.drop_updates();
                out.charge = true;
            }
            out.resync
        };
        let mut retry = None;
        // Only for a queue that can take it: a stopped or absent one costs no snapshot.
        let more = queues
            .with(usize::from(EVENTQ), |q| {
                // A snapshot held back leaves the responses queued: they still go out.
                if resync {
                    // Out of memory, or no guest (its allocation failed): try again later.
                    retry = self.queue_snapshot().unwrap_or(Some(1000));
                }
                // Bounded: a driver that posts buffers too small for any message, or keeps
                // moving its available index, cannot keep the worker here.
                for _ in 0..EVENT_BUDGET {
                    let Some(len) = self.outbox.lock().msgs.first().map(|m| m.bytes.len()) else {
                        return false;
                    };
                    let mut chain = match q.pop() {
                        Ok(Some(chain)) => chain,
                        Ok(None) => return false,
                        Err(_) => {
                            bump(&self.stats.bad_chains);
                            return false;
                        }
                    };
                    if chain.writable() < len {
                        // The driver posts buffers of the negotiated maximum size; a smaller one
                        // is a driver bug. Give it back empty rather than cut a message.
                        bump(&self.stats.bad);
                        continue;
                    }
                    let msg = {
                        let mut out = self.outbox.lock();
                        // The head may have changed meanwhile (a resync, a newer response):
                        // take it only if it still fits.
                        match out.msgs.first().map(|m| m.bytes.len()) {
                            Some(l) if l <= chain.writable() => out.msgs.remove(0).ok(),
                            _ => None,
                        }
                    };
                    let Some(msg) = msg else { continue };
                    match chain.write(&msg.bytes) {
                        Ok(n) if n == msg.bytes.len() => {
                            let _ = chain.complete(n as u32);
                            bump(&self.stats.sent);
                            self.stats
                                .last_sent_ns
                                .store(Host::now_ns(), Ordering::Relaxed);
                        }
                        // A buffer the device cannot write (the driver unmapped it, or
                        // never mapped it) stops the queue until the driver resets the
                        // device, or it could post such buffers as fast as they come back,
                        // each costing a message. The update is lost: a snapshot replaces
                        // it. A response goes back to the head of the outbox, since nothing
                        // else would ever answer that request.
                        _ => {
                            bump(&self.stats.bad_chains);
                            let mut out = self.outbox.lock();
                            if msg.kind != Kind::Response {
                                out.drop_updates();
                                // The driver's doing: the snapshot that replaces it is its own.
                                out.charge = true;
                            } else if out.msgs.reserve(1, GFP_KERNEL).is_ok() {
                                let _ = out.msgs.insert_within_capacity(0, msg);
                            }
                            return false;
                        }
                    }
                }
                !self.outbox.lock().msgs.is_empty()
            })
            .unwrap_or(false);
        (more, retry)
    }
}

impl vdpa::SoftDevice for HwcDevice {
    type Context = Arc<Host>;

    const DEVICE_ID: u32 = VIRTIO_ID_HWCONVEY;
    const NUM_QUEUES: u16 = NUM_QUEUES;
    const CONFIG_SIZE: usize = CONFIG_SIZE;
    const FEATURES: u64 = FEATURES;

    fn new(host: &Arc<Host>, _name: &CStr) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            host: host.clone(),
            guest_id: host.next_guest_id()?,
            outbox <- new_mutex!(Outbox { msgs: KVec::new(), resync: true, charge: false }),
            scratch <- new_mutex!(KBox::new([0u8; MAX_MSG_SIZE], GFP_KERNEL)?),
            links <- new_mutex!(None),
            stats: Arc::new(DevInfo { guest_id: *guest_id, host: Some(host.clone()), ..DevInfo::default() }, GFP_KERNEL)?,
        })
    }

    fn added(dev: &vdpa::Device<Self>) {
        let d = dev.data();
        pr_info!("{}: device for guest {} added\n", dev.name(), d.guest_id);
        d.host.device_added(dev);
    }

    fn attributes(&self) -> Result<Option<DeviceGroup>> {
        self.host.device_attributes(&self.stats).map(Some)
    }

    fn removed(dev: &vdpa::Device<Self>) {
        let d = dev.data();
        let s = &d.stats;
        pr_info!(
            "{}: device for guest {} removed: {} sent, {} received ({} requests, {} acks), {} bad, {} dropped\n",
            dev.name(),
            d.guest_id,
            s.sent.load(Ordering::Relaxed),
            s.received.load(Ordering::Relaxed),
            s.requests.load(Ordering::Relaxed),
            s.acks.load(Ordering::Relaxed),
            s.bad.load(Ordering::Relaxed),
            s.dropped.load(Ordering::Relaxed),
        );
        d.links.lock().take();
        d.host.device_removed(dev);
    }

    fn read_config(dev: &vdpa::Device<Self>, offset: usize, buf: &mut [u8]) {
        let d = dev.data();
        let mut cfg = [0u8; CONFIG_SIZE];
        let gen = d.host.state.lock().published.generation;
        let fields: [(usize, &[u8]); 3] = [
            (CONFIG_MAX_MSG_SIZE, &(MAX_MSG_SIZE as u32).to_le_bytes()),
            (CONFIG_GUEST_ID, &d.guest_id.to_le_bytes()),
            (CONFIG_GENERATION, &gen.to_le_bytes()),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = cfg.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        if let Some(src) = cfg.get(offset..offset + buf.len()) {
            buf.copy_from_slice(src);
        }
    }

    fn process(dev: &vdpa::Device<Self>, queues: &mut Queues<'_>, _kicked: u32) {
        let d = dev.data();
        let start = Instant::<Monotonic>::now();
        let more_requests = d.drain_requests(queues);
        let (more_events, retry) = d.fill_events(queues);
        if more_requests || more_events || retry == Some(0) {
            dev.schedule();
        } else if let Some(ms) = retry {
            dev.schedule_after(ms);
        }
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(0);
        bump(&d.stats.work_passes);
        d.stats.work_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn status_changed(dev: &vdpa::Device<Self>, running: bool) {
        let d = dev.data();
        d.stats.running.store(running, Ordering::Release);
        d.host.changed();
        let mut out = d.outbox.lock();
        if running {
            // A driver that starts the device knows nothing: it gets a full snapshot first.
            // Responses stay: the reset before this start dropped those of the driver's
            // previous life, so any queued now answer this driver (the device's worker may
            // take requests as soon as the device runs, before this call). A driver that
            // starts the device in a loop pays for these snapshots with its request tokens.
            out.drop_updates();
            out.charge = true;
        } else {
            // Reset: nothing queued is for the next driver, whose first snapshot is the
            // driver's doing (it may be taken before the start is reported, just below).
            out.msgs.clear();
            out.resync = true;
            out.charge = true;
        }
    }

    fn owner_changed(dev: &vdpa::Device<Self>, owner: Option<vdpa::Owner<'_>>) {
        let d = dev.data();
        let (pid, mm_id) = owner
            .as_ref()
            .map_or((0, 0), |o| (o.pid, o.mm.as_raw() as usize));
        // The owner's pid shows last: a reader that sees it has changed sees the allocation
        // after the host acted on the change (release_on_exit).
        d.stats.owner_mm.store(mm_id, Ordering::Release);
        d.host.owner_changed(dev, owner.is_some());
        d.stats.owner.store(pid, Ordering::Release);
        // Watchers woken by the host's publication above may have read the old pid.
        d.host.changed();
        // A VMM that took the device: its vCPUs, if it made any yet, go to the guest's CPUs.
        d.host.pin_vcpus();
        let owner = owner.map(|o| o.pid);
        match owner {
            Some(pid) => pr_info!(
                "{}: bound to the address space of process {}\n",
                dev.name(),
                pid
            ),
            None => pr_info!("{}: address space unbound\n", dev.name()),
        }
    }
}
