//! Agent runs across the node's cores: what each run (the requests a
//! client marks with one `x-tollgate-run`, within its team) has used, and
//! what its requests in flight hold, in one table of atomics every core
//! reads and writes.
//!
//! Why not per-core counts merged every 100 ms, as team budgets and rate
//! limits are: an agent's run is a few connections opened at once, which
//! the kernel spreads over the cores; with merged counts each core could
//! admit a run's whole limit before it saw the others' (W × the limit on
//! W cores). A slot of atomics per run, touched only by that run's
//! requests (a handful of atomic operations per request and per run in its
//! chain), gives a bound that does not grow with the cores, and locks
//! nothing: a core never waits for another (the one wait, a slot being
//! claimed, lasts a few stores). Teams and keys without run limits never
//! touch the table.
//!
//! The bound: a request reserves its estimated cost and tokens (its prompt
//! and its `max_tokens`, or the default reserve) against its run and every
//! run above it before it is sent, and the admission that would pass a
//! limit is refused; so a run passes a cost or token limit only by what
//! its requests use beyond their estimates (nothing for a request that
//! sets `max_tokens`, as long as the provider counts the prompt as the
//! gateway does), and never passes a request or wall-time limit.
//!
//! Slots: open addressing over a power-of-two table, a run's slot found by
//! its keyed hash (SipHash with a per-process key, so that no tenant can
//! aim a run id at another's slot), looked for in a window of 32
//! slots. Slots never empty again; a run idle for [`IDLE_MS`] with
//! nothing in flight gives its slot up to a new run when the new run's
//! window is full (or its team is at its share), and each team (by a bucket of
//! its name's hash) holds at most a quarter of the table, so that one
//! tenant creating runs in a loop cannot take every other team's.
//!
//! With `[cluster]`, a run is shared between nodes: each slot also carries
//! the run's name across the cluster ([`shared_id`]: the per-process tag
//! differs from node to node) and the other nodes' figures, which the
//! cluster thread pushes and reads every interval ([`Runs::shared_runs`],
//! [`Runs::set_remote`]); admissions count them with the node's own.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use tollgate_policy::run::{RunLimit, RunLimits, RunUse};

/// Slots in the node's table: runs active within [`IDLE_MS`] at once.
pub const RUNS_MAX: usize = 1 << 16;
/// A run without a request for this long may give up its slot.
pub const IDLE_MS: u64 = 3_600_000;
/// Slots looked at for a run's own, from its hash on.
const PROBES: usize = 32;
/// Runs above a request's run that it draws on: its parent, the parent's
/// parent, and so on (a longer chain is cut here).
pub const DEPTH_MAX: usize = 8;
/// Buckets of team names for the per-team share of the table: teams whose
/// names share a bucket share its quarter. At 256, fifty teams almost
/// surely had a pair that did, and one of them, minting run ids, held the
/// other's new runs at `run_table_full` (found by a review); at 65,536 two
/// teams share one a time in 65,536 (of T teams, some pair about
/// T² / 131,072 of the time: 7% at 100), drawn again at each start.
const TEAM_BUCKETS: usize = 1 << 16;
/// A tag being written: its slot is claimed and not yet readable.
const BUSY: u64 = u64::MAX;

/// One run's figures.
#[derive(Default)]
struct Slot {
    /// The run's keyed hash (team and id); 0 for an empty slot, [`BUSY`]
    /// while claimed.
    tag: AtomicU64,
    /// The parent run's tag, 0 for none: learned from the first request
    /// that names one.
    parent: AtomicU64,
    /// The team's bucket, for its share of the table.
    team: AtomicU32,
    started_ms: AtomicU64,
    last_ms: AtomicU64,
    /// Spent and counted by requests that ended.
    cost: AtomicU64,
    tokens: AtomicU64,
    /// Admitted, including those in flight.
    requests: AtomicU64,
    /// Estimates held by requests in flight.
    held_cost: AtomicU64,
    held_tokens: AtomicU64,
    /// The run's name across the cluster ([`shared_id`]); 0 without
    /// `[cluster]`, or for a run above another whose id no request of
    /// this node has named yet.
    shared: IdCell,
    /// The parent's name across the cluster, learned with `parent`, or
    /// from the run's figures in Redis (another node saw a request name
    /// it): what lets a node reach a grandparent no request of its own
    /// named.
    parent_shared: IdCell,
    /// The other nodes' figures as of the cluster thread's last exchange:
    /// ended cost and tokens, admitted requests, and the run's first
    /// request on any node (Unix ms, 0 until known).
    remote_cost: AtomicU64,
    remote_tokens: AtomicU64,
    remote_requests: AtomicU64,
    remote_started_ms: AtomicU64,
}

