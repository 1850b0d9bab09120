//! Per-core counters and latency histograms, merged periodically.
//!
//! Each worker counts into its own [`CoreStats`] (a `RefCell`: one thread,
//! no atomics on the request path) and, every [`MERGE_EVERY`], hands the
//! delta to the merger thread over a channel. The merger folds deltas into
//! the process totals that the admin listener renders as Prometheus
//! metrics. The same channel and thread are where budget and rate-limit
//! totals will be merged and handed back to the cores.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::record::{End, Trace};
use crate::worker::CoreState;

/// How often a core hands its counts to the merger.
pub const MERGE_EVERY: Duration = Duration::from_millis(100);

/// Counts for one (team, model, status).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_micro_usd: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.cost_micro_usd += o.cost_micro_usd;
    }
}

/// Latency is recorded in microseconds, 1 µs to 1 hour.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static bounds")
}

/// What one core counted since its last hand-off. Keys are indexes into
/// the core's configuration (`usize::MAX`: none), resolved to names only at
/// hand-off.
pub struct CoreStats {
    /// By (team, model, provider that served, status).
    counts: RefCell<HashMap<(usize, usize, usize, u16), Counts>>,
    /// Spend since the last hand-off, by owner, so that a core's own recent
    /// spend counts before the merger has seen it.
    spend: RefCell<HashMap<Owner, u64>>,
    /// Requests admitted and tokens used in a UTC minute, unmerged, by owner.
    minute: RefCell<HashMap<Owner, MinuteUse>>,
    total: RefCell<Histogram<u64>>,
    upstream: RefCell<Histogram<u64>>,
    ttft: RefCell<Histogram<u64>>,
    gateway: RefCell<Histogram<u64>>,
    /// Guardrail hits by team, rule, action and direction.
    guard: RefCell<HashMap<GuardKey, u64>>,
    /// Budget soft thresholds passed, by owner.
    soft: RefCell<HashMap<Owner, u64>>,
    /// Strict reservations ended.
    released: RefCell<Vec<crate::cluster::Released>>,
}

type GuardKey =
    (usize, tollgate_policy::guard::Rule, tollgate_policy::guard::Action, tollgate_policy::guard::Direction);

/// A budget's daily and monthly limits.
pub type DayMonth = (Option<u64>, Option<u64>);

/// A guardrail hit count's labels: team, rule, action, direction.
pub type GuardLabels = (String, String, &'static str, &'static str);

impl Default for CoreStats {
    fn default() -> Self {
        CoreStats {
            counts: RefCell::new(HashMap::new()),
            spend: RefCell::new(HashMap::new()),
            minute: RefCell::new(HashMap::new()),
            total: RefCell::new(histogram()),
            upstream: RefCell::new(histogram()),
            ttft: RefCell::new(histogram()),
            gateway: RefCell::new(histogram()),
            guard: RefCell::new(HashMap::new()),
            soft: RefCell::new(HashMap::new()),
            released: RefCell::new(Vec::new()),
        }
    }
}

/// Who spends: a team or a key, by index into the core's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    Team(usize),
    Key(usize),
}

/// Requests and tokens in one UTC minute (minutes since 1970).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MinuteUse {
    pub minute: u64,
    pub requests: u64,
    pub tokens: u64,
}

impl MinuteUse {
    /// Adds `other`, starting over when it is for a later minute.
    fn add(&mut self, other: MinuteUse) {
        if other.minute > self.minute {
            *self = other;
        } else if other.minute == self.minute {
            self.requests += other.requests;
            self.tokens += other.tokens;
        }
    }

    /// The use in `minute` (zero if this is for another one).
    pub fn at(self, minute: u64) -> MinuteUse {
        if self.minute == minute {
            self
        } else {
            MinuteUse { minute, ..MinuteUse::default() }
        }
    }
}

/// An owner by name, stable across reloads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnerName {
    Team(String),
    Key(String),
}

impl OwnerName {
    /// Its kind and name: (`team` or `key`, the name), as metric labels,
    /// ledger lines and cluster keys spell them.
    pub fn label(&self) -> (&'static str, &str) {
        match self {
            OwnerName::Team(t) => ("team", t),
            OwnerName::Key(k) => ("key", k),
        }
    }
}

