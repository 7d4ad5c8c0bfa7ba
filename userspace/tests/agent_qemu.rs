// SPDX-License-Identifier: GPL-2.0

//! The VMM agent against a real QEMU (TCG, paused before boot: the machine,
//! its vCPU threads and QMP are real; no guest runs).
//!
//! It checks that the agent hot-adds vCPUs into QEMU's slots, pins each vCPU
//! thread to its allocated host CPU, hot-adds RAM bound to the allocated
//! blocks' node, grows with the allocation, and changes nothing when the
//! host's sysfs text is malformed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use hwconvey_tools::affinity;
use hwconvey_tools::agent::{Agent, Error};
use hwconvey_tools::plan::Action;
use hwconvey_tools::qmp::Qmp;
use hwconvey_tools::tree::Tree;
use serde_json::Value;

/// A QEMU started for one test, killed (by its own handle) when dropped.
struct Vm {
    child: Child,
    dir: PathBuf,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn start_vm(name: &str) -> Vm {
    let dir = std::env::temp_dir().join(format!("hwconvey-agent-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("root/host/hwc0")).unwrap();
    let sock = dir.join("qmp.sock");
    let child = Command::new("qemu-system-x86_64")
        .args(["-M", "pc", "-accel", "tcg,thread=multi", "-cpu", "qemu64"])
        .args(["-smp", "1,maxcpus=4", "-m", "128M,slots=4,maxmem=2G"])
        .args(["-nodefaults", "-display", "none", "-S"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 (the setup installs qemu-system-x86)");
    let vm = Vm { child, dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "QEMU did not open its QMP socket"
        );
        sleep(Duration::from_millis(20));
    }
    vm
}

/// The host device's files, as the host module lays them out: the CPUs and
/// blocks as range lists, the allocation's size in `allocation/`, a value a
/// file (`memory_mib` absent when `None`).
fn allocate(dir: &Path, cpus: &str, blocks: &str, memory_mib: Option<&str>) {
    let d = dir.join("root/host/hwc0");
    fs::write(d.join("cpus"), format!("{cpus}\n")).unwrap();
    fs::write(d.join("blocks"), format!("{blocks}\n")).unwrap();
    let a = d.join("allocation");
    fs::create_dir_all(&a).unwrap();
    let count = cpus.split(',').filter(|c| !c.is_empty()).count();
    fs::write(a.join("cpus"), format!("{count}\n")).unwrap();
    match memory_mib {
        Some(mib) => fs::write(a.join("memory_mib"), format!("{mib}\n")).unwrap(),
        None => {
            let _ = fs::remove_file(a.join("memory_mib"));
        }
    }
}

fn agent(vm: &Vm) -> Agent {
    agent_pinning(vm, true)
}

fn agent_pinning(vm: &Vm, pin: bool) -> Agent {
    // Memory blocks 4-7 of a fake host, all on node 0 (which every host has).
    for b in 4..8 {
        fs::create_dir_all(vm.dir.join(format!("mem/memory{b}/node0"))).unwrap();
    }
    let qmp = Qmp::connect(&vm.dir.join("qmp.sock")).unwrap();
    Agent::new(
        qmp,
        Tree::new(vm.dir.join("root")),
        "hwc0",
        &vm.dir.join("mem"),
        pin,
    )
}

/// Passes until the agent has nothing left to do; returns every action done.
fn settle(agent: &mut Agent) -> Vec<Action> {
    let mut all = Vec::new();
    for _ in 0..4 {
        let pass = agent.reconcile().unwrap();
        assert!(pass.failed.is_empty(), "{:?}", pass.failed);
        if pass.done.is_empty() {
            return all;
        }
        all.extend(pass.done);
    }
    panic!("the VM did not settle: {all:?}");
}

/// (cpu-index, thread-id) of every vCPU.
fn vcpus(agent: &mut Agent) -> Vec<(u64, i32)> {
    let list = agent.qmp().execute("query-cpus-fast", Value::Null).unwrap();
    let mut v: Vec<(u64, i32)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["cpu-index"].as_u64().unwrap(),
                c["thread-id"].as_i64().unwrap() as i32,
            )
        })
        .collect();
    v.sort();
    v
}

/// (id, MiB) of every DIMM.
fn dimms(agent: &mut Agent) -> Vec<(String, u64)> {
    let list = agent
        .qmp()
        .execute("query-memory-devices", Value::Null)
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["data"]["id"].as_str().unwrap().to_owned(),
                d["data"]["size"].as_u64().unwrap() >> 20,
            )
        })
        .collect()
}

