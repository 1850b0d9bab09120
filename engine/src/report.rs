//! `tollgate report`: usage, cost and latency from the request records.
//!
//! Streams the record files line by line (a month of records does not fit in
//! memory, and does not need to), parses each line with simd-json, keeps one
//! aggregate and one latency histogram per group, and prints one sentence
//! per group ("team-a sent 4.2M tokens to gpt-4o at a cost of $84.00;
//! average latency 340 ms") and a table, CSV or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use simd_json::prelude::*;
use tollgate_policy::calendar;

/// What records are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Team,
    Model,
    Key,
    Provider,
    /// The agent run (`x-tollgate-run`), within its team: grouped with
    /// the team always (run ids are the clients' own, and two teams may
    /// use the same).
    Run,
}

impl By {
    pub fn parse(s: &str) -> Option<By> {
        match s {
            "team" => Some(By::Team),
            "model" => Some(By::Model),
            "key" => Some(By::Key),
            "provider" => Some(By::Provider),
            "run" => Some(By::Run),
            _ => None,
        }
    }

    fn field(self) -> &'static str {
        match self {
            By::Team => "team",
            By::Model => "model",
            By::Key => "key",
            By::Provider => "provider",
            By::Run => "run",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

pub struct ReportOptions {
    pub inputs: Vec<PathBuf>,
    /// Unix milliseconds, inclusive.
    pub since_ms: Option<u64>,
    /// Unix milliseconds, exclusive.
    pub until_ms: Option<u64>,
    pub by: Vec<By>,
    pub format: Format,
}

/// One group's totals.
pub struct Group {
    pub requests: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Prompt tokens the provider read from its prompt cache.
    pub tokens_cached: u64,
    pub cost_micro_usd: u64,
    pub errors: u64,
    /// Requests with a guardrail hit, and by category (`pii`, `secret`,
    /// `injection`, `custom`).
    pub guarded: u64,
    pub guarded_by: BTreeMap<String, u64>,
    /// Requests served from the answer cache, and what they saved.
    pub cache_hits: u64,
    pub saved_micro_usd: u64,
    latency: Latency,
    latency_sum_us: u64,
}

/// A group's latencies (µs): each request's, four bytes each, up to
/// [`EXACT_MAX`], sorted once all are read; past that a histogram of two
/// significant figures (about 23 KB). A group of a few requests costs
/// what it holds (`--by run` or `--by model` makes a group of each run id
/// or model name a tenant sends: a histogram of three figures in each was
/// 188 KB, and a million of them asked for 188 GB, found by a review),
/// and a large one no more than a few bytes a request (a month of
/// records is never held).
enum Latency {
    Exact(Vec<u32>),
    Histogram(Box<Histogram<u64>>),
}

/// Latencies a group keeps exactly.
const EXACT_MAX: usize = 4096;

impl Latency {
    fn record(&mut self, us: u32) {
        match self {
            Latency::Exact(all) if all.len() < EXACT_MAX => all.push(us),
            Latency::Exact(all) => {
                let mut h = Histogram::new_with_bounds(1, u64::from(u32::MAX), 2).expect("static bounds");
                for &v in all.iter() {
                    h.saturating_record(u64::from(v));
                }
                h.saturating_record(u64::from(us));
                *self = Latency::Histogram(Box::new(h));
            }
            Latency::Histogram(h) => h.saturating_record(u64::from(us)),
        }
    }

    fn len(&self) -> u64 {
        match self {
            Latency::Exact(all) => all.len() as u64,
            Latency::Histogram(h) => h.len(),
        }
    }
}

impl Group {
    fn new() -> Group {
        Group {
            requests: 0,
            tokens_in: 0,
            tokens_out: 0,
            tokens_cached: 0,
            cost_micro_usd: 0,
            errors: 0,
            guarded: 0,
            guarded_by: BTreeMap::new(),
            cache_hits: 0,
            saved_micro_usd: 0,
            latency: Latency::Exact(Vec::new()),
            latency_sum_us: 0,
        }
    }

    /// The latency (ms) at or under which a `q` part of the requests were
    /// (nearest rank of the exact ones, sorted by [`build`]; else the
    /// histogram's).
    fn p(&self, q: f64) -> f64 {
        match &self.latency {
            Latency::Exact(all) if all.is_empty() => 0.0,
            Latency::Exact(all) => {
                let at = ((q * all.len() as f64).ceil() as usize).clamp(1, all.len()) - 1;
                f64::from(all[at]) / 1000.0
            }
            Latency::Histogram(h) => h.value_at_quantile(q) as f64 / 1000.0,
        }
    }

    /// The mean latency in µs.
    fn mean_us(&self) -> f64 {
        match self.latency.len() {
            0 => 0.0,
            n => self.latency_sum_us as f64 / n as f64,
        }
    }
}

/// Totals by group key (the `--by` fields' values, joined with `/`).
pub struct Report {
    pub groups: BTreeMap<Vec<String>, Group>,
    pub lines: u64,
    pub bad_lines: u64,
}

/// The record files under a directory, oldest first.
pub fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("tollgate-requests-") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    Ok(files)
}

pub fn build(opts: &ReportOptions) -> std::io::Result<Report> {
    let mut report = Report { groups: BTreeMap::new(), lines: 0, bad_lines: 0 };
    each_line(&opts.inputs, |line| {
        report.lines += 1;
        if add(&mut report, line, opts).is_none() {
            report.bad_lines += 1;
        }
        Ok(())
    })?;
    for g in report.groups.values_mut() {
        if let Latency::Exact(all) = &mut g.latency {
            all.sort_unstable();
        }
    }
    Ok(report)
}

/// Streams the non-blank lines of the record files, in order, through one
/// reused buffer: a month of records is never held in memory.
fn each_line(inputs: &[PathBuf], mut f: impl FnMut(&mut Vec<u8>) -> std::io::Result<()>) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(1024);
    for path in inputs {
        let mut reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                f(&mut line)?;
            }
        }
    }
    Ok(())
}

