// SPDX-License-Identifier: GPL-2.0

//! The request round-trip benchmark (debugfs `hwconvey-guest/bench_roundtrip`): requests sent
//! one at a time, each timed until its answer and, for a grant, the update that reflects it.

use crate::bound::BoundDevices;
use crate::device::Guest;
use crate::proto::message::{Motive, Request, RequestKind, Status, MOTIVE_MANUAL};
use crate::request::send_request;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::{
    fmt, new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
    time::{Instant, Monotonic},
    uaccess::UserSliceReader,
    virtio::virtqueue::Virtqueues,
};

/// The benchmark's debugfs file: the last result, and whether a run is under way.
#[pin_data]
pub(crate) struct BenchFile {
    #[pin]
    last: Mutex<Option<RoundTrips>>,
    /// One run at a time: each waits for its own answers.
    running: AtomicBool,
    /// The devices; the benchmark runs on the first bound.
    devices: Arc<BoundDevices>,
}

impl BenchFile {
    pub(crate) fn new(devices: Arc<BoundDevices>) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            last <- new_mutex!(None),
            running: AtomicBool::new(false),
            devices,
        })
    }

    /// Read: "n <n> granted <g> p50_ns <t> p99_ns <t> max_ns <t>" of the last run, or "none".
    pub(crate) fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last.lock().as_ref() {
            Some(r) => writeln!(
                f,
                "n {} granted {} p50_ns {} p99_ns {} max_ns {}",
                r.n, r.granted, r.p50, r.p99, r.max
            ),
            None => writeln!(f, "none"),
        }
    }

    /// Written: `n` (1..=1000000) runs [`bench_roundtrip`] with `n` requests; returns when it
    /// is done. EBUSY while another run is under way, ENODEV without a device.
    pub(crate) fn store(&self, r: &mut UserSliceReader) -> Result {
        let mut buf = [0u8; 16];
        let text = buf.get_mut(..r.len()).ok_or(EINVAL)?;
        r.read_slice(text)?;
        let text = core::str::from_utf8(text).map_err(|_| EINVAL)?;
        let n: usize = text.trim().parse().map_err(|_| EINVAL)?;
        if !(1..=1_000_000).contains(&n) {
            return Err(EINVAL);
        }
        let vqs = self.devices.first()?;
        if self.running.swap(true, Ordering::Acquire) {
            return Err(EBUSY);
        }
        let first = vqs
            .handler()
            .next_request
            .fetch_add(n as u32, Ordering::Relaxed);
        let result = bench_roundtrip(&vqs, n, first);
        self.running.store(false, Ordering::Release);
        *self.last.lock() = Some(result?);
        Ok(())
    }
}

/// Request round trips measured by [`bench_roundtrip`], in nanoseconds.
struct RoundTrips {
    n: usize,
    /// Requests granted (in full or in part): their round trip ends with the update.
    granted: usize,
    p50: i64,
    p99: i64,
    max: i64,
}

/// How long one request may wait for its answer and update, and the whole benchmark for all:
/// the host decides when answers come, and the sysfs write (and the module's unload) waits
/// for the benchmark.
const ANSWER_MS: u32 = 2000;
const BUDGET_MS: i64 = 60_000;

/// Latency benchmark, guest to host and back: sends `n` requests, one at a time, alternately
/// for one more CPU and giving one back, so that each one granted changes the allocation. A
/// round trip ends when the answer has arrived and, for a grant, the guest has applied the
/// update that reflects it (the "second update").
fn run(vqs: &Virtqueues<Guest>, n: usize, first_id: u32) -> Result<RoundTrips> {
    let guest = vqs.handler();
    let budget = Instant::<Monotonic>::now();
    let mut samples = KVVec::with_capacity(n, GFP_KERNEL)?;
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
        if budget.elapsed().as_millis() > BUDGET_MS {
            return Err(ETIMEDOUT);
        }
        guest.requests.lock().awaited = Some((id, None));
        let start = Instant::<Monotonic>::now();
        send_request(vqs, &req)?;
        // Answered, and for a grant, the update that reflects it applied.
        let granted_now = {
            let r = guest.wait_answer(ANSWER_MS, |r| match r.awaited {
                Some((_, Some(resp))) => {
                    !matches!(resp.status, Status::Granted | Status::Partial)
                        || r.applied >= resp.generation
                }
                _ => false,
            })?;
            matches!(
                r.awaited,
                Some((_, Some(resp))) if matches!(resp.status, Status::Granted | Status::Partial)
            )
        };
        if granted_now {
            granted += 1;
        }
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

/// Runs [`run`] and forgets the awaited request on every exit: a late answer then updates
/// nothing but the last answer.
fn bench_roundtrip(vqs: &Virtqueues<Guest>, n: usize, first_id: u32) -> Result<RoundTrips> {
    let result = run(vqs, n, first_id);
    vqs.handler().requests.lock().awaited = None;
    result
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
