// SPDX-License-Identifier: GPL-2.0

//! What the core needs from the kernel: table storage in kernel vectors,
//! errors as kernel errors, and node ids in the kernel's formatting macros.

use kernel::alloc::{Allocator, KVVec, Vec};
use kernel::prelude::GFP_KERNEL;

use super::error::{Error, Result};
use super::guest::GuestCopy;
use super::inventory::{Cpu, Inventory, MemBlock, Node, NodeId, NodeText, Table};

impl<T: Copy + Default, A: Allocator> Table<T> for Vec<T, A> {
    fn resize_to(&mut self, len: usize) -> Result {
        // Tables are resized in process context, under a mutex at most.
        self.resize(len, T::default(), GFP_KERNEL)
            .map_err(|_| Error::NoMemory)
    }
}

/// An inventory in `kvmalloc`ed tables: a large host's tables are more than
/// `kmalloc` reliably gives.
pub type KInventory = Inventory<KVVec<Cpu>, KVVec<MemBlock>, KVVec<Node>>;

/// An empty [`KInventory`].
pub fn new_inventory() -> Result<KInventory> {
    Inventory::new(KVVec::new(), KVVec::new(), KVVec::new())
}

/// A guest's copy of the host inventory in kernel tables.
pub type KGuestCopy = GuestCopy<KVVec<Cpu>, KVVec<MemBlock>, KVVec<Node>>;

/// An empty [`KGuestCopy`].
pub fn new_guest_copy() -> Result<KGuestCopy> {
    Ok(GuestCopy::new(new_inventory()?, new_inventory()?))
}

/// Text written with `write!` into a growing kernel vector: a long list whole, as its reader
/// gets it piece by piece (the modules' KUnit suites render their sysfs lists into it).
#[derive(Default)]
pub struct Text(pub KVVec<u8>);

impl core::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0
            .extend_from_slice(s.as_bytes(), GFP_KERNEL)
            .map_err(|_| core::fmt::Error)
    }
}

impl Text {
    /// The text, if it is UTF-8 (what `write!` produces always is).
    pub fn as_str(&self) -> core::result::Result<&str, core::str::Utf8Error> {
        core::str::from_utf8(&self.0)
    }
}

// The kernel's formatting macros (`pr_info!` and the like) take `kernel::fmt::Display`, which
// the kernel implements for core's types only: node ids print the same way there.
impl kernel::fmt::Display for NodeId {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

impl kernel::fmt::Display for NodeText {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

impl From<Error> for kernel::error::Error {
    fn from(e: Error) -> Self {
        use kernel::error::code;
        match e {
            Error::NoSpace => code::ENOSPC,
            Error::NoMemory => code::ENOMEM,
            Error::TooLarge => code::E2BIG,
            Error::Gap | Error::Stale => code::ESTALE,
            Error::Range => code::ERANGE,
            Error::Truncated | Error::Trailing | Error::Length => code::EBADMSG,
            Error::Version | Error::MessageType => code::EPROTO,
            Error::Reserved
            | Error::RunKind
            | Error::State
            | Error::Coverage
            | Error::Sequence
            | Error::Request => code::EINVAL,
        }
    }
}
