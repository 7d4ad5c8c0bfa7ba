// SPDX-License-Identifier: GPL-2.0

//! hwconveyctl against a copy of the sysfs tree (the real tree is exercised
//! by the VM scenario 95-hwconveyctl.sh).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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

/// A guest device's files on its virtio device (here `virtio/<dev>/`), beside
/// the virtio core's and the driver core's own, and its link `guest/<dev>`:
/// a value a file, those that belong together in a subdirectory.
fn guest_device(root: &Path, dev: &str, generation: &str) {
    for (file, text) in [
        ("generation", generation),
        ("events", "2"),
        ("responses", "3"),
        ("last_update_ns", "81234567"),
        // Write-only on a real device: never read.
        ("request", "none"),
        ("allocation/cpus", "2"),
        ("allocation/memory_mib", "0"),
        ("last_response/id", "0"),
        ("last_response/kind", "none"),
        ("last_response/status", "none"),
        ("last_response/reason", "none"),
        ("last_response/amount", "0"),
        ("last_response/generation", "0"),
        ("last_diff/generation", generation),
        ("last_diff/my_cpus_gained", "1"),
        ("last_diff/my_cpus_lost", "0"),
        ("device", "0x0038"),
        ("vendor", "0x554d4551"),
        ("status", "0x0000000f"),
        (
            "features",
            "0111000000000000000000000000000010000000000000000000000000000000",
        ),
        ("modalias", "virtio:d00000038v554D4551"),
        ("uevent", "MODALIAS=virtio:d00000038v554D4551"),
        ("power/runtime_status", "unsupported"),
    ] {
        put(root, &format!("virtio/{dev}/{file}"), text);
    }
    std::os::unix::fs::symlink("power", root.join(format!("virtio/{dev}/subsystem"))).unwrap();
    std::os::unix::fs::symlink("power", root.join(format!("virtio/{dev}/driver"))).unwrap();
    std::os::unix::fs::symlink(
        format!("../virtio/{dev}"),
        root.join(format!("guest/{dev}")),
    )
    .unwrap();
}

/// The guest device files [`guest_device`] makes that `watch` watches.
const WATCHED_PER_GUEST_DEVICE: usize = 11;

