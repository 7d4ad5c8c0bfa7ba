// SPDX-License-Identifier: GPL-2.0

//! Samples the guest's own load on a timer and feeds the projection.
//!
//! The timer only schedules the device's work; sampling, projecting and sending a request run
//! there, in process context. Each sample sums the CPU time of the online CPUs since the last
//! one and reads the run queue, memory in use and CPU pressure.
//!
//! A CPU's busy and stolen time over a period are its shares of the time the kernel accounted
//! to it (busy, idle and stolen, as `/proc/stat` shows them and `top` divides them), applied to
//! the period: not its busy time against the clock. A vCPU that its host runs late, without
//! reporting steal time for it, loses busy ticks, so its busy time falls short of the period
//! the busier its host gets; idle time measured while the tick is stopped loses nothing, so a
//! wholly busy CPU still shows wholly busy, though a partly busy one may look idler than it is.

use crate::proto::{
    inventory::Allocation,
    projection::{Accounted, Params, Projector, Proposal, Sample, Shares},
};
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::{
    cpu, impl_has_hr_timer, load,
    prelude::*,
    sync::{Arc, ArcBorrow},
    time::{
        hrtimer::{HrTimer, HrTimerCallback, HrTimerCallbackContext, HrTimerRestart, RelativeMode},
        Delta, Instant, Monotonic,
    },
    virtio::virtqueue::Virtqueues,
};

/// The projection parameters and the sampling period, set through sysfs.
pub(crate) struct Knobs {
    pub(crate) period_ms: AtomicU32,
    pub(crate) horizon: AtomicU32,
    pub(crate) target: AtomicU32,
    pub(crate) hysteresis: AtomicU32,
}

/// The knobs, shared by every device (a guest has one).
pub(crate) static KNOBS: Knobs = Knobs {
    period_ms: AtomicU32::new(1000),
    horizon: AtomicU32::new(5),
    target: AtomicU32::new(800),
    hysteresis: AtomicU32::new(100),
};

impl Knobs {
    /// The projection parameters the knobs describe, validated.
    pub(crate) fn params(&self) -> Result<Params> {
        let p = Params {
            horizon: self.horizon.load(Ordering::Relaxed),
            target: self.target.load(Ordering::Relaxed),
            hysteresis: self.hysteresis.load(Ordering::Relaxed),
            ..Params::default()
        };
        p.validate()?;
        Ok(p)
    }
}

/// Bit of the device work's `notified` argument that asks for a sample.
pub(crate) const SAMPLE: u32 = 1 << 31;

/// The last sample and what the projection made of it, for sysfs.
#[derive(Clone, Copy, Default)]
pub(crate) struct Report {
    pub(crate) samples: u64,
    pub(crate) sample: Sample,
    pub(crate) held_cpus: u32,
    pub(crate) cpu_level: u64,
    pub(crate) cpu_trend: i64,
    pub(crate) cpu_projected: u64,
    pub(crate) proposals: u64,
}

/// Samples kept for `samples_recent` in sysfs.
pub(crate) const HISTORY: usize = 32;

/// One past sample: its number, CPU demand seen and projected, and whether it proposed.
#[derive(Clone, Copy, Default)]
pub(crate) struct Past {
    pub(crate) n: u64,
    pub(crate) busy_mcpu: u32,
    pub(crate) projected_mcpu: u64,
    pub(crate) proposed: bool,
}

/// One possible CPU at the start of the current period.
#[derive(Clone, Copy, Default)]
struct CpuAt {
    times: Accounted,
    online: bool,
    /// Its shares in the last period that said something, for one that says nothing.
    shares: Shares,
}

/// The sampling state of one device.
pub(crate) struct Sampler {
    projector: Projector,
    /// Each possible CPU at the last sample.
    prev: KVec<CpuAt>,
    prev_at: Option<Instant<Monotonic>>,
    pub(crate) report: Report,
    /// The last [`HISTORY`] samples, oldest first once full (a ring at `report.samples`).
    pub(crate) history: [Past; HISTORY],
}

impl Sampler {
    pub(crate) fn new() -> Result<Self> {
        let n = cpu::nr_cpu_ids() as usize;
        Ok(Self {
            projector: Projector::new(KNOBS.params()?),
            prev: KVec::from_elem(CpuAt::default(), n, GFP_KERNEL)?,
            prev_at: None,
            report: Report::default(),
            history: [Past::default(); HISTORY],
        })
    }

