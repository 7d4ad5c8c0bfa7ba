// SPDX-License-Identifier: GPL-2.0

//! The protocol core as the kernel modules compile it.
//!
//! `lib.rs` is the root of the native crate; the modules include this file
//! instead (`#[path = "../proto/src/kernel.rs"] pub mod proto;`), which lists
//! the same modules plus the kernel's table storage.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

pub mod admission;
pub mod delta;
pub mod device;
pub mod diff;
pub mod error;
pub mod guest;
pub mod idlist;
pub mod in_kernel;
pub mod inventory;
pub mod message;
pub mod placement;
pub mod projection;
pub mod run;
pub mod wire;
