//! The explorer's index beside the record files, for a node without
//! `[clickhouse]`: for each `tollgate-requests-*.jsonl` under `[logging]
//! dir`, `DIR/.index/<name>.idx` holds one fixed entry of [`ENTRY`] bytes per
//! record line, in the file's order: where the line is, its `ts`, the
//! hashes of its text columns, its status, latency and cost, and bit masks
//! of its guardrail rules and actions. A query reads entries (a day at
//! 100 requests/s is 8.6 million of them, 660 MiB) instead of parsing
//! lines (4.4 GiB), and parses only the lines whose entries match.
//!
//! Entries are what a query may skip on, never what it answers with:
//! hashes and masks can collide, so every line an entry lets through is
//! read and checked against the query itself ([`crate::explorer`]).
//!
//! Records are written when requests end, in an order close to but not
//! the same as their `ts` (when they started). Each entry carries the
//! largest `ts` of the lines before it in its file, and each header its
//! file's largest, so that a scan back from the newest line knows when
//! nothing before it (in this file or an earlier one, whatever order the
//! files were written in) can still come ahead of what it has found.
//!
//! Kept current by the `tollgate-index` thread (every second, newest file
//! first) and by each explorer query before it reads (passing over a file
//! another catch-up holds, and leaving a large unindexed one to the
//! thread). An index
//! whose file was replaced (the capture retention rewrites old days),
//! shortened, or damaged is built again beside it and renamed over it, so
//! that a query holding the old one reads it whole; a torn tail (a crash
//! between entries and header) is cut back to what the header counts; an
//! incomplete last line waits for its newline. A line that is not a record
//! (or is longer than [`LINE_BYTES_MAX`]) gets no entry. Indexes of record
//! files that are gone are removed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::flat::Record;

/// Bytes per entry.
pub const ENTRY: usize = 80;
const HEADER: usize = 64;
const MAGIC: &[u8; 8] = b"TGINDEX2";
/// The folder, under the records' directory, that holds the indexes.
const FOLDER: &str = ".index";
/// Bytes of a record file read at once while indexing (more when one
/// line is longer).
const READ_BYTES: usize = 4 << 20;

/// How long a query waits for a file another catch-up holds.
const QUERY_WAITS_MAX: Duration = Duration::from_millis(250);

/// The largest record file a query indexes from nothing (about 0.1 s);
/// larger ones are the thread's.
const QUERY_BUILDS_MAX: u64 = 16 << 20;

/// One catch-up at a time in the process: the thread's and the queries'.
static CATCHING_UP: Mutex<()> = Mutex::new(());

/// Holds the catch-up, as the thread does while it rebuilds a day.
#[cfg(test)]
pub(crate) fn busy() -> std::sync::MutexGuard<'static, ()> {
    CATCHING_UP.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tests that catch up share one process-wide mutex: one at a time,
/// so that none sees another's catch-up as busy.
#[cfg(test)]
pub(crate) fn one_test_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TESTS: Mutex<()> = Mutex::new(());
    TESTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A record line as a query sees it before reading it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Entry {
    pub ts: u64,
    /// The largest `ts` of the lines before this one in its file (a query
    /// adds the files before it: [`Header::ts_max`]).
    pub ts_max_before: u64,
    pub offset: u64,
    pub len: u32,
    pub cost_micro_usd: u64,
    /// A bit per rule ([`bit64`]) of the record's guardrail hits.
    pub rules: u64,
    /// A bit per action ([`bit16`]).
    pub actions: u16,
    pub status: u16,
    pub latency_ms: f32,
    pub id: u32,
    pub team: u32,
    pub key: u32,
    pub model: u32,
    pub provider: u32,
    pub end: u32,
    pub cache: u32,
}

