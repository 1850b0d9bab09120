//! A worker: one thread, one core, one monoio runtime, and everything the
//! requests on that core touch.
//!
//! A worker owns its [`CoreState`] (configuration, limits, upstream pools)
//! and its counters. Other threads reach it only through two points that it
//! polls off the request path: the shutdown flag and its reload mailbox.
//! Counters are `Cell`s: one thread, no atomics.
//!
//! Reload builds the new `CoreState` from the old one, in the worker's own
//! thread: upstreams whose address and head are unchanged keep their pools
//! (and warm connections). Requests hold an `Rc` of the state they started
//! with, so they finish under it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use monoio::io::{CancelHandle, Canceller};
use monoio::net::TcpListener;
use tollgate_policy::Config;
use tollgate_protocol::http1::HeadLimits;

use crate::proxy::fallback::Breaker;
use crate::record::Recorder;
use crate::stats::{CoreStats, Delta, MinuteUse, Owner, OwnerName, SpendSnapshot, MERGE_EVERY};
use crate::upstream::{Resolved, Upstream};
use tollgate_policy::budget::Spend;

/// How often a worker looks at the shutdown flag and its reload mailbox.
/// Only the start of a drain or a reload waits on it, never a request.
const POLL: Duration = Duration::from_millis(10);

/// What requests on one core read: a snapshot of the configuration, and
/// the core's own mutable parts that survive reloads (pools, breakers).
pub struct CoreState {
    pub config: Arc<Config>,
    pub limits: HeadLimits,
    /// By provider index.
    pub upstreams: Vec<Rc<Upstream>>,
    /// By route index, then target index.
    pub breakers: Vec<Vec<Rc<Breaker>>>,
    /// Load sharing and back-off jitter.
    pub rng: Cell<u64>,
    /// TLS on the client listener (`[server.tls]`): new connections
    /// handshake with the configuration current when they are accepted.
    pub tls: Option<monoio_rustls::TlsAcceptor>,
}

impl CoreState {
    /// Builds this core's state for `config`, taking over the pools of
    /// `old` for providers that did not change.
    pub fn build(
        config: Arc<Config>,
        resolved: &[Resolved],
        tls: Option<Arc<rustls::ServerConfig>>,
        old: Option<&CoreState>,
    ) -> CoreState {
        let upstreams = config
            .providers
            .iter()
            .zip(resolved)
            .map(|(p, r)| {
                let fresh = Upstream::new(p, r);
                old.and_then(|o| o.upstreams.iter().find(|u| u.same_as(&fresh)).cloned())
                    .unwrap_or_else(|| Rc::new(fresh))
            })
            .collect();
        // A target keeps its breaker across a reload if it still exists
        // (same provider name and upstream model).
        let mut old_breakers = HashMap::new();
        if let Some(o) = old {
            for (route, breakers) in o.config.routes.all().iter().zip(&o.breakers) {
                for (t, b) in route.targets.iter().zip(breakers) {
                    let provider = &o.config.providers[t.provider].name;
                    old_breakers.insert((provider.clone(), t.upstream_model.clone()), b.clone());
                }
            }
        }
        let breakers = config
            .routes
            .all()
            .iter()
            .map(|route| {
                route
                    .targets
                    .iter()
                    .map(|t| {
                        let key = (config.providers[t.provider].name.clone(), t.upstream_model.clone());
                        old_breakers.get(&key).cloned().unwrap_or_default()
                    })
                    .collect()
            })
            .collect();
        let s = &config.server;
        let limits = HeadLimits { head_bytes_max: s.head_bytes_max, uri_bytes_max: s.uri_bytes_max };
        let seed = old.map_or_else(seed, |o| o.rng.get());
        // Each core resumes sessions from its own cache: the default one
        // is a mutex every core's handshakes would share.
        let tls = tls.map(|shared| {
            let mut own = (*shared).clone();
            own.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSIONS_PER_CORE);
            monoio_rustls::TlsAcceptor::from(Arc::new(own))
        });
        CoreState { config, limits, upstreams, breakers, rng: Cell::new(seed), tls }
    }
}

