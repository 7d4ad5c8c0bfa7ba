// SPDX-License-Identifier: GPL-2.0

//! hwconvey-vmm-agent: gives a QEMU VM what the host module allocated to it.
//!
//! Run one per VM, beside QEMU, on the host:
//!
//!     hwconvey-vmm-agent --qmp /run/vm1.qmp --device hwc0
//!
//! where `hwc0` is the VM's hwconvey vDPA device. Every interval it compares
//! `/sys/kernel/hwconvey/host/hwc0/{cpus,blocks,allocation/memory_mib}` with
//! the VM and hot-adds or unplugs vCPUs and RAM, and pins vCPU threads, to
//! match.

use std::path::PathBuf;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use hwconvey_tools::agent::{self, Agent, DEFAULT_MEMORY_ROOT};
use hwconvey_tools::qmp::Qmp;
use hwconvey_tools::tree::{Tree, DEFAULT_ROOT};

/// Gives a QEMU VM what the hwconvey host module allocated to it: hot-adds
/// or unplugs vCPUs and RAM, and pins vCPU threads, to match the device's
/// allocation.
#[derive(Parser)]
#[command(name = "hwconvey-vmm-agent", version)]
#[command(group(ArgGroup::new("which").required(true).args(["device", "vmm_pid"])))]
struct Opts {
    /// QEMU's QMP socket (-qmp unix:SOCKET,server=on,wait=off).
    #[arg(long, value_name = "SOCKET")]
    qmp: PathBuf,
    /// The VM's hwconvey vDPA device (vdpa dev add name NAME ...).
    #[arg(long, value_name = "NAME", value_parser = device_name)]
    device: Option<String>,
    /// Or: the device the QEMU process PID owns (host/*/owner_pid).
    #[arg(long, value_name = "PID")]
    vmm_pid: Option<u32>,
    /// hwconvey's sysfs root.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_ROOT)]
    root: PathBuf,
    /// The host's memory blocks.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_MEMORY_ROOT)]
    memory_root: PathBuf,
    /// Milliseconds between passes (at least 10).
    #[arg(long, value_name = "MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(10..))]
    interval: u64,
    /// Do not pin vCPU threads to the allocated host CPUs.
    #[arg(long = "no-pin", action = clap::ArgAction::SetFalse)]
    pin: bool,
    /// Run passes until nothing is left to do, then exit.
    #[arg(long)]
    once: bool,
    /// Print what one pass would do, change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// A device name is one sysfs directory entry: no path in it.
fn device_name(d: &str) -> Result<String, String> {
    if d.is_empty() || d.contains('/') || d.starts_with('.') {
        Err(format!("{d:?} is not a device name"))
    } else {
        Ok(d.to_owned())
    }
}

/// Passes `--once` makes at most: each pass either finishes or changes the
/// VM (add vCPUs, then pin them), so a few always suffice.
const MAX_ONCE_PASSES: usize = 4;

fn main() -> ExitCode {
    let o = Opts::parse();
    let interval = Duration::from_millis(o.interval);
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
                    Ok(None) if !o.once && !o.dry_run => sleep(interval),
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
            interval
        });
    }
}
