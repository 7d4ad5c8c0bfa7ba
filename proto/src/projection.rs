// SPDX-License-Identifier: GPL-2.0

//! The guest's demand projection, in fixed point (no FPU in the kernel).
//!
//! Each sample updates a level and a trend (Holt's double exponential
//! smoothing, weights in per mille, state in Q16.16), so a ramp is seen
//! coming, not only once it arrives. The projection `level + horizon * trend`
//! is compared with what the guest holds at a target utilisation; a band of
//! hysteresis around the target, a number of consecutive samples beyond it
//! and a cool-down after each request keep noise from turning into requests.
//! One sample costs a handful of integer operations, whatever the CPU count:
//! the caller sums its per-CPU counters into one [`Sample`].

use super::error::{Error, Result};
use super::inventory::Allocation;
use super::message::{Motive, MOTIVE_PROJECTION};

const SHIFT: u32 = 16;
/// Largest input value: keeps `value << SHIFT` and the products in range.
const MAX_INPUT: u64 = 1 << 40;

/// Tuning of the projection. All ratios are per mille.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// How many samples ahead to project.
    pub horizon: u32,
    /// Weight of a new sample in the level (1..=1000).
    pub alpha: u32,
    /// Weight of a new slope in the trend (0..=1000).
    pub beta: u32,
    /// Utilisation of held resources to aim for (1..=1000).
    pub target: u32,
    /// Half-width of the band around `target` in which nothing happens.
    pub hysteresis: u32,
    /// Consecutive samples above the band before asking for more.
    pub persist: u32,
    /// Samples after a request before the next one of the same resource.
    pub cooldown: u32,
    /// Consecutive samples below the band before giving back; 0 never does.
    pub release_after: u32,
    /// Never give back below this many CPUs.
    pub min_cpus: u32,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            horizon: 5,
            alpha: 300,
            beta: 100,
            target: 800,
            hysteresis: 100,
            persist: 2,
            cooldown: 10,
            release_after: 0,
            min_cpus: 1,
        }
    }
}

impl Params {
    /// Checks the parameters are usable: sysfs stores call this before
    /// changing anything.
    pub const fn validate(&self) -> Result {
        if self.alpha == 0 || self.alpha > 1000 || self.beta > 1000 {
            return Err(Error::Range);
        }
        if self.target == 0 || self.target > 1000 || self.hysteresis >= self.target {
            return Err(Error::Range);
        }
        if self.persist == 0 || self.horizon > 1000 {
            return Err(Error::Range);
        }
        Ok(())
    }
}

/// A level and a trend, in Q16.16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Holt {
    level: i64,
    trend: i64,
    primed: bool,
}

/// `x * pm / 1000`, saturating.
fn per_mille(x: i64, pm: u32) -> i64 {
    x.saturating_mul(i64::from(pm)).saturating_div(1000)
}

impl Holt {
    /// Feeds one sample.
    pub fn update(&mut self, x: u64, alpha: u32, beta: u32) {
        let x = (x.min(MAX_INPUT) as i64) << SHIFT;
        if !self.primed {
            *self = Self {
                level: x,
                trend: 0,
                primed: true,
            };
            return;
        }
        let forecast = self.level.saturating_add(self.trend);
        let level = forecast.saturating_add(per_mille(x.saturating_sub(forecast), alpha));
        let slope = level.saturating_sub(self.level);
        self.trend = self
            .trend
            .saturating_add(per_mille(slope.saturating_sub(self.trend), beta));
        self.level = level;
    }

    /// The smoothed level, in input units.
    pub fn level(&self) -> u64 {
        (self.level.max(0) >> SHIFT) as u64
    }

    /// The trend per sample, in input units (rounded toward zero).
    pub fn trend(&self) -> i64 {
        self.trend.saturating_div(1 << SHIFT)
    }

    /// The value projected `h` samples ahead, never negative.
    pub fn project(&self, h: u32) -> u64 {
        let p = self
            .level
            .saturating_add(self.trend.saturating_mul(i64::from(h)));
        (p.max(0) >> SHIFT) as u64
    }
}

/// Cumulative time the kernel accounted to one CPU, in nanoseconds (the `/proc/stat` figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accounted {
    /// Busy: user, system and interrupts. Sampled by the tick.
    pub busy: u64,
    /// Idle and waiting for I/O. Measured while the tick is stopped in idle.
    pub idle: u64,
    /// Stolen by the hypervisor.
    pub steal: u64,
}