/// A core's counts with names, as the merger receives them.
pub struct Delta {
    pub worker: usize,
    pub counts: Vec<(String, String, String, u16, Counts)>,
    pub spend: Vec<(OwnerName, u64)>,
    pub minute: Vec<(OwnerName, MinuteUse)>,
    pub total: Histogram<u64>,
    pub upstream: Histogram<u64>,
    pub ttft: Histogram<u64>,
    pub gateway: Histogram<u64>,
    pub connections: u64,
    pub in_flight: u64,
    pub guard: Vec<(GuardLabels, u64)>,
    pub soft: Vec<(OwnerName, u64)>,
    /// This core's circuit breakers: (model, provider, upstream model) and
    /// state (0 closed, 1 open, 2 half-open).
    pub breakers: Vec<((String, String, String), u8)>,
    /// Budget limits by owner (day, month), from this core's configuration.
    /// Only in the first hand-off under a configuration: limits change
    /// with reloads, not every 100 ms.
    pub limits: Option<Vec<(OwnerName, DayMonth)>>,
    /// Owners under a budget or rate limit, whose cluster totals the node
    /// reads; sent with `limits`.
    pub watch: Option<Vec<OwnerName>>,
    /// Strict reservations ended (pushed to the cluster; nothing else).
    pub released: Vec<crate::cluster::Released>,
}

impl CoreStats {
    /// Counts a finished request (the same facts as its record).
    pub fn count(&self, trace: &Trace<'_>, state: &CoreState) {
        let team = trace.key.map_or(usize::MAX, |k| k.team);
        let model = trace.route.unwrap_or(usize::MAX);
        let mut c = Counts { requests: 1, ..Counts::default() };
        if let Some(u) = trace.usage {
            c.tokens_in = u.prompt;
            c.tokens_out = u.completion;
        }
        c.cost_micro_usd = trace.cost(state).unwrap_or(0);
        let provider = trace
            .served_by
            .and_then(|t| state.config.routes.all().get(model)?.targets.get(t as usize))
            .map_or(usize::MAX, |t| t.provider);
        self.counts.borrow_mut().entry((team, model, provider, trace.status)).or_default().add(&c);
        if let (Some(k), Some(u)) = (trace.key, trace.usage) {
            // Tokens count against the minute the request started in.
            let minute = trace.started_unix_ms / 60_000;
            let mut m = self.minute.borrow_mut();
            for owner in [Owner::Team(k.team), Owner::Key(k.index)] {
                m.entry(owner).or_default().add(MinuteUse { minute, requests: 0, tokens: u.prompt + u.completion });
            }
        }
        if c.cost_micro_usd > 0 {
            let mut spend = self.spend.borrow_mut();
            if let Some(k) = trace.key {
                *spend.entry(Owner::Team(k.team)).or_default() += c.cost_micro_usd;
                *spend.entry(Owner::Key(k.index)).or_default() += c.cost_micro_usd;
            }
        }
        if !trace.guard_hits.is_empty() {
            let mut g = self.guard.borrow_mut();
            for r in &trace.guard_hits {
                *g.entry((team, r.hit.rule, r.hit.action, r.direction)).or_default() += 1;
            }
        }
        let micros = trace.started.elapsed().as_micros() as u64;
        self.total.borrow_mut().saturating_record(micros.max(1));
        if trace.served_by.is_some() && trace.end != End::Rejected {
            self.upstream.borrow_mut().saturating_record((trace.upstream_micros as u64).max(1));
        }
        if let Some(first) = trace.first_byte_micros {
            self.ttft.borrow_mut().saturating_record((first as u64).max(1));
        }
        if let Some(added) = trace.gateway_micros() {
            self.gateway.borrow_mut().saturating_record((added as u64).max(1));
        }
    }

    /// A strict reservation ended: it is released in the same hand-off as
    /// the request's spend (counted just before).
    pub fn release(&self, r: crate::cluster::Released) {
        self.released.borrow_mut().push(r);
    }

