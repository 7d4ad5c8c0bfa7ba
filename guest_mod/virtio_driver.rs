// SPDX-License-Identifier: GPL-2.0

//! The virtio driver for the hwconvey device.
//!
//! The device is untrusted (a confidential guest must not trust its host): the configuration
//! space is validated, every received message goes through the protocol crate's decoder and is
//! applied only if it is complete and consistent, and a bad one is counted and changes nothing.

use crate::proto::admission::TokenBucket;
use crate::proto::projection::Proposal;
use crate::proto::{
    device::{
        CONFIG_GUEST_ID, CONFIG_MAX_MSG_SIZE, EVENTQ, F_ACK, F_DELTA, F_REQUEST, REQUESTQ,
        VIRTIO_ID_HWCONVEY,
    },
    guest::Update,
    in_kernel::{new_guest_copy, KGuestCopy},
    message::{
        encode_ack, encode_request, Motive, Request, RequestKind, Response, Status, HEADER_SIZE,
        MAX_MSG_SIZE, MOTIVE_MANUAL, MOTIVE_RESYNC,
    },
};
use crate::sampler::{SampleTimer, Sampler, SAMPLE};
use crate::sysfs;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use kernel::{
    device::{Bound, Core},
    new_condvar, new_mutex,
    prelude::*,
    sync::{Arc, ArcBorrow, CondVar, CondVarTimeoutResult, Mutex},
    time::{
        hrtimer::{ArcHrTimerHandle, HrTimerPointer},
        msecs_to_jiffies, Instant, Monotonic,
    },
    virtio::{
        self,
        virtqueue::{self, Virtqueues},
    },
};

/// Buffers kept posted on the event queue.
const EVENT_BUFFERS: usize = 16;

/// Event buffers one pass of the handler takes back; if the device keeps completing buffers,
/// the handler yields and runs again, rather than hold the queues for as long as the device
/// wants.
const EVENT_BUDGET: usize = 4 * EVENT_BUFFERS;

/// Requests that can wait for their answers at once: as many as the device's largest request
/// queue holds (`QUEUE_SIZE_MAX`, 256).
const OUTSTANDING_MAX: usize = 256;

/// Applied updates logged per second on average, and at once.
const UPDATE_LOG_RATE: u32 = 10;
const UPDATE_LOG_BURST: u32 = 20;

type Buffer = [u8; MAX_MSG_SIZE];

/// Counters of one device.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) received: AtomicU64,
    pub(crate) snapshots: AtomicU64,
    pub(crate) deltas: AtomicU64,
    pub(crate) responses: AtomicU64,
    pub(crate) bad: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) generation: AtomicU64,
    /// Time spent taking samples and projecting, in ns (the sampling's own cost: what an
    /// idle guest pays for hwconvey).
    pub(crate) sampling_ns: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the driver keeps per device, shared with the virtqueue handler.
#[pin_data]
pub(crate) struct Guest {
    #[pin]
    copy: Mutex<KGuestCopy>,
    pub(crate) stats: Stats,
    acks: bool,
    requests: AtomicBool,
    held_cpus: AtomicU32,
    held_mib: AtomicU64,
    #[pin]
    last_response: Mutex<Option<Response>>,
    /// What the last applied update changed, and its generation.
    #[pin]
    last_diff: Mutex<Option<(u64, crate::proto::diff::Diff)>>,
    /// Signalled, under `last_response`, on every response and every applied update.
    #[pin]
    answered: CondVar,
    /// When (monotonic ns) the stored copy moved to `generation`.
    updated_ns: AtomicI64,
    /// When (monotonic ns) the driver started the device.
    started_ns: i64,
    /// When (monotonic ns) the current pass of the device's work started, and the start of the
    /// pass that applied the last update: the stages of an update's way, for the benchmark.
    pass_ns: AtomicI64,
    pub(crate) applied_pass_ns: AtomicI64,
    /// The id of the next request.
    pub(crate) next_request: AtomicU32,
    /// The host answered a snapshot request "busy": ask again at the next sample.
    snapshot_owed: AtomicBool,
    /// Ids of the requests sent and not answered yet, oldest first, at most
    /// [`OUTSTANDING_MAX`]: an answer counts once, and only for one of them.
    #[pin]
    outstanding: Mutex<KVec<u32>>,
    /// How often applied updates are logged: the host decides how often they come.
    #[pin]
    log_budget: Mutex<TokenBucket>,
    #[pin]
    pub(crate) sampler: Mutex<Sampler>,
}

