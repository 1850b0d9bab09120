//! What one core counts for the metrics: requests, tokens and cost by
//! (team, model, provider, status), latency histograms, guardrail hits and
//! soft budget thresholds, in `RefCell`s (one thread, no atomics), taken as
//! a [`Delta`] with names resolved at each hand-off.

use std::cell::RefCell;
// Keyed by the gateway's own indices: Fx hashing, not SipHash.
use rustc_hash::FxHashMap as HashMap;

use hdrhistogram::Histogram;
use tollgate_policy::Config;

use crate::accounts::{HandOff, MinuteUse, Owner, OwnerName, Released};
use crate::record::{End, Trace};

/// Counts for one (team, model, status).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Prompt tokens the provider read from its prompt cache (a part of
    /// `tokens_in`).
    pub tokens_cached: u64,
    pub cost_micro_usd: u64,
    /// Answer cache lookups that hit and missed, and what the hits saved.
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub saved_micro_usd: u64,
}

impl Counts {
    pub(super) fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.tokens_cached += o.tokens_cached;
        self.cost_micro_usd += o.cost_micro_usd;
        self.cache_hits += o.cache_hits;
        self.cache_misses += o.cache_misses;
        self.saved_micro_usd += o.saved_micro_usd;
    }
}

/// Latency is recorded in microseconds, 1 µs to 1 hour.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static bounds")
}

/// What one core counted since its last hand-off. Keys are indexes into
/// the core's configuration (`usize::MAX`: none), resolved to names only at
/// hand-off.
pub struct CoreStats {
    /// By (team, model, provider that served, status).
    counts: RefCell<HashMap<(usize, usize, usize, u16), Counts>>,
    total: RefCell<Histogram<u64>>,
    upstream: RefCell<Histogram<u64>>,
    ttft: RefCell<Histogram<u64>>,
    gateway: RefCell<Histogram<u64>>,
    /// Guardrail hits by team, rule, action and direction.
    guard: RefCell<HashMap<GuardKey, u64>>,
    /// Budget soft thresholds passed, by owner.
    soft: RefCell<HashMap<Owner, u64>>,
    /// Accepts that failed (out of descriptors, most likely).
    accept_errors: std::cell::Cell<u64>,
    /// The dashboard's history: by (team, key, model, provider).
    series: RefCell<HashMap<(usize, usize, usize, usize), super::series::Point>>,
}

/// By team, rule, action and direction.
type GuardKey = (usize, RuleLabel, tollgate_policy::guard::Action, tollgate_policy::guard::Direction);

/// A guardrail rule as its hits are counted: by its id, but a classifier
/// by its name, as records name it (`record::rule_name`). By its index,
/// a reload that reordered a profile's classifiers added one's hits to
/// another's under the same label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum RuleLabel {
    Id(tollgate_policy::guard::Rule),
    Named(String),
}

/// A budget's daily and monthly limits.
pub type DayMonth = (Option<u64>, Option<u64>);

/// A guardrail hit count's labels: team, rule, action, direction.
pub type GuardLabels = (String, String, &'static str, &'static str);

impl Default for CoreStats {
    fn default() -> Self {
        CoreStats {
            counts: RefCell::new(HashMap::default()),
            total: RefCell::new(histogram()),
            upstream: RefCell::new(histogram()),
            ttft: RefCell::new(histogram()),
            gateway: RefCell::new(histogram()),
            guard: RefCell::new(HashMap::default()),
            soft: RefCell::new(HashMap::default()),
            accept_errors: std::cell::Cell::new(0),
            series: RefCell::new(HashMap::default()),
        }
    }
}

