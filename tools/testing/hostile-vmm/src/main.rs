// SPDX-License-Identifier: GPL-2.0

//! A VMM that attacks a hwconvey device, for the tests (scenario 45).
//!
//! It opens `/dev/vhost-vdpa-N` as a VMM does, with rust-vmm's `vhost` crate, and gives the
//! device its own memory (a memfd, through `vm-memory`), as QEMU gives a guest's RAM. Then it
//! plays the guest's driver itself, writing descriptors, available indices and kicks by hand.
//!
//! Each case opens the device afresh (closing it resets the device). A well-formed request
//! must be served; every attack must stop the queue (`bad_chains`) with nothing of it taken
//! (`messages_received` does not move) or be refused outright. After each case the host must
//! still answer: a sysfs read and a CPU going offline and online each finish within
//! [`RESPONSIVE`], and another guest (a loopback one, if the scenario made it) still receives
//! updates. Waits on counters with a bounded timeout, never a fixed sleep; exits non-zero at
//! the first check that fails.
//!
//! Usage: `hostile-vmm /dev/vhost-vdpa-N DEVICE [OTHER_DEVICE]`, where DEVICE is the device's
//! name under `/sys/kernel/hwconvey/host/` and OTHER_DEVICE a vDPA device bound to virtio_vdpa,
//! and so to the guest driver in this kernel (its files are found through the guest's link to
//! its virtio device).

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{io, process};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{pipe, ForkResult};
use vhost::vdpa::VhostVdpa;
use vhost::vhost_kern::vdpa::VhostKernVdpa;
use vhost::vhost_kern::VhostKernFeatures;
use vhost::{VhostBackend, VringConfigData};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

const HOST: &str = "/sys/kernel/hwconvey/host";
/// The host's benchmark push (debugfs: a test hook, not ABI), which moves to a new generation.
const BENCH_PUSH: &str = "/sys/kernel/debug/hwconvey-host/bench_push";
/// The guest driver's directory: its knobs, and a link per bound device, named after the virtio
/// device, to that device's files.
const GUEST: &str = "/sys/kernel/hwconvey/guest";
const VDPA_DEVICES: &str = "/sys/bus/vdpa/devices";
/// Longest wait for a counter to move.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long the host may take to answer a sysfs read, or to take a CPU off and back on line,
/// while it is under attack: at least this, and at least [`SLOWER`] times what it took before
/// any attack (a busy machine slows both alike).
const RESPONSIVE: Duration = Duration::from_secs(1);
const SLOWER: u32 = 5;

// linux/vhost_types.h, virtio_config.h, virtio_ring.h
const VHOST_BACKEND_F_IOTLB_MSG_V2: u64 = 1;
const STATUS_ACK: u8 = 1;
const STATUS_DRIVER: u8 = 2;
const STATUS_DRIVER_OK: u8 = 4;
const STATUS_FEATURES_OK: u8 = 8;
const F_VERSION_1: u64 = 1 << 32;
const F_ACCESS_PLATFORM: u64 = 1 << 33;
const F_INDIRECT_DESC: u64 = 1 << 28;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;

// The hwconvey device (Documentation/protocol.rst).
const EVENTQ: usize = 0;
const REQUESTQ: usize = 1;
const F_DELTA: u64 = 1 << 0;
const F_REQUEST: u64 = 1 << 1;
const F_ACK: u64 = 1 << 2;
const MSG_SNAPSHOT: u8 = 0x01;
const MSG_REQUEST: u8 = 0x81;
const KIND_SNAPSHOT: u8 = 3;
const MAX_MSG_SIZE: u64 = 4096;
/// The most buffers the device takes in one chain.
const MAX_CHAIN: u16 = 16;

/// The driver's memory, at guest address (and IOVA) 0.
const MEM: usize = 1 << 20;
const RING: u16 = 64;
/// Request queue, its buffers and an indirect table.
const DESC: u64 = 0x0000;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const BUF: u64 = 0x4000;
const TABLE: u64 = 0x8000;
/// Event queue and its buffers.
const EDESC: u64 = 0x1_0000;
const EAVAIL: u64 = 0x1_1000;
const EUSED: u64 = 0x1_2000;
const EBUF: u64 = 0x2_0000;
const EVENTS: u16 = 8;

