// SPDX-License-Identifier: GPL-2.0

//! The host's VMs, as KVM's lifecycle notifier tells them, and the hwconvey device each owns.
//!
//! A VM owns a device when its VMM bound its address space to the device (vhost-vdpa's
//! `VHOST_SET_OWNER`, which the device sees as `bind_mm`): the device's owner and the VM have
//! the same `mm`. KVM tells the host of every VM, with a device or without; one without costs
//! a list entry and an address comparison per event, and nothing of it is ever pinned.
//!
//! The threads that run a linked VM's vCPUs are pinned to the CPUs allocated to the device's
//! guest ([`crate::Host::pin_vcpus`]), when the vCPU is created or moves to another thread, and
//! after every change of the allocation.

use crate::{proto::placement::Place, Host};
use kernel::{
    kvm::{self, VmId},
    mm::Mm,
    prelude::*,
    sync::{aref::ARef, Arc},
    task::Task,
};

/// One vCPU of a VM.
pub(crate) struct Vcpu {
    /// Its id (`KVM_CREATE_VCPU`'s argument).
    pub(crate) id: u32,
    /// The thread that runs it, as far as KVM has told: the one that created it, then the one
    /// that last entered `KVM_RUN` for it.
    pub(crate) thread: ARef<Task>,
    /// Where the host placed it, if it did. Kept when the vCPU moves to another thread, so
    /// that the new thread goes where the old one was.
    pub(crate) place: Option<Place>,
    /// Whether `thread` runs at `place` (the host pinned this thread there).
    pub(crate) applied: bool,
}

/// One VM.
pub(crate) struct Vm {
    pub(crate) id: VmId,
    /// A number for users (sysfs): KVM's own identity is a kernel address.
    pub(crate) seq: u64,
    /// Its address space, grabbed: the identity that links it to a device.
    mm: ARef<Mm>,
    pub(crate) vcpus: KVec<Vcpu>,
    /// The allocation its vCPUs were last placed on, ascending.
    pub(crate) placed_on: KVec<u32>,
}

impl Vm {
    /// Its address space.
    pub(crate) fn mm(&self) -> &ARef<Mm> {
        &self.mm
    }

    /// The identity of its address space, as [`crate::device::DevInfo::owner_mm`] holds a
    /// device owner's.
    pub(crate) fn mm_id(&self) -> usize {
        self.mm.as_raw() as usize
    }
}

/// Every VM KVM told of since the module loaded, in creation order.
#[derive(Default)]
pub(crate) struct Vms {
    pub(crate) list: KVec<Vm>,
    next_seq: u64,
}

impl Vms {
    pub(crate) fn by_mm(&self, mm_id: usize) -> Option<&Vm> {
        self.list.iter().find(|v| v.mm_id() == mm_id)
    }

    /// Records that vCPU `id` of `vm` runs in `thread`; returns the VM's address-space
    /// identity, or `None` for a VM the host does not know (created before the module loaded).
    /// `created`: KVM announces a creation after the vCPU's fd is installed, so another thread
    /// may already have run it: a creation never replaces the thread already known.
    fn vcpu_thread(
        &mut self,
        vm: VmId,
        id: u32,
        thread: &Task,
        created: bool,
    ) -> Result<Option<usize>> {
        let Some(v) = self.list.iter_mut().find(|v| v.id == vm) else {
            return Ok(None);
        };
        match v.vcpus.iter_mut().find(|c| c.id == id) {
            Some(_) if created => {}
            // The new thread's affinity is whatever the VMM gave it: it goes where the vCPU was.
            Some(c) => {
                c.thread = ARef::from(thread);
                c.applied = false;
            }
            None => v.vcpus.push(
                Vcpu {
                    id,
                    thread: ARef::from(thread),
                    place: None,
                    applied: false,
                },
                GFP_KERNEL,
            )?,
        }
        Ok(Some(v.mm_id()))
    }
}

/// KVM's lifecycle events, into the host's VM table.
pub(crate) struct KvmEvents {
    host: Arc<Host>,
}

impl KvmEvents {
    pub(crate) fn new(host: &Arc<Host>) -> Self {
        Self { host: host.clone() }
    }

    fn vcpu_thread(&self, vm: VmId, id: u32, thread: &Task, created: bool) {
        // The table's lock is dropped before anything else is taken (lock order).
        let known = self.host.vms.lock().vcpu_thread(vm, id, thread, created);
        let linked = match known {
            Ok(Some(mm_id)) => self.host.owns_a_device(mm_id),
            Ok(None) => false,
            Err(_) => {
                pr_warn!("out of memory: vCPU {} of a VM is not tracked\n", id);
                false
            }
        };
        if linked {
            self.host.pin_vcpus();
        }
    }
}

impl kvm::Notifier for KvmEvents {
    fn vm_created(&self, vm: VmId, mm: &Mm, _creator: &Task) {
        let mut vms = self.host.vms.lock();
        vms.next_seq = vms.next_seq.wrapping_add(1);
        let v = Vm {
            id: vm,
            seq: vms.next_seq,
            mm: ARef::from(mm),
            vcpus: KVec::new(),
            placed_on: KVec::new(),
        };
        if vms.list.push(v, GFP_KERNEL).is_err() {
            pr_warn!("out of memory: a VM is not tracked\n");
        }
    }

    fn vm_destroying(&self, vm: VmId, mm: &Mm) {
        let mm_id = mm.as_raw() as usize;
        // Only a VM the host knew, and the last of its address space (a VMM may make scratch
        // VMs beside its real one), takes its device's guest down with it.
        let ends_guest = {
            let vms = self.host.vms.lock();
            let known = vms.list.iter().any(|v| v.id == vm);
            known && vms.list.iter().filter(|v| v.mm_id() == mm_id).count() == 1
        };
        if ends_guest {
            self.host.vm_destroyed(mm_id);
        }
        // The VM leaves the table (and its device's `vm` file) once that is done.
        let gone = {
            let mut vms = self.host.vms.lock();
            let i = vms.list.iter().position(|v| v.id == vm);
            i.and_then(|i| vms.list.remove(i).ok())
        };
        // The thread and address-space references go outside the lock.
        drop(gone);
    }

    fn vcpu_created(&self, vm: VmId, _mm: &Mm, vcpu_id: u32, thread: &Task) {
        self.vcpu_thread(vm, vcpu_id, thread, true);
    }

    fn vcpu_thread_changed(&self, vm: VmId, _mm: &Mm, vcpu_id: u32, thread: &Task) {
        self.vcpu_thread(vm, vcpu_id, thread, false);
    }
}
