// SPDX-License-Identifier: GPL-2.0

// The core's modules: the one list, included by `lib.rs` (the native crate) and
// by `kernel.rs` (the kernel modules' copy).

pub mod admission;
pub mod delta;
pub mod device;
pub mod diff;
pub mod error;
pub mod guest;
pub mod idlist;
pub mod inventory;
pub mod message;
pub mod placement;
pub mod projection;
pub mod run;
pub mod wire;
