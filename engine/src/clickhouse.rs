//! Request records into ClickHouse (`[clickhouse]`), for a fleet that
//! queries one store: the record thread ([`crate::logwriter`]) offers each
//! batch it has written to its files ([`Sink::offer`], a channel send of a
//! shared buffer); the `tollgate-clickhouse` thread turns each JSON line
//! into a row of the gateway's table (flat columns for filtering, the
//! record itself for the detail) and inserts them as `JSONEachRow` over the
//! HTTP interface, at most 4 MiB or one second apart.
//!
//! Bounded and never in a request's way: the bytes offered and not yet
//! taken are counted, and a batch that would pass `queue_bytes_max` is
//! dropped (its rows counted as dropped); an insert that fails is tried
//! again with back-off (250 ms doubling, up to 8 s between tries) until
//! ClickHouse takes it, refuses it for good (a 4xx other than 404, 408,
//! 429), or the process stops, while each failure says the rows are not
//! in (ClickHouse not reached, or its answer a refusal): a restart of the
//! server or an outage of minutes is held, not dropped, within the queue's
//! bound (the thread takes nothing new while it waits). An insert that got
//! no answer may be in: four of those and it is dropped, so that a server
//! that takes each insert and answers too late does not get it again
//! without end. On shutdown what is left is inserted
//! within [`crate::post::SHUTDOWN_GRACE`], else counted as dropped (the
//! record files keep every record either way). Captured prompts and answers are left out of
//! the table: they go to a table of their own beside it (`<table>_bodies`,
//! one row per captured record, partitioned by day), so that the
//! retention can drop whole days of them (ClickHouse 18 has no per-column
//! expiry) and the explorer can show them only to whom may see them.
//!
//! A retried insert that had in fact been written (its answer lost) is
//! written twice: a `ReplicatedMergeTree` table deduplicates such blocks;
//! the default `MergeTree` does not.

use std::cell::Cell;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;
use tollgate_policy::config::clickhouse::ClickHouse;

use crate::post::Counters;

const INSERT_BYTES: usize = 4 << 20;
const INSERT_EVERY: Duration = Duration::from_secs(1);

/// The record thread's side.
pub struct Sink {
    tx: mpsc::Sender<Bytes>,
    counters: Arc<Counters>,
}

impl Sink {
    /// A written batch of record lines, for the table; dropped (and
    /// counted) when the queue is at its bound.
    pub fn offer(&self, batch: Bytes) {
        let c = &self.counters;
        let len = batch.len();
        let lines = |b: &[u8]| memchr::memchr_iter(b'\n', b).count() as u64;
        if !c.admit(len) {
            c.drop_items(lines(&batch));
            return;
        }
        if let Err(mpsc::SendError(batch)) = self.tx.send(batch) {
            c.taken(len);
            c.drop_items(lines(&batch));
        }
    }
}

/// A started insert thread: the sink for the record thread, its counters,
/// the flag to set when the process stops, and the thread, which exits
/// once the sink is gone and what was offered is inserted (or its grace
/// spent).
pub struct Started {
    pub sink: Sink,
    pub counters: Arc<Counters>,
    pub stopping: Arc<AtomicBool>,
    pub thread: std::thread::JoinHandle<()>,
}

pub fn start(settings: ClickHouse) -> std::io::Result<Started> {
    let counters = Counters::new(settings.queue_bytes_max);
    let (grace, stopping) = crate::post::Grace::new();
    let (tx, rx) = mpsc::channel();
    let inserter = Inserter {
        settings,
        counters: counters.clone(),
        grace,
        created: Cell::new(false),
        bodies_paused: Cell::new(None),
    };
    let thread = std::thread::Builder::new().name("tollgate-clickhouse".into()).spawn(move || inserter.run(rx))?;
    Ok(Started { sink: Sink { tx, counters: counters.clone() }, counters, stopping, thread })
}

