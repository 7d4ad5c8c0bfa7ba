// SPDX-License-Identifier: GPL-2.0

//! Id lists in the kernel's "cpulist" text form: "0-3,8,10-11".
//!
//! The host module writes its CPU and memory-block sets in this form to sysfs,
//! and the tools read them back, so both ends use this one implementation.
//! The parser takes text from a file anyone may have bound over sysfs, so it
//! checks every number and range like the decoders check messages.

use core::fmt;

use super::error::{Error, Result};

/// Writes `ids`, which must be ascending, as a range list ("0-2,5"); writes
/// nothing for no ids. Ids out of order start a new range.
pub fn write<W: fmt::Write>(w: &mut W, ids: impl IntoIterator<Item = u32>) -> fmt::Result {
    let mut run: Option<(u32, u32)> = None;
    let mut first = true;
    let mut flush = |w: &mut W, (a, b): (u32, u32)| -> fmt::Result {
        if !first {
            w.write_char(',')?;
        }
        first = false;
        if a == b {
            write!(w, "{a}")
        } else {
            write!(w, "{a}-{b}")
        }
    };
    for id in ids {
        run = match run {
            Some((a, b)) if b.checked_add(1) == Some(id) => Some((a, id)),
            Some(r) => {
                flush(w, r)?;
                Some((id, id))
            }
            None => Some((id, id)),
        };
    }
    match run {
        Some(r) => flush(w, r),
        None => Ok(()),
    }
}

/// The ranges of a list, in the order written: each item is `(first, last)`
/// inclusive. Leading and trailing white space (the newline sysfs adds) is
/// ignored; an empty list has no ranges.
///
/// Rejects (`Error::Range`) a range whose end precedes its start, ids above
/// `max`, and anything that is not digits, '-' and ',' in the right places.
pub fn parse(text: &str, max: u32) -> Ranges<'_> {
    let text = text.trim();
    Ranges {
        rest: if text.is_empty() { None } else { Some(text) },
        max,
    }
}

/// Iterator returned by [`parse`].
pub struct Ranges<'a> {
    rest: Option<&'a str>,
    max: u32,
}

impl Ranges<'_> {
    /// The number of ids in the whole list, or the first error.
    pub fn count_ids(self) -> Result<u64> {
        let mut n: u64 = 0;
        for r in self {
            let (a, b) = r?;
            // `parse` guarantees b >= a, so the run holds b - a + 1 ids.
            let run = u64::from(b.saturating_sub(a)).saturating_add(1);
            n = n.checked_add(run).ok_or(Error::TooLarge)?;
        }
        Ok(n)
    }
}

fn number(s: &str, max: u32) -> Result<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Range);
    }
    match s.parse::<u32>() {
        Ok(v) if v <= max => Ok(v),
        _ => Err(Error::Range),
    }
}

impl Iterator for Ranges<'_> {
    type Item = Result<(u32, u32)>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        let (item, tail) = match rest.split_once(',') {
            Some((item, tail)) => (item, Some(tail)),
            None => (rest, None),
        };
        self.rest = tail;
        let parsed = match item.split_once('-') {
            Some((a, b)) => number(a, self.max).and_then(|a| {
                let b = number(b, self.max)?;
                if b < a {
                    Err(Error::Range)
                } else {
                    Ok((a, b))
                }
            }),
            None => number(item, self.max).map(|a| (a, a)),
        };
        if parsed.is_err() {
            // Stop after the first error: what follows cannot be trusted.
            self.rest = None;
        }
        Some(parsed)
    }
}

#[cfg(all(test, feature = "std"))]
#[allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn text(ids: &[u32]) -> String {
        let mut s = String::new();
        write(&mut s, ids.iter().copied()).unwrap();
        s
    }

    fn ids(s: &str, max: u32) -> Result<Vec<u32>> {
        let mut v = Vec::new();
        for r in parse(s, max) {
            let (a, b) = r?;
            v.extend(a..=b);
        }
        Ok(v)
    }

    #[test]
    fn writes_runs() {
        assert_eq!(text(&[]), "");
        assert_eq!(text(&[4]), "4");
        assert_eq!(text(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(text(&[3, 1, 2]), "3,1-2");
        assert_eq!(text(&[u32::MAX - 1, u32::MAX]), "4294967294-4294967295");
    }

    #[test]
    fn parses_what_it_writes() {
        let sets: [&[u32]; 4] = [&[], &[0], &[1, 2, 3, 9, 11, 12], &[0, 2, 4, 6]];
        for set in sets {
            assert_eq!(ids(&text(set), 100).unwrap(), set);
        }
        assert_eq!(ids(" 0-1,3\n", 10).unwrap(), [0, 1, 3]);
        assert_eq!(parse("0-3,8", 10).count_ids(), Ok(5));
    }

    #[test]
    fn rejects_malformed_lists() {
        for bad in [
            "3-1", "1-", "-1", "1,,2", ",", "1 2", "a", "1-2-3", "+1", "0x1", "11", "1,11",
        ] {
            assert_eq!(ids(bad, 10), Err(Error::Range), "{bad:?}");
        }
        assert_eq!(ids("99999999999", u32::MAX), Err(Error::Range));
    }

    #[test]
    fn random_sets_round_trip() {
        // A small xorshift generator: deterministic, no dependency.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..500 {
            let mut set = Vec::new();
            let mut id = 0u32;
            while id < 300 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x.is_multiple_of(3) {
                    set.push(id);
                }
                id += 1 + (x % 4) as u32;
            }
            assert_eq!(ids(&text(&set), 400).unwrap(), set);
        }
    }
}
