// SPDX-License-Identifier: GPL-2.0

//! Messages: an 8-byte header, then a body that depends on the type.
//!
//! ```text
//!  0         1      2        4          8
//!  | version | type | flags  | length   | body ...
//! ```
//! `length` counts the whole message, header included, and must equal the
//! bytes the transport delivered. Types below 0x80 go host to guest, types
//! from 0x80 go guest to host; each side rejects the other's.

use super::error::{Error, Result};
use super::inventory::{Cpu, Dims, Inventory, MemBlock, Node, NodeId, Table};
use super::run::{next_run, Run, Runs, Section, RUN_SIZE};
use super::wire::{Reader, Writer};

/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Bytes in the common header.
pub const HEADER_SIZE: usize = 8;
/// The largest message either side sends or accepts: one page, so every
/// buffer on the rings is one page.
pub const MAX_MSG_SIZE: usize = 4096;

/// Host to guest: one part of a full snapshot.
pub const MSG_SNAPSHOT: u8 = 0x01;
/// Host to guest: changes since a generation.
pub const MSG_DELTA: u8 = 0x02;
/// Host to guest: the answer to a request.
pub const MSG_RESPONSE: u8 = 0x03;
/// Guest to host: a resource request.
pub const MSG_REQUEST: u8 = 0x81;
/// Guest to host: the guest applied a generation.
pub const MSG_ACK: u8 = 0x82;

/// Snapshot flag: this is the last part.
pub const SNAPSHOT_LAST: u16 = 1 << 0;

/// Bytes of a snapshot part's header after the common header.
pub const SNAPSHOT_HEADER_SIZE: usize = 40;
/// Bytes of a delta's header after the common header.
pub const DELTA_HEADER_SIZE: usize = 16;
/// Bytes of a request's body.
pub const REQUEST_BODY_SIZE: usize = 32;
/// Bytes of a response's body.
pub const RESPONSE_BODY_SIZE: usize = 24;
/// Bytes of an ack's body.
pub const ACK_BODY_SIZE: usize = 8;

/// The common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type.
    pub ty: u8,
    /// Type-specific flags.
    pub flags: u16,
    /// Whole message length.
    pub len: u32,
}

impl Header {
    fn encode(&self, w: &mut Writer<'_>) -> Result {
        w.u8(VERSION)?;
        w.u8(self.ty)?;
        w.u16(self.flags)?;
        w.u32(self.len)
    }

    /// Reads and checks the header of `msg`: version, and that the length
    /// field matches the buffer and the maximum. Returns the header and a
    /// reader over the body.
    pub fn decode(msg: &[u8]) -> Result<(Header, Reader<'_>)> {
        if msg.len() > MAX_MSG_SIZE {
            return Err(Error::Length);
        }
        let mut r = Reader::new(msg);
        if r.u8()? != VERSION {
            return Err(Error::Version);
        }
        let ty = r.u8()?;
        let flags = r.u16()?;
        let len = r.u32()?;
        if len as usize != msg.len() {
            return Err(Error::Length);
        }
        Ok((Header { ty, flags, len }, r))
    }
}

/// A snapshot part's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPart {
    /// The generation the snapshot describes.
    pub generation: u64,
    /// The guest id the host knows this guest by (its [`Owner`] value).
    ///
    /// [`Owner`]: super::inventory::Owner
    pub guest: u32,
    /// Part number, from 0.
    pub part: u16,
    /// Whether this is the last part.
    pub last: bool,
    /// The host's dimensions; the same in every part.
    pub dims: Dims,
}

/// A delta's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaHeader {
    /// The generation the delta applies to.
    pub base: u64,
    /// The generation after it.
    pub generation: u64,
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestKind {
    /// More CPUs (`amount` CPUs).
    Cpus = 1,
    /// More memory (`amount` MiB).
    Memory = 2,
    /// A full snapshot (`amount` 0).
    Snapshot = 3,
    /// Give back CPUs (`amount` CPUs).
    ReleaseCpus = 4,
    /// Give back memory (`amount` MiB).
    ReleaseMemory = 5,
}

impl RequestKind {
    fn from_u8(v: u8) -> Result<Self> {
        Ok(match v {
            1 => Self::Cpus,
            2 => Self::Memory,
            3 => Self::Snapshot,
            4 => Self::ReleaseCpus,
            5 => Self::ReleaseMemory,
            _ => return Err(Error::Request),
        })
    }

    /// A name for logs and sysfs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Cpus => "cpus",
            Self::Memory => "memory",
            Self::Snapshot => "snapshot",
            Self::ReleaseCpus => "release-cpus",
            Self::ReleaseMemory => "release-memory",
        }
    }
}

