//! The cluster tier: one set of budgets and rate limits across several
//! gateway nodes, kept in Redis (or Valkey), never on the request path.
//!
//! The merger hands this thread every increment the node's cores counted
//! (spend per day and month, requests and tokens per minute, by team and
//! key). Every `interval` the thread pushes what it gathered to Redis in
//! one Lua script and reads back the cluster totals of every owner under a
//! limit, in the same round trip. The merger folds those totals into the
//! snapshot the cores enforce, adding the node's own spend since (see
//! [`combine`]).
//!
//! Pushes are idempotent: each carries the node's id and a sequence number,
//! and the script applies a push only if its number is above the last one
//! applied for that node's process. A push that timed out is retried with
//! the same number, so it counts once whether or not the first try landed.
//! Numbers are kept per process (node id and start time), so that nothing
//! another process does (a restart that overlaps, a node id used twice, a
//! clock stepped back) can make a push look applied.
//!
//! Redis down or slow stalls nothing: the thread keeps gathering, the cores
//! keep enforcing against the last totals plus their own spend, and the
//! node reports itself degraded once its view is older than `stale_after`
//! (and, with `on_stale = "closed"`, refuses limited requests). When Redis
//! answers again, everything gathered meanwhile goes in one push.
//!
//! At shutdown the last push is tried once; what cannot be pushed is kept
//! beside the ledger with its sequence number and pushed at the next start,
//! where the number makes it count once even if the first try had landed.

pub mod redis;
pub mod strict;

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use simd_json::prelude::*;
use tollgate_policy::budget::{day_number, year_month};
use tollgate_policy::config::cluster::Cluster;
use tollgate_policy::Config;

use self::redis::{Redis, RedisError};
pub use crate::accounts::Released;
use crate::accounts::{MinuteUse, OwnerName, SpendSnapshot};
use crate::runs::{Remote, Runs, SharedRun};
use crate::unix_now;

/// A counter's window: UTC day, UTC month, or a UTC minute's requests or
/// tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    Day(u64),
    Month(i64, u32),
    Requests(u64),
    Tokens(u64),
}

impl Window {
    /// When its key may go: the window's end, plus an hour for clocks that
    /// disagree (a minute for minutes).
    fn expires_at(self) -> u64 {
        match self {
            Window::Day(d) => (d + 1) * 86_400 + 3_600,
            Window::Month(y, m) => tollgate_policy::budget::month_end(y, m) + 3_600,
            Window::Requests(min) | Window::Tokens(min) => (min + 2) * 60,
        }
    }

    /// Whether the window is over at `now` (Unix seconds).
    pub fn is_past(self, now: u64) -> bool {
        match self {
            Window::Day(d) => d < day_number(now),
            Window::Month(y, m) => (y, m) < year_month(day_number(now)),
            Window::Requests(min) | Window::Tokens(min) => min < now / 60,
        }
    }

    fn key_part(self) -> String {
        match self {
            Window::Day(d) => format!("d:{d}"),
            Window::Month(y, m) => format!("m:{y:04}-{m:02}"),
            Window::Requests(min) => format!("rq:{min}"),
            Window::Tokens(min) => format!("tk:{min}"),
        }
    }
}

pub type Counter = (OwnerName, Window);

/// The Redis key of a counter: `{prefix}:d:20415:team:search`.
fn redis_key(prefix: &str, (owner, window): &Counter) -> String {
    let (kind, name) = owner.label();
    format!("{{{prefix}}}:{}:{kind}:{name}", window.key_part())
}

/// The Redis hash of an owner's outstanding strict reservations.
fn reservations_key(prefix: &str, owner: &OwnerName) -> String {
    let (kind, name) = owner.label();
    format!("{{{prefix}}}:rsv:{kind}:{name}")
}

/// The increments a core's delta brings, with their windows: spend in
/// today's and this month's, requests and tokens in their minute.
pub fn increments(spend: &[(OwnerName, u64)], minute: &[(OwnerName, MinuteUse)], now: u64) -> Vec<(Counter, u64)> {
    let day = day_number(now);
    let (y, m) = year_month(day);
    let mut out = Vec::with_capacity(spend.len() * 2 + minute.len() * 2);
    for (owner, micro) in spend {
        out.push(((owner.clone(), Window::Day(day)), *micro));
        out.push(((owner.clone(), Window::Month(y, m)), *micro));
    }
    for (owner, u) in minute {
        if u.requests > 0 {
            out.push(((owner.clone(), Window::Requests(u.minute)), u.requests));
        }
        if u.tokens > 0 {
            out.push(((owner.clone(), Window::Tokens(u.minute)), u.tokens));
        }
    }
    out
}

/// Owners whose totals the node needs from the cluster: those under a
/// budget or a rate limit.
pub fn watched(config: &Config) -> Vec<OwnerName> {
    use tollgate_policy::team::is_limited;
    let teams =
        config.teams.iter().filter(|t| is_limited(&t.budget, &t.rate_limit)).map(|t| OwnerName::Team(t.name.clone()));
    let keys = config
        .keys
        .all()
        .iter()
        .filter(|k| is_limited(&k.budget, &k.rate_limit))
        .map(|k| OwnerName::Key(k.name.clone()));
    teams.chain(keys).collect()
}

