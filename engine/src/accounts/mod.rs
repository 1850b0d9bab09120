//! Per-core accounting: what each team and key has spent and used, as this
//! core must see it to enforce budgets and rate limits, and what requests
//! in flight hold against them.
//!
//! A core's view of an owner is the merger's last figures (every core's
//! hand-offs, and with a cluster tier every node's) plus this core's own
//! counts the merger has not folded in yet: counts since the last hand-off
//! (`unmerged`) and hand-offs the merger has not yet answered for
//! (`in_transit`, dropped once a snapshot says it includes them). A core
//! therefore always sees its own spend, whatever the merger's timing.
//! On top come the estimates of requests in flight: tokens reserved
//! against tokens-per-minute limits ([`Reservation`]) and, under a budget,
//! estimated cost held as spend ([`SpendHold`]); both are released
//! when the request's guard drops, however it ends.
//!
//! Everything here is one core's: `Cell`s and `RefCell`s, no lock, no
//! atomic. Other threads reach it only through the worker, which hands
//! counts to the merger ([`Accounts::hand_off`]) and installs the
//! snapshots it sends back ([`Accounts::install`]).

mod owner;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

// Keyed by owner indices (the gateway's own): Fx hashing, not SipHash.
use rustc_hash::FxHashMap as HashMap;
use std::rc::Rc;
use std::sync::{mpsc, Arc};

use tollgate_policy::budget::Spend;
use tollgate_policy::{Config, VirtualKey};

pub use owner::{MinuteUse, Owner, OwnerName, Released, SpendSnapshot};

/// Spend and minute use counted on this core, by owner index.
#[derive(Default)]
struct Counted {
    spend: HashMap<Owner, u64>,
    minute: HashMap<Owner, MinuteUse>,
}

impl Counted {
    /// Adds `other`'s counts to these.
    fn absorb(&mut self, other: Counted) {
        for (o, v) in other.spend {
            let s = self.spend.entry(o).or_default();
            *s = s.saturating_add(v);
        }
        for (o, u) in other.minute {
            self.minute.entry(o).or_default().add(u);
        }
    }

    /// The same counts with owners renamed from `old`'s indexes to `new`'s
    /// (owners `new` no longer has are dropped: nothing enforces them).
    fn reindexed(self, old: &Config, new: &Config) -> Counted {
        let map = |o: Owner| renamed(o, old, new);
        let mut out = Counted::default();
        for (o, v) in self.spend {
            if let Some(o) = map(o) {
                *out.spend.entry(o).or_default() += v;
            }
        }
        for (o, u) in self.minute {
            if let Some(o) = map(o) {
                out.minute.entry(o).or_default().add(u);
            }
        }
        out
    }

    fn spend(&self, owner: Owner) -> u64 {
        self.spend.get(&owner).copied().unwrap_or(0)
    }

    fn minute(&self, owner: Owner, minute: u64) -> MinuteUse {
        self.minute.get(&owner).copied().unwrap_or_default().at(minute)
    }
}

/// `owner`'s name in `config`.
fn owner_name(owner: Owner, config: &Config) -> Option<OwnerName> {
    match owner {
        Owner::Team(i) => Some(OwnerName::Team(config.teams.get(i)?.name.clone())),
        Owner::Key(i) => Some(OwnerName::Key(config.keys.all().get(i)?.name.clone())),
    }
}

/// `owner`, an index into `old`, as the same team or key (by name) in
/// `new`; `None` when `new` no longer has it.
fn renamed(owner: Owner, old: &Config, new: &Config) -> Option<Owner> {
    match owner {
        Owner::Team(i) => {
            let name = &old.teams.get(i)?.name;
            new.teams.iter().position(|t| &t.name == name).map(Owner::Team)
        }
        Owner::Key(i) => {
            let name = &old.keys.all().get(i)?.name;
            new.keys.all().iter().position(|k| &k.name == name).map(Owner::Key)
        }
    }
}

/// What one hand-off carries to the merger, with owners by name.
#[derive(Default)]
pub struct HandOff {
    /// Numbers this core's hand-offs, 1 up; the merger's snapshots say the
    /// last one they include.
    pub seq: u64,
    pub spend: Vec<(OwnerName, u64)>,
    pub minute: Vec<(OwnerName, MinuteUse)>,
    pub released: Vec<Released>,
}