impl Slot {
    fn shared(&self) -> u128 {
        self.shared.load()
    }

    /// When the run began: its first request here, or on another node if
    /// that was earlier.
    fn started_ms(&self) -> u64 {
        let here = self.started_ms.load(SeqCst);
        match self.remote_started_ms.load(SeqCst) {
            0 => here,
            there => here.min(there),
        }
    }
}

/// A 128-bit cluster name in two atomics. Written whole only while its
/// slot is claimed (`fill`, under [`BUSY`]); a parent's is claimed by
/// [`IdCell::claim`] (high half first), and its readers check it against
/// the tag beside it, so a half-written one is taken for none.
#[derive(Default)]
struct IdCell {
    hi: AtomicU64,
    lo: AtomicU64,
}

impl IdCell {
    fn load(&self) -> u128 {
        (u128::from(self.hi.load(SeqCst)) << 64) | u128::from(self.lo.load(SeqCst))
    }

    fn store(&self, v: u128) {
        self.hi.store((v >> 64) as u64, SeqCst);
        self.lo.store(v as u64, SeqCst);
    }

    /// Sets an empty cell to `v`; the value already there otherwise.
    fn claim(&self, v: u128) -> Result<(), u128> {
        match self.hi.compare_exchange(0, (v >> 64) as u64, SeqCst, SeqCst) {
            Ok(_) => {
                self.lo.store(v as u64, SeqCst);
                Ok(())
            }
            Err(_) => Err(self.load()),
        }
    }

    /// Empties the cell if it holds `v`.
    fn release(&self, v: u128) {
        if self.hi.compare_exchange((v >> 64) as u64, 0, SeqCst, SeqCst).is_ok() {
            self.lo.store(0, SeqCst);
        }
    }
}

/// A run's name across the cluster's nodes: the first 16 bytes of the
/// SHA-256 of its team and id, never 0 in its high half. (A keyed hash
/// like the slots' tag would differ between nodes; a cryptographic one of
/// 128 bits keeps a tenant from naming a run whose figures land on
/// another team's, even with many targets to aim at.)
pub fn shared_id(team: &str, run: &str) -> u128 {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(team.as_bytes());
    h.update([0]);
    h.update(run.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&d[..16]);
    // A high half of 0 would read as an empty cell.
    u128::from_be_bytes(first) | (1 << 64)
}

/// A shared run's figures on this node, as the cluster thread pushes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedRun {
    /// Its slot and the slot's tag then, for [`Runs::set_remote`].
    pub at: usize,
    pub tag: u64,
    pub id: u128,
    pub cost: u64,
    pub tokens: u64,
    pub requests: u64,
    pub started_ms: u64,
    pub last_ms: u64,
    /// The parent's [`shared_id`], 0 for none known.
    pub parent: u128,
}

/// The other nodes' figures for a run, as the cluster thread read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Remote {
    pub cost: u64,
    pub tokens: u64,
    pub requests: u64,
    pub started_ms: u64,
    /// The parent's [`shared_id`], as a node that saw it named wrote it;
    /// 0 for none.
    pub parent: u128,
}

/// A run as the table knows it: its slot's tag and, when shared, its
/// cluster name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Link {
    tag: u64,
    /// [`shared_id`]; 0 when not shared or not known.
    shared: u128,
}

/// What a request is estimated to use, reserved while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    pub cost: u64,
    pub tokens: u64,
}

/// Why a run's request was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A run of the chain (0 the request's own, 1 its parent, …) is at a
    /// limit: which, the limit's value, its figures, and what this
    /// request would have added.
    /// `via_named_parent`: the run above the request's own is the parent
    /// it named (it may be another, learned first).
    Limit { level: usize, limit: RunLimit, cap: u64, used: RunUse, estimate: u64, via_named_parent: bool },
    /// No slot for a new run: the table (or the team's share) is full of
    /// runs active within the hour.
    Full,
}

