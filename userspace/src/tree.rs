// SPDX-License-Identifier: GPL-2.0

//! The hwconvey sysfs tree: `/sys/kernel/hwconvey/{host,guest}`.
//!
//! Each side links its devices' directories: `host/<device>` to the vDPA
//! device's (`/sys/bus/vdpa/devices/<device>/`), `guest/<device>` to the
//! virtio device's (`/sys/bus/virtio/devices/<device>/`), where the device's
//! hwconvey files are, beside the driver core's and the bus's own.
//!
//! Paths given by a user are relative to the root ("host/initial_cpus",
//! "host/hwc0/quota_cpus", "guest/virtio0/generation") and may not leave it.
//! The root can be moved (`--root`) so that the tools can be tested against
//! a copy.

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

/// A relative path that stays inside the tree, or `EINVAL`: a side's file,
/// a device's ("host/hwc0/quota_cpus", "guest/virtio0/generation"), or a
/// directory of them; nothing further down a device's directory (its
/// driver, its bus), none of the driver core's files there, and on the
/// guest's side only the hwconvey files ([`GUEST_DEVICE_FILES`]).
fn inside(rel: &str) -> io::Result<&Path> {
    let path = Path::new(rel);
    let names: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let ok = !rel.is_empty()
        && names.len() == path.components().count()
        && names.len() <= 3
        && names.last().is_some_and(|n| hwconvey_file(n))
        && match names.as_slice() {
            [side, _, file] => *side != Side::Guest.dir() || guest_device_file(file),
            _ => true,
        };
    if ok {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?}: not a path inside the hwconvey tree"),
        ))
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

    /// The full path of `rel`, checked to stay inside the tree.
    pub fn path(&self, rel: &str) -> io::Result<PathBuf> {
        let path = self.root.join(inside(rel)?);
        // In a device's directory, only its files: not its links (driver,
        // bus) or subdirectories.
        if Path::new(rel).components().count() == 3 {
            if let Ok(m) = fs::symlink_metadata(&path) {
                if !m.is_file() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{rel:?}: not a path inside the hwconvey tree"),
                    ));
                }
            }
        }
        Ok(path)
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
    /// host's side; [`GUEST_DEVICE_FILES`] only on the guest's).
    pub fn files(&self, rel: &str) -> io::Result<Vec<String>> {
        let path = inside(rel)?;
        let guest_device = path.components().count() == 2 && path.starts_with(Side::Guest.dir());
        self.entries(rel, |entry| {
            let name = entry.file_name();
            Ok(entry.file_type()?.is_file()
                && hwconvey_file(&name)
                && (!guest_device || guest_device_file(&name)))
        })
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
    /// once followed.
    fn linked(&self, side: Side) -> io::Result<Vec<String>> {
        // A device that goes while it is listed is not listed.
        self.entries(side.dir(), |entry| {
            Ok(fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()))
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

/// Files a host device's directory holds besides hwconvey's: the driver
/// core's and the vDPA bus's. They are not hwconvey attributes.
pub const DRIVER_CORE_FILES: &[&str] = &["uevent", "driver_override"];

/// The hwconvey files of a guest device's directory. The virtio device's
/// directory holds the virtio core's and the driver core's files too
/// (`device`, `vendor`, `status`, `features`, `modalias`, `uevent`, ...),
/// which vary with the kernel: only these names are hwconvey's.
pub const GUEST_DEVICE_FILES: &[&str] = &[
    "generation",
    "events",
    "allocation",
    "messages_received",
    "updates_applied",
    "bad_messages",
    "messages_sent",
    "responses",
    "last_response",
    "request",
    "last_update",
    "last_update_pass_ns",
    "projection",
    "samples_recent",
    "sampling_ns",
    "last_diff",
    "inventory",
];

/// Whether `name` may be a hwconvey file: none of [`DRIVER_CORE_FILES`].
fn hwconvey_file(name: &std::ffi::OsStr) -> bool {
    !DRIVER_CORE_FILES.iter().any(|f| name == *f)
}

/// Whether `name`, in a guest device's directory, is one of hwconvey's files
/// ([`GUEST_DEVICE_FILES`]).
fn guest_device_file(name: &std::ffi::OsStr) -> bool {
    GUEST_DEVICE_FILES.iter().any(|f| name == *f)
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
        assert_eq!(
            t.path("host/hwc0/cpus").unwrap(),
            Path::new("/r/host/hwc0/cpus")
        );
        assert_eq!(
            t.path("guest/virtio0/generation").unwrap(),
            Path::new("/r/guest/virtio0/generation")
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "host/../../x",
            "./host",
            "host/hwc0/uevent",
            "guest/virtio0/vendor",
            "guest/virtio0/uevent",
            "guest/virtio0/power",
            "guest/virtio0/power/control",
        ] {
            let e = t.path(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn errnos_are_named() {
        let e = io::Error::from_raw_os_error(libc::EINVAL);
        assert!(describe(&e).ends_with("(EINVAL)"), "{}", describe(&e));
        assert_eq!(errno_name(4095), "errno 4095");
    }
}