type Failure = String;
type Outcome = Result<(), Failure>;
/// A named test case.
type Case = (&'static str, fn(&Paths) -> Outcome);

fn fail<T>(what: impl Into<String>) -> Result<T, Failure> {
    Err(what.into())
}

/// A snapshot request: the smallest message a guest sends.
fn request(id: u32) -> Vec<u8> {
    let mut m = vec![1, MSG_REQUEST, 0, 0];
    m.extend_from_slice(&40u32.to_le_bytes());
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&[KIND_SNAPSHOT, 0]);
    m.extend_from_slice(&u16::MAX.to_le_bytes());
    m.extend_from_slice(&[0; 24]);
    m
}

/// Where the scenario's files are.
struct Paths {
    chardev: String,
    dev: PathBuf,
    /// The other guest's files: its device's link in [`GUEST`].
    other: Option<PathBuf>,
    /// How long [`responsive`] allows.
    limit: Duration,
}

impl Paths {
    /// A counter of the device's; a file that cannot be read ends the test.
    fn counter(&self, name: &str) -> u64 {
        let text = read(self.dev.join(name));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: not a counter: {text:?}"))
    }
}

/// The guest files of vDPA device `dev`, bound to virtio_vdpa and so to the guest driver: the
/// link in [`GUEST`] named after its virtio device (`virtio<N>`, under the vDPA device).
fn guest_files(dev: &str) -> Result<PathBuf, Failure> {
    let dir = PathBuf::from(VDPA_DEVICES).join(dev);
    let entries = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(n) = name.strip_prefix("virtio") else {
            continue;
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let link = PathBuf::from(GUEST).join(name);
        if !link.join("generation").is_file() {
            return fail(format!(
                "{dev}'s virtio device {name} has no guest files: no {}",
                link.display()
            ));
        }
        return Ok(link);
    }
    fail(format!(
        "{dev} has no virtio device in {}: is it bound to virtio_vdpa?",
        dir.display()
    ))
}

