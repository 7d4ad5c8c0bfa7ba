// SPDX-License-Identifier: GPL-2.0

//! The hwconvey sysfs tree: `/sys/kernel/hwconvey/{host,guest}`.
//!
//! Paths given by a user are relative to the root ("host/initial_cpus",
//! "host/hwc0/quota_cpus") and may not leave it. The root can be moved
//! (`--root`) so that the tools can be tested against a copy.

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
/// a device's ("host/hwc0/quota_cpus"), or a directory of them; nothing
/// further down a device's directory (its driver, its bus) and none of the
/// driver core's files there.
fn inside(rel: &str) -> io::Result<&Path> {
    let path = Path::new(rel);
    let ok = !rel.is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && path.components().count() <= 3
        && !path.file_name().is_some_and(|n| {
            DRIVER_CORE_FILES
                .iter()
                .any(|f| n == std::ffi::OsStr::new(f))
        });
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
    /// regular files, less the driver core's own ([`DRIVER_CORE_FILES`]).
    pub fn files(&self, rel: &str) -> io::Result<Vec<String>> {
        self.entries(rel, |entry| {
            let name = entry.file_name();
            Ok(entry.file_type()?.is_file()
                && !DRIVER_CORE_FILES
                    .iter()
                    .any(|f| name == std::ffi::OsStr::new(f)))
        })
    }

    /// The per-guest devices under `host/`, sorted by name: links to the
    /// vDPA devices' directories (directories in a copy of the tree).
    pub fn devices(&self) -> io::Result<Vec<String>> {
        // A device deleted while it is listed is not listed.
        self.entries(Side::Host.dir(), |entry| {
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

/// Files a device's directory holds besides hwconvey's: the driver core's
/// and the vDPA bus's. They are not hwconvey attributes.
pub const DRIVER_CORE_FILES: &[&str] = &["uevent", "driver_override"];

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
        for bad in ["", "/etc/passwd", "../x", "host/../../x", "./host"] {
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
