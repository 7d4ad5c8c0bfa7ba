// SPDX-License-Identifier: GPL-2.0

//! What the attribute texts mean, as JSON values.
//!
//! The modules write one value per file (see
//! `Documentation/ABI/testing/sysfs-kernel-hwconvey` and, for the devices'
//! files, `sysfs-bus-vdpa-devices-hwconvey` and
//! `sysfs-bus-virtio-devices-hwconvey` beside it): a number, a name, "none",
//! or a range list. Values that belong together are files of a subdirectory,
//! each one word: a number or a name. This turns each into the JSON a script
//! would want, and falls back to the plain string for anything it does not
//! recognise, so that a newer module never breaks the tool.

use hwconvey_proto::idlist;
use serde_json::Value;

/// Attributes whose text is a range list of ids: the host's free CPUs, a
/// host device's CPUs and memory blocks.
const ID_LISTS: &[&str] = &["free_cpus", "cpus", "blocks"];

/// The JSON value of attribute `name` holding `text`. `name` is the file's
/// name in its directory, or for a file of a subdirectory
/// "<subdirectory>/<file>" ([`crate::tree::attribute_name`]): a
/// subdirectory's `cpus` is a count, not a list.
pub fn value(name: &str, text: &str) -> Value {
    let text = text.trim_end_matches('\n');
    if name.contains('/') {
        // One word: a number, or a name ("none" among them: a kind, a status, a reason).
        return scalar(text);
    }
    if text.trim() == "none" {
        return Value::Null;
    }
    if ID_LISTS.contains(&name) {
        if let Some(ids) = id_list(text) {
            return ids;
        }
    }
    scalar(text)
}

/// A range list as an array of ids, or `None` if it is not one.
pub fn id_list(text: &str) -> Option<Value> {
    let mut ids = Vec::new();
    for range in idlist::parse(text, u32::MAX) {
        let (a, b) = range.ok()?;
        // A list this tool prints stays small; refuse absurd ones rather
        // than allocate for them.
        if ids.len() as u64 + u64::from(b - a) >= 1 << 20 {
            return None;
        }
        ids.extend((a..=b).map(Value::from));
    }
    Some(Value::Array(ids))
}

/// A number, or the text as a string.
pub fn scalar(text: &str) -> Value {
    let word = text.trim();
    if let Ok(n) = word.parse::<i64>() {
        return Value::from(n);
    }
    if let Ok(n) = word.parse::<u64>() {
        return Value::from(n);
    }
    Value::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes() {
        assert_eq!(value("generation", "12\n"), json!(12));
        assert_eq!(value("work_ns", "18446744073709551615\n"), json!(u64::MAX));
        assert_eq!(value("owner_pid", "none\n"), Value::Null);
        assert_eq!(value("vm", "3\n"), json!(3));
        assert_eq!(value("free_cpus", "0-2,5\n"), json!([0, 1, 2, 5]));
        assert_eq!(value("free_cpus", "\n"), json!([]));
        assert_eq!(value("cpus", "3,5-6"), json!([3, 5, 6]));
        assert_eq!(value("cpus", "2"), json!([2]));
        assert_eq!(value("blocks", ""), json!([]));
    }

    #[test]
    fn a_subdirectory_holds_words() {
        // A count, not a list of one CPU.
        assert_eq!(value("allocation/cpus", "2\n"), json!(2));
        assert_eq!(value("owed/blocks", "0\n"), json!(0));
        assert_eq!(value("inventory/cpus", "4\n"), json!(4));
        // A name, "none" too: the reason of an answer that has none.
        assert_eq!(value("last_response/reason", "none\n"), json!("none"));
        assert_eq!(value("last_response/status", "partial\n"), json!("partial"));
        assert_eq!(value("projection/trend_mcpu", "-250\n"), json!(-250));
    }

    #[test]
    fn unknown_shapes_stay_strings() {
        assert_eq!(value("x", "cpus 2 memory_mib"), json!("cpus 2 memory_mib"));
        assert_eq!(value("x", "Hello World"), json!("Hello World"));
        assert_eq!(value("free_cpus", "3-1"), json!("3-1"));
        assert_eq!(
            value("x", "1 busy_mcpu 5\n2 x"),
            json!("1 busy_mcpu 5\n2 x")
        );
    }
}
