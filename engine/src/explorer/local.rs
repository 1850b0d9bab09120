//! The explorer over this node's own record files (no `[clickhouse]`):
//! the same queries and answers, read through the index beside the files
//! ([`crate::record_index`]).
//!
//! A query brings the index up to the files, then scans its entries back
//! from the newest file: an entry that cannot match (its hashes, masks and
//! numbers say so) is passed over unread; one that may is read from its
//! line and checked against the query exactly, and kept among the newest
//! `limit + 1` found. The scan stops once no line before it can be newer
//! than the oldest kept (each entry knows the largest `ts` before it), or
//! older than `since`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;

use crate::flat::{Flat, Record};
use crate::record_index::{self, bit16, bit64, hash, Entry, Open, Opened};

use super::{empty, error, Format, Query, EXPORT_MAX};

/// Entries read from an index at once.
const CHUNK: u64 = 64 * 1024;

/// A line found: ordered newest first by `ts`, then `id`; what the
/// answer shows of it, rendered once, when it was read.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Found {
    ts: u64,
    id: String,
    shown: Vec<u8>,
}

/// How a found line is shown.
#[derive(Clone, Copy)]
enum Shown {
    /// As written (the detail).
    Line,
    Json,
    Csv,
}

/// The query's conditions on an entry, hashed once.
struct Sieve<'q> {
    q: &'q Query,
    scope: Option<Vec<u32>>,
    id: Option<u32>,
    text: Vec<(&'static str, u32)>,
    rule: u64,
    action: u16,
}