/// How long a started device may take to send its first snapshot before the driver asks.
const FIRST_SNAPSHOT_NS: i64 = 1_000_000_000;

impl Guest {
    /// Whether the first snapshot is late: none a second after the start.
    fn snapshot_overdue(&self) -> bool {
        self.generation() == 0
            && Instant::<Monotonic>::now().as_nanos() - self.started_ns >= FIRST_SNAPSHOT_NS
    }

    /// The generation of the stored copy (0 before the first snapshot).
    pub(crate) fn generation(&self) -> u64 {
        self.stats.generation.load(Ordering::Relaxed)
    }

    /// Online CPUs and MiB this guest holds, per the stored copy.
    pub(crate) fn allocation(&self) -> (u32, u64) {
        (
            self.held_cpus.load(Ordering::Relaxed),
            self.held_mib.load(Ordering::Relaxed),
        )
    }

    /// The generation of the stored copy and when it was applied (monotonic ns).
    pub(crate) fn last_update(&self) -> (u64, i64) {
        (
            self.stats.generation.load(Ordering::Relaxed),
            self.updated_ns.load(Ordering::Relaxed),
        )
    }

    /// Takes a sample; if the projection asks for something, sends the request.
    fn sample(&self, vqs: &Virtqueues<Self>) {
        if self.generation() == 0 {
            // Nothing known of the host yet: what would be asked for, and where?
            return;
        }
        let block_mib = self.copy.lock().stored().block_mib();
        let held = self.held_cpus.load(Ordering::Relaxed);
        let Some(proposal) = self.sampler.lock().sample(held, block_mib) else {
            return;
        };
        let (kind, amount, motive) = match proposal {
            Proposal::Cpus(n, m) => (RequestKind::Cpus, n, m),
            Proposal::Memory(n, m) => (RequestKind::Memory, n, m),
            Proposal::ReleaseCpus(n, m) => (RequestKind::ReleaseCpus, n, m),
        };
        pr_info!(
            "projection: demand {} (level {}, trend {}/sample, {} samples ahead) for {} held: \
             asking for {} {}\n",
            motive.demand,
            motive.level,
            motive.trend,
            motive.horizon,
            motive.held,
            amount,
            kind.name()
        );
        let req = Request {
            id: self.next_request.fetch_add(1, Ordering::Relaxed),
            kind,
            node: None,
            amount,
            motive,
        };
        if send_request(vqs, &req).is_err() {
            bump(&self.stats.bad);
        }
    }

    /// What the last applied update changed.
    pub(crate) fn last_diff(&self) -> Option<(u64, crate::proto::diff::Diff)> {
        *self.last_diff.lock()
    }

    /// Runs `f` on the stored copy of the host.
    pub(crate) fn with_copy<R>(&self, f: impl FnOnce(&KGuestCopy) -> R) -> R {
        f(&self.copy.lock())
    }

    /// The host's last answer to a request.
    pub(crate) fn last_response(&self) -> Option<Response> {
        *self.last_response.lock()
    }

