//! Captured bodies kept no longer than `[logging] capture_retention_days`:
//! a thread of its own (`tollgate-retention`) looks at the record files
//! at start and every hour, and rewrites each file whose UTC day ended
//! that many days ago without the `capture` member of its records (each
//! such record gains `"capture_removed_ms"`, when it lost it). Everything
//! else in a record stays, so reports and audits over old days still add
//! up.
//!
//! A file is rewritten beside itself (under a name no other process picks)
//! and renamed over it, the directory synced after (a reader sees the old
//! file or the new, never half of one), and only once: the files done are
//! listed in `DIR/.capture-removed`. The record writer never writes to a
//! file of a day that ended, so the two never meet. A line that is not a
//! record (one torn by a full disk or a crash, its bytes perhaps not even
//! UTF-8) is kept as it is unless it holds a `"capture"`, in which case it
//! goes: a body is never kept for want of a parse. A file that cannot be
//! rewritten is logged and tried again at the next sweep, the others done
//! meanwhile. Rewritten records keep every member but `capture`, in
//! alphabetical order.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The list of files already swept, in the records' directory.
const DONE: &str = ".capture-removed";

/// How often the thread looks.
const EVERY: Duration = Duration::from_secs(3600);

/// What a sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub files: usize,
    pub records: usize,
}

/// Starts the thread (detached: a sweep cut short by the process's exit
/// leaves every file whole, and is done again at the next start). With
/// `[clickhouse]`, the bodies table's days past the retention are dropped
/// too ([`crate::clickhouse::drop_bodies`]), by every node (dropping a day
/// another node dropped is nothing).
pub fn start(dir: PathBuf, days: u32, clickhouse: Option<tollgate_policy::config::clickhouse::ClickHouse>) {
    let spawned = std::thread::Builder::new().name("tollgate-retention".into()).spawn(move || loop {
        if let Some(c) = clickhouse.as_ref().filter(|c| c.bodies) {
            match crate::clickhouse::drop_bodies(c, days, crate::unix_now().as_secs()) {
                Ok(0) => {}
                Ok(n) => tracing::info!(days = n, "captured bodies past their retention dropped from ClickHouse"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot drop captured bodies past their retention from ClickHouse")
                }
            }
        }
        match sweep(&dir, days, crate::unix_now().as_secs()) {
            Ok(s) if s.files > 0 => tracing::info!(
                files = s.files,
                records = s.records,
                days,
                "captured bodies past their retention removed from the records"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, dir = %dir.display(), "cannot remove captured bodies past their retention")
            }
        }
        std::thread::sleep(EVERY);
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the capture retention thread: captured bodies are kept");
    }
}

/// The UTC day (days since 1970-01-01) of a record file's name,
/// `tollgate-requests-YYYY-MM-DD.jsonl` or `...YYYY-MM-DD.N.jsonl`.
pub(crate) fn file_day(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("tollgate-requests-")?.strip_suffix(".jsonl")?;
    let date = rest.get(..10)?;
    let tail = &rest[10..];
    if !(tail.is_empty()
        || tail.strip_prefix('.').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
    {
        return None;
    }
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    if date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' {
        return None;
    }
    Some(tollgate_policy::calendar::days_from_civil(y, m, d))
}

/// Removes the captured bodies of every record file whose day ended
/// `days` days before `now_s` and that no sweep has done yet.
pub fn sweep(dir: &Path, days: u32, now_s: u64) -> std::io::Result<Swept> {
    let done_path = dir.join(DONE);
    let mut done: BTreeSet<String> =
        fs::read_to_string(&done_path).unwrap_or_default().lines().map(str::to_string).collect();
    let mut swept = Swept::default();
    let today = (now_s / 86_400) as i64;
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !done.contains(n))
        .filter(|n| file_day(n).is_some_and(|d| d + 1 + i64::from(days) <= today))
        .collect();
    names.sort();
    let now_ms = now_s * 1000;
    for name in names {
        match strip(&dir.join(&name), now_ms) {
            Ok(n) => swept.records += n,
            Err(e) => {
                tracing::error!(file = %name, error = %e, "cannot remove captured bodies from a record file; trying again at the next sweep");
                continue;
            }
        }
        swept.files += 1;
        done.insert(name);
        // Listed after each file: a sweep cut short is not done twice.
        let mut list = String::new();
        for n in &done {
            list.push_str(n);
            list.push('\n');
        }
        fs::write(&done_path, list)?;
    }
    Ok(swept)
}

