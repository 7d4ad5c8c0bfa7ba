// SPDX-License-Identifier: GPL-2.0

//! hwconveyctl against a copy of the sysfs tree (the real tree is exercised
//! by the VM scenario 95-hwconveyctl.sh).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread::{sleep, spawn};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Root(PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, format!("{text}\n")).unwrap();
}

/// A host with one guest device, and a guest, as the modules lay them out:
/// the device's files are on the vDPA device (here `vdpa/hwc0/`, beside the
/// driver core's own), and `host/hwc0` links to them.
fn tree(name: &str) -> Root {
    let root = std::env::temp_dir().join(format!("hwconveyctl-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    for (rel, text) in [
        ("host/generation", "7"),
        (
            "host/inventory",
            "cpus 4 online 4 blocks 16 online 16 block_mib 128 nodes 2",
        ),
        ("host/free_cpus", "2-3"),
        ("host/initial_cpus", "1"),
        ("vdpa/hwc0/guest_id", "1"),
        ("vdpa/hwc0/cpus", "0-1"),
        ("vdpa/hwc0/blocks", ""),
        ("vdpa/hwc0/allocation", "cpus 2 memory_mib 0"),
        ("vdpa/hwc0/quota_cpus", "2"),
        (
            "vdpa/hwc0/last_request",
            "id 3 kind cpus amount 1 node 1 motive 1 projection demand 2400 held 1",
        ),
        (
            "vdpa/hwc0/last_response",
            "id 3 kind cpus status partial reason quota amount 1 generation 7",
        ),
        ("guest/generation", "7"),
        ("guest/allocation", "cpus 2 memory_mib 0"),
        ("guest/responses", "3"),
        ("guest/request", "none"),
        ("guest/last_response", "none"),
        ("vdpa/hwc0/uevent", "VDPA_DEVICE=hwc0"),
        ("vdpa/hwc0/driver_override", "(null)"),
        ("vdpa/hwc0/power/runtime_status", "unsupported"),
    ] {
        put(&root, rel, text);
    }
    std::os::unix::fs::symlink("../vdpa/hwc0", root.join("host/hwc0")).unwrap();
    std::os::unix::fs::symlink("../power", root.join("vdpa/hwc0/subsystem")).unwrap();
    Root(root)
}

fn ctl(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hwconveyctl"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn status_as_json_and_tables() {
    let r = tree("status");
    let o = ctl(&r.0, &["--json", "status"]);
    assert!(o.status.success(), "{o:?}");
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["host"]["generation"], json!(7));
    assert_eq!(v["host"]["free_cpus"], json!([2, 3]));
    assert_eq!(v["host"]["guests"]["hwc0"]["cpus"], json!([0, 1]));
    assert_eq!(v["host"]["guests"]["hwc0"]["blocks"], json!([]));
    // The driver core's files, links and directories are not hwconvey's.
    let dev = v["host"]["guests"]["hwc0"].as_object().unwrap();
    for other in ["uevent", "driver_override", "power", "subsystem"] {
        assert!(!dev.contains_key(other), "{other} in {dev:?}");
    }
    assert_eq!(dev.len(), 7, "{dev:?}");
    assert_eq!(
        v["host"]["guests"]["hwc0"]["last_request"]["motive"],
        json!("projection")
    );
    assert_eq!(
        v["guest"]["allocation"],
        json!({"cpus": 2, "memory_mib": 0})
    );
    assert_eq!(v["guest"]["last_response"], Value::Null);

    let o = ctl(&r.0, &["guests"]);
    let out = stdout(&o);
    let mut lines = out.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("DEVICE  GUEST  RUN  CPUS"),
        "{out}"
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("hwc0    1      ?    0-1"), "{row}");
    assert!(row.ends_with("partial cpus 1 (quota)"), "{row}");
}

#[test]
fn get_set_and_errors() {
    let r = tree("getset");
    let o = ctl(&r.0, &["set", "host/hwc0/quota_cpus", "4"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&ctl(&r.0, &["get", "host/hwc0/quota_cpus"])), "4\n");
    assert_eq!(
        stdout(&ctl(&r.0, &["--json", "get", "host/hwc0/allocation"])),
        "{\"cpus\":2,\"memory_mib\":0}\n"
    );

    // Leaving the tree, a missing file, a missing module, bad usage.
    let o = ctl(&r.0, &["get", "../etc/passwd"]);
    assert_eq!(o.status.code(), Some(1));
    // Through a device's link, only the device's own files: not the driver
    // core's, nor what is further down (its bus, its driver).
    for path in [
        "host/hwc0/uevent",
        "host/hwc0/power/runtime_status",
        "host/hwc0/subsystem",
        "host/hwc0/power",
    ] {
        let o = ctl(&r.0, &["get", path]);
        assert_eq!(o.status.code(), Some(1), "{path}: {o:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("not a path inside"),
            "{o:?}"
        );
    }
    let o = ctl(&r.0, &["set", "host/nonexistent", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("(ENOENT)"),
        "{o:?}"
    );
    assert_eq!(
        ctl(&r.0.join("nowhere"), &["status"]).status.code(),
        Some(1)
    );
    assert_eq!(ctl(&r.0, &["frobnicate"]).status.code(), Some(2));
    assert_eq!(ctl(&r.0, &["request", "disks", "1"]).status.code(), Some(2));
    // The node is an option; a bare trailing word is a usage error, and so
    // is a watch that would never sleep.
    assert_eq!(
        ctl(&r.0, &["request", "cpus", "1", "node", "1"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        ctl(&r.0, &["watch", "--interval", "0"]).status.code(),
        Some(2)
    );
    let help = ctl(&r.0, &["--help"]);
    assert!(help.status.success(), "{help:?}");
    for sub in ["status", "request", "watch", "set"] {
        assert!(stdout(&help).contains(sub), "{sub} missing from the help");
    }
}

#[test]
fn watch_reports_changes() {
    let r = tree("watch");
    let root = r.0.clone();
    let writer = spawn(move || {
        sleep(Duration::from_millis(300));
        put(&root, "host/generation", "8");
        put(&root, "host/hwc0/cpus", "0-2");
    });
    let o = ctl(
        &r.0,
        &["--json", "watch", "--interval", "20", "--count", "2"],
    );
    writer.join().unwrap();
    assert!(o.status.success(), "{o:?}");
    let events: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |path: &str| events.iter().find(|e| e["path"] == json!(path)).cloned();
    let g = find("host/generation").expect("generation event");
    assert_eq!((g["old"].clone(), g["new"].clone()), (json!(7), json!(8)));
    let c = find("host/hwc0/cpus").expect("cpus event");
    assert_eq!(c["new"], json!([0, 1, 2]));
}

#[test]
fn request_waits_for_the_answer() {
    let r = tree("request");
    let root = r.0.clone();
    // Plays the guest module: answers what is written to guest/request.
    let responder = spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let req = fs::read_to_string(root.join("guest/request")).unwrap();
            if req.trim() == "cpus 2 node 1" {
                put(
                    &root,
                    "guest/last_response",
                    "id 4 kind cpus status denied reason quota amount 0 generation 7",
                );
                put(&root, "guest/responses", "4");
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            sleep(Duration::from_millis(5));
        }
    });
    let o = ctl(&r.0, &["--json", "request", "cpus", "2", "--node", "1"]);
    assert!(responder.join().unwrap(), "the request was never written");
    // Denied: the answer is printed and the exit status says so.
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["status"], json!("denied"));
    assert_eq!(v["reason"], json!("quota"));
}