fn add(report: &mut Report, line: &mut [u8], opts: &ReportOptions) -> Option<()> {
    let v = simd_json::to_borrowed_value(line).ok()?;
    let ts = v.get("ts")?.as_u64()?;
    if opts.since_ms.is_some_and(|s| ts < s) || opts.until_ms.is_some_and(|u| ts >= u) {
        return Some(());
    }
    let key: Vec<String> =
        opts.by.iter().map(|b| v.get(b.field()).and_then(|x| x.as_str()).unwrap_or("-").to_string()).collect();
    let g = report.groups.entry(key).or_insert_with(Group::new);
    g.requests += 1;
    if let Some(t) = v.get("tokens") {
        g.tokens_in += t.get("prompt").and_then(|x| x.as_u64()).unwrap_or(0);
        g.tokens_out += t.get("completion").and_then(|x| x.as_u64()).unwrap_or(0);
        g.tokens_cached += t.get("cached").and_then(|x| x.as_u64()).unwrap_or(0);
    }
    g.cost_micro_usd += v.get("cost_micro_usd").and_then(|x| x.as_u64()).unwrap_or(0);
    let hit = |c: &&simd_json::BorrowedValue<'_>| {
        matches!(c.get("outcome").and_then(|o| o.as_str()), Some("hit" | "semantic-hit"))
    };
    if let Some(c) = v.get("cache").filter(hit) {
        g.cache_hits += 1;
        g.saved_micro_usd += c.get("saved_micro_usd").and_then(|x| x.as_u64()).unwrap_or(0);
    }
    let status = v.get("status").and_then(|x| x.as_u64()).unwrap_or(0);
    let end = v.get("end").and_then(|x| x.as_str()).unwrap_or("completed");
    if status >= 400 || end != "completed" {
        g.errors += 1;
    }
    if let Some(ms) = v.get("latency_ms").and_then(|l| l.get("total")).and_then(|x| x.cast_f64()) {
        let us = ((ms * 1000.0) as u64).clamp(1, u64::from(u32::MAX));
        g.latency.record(us as u32);
        g.latency_sum_us = g.latency_sum_us.saturating_add(us);
    }
    if let Some(hits) = v.get("guardrails").and_then(|g| g.get("hits")).and_then(|h| h.as_array()) {
        if !hits.is_empty() {
            g.guarded += 1;
            let mut seen: Vec<&str> =
                hits.iter().filter_map(|h| h.get("rule")?.as_str()).map(|r| r.split('.').next().unwrap_or(r)).collect();
            seen.sort_unstable();
            seen.dedup();
            for c in seen {
                *g.guarded_by.entry(c.to_string()).or_default() += 1;
            }
        }
    }
    Some(())
}

