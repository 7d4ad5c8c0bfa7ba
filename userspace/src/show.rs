// SPDX-License-Identifier: GPL-2.0

//! Reading a whole side of the tree, as JSON or as tables.

use std::fmt::Write as _;
use std::io;

use serde_json::{json, Map, Value};

use crate::text;
use crate::tree::{attribute_name, describe, Side, Tree};

/// The attributes of directory `rel`, each with its text or its error, and
/// its subdirectories', each file as "<subdirectory>/<file>", sorted by
/// name. The files of a directory, and those of each subdirectory, are read
/// as of one state ([`Tree::read_all`]); a file that fails to read gives its
/// error (a device's files fail with ENODEV once it is gone).
pub fn attributes(tree: &Tree, rel: &str) -> io::Result<Vec<(String, io::Result<String>)>> {
    let mut all = tree.read_all(rel, &tree.files(rel)?);
    for sub in tree.subdirs(rel).unwrap_or_default() {
        let dir = format!("{rel}/{sub}");
        let files = tree.files(&dir).unwrap_or_default();
        all.extend(
            tree.read_all(&dir, &files)
                .into_iter()
                .map(|(name, text)| (format!("{sub}/{name}"), text)),
        );
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(all)
}

/// Every attribute in directory `rel`, parsed; a subdirectory's files as an
/// object under its name (`"allocation": {"cpus": 2, "memory_mib": 512}`).
/// A file that fails to read shows its error (a device's files fail with
/// ENODEV once it is gone).
pub fn dir_json(tree: &Tree, rel: &str) -> Value {
    let attrs = match attributes(tree, rel) {
        Ok(a) => a,
        Err(e) => return json!({ "error": describe(&e) }),
    };
    let mut obj = Map::new();
    for (name, text) in attrs {
        let v = match text {
            Ok(t) => text::value(&attribute_name(&format!("{rel}/{name}")), &t),
            Err(e) => json!({ "error": describe(&e) }),
        };
        match name.split_once('/') {
            Some((sub, file)) => {
                let entry = obj
                    .entry(sub.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(o) = entry {
                    o.insert(file.to_owned(), v);
                }
            }
            None => {
                obj.insert(name, v);
            }
        }
    }
    Value::Object(obj)
}

/// Where a side's JSON puts its devices' files, by device: the host's
/// under "guests" (a device per guest), the guest's under "bound" (the
/// devices bound to the guest driver).
pub const fn devices_key(side: Side) -> &'static str {
    match side {
        Side::Host => "guests",
        Side::Guest => "bound",
    }
}

/// One side as JSON: its files, and each device's, through its link, under
/// [`devices_key`].
pub fn side_json(tree: &Tree, side: Side) -> Value {
    let mut v = dir_json(tree, side.dir());
    let devices = match side {
        Side::Host => tree.devices(),
        Side::Guest => tree.guest_devices(),
    };
    let mut by_device = Map::new();
    for dev in devices.unwrap_or_default() {
        let files = dir_json(tree, &format!("{}/{dev}", side.dir()));
        by_device.insert(dev, files);
    }
    if let Value::Object(o) = &mut v {
        o.insert(devices_key(side).into(), Value::Object(by_device));
    }
    v
}

/// Both sides, those whose module is loaded.
pub fn status_json(tree: &Tree) -> Value {
    let mut obj = Map::new();
    for side in [Side::Host, Side::Guest] {
        if tree.has(side) {
            obj.insert(side.dir().into(), side_json(tree, side));
        }
    }
    Value::Object(obj)
}

/// The attributes of `rel` as an aligned "name  value" list, a
/// subdirectory's as "allocation/cpus  2"; multi-line values are indented
/// under their name.
pub fn dir_text(tree: &Tree, rel: &str, out: &mut String) {
    let attrs = attributes(tree, rel).unwrap_or_default();
    let width = attrs.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, text) in attrs {
        let value = text.unwrap_or_else(|e| format!("<{}>", describe(&e)));
        if value.contains('\n') {
            let _ = writeln!(out, "{name}:");
            for l in value.lines() {
                let _ = writeln!(out, "    {l}");
            }
        } else {
            let _ = writeln!(out, "{name:width$}  {value}");
        }
    }
}

/// The guest's side as text: its knobs and device count, then, per bound
/// device, that device's files under a "-- guest/<device> --" line.
pub fn guest_text(tree: &Tree, out: &mut String) {
    dir_text(tree, Side::Guest.dir(), out);
    let devices = tree.guest_devices().unwrap_or_default();
    for dev in &devices {
        let _ = writeln!(out, "\n-- guest/{dev} --");
        dir_text(tree, &format!("guest/{dev}"), out);
    }
    if devices.is_empty() {
        let _ = writeln!(
            out,
            "(no hwconvey device bound to the guest driver: no guest/<device> link)"
        );
    }
}

/// Columns of the guests table: header and attribute file.
const GUEST_COLUMNS: &[(&str, &str)] = &[
    ("GUEST", "guest_id"),
    ("RUN", "running"),
    ("CPUS", "cpus"),
    ("BLOCKS", "blocks"),
    ("MEM_MIB", "allocation/memory_mib"),
    ("QUOTA_CPUS", "quota_cpus"),
    ("QUOTA_MIB", "quota_memory_mib"),
    ("SENT", "messages_sent"),
    ("RECV", "messages_received"),
    ("BAD", "bad_messages"),
    ("DROPPED", "dropped_updates"),
    ("REQUESTS", "requests"),
];

/// One row per host device (one per guest).
pub fn guests_text(tree: &Tree, out: &mut String) {
    let devices = tree.devices().unwrap_or_default();
    let mut rows = vec![std::iter::once("DEVICE".to_owned())
        .chain(GUEST_COLUMNS.iter().map(|(h, _)| (*h).to_owned()))
        .collect::<Vec<_>>()];
    for dev in &devices {
        let mut row = vec![dev.clone()];
        for (_, file) in GUEST_COLUMNS {
            let v = tree
                .read(&format!("host/{dev}/{file}"))
                .unwrap_or_else(|_| "?".into());
            row.push(if v.is_empty() { "-".to_owned() } else { v });
        }
        rows.push(row);
    }
    table(&rows, out);
    if devices.is_empty() {
        let _ = writeln!(
            out,
            "(no hwconvey devices: vdpa dev add name <name> mgmtdev faux/hwconvey)"
        );
    }
}

/// Left-aligned columns, two spaces apart.
pub fn table(rows: &[Vec<String>], out: &mut String) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:w$}  ", w = widths[c]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["A".to_owned(), "BBB".to_owned(), "C".to_owned()],
            vec!["aaaa".to_owned(), "b".to_owned(), "c c".to_owned()],
        ];
        let mut out = String::new();
        table(&rows, &mut out);
        assert_eq!(out, "A     BBB  C\naaaa  b    c c\n");
    }
}