/// A core's counts with names, as the merger receives them.
pub struct Delta {
    pub worker: usize,
    /// The core's hand-off number ([`HandOff::seq`]).
    pub seq: u64,
    pub counts: Vec<(String, String, String, u16, Counts)>,
    pub spend: Vec<(OwnerName, u64)>,
    pub minute: Vec<(OwnerName, MinuteUse)>,
    pub total: Histogram<u64>,
    pub upstream: Histogram<u64>,
    pub ttft: Histogram<u64>,
    pub gateway: Histogram<u64>,
    pub connections: u64,
    pub in_flight: u64,
    /// The core's answer cache (sizes now, counts since start).
    pub cache: crate::cache::StoreCounts,
    pub guard: Vec<(GuardLabels, u64)>,
    pub soft: Vec<(OwnerName, u64)>,
    pub accept_errors: u64,
    /// The history's points since the last hand-off, by (team, key, model,
    /// provider).
    pub series: Vec<(super::series::Labels, super::series::Point)>,
    /// This core's circuit breakers: (model, provider, upstream model) and
    /// state (0 closed, 1 open, 2 half-open).
    pub breakers: Vec<((String, String, String), u8)>,
    /// Budget limits by owner (day, month), from this core's configuration.
    /// Only in the first hand-off under a configuration: limits change
    /// with reloads, not every 100 ms.
    pub limits: Option<Vec<(OwnerName, DayMonth)>>,
    /// Rate limits by owner (requests, tokens per minute), sent with
    /// `limits`.
    pub rates: Option<Vec<(OwnerName, DayMonth)>>,
    /// Owners under a budget or rate limit, whose cluster totals the node
    /// reads; sent with `limits`.
    pub watch: Option<Vec<OwnerName>>,
    /// Strict reservations ended (pushed to the cluster; nothing else).
    pub released: Vec<Released>,
}

/// What a core says about itself in a hand-off besides its counts.
pub struct CoreFigures {
    pub worker: usize,
    pub connections: usize,
    pub in_flight: usize,
    /// Its circuit breakers: (model, provider, upstream model) and state
    /// (0 closed, 1 open, 2 half-open).
    pub breakers: Vec<((String, String, String), u8)>,
    /// Its answer cache's size and counts since start.
    pub cache: crate::cache::StoreCounts,
}

/// Indexes into `old` (team, key, model, provider) as the same names'
/// indexes in `new`; `usize::MAX` (none) for one `new` lacks.
fn renamed(old: &Config, new: &Config, (team, key, model, provider): Ids) -> Ids {
    fn find<T>(all: &[T], i: usize, in_new: &[T], name: impl Fn(&T) -> &str) -> usize {
        all.get(i).and_then(|x| in_new.iter().position(|y| name(y) == name(x))).unwrap_or(usize::MAX)
    }
    (
        find(&old.teams, team, &new.teams, |t| &t.name),
        find(old.keys.all(), key, new.keys.all(), |k| &k.name),
        find(old.routes.all(), model, new.routes.all(), |r| &r.name),
        find(&old.providers, provider, &new.providers, |p| &p.name),
    )
}

/// A count's indexes: team, key, model, provider.
type Ids = (usize, usize, usize, usize);

