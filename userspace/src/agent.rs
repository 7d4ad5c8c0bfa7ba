// SPDX-License-Identifier: GPL-2.0

//! The VMM-side agent: makes a QEMU VM match what the host allocated to it.
//!
//! It reads the VM's allocation from the host module's sysfs directory for
//! the VM's hwconvey device, asks QEMU over QMP what the VM has, plans with
//! [`crate::plan`] and applies the plan: hot-adds (or unplugs) vCPUs, pins
//! each vCPU thread to one allocated host CPU, hot-adds (or unplugs) RAM
//! bound to the NUMA nodes of the allocated memory blocks. The guest must
//! online what it gets (`memhp_default_state=online`, or a udev rule).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hwconvey_proto::idlist;
use serde_json::{json, Map, Value};

use crate::affinity;
use crate::plan::{self, Action, Allocation, Dimm, Slot, VcpuThread};
use crate::qmp::{self, Qmp};
use crate::tree::Tree;

/// Where the host kernel describes its memory blocks.
pub const DEFAULT_MEMORY_ROOT: &str = "/sys/devices/system/memory";

/// Why a pass failed.
#[derive(Debug)]
pub enum Error {
    /// The allocation could not be read.
    Sysfs(String),
    /// QEMU failed or refused.
    Qmp(qmp::Error),
    /// A vCPU thread could not be pinned.
    Pin(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Sysfs(m) => write!(f, "{m}"),
            Error::Qmp(e) => write!(f, "{e}"),
            Error::Pin(m) => write!(f, "{m}"),
        }
    }
}

impl From<qmp::Error> for Error {
    fn from(e: qmp::Error) -> Self {
        Error::Qmp(e)
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Pass {
    /// Actions applied.
    pub done: Vec<Action>,
    /// Actions QEMU (or the host) refused, and why.
    pub failed: Vec<(Action, Error)>,
}

impl Pass {
    /// Whether the VM already matched its allocation.
    pub fn settled(&self) -> bool {
        self.done.is_empty() && self.failed.is_empty()
    }
}

/// The agent for one VM.
pub struct Agent {
    qmp: Qmp,
    tree: Tree,
    device: String,
    memory_root: PathBuf,
    pin: bool,
}

/// Whether `tid` is a thread of process `pid` (its `/proc/<pid>/task/<tid>` exists).
fn is_thread_of(pid: i32, tid: i32) -> bool {
    pid > 0 && tid > 0 && Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
}

/// The threads of `reported` that `belongs` accepts.
fn threads_of(
    reported: impl Iterator<Item = VcpuThread>,
    belongs: impl Fn(i32) -> bool,
) -> Vec<VcpuThread> {
    reported.filter(|t| belongs(t.thread_id)).collect()
}

fn sysfs_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Sysfs(format!("{what}: {e}"))
}

/// The ids of a range list, bounded by `max`.
fn ids(text: &str, max: u32, what: &str) -> Result<Vec<u32>, Error> {
    let mut out = Vec::new();
    for r in idlist::parse(text, max) {
        let (a, b) = r.map_err(|e| sysfs_err(what, format!("{text:?}: {e:?}")))?;
        out.extend(a..=b);
    }
    Ok(out)
}

impl Agent {
    /// An agent for the VM behind QMP connection `qmp`, whose hwconvey device
    /// is `device` in `tree`.
    pub fn new(qmp: Qmp, tree: Tree, device: &str, memory_root: &Path, pin: bool) -> Self {
        Self {
            qmp,
            tree,
            device: device.to_owned(),
            memory_root: memory_root.to_owned(),
            pin,
        }
    }

    /// The VMM's pid: the process at the other end of the QMP socket, which must also be the
    /// process the host module records as the device's owner when there is one. (The socket's
    /// peer is whoever listened on it: a QMP socket handed over as a file descriptor, or by
    /// socket activation, names another process, and the agent then pins nothing.)
    fn vmm_pid(&self) -> Result<i32, Error> {
        let peer = self
            .qmp
            .peer_pid()
            .map_err(|e| Error::Pin(format!("the VMM's pid from the QMP socket: {e}")))?;
        let owner = self
            .tree
            .read(&format!("host/{}/owner_pid", self.device))
            .ok()
            .and_then(|o| o.parse::<i32>().ok());
        match owner {
            Some(owner) if owner != peer => Err(Error::Pin(format!(
                "the QMP socket's peer (pid {peer}) is not the owner of {} (pid {owner})",
                self.device
            ))),
            _ => Ok(peer),
        }
    }

