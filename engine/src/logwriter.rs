//! The writer thread for request records: appends batches from the workers
//! to `DIR/tollgate-requests-YYYY-MM-DD.jsonl`, starts a new file each UTC
//! day and when a file passes its size limit
//! (`tollgate-requests-YYYY-MM-DD.N.jsonl`), and exits after writing
//! everything once every worker has hung up.
//!
//! Nothing a write refuses is dropped while it can be kept: a batch the
//! disk did not take (full, an I/O error) is cut back out of the file, so
//! that the file holds whole lines only, and kept to be written before the
//! next one (up to [`PENDING_BYTES_MAX`]), as the ledger keeps its spend.
//! A file renamed or deleted under the writer (logrotate) is noticed
//! within a second and a new one opened at the path, rather than records
//! going on into the renamed file, which no report reads, or into a
//! deleted one. Written records are synced to the disk once a second.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tollgate_policy::calendar;

/// Records not yet written kept at most (a disk full for a long time):
/// past it, new batches are logged as lost rather than held without bound.
const PENDING_BYTES_MAX: usize = 64 << 20;

/// How often the open file is synced and checked against its path.
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub struct LogWriter {
    dir: PathBuf,
    file_bytes_max: u64,
    file: Option<Open>,
    /// With `[clickhouse]`: each batch written is offered to the table too.
    sink: Option<crate::clickhouse::Sink>,
    /// Batches the file did not take, oldest first, written before the next.
    pending: Vec<u8>,
    /// Whether the last write failed (logged once, and once recovered).
    failing: bool,
    last_check: Instant,
    /// Written since the last sync.
    dirty: bool,
}

/// The file records go to.
struct Open {
    file: File,
    path: PathBuf,
    day: String,
    part: u32,
    size: u64,
}

pub use calendar::utc_date;

impl LogWriter {
    pub fn new(dir: PathBuf, file_bytes_max: u64) -> std::io::Result<LogWriter> {
        std::fs::create_dir_all(&dir)?;
        Ok(LogWriter {
            dir,
            file_bytes_max,
            file: None,
            sink: None,
            pending: Vec::new(),
            failing: false,
            last_check: Instant::now(),
            dirty: false,
        })
    }

    /// Runs until every sender is gone.
    pub fn run(mut self, rx: mpsc::Receiver<BytesMut>) {
        loop {
            match rx.recv_timeout(CHECK_EVERY) {
                Ok(batch) => {
                    let batch = batch.freeze();
                    self.append(&batch);
                    if let Some(sink) = &self.sink {
                        sink.offer(batch);
                    }
                }
                // A quiet second: records kept from a failed write are
                // tried again, and the file synced and checked.
                Err(mpsc::RecvTimeoutError::Timeout) => self.append(&[]),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            self.check();
        }
        if !self.pending.is_empty() {
            tracing::error!(bytes = self.pending.len(), dir = %self.dir.display(), "request records could not be written before exit: lost");
        }
        if let Some(open) = &self.file {
            let _ = open.file.sync_data();
        }
    }

    /// Writes what is kept and `batch` after it; keeps what the file does
    /// not take.
    fn append(&mut self, batch: &[u8]) {
        let result = if self.pending.is_empty() {
            if batch.is_empty() {
                return;
            }
            self.write(batch).map_err(|e| (e, Some(batch)))
        } else {
            let before = self.pending.len();
            self.pending.extend_from_slice(batch);
            let pending = std::mem::take(&mut self.pending);
            let result = self.write(&pending);
            self.pending = pending;
            match result {
                Ok(()) => {
                    self.pending.clear();
                    Ok(())
                }
                Err(e) => {
                    self.pending.truncate(before);
                    Err((e, Some(batch)))
                }
            }
        };
        match result {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    tracing::warn!(dir = %self.dir.display(), "request records are written again");
                }
                self.pending.shrink_to(PENDING_BYTES_MAX / 64);
            }
            Err((e, batch)) => {
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::error!(error = %e, dir = %self.dir.display(), "cannot write request records: keeping them to write later");
                }
                let batch = batch.unwrap_or_default();
                if self.pending.len() + batch.len() > PENDING_BYTES_MAX {
                    let lines = batch.iter().filter(|&&b| b == b'\n').count();
                    tracing::error!(lines, dir = %self.dir.display(), "request records lost: the disk has not taken them for too long");
                } else {
                    self.pending.extend_from_slice(batch);
                }
            }
        }
    }

    /// Once a second: syncs what was written, and lets go of a file that
    /// is no longer the one at its path (renamed or deleted), so that the
    /// next write opens the path again.
    fn check(&mut self) {
        if self.last_check.elapsed() < CHECK_EVERY {
            return;
        }
        self.last_check = Instant::now();
        let Some(open) = &self.file else { return };
        if std::mem::take(&mut self.dirty) {
            let _ = open.file.sync_data();
        }
        let same = match (open.file.metadata(), std::fs::metadata(&open.path)) {
            (Ok(mine), Ok(at_path)) => mine.ino() == at_path.ino() && mine.dev() == at_path.dev(),
            _ => false,
        };
        if !same {
            tracing::info!(file = %open.path.display(), "the records file was moved or removed: opening it again");
            self.file = None;
        }
    }

    /// Appends `bytes` whole, or not at all: a write the file took only
    /// part of is cut back out, so that no torn line is left for the next
    /// write to run on from.
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let today = utc_date(crate::unix_now().as_secs());
        let stale = match &self.file {
            Some(open) => open.day != today || open.size >= self.file_bytes_max,
            None => true,
        };
        if stale {
            let mut part = match &self.file {
                Some(open) if open.day == today => open.part + 1,
                _ => 0,
            };
            if let Some(open) = self.file.take() {
                let _ = open.file.sync_data();
            }
            loop {
                let name = if part == 0 {
                    format!("tollgate-requests-{today}.jsonl")
                } else {
                    format!("tollgate-requests-{today}.{part}.jsonl")
                };
                let path = self.dir.join(name);
                let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                if size < self.file_bytes_max {
                    let file = OpenOptions::new().create(true).append(true).open(&path)?;
                    self.file = Some(Open { file, path, day: today.clone(), part, size });
                    break;
                }
                part += 1;
            }
        }
        let open = self.file.as_mut().expect("opened above");
        let mut written = 0;
        while written < bytes.len() {
            match open.file.write(&bytes[written..]) {
                Ok(0) => {
                    let e = std::io::Error::from(std::io::ErrorKind::WriteZero);
                    return Err(cut_back(&open.file, written, e));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(cut_back(&open.file, written, e)),
            }
        }
        open.size += bytes.len() as u64;
        self.dirty = true;
        Ok(())
    }
}