/// Client TLS sessions remembered per core for resumption.
const SESSIONS_PER_CORE: usize = 1024;

/// The merger's spend figures by index into one configuration.
#[derive(Default)]
pub struct SpendView {
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
    fn rebuild(&mut self, s: Arc<SpendSnapshot>, state: &CoreState) {
        let get =
            |name: OwnerName| s.by_owner.get(&name).map_or_else(Spend::default, |&(day, month)| Spend { day, month });
        self.teams = state.config.teams.iter().map(|t| get(OwnerName::Team(t.name.clone()))).collect();
        self.keys = state.config.keys.all().iter().map(|k| get(OwnerName::Key(k.name.clone()))).collect();
        let minute = |name: OwnerName| s.minute.get(&name).copied().unwrap_or_default();
        self.teams_minute = state.config.teams.iter().map(|t| minute(OwnerName::Team(t.name.clone()))).collect();
        self.keys_minute = state.config.keys.all().iter().map(|k| minute(OwnerName::Key(k.name.clone()))).collect();
        self.day = s.day;
        self.month = s.month;
        self.cluster_refusing = s.cluster_refusing;
        self.cluster_degraded = s.cluster_degraded;
        self.last = Some(s);
    }
}

/// A non-zero seed that differs between cores and runs.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let thread = std::thread::current().id();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&thread, &mut h);
    (nanos ^ std::hash::Hasher::finish(&h)) | 1
}

/// A new configuration for every worker; each answers on `done` once it
/// serves new requests under it.
pub struct Reload {
    pub config: Arc<Config>,
    pub resolved: Vec<Resolved>,
    /// The client listener's TLS, its files read by the reloader.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub done: mpsc::Sender<usize>,
}

pub struct Worker {
    pub index: usize,
    pub recorder: Recorder,
    pub stats: CoreStats,
    merger: RefCell<Option<mpsc::Sender<Delta>>>,
    last_merge: Cell<Instant>,
    /// The next hand-off carries the configuration's budget limits (at
    /// start and after each reload).
    limits_due: Cell<bool>,
    /// Spend across all cores, from the merger, by index into this core's
    /// configuration.
    spend_rx: Option<mpsc::Receiver<Arc<SpendSnapshot>>>,
    spend_view: RefCell<SpendView>,
    /// Owners warned about a soft budget threshold, and on which day.
    soft_warned: RefCell<HashMap<Owner, u64>>,
    /// Tokens reserved by this core's requests in flight, by owner: counted
    /// against tokens-per-minute limits until the request ends and its
    /// real use is counted instead.
    reserved: PerOwner,
    /// Estimated cost of this core's requests in flight under a nearly
    /// spent budget, by owner: counted as spend until the request ends and
    /// its real cost is counted instead.
    held_spend: PerOwner,
    /// Budget alerts for the webhook thread, when one is configured.
    alerts: Option<mpsc::Sender<String>>,
    /// Reservations for strict budgets, with a cluster tier.
    strict: Option<crate::cluster::strict::Strict>,
    state: RefCell<Rc<CoreState>>,
    reloads: mpsc::Receiver<Reload>,
    draining: Cell<bool>,
    /// Cancels everything that waits for a *new* request (accept, idle
    /// keep-alive reads) when the drain starts; requests in flight finish.
    idle: RefCell<Canceller>,
    connections: Cell<usize>,
    in_flight: Cell<usize>,
    /// Open connections by client address (kept only with a per-client cap).
    per_client: RefCell<HashMap<std::net::IpAddr, usize>>,
}