    /// The node of host memory block `index`, from its `node<N>` link.
    fn block_node(&self, index: u32) -> Option<u32> {
        let dir = self.memory_root.join(format!("memory{index}"));
        fs::read_dir(dir).ok()?.find_map(|e| {
            let name = e.ok()?.file_name();
            name.to_str()?.strip_prefix("node")?.parse().ok()
        })
    }

    /// What the host allocated to the VM.
    pub fn allocation(&self) -> Result<Allocation, Error> {
        let dir = format!("host/{}", self.device);
        let read = |f: &str| {
            self.tree
                .read(&format!("{dir}/{f}"))
                .map_err(|e| sysfs_err(&format!("{dir}/{f}"), e))
        };
        let mut host_cpus = ids(&read("cpus")?, hwconvey_proto::inventory::MAX_CPUS, "cpus")?;
        // A set: the host never lists a CPU twice, and neither may the text.
        host_cpus.sort_unstable();
        host_cpus.dedup();
        let blocks = ids(
            &read("blocks")?,
            hwconvey_proto::inventory::MAX_BLOCKS,
            "blocks",
        )?;
        let mib = read("allocation/memory_mib")?;
        let memory_mib = mib
            .parse()
            .map_err(|_| sysfs_err(&format!("{dir}/allocation/memory_mib"), format!("{mib:?}")))?;
        let mut memory_nodes: Vec<u32> =
            blocks.iter().filter_map(|&b| self.block_node(b)).collect();
        memory_nodes.sort_unstable();
        memory_nodes.dedup();
        Ok(Allocation {
            host_cpus,
            memory_mib,
            memory_nodes,
        })
    }

    fn slots(&mut self) -> Result<Vec<Slot>, Error> {
        let list = self.qmp.execute("query-hotpluggable-cpus", Value::Null)?;
        let mut slots = Vec::new();
        for s in list.as_array().into_iter().flatten() {
            let (Some(driver), Some(Value::Object(props))) =
                (s.get("type").and_then(Value::as_str), s.get("props"))
            else {
                continue;
            };
            slots.push(Slot {
                driver: driver.to_owned(),
                props: props.clone(),
                qom_path: s.get("qom-path").and_then(Value::as_str).map(str::to_owned),
            });
        }
        Ok(slots)
    }

    /// The vCPU threads QMP reports, keeping only those that are threads of the VMM at the
    /// other end of the socket: the agent pins as root, and must not move another process's
    /// thread because a VMM said so.
    fn threads(&mut self) -> Result<Vec<VcpuThread>, Error> {
        let list = self.qmp.execute("query-cpus-fast", Value::Null)?;
        let vmm = self.vmm_pid()?;
        let reported = list.as_array().into_iter().flatten().filter_map(|c| {
            Some(VcpuThread {
                cpu_index: c.get("cpu-index")?.as_u64()?,
                thread_id: i32::try_from(c.get("thread-id")?.as_i64()?).ok()?,
            })
        });
        let reported: Vec<VcpuThread> = reported.collect();
        let kept = threads_of(reported.iter().copied(), |tid| is_thread_of(vmm, tid));
        if kept.len() < reported.len() {
            return Err(Error::Pin(format!(
                "{} of the {} vCPU threads QMP reports are not threads of the VMM (pid {vmm})",
                reported.len() - kept.len(),
                reported.len()
            )));
        }
        Ok(kept)
    }