impl Accounted {
    /// The shares of busy and stolen time in what was accounted to a CPU since `prev` (as `top`
    /// divides `/proc/stat`). Lost ticks shrink what is accounted but not, for a CPU that is
    /// wholly busy or wholly idle, the shares.
    ///
    /// `None` when the period says nothing: nothing was accounted (a vCPU whose every tick
    /// came late), or idle time stepped back (iowait is decided remotely, and two reads can
    /// both miss an idle period in progress). The caller then keeps `prev` as the start of the
    /// next period.
    pub fn shares_since(&self, prev: &Accounted) -> Option<Shares> {
        let idle = self.idle.checked_sub(prev.idle)?;
        let busy = self.busy.saturating_sub(prev.busy);
        let steal = self.steal.saturating_sub(prev.steal);
        let total = busy.saturating_add(idle).saturating_add(steal);
        let ppm = |part: u64| {
            let v = part.saturating_mul(PPM).checked_div(total)?;
            u32::try_from(v).ok()
        };
        Some(Shares {
            busy_ppm: ppm(busy)?,
            steal_ppm: ppm(steal)?,
        })
    }
}

const PPM: u64 = 1_000_000;

/// Shares of a CPU's time, in parts per million.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shares {
    /// Busy.
    pub busy_ppm: u32,
    /// Stolen.
    pub steal_ppm: u32,
}

impl Shares {
    /// The busy and stolen time these shares make of a period of `elapsed` ns; in range for
    /// periods of hours.
    pub fn of(&self, elapsed: u64) -> (u64, u64) {
        let part = |ppm: u32| elapsed.saturating_mul(u64::from(ppm)) / PPM;
        (part(self.busy_ppm), part(self.steal_ppm))
    }
}

/// One sample of the guest's own load, summed over its CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// CPU time spent busy (not idle, not stolen) over the period, in
    /// milli-CPUs: 1000 is one CPU fully busy.
    pub busy_mcpu: u32,
    /// CPU time stolen by the host over the period, in milli-CPUs.
    pub steal_mcpu: u32,
    /// Runnable tasks (running or waiting for a CPU).
    pub nr_running: u32,
    /// Memory in use, in MiB.
    pub mem_used_mib: u64,
    /// CPU pressure (PSI "some"), per mille of the period; 0 when unknown.
    pub cpu_pressure: u32,
}

impl Sample {
    /// The CPU demand the sample shows, in milli-CPUs, for a guest holding
    /// `cpus`: what was busy; when the guest was saturated (busy at 95% of
    /// its size or more, where busy time says nothing more), what was
    /// runnable if that is more; raised by the share of time tasks waited for
    /// a CPU.
    pub fn cpu_demand(&self, cpus: u32) -> u64 {
        let busy = u64::from(self.busy_mcpu);
        let saturated = busy.saturating_mul(100) >= u64::from(cpus).saturating_mul(95_000);
        let runnable = u64::from(self.nr_running).saturating_mul(1000);
        let base = if saturated { busy.max(runnable) } else { busy };
        base.saturating_add(base.saturating_mul(u64::from(self.cpu_pressure.min(1000))) / 1000)
    }
}

/// What the projection asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proposal {
    /// Ask for this many more CPUs.
    Cpus(u32, Motive),
    /// Ask for this much more memory, in MiB (whole blocks).
    Memory(u32, Motive),
    /// Give back this many CPUs.
    ReleaseCpus(u32, Motive),
}

/// Per-resource counters of consecutive samples beyond the band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Band {
    over: u32,
    under: u32,
    cooldown: u32,
}

impl Band {
    /// Feeds one utilisation figure; returns `Some(true)` to ask for more,
    /// `Some(false)` to give back.
    fn step(&mut self, util: u64, p: &Params) -> Option<bool> {
        let hi = u64::from(p.target.saturating_add(p.hysteresis));
        let lo = u64::from(p.target.saturating_sub(p.hysteresis));
        self.over = if util > hi {
            self.over.saturating_add(1)
        } else {
            0
        };
        self.under = if util < lo {
            self.under.saturating_add(1)
        } else {
            0
        };
        if self.cooldown > 0 {
            self.cooldown = self.cooldown.saturating_sub(1);
            return None;
        }
        if self.over >= p.persist {
            self.over = 0;
            self.cooldown = p.cooldown;
            return Some(true);
        }
        if p.release_after != 0 && self.under >= p.release_after {
            self.under = 0;
            self.cooldown = p.cooldown;
            return Some(false);
        }
        None
    }
}

