// SPDX-License-Identifier: GPL-2.0

//! What the attribute texts mean, as JSON values.
//!
//! The modules write one value per file in a few shapes (see
//! `Documentation/ABI/testing/sysfs-kernel-hwconvey` and, for the devices'
//! files, `sysfs-bus-vdpa-devices-hwconvey` and
//! `sysfs-bus-virtio-devices-hwconvey` beside it): a number, "none", a
//! range list, "key value" pairs, one CPU per line. This turns each into the
//! JSON a script would want, and falls back to the plain string for anything
//! it does not recognise, so that a newer module never breaks the tool.

use hwconvey_proto::idlist;
use serde_json::{Map, Value};

/// Attributes whose text is a range list of ids.
const ID_LISTS: &[&str] = &["free_cpus", "blocks"];

/// The JSON value of attribute `name` (its file name) holding `text`.
pub fn value(name: &str, text: &str) -> Value {
    let text = text.trim_end_matches('\n');
    if text.trim() == "none" {
        return Value::Null;
    }
    if ID_LISTS.contains(&name) || (name == "cpus" && !text.contains(' ')) {
        if let Some(ids) = id_list(text) {
            return ids;
        }
    }
    if name == "samples_recent" {
        // "<n> busy_mcpu <b> ...": name the leading sample number.
        return Value::Array(text.lines().map(|l| line(&format!("sample {l}"))).collect());
    }
    if text.contains('\n') || name == "cpus" {
        return Value::Array(text.lines().map(line).collect());
    }
    line(text)
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

fn scalar(token: &str) -> Value {
    match token.parse::<i64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(token),
    }
}

fn is_key(token: &str) -> bool {
    token
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && token.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
}

/// One line: a number, "key value ..." pairs as an object, or the string.
///
/// Two shapes are not plain pairs: a CPU line ends with its owner as one or
/// two words ("free", "mine", "host", "guest 3"), and a request's motive is
/// a number followed by its name ("motive 1 projection").
pub fn line(text: &str) -> Value {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    match tokens.as_slice() {
        [] => return Value::from(""),
        [one] if one.parse::<i64>().is_ok() => return scalar(one),
        _ => {}
    }
    let mut obj = Map::new();
    let mut rest = tokens.as_slice();
    while let [key, tail @ ..] = rest {
        if !is_key(key) {
            return Value::from(text);
        }
        match (*key, tail) {
            ("motive", [n, name, more @ ..]) if n.parse::<u32>().is_ok() && is_key(name) => {
                obj.insert("motive".into(), Value::from(*name));
                rest = more;
            }
            ("free" | "mine" | "host", []) if obj.contains_key("cpu") => {
                obj.insert("owner".into(), Value::from(*key));
                rest = tail;
            }
            ("guest", [g]) if obj.contains_key("cpu") => {
                obj.insert("owner".into(), Value::from("guest"));
                obj.insert("guest".into(), scalar(g));
                rest = &[];
            }
            (_, [v, more @ ..]) => {
                obj.insert((*key).into(), scalar(v));
                rest = more;
            }
            (_, []) => return Value::from(text),
        }
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes() {
        assert_eq!(value("generation", "12\n"), json!(12));
        assert_eq!(value("last_response", "none\n"), Value::Null);
        assert_eq!(value("free_cpus", "0-2,5\n"), json!([0, 1, 2, 5]));
        assert_eq!(value("free_cpus", "\n"), json!([]));
        assert_eq!(value("cpus", "3,5-6"), json!([3, 5, 6]));
        assert_eq!(
            value("allocation", "cpus 2 memory_mib 256"),
            json!({"cpus": 2, "memory_mib": 256})
        );
        assert_eq!(
            value(
                "last_response",
                "id 3 kind cpus status partial reason quota amount 1 generation 9"
            ),
            json!({"id": 3, "kind": "cpus", "status": "partial", "reason": "quota",
                   "amount": 1, "generation": 9})
        );
    }

    #[test]
    fn cpu_lines_and_motives() {
        assert_eq!(
            value(
                "cpus",
                "cpu 0 node 0 free\ncpu 1 node 1 guest 4\ncpu 2 node 1 mine"
            ),
            json!([
                {"cpu": 0, "node": 0, "owner": "free"},
                {"cpu": 1, "node": 1, "owner": "guest", "guest": 4},
                {"cpu": 2, "node": 1, "owner": "mine"},
            ])
        );
        assert_eq!(
            value("cpus", "cpu 0 node 0 free"),
            json!([{"cpu": 0, "node": 0, "owner": "free"}])
        );
        assert_eq!(
            line("id 7 kind cpus amount 2 node 1 motive 1 projection demand 2400 held 2"),
            json!({"id": 7, "kind": "cpus", "amount": 2, "node": 1, "motive": "projection",
                   "demand": 2400, "held": 2})
        );
    }

    #[test]
    fn unknown_shapes_stay_strings() {
        assert_eq!(value("x", "cpus 2 memory_mib"), json!("cpus 2 memory_mib"));
        assert_eq!(value("x", "Hello World"), json!("Hello World"));
        assert_eq!(value("free_cpus", "3-1"), json!("3-1"));
        assert_eq!(
            value("x", "1 busy_mcpu 5\n2 x"),
            json!(["1 busy_mcpu 5", "2 x"])
        );
        assert_eq!(
            value(
                "samples_recent",
                "1 busy_mcpu 5 proposed 0\n2 busy_mcpu 6 proposed 1"
            ),
            json!([{"sample": 1, "busy_mcpu": 5, "proposed": 0},
                   {"sample": 2, "busy_mcpu": 6, "proposed": 1}])
        );
    }
}