    fn dimms(&mut self) -> Result<Vec<Dimm>, Error> {
        let list = self.qmp.execute("query-memory-devices", Value::Null)?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| {
                let data = d.get("data")?;
                Some(Dimm {
                    id: data.get("id")?.as_str()?.to_owned(),
                    size_mib: data.get("size")?.as_u64()? >> 20,
                })
            })
            .collect())
    }

    fn backends(&mut self) -> Result<Vec<String>, Error> {
        let list = self
            .qmp
            .execute("qom-list", json!({ "path": "/objects" }))?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.get("name")?.as_str().map(str::to_owned))
            .filter(|n| n.starts_with(plan::DIMM_PREFIX))
            .collect())
    }

    /// The actions that would bring the VM to its allocation now.
    pub fn plan(&mut self) -> Result<Vec<Action>, Error> {
        let alloc = self.allocation()?;
        let slots = self.slots()?;
        let mut actions = plan::vcpus(alloc.host_cpus.len(), &slots);
        if self.pin && actions.is_empty() && !kernel_pins(&self.tree, &self.device) {
            let threads = self.threads()?;
            actions.extend(plan::pins(&threads, &alloc.host_cpus, |tid| {
                affinity::get(tid).ok()
            }));
        }
        let dimms = self.dimms()?;
        let backends = self.backends()?;
        actions.extend(plan::memory(&alloc, &dimms, &backends));
        Ok(actions)
    }

    fn apply(&mut self, action: &Action) -> Result<(), Error> {
        match action {
            Action::AddVcpu { id, driver, props } => {
                let mut args = props.clone();
                args.insert("driver".into(), json!(driver));
                args.insert("id".into(), json!(id));
                self.qmp.execute("device_add", Value::Object(args))?;
            }
            Action::RemoveVcpu { id } | Action::RemoveMemory { dimm: id } => {
                self.qmp.execute("device_del", json!({ "id": id }))?;
            }
            Action::Pin {
                thread_id,
                host_cpu,
                ..
            } => {
                // Checked again right before: the thread may have exited since the plan.
                let vmm = self.vmm_pid()?;
                if !is_thread_of(vmm, *thread_id) {
                    return Err(Error::Pin(format!(
                        "thread {thread_id} is not a thread of the VMM (pid {vmm})"
                    )));
                }
                affinity::set(*thread_id, &[*host_cpu]).map_err(|e: io::Error| {
                    Error::Pin(format!("pinning thread {thread_id} to CPU {host_cpu}: {e}"))
                })?;
            }
            Action::AddMemory {
                dimm,
                size_mib,
                host_nodes,
            } => {
                let backend = format!("{dimm}-ram");
                let mut obj = Map::new();
                // Shared and file-backed: a vhost-vdpa device (the hwconvey device among them)
                // reaches guest memory through the VMM's mappings, and vhost-vdpa maps only
                // such memory. Anonymous RAM would be invisible to it, and the guest driver's
                // buffers placed there would break its queues.
                obj.insert("qom-type".into(), json!("memory-backend-memfd"));
                obj.insert("share".into(), json!(true));
                obj.insert("id".into(), json!(backend));
                obj.insert("size".into(), json!(size_mib << 20));
                if !host_nodes.is_empty() {
                    obj.insert("host-nodes".into(), json!(host_nodes));
                    obj.insert("policy".into(), json!("bind"));
                }
                self.qmp.execute("object-add", Value::Object(obj))?;
                let plugged = self.qmp.execute(
                    "device_add",
                    json!({ "driver": "pc-dimm", "id": dimm, "memdev": backend }),
                );
                if let Err(e) = plugged {
                    // Leave nothing behind: the next pass starts from scratch.
                    let _ = self.qmp.execute("object-del", json!({ "id": backend }));
                    return Err(e.into());
                }
            }
            Action::DropBackend { id } => {
                self.qmp.execute("object-del", json!({ "id": id }))?;
            }
        }
        Ok(())
    }

    /// One pass: plans, then applies every action; one that fails does not
    /// stop the others (an unplug the guest refuses must not hold up an add).
    pub fn reconcile(&mut self) -> Result<Pass, Error> {
        let mut pass = Pass::default();
        for a in self.plan()? {
            match self.apply(&a) {
                Ok(()) => pass.done.push(a),
                Err(e) => pass.failed.push((a, e)),
            }
        }
        Ok(pass)
    }

    /// The QMP connection, for callers that query the VM themselves.
    pub fn qmp(&mut self) -> &mut Qmp {
        &mut self.qmp
    }
}

/// The hwconvey device whose rings live in process `pid`'s address space
/// (`host/<device>/owner_pid`): a VM's device, found from its VMM's pid.
pub fn device_of(tree: &Tree, pid: u32) -> io::Result<Option<String>> {
    for dev in tree.devices()? {
        if let Ok(owner) = tree.read(&format!("host/{dev}/owner_pid")) {
            if owner.parse::<u32>().ok() == Some(pid) {
                return Ok(Some(dev));
            }
        }
    }
    Ok(None)
}

