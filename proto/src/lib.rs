// SPDX-License-Identifier: GPL-2.0

//! hwconvey's protocol and decision core.
//!
//! One crate, three users: `hwconvey_host.ko` and `hwconvey_guest.ko` include
//! its modules as kernel code, and the tools link it as a normal crate. It
//! needs no heap: encoders write into caller buffers, and the inventory keeps
//! its tables in caller-provided storage (see [`inventory::Table`]).
//!
//! Everything that crosses the device comes from a party that may be hostile,
//! so no decoder here panics or indexes out of bounds (the crate denies
//! `indexing_slicing`, `unwrap_used`, `panic` and unchecked arithmetic), and
//! every function that applies a message validates all of it first: a rejected
//! message leaves state as it was.
//!
//! Modules refer to each other through `super::` so that the kernel modules
//! can include them under a `proto` module of their own.

#![cfg_attr(not(feature = "std"), no_std)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

include!("modules.rs");