fn read(path: impl AsRef<std::path::Path>) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) -> Outcome {
    let end = Instant::now() + TIMEOUT;
    while !cond() {
        if Instant::now() > end {
            return fail(format!("no {what} within {} s", TIMEOUT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// How the VMM sets the device up.
#[derive(Clone, Copy)]
struct Setup {
    /// Features to ask for beyond the transport's.
    features: u64,
    /// Post buffers in the event queue too.
    events: bool,
    /// Set DRIVER_OK.
    start: bool,
    /// Where the request queue's indices start (`VHOST_SET_VRING_BASE`).
    base: u16,
    /// Where the event buffers are (a driver may point them anywhere).
    event_buffers: u64,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            features: F_DELTA | F_REQUEST | F_ACK,
            events: false,
            start: true,
            base: 0,
            event_buffers: EBUF,
        }
    }
}

/// The device, opened by this process as its VMM, and the driver's memory.
struct Vmm {
    vdpa: VhostKernVdpa<Arc<GuestMemoryMmap>>,
    mem: Arc<GuestMemoryMmap>,
    kicks: [EventFd; 2],
    avail: u16,
}

fn memfd() -> io::Result<File> {
    let file = File::from(memfd_create(c"hostile-vmm", MFdFlags::MFD_CLOEXEC)?);
    file.set_len(MEM as u64)?;
    Ok(file)
}

fn err(what: &str) -> impl Fn(vhost::Error) -> Failure + '_ {
    move |e| format!("{what}: {e:?}")
}

impl Vmm {
    fn open(p: &Paths, setup: Setup) -> Result<Self, Failure> {
        let file = memfd().map_err(|e| format!("memfd: {e}"))?;
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(0),
            MEM,
            Some(FileOffset::new(file, 0)),
        )])
        .map_err(|e| format!("guest memory: {e:?}"))?;
        let mem = Arc::new(mem);
        let mut vdpa = VhostKernVdpa::new(&p.chardev, mem.clone()).map_err(err("open"))?;
        vdpa.set_owner().map_err(err("VHOST_SET_OWNER"))?;
        let backend = vdpa
            .get_backend_features()
            .map_err(err("backend features"))?;
        if backend & (1 << VHOST_BACKEND_F_IOTLB_MSG_V2) == 0 {
            return fail("vhost-vdpa offers no IOTLB v2 messages");
        }
        vdpa.set_backend_features(1 << VHOST_BACKEND_F_IOTLB_MSG_V2)
            .map_err(err("VHOST_SET_BACKEND_FEATURES"))?;
        let offered = vdpa.get_features().map_err(err("VHOST_GET_FEATURES"))?;
        let want = F_VERSION_1 | F_ACCESS_PLATFORM | setup.features;
        vdpa.set_status(STATUS_ACK | STATUS_DRIVER)
            .map_err(err("status"))?;
        vdpa.set_features(want)
            .map_err(|e| format!("VHOST_SET_FEATURES {want:#x} (offered {offered:#x}): {e:?}"))?;
        vdpa.set_status(STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK)
            .map_err(err("FEATURES_OK"))?;
        let host = mem
            .get_host_address(GuestAddress(0))
            .map_err(|e| format!("{e:?}"))?;
        // IOVA = guest address, as a VMM without a vIOMMU maps guest RAM.
        vdpa.dma_map(0, MEM as u64, host, false)
            .map_err(err("IOTLB update"))?;
        let kicks = [
            EventFd::new(0).map_err(|e| e.to_string())?,
            EventFd::new(0).map_err(|e| e.to_string())?,
        ];
        let mut rings = vec![(REQUESTQ, DESC, AVAIL, USED, setup.base)];
        if setup.events {
            rings.push((EVENTQ, EDESC, EAVAIL, EUSED, 0));
        }
        let vmm = Self {
            vdpa,
            mem,
            kicks,
            avail: setup.base,
        };
        // The indices start where the base says, as for a driver whose state was restored.
        vmm.put16(AVAIL + 2, setup.base);
        vmm.put16(USED + 2, setup.base);
        for (q, desc, avail, used, base) in rings {
            let config = VringConfigData {
                queue_max_size: RING,
                queue_size: RING,
                flags: 0,
                desc_table_addr: desc,
                used_ring_addr: used,
                avail_ring_addr: avail,
                log_addr: None,
            };
            let v = &vmm.vdpa;
            v.set_vring_num(q, RING).map_err(err("ring size"))?;
            v.set_vring_addr(q, &config)
                .map_err(err("ring addresses"))?;
            v.set_vring_base(q, base).map_err(err("ring base"))?;
            v.set_vring_kick(q, &vmm.kicks[q]).map_err(err("kick"))?;
            v.set_vring_enable(q, true).map_err(err("enable"))?;
        }
        if setup.events {
            // Buffers for the device's messages, as the guest driver posts them.
            for k in 0..EVENTS {
                let buf = setup.event_buffers + u64::from(k) * MAX_MSG_SIZE;
                vmm.desc(EDESC, k, buf, MAX_MSG_SIZE as u32, DESC_F_WRITE, 0);
                vmm.put16(EAVAIL + 4 + 2 * u64::from(k), k);
            }
            vmm.put16(EAVAIL + 2, EVENTS);
        }
        if setup.start {
            vmm.vdpa
                .set_status(STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK)
                .map_err(err("DRIVER_OK"))?;
        }
        Ok(vmm)
    }

    fn put(&self, at: u64, bytes: &[u8]) {
        let _ = self.mem.write_slice(bytes, GuestAddress(at));
    }

    fn put16(&self, at: u64, v: u16) {
        self.put(at, &v.to_le_bytes());
    }

    fn get16(&self, at: u64) -> u16 {
        let mut b = [0u8; 2];
        let _ = self.mem.read_slice(&mut b, GuestAddress(at));
        u16::from_le_bytes(b)
    }

    /// Writes descriptor `i` of the table at `table`.
    fn desc(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = Vec::with_capacity(16);
        d.extend_from_slice(&addr.to_le_bytes());
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        self.put(table + 16 * u64::from(i), &d);
    }

    /// Makes chain `head` available and kicks the request queue.
    fn publish(&mut self, head: u16) {
        self.put16(AVAIL + 4 + 2 * u64::from(self.avail % RING), head);
        self.avail = self.avail.wrapping_add(1);
        self.set_avail(self.avail);
    }

    /// Sets the request queue's available index, whatever it means, and kicks.
    fn set_avail(&self, idx: u16) {
        self.put16(AVAIL + 2, idx);
        let _ = self.kicks[REQUESTQ].write(1);
    }

    fn used(&self) -> u16 {
        self.get16(USED + 2)
    }

    fn events_used(&self) -> u16 {
        self.get16(EUSED + 2)
    }

    fn kick_events(&self) {
        let _ = self.kicks[EVENTQ].write(1);
    }
}