    fn receive(&self, msg: &[u8], ack: &mut Option<u64>, resync: &mut bool) {
        bump(&self.stats.received);
        let mut copy = self.copy.lock();
        match copy.receive(msg) {
            Ok(Update::Partial) => {}
            Ok(Update::Applied {
                generation,
                diff,
                snapshot,
            }) => {
                let mine = copy.stored().allocation(copy.me());
                let host_cpus = copy.stored().cpus().iter().filter(|c| c.online()).count();
                drop(copy);
                *self.last_diff.lock() = Some((generation, diff));
                self.held_cpus.store(mine.cpus, Ordering::Relaxed);
                self.held_mib.store(mine.mem_mib, Ordering::Relaxed);
                bump(if snapshot {
                    &self.stats.snapshots
                } else {
                    &self.stats.deltas
                });
                self.updated_ns
                    .store(Instant::<Monotonic>::now().as_nanos(), Ordering::Relaxed);
                self.applied_pass_ns
                    .store(self.pass_ns.load(Ordering::Relaxed), Ordering::Relaxed);
                self.stats.generation.store(generation, Ordering::Relaxed);
                // Under the lock waiters check their condition with: none misses this update.
                let guard = self.last_response.lock();
                self.answered.notify_all();
                drop(guard);
                let now = u64::try_from(Instant::<Monotonic>::now().as_nanos()).unwrap_or(0);
                if self.log_budget.lock().take(now) {
                    pr_info!(
                    "generation {}: {} applied: host has {} online CPUs, this guest holds {} CPUs and {} MiB; \
                     {} CPUs gained, {} lost\n",
                    generation,
                    if snapshot { "snapshot" } else { "delta" },
                    host_cpus,
                    mine.cpus,
                    mine.mem_mib,
                    diff.my_cpus_gained,
                    diff.my_cpus_lost
                    );
                }
                if self.acks {
                    *ack = Some(generation);
                }
            }
            Ok(Update::Response(r)) => {
                drop(copy);
                // Only an answer to a request this driver sent and that is not answered yet: a
                // host that makes answers up or replays them must not steer what the guest
                // believes it asked for.
                {
                    let mut out = self.outstanding.lock();
                    match out.iter().position(|&id| id == r.id) {
                        Some(i) => {
                            let _ = out.remove(i);
                        }
                        None => {
                            drop(out);
                            return self.reject(crate::proto::error::Error::Range);
                        }
                    }
                }
                let n = self.stats.responses.fetch_add(1, Ordering::Relaxed) + 1;
                *self.last_response.lock() = Some(r);
                self.answered.notify_all();
                if r.kind == RequestKind::Snapshot && r.status == Status::Busy {
                    self.snapshot_owed.store(true, Ordering::Relaxed);
                }
                if n <= 8 || n.is_power_of_two() {
                    pr_info!(
                        "response to request {}: {} ({}), {} {}\n",
                        r.id,
                        r.status.name(),
                        r.reason.name(),
                        r.amount,
                        r.kind.name()
                    );
                }
            }
            Err(e) => {
                drop(copy);
                // A delta that does not follow the stored copy: only a snapshot can help.
                if e == crate::proto::error::Error::Gap {
                    *resync = true;
                }
                self.reject(e);
            }
        }
    }

    /// Counts a message from the device that changed nothing, and logs it, ever more rarely:
    /// the host decides how many come.
    fn reject(&self, e: crate::proto::error::Error) {
        let n = self.stats.bad.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 8 || n.is_power_of_two() {
            pr_warn!(
                "rejected a message from the device ({} so far): {:?}\n",
                n,
                e
            );
        }
    }
}

impl virtqueue::Handler for Guest {
    type Buffer = Buffer;