struct Inserter {
    settings: ClickHouse,
    counters: Arc<Counters>,
    grace: crate::post::Grace,
    /// The table is known to exist.
    created: Cell<bool>,
    /// Bodies are not inserted before this (their table refused them).
    bodies_paused: Cell<Option<Instant>>,
}

impl Inserter {
    fn run(self, rx: mpsc::Receiver<Bytes>) {
        let mut rows = BytesMut::new();
        let mut bodies = BytesMut::new();
        let mut count = 0u64;
        let mut since = Instant::now();
        loop {
            let done = match rx.recv_timeout(INSERT_EVERY.saturating_sub(since.elapsed())) {
                Ok(batch) => {
                    self.counters.taken(batch.len());
                    for line in batch.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        let to = if self.settings.bodies { Some(&mut bodies) } else { None };
                        if row(line, &mut rows, to) {
                            count += 1;
                        } else {
                            self.counters.drop_items(1);
                        }
                    }
                    false
                }
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                Err(mpsc::RecvTimeoutError::Disconnected) => true,
            };
            let full = rows.len() >= INSERT_BYTES || bodies.len() >= INSERT_BYTES;
            if full || since.elapsed() >= INSERT_EVERY || done {
                if count > 0 {
                    self.insert(&self.settings.table, &rows, count);
                    rows.clear();
                    count = 0;
                }
                // Counted with their records: a failed insert of bodies
                // is logged and counted as a failed insert, no more.
                if !bodies.is_empty() {
                    if self.bodies_paused.get().is_none_or(|until| Instant::now() >= until) {
                        self.insert(&bodies_table(&self.settings.table), &bodies, 0);
                    }
                    bodies.clear();
                }
                since = Instant::now();
            }
            if done {
                return;
            }
        }
    }

    /// One insert of `count` rows into `table` ([`crate::post::deliver`]).
    fn insert(&self, table: &str, rows: &[u8], count: u64) {
        use crate::post::Try;
        let s = &self.settings;
        let bodies = table != s.table;
        let query = format!("INSERT INTO {}.{table} FORMAT JSONEachRow", s.database);
        let target = format!("/?input_format_skip_unknown_fields=1&query={}", encode(&query));
        // Records wait out an outage; captured bodies (which the files
        // keep, and which never stand in the records' way) get four tries,
        // so that a failure only their table has cannot hold the records.
        let patience = if bodies { crate::post::Patience::Tries } else { crate::post::Patience::UntilStopping };
        crate::post::deliver(&self.grace, &self.counters, count, "rows to ClickHouse", patience, || {
            // A table not made yet: the insert was not sent.
            if let Err(e) = self.create() {
                return Try::Untaken(e.to_string());
            }
            let a = match self.post(&target, rows) {
                Ok(a) if a.status == 200 => return Try::Delivered,
                Ok(a) => a,
                // Not reached (down, restarting): nothing sent. Else the
                // insert went and no answer came: it may be in.
                Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return Try::Untaken(e.to_string()),
                Err(e) => return Try::Again(e.to_string()),
            };
            let why = format!("{} {}", a.status, String::from_utf8_lossy(&a.body).trim());
            match a.status {
                // A table dropped since it was made: made again, then
                // tried again.
                // The bodies' table missing: made again where the gateway
                // makes tables (dropped since, or its first CREATE failed),
                // then tried again; else (`create_table = false` and not
                // made, or the CREATE refused) bodies are dropped for a
                // minute, never in the records' way.
                404 if bodies && s.create_table && self.remake_bodies() => Try::Untaken(why),
                404 if bodies => {
                    self.bodies_paused.set(Some(Instant::now() + Duration::from_secs(60)));
                    Try::Hopeless(format!(
                        "{why}: create {}.{table} (clickhouse::bodies_schema) or set bodies = false",
                        s.database
                    ))
                }
                404 => {
                    self.created.set(false);
                    Try::Untaken(why)
                }
                413 => Try::Hopeless(format!(
                    "{why}: a proxy before ClickHouse refused a 4 MiB insert; raise its body limit"
                )),
                // A refusal of the rows themselves (a 4xx other than 404,
                // 408 and 429: a schema the table does not have) will not
                // pass on another try.
                // A proxy before ClickHouse that gave up waiting: the
                // insert went on, and may be in.
                502 | 504 => Try::Again(why),
                // ClickHouse answered: an insert it refused is not in.
                408 | 429 => Try::Untaken(why),
                400..=499 => Try::Hopeless(why),
                _ => Try::Untaken(why),
            }
        });
    }

    /// `CREATE TABLE IF NOT EXISTS`, once, when `create_table`. Only a
    /// ClickHouse that cannot be reached fails the try: one that refuses
    /// (a user without DDL rights, a table made by the operator) is told
    /// once in the log, and the insert says whether the table is there.
    fn create(&self) -> std::io::Result<()> {
        if self.created.get() || !self.settings.create_table {
            return Ok(());
        }
        let (db, table) = (&self.settings.database, &self.settings.table);
        let ddl = [Some(schema(db, table)), self.settings.bodies.then(|| bodies_schema(db, table))];
        for ddl in ddl.into_iter().flatten() {
            let a = self.post("/", ddl.as_bytes())?;
            if a.status != 200 {
                tracing::warn!(
                    status = a.status,
                    answer = %String::from_utf8_lossy(&a.body).trim(),
                    "ClickHouse refused CREATE TABLE IF NOT EXISTS; inserting into the table as it is"
                );
            }
        }
        self.created.set(true);
        Ok(())
    }

    /// `CREATE TABLE IF NOT EXISTS` for the bodies' table, now: whether
    /// ClickHouse took it.
    fn remake_bodies(&self) -> bool {
        let ddl = bodies_schema(&self.settings.database, &self.settings.table);
        self.post("/", ddl.as_bytes()).is_ok_and(|a| a.status == 200)
    }

    fn post(&self, target: &str, body: &[u8]) -> std::io::Result<crate::post::Answer> {
        let started = Instant::now();
        let timeout = self.settings.timeout;
        let mut give_up = || started.elapsed() >= timeout || self.grace.over();
        request(&self.settings, target, body, crate::post::Reading::Status, &mut give_up)
    }
}