/// Rewrites one file without its records' `capture`; the records (and
/// torn lines) that had one.
fn strip(path: &Path, now_ms: u64) -> std::io::Result<usize> {
    // Beside the file, named for this process and moment: two processes
    // sweeping one directory never write the same file.
    let nanos = crate::unix_now().as_nanos();
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("records");
    let tmp = path.with_file_name(format!(".{file_name}.{}.{nanos}.tmp", std::process::id()));
    let result = strip_into(path, &tmp, now_ms);
    if !matches!(result, Ok(n) if n > 0) {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    result
}

fn strip_into(path: &Path, tmp: &Path, now_ms: u64) -> std::io::Result<usize> {
    let mut out = BufWriter::new(fs::OpenOptions::new().write(true).create_new(true).open(tmp)?);
    let mut stripped = 0;
    for line in BufReader::new(fs::File::open(path)?).split(b'\n') {
        let line = line?;
        let record = std::str::from_utf8(&line).ok().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
        match record {
            Some(serde_json::Value::Object(mut record)) if record.contains_key("capture") => {
                record.remove("capture");
                record.insert("capture_removed_ms".into(), now_ms.into());
                serde_json::to_writer(&mut out, &record)?;
                stripped += 1;
            }
            Some(_) => out.write_all(&line)?,
            // Not a record: kept, unless a body may be in it.
            None if memchr::memmem::find(&line, b"\"capture\"").is_some() => {
                stripped += 1;
                continue;
            }
            None => out.write_all(&line)?,
        }
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(stripped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_give_their_day() {
        let day = tollgate_policy::calendar::days_from_civil(2026, 11, 30);
        assert_eq!(file_day("tollgate-requests-2026-11-30.jsonl"), Some(day));
        assert_eq!(file_day("tollgate-requests-2026-11-30.12.jsonl"), Some(day));
        for not in [
            "tollgate-requests-2026-11-30.jsonl.tmp",
            "tollgate-requests-2026-11-30.x.jsonl",
            "tollgate-requests-2026-11-30..jsonl",
            "tollgate-requests-2026/11/30.jsonl",
            "other-2026-11-30.jsonl",
            ".capture-removed",
        ] {
            assert_eq!(file_day(not), None, "{not}");
        }
    }

    #[test]
    fn bodies_go_once_their_day_is_past_retention_and_nothing_else_does() {
        let dir = std::env::temp_dir().join(format!("tollgate-retention-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let now = 1_796_083_200 + 3_600; // 2026-12-01 01:00 UTC
        let record = |id: &str, capture: bool| {
            let c = if capture { r#","capture":{"prompt":"hi","answer":"hello"}"# } else { "" };
            format!(r#"{{"id":"{id}","team":"a","cost_usd":0.5{c},"status":200}}"#)
        };
        let old = dir.join("tollgate-requests-2026-11-28.jsonl");
        let old_part = dir.join("tollgate-requests-2026-11-28.1.jsonl");
        let recent = dir.join("tollgate-requests-2026-11-30.jsonl");
        // A torn line with a body (and bytes that are not UTF-8), and one
        // without: the first goes, the second stays.
        let mut text = format!("{}\n{}\nnot json\n", record("1", true), record("2", false)).into_bytes();
        text.extend_from_slice(b"{\"id\":\"9\",\"capture\":{\"prompt\":\"torn \xe2\x82\n");
        fs::write(&old, text).unwrap();
        fs::write(&old_part, format!("{}\n", record("3", true))).unwrap();
        fs::write(&recent, format!("{}\n", record("4", true))).unwrap();

        // One day of retention: 11-28 ended 11-29 00:00, past a day at
        // 11-30 00:00; 11-30 ends 12-01 00:00, within its day.
        assert_eq!(sweep(&dir, 1, now).unwrap(), Swept { files: 2, records: 3 });
        let lines: Vec<String> = fs::read_to_string(&old).unwrap().lines().map(str::to_string).collect();
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert!(first.get("capture").is_none(), "{first}");
        assert_eq!(
            (&first["id"], &first["cost_usd"], &first["status"], &first["capture_removed_ms"]),
            (&"1".into(), &0.5.into(), &200.into(), &(now * 1000).into())
        );
        assert_eq!(lines[1], record("2", false), "a record without a capture is left as it was");
        assert_eq!(lines[2], "not json");
        assert_eq!(lines.len(), 3, "the torn line with a body is gone: {lines:?}");
        assert!(fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
        assert!(!fs::read_to_string(&old_part).unwrap().contains("capture\":"));
        assert_eq!(fs::read_to_string(&recent).unwrap(), format!("{}\n", record("4", true)));

        // Done once: a second sweep touches nothing; a day later the next
        // file goes.
        let before = fs::metadata(&old).unwrap().modified().unwrap();
        assert_eq!(sweep(&dir, 1, now).unwrap(), Swept::default());
        assert_eq!(fs::metadata(&old).unwrap().modified().unwrap(), before);
        assert_eq!(sweep(&dir, 1, now + 86_400).unwrap(), Swept { files: 1, records: 1 });
        // With a longer retention nothing would have gone yet.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(&old, format!("{}\n", record("1", true))).unwrap();
        assert_eq!(sweep(&dir, 3, now).unwrap(), Swept::default());
        let _ = fs::remove_dir_all(&dir);
    }
}