    fn process(vqs: ArcBorrow<'_, Virtqueues<Self>>, notified: u32) {
        let guest = vqs.handler();
        guest
            .pass_ns
            .store(Instant::<Monotonic>::now().as_nanos(), Ordering::Relaxed);
        if notified & SAMPLE != 0 {
            let start = Instant::<Monotonic>::now();
            guest.sample(&vqs);
            let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(0);
            guest.stats.sampling_ns.fetch_add(ns, Ordering::Relaxed);
        }
        let mut ack = None;
        let mut resync = false;
        if notified & SAMPLE != 0
            && (guest.snapshot_owed.swap(false, Ordering::Relaxed) || guest.snapshot_overdue())
        {
            // The host answered our last snapshot request "busy", or has not sent the first
            // snapshot in time (it holds snapshots back from a driver that starts too often):
            // ask again, at sampling pace.
            resync = true;
        }
        let mut q = vqs.lock();
        let events = usize::from(EVENTQ);
        let mut more = true;
        for _ in 0..EVENT_BUDGET {
            let Ok(Some(used)) = q.get_buf(events) else {
                more = false;
                break;
            };
            match used.written() {
                Ok(bytes) => guest.receive(bytes, &mut ack, &mut resync),
                Err(_) => bump(&guest.stats.bad),
            }
            if q.add_inbuf(events, used.into_buffer()).is_err() {
                bump(&guest.stats.bad);
            }
        }
        let _ = q.kick(events);
        // Sent requests and acks come back once the device has read them (at most as many as
        // were sent).
        while let Ok(Some(_)) = q.get_buf(usize::from(REQUESTQ)) {}
        drop(q);
        if more {
            vqs.schedule(1u32 << EVENTQ);
        }
        if let Some(generation) = ack {
            let _ = send(&vqs, |buf| Ok(encode_ack(generation, buf)?));
        }
        if resync {
            let req = Request {
                id: guest.next_request.fetch_add(1, Ordering::Relaxed),
                kind: RequestKind::Snapshot,
                node: None,
                amount: 0,
                motive: Motive {
                    source: MOTIVE_RESYNC,
                    ..Motive::default()
                },
            };
            let _ = send_request(&vqs, &req);
        }
    }
}

/// Sends one message on the request queue.
fn send(vqs: &Virtqueues<Guest>, encode: impl FnOnce(&mut [u8]) -> Result<usize>) -> Result {
    let mut buf = KBox::new([0u8; MAX_MSG_SIZE], GFP_KERNEL)?;
    let len = encode(&mut buf[..])?;
    let mut q = vqs.lock();
    let requests = usize::from(REQUESTQ);
    q.add_outbuf(requests, buf, len)?;
    q.kick(requests)?;
    bump(&vqs.handler().stats.sent);
    Ok(())
}

/// Sends a resource request to the host.
pub(crate) fn send_request(vqs: &Virtqueues<Guest>, req: &Request) -> Result {
    let guest = vqs.handler();
    if !guest.requests.load(Ordering::Relaxed) {
        return Err(EOPNOTSUPP);
    }
    // Expected before it is sent: the answer may come at once. The oldest makes room (a
    // snapshot request the host answers with a snapshot gets no answer of its own).
    {
        let mut out = guest.outstanding.lock();
        if out.len() >= OUTSTANDING_MAX {
            let _ = out.remove(0);
        }
        out.push_within_capacity(req.id).map_err(|_| ENOMEM)?;
    }
    let sent = send(vqs, |buf| Ok(encode_request(req, buf)?));
    if sent.is_err() {
        let mut out = guest.outstanding.lock();
        if let Some(i) = out.iter().rposition(|&id| id == req.id) {
            let _ = out.remove(i);
        }
    }
    sent
}

/// Request round trips measured by [`bench_roundtrip`], in nanoseconds.
pub(crate) struct RoundTrips {
    pub(crate) n: usize,
    /// Requests granted (in full or in part): their round trip ends with the update.
    pub(crate) granted: usize,
    pub(crate) p50: i64,
    pub(crate) p99: i64,
    pub(crate) max: i64,
}