/// The merger's spend figures by index into one configuration.
#[derive(Default)]
struct SpendView {
    day: u64,
    month: (i64, u32),
    teams: Vec<Spend>,
    keys: Vec<Spend>,
    teams_minute: Vec<MinuteUse>,
    keys_minute: Vec<MinuteUse>,
    cluster_refusing: bool,
    cluster_degraded: bool,
    last: Option<Arc<SpendSnapshot>>,
}

impl SpendView {
    fn rebuild(&mut self, s: Arc<SpendSnapshot>, config: &Config) {
        let get =
            |name: OwnerName| s.by_owner.get(&name).map_or_else(Spend::default, |&(day, month)| Spend { day, month });
        self.teams = config.teams.iter().map(|t| get(OwnerName::Team(t.name.clone()))).collect();
        self.keys = config.keys.all().iter().map(|k| get(OwnerName::Key(k.name.clone()))).collect();
        let minute = |name: OwnerName| s.minute.get(&name).copied().unwrap_or_default();
        self.teams_minute = config.teams.iter().map(|t| minute(OwnerName::Team(t.name.clone()))).collect();
        self.keys_minute = config.keys.all().iter().map(|k| minute(OwnerName::Key(k.name.clone()))).collect();
        self.day = s.day;
        self.month = s.month;
        self.cluster_refusing = s.cluster_refusing;
        self.cluster_degraded = s.cluster_degraded;
        self.last = Some(s);
    }
}

/// One core's accounts. Shared by `Rc` with the guards requests hold.
pub struct Accounts {
    /// The worker whose hand-offs these are (its index in snapshots).
    worker: usize,
    /// Counted since the last hand-off.
    unmerged: RefCell<Counted>,
    /// Handed off, not yet in a snapshot: (hand-off number, counts).
    in_transit: RefCell<VecDeque<(u64, Counted)>>,
    /// `in_transit` summed.
    transit_sum: RefCell<TransitSum>,
    seq: Cell<u64>,
    /// Strict reservations ended, released in the next hand-off.
    released: RefCell<Vec<Released>>,
    /// Spend of requests that finished after a reload removed or renamed
    /// their team or key, by the name they ran under: handed off as it is
    /// (the ledger and the merger's totals keep it under that name), not
    /// dropped with the owner's index (found by a review: a stream of a
    /// team renamed while it ran was recorded with its cost and never
    /// counted in spend).
    gone_spend: RefCell<Vec<(OwnerName, u64)>>,
    /// Spend across all cores, from the merger, by index into this core's
    /// configuration.
    view: RefCell<SpendView>,
    /// Owners warned about a soft budget threshold, and on which day.
    soft_warned: RefCell<HashMap<Owner, u64>>,
    /// Tokens reserved by this core's requests in flight, by owner: counted
    /// against tokens-per-minute limits until the request ends and its
    /// real use is counted instead.
    reserved: Holds,
    /// Estimated cost of this core's requests in flight under a budget, by
    /// owner: counted as spend until the request ends and its real cost is
    /// counted instead.
    held_spend: Holds,
    /// Budget alerts for the webhook thread, when one is configured.
    alerts: Option<mpsc::Sender<String>>,
    /// The configuration this core's indexes are for (the current one);
    /// a request that started under an earlier one is settled by name.
    config: RefCell<Option<Arc<Config>>>,
}

/// Hand-offs kept in transit at most: past it the oldest two are folded
/// into one (counted a little longer than needed, never less), so a merger
/// that stops answering cannot grow the list or the cost of reading it.
const IN_TRANSIT_MAX: usize = 64;

impl Accounts {
    pub fn new(worker: usize, alerts: Option<mpsc::Sender<String>>) -> Accounts {
        Accounts {
            worker,
            unmerged: RefCell::default(),
            in_transit: RefCell::default(),
            transit_sum: RefCell::default(),
            seq: Cell::new(0),
            released: RefCell::default(),
            gone_spend: RefCell::default(),
            view: RefCell::default(),
            soft_warned: RefCell::default(),
            reserved: Holds::default(),
            held_spend: Holds::default(),
            alerts,
            config: RefCell::new(None),
        }
    }

    /// Sets the configuration this core's indexes are for.
    pub fn use_config(&self, config: Arc<Config>) {
        *self.config.borrow_mut() = Some(config);
    }

