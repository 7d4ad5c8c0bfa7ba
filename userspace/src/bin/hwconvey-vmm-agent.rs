// SPDX-License-Identifier: GPL-2.0

//! hwconvey-vmm-agent: gives a QEMU VM what the host module allocated to it.
//!
//! Run one per VM, beside QEMU, on the host:
//!
//!     hwconvey-vmm-agent --qmp /run/vm1.qmp --device hwc0
//!
//! where `hwc0` is the VM's hwconvey vDPA device. Every interval it compares
//! `/sys/kernel/hwconvey/host/hwc0/{cpus,allocation,blocks}` with the VM and
//! hot-adds or unplugs vCPUs and RAM, and pins vCPU threads, to match.

use std::path::PathBuf;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::Duration;

use hwconvey_tools::agent::{self, Agent, DEFAULT_MEMORY_ROOT};
use hwconvey_tools::qmp::Qmp;
use hwconvey_tools::tree::{Tree, DEFAULT_ROOT};

const USAGE: &str = "\
usage: hwconvey-vmm-agent --qmp SOCKET (--device NAME | --vmm-pid PID) [options]

  --qmp SOCKET        QEMU's QMP socket (-qmp unix:SOCKET,server=on,wait=off)
  --device NAME       the VM's hwconvey vDPA device (vdpa dev add name NAME ...)
  --vmm-pid PID       or: the device QEMU process PID owns (host/*/owner_pid)
  --root DIR          hwconvey sysfs root (default /sys/kernel/hwconvey)
  --memory-root DIR   host memory blocks (default /sys/devices/system/memory)
  --interval MS       time between passes (default 500)
  --no-pin            do not pin vCPU threads to the allocated host CPUs
  --once              run passes until nothing is left to do, then exit
  --dry-run           print what one pass would do, change nothing";

struct Opts {
    qmp: PathBuf,
    device: Option<String>,
    vmm_pid: Option<u32>,
    root: PathBuf,
    memory_root: PathBuf,
    interval: Duration,
    pin: bool,
    once: bool,
    dry_run: bool,
}

fn parse() -> Result<Opts, String> {
    let mut qmp = None;
    let mut o = Opts {
        qmp: PathBuf::new(),
        device: None,
        vmm_pid: None,
        root: DEFAULT_ROOT.into(),
        memory_root: DEFAULT_MEMORY_ROOT.into(),
        interval: Duration::from_millis(500),
        pin: true,
        once: false,
        dry_run: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--qmp" => qmp = Some(PathBuf::from(val()?)),
            "--device" => o.device = Some(val()?),
            "--vmm-pid" => o.vmm_pid = Some(val()?.parse().map_err(|_| "--vmm-pid needs a pid")?),
            "--root" => o.root = val()?.into(),
            "--memory-root" => o.memory_root = val()?.into(),
            "--interval" => {
                let ms: u64 = val()?
                    .parse()
                    .map_err(|_| "--interval needs milliseconds")?;
                o.interval = Duration::from_millis(ms.max(10));
            }
            "--no-pin" => o.pin = false,
            "--once" => o.once = true,
            "--dry-run" => o.dry_run = true,
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    o.qmp = qmp.ok_or("--qmp is required")?;
    match (&o.device, o.vmm_pid) {
        (Some(d), None) if d.is_empty() || d.contains('/') || d.starts_with('.') => {
            Err(format!("{d:?} is not a device name"))
        }
        (Some(_), None) | (None, Some(_)) => Ok(o),
        _ => Err("give one of --device and --vmm-pid".into()),
    }
}

/// Passes `--once` makes at most: each pass either finishes or changes the
/// VM (add vCPUs, then pin them), so a few always suffice.
const MAX_ONCE_PASSES: usize = 4;

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(m) => {
            eprintln!("hwconvey-vmm-agent: {m}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let qmp = match Qmp::connect(&o.qmp) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("hwconvey-vmm-agent: {}: {e}", o.qmp.display());
            return ExitCode::from(1);
        }
    };
    let tree = Tree::new(&o.root);
    let device = match (&o.device, o.vmm_pid) {
        (Some(d), _) => d.clone(),
        (None, pid) => {
            let pid = pid.unwrap_or_default();
            // The VMM takes ownership of the device when the guest starts
            // it: wait for that, unless asked for one pass.
            loop {
                match agent::device_of(&tree, pid) {
                    Ok(Some(d)) => break d,
                    Ok(None) if !o.once && !o.dry_run => sleep(o.interval),
                    Ok(None) => {
                        eprintln!(
                            "hwconvey-vmm-agent: no hwconvey device is owned by process {pid}"
                        );
                        return ExitCode::from(1);
                    }
                    Err(e) => {
                        eprintln!("hwconvey-vmm-agent: {}: {e}", o.root.display());
                        return ExitCode::from(1);
                    }
                }
            }
        }
    };
    let mut agent = Agent::new(qmp, tree, &device, &o.memory_root, o.pin);
    if o.dry_run {
        return match agent.plan() {
            Ok(actions) => {
                for a in &actions {
                    println!("would {}", agent::describe(a));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hwconvey-vmm-agent: {e}");
                ExitCode::from(1)
            }
        };
    }
    let mut passes = 0;
    loop {
        match agent.reconcile() {
            Ok(pass) => {
                for a in &pass.done {
                    println!("{device}: {}", agent::describe(a));
                }
                for (a, e) in &pass.failed {
                    eprintln!("hwconvey-vmm-agent: {device}: {}: {e}", agent::describe(a));
                }
                if o.once && pass.settled() {
                    return ExitCode::SUCCESS;
                }
            }
            Err(e) => {
                eprintln!("hwconvey-vmm-agent: {device}: {e}");
                if o.once {
                    return ExitCode::from(1);
                }
            }
        }
        passes += 1;
        if o.once && passes >= MAX_ONCE_PASSES {
            eprintln!("hwconvey-vmm-agent: {device}: the VM did not settle in {passes} passes");
            return ExitCode::from(1);
        }
        sleep(if o.once {
            Duration::from_millis(50)
        } else {
            o.interval
        });
    }
}
