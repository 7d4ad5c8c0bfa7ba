// SPDX-License-Identifier: GPL-2.0

//! The request round-trip benchmark (`guest/bench_roundtrip`): requests sent one at a time,
//! each timed until its answer and, for a grant, the update that reflects it.

use crate::device::Guest;
use crate::proto::message::{Motive, Request, RequestKind, Status, MOTIVE_MANUAL};
use crate::request::send_request;
use kernel::{
    prelude::*,
    time::{Instant, Monotonic},
    virtio::virtqueue::Virtqueues,
};

/// Request round trips measured by [`bench_roundtrip`], in nanoseconds.
pub(crate) struct RoundTrips {
    pub(crate) n: usize,
    /// Requests granted (in full or in part): their round trip ends with the update.
    pub(crate) granted: usize,
    pub(crate) p50: i64,
    pub(crate) p99: i64,
    pub(crate) max: i64,
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
pub(crate) fn bench_roundtrip(
    vqs: &Virtqueues<Guest>,
    n: usize,
    first_id: u32,
) -> Result<RoundTrips> {
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
