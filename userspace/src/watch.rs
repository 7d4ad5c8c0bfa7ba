// SPDX-License-Identifier: GPL-2.0

//! Watching the tree for what changes: new generations, allocations, diffs,
//! requests and answers, devices coming and going. A subdirectory's files
//! are watched one by one ("guest/virtio0/last_response/status"), and read
//! together as of one state.
//!
//! sysfs does not tell inotify about attribute changes. The modules count
//! the changes a watcher wants in `events` files and wake those who poll(2)
//! them (`POLLPRI`): the host in `host/events`; the guest in each bound
//! device's `guest/<device>/events`, and in `guest/devices` when a device
//! binds or unbinds. A watcher sleeps in poll(2) on those files and samples
//! the attributes that describe events when woken, or when its interval runs
//! out (for what is not announced: counters), and reports differences
//! between samples. Each time it wakes it looks at the guest's device links
//! again, and polls the `events` files of the devices bound since.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::thread::sleep;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::tree::{Side, Tree};

/// The files that the modules announce changes through, relative to the
/// root: the host's `events`, the guest's `devices` (a device bound or
/// unbound) and each bound guest device's `events`.
pub fn event_files(tree: &Tree) -> Vec<String> {
    let mut files = Vec::new();
    if tree.has(Side::Host) {
        files.push("host/events".to_owned());
    }
    if tree.has(Side::Guest) {
        files.push("guest/devices".to_owned());
        for dev in tree.guest_devices().unwrap_or_default() {
            files.push(format!("guest/{dev}/events"));
        }
    }
    files
}

/// The files announcing changes ([`event_files`]), open for poll(2).
pub struct Events {
    files: Vec<(String, File)>,
}

impl Events {
    /// Opens the files announcing changes and reads each, so that the next
    /// change wakes [`Events::wait`]: open them before the first sample,
    /// which then cannot miss a change.
    pub fn open(tree: &Tree) -> Self {
        let mut events = Self { files: Vec::new() };
        events.reopen(tree);
        events
    }

    /// Looks at the tree again: closes the files of what went (a module
    /// unloaded, a guest device unbound: its link is gone) and opens those
    /// not open yet (a module loaded, or loaded again, a guest device bound
    /// since). Call it before sampling, and so after `guest/devices` woke.
    pub fn reopen(&mut self, tree: &Tree) {
        let wanted = event_files(tree);
        self.files.retain(|(n, _)| wanted.contains(n));
        for rel in wanted {
            if self.files.iter().any(|(n, _)| *n == rel) {
                continue;
            }
            let Ok(path) = tree.path(&rel) else { continue };
            let Ok(file) = File::open(path) else { continue };
            if rearm(&file).is_ok() {
                self.files.push((rel, file));
            }
        }
    }

    /// The files watched, relative to the root.
    pub fn names(&self) -> Vec<&str> {
        self.files.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Waits until a module announces a change or `timeout` passes; whether
    /// one did. A file that went away (its module or device: it polls as an
    /// error for ever and no longer reads) is closed; without files, this
    /// only sleeps.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        if self.files.is_empty() {
            sleep(timeout);
            return Ok(false);
        }
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let mut fds: Vec<PollFd<'_>> = self
            .files
            .iter()
            .map(|(_, f)| PollFd::new(f.as_fd(), PollFlags::POLLPRI))
            .collect();
        let n = match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        let woken: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut i = 0;
        self.files.retain(|(_, file)| {
            let woke = woken.get(i).copied().unwrap_or(false);
            i += 1;
            // A removed file's read fails: its module is gone.
            !woke || rearm(file).is_ok()
        });
        Ok(n > 0)
    }
}

/// Reads `file` from the start: sysfs wakes a poller again only for changes
/// after its last read.
fn rearm(file: &File) -> io::Result<()> {
    let mut buf = [0u8; 64];
    file.read_at(&mut buf, 0).map(|_| ())
}

