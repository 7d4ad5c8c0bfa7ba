// SPDX-License-Identifier: GPL-2.0

//! The projection on synthetic load traces.

#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::panic
)]

mod common;

use common::Rng;
use hwconvey_proto::inventory::Allocation;
use hwconvey_proto::projection::{Accounted, Params, Projector, Proposal, Sample};

/// Feeds `trace` (demand in milli-CPUs per sample) to a guest holding
/// `cpus`, applying every CPU grant at once; returns the sample index of
/// each proposal.
fn run(trace: &[u32], cpus: u32, params: Params) -> Vec<(usize, Proposal)> {
    let mut p = Projector::new(params);
    let mut held = Allocation {
        cpus,
        mem_mib: 4096,
    };
    let mut out = Vec::new();
    for (i, &demand) in trace.iter().enumerate() {
        // The guest cannot be busier than it is big.
        let busy = demand.min(held.cpus * 1000);
        let s = Sample {
            busy_mcpu: busy,
            nr_running: demand.div_ceil(1000),
            mem_used_mib: 1024,
            ..Sample::default()
        };
        if let Some(prop) = p.sample(&s, held, 128) {
            match prop {
                Proposal::Cpus(n, _) => held.cpus += n,
                Proposal::ReleaseCpus(n, _) => held.cpus -= n,
                Proposal::Memory(..) => {}
            }
            out.push((i, prop));
        }
    }
    out
}

#[test]
fn step_is_answered_within_three_samples() {
    let mut trace = vec![500; 20];
    trace.extend(vec![6000; 20]);
    let props = run(&trace, 2, Params::default());
    let (at, first) = props.first().copied().unwrap();
    assert!((20..23).contains(&at), "asked at sample {at}");
    let Proposal::Cpus(n, motive) = first else {
        panic!("{first:?}")
    };
    assert!(n >= 4, "asked for only {n}");
    assert!(motive.demand > motive.held * 1000);
}

#[test]
fn ramp_is_seen_before_it_saturates() {
    // 4 CPUs; demand climbs 100 milli-CPUs a sample from 1000.
    let trace: Vec<u32> = (0..60).map(|i| 1000 + 100 * i).collect();
    let props = run(&trace, 4, Params::default());
    let (at, _) = props.first().copied().unwrap();
    // Level alone crosses 90% of 4 CPUs at 3600 (sample 26): the trend must
    // make it ask earlier than that.
    assert!(at < 26, "asked at sample {at}");
}

#[test]
fn noise_around_the_target_does_not_flap() {
    let mut rng = Rng::new(11);
    // 4 CPUs, demand 3200 ± 300: at the target, inside the band.
    let trace: Vec<u32> = (0..500).map(|_| 2900 + rng.below(600) as u32).collect();
    let params = Params {
        release_after: 20,
        ..Params::default()
    };
    let props = run(&trace, 4, params);
    assert!(props.is_empty(), "{props:?}");
}

#[test]
fn a_single_spike_is_not_a_trend() {
    let mut trace = vec![1000; 30];
    trace[15] = 8000;
    let props = run(&trace, 4, Params::default());
    assert!(props.is_empty(), "{props:?}");
}

#[test]
fn sine_load_asks_at_peaks_only_with_cooldown() {
    // 2 CPUs; demand swings 0.5 .. 3.5 CPUs over 40 samples.
    let trace: Vec<u32> = (0..400)
        .map(|i| {
            let phase = (i % 40) as i64;
            let tri = if phase < 20 { phase } else { 40 - phase };
            (500 + tri * 150) as u32
        })
        .collect();
    let params = Params::default();
    let props = run(&trace, 2, params);
    assert!(!props.is_empty());
    for w in props.windows(2) {
        assert!(w[1].0 - w[0].0 > params.cooldown as usize, "{props:?}");
    }
}