    /// What `owner` has spent in the current day and month across all
    /// cores: the merger's last figures, plus this core's spend they do
    /// not include yet, plus the estimates held by requests in flight.
    /// An owner a reload removed ([`Accounts::owners_now`]) has spent
    /// nothing: what its holds still count is theirs to release, not a
    /// figure to judge a request by.
    pub fn spend(&self, owner: Owner, now: u64) -> Spend {
        if owner == GONE {
            return Spend::default();
        }
        let view = self.view.borrow();
        let merged = match owner {
            Owner::Team(i) => view.teams.get(i),
            Owner::Key(i) => view.keys.get(i),
        }
        .copied()
        .unwrap_or_default();
        let day = tollgate_policy::budget::day_number(now);
        let in_transit = self.transit_sum.borrow().spend.get(&owner).copied().unwrap_or(0);
        let mine =
            self.unmerged.borrow().spend(owner).saturating_add(in_transit).saturating_add(self.held_spend.get(owner));
        Spend {
            day: (if view.day == day { merged.day } else { 0 }).saturating_add(mine),
            month: (if view.month == tollgate_policy::budget::year_month(day) { merged.month } else { 0 })
                .saturating_add(mine),
        }
    }

    /// What this core's requests in flight hold of `owner`'s
    /// [`Accounts::spend`]: less it, the spend is what is billed (soft
    /// thresholds are judged by it), and a refusal says how much is held.
    pub fn held(&self, owner: Owner) -> u64 {
        if owner == GONE {
            0
        } else {
            self.held_spend.get(owner)
        }
    }

    /// What `owner` has used of UTC `minute` across all cores: the merger's
    /// last figures plus this core's counts they do not include yet.
    pub fn minute_use(&self, owner: Owner, minute: u64) -> MinuteUse {
        if owner == GONE {
            return MinuteUse { minute, requests: 0, tokens: 0 };
        }
        let view = self.view.borrow();
        let merged = match owner {
            Owner::Team(i) => view.teams_minute.get(i),
            Owner::Key(i) => view.keys_minute.get(i),
        }
        .copied()
        .unwrap_or_default()
        .at(minute);
        let mut mine = self.unmerged.borrow().minute(owner, minute);
        if let Some(&(requests, tokens)) = self.transit_sum.borrow().minute.get(&(owner, minute)) {
            mine.requests = mine.requests.saturating_add(requests);
            mine.tokens = mine.tokens.saturating_add(tokens);
        }
        MinuteUse {
            minute,
            requests: merged.requests.saturating_add(mine.requests),
            tokens: merged.tokens.saturating_add(mine.tokens),
        }
    }

    /// Tokens this core's requests in flight have reserved for `owner`.
    pub fn reserved(&self, owner: Owner) -> u64 {
        if owner == GONE {
            return 0;
        }
        self.reserved.get(owner)
    }

    /// Counts an admitted request against its team's and key's minute
    /// (`owners` as [`Accounts::owners_now`] gives them: one a reload
    /// removed is counted nowhere).
    pub fn admit(&self, owners: [Owner; 2], minute: u64) {
        let mut u = self.unmerged.borrow_mut();
        for owner in owners.into_iter().filter(|&o| o != GONE) {
            u.minute.entry(owner).or_default().add(MinuteUse { minute, requests: 1, tokens: 0 });
        }
    }

    /// Counts a finished request's tokens (against `minute`, the one it
    /// ended in: `crate::pipeline::settle`) and its cost, for its team and key. `config` is the one the
    /// request ran under: when a reload has replaced it since, the owners
    /// are found by name in the current one.
    pub fn settle(&self, key: &VirtualKey, config: &Arc<Config>, minute: u64, tokens: u64, cost: u64) {
        let mut owners = [Some(Owner::Team(key.team)), Some(Owner::Key(key.index))];
        if let Some(current) = self.config.borrow().as_ref().filter(|c| !Arc::ptr_eq(c, config)) {
            owners = owners.map(|o| {
                let now = o.and_then(|o| renamed(o, config, current));
                if let (None, Some(o)) = (now, o.filter(|_| cost > 0)) {
                    if let Some(name) = owner_name(o, config) {
                        self.gone_spend.borrow_mut().push((name, cost));
                    }
                }
                now
            });
        }
        let mut u = self.unmerged.borrow_mut();
        for owner in owners.into_iter().flatten() {
            if tokens > 0 {
                u.minute.entry(owner).or_default().add(MinuteUse { minute, requests: 0, tokens });
            }
            if cost > 0 {
                let s = u.spend.entry(owner).or_default();
                *s = s.saturating_add(cost);
            }
        }
    }

    /// A strict reservation ended: it is released in the same hand-off as
    /// the request's spend (counted just before).
    pub fn release(&self, r: Released) {
        self.released.borrow_mut().push(r);
    }

