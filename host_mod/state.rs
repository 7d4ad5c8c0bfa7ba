// SPDX-License-Identifier: GPL-2.0

//! The host's state: the inventory, what the guests were last told, each guest's quota and rate
//! limit, and the decisions that change them: initial allocation, admission of requests, and
//! re-allocation when hardware goes away.
//!
//! Every change is made under the state lock and immediately published: the delta from what
//! the guests were last told goes to every device, in generation order.

use crate::inventory::Placement;
use crate::proto::{
    admission::{plan_cpus, plan_memory, plan_release_cpus, Quota, TokenBucket},
    delta::write_delta,
    error::Error as ProtoError,
    in_kernel::{new_inventory, KInventory},
    inventory::{MemBlock, NodeId, Owner, MAX_BLOCKS, NODE_CPUS, ONLINE, PRESENT},
    message::{
        encode_response, DeltaWriter, Reason, Request, RequestKind, Response, Status, MAX_MSG_SIZE,
    },
};
use kernel::{numa, prelude::*};

/// What the host does with guests, set through sysfs.
#[derive(Clone, Copy)]
pub(crate) struct Policy {
    /// CPUs a new guest gets when its device is created.
    pub(crate) initial_cpus: u32,
    /// The quota a new guest starts with.
    pub(crate) default_quota: Quota,
    /// Admit requests (else: answer every request with a denial, allocate nothing).
    pub(crate) enforce: bool,
    /// Requests per second per guest, on average.
    pub(crate) rate: u32,
    /// Requests a guest may send at once.
    pub(crate) burst: u32,
    /// When the VMM that owned a device goes away (vhost-vdpa unbinds its address space), its
    /// guest's CPUs and memory go back to the free pool; the next VMM to take the device starts
    /// with the initial allocation. Else the guest keeps them for the next VMM.
    pub(crate) release_on_exit: bool,
    /// Pin the vCPU threads of each device's VM to the guest's CPUs ([`crate::vms`]).
    pub(crate) pin_vcpus: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            initial_cpus: 1,
            default_quota: Quota {
                max_cpus: 2,
                max_mem_mib: 512,
            },
            enforce: true,
            rate: 20,
            burst: 10,
            release_on_exit: true,
            pin_vcpus: true,
        }
    }
}

/// One guest, i.e. one device.
pub(crate) struct Guest {
    pub(crate) id: u32,
    pub(crate) quota: Quota,
    bucket: TokenBucket,
    pub(crate) last_request: Option<Request>,
    pub(crate) last_response: Option<Response>,
    /// Its VMM went away and its allocation went back to the free pool
    /// ([`Policy::release_on_exit`]): the next VMM starts it afresh.
    pub(crate) released: bool,
    /// What the guest lost to hotplug with nothing to replace it (it shrank), and is given back
    /// when capacity returns.
    pub(crate) owed: Owed,
}

/// CPUs and memory blocks a guest lost with no replacement, and the node of the first of each
/// it lost, where a restoration looks first (`None`: it had no node, any will do).
#[derive(Clone, Copy, Default)]
pub(crate) struct Owed {
    pub(crate) cpus: u32,
    pub(crate) cpus_node: Option<NodeId>,
    pub(crate) blocks: u32,
    pub(crate) blocks_node: Option<NodeId>,
}

impl Owed {
    fn add_cpu(&mut self, node: Option<NodeId>) {
        if self.cpus == 0 {
            self.cpus_node = node;
        }
        self.cpus = self.cpus.saturating_add(1);
    }

    fn add_block(&mut self, node: Option<NodeId>) {
        if self.blocks == 0 {
            self.blocks_node = node;
        }
        self.blocks = self.blocks.saturating_add(1);
    }
}

/// Counters of the host's decisions.
#[derive(Default, Clone, Copy)]
pub(crate) struct Decisions {
    pub(crate) granted: u64,
    pub(crate) partial: u64,
    pub(crate) denied: u64,
    pub(crate) rate_limited: u64,
    pub(crate) reallocations: u64,
    pub(crate) shrinks: u64,
    /// CPUs and memory blocks given back to guests that had shrunk.
    pub(crate) restores: u64,
}