/// The audit listing: one row per request that met a guardrail, in file
/// order (which is time order): when, who (team, key), to which model and
/// provider, what kind of data (rule ids, never the text), where (request
/// or answer) and what the gateway did (actions, how the request ended).
/// Streamed: nothing is held but one line. Returns the rows written.
pub fn audit(opts: &ReportOptions, out: &mut dyn std::io::Write) -> std::io::Result<u64> {
    let mut rows = 0;
    match opts.format {
        Format::Table => writeln!(
            out,
            "{:<20} {:<14} {:<14} {:<18} {:<10} {:<9} rules (action, where)",
            "time_utc", "team", "key", "model", "end", "status"
        )?,
        Format::Csv => writeln!(out, "ts,team,key,model,provider,status,end,rule,action,in")?,
        Format::Json => {}
    }
    each_line(&opts.inputs, |line| {
        let Ok(v) = simd_json::to_borrowed_value(line) else { return Ok(()) };
        let Some(hits) = v.get("guardrails").and_then(|g| g.get("hits")).and_then(|h| h.as_array()) else {
            return Ok(());
        };
        let ts = v.get("ts").and_then(|x| x.as_u64()).unwrap_or(0);
        if hits.is_empty() || opts.since_ms.is_some_and(|s| ts < s) || opts.until_ms.is_some_and(|u| ts >= u) {
            return Ok(());
        }
        let field = |name: &str| v.get(name).and_then(|x| x.as_str()).unwrap_or("-").to_string();
        let status = v.get("status").and_then(|x| x.as_u64()).unwrap_or(0);
        let hit = |h: &simd_json::BorrowedValue<'_>, name: &str| {
            h.get(name).and_then(|x| x.as_str()).unwrap_or("-").to_string()
        };
        rows += 1;
        match opts.format {
            Format::Table => {
                let rules: Vec<String> = hits
                    .iter()
                    .map(|h| format!("{} ({}, {})", hit(h, "rule"), hit(h, "action"), hit(h, "in")))
                    .collect();
                writeln!(
                    out,
                    "{:<20} {:<14} {:<14} {:<18} {:<10} {:<9} {}",
                    utc(ts),
                    shown(&field("team")),
                    shown(&field("key")),
                    shown(&field("model")),
                    shown(&field("end")),
                    status,
                    rules.join(", ")
                )?;
            }
            Format::Csv => {
                for h in hits {
                    writeln!(
                        out,
                        "{ts},{},{},{},{},{status},{},{},{},{}",
                        csv_field(&field("team")),
                        csv_field(&field("key")),
                        csv_field(&field("model")),
                        csv_field(&field("provider")),
                        field("end"),
                        hit(h, "rule"),
                        hit(h, "action"),
                        hit(h, "in")
                    )?;
                }
            }
            Format::Json => {
                let mut b = bytes::BytesMut::new();
                b.extend_from_slice(format!("{{\"ts\":{ts}").as_bytes());
                for name in ["team", "key", "model", "provider", "end"] {
                    b.extend_from_slice(format!(",\"{name}\":").as_bytes());
                    tollgate_protocol::openai::write_json_string(&mut b, &field(name));
                }
                b.extend_from_slice(format!(",\"status\":{status},\"hits\":[").as_bytes());
                for (i, h) in hits.iter().enumerate() {
                    if i > 0 {
                        b.extend_from_slice(b",");
                    }
                    b.extend_from_slice(b"{\"rule\":");
                    tollgate_protocol::openai::write_json_string(&mut b, &hit(h, "rule"));
                    b.extend_from_slice(b",\"action\":");
                    tollgate_protocol::openai::write_json_string(&mut b, &hit(h, "action"));
                    b.extend_from_slice(b",\"in\":");
                    tollgate_protocol::openai::write_json_string(&mut b, &hit(h, "in"));
                    b.extend_from_slice(b"}");
                }
                b.extend_from_slice(b"]}\n");
                out.write_all(&b)?;
            }
        }
        Ok(())
    })?;
    Ok(rows)
}