/// Latency benchmark, guest to host and back: sends `n` requests, one at a time, alternately
/// for one more CPU and giving one back, so that each one granted changes the allocation. A
/// round trip ends when the answer has arrived and, for a grant, the guest has applied the
/// update that reflects it (the "second update").
pub(crate) fn bench_roundtrip(
    vqs: &Virtqueues<Guest>,
    n: usize,
    first_id: u32,
) -> Result<RoundTrips> {
    let guest = vqs.handler();
    let mut samples = KVec::with_capacity(n, GFP_KERNEL)?;
    let mut granted = 0;
    for i in 0..n {
        let id = first_id.wrapping_add(i as u32);
        let req = Request {
            id,
            kind: if i % 2 == 0 {
                RequestKind::Cpus
            } else {
                RequestKind::ReleaseCpus
            },
            node: None,
            amount: 1,
            motive: Motive {
                source: MOTIVE_MANUAL,
                ..Motive::default()
            },
        };
        let start = Instant::<Monotonic>::now();
        send_request(vqs, &req)?;
        let mut last = guest.last_response.lock();
        let done = |last: &Option<Response>| {
            last.is_some_and(|r| {
                r.id == id
                    && (!matches!(r.status, Status::Granted | Status::Partial)
                        || guest.generation() >= r.generation)
            })
        };
        while !done(&last) {
            match guest
                .answered
                .wait_interruptible_timeout(&mut last, msecs_to_jiffies(2000))
            {
                CondVarTimeoutResult::Timeout => return Err(ETIMEDOUT),
                CondVarTimeoutResult::Signal { .. } => return Err(EINTR),
                CondVarTimeoutResult::Woken { .. } => {}
            }
        }
        if last.is_some_and(|r| matches!(r.status, Status::Granted | Status::Partial)) {
            granted += 1;
        }
        drop(last);
        samples.push(start.elapsed().as_nanos(), GFP_KERNEL)?;
    }
    heapsort(&mut samples);
    let at = |q: usize| {
        samples
            .get(n.saturating_sub(1) * q / 100)
            .copied()
            .unwrap_or(0)
    };
    Ok(RoundTrips {
        n,
        granted,
        p50: at(50),
        p99: at(99),
        max: samples.last().copied().unwrap_or(0),
    })
}