/// The host CPUs this test may pin to: those it may run on itself.
fn host_cpus() -> Vec<u32> {
    affinity::get(nix::unistd::gettid().as_raw()).unwrap()
}

#[test]
fn gives_the_vm_its_allocation() {
    let vm = start_vm("grow");
    let mut agent = agent(&vm);
    let cpus = host_cpus();
    let (c0, c1) = (cpus[0], *cpus.get(1).unwrap_or(&cpus[0]));
    allocate(&vm.dir, &format!("{c0},{c1}"), "4-5", Some("256"));

    let done = settle(&mut agent);
    assert!(done
        .iter()
        .any(|a| matches!(a, Action::AddVcpu { id, .. } if id == "hwc-vcpu-0")));
    let v = vcpus(&mut agent);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!(affinity::get(v[0].1).unwrap(), [c0]);
    assert_eq!(affinity::get(v[1].1).unwrap(), [c1]);
    assert_eq!(dimms(&mut agent), [("hwc-mem-0".to_owned(), 256)]);

    // The host grants more memory: one more DIMM for the difference.
    allocate(&vm.dir, &format!("{c0},{c1}"), "4-6", Some("384"));
    settle(&mut agent);
    assert_eq!(
        dimms(&mut agent),
        [("hwc-mem-0".to_owned(), 256), ("hwc-mem-1".to_owned(), 128)]
    );

    // Settled: another pass does nothing.
    assert!(agent.reconcile().unwrap().settled());
}

#[test]
fn malformed_sysfs_changes_nothing() {
    let vm = start_vm("bad");
    let mut agent = agent(&vm);
    for (cpus, blocks, memory_mib) in [
        ("1-0", "", Some("0")),
        ("0,1", "4", Some("lots")),
        ("0,1", "x", Some("128")),
        ("0,99999999", "", Some("0")),
        ("0", "", None),
        ("0", "", Some("")),
        ("0", "", Some("-128")),
        // Two values, or the line of the kernels that had them on one: not a file's one value.
        ("0", "4", Some("128 256")),
        ("0", "4", Some("cpus 1 memory_mib 128")),
    ] {
        allocate(&vm.dir, cpus, blocks, memory_mib);
        match agent.reconcile() {
            Err(Error::Sysfs(_)) => {}
            other => panic!("{cpus:?} {blocks:?} {memory_mib:?}: {other:?}"),
        }
    }
    // The allocation as one line in a file of its own, as before the subdirectory: not read.
    let a = vm.dir.join("root/host/hwc0/allocation");
    fs::remove_dir_all(&a).unwrap();
    fs::write(&a, "cpus 1 memory_mib 128\n").unwrap();
    match agent.reconcile() {
        Err(Error::Sysfs(_)) => {}
        other => panic!("an allocation file: {other:?}"),
    }
    assert_eq!(vcpus(&mut agent).len(), 1);
    assert!(dimms(&mut agent).is_empty());
}

#[test]
fn unplug_needs_the_guest_and_does_not_block_adds() {
    let vm = start_vm("shrink");
    // Not pinning: CPUs 0 and 1 need not both exist here.
    let mut agent = agent_pinning(&vm, false);
    allocate(&vm.dir, "0-1", "", Some("0"));
    settle(&mut agent);
    assert_eq!(vcpus(&mut agent).len(), 2);

    // Fewer CPUs, more memory: QEMU refuses to unplug a vCPU of a guest that
    // has not booted (unplug is an ACPI request to the guest), yet the
    // memory is added in the same pass.
    allocate(&vm.dir, "0", "4", Some("128"));
    let pass = agent.reconcile().unwrap();
    assert!(
        matches!(pass.failed.as_slice(), [(Action::RemoveVcpu { id }, Error::Qmp(_))] if id == "hwc-vcpu-0")
    );
    assert_eq!(dimms(&mut agent), [("hwc-mem-0".to_owned(), 128)]);
}