/// One POST to ClickHouse's HTTP interface as the configured user.
pub fn request(
    s: &ClickHouse,
    target: &str,
    body: &[u8],
    read: crate::post::Reading,
    give_up: &mut dyn FnMut() -> bool,
) -> std::io::Result<crate::post::Answer> {
    let mut headers = String::from("content-type: text/plain; charset=utf-8\r\n");
    if let Some(user) = &s.user {
        headers.push_str(&format!("x-clickhouse-user: {user}\r\n"));
    }
    if let Some(p) = &s.password {
        headers.push_str(&format!("x-clickhouse-key: {}\r\n", p.0));
    }
    let connect = s.timeout.min(Duration::from_secs(2));
    crate::post::post(&s.authority, target, &headers, &[body], connect, read, give_up)
}

/// The gateway's table: flat columns to filter on, ordered by team and
/// time, partitioned by day, and the record itself.
pub fn schema(database: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{table} (\
         date Date, ts UInt64, id String, team String, key String, run String, \
         model String, provider String, upstream_model String, status UInt16, stream UInt8, `end` String, \
         attempts UInt8, tokens_prompt UInt64, tokens_completion UInt64, tokens_cached UInt64, \
         cost_micro_usd UInt64, latency_ms Float64, upstream_ms Float64, ttft_ms Float64, gateway_ms Float64, \
         bytes_in UInt64, bytes_out UInt64, cache String, \
         guardrail_rules Array(String), guardrail_actions Array(String), record String\
         ) ENGINE = MergeTree() PARTITION BY date ORDER BY (team, ts, id)"
    )
}

/// The table of captured bodies beside the records' table.
pub fn bodies_table(table: &str) -> String {
    format!("{table}_bodies")
}

/// Captured prompts and answers, one row per record that has them (its
/// `capture` object as JSON), by day, so that a day's can be dropped
/// whole.
pub fn bodies_schema(database: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{} (date Date, ts UInt64, id String, team String, capture String) \
         ENGINE = MergeTree() PARTITION BY date ORDER BY (team, ts, id)",
        bodies_table(table)
    )
}

