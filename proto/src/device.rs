// SPDX-License-Identifier: GPL-2.0

//! The hwconvey virtio device: id, queues, feature bits and configuration
//! layout (see `Documentation/protocol.rst`).

/// Virtio device id. Not allocated by OASIS: taken from the unassigned range
/// below the ids used for nonstandard devices, to be requested before any
/// upstream submission.
pub const VIRTIO_ID_HWCONVEY: u32 = 56;

/// Device to driver: snapshot parts, deltas, responses.
pub const EVENTQ: u16 = 0;
/// Driver to device: requests and acks.
pub const REQUESTQ: u16 = 1;
/// Number of virtqueues.
pub const NUM_QUEUES: u16 = 2;

/// The device sends deltas (without it, only snapshots).
pub const F_DELTA: u32 = 0;
/// The driver may send resource requests.
pub const F_REQUEST: u32 = 1;
/// The driver acks the generations it applied.
pub const F_ACK: u32 = 2;

/// Feature bits this implementation offers and accepts.
pub const FEATURES: u64 = (1 << F_DELTA) | (1 << F_REQUEST) | (1 << F_ACK);

/// Configuration space: `le32 max_msg_size`.
pub const CONFIG_MAX_MSG_SIZE: usize = 0;
/// Configuration space: `le32 guest_id`.
pub const CONFIG_GUEST_ID: usize = 4;
/// Configuration space: `le64 generation`.
pub const CONFIG_GENERATION: usize = 8;
/// Size of the configuration space.
pub const CONFIG_SIZE: usize = 16;