impl<'q> Sieve<'q> {
    fn new(q: &'q Query, scope: Option<&[String]>) -> Sieve<'q> {
        Sieve {
            q,
            scope: scope.map(|teams| teams.iter().map(|t| hash(t)).collect()),
            id: q.id.as_deref().map(hash),
            text: q.text.iter().map(|(c, v)| (*c, hash(v))).collect(),
            rule: q.rule.as_deref().map_or(0, bit64),
            action: q.action.as_deref().map_or(0, bit16),
        }
    }

    /// Whether the entry's line may match: false only when it cannot.
    fn may(&self, e: &Entry) -> bool {
        let q = self.q;
        if q.since_ms.is_some_and(|s| e.ts < s)
            || q.until_ms.is_some_and(|u| e.ts >= u)
            || q.at_ms.is_some_and(|a| e.ts != a)
            || q.before.as_ref().is_some_and(|(ts, _)| e.ts > *ts)
            || q.status.is_some_and(|s| e.status != s)
            || q.min_cost_micro_usd.is_some_and(|c| e.cost_micro_usd < c)
            // Stored as f32: a margin for its rounding; the line decides.
            || q.min_latency_ms.is_some_and(|l| f64::from(e.latency_ms) < l * (1.0 - 1e-6) - 1e-3)
            || e.rules & self.rule != self.rule
            || e.actions & self.action != self.action
            || self.id.is_some_and(|h| e.id != h)
            || self.scope.as_ref().is_some_and(|teams| !teams.contains(&e.team))
        {
            return false;
        }
        self.text.iter().all(|(column, h)| {
            *h == match *column {
                "team" => e.team,
                "key" => e.key,
                "model" => e.model,
                "provider" => e.provider,
                "`end`" => e.end,
                _ => e.cache,
            }
        })
    }

    /// Whether the line matches: the query itself, exactly.
    fn matches(&self, f: &Flat<'_>, scope: Option<&[String]>) -> bool {
        let q = self.q;
        q.since_ms.is_none_or(|s| f.ts >= s)
            && q.until_ms.is_none_or(|u| f.ts < u)
            && q.at_ms.is_none_or(|a| f.ts == a)
            && q.before.as_ref().is_none_or(|(ts, id)| (f.ts, f.id) < (*ts, id.as_str()))
            && q.status.is_none_or(|s| f.status == s)
            && q.min_cost_micro_usd.is_none_or(|c| f.cost_micro_usd >= c)
            && q.min_latency_ms.is_none_or(|l| f.latency_ms >= l)
            && q.rule.as_deref().is_none_or(|r| f.guardrail_rules.contains(&r))
            && q.action.as_deref().is_none_or(|a| f.guardrail_actions.contains(&a))
            && q.id.as_deref().is_none_or(|id| f.id == id)
            && scope.is_none_or(|teams| teams.iter().any(|t| t == f.team))
            && q.text.iter().all(|(column, v)| {
                v == match *column {
                    "team" => f.team,
                    "key" => f.key,
                    "model" => f.model,
                    "provider" => f.provider,
                    "`end`" => f.end,
                    _ => f.cache,
                }
            })
    }
}

/// Why a query over the files has no answer.
enum Failed {
    Io(std::io::Error),
    /// A file it needed is being indexed again.
    Indexing,
    /// It read for [`SCAN_TIME_MAX`] without being done.
    Slow,
}

impl From<std::io::Error> for Failed {
    fn from(e: std::io::Error) -> Failed {
        Failed::Io(e)
    }
}

/// A query over the files stops here and says to narrow it (a day is read
/// whole in about 0.3 s warm, 1 s cold; a month, thirty times that).
const SCAN_TIME_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// The newest `keep` lines that match, newest first.
fn newest(dir: &Path, q: &Query, scope: Option<&[String]>, keep: usize, shown: Shown) -> Result<Vec<Found>, Failed> {
    record_index::catch_up_unless_busy(dir)?;
    let started = std::time::Instant::now();
    let sieve = Sieve::new(q, scope);
    // A min-heap of what is kept: its top is the oldest.
    let mut kept: BinaryHeap<Reverse<Found>> = BinaryHeap::new();
    let (mut raw, mut entries) = (Vec::new(), Vec::new());
    // The bound below which the scan may stop: `since`, the detail's `ts`.
    let floor = q.since_ms.max(q.at_ms);
    let parts = record_index::parts(dir)?;
    // Each file's header first (files closed again), for the bounds.
    let headers: Vec<Open> = parts.iter().map(record_index::header).collect::<Result<_, _>>()?;
    // The largest `ts` of the files before each (a file being indexed
    // again: the end of its day, when every line in it had started).
    let mut before = Vec::with_capacity(headers.len());
    let mut largest = 0u64;
    for (part, h) in parts.iter().zip(&headers) {
        before.push(largest);
        largest = match h {
            Open::Header(h) => largest.max(h.ts_max),
            Open::Gone => largest,
            Open::Ready(_) | Open::Stale => largest.max(part.ts_bound()),
        };
    }
    let done = |kept: BinaryHeap<Reverse<Found>>| kept.into_sorted_vec().into_iter().map(|Reverse(f)| f).collect();
    // Whether nothing at or before a bound can come ahead of what is kept.
    let enough = |kept: &BinaryHeap<Reverse<Found>>, bound: u64| {
        let oldest_kept = kept.peek().map_or(0, |Reverse(f)| f.ts);
        (kept.len() == keep && bound < oldest_kept) || floor.is_some_and(|f| bound < f)
    };
    let mut lines_read = 0u32;
    for (i, part) in parts.iter().enumerate().rev() {
        // A file none of whose lines can be in the window is passed over
        // unread (the files before it are still looked at).
        let outside = match &headers[i] {
            Open::Header(h) => {
                h.count == 0
                    || q.until_ms.is_some_and(|u| h.ts_min >= u)
                    || q.before.as_ref().is_some_and(|(ts, _)| h.ts_min > *ts)
                    || q.at_ms.is_some_and(|a| h.ts_min > a || h.ts_max < a)
            }
            Open::Gone => true,
            Open::Ready(_) | Open::Stale => floor.is_some_and(|f| part.ts_bound() < f),
        };
        if !outside {
            let opened = match Opened::open(part)? {
                Open::Ready(o) => o,
                Open::Gone => continue,
                Open::Header(_) | Open::Stale => return Err(Failed::Indexing),
            };
            // Only the lines its header counted when the bounds were read.
            let counted = match &headers[i] {
                Open::Header(h) if h.same_records(&opened) => h.count,
                // Indexed since its header was read: the files after it
                // were bounded by its day, so all of it may be read.
                Open::Stale => opened.header.count,
                _ => return Err(Failed::Indexing),
            };
            let mut hi = counted;
            while hi > 0 {
                let lo = hi.saturating_sub(CHUNK);
                opened.entries(lo, hi, &mut raw, &mut entries)?;
                for e in entries.iter().rev() {
                    // Not an entry (a damaged index): no line, no bound.
                    if e.len == 0 {
                        continue;
                    }
                    let full = kept.len() == keep;
                    let oldest_kept = kept.peek().map_or(0, |Reverse(f)| f.ts);
                    if sieve.may(e) && !(full && e.ts < oldest_kept) {
                        // The clock, every few hundred lines read (a cold
                        // disk reads each where it lies).
                        lines_read += 1;
                        if lines_read.is_multiple_of(256) && started.elapsed() > SCAN_TIME_MAX {
                            return Err(Failed::Slow);
                        }
                        if let Some(found) = read(&opened, e, &sieve, scope, shown)? {
                            kept.push(Reverse(found));
                            if kept.len() > keep {
                                kept.pop();
                            }
                            // Ids are unique: the detail is found.
                            if q.id.is_some() {
                                return Ok(done(kept));
                            }
                        }
                    }
                    if enough(&kept, e.ts_max_before.max(before[i])) {
                        return Ok(done(kept));
                    }
                }
                hi = lo;
                if started.elapsed() > SCAN_TIME_MAX {
                    return Err(Failed::Slow);
                }
            }
        }
        if enough(&kept, before[i]) {
            return Ok(done(kept));
        }
    }
    Ok(done(kept))
}

/// The line an entry points at, when it matches: what the answer shows of
/// it. A line that no longer parses or says otherwise than its entry is
/// not a match.
fn read(
    opened: &Opened,
    e: &Entry,
    sieve: &Sieve<'_>,
    scope: Option<&[String]>,
    shown: Shown,
) -> std::io::Result<Option<Found>> {
    let line = opened.line(e)?;
    let found = Record::parse(&line).and_then(|r| {
        let f = r.flat();
        (f.ts == e.ts && sieve.matches(&f, scope)).then(|| {
            let shown = match shown {
                Shown::Line => None,
                Shown::Json => serde_json::to_vec(&f).ok(),
                Shown::Csv => {
                    let mut row = String::new();
                    f.write_csv(&mut row);
                    Some(row.into_bytes())
                }
            };
            (f.ts, f.id.to_string(), shown)
        })
    });
    Ok(found.map(|(ts, id, shown)| Found { ts, id, shown: shown.unwrap_or(line) }))
}

/// The answer from the files: as [`super::answer_within`] gives it from
/// ClickHouse, and a detail with its captured bodies where `bodies`.
pub fn answer(dir: &Path, q: &Query, scope: Option<&[String]>, bodies: bool) -> (u16, &'static str, String) {
    let (keep, shown) = match (q.id.is_some(), q.format) {
        (true, _) => (1, Shown::Line),
        (false, Format::Page) => (q.limit as usize + 1, Shown::Json),
        (false, Format::JsonLines) => (EXPORT_MAX as usize + 1, Shown::Json),
        (false, Format::Csv) => (EXPORT_MAX as usize + 1, Shown::Csv),
    };
    let found = match newest(dir, q, scope, keep, shown) {
        Ok(f) => f,
        Err(Failed::Io(e)) => {
            tracing::warn!(error = %e, dir = %dir.display(), "the request explorer cannot read the record files");
            return (
                500,
                "application/json",
                error(
                    "the request explorer cannot read the record files; the gateway's log says why",
                    "records_unreadable",
                    "server_error",
                ),
            );
        }
        Err(Failed::Indexing) => {
            return (
                503,
                "application/json",
                error(
                    "a record file this query needs is being indexed (a day takes about 20 s); try again shortly, or narrow it with since",
                    "records_indexing",
                    "server_error",
                ),
            )
        }
        Err(Failed::Slow) => {
            return (
                504,
                "application/json",
                error(
                    "the query read the record files for 10 s without finishing; narrow it with since and until, or send the detail's ts",
                    "records_query_too_slow",
                    "server_error",
                ),
            )
        }
    };
    if let Some(id) = &q.id {
        return match found.first() {
            Some(f) => (200, "application/json", detail(&f.shown, bodies)),
            None => (
                404,
                "application/json",
                error(&format!("no request {id:?} in the records you may see"), "not_found", "invalid_request_error"),
            ),
        };
    }
    let text = |f: &Found| String::from_utf8_lossy(&f.shown).into_owned();
    match q.format {
        Format::Page => {
            let shown = &found[..found.len().min(q.limit as usize)];
            let next = (found.len() > shown.len())
                .then(|| shown.last())
                .flatten()
                .map_or("null".to_string(), |f| serde_json::Value::String(format!("{}:{}", f.ts, f.id)).to_string());
            if shown.is_empty() {
                return (200, "application/json", empty(Format::Page));
            }
            let rows: Vec<String> = shown.iter().map(text).collect();
            (200, "application/json", format!("{{\"requests\":[{}],\"next\":{next}}}", rows.join(",")))
        }
        Format::JsonLines => {
            let mut out = String::new();
            for f in &found {
                out.push_str(&text(f));
                out.push('\n');
            }
            (200, q.format.content_type(), out)
        }
        Format::Csv => {
            let mut out = crate::flat::csv_header();
            for f in &found {
                out.push_str(&text(f));
            }
            (200, q.format.content_type(), out)
        }
    }
}

/// The record as it was written, without its captured bodies unless the
/// caller may see them.
fn detail(line: &[u8], bodies: bool) -> String {
    let text = String::from_utf8_lossy(line);
    if bodies || memchr::memmem::find(line, b"\"capture\"").is_none() {
        return text.into_owned();
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(mut m)) => {
            m.remove("capture");
            m.insert("capture_withheld".to_string(), serde_json::Value::Bool(true));
            serde_json::Value::Object(m).to_string()
        }
        // Parsed once to be found: never here; never a body for want of a parse.
        _ => "{}".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Query {
        super::super::parse(&pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>()).unwrap()
    }

    fn line(id: &str, ts: u64, team: &str, status: u16, cost: u64) -> String {
        format!("{{\"id\":\"{id}\",\"ts\":{ts},\"team\":\"{team}\",\"model\":\"m\",\"status\":{status},\"cost_micro_usd\":{cost},\"latency_ms\":{{\"total\":{}.25}},\"guardrails\":{{\"hits\":[{}]}},\"capture\":{{\"prompt\":\"secret\",\"answer\":\"x\"}}}}\n",
            ts % 7,
            if ts.is_multiple_of(5) { "{\"rule\":\"pii.email\",\"action\":\"flag\"}" } else { "" })
    }

    /// Lines written out of `ts` order (requests end in another order than
    /// they start), over three files; every query checked against a plain
    /// sort of the same lines.
    #[test]
    fn answers_equal_a_sort_of_every_line() {
        let _one = record_index::one_test_at_a_time();
        let dir = std::env::temp_dir().join(format!("tollgate-explorer-local-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut all = Vec::new();
        let mut files = [String::new(), String::new(), String::new()];
        // An old day's file, then a day in two parts: each line started on
        // its file's day (or before), up to 40 ms out of order, some `ts`
        // equal.
        const OLD_DAY: u64 = 1_795_651_200_000; // 2026-11-26
        const DAY: u64 = 1_796_083_200_000; // 2026-12-01
        for i in 0..600u64 {
            let base = if i < 200 { OLD_DAY } else { DAY };
            let ts = base + 3_600_000 + i * 3 - (i * 7919 % 41) + 40;
            let team = ["a", "b", "c"][(i % 3) as usize];
            let status = if i % 11 == 0 { 429 } else { 200 };
            let l = line(&format!("tg-{i:04}"), ts, team, status, i * 10);
            files[(i / 200) as usize].push_str(&l);
            all.push((ts, format!("tg-{i:04}"), team, status, i * 10));
        }
        std::fs::write(dir.join("tollgate-requests-2026-11-26.jsonl"), &files[0]).unwrap();
        std::fs::write(dir.join("tollgate-requests-2026-12-01.jsonl"), &files[1]).unwrap();
        std::fs::write(dir.join("tollgate-requests-2026-12-01.1.jsonl"), &files[2]).unwrap();
        all.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
        let ids = |body: &str| -> Vec<String> {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            v["requests"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
        };
        const SINCE: &str = "1796086801500";
        const UNTIL: &str = "1796086801800";
        assert_eq!(SINCE.parse::<u64>().unwrap(), DAY + 3_601_500);
        type Row<'a> = (u64, String, &'a str, u16, u64);
        type Case<'a> = (Vec<(&'a str, &'a str)>, Box<dyn Fn(&Row) -> bool>);
        let cases: Vec<Case> = vec![
            (vec![], Box::new(|_| true)),
            (vec![("team", "b")], Box::new(|r| r.2 == "b")),
            (vec![("status", "429")], Box::new(|r| r.3 == 429)),
            (vec![("min_cost_usd", "0.005")], Box::new(|r| r.4 >= 5_000)),
            (vec![("since", SINCE), ("until", UNTIL)], Box::new(|r| (DAY + 3_601_500..DAY + 3_601_800).contains(&r.0))),
            (vec![("rule", "pii.email")], Box::new(|r| r.0.is_multiple_of(5))),
            (vec![("min_latency_ms", "6.25")], Box::new(|r| r.0 % 7 == 6)),
            (vec![("team", "nobody")], Box::new(|_| false)),
        ];
        for (pairs, keep) in &cases {
            let want: Vec<String> = all.iter().filter(|r| keep(r)).map(|r| r.1.clone()).collect();
            // Paged by 7 to the end.
            let mut got = Vec::new();
            let mut before: Option<String> = None;
            loop {
                let mut p = pairs.clone();
                p.push(("limit", "7"));
                if let Some(b) = &before {
                    p.push(("before", b));
                }
                let (status, _, body) = answer(&dir, &q(&p), None, false);
                assert_eq!(status, 200, "{body}");
                got.extend(ids(&body));
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                match v["next"].as_str() {
                    Some(n) => before = Some(n.to_string()),
                    None => break,
                }
            }
            assert_eq!(got, want, "{pairs:?}");
            // Exported whole.
            let mut p = pairs.clone();
            p.push(("format", "jsonl"));
            let (_, _, body) = answer(&dir, &q(&p), None, false);
            let exported: Vec<String> = body
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(exported, want, "{pairs:?} exported");
            let mut p = pairs.clone();
            p.push(("format", "csv"));
            let (_, _, body) = answer(&dir, &q(&p), None, false);
            assert_eq!(body.lines().count(), want.len() + 1, "{pairs:?} as CSV");
        }
        // A viewer's scope.
        let (_, _, body) = answer(&dir, &q(&[("limit", "1000")]), Some(&["a".to_string(), "c".to_string()]), false);
        assert_eq!(ids(&body), all.iter().filter(|r| r.2 != "b").map(|r| r.1.clone()).collect::<Vec<_>>());
        // The detail, with its bodies only where granted; by id alone too.
        let (ts, id) = (all[100].0.to_string(), all[100].1.clone());
        let (status, _, body) = answer(&dir, &q(&[("id", &id), ("ts", &ts)]), None, true);
        assert_eq!(status, 200);
        assert!(body.contains("\"secret\""), "{body}");
        let (_, _, body) = answer(&dir, &q(&[("id", &id)]), None, false);
        assert!(!body.contains("secret") && body.contains("\"capture_withheld\":true"), "{body}");
        let team = all[100].2;
        let other = if team == "a" { "b" } else { "a" };
        let (status, ..) = answer(&dir, &q(&[("id", &id)]), Some(&[other.to_string()]), true);
        assert_eq!(status, 404, "another team's request");
        let (status, ..) = answer(&dir, &q(&[("id", "tg-9999")]), None, true);
        assert_eq!(status, 404);
        // The old day's file rewritten (the retention) while the thread
        // holds the catch-up: its index is stale. A page of the newest does
        // not need it (every line of it started on its day); a query that
        // reaches it answers 503 rather than a page missing its lines.
        let first = dir.join("tollgate-requests-2026-11-26.jsonl");
        std::fs::write(dir.join("rewrite.tmp"), &files[0]).unwrap();
        std::fs::rename(dir.join("rewrite.tmp"), &first).unwrap();
        let busy = record_index::busy();
        let (status, _, body) = answer(&dir, &q(&[("limit", "5")]), None, false);
        assert_eq!((status, ids(&body)), (200, all[..5].iter().map(|r| r.1.clone()).collect::<Vec<_>>()));
        let (status, _, body) = answer(&dir, &q(&[("team", "a"), ("limit", "1000")]), None, false);
        assert_eq!(status, 503, "{body}");
        drop(busy);
        let (status, _, body) = answer(&dir, &q(&[("team", "a"), ("limit", "1000")]), None, false);
        assert_eq!((status, ids(&body).len()), (200, 200), "indexed again by the query: a small file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