impl Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ts.to_le_bytes());
        out.extend_from_slice(&self.ts_max_before.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.cost_micro_usd.to_le_bytes());
        out.extend_from_slice(&self.rules.to_le_bytes());
        for h in [self.id, self.team, self.key, self.model, self.provider, self.end, self.cache] {
            out.extend_from_slice(&h.to_le_bytes());
        }
        out.extend_from_slice(&self.latency_ms.to_le_bytes());
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&self.actions.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Entry {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().expect("2 bytes"));
        Entry {
            ts: u64_at(0),
            ts_max_before: u64_at(8),
            offset: u64_at(16),
            cost_micro_usd: u64_at(24),
            rules: u64_at(32),
            id: u32_at(40),
            team: u32_at(44),
            key: u32_at(48),
            model: u32_at(52),
            provider: u32_at(56),
            end: u32_at(60),
            cache: u32_at(64),
            latency_ms: f32::from_bits(u32_at(68)),
            status: u16_at(72),
            actions: u16_at(74),
            len: u32_at(76),
        }
    }

    fn of(line: &[u8], offset: u64, ts_max_before: u64) -> Option<Entry> {
        let record = Record::parse(line)?;
        let f = record.flat();
        Some(Entry {
            ts: f.ts,
            ts_max_before,
            offset,
            len: u32::try_from(line.len()).ok()?,
            cost_micro_usd: f.cost_micro_usd,
            rules: f.guardrail_rules.iter().fold(0, |m, r| m | bit64(r)),
            actions: f.guardrail_actions.iter().fold(0, |m, a| m | bit16(a)),
            status: f.status,
            latency_ms: f.latency_ms as f32,
            id: hash(f.id),
            team: hash(f.team),
            key: hash(f.key),
            model: hash(f.model),
            provider: hash(f.provider),
            end: hash(f.end),
            cache: hash(f.cache),
        })
    }
}

/// FNV-1a: stable across builds, as an index on disk needs.
pub fn hash(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

pub fn bit64(s: &str) -> u64 {
    1 << (hash(s) % 64)
}

pub fn bit16(s: &str) -> u16 {
    1 << (hash(s) % 16)
}

/// An index's header: which file it indexes and how far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Header {
    /// The record file's inode: another file under the name (rewritten by
    /// the retention) is indexed again.
    inode: u64,
    /// Bytes of the record file indexed: whole lines.
    indexed: u64,
    pub count: u64,
    /// The largest `ts` in this file (0 while empty).
    pub ts_max: u64,
    /// The smallest `ts` in this file (`u64::MAX` while empty).
    pub ts_min: u64,
}

impl Header {
    /// Whether `opened` is the index this header was read from (not one
    /// built again since).
    pub fn same_records(&self, opened: &Opened) -> bool {
        self.inode == opened.header.inode && self.count <= opened.header.count
    }