impl Worker {
    pub fn new(
        index: usize,
        state: CoreState,
        reloads: mpsc::Receiver<Reload>,
        recorder: Recorder,
        merger: Option<(mpsc::Sender<Delta>, mpsc::Receiver<Arc<SpendSnapshot>>)>,
    ) -> Worker {
        let (merger, spend_rx) = merger.map_or((None, None), |(tx, rx)| (Some(tx), Some(rx)));
        Worker {
            index,
            recorder,
            stats: CoreStats::default(),
            merger: RefCell::new(merger),
            last_merge: Cell::new(Instant::now()),
            limits_due: Cell::new(true),
            spend_rx,
            spend_view: RefCell::new(SpendView::default()),
            soft_warned: RefCell::new(HashMap::new()),
            reserved: PerOwner::default(),
            held_spend: PerOwner::default(),
            alerts: None,
            strict: None,
            state: RefCell::new(Rc::new(state)),
            reloads,
            draining: Cell::new(false),
            idle: RefCell::new(Canceller::new()),
            connections: Cell::new(0),
            in_flight: Cell::new(0),
            per_client: RefCell::new(HashMap::new()),
        }
    }

    /// Sends budget alerts to the webhook thread.
    pub fn with_alerts(mut self, alerts: Option<mpsc::Sender<String>>) -> Worker {
        self.alerts = alerts;
        self
    }

    /// Reserves strict budgets in the cluster tier's Redis.
    pub fn with_strict(mut self, strict: Option<crate::cluster::strict::Strict>) -> Worker {
        self.strict = strict;
        self
    }

    pub fn strict(&self) -> Option<&crate::cluster::strict::Strict> {
        self.strict.as_ref()
    }

    /// Hands an alert (a JSON body) to the webhook thread, if any.
    pub fn alert(&self, body: String) {
        if let Some(tx) = &self.alerts {
            let _ = tx.send(body);
        }
    }