/// What the merger sends the cluster thread.
pub enum ToCluster {
    /// Increments counted by the node's cores, and strict reservations
    /// their requests ended (one message, so that one push takes both).
    Add(Vec<(Counter, u64)>, Vec<Released>),
    /// The owners to read totals for (at start and after each reload).
    Watch(Vec<OwnerName>),
}

/// How the node stands with the cluster, for `/metrics` and `/readyz`.
#[derive(Clone, Debug, Default)]
pub struct ClusterStatus {
    pub node_id: String,
    /// The server of the last good exchange.
    pub server: Option<String>,
    pub last_sync_unix_ms: Option<u64>,
    /// No good exchange for `stale_after`.
    pub degraded: bool,
    pub fail_closed: bool,
    pub exchanges_ok: u64,
    pub exchanges_failed: u64,
    /// Counters gathered but not yet acknowledged by Redis.
    pub unpushed: u64,
}

impl ClusterStatus {
    /// Limited requests are refused: degraded, and the policy fails closed.
    pub fn refusing(&self) -> bool {
        self.degraded && self.fail_closed
    }
}

/// Cluster totals as of the last good exchange.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// Counter → (cluster total, this process's increments it includes).
    pub totals: HashMap<Counter, (u64, u64)>,
    pub status: ClusterStatus,
}