/// Runs `case` with the device opened afresh.
fn session(p: &Paths, setup: Setup, case: impl FnOnce(&mut Vmm) -> Outcome) -> Outcome {
    let mut vmm = Vmm::open(p, setup)?;
    case(&mut vmm)
}

/// Publishes chain `head`, which must be served: counted, and given back.
fn served(p: &Paths, vmm: &mut Vmm, what: &str, head: u16) -> Outcome {
    let got = p.counter("messages_received");
    let used = vmm.used();
    vmm.publish(head);
    wait(&format!("{what} served"), || {
        p.counter("messages_received") == got + 1
    })?;
    wait(&format!("{what} given back"), || {
        vmm.used() == used.wrapping_add(1)
    })?;
    println!("  {what}: served and given back");
    Ok(())
}

/// Runs `attack`, which must stop the queue with nothing of it taken.
fn refused(p: &Paths, vmm: &mut Vmm, what: &str, attack: impl FnOnce(&mut Vmm)) -> Outcome {
    let got = p.counter("messages_received");
    let bad = p.counter("bad_chains");
    let used = vmm.used();
    attack(vmm);
    wait(&format!("refusal of {what}"), || {
        p.counter("bad_chains") == bad + 1
    })?;
    let now = p.counter("messages_received");
    if now != got {
        return fail(format!("{what}: the host took {} message(s)", now - got));
    }
    if vmm.used() != used {
        return fail(format!(
            "{what}: the used index moved from {used} to {}",
            vmm.used()
        ));
    }
    responsive(p)?;
    println!("  {what}: refused, nothing taken; the host still answers");
    Ok(())
}

