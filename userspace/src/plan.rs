// SPDX-License-Identifier: GPL-2.0

//! What the VMM must do so that a VM matches what the host allocated to it.
//!
//! The host module decides which host CPUs and how much memory a guest holds;
//! only the VMM can give the VM vCPUs and RAM to use them. This module turns
//! the allocation and what QEMU reports into actions, without doing any: the
//! agent applies them over QMP. Planning is idempotent: once the actions are
//! done, planning again yields nothing.
//!
//! The agent only ever removes what it added itself (ids with its prefixes):
//! the VM's boot vCPUs and RAM are the VMM's.

use serde_json::{Map, Value};

/// Id prefix of the vCPUs the agent hot-adds.
pub const VCPU_PREFIX: &str = "hwc-vcpu-";
/// Id prefix of the DIMMs the agent hot-adds; their backends add "-ram".
pub const DIMM_PREFIX: &str = "hwc-mem-";
/// Memory is added in multiples of the guest's memory block size (x86: 128 MiB),
/// the unit the guest can online.
pub const MEMORY_GRANULE_MIB: u64 = 128;

/// What the host allocated to the VM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    /// The host CPUs, ascending.
    pub host_cpus: Vec<u32>,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The NUMA nodes of the allocated memory blocks, ascending.
    pub memory_nodes: Vec<u32>,
}

/// A vCPU slot, from `query-hotpluggable-cpus`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// The device type to `device_add` for it.
    pub driver: String,
    /// Its topology properties (socket-id, core-id, thread-id, ...).
    pub props: Map<String, Value>,
    /// Where the vCPU in it lives, if one is plugged.
    pub qom_path: Option<String>,
}

/// A running vCPU, from `query-cpus-fast`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuThread {
    /// QEMU's vCPU index.
    pub cpu_index: u64,
    /// The host thread that runs it.
    pub thread_id: i32,
}

/// A DIMM the agent added, from `query-memory-devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dimm {
    /// Its device id.
    pub id: String,
    /// Its size in MiB.
    pub size_mib: u64,
}

/// One step towards the allocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `device_add` a vCPU into a free slot.
    AddVcpu {
        /// The new device's id.
        id: String,
        /// The slot's device type.
        driver: String,
        /// The slot's topology properties.
        props: Map<String, Value>,
    },
    /// `device_del` a vCPU the agent added (the guest must let it go).
    RemoveVcpu {
        /// Its id.
        id: String,
    },
    /// Pin a vCPU thread to one host CPU.
    Pin {
        /// QEMU's vCPU index.
        cpu_index: u64,
        /// The thread.
        thread_id: i32,
        /// The host CPU it gets.
        host_cpu: u32,
    },
    /// Add RAM: a backend object and a `pc-dimm` on it.
    AddMemory {
        /// The DIMM's id; the backend's is `<dimm>-ram`.
        dimm: String,
        /// Size in MiB.
        size_mib: u64,
        /// Host nodes to bind the backend to (empty: no binding).
        host_nodes: Vec<u32>,
    },
    /// `device_del` a DIMM the agent added (the guest must offline it).
    RemoveMemory {
        /// Its id.
        dimm: String,
    },
    /// `object-del` a backend whose DIMM is gone.
    DropBackend {
        /// The backend's id.
        id: String,
    },
}

/// The number in an id the agent made ("hwc-vcpu-3" → 3).
fn seq_of(id: &str, prefix: &str) -> Option<u64> {
    id.strip_prefix(prefix)?.parse().ok()
}

/// The id of a device plugged with `device_add id=...`.
fn peripheral_id(qom_path: &str) -> Option<&str> {
    qom_path.strip_prefix("/machine/peripheral/")
}

/// A slot's place in the topology, for filling slots lowest first.
fn topology_key(slot: &Slot) -> [i64; 5] {
    ["socket-id", "die-id", "cluster-id", "core-id", "thread-id"]
        .map(|k| slot.props.get(k).and_then(Value::as_i64).unwrap_or(0))
}

