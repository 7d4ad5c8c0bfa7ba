// SPDX-License-Identifier: GPL-2.0

//! The protocol core as the kernel modules compile it.
//!
//! `lib.rs` is the root of the native crate; the modules include this file
//! instead (`#[path = "../proto/src/kernel.rs"] pub mod proto;`), which includes
//! the same module list (`modules.rs`) plus the kernel's table storage.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

include!("modules.rs");

/// Table storage and errors as the kernel has them.
pub mod in_kernel;