/// How long a sysfs read and a CPU off and on line take.
fn timings() -> Result<[(&'static str, Duration); 3], Failure> {
    // A file that counts under the host's lock, as the hotplug path takes it.
    let online_cpus = format!("{HOST}/inventory/online_cpus");
    let t = Instant::now();
    let online = read(&online_cpus);
    let read_took = t.elapsed();
    if online.trim().parse::<u32>().is_err() {
        return fail(format!(
            "{online_cpus} does not read as a count: {online:?}"
        ));
    }
    let cpu = "/sys/devices/system/cpu/cpu3/online";
    let t = Instant::now();
    fs::write(cpu, "0").map_err(|e| format!("cpu3 offline: {e}"))?;
    let off_took = t.elapsed();
    let t = Instant::now();
    fs::write(cpu, "1").map_err(|e| format!("cpu3 online: {e}"))?;
    let on_took = t.elapsed();
    Ok([
        ("a sysfs read", read_took),
        ("cpu3 offline", off_took),
        ("cpu3 online", on_took),
    ])
}

/// The host still answers, while an attack is in place: a sysfs read and a CPU off and on
/// line each finish within `p.limit`, and the other guest, if any, receives an update.
fn responsive(p: &Paths) -> Outcome {
    for (what, took) in timings()? {
        if took > p.limit {
            return fail(format!(
                "{what} took {} ms under attack (limit {} ms)",
                took.as_millis(),
                p.limit.as_millis()
            ));
        }
    }
    if let Some(other) = &p.other {
        let number = |path: PathBuf| read(path).trim().parse::<u64>().unwrap_or(0);
        fs::write(BENCH_PUSH, "1").map_err(|e| format!("bench_push: {e}"))?;
        let host = number(PathBuf::from(HOST).join("generation"));
        wait("the other guest's update", || {
            number(other.join("generation")) >= host
        })?;
    }
    Ok(())
}

fn well_formed(p: &Paths) -> Outcome {
    session(p, Setup::default(), |vmm| {
        let m = request(1);
        vmm.put(BUF, &m);
        vmm.desc(DESC, 0, BUF, m.len() as u32, 0, 0);
        served(p, vmm, "a well-formed request", 0)
    })
}

/// Indices that wrap around 65535, as they do for a long-running driver: served.
fn wraparound(p: &Paths) -> Outcome {
    let setup = Setup {
        base: u16::MAX - 1,
        ..Setup::default()
    };
    session(p, setup, |vmm| {
        let m = request(7);
        vmm.put(BUF, &m);
        for head in 0..4 {
            vmm.desc(DESC, head, BUF, m.len() as u32, 0, 0);
            served(
                p,
                vmm,
                &format!("request {} of 4 across the index wrap", head + 1),
                head,
            )?;
        }
        Ok(())
    })
}

/// Event buffers outside the driver's mappings: writing the first message fails, and the queue
/// stops there, rather than take the next buffer, and the next, each time building a message
/// (a snapshot, a walk of the whole inventory) that cannot be delivered.
fn unwritable_events(p: &Paths) -> Outcome {
    let setup = Setup {
        events: true,
        event_buffers: 1 << 40,
        ..Setup::default()
    };
    let (bad, snaps) = (p.counter("bad_chains"), p.counter("snapshots"));
    session(p, setup, |vmm| {
        vmm.kick_events();
        wait("the event queue stopped", || {
            p.counter("bad_chains") == bad + 1
        })?;
        // More kicks change nothing: the queue stays stopped until a reset.
        for _ in 0..10 {
            vmm.kick_events();
        }
        let passes = p.counter("work_passes");
        let m = request(8);
        vmm.put(BUF, &m);
        vmm.desc(DESC, 0, BUF, m.len() as u32, 0, 0);
        vmm.publish(0);
        wait("a pass after the kicks", || {
            p.counter("work_passes") > passes
        })?;
        let built = p.counter("snapshots") - snaps;
        if p.counter("bad_chains") != bad + 1 || built > 1 {
            return fail(format!(
                "unwritable event buffers: {} stops, {built} snapshots built",
                p.counter("bad_chains") - bad
            ));
        }
        responsive(p)?;
        println!("  event buffers outside the mappings: the queue stopped at the first, {built} snapshot built");
        Ok(())
    })
}

fn zero_length(p: &Paths) -> Outcome {
    session(p, Setup::default(), |vmm| {
        let m = request(2);
        vmm.put(BUF, &m);
        vmm.desc(DESC, 0, BUF, 0, DESC_F_NEXT, 1);
        vmm.desc(DESC, 1, BUF, m.len() as u32, 0, 0);
        served(p, vmm, "a request after a zero-length buffer", 0)
    })
}

/// The request over `n` buffers of one byte, the last holding the rest.
fn split(vmm: &Vmm, head: u16, n: u16) {
    let m = request(3);
    vmm.put(BUF, &m);
    for k in 0..n - 1 {
        vmm.desc(
            DESC,
            head + k,
            BUF + u64::from(k),
            1,
            DESC_F_NEXT,
            head + k + 1,
        );
    }
    let last = head + n - 1;
    let rest = m.len() as u32 - u32::from(n - 1);
    vmm.desc(DESC, last, BUF + u64::from(n - 1), rest, 0, 0);
}

fn long_chains(p: &Paths) -> Outcome {
    session(p, Setup::default(), |vmm| {
        split(vmm, 0, MAX_CHAIN);
        served(
            p,
            vmm,
            &format!("a chain of {MAX_CHAIN} one-byte buffers"),
            0,
        )?;
        split(vmm, 20, MAX_CHAIN + 1);
        refused(
            p,
            vmm,
            &format!("a chain of {} buffers", MAX_CHAIN + 1),
            |v| v.publish(20),
        )
    })
}

fn indirect_tables(p: &Paths) -> Outcome {
    // Table lengths in bytes: empty, one entry, a full ring's worth, not a whole entry, 64 KiB.
    for len in [0u32, 16, 16 * u32::from(RING), 24, 1 << 16] {
        session(p, Setup::default(), |vmm| {
            let m = request(4);
            vmm.put(BUF, &m);
            for k in 0..(len / 16).min(256) as u16 {
                vmm.desc(TABLE, k, BUF, m.len() as u32, 0, 0);
            }
            vmm.desc(DESC, 0, TABLE, len, DESC_F_INDIRECT, 0);
            refused(p, vmm, &format!("an indirect table of {len} bytes"), |v| {
                v.publish(0)
            })
        })?;
    }
    Ok(())
}

fn malformed(p: &Paths) -> Outcome {
    let m = request(5);
    let len = m.len() as u32;
    type Attack = fn(&mut Vmm, u32);
    let attacks: [(&str, Attack); 5] = [
        ("a descriptor loop", |v, len| {
            v.desc(DESC, 0, BUF, len, DESC_F_NEXT, 1);
            v.desc(DESC, 1, BUF, len, DESC_F_NEXT, 0);
            v.publish(0);
        }),
        ("a head past the ring", |v, _| v.publish(1000)),
        ("a next index past the ring", |v, len| {
            v.desc(DESC, 0, BUF, len, DESC_F_NEXT, RING + 3);
            v.publish(0);
        }),
        ("an address outside the mappings", |v, len| {
            v.desc(DESC, 0, 1 << 40, len, 0, 0);
            v.publish(0);
        }),
        ("a buffer running past the mappings", |v, _| {
            v.desc(DESC, 0, MEM as u64 - 8, 64, 0, 0);
            v.publish(0);
        }),
    ];
    for (what, attack) in attacks {
        session(p, Setup::default(), |vmm| {
            vmm.put(BUF, &m);
            refused(p, vmm, what, |v| attack(v, len))
        })?;
    }
    for (what, idx) in [
        ("an available index 65535 ahead", u16::MAX),
        ("an available index one past the ring", RING + 1),
    ] {
        session(p, Setup::default(), |vmm| {
            vmm.put(BUF, &m);
            vmm.desc(DESC, 0, BUF, len, 0, 0);
            for k in 0..RING {
                vmm.put16(AVAIL + 4 + 2 * u64::from(k), 0);
            }
            refused(p, vmm, what, |v| v.set_avail(idx))
        })?;
    }
    Ok(())
}

fn features_never_offered(p: &Paths) -> Outcome {
    for (what, extra) in [
        ("indirect descriptors", F_INDIRECT_DESC),
        ("device feature bit 20", 1 << 20),
    ] {
        match Vmm::open(
            p,
            Setup {
                features: Setup::default().features | extra,
                ..Setup::default()
            },
        ) {
            Ok(_) => {
                return fail(format!(
                    "the device accepted {what}, which it never offered"
                ))
            }
            Err(e) if e.starts_with("VHOST_SET_FEATURES") => {
                println!("  {what} (never offered): refused")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `fork(2)`: this program runs no other thread, so the child may do anything.
fn fork() -> Result<ForkResult, Failure> {
    // SAFETY: The process is single-threaded (the tests run one after the other, and neither
    // the vhost crate nor this program starts threads), so the child's memory is consistent.
    unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))
}

/// The grandchild of [`owner_exits`]: holds the device open; once its owner (its parent, the
/// process `owner`) is gone, makes a request available (the memory is shared: the ring is the
/// owner's too) and kicks, waits for the device's pass to find the owner gone, and exits.
///
/// The owner's pid comes from the owner, taken before the fork: the owner may be gone before
/// this process first runs, and a parent read here would then be the reaper's.
fn hold_and_kick(p: &Paths, vmm: &Vmm, owner: u32) -> i32 {
    let end = Instant::now() + TIMEOUT;
    while std::os::unix::process::parent_id() == owner && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let m = request(6);
    vmm.put(BUF, &m);
    vmm.desc(DESC, 0, BUF, m.len() as u32, 0, 0);
    vmm.put16(AVAIL + 4, 0);
    vmm.put16(AVAIL + 2, 1);
    // The device's pass for this kick must find the owner gone, not be cut short by the reset
    // that closing the device brings.
    let skipped = p.counter("ownerless_passes");
    let _ = vmm.kicks[REQUESTQ].write(1);
    let _ = wait("a pass without the owner", || {
        p.counter("ownerless_passes") > skipped
    });
    0
}

/// A VMM that sets the device up and exits while another process keeps the device open and
/// kicks it: the rings are in an address space that is gone, and must not be processed in any
/// other (no chain taken, none even tried).
fn owner_exits(p: &Paths) -> Outcome {
    let (got, bad) = (p.counter("messages_received"), p.counter("bad_chains"));
    let skipped = p.counter("ownerless_passes");
    let (done_r, done_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let child = match fork()? {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            drop(done_r);
            // The child is the VMM: it sets the device up, leaves it open in a process of its
            // own (which also holds `done_w`), and exits.
            let owner = process::id();
            let code = match Vmm::open(p, Setup::default()) {
                Ok(vmm) => match fork() {
                    Ok(ForkResult::Child) => hold_and_kick(p, &vmm, owner),
                    Ok(ForkResult::Parent { .. }) => 0,
                    Err(_) => 1,
                },
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            };
            // Exits without running destructors: the device stays open in the grandchild.
            process::exit(code);
        }
    };
    // Our copy of the write end goes: the pipe ends when the grandchild has exited, which
    // closes the device and resets it.
    drop(done_w);
    let status = waitpid(child, None).map_err(|e| format!("waitpid: {e}"))?;
    let mut fds = [PollFd::new(done_r.as_fd(), PollFlags::POLLIN)];
    // The grandchild waits up to `TIMEOUT` for its owner to go and as long for the pass, then
    // closes the device: it is given that and as long again.
    let ready = poll(
        &mut fds,
        PollTimeout::try_from(3 * TIMEOUT).unwrap_or(PollTimeout::MAX),
    );
    let hung_up = fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLHUP));
    if status != WaitStatus::Exited(child, 0) {
        return fail(format!(
            "the exiting VMM could not set the device up: {status:?}"
        ));
    }
    if ready != Ok(1) || !hung_up {
        return fail("the process holding the device did not finish");
    }
    let (now, now_bad) = (p.counter("messages_received"), p.counter("bad_chains"));
    if p.counter("ownerless_passes") == skipped {
        return fail("no pass of the device found its owner gone");
    }
    // A pass may still reach the rings while the owner is exiting and its address space not
    // yet released (it is still the owner's: the chain then fails to read, a stopped queue).
    // What must never happen is a message taken after the owner is gone.
    if now != got {
        return fail(format!(
            "rings of an exited VMM were processed: {} taken, {} refused",
            now - got,
            now_bad - bad
        ));
    }
    println!(
        "  a VMM that exits with the device open and kicked elsewhere: its rings are left alone"
    );
    Ok(())
}

fn reset_storm(p: &Paths) -> Outcome {
    let rate: f64 = read(format!("{HOST}/rate_limit"))
        .trim()
        .parse()
        .unwrap_or(0.0);
    let burst: f64 = read(format!("{HOST}/rate_burst"))
        .trim()
        .parse()
        .unwrap_or(0.0);
    let (snaps0, held0) = (p.counter("snapshots"), p.counter("snapshots_deferred"));
    let starts = 20;
    let t = Instant::now();
    for start in 0..starts {
        let passes = p.counter("snapshots") + p.counter("snapshots_deferred");
        let vmm = Vmm::open(
            p,
            Setup {
                events: true,
                ..Setup::default()
            },
        )?;
        vmm.kick_events();
        // The device's worker ran for this start: it queued a snapshot or held it back.
        wait("a pass of the device", || {
            p.counter("snapshots") + p.counter("snapshots_deferred") > passes
        })?;
        if start == starts / 2 {
            responsive(p)?;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let snaps = p.counter("snapshots") - snaps0;
    let held = p.counter("snapshots_deferred") - held0;
    let bound = burst + rate * secs + 1.0;
    if snaps as f64 > bound {
        return fail(format!(
            "{snaps} snapshots for {starts} starts in {secs:.2} s, at {rate}/s with bursts of {burst}"
        ));
    }
    println!(
        "  {starts} starts in {secs:.2} s: {snaps} snapshots, {held} held back (at most {bound:.0} allowed)"
    );
    responsive(p)?;
    // Then a driver that starts the device and waits, without a kick or a request, gets its
    // snapshot when the next token is due: the device comes back to it by itself.
    session(
        p,
        Setup {
            events: true,
            ..Setup::default()
        },
        |vmm| {
            wait("the snapshot held back after the storm", || {
                vmm.events_used() != 0
            })?;
            let mut head = [0u8; 4];
            let _ = vmm.mem.read_slice(&mut head, GuestAddress(EUSED + 4));
            let first = u64::from(u32::from_le_bytes(head));
            let mut ty = [0u8; 2];
            let _ = vmm
                .mem
                .read_slice(&mut ty, GuestAddress(EBUF + first * MAX_MSG_SIZE));
            if ty[1] != MSG_SNAPSHOT {
                return fail(format!(
                    "the first message after the storm has type {:#x}",
                    ty[1]
                ));
            }
            println!("  after the storm, a driver that only waits gets its snapshot");
            Ok(())
        },
    )
}

fn no_deltas(p: &Paths) -> Outcome {
    let rate: f64 = read(format!("{HOST}/rate_limit"))
        .trim()
        .parse()
        .unwrap_or(0.0);
    let burst: f64 = read(format!("{HOST}/rate_burst"))
        .trim()
        .parse()
        .unwrap_or(0.0);
    let setup = Setup {
        features: F_REQUEST | F_ACK,
        events: true,
        ..Setup::default()
    };
    session(p, setup, |vmm| {
        vmm.kick_events();
        let (snaps0, held0) = (p.counter("snapshots"), p.counter("snapshots_deferred"));
        let updates = 20;
        let t = Instant::now();
        for _ in 0..updates {
            let passes = p.counter("work_passes");
            fs::write(BENCH_PUSH, "1").map_err(|e| e.to_string())?;
            wait("a pass after an update", || {
                p.counter("work_passes") > passes
            })?;
        }
        let secs = t.elapsed().as_secs_f64();
        let snaps = p.counter("snapshots") - snaps0;
        let held = p.counter("snapshots_deferred") - held0;
        let bound = burst + rate * secs + 1.0;
        if snaps as f64 > bound {
            return fail(format!(
                "{snaps} snapshots for {updates} updates without deltas in {secs:.2} s"
            ));
        }
        println!(
            "  {updates} updates to a driver without deltas in {secs:.2} s: {snaps} snapshots, {held} held back (at most {bound:.0} allowed)"
        );
        Ok(())
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: hostile-vmm /dev/vhost-vdpa-N DEVICE [OTHER_DEVICE]");
        process::exit(2);
    }
    // What the host takes before any attack sets the bound for during them.
    let before = match timings() {
        Ok(t) => t,
        Err(e) => {
            println!("FAIL: before the attacks: {e}");
            process::exit(1);
        }
    };
    let slowest = before.iter().map(|(_, t)| *t).max().unwrap_or_default();
    let other = match args.get(3).map(|d| guest_files(d)).transpose() {
        Ok(o) => o,
        Err(e) => {
            println!("FAIL: the other guest: {e}");
            process::exit(1);
        }
    };
    let p = Paths {
        chardev: args[1].clone(),
        dev: PathBuf::from(HOST).join(&args[2]),
        other,
        limit: RESPONSIVE.max(slowest * SLOWER),
    };
    println!(
        "  before the attacks: a sysfs read and cpu3 off and on line in at most {} ms; allowed under attack: {} ms",
        slowest.as_millis(),
        p.limit.as_millis()
    );
    let cases: [Case; 12] = [
        ("well-formed", well_formed),
        ("index wraparound", wraparound),
        ("unwritable event buffers", unwritable_events),
        ("zero-length", zero_length),
        ("long chains", long_chains),
        ("indirect tables", indirect_tables),
        ("malformed rings", malformed),
        ("features never offered", features_never_offered),
        ("owner exits", owner_exits),
        ("reset storm", reset_storm),
        ("no deltas", no_deltas),
        ("well-formed after all", well_formed),
    ];
    for (name, case) in cases {
        if let Err(e) = case(&p).and_then(|()| responsive(&p)) {
            println!("FAIL: {name}: {e}");
            process::exit(1);
        }
    }
    if p.counter("bad_messages") != 0 {
        println!("FAIL: the attacks reached the message decoder instead of stopping at the ring");
        process::exit(1);
    }
}