/// The node's runs.
pub struct Runs {
    /// Made at the first request under run limits: a node that sets none
    /// never holds the table's 9 MB.
    slots: std::sync::OnceLock<Box<[Slot]>>,
    /// Slots, a power of two.
    capacity: usize,
    hasher: std::hash::RandomState,
    /// Slots held per team bucket.
    team_slots: Box<[AtomicU32]>,
    /// Refusals by limit (cost, tokens, requests, wall time) and for a full
    /// table, since start.
    refused: [AtomicU64; 5],
    /// With `[cluster]`: slots carry their run's [`shared_id`].
    shared: bool,
}

impl Default for Runs {
    fn default() -> Runs {
        Runs::with_capacity(RUNS_MAX)
    }
}

impl Runs {
    /// A table of `capacity` slots (rounded up to a power of two), made
    /// when first needed.
    pub fn with_capacity(capacity: usize) -> Runs {
        Runs {
            slots: std::sync::OnceLock::new(),
            capacity: capacity.next_power_of_two().max(PROBES),
            hasher: std::hash::RandomState::new(),
            team_slots: zeroed_counters(TEAM_BUCKETS),
            refused: Default::default(),
            shared: false,
        }
    }

    /// Runs shared with the other nodes of `[cluster]`: each slot claimed
    /// learns its run's [`shared_id`] for the cluster thread.
    pub fn shared_with_cluster(mut self) -> Runs {
        self.shared = true;
        self
    }

    /// The slots, made by the first caller (another core's first caller
    /// waits for it, once).
    fn slots(&self) -> &[Slot] {
        self.slots.get_or_init(|| (0..self.capacity).map(|_| Slot::default()).collect())
    }

    /// A run's tag: its team and id, hashed with the process's key; never
    /// 0 or [`BUSY`]. Shared, the hash is of its [`shared_id`], so that a
    /// parent known only by that (from Redis) has a tag too.
    fn link(&self, team: &str, run: &str) -> Link {
        if self.shared {
            return self.shared_link(shared_id(team, run));
        }
        let mut h = self.hasher.build_hasher();
        team.hash(&mut h);
        run.hash(&mut h);
        Link { tag: untagged(h.finish()), shared: 0 }
    }

    fn shared_link(&self, shared: u128) -> Link {
        Link { tag: untagged(self.hasher.hash_one(("run", shared))), shared }
    }

    fn team_bucket(&self, team: &str) -> u32 {
        (self.hasher.hash_one(("team", team)) % TEAM_BUCKETS as u64) as u32
    }

    /// Admits a request of run `run` (with `parent`, when the request
    /// names one) of `team` under `limits`, reserving `estimate` against
    /// it and every run above it; the hold releases the estimate when it
    /// drops, after [`RunHold::charge`] has counted what the request used.
    pub fn admit(
        self: &Arc<Self>,
        team: &str,
        run: &str,
        parent: Option<&str>,
        limits: RunLimits,
        estimate: Estimate,
        now_ms: u64,
    ) -> Result<RunHold, Refusal> {
        let bucket = self.team_bucket(team);
        let own = self.link(team, run);
        let parent = parent.map(|p| self.link(team, p)).filter(|p| p.tag != own.tag);
        // A slot given up between finding it and holding on it (a rare
        // race with a reclaim) is looked for again.
        for _ in 0..4 {
            let chain = self.chain(own, parent, bucket, now_ms)?;
            match self.take(&chain, limits, estimate, now_ms) {
                Ok(true) => return Ok(RunHold { runs: self.clone(), chain, estimate }),
                Ok(false) => continue,
                Err(mut r) => {
                    // A run refused is still active: a loop that keeps
                    // asking keeps its slot, and its refusal.
                    self.slots()[chain.slots[0].0].last_ms.store(now_ms, SeqCst);
                    if let Refusal::Limit { via_named_parent, .. } = &mut r {
                        *via_named_parent = parent.is_some_and(|p| chain.len > 1 && chain.slots[1].1 == p.tag);
                    }
                    return Err(r);
                }
            }
        }
        Err(Refusal::Full)
    }