    /// The state a new request runs under.
    pub fn state(&self) -> Rc<CoreState> {
        self.state.borrow().clone()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    pub fn idle_handle(&self) -> CancelHandle {
        self.idle.borrow().handle()
    }

    pub fn connections(&self) -> usize {
        self.connections.get()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// Stops taking new requests: the listener and idle connections are
    /// cancelled; requests in flight run on.
    pub fn begin_drain(&self) {
        if !self.draining.replace(true) {
            let old = std::mem::take(&mut *self.idle.borrow_mut());
            *self.idle.borrow_mut() = old.cancel();
        }
    }

    /// Hands this core's counts to the merger when due (or now, with `force`).
    fn merge(&self, force: bool) {
        let merger = self.merger.borrow();
        let Some(merger) = merger.as_ref() else { return };
        if !force && self.last_merge.get().elapsed() < MERGE_EVERY {
            return;
        }
        self.last_merge.set(Instant::now());
        let limits = self.limits_due.replace(false);
        let delta = self.stats.take(self.index, &self.state(), self.connections(), self.in_flight(), limits);
        let _ = merger.send(delta);
    }

    /// Takes the newest spend snapshot from the merger, if one came.
    fn take_spend(&self) {
        let Some(rx) = &self.spend_rx else { return };
        let mut newest = None;
        while let Ok(s) = rx.try_recv() {
            newest = Some(s);
        }
        if let Some(s) = newest {
            self.spend_view.borrow_mut().rebuild(s, &self.state());
        }
    }

    /// What `owner` has spent in the current day and month across all
    /// cores: the merger's last figures plus this core's spend since.
    pub fn spend(&self, owner: Owner, now: u64) -> Spend {
        let view = self.spend_view.borrow();
        let merged = match owner {
            Owner::Team(i) => view.teams.get(i),
            Owner::Key(i) => view.keys.get(i),
        }
        .copied()
        .unwrap_or_default();
        let day = tollgate_policy::budget::day_number(now);
        let mine = self.stats.unmerged(owner) + self.held_spend.get(owner);
        Spend {
            day: if view.day == day { merged.day } else { 0 } + mine,
            month: if view.month == tollgate_policy::budget::year_month(day) { merged.month } else { 0 } + mine,
        }
    }

    /// The cluster tier is degraded and fails closed: budgets and rate
    /// limits cannot be enforced, so the requests under them are refused.
    pub fn cluster_refusing(&self) -> bool {
        self.spend_view.borrow().cluster_refusing
    }

    /// The cluster tier is degraded (enforcing with old totals, or refusing).
    pub fn cluster_degraded(&self) -> bool {
        self.spend_view.borrow().cluster_degraded
    }

    /// Whether `owner`'s soft-threshold warning is due (once per UTC day).
    pub fn soft_warning_due(&self, owner: Owner, now: u64) -> bool {
        let day = tollgate_policy::budget::day_number(now);
        self.soft_warned.borrow_mut().insert(owner, day) != Some(day)
    }

    /// What `owner` has used of UTC `minute` across all cores: the merger's
    /// last figures plus this core's since.
    pub fn minute_use(&self, owner: Owner, minute: u64) -> MinuteUse {
        let view = self.spend_view.borrow();
        let merged = match owner {
            Owner::Team(i) => view.teams_minute.get(i),
            Owner::Key(i) => view.keys_minute.get(i),
        }
        .copied()
        .unwrap_or_default()
        .at(minute);
        let mine = self.stats.unmerged_minute(owner, minute);
        MinuteUse { minute, requests: merged.requests + mine.requests, tokens: merged.tokens + mine.tokens }
    }

    /// Holds a request's estimated cost as spend of its team and key until
    /// the returned guard drops (the request has ended and its cost is
    /// counted).
    pub fn hold_spend(self: &Rc<Self>, owners: [Owner; 2], amount: u64) -> SpendHold {
        self.held_spend.add(owners, amount);
        SpendHold { worker: self.clone(), owners, amount }
    }

    /// Tokens this core's requests in flight have reserved for `owner`.
    pub fn reserved(&self, owner: Owner) -> u64 {
        self.reserved.get(owner)
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
        self.reserved.add(owners, tokens);
        Reservation { worker: self.clone(), owners, limits, minute, prompt, tokens: Cell::new(tokens) }
    }

    /// Installs any configuration waiting in the mailbox.
    fn take_reloads(&self) {
        while let Ok(reload) = self.reloads.try_recv() {
            // Records and counts of requests before the reload go out first
            // (counts carry names from the configuration they were made under).
            self.recorder.flush();
            self.merge(true);
            let next = CoreState::build(reload.config, &reload.resolved, reload.tls, Some(&self.state()));
            *self.state.borrow_mut() = Rc::new(next);
            self.limits_due.set(true);
            // Indexes change with the configuration.
            let last = self.spend_view.borrow().last.clone();
            if let Some(s) = last {
                self.spend_view.borrow_mut().rebuild(s, &self.state());
            }
            let _ = reload.done.send(self.index);
        }
    }

    /// Counts an accepted connection from `client`; `None` when the worker
    /// or that client is at its cap.
    pub fn track_connection(self: &Rc<Self>, client: std::net::IpAddr) -> Option<Tracked> {
        let server = &self.state().config.server;
        if self.connections.get() >= server.connections_per_worker_max {
            return None;
        }
        let per_client = server.connections_per_client_max;
        if per_client > 0 {
            let mut m = self.per_client.borrow_mut();
            let n = m.entry(client).or_default();
            if *n >= per_client {
                return None;
            }
            *n += 1;
        }
        self.connections.set(self.connections.get() + 1);
        Some(Tracked { worker: self.clone(), which: Which::Connection(per_client > 0, client) })
    }

    pub fn track_request(self: &Rc<Self>) -> Tracked {
        self.in_flight.set(self.in_flight.get() + 1);
        Tracked { worker: self.clone(), which: Which::Request }
    }
}

/// Amounts this core's requests in flight hold, by owner (tokens reserved,
/// or estimated spend), added as a request starts or grows and taken away
/// when it ends.
#[derive(Default)]
struct PerOwner(RefCell<HashMap<Owner, u64>>);

impl PerOwner {
    fn get(&self, owner: Owner) -> u64 {
        self.0.borrow().get(&owner).copied().unwrap_or(0)
    }

    fn add(&self, owners: [Owner; 2], amount: u64) {
        let mut m = self.0.borrow_mut();
        for o in owners {
            *m.entry(o).or_default() += amount;
        }
    }

    fn sub(&self, owners: [Owner; 2], amount: u64) {
        let mut m = self.0.borrow_mut();
        for o in owners {
            if let Some(v) = m.get_mut(&o) {
                *v = v.saturating_sub(amount);
            }
        }
    }
}

/// A request's estimated cost held as spend; released when it ends.
pub struct SpendHold {
    worker: Rc<Worker>,
    owners: [Owner; 2],
    amount: u64,
}

impl Drop for SpendHold {
    fn drop(&mut self) {
        self.worker.held_spend.sub(self.owners, self.amount);
    }
}

/// Tokens a request reserved; released when it ends, however it ends.
pub struct Reservation {
    worker: Rc<Worker>,
    owners: [Owner; 2],
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
        let total = self.prompt.saturating_add(completion);
        let cur = self.tokens.get();
        if total <= cur {
            return true;
        }
        self.worker.reserved.add(self.owners, total - cur);
        self.tokens.set(total);
        self.owners.iter().zip(self.limits).all(|(&owner, limit)| {
            limit.is_none_or(|l| self.worker.minute_use(owner, self.minute).tokens + self.worker.reserved(owner) <= l)
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.worker.reserved.sub(self.owners, self.tokens.get());
    }
}

enum Which {
    /// Whether the client's count is kept, and the client.
    Connection(bool, std::net::IpAddr),
    Request,
}

/// Decrements its counter when dropped, whichever way the task ends.
pub struct Tracked {
    worker: Rc<Worker>,
    which: Which,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let c = match self.which {
            Which::Connection(counted, client) => {
                if counted {
                    let mut m = self.worker.per_client.borrow_mut();
                    if let Some(n) = m.get_mut(&client) {
                        *n -= 1;
                        if *n == 0 {
                            m.remove(&client);
                        }
                    }
                }
                &self.worker.connections
            }
            Which::Request => &self.worker.in_flight,
        };
        c.set(c.get() - 1);
    }
}

/// The worker's main task: accept until shutdown (taking reloads as they
/// come), then drain.
pub async fn run(worker: Rc<Worker>, listener: std::net::TcpListener, shutdown: Arc<AtomicBool>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(worker = worker.index, error = %e, "cannot register the listener");
            return;
        }
    };
    monoio::spawn(accept_loop(worker.clone(), listener));
    while !shutdown.load(Ordering::Relaxed) {
        worker.take_reloads();
        worker.take_spend();
        worker.recorder.tick(Instant::now());
        worker.merge(false);
        monoio::time::sleep(POLL).await;
    }
    worker.begin_drain();
    let deadline = Instant::now() + worker.state().config.server.timeouts.drain;
    while worker.connections() > 0 && Instant::now() < deadline {
        worker.recorder.tick(Instant::now());
        worker.merge(false);
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.recorder.close();
    worker.merge(true);
    // Hang up, so that the merger (and the ledger) can finish once every
    // worker has stopped, whatever still holds the worker.
    worker.merger.borrow_mut().take();
    if worker.connections() > 0 {
        tracing::warn!(
            worker = worker.index,
            connections = worker.connections(),
            in_flight = worker.in_flight(),
            "drain time-out: closing connections with requests in flight"
        );
    }
}

async fn accept_loop(worker: Rc<Worker>, listener: TcpListener) {
    loop {
        match listener.cancelable_accept(worker.idle_handle()).await {
            Ok((stream, peer)) => {
                let Some(open) = worker.track_connection(peer.ip()) else {
                    // Over a cap (the worker's, or this client's): closing
                    // at once is cheaper for everyone than a connection
                    // that waits.
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                match worker.state().tls.clone() {
                    Some(acceptor) => monoio::spawn(crate::conn::serve_tls(worker.clone(), stream, acceptor, open)),
                    None => monoio::spawn(crate::conn::serve(
                        worker.clone(),
                        crate::downstream::ClientStream::plain(stream),
                        open,
                    )),
                };
            }
            Err(_) if worker.is_draining() => break,
            Err(e) => {
                tracing::warn!(worker = worker.index, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    // Dropping the listener closes this core's socket; the kernel sends new
    // connections to listeners still open.
    drop(listener);
}
