//! The request explorer (`GET /admin/requests`): the records of every
//! node that sends to `[clickhouse]`, or of this node's files without it
//! ([`local`]), filtered by time,
//! team, key, model, provider, status, end, guardrail rule and action,
//! latency and cost above a value and cache outcome; newest first, paged
//! by a cursor; one request's record by its id; the filtered set exported
//! as CSV or JSON lines (the audit report). A viewer sees its teams only.
//!
//! Over ClickHouse, filters become one `SELECT` on the gateway's table (ordered by team and
//! time, so a team's day is a range read): every value is a parsed number
//! or an escaped string literal, never SQL from the caller.

use std::time::Instant;

mod local;

use tollgate_policy::config::clickhouse::ClickHouse;

/// Rows per page, at most; and per export.
const PAGE_MAX: u64 = 1_000;
const EXPORT_MAX: u64 = 100_000;
/// An answer from ClickHouse is read up to this size: past it, 502.
const ANSWER_MAX: usize = 64 << 20;
/// Explorer requests served at once on the node (each may run a few
/// queries): past it, 429, so that the admin listener's other callers
/// (metrics scrapes, reloads) keep their connections.
const AT_ONCE_MAX: usize = 4;
static AT_ONCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether an explorer request finds a slot with `taken` already taken.
/// Viewers (scoped to their teams) leave the last slot to admin tokens:
/// four queries of one viewer, each run to its time-out and asked again,
/// held the operator's explorer and exports at 429 (found by a review).
fn admits(taken: usize, viewer: bool) -> bool {
    taken < if viewer { AT_ONCE_MAX - 1 } else { AT_ONCE_MAX }
}

/// The columns of a listed request, as ClickHouse names them; for the CSV
/// export (`safe`), the texts a tenant can write made safe for a
/// spreadsheet, as the files' export makes them
/// ([`crate::flat::spreadsheet_text`]).
fn columns(safe: bool) -> String {
    let quoted: Vec<String> = crate::flat::COLUMNS
        .iter()
        .map(|c| match *c {
            "end" => "`end`".to_string(),
            c if safe && SPREADSHEET_TEXT.contains(&c) => crate::flat::spreadsheet_sql(c),
            c => c.to_string(),
        })
        .collect();
    quoted.join(", ")
}

/// The text columns made safe for a spreadsheet in the CSV export: those a
/// tenant can write into (a refused model's name, a run id), and the names
/// the operator gives, alike.
const SPREADSHEET_TEXT: [&str; 4] = ["model", "run", "key", "team"];

/// Where the explorer reads: ClickHouse, or the node's own record files
/// through their index ([`crate::record_index`]).
#[derive(Clone, Debug)]
pub enum Store {
    ClickHouse(ClickHouse),
    Files(std::path::PathBuf),
}

#[derive(Debug, Default, PartialEq)]
pub struct Query {
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    text: Vec<(&'static str, String)>,
    status: Option<u16>,
    rule: Option<String>,
    action: Option<String>,
    min_latency_ms: Option<f64>,
    min_cost_micro_usd: Option<u64>,
    id: Option<String>,
    /// The request's `ts`, with `id`: the detail is a range read, not a
    /// scan of every id.
    at_ms: Option<u64>,
    limit: u64,
    /// The last row of the previous page: `ts` and `id`.
    before: Option<(u64, String)>,
    format: Format,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Format {
    /// A page: `{"requests": [...], "next": "<cursor>" | null}`.
    #[default]
    Page,
    Csv,
    JsonLines,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Page => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::JsonLines => "application/x-ndjson",
        }
    }
}

