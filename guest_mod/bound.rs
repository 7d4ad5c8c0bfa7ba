// SPDX-License-Identifier: GPL-2.0

//! The devices the driver bound, in the order they bound: what the module's directory links to
//! and what its debugfs files act on.

use crate::device::Guest;
use kernel::{
    device, new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
    sysfs::{Dir, Link, Notifier},
    virtio::virtqueue::Virtqueues,
};

/// A bound device, as the module's directory knows it.
struct Entry {
    vqs: Arc<Virtqueues<Guest>>,
    /// `/sys/kernel/hwconvey/guest/<device>`, to the device's directory and files; `None` if
    /// the directory was gone or has an entry of that name.
    link: Option<Link>,
}

/// The module's directory, `/sys/kernel/hwconvey/guest/`, for the time it exists.
struct Opened {
    dir: Dir<BoundDevices>,
    /// Wakes those who poll the directory's `devices` file.
    devices: Notifier,
}

/// The bound devices and the module's directory: the driver-wide data, shared by the driver
/// (its [`virtio::Registration`](kernel::virtio::Registration)'s context), the module's files
/// and its debugfs files.
///
/// # Locks
///
/// `inner` is a leaf: nothing else is taken under it but sysfs's own locks, to create or remove
/// a link. Nothing under it removes a file or a directory (that waits for running callbacks,
/// and the `devices` file's callback takes `inner`): those are dropped after the lock.
#[pin_data]
pub(crate) struct BoundDevices {
    #[pin]
    inner: Mutex<Inner>,
}

/// What [`BoundDevices`]' lock guards.
struct Inner {
    /// The bound devices, in the order they bound.
    bound: KVec<Entry>,
    /// The module's directory, while it exists: it holds a reference to `self` through its
    /// files' data, which [`BoundDevices::close`] drops.
    opened: Option<Opened>,
}

impl BoundDevices {
    /// No device, and no directory yet.
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                inner <- new_mutex!(Inner {
                    bound: KVec::new(),
                    opened: None,
                }),
            }),
            GFP_KERNEL,
        )
    }

    /// Records `dir`, the module's directory, whose `devices` file `devices` wakes: devices
    /// bound from now on get a link in it.
    pub(crate) fn open(&self, dir: Dir<BoundDevices>, devices: Notifier) {
        let old = self.inner.lock().opened.replace(Opened { dir, devices });
        drop(old);
    }

    /// Removes the links, then the module's directory.
    pub(crate) fn close(&self) {
        let opened = {
            let mut inner = self.inner.lock();
            // The links first: they are in the directory. Removing a link waits for no
            // callback, so they may go under the lock.
            for e in inner.bound.iter_mut() {
                e.link = None;
            }
            inner.opened.take()
        };
        drop(opened);
    }

    /// Records `vqs`, the queues of `dev`, which the driver just bound, with a link to its
    /// files. Out of memory, nothing is recorded and the binding fails.
    pub(crate) fn attach(&self, dev: &device::Device, vqs: &Arc<Virtqueues<Guest>>) -> Result {
        let mut inner = self.inner.lock();
        inner.bound.reserve(1, GFP_KERNEL)?;
        let link = inner.opened.as_ref().and_then(|o| {
            o.dir
                .link(dev.name(), dev)
                .inspect_err(|e| {
                    dev_warn!(dev, "no link in /sys/kernel/hwconvey/guest: {:?}\n", e);
                })
                .ok()
        });
        // Within the capacity reserved above.
        let _ = inner.bound.push_within_capacity(Entry {
            vqs: vqs.clone(),
            link,
        });
        if let Some(o) = inner.opened.as_ref() {
            o.devices.notify();
        }
        Ok(())
    }

    /// Forgets `vqs`, with its link.
    pub(crate) fn detach(&self, vqs: &Virtqueues<Guest>) {
        let mut inner = self.inner.lock();
        // The link goes under the lock, as in `close`: once the directory is closed, no link
        // is left in it.
        if let Some(i) = inner.bound.iter().position(|e| core::ptr::eq(&*e.vqs, vqs)) {
            let _ = inner.bound.remove(i);
        }
        if let Some(o) = inner.opened.as_ref() {
            o.devices.notify();
        }
    }

    /// How many devices are bound.
    pub(crate) fn count(&self) -> usize {
        self.inner.lock().bound.len()
    }

    /// The device that bound first of those bound, which the debugfs files act on; `ENODEV`
    /// without one.
    pub(crate) fn first(&self) -> Result<Arc<Virtqueues<Guest>>> {
        self.inner
            .lock()
            .bound
            .first()
            .map(|e| e.vqs.clone())
            .ok_or(ENODEV)
    }
}