/// `ceil(a / b)`, with `b > 0`.
fn div_ceil(a: u64, b: u64) -> u64 {
    a.checked_add(b.saturating_sub(1))
        .and_then(|s| s.checked_div(b))
        .unwrap_or(u64::MAX)
}

/// `demand / capacity` in per mille; saturates when nothing is held.
fn utilisation(demand: u64, capacity: u64) -> u64 {
    demand
        .saturating_mul(1000)
        .checked_div(capacity)
        .unwrap_or(u64::MAX)
}

fn clamp32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// The projection state of one guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Projector {
    params: Params,
    cpu: Holt,
    mem: Holt,
    cpu_band: Band,
    mem_band: Band,
}

impl Projector {
    /// A projector with `params`, which must have passed validation.
    pub fn new(params: Params) -> Self {
        Self {
            params,
            cpu: Holt::default(),
            mem: Holt::default(),
            cpu_band: Band::default(),
            mem_band: Band::default(),
        }
    }

    /// The parameters.
    pub const fn params(&self) -> &Params {
        &self.params
    }

    /// Replaces the parameters, keeping the smoothed state.
    pub fn set_params(&mut self, params: Params) -> Result {
        params.validate()?;
        self.params = params;
        Ok(())
    }

    /// CPU demand: smoothed level, trend per sample, projection (milli-CPUs).
    pub fn cpu(&self) -> (u64, i64, u64) {
        (
            self.cpu.level(),
            self.cpu.trend(),
            self.cpu.project(self.params.horizon),
        )
    }

    /// Memory demand: smoothed level, trend per sample, projection (MiB).
    pub fn mem(&self) -> (u64, i64, u64) {
        (
            self.mem.level(),
            self.mem.trend(),
            self.mem.project(self.params.horizon),
        )
    }

    /// Feeds one sample and decides, given what the guest holds and the
    /// host's block size. At most one proposal per sample, CPUs first.
    pub fn sample(&mut self, s: &Sample, held: Allocation, block_mib: u64) -> Option<Proposal> {
        let p = self.params;
        self.cpu.update(s.cpu_demand(held.cpus), p.alpha, p.beta);
        self.mem.update(s.mem_used_mib, p.alpha, p.beta);

        let cpu_demand = self.cpu.project(p.horizon);
        let cpu_cap = u64::from(held.cpus).saturating_mul(1000);
        let cpu_step = self.cpu_band.step(utilisation(cpu_demand, cpu_cap), &p);
        let mem_demand = self.mem.project(p.horizon);
        let mem_step = self
            .mem_band
            .step(utilisation(mem_demand, held.mem_mib), &p);

        // What would put utilisation back at the target.
        let cpus_needed = div_ceil(cpu_demand, u64::from(p.target));
        let cpu_motive = Motive {
            demand: clamp32(cpu_demand),
            held: held.cpus,
            level: clamp32(self.cpu.level()),
            trend: i32::try_from(self.cpu.trend()).unwrap_or(0),
            horizon: u16::try_from(p.horizon).unwrap_or(u16::MAX),
            source: MOTIVE_PROJECTION,
        };
        match cpu_step {
            Some(true) => {
                let more = cpus_needed.saturating_sub(u64::from(held.cpus)).max(1);
                return Some(Proposal::Cpus(clamp32(more), cpu_motive));
            }
            Some(false) => {
                let keep = cpus_needed.max(u64::from(p.min_cpus.max(1)));
                let give = u64::from(held.cpus).saturating_sub(keep);
                if give > 0 {
                    return Some(Proposal::ReleaseCpus(clamp32(give), cpu_motive));
                }
            }
            None => {}
        }
        if mem_step == Some(true) && block_mib > 0 {
            let needed = div_ceil(mem_demand.saturating_mul(1000), u64::from(p.target));
            let more = needed.saturating_sub(held.mem_mib).max(1);
            let more = div_ceil(more, block_mib).saturating_mul(block_mib);
            let motive = Motive {
                demand: clamp32(mem_demand),
                held: clamp32(held.mem_mib),
                level: clamp32(self.mem.level()),
                trend: i32::try_from(self.mem.trend()).unwrap_or(0),
                ..cpu_motive
            };
            return Some(Proposal::Memory(clamp32(more), motive));
        }
        None
    }
}