/// What a publication produced: a delta for every guest, or the need for a snapshot.
pub(crate) enum Publication {
    /// Nothing changed since the last publication.
    Nothing,
    /// Send this delta to every guest.
    Delta(usize),
    /// The change does not fit a delta: every guest needs a snapshot.
    Snapshot,
}

/// The host's state, under the host's state lock.
pub(crate) struct HostState {
    /// The whole host as it is.
    pub(crate) inventory: KInventory,
    /// The whole host as the guests were last told.
    pub(crate) published: KInventory,
    pub(crate) guests: KVec<Guest>,
    pub(crate) policy: Policy,
    pub(crate) decisions: Decisions,
    /// Where publications are encoded.
    pub(crate) scratch: KVec<u8>,
    /// Where admission writes the components it picks: as long as the largest table, so that
    /// no request, whatever it asks for, allocates on the host.
    picks: KVec<u32>,
    /// While the module loads: the CPUs and memory blocks a hotplug callback reported, which
    /// the inventory built again after the registrations keeps as reported
    /// ([`HostState::rebuilt`]).
    pub(crate) reported: Option<Reported>,
}

/// Components that hotplug callbacks reported.
#[derive(Default)]
pub(crate) struct Reported {
    cpus: KVec<u32>,
    blocks: KVec<u32>,
}

fn distance(a: NodeId, b: NodeId) -> u32 {
    let node = |n: NodeId| numa::NodeId::from_u32(n.get().into());
    match (node(a), node(b)) {
        (Some(a), Some(b)) => a.distance(b),
        _ => u32::MAX,
    }
}

fn proto(e: ProtoError) -> Error {
    e.into()
}

impl HostState {
    pub(crate) fn new(inventory: KInventory) -> Result<Self> {
        let mut published = new_inventory()?;
        published.copy_from(&inventory).map_err(proto)?;
        let d = inventory.dims();
        let picks = KVec::from_elem(0u32, d.cpus.max(d.blocks).max(1) as usize, GFP_KERNEL)?;
        Ok(Self {
            inventory,
            published,
            guests: KVec::new(),
            policy: Policy::default(),
            decisions: Decisions::default(),
            scratch: KVec::from_elem(0u8, MAX_MSG_SIZE, GFP_KERNEL)?,
            picks,
            reported: None,
        })
    }

    /// The state for `scanned`, an inventory built again once the hotplug callbacks are
    /// registered, with the policy set meanwhile. What a callback reported since then is newer
    /// than the scan (a CPU's teardown runs while it is still in the online mask, a memory
    /// block is announced online before its state says so): it is kept as reported.
    pub(crate) fn rebuilt(&self, mut scanned: KInventory) -> Result<Self> {
        if let Some(r) = &self.reported {
            for &id in r.cpus.iter() {
                if let (Some(&now), Some(c)) =
                    (self.inventory.cpus().get(id as usize), scanned.cpu_mut(id))
                {
                    *c = now;
                }
            }
            for &i in r.blocks.iter() {
                if let (Some(&now), Some(b)) = (
                    self.inventory.blocks().get(i as usize),
                    scanned.block_mut(i),
                ) {
                    *b = now;
                }
            }
        }
        let mut fresh = Self::new(scanned)?;
        fresh.policy = self.policy;
        Ok(fresh)
    }

    pub(crate) fn guest(&self, id: u32) -> Option<&Guest> {
        self.guests.iter().find(|g| g.id == id)
    }

    pub(crate) fn guest_mut(&mut self, id: u32) -> Option<&mut Guest> {
        self.guests.iter_mut().find(|g| g.id == id)
    }

    /// Adds guest `id` with the default quota and gives it its initial CPUs, NUMA-local to
    /// each other. Returns how many it got.
    pub(crate) fn add_guest(&mut self, id: u32, now_ns: u64) -> Result<u32> {
        let p = self.policy;
        self.guests.push(
            Guest {
                id,
                quota: p.default_quota,
                bucket: TokenBucket::new(p.rate, p.burst, now_ns),
                last_request: None,
                last_response: None,
                released: false,
                owed: Owed::default(),
            },
            GFP_KERNEL,
        )?;
        Ok(self.grant_initial(id))
    }