    /// Counts a request refused for its run (for the metrics): once per
    /// request, by the phase that gives up on it, since a refusal with an
    /// overstated estimate may be followed by an admission.
    pub fn count_refusal(&self, r: &Refusal) {
        let i = match r {
            Refusal::Limit { limit: RunLimit::Cost, .. } => 0,
            Refusal::Limit { limit: RunLimit::Tokens, .. } => 1,
            Refusal::Limit { limit: RunLimit::Requests, .. } => 2,
            Refusal::Limit { limit: RunLimit::WallTime, .. } => 3,
            Refusal::Full => 4,
        };
        self.refused[i].fetch_add(1, SeqCst);
    }

    /// The slots of a run and of the runs above it, found or claimed.
    fn chain(&self, own: Link, parent: Option<Link>, bucket: u32, now_ms: u64) -> Result<Chain, Refusal> {
        let mut chain = Chain::default();
        let mut next = (own, parent);
        while chain.len < DEPTH_MAX {
            let (run, parent) = next;
            let i = self.slot(run, parent, bucket, now_ms)?;
            chain.slots[chain.len] = (i, run.tag);
            chain.len += 1;
            let s = &self.slots()[i];
            // The parent's cluster name before its tag: it was stored first.
            let up_shared = s.parent_shared.load();
            let up = s.parent.load(SeqCst);
            if up == 0 || chain.slots[..chain.len].iter().any(|&(_, t)| t == up) {
                break;
            }
            let up_shared = if up_shared != 0 && self.shared_link(up_shared).tag == up { up_shared } else { 0 };
            next = (Link { tag: up, shared: up_shared }, None);
        }
        Ok(chain)
    }

    /// The slot of run `tag`, claimed if it has none (with `parent` as its
    /// parent, when it has none yet).
    fn slot(&self, run: Link, parent: Option<Link>, bucket: u32, now_ms: u64) -> Result<usize, Refusal> {
        let tag = run.tag;
        if let Some(at) = self.find(tag) {
            let s = &self.slots()[at];
            if let Some(p) = parent {
                self.set_parent(s, p);
            }
            return Ok(at);
        }
        // The first empty slot, within the team's share. A slot filled
        // since the search above may be this run's own, claimed by another
        // of its requests on another core: taken as it is, never passed
        // for a second slot of the same run (which would give the run two
        // sets of figures, each under the limit).
        for at in self.window(tag) {
            let s = &self.slots()[at];
            match self.settled_tag(at) {
                0 => {}
                t if t == tag => return Ok(at),
                _ => continue,
            }
            if !self.enter_team(bucket) {
                break;
            }
            if s.tag.compare_exchange(0, BUSY, SeqCst, SeqCst).is_ok() {
                self.fill(s, run, parent, bucket, now_ms);
                return Ok(at);
            }
            self.team_slots[bucket as usize].fetch_sub(1, SeqCst);
            // Taken meanwhile: by another request of this run, perhaps.
            if self.settled_tag(at) == tag {
                return Ok(at);
            }
        }
        self.reclaim(run, parent, bucket, now_ms)
    }

    /// Gives a slot its parent, if it has none; true when this call did.
    /// Shared, the parent's cluster name goes first, and whichever name
    /// got there first decides the tag too (two requests naming different
    /// parents, or a request and Redis, never leave a name and a tag of
    /// different runs).
    fn set_parent(&self, s: &Slot, p: Link) -> bool {
        if s.parent.load(SeqCst) != 0 {
            return false;
        }
        if p.shared != 0 && s.parent_shared.claim(p.shared).is_err() {
            // Another parent's name got there first: its writer sets the
            // tag that goes with it.
            return false;
        }
        s.parent.compare_exchange(0, p.tag, SeqCst, SeqCst).is_ok()
    }

    /// The slots a run's tag may sit in, in probe order.
    fn window(&self, tag: u64) -> impl Iterator<Item = usize> + Clone {
        let mask = self.capacity - 1;
        let start = tag as usize & mask;
        (0..PROBES).map(move |i| (start + i) & mask)
    }

    /// A run's own slot, anywhere in its window: a run that took over an
    /// idle slot may sit past an empty one.
    fn find(&self, tag: u64) -> Option<usize> {
        self.window(tag).find(|&at| self.settled_tag(at) == tag)
    }