/// A host with one guest device, and a guest with one device bound, as the
/// modules lay them out: the host device's files are on the vDPA device
/// (here `vdpa/hwc0/`, beside the driver core's own), and `host/hwc0` links
/// to them; the guest's knobs are in `guest/`, its device's files on the
/// virtio device (`virtio/virtio0/`), and `guest/virtio0` links to them.
fn tree(name: &str) -> Root {
    let root = std::env::temp_dir().join(format!("hwconveyctl-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    for (rel, text) in [
        ("host/generation", "7"),
        ("host/events", "3"),
        ("host/inventory/cpus", "4"),
        ("host/inventory/online_cpus", "4"),
        ("host/inventory/blocks", "16"),
        ("host/inventory/online_blocks", "15"),
        ("host/inventory/block_mib", "128"),
        ("host/inventory/nodes", "2"),
        ("host/free_cpus", "2-3"),
        ("host/initial_cpus", "1"),
        ("vdpa/hwc0/guest_id", "1"),
        ("vdpa/hwc0/cpus", "0-1"),
        ("vdpa/hwc0/blocks", ""),
        ("vdpa/hwc0/allocation/cpus", "2"),
        ("vdpa/hwc0/allocation/memory_mib", "0"),
        ("vdpa/hwc0/owed/cpus", "1"),
        ("vdpa/hwc0/owed/blocks", "0"),
        ("vdpa/hwc0/quota_cpus", "2"),
        ("vdpa/hwc0/vm", "none"),
        ("vdpa/hwc0/requests", "3"),
        ("guest/period_ms", "1000"),
        ("guest/horizon", "5"),
        ("guest/devices", "1"),
        ("vdpa/hwc0/uevent", "VDPA_DEVICE=hwc0"),
        ("vdpa/hwc0/driver_override", "(null)"),
        ("vdpa/hwc0/power/runtime_status", "unsupported"),
    ] {
        put(&root, rel, text);
    }
    std::os::unix::fs::symlink("../vdpa/hwc0", root.join("host/hwc0")).unwrap();
    std::os::unix::fs::symlink("../power", root.join("vdpa/hwc0/subsystem")).unwrap();
    guest_device(&root, "virtio0", "7");
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

/// `ctl`, for a command that may not end by itself (watch): killed, and the
/// test failed, if it runs for more than 30 s.
fn ctl_bounded(root: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hwconveyctl"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!(
                "hwconveyctl {args:?} did not end within 30 s; it printed: {}",
                stdout(&o)
            );
        }
        sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
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
    // A subdirectory: an object of its files, numbers as numbers.
    assert_eq!(
        v["host"]["inventory"],
        json!({"block_mib": 128, "blocks": 16, "cpus": 4, "nodes": 2,
               "online_blocks": 15, "online_cpus": 4})
    );
    // The host's subdirectory is no device.
    assert_eq!(
        v["host"]["guests"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["hwc0"]
    );
    assert_eq!(v["host"]["guests"]["hwc0"]["cpus"], json!([0, 1]));
    assert_eq!(v["host"]["guests"]["hwc0"]["blocks"], json!([]));
    assert_eq!(v["host"]["guests"]["hwc0"]["vm"], Value::Null);
    // A count of CPUs in a subdirectory, not a list of CPU 2.
    assert_eq!(
        v["host"]["guests"]["hwc0"]["allocation"],
        json!({"cpus": 2, "memory_mib": 0})
    );
    assert_eq!(
        v["host"]["guests"]["hwc0"]["owed"],
        json!({"blocks": 0, "cpus": 1})
    );
    // The driver core's files, links and directories are not hwconvey's.
    let dev = v["host"]["guests"]["hwc0"].as_object().unwrap();
    for other in ["uevent", "driver_override", "power", "subsystem"] {
        assert!(!dev.contains_key(other), "{other} in {dev:?}");
    }
    assert_eq!(dev.len(), 8, "{dev:?}");
    // The guest: its knobs and device count, and each bound device's
    // hwconvey files through its link, without the virtio core's.
    let guest = v["guest"].as_object().unwrap();
    assert_eq!(v["guest"]["period_ms"], json!(1000));
    assert_eq!(v["guest"]["devices"], json!(1));
    assert!(!guest.contains_key("virtio0"), "{guest:?}");
    let bound = v["guest"]["bound"]
        .as_object()
        .expect("guest devices under \"bound\"");
    assert_eq!(bound.keys().collect::<Vec<_>>(), ["virtio0"]);
    let dev = bound["virtio0"].as_object().unwrap();
    assert_eq!(dev["generation"], json!(7));
    assert_eq!(dev["last_update_ns"], json!(81234567));
    assert_eq!(dev["allocation"], json!({"cpus": 2, "memory_mib": 0}));
    // No answer yet: id 0, and names "none", kept as names.
    assert_eq!(
        dev["last_response"],
        json!({"amount": 0, "generation": 0, "id": 0, "kind": "none",
               "reason": "none", "status": "none"})
    );
    assert_eq!(
        dev["last_diff"],
        json!({"generation": 7, "my_cpus_gained": 1, "my_cpus_lost": 0})
    );
    // The request is written, never read; the virtio core's files are not hwconvey's.
    for other in [
        "request",
        "device",
        "vendor",
        "status",
        "features",
        "modalias",
        "uevent",
        "power",
        "subsystem",
        "driver",
    ] {
        assert!(!dev.contains_key(other), "{other} in {dev:?}");
    }
    assert_eq!(dev.len(), 7, "{dev:?}");

    let o = ctl(&r.0, &["status"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{o:?}");
    assert!(out.contains("\n-- guest/virtio0 --\n"), "{out}");
    // Aligned on the longest name, a subdirectory's files a line each.
    let guest_line = |name: &str, value: &str| format!("\n{name:24}  {value}\n");
    assert!(out.contains(&guest_line("generation", "7")), "{out}");
    assert!(
        out.contains(&guest_line("last_response/status", "none")),
        "{out}"
    );
    assert!(out.contains(&guest_line("allocation/cpus", "2")), "{out}");
    assert!(out.contains("\ninventory/online_blocks  15\n"), "{out}");
    assert!(
        !out.contains("vendor") && !out.contains("modalias") && !out.contains("request"),
        "{out}"
    );

    let o = ctl(&r.0, &["guests"]);
    let out = stdout(&o);
    let mut lines = out.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("DEVICE  GUEST  RUN  CPUS  BLOCKS  MEM_MIB"),
        "{out}"
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("hwc0    1      ?    0-1   -       0 "),
        "{row}"
    );
    assert!(row.ends_with(" 3"), "{row}");
}

#[test]
fn get_set_and_errors() {
    let r = tree("getset");
    let o = ctl(&r.0, &["set", "host/hwc0/quota_cpus", "4"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&ctl(&r.0, &["get", "host/hwc0/quota_cpus"])), "4\n");
    // A subdirectory, as an object; one of its files, as its value.
    assert_eq!(
        stdout(&ctl(&r.0, &["--json", "get", "host/hwc0/allocation"])),
        "{\"cpus\":2,\"memory_mib\":0}\n"
    );
    assert_eq!(
        stdout(&ctl(&r.0, &["get", "host/hwc0/allocation"])),
        "cpus        2\nmemory_mib  0\n"
    );
    assert_eq!(
        stdout(&ctl(&r.0, &["--json", "get", "host/hwc0/allocation/cpus"])),
        "2\n"
    );
    assert_eq!(
        stdout(&ctl(&r.0, &["--json", "get", "host/inventory/online_cpus"])),
        "4\n"
    );
    assert_eq!(
        stdout(&ctl(&r.0, &["get", "guest/virtio0/last_response/kind"])),
        "none\n"
    );
    assert_eq!(
        stdout(&ctl(
            &r.0,
            &["--json", "get", "guest/virtio0/last_response/kind"]
        )),
        "\"none\"\n"
    );

    assert_eq!(
        stdout(&ctl(&r.0, &["get", "guest/virtio0/generation"])),
        "7\n"
    );
    let o = ctl(&r.0, &["set", "guest/period_ms", "5000"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&ctl(&r.0, &["get", "guest/period_ms"])), "5000\n");

    // Leaving the tree, a missing file, a missing module, bad usage.
    let o = ctl(&r.0, &["get", "../etc/passwd"]);
    assert_eq!(o.status.code(), Some(1));
    // Through a device's link, only the device's own files: not the driver
    // core's or the virtio core's, nor what is further down (its bus, its
    // driver).
    for path in [
        "host/hwc0/uevent",
        "host/hwc0/power/runtime_status",
        "host/hwc0/subsystem",
        "host/hwc0/power",
        "guest/virtio0/vendor",
        "guest/virtio0/modalias",
        "guest/virtio0/uevent",
        "guest/virtio0/driver",
        "guest/virtio0/power/runtime_status",
        "guest/virtio0/power",
        "guest/virtio0/allocation/cpus/x",
        "guest/virtio0/samples_recent",
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

fn watch_json(root: &Path, count: &str) -> Vec<Value> {
    let o = ctl_bounded(
        root,
        &["--json", "watch", "--interval", "20", "--count", count],
    );
    assert!(o.status.success(), "{o:?}");
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn watch_reports_changes() {
    let r = tree("watch");
    let root = r.0.clone();
    let writer = spawn(move || {
        sleep(Duration::from_millis(300));
        put(&root, "host/generation", "8");
        put(&root, "host/hwc0/cpus", "0-2");
        put(&root, "guest/virtio0/generation", "8");
        put(&root, "guest/virtio0/allocation/cpus", "3");
    });
    let events = watch_json(&r.0, "4");
    writer.join().unwrap();
    // What wakes it: the host's events, the guest's device count, and the
    // bound guest device's events.
    assert_eq!(
        events[0]["watching"],
        json!(["host/events", "guest/devices", "guest/virtio0/events"])
    );
    let find = |path: &str| events.iter().find(|e| e["path"] == json!(path)).cloned();
    let g = find("host/generation").expect("generation event");
    assert_eq!((g["old"].clone(), g["new"].clone()), (json!(7), json!(8)));
    let c = find("host/hwc0/cpus").expect("cpus event");
    assert_eq!(c["new"], json!([0, 1, 2]));
    let g = find("guest/virtio0/generation").expect("guest device generation event");
    assert_eq!((g["old"].clone(), g["new"].clone()), (json!(7), json!(8)));
    // A file of a subdirectory, by its path; a count, not a list.
    let a = find("guest/virtio0/allocation/cpus").expect("guest device allocation event");
    assert_eq!((a["old"].clone(), a["new"].clone()), (json!(2), json!(3)));
}

#[test]
fn watch_follows_guest_devices() {
    let r = tree("watchdevs");
    let root = r.0.clone();
    // A device binds (its link appears), then the first unbinds (its link
    // goes, then its files).
    let writer = spawn(move || {
        sleep(Duration::from_millis(300));
        guest_device(&root, "virtio3", "9");
        put(&root, "guest/devices", "2");
        sleep(Duration::from_millis(300));
        fs::remove_file(root.join("guest/virtio0")).unwrap();
        put(&root, "guest/devices", "1");
    });
    // virtio3's watched files appear, virtio0's go.
    let events = watch_json(&r.0, &(2 * WATCHED_PER_GUEST_DEVICE).to_string());
    writer.join().unwrap();
    let find = |path: &str| events.iter().find(|e| e["path"] == json!(path)).cloned();
    let g = find("guest/virtio3/generation").expect("the new device's generation");
    assert_eq!(
        (g["old"].clone(), g["new"].clone()),
        (Value::Null, json!(9))
    );
    let g = find("guest/virtio0/generation").expect("the unbound device's generation");
    assert_eq!(
        (g["old"].clone(), g["new"].clone()),
        (json!(7), Value::Null)
    );
    let k = find("guest/virtio3/last_response/kind").expect("the new device's last answer");
    assert_eq!(
        (k["old"].clone(), k["new"].clone()),
        (Value::Null, json!("none"))
    );
    let k = find("guest/virtio0/last_response/id").expect("the unbound device's last answer");
    assert_eq!(
        (k["old"].clone(), k["new"].clone()),
        (json!(0), Value::Null)
    );
    assert_eq!(events.len(), 1 + 2 * WATCHED_PER_GUEST_DEVICE, "{events:?}");
    // The virtio core's files are never watched.
    assert!(
        !events.iter().any(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.split('/').nth(2) == Some("status"))
        }),
        "{events:?}"
    );
}

/// Plays the guest module for device `dev`: answers what is written to its
/// request file (through the device's own directory) with `answer`, "id <n>
/// kind <k> ...": a file of `last_response/` per pair, then one more
/// response counted.
fn responder(root: &Path, dev: &str, want: &str, answer: &str) -> std::thread::JoinHandle<bool> {
    let (root, dev, want, answer) = (
        root.to_owned(),
        dev.to_owned(),
        want.to_owned(),
        answer.to_owned(),
    );
    spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let req = fs::read_to_string(root.join(format!("virtio/{dev}/request"))).unwrap();
            if req.trim() == want {
                let words: Vec<&str> = answer.split_whitespace().collect();
                for pair in words.chunks(2) {
                    put(
                        &root,
                        &format!("virtio/{dev}/last_response/{}", pair[0]),
                        pair[1],
                    );
                }
                put(&root, &format!("virtio/{dev}/responses"), "4");
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            sleep(Duration::from_millis(5));
        }
    })
}

#[test]
fn request_waits_for_the_answer() {
    let r = tree("request");
    let responder = responder(
        &r.0,
        "virtio0",
        "cpus 2 node 1",
        "id 4 kind cpus status denied reason quota amount 0 generation 7",
    );
    let o = ctl(&r.0, &["--json", "request", "cpus", "2", "--node", "1"]);
    assert!(responder.join().unwrap(), "the request was never written");
    // Denied: the answer is printed and the exit status says so.
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        v,
        json!({"id": 4, "kind": "cpus", "status": "denied", "reason": "quota",
               "amount": 0, "generation": 7})
    );
}

