// SPDX-License-Identifier: GPL-2.0

//! Stable vCPU placement.

#![allow(clippy::unwrap_used)]

use hwconvey_proto::error::Error;
use hwconvey_proto::placement::{place, Place};

fn run(current: &[Option<u32>], cpus: &[u32]) -> Vec<Place> {
    let mut taken = vec![false; cpus.len()];
    let mut out = vec![Place::Shared; current.len()];
    place(current, cpus, &mut taken, &mut out).unwrap();
    out
}

#[test]
fn new_vcpus_take_cpus_in_order() {
    assert_eq!(
        run(&[None, None], &[3, 5, 7]),
        [Place::Cpu(3), Place::Cpu(5)]
    );
}

#[test]
fn a_replaced_cpu_moves_only_its_vcpu() {
    // CPU 5 went offline and the host gave CPU 6 instead.
    assert_eq!(
        run(&[Some(3), Some(5), Some(7)], &[3, 6, 7]),
        [Place::Cpu(3), Place::Cpu(6), Place::Cpu(7)]
    );
}

#[test]
fn pins_survive_a_grant_and_new_vcpus_take_the_new_cpus() {
    assert_eq!(
        run(&[Some(7), Some(3), None], &[1, 3, 7]),
        [Place::Cpu(7), Place::Cpu(3), Place::Cpu(1)]
    );
}

#[test]
fn two_vcpus_on_one_cpu_are_separated() {
    assert_eq!(
        run(&[Some(3), Some(3)], &[3, 4]),
        [Place::Cpu(3), Place::Cpu(4)]
    );
}

#[test]
fn more_vcpus_than_cpus_share_the_allocation() {
    assert_eq!(
        run(&[Some(4), None, Some(9)], &[4]),
        [Place::Cpu(4), Place::Shared, Place::Shared]
    );
    assert_eq!(run(&[Some(1)], &[]), [Place::Shared]);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let mut taken = [false; 2];
    let mut out = [Place::Cpu(9)];
    assert_eq!(
        place(&[None], &[5, 5], &mut taken, &mut out),
        Err(Error::State)
    );
    assert_eq!(
        place(&[None], &[2, 1], &mut taken, &mut out),
        Err(Error::State)
    );
    assert_eq!(
        place(&[None, None], &[1, 2], &mut taken, &mut out),
        Err(Error::NoSpace)
    );
    assert_eq!(out, [Place::Cpu(9)]);
}

#[test]
fn every_allocated_cpu_is_used_at_most_once() {
    // Exhaustive over small inputs: pins are unique, kept where possible, and no vCPU is
    // left shared while a CPU is free.
    let cpus = [0u32, 2, 3, 6];
    let choices = [None, Some(0), Some(1), Some(2), Some(3), Some(6)];
    for a in choices {
        for b in choices {
            for c in choices {
                let cur = [a, b, c];
                let out = run(&cur, &cpus);
                let pinned: Vec<u32> = out
                    .iter()
                    .filter_map(|p| match p {
                        Place::Cpu(c) => Some(*c),
                        Place::Shared => None,
                    })
                    .collect();
                let mut uniq = pinned.clone();
                uniq.sort();
                uniq.dedup();
                assert_eq!(uniq.len(), pinned.len(), "{cur:?} -> {out:?}");
                assert!(pinned.iter().all(|c| cpus.contains(c)));
                assert_eq!(pinned.len(), 3, "{cur:?} -> {out:?}");
                for (i, (p, c)) in out.iter().zip(cur).enumerate() {
                    if let Some(c) = c {
                        let first = cur.iter().position(|x| *x == Some(c)) == Some(i);
                        if cpus.contains(&c) && first {
                            assert_eq!(*p, Place::Cpu(c), "{cur:?} -> {out:?}");
                        }
                    }
                }
            }
        }
    }
}