/// The spend and minute figures the cores enforce: for each counter the
/// cluster total plus what this process counted since that total was read
/// (`local` is everything it counted; the view says how much of it the
/// total includes), and never less than the node's own figures (which
/// count from the ledger, so they hold while Redis has not yet answered
/// after a restart).
pub fn combine(node: &mut SpendSnapshot, local: &HashMap<Counter, u64>, view: &ClusterView) {
    for (counter, &(total, included)) in &view.totals {
        let mine_since = local.get(counter).copied().unwrap_or(0).saturating_sub(included);
        let v = total.saturating_add(mine_since);
        let (owner, window) = counter;
        match *window {
            Window::Day(d) if d == node.day => {
                let e = node.by_owner.entry(owner.clone()).or_default();
                e.0 = e.0.max(v);
            }
            Window::Month(y, m) if (y, m) == node.month => {
                let e = node.by_owner.entry(owner.clone()).or_default();
                e.1 = e.1.max(v);
            }
            Window::Requests(min) | Window::Tokens(min) => {
                let e = node.minute.entry(owner.clone()).or_default();
                if e.minute < min {
                    *e = MinuteUse { minute: min, ..MinuteUse::default() };
                }
                if e.minute == min {
                    if matches!(window, Window::Requests(_)) {
                        e.requests = e.requests.max(v);
                    } else {
                        e.tokens = e.tokens.max(v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The push-and-read script. KEYS: the last sequence number applied for
/// this node's process (numbers are per process, so that no other process,
/// an overlapping restart or a clock stepped back, can make a push look
/// already applied), `n` counters to add to, `r` reservation hashes to
/// release from, `u` agent runs' hashes to add to, then the counters to
/// read, then `m` runs' hashes to read. ARGV: the push's sequence number,
/// `n`, `r`, `u`, `m`, an amount and an expiry time per counter, a
/// reservation id per hash, then per run its cost, tokens and requests to
/// add, its first request (Unix ms, kept if earliest), its parent's shared
/// id (decimal, kept if first; 0 for none) and an expiry time. Returns
/// whether the push was applied, the counters read, then five values per
/// run read (cost, tokens, requests, first request, and the parent as a
/// string: a 64-bit id is past Lua's exact integers).
const SCRIPT: &str = r#"
local seq = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local r = tonumber(ARGV[3])
local u = tonumber(ARGV[4])
local m = tonumber(ARGV[5])
local runs = 1 + n + r
local run_args = 5 + 2 * n + r
local fields = {'c', 't', 'q', 's'}
local applied = 0
if n + r + u > 0 then
  local last = tonumber(redis.call('GET', KEYS[1]) or '0')
  if seq > last then
    -- A counter someone overwrote with a non-integer would stop the script
    -- half-way (and its retry would count the first half twice): refuse
    -- the push before writing anything. (Digits only: tonumber would pass
    -- "1.5" or "0x10", which INCRBY refuses.)
    for i = 1, n do
      local v = redis.call('GET', KEYS[1 + i])
      if v and not string.match(v, '^%-?%d+$') then
        return redis.error_reply('tollgate: ' .. KEYS[1 + i] .. ' does not hold an integer')
      end
    end
    for k = 1, u do
      local key = KEYS[runs + k]
      local t = redis.call('TYPE', key).ok
      if t ~= 'none' and t ~= 'hash' then
        return redis.error_reply('tollgate: ' .. key .. ' is not a hash')
      end
      for _, f in ipairs(fields) do
        local v = redis.call('HGET', key, f)
        if v and not string.match(v, '^%-?%d+$') then
          return redis.error_reply('tollgate: ' .. key .. ' field ' .. f .. ' does not hold an integer')
        end
      end
    end
    for i = 1, n do
      redis.call('INCRBY', KEYS[1 + i], ARGV[4 + 2 * i])
      redis.call('EXPIREAT', KEYS[1 + i], ARGV[5 + 2 * i])
    end
    for j = 1, r do
      redis.call('HDEL', KEYS[1 + n + j], ARGV[5 + 2 * n + j])
    end
    for k = 1, u do
      local key = KEYS[runs + k]
      local a = run_args + 6 * (k - 1)
      for x = 1, 3 do
        if tonumber(ARGV[a + x]) > 0 then
          redis.call('HINCRBY', key, fields[x], ARGV[a + x])
        end
      end
      local b = tonumber(ARGV[a + 4])
      local s = tonumber(redis.call('HGET', key, 's') or '0')
      if b > 0 and (s == 0 or b < s) then
        redis.call('HSET', key, 's', ARGV[a + 4])
      end
      if ARGV[a + 5] ~= '0' then
        redis.call('HSETNX', key, 'p', ARGV[a + 5])
      end
      redis.call('EXPIREAT', key, ARGV[a + 6])
    end
    redis.call('SET', KEYS[1], ARGV[1], 'EX', 3456000)
    applied = 1
  end
end
local out = {applied}
for i = runs + u + 1, #KEYS - m do
  out[#out + 1] = tonumber(redis.call('GET', KEYS[i]) or '0')
end
for i = #KEYS - m + 1, #KEYS do
  -- Something else under a run's key reads as a run with nothing spent.
  local v = {}
  if redis.call('TYPE', KEYS[i]).ok == 'hash' then
    v = redis.call('HMGET', KEYS[i], 'c', 't', 'q', 's', 'p')
  end
  for x = 1, 4 do
    out[#out + 1] = tonumber(v[x] or '0') or 0
  end
  out[#out + 1] = v[5] or '0'
end
return out
"#;

/// Counters and releases in one push at most.
const BATCH_MAX: usize = 4096;

/// One push: rendered keys, amounts and expiry times, under one sequence
/// number.
#[derive(Debug, Default)]
struct Batch {
    /// The process that cut it (its start time in microseconds): pushes
    /// are numbered per process.
    epoch: u64,
    seq: u64,
    /// The counters, when this process counted them (not for a batch
    /// carried over from a previous run).
    counters: Vec<(Counter, u64)>,
    keys: Vec<(String, u64, u64)>,
    /// Strict reservations to release: (hash, id).
    releases: Vec<(String, String)>,
    /// Agent runs' figures to add.
    runs: Vec<RunPush>,
}

/// What one push adds to an agent run's hash in Redis.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RunPush {
    key: String,
    /// The run's [`crate::runs::shared_id`]; 0 for a push carried over
    /// from a previous run of the process.
    id: u128,
    add: Figures,
    /// The run's first request on this node (Unix ms).
    started_ms: u64,
    /// Its parent's shared id, 0 for none known.
    parent: u128,
    expires: u64,
}

/// An agent run's figures as the cluster adds them up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Figures {
    cost: u64,
    tokens: u64,
    requests: u64,
}

impl Figures {
    fn add(&mut self, o: Figures) {
        self.cost = self.cost.saturating_add(o.cost);
        self.tokens = self.tokens.saturating_add(o.tokens);
        self.requests = self.requests.saturating_add(o.requests);
    }

    fn less(self, o: Figures) -> Figures {
        Figures {
            cost: self.cost.saturating_sub(o.cost),
            tokens: self.tokens.saturating_sub(o.tokens),
            requests: self.requests.saturating_sub(o.requests),
        }
    }
}

/// A run's hash in Redis: `{prefix}:run:<16 hex digits>`.
fn run_key(prefix: &str, id: u128) -> String {
    format!("{{{prefix}}}:run:{id:032x}")
}

/// How long Redis keeps a run no node has pushed to: a run idle for a day
/// starts afresh across the cluster.
const RUN_TTL_S: u64 = 86_400;
/// Runs read at one exchange at most, those with the latest requests
/// first.
const RUN_READS_MAX: usize = 2048;

impl Batch {
    fn new(
        epoch: u64,
        seq: u64,
        prefix: &str,
        counters: Vec<(Counter, u64)>,
        released: Vec<Released>,
        runs: Vec<RunPush>,
    ) -> Batch {
        let keys = counters.iter().map(|(c, v)| (redis_key(prefix, c), *v, c.1.expires_at())).collect();
        let releases = released.into_iter().map(|r| (reservations_key(prefix, &r.owner), r.id)).collect();
        Batch { epoch, seq, counters, keys, releases, runs }
    }

    fn len(&self) -> usize {
        self.keys.len() + self.releases.len() + self.runs.len()
    }
}

/// Pushes `batch` (if any) and reads the counters `reads` and the runs'
/// hashes `run_reads`, in one script run; the counters' values, then four
/// per run (cost, tokens, requests, first request). (The script also says
/// whether it applied the batch; a retry it skipped was applied before, so
/// either way the batch is in.)
fn exchange(
    conn: &mut Redis,
    prefix: &str,
    node_id: &str,
    batch: Option<&Batch>,
    reads: &[String],
    run_reads: &[String],
) -> Result<Vec<u128>, RedisError> {
    let empty = Batch::default();
    let b = batch.unwrap_or(&empty);
    let seq_key = format!("{{{prefix}}}:node:{node_id}:{}:seq", b.epoch);
    let head = [b.seq, b.keys.len() as u64, b.releases.len() as u64, b.runs.len() as u64, run_reads.len() as u64];
    let numbers: Vec<String> = head
        .into_iter()
        .map(|n| n.to_string())
        .chain(b.keys.iter().flat_map(|(_, v, x)| [v.to_string(), x.to_string()]))
        .collect();
    let run_numbers: Vec<String> = b
        .runs
        .iter()
        .flat_map(|r| {
            let (c, t, q, b, x) = (r.add.cost, r.add.tokens, r.add.requests, r.started_ms, r.expires);
            [c.to_string(), t.to_string(), q.to_string(), b.to_string(), r.parent.to_string(), x.to_string()]
        })
        .collect();
    let numkeys = (1 + b.len() + reads.len() + run_reads.len()).to_string();
    let mut args: Vec<&[u8]> = vec![b"EVAL", SCRIPT.as_bytes(), numkeys.as_bytes(), seq_key.as_bytes()];
    args.extend(b.keys.iter().map(|(k, _, _)| k.as_bytes()));
    args.extend(b.releases.iter().map(|(h, _)| h.as_bytes()));
    args.extend(b.runs.iter().map(|r| r.key.as_bytes()));
    args.extend(reads.iter().map(|k| k.as_bytes()));
    args.extend(run_reads.iter().map(|k| k.as_bytes()));
    args.extend(numbers.iter().map(|n| n.as_bytes()));
    args.extend(b.releases.iter().map(|(_, id)| id.as_bytes()));
    args.extend(run_numbers.iter().map(|n| n.as_bytes()));
    let reply = conn.call(&args)?;
    let expected = 1 + reads.len() + 5 * run_reads.len();
    let items = match reply {
        tollgate_protocol::resp::Reply::Array(Some(items)) if items.len() == expected => items,
        tollgate_protocol::resp::Reply::Error(e) => return Err(RedisError::Refused { command: "EVAL", reply: e }),
        other => {
            return Err(RedisError::Refused { command: "EVAL", reply: format!("unexpected reply {other:?}") });
        }
    };
    // A parent id is a decimal string up to 2^128 (past i64).
    let number = |r: &tollgate_protocol::resp::Reply| match r {
        tollgate_protocol::resp::Reply::Bulk(Some(b)) => {
            std::str::from_utf8(b).ok().and_then(|s| s.parse::<u128>().ok()).unwrap_or(0)
        }
        other => other.as_int().unwrap_or(0).max(0) as u128,
    };
    Ok(items[1..].iter().map(number).collect())
}

/// The running cluster thread's ends.
pub struct Handle {
    pub tx: mpsc::Sender<ToCluster>,
    pub views: mpsc::Receiver<ClusterView>,
    pub thread: std::thread::JoinHandle<()>,
    /// `stale_after`: the merger also judges a view stale by its age, in
    /// case the thread itself is stuck (a DNS look-up without a time-out).
    pub stale_after: Duration,
}

/// Where counts Redis did not take at shutdown wait for the next start:
/// beside the ledger under its whole name (`spend.jsonl.cluster-unpushed`,
/// as OPERATIONS.md says). Until stop 61 `with_extension` named it, so
/// that the ledgers `a.json` and `a.jsonl` shared one file: a file left
/// under that name is taken over (renamed, so one gateway takes it), and
/// its counts are pushed, not lost, by the first start after the upgrade.
pub fn carried_path(ledger: &std::path::Path) -> PathBuf {
    let path = crate::beside(ledger, ".cluster-unpushed");
    let old = ledger.with_extension("cluster-unpushed");
    if old != path && !path.exists() && old.exists() {
        match fs::rename(&old, &path) {
            Ok(()) => {
                tracing::info!(from = %old.display(), to = %path.display(), "cluster tier: unpushed counts moved to their new name")
            }
            Err(e) => {
                tracing::warn!(file = %old.display(), error = %e, "cluster tier: cannot move unpushed counts to their new name; they stay unpushed")
            }
        }
    }
    path
}

/// Starts the cluster thread. `carried` is where an unpushed batch is kept
/// across restarts (beside the ledger); `watch` the owners to read; `runs`
/// the node's agent runs, whose figures it shares.
pub fn start(
    cluster: Cluster,
    tls: Option<Arc<rustls::ClientConfig>>,
    carried: Option<PathBuf>,
    watch: Vec<OwnerName>,
    runs: Arc<Runs>,
) -> std::io::Result<Handle> {
    let (tx, rx) = mpsc::channel();
    let (view_tx, views) = mpsc::channel();
    let stale_after = cluster.stale_after;
    let thread = std::thread::Builder::new().name("tollgate-cluster".into()).spawn(move || {
        let mut node = Node::new(cluster, tls, carried, watch, runs);
        node.run(rx, view_tx);
    })?;
    Ok(Handle { tx, views, thread, stale_after })
}

struct Node {
    cluster: Cluster,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<Redis>,
    /// Which server to try first: the last that answered.
    preferred: usize,
    /// This process's start (µs): the namespace of its sequence numbers.
    epoch: u64,
    next_seq: u64,
    /// Gathered since the last batch was cut.
    pending: HashMap<Counter, u64>,
    pending_releases: Vec<Released>,
    /// Cut, numbered, not yet acknowledged: retried as it is.
    inflight: Option<Batch>,
    /// Batches from a previous run, pushed before anything else.
    carried: Vec<Batch>,
    carried_file: Option<PathBuf>,
    /// This process's increments Redis has acknowledged, by counter.
    pushed: HashMap<Counter, u64>,
    watch: Vec<OwnerName>,
    view: ClusterView,
    /// The node's agent runs, and per shared run the figures cut into
    /// batches so far and those Redis has acknowledged (what the totals
    /// read include of this process's).
    runs: Arc<Runs>,
    run_cut: HashMap<u128, (Figures, u64, bool)>,
    run_acked: HashMap<u128, Figures>,
    /// The slot the next scan starts from.
    run_scan_from: usize,
    last_good: Option<Instant>,
    /// Logged once per outage.
    outage_logged: bool,
}

impl Node {
    fn new(
        cluster: Cluster,
        tls: Option<Arc<rustls::ClientConfig>>,
        carried_file: Option<PathBuf>,
        watch: Vec<OwnerName>,
        runs: Arc<Runs>,
    ) -> Node {
        let carried = carried_file.as_ref().map_or_else(Vec::new, read_carried);
        let status = ClusterStatus {
            node_id: cluster.node_id.clone(),
            fail_closed: cluster.fail_closed,
            ..ClusterStatus::default()
        };
        Node {
            epoch: unix_now().as_micros() as u64,
            next_seq: 1,
            cluster,
            tls,
            conn: None,
            preferred: 0,
            pending: HashMap::new(),
            pending_releases: Vec::new(),
            inflight: None,
            carried,
            carried_file,
            pushed: HashMap::new(),
            watch,
            view: ClusterView { totals: HashMap::new(), status },
            runs,
            run_cut: HashMap::new(),
            run_acked: HashMap::new(),
            run_scan_from: 0,
            last_good: None,
            outage_logged: false,
        }
    }

    fn run(&mut self, rx: mpsc::Receiver<ToCluster>, views: mpsc::Sender<ClusterView>) {
        let started = Instant::now();
        let mut next = started;
        loop {
            // Gather until the next exchange is due.
            let mut open = true;
            loop {
                let wait = next.saturating_duration_since(Instant::now());
                match rx.recv_timeout(wait) {
                    Ok(msg) => self.take(msg),
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            next = Instant::now() + self.cluster.interval;
            self.sync();
            // A degraded node may be refusing: it says so at once.
            let _ = views.send(self.view.clone());
            if !open {
                self.shutdown();
                return;
            }
        }
    }

    fn take(&mut self, msg: ToCluster) {
        match msg {
            ToCluster::Add(adds, released) => {
                for (c, v) in adds {
                    *self.pending.entry(c).or_default() += v;
                }
                self.pending_releases.extend(released);
            }
            ToCluster::Watch(owners) => self.watch = owners,
        }
    }

    fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.pending_releases.is_empty()
    }

    /// Cuts what is pending into the next numbered batch.
    /// At most [`BATCH_MAX`] counters and releases go in one batch: after
    /// a long outage the backlog goes in over several intervals, each push
    /// short enough to finish within the time-out.
    fn cut(&mut self, runs: Vec<RunPush>) -> Batch {
        let take: Vec<Counter> = self.pending.keys().take(BATCH_MAX.saturating_sub(runs.len())).cloned().collect();
        let counters: Vec<(Counter, u64)> =
            take.into_iter().filter_map(|c| self.pending.remove(&c).map(|v| (c, v))).collect();
        let room = BATCH_MAX.saturating_sub(counters.len() + runs.len()).min(self.pending_releases.len());
        let releases = self.pending_releases.drain(..room).collect();
        let b = Batch::new(self.epoch, self.next_seq, &self.cluster.key_prefix, counters, releases, runs);
        self.next_seq += 1;
        b
    }

    /// The counters to read: every watched owner's current windows.
    fn reads(&self, now: u64) -> Vec<Counter> {
        let day = day_number(now);
        let (y, m) = year_month(day);
        let minute = now / 60;
        let mut out = Vec::with_capacity(self.watch.len() * 4);
        for o in &self.watch {
            for w in [Window::Day(day), Window::Month(y, m), Window::Requests(minute), Window::Tokens(minute)] {
                out.push((o.clone(), w));
            }
        }
        out
    }

    /// One exchange: the carried batch first, then the in-flight one (cut
    /// from what is pending if there is none), reading the totals.
    fn sync(&mut self) {
        let now = unix_now().as_secs();
        // A minute that is over no longer limits anyone.
        self.pending.retain(|(_, w), _| !matches!(w, Window::Requests(_) | Window::Tokens(_)) || !w.is_past(now));
        self.pending_releases.retain(|r| r.expires > now);
        let shared = self.runs.shared_runs();
        if self.inflight.is_none() {
            // Runs share a batch's room with the counters, half of it at
            // least while a backlog of counters goes in.
            let backlog = (self.pending.len() + self.pending_releases.len()).min(BATCH_MAX / 2);
            let runs = self.run_deltas(&shared, now, BATCH_MAX - backlog);
            if self.has_pending() || !runs.is_empty() {
                self.inflight = Some(self.cut(runs));
            }
        }
        let reads = self.reads(now);
        let keys: Vec<String> = reads.iter().map(|c| redis_key(&self.cluster.key_prefix, c)).collect();
        let run_reads = run_reads(&shared, unix_now().as_millis() as u64);
        let run_keys: Vec<String> = run_reads.iter().map(|&(_, _, id)| run_key(&self.cluster.key_prefix, id)).collect();
        match self.try_sync(&keys, &run_keys) {
            Ok(mut values) => {
                if let Some(b) = self.inflight.take() {
                    for (c, v) in b.counters {
                        *self.pushed.entry(c).or_default() += v;
                    }
                    for r in b.runs.iter().filter(|r| r.id != 0) {
                        self.run_acked.entry(r.id).or_default().add(r.add);
                    }
                }
                // The other nodes' figures: the cluster's, less what this
                // process's pushes put in them.
                let run_values = values.split_off(reads.len());
                for (&(at, tag, id), v) in run_reads.iter().zip(run_values.chunks_exact(5)) {
                    let n = |i: usize| u64::try_from(v[i]).unwrap_or(u64::MAX);
                    let total = Figures { cost: n(0), tokens: n(1), requests: n(2) };
                    let others = total.less(self.run_acked.get(&id).copied().unwrap_or_default());
                    let (cost, tokens, requests) = (others.cost, others.tokens, others.requests);
                    let remote = Remote { cost, tokens, requests, started_ms: n(3), parent: v[4] };
                    self.runs.set_remote(at, tag, id, remote);
                }
                self.pushed.retain(|(_, w), _| !w.is_past(now));
                self.view.totals = reads
                    .into_iter()
                    .zip(values)
                    .map(|(c, v)| {
                        let mine = self.pushed.get(&c).copied().unwrap_or(0);
                        (c, (u64::try_from(v).unwrap_or(u64::MAX), mine))
                    })
                    .collect();
                self.last_good = Some(Instant::now());
                let st = &mut self.view.status;
                st.last_sync_unix_ms = Some(unix_now().as_millis() as u64);
                st.server = self.conn.as_ref().map(|c| c.name.clone());
                st.exchanges_ok += 1;
                if st.degraded || self.outage_logged {
                    tracing::info!(node = %st.node_id, "cluster tier back: Redis answers again, gathered counts pushed");
                }
                st.degraded = false;
                self.outage_logged = false;
            }
            Err(e) => {
                self.conn = None;
                // A server that answers with an error (a replica after a
                // failover: READONLY) is not the one to keep trying first.
                if matches!(e, RedisError::Refused { .. }) && !self.cluster.servers.is_empty() {
                    self.preferred = (self.preferred + 1) % self.cluster.servers.len();
                }
                let st = &mut self.view.status;
                st.exchanges_failed += 1;
                if !self.outage_logged {
                    tracing::warn!(node = %st.node_id, error = %e, "cluster tier: Redis exchange failed; enforcing with the last known totals plus this node's spend");
                    self.outage_logged = true;
                }
                let stale = self.last_good.is_none_or(|t| t.elapsed() >= self.cluster.stale_after);
                if stale && !st.degraded {
                    st.degraded = true;
                    tracing::error!(
                        node = %st.node_id,
                        fail_closed = st.fail_closed,
                        "cluster tier degraded: no good exchange with Redis for {} ms",
                        self.cluster.stale_after.as_millis()
                    );
                }
            }
        }
        self.view.status.unpushed =
            (self.pending.len() + self.pending_releases.len() + self.inflight.as_ref().map_or(0, Batch::len)) as u64;
    }

    fn try_sync(&mut self, reads: &[String], run_reads: &[String]) -> Result<Vec<u128>, RedisError> {
        self.connect()?;
        let Node { conn, cluster, carried, carried_file, inflight, .. } = self;
        let conn = conn.as_mut().expect("connected above");
        while let Some(batch) = carried.first() {
            exchange(conn, &cluster.key_prefix, &cluster.node_id, Some(batch), &[], &[])?;
            tracing::info!(
                seq = batch.seq,
                counters = batch.keys.len(),
                "cluster tier: pushed counts carried over from the last run"
            );
            carried.remove(0);
            if carried.is_empty() {
                if let Some(p) = carried_file {
                    let _ = fs::remove_file(p);
                }
            }
        }
        exchange(conn, &cluster.key_prefix, &cluster.node_id, inflight.as_ref(), reads, run_reads)
    }

    /// What each shared run has counted on this node since its last cut,
    /// to push (every run once at first, for its start time).
    /// At most `room` runs go in one batch; the next scan goes on from
    /// where this one stopped, so that no run waits behind others.
    fn run_deltas(&mut self, shared: &[SharedRun], now: u64, room: usize) -> Vec<RunPush> {
        let mut out = Vec::new();
        let from = shared.iter().position(|r| r.at >= self.run_scan_from).unwrap_or(0);
        self.run_scan_from = 0;
        for r in shared[from..].iter().chain(&shared[..from]) {
            if out.len() >= room {
                self.run_scan_from = r.at;
                break;
            }
            let local = Figures { cost: r.cost, tokens: r.tokens, requests: r.requests };
            let (cut, started, parent_sent) = self.run_cut.entry(r.id).or_insert((Figures::default(), 0, false));
            if *started != r.started_ms {
                // New here, or back in a fresh slot after an idle hour:
                // counted from nought again, and what this process pushed
                // before counts as anyone's in the totals.
                if *started != 0 {
                    self.run_acked.remove(&r.id);
                }
                *cut = Figures::default();
            }
            let add = local.less(*cut);
            let first = *started != r.started_ms;
            // A parent learned since the first push goes with the next
            // (kept only if the hash has none).
            if add == Figures::default() && !first && (r.parent == 0 || *parent_sent) {
                continue;
            }
            *parent_sent = r.parent != 0;
            // A refusal takes back the request it had counted a moment
            // before: a figure below what was cut is not pushed again
            // when it climbs back.
            cut.add(add);
            *started = r.started_ms;
            let key = run_key(&self.cluster.key_prefix, r.id);
            out.push(RunPush {
                key,
                id: r.id,
                add,
                started_ms: r.started_ms,
                parent: r.parent,
                expires: now + RUN_TTL_S,
            });
        }
        // A run gone from the table, with all it counted acknowledged,
        // is forgotten.
        if self.run_cut.len() > shared.len() {
            let live: std::collections::HashSet<u128> = shared.iter().map(|r| r.id).collect();
            let acked = &self.run_acked;
            self.run_cut.retain(|id, (cut, ..)| live.contains(id) || acked.get(id).is_none_or(|a| a != cut));
            let cut = &self.run_cut;
            self.run_acked.retain(|id, _| cut.contains_key(id));
        }
        out
    }

    /// Connects if not connected: the servers in order, from the last that
    /// answered.
    fn connect(&mut self) -> Result<(), RedisError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let n = self.cluster.servers.len();
        let password = self.cluster.password.as_ref().map(|c| c.0.as_str());
        let mut last = None;
        for i in 0..n {
            let at = (self.preferred + i) % n;
            match Redis::connect(&self.cluster.servers[at], password, self.tls.as_ref(), self.cluster.timeout) {
                Ok(c) => {
                    self.preferred = at;
                    self.conn = Some(c);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| RedisError::Refused { command: "connect", reply: "no server configured".into() }))
    }

    /// The merger has hung up: one last push of everything; what does not
    /// go is kept for the next start.
    fn shutdown(&mut self) {
        // Push while Redis takes it (a backlog goes in several batches);
        // once at least, for what the runs counted since the last push.
        for i in 0..64 {
            if i > 0 && !self.has_pending() && self.inflight.is_none() {
                break;
            }
            let before = self.view.status.exchanges_ok;
            self.sync();
            if self.view.status.exchanges_ok == before {
                break;
            }
        }
        let mut cut = Vec::new();
        if self.inflight.is_none() {
            let runs = self.run_deltas(&self.runs.shared_runs(), unix_now().as_secs(), BATCH_MAX);
            if !runs.is_empty() {
                cut.push(self.cut(runs));
            }
        }
        while self.has_pending() {
            cut.push(self.cut(Vec::new()));
        }
        let left: Vec<&Batch> = self.carried.iter().chain(self.inflight.as_ref()).chain(&cut).collect();
        if left.is_empty() {
            return;
        }
        let counters: usize = left.iter().map(|b| b.len()).sum();
        match &self.carried_file {
            Some(path) => match write_carried(path, &left) {
                Ok(()) => tracing::warn!(
                    counters,
                    file = %path.display(),
                    "cluster tier: Redis did not take the last counts; kept to push at the next start"
                ),
                Err(e) => tracing::error!(counters, error = %e, "cluster tier: cannot keep the unpushed counts; they are lost to the cluster (the local ledger has them)"),
            },
            None => tracing::error!(
                counters,
                "cluster tier: Redis did not take the last counts and no ledger_file is set to keep them; they are lost to the cluster"
            ),
        }
    }
}

/// The runs to read at an exchange: those with a request within the last
/// hour, the latest first, at most [`RUN_READS_MAX`].
fn run_reads(shared: &[SharedRun], now_ms: u64) -> Vec<(usize, u64, u128)> {
    let mut recent: Vec<&SharedRun> =
        shared.iter().filter(|r| now_ms.saturating_sub(r.last_ms) < crate::runs::IDLE_MS).collect();
    recent.sort_unstable_by_key(|r| std::cmp::Reverse(r.last_ms));
    recent.into_iter().take(RUN_READS_MAX).map(|r| (r.at, r.tag, r.id)).collect()
}

/// Batches are kept as one JSON line per counter
/// (`{"e":epoch,"s":seq,"k":key,"v":amount,"x":expiry}`), per release
/// (`{"e":epoch,"s":seq,"h":hash,"f":id}`) and per run
/// (`{"e":epoch,"s":seq,"u":key,"c":cost,"t":tokens,"q":requests,"b":first request,"p":"parent","x":expiry}`).
fn write_carried(path: &PathBuf, batches: &[&Batch]) -> std::io::Result<()> {
    let mut text = bytes::BytesMut::new();
    for b in batches {
        for (k, v, x) in &b.keys {
            text.extend_from_slice(format!("{{\"e\":{},\"s\":{},\"k\":", b.epoch, b.seq).as_bytes());
            tollgate_protocol::openai::write_json_string(&mut text, k);
            text.extend_from_slice(format!(",\"v\":{v},\"x\":{x}}}\n").as_bytes());
        }
        for (h, id) in &b.releases {
            text.extend_from_slice(format!("{{\"e\":{},\"s\":{},\"h\":", b.epoch, b.seq).as_bytes());
            tollgate_protocol::openai::write_json_string(&mut text, h);
            text.extend_from_slice(b",\"f\":");
            tollgate_protocol::openai::write_json_string(&mut text, id);
            text.extend_from_slice(b"}\n");
        }
        for r in &b.runs {
            text.extend_from_slice(format!("{{\"e\":{},\"s\":{},\"u\":", b.epoch, b.seq).as_bytes());
            tollgate_protocol::openai::write_json_string(&mut text, &r.key);
            let Figures { cost, tokens, requests } = r.add;
            let (b, p, x) = (r.started_ms, r.parent, r.expires);
            text.extend_from_slice(
                format!(",\"c\":{cost},\"t\":{tokens},\"q\":{requests},\"b\":{b},\"p\":\"{p}\",\"x\":{x}}}\n")
                    .as_bytes(),
            );
        }
    }
    // Beside it under its whole name: `with_extension("tmp")` made a
    // ledger named `spend.tmp` this file's scratch, written over and
    // renamed away at shutdown (found by a review).
    let tmp = crate::beside(path, ".tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    fs::rename(tmp, path)
}

/// Reads carried batches back, in the order they were cut: each is pushed
/// under its own number, so one that had landed is skipped and the rest
/// count once.
fn read_carried(path: &PathBuf) -> Vec<Batch> {
    let Ok(text) = fs::read_to_string(path) else { return Vec::new() };
    let mut batches: std::collections::BTreeMap<(u64, u64), Batch> = std::collections::BTreeMap::new();
    for line in text.lines() {
        let mut bytes = line.as_bytes().to_vec();
        let Ok(v) = simd_json::to_borrowed_value(&mut bytes) else { continue };
        let Some(s) = v.get("s").and_then(|x| x.as_u64()) else { continue };
        let e = v.get("e").and_then(|x| x.as_u64()).unwrap_or(0);
        let batch = batches.entry((e, s)).or_insert_with(|| Batch { epoch: e, seq: s, ..Batch::default() });
        let str_of = |f: &str| v.get(f).and_then(|x| x.as_str()).map(str::to_string);
        let int_of = |f: &str| v.get(f).and_then(|x| x.as_u64());
        if let (Some(k), Some(n), Some(x)) = (str_of("k"), int_of("v"), int_of("x")) {
            batch.keys.push((k, n, x));
        } else if let (Some(h), Some(id)) = (str_of("h"), str_of("f")) {
            batch.releases.push((h, id));
        } else if let (Some(key), Some(x)) = (str_of("u"), int_of("x")) {
            let add = Figures {
                cost: int_of("c").unwrap_or(0),
                tokens: int_of("t").unwrap_or(0),
                requests: int_of("q").unwrap_or(0),
            };
            // The parent is a string of digits: 128 bits are past JSON's
            // integers.
            let parent = str_of("p").and_then(|p| p.parse::<u128>().ok()).unwrap_or(0);
            let started_ms = int_of("b").unwrap_or(0);
            batch.runs.push(RunPush { key, id: 0, add, started_ms, parent, expires: x });
        }
    }
    batches.into_values().collect()
}

#[cfg(test)]
mod tests;