    /// Counts a budget's soft threshold passed.
    pub fn soft_threshold(&self, owner: Owner) {
        *self.soft.borrow_mut().entry(owner).or_default() += 1;
    }

    /// Counts an admitted request against its team's and key's minute.
    pub fn admit(&self, key: &tollgate_policy::VirtualKey, minute: u64) {
        let mut m = self.minute.borrow_mut();
        for owner in [Owner::Team(key.team), Owner::Key(key.index)] {
            m.entry(owner).or_default().add(MinuteUse { minute, requests: 1, tokens: 0 });
        }
    }

    /// This core's unmerged use of `minute`.
    pub fn unmerged_minute(&self, owner: Owner, minute: u64) -> MinuteUse {
        self.minute.borrow().get(&owner).copied().unwrap_or_default().at(minute)
    }

    /// Spend not yet handed to the merger.
    pub fn unmerged(&self, owner: Owner) -> u64 {
        self.spend.borrow().get(&owner).copied().unwrap_or(0)
    }

    /// Takes the counts so far, with names from `state`; with `limits`,
    /// the budget limits of `state`'s configuration too.
    pub fn take(&self, worker: usize, state: &CoreState, connections: usize, in_flight: usize, limits: bool) -> Delta {
        let config = &state.config;
        let name = |i: usize, names: &dyn Fn(usize) -> Option<String>| names(i).unwrap_or_else(|| "-".to_string());
        let team = |i: usize| config.teams.get(i).map(|t| t.name.clone());
        let model = |i: usize| config.routes.all().get(i).map(|r| r.name.clone());
        let provider = |i: usize| config.providers.get(i).map(|p| p.name.clone());
        let counts = self
            .counts
            .borrow_mut()
            .drain()
            .map(|((t, m, p, s), c)| (name(t, &team), name(m, &model), name(p, &provider), s, c))
            .collect();
        let spend = self
            .spend
            .borrow_mut()
            .drain()
            .filter_map(|(owner, micro)| {
                let name = match owner {
                    Owner::Team(i) => OwnerName::Team(config.teams.get(i)?.name.clone()),
                    Owner::Key(i) => OwnerName::Key(config.keys.all().get(i)?.name.clone()),
                };
                Some((name, micro))
            })
            .collect();
        let owner_name = |owner: Owner| match owner {
            Owner::Team(i) => Some(OwnerName::Team(config.teams.get(i)?.name.clone())),
            Owner::Key(i) => Some(OwnerName::Key(config.keys.all().get(i)?.name.clone())),
        };
        let minute = self.minute.borrow_mut().drain().filter_map(|(o, u)| Some((owner_name(o)?, u))).collect();
        let soft = self.soft.borrow_mut().drain().filter_map(|(o, n)| Some((owner_name(o)?, n))).collect();
        let released = std::mem::take(&mut *self.released.borrow_mut());
        let take = |h: &RefCell<Histogram<u64>>| std::mem::replace(&mut *h.borrow_mut(), histogram());
        let guard = self
            .guard
            .borrow_mut()
            .drain()
            .map(|((t, rule, action, direction), n)| {
                let direction = match direction {
                    tollgate_policy::guard::Direction::Request => "request",
                    tollgate_policy::guard::Direction::Response => "response",
                };
                ((name(t, &team), rule.to_string(), action.as_str(), direction), n)
            })
            .collect();
        let now = std::time::Instant::now();
        let mut breakers = Vec::new();
        for (route, bs) in config.routes.all().iter().zip(&state.breakers) {
            for (t, b) in route.targets.iter().zip(bs) {
                let provider = config.providers.get(t.provider).map_or_else(String::new, |p| p.name.clone());
                let s = match b.state(now) {
                    crate::proxy::fallback::BreakerState::Closed => 0,
                    crate::proxy::fallback::BreakerState::Open => 1,
                    crate::proxy::fallback::BreakerState::HalfOpen => 2,
                };
                breakers.push(((route.name.clone(), provider, t.upstream_model.clone()), s));
            }
        }
        let limited = |b: &tollgate_policy::team::Budget| b.daily.is_some() || b.monthly.is_some();
        let limits = limits.then(|| {
            config
                .teams
                .iter()
                .filter(|t| limited(&t.budget))
                .map(|t| (OwnerName::Team(t.name.clone()), (t.budget.daily, t.budget.monthly)))
                .chain(
                    config
                        .keys
                        .all()
                        .iter()
                        .filter(|k| limited(&k.budget))
                        .map(|k| (OwnerName::Key(k.name.clone()), (k.budget.daily, k.budget.monthly))),
                )
                .collect()
        });
        Delta {
            worker,
            breakers,
            watch: limits.as_ref().map(|_| crate::cluster::watched(config)),
            limits,
            counts,
            spend,
            minute,
            total: take(&self.total),
            upstream: take(&self.upstream),
            ttft: take(&self.ttft),
            gateway: take(&self.gateway),
            connections: connections as u64,
            in_flight: in_flight as u64,
            guard,
            soft,
            released,
        }
    }
}