/// Parses the query string (already percent-decoded pairs).
pub fn parse(pairs: &[(String, String)]) -> Result<Query, String> {
    let mut q = Query { limit: 100, ..Query::default() };
    let number = |name: &str, v: &str| v.parse::<u64>().map_err(|_| format!("{name} {v:?} is not a whole number"));
    for (name, value) in pairs {
        let v = value.as_str();
        if v.is_empty() {
            continue;
        }
        match name.as_str() {
            "since" => q.since_ms = Some(number("since", v)?),
            "until" => q.until_ms = Some(number("until", v)?),
            "team" | "key" | "model" | "provider" | "end" | "cache" => {
                let column = match name.as_str() {
                    "team" => "team",
                    "key" => "key",
                    "model" => "model",
                    "provider" => "provider",
                    "end" => "`end`",
                    _ => "cache",
                };
                q.text.push((column, v.to_string()));
            }
            "status" => q.status = Some(v.parse().map_err(|_| format!("status {v:?} is not an HTTP status"))?),
            "rule" => q.rule = Some(v.to_string()),
            "action" => q.action = Some(v.to_string()),
            "min_latency_ms" => {
                let ms = v.parse::<f64>().ok().filter(|x| (0.0..=1e9).contains(x));
                // Whole microseconds: a plain decimal in the SQL.
                q.min_latency_ms = Some((ms.ok_or(format!("min_latency_ms {v:?} is not a number of milliseconds"))? * 1000.0).round() / 1000.0)
            }
            "min_cost_usd" => {
                let usd = v.parse::<f64>().ok().filter(|x| (0.0..=1e9).contains(x));
                q.min_cost_micro_usd = Some((usd.ok_or(format!("min_cost_usd {v:?} is not an amount"))? * 1e6).round() as u64);
            }
            "id" => q.id = Some(v.to_string()),
            "ts" => q.at_ms = Some(number("ts", v)?),
            "limit" => q.limit = number("limit", v)?.clamp(1, PAGE_MAX),
            "before" => {
                let (ts, id) = v.split_once(':').ok_or(format!("before {v:?} is not a cursor from \"next\""))?;
                q.before = Some((number("before", ts)?, id.to_string()));
            }
            "format" => {
                q.format = match v {
                    "json" => Format::Page,
                    "csv" => Format::Csv,
                    "jsonl" => Format::JsonLines,
                    other => return Err(format!("format {other:?} is not json, csv or jsonl")),
                }
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?}: since, until (Unix ms), team, key, model, provider, status, end, rule, action, min_latency_ms, min_cost_usd, cache, id and ts, limit, before, format"
                ))
            }
        }
    }
    Ok(q)
}

/// A ClickHouse string literal.
fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The condition that keeps rows to a viewer's teams (none: no row).
fn within(teams: &[String]) -> String {
    let list: Vec<String> = teams.iter().map(|t| literal(t)).collect();
    if list.is_empty() {
        "0".to_string()
    } else {
        format!("team IN ({})", list.join(", "))
    }
}

/// 2106-01-01 00:00 UTC, the first day ClickHouse's `Date` cannot hold
/// (18.16 reads it, and every later one, as 0000-00-00), in Unix ms.
const DATE_END_MS: u64 = 49_673 * 86_400_000;

/// The `WHERE` of a query within a viewer's teams (`None`: every team),
/// and, for a page, from `window_from` (Unix ms) on.
fn filter(q: &Query, scope: Option<&[String]>, window_from: Option<u64>) -> String {
    let mut conditions = Vec::new();
    conditions.extend(scope.map(within));
    if let Some(id) = &q.id {
        conditions.push(format!("id = {}", literal(id)));
    }
    // Each `ts` bound has its day beside it, so that ClickHouse skips the
    // days' partitions outside it.
    let day = |ms: u64| literal(&tollgate_policy::calendar::utc_date(ms / 1000));
    // A day past ClickHouse's `Date` (2105 is its last year) reads as
    // 0000-00-00 there: an upper bound on it matched no row, and an export
    // `until=9999999999999` ("no end", as scripts write it) came back empty
    // and whole (found by a review). Such a bound bounds no day.
    let day_upto = |ms: u64| if ms < DATE_END_MS { format!("date <= {} AND ", day(ms)) } else { String::new() };
    if let Some(s) = q.since_ms {
        conditions.push(format!("date >= {} AND ts >= {s}", day(s)));
    }
    if let Some(u) = q.until_ms {
        conditions.push(format!("{}ts < {u}", day_upto(u)));
    }
    for (column, value) in &q.text {
        conditions.push(format!("{column} = {}", literal(value)));
    }
    if let Some(s) = q.status {
        conditions.push(format!("status = {s}"));
    }
    if let Some(r) = &q.rule {
        conditions.push(format!("has(guardrail_rules, {})", literal(r)));
    }
    if let Some(a) = &q.action {
        conditions.push(format!("has(guardrail_actions, {})", literal(a)));
    }
    if let Some(l) = q.min_latency_ms {
        conditions.push(format!("latency_ms >= {l}"));
    }
    if let Some(c) = q.min_cost_micro_usd {
        conditions.push(format!("cost_micro_usd >= {c}"));
    }
    if let Some((ts, id)) = &q.before {
        conditions.push(format!("{}(ts < {ts} OR (ts = {ts} AND id < {}))", day_upto(*ts), literal(id)));
    }
    if let Some(at) = q.at_ms {
        conditions.push(format!("date = {} AND ts = {at}", day(at)));
    }
    if let Some(from) = window_from {
        conditions.push(format!("date >= {} AND ts >= {from}", day(from)));
    }
    // PREWHERE: the condition's columns are read first, and the others
    // only for the granules that pass (ClickHouse 18 does not always move
    // a WHERE there itself, and a page of a day read whole takes seconds).
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" PREWHERE {}", conditions.join(" AND "))
    }
}