    /// Gives guest `id` the initial CPUs, NUMA-local to each other, within its quota. Returns
    /// how many it got.
    fn grant_initial(&mut self, id: u32) -> u32 {
        let Some(quota) = self.guest(id).map(|g| g.quota) else {
            return 0;
        };
        if self.policy.initial_cpus == 0 {
            return 0;
        }
        let (_, n) = self.grant_cpus(Owner(id), self.policy.initial_cpus, None, &quota);
        if n > 0 {
            self.inventory.bump_generation();
        }
        n
    }

    /// The VMM of guest `id` went away: with [`Policy::release_on_exit`], everything the guest
    /// holds goes back to the free pool, whatever it was granted since an earlier release.
    /// Returns whether anything went.
    pub(crate) fn owner_left(&mut self, id: u32) -> bool {
        if !self.policy.release_on_exit || self.guest(id).is_none() {
            return false;
        }
        let before = self.inventory.generation;
        self.release_all(id);
        if let Some(g) = self.guest_mut(id) {
            g.released = true;
        }
        self.restore();
        self.inventory.generation != before
    }

    /// A VMM took the device of guest `id`: a guest whose allocation was released starts again
    /// with the initial one. Returns the CPUs it got, if it was released.
    pub(crate) fn owner_came(&mut self, id: u32) -> Option<u32> {
        let g = self.guest_mut(id).filter(|g| g.released)?;
        g.released = false;
        Some(self.grant_initial(id))
    }

    /// The CPUs allocated to guest `id`, in ascending order.
    pub(crate) fn guest_cpus(&self, id: u32) -> Result<KVec<u32>> {
        let mut cpus = KVec::new();
        for (i, c) in self.inventory.cpus().iter().enumerate() {
            if c.owner == Owner(id) {
                cpus.push(u32::try_from(i)?, GFP_KERNEL)?;
            }
        }
        Ok(cpus)
    }

    /// Frees everything guest `id` holds and forgets it.
    pub(crate) fn remove_guest(&mut self, id: u32) {
        self.release_all(id);
        self.guests.retain(|g| g.id != id);
        self.restore();
    }

    /// Gives guests that shrank what they lost, as far as the free pool and their quotas
    /// allow, NUMA-near where they lost it first; guests in the order they were added. Called
    /// whenever capacity may have come back. The caller publishes.
    fn restore(&mut self) {
        let mut restored = 0;
        for i in 0..self.guests.len() {
            let Some(&Guest {
                id, quota, owed, ..
            }) = self.guests.get(i)
            else {
                break;
            };
            if owed.cpus == 0 && owed.blocks == 0 {
                continue;
            }
            let mut left = owed;
            if owed.cpus > 0 {
                let (_, n) = self.grant_cpus(Owner(id), owed.cpus, owed.cpus_node, &quota);
                left.cpus -= n.min(owed.cpus);
                restored += u64::from(n);
            }
            if owed.blocks > 0 {
                let mib = self.inventory.block_mib();
                let want = u64::from(owed.blocks).saturating_mul(mib);
                let want = u32::try_from(want).unwrap_or(u32::MAX);
                let (_, n) = self.grant_memory(Owner(id), want, owed.blocks_node, &quota);
                left.blocks -= n.min(owed.blocks);
                restored += u64::from(n);
            }
            if let Some(g) = self.guests.get_mut(i) {
                g.owed = left;
            }
        }
        if restored > 0 {
            self.decisions.restores += restored;
            self.inventory.bump_generation();
        }
    }

    /// Frees everything guest `id` holds.
    fn release_all(&mut self, id: u32) {
        if let Some(g) = self.guest_mut(id) {
            // Released on purpose: nothing is owed any more.
            g.owed = Owed::default();
        }
        let owner = Owner(id);
        let mut changed = false;
        let d = self.inventory.dims();
        if let Some(cpus) = self.inventory.cpus_mut(0, d.cpus) {
            for c in cpus.iter_mut().filter(|c| c.owner == owner) {
                c.owner = Owner::FREE;
                changed = true;
            }
        }
        if let Some(blocks) = self.inventory.blocks_mut(0, d.blocks) {
            for b in blocks.iter_mut().filter(|b| b.owner == owner) {
                b.owner = Owner::FREE;
                changed = true;
            }
        }
        if changed {
            self.inventory.bump_generation();
        }
    }

