//! A worker: one thread, one core, one monoio runtime, and the thread's
//! lifecycle: accepting, connection and request tracking, the drain, the
//! reload mailbox, and the periodic hand-offs to the merger.
//!
//! What requests read and change lives in the parts it owns: the current
//! [`CoreState`] (configuration, pools, breakers), the [`Accounts`]
//! (spend, holds, reservations), the [`CoreStats`] counters and the
//! [`Recorder`]; a request sees them through a [`Core`]. Other threads
//! reach a worker only through points it polls off the request path: the
//! shutdown flag, its reload mailbox and the merger's snapshots. Counters
//! are `Cell`s: one thread, no atomics.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use monoio::io::{CancelHandle, Canceller};
use tollgate_policy::Config;

use crate::accounts::{Accounts, SpendSnapshot};
use crate::pipeline::Core;
use crate::record::Recorder;
use crate::state::CoreState;
use crate::stats::{CoreFigures, CoreStats, Delta, MERGE_EVERY};
use crate::upstream::Resolved;

/// How often a worker looks at the shutdown flag and its reload mailbox.
/// Only the start of a drain or a reload waits on it, never a request.
const POLL: Duration = Duration::from_millis(10);

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
    /// What this core's owners have spent and hold ([`Accounts`]); shared
    /// with the guards of requests in flight.
    pub accounts: Rc<Accounts>,
    merger: RefCell<Option<mpsc::Sender<Delta>>>,
    last_merge: Cell<Instant>,
    /// The next hand-off carries the configuration's budget limits (at
    /// start and after each reload).
    limits_due: Cell<bool>,
    /// Spend across all cores, from the merger.
    spend_rx: Option<mpsc::Receiver<Arc<SpendSnapshot>>>,
    /// Reservations for strict budgets, with a cluster tier.
    strict: Option<crate::cluster::strict::Strict>,
    state: RefCell<Rc<CoreState>>,
    reloads: mpsc::Receiver<Reload>,
    draining: Cell<bool>,
    /// Cancels the accept when the drain starts.
    accept: RefCell<Canceller>,
    /// Connections waiting for their next request, oldest first: all
    /// cancelled by the drain, the oldest shed when descriptors run out.
    idle: crate::idle::IdleWaits,
    connections: Cell<usize>,
    in_flight: Cell<usize>,
    /// Open connections by client address (kept only with a per-client cap).
    per_client: RefCell<HashMap<std::net::IpAddr, usize>>,
    /// Fired when the drain's time is up ([`crate::cut`]).
    pub cut: crate::cut::Cut,
    /// This worker's listening socket, shut at the start of a drain.
    listener: Cell<Option<std::os::fd::RawFd>>,
    /// This core's answers ([`crate::cache`]), bounded by its share of
    /// `[cache] bytes_max`.
    cache: RefCell<crate::cache::Store>,
    cache_share: usize,
    /// The node's agent runs, shared with the other cores.
    runs: Arc<crate::runs::Runs>,
    /// The node's Responses turns, shared with the other cores.
    turns: Arc<crate::turns::Turns>,
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
        let accounts = Accounts::new(index, None);
        accounts.use_config(state.config.clone());
        Worker {
            index,
            recorder,
            stats: CoreStats::default(),
            accounts: Rc::new(accounts),
            merger: RefCell::new(merger),
            last_merge: Cell::new(Instant::now()),
            limits_due: Cell::new(true),
            spend_rx,
            strict: None,
            state: RefCell::new(Rc::new(state)),
            reloads,
            draining: Cell::new(false),
            accept: RefCell::new(Canceller::new()),
            idle: crate::idle::IdleWaits::default(),
            connections: Cell::new(0),
            in_flight: Cell::new(0),
            per_client: RefCell::new(HashMap::new()),
            cut: crate::cut::Cut::default(),
            listener: Cell::new(None),
            cache: RefCell::new(crate::cache::Store::new(0)),
            cache_share: 1,
            runs: Arc::default(),
            turns: Arc::new(crate::turns::Turns::new(0, std::time::Duration::ZERO)),
        }
    }

    /// Shares the node's Responses turns.
    pub fn with_turns(mut self, turns: Arc<crate::turns::Turns>) -> Worker {
        self.turns = turns;
        self
    }

    /// Shares the node's table of agent runs.
    pub fn with_runs(mut self, runs: Arc<crate::runs::Runs>) -> Worker {
        self.runs = runs;
        self
    }

    /// The node's cache bound is split between `workers` cores.
    pub fn with_cache_share(mut self, workers: usize) -> Worker {
        self.cache_share = workers.max(1);
        self
    }

    /// This core's cache counts, for the metrics.
    pub fn cache_counts(&self) -> crate::cache::StoreCounts {
        self.cache.borrow().counts()
    }

    /// Sends budget alerts to the webhook thread.
    pub fn with_alerts(mut self, alerts: Option<mpsc::Sender<String>>) -> Worker {
        let accounts = Accounts::new(self.index, alerts);
        accounts.use_config(self.state().config.clone());
        self.accounts = Rc::new(accounts);
        self
    }

    /// Reserves strict budgets in the cluster tier's Redis.
    pub fn with_strict(mut self, strict: Option<crate::cluster::strict::Strict>) -> Worker {
        self.strict = strict;
        self
    }

    /// What a request on this core runs with besides its own exchange.
    pub fn core<'w>(&'w self, state: &'w CoreState) -> Core<'w> {
        Core {
            state,
            accounts: &self.accounts,
            stats: &self.stats,
            recorder: &self.recorder,
            strict: self.strict.as_ref(),
            draining: self.draining.get(),
            cut: &self.cut,
            cache: &self.cache,
            cache_share: self.cache_share,
            runs: &self.runs,
            turns: &self.turns,
        }
    }

    /// The state a new request runs under.
    pub fn state(&self) -> Rc<CoreState> {
        self.state.borrow().clone()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// The accept's cancel handle (cancelled by the drain).
    pub fn accept_handle(&self) -> CancelHandle {
        self.accept.borrow().handle()
    }

    /// A connection begins waiting for its next request: the read's cancel
    /// handle, and the ticket that keeps its place among the waits.
    pub fn idle_wait(&self) -> (CancelHandle, crate::idle::Ticket) {
        self.idle.begin()
    }

    pub fn connections(&self) -> usize {
        self.connections.get()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// The socket this worker accepts on (by its accept task, which holds
    /// it open until the drain begins).
    pub fn listening_on(&self, fd: std::os::fd::RawFd) {
        self.listener.set(Some(fd));
    }

    /// Closes the connections that have waited longest for their next
    /// request (one generation, [`crate::idle`]), to free descriptors when
    /// accepting fails for want of them; requests in flight are untouched,
    /// and the clients reconnect. How many were closed.
    pub fn shed_idle(&self) -> usize {
        self.idle.shed_oldest()
    }

    /// Counts a failed accept (`tollgate_accept_errors_total`).
    pub fn accept_failed(&self) {
        self.stats.accept_failed();
    }

    /// Stops taking new requests: the listener stops listening at once (new
    /// connections are refused, so a load balancer moves on), and idle
    /// connections and the accept are cancelled; requests in flight run on.
    pub fn begin_drain(&self) {
        if let Some(fd) = self.listener.take() {
            // A listening socket shut for reading stops listening there and
            // then (Linux: `inet_shutdown` on TCP_LISTEN), whatever still
            // holds the descriptor: io_uring may keep a cancelled accept's
            // file open a while after its future is gone.
            // SAFETY: `fd` is the accept task's listener, alive until that
            // task sees the drain, which this call begins; `shutdown` only
            // changes the socket's state and touches no memory.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RD);
            }
        }
        if !self.draining.replace(true) {
            let old = std::mem::take(&mut *self.accept.borrow_mut());
            *self.accept.borrow_mut() = old.cancel();
            self.idle.cancel_all();
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
        let state = self.state();
        let core = CoreFigures {
            worker: self.index,
            connections: self.connections(),
            in_flight: self.in_flight(),
            breakers: state.breaker_states(Instant::now()),
            cache: self.cache_counts(),
        };
        let delta = self.stats.take(&state.config, core, self.accounts.hand_off(&state.config), limits);
        if merger.send(delta).is_err() {
            // The merger has stopped: no snapshot will take these counts
            // out of transit.
            self.accounts.hand_off_failed();
        }
    }

    /// Takes the newest spend snapshot from the merger, if one came.
    fn take_spend(&self) {
        let Some(rx) = &self.spend_rx else { return };
        if let Some(s) = rx.try_iter().last() {
            self.accounts.install(s, &self.state().config);
        }
    }

    /// Installs any configuration waiting in the mailbox.
    fn take_reloads(&self) {
        while let Ok(reload) = self.reloads.try_recv() {
            // Records and counts of requests before the reload go out first
            // (counts carry names from the configuration they were made under).
            self.recorder.flush();
            self.merge(true);
            let old = self.state();
            let next = CoreState::build(reload.config, &reload.resolved, reload.tls, Some(&old));
            *self.state.borrow_mut() = Rc::new(next);
            self.limits_due.set(true);
            // Indexes change with the configuration.
            self.accounts.reindex(&old.config, self.state().config.clone());
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

/// The worker's main task: `accept` (the connection side,
/// [`crate::conn::accept`]) runs beside it until shutdown (taking reloads as they
/// come), then drain.
pub async fn run(
    worker: Rc<Worker>,
    accept: impl std::future::Future<Output = ()> + 'static,
    shutdown: Arc<AtomicBool>,
    beats: crate::systemd::Heartbeats,
) {
    monoio::spawn(accept);
    while !shutdown.load(Ordering::Relaxed) {
        // Progress, for the watchdog: this loop runs only when the core's
        // tasks let it.
        beats.beat(worker.index);
        worker.take_reloads();
        worker.take_spend();
        worker.recorder.tick(Instant::now());
        worker.merge(false);
        monoio::time::sleep(POLL).await;
    }
    worker.begin_drain();
    let deadline = Instant::now() + worker.state().config.server.timeouts.drain;
    while worker.connections() > 0 && Instant::now() < deadline {
        beats.beat(worker.index);
        worker.recorder.tick(Instant::now());
        worker.merge(false);
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    if worker.connections() > 0 {
        // The drain's time is up: requests still waiting on an upstream end
        // their answers and go through the pipeline's exit, recorded and
        // billed, before the recorder and the last hand-off close.
        worker.cut.fire();
        let grace = Instant::now() + crate::cut::CUT_GRACE;
        while worker.in_flight() > 0 && Instant::now() < grace {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
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