/// The `SELECT` for a query within a viewer's teams (`None`: every team).
pub fn sql(q: &Query, scope: Option<&[String]>, database: &str, table: &str, window_from: Option<u64>) -> String {
    let filter = filter(q, scope, window_from);
    let (columns, limit, format) = match (q.id.is_some(), q.format) {
        (true, _) => ("record".to_string(), 1, "JSONEachRow"),
        (false, Format::Page) => (columns(false), q.limit + 1, "JSONEachRow"),
        // Its header is the gateway's (the columns' own names, not the
        // safe texts' aliases).
        (false, Format::Csv) => (columns(true), EXPORT_MAX + 1, "CSV"),
        (false, Format::JsonLines) => (columns(false), EXPORT_MAX + 1, "JSONEachRow"),
    };
    format!("SELECT {columns} FROM {database}.{table}{filter} ORDER BY ts DESC, id DESC LIMIT {limit} FORMAT {format}")
}

/// The `SELECT` of a record's captured bodies (`record`: its JSON, as the
/// table holds it), within the viewer's teams.
fn bodies_sql(record: &str, scope: Option<&[String]>, database: &str, table: &str) -> String {
    let r: serde_json::Value = serde_json::from_str(record).unwrap_or_default();
    let ts = r["ts"].as_u64().unwrap_or(0);
    let mut conditions = vec![
        format!("id = {}", literal(r["id"].as_str().unwrap_or(""))),
        format!("date = {} AND ts = {ts}", literal(&tollgate_policy::calendar::utc_date(ts / 1000))),
    ];
    conditions.extend(scope.map(within));
    format!(
        "SELECT capture FROM {database}.{} PREWHERE {} LIMIT 1 FORMAT JSONEachRow",
        crate::clickhouse::bodies_table(table),
        conditions.join(" AND ")
    )
}

/// A record with its captured bodies where the caller may see them, or
/// saying they were withheld.
fn with_capture(record: String, capture: Option<serde_json::Value>, bodies: bool) -> String {
    let Some(capture) = capture else { return record };
    let Ok(serde_json::Value::Object(mut m)) = serde_json::from_str::<serde_json::Value>(&record) else {
        return record;
    };
    if bodies {
        m.insert("capture".to_string(), capture);
    } else {
        m.insert("capture_withheld".to_string(), serde_json::Value::Bool(true));
    }
    serde_json::Value::Object(m).to_string()
}

/// A page is read in windows back from the newest row the filters match:
/// the last minute, 16 minutes, about 4 hours, about 3 days, then all.
/// ClickHouse 18 sorts what it reads, so a page of a day's 8.6 million
/// rows read whole takes seconds; the window reads only its `ts` range.
const WINDOWS_MS: [Option<u64>; 5] = [Some(60_000), Some(960_000), Some(15_360_000), Some(245_760_000), None];