    /// `owners`, indexes into `config` (the configuration a request runs
    /// under), as the current configuration indexes them: a request that
    /// started before a reload takes its holds after awaits (its body, its
    /// classifiers), and its old indexes name other teams now (found by a
    /// review). An owner the reload removed holds nothing.
    pub fn owners_now(&self, config: &Arc<Config>, owners: [Owner; 2]) -> [Owner; 2] {
        match self.config.borrow().as_ref().filter(|c| !Arc::ptr_eq(c, config)) {
            Some(current) => owners.map(|o| renamed(o, config, current).unwrap_or(GONE)),
            None => owners,
        }
    }

    /// `f` given the configuration the core runs under now, when a reload
    /// has replaced `config` (the one a request runs under) since; `None`
    /// when `config` is still current. Borrowed, not cloned: the `Arc` is
    /// shared by every core, and a count per request on it would be a write
    /// to one cache line from all of them.
    pub fn reloaded_since<R>(&self, config: &Arc<Config>, f: impl FnOnce(Option<&Config>) -> R) -> R {
        let current = self.config.borrow();
        f(current.as_deref().filter(|c| !std::ptr::eq(*c, Arc::as_ptr(config))))
    }

    /// Holds a request's estimated cost as spend of its team and key until
    /// the returned guard drops (the request has ended and its cost is
    /// counted).
    pub fn hold_spend(self: &Rc<Self>, owners: [Owner; 2], amount: u64) -> SpendHold {
        let slot = self.held_spend.add(owners, amount);
        SpendHold { accounts: self.clone(), slot }
    }

    /// Reserves a request's tokens (`prompt` counted, `output` the most it
    /// may generate) for its team and key until the returned guard drops.
    /// `limits` are their tokens-per-minute limits, checked as a stream
    /// outgrows the reservation.
    pub fn reserve(
        self: &Rc<Self>,
        owners: [Owner; 2],
        limits: [Option<u64>; 2],
        minute: u64,
        prompt: u64,
        output: u64,
    ) -> Reservation {
        let tokens = prompt.saturating_add(output);
        let slot = self.reserved.add(owners, tokens);
        Reservation { accounts: self.clone(), slot, limits, minute, prompt, tokens: Cell::new(tokens) }
    }

    /// Whether `owner`'s soft-threshold warning is due (once per UTC day).
    pub fn soft_warning_due(&self, owner: Owner, now: u64) -> bool {
        let day = tollgate_policy::budget::day_number(now);
        self.soft_warned.borrow_mut().insert(owner, day) != Some(day)
    }

    /// Hands an alert (a JSON body) to the webhook thread, if any.
    pub fn alert(&self, body: String) {
        if let Some(tx) = &self.alerts {
            let _ = tx.send(body);
        }
    }

    /// The cluster tier is degraded and fails closed: budgets and rate
    /// limits cannot be enforced, so the requests under them are refused.
    pub fn cluster_refusing(&self) -> bool {
        self.view.borrow().cluster_refusing
    }

    /// The cluster tier is degraded (enforcing with old totals, or refusing).
    pub fn cluster_degraded(&self) -> bool {
        self.view.borrow().cluster_degraded
    }

    /// Takes what was counted since the last hand-off, by name from
    /// `config`, keeping it in transit until a snapshot includes it.
    pub fn hand_off(&self, config: &Config) -> HandOff {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        let counted = std::mem::take(&mut *self.unmerged.borrow_mut());
        let name = |owner: Owner| owner_name(owner, config);
        let mut spend: Vec<_> = counted.spend.iter().filter_map(|(&o, &v)| Some((name(o)?, v))).collect();
        spend.append(&mut self.gone_spend.borrow_mut());
        let minute = counted.minute.iter().filter_map(|(&o, &u)| Some((name(o)?, u))).collect();
        if !counted.spend.is_empty() || !counted.minute.is_empty() {
            let mut in_transit = self.in_transit.borrow_mut();
            if in_transit.len() >= IN_TRANSIT_MAX {
                if let (Some((_, oldest)), Some((_, next))) = (in_transit.pop_front(), in_transit.front_mut()) {
                    next.absorb(oldest);
                }
            }
            in_transit.push_back((seq, counted));
            drop(in_transit);
            self.sum_transit();
        }
        let released = std::mem::take(&mut *self.released.borrow_mut());
        HandOff { seq, spend, minute, released }
    }