/// One line describing an action, for the agent's log.
pub fn describe(a: &Action) -> String {
    match a {
        Action::AddVcpu { id, props, .. } => {
            format!("add vCPU {id} {}", Value::Object(props.clone()))
        }
        Action::RemoveVcpu { id } => format!("unplug vCPU {id}"),
        Action::Pin {
            cpu_index,
            thread_id,
            host_cpu,
        } => {
            format!("pin vCPU {cpu_index} (thread {thread_id}) to host CPU {host_cpu}")
        }
        Action::AddMemory {
            dimm,
            size_mib,
            host_nodes,
        } => {
            format!("add {size_mib} MiB as {dimm}, bound to host nodes {host_nodes:?}")
        }
        Action::RemoveMemory { dimm } => format!("unplug memory {dimm}"),
        Action::DropBackend { id } => format!("delete backend {id}"),
    }
}

/// Whether the host module pins the vCPU threads of `device`'s VM itself: it does with KVM's
/// lifecycle hook (the device's `vm` names its VM by number, "none" without one) and
/// `pin_vcpus` on. The agent's own pinning is the fallback for kernels without the hook, or
/// with kernel pinning off.
pub fn kernel_pins(tree: &Tree, device: &str) -> bool {
    tree.read("host/pin_vcpus").is_ok_and(|v| v == "1")
        && tree
            .read(&format!("host/{device}/vm"))
            .is_ok_and(|v| v.parse::<u64>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_only_threads_of_the_vmm() {
        let me = std::process::id() as i32;
        // The main thread's id is the process id; pid 1 is no thread of a test process.
        assert!(is_thread_of(me, me));
        assert!(!is_thread_of(me, 1));
        assert!(!is_thread_of(1, me));
        assert!(!is_thread_of(me, 0) && !is_thread_of(0, me) && !is_thread_of(me, -1));
        let reported = [(0, me), (1, 1), (2, -5)].map(|(cpu_index, thread_id)| VcpuThread {
            cpu_index,
            thread_id,
        });
        let kept = threads_of(reported.into_iter(), |tid| is_thread_of(me, tid));
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].thread_id, me);
    }

    #[test]
    fn finds_the_device_a_vmm_owns() {
        let root = std::env::temp_dir().join(format!("hwconvey-owner-{}", std::process::id()));
        for (dev, owner) in [("hwc0", "none"), ("hwc1", "4242"), ("hwc2", "42")] {
            fs::create_dir_all(root.join("host").join(dev)).unwrap();
            fs::write(
                root.join("host").join(dev).join("owner_pid"),
                format!("{owner}\n"),
            )
            .unwrap();
        }
        let tree = Tree::new(&root);
        assert_eq!(device_of(&tree, 42).unwrap().as_deref(), Some("hwc2"));
        assert_eq!(device_of(&tree, 4242).unwrap().as_deref(), Some("hwc1"));
        assert_eq!(device_of(&tree, 7).unwrap(), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn leaves_pinning_to_a_kernel_that_pins() {
        let root = std::env::temp_dir().join(format!("hwconvey-pins-{}", std::process::id()));
        let dev = root.join("host").join("hwc0");
        fs::create_dir_all(&dev).unwrap();
        let tree = Tree::new(&root);
        // A kernel without the hook has neither file.
        assert!(!kernel_pins(&tree, "hwc0"));
        fs::write(root.join("host/pin_vcpus"), "1\n").unwrap();
        fs::write(dev.join("vm"), "none\n").unwrap();
        assert!(!kernel_pins(&tree, "hwc0"));
        fs::write(dev.join("vm"), "3\n").unwrap();
        fs::write(dev.join("vm_vcpus"), "2\n").unwrap();
        assert!(kernel_pins(&tree, "hwc0"));
        // The line of kernels before a file held one value is not a VM's number.
        fs::write(dev.join("vm"), "vm 3 vcpus 2\n").unwrap();
        assert!(!kernel_pins(&tree, "hwc0"));
        fs::write(dev.join("vm"), "0\n").unwrap();
        fs::write(root.join("host/pin_vcpus"), "0\n").unwrap();
        assert!(!kernel_pins(&tree, "hwc0"));
        fs::remove_dir_all(&root).unwrap();
    }
}