    fn grant_cpus(
        &mut self,
        owner: Owner,
        want: u32,
        node: Option<NodeId>,
        quota: &Quota,
    ) -> (crate::proto::admission::Plan, u32) {
        let Self {
            inventory, picks, ..
        } = self;
        let plan = plan_cpus(inventory, owner, want, node, quota, &distance, picks);
        let mut n = 0;
        for &id in picks.iter().take(plan.picked) {
            if let Some(c) = inventory.cpu_mut(id) {
                c.owner = owner;
                n += 1;
            }
        }
        // The caller moves to the next generation, once for the whole change.
        (plan, n)
    }

    /// Gives `owner` the memory blocks that [`plan_memory`] picks; returns the plan and how many
    /// blocks it got.
    fn grant_memory(
        &mut self,
        owner: Owner,
        want_mib: u32,
        node: Option<NodeId>,
        quota: &Quota,
    ) -> (crate::proto::admission::Plan, u32) {
        let Self {
            inventory, picks, ..
        } = self;
        let plan = plan_memory(inventory, owner, want_mib, node, quota, &distance, picks);
        let mut n = 0;
        for &b in picks.iter().take(plan.picked) {
            if let Some(block) = inventory.block_mut(b) {
                block.owner = owner;
                n += 1;
            }
        }
        (plan, n)
    }

    /// Takes one of guest `id`'s request tokens for a snapshot the guest did not ask for (its
    /// driver started, or cannot take deltas): whether there was one. A snapshot is a walk of
    /// the whole inventory under the state lock, which a driver that resets in a loop must not
    /// get more often than its requests.
    pub(crate) fn take_token(&mut self, id: u32, now_ns: u64) -> Result<bool> {
        let policy = self.policy;
        let guest = self.guest_mut(id).ok_or(ENODEV)?;
        guest.bucket.set(policy.rate, policy.burst);
        Ok(guest.bucket.take(now_ns))
    }

    /// Admits a request from guest `id`: rate limit, quota, free pool, NUMA placement. Applies
    /// the grant to the inventory (the caller publishes) and returns the answer.
    pub(crate) fn admit(&mut self, id: u32, req: &Request, now_ns: u64) -> Result<Response> {
        let policy = self.policy;
        let generation = self.inventory.generation;
        let answer = |status, reason, amount| Response {
            id: req.id,
            kind: req.kind,
            status,
            reason,
            amount,
            generation,
        };
        let guest = self.guest_mut(id).ok_or(ENODEV)?;
        guest.last_request = Some(*req);
        guest.bucket.set(policy.rate, policy.burst);
        if !guest.bucket.take(now_ns) {
            self.decisions.rate_limited += 1;
            return Ok(self.answered(id, answer(Status::Busy, Reason::RateLimited, 0)));
        }
        if req.kind == RequestKind::Snapshot {
            // Answered by the snapshot itself, which the device queues on this grant: a snapshot
            // costs the host a walk of the whole inventory, so it takes a token like any request.
            return Ok(self.answered(id, answer(Status::Granted, Reason::None, 0)));
        }
        if !policy.enforce {
            self.decisions.denied += 1;
            return Ok(self.answered(id, answer(Status::Denied, Reason::Quota, 0)));
        }
        let quota = guest.quota;
        let owner = Owner(id);
        let (plan, amount) = match req.kind {
            RequestKind::Cpus => {
                let (plan, n) = self.grant_cpus(owner, req.amount, req.node, &quota);
                if let Some(g) = self.guest_mut(id) {
                    // What it got this way is no longer owed.
                    g.owed.cpus = g.owed.cpus.saturating_sub(n);
                }
                if n > 0 {
                    self.inventory.bump_generation();
                }
                (plan, n)
            }
            RequestKind::Memory => {
                let (plan, n) = self.grant_memory(owner, req.amount, req.node, &quota);
                if let Some(g) = self.guest_mut(id) {
                    g.owed.blocks = g.owed.blocks.saturating_sub(n);
                }
                if n > 0 {
                    self.inventory.bump_generation();
                }
                let mib = u64::from(n) * self.inventory.block_mib();
                (plan, u32::try_from(mib).unwrap_or(u32::MAX))
            }
            RequestKind::ReleaseCpus => {
                let Self {
                    inventory, picks, ..
                } = self;
                let plan = plan_release_cpus(inventory, owner, req.amount, picks);
                let mut n = 0;
                for &c in picks.iter().take(plan.picked) {
                    if let Some(cpu) = inventory.cpu_mut(c) {
                        cpu.owner = Owner::FREE;
                        n += 1;
                    }
                }
                if let Some(g) = self.guest_mut(id) {
                    // The guest says what it wants now: it is owed no CPU any more.
                    g.owed.cpus = 0;
                }
                if n > 0 {
                    self.inventory.bump_generation();
                    self.restore();
                }
                (plan, n)
            }
            RequestKind::ReleaseMemory | RequestKind::Snapshot => {
                return Ok(self.answered(id, answer(Status::Denied, Reason::Invalid, 0)));
            }
        };
        match plan.status {
            Status::Granted => self.decisions.granted += 1,
            Status::Partial => self.decisions.partial += 1,
            _ => self.decisions.denied += 1,
        }
        let resp = Response {
            id: req.id,
            kind: req.kind,
            status: plan.status,
            reason: plan.reason,
            amount,
            generation: self.inventory.generation,
        };
        Ok(self.answered(id, resp))
    }