/// Drops the days of captured bodies whose UTC day ended `days` days
/// before `now_s` (as the retention does to the files): whole partitions,
/// listed from `system.parts`.
pub fn drop_bodies(s: &ClickHouse, days: u32, now_s: u64) -> std::io::Result<usize> {
    let today = (now_s / 86_400) as i64;
    let started = Instant::now();
    let mut give_up = || started.elapsed() >= s.timeout;
    let list = format!(
        "SELECT DISTINCT partition FROM system.parts WHERE database = '{}' AND table = '{}' AND active FORMAT TSV",
        s.database,
        bodies_table(&s.table)
    );
    let a = request(s, "/?readonly=2", list.as_bytes(), crate::post::Reading::Whole(1 << 20), &mut give_up)?;
    if a.status != 200 || !a.complete {
        return Err(std::io::Error::other(format!("{}: {}", a.status, String::from_utf8_lossy(&a.body).trim())));
    }
    let (mut dropped, mut failed) = (0, Vec::new());
    for partition in String::from_utf8_lossy(&a.body).lines() {
        // A Date partition is listed as its date, quoted or not.
        let date = partition.trim().trim_matches('\'');
        let day =
            date.split('-').map(str::parse::<u32>).collect::<Result<Vec<_>, _>>().ok().and_then(|p| match p[..] {
                [y, m, d] => Some(tollgate_policy::calendar::days_from_civil(y as i64, m, d)),
                _ => None,
            });
        if day.is_none_or(|d| d + 1 + i64::from(days) > today) {
            continue;
        }
        let ddl = format!("ALTER TABLE {}.{} DROP PARTITION '{date}'", s.database, bodies_table(&s.table));
        // One day that cannot go (past max_partition_size_to_drop, say)
        // keeps none of the others; each has the whole time-out.
        let started = Instant::now();
        let mut give_up = || started.elapsed() >= s.timeout;
        match request(s, "/", ddl.as_bytes(), crate::post::Reading::Status, &mut give_up) {
            Ok(a) if a.status == 200 => dropped += 1,
            Ok(a) => failed.push(format!("{date}: {}", a.status)),
            Err(e) => failed.push(format!("{date}: {e}")),
        }
    }
    if !failed.is_empty() {
        return Err(std::io::Error::other(format!("{dropped} dropped, not {}", failed.join(", "))));
    }
    Ok(dropped)
}

/// A row as the table takes it.
#[derive(serde::Serialize)]
struct Row<'r> {
    date: String,
    #[serde(flatten)]
    flat: crate::flat::Flat<'r>,
    record: &'r str,
}

/// A record's captured bodies as the bodies table takes them.
#[derive(serde::Serialize)]
struct Bodies<'r> {
    date: &'r str,
    ts: u64,
    id: &'r str,
    team: &'r str,
    capture: String,
}

/// One record line as a `JSONEachRow` row (and, when it has captured
/// bodies, a row of them into `bodies`); false for a line that is not a
/// record (never written by this gateway, but never a reason to stop).
pub fn row(line: &[u8], out: &mut BytesMut, bodies: Option<&mut BytesMut>) -> bool {
    let Some(r) = crate::flat::Record::parse(line) else { return false };
    let text = std::str::from_utf8(line).expect("parsed as UTF-8 above");
    // Captured bodies stay in the files, under their retention: a record
    // with them is stored without them (rewritten: the rare, slow path).
    let stripped;
    let mut captured = None;
    let record = if memchr::memmem::find(line, b"\"capture\"").is_some() {
        let Ok(Value::Object(mut m)) = serde_json::from_str::<Value>(text) else { return false };
        captured = m.remove("capture");
        stripped = Value::Object(m).to_string();
        stripped.as_str()
    } else {
        text
    };
    let flat = r.flat();
    let date = tollgate_policy::calendar::utc_date(flat.ts / 1000);
    let bodies_row = captured.filter(Value::is_object).map(|capture| Bodies {
        date: &date,
        ts: flat.ts,
        id: flat.id,
        team: flat.team,
        capture: capture.to_string(),
    });
    let bodies_row = bodies_row.and_then(|b| serde_json::to_vec(&b).ok());
    let row = Row { date, flat, record };
    // Both rows or neither; a row is written whole or not at all.
    let start = out.len();
    let mut w = std::mem::take(out).writer();
    let ok = serde_json::to_writer(&mut w, &row).is_ok();
    *out = w.into_inner();
    if !ok {
        out.truncate(start);
        return false;
    }
    out.extend_from_slice(b"\n");
    if let (Some(b), Some(bodies)) = (bodies_row, bodies) {
        bodies.extend_from_slice(&b);
        bodies.extend_from_slice(b"\n");
    }
    true
}