/// Spend by owner in the current UTC day and month, as the merger sends it
/// to every core.
#[derive(Debug, Default)]
pub struct SpendSnapshot {
    /// Day number (days since 1970-01-01) the day figures are for.
    pub day: u64,
    /// (year, month) the month figures are for.
    pub month: (i64, u32),
    pub by_owner: HashMap<OwnerName, (u64, u64)>,
    /// Requests and tokens in the latest minute seen, by owner.
    pub minute: HashMap<OwnerName, MinuteUse>,
    /// The cluster tier is degraded and fails closed: requests under a
    /// budget or rate limit are refused.
    pub cluster_refusing: bool,
    /// The cluster tier is degraded (its totals are older than `stale_after`).
    pub cluster_degraded: bool,
}

/// The process totals the merger keeps.
pub struct Totals {
    pub counts: BTreeMap<(String, String, String, u16), Counts>,
    pub spend: SpendSnapshot,
    pub total: Histogram<u64>,
    pub upstream: Histogram<u64>,
    pub ttft: Histogram<u64>,
    pub gateway: Histogram<u64>,
    pub workers: BTreeMap<usize, (u64, u64)>,
    pub guard: BTreeMap<GuardLabels, u64>,
    pub soft: BTreeMap<OwnerName, u64>,
    /// By (model, provider, upstream model, worker).
    pub breakers: BTreeMap<(String, String, String, usize), u8>,
    pub limits: BTreeMap<OwnerName, DayMonth>,
    /// How the node stands with the cluster tier, when there is one.
    pub cluster: Option<crate::cluster::ClusterStatus>,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            counts: BTreeMap::new(),
            spend: SpendSnapshot::default(),
            total: histogram(),
            upstream: histogram(),
            ttft: histogram(),
            gateway: histogram(),
            workers: BTreeMap::new(),
            guard: BTreeMap::new(),
            soft: BTreeMap::new(),
            breakers: BTreeMap::new(),
            limits: BTreeMap::new(),
            cluster: None,
        }
    }
}

impl Totals {
    /// Folds a core's delta in. `now` (Unix seconds) decides the windows:
    /// a new UTC day or month starts its figures from zero.
    pub fn merge(&mut self, d: Delta, now: u64) {
        let day = tollgate_policy::budget::day_number(now);
        let month = tollgate_policy::budget::year_month(day);
        let sp = &mut self.spend;
        if sp.day != day || sp.month != month {
            for v in sp.by_owner.values_mut() {
                if sp.day != day {
                    v.0 = 0;
                }
                if sp.month != month {
                    v.1 = 0;
                }
            }
            sp.day = day;
            sp.month = month;
        }
        for (owner, micro) in d.spend {
            let v = sp.by_owner.entry(owner).or_default();
            v.0 += micro;
            v.1 += micro;
        }
        for (owner, use_) in d.minute {
            sp.minute.entry(owner).or_default().add(use_);
        }
        for (team, model, provider, status, c) in d.counts {
            self.counts.entry((team, model, provider, status)).or_default().add(&c);
        }
        let _ = self.total.add(&d.total);
        let _ = self.upstream.add(&d.upstream);
        let _ = self.ttft.add(&d.ttft);
        let _ = self.gateway.add(&d.gateway);
        self.workers.insert(d.worker, (d.connections, d.in_flight));
        for (k, n) in d.guard {
            *self.guard.entry(k).or_default() += n;
        }
        for (k, n) in d.soft {
            *self.soft.entry(k).or_default() += n;
        }
        // A core's breakers and limits are as of its configuration now:
        // targets and budgets a reload removed go away.
        self.breakers.retain(|k, _| k.3 != d.worker);
        for ((model, provider, target), s) in d.breakers {
            self.breakers.insert((model, provider, target, d.worker), s);
        }
        if let Some(limits) = d.limits {
            if d.worker == 0 || self.limits.is_empty() {
                self.limits = limits.into_iter().collect();
            }
        }
    }