    /// Installs the merger's newest snapshot: hand-offs it includes leave
    /// the in-transit counts.
    pub fn install(&self, s: Arc<SpendSnapshot>, config: &Config) {
        let merged = s.merged.get(self.worker).copied().unwrap_or(0);
        self.in_transit.borrow_mut().retain(|(seq, _)| *seq > merged);
        self.sum_transit();
        self.view.borrow_mut().rebuild(s, config);
    }

    /// The merger could not take a hand-off (it has stopped): what was in
    /// transit goes back to the counts not handed off, so that nothing
    /// waits for a snapshot that will not come.
    pub fn hand_off_failed(&self) {
        let mut unmerged = self.unmerged.borrow_mut();
        for (_, c) in self.in_transit.borrow_mut().drain(..) {
            unmerged.absorb(c);
        }
        self.sum_transit();
    }

    /// Re-indexes for a new configuration (after a reload): the view, and
    /// the counts in transit and the holds of requests in flight (by name,
    /// from `old`'s indexes to `new`'s), so the core still sees its own
    /// spend, and no team another's.
    pub fn reindex(&self, old: &Config, new: Arc<Config>) {
        let moved: VecDeque<(u64, Counted)> =
            self.in_transit.borrow_mut().drain(..).map(|(seq, c)| (seq, c.reindexed(old, &new))).collect();
        *self.in_transit.borrow_mut() = moved;
        self.sum_transit();
        let unmerged = std::mem::take(&mut *self.unmerged.borrow_mut()).reindexed(old, &new);
        *self.unmerged.borrow_mut() = unmerged;
        self.reserved.reindex(old, &new);
        self.held_spend.reindex(old, &new);
        // Who was warned today goes with its name: left by index, a team a
        // reload moved into a warned one's place was never warned that day
        // (its log line, counter and webhook), and the warned one again.
        let warned = std::mem::take(&mut *self.soft_warned.borrow_mut());
        *self.soft_warned.borrow_mut() =
            warned.into_iter().filter_map(|(o, day)| Some((renamed(o, old, &new)?, day))).collect();
        let last = self.view.borrow().last.clone();
        if let Some(s) = last {
            self.view.borrow_mut().rebuild(s, &new);
        }
        *self.config.borrow_mut() = Some(new);
    }
}

/// The counts in transit summed: spend by owner, and use by owner and the
/// minute each hand-off counted it in (a hand-off's use is of one minute
/// per owner, its latest). With them `spend` and `minute_use` add what is
/// in transit with one lookup, not a walk of every hand-off: a request
/// asks six times of each, over a list that holds six or so hand-offs
/// under load (4,800 instructions a request, 8% of a 100-byte request's
/// work). Summed anew whenever the list changes, once a merge (every 100
/// ms), never per request.
#[derive(Default)]
struct TransitSum {
    spend: HashMap<Owner, u64>,
    /// (requests, tokens) by (owner, UTC minute).
    minute: HashMap<(Owner, u64), (u64, u64)>,
}

impl Accounts {
    /// Sums `in_transit` into `transit_sum` again.
    fn sum_transit(&self) {
        let mut sum = self.transit_sum.borrow_mut();
        sum.spend.clear();
        sum.minute.clear();
        for (_, c) in self.in_transit.borrow().iter() {
            for (&o, &v) in &c.spend {
                let s = sum.spend.entry(o).or_default();
                *s = s.saturating_add(v);
            }
            for (&o, u) in &c.minute {
                let (requests, tokens) = sum.minute.entry((o, u.minute)).or_default();
                *requests = requests.saturating_add(u.requests);
                *tokens = tokens.saturating_add(u.tokens);
            }
        }
    }
}

/// Amounts this core's requests in flight hold (tokens reserved, or
/// estimated spend): each hold with its owners, added as a request starts
/// or grows and taken away when it ends, and summed by owner for the
/// checks. A reload moves every live hold's owners by name
/// ([`Holds::reindex`]): indexes into the old configuration named other
/// teams in the new one, whose checks then counted this one's holds, and a
/// hold taken before released against whatever its old index named
/// (found by a review).
#[derive(Default)]
struct Holds {
    /// Each live hold's owners and amount; `None` where one ended (its
    /// slot then in `free`).
    slots: RefCell<Vec<Option<Held>>>,
    free: RefCell<Vec<usize>>,
    by_owner: RefCell<HashMap<Owner, u64>>,
}

impl Holds {
    fn get(&self, owner: Owner) -> u64 {
        self.by_owner.borrow().get(&owner).copied().unwrap_or(0)
    }