    /// A slot's tag once no claim is under way (a claim is a few stores).
    fn settled_tag(&self, at: usize) -> u64 {
        loop {
            match self.slots()[at].tag.load(SeqCst) {
                BUSY => std::hint::spin_loop(),
                t => return t,
            }
        }
    }

    /// The run's window is full of other runs (or its team has its share):
    /// a run of the window idle for [`IDLE_MS`] with nothing in flight
    /// gives its slot up, if the team may take one more (or the slot was
    /// the team's own).
    fn reclaim(&self, run: Link, parent: Option<Link>, bucket: u32, now_ms: u64) -> Result<usize, Refusal> {
        for at in self.window(run.tag) {
            let s = &self.slots()[at];
            let t = s.tag.load(SeqCst);
            if t == 0 || t == BUSY || now_ms.saturating_sub(s.last_ms.load(SeqCst)) < IDLE_MS {
                continue;
            }
            if s.tag.compare_exchange(t, BUSY, SeqCst, SeqCst).is_err() {
                continue;
            }
            // A request that began holding on it just before sees the tag
            // change after its hold and looks again (`take`).
            let free = s.held_cost.load(SeqCst) == 0 && s.held_tokens.load(SeqCst) == 0;
            let old = s.team.load(SeqCst);
            if free && (old == bucket || self.enter_team(bucket)) {
                if old != bucket {
                    self.team_slots[old as usize].fetch_sub(1, SeqCst);
                }
                self.fill(s, run, parent, bucket, now_ms);
                return Ok(at);
            }
            s.tag.store(t, SeqCst);
        }
        Err(Refusal::Full)
    }

    /// Counts a new slot against its team's share; false past it.
    fn enter_team(&self, bucket: u32) -> bool {
        let share = (self.capacity / 4) as u32;
        self.team_slots[bucket as usize].fetch_update(SeqCst, SeqCst, |n| (n < share).then_some(n + 1)).is_ok()
    }

    /// Writes a claimed slot's figures for a new run, then its tag.
    fn fill(&self, s: &Slot, run: Link, parent: Option<Link>, bucket: u32, now_ms: u64) {
        let (tag, shared) = (run.tag, run.shared);
        let parent_shared = parent.map_or(0, |p| p.shared);
        let parent = parent.map_or(0, |p| p.tag);
        s.shared.store(shared);
        s.parent_shared.store(parent_shared);
        s.remote_cost.store(0, SeqCst);
        s.remote_tokens.store(0, SeqCst);
        s.remote_requests.store(0, SeqCst);
        s.remote_started_ms.store(0, SeqCst);
        s.parent.store(parent, SeqCst);
        s.team.store(bucket, SeqCst);
        s.started_ms.store(now_ms, SeqCst);
        s.last_ms.store(now_ms, SeqCst);
        s.cost.store(0, SeqCst);
        s.tokens.store(0, SeqCst);
        s.requests.store(0, SeqCst);
        s.tag.store(tag, SeqCst);
    }

    /// Takes one request and `estimate` from every run of `chain`, or none:
    /// `Ok(false)` when a slot changed hands meanwhile (look again).
    fn take(&self, chain: &Chain, limits: RunLimits, estimate: Estimate, now_ms: u64) -> Result<bool, Refusal> {
        for (level, &(i, tag)) in chain.iter().enumerate() {
            let s = &self.slots()[i];
            let taken = take_one(s, limits, estimate, now_ms).map_err(|(limit, cap, used, estimate)| Refusal::Limit {
                level,
                limit,
                cap,
                used,
                estimate,
                via_named_parent: false,
            });
            if taken.is_ok() && s.tag.load(SeqCst) == tag {
                s.last_ms.store(now_ms, SeqCst);
                continue;
            }
            if taken.is_ok() {
                give_back(s, estimate);
            }
            for &(j, _) in chain.slots[..level].iter() {
                give_back(&self.slots()[j], estimate);
            }
            return taken.map(|()| false);
        }
        Ok(true)
    }

    /// A run's figures (the tests read them): spent, counted and held, and
    /// its age.
    #[cfg(test)]
    pub fn usage(&self, team: &str, run: &str, now_ms: u64) -> Option<RunUse> {
        let at = self.find(self.link(team, run).tag)?;
        Some(used(&self.slots()[at], now_ms))
    }