    /// The live dashboard's numbers (`GET /admin/stats`): totals, by team,
    /// latency percentiles and guardrail hits, as one JSON object.
    pub fn dashboard_json(&self, now_ms: u64) -> String {
        let mut out = bytes::BytesMut::new();
        let mut teams: BTreeMap<&str, (Counts, u64)> = BTreeMap::new();
        let (mut requests, mut errors, mut cost) = (0, 0, 0);
        for ((team, _, _, status), c) in &self.counts {
            let t = teams.entry(team).or_default();
            t.0.add(c);
            if *status >= 400 {
                t.1 += c.requests;
                errors += c.requests;
            }
            requests += c.requests;
            cost += c.cost_micro_usd;
        }
        let ms = |q: f64| {
            if self.total.is_empty() {
                0.0
            } else {
                self.total.value_at_quantile(q) as f64 / 1000.0
            }
        };
        let in_flight: u64 = self.workers.values().map(|(_, f)| f).sum();
        out.extend_from_slice(
            format!(
                "{{\"ts_ms\":{now_ms},\"requests\":{requests},\"errors\":{errors},\"cost_usd\":{},\"latency_ms\":{{\"p50\":{:.3},\"p95\":{:.3},\"p99\":{:.3}}},\"in_flight\":{in_flight},\"teams\":[",
                cost as f64 / 1e6,
                ms(0.50),
                ms(0.95),
                ms(0.99)
            )
            .as_bytes(),
        );
        for (i, (team, (c, errors))) in teams.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b",");
            }
            out.extend_from_slice(b"{\"team\":");
            tollgate_protocol::openai::write_json_string(&mut out, team);
            out.extend_from_slice(
                format!(
                    ",\"requests\":{},\"errors\":{errors},\"tokens_in\":{},\"tokens_out\":{},\"cost_usd\":{}}}",
                    c.requests,
                    c.tokens_in,
                    c.tokens_out,
                    c.cost_micro_usd as f64 / 1e6
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(b"],\"guardrails\":[");
        let mut hits: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for ((_, rule, action, _), n) in &self.guard {
            *hits.entry((rule, action)).or_default() += n;
        }
        for (i, ((rule, action), n)) in hits.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b",");
            }
            out.extend_from_slice(format!("{{\"rule\":\"{rule}\",\"action\":\"{action}\",\"hits\":{n}}}").as_bytes());
        }
        out.extend_from_slice(b"]}");
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        out.push_str("# HELP tollgate_requests_total Requests answered, by team, model, provider and status.\n# TYPE tollgate_requests_total counter\n");
        for ((team, model, provider, status), c) in &self.counts {
            let _ = writeln!(
                out,
                "tollgate_requests_total{{team=\"{}\",model=\"{}\",provider=\"{}\",status=\"{status}\"}} {}",
                label(team),
                label(model),
                label(provider),
                c.requests
            );
        }
        let mut by_tm: BTreeMap<(&str, &str, &str), Counts> = BTreeMap::new();
        for ((team, model, provider, _), c) in &self.counts {
            by_tm.entry((team, model, provider)).or_default().add(c);
        }
        out.push_str("# HELP tollgate_tokens_total Tokens as providers reported them, by team, model and direction.\n# TYPE tollgate_tokens_total counter\n");
        for ((team, model, provider), c) in &by_tm {
            for (direction, n) in [("in", c.tokens_in), ("out", c.tokens_out)] {
                let _ = writeln!(
                    out,
                    "tollgate_tokens_total{{team=\"{}\",model=\"{}\",provider=\"{}\",direction=\"{direction}\"}} {n}",
                    label(team),
                    label(model),
                    label(provider)
                );
            }
        }
        out.push_str("# HELP tollgate_cost_usd_total Cost at configured prices, by team and model.\n# TYPE tollgate_cost_usd_total counter\n");
        for ((team, model, provider), c) in &by_tm {
            let _ = writeln!(
                out,
                "tollgate_cost_usd_total{{team=\"{}\",model=\"{}\",provider=\"{}\"}} {}",
                label(team),
                label(model),
                label(provider),
                c.cost_micro_usd as f64 / 1e6
            );
        }
        out.push_str("# HELP tollgate_budget_soft_threshold_total Budget soft thresholds passed (once per owner, day and core).\n# TYPE tollgate_budget_soft_threshold_total counter\n");
        for (owner, n) in &self.soft {
            let (kind, name) = owner.label();
            let _ = writeln!(out, "tollgate_budget_soft_threshold_total{{{kind}=\"{}\"}} {n}", label(name));
        }
        // Each family's samples follow its own TYPE line.
        for (family, help, spent_not_limit) in [
            ("tollgate_budget_spent_usd", "Spend in the current UTC day and month, by owner.", true),
            ("tollgate_budget_limit_usd", "Hard budget limits, by owner.", false),
        ] {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} gauge");
            for (owner, (day, month)) in &self.limits {
                let (kind, name) = owner.label();
                let (spent_day, spent_month) = self.spend.by_owner.get(owner).copied().unwrap_or((0, 0));
                for (window, limit, spent) in [("day", day, spent_day), ("month", month, spent_month)] {
                    if let Some(limit) = limit {
                        let value = if spent_not_limit { spent } else { *limit };
                        let _ = writeln!(
                            out,
                            "{family}{{{kind}=\"{}\",window=\"{window}\"}} {}",
                            label(name),
                            value as f64 / 1e6
                        );
                    }
                }
            }
        }
        out.push_str("# HELP tollgate_breaker_state Circuit breaker per target and worker: 0 closed, 1 open, 2 half-open.\n# TYPE tollgate_breaker_state gauge\n");
        for ((model, provider, target, worker), s) in &self.breakers {
            let _ = writeln!(
                out,
                "tollgate_breaker_state{{model=\"{}\",provider=\"{}\",target=\"{}\",worker=\"{worker}\"}} {s}",
                label(model),
                label(provider),
                label(target)
            );
        }
        out.push_str("# HELP tollgate_guardrail_hits_total Guardrail hits, by team, rule, action and direction.\n# TYPE tollgate_guardrail_hits_total counter\n");
        for ((team, rule, action, direction), n) in &self.guard {
            let _ = writeln!(
                out,
                "tollgate_guardrail_hits_total{{team=\"{}\",rule=\"{rule}\",action=\"{action}\",in=\"{direction}\"}} {n}",
                label(team)
            );
        }
        if let Some(c) = &self.cluster {
            let node = label(&c.node_id);
            let now_ms = crate::unix_now().as_millis() as u64;
            let age = c.last_sync_unix_ms.map_or(-1.0, |t| now_ms.saturating_sub(t) as f64 / 1000.0);
            let _ = write!(
                out,
                "# HELP tollgate_cluster_degraded 1 when the cluster tier has had no good exchange with Redis for stale_after_ms.\n# TYPE tollgate_cluster_degraded gauge\ntollgate_cluster_degraded{{node=\"{node}\"}} {}\n\
                 # HELP tollgate_cluster_sync_age_seconds Age of the cluster totals this node enforces (-1: never synced).\n# TYPE tollgate_cluster_sync_age_seconds gauge\ntollgate_cluster_sync_age_seconds{{node=\"{node}\"}} {age}\n\
                 # HELP tollgate_cluster_exchanges_total Push-and-read exchanges with Redis, by result.\n# TYPE tollgate_cluster_exchanges_total counter\ntollgate_cluster_exchanges_total{{node=\"{node}\",result=\"ok\"}} {}\ntollgate_cluster_exchanges_total{{node=\"{node}\",result=\"failed\"}} {}\n\
                 # HELP tollgate_cluster_unpushed_counters Counters gathered and not yet acknowledged by Redis.\n# TYPE tollgate_cluster_unpushed_counters gauge\ntollgate_cluster_unpushed_counters{{node=\"{node}\"}} {}\n",
                u8::from(c.degraded),
                c.exchanges_ok,
                c.exchanges_failed,
                c.unpushed
            );
        }
        histogram_text(
            &mut out,
            "tollgate_request_duration_seconds",
            "Time from request head to the end of the answer.",
            &self.total,
        );
        histogram_text(
            &mut out,
            "tollgate_upstream_duration_seconds",
            "Time from sending upstream to the answer's head.",
            &self.upstream,
        );
        histogram_text(
            &mut out,
            "tollgate_time_to_first_byte_seconds",
            "Time from the request's head to the answer's first bytes on the client's socket (first token, for streams).",
            &self.ttft,
        );
        histogram_text(
            &mut out,
            "tollgate_gateway_added_seconds",
            "Time the gateway added before the client's first byte: time to first byte less the upstream's time to its answer's head.",
            &self.gateway,
        );
        out.push_str("# HELP tollgate_worker_connections Open client connections per worker.\n# TYPE tollgate_worker_connections gauge\n");
        for (w, (c, _)) in &self.workers {
            let _ = writeln!(out, "tollgate_worker_connections{{worker=\"{w}\"}} {c}");
        }
        out.push_str(
            "# HELP tollgate_worker_in_flight Requests in flight per worker.\n# TYPE tollgate_worker_in_flight gauge\n",
        );
        for (w, (_, f)) in &self.workers {
            let _ = writeln!(out, "tollgate_worker_in_flight{{worker=\"{w}\"}} {f}");
        }
        out
    }
}