/// `2026-11-23 10:01:02` for Unix milliseconds.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = calendar::civil_from_days(tollgate_policy::budget::day_number(secs) as i64);
    let s = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `4.2M`, `12.5k`, `980`.
fn human(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

fn dollars(micro: u64) -> String {
    format!("${}.{:02}", micro / 1_000_000, (micro % 1_000_000 + 5_000) / 10_000 % 100)
}

/// One sentence per group.
pub fn sentences(report: &Report, by: &[By]) -> String {
    let mut out = String::new();
    for (key, g) in &report.groups {
        let mean_ms = g.mean_us() / 1000.0;
        if let Some(at) = by.iter().position(|b| *b == By::Run) {
            // "run 42 of team-a: 312 requests, 9.1M tokens, $18.20"
            let run = &key[at];
            let mut who = if run == "-" { "requests outside any run".to_string() } else { format!("run {run}") };
            for (b, v) in by.iter().zip(key).filter(|(b, _)| **b != By::Run) {
                let _ = write!(who, " {} {}", if *b == By::Team { "of" } else { "/" }, shown(v));
            }
            let _ = write!(
                out,
                "{who}: {} request{}, {} tokens, {}; average latency {mean_ms:.0} ms; {} errors",
                g.requests,
                if g.requests == 1 { "" } else { "s" },
                human(g.tokens_in + g.tokens_out),
                dollars(g.cost_micro_usd),
                g.errors
            );
        } else {
            let who = if key.is_empty() { "all traffic".to_string() } else { shown(&key.join("/")).into_owned() };
            let verb = if by.first() == Some(&By::Model) { "received" } else { "sent" };
            let _ = write!(
                out,
                "{who} {verb} {} tokens in {} requests at a cost of {}; average latency {mean_ms:.0} ms; {} errors",
                human(g.tokens_in + g.tokens_out),
                g.requests,
                dollars(g.cost_micro_usd),
                g.errors
            );
        }
        for (category, n) in &g.guarded_by {
            let name = match category.as_str() {
                "pii" => "PII",
                "secret" => "secrets",
                other => other,
            };
            let _ = write!(out, "; {n} requests triggered the {name} guardrail");
        }
        if g.tokens_cached > 0 {
            let _ = write!(
                out,
                "; {:.0}% of prompt tokens read from the provider's prompt cache",
                g.tokens_cached as f64 * 100.0 / g.tokens_in.max(1) as f64
            );
        }
        if g.cache_hits > 0 {
            let _ = write!(
                out,
                "; {:.0}% of requests served from cache, {} saved",
                g.cache_hits as f64 * 100.0 / g.requests.max(1) as f64,
                dollars(g.saved_micro_usd)
            );
        }
        out.push_str(".\n");
    }
    out
}

pub fn render(report: &Report, opts: &ReportOptions) -> String {
    let names: Vec<&str> = opts.by.iter().map(|b| b.field()).collect();
    let mut out = String::new();
    match opts.format {
        Format::Table => {
            out.push_str(&sentences(report, &opts.by));
            out.push('\n');
            let group = if names.is_empty() { "all".to_string() } else { names.join("/") };
            let _ = writeln!(
                out,
                "{group:<28} {:>9} {:>12} {:>12} {:>12} {:>9} {:>9} {:>9} {:>7} {:>10}",
                "requests", "tokens_in", "tokens_out", "cost_usd", "p50_ms", "p95_ms", "p99_ms", "errors", "guardrails"
            );
            for (key, g) in &report.groups {
                let name = if key.is_empty() { "all".to_string() } else { shown(&key.join("/")).into_owned() };
                let _ = writeln!(
                    out,
                    "{name:<28} {:>9} {:>12} {:>12} {:>12} {:>9.1} {:>9.1} {:>9.1} {:>7} {:>10}",
                    g.requests,
                    g.tokens_in,
                    g.tokens_out,
                    dollars(g.cost_micro_usd).trim_start_matches('$'),
                    g.p(0.50),
                    g.p(0.95),
                    g.p(0.99),
                    g.errors,
                    g.guarded
                );
            }
        }
        Format::Csv => {
            for n in &names {
                let _ = write!(out, "{n},");
            }
            out.push_str(
                "requests,tokens_in,tokens_out,cost_micro_usd,p50_ms,p95_ms,p99_ms,errors,guardrail_requests,cache_hits,saved_micro_usd\n",
            );
            for (key, g) in &report.groups {
                for k in key {
                    let _ = write!(out, "{},", csv_field(k));
                }
                let _ = writeln!(
                    out,
                    "{},{},{},{},{:.3},{:.3},{:.3},{},{},{},{}",
                    g.requests,
                    g.tokens_in,
                    g.tokens_out,
                    g.cost_micro_usd,
                    g.p(0.50),
                    g.p(0.95),
                    g.p(0.99),
                    g.errors,
                    g.guarded,
                    g.cache_hits,
                    g.saved_micro_usd
                );
            }
        }
        Format::Json => {
            out.push('[');
            for (i, (key, g)) in report.groups.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('{');
                for (n, k) in names.iter().zip(key) {
                    let mut b = bytes::BytesMut::new();
                    tollgate_protocol::openai::write_json_string(&mut b, k);
                    let _ = write!(out, "\"{n}\":{},", String::from_utf8_lossy(&b));
                }
                let _ = write!(
                    out,
                    "\"requests\":{},\"tokens_in\":{},\"tokens_out\":{},\"cost_micro_usd\":{},\"p50_ms\":{:.3},\"p95_ms\":{:.3},\"p99_ms\":{:.3},\"errors\":{},\"guardrail_requests\":{},\"cache_hits\":{},\"saved_micro_usd\":{},\"tokens_cached\":{}}}",
                    g.requests,
                    g.tokens_in,
                    g.tokens_out,
                    g.cost_micro_usd,
                    g.p(0.50),
                    g.p(0.95),
                    g.p(0.99),
                    g.errors,
                    g.guarded,
                    g.cache_hits,
                    g.saved_micro_usd,
                    g.tokens_cached
                );
            }
            out.push_str("]\n");
        }
    }
    out
}