/// Why a guest asks: what its projection said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Motive {
    /// Projected demand (milli-CPUs, or MiB).
    pub demand: u32,
    /// What it held when it asked (CPUs, or MiB).
    pub held: u32,
    /// Smoothed level (milli-CPUs, or MiB).
    pub level: u32,
    /// Smoothed trend per sample (same unit), signed.
    pub trend: i32,
    /// Horizon, in samples.
    pub horizon: u16,
    /// [`MOTIVE_MANUAL`], [`MOTIVE_PROJECTION`], ...
    pub source: u16,
}

/// The request was written by hand (sysfs).
pub const MOTIVE_MANUAL: u16 = 0;
/// The request came from the load projection.
pub const MOTIVE_PROJECTION: u16 = 1;
/// The guest lost track of the host's state.
pub const MOTIVE_RESYNC: u16 = 2;

impl Motive {
    /// The name of [`Motive::source`], as sysfs shows it after the number; a source this
    /// side does not know (the guest chooses it) is "unknown".
    pub const fn source_name(&self) -> &'static str {
        match self.source {
            MOTIVE_MANUAL => "manual",
            MOTIVE_PROJECTION => "projection",
            MOTIVE_RESYNC => "resync",
            _ => "unknown",
        }
    }
}

/// A guest's resource request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Chosen by the guest; echoed in the response.
    pub id: u32,
    /// What it asks for.
    pub kind: RequestKind,
    /// Preferred NUMA node; `None` for any (0xffff on the wire).
    pub node: Option<NodeId>,
    /// How many CPUs or MiB.
    pub amount: u32,
    /// Why.
    pub motive: Motive,
}

/// The outcome of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Everything asked for.
    Granted = 1,
    /// Part of it.
    Partial = 2,
    /// Nothing.
    Denied = 3,
    /// Not now: ask again later.
    Busy = 4,
}

impl Status {
    fn from_u8(v: u8) -> Result<Self> {
        Ok(match v {
            1 => Self::Granted,
            2 => Self::Partial,
            3 => Self::Denied,
            4 => Self::Busy,
            _ => return Err(Error::Range),
        })
    }

    /// A name for logs and sysfs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Partial => "partial",
            Self::Denied => "denied",
            Self::Busy => "busy",
        }
    }
}

/// Why a request got what it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Reason {
    /// Nothing limited it.
    None = 0,
    /// The guest's quota.
    Quota = 1,
    /// The free pool.
    NoFree = 2,
    /// The guest's request rate limit.
    RateLimited = 3,
    /// The request was malformed or asked for nothing.
    Invalid = 4,
    /// The guest does not hold what it offered to release.
    NotHeld = 5,
}

impl Reason {
    fn from_u16(v: u16) -> Result<Self> {
        Ok(match v {
            0 => Self::None,
            1 => Self::Quota,
            2 => Self::NoFree,
            3 => Self::RateLimited,
            4 => Self::Invalid,
            5 => Self::NotHeld,
            _ => return Err(Error::Range),
        })
    }

    /// A name for logs and sysfs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Quota => "quota",
            Self::NoFree => "no-free",
            Self::RateLimited => "rate-limited",
            Self::Invalid => "invalid",
            Self::NotHeld => "not-held",
        }
    }
}

/// The host's answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The request's id.
    pub id: u32,
    /// The request's kind.
    pub kind: RequestKind,
    /// The outcome.
    pub status: Status,
    /// Why.
    pub reason: Reason,
    /// How many CPUs or MiB changed hands.
    pub amount: u32,
    /// The generation of the update that reflects it (sent right after).
    pub generation: u64,
}

impl Response {
    /// The answer whose text is the longest there is, every number at its widest and the
    /// longest names: for tests that size the files that show an answer.
    pub const WIDEST: Response = Response {
        id: u32::MAX,
        kind: RequestKind::ReleaseMemory,
        status: Status::Partial,
        reason: Reason::RateLimited,
        amount: u32::MAX,
        generation: u64::MAX,
    };
}

/// A message the guest may receive.
#[derive(Debug)]
pub enum HostMsg<'a> {
    /// One part of a snapshot, with its runs still encoded.
    Snapshot(SnapshotPart, Runs<'a>),
    /// A delta, with its runs still encoded.
    Delta(DeltaHeader, Runs<'a>),
    /// A response.
    Response(Response),
}

/// A message the host may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMsg {
    /// A request.
    Request(Request),
    /// The guest applied this generation.
    Ack(u64),
}

