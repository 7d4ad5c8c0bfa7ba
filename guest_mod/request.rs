// SPDX-License-Identifier: GPL-2.0

//! What the guest sends the host on the request queue: requests (projected, manual, or for a
//! snapshot) and acknowledgements.

use crate::device::{bump, Guest, Pending, OUTSTANDING_MAX};
use crate::proto::{
    device::REQUESTQ,
    message::{encode_request, Motive, Request, RequestKind, MAX_MSG_SIZE, MOTIVE_RESYNC},
    projection::Proposal,
};
use core::sync::atomic::Ordering;
use kernel::{prelude::*, virtio::virtqueue::Virtqueues};

/// Sends one message on the request queue.
pub(crate) fn send(
    vqs: &Virtqueues<Guest>,
    encode: impl FnOnce(&mut [u8]) -> Result<usize>,
) -> Result {
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
    if !guest.can_request {
        return Err(EOPNOTSUPP);
    }
    // Expected before it is sent: the answer may come at once. The oldest makes room (a
    // snapshot request the host answers with a snapshot gets no answer of its own).
    {
        let mut r = guest.requests.lock();
        if r.outstanding.len() >= OUTSTANDING_MAX {
            let _ = r.outstanding.remove(0);
        }
        r.outstanding
            .push_within_capacity(Pending {
                id: req.id,
                kind: req.kind,
                amount: req.amount,
            })
            .map_err(|_| ENOMEM)?;
    }
    let sent = send(vqs, |buf| Ok(encode_request(req, buf)?));
    if sent.is_err() {
        let mut r = guest.requests.lock();
        if let Some(i) = r.outstanding.iter().rposition(|p| p.id == req.id) {
            let _ = r.outstanding.remove(i);
        }
    }
    sent
}

/// Asks the host for a full snapshot: the stored copy cannot follow its deltas.
pub(crate) fn request_snapshot(vqs: &Virtqueues<Guest>) -> Result {
    let req = Request {
        id: vqs.handler().next_request.fetch_add(1, Ordering::Relaxed),
        kind: RequestKind::Snapshot,
        node: None,
        amount: 0,
        motive: Motive {
            source: MOTIVE_RESYNC,
            ..Motive::default()
        },
    };
    send_request(vqs, &req)
}

impl Guest {
    /// Takes a sample; if the projection asks for something, sends the request.
    pub(crate) fn sample(&self, vqs: &Virtqueues<Self>) {
        let (block_mib, held) = {
            let r = self.received.lock();
            if r.generation == 0 {
                // Nothing known of the host yet: what would be asked for, and where?
                return;
            }
            (r.copy.stored().block_mib(), r.held_cpus)
        };
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
}
