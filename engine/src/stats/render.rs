//! The merged totals rendered for people and scrapers: the Prometheus
//! text format (`/metrics`) and the dashboard's JSON (`/admin/stats`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::counters::Counts;
use super::totals::Totals;

impl Totals {
    /// The live dashboard's numbers (`GET /admin/stats`): totals, by team,
    /// latency percentiles and guardrail hits, as one JSON object.
    pub fn dashboard_json(&self, now_ms: u64, scope: Option<&[String]>) -> String {
        let mut out = bytes::BytesMut::new();
        let mut teams: BTreeMap<&str, (Counts, u64)> = BTreeMap::new();
        let (mut requests, mut errors, mut cost) = (0, 0, 0);
        let seen = |team: &str| super::series::in_scope(scope, team);
        for ((team, _, _, status), c) in self.counts.iter().filter(|((t, ..), _)| seen(t)) {
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
                "{{\"ts_ms\":{now_ms},\"requests\":{requests},\"errors\":{errors},\"cost_usd\":{},",
                cost as f64 / 1e6
            )
            .as_bytes(),
        );
        // Latency and requests in flight are the node's, every team's
        // together: a viewer of some teams does not see them.
        match scope {
            None => out.extend_from_slice(
                format!(
                    "\"latency_ms\":{{\"p50\":{:.3},\"p95\":{:.3},\"p99\":{:.3}}},\"in_flight\":{in_flight},\"scope\":null,",
                    ms(0.50),
                    ms(0.95),
                    ms(0.99)
                )
                .as_bytes(),
            ),
            Some(teams) => {
                out.extend_from_slice(b"\"latency_ms\":null,\"in_flight\":null,\"scope\":[");
                for (i, t) in teams.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b",");
                    }
                    tollgate_protocol::openai::write_json_string(&mut out, t);
                }
                out.extend_from_slice(b"],");
            }
        }
        self.write_budgets(&mut out, scope, now_ms);
        out.extend_from_slice(b",\"teams\":[");
        for (i, (team, (c, errors))) in teams.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b",");
            }
            out.extend_from_slice(b"{\"team\":");
            tollgate_protocol::openai::write_json_string(&mut out, team);
            out.extend_from_slice(
                format!(
                    ",\"requests\":{},\"errors\":{errors},\"tokens_in\":{},\"tokens_out\":{},\"cost_usd\":{},\"cache_hits\":{},\"cache_misses\":{},\"saved_usd\":{}}}",
                    c.requests,
                    c.tokens_in,
                    c.tokens_out,
                    c.cost_micro_usd as f64 / 1e6,
                    c.cache_hits,
                    c.cache_misses,
                    c.saved_micro_usd as f64 / 1e6
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(b"],\"guardrails\":[");
        let mut hits: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for ((_, rule, action, _), n) in self.guard.iter().filter(|((t, ..), _)| seen(t)) {
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

    /// `"budgets":[...]`: each team's (and, for an operator, each key's)
    /// spend today and this month against its limits, and its requests and
    /// tokens this minute against its rate limits: those with a limit. A
    /// viewer sees its teams' only: a key's team is not known here.
    fn write_budgets(&self, out: &mut bytes::BytesMut, scope: Option<&[String]>, now_ms: u64) {
        out.extend_from_slice(b"\"budgets\":[");
        let mut first = true;
        let owners: std::collections::BTreeSet<&crate::accounts::OwnerName> =
            self.limits.keys().chain(self.rates.keys()).collect();
        let minute = now_ms / 60_000;
        for owner in owners {
            let (daily, monthly) = self.limits.get(owner).copied().unwrap_or_default();
            let (rpm, tpm) = self.rates.get(owner).copied().unwrap_or_default();
            let used = self.spend.minute.get(owner).filter(|u| u.minute == minute).copied().unwrap_or_default();
            let (kind, name) = owner.label();
            // A key's team is not known here: keys are an operator's only.
            if scope.is_some() && (kind != "team" || !super::series::in_scope(scope, name)) {
                continue;
            }
            let (day, month) = self.spend.by_owner.get(owner).copied().unwrap_or_default();
            if !std::mem::take(&mut first) {
                out.extend_from_slice(b",");
            }
            out.extend_from_slice(format!("{{\"kind\":\"{kind}\",\"name\":").as_bytes());
            tollgate_protocol::openai::write_json_string(out, name);
            let usd = |v: Option<u64>| v.map_or("null".to_string(), |v| format!("{}", v as f64 / 1e6));
            let n = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
            out.extend_from_slice(
                format!(
                    ",\"day_usd\":{},\"daily_usd\":{},\"month_usd\":{},\"monthly_usd\":{},\"minute_requests\":{},\"requests_per_minute\":{},\"minute_tokens\":{},\"tokens_per_minute\":{}}}",
                    day as f64 / 1e6,
                    usd(daily),
                    month as f64 / 1e6,
                    usd(monthly),
                    used.requests,
                    n(rpm),
                    used.tokens,
                    n(tpm)
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(b"]");
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
        out.push_str("# HELP tollgate_tokens_total Tokens as providers reported them, by team, model, provider and direction (cached: the prompt tokens read from the provider's prompt cache, a part of in).\n# TYPE tollgate_tokens_total counter\n");
        for ((team, model, provider), c) in &by_tm {
            for (direction, n) in [("in", c.tokens_in), ("out", c.tokens_out), ("cached", c.tokens_cached)] {
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
        if let Some(runs) = &self.runs {
            // Not by run: run ids are the clients' and unbounded, which a
            // time series database cannot take as labels; records and
            // `tollgate report --by run` give each run's figures.
            let (active, refused) = runs.counts(crate::unix_now().as_millis() as u64);
            let _ = writeln!(
                out,
                "# HELP tollgate_runs_active Agent runs with a request in the last hour, under run limits.\n# TYPE tollgate_runs_active gauge\ntollgate_runs_active {active}"
            );
            out.push_str("# HELP tollgate_run_refusals_total Requests refused at an agent run's limit, by limit.\n# TYPE tollgate_run_refusals_total counter\n");
            for (limit, n) in ["cost", "tokens", "requests", "wall_time", "table_full"].iter().zip(refused) {
                let _ = writeln!(out, "tollgate_run_refusals_total{{limit=\"{limit}\"}} {n}");
            }
        }
        out.push_str("# HELP tollgate_cache_requests_total Answer cache lookups, by team, model and outcome.\n# TYPE tollgate_cache_requests_total counter\n");
        let mut by_model: BTreeMap<(&str, &str), Counts> = BTreeMap::new();
        for ((team, model, _), c) in &by_tm {
            by_model.entry((team, model)).or_default().add(c);
        }
        for ((team, model), c) in by_model.iter().filter(|(_, c)| c.cache_hits + c.cache_misses > 0) {
            for (outcome, n) in [("hit", c.cache_hits), ("miss", c.cache_misses)] {
                let _ = writeln!(
                    out,
                    "tollgate_cache_requests_total{{team=\"{}\",model=\"{}\",outcome=\"{outcome}\"}} {n}",
                    label(team),
                    label(model)
                );
            }
        }
        out.push_str("# HELP tollgate_cache_saved_usd_total What answers served from the cache would have cost, by team and model.\n# TYPE tollgate_cache_saved_usd_total counter\n");
        for ((team, model), c) in by_model.iter().filter(|(_, c)| c.cache_hits > 0) {
            let _ = writeln!(
                out,
                "tollgate_cache_saved_usd_total{{team=\"{}\",model=\"{}\"}} {}",
                label(team),
                label(model),
                c.saved_micro_usd as f64 / 1e6
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
        if self.cache.values().any(|c| c.inserted > 0 || c.entries > 0) {
            type Figure = fn(&crate::cache::StoreCounts) -> u64;
            let families: [(&str, &str, &str, Figure); 5] = [
                ("tollgate_cache_entries", "gauge", "Answers held in each worker's cache.", |c| c.entries),
                (
                    "tollgate_cache_bytes",
                    "gauge",
                    "Bytes held in each worker's cache (bodies plus 160 per entry).",
                    |c| c.bytes,
                ),
                ("tollgate_cache_inserted_total", "counter", "Answers stored in each worker's cache.", |c| c.inserted),
                (
                    "tollgate_cache_evicted_total",
                    "counter",
                    "Answers evicted from each worker's cache to make room.",
                    |c| c.evicted,
                ),
                (
                    "tollgate_cache_expired_total",
                    "counter",
                    "Answers dropped from each worker's cache past their TTL.",
                    |c| c.expired,
                ),
            ];
            for (name, kind, help, figure) in families {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for (w, c) in &self.cache {
                    let _ = writeln!(out, "{name}{{worker=\"{w}\"}} {}", figure(c));
                }
            }
        }
        if let Some(c) = &self.spans {
            use std::sync::atomic::Ordering::Relaxed;
            let _ = write!(
                out,
                "# HELP tollgate_otel_spans_total OpenTelemetry spans, by what became of them (dropped: past the queue's bound, or refused by the collector after every try).\n# TYPE tollgate_otel_spans_total counter\ntollgate_otel_spans_total{{result=\"exported\"}} {}\ntollgate_otel_spans_total{{result=\"dropped\"}} {}\n\
                 # HELP tollgate_otel_exports_failed_total Exports to the collector given up after their last try.\n# TYPE tollgate_otel_exports_failed_total counter\ntollgate_otel_exports_failed_total {}\n\
                 # HELP tollgate_otel_queue_bytes Encoded spans waiting for the exporter thread.\n# TYPE tollgate_otel_queue_bytes gauge\ntollgate_otel_queue_bytes {}\n\
                 # HELP tollgate_otel_queue_bytes_max The queue's bound (queue_bytes_max).\n# TYPE tollgate_otel_queue_bytes_max gauge\ntollgate_otel_queue_bytes_max {}\n",
                c.delivered.load(Relaxed),
                c.dropped.load(Relaxed),
                c.failed.load(Relaxed),
                c.queued_bytes.load(Relaxed),
                c.queue_bytes_max,
            );
        }
        if let Some(c) = &self.clickhouse {
            use std::sync::atomic::Ordering::Relaxed;
            let _ = write!(
                out,
                "# HELP tollgate_clickhouse_rows_total Request records for ClickHouse, by what became of them (dropped: past the queue's bound, refused for good, or not taken by the end of the shutdown grace).\n# TYPE tollgate_clickhouse_rows_total counter\ntollgate_clickhouse_rows_total{{result=\"inserted\"}} {}\ntollgate_clickhouse_rows_total{{result=\"dropped\"}} {}\n\
                 # HELP tollgate_clickhouse_inserts_failed_total Inserts given up after their last try.\n# TYPE tollgate_clickhouse_inserts_failed_total counter\ntollgate_clickhouse_inserts_failed_total {}\n\
                 # HELP tollgate_clickhouse_queue_bytes Records waiting for the ClickHouse thread.\n# TYPE tollgate_clickhouse_queue_bytes gauge\ntollgate_clickhouse_queue_bytes {}\n\
                 # HELP tollgate_clickhouse_queue_bytes_max The queue's bound (queue_bytes_max).\n# TYPE tollgate_clickhouse_queue_bytes_max gauge\ntollgate_clickhouse_queue_bytes_max {}\n\
                 # HELP tollgate_clickhouse_rows_held Rows of an insert ClickHouse has not taken yet, tried again until it does (an outage: the queue fills behind them).\n# TYPE tollgate_clickhouse_rows_held gauge\ntollgate_clickhouse_rows_held {}\n\
                 # HELP tollgate_clickhouse_tries_failed_total Inserts tried that ClickHouse did not take (not reached, refused, or no answer).\n# TYPE tollgate_clickhouse_tries_failed_total counter\ntollgate_clickhouse_tries_failed_total {}\n",
                c.delivered.load(Relaxed),
                c.dropped.load(Relaxed),
                c.failed.load(Relaxed),
                c.queued_bytes.load(Relaxed),
                c.queue_bytes_max,
                c.held.load(Relaxed),
                c.tries_failed.load(Relaxed),
            );
        }
        let _ = writeln!(
            out,
            "# HELP tollgate_accept_errors_total Client connections that could not be accepted (out of descriptors, most likely).\n# TYPE tollgate_accept_errors_total counter\ntollgate_accept_errors_total {}",
            self.accept_errors
        );
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
