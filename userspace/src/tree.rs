// SPDX-License-Identifier: GPL-2.0

//! The hwconvey sysfs tree: `/sys/kernel/hwconvey/{host,guest}`.
//!
//! Each side links its devices' directories: `host/<device>` to the vDPA
//! device's (`/sys/bus/vdpa/devices/<device>/`), `guest/<device>` to the
//! virtio device's (`/sys/bus/virtio/devices/<device>/`), where the device's
//! hwconvey files are, beside the driver core's and the bus's own.
//!
//! A file holds one value. Values that belong together are files of a
//! subdirectory, one level down: the host's `inventory/`, a host device's
//! `allocation/` and `owed/`, a guest device's `allocation/`, `inventory/`,
//! `last_response/`, `projection/` and `last_diff/` ([`HOST_SUBDIRS`],
//! [`HOST_DEVICE_SUBDIRS`], [`GUEST_DEVICE_SUBDIRS`]). Files of one
//! subdirectory read one after the other may show two states;
//! [`Tree::read_all`] reads them as of one.
//!
//! Paths given by a user are relative to the root ("host/initial_cpus",
//! "host/hwc0/quota_cpus", "host/hwc0/allocation/cpus",
//! "guest/virtio0/generation") and may not leave it. The root can be moved
//! (`--root`) so that the tools can be tested against a copy.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

/// Where the modules put their directories.
pub const DEFAULT_ROOT: &str = "/sys/kernel/hwconvey";

/// One side of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `host/`, present while `hwconvey_host` is loaded.
    Host,
    /// `guest/`, present while `hwconvey_guest` is loaded.
    Guest,
}

impl Side {
    /// The directory name under the root.
    pub const fn dir(self) -> &'static str {
        match self {
            Side::Host => "host",
            Side::Guest => "guest",
        }
    }
}

/// A hwconvey sysfs tree.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
}

/// The attribute subdirectories of `side`'s own directory.
fn side_subdirs(side: &OsStr) -> &'static [&'static str] {
    if side == Side::Host.dir() {
        HOST_SUBDIRS
    } else {
        &[]
    }
}

/// The attribute subdirectories of a device's directory on `side`.
fn device_subdirs(side: &OsStr) -> &'static [&'static str] {
    if side == Side::Host.dir() {
        HOST_DEVICE_SUBDIRS
    } else if side == Side::Guest.dir() {
        GUEST_DEVICE_SUBDIRS
    } else {
        &[]
    }
}

fn listed(list: &[&str], name: &OsStr) -> bool {
    list.iter().any(|l| name == *l)
}

/// What a relative path names, by its shape (see [`inside`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A side, or something in a side's directory: a file, a device's link, a subdirectory.
    Side,
    /// A file of a side's subdirectory ("host/inventory/cpus").
    SideSubdirFile,
    /// Something in a device's directory: a file or a subdirectory.
    Device,
    /// A file of a device's subdirectory ("host/hwc0/allocation/cpus").
    DeviceSubdirFile,
}

/// The normal components of `rel`, or `None` if it has others (root, "..", ".").
fn names(rel: &str) -> Option<Vec<&OsStr>> {
    let path = Path::new(rel);
    let names: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    (!rel.is_empty() && names.len() == path.components().count()).then_some(names)
}

/// The shape of `rel`, if it may name a hwconvey attribute or directory: a side's file,
/// subdirectory or device link, a file of a side's subdirectory, a device's file or
/// subdirectory ("host/hwc0/quota_cpus", "guest/virtio0/last_response"), or a file of a
/// device's subdirectory ("guest/virtio0/last_response/id"); nothing further down a device's
/// directory (its driver, its bus), none of the driver core's files there, and on the guest's
/// side only the hwconvey files ([`GUEST_DEVICE_FILES`], [`GUEST_DEVICE_WRITE_ONLY`],
/// [`GUEST_DEVICE_SUBDIRS`]).
fn shape(names: &[&OsStr]) -> Option<Shape> {
    if !names.last().is_some_and(|n| hwconvey_file(n)) {
        return None;
    }
    match names {
        [] => None,
        [_] | [_, _] => Some(Shape::Side),
        [side, sub, _] if listed(side_subdirs(side), sub) => Some(Shape::SideSubdirFile),
        [side, _, entry] => {
            (*side != Side::Guest.dir() || guest_device_entry(entry)).then_some(Shape::Device)
        }
        [side, dev, sub, _] => (!listed(side_subdirs(side), dev)
            && listed(device_subdirs(side), sub))
        .then_some(Shape::DeviceSubdirFile),
        _ => None,
    }
}