/// Bucket bounds in seconds: from 250 µs to 60 s.
const BUCKETS: &[f64] =
    &[0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

fn histogram_text(out: &mut String, name: &str, help: &str, h: &Histogram<u64>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for le in BUCKETS {
        let count = h.count_between(0, (le * 1e6) as u64);
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.len());
    let sum: f64 =
        h.iter_recorded().map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64).sum::<f64>() / 1e6;
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {}", h.len());
}

/// A started merger: the workers' sender, the totals the admin listener
/// reads, and the thread (joined at shutdown so the ledger is synced and
/// the cluster tier has had its last push).
pub type Merger = (mpsc::Sender<Delta>, Arc<Mutex<Totals>>, std::thread::JoinHandle<()>);

/// How often the merger looks for news from the cluster thread when no
/// core has sent a delta.
const CLUSTER_POLL: Duration = Duration::from_millis(20);

/// Starts the merger thread; returns the workers' sender and the totals the
/// admin listener reads. After each delta the merger sends every core the
/// current spend (`cores`), which the cores enforce budgets against. With a
/// cluster tier, it forwards every increment to the cluster thread and
/// folds the cluster totals it gets back into what the cores enforce.
pub fn start_merger(
    cores: Vec<mpsc::Sender<Arc<SpendSnapshot>>>,
    ledger_file: Option<std::path::PathBuf>,
    cluster: Option<crate::cluster::Handle>,
) -> std::io::Result<Merger> {
    use crate::cluster::{combine, increments, ClusterView, Counter, ToCluster};
    let unix = || crate::unix_now().as_secs();
    let mut initial = Totals::default();
    // Spend survives restarts: replayed before any worker answers.
    let mut ledger = match ledger_file {
        Some(path) => Some(crate::ledger::Ledger::open(path, unix(), &mut initial.spend)?),
        None => None,
    };
    // This process's increments since start, by counter: the cluster's
    // view says how much of each its totals already include.
    let mut local: HashMap<Counter, u64> = HashMap::new();
    let mut view: Option<ClusterView> = None;
    if let Some(c) = &cluster {
        // The first exchange is under way; waiting for it (bounded by the
        // thread's own time-outs) means a restarted node enforces the
        // cluster's totals from its first request.
        view = c.views.recv_timeout(Duration::from_secs(5)).ok();
        initial.cluster = view.as_ref().map(|v| v.status.clone());
    }
    let snapshot_of = |t: &Totals, local: &HashMap<Counter, u64>, view: &Option<ClusterView>| {
        let mut s = SpendSnapshot {
            day: t.spend.day,
            month: t.spend.month,
            by_owner: t.spend.by_owner.clone(),
            minute: t.spend.minute.clone(),
            cluster_refusing: false,
            cluster_degraded: false,
        };
        if let Some(v) = view {
            combine(&mut s, local, v);
            s.cluster_refusing = v.status.refusing();
            s.cluster_degraded = v.status.degraded;
        }
        Arc::new(s)
    };
    let first = snapshot_of(&initial, &local, &view);
    for core in &cores {
        let _ = core.send(first.clone());
    }
    let totals = Arc::new(Mutex::new(initial));
    let (tx, rx) = mpsc::channel::<Delta>();
    let shared = totals.clone();
    let handle = std::thread::Builder::new().name("tollgate-merger".into()).spawn(move || {
        // A panic elsewhere with the lock held leaves totals that are still
        // counts: keep using them.
        let lock = || shared.lock().unwrap_or_else(|e| e.into_inner());
        let (cluster_tx, views, cluster_thread, stale_after) = match cluster {
            Some(h) => (Some(h.tx), Some(h.views), Some(h.thread), h.stale_after),
            None => (None, None, None, Duration::MAX),
        };
        let poll = if views.is_some() { CLUSTER_POLL } else { Duration::from_secs(3600) };
        loop {
            let delta = match rx.recv_timeout(poll) {
                Ok(d) => Some(d),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let now = unix();
            let mut changed = false;
            if let Some(mut delta) = delta {
                if let Some(l) = ledger.as_mut() {
                    if !delta.spend.is_empty() {
                        l.append(now, &delta.spend);
                    }
                }
                changed = !delta.spend.is_empty() || !delta.minute.is_empty();
                if let Some(ctx) = &cluster_tx {
                    if let Some(w) = delta.watch.take() {
                        let _ = ctx.send(ToCluster::Watch(w));
                    }
                    let adds = increments(&delta.spend, &delta.minute, now);
                    if !adds.is_empty() || !delta.released.is_empty() {
                        for (c, v) in &adds {
                            *local.entry(c.clone()).or_default() += v;
                        }
                        let _ = ctx.send(ToCluster::Add(adds, std::mem::take(&mut delta.released)));
                    }
                }
                lock().merge(delta, now);
            }
            if let Some(vs) = &views {
                if let Some(v) = vs.try_iter().last() {
                    lock().cluster = Some(v.status.clone());
                    view = Some(v);
                    changed = true;
                    local.retain(|(_, w), _| !w.is_past(now));
                }
            }
            // A view that stopped coming is stale by its age.
            if let Some(v) = view.as_mut() {
                let now_ms = crate::unix_now().as_millis() as u64;
                let old = v
                    .status
                    .last_sync_unix_ms
                    .is_none_or(|t| Duration::from_millis(now_ms.saturating_sub(t)) >= stale_after);
                if old && !v.status.degraded {
                    v.status.degraded = true;
                    lock().cluster = Some(v.status.clone());
                    changed = true;
                }
            }
            if changed {
                let s = snapshot_of(&lock(), &local, &view);
                for core in &cores {
                    let _ = core.send(s.clone());
                }
            }
        }
        // Every worker has hung up: the cluster thread makes its last push,
        // and the ledger syncs as it drops.
        drop(cluster_tx);
        if let Some(t) = cluster_thread {
            let _ = t.join();
        }
        drop(ledger);
    })?;
    Ok((tx, totals, handle))
}