/// Host attributes that change on events.
const HOST_FILES: &[&str] = &[
    "generation",
    "free_cpus",
    "cpu_events",
    "memory_events",
    "inventory/online_cpus",
    "inventory/online_blocks",
];
/// Per-device attributes that change on events.
const DEVICE_FILES: &[&str] = &[
    "running",
    "cpus",
    "blocks",
    "allocation/cpus",
    "allocation/memory_mib",
    "owed/cpus",
    "owed/blocks",
    "requests",
    "bad_messages",
    "dropped_updates",
];
/// Attributes of each guest device that change on events.
const GUEST_FILES: &[&str] = &[
    "generation",
    "allocation/cpus",
    "allocation/memory_mib",
    "last_diff/generation",
    "last_diff/my_cpus_gained",
    "last_diff/my_cpus_lost",
    "last_diff/my_blocks_gained",
    "last_diff/my_blocks_lost",
    "last_response/id",
    "last_response/kind",
    "last_response/status",
    "last_response/reason",
    "last_response/amount",
    "bad_messages",
];

/// The watched attributes' texts at one moment, by path
/// ("guest/virtio0/generation", "guest/virtio0/last_response/status"). A
/// file that does not read (its device went) is absent.
pub type Sample = BTreeMap<String, String>;

/// Reads `files` of directory `dir` into `s`: the files of one subdirectory
/// ("last_response/id", "last_response/status") as of one state
/// ([`Tree::read_all`]), the others one by one.
fn read_into(tree: &Tree, dir: &str, files: &[&str], s: &mut Sample) {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in files {
        let (sub, name) = match f.rsplit_once('/') {
            Some((sub, name)) => (format!("{dir}/{sub}"), name),
            None => (dir.to_owned(), *f),
        };
        groups.entry(sub).or_default().push(name.to_owned());
    }
    for (sub, names) in groups {
        if sub == dir {
            for name in names {
                let rel = format!("{dir}/{name}");
                if let Ok(v) = tree.read(&rel) {
                    s.insert(rel, v);
                }
            }
        } else {
            for (name, text) in tree.read_all(&sub, &names) {
                if let Ok(v) = text {
                    s.insert(format!("{sub}/{name}"), v);
                }
            }
        }
    }
}

/// Reads every watched attribute.
pub fn sample(tree: &Tree) -> Sample {
    let mut s = Sample::new();
    if tree.has(Side::Host) {
        read_into(tree, "host", HOST_FILES, &mut s);
        for dev in tree.devices().unwrap_or_default() {
            read_into(tree, &format!("host/{dev}"), DEVICE_FILES, &mut s);
        }
    }
    if tree.has(Side::Guest) {
        for dev in tree.guest_devices().unwrap_or_default() {
            read_into(tree, &format!("guest/{dev}"), GUEST_FILES, &mut s);
        }
    }
    s
}

/// One difference between two samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The attribute, relative to the root.
    pub path: String,
    /// Its text before, if it existed.
    pub old: Option<String>,
    /// Its text now, if it exists.
    pub new: Option<String>,
}

/// What differs from `old` to `new`, by path.
pub fn changes(old: &Sample, new: &Sample) -> Vec<Change> {
    let mut out = Vec::new();
    for (path, v) in new {
        if old.get(path) != Some(v) {
            out.push(Change {
                path: path.clone(),
                old: old.get(path).cloned(),
                new: Some(v.clone()),
            });
        }
    }
    for (path, v) in old {
        if !new.contains_key(path) {
            out.push(Change {
                path: path.clone(),
                old: Some(v.clone()),
                new: None,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, &str)]) -> Sample {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reports_changed_new_and_gone() {
        let a = s(&[
            ("host/generation", "4"),
            ("host/hwc0/cpus", "0"),
            ("guest/virtio0/generation", "4"),
        ]);
        let b = s(&[
            ("host/generation", "5"),
            ("guest/virtio0/generation", "4"),
            ("host/hwc1/cpus", "1"),
        ]);
        let c = changes(&a, &b);
        let paths: Vec<_> = c
            .iter()
            .map(|c| (c.path.as_str(), c.old.as_deref(), c.new.as_deref()))
            .collect();
        assert_eq!(
            paths,
            [
                ("host/generation", Some("4"), Some("5")),
                ("host/hwc0/cpus", Some("0"), None),
                ("host/hwc1/cpus", None, Some("1")),
            ]
        );
        assert!(changes(&b, &b).is_empty());
    }
}