/// Where the header's flags field sits.
const FLAGS_OFFSET: usize = 2;
/// Where the header's length field sits.
const LENGTH_OFFSET: usize = 4;

fn finish(w: &mut Writer<'_>) -> Result<usize> {
    let len = u32::try_from(w.len()).map_err(|_| Error::Length)?;
    w.patch_u32(LENGTH_OFFSET, len)?;
    Ok(w.len())
}

fn dims_decode(r: &mut Reader<'_>) -> Result<Dims> {
    let cpus = r.u32()?;
    let blocks = r.u32()?;
    let nodes = r.u32()?;
    r.reserved(4)?;
    let block_size = r.u64()?;
    let dims = Dims {
        cpus,
        blocks,
        nodes,
        block_size,
    };
    dims.validate()?;
    Ok(dims)
}

/// Decodes a message received by the guest. Checks the framing and the
/// fixed fields; runs are checked when applied (see [`super::guest`]).
pub fn decode_host_msg(msg: &[u8]) -> Result<HostMsg<'_>> {
    let (hdr, mut r) = Header::decode(msg)?;
    match hdr.ty {
        MSG_SNAPSHOT => {
            if hdr.flags & !SNAPSHOT_LAST != 0 {
                return Err(Error::Reserved);
            }
            let generation = r.u64()?;
            let guest = r.u32()?;
            let part = r.u16()?;
            r.reserved(2)?;
            let dims = dims_decode(&mut r)?;
            let runs = Runs::new(r.bytes(r.remaining())?)?;
            Ok(HostMsg::Snapshot(
                SnapshotPart {
                    generation,
                    guest,
                    part,
                    last: hdr.flags & SNAPSHOT_LAST != 0,
                    dims,
                },
                runs,
            ))
        }
        MSG_DELTA => {
            if hdr.flags != 0 {
                return Err(Error::Reserved);
            }
            let base = r.u64()?;
            let generation = r.u64()?;
            let runs = Runs::new(r.bytes(r.remaining())?)?;
            if runs.is_empty() {
                return Err(Error::Length);
            }
            Ok(HostMsg::Delta(DeltaHeader { base, generation }, runs))
        }
        MSG_RESPONSE => {
            if hdr.flags != 0 {
                return Err(Error::Reserved);
            }
            let id = r.u32()?;
            let kind = RequestKind::from_u8(r.u8()?)?;
            let status = Status::from_u8(r.u8()?)?;
            let reason = Reason::from_u16(r.u16()?)?;
            let amount = r.u32()?;
            r.reserved(4)?;
            let generation = r.u64()?;
            r.finish()?;
            Ok(HostMsg::Response(Response {
                id,
                kind,
                status,
                reason,
                amount,
                generation,
            }))
        }
        _ => Err(Error::MessageType),
    }
}

/// Decodes a message received by the host.
pub fn decode_guest_msg(msg: &[u8]) -> Result<GuestMsg> {
    let (hdr, mut r) = Header::decode(msg)?;
    if hdr.flags != 0 {
        return Err(Error::Reserved);
    }
    match hdr.ty {
        MSG_REQUEST => {
            let id = r.u32()?;
            let kind = RequestKind::from_u8(r.u8()?)?;
            r.reserved(1)?;
            // Checked against the host's node count by admission, which has it.
            let node = NodeId::new(r.u16()?);
            let amount = r.u32()?;
            let demand = r.u32()?;
            let held = r.u32()?;
            let level = r.u32()?;
            let trend = r.i32()?;
            let horizon = r.u16()?;
            let source = r.u16()?;
            r.finish()?;
            let snapshot = kind == RequestKind::Snapshot;
            if snapshot != (amount == 0) {
                return Err(Error::Request);
            }
            let motive = Motive {
                demand,
                held,
                level,
                trend,
                horizon,
                source,
            };
            Ok(GuestMsg::Request(Request {
                id,
                kind,
                node,
                amount,
                motive,
            }))
        }
        MSG_ACK => {
            let generation = r.u64()?;
            r.finish()?;
            Ok(GuestMsg::Ack(generation))
        }
        _ => Err(Error::MessageType),
    }
}

/// Encodes a request into `buf`, returning its length.
pub fn encode_request(req: &Request, buf: &mut [u8]) -> Result<usize> {
    let mut w = Writer::new(buf);
    Header {
        ty: MSG_REQUEST,
        flags: 0,
        len: 0,
    }
    .encode(&mut w)?;
    w.u32(req.id)?;
    w.u8(req.kind as u8)?;
    w.u8(0)?;
    w.u16(NodeId::wire(req.node))?;
    w.u32(req.amount)?;
    let m = &req.motive;
    w.u32(m.demand)?;
    w.u32(m.held)?;
    w.u32(m.level)?;
    w.i32(m.trend)?;
    w.u16(m.horizon)?;
    w.u16(m.source)?;
    finish(&mut w)
}