/// The answer to `GET /admin/requests`: status, content type and body.
/// `bodies`: whether the caller may see captured prompts and answers.
pub fn answer(store: &Store, q: &Query, scope: Option<&[String]>, bodies: bool) -> (u16, &'static str, String) {
    use std::sync::atomic::Ordering;
    if scope.is_some_and(|teams| teams.is_empty()) {
        return (200, q.format.content_type(), empty(q.format));
    }
    /// Gives the slot back however the answer ends (a panic too).
    struct Slot;
    impl Drop for Slot {
        fn drop(&mut self) {
            AT_ONCE.fetch_sub(1, Ordering::Relaxed);
        }
    }
    if !admits(AT_ONCE.fetch_add(1, Ordering::Relaxed), scope.is_some()) {
        AT_ONCE.fetch_sub(1, Ordering::Relaxed);
        return (
            429,
            "application/json",
            error(
                "the explorer is answering other requests; try again in a moment",
                "explorer_busy",
                "rate_limit_error",
            ),
        );
    }
    let _slot = Slot;
    let mut answered = match store {
        Store::ClickHouse(settings) => answer_within(settings, q, scope, bodies),
        Store::Files(dir) => local::answer(dir, q, scope, bodies),
    };
    if answered.0 == 200 && q.id.is_none() && q.format != Format::Page {
        answered.2 = mark_cut(q.format, answered.2, EXPORT_MAX as usize);
    }
    answered
}

