// SPDX-License-Identifier: GPL-2.0

//! The device's work: take what the host sent on the event queue, apply it to the stored copy,
//! acknowledge it, and answer the sampling timer.
//!
//! Every received message goes through the protocol crate's decoder and is applied only if it
//! is complete and consistent; a bad one is counted and changes nothing.

use crate::device::{bump, Guest};
use crate::proto::{
    device::{EVENTQ, REQUESTQ},
    error::Error as ProtoError,
    guest::Update,
    message::{encode_ack, RequestKind, Status, MAX_MSG_SIZE},
};
use crate::request::{request_snapshot, send};
use crate::sampler::SAMPLE;
use core::sync::atomic::Ordering;
use kernel::{
    prelude::*,
    sync::ArcBorrow,
    time::{Instant, Monotonic},
    virtio::virtqueue::{self, Virtqueues},
};

/// Buffers kept posted on the event queue.
pub(crate) const EVENT_BUFFERS: usize = 16;

/// Messages taken from the event queue in one pass of the device's work; the rest wait for
/// the next pass, so a host that keeps the queue full cannot keep the work running.
const EVENT_BUDGET: usize = 4 * EVENT_BUFFERS;

/// One message from the host.
pub(crate) type Buffer = [u8; MAX_MSG_SIZE];

impl virtqueue::Handler for Guest {
    type Buffer = Buffer;

    fn process(vqs: ArcBorrow<'_, Virtqueues<Self>>, notified: u32) {
        let guest = vqs.handler();
        guest
            .pass_ns
            .store(Instant::<Monotonic>::now().as_nanos(), Ordering::Relaxed);
        let mut resync = false;
        if notified & SAMPLE != 0 {
            let start = Instant::<Monotonic>::now();
            guest.sample(&vqs);
            let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(0);
            guest.stats.sampling_ns.fetch_add(ns, Ordering::Relaxed);
            // The host answered our last snapshot request "busy", or has not sent the first
            // snapshot in time (it holds snapshots back from a driver that starts too often):
            // ask again, at sampling pace.
            let owed = core::mem::take(&mut guest.requests.lock().snapshot_owed);
            resync = owed || guest.snapshot_overdue();
        }
        let mut ack = None;
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
            let _ = request_snapshot(&vqs);
        }
    }
}

impl Guest {
    /// Takes one message: an update is applied to the stored copy, an answer is matched with
    /// its request. `ack` gets the generation to acknowledge, `resync` whether only a snapshot
    /// can help.
    fn receive(&self, msg: &[u8], ack: &mut Option<u64>, resync: &mut bool) {
        bump(&self.stats.received);
        let mut received = self.received.lock();
        let r = &mut *received;
        match r.copy.receive(msg) {
            Ok(Update::Partial) => {}
            Ok(Update::Applied {
                generation,
                diff,
                snapshot,
            }) => {
                let mine = r.copy.stored().allocation(r.copy.me());
                let host_cpus = r.copy.stored().cpus().iter().filter(|c| c.online()).count();
                let now = Instant::<Monotonic>::now().as_nanos();
                r.generation = generation;
                r.held_cpus = mine.cpus;
                r.held_mib = mine.mem_mib;
                r.last_diff = Some((generation, diff));
                r.updated_ns = now;
                r.applied_pass_ns = self.pass_ns.load(Ordering::Relaxed);
                let log = r.log_budget.take(u64::try_from(now).unwrap_or(0));
                drop(received);
                bump(if snapshot {
                    &self.stats.snapshots
                } else {
                    &self.stats.deltas
                });
                // Waiters check their condition under `requests`: none misses this update.
                self.requests.lock().applied = generation;
                self.answered.notify_all();
                self.event();
                if log {
                    pr_info!(
                        "generation {}: {} applied: host has {} online CPUs, this guest holds \
                         {} CPUs and {} MiB; {} CPUs gained, {} lost\n",
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
            Ok(Update::Response(resp)) => {
                drop(received);
                // Only an answer to a request this driver sent and that is not answered yet: a
                // host that makes answers up or replays them must not steer what the guest
                // believes it asked for.
                let mut requests = self.requests.lock();
                let Some(i) = requests
                    .outstanding
                    .iter()
                    .position(|p| p.answered_by(&resp))
                else {
                    drop(requests);
                    return self.reject(ProtoError::Range);
                };
                let _ = requests.outstanding.remove(i);
                requests.last_response = Some(resp);
                if let Some((id, answer)) = requests.awaited.as_mut() {
                    if *id == resp.id {
                        *answer = Some(resp);
                    }
                }
                if resp.kind == RequestKind::Snapshot && resp.status == Status::Busy {
                    requests.snapshot_owed = true;
                }
                drop(requests);
                self.answered.notify_all();
                self.event();
                let n = self.stats.responses.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= 8 || n.is_power_of_two() {
                    pr_info!(
                        "response to request {}: {} ({}), {} {}\n",
                        resp.id,
                        resp.status.name(),
                        resp.reason.name(),
                        resp.amount,
                        resp.kind.name()
                    );
                }
            }
            Err(e) => {
                drop(received);
                // A delta that does not follow the stored copy: only a snapshot can help.
                if e == ProtoError::Gap {
                    *resync = true;
                }
                self.reject(e);
            }
        }
    }

    /// Counts a message from the device that changed nothing, and logs it, ever more rarely:
    /// the host decides how many come.
    fn reject(&self, e: ProtoError) {
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