/// vCPUs to add or remove so that the VM has one per allocated host CPU,
/// never fewer than it booted with.
pub fn vcpus(allocated: usize, slots: &[Slot]) -> Vec<Action> {
    let plugged: Vec<&Slot> = slots.iter().filter(|s| s.qom_path.is_some()).collect();
    let mut ours: Vec<(u64, &str)> = plugged
        .iter()
        .filter_map(|s| peripheral_id(s.qom_path.as_deref()?))
        .filter_map(|id| Some((seq_of(id, VCPU_PREFIX)?, id)))
        .collect();
    let boot = plugged.len() - ours.len();
    let target = allocated.max(boot).min(slots.len());
    let mut actions = Vec::new();
    if target > plugged.len() {
        let mut free: Vec<&Slot> = slots.iter().filter(|s| s.qom_path.is_none()).collect();
        free.sort_by_key(|s| topology_key(s));
        let first = ours.iter().map(|(n, _)| n + 1).max().unwrap_or(0);
        let wanted = free.into_iter().take(target - plugged.len());
        for (n, slot) in (first..).zip(wanted) {
            actions.push(Action::AddVcpu {
                id: format!("{VCPU_PREFIX}{n}"),
                driver: slot.driver.clone(),
                props: slot.props.clone(),
            });
        }
    } else if target < plugged.len() {
        // Newest first: the guest hands back what it got last.
        ours.sort_unstable_by_key(|o| std::cmp::Reverse(o.0));
        for (_, id) in ours.into_iter().take(plugged.len() - target) {
            actions.push(Action::RemoveVcpu { id: id.to_owned() });
        }
    }
    actions
}

/// Pins each of the first vCPUs (by index), one per allocated host CPU, to
/// a CPU of its own (`host_cpus` ascending, no duplicates; `pinned` tells a
/// thread's current CPUs). Pins are stable: a vCPU already pinned to a CPU
/// that is still allocated to the VM keeps it, so when the host replaces one
/// CPU only one vCPU moves. The others get the remaining CPUs in order. vCPUs
/// beyond the allocation are left alone. Nothing when vCPUs share a thread
/// (single-threaded TCG): pinning one would pin them all.
pub fn pins(
    threads: &[VcpuThread],
    host_cpus: &[u32],
    pinned: impl Fn(i32) -> Option<Vec<u32>>,
) -> Vec<Action> {
    let mut sorted = threads.to_vec();
    sorted.sort_by_key(|t| t.cpu_index);
    let mut tids: Vec<i32> = sorted.iter().map(|t| t.thread_id).collect();
    tids.sort_unstable();
    tids.dedup();
    if tids.len() != sorted.len() {
        return Vec::new();
    }
    sorted.truncate(host_cpus.len());
    let mut taken: Vec<u32> = Vec::new();
    let keeps: Vec<bool> = sorted
        .iter()
        .map(|t| match pinned(t.thread_id).as_deref() {
            Some(&[cpu]) if host_cpus.contains(&cpu) && !taken.contains(&cpu) => {
                taken.push(cpu);
                true
            }
            _ => false,
        })
        .collect();
    let mut free = host_cpus.iter().filter(|c| !taken.contains(c));
    sorted
        .iter()
        .zip(keeps)
        .filter(|(_, keep)| !keep)
        .filter_map(|(t, _)| {
            Some(Action::Pin {
                cpu_index: t.cpu_index,
                thread_id: t.thread_id,
                host_cpu: *free.next()?,
            })
        })
        .collect()
}