/// An export of more than `max` rows (both stores read one more than the
/// cap) loses the extra and ends with a line saying it was cut, so that an
/// audit report never passes for whole when it is not.
fn mark_cut(format: Format, mut body: String, max: usize) -> String {
    // Rows end at newlines outside quotes (a CSV field may hold one).
    let header = usize::from(format == Format::Csv);
    let (mut quoted, mut rows) = (false, 0);
    let mut end = None;
    for (i, b) in body.bytes().enumerate() {
        match b {
            b'"' if format == Format::Csv => quoted = !quoted,
            b'\n' if !quoted => {
                rows += 1;
                if rows == max + header {
                    end = Some(i + 1);
                } else if rows > max + header {
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(end) = end.filter(|_| rows > max + header) else { return body };
    body.truncate(end);
    let why = format!("cut: more than {max} requests match; narrow the filters (since, until) for the rest");
    match format {
        Format::Csv => body.push_str(&format!("\"{why}\"\n")),
        _ => body.push_str(&format!("{}\n", serde_json::json!({ "cut": true, "rows": max, "message": why }))),
    }
    body
}

/// What an empty result looks like in each format.
fn empty(format: Format) -> String {
    match format {
        Format::Page => "{\"requests\":[],\"next\":null}".to_string(),
        // Its header, as every CSV export has.
        Format::Csv => crate::flat::csv_header(),
        Format::JsonLines => String::new(),
    }
}

fn answer_within(
    settings: &ClickHouse,
    q: &Query,
    scope: Option<&[String]>,
    bodies: bool,
) -> (u16, &'static str, String) {
    let started = Instant::now();
    // Read-only whatever the user may do, and stopped by ClickHouse itself
    // at the time-out (ClickHouse 18 does not stop a query whose client
    // has gone). `wait_end_of_query`: the answer is held until the query
    // ends, so that one that fails half-way (its time-out, its bytes'
    // bound) says so by its status, not by an exception written after
    // rows already sent with a 200, which only a search of the rows for
    // its words could tell from a tenant's model name holding them.
    let target = format!(
        "/?readonly=2&wait_end_of_query=1&max_execution_time={}&max_result_bytes={ANSWER_MAX}",
        settings.timeout.as_secs().max(1)
    );
    let failed = |why: String| {
        // Debug-formatted: ClickHouse's error may quote the query, whose
        // literals a viewer wrote (a line break in a filter would forge a
        // log line).
        tracing::warn!(why = ?why, "the request explorer's query failed");
        (
            502,
            "application/json",
            error(
                "the records' store (ClickHouse) did not answer the query; the gateway's log says why",
                "clickhouse_error",
                "server_error",
            ),
        )
    };
    let run = |sql: &str| -> Result<String, (u16, &'static str, String)> {
        let timeout = settings.timeout;
        let mut give_up = || started.elapsed() >= timeout;
        let mut answer = crate::clickhouse::request(
            settings,
            &target,
            sql.as_bytes(),
            crate::post::Reading::Whole(ANSWER_MAX),
            &mut give_up,
        );
        // A table that takes no PREWHERE (a Buffer table in ClickHouse 18):
        // the same query with WHERE.
        if matches!(&answer, Ok(a) if a.status != 200 && a.body.starts_with(b"Code: 182")) {
            let sql = sql.replacen(" PREWHERE ", " WHERE ", 1);
            answer = crate::clickhouse::request(
                settings,
                &target,
                sql.as_bytes(),
                crate::post::Reading::Whole(ANSWER_MAX),
                &mut give_up,
            );
        }
        match answer {
            // A failure after rows were sent is a status too
            // (`wait_end_of_query`); an answer cut at `ANSWER_MAX` is not
            // complete. (The search of the rows for an exception's words
            // this replaced compared 17 bytes with 15: it never matched.)
            Ok(a) if a.status == 200 && a.complete => {
                String::from_utf8(a.body).map_err(|_| failed("an answer that is not UTF-8".to_string()))
            }
            Ok(a) if a.status == 200 => Err(failed(format!("a cut or failed answer ({} bytes)", a.body.len()))),
            Ok(a) => Err(failed(format!("{}: {}", a.status, String::from_utf8_lossy(&a.body).trim()))),
            Err(e) => Err(failed(e.to_string())),
        }
    };
    let (db, table) = (&settings.database, &settings.table);
    if let Some(id) = &q.id {
        let body = match run(&sql(q, scope, db, table, None)) {
            Ok(b) => b,
            Err(e) => return e,
        };
        // The record as it was written.
        let record = body.lines().next().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
        return match record.and_then(|r| r.get("record").and_then(|r| r.as_str()).map(str::to_string)) {
            Some(r) => {
                // Its captured bodies, from their own table; a record is
                // shown without them when that table cannot say.
                let captured = match settings.bodies.then(|| run(&bodies_sql(&r, scope, db, table))) {
                    Some(Ok(b)) => b.lines().next().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()),
                    Some(Err(_)) | None => None,
                };
                let capture = captured
                    .and_then(|c| c.get("capture").and_then(|c| c.as_str()).map(str::to_string))
                    .and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok());
                (200, "application/json", with_capture(r, capture, bodies))
            }
            None => (
                404,
                "application/json",
                error(&format!("no request {id:?} in the records you may see"), "not_found", "invalid_request_error"),
            ),
        };
    }
    if q.format != Format::Page {
        return match run(&sql(q, scope, db, table, None)) {
            Ok(body) if q.format == Format::Csv => (200, q.format.content_type(), crate::flat::csv_header() + &body),
            Ok(body) => (200, q.format.content_type(), body),
            Err(e) => e,
        };
    }
    // The newest row the filters match: where the windows start.
    let newest = match q.before.as_ref().map(|(ts, _)| *ts) {
        Some(ts) => Some(ts),
        None => {
            let newest = format!(
                "SELECT max(ts) AS m, count() AS n FROM {db}.{table}{} FORMAT JSONEachRow",
                filter(q, scope, None)
            );
            let body = match run(&newest) {
                Ok(b) => b,
                Err(e) => return e,
            };
            let row = body.lines().next().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
            let number = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<u64>().ok()).or(v.as_u64());
            row.filter(|r| number(&r["n"]).unwrap_or(0) > 0).and_then(|r| number(&r["m"]))
        }
    };
    let Some(newest) = newest else {
        return (200, "application/json", empty(Format::Page));
    };
    let mut body = String::new();
    for window in WINDOWS_MS {
        let from = window.map(|w| newest.saturating_sub(w));
        body = match run(&sql(q, scope, db, table, from)) {
            Ok(b) => b,
            Err(e) => return e,
        };
        let whole = from.is_none_or(|f| f == 0 || q.since_ms.is_some_and(|s| f <= s));
        if whole || body.lines().filter(|l| !l.is_empty()).count() as u64 > q.limit {
            break;
        }
    }
    let mut rows: Vec<&str> = body.lines().filter(|l| !l.is_empty()).collect();
    let next = (rows.len() as u64 > q.limit).then(|| {
        rows.truncate(q.limit as usize);
        rows.last().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()).map(|r| {
            let ts = r["ts"].as_str().map_or_else(|| r["ts"].to_string(), str::to_string);
            format!("{ts}:{}", r["id"].as_str().unwrap_or(""))
        })
    });
    let next = next.flatten().map_or("null".to_string(), |c| serde_json::Value::String(c).to_string());
    (200, "application/json", format!("{{\"requests\":[{}],\"next\":{next}}}", rows.join(",")))
}

