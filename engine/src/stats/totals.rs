//! The process totals the merger keeps: every core's deltas folded in,
//! and the spend by owner in the current UTC day and month.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::counters::{histogram, Counts, DayMonth, Delta, GuardLabels};
use crate::accounts::{OwnerName, SpendSnapshot};

/// The process totals the merger keeps.
pub struct Totals {
    pub counts: BTreeMap<(String, String, String, u16), Counts>,
    pub spend: SpendSnapshot,
    pub total: Histogram<u64>,
    pub upstream: Histogram<u64>,
    pub ttft: Histogram<u64>,
    pub gateway: Histogram<u64>,
    pub workers: BTreeMap<usize, (u64, u64)>,
    /// Each worker's answer cache, as of its last hand-off.
    pub cache: BTreeMap<usize, crate::cache::StoreCounts>,
    pub guard: BTreeMap<GuardLabels, u64>,
    pub soft: BTreeMap<OwnerName, u64>,
    pub accept_errors: u64,
    /// By (model, provider, upstream model, worker).
    pub breakers: BTreeMap<(String, String, String, usize), u8>,
    pub limits: BTreeMap<OwnerName, DayMonth>,
    /// Requests and tokens per minute, by owner under a rate limit.
    pub rates: BTreeMap<OwnerName, DayMonth>,
    /// How the node stands with the cluster tier, when there is one.
    pub cluster: Option<crate::cluster::ClusterStatus>,
    /// The node's agent runs (read at a scrape: a scan of the table).
    pub runs: Option<std::sync::Arc<crate::runs::Runs>>,
    /// The span exporter's counters, with `[telemetry]`.
    pub spans: Option<std::sync::Arc<crate::post::Counters>>,
    /// The ClickHouse thread's counters, with `[clickhouse]`.
    pub clickhouse: Option<std::sync::Arc<crate::post::Counters>>,
    /// The dashboard's history.
    pub series: super::series::Series,
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
            cache: BTreeMap::new(),
            guard: BTreeMap::new(),
            soft: BTreeMap::new(),
            accept_errors: 0,
            breakers: BTreeMap::new(),
            limits: BTreeMap::new(),
            rates: BTreeMap::new(),
            cluster: None,
            runs: None,
            spans: None,
            clickhouse: None,
            series: super::series::Series::default(),
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
            v.0 = v.0.saturating_add(micro);
            v.1 = v.1.saturating_add(micro);
        }
        // The snapshot that goes out next includes this hand-off.
        if sp.merged.len() <= d.worker {
            sp.merged.resize(d.worker + 1, 0);
        }
        sp.merged[d.worker] = sp.merged[d.worker].max(d.seq);
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
        self.cache.insert(d.worker, d.cache);
        for (k, n) in d.guard {
            *self.guard.entry(k).or_default() += n;
        }
        self.accept_errors += d.accept_errors;
        for (labels, point) in &d.series {
            self.series.add(labels, point, now);
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
                self.rates = d.rates.unwrap_or_default().into_iter().collect();
            }
        }
    }
}