    /// Runs with a request within [`IDLE_MS`], and refusals by limit since
    /// start (cost, tokens, requests, wall time, a full table): for the
    /// metrics. A scan of the table, made at a scrape.
    pub fn counts(&self, now_ms: u64) -> (u64, [u64; 5]) {
        let slots = self.slots.get().map_or(&[][..], |s| &s[..]);
        let active = slots
            .iter()
            .filter(|s| {
                let t = s.tag.load(SeqCst);
                t != 0 && t != BUSY && now_ms.saturating_sub(s.last_ms.load(SeqCst)) < IDLE_MS
            })
            .count() as u64;
        (active, std::array::from_fn(|i| self.refused[i].load(SeqCst)))
    }

    /// The node's figures of every run shared with the cluster, for the
    /// cluster thread's push (a scan of the table, every interval, off the
    /// workers).
    pub fn shared_runs(&self) -> Vec<SharedRun> {
        let Some(slots) = self.slots.get() else { return Vec::new() };
        let mut out = Vec::new();
        for (at, s) in slots.iter().enumerate() {
            // A slot being claimed, or looked at by a reclaim that may
            // give it back, is waited for (a few stores): a run missing
            // from one scan would be taken for gone.
            let t = self.settled_tag(at);
            if t == 0 {
                continue;
            }
            let id = s.shared();
            if id == 0 {
                continue;
            }
            let run = SharedRun {
                at,
                tag: t,
                id,
                cost: s.cost.load(SeqCst),
                tokens: s.tokens.load(SeqCst),
                requests: s.requests.load(SeqCst),
                started_ms: s.started_ms.load(SeqCst),
                last_ms: s.last_ms.load(SeqCst),
                parent: {
                    // Pushed only when it is the parent's name whole.
                    let p = s.parent_shared.load();
                    if p != 0 && self.shared_link(p).tag == s.parent.load(SeqCst) {
                        p
                    } else {
                        0
                    }
                },
            };
            // A slot that changed hands while it was read is left for the
            // next scan.
            if self.settled_tag(at) == t && s.shared() == id {
                out.push(run);
            }
        }
        out
    }

    /// Sets the other nodes' figures of run `id` in slot `at`, unless the
    /// slot has gone to another run meanwhile.
    pub fn set_remote(&self, at: usize, tag: u64, id: u128, remote: Remote) {
        let Some(s) = self.slots.get().and_then(|s| s.get(at)) else { return };
        if self.settled_tag(at) != tag || s.shared() != id {
            return;
        }
        // Another node saw a request name this run's parent: the chain
        // here reaches it too; undone if the slot went to another run
        // between the check and the stores (its parent is its own).
        if remote.parent != 0 && remote.parent != id {
            let p = self.shared_link(remote.parent);
            if self.set_parent(s, p) && (s.tag.load(SeqCst) != tag || s.shared() != id) {
                let _ = s.parent.compare_exchange(p.tag, 0, SeqCst, SeqCst);
                s.parent_shared.release(p.shared);
            }
        }
        s.remote_cost.store(remote.cost, SeqCst);
        s.remote_tokens.store(remote.tokens, SeqCst);
        s.remote_requests.store(remote.requests, SeqCst);
        s.remote_started_ms.store(remote.started_ms, SeqCst);
        // Claimed by a new run between the check and the stores: its
        // figures are its own from nought (the next exchange reads them).
        if s.tag.load(SeqCst) != tag || s.shared() != id {
            for f in [&s.remote_cost, &s.remote_tokens, &s.remote_requests, &s.remote_started_ms] {
                f.store(0, SeqCst);
            }
        }
    }
}

/// A hash as a tag: never 0 (an empty slot) or [`BUSY`].
fn untagged(h: u64) -> u64 {
    match h {
        0 => 1,
        BUSY => BUSY - 1,
        t => t,
    }
}

/// A run's figures, what its requests in flight hold and the other nodes'
/// figures included.
fn used(s: &Slot, now_ms: u64) -> RunUse {
    RunUse {
        cost: s.cost.load(SeqCst).saturating_add(s.held_cost.load(SeqCst)).saturating_add(s.remote_cost.load(SeqCst)),
        tokens: s
            .tokens
            .load(SeqCst)
            .saturating_add(s.held_tokens.load(SeqCst))
            .saturating_add(s.remote_tokens.load(SeqCst)),
        requests: s.requests.load(SeqCst).saturating_add(s.remote_requests.load(SeqCst)),
        age_ms: now_ms.saturating_sub(s.started_ms()),
    }
}