/// OpenAI's error shape, as every other answer of the gateway writes it.
fn error(message: &str, code: &str, kind: &str) -> String {
    let mut out = bytes::BytesMut::new();
    tollgate_protocol::openai::write_error_body(&mut out, message, kind, code);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<Query, String> {
        parse(&pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>())
    }

    #[test]
    fn an_export_past_the_cap_says_it_was_cut() {
        let csv = "\"ts\",\"id\"\n1,\"a\nb\"\n2,\"c\"\n3,\"d\"\n".to_string();
        assert_eq!(mark_cut(Format::Csv, csv.clone(), 3), csv, "three rows: whole");
        let cut = mark_cut(Format::Csv, csv, 2);
        assert!(cut.starts_with("\"ts\",\"id\"\n1,\"a\nb\"\n2,\"c\"\n\"cut: more than 2 requests"), "{cut}");
        let lines = "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n".to_string();
        assert_eq!(mark_cut(Format::JsonLines, lines.clone(), 3), lines);
        let cut = mark_cut(Format::JsonLines, lines, 2);
        let last: serde_json::Value = serde_json::from_str(cut.lines().last().unwrap()).unwrap();
        assert_eq!((cut.lines().count(), last["cut"].as_bool(), last["rows"].as_u64()), (3, Some(true), Some(2)));
    }

    #[test]
    fn viewers_leave_the_last_slot_to_admins() {
        assert!(admits(AT_ONCE_MAX - 2, true) && !admits(AT_ONCE_MAX - 1, true));
        assert!(admits(AT_ONCE_MAX - 1, false) && !admits(AT_ONCE_MAX, false));
    }

    #[test]
    fn filters_become_escaped_literals_and_numbers() {
        let query =
            q(&[("team", "a'b\\c"), ("status", "429"), ("rule", "pii.email"), ("min_cost_usd", "0.5")]).unwrap();
        let s = sql(&query, Some(&["t1".to_string(), "o'x".to_string()]), "default", "tollgate_requests", None);
        assert!(s.contains("team IN ('t1', 'o\\'x')"), "{s}");
        assert!(s.contains("team = 'a\\'b\\\\c'"), "{s}");
        assert!(s.contains("status = 429") && s.contains("has(guardrail_rules, 'pii.email')"), "{s}");
        assert!(s.contains("cost_micro_usd >= 500000"), "{s}");
        assert!(s.ends_with("ORDER BY ts DESC, id DESC LIMIT 101 FORMAT JSONEachRow"), "{s}");
        // A viewer of no team sees nothing.
        assert!(sql(&query, Some(&[]), "d", "t", None).contains("PREWHERE 0"));
        assert!(sql(&query, None, "d", "t", Some(42)).contains("AND ts >= 42 ORDER BY"));
        for bad in [
            &[("status", "2OO")][..],
            &[("since", "-1")],
            &[("min_latency_ms", "NaN")],
            &[("min_cost_usd", "-3")],
            &[("format", "xml")],
            &[("before", "12")],
            &[("limit", "1; DROP TABLE x")],
            &[("drop", "table")],
        ] {
            assert!(q(bad).is_err(), "{bad:?}");
        }
        assert_eq!(q(&[("limit", "999999")]).unwrap().limit, PAGE_MAX);
        // An upper bound past ClickHouse's last day bounds no day (it read
        // as 0000-00-00, and matched nothing); one before it keeps its day.
        let forever = sql(&q(&[("until", "9999999999999")]).unwrap(), None, "d", "t", None);
        assert!(forever.contains("ts < 9999999999999") && !forever.contains("date <="), "{forever}");
        let last = sql(&q(&[("until", "4291747199999")]).unwrap(), None, "d", "t", None);
        assert!(last.contains("date <= '2105-12-31' AND ts < 4291747199999"), "{last}");
        let page = q(&[("before", "1795400000000:tg-1-0-7")]).unwrap();
        assert!(sql(&page, None, "d", "t", None)
            .contains("(ts < 1795400000000 OR (ts = 1795400000000 AND id < 'tg-1-0-7'))"));
    }
}
