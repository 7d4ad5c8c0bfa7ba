// SPDX-License-Identifier: GPL-2.0

//! What the driver keeps per device: the stored copy of the host, the requests in flight, the
//! sampler, and the counters.
//!
//! The device is untrusted (a confidential guest must not trust its host): everything here
//! changes only after a message passed the protocol crate's decoder whole.

use crate::proto::{
    admission::TokenBucket,
    diff::Diff,
    in_kernel::{new_guest_copy, KGuestCopy},
    message::{RequestKind, Response},
};
use crate::sampler::Sampler;
use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use kernel::{
    new_condvar, new_mutex,
    prelude::*,
    sync::{CondVar, CondVarTimeoutResult, Mutex, MutexGuard, SetOnce},
    sysfs::Notifier,
    time::{msecs_to_jiffies, Instant, Jiffies, Monotonic},
};

/// Requests sent and not answered yet that the driver remembers; the oldest is forgotten first.
pub(crate) const OUTSTANDING_MAX: usize = 256;

/// Applied updates logged per second, and in a burst: the host decides how often they come.
const UPDATE_LOG_RATE: u32 = 10;
const UPDATE_LOG_BURST: u32 = 20;

/// How long a started device may take to send its first snapshot before the driver asks.
const FIRST_SNAPSHOT_NS: i64 = 1_000_000_000;

/// Counters of one device: each counts on its own, none is read with another.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) received: AtomicU64,
    pub(crate) snapshots: AtomicU64,
    pub(crate) deltas: AtomicU64,
    pub(crate) responses: AtomicU64,
    pub(crate) bad: AtomicU64,
    pub(crate) sent: AtomicU64,
    /// Updates applied and answers taken: what wakes those who poll the `events` file.
    pub(crate) events: AtomicU64,
    /// Time spent taking samples and projecting, in ns (the sampling's own cost: what an
    /// idle guest pays for hwconvey).
    pub(crate) sampling_ns: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The stored copy of the host and what the driver derives from it, changed together by each
/// applied update: a reader sees one update whole, never halves of two.
pub(crate) struct Received {
    /// The copy itself, with the snapshot being assembled.
    pub(crate) copy: KGuestCopy,
    /// The copy's generation (0 before the first snapshot).
    pub(crate) generation: u64,
    /// Online CPUs and MiB this guest holds in the copy.
    pub(crate) held_cpus: u32,
    pub(crate) held_mib: u64,
    /// What the last applied update changed, and its generation.
    pub(crate) last_diff: Option<(u64, Diff)>,
    /// When (monotonic ns) the copy moved to `generation`.
    pub(crate) updated_ns: i64,
    /// When the pass of the device's work that applied it started: a stage of an update's way,
    /// for the benchmark.
    pub(crate) applied_pass_ns: i64,
    /// How often applied updates are logged.
    pub(crate) log_budget: TokenBucket,
}

/// A request sent and not answered yet: what an answer to it may say.
#[derive(Clone, Copy)]
pub(crate) struct Pending {
    pub(crate) id: u32,
    pub(crate) kind: RequestKind,
    pub(crate) amount: u32,
}

impl Pending {
    /// Whether `resp` can be the answer to this request: same id and kind, and no more CPUs
    /// than asked for (memory is granted in whole blocks, so its amount may round up).
    pub(crate) fn answered_by(&self, resp: &Response) -> bool {
        resp.id == self.id
            && resp.kind == self.kind
            && (self.kind == RequestKind::Memory || resp.amount <= self.amount)
    }
}

/// The requests in flight and the host's answers.
pub(crate) struct Requests {
    /// The requests sent and not answered yet, oldest first, at most [`OUTSTANDING_MAX`]: an
    /// answer counts once, and only for one of them.
    pub(crate) outstanding: KVec<Pending>,
    /// The host's last answer.
    pub(crate) last_response: Option<Response>,
    /// The request a waiter (the benchmark) waits for, and its answer once it came: answers
    /// to other requests in between do not hide it.
    pub(crate) awaited: Option<(u32, Option<Response>)>,
    /// The generation of the last applied update, as waiters for an answer's update see it.
    pub(crate) applied: u64,
    /// The host answered a snapshot request "busy": ask again at the next sample.
    pub(crate) snapshot_owed: bool,
}