    /// A new hold; its slot.
    fn add(&self, owners: [Owner; 2], amount: u64) -> usize {
        self.count(owners, amount, true);
        let mut slots = self.slots.borrow_mut();
        match self.free.borrow_mut().pop() {
            Some(i) => {
                slots[i] = Some((owners, amount));
                i
            }
            None => {
                slots.push(Some((owners, amount)));
                slots.len() - 1
            }
        }
    }

    /// `more` added to the hold in `slot`.
    fn grow(&self, slot: usize, more: u64) {
        let owners = {
            let mut slots = self.slots.borrow_mut();
            let Some(Some((owners, amount))) = slots.get_mut(slot) else { return };
            *amount = amount.saturating_add(more);
            *owners
        };
        self.count(owners, more, true);
    }

    /// The hold in `slot` ends.
    fn release(&self, slot: usize) {
        let Some((owners, amount)) = self.slots.borrow_mut().get_mut(slot).and_then(Option::take) else { return };
        self.count(owners, amount, false);
        self.free.borrow_mut().push(slot);
    }

    /// The owners of the hold in `slot`, as the current configuration
    /// indexes them.
    fn owners(&self, slot: usize) -> Option<[Owner; 2]> {
        self.slots.borrow().get(slot).copied().flatten().map(|(o, _)| o)
    }

    fn count(&self, owners: [Owner; 2], amount: u64, add: bool) {
        let mut m = self.by_owner.borrow_mut();
        for o in owners {
            let v = m.entry(o).or_default();
            *v = if add { v.saturating_add(amount) } else { v.saturating_sub(amount) };
        }
    }

    /// Every live hold's owners moved from `old`'s indexes to `new`'s, by
    /// name (an owner `new` no longer has holds nothing), and the sums made
    /// again.
    fn reindex(&self, old: &Config, new: &Config) {
        let mut slots = self.slots.borrow_mut();
        let mut m = self.by_owner.borrow_mut();
        m.clear();
        for (owners, amount) in slots.iter_mut().flatten() {
            *owners = owners.map(|o| renamed(o, old, new).unwrap_or(GONE));
            for o in *owners {
                let v = m.entry(o).or_default();
                *v = v.saturating_add(*amount);
            }
        }
    }
}

/// One live hold: its owners, and what it holds.
type Held = ([Owner; 2], u64);

/// The owner of a hold whose team or key a reload removed: no index of
/// any configuration.
const GONE: Owner = Owner::Team(usize::MAX);

/// A request's estimated cost held as spend; released when it ends.
pub struct SpendHold {
    accounts: Rc<Accounts>,
    slot: usize,
}

impl Drop for SpendHold {
    fn drop(&mut self) {
        self.accounts.held_spend.release(self.slot);
    }
}

/// Tokens a request reserved; released when it ends, however it ends.
pub struct Reservation {
    accounts: Rc<Accounts>,
    slot: usize,
    limits: [Option<u64>; 2],
    minute: u64,
    prompt: u64,
    tokens: Cell<u64>,
}

impl Reservation {
    /// A stream has generated `completion` tokens so far: past the
    /// reservation, the reservation grows with it, so that its tokens count
    /// against the limits while it streams. False when that growth crosses
    /// a tokens-per-minute limit: this is the request that stops.
    pub fn stream_used(&self, completion: u64) -> bool {
        self.stream_used_at(completion, crate::unix_now().as_secs() / 60)
    }

    /// [`Reservation::stream_used`] in minute `now`: the tokens it counts
    /// against are the minute's it streams in, as a request's tokens count
    /// in the minute it ends (`pipeline::settle`), not the one it began
    /// in, whose count a stream running past it was checked against
    /// (found by a review).
    fn stream_used_at(&self, completion: u64, now: u64) -> bool {
        let minute = self.minute.max(now);
        let total = self.prompt.saturating_add(completion);
        let cur = self.tokens.get();
        if total <= cur {
            return true;
        }
        let a = &self.accounts;
        a.reserved.grow(self.slot, total - cur);
        self.tokens.set(total);
        let Some(owners) = a.reserved.owners(self.slot) else { return true };
        owners.iter().zip(self.limits).all(|(&owner, limit)| {
            limit.is_none_or(|l| a.minute_use(owner, minute).tokens.saturating_add(a.reserved(owner)) <= l)
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.accounts.reserved.release(self.slot);
    }
}

#[cfg(test)]
mod tests;
