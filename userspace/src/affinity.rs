// SPDX-License-Identifier: GPL-2.0

//! CPU affinity of a thread (a vCPU thread of the VMM).

use std::io;

/// Pins thread `tid` to exactly `cpus`.
pub fn set(tid: i32, cpus: &[u32]) -> io::Result<()> {
    // SAFETY: `cpu_set_t` is plain bits; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        let cpu = usize::try_from(cpu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE, the size of `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The CPUs thread `tid` may run on, ascending.
pub fn get(tid: i32) -> io::Result<Vec<u32>> {
    // SAFETY: as in `set`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is writable and of the size passed.
    let rc = unsafe { libc::sched_getaffinity(tid, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as u32)
        // SAFETY: every index is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu as usize, &set) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_a_thread_and_reads_it_back() {
        let tid = std::thread::spawn(|| {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let all = get(tid).unwrap();
            let first = *all.first().unwrap();
            set(tid, &[first]).unwrap();
            assert_eq!(get(tid).unwrap(), [first]);
            assert!(set(tid, &[libc::CPU_SETSIZE as u32]).is_err());
            tid
        })
        .join()
        .unwrap();
        assert!(tid > 0);
    }
}