/// A relative path that stays inside the tree ([`shape`]), or `EINVAL`.
fn inside(rel: &str) -> io::Result<&Path> {
    match names(rel).and_then(|n| shape(&n)) {
        Some(_) => Ok(Path::new(rel)),
        None => Err(not_inside(rel)),
    }
}

fn not_inside(rel: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{rel:?}: not a path inside the hwconvey tree"),
    )
}

/// The name of attribute `rel` in the directory it is one of the attributes of: its file
/// name, or for a file of a subdirectory "<subdirectory>/<file>" ("allocation/cpus"). What
/// its text means depends on it ([`crate::text::value`]).
pub fn attribute_name(rel: &str) -> String {
    let Some(names) = names(rel) else {
        return rel.to_owned();
    };
    let last = |n: usize| {
        names[names.len().saturating_sub(n)..]
            .iter()
            .map(|n| n.to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    };
    match shape(&names) {
        Some(Shape::SideSubdirFile | Shape::DeviceSubdirFile) => last(2),
        _ => last(1),
    }
}

impl Tree {
    /// The tree at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the module of `side` is loaded (its directory exists).
    pub fn has(&self, side: Side) -> bool {
        self.root.join(side.dir()).is_dir()
    }

    /// The full path of `rel`, checked to stay inside the tree: in a device's
    /// directory, only its files and its attribute subdirectories (not its
    /// links, such as driver and subsystem, or other directories); in a
    /// subdirectory, only its files.
    pub fn path(&self, rel: &str) -> io::Result<PathBuf> {
        let names = names(rel).ok_or_else(|| not_inside(rel))?;
        let shape = shape(&names).ok_or_else(|| not_inside(rel))?;
        let path = self.root.join(rel);
        let kind = |p: &Path| fs::symlink_metadata(p).ok().map(|m| m.file_type());
        let ok = match shape {
            Shape::Side => true,
            Shape::Device => kind(&path).is_none_or(|t| {
                t.is_file() || (t.is_dir() && listed(device_subdirs(names[0]), names[2]))
            }),
            Shape::SideSubdirFile | Shape::DeviceSubdirFile => {
                // The subdirectory itself is one, not a link to elsewhere.
                kind(path.parent().unwrap_or(&path)).is_none_or(|t| t.is_dir())
                    && kind(&path).is_none_or(|t| t.is_file())
            }
        };
        if ok {
            Ok(path)
        } else {
            Err(not_inside(rel))
        }
    }

    /// Whether `rel` is an attribute subdirectory ("host/inventory",
    /// "guest/virtio0/last_response") that exists.
    pub fn is_subdir(&self, rel: &str) -> bool {
        let Some(names) = names(rel) else {
            return false;
        };
        let named = match names.as_slice() {
            [side, sub] => listed(side_subdirs(side), sub),
            [side, dev, sub] => {
                !listed(side_subdirs(side), dev) && listed(device_subdirs(side), sub)
            }
            _ => false,
        };
        named
            && self
                .path(rel)
                .is_ok_and(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
    }

    /// The text of an attribute, without the trailing newline.
    pub fn read(&self, rel: &str) -> io::Result<String> {
        let text = fs::read_to_string(self.path(rel)?)?;
        Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
    }

    /// Writes `value` to an attribute in one `write(2)`, as sysfs expects; the
    /// error carries the errno the module returned.
    pub fn write(&self, rel: &str, value: &str) -> io::Result<()> {
        let mut file = fs::OpenOptions::new().write(true).open(self.path(rel)?)?;
        let n = file.write(value.as_bytes())?;
        if n != value.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("{rel}: short write ({n} of {} bytes)", value.len()),
            ));
        }
        Ok(())
    }

    /// The attribute files directly in `rel` (a directory), sorted by name:
    /// regular files; in a device's directory, only hwconvey's (see
    /// [`inside`]: less the driver core's own, [`DRIVER_CORE_FILES`], on the
    /// host's side; [`GUEST_DEVICE_FILES`] only on the guest's, which leaves
    /// out the write-only `request`). A subdirectory's files are
    /// [`Tree::subdirs`]'.
    pub fn files(&self, rel: &str) -> io::Result<Vec<String>> {
        inside(rel)?;
        let names = names(rel).unwrap_or_default();
        let guest_device = matches!(names.as_slice(),
            [side, dev] if *side == Side::Guest.dir() && !listed(side_subdirs(side), dev));
        self.entries(rel, |entry| {
            let name = entry.file_name();
            Ok(entry.file_type()?.is_file()
                && hwconvey_file(&name)
                && (!guest_device || listed(GUEST_DEVICE_FILES, &name)))
        })
    }

    /// The attribute subdirectories directly in `rel`, sorted by name: the
    /// host's ([`HOST_SUBDIRS`]) in a side's directory, a device's
    /// ([`HOST_DEVICE_SUBDIRS`], [`GUEST_DEVICE_SUBDIRS`]) in a device's;
    /// none elsewhere (a subdirectory holds files only).
    pub fn subdirs(&self, rel: &str) -> io::Result<Vec<String>> {
        inside(rel)?;
        let names = names(rel).unwrap_or_default();
        let candidates = match names.as_slice() {
            [side] => side_subdirs(side),
            [side, dev] if !listed(side_subdirs(side), dev) => device_subdirs(side),
            _ => &[],
        };
        let mut subdirs: Vec<String> = candidates
            .iter()
            .filter(|s| self.is_subdir(&format!("{rel}/{s}")))
            .map(|s| (*s).to_owned())
            .collect();
        subdirs.sort();
        Ok(subdirs)
    }

    /// The texts of files `names` of directory `dir` ([`Tree::read`]), read as
    /// of one state where the modules give a way to tell: the stamp, a file
    /// that changes with the state (a subdirectory's `id`, as in
    /// `last_response/`, its `generation`, as in `last_diff/`, its `samples`,
    /// as in `projection/`; else the nearest `generation` above it, the
    /// device's or the host's), reads the same before and after them. They
    /// are read again, up to [`READ_TRIES`] times in all, while it does not;
    /// without a stamp, once.
    pub fn read_all(&self, dir: &str, names: &[String]) -> Vec<(String, io::Result<String>)> {
        let stamp = self.stamp(dir);
        let read_stamp = || stamp.as_deref().and_then(|s| self.read(s).ok());
        let mut tries = 0;
        loop {
            let before = read_stamp();
            let texts: Vec<(String, io::Result<String>)> = names
                .iter()
                .map(|n| (n.clone(), self.read(&format!("{dir}/{n}"))))
                .collect();
            tries += 1;
            if before.is_none() || before == read_stamp() || tries >= READ_TRIES {
                return texts;
            }
        }
    }

    /// The file whose text changes with the state of `dir`'s files ([`Tree::read_all`]).
    fn stamp(&self, dir: &str) -> Option<String> {
        let is_file = |rel: &str| self.path(rel).is_ok_and(|p| p.is_file());
        for name in ["id", "generation", "samples"] {
            let rel = format!("{dir}/{name}");
            if is_file(&rel) {
                return Some(rel);
            }
        }
        let mut above = Path::new(dir).parent();
        while let Some(parent) = above.filter(|p| !p.as_os_str().is_empty()) {
            let rel = format!("{}/generation", parent.display());
            if is_file(&rel) {
                return Some(rel);
            }
            above = parent.parent();
        }
        None
    }

    /// The per-guest devices under `host/`, sorted by name: links to the
    /// vDPA devices' directories (directories in a copy of the tree).
    pub fn devices(&self) -> io::Result<Vec<String>> {
        self.linked(Side::Host)
    }

    /// The devices bound to the guest driver, sorted by name ("virtio0"):
    /// the links under `guest/` to the virtio devices' directories
    /// (directories in a copy of the tree).
    pub fn guest_devices(&self) -> io::Result<Vec<String>> {
        self.linked(Side::Guest)
    }

    /// The device links of `side`'s directory: entries that are directories
    /// once followed, other than the side's own subdirectories.
    fn linked(&self, side: Side) -> io::Result<Vec<String>> {
        let own = side_subdirs(OsStr::new(side.dir()));
        // A device that goes while it is listed is not listed.
        self.entries(side.dir(), |entry| {
            Ok(!listed(own, &entry.file_name())
                && fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()))
        })
    }

    fn entries(
        &self,
        rel: &str,
        keep: impl Fn(&fs::DirEntry) -> io::Result<bool>,
    ) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(self.path(rel)?)? {
            let entry = entry?;
            if keep(&entry)? {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }
}