#[test]
fn request_through_the_named_device() {
    let r = tree("requestdev");
    guest_device(&r.0, "virtio3", "7");
    put(&r.0, "guest/devices", "2");
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // Two devices bound: which one must be said.
    let o = ctl(&r.0, &["request", "cpus", "1"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let e = stderr(&o);
    assert!(
        e.contains("--device") && e.contains("virtio0") && e.contains("virtio3"),
        "{e}"
    );
    // A device that is not bound (or not a device) is refused, and nothing is sent.
    for name in ["virtio9", "../virtio/virtio3", "period_ms"] {
        let o = ctl(&r.0, &["request", "--device", name, "cpus", "1"]);
        assert_eq!(o.status.code(), Some(1), "{name}: {o:?}");
        assert!(stderr(&o).contains(name), "{name}: {o:?}");
    }
    for dev in ["virtio0", "virtio3"] {
        let req = fs::read_to_string(r.0.join(format!("virtio/{dev}/request"))).unwrap();
        assert_eq!(req.trim(), "none", "{dev}");
    }

    // Named: the request goes through that device, whose answer is printed.
    let answer = "id 4 kind cpus status granted reason none amount 1 generation 8";
    let responder = responder(&r.0, "virtio3", "cpus 1", answer);
    let o = ctl(&r.0, &["request", "--device", "virtio3", "cpus", "1"]);
    assert!(responder.join().unwrap(), "the request was never written");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), format!("{answer}\n"));
    let req = fs::read_to_string(r.0.join("virtio/virtio0/request")).unwrap();
    assert_eq!(req.trim(), "none", "virtio0 got the request");

    // No device bound: nothing to send through.
    for dev in ["virtio0", "virtio3"] {
        fs::remove_file(r.0.join(format!("guest/{dev}"))).unwrap();
    }
    put(&r.0, "guest/devices", "0");
    let o = ctl(&r.0, &["request", "cpus", "1"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr(&o).contains("no hwconvey device is bound"), "{o:?}");
}