/// Encodes an ack into `buf`, returning its length.
pub fn encode_ack(generation: u64, buf: &mut [u8]) -> Result<usize> {
    let mut w = Writer::new(buf);
    Header {
        ty: MSG_ACK,
        flags: 0,
        len: 0,
    }
    .encode(&mut w)?;
    w.u64(generation)?;
    finish(&mut w)
}

/// Encodes a response into `buf`, returning its length.
pub fn encode_response(resp: &Response, buf: &mut [u8]) -> Result<usize> {
    let mut w = Writer::new(buf);
    Header {
        ty: MSG_RESPONSE,
        flags: 0,
        len: 0,
    }
    .encode(&mut w)?;
    w.u32(resp.id)?;
    w.u8(resp.kind as u8)?;
    w.u8(resp.status as u8)?;
    w.u16(resp.reason as u16)?;
    w.u32(resp.amount)?;
    w.u32(0)?;
    w.u64(resp.generation)?;
    finish(&mut w)
}

/// Builds a delta run by run.
pub struct DeltaWriter<'a> {
    w: Writer<'a>,
    runs: usize,
}

impl<'a> DeltaWriter<'a> {
    /// Starts a delta from `base` to `generation` in `buf`.
    pub fn new(buf: &'a mut [u8], base: u64, generation: u64) -> Result<Self> {
        let len = buf.len().min(MAX_MSG_SIZE);
        let buf = buf.get_mut(..len).ok_or(Error::NoSpace)?;
        let mut w = Writer::new(buf);
        Header {
            ty: MSG_DELTA,
            flags: 0,
            len: 0,
        }
        .encode(&mut w)?;
        w.u64(base)?;
        w.u64(generation)?;
        Ok(Self { w, runs: 0 })
    }

    /// Appends a run; [`Error::NoSpace`] when the message is full.
    pub fn push(&mut self, run: &Run) -> Result {
        run.encode(&mut self.w)?;
        self.runs = self.runs.saturating_add(1);
        Ok(())
    }

    /// Runs written so far.
    pub const fn runs(&self) -> usize {
        self.runs
    }

    /// Completes the message, returning its length. A delta carries at least
    /// one run.
    pub fn finish(mut self) -> Result<usize> {
        if self.runs == 0 {
            return Err(Error::Length);
        }
        finish(&mut self.w)
    }
}

/// Writes a snapshot of an inventory as a sequence of parts, each at most
/// [`MAX_MSG_SIZE`] bytes.
pub struct SnapshotEncoder {
    guest: u32,
    section: Section,
    at: usize,
    part: u16,
    done: bool,
}

impl SnapshotEncoder {
    /// A snapshot for the guest known by `guest`.
    pub const fn new(guest: u32) -> Self {
        Self {
            guest,
            section: Section::Cpus,
            at: 0,
            part: 0,
            done: false,
        }
    }

