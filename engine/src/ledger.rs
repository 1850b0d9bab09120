//! The usage ledger: spend kept across restarts.
//!
//! The merger appends every spend delta it folds in as one JSON line
//! (`{"t":unix,"o":"team"|"key","n":name,"u":micro_usd}`) and syncs the
//! file at most once a second, and within about a second of a line written
//! whether or not more spend follows ([`Ledger::sync`], asked every
//! turn of the merger's loop, which waits no longer than that while a line
//! is unsynced: once the syncs waited for the next append, and a night's
//! last spend waited for the morning's), so a power failure loses at most
//! a second of spend, and a clean shutdown none. A SIGKILL loses what had not reached
//! the merger yet: each core's spend since its last hand-off (at most
//! `MERGE_EVERY`, 100 ms) and what the merger had not yet written. At start
//! the ledger is replayed into the current day's and month's totals and
//! compacted to one line per owner per day of the current month and the
//! one before (or from the ledger's newest month where that is earlier: a
//! start with the clock behind, a dead RTC before time sync, keeps the
//! real month; one a month ahead keeps it too, twice in a row). Its limits:
//! spend appended under a clock behind is dropped by the next start with
//! the clock right (its month is past), and spend appended under a clock
//! ahead counts in the month it is dated. `PATH.lock` is locked while the
//! ledger is open: one process a ledger. A write
//! that fails (a full disk) is kept, from where it stopped, and written
//! again first by the next append, up to 64 MiB of lines.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use simd_json::prelude::*;
use tollgate_policy::budget::{day_number, year_month};

use crate::accounts::{OwnerName, SpendSnapshot};

/// Syncs happen at most this often (and the merger waits no longer while
/// a line is unsynced).
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

pub struct Ledger {
    path: PathBuf,
    file: File,
    /// `PATH.lock`, locked while the ledger is open: see [`lock_ledger`].
    _lock: File,
    last_sync: Instant,
    dirty: bool,
    /// Lines not yet written (a full disk, an I/O error), from exactly
    /// where the file's last write stopped: written first by the next
    /// append, so that no spend is lost to a disk that fills and frees,
    /// and a line cut by a failed write is completed, not followed by
    /// another on the same line (found by a review: such lines were
    /// dropped, and replay skipped them and the next good one).
    pending: Vec<u8>,
}

/// Unwritten lines kept at most (a disk full for a long time): past it,
/// new spend is logged as lost rather than held without bound.
const PENDING_BYTES_MAX: usize = 64 << 20;