impl CoreStats {
    /// Counts a finished request (the same facts as its record), `cost` its
    /// cost in micro-dollars.
    ///
    /// `config` is the configuration the request ran under; `now`, when a
    /// reload has replaced it since, the core's current one. Counts are
    /// kept by index and named at hand-off with the configuration then, so
    /// the request's indexes are first moved to `now`'s by name: counted by
    /// its own, a request that ran across a reload that reordered teams was
    /// counted as another team's in the metrics, the dashboard and the
    /// guardrail counters. One the reload removed is counted under none
    /// (`-`); its record keeps its names.
    pub fn count(&self, trace: &Trace<'_>, config: &Config, now: Option<&Config>, cost: u64) {
        let team = trace.key.map_or(usize::MAX, |k| k.team);
        let model = trace.route.unwrap_or(usize::MAX);
        let mut c = Counts { requests: 1, cost_micro_usd: cost, ..Counts::default() };
        if let Some(u) = trace.usage {
            c.tokens_in = u.prompt;
            c.tokens_cached = u.cached;
            c.tokens_out = u.completion;
        }
        if let Some(cached) = trace.cache {
            if cached.hit {
                c.cache_hits = 1;
                c.saved_micro_usd = cached.saved_micro_usd;
            } else {
                c.cache_misses = 1;
            }
        }
        let provider = trace
            .served_by
            .and_then(|t| config.routes.all().get(model)?.targets.get(t as usize))
            .map_or(usize::MAX, |t| t.provider);
        let key = trace.key.map_or(usize::MAX, |k| k.index);
        let (team, key, model, provider) = match now {
            Some(now) => renamed(config, now, (team, key, model, provider)),
            None => (team, key, model, provider),
        };
        self.counts.borrow_mut().entry((team, model, provider, trace.status)).or_default().add(&c);
        if !trace.guard_hits.is_empty() {
            let mut g = self.guard.borrow_mut();
            // A run of hits of one rule (a prompt's dozen addresses) is
            // counted once into the map: one hash and probe a run, not a
            // hit.
            let mut run: Option<(GuardKey, u64)> = None;
            for r in &trace.guard_hits {
                let rule = match r.hit.rule {
                    tollgate_policy::guard::Rule::Classifier(_) => {
                        RuleLabel::Named(crate::record::rule_name(trace, config, r.hit.rule).into_owned())
                    }
                    rule => RuleLabel::Id(rule),
                };
                let key = (team, rule, r.hit.action, r.direction);
                match &mut run {
                    Some((k, n)) if *k == key => *n += 1,
                    _ => {
                        if let Some((k, n)) = run.replace((key, 1)) {
                            *g.entry(k).or_default() += n;
                        }
                    }
                }
            }
            if let Some((k, n)) = run {
                *g.entry(k).or_default() += n;
            }
        }
        let micros = trace.started.elapsed().as_micros() as u64;
        {
            let mut series = self.series.borrow_mut();
            let p = series.entry((team, key, model, provider)).or_default();
            p.requests += 1;
            p.status(trace.status);
            p.tokens_in += c.tokens_in;
            p.tokens_out += c.tokens_out;
            p.cost_micro_usd += cost;
            p.guard_hits += trace.guard_hits.len() as u64;
            p.cache_hits += c.cache_hits;
            p.cache_misses += c.cache_misses;
            p.latency.record(micros);
            if let Some(added) = trace.gateway_micros() {
                p.gateway.record(added as u64);
            }
        }
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

    /// Counts a budget's soft threshold passed.
    pub fn soft_threshold(&self, owner: Owner) {
        *self.soft.borrow_mut().entry(owner).or_default() += 1;
    }

    /// Counts an accept that failed.
    pub fn accept_failed(&self) {
        self.accept_errors.set(self.accept_errors.get() + 1);
    }

    /// Takes the counts so far, with names from `config`, and this core's
    /// accounts' hand-off; with `limits`, the budget limits of `config`
    /// too.
    pub fn take(&self, config: &Config, core: CoreFigures, accounts: HandOff, limits: bool) -> Delta {
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
        let owner_name = |owner: Owner| match owner {
            Owner::Team(i) => Some(OwnerName::Team(config.teams.get(i)?.name.clone())),
            Owner::Key(i) => Some(OwnerName::Key(config.keys.all().get(i)?.name.clone())),
        };
        let soft = self.soft.borrow_mut().drain().filter_map(|(o, n)| Some((owner_name(o)?, n))).collect();
        let key = |i: usize| config.keys.all().get(i).map(|k| k.name.clone());
        let series = self
            .series
            .borrow_mut()
            .drain()
            .map(|((t, k, m, p), point)| ((name(t, &team), name(k, &key), name(m, &model), name(p, &provider)), point))
            .collect();
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
                let rule = match rule {
                    RuleLabel::Id(rule) => rule.to_string(),
                    RuleLabel::Named(name) => name,
                };
                ((name(t, &team), rule, action.as_str(), direction), n)
            })
            .collect();
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
            worker: core.worker,
            seq: accounts.seq,
            breakers: core.breakers,
            watch: limits.as_ref().map(|_| crate::cluster::watched(config)),
            rates: limits.as_ref().map(|_| {
                let rated = |r: &tollgate_policy::team::RateLimit| {
                    (r.requests_per_minute.is_some() || r.tokens_per_minute.is_some())
                        .then_some((r.requests_per_minute, r.tokens_per_minute))
                };
                let teams =
                    config.teams.iter().filter_map(|t| Some((OwnerName::Team(t.name.clone()), rated(&t.rate_limit)?)));
                let keys = config
                    .keys
                    .all()
                    .iter()
                    .filter_map(|k| Some((OwnerName::Key(k.name.clone()), rated(&k.rate_limit)?)));
                teams.chain(keys).collect()
            }),
            limits,
            counts,
            spend: accounts.spend,
            minute: accounts.minute,
            total: take(&self.total),
            upstream: take(&self.upstream),
            ttft: take(&self.ttft),
            gateway: take(&self.gateway),
            connections: core.connections as u64,
            in_flight: core.in_flight as u64,
            cache: core.cache,
            guard,
            soft,
            accept_errors: self.accept_errors.replace(0),
            series,
            released: accounts.released,
        }
    }
}