/// One run's part of an admission: the wall time, one more request, and
/// the estimate held, each within its limit. Nothing is left taken on
/// refusal.
fn take_one(s: &Slot, limits: RunLimits, e: Estimate, now_ms: u64) -> Result<(), (RunLimit, u64, RunUse, u64)> {
    let refuse = |limit, cap, estimate| (limit, cap, used(s, now_ms), estimate);
    if let Some(wall) = limits.wall_ms {
        if now_ms.saturating_sub(s.started_ms()) > wall {
            return Err(refuse(RunLimit::WallTime, wall, 0));
        }
    }
    // The other nodes' admissions count against the cap; this node's own
    // are counted atomically, so its cores never pass it together.
    let cap = limits.requests.unwrap_or(u64::MAX);
    let others = s.remote_requests.load(SeqCst);
    if s.requests.fetch_update(SeqCst, SeqCst, |n| (n.saturating_add(others) < cap).then_some(n + 1)).is_err() {
        return Err(refuse(RunLimit::Requests, cap, 0));
    }
    // Held first, checked after: two requests at once may both be refused
    // where one would have fitted, never both admitted past the limit.
    let held = s.held_cost.fetch_add(e.cost, SeqCst).saturating_add(e.cost);
    if let Some(cap) = limits.cost {
        if s.cost.load(SeqCst).saturating_add(s.remote_cost.load(SeqCst)).saturating_add(held) > cap {
            lower(&s.held_cost, e.cost);
            lower(&s.requests, 1);
            return Err(refuse(RunLimit::Cost, cap, e.cost));
        }
    }
    let held = s.held_tokens.fetch_add(e.tokens, SeqCst).saturating_add(e.tokens);
    if let Some(cap) = limits.tokens {
        if s.tokens.load(SeqCst).saturating_add(s.remote_tokens.load(SeqCst)).saturating_add(held) > cap {
            lower(&s.held_tokens, e.tokens);
            lower(&s.held_cost, e.cost);
            lower(&s.requests, 1);
            return Err(refuse(RunLimit::Tokens, cap, e.tokens));
        }
    }
    Ok(())
}

/// Undoes [`take_one`].
fn give_back(s: &Slot, e: Estimate) {
    lower(&s.held_tokens, e.tokens);
    lower(&s.held_cost, e.cost);
    lower(&s.requests, 1);
}

/// Takes `n` from a counter, never below 0. A slot given to another run
/// meanwhile (idle an hour, nothing held: `reclaim`) starts its requests
/// at 0, and a request of the old run that gave its count back wrapped
/// the new run's to 2^64 - 1: refused under any cap from then on, and,
/// pushed to the cluster, a count Redis refuses, after the batch's spend
/// had gone in, so that every retry added it again (found by a review).
fn lower(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(SeqCst, SeqCst, |v| Some(v.saturating_sub(n)));
}

/// `n` counters at 0, allocated zeroed (256 KiB for the buckets, which
/// the allocator may clear rather than map fresh).
fn zeroed_counters(n: usize) -> Box<[AtomicU32]> {
    // `AtomicU32`'s alignment is its size, which `u32`'s need not be: the
    // box is freed with the layout it was allocated with only where both
    // agree, as they do on every target this builds for.
    const _: () = assert!(
        std::mem::size_of::<AtomicU32>() == std::mem::size_of::<u32>()
            && std::mem::align_of::<AtomicU32>() == std::mem::align_of::<u32>()
    );
    let zeros = vec![0u32; n].into_boxed_slice();
    // SAFETY: same size and alignment (above); all zero bytes are a valid
    // `AtomicU32`; the box is given up here and its length kept by the
    // slice pointer's cast.
    unsafe { Box::from_raw(Box::into_raw(zeros) as *mut [AtomicU32]) }
}

/// The run a request names, and its parent, as the client wrote them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunIds {
    pub id: Box<str>,
    pub parent: Option<Box<str>>,
}

