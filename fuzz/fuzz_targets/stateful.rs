// SPDX-License-Identifier: GPL-2.0

//! Sequences of events against the host's inventory, admission and the
//! guest's copy, with the transport losing or corrupting messages as the
//! input says. Invariants: admission never hands out a component that is not
//! free and online, nor beyond quota; a corrupted message changes nothing;
//! after a final resync the guest's copy equals the host's inventory.

#![no_main]

use hwconvey_proto::admission::{plan_cpus, plan_memory, plan_release_cpus, Quota};
use hwconvey_proto::delta::write_delta;
use hwconvey_proto::error::Error;
use hwconvey_proto::guest::GuestCopy;
use hwconvey_proto::inventory::*;
use hwconvey_proto::message::{DeltaWriter, SnapshotEncoder, MAX_MSG_SIZE};
use libfuzzer_sys::fuzz_target;

type Inv = Inventory<Vec<Cpu>, Vec<MemBlock>, Vec<Node>>;
type Copy = GuestCopy<Vec<Cpu>, Vec<MemBlock>, Vec<Node>>;

const CPUS: u32 = 32;
const BLOCKS: u32 = 32;
const ME: Owner = Owner(1);
const QUOTA: Quota = Quota { max_cpus: 12, max_mem_mib: 12 * 128 };

fn empty() -> Inv {
    Inv::new(Vec::new(), Vec::new(), Vec::new()).unwrap()
}

fn host() -> Inv {
    let mut inv = empty();
    inv.reset(Dims { cpus: CPUS, blocks: BLOCKS, nodes: 2, block_size: 128 << 20 }).unwrap();
    for i in 0..CPUS {
        *inv.cpu_mut(i).unwrap() = Cpu { node: NodeId::new((i * 2 / CPUS) as u16), state: PRESENT | ONLINE, ..Cpu::default() };
    }
    for i in 0..BLOCKS {
        *inv.block_mut(i).unwrap() = MemBlock { node: NodeId::new((i * 2 / BLOCKS) as u16), state: PRESENT | ONLINE, owner: Owner::FREE };
    }
    for n in 0..2 {
        inv.node_mut(n).unwrap().state = PRESENT | ONLINE;
    }
    inv.generation = 1;
    inv
}

fn resync(copy: &mut Copy, host: &Inv) {
    let mut enc = SnapshotEncoder::new(ME.0);
    let mut buf = [0u8; 256];
    while let Some(n) = enc.next_part(host, &mut buf).unwrap() {
        copy.receive(&buf[..n]).unwrap();
    }
}

fn dist(a: NodeId, b: NodeId) -> u32 {
    if a == b { 10 } else { 20 }
}

fuzz_target!(|data: &[u8]| {
    let mut host = host();
    let mut published = empty();
    published.copy_from(&host).unwrap();
    let mut copy = Copy::new(empty(), empty());
    resync(&mut copy, &host);

    for op in data.chunks(3) {
        let [what, a, b] = [op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0)];
        let mut out = [0u32; 64];
        match what % 6 {
            0 => {
                // CPU hotplug: offline frees it.
                let c = host.cpu_mut(u32::from(a) % CPUS).unwrap();
                if c.online() {
                    c.state = PRESENT;
                    c.owner = Owner::FREE;
                } else {
                    c.state = PRESENT | ONLINE;
                }
            }
            1 => {
                let bl = host.block_mut(u32::from(a) % BLOCKS).unwrap();
                if bl.online() {
                    bl.state = PRESENT;
                    bl.owner = Owner::FREE;
                } else {
                    bl.state = PRESENT | ONLINE;
                }
            }
            2 | 3 => {
                let guest = Owner(1 + u32::from(b % 3));
                let held = host.allocation(guest);
                let plan = if what % 6 == 2 {
                    plan_cpus(&host, guest, u32::from(a % 20), NodeId::new(u16::from(b % 3)), &QUOTA, &dist, &mut out)
                } else {
                    plan_memory(&host, guest, u32::from(a) * 16, NodeId::new(u16::from(b % 3)), &QUOTA, &dist, &mut out)
                };
                for &id in &out[..plan.picked] {
                    if what % 6 == 2 {
                        let c = host.cpu_mut(id).unwrap();
                        assert!(c.online() && c.owner == Owner::FREE);
                        c.owner = guest;
                    } else {
                        let bl = host.block_mut(id).unwrap();
                        assert!(bl.online() && bl.owner == Owner::FREE);
                        bl.owner = guest;
                    }
                }
                let now = host.allocation(guest);
                assert!(now.cpus <= QUOTA.max_cpus.max(held.cpus));
                assert!(now.mem_mib <= QUOTA.max_mem_mib.max(held.mem_mib));
            }
            4 => {
                let guest = Owner(1 + u32::from(b % 3));
                let plan = plan_release_cpus(&host, guest, u32::from(a % 8), &mut out);
                for &id in &out[..plan.picked] {
                    let c = host.cpu_mut(id).unwrap();
                    assert_eq!(c.owner, guest);
                    c.owner = Owner::FREE;
                }
            }
            _ => {
                // Publish, and deliver (or lose, or corrupt) the delta.
                let base = published.generation;
                host.generation = base + 1;
                let mut buf = [0u8; MAX_MSG_SIZE];
                let mut w = DeltaWriter::new(&mut buf, base, host.generation).unwrap();
                let fits = write_delta(&published, &host, &mut w).is_ok();
                published.copy_from(&host).unwrap();
                let Ok(n) = w.finish() else { continue };
                if !fits || a % 7 == 0 {
                    continue; // lost
                }
                let mut msg = buf[..n].to_vec();
                if a % 5 == 0 {
                    let at = usize::from(b) % msg.len();
                    msg[at] ^= 1 << (a % 8);
                }
                let gen = copy.stored().generation;
                match copy.receive(&msg) {
                    Ok(_) => {}
                    Err(Error::Gap) => resync(&mut copy, &host),
                    Err(_) => assert_eq!(copy.stored().generation, gen),
                }
            }
        }
    }
    resync(&mut copy, &host);
    let s = copy.stored();
    assert!(s.cpus() == host.cpus() && s.blocks() == host.blocks() && s.nodes() == host.nodes());
});