/// Locks `PATH.lock` for this process, or says which file is in use. Two
/// gateways given one `ledger_file` (a second instance on another port)
/// would each compact it and rename their copy over the other's, the
/// first then appending to a file no longer at the path: its spend lost at
/// the next start. The lock file, not the ledger, is locked: the ledger's
/// file is replaced by each compaction.
fn lock_ledger(path: &std::path::Path) -> std::io::Result<File> {
    let lock_path = crate::beside(path, ".lock");
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            format!(
                "the usage ledger {} is in use by another tollgate process (it holds {}): give each gateway its own `ledger_file`, or stop the other one",
                path.display(),
                lock_path.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn line(t: u64, owner: &OwnerName, micro: u64) -> String {
    let (kind, name) = owner.label();
    let mut n = bytes::BytesMut::new();
    tollgate_protocol::openai::write_json_string(&mut n, name);
    format!("{{\"t\":{t},\"o\":\"{kind}\",\"n\":{},\"u\":{micro}}}\n", String::from_utf8_lossy(&n))
}

impl Ledger {
    /// Replays the ledger into `spend` for the windows of `now`, compacts
    /// it, and opens it for appending.
    pub fn open(path: PathBuf, now: u64, spend: &mut SpendSnapshot) -> std::io::Result<Ledger> {
        let day = day_number(now);
        let month = year_month(day);
        // (owner, day) -> micro.
        let mut by_day: HashMap<(OwnerName, u64), u64> = HashMap::new();
        // A ledger that cannot be read is not an empty one (the
        // compaction below would write an empty file over the month's
        // spend), and a line that is not text (a line cut inside a name's
        // character by a crash) is that line's loss, not the end of the
        // replay (`lines()` stopped at it, and the compaction dropped every
        // line after it).
        // Line by line (a ledger grows between starts, by a line an owner
        // every 100 ms a worker), into one buffer.
        let unreadable_ledger = |e: std::io::Error| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "the usage ledger {} cannot be read ({e}): fix its permissions or move it aside; it is not started empty",
                    path.display()
                ),
            )
        };
        let lock = lock_ledger(&path)?;
        let mut reader = match File::open(&path) {
            Ok(f) => Some(std::io::BufReader::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(unreadable_ledger(e)),
        };
        let mut unreadable = 0usize;
        // The ledger's newest day: with the clock's, what the compaction
        // keeps.
        let mut newest = None;
        let mut bytes = Vec::new();
        while let Some(r) = reader.as_mut() {
            use std::io::BufRead;
            bytes.clear();
            if r.read_until(b'\n', &mut bytes).map_err(unreadable_ledger)? == 0 {
                break;
            }
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            if bytes.is_empty() {
                continue;
            }
            let Ok(v) = simd_json::to_borrowed_value(&mut bytes) else {
                unreadable += 1;
                continue;
            };
            let (Some(t), Some(o), Some(n), Some(u)) = (
                v.get("t").and_then(|x| x.as_u64()),
                v.get("o").and_then(|x| x.as_str()),
                v.get("n").and_then(|x| x.as_str()),
                v.get("u").and_then(|x| x.as_u64()),
            ) else {
                unreadable += 1;
                continue;
            };
            let d = day_number(t);
            newest = newest.max(Some(d));
            let owner = if o == "key" { OwnerName::Key(n.to_string()) } else { OwnerName::Team(n.to_string()) };
            *by_day.entry((owner, d)).or_default() += u;
        }
        if unreadable > 0 {
            tracing::warn!(file = %path.display(), lines = unreadable, "usage ledger lines that could not be read were left out of the replay");
        }
        spend.day = day;
        spend.month = month;
        for ((owner, d), micro) in by_day.iter().filter(|((_, d), _)| year_month(*d) == month) {
            let v = spend.by_owner.entry(owner.clone()).or_default();
            v.1 += micro;
            if *d == day {
                v.0 += micro;
            }
        }
        // Compact: one line per owner per day, in order of day, written
        // aside and renamed in. A month before the clock's is dropped only
        // where the ledger holds the clock's month or a later one: a host
        // that starts with its clock a month or years behind (a dead RTC,
        // a VM restored, before time sync) keeps the real month's spend
        // for when the clock is right (found by a review: such a start
        // compacted the month away, and budgets began again at 0). Lines
        // are not moved to other days by their order: a review showed two
        // starts behind, or a clock ahead once, then moving a month's
        // spend whole into the wrong month.
        // The month before the clock's is kept too: a clock a month ahead
        // at two starts in a row looks like a month's turn.
        let before = if month.1 == 1 { (month.0 - 1, 12) } else { (month.0, month.1 - 1) };
        let keep_from = newest.map_or(before, |n| before.min(year_month(n)));
        let mut kept: Vec<_> = by_day.iter().filter(|((_, d), _)| year_month(*d) >= keep_from).collect();
        kept.sort_unstable_by_key(|((owner, d), _)| (*d, owner.label()));
        let tmp = crate::beside(&path, ".compacting");
        {
            let mut f = File::create(&tmp)?;
            for ((owner, d), micro) in kept {
                f.write_all(line(d * 86_400, owner, *micro).as_bytes())?;
            }
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        // The rename is in the directory: synced, so that a power cut does
        // not bring the old ledger back under appends made to the new one.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        File::open(dir)?.sync_all()?;
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(Ledger { path, file, _lock: lock, last_sync: Instant::now(), dirty: false, pending: Vec::new() })
    }

    pub fn append(&mut self, now: u64, spend: &[(OwnerName, u64)]) {
        for (owner, micro) in spend {
            if self.pending.len() >= PENDING_BYTES_MAX {
                tracing::error!(file = %self.path.display(), owner = ?owner.label(), micro, "the usage ledger cannot be written: spend lost from it");
                continue;
            }
            self.pending.extend_from_slice(line(now, owner, *micro).as_bytes());
        }
        self.write_pending();
    }

    /// Whether a line is written and not yet synced: the merger then waits
    /// for its next delta no longer than [`SYNC_EVERY`], and asks for
    /// [`Ledger::sync`] every turn of its loop.
    pub fn unsynced(&self) -> bool {
        self.dirty
    }

    /// Writes what is pending, as far as the file takes it.
    fn write_pending(&mut self) {
        let failing = !self.pending.is_empty();
        while !self.pending.is_empty() {
            match self.file.write(&self.pending) {
                Ok(0) => break,
                Ok(n) => {
                    self.pending.drain(..n);
                    self.dirty = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::error!(error = %e, file = %self.path.display(), pending = self.pending.len(), "cannot append to the usage ledger; kept to write again");
                    break;
                }
            }
        }
        if failing && self.pending.is_empty() {
            tracing::info!(file = %self.path.display(), "the usage ledger is written again");
        }
    }

    /// Syncs if a second has passed since the last sync (or now, `force`).
    pub fn sync(&mut self, force: bool) {
        if force {
            self.write_pending();
        }
        if self.dirty && (force || self.last_sync.elapsed() >= SYNC_EVERY) {
            if let Err(e) = self.file.sync_data() {
                tracing::error!(error = %e, file = %self.path.display(), "cannot sync the usage ledger");
            }
            self.dirty = false;
            self.last_sync = Instant::now();
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.sync(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line written is synced by the merger's next turn a second on,
    /// with no spend after it: the sync no longer waits for an append.
    #[test]
    fn a_line_is_synced_within_a_second_without_more_spend() {
        let path = std::env::temp_dir().join(format!("tollgate-ledger-sync-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let now = 1_795_435_200;
        let mut spend = SpendSnapshot::default();
        let mut l = Ledger::open(path.clone(), now, &mut spend).unwrap();
        l.last_sync = Instant::now();
        l.append(now, &[(OwnerName::Team("a".into()), 5)]);
        assert!(l.unsynced(), "written, not synced within the second");
        l.sync(false);
        assert!(l.unsynced(), "a sync at most once a second");
        l.last_sync = Instant::now() - SYNC_EVERY;
        l.sync(false);
        assert!(!l.unsynced(), "synced a second on, with no append");
        drop(l);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("lock"));
    }

    #[test]
    fn replay_compacts_and_keeps_the_month() {
        let path = std::env::temp_dir().join(format!("tollgate-ledger-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let now = 1_795_435_200; // 2026-11-23 12:00 UTC
        let team = OwnerName::Team("a".into());
        {
            let mut spend = SpendSnapshot::default();
            let mut l = Ledger::open(path.clone(), now, &mut spend).unwrap();
            // In the order a clock that goes forward writes them.
            l.append(now - 40 * 86_400, &[(team.clone(), 1000)]); // last month
            l.append(now - 86_400, &[(team.clone(), 50)]); // yesterday
            l.append(now, &[(team.clone(), 100), (OwnerName::Key("k".into()), 7)]);
        }
        let mut spend = SpendSnapshot::default();
        let _l = Ledger::open(path.clone(), now, &mut spend).unwrap();
        assert_eq!(spend.by_owner[&team], (100, 150));
        assert_eq!(spend.by_owner[&OwnerName::Key("k".into())], (7, 7));
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert_eq!(lines, 4, "compacted to one line per owner per day of this month and the last");
        let _ = std::fs::remove_file(&path);
    }

    /// A start with the clock years behind (a dead RTC, twice, as a unit
    /// that restarts on failure would) or a month ahead replays nothing of
    /// the real month and keeps it for the start with the clock right. The
    /// limits: what was appended under the clock behind is dropped then (its
    /// month is past), what was appended under the clock ahead is kept for
    /// its own month. A month older than both the clock's and the ledger's
    /// newest is dropped.
    #[test]
    fn a_start_with_the_clock_wrong_keeps_the_real_month() {
        let now = 1_795_435_200; // 2026-11-23 12:00 UTC
        let team = OwnerName::Team("a".into());
        let month = |path: &std::path::Path, at: u64| {
            let mut spend = SpendSnapshot::default();
            drop(Ledger::open(path.to_path_buf(), at, &mut spend).unwrap());
            spend.by_owner.get(&team).copied().unwrap_or_default()
        };
        for (case, wrong, lines) in [("behind", 86_400, 2), ("ahead", now + 31 * 86_400, 3)] {
            let path = std::env::temp_dir().join(format!("tollgate-ledger-clock-{case}-{}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            {
                let mut l = Ledger::open(path.clone(), now, &mut SpendSnapshot::default()).unwrap();
                l.append(now - 70 * 86_400, &[(team.clone(), 9)]); // September
                l.append(now - 86_400, &[(team.clone(), 50)]);
                l.append(now, &[(team.clone(), 100)]);
            }
            for k in 0..2 {
                let mut spend = SpendSnapshot::default();
                let mut l = Ledger::open(path.clone(), wrong, &mut spend).unwrap();
                // The clock's month: what it appended itself.
                assert_eq!(spend.by_owner.get(&team).copied().unwrap_or_default().1, 7 * k, "{case}: not November");
                l.append(wrong, &[(team.clone(), 7)]);
            }
            assert_eq!(month(&path, now), (100, 150), "{case}: November kept whole");
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.lines().count(), lines, "{case}: September dropped: {text}");
            assert_eq!(month(&path, now), (100, 150), "{case}: again, the same");
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(crate::beside(&path, ".lock"));
        }
    }

    /// A second process (here, a second open) on the same ledger is
    /// refused, naming the file, until the first closes it.
    #[test]
    fn a_ledger_in_use_is_refused() {
        let path = std::env::temp_dir().join(format!("tollgate-ledger-lock-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let now = 1_795_435_200;
        let first = Ledger::open(path.clone(), now, &mut SpendSnapshot::default()).unwrap();
        let err = Ledger::open(path.clone(), now, &mut SpendSnapshot::default()).err().expect("refused");
        assert!(err.to_string().contains("in use by another tollgate process"), "{err}");
        drop(first);
        drop(Ledger::open(path.clone(), now, &mut SpendSnapshot::default()).unwrap());
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(crate::beside(&path, ".lock"));
    }

    /// A line that is not text (cut inside a name's character) is left
    /// out, and the lines after it are replayed and kept: `lines()` ended
    /// the replay there, and the compaction wrote the ledger back without
    /// them. A ledger that cannot be read fails to open, and is left as it
    /// is (read as empty, it was compacted to nothing).
    #[test]
    fn a_broken_line_loses_itself_and_an_unreadable_ledger_is_not_started_empty() {
        let path = std::env::temp_dir().join(format!("tollgate-ledger-broken-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let now = 1_795_435_200;
        let team = OwnerName::Team("a".into());
        let mut raw = line(now, &team, 100).into_bytes();
        raw.extend_from_slice(b"{\"t\":1795435200,\"o\":\"team\",\"n\":\"caf\xc3");
        raw.push(b'\n');
        raw.extend_from_slice(line(now, &team, 20).as_bytes());
        raw.extend_from_slice(line(now, &OwnerName::Key("k".into()), 3).as_bytes());
        std::fs::write(&path, &raw).unwrap();
        {
            let mut spend = SpendSnapshot::default();
            let _l = Ledger::open(path.clone(), now, &mut spend).unwrap();
            assert_eq!(spend.by_owner[&team], (120, 120), "the lines after the broken one count");
            assert_eq!(spend.by_owner[&OwnerName::Key("k".into())], (3, 3));
        }
        let mut spend = SpendSnapshot::default();
        let _l = Ledger::open(path.clone(), now, &mut spend).unwrap();
        assert_eq!(spend.by_owner[&team], (120, 120), "and are kept by the compaction");
        let _ = std::fs::remove_file(&path);
        // A directory where the ledger should be: reading it fails.
        let dir = std::env::temp_dir().join(format!("tollgate-ledger-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keep"), b"x").unwrap();
        let err = Ledger::open(dir.clone(), now, &mut SpendSnapshot::default()).err().expect("refused");
        assert!(err.to_string().contains("cannot be read"), "{err}");
        assert!(dir.join("keep").exists(), "left as it was");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Spend appended while the disk is full is kept and written once it
    /// takes writes again, whole lines, so that replay counts all of it.
    #[test]
    fn spend_appended_to_a_full_disk_is_written_once_it_frees() {
        let path = std::env::temp_dir().join(format!("tollgate-ledger-full-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let now = 1_795_435_200;
        let team = OwnerName::Team("a".into());
        {
            let mut spend = SpendSnapshot::default();
            let mut l = Ledger::open(path.clone(), now, &mut spend).unwrap();
            l.append(now, &[(team.clone(), 100)]);
            // The disk fills: /dev/full refuses every write (ENOSPC).
            let real = std::mem::replace(&mut l.file, OpenOptions::new().append(true).open("/dev/full").unwrap());
            l.append(now, &[(team.clone(), 20)]);
            l.append(now, &[(team.clone(), 3)]);
            assert!(!l.pending.is_empty(), "kept");
            // It frees.
            l.file = real;
            l.append(now, &[(team.clone(), 4000)]);
            assert!(l.pending.is_empty());
        }
        let mut spend = SpendSnapshot::default();
        let _l = Ledger::open(path.clone(), now, &mut spend).unwrap();
        assert_eq!(spend.by_owner[&team], (4123, 4123), "none of it lost");
        let _ = std::fs::remove_file(&path);
    }
}
