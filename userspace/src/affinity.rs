// SPDX-License-Identifier: GPL-2.0

//! CPU affinity of a thread (a vCPU thread of the VMM).

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use std::io;

fn os_error(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Pins thread `tid` to exactly `cpus`.
pub fn set(tid: i32, cpus: &[u32]) -> io::Result<()> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        let cpu = usize::try_from(cpu).map_err(|_| os_error(nix::Error::EINVAL))?;
        // Fails with EINVAL past the set's size.
        set.set(cpu).map_err(os_error)?;
    }
    sched_setaffinity(Pid::from_raw(tid), &set).map_err(os_error)
}

/// The CPUs thread `tid` may run on, ascending.
pub fn get(tid: i32) -> io::Result<Vec<u32>> {
    let set = sched_getaffinity(Pid::from_raw(tid)).map_err(os_error)?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .filter_map(|cpu| u32::try_from(cpu).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_a_thread_and_reads_it_back() {
        let tid = std::thread::spawn(|| {
            let tid = nix::unistd::gettid().as_raw();
            let all = get(tid).unwrap();
            let first = *all.first().unwrap();
            set(tid, &[first]).unwrap();
            assert_eq!(get(tid).unwrap(), [first]);
            assert!(set(tid, &[CpuSet::count() as u32]).is_err());
            tid
        })
        .join()
        .unwrap();
        assert!(tid > 0);
    }
}