    fn encode(&self) -> [u8; HEADER] {
        let mut b = [0u8; HEADER];
        b[..8].copy_from_slice(MAGIC);
        for (i, v) in [self.inode, self.indexed, self.count, self.ts_max, self.ts_min].into_iter().enumerate() {
            b[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn decode(b: &[u8; HEADER]) -> Option<Header> {
        if &b[..8] != MAGIC {
            return None;
        }
        let v = |i: usize| u64::from_le_bytes(b[8 + i * 8..16 + i * 8].try_into().expect("8 bytes"));
        Some(Header { inode: v(0), indexed: v(1), count: v(2), ts_max: v(3), ts_min: v(4) })
    }
}

/// A record file and its index.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub records: PathBuf,
    pub index: PathBuf,
    day: i64,
    part: u32,
}

impl Part {
    /// The largest `ts` the file can hold: no record in it started after
    /// its day (records are written when requests end, into the file of
    /// the day they are written; a clock stepped back across midnight is
    /// the one exception).
    pub fn ts_bound(&self) -> u64 {
        u64::try_from(self.day + 1).unwrap_or(0).saturating_mul(86_400_000).saturating_sub(1)
    }
}

/// The record files under `dir` in the order they are written: by day,
/// then part (`...DATE.jsonl`, `...DATE.1.jsonl`, ...). A query does not
/// rely on it (a writer restarted with a larger size limit appends to an
/// earlier part).
pub fn parts(dir: &Path) -> io::Result<Vec<Part>> {
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        // Plain files only (a FIFO under the name would block its reader).
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(day) = crate::retention::file_day(name) else { continue };
        let rest = &name["tollgate-requests-".len() + 10..name.len() - ".jsonl".len()];
        let part = rest.strip_prefix('.').map_or(Some(0), |n| n.parse().ok());
        let Some(part) = part else { continue };
        let index = dir.join(FOLDER).join(format!("{name}.idx"));
        parts.push(Part { records: path, index, day, part });
    }
    parts.sort_by_key(|p| (p.day, p.part));
    Ok(parts)
}

/// Brings every index under `dir` up to its record file, newest first,
/// and removes the indexes of record files that are gone (the thread's
/// pass). A part that cannot be indexed (unreadable, a full disk) is
/// logged and left; the others go on.
pub fn catch_up(dir: &Path) -> io::Result<()> {
    catch_up_parts(dir, true)
}

/// [`catch_up`] for a query: a part that another catch-up holds past
/// [`QUERY_WAITS_MAX`] (the thread's, rebuilding a day, say) is passed
/// over, so that a query reads what is indexed rather than wait.
pub fn catch_up_unless_busy(dir: &Path) -> io::Result<()> {
    catch_up_parts(dir, false)
}

/// One part at a time under the mutex, newest first: a new day's file is
/// indexed before an old day's is rebuilt, and a query waits on none.
fn catch_up_parts(dir: &Path, wait: bool) -> io::Result<()> {
    let folder = dir.join(FOLDER);
    std::fs::create_dir_all(&folder)?;
    let parts = parts(dir)?;
    // A query waits a moment in all (the thread's pass over a file that
    // grew takes milliseconds: a new day's file would otherwise answer 503
    // until the thread is done with it), never through a day's rebuild.
    let tried_until = std::time::Instant::now() + QUERY_WAITS_MAX;
    let lock = || loop {
        match (wait, CATCHING_UP.try_lock()) {
            (_, Ok(g)) => return Some(g),
            (_, Err(std::sync::TryLockError::Poisoned(e))) => return Some(e.into_inner()),
            (true, Err(std::sync::TryLockError::WouldBlock)) => {
                return Some(CATCHING_UP.lock().unwrap_or_else(|e| e.into_inner()))
            }
            (false, Err(std::sync::TryLockError::WouldBlock)) if std::time::Instant::now() >= tried_until => {
                return None
            }
            (false, Err(std::sync::TryLockError::WouldBlock)) => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    for part in parts.iter().rev() {
        let Some(_one) = lock() else { continue };
        if let Err(e) = catch_up_part(part, wait) {
            tracing::warn!(error = %e, file = %part.records.display(), "cannot index a request records file for the explorer");
        }
    }
    // Indexes (and unfinished rebuilds) whose record file is gone.
    if wait {
        let _one = lock();
        let parts = self::parts(dir)?;
        for entry in std::fs::read_dir(&folder)?.flatten() {
            let path = entry.path();
            if !parts.iter().any(|p| p.index == path) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    Ok(())
}

/// Indexes what `part` gained since it was last indexed; a new index (none
/// yet, another file under the name, a shortened or damaged one) is built
/// beside and renamed over the old, so that a query reading the old one
/// keeps it whole.
/// `rebuild`: an index may be built whatever the file's size; a query
/// (false) builds only a small one (a new file), so that it never spends
/// its time on a day's.
fn catch_up_part(part: &Part, rebuild: bool) -> io::Result<()> {
    let meta = match std::fs::metadata(&part.records) {
        Ok(m) => m,
        // Gone since it was listed (rewritten and renamed): next time.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_file() {
        return Err(io::Error::other("not a plain file"));
    }
    let records = File::open(&part.records)?;
    let meta = records.metadata()?;
    if let Ok(index) = OpenOptions::new().read(true).write(true).open(&part.index) {
        if let Some(header) = usable(&index, &meta)? {
            if header.indexed == meta.len() {
                return Ok(());
            }
            return extend(&index, header, &records, meta.len());
        }
    }
    if !rebuild && meta.len() > QUERY_BUILDS_MAX {
        return Ok(());
    }
    let building = part.index.with_extension("idx.building");
    let index = File::create(&building)?;
    let fresh = Header { inode: meta.ino(), ts_min: u64::MAX, ..Header::default() };
    index.write_all_at(&fresh.encode(), 0)?;
    extend(&index, fresh, &records, meta.len())?;
    std::fs::rename(&building, &part.index)
}

/// The header of an index that can be extended: of this very file, no
/// further than it, whole (a torn tail is cut back to what the header
/// counts; a tail shorter than it, or a last entry that is not one, means
/// building it again).
fn usable(index: &File, records: &std::fs::Metadata) -> io::Result<Option<Header>> {
    let mut raw = [0u8; HEADER];
    if index.read_at(&mut raw, 0)? != HEADER {
        return Ok(None);
    }
    let Some(h) = Header::decode(&raw) else { return Ok(None) };
    let Some(counted) = h.count.checked_mul(ENTRY as u64).and_then(|n| n.checked_add(HEADER as u64)) else {
        return Ok(None);
    };
    let len = index.metadata()?.len();
    if h.inode != records.ino() || h.indexed > records.len() || len < counted {
        return Ok(None);
    }
    if h.count > 0 {
        let mut last = [0u8; ENTRY];
        index.read_exact_at(&mut last, counted - ENTRY as u64)?;
        let e = Entry::decode(&last);
        if e.len == 0 || e.offset + u64::from(e.len) > h.indexed || e.ts > h.ts_max || e.ts_max_before > h.ts_max {
            return Ok(None);
        }
    }
    if len > counted {
        index.set_len(counted)?;
    }
    Ok(Some(h))
}

/// A line longer than this gets no entry (the writer's lines are bounded
/// by the largest body; this only keeps a damaged file from using memory
/// without bound).
#[cfg(not(test))]
const LINE_BYTES_MAX: usize = 256 << 20;
#[cfg(test)]
const LINE_BYTES_MAX: usize = READ_BYTES * 2;

/// Appends the entries of `records`' whole lines from `header.indexed` up
/// to `len`, then the header.
fn extend(index: &File, mut header: Header, records: &File, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BYTES];
    let mut entries = Vec::with_capacity(READ_BYTES / 8);
    let mut filled = 0;
    let mut end = HEADER as u64 + header.count * ENTRY as u64;
    // Past a line over the bound: its bytes are skipped to its newline.
    let mut skipping = false;
    while header.indexed + (filled as u64) < len {
        if filled == buf.len() {
            if buf.len() >= LINE_BYTES_MAX {
                skipping = true;
                header.indexed += filled as u64;
                filled = 0;
            } else {
                buf.resize(buf.len() * 2, 0);
            }
        }
        let n = records.read_at(&mut buf[filled..], header.indexed + filled as u64)?;
        if n == 0 {
            break;
        }
        filled += n;
        // Whole lines only; the rest waits for more bytes or its newline.
        let Some(last) = memchr::memrchr(b'\n', &buf[..filled]) else { continue };
        entries.clear();
        let mut at = 0;
        for line in buf[..last].split(|&b| b == b'\n') {
            let offset = header.indexed + at as u64;
            at += line.len() + 1;
            if std::mem::take(&mut skipping) {
                continue;
            }
            if let Some(e) = Entry::of(line, offset, header.ts_max) {
                header.ts_max = header.ts_max.max(e.ts);
                header.ts_min = header.ts_min.min(e.ts);
                header.count += 1;
                e.encode(&mut entries);
            }
        }
        index.write_all_at(&entries, end)?;
        end += entries.len() as u64;
        header.indexed += (last + 1) as u64;
        index.write_all_at(&header.encode(), 0)?;
        buf.copy_within(last + 1..filled, 0);
        filled -= last + 1;
    }
    Ok(())
}

/// An index as a query finds it.
pub enum Open {
    Ready(Opened),
    /// Its header, the files closed ([`header`]).
    Header(Header),
    /// The record file is gone.
    Gone,
    /// Not (yet) the index of the record file under its name: being built
    /// or rebuilt.
    Stale,
}

/// An index's header as a query first sees it (nothing kept open): a
/// file's bounds, before any is read.
pub fn header(part: &Part) -> io::Result<Open> {
    Ok(match Opened::open(part)? {
        Open::Ready(o) => Open::Header(o.header),
        other => other,
    })
}

/// An index opened for reading, with its record file.
pub struct Opened {
    pub header: Header,
    index: File,
    records: File,
}

impl Opened {
    pub fn open(part: &Part) -> io::Result<Open> {
        let records = match File::open(&part.records) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Open::Gone),
            Err(e) => return Err(e),
        };
        let Ok(index) = File::open(&part.index) else { return Ok(Open::Stale) };
        let mut raw = [0u8; HEADER];
        if index.read_at(&mut raw, 0)? != HEADER {
            return Ok(Open::Stale);
        }
        match Header::decode(&raw) {
            Some(header) if header.inode == records.metadata()?.ino() => {
                Ok(Open::Ready(Opened { header, index, records }))
            }
            _ => Ok(Open::Stale),
        }
    }

    /// Entries `[from, to)` into `buf`, decoded.
    pub fn entries(&self, from: u64, to: u64, buf: &mut Vec<u8>, out: &mut Vec<Entry>) -> io::Result<()> {
        buf.resize((to - from) as usize * ENTRY, 0);
        self.index.read_exact_at(buf, HEADER as u64 + from * ENTRY as u64)?;
        out.clear();
        out.extend(buf.chunks_exact(ENTRY).map(Entry::decode));
        Ok(())
    }

    /// The line an entry points at.
    pub fn line(&self, e: &Entry) -> io::Result<Vec<u8>> {
        let mut line = vec![0u8; e.len as usize];
        self.records.read_exact_at(&mut line, e.offset)?;
        Ok(line)
    }
}

/// Starts the `tollgate-index` thread (detached: its work is redone from
/// the files whenever it stops).
pub fn start(dir: PathBuf) {
    let spawned = std::thread::Builder::new().name("tollgate-index".into()).spawn(move || loop {
        if let Err(e) = catch_up(&dir) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot index the request records for the explorer");
        }
        std::thread::sleep(Duration::from_secs(1));
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the records' index thread: the explorer indexes only small files when asked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(id: &str, ts: u64, team: &str) -> String {
        format!(
            "{{\"id\":\"{id}\",\"ts\":{ts},\"team\":\"{team}\",\"status\":200,\"cost_micro_usd\":7,\"latency_ms\":{{\"total\":2.5}},\"guardrails\":{{\"hits\":[{{\"rule\":\"pii.email\",\"action\":\"flag\"}}]}}}}\n"
        )
    }

    fn read_all(dir: &Path) -> Vec<(PathBuf, Header, Vec<Entry>)> {
        parts(dir)
            .unwrap()
            .iter()
            .map(|p| {
                let Open::Ready(o) = Opened::open(p).unwrap() else { panic!("{p:?} not ready") };
                let mut out = Vec::new();
                o.entries(0, o.header.count, &mut Vec::new(), &mut out).unwrap();
                (p.records.clone(), o.header, out)
            })
            .collect()
    }

    #[test]
    fn a_line_past_the_bound_gets_no_entry_and_the_next_one_does() {
        let _one = one_test_at_a_time();
        let dir = std::env::temp_dir().join(format!("tollgate-record-index-long-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let long = format!("{{\"id\":\"long\",\"ts\":2,\"pad\":\"{}\"}}\n", "x".repeat(LINE_BYTES_MAX * 2));
        let text = format!("{}{long}{}", line("a", 1, "t"), line("b", 3, "t"));
        std::fs::write(dir.join("tollgate-requests-2026-12-01.jsonl"), &text).unwrap();
        catch_up(&dir).unwrap();
        let all = read_all(&dir);
        assert_eq!(all[0].2.iter().map(|e| e.ts).collect::<Vec<_>>(), [1, 3]);
        let b = all[0].2[1];
        assert_eq!(&text.as_bytes()[b.offset as usize..][..b.len as usize], line("b", 3, "t").trim_end().as_bytes());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn entries_round_trip() {
        let e = Entry {
            ts: 1,
            ts_max_before: 2,
            offset: 3,
            len: 4,
            cost_micro_usd: 5,
            rules: 6,
            actions: 7,
            status: 8,
            latency_ms: 9.5,
            id: 10,
            team: 11,
            key: 12,
            model: 13,
            provider: 14,
            end: 15,
            cache: 16,
        };
        let mut b = Vec::new();
        e.encode(&mut b);
        assert_eq!(b.len(), ENTRY);
        assert_eq!(Entry::decode(&b), e);
    }

    #[test]
    fn indexes_whole_lines_in_write_order_and_follows_rewrites() {
        let _one = one_test_at_a_time();
        let dir = std::env::temp_dir().join(format!("tollgate-record-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let day1 = dir.join("tollgate-requests-2026-12-01.jsonl");
        let day1b = dir.join("tollgate-requests-2026-12-01.1.jsonl");
        let day2 = dir.join("tollgate-requests-2026-12-02.jsonl");
        // Parts are written in order 0, 1, 10 (not the names' order).
        std::fs::write(dir.join("tollgate-requests-2026-12-01.10.jsonl"), line("p10", 40, "a")).unwrap();
        std::fs::write(&day1b, line("p1", 30, "a")).unwrap();
        // A line that is not a record, and an unfinished one.
        std::fs::write(&day1, format!("{}not json\n{}{{\"id\":\"half", line("a", 20, "a"), line("b", 10, "b")))
            .unwrap();
        std::fs::write(&day2, "").unwrap();
        catch_up(&dir).unwrap();
        let all = read_all(&dir);
        let names: Vec<_> = all.iter().map(|(p, ..)| p.file_name().unwrap().to_str().unwrap().to_string()).collect();
        assert_eq!(
            names,
            [
                "tollgate-requests-2026-12-01.jsonl",
                "tollgate-requests-2026-12-01.1.jsonl",
                "tollgate-requests-2026-12-01.10.jsonl",
                "tollgate-requests-2026-12-02.jsonl"
            ]
        );
        let (_, h, first) = &all[0];
        assert_eq!(first.iter().map(|e| (e.ts, e.ts_max_before)).collect::<Vec<_>>(), [(20, 0), (10, 20)]);
        assert_eq!((h.ts_min, h.ts_max), (10, 20));
        assert_eq!(first[1].team, hash("b"));
        assert_eq!(first[0].rules, bit64("pii.email"));
        assert_eq!(first[0].latency_ms, 2.5);
        // Each entry points at its line.
        let text = std::fs::read(&day1).unwrap();
        let e = first[1];
        assert_eq!(
            &text[e.offset as usize..(e.offset + u64::from(e.len)) as usize],
            line("b", 10, "b").trim_end().as_bytes()
        );
        // Each file's own: the first line of a file has nothing before it.
        assert_eq!(all[1].2[0].ts_max_before, 0);
        assert_eq!((all[1].1.ts_max, all[2].1.ts_max), (30, 40));
        assert_eq!(all[3].1.count, 0);
        // The unfinished line ends; more lines come.
        let mut f = OpenOptions::new().append(true).open(&day1).unwrap();
        f.write_all(format!("\",\"ts\":50,\"status\":200}}\n{}", line("c", 60, "a")).as_bytes()).unwrap();
        catch_up(&dir).unwrap();
        let first = &read_all(&dir)[0].2;
        assert_eq!(first.iter().map(|e| e.ts).collect::<Vec<_>>(), [20, 10, 50, 60]);
        assert_eq!(first[2].id, hash("half"));
        // Rewritten under the same name (the retention): indexed again.
        let tmp = dir.join("rewrite.tmp");
        std::fs::write(&tmp, line("only", 5, "z")).unwrap();
        std::fs::rename(&tmp, &day1).unwrap();
        catch_up(&dir).unwrap();
        let all = read_all(&dir);
        assert_eq!(all[0].2.iter().map(|e| e.ts).collect::<Vec<_>>(), [5]);
        // A torn tail (entries past the header's count) is cut back.
        let index = &parts(&dir).unwrap()[0].index;
        let mut f = OpenOptions::new().append(true).open(index).unwrap();
        f.write_all(&[7u8; ENTRY + 3]).unwrap();
        catch_up(&dir).unwrap();
        assert_eq!(std::fs::metadata(index).unwrap().len(), (HEADER + ENTRY) as u64);
        // Shorter than its header counts (entries lost, the header kept),
        // or a last entry of zeros: built again, never padded.
        let cut = |f: &File| f.set_len((HEADER + ENTRY / 2) as u64).unwrap();
        let zeroed = |f: &File| f.write_all_at(&[0u8; ENTRY], HEADER as u64).unwrap();
        for damage in [&cut as &dyn Fn(&File), &zeroed] {
            damage(&OpenOptions::new().write(true).open(index).unwrap());
            catch_up(&dir).unwrap();
            let all = read_all(&dir);
            assert_eq!(all[0].2.iter().map(|e| (e.ts, e.len > 0)).collect::<Vec<_>>(), [(5, true)]);
        }
        // A garbled header: built again.
        std::fs::write(index, b"garbage").unwrap();
        catch_up(&dir).unwrap();
        assert_eq!(read_all(&dir)[0].2.len(), 1);
        // An index whose record file is another: stale to a query until
        // built again.
        std::fs::write(dir.join("x.tmp"), line("other", 6, "z")).unwrap();
        std::fs::rename(dir.join("x.tmp"), &day1).unwrap();
        assert!(matches!(Opened::open(&parts(&dir).unwrap()[0]).unwrap(), Open::Stale));
        // A record file gone: its index goes too; a directory under a
        // record file's name is passed over, the others indexed.
        std::fs::remove_file(&day2).unwrap();
        std::fs::create_dir(&day2).unwrap();
        catch_up(&dir).unwrap();
        assert!(matches!(Opened::open(&parts(&dir).unwrap()[0]).unwrap(), Open::Ready(_)));
        assert!(!dir.join(FOLDER).join("tollgate-requests-2026-12-02.jsonl.idx").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