/// What the driver keeps per device, shared with the virtqueue handler.
///
/// # Locks
///
/// One lock per inner state, each guarding the fields of its type: [`Received`] (the copy),
/// [`Requests`] (with the condition variable `answered`) and the [`Sampler`]. The order is
/// the device's queues (`Virtqueues::lock`, held by the receive path around `receive`), then
/// `received`, then `requests`; `received` and `requests` are taken one after the other,
/// never nested, `sampler` is taken alone, and messages are sent (which takes the queues)
/// with none of them held. The atomics are counters and the features fixed at probe, each read
/// on its own.
#[pin_data]
pub(crate) struct Guest {
    #[pin]
    pub(crate) received: Mutex<Received>,
    #[pin]
    pub(crate) requests: Mutex<Requests>,
    /// Signalled, under `requests`, on every answer and every applied update.
    #[pin]
    pub(crate) answered: CondVar,
    #[pin]
    pub(crate) sampler: Mutex<Sampler>,
    pub(crate) stats: Stats,
    /// `F_ACK` was negotiated: acknowledge applied updates.
    pub(crate) acks: bool,
    /// `F_REQUEST` was negotiated: the host takes requests.
    pub(crate) can_request: bool,
    /// When (monotonic ns) the driver started the device.
    started_ns: i64,
    /// When (monotonic ns) the current pass of the device's work started; written and read by
    /// that work only, which runs one pass at a time.
    pub(crate) pass_ns: AtomicI64,
    /// The id of the next request.
    pub(crate) next_request: AtomicU32,
    /// Wakes those who poll the device's `events` file, once the file exists (set once the
    /// driver bound the device).
    pub(crate) events: SetOnce<Notifier>,
}

impl Guest {
    /// A device's state before its first message, for a driver that negotiated deltas
    /// (`delta`), acknowledgements (`acks`) and requests (`can_request`).
    pub(crate) fn new(delta: bool, acks: bool, can_request: bool) -> impl PinInit<Self, Error> {
        let now = Instant::<Monotonic>::now().as_nanos();
        try_pin_init!(Guest {
            received <- new_mutex!(Received {
                copy: {
                    let mut copy = new_guest_copy()?;
                    if !delta {
                        copy.refuse_deltas();
                    }
                    copy
                },
                generation: 0,
                held_cpus: 0,
                held_mib: 0,
                last_diff: None,
                updated_ns: 0,
                applied_pass_ns: 0,
                log_budget: TokenBucket::new(
                    UPDATE_LOG_RATE,
                    UPDATE_LOG_BURST,
                    u64::try_from(now).unwrap_or(0),
                ),
            }),
            requests <- new_mutex!(Requests {
                outstanding: KVec::with_capacity(OUTSTANDING_MAX, GFP_KERNEL)?,
                last_response: None,
                awaited: None,
                applied: 0,
                snapshot_owed: false,
            }),
            answered <- new_condvar!(),
            sampler <- new_mutex!(Sampler::new()?),
            stats: Stats::default(),
            acks,
            can_request,
            started_ns: now,
            pass_ns: AtomicI64::new(0),
            next_request: AtomicU32::new(1),
            events: SetOnce::new(),
        })
    }

    /// Counts an applied update or a taken answer, and wakes those who poll the `events` file.
    pub(crate) fn event(&self) {
        bump(&self.stats.events);
        if let Some(n) = self.events.as_ref() {
            n.notify();
        }
    }

    /// Whether the first snapshot is late: none a second after the start.
    pub(crate) fn snapshot_overdue(&self) -> bool {
        self.generation() == 0
            && Instant::<Monotonic>::now().as_nanos() - self.started_ns >= FIRST_SNAPSHOT_NS
    }

    /// The generation of the stored copy (0 before the first snapshot).
    pub(crate) fn generation(&self) -> u64 {
        self.received.lock().generation
    }

    /// Online CPUs and MiB this guest holds, per the stored copy.
    pub(crate) fn allocation(&self) -> (u32, u64) {
        let r = self.received.lock();
        (r.held_cpus, r.held_mib)
    }

    /// The generation of the stored copy and when it was applied (monotonic ns).
    pub(crate) fn last_update(&self) -> (u64, i64) {
        let r = self.received.lock();
        (r.generation, r.updated_ns)
    }

    /// When the pass of the device's work that applied the last update started.
    pub(crate) fn applied_pass_ns(&self) -> i64 {
        self.received.lock().applied_pass_ns
    }

    /// What the last applied update changed.
    pub(crate) fn last_diff(&self) -> Option<(u64, Diff)> {
        self.received.lock().last_diff
    }

    /// Runs `f` on the stored copy of the host.
    pub(crate) fn with_copy<R>(&self, f: impl FnOnce(&KGuestCopy) -> R) -> R {
        f(&self.received.lock().copy)
    }

    /// The host's last answer to a request.
    pub(crate) fn last_response(&self) -> Option<Response> {
        self.requests.lock().last_response
    }

    /// Waits until `done` holds of the requests' state, for at most `timeout_ms` in all
    /// (wake-ups, which the host can cause at will, do not restart it); returns the state,
    /// locked.
    pub(crate) fn wait_answer(
        &self,
        timeout_ms: u32,
        mut done: impl FnMut(&Requests) -> bool,
    ) -> Result<MutexGuard<'_, Requests>> {
        let mut left: Jiffies = msecs_to_jiffies(timeout_ms);
        let mut r = self.requests.lock();
        while !done(&r) {
            match self.answered.wait_interruptible_timeout(&mut r, left) {
                // What came in the last jiffy counts.
                CondVarTimeoutResult::Timeout if done(&r) => break,
                CondVarTimeoutResult::Timeout => return Err(ETIMEDOUT),
                CondVarTimeoutResult::Signal { .. } => return Err(EINTR),
                CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
            }
        }
        Ok(r)
    }
}