    /// Writes the next part into `buf` and returns its length, or `None`
    /// when the last part was written. The inventory must not change between
    /// parts (the host holds its lock across the whole snapshot).
    pub fn next_part<C, M, N>(
        &mut self,
        inv: &Inventory<C, M, N>,
        buf: &mut [u8],
    ) -> Result<Option<usize>>
    where
        C: Table<Cpu>,
        M: Table<MemBlock>,
        N: Table<Node>,
    {
        if self.done {
            return Ok(None);
        }
        let len = buf.len().min(MAX_MSG_SIZE);
        let buf = buf.get_mut(..len).ok_or(Error::NoSpace)?;
        let mut w = Writer::new(buf);
        Header {
            ty: MSG_SNAPSHOT,
            flags: 0,
            len: 0,
        }
        .encode(&mut w)?;
        let dims = inv.dims();
        w.u64(inv.generation)?;
        w.u32(self.guest)?;
        w.u16(self.part)?;
        w.u16(0)?;
        w.u32(dims.cpus)?;
        w.u32(dims.blocks)?;
        w.u32(dims.nodes)?;
        w.u32(0)?;
        w.u64(dims.block_size)?;
        let mut wrote = 0usize;
        loop {
            match next_run(inv.cpus(), inv.blocks(), inv.nodes(), self.section, self.at) {
                Some(run) => {
                    if w.room() < RUN_SIZE {
                        break;
                    }
                    run.encode(&mut w)?;
                    wrote = wrote.saturating_add(1);
                    self.at = self.at.saturating_add(run.count() as usize);
                }
                None => {
                    self.at = 0;
                    self.section = match self.section {
                        Section::Cpus => Section::Topology,
                        Section::Topology => Section::Blocks,
                        Section::Blocks => Section::Nodes,
                        Section::Nodes => {
                            self.done = true;
                            break;
                        }
                    };
                }
            }
        }
        if wrote == 0 && !self.done {
            // Not even one run fits: the buffer is too small to make progress.
            return Err(Error::NoSpace);
        }
        if self.done {
            w.patch_u16(FLAGS_OFFSET, SNAPSHOT_LAST)?;
        }
        self.part = self.part.checked_add(1).ok_or(Error::TooLarge)?;
        finish(&mut w).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            id: 42,
            kind: RequestKind::Cpus,
            node: NodeId::new(1),
            amount: 2,
            motive: Motive {
                demand: 3500,
                held: 2,
                level: 2900,
                trend: -12,
                horizon: 5,
                source: 1,
            },
        }
    }

    #[test]
    fn request_round_trip() -> Result {
        let mut buf = [0u8; 64];
        let n = encode_request(&request(), &mut buf)?;
        assert_eq!(n, HEADER_SIZE + REQUEST_BODY_SIZE);
        assert_eq!(
            decode_guest_msg(buf.get(..n).ok_or(Error::Length)?)?,
            GuestMsg::Request(request())
        );
        // Any node is 0xffff on the wire.
        let any = Request {
            node: None,
            ..request()
        };
        let n = encode_request(&any, &mut buf)?;
        assert_eq!(buf.get(14..16), Some(&[0xff, 0xff][..]));
        assert_eq!(
            decode_guest_msg(buf.get(..n).ok_or(Error::Length)?)?,
            GuestMsg::Request(any)
        );
        Ok(())
    }

    #[test]
    fn header_checks() -> Result {
        let mut buf = [0u8; 64];
        let n = encode_ack(7, &mut buf)?;
        let msg = buf.get(..n).ok_or(Error::Length)?;
        assert_eq!(decode_guest_msg(msg)?, GuestMsg::Ack(7));
        // Length field must match what arrived.
        assert_eq!(
            decode_guest_msg(buf.get(..n + 1).ok_or(Error::Length)?),
            Err(Error::Length)
        );
        let mut bad = [0u8; 16];
        bad.copy_from_slice(msg);
        bad[0] = 2;
        assert_eq!(decode_guest_msg(&bad), Err(Error::Version));
        bad[0] = VERSION;
        bad[1] = MSG_DELTA;
        assert_eq!(decode_guest_msg(&bad), Err(Error::MessageType));
        bad[1] = MSG_ACK;
        bad[2] = 1;
        assert_eq!(decode_guest_msg(&bad), Err(Error::Reserved));
        // The guest does not accept the guest's messages.
        assert!(matches!(decode_host_msg(msg), Err(Error::MessageType)));
        Ok(())
    }

    #[test]
    fn snapshot_request_carries_no_amount() -> Result {
        let mut buf = [0u8; 64];
        let req = Request {
            kind: RequestKind::Snapshot,
            ..request()
        };
        let n = encode_request(&req, &mut buf)?;
        assert_eq!(
            decode_guest_msg(buf.get(..n).ok_or(Error::Length)?),
            Err(Error::Request)
        );
        let n = encode_request(
            &Request {
                kind: RequestKind::Cpus,
                amount: 0,
                ..req
            },
            &mut buf,
        )?;
        assert_eq!(
            decode_guest_msg(buf.get(..n).ok_or(Error::Length)?),
            Err(Error::Request)
        );
        Ok(())
    }

    #[test]
    fn response_round_trip() -> Result {
        let resp = Response {
            id: 9,
            kind: RequestKind::Memory,
            status: Status::Partial,
            reason: Reason::Quota,
            amount: 256,
            generation: 1234,
        };
        let mut buf = [0u8; 64];
        let n = encode_response(&resp, &mut buf)?;
        match decode_host_msg(buf.get(..n).ok_or(Error::Length)?)? {
            HostMsg::Response(got) => assert_eq!(got, resp),
            other => {
                return Err(if matches!(other, HostMsg::Delta(..)) {
                    Error::Range
                } else {
                    Error::State
                })
            }
        }
        Ok(())
    }

    #[test]
    fn oversized_messages_are_rejected() {
        let big = [0u8; MAX_MSG_SIZE + 1];
        assert_eq!(decode_guest_msg(&big), Err(Error::Length));
        assert!(matches!(decode_host_msg(&big), Err(Error::Length)));
    }
}