/// Cuts the `written` bytes of a failed append back off the end of `file`
/// (appends only, so they are its last bytes; measured from its length now,
/// which a `copytruncate` may have set lower than the writer counted), and
/// passes the error on.
fn cut_back(file: &File, written: usize, e: std::io::Error) -> std::io::Error {
    if written > 0 {
        if let Ok(m) = file.metadata() {
            let _ = file.set_len(m.len().saturating_sub(written as u64));
        }
    }
    e
}

/// Starts the writer thread; workers get clones of the sender.
pub fn start(
    dir: PathBuf,
    file_bytes_max: u64,
    sink: Option<crate::clickhouse::Sink>,
) -> std::io::Result<(mpsc::Sender<BytesMut>, std::thread::JoinHandle<()>)> {
    let mut writer = LogWriter::new(dir, file_bytes_max)?;
    writer.sink = sink;
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new().name("tollgate-records".into()).spawn(move || writer.run(rx))?;
    Ok((tx, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_795_400_000), "2026-11-23");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
    }

    fn lines(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// Batches the disk refuses (ENOSPC: `/dev/full`) are kept and written,
    /// in order and whole, once it takes writes again.
    #[test]
    fn records_a_full_disk_refuses_are_written_once_it_frees() {
        let dir = std::env::temp_dir().join(format!("tollgate-logwriter-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = LogWriter::new(dir.clone(), 1 << 20).unwrap();
        w.append(b"{\"n\":1}\n");
        let path = w.file.as_ref().unwrap().path.clone();
        let full = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let real = std::mem::replace(&mut w.file.as_mut().unwrap().file, full);
        w.append(b"{\"n\":2}\n");
        w.append(b"{\"n\":3}\n{\"n\":4}\n");
        assert!(w.failing && !w.pending.is_empty(), "kept");
        assert_eq!(lines(&path), ["{\"n\":1}"]);
        w.file.as_mut().unwrap().file = real;
        w.append(b"{\"n\":5}\n");
        assert!(w.pending.is_empty() && !w.failing);
        assert_eq!(lines(&path), ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{\"n\":4}", "{\"n\":5}"]);
        // A quiet second writes what is kept too.
        let full = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let real = std::mem::replace(&mut w.file.as_mut().unwrap().file, full);
        w.append(b"{\"n\":6}\n");
        w.file.as_mut().unwrap().file = real;
        w.append(&[]);
        assert_eq!(lines(&path).len(), 6);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file renamed (logrotate) or deleted under the writer: within its
    /// check the writer opens the path again, so that later records are
    /// where reports and retention look for them.
    #[test]
    fn a_file_moved_or_removed_is_opened_again_at_its_path() {
        let dir = std::env::temp_dir().join(format!("tollgate-logwriter-moved-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = LogWriter::new(dir.clone(), 1 << 20).unwrap();
        w.append(b"{\"n\":1}\n");
        let path = w.file.as_ref().unwrap().path.clone();
        let moved = dir.join("rotated.jsonl.1");
        std::fs::rename(&path, &moved).unwrap();
        w.last_check = Instant::now() - CHECK_EVERY;
        w.check();
        w.append(b"{\"n\":2}\n");
        assert_eq!((lines(&moved), lines(&path)), (vec!["{\"n\":1}".to_string()], vec!["{\"n\":2}".to_string()]));
        std::fs::remove_file(&path).unwrap();
        w.last_check = Instant::now() - CHECK_EVERY;
        w.check();
        w.append(b"{\"n\":3}\n");
        assert_eq!(lines(&path), ["{\"n\":3}"]);
        // Unmoved, the file is kept open.
        w.last_check = Instant::now() - CHECK_EVERY;
        w.check();
        assert!(w.file.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rotates_by_size() {
        let dir = std::env::temp_dir().join(format!("tollgate-logwriter-{}", std::process::id()));
        let mut w = LogWriter::new(dir.clone(), 10).unwrap();
        w.write(b"0123456789ab\n").unwrap();
        w.write(b"second\n").unwrap();
        let mut names: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].ends_with(".1.jsonl") || names[1].ends_with(".1.jsonl"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
