// SPDX-License-Identifier: GPL-2.0

//! Why a message or a request was rejected.

/// Every way the core rejects input.
///
/// The kernel edge (`in_kernel.rs`) maps each to one of the kernel's own error codes; the
/// core itself names no errno, whose values differ between architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The bytes ended before the structure did.
    Truncated,
    /// Bytes left over after a complete structure.
    Trailing,
    /// A protocol version this side does not speak.
    Version,
    /// A message type unknown in this direction.
    MessageType,
    /// The length field disagrees with the buffer, or exceeds the maximum.
    Length,
    /// A reserved field or bit is not zero.
    Reserved,
    /// A run of an unknown kind.
    RunKind,
    /// An index, count or node outside the advertised dimensions.
    Range,
    /// A state combination that cannot exist (online but not present, an
    /// offline component owned by a guest, ...).
    State,
    /// Snapshot runs that do not cover every component exactly once, in order.
    Coverage,
    /// A snapshot part out of sequence, or a part of another generation.
    Sequence,
    /// A delta whose base is not the stored generation: ask for a snapshot.
    Gap,
    /// A generation that does not move forward.
    Stale,
    /// Dimensions beyond the protocol limits.
    TooLarge,
    /// The output buffer is too small.
    NoSpace,
    /// Storage for the tables could not be allocated.
    NoMemory,
    /// A request that asks for nothing, or for an unknown kind.
    Request,
}

impl Error {
    /// A short name for logs and counters.
    pub const fn name(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::Trailing => "trailing bytes",
            Error::Version => "version",
            Error::MessageType => "message type",
            Error::Length => "length",
            Error::Reserved => "reserved not zero",
            Error::RunKind => "run kind",
            Error::Range => "out of range",
            Error::State => "impossible state",
            Error::Coverage => "coverage",
            Error::Sequence => "sequence",
            Error::Gap => "generation gap",
            Error::Stale => "stale generation",
            Error::TooLarge => "too large",
            Error::NoSpace => "no space",
            Error::NoMemory => "no memory",
            Error::Request => "bad request",
        }
    }
}

/// The crate's result type.
pub type Result<T = ()> = core::result::Result<T, Error>;