    fn answered(&mut self, id: u32, resp: Response) -> Response {
        if let Some(g) = self.guest_mut(id) {
            g.last_response = Some(resp);
        }
        resp
    }

    /// CPU `cpu` came online (`Some`, where it sits) or is going offline (`None`). An allocated
    /// CPU that goes offline is replaced from the free pool, as close to it as possible, else
    /// its guest shrinks. A CPU that comes online is present, on its node, whatever the
    /// inventory said of it before (it may have been hot-added since it was built).
    pub(crate) fn cpu_changed(&mut self, cpu: u32, placement: Option<Placement>) -> Result {
        if let Some(r) = &mut self.reported {
            // Best effort: without room, the scan's view of this CPU stands.
            let _ = r.cpus.push(cpu, GFP_KERNEL);
        }
        let online = placement.is_some();
        let Some(c) = self.inventory.cpu_mut(cpu) else {
            return Err(EINVAL);
        };
        let was = c.online();
        if was == online {
            return Ok(());
        }
        if let Some(p) = placement {
            c.state |= PRESENT | ONLINE;
            c.node = p.node;
            c.package = p.package;
            c.core = p.core;
            c.thread = p.thread;
            if let Some(n) = p
                .node
                .and_then(|id| self.inventory.node_mut(u32::from(id.get())))
            {
                n.state |= PRESENT | ONLINE | NODE_CPUS;
            }
        } else {
            c.state &= !ONLINE;
        }
        let (owner, node) = {
            let c = self.inventory.cpu_mut(cpu).ok_or(EINVAL)?;
            let owner = c.owner;
            if !online && owner.is_guest() {
                // A guest's CPUs are online: this one goes back to the pool (offline).
                c.owner = Owner::FREE;
            }
            (owner, c.node)
        };
        if !online && owner.is_guest() {
            // Find a replacement near it (anywhere if it had no node).
            let quota = Quota {
                max_cpus: u32::MAX,
                max_mem_mib: u64::MAX,
            };
            let (_, n) = self.grant_cpus(owner, 1, node, &quota);
            if n > 0 {
                self.decisions.reallocations += 1;
            } else {
                self.decisions.shrinks += 1;
                if let Some(g) = self.guest_mut(owner.0) {
                    g.owed.add_cpu(node);
                }
            }
        }
        self.inventory.bump_generation();
        if online {
            self.restore();
        }
        Ok(())
    }

