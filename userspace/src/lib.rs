// SPDX-License-Identifier: GPL-2.0

//! hwconvey's user tools.
//!
//! - `hwconveyctl` reads and sets the modules' knobs under
//!   `/sys/kernel/hwconvey`, prints them as tables or JSON, and watches for
//!   changes.
//! - `hwconvey-vmm-agent` does what only the VMM can: gives a QEMU VM the
//!   vCPUs and RAM the host module allocated to it, over QMP.
//!
//! Both read the modules' range lists with the protocol crate's parser, the
//! one the host module writes them with.

pub mod affinity;
pub mod agent;
pub mod plan;
pub mod qmp;
pub mod show;
pub mod text;
pub mod tree;
pub mod watch;
