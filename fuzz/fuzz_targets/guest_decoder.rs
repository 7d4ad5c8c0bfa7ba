// SPDX-License-Identifier: GPL-2.0

//! What a guest receives from the host: any bytes, against a copy that is in
//! sync. Nothing panics; a rejected message leaves the copy as it was; an
//! accepted one leaves it consistent (every component valid).

#![no_main]

use hwconvey_proto::guest::GuestCopy;
use hwconvey_proto::inventory::*;
use hwconvey_proto::message::{SnapshotEncoder, MAX_MSG_SIZE};
use hwconvey_proto::run::Run;
use libfuzzer_sys::fuzz_target;

type Inv = Inventory<Vec<Cpu>, Vec<MemBlock>, Vec<Node>>;

fn host() -> Inv {
    let mut inv = Inv::new(Vec::new(), Vec::new(), Vec::new()).unwrap();
    inv.reset(Dims { cpus: 16, blocks: 16, nodes: 2, block_size: 128 << 20 }).unwrap();
    for i in 0..16 {
        *inv.cpu_mut(i).unwrap() = Cpu { node: NodeId::new((i / 8) as u16), state: PRESENT | ONLINE, owner: Owner(i % 3), ..Cpu::default() };
        *inv.block_mut(i).unwrap() = MemBlock { node: NodeId::new((i / 8) as u16), state: PRESENT | ONLINE, owner: Owner(i % 2) };
    }
    for n in 0..2 {
        inv.node_mut(n).unwrap().state = PRESENT | ONLINE;
    }
    inv.generation = 10;
    inv
}

fn consistent(inv: &Inv) -> bool {
    let d = inv.dims();
    inv.cpus().iter().enumerate().all(|(i, c)| {
        Run::Cpu { first: i as u32, count: 1, node: c.node, state: c.state, owner: c.owner }.validate(&d).is_ok()
    }) && inv.blocks().iter().enumerate().all(|(i, b)| {
        Run::Mem { first: i as u32, count: 1, node: b.node, state: b.state, owner: b.owner }.validate(&d).is_ok()
    })
}

type Copy = GuestCopy<Vec<Cpu>, Vec<MemBlock>, Vec<Node>>;

thread_local! {
    /// The snapshot that puts a copy in sync, and a copy kept in sync with it.
    static STATE: std::cell::RefCell<(Vec<u8>, Copy, Inv)> = std::cell::RefCell::new({
        let host = host();
        let mut buf = [0u8; MAX_MSG_SIZE];
        let n = SnapshotEncoder::new(1).next_part(&host, &mut buf).unwrap().unwrap();
        let mut copy = Copy::new(Inv::new(Vec::new(), Vec::new(), Vec::new()).unwrap(), Inv::new(Vec::new(), Vec::new(), Vec::new()).unwrap());
        copy.receive(&buf[..n]).unwrap();
        (buf[..n].to_vec(), copy, host)
    });
}

fuzz_target!(|data: &[u8]| {
    STATE.with(|state| {
        let (snapshot, copy, host) = &mut *state.borrow_mut();
        match copy.receive(data) {
            Err(_) => {
                let s = copy.stored();
                assert!(s.generation == host.generation && s.cpus() == host.cpus() && s.blocks() == host.blocks() && s.nodes() == host.nodes());
            }
            Ok(_) => {
                assert!(consistent(copy.stored()));
                // Back in sync with the fixture for the next input.
                copy.receive(snapshot).unwrap();
            }
        }
    });
});