/// How many times [`Tree::read_all`] reads files whose state moved meanwhile.
pub const READ_TRIES: usize = 5;

/// Files a host device's directory holds besides hwconvey's: the driver
/// core's and the vDPA bus's. They are not hwconvey attributes.
pub const DRIVER_CORE_FILES: &[&str] = &["uevent", "driver_override"];

/// The subdirectories of the host's directory: values that belong together,
/// a file each.
pub const HOST_SUBDIRS: &[&str] = &["inventory"];

/// The subdirectories of a host device's directory (the driver core's own,
/// such as `power/`, are not hwconvey's).
pub const HOST_DEVICE_SUBDIRS: &[&str] = &["allocation", "owed"];

/// The hwconvey files of a guest device's directory that read. The virtio
/// device's directory holds the virtio core's and the driver core's files too
/// (`device`, `vendor`, `status`, `features`, `modalias`, `uevent`, ...),
/// which vary with the kernel: only these names are hwconvey's.
pub const GUEST_DEVICE_FILES: &[&str] = &[
    "generation",
    "events",
    "messages_received",
    "updates_applied",
    "bad_messages",
    "messages_sent",
    "responses",
    "last_update_ns",
    "last_update_pass_ns",
    "sampling_ns",
];

/// The hwconvey files of a guest device's directory that only take writes:
/// they may be written, and are never read.
pub const GUEST_DEVICE_WRITE_ONLY: &[&str] = &["request"];