#[test]
fn release_keeps_what_the_load_needs() {
    // 16 CPUs, load 2.4 CPUs: with release on, it gives back down to what
    // 2.4 CPUs need at 80% (3 CPUs) and no further.
    let trace = vec![2400; 200];
    let params = Params {
        release_after: 10,
        ..Params::default()
    };
    let props = run(&trace, 16, params);
    let released: u32 = props
        .iter()
        .map(|(_, p)| {
            if let Proposal::ReleaseCpus(n, _) = p {
                *n
            } else {
                0
            }
        })
        .sum();
    assert_eq!(16 - released, 3, "{props:?}");
    // And with release off (the default), nothing is given back.
    assert!(run(&trace, 16, Params::default()).is_empty());
}

#[test]
fn memory_growth_asks_whole_blocks() {
    let mut p = Projector::new(Params::default());
    let held = Allocation {
        cpus: 4,
        mem_mib: 1024,
    };
    let mut asked = None;
    for i in 0..40u64 {
        let s = Sample {
            busy_mcpu: 1000,
            nr_running: 1,
            mem_used_mib: 600 + 30 * i,
            ..Sample::default()
        };
        if let Some(Proposal::Memory(mib, _)) = p.sample(&s, held, 128) {
            asked = Some((i, mib));
            break;
        }
    }
    let (_, mib) = asked.unwrap();
    assert_eq!(mib % 128, 0);
    assert!(mib >= 128);
}

#[test]
fn params_are_validated() {
    assert!(Params::default().validate().is_ok());
    assert!(Params {
        alpha: 0,
        ..Params::default()
    }
    .validate()
    .is_err());
    assert!(Params {
        target: 1001,
        ..Params::default()
    }
    .validate()
    .is_err());
    assert!(Params {
        hysteresis: 800,
        ..Params::default()
    }
    .validate()
    .is_err());
    assert!(Params {
        persist: 0,
        ..Params::default()
    }
    .validate()
    .is_err());
}

const MS: u64 = 1_000_000;

fn acc(busy: u64, idle: u64, steal: u64) -> Accounted {
    Accounted { busy, idle, steal }
}

/// Busy and stolen time over a period of `elapsed` ns from `prev` to `now`.
fn over(now: Accounted, prev: Accounted, elapsed: u64) -> Option<(u64, u64)> {
    now.shares_since(&prev).map(|s| s.of(elapsed))
}

#[test]
fn shares_hold_when_ticks_are_lost() {
    let start = acc(1000 * MS, 5000 * MS, 0);
    // Wholly busy over 100 ms, but only one 4 ms tick was accounted: still 100 ms busy.
    let busy = acc(1004 * MS, 5000 * MS, 0);
    assert_eq!(over(busy, start, 100 * MS), Some((100 * MS, 0)));
    // Wholly idle with the tick stopped: idle measured in full, nothing busy.
    let idle = acc(1000 * MS, 5100 * MS, 0);
    assert_eq!(over(idle, start, 100 * MS), Some((0, 0)));
    // Half busy, half stolen.
    let stolen = acc(1020 * MS, 5000 * MS, 20 * MS);
    assert_eq!(over(stolen, start, 100 * MS), Some((50 * MS, 50 * MS)));
    // A quarter busy.
    let quarter = acc(1025 * MS, 5075 * MS, 0);
    assert_eq!(over(quarter, start, 100 * MS), Some((25 * MS, 0)));
}

#[test]
fn a_period_that_says_nothing_is_unknown() {
    let start = acc(1000 * MS, 5000 * MS, 7);
    // No tick accounted and no idle time: nothing known.
    assert_eq!(start.shares_since(&start), None);
    // Idle stepped back (an idle period in progress missed by the second read).
    let back = acc(1004 * MS, 4990 * MS, 7);
    assert_eq!(back.shares_since(&start), None);
}

#[test]
fn shares_stay_in_range_for_long_periods() {
    let hour = 3_600_000 * MS;
    let start = acc(u64::MAX / 2, 0, 0);
    let later = acc(u64::MAX / 2 + hour / 2, hour / 2, 0);
    assert_eq!(over(later, start, hour), Some((hour / 2, 0)));
    // Never more than the period, whatever the counters say.
    let (b, s) = over(acc(u64::MAX, 1, u64::MAX), acc(0, 0, 0), hour).unwrap();
    assert!(b <= hour && s <= hour && b + s <= hour, "{b} {s}");
}