/// A text field of the report's CSV: safe for a spreadsheet
/// ([`crate::flat::spreadsheet_text`]: a team's model or a run id a tenant
/// wrote), and quoted where it must be.
fn csv_field(s: &str) -> String {
    let s = crate::flat::spreadsheet_text(s);
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

/// `2026-11-01` (UTC midnight) or Unix milliseconds.
pub fn parse_time(s: &str) -> Option<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Some(ms);
    }
    let mut parts = s.splitn(3, '-');
    let y = parts.next()?.parse::<i64>().ok()?;
    let m = parts.next()?.parse::<u32>().ok()?;
    let d = parts.next()?.parse::<u32>().ok()?;
    let days = calendar::days_from_civil(y, m, d);
    u64::try_from(days * 86_400_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles are the requests' own latencies, nearest rank; a group
    /// holds nothing before its first request (a report by run id makes a
    /// group of each).
    #[test]
    fn percentiles_by_rank_and_groups_cost_what_they_hold() {
        let mut g = Group::new();
        assert!(matches!(&g.latency, Latency::Exact(all) if all.capacity() == 0));
        assert_eq!((g.p(0.5), g.mean_us()), (0.0, 0.0));
        for ms in (1..=100).rev() {
            g.latency.record(ms * 1000);
            g.latency_sum_us += u64::from(ms) * 1000;
        }
        if let Latency::Exact(all) = &mut g.latency {
            all.sort_unstable();
        }
        assert_eq!((g.p(0.50), g.p(0.95), g.p(0.99), g.p(1.0)), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(g.p(0.0), 1.0);
        assert_eq!(g.mean_us(), 50_500.0);
        assert!(std::mem::size_of::<Group>() < 256, "{}", std::mem::size_of::<Group>());
        // Past the exact ones, a histogram of two figures: the same
        // percentiles within 1%, and no more room.
        let mut big = Group::new();
        for i in 0..10 * EXACT_MAX as u32 {
            big.latency.record(1000 + i % 1000 * 100);
        }
        assert!(matches!(big.latency, Latency::Histogram(_)));
        assert_eq!(big.latency.len(), 10 * EXACT_MAX as u64);
        let p50 = big.p(0.5);
        assert!((p50 - 50.9).abs() / 50.9 < 0.01, "{p50}");
    }

    #[test]
    fn money_and_numbers() {
        assert_eq!(dollars(84_000_000), "$84.00");
        assert_eq!(dollars(1_234_567), "$1.23");
        assert_eq!(dollars(9_999), "$0.01");
        assert_eq!(human(4_200_000), "4.2M");
        assert_eq!(human(12_500), "12.5k");
        assert_eq!(parse_time("2026-11-23"), Some(1_795_392_000_000));
        assert_eq!(parse_time("nope"), None);
    }

    #[test]
    fn runs_are_reported_within_their_team() {
        // Keys and whitespace as another writer would order them.
        let dir = std::env::temp_dir().join(format!("tollgate-report-runs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tollgate-requests-x.jsonl");
        let mut lines = String::new();
        for (team, run, cost) in [
            ("team-a", Some("42"), 6_000_000u64),
            ("team-a", Some("42"), 12_200_000),
            ("team-b", Some("42"), 1),
            ("team-a", None, 5),
        ] {
            let run = run.map_or(String::new(), |r| format!(" , \"run\" : \"{r}\""));
            lines.push_str(&format!(
                "{{ \"cost_micro_usd\":{cost}{run}, \"tokens\":{{\"completion\":50000,\"prompt\":4500000}},\"team\":\"{team}\",\"status\":200,\"ts\":1}}\n"
            ));
        }
        std::fs::write(&file, lines).unwrap();
        let opts = ReportOptions {
            inputs: vec![file],
            since_ms: None,
            until_ms: None,
            by: vec![By::Team, By::Run],
            format: Format::Table,
        };
        let text = sentences(&build(&opts).unwrap(), &opts.by);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(text.contains("run 42 of team-a: 2 requests, 9.1M tokens, $18.20;"), "{text}");
        assert!(text.contains("run 42 of team-b: 1 request,"), "{text}");
        assert!(text.contains("requests outside any run of team-a: 1 request,"), "{text}");
    }
}

/// A name from a record as a terminal shows it: control characters and
/// bidirectional formatting escaped (`\u{9d}`), so that a record written
/// before the gateway escaped refused model names (or by hand) cannot
/// move the cursor, write the clipboard or reverse the line in the
/// operator's terminal.
fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    let odd = crate::record::hidden_char;
    if !s.chars().any(odd) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if odd(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod shown_tests {
    #[test]
    fn names_are_shown_without_controls() {
        assert_eq!(super::shown("gpt-4o"), "gpt-4o");
        assert_eq!(super::shown("x\u{9d}52;c\u{9c}\u{202e}y"), "x\\u{9d}52;c\\u{9c}\\u{202e}y");
    }
}