/// Sorts in place. (core's sort carries a panic path for inconsistent orderings that objtool
/// flags in a module; an integer heapsort has none.)
fn heapsort(v: &mut [i64]) {
    fn sift(v: &mut [i64], mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && v.get(child + 1) > v.get(child) {
                child += 1;
            }
            if v.get(root) >= v.get(child) {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    }
    let n = v.len();
    for start in (0..n / 2).rev() {
        sift(v, start, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift(v, 0, end);
    }
}

/// The driver's data for a bound device.
#[pin_data]
pub(crate) struct GuestDevice {
    // Dropped first: cancels the sampling timer, which holds a reference to the queues.
    _sampler: ArcHrTimerHandle<SampleTimer>,
    pub(crate) vqs: Arc<Virtqueues<Guest>>,
}

pub(crate) struct GuestDriver;

kernel::virtio_device_table!(
    VIRTIO_TABLE,
    @none,
    [virtio::DeviceId::new(VIRTIO_ID_HWCONVEY)]
);

impl GuestDriver {
    fn setup(dev: &virtio::Device<Bound>) -> Result<Arc<Virtqueues<Guest>>> {
        // SAFETY: Both fields lie within the device's configuration space (`CONFIG_SIZE` bytes,
        // Documentation/protocol.rst), which every hwconvey device has.
        let (max_msg, guest_id) = dev.read_config(|r| unsafe {
            (
                r.read_u32(CONFIG_MAX_MSG_SIZE as u32),
                r.read_u32(CONFIG_GUEST_ID as u32),
            )
        })?;
        // Messages from this device must fit the buffers this driver posts.
        let max_msg = usize::try_from(max_msg)?;
        if !(HEADER_SIZE..=MAX_MSG_SIZE).contains(&max_msg) {
            dev_err!(
                dev.as_ref(),
                "bad max_msg_size {} in config space\n",
                max_msg
            );
            return Err(EINVAL);
        }
        let vqs = Virtqueues::new(
            dev,
            &[c"events", c"requests"],
            try_pin_init!(Guest {
                copy <- new_mutex!({
                    let mut copy = new_guest_copy()?;
                    if !dev.has_feature(F_DELTA) {
                        copy.refuse_deltas();
                    }
                    copy
                }),
                stats: Stats::default(),
                acks: dev.has_feature(F_ACK),
                requests: AtomicBool::new(dev.has_feature(F_REQUEST)),
                held_cpus: AtomicU32::new(0),
                held_mib: AtomicU64::new(0),
                last_response <- new_mutex!(None),
                last_diff <- new_mutex!(None),
                answered <- new_condvar!(),
                updated_ns: AtomicI64::new(0),
                started_ns: Instant::<Monotonic>::now().as_nanos(),
                pass_ns: AtomicI64::new(0),
                applied_pass_ns: AtomicI64::new(0),
                next_request: AtomicU32::new(1),
                snapshot_owed: AtomicBool::new(false),
                outstanding <- new_mutex!(KVec::with_capacity(OUTSTANDING_MAX, GFP_KERNEL)?),
                log_budget <- new_mutex!(TokenBucket::new(
                    UPDATE_LOG_RATE,
                    UPDATE_LOG_BURST,
                    u64::try_from(Instant::<Monotonic>::now().as_nanos()).unwrap_or(0),
                )),
                sampler <- new_mutex!(Sampler::new()?),
            }),
        )?;
        {
            let mut q = vqs.lock();
            for _ in 0..EVENT_BUFFERS {
                q.add_inbuf(
                    usize::from(EVENTQ),
                    KBox::new([0u8; MAX_MSG_SIZE], GFP_KERNEL)?,
                )?;
            }
            q.kick(usize::from(EVENTQ))?;
        }
        dev_info!(
            dev.as_ref(),
            "hwconvey device: guest id {}, deltas {}, requests {}, acks {}\n",
            guest_id,
            dev.has_feature(F_DELTA),
            dev.has_feature(F_REQUEST),
            dev.has_feature(F_ACK)
        );
        dev.ready();
        Ok(vqs)
    }
}

impl virtio::Driver for GuestDriver {
    type Data<'bound> = GuestDevice;

    const ID_TABLE: virtio::IdTable = &VIRTIO_TABLE;
    const FEATURES: &'static [u32] = &[F_DELTA, F_REQUEST, F_ACK];

    fn probe<'bound>(
        dev: &'bound virtio::Device<Core<'_>>,
    ) -> impl PinInit<GuestDevice, Error> + 'bound {
        let vqs = Self::setup(dev);
        try_pin_init!(GuestDevice {
            vqs: vqs?,
            _sampler: Arc::pin_init(SampleTimer::new(vqs.clone()), GFP_KERNEL)?
                .start(SampleTimer::period()),
        })
        // Only a device whose probe cannot fail any more gets the files.
        .pin_chain(|this| {
            sysfs::attach(&this.vqs);
            Ok(())
        })
    }

    fn unbind<'bound>(dev: &'bound virtio::Device<Core<'_>>, this: Pin<&GuestDevice>) {
        sysfs::detach(&this.vqs);
        let s = &this.vqs.handler().stats;
        dev_info!(
            dev.as_ref(),
            "unbound: {} messages received ({} snapshots, {} deltas, {} responses), {} bad, {} sent\n",
            s.received.load(Ordering::Relaxed),
            s.snapshots.load(Ordering::Relaxed),
            s.deltas.load(Ordering::Relaxed),
            s.responses.load(Ordering::Relaxed),
            s.bad.load(Ordering::Relaxed),
            s.sent.load(Ordering::Relaxed),
        );
    }
}