    /// Memory blocks `first..first + count` went online or offline. Allocated blocks that go
    /// offline are replaced from the free pool, near them, else their guest shrinks.
    ///
    /// A block that comes online is present, on its node from `nodes` (`(index, node)` pairs,
    /// [`crate::inventory::block_nodes`]): it may have been in a hole when the inventory was
    /// built. One beyond the inventory's end grows it, up to [`MAX_BLOCKS`]; the guests then get
    /// a snapshot, since a delta cannot change the dimensions.
    pub(crate) fn blocks_changed(
        &mut self,
        first: u32,
        count: u32,
        online: bool,
        nodes: &[(u32, Option<NodeId>)],
    ) -> Result {
        // Room for every block of the range that is in the table (only blocks going offline
        // can be lost), taken before anything changes: a failure then leaves the inventory as
        // it was. Growing the table is the last step that can fail.
        let span = if online {
            0
        } else {
            count.min(self.inventory.dims().blocks) as usize
        };
        let mut lost: KVec<(Owner, Option<NodeId>)> = KVec::with_capacity(span, GFP_KERNEL)?;
        if let Some(r) = &mut self.reported {
            let end = first.saturating_add(count).min(MAX_BLOCKS);
            for i in first..end {
                let _ = r.blocks.push(i, GFP_KERNEL);
            }
        }
        if online && first < MAX_BLOCKS {
            self.grow_blocks(first.saturating_add(count))?;
        }
        let mut changed = false;
        for i in first..first.saturating_add(count) {
            let Some(b) = self.inventory.block_mut(i) else {
                continue;
            };
            if b.online() == online {
                continue;
            }
            changed = true;
            if online {
                b.state |= PRESENT | ONLINE;
                if let Some(&(_, node)) = nodes.iter().find(|&&(index, _)| index == i) {
                    b.node = node;
                }
            } else {
                b.state &= !ONLINE;
                if b.owner.is_guest() {
                    // Within capacity: at most one entry per block of the table.
                    if lost.push_within_capacity((b.owner, b.node)).is_ok() {
                        b.owner = Owner::FREE;
                    }
                }
            }
        }
        let mib = self.inventory.block_mib();
        for (owner, node) in lost {
            let quota = Quota {
                max_cpus: u32::MAX,
                max_mem_mib: u64::MAX,
            };
            let want = u32::try_from(mib).unwrap_or(u32::MAX);
            let (_, got) = self.grant_memory(owner, want, node, &quota);
            if got > 0 {
                self.decisions.reallocations += 1;
            } else {
                self.decisions.shrinks += 1;
                if let Some(g) = self.guest_mut(owner.0) {
                    g.owed.add_block(node);
                }
            }
        }
        if changed {
            self.inventory.bump_generation();
        }
        if online {
            self.restore();
        }
        Ok(())
    }

    /// Makes room for memory blocks below `end` (at most [`MAX_BLOCKS`]): the new ones are
    /// absent, on no node, free.
    fn grow_blocks(&mut self, end: u32) -> Result {
        let mut dims = self.inventory.dims();
        let old = dims.blocks;
        let end = end.min(MAX_BLOCKS);
        if end <= old {
            return Ok(());
        }
        dims.blocks = end;
        // Admission picks from the largest table: its scratch grows first, so that a failure
        // leaves the inventory as it was.
        let picks = dims.cpus.max(end) as usize;
        if self.picks.len() < picks {
            self.picks.resize(picks, 0, GFP_KERNEL)?;
        }
        self.inventory.set_dims(dims).map_err(proto)?;
        for i in old..end {
            if let Some(b) = self.inventory.block_mut(i) {
                *b = MemBlock {
                    node: None,
                    state: 0,
                    owner: Owner::FREE,
                };
            }
        }
        Ok(())
    }

    /// Encodes what changed since the last publication into `scratch`, and marks it published.
    pub(crate) fn publish(&mut self) -> Result<Publication> {
        if self.inventory.generation == self.published.generation {
            return Ok(Publication::Nothing);
        }
        let Self {
            inventory,
            published,
            scratch,
            ..
        } = self;
        let delta = (|| -> core::result::Result<usize, ProtoError> {
            let mut w = DeltaWriter::new(scratch, published.generation, inventory.generation)?;
            let runs = write_delta(published, inventory, &mut w)?;
            if runs == 0 {
                return Err(ProtoError::Length);
            }
            w.finish()
        })();
        published.copy_from(inventory).map_err(proto)?;
        Ok(match delta {
            Ok(len) => Publication::Delta(len),
            Err(_) => Publication::Snapshot,
        })
    }

    /// Encodes a response into a fresh message.
    pub(crate) fn encode(resp: &Response) -> Result<([u8; 64], usize)> {
        let mut buf = [0u8; 64];
        let len = encode_response(resp, &mut buf)?;
        Ok((buf, len))
    }
}