/// The subdirectories of a guest device's directory that are hwconvey's.
pub const GUEST_DEVICE_SUBDIRS: &[&str] = &[
    "allocation",
    "inventory",
    "last_response",
    "projection",
    "last_diff",
];

/// Whether `name` may be a hwconvey file: none of [`DRIVER_CORE_FILES`].
fn hwconvey_file(name: &OsStr) -> bool {
    !DRIVER_CORE_FILES.iter().any(|f| name == *f)
}

/// Whether `name`, in a guest device's directory, is one of hwconvey's
/// entries ([`GUEST_DEVICE_FILES`], [`GUEST_DEVICE_WRITE_ONLY`],
/// [`GUEST_DEVICE_SUBDIRS`]).
fn guest_device_entry(name: &OsStr) -> bool {
    listed(GUEST_DEVICE_FILES, name)
        || listed(GUEST_DEVICE_WRITE_ONLY, name)
        || listed(GUEST_DEVICE_SUBDIRS, name)
}

/// An I/O error as a user reads it: the message and, for an errno, its name
/// ("Invalid argument (EINVAL)").
pub fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(errno) => format!(
            "{} ({})",
            io::Error::from_raw_os_error(errno),
            errno_name(errno)
        ),
        None => e.to_string(),
    }
}

/// The symbolic name of the errnos the modules return.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ERANGE => "ERANGE",
        libc::EAGAIN => "EAGAIN",
        libc::EINTR => "EINTR",
        libc::EPROTO => "EPROTO",
        libc::EBADMSG => "EBADMSG",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ESTALE => "ESTALE",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        let t = Tree::new("/r");
        for (rel, full) in [
            ("host/hwc0/cpus", "/r/host/hwc0/cpus"),
            (
                "host/inventory/online_cpus",
                "/r/host/inventory/online_cpus",
            ),
            ("host/hwc0/allocation/cpus", "/r/host/hwc0/allocation/cpus"),
            ("host/hwc0/owed", "/r/host/hwc0/owed"),
            ("guest/virtio0/generation", "/r/guest/virtio0/generation"),
            ("guest/virtio0/request", "/r/guest/virtio0/request"),
            (
                "guest/virtio0/last_response",
                "/r/guest/virtio0/last_response",
            ),
            (
                "guest/virtio0/last_response/id",
                "/r/guest/virtio0/last_response/id",
            ),
        ] {
            assert_eq!(t.path(rel).unwrap(), Path::new(full), "{rel:?}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "host/../../x",
            "./host",
            "host/hwc0/uevent",
            "host/hwc0/power/control",
            "host/hwc0/subsystem/devices",
            "host/hwc0/allocation/cpus/x",
            "host/inventory/cpus/x",
            "host/inventory/../../x",
            "guest/virtio0/vendor",
            "guest/virtio0/uevent",
            "guest/virtio0/power",
            "guest/virtio0/power/control",
            "guest/virtio0/owed/cpus",
            // Gone: moved to debugfs, or split into a subdirectory.
            "guest/virtio0/samples_recent",
            "guest/virtio0/last_update",
        ] {
            let e = t.path(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn attributes_are_named_in_their_directory() {
        for (rel, name) in [
            ("host/generation", "generation"),
            ("host/inventory/cpus", "inventory/cpus"),
            ("host/hwc0/cpus", "cpus"),
            ("host/hwc0/allocation/cpus", "allocation/cpus"),
            ("guest/virtio0/last_diff/generation", "last_diff/generation"),
            ("guest/period_ms", "period_ms"),
        ] {
            assert_eq!(attribute_name(rel), name, "{rel:?}");
        }
    }

    #[test]
    fn errnos_are_named() {
        let e = io::Error::from_raw_os_error(libc::EINVAL);
        assert!(describe(&e).ends_with("(EINVAL)"), "{}", describe(&e));
        assert_eq!(errno_name(4095), "errno 4095");
    }
}