/// DIMMs to add or remove so that the RAM the agent added matches the
/// allocated memory, in whole granules; `backends` are the agent's backend
/// objects, of which those no DIMM uses any more are dropped.
pub fn memory(alloc: &Allocation, dimms: &[Dimm], backends: &[String]) -> Vec<Action> {
    let mut ours: Vec<(u64, &Dimm)> = dimms
        .iter()
        .filter_map(|d| Some((seq_of(&d.id, DIMM_PREFIX)?, d)))
        .collect();
    let have: u64 = ours.iter().map(|(_, d)| d.size_mib).sum();
    let want = alloc.memory_mib.div_ceil(MEMORY_GRANULE_MIB) * MEMORY_GRANULE_MIB;
    let mut actions: Vec<Action> = backends
        .iter()
        .filter(|b| {
            b.strip_suffix("-ram")
                .is_some_and(|dimm| seq_of(dimm, DIMM_PREFIX).is_some())
                && !ours.iter().any(|(_, d)| format!("{}-ram", d.id) == **b)
        })
        .map(|b| Action::DropBackend { id: b.clone() })
        .collect();
    if want > have {
        let next = ours.iter().map(|(n, _)| n + 1).max().unwrap_or(0);
        // A backend of a DIMM still going away may hold the next number.
        let next = (next..)
            .find(|n| {
                !backends
                    .iter()
                    .any(|b| *b == format!("{DIMM_PREFIX}{n}-ram"))
            })
            .unwrap_or(next);
        actions.push(Action::AddMemory {
            dimm: format!("{DIMM_PREFIX}{next}"),
            size_mib: want - have,
            host_nodes: alloc.memory_nodes.clone(),
        });
    } else if want < have {
        ours.sort_unstable_by_key(|o| std::cmp::Reverse(o.0));
        let mut left = have;
        for (_, d) in ours {
            if left - d.size_mib < want {
                break;
            }
            left -= d.size_mib;
            actions.push(Action::RemoveMemory { dimm: d.id.clone() });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slot(core: i64, plugged: Option<&str>) -> Slot {
        let Value::Object(props) = json!({"socket-id": 0, "core-id": core, "thread-id": 0}) else {
            unreachable!()
        };
        Slot {
            driver: "qemu64-x86_64-cpu".into(),
            props,
            qom_path: plugged.map(str::to_owned),
        }
    }

    /// Four slots as QEMU lists them (highest first), core 0 booted.
    fn slots(ours: &[(i64, &str)]) -> Vec<Slot> {
        (0..4)
            .rev()
            .map(|core| {
                if core == 0 {
                    slot(0, Some("/machine/unattached/device[0]"))
                } else if let Some((_, id)) = ours.iter().find(|(c, _)| *c == core) {
                    slot(core, Some(&format!("/machine/peripheral/{id}")))
                } else {
                    slot(core, None)
                }
            })
            .collect()
    }

    fn added(actions: &[Action]) -> Vec<(String, i64)> {
        actions
            .iter()
            .map(|a| match a {
                Action::AddVcpu { id, props, .. } => {
                    (id.clone(), props["core-id"].as_i64().unwrap())
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn adds_vcpus_lowest_slot_first() {
        let a = vcpus(3, &slots(&[]));
        assert_eq!(
            added(&a),
            [("hwc-vcpu-0".into(), 1), ("hwc-vcpu-1".into(), 2)]
        );
        let a = vcpus(4, &slots(&[(1, "hwc-vcpu-0")]));
        assert_eq!(
            added(&a),
            [("hwc-vcpu-1".into(), 2), ("hwc-vcpu-2".into(), 3)]
        );
        // More than the VM can hold: fill it, no more.
        assert_eq!(vcpus(9, &slots(&[])).len(), 3);
    }

    #[test]
    fn removes_only_its_own_vcpus_newest_first() {
        let s = slots(&[(1, "hwc-vcpu-4"), (2, "hwc-vcpu-7")]);
        assert_eq!(vcpus(3, &s), []);
        assert_eq!(
            vcpus(2, &s),
            [Action::RemoveVcpu {
                id: "hwc-vcpu-7".into()
            }]
        );
        // Never below the boot vCPUs, and a vCPU someone else added stays.
        let mut s = slots(&[(1, "hwc-vcpu-4"), (2, "operator-cpu")]);
        let a = vcpus(0, &s);
        assert_eq!(
            a,
            [Action::RemoveVcpu {
                id: "hwc-vcpu-4".into()
            }]
        );
        s.truncate(0);
        assert_eq!(vcpus(2, &s), []);
    }

    #[test]
    fn pins_are_stable_when_one_cpu_is_replaced() {
        let threads: Vec<VcpuThread> = (0..3)
            .map(|i| VcpuThread {
                cpu_index: i,
                thread_id: 10 + i as i32,
            })
            .collect();
        // Pinned 10->0, 11->1, 12->2; CPU 1 is replaced by CPU 3: only
        // vCPU 1 moves.
        let now = |tid: i32| Some(vec![(tid - 10) as u32]);
        assert_eq!(
            pins(&threads, &[0, 2, 3], now),
            [Action::Pin {
                cpu_index: 1,
                thread_id: 11,
                host_cpu: 3
            }]
        );
        // Two vCPUs on one CPU: the second moves to the free one.
        let same = |_: i32| Some(vec![0]);
        assert_eq!(
            pins(&threads[..2], &[0, 1], same),
            [Action::Pin {
                cpu_index: 1,
                thread_id: 11,
                host_cpu: 1
            }]
        );
        assert_eq!(pins(&threads, &[0, 1, 2], now), []);
    }

    #[test]
    fn pins_in_index_order_and_only_what_differs() {
        let threads = [
            VcpuThread {
                cpu_index: 1,
                thread_id: 11,
            },
            VcpuThread {
                cpu_index: 0,
                thread_id: 10,
            },
            VcpuThread {
                cpu_index: 2,
                thread_id: 12,
            },
        ];
        let a = pins(&threads, &[4, 6], |tid| (tid == 10).then(|| vec![4]));
        assert_eq!(
            a,
            [Action::Pin {
                cpu_index: 1,
                thread_id: 11,
                host_cpu: 6
            }]
        );
        let shared = [
            VcpuThread {
                cpu_index: 0,
                thread_id: 10,
            },
            VcpuThread {
                cpu_index: 1,
                thread_id: 10,
            },
        ];
        assert_eq!(pins(&shared, &[4, 6], |_| None), []);
    }

    fn alloc(mib: u64) -> Allocation {
        Allocation {
            host_cpus: vec![0],
            memory_mib: mib,
            memory_nodes: vec![1],
        }
    }

    fn dimm(id: &str, size_mib: u64) -> Dimm {
        Dimm {
            id: id.into(),
            size_mib,
        }
    }

    #[test]
    fn memory_grows_in_granules_and_shrinks_newest_first() {
        assert_eq!(
            memory(&alloc(200), &[], &[]),
            [Action::AddMemory {
                dimm: "hwc-mem-0".into(),
                size_mib: 256,
                host_nodes: vec![1]
            }]
        );
        let dimms = [
            dimm("hwc-mem-0", 256),
            dimm("hwc-mem-1", 128),
            dimm("pc-dimm0", 512),
        ];
        let backends = ["hwc-mem-0-ram".to_owned(), "hwc-mem-1-ram".to_owned()];
        assert_eq!(memory(&alloc(384), &dimms, &backends), []);
        assert_eq!(
            memory(&alloc(512), &dimms, &backends),
            [Action::AddMemory {
                dimm: "hwc-mem-2".into(),
                size_mib: 128,
                host_nodes: vec![1]
            }]
        );
        assert_eq!(
            memory(&alloc(256), &dimms, &backends),
            [Action::RemoveMemory {
                dimm: "hwc-mem-1".into()
            }]
        );
        // 200 MiB rounds up to 256: removing the 256 MiB DIMM too would go below.
        assert_eq!(
            memory(&alloc(200), &dimms, &backends),
            [Action::RemoveMemory {
                dimm: "hwc-mem-1".into()
            }]
        );
        assert_eq!(memory(&alloc(0), &dimms, &backends).len(), 2);
    }

    #[test]
    fn drops_orphaned_backends_and_does_not_reuse_their_ids() {
        let dimms = [dimm("hwc-mem-0", 128)];
        let backends = [
            "hwc-mem-0-ram".to_owned(),
            "hwc-mem-1-ram".to_owned(),
            "other-ram".to_owned(),
        ];
        assert_eq!(
            memory(&alloc(256), &dimms, &backends),
            [
                Action::DropBackend {
                    id: "hwc-mem-1-ram".into()
                },
                Action::AddMemory {
                    dimm: "hwc-mem-2".into(),
                    size_mib: 128,
                    host_nodes: vec![1]
                },
            ]
        );
    }
}