    /// Takes a sample and returns what the projection proposes, if anything. `held_cpus` is
    /// what the host says this guest holds; its memory is what it runs with.
    pub(crate) fn sample(&mut self, held_cpus: u32, block_mib: u64) -> Option<Proposal> {
        let now = Instant::<Monotonic>::now();
        // None at the first sample, which only sets the baseline.
        let elapsed = self
            .prev_at
            .replace(now)
            .map(|at| u64::try_from((now - at).as_nanos()).unwrap_or(0).max(1));
        let mut busy = 0u64;
        let mut steal = 0u64;
        for c in cpu::possible_cpus() {
            let Some(prev) = self.prev.get_mut(c.as_u32() as usize) else {
                continue;
            };
            let t = load::cpu_times(c);
            let times = Accounted {
                busy: t.busy,
                idle: t.idle,
                steal: t.steal,
            };
            let online = c.is_online();
            // Only a CPU online at both ends was there for the whole period.
            let (Some(elapsed), true, true) = (elapsed, prev.online, online) else {
                *prev = CpuAt {
                    times,
                    online,
                    shares: Shares::default(),
                };
                continue;
            };
            // A period that says nothing about the CPU takes the shares of the last one that
            // did, and the next period starts where this one did.
            let shares = match times.shares_since(&prev.times) {
                Some(shares) => {
                    *prev = CpuAt {
                        times,
                        online,
                        shares,
                    };
                    shares
                }
                None => prev.shares,
            };
            let (b, s) = shares.of(elapsed);
            busy = busy.saturating_add(b);
            steal = steal.saturating_add(s);
        }
        let elapsed = elapsed?;
        let mcpu = |ns: u64| u32::try_from(ns.saturating_mul(1000) / elapsed).unwrap_or(u32::MAX);
        let mem = load::memory();
        let sample = Sample {
            busy_mcpu: mcpu(busy),
            steal_mcpu: mcpu(steal),
            nr_running: load::nr_running(),
            mem_used_mib: mem.total.saturating_sub(mem.available) >> 20,
            cpu_pressure: load::cpu_pressure(),
        };
        if let Ok(p) = KNOBS.params() {
            if *self.projector.params() != p {
                let _ = self.projector.set_params(p);
            }
        }
        let held = Allocation {
            cpus: held_cpus,
            mem_mib: mem.total >> 20,
        };
        let proposal = self.projector.sample(&sample, held, block_mib);
        let (level, trend, projected) = self.projector.cpu();
        self.report = Report {
            samples: self.report.samples + 1,
            sample,
            held_cpus,
            cpu_level: level,
            cpu_trend: trend,
            cpu_projected: projected,
            proposals: self.report.proposals + u64::from(proposal.is_some()),
        };
        let n = self.report.samples;
        if let Some(slot) = self.history.get_mut((n % HISTORY as u64) as usize) {
            *slot = Past {
                n,
                busy_mcpu: sample.busy_mcpu,
                projected_mcpu: projected,
                proposed: proposal.is_some(),
            };
        }
        proposal
    }
}

/// The periodic timer that asks the device's work for a sample.
#[pin_data]
pub(crate) struct SampleTimer {
    #[pin]
    timer: HrTimer<Self>,
    vqs: Arc<Virtqueues<crate::device::Guest>>,
}

impl SampleTimer {
    pub(crate) fn new(vqs: Arc<Virtqueues<crate::device::Guest>>) -> impl PinInit<Self> {
        pin_init!(Self {
            timer <- HrTimer::new(),
            vqs,
        })
    }

    pub(crate) fn period() -> Delta {
        Delta::from_millis(i64::from(KNOBS.period_ms.load(Ordering::Relaxed).max(10)))
    }
}

impl HrTimerCallback for SampleTimer {
    type Pointer<'a> = Arc<Self>;

    fn run(this: ArcBorrow<'_, Self>, mut ctx: HrTimerCallbackContext<'_, Self>) -> HrTimerRestart {
        // Interrupt context: only schedule the work, which samples.
        this.vqs.as_arc_borrow().schedule(SAMPLE);
        ctx.forward_now(Self::period());
        HrTimerRestart::Restart
    }
}

impl_has_hr_timer! {
    impl HasHrTimer<Self> for SampleTimer {
        mode: RelativeMode<Monotonic>, field: self.timer
    }
}