/// The request's `x-tollgate-run` and `x-tollgate-parent-run`: `None`
/// without the first; an error names what is wrong with either (a parent
/// without a run, an id with other characters, a header given twice).
pub fn run_ids(head: &tollgate_protocol::http1::RequestHead) -> Result<Option<Box<RunIds>>, &'static str> {
    let (mut id, mut parent) = (None, None);
    for (name, value) in head.headers() {
        let (slot, which) = if name.eq_ignore_ascii_case(b"x-tollgate-run") {
            (&mut id, "x-tollgate-run")
        } else if name.eq_ignore_ascii_case(b"x-tollgate-parent-run") {
            (&mut parent, "x-tollgate-parent-run")
        } else {
            continue;
        };
        if slot.is_some() {
            return Err(if which == "x-tollgate-run" {
                "x-tollgate-run is given twice; send one run id per request"
            } else {
                "x-tollgate-parent-run is given twice; send one parent run id per request"
            });
        }
        let v = value.trim_ascii();
        if !tollgate_policy::run::valid_run_id(v) {
            return Err(if which == "x-tollgate-run" {
                "x-tollgate-run must be 1 to 128 letters, digits or -_.:/@ (a UUID, a session id)"
            } else {
                "x-tollgate-parent-run must be 1 to 128 letters, digits or -_.:/@ (a UUID, a session id)"
            });
        }
        // Checked as ASCII just above.
        *slot = Some(Box::<str>::from(std::str::from_utf8(v).unwrap_or_default()));
    }
    match (id, parent) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err("x-tollgate-parent-run needs x-tollgate-run: name the sub-run too"),
        (Some(id), parent) => Ok(Some(Box::new(RunIds { id, parent }))),
    }
}

/// A request's run and the runs above it: (slot, tag), the request's own
/// first.
#[derive(Clone, Copy, Debug, Default)]
struct Chain {
    slots: [(usize, u64); DEPTH_MAX],
    len: usize,
}

impl Chain {
    fn iter(&self) -> impl Iterator<Item = &(usize, u64)> {
        self.slots[..self.len].iter()
    }
}

/// What a request of a run holds while it runs: its estimate, against its
/// run and the runs above it.
pub struct RunHold {
    runs: Arc<Runs>,
    chain: Chain,
    estimate: Estimate,
}

impl RunHold {
    /// Whether a run it holds against has under a tenth of its cost or
    /// token limit left, this request's estimate held: the request then
    /// goes with its output reserve as its limit (`forward::output_cap`),
    /// as one near a budget's end does. Without it, a request that named
    /// no `max_tokens` at a run's $0.95 of $1 was held at its estimate and
    /// billed a reasoning model's whole answer (found by a review).
    ///
    /// `own`: this request's estimate to judge by, in place of the one it
    /// holds (the prompt's bound, its bytes as tokens, where that fitted:
    /// judged by it, a long prompt read as near a limit with a fifth of it
    /// left; found by a review).
    pub fn near_end(&self, limits: RunLimits, own: Option<Estimate>) -> bool {
        let own = own.unwrap_or(self.estimate);
        let near = |cap: Option<u64>, used: u64| cap.is_some_and(|c| c.saturating_sub(used).saturating_mul(10) < c);
        self.chain.iter().any(|&(i, _)| {
            // Spent, held (this request's `own` in place of what it holds)
            // and the other nodes'.
            let u = used(&self.runs.slots()[i], 0);
            let cost = u.cost.saturating_sub(self.estimate.cost).saturating_add(own.cost);
            let tokens = u.tokens.saturating_sub(self.estimate.tokens).saturating_add(own.tokens);
            near(limits.cost, cost) || near(limits.tokens, tokens)
        })
    }

    /// Counts what the request used, before the hold releases its
    /// estimate, so that the run's figures never dip between the two.
    pub fn charge(&self, tokens: u64, cost: u64, now_ms: u64) {
        for &(i, _) in self.chain.iter() {
            let s = &self.runs.slots()[i];
            s.cost.fetch_add(cost, SeqCst);
            s.tokens.fetch_add(tokens, SeqCst);
            s.last_ms.store(now_ms, SeqCst);
        }
    }
}

impl Drop for RunHold {
    fn drop(&mut self) {
        for &(i, _) in self.chain.iter() {
            let s = &self.runs.slots()[i];
            lower(&s.held_cost, self.estimate.cost);
            lower(&s.held_tokens, self.estimate.tokens);
        }
    }
}

#[cfg(test)]
mod tests;