/// Percent-encodes a query for the URL's query string.
fn encode(q: &str) -> String {
    let mut out = String::with_capacity(q.len() * 3);
    for &b in q.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_becomes_a_flat_row_without_its_captured_bodies() {
        let line = br#"{"id":"tg-1-0-1","ts":1795400000123,"team":"a","key":"k","model":"gpt-4o","provider":"up","upstream_model":"gpt-4o-2024","attempts":[{"provider":"up","status":200,"ms":1.0}],"status":200,"stream":true,"tokens":{"prompt":10,"completion":5,"cached":2},"cost_micro_usd":75,"latency_ms":{"total":3.5,"upstream":3.0,"ttft":1.0,"gateway":0.2},"bytes_in":100,"bytes_out":200,"cache":{"outcome":"miss"},"guardrails":{"profile":"p","hits":[{"rule":"pii.email","action":"redact","in":"request","text":0,"at":1,"len":5}]},"capture":{"prompt":"secret","answer":"secret"},"end":"completed"}"#;
        let (mut out, mut bodies) = (BytesMut::new(), BytesMut::new());
        assert!(row(line, &mut out, Some(&mut bodies)));
        let v: Value = serde_json::from_slice(&out).unwrap();
        let b: Value = serde_json::from_slice(&bodies).unwrap();
        assert_eq!(
            (b["id"].as_str(), b["date"].as_str(), b["team"].as_str()),
            (Some("tg-1-0-1"), Some("2026-11-23"), Some("a"))
        );
        let capture: Value = serde_json::from_str(b["capture"].as_str().unwrap()).unwrap();
        assert_eq!(capture["prompt"], "secret", "the bodies go to their own table");
        assert_eq!(v["date"], "2026-11-23");
        assert_eq!(v["team"], "a");
        assert_eq!(v["tokens_cached"], 2);
        assert_eq!(v["attempts"], 1);
        assert_eq!(v["guardrail_rules"], serde_json::json!(["pii.email"]));
        assert_eq!(v["end"], "completed");
        assert!(!out.windows(6).any(|w| w == b"secret"), "captured bodies left the files");
        // A rejected request: nulls become empty strings and zeros.
        let (mut out, mut bodies) = (BytesMut::new(), BytesMut::new());
        assert!(row(br#"{"id":"x","ts":1,"team":null,"key":null,"model":null,"attempts":[],"status":401,"stream":false,"latency_ms":{"total":0.1},"bytes_in":0,"bytes_out":90,"end":"rejected"}"#, &mut out, Some(&mut bodies)));
        assert!(bodies.is_empty(), "nothing captured, no row of bodies");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((v["team"].as_str(), v["status"].as_u64()), (Some(""), Some(401)));
        assert!(!row(b"not json", &mut BytesMut::new(), None));
        assert!(!row(b"[1,2]", &mut BytesMut::new(), None));
    }

    #[test]
    fn the_insert_query_is_percent_encoded() {
        assert_eq!(encode("INSERT INTO a.b FORMAT JSONEachRow"), "INSERT%20INTO%20a.b%20FORMAT%20JSONEachRow");
    }
}
